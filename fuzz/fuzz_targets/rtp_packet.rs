//! Fuzzes the RTP parser and receiver statistics.
//!
//! - `RtpPacket::parse` and `looks_like_rtp` never panic;
//! - a parsed packet written back parses to the same packet, and without padding
//!   the bytes are reproduced exactly;
//! - `ReceiverStats` accepts any sequence of headers and arrival times.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use ucm::media::rtp::{looks_like_rtp, ReceiverStats, RtpHeader, RtpPacket};

fuzz_target!(|data: &[u8]| {
    let _ = looks_like_rtp(data);
    if let Ok(packet) = RtpPacket::parse(data) {
        let bytes = packet.to_vec();
        let again = RtpPacket::parse(&bytes).expect("written packet must parse");
        assert_eq!(again, packet);
        if !packet.header.padding {
            assert_eq!(bytes.as_slice(), data);
        }
    }

    // Each 8 bytes: sequence (2), timestamp (4), arrival step in ms (1), flags (1).
    let mut stats = ReceiverStats::new(8000);
    let mut arrival = Duration::ZERO;
    for chunk in data.chunks_exact(8) {
        let header = RtpHeader {
            sequence: u16::from_be_bytes([chunk[0], chunk[1]]),
            timestamp: u32::from_be_bytes([chunk[2], chunk[3], chunk[4], chunk[5]]),
            ssrc: u32::from(chunk[7] >> 6),
            marker: chunk[7] & 1 != 0,
            payload_type: chunk[7] & 0x3E,
            ..RtpHeader::default()
        };
        arrival += Duration::from_millis(u64::from(chunk[6]));
        let dscp = (chunk[7] & 0x20 != 0).then_some(chunk[6] >> 2);
        stats.record(&header, usize::from(chunk[6]), arrival, dscp);
    }
    let summary = stats.summary();
    assert!(summary.gaps.len() <= ucm::media::rtp::MAX_GAPS);
    assert!(summary.jitter_ts.is_finite());
    let _ = stats.interval();
});
