//! SDP (RFC 4566) session descriptions for the offer/answer model (RFC 3264).
//!
//! [`SessionDescription::parse`] is strict where interoperability does not
//! suffer: `v=0`, `o=` and `s=` must be the first three lines, a `t=` line must
//! come before any session-level `a=` line and before the first `m=` line, every
//! line must be `<letter>=<value>`, unknown line types are refused (RFC 4566 5:
//! a parser must not use a description with a type it does not understand), and
//! numbers are plain digits. It is tolerant of LF-only line ends, trailing blank
//! lines, repeated spaces between fields, an empty `s=` and of the optional
//! session-level fields (`i= u= e= p= c= b=`) appearing in a different order.
//! Errors name the 1-based line number and the field.
//!
//! Serialization ([`std::fmt::Display`], `to_string()`) writes CRLF line ends and
//! the fields in RFC 4566 order; for any parsed `sdp`,
//! `parse(&sdp.to_string()) == Ok(sdp)`, and a description that was already in
//! that canonical form is reproduced byte for byte. Unknown attributes (such as
//! Cisco's `a=X-cisco-media:...`) are kept in order.
//!
//! Call control helpers: [`SessionDescription::audio`],
//! [`SessionDescription::media_address`], [`SessionDescription::codecs`],
//! [`SessionDescription::offers_codec`], [`SessionDescription::direction`],
//! [`SessionDescription::is_hold`], the builder
//! [`SessionDescription::audio_offer`], [`answer_for`] and
//! [`SessionDescription::with_direction`] for re-INVITE hold and resume.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// A description that is not valid SDP: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SDP line {line}: {field}: {reason}")]
pub struct SdpError {
    /// 1-based line number (one past the last line for a missing line).
    pub line: usize,
    /// The field, e.g. `o= sess-id` or `m= port`.
    pub field: String,
    pub reason: String,
}

fn err(line: usize, field: &str, reason: impl Into<String>) -> SdpError {
    SdpError {
        line,
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// `o=` (RFC 4566 5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub sess_id: u64,
    pub sess_version: u64,
    pub net_type: String,
    pub addr_type: String,
    pub address: String,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.username,
            self.sess_id,
            self.sess_version,
            self.net_type,
            self.addr_type,
            self.address
        )
    }
}

/// `c=` (RFC 4566 5.7). `ttl` and `count` are the `/ttl/count` suffixes of IPv4
/// multicast addresses (IPv6: `/count` only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub net_type: String,
    pub addr_type: String,
    pub address: String,
    pub ttl: Option<u8>,
    pub count: Option<u32>,
}

impl Connection {
    /// `IN IP4 a.b.c.d` or `IN IP6 x::y`.
    pub fn new(addr: IpAddr) -> Self {
        Connection {
            net_type: "IN".to_string(),
            addr_type: addr_type_of(addr).to_string(),
            address: addr.to_string(),
            ttl: None,
            count: None,
        }
    }

    /// The address as an IP address (`None` for a host name or an unknown
    /// network type).
    pub fn ip(&self) -> Option<IpAddr> {
        if !self.net_type.eq_ignore_ascii_case("IN") {
            return None;
        }
        if self.addr_type.eq_ignore_ascii_case("IP4") {
            self.address.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
        } else if self.addr_type.eq_ignore_ascii_case("IP6") {
            self.address.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            None
        }
    }

    /// `0.0.0.0` or `::` (RFC 2543 style hold).
    pub fn is_unspecified(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.net_type, self.addr_type, self.address)?;
        if let Some(ttl) = self.ttl {
            write!(f, "/{ttl}")?;
        }
        if let Some(count) = self.count {
            write!(f, "/{count}")?;
        }
        Ok(())
    }
}

fn addr_type_of(addr: IpAddr) -> &'static str {
    match addr {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// `b=<bwtype>:<bandwidth>` (RFC 4566 5.8), e.g. `AS:64` or `TIAS:64000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    pub bwtype: String,
    pub bandwidth: u64,
}

impl fmt::Display for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.bwtype, self.bandwidth)
    }
}

/// `a=<name>` or `a=<name>:<value>` (RFC 4566 5.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

impl Attribute {
    /// A property attribute (`a=sendrecv`).
    pub fn flag(name: &str) -> Self {
        Attribute {
            name: name.to_string(),
            value: None,
        }
    }

    /// A value attribute (`a=ptime:20`).
    pub fn new(name: &str, value: impl Into<String>) -> Self {
        Attribute {
            name: name.to_string(),
            value: Some(value.into()),
        }
    }

    fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}:{}", self.name, v),
            None => f.write_str(&self.name),
        }
    }
}

/// Media direction (RFC 3264 5.1); `sendrecv` when no attribute says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction attribute named `name`, if it is one.
    pub fn from_name(name: &str) -> Option<Direction> {
        [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ]
        .into_iter()
        .find(|d| name.eq_ignore_ascii_case(d.as_str()))
    }

    /// The direction an answer takes for an offer with this direction
    /// (sendonly <-> recvonly; sendrecv and inactive unchanged).
    pub fn reverse(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            d => d,
        }
    }

    /// Whether the side that wrote this direction sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side that wrote this direction receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The attribute for this direction.
    pub fn attribute(self) -> Attribute {
        Attribute::flag(self.as_str())
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock>[/<channels>]` (RFC 4566 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtpmap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u16>,
}

impl Rtpmap {
    /// Parses an rtpmap value (`0 PCMU/8000`).
    pub fn parse(value: &str) -> Option<Rtpmap> {
        let (pt, rest) = value.trim().split_once(' ')?;
        let payload_type = digits::<u8>(pt).filter(|pt| *pt <= 127)?;
        let mut parts = rest.trim().split('/');
        let encoding = parts.next().filter(|e| !e.is_empty())?.to_string();
        let clock_rate = digits::<u32>(parts.next()?)?;
        let channels = match parts.next() {
            Some(c) => Some(digits::<u16>(c)?),
            None => None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Rtpmap {
            payload_type,
            encoding,
            clock_rate,
            channels,
        })
    }

    /// The RFC 3551 static payload type `pt`, if it is one.
    pub fn static_payload_type(pt: u8) -> Option<Rtpmap> {
        let (encoding, clock_rate, channels) = match pt {
            0 => ("PCMU", 8000, None),
            3 => ("GSM", 8000, None),
            4 => ("G723", 8000, None),
            5 => ("DVI4", 8000, None),
            6 => ("DVI4", 16_000, None),
            7 => ("LPC", 8000, None),
            8 => ("PCMA", 8000, None),
            9 => ("G722", 8000, None),
            10 => ("L16", 44_100, Some(2)),
            11 => ("L16", 44_100, None),
            12 => ("QCELP", 8000, None),
            13 => ("CN", 8000, None),
            14 => ("MPA", 90_000, None),
            15 => ("G728", 8000, None),
            16 => ("DVI4", 11_025, None),
            17 => ("DVI4", 22_050, None),
            18 => ("G729", 8000, None),
            25 => ("CelB", 90_000, None),
            26 => ("JPEG", 90_000, None),
            28 => ("nv", 90_000, None),
            31 => ("H261", 90_000, None),
            32 => ("MPV", 90_000, None),
            33 => ("MP2T", 90_000, None),
            34 => ("H263", 90_000, None),
            _ => return None,
        };
        Some(Rtpmap {
            payload_type: pt,
            encoding: encoding.to_string(),
            clock_rate,
            channels,
        })
    }

    /// The attribute `a=rtpmap:...`.
    pub fn attribute(&self) -> Attribute {
        Attribute::new("rtpmap", self.to_string())
    }
}

impl fmt::Display for Rtpmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.payload_type, self.encoding, self.clock_rate
        )?;
        if let Some(c) = self.channels {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

/// `a=fmtp:<format> <parameters>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fmtp {
    pub format: String,
    pub params: String,
}

impl Fmtp {
    pub fn parse(value: &str) -> Option<Fmtp> {
        let value = value.trim();
        let (format, params) = value.split_once(' ').unwrap_or((value, ""));
        if format.is_empty() {
            return None;
        }
        Some(Fmtp {
            format: format.to_string(),
            params: params.trim().to_string(),
        })
    }
}

/// `a=rtcp:<port> [<nettype> <addrtype> <address>]` (RFC 3605).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcpAttr {
    pub port: u16,
    pub connection: Option<Connection>,
}

