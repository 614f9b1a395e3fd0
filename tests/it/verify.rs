//! `ucm pcap verify`: hand-built captures (right and wrong marking, every report format, exit
//! codes) and real corpus captures checked against what tshark shows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{skip_or_fail, ucm};

// ------------------------------------------------------------------ capture builder

const CS3: u8 = 24;
const EF: u8 = 46;

fn ipv4(dscp: u8, proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
    let mut v = vec![0x45, dscp << 2];
    v.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    v.extend_from_slice(&src);
    v.extend_from_slice(&dst);
    v.extend_from_slice(l4);
    v
}

fn eth(ip: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00];
    v.extend_from_slice(ip);
    v
}

fn udp(dscp: u8, src: ([u8; 4], u16), dst: ([u8; 4], u16), payload: &[u8]) -> Vec<u8> {
    let mut l4 = src.1.to_be_bytes().to_vec();
    l4.extend_from_slice(&dst.1.to_be_bytes());
    l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend_from_slice(payload);
    eth(&ipv4(dscp, 17, src.0, dst.0, &l4))
}

fn tcp(dscp: u8, src: ([u8; 4], u16), dst: ([u8; 4], u16), flags: u8) -> Vec<u8> {
    let mut l4 = src.1.to_be_bytes().to_vec();
    l4.extend_from_slice(&dst.1.to_be_bytes());
    l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    eth(&ipv4(dscp, 6, src.0, dst.0, &l4))
}

/// A classic pcap file (little endian, microseconds, Ethernet).
fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut f = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes());
    for (i, data) in frames.iter().enumerate() {
        f.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&(data.len() as u32).to_le_bytes());
        f.extend_from_slice(&(data.len() as u32).to_le_bytes());
        f.extend_from_slice(data);
    }
    f
}

const PHONE: [u8; 4] = [10, 10, 0, 5];
const CUCM: [u8; 4] = [10, 0, 0, 1];
const PEER: [u8; 4] = [10, 10, 0, 6];

fn invite() -> Vec<u8> {
    let sdp = "v=0\r\no=- 1 1 IN IP4 10.10.0.5\r\ns=-\r\nc=IN IP4 10.10.0.5\r\nt=0 0\r\n\
               m=audio 20000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    format!(
        "INVITE sip:2000@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.10.0.5:5060;branch=z9hG4bKa\r\n\
         Max-Forwards: 70\r\nTo: <sip:2000@10.0.0.1>\r\nFrom: <sip:1000@10.10.0.5>;tag=1\r\n\
         Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:1000@10.10.0.5>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut v = vec![0x80, 0];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    v.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    v.resize(172, 0xff);
    v
}

/// SIP INVITE (CS3) with SDP, a SCCP handshake, and 4 RTP packets from the phone to a peer
/// whose frames 4 and 6 carry `bad_rtp` instead of EF. Frame numbers:
/// 1 INVITE, 2 SYN, 3 SYN-ACK, 4..=7 RTP.
fn call_capture(bad_rtp: u8) -> Vec<u8> {
    let mut frames = vec![
        udp(CS3, (PHONE, 5060), (CUCM, 5060), &invite()),
        tcp(CS3, (PHONE, 51000), (CUCM, 2000), 0x02),
        tcp(CS3, (CUCM, 2000), (PHONE, 51000), 0x12),
    ];
    for i in 0..4u16 {
        let d = if i % 2 == 0 { bad_rtp } else { EF };
        frames.push(udp(d, (PHONE, 20000), (PEER, 30000), &rtp(i)));
    }
    pcap(&frames)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).expect("write capture");
    p
}

fn run(args: &[&str], files: &[&Path]) -> Output {
    let mut cmd = ucm();
    cmd.args(["pcap", "verify"]).args(args);
    for f in files {
        cmd.arg(f);
    }
    cmd.output().expect("run ucm")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", stdout(o), stderr(o)))
}

fn flow<'a>(file: &'a Value, src: &str) -> &'a Value {
    file["flows"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["src"] == src))
        .unwrap_or_else(|| panic!("no flow from {src} in {file:#}"))
}

// ------------------------------------------------------------------ synthetic captures

#[test]
fn r4_correct_marking_passes_with_exit_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write(dir.path(), "good.pcap", &call_capture(EF));
    let out = run(&[], &[&good]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("PASS"), "{text}");
    assert!(text.contains("10.10.0.5:20000"), "{text}");
    assert!(text.contains("voice"), "{text}");
}

#[test]
fn r4_wrong_marking_fails_with_frames_named_in_every_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = write(dir.path(), "bad.pcap", &call_capture(0));

    let out = run(&[], &[&bad]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.contains("FAIL"), "{text}");
    assert!(text.contains("4,6"), "{text}");

    let out = run(&["--format", "json"], &[&bad]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json_of(&out);
    assert_eq!(doc["passed"], false);
    let file = &doc["files"][0];
    assert_eq!(file["path"], bad.display().to_string());
    assert_eq!(file["packets"], 7);
    assert_eq!(file["sip_messages"], 1);
    let rtp = flow(file, "10.10.0.5:20000");
    assert_eq!(rtp["dst"], "10.10.0.6:30000");
    assert_eq!(rtp["transport"], "udp");
    assert_eq!(rtp["class"], "voice");
    assert_eq!(rtp["classified_by"], "sdp");
    assert_eq!(rtp["expected_dscp"], 46);
    assert_eq!(rtp["dscp_counts"], serde_json::json!({"0": 2, "46": 2}));
    assert_eq!(rtp["violations"], serde_json::json!([4, 6]));
    assert_eq!(rtp["passed"], false);
    let sip = flow(file, "10.10.0.5:5060");
    assert_eq!(
        (&sip["class"], &sip["expected_dscp"], &sip["passed"]),
        (&"sip".into(), &24.into(), &true.into())
    );
    let synack = flow(file, "10.0.0.1:2000");
    assert_eq!(
        (&synack["class"], &synack["transport"]),
        (&"sccp".into(), &"tcp".into())
    );
    // Every IP packet is in exactly one flow.
    let total: u64 = file["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .flat_map(|f| f["dscp_counts"].as_object().expect("counts").values())
        .map(|v| v.as_u64().expect("count"))
        .sum();
    assert_eq!(total, 7);

    let out = run(&["--format", "junit"], &[&bad]);
    assert_eq!(out.status.code(), Some(1));
    let xml = stdout(&out);
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        "{xml}"
    );
    assert!(
        xml.contains(
            "<testsuites name=\"ucm pcap verify\" tests=\"4\" failures=\"1\" errors=\"0\">"
        ),
        "{xml}"
    );
    assert!(xml.contains("<testcase classname=\"dscp.voice\" name=\"10.10.0.5:20000 -&gt; 10.10.0.6:30000 udp voice\">"), "{xml}");
    assert!(xml.contains("first offending frames: 4, 6"), "{xml}");
    assert_eq!(xml.matches("<testsuite ").count(), 1);
    assert_eq!(xml.matches("<testcase ").count(), 4);
    if Command::new("xmllint").arg("--version").output().is_ok() {
        let x = write(dir.path(), "report.xml", xml.as_bytes());
        let lint = Command::new("xmllint")
            .arg("--noout")
            .arg(&x)
            .output()
            .expect("xmllint");
        assert!(
            lint.status.success(),
            "{}",
            String::from_utf8_lossy(&lint.stderr)
        );
    }
}

