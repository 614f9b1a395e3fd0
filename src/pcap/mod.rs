//! Packet-capture reading: classic pcap and pcapng files, streamed from any [`std::io::Read`]
//! in memory bounded by the largest record (never by the file size), decoded down to the
//! innermost IP header to tally DSCP markings the way Wireshark/tshark counts them.
//!
//! - [`CaptureReader`]: yields [`Packet`]s (frame number, timestamp, link type, bytes).
//! - [`decode`]: link layer -> IPv4/IPv6 -> tunnels (IP-in-IP, GRE, ERSPAN) -> [`IpInfo`].
//! - [`dscp_tally`]: per-DSCP packet counts for a whole capture.
//! - [`tcp`]: bounded TCP reassembly of one connection into in-order chunks and gaps.
//! - [`http`]: HTTP/1.1 message framing over a reassembled connection ([`HttpConversation`]).
//! - [`sipframe`]: SIP-over-TCP message framing over a reassembled connection.
//! - [`dissect`]: like [`decode`], plus addresses, ports, TCP fields and the transport payload;
//!   [`Defragmenter`] reassembles IP fragments with bounded memory.
//! - [`flow`]: a bounded, bidirectional flow table keyed by 5-tuple.

mod decode;
pub mod flow;
pub mod http;
mod reader;
pub mod sipframe;
pub mod tcp;

#[cfg(test)]
use reader::TsResol;

use std::collections::BTreeMap;
use std::io::Read;

pub use decode::{decode, Decoded, IpInfo, IpVersion};
pub use decode::{
    dissect, tcp_flags, transport, DefragLimits, Defragmenter, Dissected, Dissection, FragKey,
    Fragment, Transport,
};
pub use http::{HttpConversation, HttpEvent, HttpKind, HttpMessage, HttpStreamParser};
pub use reader::{CaptureFormat, CaptureReader, Packet, PcapError, MAX_BLOCK_LEN, MAX_SNAPLEN};
pub use sipframe::{SipFramedMessage, SipStreamEvent, SipStreamParser, SipTcpFramer};
pub use tcp::{
    Direction, Gap, StreamBuffer, StreamChunk, TcpConfig, TcpEvent, TcpFlags, TcpReassembler,
    TcpSegment,
};

/// Per-DSCP counts of a capture, counting for each IP packet the DSCP of its innermost IP header.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DscpTally {
    /// Every packet record in the file.
    pub packets: u64,
    /// Packets that carry an IPv4 or IPv6 header.
    pub ip_packets: u64,
    /// DSCP value (0..=63) -> number of IP packets whose innermost IP header carries it.
    pub by_dscp: BTreeMap<u8, u64>,
    /// Link type -> number of packets that could not be decoded because the link type is
    /// not supported.
    pub unsupported_link_types: BTreeMap<u16, u64>,
}

/// Reads a whole capture (pcap or pcapng) and counts the innermost DSCP of every IP packet.
pub fn dscp_tally<R: Read>(reader: R) -> Result<DscpTally, PcapError> {
    let mut capture = CaptureReader::new(reader)?;
    let mut tally = DscpTally::default();
    while let Some(packet) = capture.next_packet()? {
        tally.packets += 1;
        match decode(packet.link_type, packet.data) {
            Decoded::Ip(info) => {
                tally.ip_packets += 1;
                *tally.by_dscp.entry(info.dscp.value()).or_insert(0) += 1;
            }
            Decoded::NotIp => {}
            Decoded::UnsupportedLinkType => {
                *tally
                    .unsupported_link_types
                    .entry(packet.link_type)
                    .or_insert(0) += 1;
            }
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests;
