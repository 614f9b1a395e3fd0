//! Pushed objects: the `CiscoIPPhoneExecute` a server POSTs to
//! `/CGI/Execute`, the internal URIs its items carry, and the `CiscoIPPhoneResponse` /
//! `CiscoIPPhoneError` the phone answers with. Pure functions; the phone runs the items.

use std::net::IpAddr;

use serde::Serialize;

use super::xml;
use crate::wire::xml::escape;

/// Largest Execute object accepted (9.1(1)+ firmware: 40 Kbytes).
pub const MAX_EXECUTE_BYTES: usize = 40 * 1024;
/// At most three items per Execute, of which at most one HTTP URL.
pub const MAX_ITEMS: usize = 3;

/// `CiscoIPPhoneError` numbers.
pub const ERROR_PARSE: u32 = 1;
pub const ERROR_FRAMING: u32 = 2;
pub const ERROR_INTERNAL_FILE: u32 = 3;
pub const ERROR_AUTH: u32 = 4;

/// One `ExecuteItem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecuteItem {
    pub url: String,
    /// 0 execute immediately (default), 1 when idle, 2 only if idle.
    pub priority: u8,
}

/// Parses a `CiscoIPPhoneExecute` object and checks the item rules; the error text says what
/// is wrong (the phone answers `CiscoIPPhoneError Number="1"`).
pub fn parse_execute(text: &str) -> Result<Vec<ExecuteItem>, String> {
    if text.len() > MAX_EXECUTE_BYTES {
        return Err(format!(
            "object of {} bytes exceeds {MAX_EXECUTE_BYTES}",
            text.len()
        ));
    }
    let root = xml::first(text, "CiscoIPPhoneExecute").ok_or("no CiscoIPPhoneExecute element")?;
    let inner = root.inner.unwrap_or("");
    let mut items = Vec::new();
    for e in xml::elements(inner, "ExecuteItem") {
        let url = e
            .attr("URL")
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .ok_or("ExecuteItem without URL")?;
        let priority = match e.attr("Priority") {
            None => 0,
            Some(p) => match p.trim() {
                "0" => 0,
                "1" => 1,
                "2" => 2,
                other => return Err(format!("bad Priority {other:?}")),
            },
        };
        items.push(ExecuteItem { url, priority });
    }
    if items.is_empty() {
        return Err("no ExecuteItem".into());
    }
    if items.len() > MAX_ITEMS {
        return Err(format!("{} ExecuteItems, at most {MAX_ITEMS}", items.len()));
    }
    if items.iter().filter(|i| is_http_url(&i.url)).count() > 1 {
        return Err("more than one HTTP URL".into());
    }
    Ok(items)
}

/// Whether `url` is an HTTP(S) URL rather than an internal URI.
pub fn is_http_url(url: &str) -> bool {
    let l = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

/// An internal URI or URL an item asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Dial(String),
    EditDial(String),
    Key(String),
    Init(String),
    /// A file name, or `Stop`.
    Play(String),
    SendDigits(String),
    /// Unicast receive on the phone's own address; no port: the phone picks one.
    RtpRx {
        addr: IpAddr,
        port: Option<u16>,
        volume: Option<u8>,
    },
    RtpMRx {
        group: IpAddr,
        port: u16,
        volume: Option<u8>,
    },
    /// `RTPRx:Stop` (and the unofficial `RTPMRx:Stop`).
    RtpRxStop,
    RtpTx {
        addr: IpAddr,
        port: u16,
    },
    RtpMTx {
        group: IpAddr,
        port: u16,
    },
    /// `RTPTx:Stop` (and the unofficial `RTPMTx:Stop`).
    RtpTxStop,
    Display(String),
    Device(String),
    App(String),
    Http(String),
}

/// Why a URI cannot run: the ResponseItem status and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriError {
    pub status: u32,
    pub data: String,
}

