//! AXL operations read from the cluster definition, without I/O: a parsed SOAP body in, the
//! response's body element (or an `axlError`) out. SOAP 1.1 document/literal as Cisco's AXL
//! schema defines it: only the operation element is qualified (`http://www.cisco.com/AXL/API/<ver>`),
//! its children are not; children are written in the schema's sequence order.
//!
//! Served: `getCCMVersion`, `listPhone`, `getPhone`, `listUser`, `getUser`,
//! `listRoutePartition`, `listCss`, `listLine`, `getLine`, `listDeviceProfile`,
//! `getDeviceProfile`; the writes are in [`super::write`]. Any other AXL operation gets a fault
//! naming it.

use crate::cluster::Cluster;
use crate::config::model::{
    CallingSearchSpace, Device, DeviceProfile, DirectoryNumber, EndUser, LineAppearance, Partition,
};
use crate::wire::soap::Node;
use crate::wire::xml::escape;

/// Operations this node answers.
pub const OPERATIONS: &[&str] = &[
    "getCCMVersion",
    "listPhone",
    "getPhone",
    "listUser",
    "getUser",
    "listRoutePartition",
    "listCss",
    "listLine",
    "getLine",
    "listDeviceProfile",
    "getDeviceProfile",
];

/// Rows one list answer may carry; Cisco caps a response at 8 MB and tells the client to page
/// with `first`/`skip`.
pub const MAX_LIST_ROWS: usize = 10_000;

/// An AXL fault: `axlError` {`axlcode`, `axlmessage`, `request`} in the SOAP fault's detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxlFault {
    /// `Client` (the request was wrong) or `Server`; Cisco answers "not found" as `Server`.
    pub soap_code: &'static str,
    pub axlcode: i32,
    pub message: String,
    pub request: String,
}

impl AxlFault {
    pub(super) fn not_found(request: &str, object: &str) -> AxlFault {
        AxlFault {
            soap_code: "Server",
            axlcode: 5007,
            message: format!("Item not valid: The specified {object} was not found"),
            request: request.into(),
        }
    }

    /// Cisco's answer to an add of something that exists: the Informix duplicate-key error
    /// (-239) as AXL passes it through.
    pub(super) fn duplicate(request: &str) -> AxlFault {
        AxlFault {
            soap_code: "Server",
            axlcode: -239,
            message: "Could not insert new row - duplicate value in a UNIQUE INDEX column (Unique Index:).".into(),
            request: request.into(),
        }
    }

    /// The node could not do what was asked (its database); the client may retry.
    pub(super) fn server(request: &str, message: impl Into<String>) -> AxlFault {
        AxlFault {
            soap_code: "Server",
            // UNCONFIRMED: Cisco's code for an internal failure; -1 as for request errors.
            axlcode: -1,
            message: message.into(),
            request: request.into(),
        }
    }

    pub(super) fn client(request: &str, message: impl Into<String>) -> AxlFault {
        // -1: not an Informix code; Cisco's own codes for request errors are UNCONFIRMED.
        AxlFault {
            soap_code: "Client",
            axlcode: -1,
            message: message.into(),
            request: request.into(),
        }
    }

    /// The SOAP envelope carrying this fault.
    pub fn envelope(&self) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><soapenv:Fault>\
<faultcode>soapenv:{}</faultcode><faultstring>{}</faultstring><detail><axlError><axlcode>{}</axlcode>\
<axlmessage>{}</axlmessage><request>{}</request></axlError></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>",
            self.soap_code,
            escape(&self.message),
            self.axlcode,
            escape(&self.message),
            escape(&self.request)
        )
    }
}

/// A response envelope: `<ns:{op}Response>` in the request's AXL namespace.
pub fn envelope(version: &str, op: &str, inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body>\
<ns:{op}Response xmlns:ns=\"http://www.cisco.com/AXL/API/{version}\"><return>{inner}</return></ns:{op}Response>\
</soapenv:Body></soapenv:Envelope>"
    )
}

