//! XML payload checks: CiscoIPPhone objects, EM API messages, SOAP envelopes and Cisco
//! remote-call-control documents found in HTTP bodies (raw, or in a form field `XML=`/`xml=`)
//! and in SIP bodies (including each part of a `multipart/*` body).
//!
//! Each document is read with the library the services use: [`crate::wire::xml::parse_bytes`] and
//! [`crate::wire::xml::validate()`] for CiscoIPPhone objects, [`crate::wire::em`] for EM API
//! requests and replies, [`crate::wire::soap::check_against_wsdl`] for WebDialer SOAP (against
//! Cisco's wd70 WSDL: operation, parts, types). Other SOAP envelopes and remotecc documents are
//! only checked to be well-formed. Quirks real Cisco devices send and real phones accept (a declaration
//! with no space before `encoding`, an LF-only multipart body) are warnings, never errors.

use quick_xml::events::Event;
use quick_xml::Reader;

use crate::pcap::HttpMessage;
use crate::wire::sip::SipMessage;

/// Documents kept per capture (later ones are counted, not listed).
pub const MAX_DOCUMENTS: usize = 1000;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One thing found in a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// Element path (`CiscoIPPhoneExecute/ExecuteItem[1]/@URL`), empty for the document.
    pub path: String,
    /// Stable short id (the XML library's rule or warning code, or one of ours).
    pub rule: String,
    pub message: String,
}

/// One XML document found in a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlDocument {
    /// Frame the carrying message ends in (the frame tshark shows it in).
    pub frame: u64,
    /// Where it was found: `http POST /path`, `http 200 (GET /path)`, `sip REFER part 2`.
    pub source: String,
    /// Root element's local name.
    pub root: String,
    /// `cisco-ip-phone`, `em-api`, `soap`, `cisco-remotecc`.
    pub kind: &'static str,
    pub findings: Vec<Finding>,
}

impl XmlDocument {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }
}

/// Collects the documents of one capture.
#[derive(Clone, Debug, Default)]
pub struct XmlChecker {
    pub documents: Vec<XmlDocument>,
    /// Documents checked (listed or not).
    pub checked: u64,
    /// Documents with at least one error (listed or not).
    pub invalid: u64,
    /// XML bodies whose root is not one we know (not checked).
    pub unrecognised: u64,
}

impl XmlChecker {
    /// Checks the XML an HTTP message carries. `source` names the exchange.
    pub fn http(&mut self, frame: u64, source: &str, msg: &HttpMessage) {
        if msg.body.is_empty() {
            return;
        }
        if let Some(pairs) = msg.form() {
            for (name, value) in pairs {
                if name.eq_ignore_ascii_case("xml") {
                    self.document(
                        frame,
                        &format!("{source} form {name}="),
                        value.as_bytes(),
                        &[],
                    );
                }
            }
            return;
        }
        if looks_like_xml(&msg.body) {
            self.document(frame, source, &msg.body, &[]);
        }
    }

    /// Checks the XML a SIP message's body carries (each part of a multipart body).
    pub fn sip(&mut self, frame: u64, msg: &SipMessage) {
        let body = msg.body();
        if body.is_empty() {
            return;
        }
        let what = match msg {
            SipMessage::Request(r) => r.method.as_str().to_string(),
            SipMessage::Response(r) => match msg.cseq() {
                Ok(c) => format!("{} ({})", r.status, c.method.as_str()),
                Err(_) => r.status.to_string(),
            },
        };
        let ctype = msg.headers().get("content-type").unwrap_or("");
        let media = ctype
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media.starts_with("multipart/") {
            let Some(boundary) = param(ctype, "boundary") else {
                self.push(XmlDocument {
                    frame,
                    source: format!("sip {what}"),
                    root: String::new(),
                    kind: "multipart",
                    findings: vec![error(
                        "",
                        "multipart-no-boundary",
                        "multipart body without a boundary parameter",
                    )],
                });
                return;
            };
            let (parts, lf_only) = split_multipart(body, &boundary);
            for (i, (headers, content)) in parts.iter().enumerate() {
                let part_type = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                    .map(|(_, v)| v.to_ascii_lowercase())
                    .unwrap_or_default();
                if part_type.contains("xml") || looks_like_xml(content) {
                    let mut extra = Vec::new();
                    if lf_only {
                        extra.push(warning(
                            "",
                            "multipart-lf-only",
                            "multipart body uses LF line endings, not CRLF (Cisco CME does; phones accept it)",
                        ));
                    }
                    self.document(
                        frame,
                        &format!("sip {what} part {}", i + 1),
                        content,
                        &extra,
                    );
                }
            }
        } else if media.contains("xml") || looks_like_xml(body) {
            self.document(frame, &format!("sip {what}"), body, &[]);
        }
    }

