//! Fuzzes the WebDialer SOAP request reader (both services) and the response reader.
//!
//! - `parse_for` and `parse_reply` never panic and never hang (size, depth and element limits);
//! - a request read from any envelope, written again by the client side (`request_xml`), reads
//!   back to the same request (the token is not written by the client, so it is left out);
//! - the legacy service accepts a subset of the 7.0 service's operations, read the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ucm::wire::soap::{self, Credential, Request, Service};

fn without_token(req: &Request) -> Request {
    let mut r = req.clone();
    let clear = |c: &mut Credential| c.token = None;
    match &mut r {
        Request::MakeCall { cred, .. }
        | Request::EndCall { cred, .. }
        | Request::GetProfile { cred, .. }
        | Request::GetProfileDetail { cred }
        | Request::GetPrimaryLine { cred } => clear(cred),
        Request::IsClusterUser { .. } => {}
    }
    r
}

fuzz_target!(|data: &[u8]| {
    // The node refuses bodies over MAX_REQUEST and non-UTF-8 ones before parsing.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = soap::parse_reply(text);
    let wd70 = soap::parse_for(text, Service::Wd70);
    if let Ok(legacy) = soap::parse_for(text, Service::Legacy) {
        assert_eq!(wd70.as_ref().ok(), Some(&legacy));
    }
    if let Ok(req) = wd70 {
        let again = soap::request_xml(&req);
        let back = soap::parse(&again).expect("our own request envelope parses");
        assert_eq!(back, without_token(&req));
    }
});
