//! Traffic classes and how flows are put into them.
//!
//! In order of precedence, a flow is:
//! 1. signalling or service traffic by its well-known port ([`class_by_port`]): SIP 5060/5061
//!    (UDP, TCP), SCCP 2000, CTI 2748, Assistant 2912, HTTP(S) 80/8080/443/8443, TFTP 69/UDP and
//!    6970/TCP;
//! 2. routers' network control: OSPF, EIGRP, PIM, VRRP, RSVP... by IP protocol
//!    ([`is_network_control_protocol`]), IGMP when it carries messages only routers send
//!    ([`is_router_igmp`]: queries, not hosts' reports), BGP, LDP, RIP, HSRP, GLBP, BFD, Babel
//!    by port ([`network_control_port`]). NTP is not: Cisco IOS routers mark their own NTP CS6,
//!    hosts (phones) send it at 0 and Cisco's design guide puts it in network management
//!    (CS2), so no one marking fits it and it stays in `other`;
//! 3. RTP or RTCP announced in an SDP body seen in the capture ([`MediaBook`]): an endpoint
//!    equal to a `c=` address and `m=` port is RTP of that medium (audio and image: voice;
//!    video: video), the `a=rtcp` port (or `m=` port + 1) its RTCP;
//!    when addresses differ (NAT), a flow whose two ports were both announced for the same
//!    medium;
//! 4. SIP found by content on another port (a UDP datagram or a TCP segment that parses as a
//!    SIP message); HTTP likewise, and HTTPS by its TLS ClientHello offering HTTP in ALPN
//!    ([`is_https_client_hello`]: the EMCC inter-cluster API between two nodes' HTTPS
//!    listeners on ports that are not 443/8443 is phone-service-like HTTP, not signalling);
//! 5. a TFTP transfer: UDP to/from the port a client sent a TFTP request from;
//! 6. multicast media: UDP to 239.0.0.0/8 or an IPv6 multicast group wider than link scope
//!    whose packets look like RTP (so SSDP on 239.255.255.250 is not media): voice, or video
//!    when the RTP heuristic says so;
//! 7. RTP by heuristics ([`RtpGuess`]): version 2, a plausible payload type, one SSRC, over
//!    enough packets (voice, or video for video payload types or large packets);
//! 8. everything else: other.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use crate::pcap::flow::Endpoint;
use crate::wire::sdp::SessionDescription;
use crate::wire::sip::SipMessage;

/// Traffic classes of the DSCP audit; the names are the policy's keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrafficClass {
    Sip,
    Sccp,
    Cti,
    Assistant,
    Http,
    Tftp,
    Voice,
    Video,
    /// Routers' control traffic (routing, first-hop redundancy, multicast queries).
    NetworkControl,
    Other,
}

impl TrafficClass {
    pub const ALL: [TrafficClass; 10] = [
        TrafficClass::Sip,
        TrafficClass::Sccp,
        TrafficClass::Cti,
        TrafficClass::Assistant,
        TrafficClass::Http,
        TrafficClass::Tftp,
        TrafficClass::Voice,
        TrafficClass::Video,
        TrafficClass::NetworkControl,
        TrafficClass::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrafficClass::Sip => "sip",
            TrafficClass::Sccp => "sccp",
            TrafficClass::Cti => "cti",
            TrafficClass::Assistant => "assistant",
            TrafficClass::Http => "http",
            TrafficClass::Tftp => "tftp",
            TrafficClass::Voice => "voice",
            TrafficClass::Video => "video",
            TrafficClass::NetworkControl => "network-control",
            TrafficClass::Other => "other",
        }
    }
}

impl fmt::Display for TrafficClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// How a flow's class was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// A well-known port.
    Port,
    /// The IP protocol (OSPF, PIM...), or IGMP messages only routers send.
    Protocol,
    /// RTP announced in SDP.
    Sdp,
    /// RTCP of a stream announced in SDP.
    SdpRtcp,
    /// Both ports announced in SDP for the same medium, addresses not (NAT, capture point
    /// behind an address translation).
    SdpPorts,
    /// SIP messages on a port that is not 5060/5061.
    SipContent,
    /// HTTP messages (reassembled) on a port that is not an HTTP port.
    HttpContent,
    /// A TLS ClientHello offering HTTP (ALPN) on a port that is not an HTTP port.
    TlsAlpn,
    /// The transfer of a TFTP request seen earlier.
    TftpTransfer,
    /// UDP to a multicast group.
    Multicast,
    /// RTP heuristics.
    RtpHeuristic,
    /// RTCP heuristics.
    RtcpHeuristic,
    /// Nothing matched.
    None,
    /// The flow table was full; packets of new flows land here.
    TableFull,
}

