//! Link layer -> IP -> tunnels, down to the innermost IP header, and the transport header under
//! it.
//!
//! - [`decode`]: the innermost IP header's DSCP, version and depth (what [`super::dscp_tally`]
//!   counts; equal to tshark's view on the whole corpus).
//! - [`dissect`]: the same header plus its addresses, protocol, fragment fields and, for UDP and
//!   TCP, ports, TCP sequence numbers and flags, and the transport payload slice.
//! - [`Defragmenter`]: bounded IPv4/IPv6 fragment reassembly keyed by (src, dst, id, protocol),
//!   so a SIP message split over fragments is seen whole.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::net::Dscp;

/// IP version of a decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpVersion {
    V4,
    V6,
}

/// The innermost IP header of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpInfo {
    /// DSCP of the innermost IP header.
    pub dscp: Dscp,
    /// Version of the innermost IP header.
    pub version: IpVersion,
    /// Number of IP headers passed through (1 = not tunnelled).
    pub depth: u8,
}

/// Result of decoding one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// The packet carries IP; the innermost header is described.
    Ip(IpInfo),
    /// A supported link type, but no (parsable) IP header: ARP, STP, LLC, truncated...
    NotIp,
    /// The link type is not one this decoder understands.
    UnsupportedLinkType,
}

/// Most IP headers descended through; deeper nesting stops at the last header reached.
const MAX_DEPTH: u8 = 16;

const ET_IPV4: u16 = 0x0800;
const ET_IPV6: u16 = 0x86dd;
const ET_VLAN: u16 = 0x8100;
const ET_QINQ: u16 = 0x88a8;
const ET_QINQ_OLD: u16 = 0x9100;
const ET_TEB: u16 = 0x6558;
const ET_PPPOE_SESSION: u16 = 0x8864;
const ET_MPLS: u16 = 0x8847;
const ET_MPLS_MC: u16 = 0x8848;
const ET_ERSPAN2: u16 = 0x88be;
const ET_ERSPAN3: u16 = 0x22eb;

/// An IPv4 or IPv6 fragment: the fields reassembly needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    /// Identification (16 bits for IPv4, 32 for IPv6).
    pub id: u32,
    /// Offset of this fragment's data in the whole datagram's payload, in bytes.
    pub offset: u32,
    /// More fragments follow.
    pub more: bool,
}

/// TCP header flag bits as in byte 13 of the header.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// The transport header under the innermost IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport<'a> {
    Udp {
        src_port: u16,
        dst_port: u16,
        /// Datagram payload (bounded by the UDP length when it is sane, and by the capture).
        payload: &'a [u8],
    },
    Tcp {
        src_port: u16,
        dst_port: u16,
        seq: u32,
        ack: u32,
        /// Flag bits ([`tcp_flags`]).
        flags: u8,
        window: u16,
        /// Segment payload (bounded by the IP length and the capture).
        payload: &'a [u8],
    },
    /// Another protocol, a non-first fragment, or a truncated UDP/TCP header.
    None,
}

impl Transport<'_> {
    /// Source and destination ports for UDP and TCP.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match *self {
            Transport::Udp {
                src_port, dst_port, ..
            }
            | Transport::Tcp {
                src_port, dst_port, ..
            } => Some((src_port, dst_port)),
            Transport::None => None,
        }
    }

    /// The UDP or TCP payload.
    pub fn payload(&self) -> Option<&[u8]> {
        match self {
            Transport::Udp { payload, .. } | Transport::Tcp { payload, .. } => Some(payload),
            Transport::None => None,
        }
    }
}

/// A packet dissected down to its innermost IP header and the transport header under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dissected<'a> {
    /// DSCP, version and depth: exactly what [`decode`] returns.
    pub ip: IpInfo,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol / IPv6 next header after any extension headers (17 UDP, 6 TCP, 1 ICMP...).
    pub protocol: u8,
    /// Set when the innermost header is a fragment (first or later).
    pub fragment: Option<Fragment>,
    /// The IP payload after extension headers (for a fragment: this fragment's part).
    pub ip_payload: &'a [u8],
    /// UDP/TCP header and payload; [`Transport::None`] for non-first fragments.
    pub transport: Transport<'a>,
}

/// Result of [`dissect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dissection<'a> {
    Ip(Dissected<'a>),
    NotIp,
    UnsupportedLinkType,
}

/// The innermost IP header found so far (internal to the descent).
#[derive(Clone, Copy, Debug)]
struct Ip<'a> {
    info: IpInfo,
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    fragment: Option<Fragment>,
    payload: &'a [u8],
}