#[test]
fn r4_policy_can_exempt_senders_and_classes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = write(dir.path(), "bad.pcap", &call_capture(0));
    // Voice unchecked: passes.
    let p = write(dir.path(), "any.yaml", b"classes:\n  voice: any\n");
    let out = run(&["--policy", p.to_str().expect("utf-8")], &[&bad]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // Only CUCM audited, as role cucm: passes; --only-audited lists only its flow.
    let p = write(
        dir.path(),
        "cucm.yaml",
        b"senders:\n  - address: 10.0.0.0/24\n    role: cucm\n",
    );
    let out = run(
        &[
            "--policy",
            p.to_str().expect("utf-8"),
            "--only-audited",
            "--format",
            "json",
        ],
        &[&bad],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let doc = json_of(&out);
    let flows = doc["files"][0]["flows"].as_array().expect("flows");
    assert_eq!(flows.len(), 1, "{doc:#}");
    assert_eq!(flows[0]["sender_role"], "cucm");
}

#[test]
fn r4_unreadable_inputs_exit_2_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write(dir.path(), "good.pcap", &call_capture(EF));
    let full = call_capture(EF);
    let truncated = write(dir.path(), "cut.pcap", &full[..full.len() - 10]);
    // A truncated capture is audited up to the cut and fails (exit 1), naming the offset.
    let out = run(&[], &[&good, &truncated]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cut.pcap") && err.contains("truncated") && err.contains("byte offset"),
        "{err}"
    );
    // The readable capture is still reported.
    assert!(stdout(&out).contains("PASS"), "{}", stdout(&out));

    let garbage = write(dir.path(), "garbage.pcap", b"this is not a capture at all");
    let out = run(&[], &[&garbage]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a packet capture"),
        "{}",
        stderr(&out)
    );

    let empty = write(dir.path(), "empty.pcap", b"");
    assert_eq!(run(&[], &[&empty]).status.code(), Some(2));
    let missing = dir.path().join("missing.pcap");
    assert_eq!(run(&[], &[&missing]).status.code(), Some(2));

    let out = run(&["--format", "junit"], &[&garbage]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("<error message="), "{}", stdout(&out));

    let policy = write(dir.path(), "p.yaml", b"classes:\n  sip: CS3\n  voice: 99\n");
    let out = run(&["--policy", policy.to_str().expect("utf-8")], &[&good]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("p.yaml:3:10:") && err.contains("99"), "{err}");
    let policy = write(dir.path(), "q.yaml", b"classes:\n  sip: CS3\nwho: me\n");
    let out = run(&["--policy", policy.to_str().expect("utf-8")], &[&good]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("q.yaml:3:"), "{}", stderr(&out));

    // No --golden yet: an unknown flag is a usage error.
    assert_eq!(run(&["--golden", "x"], &[&good]).status.code(), Some(2));
}

#[test]
fn r4_default_policy_and_dscp_tally_subcommands() {
    let out = ucm()
        .args(["pcap", "default-policy"])
        .output()
        .expect("run ucm");
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("voice: EF"));
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = write(dir.path(), "bad.pcap", &call_capture(0));
    let out = ucm()
        .args(["pcap", "dscp", "--json"])
        .arg(&bad)
        .output()
        .expect("run ucm");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc = json_of(&out);
    assert_eq!(
        doc["dscp_counts"],
        serde_json::json!({"0": 2, "24": 3, "46": 2})
    );
}

// ------------------------------------------------------------------ real captures vs tshark

/// The shared corpus: `$UCM_CORPUS`, else `../shared/corpus` beside the checkout.
fn corpus_root() -> PathBuf {
    std::env::var_os("UCM_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"))
}

fn corpus_file(rel: &str) -> Option<PathBuf> {
    let p = corpus_root()
        .join("pcaps/Wireshark-Captures/collab_pcap")
        .join(rel);
    if !p.is_file() {
        eprintln!(
            "SKIPPED: {} is not there (set UCM_CORPUS to the shared corpus)",
            p.display()
        );
        return None;
    }
    if Command::new("tshark").arg("-v").output().is_err() {
        skip_or_fail("tshark is not installed (Debian package tshark)");
        return None;
    }
    Some(p)
}

/// tshark's per-direction DSCP counts: "src -> dst" (IP:PORT for UDP/TCP, else the address,
/// with the protocol) -> DSCP -> packets. IPv4 only (the captures used here are IPv4).
fn tshark_flows(file: &Path) -> BTreeMap<String, BTreeMap<u64, u64>> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=l"])
        .args([
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "ip.proto",
            "-e",
            "ip.dsfield.dscp",
        ])
        .args([
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
        ])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut flows: BTreeMap<String, BTreeMap<u64, u64>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let c: Vec<&str> = line.split('\t').collect();
        let get = |i: usize| c.get(i).copied().unwrap_or("");
        if get(0).is_empty() {
            continue;
        }
        let dscp: u64 = get(3).parse().expect("dscp");
        let (sp, dp) = if !get(4).is_empty() {
            (get(4), get(5))
        } else {
            (get(6), get(7))
        };
        let key = if sp.is_empty() {
            format!("{} -> {} proto {}", get(0), get(1), get(2))
        } else {
            let t = if get(2) == "6" { "tcp" } else { "udp" };
            format!("{}:{sp} -> {}:{dp} {t}", get(0), get(1))
        };
        *flows.entry(key).or_default().entry(dscp).or_insert(0) += 1;
    }
    flows
}

