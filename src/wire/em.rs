//! The Extension Mobility API's messages (Cisco's EM API DTDs): requests and queries parsed
//! from the `xml=` form field, responses written the way Cisco's service writes them, and
//! Cisco's error codes ([`EmError`], [`code_meaning`]). Parsing is bounded and tolerant where the developer guide's own examples disagree with
//! the DTD (`userDeviceProfileQuery`, extra elements); anything else that does not fit the DTD
//! is EM error 1 with the element path.

use super::codec::{form_decode, percent_encode};
use super::xml::escape;
use super::xml::tree::{self, Element as Node};

/// An EM error: Cisco's code and a message saying what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("EM error {code}: {message}")]
pub struct EmError {
    pub code: u32,
    pub message: String,
}

impl EmError {
    pub fn new(code: u32, message: impl Into<String>) -> EmError {
        EmError {
            code,
            message: message.into(),
        }
    }
}

/// Cisco's meaning of each code, as the phone and `ucm em` print it.
pub fn code_meaning(code: u32) -> &'static str {
    match code {
        0 => "Unknown Error",
        1 => "Error on Parsing",
        2 => "Cannot authorize App user",
        3 => "Invalid App User",
        4 => "Policy Validation error",
        5 => "Device logon disabled",
        6 => "Database Error",
        7 => "Logout Request Error",
        8 => "Query type undetermined",
        9 => "Dir. User Info Error",
        10 => "User lacks app proxy rights",
        11 => "Device does not exist",
        12 => "Dev. Profile not found",
        18 => "Another user logged in",
        19 => "No user logged in",
        20 => "Hoteling flag error",
        21 => "Hoteling Status error",
        22 => "Device logon disabled",
        23 => "User not found",
        25 => "User logged in elsewhere",
        26 => "Busy, please try again",
        27 => "Change Password",
        28 => "Untrusted IP Error",
        29 => "RIS down-contact admin",
        30 => "Proxy not allowed",
        // The EM service's EMCC codes (Cisco's EMCC feature guide).
        31 => "EMCC not activated for the user",
        32 => "Device does not support EMCC",
        33 => "No free EMCC dummy device",
        35 => "Visiting cluster info not present in home cluster",
        36 => "No remote cluster",
        37 => "Duplicate device name",
        38 => "EMCC not allowed",
        39 => "EMCC default or backup TFTP not set",
        40 => "No response from remote host",
        41 => "PIN change required",
        42 => "Invalid ClusterID",
        43 => "Device security mode error",
        44 => "Cluster ID invalid",
        45 => "Remote cluster version not supported",
        46 => "Remote cluster security mode not supported",
        47 => "DN has multiple users",
        _ => "Unknown Error",
    }
}

/// Largest request accepted (a logoutAll or a query for many users is still small).
pub const MAX_REQUEST: usize = 256 * 1024;
const MAX_DEPTH: usize = 16;
/// Elements in one request (a query naming the most users stays far below).
const MAX_ELEMENTS: usize = 10_000;
/// Users or devices one query may name.
pub const MAX_QUERY_ITEMS: usize = 1000;

/// How the caller proves who it is: an end user's or application user's password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfo {
    pub app_id: String,
    pub certificate: Certificate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Certificate {
    Plain(String),
    /// Cisco's internal form (EMApp as CCMSysUser). Not accepted from outside: ucm's own EM
    /// application calls the service in-process.
    Encrypted(String),
}

/// `exclusiveDuration`: minutes (UNCONFIRMED unit; the spec says "probably minutes") or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duration {
    Minutes(u32),
    Indefinite,
}

/// Where the request says it came from, for Validate IP Address and Allow Proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub remote_ip: Option<String>,
    pub via_header_set: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Login {
        device: String,
        user: String,
        profile: Option<String>,
        duration: Option<Duration>,
        origin: Origin,
    },
    Logout {
        device: String,
        origin: Origin,
    },
    LogoutAll {
        origin: Origin,
    },
    DeviceUserQuery {
        devices: Vec<String>,
        origin: Origin,
    },
    UserDevicesQuery {
        users: Vec<String>,
        origin: Origin,
    },
    CheckUser {
        users: Vec<String>,
        origin: Origin,
    },
    DeviceProfileQuery {
        users: Vec<String>,
        origin: Origin,
    },
}

