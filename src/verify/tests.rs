//! Policy parsing, classification and the audit over hand-built packets.

use std::net::Ipv4Addr;

use super::*;
use crate::net::Dscp;
use crate::verify::policy::{Cidr, Expect};

// ------------------------------------------------------------------ policy

#[test]
fn default_policy_file_is_the_built_in_default() {
    let p = Policy::parse(DEFAULT_POLICY_YAML, "qos-policy.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p, Policy::cisco_default());
    let any = "10.0.0.1".parse().expect("ip");
    let want = |c| p.expectation(any, c).dscp.map(Dscp::value);
    assert_eq!(want(TrafficClass::Sip), Some(24));
    assert_eq!(want(TrafficClass::Sccp), Some(24));
    assert_eq!(want(TrafficClass::Cti), Some(24));
    assert_eq!(want(TrafficClass::Assistant), Some(24));
    assert_eq!(want(TrafficClass::Voice), Some(46));
    assert_eq!(want(TrafficClass::Video), Some(34));
    assert_eq!(want(TrafficClass::Http), Some(0));
    assert_eq!(want(TrafficClass::Tftp), Some(0));
    assert_eq!(want(TrafficClass::Other), Some(0));
    // An empty file is the default too.
    assert_eq!(
        Policy::parse("# nothing\n", "e.yaml").expect("empty"),
        Policy::cisco_default()
    );
}

const POLICY: &str = "\
classes:
  sip: cs3
  other: any
senders:
  - address: 10.20.0.1
    role: gateway
    classes:
      sip: AF31
  - address: 10.10.0.0/16
    role: phones
  - address: 2001:db8::/32
roles:
  phones:
    http: 0x18
";

#[test]
fn policy_senders_roles_and_precedence() {
    let p = Policy::parse(POLICY, "p.yaml").unwrap_or_else(|e| panic!("{e}"));
    let ip = |s: &str| s.parse().expect("ip");
    // The gateway's own override.
    let e = p.expectation(ip("10.20.0.1"), TrafficClass::Sip);
    assert_eq!((e.audited, e.role.as_deref()), (true, Some("gateway")));
    assert_eq!(e.dscp, Some(Dscp::AF31));
    // Phones: base table for SIP, role table for HTTP, built-in default for voice.
    let phone = ip("10.10.3.4");
    assert_eq!(
        p.expectation(phone, TrafficClass::Sip).dscp,
        Some(Dscp::CS3)
    );
    assert_eq!(
        p.expectation(phone, TrafficClass::Http).dscp,
        Some(Dscp::CS3)
    );
    assert_eq!(
        p.expectation(phone, TrafficClass::Voice).dscp,
        Some(Dscp::EF)
    );
    // `any`: audited sender, unchecked class.
    let e = p.expectation(phone, TrafficClass::Other);
    assert!(e.audited && e.dscp.is_none());
    // IPv6 prefix without a role.
    let e = p.expectation(ip("2001:db8::5"), TrafficClass::Voice);
    assert_eq!((e.audited, e.role, e.dscp), (true, None, Some(Dscp::EF)));
    // Unlisted senders are not audited.
    let e = p.expectation(ip("192.168.1.1"), TrafficClass::Sip);
    assert_eq!((e.audited, e.dscp), (false, None));
}

fn invalid(text: &str) -> (u64, u64, String) {
    match Policy::parse(text, "p.yaml") {
        Err(PolicyError::Invalid {
            line,
            column,
            message,
            file,
        }) => {
            assert_eq!(file, "p.yaml");
            (line, column, message)
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn policy_unknown_fields_are_errors_with_line_and_column() {
    let (line, _, msg) = invalid("classes:\n  sip: CS3\n  voip: EF\n");
    assert_eq!(line, 3, "{msg}");
    assert!(msg.contains("voip"), "{msg}");
    let (line, _, msg) =
        invalid("classes:\n  sip: CS3\nsenders:\n  - address: 10.0.0.1\n    rol: x\n");
    assert_eq!(line, 5, "{msg}");
    assert!(msg.contains("rol"), "{msg}");
    let (line, _, msg) = invalid("clases:\n  sip: CS3\n");
    assert_eq!(line, 1, "{msg}");
}

#[test]
fn policy_bad_values_are_errors_with_line_and_column() {
    let (line, column, msg) = invalid("classes:\n  sip: CS3\n  voice: 64\n");
    assert_eq!((line, column), (3, 10), "{msg}");
    assert!(msg.contains("64"), "{msg}");
    let (line, _, msg) = invalid("classes:\n  video: AF44\n");
    assert_eq!(line, 2, "{msg}");
    assert!(msg.contains("AF44"), "{msg}");
    let (line, _, msg) = invalid("senders:\n  - address: 10.0.0.0/33\n");
    assert_eq!(line, 2, "{msg}");
    let (line, _, msg) = invalid(
        "senders:\n  - address: 10.0.0.1\n    role: gw\nroles:\n  gateways:\n    sip: AF31\n",
    );
    // The key's line or its value's first line.
    assert!((5..=6).contains(&line), "{line}: {msg}");
    assert!(msg.contains("gateways"), "{msg}");
    let e = Policy::parse("classes:\n  voice: 64\n", "p.yaml").expect_err("bad");
    assert!(e.to_string().starts_with("p.yaml:2:10: "), "{e}");
}

#[test]
fn cidr_matching() {
    let c: Cidr = "10.1.0.0/16".parse().expect("cidr");
    assert!(c.contains("10.1.200.3".parse().expect("ip")));
    assert!(!c.contains("10.2.0.1".parse().expect("ip")));
    assert!(!c.contains("::1".parse().expect("ip")));
    let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
    assert!(all.contains("192.0.2.1".parse().expect("ip")));
    let one: Cidr = "2001:db8::1".parse().expect("cidr");
    assert_eq!(one.prefix, 128);
    assert!("10.0.0.1/40".parse::<Cidr>().is_err());
    assert!("nonsense".parse::<Cidr>().is_err());
    assert_eq!(
        serde_json::from_str::<Expect>("\"any\"").map_err(|e| e.to_string()),
        Ok(Expect::Any)
    );
}

// ------------------------------------------------------------------ packet builders

pub(crate) fn ipv4_udp(
    tos: u8,
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut udp = sport.to_be_bytes().to_vec();
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    ipv4(tos, 17, src, dst, 0, 0, &udp)
}

pub(crate) fn ipv4(
    tos: u8,
    proto: u8,
    src: [u8; 4],
    dst: [u8; 4],
    id: u16,
    flags_off: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = vec![0x45, tos];
    v.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&flags_off.to_be_bytes());
    v.extend_from_slice(&[64, proto, 0, 0]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(payload);
    v
}

pub(crate) fn ipv4_tcp(
    tos: u8,
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut tcp = sport.to_be_bytes().to_vec();
    tcp.extend_from_slice(&dport.to_be_bytes());
    tcp.extend_from_slice(&1000u32.to_be_bytes());
    tcp.extend_from_slice(&2000u32.to_be_bytes());
    tcp.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    tcp.extend_from_slice(payload);
    ipv4(tos, 6, src, dst, 0, 0, &tcp)
}

fn tos(d: Dscp) -> u8 {
    d.tos()
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut v = vec![0x80, 0];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.resize(172, 0xff);
    v
}

const PHONE: [u8; 4] = [10, 10, 0, 5];
const CUCM: [u8; 4] = [10, 0, 0, 1];
const GW: [u8; 4] = [10, 20, 0, 1];

fn invite_with_sdp(media_addr: Ipv4Addr, audio: u16, video: u16) -> Vec<u8> {
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 {media_addr}\r\ns=-\r\nc=IN IP4 {media_addr}\r\nt=0 0\r\n\
         m=audio {audio} RTP/AVP 0\r\nm=video {video} RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n"
    );
    format!(
        "INVITE sip:2000@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.10.0.5:5060;branch=z9hG4bK1\r\n\
         Max-Forwards: 70\r\nTo: <sip:2000@10.0.0.1>\r\nFrom: <sip:1000@10.10.0.5>;tag=1\r\n\
         Call-ID: c1\r\nCSeq: 1 INVITE\r\nContact: <sip:1000@10.10.0.5>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

fn run(policy: &Policy, packets: &[Vec<u8>]) -> FileAudit {
    let mut a = Auditor::new(policy, AuditOptions::default());
    for (i, p) in packets.iter().enumerate() {
        a.packet(i as u64 + 1, 101, p); // raw IP
    }
    a.finish("t.pcap")
}

fn flow<'a>(audit: &'a FileAudit, src: &str) -> &'a FlowAudit {
    audit
        .flows
        .iter()
        .find(|f| f.src == src)
        .unwrap_or_else(|| panic!("no flow from {src}: {:#?}", audit.flows))
}

// ------------------------------------------------------------------ audit

#[test]
fn sdp_media_is_classified_and_marking_judged_per_direction() {
    let mut pkts = vec![ipv4_udp(
        tos(Dscp::CS3),
        PHONE,
        5060,
        CUCM,
        5060,
        &invite_with_sdp(Ipv4Addr::from(PHONE), 20000, 20002),
    )];
    // Voice from the phone: EF except frames 3 and 5. Voice back: all EF.
    for i in 0..6u16 {
        let d = if i == 1 || i == 3 {
            Dscp::DEFAULT
        } else {
            Dscp::EF
        };
        pkts.push(ipv4_udp(
            tos(d),
            PHONE,
            20000,
            [10, 0, 0, 9],
            30000,
            &rtp(i, 1),
        ));
    }
    pkts.push(ipv4_udp(
        tos(Dscp::EF),
        [10, 0, 0, 9],
        30000,
        PHONE,
        20000,
        &rtp(1, 2),
    ));
    // Video from the phone, AF41.
    pkts.push(ipv4_udp(
        tos(Dscp::AF41),
        PHONE,
        20002,
        [10, 0, 0, 9],
        30002,
        &rtp(1, 3),
    ));
    // RTCP of the voice stream at EF.
    pkts.push(ipv4_udp(
        tos(Dscp::EF),
        PHONE,
        20001,
        [10, 0, 0, 9],
        30001,
        &[0x81, 201, 0, 1, 0, 0, 0, 1],
    ));
    let a = run(&Policy::cisco_default(), &pkts);
    assert_eq!(a.sip_messages, 1);
    let sip = flow(&a, "10.10.0.5:5060");
    assert_eq!(
        (sip.class, sip.evidence),
        (TrafficClass::Sip, Evidence::Port)
    );
    assert!(sip.passed);
    let voice = flow(&a, "10.10.0.5:20000");
    assert_eq!(
        (voice.class, voice.evidence),
        (TrafficClass::Voice, Evidence::Sdp)
    );
    assert_eq!(voice.expected_dscp, Some(Dscp::EF));
    assert_eq!(voice.offending, 2);
    assert_eq!(voice.violations, vec![3, 5]);
    assert_eq!(voice.dscp_counts.get(&46), Some(&4));
    assert_eq!(voice.dscp_counts.get(&0), Some(&2));
    assert!(!voice.passed);
    assert_eq!(voice.first_frame, 2);
    let back = flow(&a, "10.0.0.9:30000");
    assert_eq!(back.class, TrafficClass::Voice);
    assert!(back.passed);
    let video = flow(&a, "10.10.0.5:20002");
    assert_eq!((video.class, video.passed), (TrafficClass::Video, true));
    let rtcp = flow(&a, "10.10.0.5:20001");
    assert_eq!(
        (rtcp.class, rtcp.evidence),
        (TrafficClass::Voice, Evidence::SdpRtcp)
    );
    assert!(!a.passed);
    assert_eq!((a.failed_flows, a.offending_packets), (1, 2));
    // Every IP packet is in exactly one flow direction.
    assert_eq!(a.flows.iter().map(|f| f.packets).sum::<u64>(), a.ip_packets);
}

#[test]
fn media_before_its_sdp_is_still_classified() {
    let mut pkts = Vec::new();
    for i in 0..3u16 {
        pkts.push(ipv4_udp(
            tos(Dscp::EF),
            PHONE,
            20000,
            CUCM,
            30000,
            &rtp(i, 1),
        ));
    }
    pkts.push(ipv4_udp(
        tos(Dscp::CS3),
        PHONE,
        5060,
        CUCM,
        5060,
        &invite_with_sdp(Ipv4Addr::from(PHONE), 20000, 20002),
    ));
    let a = run(&Policy::cisco_default(), &pkts);
    let voice = flow(&a, "10.10.0.5:20000");
    assert_eq!(
        (voice.class, voice.evidence),
        (TrafficClass::Voice, Evidence::Sdp)
    );
}

#[test]
fn tcp_handshake_packets_count_and_ports_classify() {
    use crate::pcap::tcp_flags::{ACK, SYN};
    let pkts = vec![
        ipv4_tcp(tos(Dscp::CS3), PHONE, 50000, CUCM, 2000, SYN, b""),
        // The SYN-ACK from the audited CUCM is unmarked: an offence.
        ipv4_tcp(0, CUCM, 2000, PHONE, 50000, SYN | ACK, b""),
        ipv4_tcp(tos(Dscp::CS3), PHONE, 50000, CUCM, 2000, ACK, b""),
        ipv4_tcp(tos(Dscp::CS3), CUCM, 2000, PHONE, 50000, ACK, b"\x04\0\0\0"),
        ipv4_tcp(0, PHONE, 50001, CUCM, 8080, SYN, b""),
        ipv4_tcp(0, PHONE, 50002, CUCM, 2748, SYN, b""),
        ipv4_tcp(tos(Dscp::CS3), PHONE, 50003, CUCM, 2912, SYN, b""),
        ipv4_tcp(0, PHONE, 50004, CUCM, 6970, SYN, b""),
    ];
    let a = run(&Policy::cisco_default(), &pkts);
    let from_cucm = flow(&a, "10.0.0.1:2000");
    assert_eq!(from_cucm.class, TrafficClass::Sccp);
    assert_eq!(
        (from_cucm.offending, from_cucm.violations.clone()),
        (1, vec![2])
    );
    assert!(flow(&a, "10.10.0.5:50000").passed);
    assert_eq!(flow(&a, "10.10.0.5:50001").class, TrafficClass::Http);
    let cti = flow(&a, "10.10.0.5:50002");
    assert_eq!((cti.class, cti.passed), (TrafficClass::Cti, false));
    assert_eq!(flow(&a, "10.10.0.5:50003").class, TrafficClass::Assistant);
    assert_eq!(flow(&a, "10.10.0.5:50004").class, TrafficClass::Tftp);
}

#[test]
fn senders_not_listed_are_not_audited() {
    let policy = Policy::parse(
        "senders:\n  - address: 10.0.0.1\n    role: cucm\n",
        "p.yaml",
    )
    .expect("policy");
    let pkts = vec![
        ipv4_udp(0, PHONE, 5060, CUCM, 5060, b"x"),
        ipv4_udp(tos(Dscp::CS3), CUCM, 5060, PHONE, 5060, b"y"),
    ];
    let a = run(&policy, &pkts);
    let phone = flow(&a, "10.10.0.5:5060");
    assert!(!phone.audited && phone.expected_dscp.is_none() && phone.passed);
    let cucm = flow(&a, "10.0.0.1:5060");
    assert_eq!(cucm.sender_role.as_deref(), Some("cucm"));
    assert!(cucm.passed);
    assert!(a.passed);
    assert_eq!(a.audited_flows, 1);
}

#[test]
fn heuristics_multicast_tftp_and_other() {
    let mut pkts = Vec::new();
    // RTP without SDP between unprivileged ports.
    for i in 0..10u16 {
        pkts.push(ipv4_udp(tos(Dscp::EF), GW, 16384, PHONE, 16386, &rtp(i, 9)));
    }
    // A paging stream to a 239/8 group (EF) and SSDP to 239.255.255.250 (not RTP).
    for i in 0..3u16 {
        pkts.push(ipv4_udp(
            tos(Dscp::EF),
            CUCM,
            2000,
            [239, 1, 1, 99],
            20480,
            &rtp(i, 5),
        ));
    }
    pkts.push(ipv4_udp(
        0,
        PHONE,
        53000,
        [239, 255, 255, 250],
        1900,
        b"M-SEARCH * HTTP/1.1\r\n\r\n",
    ));
    // TFTP: request to 69, transfer from another server port.
    pkts.push(ipv4_udp(
        0,
        PHONE,
        40000,
        CUCM,
        69,
        b"\x00\x01SEP001122334455.cnf.xml\x00octet\x00",
    ));
    pkts.push(ipv4_udp(
        0,
        CUCM,
        41000,
        PHONE,
        40000,
        b"\x00\x03\x00\x01data",
    ));
    // DNS: other.
    pkts.push(ipv4_udp(0, PHONE, 40001, CUCM, 53, b"dns"));
    // ICMP: an address-only flow.
    pkts.push(ipv4(0, 1, PHONE, CUCM, 0, 0, &[8, 0, 0, 0, 0, 0, 0, 0]));
    let a = run(&Policy::cisco_default(), &pkts);
    let rtp = flow(&a, "10.20.0.1:16384");
    assert_eq!(
        (rtp.class, rtp.evidence),
        (TrafficClass::Voice, Evidence::RtpHeuristic)
    );
    let page = flow(&a, "10.0.0.1:2000");
    assert_eq!(
        (page.class, page.evidence, page.passed),
        (TrafficClass::Voice, Evidence::Multicast, true)
    );
    let ssdp = flow(&a, "10.10.0.5:53000");
    assert_eq!(ssdp.class, TrafficClass::Other);
    let tftp = flow(&a, "10.0.0.1:41000");
    assert_eq!(
        (tftp.class, tftp.evidence),
        (TrafficClass::Tftp, Evidence::TftpTransfer)
    );
    assert_eq!(flow(&a, "10.10.0.5:40001").class, TrafficClass::Other);
    let icmp = flow(&a, "10.10.0.5");
    assert_eq!((icmp.transport, icmp.dst.as_str()), ("other", "10.0.0.1"));
    assert_eq!(a.flows.iter().map(|f| f.packets).sum::<u64>(), a.ip_packets);
    assert!(a.notes.iter().any(|n| n.contains("no cleartext SIP")));
}

#[test]
fn fragmented_sip_is_reassembled_and_every_fragment_counted() {
    let msg = invite_with_sdp(Ipv4Addr::from(PHONE), 20000, 20002);
    // The whole UDP datagram, cut into three fragments (8-byte multiples), sent last first.
    let mut udp = 5060u16.to_be_bytes().to_vec();
    udp.extend_from_slice(&5060u16.to_be_bytes());
    udp.extend_from_slice(&((8 + msg.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&msg);
    let (p1, rest) = udp.split_at(200);
    let (p2, p3) = rest.split_at(200);
    let t = tos(Dscp::CS3);
    let pkts = vec![
        ipv4(t, 17, PHONE, CUCM, 7, 400 / 8, p3),
        ipv4(0, 17, PHONE, CUCM, 7, 0x2000 | (200 / 8), p2),
        ipv4(t, 17, PHONE, CUCM, 7, 0x2000, p1),
        ipv4_udp(tos(Dscp::EF), PHONE, 20000, CUCM, 30000, &rtp(1, 1)),
    ];
    let a = run(&Policy::cisco_default(), &pkts);
    assert_eq!(
        (a.fragments, a.reassembled_datagrams, a.sip_messages),
        (3, 1, 1)
    );
    let sip = flow(&a, "10.10.0.5:5060");
    assert_eq!(sip.packets, 3);
    assert_eq!((sip.offending, sip.violations.clone()), (1, vec![2]));
    assert_eq!(flow(&a, "10.10.0.5:20000").evidence, Evidence::Sdp);
}

#[test]
fn orphan_fragments_go_to_an_address_flow() {
    let pkts = vec![ipv4(0, 17, PHONE, CUCM, 9, 100, &[0u8; 16])];
    let a = run(&Policy::cisco_default(), &pkts);
    assert_eq!(a.flows.len(), 1);
    assert_eq!(a.flows[0].src, "10.10.0.5");
    assert!(a.notes.iter().any(|n| n.contains("fragments")));
}

#[test]
fn orphan_fragments_join_the_last_flow_between_the_same_addresses() {
    let pkts = vec![
        ipv4_tcp(tos(Dscp::CS3), PHONE, 50000, CUCM, 2000, 0x18, b"abcd"),
        ipv4(tos(Dscp::CS3), 6, PHONE, CUCM, 9, 100, &[0u8; 16]),
    ];
    let a = run(&Policy::cisco_default(), &pkts);
    assert_eq!(a.flows.len(), 1, "{:#?}", a.flows);
    assert_eq!((a.flows[0].packets, a.flows[0].passed), (2, true));
    assert!(a
        .notes
        .iter()
        .any(|n| n.contains("1 were counted in the last flow")));
}

#[test]
fn a_full_flow_table_counts_the_rest_in_one_unaudited_bucket() {
    let policy = Policy::cisco_default();
    let mut a = Auditor::new(
        &policy,
        AuditOptions {
            max_flows: 2,
            ..AuditOptions::default()
        },
    );
    for port in 0..5u16 {
        a.packet(
            u64::from(port) + 1,
            101,
            &ipv4_udp(4, PHONE, 40000 + port, CUCM, 53, b"q"),
        );
    }
    let r = a.finish("t");
    assert_eq!(r.flows.len(), 3);
    let bucket = &r.flows[2];
    assert_eq!(
        (bucket.src.as_str(), bucket.packets, bucket.audited),
        ("*", 3, false)
    );
    assert_eq!(bucket.evidence, Evidence::TableFull);
    assert!(r.notes.iter().any(|n| n.contains("flow table full")));
    assert_eq!(r.flows.iter().map(|f| f.packets).sum::<u64>(), 5);
}

#[test]
fn reports_render_in_every_format() {
    let pkts = vec![
        ipv4_udp(0, PHONE, 5060, CUCM, 5060, b"x"),
        ipv4_udp(tos(Dscp::CS3), CUCM, 5060, PHONE, 5060, b"y"),
    ];
    let a = run(&Policy::cisco_default(), &pkts);
    let report = Report {
        policy: "built-in".into(),
        files: vec![
            FileOutcome::Audited(a),
            FileOutcome::Unreadable {
                path: "bad<1>.pcap".into(),
                error: "truncated pcap record at byte offset 24".into(),
            },
        ],
        only_audited: false,
    };
    assert!(!report.passed() && report.any_unreadable());
    let json = report.json();
    assert_eq!(json["passed"], false);
    let f = &json["files"][0]["flows"][0];
    assert_eq!(f["src"], "10.10.0.5:5060");
    assert_eq!(f["dst"], "10.0.0.1:5060");
    assert_eq!(f["transport"], "udp");
    assert_eq!(f["class"], "sip");
    assert_eq!(f["expected_dscp"], 24);
    assert_eq!(f["dscp_counts"]["0"], 1);
    assert_eq!(f["violations"], serde_json::json!([1]));
    assert!(json["files"][1]["error"]
        .as_str()
        .is_some_and(|e| e.contains("offset 24")));
    let text = report.text();
    assert!(text.contains("FAIL t.pcap"), "{text}");
    assert!(text.contains("ERROR bad<1>.pcap"), "{text}");
    let junit = report.junit();
    assert!(junit.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites"));
    assert!(
        junit.contains("tests=\"3\" failures=\"1\" errors=\"1\""),
        "{junit}"
    );
    assert!(junit.contains("<failure message=\"sip 10.10.0.5:5060 -&gt; 10.0.0.1:5060: 1 of 1 packets not marked 24 (CS3)"), "{junit}");
    assert!(junit.contains("name=\"bad&lt;1&gt;.pcap\""), "{junit}");
}

#[test]
fn no_prefix_or_corruption_of_a_packet_panics() {
    let policy = Policy::cisco_default();
    let msg = invite_with_sdp(Ipv4Addr::from(PHONE), 20000, 20002);
    let samples = [
        ipv4_udp(tos(Dscp::CS3), PHONE, 5060, CUCM, 5060, &msg),
        ipv4_tcp(0, PHONE, 5060, CUCM, 5060, 0x18, &msg),
        ipv4(0, 17, PHONE, CUCM, 3, 0x2000, &msg[..64]),
        ipv4(0, 17, PHONE, CUCM, 3, 8, &msg[64..128]),
        ipv4_udp(tos(Dscp::EF), PHONE, 20000, CUCM, 30000, &rtp(1, 1)),
    ];
    let mut a = Auditor::new(&policy, AuditOptions::default());
    let mut frame = 0;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for pkt in &samples {
        for cut in 0..=pkt.len() {
            for link in [101u16, 1, 113] {
                frame += 1;
                a.packet(frame, link, &pkt[..cut]);
            }
        }
        for _ in 0..200 {
            let mut p = pkt.clone();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let i = (seed as usize) % p.len();
                p[i] = (seed >> 32) as u8;
            }
            frame += 1;
            a.packet(frame, 101, &p);
        }
    }
    let r = a.finish("fuzz");
    assert_eq!(r.flows.iter().map(|f| f.packets).sum::<u64>(), r.ip_packets);
}

// ------------------------------------------------------------------ network control, findings

#[test]
fn r21_routers_network_control_is_its_own_class_and_ntp_is_not() {
    const ROUTER: [u8; 4] = [10, 0, 0, 254];
    let cs6 = tos(Dscp::CS6);
    let pkts = vec![
        // IGMPv2 group-specific query from the router, reports from a host at 0.
        ipv4(
            cs6,
            2,
            ROUTER,
            [239, 1, 1, 99],
            0,
            0,
            &[0x11, 10, 0, 0, 239, 1, 1, 99],
        ),
        ipv4(
            0,
            2,
            PHONE,
            [239, 1, 1, 99],
            0,
            0,
            &[0x16, 0, 0, 0, 239, 1, 1, 99],
        ),
        // OSPF hello, PIM hello, VRRP advertisement: by IP protocol.
        ipv4(cs6, 89, ROUTER, [224, 0, 0, 5], 0, 0, &[2, 1, 0, 44]),
        ipv4(cs6, 103, ROUTER, [224, 0, 0, 13], 0, 0, &[0x20, 0, 0, 0]),
        ipv4(0, 112, GW, [224, 0, 0, 18], 0, 0, &[0x21, 1, 100, 1]),
        // BGP (TCP 179), HSRP (UDP 1985), BFD (UDP 3784).
        ipv4_tcp(cs6, ROUTER, 179, GW, 40000, 0x10, b""),
        ipv4_tcp(cs6, GW, 40000, ROUTER, 179, 0x10, b""),
        ipv4_udp(cs6, ROUTER, 1985, [224, 0, 0, 2], 1985, &[0; 20]),
        ipv4_udp(cs6, ROUTER, 49152, GW, 3784, &[0x20, 0xc0, 3, 24]),
        // NTP: the router's reply at CS6 and the phone's request at 0 are both `other`.
        ipv4_udp(0, PHONE, 123, ROUTER, 123, &[0x1b; 48]),
        ipv4_udp(cs6, ROUTER, 123, PHONE, 123, &[0x1c; 48]),
    ];
    let a = run(&Policy::cisco_default(), &pkts);
    let nc = |src: &str, dst: &str| {
        let f = a
            .flows
            .iter()
            .find(|f| f.src == src && f.dst == dst)
            .unwrap_or_else(|| panic!("no flow {src} -> {dst}: {:#?}", a.flows));
        (f.class, f.evidence, f.expected_dscp, f.passed)
    };
    let want = |by| (TrafficClass::NetworkControl, by, Some(Dscp::CS6), true);
    assert_eq!(nc("10.0.0.254", "239.1.1.99"), want(Evidence::Protocol));
    assert_eq!(
        nc("10.10.0.5", "239.1.1.99"),
        (
            TrafficClass::Other,
            Evidence::None,
            Some(Dscp::DEFAULT),
            true
        )
    );
    assert_eq!(nc("10.0.0.254", "224.0.0.5"), want(Evidence::Protocol));
    assert_eq!(nc("10.0.0.254", "224.0.0.13"), want(Evidence::Protocol));
    // A VRRP router that does not mark its advertisements is named.
    let vrrp = nc("10.20.0.1", "224.0.0.18");
    assert_eq!((vrrp.0, vrrp.3), (TrafficClass::NetworkControl, false));
    assert_eq!(
        nc("10.0.0.254:179", "10.20.0.1:40000"),
        want(Evidence::Port)
    );
    assert_eq!(
        nc("10.20.0.1:40000", "10.0.0.254:179"),
        want(Evidence::Port)
    );
    assert_eq!(
        nc("10.0.0.254:1985", "224.0.0.2:1985"),
        want(Evidence::Port)
    );
    assert_eq!(
        nc("10.0.0.254:49152", "10.20.0.1:3784"),
        want(Evidence::Port)
    );
    assert_eq!(
        nc("10.10.0.5:123", "10.0.0.254:123"),
        (
            TrafficClass::Other,
            Evidence::None,
            Some(Dscp::DEFAULT),
            true
        )
    );
    let ntp = nc("10.0.0.254:123", "10.10.0.5:123");
    assert_eq!((ntp.0, ntp.3), (TrafficClass::Other, false));
    assert_eq!(a.failed_flows, 2);

    // The policy key, and its default in the built-in policy.
    let p = Policy::parse("classes:\n  network-control: any\n", "p.yaml").expect("parse");
    assert_eq!(p.classes.network_control, Some(Expect::Any));
    let p = Policy::parse("classes:\n  network_control: CS7\n", "p.yaml").expect("parse");
    assert_eq!(p.classes.network_control, Some(Expect::Dscp(Dscp::CS7)));
    let any = "10.0.0.1".parse().expect("ip");
    let d = Policy::parse(DEFAULT_POLICY_YAML, "qos-policy.yaml").expect("default");
    assert_eq!(
        d.expectation(any, TrafficClass::NetworkControl).dscp,
        Some(Dscp::CS6)
    );
    assert!(DEFAULT_POLICY_YAML.contains("\n  network-control: CS6\n"));
}

/// A classic pcap of raw IP packets.
fn raw_pcap(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut f = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
    f.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&101u32.to_le_bytes());
    for p in packets {
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(&(p.len() as u32).to_le_bytes());
        f.extend_from_slice(p);
    }
    f
}

/// A pcapng of raw IP packets; also returns where each packet's block starts.
fn raw_pcapng(packets: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
    let block = |kind: u32, body: &[u8]| {
        let len = (12 + body.len()) as u32;
        let mut b = kind.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(body);
        b.extend_from_slice(&len.to_le_bytes());
        b
    };
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&u64::MAX.to_le_bytes());
    let mut f = block(0x0a0d_0d0a, &shb);
    f.extend(block(1, &[101, 0, 0, 0, 0xff, 0xff, 0, 0]));
    let mut starts = Vec::new();
    for p in packets {
        starts.push(f.len());
        let mut epb = vec![0; 12];
        epb.extend_from_slice(&(p.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(p.len() as u32).to_le_bytes());
        epb.extend_from_slice(p);
        epb.resize(epb.len().div_ceil(4) * 4, 0);
        f.extend(block(6, &epb));
    }
    (f, starts)
}

#[test]
fn r21_a_capture_cut_anywhere_is_audited_up_to_the_cut() {
    let pkts: Vec<Vec<u8>> = (0..4u16)
        .map(|i| ipv4_udp(tos(Dscp::CS3), PHONE, 5060, CUCM, 5060 + i, b"\r\n\r\n"))
        .collect();
    let classic = raw_pcap(&pkts);
    let mut classic_starts = vec![24];
    for p in &pkts[..pkts.len() - 1] {
        let last = *classic_starts.last().expect("start");
        classic_starts.push(last + 16 + p.len());
    }
    let (ng, ng_starts) = raw_pcapng(&pkts);
    let policy = Policy::cisco_default();
    // (format, file, where the blocks after the file header start, of which packets)
    for (name, file, blocks, packets) in [
        ("pcap", &classic, classic_starts.clone(), &classic_starts),
        (
            "pcapng",
            &ng,
            [vec![28], ng_starts.clone()].concat(),
            &ng_starts,
        ),
    ] {
        let end_of = |s: usize| {
            blocks
                .iter()
                .copied()
                .find(|&b| b > s)
                .unwrap_or(file.len())
        };
        for cut in 0..=file.len() {
            let result = audit_capture(&file[..cut], name, &policy, AuditOptions::default());
            if cut < blocks[0] {
                // Not even the file header: nothing to audit.
                assert!(result.is_err(), "{name} cut at {cut}");
                continue;
            }
            let a = result.unwrap_or_else(|e| panic!("{name} cut at {cut}: {e}"));
            let complete = packets.iter().filter(|&&s| end_of(s) <= cut).count();
            assert_eq!(a.packets, complete as u64, "{name} cut at {cut}");
            let truncated: Vec<&FileFinding> = a
                .findings
                .iter()
                .filter(|f| f.kind == FileFindingKind::Truncated)
                .collect();
            if blocks.contains(&cut) || cut == file.len() {
                assert!(truncated.is_empty(), "{name} cut at a boundary {cut}");
                assert_eq!(a.passed, complete > 0, "{name} cut at {cut}");
            } else {
                let at = blocks.iter().copied().filter(|&b| b < cut).max();
                assert_eq!(truncated.len(), 1, "{name} cut at {cut}");
                assert_eq!(truncated[0].offset, at.map(|b| b as u64), "{name} {cut}");
                assert!(truncated[0].message.contains("byte offset"));
                assert!(!a.passed);
            }
        }
    }
}

#[test]
fn r21_nothing_audited_fails_unless_allowed_and_is_reported_in_every_format() {
    let policy = Policy::parse("senders:\n  - address: 192.0.2.1\n", "p.yaml").expect("policy");
    let pkts = vec![ipv4_udp(0, PHONE, 5060, CUCM, 5060, b"x")];
    let a = run(&policy, &pkts);
    assert!(!a.passed);
    assert_eq!(a.findings.len(), 1);
    assert_eq!(a.findings[0].kind, FileFindingKind::NothingAudited);
    let mut ok = Auditor::new(
        &policy,
        AuditOptions {
            allow_empty: true,
            ..AuditOptions::default()
        },
    );
    ok.packet(1, 101, &pkts[0]);
    let ok = ok.finish("ok.pcap");
    assert!(ok.passed && ok.findings.is_empty());

    let report = Report {
        policy: "p.yaml".into(),
        files: vec![FileOutcome::Audited(a)],
        only_audited: false,
    };
    assert!(!report.passed() && !report.any_unreadable());
    let text = report.text();
    assert!(
        text.contains("\n  FAIL nothing audited: none of the flow directions of its 1 IP packets"),
        "{text}"
    );
    let json = report.json();
    assert_eq!(json["files"][0]["findings"][0]["kind"], "nothing-audited");
    assert_eq!(
        json["files"][0]["findings"][0]["offset"],
        serde_json::Value::Null
    );
    let junit = report.junit();
    assert!(
        junit.contains("tests=\"1\" failures=\"1\" errors=\"0\""),
        "{junit}"
    );
    assert!(
        junit.contains("<testcase classname=\"capture\" name=\"nothing audited\">"),
        "{junit}"
    );
}

/// A real TLS ClientHello (rustls, as ucm's EMCC client and reqwest send it) offering `alpn`.
fn client_hello(alpn: &[&[u8]]) -> Vec<u8> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls::pki_types::ServerName::try_from("127.0.1.1").unwrap();
    let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

/// Issue 17: the EMCC traffic between two clusters' nodes in its QoS class, on ports that are
/// not the well-known ones (the conformance clusters listen on free ports): the inter-cluster
/// API, HTTPS whose ClientHello offers http/1.1, is `http` (best effort, like every Tomcat
/// service: UNCONFIRMED what Cisco marks its EM service's inter-cluster HTTPS, the seed names no
/// DSCP for it); the EMCC SIP trunk's INVITE between the nodes' SIP ports is `sip` (CS3). TLS
/// offering no HTTP (SIP over TLS offers no ALPN) stays `other`.
#[test]
fn r17_emcc_inter_cluster_https_and_sip_trunk_are_classified() {
    use crate::pcap::tcp_flags::{ACK, PSH, SYN};
    let (visiting, home) = ([127, 0, 2, 1], [127, 0, 1, 1]);
    let hello = client_hello(&[b"http/1.1"]);
    assert!(super::classify::is_https_client_hello(&hello));
    let alpn = super::classify::tls_client_hello_alpn(&hello).unwrap();
    assert_eq!(alpn, vec![&b"http/1.1"[..]]);
    let sip_tls = client_hello(&[]);
    assert_eq!(
        super::classify::tls_client_hello_alpn(&sip_tls),
        Some(vec![])
    );
    assert!(!super::classify::is_https_client_hello(&sip_tls));
    assert!(!super::classify::is_https_client_hello(&client_hello(&[
        b"sip/2"
    ])));
    // Every prefix of a ClientHello is refused or read without a panic.
    for n in 0..hello.len() {
        let _ = super::classify::tls_client_hello_alpn(&hello[..n]);
    }
    let invite = invite_with_sdp(Ipv4Addr::new(127, 0, 1, 1), 30000, 30002);
    let pkts = vec![
        ipv4_tcp(0, visiting, 41000, home, 42443, SYN, b""),
        ipv4_tcp(0, home, 42443, visiting, 41000, SYN | ACK, b""),
        ipv4_tcp(0, visiting, 41000, home, 42443, ACK | PSH, &hello),
        ipv4_tcp(
            0,
            home,
            42443,
            visiting,
            41000,
            ACK | PSH,
            &[23, 3, 3, 0, 1, 0],
        ),
        // SIP over TLS to a SIPS listener on a free port: no ALPN.
        ipv4_tcp(
            tos(Dscp::CS3),
            visiting,
            41001,
            home,
            42061,
            ACK | PSH,
            &sip_tls,
        ),
        // The EMCC SIP trunk, home's SIP port to visiting's, both free ports.
        ipv4_udp(tos(Dscp::CS3), home, 41060, visiting, 42060, &invite),
        // The same marked 0: an offence named in the sip class.
        ipv4_udp(0, visiting, 42060, home, 41060, &invite),
    ];
    let a = run(&Policy::cisco_default(), &pkts);
    for side in ["127.0.2.1:41000", "127.0.1.1:42443"] {
        let f = flow(&a, side);
        assert_eq!(
            (f.class, f.evidence, f.expected_dscp, f.passed),
            (
                TrafficClass::Http,
                super::classify::Evidence::TlsAlpn,
                Some(Dscp::DEFAULT),
                true
            ),
            "{f:#?}"
        );
    }
    assert_eq!(flow(&a, "127.0.2.1:41001").class, TrafficClass::Other);
    let trunk = flow(&a, "127.0.1.1:41060");
    assert_eq!(
        (trunk.class, trunk.expected_dscp, trunk.passed),
        (TrafficClass::Sip, Some(Dscp::CS3), true),
        "{trunk:#?}"
    );
    let back = flow(&a, "127.0.2.1:42060");
    assert_eq!((back.class, back.passed), (TrafficClass::Sip, false));
}
