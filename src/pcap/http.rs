//! HTTP/1.x message framing over reassembled TCP streams.
//!
//! [`HttpStreamParser`] reads one direction of a connection (requests or responses) from the
//! bytes a [`TcpReassembler`](super::tcp::TcpReassembler) delivers and yields
//! [`HttpEvent`]s: complete [`HttpMessage`]s naming the frames they came from, messages cut short
//! by a gap or the end of the stream, and errors naming the frame of the bad data. The message
//! head is parsed with `httparse`; bodies are framed by RFC 9112 section 6: `Transfer-Encoding:
//! chunked` (trailers kept), `Content-Length`, or for responses without either, the end of the
//! connection. Responses to HEAD and 1xx/204/304 responses have no body, so a response parser
//! must be told the method of each request: [`HttpConversation`] pairs the two directions of a
//! connection, requests and responses in order (pipelining included), and takes
//! [`TcpEvent`]s directly.
//!
//! After a gap or an error the parser drops the message in progress and resynchronises at the
//! next line that looks like a request line (`METHOD target HTTP/x.y`) or status line
//! (`HTTP/x.y NNN ...`). Bounds: header section [`HttpLimits::max_head`] (64 KiB), body
//! [`HttpLimits::max_body`] (16 MiB; the rest is counted, not kept, and the message marked
//! truncated), chunk-size and trailer lines [`HttpLimits::max_line`] (8 KiB).
//!
//! [`HttpMessage::form`] decodes `application/x-www-form-urlencoded` bodies (the EM API posts
//! `xml=...`).

use std::collections::VecDeque;

use super::tcp::{Direction, StreamBuffer, StreamChunk, TcpEvent};
use crate::wire::codec::form_pairs;

/// Bounds of one direction's parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest header section (start line, headers, empty line).
    pub max_head: usize,
    /// Largest body kept; longer bodies are consumed and marked truncated.
    pub max_body: usize,
    /// Longest chunk-size or trailer line.
    pub max_line: usize,
    /// Most header fields in one message.
    pub max_headers: usize,
}

/// 64 KiB head, 16 MiB body, 8 KiB lines, 256 header fields.
pub const DEFAULT_HTTP_LIMITS: HttpLimits = HttpLimits {
    max_head: 64 << 10,
    max_body: 16 << 20,
    max_line: 8 << 10,
    max_headers: 256,
};

impl Default for HttpLimits {
    fn default() -> Self {
        DEFAULT_HTTP_LIMITS
    }
}

/// Unanswered requests remembered per connection.
pub const MAX_PENDING_REQUESTS: usize = 1024;

/// Start line of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpKind {
    /// `version` is the minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    Request {
        method: String,
        target: String,
        version: u8,
    },
    Response {
        status: u16,
        reason: String,
        version: u8,
    },
}

/// One complete HTTP message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpMessage {
    pub kind: HttpKind,
    /// Header fields in order, names as received.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body after transfer decoding (de-chunked), at most [`HttpLimits::max_body`] bytes.
    pub body: Vec<u8>,
    /// Body length on the wire after decoding (larger than `body.len()` when truncated).
    pub body_len: u64,
    pub body_truncated: bool,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, Vec<u8>)>,
    /// Frame of the first byte of the start line.
    pub first_frame: u64,
    /// Frame of the last byte of the message (the frame tshark shows the message in).
    pub last_frame: u64,
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
    /// For a response paired by [`HttpConversation`] (or told with
    /// [`HttpStreamParser::expect_response`]): the `last_frame` of its request.
    pub request_frame: Option<u64>,
    /// Things that are not errors but worth reporting (e.g. both Transfer-Encoding and
    /// Content-Length, a response with no request seen, a truncated body).
    pub warnings: Vec<String>,
}

impl HttpMessage {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// First header named `name` as text (lossy).
    pub fn header_str(&self, name: &str) -> Option<String> {
        self.header(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The media type of Content-Type, lowercased, without parameters.
    pub fn media_type(&self) -> Option<String> {
        let v = self.header_str("content-type")?;
        let t = v
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        Some(t)
    }

    /// Status code of a response.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            HttpKind::Response { status, .. } => Some(*status),
            HttpKind::Request { .. } => None,
        }
    }

    /// Method of a request.
    pub fn method(&self) -> Option<&str> {
        match &self.kind {
            HttpKind::Request { method, .. } => Some(method),
            HttpKind::Response { .. } => None,
        }
    }

    /// The decoded pairs of an `application/x-www-form-urlencoded` body (None for other media
    /// types).
    pub fn form(&self) -> Option<Vec<(String, String)>> {
        (self.media_type().as_deref() == Some("application/x-www-form-urlencoded"))
            .then(|| form_pairs(&self.body))
    }
}

/// Malformed data in an HTTP stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("malformed message head: {0}")]
    BadHead(String),
    #[error("header section longer than {0} bytes")]
    HeadTooLarge(usize),
    #[error("invalid Content-Length {0:?}")]
    BadContentLength(String),
    #[error("Transfer-Encoding {0:?} on a request does not end in chunked")]
    BadTransferEncoding(String),
    #[error("malformed chunked body: {0}")]
    BadChunk(String),
}

/// Why a message was not completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Incomplete {
    /// Bytes of the stream are missing from the capture.
    Gap,
    /// The stream ended (FIN, RST or end of capture).
    End,
}

/// What a parser reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpEvent {
    Message(HttpMessage),
    /// A message (or the start of one) that could not be completed; it was dropped.
    Incomplete {
        reason: Incomplete,
        /// Start line, if it was read (lossy text).
        start_line: Option<String>,
        first_frame: u64,
        last_frame: u64,
    },
    /// Malformed data at `frame`; the parser skipped to the next start line.
    Error {
        frame: u64,
        error: HttpError,
    },
}

/// Which kind of messages a direction carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpRole {
    Requests,
    Responses,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyMode {
    Length(u64),
    Chunked(ChunkState),
    UntilClose,
}

#[derive(Clone, Debug)]
struct InProgress {
    msg: HttpMessage,
    mode: BodyMode,
    trailer_bytes: usize,
}

#[derive(Clone, Debug)]
enum State {
    Head,
    Body(Box<InProgress>),
    /// After CONNECT 2xx or 101: the rest is not HTTP.
    Tunnel,
}