impl Request {
    pub fn origin(&self) -> &Origin {
        match self {
            Request::Login { origin, .. }
            | Request::Logout { origin, .. }
            | Request::LogoutAll { origin }
            | Request::DeviceUserQuery { origin, .. }
            | Request::UserDevicesQuery { origin, .. }
            | Request::CheckUser { origin, .. }
            | Request::DeviceProfileQuery { origin, .. } => origin,
        }
    }

    /// The request's element name, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Login { .. } => "login",
            Request::Logout { .. } => "logout",
            Request::LogoutAll { .. } => "logoutAll",
            Request::DeviceUserQuery { .. } => "deviceUserQuery",
            Request::UserDevicesQuery { .. } => "userDevicesQuery",
            Request::CheckUser { .. } => "checkUser",
            Request::DeviceProfileQuery { .. } => "deviceProfileQuery",
        }
    }
}

/// A parsed `<request>` or `<query>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub app: AppInfo,
    pub request: Request,
}

fn parse_error(msg: impl Into<String>) -> EmError {
    EmError::new(1, msg)
}

fn read_tree(xml: &str) -> Result<Node, EmError> {
    if xml.len() > MAX_REQUEST {
        return Err(parse_error(format!(
            "request of {} bytes is over the {MAX_REQUEST}-byte limit",
            xml.len()
        )));
    }
    tree::read(xml, MAX_DEPTH, MAX_ELEMENTS)
        .map_err(parse_error)?
        .ok_or_else(|| parse_error("no root element"))
}

fn required(parent: &Node, name: &str, path: &str) -> Result<String, EmError> {
    let v = parent
        .child(name)
        .map(Node::value)
        .ok_or_else(|| parse_error(format!("{path}: <{name}> is missing")))?;
    if v.is_empty() {
        return Err(parse_error(format!("{path}/{name} is empty")));
    }
    Ok(v)
}

fn origin(n: &Node) -> Origin {
    Origin {
        remote_ip: n
            .child("remoteIPAddr")
            .map(Node::value)
            .filter(|s| !s.is_empty()),
        via_header_set: n
            .child("isViaHeaderSet")
            .map(Node::value)
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "t" | "yes" | "1")),
    }
}

fn list(n: &Node, name: &str, path: &str) -> Result<Vec<String>, EmError> {
    let items: Vec<String> = n.all(name).map(Node::value).collect();
    if items.is_empty() {
        return Err(parse_error(format!(
            "{path}: at least one <{name}> is required"
        )));
    }
    if items.len() > MAX_QUERY_ITEMS {
        return Err(parse_error(format!(
            "{path}: {} <{name}> elements, over the limit of {MAX_QUERY_ITEMS}",
            items.len()
        )));
    }
    if items.iter().any(String::is_empty) {
        return Err(parse_error(format!("{path}/{name} is empty")));
    }
    Ok(items)
}

