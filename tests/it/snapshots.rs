//! Snapshot tests (`insta`) of what ucm writes for people and peers to read: CiscoIPPhone XML
//! objects as the writer produces them, SIP messages as the codec frames them, and the ladder,
//! DSCP count and audit report of the capture shipped in `fixtures/pcaps`. A change to any of
//! them shows as a reviewed diff (`cargo insta review`), never as a silent drift. Help texts
//! and the `config check` report are snapshots in `cli.rs`.

use std::path::Path;

use ucm::wire::sip::{parse_datagram, SipMessage};
use ucm::wire::xml::parse;

const HERE: &str = env!("CARGO_MANIFEST_DIR");

fn run(args: &[&str]) -> (i32, String) {
    let out = assert_cmd::Command::cargo_bin("ucm")
        .unwrap()
        .current_dir(HERE)
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Every hand-made sample object of `fixtures/xml/handmade`, read and written again by ucm's
/// writer (the indented form): one snapshot per object kind.
#[test]
fn r21_ciscoipphone_objects_as_written_are_snapshots() {
    let dir = Path::new(HERE).join("fixtures/xml/handmade");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".xml") && !n.starts_with("invalid-"))
        .collect();
    names.sort();
    assert!(names.len() >= 7, "samples: {names:?}");
    for name in names {
        let text = std::fs::read_to_string(dir.join(&name)).unwrap();
        let parsed = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let stem = name.trim_end_matches(".xml");
        insta::assert_snapshot!(format!("xml_{stem}"), parsed.object.to_xml_pretty());
    }
}

const INVITE: &str = "INVITE sip:10002@127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.10:5060;branch=z9hG4bK-snap-1;rport\r\n\
Via: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bK-proxy-1\r\n\
Record-Route: <sip:127.0.0.9;lr>\r\n\
Max-Forwards: 69\r\n\
From: \"John Smith\" <sip:10001@127.0.0.1>;tag=a1\r\n\
To: <sip:10002@127.0.0.1>\r\n\
Call-ID: snap-call-1@127.0.0.10\r\n\
CSeq: 101 INVITE\r\n\
Contact: <sip:10001@127.0.0.10:5060;transport=udp>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 129\r\n\
\r\n\
v=0\r\n\
o=Cisco-SIPUA 1 1 IN IP4 127.0.0.10\r\n\
s=SIP Call\r\n\
c=IN IP4 127.0.0.10\r\n\
t=0 0\r\n\
m=audio 20000 RTP/AVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n";

/// The codec's framing of a request it read and of the responses it builds for it (RFC 3261
/// 8.2.6: every Via in order, Record-Route copied, the To tag added, Content-Length right).
#[test]
fn r21_sip_messages_as_framed_are_snapshots() {
    let msg = parse_datagram(INVITE.as_bytes()).expect("the INVITE parses");
    let SipMessage::Request(req) = msg else {
        panic!("a request");
    };
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap().replace("\r\n", "\n");
    insta::assert_snapshot!("sip_invite_reframed", text(req.to_bytes()));
    insta::assert_snapshot!(
        "sip_100_trying",
        text(req.make_response(100, "", None).to_bytes())
    );
    let mut ringing = req.make_response(180, "", Some("ucm-1"));
    for rr in req.headers.get_all("Record-Route") {
        ringing.headers.push("Record-Route", rr);
    }
    insta::assert_snapshot!("sip_180_ringing", text(ringing.to_bytes()));
    insta::assert_snapshot!(
        "sip_486_busy_here",
        text(req.make_response(486, "", Some("ucm-1")).to_bytes())
    );
}

/// The ladder, the DSCP count and the audit report of the shipped capture (a real Cisco
/// multicast paging call; fixtures/pcaps/PROVENANCE.md), exactly as `ucm pcap` prints them.
#[test]
fn r21_pcap_ladder_dscp_and_report_are_snapshots() {
    let capture = "fixtures/pcaps/sip_mcast_paging.pcapng";
    let (rc, ladder) = run(&["pcap", "ladder", capture]);
    assert_eq!(rc, 0, "{ladder}");
    insta::assert_snapshot!("pcap_ladder_sip_mcast_paging", ladder);
    let (rc, dscp) = run(&["pcap", "dscp", capture]);
    assert_eq!(rc, 0, "{dscp}");
    insta::assert_snapshot!("pcap_dscp_sip_mcast_paging", dscp);
    let (rc, report) = run(&[
        "pcap",
        "verify",
        "--golden",
        "golden/sip_mcast_paging",
        capture,
    ]);
    // The flow matches the golden; the CME's own SIP and NTP are mis-marked (exit 1).
    assert_eq!(rc, 1, "{report}");
    insta::assert_snapshot!("pcap_verify_sip_mcast_paging", report);
}