/// Decodes a packet captured with LINKTYPE `link_type` down to its innermost IP header.
pub fn decode(link_type: u16, data: &[u8]) -> Decoded {
    match innermost(link_type, data) {
        Some(Some(ip)) => Decoded::Ip(ip.info),
        Some(None) => Decoded::NotIp,
        None => Decoded::UnsupportedLinkType,
    }
}

/// Like [`decode`], and also returns addresses, protocol, fragment fields and the UDP/TCP
/// header and payload of the innermost IP header. `dissect(l, d)` is `Ip` exactly when
/// `decode(l, d)` is, with the same [`IpInfo`].
pub fn dissect(link_type: u16, data: &[u8]) -> Dissection<'_> {
    if link_type == 1 {
        let fast = if slicer() == Slicer::Etherparse {
            ethernet_ipv4_etherparse(data)
        } else {
            ethernet_ipv4_fast(data)
        };
        if let Some(d) = fast {
            return Dissection::Ip(d);
        }
    }
    match innermost(link_type, data) {
        Some(Some(ip)) => {
            let transport = match ip.fragment {
                Some(f) if f.offset != 0 => Transport::None,
                _ => transport(ip.protocol, ip.payload),
            };
            Dissection::Ip(Dissected {
                ip: ip.info,
                src: ip.src,
                dst: ip.dst,
                protocol: ip.protocol,
                fragment: ip.fragment,
                ip_payload: ip.payload,
                transport,
            })
        }
        Some(None) => Dissection::NotIp,
        None => Dissection::UnsupportedLinkType,
    }
}

/// Which code slices the common case (Ethernet II, IPv4 without options, UDP or TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slicer {
    /// The hand-written fast path below (the default).
    Handwritten,
    /// etherparse's lax slicer (`UCM_PCAP_SLICER=etherparse`), which `cargo xtask bench pcap`
    /// measures against the default in the same run.
    Etherparse,
}

/// The slicer this process uses, read once from `UCM_PCAP_SLICER`.
pub fn slicer() -> Slicer {
    static SLICER: std::sync::OnceLock<Slicer> = std::sync::OnceLock::new();
    *SLICER.get_or_init(|| match std::env::var("UCM_PCAP_SLICER").as_deref() {
        Ok("etherparse") => Slicer::Etherparse,
        _ => Slicer::Handwritten,
    })
}

/// [`ethernet_ipv4_fast`] done with etherparse's lax slicer: the same packets taken, the same
/// answer; anything else (VLAN tags, IPv4 options, fragments, a short or odd header) takes
/// the general path.
fn ethernet_ipv4_etherparse(data: &[u8]) -> Option<Dissected<'_>> {
    use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
    let p = LaxSlicedPacket::from_ethernet(data).ok()?;
    if !p.link_exts.is_empty() || p.stop_err.is_some() {
        return None;
    }
    let LaxNetSlice::Ipv4(v4) = p.net.as_ref()? else {
        return None;
    };
    let h = v4.header();
    let total = h.total_len();
    // What the hand-written path reads as "take what is there" (a length below the header, or
    // beyond the frame) is left to the general path, which reads it the same way.
    if h.ihl() != 5 || h.is_fragmenting_payload() || total < 20 || v4.payload().incomplete {
        return None;
    }
    let protocol = h.protocol().0;
    let ip_payload = v4.payload().payload;
    let transport = match p.transport? {
        TransportSlice::Udp(u) if protocol == 17 && u.length() >= 8 => Transport::Udp {
            src_port: u.source_port(),
            dst_port: u.destination_port(),
            payload: u.payload(),
        },
        TransportSlice::Tcp(t) if protocol == 6 => Transport::Tcp {
            src_port: t.source_port(),
            dst_port: t.destination_port(),
            seq: t.sequence_number(),
            ack: t.acknowledgment_number(),
            flags: *t.slice().get(13)?,
            window: t.window_size(),
            payload: t.payload(),
        },
        _ => return None,
    };
    Some(Dissected {
        ip: IpInfo {
            dscp: Dscp::from_tos((h.dcp().value() << 2) | h.ecn().value()),
            version: IpVersion::V4,
            depth: 1,
        },
        src: IpAddr::V4(h.source_addr()),
        dst: IpAddr::V4(h.destination_addr()),
        protocol,
        fragment: None,
        ip_payload,
        transport,
    })
}

