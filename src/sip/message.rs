//! Strict, fast SIP (RFC 3261) message parser and serializer.
//!
//! This module turns bytes received on a SIP transport into [`SipMessage`]s and
//! back. It is purely syntactic: it knows nothing about transactions or dialogs.
//!
//! * UDP: one datagram is one message, see [`parse_datagram`]. `Content-Length`
//!   is optional; bytes beyond it are discarded (RFC 3261 18.3).
//! * TCP/TLS: use [`StreamFramer::poll`] (incremental, reports keep-alives and
//!   RFC 5626 pings) or the stateless [`skip_keepalive`] + [`frame_stream`] to cut
//!   the byte stream into messages, then [`parse_stream_message`] on each one.
//!   `Content-Length` is mandatory there.
//!
//! Every malformed input produces a [`ParseError`] whose `status` says which SIP
//! response the server should send (`400`, `505`, `513`, ...) or `None` when the
//! input must be dropped silently (not SIP at all, or a malformed response, which
//! can never be answered).
//!
//! Parsing never panics, never validates bodies as UTF-8 and runs in time linear
//! in the input size. Header values are stored exactly as received (unfolded and
//! trimmed); typed views ([`Via`], [`CSeq`], [`NameAddr`], [`SipUri`]) parse on
//! demand, but the headers they describe are also syntax-checked while parsing a
//! message so that the error can name the offending line.
//!
//! Serialization ([`Request::to_bytes`], ...) always writes CRLF line endings,
//! headers in stored order and a `Content-Length` equal to the body length. For a
//! parsed message `m`, `parse_datagram(&m.to_bytes())` equals `m` after
//! [`SipMessage::normalize_content_length`].

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::net::Ipv6Addr;
use std::ops::Range;
use std::str::FromStr;

use bytes::Bytes;

/// Largest message (start line, headers and body) accepted; larger messages
/// are rejected with status 513 Message Too Large.
pub const MAX_MESSAGE_SIZE: usize = 65_535;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A malformed message or header value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{detail}")]
pub struct ParseError {
    /// The SIP status the server should answer with (400 Bad Request,
    /// 505 Version Not Supported, 513 Message Too Large, 416 Unsupported URI
    /// Scheme), or `None` when the input must be dropped without an answer
    /// (garbage that is not SIP, keep-alives, malformed responses).
    pub status: Option<u16>,
    /// Human readable description naming what was wrong and where.
    pub detail: String,
}

impl ParseError {
    /// Creates an error with an explicit status.
    pub fn new(status: Option<u16>, detail: impl Into<String>) -> Self {
        ParseError {
            status,
            detail: detail.into(),
        }
    }

    /// An error answered with 400 Bad Request.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(Some(400), detail)
    }

    /// An error that must not be answered (the input is dropped).
    pub fn silent(detail: impl Into<String>) -> Self {
        Self::new(None, detail)
    }

    fn too_large(detail: impl Into<String>) -> Self {
        Self::new(Some(513), detail)
    }

    fn context(mut self, prefix: impl fmt::Display) -> Self {
        self.detail = format!("{prefix}: {}", self.detail);
        self
    }

    fn with_status(mut self, status: Option<u16>) -> Self {
        self.status = status;
        self
    }
}

const SNIPPET_MAX: usize = 60;

/// Quoted, length-limited rendering of input text for error messages.
fn snippet(s: &str) -> String {
    if s.len() <= SNIPPET_MAX {
        return format!("{s:?}");
    }
    let mut end = SNIPPET_MAX;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}...", s.get(..end).unwrap_or(""))
}

fn snippet_bytes(b: &[u8]) -> String {
    let cut = b.get(..SNIPPET_MAX * 2).unwrap_or(b);
    snippet(&String::from_utf8_lossy(cut))
}

// ---------------------------------------------------------------------------
// Character classes (RFC 3261 section 25)
// ---------------------------------------------------------------------------

/// `token` characters: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Characters of a Call-ID `word`.
fn is_word_char(b: u8) -> bool {
    is_token_char(b) || b"()<>:\\\"/[]?{}".contains(&b)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

fn is_user_char(b: u8) -> bool {
    is_unreserved(b) || b"&=+$,;?/".contains(&b)
}

fn is_password_char(b: u8) -> bool {
    is_unreserved(b) || b"&=+$,".contains(&b)
}

fn is_param_char(b: u8) -> bool {
    is_unreserved(b) || b"[]/:&+$".contains(&b)
}

fn is_hnv_char(b: u8) -> bool {
    is_unreserved(b) || b"[]/?:+$".contains(&b)
}

fn is_uric(b: u8) -> bool {
    is_unreserved(b) || b";/?:@&=+$,[]".contains(&b)
}

fn is_tel_char(b: u8) -> bool {
    b.is_ascii_hexdigit() || b"*#+-.()".contains(&b)
}

/// Value of a generic header parameter when not quoted: token / host.
fn is_gen_value_char(b: u8) -> bool {
    is_token_char(b) || b == b':' || b == b'[' || b == b']'
}

/// Control characters that may not appear in the header section.
fn is_forbidden_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Returns true if `s` is a non-empty RFC 3261 token.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

fn trim_ws(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

fn trim_ws_bytes(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if is_ws(*first) {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if is_ws(*last) {
            b = rest;
        } else {
            break;
        }
    }
    b
}

fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.get(..prefix.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(prefix))
}

/// Checks that `s` only consists of `allowed` characters and `%HH` escapes.
fn check_chars(s: &str, what: &str, allowed: fn(u8) -> bool) -> Result<(), String> {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(|x| x.is_ascii_hexdigit());
            if !(hex(i + 1) && hex(i + 2)) {
                return Err(format!("invalid %-escape in {what} {}", snippet(s)));
            }
            i += 3;
        } else if allowed(c) {
            i += 1;
        } else {
            let ch = s.get(i..).and_then(|r| r.chars().next()).unwrap_or('?');
            return Err(format!("invalid character {ch:?} in {what} {}", snippet(s)));
        }
    }
    Ok(())
}

/// Decodes `%HH` escapes; invalid escapes are kept literally, invalid UTF-8 is
/// replaced by U+FFFD.
pub fn unescape_uri(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hi = b.get(i + 1).and_then(|x| (*x as char).to_digit(16));
            let lo = b.get(i + 2).and_then(|x| (*x as char).to_digit(16));
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes the surrounding double quotes of a quoted-string and resolves its
/// backslash escapes; returns the input unchanged if it is not quoted.
pub fn unquote(s: &str) -> Cow<'_, str> {
    match s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) if s.len() >= 2 => {
            if !inner.contains('\\') {
                return Cow::Borrowed(inner);
            }
            let mut out = String::with_capacity(inner.len());
            let mut esc = false;
            for ch in inner.chars() {
                if esc {
                    out.push(ch);
                    esc = false;
                } else if ch == '\\' {
                    esc = true;
                } else {
                    out.push(ch);
                }
            }
            Cow::Owned(out)
        }
        _ => Cow::Borrowed(s),
    }
}

/// Renders `s` as a quoted-string, escaping `"` and `\`. Characters that cannot
/// be represented (CR, LF, other controls) are replaced by a space.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            '\t' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------
// Cursor over a header value
// ---------------------------------------------------------------------------

/// Byte cursor over a `&str`. All predicates used with `take_while` accept
/// only ASCII bytes, so positions always stay on char boundaries.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        self.s.get(start..self.pos).unwrap_or("")
    }
}

/// Parses a quoted-string at the cursor. Returns the raw text (with quotes and
/// escapes) and the unescaped content.
fn parse_quoted<'a>(c: &mut Cursor<'a>) -> Result<(&'a str, String), String> {
    let start = c.pos;
    if !c.eat(b'"') {
        return Err("expected '\"'".into());
    }
    let rest = c.rest();
    let mut out = String::new();
    let mut escaped = false;
    for (i, ch) in rest.char_indices() {
        if escaped {
            if !ch.is_ascii() || ch == '\r' || ch == '\n' {
                return Err(format!("invalid escaped character {ch:?} in quoted string"));
            }
            out.push(ch);
            escaped = false;
        } else if ch == '\\' {
            escaped = true;
        } else if ch == '"' {
            c.pos += i + 1;
            return Ok((c.s.get(start..c.pos).unwrap_or(""), out));
        } else if ((ch as u32) < 0x20 && ch != '\t') || ch == '\x7f' {
            return Err(format!("control character {ch:?} in quoted string"));
        } else {
            out.push(ch);
        }
    }
    Err(format!(
        "unterminated quoted string {}",
        snippet(c.s.get(start..).unwrap_or(""))
    ))
}

/// Parameter list: `(name, value)` with values exactly as on the wire
/// (quoted-strings keep their quotes; see [`unquote`]).
pub type Params = Vec<(String, Option<String>)>;

fn find_param<'a>(params: &'a [(String, Option<String>)], name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

fn set_param_in(params: &mut Params, name: &str, value: Option<String>) {
    match params
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        Some(slot) => slot.1 = value,
        None => params.push((name.to_string(), value)),
    }
}

fn remove_param_in(params: &mut Params, name: &str) {
    params.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
}

fn write_params(f: &mut fmt::Formatter<'_>, params: &[(String, Option<String>)]) -> fmt::Result {
    for (n, v) in params {
        f.write_char(';')?;
        f.write_str(n)?;
        if let Some(v) = v {
            f.write_char('=')?;
            f.write_str(v)?;
        }
    }
    Ok(())
}