impl RtcpAttr {
    pub fn parse(value: &str) -> Option<RtcpAttr> {
        let mut tokens = value.split(' ').filter(|t| !t.is_empty());
        let port = digits::<u16>(tokens.next()?)?;
        let rest: Vec<&str> = tokens.collect();
        let connection = match rest.as_slice() {
            [] => None,
            [net, addr_type, address] => {
                Some(parse_connection_tokens(net, addr_type, address).ok()?)
            }
            _ => return None,
        };
        Some(RtcpAttr { port, connection })
    }
}

/// A codec offered in an `m=` line: payload type with its rtpmap (or the static
/// assignment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    pub pt: u8,
    pub name: String,
    pub clock: u32,
    pub channels: Option<u16>,
}

/// One `m=` section (RFC 4566 5.14) with its `i= c= b= k= a=` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, `application`, `image`, ...
    pub media: String,
    /// 0 for a rejected or disabled stream.
    pub port: u16,
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVP`, `udptl`, ...
    pub proto: String,
    pub formats: Vec<String>,
    pub information: Option<String>,
    pub connection: Option<Connection>,
    /// Further `c=` lines (layered multicast).
    pub extra_connections: Vec<Connection>,
    pub bandwidth: Vec<Bandwidth>,
    pub key: Option<String>,
    pub attributes: Vec<Attribute>,
}

impl MediaDescription {
    /// An `m=` line without any other lines.
    pub fn new(media: &str, port: u16, proto: &str, formats: Vec<String>) -> Self {
        MediaDescription {
            media: media.to_string(),
            port,
            port_count: None,
            proto: proto.to_string(),
            formats,
            information: None,
            connection: None,
            extra_connections: Vec::new(),
            bandwidth: Vec::new(),
            key: None,
            attributes: Vec::new(),
        }
    }

    /// Port 0: the stream is rejected (answer) or disabled.
    pub fn is_rejected(&self) -> bool {
        self.port == 0
    }

    /// Whether the transport is RTP (`RTP/AVP`, `RTP/AVPF`, `RTP/SAVP`, ...).
    pub fn is_rtp(&self) -> bool {
        self.proto.to_ascii_uppercase().starts_with("RTP/")
    }

    /// The first attribute named `name` (case-insensitive).
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.is(name))
    }

    /// The values of all attributes named `name`.
    pub fn attribute_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.attributes
            .iter()
            .filter(move |a| a.is(name))
            .filter_map(|a| a.value.as_deref())
    }

    /// All parseable `a=rtpmap` attributes.
    pub fn rtpmaps(&self) -> Vec<Rtpmap> {
        self.attribute_values("rtpmap")
            .filter_map(Rtpmap::parse)
            .collect()
    }

    /// The mapping of payload type `pt`: its `a=rtpmap`, or the static assignment.
    pub fn rtpmap(&self, pt: u8) -> Option<Rtpmap> {
        self.attribute_values("rtpmap")
            .filter_map(Rtpmap::parse)
            .find(|r| r.payload_type == pt)
            .or_else(|| Rtpmap::static_payload_type(pt))
    }

    /// The `a=fmtp` parameters of format `pt`.
    pub fn fmtp(&self, pt: u8) -> Option<String> {
        let pt = pt.to_string();
        self.attribute_values("fmtp")
            .filter_map(Fmtp::parse)
            .find(|f| f.format == pt)
            .map(|f| f.params)
    }

    /// `a=ptime` in milliseconds.
    pub fn ptime(&self) -> Option<u32> {
        self.attribute_values("ptime")
            .find_map(|v| digits::<u32>(v.trim()))
    }

    /// `a=maxptime` in milliseconds.
    pub fn maxptime(&self) -> Option<u32> {
        self.attribute_values("maxptime")
            .find_map(|v| digits::<u32>(v.trim()))
    }

    /// The media-level direction attribute, if any (the last one wins).
    pub fn direction_attribute(&self) -> Option<Direction> {
        direction_in(&self.attributes)
    }

    /// Replaces the direction attributes with `dir`.
    pub fn set_direction(&mut self, dir: Direction) {
        self.attributes
            .retain(|a| a.value.is_some() || Direction::from_name(&a.name).is_none());
        self.attributes.push(dir.attribute());
    }

    /// `a=rtcp` (RFC 3605).
    pub fn rtcp(&self) -> Option<RtcpAttr> {
        self.attribute_values("rtcp").find_map(RtcpAttr::parse)
    }

    /// The formats with a known mapping, in offer (preference) order.
    pub fn codecs(&self) -> Vec<Codec> {
        self.formats
            .iter()
            .filter_map(|f| digits::<u8>(f))
            .filter_map(|pt| self.rtpmap(pt))
            .map(|r| Codec {
                pt: r.payload_type,
                name: r.encoding,
                clock: r.clock_rate,
                channels: r.channels,
            })
            .collect()
    }
}

fn direction_in(attributes: &[Attribute]) -> Option<Direction> {
    attributes
        .iter()
        .filter(|a| a.value.is_none())
        .filter_map(|a| Direction::from_name(&a.name))
        .next_back()
}

impl fmt::Display for MediaDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(c) = self.port_count {
            write!(f, "/{c}")?;
        }
        write!(f, " {}", self.proto)?;
        for fmt in &self.formats {
            write!(f, " {fmt}")?;
        }
        f.write_str("\r\n")?;
        if let Some(i) = &self.information {
            write!(f, "i={i}\r\n")?;
        }
        for c in self.connection.iter().chain(&self.extra_connections) {
            write!(f, "c={c}\r\n")?;
        }
        for b in &self.bandwidth {
            write!(f, "b={b}\r\n")?;
        }
        if let Some(k) = &self.key {
            write!(f, "k={k}\r\n")?;
        }
        for a in &self.attributes {
            write!(f, "a={a}\r\n")?;
        }
        Ok(())
    }
}

/// A whole session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin: Origin,
    pub session_name: String,
    pub information: Option<String>,
    pub uri: Option<String>,
    pub emails: Vec<String>,
    pub phones: Vec<String>,
    pub connection: Option<Connection>,
    pub bandwidth: Vec<Bandwidth>,
    /// The first `t=` line (start, stop); `(0, 0)` for telephony.
    pub time: (u64, u64),
    /// `r=` lines and further `t=` lines, verbatim with their `r=`/`t=` prefix,
    /// written after the first `t=` in their original order.
    pub timing_extra: Vec<String>,
    pub zone: Option<String>,
    pub key: Option<String>,
    pub attributes: Vec<Attribute>,
    pub media: Vec<MediaDescription>,
}

/// The answerer supports none of the offered audio codecs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no common codec: offered {offered:?}, supported {supported:?}")]
pub struct NoCommonCodec {
    pub offered: Vec<String>,
    pub supported: Vec<String>,
}

/// Parses a number made of ASCII digits only (no sign, no spaces).
fn digits<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn number<T: FromStr>(tok: &str, line: usize, field: &str) -> Result<T, SdpError> {
    if tok.is_empty() || !tok.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(
            line,
            field,
            format!("`{}` is not a number", excerpt(tok)),
        ));
    }
    tok.parse()
        .map_err(|_| err(line, field, format!("`{}` is out of range", excerpt(tok))))
}

/// At most 40 characters of `s`, for error messages.
fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push_str("...");
    }
    out
}

fn tokens(value: &str) -> Vec<&str> {
    value.split(' ').filter(|t| !t.is_empty()).collect()
}

fn parse_connection_tokens(
    net: &str,
    addr_type: &str,
    address: &str,
) -> Result<Connection, String> {
    let mut parts = address.split('/');
    let addr = parts.next().unwrap_or_default();
    if addr.is_empty() {
        return Err("empty connection address".to_string());
    }
    let rest: Vec<&str> = parts.collect();
    let num = |s: &str, what: &str| -> Result<u32, String> {
        digits::<u32>(s).ok_or_else(|| format!("{what} `{}` is not a valid number", excerpt(s)))
    };
    let (ttl, count) = if addr_type.eq_ignore_ascii_case("IP4") {
        match rest.as_slice() {
            [] => (None, None),
            [ttl] => (Some(num(ttl, "TTL")?), None),
            [ttl, count] => (Some(num(ttl, "TTL")?), Some(num(count, "address count")?)),
            _ => return Err("too many `/` suffixes on the address".to_string()),
        }
    } else if addr_type.eq_ignore_ascii_case("IP6") {
        match rest.as_slice() {
            [] => (None, None),
            [count] => (None, Some(num(count, "address count")?)),
            _ => return Err("too many `/` suffixes on the address".to_string()),
        }
    } else if rest.is_empty() {
        (None, None)
    } else {
        return Err(format!("`/` suffix on an address of type {addr_type}"));
    };
    let ttl = match ttl {
        Some(t) => Some(u8::try_from(t).map_err(|_| format!("TTL {t} is above 255"))?),
        None => None,
    };
    Ok(Connection {
        net_type: net.to_string(),
        addr_type: addr_type.to_string(),
        address: addr.to_string(),
        ttl,
        count,
    })
}

fn parse_connection(value: &str, line: usize) -> Result<Connection, SdpError> {
    match tokens(value).as_slice() {
        [net, addr_type, address] => {
            parse_connection_tokens(net, addr_type, address).map_err(|r| err(line, "c= address", r))
        }
        t => Err(err(
            line,
            "c=",
            format!(
                "expected `<nettype> <addrtype> <address>`, found {} fields",
                t.len()
            ),
        )),
    }
}

fn parse_origin(value: &str, line: usize) -> Result<Origin, SdpError> {
    let t = tokens(value);
    let [username, sess_id, sess_version, net_type, addr_type, address] = t.as_slice() else {
        return Err(err(
            line,
            "o=",
            format!(
                "expected `<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`, found {} fields",
                t.len()
            ),
        ));
    };
    Ok(Origin {
        username: username.to_string(),
        sess_id: number(sess_id, line, "o= sess-id")?,
        sess_version: number(sess_version, line, "o= sess-version")?,
        net_type: net_type.to_string(),
        addr_type: addr_type.to_string(),
        address: address.to_string(),
    })
}

fn parse_bandwidth(value: &str, line: usize) -> Result<Bandwidth, SdpError> {
    let Some((bwtype, bw)) = value.split_once(':') else {
        return Err(err(line, "b=", "expected `<bwtype>:<bandwidth>`"));
    };
    if bwtype.is_empty() || bwtype.contains(' ') {
        return Err(err(
            line,
            "b= bwtype",
            format!("invalid type `{}`", excerpt(bwtype)),
        ));
    }
    Ok(Bandwidth {
        bwtype: bwtype.to_string(),
        bandwidth: number(bw, line, "b= bandwidth")?,
    })
}

fn parse_time(value: &str, line: usize) -> Result<(u64, u64), SdpError> {
    match tokens(value).as_slice() {
        [start, stop] => Ok((
            number(start, line, "t= start-time")?,
            number(stop, line, "t= stop-time")?,
        )),
        t => Err(err(
            line,
            "t=",
            format!(
                "expected `<start-time> <stop-time>`, found {} fields",
                t.len()
            ),
        )),
    }
}

fn parse_media(value: &str, line: usize) -> Result<MediaDescription, SdpError> {
    let t = tokens(value);
    let [media, port, proto, formats @ ..] = t.as_slice() else {
        return Err(err(
            line,
            "m=",
            format!(
                "expected `<media> <port> <proto> <fmt> ...`, found {} fields",
                t.len()
            ),
        ));
    };
    if formats.is_empty() {
        return Err(err(line, "m= fmt", "no media formats"));
    }
    let (port, port_count) = match port.split_once('/') {
        Some((p, c)) => (
            number(p, line, "m= port")?,
            Some(number(c, line, "m= number of ports")?),
        ),
        None => (number(port, line, "m= port")?, None),
    };
    let mut m = MediaDescription::new(
        media,
        port,
        proto,
        formats.iter().map(|f| f.to_string()).collect(),
    );
    m.port_count = port_count;
    Ok(m)
}

fn parse_attribute(value: &str, line: usize) -> Result<Attribute, SdpError> {
    let (name, v) = match value.split_once(':') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (value, None),
    };
    if name.is_empty() {
        return Err(err(line, "a=", "empty attribute name"));
    }
    Ok(Attribute {
        name: name.to_string(),
        value: v,
    })
}

fn set_once(
    slot: &mut Option<String>,
    value: &str,
    line: usize,
    field: &str,
) -> Result<(), SdpError> {
    if slot.is_some() {
        return Err(err(line, field, format!("duplicate {field} line")));
    }
    *slot = Some(value.to_string());
    Ok(())
}

/// One `<type>=<value>` line.
struct Line<'a> {
    no: usize,
    kind: u8,
    /// The value as received (used for free text: `s=`, `i=`, ...).
    raw: &'a str,
    /// The value without trailing whitespace (used for structured fields).
    value: &'a str,
}

fn split_lines(input: &[u8]) -> Result<Vec<Line<'_>>, SdpError> {
    let mut raw: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
    while raw.last().is_some_and(|l| l.is_empty() || *l == b"\r") {
        raw.pop();
    }
    let mut lines = Vec::with_capacity(raw.len());
    for (i, bytes) in raw.into_iter().enumerate() {
        let no = i + 1;
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let s = std::str::from_utf8(bytes).map_err(|e| {
            err(
                no,
                "line",
                format!("not valid UTF-8 at byte {}", e.valid_up_to()),
            )
        })?;
        if s.is_empty() {
            return Err(err(no, "line", "empty line"));
        }
        if s.contains(['\r', '\0']) {
            return Err(err(no, "line", "CR or NUL inside the line"));
        }
        let b = s.as_bytes();
        let kind = match b {
            [k, b'=', ..] if k.is_ascii_lowercase() => *k,
            _ => {
                return Err(err(
                    no,
                    "line",
                    format!("expected `<letter>=<value>`, found `{}`", excerpt(s)),
                ))
            }
        };
        let raw = s.get(2..).unwrap_or_default();
        lines.push(Line {
            no,
            kind,
            raw,
            value: raw.trim_end_matches([' ', '\t']),
        });
    }
    Ok(lines)
}

impl SessionDescription {
    /// Parses a session description.
    pub fn parse(input: &str) -> Result<SessionDescription, SdpError> {
        Self::parse_bytes(input.as_bytes())
    }

    /// Parses a session description from a message body (must be UTF-8).
    pub fn parse_bytes(input: &[u8]) -> Result<SessionDescription, SdpError> {
        let lines = split_lines(input)?;
        let end = lines.last().map_or(1, |l| l.no + 1);
        let line_of_kind = |idx: usize, kind: u8, what: &str| -> Result<&Line<'_>, SdpError> {
            let field = format!("{}=", kind as char);
            match lines.get(idx) {
                Some(l) if l.kind == kind => Ok(l),
                Some(l) => Err(err(
                    l.no,
                    &field,
                    format!("{what} must be {field}, found `{}=`", l.kind as char),
                )),
                None => Err(err(end, &field, format!("missing {field} line"))),
            }
        };
        let v = line_of_kind(0, b'v', "the first line")?;
        if v.value != "0" {
            return Err(err(
                v.no,
                "v=",
                format!("unsupported version `{}`", excerpt(v.value)),
            ));
        }
        let o = line_of_kind(1, b'o', "the second line")?;
        let origin = parse_origin(o.value, o.no)?;
        let s = line_of_kind(2, b's', "the third line")?;

        let mut sd = SessionDescription {
            origin,
            session_name: s.raw.to_string(),
            information: None,
            uri: None,
            emails: Vec::new(),
            phones: Vec::new(),
            connection: None,
            bandwidth: Vec::new(),
            time: (0, 0),
            timing_extra: Vec::new(),
            zone: None,
            key: None,
            attributes: Vec::new(),
            media: Vec::new(),
        };

        let mut time: Option<(u64, u64)> = None;
        let mut idx = 3;
        while let Some(l) = lines.get(idx) {
            let no = l.no;
            match l.kind {
                b'm' => break,
                b'i' => set_once(&mut sd.information, l.raw, no, "i=")?,
                b'u' => set_once(&mut sd.uri, l.value, no, "u=")?,
                b'e' => sd.emails.push(l.raw.to_string()),
                b'p' => sd.phones.push(l.raw.to_string()),
                b'c' => {
                    if sd.connection.is_some() {
                        return Err(err(no, "c=", "duplicate session-level c= line"));
                    }
                    sd.connection = Some(parse_connection(l.value, no)?);
                }
                b'b' => sd.bandwidth.push(parse_bandwidth(l.value, no)?),
                b't' => {
                    let t = parse_time(l.value, no)?;
                    if time.is_none() {
                        time = Some(t);
                    } else {
                        sd.timing_extra.push(format!("t={}", l.value));
                    }
                }
                b'r' => {
                    if time.is_none() {
                        return Err(err(no, "r=", "r= line before the t= line"));
                    }
                    if l.value.is_empty() {
                        return Err(err(no, "r=", "empty repeat time"));
                    }
                    sd.timing_extra.push(format!("r={}", l.value));
                }
                b'z' => set_once(&mut sd.zone, l.value, no, "z=")?,
                b'k' => set_once(&mut sd.key, l.value, no, "k=")?,
                b'a' => {
                    if time.is_none() {
                        return Err(err(no, "t=", "missing t= line before the a= lines"));
                    }
                    sd.attributes.push(parse_attribute(l.value, no)?);
                }
                b'v' | b'o' | b's' => {
                    let field = format!("{}=", l.kind as char);
                    return Err(err(no, &field, format!("duplicate {field} line")));
                }
                k => {
                    return Err(err(
                        no,
                        "line",
                        format!("unknown line type `{}=`", k as char),
                    ))
                }
            }
            idx += 1;
        }
        sd.time = time.ok_or_else(|| {
            err(
                lines.get(idx).map_or(end, |l| l.no),
                "t=",
                "missing mandatory t= line",
            )
        })?;

        while let Some(l) = lines.get(idx) {
            let no = l.no;
            if l.kind == b'm' {
                sd.media.push(parse_media(l.value, no)?);
                idx += 1;
                continue;
            }
            let Some(m) = sd.media.last_mut() else {
                return Err(err(no, "m=", "expected an m= line"));
            };
            match l.kind {
                b'i' => set_once(&mut m.information, l.raw, no, "i=")?,
                b'c' => {
                    let c = parse_connection(l.value, no)?;
                    if m.connection.is_none() {
                        m.connection = Some(c);
                    } else {
                        m.extra_connections.push(c);
                    }
                }
                b'b' => m.bandwidth.push(parse_bandwidth(l.value, no)?),
                b'k' => set_once(&mut m.key, l.value, no, "k=")?,
                b'a' => m.attributes.push(parse_attribute(l.value, no)?),
                k => {
                    let field = format!("{}=", k as char);
                    return Err(err(
                        no,
                        &field,
                        format!("{field} line not allowed in a media description"),
                    ));
                }
            }
            idx += 1;
        }
        Ok(sd)
    }

    /// The first `m=audio` section.
    pub fn audio(&self) -> Option<&MediaDescription> {
        self.media
            .iter()
            .find(|m| m.media.eq_ignore_ascii_case("audio"))
    }

    /// The connection that applies to `m`: its own `c=`, else the session's.
    pub fn connection_for<'s>(&'s self, m: &'s MediaDescription) -> Option<&'s Connection> {
        m.connection.as_ref().or(self.connection.as_ref())
    }

    /// Where to send `m`'s media: the effective `c=` address and the `m=` port.
    /// `None` when there is no `c=` or its address is not an IP address.
    pub fn media_address(&self, m: &MediaDescription) -> Option<SocketAddr> {
        let ip = self.connection_for(m)?.ip()?;
        Some(SocketAddr::new(ip, m.port))
    }

    /// The codecs of `m` in preference order.
    pub fn codecs(&self, m: &MediaDescription) -> Vec<Codec> {
        m.codecs()
    }

    /// Whether an active (port != 0) audio stream offers the codec `name`
    /// (case-insensitive encoding name such as `PCMU`).
    pub fn offers_codec(&self, name: &str) -> bool {
        self.media
            .iter()
            .filter(|m| m.media.eq_ignore_ascii_case("audio") && !m.is_rejected())
            .any(|m| m.codecs().iter().any(|c| c.name.eq_ignore_ascii_case(name)))
    }

    /// The direction of `m`: its own attribute, else the session-level one, else
    /// sendrecv.
    pub fn direction(&self, m: &MediaDescription) -> Direction {
        m.direction_attribute()
            .or_else(|| direction_in(&self.attributes))
            .unwrap_or_default()
    }

    /// Whether the first active audio stream is put on hold: `a=sendonly` or
    /// `a=inactive` (RFC 3264 8.4), or the RFC 2543 style `c=0.0.0.0`.
    pub fn is_hold(&self) -> bool {
        let Some(m) = self
            .media
            .iter()
            .find(|m| m.media.eq_ignore_ascii_case("audio") && !m.is_rejected())
        else {
            return false;
        };
        matches!(self.direction(m), Direction::SendOnly | Direction::Inactive)
            || self
                .connection_for(m)
                .is_some_and(Connection::is_unspecified)
    }

    /// An audio offer: `o=<username> <sess_id> <sess_id> IN IP4|IP6 <addr>`,
    /// `s=-`, session-level `c=`, `t=0 0`, one `m=audio <port> RTP/AVP` listing
    /// `codecs` (payload type, encoding name, clock rate) in order with an rtpmap
    /// for each (`a=fmtp:<pt> 0-15` added for telephone-event), `a=ptime` when
    /// given and the direction attribute.
    pub fn audio_offer(
        username: &str,
        sess_id: u64,
        addr: IpAddr,
        port: u16,
        codecs: &[(u8, &str, u32)],
        ptime: Option<u32>,
        direction: Direction,
    ) -> SessionDescription {
        let mut m = MediaDescription::new(
            "audio",
            port,
            "RTP/AVP",
            codecs.iter().map(|(pt, _, _)| pt.to_string()).collect(),
        );
        for &(pt, name, clock) in codecs {
            m.attributes.push(
                Rtpmap {
                    payload_type: pt,
                    encoding: name.to_string(),
                    clock_rate: clock,
                    channels: None,
                }
                .attribute(),
            );
            if name.eq_ignore_ascii_case("telephone-event") {
                m.attributes
                    .push(Attribute::new("fmtp", format!("{pt} 0-15")));
            }
        }
        if let Some(p) = ptime {
            m.attributes.push(Attribute::new("ptime", p.to_string()));
        }
        m.attributes.push(direction.attribute());
        SessionDescription {
            origin: Origin {
                username: if username.is_empty() { "-" } else { username }.to_string(),
                sess_id,
                sess_version: sess_id,
                net_type: "IN".to_string(),
                addr_type: addr_type_of(addr).to_string(),
                address: addr.to_string(),
            },
            session_name: "-".to_string(),
            information: None,
            uri: None,
            emails: Vec::new(),
            phones: Vec::new(),
            connection: Some(Connection::new(addr)),
            bandwidth: Vec::new(),
            time: (0, 0),
            timing_extra: Vec::new(),
            zone: None,
            key: None,
            attributes: Vec::new(),
            media: vec![m],
        }
    }

    /// The answer to this offer; see [`answer_for`].
    pub fn answer(
        &self,
        local_addr: IpAddr,
        local_port: u16,
        supported: &[&str],
    ) -> Result<SessionDescription, NoCommonCodec> {
        answer_for(self, local_addr, local_port, supported)
    }

    /// A copy for a re-INVITE with every active audio and video stream set to
    /// `dir` (`SendOnly` to hold, `SendRecv` to resume), session-level direction
    /// attributes removed, and the origin's session version incremented as RFC
    /// 3264 8 requires for a changed description.
    pub fn with_direction(&self, dir: Direction) -> SessionDescription {
        let mut sd = self.clone();
        sd.attributes
            .retain(|a| a.value.is_some() || Direction::from_name(&a.name).is_none());
        for m in &mut sd.media {
            let av = m.media.eq_ignore_ascii_case("audio") || m.media.eq_ignore_ascii_case("video");
            if av && !m.is_rejected() {
                m.set_direction(dir);
            }
        }
        sd.origin.sess_version = sd.origin.sess_version.wrapping_add(1);
        sd
    }
}

impl FromStr for SessionDescription {
    type Err = SdpError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SessionDescription::parse(s)
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v=0\r\no={}\r\ns={}\r\n", self.origin, self.session_name)?;
        if let Some(i) = &self.information {
            write!(f, "i={i}\r\n")?;
        }
        if let Some(u) = &self.uri {
            write!(f, "u={u}\r\n")?;
        }
        for e in &self.emails {
            write!(f, "e={e}\r\n")?;
        }
        for p in &self.phones {
            write!(f, "p={p}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        for b in &self.bandwidth {
            write!(f, "b={b}\r\n")?;
        }
        write!(f, "t={} {}\r\n", self.time.0, self.time.1)?;
        for line in &self.timing_extra {
            write!(f, "{line}\r\n")?;
        }
        if let Some(z) = &self.zone {
            write!(f, "z={z}\r\n")?;
        }
        if let Some(k) = &self.key {
            write!(f, "k={k}\r\n")?;
        }
        for a in &self.attributes {
            write!(f, "a={a}\r\n")?;
        }
        for m in &self.media {
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

/// The RFC 3264 answer to `offer` from `local_addr:local_port`.
///
/// The first active RTP audio stream with a codec in `supported` (encoding names,
/// case-insensitive) is accepted with the first of its codecs, in the offer's
/// order, that we support; telephone-event at the same clock rate is echoed with
/// its fmtp; the codec's fmtp and the offer's `a=ptime` are echoed; the direction
/// mirrors the offer's (sendonly -> recvonly, recvonly -> sendonly). Every other
/// `m=` line is rejected with port 0, keeping the number and order of streams.
///
/// The origin is `ucm` with the offer's session id and version (so a changed
/// re-offer gets a new answer version); callers that keep their own origin
/// across a dialog replace it.
pub fn answer_for(
    offer: &SessionDescription,
    local_addr: IpAddr,
    local_port: u16,
    supported: &[&str],
) -> Result<SessionDescription, NoCommonCodec> {
    let mut accepted = false;
    let mut offered: Vec<String> = Vec::new();
    let mut media = Vec::with_capacity(offer.media.len());
    for m in &offer.media {
        let candidate =
            !accepted && m.media.eq_ignore_ascii_case("audio") && !m.is_rejected() && m.is_rtp();
        let answer = if candidate {
            let codecs = m.codecs();
            for c in &codecs {
                if !offered.iter().any(|o| o.eq_ignore_ascii_case(&c.name)) {
                    offered.push(c.name.clone());
                }
            }
            let chosen = codecs.iter().find(|c| {
                !c.name.eq_ignore_ascii_case("telephone-event")
                    && supported.iter().any(|s| s.eq_ignore_ascii_case(&c.name))
            });
            chosen.map(|chosen| {
                accepted = true;
                answer_media(offer, m, chosen, &codecs, local_port)
            })
        } else {
            None
        };
        media
            .push(answer.unwrap_or_else(|| {
                MediaDescription::new(&m.media, 0, &m.proto, m.formats.clone())
            }));
    }
    if !accepted {
        return Err(NoCommonCodec {
            offered,
            supported: supported.iter().map(|s| s.to_string()).collect(),
        });
    }
    Ok(SessionDescription {
        origin: Origin {
            username: "ucm".to_string(),
            sess_id: offer.origin.sess_id,
            sess_version: offer.origin.sess_version,
            net_type: "IN".to_string(),
            addr_type: addr_type_of(local_addr).to_string(),
            address: local_addr.to_string(),
        },
        session_name: "-".to_string(),
        information: None,
        uri: None,
        emails: Vec::new(),
        phones: Vec::new(),
        connection: Some(Connection::new(local_addr)),
        bandwidth: Vec::new(),
        time: (0, 0),
        timing_extra: Vec::new(),
        zone: None,
        key: None,
        attributes: Vec::new(),
        media,
    })
}

fn answer_media(
    offer: &SessionDescription,
    m: &MediaDescription,
    chosen: &Codec,
    codecs: &[Codec],
    local_port: u16,
) -> MediaDescription {
    let event = codecs
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case("telephone-event") && c.clock == chosen.clock);
    let mut formats = vec![chosen.pt.to_string()];
    let mut attributes = Vec::new();
    for c in std::iter::once(chosen).chain(event) {
        if c.pt != chosen.pt {
            formats.push(c.pt.to_string());
        }
        attributes.push(
            Rtpmap {
                payload_type: c.pt,
                encoding: c.name.clone(),
                clock_rate: c.clock,
                channels: c.channels,
            }
            .attribute(),
        );
        if let Some(params) = m.fmtp(c.pt).filter(|p| !p.is_empty()) {
            attributes.push(Attribute::new("fmtp", format!("{} {}", c.pt, params)));
        }
    }
    if let Some(p) = m.ptime() {
        attributes.push(Attribute::new("ptime", p.to_string()));
    }
    attributes.push(offer.direction(m).reverse().attribute());
    let mut answer = MediaDescription::new(&m.media, local_port, &m.proto, formats);
    answer.attributes = attributes;
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Joins lines with CRLF, with a final CRLF.
    fn crlf(lines: &[&str]) -> String {
        let mut s = lines.join("\r\n");
        s.push_str("\r\n");
        s
    }

    /// An offer as sent by a Cisco IP Phone 8845 (SIP firmware 14.x) with video.
    fn cisco_8845_offer() -> String {
        crlf(&[
            "v=0",
            "o=Cisco-SIPUA 22951 0 IN IP4 10.20.30.41",
            "s=SIP Call",
            "b=AS:4064",
            "t=0 0",
            "m=audio 20480 RTP/AVP 114 9 124 0 8 116 18 101",
            "c=IN IP4 10.20.30.41",
            "b=TIAS:64000",
            "a=rtpmap:114 opus/48000/2",
            "a=fmtp:114 maxplaybackrate=16000;sprop-maxcapturerate=16000;maxaveragebitrate=64000;stereo=0;sprop-stereo=0;usedtx=0",
            "a=rtpmap:9 G722/8000",
            "a=rtpmap:124 ISAC/16000",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:116 iLBC/8000",
            "a=fmtp:116 mode=20",
            "a=rtpmap:18 G729/8000",
            "a=fmtp:18 annexb=yes",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-15",
            "a=sendrecv",
            "a=X-cisco-media:umoh",
            "a=ptime:20",
            "m=video 20482 RTP/AVP 126 97",
            "c=IN IP4 10.20.30.41",
            "b=TIAS:1000000",
            "a=rtpmap:126 H264/90000",
            "a=fmtp:126 profile-level-id=42801F;packetization-mode=1;level-asymmetry-allowed=1;max-fs=3601;max-rcmd-nalu-size=32000",
            "a=rtpmap:97 H264/90000",
            "a=fmtp:97 profile-level-id=42801F;packetization-mode=0;level-asymmetry-allowed=1;max-fs=3601",
            "a=imageattr:* recv [x=[32:16:1280],y=[18:9:720],par=1.7778,q=1.00]",
            "a=rtcp-fb:* nack pli",
            "a=rtcp-fb:* ccm fir",
            "a=sendrecv",
            "a=X-cisco-mari:v1",
            "a=X-cisco-mari-rate",
            "a=label:11",
            "a=content:main",
        ])
    }

    /// SIPp's built-in uac scenario offer.
    fn sipp_offer() -> String {
        crlf(&[
            "v=0",
            "o=user1 53655765 2353687637 IN IP4 127.0.0.1",
            "s=-",
            "c=IN IP4 127.0.0.1",
            "t=0 0",
            "m=audio 6000 RTP/AVP 0",
            "a=rtpmap:0 PCMU/8000",
        ])
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn parse_err(text: &str) -> SdpError {
        SessionDescription::parse(text).unwrap_err()
    }

    #[test]
    fn cisco_8845_offer_parses() {
        let text = cisco_8845_offer();
        let sdp = SessionDescription::parse(&text).unwrap();
        assert_eq!(sdp.origin.username, "Cisco-SIPUA");
        assert_eq!(sdp.origin.sess_id, 22951);
        assert_eq!(sdp.origin.sess_version, 0);
        assert_eq!(sdp.session_name, "SIP Call");
        assert_eq!(
            sdp.bandwidth,
            vec![Bandwidth {
                bwtype: "AS".into(),
                bandwidth: 4064
            }]
        );
        assert_eq!(sdp.time, (0, 0));
        assert_eq!(sdp.media.len(), 2);

        let audio = sdp.audio().unwrap();
        assert_eq!(audio.port, 20480);
        assert_eq!(audio.proto, "RTP/AVP");
        assert_eq!(
            audio.formats,
            ["114", "9", "124", "0", "8", "116", "18", "101"]
        );
        assert_eq!(audio.bandwidth[0].to_string(), "TIAS:64000");
        assert_eq!(
            sdp.media_address(audio),
            Some("10.20.30.41:20480".parse().unwrap())
        );
        let names: Vec<String> = sdp.codecs(audio).into_iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "opus",
                "G722",
                "ISAC",
                "PCMU",
                "PCMA",
                "iLBC",
                "G729",
                "telephone-event"
            ]
        );
        assert_eq!(
            audio.rtpmap(114),
            Some(Rtpmap {
                payload_type: 114,
                encoding: "opus".into(),
                clock_rate: 48_000,
                channels: Some(2)
            })
        );
        assert_eq!(audio.fmtp(101).as_deref(), Some("0-15"));
        assert_eq!(audio.fmtp(18).as_deref(), Some("annexb=yes"));
        assert_eq!(audio.fmtp(0), None);
        assert_eq!(audio.ptime(), Some(20));
        assert_eq!(sdp.direction(audio), Direction::SendRecv);
        assert_eq!(
            audio
                .attribute("X-cisco-media")
                .and_then(|a| a.value.as_deref()),
            Some("umoh")
        );
        assert!(sdp.offers_codec("PCMU"));
        assert!(sdp.offers_codec("pcma"));
        assert!(sdp.offers_codec("G722"));
        assert!(!sdp.offers_codec("H264")); // video only
        assert!(!sdp.is_hold());

        let video = &sdp.media[1];
        assert_eq!(video.media, "video");
        assert!(video
            .attribute("X-cisco-mari-rate")
            .is_some_and(|a| a.value.is_none()));
        assert_eq!(video.attribute_values("rtcp-fb").count(), 2);
    }

    #[test]
    fn cisco_offer_round_trips_byte_for_byte() {
        let text = cisco_8845_offer();
        let sdp = SessionDescription::parse(&text).unwrap();
        assert_eq!(sdp.to_string(), text);
        assert_eq!(text.parse::<SessionDescription>().unwrap(), sdp);
        assert!(sdp.to_string().contains("a=X-cisco-media:umoh\r\n"));
        assert!(sdp.to_string().contains("a=X-cisco-mari:v1\r\n"));
    }

    #[test]
    fn lf_only_line_ends_are_accepted() {
        let crlf_text = cisco_8845_offer();
        let lf_text = crlf_text.replace("\r\n", "\n");
        assert_eq!(
            SessionDescription::parse(&lf_text).unwrap(),
            SessionDescription::parse(&crlf_text).unwrap()
        );
        // Mixed line ends, no final newline, trailing blank lines.
        let mixed = "v=0\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\nt=0 0\r\nm=audio 4000 RTP/AVP 0";
        assert_eq!(
            SessionDescription::parse(mixed).unwrap().media[0].port,
            4000
        );
        let trailing = format!("{}\r\n\r\n\n", sipp_offer());
        assert!(SessionDescription::parse(&trailing).is_ok());
        assert!(SessionDescription::parse_bytes(sipp_offer().as_bytes()).is_ok());
    }

    #[test]
    fn sipp_default_offer_and_answer() {
        let offer = SessionDescription::parse(&sipp_offer()).unwrap();
        assert_eq!(offer.origin.sess_version, 2_353_687_637);
        let audio = offer.audio().unwrap();
        assert_eq!(audio.connection, None);
        assert_eq!(
            offer.media_address(audio),
            Some("127.0.0.1:6000".parse().unwrap())
        );
        assert_eq!(offer.direction(audio), Direction::SendRecv);

        let answer = answer_for(&offer, ip("192.0.2.10"), 16_384, &["PCMU", "PCMA"]).unwrap();
        assert_eq!(
            answer.to_string(),
            crlf(&[
                "v=0",
                "o=ucm 53655765 2353687637 IN IP4 192.0.2.10",
                "s=-",
                "c=IN IP4 192.0.2.10",
                "t=0 0",
                "m=audio 16384 RTP/AVP 0",
                "a=rtpmap:0 PCMU/8000",
                "a=sendrecv",
            ])
        );
        assert_eq!(
            SessionDescription::parse(&answer.to_string()).unwrap(),
            answer
        );
    }

    #[test]
    fn answer_to_cisco_offer() {
        let offer = SessionDescription::parse(&cisco_8845_offer()).unwrap();
        let answer = offer
            .answer(ip("10.0.0.5"), 30_000, &["PCMA", "PCMU"])
            .unwrap();
        // The offerer's preference wins: PCMU comes before PCMA in the offer.
        let audio = answer.audio().unwrap();
        assert_eq!(audio.port, 30_000);
        assert_eq!(audio.formats, ["0", "101"]);
        assert_eq!(
            answer.codecs(audio),
            vec![
                Codec {
                    pt: 0,
                    name: "PCMU".into(),
                    clock: 8000,
                    channels: None
                },
                Codec {
                    pt: 101,
                    name: "telephone-event".into(),
                    clock: 8000,
                    channels: None
                }
            ]
        );
        assert_eq!(audio.fmtp(101).as_deref(), Some("0-15"));
        assert_eq!(audio.ptime(), Some(20));
        assert_eq!(answer.direction(audio), Direction::SendRecv);
        assert_eq!(
            answer.media_address(audio),
            Some("10.0.0.5:30000".parse().unwrap())
        );
        // Video is rejected, keeping the m= line count and order.
        assert_eq!(answer.media.len(), 2);
        assert_eq!(answer.media[1].media, "video");
        assert_eq!(answer.media[1].port, 0);
        assert_eq!(answer.media[1].formats, ["126", "97"]);
        assert!(answer.media[1].attributes.is_empty());

        // G.722 when supported (first in offer order among supported).
        let answer = offer
            .answer(ip("10.0.0.5"), 30_000, &["PCMU", "g722"])
            .unwrap();
        assert_eq!(answer.audio().unwrap().formats, ["9", "101"]);
        // Codec fmtp echoed.
        let answer = offer.answer(ip("10.0.0.5"), 30_000, &["G729"]).unwrap();
        assert_eq!(
            answer.audio().unwrap().fmtp(18).as_deref(),
            Some("annexb=yes")
        );
    }

    #[test]
    fn g729_only_offer_has_no_common_codec_with_pcmu() {
        let offer = SessionDescription::parse(&crlf(&[
            "v=0",
            "o=CiscoSystemsCCM-SIP 2000 1 IN IP4 10.1.1.1",
            "s=SIP Call",
            "c=IN IP4 10.1.1.50",
            "t=0 0",
            "m=audio 24580 RTP/AVP 18 101",
            "a=rtpmap:18 G729/8000",
            "a=fmtp:18 annexb=no",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-15",
            "a=ptime:20",
        ]))
        .unwrap();
        assert!(offer.offers_codec("G729"));
        assert!(!offer.offers_codec("PCMU"));
        let err = answer_for(&offer, ip("10.0.0.5"), 30_000, &["PCMU"]).unwrap_err();
        assert_eq!(
            err,
            NoCommonCodec {
                offered: vec!["G729".into(), "telephone-event".into()],
                supported: vec!["PCMU".into()]
            }
        );
        assert!(err.to_string().starts_with("no common codec"));
        // telephone-event alone is not a codec.
        assert!(answer_for(&offer, ip("10.0.0.5"), 30_000, &["telephone-event"]).is_err());
        let ok = answer_for(&offer, ip("10.0.0.5"), 30_000, &["PCMU", "G729"]).unwrap();
        assert_eq!(ok.audio().unwrap().formats, ["18", "101"]);
        assert_eq!(ok.audio().unwrap().fmtp(18).as_deref(), Some("annexb=no"));
    }

    #[test]
    fn static_payload_types_without_rtpmap() {
        let offer = SessionDescription::parse(&crlf(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.7",
            "s= ",
            "c=IN IP4 198.51.100.7",
            "t=0 0",
            "m=audio 49170 RTP/AVP 18 9 8 0 13 99",
        ]))
        .unwrap();
        assert_eq!(offer.session_name, " ");
        let codecs = offer.codecs(offer.audio().unwrap());
        let names: Vec<(u8, &str, u32)> = codecs
            .iter()
            .map(|c| (c.pt, c.name.as_str(), c.clock))
            .collect();
        // 99 is dynamic without an rtpmap: unknown, left out.
        assert_eq!(
            names,
            [
                (18, "G729", 8000),
                (9, "G722", 8000),
                (8, "PCMA", 8000),
                (0, "PCMU", 8000),
                (13, "CN", 8000)
            ]
        );
        let answer = answer_for(&offer, ip("198.51.100.1"), 5004, &["PCMA", "PCMU"]).unwrap();
        assert_eq!(answer.audio().unwrap().formats, ["8"]);
        assert!(answer.to_string().contains("a=rtpmap:8 PCMA/8000\r\n"));
        // Session name " " survives serialization.
        assert!(offer.to_string().contains("\r\ns= \r\n"));
    }

    #[test]
    fn ipv6_connection() {
        let offer = SessionDescription::parse(&crlf(&[
            "v=0",
            "o=alice 2890844526 2890844526 IN IP6 2001:db8::10",
            "s=-",
            "c=IN IP6 2001:db8::10",
            "t=0 0",
            "m=audio 49170 RTP/AVP 0 8",
            "c=IN IP6 2001:db8::20",
            "a=rtcp:49171 IN IP6 2001:db8::21",
        ]))
        .unwrap();
        let audio = offer.audio().unwrap();
        // Media-level c= wins over session-level.
        assert_eq!(
            offer.media_address(audio),
            Some("[2001:db8::20]:49170".parse().unwrap())
        );
        assert_eq!(
            audio.rtcp(),
            Some(RtcpAttr {
                port: 49171,
                connection: Some(Connection::new(ip("2001:db8::21")))
            })
        );
        let answer = answer_for(&offer, ip("2001:db8::1"), 6000, &["PCMA"]).unwrap();
        let text = answer.to_string();
        assert!(text.contains("o=ucm 2890844526 2890844526 IN IP6 2001:db8::1\r\n"));
        assert!(text.contains("c=IN IP6 2001:db8::1\r\n"));
        assert_eq!(
            answer.media_address(answer.audio().unwrap()),
            Some("[2001:db8::1]:6000".parse().unwrap())
        );
    }

    #[test]
    fn rtcp_attribute() {
        assert_eq!(
            RtcpAttr::parse("53021"),
            Some(RtcpAttr {
                port: 53021,
                connection: None
            })
        );
        assert_eq!(
            RtcpAttr::parse("53021 IN IP4 126.16.64.4")
                .and_then(|r| r.connection)
                .map(|c| c.address),
            Some("126.16.64.4".to_string())
        );
        assert_eq!(RtcpAttr::parse("x"), None);
        assert_eq!(RtcpAttr::parse("1 IN IP4"), None);
    }

    #[test]
    fn hold_offers() {
        let base = |dir_line: &str, c: &str| {
            SessionDescription::parse(&crlf(&[
                "v=0",
                "o=Cisco-SIPUA 22951 1 IN IP4 10.20.30.41",
                "s=SIP Call",
                "t=0 0",
                "m=audio 20480 RTP/AVP 0 101",
                c,
                "a=rtpmap:0 PCMU/8000",
                "a=rtpmap:101 telephone-event/8000",
                "a=fmtp:101 0-15",
                dir_line,
            ]))
            .unwrap()
        };
        let c = "c=IN IP4 10.20.30.41";
        let active = base("a=sendrecv", c);
        assert!(!active.is_hold());

        let sendonly = base("a=sendonly", c);
        assert!(sendonly.is_hold());
        let answer = answer_for(&sendonly, ip("10.0.0.5"), 4000, &["PCMU"]).unwrap();
        assert_eq!(
            answer.direction(answer.audio().unwrap()),
            Direction::RecvOnly
        );
        assert!(!answer.is_hold());

        let inactive = base("a=inactive", c);
        assert!(inactive.is_hold());
        let answer = answer_for(&inactive, ip("10.0.0.5"), 4000, &["PCMU"]).unwrap();
        assert_eq!(
            answer.direction(answer.audio().unwrap()),
            Direction::Inactive
        );

        let recvonly = base("a=recvonly", c);
        assert!(!recvonly.is_hold());
        let answer = answer_for(&recvonly, ip("10.0.0.5"), 4000, &["PCMU"]).unwrap();
        assert_eq!(
            answer.direction(answer.audio().unwrap()),
            Direction::SendOnly
        );

        // RFC 2543 hold: c=0.0.0.0 with sendrecv.
        let old_style = base("a=sendrecv", "c=IN IP4 0.0.0.0");
        assert!(old_style.is_hold());
        let audio = old_style.audio().unwrap();
        assert_eq!(
            old_style.media_address(audio),
            Some("0.0.0.0:20480".parse().unwrap())
        );
        // Session-level direction applies when the media has none.
        let session_level = SessionDescription::parse(&crlf(&[
            "v=0",
            "o=- 5 6 IN IP4 10.1.1.1",
            "s=-",
            "c=IN IP4 10.1.1.1",
            "t=0 0",
            "a=sendonly",
            "m=audio 4000 RTP/AVP 0",
        ]))
        .unwrap();
        assert!(session_level.is_hold());
        assert_eq!(
            session_level.direction(session_level.audio().unwrap()),
            Direction::SendOnly
        );
    }

    #[test]
    fn offer_builder_and_reinvite_hold_resume() {
        let offer = SessionDescription::audio_offer(
            "ucm",
            1_700_000_000,
            ip("192.0.2.10"),
            16_384,
            &[
                (0, "PCMU", 8000),
                (8, "PCMA", 8000),
                (101, "telephone-event", 8000),
            ],
            Some(20),
            Direction::SendRecv,
        );
        let text = offer.to_string();
        assert_eq!(
            text,
            crlf(&[
                "v=0",
                "o=ucm 1700000000 1700000000 IN IP4 192.0.2.10",
                "s=-",
                "c=IN IP4 192.0.2.10",
                "t=0 0",
                "m=audio 16384 RTP/AVP 0 8 101",
                "a=rtpmap:0 PCMU/8000",
                "a=rtpmap:8 PCMA/8000",
                "a=rtpmap:101 telephone-event/8000",
                "a=fmtp:101 0-15",
                "a=ptime:20",
                "a=sendrecv",
            ])
        );
        assert_eq!(SessionDescription::parse(&text).unwrap(), offer);
        assert!(offer.offers_codec("PCMA"));

        let hold = offer.with_direction(Direction::SendOnly);
        assert!(hold.is_hold());
        assert_eq!(hold.origin.sess_version, 1_700_000_001);
        let audio = hold.audio().unwrap();
        assert_eq!(
            audio
                .attributes
                .iter()
                .filter(|a| Direction::from_name(&a.name).is_some())
                .count(),
            1
        );
        assert!(hold.to_string().contains("a=sendonly\r\n"));
        let resume = hold.with_direction(Direction::SendRecv);
        assert!(!resume.is_hold());
        assert_eq!(resume.origin.sess_version, 1_700_000_002);
        assert_eq!(
            resume.direction(resume.audio().unwrap()),
            Direction::SendRecv
        );

        // The far end's answer to our hold is recvonly.
        let answer = answer_for(&hold, ip("192.0.2.20"), 20_000, &["PCMA"]).unwrap();
        assert_eq!(answer.audio().unwrap().formats, ["8", "101"]);
        assert_eq!(
            answer.direction(answer.audio().unwrap()),
            Direction::RecvOnly
        );

        let v6 = SessionDescription::audio_offer(
            "",
            1,
            ip("::1"),
            5000,
            &[(0, "PCMU", 8000)],
            None,
            Direction::Inactive,
        );
        assert!(v6.to_string().contains("o=- 1 1 IN IP6 ::1\r\n"));
        assert!(v6.is_hold());
    }

    #[test]
    fn direction_helpers() {
        assert_eq!(Direction::default(), Direction::SendRecv);
        assert_eq!(Direction::SendOnly.reverse(), Direction::RecvOnly);
        assert_eq!(Direction::RecvOnly.reverse(), Direction::SendOnly);
        assert_eq!(Direction::Inactive.reverse(), Direction::Inactive);
        assert!(Direction::SendOnly.sends() && !Direction::SendOnly.receives());
        assert_eq!(Direction::from_name("SENDONLY"), Some(Direction::SendOnly));
        assert_eq!(Direction::from_name("ptime"), None);
        assert_eq!(Direction::Inactive.to_string(), "inactive");
    }

    #[test]
    fn multicast_and_other_lines_round_trip() {
        let text = crlf(&[
            "v=0",
            "o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5",
            "s=SDP Seminar",
            "i=A Seminar on the session description protocol",
            "u=http://www.example.com/seminars/sdp.pdf",
            "e=j.doe@example.com (Jane Doe)",
            "p=+1 617 555-6011",
            "c=IN IP4 224.2.17.12/127",
            "b=CT:128",
            "t=2873397496 2873404696",
            "r=7d 1h 0 25h",
            "t=2873407496 2873414696",
            "z=2882844526 -1h 2898848070 0",
            "k=prompt",
            "a=recvonly",
            "m=audio 49170 RTP/AVP 0",
            "i=main audio",
            "c=IN IP4 224.2.1.1/127/3",
            "c=IN IP4 224.2.2.1/127",
            "b=AS:64",
            "k=prompt",
            "a=rtpmap:0 PCMU/8000",
            "m=video 51372/2 RTP/AVP 99",
            "c=IN IP6 FF15::101/3",
            "a=rtpmap:99 h263-1998/90000",
            "m=application 9 TCP/BFCP *",
            "a=floorctrl:c-only",
        ]);
        let sdp = SessionDescription::parse(&text).unwrap();
        assert_eq!(sdp.to_string(), text);
        assert_eq!(
            sdp.connection,
            Some(Connection {
                net_type: "IN".into(),
                addr_type: "IP4".into(),
                address: "224.2.17.12".into(),
                ttl: Some(127),
                count: None
            })
        );
        assert_eq!(sdp.timing_extra.len(), 2);
        let audio = sdp.audio().unwrap();
        assert_eq!(audio.connection.as_ref().and_then(|c| c.count), Some(3));
        assert_eq!(audio.extra_connections.len(), 1);
        assert_eq!(sdp.media[1].port_count, Some(2));
        assert_eq!(
            sdp.media[1].connection.as_ref().map(|c| (c.ttl, c.count)),
            Some((None, Some(3)))
        );
        assert_eq!(sdp.direction(audio), Direction::RecvOnly);
        assert_eq!(sdp.media[2].formats, ["*"]);
        // A host name is not a media address.
        let named = text.replace("c=IN IP4 224.2.1.1/127/3", "c=IN IP4 media.example.com");
        let named = SessionDescription::parse(&named).unwrap();
        assert_eq!(named.media_address(named.audio().unwrap()), None);
    }

    #[test]
    fn malformed_descriptions_name_line_and_field() {
        let sipp = sipp_offer();
        let lines: Vec<&str> = sipp.lines().collect();
        let with = |i: usize, replacement: &str| {
            let mut l = lines.clone();
            l[i] = replacement;
            crlf(&l)
        };
        let without = |i: usize| {
            let mut l = lines.clone();
            l.remove(i);
            crlf(&l)
        };

        let e = parse_err("");
        assert_eq!((e.line, e.field.as_str()), (1, "v="));
        let e = parse_err(&without(0));
        assert_eq!((e.line, e.field.as_str()), (1, "v="));
        assert!(e.reason.contains("first line"), "{e}");
        let e = parse_err(&with(0, "v=1"));
        assert_eq!((e.line, e.field.as_str()), (1, "v="));
        assert!(e.reason.contains("version"));
        // s= before o=.
        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        let e = parse_err(&crlf(&swapped));
        assert_eq!((e.line, e.field.as_str()), (2, "o="));
        let e = parse_err(&without(2));
        assert_eq!((e.line, e.field.as_str()), (3, "s="));
        let e = parse_err("v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n");
        assert_eq!((e.line, e.field.as_str()), (3, "s="));
        assert_eq!(e.reason, "missing s= line");
        // Missing t=.
        let e = parse_err(&without(4));
        assert_eq!((e.line, e.field.as_str()), (5, "t="));
        assert_eq!(e.to_string(), "SDP line 5: t=: missing mandatory t= line");
        let e = parse_err("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\n");
        assert_eq!((e.line, e.field.as_str()), (4, "t="));
        // a= before t=.
        let e = parse_err("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\na=sendrecv\nt=0 0\n");
        assert_eq!((e.line, e.field.as_str()), (4, "t="));
        // Bad o= fields.
        let e = parse_err(&with(1, "o=user1 53655765 IN IP4 127.0.0.1"));
        assert_eq!((e.line, e.field.as_str()), (2, "o="));
        assert!(e.reason.contains("found 5 fields"));
        let e = parse_err(&with(1, "o=user1 x 1 IN IP4 127.0.0.1"));
        assert_eq!((e.line, e.field.as_str()), (2, "o= sess-id"));
        let e = parse_err(&with(
            1,
            "o=user1 1 99999999999999999999999 IN IP4 127.0.0.1",
        ));
        assert_eq!((e.line, e.field.as_str()), (2, "o= sess-version"));
        assert!(e.reason.contains("out of range"));
        let e = parse_err(&with(1, "o=user1 +1 1 IN IP4 127.0.0.1"));
        assert_eq!(e.field, "o= sess-id");
        // Bad c=.
        let e = parse_err(&with(3, "c=IN IP4"));
        assert_eq!((e.line, e.field.as_str()), (4, "c="));
        let e = parse_err(&with(3, "c=IN IP4 224.0.0.1/300"));
        assert_eq!((e.line, e.field.as_str()), (4, "c= address"));
        assert!(e.reason.contains("TTL 300"));
        let e = parse_err(&with(3, "c=IN IP6 ff02::1/2/3"));
        assert_eq!(e.field, "c= address");
        // Bad t=.
        let e = parse_err(&with(4, "t=0"));
        assert_eq!((e.line, e.field.as_str()), (5, "t="));
        let e = parse_err(&with(4, "t=now 0"));
        assert_eq!((e.line, e.field.as_str()), (5, "t= start-time"));
        // Bad m=.
        let e = parse_err(&with(5, "m=audio 70000 RTP/AVP 0"));
        assert_eq!((e.line, e.field.as_str()), (6, "m= port"));
        let e = parse_err(&with(5, "m=audio 6000 RTP/AVP"));
        assert_eq!((e.line, e.field.as_str()), (6, "m= fmt"));
        let e = parse_err(&with(5, "m=audio 6000"));
        assert_eq!((e.line, e.field.as_str()), (6, "m="));
        let e = parse_err(&with(5, "m=audio 6000/x RTP/AVP 0"));
        assert_eq!((e.line, e.field.as_str()), (6, "m= number of ports"));
        // Bad b=.
        let e = parse_err(&with(3, "b=AS64"));
        assert_eq!((e.line, e.field.as_str()), (4, "b="));
        let e = parse_err(&with(3, "b=AS:lots"));
        assert_eq!(e.field, "b= bandwidth");
        // Line syntax.
        let e = parse_err(&with(6, "a rtpmap:0 PCMU/8000"));
        assert_eq!((e.line, e.field.as_str()), (7, "line"));
        assert!(e.reason.contains("expected `<letter>=<value>`"));
        let e = parse_err(&with(6, "A=rtpmap:0 PCMU/8000"));
        assert_eq!(e.line, 7);
        let e = parse_err(&with(6, "a="));
        assert_eq!((e.line, e.field.as_str()), (7, "a="));
        let e = parse_err(&with(6, "x=unknown"));
        assert_eq!((e.line, e.field.as_str()), (7, "x="));
        let e = parse_err(&with(3, "x=unknown"));
        assert_eq!((e.line, e.field.as_str()), (4, "line"));
        assert!(e.reason.contains("unknown line type `x=`"));
        let e = parse_err(&with(6, "t=0 0"));
        assert_eq!((e.line, e.field.as_str()), (7, "t="));
        assert!(e.reason.contains("not allowed in a media description"));
        let e = parse_err(&with(3, "s=again"));
        assert_eq!((e.line, e.field.as_str()), (4, "s="));
        assert!(e.reason.contains("duplicate"));
        let e = parse_err(&with(3, ""));
        assert_eq!((e.line, e.reason.as_str()), (4, "empty line"));
        let e = parse_err(&with(3, "c=IN IP4 1.2.3.4\rc=IN IP4 1.2.3.4"));
        assert_eq!(e.line, 4);
        let e = parse_err("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\ni=one\ni=two\nt=0 0\n");
        assert_eq!((e.line, e.field.as_str()), (5, "i="));
        assert!(e.reason.contains("duplicate"));
        // Not UTF-8.
        let mut bytes = sipp.clone().into_bytes();
        bytes[10] = 0xFF;
        let e = SessionDescription::parse_bytes(&bytes).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (2, "line"));
        assert!(e.reason.contains("UTF-8"));
    }

    #[test]
    fn attribute_parsers_reject_garbage() {
        assert_eq!(Rtpmap::parse("0 PCMU"), None);
        assert_eq!(Rtpmap::parse("200 PCMU/8000"), None);
        assert_eq!(Rtpmap::parse("0 /8000"), None);
        assert_eq!(Rtpmap::parse("0 PCMU/8000/1/2"), None);
        assert_eq!(Rtpmap::parse("x PCMU/8000"), None);
        assert_eq!(
            Rtpmap::parse("97 L16/16000/1").map(|r| r.to_string()),
            Some("97 L16/16000/1".to_string())
        );
        assert_eq!(Fmtp::parse(""), None);
        assert_eq!(
            Fmtp::parse("101 0-15"),
            Some(Fmtp {
                format: "101".into(),
                params: "0-15".into()
            })
        );
        let m = MediaDescription {
            attributes: vec![
                Attribute::new("ptime", "abc"),
                Attribute::new("rtpmap", "garbage"),
                Attribute::new("maxptime", "40"),
            ],
            ..MediaDescription::new("audio", 1, "RTP/AVP", vec!["0".into(), "x".into()])
        };
        assert_eq!(m.ptime(), None);
        assert_eq!(m.maxptime(), Some(40));
        assert!(m.rtpmaps().is_empty());
        assert_eq!(m.codecs().len(), 1);
        assert_eq!(m.direction_attribute(), None);
    }

    #[test]
    fn parser_never_panics_and_round_trips_on_mutations() {
        let base = cisco_8845_offer().into_bytes();
        let check = |data: &[u8]| {
            if let Ok(sdp) = SessionDescription::parse_bytes(data) {
                let again = SessionDescription::parse(&sdp.to_string()).unwrap();
                assert_eq!(again, sdp);
            }
        };
        for n in 0..base.len() {
            check(&base[..n]);
        }
        // Flip and replace bytes at every position of the first 400.
        for i in 0..400.min(base.len()) {
            for b in [b' ', b'/', b':', b'\n', b'\r', b'0', b'=', 0u8, 0xC3] {
                let mut data = base.clone();
                data[i] = b;
                check(&data);
            }
        }
    }
}