/// Parses the XML of an EM API call (the decoded `xml=` form field).
pub fn parse(xml: &str) -> Result<Envelope, EmError> {
    let root = read_tree(xml)?;
    let top = root.name.as_str();
    if top != "request" && top != "query" {
        return Err(parse_error(format!(
            "root element <{top}>: expected <request> or <query>"
        )));
    }
    let info = root
        .child("appInfo")
        .ok_or_else(|| parse_error(format!("{top}: <appInfo> is missing")))?;
    let app_id = required(info, "appID", &format!("{top}/appInfo"))?;
    let certificate = match (
        info.child("appCertificate"),
        info.child("appEncryptedCertificate"),
    ) {
        (Some(c), _) => Certificate::Plain(c.text.clone()),
        (None, Some(c)) => Certificate::Encrypted(c.value()),
        (None, None) => {
            return Err(parse_error(format!(
                "{top}/appInfo: <appCertificate> is missing"
            )))
        }
    };
    let op = root
        .children
        .iter()
        .find(|c| c.name != "appInfo")
        .ok_or_else(|| parse_error(format!("{top}: no operation after <appInfo>")))?;
    let path = format!("{top}/{}", op.name);
    let request = match (top, op.name.as_str()) {
        ("request", "login") => Request::Login {
            device: required(op, "deviceName", &path)?,
            user: required(op, "userID", &path)?,
            profile: op
                .child("deviceProfile")
                .map(Node::value)
                .filter(|s| !s.is_empty()),
            duration: match op.child("exclusiveDuration") {
                None => None,
                Some(d) if d.child("indefinite").is_some() => Some(Duration::Indefinite),
                Some(d) => {
                    let t = required(d, "time", &format!("{path}/exclusiveDuration"))?;
                    let m = t.parse::<u32>().map_err(|_| {
                        parse_error(format!(
                            "{path}/exclusiveDuration/time {t:?} is not a number of minutes"
                        ))
                    })?;
                    Some(Duration::Minutes(m))
                }
            },
            origin: origin(op),
        },
        ("request", "logout") => Request::Logout {
            device: required(op, "deviceName", &path)?,
            origin: origin(op),
        },
        ("request", "logoutAll") => Request::LogoutAll { origin: origin(op) },
        ("query", "deviceUserQuery") => Request::DeviceUserQuery {
            devices: list(op, "deviceName", &path)?,
            origin: origin(op),
        },
        ("query", "userDevicesQuery") => Request::UserDevicesQuery {
            users: list(op, "userID", &path)?,
            origin: origin(op),
        },
        ("query", "checkUser") => Request::CheckUser {
            users: list(op, "userID", &path)?,
            origin: origin(op),
        },
        // The developer guide's example says userDeviceProfileQuery, its DTD deviceProfileQuery.
        ("query", "deviceProfileQuery" | "userDeviceProfileQuery") => Request::DeviceProfileQuery {
            users: list(op, "userID", &path)?,
            origin: origin(op),
        },
        ("query", other) => {
            return Err(EmError::new(
                8,
                format!("query type <{other}> undetermined"),
            ))
        }
        (_, other) => {
            return Err(parse_error(format!(
                "unknown operation <{other}> in <{top}>"
            )))
        }
    };
    Ok(Envelope {
        app: AppInfo {
            app_id,
            certificate,
        },
        request,
    })
}

pub fn success() -> String {
    "<response><success/></response>".to_string()
}

pub fn failure(e: &EmError) -> String {
    format!(
        "<response><failure><error code=\"{}\">{}</error></failure></response>",
        e.code,
        escape(&e.message)
    )
}

/// A device's entry in deviceUserResults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceUser {
    LoggedIn(String),
    /// Nobody now; the last user, when there was one.
    None {
        last: Option<String>,
    },
    DoesNotExist,
}

pub fn device_user_results(items: &[(String, DeviceUser)]) -> String {
    let mut out = String::from("<response><deviceUserResults>");
    for (dev, state) in items {
        out.push_str(&format!("<device name=\"{}\">", escape(dev)));
        match state {
            DeviceUser::LoggedIn(u) => {
                out.push_str(&format!("<userID>{}</userID>", percent_encode(u)))
            }
            DeviceUser::None { last: Some(u) } => out.push_str(&format!(
                "<lastlogin>{}</lastlogin><none/>",
                percent_encode(u)
            )),
            DeviceUser::None { last: None } => out.push_str("<none/>"),
            DeviceUser::DoesNotExist => out.push_str("<doesNotExist/>"),
        }
        out.push_str("</device>");
    }
    out.push_str("</deviceUserResults></response>");
    out
}

/// A user and the devices they are logged in on; `None`: no such user.
pub type UserDevices = (String, Option<Vec<String>>);

/// A user's entry in userDevicesResults: the devices they are logged in on.
pub fn user_devices_results(items: &[UserDevices]) -> String {
    let mut out = String::from("<response><userDevicesResults>");
    for (user, devices) in items {
        out.push_str(&format!("<user id=\"{}\">", escape(&percent_encode(user))));
        match devices {
            None => out.push_str("<doesNotExist/>"),
            Some(d) if d.is_empty() => out.push_str("<none/>"),
            Some(d) => {
                for name in d {
                    out.push_str(&format!("<deviceName>{}</deviceName>", escape(name)));
                }
            }
        }
        out.push_str("</user>");
    }
    out.push_str("</userDevicesResults></response>");
    out
}

/// checkUser: whether each user exists in this cluster. UNCONFIRMED format (the DTD gives no
/// result element): `<checkUserResults><user id="u"><exists>true</exists></user>`.
pub fn check_user_results(items: &[(String, bool)]) -> String {
    let mut out = String::from("<response><checkUserResults>");
    for (user, exists) in items {
        out.push_str(&format!(
            "<user id=\"{}\"><exists>{exists}</exists></user>",
            escape(&percent_encode(user))
        ));
    }
    out.push_str("</checkUserResults></response>");
    out
}