/// Header parameters: `*( SEMI generic-param )`, `generic-param = token [ EQUAL
/// gen-value ]`, `gen-value = token / host / quoted-string`, with optional
/// whitespace around `;` and `=`.
fn parse_header_params(c: &mut Cursor<'_>, out: &mut Params) -> Result<(), String> {
    loop {
        c.skip_ws();
        match c.peek() {
            None => return Ok(()),
            Some(b';') => c.pos += 1,
            Some(_) => return Err(format!("unexpected text {}", snippet(c.rest()))),
        }
        c.skip_ws();
        let name = c.take_while(is_token_char);
        if name.is_empty() {
            return Err(format!(
                "empty or invalid parameter name at {}",
                snippet(c.rest())
            ));
        }
        c.skip_ws();
        let value = if c.eat(b'=') {
            c.skip_ws();
            if c.peek() == Some(b'"') {
                Some(parse_quoted(c)?.0.to_string())
            } else {
                let v = c.take_while(is_gen_value_char);
                if v.is_empty() {
                    return Err(format!("missing value for parameter {}", snippet(name)));
                }
                Some(v.to_string())
            }
        } else {
            None
        };
        out.push((name.to_string(), value));
    }
}

// ---------------------------------------------------------------------------
// Hosts and ports
// ---------------------------------------------------------------------------

fn is_ipv4(s: &str) -> bool {
    let mut n = 0;
    for part in s.split('.') {
        n += 1;
        if part.is_empty()
            || part.len() > 3
            || !part.bytes().all(|b| b.is_ascii_digit())
            || part.parse::<u16>().map_or(true, |v| v > 255)
        {
            return false;
        }
    }
    n == 4
}

fn is_ip_address(s: &str) -> bool {
    if is_ipv4(s) || s.parse::<Ipv6Addr>().is_ok() {
        return true;
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .is_some_and(|inner| inner.parse::<Ipv6Addr>().is_ok())
}

fn validate_hostname(h: &str) -> Result<(), String> {
    let body = h.strip_suffix('.').unwrap_or(h);
    if body.is_empty() {
        return Err(format!("invalid host {}", snippet(h)));
    }
    let last = body.rsplit('.').next().unwrap_or("");
    if last.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        if body.len() == h.len() && is_ipv4(body) {
            return Ok(());
        }
        return Err(format!("invalid IPv4 address {}", snippet(h)));
    }
    for label in body.split('.') {
        if label.is_empty()
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!("invalid host name {}", snippet(h)));
        }
    }
    Ok(())
}

/// host = hostname / IPv4address / IPv6reference. IPv6 references keep their
/// brackets.
fn parse_host(c: &mut Cursor<'_>) -> Result<String, String> {
    if c.peek() == Some(b'[') {
        let rest = c.rest();
        let end = rest
            .find(']')
            .ok_or_else(|| format!("unterminated IPv6 reference {}", snippet(rest)))?;
        let inner = rest.get(1..end).unwrap_or("");
        if inner.parse::<Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 address {}", snippet(inner)));
        }
        c.pos += end + 1;
        return Ok(rest.get(..end + 1).unwrap_or("").to_string());
    }
    let h = c.take_while(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if h.is_empty() {
        return Err(if c.at_end() {
            "missing host".to_string()
        } else {
            format!("expected a host, found {}", snippet(c.rest()))
        });
    }
    validate_hostname(h)?;
    Ok(h.to_string())
}

fn parse_port(d: &str) -> Result<u16, String> {
    if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port {}", snippet(d)));
    }
    d.parse::<u16>()
        .map_err(|_| format!("port {} out of range", snippet(d)))
}

// ---------------------------------------------------------------------------
// Method
// ---------------------------------------------------------------------------

/// SIP request method. Method names are case-sensitive (RFC 3261 7.1): any
/// valid token other than the known upper-case names is `Other`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Other(String),
}

impl Method {
    /// The method name as sent on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }

    fn from_token(t: &str) -> Method {
        match t {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        }
    }

    /// Parses a method token (case-sensitive).
    pub fn parse(s: &str) -> Result<Method, ParseError> {
        if !is_token(s) {
            return Err(ParseError::bad_request(format!(
                "invalid method {}",
                snippet(s)
            )));
        }
        Ok(Method::from_token(s))
    }
}

impl FromStr for Method {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::parse(s)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------
// Header names
// ---------------------------------------------------------------------------

const COMPACT_FORMS: &[(u8, &str)] = &[
    (b'a', "Accept-Contact"),
    (b'b', "Referred-By"),
    (b'c', "Content-Type"),
    (b'd', "Request-Disposition"),
    (b'e', "Content-Encoding"),
    (b'f', "From"),
    (b'i', "Call-ID"),
    (b'j', "Reject-Contact"),
    (b'k', "Supported"),
    (b'l', "Content-Length"),
    (b'm', "Contact"),
    (b'n', "Identity-Info"),
    (b'o', "Event"),
    (b'r', "Refer-To"),
    (b's', "Subject"),
    (b't', "To"),
    (b'u', "Allow-Events"),
    (b'v', "Via"),
    (b'x', "Session-Expires"),
    (b'y', "Identity"),
];

/// Expands a compact header name (`v`, `f`, `i`, ...) to its full name;
/// other names are returned unchanged.
pub fn full_header_name(name: &str) -> &str {
    if let [c] = name.as_bytes() {
        let c = c.to_ascii_lowercase();
        if let Some((_, full)) = COMPACT_FORMS.iter().find(|(k, _)| *k == c) {
            return full;
        }
    }
    name
}

/// The compact form of a header name, if it has one.
pub fn compact_header_name(name: &str) -> Option<char> {
    let full = full_header_name(name);
    COMPACT_FORMS
        .iter()
        .find(|(_, f)| f.eq_ignore_ascii_case(full))
        .map(|(k, _)| *k as char)
}

/// Case-insensitive header name comparison that understands compact forms.
pub fn header_names_equal(a: &str, b: &str) -> bool {
    full_header_name(a).eq_ignore_ascii_case(full_header_name(b))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderKind {
    Via,
    CSeq,
    From,
    To,
    Contact,
    Route,
    RecordRoute,
    CallId,
    MaxForwards,
    ContentLength,
    Other,
}

impl HeaderKind {
    fn of(name: &str) -> HeaderKind {
        let full = full_header_name(name);
        const KINDS: &[(&str, HeaderKind)] = &[
            ("Via", HeaderKind::Via),
            ("CSeq", HeaderKind::CSeq),
            ("From", HeaderKind::From),
            ("To", HeaderKind::To),
            ("Contact", HeaderKind::Contact),
            ("Route", HeaderKind::Route),
            ("Record-Route", HeaderKind::RecordRoute),
            ("Call-ID", HeaderKind::CallId),
            ("Max-Forwards", HeaderKind::MaxForwards),
            ("Content-Length", HeaderKind::ContentLength),
        ];
        KINDS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(full))
            .map_or(HeaderKind::Other, |(_, k)| *k)
    }

    /// Slot for headers that may appear only once.
    fn single_slot(self) -> Option<usize> {
        match self {
            HeaderKind::CSeq => Some(0),
            HeaderKind::From => Some(1),
            HeaderKind::To => Some(2),
            HeaderKind::CallId => Some(3),
            HeaderKind::MaxForwards => Some(4),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------

/// Ordered header list. Names are kept as received; lookups are
/// case-insensitive and understand compact forms both ways.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    pub fn new() -> Self {
        Headers::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Headers {
            entries: Vec::with_capacity(n),
        }
    }

    /// Value of the first header line with this name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| header_names_equal(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// Values of every header line with this name, in order (not split on
    /// commas; see [`Headers::get_all_split`]).
    pub fn get_all(&self, name: &str) -> impl Iterator<Item = &str> + '_ {
        let key = full_header_name(name).to_owned();
        self.entries
            .iter()
            .filter(move |(n, _)| full_header_name(n).eq_ignore_ascii_case(&key))
            .map(|(_, v)| v.as_str())
    }

    /// Like [`Headers::get_all`], but each value is also split on commas that
    /// are outside quoted strings and angle brackets (for list headers such as
    /// Via, Contact, Route, Record-Route, Supported). Items are trimmed; empty
    /// items are skipped.
    pub fn get_all_split(&self, name: &str) -> impl Iterator<Item = &str> + '_ {
        self.get_all(name).flat_map(split_commas)
    }

    /// True if at least one header line has this name.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Number of header lines with this name.
    pub fn count(&self, name: &str) -> usize {
        self.get_all(name).count()
    }