impl Evidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::Port => "port",
            Evidence::Protocol => "protocol",
            Evidence::Sdp => "sdp",
            Evidence::SdpRtcp => "sdp-rtcp",
            Evidence::SdpPorts => "sdp-ports",
            Evidence::SipContent => "sip-content",
            Evidence::HttpContent => "http-content",
            Evidence::TlsAlpn => "tls-alpn",
            Evidence::TftpTransfer => "tftp-transfer",
            Evidence::Multicast => "multicast",
            Evidence::RtpHeuristic => "rtp-heuristic",
            Evidence::RtcpHeuristic => "rtcp-heuristic",
            Evidence::None => "none",
            Evidence::TableFull => "flow-table-full",
        }
    }
}

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;

/// The class a well-known port gives, for `protocol` (6 TCP, 17 UDP).
pub fn port_class(protocol: u8, port: u16) -> Option<TrafficClass> {
    match (protocol, port) {
        (TCP | UDP, 5060) | (TCP, 5061) => Some(TrafficClass::Sip),
        (TCP, 2000) => Some(TrafficClass::Sccp),
        (TCP, 2748) => Some(TrafficClass::Cti),
        (TCP, 2912) => Some(TrafficClass::Assistant),
        (TCP, 80 | 8080 | 443 | 8443) => Some(TrafficClass::Http),
        (UDP, 69) | (TCP, 6970) => Some(TrafficClass::Tftp),
        _ => None,
    }
}

/// The class of a flow between two ports by the well-known one (the lower port when both are).
pub fn class_by_port(protocol: u8, a: u16, b: u16) -> Option<TrafficClass> {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    port_class(protocol, lo).or_else(|| port_class(protocol, hi))
}

/// The ALPN protocols offered by the TLS ClientHello `payload` begins with (a handshake record
/// whose first message is a ClientHello, RFC 8446 section 4.1.2, RFC 7301); `None` when it is
/// not one or is cut before its extensions. An empty list: a ClientHello without ALPN.
pub fn tls_client_hello_alpn(payload: &[u8]) -> Option<Vec<&[u8]>> {
    fn u16_at(b: &[u8], i: usize) -> Option<usize> {
        Some(usize::from(u16::from_be_bytes([
            *b.get(i)?,
            *b.get(i + 1)?,
        ])))
    }
    // Record: handshake (22), legacy version 3.x, length.
    if payload.first() != Some(&22) || payload.get(1) != Some(&3) {
        return None;
    }
    let rec_len = u16_at(payload, 3)?;
    let rec = payload.get(5..)?;
    let rec = rec.get(..rec_len.min(rec.len()))?;
    // Handshake: ClientHello (1), 24-bit length.
    if rec.first() != Some(&1) {
        return None;
    }
    // legacy_version (2) + random (32), then session id, cipher suites, compression methods.
    let mut i = 4 + 2 + 32;
    i += 1 + usize::from(*rec.get(i)?);
    i += 2 + u16_at(rec, i)?;
    i += 1 + usize::from(*rec.get(i)?);
    let ext_len = u16_at(rec, i)?;
    i += 2;
    let exts = rec.get(i..i + ext_len)?;
    let mut j = 0;
    while j + 4 <= exts.len() {
        let (ty, len) = (u16_at(exts, j)?, u16_at(exts, j + 2)?);
        let data = exts.get(j + 4..j + 4 + len)?;
        if ty == 16 {
            let list = data.get(2..2 + u16_at(data, 0)?)?;
            let mut out = Vec::new();
            let mut k = 0;
            while k < list.len() {
                let n = usize::from(list[k]);
                out.push(list.get(k + 1..k + 1 + n)?);
                k += 1 + n;
            }
            return Some(out);
        }
        j += 4 + len;
    }
    Some(Vec::new())
}