/// deviceProfileQuery: each user's device profiles, with the guide's extra elements.
/// UNCONFIRMED element layout inside `<user>`.
/// A user and their device profiles as (name, is default); `None`: no such user.
pub type UserProfiles = (String, Option<Vec<(String, bool)>>);

pub fn device_profile_results(items: &[UserProfiles]) -> String {
    let mut out = String::from("<response><deviceProfileResults>");
    for (user, profiles) in items {
        out.push_str(&format!("<user id=\"{}\">", escape(&percent_encode(user))));
        match profiles {
            None => out.push_str("<doesNotExist/>"),
            Some(p) if p.is_empty() => out.push_str("<none/>"),
            Some(p) => {
                for (name, default) in p {
                    out.push_str(&format!(
                        "<deviceProfile><name>{}</name><isDefaultDeviceProfile>{}</isDefaultDeviceProfile><emccDevice>no</emccDevice></deviceProfile>",
                        escape(name),
                        if *default { "t" } else { "f" }
                    ));
                }
            }
        }
        out.push_str("</user>");
    }
    out.push_str("</deviceProfileResults></response>");
    out
}

/// Writes a login request as Cisco's developer guide shows it (used by `ucm em`).
pub fn login_request(
    app_id: &str,
    password: &str,
    device: &str,
    user: &str,
    profile: Option<&str>,
    duration: Option<Duration>,
) -> String {
    let mut x = format!(
        "<request><appInfo><appID>{}</appID><appCertificate>{}</appCertificate></appInfo><login><deviceName>{}</deviceName><userID>{}</userID>",
        escape(app_id),
        escape(password),
        escape(device),
        escape(user)
    );
    if let Some(p) = profile {
        x.push_str(&format!("<deviceProfile>{}</deviceProfile>", escape(p)));
    }
    match duration {
        Some(Duration::Minutes(m)) => x.push_str(&format!(
            "<exclusiveDuration><time>{m}</time></exclusiveDuration>"
        )),
        Some(Duration::Indefinite) => {
            x.push_str("<exclusiveDuration><indefinite/></exclusiveDuration>")
        }
        None => {}
    }
    x.push_str("</login></request>");
    x
}

pub fn logout_request(app_id: &str, password: &str, device: &str) -> String {
    format!(
        "<request><appInfo><appID>{}</appID><appCertificate>{}</appCertificate></appInfo><logout><deviceName>{}</deviceName></logout></request>",
        escape(app_id),
        escape(password),
        escape(device)
    )
}

pub fn device_user_query(app_id: &str, password: &str, devices: &[&str]) -> String {
    let mut x = format!(
        "<query><appInfo><appID>{}</appID><appCertificate>{}</appCertificate></appInfo><deviceUserQuery>",
        escape(app_id),
        escape(password)
    );
    for d in devices {
        x.push_str(&format!("<deviceName>{}</deviceName>", escape(d)));
    }
    x.push_str("</deviceUserQuery></query>");
    x
}

pub fn user_devices_query(app_id: &str, password: &str, users: &[&str]) -> String {
    let mut x = format!(
        "<query><appInfo><appID>{}</appID><appCertificate>{}</appCertificate></appInfo><userDevicesQuery>",
        escape(app_id),
        escape(password)
    );
    for u in users {
        x.push_str(&format!("<userID>{}</userID>", escape(u)));
    }
    x.push_str("</userDevicesQuery></query>");
    x
}

/// What a response says, for clients (`ucm em`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Success,
    Failure {
        code: u32,
        message: String,
    },
    /// Query results, as the raw XML of the results element's children.
    Results(String),
}