    /// Appends a header line. Neither name nor value are validated; control
    /// characters are replaced by spaces when serializing.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.entries.push((name.to_string(), value.into()));
    }

    /// Replaces all header lines of this name (compact-aware) by one line at
    /// the position of the first, or appends it if there was none. The first
    /// line keeps its received name.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .entries
            .iter()
            .position(|(n, _)| header_names_equal(n, name))
        {
            Some(first) => {
                let mut idx = 0;
                let mut value = Some(value);
                self.entries.retain_mut(|(n, v)| {
                    let i = idx;
                    idx += 1;
                    if i == first {
                        if let Some(val) = value.take() {
                            *v = val;
                        }
                        true
                    } else {
                        i < first || !header_names_equal(n, name)
                    }
                });
            }
            None => self.push(name, value),
        }
    }

    /// Removes every header line with this name (compact-aware).
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| !header_names_equal(n, name));
    }

    /// All header lines in order as `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn required(&self, name: &str) -> Result<&str, ParseError> {
        self.get(name)
            .ok_or_else(|| ParseError::bad_request(format!("missing {name:?} header")))
    }

    /// The Call-ID value.
    pub fn call_id(&self) -> Option<&str> {
        self.get("Call-ID")
    }

    /// The parsed CSeq header.
    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        CSeq::parse(self.required("CSeq")?).map_err(|e| e.context("header \"CSeq\""))
    }

    /// All Via entries, top-most first.
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        let vias = self
            .get_all_split("Via")
            .map(|v| Via::parse(v).map_err(|e| e.context("header \"Via\"")))
            .collect::<Result<Vec<_>, _>>()?;
        if vias.is_empty() {
            return Err(ParseError::bad_request("missing \"Via\" header"));
        }
        Ok(vias)
    }

    /// The top-most Via entry.
    pub fn top_via(&self) -> Result<Via, ParseError> {
        let v = self
            .get_all_split("Via")
            .next()
            .ok_or_else(|| ParseError::bad_request("missing \"Via\" header"))?;
        Via::parse(v).map_err(|e| e.context("header \"Via\""))
    }

    /// The parsed From header.
    pub fn from_addr(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.required("From")?).map_err(|e| e.context("header \"From\""))
    }

    /// The parsed To header.
    pub fn to_addr(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse(self.required("To")?).map_err(|e| e.context("header \"To\""))
    }

    /// All Contact header lines combined. No Contact header gives an empty
    /// `Addrs` list; `*` must be the only contact.
    pub fn contacts(&self) -> Result<ContactList, ParseError> {
        let mut addrs = Vec::new();
        let mut wildcard = false;
        for v in self.get_all("Contact") {
            match parse_contact_list(v).map_err(|e| e.context("header \"Contact\""))? {
                ContactList::Wildcard => wildcard = true,
                ContactList::Addrs(a) => addrs.extend(a),
            }
        }
        if wildcard {
            if addrs.is_empty() && self.count("Contact") == 1 {
                return Ok(ContactList::Wildcard);
            }
            return Err(ParseError::bad_request(
                "header \"Contact\": wildcard \"*\" must be the only Contact",
            ));
        }
        Ok(ContactList::Addrs(addrs))
    }

    /// All entries of a name-addr list header such as Route or Record-Route.
    pub fn name_addrs(&self, name: &str) -> Result<Vec<NameAddr>, ParseError> {
        self.get_all_split(name)
            .map(|v| NameAddr::parse(v).map_err(|e| e.context(format!("header {name:?}"))))
            .collect()
    }

    /// The Max-Forwards value (0..=255).
    pub fn max_forwards(&self) -> Result<u32, ParseError> {
        parse_max_forwards(self.required("Max-Forwards")?)
            .map_err(|e| ParseError::bad_request(format!("header \"Max-Forwards\": {e}")))
    }

    /// The Content-Length value, if present (first occurrence).
    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        self.get("Content-Length")
            .map(|v| parse_content_length(v).map_err(|e| e.context("header \"Content-Length\"")))
            .transpose()
    }

    /// Sets the (single) Content-Length header to `len`, keeping the position
    /// of the first one, or appends it.
    fn normalize_content_length(&mut self, len: usize) {
        let v = len.to_string();
        let mut seen = false;
        self.entries.retain_mut(|(n, val)| {
            if HeaderKind::of(n) != HeaderKind::ContentLength {
                return true;
            }
            if seen {
                return false;
            }
            seen = true;
            val.clone_from(&v);
            true
        });
        if !seen {
            self.entries.push(("Content-Length".to_string(), v));
        }
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a str);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, String)>,
        fn(&'a (String, String)) -> (&'a str, &'a str),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        Headers {
            entries: iter
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        }
    }
}

/// Splits a header value on commas outside quoted strings and `<...>`.
/// Items are trimmed and empty items skipped.
pub fn split_commas(value: &str) -> CommaSplit<'_> {
    CommaSplit { s: value, pos: 0 }
}

/// Iterator returned by [`split_commas`].
#[derive(Debug, Clone)]
pub struct CommaSplit<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Iterator for CommaSplit<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.s.as_bytes();
        while self.pos < bytes.len() {
            let start = self.pos;
            let mut end = bytes.len();
            let (mut in_quote, mut escaped, mut in_angle) = (false, false, false);
            for (i, &b) in bytes.iter().enumerate().skip(start) {
                if in_quote {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_quote = false;
                    }
                    continue;
                }
                match b {
                    b'"' => in_quote = true,
                    b'<' => in_angle = true,
                    b'>' => in_angle = false,
                    b',' if !in_angle => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            self.pos = end + 1;
            let item = trim_ws(self.s.get(start..end).unwrap_or(""));
            if !item.is_empty() {
                return Some(item);
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------
// SIP URI
// ---------------------------------------------------------------------------

/// A `sip:`, `sips:` or `tel:` URI; other schemes are kept opaque.
///
/// * `sip`/`sips`: all fields as in RFC 3261 19.1.1; `user`, `password`,
///   parameter and header values keep their `%HH` escapes.
/// * `tel`: the number is in `user`, `host` is empty, parameters in `params`.
/// * any other scheme (`isbn:`, `urn:` ...): everything after the colon is in
///   `host`.
///
/// The scheme is stored lower-case; the host as received (IPv6 in brackets).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SipUri {
    pub scheme: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub params: Params,
    pub headers: Vec<(String, String)>,
}

impl SipUri {
    /// Parses a URI (no surrounding whitespace or angle brackets).
    pub fn parse(s: &str) -> Result<SipUri, ParseError> {
        parse_uri(s).map_err(ParseError::bad_request)
    }

    /// A `sip:` URI.
    pub fn sip(user: Option<&str>, host: &str, port: Option<u16>) -> SipUri {
        SipUri {
            scheme: "sip".into(),
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
            ..SipUri::default()
        }
    }

    /// True for `sip` and `sips` URIs.
    pub fn is_sip(&self) -> bool {
        is_sip_scheme(&self.scheme)
    }

    /// A URI parameter: `None` if absent, `Some(None)` if present without value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        set_param_in(&mut self.params, name, value)
    }

    pub fn remove_param(&mut self, name: &str) {
        remove_param_in(&mut self.params, name)
    }

    /// The `transport` parameter, if any.
    pub fn transport(&self) -> Option<&str> {
        self.param("transport").flatten()
    }

    /// The user part without telephone-subscriber parameters (everything
    /// before the first `;`), still escaped.
    pub fn user_part(&self) -> Option<&str> {
        self.user
            .as_deref()
            .map(|u| u.split(';').next().unwrap_or(u))
    }

    /// The user part with `%HH` escapes decoded.
    pub fn user_unescaped(&self) -> Option<String> {
        self.user.as_deref().map(unescape_uri)
    }

    /// `host[:port]`.
    pub fn host_port(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }
}

fn is_sip_scheme(s: &str) -> bool {
    s.eq_ignore_ascii_case("sip") || s.eq_ignore_ascii_case("sips")
}

impl FromStr for SipUri {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SipUri::parse(s)
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme.as_str();
        if scheme.eq_ignore_ascii_case("tel") {
            write!(f, "tel:{}", self.user.as_deref().unwrap_or(&self.host))?;
        } else if is_sip_scheme(scheme) {
            write!(f, "{scheme}:")?;
            if let Some(u) = &self.user {
                f.write_str(u)?;
                if let Some(p) = &self.password {
                    write!(f, ":{p}")?;
                }
                f.write_char('@')?;
            }
            f.write_str(&self.host)?;
            if let Some(p) = self.port {
                write!(f, ":{p}")?;
            }
        } else {
            return write!(f, "{scheme}:{}", self.host);
        }
        write_params(f, &self.params)?;
        for (i, (n, v)) in self.headers.iter().enumerate() {
            f.write_char(if i == 0 { '?' } else { '&' })?;
            write!(f, "{n}={v}")?;
        }
        Ok(())
    }
}

fn parse_uri(s: &str) -> Result<SipUri, String> {
    if s.is_empty() {
        return Err("empty URI".into());
    }
    let Some((scheme, rest)) = s.split_once(':') else {
        return Err(format!("missing URI scheme in {}", snippet(s)));
    };
    let sb = scheme.as_bytes();
    if !sb.first().is_some_and(|b| b.is_ascii_alphabetic())
        || !sb
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(format!("invalid URI scheme in {}", snippet(s)));
    }
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "sip" | "sips" => parse_sip_uri(scheme, rest),
        "tel" => parse_tel_uri(rest),
        _ => {
            if rest.is_empty() {
                return Err(format!("empty URI after scheme in {}", snippet(s)));
            }
            check_chars(rest, "URI", is_uric)?;
            Ok(SipUri {
                scheme,
                host: rest.to_string(),
                ..SipUri::default()
            })
        }
    }
}

fn parse_uri_params(c: &mut Cursor<'_>, out: &mut Params) -> Result<(), String> {
    let is_pc = |b: u8| is_param_char(b) || b == b'%';
    while c.eat(b';') {
        let name = c.take_while(is_pc);
        if name.is_empty() {
            return Err(format!("empty URI parameter name at {}", snippet(c.rest())));
        }
        check_chars(name, "URI parameter", is_param_char)?;
        let value = if c.eat(b'=') {
            let v = c.take_while(is_pc);
            if v.is_empty() {
                return Err(format!("empty value for URI parameter {}", snippet(name)));
            }
            check_chars(v, "URI parameter", is_param_char)?;
            Some(v.to_string())
        } else {
            None
        };
        out.push((name.to_string(), value));
    }
    Ok(())
}

