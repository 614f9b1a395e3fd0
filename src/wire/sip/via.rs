//! Via entries, owned ([`Via`]) or borrowed ([`ViaRef`]).

use std::fmt;
use std::str::FromStr;

use super::error::{snippet, ParseError};
use super::host::{is_ip_address, parse_host, parse_port};
use super::lex::{is_token, is_token_char, trim_ws, Cursor};
use super::params::{
    find_param, parse_header_params, remove_param_in, set_param_in, write_params, ParamSink,
    Params, RawParams,
};

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

pub(super) fn parse_via_ref(s: &str) -> Result<ViaRef<'_>, String> {
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
