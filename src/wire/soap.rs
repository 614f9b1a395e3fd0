//! WebDialer's SOAP 1.1 rpc/encoded interface (Cisco's wd70 WSDL, namespace `urn:WD70`), by
//! hand over quick-xml: requests parsed into [`Request`], responses written the way Axis 1
//! writes them (multiRef for complex results), faults for envelopes that are not a request.
//!
//! Requests may carry their complex parts inline (zeep, SoapUI, Cisco's samples) or as Axis
//! `href="#id"` references to `multiRef` elements; both resolve to the same [`Request`].

use super::xml::escape;

/// Largest request body accepted (a makeCall is well under 2 KiB).
pub const MAX_REQUEST: usize = 64 * 1024;
const MAX_DEPTH: usize = 32;
const MAX_ELEMENTS: usize = 2000;

pub const NS_WD70: &str = "urn:WD70";
/// The pre-7.0 service's namespace (`/webdialer/services/WebdialerSoapService`).
pub const NS_LEGACY: &str = "urn:WebdialerSoap";
const NS_SOAPENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// The namespace of the 7.0 WSDL's base types (`tns1`: Credential, WDDeviceInfo ...).
pub const NS_TYPES: &str = "http://webdialer.ccm.cisco.com";

/// Cisco's wd70 WSDL; `{address}` is replaced by the node's service URL.
const WSDL_TEMPLATE: &str = include_str!("wd70.wsdl");

/// The WSDL with this node's SOAP address in `soap:address`.
pub fn wsdl(service_url: &str) -> String {
    WSDL_TEMPLATE.replace("{address}", &escape(service_url))
}

/// The `Credential` part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credential {
    pub user_id: String,
    pub password: String,
    pub token: Option<String>,
}

/// The `UserProfile` part (locale, dontAutoClose and dontShowCallConf are ignored, as Cisco
/// has since 10.0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserProfile {
    pub user: String,
    pub device_name: String,
    pub line_number: String,
    pub support_em: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    MakeCall {
        cred: Credential,
        destination: String,
        profile: UserProfile,
    },
    EndCall {
        cred: Credential,
        profile: UserProfile,
    },
    GetProfile {
        cred: Credential,
        user: String,
    },
    GetProfileDetail {
        cred: Credential,
    },
    IsClusterUser {
        user: String,
    },
    GetPrimaryLine {
        cred: Credential,
    },
}

impl Request {
    pub fn operation(&self) -> &'static str {
        match self {
            Request::MakeCall { .. } => "makeCallSoap",
            Request::EndCall { .. } => "endCallSoap",
            Request::GetProfile { .. } => "getProfileSoap",
            Request::GetProfileDetail { .. } => "getProfileDetailSoap",
            Request::IsClusterUser { .. } => "isClusterUserSoap",
            Request::GetPrimaryLine { .. } => "getPrimaryLine",
        }
    }
}

/// Which SOAP service a request came to: the 7.0 one, or the pre-7.0 `WebdialerSoapService`
/// (namespace `urn:WebdialerSoap`), which has the same parts for makeCallSoap, endCallSoap,
/// getProfileSoap and isClusterUserSoap but not the operations 7.0 added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Wd70,
    Legacy,
}

impl Service {
    pub fn ns(self) -> &'static str {
        match self {
            Service::Wd70 => NS_WD70,
            Service::Legacy => NS_LEGACY,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Service::Wd70 => "WebdialerSoapService70",
            Service::Legacy => "WebdialerSoapService",
        }
    }

    fn operations(self) -> &'static str {
        match self {
            Service::Wd70 => "makeCallSoap, endCallSoap, getProfileSoap, getProfileDetailSoap, isClusterUserSoap, getPrimaryLine",
            Service::Legacy => "makeCallSoap, endCallSoap, getProfileSoap, isClusterUserSoap",
        }
    }
}

/// Why an envelope is not a request: the faultstring of a `Client` fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

fn bad(msg: impl Into<String>) -> Malformed {
    Malformed(msg.into())
}

/// The shared bounded element tree (local names, text, children; no DOCTYPE).
pub use super::xml::tree::Element as Node;

fn is_nil(n: &Node) -> bool {
    matches!(n.attr("nil"), Some("true" | "1"))
}