fn parse_sip_uri(scheme: String, rest: &str) -> Result<SipUri, String> {
    let (userinfo, hostpart) = match rest.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (mut user, mut password) = (None, None);
    if let Some(ui) = userinfo {
        let (u, p) = match ui.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (ui, None),
        };
        if u.is_empty() {
            return Err("empty user part in URI".into());
        }
        check_chars(u, "URI user part", is_user_char)?;
        if let Some(p) = p {
            check_chars(p, "URI password", is_password_char)?;
        }
        user = Some(u.to_string());
        password = p.map(str::to_string);
    }
    let mut c = Cursor::new(hostpart);
    let host = parse_host(&mut c)?;
    let port = if c.eat(b':') {
        Some(parse_port(c.take_while(|b| b.is_ascii_digit()))?)
    } else {
        None
    };
    let mut params = Vec::new();
    parse_uri_params(&mut c, &mut params)?;
    let mut headers = Vec::new();
    if c.eat(b'?') {
        let is_hc = |b: u8| is_hnv_char(b) || b == b'%';
        loop {
            let name = c.take_while(is_hc);
            if name.is_empty() {
                return Err("empty URI header name".into());
            }
            check_chars(name, "URI header", is_hnv_char)?;
            if !c.eat(b'=') {
                return Err(format!("URI header {} has no '='", snippet(name)));
            }
            let value = c.take_while(is_hc);
            check_chars(value, "URI header", is_hnv_char)?;
            headers.push((name.to_string(), value.to_string()));
            if !c.eat(b'&') {
                break;
            }
        }
    }
    if !c.at_end() {
        return Err(format!("unexpected {} in URI", snippet(c.rest())));
    }
    Ok(SipUri {
        scheme,
        user,
        password,
        host,
        port,
        params,
        headers,
    })
}

fn parse_tel_uri(rest: &str) -> Result<SipUri, String> {
    let mut c = Cursor::new(rest);
    let number = c.take_while(is_tel_char);
    if number.is_empty() {
        return Err(format!(
            "invalid telephone number in tel URI {}",
            snippet(rest)
        ));
    }
    let mut params = Vec::new();
    parse_uri_params(&mut c, &mut params)?;
    if !c.at_end() {
        return Err(format!("unexpected {} in tel URI", snippet(c.rest())));
    }
    Ok(SipUri {
        scheme: "tel".into(),
        user: Some(number.to_string()),
        params,
        ..SipUri::default()
    })
}

// ---------------------------------------------------------------------------
// Name-addr (From, To, Contact, Route, Record-Route ...)
// ---------------------------------------------------------------------------

/// `[display-name] <uri> *(;param)` or `uri *(;param)` (RFC 3261 20.10: in the
/// bare form the parameters after the URI are header parameters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NameAddr {
    /// Display name, unescaped (quotes removed). Unquoted token display names
    /// are kept as received.
    pub display_name: Option<String>,
    pub uri: SipUri,
    /// Header parameters, values exactly as on the wire (see [`unquote`]).
    pub params: Params,
}

impl NameAddr {
    pub fn new(uri: SipUri) -> Self {
        NameAddr {
            display_name: None,
            uri,
            params: Vec::new(),
        }
    }

    pub fn parse(s: &str) -> Result<NameAddr, ParseError> {
        parse_name_addr(s).map_err(ParseError::bad_request)
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    pub fn set_tag(&mut self, tag: &str) {
        self.set_param("tag", Some(tag.to_string()))
    }

    /// A header parameter: `None` if absent, `Some(None)` if present without
    /// value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        set_param_in(&mut self.params, name, value)
    }

    pub fn remove_param(&mut self, name: &str) {
        remove_param_in(&mut self.params, name)
    }

    /// The `expires` parameter as seconds; values above 2^32-1 saturate.
    /// `None` if absent or not a number.
    pub fn expires(&self) -> Option<u32> {
        let v = self.param("expires").flatten()?;
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(v.parse::<u32>().unwrap_or(u32::MAX))
    }
}

impl FromStr for NameAddr {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NameAddr::parse(s)
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display_name {
            f.write_str(&quote(d))?;
            f.write_char(' ')?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

fn parse_name_addr(s: &str) -> Result<NameAddr, String> {
    let s = trim_ws(s);
    let mut c = Cursor::new(s);
    let mut display_name = None;
    let angle = match c.peek() {
        None => return Err("empty value".into()),
        Some(b'"') => {
            let (_, d) = parse_quoted(&mut c)?;
            c.skip_ws();
            if !c.eat(b'<') {
                return Err(format!(
                    "expected '<' after display name, found {}",
                    snippet(c.rest())
                ));
            }
            display_name = Some(d);
            true
        }
        Some(b'<') => {
            c.pos += 1;
            true
        }
        Some(_) => {
            // display-name = *(token LWS) before '<', else a bare addr-spec
            let start = c.pos;
            let mut end = start;
            let mut found = false;
            loop {
                if c.take_while(is_token_char).is_empty() {
                    break;
                }
                end = c.pos;
                let ws = c.skip_ws();
                if c.peek() == Some(b'<') {
                    found = true;
                    break;
                }
                if ws == 0 {
                    break;
                }
            }
            if found {
                display_name = Some(s.get(start..end).unwrap_or("").to_string());
                c.pos += 1;
            } else {
                c.pos = start;
            }
            found
        }
    };
    let uri = if angle {
        let rest = c.rest();
        let Some(end) = rest.find('>') else {
            return Err(format!("missing '>' in {}", snippet(s)));
        };
        let inner = rest.get(..end).unwrap_or("");
        if inner.contains([' ', '\t']) {
            return Err(format!("whitespace inside <{inner}>"));
        }
        let uri = parse_uri(inner)?;
        c.pos += end + 1;
        uri
    } else {
        let rest = c.rest();
        let end = rest.find([';', ' ', '\t']).unwrap_or(rest.len());
        let u = rest.get(..end).unwrap_or("");
        if u.contains([',', '?']) && !u.contains(['<', '"']) {
            return Err(format!(
                "URI {} contains ',' or '?' and must be enclosed in <>",
                snippet(u)
            ));
        }
        let uri = match parse_uri(u) {
            Ok(uri) => uri,
            Err(e) => {
                return Err(if s.contains('<') {
                    format!(
                        "invalid display name in {} (must be a quoted string or tokens)",
                        snippet(s)
                    )
                } else {
                    e
                })
            }
        };
        c.pos += end;
        uri
    };
    let mut params = Vec::new();
    parse_header_params(&mut c, &mut params)?;
    Ok(NameAddr {
        display_name,
        uri,
        params,
    })
}

/// A parsed Contact header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactList {
    /// `Contact: *` (REGISTER removing all bindings).
    Wildcard,
    Addrs(Vec<NameAddr>),
}

/// Parses one Contact header value: `*` or a comma-separated list of
/// name-addrs.
pub fn parse_contact_list(value: &str) -> Result<ContactList, ParseError> {
    parse_contact_list_inner(value).map_err(ParseError::bad_request)
}

fn parse_contact_list_inner(value: &str) -> Result<ContactList, String> {
    if trim_ws(value) == "*" {
        return Ok(ContactList::Wildcard);
    }
    let addrs = split_commas(value)
        .map(parse_name_addr)
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err("empty Contact".into());
    }
    Ok(ContactList::Addrs(addrs))
}

// ---------------------------------------------------------------------------
// Via
// ---------------------------------------------------------------------------

/// One Via entry: `SIP/2.0/<transport> host[:port] *(;param)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Via {
    /// Upper-cased transport (UDP, TCP, TLS, SCTP, WS, WSS, ...).
    pub transport: String,
    pub host: String,
    pub port: Option<u16>,
    /// Parameters, values exactly as on the wire.
    pub params: Params,
}

impl Via {
    pub fn new(transport: &str, host: &str, port: Option<u16>) -> Via {
        Via {
            transport: transport.to_ascii_uppercase(),
            host: host.to_string(),
            port,
            params: Vec::new(),
        }
    }

    /// Parses a single Via entry (not a comma-separated list).
    pub fn parse(s: &str) -> Result<Via, ParseError> {
        parse_via(s).map_err(ParseError::bad_request)
    }

    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// A parameter: `None` if absent, `Some(None)` if present without value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// Sets (replacing the first occurrence) or appends a parameter.
    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        set_param_in(&mut self.params, name, value)
    }

    pub fn remove_param(&mut self, name: &str) {
        remove_param_in(&mut self.params, name)
    }

    /// `received` parameter.
    pub fn received(&self) -> Option<&str> {
        self.param("received").flatten()
    }

    /// `rport`: `None` absent, `Some(None)` requested, `Some(Some(p))` filled.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport")
            .map(|v| v.and_then(|p| p.parse::<u16>().ok()))
    }

    /// True if the branch starts with the RFC 3261 magic cookie `z9hG4bK`.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with("z9hG4bK"))
    }
}

impl FromStr for Via {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Via::parse(s)
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write_params(f, &self.params)
    }
}