/// Whether a TCP payload is a TLS ClientHello offering HTTP in ALPN (`http/1.1`, `http/1.0`,
/// `h2`): HTTPS, whatever the port. SIP over TLS offers no ALPN (RFC 5630 defines none).
pub fn is_https_client_hello(payload: &[u8]) -> bool {
    tls_client_hello_alpn(payload).is_some_and(|alpn| {
        alpn.iter()
            .any(|p| matches!(*p, b"http/1.1" | b"http/1.0" | b"h2"))
    })
}

/// IP protocol number of IGMP.
pub const IGMP: u8 = 2;

/// IP protocols that only carry network control: EGP 8, IGRP 9, RSVP 46, EIGRP 88, OSPF 89,
/// PIM 103, VRRP (and CARP) 112. IGMP is network control only from routers
/// ([`is_router_igmp`]).
pub fn is_network_control_protocol(protocol: u8) -> bool {
    matches!(protocol, 8 | 9 | 46 | 88 | 89 | 103 | 112)
}

/// Whether a UDP or TCP port is a network-control protocol's: BGP 179/TCP, LDP 646, RIP 520
/// and RIPng 521/UDP, HSRP 1985 and HSRP for IPv6 2029/UDP, GLBP 3222/UDP, BFD 3784 (single
/// hop), 3785 (echo), 4784 (multihop) and 6784 (on LAG members)/UDP, Babel 6696/UDP.
pub fn network_control_port(protocol: u8, port: u16) -> bool {
    matches!(
        (protocol, port),
        (TCP, 179)
            | (TCP | UDP, 646)
            | (
                UDP,
                520 | 521 | 1985 | 2029 | 3222 | 3784 | 3785 | 4784 | 6784 | 6696
            )
    )
}

/// Whether an IGMP message is one that routers send (RFC 2236, RFC 3376, RFC 4286): a
/// membership query, DVMRP, PIMv1, a multicast router advertisement or termination. Hosts'
/// membership reports and leaves are not network control: RFC 4594 keeps CS6 for traffic
/// between network devices.
pub fn is_router_igmp(message: &[u8]) -> bool {
    matches!(message.first(), Some(0x11 | 0x13 | 0x14 | 0x30 | 0x32))
}

/// Multicast groups whose UDP traffic is taken as media: 239.0.0.0/8 (administratively scoped,
/// where paging and MoH live) and IPv6 groups with a scope wider than link-local.
pub fn is_media_multicast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.octets()[0] == 239,
        IpAddr::V6(a) => {
            let o = a.octets();
            o[0] == 0xff && (o[1] & 0x0f) > 2
        }
    }
}

/// Kind of an SDP media stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaKind {
    Voice,
    Video,
}

impl MediaKind {
    pub fn class(self) -> TrafficClass {
        match self {
            MediaKind::Voice => TrafficClass::Voice,
            MediaKind::Video => TrafficClass::Video,
        }
    }
}

/// Most media endpoints remembered from SDP (keeps memory bounded on huge captures).
const MAX_MEDIA_ENDPOINTS: usize = 200_000;

/// Media endpoints announced in SDP, and what else SIP and TFTP told about the capture.
#[derive(Debug, Default)]
pub struct MediaBook {
    rtp: HashMap<Endpoint, MediaKind, crate::pcap::flow::FastHash>,
    rtcp: HashMap<Endpoint, MediaKind, crate::pcap::flow::FastHash>,
    /// `m=` ports alone, for flows whose addresses were translated.
    ports: HashMap<u16, MediaKind, crate::pcap::flow::FastHash>,
    /// Endpoints that sent a TFTP request to port 69.
    tftp_clients: HashSet<Endpoint>,
    /// SIP messages seen (parsed).
    pub sip_messages: u64,
    /// SDP bodies seen.
    pub sdp_bodies: u64,
    /// SDP bodies the strict parser refused; their `c=`/`m=` lines were read leniently.
    pub sdp_lenient: u64,
}