/// The bulk of real captures (Ethernet II, IPv4 without options, not a fragment, UDP or TCP)
/// without the general descent; `None` for anything else, which takes the general path.
/// Gives exactly what the general path gives for these packets.
#[inline]
fn ethernet_ipv4_fast(data: &[u8]) -> Option<Dissected<'_>> {
    let (eth, rest) = data.split_first_chunk::<14>()?;
    let (h, _) = rest.split_first_chunk::<20>()?;
    let protocol = h[9];
    if eth[12..14] != [0x08, 0x00] || h[0] != 0x45 || (protocol != 17 && protocol != 6) {
        return None;
    }
    // More-fragments flag or a fragment offset: a fragment.
    if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let end = if total >= 20 {
        total.min(rest.len())
    } else {
        rest.len()
    };
    let payload = rest.get(20..end).unwrap_or(&[]);
    Some(Dissected {
        ip: IpInfo {
            dscp: Dscp::from_tos(h[1]),
            version: IpVersion::V4,
            depth: 1,
        },
        src: IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
        dst: IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
        protocol,
        fragment: None,
        ip_payload: payload,
        transport: transport(protocol, payload),
    })
}

/// Parses a UDP (17) or TCP (6) header at the start of an IP payload (also usable on a
/// reassembled datagram's payload).
pub fn transport(protocol: u8, data: &[u8]) -> Transport<'_> {
    match protocol {
        17 => {
            let (Some(src_port), Some(dst_port), Some(len)) =
                (be16(data, 0), be16(data, 2), be16(data, 4))
            else {
                return Transport::None;
            };
            let len = usize::from(len);
            // A UDP length below 8 or beyond the data (truncated capture, jumbogram): use what
            // is there.
            let end = if len >= 8 {
                len.min(data.len())
            } else {
                data.len()
            };
            Transport::Udp {
                src_port,
                dst_port,
                payload: data.get(8..end).unwrap_or(&[]),
            }
        }
        6 => {
            let (Some(src_port), Some(dst_port), Some(seq), Some(ack), Some(&off), Some(&flags)) = (
                be16(data, 0),
                be16(data, 2),
                be32(data, 4),
                be32(data, 8),
                data.get(12),
                data.get(13),
            ) else {
                return Transport::None;
            };
            let hlen = usize::from(off >> 4) * 4;
            let (Some(window), true) = (be16(data, 14), hlen >= 20) else {
                return Transport::None;
            };
            Transport::Tcp {
                src_port,
                dst_port,
                seq,
                ack,
                flags,
                window,
                payload: data.get(hlen..).unwrap_or(&[]),
            }
        }
        _ => Transport::None,
    }
}

/// `None`: unsupported link type; `Some(None)`: no IP header.
fn innermost(link_type: u16, data: &[u8]) -> Option<Option<Ip<'_>>> {
    let found = match link_type {
        // LINKTYPE_NULL: 4-byte address family in the capturing host's byte order.
        0 => {
            let Some(&[a, b, c, d]) = data.get(..4) else {
                return Some(None);
            };
            let fam = if a == 0 && b == 0 {
                u32::from_be_bytes([a, b, c, d])
            } else {
                u32::from_le_bytes([a, b, c, d])
            };
            let rest = data.get(4..).unwrap_or(&[]);
            match fam {
                2 => ipv4(rest, 0),
                24 | 28 | 30 => ipv6(rest, 0),
                _ => None,
            }
        }
        1 => ethernet(data, 0),
        // Raw IP (101, and the historical DLT_RAW values 12 and 14).
        12 | 14 | 101 => raw_ip(data, 0),
        // Linux cooked capture v1: protocol at bytes 14..16 of a 16-byte header.
        113 => match (be16(data, 14), data.get(16..)) {
            (Some(et), Some(rest)) => ethertype(et, rest, 0),
            _ => None,
        },
        // Linux cooked capture v2: protocol at bytes 0..2 of a 20-byte header.
        276 => match (be16(data, 0), data.get(20..)) {
            (Some(et), Some(rest)) => ethertype(et, rest, 0),
            _ => None,
        },
        228 => ipv4(data, 0),
        229 => ipv6(data, 0),
        _ => return None,
    };
    Some(found)
}

fn raw_ip(data: &[u8], depth: u8) -> Option<Ip<'_>> {
    match data.first()? >> 4 {
        4 => ipv4(data, depth),
        6 => ipv6(data, depth),
        _ => None,
    }
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let &[a, b] = data.get(at..at.checked_add(2)?)? else {
        return None;
    };
    Some(u16::from_be_bytes([a, b]))
}

fn be32(data: &[u8], at: usize) -> Option<u32> {
    let &[a, b, c, d] = data.get(at..at.checked_add(4)?)? else {
        return None;
    };
    Some(u32::from_be_bytes([a, b, c, d]))
}

fn addr4(data: &[u8], at: usize) -> Option<IpAddr> {
    let &[a, b, c, d] = data.get(at..at.checked_add(4)?)? else {
        return None;
    };
    Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
}