fn parse_via(s: &str) -> Result<Via, String> {
    let t = trim_ws(s);
    let mut c = Cursor::new(t);
    let bad = || {
        format!(
            "expected \"SIP/2.0/<transport> <host>[:<port>]\", got {}",
            snippet(t)
        )
    };
    let name = c.take_while(is_token_char);
    c.skip_ws();
    if !name.eq_ignore_ascii_case("SIP") || !c.eat(b'/') {
        return Err(bad());
    }
    c.skip_ws();
    let version = c.take_while(is_token_char);
    c.skip_ws();
    if version != "2.0" || !c.eat(b'/') {
        return Err(bad());
    }
    c.skip_ws();
    let transport = c.take_while(is_token_char);
    if transport.is_empty() || c.skip_ws() == 0 {
        return Err(bad());
    }
    let host = parse_host(&mut c)?;
    c.skip_ws();
    let port = if c.eat(b':') {
        c.skip_ws();
        Some(parse_port(c.take_while(|b| b.is_ascii_digit()))?)
    } else {
        None
    };
    let mut params = Vec::new();
    parse_header_params(&mut c, &mut params)?;
    for (n, v) in &params {
        let v = v.as_deref();
        let ok = if n.eq_ignore_ascii_case("branch") {
            v.is_some_and(is_token)
        } else if n.eq_ignore_ascii_case("received") {
            v.is_some_and(is_ip_address)
        } else if n.eq_ignore_ascii_case("rport") {
            v.is_none_or(|p| parse_port(p).is_ok())
        } else if n.eq_ignore_ascii_case("ttl") {
            v.is_some_and(|t| {
                !t.is_empty()
                    && t.len() <= 3
                    && t.bytes().all(|b| b.is_ascii_digit())
                    && t.parse::<u16>().is_ok_and(|x| x <= 255)
            })
        } else if n.eq_ignore_ascii_case("maddr") {
            v.is_some_and(|h| {
                let mut hc = Cursor::new(h);
                parse_host(&mut hc).is_ok() && hc.at_end()
            })
        } else {
            true
        };
        if !ok {
            return Err(format!(
                "invalid Via parameter {}",
                snippet(&match v {
                    Some(v) => format!("{n}={v}"),
                    None => n.clone(),
                })
            ));
        }
    }
    Ok(Via {
        transport: transport.to_ascii_uppercase(),
        host,
        port,
        params,
    })
}

// ---------------------------------------------------------------------------
// CSeq and scalar headers
// ---------------------------------------------------------------------------

/// `CSeq: <seq> <method>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn new(seq: u32, method: Method) -> CSeq {
        CSeq { seq, method }
    }

    pub fn parse(s: &str) -> Result<CSeq, ParseError> {
        let t = trim_ws(s);
        let bad = || {
            ParseError::bad_request(format!(
                "expected \"<number> <method>\", got {}",
                snippet(s)
            ))
        };
        let mut c = Cursor::new(t);
        let digits = c.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() || c.skip_ws() == 0 {
            return Err(bad());
        }
        let method = c.take_while(is_token_char);
        if method.is_empty() || !c.at_end() {
            return Err(bad());
        }
        let seq = digits.parse::<u32>().map_err(|_| {
            ParseError::bad_request(format!(
                "sequence number {} exceeds 2**32-1",
                snippet(digits)
            ))
        })?;
        Ok(CSeq {
            seq,
            method: Method::from_token(method),
        })
    }
}

impl FromStr for CSeq {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CSeq::parse(s)
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

fn validate_call_id(v: &str) -> Result<(), String> {
    let (a, b) = match v.split_once('@') {
        Some((a, b)) => (a, Some(b)),
        None => (v, None),
    };
    let word = |w: &str| !w.is_empty() && w.bytes().all(is_word_char);
    if !word(a) || b.is_some_and(|b| !word(b)) {
        return Err(format!("expected \"<word>[@<word>]\", got {}", snippet(v)));
    }
    Ok(())
}

fn parse_max_forwards(v: &str) -> Result<u32, String> {
    let t = trim_ws(v);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected a number, got {}", snippet(v)));
    }
    let sig = t.trim_start_matches('0');
    let n = if sig.is_empty() {
        0
    } else if sig.len() > 3 {
        u32::MAX
    } else {
        sig.parse::<u32>().unwrap_or(u32::MAX)
    };
    if n > 255 {
        return Err(format!("value {} exceeds 255", snippet(t)));
    }
    Ok(n)
}

fn parse_content_length(v: &str) -> Result<usize, ParseError> {
    let t = trim_ws(v);
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::bad_request(format!(
            "invalid Content-Length {}",
            snippet(v)
        )));
    }
    let sig = t.trim_start_matches('0');
    let n = if sig.is_empty() {
        0
    } else if sig.len() > 9 {
        usize::MAX
    } else {
        sig.parse::<usize>().unwrap_or(usize::MAX)
    };
    if n > MAX_MESSAGE_SIZE {
        return Err(ParseError::too_large(format!(
            "Content-Length {} exceeds the maximum message size of {MAX_MESSAGE_SIZE} bytes",
            snippet(t)
        )));
    }
    Ok(n)
}

/// Syntax check of the headers this module understands.
fn check_header_value(kind: HeaderKind, value: &str) -> Result<(), String> {
    let list = |f: fn(&str) -> Result<(), String>, what: &str| {
        let mut n = 0;
        for item in split_commas(value) {
            f(item)?;
            n += 1;
        }
        if n == 0 {
            return Err(format!("empty {what}"));
        }
        Ok(())
    };
    match kind {
        HeaderKind::Via => list(|v| parse_via(v).map(|_| ()), "Via"),
        HeaderKind::CSeq => CSeq::parse(value).map(|_| ()).map_err(|e| e.detail),
        HeaderKind::From | HeaderKind::To => parse_name_addr(value).map(|_| ()),
        HeaderKind::Contact => parse_contact_list_inner(value).map(|_| ()),
        HeaderKind::Route | HeaderKind::RecordRoute => {
            list(|v| parse_name_addr(v).map(|_| ()), "route")
        }
        HeaderKind::CallId => validate_call_id(value),
        HeaderKind::MaxForwards => parse_max_forwards(value).map(|_| ()),
        HeaderKind::ContentLength | HeaderKind::Other => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// Request-URI as received (syntax-checked).
    pub uri: String,
    pub headers: Headers,
    pub body: Bytes,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Bytes,
}

/// A SIP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipMessage {
    Request(Request),
    Response(Response),
}

