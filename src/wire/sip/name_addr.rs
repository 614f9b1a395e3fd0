//! Name-addr values (From, To, Contact, Route, Record-Route ...), owned ([`NameAddr`]) or
//! borrowed ([`NameAddrRef`]), and Contact lists.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use super::error::{snippet, ParseError};
use super::headers::split_commas;
use super::lex::{is_token_char, parse_quoted_raw, quote, trim_ws, unquote, Cursor};
use super::params::{
    find_param, parse_header_params, remove_param_in, set_param_in, write_params, ParamSink,
    Params, RawParams,
};
use super::uri::{parse_uri_ref, SipUri, UriRef};

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

pub(super) fn parse_name_addr_ref(s: &str) -> Result<NameAddrRef<'_>, String> {
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
pub(super) fn check_contact_list(value: &str) -> Result<(), String> {
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