fn ucm_flows(file: &Value) -> BTreeMap<String, BTreeMap<u64, u64>> {
    let mut flows = BTreeMap::new();
    for f in file["flows"].as_array().expect("flows") {
        let key = match f["transport"].as_str() {
            Some("other") => format!(
                "{} -> {} proto {}",
                f["src"].as_str().expect("src"),
                f["dst"].as_str().expect("dst"),
                f["protocol"]
            ),
            t => format!(
                "{} -> {} {}",
                f["src"].as_str().expect("src"),
                f["dst"].as_str().expect("dst"),
                t.expect("transport")
            ),
        };
        let counts = f["dscp_counts"]
            .as_object()
            .expect("counts")
            .iter()
            .map(|(k, v)| (k.parse().expect("dscp"), v.as_u64().expect("count")))
            .collect();
        flows.insert(key, counts);
    }
    flows
}

#[test]
fn r4_cisco_opus_call_passes_and_flows_match_tshark() {
    // CP-8841 <-> CUCM 12.5: SIP over TCP all CS3, Opus RTP all EF, both directions.
    let Some(file) = corpus_file("rtp/rtp_sip_opus.pcapng") else {
        return;
    };
    let out = run(&["--format", "json"], &[&file]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let doc = json_of(&out);
    let f = &doc["files"][0];
    assert_eq!(ucm_flows(f), tshark_flows(&file));
    let media = flow(f, "10.10.214.56:22018");
    assert_eq!(media["class"], "voice");
    assert_eq!(media["expected_dscp"], 46);
    let sip = flow(f, "10.10.214.57:51546");
    assert_eq!(
        (&sip["class"], &sip["transport"]),
        (&"sip".into(), &"tcp".into())
    );
    // SIP over TCP in single segments: the SDP was read, so media is known from it.
    assert!(f["sip_messages"].as_u64().is_some_and(|n| n > 0), "{f:#}");
    assert_eq!(media["classified_by"], "sdp");
}

#[test]
fn r4_cisco_paging_multicast_found_and_ef_signalling_policy_names_frames() {
    let Some(file) = corpus_file("sip/sip_mcast_paging.pcapng") else {
        return;
    };
    let out = run(&["--format", "json"], &[&file]);
    let doc = json_of(&out);
    let f = &doc["files"][0];
    assert_eq!(ucm_flows(f), tshark_flows(&file));
    let stream = flow(f, "192.168.151.204:2000");
    assert_eq!(stream["dst"], "239.1.1.99:20480");
    assert_eq!(stream["class"], "voice");
    assert_eq!(stream["classified_by"], "multicast");
    assert_eq!(stream["dscp_counts"], serde_json::json!({"46": 205}));
    assert_eq!(stream["passed"], true);

    // A policy demanding EF on signalling fails the phone's CS3 SIP, naming its first frames
    // as tshark numbers them.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "ef.yaml",
        b"classes:\n  sip: EF\n  other: any\n",
    );
    let out = run(
        &["--policy", p.to_str().expect("utf-8"), "--format", "json"],
        &[&file],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let doc = json_of(&out);
    let phone = flow(&doc["files"][0], "172.22.224.22:51368");
    let tshark = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&file)
        .args([
            "-Y",
            "ip.src==172.22.224.22 && tcp.srcport==51368 && ip.dsfield.dscp!=46",
        ])
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .expect("tshark");
    let frames: Vec<u64> = String::from_utf8_lossy(&tshark.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(!frames.is_empty());
    assert_eq!(phone["offending_packets"], frames.len() as u64);
    let first: Vec<u64> = frames.iter().copied().take(10).collect();
    assert_eq!(phone["violations"], serde_json::json!(first));
    assert_eq!(
        doc["files"][0]["flows"].as_array().map(|fs| fs
            .iter()
            .any(|f| f["src"] == "192.168.151.204:2000" && f["passed"] == true)),
        Some(true)
    );
}

#[test]
fn r4_video_call_audio_marked_af41_is_flagged_under_cisco_recommendation() {
    // CUCM's service-parameter default marks the audio of video calls AF41; Cisco's
    // recommendation (and ucm's default policy) is EF. The video endpoint's audio fails.
    let Some(file) = corpus_file("rtp/rtp_sip_g722_h264.pcapng") else {
        return;
    };
    let out = run(&["--format", "json"], &[&file]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json_of(&out);
    let f = &doc["files"][0];
    // The SDP-bearing 200 OK is fragmented: it is reassembled and its SDP read.
    assert_eq!(f["reassembled_datagrams"], 1);
    let audio = flow(f, "172.22.65.111:25726");
    assert_eq!(audio["class"], "voice");
    assert_eq!(audio["dscp_counts"], serde_json::json!({"34": 387}));
    assert_eq!(audio["offending_packets"], 387);
    let video = flow(f, "172.22.65.111:20248");
    assert_eq!(
        (&video["class"], &video["passed"]),
        (&"video".into(), &true.into())
    );
    // An audio-of-video policy at AF41 for that endpoint makes the media pass.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "video.yaml",
        b"classes:\n  sip: any\nsenders:\n  - address: 172.22.65.111\n    role: video-endpoint\n    classes:\n      voice: AF41\n  - address: 0.0.0.0/0\n",
    );
    let out = run(&["--policy", p.to_str().expect("utf-8")], &[&file]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

fn captures_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read corpus dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            captures_under(&p, out);
        } else if p.extension().is_some_and(|e| e == "pcap" || e == "pcapng") {
            out.push(p);
        }
    }
}

