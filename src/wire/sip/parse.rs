//! Parsing a message: the start line, the header section (unfolded; the headers this module
//! understands are syntax-checked, the single ones refused when repeated) and the body, framed
//! as a datagram or as one message cut from a stream.

use std::ops::Range;

use bytes::Bytes;

use super::error::{snippet, snippet_bytes, ParseError};
use super::headers::{
    check_header_value, full_header_name, parse_content_length, HeaderKind, Headers,
};
use super::lex::{is_forbidden_ctl, is_token, is_ws, starts_with_ci, trim_ws, trim_ws_bytes};
use super::method::Method;
use super::uri::parse_uri;
use super::{Request, Response, SipMessage, MAX_MESSAGE_SIZE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
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
pub(super) fn find_lf(hay: &[u8]) -> Option<usize> {
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
pub(super) fn line_at(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(from..)?;
    let nl = find_lf(rest)?;
    let content = rest.get(..nl)?;
    let content = content.strip_suffix(b"\r").unwrap_or(content);
    Some((content, from + nl + 1))
}

pub(super) fn first_line(buf: &[u8]) -> &[u8] {
    let end = find_lf(buf).unwrap_or(buf.len());
    let l = buf.get(..end).unwrap_or(buf);
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// Request if the last word of the first line is a `SIP/` version, response
/// if the line starts with one, anything else is not SIP.
pub(super) fn classify(line: &[u8]) -> Kind {
    if starts_with_ci(line, b"SIP/") {
        return Kind::Response;
    }
    let t = trim_ws_bytes(line);
    match t.iter().rposition(|&b| is_ws(b)) {
        Some(i) if starts_with_ci(t.get(i + 1..).unwrap_or(&[]), b"SIP/") => Kind::Request,
        _ => Kind::Garbage,
    }
}

pub(super) fn for_kind(e: ParseError, kind: Kind) -> ParseError {
    if kind == Kind::Request {
        e
    } else {
        e.with_status(None)
    }
}

/// Incremental search for the empty line ending the header section.
#[derive(Debug, Clone, Default)]
pub(super) struct HeadScan {
    pub(super) line_start: usize,
    pub(super) search_from: usize,
    pub(super) lines: usize,
}

impl HeadScan {
    /// `Some((head_end, body_start))`: the header lines occupy `..head_end`,
    /// the body starts at `body_start`.
    pub(super) fn scan(&mut self, buf: &[u8]) -> Option<(usize, usize)> {
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
        headers.push(p.name, p.value);
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

/// Parses one message framed by [`frame_stream`](super::frame_stream) / [`StreamFramer`](super::StreamFramer)
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