/// Parses a document into a bounded tree (no DOCTYPE expansion, depth and size limits).
pub fn read_tree(xml: &str) -> Result<Node, Malformed> {
    if xml.len() > MAX_REQUEST {
        return Err(bad(format!(
            "request of {} bytes is over the {MAX_REQUEST}-byte limit",
            xml.len()
        )));
    }
    let root = super::xml::tree::read(xml, MAX_DEPTH, MAX_ELEMENTS).map_err(|e| {
        if e.starts_with("DOCTYPE") {
            bad("DOCTYPE is not allowed in a SOAP message")
        } else {
            bad(e)
        }
    })?;
    root.ok_or_else(|| {
        if xml.trim().is_empty() {
            bad("empty request: no SOAP envelope")
        } else {
            bad("not a SOAP 1.1 envelope: the request has no XML element")
        }
    })
}

/// The body's elements: the operation first, then any Axis multiRefs.
fn body(root: &Node) -> Result<&Node, Malformed> {
    if root.name != "Envelope" {
        return Err(bad(format!(
            "the root element is <{}>, not a SOAP 1.1 <Envelope>",
            root.name
        )));
    }
    root.child("Body")
        .ok_or_else(|| bad("the SOAP envelope has no <Body>"))
}

/// A part: inline, or an `href="#id"` to a multiRef sibling of the operation.
fn part<'a>(body: &'a Node, op: &'a Node, name: &str) -> Option<&'a Node> {
    let p = op.child(name)?;
    match p.attr("href").and_then(|h| h.strip_prefix('#')) {
        Some(id) => body.children.iter().find(|n| n.attr("id") == Some(id)),
        None => Some(p),
    }
}

fn text_of(body: &Node, n: &Node, field: &str) -> String {
    let Some(c) = n.child(field) else {
        return String::new();
    };
    let c = match c.attr("href").and_then(|h| h.strip_prefix('#')) {
        Some(id) => match body.children.iter().find(|x| x.attr("id") == Some(id)) {
            Some(x) => x,
            None => return String::new(),
        },
        None => c,
    };
    if is_nil(c) {
        String::new()
    } else {
        c.text.trim().to_string()
    }
}

fn credential(body: &Node, op: &Node) -> Credential {
    match part(body, op, "in0") {
        None => Credential::default(),
        Some(n) => Credential {
            user_id: text_of(body, n, "userID"),
            password: text_of(body, n, "password"),
            token: Some(text_of(body, n, "token")).filter(|t| !t.is_empty()),
        },
    }
}

fn profile(body: &Node, op: &Node, name: &str) -> UserProfile {
    match part(body, op, name) {
        None => UserProfile::default(),
        Some(n) => UserProfile {
            user: text_of(body, n, "user"),
            device_name: text_of(body, n, "deviceName"),
            line_number: text_of(body, n, "lineNumber"),
            support_em: matches!(text_of(body, n, "supportEM").as_str(), "true" | "1"),
        },
    }
}

fn string_part(body: &Node, op: &Node, name: &str) -> String {
    match part(body, op, name) {
        Some(n) if !is_nil(n) => n.text.trim().to_string(),
        _ => String::new(),
    }
}

/// Parses a SOAP request to the 7.0 service. Missing parts come back empty (the service
/// answers code 5 for them, as Cisco's does); only envelopes that are not a WebDialer request
/// are [`Malformed`].
pub fn parse(xml: &str) -> Result<Request, Malformed> {
    parse_for(xml, Service::Wd70)
}

/// Parses a SOAP request to `service`: an operation that service lacks is [`Malformed`].
pub fn parse_for(xml: &str, service: Service) -> Result<Request, Malformed> {
    let root = read_tree(xml)?;
    let body = body(&root)?;
    let op = body
        .children
        .iter()
        .find(|c| c.name != "multiRef" && c.attr("root") != Some("0"))
        .ok_or_else(|| bad("the SOAP Body is empty"))?;
    Ok(match op.name.as_str() {
        "makeCallSoap" => Request::MakeCall {
            cred: credential(body, op),
            destination: string_part(body, op, "in1"),
            profile: profile(body, op, "in2"),
        },
        "endCallSoap" => Request::EndCall {
            cred: credential(body, op),
            profile: profile(body, op, "in1"),
        },
        "getProfileSoap" => Request::GetProfile {
            cred: credential(body, op),
            user: string_part(body, op, "in1"),
        },
        "getProfileDetailSoap" if service == Service::Wd70 => Request::GetProfileDetail {
            cred: credential(body, op),
        },
        "isClusterUserSoap" => Request::IsClusterUser {
            user: string_part(body, op, "in0"),
        },
        "getPrimaryLine" if service == Service::Wd70 => Request::GetPrimaryLine {
            cred: credential(body, op),
        },
        other => {
            return Err(bad(format!(
                "no operation {other:?} in {} ({})",
                service.name(),
                service.operations()
            )))
        }
    })
}