fn addr6(data: &[u8], at: usize) -> Option<IpAddr> {
    let bytes: [u8; 16] = data.get(at..at.checked_add(16)?)?.try_into().ok()?;
    Some(IpAddr::V6(Ipv6Addr::from(bytes)))
}

/// An Ethernet II frame, with any stack of 802.1Q / 802.1ad tags.
fn ethernet(frame: &[u8], depth: u8) -> Option<Ip<'_>> {
    let et = be16(frame, 12)?;
    ethertype(et, frame.get(14..)?, depth)
}

/// A payload identified by an ethertype; VLAN tags (4 bytes each: TCI, inner ethertype) are
/// skipped.
fn ethertype(mut et: u16, mut payload: &[u8], depth: u8) -> Option<Ip<'_>> {
    while matches!(et, ET_VLAN | ET_QINQ | ET_QINQ_OLD) {
        et = be16(payload, 2)?;
        payload = payload.get(4..)?;
    }
    match et {
        ET_IPV4 => ipv4(payload, depth),
        ET_IPV6 => ipv6(payload, depth),
        // PPPoE session: 6-byte PPPoE header, then the 2-byte PPP protocol.
        ET_PPPOE_SESSION => match be16(payload, 6)? {
            0x0021 => ipv4(payload.get(8..)?, depth),
            0x0057 => ipv6(payload.get(8..)?, depth),
            _ => None,
        },
        // MPLS: 4-byte labels until the bottom-of-stack bit, then IP guessed by its version.
        ET_MPLS | ET_MPLS_MC => {
            let mut rest = payload;
            loop {
                let bottom = rest.get(2)? & 0x01 != 0;
                rest = rest.get(4..)?;
                if bottom {
                    break;
                }
            }
            raw_ip(rest, depth)
        }
        _ => None,
    }
}

/// The header at `data` is IPv4: returns it, or the innermost header of a tunnel it carries.
fn ipv4(data: &[u8], depth: u8) -> Option<Ip<'_>> {
    let (Some(&vihl), Some(&tos), Some(&proto)) = (data.first(), data.get(1), data.get(9)) else {
        return None;
    };
    if data.len() < 20 || vihl >> 4 != 4 {
        return None;
    }
    let hlen = usize::from(vihl & 0x0f) * 4;
    if hlen < 20 || hlen > data.len() {
        return None;
    }
    let info = IpInfo {
        dscp: Dscp::from_tos(tos),
        version: IpVersion::V4,
        depth: depth + 1,
    };
    let flags_offset = be16(data, 6)?;
    let frag_offset = flags_offset & 0x1fff;
    let more = flags_offset & 0x2000 != 0;
    let total = usize::from(be16(data, 2)?);
    let end = if total >= hlen {
        total.min(data.len())
    } else {
        data.len()
    };
    let payload = data.get(hlen..end).unwrap_or(&[]);
    let this = Ip {
        info,
        src: addr4(data, 12)?,
        dst: addr4(data, 16)?,
        protocol: proto,
        fragment: (frag_offset != 0 || more).then(|| Fragment {
            id: u32::from(be16(data, 4).unwrap_or(0)),
            offset: u32::from(frag_offset) * 8,
            more,
        }),
        payload,
    };
    if frag_offset != 0 || info.depth >= MAX_DEPTH {
        // A non-first fragment carries no next-layer header.
        return Some(this);
    }
    Some(next_header(proto, payload, info.depth).unwrap_or(this))
}