impl MediaBook {
    /// Records what a SIP message (from any transport) announces: the media endpoints in its
    /// SDP body, if any. This is the hook for SIP over TCP too.
    pub fn observe_sip(&mut self, msg: &SipMessage) {
        self.sip_messages += 1;
        let content_type = msg
            .headers()
            .get("Content-Type")
            .unwrap_or("")
            .to_ascii_lowercase();
        let body: &[u8] = msg.body();
        if body.is_empty() {
            return;
        }
        if content_type.starts_with("application/sdp") {
            self.observe_sdp(body);
        } else if content_type.starts_with("multipart/") {
            if let Some(boundary) = boundary_of(&content_type, msg) {
                for part in multipart_parts(body, &boundary) {
                    let (head, content) = split_part(part);
                    let head = String::from_utf8_lossy(head).to_ascii_lowercase();
                    if head.contains("application/sdp") {
                        self.observe_sdp(content);
                    }
                }
            }
        }
    }

    /// Records the media endpoints of one SDP body.
    pub fn observe_sdp(&mut self, body: &[u8]) {
        self.sdp_bodies += 1;
        let streams = match SessionDescription::parse_bytes(body) {
            Ok(sdp) => sdp
                .media
                .iter()
                .filter(|m| m.port != 0)
                .filter_map(|m| {
                    let addr = sdp.connection_for(m)?.ip()?;
                    let rtcp = m.rtcp().map(|r| {
                        let a = r.connection.and_then(|c| c.ip()).unwrap_or(addr);
                        Endpoint::new(a, r.port)
                    });
                    Some((
                        m.media.to_ascii_lowercase(),
                        Endpoint::new(addr, m.port),
                        rtcp,
                    ))
                })
                .collect::<Vec<_>>(),
            Err(_) => {
                self.sdp_lenient += 1;
                lenient_sdp(body)
            }
        };
        for (media, ep, rtcp) in streams {
            let kind = match media.as_str() {
                "audio" | "image" => MediaKind::Voice,
                "video" => MediaKind::Video,
                _ => continue,
            };
            if ep.addr.is_unspecified() || self.rtp.len() >= MAX_MEDIA_ENDPOINTS {
                continue;
            }
            self.rtp.insert(ep, kind);
            self.ports.insert(ep.port, kind);
            let rtcp = rtcp.unwrap_or(Endpoint::new(ep.addr, ep.port.wrapping_add(1)));
            self.rtcp.insert(rtcp, kind);
        }
    }

    /// Records a TFTP request sent from `client`.
    pub fn observe_tftp_request(&mut self, client: Endpoint) {
        if self.tftp_clients.len() < MAX_MEDIA_ENDPOINTS {
            self.tftp_clients.insert(client);
        }
    }

    /// RTP announced for either endpoint.
    pub fn rtp(&self, a: Endpoint, b: Endpoint) -> Option<MediaKind> {
        self.rtp.get(&a).or_else(|| self.rtp.get(&b)).copied()
    }

    /// RTCP announced for either endpoint.
    pub fn rtcp(&self, a: Endpoint, b: Endpoint) -> Option<MediaKind> {
        self.rtcp.get(&a).or_else(|| self.rtcp.get(&b)).copied()
    }

    /// Both ports announced in SDP for the same medium (addresses aside).
    pub fn by_ports(&self, a: Endpoint, b: Endpoint) -> Option<MediaKind> {
        match (self.ports.get(&a.port), self.ports.get(&b.port)) {
            (Some(x), Some(y)) if x == y => Some(*x),
            _ => None,
        }
    }

    /// Whether either endpoint sent a TFTP request.
    pub fn is_tftp_client(&self, a: Endpoint, b: Endpoint) -> bool {
        self.tftp_clients.contains(&a) || self.tftp_clients.contains(&b)
    }
}

fn boundary_of(content_type_lower: &str, msg: &SipMessage) -> Option<String> {
    // Take the boundary from the original header (boundaries are case-sensitive).
    let original = msg.headers().get("Content-Type")?;
    let at = content_type_lower.find("boundary=")?;
    let value = original.get(at + "boundary=".len()..)?;
    let value = value.split(';').next()?.trim().trim_matches('"');
    (!value.is_empty()).then(|| value.to_string())
}

