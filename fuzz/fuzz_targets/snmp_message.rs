//! Fuzzes the SNMP agent: one datagram in, at most one answer out.
//!
//! Input: one byte choosing the maximum message size, then the datagram.
//!
//! - `answer` never panics, whatever the bytes (BER lengths, tags, OIDs, PDU kinds);
//! - an answer fits the maximum message size and decodes as an SNMPv2c Response carrying the
//!   request's community;
//! - a message whose community is not listed is never answered.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rasn_snmp::v2::Pdus;
use rasn_snmp::v2c::Message;
use ucm::services::snmp::agent::{answer, Dropped};
use ucm::services::snmp::mib::{DeviceStatus, NodeFacts, NodeRow, NodeStatus, PhoneRow, View};

fn view() -> &'static View {
    static V: OnceLock<View> = OnceLock::new();
    V.get_or_init(|| {
        View::build(&NodeFacts {
            sys_descr: "ucm fuzz".into(),
            sys_name: "ucm-pub".into(),
            uptime_ticks: 1,
            cluster_id: "fuzz".into(),
            nodes: vec![NodeRow {
                name: "ucm-pub".into(),
                description: String::new(),
                version: "1".into(),
                status: NodeStatus::Up,
                ipv4: Some([127, 0, 0, 1]),
            }],
            phones: (1..=40)
                .map(|i| PhoneRow {
                    index: i,
                    name: format!("SEP{i:012X}"),
                    description: "phone".into(),
                    user: String::new(),
                    status: DeviceStatus::Registered,
                    ipv4: [127, 0, 0, 10],
                    device_pool_index: 1,
                    lines: vec![format!("{}", 10000 + i)],
                })
                .collect(),
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&size, msg)) = data.split_first() else {
        return;
    };
    let max = 484 + usize::from(size) * 64;
    match answer(msg, &["public"], view(), max) {
        Ok(a) => {
            assert!(a.bytes.len() <= max, "{} > {max}", a.bytes.len());
            let m: Message<Pdus> = rasn::ber::decode(&a.bytes).expect("answer decodes");
            assert_eq!(m.community.as_ref(), b"public");
            assert!(matches!(m.data, Pdus::Response(_)));
        }
        Err(Dropped::Community) => {
            if let Ok(m) = rasn::ber::decode::<Message<Pdus>>(msg) {
                assert_ne!(m.community.as_ref(), b"public");
            }
        }
        Err(_) => {}
    }
});