fn envelope(inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<soapenv:Envelope xmlns:soapenv=\"{NS_SOAPENV}\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" \
xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>"
    )
}

const ENC: &str = "soapenv:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"";
const SOAPENC: &str = "xmlns:soapenc=\"http://schemas.xmlsoap.org/soap/encoding/\"";

/// makeCallSoap / endCallSoap response: a CallResponse multiRef.
pub fn call_response(ns: &str, op: &str, code: u32, description: &str) -> String {
    envelope(&format!(
        "<ns1:{op}Response {ENC} xmlns:ns1=\"{ns}\"><{op}Return href=\"#id0\"/></ns1:{op}Response>\
<multiRef id=\"id0\" soapenc:root=\"0\" {ENC} xsi:type=\"ns2:CallResponse\" {SOAPENC} xmlns:ns2=\"{ns}\">\
<responseCode xsi:type=\"xsd:int\">{code}</responseCode>\
<responseDescription xsi:type=\"xsd:string\">{}</responseDescription></multiRef>",
        escape(description)
    ))
}

/// One device and its lines (`1000 ; Internal_PT` items).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub device_name: String,
    pub lines: Vec<String>,
    pub phone_desc: String,
    pub phone_type: String,
}

/// getProfileSoap response: GetConfigResponse with an array of WDDeviceInfo (one per line, as
/// Cisco lists them).
pub fn profile_response(ns: &str, code: u32, description: &str, devices: &[DeviceInfo]) -> String {
    let items: Vec<(&str, &str)> = devices
        .iter()
        .flat_map(|d| {
            d.lines
                .iter()
                .map(move |l| (d.device_name.as_str(), l.as_str()))
        })
        .collect();
    // The 7.0 WSDL types the items `tns1:WDDeviceInfo` (http://webdialer.ccm.cisco.com): a
    // client generated from it reads nothing else. The pre-7.0 service keeps its own namespace,
    // which its old clients were generated with.
    let item_ns = if ns == NS_WD70 { NS_TYPES } else { ns };
    let mut refs = String::new();
    let mut multi = String::new();
    for (i, (dev, line)) in items.iter().enumerate() {
        let id = i + 2;
        refs.push_str(&format!("<item href=\"#id{id}\"/>"));
        multi.push_str(&format!(
            "<multiRef id=\"id{id}\" soapenc:root=\"0\" {ENC} xsi:type=\"ns3:WDDeviceInfo\" \
{SOAPENC} xmlns:ns3=\"{item_ns}\"><deviceName xsi:type=\"xsd:string\">{}</deviceName>\
<lines xsi:type=\"xsd:string\">{}</lines></multiRef>",
            escape(dev),
            escape(line)
        ));
    }
    envelope(&format!(
        "<ns1:getProfileSoapResponse {ENC} xmlns:ns1=\"{ns}\"><getProfileSoapReturn href=\"#id0\"/>\
</ns1:getProfileSoapResponse><multiRef id=\"id0\" soapenc:root=\"0\" {ENC} xsi:type=\"ns2:GetConfigResponse\" \
{SOAPENC} xmlns:ns2=\"{ns}\"><description xsi:type=\"xsd:string\">{}</description>\
<deviceInfoList href=\"#id1\"/><responseCode xsi:type=\"xsd:int\">{code}</responseCode></multiRef>\
<multiRef id=\"id1\" soapenc:root=\"0\" {ENC} soapenc:arrayType=\"ns3:WDDeviceInfo[{}]\" \
xsi:type=\"soapenc:Array\" {SOAPENC} xmlns:ns3=\"{item_ns}\">{refs}</multiRef>{multi}",
        escape(description),
        items.len()
    ))
}

