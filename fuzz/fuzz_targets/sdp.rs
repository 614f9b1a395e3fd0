//! Fuzzes the SDP parser and the offer/answer helpers.
//!
//! - `SessionDescription::parse_bytes` never panics;
//! - a parsed description serializes to text that parses to the same value and
//!   serializes identically again;
//! - the call-control helpers never panic, and the answers and re-offers they
//!   build serialize to valid SDP.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use ucm::wire::sdp::{answer_for, Direction, SessionDescription};

fn round_trip(sdp: &SessionDescription) {
    let text = sdp.to_string();
    let again = SessionDescription::parse(&text).expect("serialized SDP must parse");
    assert_eq!(&again, sdp);
    assert_eq!(again.to_string(), text);
}

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = SessionDescription::parse_bytes(data) else {
        return;
    };
    round_trip(&sdp);

    for m in &sdp.media {
        let _ = sdp.media_address(m);
        let _ = sdp.codecs(m);
        let _ = sdp.direction(m);
        let _ = m.rtcp();
        let _ = m.ptime();
        let _ = m.rtpmaps();
        let _ = m.fmtp(101);
    }
    let _ = sdp.is_hold();
    let _ = sdp.offers_codec("PCMU");

    let local = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    if let Ok(answer) = answer_for(&sdp, local, 4000, &["PCMU", "PCMA", "G722"]) {
        round_trip(&answer);
        assert_eq!(answer.media.len(), sdp.media.len());
    }
    round_trip(&sdp.with_direction(Direction::SendOnly));
});
