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
//!
//! Layout: `lex` (character classes, quoting, the cursor every header parser uses),
//! `params`, `host`, `method`, `headers` (names and compact forms, the [`Headers`]
//! container and how it is written, CSeq and the scalar headers), `uri`, `name_addr` (also
//! Contact lists), `via`, `reason` (reason phrases), `parse` (start line, header section,
//! datagram and stream messages) and `framer` (cutting a stream into messages). This file
//! holds the messages themselves.

mod error;
mod framer;
mod headers;
mod host;
mod lex;
mod method;
mod name_addr;
mod params;
mod parse;
mod reason;
mod uri;
mod via;

#[cfg(test)]
mod tests;

use std::fmt;

use bytes::Bytes;

use error::snippet;
use headers::validate_call_id;
use uri::is_sip_scheme;

pub use error::ParseError;
pub use framer::{frame_stream, StreamEvent, StreamFramer};
pub use headers::{
    compact_header_name, full_header_name, header_names_equal, split_commas, CSeq, CommaSplit,
    Headers,
};
pub use lex::{is_token, quote, unescape_uri, unquote};
pub use method::Method;
pub use name_addr::{parse_contact_list, ContactList, NameAddr, NameAddrRef};
pub use params::{Params, RawParamIter, RawParams};
pub use parse::{
    parse_datagram, parse_datagram_bytes, parse_stream_message, parse_stream_message_bytes,
    skip_keepalive,
};
pub use reason::default_reason;
pub use uri::{SipUri, UriRef};
pub use via::{Via, ViaRef};

/// Largest message (start line, headers and body) accepted; larger messages
/// are rejected with status 513 Message Too Large.
pub const MAX_MESSAGE_SIZE: usize = 65_535;

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

/// The typed header views requests and responses share: shortcuts to the [`Headers`] methods
/// of the same meaning.
macro_rules! header_views {
    () => {
        /// The Call-ID value.
        pub fn call_id(&self) -> Option<&str> {
            self.headers.call_id()
        }

        /// The parsed CSeq header.
        pub fn cseq(&self) -> Result<CSeq, ParseError> {
            self.headers.cseq()
        }

        /// The top-most Via entry.
        pub fn top_via(&self) -> Result<Via, ParseError> {
            self.headers.top_via()
        }

        /// All Via entries, top-most first.
        pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
            self.headers.vias()
        }

        /// The parsed From header.
        pub fn from(&self) -> Result<NameAddr, ParseError> {
            self.headers.from_addr()
        }

        /// The parsed To header.
        pub fn to(&self) -> Result<NameAddr, ParseError> {
            self.headers.to_addr()
        }

        /// All Contact header lines combined (see [`Headers::contacts`]).
        pub fn contacts(&self) -> Result<ContactList, ParseError> {
            self.headers.contacts()
        }
    };
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

    header_views!();

    /// The Max-Forwards value (0..=255).
    pub fn max_forwards(&self) -> Result<u32, ParseError> {
        self.headers.max_forwards()
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
        headers::push_clean(out, self.method.as_str());
        out.push(b' ');
        headers::push_clean(out, &self.uri);
        out.extend_from_slice(b" SIP/2.0\r\n");
        self.headers.write_with_body(out, &self.body);
    }

    /// The wire form (CRLF line endings, correct Content-Length).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.headers.wire_size(self.body.len()));
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

    header_views!();

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
        headers::push_clean(out, &self.reason);
        out.extend_from_slice(b"\r\n");
        self.headers.write_with_body(out, &self.body);
    }

    /// The wire form (CRLF line endings, correct Content-Length).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.headers.wire_size(self.body.len()));
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

/// The Alert-Info of an INVITE to a device that is to ring silently (show the call without
/// ringing). UNCONFIRMED: neither the seed nor Cisco's documents say how Unified CM tells a SIP
/// phone to ring silently; a private alert URN (RFC 7462 section 10) names it.
pub const SILENT_ALERT_INFO: &str = "<urn:alert:service:silent@ucm>";

/// The Call-Info parameter of an INVITE to a device that is to answer by itself at once (an
/// attendant's phone taking a call the Attendant Console answered for it). UNCONFIRMED: the
/// seed says only that the call "is automatically connected on the attendant's phone"; the
/// `answer-after=0` parameter of Call-Info (draft-ietf-sip-answer-mode's predecessor, what
/// SIP phones commonly honour for intercom) asks for it.
pub const AUTO_ANSWER_CALL_INFO: &str = "answer-after=0";