/// getProfileDetailSoap response: ConfigResponseDetail with WDDeviceInfoDetail items.
pub fn profile_detail_response(code: u32, description: &str, devices: &[DeviceInfo]) -> String {
    let mut items = String::new();
    for d in devices {
        let lines: String = d
            .lines
            .iter()
            .map(|l| format!("<item xsi:type=\"soapenc:string\">{}</item>", escape(l)))
            .collect();
        items.push_str(&format!(
            "<item xsi:type=\"ns1:WDDeviceInfoDetail\"><deviceName xsi:type=\"soapenc:string\">{}</deviceName>\
<lines xsi:type=\"soapenc:Array\" soapenc:arrayType=\"soapenc:string[{}]\">{lines}</lines>\
<phoneDesc xsi:type=\"soapenc:string\">{}</phoneDesc><phoneType xsi:type=\"soapenc:string\">{}</phoneType></item>",
            escape(&d.device_name),
            d.lines.len(),
            escape(&d.phone_desc),
            escape(&d.phone_type)
        ));
    }
    envelope(&format!(
        "<ns1:getProfileDetailSoapResponse {ENC} xmlns:ns1=\"{NS_WD70}\" {SOAPENC}>\
<getProfileDetailSoapReturn xsi:type=\"ns1:ConfigResponseDetail\">\
<description xsi:type=\"soapenc:string\">{}</description>\
<deviceInfoListDetail xsi:type=\"soapenc:Array\" soapenc:arrayType=\"ns1:WDDeviceInfoDetail[{}]\">{items}</deviceInfoListDetail>\
<responseCode xsi:type=\"xsd:int\">{code}</responseCode></getProfileDetailSoapReturn></ns1:getProfileDetailSoapResponse>",
        escape(description),
        devices.len()
    ))
}

pub fn is_cluster_user_response(ns: &str, yes: bool) -> String {
    envelope(&format!(
        "<ns1:isClusterUserSoapResponse {ENC} xmlns:ns1=\"{ns}\">\
<isClusterUserSoapReturn xsi:type=\"xsd:boolean\">{yes}</isClusterUserSoapReturn></ns1:isClusterUserSoapResponse>"
    ))
}

pub fn primary_line_response(dn: &str) -> String {
    envelope(&format!(
        "<ns1:getPrimaryLineResponse {ENC} xmlns:ns1=\"{NS_WD70}\" {SOAPENC}>\
<getPrimaryLineReturn xsi:type=\"soapenc:string\">{}</getPrimaryLineReturn></ns1:getPrimaryLineResponse>",
        escape(dn)
    ))
}

/// A SOAP 1.1 fault (`Client`: the request was wrong; `Server`: we failed).
pub fn fault(code: &str, message: &str) -> String {
    envelope(&format!(
        "<soapenv:Fault><faultcode>soapenv:{code}</faultcode><faultstring>{}</faultstring></soapenv:Fault>",
        escape(message)
    ))
}

// ---- client side: requests as Cisco's samples write them, and reading any response ----

fn cred_xml(c: &Credential) -> String {
    format!(
        "<in0 xsi:type=\"urn:Credential\"><userID xsi:type=\"xsd:string\">{}</userID>\
<password xsi:type=\"xsd:string\">{}</password></in0>",
        escape(&c.user_id),
        escape(&c.password)
    )
}

fn profile_xml(part: &str, p: &UserProfile) -> String {
    format!(
        "<{part} xsi:type=\"urn:UserProfile\"><user xsi:type=\"xsd:string\">{}</user>\
<deviceName xsi:type=\"xsd:string\">{}</deviceName><lineNumber xsi:type=\"xsd:string\">{}</lineNumber>\
<supportEM xsi:type=\"xsd:boolean\">{}</supportEM><locale xsi:type=\"xsd:string\">English</locale>\
<dontAutoClose xsi:type=\"xsd:boolean\">false</dontAutoClose>\
<dontShowCallConf xsi:type=\"xsd:boolean\">true</dontShowCallConf></{part}>",
        escape(&p.user),
        escape(&p.device_name),
        escape(&p.line_number),
        p.support_em
    )
}

fn string_xml(part: &str, s: &str) -> String {
    format!(
        "<{part} {SOAPENC} xsi:type=\"soapenc:string\">{}</{part}>",
        escape(s)
    )
}

/// The request envelope for `req`, as the pyCiscoWebDialer and Cisco's guide write it.
pub fn request_xml(req: &Request) -> String {
    let parts = match req {
        Request::MakeCall {
            cred,
            destination,
            profile,
        } => format!(
            "{}{}{}",
            cred_xml(cred),
            string_xml("in1", destination),
            profile_xml("in2", profile)
        ),
        Request::EndCall { cred, profile } => {
            format!("{}{}", cred_xml(cred), profile_xml("in1", profile))
        }
        Request::GetProfile { cred, user } => {
            format!("{}{}", cred_xml(cred), string_xml("in1", user))
        }
        Request::GetProfileDetail { cred } | Request::GetPrimaryLine { cred } => cred_xml(cred),
        Request::IsClusterUser { user } => string_xml("in0", user),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<soapenv:Envelope xmlns:soapenv=\"{NS_SOAPENV}\" xmlns:urn=\"{NS_WD70}\" \
xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\
<soapenv:Header/><soapenv:Body><urn:{op} {ENC}>{parts}</urn:{op}></soapenv:Body></soapenv:Envelope>",
        op = req.operation()
    )
}