/// The header at `data` is IPv6: returns it, or the innermost header of a tunnel it carries.
fn ipv6(data: &[u8], depth: u8) -> Option<Ip<'_>> {
    let (Some(&b0), Some(&b1), Some(&nh)) = (data.first(), data.get(1), data.get(6)) else {
        return None;
    };
    if data.len() < 40 || b0 >> 4 != 6 {
        return None;
    }
    let tclass = ((b0 & 0x0f) << 4) | (b1 >> 4);
    let info = IpInfo {
        dscp: Dscp::from_tos(tclass),
        version: IpVersion::V6,
        depth: depth + 1,
    };
    let plen = usize::from(be16(data, 4)?);
    let end = if plen == 0 {
        data.len() // jumbogram or unknown: use what was captured
    } else {
        (40 + plen).min(data.len())
    };
    let mut this = Ip {
        info,
        src: addr6(data, 8)?,
        dst: addr6(data, 24)?,
        protocol: nh,
        fragment: None,
        payload: data.get(40..end).unwrap_or(&[]),
    };
    if info.depth >= MAX_DEPTH {
        return Some(this);
    }
    loop {
        let payload = this.payload;
        match this.protocol {
            // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
            0 | 43 | 60 => {
                let (Some(&nh), Some(&len)) = (payload.first(), payload.get(1)) else {
                    return Some(this);
                };
                let Some(rest) = payload.get((usize::from(len) + 1) * 8..) else {
                    return Some(this);
                };
                this.protocol = nh;
                this.payload = rest;
            }
            // Fragment header: 8 bytes; only the first fragment holds the next header.
            44 => {
                let (Some(&nh), Some(off), Some(id)) =
                    (payload.first(), be16(payload, 2), be32(payload, 4))
                else {
                    return Some(this);
                };
                let Some(rest) = payload.get(8..) else {
                    return Some(this);
                };
                this.protocol = nh;
                this.payload = rest;
                let fragment = Fragment {
                    id,
                    offset: u32::from(off >> 3) * 8,
                    more: off & 1 != 0,
                };
                // An atomic fragment (offset 0, no more) is a whole datagram.
                if fragment.offset != 0 || fragment.more {
                    this.fragment = Some(fragment);
                }
                if fragment.offset != 0 {
                    return Some(this);
                }
            }
            // Authentication header: (len + 2) * 4 bytes.
            51 => {
                let (Some(&nh), Some(&len)) = (payload.first(), payload.get(1)) else {
                    return Some(this);
                };
                let Some(rest) = payload.get((usize::from(len) + 2) * 4..) else {
                    return Some(this);
                };
                this.protocol = nh;
                this.payload = rest;
            }
            _ => break,
        }
    }
    Some(next_header(this.protocol, this.payload, info.depth).unwrap_or(this))
}

/// The innermost IP header inside an IP payload of protocol `proto`, if it is a tunnel.
fn next_header(proto: u8, payload: &[u8], depth: u8) -> Option<Ip<'_>> {
    match proto {
        4 => ipv4(payload, depth),
        41 => ipv6(payload, depth),
        47 => gre(payload, depth),
        _ => None,
    }
}

/// GRE (RFC 2784/2890) carrying IP, transparent Ethernet or ERSPAN.
fn gre(data: &[u8], depth: u8) -> Option<Ip<'_>> {
    let flags = be16(data, 0)?;
    let proto = be16(data, 2)?;
    if flags & 0x7 != 0 {
        return None; // version 1 (PPTP) carries PPP
    }
    let checksum_or_routing = flags & 0xc000 != 0;
    let key = flags & 0x2000 != 0;
    let seq = flags & 0x1000 != 0;
    if flags & 0x4000 != 0 {
        return None; // source routing entries: obsolete, not decoded
    }
    let hlen = 4 + 4 * (usize::from(checksum_or_routing) + usize::from(key) + usize::from(seq));
    let payload = data.get(hlen..)?;
    match proto {
        ET_TEB => ethernet(payload, depth),
        // ERSPAN type II has an 8-byte header and sets the sequence bit; type I (no
        // sequence bit) has no header at all.
        ET_ERSPAN2 => ethernet(payload.get(if seq { 8 } else { 0 }..)?, depth),
        ET_ERSPAN3 => {
            let o_bit = payload.get(11)? & 0x01 != 0;
            ethernet(payload.get(if o_bit { 20 } else { 12 }..)?, depth)
        }
        et => ethertype(et, payload, depth),
    }
}

/// Identifies the fragments of one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    pub protocol: u8,
}

impl FragKey {
    /// The key of a dissected fragment (`None` when it is not a fragment).
    pub fn of(d: &Dissected<'_>) -> Option<FragKey> {
        d.fragment.map(|f| FragKey {
            src: d.src,
            dst: d.dst,
            id: f.id,
            protocol: d.protocol,
        })
    }
}

/// Limits of a [`Defragmenter`].
#[derive(Clone, Copy, Debug)]
pub struct DefragLimits {
    /// Most datagrams being reassembled at once; the oldest is dropped to make room.
    pub max_pending: usize,
    /// A datagram still incomplete after this many further packets is dropped.
    pub max_age_packets: u64,
    /// Most bytes held over all pending datagrams.
    pub max_bytes: usize,
}