/// Reads a response body from an EM service (ours or Cisco's).
pub fn parse_reply(xml: &str) -> Result<Reply, EmError> {
    let root = read_tree(xml)?;
    if root.name != "response" {
        return Err(parse_error(format!(
            "expected <response>, got <{}>",
            root.name
        )));
    }
    if root.child("success").is_some() {
        return Ok(Reply::Success);
    }
    if let Some(f) = root.child("failure") {
        let e = f.child("error").or_else(|| f.child("errorMessage"));
        let code = e
            .and_then(|e| e.attrs.iter().find(|(k, _)| k == "code"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        return Ok(Reply::Failure {
            code,
            message: e.map(Node::value).unwrap_or_default(),
        });
    }
    Ok(Reply::Results(xml.to_string()))
}

/// Reads deviceUserResults (ours or Cisco's) into (device, state) pairs.
pub fn parse_device_user_results(xml: &str) -> Result<Vec<(String, DeviceUser)>, EmError> {
    let root = read_tree(xml)?;
    let results = root
        .child("deviceUserResults")
        .ok_or_else(|| parse_error("no <deviceUserResults> in the response"))?;
    Ok(results
        .all("device")
        .map(|d| {
            let name = d
                .attrs
                .iter()
                .find(|(k, _)| k == "name")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let unescape = |s: String| form_decode(s.as_bytes());
            let state = if let Some(u) = d.child("userID") {
                DeviceUser::LoggedIn(unescape(u.value()))
            } else if d.child("doesNotExist").is_some() {
                DeviceUser::DoesNotExist
            } else {
                DeviceUser::None {
                    last: d.child("lastlogin").map(|u| unescape(u.value())),
                }
            };
            (name, state)
        })
        .collect())
}

/// Reads userDevicesResults into (user, devices); `None`: no such user.
pub fn parse_user_devices_results(xml: &str) -> Result<Vec<UserDevices>, EmError> {
    let root = read_tree(xml)?;
    let results = root
        .child("userDevicesResults")
        .ok_or_else(|| parse_error("no <userDevicesResults> in the response"))?;
    Ok(results
        .all("user")
        .map(|u| {
            let id = u
                .attrs
                .iter()
                .find(|(k, _)| k == "id")
                .map(|(_, v)| form_decode(v.as_bytes()))
                .unwrap_or_default();
            let devices = if u.child("doesNotExist").is_some() {
                None
            } else {
                Some(u.all("deviceName").map(Node::value).collect())
            };
            (id, devices)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_developer_guide_examples_parse() {
        let login = "<request>\n  <appInfo><appID>appid</appID><appCertificate>apppasswd</appCertificate></appInfo>\n  <login>\n    <deviceName>SEP003094C25B15</deviceName>\n    <userID>john</userID>\n    <deviceProfile>UserDevProf</deviceProfile>\n    <exclusiveDuration><time>60</time></exclusiveDuration>\n  </login>\n</request>";
        let e = parse(login).unwrap();
        assert_eq!(e.app.app_id, "appid");
        assert_eq!(e.app.certificate, Certificate::Plain("apppasswd".into()));
        assert_eq!(
            e.request,
            Request::Login {
                device: "SEP003094C25B15".into(),
                user: "john".into(),
                profile: Some("UserDevProf".into()),
                duration: Some(Duration::Minutes(60)),
                origin: Origin::default(),
            }
        );
        let q = "<query><appInfo><appID>a</appID><appCertificate>p</appCertificate></appInfo><userDeviceProfileQuery><userID>john</userID></userDeviceProfileQuery></query>";
        assert!(matches!(
            parse(q).unwrap().request,
            Request::DeviceProfileQuery { .. }
        ));
        let q = "<query><appInfo><appID>a</appID><appCertificate>p</appCertificate></appInfo><deviceUserQuery><deviceName>SEP1</deviceName><deviceName>SEP2</deviceName><remoteIPAddr>10.0.0.1</remoteIPAddr></deviceUserQuery></query>";
        let Request::DeviceUserQuery { devices, origin } = parse(q).unwrap().request else {
            panic!()
        };
        assert_eq!(devices, ["SEP1", "SEP2"]);
        assert_eq!(origin.remote_ip.as_deref(), Some("10.0.0.1"));
        let r = "<request><appInfo><appID>a</appID><appCertificate>p</appCertificate></appInfo><logoutAll></logoutAll></request>";
        assert!(matches!(
            parse(r).unwrap().request,
            Request::LogoutAll { .. }
        ));
        let r = "<request><appInfo><appID>a</appID><appCertificate>p</appCertificate></appInfo><login><deviceName>SEP1</deviceName><userID>u</userID><exclusiveDuration><indefinite/></exclusiveDuration><isViaHeaderSet>true</isViaHeaderSet></login></request>";
        let Request::Login {
            duration, origin, ..
        } = parse(r).unwrap().request
        else {
            panic!()
        };
        assert_eq!(duration, Some(Duration::Indefinite));
        assert!(origin.via_header_set);
    }

    #[test]
    fn bad_requests_are_error_1_naming_what_is_wrong() {
        let cases = [
            ("", "no root"),
            ("<request>", "ends inside"),
            ("<foo/>", "expected <request> or <query>"),
            ("<request><login/></request>", "<appInfo> is missing"),
            ("<request><appInfo><appID>a</appID></appInfo><logout/></request>", "appCertificate"),
            ("<request><appInfo><appID>a</appID><appCertificate>p</appCertificate></appInfo></request>", "no operation"),
            ("<request><appInfo><appID>a</appID><appCertificate>p</appCertificate></appInfo><login><deviceName>D</deviceName></login></request>", "request/login: <userID> is missing"),
            ("<request><appInfo><appID>a</appID><appCertificate>p</appCertificate></appInfo><login><deviceName>D</deviceName><userID>u</userID><exclusiveDuration><time>soon</time></exclusiveDuration></login></request>", "not a number"),
            ("<request><appInfo><appID>a</appID><appCertificate>p</appCertificate></appInfo><reboot/></request>", "unknown operation <reboot>"),
            ("<request><a></b></request>", "malformed XML"),
            ("<request>&bogus;</request>", "unknown entity"),
        ];
        for (xml, want) in cases {
            let e = parse(xml).unwrap_err();
            assert_eq!(e.code, 1, "{xml}: {e:?}");
            assert!(
                e.message.contains(want),
                "{xml}: {} lacks {want:?}",
                e.message
            );
        }
        let q = "<query><appInfo><appID>a</appID><appCertificate>p</appCertificate></appInfo><whoIsThere/></query>";
        assert_eq!(parse(q).unwrap_err().code, 8);
        let deep = "<a>".repeat(100);
        assert_eq!(parse(&deep).unwrap_err().code, 1);
        let big = format!("<request>{}</request>", "x".repeat(MAX_REQUEST));
        assert!(parse(&big).unwrap_err().message.contains("limit"));
    }

    #[test]
    fn responses_are_written_as_cisco_writes_them_and_read_back() {
        assert_eq!(success(), "<response><success/></response>");
        let f = failure(&EmError::new(3, "Could not authenticate 'appid'"));
        assert_eq!(
            f,
            "<response><failure><error code=\"3\">Could not authenticate &apos;appid&apos;</error></failure></response>"
        );
        assert_eq!(
            parse_reply(&f).unwrap(),
            Reply::Failure {
                code: 3,
                message: "Could not authenticate 'appid'".into()
            }
        );
        let r = device_user_results(&[
            (
                "SEP003094C25B15".into(),
                DeviceUser::LoggedIn("em@cisco.com".into()),
            ),
            (
                "SEP2".into(),
                DeviceUser::None {
                    last: Some("john".into()),
                },
            ),
            ("SEP3".into(), DeviceUser::DoesNotExist),
        ]);
        assert_eq!(
            r,
            "<response><deviceUserResults><device name=\"SEP003094C25B15\"><userID>em%40cisco.com</userID></device><device name=\"SEP2\"><lastlogin>john</lastlogin><none/></device><device name=\"SEP3\"><doesNotExist/></device></deviceUserResults></response>"
        );
        let r = user_devices_results(&[(
            "john".into(),
            Some(vec!["SEP003094C25B15".into(), "SEP003094C25B49".into()]),
        )]);
        assert_eq!(
            r,
            "<response><userDevicesResults><user id=\"john\"><deviceName>SEP003094C25B15</deviceName><deviceName>SEP003094C25B49</deviceName></user></userDevicesResults></response>"
        );
        // Requests the client writes parse back to what was meant.
        let x = login_request(
            "a&b",
            "p<w",
            "SEP1",
            "u",
            Some("P"),
            Some(Duration::Minutes(5)),
        );
        let e = parse(&x).unwrap();
        assert_eq!(e.app.app_id, "a&b");
        assert_eq!(e.app.certificate, Certificate::Plain("p<w".into()));
        assert!(matches!(
            e.request,
            Request::Login {
                duration: Some(Duration::Minutes(5)),
                ..
            }
        ));
    }
}