#[test]
fn r4_every_corpus_capture_audits_and_flows_add_up_to_the_dscp_tally() {
    // dscp_tally equals tshark on every corpus file (tests/it/pcap.rs); here the flows of the
    // audit must account for every IP packet with the same DSCP values.
    let root = corpus_root().join("pcaps");
    if !root.is_dir() {
        eprintln!("SKIPPED: {} is not there (set UCM_CORPUS)", root.display());
        return;
    }
    let mut files = Vec::new();
    captures_under(&root, &mut files);
    files.sort();
    let policy = ucm::verify::Policy::cisco_default();
    let mut problems = Vec::new();
    for file in &files {
        let open = || std::io::BufReader::new(std::fs::File::open(file).expect("open"));
        let tally = ucm::pcap::dscp_tally(open()).expect("tally");
        let name = file.display().to_string();
        let audit = match ucm::verify::audit_capture(open(), &name, &policy, Default::default()) {
            Ok(a) => a,
            Err(e) => {
                problems.push(format!("{name}: {e}"));
                continue;
            }
        };
        let mut sum: BTreeMap<u8, u64> = BTreeMap::new();
        for f in &audit.flows {
            for (d, n) in &f.dscp_counts {
                *sum.entry(*d).or_insert(0) += n;
            }
        }
        if sum != tally.by_dscp || audit.ip_packets != tally.ip_packets {
            problems.push(format!("{name}: flows {sum:?}, tally {:?}", tally.by_dscp));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    eprintln!(
        "{} corpus captures audited; flows add up to the tally",
        files.len()
    );
}

// ------------------------------------------------------------------ TCP, XML, ladders, goldens

fn tcp_seg(
    dscp: u8,
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut l4 = src.1.to_be_bytes().to_vec();
    l4.extend_from_slice(&dst.1.to_be_bytes());
    l4.extend_from_slice(&seq.to_be_bytes());
    l4.extend_from_slice(&ack.to_be_bytes());
    l4.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    l4.extend_from_slice(payload);
    eth(&ipv4(dscp, 6, src.0, dst.0, &l4))
}

const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;

fn http_response(ctype: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Frames: 1-3 handshake, 4 INVITE part 1, 5 its retransmission, 6 INVITE part 2 (SIP over
/// TCP, SDP announcing 10.10.0.5:20000), 7-8 RTP to that port, 9 GET of a phone service,
/// 10 its response (a CiscoIPPhoneInput with a bad InputFlags), 11 an EM API POST whose
/// `xml=` form field lacks <appInfo>, 12 its response.
fn tcp_capture() -> Vec<u8> {
    let sip = |s, a, f, p: &[u8]| tcp_seg(CS3, (PHONE, 51001), (CUCM, 5060), s, a, f, p);
    let inv = invite();
    let (p1, p2) = inv.split_at(100);
    let mut frames = vec![
        sip(999, 0, 0x02, b""),
        tcp_seg(CS3, (CUCM, 5060), (PHONE, 51001), 4999, 1000, 0x12, b""),
        sip(1000, 5000, ACK, b""),
        sip(1000, 5000, PSH_ACK, p1),
        sip(1000, 5000, PSH_ACK, p1),
        sip(1100, 5000, PSH_ACK, p2),
        udp(EF, (PEER, 30000), (PHONE, 20000), &rtp(0)),
        udp(EF, (PEER, 30000), (PHONE, 20000), &rtp(1)),
    ];
    let web = |s, a, p: &[u8]| tcp_seg(0, (PHONE, 52000), (CUCM, 8080), s, a, PSH_ACK, p);
    let back = |s, a, p: &[u8]| tcp_seg(0, (CUCM, 8080), (PHONE, 52000), s, a, PSH_ACK, p);
    let get =
        b"GET /ucmuser/services/login.jsp?device=SEP001122334455 HTTP/1.1\r\nHost: cucm\r\n\r\n";
    let input = "<CiscoIPPhoneInput><Title>Login</Title><Prompt>PIN</Prompt>\
                 <URL>http://10.0.0.1/login</URL><InputItem><DisplayName>PIN</DisplayName>\
                 <QueryStringParam>pin</QueryStringParam><InputFlags>Z</InputFlags>\
                 <DefaultValue></DefaultValue></InputItem></CiscoIPPhoneInput>";
    let resp = http_response("text/xml", input);
    frames.push(web(1, 1, get));
    frames.push(back(1, 1 + get.len() as u32, &resp));
    let form = b"xml=%3Crequest%3E%3Clogin%3E%3CdeviceName%3ESEP001122334455%3C%2FdeviceName%3E%3C%2Flogin%3E%3C%2Frequest%3E";
    let post = [
        format!(
            "POST /emservice/EMServiceServlet HTTP/1.1\r\nHost: cucm\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            form.len()
        )
        .into_bytes(),
        form.to_vec(),
    ]
    .concat();
    let s2 = 1 + get.len() as u32;
    let a2 = 1 + resp.len() as u32;
    frames.push(web(s2, a2, &post));
    let ok = http_response("text/xml", "<response><success/></response>");
    frames.push(back(a2, s2 + post.len() as u32, &ok));
    pcap(&frames)
}

#[test]
fn r4_tcp_reassembly_feeds_sip_sdp_http_and_xml_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "tcp.pcap", &tcp_capture());
    let out = run(&["--format", "json"], &[&file]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let doc = json_of(&out);
    let f = &doc["files"][0];
    // The INVITE spans frames 4 and 6: its SDP makes the RTP voice "by SDP", not heuristics.
    assert_eq!(f["sip_messages"], 1, "{f:#}");
    let media = flow(f, "10.10.0.6:30000");
    assert_eq!(media["class"], "voice");
    assert_eq!(media["classified_by"], "sdp");
    assert_eq!(media["passed"], true);
    // The retransmitted segment is a note, with the connection named.
    let tcp = f["tcp"].as_array().expect("tcp notes");
    assert_eq!(tcp.len(), 1, "{tcp:?}");
    assert_eq!(tcp[0]["src"], "10.10.0.5:51001");
    assert_eq!(tcp[0]["app"], "sip");
    assert_eq!(tcp[0]["retransmissions"], 1);
    assert!(f["notes"].as_array().expect("notes").iter().any(|n| n
        .as_str()
        .unwrap_or("")
        .contains("1 retransmitted segments")));
    // XML: the phone-service response names frame 10 and the element; the EM API request in
    // the form field names what is missing; the EM reply is fine.
    let xml = f["xml"].as_array().expect("xml");
    assert_eq!(f["xml_documents"], 3, "{xml:#?}");
    assert_eq!(f["xml_invalid"], 2, "{xml:#?}");
    let input = xml
        .iter()
        .find(|d| d["root"] == "CiscoIPPhoneInput")
        .expect("input");
    assert_eq!(input["frame"], 10);
    assert_eq!(input["kind"], "cisco-ip-phone");
    assert_eq!(input["valid"], false);
    assert_eq!(
        input["source"],
        "http 200 (GET /ucmuser/services/login.jsp?device={})"
    );
    assert!(input["errors"][0]["path"]
        .as_str()
        .expect("path")
        .ends_with("InputItem[1]/InputFlags"));
    let em = xml.iter().find(|d| d["root"] == "request").expect("em");
    assert_eq!(em["frame"], 11);
    assert_eq!(em["kind"], "em-api");
    assert!(em["errors"][0]["message"]
        .as_str()
        .expect("message")
        .contains("appInfo"));
    let reply = xml.iter().find(|d| d["root"] == "response").expect("reply");
    assert_eq!(reply["valid"], true);
    // Ladder: SIP over TCP, RTP from the SDP, both HTTP exchanges with path templates.
    let ladder: Vec<&str> = f["ladder"]
        .as_array()
        .expect("ladder")
        .iter()
        .map(|l| l["text"].as_str().expect("text"))
        .collect();
    assert_eq!(
        ladder,
        [
            "A -> B: INVITE (call 1, cseq 1)",
            "C -> A: RTP PT 0 ptime 20ms",
            "A -> B: HTTP GET /ucmuser/services/login.jsp?device={} 200",
            "A -> B: HTTP POST /emservice/EMServiceServlet 200",
        ]
    );
    // Text and JUnit carry the XML failures too.
    let out = run(&[], &[&file]);
    let text = stdout(&out);
    assert!(text.contains("XML: 3 documents, 2 invalid"), "{text}");
    assert!(text.contains("FAIL frame 10 http 200"), "{text}");
    let out = run(&["--format", "junit"], &[&file]);
    let junit = stdout(&out);
    assert!(
        junit.contains("classname=\"xml.cisco-ip-phone\""),
        "{junit}"
    );
    assert!(junit.contains("InputFlags"), "{junit}");
}

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Every class `any`: only XML and the golden can fail.
const ANY_POLICY: &[u8] = b"classes:\n  sip: any\n  sccp: any\n  cti: any\n  assistant: any\n  \
    http: any\n  tftp: any\n  voice: any\n  video: any\n  other: any\n";

#[test]
fn r4_cisco_paging_fixture_execute_validates_with_quirks_as_warnings() {
    let file = fixture("fixtures/pcaps/sip_mcast_paging.pcapng");
    let out = run(&["--format", "json"], &[&file]);
    let doc = json_of(&out);
    let f = &doc["files"][0];
    // 2 REFERs, 2 202s, 2 NOTIFYs (each spanning two TCP segments), 2 200s.
    assert_eq!(f["sip_messages"], 8, "{f:#}");
    assert_eq!(f["xml_invalid"], 0);
    let xml = f["xml"].as_array().expect("xml");
    let exec: Vec<&Value> = xml
        .iter()
        .filter(|d| d["root"] == "CiscoIPPhoneExecute")
        .collect();
    assert_eq!(exec.len(), 2);
    assert_eq!(exec[0]["frame"], 20);
    assert_eq!(exec[0]["source"], "sip REFER part 2");
    assert_eq!(exec[0]["valid"], true);
    let rules: Vec<&str> = exec[0]["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| w["rule"].as_str().expect("rule"))
        .collect();
    assert!(rules.contains(&"decl-no-space"), "{rules:?}");
    assert!(rules.contains(&"multipart-lf-only"), "{rules:?}");
    assert!(xml
        .iter()
        .any(|d| d["root"] == "CiscoIPPhoneResponse" && d["frame"] == 26));
    // The multicast stream in the ladder, with its statistics in the detail.
    let rtp = f["ladder"]
        .as_array()
        .expect("ladder")
        .iter()
        .find(|l| l["text"] == "A -> C: RTP PT 0 ptime 20ms")
        .expect("rtp line");
    assert_eq!(rtp["frame"], 29);
    assert!(rtp["detail"]
        .as_str()
        .expect("detail")
        .contains("205 packets, 0 lost"));
}

#[test]
fn r4_golden_ladder_matches_and_a_changed_golden_fails_with_a_diff() {
    let file = fixture("fixtures/pcaps/sip_mcast_paging.pcapng");
    let golden = fixture("golden/sip_mcast_paging");
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = write(dir.path(), "any.yaml", ANY_POLICY);
    let p = policy.to_str().expect("utf-8");
    let g = golden.to_str().expect("utf-8");
    let out = run(&["--policy", p, "--golden", g], &[&file]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("ladder: matches golden"),
        "{}",
        stdout(&out)
    );
    let out = run(
        &["--policy", p, "--golden", g, "--format", "json"],
        &[&file],
    );
    assert_eq!(json_of(&out)["files"][0]["diff"], serde_json::json!([]));

    // The golden says the phone answered the first REFER 200 where it answered 202.
    let text = std::fs::read_to_string(golden.join("ladder.txt")).expect("golden");
    let changed = text.replacen("B -> A: 202 REFER (call 1", "B -> A: 200 REFER (call 1", 1);
    assert_ne!(text, changed);
    let bad = write(dir.path(), "ladder.txt", changed.as_bytes());
    let b = bad.to_str().expect("utf-8");
    let out = run(&["--policy", p, "--golden", b], &[&file]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("ladder: differs from golden"), "{text}");
    assert!(
        text.contains("-B -> A: 200 REFER (call 1, cseq 1)"),
        "{text}"
    );
    assert!(
        text.contains("+B -> A: 202 REFER (call 1, cseq 1)"),
        "{text}"
    );
    let out = run(
        &["--policy", p, "--golden", b, "--format", "json"],
        &[&file],
    );
    let doc = json_of(&out);
    assert_eq!(doc["passed"], false);
    let diff: Vec<&str> = doc["files"][0]["diff"]
        .as_array()
        .expect("diff")
        .iter()
        .map(|l| l.as_str().expect("line"))
        .collect();
    assert_eq!(diff[2], "@@ -1,5 +1,5 @@", "{diff:?}");
    // A missing golden is an input error (exit 2).
    let out = run(&["--golden", "/nonexistent/ladder.txt"], &[&file]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn r4_ladder_subcommand_prints_roles_lines_and_json() {
    let file = fixture("fixtures/pcaps/sip_mcast_paging.pcapng");
    let out = ucm()
        .args(["pcap", "ladder"])
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("# A = 192.168.151.204"), "{text}");
    assert!(text.contains("# C = 239.1.1.99"), "{text}");
    assert!(text.contains("     20 "), "{text}");
    let out = ucm()
        .args(["pcap", "ladder", "--normalised"])
        .arg(&file)
        .output()
        .expect("run");
    let golden =
        std::fs::read_to_string(fixture("golden/sip_mcast_paging/ladder.txt")).expect("golden");
    let want: String = golden
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(stdout(&out), want);
    let out = ucm()
        .args(["pcap", "ladder", "--json"])
        .arg(&file)
        .output()
        .expect("run");
    let doc = json_of(&out);
    assert_eq!(doc["roles"][1]["name"], "B");
    assert_eq!(doc["roles"][1]["addr"], "172.22.224.22");
    assert_eq!(doc["ladder"][0]["frame"], 20);
}

// ------------------------------------------------------------------ nothing audited, truncation

/// A pcapng file (little endian, one Ethernet interface, microsecond timestamps).
fn pcapng(frames: &[Vec<u8>]) -> Vec<u8> {
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
    let mut idb = 1u16.to_le_bytes().to_vec();
    idb.extend_from_slice(&[0, 0]);
    idb.extend_from_slice(&65535u32.to_le_bytes());
    f.extend(block(1, &idb));
    for (i, data) in frames.iter().enumerate() {
        let ts = (1_700_000_000u64 + i as u64) * 1_000_000;
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(data);
        epb.resize(epb.len().div_ceil(4) * 4, 0);
        f.extend(block(6, &epb));
    }
    f
}

/// The file-level findings of the first file of a JSON report: (kind, offset, message).
fn findings(doc: &Value) -> Vec<(String, Option<u64>, String)> {
    doc["files"][0]["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings array in {doc:#}"))
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().expect("kind").to_string(),
                f["offset"].as_u64(),
                f["message"].as_str().expect("message").to_string(),
            )
        })
        .collect()
}

#[test]
fn r21_a_capture_without_packets_fails_in_every_format_unless_allow_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = write(dir.path(), "empty.pcap", &pcap(&[]));
    let empty_ng = write(dir.path(), "empty.pcapng", &pcapng(&[]));
    for file in [&empty, &empty_ng] {
        let out = run(&[], &[file]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}{}",
            stdout(&out),
            stderr(&out)
        );
        let text = stdout(&out);
        assert!(text.starts_with("FAIL "), "{text}");
        assert!(
            text.contains("nothing audited: the capture holds no packets")
                && text.contains("--allow-empty"),
            "{text}"
        );
        assert!(stderr(&out).contains("nothing audited"), "{}", stderr(&out));

        let out = run(&["--format", "json"], &[file]);
        assert_eq!(out.status.code(), Some(1));
        let doc = json_of(&out);
        assert_eq!(doc["passed"], false);
        assert_eq!(doc["files"][0]["passed"], false);
        assert_eq!(doc["files"][0]["packets"], 0);
        let f = findings(&doc);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!((f[0].0.as_str(), f[0].1), ("nothing-audited", None));
        assert!(f[0].2.contains("no packets"), "{f:?}");

        let out = run(&["--format", "junit"], &[file]);
        assert_eq!(out.status.code(), Some(1));
        let xml = stdout(&out);
        assert!(
            xml.contains("tests=\"1\" failures=\"1\" errors=\"0\">"),
            "{xml}"
        );
        assert!(
            xml.contains("<testcase classname=\"capture\" name=\"nothing audited\">"),
            "{xml}"
        );
        assert!(xml.contains("type=\"nothing-audited\""), "{xml}");

        for format in ["text", "json", "junit"] {
            let out = run(&["--allow-empty", "--format", format], &[file]);
            assert_eq!(out.status.code(), Some(0), "{format}: {}", stdout(&out));
        }
        let doc = json_of(&run(&["--allow-empty", "--format", "json"], &[file]));
        assert_eq!(doc["passed"], true);
        assert!(findings(&doc).is_empty());
    }
    let help = stdout(&run(&["--help"], &[]));
    assert!(
        help.contains("--allow-empty") && help.contains("the wrong interface"),
        "{help}"
    );
}