/// What a response said, read without depending on prefixes or multiRef layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    pub fault: Option<String>,
    pub response_code: Option<u32>,
    pub description: String,
    /// getProfile(Detail): (device, lines) in document order, merged by device.
    pub devices: Vec<(String, Vec<String>)>,
    /// isClusterUser / getPrimaryLine: the plain return value.
    pub value: Option<String>,
}

/// Reads a response envelope.
pub fn parse_reply(xml: &str) -> Result<Reply, Malformed> {
    let root = read_tree(xml)?;
    let body = body(&root)?;
    let mut r = Reply::default();
    if let Some(f) = body.child("Fault") {
        r.fault = Some(
            f.child("faultstring")
                .map(|s| s.text.trim().to_string())
                .unwrap_or_default(),
        );
        return Ok(r);
    }
    fn walk(n: &Node, r: &mut Reply, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        match n.name.as_str() {
            "responseCode" => r.response_code = n.text.trim().parse().ok(),
            "responseDescription" | "description" => r.description = n.text.trim().to_string(),
            "isClusterUserSoapReturn" | "getPrimaryLineReturn" if n.attr("href").is_none() => {
                r.value = Some(n.text.trim().to_string())
            }
            "deviceName" => {
                let d = n.text.trim().to_string();
                if r.devices.last().map(|x| &x.0) != Some(&d) {
                    if let Some(i) = r.devices.iter().position(|x| x.0 == d) {
                        let e = r.devices.remove(i);
                        r.devices.push(e);
                    } else {
                        r.devices.push((d, Vec::new()));
                    }
                }
            }
            "lines" if n.children.is_empty() && n.attr("href").is_none() => {
                if let Some(last) = r.devices.last_mut() {
                    let l = n.text.trim();
                    if !l.is_empty() {
                        last.1.push(l.to_string());
                    }
                }
            }
            "item" if n.children.is_empty() && n.attr("href").is_none() => {
                if let Some(last) = r.devices.last_mut() {
                    last.1.push(n.text.trim().to_string());
                }
            }
            _ => {}
        }
        for c in &n.children {
            walk(c, r, depth + 1);
        }
    }
    walk(body, &mut r, 0);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PY_MAKECALL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:WD70" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
   <soapenv:Header />
   <soapenv:Body>
      <urn:makeCallSoap soapenv:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
         <in0 xsi:type="urn:Credential">
            <userID xsi:type="xsd:string">jsmith</userID>
            <password xsi:type="xsd:string">a&amp;b</password>
         </in0>
         <in1 xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xsi:type="soapenc:string">10002</in1>
         <in2 xsi:type="urn:UserProfile">
            <user xsi:type="xsd:string">jsmith</user>
            <deviceName xsi:type="xsd:string">SEP00036BC7B973</deviceName>
            <lineNumber xsi:type="xsd:string">10001</lineNumber>
            <supportEM xsi:type="xsd:boolean">false</supportEM>
            <locale xsi:type="xsd:string">Italian</locale>
            <dontAutoClose xsi:type="xsd:boolean">false</dontAutoClose>
            <dontShowCallConf xsi:type="xsd:boolean">true</dontShowCallConf>
         </in2>
      </urn:makeCallSoap>
   </soapenv:Body>
</soapenv:Envelope>"#;

    #[test]
    fn webdialer_parses_the_pyciscowebdialer_makecall() {
        let r = parse(PY_MAKECALL).unwrap();
        assert_eq!(
            r,
            Request::MakeCall {
                cred: Credential {
                    user_id: "jsmith".into(),
                    password: "a&b".into(),
                    token: None
                },
                destination: "10002".into(),
                profile: UserProfile {
                    user: "jsmith".into(),
                    device_name: "SEP00036BC7B973".into(),
                    line_number: "10001".into(),
                    support_em: false
                }
            }
        );
    }

    #[test]
    fn webdialer_parses_axis_multiref_requests() {
        let xml = r##"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>
<ns1:endCallSoap xmlns:ns1="urn:WD70"><in0 href="#id0"/><in1 href="#id1"/></ns1:endCallSoap>
<multiRef id="id0" soapenc:root="0" xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/"><userID>u</userID><password xsi:nil="true"/></multiRef>
<multiRef id="id1" soapenc:root="0" xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/"><user>u</user><deviceName>D</deviceName><lineNumber>1</lineNumber><supportEM>true</supportEM></multiRef>
</soapenv:Body></soapenv:Envelope>"##;
        let r = parse(xml).unwrap();
        let Request::EndCall { cred, profile } = r else {
            panic!("{r:?}")
        };
        assert_eq!(cred.user_id, "u");
        assert_eq!(cred.password, "");
        assert_eq!(profile.device_name, "D");
        assert!(profile.support_em);
    }

    #[test]
    fn webdialer_round_trips_requests_and_replies() {
        let req = Request::GetProfile {
            cred: Credential {
                user_id: "a<b".into(),
                password: "p".into(),
                token: None,
            },
            user: "x".into(),
        };
        assert_eq!(parse(&request_xml(&req)).unwrap(), req);
        let r = parse_reply(&call_response(
            NS_WD70,
            "makeCallSoap",
            2,
            "Authentication error",
        ))
        .unwrap();
        assert_eq!(r.response_code, Some(2));
        assert_eq!(r.description, "Authentication error");
        let devs = vec![DeviceInfo {
            device_name: "SEP1".into(),
            lines: vec!["1 ; P".into(), "2 ; P".into()],
            phone_desc: String::new(),
            phone_type: String::new(),
        }];
        for xml in [
            profile_response(NS_WD70, 0, "Success", &devs),
            profile_detail_response(0, "Success", &devs),
        ] {
            let r = parse_reply(&xml).unwrap();
            assert_eq!(r.response_code, Some(0));
            assert_eq!(
                r.devices,
                vec![("SEP1".to_string(), vec!["1 ; P".into(), "2 ; P".into()])]
            );
        }
        let r = parse_reply(&is_cluster_user_response(NS_WD70, true)).unwrap();
        assert_eq!(r.value.as_deref(), Some("true"));
        let r = parse_reply(&fault("Client", "nope")).unwrap();
        assert_eq!(r.fault.as_deref(), Some("nope"));
    }

    #[test]
    fn webdialer_rejects_what_is_not_a_request() {
        for (xml, want) in [
            ("", "empty request"),
            ("<a>", "ends inside"),
            ("<x/>", "not a SOAP 1.1"),
            (
                "<Envelope><Body><urn:dial xmlns:urn='urn:WD70'/></Body></Envelope>",
                "no operation \"dial\"",
            ),
            ("<Envelope/>", "no <Body>"),
            (
                "<!DOCTYPE x [<!ENTITY a 'b'>]><Envelope/>",
                "DOCTYPE is not allowed",
            ),
        ] {
            let e = parse(xml).unwrap_err();
            assert!(e.0.contains(want), "{xml}: {e}");
        }
        let big = "x".repeat(MAX_REQUEST + 1);
        assert!(parse(&big).unwrap_err().0.contains("limit"));
    }

    #[test]
    fn webdialer_wsdl_carries_the_address() {
        let w = wsdl("http://127.0.0.1:8080/webdialer/services/WebdialerSoapService70");
        assert!(w.contains(
            "location=\"http://127.0.0.1:8080/webdialer/services/WebdialerSoapService70\""
        ));
        assert!(w.contains("makeCallSoap"));
        read_tree(&w).unwrap();
    }
}