/// The AXL version a request asks for: `SOAPAction: "CUCM:DB ver=12.5 listPhone"`, else the
/// operation element's namespace (`http://www.cisco.com/AXL/API/12.5`).
pub fn version_of(soap_action: Option<&str>, op: &Node) -> Option<String> {
    let from_action = soap_action.and_then(|a| {
        let a = a.trim().trim_matches('"');
        let rest = a.strip_prefix("CUCM:DB ver=")?;
        rest.split_whitespace().next().map(str::to_string)
    });
    let from_ns = op
        .attrs
        .iter()
        // Namespace declarations are kept as attributes (prefix or not).
        .find(|(_, v)| v.starts_with("http://www.cisco.com/AXL/API/"))
        .map(|(_, v)| v["http://www.cisco.com/AXL/API/".len()..].to_string());
    from_action.or(from_ns).filter(|v| {
        !v.is_empty() && v.len() <= 8 && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    })
}

/// A stable braced UUID for an object (the definition has none): derived from its kind and
/// name, so it is the same on every node and across restarts.
pub fn uuid_of(kind: &str, name: &str) -> String {
    let h = crate::node::sha256_hex(&format!("{kind}\0{name}"));
    let h = h.to_uppercase();
    format!(
        "{{{}-{}-{}-{}-{}}}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// SQL LIKE with `%` (any run) and `_` (one character), case-insensitively, as AXL's
/// `searchCriteria` matches.
pub fn like(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let v: Vec<char> = value.to_lowercase().chars().collect();
    // Linear-time wildcard matching with backtracking to the last `%` only.
    let (mut pi, mut vi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '_' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '%' {
        pi += 1;
    }
    pi == p.len()
}

/// Answers one operation. `op` is the body's operation element.
pub fn answer(cluster: &Cluster, version: &str, op: &Node) -> Result<String, AxlFault> {
    let name = op.name.as_str();
    let inner = match name {
        "getCCMVersion" => {
            let def = cluster.definition();
            let v = if def.cluster.version.is_empty() {
                env!("CARGO_PKG_VERSION").to_string()
            } else {
                def.cluster.version.clone()
            };
            format!(
                "<componentVersion><version>{}</version></componentVersion>",
                escape(&v)
            )
        }
        "listPhone" => list_phone(cluster, op)?,
        "getPhone" => get_phone(cluster, op)?,
        "listUser" => list_user(cluster, op)?,
        "getUser" => get_user(cluster, op)?,
        "listRoutePartition" => list_partitions(cluster, op)?,
        "listCss" => list_css(cluster, op)?,
        "listLine" => list_line(cluster, op)?,
        "getLine" => get_line(cluster, op)?,
        "listDeviceProfile" => list_profile(cluster, op)?,
        "getDeviceProfile" => get_profile(cluster, op)?,
        other => {
            return Err(AxlFault::client(
                other,
                format!(
                    "operation {other} is not supported by this node (supported: {}, {})",
                    OPERATIONS.join(", "),
                    super::write::WRITES.join(", ")
                ),
            ))
        }
    };
    Ok(envelope(version, name, &inner))
}

/// The `searchCriteria` of a list request: (tag, pattern) pairs; AXL requires at least one.
fn criteria(op: &Node) -> Result<Vec<(String, String)>, AxlFault> {
    let c = op.child("searchCriteria").ok_or_else(|| {
        AxlFault::client(
            &op.name,
            "searchCriteria is required (at least one criterion)",
        )
    })?;
    let out: Vec<(String, String)> = c
        .children
        .iter()
        .map(|e| (e.name.clone(), e.value()))
        .collect();
    if out.is_empty() {
        return Err(AxlFault::client(
            &op.name,
            "searchCriteria needs at least one criterion (use % to match everything)",
        ));
    }
    Ok(out)
}

/// `returnedTags`: the tags asked for, or `None` (every tag this node knows).
fn returned(op: &Node) -> Option<Vec<String>> {
    let r = op.child("returnedTags")?;
    if r.children.is_empty() {
        return None;
    }
    Some(r.children.iter().map(|e| e.name.clone()).collect())
}

/// `skip` and `first`: which rows of the list (`skip` counts only with `first`, as the schema
/// says).
fn window(op: &Node) -> Result<(usize, usize), AxlFault> {
    let num =
        |tag: &str| -> Result<Option<usize>, AxlFault> {
            match op.child(tag) {
                None => Ok(None),
                Some(e) if e.value().is_empty() => Ok(None),
                Some(e) => e.value().parse::<usize>().map(Some).map_err(|_| {
                    AxlFault::client(&op.name, format!("{tag} must be a whole number"))
                }),
            }
        };
    let first = num("first")?;
    let skip = if first.is_some() {
        num("skip")?.unwrap_or(0)
    } else {
        0
    };
    Ok((skip, first.unwrap_or(usize::MAX).min(MAX_LIST_ROWS)))
}

fn tag(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&escape(value));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// A phone's fields in the schema's order (LPhone/RPhone), as (tag, value).
fn phone_fields(d: &Device) -> Vec<(&'static str, String)> {
    vec![
        ("name", d.name.clone()),
        ("description", d.description.clone().unwrap_or_default()),
        ("product", d.model.clone()),
        ("model", d.model.clone()),
        ("class", "Phone".into()),
        ("protocol", "SIP".into()),
        ("protocolSide", "User".into()),
        ("callingSearchSpaceName", d.css.clone().unwrap_or_default()),
        ("devicePoolName", d.device_pool.clone()),
        ("locationName", d.location.clone().unwrap_or_default()),
        (
            "securityProfileName",
            d.security_profile.clone().unwrap_or_default(),
        ),
        ("userLocale", d.user_locale.clone().unwrap_or_default()),
        (
            "enableExtensionMobility",
            if d.em_enabled { "true" } else { "false" }.into(),
        ),
        ("ownerUserName", d.owner.clone().unwrap_or_default()),
    ]
}

/// A list operation: the objects of `items` matching every `searchCriteria` (a criterion's
/// value read by `criterion`; one this node does not keep reads empty, so it matches nothing
/// but `%`), windowed by `skip`/`first`, each as `<elem uuid=…>` with the `returnedTags` asked
/// of `fields` (all of them when none are).
fn list<'a, T: 'a>(
    op: &Node,
    items: impl Iterator<Item = &'a T>,
    elem: &str,
    uuid: impl Fn(&T) -> String,
    criterion: impl Fn(&T, &str) -> String,
    fields: impl Fn(&T) -> Vec<(&'static str, String)>,
) -> Result<String, AxlFault> {
    let crit = criteria(op)?;
    let tags = returned(op);
    let (skip, first) = window(op)?;
    let mut out = String::new();
    for x in items
        .filter(|x| crit.iter().all(|(k, p)| like(p, &criterion(x, k))))
        .skip(skip)
        .take(first)
    {
        out.push_str(&format!("<{elem} uuid=\"{}\">", uuid(x)));
        for (t, v) in fields(x) {
            if tags.as_ref().is_none_or(|ts| ts.iter().any(|w| w == t)) {
                tag(&mut out, t, &v);
            }
        }
        out.push_str(&format!("</{elem}>"));
    }
    Ok(out)
}

fn list_phone(cluster: &Cluster, op: &Node) -> Result<String, AxlFault> {
    let criterion = |d: &Device, k: &str| match k {
        "name" => d.name.clone(),
        "description" => d.description.clone().unwrap_or_default(),
        "protocol" => "SIP".into(),
        "callingSearchSpaceName" => d.css.clone().unwrap_or_default(),
        "devicePoolName" => d.device_pool.clone(),
        "securityProfileName" => d.security_profile.clone().unwrap_or_default(),
        _ => String::new(),
    };
    let devices = cluster.definition().devices.iter();
    list(
        op,
        devices,
        "phone",
        |d| uuid_of("phone", &d.name),
        criterion,
        phone_fields,
    )
}

/// `name` or `uuid` of a get request.
fn named(op: &Node, key: &str) -> Option<String> {
    op.child(key).map(|e| e.value()).filter(|v| !v.is_empty())
}

fn get_phone(cluster: &Cluster, op: &Node) -> Result<String, AxlFault> {
    let def = cluster.definition();
    let d = match (named(op, "name"), named(op, "uuid")) {
        (Some(n), _) => def.devices.iter().find(|d| d.name.eq_ignore_ascii_case(&n)),
        (None, Some(u)) => def
            .devices
            .iter()
            .find(|d| uuid_of("phone", &d.name).eq_ignore_ascii_case(&u)),
        (None, None) => {
            return Err(AxlFault::client(&op.name, "getPhone needs name or uuid"));
        }
    }
    .ok_or_else(|| AxlFault::not_found(&op.name, "Device"))?;
    let tags = returned(op);
    let want = |t: &str| tags.as_ref().is_none_or(|ts| ts.iter().any(|x| x == t));
    let mut out = format!("<phone uuid=\"{}\">", uuid_of("phone", &d.name));
    for (t, v) in phone_fields(d) {
        // RPhone puts `lines` after `securityProfileName` and before `userLocale`.
        if t == "userLocale" && want("lines") {
            line_appearances(&mut out, &d.name, &cluster.lines_of(d));
        }
        if want(t) {
            tag(&mut out, t, &v);
        }
    }
    out.push_str("</phone>");
    Ok(out)
}

/// `<lines>` of a phone or device profile (RPhone/RDeviceProfile's XPhoneLine): index, label,
/// display, dirn.
fn line_appearances(out: &mut String, owner: &str, lines: &[LineAppearance]) {
    out.push_str("<lines>");
    for (i, l) in lines.iter().enumerate() {
        out.push_str(&format!(
            "<line uuid=\"{}\"><index>{}</index>",
            uuid_of("line", &format!("{owner}/{}", i + 1)),
            i + 1
        ));
        tag(out, "label", l.label.as_deref().unwrap_or_default());
        tag(out, "display", l.display.as_deref().unwrap_or_default());
        out.push_str("<dirn>");
        tag(out, "pattern", &l.dn);
        tag(
            out,
            "routePartitionName",
            l.partition.as_deref().unwrap_or_default(),
        );
        out.push_str("</dirn></line>");
    }
    out.push_str("</lines>");
}

/// A line's fields in LLine/RLine order (the ones this cluster keeps).
fn line_fields(d: &DirectoryNumber) -> Vec<(&'static str, String)> {
    let alerting = d.alerting_name.clone().unwrap_or_default();
    vec![
        ("pattern", d.pattern.clone()),
        ("description", d.description.clone().unwrap_or_default()),
        ("usage", "Device".into()),
        (
            "routePartitionName",
            d.partition.clone().unwrap_or_default(),
        ),
        ("alertingName", alerting.clone()),
        ("asciiAlertingName", alerting),
        (
            "shareLineAppearanceCssName",
            d.css.clone().unwrap_or_default(),
        ),
    ]
}

fn line_uuid(d: &DirectoryNumber) -> String {
    uuid_of(
        "line",
        &super::write::line_key(&d.pattern, d.partition.as_deref()),
    )
}

fn list_line(cluster: &Cluster, op: &Node) -> Result<String, AxlFault> {
    let criterion = |d: &DirectoryNumber, k: &str| match k {
        "pattern" => d.pattern.clone(),
        "description" => d.description.clone().unwrap_or_default(),
        "usage" => "Device".into(),
        "routePartitionName" => d.partition.clone().unwrap_or_default(),
        _ => String::new(),
    };
    let lines = cluster.definition().directory_numbers.iter();
    list(op, lines, "line", line_uuid, criterion, line_fields)
}

fn get_line(cluster: &Cluster, op: &Node) -> Result<String, AxlFault> {
    let def = cluster.definition();
    let d = match (named(op, "pattern"), named(op, "uuid")) {
        (Some(p), _) => {
            let part = named(op, "routePartitionName");
            def.directory_numbers
                .iter()
                .find(|d| d.pattern == p && d.partition == part)
        }
        (None, Some(u)) => def
            .directory_numbers
            .iter()
            .find(|d| line_uuid(d).eq_ignore_ascii_case(&u)),
        (None, None) => {
            return Err(AxlFault::client(
                &op.name,
                "getLine needs pattern (and routePartitionName) or uuid",
            ))
        }
    }
    .ok_or_else(|| AxlFault::not_found(&op.name, "Line"))?;
    let tags = returned(op);
    let want = |t: &str| tags.as_ref().is_none_or(|ts| ts.iter().any(|x| x == t));
    let mut out = format!("<line uuid=\"{}\">", line_uuid(d));
    for (t, v) in line_fields(d) {
        if want(t) {
            tag(&mut out, t, &v);
        }
    }
    // RLine: the devices with an appearance of the line, last of what this cluster keeps.
    if want("associatedDevices") {
        out.push_str("<associatedDevices>");
        for dev in def.devices.iter().filter(|x| {
            x.lines
                .iter()
                .any(|l| l.dn == d.pattern && l.partition == d.partition)
        }) {
            tag(&mut out, "device", &dev.name);
        }
        out.push_str("</associatedDevices>");
    }
    out.push_str("</line>");
    Ok(out)
}

/// A device profile's fields in LDeviceProfile/RDeviceProfile order; `lines` goes before
/// `userLocale`.
fn profile_fields(p: &DeviceProfile) -> Vec<(&'static str, String)> {
    let model = p.model.clone().unwrap_or_default();
    vec![
        ("name", p.name.clone()),
        ("description", p.description.clone().unwrap_or_default()),
        ("product", model.clone()),
        ("model", model),
        ("class", "Device Profile".into()),
        ("protocol", "SIP".into()),
        ("protocolSide", "User".into()),
        ("userLocale", p.user_locale.clone().unwrap_or_default()),
    ]
}

fn list_profile(cluster: &Cluster, op: &Node) -> Result<String, AxlFault> {
    let criterion = |p: &DeviceProfile, k: &str| match k {
        "name" => p.name.clone(),
        "description" => p.description.clone().unwrap_or_default(),
        _ => String::new(),
    };
    let profiles = cluster.definition().device_profiles.iter();
    let uuid = |p: &DeviceProfile| uuid_of("deviceProfile", &p.name);
    list(
        op,
        profiles,
        "deviceProfile",
        uuid,
        criterion,
        profile_fields,
    )
}

fn get_profile(cluster: &Cluster, op: &Node) -> Result<String, AxlFault> {
    let def = cluster.definition();
    let p = match (named(op, "name"), named(op, "uuid")) {
        (Some(n), _) => def.device_profiles.iter().find(|p| p.name == n),
        (None, Some(u)) => def
            .device_profiles
            .iter()
            .find(|p| uuid_of("deviceProfile", &p.name).eq_ignore_ascii_case(&u)),
        (None, None) => {
            return Err(AxlFault::client(
                &op.name,
                "getDeviceProfile needs name or uuid",
            ))
        }
    }
    .ok_or_else(|| AxlFault::not_found(&op.name, "Device Profile"))?;
    let tags = returned(op);
    let want = |t: &str| tags.as_ref().is_none_or(|ts| ts.iter().any(|x| x == t));
    let mut out = format!(
        "<deviceProfile uuid=\"{}\">",
        uuid_of("deviceProfile", &p.name)
    );
    for (t, v) in profile_fields(p) {
        if t == "userLocale" && want("lines") {
            line_appearances(&mut out, &p.name, &p.lines);
        }
        if want(t) {
            tag(&mut out, t, &v);
        }
    }
    out.push_str("</deviceProfile>");
    Ok(out)
}

fn user_fields(u: &EndUser) -> Vec<(&'static str, String)> {
    vec![
        ("firstName", u.first_name.clone().unwrap_or_default()),
        ("lastName", u.last_name.clone()),
        ("userid", u.userid.clone()),
        ("mailid", u.mail.clone().unwrap_or_default()),
    ]
}

fn list_user(cluster: &Cluster, op: &Node) -> Result<String, AxlFault> {
    let criterion = |u: &EndUser, k: &str| match k {
        "firstName" => u.first_name.clone().unwrap_or_default(),
        "lastName" => u.last_name.clone(),
        "userid" => u.userid.clone(),
        _ => String::new(),
    };
    let users = cluster.definition().end_users.iter();
    list(
        op,
        users,
        "user",
        |u| uuid_of("user", &u.userid),
        criterion,
        user_fields,
    )
}

fn get_user(cluster: &Cluster, op: &Node) -> Result<String, AxlFault> {
    let def = cluster.definition();
    let u = match (named(op, "userid"), named(op, "uuid")) {
        (Some(n), _) => def.end_users.iter().find(|u| u.userid == n),
        (None, Some(id)) => def
            .end_users
            .iter()
            .find(|u| uuid_of("user", &u.userid).eq_ignore_ascii_case(&id)),
        (None, None) => return Err(AxlFault::client(&op.name, "getUser needs userid or uuid")),
    }
    .ok_or_else(|| AxlFault::not_found(&op.name, "User"))?;
    let tags = returned(op);
    let want = |t: &str| tags.as_ref().is_none_or(|ts| ts.iter().any(|x| x == t));
    let mut out = format!("<user uuid=\"{}\">", uuid_of("user", &u.userid));
    for (t, v) in user_fields(u) {
        if want(t) {
            tag(&mut out, t, &v);
        }
        // RUser: associatedDevices comes after mailid (department, manager, userLocale are
        // not kept), and the primary extension after it.
        if t == "mailid" && want("associatedDevices") {
            out.push_str("<associatedDevices>");
            for d in &u.associated_devices {
                tag(&mut out, "device", d);
            }
            out.push_str("</associatedDevices>");
        }
    }
    out.push_str("</user>");
    Ok(out)
}

fn list_partitions(cluster: &Cluster, op: &Node) -> Result<String, AxlFault> {
    let criterion = |p: &Partition, k: &str| match k {
        "name" => p.name.clone(),
        "description" => p.description.clone().unwrap_or_default(),
        _ => String::new(),
    };
    let fields = |p: &Partition| {
        vec![
            ("name", p.name.clone()),
            ("description", p.description.clone().unwrap_or_default()),
        ]
    };
    let partitions = cluster.definition().partitions.iter();
    let uuid = |p: &Partition| uuid_of("routePartition", &p.name);
    list(op, partitions, "routePartition", uuid, criterion, fields)
}

fn list_css(cluster: &Cluster, op: &Node) -> Result<String, AxlFault> {
    let criterion = |c: &CallingSearchSpace, k: &str| match k {
        "name" => c.name.clone(),
        "description" => c.description.clone().unwrap_or_default(),
        _ => String::new(),
    };
    // LCss order: description, clause (the partitions in search order, colon-separated),
    // name.
    let fields = |c: &CallingSearchSpace| {
        vec![
            ("description", c.description.clone().unwrap_or_default()),
            ("clause", c.partitions.join(":")),
            ("name", c.name.clone()),
        ]
    };
    let spaces = cluster.definition().calling_search_spaces.iter();
    list(
        op,
        spaces,
        "css",
        |c| uuid_of("css", &c.name),
        criterion,
        fields,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_matches_as_sql_does() {
        assert!(like("%", ""));
        assert!(like("SEP%", "SEP00036BC7B973"));
        assert!(like("sep%73", "SEP00036BC7B973"));
        assert!(!like("SEP%74", "SEP00036BC7B973"));
        assert!(like("_EP%", "SEP1"));
        assert!(!like("abc", "abcd"));
        assert!(like("%a%b%c%", "xxaxxbxxcxx"));
        // No exponential backtracking on hostile patterns.
        let p = "%a".repeat(500);
        assert!(!like(&p, &"a".repeat(499)));
    }

    #[test]
    fn uuids_are_braced_stable_and_distinct() {
        let a = uuid_of("phone", "SEP00036BC7B973");
        assert_eq!(a, uuid_of("phone", "SEP00036BC7B973"));
        assert_ne!(a, uuid_of("user", "SEP00036BC7B973"));
        assert_eq!(a.len(), 38);
        assert!(a.starts_with('{') && a.ends_with('}'));
    }

    #[test]
    fn version_comes_from_soap_action_or_namespace() {
        let op = Node {
            name: "listPhone".into(),
            attrs: vec![(
                "xmlns:ns0".into(),
                "http://www.cisco.com/AXL/API/11.5".into(),
            )],
            ..Default::default()
        };
        assert_eq!(
            version_of(Some("\"CUCM:DB ver=12.5 listPhone\""), &op).as_deref(),
            Some("12.5")
        );
        assert_eq!(version_of(None, &op).as_deref(), Some("11.5"));
        assert_eq!(version_of(Some("CUCM:DB ver=<x>"), &Node::default()), None);
    }

    #[test]
    fn a_fault_carries_the_axl_error() {
        let f = AxlFault::not_found("getUser", "User");
        let x = f.envelope();
        assert!(x.contains("<axlcode>5007</axlcode>"), "{x}");
        assert!(x.contains("<faultcode>soapenv:Server</faultcode>"));
        assert!(x.contains("<request>getUser</request>"));
    }
}
