//! `sip:`, `sips:` and `tel:` URIs, owned ([`SipUri`]) or borrowed from the message
//! ([`UriRef`]).

use std::fmt::{self, Write as _};
use std::str::FromStr;

use super::error::{snippet, ParseError};
use super::host::{parse_host, parse_port};
use super::lex::{
    check_chars, is_hnv_char, is_param_char, is_password_char, is_tel_char, is_uric, is_user_char,
    unescape_uri, Cursor,
};
use super::params::{find_param, remove_param_in, set_param_in, write_params, Params, RawParams};

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

pub(super) fn is_sip_scheme(s: &str) -> bool {
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

pub(super) fn parse_uri(s: &str) -> Result<SipUri, String> {
    parse_uri_ref(s).map(|u| u.to_owned_uri())
}

pub(super) fn parse_uri_ref(s: &str) -> Result<UriRef<'_>, String> {
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