/// The parts of a multipart body (each with its own headers), LF or CRLF line ends.
fn multipart_parts<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delim = format!("--{boundary}");
    let d = delim.as_bytes();
    let mut starts = Vec::new();
    let mut i = 0;
    while i + d.len() <= body.len() {
        if body.get(i..i + d.len()) == Some(d) && (i == 0 || body.get(i - 1) == Some(&b'\n')) {
            starts.push(i);
            i += d.len();
        } else {
            i += 1;
        }
    }
    let mut parts = Vec::new();
    for w in starts.windows(2) {
        let (s, e) = (w[0] + d.len(), w[1]);
        if let Some(p) = body.get(s..e) {
            parts.push(p);
        }
    }
    parts
}

/// Splits a multipart part into its header block and content.
fn split_part(part: &[u8]) -> (&[u8], &[u8]) {
    for (sep, len) in [(&b"\r\n\r\n"[..], 4), (&b"\n\n"[..], 2)] {
        if let Some(at) = part.windows(len).position(|w| w == sep) {
            return (&part[..at], &part[at + len..]);
        }
    }
    (part, &[])
}

/// `c=` and `m=` lines read without the strict parser: (media, c= address + m= port, rtcp).
fn lenient_sdp(body: &[u8]) -> Vec<(String, Endpoint, Option<Endpoint>)> {
    let text = String::from_utf8_lossy(body);
    let mut session_addr: Option<IpAddr> = None;
    let mut media: Vec<(String, u16, Option<IpAddr>)> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(c) = line.strip_prefix("c=") {
            let addr = c
                .split_whitespace()
                .nth(2)
                .and_then(|a| a.split('/').next())
                .and_then(|a| a.parse::<IpAddr>().ok());
            match media.last_mut() {
                Some(m) => m.2 = addr.or(m.2),
                None => session_addr = addr,
            }
        } else if let Some(m) = line.strip_prefix("m=") {
            let mut it = m.split_whitespace();
            let kind = it.next().unwrap_or("").to_ascii_lowercase();
            let port = it
                .next()
                .and_then(|p| p.split('/').next())
                .and_then(|p| p.parse::<u16>().ok())
                .unwrap_or(0);
            media.push((kind, port, None));
        }
    }
    media
        .into_iter()
        .filter(|(_, port, _)| *port != 0)
        .filter_map(|(kind, port, addr)| {
            let addr = addr.or(session_addr)?;
            Some((kind, Endpoint::new(addr, port), None))
        })
        .collect()
}

/// Whether a UDP payload starts like a SIP message (a status line or a request line ending in
/// `SIP/2.0`); cheap, checked before running the parser.
pub fn looks_like_sip(payload: &[u8]) -> bool {
    // Cheap rejections first: RTP, TLS and binary protocols never start with a capital.
    if !payload.first().is_some_and(u8::is_ascii_uppercase) {
        return false;
    }
    if payload.starts_with(b"SIP/2.0 ") {
        return true;
    }
    let line_end = payload
        .iter()
        .take(512)
        .position(|&b| b == b'\r' || b == b'\n');
    line_end.is_some_and(|end| payload[..end].ends_with(b" SIP/2.0"))
}

/// The SDP body of a SIP message the strict parser refused (real devices send unbracketed
/// IPv6 URIs, stray control characters...): the part after the blank line, when a
/// `Content-Type` (or compact `c`) header says `application/sdp`.
pub fn lenient_sdp_body(message: &[u8]) -> Option<&[u8]> {
    let (head, body) = [&b"\r\n\r\n"[..], &b"\n\n"[..]].iter().find_map(|sep| {
        let at = message.windows(sep.len()).position(|w| w == *sep)?;
        Some((&message[..at], &message[at + sep.len()..]))
    })?;
    let is_sdp = head.split(|&b| b == b'\n').any(|line| {
        let line = String::from_utf8_lossy(line).to_ascii_lowercase();
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        matches!(name.trim(), "content-type" | "c") && value.trim().starts_with("application/sdp")
    });
    (is_sdp && !body.is_empty()).then_some(body)
}

/// Whether a UDP payload to port 69 is a TFTP read or write request.
pub fn is_tftp_request(payload: &[u8]) -> bool {
    matches!(payload, [0, 1 | 2, ..]) && payload.len() > 4
}