/// Parses the messages of one direction of one connection.
#[derive(Clone, Debug)]
pub struct HttpStreamParser {
    role: HttpRole,
    limits: HttpLimits,
    buf: StreamBuffer,
    state: State,
    resync: bool,
    /// Bytes of the buffered head already searched for its end.
    head_scanned: usize,
    /// Responses: (method, request frame) of requests not yet answered.
    pending: VecDeque<(String, u64)>,
    events: VecDeque<HttpEvent>,
}

impl HttpStreamParser {
    pub fn new(role: HttpRole) -> Self {
        HttpStreamParser::with_limits(role, HttpLimits::default())
    }

    pub fn with_limits(role: HttpRole, limits: HttpLimits) -> Self {
        HttpStreamParser {
            role,
            limits,
            buf: StreamBuffer::new(),
            state: State::Head,
            resync: false,
            head_scanned: 0,
            pending: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Responses parser: the next unanswered request has `method` and ended in `request_frame`.
    /// At most [`MAX_PENDING_REQUESTS`] are remembered (the oldest are forgotten).
    pub fn expect_response(&mut self, method: &str, request_frame: u64) {
        if self.pending.len() >= MAX_PENDING_REQUESTS {
            self.pending.pop_front();
        }
        self.pending.push_back((method.to_string(), request_frame));
    }

    /// The next event, oldest first.
    pub fn poll(&mut self) -> Option<HttpEvent> {
        self.events.pop_front()
    }

    /// True once the stream stopped being HTTP (after 101 Switching Protocols or CONNECT 2xx).
    pub fn is_tunnel(&self) -> bool {
        matches!(self.state, State::Tunnel)
    }

    /// The rest of the stream is not HTTP: a message in progress is reported incomplete and
    /// later bytes are ignored.
    pub fn enter_tunnel(&mut self) {
        self.abandon(Incomplete::End, 0);
        self.state = State::Tunnel;
    }

    /// Adds in-order stream bytes that came from `frame`.
    pub fn push(&mut self, data: &[u8], frame: u64, ts_ns: u64) {
        self.buf.push(data, frame, ts_ns);
        self.run();
    }

    /// Adds a reassembled chunk (its direction is not checked).
    pub fn push_chunk(&mut self, chunk: &StreamChunk) {
        self.push(&chunk.data, chunk.last_frame, chunk.ts_ns);
    }

    /// Bytes are missing before the next ones: drops the message in progress and resynchronises.
    /// `frame` is the frame after the gap.
    pub fn gap(&mut self, frame: u64) {
        self.abandon(Incomplete::Gap, frame);
        if !matches!(self.state, State::Tunnel) {
            self.resync = true;
        }
    }

    /// The stream ended: a response read until the close is complete; anything else in progress
    /// is reported incomplete.
    pub fn end(&mut self, frame: u64) {
        if let State::Body(ip) = &self.state {
            if ip.mode == BodyMode::UntilClose {
                if let State::Body(ip) = std::mem::replace(&mut self.state, State::Head) {
                    self.complete(*ip);
                }
                return;
            }
        }
        self.abandon(Incomplete::End, frame);
    }

    fn abandon(&mut self, reason: Incomplete, _frame: u64) {
        let state = std::mem::replace(&mut self.state, State::Head);
        match state {
            State::Body(ip) => {
                let last = if self.buf.is_empty() {
                    ip.msg.last_frame
                } else {
                    self.buf.frame_at(self.buf.len()).0
                };
                self.events.push_back(HttpEvent::Incomplete {
                    reason,
                    start_line: Some(start_line_text(&ip.msg.kind)),
                    first_frame: ip.msg.first_frame,
                    last_frame: last.max(ip.msg.last_frame),
                });
            }
            State::Tunnel => self.state = State::Tunnel,
            State::Head => {
                let rest = self.buf.bytes();
                let k = leading_crlf(rest);
                if k < rest.len() {
                    let first = self.buf.frame_at(k).0;
                    let last = self.buf.frame_at(rest.len()).0;
                    let line = rest.get(k..).unwrap_or(&[]);
                    let line = line.split(|&b| b == b'\n').next().unwrap_or(&[]);
                    let plausible = looks_like_start_line(line, self.role);
                    if !self.resync || plausible {
                        self.events.push_back(HttpEvent::Incomplete {
                            reason,
                            start_line: plausible
                                .then(|| String::from_utf8_lossy(trim_cr(line)).into_owned()),
                            first_frame: first,
                            last_frame: last,
                        });
                    }
                }
            }
        }
        self.buf.clear();
        self.head_scanned = 0;
    }

    fn error(&mut self, at: usize, error: HttpError) {
        let frame = self.buf.frame_at(at).0;
        self.events.push_back(HttpEvent::Error { frame, error });
        self.resync = true;
    }

    fn run(&mut self) {
        loop {
            let progressed = match std::mem::replace(&mut self.state, State::Head) {
                State::Tunnel => {
                    self.buf.clear();
                    self.state = State::Tunnel;
                    false
                }
                State::Head => self.head(),
                State::Body(ip) => self.body(ip),
            };
            if !progressed {
                return;
            }
        }
    }

    /// Reads a message head. True if something was consumed and the loop should go on.
    fn head(&mut self) -> bool {
        let k = leading_crlf(self.buf.bytes());
        if k > 0 {
            self.buf.consume(k);
            self.head_scanned = 0;
        }
        if self.buf.is_empty() {
            return false;
        }
        if self.resync {
            match find_start_line(self.buf.bytes(), self.role, self.limits.max_line) {
                Some(pos) => {
                    self.buf.consume(pos);
                    self.resync = false;
                    self.head_scanned = 0;
                }
                None => {
                    // Keep only the last partial line, and not even that if it is too long.
                    let bytes = self.buf.bytes();
                    let keep_from = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
                    let drop = if bytes.len() - keep_from > self.limits.max_line {
                        bytes.len()
                    } else {
                        keep_from
                    };
                    self.buf.consume(drop);
                    return false;
                }
            }
        }
        // Parse only once the empty line ending the head is there (or the bound is passed), and
        // look for it only in bytes not scanned before: trickled heads cost linear time.
        let bytes = self.buf.bytes();
        let tail = bytes
            .get(self.head_scanned.saturating_sub(2)..)
            .unwrap_or(&[]);
        let ended =
            tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n");
        if !ended && bytes.len() <= self.limits.max_head {
            self.head_scanned = bytes.len();
            return false;
        }
        self.head_scanned = 0;
        let mut headers = vec![httparse::EMPTY_HEADER; self.limits.max_headers];
        let parsed = match self.role {
            HttpRole::Requests => {
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(bytes) {
                    Ok(httparse::Status::Complete(n)) => Ok(Some((
                        n,
                        HttpKind::Request {
                            method: req.method.unwrap_or("").to_string(),
                            target: req.path.unwrap_or("").to_string(),
                            version: req.version.unwrap_or(1),
                        },
                        copy_headers(req.headers),
                    ))),
                    Ok(httparse::Status::Partial) => Ok(None),
                    Err(e) => Err(e),
                }
            }
            HttpRole::Responses => {
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(bytes) {
                    Ok(httparse::Status::Complete(n)) => Ok(Some((
                        n,
                        HttpKind::Response {
                            status: resp.code.unwrap_or(0),
                            reason: resp.reason.unwrap_or("").to_string(),
                            version: resp.version.unwrap_or(1),
                        },
                        copy_headers(resp.headers),
                    ))),
                    Ok(httparse::Status::Partial) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        };
        match parsed {
            Ok(None) => {
                if self.buf.len() > self.limits.max_head {
                    self.error(0, HttpError::HeadTooLarge(self.limits.max_head));
                    self.skip_line();
                    return true;
                }
                false
            }
            Err(e) => {
                self.error(0, HttpError::BadHead(e.to_string()));
                self.skip_line();
                true
            }
            Ok(Some((n, kind, headers))) => {
                if n > self.limits.max_head {
                    self.error(0, HttpError::HeadTooLarge(self.limits.max_head));
                    self.skip_line();
                    return true;
                }
                let (first_frame, first_ts_ns) = self.buf.frame_at(0);
                let (last_frame, last_ts_ns) = self.buf.frame_at(n.saturating_sub(1));
                let msg = HttpMessage {
                    kind,
                    headers,
                    body: Vec::new(),
                    body_len: 0,
                    body_truncated: false,
                    trailers: Vec::new(),
                    first_frame,
                    last_frame,
                    first_ts_ns,
                    last_ts_ns,
                    request_frame: None,
                    warnings: Vec::new(),
                };
                match self.body_mode(msg) {
                    Ok((msg, mode, tunnel)) => {
                        self.buf.consume(n);
                        match mode {
                            None => {
                                self.events.push_back(HttpEvent::Message(msg));
                                if tunnel {
                                    self.state = State::Tunnel;
                                }
                            }
                            Some(mode) => {
                                self.state = State::Body(Box::new(InProgress {
                                    msg,
                                    mode,
                                    trailer_bytes: 0,
                                }))
                            }
                        }
                    }
                    Err(e) => {
                        self.error(0, e);
                        self.buf.consume(n);
                    }
                }
                true
            }
        }
    }

    /// Drops the first line (or everything, if there is no line end) after an error.
    fn skip_line(&mut self) {
        let bytes = self.buf.bytes();
        let n = bytes
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |p| p + 1);
        self.buf.consume(n.max(1));
    }

    /// How the body of `msg` is delimited (`None`: no body); true if a tunnel follows.
    #[allow(clippy::type_complexity)]
    fn body_mode(
        &mut self,
        mut msg: HttpMessage,
    ) -> Result<(HttpMessage, Option<BodyMode>, bool), HttpError> {
        let te = joined(&msg.headers, "transfer-encoding");
        let cl = content_length(&msg.headers)?;
        let chunked = te.as_deref().map(|t| {
            t.rsplit(',')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("chunked")
        });
        if te.is_some() && cl.is_some() {
            msg.warnings
                .push("both Transfer-Encoding and Content-Length: Content-Length ignored".into());
        }
        match &msg.kind {
            HttpKind::Request { .. } => {
                let mode = match (chunked, te, cl) {
                    (Some(true), _, _) => Some(BodyMode::Chunked(ChunkState::Size)),
                    (Some(false), Some(te), _) => return Err(HttpError::BadTransferEncoding(te)),
                    (_, _, Some(0)) | (_, _, None) => None,
                    (_, _, Some(n)) => Some(BodyMode::Length(n)),
                };
                Ok((msg, mode, false))
            }
            HttpKind::Response { status, .. } => {
                let status = *status;
                let informational = (100..200).contains(&status) && status != 101;
                let method = if informational {
                    self.pending.front().cloned()
                } else {
                    self.pending.pop_front()
                };
                match &method {
                    Some((_, frame)) => msg.request_frame = Some(*frame),
                    None => msg
                        .warnings
                        .push("response without a request seen before it".into()),
                }
                let method = method.map(|m| m.0).unwrap_or_default();
                if status == 101 || (method == "CONNECT" && (200..300).contains(&status)) {
                    return Ok((msg, None, true));
                }
                if method == "HEAD" || informational || status == 204 || status == 304 {
                    return Ok((msg, None, false));
                }
                let mode = match (chunked, cl) {
                    (Some(true), _) => BodyMode::Chunked(ChunkState::Size),
                    (Some(false), _) => BodyMode::UntilClose,
                    (None, Some(0)) => return Ok((msg, None, false)),
                    (None, Some(n)) => BodyMode::Length(n),
                    (None, None) => BodyMode::UntilClose,
                };
                Ok((msg, Some(mode), false))
            }
        }
    }

    fn add_body(&mut self, ip: &mut InProgress, n: usize) {
        let bytes = self.buf.bytes().get(..n).unwrap_or(&[]);
        if n == 0 {
            return;
        }
        let (frame, ts) = self.buf.frame_at(n - 1);
        ip.msg.last_frame = frame;
        ip.msg.last_ts_ns = ts;
        ip.msg.body_len += n as u64;
        let room = self.limits.max_body.saturating_sub(ip.msg.body.len());
        ip.msg
            .body
            .extend_from_slice(bytes.get(..room.min(n)).unwrap_or(&[]));
        if n > room {
            ip.msg.body_truncated = true;
        }
        self.buf.consume(n);
    }

    /// Marks the last `n` consumed-to-be bytes as part of the message (framing bytes).
    fn add_framing(&mut self, ip: &mut InProgress, n: usize) {
        if n > 0 {
            let (frame, ts) = self.buf.frame_at(n - 1);
            ip.msg.last_frame = frame;
            ip.msg.last_ts_ns = ts;
            self.buf.consume(n);
        }
    }

    fn complete(&mut self, mut ip: InProgress) {
        if ip.msg.body_truncated {
            ip.msg.warnings.push(format!(
                "body of {} bytes truncated to {}",
                ip.msg.body_len,
                ip.msg.body.len()
            ));
        }
        self.events.push_back(HttpEvent::Message(ip.msg));
    }

    /// Reads body bytes. True if the message completed (the loop goes on).
    fn body(&mut self, mut ip: Box<InProgress>) -> bool {
        loop {
            match ip.mode {
                BodyMode::UntilClose => {
                    let n = self.buf.len();
                    self.add_body(&mut ip, n);
                    self.state = State::Body(ip);
                    return false;
                }
                BodyMode::Length(rem) => {
                    let n = (self.buf.len() as u64).min(rem) as usize;
                    self.add_body(&mut ip, n);
                    let rem = rem - n as u64;
                    if rem == 0 {
                        self.complete(*ip);
                        return true;
                    }
                    ip.mode = BodyMode::Length(rem);
                    self.state = State::Body(ip);
                    return false;
                }
                BodyMode::Chunked(ChunkState::Data(rem)) => {
                    let n = (self.buf.len() as u64).min(rem) as usize;
                    self.add_body(&mut ip, n);
                    let rem = rem - n as u64;
                    if rem > 0 {
                        ip.mode = BodyMode::Chunked(ChunkState::Data(rem));
                        self.state = State::Body(ip);
                        return false;
                    }
                    ip.mode = BodyMode::Chunked(ChunkState::DataEnd);
                }
                BodyMode::Chunked(ChunkState::DataEnd) => {
                    let bytes = self.buf.bytes();
                    let n = match bytes {
                        [b'\r', b'\n', ..] => 2,
                        [b'\n', ..] => 1,
                        [] | [b'\r'] => {
                            self.state = State::Body(ip);
                            return false;
                        }
                        _ => {
                            self.error(
                                0,
                                HttpError::BadChunk("chunk data not followed by CRLF".into()),
                            );
                            return true;
                        }
                    };
                    self.add_framing(&mut ip, n);
                    ip.mode = BodyMode::Chunked(ChunkState::Size);
                }
                BodyMode::Chunked(state @ (ChunkState::Size | ChunkState::Trailers)) => {
                    let bytes = self.buf.bytes();
                    let lf = bytes.iter().position(|&b| b == b'\n');
                    if lf.map_or(bytes.len(), |p| p + 1) > self.limits.max_line {
                        self.error(0, HttpError::BadChunk("line too long".into()));
                        self.skip_line();
                        return true;
                    }
                    let Some(lf) = lf else {
                        self.state = State::Body(ip);
                        return false;
                    };
                    let line = trim_cr(bytes.get(..lf).unwrap_or(&[]));
                    if state == ChunkState::Size {
                        match parse_chunk_size(line) {
                            Ok(0) => ip.mode = BodyMode::Chunked(ChunkState::Trailers),
                            Ok(size) => ip.mode = BodyMode::Chunked(ChunkState::Data(size)),
                            Err(e) => {
                                self.error(0, HttpError::BadChunk(e));
                                return true;
                            }
                        }
                        self.add_framing(&mut ip, lf + 1);
                    } else if line.is_empty() {
                        self.add_framing(&mut ip, lf + 1);
                        self.complete(*ip);
                        return true;
                    } else {
                        ip.trailer_bytes += lf + 1;
                        let field = match parse_field(line) {
                            Some(f) if ip.trailer_bytes <= self.limits.max_head => f,
                            _ => {
                                self.error(
                                    0,
                                    HttpError::BadChunk("malformed trailer field".into()),
                                );
                                return true;
                            }
                        };
                        ip.msg.trailers.push(field);
                        self.add_framing(&mut ip, lf + 1);
                    }
                }
            }
        }
    }
}

fn tchar(b: &u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b)
}

fn copy_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect()
}

fn start_line_text(kind: &HttpKind) -> String {
    match kind {
        HttpKind::Request {
            method,
            target,
            version,
        } => format!("{method} {target} HTTP/1.{version}"),
        HttpKind::Response {
            status,
            reason,
            version,
        } => format!("HTTP/1.{version} {status} {reason}"),
    }
}

fn leading_crlf(b: &[u8]) -> usize {
    b.iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .unwrap_or(b.len())
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// All values of header `name` joined by ", " (None if absent).
fn joined(headers: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    let vals: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| String::from_utf8_lossy(v).trim().to_string())
        .collect();
    (!vals.is_empty()).then(|| vals.join(", "))
}

/// The Content-Length: every value (and list element) must be the same decimal number.
fn content_length(headers: &[(String, Vec<u8>)]) -> Result<Option<u64>, HttpError> {
    let Some(all) = joined(headers, "content-length") else {
        return Ok(None);
    };
    let mut found: Option<u64> = None;
    for part in all.split(',') {
        let p = part.trim();
        let n = if !p.is_empty() && p.len() <= 19 && p.bytes().all(|b| b.is_ascii_digit()) {
            p.parse::<u64>().ok()
        } else {
            None
        };
        match (n, found) {
            (None, _) => return Err(HttpError::BadContentLength(all)),
            (Some(n), Some(f)) if n != f => return Err(HttpError::BadContentLength(all)),
            (Some(n), _) => found = Some(n),
        }
    }
    Ok(found)
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, String> {
    let hex_len = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let rest = line.get(hex_len..).unwrap_or(&[]);
    let rest_ok = rest.is_empty()
        || rest
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .is_none_or(|p| rest.get(p) == Some(&b';'));
    if hex_len == 0 || hex_len > 15 || !rest_ok {
        return Err(format!(
            "invalid chunk size line {:?}",
            String::from_utf8_lossy(line.get(..line.len().min(40)).unwrap_or(&[]))
        ));
    }
    let digits = std::str::from_utf8(line.get(..hex_len).unwrap_or(&[])).unwrap_or("0");
    u64::from_str_radix(digits, 16).map_err(|e| e.to_string())
}

fn parse_field(line: &[u8]) -> Option<(String, Vec<u8>)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = line.get(..colon)?;
    if name.is_empty() || !name.iter().all(tchar) {
        return None;
    }
    let value = line.get(colon + 1..)?;
    let value = value.trim_ascii();
    Some((String::from_utf8_lossy(name).into_owned(), value.to_vec()))
}

/// True if `line` (without its LF) looks like the start of a message of `role`.
fn looks_like_start_line(line: &[u8], role: HttpRole) -> bool {
    let line = trim_cr(line);
    let version = |v: &[u8]| match v {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor] => {
            major.is_ascii_digit() && minor.is_ascii_digit()
        }
        _ => false,
    };
    match role {
        HttpRole::Responses => {
            let mut parts = line.splitn(3, |&b| b == b' ');
            let v = parts.next().unwrap_or(&[]);
            let code = parts.next().unwrap_or(&[]);
            version(v) && code.len() == 3 && code.iter().all(|b| b.is_ascii_digit())
        }
        HttpRole::Requests => {
            let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
            parts.len() == 3
                && parts
                    .first()
                    .is_some_and(|m| !m.is_empty() && m.iter().all(tchar))
                && parts.get(1).is_some_and(|t| !t.is_empty())
                && parts.get(2).is_some_and(|v| version(v))
        }
    }
}

