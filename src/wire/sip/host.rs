//! Hosts (names, IPv4 addresses, IPv6 references) and ports.

use std::net::Ipv6Addr;

use super::error::snippet;
use super::lex::{is_host_char, Cursor};

fn is_ipv4(s: &str) -> bool {
    // Four dot-separated decimal parts of one to three digits, each at most 255.
    let (mut parts, mut digits, mut value) = (0u32, 0u32, 0u32);
    for &b in s.as_bytes() {
        if b == b'.' {
            if digits == 0 || value > 255 {
                return false;
            }
            parts += 1;
            digits = 0;
            value = 0;
        } else if b.is_ascii_digit() {
            digits += 1;
            if digits > 3 {
                return false;
            }
            value = value * 10 + u32::from(b - b'0');
        } else {
            return false;
        }
    }
    digits > 0 && value <= 255 && parts == 3
}

pub(super) fn is_ip_address(s: &str) -> bool {
    if is_ipv4(s) || s.parse::<Ipv6Addr>().is_ok() {
        return true;
    }
    s.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .is_some_and(|inner| inner.parse::<Ipv6Addr>().is_ok())
}

fn validate_hostname(h: &str) -> Result<(), String> {
    let body = h.strip_suffix('.').unwrap_or(h);
    if body.is_empty() {
        return Err(format!("invalid host {}", snippet(h)));
    }
    let b = body.as_bytes();
    let last_start = b.iter().rposition(|&c| c == b'.').map_or(0, |i| i + 1);
    if b.get(last_start).is_some_and(|c| c.is_ascii_digit()) {
        if body.len() == h.len() && is_ipv4(body) {
            return Ok(());
        }
        return Err(format!("invalid IPv4 address {}", snippet(h)));
    }
    // Labels: non-empty, alphanumerics and '-', not starting or ending with '-'.
    let mut label_len = 0usize;
    let mut prev = b'.';
    for &c in b {
        if c == b'.' {
            if label_len == 0 || prev == b'-' {
                return Err(format!("invalid host name {}", snippet(h)));
            }
            label_len = 0;
        } else if c.is_ascii_alphanumeric() || c == b'-' {
            if label_len == 0 && c == b'-' {
                return Err(format!("invalid host name {}", snippet(h)));
            }
            label_len += 1;
        } else {
            return Err(format!("invalid host name {}", snippet(h)));
        }
        prev = c;
    }
    if label_len == 0 || prev == b'-' {
        return Err(format!("invalid host name {}", snippet(h)));
    }
    Ok(())
}

/// host = hostname / IPv4address / IPv6reference. IPv6 references keep their
/// brackets.
pub(super) fn parse_host<'a>(c: &mut Cursor<'a>) -> Result<&'a str, String> {
    if c.peek() == Some(b'[') {
        let rest = c.rest();
        let end = rest
            .find(']')
            .ok_or_else(|| format!("unterminated IPv6 reference {}", snippet(rest)))?;
        let inner = rest.get(1..end).unwrap_or("");
        if inner.parse::<Ipv6Addr>().is_err() {
            return Err(format!("invalid IPv6 address {}", snippet(inner)));
        }
        c.pos += end + 1;
        return Ok(rest.get(..end + 1).unwrap_or(""));
    }
    let h = c.take_while(is_host_char);
    if h.is_empty() {
        return Err(if c.at_end() {
            "missing host".to_string()
        } else {
            format!("expected a host, found {}", snippet(c.rest()))
        });
    }
    validate_hostname(h)?;
    Ok(h)
}

pub(super) fn parse_port(d: &str) -> Result<u16, String> {
    if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port {}", snippet(d)));
    }
    d.parse::<u16>()
        .map_err(|_| format!("port {} out of range", snippet(d)))
}
