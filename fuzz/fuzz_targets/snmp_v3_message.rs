//! Fuzzes the SNMPv3 user-based security model (RFC 3414, RFC 3826): one datagram in, at most
//! one answer out.
//!
//! Input: one byte choosing the engine time (the low nibble, in steps of 100 s around boots'
//! start) and the maximum message size (the high nibble), then the datagram.
//!
//! - `Usm::answer` never panics, whatever the bytes (BER, flags, security parameters, digests,
//!   encrypted scoped PDUs);
//! - an answer fits the maximum message size and decodes as an SNMPv3 message with the
//!   request's msgID;
//! - the engine has no noAuthNoPriv user, so a request without the authentication flag never
//!   gets data: a Report, or (below a known user's level) a Response with authorizationError
//!   and no bindings.
//!
//! The engine ID is 0x8000000001020304, the one the seeds were sent to by net-snmp's
//! `snmpget -e 0x8000000001020304` (users `ucmv3`: SHA with AES, and SHA-256 without privacy):
//! so the digests of the seeds are right and the fuzzer starts past the engine and user checks.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rasn_snmp::v2::Pdus;
use rasn_snmp::v3::{Message, ScopedPduData};
use ucm::services::snmp::agent::Kind;
use ucm::services::snmp::mib::{NodeFacts, View};
use ucm::services::snmp::model::{AuthProtocol, PrivProtocol, V3Auth, V3Privacy, V3User};
use ucm::services::snmp::usm::Usm;

fn view() -> &'static View {
    static V: OnceLock<View> = OnceLock::new();
    V.get_or_init(|| {
        View::build(&NodeFacts {
            sys_descr: "ucm fuzz".into(),
            sys_name: "ucm-pub".into(),
            uptime_ticks: 1,
            cluster_id: "fuzz".into(),
            nodes: Vec::new(),
            phones: Vec::new(),
        })
    })
}

fn usm() -> &'static Usm {
    static U: OnceLock<Usm> = OnceLock::new();
    U.get_or_init(|| {
        let users = [
            V3User {
                name: "ucmv3".into(),
                auth: Some(V3Auth {
                    protocol: AuthProtocol::Sha,
                    password: "ucmv3auth".into(),
                }),
                privacy: Some(V3Privacy {
                    protocol: PrivProtocol::Aes,
                    password: "ucmv3priv".into(),
                }),
            },
            V3User {
                name: "ucmv3sha256".into(),
                auth: Some(V3Auth {
                    protocol: AuthProtocol::Sha256,
                    password: "ucmv3auth".into(),
                }),
                privacy: None,
            },
        ];
        Usm::new(vec![0x80, 0, 0, 0, 1, 2, 3, 4], 0, &users)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, msg)) = data.split_first() else {
        return;
    };
    let time = u32::from(knobs & 0x0f) * 100;
    let max = 484 + usize::from(knobs >> 4) * 256;
    let Ok(a) = usm().answer(msg, view(), max, time) else {
        return;
    };
    assert!(a.bytes.len() <= max, "{} > {max}", a.bytes.len());
    let answer: Message = rasn::ber::decode(&a.bytes).expect("the answer decodes as SNMPv3");
    let request: Message = rasn::ber::decode(msg).expect("an answered request decoded");
    assert_eq!(
        answer.global_data.message_id,
        request.global_data.message_id
    );
    let authenticated = request
        .global_data
        .flags
        .as_ref()
        .first()
        .is_some_and(|f| f & 1 != 0);
    if authenticated || matches!(a.kind, Kind::Report(_)) {
        return;
    }
    let ScopedPduData::CleartextPdu(scoped) = &answer.scoped_data else {
        panic!("an unauthenticated request got an encrypted answer");
    };
    let Pdus::Response(r) = &scoped.data else {
        panic!("an unauthenticated request got {:?}", scoped.data);
    };
    assert_eq!(r.0.error_status, 16, "authorizationError, not data: {r:?}");
    assert!(r.0.variable_bindings.is_empty(), "no bindings: {r:?}");
});