/// Position of the first complete line of `buf` that looks like a start line (lines longer
/// than `max_line` never do, so that the answer does not depend on how the bytes arrived).
fn find_start_line(buf: &[u8], role: HttpRole, max_line: usize) -> Option<usize> {
    let mut pos = 0;
    while pos < buf.len() {
        let rest = buf.get(pos..).unwrap_or(&[]);
        let lf = rest.iter().position(|&b| b == b'\n')?;
        if lf <= max_line && looks_like_start_line(rest.get(..lf).unwrap_or(&[]), role) {
            return Some(pos);
        }
        pos += lf + 1;
    }
    None
}

/// Both directions of one HTTP connection: requests from the client, responses from the server,
/// paired in order (pipelining included) so each response knows its request's method.
///
/// After a gap in either direction the pairing may be off by the lost messages (only HEAD
/// responses depend on it for framing; `request_frame` may then name the wrong request).
#[derive(Clone, Debug)]
pub struct HttpConversation {
    client: Direction,
    requests: HttpStreamParser,
    responses: HttpStreamParser,
    events: VecDeque<(Direction, HttpEvent)>,
}

impl HttpConversation {
    /// `client` is the direction that carries requests.
    pub fn new(client: Direction) -> Self {
        HttpConversation::with_limits(client, HttpLimits::default())
    }