/// Replaces control characters (which would break the framing) by spaces.
fn push_clean(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(is_forbidden_ctl) {
        out.extend(
            s.bytes()
                .map(|b| if is_forbidden_ctl(b) { b' ' } else { b }),
        );
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

fn write_headers_and_body(out: &mut Vec<u8>, headers: &Headers, body: &[u8]) {
    let mut wrote_cl = false;
    for (name, value) in &headers.entries {
        if HeaderKind::of(name) == HeaderKind::ContentLength {
            if wrote_cl {
                continue;
            }
            wrote_cl = true;
            push_clean(out, name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(body.len().to_string().as_bytes());
        } else {
            push_clean(out, name);
            out.extend_from_slice(b": ");
            push_clean(out, value);
        }
        out.extend_from_slice(b"\r\n");
    }
    if !wrote_cl {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

fn estimated_size(headers: &Headers, body: &[u8]) -> usize {
    64 + body.len()
        + headers
            .entries
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>()
}

impl Request {
    /// A request without headers or body.
    pub fn new(method: Method, uri: impl Into<String>) -> Request {
        Request {
            method,
            uri: uri.into(),
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    pub fn call_id(&self) -> Option<&str> {
        self.headers.call_id()
    }

    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        self.headers.cseq()
    }

    pub fn top_via(&self) -> Result<Via, ParseError> {
        self.headers.top_via()
    }

    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.headers.vias()
    }

    pub fn from(&self) -> Result<NameAddr, ParseError> {
        self.headers.from_addr()
    }

    pub fn to(&self) -> Result<NameAddr, ParseError> {
        self.headers.to_addr()
    }

    pub fn max_forwards(&self) -> Result<u32, ParseError> {
        self.headers.max_forwards()
    }

    pub fn contacts(&self) -> Result<ContactList, ParseError> {
        self.headers.contacts()
    }

    /// The parsed Request-URI.
    pub fn request_uri(&self) -> Result<SipUri, ParseError> {
        SipUri::parse(&self.uri).map_err(|e| e.context("Request-URI"))
    }

    /// RFC 3261 8.1.1 / 8.2 checks: To, From, CSeq (whose method must equal
    /// the request method; for ACK and CANCEL that is ACK resp. CANCEL), Call-ID,
    /// Max-Forwards and Via must be present exactly once (Via at least once)
    /// and well formed. Errors carry status 400, naming the header. A
    /// Request-URI scheme other than sip, sips or tel gives 416.
    pub fn validate(&self) -> Result<(), ParseError> {
        let h = &self.headers;
        for name in ["To", "From", "CSeq", "Call-ID", "Max-Forwards"] {
            match h.count(name) {
                0 => return Err(ParseError::bad_request(format!("missing {name:?} header"))),
                1 => {}
                n => {
                    return Err(ParseError::bad_request(format!(
                        "{n} {name:?} headers, expected exactly one"
                    )))
                }
            }
        }
        h.to_addr()?;
        h.from_addr()?;
        let cseq = h.cseq()?;
        if cseq.method != self.method {
            return Err(ParseError::bad_request(format!(
                "header \"CSeq\": method {} does not match request method {}",
                snippet(cseq.method.as_str()),
                snippet(self.method.as_str())
            )));
        }
        let call_id = h.required("Call-ID")?;
        validate_call_id(call_id)
            .map_err(|e| ParseError::bad_request(format!("header \"Call-ID\": {e}")))?;
        h.max_forwards()?;
        h.vias()?;
        let uri = self.request_uri()?;
        if !uri.is_sip() && uri.scheme != "tel" {
            return Err(ParseError::new(
                Some(416),
                format!("unsupported Request-URI scheme {}", snippet(&uri.scheme)),
            ));
        }
        Ok(())
    }

    /// Builds a response per RFC 3261 8.2.6.2: copies all Via lines (in
    /// order), From, To (adding `;tag=<to_tag>` if To has no tag and
    /// `status > 100`), Call-ID and CSeq (and Timestamp for 100), with
    /// `Content-Length: 0`. An empty `reason` uses [`default_reason`].
    pub fn make_response(&self, status: u16, reason: &str, to_tag: Option<&str>) -> Response {
        let mut h = Headers::with_capacity(8);
        for v in self.headers.get_all("Via") {
            h.push("Via", v);
        }
        if let Some(v) = self.headers.get("From") {
            h.push("From", v);
        }
        if let Some(v) = self.headers.get("To") {
            let mut to = v.to_string();
            if let (true, Some(tag)) = (status > 100, to_tag) {
                let has_tag = match NameAddr::parse(v) {
                    Ok(na) => na.tag().is_some(),
                    Err(_) => v.to_ascii_lowercase().contains(";tag="),
                };
                if !has_tag {
                    to.push_str(";tag=");
                    to.push_str(tag);
                }
            }
            h.push("To", to);
        }
        if let Some(v) = self.headers.get("Call-ID") {
            h.push("Call-ID", v);
        }
        if let Some(v) = self.headers.get("CSeq") {
            h.push("CSeq", v);
        }
        if status == 100 {
            if let Some(v) = self.headers.get("Timestamp") {
                h.push("Timestamp", v);
            }
        }
        h.push("Content-Length", "0");
        Response {
            status,
            reason: if reason.is_empty() {
                default_reason(status).to_string()
            } else {
                reason.to_string()
            },
            headers: h,
            body: Bytes::new(),
        }
    }

    /// Sets Content-Length to the body length exactly as [`Request::to_bytes`]
    /// writes it (first occurrence kept in place, duplicates removed, appended
    /// if absent).
    pub fn normalize_content_length(&mut self) {
        self.headers.normalize_content_length(self.body.len());
    }

    /// Appends the wire form to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        push_clean(out, self.method.as_str());
        out.push(b' ');
        push_clean(out, &self.uri);
        out.extend_from_slice(b" SIP/2.0\r\n");
        write_headers_and_body(out, &self.headers, &self.body);
    }

    /// The wire form (CRLF line endings, correct Content-Length).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(estimated_size(&self.headers, &self.body));
        self.write_to(&mut out);
        out
    }
}

impl Response {
    /// A response without headers or body; an empty reason uses
    /// [`default_reason`].
    pub fn new(status: u16, reason: &str) -> Response {
        Response {
            status,
            reason: if reason.is_empty() {
                default_reason(status).to_string()
            } else {
                reason.to_string()
            },
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    pub fn call_id(&self) -> Option<&str> {
        self.headers.call_id()
    }

    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        self.headers.cseq()
    }

    pub fn top_via(&self) -> Result<Via, ParseError> {
        self.headers.top_via()
    }

    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        self.headers.vias()
    }

    pub fn from(&self) -> Result<NameAddr, ParseError> {
        self.headers.from_addr()
    }

    pub fn to(&self) -> Result<NameAddr, ParseError> {
        self.headers.to_addr()
    }

    pub fn contacts(&self) -> Result<ContactList, ParseError> {
        self.headers.contacts()
    }

    /// Checks that Via, From, To, Call-ID and CSeq are present and well
    /// formed. Errors have no status (a bad response is dropped).
    pub fn validate(&self) -> Result<(), ParseError> {
        let h = &self.headers;
        let r = (|| {
            h.vias()?;
            h.from_addr()?;
            h.to_addr()?;
            let call_id = h.required("Call-ID")?;
            validate_call_id(call_id).map_err(ParseError::bad_request)?;
            h.cseq()?;
            Ok(())
        })();
        r.map_err(|e: ParseError| e.with_status(None))
    }

    /// See [`Request::normalize_content_length`].
    pub fn normalize_content_length(&mut self) {
        self.headers.normalize_content_length(self.body.len());
    }

    /// Appends the wire form to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("SIP/2.0 {:03} ", self.status).as_bytes());
        push_clean(out, &self.reason);
        out.extend_from_slice(b"\r\n");
        write_headers_and_body(out, &self.headers, &self.body);
    }

    /// The wire form (CRLF line endings, correct Content-Length).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(estimated_size(&self.headers, &self.body));
        self.write_to(&mut out);
        out
    }
}

impl SipMessage {
    pub fn is_request(&self) -> bool {
        matches!(self, SipMessage::Request(_))
    }

    pub fn as_request(&self) -> Option<&Request> {
        match self {
            SipMessage::Request(r) => Some(r),
            SipMessage::Response(_) => None,
        }
    }

    pub fn as_response(&self) -> Option<&Response> {
        match self {
            SipMessage::Response(r) => Some(r),
            SipMessage::Request(_) => None,
        }
    }

    pub fn headers(&self) -> &Headers {
        match self {
            SipMessage::Request(r) => &r.headers,
            SipMessage::Response(r) => &r.headers,
        }
    }

    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            SipMessage::Request(r) => &mut r.headers,
            SipMessage::Response(r) => &mut r.headers,
        }
    }

    pub fn body(&self) -> &Bytes {
        match self {
            SipMessage::Request(r) => &r.body,
            SipMessage::Response(r) => &r.body,
        }
    }

    pub fn call_id(&self) -> Option<&str> {
        self.headers().call_id()
    }

    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        self.headers().cseq()
    }

    pub fn top_via(&self) -> Result<Via, ParseError> {
        self.headers().top_via()
    }

    /// See [`Request::normalize_content_length`].
    pub fn normalize_content_length(&mut self) {
        match self {
            SipMessage::Request(r) => r.normalize_content_length(),
            SipMessage::Response(r) => r.normalize_content_length(),
        }
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            SipMessage::Request(r) => r.write_to(out),
            SipMessage::Response(r) => r.write_to(out),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            SipMessage::Request(r) => r.to_bytes(),
            SipMessage::Response(r) => r.to_bytes(),
        }
    }
}

impl From<Request> for SipMessage {
    fn from(r: Request) -> Self {
        SipMessage::Request(r)
    }
}

impl From<Response> for SipMessage {
    fn from(r: Response) -> Self {
        SipMessage::Response(r)
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

impl fmt::Display for SipMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// Standard reason phrase for a status code (a generic class phrase for
/// unknown codes).
pub fn default_reason(status: u16) -> &'static str {
    if let Some(r) = known_reason(status) {
        return r;
    }
    match status {
        100..=199 => "Session Progress",
        200..=299 => "Success",
        300..=399 => "Redirection",
        400..=499 => "Client Error",
        500..=599 => "Server Error",
        600..=699 => "Global Failure",
        _ => "Unknown",
    }
}

fn known_reason(status: u16) -> Option<&'static str> {
    Some(match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        199 => "Early Dialog Terminated",
        200 => "OK",
        202 => "Accepted",
        204 => "No Notification",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        412 => "Conditional Request Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        417 => "Unknown Resource-Priority",
        420 => "Bad Extension",
        421 => "Extension Required",
        422 => "Session Interval Too Small",
        423 => "Interval Too Brief",
        424 => "Bad Location Information",
        428 => "Use Identity Header",
        429 => "Provide Referrer Identity",
        430 => "Flow Failed",
        433 => "Anonymity Disallowed",
        436 => "Bad Identity-Info",
        437 => "Unsupported Certificate",
        438 => "Invalid Identity Header",
        439 => "First Hop Lacks Outbound Support",
        440 => "Max-Breadth Exceeded",
        469 => "Bad Info Package",
        470 => "Consent Needed",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        493 => "Undecipherable",
        494 => "Security Agreement Required",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        555 => "Push Notification Service Not Supported",
        580 => "Precondition Failure",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        607 => "Unwanted",
        608 => "Rejected",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Request,
    Response,
    Garbage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Datagram,
    Stream,
}

/// Number of leading CR and LF bytes (keep-alives, RFC 5626 pings, and the
/// CRLFs RFC 3261 7.5 says to ignore before a start line) to discard.
pub fn skip_keepalive(buf: &[u8]) -> usize {
    buf.iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len())
}

/// The line starting at `from`: its content (without LF and one preceding CR)
/// and the start of the next line. `None` if there is no LF.
fn line_at(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(from..)?;
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let content = rest.get(..nl)?;
    let content = content.strip_suffix(b"\r").unwrap_or(content);
    Some((content, from + nl + 1))
}

fn first_line(buf: &[u8]) -> &[u8] {
    let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let l = buf.get(..end).unwrap_or(buf);
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// Request if the last word of the first line is a `SIP/` version, response
/// if the line starts with one, anything else is not SIP.
fn classify(line: &[u8]) -> Kind {
    if starts_with_ci(line, b"SIP/") {
        return Kind::Response;
    }
    let t = trim_ws_bytes(line);
    match t.iter().rposition(|&b| is_ws(b)) {
        Some(i) if starts_with_ci(t.get(i + 1..).unwrap_or(&[]), b"SIP/") => Kind::Request,
        _ => Kind::Garbage,
    }
}

fn for_kind(e: ParseError, kind: Kind) -> ParseError {
    if kind == Kind::Request {
        e
    } else {
        e.with_status(None)
    }
}

/// Incremental search for the empty line ending the header section.
#[derive(Debug, Clone, Default)]
struct HeadScan {
    line_start: usize,
    search_from: usize,
    lines: usize,
}

impl HeadScan {
    /// `Some((head_end, body_start))`: the header lines occupy `..head_end`,
    /// the body starts at `body_start`.
    fn scan(&mut self, buf: &[u8]) -> Option<(usize, usize)> {
        loop {
            let from = self.search_from.max(self.line_start);
            let rest = buf.get(from..)?;
            let Some(i) = rest.iter().position(|&b| b == b'\n') else {
                self.search_from = buf.len();
                return None;
            };
            let nl = from + i;
            let content = buf.get(self.line_start..nl)?;
            if content.is_empty() || content == b"\r" {
                return Some((self.line_start, nl + 1));
            }
            self.lines += 1;
            self.line_start = nl + 1;
            self.search_from = nl + 1;
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    HeadScan::default().scan(buf)
}

fn check_line(raw: &[u8], line_no: usize) -> Result<&str, ParseError> {
    if let Some(&b) = raw.iter().find(|&&b| is_forbidden_ctl(b)) {
        return Err(ParseError::bad_request(format!(
            "line {line_no}: invalid control character 0x{b:02x}"
        )));
    }
    std::str::from_utf8(raw).map_err(|_| {
        ParseError::bad_request(format!("line {line_no}: header section is not valid UTF-8"))
    })
}

fn check_version(v: &str, line_kind: &str) -> Result<(), ParseError> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        return Ok(());
    }
    let well_formed = starts_with_ci(v.as_bytes(), b"SIP/")
        && v.get(4..)
            .and_then(|n| n.split_once('.'))
            .is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().all(|x| x.is_ascii_digit())
                    && b.bytes().all(|x| x.is_ascii_digit())
            });
    if well_formed {
        Err(ParseError::new(
            Some(505),
            format!("line 1: SIP version {} not supported", snippet(v)),
        ))
    } else {
        Err(ParseError::bad_request(format!(
            "line 1: malformed SIP version {} in {line_kind}",
            snippet(v)
        )))
    }
}

