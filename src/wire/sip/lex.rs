//! Byte classes of RFC 3261's grammar (section 25), quoted strings and `%HH` escapes, and the
//! cursor every header parser moves over a value.

use std::borrow::Cow;

use super::error::snippet;

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
pub(super) fn is_token_char(b: u8) -> bool {
    class(b, C_TOKEN)
}

pub(super) fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(super) fn is_user_char(b: u8) -> bool {
    class(b, C_USER)
}

pub(super) fn is_password_char(b: u8) -> bool {
    class(b, C_PASSWORD)
}

pub(super) fn is_param_char(b: u8) -> bool {
    class(b, C_PARAM)
}

pub(super) fn is_hnv_char(b: u8) -> bool {
    class(b, C_HNV)
}

pub(super) fn is_uric(b: u8) -> bool {
    class(b, C_URIC)
}

pub(super) fn is_tel_char(b: u8) -> bool {
    class(b, C_TEL)
}

/// Value of a generic header parameter when not quoted: token / host.
pub(super) fn is_gen_value_char(b: u8) -> bool {
    class(b, C_GENVAL)
}

/// Characters of a host name or IPv4 address.
pub(super) fn is_host_char(b: u8) -> bool {
    class(b, C_HOST)
}

/// Control characters that may not appear in the header section.
pub(super) fn is_forbidden_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Returns true if `s` is a non-empty RFC 3261 token.
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

pub(super) fn trim_ws(s: &str) -> &str {
    let b = s.as_bytes();
    let start = b.iter().position(|&c| !is_ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_ws(c)).map_or(start, |i| i + 1);
    // Space and tab are ASCII, so both ends are char boundaries.
    s.get(start..end).unwrap_or("")
}

pub(super) fn trim_ws_bytes(mut b: &[u8]) -> &[u8] {
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

pub(super) fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.get(..prefix.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(prefix))
}

/// Checks that `s` only consists of `allowed` characters and `%HH` escapes.
pub(super) fn check_chars(s: &str, what: &str, allowed: fn(u8) -> bool) -> Result<(), String> {
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
pub(super) struct Cursor<'a> {
    pub(super) s: &'a str,
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    pub(super) fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    pub(super) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(super) fn skip_ws(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
        self.pos - start
    }

    pub(super) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        self.s.get(start..self.pos).unwrap_or("")
    }
}

/// Checks a quoted-string at the cursor and returns it as on the wire (with quotes and
/// escapes), without unescaping it.
pub(super) fn parse_quoted_raw<'a>(c: &mut Cursor<'a>) -> Result<&'a str, String> {
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
