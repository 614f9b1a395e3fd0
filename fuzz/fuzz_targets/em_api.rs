//! Fuzzes the Extension Mobility API parser (requests, queries and replies).
//!
//! - `api::parse` and `api::parse_reply` never panic, and every refusal is EM error 1 or 8;
//! - a login request the client writes from parsed fields parses back to the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ucm::wire::em::{self as api, Certificate, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = api::parse_reply(text);
    match api::parse(text) {
        Err(e) => assert!(e.code == 1 || e.code == 8, "unexpected code {}", e.code),
        Ok(env) => {
            if let (
                Request::Login {
                    device,
                    user,
                    profile,
                    duration,
                    ..
                },
                Certificate::Plain(pw),
            ) = (&env.request, &env.app.certificate)
            {
                let again = api::login_request(
                    &env.app.app_id,
                    pw,
                    device,
                    user,
                    profile.as_deref(),
                    *duration,
                );
                let back = api::parse(&again).expect("our own login request parses");
                match back.request {
                    Request::Login {
                        device: d,
                        user: u,
                        profile: p,
                        duration: t,
                        ..
                    } => {
                        assert_eq!((&d, &u, &p, &t), (device, user, profile, duration));
                    }
                    other => panic!("login became {other:?}"),
                }
            }
        }
    }
});