fn parse_request_line(line: &str) -> Result<(Method, String), ParseError> {
    if line.ends_with([' ', '\t']) {
        return Err(ParseError::bad_request(
            "line 1: trailing whitespace in Request-Line",
        ));
    }
    let shape = || {
        ParseError::bad_request(format!(
            "line 1: expected \"<method> SP <Request-URI> SP SIP/2.0\" separated by single spaces, got {}",
            snippet(line)
        ))
    };
    let Some((head, version)) = line.rsplit_once(' ') else {
        return Err(shape());
    };
    check_version(version, "Request-Line")?;
    let Some((method, uri)) = head.split_once(' ') else {
        return Err(shape());
    };
    if method.is_empty() || uri.is_empty() || uri.contains(' ') {
        return Err(shape());
    }
    let method = Method::parse(method).map_err(|e| e.context("line 1"))?;
    if uri.starts_with('<') {
        return Err(ParseError::bad_request(format!(
            "line 1: Request-URI {} must not be enclosed in <>",
            snippet(uri)
        )));
    }
    let parsed = parse_uri(uri)
        .map_err(|e| ParseError::bad_request(format!("line 1: invalid Request-URI: {e}")))?;
    if parsed.is_sip() && !parsed.headers.is_empty() {
        return Err(ParseError::bad_request(format!(
            "line 1: Request-URI {} must not contain headers",
            snippet(uri)
        )));
    }
    Ok((method, uri.to_string()))
}

fn parse_status_line(line: &str) -> Result<(u16, String), ParseError> {
    let bad = || {
        ParseError::bad_request(format!(
            "line 1: expected \"SIP/2.0 SP <3-digit status> SP <reason>\", got {}",
            snippet(line)
        ))
    };
    let Some((version, rest)) = line.split_once(' ') else {
        return Err(bad());
    };
    check_version(version, "Status-Line")?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::bad_request(format!(
            "line 1: invalid status code {}",
            snippet(code)
        )));
    }
    let status = code.parse::<u16>().map_err(|_| bad())?;
    if !(100..=699).contains(&status) {
        return Err(ParseError::bad_request(format!(
            "line 1: status code {status} out of range 100-699"
        )));
    }
    Ok((status, reason.to_string()))
}

enum StartLine {
    Request(Method, String),
    Response(u16, String),
}

struct Pending {
    name: String,
    value: String,
    line: usize,
}

#[derive(Default)]
struct HeaderState {
    single: [Option<usize>; 5],
    content_length: Option<usize>,
}

impl HeaderState {
    fn finish(&mut self, p: Pending, headers: &mut Headers) -> Result<(), ParseError> {
        let kind = HeaderKind::of(&p.name);
        let prefix = format!("line {}: header {:?}", p.line, p.name);
        if let Some(slot) = kind.single_slot().and_then(|i| self.single.get_mut(i)) {
            if let Some(first) = *slot {
                return Err(ParseError::bad_request(format!(
                    "line {}: duplicate {:?} header (first on line {first})",
                    p.line,
                    full_header_name(&p.name)
                )));
            }
            *slot = Some(p.line);
        }
        if kind == HeaderKind::ContentLength {
            let n = parse_content_length(&p.value).map_err(|e| e.context(&prefix))?;
            if let Some(prev) = self.content_length {
                if prev != n {
                    return Err(ParseError::bad_request(format!(
                        "{prefix}: Content-Length {n} differs from an earlier Content-Length {prev}"
                    )));
                }
            }
            self.content_length = Some(n);
        } else {
            check_header_value(kind, &p.value)
                .map_err(|e| ParseError::bad_request(format!("{prefix}: {e}")))?;
        }
        headers.entries.push((p.name, p.value));
        Ok(())
    }
}

/// Parses the start line and header lines (`head` = everything before the
/// empty line, each line terminated by LF).
fn parse_head(head: &[u8], kind: Kind) -> Result<(StartLine, Headers, Option<usize>), ParseError> {
    let Some((first, mut pos)) = line_at(head, 0) else {
        return Err(ParseError::bad_request("missing start line"));
    };
    let first = check_line(first, 1)?;
    let start = if kind == Kind::Response {
        let (code, reason) = parse_status_line(first)?;
        StartLine::Response(code, reason)
    } else {
        let (method, uri) = parse_request_line(first)?;
        StartLine::Request(method, uri)
    };
    let mut headers = Headers::with_capacity(16);
    let mut state = HeaderState::default();
    let mut pending: Option<Pending> = None;
    let mut line_no = 1usize;
    while let Some((raw, next)) = line_at(head, pos) {
        pos = next;
        line_no += 1;
        let line = check_line(raw, line_no)?;
        if line.starts_with([' ', '\t']) {
            let Some(p) = pending.as_mut() else {
                return Err(ParseError::bad_request(format!(
                    "line {line_no}: continuation line without a preceding header"
                )));
            };
            let t = trim_ws(line);
            if !t.is_empty() {
                if !p.value.is_empty() {
                    p.value.push(' ');
                }
                p.value.push_str(t);
            }
            continue;
        }
        if let Some(p) = pending.take() {
            state.finish(p, &mut headers)?;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError::bad_request(format!(
                "line {line_no}: header line without a colon: {}",
                snippet(line)
            )));
        };
        let name = name.trim_end_matches([' ', '\t']);
        if !is_token(name) {
            return Err(ParseError::bad_request(format!(
                "line {line_no}: invalid header name {}",
                snippet(name)
            )));
        }
        pending = Some(Pending {
            name: name.to_string(),
            value: trim_ws(value).to_string(),
            line: line_no,
        });
    }
    if let Some(p) = pending.take() {
        state.finish(p, &mut headers)?;
    }
    Ok((start, headers, state.content_length))
}

struct Parsed {
    start: StartLine,
    headers: Headers,
    body: Range<usize>,
}

impl Parsed {
    fn into_message(self, body: Bytes) -> SipMessage {
        match self.start {
            StartLine::Request(method, uri) => SipMessage::Request(Request {
                method,
                uri,
                headers: self.headers,
                body,
            }),
            StartLine::Response(status, reason) => SipMessage::Response(Response {
                status,
                reason,
                headers: self.headers,
                body,
            }),
        }
    }
}

fn parse_classified(msg: &[u8], kind: Kind, framing: Framing) -> Result<Parsed, ParseError> {
    if kind == Kind::Garbage {
        return Err(ParseError::silent(format!(
            "not a SIP message: start line {}",
            snippet_bytes(first_line(msg))
        )));
    }
    if msg.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::too_large(format!(
            "message of {} bytes exceeds the maximum of {MAX_MESSAGE_SIZE} bytes",
            msg.len()
        )));
    }
    let Some((head_end, body_start)) = find_head_end(msg) else {
        return Err(ParseError::bad_request(
            "header section is not terminated by an empty line",
        ));
    };
    let (start, headers, cl) = parse_head(msg.get(..head_end).unwrap_or(&[]), kind)?;
    let avail = msg.len().saturating_sub(body_start);
    let body_len = match (framing, cl) {
        (Framing::Datagram, None) => avail,
        (Framing::Datagram, Some(n)) => {
            if n > avail {
                return Err(ParseError::bad_request(format!(
                    "Content-Length {n} exceeds body of {avail} bytes"
                )));
            }
            n
        }
        (Framing::Stream, None) => {
            return Err(ParseError::bad_request(
                "missing Content-Length on a stream transport",
            ))
        }
        (Framing::Stream, Some(n)) => {
            if n > avail {
                return Err(ParseError::bad_request(format!(
                    "truncated message: Content-Length {n} exceeds body of {avail} bytes"
                )));
            }
            if n < avail {
                return Err(ParseError::bad_request(format!(
                    "{} unexpected bytes after the body (Content-Length {n}); frame stream data with frame_stream",
                    avail - n
                )));
            }
            n
        }
    };
    Ok(Parsed {
        start,
        headers,
        body: body_start..body_start + body_len,
    })
}