    pub fn with_limits(client: Direction, limits: HttpLimits) -> Self {
        HttpConversation {
            client,
            requests: HttpStreamParser::with_limits(HttpRole::Requests, limits),
            responses: HttpStreamParser::with_limits(HttpRole::Responses, limits),
            events: VecDeque::new(),
        }
    }

    /// The direction that carries requests.
    pub fn client(&self) -> Direction {
        self.client
    }

    /// Which direction is the client, judging by the first bytes `first` seen in direction
    /// `dir`: a request line start (`TOKEN SP`) means `dir`, `HTTP/` means the other one,
    /// anything else None (not HTTP, or not at a message boundary).
    pub fn client_from_first_bytes(dir: Direction, first: &[u8]) -> Option<Direction> {
        let first = first.get(leading_crlf(first)..).unwrap_or(&[]);
        if first.starts_with(b"HTTP/") {
            return Some(dir.opposite());
        }
        let method_len = first.iter().take_while(|b| tchar(b)).count();
        (method_len > 0 && first.get(method_len) == Some(&b' ')).then_some(dir)
    }

    /// The next event with the direction it belongs to, oldest first.
    pub fn poll(&mut self) -> Option<(Direction, HttpEvent)> {
        self.events.pop_front()
    }

    /// Feeds one reassembler event (data, gap, FIN, RST; others are ignored).
    pub fn on_tcp_event(&mut self, ev: &TcpEvent) {
        match ev {
            TcpEvent::Data(c) => self.push(c.dir, &c.data, c.last_frame, c.ts_ns),
            TcpEvent::Gap(g) => self.gap(g.dir, g.before_frame),
            TcpEvent::Fin { dir, frame, .. } => self.end(*dir, *frame),
            TcpEvent::Rst { frame, .. } => self.finish(*frame),
            TcpEvent::Handshake { .. } | TcpEvent::OverlapConflict { .. } => {}
        }
    }

