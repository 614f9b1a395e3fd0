//! Cisco Unified Attendant Console (issue 19), first slice: the `attendant` section and its
//! checks, and the seed's steps 1 to 6 over the wire: a call into the demo's Queue DDI (5000)
//! is redirected at once to a CT gateway device, waits there unanswered past the route point
//! timeout, is presented to the queue's attendants, and moves to the answering attendant's
//! phone, which connects by itself; the database decides between attendants racing for it.

// The async tests hold `common::beside_captures()` for their whole run on purpose (each runs
// on its own thread's runtime; the lock only keeps conformance captures apart).
#![allow(clippy::await_holding_lock)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use ucm::wire::codec::base64_encode;

use crate::common::{split_http, ucm, write_file, PgDb, Server};
use crate::phone::{calls, push, state, wait_state, Sim};

/// One request to the node's HTTP API: status and body.
fn api(addr: SocketAddr, method: &str, path: &str, creds: Option<(&str, &str)>) -> (u16, String) {
    let auth = creds
        .map(|(u, p)| {
            format!(
                "Authorization: Basic {}\r\n",
                base64_encode(format!("{u}:{p}").as_bytes())
            )
        })
        .unwrap_or_default();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let (status, _, body) = split_http(&raw);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The calls waiting in Reception as `who` sees them (retrying while the node is busy checking
/// credentials).
fn reception(http: SocketAddr, who: (&str, &str)) -> Vec<Value> {
    for _ in 0..50 {
        let (status, body) = api(http, "GET", "/ucm/attendant/queues", Some(who));
        if status == 503 || status == 429 {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let q = v["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["queue"] == "Reception")
            .cloned()
            .unwrap_or_else(|| panic!("no Reception queue: {v}"));
        return q["calls"].as_array().cloned().unwrap_or_default();
    }
    panic!("the node stayed busy");
}

fn wait_waiting(http: SocketAddr, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let c = reception(http, ("attendant1", "cisco"));
        if c.len() == n {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{n} calls not waiting in Reception: {c:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn connected(s: &Value) -> Vec<Value> {
    calls(s)
        .into_iter()
        .filter(|c| c["state"] == "connected")
        .collect()
}

/// Steps 1-6 with the demo: jsmith (10001) and sadams (23923) dial 5000; each call is
/// redirected at once to its own CT gateway device (5901, 5902), unanswered (the callers are
/// not connected), and is shown to both attendants in queue order with its caller and waiting
/// time, still waiting after the route point timeout (5 s). Reception One answers the first:
/// it rings on 10500 and connects by itself (the attendant's simulated phone runs without
/// --auto-answer: the INVITE asked for it); Reception Two then gets the second. An answer
/// for a call already taken, a stranger, a non-attendant and a bad call id are refused. The
/// cluster status (`ucm status`) lists the waiting calls.
#[test]
fn r19_a_queue_ddi_call_waits_on_a_ct_gateway_device_and_connects_at_the_answering_attendant() {
    let _lo = crate::common::beside_captures();
    let srv = Server::start(&[]);
    let http = srv.addr("http");
    let callers = Sim::start(
        &srv,
        &[
            "--device",
            "SEP00036BC7B973",
            "--device",
            "SEP00036BC7B975",
            "--first-ip",
            "127.0.19.10",
        ],
    );
    let attendants = Sim::start(
        &srv,
        &[
            "--device",
            "SEP00036BC7A001",
            "--device",
            "SEP00036BC7A002",
            "--first-ip",
            "127.0.19.20",
        ],
    );
    let a = callers.http("SEP00036BC7B973");
    let b = callers.http("SEP00036BC7B975");
    let r1 = attendants.http("SEP00036BC7A001");
    let r2 = attendants.http("SEP00036BC7A002");

    // Strangers first.
    let (status, body) = api(http, "GET", "/ucm/attendant/queues", None);
    assert_eq!(status, 401, "{body}");
    let (status, body) = api(
        http,
        "GET",
        "/ucm/attendant/queues",
        Some(("jsmith", "cisco")),
    );
    assert_eq!(status, 403, "{body}");
    assert!(wait_waiting(http, 0).is_empty());

    let (status, body) = push(a, Some(("jsmith", "cisco")), &["Dial:5000"]);
    assert!(status == 200 && body.contains(r#"Status="0""#), "{body}");
    let first = wait_waiting(http, 1);
    let (status, body) = push(b, Some(("sadams", "cisco")), &["Dial:5000"]);
    assert!(status == 200 && body.contains(r#"Status="0""#), "{body}");
    let both = wait_waiting(http, 2);
    assert_eq!(both[0]["call"], first[0]["call"], "queue order: {both:?}");
    assert_eq!(
        (&both[0]["position"], &both[0]["calling"]),
        (&Value::from(1), &Value::from("10001")),
        "{both:?}"
    );
    assert_eq!(
        (&both[1]["position"], &both[1]["calling"]),
        (&Value::from(2), &Value::from("23923")),
        "{both:?}"
    );
    let devices: Vec<&str> = both.iter().map(|c| c["device"].as_str().unwrap()).collect();
    assert_eq!(devices, ["AC_CTGW_1", "AC_CTGW_2"], "{both:?}");
    let logs = srv.wait_for_log("redirected to a CT gateway device");
    assert!(logs.contains("dn=5901"), "{logs}");
    // Reception Two sees the same queue.
    assert_eq!(reception(http, ("attendant2", "cisco")).len(), 2);
    // The cluster status lists the waiting calls (`ucm status`, an application user).
    let out = ucm()
        .args(["status", "--json", "--user", "paging", "--server"])
        .arg(format!("http://{http}"))
        .env("UCM_PASSWORD", "paging")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = st["attendant_queues"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{st:#}");
    assert_eq!(
        (&rows[0]["queue"], &rows[0]["calling"]),
        (&Value::from("Reception"), &Value::from("10001")),
        "{st:#}"
    );

    // Past the route point timeout (5 s) the calls still wait, unanswered, no media.
    std::thread::sleep(Duration::from_secs(6));
    let still = wait_waiting(http, 2);
    assert!(
        still[0]["waiting_seconds"].as_i64().unwrap() >= 5,
        "{still:?}"
    );
    for p in [a, b] {
        let s = state(p);
        assert!(connected(&s).is_empty(), "a caller was connected: {s:#}");
        assert!(
            calls(&s).iter().any(|c| c["state"] != "ended"),
            "a caller's call ended: {s:#}"
        );
    }
    assert!(calls(&state(r1)).is_empty() && calls(&state(r2)).is_empty());

    // Reception One answers the first call: it connects on 10500 by itself.
    let call1 = still[0]["call"].as_u64().unwrap();
    let call2 = still[1]["call"].as_u64().unwrap();
    let (status, body) = api(
        http,
        "POST",
        &format!("/ucm/attendant/calls/{call1}/answer"),
        Some(("attendant1", "cisco")),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""line":"10500""#) && body.contains(r#""connected":true"#),
        "{body}"
    );
    let s = wait_state(r1, 15, "Reception One's phone connected", |s| {
        connected(s).len() == 1
    });
    let c = &connected(&s)[0];
    assert_eq!(
        (&c["line"], &c["remote_number"]),
        (&Value::from("10500"), &Value::from("10001")),
        "{c:#}"
    );
    wait_state(a, 15, "jsmith talks to Reception One", |s| {
        connected(s).len() == 1
    });
    // Taken: nobody answers it again.
    let (status, body) = api(
        http,
        "POST",
        &format!("/ucm/attendant/calls/{call1}/answer"),
        Some(("attendant2", "cisco")),
    );
    assert_eq!(status, 404, "{body}");
    for (path, who, want) in [
        (format!("/ucm/attendant/calls/{call2}/answer"), None, 401),
        (
            format!("/ucm/attendant/calls/{call2}/answer"),
            Some(("jsmith", "cisco")),
            403,
        ),
        (
            "/ucm/attendant/calls/x1/answer".to_string(),
            Some(("attendant2", "cisco")),
            400,
        ),
    ] {
        let (status, body) = api(http, "POST", &path, who);
        assert_eq!(status, want, "{path} as {who:?}: {body}");
    }
    let left = wait_waiting(http, 1);
    assert_eq!(left[0]["position"], 1, "{left:?}");
    let (status, body) = api(
        http,
        "POST",
        &format!("/ucm/attendant/calls/{call2}/answer"),
        Some(("attendant2", "cisco")),
    );
    assert_eq!(status, 200, "{body}");
    wait_state(r2, 15, "Reception Two's phone connected", |s| {
        connected(s).len() == 1
    });
    wait_state(b, 15, "sadams talks to Reception Two", |s| {
        connected(s).len() == 1
    });
    assert!(wait_waiting(http, 0).is_empty());
}

/// A caller who hangs up while waiting leaves the queue, and frees the CT gateway device:
/// with both devices holding calls a third call is refused (486), and after one caller hangs
/// up the next call gets the freed device.
#[test]
fn r19_ct_gateway_devices_hold_one_call_each_and_are_freed_when_the_caller_hangs_up() {
    let _lo = crate::common::beside_captures();
    let srv = Server::start(&[]);
    let http = srv.addr("http");
    let callers = Sim::start(
        &srv,
        &[
            "--device",
            "SEP00036BC7B973",
            "--device",
            "SEP00036BC7B975",
            "--device",
            "SEP00036BC7B976",
            "--first-ip",
            "127.0.19.30",
        ],
    );
    let a = callers.http("SEP00036BC7B973");
    let b = callers.http("SEP00036BC7B975");
    let c = callers.http("SEP00036BC7B976");
    let jsmith = Some(("jsmith", "cisco"));
    let ssmith = Some(("ssmith", "cisco"));
    for (p, who) in [(a, jsmith), (b, Some(("sadams", "cisco")))] {
        let (status, body) = push(p, who, &["Dial:5000"]);
        assert!(status == 200 && body.contains(r#"Status="0""#), "{body}");
    }
    wait_waiting(http, 2);
    let (_, body) = push(c, ssmith, &["Dial:5000"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    let s = wait_state(c, 15, "the third call is refused", |s| {
        calls(s).iter().any(|c| c["state"] == "ended")
    });
    let logs = srv.wait_for_log("every CT gateway device holds a call");
    assert!(logs.contains("queue=Reception"), "{logs}\n{s:#}");
    assert_eq!(wait_waiting(http, 2).len(), 2);
    // jsmith hangs up: its call leaves the queue and AC_CTGW_1 is free again.
    let (_, body) = push(a, jsmith, &["Key:Onhook"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    wait_state(a, 10, "jsmith hung up", |s| {
        calls(s).iter().all(|c| c["state"] == "ended")
    });
    let left = wait_waiting(http, 1);
    assert_eq!(left[0]["calling"], "23923", "{left:?}");
    srv.wait_for_log("how=abandoned");
    let (_, body) = push(c, ssmith, &["Key:Onhook"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    let (_, body) = push(c, ssmith, &["Dial:5000"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    let both = wait_waiting(http, 2);
    assert_eq!(
        (&both[1]["calling"], &both[1]["device"]),
        (&Value::from("30271"), &Value::from("AC_CTGW_1")),
        "{both:?}"
    );
}

/// The demo with 50 more attendants of Reception (att01 .. att50, the lab phones' lines).
fn demo_with_50_attendants(dir: &std::path::Path) -> std::path::PathBuf {
    let demo = ucm::config::DEMO_YAML;
    let mut users = String::new();
    let mut list = String::new();
    let mut names = Vec::new();
    for i in 1..=50 {
        users.push_str(&format!(
            "  - userid: att{i:02}\n    first_name: Attendant\n    last_name: N{i:02}\n    password: cisco\n    associated_devices: [SEP0000000010{i:02X}]\n"
        ));
        list.push_str(&format!(
            "    - {{ user: att{i:02}, device: SEP0000000010{i:02X}, line: \"200{i:02}\" }}\n"
        ));
        names.push(format!("att{i:02}"));
    }
    let text = demo
        .replace(
            "\napplication_users:\n",
            &format!("{users}\napplication_users:\n"),
        )
        .replace(
            "    - { user: attendant2, device: SEP00036BC7A002, line: \"10501\" }\n",
            &format!(
                "    - {{ user: attendant2, device: SEP00036BC7A002, line: \"10501\" }}\n{list}"
            ),
        )
        .replace(
            "      attendants: [attendant1, attendant2]\n",
            &format!(
                "      attendants: [attendant1, attendant2, {}]\n",
                names.join(", ")
            ),
        );
    assert_eq!(text.matches("att50").count(), 3, "the demo changed shape");
    write_file(dir, "demo-50-attendants.yaml", &text)
}

/// 50 attendants answer the same waiting call at once: exactly one gets it (200), the others
/// are told it is gone (409 taken, or 404 once it left the queue).
fn race(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_with_50_attendants(dir.path());
    let mut args = vec!["--config", cfg.to_str().unwrap()];
    args.extend_from_slice(extra);
    let srv = Server::start(&args);
    let http = srv.addr("http");
    let caller = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.19.40"],
    );
    let (_, body) = push(
        caller.http("SEP00036BC7B973"),
        Some(("jsmith", "cisco")),
        &["Dial:5000"],
    );
    assert!(body.contains(r#"Status="0""#), "{body}");
    let call = wait_waiting(http, 1)[0]["call"].as_u64().unwrap();
    let racers: Vec<_> = (1..=50)
        .map(|i| {
            std::thread::spawn(move || {
                let user = format!("att{i:02}");
                for _ in 0..100 {
                    let (status, body) = api(
                        http,
                        "POST",
                        &format!("/ucm/attendant/calls/{call}/answer"),
                        Some((&user, "cisco")),
                    );
                    if status != 503 && status != 429 {
                        return (user, status, body);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                panic!("the node stayed busy");
            })
        })
        .collect();
    let results: Vec<(String, u16, String)> =
        racers.into_iter().map(|t| t.join().unwrap()).collect();
    let won: Vec<_> = results.iter().filter(|r| r.1 == 200).collect();
    let lost = results.iter().filter(|r| r.1 == 409 || r.1 == 404).count();
    assert_eq!((won.len(), lost), (1, 49), "{results:?}");
    let logs = srv.wait_for_log("call answered; redirected to the attendant's phone");
    assert!(
        logs.contains(&format!("attendant={}", won[0].0)),
        "{logs}\n{won:?}"
    );
    assert_eq!(
        logs.matches("call answered; redirected").count(),
        1,
        "{logs}"
    );
}

#[test]
fn r19_fifty_attendants_answering_one_call_exactly_one_gets_it_sqlite() {
    let _lo = crate::common::beside_captures();
    race(&[]);
}

#[tokio::test]
async fn r19_fifty_attendants_answering_one_call_exactly_one_gets_it_postgres() {
    let _lo = crate::common::beside_captures();
    let Some(db) = PgDb::create().await else {
        return;
    };
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || race(&["--db", &url])).await;
    db.drop_db().await;
    result.unwrap();
}

/// `config check` refuses a broken `attendant` section with errors naming the place: a
/// Queue DDI that is a pattern (the Assistant's route point), a CT gateway device used twice,
/// an attendant without the line, a queue with a stranger, queues without CT gateway devices.
#[test]
fn r19_config_check_names_what_is_wrong_in_the_attendant_section() {
    let _lo = crate::common::beside_captures();
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, text: &str| {
        let f = write_file(dir.path(), name, text);
        let out = ucm().args(["config", "check"]).arg(&f).output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), all)
    };
    let demo = ucm::config::DEMO_YAML;
    let (code, out) = check("demo.yaml", demo);
    assert_eq!(code, Some(0), "{out}");
    let broken = demo
        .replace(
            "      route_point: AC_Reception\n",
            "      route_point: Assistant_RP\n",
        )
        .replace(
            "  ct_gateway_devices: [AC_CTGW_1, AC_CTGW_2]\n",
            "  ct_gateway_devices: [AC_CTGW_1, AC_SQ_1]\n",
        )
        .replace(
            "    - { user: attendant2, device: SEP00036BC7A002, line: \"10501\" }\n",
            "    - { user: attendant2, device: SEP00036BC7A002, line: \"10500\" }\n",
        )
        .replace(
            "      attendants: [attendant1, attendant2]\n",
            "      attendants: [attendant1, jsmith]\n",
        )
        .replace("  recall_seconds: 30\n", "  recall_seconds: 0\n");
    assert_eq!(broken.matches("Assistant_RP").count(), 4, "demo changed");
    let (code, out) = check("broken.yaml", &broken);
    assert_eq!(code, Some(1), "{out}");
    let line_of = |needle: &str| {
        1 + broken[..broken.find(needle).unwrap_or_else(|| panic!("{needle}"))]
            .matches('\n')
            .count()
    };
    for (path, msg, at) in [
        (
            "attendant.queues[0].route_point",
            "is a pattern",
            "      route_point: Assistant_RP",
        ),
        (
            "attendant.queues[0].route_point",
            "is the Assistant's route point",
            "      route_point: Assistant_RP",
        ),
        (
            "attendant.service_queues[0]",
            "is already used as a CT gateway device",
            "  service_queues: [AC_SQ_1",
        ),
        (
            "attendant.attendants[1].line",
            "has no line \"10500\"",
            "    - { user: attendant2",
        ),
        (
            "attendant.queues[0].attendants[1]",
            "\"jsmith\" is not in attendant.attendants",
            "      attendants: [attendant1, jsmith]",
        ),
        (
            "attendant.recall_seconds",
            "must be 1 to 3600",
            "  recall_seconds: 0",
        ),
    ] {
        let line = line_of(at);
        assert!(
            out.lines().any(|l| l.contains(path)
                && l.contains(msg)
                && l.contains(&format!("broken.yaml:{line}:"))),
            "{path} {msg} at line {line}:\n{out}"
        );
    }
    let no_devices = demo.replace("  ct_gateway_devices: [AC_CTGW_1, AC_CTGW_2]\n", "");
    let (code, out) = check("no-devices.yaml", &no_devices);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("attendant.ct_gateway_devices") && out.contains("queues need CT gateway"),
        "{out}"
    );
}

/// A running `ucm console --json`: its stdout lines as they come, its stdin to type into.
struct ConsoleProc {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl ConsoleProc {
    fn start(srv: &Server, user: &str, password: &str) -> ConsoleProc {
        let ca = srv.data_dir.path().join("node-cert.pem");
        ConsoleProc::start_at(srv.addr("attendant_console"), &ca, user, password)
    }

    fn start_at(addr: SocketAddr, ca: &std::path::Path, user: &str, password: &str) -> ConsoleProc {
        let mut child = ucm()
            .args(["console", "--json", "--server"])
            .arg(addr.to_string())
            .args(["--user", user, "--ca"])
            .arg(ca)
            .env("UCM_PASSWORD", password)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(l);
            }
        });
        ConsoleProc {
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    /// The next event `ok` accepts (others are skipped), within `secs`.
    fn expect(&self, secs: u64, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let v: Value =
                        serde_json::from_str(&l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
                    if ok(&v) {
                        return v;
                    }
                    seen.push(l);
                }
                Err(_) => panic!("{what}: not seen within {secs} s; seen: {seen:#?}"),
            }
        }
    }

    fn type_line(&mut self, line: &str) {
        writeln!(self.stdin.as_mut().unwrap(), "{line}").unwrap();
    }

    /// Closes stdin and waits (bounded) for the exit code.
    fn finish(mut self) -> Option<i32> {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("ucm console did not end after stdin closed");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ConsoleProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The console protocol with `ucm console --json`: the ready line names `attendant_console`;
/// Reception One's console gets its queues, then the `queued` event when jsmith dials 5000
/// (caller, CT gateway device), answers it with `answer N` on stdin (the phone connects by
/// itself) and sees `answered`; a bad command gets an error line, and closing stdin ends the
/// console with exit 0; `search smith` and `search 5000` find users and lines with their
/// partitions. Every segment of the console connection, both ways and handshakes
/// included, is marked CS3 (captured on lo). A wrong password and a non-attendant exit 1.
#[test]
fn r19_ucm_console_shows_the_queue_and_answers_over_the_console_protocol_marked_cs3() {
    let _lo = crate::common::beside_captures();
    let srv = Server::start(&[]);
    let console_addr = srv.addr("attendant_console");
    let capture = crate::common::is_root().then(|| {
        ucm::net::capture::LoopbackCapture::start(ucm::net::capture::CaptureFilter::ports(&[
            console_addr.port(),
        ]))
        .expect("capture on lo")
    });
    let caller = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.19.50"],
    );
    let attendant = Sim::start(
        &srv,
        &["--device", "SEP00036BC7A001", "--first-ip", "127.0.19.60"],
    );
    let mut console = ConsoleProc::start(&srv, "attendant1", "cisco");
    let hello = console.expect(15, "hello", |v| v["event"] == "hello");
    assert_eq!(hello["line"], "10500", "{hello}");
    let q = console.expect(5, "queues", |v| v["event"] == "queues");
    assert_eq!(q["queues"][0]["queue"], "Reception", "{q}");
    assert_eq!(q["queues"][0]["calls"], serde_json::json!([]), "{q}");

    let (_, body) = push(
        caller.http("SEP00036BC7B973"),
        Some(("jsmith", "cisco")),
        &["Dial:5000"],
    );
    assert!(body.contains(r#"Status="0""#), "{body}");
    let queued = console.expect(15, "queued", |v| v["event"] == "queued");
    assert_eq!(
        (&queued["calling"], &queued["device"]),
        (&Value::from("10001"), &Value::from("AC_CTGW_1")),
        "{queued}"
    );
    let call = queued["call"].as_u64().unwrap();
    console.type_line("queues");
    let q = console.expect(5, "queues again", |v| v["event"] == "queues");
    assert_eq!(q["queues"][0]["calls"][0]["position"], 1, "{q}");
    console.type_line(&format!("answer {call}"));
    let ans = console.expect(10, "the answer", |v| v["event"] == "answer");
    assert_eq!(
        (&ans["ok"], &ans["line"]),
        (&Value::from(true), &Value::from("10500")),
        "{ans}"
    );
    console.expect(5, "answered", |v| {
        v["event"] == "answered" && v["attendant"] == "attendant1"
    });
    wait_state(
        attendant.http("SEP00036BC7A001"),
        15,
        "Reception One's phone connected",
        |s| connected(s).len() == 1,
    );
    console.type_line(&format!("answer {call}"));
    let again = console.expect(10, "the second answer", |v| v["event"] == "answer");
    assert_eq!(
        (&again["ok"], &again["status"]),
        (&Value::from(false), &Value::from(404)),
        "{again}"
    );
    // The directory: users and lines by name, with their partitions.
    console.type_line("search smith");
    let found = console.expect(5, "search results", |v| v["event"] == "search");
    let results = found["results"].as_array().unwrap();
    assert!(
        results.iter().any(|e| e["kind"] == "user"
            && e["userid"] == "jsmith"
            && e["number"] == "10001"
            && e["partition"] == "Internal_PT"),
        "{found}"
    );
    assert!(
        results
            .iter()
            .any(|e| e["kind"] == "line" && e["name"] == "Steve Smith" && e["number"] == "30271"),
        "{found}"
    );
    console.type_line("search 5000");
    let found = console.expect(5, "search by number", |v| v["event"] == "search");
    assert_eq!(found["results"][0]["name"], "Reception", "{found}");
    console.type_line("transfer-everything now");
    let err = console.expect(5, "the error", |v| v["event"] == "error");
    assert!(
        err["error"].as_str().unwrap().contains("unknown command"),
        "{err}"
    );
    assert_eq!(console.finish(), Some(0));

    for (user, password) in [("attendant1", "wrong"), ("jsmith", "cisco")] {
        let p = ConsoleProc::start(&srv, user, password);
        assert_eq!(p.finish(), Some(1), "{user}");
    }

    if let Some(cap) = capture {
        std::thread::sleep(Duration::from_millis(200));
        let packets = cap.stop();
        let server_side: Vec<_> = packets.iter().filter(|p| p.src == console_addr).collect();
        let client_side: Vec<_> = packets.iter().filter(|p| p.dst == console_addr).collect();
        assert!(
            server_side.iter().any(|p| p.is_syn_ack()),
            "SYN-ACK captured"
        );
        assert!(client_side.iter().any(|p| p.is_syn()), "SYN captured");
        for p in server_side.iter().chain(client_side.iter()) {
            assert_eq!(
                p.dscp,
                ucm::net::Dscp::CS3,
                "every console segment is CS3: {p:?}"
            );
        }
    } else {
        crate::common::skip_or_fail("capturing on lo to read TCP DSCP needs root");
    }
}

/// Strangers get bounded work: 1,000 connections from one source are cut to its share (16:
/// the rest closed at once) and those that never finish their handshake are closed after 5
/// s; a request without credentials gets 401, one with a huge header nothing; an attendant
/// sending an announced 1 TiB frame is closed with 1009. Meanwhile a console from another
/// source connects and is served.
#[tokio::test]
async fn r19_strangers_get_bounded_work_on_the_console_listener() {
    let _lo = crate::common::beside_captures();
    let srv = tokio::task::spawn_blocking(|| Server::start(&[]))
        .await
        .unwrap();
    let addr = srv.addr("attendant_console");
    let stranger: SocketAddr = "127.0.19.99:0".parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..1000 {
        match ucm::net::socket::connect_tcp(addr, Some(stranger), ucm::net::Dscp::DEFAULT).await {
            Ok(s) => held.push(s),
            Err(e) => panic!("connect: {e}"),
        }
    }
    // Those beyond the share are closed at once: they read end of file.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut closed = 0;
    let mut open = Vec::new();
    for mut s in held {
        let mut b = [0u8; 1];
        match tokio::time::timeout(Duration::from_millis(20), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            _ => open.push(s),
        }
    }
    assert!(
        open.len() <= 16 && closed >= 984,
        "open {} closed {closed}",
        open.len()
    );
    // Another source is served meanwhile.
    let ca = srv.data_dir.path().join("node-cert.pem");
    let ca2 = ca.clone();
    let code = tokio::task::spawn_blocking(move || {
        let mut c = ConsoleProc::start_at(addr, &ca2, "attendant2", "cisco");
        c.expect(15, "hello during the flood", |v| v["event"] == "hello");
        c.type_line("quit");
        c.finish()
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0));
    // The silent ones are closed after the handshake time.
    let start = Instant::now();
    for mut s in open {
        let mut b = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "a silent connection was kept: {r:?}"
        );
    }
    assert!(start.elapsed() < Duration::from_secs(8));

    // Over TLS: no credentials, a huge header, a huge frame.
    let opts = ucm::client::ClientOptions {
        ca: Some(ca),
        insecure: false,
        timeout: Some(Duration::from_secs(10)),
    };
    let tls = Arc::new(ucm::client::tls_client_config(&opts, &[]).unwrap());
    let open_tls = || async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio_rustls::TlsConnector::from(tls.clone())
            .connect(
                rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
                tcp,
            )
            .await
            .unwrap()
    };
    let mut s = open_tls().await;
    s.write_all(b"GET /attendant/console HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    let mut s = open_tls().await;
    let big = format!(
        "GET /attendant/console HTTP/1.1\r\nX: {}\r\n",
        "a".repeat(100_000)
    );
    let _ = s.write_all(big.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(7), s.read_to_end(&mut out)).await;
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    // An attendant announcing a 1 TiB frame: refused from its header (close 1009).
    let mut s = open_tls().await;
    let auth = base64_encode(b"attendant1:cisco");
    s.write_all(format!("GET /attendant/console HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Basic {auth}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed before the upgrade: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(
        buf.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    assert!(String::from_utf8_lossy(&buf[..end]).contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    let mut frames = buf.split_off(end + 4);
    s.write_all(&[0x81, 0x80 | 127, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4])
        .await
        .unwrap();
    let close_code = loop {
        match ucm::wire::websocket::decode(&mut frames, false, 1 << 20).unwrap() {
            Some(f) if f.opcode == ucm::wire::websocket::Opcode::Close => {
                break u16::from_be_bytes([f.payload[0], f.payload[1]]);
            }
            Some(_) => continue,
            None => {
                let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0, "closed without a close frame");
                frames.extend_from_slice(&chunk[..n]);
            }
        }
    };
    assert_eq!(close_code, 1009);
}

/// README's Attendant Console example, run as written in a network namespace of its own.
#[test]
fn r19_readme_attendant_console_example_runs_as_written() {
    let _lo = crate::common::beside_captures();
    crate::readme::run_example(
        "## Attendant Console",
        8,
        &[
            (5, "\"connected\":true"),
            (5, "\"line\":\"10500\""),
            (6, "\"state\":\"connected\""),
            (6, "\"remote_number\":\"10001\""),
            (7, "ok         ct_gateway_devices"),
        ],
    );
}

/// `ucm attendant check`: the demo's devices cover its peaks (exit 0); a measured peak above
/// the CT gateway devices is short (exit 1, JSON naming the rule); a definition with too few
/// service queues for its attendants is short without any peak; an unreadable file exits 2.
#[test]
fn r19_attendant_check_reports_the_sizing_rules_with_config_check_exit_codes() {
    let _lo = crate::common::beside_captures();
    let run = |args: &[&str]| {
        let out = ucm()
            .args(["attendant", "check"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run(&["--json"]);
    assert_eq!(code, Some(0), "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let (code, out) = run(&["--json", "--peak-incoming", "3"]);
    assert_eq!(code, Some(1), "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let r = &v["rules"][0];
    assert_eq!(
        (&r["rule"], &r["verdict"], &r["have"], &r["need"]),
        (
            &Value::from("ct_gateway_devices"),
            &Value::from("short"),
            &Value::from(2),
            &Value::from(3)
        ),
        "{v}"
    );
    let dir = tempfile::tempdir().unwrap();
    let few = ucm::config::DEMO_YAML
        .replace(
            "  service_queues: [AC_SQ_1, AC_SQ_2, AC_SQ_3, AC_SQ_4, AC_SQ_5, AC_SQ_6]\n",
            "  service_queues: [AC_SQ_1, AC_SQ_2]\n",
        )
        .replace("transfers_and_holds: 6, ", "");
    assert_ne!(few, ucm::config::DEMO_YAML);
    let f = write_file(dir.path(), "few.yaml", &few);
    let (code, out) = run(&[f.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("short      service_queues_per_attendant: 2 service queues for 2 attendants"),
        "{out}"
    );
    assert!(out.contains("unchecked  service_queues"), "{out}");
    let (code, _) = run(&["/nonexistent/cluster.yaml"]);
    assert_eq!(code, Some(2));
}

/// A PSTN call: SIPp's uac, as the gateway behind the demo's trunk PSTN-GW, calls the Queue
/// DDI 5000; the call waits on a CT gateway device (SIPp hears ringing, no answer), Reception
/// One answers it, her phone connects by itself and SIPp's call completes (200, ACK, BYE).
#[test]
fn r19_a_pstn_call_from_sipp_through_the_trunk_waits_in_the_queue_and_reaches_the_attendant() {
    let _lo = crate::common::beside_captures();
    if !crate::sipp::sipp_available() {
        crate::common::skip_or_fail("sipp is not installed (Debian package sip-tester)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let text = ucm::config::DEMO_YAML.replace(
        r#"destinations: ["127.0.0.1:5090"]"#,
        r#"destinations: ["127.0.19.70:5090"]"#,
    );
    assert_ne!(text, ucm::config::DEMO_YAML);
    let cfg = write_file(dir.path(), "demo-pstn.yaml", &text);
    let srv = Server::start(&["--config", cfg.to_str().unwrap()]);
    let http = srv.addr("http");
    let attendant = Sim::start(
        &srv,
        &["--device", "SEP00036BC7A001", "--first-ip", "127.0.19.71"],
    );
    let sip = srv.addr("sip_udp").to_string();
    let sipp = std::thread::spawn(move || {
        let out = std::process::Command::new("sipp")
            .args(["-sn", "uac", "-s", "5000", &sip, "-i", "127.0.19.70"])
            .args(["-p", "5090", "-m", "1", "-nostdin"])
            .args(["-timeout", "40s", "-recv_timeout", "30s"])
            .current_dir(std::env::temp_dir())
            .output()
            .expect("run sipp uac");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), text)
    });
    let waiting = wait_waiting(http, 1);
    assert_eq!(waiting[0]["device"], "AC_CTGW_1", "{waiting:?}");
    assert_eq!(waiting[0]["calling"], "sipp", "{waiting:?}");
    // Past the route point timeout it still waits.
    std::thread::sleep(Duration::from_secs(6));
    let call = wait_waiting(http, 1)[0]["call"].as_u64().unwrap();
    let (status, body) = api(
        http,
        "POST",
        &format!("/ucm/attendant/calls/{call}/answer"),
        Some(("attendant1", "cisco")),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""connected":true"#), "{body}");
    let (code, text) = sipp.join().unwrap();
    let tail = text.lines().rev().take(25).collect::<Vec<_>>().join("\n");
    assert_eq!(code, Some(0), "SIPp's call did not complete:\n{tail}");
    let s = wait_state(
        attendant.http("SEP00036BC7A001"),
        10,
        "the call ended at Reception One's phone (SIPp hung up)",
        |s| calls(s).iter().all(|c| c["state"] == "ended"),
    );
    assert_eq!(calls(&s)[0]["remote_number"], "sipp", "{s:#}");
}

/// With no node running the attendant service, a call to the Queue DDI follows the DN's Call
/// Forward No Answer at once (the seed's forward on CTI failure with a single server): it
/// rings Reception One's line 10500, which then rings like any line (no automatic answer
/// without the console server).
#[test]
fn r19_with_no_console_server_a_queue_ddi_call_follows_its_forwarding_to_a_phone() {
    let _lo = crate::common::beside_captures();
    let dir = tempfile::tempdir().unwrap();
    let text = ucm::config::DEMO_YAML.replace(
        "redirector, assistant, attendant, paging",
        "redirector, assistant, paging",
    );
    assert_ne!(
        text,
        ucm::config::DEMO_YAML,
        "the demo node's services changed"
    );
    let cfg = write_file(dir.path(), "demo-no-attendant.yaml", &text);
    let srv = Server::start(&["--config", cfg.to_str().unwrap()]);
    let phones = Sim::start(
        &srv,
        &[
            "--device",
            "SEP00036BC7B973",
            "--device",
            "SEP00036BC7A001",
            "--first-ip",
            "127.0.19.80",
        ],
    );
    let (_, body) = push(
        phones.http("SEP00036BC7B973"),
        Some(("jsmith", "cisco")),
        &["Dial:5000"],
    );
    assert!(body.contains(r#"Status="0""#), "{body}");
    let s = wait_state(
        phones.http("SEP00036BC7A001"),
        15,
        "Reception One's line rings",
        |s| {
            calls(s)
                .iter()
                .any(|c| c["state"] == "ringing" && c["line"] == "10500")
        },
    );
    let c = calls(&s)
        .into_iter()
        .find(|c| c["state"] == "ringing")
        .unwrap();
    assert_eq!(c["remote_number"], "10001", "{c:#}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        connected(&state(phones.http("SEP00036BC7A001"))).is_empty(),
        "answered by itself without the console server"
    );
    let (status, _) = api(
        srv.addr("http"),
        "GET",
        "/ucm/attendant/queues",
        Some(("attendant1", "cisco")),
    );
    assert_eq!(status, 404, "no node runs the service");
}

// ---- Steps 7 to 9: transfers through service queues, transfer recall, park ----

/// The demo with `recall_seconds` set (the demo's 30 s is long for a test).
fn demo_with_recall(dir: &std::path::Path, secs: u32) -> std::path::PathBuf {
    let text = ucm::config::DEMO_YAML.replace(
        "  recall_seconds: 30\n",
        &format!("  recall_seconds: {secs}\n"),
    );
    assert!(
        text.contains(&format!("recall_seconds: {secs}\n")),
        "the demo changed shape"
    );
    write_file(dir, "demo-recall.yaml", &text)
}

/// `who` answers through the HTTP API the one call waiting in Reception, dialled by `caller`
/// (jsmith's phone): the call's id once both phones are connected.
fn answered_call(http: SocketAddr, caller: SocketAddr, phone: SocketAddr, who: &str) -> u64 {
    let (_, body) = push(caller, Some(("jsmith", "cisco")), &["Dial:5000"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    let call = wait_waiting(http, 1)[0]["call"].as_u64().unwrap();
    let (status, body) = api(
        http,
        "POST",
        &format!("/ucm/attendant/calls/{call}/answer"),
        Some((who, "cisco")),
    );
    assert_eq!(status, 200, "{body}");
    wait_state(phone, 15, "the attendant's phone connected", |s| {
        connected(s).len() == 1
    });
    wait_state(caller, 15, "the caller connected", |s| {
        connected(s).len() == 1
    });
    call
}

fn live(s: &Value) -> Vec<Value> {
    calls(s)
        .into_iter()
        .filter(|c| c["state"] != "ended")
        .collect()
}

/// The caller's one live call hears the server's music on hold: its media comes from an
/// address of the node (not a phone's 127.0.19.x), and at least `packets` more RTP packets
/// marked EF (DSCP 46) arrive after it moved there.
fn hears_moh(caller: SocketAddr, packets: u64) -> Value {
    let on_moh = |s: &Value| {
        live(s).first().is_some_and(|c| {
            c["state"] == "connected"
                && c["remote_rtp"]
                    .as_str()
                    .is_some_and(|r| !r.starts_with("127.0.19."))
        })
    };
    let ef = |s: &Value| {
        live(s)
            .first()
            .map_or(0, |c| c["rtp"]["dscp_counts"]["46"].as_u64().unwrap_or(0))
    };
    let s = wait_state(caller, 15, "the caller moved to the server's media", on_moh);
    let base = ef(&s);
    wait_state(caller, 15, "EF music on hold arriving at the caller", |s| {
        on_moh(s) && ef(s) >= base + packets
    })
}

/// Blind transfer (steps 7-9) from `ucm console`: Reception One types `transfer N 23923`;
/// the call leaves the attendant's phone for the first service queue (AC_SQ_1), which
/// answers it and plays the shipped music on hold to jsmith (RTP from the node, EF) while
/// 23923 rings; sadams answers, the caller's media is re-pointed to sadams's phone by
/// re-INVITE and the server is out of the call: jsmith and sadams send each other RTP, the
/// console saw `transferring` and `transferred`. A transfer of a call that is not on the
/// attendant's phone, of another attendant's call, or to something not a number, is refused.
/// Then jsmith calls again, is transferred again and hangs up while on music on hold: the
/// service queue is freed (the next transfer gets AC_SQ_1 again) and 23923 stops ringing.
#[test]
fn r19_blind_transfer_goes_through_a_service_queue_with_ef_moh_and_reaches_the_target() {
    let _lo = crate::common::beside_captures();
    let srv = Server::start(&[]);
    let http = srv.addr("http");
    let caller = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.19.70"],
    );
    let attendant = Sim::start(
        &srv,
        &["--device", "SEP00036BC7A001", "--first-ip", "127.0.19.72"],
    );
    let target = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B975", "--first-ip", "127.0.19.74"],
    );
    let (a, r1, t) = (
        caller.http("SEP00036BC7B973"),
        attendant.http("SEP00036BC7A001"),
        target.http("SEP00036BC7B975"),
    );
    let mut console = ConsoleProc::start(&srv, "attendant1", "cisco");
    console.expect(15, "hello", |v| v["event"] == "hello");
    let call = answered_call(http, a, r1, "attendant1");

    console.type_line(&format!("transfer {} 23923", call + 1000));
    let refused = console.expect(10, "a refused transfer", |v| v["event"] == "transfer");
    assert_eq!(
        (&refused["ok"], &refused["status"]),
        (&Value::from(false), &Value::from(404)),
        "{refused}"
    );
    let (status, body) = api(
        http,
        "POST",
        &format!("/ucm/attendant/calls/{call}/transfer/10x02"),
        Some(("attendant1", "cisco")),
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = api(
        http,
        "POST",
        &format!("/ucm/attendant/calls/{call}/transfer/23923"),
        Some(("attendant2", "cisco")),
    );
    assert_eq!(status, 403, "another attendant's call: {body}");

    console.type_line(&format!("transfer {call} 23923"));
    let ok = console.expect(15, "the transfer", |v| v["event"] == "transfer");
    assert_eq!(
        (&ok["ok"], &ok["device"]),
        (&Value::from(true), &Value::from("AC_SQ_1")),
        "{ok}"
    );
    console.expect(10, "transferring", |v| {
        v["event"] == "transferring" && v["target"] == "23923"
    });
    wait_state(r1, 10, "the attendant's phone is out of the call", |s| {
        live(s).is_empty()
    });
    hears_moh(a, 50);
    // 23923 rings meanwhile; sadams answers: the caller talks to her, phone to phone.
    wait_state(t, 10, "23923 rings", |s| {
        live(s).first().is_some_and(|c| c["state"] == "ringing")
    });
    let (_, body) = push(t, Some(("sadams", "cisco")), &["Key:Offhook"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    let ts = wait_state(t, 20, "23923 connected to jsmith", |s| {
        connected(s)
            .first()
            .is_some_and(|c| c["remote_number"] == "10001")
    });
    let t_local = connected(&ts)[0]["local_rtp"].clone();
    let s = wait_state(a, 15, "jsmith's media re-pointed to 10002", |s| {
        connected(s)
            .first()
            .is_some_and(|c| c["remote_rtp"] == t_local)
    });
    let a_local = connected(&s)[0]["local_rtp"].clone();
    assert_eq!(connected(&ts)[0]["remote_rtp"], a_local, "{ts:#}");
    console.expect(15, "transferred", |v| {
        v["event"] == "transferred" && v["call"] == call
    });
    srv.wait_for_log("transfer answered; the server is out of the call");
    wait_state(t, 15, "23923 hears jsmith", |s| {
        connected(s)
            .first()
            .is_some_and(|c| c["rtp_rx_packets"].as_u64().unwrap_or(0) >= 25)
    });
    for p in [a, t] {
        let (_, body) = push(
            p,
            Some(if p == a {
                ("jsmith", "cisco")
            } else {
                ("sadams", "cisco")
            }),
            &["Key:Onhook"],
        );
        assert!(body.contains(r#"Status="0""#), "{body}");
        wait_state(p, 10, "the call ended", |s| live(s).is_empty());
    }

    // Transferred again, jsmith hangs up on hold: AC_SQ_1 is freed, 23923 stops ringing.
    let call = answered_call(http, a, r1, "attendant1");
    let (status, body) = api(
        http,
        "POST",
        &format!("/ucm/attendant/calls/{call}/transfer/23923"),
        Some(("attendant1", "cisco")),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("AC_SQ_1"), "{body}");
    hears_moh(a, 10);
    wait_state(t, 10, "23923 rings", |s| {
        live(s).first().is_some_and(|c| c["state"] == "ringing")
    });
    let (_, body) = push(a, Some(("jsmith", "cisco")), &["Key:Onhook"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    let left = console.expect(15, "left", |v| v["event"] == "left" && v["call"] == call);
    assert_eq!(left["device"], "AC_SQ_1", "{left}");
    wait_state(t, 10, "23923's ringing cancelled", |s| live(s).is_empty());
    srv.wait_for_log("the caller hung up on hold; device freed");
    let call = answered_call(http, a, r1, "attendant1");
    let (status, body) = api(
        http,
        "POST",
        &format!("/ucm/attendant/calls/{call}/transfer/23923"),
        Some(("attendant1", "cisco")),
    );
    assert_eq!(status, 200, "the freed queue again: {body}");
    assert!(body.contains("AC_SQ_1"), "{body}");
    assert_eq!(console.finish(), Some(0));
}

/// Transfer recall: 10002 does not answer within `recall_seconds` (2 s here): its ringing is
/// cancelled and the call comes back to Reception One's phone (which connects by itself and
/// talks to jsmith again, media re-pointed), the console showing `recall` and `recalled`; a
/// transfer to a number that does not exist comes back at once, and one to the server's own
/// park device (a route point) too.
#[test]
fn r19_unanswered_transfers_are_recalled_to_the_attendant() {
    let _lo = crate::common::beside_captures();
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_with_recall(dir.path(), 2);
    let srv = Server::start(&["--config", cfg.to_str().unwrap()]);
    let http = srv.addr("http");
    let caller = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.19.80"],
    );
    let attendant = Sim::start(
        &srv,
        &["--device", "SEP00036BC7A001", "--first-ip", "127.0.19.82"],
    );
    let target = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B974", "--first-ip", "127.0.19.84"],
    );
    let (a, r1, t) = (
        caller.http("SEP00036BC7B973"),
        attendant.http("SEP00036BC7A001"),
        target.http("SEP00036BC7B974"),
    );
    let mut console = ConsoleProc::start(&srv, "attendant1", "cisco");
    console.expect(15, "hello", |v| v["event"] == "hello");
    let call = answered_call(http, a, r1, "attendant1");

    for (to, why) in [
        ("10002", "not answered in time"),
        ("59999", "no such number"),
        ("5921", "a route point"),
    ] {
        console.type_line(&format!("transfer {call} {to}"));
        let ok = console.expect(15, "the transfer", |v| v["event"] == "transfer");
        assert_eq!(ok["ok"], true, "{to} ({why}): {ok}");
        // A number that cannot take the call recalls it at once: the attendant's phone may be
        // back on the call before any poll sees it idle, so only the ringing target is waited.
        if to == "10002" {
            wait_state(r1, 10, "the attendant's phone is out of the call", |s| {
                live(s).is_empty()
            });
        }
        let recall = console.expect(20, "recall", |v| v["event"] == "recall");
        assert_eq!(recall["target"], to, "{recall}");
        let back = console.expect(20, "recalled", |v| v["event"] == "recalled");
        assert_eq!(
            (&back["call"], &back["line"]),
            (&Value::from(call), &Value::from("10500")),
            "{back}"
        );
        let rs = wait_state(r1, 15, "the call back on Reception One's phone", |s| {
            connected(s)
                .first()
                .is_some_and(|c| c["remote_number"] == "10001")
        });
        let r_local = connected(&rs)[0]["local_rtp"].clone();
        wait_state(a, 15, "jsmith's media back at the attendant", |s| {
            connected(s)
                .first()
                .is_some_and(|c| c["remote_rtp"] == r_local)
        });
        if to == "10002" {
            // 10002 rang (the call from 10001 is in its list) and rings no more.
            wait_state(t, 10, "10002 rang and was cancelled", |s| {
                live(s).is_empty() && calls(s).iter().any(|c| c["remote_number"] == "10001")
            });
        }
    }
    let logs = srv.logs();
    assert_eq!(
        logs.matches("transfer not answered; recalled to the attendant")
            .count(),
        3,
        "{logs}"
    );

    assert_eq!(console.finish(), Some(0));
}

/// The 50 demo lab phones as attendants' phones (see `demo_with_50_attendants`).
fn lab_phone_args(first_ip: &str) -> Vec<String> {
    let mut args = Vec::new();
    for i in 1..=50 {
        args.push("--device".to_string());
        args.push(format!("SEP0000000010{i:02X}"));
    }
    args.push("--first-ip".into());
    args.push(first_ip.into());
    args
}

/// Park on the server's own park devices: Reception One parks jsmith's call (`park N` on the
/// console): it goes to AC_Park_1, the console shows `parked` with 5921, and jsmith hears the
/// shipped music on hold, captured on lo: every packet from the server to jsmith's RTP port
/// is marked EF and carries 20 ms frames of fixtures/moh/attendant-moh.wav, in order. Then 50
/// attendants retrieve 5921 at once: the database decides, exactly one gets it (its phone
/// connects to jsmith), the others are told it is gone (409, or 404 once nothing is parked).
/// Parked again and hung up on hold, the park device is freed.
fn park_race(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_with_50_attendants(dir.path());
    let mut args = vec!["--config", cfg.to_str().unwrap()];
    args.extend_from_slice(extra);
    let srv = Server::start(&args);
    let http = srv.addr("http");
    let caller = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.19.90"],
    );
    let attendant = Sim::start(
        &srv,
        &["--device", "SEP00036BC7A001", "--first-ip", "127.0.19.92"],
    );
    let lab_args = lab_phone_args("127.0.19.100");
    let lab_refs: Vec<&str> = lab_args.iter().map(String::as_str).collect();
    let lab = Sim::start(&srv, &lab_refs);
    let (a, r1) = (
        caller.http("SEP00036BC7B973"),
        attendant.http("SEP00036BC7A001"),
    );
    let mut console = ConsoleProc::start(&srv, "attendant1", "cisco");
    console.expect(15, "hello", |v| v["event"] == "hello");
    let call = answered_call(http, a, r1, "attendant1");
    let a_rtp: SocketAddr = connected(&state(a))[0]["local_rtp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let capture = crate::common::is_root().then(|| {
        ucm::net::capture::LoopbackCapture::start(ucm::net::capture::CaptureFilter::ports(&[
            a_rtp.port()
        ]))
        .expect("capture on lo")
    });

    console.type_line(&format!("park {call}"));
    let parked = console.expect(15, "the park", |v| v["event"] == "park");
    assert_eq!(
        (&parked["ok"], &parked["park"]),
        (&Value::from(true), &Value::from("5921")),
        "{parked}"
    );
    let ev = console.expect(10, "parked", |v| v["event"] == "parked");
    assert_eq!(ev["device"], "AC_Park_1", "{ev}");
    wait_state(r1, 10, "the attendant's phone is out of the call", |s| {
        live(s).is_empty()
    });
    hears_moh(a, 50);

    if let Some(cap) = capture {
        let packets = cap.stop();
        let moh: Vec<_> = packets
            .iter()
            .filter(|p| p.dst == a_rtp && !p.src.ip().to_string().starts_with("127.0.19."))
            .collect();
        assert!(moh.len() >= 50, "{} MoH packets captured", moh.len());
        let wav = ucm::media::wav::read_wav(include_bytes!("../../fixtures/moh/attendant-moh.wav"))
            .unwrap();
        let frames = ucm::media::wav::to_ulaw_frames_20ms(&ucm::media::wav::resample_to_8k(&wav));
        let first = ucm::media::rtp::RtpPacket::parse(&moh[0].payload).unwrap();
        let start = frames
            .iter()
            .position(|f| f[..] == first.payload[..])
            .expect("the first MoH packet is a frame of the shipped WAV");
        // Reported, not asserted: the stream's pacing as captured.
        let mut gaps: Vec<u128> = moh
            .windows(2)
            .filter_map(|w| w[1].time.duration_since(w[0].time).ok())
            .map(|d| d.as_micros())
            .collect();
        gaps.sort_unstable();
        if let (Some(max), false) = (gaps.last(), gaps.is_empty()) {
            eprintln!(
                "MoH stream: {} packets, gap p50 {} us, p99 {} us, max {} us",
                moh.len(),
                gaps[gaps.len() / 2],
                gaps[gaps.len() * 99 / 100],
                max
            );
        }
        for (k, p) in moh.iter().enumerate() {
            assert_eq!(p.dscp, ucm::net::Dscp::EF, "MoH packet {k} not EF: {p:?}");
            let rtp = ucm::media::rtp::RtpPacket::parse(&p.payload).unwrap();
            assert_eq!(rtp.header.payload_type, 0, "PCMU");
            assert_eq!(
                rtp.payload,
                &frames[(start + k) % frames.len()][..],
                "MoH packet {k} is not the WAV's next frame"
            );
        }
    } else {
        crate::common::skip_or_fail("capturing on lo to read the MoH stream needs root");
    }

    // 50 attendants retrieve 5921 at once.
    let racers: Vec<_> = (1..=50)
        .map(|i| {
            std::thread::spawn(move || {
                let user = format!("att{i:02}");
                for _ in 0..100 {
                    let (status, body) = api(
                        http,
                        "POST",
                        "/ucm/attendant/parked/5921/retrieve",
                        Some((&user, "cisco")),
                    );
                    if status != 503 && status != 429 {
                        return (user, status, body);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                panic!("the node stayed busy");
            })
        })
        .collect();
    let results: Vec<(String, u16, String)> =
        racers.into_iter().map(|t| t.join().unwrap()).collect();
    let won: Vec<_> = results.iter().filter(|r| r.1 == 200).collect();
    let lost = results.iter().filter(|r| r.1 == 409 || r.1 == 404).count();
    assert_eq!((won.len(), lost), (1, 49), "{results:?}");
    let winner = won[0].0.clone();
    let n: usize = winner[3..].parse().unwrap();
    let phone = lab.http(&format!("SEP0000000010{n:02X}"));
    let ws = wait_state(phone, 15, "the winner's phone connected to jsmith", |s| {
        connected(s)
            .first()
            .is_some_and(|c| c["remote_number"] == "10001")
    });
    let w_local = connected(&ws)[0]["local_rtp"].clone();
    wait_state(a, 15, "jsmith's media at the winner's phone", |s| {
        connected(s)
            .first()
            .is_some_and(|c| c["remote_rtp"] == w_local)
    });
    let logs = srv.wait_for_log("parked call retrieved");
    assert_eq!(logs.matches("parked call retrieved").count(), 1, "{logs}");
    assert!(logs.contains(&format!("attendant={winner}")), "{logs}");

    // The winner parks it again; jsmith hangs up on hold: the park device is freed.
    let (status, body) = api(
        http,
        "POST",
        &format!("/ucm/attendant/calls/{call}/park"),
        Some((&winner, "cisco")),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("5921"), "{body}");
    hears_moh(a, 10);
    let (_, body) = push(a, Some(("jsmith", "cisco")), &["Key:Onhook"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    srv.wait_for_log("the caller hung up on hold; device freed");
    let (status, body) = api(
        http,
        "POST",
        "/ucm/attendant/parked/5921/retrieve",
        Some(("attendant1", "cisco")),
    );
    assert_eq!(status, 404, "nothing parked any more: {body}");
    drop(console);
}

#[test]
fn r19_fifty_attendants_retrieving_one_parked_call_exactly_one_gets_it_sqlite() {
    let _lo = crate::common::beside_captures();
    park_race(&[]);
}

#[tokio::test]
async fn r19_fifty_attendants_retrieving_one_parked_call_exactly_one_gets_it_postgres() {
    let _lo = crate::common::beside_captures();
    let Some(db) = PgDb::create().await else {
        return;
    };
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || park_race(&["--db", &url])).await;
    db.drop_db().await;
    result.unwrap();
}