    fn push(&mut self, doc: XmlDocument) {
        self.checked += 1;
        if doc.errors() > 0 {
            self.invalid += 1;
        }
        if self.documents.len() < MAX_DOCUMENTS {
            self.documents.push(doc);
        }
    }

    /// Checks one document.
    pub fn document(&mut self, frame: u64, source: &str, bytes: &[u8], extra: &[Finding]) {
        let Some(root) = root_name(bytes) else {
            self.unrecognised += 1;
            return;
        };
        let local = root.rsplit(':').next().unwrap_or(&root).to_string();
        let mut findings = extra.to_vec();
        let kind = if local.starts_with("CiscoIPPhone") {
            check_cisco_ip_phone(bytes, &mut findings);
            "cisco-ip-phone"
        } else if local == "request" || local == "query" || local == "response" {
            check_em(bytes, &local, &mut findings);
            "em-api"
        } else if local == "Envelope" {
            let before = findings.len();
            well_formed(bytes, &mut findings);
            if findings.len() == before {
                check_soap(bytes, &mut findings);
            }
            "soap"
        } else if local.starts_with("x-cisco-remotecc") {
            well_formed(bytes, &mut findings);
            "cisco-remotecc"
        } else {
            self.unrecognised += 1;
            return;
        };
        self.push(XmlDocument {
            frame,
            source: source.to_string(),
            root: local,
            kind,
            findings,
        });
    }
}

fn error(path: &str, rule: &str, message: impl Into<String>) -> Finding {
    Finding {
        severity: Severity::Error,
        path: path.to_string(),
        rule: rule.to_string(),
        message: message.into(),
    }
}

fn warning(path: &str, rule: &str, message: impl Into<String>) -> Finding {
    Finding {
        severity: Severity::Warning,
        path: path.to_string(),
        rule: rule.to_string(),
        message: message.into(),
    }
}

fn check_cisco_ip_phone(bytes: &[u8], out: &mut Vec<Finding>) {
    use crate::wire::xml::XmlError;
    match crate::wire::xml::parse_bytes(bytes) {
        Ok(parsed) => {
            for w in &parsed.warnings {
                out.push(warning(
                    &w.path,
                    w.code,
                    format!("{}: {}", w.position, w.message),
                ));
            }
            for v in crate::wire::xml::validate(&parsed.object, None) {
                out.push(error(&v.path, v.rule, v.message));
            }
        }
        Err(e) => {
            let (path, rule) = match &e {
                XmlError::Syntax { path, .. } => (path.clone(), "syntax"),
                XmlError::TooDeep { path, .. } => (path.clone(), "too-deep"),
                XmlError::BadValue { path, .. } => (path.clone(), "bad-value"),
                XmlError::UnknownObject { name, .. } => (name.clone(), "unknown-object"),
                XmlError::TooLarge { .. } => (String::new(), "too-large"),
                XmlError::Encoding(_) => (String::new(), "encoding"),
                XmlError::Empty => (String::new(), "empty"),
            };
            out.push(error(&path, rule, e.to_string()));
        }
    }
}