fn parse_message(data: &[u8], framing: Framing) -> Result<Parsed, ParseError> {
    let skip = skip_keepalive(data);
    let msg = data.get(skip..).unwrap_or(&[]);
    if msg.is_empty() {
        return Err(ParseError::silent(
            "empty message (only CR/LF keep-alive bytes)",
        ));
    }
    let kind = classify(first_line(msg));
    match parse_classified(msg, kind, framing) {
        Ok(mut p) => {
            p.body = p.body.start + skip..p.body.end + skip;
            Ok(p)
        }
        Err(e) => Err(for_kind(e, kind)),
    }
}

/// Parses one UDP datagram. Leading CR/LF bytes are ignored; Content-Length
/// is optional (absent: the body is the rest of the datagram; smaller than
/// the rest: extra bytes are discarded; larger: 400).
pub fn parse_datagram(data: &[u8]) -> Result<SipMessage, ParseError> {
    let p = parse_message(data, Framing::Datagram)?;
    let body = Bytes::copy_from_slice(data.get(p.body.clone()).unwrap_or(&[]));
    Ok(p.into_message(body))
}

/// Like [`parse_datagram`], but the body shares `data`'s buffer.
pub fn parse_datagram_bytes(data: &Bytes) -> Result<SipMessage, ParseError> {
    let p = parse_message(data, Framing::Datagram)?;
    let body = data.slice(p.body.clone());
    Ok(p.into_message(body))
}

/// Parses one message framed by [`frame_stream`] / [`StreamFramer`]
/// (leading CR/LF bytes are ignored). Content-Length is mandatory and must
/// match the bytes after the header section exactly.
pub fn parse_stream_message(data: &[u8]) -> Result<SipMessage, ParseError> {
    let p = parse_message(data, Framing::Stream)?;
    let body = Bytes::copy_from_slice(data.get(p.body.clone()).unwrap_or(&[]));
    Ok(p.into_message(body))
}

/// Like [`parse_stream_message`], but the body shares `data`'s buffer.
pub fn parse_stream_message_bytes(data: &Bytes) -> Result<SipMessage, ParseError> {
    let p = parse_message(data, Framing::Stream)?;
    let body = data.slice(p.body.clone());
    Ok(p.into_message(body))
}

// ---------------------------------------------------------------------------
// Stream framing
// ---------------------------------------------------------------------------

/// Finds the Content-Length of a header section (`head` as in
/// [`HeadScan::scan`]) without parsing everything else, unfolding
/// continuation lines the same way [`parse_head`] does.
fn scan_content_length(head: &[u8]) -> Result<Option<usize>, ParseError> {
    fn finish(value: Option<Vec<u8>>, found: &mut Option<usize>) -> Result<(), ParseError> {
        let Some(v) = value else { return Ok(()) };
        let s = std::str::from_utf8(&v).map_err(|_| {
            ParseError::bad_request(format!("invalid Content-Length {}", snippet_bytes(&v)))
        })?;
        let n = parse_content_length(s)?;
        match *found {
            Some(prev) if prev != n => Err(ParseError::bad_request(format!(
                "Content-Length {n} differs from an earlier Content-Length {prev}"
            ))),
            _ => {
                *found = Some(n);
                Ok(())
            }
        }
    }
    let mut found = None;
    let Some((_, mut pos)) = line_at(head, 0) else {
        return Ok(None);
    };
    let mut cur: Option<Vec<u8>> = None;
    while let Some((line, next)) = line_at(head, pos) {
        pos = next;
        if line.first().is_some_and(|&b| is_ws(b)) {
            if let Some(v) = cur.as_mut() {
                v.push(b' ');
                v.extend_from_slice(line);
            }
            continue;
        }
        finish(cur.take(), &mut found)?;
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = trim_ws_bytes(line.get(..colon).unwrap_or(&[]));
            if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
                cur = Some(line.get(colon + 1..).unwrap_or(&[]).to_vec());
            }
        }
    }
    finish(cur, &mut found)?;
    Ok(found)
}

/// Event reported by [`StreamFramer::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEvent {
    /// `len` leading CR/LF bytes to discard. `ping` is true if they completed
    /// an RFC 5626 double-CRLF ping (possibly spread over several events),
    /// which should be answered with a single CRLF pong.
    KeepAlive { len: usize, ping: bool },
    /// A complete message occupies `buf[..len]`; hand it to
    /// [`parse_stream_message`].
    Message { len: usize },
}

/// Incremental framer for stream transports (TCP, TLS, WebSocket-less).
///
/// Contract: pass the connection's receive buffer on each call. Between calls
/// only append to it, except after an event, when exactly the reported `len`
/// bytes must be removed from its front. Bytes are scanned only once, so
/// trickled input costs linear time overall. After an error the connection
/// should be closed (send the response first if `status` is `Some`).
#[derive(Debug, Clone, Default)]
pub struct StreamFramer {
    started: bool,
    scan: HeadScan,
    kind: Option<Kind>,
    checked: usize,
    total: Option<usize>,
    ping_state: u8,
}

/// One step of the matcher for "\r\n\r\n"; state 4 is a match.
fn ping_step(state: u8, b: u8) -> u8 {
    match (state, b) {
        (0, b'\r') | (1, b'\r') => 1,
        (1, b'\n') => 2,
        (2, b'\r') => 3,
        (3, b'\n') => 4,
        (3, b'\r') => 1,
        _ => 0,
    }
}

impl StreamFramer {
    pub fn new() -> Self {
        StreamFramer::default()
    }

    /// Forgets all progress (use when the buffer was changed otherwise than
    /// the contract allows).
    pub fn reset(&mut self) {
        *self = StreamFramer::default();
    }

    /// True when no part of a message has been seen yet.
    pub fn is_idle(&self) -> bool {
        !self.started
    }

    /// Looks for the next keep-alive or complete message at the front of
    /// `buf`. `Ok(None)`: more bytes are needed.
    pub fn poll(&mut self, buf: &[u8]) -> Result<Option<StreamEvent>, ParseError> {
        if !self.started {
            let k = skip_keepalive(buf);
            if k > 0 {
                let mut ping = false;
                for &b in buf.get(..k).unwrap_or(&[]) {
                    self.ping_state = ping_step(self.ping_state, b);
                    if self.ping_state == 4 {
                        ping = true;
                        self.ping_state = 0;
                    }
                }
                return Ok(Some(StreamEvent::KeepAlive { len: k, ping }));
            }
            if buf.is_empty() {
                return Ok(None);
            }
            self.started = true;
        }
        match self.frame_message(buf) {
            Ok(Some(len)) => {
                self.reset();
                Ok(Some(StreamEvent::Message { len }))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.reset();
                Err(e)
            }
        }
    }

    /// `buf` starts with the first byte of a message (no leading CR/LF).
    fn frame_message(&mut self, buf: &[u8]) -> Result<Option<usize>, ParseError> {
        if let Some(total) = self.total {
            return Ok((buf.len() >= total).then_some(total));
        }
        let found = self.scan.scan(buf);
        if self.kind.is_none() {
            if self.scan.lines > 0 || found.is_some() {
                let line = first_line(buf);
                let kind = classify(line);
                if kind == Kind::Garbage {
                    return Err(ParseError::silent(format!(
                        "not a SIP message: start line {}",
                        snippet_bytes(line)
                    )));
                }
                self.kind = Some(kind);
            } else {
                let new = buf.get(self.checked..).unwrap_or(&[]);
                if new.iter().any(|&b| b != b'\r' && is_forbidden_ctl(b)) {
                    return Err(ParseError::silent(format!(
                        "not a SIP message: binary data {}",
                        snippet_bytes(buf)
                    )));
                }
                self.checked = buf.len();
            }
        }
        let kind = self.kind.unwrap_or(Kind::Garbage);
        let Some((head_end, body_start)) = found else {
            if buf.len() > MAX_MESSAGE_SIZE {
                return Err(for_kind(
                    ParseError::too_large(format!(
                        "header section exceeds {MAX_MESSAGE_SIZE} bytes without an empty line"
                    )),
                    kind,
                ));
            }
            return Ok(None);
        };
        let cl = scan_content_length(buf.get(..head_end).unwrap_or(&[]))
            .map_err(|e| for_kind(e, kind))?;
        let Some(cl) = cl else {
            return Err(for_kind(
                ParseError::bad_request("missing Content-Length on a stream transport"),
                kind,
            ));
        };
        let total = body_start + cl;
        if total > MAX_MESSAGE_SIZE {
            return Err(for_kind(
                ParseError::too_large(format!(
                    "message of {total} bytes exceeds the maximum of {MAX_MESSAGE_SIZE} bytes"
                )),
                kind,
            ));
        }
        self.total = Some(total);
        Ok((buf.len() >= total).then_some(total))
    }
}

/// Stateless stream framing. `Ok(Some(n))`: a complete message (including any
/// leading CR/LF keep-alive bytes) occupies `buf[..n]`; `Ok(None)`: more bytes
/// are needed (or `buf` holds only keep-alives: discard them with
/// [`skip_keepalive`] before calling this, so they do not accumulate). Errors
/// mean the stream cannot be framed any more: missing/invalid Content-Length
/// (400), header section or message larger than [`MAX_MESSAGE_SIZE`] (513),
/// or data that is not SIP (`None`). Rescans `buf` on each call; use
/// [`StreamFramer`] to avoid that.
pub fn frame_stream(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let k = skip_keepalive(buf);
    if k > MAX_MESSAGE_SIZE {
        return Err(ParseError::silent(format!(
            "more than {MAX_MESSAGE_SIZE} keep-alive bytes"
        )));
    }
    let rest = buf.get(k..).unwrap_or(&[]);
    if rest.is_empty() {
        return Ok(None);
    }
    let mut f = StreamFramer {
        started: true,
        ..StreamFramer::default()
    };
    Ok(f.frame_message(rest)?.map(|n| n + k))
}
