//! Fuzzes the capture reader and packet decoder.
//!
//! - `dscp_tally` over arbitrary bytes (pcap, pcapng or garbage) never panics and returns;
//! - the tally's counts are consistent with each other;
//! - `decode` never panics on any link type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ucm::pcap::{decode, dscp_tally};

fuzz_target!(|data: &[u8]| {
    if let Ok(tally) = dscp_tally(data) {
        let by_dscp: u64 = tally.by_dscp.values().sum();
        let unsupported: u64 = tally.unsupported_link_types.values().sum();
        assert_eq!(by_dscp, tally.ip_packets);
        assert!(tally.ip_packets + unsupported <= tally.packets);
        assert!(tally.by_dscp.keys().all(|&d| d <= 63));
    }
    if let Some((&first, rest)) = data.split_first() {
        let _ = decode(u16::from(first), rest);
        let _ = decode(u16::from(first) + 200, rest);
    }
});
