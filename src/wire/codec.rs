//! The small codecs of HTTP and its URLs: percent-encoding, query strings, form bodies
//! (`application/x-www-form-urlencoded`), base64 and HTTP Basic credentials.

/// Percent-encodes a URL component (a query name or value, a user ID): everything but
/// `A-Z a-z 0-9 - _ . ~`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `url` with `params` appended to its query string.
pub fn with_query(url: &str, params: &[(&str, &str)]) -> String {
    let mut out = url.to_string();
    let mut sep = if url.contains('?') {
        if url.ends_with('?') || url.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    for (k, v) in params {
        out.push_str(sep);
        out.push_str(&percent_encode(k));
        out.push('=');
        out.push_str(&percent_encode(v));
        sep = "&";
    }
    out
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space, `%HH` a byte
/// (invalid escapes are kept), invalid UTF-8 becomes U+FFFD.
pub fn form_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        match c {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = |j: usize| s.get(j).and_then(|x| (*x as char).to_digit(16));
                match (hex(i + 1), hex(i + 2)) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes an `application/x-www-form-urlencoded` body: `&`-separated `name=value` pairs, each
/// side decoded by [`form_decode`]. Empty segments are skipped; a segment without `=` has an
/// empty value.
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|s| !s.is_empty())
        .map(|seg| {
            let (name, value) = match seg.iter().position(|&b| b == b'=') {
                Some(eq) => (
                    seg.get(..eq).unwrap_or(&[]),
                    seg.get(eq + 1..).unwrap_or(&[]),
                ),
                None => (seg, &[][..]),
            };
            (form_decode(name), form_decode(value))
        })
        .collect()
}

/// The value of form field `name` (exact, case-sensitive) in a form body; the first one wins.
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (pair.get(..i)?, pair.get(i + 1..)?),
            None => (pair, &[][..]),
        };
        (form_decode(k) == name).then(|| form_decode(v))
    })
}

/// A query string or form body read once, as the services read their parameters: the pairs of
/// [`form_pairs`], in order, looked up by name whatever its ASCII case (the first match wins,
/// so a repeated name always means the same thing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Form {
    pub pairs: Vec<(String, String)>,
}

impl Form {
    /// Reads a query string (without the `?`) or an `application/x-www-form-urlencoded` body.
    pub fn parse(s: &[u8]) -> Form {
        Form {
            pairs: form_pairs(s),
        }
    }

    /// The value of the first field named `name` (ASCII case-insensitive), trimmed; `None` when
    /// the field is absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }
}

/// Decodes standard base64 (padding optional, whitespace ignored).
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        })
    };
    let clean: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let data = match clean.iter().position(|&b| b == b'=') {
        Some(p) => {
            if !clean.get(p..)?.iter().all(|&b| b == b'=') || clean.len() - p > 2 {
                return None;
            }
            clean.get(..p)?
        }
        None => &clean[..],
    };
    if data.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for group in data.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in group.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        let take = group.len() - 1;
        out.extend_from_slice(bytes.get(1..1 + take)?);
    }
    Some(out)
}

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The user and password of an `Authorization: Basic ...` header value.
pub fn parse_basic_auth(value: &str) -> Option<(String, String)> {
    let value = value.trim();
    let (scheme, creds) = value.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64_decode(creds.trim())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_form() {
        assert_eq!(
            with_query(
                "http://h/a.jsp",
                &[("UserID", "j smith"), ("Password", "p&w=d%")]
            ),
            "http://h/a.jsp?UserID=j%20smith&Password=p%26w%3Dd%25"
        );
        assert_eq!(
            with_query("http://h/a?x=1", &[("b", "2")]),
            "http://h/a?x=1&b=2"
        );
        let body = b"xml=no&XML=%3CA+b%3D%22c%22%2F%3E&XML=second";
        assert_eq!(form_field(body, "XML").as_deref(), Some("<A b=\"c\"/>"));
        assert_eq!(form_field(body, "xml").as_deref(), Some("no"));
        assert_eq!(form_field(body, "Xml"), None);
        assert_eq!(form_decode(b"%zz%4"), "%zz%4");
    }

    #[test]
    fn basic_auth_and_base64() {
        for s in ["", "a", "ab", "abc", "jsmith:cisco", "user:pa:ss\u{e9}"] {
            assert_eq!(
                base64_decode(&base64_encode(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
        assert_eq!(
            parse_basic_auth("Basic anNtaXRoOmNpc2Nv"),
            Some(("jsmith".into(), "cisco".into()))
        );
        assert_eq!(
            parse_basic_auth("basic   dGVzdDp0ZXN0 "),
            Some(("test".into(), "test".into()))
        );
        assert_eq!(parse_basic_auth("Bearer x"), None);
        assert_eq!(parse_basic_auth("Basic !!!"), None);
        assert_eq!(parse_basic_auth("Basic bm9jb2xvbg=="), None);
        assert!(base64_decode("a").is_none());
        assert!(base64_decode("ab=c").is_none());
    }

    #[test]
    fn form_decoding() {
        let p = form_pairs(b"UserID=jsmith&Password=a%26b+c&devicename=SEP00036BC7B973&x=%zz");
        assert_eq!(p[0], ("UserID".into(), "jsmith".into()));
        assert_eq!(p[1], ("Password".into(), "a&b c".into()));
        assert_eq!(p[3], ("x".into(), "%zz".into()));
        assert_eq!(form_decode(b"%4"), "%4");
        assert_eq!(form_decode(b"%41"), "A");
    }

    #[test]
    fn an_escape_is_two_hex_digits_and_nothing_else() {
        // A sign is not a hex digit, although Rust's integer parser accepts a leading `+`:
        // `%+F` is a kept `%`, a space and `F`, not the byte 0x0F.
        assert_eq!(form_decode(b"%+F"), "% F");
        assert_eq!(form_decode(b"%-1%+0x"), "%-1% 0x");
        assert_eq!(form_pairs(b"a=%+F"), vec![("a".into(), "% F".into())]);
        assert_eq!(form_decode(b"%4a%4A"), "JJ");
    }

    #[test]
    fn form_pairs_decoding() {
        assert_eq!(
            form_pairs(b"xml=%3Crequest%3E%3Clogin+a%3D%221%22%2F%3E&x=&flag&&a+b=c%2"),
            vec![
                ("xml".into(), "<request><login a=\"1\"/>".into()),
                ("x".into(), "".into()),
                ("flag".into(), "".into()),
                ("a b".into(), "c%2".into()),
            ]
        );
        // The EM API sample posts raw XML after xml=.
        assert_eq!(
            form_pairs(b"xml=<request><appInfo/></request>"),
            vec![("xml".into(), "<request><appInfo/></request>".into())]
        );
        assert_eq!(
            form_pairs(b"a=%E2%82%AC%zz%"),
            vec![("a".into(), "\u{20ac}%zz%".into())]
        );
        assert!(form_pairs(b"").is_empty());
    }

    #[test]
    fn form_lookup_ignores_case_trims_and_the_first_match_wins() {
        let f = Form::parse(b"DEVICE=SEP001&device=SEP002&pin=+12%20&userid=&loginType=dn");
        assert_eq!(f.get("device"), Some("SEP001"));
        assert_eq!(f.get("Device"), Some("SEP001"));
        assert_eq!(f.get("pin"), Some("12"));
        assert_eq!(f.get("userid"), None);
        assert_eq!(f.get("logintype"), Some("dn"));
        assert_eq!(f.get("logout"), None);
        assert_eq!(Form::parse(b""), Form::default());
    }
}