impl Default for DefragLimits {
    fn default() -> Self {
        DefragLimits {
            max_pending: 1024,
            max_age_packets: 10_000,
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug)]
struct PendingDatagram {
    born: u64,
    /// (offset, bytes), in arrival order.
    pieces: Vec<(u32, Vec<u8>)>,
    /// Payload length, known once the last fragment (more = false) arrived.
    len: Option<u32>,
    bytes: usize,
}

/// Bounded IP fragment reassembly (IPv4 and IPv6 alike). Memory is limited by
/// [`DefragLimits`]; datagrams that never complete are dropped and reported by
/// [`Defragmenter::drain_dropped`], so the caller can account their fragments.
#[derive(Debug, Default)]
pub struct Defragmenter {
    limits: DefragLimits,
    pending: HashMap<FragKey, PendingDatagram, crate::pcap::flow::FastHash>,
    /// Keys in order of their first fragment (with their birth), oldest first.
    order: VecDeque<(FragKey, u64)>,
    /// Packet counter advanced by [`Defragmenter::tick`].
    clock: u64,
    bytes: usize,
    dropped: Vec<FragKey>,
}

/// Largest IP payload a datagram can have.
const MAX_DATAGRAM: u32 = 65_535;
/// Most fragments kept per datagram (a real one has at most a few dozen); more, e.g. a flood of
/// tiny overlapping duplicates, drops the datagram so reassembly stays cheap.
const MAX_PIECES: usize = 512;

impl Defragmenter {
    pub fn new(limits: DefragLimits) -> Self {
        Defragmenter {
            limits,
            ..Defragmenter::default()
        }
    }

    /// Advances the packet clock by one packet and drops datagrams past their age.
    pub fn tick(&mut self) {
        self.clock += 1;
        while let Some(&(key, born)) = self.order.front() {
            if self.clock.saturating_sub(born) <= self.limits.max_age_packets {
                break;
            }
            self.order.pop_front();
            self.expire(key, born);
        }
    }

    /// Number of datagrams being reassembled.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Adds one fragment; returns the whole datagram's IP payload (starting with the
    /// transport header) when this fragment completes it. Overlapping fragments are
    /// accepted; where they overlap, the piece with the lower offset wins.
    pub fn add(&mut self, key: FragKey, fragment: Fragment, data: &[u8]) -> Option<Vec<u8>> {
        let end = fragment.offset.saturating_add(data.len() as u32);
        if end > MAX_DATAGRAM {
            self.drop_key(key);
            return None;
        }
        if !self.pending.contains_key(&key) {
            while self.pending.len() >= self.limits.max_pending.max(1) {
                let Some((old, born)) = self.order.pop_front() else {
                    break;
                };
                self.expire(old, born);
            }
            self.pending.insert(
                key,
                PendingDatagram {
                    born: self.clock,
                    pieces: Vec::new(),
                    len: None,
                    bytes: 0,
                },
            );
            self.order.push_back((key, self.clock));
        }
        while self.bytes + data.len() > self.limits.max_bytes {
            let Some((old, born)) = self.order.pop_front() else {
                break;
            };
            self.expire(old, born);
            if old == key {
                return None;
            }
        }
        if self
            .pending
            .get(&key)
            .is_some_and(|p| p.pieces.len() >= MAX_PIECES)
        {
            self.drop_key(key);
            return None;
        }
        let entry = self.pending.get_mut(&key)?;
        if !fragment.more {
            entry.len = Some(end);
        }
        entry.pieces.push((fragment.offset, data.to_vec()));
        entry.bytes += data.len();
        self.bytes += data.len();
        let len = entry.len?;
        // Complete when the pieces cover 0..len without a hole.
        entry.pieces.sort_by_key(|(off, _)| *off);
        let mut covered = 0u32;
        for (off, bytes) in &entry.pieces {
            if *off > covered {
                return None;
            }
            covered = covered.max(off.saturating_add(bytes.len() as u32));
        }
        if covered < len {
            return None;
        }
        let done = self.pending.remove(&key)?;
        self.bytes -= done.bytes;
        self.order
            .retain(|(k, born)| !(*k == key && *born == done.born));
        let mut out = vec![0u8; len as usize];
        let mut filled = 0usize;
        for (off, bytes) in &done.pieces {
            let off = *off as usize;
            let from = filled.max(off);
            let to = (off + bytes.len()).min(out.len());
            if to > from {
                if let (Some(dst), Some(src)) =
                    (out.get_mut(from..to), bytes.get(from - off..to - off))
                {
                    dst.copy_from_slice(src);
                }
                filled = to;
            }
        }
        Some(out)
    }

    /// Keys of datagrams dropped incomplete (too old, too big, no room) since the last call.
    pub fn drain_dropped(&mut self) -> Vec<FragKey> {
        std::mem::take(&mut self.dropped)
    }

    /// Drops every pending datagram (end of capture); their keys go to the dropped list.
    pub fn finish(&mut self) {
        let keys: Vec<FragKey> = self.order.drain(..).map(|(k, _)| k).collect();
        for k in keys {
            self.drop_key(k);
        }
    }

