//! SIPp as a real peer (issue 3): calls from SIPp's uac through ucm to SIPp's uas, over SIP
//! trunks, with SIPp's built-in scenarios.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{skip_or_fail, write_file, Server};

fn sipp_available() -> bool {
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
}