impl UriError {
    pub fn invalid() -> UriError {
        UriError {
            status: 1,
            data: "Invalid URI".into(),
        }
    }

    pub fn not_found() -> UriError {
        UriError {
            status: 6,
            data: "URI not found".into(),
        }
    }

    pub fn internal(text: &str) -> UriError {
        UriError {
            status: 6,
            data: truncate_data(text),
        }
    }
}

/// ResponseItem `Data` is at most 32 characters.
pub fn truncate_data(s: &str) -> String {
    s.chars().take(32).collect()
}

/// The key names phones accept in `Key:` (spec section 2.3), canonical spelling. `EndCall` is
/// accepted too (the End Call softkey).
const KEYS: &[&str] = &[
    "KeyPad0",
    "KeyPad1",
    "KeyPad2",
    "KeyPad3",
    "KeyPad4",
    "KeyPad5",
    "KeyPad6",
    "KeyPad7",
    "KeyPad8",
    "KeyPad9",
    "KeyPadStar",
    "KeyPadPound",
    "NavUp",
    "NavDwn",
    "NavLeft",
    "NavRight",
    "NavSelect",
    "NavBack",
    "Headset",
    "Speaker",
    "Hold",
    "Mute",
    "Info",
    "Messages",
    "Services",
    "Directories",
    "Settings",
    "AppMenu",
    "Applications",
    "Contacts",
    "VolUp",
    "VolDwn",
    "Transfer",
    "Conference",
    "Release",
    "KEMPage",
    "PTT",
    "Offhook",
    "Onhook",
    "EndCall",
    // Not a Cisco key name: the simulated phone's Decline softkey for a ringing call.
    "Decline",
];

/// Numbered keys and their ranges.
const NUMBERED_KEYS: &[(&str, u32)] = &[
    ("Line", 120),
    ("Soft", 5),
    ("Session", 6),
    ("FixedFeature", 3),
    ("Feature", 120),
];

/// The canonical name of a `Key:` argument, if it is a key.
pub fn key_name(arg: &str) -> Option<String> {
    if let Some(k) = KEYS.iter().find(|k| k.eq_ignore_ascii_case(arg)) {
        return Some((*k).to_string());
    }
    for (prefix, max) in NUMBERED_KEYS {
        let head = arg.get(..prefix.len())?;
        if !head.eq_ignore_ascii_case(prefix) {
            continue;
        }
        let n: u32 = arg.get(prefix.len()..)?.parse().ok()?;
        if (1..=*max).contains(&n) && !arg.get(prefix.len()..)?.starts_with('0') {
            return Some(format!("{prefix}{n}"));
        }
    }
    None
}

fn strip_scheme<'a>(uri: &'a str, scheme: &str) -> Option<&'a str> {
    let head = uri.get(..scheme.len() + 1)?;
    let (s, colon) = head.split_at(scheme.len());
    (s.eq_ignore_ascii_case(scheme) && colon == ":").then(|| uri.get(scheme.len() + 1..))?
}

fn parse_volume(v: Option<&str>) -> Result<Option<u8>, UriError> {
    match v.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => match v.parse::<u8>() {
            Ok(n) if n <= 100 => Ok(Some(n)),
            _ => Err(UriError::invalid()),
        },
    }
}

/// RTP URIs need an even port in 20480..=32768.
fn parse_rtp_port(p: &str) -> Result<u16, UriError> {
    match p.trim().parse::<u16>() {
        Ok(n) if n % 2 == 0 && (20480..=32768).contains(&n) => Ok(n),
        _ => Err(UriError::invalid()),
    }
}

