//! Parameter lists (`;name=value`) of headers and URIs.

use std::fmt::{self, Write as _};

use super::error::snippet;
use super::lex::{is_gen_value_char, is_token_char, parse_quoted_raw, trim_ws, Cursor};

/// Parameter list: `(name, value)` with values exactly as on the wire
/// (quoted-strings keep their quotes; see [`unquote`](super::unquote)).
pub type Params = Vec<(String, Option<String>)>;

/// Where parameters go while a list is parsed: kept ([`Params`]), or only checked and
/// the few the caller needs picked out (no allocation).
pub(super) trait ParamSink<'a> {
    fn add(&mut self, name: &'a str, value: Option<&'a str>);
}

impl<'a> ParamSink<'a> for Params {
    fn add(&mut self, name: &'a str, value: Option<&'a str>) {
        self.push((name.to_string(), value.map(str::to_string)));
    }
}

/// A parameter list exactly as on the wire (`;a=b;c`, header or URI parameters) that
/// the parser has already checked: lookups borrow from the message and allocate nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawParams<'a>(pub(super) &'a str);

impl<'a> RawParams<'a> {
    /// `(name, value)` in order, values exactly as on the wire (quoted-strings keep their
    /// quotes).
    pub fn iter(&self) -> RawParamIter<'a> {
        RawParamIter { rest: self.0 }
    }

    /// A parameter: `None` if absent, `Some(None)` if present without value.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The parameters as owned pairs.
    pub fn to_params(&self) -> Params {
        self.iter()
            .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
            .collect()
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

/// Iterator of [`RawParams::iter`]. The list was checked when parsed, so splitting on
/// `;` and `=` outside quoted strings and trimming whitespace gives what the strict
/// parser saw.
#[derive(Debug, Clone)]
pub struct RawParamIter<'a> {
    rest: &'a str,
}

/// Index of the first `delim` outside a quoted-string.
fn find_unquoted(s: &str, delim: u8) -> Option<usize> {
    let (mut in_quote, mut escaped) = (false, false);
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if escaped {
            escaped = false;
        } else if in_quote && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            in_quote = !in_quote;
        } else if b == delim && !in_quote {
            return Some(i);
        }
    }
    None
}

impl<'a> Iterator for RawParamIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (piece, rest) = match find_unquoted(self.rest, b';') {
                Some(i) => (
                    self.rest.get(..i).unwrap_or(""),
                    self.rest.get(i + 1..).unwrap_or(""),
                ),
                None => (self.rest, ""),
            };
            self.rest = rest;
            let piece = trim_ws(piece);
            if piece.is_empty() {
                continue;
            }
            return Some(match piece.split_once('=') {
                Some((n, v)) => (trim_ws(n), Some(trim_ws(v))),
                None => (piece, None),
            });
        }
    }
}

pub(super) fn find_param<'a>(
    params: &'a [(String, Option<String>)],
    name: &str,
) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

pub(super) fn set_param_in(params: &mut Params, name: &str, value: Option<String>) {
    match params
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        Some(slot) => slot.1 = value,
        None => params.push((name.to_string(), value)),
    }
}

pub(super) fn remove_param_in(params: &mut Params, name: &str) {
    params.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
}

pub(super) fn write_params(
    f: &mut fmt::Formatter<'_>,
    params: &[(String, Option<String>)],
) -> fmt::Result {
    for (n, v) in params {
        f.write_char(';')?;
        f.write_str(n)?;
        if let Some(v) = v {
            f.write_char('=')?;
            f.write_str(v)?;
        }
    }
    Ok(())
}

/// Header parameters: `*( SEMI generic-param )`, `generic-param = token [ EQUAL
/// gen-value ]`, `gen-value = token / host / quoted-string`, with optional
/// whitespace around `;` and `=`.
pub(super) fn parse_header_params<'a>(
    c: &mut Cursor<'a>,
    out: &mut impl ParamSink<'a>,
) -> Result<(), String> {
    loop {
        c.skip_ws();
        match c.peek() {
            None => return Ok(()),
            Some(b';') => c.pos += 1,
            Some(_) => return Err(format!("unexpected text {}", snippet(c.rest()))),
        }
        c.skip_ws();
        let name = c.take_while(is_token_char);
        if name.is_empty() {
            return Err(format!(
                "empty or invalid parameter name at {}",
                snippet(c.rest())
            ));
        }
        c.skip_ws();
        let value = if c.eat(b'=') {
            c.skip_ws();
            if c.peek() == Some(b'"') {
                Some(parse_quoted_raw(c)?)
            } else {
                let v = c.take_while(is_gen_value_char);
                if v.is_empty() {
                    return Err(format!("missing value for parameter {}", snippet(name)));
                }
                Some(v)
            }
        } else {
            None
        };
        out.add(name, value);
    }
}
