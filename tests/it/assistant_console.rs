//! Unified CM Assistant (issue 18): the Assistant Console protocol on TCP 2912 and its client
//! `ucm assistant console`, over the wire, with simulated phones for the caller, the manager
//! and the assistant.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ucm::net::capture::{CaptureFilter, LoopbackCapture, Transport};
use ucm::net::Dscp;

use crate::common::{is_root, skip_or_fail, ucm, write_file, PgDb, Server};
use crate::phone::{calls, push, wait_state, Sim};

/// A running `ucm assistant console --json`: commands to its stdin, its lines as they come.
struct Console {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Console {
    fn start(server: SocketAddr, user: &str, password: &str) -> Console {
        Console::start_servers(&[server], user, password)
    }

    /// A console with a primary and backup servers.
    fn start_servers(servers: &[SocketAddr], user: &str, password: &str) -> Console {
        let mut cmd = ucm();
        cmd.args(["assistant", "console", "--json", "--request-timeout", "5"]);
        for s in servers {
            cmd.arg("--server").arg(s.to_string());
        }
        let mut child = cmd
            .args(["--user", user])
            .env("UCM_PASSWORD", password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ucm assistant console");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&l).unwrap_or_else(|e| {
                    panic!("console printed a line that is not JSON ({e}): {l}")
                });
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Console {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn say(&mut self, command: &str) {
        let s = self.stdin.as_mut().expect("stdin open");
        writeln!(s, "{command}").expect("write to the console's stdin");
        s.flush().ok();
    }

    /// The first line from now on that `ok` accepts (earlier ones are kept in `seen`).
    fn expect(&mut self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if ok(&v) {
                        return v;
                    }
                }
                Err(_) => panic!(
                    "{what}: no such line from the console within 15 s; seen:\n{}",
                    self.seen
                        .iter()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            }
        }
    }