/// Per-direction RTP/RTCP evidence, counted packet by packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RtpGuess {
    /// UDP packets seen.
    pub packets: u64,
    /// Packets that look like RTP with the first RTP packet's SSRC.
    pub rtp_same_ssrc: u64,
    /// Packets that look like RTCP.
    pub rtcp: u64,
    /// Payload bytes of the RTP-looking packets.
    pub rtp_bytes: u64,
    ssrc: Option<u32>,
    /// First RTP payload type seen.
    pub payload_type: Option<u8>,
}

/// Fewest packets before a direction can be called RTP or RTCP by heuristics.
pub const RTP_MIN_PACKETS: u64 = 8;
pub const RTCP_MIN_PACKETS: u64 = 2;

impl RtpGuess {
    /// Counts one UDP payload.
    pub fn observe(&mut self, payload: &[u8]) {
        self.packets += 1;
        let (Some(&b0), Some(&b1)) = (payload.first(), payload.get(1)) else {
            return;
        };
        if b0 >> 6 != 2 {
            return;
        }
        // RTCP packet types 192..=223 (RFC 5761 section 4) in the second byte.
        if (192..=223).contains(&b1) {
            if payload.len() >= 8 {
                self.rtcp += 1;
            }
            return;
        }
        if payload.len() < 12 {
            return;
        }
        let pt = b1 & 0x7f;
        // Static audio/video types (0..=34) and the dynamic range (96..=127).
        if !(pt <= 34 || pt >= 96) {
            return;
        }
        let ssrc = u32::from_be_bytes([payload[8], payload[9], payload[10], payload[11]]);
        match self.ssrc {
            None => {
                self.ssrc = Some(ssrc);
                self.payload_type = Some(pt);
            }
            Some(s) if s != ssrc => return,
            Some(_) => {}
        }
        self.rtp_same_ssrc += 1;
        self.rtp_bytes += payload.len() as u64;
    }

    /// RTP by heuristics: enough packets, nearly all version 2 with one SSRC.
    pub fn is_rtp(&self) -> bool {
        self.rtp_same_ssrc >= RTP_MIN_PACKETS && self.rtp_same_ssrc * 10 >= self.packets * 9
    }

    /// RTCP by heuristics.
    pub fn is_rtcp(&self) -> bool {
        self.rtcp >= RTCP_MIN_PACKETS && self.rtcp * 10 >= self.packets * 9
    }

    /// Nearly all packets look like RTP of one SSRC (no minimum count: for multicast groups,
    /// where one short page is still media).
    pub fn mostly_rtp(&self) -> bool {
        self.rtp_same_ssrc > 0 && self.rtp_same_ssrc * 10 >= self.packets * 9
    }

