//! SIPp as a real peer (issue 3): calls from SIPp's uac through ucm to SIPp's uas, over SIP
//! trunks, with SIPp's built-in scenarios.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{skip_or_fail, write_file, Server};

pub fn sipp_available() -> bool {
    Command::new("sipp").arg("-v").output().is_ok()
}

fn trunk_cluster(uac: &str, uas: &str) -> String {
    format!(
        r#"cluster: {{id: sipp, name: SIPp interop}}
nodes: [{{name: n1, address: 127.0.0.1}}]
partitions: [{{name: PT}}]
calling_search_spaces: [{{name: CSS, partitions: [PT]}}]
device_pools: [{{name: DP, node_group: [n1]}}]
sip_trunks:
  - {{name: sipp-uac, destinations: ["{uac}"], device_pool: DP, css: CSS}}
  - {{name: sipp-uas, destinations: ["{uas}"], device_pool: DP, css: CSS}}
route_patterns:
  - {{pattern: 3XXX, partition: PT, sip_trunk: sipp-uas}}
"#
    )
}

/// Kills a background SIPp when the test ends, whatever happens.
struct Bg(std::process::Child);
impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn r3_sipp_uac_calls_sipp_uas_through_ucm() {
    if !sipp_available() {
        skip_or_fail("sipp is not installed (Debian package sip-tester)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (uac_ip, uas_ip) = ("127.0.0.60", "127.0.0.61");
    let cfg = write_file(
        dir.path(),
        "sipp.yaml",
        &trunk_cluster(&format!("{uac_ip}:5071"), &format!("{uas_ip}:5072")),
    );
    let srv = Server::start_in(dir, &["--config", cfg.to_str().unwrap()]);
    let sip = srv.addr("sip_udp");
    let work = tempfile::tempdir().unwrap();
    // Everything on the wire is captured and later decoded by tshark.
    let pcap = work.path().join("calls.pcap");
    let capture = Capture::start(
        &pcap,
        &format!("udp port {} or udp port 5071 or udp port 5072", sip.port()),
    );
    let _uas = Bg(Command::new("sipp")
        .args([
            "-sn", "uas", "-i", uas_ip, "-p", "5072", "-m", "5", "-nostdin", "-timeout", "30s",
        ])
        .current_dir(work.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sipp uas"));
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("sipp")
        .args([
            "-sn",
            "uac",
            "-s",
            "3000",
            &sip.to_string(),
            "-i",
            uac_ip,
            "-p",
            "5071",
        ])
        .args([
            "-m",
            "5",
            "-r",
            "5",
            "-nostdin",
            "-timeout",
            "30s",
            "-trace_err",
        ])
        .current_dir(work.path())
        .output()
        .expect("run sipp uac");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "SIPp uac reports failed calls:\n{}\nucm logs:\n{}",
        text.lines().rev().take(30).collect::<Vec<_>>().join("\n"),
        srv.logs()
    );
    let successful = text
        .lines()
        .find(|l| l.trim_start().starts_with("Successful call"))
        .unwrap_or_default()
        .to_string();
    assert!(successful.contains(" 5 "), "{successful}");
    if let Some(c) = capture {
        c.stop();
        tshark_finds_no_errors(&pcap, &[sip.port(), 5071, 5072], 5 * 13);
    }
}

/// tcpdump on lo, stopped (SIGINT, so the file is complete) by `stop`.
pub struct Capture {
    child: std::process::Child,
    /// What tcpdump said on stderr so far.
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Capture {
    pub fn start(file: &std::path::Path, filter: &str) -> Option<Capture> {
        if Command::new("tcpdump").arg("--version").output().is_err() {
            skip_or_fail("tcpdump is not installed (Debian package tcpdump)");
            return None;
        }
        let mut child = Command::new("tcpdump")
            // A 32 MiB buffer: bursts (a page pushing to 26 phones at once) overflow the default.
            .args([
                "-i",
                "lo",
                "-U",
                "--immediate-mode",
                "-B",
                "32768",
                "-s",
                "0",
                "-w",
            ])
            .arg(file)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        // tcpdump says "listening on lo" once the capture is live.
        let stderr = child.stderr.take()?;
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            let _ = child.kill();
            skip_or_fail("tcpdump did not start capturing on lo (needs root)");
            return None;
        }
        Some(Capture { child, log })
    }

    /// Stops the capture once tcpdump has written every packet the kernel queued for it (a
    /// SIGINT alone loses what a busy machine left in its buffer).
    pub fn stop(mut self) {
        // Let the last packets reach tcpdump before it is told to finish.
        std::thread::sleep(Duration::from_millis(500));
        let log = self.log.clone();
        if !crate::conformance::scenario::wait_until_written(
            self.child.id(),
            &|| log.lock().unwrap().clone(),
            Duration::from_secs(10),
        ) {
            eprintln!(
                "warning: tcpdump had not written every packet after 10 s; the capture may be \
                 incomplete:\n{}",
                log.lock().unwrap()
            );
        }
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGINT);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A capture stopped while tcpdump lags (here: stopped by SIGSTOP while 200 datagrams arrive,
/// continued only after `stop` began) still holds every packet: CI once lost a phone's answer
/// that sat in tcpdump's buffer when SIGINT came.
#[test]
fn r8_a_capture_stopped_while_tcpdump_lags_keeps_every_packet() {
    let work = tempfile::tempdir().unwrap();
    let pcap = work.path().join("lag.pcap");
    let port = free_udp_port();
    let Some(capture) = Capture::start(&pcap, &format!("udp and dst port {port}")) else {
        return;
    };
    let pid = capture.child.id() as libc::pid_t;
    // SAFETY: signalling the capture's own tcpdump, a child of this process.
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..200u32 {
        sock.send_to(&i.to_be_bytes(), ("127.0.0.1", port)).unwrap();
    }
    // Continued after `stop` has waited its half second and asked for the counts.
    let cont = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(900));
        // SAFETY: as above; a pid already reaped would at worst get a stray SIGCONT.
        unsafe {
            libc::kill(pid, libc::SIGCONT);
        }
    });
    capture.stop();
    cont.join().unwrap();
    let out = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(&pcap)
        .output()
        .expect("tcpdump -r");
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert_eq!(lines, 200, "{}", String::from_utf8_lossy(&out.stderr));
}

/// tshark decodes every SIP message in the capture with no malformed packet and no expert
/// error; `at_least` SIP messages must be there.
fn tshark_finds_no_errors(pcap: &std::path::Path, sip_ports: &[u16], at_least: usize) {
    // Decode these ports as SIP (tshark only knows 5060 by itself).
    let decode: Vec<String> = sip_ports
        .iter()
        .flat_map(|p| ["-d".to_string(), format!("udp.port=={p},sip")])
        .collect();
    if Command::new("tshark").arg("-v").output().is_err() {
        skip_or_fail("tshark is not installed (Debian package tshark)");
        return;
    }
    let count = |filter: &str| -> usize {
        let out = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(pcap)
            .args(&decode)
            .args(["-Y", filter])
            .output()
            .expect("run tshark");
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let sip = count("sip");
    if sip < at_least {
        let all = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(pcap)
            .args(&decode)
            .output()
            .expect("tshark");
        panic!(
            "tshark found {sip} SIP messages, expected at least {at_least}:\n{}",
            String::from_utf8_lossy(&all.stdout)
        );
    }
    let bad = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args(&decode)
        .args(["-Y", "_ws.malformed || _ws.expert.severity == error"])
        .output()
        .expect("run tshark");
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(
        text.trim().is_empty(),
        "tshark reports malformed packets or expert errors:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Each routing rule on the wire (issue 3): calls placed by SIPp (over a trunk) or by a
// registered phone go through `ucm serve`, and the SIPp uas behind each trunk shows where the
// call went and with which number.

/// A SIPp uas (built-in scenario) taking one call on `ip:port`, every message logged.
struct Uas {
    child: Bg,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Uas {
    fn start(ip: &str, port: u16) -> Uas {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("uas_messages.log");
        let child = Command::new("sipp")
            .args(["-sn", "uas", "-i", ip, "-p", &port.to_string()])
            .args(["-m", "1", "-nostdin", "-timeout", "30s", "-trace_msg"])
            .arg("-message_file")
            .arg(&log)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sipp uas");
        Uas {
            child: Bg(child),
            log,
            _dir: dir,
        }
    }

    /// Waits (up to 15 s) for the uas to finish its one call, then returns the INVITE it
    /// received: its Request-URI and To header.
    fn invite(mut self) -> (String, String) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut lines = text.lines().skip_while(|l| !l.starts_with("INVITE "));
        let start = lines
            .next()
            .unwrap_or_else(|| panic!("the uas received no INVITE:\n{text}"))
            .to_string();
        let to = lines
            .take_while(|l| !l.trim().is_empty())
            .find(|l| l.to_ascii_lowercase().starts_with("to:"))
            .unwrap_or_default()
            .to_string();
        let uri = start
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        (uri, to)
    }
}

/// SIPp's uac places one call to `number` from `ip:port` (a trunk of the cluster); true when
/// the call completed.
fn sipp_call(sip: std::net::SocketAddr, ip: &str, port: u16, number: &str) -> (bool, String) {
    let out = Command::new("sipp")
        .args(["-sn", "uac", "-s", number, &sip.to_string(), "-i", ip])
        .args(["-p", &port.to_string(), "-m", "1", "-nostdin"])
        .args(["-timeout", "20s", "-recv_timeout", "15s"])
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run sipp uac");
    let text = String::from_utf8_lossy(&out.stdout);
    let tail = text.lines().rev().take(25).collect::<Vec<_>>().join("\n");
    (out.status.code() == Some(0), tail)
}

/// A call from a registered phone: INVITE, the answer, ACK, BYE.
async fn phone_call(p: &crate::callcontrol::TestPhone, number: &str, call_id: &str) {
    p.send_text(&p.invite(number, call_id)).await;
    let ok = loop {
        match p.recv().await {
            ucm::wire::sip::SipMessage::Response(r) if r.status == 200 => break r,
            ucm::wire::sip::SipMessage::Response(r) if r.status < 200 => continue,
            other => panic!("{}: call to {number} got {other}", p.dn),
        }
    };
    p.send_text(&p.in_dialog(&ok, "ACK", 101)).await;
    p.send_text(&p.in_dialog(&ok, "BYE", 102)).await;
    p.expect_response(200).await;
}

/// The routing-rules cluster, every address on 127.`net`.0.x so tests run side by side.
fn rules_cluster(net: u8) -> String {
    let ip = |h: u8| format!("127.{net}.0.{h}:5062");
    format!(
        r#"cluster: {{id: rules, name: Routing rules on the wire}}
nodes: [{{name: n1, address: 127.0.0.1}}]
partitions: [{{name: PT_LINE}}, {{name: PT_DEV}}, {{name: PT_XLATE}}, {{name: PT_PSTN}}, {{name: PT_INT}}]
calling_search_spaces:
  - {{name: LINE_CSS, partitions: [PT_LINE]}}
  - {{name: DEV_CSS, partitions: [PT_DEV, PT_PSTN, PT_INT]}}
  - {{name: TRUNK_CSS, partitions: [PT_XLATE, PT_PSTN]}}
  - {{name: XLATE_CSS, partitions: [PT_PSTN]}}
route_groups:
  - {{name: HQ_RG, members: [HQ_GW]}}
  - {{name: BR_RG, members: [BR_GW]}}
device_pools:
  - {{name: HQ_DP, node_group: [n1], local_route_group: HQ_RG}}
  - {{name: BR_DP, node_group: [n1], local_route_group: BR_RG}}
sip_trunks:
  - {{name: SIPP_UAC, destinations: ["127.{net}.0.10:5061"], device_pool: HQ_DP, css: TRUNK_CSS}}
  - {{name: HQ_GW, destinations: ["{hq}"], device_pool: HQ_DP}}
  - {{name: BR_GW, destinations: ["{br}"], device_pool: BR_DP}}
  - {{name: LINE_GW, destinations: ["{line}"], device_pool: HQ_DP}}
  - {{name: DEV_GW, destinations: ["{dev}"], device_pool: HQ_DP}}
  - {{name: WIDE_GW, destinations: ["{wide}"], device_pool: HQ_DP}}
  - {{name: NARROW_GW, destinations: ["{narrow}"], device_pool: HQ_DP}}
  - {{name: XLATE_GW, destinations: ["{xlate}"], device_pool: HQ_DP}}
route_lists: [{{name: LRG_RL, members: [Standard Local Route Group]}}]
route_patterns:
  - {{pattern: 9.XXXX, partition: PT_PSTN, route_list: LRG_RL}}
  - {{pattern: 5XXX, partition: PT_PSTN, sip_trunk: WIDE_GW}}
  - {{pattern: 55XX, partition: PT_PSTN, sip_trunk: NARROW_GW}}
  - {{pattern: "7000", partition: PT_LINE, sip_trunk: LINE_GW}}
  - {{pattern: "7000", partition: PT_DEV, sip_trunk: DEV_GW}}
  - {{pattern: 6XXXX, partition: PT_PSTN, sip_trunk: XLATE_GW}}
translation_patterns:
  - {{pattern: 8XXXX, partition: PT_XLATE, css: XLATE_CSS, called_party_transform_mask: 6XXXX}}
directory_numbers:
  - {{pattern: "1000", partition: PT_INT, css: LINE_CSS}}
  - {{pattern: "2000", partition: PT_INT}}
devices:
  - {{name: SEP0000000A1000, model: Cisco 8845, device_pool: HQ_DP, css: DEV_CSS, lines: [{{dn: "1000", partition: PT_INT}}]}}
  - {{name: SEP0000000B2000, model: Cisco 8845, device_pool: BR_DP, css: DEV_CSS, lines: [{{dn: "2000", partition: PT_INT}}]}}
"#,
        hq = ip(11),
        br = ip(12),
        line = ip(13),
        dev = ip(14),
        wide = ip(15),
        narrow = ip(16),
        xlate = ip(17),
    )
}

fn rules_server(net: u8) -> Option<Server> {
    if !sipp_available() {
        skip_or_fail("sipp is not installed (Debian package sip-tester)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_file(dir.path(), "rules.yaml", &rules_cluster(net));
    Some(Server::start_in(dir, &["--config", cfg.to_str().unwrap()]))
}

#[test]
fn r3_sipp_translation_pattern_rewrites_the_called_number() {
    let Some(srv) = rules_server(31) else { return };
    let uas = Uas::start("127.31.0.17", 5062);
    std::thread::sleep(Duration::from_millis(300));
    // 81234 matches translation 8XXXX, whose mask makes it 61234: route pattern 6XXXX.
    let (ok, tail) = sipp_call(srv.addr("sip_udp"), "127.31.0.10", 5061, "81234");
    assert!(ok, "call failed:\n{tail}\nucm logs:\n{}", srv.logs());
    let (uri, to) = uas.invite();
    assert_eq!(uri, "sip:61234@127.31.0.17:5062");
    assert!(to.contains("sip:61234@"), "{to}");
}

#[test]
fn r3_sipp_closest_match_wins() {
    let Some(srv) = rules_server(32) else { return };
    let sip = srv.addr("sip_udp");
    // 5512 matches 5XXX (1000 numbers) and 55XX (100): the narrower pattern takes it.
    let narrow = Uas::start("127.32.0.16", 5062);
    std::thread::sleep(Duration::from_millis(300));
    let (ok, tail) = sipp_call(sip, "127.32.0.10", 5061, "5512");
    assert!(ok, "call failed:\n{tail}\nucm logs:\n{}", srv.logs());
    assert_eq!(narrow.invite().0, "sip:5512@127.32.0.16:5062");
    // 5612 matches only 5XXX.
    let wide = Uas::start("127.32.0.15", 5062);
    std::thread::sleep(Duration::from_millis(300));
    let (ok, tail) = sipp_call(sip, "127.32.0.10", 5061, "5612");
    assert!(ok, "call failed:\n{tail}\nucm logs:\n{}", srv.logs());
    assert_eq!(wide.invite().0, "sip:5612@127.32.0.15:5062");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_sipp_line_css_comes_before_device_css() {
    let Some(srv) = rules_server(33) else { return };
    let sip = srv.addr("sip_udp");
    use crate::callcontrol::TestPhone;
    // 7000 is in PT_LINE (to LINE_GW) and PT_DEV (to DEV_GW), equally specific: the line
    // CSS's partition is searched first.
    let with_line_css = TestPhone::register("127.33.0.20", "1000", "0000000a1000", sip).await;
    let line_gw = Uas::start("127.33.0.13", 5062);
    tokio::time::sleep(Duration::from_millis(300)).await;
    phone_call(&with_line_css, "7000", "css-order-1").await;
    let line = tokio::task::spawn_blocking(move || line_gw.invite())
        .await
        .unwrap();
    assert_eq!(line.0, "sip:7000@127.33.0.13:5062");
    // A line without a CSS leaves the device CSS alone.
    let device_css_only = TestPhone::register("127.33.0.21", "2000", "0000000b2000", sip).await;
    let dev_gw = Uas::start("127.33.0.14", 5062);
    tokio::time::sleep(Duration::from_millis(300)).await;
    phone_call(&device_css_only, "7000", "css-order-2").await;
    let dev = tokio::task::spawn_blocking(move || dev_gw.invite())
        .await
        .unwrap();
    assert_eq!(dev.0, "sip:7000@127.33.0.14:5062");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_sipp_standard_local_route_group_follows_the_callers_device_pool() {
    let Some(srv) = rules_server(34) else { return };
    let sip = srv.addr("sip_udp");
    use crate::callcontrol::TestPhone;
    let hq = TestPhone::register("127.34.0.20", "1000", "0000000a1000", sip).await;
    let br = TestPhone::register("127.34.0.21", "2000", "0000000b2000", sip).await;
    let hq_gw = Uas::start("127.34.0.11", 5062);
    let br_gw = Uas::start("127.34.0.12", 5062);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The same route pattern and route list (Standard Local Route Group) from two pools.
    phone_call(&hq, "91234", "lrg-hq").await;
    phone_call(&br, "95678", "lrg-br").await;
    let (hq_in, br_in) = tokio::task::spawn_blocking(move || (hq_gw.invite(), br_gw.invite()))
        .await
        .unwrap();
    assert_eq!(hq_in.0, "sip:91234@127.34.0.11:5062");
    assert_eq!(br_in.0, "sip:95678@127.34.0.12:5062");
}

/// A free UDP port on 127.0.0.1 (SIPp binds it right after).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap()
}

#[test]
fn r3_sipp_trunk_destination_names_resolve_and_fail_over() {
    if !sipp_available() {
        skip_or_fail("sipp is not installed (Debian package sip-tester)");
        return;
    }
    let port = free_udp_port();
    let uac_port = free_udp_port();
    let cluster = format!(
        r#"cluster: {{id: dns, name: Named trunk destinations}}
nodes: [{{name: n1, address: 127.0.0.1}}]
partitions: [{{name: PT}}]
calling_search_spaces: [{{name: CSS, partitions: [PT]}}]
device_pools: [{{name: DP, node_group: [n1]}}]
sip_trunks:
  - {{name: SIPP_UAC, destinations: ["localhost:{uac_port}"], device_pool: DP, css: CSS}}
  - {{name: NAMED, destinations: ["nonexistent.invalid:5062", "localhost:{port}"], device_pool: DP}}
route_patterns:
  - {{pattern: 3XXX, partition: PT, sip_trunk: NAMED}}
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_file(dir.path(), "dns.yaml", &cluster);
    let srv = Server::start_in(dir, &["--config", cfg.to_str().unwrap()]);
    let uas = Uas::start("127.0.0.1", port);
    std::thread::sleep(Duration::from_millis(300));
    // The caller is known as trunk SIPP_UAC by the address its name resolves to.
    let (ok, tail) = sipp_call(srv.addr("sip_udp"), "127.0.0.1", uac_port, "3000");
    assert!(ok, "call failed:\n{tail}\nucm logs:\n{}", srv.logs());
    // The name that does not resolve was skipped with a log line; localhost was called by
    // its name.
    let (uri, _) = uas.invite();
    assert_eq!(uri, format!("sip:3000@localhost:{port}"));
    let logs = srv.wait_for_log("trunk destination does not resolve; trying the next");
    let line = logs
        .lines()
        .find(|l| l.contains("trying the next"))
        .unwrap_or_default();
    assert!(line.contains("nonexistent.invalid:5062"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// Outbound SIP over TLS to a trunk. Debian's SIPp is built without TLS, so the TLS peer is a
// small rustls UAS here; the caller is SIPp's uac over UDP.

/// A CA, and a server certificate and key for `names` signed by it (PEM).
fn ca_and_server_cert(ca_name: &str, names: &[&str]) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// Requests a TLS UAS received (start line and headers as text).
type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A SIP UAS over TLS on `listener`: answers INVITE with 200 and SDP, BYE with 200, and
/// records every request.
async fn tls_uas(listener: tokio::net::TcpListener, cert_pem: String, key_pem: String, seen: Seen) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use ucm::wire::sip::{parse_stream_message_bytes, SipMessage, StreamEvent, StreamFramer};
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .unwrap()
        .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(ucm::net::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let local = listener.local_addr().unwrap();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let acceptor = acceptor.clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            // A refused handshake (the client does not trust us) just ends the connection.
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut buf = Vec::new();
            let mut framer = StreamFramer::new();
            let mut chunk = [0u8; 8192];
            loop {
                while let Ok(Some(ev)) = framer.poll(&buf) {
                    framer.reset();
                    let len = match ev {
                        StreamEvent::KeepAlive { len, .. } => {
                            buf.drain(..len);
                            continue;
                        }
                        StreamEvent::Message { len } => len,
                    };
                    let frame: Vec<u8> = buf.drain(..len).collect();
                    let Ok(SipMessage::Request(req)) = parse_stream_message_bytes(&frame.into())
                    else {
                        continue;
                    };
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&req.to_bytes()).into());
                    let reply = match req.method.as_str() {
                        "INVITE" => {
                            let mut r = req.make_response(200, "OK", Some("tlsuas"));
                            r.headers
                                .push("Contact", format!("<sip:uas@{local};transport=tls>"));
                            r.headers.push("Content-Type", "application/sdp");
                            r.body = bytes::Bytes::from_static(
                                b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
                            );
                            Some(r)
                        }
                        "ACK" => None,
                        _ => Some(req.make_response(200, "OK", Some("tlsuas"))),
                    };
                    if let Some(r) = reply {
                        if tls.write_all(&r.to_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
                match tls.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_sipp_tls_trunk_verifies_the_peer_and_fails_over() {
    if !sipp_available() {
        skip_or_fail("sipp is not installed (Debian package sip-tester)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The trusted peer's certificate names localhost; the other one is signed by a CA the
    // trunk does not trust.
    let (ca, good_cert, good_key) = ca_and_server_cert("trunk CA", &["localhost"]);
    let (_, rogue_cert, rogue_key) = ca_and_server_cert("rogue CA", &["localhost", "127.0.0.1"]);
    let ca_file = write_file(dir.path(), "trunk-ca.pem", &ca);
    let good = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rogue = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (good_port, rogue_port) = (
        good.local_addr().unwrap().port(),
        rogue.local_addr().unwrap().port(),
    );
    let good_seen = Seen::default();
    let rogue_seen = Seen::default();
    tokio::spawn(tls_uas(good, good_cert, good_key, good_seen.clone()));
    tokio::spawn(tls_uas(rogue, rogue_cert, rogue_key, rogue_seen.clone()));
    let ca_path = ca_file.display();
    let cluster = format!(
        r#"cluster: {{id: tls, name: TLS trunks}}
nodes: [{{name: n1, address: 127.0.0.1}}]
partitions: [{{name: PT}}]
calling_search_spaces: [{{name: CSS, partitions: [PT]}}]
device_pools: [{{name: DP, node_group: [n1]}}]
sip_trunks:
  - {{name: SIPP_UAC, destinations: ["127.36.0.10:5061"], device_pool: DP, css: CSS}}
  - {{name: ROGUE, destinations: ["127.0.0.1:{rogue_port}"], transport: tls, tls_ca: "{ca_path}", tls_server_name: localhost, device_pool: DP}}
  - {{name: GOOD, destinations: ["localhost:{good_port}"], transport: tls, tls_ca: "{ca_path}", device_pool: DP}}
route_groups: [{{name: TLS_RG, members: [ROGUE, GOOD]}}]
route_lists: [{{name: TLS_RL, members: [TLS_RG]}}]
route_patterns:
  - {{pattern: 4XXX, partition: PT, route_list: TLS_RL}}
  - {{pattern: "4999", partition: PT, sip_trunk: ROGUE}}
"#
    );
    let cfg = write_file(dir.path(), "tls.yaml", &cluster);
    let srv = tokio::task::spawn_blocking(move || {
        let data = tempfile::tempdir().unwrap();
        Server::start_in(data, &["--config", cfg.to_str().unwrap()])
    })
    .await
    .unwrap();
    let sip = srv.addr("sip_udp");
    // The TLS connection to the trusted peer is captured to check its marking.
    let work = tempfile::tempdir().unwrap();
    let pcap = work.path().join("tls-trunk.pcap");
    let Some(capture) = Capture::start(&pcap, &format!("tcp and port {good_port}")) else {
        return;
    };
    // The first trunk's certificate is refused: the call goes on to the second, over TLS to
    // the name localhost, verified against the trunk's CA.
    let (ok, tail) =
        tokio::task::spawn_blocking(move || sipp_call(sip, "127.36.0.10", 5061, "4001"))
            .await
            .unwrap();
    assert!(ok, "call failed:\n{tail}\nucm logs:\n{}", srv.logs());
    let logs = srv.wait_for_log("SIP TLS handshake failed");
    let refused = logs
        .lines()
        .find(|l| l.contains("SIP TLS handshake failed"))
        .unwrap_or_default();
    assert!(refused.contains("ROGUE"), "{refused}");
    assert!(rogue_seen.lock().unwrap().is_empty());
    // ucm answers the caller's BYE before the callee's is through: wait for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !good_seen
        .lock()
        .unwrap()
        .iter()
        .any(|m| m.starts_with("BYE "))
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = good_seen.lock().unwrap().clone();
    let invite = got
        .iter()
        .find(|m| m.starts_with("INVITE "))
        .unwrap_or_else(|| panic!("no INVITE over TLS: {got:?}"));
    assert!(
        invite.starts_with(&format!("INVITE sip:4001@localhost:{good_port} SIP/2.0")),
        "{invite}"
    );
    // Via and Contact name our TLS listener, where the peer would open its own connection.
    let sips = srv.addr("sip_tls");
    assert!(
        invite.contains(&format!("Via: SIP/2.0/TLS {sips};")),
        "{invite}"
    );
    assert!(
        invite.contains(&format!("Contact: <sip:{sips};transport=tls>")),
        "{invite}"
    );
    assert!(got.iter().any(|m| m.starts_with("ACK ")), "{got:?}");
    assert!(got.iter().any(|m| m.starts_with("BYE ")), "{got:?}");
    // Every packet ucm sent on the TLS connection, its SYN first, is marked CS3 (DSCP 24):
    // the socket was marked before connect(). tshark reads the marks.
    tokio::task::spawn_blocking(move || capture.stop())
        .await
        .unwrap();
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-Y", &format!("tcp.dstport == {good_port}")])
        .args([
            "-T",
            "fields",
            "-e",
            "tcp.flags.syn",
            "-e",
            "ip.dsfield.dscp",
        ])
        .output()
        .expect("tshark (Debian package tshark)");
    let text = String::from_utf8_lossy(&out.stdout);
    let marks: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('\t')).collect();
    assert!(marks.len() >= 4, "too few packets to the TLS peer: {text}");
    assert!(
        marks
            .first()
            .is_some_and(|(syn, _)| *syn == "1" || *syn == "True"),
        "the capture starts with the SYN: {text}"
    );
    assert!(marks.iter().all(|(_, dscp)| *dscp == "24"), "{text}");
    // A call whose only trunk cannot be trusted is refused at once with 503 and why, not
    // after Timer B.
    let sock = tokio::net::UdpSocket::bind("127.36.0.10:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let invite = format!(
        "INVITE sip:4999@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKrogue1\r\nFrom: <sip:5550100@{local}>;tag=r1\r\nTo: <sip:4999@{sip}>\r\nCall-ID: rogue-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:5550100@{local}>\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(invite.as_bytes(), sip).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 65536];
    let answer = loop {
        let (n, _) = tokio::time::timeout(Duration::from_secs(10), sock.recv_from(&mut buf))
            .await
            .expect("a final answer within 10 s")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if !text.starts_with("SIP/2.0 1") {
            break text;
        }
    };
    assert!(answer.starts_with("SIP/2.0 503 "), "{answer}");
    let status_line = answer.lines().next().unwrap_or_default();
    assert!(status_line.contains("TLS handshake"), "{status_line}");
    assert!(status_line.contains("UnknownIssuer"), "{status_line}");
    assert!(started.elapsed() < Duration::from_secs(8));
}

/// A TCP trunk whose peer refuses the connection fails over at once (the transaction ends
/// with the transport error), not after Timer B's 32 s.
/// A TCP trunk peer that takes the INVITE and then drops the connection: the request will
/// never be answered, so the call hunts on to the next trunk at once instead of after Timer B
/// (32 s).
#[test]
fn r3_sipp_trunk_connection_lost_mid_invite_fails_over_at_once() {
    if !sipp_available() {
        skip_or_fail("sipp is not installed (Debian package sip-tester)");
        return;
    }
    let cluster = r#"cluster: {id: tcp, name: Dropping TCP trunk}
nodes: [{name: n1, address: 127.0.0.1}]
partitions: [{name: PT}]
calling_search_spaces: [{name: CSS, partitions: [PT]}]
device_pools: [{name: DP, node_group: [n1]}]
sip_trunks:
  - {name: SIPP_UAC, destinations: ["127.37.1.10:5061"], device_pool: DP, css: CSS}
  - {name: DROPS, destinations: ["127.37.1.11:5062"], transport: tcp, device_pool: DP}
  - {name: LIVE, destinations: ["127.37.1.12:5062"], device_pool: DP}
route_groups: [{name: RG, members: [DROPS, LIVE]}]
route_lists: [{name: RL, members: [RG]}]
route_patterns:
  - {pattern: 3XXX, partition: PT, route_list: RL}
"#;
    // The dropping peer: accepts, reads until the INVITE has arrived, then closes.
    let listener = std::net::TcpListener::bind("127.37.1.11:5062").unwrap();
    let dropper = std::thread::spawn(move || {
        use std::io::Read;
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_file(dir.path(), "tcp.yaml", cluster);
    let srv = Server::start_in(dir, &["--config", cfg.to_str().unwrap()]);
    let uas = Uas::start("127.37.1.12", 5062);
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let (ok, tail) = sipp_call(srv.addr("sip_udp"), "127.37.1.10", 5061, "3000");
    assert!(ok, "call failed:\n{tail}\nucm logs:\n{}", srv.logs());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the call took {:?}",
        started.elapsed()
    );
    let seen = dropper.join().unwrap();
    assert!(
        seen.starts_with("INVITE sip:3000@127.37.1.11:5062"),
        "{seen}"
    );
    assert_eq!(uas.invite().0, "sip:3000@127.37.1.12:5062");
    let logs = srv.wait_for_log("connection lost with requests unanswered");
    assert!(logs.contains("127.37.1.11:5062"), "{logs}");
}

#[test]
fn r3_sipp_refused_tcp_trunk_fails_over_at_once() {
    if !sipp_available() {
        skip_or_fail("sipp is not installed (Debian package sip-tester)");
        return;
    }
    let cluster = r#"cluster: {id: tcp, name: Refused TCP trunk}
nodes: [{name: n1, address: 127.0.0.1}]
partitions: [{name: PT}]
calling_search_spaces: [{name: CSS, partitions: [PT]}]
device_pools: [{name: DP, node_group: [n1]}]
sip_trunks:
  - {name: SIPP_UAC, destinations: ["127.37.0.10:5061"], device_pool: DP, css: CSS}
  - {name: DEAD, destinations: ["127.37.0.11:5062"], transport: tcp, device_pool: DP}
  - {name: LIVE, destinations: ["127.37.0.12:5062"], device_pool: DP}
route_groups: [{name: RG, members: [DEAD, LIVE]}]
route_lists: [{name: RL, members: [RG]}]
route_patterns:
  - {pattern: 3XXX, partition: PT, route_list: RL}
"#;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_file(dir.path(), "tcp.yaml", cluster);
    let srv = Server::start_in(dir, &["--config", cfg.to_str().unwrap()]);
    let uas = Uas::start("127.37.0.12", 5062);
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let (ok, tail) = sipp_call(srv.addr("sip_udp"), "127.37.0.10", 5061, "3000");
    assert!(ok, "call failed:\n{tail}\nucm logs:\n{}", srv.logs());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the call took {:?}",
        started.elapsed()
    );
    assert_eq!(uas.invite().0, "sip:3000@127.37.0.12:5062");
    let logs = srv.wait_for_log("SIP connect failed");
    let line = logs
        .lines()
        .find(|l| l.contains("SIP connect failed"))
        .unwrap_or_default();
    assert!(line.contains("127.37.0.11:5062"), "{line}");
}
