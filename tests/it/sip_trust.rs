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

const DIGEST: &str = r#"cluster: {id: digest, name: Digest}
nodes: [{name: n1, address: 127.0.0.1}]
partitions: [{name: PT}]
device_pools: [{name: DP, node_group: [n1]}]
phone_security_profiles:
  - {name: Digest Profile, digest_authentication: true}
directory_numbers: [{pattern: "4000", partition: PT}]
devices:
  - {name: SEP000000004000, model: Cisco 8845, device_pool: DP, security_profile: Digest Profile, digest_user: dana, lines: [{dn: "4000", partition: PT}]}
end_users:
  - {userid: dana, last_name: Scully, digest_credentials: "trust-no1"}
"#;

fn md5_hex(s: &str) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(s.as_bytes()))
}

/// A REGISTER of line 4000 from `local` with `extra` headers.
fn register_4000(local: SocketAddr, sip: SocketAddr, cseq: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKd{cseq}x{r};rport\r\nFrom: <sip:4000@{sip}>;tag=r{cseq}\r\nTo: <sip:4000@{sip}>\r\nCall-ID: digest-replay-{local}\r\nCSeq: {cseq} REGISTER\r\nMax-Forwards: 70\r\nContact: <sip:4000@{local};transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-000000004000>\";expires=600\r\n{extra}Content-Length: 0\r\n\r\n",
        r = rand::random::<u32>()
    )
}

async fn exchange(sock: &tokio::net::UdpSocket, to: SocketAddr, msg: &str) -> String {
    sock.send_to(msg.as_bytes(), to).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

fn nonce_of(resp: &str) -> String {
    resp.split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a nonce")
        .to_string()
}

/// Issue 15: re-sending a captured Authorization header (same nonce, nc and cnonce) with
/// another Contact registered again within 300 s. Now it is a replay: 401 with a fresh nonce
/// and `stale=true`, while the phone's own next count goes through.
#[tokio::test]
async fn r15_a_replayed_digest_answer_is_challenged_again() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::common::write_file(dir.path(), "digest.yaml", DIGEST);
    let srv = Server::start_in(dir, &["--config", cfg.to_str().unwrap()]);
    let sip = srv.addr("sip_udp");
    let phone = ucm::net::bind_udp("127.0.0.43:0".parse().unwrap(), ucm::net::Dscp::CS3).unwrap();
    let local = phone.local_addr().unwrap();
    let challenge = exchange(&phone, sip, &register_4000(local, sip, 1, "")).await;
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let nonce = nonce_of(&challenge);
    let uri = format!("sip:{sip}");
    let authorization = |nc: &str, cnonce: &str| {
        let ha1 = md5_hex("dana:ccmsipline:trust-no1");
        let ha2 = md5_hex(&format!("REGISTER:{uri}"));
        let resp = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        format!("Authorization: Digest username=\"dana\", realm=\"ccmsipline\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\"\r\n")
    };
    let captured = authorization("00000001", "c0ffee");
    let ok = exchange(&phone, sip, &register_4000(local, sip, 2, &captured)).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    // The eavesdropper re-sends the header with its own Contact.
    let thief = ucm::net::bind_udp("127.0.0.67:0".parse().unwrap(), ucm::net::Dscp::CS3).unwrap();
    let thief_addr = thief.local_addr().unwrap();
    let replay = exchange(&thief, sip, &register_4000(thief_addr, sip, 3, &captured)).await;
    assert!(replay.starts_with("SIP/2.0 401"), "a replay: {replay}");
    assert!(replay.contains("stale=true"), "{replay}");
    assert_ne!(nonce_of(&replay), nonce, "a fresh nonce");
    srv.wait_for_log("nonce count used before");
    // The phone's own next count is fresh.
    let next = exchange(
        &phone,
        sip,
        &register_4000(local, sip, 4, &authorization("00000002", "c0ffef")),
    )
    .await;
    assert!(next.starts_with("SIP/2.0 200"), "{next}");
    assert!(
        next.contains(&format!("<sip:4000@{local};transport=udp>")),
        "{next}"
    );
}