    /// Video when the payload type is a static video type (25..=34) or packets are large.
    pub fn looks_like_video(&self) -> bool {
        let static_video = self.payload_type.is_some_and(|pt| (25..=34).contains(&pt));
        let avg = self.rtp_bytes.checked_div(self.rtp_same_ssrc).unwrap_or(0);
        static_video || avg > 600
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sip::parse_datagram;

    fn ep(s: &str) -> Endpoint {
        Endpoint::from(s.parse::<std::net::SocketAddr>().expect("addr"))
    }

    #[test]
    fn ports_give_classes() {
        assert_eq!(class_by_port(UDP, 5060, 40000), Some(TrafficClass::Sip));
        assert_eq!(class_by_port(TCP, 51546, 5060), Some(TrafficClass::Sip));
        assert_eq!(class_by_port(TCP, 5061, 5061), Some(TrafficClass::Sip));
        assert_eq!(class_by_port(UDP, 5061, 1000), None); // SIPS is TLS over TCP
        assert_eq!(class_by_port(TCP, 2000, 51000), Some(TrafficClass::Sccp));
        assert_eq!(class_by_port(UDP, 2000, 51000), None);
        assert_eq!(class_by_port(TCP, 2748, 1), Some(TrafficClass::Cti));
        assert_eq!(
            class_by_port(TCP, 2912, 50000),
            Some(TrafficClass::Assistant)
        );
        for p in [80, 8080, 443, 8443] {
            assert_eq!(class_by_port(TCP, 50000, p), Some(TrafficClass::Http));
        }
        assert_eq!(class_by_port(UDP, 69, 50000), Some(TrafficClass::Tftp));
        assert_eq!(class_by_port(TCP, 6970, 50000), Some(TrafficClass::Tftp));
        assert_eq!(class_by_port(UDP, 16384, 16386), None);
        // Both well known: the lower port decides.
        assert_eq!(class_by_port(TCP, 8080, 2000), Some(TrafficClass::Sccp));
    }

    #[test]
    fn r21_network_control_protocols_ports_and_igmp_messages() {
        for p in [88, 89, 103, 112, 46] {
            assert!(is_network_control_protocol(p), "{p}");
        }
        for p in [1, 2, 6, 17, 47, 50, 58] {
            assert!(!is_network_control_protocol(p), "{p}");
        }
        assert!(network_control_port(TCP, 179));
        assert!(!network_control_port(UDP, 179));
        assert!(network_control_port(UDP, 646) && network_control_port(TCP, 646));
        for port in [520, 521, 1985, 2029, 3222, 3784, 3785, 4784, 6784, 6696] {
            assert!(network_control_port(UDP, port), "{port}");
            assert!(!network_control_port(TCP, port), "{port}");
        }
        // NTP, DNS, SNMP, syslog: not network control.
        for port in [123, 53, 161, 162, 514] {
            assert!(!network_control_port(UDP, port), "{port}");
        }
        // Queries (v1/v2/v3), DVMRP, PIMv1, router advertisement/termination: routers.
        for t in [0x11, 0x13, 0x14, 0x30, 0x32] {
            assert!(is_router_igmp(&[t, 0, 0, 0]), "{t:#x}");
        }
        // Reports (v1, v2, v3), leave, router solicitation: hosts.
        for t in [0x12, 0x16, 0x22, 0x17, 0x31] {
            assert!(!is_router_igmp(&[t, 0, 0, 0]), "{t:#x}");
        }
        assert!(!is_router_igmp(&[]));
        assert_eq!(TrafficClass::NetworkControl.as_str(), "network-control");
    }

    #[test]
    fn multicast_media_groups() {
        assert!(is_media_multicast("239.1.1.99".parse().expect("ip")));
        assert!(!is_media_multicast("224.0.0.5".parse().expect("ip")));
        assert!(!is_media_multicast("224.0.1.41".parse().expect("ip")));
        assert!(is_media_multicast("ff05::1:3".parse().expect("ip")));
        assert!(is_media_multicast("ff0e::1234".parse().expect("ip")));
        assert!(!is_media_multicast("ff02::fb".parse().expect("ip")));
        assert!(!is_media_multicast("10.0.0.1".parse().expect("ip")));
    }

    const INVITE: &str = "INVITE sip:2000@10.0.0.2 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n\
        Max-Forwards: 70\r\nTo: <sip:2000@10.0.0.2>\r\nFrom: <sip:1000@10.0.0.1>;tag=1928301774\r\n\
        Call-ID: a84b4c76e66710\r\nCSeq: 314159 INVITE\r\nContact: <sip:1000@10.0.0.1>\r\n\
        Content-Type: application/sdp\r\nContent-Length: ";

    fn with_body(head: &str, body: &str) -> Vec<u8> {
        format!("{head}{}\r\n\r\n{body}", body.len()).into_bytes()
    }

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
        m=audio 20000 RTP/AVP 0\r\nm=video 20002 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n\
        m=audio 0 RTP/AVP 0\r\n";

    #[test]
    fn sdp_in_sip_names_rtp_and_rtcp_endpoints() {
        let msg = parse_datagram(&with_body(INVITE, SDP)).expect("parse");
        let mut book = MediaBook::default();
        book.observe_sip(&msg);
        assert_eq!(book.sip_messages, 1);
        assert_eq!(book.sdp_bodies, 1);
        assert_eq!(book.sdp_lenient, 0);
        let far = ep("10.0.0.2:30000");
        assert_eq!(book.rtp(far, ep("10.0.0.1:20000")), Some(MediaKind::Voice));
        assert_eq!(book.rtp(ep("10.0.0.1:20002"), far), Some(MediaKind::Video));
        assert_eq!(book.rtcp(ep("10.0.0.1:20001"), far), Some(MediaKind::Voice));
        assert_eq!(book.rtcp(ep("10.0.0.1:20003"), far), Some(MediaKind::Video));
        assert_eq!(book.rtp(ep("10.0.0.1:0"), far), None); // rejected stream
    }

    #[test]
    fn sdp_inside_multipart_with_lf_only_lines_is_found() {
        let body = "--b1\nContent-Type: application/x-cisco-remotecc-request+xml\n\n<x/>\n\
            --b1\nContent-Type: application/sdp\n\nv=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\n\
            c=IN IP4 239.1.1.99\nt=0 0\nm=audio 20480 RTP/AVP 0\n--b1--\n";
        let head = INVITE.replace(
            "Content-Type: application/sdp",
            "Content-Type: multipart/mixed;boundary=b1",
        );
        let msg = parse_datagram(&with_body(&head, body)).expect("parse");
        let mut book = MediaBook::default();
        book.observe_sip(&msg);
        assert_eq!(
            book.rtp(ep("239.1.1.99:20480"), ep("10.0.0.9:1")),
            Some(MediaKind::Voice)
        );
    }

    #[test]
    fn sdp_the_strict_parser_refuses_is_read_leniently() {
        // x= is not a known line type: strict parsing fails, c=/m= are still used.
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nx=9\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
            m=audio 20000 RTP/AVP 0\r\n";
        let mut book = MediaBook::default();
        book.observe_sdp(sdp.as_bytes());
        assert_eq!(book.sdp_lenient, 1);
        assert_eq!(
            book.rtp(ep("10.0.0.1:20000"), ep("10.0.0.2:1")),
            Some(MediaKind::Voice)
        );
    }

    #[test]
    fn sdp_is_taken_from_sip_the_strict_parser_refuses() {
        let msg = b"INVITE sip:2000@fe80::1:5060 SIP/2.0\r\nc: application/sdp\r\n\r\nv=0\r\n";
        assert_eq!(lenient_sdp_body(msg), Some(&b"v=0\r\n"[..]));
        let msg = b"INVITE sip:x SIP/2.0\nContent-Type: text/plain\n\nv=0\n";
        assert_eq!(lenient_sdp_body(msg), None);
        assert_eq!(lenient_sdp_body(b"INVITE sip:x SIP/2.0\r\n"), None);
    }

    #[test]
    fn sip_is_recognised_by_its_first_line() {
        assert!(looks_like_sip(b"SIP/2.0 200 OK\r\n"));
        assert!(looks_like_sip(b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n"));
        assert!(!looks_like_sip(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_sip(&[0x80, 0x00, 1, 2]));
    }

    fn rtp(pt: u8, ssrc: u32, len: usize) -> Vec<u8> {
        let mut v = vec![0x80, pt, 0, 1, 0, 0, 0, 160];
        v.extend_from_slice(&ssrc.to_be_bytes());
        v.resize(len, 0xff);
        v
    }

    #[test]
    fn rtp_heuristics() {
        let mut g = RtpGuess::default();
        for _ in 0..RTP_MIN_PACKETS - 1 {
            g.observe(&rtp(0, 7, 172));
        }
        assert!(!g.is_rtp(), "too few packets");
        g.observe(&rtp(0, 7, 172));
        assert!(g.is_rtp());
        assert!(!g.looks_like_video());
        // Changing SSRCs (or random data) is not RTP.
        let mut g = RtpGuess::default();
        for i in 0..20 {
            g.observe(&rtp(0, i, 172));
        }
        assert!(!g.is_rtp());
        // Large dynamic-PT packets: video.
        let mut g = RtpGuess::default();
        for _ in 0..20 {
            g.observe(&rtp(97, 1, 1100));
        }
        assert!(g.is_rtp() && g.looks_like_video());
        // Unassigned payload types are not RTP.
        let mut g = RtpGuess::default();
        for _ in 0..20 {
            g.observe(&rtp(60, 1, 100));
        }
        assert!(!g.is_rtp());
        // RTCP receiver reports.
        let mut g = RtpGuess::default();
        for _ in 0..3 {
            g.observe(&[0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0]);
        }
        assert!(g.is_rtcp() && !g.is_rtp());
    }
}
