//! Issue 8, the Paging Server: DialCast calls page a recipient group of simulated phones over
//! multicast; G.729-only offers get 488; reports are kept; `ucm page` and SIPp as callers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{http_get, Server};
use crate::phone::{push, state, wait_state, Sim};

/// The 50 lab phones of the demo cluster (recipient group `demo-all`, DialCast 7000).
pub fn lab_phones() -> Vec<String> {
    // MACs count in hex: SEP000000001001 .. SEP000000001032.
    (1..=50u32)
        .map(|i| format!("SEP00000000{:04X}", 0x1000 + i))
        .collect()
}

/// Runs the lab phones (web servers on 8081, as the demo's paging section says) from
/// `first_ip`, plus `extra` devices.
pub fn start_lab(srv: &Server, first_ip: &str, extra: &[&str]) -> Sim {
    let mut args: Vec<String> = vec![
        "--first-ip".into(),
        first_ip.into(),
        "--http-port".into(),
        "8081".into(),
        "--auto-answer".into(),
    ];
    for d in lab_phones()
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
    {
        args.push("--device".into());
        args.push(d.into());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Sim::start(srv, &refs)
}

/// The receive stream a page left on a phone (the newest `mrx` one).
pub fn page_stream(s: &Value) -> Option<Value> {
    s["streams"]
        .as_array()?
        .iter()
        .find(|x| x["kind"] == "mrx")
        .cloned()
}

/// The node's report for `call_id` (stored when the page ends; the node waits up to 2 s for it
/// before answering 404).
pub fn report_for(srv: &Server, call_id: &str) -> Value {
    let path = format!(
        "/ucm/paging/pages?call_id={}&wait_ms=2000",
        ucm::wire::codec::percent_encode(call_id)
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, body) = http_get(srv.addr("http"), &path);
        if status == 200 {
            let v: Value = serde_json::from_slice(&body).expect("reports are JSON");
            return v["pages"][0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no report for {call_id} within 15 s (last: {status} {})\n{}",
            String::from_utf8_lossy(&body),
            srv.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Checks that every lab phone received the whole page in order, marked EF, and left it.
pub fn check_lab_phones(sim: &Sim, min_packets: u64) {
    for d in lab_phones() {
        let a: SocketAddr = sim.http(&d);
        let s = wait_state(a, 10, &format!("{d} left the page"), |s| {
            page_stream(s).is_some_and(|st| st["active"] == false)
        });
        let st = page_stream(&s).expect("an mrx stream");
        assert_eq!(st["stop_reason"], "RTPRx:Stop", "{d}: {st:#}");
        let rx = &st["rx"];
        let packets = st["packets"].as_u64().unwrap_or(0);
        assert!(
            packets >= min_packets,
            "{d}: only {packets} packets: {st:#}"
        );
        assert_eq!(rx["lost"], 0, "{d}: {st:#}");
        assert_eq!(rx["out_of_order"], 0, "{d}: {st:#}");
        assert_eq!(rx["duplicates"], 0, "{d}: {st:#}");
        assert_eq!(rx["ssrcs"].as_array().map(Vec::len), Some(1), "{d}: {st:#}");
        assert_eq!(
            rx["marker_packets"], 1,
            "{d}: the first packet only: {st:#}"
        );
        assert_eq!(
            st["dscp_counts"]["46"].as_u64(),
            Some(packets),
            "{d}: EF: {st:#}"
        );
        assert_eq!(rx["payload_types"][0]["payload_type"], 0, "{d}: {st:#}");
        assert_eq!(
            rx["payload_bytes"].as_u64(),
            Some(packets * 160),
            "{d}: {st:#}"
        );
    }
}

#[test]
fn r8_a_phone_dials_7000_and_fifty_phones_are_paged() {
    let _one = paging_lock();
    let srv = Server::start(&[]);
    let sim = start_lab(&srv, "127.0.8.10", &["SEP00036BC7B973"]);
    let caller = sim.http("SEP00036BC7B973");
    let (_, body) = push(caller, Some(("jsmith", "cisco")), &["Dial:7000"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    let s = wait_state(caller, 10, "the page answered", |s| {
        crate::phone::calls(s)
            .iter()
            .any(|c| c["state"] == "connected")
    });
    let call_id = crate::phone::calls(&s)
        .iter()
        .find(|c| c["state"] == "connected")
        .and_then(|c| c["call_id"].as_str().map(str::to_string))
        .expect("a connected call");
    // Every lab phone joins the page's group.
    for d in lab_phones() {
        wait_state(sim.http(&d), 10, &format!("{d} joined"), |s| {
            page_stream(s)
                .is_some_and(|st| st["active"] == true && st["packets"].as_u64() > Some(10))
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    let (_, body) = push(caller, Some(("jsmith", "cisco")), &["Key:Onhook"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    let report = report_for(&srv, &call_id);
    check_lab_phones(&sim, 20);
    assert_eq!(report["joined"], 50, "{report:#}");
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_eq!(report["ended_by"], "caller hung up", "{report:#}");
    assert_eq!(report["recipient_group"], "demo-all");
    assert_eq!(report["dialcast"], "7000");
    assert_eq!(report["calling"], "10001");
    let m = report["multicast"].as_str().unwrap_or_default();
    // Half the lab phones are at HQ, half at Branch: not one site, so the paging range.
    assert!(
        m.starts_with("239.0.1.") && m.ends_with(":20480"),
        "{report:#}"
    );
    for p in report["phones"].as_array().unwrap() {
        assert_eq!(p["outcome"], "joined", "{p}");
        assert_eq!(p["left"], true, "{p}");
    }
    // Every phone got exactly what the server sent, in order.
    let sent = report["stream"]["group_packets"].as_u64().unwrap();
    for d in lab_phones() {
        let st = page_stream(&state(sim.http(&d))).unwrap();
        assert_eq!(
            st["packets"].as_u64(),
            Some(sent),
            "{d}: sent {sent}: {st:#}"
        );
    }
}

/// Pages share the demo's multicast range and port: tests that page run one at a time, so a
/// phone never hears another test's stream.
pub static PAGING: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn paging_lock() -> std::sync::MutexGuard<'static, ()> {
    PAGING.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn run_ucm_page(srv: &Server, args: &[&str]) -> (Option<i32>, Value, String) {
    let out = crate::common::ucm()
        .args(["page", "--server"])
        .arg(srv.addr("http").to_string())
        .arg("--tftp")
        .arg(srv.addr("tftp_http").to_string())
        .args(args)
        .output()
        .expect("ucm page runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (
        out.status.code(),
        v,
        format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn r8_ucm_page_pages_the_fifty_lab_phones_with_a_wav() {
    let _one = paging_lock();
    let srv = Server::start(&[]);
    let sim = start_lab(&srv, "127.0.9.10", &[]);
    // 2 s of 16-bit PCM at 16 kHz: converted to 8 kHz mu-law, 100 packets.
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("page.wav");
    let pcm = ucm::media::tone::tone(700.0, 2000, 0.4, 16000);
    std::fs::write(&wav, ucm::media::wav::write_wav_pcm16(&pcm, 16000)).unwrap();
    let (code, v, all) = run_ucm_page(
        &srv,
        &[
            "--group",
            "demo-all",
            "--audio",
            wav.to_str().unwrap(),
            "--from",
            "SEP00036BC7B974",
            "--bind",
            "127.0.9.200",
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{all}\n{}", srv.logs());
    let report = &v["report"];
    assert_eq!(report["joined"], 50, "{report:#}");
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_eq!(report["calling"], "10002");
    assert_eq!(v["caller"]["frames_sent"], 100, "{v:#}");
    assert!(v["caller"]["go_ahead_ms"].as_u64().is_some(), "{v:#}");
    check_lab_phones(&sim, 90);
    let sent = report["stream"]["group_packets"].as_u64().unwrap();
    assert!(sent >= 100, "{report:#}");
    for d in lab_phones() {
        let st = page_stream(&state(sim.http(&d))).unwrap();
        assert_eq!(st["packets"].as_u64(), Some(sent), "{d}: {st:#}");
    }
    // The list needs a user with CTI control of all devices.
    let (code, _, all) = run_ucm_page(&srv, &["--list", "--user", "jsmith"]);
    assert_eq!(code, Some(2), "no password given: {all}");
    let out = crate::common::ucm()
        .args(["page", "--list", "--user", "paging", "--json", "--server"])
        .arg(srv.addr("http").to_string())
        .env("UCM_PASSWORD", "paging")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["pages"][0]["id"], report["id"], "{list:#}");
    let out = crate::common::ucm()
        .args(["page", "--list", "--user", "jsmith", "--server"])
        .arg(srv.addr("http").to_string())
        .env("UCM_PASSWORD", "cisco")
        .output()
        .unwrap();
    // A refusal is a failed check (exit 1), as everywhere; not an input error.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cti-control-all-devices"));
    let out = crate::common::ucm()
        .args(["page", "--list", "--user", "paging", "--server"])
        .arg(srv.addr("http").to_string())
        .env("UCM_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "r21: a wrong password exits 1: {out:?}"
    );
}

#[test]
fn r8_a_g729_only_offer_gets_488_and_bad_input_is_refused() {
    let srv = Server::start(&[]);
    // From 127.0.0.1 the node takes us for the demo's PSTN-GW trunk.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = sock.local_addr().unwrap();
    let sip = srv.addr("sip_udp");
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    let invite = format!(
        "INVITE sip:7000@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKg729\r\nMax-Forwards: 70\r\nFrom: <sip:5551234@{local}>;tag=g1\r\nTo: <sip:7000@{sip}>\r\nCall-ID: g729-page@test\r\nCSeq: 1 INVITE\r\nContact: <sip:5551234@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    sock.send_to(invite.as_bytes(), sip).unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    let final_resp = loop {
        let (n, _) = sock.recv_from(&mut buf).expect("an answer");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 1") {
            break text;
        }
        assert!(Instant::now() < deadline);
    };
    assert!(final_resp.starts_with("SIP/2.0 488"), "{final_resp}");
    assert!(final_resp.contains("G.711 mu-law only"), "{final_resp}");
    assert!(final_resp.contains("G729"), "{final_resp}");
    // The refusal is reported too.
    let r = report_for(&srv, "g729-page@test");
    assert!(r["ended_by"].as_str().unwrap().starts_with("488"), "{r:#}");
    assert_eq!(r["joined"], 0);
    // ucm page: an unknown group, a missing caller and a broken WAV are usage errors.
    let (code, _, all) = run_ucm_page(
        &srv,
        &["--group", "nope", "--tone", "--from", "SEP00036BC7B974"],
    );
    assert_eq!(code, Some(2), "{all}");
    assert!(
        all.contains("no recipient group \"nope\"") && all.contains("demo-all"),
        "{all}"
    );
    let (code, _, all) = run_ucm_page(&srv, &["--group", "demo-all", "--tone"]);
    assert_eq!(code, Some(2), "{all}");
    assert!(all.contains("--from"), "{all}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wav");
    std::fs::write(&bad, b"RIFF\x04\x00\x00\x00WAVEjunk").unwrap();
    let (code, _, all) = run_ucm_page(
        &srv,
        &[
            "--group",
            "demo-all",
            "--audio",
            bad.to_str().unwrap(),
            "--from",
            "SEP00036BC7B974",
        ],
    );
    assert_eq!(code, Some(2), "{all}");
    assert!(all.contains("bad.wav"), "{all}");
}

#[test]
fn r8_sipp_as_the_caller_streams_a_mulaw_file_to_the_branch() {
    if !crate::sipp::sipp_available() {
        crate::common::skip_or_fail("sipp is not installed (Debian package sip-tester)");
        return;
    }
    let _one = paging_lock();
    let srv = Server::start(&[]);
    // The Branch group (DialCast 7001): Steve Smith's phone and the 25 Branch lab phones.
    let sim = start_lab(&srv, "127.0.10.10", &["SEP00036BC7B976"]);
    let work = tempfile::tempdir().unwrap();
    let codes: Vec<u8> = (0..8000 * 2)
        .map(|i| ucm::media::g711::linear_to_ulaw(((i as f32 * 0.3).sin() * 8000.0) as i16))
        .collect();
    std::fs::write(
        work.path().join("page.wav"),
        ucm::media::wav::write_wav_ulaw(&codes),
    )
    .unwrap();
    let scenario =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/sipp/page.xml");
    let sip = srv.addr("sip_udp");
    let free = |n| {
        std::net::UdpSocket::bind(("127.0.0.1", n))
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .unwrap()
    };
    let (sip_port, media_port) = (free(0), free(0) & !1);
    let out = std::process::Command::new("sipp")
        .current_dir(work.path())
        .args(["-sf", scenario.to_str().unwrap(), "-s", "7001", "-m", "1"])
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-p", &sip_port.to_string(), "-mp", &media_port.to_string()])
        .args(["-timeout", "30s", "-timeout_error", "-nostdin"])
        .arg(sip.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("sipp runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "SIPp's call failed:\n{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        srv.logs()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let report = loop {
        let out = crate::common::ucm()
            .args(["page", "--list", "--user", "paging", "--json", "--server"])
            .arg(srv.addr("http").to_string())
            .env("UCM_PASSWORD", "paging")
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if let Some(p) = v["pages"].get(0) {
            break p.clone();
        }
        assert!(Instant::now() < deadline, "no page report:\n{}", srv.logs());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(report["recipient_group"], "branch", "{report:#}");
    assert_eq!(report["joined"], 26, "{report:#}");
    assert_eq!(report["ended_by"], "caller hung up", "{report:#}");
    let m = report["multicast"].as_str().unwrap();
    assert!(
        m.starts_with("239.1.2."),
        "the Branch site's own range: {report:#}"
    );
    assert!(
        report["stream"]["caller_packets"].as_u64() > Some(50),
        "{report:#}"
    );
    let a = sim.http("SEP00036BC7B976");
    let s = wait_state(a, 10, "Steve's phone left the page", |s| {
        page_stream(s).is_some_and(|st| st["active"] == false)
    });
    let st = page_stream(&s).unwrap();
    assert_eq!(st["rx"]["lost"], 0, "{st:#}");
    assert_eq!(st["dscp_counts"]["46"], st["packets"], "{st:#}");
    assert_eq!(st["packets"], report["stream"]["group_packets"], "{st:#}");
    // Phones outside the Branch were not paged.
    let paged: Vec<&str> = report["phones"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["device"].as_str())
        .collect();
    let hq = lab_phones()
        .into_iter()
        .find(|d| !paged.contains(&d.as_str()))
        .expect("an HQ lab phone");
    assert!(
        page_stream(&state(sim.http(&hq))).is_none(),
        "{hq} was paged"
    );
}

/// The page on the wire: captured on lo with tcpdump and checked with `ucm pcap verify`. SIP
/// is CS3, every RTP stream (the tones, the caller's audio, the multicast page) EF; every
/// CiscoIPPhoneExecute (RTPMRx, RTPRx:Stop) and CiscoIPPhoneResponse validates; the multicast
/// stream is what the real Cisco page in the corpus streams: payload type 0 every 20 ms.
#[test]
fn r8_the_captured_page_verifies_like_the_real_cisco_page() {
    let _one = paging_lock();
    let srv = Server::start(&[]);
    let sim = start_lab(&srv, "127.0.11.10", &["SEP00036BC7B976"]);
    let work = tempfile::tempdir().unwrap();
    let pcap = work.path().join("page.pcap");
    // Not ICMP: the kernel's port-unreachable answers (CS6) to a packet that reaches the caller
    // after `ucm page` closed its sockets are network control, not the page's traffic.
    let Some(capture) = crate::sipp::Capture::start(
        &pcap,
        "(net 127.0.11.0/24 or net 239.1.2.0/24) and not icmp",
    ) else {
        return;
    };
    let (code, v, all) = run_ucm_page(
        &srv,
        &[
            "--group",
            "branch",
            "--tone",
            "--seconds",
            "1",
            "--from",
            "SEP00036BC7B974",
            "--bind",
            "127.0.11.200",
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(v["report"]["joined"], 26);
    // Until every phone has acknowledged RTPRx:Stop (the report says so), then stop capturing.
    let report = report_for(&srv, v["caller"]["call_id"].as_str().unwrap());
    let left = report["phones"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["left"] == true)
        .count();
    assert_eq!(
        left, 26,
        "every joined phone acknowledged RTPRx:Stop: {report:#}"
    );
    capture.stop();
    drop(sim);
    let out = crate::common::ucm()
        .args(["pcap", "verify", "--format", "json"])
        .arg(&pcap)
        .output()
        .unwrap();
    let rep: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        serde_json::to_string_pretty(&rep).unwrap_or_default(),
        String::from_utf8_lossy(&out.stderr)
    );
    let file = &rep["files"][0];
    let flows = file["flows"].as_array().unwrap();
    let mcast: Vec<&Value> = flows
        .iter()
        .filter(|f| f["dst"].as_str().is_some_and(|d| d.starts_with("239.1.2.")))
        .collect();
    assert_eq!(mcast.len(), 1, "one multicast stream: {mcast:#?}");
    assert_eq!(mcast[0]["expected_dscp"], 46, "{:#}", mcast[0]);
    assert_eq!(mcast[0]["dscp_counts"].as_object().unwrap().len(), 1);
    assert!(
        mcast[0]["dscp_counts"]["46"].as_u64() >= Some(50),
        "{:#}",
        mcast[0]
    );
    let sip = flows.iter().filter(|f| f["class"] == "sip").count();
    assert!(sip >= 1, "SIP flows audited: {flows:#?}");
    // The pushes: 26 RTPMRx and 26 RTPRx:Stop, all valid, with the phones' answers.
    let xml = file["xml"].as_array().unwrap();
    let executes = xml
        .iter()
        .filter(|x| x["root"] == "CiscoIPPhoneExecute")
        .count();
    let responses = xml
        .iter()
        .filter(|x| x["root"] == "CiscoIPPhoneResponse")
        .count();
    assert_eq!(executes, 52, "{xml:#?}");
    assert_eq!(responses, 52, "{xml:#?}");
    assert!(xml.iter().all(|x| x["valid"] == true), "{xml:#?}");
    // The ladder names the multicast stream as the real Cisco page's does.
    let ladder = file["ladder"].as_array().unwrap();
    assert!(
        ladder
            .iter()
            .filter_map(|l| l["text"].as_str())
            .any(|l| l.starts_with("B -> ") && l.ends_with(": RTP PT 0 ptime 20ms")),
        "{ladder:#?}"
    );
    let cisco = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/sip_mcast_paging/ladder.txt"),
    )
    .unwrap();
    assert!(cisco.contains("RTP PT 0 ptime 20ms"));
}

/// A node on the demo cluster whose DialCast numbers page other recipient groups: 7000 pages
/// `all`, 7001 pages `branch`, with `groups` (name -> devices) added to the paging section.
fn serve_with_groups(all: &str, branch: &str, groups: &[(&str, &[&str])]) -> Server {
    serve_with_groups_and(all, branch, groups, &[])
}

/// As [`serve_with_groups`], with `settings` (device, YAML line) added to those devices.
fn serve_with_groups_and(
    all: &str,
    branch: &str,
    groups: &[(&str, &[&str])],
    settings: &[(&str, &str)],
) -> Server {
    let defs: String = groups
        .iter()
        .map(|(name, devices)| {
            format!(
                "    - name: {name}\n      devices: [{}]\n",
                devices.join(", ")
            )
        })
        .collect();
    let text = ucm::config::DEMO_YAML
        .replace(
            "    - route_point: DialCast_All\n      recipient_group: demo-all\n    - route_point: DialCast_Branch\n      recipient_group: branch\n",
            &format!("    - route_point: DialCast_All\n      recipient_group: {all}\n    - route_point: DialCast_Branch\n      recipient_group: {branch}\n"),
        )
        .replace("  dialcasts:\n", &format!("{defs}  dialcasts:\n"));
    assert!(
        text.contains(&format!("recipient_group: {branch}\n")) && text.contains(&defs),
        "the demo's paging section changed: update serve_with_groups"
    );
    let mut text = text;
    for (device, line) in settings {
        let at = format!("  - name: {device}\n");
        assert!(text.contains(&at), "no device {device} in the demo");
        text = text.replacen(&at, &format!("{at}    {line}\n"), 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::common::write_file(dir.path(), "paging.yaml", &text);
    Server::start_in(dir, &["--config", cfg.to_str().unwrap()])
}

/// The golden page: one caller, one phone (Sally Adams's, alone in a recipient group on
/// DialCast 7001), so the flow has one order. Re-record with
/// `UCM_BLESS=1 cargo test --test it paging::r8_conformance_a_page_matches_its_golden`.
#[test]
fn r8_conformance_a_page_matches_its_golden() {
    let _one = paging_lock();
    let srv = serve_with_groups("demo-all", "solo", &[("solo", &["SEP00036BC7B975"])]);
    let sim = Sim::start(
        &srv,
        &[
            "--device",
            "SEP00036BC7B975",
            "--first-ip",
            "127.0.12.10",
            "--http-port",
            "8081",
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let pcap = work.path().join("page.pcap");
    // Not ICMP: the kernel's port-unreachable answers (CS6) to a packet that reaches the caller
    // after `ucm page` closed its sockets are network control, not the page's traffic.
    let Some(capture) = crate::sipp::Capture::start(
        &pcap,
        "(net 127.0.12.0/24 or net 239.1.1.0/24) and not icmp",
    ) else {
        return;
    };
    let (code, v, all) = run_ucm_page(
        &srv,
        &[
            "--number",
            "7001",
            "--tone",
            "--seconds",
            "1",
            "--from",
            "SEP00036BC7B974",
            "--bind",
            "127.0.12.200",
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(v["report"]["joined"], 1, "{v:#}");
    let _ = report_for(&srv, v["caller"]["call_id"].as_str().unwrap());
    capture.stop();
    drop(sim);
    // A report that never comes: 404 once the wait is over; a wait that is no number: 400.
    let t = Instant::now();
    let (status, _, _) = http_get(
        srv.addr("http"),
        "/ucm/paging/pages?call_id=nobody&wait_ms=300",
    );
    assert_eq!(status, 404);
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    let (status, _, body) = http_get(
        srv.addr("http"),
        "/ucm/paging/pages?call_id=nobody&wait_ms=soon",
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("wait_ms"));
    crate::common::verify_against_golden(&pcap, "ucm_page");
}

/// Two pages at once at the same site (HQ): each gets its own address from HQ's range, and each
/// phone hears only its own page.
#[test]
fn r8_simultaneous_pages_get_their_own_multicast_addresses() {
    let _one = paging_lock();
    let srv = serve_with_groups(
        "john",
        "sally",
        &[
            ("john", &["SEP00036BC7B973"]),
            ("sally", &["SEP00036BC7B975"]),
        ],
    );
    let sim = Sim::start(
        &srv,
        &[
            "--device",
            "SEP00036BC7B973",
            "--device",
            "SEP00036BC7B975",
            "--first-ip",
            "127.0.14.10",
            "--http-port",
            "8081",
        ],
    );
    let pages: Vec<_> = [
        ("7000", "SEP00036BC7B974", "127.0.14.200"),
        ("7001", "SEP0000000000A1", "127.0.14.201"),
    ]
    .into_iter()
    .map(|(number, from, bind)| {
        let (http, tftp) = (
            srv.addr("http").to_string(),
            srv.addr("tftp_http").to_string(),
        );
        std::thread::spawn(move || {
            let out = crate::common::ucm()
                .args(["page", "--number", number, "--tone", "--seconds", "2"])
                .args(["--from", from, "--bind", bind, "--json"])
                .args(["--server", &http, "--tftp", &tftp])
                .output()
                .expect("ucm page runs");
            (
                out.status.code(),
                serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null),
            )
        })
    })
    .collect();
    let results: Vec<(Option<i32>, Value)> = pages.into_iter().map(|h| h.join().unwrap()).collect();
    let mut addrs = Vec::new();
    for (code, v) in &results {
        assert_eq!(*code, Some(0), "{v:#}\n{}", srv.logs());
        assert_eq!(v["report"]["joined"], 1, "{v:#}");
        let m = v["report"]["multicast"].as_str().unwrap().to_string();
        assert!(m.starts_with("239.1.1."), "HQ's range: {m}");
        addrs.push(m);
    }
    assert_ne!(addrs[0], addrs[1], "two pages at once share no address");
    // The two pages overlapped in time, and each phone heard one stream, from one source.
    for (d, i) in [("SEP00036BC7B973", 0), ("SEP00036BC7B975", 1)] {
        let st = page_stream(&state(sim.http(d))).unwrap();
        assert_eq!(st["address"], addrs[i], "{d}: {st:#}");
        assert_eq!(
            st["rx"]["ssrcs"].as_array().map(Vec::len),
            Some(1),
            "{d}: {st:#}"
        );
        assert_eq!(st["rx"]["lost"], 0, "{d}: {st:#}");
    }
}

/// A phone on a call is left out of a page (busy_phones: skip, the default) and reported busy;
/// Do Not Disturb would not keep it out, a call does.
#[test]
fn r8_a_phone_on_a_call_is_skipped_and_reported_busy() {
    let _one = paging_lock();
    let srv = serve_with_groups(
        "demo-all",
        "pair",
        &[("pair", &["SEP00036BC7B973", "SEP00036BC7B975"])],
    );
    let sim = Sim::start(
        &srv,
        &[
            "--device",
            "SEP00036BC7B973",
            "--device",
            "SEP00036BC7B975",
            "--device",
            "SEP00036BC7B974",
            "--first-ip",
            "127.0.15.10",
            "--http-port",
            "8081",
            "--auto-answer",
        ],
    );
    // John calls Phone B, which answers: John's phone is busy.
    let john = sim.http("SEP00036BC7B973");
    let (_, body) = push(john, Some(("jsmith", "cisco")), &["Dial:10002"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    wait_state(john, 10, "John on a call", |s| {
        crate::phone::calls(s)
            .iter()
            .any(|c| c["state"] == "connected")
    });
    let (code, v, all) = run_ucm_page(
        &srv,
        &[
            "--number",
            "7001",
            "--tone",
            "--seconds",
            "1",
            "--from",
            "SEP0000000000A1",
            "--bind",
            "127.0.15.200",
            "--json",
        ],
    );
    assert_eq!(code, Some(1), "one phone did not join: {all}");
    let phones = v["report"]["phones"].as_array().unwrap();
    let outcome = |d: &str| {
        phones
            .iter()
            .find(|p| p["device"] == d)
            .map(|p| p["outcome"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(outcome("SEP00036BC7B973").as_deref(), Some("busy"), "{v:#}");
    assert_eq!(
        outcome("SEP00036BC7B975").as_deref(),
        Some("joined"),
        "{v:#}"
    );
    assert!(
        page_stream(&state(john)).is_none(),
        "John's phone was not pushed to"
    );
}

/// The seed's phone selection rules on the wire: of a group of three registered phones, the
/// one whose speakerphone is disabled is never pushed to and is reported `no-speakerphone`; the
/// one on Do Not Disturb is paged like the third.
#[test]
fn r20_a_phone_without_speakerphone_is_not_paged_and_dnd_is_ignored() {
    let _one = paging_lock();
    let srv = serve_with_groups_and(
        "demo-all",
        "trio",
        &[(
            "trio",
            &["SEP00036BC7B973", "SEP00036BC7B974", "SEP00036BC7B975"],
        )],
        &[
            ("SEP00036BC7B974", "disable_speakerphone: true"),
            ("SEP00036BC7B975", "do_not_disturb: true"),
        ],
    );
    let sim = Sim::start(
        &srv,
        &[
            "--device",
            "SEP00036BC7B973",
            "--device",
            "SEP00036BC7B974",
            "--device",
            "SEP00036BC7B975",
            "--first-ip",
            "127.0.24.10",
            "--http-port",
            "8081",
            "--auto-answer",
        ],
    );
    let (code, v, all) = run_ucm_page(
        &srv,
        &[
            "--number",
            "7001",
            "--tone",
            "--seconds",
            "1",
            "--from",
            "SEP0000000000A1",
            "--bind",
            "127.0.24.200",
            "--json",
        ],
    );
    assert_eq!(code, Some(1), "one phone was left out: {all}");
    let phones = v["report"]["phones"].as_array().unwrap();
    let outcome = |d: &str| {
        phones
            .iter()
            .find(|p| p["device"] == d)
            .map(|p| p["outcome"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(
        outcome("SEP00036BC7B974").as_deref(),
        Some("no-speakerphone"),
        "{v:#}"
    );
    for d in ["SEP00036BC7B973", "SEP00036BC7B975"] {
        assert_eq!(outcome(d).as_deref(), Some("joined"), "{d}: {v:#}");
        assert!(page_stream(&state(sim.http(d))).is_some(), "{d} was paged");
    }
    assert!(
        page_stream(&state(sim.http("SEP00036BC7B974"))).is_none(),
        "the phone without speakerphone was not pushed to"
    );
}

/// The seed's grouping by what AXL gives: a recipient group by description pattern (DialCast
/// 7001 pages the phones described "Lab phone 1?", lab phones 10 to 19) and none of the rest.
#[test]
fn r21_a_group_by_description_pages_only_the_phones_it_describes() {
    let _one = paging_lock();
    let text = ucm::config::DEMO_YAML.replace(
        "      description: Every phone at the Branch site\n      locations: [Branch]\n",
        "      description: Lab phones 10 to 19, by their description\n      descriptions: [\"lab PHONE 1?\"]\n",
    );
    assert!(
        text.contains("lab PHONE 1?"),
        "the demo's branch group changed: update this test"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::common::write_file(dir.path(), "paging.yaml", &text);
    let srv = Server::start_in(dir, &["--config", cfg.to_str().unwrap()]);
    let sim = start_lab(&srv, "127.0.20.10", &[]);
    let (code, v, all) = run_ucm_page(
        &srv,
        &[
            "--number",
            "7001",
            "--tone",
            "--seconds",
            "1",
            "--from",
            "SEP00036BC7B974",
            "--bind",
            "127.0.20.200",
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{all}\n{}", srv.logs());
    let report = &v["report"];
    let mut paged: Vec<String> = report["phones"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["outcome"] == "joined")
        .map(|p| p["device"].as_str().unwrap().to_string())
        .collect();
    paged.sort();
    let want: Vec<String> = (10..=19u32)
        .map(|i| format!("SEP00000000{:04X}", 0x1000 + i))
        .collect();
    assert_eq!(paged, want, "{report:#}");
    assert_eq!(report["joined"], 10, "{report:#}");
    // A phone outside the group heard nothing.
    let s = state(sim.http("SEP000000001001"));
    assert!(page_stream(&s).is_none(), "{s:#}");
}