/// Splits `ip:port[:rest...]`, allowing a bracketed IPv6 address.
fn split_addr(s: &str) -> Result<(IpAddr, Vec<&str>), UriError> {
    let (ip, rest) = if let Some(v6) = s.strip_prefix('[') {
        let (ip, after) = v6.split_once(']').ok_or_else(UriError::invalid)?;
        (ip, after.strip_prefix(':').unwrap_or(after))
    } else {
        match s.split_once(':') {
            Some((ip, rest)) => (ip, rest),
            None => (s, ""),
        }
    };
    let ip: IpAddr = ip.trim().parse().map_err(|_| UriError::invalid())?;
    let parts = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(':').collect()
    };
    Ok((ip, parts))
}

/// Parses one item URL. Unknown schemes are "URI not found" (status 6), malformed arguments
/// "Invalid URI" (status 1).
pub fn parse_uri(url: &str) -> Result<Uri, UriError> {
    let url = url.trim();
    if is_http_url(url) {
        return Ok(Uri::Http(url.to_string()));
    }
    if let Some(arg) = strip_scheme(url, "Dial") {
        let digits = arg.split(':').next().unwrap_or("");
        if digits.is_empty()
            || !digits
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '#' | '*' | 'A' | 'B' | 'C' | 'D' | ','))
        {
            return Err(UriError::invalid());
        }
        return Ok(Uri::Dial(digits.to_string()));
    }
    if let Some(arg) = strip_scheme(url, "EditDial") {
        return Ok(Uri::EditDial(arg.to_string()));
    }
    if let Some(arg) = strip_scheme(url, "Key") {
        return match key_name(arg.trim()) {
            Some(k) => Ok(Uri::Key(k)),
            None => Err(UriError::invalid()),
        };
    }
    if let Some(arg) = strip_scheme(url, "Init") {
        let known = [
            "CallHistory",
            "Services",
            "Messages",
            "Directories",
            "AppStatus",
        ];
        return match known.iter().find(|k| k.eq_ignore_ascii_case(arg.trim())) {
            Some(k) => Ok(Uri::Init((*k).to_string())),
            None => Err(UriError::invalid()),
        };
    }
    if let Some(arg) = strip_scheme(url, "Play") {
        let f = arg.trim();
        if f.is_empty() {
            return Err(UriError::invalid());
        }
        return Ok(Uri::Play(f.to_string()));
    }
    if let Some(arg) = strip_scheme(url, "SendDigits") {
        let digits = arg.split(':').next().unwrap_or("");
        if digits.is_empty()
            || !digits
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '#' | '*' | 'A' | 'B' | 'C' | 'D'))
        {
            return Err(UriError::invalid());
        }
        return Ok(Uri::SendDigits(digits.to_string()));
    }
    if let Some(arg) = strip_scheme(url, "RTPRx") {
        if arg.trim().eq_ignore_ascii_case("Stop") {
            return Ok(Uri::RtpRxStop);
        }
        let (addr, parts) = split_addr(arg)?;
        let port = match parts.first().map(|p| p.trim()) {
            None | Some("") => None,
            Some(p) => Some(parse_rtp_port(p)?),
        };
        let volume = parse_volume(parts.get(1).copied())?;
        if parts.len() > 3 {
            return Err(UriError::invalid());
        }
        return Ok(Uri::RtpRx { addr, port, volume });
    }
    if let Some(arg) = strip_scheme(url, "RTPMRx") {
        if arg.trim().eq_ignore_ascii_case("Stop") {
            return Ok(Uri::RtpRxStop);
        }
        let (group, parts) = split_addr(arg)?;
        if !group.is_multicast() || parts.len() > 3 {
            return Err(UriError::invalid());
        }
        let port = parse_rtp_port(parts.first().copied().unwrap_or(""))?;
        let volume = parse_volume(parts.get(1).copied())?;
        return Ok(Uri::RtpMRx {
            group,
            port,
            volume,
        });
    }
    for (scheme, multicast) in [("RTPTx", false), ("RTPMTx", true)] {
        if let Some(arg) = strip_scheme(url, scheme) {
            if arg.trim().eq_ignore_ascii_case("Stop") {
                return Ok(Uri::RtpTxStop);
            }
            let (addr, parts) = split_addr(arg)?;
            if addr.is_multicast() != multicast || parts.len() != 1 {
                return Err(UriError::invalid());
            }
            let port = parse_rtp_port(parts.first().copied().unwrap_or(""))?;
            return Ok(if multicast {
                Uri::RtpMTx { group: addr, port }
            } else {
                Uri::RtpTx { addr, port }
            });
        }
    }
    for (scheme, make) in [
        ("Display", Uri::Display as fn(String) -> Uri),
        ("Device", Uri::Device),
        ("App", Uri::App),
    ] {
        if let Some(arg) = strip_scheme(url, scheme) {
            if arg.trim().is_empty() {
                return Err(UriError::invalid());
            }
            return Ok(make(arg.trim().to_string()));
        }
    }
    // SoftKey: and Notify: are not allowed in an Execute; everything else is unknown.
    if strip_scheme(url, "SoftKey").is_some() || strip_scheme(url, "Notify").is_some() {
        return Err(UriError::invalid());
    }
    Err(UriError::not_found())
}

