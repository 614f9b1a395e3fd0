//! Link layer -> IP -> tunnels, down to the innermost IP header.

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

/// Decodes a packet captured with LINKTYPE `link_type` down to its innermost IP header.
pub fn decode(link_type: u16, data: &[u8]) -> Decoded {
    let found = match link_type {
        // LINKTYPE_NULL: 4-byte address family in the capturing host's byte order.
        0 => {
            let Some(&[a, b, c, d]) = data.get(..4) else {
                return Decoded::NotIp;
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
        _ => return Decoded::UnsupportedLinkType,
    };
    match found {
        Some(info) => Decoded::Ip(info),
        None => Decoded::NotIp,
    }
}

fn raw_ip(data: &[u8], depth: u8) -> Option<IpInfo> {
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

/// An Ethernet II frame, with any stack of 802.1Q / 802.1ad tags.
fn ethernet(frame: &[u8], depth: u8) -> Option<IpInfo> {
    let et = be16(frame, 12)?;
    ethertype(et, frame.get(14..)?, depth)
}

/// A payload identified by an ethertype; VLAN tags (4 bytes each: TCI, inner ethertype) are
/// skipped.
fn ethertype(mut et: u16, mut payload: &[u8], depth: u8) -> Option<IpInfo> {
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
fn ipv4(data: &[u8], depth: u8) -> Option<IpInfo> {
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
    let this = IpInfo {
        dscp: Dscp::from_tos(tos),
        version: IpVersion::V4,
        depth: depth + 1,
    };
    let frag_offset = be16(data, 6)? & 0x1fff;
    if frag_offset != 0 || this.depth >= MAX_DEPTH {
        // A non-first fragment carries no next-layer header.
        return Some(this);
    }
    let total = usize::from(be16(data, 2)?);
    let end = if total >= hlen {
        total.min(data.len())
    } else {
        data.len()
    };
    let payload = data.get(hlen..end).unwrap_or(&[]);
    Some(next_header(proto, payload, this).unwrap_or(this))
}

/// The header at `data` is IPv6: returns it, or the innermost header of a tunnel it carries.
fn ipv6(data: &[u8], depth: u8) -> Option<IpInfo> {
    let (Some(&b0), Some(&b1), Some(&nh)) = (data.first(), data.get(1), data.get(6)) else {
        return None;
    };
    if data.len() < 40 || b0 >> 4 != 6 {
        return None;
    }
    let tclass = ((b0 & 0x0f) << 4) | (b1 >> 4);
    let this = IpInfo {
        dscp: Dscp::from_tos(tclass),
        version: IpVersion::V6,
        depth: depth + 1,
    };
    if this.depth >= MAX_DEPTH {
        return Some(this);
    }
    let plen = usize::from(be16(data, 4)?);
    let end = if plen == 0 {
        data.len() // jumbogram or unknown: use what was captured
    } else {
        (40 + plen).min(data.len())
    };
    let mut payload = data.get(40..end).unwrap_or(&[]);
    let mut next = nh;
    loop {
        match next {
            // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
            0 | 43 | 60 => {
                let (Some(&nh), Some(&len)) = (payload.first(), payload.get(1)) else {
                    return Some(this);
                };
                let Some(rest) = payload.get((usize::from(len) + 1) * 8..) else {
                    return Some(this);
                };
                next = nh;
                payload = rest;
            }
            // Fragment header: 8 bytes; only the first fragment holds the next header.
            44 => {
                let (Some(&nh), Some(off)) = (payload.first(), be16(payload, 2)) else {
                    return Some(this);
                };
                if off >> 3 != 0 {
                    return Some(this);
                }
                let Some(rest) = payload.get(8..) else {
                    return Some(this);
                };
                next = nh;
                payload = rest;
            }
            // Authentication header: (len + 2) * 4 bytes.
            51 => {
                let (Some(&nh), Some(&len)) = (payload.first(), payload.get(1)) else {
                    return Some(this);
                };
                let Some(rest) = payload.get((usize::from(len) + 2) * 4..) else {
                    return Some(this);
                };
                next = nh;
                payload = rest;
            }
            _ => break,
        }
    }
    Some(next_header(next, payload, this).unwrap_or(this))
}

/// The innermost IP header inside an IP payload of protocol `proto`, if it is a tunnel.
fn next_header(proto: u8, payload: &[u8], outer: IpInfo) -> Option<IpInfo> {
    match proto {
        4 => ipv4(payload, outer.depth),
        41 => ipv6(payload, outer.depth),
        47 => gre(payload, outer.depth),
        _ => None,
    }
}

/// GRE (RFC 2784/2890) carrying IP, transparent Ethernet or ERSPAN.
fn gre(data: &[u8], depth: u8) -> Option<IpInfo> {
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
