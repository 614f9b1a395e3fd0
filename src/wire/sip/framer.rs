//! Cutting a stream transport's bytes into messages: incremental ([`StreamFramer`]) or
//! stateless ([`frame_stream`]).

use super::error::{snippet_bytes, ParseError};
use super::headers::parse_content_length;
use super::lex::{is_forbidden_ctl, is_ws, trim_ws_bytes};
use super::parse::{classify, first_line, for_kind, line_at, skip_keepalive, HeadScan, Kind};
use super::MAX_MESSAGE_SIZE;

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
    /// [`parse_stream_message`](super::parse_stream_message).
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