    /// Drops `key` if its pending datagram is the one born at `born` (not a later one).
    fn expire(&mut self, key: FragKey, born: u64) {
        if self.pending.get(&key).is_some_and(|p| p.born == born) {
            self.drop_key(key);
        }
    }

    fn drop_key(&mut self, key: FragKey) {
        if let Some(p) = self.pending.remove(&key) {
            self.bytes -= p.bytes;
            self.dropped.push(key);
        }
    }
}

#[cfg(test)]
mod dissect_tests {
    use super::*;

    fn ipv4(tos: u8, proto: u8, id: u16, flags_off: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x45, tos];
        v.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(&flags_off.to_be_bytes());
        v.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        v.extend_from_slice(payload);
        v
    }

    fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = sport.to_be_bytes().to_vec();
        v.extend_from_slice(&dport.to_be_bytes());
        v.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(payload);
        v
    }

    fn ip(d: Dissection<'_>) -> Dissected<'_> {
        match d {
            Dissection::Ip(d) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn udp_and_tcp_headers_and_payloads() {
        let pkt = ipv4(0xb8, 17, 1, 0, &udp(5060, 40000, b"hello"));
        let d = ip(dissect(101, &pkt));
        assert_eq!(
            d.ip,
            IpInfo {
                dscp: Dscp::EF,
                version: IpVersion::V4,
                depth: 1
            }
        );
        assert_eq!(d.src, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(d.dst, IpAddr::from([10, 0, 0, 2]));
        assert_eq!((d.protocol, d.fragment), (17, None));
        assert_eq!(d.transport.ports(), Some((5060, 40000)));
        assert_eq!(d.transport.payload(), Some(&b"hello"[..]));
        // Ethernet padding beyond the IP total length is not payload.
        let mut padded = pkt.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(
            ip(dissect(101, &padded)).transport.payload(),
            Some(&b"hello"[..])
        );

        let mut tcp = vec![
            0x07, 0xd0, 0xc3, 0x50, 0, 0, 0, 5, 0, 0, 0, 9, 0x60, 0x12, 0x10, 0,
        ];
        tcp.extend_from_slice(&[0, 0, 0, 0, 2, 4, 5, 0xb4]); // 4 bytes of options
        tcp.extend_from_slice(b"data");
        let pkt = ipv4(0x60, 6, 1, 0, &tcp);
        let d = ip(dissect(101, &pkt));
        assert_eq!(
            d.transport,
            Transport::Tcp {
                src_port: 2000,
                dst_port: 50000,
                seq: 5,
                ack: 9,
                flags: tcp_flags::SYN | tcp_flags::ACK,
                window: 0x1000,
                payload: b"data",
            }
        );
        // Truncated headers give no transport, but the IP header is still reported.
        let short = ipv4(0, 6, 1, 0, &tcp[..10]);
        assert_eq!(ip(dissect(101, &short)).transport, Transport::None);
        assert_eq!(dissect(1, &[0u8; 3]), Dissection::NotIp);
        assert_eq!(dissect(147, &pkt), Dissection::UnsupportedLinkType);
    }

    #[test]
    fn the_etherparse_slicer_agrees_with_the_handwritten_one() {
        let eth = |ip: Vec<u8>| {
            let mut f = vec![0u8; 12];
            f.extend_from_slice(&[0x08, 0x00]);
            f.extend(ip);
            f
        };
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&5060u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&5061u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&7u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x18;
        tcp[14..16].copy_from_slice(&512u16.to_be_bytes());
        tcp.extend_from_slice(b"INVITE");
        let frames = [
            eth(ipv4(0xb8, 17, 1, 0, &udp(16384, 20000, b"rtp payload"))),
            eth(ipv4(0x60, 6, 2, 0, &tcp)),
            // Ethernet padding after the IP datagram.
            {
                let mut f = eth(ipv4(0, 17, 3, 0, &udp(1, 2, b"x")));
                f.extend_from_slice(&[0; 9]);
                f
            },
        ];
        for f in &frames {
            let hand = ethernet_ipv4_fast(f).expect("hand-written");
            let ep = ethernet_ipv4_etherparse(f).expect("etherparse");
            assert_eq!(format!("{hand:?}"), format!("{ep:?}"));
        }
        // A fragment and a short frame: neither fast path takes them.
        let frag = eth(ipv4(0, 17, 4, 0x2000, &udp(1, 2, b"x")));
        assert!(ethernet_ipv4_fast(&frag).is_none() && ethernet_ipv4_etherparse(&frag).is_none());
        assert!(ethernet_ipv4_etherparse(&frames[0][..20]).is_none());
    }

    #[test]
    fn dissect_agrees_with_decode_through_tunnels() {
        let inner = ipv4(0xb8, 17, 1, 0, &udp(1, 2, b"x"));
        let outer = ipv4(0, 4, 2, 0, &inner);
        let d = ip(dissect(101, &outer));
        assert_eq!(Decoded::Ip(d.ip), decode(101, &outer));
        assert_eq!(d.ip.depth, 2);
        assert_eq!(d.transport.ports(), Some((1, 2)));
    }

    #[test]
    fn ipv6_fragments_and_addresses() {
        let mut frag = vec![17, 0, 0x00, 0x01, 0, 0, 0, 42]; // offset 0, M=1, id 42
        frag.extend_from_slice(&udp(5060, 5060, b"abc"));
        let mut v6 = vec![0x60, 0, 0, 0];
        v6.extend_from_slice(&(frag.len() as u16).to_be_bytes());
        v6.extend_from_slice(&[44, 64]);
        v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        v6.extend_from_slice(&[0; 11]);
        v6.push(1);
        v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        v6.extend_from_slice(&[0; 11]);
        v6.push(2);
        v6.extend_from_slice(&frag);
        let d = ip(dissect(101, &v6));
        assert_eq!(d.src, "2001:db8::1".parse::<IpAddr>().expect("ip"));
        assert_eq!(d.protocol, 17);
        assert_eq!(
            d.fragment,
            Some(Fragment {
                id: 42,
                offset: 0,
                more: true
            })
        );
        assert_eq!(d.transport.ports(), Some((5060, 5060)));
    }

    #[test]
    fn ipv4_fragments_reassemble_in_any_order() {
        let whole = udp(5060, 5060, &[7u8; 40]);
        let (a, rest) = whole.split_at(16);
        let (b, c) = rest.split_at(16);
        let f1 = ipv4(0, 17, 9, 0x2000, a);
        let f2 = ipv4(0, 17, 9, 0x2000 | 2, b);
        let f3 = ipv4(0, 17, 9, 4, c);
        let mut defrag = Defragmenter::new(DefragLimits::default());
        let mut out = None;
        for pkt in [&f3, &f1, &f2] {
            let d = ip(dissect(101, pkt));
            let key = FragKey::of(&d).expect("fragment");
            assert_eq!(out, None);
            out = defrag.add(key, d.fragment.expect("fragment"), d.ip_payload);
        }
        assert_eq!(out.as_deref(), Some(&whole[..]));
        assert_eq!(defrag.pending(), 0);
        // The non-first fragment has no transport; the first has ports.
        assert_eq!(ip(dissect(101, &f3)).transport, Transport::None);
        assert_eq!(ip(dissect(101, &f1)).transport.ports(), Some((5060, 5060)));
        assert!(defrag.drain_dropped().is_empty());
    }

    #[test]
    fn incomplete_datagrams_are_dropped_by_age_and_count() {
        let mut defrag = Defragmenter::new(DefragLimits {
            max_pending: 2,
            max_age_packets: 3,
            max_bytes: 1 << 20,
        });
        let key = |id| FragKey {
            src: IpAddr::from([1, 1, 1, 1]),
            dst: IpAddr::from([2, 2, 2, 2]),
            id,
            protocol: 17,
        };
        let first = Fragment {
            id: 0,
            offset: 0,
            more: true,
        };
        for id in 0..3 {
            assert_eq!(defrag.add(key(id), first, &[0; 8]), None);
        }
        // Room for two: the oldest went.
        assert_eq!(defrag.drain_dropped(), vec![key(0)]);
        for _ in 0..4 {
            defrag.tick();
        }
        let mut dropped = defrag.drain_dropped();
        dropped.sort_by_key(|k| k.id);
        assert_eq!(dropped, vec![key(1), key(2)]);
        assert_eq!(defrag.pending(), 0);
        // Beyond 65535 bytes: dropped at once.
        let far = Fragment {
            id: 5,
            offset: 65_530,
            more: false,
        };
        assert_eq!(defrag.add(key(5), far, &[0; 16]), None);
        assert_eq!(defrag.pending(), 0);
        // Endless duplicates of one piece: dropped once too many.
        for _ in 0..MAX_PIECES {
            assert_eq!(defrag.add(key(7), first, &[0; 8]), None);
        }
        assert_eq!(defrag.pending(), 1);
        assert_eq!(defrag.add(key(7), first, &[0; 8]), None);
        assert_eq!(defrag.pending(), 0);
        assert_eq!(defrag.drain_dropped(), vec![key(7)]);
        defrag.add(key(6), first, &[0; 8]);
        defrag.finish();
        assert_eq!(defrag.drain_dropped(), vec![key(6)]);
    }
}