#[test]
fn r21_a_capture_with_only_unaudited_flows_fails_unless_allow_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let call = write(dir.path(), "call.pcap", &call_capture(EF));
    // Senders listed, none of them in the capture: seven packets, nothing audited.
    let p = write(
        dir.path(),
        "elsewhere.yaml",
        b"senders:\n  - address: 192.0.2.0/24\n",
    );
    let p = p.to_str().expect("utf-8");
    let out = run(&["--policy", p, "--format", "json"], &[&call]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let doc = json_of(&out);
    assert_eq!(doc["files"][0]["packets"], 7);
    assert_eq!(doc["files"][0]["audited_flows"], 0);
    let f = findings(&doc);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].0, "nothing-audited");
    assert!(
        f[0].2
            .contains("none of the flow directions of its 7 IP packets is audited"),
        "{f:?}"
    );
    let out = run(&["--policy", p], &[&call]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("nothing audited"), "{}", stdout(&out));
    let out = run(&["--policy", p, "--allow-empty"], &[&call]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("PASS "), "{}", stdout(&out));

    // Every class `any` for every sender: nothing audited either.
    let any = write(
        dir.path(),
        "any.yaml",
        b"classes: {sip: any, sccp: any, cti: any, assistant: any, http: any, tftp: any, \
          voice: any, video: any, network-control: any, other: any}\n",
    );
    let out = run(&["--policy", any.to_str().expect("utf-8")], &[&call]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));

    // Only frames that are not IP (ARP): nothing audited.
    let arp = {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[0, 1, 2, 3, 4, 5, 0x08, 0x06]);
        f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f.resize(42, 0);
        f
    };
    let arps = write(dir.path(), "arp.pcap", &pcap(&[arp.clone(), arp]));
    let out = run(&["--format", "json"], &[&arps]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let f = findings(&json_of(&out));
    assert!(f[0].2.contains("none of its 2 packets is IP"), "{f:?}");
    assert_eq!(run(&["--allow-empty"], &[&arps]).status.code(), Some(0));
}