/// Issue 15's reflection: 20,000 INVITEs from an unregistered source drew 220,000
/// retransmitted 403s. Now a stranger's INVITEs get one answer each, never retransmitted, at
/// most the budget per second per source; the rest get nothing.
#[tokio::test]
async fn r15_a_stranger_is_answered_once_and_within_its_budget() {
    let srv = Server::start(&[]);
    let sip = srv.addr("sip_udp");
    let sock = ucm::net::bind_udp("127.0.0.68:0".parse().unwrap(), ucm::net::Dscp::CS3).unwrap();
    let local = sock.local_addr().unwrap();
    const SENT: u32 = 50;
    for n in 0..SENT {
        let invite = format!(
            "INVITE sip:10001@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKrefl{n}\r\nFrom: <sip:666@{local}>;tag=r{n}\r\nTo: <sip:10001@{sip}>\r\nCall-ID: reflect-{n}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:666@{local}>\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(invite.as_bytes(), sip).await.unwrap();
    }
    // Count what comes back until 3 s pass without anything (Timer G would have fired by
    // then: T1 = 500 ms), at most 30 s in all.
    let mut statuses = Vec::new();
    let mut buf = vec![0u8; 65536];
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < until {
        match tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => statuses.push(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
            _ => break,
        }
    }
    let budget = ucm::sip::b2bua::STRANGER_ANSWERS_PER_WINDOW as usize;
    assert!(
        !statuses.is_empty() && statuses.len() <= budget,
        "{} answers to {SENT} INVITEs (budget {budget} a second): {statuses:?}",
        statuses.len()
    );
    assert!(
        statuses.iter().all(|s| s.starts_with("SIP/2.0 403")),
        "{statuses:?}"
    );
    srv.wait_for_log("request from a stranger refused");
}

/// A TCP connection to `to` from `ip`.
async fn tcp_from(ip: &str, to: SocketAddr) -> tokio::net::TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Waits (at most `within`) for the node to close `s`; true when it did.
async fn closed_by_node(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Sends `msg` over `s` and reads one answer's status line.
async fn tcp_exchange(s: &mut tokio::net::TcpStream, msg: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(msg.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

/// Issue 15: SIP over TCP had no idle timeout and no connection cap (5,000 connections each
/// holding 60 KB of an unfinished message, 19,980 idle ones took every descriptor). With the
/// caps set small: a stranger's connections beyond its source's cap are closed at once, a
/// message left unfinished is cut at the message timeout, an idle connection at the idle
/// timeout, while a phone registers over TCP and keeps its connection past the idle timeout.
#[tokio::test]
async fn r15_sip_tcp_strangers_are_cut_off_while_a_phone_registers() {
    use tokio::io::AsyncWriteExt;
    let srv = Server::start(&[
        "--sip-max-connections-per-source",
        "4",
        "--sip-message-timeout-secs",
        "1",
        "--sip-idle-timeout-secs",
        "2",
    ]);
    let tcp = srv.addr("sip_tcp");
    // The phone registers first over its own connection.
    let mut phone = tcp_from("127.0.0.44", tcp).await;
    let local = phone.local_addr().unwrap();
    let register = format!(
        "REGISTER sip:{tcp} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKtcpreg1\r\nFrom: <sip:10001@{tcp}>;tag=t1\r\nTo: <sip:10001@{tcp}>\r\nCall-ID: tcp-limits@{local}\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\nContact: <sip:10001@{local};transport=tcp>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-00036bc7b973>\";expires=600\r\nContent-Length: 0\r\n\r\n"
    );
    let ok = tcp_exchange(&mut phone, &register).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    // A stranger opens 12 connections, each with an unfinished message.
    let partial = format!(
        "REGISTER sip:{tcp} SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.69:5060;branch=z9hG4bKslow\r\nX-Padding: {}",
        "x".repeat(4000)
    );
    let mut stranger = Vec::new();
    for _ in 0..12 {
        let mut s = tcp_from("127.0.0.69", tcp).await;
        let _ = s.write_all(partial.as_bytes()).await;
        stranger.push(s);
    }
    let mut idle = tcp_from("127.0.0.70", tcp).await;
    // Every one of them is closed by the node: 8 at once (over the source's cap of 4), the
    // others at the message timeout; the idle one at the idle timeout.
    for (i, s) in stranger.iter_mut().enumerate() {
        assert!(
            closed_by_node(s, Duration::from_secs(15)).await,
            "stranger connection {i} still open"
        );
    }
    assert!(
        closed_by_node(&mut idle, Duration::from_secs(15)).await,
        "idle connection still open"
    );
    srv.wait_for_log("SIP connection refused: too many connections");
    srv.wait_for_log("SIP message not completed within");
    // The phone's connection outlived the idle timeout (its registration keeps it) and works.
    let options = format!(
        "OPTIONS sip:{tcp} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKtcpopt\r\nFrom: <sip:10001@{tcp}>;tag=t2\r\nTo: <sip:{tcp}>\r\nCall-ID: tcp-limits-opt@{local}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let ok = tcp_exchange(&mut phone, &options).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    // A new phone connection from another address is still taken after all that.
    let mut other = tcp_from("127.0.0.45", tcp).await;
    let ok = tcp_exchange(&mut other, &options).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
}

/// Issue 21, Broken 1: `ucm page --from SEP00036BC7B974` while `ucm phone sim` runs that
/// phone removed the sim's registration when it exited (calls to 10002 then got 480 while the
/// sim showed itself registered), and a second `ucm phone sim` for the device did the same.
/// Now both say the device is registered elsewhere and exit non-zero, and the sim keeps its
/// line, says so in /state, and rings.
#[tokio::test]
async fn r21_page_and_a_second_sim_say_the_device_is_registered_elsewhere() {
    use crate::common::ucm;
    let srv = Server::start(&[]);
    let sim = crate::phone::Sim::start(
        &srv,
        &["--device", "SEP00036BC7B974", "--first-ip", "127.0.8.10"],
    );
    let out = ucm()
        .args(["page", "--server"])
        .arg(srv.addr("http").to_string())
        .arg("--tftp")
        .arg(srv.addr("tftp_http").to_string())
        .args(["--group", "demo-all", "--tone", "--seconds", "1"])
        .args(["--from", "SEP00036BC7B974", "--bind", "127.0.8.20"])
        .output()
        .expect("run ucm page");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("SEP00036BC7B974 is registered elsewhere"),
        "{err}"
    );
    // A second sim of the device, on the same host even: exit 2, saying why.
    let out = ucm()
        .args(["phone", "sim", "--server"])
        .arg(srv.addr("http").to_string())
        .arg("--tftp")
        .arg(srv.addr("tftp_http").to_string())
        .args(["--device", "SEP00036BC7B974", "--first-ip", "127.0.8.10"])
        .output()
        .expect("run ucm phone sim");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("SEP00036BC7B974 is registered elsewhere"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // The first sim still holds its line, says so, and rings.
    let s = crate::phone::state(sim.http("SEP00036BC7B974"));
    assert_eq!(s["registered"], true, "{s}");
    assert_eq!(s["registrations"][0]["status"], "registered", "{s}");
    let a = TestPhone::register("127.0.8.30", "10001", "00036bc7b973", srv.addr("sip_udp")).await;
    a.send_text(&a.invite("10002", "r21-after-page")).await;
    a.expect_response(180).await;
}

/// Issue 21, Broken 1: README's paging example paged `--from` a device its own `ucm phone sim`
/// ran. The device it pages from is one the simulator leaves out.
#[test]
fn r21_readme_pages_from_a_device_the_simulator_leaves_out() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let flag = |line: &str, name: &str| -> Vec<String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        words
            .windows(2)
            .filter(|w| w[0] == name)
            .map(|w| w[1].to_string())
            .collect()
    };
    let mut checked = 0;
    let lines: Vec<&str> = readme.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(from) = flag(line, "--from").into_iter().next() else {
            continue;
        };
        if !line.trim_start().starts_with("ucm page ") {
            continue;
        }
        // The simulator started in the same example, if any, must leave that device out.
        let sim = lines[..i]
            .iter()
            .rev()
            .take_while(|l| !l.starts_with("```"))
            .find(|l| l.trim_start().starts_with("ucm phone sim "));
        if let Some(sim) = sim {
            let devices = flag(sim, "--device");
            let except = flag(sim, "--except");
            assert!(
                (!devices.is_empty() && !devices.contains(&from)) || except.contains(&from),
                "README runs {from} in `{sim}` and pages from it in `{line}`"
            );
            checked += 1;
        }
    }
    assert!(checked >= 1, "README's paging example was not found");
}