fn check_em(bytes: &[u8], root: &str, out: &mut Vec<Finding>) {
    use crate::wire::em as api;
    let text = String::from_utf8_lossy(bytes);
    let result = if root == "response" {
        api::parse_reply(&text).map(|_| ())
    } else {
        api::parse(&text).map(|_| ())
    };
    if let Err(e) = result {
        // EM errors name the element in their message.
        let path = e
            .message
            .split(':')
            .next()
            .filter(|p| !p.contains(' '))
            .unwrap_or(root)
            .to_string();
        out.push(error(
            &path,
            "em-api",
            format!("EM code {}: {}", e.code, e.message),
        ));
    }
}

/// A WebDialer envelope against Cisco's wd70 WSDL ([`crate::wire::soap::check_against_wsdl`]);
/// other SOAP services' envelopes are only checked to be well-formed.
fn check_soap(bytes: &[u8], out: &mut Vec<Finding>) {
    let text = String::from_utf8_lossy(bytes);
    for f in crate::wire::soap::check_against_wsdl(&text).unwrap_or_default() {
        let finding = if f.error {
            error(&f.path, f.rule, f.message)
        } else {
            warning(&f.path, f.rule, f.message)
        };
        out.push(finding);
    }
}

/// Well-formedness: every start tag closed in order, no syntax error. The path of the element
/// where reading stopped names the fault.
fn well_formed(bytes: &[u8], out: &mut Vec<Finding>) {
    let mut reader = Reader::from_reader(bytes);
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0usize;
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                if stack.is_empty() {
                    roots += 1;
                }
                stack.push(String::from_utf8_lossy(e.name().as_ref()).into_owned());
            }
            Ok(Event::Empty(_)) => {
                if stack.is_empty() {
                    roots += 1;
                }
            }
            Ok(Event::End(_)) => {
                stack.pop();
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => {
                out.push(error(
                    &stack.join("/"),
                    "not-well-formed",
                    format!("at byte {}: {e}", reader.buffer_position()),
                ));
                return;
            }
        }
    }
    if !stack.is_empty() {
        out.push(error(
            &stack.join("/"),
            "not-well-formed",
            "document ends inside an element",
        ));
    } else if roots > 1 {
        out.push(error("", "not-well-formed", "more than one root element"));
    }
}

/// True when the bytes start (after a BOM and whitespace) with `<`.
pub fn looks_like_xml(b: &[u8]) -> bool {
    let b = b.strip_prefix(b"\xef\xbb\xbf").unwrap_or(b);
    b.iter()
        .find(|c| !c.is_ascii_whitespace())
        .is_some_and(|&c| c == b'<')
}