    pub fn push(&mut self, dir: Direction, data: &[u8], frame: u64, ts_ns: u64) {
        self.parser(dir).push(data, frame, ts_ns);
        self.collect(dir);
    }

    pub fn gap(&mut self, dir: Direction, frame: u64) {
        self.parser(dir).gap(frame);
        self.collect(dir);
    }

    /// One direction ended (FIN).
    pub fn end(&mut self, dir: Direction, frame: u64) {
        self.parser(dir).end(frame);
        self.collect(dir);
    }

    /// The connection ended (RST or end of capture).
    pub fn finish(&mut self, frame: u64) {
        self.end(self.client, frame);
        self.end(self.client.opposite(), frame);
    }

    fn parser(&mut self, dir: Direction) -> &mut HttpStreamParser {
        if dir == self.client {
            &mut self.requests
        } else {
            &mut self.responses
        }
    }

    fn collect(&mut self, dir: Direction) {
        while let Some(ev) = self.parser(dir).poll() {
            if dir == self.client {
                if let HttpEvent::Message(m) = &ev {
                    if let HttpKind::Request { method, .. } = &m.kind {
                        self.responses.expect_response(method, m.last_frame);
                    }
                }
            }
            self.events.push_back((dir, ev));
        }
        // 101 Switching Protocols or CONNECT 2xx: the client side is no longer HTTP either.
        if dir != self.client && self.responses.is_tunnel() && !self.requests.is_tunnel() {
            self.requests.enter_tunnel();
            while let Some(ev) = self.requests.poll() {
                self.events.push_back((self.client, ev));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Forward as C, Reverse as S};

    fn drain(p: &mut HttpStreamParser) -> Vec<HttpEvent> {
        std::iter::from_fn(|| p.poll()).collect()
    }

    fn messages(evs: &[HttpEvent]) -> Vec<&HttpMessage> {
        evs.iter()
            .filter_map(|e| match e {
                HttpEvent::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    fn conv_drain(c: &mut HttpConversation) -> Vec<(Direction, HttpEvent)> {
        std::iter::from_fn(|| c.poll()).collect()
    }

    #[test]
    fn request_with_content_length_split_over_frames() {
        let mut p = HttpStreamParser::new(HttpRole::Requests);
        p.push(
            b"POST /emservice/EMServiceServlet HTTP/1.1\r\nHost: ucm\r\n",
            3,
            30,
        );
        p.push(
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 9\r\n\r\nxml=",
            4,
            40,
        );
        assert!(drain(&mut p).is_empty());
        p.push(b"<a/>!", 6, 60);
        let evs = drain(&mut p);
        let m = messages(&evs);
        assert_eq!(m.len(), 1);
        let m = m[0];
        assert_eq!(
            m.kind,
            HttpKind::Request {
                method: "POST".into(),
                target: "/emservice/EMServiceServlet".into(),
                version: 1
            }
        );
        assert_eq!((m.first_frame, m.last_frame), (3, 6));
        assert_eq!((m.first_ts_ns, m.last_ts_ns), (30, 60));
        assert_eq!(m.body, b"xml=<a/>!");
        assert_eq!(m.header("content-length"), Some(&b"9"[..]));
        assert_eq!(
            m.media_type().as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(form_pairs(&m.body), vec![("xml".into(), "<a/>!".into())]);
    }

    #[test]
    fn request_without_body_and_pipelined_requests_in_one_frame() {
        let mut p = HttpStreamParser::new(HttpRole::Requests);
        p.push(
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.0\r\n\r\nHEAD /c HTTP/1.1\r\n\r\n",
            1,
            0,
        );
        let evs = drain(&mut p);
        let m = messages(&evs);
        let targets: Vec<_> = m
            .iter()
            .map(|m| match &m.kind {
                HttpKind::Request {
                    target, version, ..
                } => (target.as_str(), *version),
                _ => panic!(),
            })
            .collect();
        assert_eq!(targets, vec![("/a", 1), ("/b", 0), ("/c", 1)]);
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let mut p = HttpStreamParser::new(HttpRole::Responses);
        p.expect_response("GET", 1);
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n6 \r\n world\r\n0\r\nX-Checksum: abc\r\nX-More:  d \r\n\r\n";
        // Byte by byte: every state must cope with partial input.
        for (i, b) in wire.iter().enumerate() {
            p.push(&[*b], 10 + i as u64, 0);
        }
        let evs = drain(&mut p);
        assert_eq!(evs.len(), 1, "{evs:?}");
        let m = messages(&evs)[0];
        assert_eq!(m.body, b"hello world");
        assert_eq!(
            m.trailers,
            vec![
                ("X-Checksum".to_string(), b"abc".to_vec()),
                ("X-More".to_string(), b"d".to_vec())
            ]
        );
        assert_eq!(m.last_frame, 10 + wire.len() as u64 - 1);
        assert_eq!(m.request_frame, Some(1));
    }

    #[test]
    fn chunked_request_body() {
        let mut p = HttpStreamParser::new(HttpRole::Requests);
        p.push(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            1,
            0,
        );
        let evs = drain(&mut p);
        assert_eq!(messages(&evs)[0].body, b"abc");
    }

    #[test]
    fn bad_chunk_is_an_error_and_parser_resyncs() {
        let mut p = HttpStreamParser::new(HttpRole::Requests);
        p.push(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            1,
            0,
        );
        p.push(b"junk\r\nGET /next HTTP/1.1\r\n\r\n", 2, 0);
        let evs = drain(&mut p);
        assert!(matches!(
            evs[0],
            HttpEvent::Error {
                frame: 1,
                error: HttpError::BadChunk(_)
            }
        ));
        assert_eq!(messages(&evs).len(), 1);
        assert_eq!(messages(&evs)[0].method(), Some("GET"));
    }

    #[test]
    fn response_until_close() {
        let mut p = HttpStreamParser::new(HttpRole::Responses);
        p.expect_response("GET", 1);
        p.push(
            b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n\r\n<Ciscp",
            2,
            0,
        );
        p.push(b"IPPhoneText/>", 3, 0);
        assert!(drain(&mut p).is_empty());
        p.end(4);
        let evs = drain(&mut p);
        let m = messages(&evs)[0];
        assert_eq!(m.body, b"<CiscpIPPhoneText/>");
        assert_eq!((m.first_frame, m.last_frame), (2, 3));
    }

    #[test]
    fn bodiless_responses_head_1xx_204_304() {
        let mut c = HttpConversation::new(C);
        c.push(
            C,
            b"HEAD /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\nPOST /d HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            1,
            0,
        );
        c.push(
            S,
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n\
              HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n\
              HTTP/1.1 204 No Content\r\n\r\n\
              HTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            2,
            0,
        );
        let evs = conv_drain(&mut c);
        let statuses: Vec<_> = evs
            .iter()
            .filter_map(|(d, e)| match e {
                HttpEvent::Message(m) if *d == S => Some((m.status(), m.body.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            statuses,
            vec![
                (Some(200), vec![]),
                (Some(304), vec![]),
                (Some(204), vec![]),
                (Some(100), vec![]),
                (Some(200), b"ok".to_vec()),
            ]
        );
        assert_eq!(evs.len(), 9);
    }

    #[test]
    fn pipelined_responses_are_paired_in_order() {
        let mut c = HttpConversation::new(S);
        c.push(S, b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n", 5, 0);
        c.push(S, b"GET /3 HTTP/1.1\r\n\r\n", 6, 0);
        c.push(
            C,
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nb",
            7,
            0,
        );
        c.push(C, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc", 8, 0);
        let pairs: Vec<_> = conv_drain(&mut c)
            .into_iter()
            .filter_map(|(_, e)| match e {
                HttpEvent::Message(m) if m.status().is_some() => {
                    Some((m.status(), m.request_frame))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            pairs,
            vec![
                (Some(200), Some(5)),
                (Some(404), Some(5)),
                (Some(200), Some(6))
            ]
        );
    }

    #[test]
    fn gap_drops_message_and_resyncs_at_next_start_line() {
        let mut p = HttpStreamParser::new(HttpRole::Requests);
        p.push(b"POST /x HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc", 1, 0);
        p.gap(3);
        // Rest of the lost body, then the next request.
        p.push(
            b"tail of the body\r\nmore\r\nPOST /y HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
            3,
            0,
        );
        let evs = drain(&mut p);
        assert_eq!(
            evs[0],
            HttpEvent::Incomplete {
                reason: Incomplete::Gap,
                start_line: Some("POST /x HTTP/1.1".into()),
                first_frame: 1,
                last_frame: 1
            }
        );
        let m = messages(&evs);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].body, b"hi");
        assert_eq!(evs.len(), 2);
    }

    #[test]
    fn gap_in_a_partial_head_is_incomplete() {
        let mut p = HttpStreamParser::new(HttpRole::Responses);
        p.push(b"HTTP/1.1 200 OK\r\nContent-Le", 4, 0);
        p.gap(6);
        p.end(7);
        let evs = drain(&mut p);
        assert_eq!(
            evs,
            vec![HttpEvent::Incomplete {
                reason: Incomplete::Gap,
                start_line: Some("HTTP/1.1 200 OK".into()),
                first_frame: 4,
                last_frame: 4
            }]
        );
    }

    #[test]
    fn end_in_the_middle_of_a_body_is_incomplete() {
        let mut p = HttpStreamParser::new(HttpRole::Requests);
        p.push(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345", 1, 0);
        p.push(b"6", 2, 0);
        p.end(3);
        let evs = drain(&mut p);
        assert!(matches!(
            evs[..],
            [HttpEvent::Incomplete {
                reason: Incomplete::End,
                first_frame: 1,
                last_frame: 2,
                ..
            }]
        ));
    }

    #[test]
    fn malformed_head_is_reported_with_its_frame() {
        let mut p = HttpStreamParser::new(HttpRole::Requests);
        p.push(b"GET / HTTP/1.1\r\n\r\n", 1, 0);
        p.push(b"\x00\x01garbage line\r\nBAD HEADER LINE\r\n", 2, 0);
        p.push(b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\n", 3, 0);
        let evs = drain(&mut p);
        assert_eq!(messages(&evs).len(), 2);
        assert!(evs.iter().any(|e| matches!(
            e,
            HttpEvent::Error {
                frame: 2,
                error: HttpError::BadHead(_)
            }
        )));
    }

    #[test]
    fn invalid_and_conflicting_content_length() {
        for cl in ["abc", "1, 2", "-1", "99999999999999999999"] {
            let mut p = HttpStreamParser::new(HttpRole::Requests);
            p.push(
                format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\nGET / HTTP/1.1\r\n\r\n")
                    .as_bytes(),
                1,
                0,
            );
            let evs = drain(&mut p);
            assert!(
                matches!(
                    evs[0],
                    HttpEvent::Error {
                        error: HttpError::BadContentLength(_),
                        ..
                    }
                ),
                "{cl}: {evs:?}"
            );
            assert_eq!(messages(&evs).len(), 1, "{cl}");
        }
        // Repeated equal values are accepted.
        let mut p = HttpStreamParser::new(HttpRole::Requests);
        p.push(
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nab",
            1,
            0,
        );
        assert_eq!(messages(&drain(&mut p))[0].body, b"ab");
    }

    #[test]
    fn head_and_body_bounds() {
        let limits = HttpLimits {
            max_head: 64,
            max_body: 4,
            ..HttpLimits::default()
        };
        let mut p = HttpStreamParser::with_limits(HttpRole::Requests, limits);
        p.push(
            b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789",
            1,
            0,
        );
        let evs = drain(&mut p);
        let m = messages(&evs)[0];
        assert_eq!(
            (m.body.as_slice(), m.body_len, m.body_truncated),
            (&b"0123"[..], 10, true)
        );
        assert_eq!(m.warnings.len(), 1);

        let mut p = HttpStreamParser::with_limits(HttpRole::Requests, limits);
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(100));
        p.push(long.as_bytes(), 1, 0);
        p.push(b"\r\nGET /after HTTP/1.1\r\n\r\n", 2, 0);
        let evs = drain(&mut p);
        assert!(matches!(
            evs[0],
            HttpEvent::Error {
                error: HttpError::HeadTooLarge(64),
                ..
            }
        ));
        assert_eq!(
            messages(&evs)[0].kind,
            HttpKind::Request {
                method: "GET".into(),
                target: "/after".into(),
                version: 1
            }
        );
    }

    #[test]
    fn response_without_request_and_te_with_cl_warn() {
        let mut p = HttpStreamParser::new(HttpRole::Responses);
        p.push(
            b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
            1,
            0,
        );
        let evs = drain(&mut p);
        let m = messages(&evs)[0];
        assert_eq!(m.body, b"x");
        assert_eq!(m.warnings.len(), 2, "{:?}", m.warnings);
        assert_eq!(m.request_frame, None);
    }

    #[test]
    fn conversation_from_tcp_events_with_fin() {
        use crate::pcap::tcp::{TcpFlags, TcpReassembler, TcpSegment};
        let mut r = TcpReassembler::default();
        let mut c = HttpConversation::new(C);
        type Seg<'a> = (Direction, u64, u32, u32, TcpFlags, &'a [u8]);
        let segs: [Seg<'_>; 5] = [
            (C, 1, 0, 0, TcpFlags::SYN, b""),
            (S, 2, 0, 1, TcpFlags::SYN | TcpFlags::ACK, b""),
            (C, 3, 1, 1, TcpFlags::ACK, b"GET /services HTTP/1.0\r\n\r\n"),
            (
                S,
                4,
                1,
                27,
                TcpFlags::ACK,
                b"HTTP/1.0 200 OK\r\n\r\n<CiscoIPPhoneMenu/>",
            ),
            (S, 5, 39, 27, TcpFlags::ACK | TcpFlags::FIN, b""),
        ];
        for (dir, frame, seq, ack, flags, payload) in segs {
            r.push(
                dir,
                TcpSegment {
                    frame,
                    ts_ns: 0,
                    seq,
                    ack,
                    flags,
                    payload,
                },
            );
            for ev in r.drain() {
                c.on_tcp_event(&ev);
            }
        }
        let evs = conv_drain(&mut c);
        assert_eq!(evs.len(), 2, "{evs:?}");
        match &evs[1] {
            (S, HttpEvent::Message(m)) => {
                assert_eq!(m.body, b"<CiscoIPPhoneMenu/>");
                assert_eq!(
                    (m.first_frame, m.last_frame, m.request_frame),
                    (4, 4, Some(3))
                );
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn tunnel_after_connect_and_upgrade() {
        let mut c = HttpConversation::new(C);
        c.push(C, b"CONNECT h:443 HTTP/1.1\r\n\r\n", 1, 0);
        c.push(
            S,
            b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x01binary",
            2,
            0,
        );
        c.push(S, b"HTTP/1.1 200 OK\r\n\r\n", 3, 0);
        let evs = conv_drain(&mut c);
        assert_eq!(evs.len(), 2, "{evs:?}");
    }

    #[test]
    fn upgrade_turns_both_directions_into_a_tunnel() {
        let mut c = HttpConversation::new(C);
        c.push(C, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", 1, 0);
        c.push(
            S,
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x05hello",
            2,
            0,
        );
        c.push(C, b"\x81\x85GET / HTTP/1.1\r\n\r\n", 3, 0);
        let evs = conv_drain(&mut c);
        assert_eq!(evs.len(), 2, "{evs:?}");
    }

    #[test]
    fn client_direction_from_first_bytes() {
        assert_eq!(
            HttpConversation::client_from_first_bytes(S, b"POST /x HTTP/1.1"),
            Some(S)
        );
        assert_eq!(
            HttpConversation::client_from_first_bytes(S, b"\r\nHTTP/1.1 200"),
            Some(C)
        );
        assert_eq!(
            HttpConversation::client_from_first_bytes(C, b"\x16\x03\x01"),
            None
        );
        assert_eq!(HttpConversation::client_from_first_bytes(C, b""), None);
    }

    #[test]
    fn form_body_of_a_message() {
        let mut p = HttpStreamParser::new(HttpRole::Requests);
        p.push(
            b"POST /emservice/EMServiceServlet HTTP/1.1\r\n\
              Content-Type: application/x-www-form-urlencoded; charset=UTF-8\r\n\
              Content-Length: 33\r\n\r\nxml=%3Crequest%3E%3C%2Frequest%3E",
            1,
            0,
        );
        let evs = drain(&mut p);
        let m = messages(&evs)[0];
        assert_eq!(
            m.form(),
            Some(vec![("xml".to_string(), "<request></request>".to_string())])
        );
    }

    type Listed = Vec<(u64, String)>;

    /// HTTP messages of every connection (ports 5060 excluded), as (last frame, method or
    /// status), sorted by frame, and responses as "response_frame request_frame".
    fn http_in_capture(file: &str) -> Option<(Listed, Listed)> {
        let path = crate::pcap::tcp::capture::corpus(file)?;
        let mut found = Vec::new();
        let mut pairs = Vec::new();
        for conn in crate::pcap::tcp::capture::connections(&path) {
            if conn.ports.0 == 5060 || conn.ports.1 == 5060 {
                continue;
            }
            let mut conv: Option<HttpConversation> = None;
            for ev in &conn.events {
                if conv.is_none() {
                    if let TcpEvent::Data(c) = ev {
                        conv = HttpConversation::client_from_first_bytes(c.dir, &c.data)
                            .map(HttpConversation::new);
                    }
                }
                if let Some(conv) = conv.as_mut() {
                    conv.on_tcp_event(ev);
                }
            }
            let Some(mut conv) = conv else { continue };
            conv.finish(u64::MAX);
            while let Some((_, ev)) = conv.poll() {
                if let HttpEvent::Message(m) = ev {
                    let what = match &m.kind {
                        HttpKind::Request { method, .. } => method.clone(),
                        HttpKind::Response { status, .. } => status.to_string(),
                    };
                    if let Some(cl) = m.header_str("content-length") {
                        assert_eq!(
                            cl.trim(),
                            m.body.len().to_string(),
                            "frame {}",
                            m.last_frame
                        );
                    }
                    if let Some(req) = m.request_frame {
                        pairs.push((m.last_frame, req.to_string()));
                    }
                    found.push((m.last_frame, what));
                }
            }
        }
        found.sort();
        pairs.sort();
        Some((found, pairs))
    }

    /// "frame what, frame what, ..." -> pairs.
    fn expected(list: &str) -> Vec<(u64, String)> {
        list.split(',')
            .map(|item| {
                let (frame, what) = item.trim().split_once(' ').expect("frame and kind");
                (frame.parse().expect("frame number"), what.to_string())
            })
            .collect()
    }

    /// Expectations from `tshark -r FILE -Y http -T fields -e frame.number
    /// -e http.request.method -e http.response.code` and, for the pairing,
    /// `tshark -r FILE -Y http.response -T fields -e frame.number -e http.request_in`.
    #[test]
    fn r4_corpus_cucm_xmf_soap_over_http_matches_tshark() {
        let Some((found, pairs)) =
            http_in_capture("Wireshark-Captures/collab_pcap/sip/sip_xmf_recording_cucm.pcapng")
        else {
            return;
        };
        let want = expected(
            "4 POST, 7 200, 10 POST, 12 200, 35 POST, 37 POST, 40 200, 41 200, 53 POST, \
             55 200, 57 POST, 58 200, 1481 POST, 1492 200, 1494 POST, 1496 POST, 1498 200, \
             1499 200, 1508 POST, 1510 POST, 1511 200, 1512 200",
        );
        assert_eq!(found, want);
        let want = expected(
            "7 4, 12 10, 40 35, 41 37, 55 53, 58 57, 1492 1481, 1498 1494, 1499 1496, \
             1511 1508, 1512 1510",
        );
        assert_eq!(pairs, want);
    }

    /// The same with retransmissions, Linux SLL and TLS/other TCP streams beside the HTTP.
    #[test]
    fn r4_corpus_heplify_retrans_xmlrpc_over_http_matches_tshark() {
        let Some((found, pairs)) = http_in_capture("heplify/sip_ipv4_tcp_retrans.pcap") else {
            return;
        };
        let want = expected("147 POST, 149 200, 160 POST, 162 200, 172 POST, 174 200");
        assert_eq!(found, want);
        assert_eq!(pairs, expected("149 147, 162 160, 174 172"));
    }

    #[test]
    fn pseudo_random_bytes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces: [&[u8]; 10] = [
            b"GET / HTTP/1.1\r\n",
            b"HTTP/1.1 200 OK\r\n",
            b"Content-Length: 3\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"\r\n",
            b"5\r\nabcde\r\n",
            b"0\r\n\r\n",
            b"\x00\xff",
            b"HEAD /h HTTP/1.1\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n",
        ];
        let limits = HttpLimits {
            max_head: 128,
            max_body: 16,
            max_line: 32,
            max_headers: 8,
        };
        for _ in 0..300 {
            let mut c = HttpConversation::with_limits(C, limits);
            for frame in 0..40 {
                let dir = if rnd() % 2 == 0 { C } else { S };
                let p = pieces[(rnd() % 10) as usize];
                match rnd() % 20 {
                    0 => c.gap(dir, frame),
                    1 => c.end(dir, frame),
                    _ => c.push(dir, p, frame, 0),
                }
                while c.poll().is_some() {}
            }
            c.finish(99);
            while c.poll().is_some() {}
        }
    }
}