    /// Ends stdin; the client exits once every command has its answer.
    fn finish(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        for _ in 0..200 {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("the console did not exit within 10 s of the end of its stdin");
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn line_event(v: &Value, role: &str, dn: &str, state: &str) -> bool {
    v["event"] == "line" && v["role"] == role && v["dn"] == dn && v["state"] == state
}

fn connected_on(s: &Value, line: &str) -> bool {
    calls(s)
        .iter()
        .any(|c| c["state"] == "connected" && c["line"] == line)
}

fn ringing_on(s: &Value, line: &str) -> bool {
    calls(s)
        .iter()
        .any(|c| c["state"] == "ringing" && c["line"] == line)
}

fn all_ended(s: &Value) -> bool {
    calls(s).iter().all(|c| c["state"] == "ended")
}

/// Assistant One runs `ucm assistant console` against the node's 2912 listener: online, it
/// sees Manager One's state; a call to 60001 appears ringing on the proxy line 39001 and the
/// assistant sends it to the manager (`tomanager`), who answers on 60001; the assistant turns
/// Manager One's filtering off from the console and the next call goes straight to the
/// manager; with filtering on again a call is diverted from the console to 40001; a change
/// made through the HTTP API reaches the console as a state event; the directory answers.
/// Every segment on 2912, both ways and the handshake included, is marked CS3.
#[test]
fn r18_the_assistant_console_sees_and_handles_a_managers_calls_over_tcp_2912() {
    let srv = Server::start(&[]);
    let console = srv.addr("assistant_console");
    let cap = if is_root() {
        Some(LoopbackCapture::start(CaptureFilter::ports(&[console.port()])).expect("capture"))
    } else {
        skip_or_fail("capturing the marks on 2912 needs root");
        None
    };
    let caller = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.19.10"],
    );
    let manager = Sim::start(
        &srv,
        &[
            "--device",
            "SEP00036BC7C001",
            "--first-ip",
            "127.0.19.20",
            "--auto-answer",
        ],
    );
    // The console answers by a push to the phone's web server on port 80 (the service's
    // phone_http_port): the phone has an address of its own, so 80 is free there.
    let assistant = Sim::start(
        &srv,
        &[
            "--device",
            "SEP00036BC7C002",
            "--first-ip",
            "127.0.19.30",
            "--http-port",
            "80",
        ],
    );
    let a = caller.http("SEP00036BC7B973");
    let m = manager.http("SEP00036BC7C001");
    let s = assistant.http("SEP00036BC7C002");
    let jsmith = Some(("jsmith", "cisco"));
    let hang_up = || {
        let (_, body) = push(a, jsmith, &["Key:Onhook"]);
        assert!(body.contains(r#"Status="0""#), "{body}");
        wait_state(a, 10, "the caller hung up", all_ended);
        wait_state(m, 10, "the manager's phone is idle", all_ended);
        wait_state(s, 10, "the assistant's phone is idle", all_ended);
    };

    let mut c = Console::start(console, "assistant1", "cisco");
    let online = c.expect("the answer to going online", |v| v["managers"].is_array());
    let m1 = &online["managers"][0];
    assert_eq!(m1["manager"], "manager1", "{online}");
    assert_eq!(m1["line"], "60001", "{online}");
    assert_eq!(m1["proxy_line"], "39001", "{online}");
    assert_eq!(m1["state"]["filter_on"], true, "{online}");

    // 1. A call to the manager rings at the proxy line; the console sees it and sends it on.
    let (status, body) = push(a, jsmith, &["Dial:60001"]);
    assert!(status == 200 && body.contains(r#"Status="0""#), "{body}");
    let ev = c.expect("the proxy line rings", |v| {
        line_event(v, "proxy", "39001", "ringing")
    });
    assert_eq!(ev["manager"], "manager1", "{ev}");
    let call = ev["call"].as_u64().expect("call number");
    wait_state(s, 10, "the proxy line rings", |st| ringing_on(st, "39001"));
    c.say(&format!("tomanager {call}"));
    let r = c.expect("the answer to tomanager", |v| v.get("id").is_some());
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["to"], "60001", "{r}");
    wait_state(m, 15, "the manager answers on 60001", |st| {
        connected_on(st, "60001")
    });
    c.expect("the manager's line connected", |v| {
        line_event(v, "manager", "60001", "connected")
    });
    hang_up();
    srv.wait_for_log("assistant: call sent to the manager");

    // 1b. Answered from the console: the assistant's phone goes off hook on 39001.
    push(a, jsmith, &["Dial:60001"]);
    let ev = c.expect("the proxy line rings", |v| {
        line_event(v, "proxy", "39001", "ringing") && v["call"].as_u64() != Some(call)
    });
    let call = ev["call"].as_u64().unwrap();
    c.say(&format!("answer {call}"));
    let r = c.expect("the answer to answer", |v| v.get("id").is_some());
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["device"], "SEP00036BC7C002", "{r}");
    wait_state(s, 15, "the assistant talks on 39001", |st| {
        connected_on(st, "39001")
    });
    c.expect("the proxy line connected", |v| {
        line_event(v, "proxy", "39001", "connected")
    });
    // 1c. The answered call is transferred to the manager: the manager's phone answers, the
    //     assistant's is let go, and the caller talks to the manager.
    c.say(&format!("transfer {call}"));
    let r = c.expect("the answer to transfer", |v| v.get("id").is_some());
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["to"], "60001", "{r}");
    wait_state(m, 15, "the manager took the transferred call", |st| {
        connected_on(st, "60001")
    });
    wait_state(s, 10, "the assistant's phone is let go", all_ended);
    wait_state(a, 10, "the caller is still on the call", |st| {
        calls(st).iter().any(|c| c["state"] == "connected")
    });
    // Not the assistant's call any more: a second transfer is refused.
    c.say(&format!("transfer {call}"));
    let r = c.expect("the answer to a second transfer", |v| v.get("id").is_some());
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("not on your phone")),
        "{r}"
    );
    hang_up();

    // 2. Filtering off from the console: the next call goes straight to the manager.
    c.say("filter manager1 off");
    let r = c.expect("the answer to filter off", |v| v.get("id").is_some());
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["state"]["filter_on"], false, "{r}");
    push(a, jsmith, &["Dial:60001"]);
    wait_state(m, 15, "the manager answers (filtering off)", |st| {
        connected_on(st, "60001")
    });
    hang_up();

    // 3. Filtering on again; the call rings at the proxy line and is diverted to 40001.
    c.say("filter manager1 on");
    let r = c.expect("the answer to filter on", |v| v.get("id").is_some());
    assert_eq!(r["state"]["filter_on"], true, "{r}");
    push(a, jsmith, &["Dial:60001"]);
    let ev = c.expect("the proxy line rings again", |v| {
        line_event(v, "proxy", "39001", "ringing")
    });
    let call = ev["call"].as_u64().unwrap();
    c.say(&format!("divert {call} 40001"));
    let r = c.expect("the answer to divert", |v| v.get("id").is_some());
    assert_eq!(r["ok"], true, "{r}");
    wait_state(s, 15, "40001 rings", |st| ringing_on(st, "40001"));
    hang_up();
    // A call that is not ringing at the proxy line cannot be sent anywhere.
    c.say(&format!("tomanager {call}"));
    let r = c.expect("the refusal of tomanager", |v| v.get("id").is_some());
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("not ringing")),
        "{r}"
    );

    // 4. A change through the HTTP API (the manager's DND) reaches the console.
    let http = srv.addr("http");
    let (status, body) = crate::assistant_console::api_put(
        http,
        "/ucm/assistant/managers/manager1",
        ("manager1", "cisco"),
        r#"{"dnd": true}"#,
    );
    assert_eq!(status, 200, "{body}");
    let ev = c.expect("the state event", |v| {
        v["event"] == "state" && v["state"]["dnd"] == true
    });
    assert_eq!(ev["manager"], "manager1", "{ev}");

    // 5. The directory.
    c.say("directory manager");
    let r = c.expect("the directory's answer", |v| v["entries"].is_array());
    let users: Vec<&str> = r["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["user"].as_str())
        .collect();
    assert!(
        users.contains(&"manager1") && users.contains(&"manager2"),
        "{r}"
    );
    let st = c.finish();
    assert!(
        st.success(),
        "the console exits 0 at the end of stdin: {st:?}"
    );

    if let Some(cap) = cap {
        std::thread::sleep(Duration::from_millis(200));
        let packets = cap.stop();
        let on_2912: Vec<_> = packets
            .iter()
            .filter(|p| p.proto == Transport::Tcp && (p.src == console || p.dst == console))
            .collect();
        assert!(
            on_2912.iter().any(|p| p.dst == console && p.is_syn()),
            "the console's SYN was captured"
        );
        assert!(
            on_2912.iter().any(|p| p.src == console && p.is_syn_ack()),
            "the server's SYN-ACK was captured"
        );
        for p in &on_2912 {
            assert_eq!(p.dscp, Dscp::CS3, "every segment on 2912 is CS3: {p:?}");
        }
    }
}