/// Byte offsets where the records of a classic pcap file start.
fn pcap_record_offsets(file: &[u8]) -> Vec<usize> {
    let mut at = 24;
    let mut out = Vec::new();
    while at + 16 <= file.len() {
        out.push(at);
        let incl = u32::from_le_bytes(file[at + 8..at + 12].try_into().expect("4 bytes"));
        at += 16 + incl as usize;
    }
    out
}

#[test]
fn r21_a_truncated_pcap_verifies_the_packets_before_the_cut_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = call_capture(EF);
    let last = *pcap_record_offsets(&full).last().expect("records");
    let cut = write(dir.path(), "cut.pcap", &full[..full.len() - 10]);

    let out = run(&[], &[&cut]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.starts_with("FAIL "), "{text}");
    assert!(text.contains("6 packets (6 IP)"), "{text}");
    let where_ = format!("truncated pcap record at byte offset {last}");
    assert!(text.contains(&where_), "{text}");
    assert!(
        text.contains("the 6 packets before it were audited"),
        "{text}"
    );
    // The flows before the cut are audited as usual.
    assert!(text.contains("10.10.0.5:20000"), "{text}");
    let err = stderr(&out);
    assert!(err.contains("cut.pcap") && err.contains(&where_), "{err}");

    let doc = json_of(&run(&["--format", "json"], &[&cut]));
    assert_eq!(doc["passed"], false);
    let file = &doc["files"][0];
    assert_eq!(file["packets"], 6);
    assert_eq!(file["failed_flows"], 0);
    assert_eq!(flow(file, "10.10.0.5:5060")["passed"], true);
    assert_eq!(
        findings(&doc),
        vec![(
            "truncated".to_string(),
            Some(last as u64),
            format!(
                "{where_}: {} bytes needed, only {} present; the 6 packets before it were audited",
                full.len() - last,
                full.len() - last - 10
            )
        )]
    );
    let out = run(&["--format", "junit"], &[&cut]);
    assert_eq!(out.status.code(), Some(1));
    let xml = stdout(&out);
    assert!(
        xml.contains("<testcase classname=\"capture\" name=\"truncated\">"),
        "{xml}"
    );
    assert!(
        xml.contains(&format!("type=\"truncated\">{where_}")),
        "{xml}"
    );
    assert!(
        xml.contains("tests=\"5\" failures=\"1\" errors=\"0\""),
        "{xml}"
    );
    // --allow-empty does not excuse a cut.
    assert_eq!(run(&["--allow-empty"], &[&cut]).status.code(), Some(1));

    // Cut inside the first record's header: nothing read, both findings.
    let head = write(dir.path(), "head.pcap", &full[..24 + 9]);
    let doc = json_of(&run(&["--format", "json"], &[&head]));
    let kinds: Vec<(String, Option<u64>)> =
        findings(&doc).into_iter().map(|(k, o, _)| (k, o)).collect();
    assert_eq!(
        kinds,
        vec![
            ("truncated".to_string(), Some(24)),
            ("nothing-audited".to_string(), None)
        ]
    );
    // A cut inside the file header leaves nothing to verify: unreadable (exit 2).
    let header = write(dir.path(), "header.pcap", &full[..20]);
    assert_eq!(run(&[], &[&header]).status.code(), Some(2));
}

