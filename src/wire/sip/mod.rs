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
//! demand. The headers they describe (Via, From, To, Contact, Route,
//! Record-Route, CSeq, Call-ID, Max-Forwards, Content-Length) are also
//! syntax-checked while parsing a message, so that the error can name the
//! offending line, and CSeq, From, To, Call-ID and Max-Forwards may appear only
//! once. Presence of the mandatory headers is checked separately by
//! [`Request::validate`].
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

// Character classes as bit flags in a 256-entry table (built at compile time),
// so that every class test is a single load.
const C_TOKEN: u16 = 1;
const C_UNRESERVED: u16 = 1 << 2;
const C_USER: u16 = 1 << 3;
const C_PASSWORD: u16 = 1 << 4;
const C_PARAM: u16 = 1 << 5;
const C_HNV: u16 = 1 << 6;
const C_URIC: u16 = 1 << 7;
const C_TEL: u16 = 1 << 8;
const C_GENVAL: u16 = 1 << 9;
const C_HOST: u16 = 1 << 10;

const fn build_classes() -> [u16; 256] {
    const fn mark(t: &mut [u16; 256], chars: &[u8], flag: u16) {
        let mut i = 0;
        while i < chars.len() {
            t[chars[i] as usize] |= flag;
            i += 1;
        }
    }
    let mut t = [0u16; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() {
            t[b] = C_TOKEN
                | C_UNRESERVED
                | C_USER
                | C_PASSWORD
                | C_PARAM
                | C_HNV
                | C_URIC
                | C_GENVAL
                | C_HOST;
        }
        if c.is_ascii_hexdigit() {
            t[b] |= C_TEL;
        }
        b += 1;
    }
    // token = alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"
    mark(&mut t, b"-.!%*_+`'~", C_TOKEN | C_GENVAL);
    // unreserved = alphanum / mark
    mark(
        &mut t,
        b"-_.!~*'()",
        C_UNRESERVED | C_USER | C_PASSWORD | C_PARAM | C_HNV | C_URIC,
    );
    mark(&mut t, b"&=+$,;?/", C_USER);
    mark(&mut t, b"&=+$,", C_PASSWORD);
    mark(&mut t, b"[]/:&+$", C_PARAM);
    mark(&mut t, b"[]/?:+$", C_HNV);
    mark(&mut t, b";/?:@&=+$,[]", C_URIC);
    mark(&mut t, b"*#+-.()", C_TEL);
    mark(&mut t, b":[]", C_GENVAL);
    mark(&mut t, b"-.", C_HOST);
    t
}

static CLASSES: [u16; 256] = build_classes();

#[inline]
fn class(b: u8, flag: u16) -> bool {
    CLASSES[b as usize] & flag != 0
}

/// `token` characters: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~"
fn is_token_char(b: u8) -> bool {
    class(b, C_TOKEN)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_user_char(b: u8) -> bool {
    class(b, C_USER)
}

fn is_password_char(b: u8) -> bool {
    class(b, C_PASSWORD)
}

fn is_param_char(b: u8) -> bool {
    class(b, C_PARAM)
}

fn is_hnv_char(b: u8) -> bool {
    class(b, C_HNV)
}

fn is_uric(b: u8) -> bool {
    class(b, C_URIC)
}

fn is_tel_char(b: u8) -> bool {
    class(b, C_TEL)
}

/// Value of a generic header parameter when not quoted: token / host.
fn is_gen_value_char(b: u8) -> bool {
    class(b, C_GENVAL)
}

/// Characters of a host name or IPv4 address.
fn is_host_char(b: u8) -> bool {
    class(b, C_HOST)
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
    let b = s.as_bytes();
    let start = b.iter().position(|&c| !is_ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_ws(c)).map_or(start, |i| i + 1);
    // Space and tab are ASCII, so both ends are char boundaries.
    s.get(start..end).unwrap_or("")
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
/// be represented (CR, LF) are replaced by a space; other control characters
/// are escaped.
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
            '\r' | '\n' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                out.push('\\');
                out.push(c);
            }
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

/// Checks a quoted-string at the cursor and returns it as on the wire (with quotes and
/// escapes), without unescaping it.
fn parse_quoted_raw<'a>(c: &mut Cursor<'a>) -> Result<&'a str, String> {
    let start = c.pos;
    if !c.eat(b'"') {
        return Err("expected '\"'".into());
    }
    let rest = c.rest();
    let mut escaped = false;
    for (i, ch) in rest.char_indices() {
        if escaped {
            if !ch.is_ascii() || ch == '\r' || ch == '\n' {
                return Err(format!("invalid escaped character {ch:?} in quoted string"));
            }
            escaped = false;
        } else if ch == '\\' {
            escaped = true;
        } else if ch == '"' {
            c.pos += i + 1;
            return Ok(c.s.get(start..c.pos).unwrap_or(""));
        } else if ((ch as u32) < 0x20 && ch != '\t') || ch == '\x7f' {
            return Err(format!("control character {ch:?} in quoted string"));
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

/// Where parameters go while a list is parsed: kept ([`Params`]), or only checked and
/// the few the caller needs picked out (no allocation).
trait ParamSink<'a> {
    fn add(&mut self, name: &'a str, value: Option<&'a str>);
}

impl<'a> ParamSink<'a> for Params {
    fn add(&mut self, name: &'a str, value: Option<&'a str>) {
        self.push((name.to_string(), value.map(str::to_string)));
    }
}

/// A parameter list exactly as on the wire (`;a=b;c`, header or URI parameters) that
/// the parser has already checked: lookups borrow from the message and allocate nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawParams<'a>(&'a str);

impl<'a> RawParams<'a> {
    /// `(name, value)` in order, values exactly as on the wire (quoted-strings keep their
    /// quotes).
    pub fn iter(&self) -> RawParamIter<'a> {
        RawParamIter { rest: self.0 }
    }

    /// A parameter: `None` if absent, `Some(None)` if present without value.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The parameters as owned pairs.
    pub fn to_params(&self) -> Params {
        self.iter()
            .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
            .collect()
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

/// Iterator of [`RawParams::iter`]. The list was checked when parsed, so splitting on
/// `;` and `=` outside quoted strings and trimming whitespace gives what the strict
/// parser saw.
#[derive(Debug, Clone)]
pub struct RawParamIter<'a> {
    rest: &'a str,
}

/// Index of the first `delim` outside a quoted-string.
fn find_unquoted(s: &str, delim: u8) -> Option<usize> {
    let (mut in_quote, mut escaped) = (false, false);
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if escaped {
            escaped = false;
        } else if in_quote && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            in_quote = !in_quote;
        } else if b == delim && !in_quote {
            return Some(i);
        }
    }
    None
}

impl<'a> Iterator for RawParamIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (piece, rest) = match find_unquoted(self.rest, b';') {
                Some(i) => (
                    self.rest.get(..i).unwrap_or(""),
                    self.rest.get(i + 1..).unwrap_or(""),
                ),
                None => (self.rest, ""),
            };
            self.rest = rest;
            let piece = trim_ws(piece);
            if piece.is_empty() {
                continue;
            }
            return Some(match piece.split_once('=') {
                Some((n, v)) => (trim_ws(n), Some(trim_ws(v))),
                None => (piece, None),
            });
        }
    }
}

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
fn parse_header_params<'a>(c: &mut Cursor<'a>, out: &mut impl ParamSink<'a>) -> Result<(), String> {
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
                Some(parse_quoted_raw(c)?)
            } else {
                let v = c.take_while(is_gen_value_char);
                if v.is_empty() {
                    return Err(format!("missing value for parameter {}", snippet(name)));
                }
                Some(v)
            }
        } else {
            None
        };
        out.add(name, value);
    }
}

// ---------------------------------------------------------------------------
// Hosts and ports
// ---------------------------------------------------------------------------

fn is_ipv4(s: &str) -> bool {
    // Four dot-separated decimal parts of one to three digits, each at most 255.
    let (mut parts, mut digits, mut value) = (0u32, 0u32, 0u32);
    for &b in s.as_bytes() {
        if b == b'.' {
            if digits == 0 || value > 255 {
                return false;
            }
            parts += 1;
            digits = 0;
            value = 0;
        } else if b.is_ascii_digit() {
            digits += 1;
            if digits > 3 {
                return false;
            }
            value = value * 10 + u32::from(b - b'0');
        } else {
            return false;
        }
    }
    digits > 0 && value <= 255 && parts == 3
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
    let b = body.as_bytes();
    let last_start = b.iter().rposition(|&c| c == b'.').map_or(0, |i| i + 1);
    if b.get(last_start).is_some_and(|c| c.is_ascii_digit()) {
        if body.len() == h.len() && is_ipv4(body) {
            return Ok(());
        }
        return Err(format!("invalid IPv4 address {}", snippet(h)));
    }
    // Labels: non-empty, alphanumerics and '-', not starting or ending with '-'.
    let mut label_len = 0usize;
    let mut prev = b'.';
    for &c in b {
        if c == b'.' {
            if label_len == 0 || prev == b'-' {
                return Err(format!("invalid host name {}", snippet(h)));
            }
            label_len = 0;
        } else if c.is_ascii_alphanumeric() || c == b'-' {
            if label_len == 0 && c == b'-' {
                return Err(format!("invalid host name {}", snippet(h)));
            }
            label_len += 1;
        } else {
            return Err(format!("invalid host name {}", snippet(h)));
        }
        prev = c;
    }
    if label_len == 0 || prev == b'-' {
        return Err(format!("invalid host name {}", snippet(h)));
    }
    Ok(())
}

/// host = hostname / IPv4address / IPv6reference. IPv6 references keep their
/// brackets.
fn parse_host<'a>(c: &mut Cursor<'a>) -> Result<&'a str, String> {
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
        return Ok(rest.get(..end + 1).unwrap_or(""));
    }
    let h = c.take_while(is_host_char);
    if h.is_empty() {
        return Err(if c.at_end() {
            "missing host".to_string()
        } else {
            format!("expected a host, found {}", snippet(c.rest()))
        });
    }
    validate_hostname(h)?;
    Ok(h)
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

/// The name as a `'static` string when it is one of the common header names (no
/// allocation), else a copy.
fn static_header_name(name: &str) -> Cow<'static, str> {
    const COMMON: &[&str] = &[
        "Via",
        "Route",
        "Record-Route",
        "Contact",
        "Call-ID",
        "CSeq",
        "From",
        "To",
        "Max-Forwards",
        "Content-Length",
        "Content-Type",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
    ];
    COMMON
        .iter()
        .chain(COMPACT_FORMS.iter().map(|(_, f)| f))
        .find(|c| c.eq_ignore_ascii_case(name))
        .map_or_else(|| Cow::Owned(name.to_string()), |c| Cow::Borrowed(*c))
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

/// A header name as received; the common names (in their usual spelling) are shared
/// statics rather than allocations.
type HeaderName = Cow<'static, str>;

/// `name` as a [`HeaderName`]: a static when it is spelled exactly like a common header.
fn header_name(name: &str) -> HeaderName {
    const COMMON: &[&str] = &[
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Max-Forwards",
        "Content-Length",
        "Content-Type",
        "Route",
        "Record-Route",
        "Allow",
        "Supported",
        "Server",
        "User-Agent",
        "Subject",
        "Expires",
        "Date",
        "Accept",
        "Require",
        "Session-Expires",
        "P-Asserted-Identity",
        "Retry-After",
        "Reason",
        "Timestamp",
        "Authorization",
        "WWW-Authenticate",
        "v",
        "f",
        "t",
        "i",
        "m",
        "l",
        "c",
        "k",
        "s",
    ];
    match COMMON.iter().find(|c| **c == name) {
        Some(c) => Cow::Borrowed(*c),
        None => Cow::Owned(name.to_string()),
    }
}