/// The name of the root element (with any prefix), skipping the declaration, processing
/// instructions, comments and a DOCTYPE.
pub fn root_name(b: &[u8]) -> Option<String> {
    let mut i = 0;
    let b = b.strip_prefix(b"\xef\xbb\xbf").unwrap_or(b);
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b.get(i) != Some(&b'<') {
            return None;
        }
        let rest = &b[i..];
        if rest.starts_with(b"<?") {
            i += find(rest, b"?>")? + 2;
        } else if rest.starts_with(b"<!--") {
            i += find(rest, b"-->")? + 3;
        } else if rest.starts_with(b"<!") {
            i += find(rest, b">")? + 1;
        } else {
            let name: Vec<u8> = rest[1..]
                .iter()
                .take_while(|c| !c.is_ascii_whitespace() && **c != b'>' && **c != b'/')
                .copied()
                .take(200)
                .collect();
            return (!name.is_empty()).then(|| String::from_utf8_lossy(&name).into_owned());
        }
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// A parameter of a header value (`multipart/mixed; boundary="x"`), unquoted.
fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Part headers and content.
type Part = (Vec<(String, String)>, Vec<u8>);

/// Splits a multipart body on `--boundary` lines, accepting CRLF or LF-only line endings.
/// Returns the parts and whether LF-only line endings were seen.
pub fn split_multipart(body: &[u8], boundary: &str) -> (Vec<Part>, bool) {
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let mut starts = Vec::new();
    let mut i = 0;
    while let Some(p) = find(&body[i..], d) {
        let at = i + p;
        // A delimiter starts a line.
        if at == 0 || body[at - 1] == b'\n' {
            starts.push(at);
        }
        i = at + d.len();
        if i >= body.len() {
            break;
        }
    }
    let mut parts = Vec::new();
    let mut lf_only = false;
    for w in starts.windows(2) {
        let (a, b) = (w[0] + d.len(), w[1]);
        let mut seg = &body[a..b];
        // The line break after the delimiter and the one before the next belong to them.
        if seg.starts_with(b"\r\n") {
            seg = &seg[2..];
        } else if seg.starts_with(b"\n") {
            lf_only = true;
            seg = &seg[1..];
        }
        if seg.ends_with(b"\r\n") {
            seg = &seg[..seg.len() - 2];
        } else if seg.ends_with(b"\n") {
            seg = &seg[..seg.len() - 1];
        }
        let (head, content) = match find(seg, b"\r\n\r\n") {
            Some(p) => (&seg[..p], &seg[p + 4..]),
            None => match find(seg, b"\n\n") {
                Some(p) => {
                    lf_only = true;
                    (&seg[..p], &seg[p + 2..])
                }
                None if seg.starts_with(b"\r\n") => (&seg[..0], &seg[2..]),
                None if seg.starts_with(b"\n") => (&seg[..0], &seg[1..]),
                None => (seg, &seg[seg.len()..]),
            },
        };
        let headers = String::from_utf8_lossy(head)
            .lines()
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                Some((n.trim().to_string(), v.trim().to_string()))
            })
            .collect();
        parts.push((headers, content.to_vec()));
    }
    (parts, lf_only)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_names_skip_prolog_comments_and_doctype() {
        assert_eq!(
            root_name(b"\xef\xbb\xbf<?xml version=\"1.0\"?>\n<!-- x --><!DOCTYPE a><soapenv:Envelope xmlns:soapenv=\"u\"/>")
                .as_deref(),
            Some("soapenv:Envelope")
        );
        assert_eq!(root_name(b"hello"), None);
        assert!(looks_like_xml(b"  \r\n<a/>"));
    }

    #[test]
    fn multipart_lf_only_is_split_and_flagged() {
        let body = b"--b\nContent-Type: text/plain\n\nhi\n--b\nContent-Type: application/x-cisco-remotecc-cm+xml\n\n<CiscoIPPhoneExecute/>\n--b--\n";
        let (parts, lf) = split_multipart(body, "b");
        assert!(lf);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].1, b"<CiscoIPPhoneExecute/>");
        let crlf = b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n";
        let (parts, lf) = split_multipart(crlf, "b");
        assert!(!lf);
        assert_eq!(parts[0].1, b"hi");
    }

    #[test]
    fn malformed_soap_names_the_open_element() {
        let mut c = XmlChecker::default();
        c.document(
            7,
            "http POST /x",
            b"<s:Envelope><s:Body><m:op></s:Body></s:Envelope>",
            &[],
        );
        assert_eq!(c.invalid, 1);
        let d = &c.documents[0];
        assert_eq!((d.frame, d.kind), (7, "soap"));
        assert_eq!(d.findings[0].rule, "not-well-formed");
        assert!(
            d.findings[0].path.starts_with("s:Envelope/s:Body"),
            "{:?}",
            d.findings
        );
    }

    /// WebDialer SOAP is checked against Cisco's wd70 WSDL (issue 15): what ucm writes passes,
    /// and a device list typed in a namespace the WSDL lacks, a missing part, a bad boolean or an
    /// element no type has are errors; another service's envelope is only well-formed.
    #[test]
    fn r15_webdialer_soap_is_checked_against_the_wsdl() {
        use crate::wire::soap::{self, Credential, DeviceInfo, Request, UserProfile, NS_WD70};
        let errors = |xml: &str| {
            let mut c = XmlChecker::default();
            c.document(1, "http", xml.as_bytes(), &[]);
            let d = &c.documents[0];
            assert_eq!(d.kind, "soap");
            d.findings
                .iter()
                .filter(|f| f.severity == Severity::Error)
                .map(|f| format!("{} {} {}", f.rule, f.path, f.message))
                .collect::<Vec<_>>()
        };
        let devs = [DeviceInfo {
            device_name: "SEP1".into(),
            lines: vec!["1 ; P".into()],
            phone_desc: "d".into(),
            phone_type: "Cisco 8845".into(),
        }];
        let cred = Credential {
            user_id: "u".into(),
            password: "p".into(),
            token: None,
        };
        let profile = UserProfile {
            user: "u".into(),
            device_name: "SEP1".into(),
            line_number: "1".into(),
            support_em: false,
        };
        for xml in [
            soap::call_response(NS_WD70, "makeCallSoap", 0, "Success"),
            soap::call_response(NS_WD70, "endCallSoap", 1, "x"),
            soap::profile_response(NS_WD70, 0, "Success", &devs),
            soap::profile_detail_response(0, "Success", &devs),
            soap::is_cluster_user_response(NS_WD70, true),
            soap::primary_line_response("1000"),
            soap::fault("Client", "no"),
            soap::request_xml(&Request::MakeCall {
                cred: cred.clone(),
                destination: "2".into(),
                profile: profile.clone(),
            }),
            soap::request_xml(&Request::EndCall {
                cred: cred.clone(),
                profile,
            }),
            soap::request_xml(&Request::GetProfile {
                cred: cred.clone(),
                user: "u".into(),
            }),
            soap::request_xml(&Request::GetProfileDetail { cred: cred.clone() }),
            soap::request_xml(&Request::GetPrimaryLine { cred }),
            soap::request_xml(&Request::IsClusterUser { user: "u".into() }),
        ] {
            assert_eq!(errors(&xml), Vec::<String>::new(), "{xml}");
        }
        // The device list as ucm wrote it before: WDDeviceInfo in urn:WebdialerSoap.
        let old = soap::profile_response(NS_WD70, 0, "Success", &devs).replace(
            "xmlns:ns3=\"http://webdialer.ccm.cisco.com\"",
            "xmlns:ns3=\"urn:WebdialerSoap\"",
        );
        let e = errors(&old);
        assert!(
            e.iter().any(|m| m.starts_with(
                "wsdl-type getProfileSoapResponse/getProfileSoapReturn/deviceInfoList/item[1]"
            ) && m.contains("urn:WebdialerSoap")),
            "{e:?}"
        );
        let env = |inner: &str| {
            format!("<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>")
        };
        let e = errors(&env("<urn:makeCallSoap xmlns:urn=\"urn:WD70\"><in0><userID>u</userID><password>p</password></in0><in1>2</in1></urn:makeCallSoap>"));
        assert!(
            e.iter()
                .any(|m| m.starts_with("wsdl-missing-part makeCallSoap/in2")),
            "{e:?}"
        );
        let e = errors(&env("<urn:endCallSoap xmlns:urn=\"urn:WD70\"><in0><userID>u</userID><password>p</password></in0><in1><user>u</user><deviceName>D</deviceName><lineNumber>1</lineNumber><supportEM>yes</supportEM><colour>red</colour></in1></urn:endCallSoap>"));
        assert!(
            e.iter()
                .any(|m| m.starts_with("wsdl-type endCallSoap/in1/supportEM")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("wsdl-unknown-element endCallSoap/in1/colour")),
            "{e:?}"
        );
        // The pre-7.0 service is not wd70's: its own namespace for WDDeviceInfo is fine.
        let legacy = soap::profile_response(soap::NS_LEGACY, 0, "Success", &devs);
        assert_eq!(errors(&legacy), Vec::<String>::new());
        // AXL or anything else: well-formed is all that is asked.
        assert!(errors(&env(
            "<axl:getPhone xmlns:axl=\"x\"><name>SEP1</name></axl:getPhone>"
        ))
        .is_empty());
    }
}