#[test]
fn r21_a_truncated_pcapng_verifies_the_packets_before_the_cut_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let frames = vec![
        udp(CS3, (PHONE, 5060), (CUCM, 5060), &invite()),
        udp(EF, (PHONE, 20000), (PEER, 30000), &rtp(0)),
        udp(EF, (PHONE, 20000), (PEER, 30000), &rtp(1)),
    ];
    let full = pcapng(&frames);
    let last_block = full.len() - (32 + frames[2].len().div_ceil(4) * 4);
    let cut = write(dir.path(), "cut.pcapng", &full[..full.len() - 4]);
    let out = run(&["--format", "json"], &[&cut]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let doc = json_of(&out);
    assert_eq!(doc["files"][0]["packets"], 2);
    let f = findings(&doc);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (f[0].0.as_str(), f[0].1),
        ("truncated", Some(last_block as u64))
    );
    assert!(
        f[0].2.starts_with(&format!(
            "truncated pcapng block at byte offset {last_block}"
        )),
        "{f:?}"
    );
    assert!(stderr(&out).contains(&format!("byte offset {last_block}")));
}

/// How many packets `tshark -r` reads from `file` (a cut file included), and whether it
/// complained that the file was cut short.
fn tshark_packets(file: &Path) -> (u64, bool) {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .expect("run tshark");
    let n = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count() as u64;
    (
        n,
        String::from_utf8_lossy(&out.stderr).contains("cut short"),
    )
}

