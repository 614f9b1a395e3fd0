//! Fuzzes the EM application's form (`/emapp/EMAppServlet?...`, read by `wire::codec::Form`).
//!
//! - reading any query never panics; every value `get` returns is trimmed and not empty, and is
//!   the first field of that name in any ASCII case;
//! - the pairs, percent-encoded again, read back to the same pairs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ucm::wire::codec::{percent_encode, Form};

/// The fields the EM application reads.
const FIELDS: [&str; 6] = ["device", "loginType", "userid", "dn", "pin", "logout"];

fuzz_target!(|data: &[u8]| {
    let form = Form::parse(data);
    for name in FIELDS {
        let got = form.get(name);
        if let Some(v) = got {
            assert!(!v.is_empty());
            assert_eq!(v, v.trim());
        }
        let first = form
            .pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty());
        assert_eq!(got, first);
    }
    let encoded = form
        .pairs
        .iter()
        .map(|(n, v)| format!("{}={}", percent_encode(n), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    assert_eq!(Form::parse(encoded.as_bytes()), form);
});