/// Ordered header list. Names are kept as received; lookups are
/// case-insensitive and understand compact forms both ways.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(HeaderName, String)>,
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
        let key = static_header_name(full_header_name(name));
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
        self.entries.push((header_name(name), value.into()));
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
        self.entries.iter().map(|(n, v)| (&**n, v.as_str()))
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

    /// The top-most Via entry, borrowed (no allocation).
    pub fn top_via_ref(&self) -> Result<ViaRef<'_>, ParseError> {
        let v = self
            .get_all_split("Via")
            .next()
            .ok_or_else(|| ParseError::bad_request("missing \"Via\" header"))?;
        ViaRef::parse(v).map_err(|e| e.context("header \"Via\""))
    }

    /// The From header, borrowed (no allocation).
    pub fn from_ref(&self) -> Result<NameAddrRef<'_>, ParseError> {
        NameAddrRef::parse(self.required("From")?).map_err(|e| e.context("header \"From\""))
    }

    /// The To header, borrowed (no allocation).
    pub fn to_ref(&self) -> Result<NameAddrRef<'_>, ParseError> {
        NameAddrRef::parse(self.required("To")?).map_err(|e| e.context("header \"To\""))
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
            self.entries.push((Cow::Borrowed("Content-Length"), v));
        }
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a str);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (HeaderName, String)>,
        fn(&'a (HeaderName, String)) -> (&'a str, &'a str),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(n, v)| (&**n, v.as_str()))
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        Headers {
            entries: iter
                .into_iter()
                .map(|(n, v)| (Cow::Owned(n.into()), v.into()))
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
        // Most values hold one item: without a comma (a fast search) the rest is it.
        if let Some(rest) = bytes.get(self.pos..) {
            if !rest.is_empty() && !rest.contains(&b',') {
                let item = trim_ws(self.s.get(self.pos..).unwrap_or(""));
                self.pos = bytes.len();
                return (!item.is_empty()).then_some(item);
            }
        }
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

/// A URI borrowed from the text it was parsed from (see [`SipUri`] for the fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UriRef<'a> {
    /// As received (compare case-insensitively).
    pub scheme: &'a str,
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    pub host: &'a str,
    pub port: Option<u16>,
    pub params: RawParams<'a>,
    /// `name=value&...` after `?`, as on the wire.
    headers: Option<&'a str>,
}

impl<'a> UriRef<'a> {
    pub fn parse(s: &'a str) -> Result<UriRef<'a>, ParseError> {
        parse_uri_ref(s).map_err(ParseError::bad_request)
    }

    pub fn is_sip(&self) -> bool {
        is_sip_scheme(self.scheme)
    }

    /// See [`SipUri::user_part`].
    pub fn user_part(&self) -> Option<&'a str> {
        self.user.map(|u| u.split(';').next().unwrap_or(u))
    }

    pub fn to_owned_uri(&self) -> SipUri {
        SipUri {
            scheme: self.scheme.to_ascii_lowercase(),
            user: self.user.map(str::to_string),
            password: self.password.map(str::to_string),
            host: self.host.to_string(),
            port: self.port,
            params: self.params.to_params(),
            headers: self
                .headers
                .map(|h| {
                    h.split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

fn parse_uri(s: &str) -> Result<SipUri, String> {
    parse_uri_ref(s).map(|u| u.to_owned_uri())
}

fn parse_uri_ref(s: &str) -> Result<UriRef<'_>, String> {
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
    if is_sip_scheme(scheme) {
        parse_sip_uri(scheme, rest)
    } else if scheme.eq_ignore_ascii_case("tel") {
        parse_tel_uri(scheme, rest)
    } else {
        if rest.is_empty() {
            return Err(format!("empty URI after scheme in {}", snippet(s)));
        }
        check_chars(rest, "URI", is_uric)?;
        Ok(UriRef {
            scheme,
            host: rest,
            ..UriRef::default()
        })
    }
}

/// Checks URI parameters at the cursor and returns them as on the wire.
fn parse_uri_params<'a>(c: &mut Cursor<'a>) -> Result<RawParams<'a>, String> {
    let start = c.pos;
    let is_pc = |b: u8| is_param_char(b) || b == b'%';
    while c.eat(b';') {
        let name = c.take_while(is_pc);
        if name.is_empty() {
            return Err(format!("empty URI parameter name at {}", snippet(c.rest())));
        }
        check_chars(name, "URI parameter", is_param_char)?;
        if c.eat(b'=') {
            let v = c.take_while(is_pc);
            if v.is_empty() {
                return Err(format!("empty value for URI parameter {}", snippet(name)));
            }
            check_chars(v, "URI parameter", is_param_char)?;
        }
    }
    Ok(RawParams(c.s.get(start..c.pos).unwrap_or("")))
}

fn parse_sip_uri<'a>(scheme: &'a str, rest: &'a str) -> Result<UriRef<'a>, String> {
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
        user = Some(u);
        password = p;
    }
    let mut c = Cursor::new(hostpart);
    let host = parse_host(&mut c)?;
    let port = if c.eat(b':') {
        Some(parse_port(c.take_while(|b| b.is_ascii_digit()))?)
    } else {
        None
    };
    let params = parse_uri_params(&mut c)?;
    let mut headers = None;
    if c.eat(b'?') {
        let start = c.pos;
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
            if !c.eat(b'&') {
                break;
            }
        }
        headers = Some(hostpart.get(start..c.pos).unwrap_or(""));
    }
    if !c.at_end() {
        return Err(format!("unexpected {} in URI", snippet(c.rest())));
    }
    Ok(UriRef {
        scheme,
        user,
        password,
        host,
        port,
        params,
        headers,
    })
}

fn parse_tel_uri<'a>(scheme: &'a str, rest: &'a str) -> Result<UriRef<'a>, String> {
    let mut c = Cursor::new(rest);
    let number = c.take_while(is_tel_char);
    if number.is_empty() {
        return Err(format!(
            "invalid telephone number in tel URI {}",
            snippet(rest)
        ));
    }
    let params = parse_uri_params(&mut c)?;
    if !c.at_end() {
        return Err(format!("unexpected {} in tel URI", snippet(c.rest())));
    }
    Ok(UriRef {
        scheme,
        user: Some(number),
        params,
        ..UriRef::default()
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
    parse_name_addr_ref(s).map(|n| n.to_owned_name_addr())
}

/// Keeps the first `tag` parameter of a name-addr while it is parsed.
#[derive(Default)]
struct TagParam<'a>(Option<Option<&'a str>>);

impl<'a> ParamSink<'a> for TagParam<'a> {
    fn add(&mut self, n: &'a str, v: Option<&'a str>) {
        if self.0.is_none() && n.eq_ignore_ascii_case("tag") {
            self.0 = Some(v);
        }
    }
}

/// A name-addr borrowed from the header value it was parsed from (see [`NameAddr`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddrRef<'a> {
    /// The display name as on the wire: a quoted-string with its quotes, or tokens.
    display: Option<&'a str>,
    pub uri: UriRef<'a>,
    pub params: RawParams<'a>,
    /// The first `tag` parameter, found while parsing.
    tag: Option<Option<&'a str>>,
}

impl<'a> NameAddrRef<'a> {
    pub fn parse(s: &'a str) -> Result<NameAddrRef<'a>, ParseError> {
        parse_name_addr_ref(s).map_err(ParseError::bad_request)
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&'a str> {
        self.tag.flatten()
    }

    /// A header parameter: `None` if absent, `Some(None)` if present without value.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params.get(name)
    }

    /// The display name, unescaped (see [`NameAddr::display_name`]).
    pub fn display_name(&self) -> Option<Cow<'a, str>> {
        self.display.map(unquote)
    }

    pub fn to_owned_name_addr(&self) -> NameAddr {
        NameAddr {
            display_name: self.display_name().map(Cow::into_owned),
            uri: self.uri.to_owned_uri(),
            params: self.params.to_params(),
        }
    }
}

fn parse_name_addr_ref(s: &str) -> Result<NameAddrRef<'_>, String> {
    let s = trim_ws(s);
    let mut c = Cursor::new(s);
    let mut display_name = None;
    let angle = match c.peek() {
        None => return Err("empty value".into()),
        Some(b'"') => {
            let d = parse_quoted_raw(&mut c)?;
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
                display_name = Some(s.get(start..end).unwrap_or(""));
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
        let uri = parse_uri_ref(inner)?;
        c.pos += end + 1;
        uri
    } else {
        let rest = c.rest();
        let end = rest.find([';', ' ', '\t']).unwrap_or(rest.len());
        let u = rest.get(..end).unwrap_or("");
        let parsed = if u.contains([',', '?']) {
            Err(format!(
                "URI {} contains ',' or '?' and must be enclosed in <>",
                snippet(u)
            ))
        } else {
            parse_uri_ref(u)
        };
        let uri = match parsed {
            Ok(uri) => uri,
            Err(e) => {
                // text followed by <...> that is not a valid display name
                return Err(if s.contains('<') && !u.contains(':') {
                    format!(
                        "invalid display name in {} (must be a quoted string or tokens)",
                        snippet(s)
                    )
                } else {
                    e
                });
            }
        };
        c.pos += end;
        uri
    };
    let start = c.pos;
    let mut tag = TagParam::default();
    parse_header_params(&mut c, &mut tag)?;
    Ok(NameAddrRef {
        display: display_name,
        uri,
        params: RawParams(s.get(start..).unwrap_or("")),
        tag: tag.0,
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

/// Checks a Contact header value without keeping it.
fn check_contact_list(value: &str) -> Result<(), String> {
    if trim_ws(value) == "*" {
        return Ok(());
    }
    let mut n = 0;
    for item in split_commas(value) {
        parse_name_addr_ref(item)?;
        n += 1;
    }
    if n == 0 {
        return Err("empty Contact".into());
    }
    Ok(())
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
    parse_via_ref(s).map(|v| v.to_owned_via())
}

/// A Via entry borrowed from the header value it was parsed from (see [`Via`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ViaRef<'a> {
    /// As received (compare case-insensitively).
    pub transport: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    pub params: RawParams<'a>,
    /// The first `branch` parameter, found while parsing.
    branch: Option<Option<&'a str>>,
}

impl<'a> ViaRef<'a> {
    pub fn parse(s: &'a str) -> Result<ViaRef<'a>, ParseError> {
        parse_via_ref(s).map_err(ParseError::bad_request)
    }

    pub fn branch(&self) -> Option<&'a str> {
        self.branch.flatten()
    }

    /// A parameter: `None` if absent, `Some(None)` if present without value.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params.get(name)
    }

    pub fn to_owned_via(&self) -> Via {
        Via {
            transport: self.transport.to_ascii_uppercase(),
            host: self.host.to_string(),
            port: self.port,
            params: self.params.to_params(),
        }
    }
}

fn parse_via_ref(s: &str) -> Result<ViaRef<'_>, String> {
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
    let start = c.pos;
    let mut checks = ViaParams::default();
    parse_header_params(&mut c, &mut checks)?;
    if let Some((n, v)) = checks.bad {
        return Err(format!(
            "invalid Via parameter {}",
            snippet(&match v {
                Some(v) => format!("{n}={v}"),
                None => n.to_string(),
            })
        ));
    }
    let params = RawParams(t.get(start..).unwrap_or(""));
    Ok(ViaRef {
        transport,
        host,
        port,
        params,
        branch: checks.branch,
    })
}

/// Checks Via parameters as they are parsed and keeps the first branch.
#[derive(Default)]
struct ViaParams<'a> {
    bad: Option<(&'a str, Option<&'a str>)>,
    branch: Option<Option<&'a str>>,
}

