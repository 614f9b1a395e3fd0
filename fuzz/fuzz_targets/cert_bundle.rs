//! Fuzzes the EMCC certificate bundle parser (`POST /ucm/trust`, files on the sFTP server).
//!
//! - `parse_bundle` never panics, and a refusal names a line inside the input;
//! - what it accepts, written again, parses back to the same entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ucm::wire::certs::{parse_bundle, write_bundle};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_bundle(text) {
        Err(e) => assert!(
            e.line >= 1 && e.line <= text.lines().count().max(1),
            "line {} of {}",
            e.line,
            text.lines().count()
        ),
        Ok(entries) => {
            let again = write_bundle(&entries);
            assert_eq!(parse_bundle(&again).expect("our own bundle parses"), entries);
        }
    }
});
