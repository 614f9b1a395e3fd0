//! What a stranger can do to a node over SIP (issue 15: registration, bounded work) and
//! what the CLI's own phones say when their device is taken (issue 21, Broken 1).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::callcontrol::TestPhone;
use crate::common::{skip_or_fail, Server};
use crate::sipp::sipp_available;

/// A free UDP port on `ip` (SIPp binds it right after).
fn free_udp_port(ip: &str) -> u16 {
    std::net::UdpSocket::bind(format!("{ip}:0"))
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Runs a SIPp scenario once from `ip` against `target`; its exit status and what it printed.
fn sipp(
    scenario: &str,
    ip: &str,
    target: SocketAddr,
    dir: &Path,
    extra: &[&str],
) -> (bool, String) {
    let file = dir.join("scenario.xml");
    std::fs::write(&file, scenario).unwrap();
    let port = free_udp_port(ip);
    let out = Command::new("sipp")
        .arg("-sf")
        .arg(&file)
        .args(["-i", ip, "-p", &port.to_string(), "-m", "1", "-nostdin"])
        .args(["-timeout", "20s", "-timeout_error"])
        .args(extra)
        .arg(target.to_string())
        .current_dir(dir)
        .output()
        .expect("run sipp");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A REGISTER for line 10001 naming the phone SEP00036BC7B973 in its +sip.instance, as the
/// phone itself sends it, with `expires`; SIPp must get `status` back.
fn register_as_phone(expires: u32, status: u16) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="REGISTER as another phone">
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:10001@[remote_ip]>;tag=[call_number]
      To: <sip:10001@[remote_ip]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Max-Forwards: 70
      User-Agent: Cisco-CP8845/14.2.1
      Contact: <sip:10001@[local_ip]:[local_port];transport=udp>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-00036bc7b973>";expires={expires}
      Expires: {expires}
      Content-Length: 0

    ]]>
  </send>
  <recv response="{status}" />
</scenario>
"#
    )
}

/// Issue 15's demo: with digest off, SIPp from another address registering as a phone took
/// its calls, and unregistering as it removed its line. Both are refused now, logged, and the
/// phone keeps ringing.
#[tokio::test]
async fn r15_sipp_cannot_take_or_drop_a_registered_phone() {
    if !sipp_available() {
        skip_or_fail("sipp is not installed (Debian package sip-tester)");
        return;
    }
    let srv = Server::start(&[]);
    srv.wait_for_log("devices register without digest authentication");
    let sip = srv.addr("sip_udp");
    let a = TestPhone::register("127.0.0.41", "10001", "00036bc7b973", sip).await;
    let dir = tempfile::tempdir().unwrap();
    for expires in [3600, 0] {
        let (ok, out) = sipp(
            &register_as_phone(expires, 403),
            "127.0.0.66",
            sip,
            dir.path(),
            &[],
        );
        assert!(ok, "Expires {expires}: SIPp expected 403:\n{out}");
    }
    srv.wait_for_log("the device is registered from another address");
    // The phone still gets its calls.
    let b = TestPhone::register("127.0.0.42", "10002", "00036bc7b974", sip).await;
    b.send_text(&b.invite("10001", "call-after-hijack")).await;
    let inv = a.expect_request("INVITE").await;
    assert!(inv.body.len() > 10);
}