// ---- checking envelopes against the wd70 WSDL (for `ucm pcap verify`) ----

/// One thing wrong (or odd) in a WebDialer envelope, found against Cisco's wd70 WSDL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsdlFinding {
    /// An error (the WSDL's message or type is broken) or a warning (Axis 1 accepts it).
    pub error: bool,
    /// Element path from the Body (`makeCallSoap/in2/supportEM`).
    pub path: String,
    pub rule: &'static str,
    pub message: String,
}

/// The WSDL's messages: each operation and response element with its parts and their types.
const WSDL_MESSAGES: &[(&str, &[(&str, &str)])] = &[
    (
        "makeCallSoap",
        &[
            ("in0", "Credential"),
            ("in1", "string"),
            ("in2", "UserProfile"),
        ],
    ),
    (
        "endCallSoap",
        &[("in0", "Credential"), ("in1", "UserProfile")],
    ),
    (
        "getProfileSoap",
        &[("in0", "Credential"), ("in1", "string")],
    ),
    ("getProfileDetailSoap", &[("in0", "Credential")]),
    ("isClusterUserSoap", &[("in0", "string")]),
    ("getPrimaryLine", &[("in0", "Credential")]),
    (
        "makeCallSoapResponse",
        &[("makeCallSoapReturn", "CallResponse")],
    ),
    (
        "endCallSoapResponse",
        &[("endCallSoapReturn", "CallResponse")],
    ),
    (
        "getProfileSoapResponse",
        &[("getProfileSoapReturn", "GetConfigResponse")],
    ),
    (
        "getProfileDetailSoapResponse",
        &[("getProfileDetailSoapReturn", "ConfigResponseDetail")],
    ),
    (
        "isClusterUserSoapResponse",
        &[("isClusterUserSoapReturn", "boolean")],
    ),
    (
        "getPrimaryLineResponse",
        &[("getPrimaryLineReturn", "string")],
    ),
];

