//! Header names and their compact forms, the ordered [`Headers`] container and how it is
//! written, CSeq, and the syntax checks of the headers the parser understands.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use super::error::{snippet, ParseError};
use super::lex::{is_forbidden_ctl, is_token_char, is_ws, trim_ws, Cursor};
use super::method::Method;
use super::name_addr::{
    check_contact_list, parse_contact_list, parse_name_addr_ref, ContactList, NameAddr, NameAddrRef,
};
use super::via::{parse_via_ref, Via, ViaRef};
use super::MAX_MESSAGE_SIZE;

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
pub(super) enum HeaderKind {
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
    pub(super) fn of(name: &str) -> HeaderKind {
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
    pub(super) fn single_slot(self) -> Option<usize> {
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

    pub(super) fn required(&self, name: &str) -> Result<&str, ParseError> {
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
    pub(super) fn normalize_content_length(&mut self, len: usize) {
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

/// Writes `s`, replacing CR and LF (which would break the framing) by spaces.
pub(super) fn push_clean(out: &mut Vec<u8>, s: &str) {
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

impl Headers {
    /// Writes the header lines, the empty line and `body`, with one Content-Length equal to
    /// the body's length (in place of the first one, or appended).
    pub(super) fn write_with_body(&self, out: &mut Vec<u8>, body: &[u8]) {
        let mut wrote_cl = false;
        for (name, value) in &self.entries {
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

    /// About the size of the wire form with a body of `body_len` bytes.
    pub(super) fn wire_size(&self, body_len: usize) -> usize {
        64 + body_len
            + self
                .entries
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>()
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
pub(super) fn validate_call_id(v: &str) -> Result<(), String> {
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

pub(super) fn parse_content_length(v: &str) -> Result<usize, ParseError> {
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
pub(super) fn check_header_value(kind: HeaderKind, value: &str) -> Result<(), String> {
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