#[test]
fn r21_truncated_real_captures_read_as_many_packets_as_tshark() {
    for tool in ["tshark", "tcpdump"] {
        if Command::new(tool).arg("--version").output().is_err() {
            skip_or_fail(&format!("{tool} is not installed"));
            return;
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ng = std::fs::read(fixture("fixtures/pcaps/sip_mcast_paging.pcapng")).expect("fixture");
    // The same packets as a classic pcap, written by tcpdump.
    let pcap_path = dir.path().join("full.pcap");
    let st = Command::new("tcpdump")
        .arg("-r")
        .arg(fixture("fixtures/pcaps/sip_mcast_paging.pcapng"))
        .arg("-w")
        .arg(&pcap_path)
        .output()
        .expect("tcpdump");
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let classic = std::fs::read(&pcap_path).expect("tcpdump's pcap");
    let records = pcap_record_offsets(&classic);
    for (name, bytes, cuts) in [
        (
            "ng",
            &ng,
            vec![
                ng.len() / 5,
                ng.len() / 2 + 1,
                ng.len() * 4 / 5 + 3,
                ng.len() - 2,
            ],
        ),
        (
            "classic",
            &classic,
            vec![
                records[3] + 5,       // in a record header
                records[40] + 16 + 7, // in a record's data
                classic.len() / 2,
                classic.len() - 1,
            ],
        ),
    ] {
        for cut in cuts {
            let path = write(dir.path(), &format!("{name}-{cut}.cap"), &bytes[..cut]);
            let (want, short) = tshark_packets(&path);
            assert!(short, "{name} cut at {cut}: tshark did not see a cut");
            let out = run(&["--format", "json"], &[&path]);
            assert_eq!(out.status.code(), Some(1), "{name} cut at {cut}");
            let doc = json_of(&out);
            assert_eq!(doc["files"][0]["packets"], want, "{name} cut at {cut}");
            let f = findings(&doc);
            assert_eq!(f[0].0, "truncated", "{name} cut at {cut}: {f:?}");
            // The offset is where the incomplete record starts: the file up to it is whole,
            // with the same packets.
            let at = f[0].1.expect("offset") as usize;
            assert!(at < cut, "{name} cut at {cut}: offset {at}");
            let whole = write(dir.path(), &format!("{name}-{cut}-whole.cap"), &bytes[..at]);
            assert_eq!(tshark_packets(&whole), (want, false), "{name} up to {at}");
            let doc = json_of(&run(&["--format", "json", "--allow-empty"], &[&whole]));
            assert_eq!(doc["files"][0]["packets"], want);
            assert!(findings(&doc).iter().all(|f| f.0 != "truncated"));
        }
    }
}

// ------------------------------------------------------------------ README examples

/// The README line that starts with `ucm pcap verify` and holds `needle`, split into the
/// command's words and its trailing `#` comment.
fn readme_example(needle: &str) -> (Vec<String>, String) {
    let readme = std::fs::read_to_string(fixture("README.md")).expect("README.md");
    let line = readme
        .lines()
        .find(|l| l.trim_start().starts_with("ucm pcap verify") && l.contains(needle))
        .unwrap_or_else(|| panic!("no `ucm pcap verify ... {needle}` line in README.md"));
    let (command, comment) = line.split_once('#').unwrap_or((line, ""));
    (
        command.split_whitespace().map(String::from).collect(),
        comment.trim().to_string(),
    )
}

#[test]
fn r21_readme_golden_example_runs_as_written_and_says_what_it_shows() {
    let (words, comment) = readme_example("--golden golden/sip_mcast_paging");
    assert_eq!(words[0], "ucm");
    let run_it = |extra: &[&str]| {
        ucm()
            .args(&words[1..])
            .args(extra)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run ucm")
    };
    let out = run_it(&[]);
    // What the README says the command shows.
    assert!(comment.contains("exit 1"), "README comment: {comment}");
    for claim in ["golden", "SIP", "NTP"] {
        assert!(comment.contains(claim), "README comment: {comment}");
    }
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("ladder: matches golden golden/sip_mcast_paging/ladder.txt"),
        "{text}"
    );
    assert!(text.contains("XML: 8 documents, 0 invalid"), "{text}");
    // Exactly the CME's own SIP and NTP fail; the routers' IGMP queries are network control
    // at CS6 and pass, the page's RTP is EF.
    let doc = json_of(&run_it(&["--format", "json"]));
    let file = &doc["files"][0];
    let mut failed: Vec<(&str, &str)> = file["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .filter(|f| f["passed"] == false)
        .map(|f| {
            (
                f["src"].as_str().expect("src"),
                f["class"].as_str().expect("class"),
            )
        })
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        vec![
            ("192.168.151.204:123", "other"),
            ("192.168.151.204:5060", "sip")
        ]
    );
    let sip = flow(file, "192.168.151.204:5060");
    assert_eq!(sip["dscp_counts"], serde_json::json!({"0": 9, "26": 1}));
    let igmp: Vec<&Value> = file["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .filter(|f| f["src"] == "172.31.200.7")
        .collect();
    assert_eq!(igmp.len(), 2);
    for f in igmp {
        assert_eq!(
            (
                &f["class"],
                &f["classified_by"],
                &f["expected_dscp"],
                &f["passed"]
            ),
            (
                &"network-control".into(),
                &"protocol".into(),
                &48.into(),
                &true.into()
            ),
            "{f:#}"
        );
    }
    // The hosts' IGMP membership reports are not network control.
    assert_eq!(flow(file, "10.184.231.45")["class"], "other");
    assert_eq!(flow(file, "192.168.151.204:2000")["passed"], true);
    assert!(findings(&doc).is_empty());
}

/// At a terminal, `pcap verify` says each error once (the report), not again on stderr; with its
/// output redirected, stderr carries what failed the capture as well.
#[test]
fn r21_pcap_verify_says_each_error_once_at_a_terminal() {
    if !crate::common::have("script") {
        crate::common::skip_or_fail("script (util-linux) for a terminal");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(fixture("fixtures/pcaps/sip_mcast_paging.pcapng")).unwrap();
    let cut = dir.path().join("cut.pcapng");
    std::fs::write(&cut, &whole[..3000]).unwrap();
    let bad = dir.path().join("bad.pcap");
    std::fs::write(&bad, b"garbage\n").unwrap();
    for (file, needle) in [(&cut, "truncated"), (&bad, "not a packet capture")] {
        let cmd = format!(
            "{} pcap verify {}",
            env!("CARGO_BIN_EXE_ucm"),
            file.display()
        );
        let out = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&out.stdout);
        assert_eq!(shown.matches(needle).count(), 1, "{shown}");
        // Redirected: the report on stdout, the failure on stderr too.
        let out = ucm().args(["pcap", "verify"]).arg(file).output().unwrap();
        assert!(stdout(&out).contains(needle) && stderr(&out).contains(needle));
    }
}