/// The WSDL's complex types: their elements, each `(name, type, required)`. The elements the
/// WSDL declares without `minOccurs="0"` are required; Cisco's own samples leave out the
/// UserProfile fields deprecated in 10.0, so their absence is a warning.
/// A complex type's element: name, type, required.
type Field = (&'static str, &'static str, bool);

const WSDL_TYPES: &[(&str, &[Field])] = &[
    (
        "Credential",
        &[
            ("token", "string", false),
            ("userID", "string", true),
            ("password", "string", true),
        ],
    ),
    (
        "UserProfile",
        &[
            ("user", "string", true),
            ("deviceName", "string", true),
            ("lineNumber", "string", true),
            ("supportEM", "boolean", false),
            ("locale", "string", false),
            ("dontAutoClose", "boolean", false),
            ("dontShowCallConf", "boolean", false),
        ],
    ),
    (
        "CallResponse",
        &[
            ("responseCode", "int", true),
            ("responseDescription", "string", true),
        ],
    ),
    (
        "GetConfigResponse",
        &[
            ("description", "string", true),
            ("deviceInfoList", "WDDeviceInfo[]", true),
            ("responseCode", "int", true),
        ],
    ),
    (
        "WDDeviceInfo",
        &[("deviceName", "string", true), ("lines", "string", true)],
    ),
    (
        "ConfigResponseDetail",
        &[
            ("description", "string", true),
            ("deviceInfoListDetail", "WDDeviceInfoDetail[]", true),
            ("responseCode", "int", true),
        ],
    ),
    (
        "WDDeviceInfoDetail",
        &[
            ("deviceName", "string", true),
            ("lines", "string[]", true),
            ("phoneDesc", "string", true),
            ("phoneType", "string", true),
        ],
    ),
];

/// Namespaces in which the WSDL defines each complex type: the base types in `tns1`, their
/// extensions (and the detail types) in `urn:WD70`.
fn type_namespaces(ty: &str) -> &'static [&'static str] {
    match ty {
        "WDDeviceInfoDetail" | "ConfigResponseDetail" => &[NS_WD70],
        _ => &[NS_TYPES, NS_WD70],
    }
}

/// Whether an element name is one of the WSDL's operations or responses.
pub fn is_webdialer_operation(name: &str) -> bool {
    WSDL_MESSAGES.iter().any(|(n, _)| *n == name)
}

/// Checks a SOAP envelope against the wd70 WSDL: the operation (or response) is one the WSDL
/// has, every part of its message is present, each part and field has the WSDL's type
/// (booleans, ints, the fields of each complex type, and an `xsi:type` naming a type in a
/// namespace where the WSDL defines it), Axis `href`/`multiRef` references resolved. Faults
/// are fine. `None` when the envelope is not a wd70 message (another SOAP service, or the
/// pre-7.0 `urn:WebdialerSoap` one, which the WSDL does not describe).
pub fn check_against_wsdl(xml: &str) -> Option<Vec<WsdlFinding>> {
    let root = read_tree(xml).ok()?;
    let body = body(&root).ok()?;
    let op = body
        .children
        .iter()
        .find(|c| c.name != "multiRef" && c.attr("root") != Some("0"))?;
    if op.name == "Fault" {
        return Some(Vec::new());
    }
    let (name, parts) = WSDL_MESSAGES.iter().find(|(n, _)| *n == op.name)?;
    // The pre-7.0 service (urn:WebdialerSoap) is not what wd70.wsdl describes.
    let declares = |ns: &str| {
        [&root, body, op]
            .iter()
            .any(|n| n.attrs.iter().any(|(_, v)| v == ns))
    };
    if declares(NS_LEGACY) && !declares(NS_WD70) {
        return None;
    }
    let mut out = Vec::new();
    let mut scopes = vec![&root, body, op];
    for (part, ty) in *parts {
        let path = format!("{name}/{part}");
        match self::part(body, op, part) {
            None => out.push(WsdlFinding {
                error: true,
                path,
                rule: "wsdl-missing-part",
                message: format!(
                    "{name} has no part {part} ({ty}) that the WSDL's message requires"
                ),
            }),
            Some(n) => check_value(body, &mut scopes, n, ty, &path, 0, &mut out),
        }
    }
    for c in &op.children {
        if !parts.iter().any(|(p, _)| *p == c.name) {
            out.push(WsdlFinding {
                error: true,
                path: format!("{name}/{}", c.name),
                rule: "wsdl-unknown-part",
                message: format!("{name}'s message has no part {}", c.name),
            });
        }
    }
    Some(out)
}

