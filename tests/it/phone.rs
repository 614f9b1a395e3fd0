//! Simulated phones (`ucm phone sim`) against a running node: registration, calls with audio
//! both ways, pushes to /CGI/Execute, multicast receive, configuration resync.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use ucm::wire::codec::{base64_encode, percent_encode};

use crate::common::{http_get, spawn_ready, split_http, ucm, Server};

/// A running `ucm phone sim`, killed on drop.
pub struct Sim {
    child: Child,
    ready: Value,
    stderr: mpsc::Receiver<String>,
}

impl Sim {
    pub fn start(srv: &Server, extra: &[&str]) -> Sim {
        let mut cmd = ucm();
        cmd.args(["phone", "sim", "--server"])
            .arg(srv.addr("http").to_string())
            .arg("--tftp")
            .arg(srv.addr("tftp_http").to_string())
            .args(extra)
            .env("UCM_LOG", "info");
        if !extra.contains(&"--http-port") {
            // Tests run side by side: any free port rather than the phone's 80.
            cmd.args(["--http-port", "0"]);
        }
        let (child, ready, stderr) = spawn_ready(cmd, "ucm phone sim", Duration::from_secs(30));
        Sim {
            child,
            ready,
            stderr,
        }
    }

    fn phones(&self) -> Vec<Value> {
        self.ready["phones"].as_array().cloned().unwrap_or_default()
    }

    pub fn http(&self, device: &str) -> SocketAddr {
        self.phones()
            .iter()
            .find(|p| p["device"] == device)
            .and_then(|p| p["http"].as_str())
            .unwrap_or_else(|| panic!("{device} is not in {}", self.ready))
            .parse()
            .expect("http address")
    }

    pub fn logs(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }

    /// SIGTERM, then the exit status (bounded wait).
    fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill with a pid we own and a valid signal number.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        for _ in 0..200 {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("ucm phone sim did not exit within 10 s of SIGTERM");
    }
}