/// A PUT to the node's HTTP API with HTTP Basic credentials: status and body.
pub fn api_put(addr: SocketAddr, path: &str, (u, p): (&str, &str), body: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let auth = ucm::wire::codec::base64_encode(format!("{u}:{p}").as_bytes());
    write!(
        s,
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let (status, _, body) = crate::common::split_http(&raw);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A raw protocol connection (what a stranger or a script sees).
struct Raw {
    s: TcpStream,
    r: BufReader<TcpStream>,
}

impl Raw {
    fn open(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect 2912");
        s.set_read_timeout(Some(Duration::from_secs(15))).ok();
        let r = BufReader::new(s.try_clone().unwrap());
        let mut raw = Raw { s, r };
        let hello = raw.line().expect("hello");
        assert_eq!(hello["event"], "hello", "{hello}");
        raw
    }

    /// The next line, or None at the end of the connection.
    fn line(&mut self) -> Option<Value> {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"))),
        }
    }

    fn send(&mut self, v: &Value) {
        writeln!(self.s, "{v}").unwrap();
    }

    /// Sends a request and returns its reply (skipping events).
    fn ask(&mut self, v: Value) -> Value {
        self.send(&v);
        loop {
            let l = self
                .line()
                .unwrap_or_else(|| panic!("the server closed on {v}"));
            if l.get("id") == v.get("id") && l.get("event").is_none() {
                return l;
            }
        }
    }

    fn login(addr: SocketAddr, user: &str) -> Raw {
        let mut c = Raw::open(addr);
        let r = c.ask(json!({"id": 1, "cmd": "login", "user": user, "password": "cisco"}));
        assert_eq!(r["ok"], true, "{r}");
        c
    }
}

/// The demo with a 2 s Request Timeout and 30 more end users (for the directory's limit).
fn demo_for_strangers(dir: &std::path::Path) -> std::path::PathBuf {
    let mut users = String::new();
    for i in 0..30 {
        users.push_str(&format!(
            "  - userid: temp{i:02}\n    first_name: Temp\n    last_name: Worker {i:02}\n"
        ));
    }
    let text = ucm::config::DEMO_YAML
        .replace(
            "service_parameters:\n",
            "service_parameters:\n  assistant: { console_request_timeout_seconds: 2, console_heartbeat_seconds: 1 }\n",
        )
        .replace("\nend_users:\n", &format!("\nend_users:\n{users}"));
    assert_eq!(text.matches("temp29").count(), 1, "the demo changed shape");
    write_file(dir, "demo-console.yaml", &text)
}

/// Strangers and attackers on 2912 get bounded work and the protocol's errors, and the
/// database decides between 50 consoles racing to change one manager's state.
fn attack_the_console(srv: &Server) {
    let addr = srv.addr("assistant_console");
    // 1,000 connections that never log in: each is closed after the Request Timeout (2 s)
    // with the protocol's error, and a real console is served meanwhile.
    let t0 = Instant::now();
    let mut idle: Vec<TcpStream> = (0..1000)
        .map(|i| {
            TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"))
        })
        .collect();
    let mut c = Raw::login(addr, "assistant1");
    let r = c.ask(json!({"id": 2, "cmd": "ping"}));
    assert_eq!(r["ok"], true, "{r}");
    let mut closed = 0;
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let mut all = Vec::new();
        match s.read_to_end(&mut all) {
            Ok(_) => {
                let text = String::from_utf8_lossy(&all);
                assert!(
                    text.contains("no login within the request timeout (2 s)"),
                    "{text}"
                );
                closed += 1;
            }
            Err(e) => panic!("a stranger's connection was not closed: {e}"),
        }
    }
    assert_eq!(closed, 1000);
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "strangers held on for {took:?}"
    );
    drop(idle);

    // A line that never ends: refused at 8 KiB, the connection closed.
    let mut big = Raw::open(addr);
    let junk = vec![b'x'; 64 * 1024];
    let _ = big.s.write_all(&junk);
    let l = big.line().expect("an error line");
    assert!(
        l["error"]
            .as_str()
            .is_some_and(|e| e.contains("longer than 8192")),
        "{l}"
    );
    assert!(big.line().is_none(), "closed after the long line");
    // A line begun but never finished (after login): closed after the Request Timeout.
    let mut slow = Raw::login(addr, "assistant1");
    slow.s.write_all(b"{\"id\":3,").unwrap();
    let l = loop {
        let l = slow.line().expect("an error line");
        if l.get("event").is_none() {
            break l;
        }
    };
    assert!(
        l["error"]
            .as_str()
            .is_some_and(|e| e.contains("did not end")),
        "{l}"
    );
    // Not JSON, unknown commands, commands before login: errors, the connection stays.
    let mut x = Raw::open(addr);
    x.s.write_all(b"hello there\n").unwrap();
    let l = x.line().unwrap();
    assert!(
        l["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not parse")),
        "{l}"
    );
    let r = x.ask(json!({"id": 4, "cmd": "set", "manager": "manager1", "change": {"dnd": true}}));
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("log in first")),
        "{r}"
    );
    // A wrong password: refused, the connection closed.
    let r = x.ask(json!({"id": 5, "cmd": "login", "user": "assistant1", "password": "wrong"}));
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("login failed")),
        "{r}"
    );
    assert!(x.line().is_none(), "closed after a failed login");
    // A user who is nobody's assistant; another manager's state.
    let mut j = Raw::open(addr);
    let r = j.ask(json!({"id": 6, "cmd": "login", "user": "jsmith", "password": "cisco"}));
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("not an assistant")),
        "{r}"
    );
    let r = c.ask(json!({"id": 7, "cmd": "set", "manager": "manager2", "change": {"dnd": true}}));
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("not an assistant of")),
        "{r}"
    );
    let r = c.ask(json!({"id": 8, "cmd": "set", "manager": "manager1", "change": {"inclusive_filters": ["1*2"]}}));
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("inclusive_filters")),
        "{r}"
    );
    // The directory: 25 entries at most, then the seed's message.
    let r = c.ask(json!({"id": 9, "cmd": "directory", "name": "temp"}));
    assert_eq!(
        r["error"], "Your search returned more than 25 entries. Please refine your search.",
        "{r}"
    );
    let r = c.ask(json!({"id": 10, "cmd": "directory", "name": "temp0"}));
    assert_eq!(r["entries"].as_array().map(Vec::len), Some(10), "{r}");

    // 50 consoles race from one version: exactly one wins, the rest hear the conflict.
    let r = c.ask(json!({"id": 11, "cmd": "managers"}));
    let v0 = r["managers"][0]["state"]["version"].as_i64().unwrap();
    let racers: Vec<Raw> = (0..50).map(|_| Raw::login(addr, "assistant1")).collect();
    let results: Vec<Value> = std::thread::scope(|sc| {
        let hs: Vec<_> = racers
            .into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                sc.spawn(move || {
                    r.ask(json!({"id": 100 + i, "cmd": "set", "manager": "manager1",
                        "change": {"dnd": i % 2 == 0}, "if_version": v0}))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won = results.iter().filter(|r| r["ok"] == true).count();
    let lost = results.iter().filter(|r| r["conflict"] == true).count();
    assert_eq!((won, lost), (1, 49), "{results:?}");
    for r in results.iter().filter(|r| r["conflict"] == true) {
        assert_eq!(r["state"]["version"], v0 + 1, "{r}");
    }
    // 50 unconditional changes at once: each counted once.
    let racers: Vec<Raw> = (0..50).map(|_| Raw::login(addr, "assistant1")).collect();
    std::thread::scope(|sc| {
        for (i, mut r) in racers.into_iter().enumerate() {
            sc.spawn(move || {
                let v = r.ask(json!({"id": i, "cmd": "set", "manager": "manager1",
                    "change": {"divert_all": i % 2 == 0}}));
                assert_eq!(v["ok"], true, "{v}");
            });
        }
    });
    let r = c.ask(json!({"id": 12, "cmd": "managers"}));
    assert_eq!(r["managers"][0]["state"]["version"], v0 + 51, "{r}");
    // Heartbeats come every second (the definition's Heartbeat Interval).
    let mut h = Raw::login(addr, "assistant1");
    let t = Instant::now();
    let l = h.line().unwrap();
    assert_eq!(l["event"], "heartbeat", "{l}");
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn r18_the_console_bounds_strangers_and_the_database_decides_races_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let def = demo_for_strangers(dir.path());
    let srv = Server::start(&["--config", def.to_str().unwrap()]);
    attack_the_console(&srv);
}

#[tokio::test]
async fn r18_the_console_bounds_strangers_and_the_database_decides_races_postgres() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let def = demo_for_strangers(dir.path());
        let srv = Server::start(&["--config", def.to_str().unwrap(), "--db", &url]);
        attack_the_console(&srv);
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

/// The demo on two nodes of net `127.{net}.0.0/16`: ucm-pub (everything) and ucm-sub1 (call
/// processing, TFTP, phone services and the Assistant), phones registering with ucm-sub1 first.
fn demo_on_two_nodes(dir: &std::path::Path, net: u8) -> std::path::PathBuf {
    let text = ucm::config::DEMO_YAML
        .replacen(
            "  - name: ucm-pub\n    address: 127.0.0.1\n",
            &format!(
                "  - name: ucm-sub1\n    address: 127.{net}.0.2\n    bind: 127.{net}.0.2\n    \
                 services: [call-processing, tftp, phone-services, assistant]\n  \
                 - name: ucm-pub\n    address: 127.{net}.0.1\n    bind: 127.{net}.0.1\n"
            ),
            1,
        )
        .replace("node_group: [ucm-pub]", "node_group: [ucm-sub1, ucm-pub]");
    assert!(text.contains("bind: 127."), "the demo changed shape");
    write_file(dir, &format!("demo-two-nodes-{net}.yaml"), &text)
}

/// Node `name` of `def` on `db`, SIP and the console on the definition's ports (5060 and 2912
/// on the node's own address).
fn node(def: &std::path::Path, db: &str, name: &str) -> Server {
    let data_dir = tempfile::tempdir().unwrap();
    let mut cmd = ucm();
    cmd.args(["serve", "--config"])
        .arg(def)
        .args(["--db", db, "--node", name])
        .args([
            "--http-port",
            "0",
            "--https-port",
            "0",
            "--tftp-http-port",
            "0",
        ])
        .args(["--tftp-port", "0", "--sips-port", "0", "--snmp-port", "0"])
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("UCM_LOG", "info");
    let (child, ready, stderr) = crate::common::spawn_ready(cmd, name, Duration::from_secs(60));
    Server {
        child,
        ready,
        data_dir,
        stderr,
        seen: Default::default(),
    }
}

/// The logs of `srv` once they contain `needle`, within `secs`.
fn wait_log(srv: &Server, needle: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let logs = srv.logs();
        if logs.contains(needle) {
            return logs;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the node's log within {secs} s:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two nodes on PostgreSQL, ucm-pub holding the Assistant's lease, the phones on ucm-sub1 and
/// Assistant One's console on ucm-pub with ucm-sub1 as its backup. A manager's state set on
/// ucm-pub drives ucm-pub's redirects, and reaches ucm-sub1 through the change feed at once:
/// Manager Two's phone there rings silently under DND. `kill -9` of ucm-pub: ucm-sub1 takes
/// the lease and the route point, the console fails over to it and logs in again, and calls
/// to the manager are routed the same (the state is the database's); a change made from the
/// console on ucm-sub1 then routes the next call to the proxy line, which the console sends to
/// the manager.
#[tokio::test]
async fn r18_the_assistant_lease_moves_on_kill_and_routing_and_the_console_carry_on_postgres() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let net = 71;
        let def = demo_on_two_nodes(dir.path(), net);
        let mut pubn = node(&def, &url, "ucm-pub");
        wait_log(&pubn, "assistant: serving the route point", 10);
        let sub = node(&def, &url, "ucm-sub1");
        wait_log(&sub, "standing by; another node serves the route point", 10);
        wait_log(&sub, "route points served by other nodes", 10);
        let ip = |h: &str| format!("127.{net}.1.{h}");
        let (ca, ma, aa, m2a, a2a) = (ip("10"), ip("20"), ip("30"), ip("40"), ip("50"));
        let caller = Sim::start(&sub, &["--device", "SEP00036BC7B973", "--first-ip", &ca]);
        let manager = Sim::start(
            &sub,
            &[
                "--device",
                "SEP00036BC7C001",
                "--first-ip",
                &ma,
                "--auto-answer",
            ],
        );
        let assistant = Sim::start(&sub, &["--device", "SEP00036BC7C002", "--first-ip", &aa]);
        let manager2 = Sim::start(&sub, &["--device", "SEP00036BC7C003", "--first-ip", &m2a]);
        let assistant2 = Sim::start(&sub, &["--device", "SEP00036BC7C004", "--first-ip", &a2a]);
        let a = caller.http("SEP00036BC7B973");
        let m = manager.http("SEP00036BC7C001");
        let s = assistant.http("SEP00036BC7C002");
        let m2 = manager2.http("SEP00036BC7C003");
        let s2 = assistant2.http("SEP00036BC7C004");
        for p in [a, m, s, m2, s2] {
            wait_state(p, 15, "registered", |st| st["registered"] == true);
        }
        let jsmith = Some(("jsmith", "cisco"));
        let hang_up = || {
            let (_, body) = push(a, jsmith, &["Key:Onhook"]);
            assert!(body.contains(r#"Status="0""#), "{body}");
            wait_state(a, 10, "the caller hung up", all_ended);
            for p in [m, s, m2, s2] {
                wait_state(p, 10, "the phones are idle", all_ended);
            }
        };
        let (pub_console, sub_console) = (
            pubn.addr("assistant_console"),
            sub.addr("assistant_console"),
        );
        assert_eq!(pub_console.port(), 2912, "the seed's port");
        let mut c = Console::start_servers(&[pub_console, sub_console], "assistant1", "cisco");
        c.expect("online at ucm-pub", |v| v["managers"].is_array());

        // 1. Filtering off from the console on ucm-pub: ucm-pub sends the call to the manager.
        c.say("filter manager1 off");
        let r = c.expect("the answer to filter off", |v| v.get("id").is_some());
        assert_eq!(r["state"]["filter_on"], false, "{r}");
        push(a, jsmith, &["Dial:60001"]);
        wait_state(m, 15, "the manager answers", |st| connected_on(st, "60001"));
        hang_up();
        wait_log(&pubn, "destination=60001", 5);

        // 2. Manager Two's DND set on ucm-pub rings silently at the manager's phone on ucm-sub1.
        let (status, body) = api_put(
            pubn.addr("http"),
            "/ucm/assistant/managers/manager2",
            ("manager2", "cisco"),
            r#"{"dnd": true}"#,
        );
        assert_eq!(status, 200, "{body}");
        wait_log(
            &sub,
            "shared line rings silently at the manager's phone: true",
            5,
        );
        push(a, jsmith, &["Dial:60002"]);
        let ringing = |st: &Value| {
            calls(st)
                .into_iter()
                .find(|c| c["state"] == "ringing" && c["line"] == "60002")
        };
        let sm = wait_state(m2, 15, "Manager Two's phone shows the call", |st| {
            ringing(st).is_some()
        });
        wait_state(s2, 15, "Assistant Two's phone rings", |st| {
            ringing(st).is_some()
        });
        assert_eq!(ringing(&sm).unwrap()["silent"], true, "{sm:#}");
        hang_up();

        // 3. kill -9 ucm-pub: ucm-sub1 serves the route point; the console fails over.
        crate::assistant_console::kill9(&mut pubn);
        let killed = Instant::now();
        wait_log(&sub, "assistant: serving the route point", 15);
        eprintln!(
            "ucm-sub1 served Assistant_RP {:?} after kill -9 of ucm-pub",
            killed.elapsed()
        );
        let online = c.expect("online again at ucm-sub1", |v| v["managers"].is_array());
        assert_eq!(
            online["managers"][0]["state"]["filter_on"], false,
            "{online}"
        );

        // 4. The same state routes the same on ucm-sub1.
        push(a, jsmith, &["Dial:60001"]);
        wait_state(m, 20, "the manager answers (routed by ucm-sub1)", |st| {
            connected_on(st, "60001")
        });
        hang_up();

        // 5. Filtering on from the console, now on ucm-sub1: the proxy line rings, and the
        //    console sends the call to the manager.
        c.say("filter manager1 on");
        let r = c.expect("the answer to filter on", |v| v.get("id").is_some());
        assert_eq!(r["ok"], true, "{r}");
        push(a, jsmith, &["Dial:60001"]);
        let ev = c.expect("the proxy line rings", |v| {
            line_event(v, "proxy", "39001", "ringing")
        });
        c.say(&format!("tomanager {}", ev["call"]));
        let r = c.expect("the answer to tomanager", |v| v.get("id").is_some());
        assert_eq!(r["ok"], true, "{r}");
        wait_state(m, 15, "the manager answers", |st| connected_on(st, "60001"));
        hang_up();
        drop(c);
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

fn kill9(s: &mut Server) {
    // SAFETY: kill with a pid we own and a valid signal number.
    unsafe {
        libc::kill(s.child.id() as libc::pid_t, libc::SIGKILL);
    }
    let _ = s.child.wait();
}

/// Assistant selection: Manager One has two assistants (assistant1 on 39001, assistant3 on
/// 39002; RNA forwarding on, 1 s). With assistant3 selected from the console a call rings at
/// 39002 first and goes on to 39001 unanswered; with the selection cleared, at 39001 first.
/// A selection of someone who is not the manager's assistant is refused.
#[test]
fn r18_assistant_selection_from_the_console_decides_which_proxy_line_rings_first() {
    let dir = tempfile::tempdir().unwrap();
    let def = crate::assistant::demo_with_rna_forwarding(dir.path());
    let srv = Server::start(&["--config", def.to_str().unwrap()]);
    let caller = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.19.110"],
    );
    let first = Sim::start(
        &srv,
        &["--device", "SEP00036BC7C002", "--first-ip", "127.0.19.120"],
    );
    let third = Sim::start(
        &srv,
        &["--device", "SEP00036BC7C005", "--first-ip", "127.0.19.130"],
    );
    let a = caller.http("SEP00036BC7B973");
    let s1 = first.http("SEP00036BC7C002");
    let s3 = third.http("SEP00036BC7C005");
    let jsmith = Some(("jsmith", "cisco"));
    let mut c = Console::start(srv.addr("assistant_console"), "assistant1", "cisco");
    c.expect("online", |v| v["managers"].is_array());
    c.say("select manager1 jsmith");
    let r = c.expect("the refusal", |v| v.get("id").is_some());
    assert!(
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("not an assistant of")),
        "{r}"
    );
    c.say("select manager1 assistant3");
    let r = c.expect("the selection", |v| v.get("id").is_some());
    assert_eq!(r["state"]["selected_assistant"], "assistant3", "{r}");
    push(a, jsmith, &["Dial:60001"]);
    wait_state(
        s3,
        15,
        "the selected assistant's proxy line rings first",
        |st| ringing_on(st, "39002"),
    );
    assert!(
        all_ended(&crate::phone::state(s1)),
        "39001 does not ring yet"
    );
    wait_state(s1, 15, "then the first assistant's (RNA)", |st| {
        ringing_on(st, "39001")
    });
    push(a, jsmith, &["Key:Onhook"]);
    wait_state(s1, 10, "idle", all_ended);
    c.say("select manager1");
    let r = c.expect("the selection cleared", |v| v.get("id").is_some());
    assert_eq!(r["state"]["selected_assistant"], Value::Null, "{r}");
    push(a, jsmith, &["Dial:60001"]);
    wait_state(
        s1,
        15,
        "the first assistant's proxy line rings first",
        |st| ringing_on(st, "39001"),
    );
    assert!(
        all_ended(&crate::phone::state(s3)),
        "39002 does not ring yet"
    );
    push(a, jsmith, &["Key:Onhook"]);
    drop(c);
}

/// `ucm assistant check-dialplan`: the demo follows the seed's rules (file and stored
/// definition); a definition that breaks each rule gets each violation named, exit 1, and
/// `ucm config check` refuses it too.
#[test]
fn r18_check_dialplan_names_each_line_that_reaches_a_manager_and_each_broken_rule() {
    let dir = tempfile::tempdir().unwrap();
    let demo = write_file(dir.path(), "demo.yaml", ucm::config::DEMO_YAML);
    let run = |args: &[&str]| {
        let o = ucm()
            .args(["assistant", "check-dialplan"])
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["--config", demo.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("ok: the Assistant's dial plan follows the rules"),
        "{out}"
    );
    // The stored definition (the demo a node imported).
    let srv = Server::start(&[]);
    let (code, out, err) = run(&["--data-dir", srv.data_dir.path().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("the stored definition: ok"), "{out}");
    drop(srv);

    let edits = [
        // jsmith's phone gets the manager's CSS: its line reaches 60001 directly.
        (
            "    device_pool: HQ_DP\n    css: Internal_CSS\n    owner: jsmith\n",
            "    device_pool: HQ_DP\n    css: MANAGER_EVERYONE_CSS\n    owner: jsmith\n",
        ),
        // The 8.XXXXX translation routes through it too.
        (
            "    description: Dial 8 + extension; the 8 is dropped\n    css: Internal_CSS\n",
            "    description: Dial 8 + extension; the 8 is dropped\n    css: MANAGER_EVERYONE_CSS\n",
        ),
        // A second 39001 in another partition.
        (
            "directory_numbers:\n",
            "directory_numbers:\n  - pattern: \"39001\"\n    partition: Internal_PT\n  \
             - pattern: \"60002\"\n    partition: Internal_PT\n",
        ),
        // Assistant Two's appearance of 60002 in a partition of its own.
        (
            "      - dn: \"60002\"\n        partition: Assistant_Everyone\n        label: Manager Two\n",
            "      - dn: \"60002\"\n        partition: Internal_PT\n        label: Manager Two\n      \
             - dn: \"39001\"\n        partition: Internal_PT\n",
        ),
        // Manager One logs in with EM (not a mobile manager), Assistant One too.
        (
            "    associated_devices: [SEP00036BC7C001]\n",
            "    associated_devices: [SEP00036BC7C001]\n    device_profiles: [hotdesk-logout]\n",
        ),
        (
            "    associated_devices: [SEP00036BC7C002]\n",
            "    associated_devices: [SEP00036BC7C002]\n    device_profiles: [hotdesk-logout]\n",
        ),
    ];
    let mut text = ucm::config::DEMO_YAML.to_string();
    for (old, new) in edits {
        assert!(text.contains(old), "the demo has {old:?}");
        text = text.replacen(old, new, 1);
    }
    let bad = write_file(dir.path(), "bad.yaml", &text);
    let (code, out, err) = run(&["--config", bad.to_str().unwrap(), "--json"]);
    assert_eq!(code, Some(1), "{out}{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["ok"], false, "{doc:#}");
    let vs = doc["violations"].as_array().unwrap();
    let has = |rule: &str, path: &str, words: &str| {
        vs.iter().any(|v| {
            v["rule"] == rule
                && v["path"].as_str().is_some_and(|p| p.starts_with(path))
                && v["message"].as_str().is_some_and(|m| m.contains(words))
        })
    };
    assert!(
        has(
            "manager-reachable",
            "devices[",
            "line 10001 (Internal_PT) on SEP00036BC7B973 reaches manager \"manager1\"'s line 60001"
        ),
        "{doc:#}"
    );
    assert!(
        has(
            "manager-reachable",
            "translation_patterns[0].css",
            "8.XXXXX"
        ),
        "{doc:#}"
    );
    assert!(
        has("proxy-line-unique", "assistant.managers[0]", "39001"),
        "{doc:#}"
    );
    assert!(
        has(
            "shared-line-partition",
            "assistant.managers[1].assistants[0]",
            "60002"
        ),
        "{doc:#}"
    );
    assert!(
        has("mobile-manager", "assistant.managers[0].mobile", "manager1"),
        "{doc:#}"
    );
    assert!(
        has(
            "assistant-em",
            "assistant.managers[0].assistants[0]",
            "assistant1"
        ),
        "{doc:#}"
    );
    // No line the rules allow is named: the route point's, the proxy lines, the manager's own.
    for v in vs {
        let m = v["message"].as_str().unwrap();
        assert!(
            !m.starts_with("line 39001")
                && !m.starts_with("line 6XXXX")
                && !m.starts_with("line 60001"),
            "{v}"
        );
    }
    // `ucm config check` runs the same rules.
    let o = ucm().args(["config", "check"]).arg(&bad).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("[manager-reachable]") && text.contains("[assistant-em]"),
        "{text}"
    );
    // Unreadable input: exit 2.
    let (code, _, err) = run(&["--config", "/nonexistent.yaml"]);
    assert_eq!(code, Some(2), "{err}");
}

/// README's Assistant Console example, as written, in a network namespace of its own (the demo
/// binds the standard ports there).
#[test]
fn r18_readme_assistant_console_example_runs_as_written() {
    let blocks = crate::readme::sh_blocks("## Assistant", 2);
    let lines: Vec<&str> = blocks[1].lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    crate::readme::run(
        "Assistant Console",
        &[],
        &lines,
        &[],
        &[
            (1, "\"proxy_line\":\"39001\""),
            (1, "\"dnd\":true"),
            (2, "ok: the Assistant"),
        ],
        "",
    );
}

/// The console's failover is governed by the heartbeat: ucm-pub is stopped (SIGSTOP: its
/// connections stay open, nothing more comes), and with a 1 s Heartbeat Interval and a 2 s
/// Request Timeout the console, hearing nothing for 3 s, logs in to ucm-sub1 within seconds.
#[tokio::test]
async fn r18_a_silent_assistant_server_makes_the_console_fail_over_by_heartbeat_postgres() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let def = demo_on_two_nodes(dir.path(), 72);
        let text = std::fs::read_to_string(&def).unwrap().replace(
            "service_parameters:\n",
            "service_parameters:\n  assistant: { console_heartbeat_seconds: 1, console_request_timeout_seconds: 2 }\n",
        );
        std::fs::write(&def, text).unwrap();
        let mut pubn = node(&def, &url, "ucm-pub");
        let sub = node(&def, &url, "ucm-sub1");
        let (p, s) = (
            pubn.addr("assistant_console"),
            sub.addr("assistant_console"),
        );
        let mut c = Console::start_servers(&[p, s], "assistant1", "cisco");
        c.expect("online at ucm-pub", |v| v["managers"].is_array());
        c.expect("a heartbeat", |v| v["event"] == "heartbeat");
        // SAFETY: kill with a pid we own and a valid signal number.
        unsafe {
            libc::kill(pubn.child.id() as libc::pid_t, libc::SIGSTOP);
        }
        let t = Instant::now();
        c.expect("online again at ucm-sub1", |v| v["managers"].is_array());
        let took = t.elapsed();
        eprintln!("the console failed over {took:?} after ucm-pub went silent");
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(10),
            "{took:?}"
        );
        c.say("dnd manager1 on");
        let r = c.expect("the answer from ucm-sub1", |v| v.get("id").is_some());
        assert_eq!(r["state"]["dnd"], true, "{r}");
        drop(c);
        // SAFETY: as above.
        unsafe {
            libc::kill(pubn.child.id() as libc::pid_t, libc::SIGCONT);
        }
        kill9(&mut pubn);
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}