/// One `ResponseItem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResponseItem {
    pub url: String,
    pub status: u32,
    pub data: String,
}

impl ResponseItem {
    pub fn success(url: &str) -> ResponseItem {
        ResponseItem {
            url: url.to_string(),
            status: 0,
            data: "Success".into(),
        }
    }

    pub fn error(url: &str, e: UriError) -> ResponseItem {
        ResponseItem {
            url: url.to_string(),
            status: e.status,
            data: e.data,
        }
    }
}

/// `<CiscoIPPhoneResponse>` with one `ResponseItem` per executed item.
pub fn response_xml(items: &[ResponseItem]) -> String {
    let mut out =
        String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<CiscoIPPhoneResponse>\n");
    for i in items {
        out.push_str(&format!(
            "<ResponseItem Status=\"{}\" Data=\"{}\" URL=\"{}\"/>\n",
            i.status,
            escape(&i.data),
            escape(&i.url)
        ));
    }
    out.push_str("</CiscoIPPhoneResponse>\n");
    out
}

/// `<CiscoIPPhoneError Number="n"/>`, with the message as text content when given.
pub fn error_xml(number: u32, message: Option<&str>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<CiscoIPPhoneError Number=\"{number}\">{}</CiscoIPPhoneError>\n",
            escape(m)
        ),
        _ => format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<CiscoIPPhoneError Number=\"{number}\"/>\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_rules() {
        let ok = parse_execute(
            r#"<CiscoIPPhoneExecute><ExecuteItem Priority="0" URL="Play:chime.raw"/><ExecuteItem Priority="1" URL="http://server/textmessage.xml"/></CiscoIPPhoneExecute>"#,
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].priority, 1);
        assert_eq!(
            parse_execute(
                r#"<CiscoIPPhoneExecute><ExecuteItem URL="Key:Onhook"/></CiscoIPPhoneExecute>"#
            )
            .unwrap()[0]
                .priority,
            0
        );
        for bad in [
            "",
            "garbage",
            "<CiscoIPPhoneText/>",
            "<CiscoIPPhoneExecute/>",
            "<CiscoIPPhoneExecute><ExecuteItem/></CiscoIPPhoneExecute>",
            r#"<CiscoIPPhoneExecute><ExecuteItem URL="Key:Onhook" Priority="7"/></CiscoIPPhoneExecute>"#,
            r#"<CiscoIPPhoneExecute><ExecuteItem URL="Key:Soft1"/><ExecuteItem URL="Key:Soft2"/><ExecuteItem URL="Key:Soft3"/><ExecuteItem URL="Key:Soft4"/></CiscoIPPhoneExecute>"#,
            r#"<CiscoIPPhoneExecute><ExecuteItem URL="http://a/"/><ExecuteItem URL="HTTP://b/"/></CiscoIPPhoneExecute>"#,
        ] {
            assert!(parse_execute(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uris() {
        assert_eq!(parse_uri("Dial:1000"), Ok(Uri::Dial("1000".into())));
        assert_eq!(
            parse_uri("Dial:9,5551234:1:app"),
            Ok(Uri::Dial("9,5551234".into()))
        );
        assert_eq!(parse_uri("Dial:"), Err(UriError::invalid()));
        assert_eq!(parse_uri("Dial:12x"), Err(UriError::invalid()));
        assert_eq!(parse_uri("Key:Onhook"), Ok(Uri::Key("Onhook".into())));
        assert_eq!(parse_uri("key:soft2"), Ok(Uri::Key("Soft2".into())));
        assert_eq!(parse_uri("Key:Line120"), Ok(Uri::Key("Line120".into())));
        assert_eq!(parse_uri("Key:Line121"), Err(UriError::invalid()));
        assert_eq!(parse_uri("Key:Soft0"), Err(UriError::invalid()));
        assert_eq!(parse_uri("Key:Nope"), Err(UriError::invalid()));
        assert_eq!(parse_uri("Init:Services"), Ok(Uri::Init("Services".into())));
        assert_eq!(
            parse_uri("Play:chime.raw"),
            Ok(Uri::Play("chime.raw".into()))
        );
        assert_eq!(
            parse_uri("RTPMRx:239.1.1.1:20480:80"),
            Ok(Uri::RtpMRx {
                group: "239.1.1.1".parse().unwrap(),
                port: 20480,
                volume: Some(80)
            })
        );
        assert_eq!(
            parse_uri("RTPRx:10.0.0.10:20500::0"),
            Ok(Uri::RtpRx {
                addr: "10.0.0.10".parse().unwrap(),
                port: Some(20500),
                volume: None
            })
        );
        assert_eq!(
            parse_uri("RTPRx:10.0.0.10"),
            Ok(Uri::RtpRx {
                addr: "10.0.0.10".parse().unwrap(),
                port: None,
                volume: None
            })
        );
        assert_eq!(parse_uri("RTPRx:Stop"), Ok(Uri::RtpRxStop));
        assert_eq!(parse_uri("RTPMRx:Stop"), Ok(Uri::RtpRxStop));
        assert_eq!(parse_uri("RTPMRx:10.0.0.1:20480"), Err(UriError::invalid()));
        assert_eq!(
            parse_uri("RTPMRx:239.1.1.1:20481"),
            Err(UriError::invalid())
        );
        assert_eq!(parse_uri("RTPMRx:239.1.1.1:1000"), Err(UriError::invalid()));
        assert_eq!(
            parse_uri("RTPMRx:239.1.1.1:20480:101"),
            Err(UriError::invalid())
        );
        assert_eq!(
            parse_uri("RTPTx:127.0.0.5:20480"),
            Ok(Uri::RtpTx {
                addr: "127.0.0.5".parse().unwrap(),
                port: 20480
            })
        );
        assert_eq!(parse_uri("RTPTx:Stop"), Ok(Uri::RtpTxStop));
        assert_eq!(parse_uri("SoftKey:Exit"), Err(UriError::invalid()));
        assert_eq!(parse_uri("Bogus:1"), Err(UriError::not_found()));
        assert_eq!(parse_uri("http://x/y"), Ok(Uri::Http("http://x/y".into())));
    }

    #[test]
    fn response_documents() {
        let x = response_xml(&[ResponseItem::success("Play:a&b.raw")]);
        assert!(x.contains(r#"<ResponseItem Status="0" Data="Success" URL="Play:a&amp;b.raw"/>"#));
        assert!(error_xml(4, None).contains(r#"<CiscoIPPhoneError Number="4"/>"#));
        assert!(error_xml(1, Some("a<b")).contains(">a&lt;b</CiscoIPPhoneError>"));
    }
}