/// The namespace a `prefix` is bound to in scope (the tree keeps `xmlns:p` as `p`).
fn namespace_of<'a>(scopes: &[&'a Node], prefix: &str) -> Option<&'a str> {
    scopes
        .iter()
        .rev()
        .find_map(|n| n.attr(prefix).filter(|v| v.contains(':')))
}

fn check_value<'a>(
    body: &'a Node,
    scopes: &mut Vec<&'a Node>,
    n: &'a Node,
    ty: &str,
    path: &str,
    depth: usize,
    out: &mut Vec<WsdlFinding>,
) {
    if depth > MAX_DEPTH {
        return;
    }
    // An Axis reference: the value is the multiRef it names.
    let n = match n.attr("href").and_then(|h| h.strip_prefix('#')) {
        Some(id) => match body.children.iter().find(|x| x.attr("id") == Some(id)) {
            Some(x) => x,
            None => {
                out.push(WsdlFinding {
                    error: true,
                    path: path.to_string(),
                    rule: "wsdl-dangling-href",
                    message: format!("href=\"#{id}\" names no multiRef"),
                });
                return;
            }
        },
        None => n,
    };
    if is_nil(n) {
        return;
    }
    scopes.push(n);
    let bad = |rule: &'static str, message: String| WsdlFinding {
        error: true,
        path: path.to_string(),
        rule,
        message,
    };
    if let Some(item) = ty.strip_suffix("[]") {
        for (i, c) in n.children.iter().enumerate() {
            check_value(
                body,
                scopes,
                c,
                item,
                &format!("{path}/{}[{}]", c.name, i + 1),
                depth + 1,
                out,
            );
        }
    } else {
        match ty {
            "string" => {}
            "boolean" => {
                if !matches!(n.text.trim(), "true" | "false" | "1" | "0") {
                    out.push(bad(
                        "wsdl-type",
                        format!("{:?} is not an xsd:boolean", n.text.trim()),
                    ));
                }
            }
            "int" => {
                if n.text.trim().parse::<i32>().is_err() {
                    out.push(bad(
                        "wsdl-type",
                        format!("{:?} is not an xsd:int", n.text.trim()),
                    ));
                }
            }
            complex => {
                // An xsi:type must name this type in a namespace where the WSDL has it.
                if let Some(t) = n.attr("type") {
                    let (prefix, local) = t.split_once(':').unwrap_or(("", t));
                    let ns = namespace_of(scopes, prefix);
                    let known = type_namespaces(complex);
                    if local != complex || ns.is_some_and(|ns| !known.contains(&ns)) {
                        out.push(bad(
                            "wsdl-type",
                            format!(
                                "xsi:type {t} ({}) is not the WSDL's {complex} (namespace {})",
                                ns.unwrap_or("no namespace"),
                                known.join(" or ")
                            ),
                        ));
                    }
                }
                let fields = WSDL_TYPES
                    .iter()
                    .find(|(t, _)| *t == complex)
                    .map_or(&[][..], |(_, f)| *f);
                for (field, fty, required) in fields {
                    match n.child(field) {
                        Some(c) => check_value(
                            body,
                            scopes,
                            c,
                            fty,
                            &format!("{path}/{field}"),
                            depth + 1,
                            out,
                        ),
                        None => out.push(WsdlFinding {
                            error: *required,
                            path: format!("{path}/{field}"),
                            rule: "wsdl-missing-element",
                            message: format!("{complex} has no {field} ({fty})"),
                        }),
                    }
                }
                for c in &n.children {
                    if !fields.iter().any(|(f, _, _)| *f == c.name) {
                        out.push(WsdlFinding {
                            error: true,
                            path: format!("{path}/{}", c.name),
                            rule: "wsdl-unknown-element",
                            message: format!("the WSDL's {complex} has no element {}", c.name),
                        });
                    }
                }
            }
        }
    }
    scopes.pop();
}
