//! Fuzz target for the SIP message parser (`ucm::wire::sip`).
//!
//! Checks that no input makes the parser panic or hang, that every message
//! that parses survives `to_bytes` -> parse unchanged (after Content-Length
//! normalization) over both UDP and stream framing, and that the typed header
//! views round-trip through `Display`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ucm::wire::sip::*;

fn check_typed(s: &str) {
    if let Ok(v) = Via::parse(s) {
        assert_eq!(Via::parse(&v.to_string()), Ok(v.clone()), "Via {s:?}");
    }
    if let Ok(n) = NameAddr::parse(s) {
        assert_eq!(
            NameAddr::parse(&n.to_string()),
            Ok(n.clone()),
            "NameAddr {s:?}"
        );
    }
    if let Ok(u) = SipUri::parse(s) {
        assert_eq!(SipUri::parse(&u.to_string()), Ok(u.clone()), "SipUri {s:?}");
    }
    if let Ok(c) = CSeq::parse(s) {
        assert_eq!(CSeq::parse(&c.to_string()), Ok(c.clone()), "CSeq {s:?}");
    }
    if let Ok(ContactList::Addrs(addrs)) = parse_contact_list(s) {
        for n in addrs {
            assert_eq!(
                NameAddr::parse(&n.to_string()),
                Ok(n.clone()),
                "Contact {s:?}"
            );
        }
    }
    let _ = split_commas(s).count();
    let _ = unquote(s);
    let _ = unescape_uri(s);
}

fuzz_target!(|data: &[u8]| {
    // One UDP datagram.
    if let Ok(msg) = parse_datagram(data) {
        let mut expected = msg.clone();
        expected.normalize_content_length();
        let bytes = msg.to_bytes();
        match parse_datagram(&bytes) {
            Ok(again) => assert_eq!(again, expected, "datagram round trip changed the message"),
            Err(e) => panic!(
                "serialized message does not parse: {e}\n{}",
                String::from_utf8_lossy(&bytes)
            ),
        }
        assert_eq!(parse_stream_message(&bytes).as_ref(), Ok(&expected));
        assert_eq!(frame_stream(&bytes), Ok(Some(bytes.len())));
        assert_eq!(expected.to_bytes(), bytes, "serialization is not stable");

        let headers = msg.headers();
        let _ = msg.cseq();
        let _ = msg.top_via();
        let _ = headers.vias();
        let _ = headers.from_addr();
        let _ = headers.to_addr();
        let _ = headers.contacts();
        let _ = headers.max_forwards();
        let _ = headers.name_addrs("Route");
        for (_, value) in headers.iter() {
            check_typed(value);
        }
        if let SipMessage::Request(req) = &msg {
            let _ = req.validate();
            let _ = req.request_uri();
            let resp = req.make_response(200, "", Some("fuzztag"));
            if let Err(e) = parse_datagram(&resp.to_bytes()) {
                panic!("make_response produced an unparsable response: {e}");
            }
        }
    }

    // Stateless stream framing.
    match frame_stream(data) {
        Ok(Some(n)) => {
            assert!(n > 0 && n <= data.len());
            let _ = parse_stream_message(&data[..n]);
        }
        Ok(None) => {}
        Err(e) => assert!(!e.detail.is_empty()),
    }

    // Incremental stream framing, fed in chunks whose sizes come from the data.
    let chunk = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut framer = StreamFramer::new();
    let mut buf: Vec<u8> = Vec::new();
    'feed: for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match framer.poll(&buf) {
                Ok(Some(StreamEvent::KeepAlive { len, .. })) => {
                    assert!(len > 0 && len <= buf.len());
                    buf.drain(..len);
                }
                Ok(Some(StreamEvent::Message { len })) => {
                    assert!(len > 0 && len <= buf.len());
                    assert_eq!(frame_stream(&buf), Ok(Some(len)));
                    let _ = parse_stream_message(&buf[..len]);
                    buf.drain(..len);
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }

    // Typed parsers on the raw input.
    if let Ok(s) = std::str::from_utf8(data) {
        check_typed(s);
    }
});
