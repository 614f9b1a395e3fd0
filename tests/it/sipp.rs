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
pub struct Capture(std::process::Child);

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
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            let _ = child.kill();
            skip_or_fail("tcpdump did not start capturing on lo (needs root)");
            return None;
        }
        Some(Capture(child))
    }

    pub fn stop(mut self) {
        // Let the last packets reach tcpdump before it is told to finish.
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGINT);
        }
        let _ = self.0.wait();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