impl Drop for Sim {
    /// Stops the phones as a user does (SIGTERM: their lines are unregistered, so the node
    /// lets the devices register again from elsewhere at once), killing them after 5 s.
    fn drop(&mut self) {
        // SAFETY: kill with a pid we own and a valid signal number.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn state(addr: SocketAddr) -> Value {
    let (status, _, body) = http_get(addr, "/state");
    assert_eq!(status, 200, "GET /state on {addr}");
    serde_json::from_slice(&body).expect("state is JSON")
}

/// Pushes a CiscoIPPhoneExecute to `/CGI/Execute` the way servers do (form field XML, HTTP
/// Basic credentials); returns the HTTP status and body.
pub fn push(addr: SocketAddr, creds: Option<(&str, &str)>, urls: &[&str]) -> (u16, String) {
    let items: String = urls
        .iter()
        .map(|u| format!("<ExecuteItem Priority=\"0\" URL=\"{u}\"/>"))
        .collect();
    let xml = format!("<CiscoIPPhoneExecute>{items}</CiscoIPPhoneExecute>");
    let body = format!("XML={}", percent_encode(&xml));
    let auth = creds
        .map(|(u, p)| {
            format!(
                "Authorization: Basic {}\r\n",
                base64_encode(format!("{u}:{p}").as_bytes())
            )
        })
        .unwrap_or_default();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "POST /CGI/Execute HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let (status, head, body) = split_http(&raw);
    assert!(
        head.to_ascii_lowercase().contains("content-type: text/xml"),
        "{head}"
    );
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Polls `addr`'s state until `ok` holds; panics with the last state after `secs`.
pub fn wait_state(addr: SocketAddr, secs: u64, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = state(addr);
        if ok(&s) {
            return s;
        }
        if Instant::now() > deadline {
            panic!("{what}: not reached within {secs} s; state:\n{s:#}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn calls(s: &Value) -> Vec<Value> {
    s["calls"].as_array().cloned().unwrap_or_default()
}

#[test]
fn r3_phone_sim_count_50_registers_every_phone() {
    let srv = Server::start(&[]);
    let mut sim = Sim::start(&srv, &["--count", "50", "--first-ip", "127.0.1.10"]);
    let phones = sim.phones();
    assert_eq!(phones.len(), 50, "{}", sim.ready);
    let mut ips: Vec<&str> = phones.iter().filter_map(|p| p["ip"].as_str()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 50, "every phone has its own address");
    assert_eq!(phones[0]["device"], "SEP00036BC7B973");
    assert_eq!(phones[0]["ip"], "127.0.1.10");
    for p in &phones {
        let addr: SocketAddr = p["http"].as_str().unwrap().parse().unwrap();
        let s = state(addr);
        assert_eq!(s["device"], p["device"]);
        assert_eq!(s["ip"], p["ip"]);
        let regs = s["registrations"].as_array().expect("registrations");
        assert!(!regs.is_empty(), "{s:#}");
        for r in regs {
            assert_eq!(r["registered"], true, "{}: {r}", p["device"]);
            assert_eq!(r["expires"], 3600, "{r}");
        }
        assert!(p["lines"]
            .as_array()
            .is_some_and(|l| l.iter().any(|dn| *dn == regs[0]["line"])));
    }
    assert_eq!(sim.terminate().code(), Some(0), "{}", sim.logs());
}

#[test]
fn r3_phone_call_between_two_sims_carries_audio_both_ways() {
    let srv = Server::start(&[]);
    let caller = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.2.10"],
    );
    let callee = Sim::start(
        &srv,
        &[
            "--device",
            "SEP00036BC7B974",
            "--first-ip",
            "127.0.2.20",
            "--auto-answer",
            "--answer-delay-ms",
            "200",
        ],
    );
    let a = caller.http("SEP00036BC7B973");
    let b = callee.http("SEP00036BC7B974");
    // GET /state/calls: nothing yet; a long poll with nothing happening answers at its timeout
    // with the same version.
    let calls_of = |addr, path: &str| -> Value {
        let (st, _, body) = http_get(addr, path);
        assert_eq!(st, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    };
    let v0 = calls_of(b, "/state/calls");
    assert_eq!(v0["calls"], serde_json::json!([]), "{v0}");
    let version = v0["version"].as_u64().unwrap();
    let t = Instant::now();
    let same = calls_of(b, &format!("/state/calls?after={version}&timeout_ms=300"));
    assert!(t.elapsed() >= Duration::from_millis(250), "{same}");
    assert_eq!(same["version"], version, "{same}");
    // A long poll started now ends when the call reaches the callee, well before its timeout.
    let waiting = std::thread::spawn(move || {
        let t = Instant::now();
        let (_, _, body) = http_get(b, &format!("/state/calls?after={version}&timeout_ms=20000"));
        (t.elapsed(), body)
    });
    let (status, body) = push(a, Some(("jsmith", "cisco")), &["Dial:10002"]);
    assert_eq!(status, 200);
    let (took, woke) = waiting.join().unwrap();
    let woke: Value = serde_json::from_slice(&woke).unwrap();
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(woke["version"].as_u64().unwrap() > version, "{woke}");
    assert_eq!(woke["calls"][0]["direction"], "inbound", "{woke}");
    assert!(
        body.contains(r#"<ResponseItem Status="0" Data="Success" URL="Dial:10002"/>"#),
        "{body}"
    );
    let talking = |s: &Value| {
        calls(s).iter().any(|c| {
            c["state"] == "connected"
                && c["codec"] == "PCMU"
                && c["rtp_rx_packets"].as_u64().unwrap_or(0) > 10
                && c["rtp_tx_packets"].as_u64().unwrap_or(0) > 10
        })
    };
    let sa = wait_state(a, 10, "caller hears the callee", talking);
    let sb = wait_state(b, 10, "callee hears the caller", talking);
    let ca = &calls(&sa)[0];
    let cb = &calls(&sb)[0];
    assert_eq!(ca["direction"], "outbound");
    assert_eq!(ca["remote_number"], "10002");
    assert_eq!(cb["direction"], "inbound");
    assert_eq!(cb["remote_number"], "10001");
    for c in [ca, cb] {
        let rx = &c["rtp"]["rx"];
        assert_eq!(rx["payload_types"][0]["payload_type"], 0, "PCMU: {c:#}");
        assert_eq!(
            c["rtp"]["dscp_counts"]["46"], rx["packets"],
            "RTP marked EF: {c:#}"
        );
        assert_eq!(rx["ptime_ms"], 20.0, "{c:#}");
    }
    // Each side sends to the other's RTP address.
    assert_eq!(ca["remote_rtp"], cb["local_rtp"]);
    assert_eq!(cb["remote_rtp"], ca["local_rtp"]);
    let pushed = &state(a)["last_pushed"];
    assert_eq!(pushed["user"], "jsmith");
    assert_eq!(pushed["items"][0]["status"], 0);
    // Hang up the way a server does: Key:Onhook.
    let (_, body) = push(a, Some(("jsmith", "cisco")), &["Key:Onhook"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    let ended = |s: &Value| calls(s).iter().all(|c| c["state"] == "ended");
    let sa = wait_state(a, 5, "caller hung up", ended);
    let sb = wait_state(b, 5, "callee sees the hangup", ended);
    assert_eq!(calls(&sa)[0]["end_reason"], "local hangup");
    assert_eq!(calls(&sb)[0]["end_reason"], "remote hangup");
    assert!(calls(&sb)[0]["rtp"]["rx"]["packets"].as_u64().unwrap() > 10);
    // Ended calls are kept in the state, but not among the live ones.
    assert_eq!(
        calls_of(b, "/state/calls")["calls"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        calls_of(b, "/state/calls?live=true")["calls"],
        serde_json::json!([])
    );
}

#[test]
fn r3_phone_push_with_a_wrong_password_runs_nothing() {
    let srv = Server::start(&[]);
    let sim = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.3.10"],
    );
    let a = sim.http("SEP00036BC7B973");
    let (status, body) = push(a, Some(("jsmith", "wrong")), &["Dial:10002"]);
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"<CiscoIPPhoneError Number="4"/>"#),
        "{body}"
    );
    let (_, body) = push(a, None, &["Dial:10002"]);
    assert!(
        body.contains(r#"<CiscoIPPhoneError Number="4"/>"#),
        "{body}"
    );
    // A user without an association to this phone is refused too.
    let (_, body) = push(a, Some(("sadams", "cisco")), &["Dial:10002"]);
    assert!(
        body.contains(r#"<CiscoIPPhoneError Number="4"/>"#),
        "{body}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let s = state(a);
    assert!(calls(&s).is_empty(), "nothing ran: {s:#}");
    assert_eq!(s["auth_failures"], 3);
    assert_eq!(s["last_pushed"]["authorized"], false);
    assert_eq!(s["last_pushed"]["error"], 4);
    assert!(
        s["events"].as_array().is_some_and(|e| e.is_empty()),
        "{s:#}"
    );
    // The right credentials with a broken object: Number="1", still nothing runs.
    let (_, body) = push(
        a,
        Some(("jsmith", "cisco")),
        &["Key:Soft1", "Key:Soft2", "Key:Soft3", "Key:Soft4"],
    );
    assert!(
        body.contains(r#"<CiscoIPPhoneError Number="1"/>"#),
        "{body}"
    );
    assert!(state(a)["events"].as_array().is_some_and(|e| e.is_empty()));
}

#[test]
fn r3_phone_counts_multicast_rtp_with_dscp() {
    let srv = Server::start(&[]);
    let sim = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.4.10"],
    );
    let a = sim.http("SEP00036BC7B973");
    let (_, body) = push(
        a,
        Some(("jsmith", "cisco")),
        &["RTPMRx:239.255.91.7:20480:80", "RTPMRx:239.255.91.8:20482"],
    );
    assert!(
        body.contains(
            r#"<ResponseItem Status="0" Data="Success" URL="RTPMRx:239.255.91.7:20480:80"/>"#
        ),
        "{body}"
    );
    assert!(
        body.contains(r#"Status="1" Data="errorNo=1" URL="RTPMRx:239.255.91.8:20482""#),
        "a second receive stream is refused: {body}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tx = ucm::net::multicast_sender(
            "127.0.0.1:0".parse().unwrap(),
            ucm::net::Dscp::EF,
            1,
            "127.0.0.1".parse().unwrap(),
            true,
        )
        .unwrap();
        let mut s = ucm::media::rtp::RtpSender::new(0x1234, 0, 100, 0, 160);
        for i in 0..40 {
            let pkt = s.next_packet(&[0xFF; 160]);
            if i == 20 {
                continue; // one packet lost
            }
            tx.send_to(&pkt, "239.255.91.7:20480").await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let s = wait_state(a, 5, "39 packets counted", |s| {
        s["streams"][0]["packets"].as_u64() == Some(39)
    });
    let st = &s["streams"][0];
    assert_eq!(st["kind"], "mrx");
    assert_eq!(st["active"], true);
    assert_eq!(st["volume"], 80);
    assert_eq!(st["address"], "239.255.91.7:20480");
    assert_eq!(st["dscp_counts"]["46"], 39, "{st:#}");
    assert_eq!(st["rx"]["lost"], 1, "{st:#}");
    assert_eq!(st["rx"]["gaps"].as_array().map(Vec::len), Some(1), "{st:#}");
    let (_, body) = push(a, Some(("jsmith", "cisco")), &["RTPRx:Stop"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    let s = state(a);
    assert_eq!(s["streams"][0]["active"], false);
    assert_eq!(s["streams"][0]["stop_reason"], "RTPRx:Stop");
    assert_eq!(s["streams"][0]["packets"], 39, "final counts are kept");
}

#[test]
fn r3_phone_resyncs_on_check_sync_and_reports_unknown_devices() {
    let srv = Server::start(&[]);
    let sim = Sim::start(
        &srv,
        &["--device", "SEP000000001001", "--first-ip", "127.0.6.10"],
    );
    let p = &sim.phones()[0];
    let a: SocketAddr = p["http"].as_str().unwrap().parse().unwrap();
    let sip: SocketAddr = p["sip"].as_str().unwrap().parse().unwrap();
    assert_eq!(state(a)["config_version"], 1);
    let sock = std::net::UdpSocket::bind("127.0.6.99:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let l = sock.local_addr().unwrap();
    let notify = format!(
        "NOTIFY sip:20001@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bKcheck1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:{l}>;tag=cs\r\nTo: <sip:20001@{sip}>\r\nCall-ID: check-sync-1@{l}\r\nCSeq: 101 NOTIFY\r\nEvent: check-sync\r\nSubscription-State: terminated\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(notify.as_bytes(), sip).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer to NOTIFY");
    let reply = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(reply.starts_with("SIP/2.0 200 OK\r\n"), "{reply}");
    let s = wait_state(a, 5, "configuration fetched again", |s| {
        s["config_version"] == 2 && s["registered"] == true
    });
    assert_eq!(s["last_notify"], "check-sync");
    // A phone the cluster does not know: exit 2, saying why.
    let out = ucm()
        .args(["phone", "sim", "--server"])
        .arg(srv.addr("http").to_string())
        .arg("--tftp")
        .arg(srv.addr("tftp_http").to_string())
        .args(["--device", "SEP0000DEADBEEF", "--first-ip", "127.0.6.20"])
        .output()
        .expect("run ucm phone sim");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SEP0000DEADBEEF") && err.contains("404"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn r3_phone_answers_and_hangs_up_on_pushed_keys_and_busy_phones_refuse() {
    let srv = Server::start(&[]);
    let caller = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.7.10"],
    );
    let callee = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B975", "--first-ip", "127.0.7.20"],
    );
    let busy = Sim::start(
        &srv,
        &[
            "--device",
            "SEP00036BC7B976",
            "--first-ip",
            "127.0.7.30",
            "--busy",
        ],
    );
    let a = caller.http("SEP00036BC7B973");
    let c = callee.http("SEP00036BC7B975");
    push(a, Some(("jsmith", "cisco")), &["Dial:23923"]);
    wait_state(c, 5, "callee rings", |s| {
        calls(s).first().is_some_and(|c| c["state"] == "ringing")
    });
    wait_state(a, 5, "caller hears ringback", |s| {
        calls(s).first().is_some_and(|c| c["state"] == "ringback")
    });
    // sadams answers her phone by pushing the off-hook key.
    let (_, body) = push(c, Some(("sadams", "cisco")), &["Key:Offhook"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    let talking = |s: &Value| {
        calls(s)
            .first()
            .is_some_and(|c| c["state"] == "connected" && c["rtp_rx_packets"].as_u64() > Some(5))
    };
    wait_state(a, 5, "caller connected", talking);
    wait_state(c, 5, "callee connected", talking);
    push(c, Some(("sadams", "cisco")), &["Key:Onhook"]);
    let sa = wait_state(a, 5, "caller sees the hangup", |s| {
        calls(s).first().is_some_and(|c| c["state"] == "ended")
    });
    assert_eq!(calls(&sa)[0]["end_reason"], "remote hangup");
    // A busy phone refuses with 486.
    push(a, Some(("jsmith", "cisco")), &["Dial:30271"]);
    let sa = wait_state(a, 5, "busy call ends", |s| {
        calls(s).len() == 2 && calls(s)[1]["state"] == "ended"
    });
    assert_eq!(calls(&sa)[1]["final_status"], 486, "{sa:#}");
    let sb = state(busy.http("SEP00036BC7B976"));
    assert!(calls(&sb).is_empty(), "{sb:#}");
}

/// A ringing call can be declined (`Key:Decline`, the Decline softkey): the callee answers 486,
/// the caller hears busy, and a connected call elsewhere on the phone would be left alone.
#[test]
fn r21_a_ringing_call_is_declined() {
    let srv = Server::start(&[]);
    let caller = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.2.30"],
    );
    let callee = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B974", "--first-ip", "127.0.2.40"],
    );
    let a = caller.http("SEP00036BC7B973");
    let b = callee.http("SEP00036BC7B974");
    // Nothing rings yet: Decline has nothing to act on, and says so.
    let (_, body) = push(b, Some(("paging", "paging")), &["Key:Decline"]);
    assert!(
        body.contains(r#"Status="0""#),
        "a key press succeeds: {body}"
    );
    let (_, body) = push(a, Some(("jsmith", "cisco")), &["Dial:10002"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    wait_state(b, 10, "the callee rings", |s| {
        calls(s).iter().any(|c| c["state"] == "ringing")
    });
    let (_, body) = push(b, Some(("paging", "paging")), &["Key:Decline"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    let sb = wait_state(b, 5, "the callee declined", |s| {
        calls(s).iter().all(|c| c["state"] == "ended")
    });
    assert_eq!(calls(&sb)[0]["end_reason"], "declined", "{sb:#}");
    let sa = wait_state(a, 5, "the caller's call ended", |s| {
        calls(s).iter().all(|c| c["state"] == "ended")
    });
    let reason = calls(&sa)[0]["end_reason"].to_string();
    assert!(reason.contains("486"), "{sa:#}");
}

/// The seed's phone-initiated pull: after URL Idle Time the phone GETs URL Idle and shows
/// what comes back, once per idle spell; the next activity starts a new spell.
#[test]
fn r21_the_phone_fetches_url_idle_after_url_idle_time() {
    // URL Idle is a web server of the test's own that answers a CiscoIPPhoneText and counts.
    let listener = std::net::TcpListener::bind("127.0.23.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let idle_addr = listener.local_addr().unwrap();
    let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let web = {
        let (requests, done) = (requests.clone(), done.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !done.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                s.set_nonblocking(false).ok();
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                requests
                    .lock()
                    .unwrap()
                    .push(head.lines().next().unwrap_or_default().to_string());
                let body = "<CiscoIPPhoneText><Title>Idle</Title><Text>Welcome to the lobby</Text></CiscoIPPhoneText>";
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        })
    };
    let text = ucm::config::DEMO_YAML.replace(
        "  url_idle_time: 0\n",
        &format!("  url_idle_time: 1\n  url_idle: http://{idle_addr}/idle.xml?name=#DEVICENAME#\n"),
    );
    assert!(
        text.contains("url_idle:"),
        "the demo changed: update this test"
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::common::write_file(dir.path(), "idle.yaml", &text);
    let srv = Server::start_in(dir, &["--config", cfg.to_str().unwrap()]);
    let sim = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.23.10"],
    );
    let a = sim.http("SEP00036BC7B973");
    let s = wait_state(a, 15, "URL Idle shown", |s| s["screen"]["source"] == "idle");
    assert_eq!(s["screen"]["title"], "Idle", "{s:#}");
    assert_eq!(s["screen"]["text"], "Welcome to the lobby", "{s:#}");
    assert_eq!(s["config"]["idle_timeout"], 1, "{s:#}");
    // Once per idle spell: still idle, no second fetch.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(state(a)["idle_fetches"], 1, "{:#}", state(a));
    // Pressing Services is activity: a second spell, a second fetch, with the device named.
    let (st, body) = push(a, Some(("jsmith", "cisco")), &["Key:Services"]);
    assert_eq!(st, 200, "{body}");
    wait_state(a, 15, "URL Idle fetched again", |s| s["idle_fetches"] == 2);
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    web.join().unwrap();
    let seen = requests.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter()
            .all(|r| r == "GET /idle.xml?name=SEP00036BC7B973 HTTP/1.1"),
        "{seen:?}"
    );
}
