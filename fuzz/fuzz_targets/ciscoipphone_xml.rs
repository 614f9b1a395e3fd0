//! Fuzzes the CiscoIPPhone XML reader, writer and validator.
//!
//! - `parse_bytes` never panics and never hangs (input is bounded, nesting is bounded);
//! - a parsed object serializes (compact and pretty) to text that parses to the same object,
//!   with no warnings, and serializes identically again;
//! - the canonical form is a fixed point;
//! - validation never panics, with or without a phone model.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ucm::wire::xml::{canonicalize, parse, parse_bytes, validate, MODELS};

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = parse_bytes(data) else {
        return;
    };
    let obj = parsed.object;
    for text in [obj.to_xml(), obj.to_xml_pretty()] {
        let again = parse(&text).expect("serialized object must parse");
        assert_eq!(again.object, obj);
        assert!(again.warnings.is_empty(), "{:?}", again.warnings);
        assert_eq!(again.object.to_xml(), obj.to_xml());
    }
    let canon = canonicalize(&obj.to_xml()).expect("canonical form");
    assert_eq!(canonicalize(&canon).expect("canonical form"), canon);

    let _ = validate(&obj, None);
    for model in MODELS {
        let _ = validate(&obj, Some(model));
    }
});