impl<'a> ParamSink<'a> for ViaParams<'a> {
    fn add(&mut self, n: &'a str, v: Option<&'a str>) {
        let ok = if n.eq_ignore_ascii_case("branch") {
            if self.branch.is_none() {
                self.branch = Some(v);
            }
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
        if !ok && self.bad.is_none() {
            self.bad = Some((n, v));
        }
    }
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

/// RFC 3261 restricts Call-IDs to `word ["@" word]`, but devices in the field
/// also use characters such as `=` (base64) or `;`, so any non-empty value
/// without whitespace or control characters is accepted.
fn validate_call_id(v: &str) -> Result<(), String> {
    if v.is_empty() || v.bytes().any(|b| is_ws(b) || is_forbidden_ctl(b)) {
        return Err(format!(
            "expected a non-empty identifier without whitespace, got {}",
            snippet(v)
        ));
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
        HeaderKind::Via => list(|v| parse_via_ref(v).map(|_| ()), "Via"),
        HeaderKind::CSeq => CSeq::parse(value).map(|_| ()).map_err(|e| e.detail),
        HeaderKind::From | HeaderKind::To => parse_name_addr_ref(value).map(|_| ()),
        HeaderKind::Contact => check_contact_list(value),
        HeaderKind::Route | HeaderKind::RecordRoute => {
            list(|v| parse_name_addr_ref(v).map(|_| ()), "route")
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

/// Writes `s`, replacing CR and LF (which would break the framing) by spaces.
fn push_clean(out: &mut Vec<u8>, s: &str) {
    let breaks = |b: u8| b == b'\r' || b == b'\n';
    if s.bytes().any(breaks) {
        out.extend(s.bytes().map(|b| if breaks(b) { b' ' } else { b }));
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// Writes `n` in decimal without going through `fmt`.
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(d) = buf.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(buf.get(i..).unwrap_or(&[]));
}

fn write_headers_and_body(out: &mut Vec<u8>, headers: &Headers, body: &[u8]) {
    let mut wrote_cl = false;
    for (name, value) in &headers.entries {
        if name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l") {
            if wrote_cl {
                continue;
            }
            wrote_cl = true;
            push_clean(out, name);
            out.extend_from_slice(b": ");
            push_decimal(out, body.len());
        } else {
            push_clean(out, name);
            out.extend_from_slice(b": ");
            push_clean(out, value);
        }
        out.extend_from_slice(b"\r\n");
    }
    if !wrote_cl {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, body.len());
        out.extend_from_slice(b"\r\n");
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
        h.to_ref()?;
        h.from_ref()?;
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
        let mut vias = 0;
        for v in h.get_all_split("Via") {
            ViaRef::parse(v).map_err(|e| e.context("header \"Via\""))?;
            vias += 1;
        }
        if vias == 0 {
            return Err(ParseError::bad_request("missing \"Via\" header"));
        }
        let uri = UriRef::parse(&self.uri).map_err(|e| e.context("Request-URI"))?;
        if !uri.is_sip() && !uri.scheme.eq_ignore_ascii_case("tel") {
            return Err(ParseError::new(
                Some(416),
                format!("unsupported Request-URI scheme {}", snippet(uri.scheme)),
            ));
        }
        Ok(())
    }

    /// [`Request::validate`] for a request straight from [`parse_datagram`] or
    /// [`parse_stream_message`] (at most with its top Via stamped since): the parser has
    /// already checked the syntax of every header `validate` parses, and refused
    /// duplicates of the single headers, so only presence, the CSeq method and the
    /// Request-URI scheme are left to check. Gives the same errors as `validate` for
    /// such a request, without parsing everything again.
    pub fn validate_parsed(&self) -> Result<(), ParseError> {
        let h = &self.headers;
        for name in ["To", "From", "CSeq", "Call-ID", "Max-Forwards"] {
            if !h.contains(name) {
                return Err(ParseError::bad_request(format!("missing {name:?} header")));
            }
        }
        let cseq = h.cseq()?;
        if cseq.method != self.method || !h.contains("Via") {
            return self.validate();
        }
        let scheme = self.uri.split_once(':').map_or("", |(s, _)| s);
        if !is_sip_scheme(scheme) && !scheme.eq_ignore_ascii_case("tel") {
            return self.validate();
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
                let has_tag = match NameAddrRef::parse(v) {
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

/// Position of the first LF, eight bytes at a time.
fn find_lf(hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const LF: u64 = LO * b'\n' as u64;
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word) ^ LF;
        // the lowest set bit marks the first zero byte (borrows only
        // propagate upwards, so earlier bytes are never misreported)
        let zero = v.wrapping_sub(LO) & !v & HI;
        if zero != 0 {
            return Some(base + (zero.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| base + i)
}

/// The line starting at `from`: its content (without LF and one preceding CR)
/// and the start of the next line. `None` if there is no LF.
fn line_at(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(from..)?;
    let nl = find_lf(rest)?;
    let content = rest.get(..nl)?;
    let content = content.strip_suffix(b"\r").unwrap_or(content);
    Some((content, from + nl + 1))
}

fn first_line(buf: &[u8]) -> &[u8] {
    let end = find_lf(buf).unwrap_or(buf.len());
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
            let Some(i) = find_lf(rest) else {
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

/// Validates one line of the header section: UTF-8, no stray CR, and (for
/// the start line) no control characters at all. Control characters in
/// header values are checked after unfolding by [`check_value_controls`].
fn check_line(raw: &[u8], line_no: usize) -> Result<&str, ParseError> {
    let bad = if line_no == 1 {
        raw.iter().copied().find(|&b| is_forbidden_ctl(b))
    } else {
        raw.contains(&b'\r').then_some(b'\r')
    };
    if let Some(b) = bad {
        return Err(ParseError::bad_request(format!(
            "line {line_no}: invalid control character 0x{b:02x}"
        )));
    }
    std::str::from_utf8(raw).map_err(|_| {
        ParseError::bad_request(format!("line {line_no}: header section is not valid UTF-8"))
    })
}

/// Control characters are only allowed escaped inside quoted strings
/// (`quoted-pair`, RFC 3261 25.1); HTAB is allowed anywhere.
fn check_value_controls(v: &str) -> Result<(), String> {
    let (mut in_quote, mut escaped) = (false, false);
    for b in v.bytes() {
        if escaped {
            escaped = false;
            continue;
        }
        if in_quote && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            in_quote = !in_quote;
        } else if is_forbidden_ctl(b) {
            return Err(format!("invalid control character 0x{b:02x}"));
        }
    }
    Ok(())
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

struct Pending<'a> {
    name: &'a str,
    value: String,
    line: usize,
}

#[derive(Default)]
struct HeaderState {
    single: [Option<usize>; 5],
    content_length: Option<usize>,
}

impl HeaderState {
    fn finish(&mut self, p: Pending<'_>, headers: &mut Headers) -> Result<(), ParseError> {
        let kind = HeaderKind::of(p.name);
        let prefix = || format!("line {}: header {:?}", p.line, p.name);
        if let Some(slot) = kind.single_slot().and_then(|i| self.single.get_mut(i)) {
            if let Some(first) = *slot {
                return Err(ParseError::bad_request(format!(
                    "line {}: duplicate {:?} header (first on line {first})",
                    p.line,
                    full_header_name(p.name)
                )));
            }
            *slot = Some(p.line);
        }
        check_value_controls(&p.value)
            .map_err(|e| ParseError::bad_request(format!("{}: {e}", prefix())))?;
        if kind == HeaderKind::ContentLength {
            let n = parse_content_length(&p.value).map_err(|e| e.context(prefix()))?;
            if let Some(prev) = self.content_length {
                if prev != n {
                    return Err(ParseError::bad_request(format!(
                        "{}: Content-Length {n} differs from an earlier Content-Length {prev}",
                        prefix()
                    )));
                }
            }
            self.content_length = Some(n);
        } else {
            check_header_value(kind, &p.value)
                .map_err(|e| ParseError::bad_request(format!("{}: {e}", prefix())))?;
        }
        headers.entries.push((header_name(p.name), p.value));
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
            name,
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
                let kind = if line.iter().any(|&b| is_forbidden_ctl(b)) {
                    // binary data, whether or not it arrived in one piece
                    Kind::Garbage
                } else {
                    classify(line)
                };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Converts LF line endings to CRLF, replaces `{CL}` by the length of the
    /// (converted) body and appends the empty line and the body.
    fn build(head: &str, body: &str) -> Vec<u8> {
        let body = body.replace('\n', "\r\n");
        let head = head
            .trim_start_matches('\n')
            .replace("{CL}", &body.len().to_string())
            .replace('\n', "\r\n");
        let mut out = head.into_bytes();
        if !out.ends_with(b"\r\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.as_bytes());
        out
    }

    fn req(data: &[u8]) -> Request {
        match parse_datagram(data) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn resp(data: &[u8]) -> Response {
        match parse_datagram(data) {
            Ok(SipMessage::Response(r)) => r,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    fn err(data: &[u8]) -> ParseError {
        match parse_datagram(data) {
            Err(e) => e,
            Ok(m) => panic!("expected an error, parsed {m:?}"),
        }
    }

    /// parse -> to_bytes -> parse gives the same message (after Content-Length
    /// normalization), over both transports.
    fn assert_roundtrip(data: &[u8]) -> SipMessage {
        let m = parse_datagram(data).unwrap();
        let mut norm = m.clone();
        norm.normalize_content_length();
        let bytes = m.to_bytes();
        assert_eq!(parse_datagram(&bytes).unwrap(), norm, "datagram round trip");
        assert_eq!(
            parse_stream_message(&bytes).unwrap(),
            norm,
            "stream round trip"
        );
        assert_eq!(frame_stream(&bytes), Ok(Some(bytes.len())));
        assert_eq!(norm.to_bytes(), bytes, "serialization is stable");
        let text = m.to_string();
        assert_eq!(text.as_bytes(), &bytes[..]);
        m
    }

    const OPTIONS: &str = "
OPTIONS sip:carol@chicago.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKhjhs8ass877
Via: SIP/2.0/TCP proxy.example.com:5061;branch=z9hG4bK77asjd;received=192.0.2.7
Max-Forwards: 70
To: <sip:carol@chicago.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 63104 OPTIONS
Contact: <sip:alice@pc33.atlanta.example.com>
Accept: application/sdp
Content-Length: 0
";

    const WSINV: &str = r#"
INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : {CL}
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33
"#;

    const SDP: &str = "v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.3
s=-
c=IN IP4 192.0.2.4
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
";

    const CISCO_REGISTER: &str = r#"
REGISTER sip:10.10.10.1 SIP/2.0
Via: SIP/2.0/TCP 10.10.20.55:51508;branch=z9hG4bK5e1c2c4b
From: <sip:2001@10.10.10.1>;tag=0022905c1e3b00027a8b7c26-4d2b3f51
To: <sip:2001@10.10.10.1>
Call-ID: 0022905c-1e3b0002-1d0a2b3c-4d5e6f70@10.10.20.55
Max-Forwards: 70
Date: Mon, 24 Nov 2025 22:13:01 GMT
CSeq: 101 REGISTER
User-Agent: Cisco-CP8865/14.2.1
Contact: <sip:9d4f7a2e-1b3c-4d5e-8f90-0022905c1e3b@10.10.20.55:51508;transport=tcp>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-0022905c1e3b>";+u.sip!devicename.ccm.cisco.com="SEP0022905C1E3B";+u.sip!model.ccm.cisco.com="36213";+u.sip!vc.ccm.cisco.com="0";reg-id=1;expires=3600
Supported: replaces,join,sdp-anat,norefersub,resource-priority,extended-refer,X-cisco-callinfo,X-cisco-serviceuri,X-cisco-escapecodes,X-cisco-service-control,X-cisco-srtp-fallback,X-cisco-monrec,X-cisco-config,X-cisco-sis-7.0.0,X-cisco-xsi-8.5.1
Reason: SIP;cause=200;text="cisco-alarm:25 Name=SEP0022905C1E3B ActiveLoad=sip88xx.14-2-1-0001-14 Last=initialized"
Expires: 3600
X-Cisco-Peer-Cert-Status: none
x-cisco-client-version: 14.2(1)
Content-Type: multipart/mixed; boundary=uniqueBoundary
Mime-Version: 1.0
Content-Length: {CL}
"#;

    const CISCO_BODY: &str = "--uniqueBoundary
Content-Type: application/x-cisco-remotecc-request+xml
Content-Disposition: session;handling=required

<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<x-cisco-remotecc-request>
<bulkupdate>
<contact>sip:2001@10.10.10.1</contact>
</bulkupdate>
</x-cisco-remotecc-request>
--uniqueBoundary--
";

    fn samples() -> Vec<Vec<u8>> {
        vec![
            build(OPTIONS, ""),
            build(WSINV, SDP),
            build(CISCO_REGISTER, CISCO_BODY),
            build(
                "
SIP/2.0 200 OK
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;received=10.0.0.1;rport=5060
From: <sip:a@example.com>;tag=1
To: \"B\" <sip:b@example.com>;tag=2
Call-ID: x@y
CSeq: 1 INVITE
Contact: <sip:b@10.0.0.2:5060>
Content-Type: application/sdp
l: {CL}
",
                SDP,
            ),
            b"NOTIFY sip:a@[2001:db8::1]:5070;transport=tls SIP/2.0\nv: SIP/2.0/TLS [2001:db8::2];branch=z9hG4bKx\nf: <sips:a@example.com>;tag=q\nt: sips:b@example.com\ni: abc\nCSeq: 2 NOTIFY\nMax-Forwards: 70\no: presence\n\n"
                .to_vec(),
        ]
    }

    // ----- basic requests and responses

    #[test]
    fn parses_options_and_builds_response() {
        let r = req(&build(OPTIONS, ""));
        assert_eq!(r.method, Method::Options);
        assert_eq!(r.uri, "sip:carol@chicago.example.com");
        assert_eq!(r.call_id(), Some("a84b4c76e66710"));
        assert_eq!(r.cseq().unwrap(), CSeq::new(63104, Method::Options));
        assert_eq!(r.max_forwards().unwrap(), 70);
        let via = r.top_via().unwrap();
        assert_eq!(via.transport, "UDP");
        assert_eq!(via.host, "pc33.atlanta.example.com");
        assert_eq!(via.branch(), Some("z9hG4bKhjhs8ass877"));
        assert_eq!(r.vias().unwrap().len(), 2);
        assert_eq!(r.from().unwrap().display_name.as_deref(), Some("Alice"));
        assert_eq!(r.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(r.to().unwrap().tag(), None);
        assert!(r.body.is_empty());
        r.validate().unwrap();

        let resp = r.make_response(200, "", Some("abc123"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.reason, "OK");
        let vias: Vec<&str> = resp.headers.get_all("Via").collect();
        assert_eq!(
            vias,
            vec![
                "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKhjhs8ass877",
                "SIP/2.0/TCP proxy.example.com:5061;branch=z9hG4bK77asjd;received=192.0.2.7"
            ]
        );
        assert_eq!(resp.to().unwrap().tag(), Some("abc123"));
        assert_eq!(resp.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(resp.call_id(), Some("a84b4c76e66710"));
        assert_eq!(resp.cseq().unwrap(), CSeq::new(63104, Method::Options));
        assert_eq!(resp.headers.get("Content-Length"), Some("0"));
        assert!(resp.headers.get("Contact").is_none());
        resp.validate().unwrap();
        let names: Vec<&str> = resp.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "Via",
                "Via",
                "From",
                "To",
                "Call-ID",
                "CSeq",
                "Content-Length"
            ]
        );
        let text = String::from_utf8(resp.to_bytes()).unwrap();
        assert!(text.starts_with("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP pc33"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        let back = resp_roundtrip(&resp);
        assert_eq!(back, resp);

        // 100 Trying never gets a To tag; existing tags are kept
        let trying = r.make_response(100, "Trying", Some("zzz"));
        assert_eq!(trying.to().unwrap().tag(), None);
        let mut tagged = r.clone();
        tagged
            .headers
            .set("To", "<sip:carol@chicago.example.com>;tag=orig");
        let resp2 = tagged.make_response(486, "", Some("new"));
        assert_eq!(resp2.to().unwrap().tag(), Some("orig"));
        assert_eq!(resp2.reason, "Busy Here");
        // bare addr-spec To: the tag becomes a header parameter
        tagged.headers.set("t", "sip:carol@chicago.example.com");
        let resp3 = tagged.make_response(404, "Nope", Some("t1"));
        assert_eq!(
            resp3.headers.get("To"),
            Some("sip:carol@chicago.example.com;tag=t1")
        );
        assert_eq!(resp3.to().unwrap().tag(), Some("t1"));
        assert_eq!(resp3.reason, "Nope");
    }

    fn resp_roundtrip(r: &Response) -> Response {
        match parse_datagram(&r.to_bytes()).unwrap() {
            SipMessage::Response(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn make_response_copies_vias_in_order_including_compact_and_lists() {
        let data = b"INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\nMax-Forwards: 70\r\nv: SIP/2.0/TCP c.example.com;branch=z9hG4bK3\r\nf: <sip:a@example.com>;tag=x\r\nt: <sip:b@example.com>\r\ni: cid\r\nCSeq: 1 INVITE\r\nTimestamp: 54\r\nl: 0\r\n\r\n";
        let r = req(data);
        r.validate().unwrap();
        let branches: Vec<String> = r
            .vias()
            .unwrap()
            .iter()
            .map(|v| v.branch().unwrap().to_string())
            .collect();
        assert_eq!(branches, ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3"]);
        let resp = r.make_response(100, "", Some("tag"));
        assert_eq!(resp.reason, "Trying");
        assert_eq!(resp.headers.get("Timestamp"), Some("54"));
        let rb: Vec<String> = resp
            .vias()
            .unwrap()
            .iter()
            .map(|v| v.branch().unwrap().to_string())
            .collect();
        assert_eq!(rb, branches);
        let resp = r.make_response(180, "Ringing", Some("tag"));
        assert_eq!(resp.headers.get("Timestamp"), None);
        assert_eq!(resp.to().unwrap().tag(), Some("tag"));
    }

    #[test]
    fn parses_response_and_status_line_variants() {
        let r = resp(&samples()[3]);
        assert_eq!(r.status, 200);
        assert_eq!(r.reason, "OK");
        assert_eq!(r.body.len(), SDP.replace('\n', "\r\n").len());
        assert_eq!(r.top_via().unwrap().rport(), Some(Some(5060)));
        assert_eq!(r.to().unwrap().display_name.as_deref(), Some("B"));
        r.validate().unwrap();

        // RFC 4475 3.1.1.12 unreason: UTF-8 reason phrase
        let unreason = "SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое\r\nVia: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\r\nCall-ID: unreason.1234ksdfak3j2erwedfsASdf\r\nCSeq: 35 INVITE\r\nFrom: sip:user@example.com;tag=11141343\r\nTo: sip:user@example.edu;tag=2229\r\nContent-Length: 0\r\n\r\n";
        let r = resp(unreason.as_bytes());
        assert_eq!(r.reason, "= 2**3 * 5**2 но сто девяносто девять - простое");
        assert_roundtrip(unreason.as_bytes());

        // RFC 4475 3.1.1.13 noreason: empty reason phrase
        let noreason = b"SIP/2.0 100 \r\nVia: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\r\nCall-ID: noreason.asndj203insdf99223ndf\r\nCSeq: 35 INVITE\r\nFrom: <sip:user@example.com>;tag=39ansfi3\r\nTo: <sip:user@example.edu>;tag=902jndnke3\r\nContent-Length: 0\r\n\r\n";
        let r = resp(noreason);
        assert_eq!((r.status, r.reason.as_str()), (100, ""));
        assert_roundtrip(noreason);
        // no space at all after the code is tolerated as an empty reason
        let r = resp(b"SIP/2.0 180\r\nContent-Length: 0\r\n\r\n");
        assert_eq!((r.status, r.reason.as_str()), (180, ""));
        // responses lacking mandatory headers do not validate, silently
        assert_eq!(r.validate().unwrap_err().status, None);
    }

    // ----- RFC 4475 valid messages

    #[test]
    fn rfc4475_wsinv_whitespace_folding_compact_forms() {
        let data = build(WSINV, SDP);
        let r = req(&data);
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.uri, "sip:vivekg@chair-dnrc.example.com;unknownparam");
        let to = r.to().unwrap();
        assert_eq!(to.uri.user.as_deref(), Some("vivekg"));
        assert_eq!(to.tag(), Some("1918181833n"));
        assert_eq!(to.display_name, None);
        let from = r.from().unwrap();
        assert_eq!(from.display_name.as_deref(), Some("J Rosenberg \\\""));
        assert_eq!(from.tag(), Some("98asjd8"));
        assert_eq!(r.max_forwards().unwrap(), 68);
        assert_eq!(r.cseq().unwrap(), CSeq::new(9, Method::Invite));
        assert_eq!(r.headers.get("cseq"), Some("0009 INVITE"));
        let vias = r.vias().unwrap();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0].host, "192.0.2.2");
        assert_eq!(vias[0].transport, "UDP");
        assert_eq!(vias[0].branch(), Some("390skdjuw"));
        assert_eq!(vias[1].transport, "TCP");
        assert_eq!(vias[1].host, "spindle.example.com");
        assert_eq!(vias[1].branch(), Some("z9hG4bK9ikj8"));
        assert_eq!(vias[2].host, "192.168.255.111");
        assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
        assert_eq!(r.headers.get("Subject"), Some(""));
        assert_eq!(
            r.headers.get("newfangledheader"),
            Some("newfangled value continued newfangled value")
        );
        assert_eq!(
            r.headers.get("UnknownHeaderWithUnusualValue"),
            Some(";;,,;;,;")
        );
        let ContactList::Addrs(contacts) = r.contacts().unwrap() else {
            panic!("expected addresses")
        };
        assert_eq!(contacts.len(), 1);
        assert_eq!(
            contacts[0].display_name.as_deref(),
            Some("Quoted string \"\"")
        );
        assert_eq!(contacts[0].param("newparam"), Some(Some("newvalue")));
        assert_eq!(contacts[0].param("secondparam"), Some(None));
        assert_eq!(contacts[0].param("q"), Some(Some("0.33")));
        let routes = r.headers.name_addrs("Route").unwrap();
        assert_eq!(routes[0].uri.param("lr"), Some(None));
        assert_eq!(routes[0].uri.param("unknownwith"), Some(Some("value")));
        assert_eq!(&r.body[..], SDP.replace('\n', "\r\n").as_bytes());
        r.validate().unwrap();
        assert_roundtrip(&data);
    }

    #[test]
    fn rfc4475_intmeth_unusual_tokens() {
        let mut data = Vec::new();
        data.extend_from_slice(
            br#"!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~
To: "BEL:\"#,
        );
        data.push(0x07);
        data.extend_from_slice(b" NUL:\\");
        data.push(0x00);
        data.extend_from_slice(b" DEL:\\");
        data.push(0x7f);
        data.extend_from_slice(
            r#"" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="работающий";tag=_token~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
Max-Forwards: 255
extensionHeader-!.%*+_`'~: ﻿大停電
Content-Length: 0

"#
            .as_bytes(),
        );
        let data: Vec<u8> = String::from_utf8(data)
            .unwrap()
            .replace('\n', "\r\n")
            .into_bytes();
        let r = req(&data);
        assert_eq!(
            r.method,
            Method::Other("!interesting-Method0123456789_*+`.%indeed'~".into())
        );
        let uri = r.request_uri().unwrap();
        assert_eq!(
            uri.user.as_deref(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            uri.password.as_deref(),
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        assert_eq!(uri.host, "example.com");
        let to = r.to().unwrap();
        assert_eq!(
            to.display_name.as_deref(),
            Some("BEL:\x07 NUL:\x00 DEL:\x7f")
        );
        let from = r.from().unwrap();
        assert_eq!(
            from.display_name.as_deref(),
            Some("token1~` token2'+_ token3*%!.-")
        );
        assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
        assert_eq!(
            from.param("fromParam''~+*_!.-%"),
            Some(Some("\"работающий\""))
        );
        assert_eq!(r.max_forwards().unwrap(), 255);
        assert_eq!(
            r.headers.get("EXTENSIONHEADER-!.%*+_`'~"),
            Some("\u{feff}大停電")
        );
        r.validate().unwrap();
        assert_roundtrip(&data);
        // typed views survive Display -> parse
        assert_eq!(NameAddr::parse(&to.to_string()).unwrap(), to);
        assert_eq!(NameAddr::parse(&from.to_string()).unwrap(), from);
        assert_eq!(SipUri::parse(&uri.to_string()).unwrap(), uri);
    }

    #[test]
    fn rfc4475_escaped_uris() {
        // 3.1.1.3 esc01
        let data = build(
            "
INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75ser@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: {CL}
",
            SDP,
        );
        let r = req(&data);
        let ruri = r.request_uri().unwrap();
        assert_eq!(
            ruri.user_unescaped().as_deref(),
            Some("sips:user@example.com")
        );
        assert_eq!(ruri.host, "example.net");
        assert_eq!(
            r.to().unwrap().uri.user_unescaped().as_deref(),
            Some("user")
        );
        assert_eq!(
            r.from().unwrap().uri.user_unescaped().as_deref(),
            Some("I have spaces")
        );
        assert_eq!(r.headers.get("Content-Type"), Some("application/sdp"));
        assert_eq!(r.call_id(), Some("esc01.239409asdfakjkn23onasd0-3234"));
        let ContactList::Addrs(c) = r.contacts().unwrap() else {
            panic!()
        };
        assert_eq!(
            c[0].uri.params,
            vec![
                ("%6C%72".to_string(), None),
                ("n%61me".to_string(), Some("v%61lue%25%34%31".to_string()))
            ]
        );
        r.validate().unwrap();
        assert_roundtrip(&data);

        // 3.1.1.4 escnull
        let data = b"REGISTER sip:example.com SIP/2.0\r\nTo: sip:null-%00-null@example.com\r\nFrom: sip:null-%00-null@example.com;tag=839923423\r\nMax-Forwards: 70\r\nCall-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd\r\nCSeq: 14398234 REGISTER\r\nVia: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\r\nContact: <sip:%00@host5.example.com>\r\nContact: <sip:%00%00@host5.example.com>\r\nL:0\r\n\r\n";
        let r = req(data);
        r.validate().unwrap();
        let ContactList::Addrs(c) = r.contacts().unwrap() else {
            panic!()
        };
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].uri.user_unescaped().as_deref(), Some("\0\0"));
        assert_eq!(r.headers.content_length().unwrap(), Some(0));
        assert_roundtrip(data);

        // 3.1.1.5 esc02: escaped characters in a method are a different method
        let data = build(
            r#"
RE%47IST%45R sip:registrar.example.com SIP/2.0
To: "%Z%45" <sip:resource@example.com>
From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.com;rport;branch=z9hG4bK209asDJF
CSeq: 3882340 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.com>
Contact: <sip:alias%32@host2.example.com>
Contact: <sip:alias3@host3.example.com>
l: 0
"#,
            "",
        );
        let r = req(&data);
        assert_eq!(r.method, Method::Other("RE%47IST%45R".into()));
        assert_ne!(r.method, Method::Register);
        assert_eq!(r.to().unwrap().display_name.as_deref(), Some("%Z%45"));
        assert_eq!(r.top_via().unwrap().rport(), Some(None));
        r.validate().unwrap();
        assert_roundtrip(&data);
    }

    #[test]
    fn rfc4475_lwsdisp_semiuri_transports_dblreq() {
        // 3.1.1.6 lwsdisp: no LWS between display name and <
        let data = b"OPTIONS sip:user@example.com SIP/2.0\r\nTo: sip:user@example.com\r\nFrom: caller<sip:caller@example.com>;tag=323\r\nMax-Forwards: 70\r\nCall-ID: lwsdisp.1234abcd@funky.example.com\r\nCSeq: 60 OPTIONS\r\nVia: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw\r\nl: 0\r\n\r\n";
        let r = req(data);
        assert_eq!(r.from().unwrap().display_name.as_deref(), Some("caller"));
        assert_eq!(r.from().unwrap().uri.user.as_deref(), Some("caller"));
        r.validate().unwrap();

        // 3.1.1.9 semiuri: ; in the user part
        let data = build(
            "
OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0
",
            "",
        );
        let r = req(&data);
        let uri = r.request_uri().unwrap();
        assert_eq!(uri.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(uri.user_part(), Some("user"));
        assert_eq!(uri.host, "example.com");
        assert!(uri.params.is_empty());
        assert_eq!(
            r.headers.get_all_split("Accept").collect::<Vec<_>>(),
            [
                "application/sdp",
                "application/pkcs7-mime",
                "multipart/mixed",
                "multipart/signed",
                "message/sip",
                "message/sipfrag"
            ]
        );
        r.validate().unwrap();
        assert_roundtrip(&data);

        // 3.1.1.10 transports
        let data = build(
            "
OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID:  transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/tls t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0
",
            "",
        );
        let r = req(&data);
        let t: Vec<String> = r.vias().unwrap().into_iter().map(|v| v.transport).collect();
        assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
        r.validate().unwrap();

        // 3.1.1.8 dblreq: a second message in the same datagram is discarded
        let first = "REGISTER sip:example.com SIP/2.0\r\nTo: sip:j.user@example.com\r\nFrom: sip:j.user@example.com;tag=43251j3j324\r\nMax-Forwards: 8\r\nI: dblreq.0ha0isndaksdj99sdfafnl3lk233412\r\nContact: sip:j.user@host.example.com\r\nCSeq: 8 REGISTER\r\nVia: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492\r\nContent-Length: 0\r\n\r\n";
        let second = "INVITE sip:joe@example.com SIP/2.0\r\nt: sip:joe@example.com\r\nFrom: sip:caller@example.net;tag=141334\r\nMax-Forwards: 8\r\nCall-ID: dblreq.0ha0isnda977644900765@192.0.2.15\r\nCSeq: 8 INVITE\r\nVia: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234\r\nContent-Length: 0\r\n\r\n";
        let r = req(format!("{first}{second}").as_bytes());
        assert_eq!(r.method, Method::Register);
        assert!(r.body.is_empty());
        assert_eq!(r, req(first.as_bytes()));
        r.validate().unwrap();
        // Contact in addr-spec form
        let ContactList::Addrs(c) = r.contacts().unwrap() else {
            panic!()
        };
        assert_eq!(c[0].uri.host, "host.example.com");
        // over a stream the two are framed separately
        let both = format!("{first}{second}");
        assert_eq!(frame_stream(both.as_bytes()), Ok(Some(first.len())));
        assert_eq!(
            parse_stream_message(both.as_bytes()).unwrap_err().status,
            Some(400)
        );
    }

    #[test]
    fn ipv6_references() {
        let data = b"REGISTER sip:[2001:db8::10] SIP/2.0\r\nTo: sip:user@example.com\r\nFrom: sip:user@example.com;tag=81x2\r\nVia: SIP/2.0/UDP [2001:db8::9:1]:5070;received=2001:db8::9:255;branch=z9hG4bKas3-111\r\nCall-ID: SSG9559905523997077@hlau_4100\r\nMax-Forwards: 70\r\nContact: \"Caller\" <sip:caller@[2001:db8::1]>\r\nCSeq: 98176 REGISTER\r\nContent-Length: 0\r\n\r\n";
        let r = req(data);
        r.validate().unwrap();
        assert_eq!(r.request_uri().unwrap().host, "[2001:db8::10]");
        let via = r.top_via().unwrap();
        assert_eq!(via.host, "[2001:db8::9:1]");
        assert_eq!(via.port, Some(5070));
        assert_eq!(via.received(), Some("2001:db8::9:255"));
        assert_roundtrip(data);

        // port-ambiguous vs port-unambiguous (RFC 5118 4.2)
        let u = SipUri::parse("sip:[2001:db8::9:255]").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("[2001:db8::9:255]", None));
        let u = SipUri::parse("sip:[2001:db8::9]:255").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("[2001:db8::9]", Some(255)));
        // embedded IPv4 with two colons ok, three colons not
        assert!(SipUri::parse("sip:user@[2001:db8::192.0.2.1]").is_ok());
        assert!(SipUri::parse("sip:user@[2001:db8:::192.0.2.1]").is_err());
        // IPv6 without brackets
        assert!(SipUri::parse("sip:user@2001:db8::10").is_err());
        let e = err(b"REGISTER sip:2001:db8::10 SIP/2.0\r\nl: 0\r\n\r\n");
        assert_eq!(e.status, Some(400));
        assert!(e.detail.contains("Request-URI"), "{e}");
        let e = err(b"OPTIONS sip:user@[2001:db8:::192.0.2.1] SIP/2.0\r\n\r\n");
        assert_eq!(e.status, Some(400));
        assert!(e.detail.contains("IPv6"), "{e}");
    }

    #[test]
    fn unknown_schemes() {
        // Request-URI with an unknown scheme: parses, validate() says 416
        let data = b"OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0\r\nTo: sip:user@example.com\r\nFrom: sip:caller@example.net;tag=384\r\nMax-Forwards: 3\r\nCall-ID: unkscm.nasdfasser0q239nwsdfasdkl34\r\nCSeq: 3923423 OPTIONS\r\nVia: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\r\nContent-Length: 0\r\n\r\n";
        let r = req(data);
        assert_eq!(r.validate().unwrap_err().status, Some(416));
        let uri = r.request_uri().unwrap();
        assert_eq!(uri.scheme, "nobodyknowsthisscheme");
        assert_eq!(uri.host, "totallyopaquecontent");
        assert!(!uri.is_sip());
        assert_roundtrip(data);
        // unknown scheme in To is fine
        let data = b"OPTIONS sip:user@example.com SIP/2.0\r\nTo: isbn:2983792873\r\nFrom: <http://www.example.com>;tag=3234233\r\nCall-ID: unksm2.daksdj@hyphenated-host.example.com\r\nCSeq: 234902 OPTIONS\r\nMax-Forwards: 70\r\nVia: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw\r\nContact: <name:John_Smith>\r\nl: 0\r\n\r\n";
        let r = req(data);
        r.validate().unwrap();
        assert_eq!(r.to().unwrap().uri.scheme, "isbn");
        assert_eq!(r.from().unwrap().uri.to_string(), "http://www.example.com");
        assert_roundtrip(data);
        // tel URIs
        let r = req(b"INVITE tel:+1-201-555-0123;phone-context=example.com SIP/2.0\r\nTo: <tel:+12015550123>\r\nFrom: <sip:a@b.example>;tag=1\r\ni: x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nv: SIP/2.0/UDP h.example\r\n\r\n");
        r.validate().unwrap();
        let u = r.request_uri().unwrap();
        assert_eq!(u.scheme, "tel");
        assert_eq!(u.user.as_deref(), Some("+1-201-555-0123"));
        assert_eq!(u.param("phone-context"), Some(Some("example.com")));
        assert_eq!(
            u.to_string(),
            "tel:+1-201-555-0123;phone-context=example.com"
        );
    }

    // ----- RFC 4475 invalid messages and other errors

    fn assert_err(data: &[u8], status: Option<u16>, needle: &str) -> ParseError {
        let e = err(data);
        assert_eq!(e.status, status, "status of {e:?}");
        assert!(
            e.detail.contains(needle),
            "detail {:?} should contain {needle:?}",
            e.detail
        );
        e
    }

    const GOOD_HEADERS: &str = "To: sip:user@example.com\r\nFrom: sip:caller@example.com;tag=1\r\nMax-Forwards: 70\r\nCall-ID: abc@host\r\nCSeq: 1 INVITE\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n";

    #[test]
    fn rfc4475_invalid_start_lines() {
        let with = |start: &str| format!("{start}\r\n{GOOD_HEADERS}Content-Length: 0\r\n\r\n");
        // 3.1.2.7 ltgtruri
        assert_err(
            with("INVITE <sip:user@example.com> SIP/2.0").as_bytes(),
            Some(400),
            "<>",
        );
        // 3.1.2.8 lwsruri
        assert_err(
            with("INVITE sip:user@example.com; lr SIP/2.0").as_bytes(),
            Some(400),
            "single spaces",
        );
        // 3.1.2.9 lwsstart
        assert_err(
            with("INVITE  sip:user@example.com  SIP/2.0").as_bytes(),
            Some(400),
            "line 1",
        );
        // 3.1.2.10 trws
        assert_err(
            with("INVITE sip:user@example.com SIP/2.0  ").as_bytes(),
            Some(400),
            "trailing whitespace",
        );
        // 3.1.2.11 escruri
        assert_err(
            with("INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0").as_bytes(),
            Some(400),
            "headers",
        );
        // 3.1.2.16 badvers
        assert_err(
            with("OPTIONS sip:t.watson@example.org SIP/7.0").as_bytes(),
            Some(505),
            "SIP/7.0",
        );
        assert_err(
            with("OPTIONS sip:t.watson@example.org SIP/x").as_bytes(),
            Some(400),
            "malformed SIP version",
        );
        // invalid method token
        assert_err(
            with("INV@ITE sip:user@example.com SIP/2.0").as_bytes(),
            Some(400),
            "method",
        );
        // the version is case-insensitive
        assert!(parse_datagram(with("INVITE sip:user@example.com sip/2.0").as_bytes()).is_ok());
        // 3.1.2.19 bigcode and other malformed responses: dropped
        assert_err(
            b"SIP/2.0 4294967301 better not break the receiver\r\nContent-Length: 0\r\n\r\n",
            None,
            "status code",
        );
        assert_err(b"SIP/2.0 099 Low\r\n\r\n", None, "out of range");
        assert_err(b"SIP/2.0 700 High\r\n\r\n", None, "out of range");
        assert_err(b"SIP/3.0 200 OK\r\n\r\n", None, "SIP/3.0");
        assert_err(b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n", None, "Via");
        // not SIP at all: dropped
        assert_err(
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            None,
            "not a SIP message",
        );
        assert_err(
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            None,
            "not a SIP",
        );
        assert_err(b"\r\n\r\n", None, "keep-alive");
        assert_err(b"", None, "empty");
        // control characters in the start line
        assert_err(
            b"OPTIONS sip:a@b\x00 SIP/2.0\r\n\r\n",
            Some(400),
            "control character 0x00",
        );
    }

    #[test]
    fn rfc4475_invalid_headers() {
        // 3.1.2.1 badinv01
        let e = assert_err(
            b"INVITE sip:user@example.com SIP/2.0\r\nTo: sip:j.user@example.com\r\nFrom: sip:caller@example.net;tag=134161461246\r\nMax-Forwards: 7\r\nCall-ID: badinv01.0ha0isndaksdjasdf3234nas\r\nCSeq: 8 INVITE\r\nVia: SIP/2.0/UDP 192.0.2.15;;,;,,\r\nContact: \"Joe\" <sip:joe@example.org>;;;;\r\nContent-Length: 0\r\n\r\n",
            Some(400),
            "line 7: header \"Via\"",
        );
        assert!(e.detail.contains("parameter"), "{e}");
        // 3.1.2.2 clerr
        assert_err(
            b"INVITE sip:user@example.com SIP/2.0\r\nMax-Forwards: 80\r\nContent-Length: 9999\r\n\r\nv=0\r\n",
            Some(400),
            "Content-Length 9999 exceeds body of 5 bytes",
        );
        // 3.1.2.3 ncl
        assert_err(
            b"INVITE sip:user@example.com SIP/2.0\r\nContent-Length: -999\r\n\r\n",
            Some(400),
            "invalid Content-Length \"-999\"",
        );
        // 3.1.2.4 scalar02
        assert_err(
            b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3\r\nTo: <sip:user@example.com>\r\nFrom: <sip:user@example.com>;tag=239232jh3\r\nCSeq: 36893488147419103232 REGISTER\r\nCall-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32\r\nMax-Forwards: 300\r\nExpires: 1000000000000000000000000000000000000000\r\nContact: <sip:user@host129.example.com>;expires=280297596632815\r\nContent-Length: 0\r\n\r\n",
            Some(400),
            "line 5: header \"CSeq\": sequence number",
        );
        assert_err(
            b"INVITE sip:a@b.example SIP/2.0\r\nMax-Forwards: 300\r\n\r\n",
            Some(400),
            "exceeds 255",
        );
        // 3.1.2.6 quotbal
        assert_err(
            b"INVITE sip:user@example.com SIP/2.0\r\nTo: \"Mr. J. User <sip:j.user@example.com>\r\n\r\n",
            Some(400),
            "unterminated quoted string",
        );
        // 3.1.2.13 regbadct
        assert_err(
            b"REGISTER sip:example.com SIP/2.0\r\nContact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\r\n\r\n",
            Some(400),
            "must be enclosed in <>",
        );
        // 3.1.2.14 badaspec
        assert_err(
            b"OPTIONS sip:user@example.org SIP/2.0\r\nTo: \"Watson, Thomas\" < sip:t.watson@example.org >\r\n\r\n",
            Some(400),
            "whitespace inside",
        );
        // 3.1.2.15 baddn
        assert_err(
            b"OPTIONS sip:t.watson@example.org SIP/2.0\r\nFrom: Bell, Alexander <sip:a.g.bell@example.com>;tag=43\r\n\r\n",
            Some(400),
            "display name",
        );
        // multi01-style duplicates of single-valued headers
        assert_err(
            format!(
                "INVITE sip:a@b.example SIP/2.0\r\n{GOOD_HEADERS}To: sip:other@example.com\r\n\r\n"
            )
            .as_bytes(),
            Some(400),
            "line 8: duplicate \"To\" header (first on line 2)",
        );
        assert_err(
            b"INVITE sip:a@b.example SIP/2.0\r\nCall-ID: a\r\ni: b\r\n\r\n",
            Some(400),
            "duplicate \"Call-ID\"",
        );
        // mcl01: differing Content-Length values
        assert_err(
            b"OPTIONS sip:user@example.com SIP/2.0\r\nContent-Length: 0\r\nl: 193\r\n\r\n",
            Some(400),
            "differs",
        );
        // equal duplicates are tolerated and normalized on output
        let r =
            req(b"OPTIONS sip:user@example.com SIP/2.0\r\nContent-Length: 3\r\nl: 03\r\n\r\nabc");
        assert_eq!(&r.body[..], b"abc");
        let out = String::from_utf8(r.to_bytes()).unwrap();
        assert_eq!(
            out.matches("Content-Length").count() + out.matches("\r\nl:").count(),
            1
        );
        // too large
        assert_err(
            b"OPTIONS sip:user@example.com SIP/2.0\r\nContent-Length: 70000\r\n\r\n",
            Some(513),
            "maximum message size",
        );
        assert_err(
            b"OPTIONS sip:user@example.com SIP/2.0\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
            Some(513),
            "Content-Length",
        );
        let mut big = b"OPTIONS sip:user@example.com SIP/2.0\r\n\r\n".to_vec();
        big.resize(MAX_MESSAGE_SIZE + 1, b'x');
        assert_err(&big, Some(513), "exceeds the maximum");
        // the example from the module contract
        assert_err(
            b"OPTIONS sip:user@example.com SIP/2.0\r\nTo: sip:user@example.com\r\nCSeq: abc\r\n\r\n",
            Some(400),
            "line 3: header \"CSeq\": expected \"<number> <method>\", got \"abc\"",
        );
        // malformed header lines
        assert_err(
            b"OPTIONS sip:user@example.com SIP/2.0\r\nTo: sip:user@example.com\r\nthis line has no colon\r\n\r\n",
            Some(400),
            "line 3: header line without a colon",
        );
        assert_err(
            b"OPTIONS sip:user@example.com SIP/2.0\r\nBad Name: x\r\n\r\n",
            Some(400),
            "line 2: invalid header name \"Bad Name\"",
        );
        assert_err(
            b"OPTIONS sip:user@example.com SIP/2.0\r\n folded: x\r\n\r\n",
            Some(400),
            "line 2: continuation line without a preceding header",
        );
        assert_err(
            b"OPTIONS sip:user@example.com SIP/2.0\r\nSubject: caf\xe9\r\n\r\n",
            Some(400),
            "line 2: header section is not valid UTF-8",
        );
        assert_err(
            b"OPTIONS sip:user@example.com SIP/2.0\r\nSubject: a\rb\r\n\r\n",
            Some(400),
            "line 2: invalid control character 0x0d",
        );
        assert_err(
            b"OPTIONS sip:user@example.com SIP/2.0\r\nSubject: a\x00b\r\n\r\n",
            Some(400),
            "control character 0x00",
        );
        assert_err(
            b"OPTIONS sip:user@example.com SIP/2.0\r\nSubject: x\r\n",
            Some(400),
            "not terminated by an empty line",
        );
        assert_err(
            b"OPTIONS sip:user@example.com SIP/2.0\r\nCall-ID: a b\r\n\r\n",
            Some(400),
            "Call-ID",
        );
        // bodies are raw bytes, never UTF-8 checked
        let r =
            req(b"MESSAGE sip:a@b.example SIP/2.0\r\nContent-Length: 4\r\n\r\n\xff\x00\xfe\x80");
        assert_eq!(&r.body[..], b"\xff\x00\xfe\x80");
    }

    #[test]
    fn validate_mandatory_headers() {
        let base =
            format!("INVITE sip:a@b.example SIP/2.0\r\n{GOOD_HEADERS}Content-Length: 0\r\n\r\n");
        let r = req(base.as_bytes());
        r.validate().unwrap();
        for (name, needle) in [
            ("To", "missing \"To\""),
            ("From", "missing \"From\""),
            ("CSeq", "missing \"CSeq\""),
            ("Call-ID", "missing \"Call-ID\""),
            ("Max-Forwards", "missing \"Max-Forwards\""),
            ("Via", "missing \"Via\""),
        ] {
            let mut r2 = r.clone();
            r2.headers.remove(name);
            let e = r2.validate().unwrap_err();
            assert_eq!(e.status, Some(400));
            assert!(e.detail.contains(needle), "{e}");
        }
        // 3.3.1 insuf: Call-ID, From, To missing
        let insuf = b"INVITE sip:user@example.com SIP/2.0\r\nCSeq: 193942 INVITE\r\nVia: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\r\nContent-Type: application/sdp\r\nl: 0\r\n\r\n";
        let e = req(insuf).validate().unwrap_err();
        assert_eq!(e.status, Some(400));
        assert!(e.detail.contains("missing"), "{e}");
        // 3.1.2.17 mismatch01 / 3.1.2.18 mismatch02
        let mut m = r.clone();
        m.method = Method::Options;
        let e = m.validate().unwrap_err();
        assert!(e.detail.contains("does not match"), "{e}");
        let mut m = r.clone();
        m.method = Method::Other("NEWMETHOD".into());
        m.headers.set("CSeq", "8 newmethod");
        assert_eq!(m.validate().unwrap_err().status, Some(400));
        // ACK and CANCEL carry their own method in CSeq
        let mut ack = r.clone();
        ack.method = Method::Ack;
        ack.headers.set("CSeq", "1 ACK");
        ack.validate().unwrap();
        let mut cancel = r.clone();
        cancel.method = Method::Cancel;
        cancel.headers.set("CSeq", "1 INVITE");
        assert!(cancel.validate().is_err());
        cancel.headers.set("CSeq", "1 CANCEL");
        cancel.validate().unwrap();
        // duplicates added programmatically
        let mut dup = r.clone();
        dup.headers.push("Max-Forwards", "69");
        assert!(dup.validate().unwrap_err().detail.contains("exactly one"));
        // bad values
        let mut bad = r.clone();
        bad.headers.set("To", "<sip:a@b");
        assert!(bad.validate().unwrap_err().detail.contains("header \"To\""));
    }

    // ----- Cisco phone REGISTER

    #[test]
    fn cisco_register() {
        let data = build(CISCO_REGISTER, CISCO_BODY);
        let r = req(&data);
        r.validate().unwrap();
        assert_eq!(r.method, Method::Register);
        assert_eq!(r.top_via().unwrap().transport, "TCP");
        assert_eq!(r.top_via().unwrap().port, Some(51508));
        assert_eq!(r.headers.get("x-cisco-peer-cert-status"), Some("none"));
        assert_eq!(r.headers.get("X-CISCO-CLIENT-VERSION"), Some("14.2(1)"));
        assert_eq!(r.headers.get("Date"), Some("Mon, 24 Nov 2025 22:13:01 GMT"));
        assert_eq!(r.headers.get_all_split("Supported").count(), 15);
        let ContactList::Addrs(contacts) = r.contacts().unwrap() else {
            panic!()
        };
        assert_eq!(contacts.len(), 1);
        let c = &contacts[0];
        assert_eq!(c.uri.transport(), Some("tcp"));
        assert_eq!(c.uri.port, Some(51508));
        assert_eq!(
            c.param("+sip.instance"),
            Some(Some("\"<urn:uuid:00000000-0000-0000-0000-0022905c1e3b>\""))
        );
        assert_eq!(
            unquote(c.param("+sip.instance").flatten().unwrap()),
            "<urn:uuid:00000000-0000-0000-0000-0022905c1e3b>"
        );
        assert_eq!(
            c.param("+u.sip!devicename.ccm.cisco.com"),
            Some(Some("\"SEP0022905C1E3B\""))
        );
        assert_eq!(c.param("reg-id"), Some(Some("1")));
        assert_eq!(c.expires(), Some(3600));
        // the params survive Display exactly
        let shown = c.to_string();
        assert_eq!(
            shown,
            r.headers.get("Contact").unwrap(),
            "Contact Display reproduces the received value"
        );
        assert_eq!(NameAddr::parse(&shown).unwrap(), *c);
        assert_eq!(&r.body[..], CISCO_BODY.replace('\n', "\r\n").as_bytes());
        assert_roundtrip(&data);

        // Contact: * for un-registering all bindings
        let mut unreg = r.clone();
        unreg.headers.set("Contact", "*");
        unreg.headers.set("Expires", "0");
        assert_eq!(unreg.contacts().unwrap(), ContactList::Wildcard);
        unreg.headers.push("Contact", "<sip:x@y.example>");
        assert!(unreg.contacts().is_err());
        assert!(parse_contact_list("*, <sip:a@b.example>").is_err());

        // the same REGISTER with bare LF line endings (phone quirk)
        let lf: Vec<u8> = String::from_utf8(data.clone())
            .unwrap()
            .replace("\r\n", "\n")
            .into_bytes();
        let body_lf = CISCO_BODY.len();
        let r2 = match parse_datagram(&lf) {
            Err(e) => {
                // Content-Length counted CRLF bytes: too large for the LF body
                assert_eq!(e.status, Some(400));
                let fixed = String::from_utf8(lf.clone()).unwrap().replace(
                    &format!("Content-Length: {}", CISCO_BODY.replace('\n', "\r\n").len()),
                    &format!("Content-Length: {body_lf}"),
                );
                req(fixed.as_bytes())
            }
            Ok(_) => panic!("expected Content-Length mismatch"),
        };
        assert_eq!(r2.headers, r.headers.clone().tap_cl(body_lf));
        assert_eq!(&r2.body[..], CISCO_BODY.as_bytes());
    }

    trait TapCl {
        fn tap_cl(self, n: usize) -> Self;
    }

    impl TapCl for Headers {
        fn tap_cl(mut self, n: usize) -> Self {
            self.set("Content-Length", n.to_string());
            self
        }
    }

    // ----- line endings and folding

    #[test]
    fn bare_lf_mixed_endings_and_folding() {
        let data = b"\r\n\r\nOPTIONS sip:a@b.example SIP/2.0\nVia: SIP/2.0/UDP h.example;branch=z9hG4bK1\r\nSubject: first\n\t second \r\n   third\nTo: sip:a@b.example\r\nContent-Length: 2\n\r\nhi";
        let r = req(data);
        assert_eq!(r.headers.get("s"), Some("first second third"));
        assert_eq!(&r.body[..], b"hi");
        assert_eq!(r.headers.len(), 4);
        assert_roundtrip(data);
        let out = r.to_bytes();
        assert!(out.windows(2).filter(|w| w == b"\r\n").count() >= 6);
        assert!(!out.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        // whitespace-only continuation lines are ignored
        let r = req(b"OPTIONS sip:a@b.example SIP/2.0\nSubject: x\n   \nl: 0\n\n");
        assert_eq!(r.headers.get("Subject"), Some("x"));
        // folded empty value
        let r = req(b"OPTIONS sip:a@b.example SIP/2.0\nSubject:\n value\n\n");
        assert_eq!(r.headers.get("Subject"), Some("value"));
    }

    // ----- headers API

    #[test]
    fn headers_api_and_compact_forms() {
        let mut h = Headers::new();
        assert!(h.is_empty());
        h.push("v", "SIP/2.0/UDP a.example");
        h.push("Via", "SIP/2.0/UDP b.example, SIP/2.0/UDP c.example");
        h.push("f", "<sip:a@b.example>");
        h.push("X-Custom", "1");
        h.push("x-custom", "2");
        h.push("l", "5");
        assert_eq!(h.len(), 6);
        assert_eq!(h.get("VIA"), Some("SIP/2.0/UDP a.example"));
        assert_eq!(h.get("V"), Some("SIP/2.0/UDP a.example"));
        assert_eq!(h.get("From"), Some("<sip:a@b.example>"));
        assert_eq!(h.get("content-length"), Some("5"));
        assert_eq!(h.get_all("via").count(), 2);
        assert_eq!(h.get_all_split("v").count(), 3);
        assert_eq!(h.get_all("X-CUSTOM").collect::<Vec<_>>(), ["1", "2"]);
        let name = String::from("X-Custom");
        let vals: Vec<&str> = h.get_all(&name).collect();
        drop(name);
        assert_eq!(vals, ["1", "2"]);
        h.set("x-custom", "3");
        assert_eq!(h.get_all("X-Custom").collect::<Vec<_>>(), ["3"]);
        assert_eq!(
            h.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            ["v", "Via", "f", "X-Custom", "l"]
        );
        h.set("Subject", "new");
        assert_eq!(h.iter().last(), Some(("Subject", "new")));
        h.remove("via");
        assert_eq!(h.get("v"), None);
        assert_eq!(h.len(), 4);
        assert!(h.contains("From"));
        assert_eq!(h.count("f"), 1);
        for c in [
            'v', 'f', 't', 'i', 'm', 'l', 'c', 'k', 's', 'e', 'o', 'r', 'b', 'u', 'x',
        ] {
            let full = full_header_name(&c.to_string()).to_string();
            assert_ne!(full.len(), 1, "{c}");
            assert_eq!(compact_header_name(&full), Some(c));
            assert!(header_names_equal(
                &c.to_ascii_uppercase().to_string(),
                &full
            ));
        }
        assert_eq!(full_header_name("Call-ID"), "Call-ID");
        assert_eq!(full_header_name("i"), "Call-ID");
        assert_eq!(full_header_name("q"), "q");
        let collected: Headers = vec![("A", "1"), ("B", "2")].into_iter().collect();
        assert_eq!((&collected).into_iter().count(), 2);
    }

    #[test]
    fn comma_splitting_respects_quotes_and_brackets() {
        let v = r#""Doe, John" <sip:j,d@example.com;x=a>;q=0.5, <sip:b@example.com>;+sip.instance="<urn:uuid:1,2>", sip:c@example.com ,, "a\",b" <sip:d@example.com>"#;
        let items: Vec<&str> = split_commas(v).collect();
        assert_eq!(
            items,
            [
                r#""Doe, John" <sip:j,d@example.com;x=a>;q=0.5"#,
                r#"<sip:b@example.com>;+sip.instance="<urn:uuid:1,2>""#,
                "sip:c@example.com",
                r#""a\",b" <sip:d@example.com>"#,
            ]
        );
        let ContactList::Addrs(a) = parse_contact_list(v).unwrap() else {
            panic!()
        };
        assert_eq!(a.len(), 4);
        assert_eq!(a[0].display_name.as_deref(), Some("Doe, John"));
        assert_eq!(a[3].display_name.as_deref(), Some("a\",b"));
        assert_eq!(split_commas(" , ,").count(), 0);
    }

    // ----- typed views

    #[test]
    fn via_typed_view() {
        let mut v =
            Via::parse("SIP/2.0/udp 10.0.0.1:5060;branch=z9hG4bK776;rport;received=10.0.0.9")
                .unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "10.0.0.1");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some("z9hG4bK776"));
        assert!(v.has_rfc3261_branch());
        assert_eq!(v.param("rport"), Some(None));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.param("nope"), None);
        v.set_param("rport", Some("61000".into()));
        v.set_param("received", Some("192.0.2.4".into()));
        v.set_param("alias", None);
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776;rport=61000;received=192.0.2.4;alias"
        );
        assert_eq!(Via::parse(&v.to_string()).unwrap(), v);
        v.remove_param("alias");
        assert_eq!(v.param("alias"), None);
        let mut n = Via::new("tls", "proxy.example.com", None);
        n.set_param("branch", Some("z9hG4bKabc".into()));
        assert_eq!(
            n.to_string(),
            "SIP/2.0/TLS proxy.example.com;branch=z9hG4bKabc"
        );
        assert_eq!(
            "SIP/2.0/TLS proxy.example.com;branch=z9hG4bKabc"
                .parse::<Via>()
                .unwrap(),
            n
        );
        for bad in [
            "",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP ",
            "SIP/3.0/UDP host",
            "SIP/2.0 host",
            "SIP/2.0/UDPhost",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host:",
            "SIP/2.0/UDP host;branch",
            "SIP/2.0/UDP host;branch=a\"b\"",
            "SIP/2.0/UDP host;received=example.com",
            "SIP/2.0/UDP host;ttl=256",
            "SIP/2.0/UDP host;rport=x",
            "SIP/2.0/UDP host junk",
            "SIP/2.0/UDP a, SIP/2.0/UDP b",
            "SIP/2.0/UDP -bad-.example",
            "SIP/2.0/UDP 1.2.3.256",
            "SIP/2.0/UDP [::1",
        ] {
            let e = Via::parse(bad).unwrap_err();
            assert_eq!(e.status, Some(400), "{bad}");
        }
        assert!(Via::parse("SIP/2.0/UDP [::1]:5060;received=[::2];maddr=224.2.0.1;ttl=16").is_ok());
    }

    #[test]
    fn cseq_and_method() {
        let c = CSeq::parse("  4711   INVITE ").unwrap();
        assert_eq!(c, CSeq::new(4711, Method::Invite));
        assert_eq!(c.to_string(), "4711 INVITE");
        assert_eq!("4294967295 ACK".parse::<CSeq>().unwrap().seq, u32::MAX);
        assert!(CSeq::parse("4294967296 ACK")
            .unwrap_err()
            .detail
            .contains("2**32-1"));
        let e = CSeq::parse("abc").unwrap_err();
        assert_eq!(e.detail, "expected \"<number> <method>\", got \"abc\"");
        for bad in [
            "1",
            "INVITE",
            "1INVITE",
            "1 INVITE x",
            "-1 INVITE",
            "1 IN;VITE",
        ] {
            assert!(CSeq::parse(bad).is_err(), "{bad}");
        }
        for m in [
            Method::Invite,
            Method::Ack,
            Method::Bye,
            Method::Cancel,
            Method::Register,
            Method::Options,
            Method::Info,
            Method::Update,
            Method::Prack,
            Method::Subscribe,
            Method::Notify,
            Method::Refer,
            Method::Message,
            Method::Publish,
        ] {
            assert_eq!(m.as_str().parse::<Method>().unwrap(), m);
            assert_eq!(m.to_string(), m.as_str());
        }
        assert_eq!(
            "invite".parse::<Method>().unwrap(),
            Method::Other("invite".into())
        );
        assert_eq!(Method::parse("FOO").unwrap().as_str(), "FOO");
        assert!(Method::parse("").is_err());
        assert!(Method::parse("FO O").is_err());
        assert!(Method::parse("FOO/1").is_err());
    }

    #[test]
    fn sip_uri_parse_and_display() {
        let u = SipUri::parse("sips:alice:secret@Atlanta.Example.com:5061;transport=tls;lr;maddr=239.255.255.1?subject=project%20x&priority=urgent").unwrap();
        assert_eq!(u.scheme, "sips");
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.host, "Atlanta.Example.com");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.param("TRANSPORT"), Some(Some("tls")));
        assert_eq!(u.transport(), Some("tls"));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(
            u.headers,
            vec![
                ("subject".to_string(), "project%20x".to_string()),
                ("priority".to_string(), "urgent".to_string())
            ]
        );
        assert_eq!(u.host_port(), "Atlanta.Example.com:5061");
        assert_eq!(
            u.to_string(),
            "sips:alice:secret@Atlanta.Example.com:5061;transport=tls;lr;maddr=239.255.255.1?subject=project%20x&priority=urgent"
        );
        let cases = [
            "sip:host.example",
            "SIP:user@host.example",
            "sip:user@192.0.2.1:5060",
            "sip:+1-212-555-1212:1234@gateway.com;user=phone",
            "sip:user:@host.example",
            "sip:alice@example.com;transport=tcp;x=%41",
            "sip:[::1]:5060",
            "sip:a@[2001:db8::1];lr",
            "sip:host.example.",
            "tel:+358-555-1234567;postd=pp22",
            "tel:7042;phone-context=example.com",
            "urn:service:sos",
            "mailto:a@b.example",
            "sip:u@h.example?a=&b=c",
        ];
        for s in cases {
            let u = SipUri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(SipUri::parse(&u.to_string()).unwrap(), u, "{s}");
            assert_eq!(u.to_string().to_ascii_lowercase(), s.to_ascii_lowercase());
        }
        for bad in [
            "",
            "sip:",
            "sip:@host.example",
            "sip:user@",
            "sip:user@host.example:",
            "sip:user@host.example:70000",
            "sip:user@host..example",
            "sip:user@host.example;",
            "sip:user@host.example;=x",
            "sip:user@host.example;a=",
            "sip:user@host.example?a",
            "sip:us er@host.example",
            "sip:user@host.example>",
            "sip:user%4@host.example",
            "sip:user@host_name.example",
            "1sip:host",
            "host.example",
            ":foo",
            "tel:",
            "tel:+1 2",
            "tel:+12?x=y",
            "isbn:",
            "isbn:a b",
            "x:<y>",
            "sip:user@[2001:db8::1",
            "sip:user@[::g]",
        ] {
            assert!(SipUri::parse(bad).is_err(), "{bad:?} should fail");
        }
        let u = SipUri::parse("sip:%61lice;phone-context=x@h.example").unwrap();
        assert_eq!(u.user_part(), Some("%61lice"));
        assert_eq!(u.user_unescaped().as_deref(), Some("alice;phone-context=x"));
        assert_eq!(unescape_uri("%zz%41%4"), "%zzA%4");
        let mut u = SipUri::sip(Some("bob"), "biloxi.example.com", Some(5060));
        u.set_param("transport", Some("udp".into()));
        u.set_param("transport", Some("tcp".into()));
        assert_eq!(
            u.to_string(),
            "sip:bob@biloxi.example.com:5060;transport=tcp"
        );
        u.remove_param("transport");
        assert_eq!(u.to_string(), "sip:bob@biloxi.example.com:5060");
    }

    #[test]
    fn name_addr_forms() {
        let n =
            NameAddr::parse(r#"  "A \"quoted\" \\ name" <sip:a@b.example;lr>;tag=x;foo="b;a<r>,""#)
                .unwrap();
        assert_eq!(n.display_name.as_deref(), Some(r#"A "quoted" \ name"#));
        assert_eq!(n.uri.param("lr"), Some(None));
        assert_eq!(n.tag(), Some("x"));
        assert_eq!(n.param("foo"), Some(Some(r#""b;a<r>,""#)));
        assert_eq!(
            n.to_string(),
            r#""A \"quoted\" \\ name" <sip:a@b.example;lr>;tag=x;foo="b;a<r>,""#
        );
        assert_eq!(NameAddr::parse(&n.to_string()).unwrap(), n);

        // bare addr-spec: parameters belong to the header
        let n = NameAddr::parse("sip:+1-972-555-1212@example.com;user=phone;tag=7").unwrap();
        assert!(n.uri.params.is_empty());
        assert_eq!(n.param("user"), Some(Some("phone")));
        assert_eq!(n.tag(), Some("7"));
        assert_eq!(
            n.to_string(),
            "<sip:+1-972-555-1212@example.com>;user=phone;tag=7"
        );
        // inside <> they belong to the URI
        let n = NameAddr::parse("<sip:+1-972-555-1212@example.com;user=phone>;tag=7").unwrap();
        assert_eq!(n.uri.param("user"), Some(Some("phone")));
        assert_eq!(n.param("user"), None);

        let n = NameAddr::parse("Bob  Smith\t<sip:bob@b.example>").unwrap();
        assert_eq!(n.display_name.as_deref(), Some("Bob  Smith"));
        assert_eq!(NameAddr::parse(&n.to_string()).unwrap(), n);
        let n = NameAddr::parse("\"\" <sip:anon@anonymous.invalid>").unwrap();
        assert_eq!(n.display_name.as_deref(), Some(""));
        assert_eq!(NameAddr::parse(&n.to_string()).unwrap(), n);
        let n = NameAddr::parse("\"Ünïcødé 名前\" <sip:u@h.example>").unwrap();
        assert_eq!(n.display_name.as_deref(), Some("Ünïcødé 名前"));

        let mut n = NameAddr::new(SipUri::sip(Some("a"), "h.example", None));
        n.display_name = Some("x\"y".into());
        n.set_tag("abc");
        n.set_param("expires", Some("60".into()));
        assert_eq!(
            n.to_string(),
            r#""x\"y" <sip:a@h.example>;tag=abc;expires=60"#
        );
        assert_eq!(n.expires(), Some(60));
        n.remove_param("tag");
        assert_eq!(n.tag(), None);

        for bad in [
            "",
            "<sip:a@b.example",
            "\"unterminated <sip:a@b.example>",
            "\"x\" sip:a@b.example",
            "< sip:a@b.example>",
            "<sip:a@b.example> junk",
            "<sip:a@b.example>;",
            "<sip:a@b.example>;tag=",
            "<sip:a@b.example>;tag=\"x",
            "sip:a@b.example, sip:c@d.example",
            "sip:a@b.example?x=y",
            "a, b <sip:a@b.example>",
            "*",
        ] {
            assert!(NameAddr::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn char_class_table_matches_rfc3261_grammar() {
        let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b);
        for b in 0..=255u8 {
            let token = b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b);
            assert_eq!(is_token_char(b), token, "token {b}");
            assert_eq!(is_user_char(b), unreserved(b) || b"&=+$,;?/".contains(&b));
            assert_eq!(is_password_char(b), unreserved(b) || b"&=+$,".contains(&b));
            assert_eq!(is_param_char(b), unreserved(b) || b"[]/:&+$".contains(&b));
            assert_eq!(is_hnv_char(b), unreserved(b) || b"[]/?:+$".contains(&b));
            assert_eq!(is_uric(b), unreserved(b) || b";/?:@&=+$,[]".contains(&b));
            assert_eq!(
                is_tel_char(b),
                b.is_ascii_hexdigit() || b"*#+-.()".contains(&b)
            );
            assert_eq!(is_gen_value_char(b), token || b":[]".contains(&b));
            assert_eq!(
                is_host_char(b),
                b.is_ascii_alphanumeric() || b"-.".contains(&b)
            );
        }
    }

    #[test]
    fn find_lf_matches_naive_search() {
        let mut rng = Rng(7);
        for _ in 0..2000 {
            let len = rng.below(40);
            let v: Vec<u8> = (0..len)
                .map(|_| [b'\n', b'\r', 0, 1, 0x0b, 0x8a, 0xff, b'a'][rng.below(8)])
                .collect();
            assert_eq!(find_lf(&v), v.iter().position(|&b| b == b'\n'), "{v:?}");
        }
    }

    #[test]
    fn quoting_helpers() {
        assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote("x\r\ny"), "\"x  y\"");
        assert_eq!(unquote(r#""a\"b\\c""#), "a\"b\\c");
        assert_eq!(unquote("plain"), "plain");
        assert_eq!(unquote("\""), "\"");
        assert!(is_token("abc-.!%*_+`'~"));
        assert!(!is_token("a b"));
        assert!(!is_token(""));
    }

    #[test]
    fn reason_phrases() {
        for (code, phrase) in [
            (100, "Trying"),
            (180, "Ringing"),
            (183, "Session Progress"),
            (200, "OK"),
            (202, "Accepted"),
            (204, "No Notification"),
            (302, "Moved Temporarily"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (407, "Proxy Authentication Required"),
            (408, "Request Timeout"),
            (413, "Request Entity Too Large"),
            (416, "Unsupported URI Scheme"),
            (420, "Bad Extension"),
            (422, "Session Interval Too Small"),
            (423, "Interval Too Brief"),
            (428, "Use Identity Header"),
            (429, "Provide Referrer Identity"),
            (430, "Flow Failed"),
            (433, "Anonymity Disallowed"),
            (436, "Bad Identity-Info"),
            (437, "Unsupported Certificate"),
            (438, "Invalid Identity Header"),
            (439, "First Hop Lacks Outbound Support"),
            (470, "Consent Needed"),
            (480, "Temporarily Unavailable"),
            (481, "Call/Transaction Does Not Exist"),
            (486, "Busy Here"),
            (487, "Request Terminated"),
            (488, "Not Acceptable Here"),
            (489, "Bad Event"),
            (491, "Request Pending"),
            (493, "Undecipherable"),
            (494, "Security Agreement Required"),
            (500, "Server Internal Error"),
            (503, "Service Unavailable"),
            (504, "Server Time-out"),
            (505, "Version Not Supported"),
            (513, "Message Too Large"),
            (580, "Precondition Failure"),
            (600, "Busy Everywhere"),
            (603, "Decline"),
            (604, "Does Not Exist Anywhere"),
            (606, "Not Acceptable"),
        ] {
            assert_eq!(default_reason(code), phrase, "{code}");
        }
        assert_eq!(default_reason(299), "Success");
        assert_eq!(default_reason(499), "Client Error");
        assert_eq!(default_reason(42), "Unknown");
        assert_eq!(Response::new(404, "").reason, "Not Found");
    }

    // ----- serialization

    #[test]
    fn to_bytes_content_length_rules() {
        let mut r = Request::new(Method::Message, "sip:bob@b.example");
        r.headers
            .push("Via", "SIP/2.0/UDP a.example;branch=z9hG4bK1");
        r.headers.push("Content-Length", "999");
        r.headers.push("Content-Type", "text/plain");
        r.headers.push("Content-Length", "1");
        r.body = Bytes::from_static(b"hello");
        let s = String::from_utf8(r.to_bytes()).unwrap();
        assert_eq!(
            s,
            "MESSAGE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
        );
        assert_eq!(r.to_string(), s);
        // appended last when absent
        let mut r2 = Request::new(Method::Options, "sip:x.example");
        r2.headers.push("Subject", "a\r\nInjected: yes");
        let s = String::from_utf8(r2.to_bytes()).unwrap();
        assert_eq!(
            s,
            "OPTIONS sip:x.example SIP/2.0\r\nSubject: a  Injected: yes\r\nContent-Length: 0\r\n\r\n"
        );
        // compact name keeps its position and name
        let mut r3 = req(b"OPTIONS sip:x.example SIP/2.0\r\nl: 0\r\nSubject: s\r\n\r\n");
        r3.body = Bytes::from_static(b"12");
        assert!(String::from_utf8(r3.to_bytes())
            .unwrap()
            .contains("\r\nl: 2\r\nSubject: s\r\n\r\n12"));
        r3.normalize_content_length();
        assert_eq!(r3.headers.get("Content-Length"), Some("2"));
        let mut msg = SipMessage::from(Response::new(200, "OK"));
        msg.normalize_content_length();
        assert_eq!(msg.headers().get("l"), Some("0"));
        let mut out = Vec::new();
        msg.write_to(&mut out);
        assert_eq!(out, b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
    }

    #[test]
    fn round_trips() {
        for s in samples() {
            assert_roundtrip(&s);
        }
        let d = parse_datagram_bytes(&Bytes::from(build(CISCO_REGISTER, CISCO_BODY))).unwrap();
        assert_eq!(
            d,
            parse_datagram(&build(CISCO_REGISTER, CISCO_BODY)).unwrap()
        );
        let b = Bytes::from(build(OPTIONS, ""));
        assert_eq!(
            parse_stream_message_bytes(&b).unwrap(),
            parse_datagram(&b).unwrap()
        );
        // UDP without Content-Length: the body is the rest of the datagram
        let m =
            assert_roundtrip(b"MESSAGE sip:a@b.example SIP/2.0\r\nSubject: x\r\n\r\nbody\r\nmore");
        assert_eq!(&m.body()[..], b"body\r\nmore");
        assert!(m.is_request());
        assert!(m.as_response().is_none());
        assert!(m.as_request().is_some());
    }

    // ----- stream framing

    fn two_messages() -> (Vec<u8>, Vec<u8>) {
        let a = build(CISCO_REGISTER, CISCO_BODY);
        let b = build(
            "
SIP/2.0 200 OK
Via: SIP/2.0/TCP 10.10.20.55:51508;branch=z9hG4bK5e1c2c4b
From: <sip:2001@10.10.10.1>;tag=0022905c1e3b00027a8b7c26-4d2b3f51
To: <sip:2001@10.10.10.1>;tag=991
Call-ID: 0022905c-1e3b0002-1d0a2b3c-4d5e6f70@10.10.20.55
CSeq: 101 REGISTER
Content-Length: {CL}
",
            "0123456789\n\n",
        );
        (a, b)
    }

    #[test]
    fn stream_framing_byte_by_byte() {
        let (a, b) = two_messages();
        let mut wire = b"\r\n\r\n".to_vec();
        wire.extend_from_slice(&a);
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&b);
        wire.extend_from_slice(b"\r\n\r\n");

        let mut framer = StreamFramer::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut messages = Vec::new();
        let mut pings = 0;
        let mut keepalive_bytes = 0;
        for &byte in &wire {
            buf.push(byte);
            while let Some(ev) = framer.poll(&buf).unwrap() {
                match ev {
                    StreamEvent::KeepAlive { len, ping } => {
                        keepalive_bytes += len;
                        pings += usize::from(ping);
                        buf.drain(..len);
                    }
                    StreamEvent::Message { len } => {
                        messages.push(parse_stream_message(&buf[..len]).unwrap());
                        buf.drain(..len);
                    }
                }
            }
        }
        assert!(buf.is_empty());
        assert!(framer.is_idle());
        assert_eq!(keepalive_bytes, 10);
        assert_eq!(pings, 2);
        assert_eq!(
            messages,
            vec![parse_datagram(&a).unwrap(), parse_datagram(&b).unwrap()]
        );
    }

    #[test]
    fn stream_framing_arbitrary_splits() {
        let (a, b) = two_messages();
        let mut wire = b"\r\n".to_vec();
        wire.extend_from_slice(&a);
        wire.extend_from_slice(&b);
        let first = 2 + a.len();
        // stateless: every prefix
        for i in 0..=wire.len() {
            let got = frame_stream(&wire[..i]).unwrap();
            if i < first {
                assert_eq!(got, None, "prefix {i}");
            } else {
                assert_eq!(got, Some(first), "prefix {i}");
            }
        }
        assert_eq!(
            parse_stream_message(&wire[..first]).unwrap(),
            parse_datagram(&a).unwrap()
        );
        let rest = &wire[first..];
        assert_eq!(frame_stream(rest).unwrap(), Some(b.len()));
        // stateful, with every two-chunk split
        for split in 0..=wire.len() {
            let mut framer = StreamFramer::new();
            let mut buf = Vec::new();
            let mut got = Vec::new();
            for chunk in [&wire[..split], &wire[split..]] {
                buf.extend_from_slice(chunk);
                while let Some(ev) = framer.poll(&buf).unwrap() {
                    match ev {
                        StreamEvent::KeepAlive { len, .. } => {
                            buf.drain(..len);
                        }
                        StreamEvent::Message { len } => {
                            got.push(parse_stream_message(&buf[..len]).unwrap());
                            buf.drain(..len);
                        }
                    }
                }
            }
            assert_eq!(got.len(), 2, "split {split}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn keepalives() {
        assert_eq!(skip_keepalive(b"\r\n\r\nINVITE"), 4);
        assert_eq!(skip_keepalive(b"\n\n\r"), 3);
        assert_eq!(skip_keepalive(b"INVITE"), 0);
        assert_eq!(skip_keepalive(b""), 0);
        assert_eq!(frame_stream(b"\r\n\r\n"), Ok(None));
        assert_eq!(frame_stream(b""), Ok(None));
        let mut f = StreamFramer::new();
        assert_eq!(
            f.poll(b"\r\n\r\n"),
            Ok(Some(StreamEvent::KeepAlive { len: 4, ping: true }))
        );
        assert_eq!(
            f.poll(b"\r\n"),
            Ok(Some(StreamEvent::KeepAlive {
                len: 2,
                ping: false
            }))
        );
        // a ping split over two reads is still a ping
        assert_eq!(
            f.poll(b"\r\n"),
            Ok(Some(StreamEvent::KeepAlive { len: 2, ping: true }))
        );
        assert_eq!(
            f.poll(b"\r\n\r"),
            Ok(Some(StreamEvent::KeepAlive {
                len: 3,
                ping: false
            }))
        );
        assert_eq!(
            f.poll(b"\nOPT"),
            Ok(Some(StreamEvent::KeepAlive { len: 1, ping: true }))
        );
        assert_eq!(f.poll(b"OPT"), Ok(None));
        assert!(!f.is_idle());
        f.reset();
        assert!(f.is_idle());
        assert_eq!(f.poll(b""), Ok(None));
        let too_many = vec![b'\n'; MAX_MESSAGE_SIZE + 1];
        assert_eq!(frame_stream(&too_many).unwrap_err().status, None);
    }

    #[test]
    fn stream_framing_errors() {
        // missing Content-Length on a stream transport
        let e =
            frame_stream(b"OPTIONS sip:a@b.example SIP/2.0\r\nVia: SIP/2.0/TCP h.example\r\n\r\n")
                .unwrap_err();
        assert_eq!(e.status, Some(400));
        assert_eq!(e.detail, "missing Content-Length on a stream transport");
        let e = parse_stream_message(b"OPTIONS sip:a@b.example SIP/2.0\r\n\r\n").unwrap_err();
        assert_eq!(e.status, Some(400));
        // a response without Content-Length cannot be answered
        let e = frame_stream(b"SIP/2.0 200 OK\r\n\r\n").unwrap_err();
        assert_eq!(e.status, None);
        // invalid / differing / too large Content-Length
        let e = frame_stream(b"OPTIONS sip:a@b.example SIP/2.0\r\nContent-Length: x\r\n\r\n")
            .unwrap_err();
        assert_eq!(e.status, Some(400));
        let e = frame_stream(
            b"OPTIONS sip:a@b.example SIP/2.0\r\nl: 1\r\nContent-Length:\r\n 2\r\n\r\n",
        )
        .unwrap_err();
        assert!(e.detail.contains("differs"), "{e}");
        let e = frame_stream(b"OPTIONS sip:a@b.example SIP/2.0\r\nContent-Length: 65536\r\n\r\n")
            .unwrap_err();
        assert_eq!(e.status, Some(513));
        let e = frame_stream(b"OPTIONS sip:a@b.example SIP/2.0\r\nContent-Length: 65500\r\nX-Pad: 0123456789012345678901234567890123456789\r\n\r\n").unwrap_err();
        assert_eq!(e.status, Some(513));
        // folded Content-Length is understood
        assert_eq!(
            frame_stream(b"OPTIONS sip:a@b.example SIP/2.0\r\nContent-Length:\r\n 2\r\n\r\nab"),
            Ok(Some(58))
        );
        // a header section that never ends
        let mut endless = b"INVITE sip:a@b.example SIP/2.0\r\nX-Junk: ".to_vec();
        let mut f = StreamFramer::new();
        let mut result = Ok(None);
        for _ in 0..2000 {
            endless.extend_from_slice(&[b'a'; 40]);
            result = f.poll(&endless);
            if result.is_err() {
                break;
            }
        }
        let e = result.unwrap_err();
        assert_eq!(e.status, Some(513), "{e}");
        assert!(endless.len() <= MAX_MESSAGE_SIZE + 41);
        assert_eq!(frame_stream(&endless).unwrap_err().status, Some(513));
        // many short lines without an empty line
        let mut lines = b"INVITE sip:a@b.example SIP/2.0\r\n".to_vec();
        while lines.len() <= MAX_MESSAGE_SIZE {
            lines.extend_from_slice(b"A: b\r\n");
        }
        assert_eq!(frame_stream(&lines).unwrap_err().status, Some(513));
        // garbage is rejected as soon as its first line is seen
        let e = frame_stream(b"GET / HTTP/1.1\r\n").unwrap_err();
        assert_eq!(e.status, None);
        assert!(e.detail.contains("not a SIP message"));
        let e = StreamFramer::new().poll(b"\x16\x03\x01\x00").unwrap_err();
        assert_eq!(e.status, None);
        assert_eq!(frame_stream(b"INVITE sip:a@b.example SIP/2.0"), Ok(None));
        // control characters in the start line: not SIP, however it arrives
        let nul = b"OPTIONS sip:a@b\x00 SIP/2.0\r\nl: 0\r\n\r\n";
        assert_eq!(frame_stream(nul).unwrap_err().status, None);
        let mut f = StreamFramer::new();
        assert_eq!(f.poll(&nul[..10]), Ok(None));
        assert_eq!(f.poll(&nul[..16]).unwrap_err().status, None);
        // truncated / over-long stream messages
        let e =
            parse_stream_message(b"OPTIONS sip:a@b.example SIP/2.0\r\nl: 5\r\n\r\nab").unwrap_err();
        assert!(e.detail.contains("truncated"), "{e}");
        let e =
            parse_stream_message(b"OPTIONS sip:a@b.example SIP/2.0\r\nl: 1\r\n\r\nab").unwrap_err();
        assert!(e.detail.contains("unexpected bytes"), "{e}");
        // a framed message with a bad header still frames (so the server can
        // answer 400 and keep the connection)
        let bad = b"OPTIONS sip:a@b.example SIP/2.0\r\nCSeq: x\r\nl: 0\r\n\r\n";
        assert_eq!(frame_stream(bad), Ok(Some(bad.len())));
        assert_eq!(parse_stream_message(bad).unwrap_err().status, Some(400));
    }

    // ----- robustness

    /// Small deterministic PRNG (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                (self.next() % n as u64) as usize
            }
        }
    }

    /// Every property the fuzz target checks.
    fn check_input(data: &[u8]) {
        if let Ok(m) = parse_datagram(data) {
            let mut norm = m.clone();
            norm.normalize_content_length();
            let bytes = m.to_bytes();
            assert_eq!(
                parse_datagram(&bytes).as_ref(),
                Ok(&norm),
                "{:?}",
                String::from_utf8_lossy(data)
            );
            assert_eq!(parse_stream_message(&bytes).as_ref(), Ok(&norm));
            assert_eq!(frame_stream(&bytes), Ok(Some(bytes.len())));
            let h = m.headers();
            let _ = (
                m.cseq(),
                m.top_via(),
                h.from_addr(),
                h.to_addr(),
                h.contacts(),
            );
            let _ = h.max_forwards();
            // The borrowed views agree with the owned ones.
            if let Ok(v) = m.top_via() {
                let r = h.top_via_ref().map(|v| v.to_owned_via());
                assert_eq!(r.as_ref(), Ok(&v));
                assert_eq!(h.top_via_ref().ok().and_then(|v| v.branch()), v.branch());
            }
            for (owned, borrowed) in [(h.from_addr(), h.from_ref()), (h.to_addr(), h.to_ref())] {
                if let Ok(na) = owned {
                    let b = borrowed.expect("borrowed view parses");
                    assert_eq!(b.to_owned_name_addr(), na);
                    assert_eq!(b.tag(), na.tag());
                }
            }
            if let Some(r) = m.as_request() {
                // What the shell uses for parsed requests says what the full check says.
                assert_eq!(r.validate_parsed(), r.validate(), "{r}");
                let resp = r.make_response(200, "", Some("t"));
                assert!(parse_datagram(&resp.to_bytes()).is_ok());
            }
            for (_, v) in h.iter() {
                check_typed(v);
            }
        }
        match frame_stream(data) {
            Ok(Some(n)) => {
                assert!(n <= data.len());
                let _ = parse_stream_message(&data[..n]);
            }
            Ok(None) => {}
            Err(e) => assert!(!e.detail.is_empty()),
        }
        let mut f = StreamFramer::new();
        let mut buf: Vec<u8> = Vec::new();
        for chunk in data.chunks(7) {
            buf.extend_from_slice(chunk);
            loop {
                match f.poll(&buf) {
                    Ok(Some(StreamEvent::KeepAlive { len, .. })) => {
                        assert!(len > 0 && len <= buf.len());
                        buf.drain(..len);
                    }
                    Ok(Some(StreamEvent::Message { len })) => {
                        assert!(len > 0 && len <= buf.len());
                        let _ = parse_stream_message(&buf[..len]);
                        buf.drain(..len);
                    }
                    Ok(None) => break,
                    Err(_) => {
                        buf.clear();
                        break;
                    }
                }
            }
        }
        if let Ok(s) = std::str::from_utf8(data) {
            check_typed(s);
        }
    }

    /// Typed parsers: never panic, and Display -> parse is the identity.
    fn check_typed(s: &str) {
        if let Ok(v) = Via::parse(s) {
            assert_eq!(Via::parse(&v.to_string()), Ok(v.clone()), "{s:?}");
        }
        if let Ok(n) = NameAddr::parse(s) {
            assert_eq!(NameAddr::parse(&n.to_string()), Ok(n.clone()), "{s:?}");
        }
        if let Ok(u) = SipUri::parse(s) {
            assert_eq!(SipUri::parse(&u.to_string()), Ok(u.clone()), "{s:?}");
        }
        if let Ok(c) = CSeq::parse(s) {
            assert_eq!(CSeq::parse(&c.to_string()), Ok(c.clone()));
        }
        if let Ok(ContactList::Addrs(a)) = parse_contact_list(s) {
            for n in a {
                assert_eq!(NameAddr::parse(&n.to_string()), Ok(n.clone()));
            }
        }
        let _ = split_commas(s).count();
        let _ = unquote(s);
        let _ = unescape_uri(s);
    }

    #[test]
    fn mutation_fuzz_never_panics_and_round_trips() {
        const INTERESTING: &[u8] = b" \t\r\n:;,=\"<>\\@[]?&%/0123456789.aZ*\x00\x7f\xff\xc3";
        let seeds = samples();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let iterations = if cfg!(debug_assertions) {
            6_000
        } else {
            60_000
        };
        for _ in 0..iterations {
            let mut d = seeds[rng.below(seeds.len())].clone();
            for _ in 0..=rng.below(4) {
                let len = d.len();
                match rng.below(6) {
                    0 if len > 0 => {
                        let i = rng.below(len);
                        d[i] = INTERESTING[rng.below(INTERESTING.len())];
                    }
                    1 => {
                        let i = rng.below(len + 1);
                        d.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
                    }
                    2 if len > 0 => {
                        let i = rng.below(len);
                        let j = (i + 1 + rng.below(16)).min(len);
                        d.drain(i..j);
                    }
                    3 if len > 0 => {
                        let i = rng.below(len);
                        let j = (i + 1 + rng.below(32)).min(len);
                        let piece = d[i..j].to_vec();
                        let at = rng.below(d.len() + 1);
                        d.splice(at..at, piece);
                    }
                    4 => d.truncate(rng.below(len + 1)),
                    _ if len > 0 => {
                        let i = rng.below(len);
                        d[i] ^= 1 << rng.below(8);
                    }
                    _ => {}
                }
            }
            check_input(&d);
        }
        // hand-picked edge cases
        for d in [
            &b""[..],
            b"\r",
            b"\n",
            b"SIP/2.0",
            b"SIP/",
            b" SIP/2.0",
            b"A SIP/2.0\r\n\r\n",
            b"A  SIP/2.0\r\n\r\n",
            b"A b SIP/2.0\r\n\r\n",
            b"A sip:b SIP/2.0\r\n:\r\n\r\n",
            b"A sip:b SIP/2.0\r\nv: \r\n\r\n",
            b"A sip:b SIP/2.0\r\nm: \"\r\n\r\n",
            b"A sip:b SIP/2.0\r\nm: <\r\n\r\n",
            b"A sip:b SIP/2.0\r\nt: \"\\\r\n\r\n",
            b"SIP/2.0 200 \xff\r\n\r\n",
            b"A sip:b SIP/2.0\r\nl: 1\r\n\r\n",
            b"A sip:b SIP/2.0\r\nl: 0000000000000000000000001\r\n\r\nx",
        ] {
            check_input(d);
        }
    }

    #[test]
    fn pathological_inputs_are_fast() {
        let start = std::time::Instant::now();
        let big = |fill: &str| {
            let mut s = String::from("OPTIONS sip:a@b.example SIP/2.0\r\n");
            while s.len() < MAX_MESSAGE_SIZE - 200 {
                s.push_str(fill);
            }
            s.push_str("\r\n\r\n");
            s
        };
        let inputs = [
            big("Via: SIP/2.0/UDP h.example;branch=z9hG4bK1\r\n"),
            {
                let mut s = String::from("OPTIONS sip:a@b.example SIP/2.0\r\nVia: ");
                while s.len() < MAX_MESSAGE_SIZE - 100 {
                    s.push_str("SIP/2.0/UDP h,");
                }
                s.push_str("\r\n\r\n");
                s
            },
            {
                let mut s = String::from("OPTIONS sip:a@b.example SIP/2.0\r\nContact: ");
                while s.len() < MAX_MESSAGE_SIZE - 100 {
                    s.push_str("<sip:a@b>;x=\"<,>\",");
                }
                s.push_str("\r\n\r\n");
                s
            },
            {
                let mut s = String::from("OPTIONS sip:a@b.example SIP/2.0\r\nSubject: x");
                while s.len() < MAX_MESSAGE_SIZE - 100 {
                    s.push_str("\r\n y");
                }
                s.push_str("\r\n\r\n");
                s
            },
            {
                let mut s = String::from("OPTIONS sip:a@b.example SIP/2.0\r\nTo: ");
                while s.len() < MAX_MESSAGE_SIZE - 100 {
                    s.push_str("tok ");
                }
                s.push_str("\r\n\r\n");
                s
            },
            big("X: \"\\\"\\\"\\\"\\\"\\\"\\\"\"\r\n"),
        ];
        for input in &inputs {
            let _ = parse_datagram(input.as_bytes());
            let _ = frame_stream(input.as_bytes());
            let mut f = StreamFramer::new();
            for end in (1..input.len()).step_by(1) {
                if f.poll(&input.as_bytes()[..end]).is_err() {
                    break;
                }
            }
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "took {:?}",
            start.elapsed()
        );
    }
}
