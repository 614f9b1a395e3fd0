//! Unified CM Assistant (issue 18), first slice: the demo carries the seed's proxy line and
//! shared line examples, and with no Assistant service the route point's Forward No Answer to
//! the pattern `6XXXX` lets calls to the managers fall through to them, over the wire.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use ucm::wire::codec::base64_encode;

use crate::common::{split_http, ucm, write_file, PgDb, Server};
use crate::phone::{calls, push, wait_state, Sim};

/// The demo cluster with no node running the Assistant service.
fn demo_without_the_service(dir: &std::path::Path) -> std::path::PathBuf {
    let text =
        ucm::config::DEMO_YAML.replace("redirector, assistant, attendant", "redirector, attendant");
    assert_ne!(
        text,
        ucm::config::DEMO_YAML,
        "the demo node's services changed"
    );
    write_file(dir, "demo-no-assistant.yaml", &text)
}

/// One request to the node's HTTP API: status and body.
fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    creds: Option<(&str, &str)>,
    body: &str,
) -> (u16, String) {
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
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let (status, _, body) = split_http(&raw);
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Proxy line mode with no Assistant service: jsmith's phone dials 60001, the route point
/// `6XXXX` intercepts it (jsmith's CSS does not reach `Assistant_Manager`), its Forward No
/// Answer forwards the dialled number through `MANAGER_EVERYONE_CSS`, and Manager One's phone
/// rings on line 60001 (the INVITE's To names 60001, not the pattern), answers, and the two
/// talk. Dialling the manager's number through the `8.XXXXX` translation falls through too.
#[test]
fn r18_calls_to_a_manager_fall_through_the_route_point_to_the_managers_phone() {
    let dir = tempfile::tempdir().unwrap();
    let def = demo_without_the_service(dir.path());
    let srv = Server::start(&["--config", def.to_str().unwrap()]);
    let caller = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.18.10"],
    );
    let manager = Sim::start(
        &srv,
        &[
            "--device",
            "SEP00036BC7C001",
            "--first-ip",
            "127.0.18.20",
            "--auto-answer",
        ],
    );
    let a = caller.http("SEP00036BC7B973");
    let m = manager.http("SEP00036BC7C001");
    let connected = |s: &Value| {
        calls(s)
            .iter()
            .any(|c| c["state"] == "connected" && c["rtp_rx_packets"].as_u64().unwrap_or(0) > 5)
    };
    for (n, dialled) in ["60001", "860001"].iter().enumerate() {
        let url = format!("Dial:{dialled}");
        let (status, body) = push(a, Some(("jsmith", "cisco")), &[&url]);
        assert!(status == 200 && body.contains(r#"Status="0""#), "{body}");
        let sm = wait_state(m, 15, "the manager's phone answers", connected);
        let call = calls(&sm)
            .into_iter()
            .find(|c| c["state"] == "connected")
            .unwrap();
        // The sim picks the line from the INVITE's To: the dialled number reached it.
        assert_eq!(call["line"], "60001", "{call:#}");
        assert_eq!(call["direction"], "inbound", "{call:#}");
        assert_eq!(call["remote_number"], "10001", "{call:#}");
        wait_state(a, 15, "the caller hears the manager", connected);
        let (_, body) = push(a, Some(("jsmith", "cisco")), &["Key:Onhook"]);
        assert!(body.contains(r#"Status="0""#), "{body}");
        let ended =
            |s: &Value| calls(s).len() > n && calls(s).iter().all(|c| c["state"] == "ended");
        wait_state(m, 10, "the manager sees the hangup", ended);
        wait_state(a, 10, "the caller hung up", ended);
    }
    let logs = srv.logs();
    assert!(
        logs.contains("no service on the route point; call forwarding applies"),
        "{logs}"
    );
}

/// Shared line mode: 60002 rings Manager Two's and Assistant Two's phones (both show line
/// 60002; the assistant's phone also has its own 40002), the assistant answers, and the
/// manager's phone stops ringing.
#[test]
fn r18_a_shared_manager_line_rings_at_the_manager_and_the_assistant() {
    let srv = Server::start(&[]);
    let caller = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.18.30"],
    );
    let manager = Sim::start(
        &srv,
        &["--device", "SEP00036BC7C003", "--first-ip", "127.0.18.40"],
    );
    let assistant = Sim::start(
        &srv,
        &["--device", "SEP00036BC7C004", "--first-ip", "127.0.18.50"],
    );
    let a = caller.http("SEP00036BC7B973");
    let m = manager.http("SEP00036BC7C003");
    let s = assistant.http("SEP00036BC7C004");
    let (status, body) = push(a, Some(("jsmith", "cisco")), &["Dial:60002"]);
    assert!(status == 200 && body.contains(r#"Status="0""#), "{body}");
    let ringing_on_60002 = |st: &Value| {
        calls(st)
            .iter()
            .any(|c| c["state"] == "ringing" && c["line"] == "60002")
    };
    wait_state(
        m,
        15,
        "the manager's phone rings on 60002",
        ringing_on_60002,
    );
    wait_state(
        s,
        15,
        "the assistant's phone rings on 60002",
        ringing_on_60002,
    );
    let (_, body) = push(s, Some(("assistant2", "cisco")), &["Key:Offhook"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    wait_state(s, 15, "the assistant answered", |st| {
        calls(st).iter().any(|c| c["state"] == "connected")
    });
    wait_state(m, 15, "the manager's phone stops ringing", |st| {
        calls(st).iter().all(|c| c["state"] == "ended")
    });
}

/// `ucm config check`: a forward to a pattern is a destination only when it can match the
/// line's numbers; one that can match none is refused with its place, exit 1.
#[test]
fn r18_config_check_takes_pattern_forwards_and_refuses_ones_that_never_match() {
    let dir = tempfile::tempdir().unwrap();
    let def = |dest: &str| {
        format!(
            "cluster: {{id: x, name: y}}\n\
             partitions: [{{name: RP}}, {{name: MGR}}]\n\
             calling_search_spaces: [{{name: M, partitions: [MGR]}}]\n\
             device_pools: [{{name: DP}}]\n\
             directory_numbers:\n\
             \x20 - {{pattern: \"60001\", partition: MGR}}\n\
             \x20 - pattern: \"6XXXX\"\n\
             \x20   partition: RP\n\
             \x20   call_forward:\n\
             \x20     no_answer: {{destination: \"{dest}\", css: M}}\n\
             devices:\n\
             \x20 - {{name: SEP000000060001, model: Cisco 8845, device_pool: DP, lines: [{{dn: \"60001\", partition: MGR}}]}}\n\
             route_points:\n\
             \x20 - {{name: RP1, device_pool: DP, lines: [{{dn: \"6XXXX\", partition: RP}}]}}\n"
        )
    };
    for ok in ["6XXXX", "60XXX", "60001", "6!"] {
        let f = write_file(dir.path(), "ok.yaml", &def(ok));
        let out = ucm().args(["config", "check"]).arg(&f).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{ok}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (bad, says) in [
        ("7XXXX", "matches no number of the line"),
        ("6XXX", "matches no number of the line"),
        ("6[X", "not a number or pattern"),
    ] {
        let f = write_file(dir.path(), "bad.yaml", &def(bad));
        let out = ucm().args(["config", "check"]).arg(&f).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{bad}: {text}");
        assert!(
            text.contains("directory_numbers[1].call_forward.no_answer.destination")
                && text.contains(says),
            "{bad}: {text}"
        );
    }
}

/// README's Assistant example run as written, in network and PID namespaces of its own (the
/// demo binds the standard ports; each phone serves HTTP on port 80 of its address).
#[test]
fn r18_readme_assistant_example_runs_as_written() {
    let blocks = crate::readme::sh_blocks("## Assistant", 1);
    assert_eq!(blocks.len(), 1);
    let lines: Vec<&str> = blocks[0].lines().collect();
    assert_eq!(lines.len(), 6, "{lines:?}");
    let last = lines.len() - 1;
    let after = format!(
        "tr -d ' \\n' < out{last} > calls.json\n\
         grep -q '\"line\":\"60001\"' calls.json || fail {last} \"not on 60001: $(cat calls.json)\"\n\
         grep -q '\"remote_number\":\"10001\"' calls.json || fail {last} \"not from 10001: $(cat calls.json)\"\n\
         grep -q '\"state\":\"connected\"' calls.json || fail {last} \"not connected: $(cat calls.json)\"\n"
    );
    crate::readme::run(
        "Assistant",
        &[],
        &lines,
        // The reader looks once the call has connected (bounded wait).
        &[(
            last,
            "for i in $(seq 1 200); do curl -s http://127.0.0.30/state/calls | grep -q '\"state\":\"connected\"' && break; sleep 0.1; done",
        )],
        &[(3, "\"filter_on\":false"), (4, "Status=\"0\"")],
        &after,
    );
}

/// A call of `s` ringing on `line`.
fn ringing_on(s: &Value, line: &str) -> bool {
    calls(s)
        .iter()
        .any(|c| c["state"] == "ringing" && c["line"] == line)
}

fn connected_count(s: &Value) -> usize {
    calls(s)
        .iter()
        .filter(|c| c["state"] == "connected")
        .count()
}

fn all_ended(s: &Value) -> bool {
    calls(s).iter().all(|c| c["state"] == "ended")
}

/// Proxy line mode with the Assistant service: the route point `6XXXX` is offered jsmith's
/// call to 60001 (the offer names 60001: the service finds Manager One by it) and the
/// service redirects it by Manager One's state: with Cisco's initial settings (filtering on,
/// inclusive, empty list) to Assistant One's proxy line 39001; the manager intercepts it onto
/// 60001; with filtering off to the manager; with Do Not Disturb (set by the assistant) to
/// the proxy line again; with DivertAll to its target (40001, the assistant's own line).
#[test]
fn r18_the_route_point_redirects_a_managers_call_by_the_managers_state() {
    let srv = Server::start(&[]);
    let http = srv.addr("http");
    let caller = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.18.60"],
    );
    let manager = Sim::start(
        &srv,
        &[
            "--device",
            "SEP00036BC7C001",
            "--first-ip",
            "127.0.18.70",
            "--auto-answer",
        ],
    );
    let assistant = Sim::start(
        &srv,
        &["--device", "SEP00036BC7C002", "--first-ip", "127.0.18.80"],
    );
    let a = caller.http("SEP00036BC7B973");
    let m = manager.http("SEP00036BC7C001");
    let s = assistant.http("SEP00036BC7C002");
    let jsmith = Some(("jsmith", "cisco"));
    let dial = |n: usize| {
        let (status, body) = push(a, jsmith, &["Dial:60001"]);
        assert!(status == 200 && body.contains(r#"Status="0""#), "{body}");
        let _ = n;
    };
    let hang_up = |n: usize| {
        let (_, body) = push(a, jsmith, &["Key:Onhook"]);
        assert!(body.contains(r#"Status="0""#), "{body}");
        wait_state(a, 10, "the caller hung up", |st| {
            calls(st).len() >= n && all_ended(st)
        });
        wait_state(s, 10, "nothing rings at the assistant", all_ended);
        wait_state(m, 10, "nothing rings at the manager", all_ended);
    };
    let put = |who: (&str, &str), body: &str| {
        let (status, text) = api(
            http,
            "PUT",
            "/ucm/assistant/managers/manager1",
            Some(who),
            body,
        );
        assert_eq!(status, 200, "{body}: {text}");
        serde_json::from_str::<Value>(&text).unwrap()
    };

    // 1. Initial settings: to the assistant's proxy line for Manager One.
    dial(1);
    let st = wait_state(s, 15, "the assistant's proxy line rings", |st| {
        ringing_on(st, "39001")
    });
    let c = calls(&st)
        .into_iter()
        .find(|c| c["state"] == "ringing")
        .unwrap();
    assert_eq!(c["remote_number"], "10001", "{c:#}");
    let logs = srv.wait_for_log("call to a manager redirected");
    assert!(
        logs.contains("manager=manager1") && logs.contains("destination=39001"),
        "{logs}"
    );
    // 2. The manager intercepts it: it rings (and is answered) on 60001.
    let (status, body) = api(
        http,
        "POST",
        "/ucm/assistant/managers/manager1/intercept",
        Some(("manager1", "cisco")),
        "",
    );
    assert_eq!(status, 200, "{body}");
    let sm = wait_state(m, 15, "the manager took the intercepted call", |st| {
        connected_count(st) == 1
    });
    let c = calls(&sm)
        .into_iter()
        .find(|c| c["state"] == "connected")
        .unwrap();
    assert_eq!(c["line"], "60001", "{c:#}");
    wait_state(s, 10, "the proxy line stops ringing", all_ended);
    hang_up(1);
    let (status, body) = api(
        http,
        "POST",
        "/ucm/assistant/managers/manager1/intercept",
        Some(("manager1", "cisco")),
        "",
    );
    assert_eq!(status, 404, "{body}");

    // 3. Filtering off: straight to the manager.
    let v = put(("manager1", "cisco"), r#"{"filter_on": false}"#);
    assert_eq!(v["state"]["filter_on"], false, "{v}");
    dial(2);
    wait_state(m, 15, "the manager's phone answers", |st| {
        connected_count(st) == 1
    });
    hang_up(2);

    // 4. Do Not Disturb, set by the assistant: to the proxy line.
    let v = put(("assistant1", "cisco"), r#"{"dnd": true}"#);
    assert_eq!(v["state"]["dnd"], true, "{v}");
    dial(3);
    wait_state(s, 15, "the proxy line rings (manager on DND)", |st| {
        ringing_on(st, "39001")
    });
    hang_up(3);

    // 5. DivertAll to a configured target.
    put(
        ("manager1", "cisco"),
        r#"{"dnd": false, "divert_all": true, "divert_target": "40001"}"#,
    );
    dial(4);
    wait_state(s, 15, "the divert target (40001) rings", |st| {
        ringing_on(st, "40001")
    });
    hang_up(4);
}

/// The API refuses who may not act for the manager and what does not make sense, and the
/// database decides between racing writers: 50 changes from one version, exactly one wins;
/// 50 unconditional changes, each counted once.
fn attack_the_manager_api(srv: &Server) {
    let http = srv.addr("http");
    let path = "/ucm/assistant/managers/manager1";
    for (who, want) in [
        (None, 401),
        (Some(("jsmith", "cisco")), 403),
        (Some(("assistant2", "cisco")), 403),
    ] {
        for method in ["GET", "PUT"] {
            let (status, body) = api(http, method, path, who, r#"{"dnd": true}"#);
            assert_eq!(status, want, "{method} as {who:?}: {body}");
        }
        let (status, _) = api(http, "POST", &format!("{path}/intercept"), who, "");
        assert_eq!(status, want, "intercept as {who:?}");
    }
    let (status, _) = api(
        http,
        "GET",
        "/ucm/assistant/managers/nobody",
        Some(("jsmith", "cisco")),
        "",
    );
    assert_eq!(status, 403);
    let m1 = Some(("manager1", "cisco"));
    for bad in [
        "{",
        "{}",
        r#"{"dnd": "yes"}"#,
        r#"{"colour": 1}"#,
        r#"{"inclusive_filters": ["1*2"]}"#,
        r#"{"exclusive_filters": ["abc"]}"#,
        r#"{"divert_target": "40a01"}"#,
    ] {
        let (status, body) = api(http, "PUT", path, m1, bad);
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, body) = api(
        http,
        "PUT",
        "/ucm/assistant/managers/manager2",
        Some(("manager2", "cisco")),
        r#"{"filter_on": false}"#,
    );
    assert!(
        status == 400 && body.contains("shared line mode"),
        "{status} {body}"
    );
    let (status, body) = api(http, "GET", path, m1, "");
    assert_eq!(status, 200, "{body}");
    let v0 = serde_json::from_str::<Value>(&body).unwrap()["state"]["version"]
        .as_i64()
        .unwrap();

    // Sends until the answer is not "busy checking credentials" (bounded).
    let send = move |body: String| -> (u16, String) {
        for _ in 0..50 {
            let (status, text) = api(http, "PUT", path, Some(("manager1", "cisco")), &body);
            if status != 503 && status != 429 {
                return (status, text);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the node stayed busy");
    };
    let racers: Vec<_> = (0..50)
        .map(|i| {
            let body = format!(r#"{{"divert_target": "300{i:02}", "if_version": {v0}}}"#);
            std::thread::spawn(move || (i, send(body)))
        })
        .collect();
    let results: Vec<(usize, (u16, String))> =
        racers.into_iter().map(|t| t.join().unwrap()).collect();
    let won: Vec<_> = results.iter().filter(|(_, (s, _))| *s == 200).collect();
    let lost = results.iter().filter(|(_, (s, _))| *s == 409).count();
    assert_eq!((won.len(), lost), (1, 49), "{results:?}");
    let winner = format!("300{:02}", won[0].0);
    let (_, body) = api(http, "GET", path, m1, "");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["state"]["divert_target"], winner.as_str(), "{v}");
    assert_eq!(v["state"]["version"], v0 + 1, "{v}");

    let all: Vec<_> = (0..50)
        .map(|i| std::thread::spawn(move || send(format!(r#"{{"dnd": {}}}"#, i % 2 == 0))))
        .collect();
    for t in all {
        let (status, body) = t.join().unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let (_, body) = api(http, "GET", path, m1, "");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["state"]["version"], v0 + 51, "{v}");
    // Last: a wrong password (the source is throttled for the user after it).
    let (status, body) = api(
        http,
        "PUT",
        path,
        Some(("manager1", "wrong")),
        r#"{"dnd": true}"#,
    );
    assert_eq!(status, 401, "{body}");
    let (_, body) = api(http, "GET", path, Some(("assistant1", "cisco")), "");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["state"]["version"],
        v0 + 51,
        "the refused change changed nothing: {v}"
    );
}

#[test]
fn r18_the_manager_api_refuses_strangers_and_the_database_decides_races_sqlite() {
    let srv = Server::start(&[]);
    attack_the_manager_api(&srv);
}

#[tokio::test]
async fn r18_the_manager_api_refuses_strangers_and_the_database_decides_races_postgres() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || {
        let srv = Server::start(&["--db", &url]);
        attack_the_manager_api(&srv);
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

/// Shared line mode with Manager Two on Do Not Disturb: 60002 rings at both phones, the
/// manager's silently (its INVITE's Alert-Info says so) and the assistant's audibly; the
/// assistant answers. With DND off again both ring audibly.
#[test]
fn r18_a_shared_line_rings_silently_at_a_manager_on_do_not_disturb() {
    let srv = Server::start(&[]);
    let http = srv.addr("http");
    let caller = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.18.90"],
    );
    let manager = Sim::start(
        &srv,
        &["--device", "SEP00036BC7C003", "--first-ip", "127.0.18.100"],
    );
    let assistant = Sim::start(
        &srv,
        &["--device", "SEP00036BC7C004", "--first-ip", "127.0.18.110"],
    );
    let a = caller.http("SEP00036BC7B973");
    let m = manager.http("SEP00036BC7C003");
    let s = assistant.http("SEP00036BC7C004");
    let jsmith = Some(("jsmith", "cisco"));
    for (n, dnd) in [(1, true), (2, false)] {
        let (status, body) = api(
            http,
            "PUT",
            "/ucm/assistant/managers/manager2",
            Some(("manager2", "cisco")),
            &format!(r#"{{"dnd": {dnd}}}"#),
        );
        assert_eq!(status, 200, "{body}");
        let (status, body) = push(a, jsmith, &["Dial:60002"]);
        assert!(status == 200 && body.contains(r#"Status="0""#), "{body}");
        let ringing = |st: &Value| {
            calls(st)
                .into_iter()
                .find(|c| c["state"] == "ringing" && c["line"] == "60002")
        };
        let sm = wait_state(m, 15, "the manager's phone shows the call", |st| {
            ringing(st).is_some()
        });
        let ss = wait_state(s, 15, "the assistant's phone rings", |st| {
            ringing(st).is_some()
        });
        assert_eq!(ringing(&sm).unwrap()["silent"], dnd, "{sm:#}");
        assert_eq!(ringing(&ss).unwrap()["silent"], false, "{ss:#}");
        let (_, body) = push(s, Some(("assistant2", "cisco")), &["Key:Offhook"]);
        assert!(body.contains(r#"Status="0""#), "{body}");
        wait_state(s, 15, "the assistant answered", |st| {
            connected_count(st) == 1
        });
        wait_state(m, 15, "the manager's phone stops", all_ended);
        let (_, body) = push(a, jsmith, &["Key:Onhook"]);
        assert!(body.contains(r#"Status="0""#), "{body}");
        wait_state(s, 10, "the call ended", |st| {
            calls(st).len() >= n && all_ended(st)
        });
    }
}

/// `ucm config check` refuses an assistant serving managers in both modes, and the seed's
/// capacity limits are parameters it checks (their defaults are the seed's figures).
#[test]
fn r18_config_check_refuses_mixed_modes_and_limits_past_the_parameters() {
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
    // Assistant Two (shared line for Manager Two) made Manager One's proxy assistant too.
    let mixed = demo.replace(
        "        - { user: assistant1, proxy_line: \"39001\" }\n",
        "        - { user: assistant1, proxy_line: \"39001\" }\n        - { user: assistant2, proxy_line: \"40002\" }\n",
    );
    assert_ne!(mixed, demo);
    let (code, out) = check("mixed.yaml", &mixed);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("assistant.managers[1].assistants[0].user")
            && out.contains("one assistant never mixes"),
        "{out}"
    );
    let limited = demo.replace(
        "service_parameters:\n",
        "service_parameters:\n  assistant: { max_managers_per_cluster: 1, max_assistants_per_manager: 0 }\n",
    );
    assert_ne!(limited, demo);
    let (code, out) = check("limited.yaml", &limited);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("2 managers: at most 1 per cluster"), "{out}");
    assert!(
        out.contains("service_parameters.assistant.max_assistants_per_manager")
            && out.contains("must be at least 1"),
        "{out}"
    );
}

/// The demo with a second assistant for Manager One (assistant3, phone SEP00036BC7C005, proxy
/// line 39002) and RNA forwarding on with a 1 s RNA Timeout.
pub fn demo_with_rna_forwarding(dir: &std::path::Path) -> std::path::PathBuf {
    let demo = ucm::config::DEMO_YAML;
    let text = demo
        .replace(
            "service_parameters:\n",
            "service_parameters:\n  assistant: { rna_forward_calls: true, rna_timeout_seconds: 1 }\n",
        )
        .replace(
            "\ndevices:\n",
            "\n  - pattern: \"39002\"\n    partition: Assistant_Everyone\n    css: MANAGER_EVERYONE_CSS\n\ndevices:\n",
        )
        .replace(
            "\nroute_points:\n",
            "  - name: SEP00036BC7C005\n    model: Cisco 8865\n    device_pool: HQ_DP\n    css: ASSISTANT_EVERYONE_CSS\n    owner: assistant3\n    security_profile: Cisco SIP Non-Secure Profile\n    lines:\n      - { dn: \"39002\", partition: Assistant_Everyone, label: Manager One }\n\nroute_points:\n",
        )
        .replace(
            "\napplication_users:\n",
            "  - userid: assistant3\n    first_name: Assistant\n    last_name: Three\n    password: cisco\n    pin: \"12345\"\n    associated_devices: [SEP00036BC7C005]\n\napplication_users:\n",
        )
        .replace(
            "        - { user: assistant1, proxy_line: \"39001\" }\n",
            "        - { user: assistant1, proxy_line: \"39001\" }\n        - { user: assistant3, proxy_line: \"39002\" }\n",
        );
    assert_eq!(
        text.matches("assistant3").count(),
        3,
        "the demo changed shape"
    );
    write_file(dir, "demo-rna.yaml", &text)
}

/// RNA forwarding: a call left unanswered at Assistant One's proxy line for the RNA Timeout
/// goes on to Manager One's next assistant (39002), where it is answered.
#[test]
fn r18_an_unanswered_call_goes_on_to_the_managers_next_assistant() {
    let dir = tempfile::tempdir().unwrap();
    let def = demo_with_rna_forwarding(dir.path());
    let (code, out) = {
        let o = ucm().args(["config", "check"]).arg(&def).output().unwrap();
        (
            o.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    assert_eq!(code, Some(0), "{out}");
    let srv = Server::start(&["--config", def.to_str().unwrap()]);
    let caller = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.18.120"],
    );
    let first = Sim::start(
        &srv,
        &["--device", "SEP00036BC7C002", "--first-ip", "127.0.18.130"],
    );
    let next = Sim::start(
        &srv,
        &["--device", "SEP00036BC7C005", "--first-ip", "127.0.18.140"],
    );
    let a = caller.http("SEP00036BC7B973");
    let s1 = first.http("SEP00036BC7C002");
    let s2 = next.http("SEP00036BC7C005");
    let (status, body) = push(a, Some(("jsmith", "cisco")), &["Dial:60001"]);
    assert!(status == 200 && body.contains(r#"Status="0""#), "{body}");
    wait_state(s1, 15, "the first assistant's proxy line rings", |st| {
        ringing_on(st, "39001")
    });
    wait_state(s2, 15, "the next assistant's proxy line rings", |st| {
        ringing_on(st, "39002")
    });
    wait_state(s1, 10, "the first assistant's phone stops", all_ended);
    let (_, body) = push(s2, Some(("assistant3", "cisco")), &["Key:Offhook"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    wait_state(a, 15, "the caller talks to the next assistant", |st| {
        connected_count(st) == 1
    });
    srv.wait_for_log("no answer; on to the next assistant");
}

/// The menu items (name, URL) of a CiscoIPPhoneMenu, entities undone.
fn menu_items(xml: &str) -> Vec<(String, String)> {
    let un = |s: &str| {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    };
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find("<MenuItem>") {
        let end = rest[i..].find("</MenuItem>").expect("closed MenuItem") + i;
        let item = &rest[i..end];
        let tag = |t: &str| {
            let a = item.find(&format!("<{t}>")).map(|a| a + t.len() + 2)?;
            let b = item[a..].find(&format!("</{t}>"))? + a;
            Some(un(&item[a..b]))
        };
        out.push((
            tag("Name").unwrap_or_default(),
            tag("URL").unwrap_or_default(),
        ));
        rest = &rest[end..];
    }
    out
}

fn item_url(xml: &str, starts: &str) -> String {
    menu_items(xml)
        .into_iter()
        .find(|(n, _)| n.starts_with(starts))
        .unwrap_or_else(|| panic!("no item {starts:?} in {xml}"))
        .1
}

/// The Assistant phone service on the phones, as a phone browses it: the service URL asks for
/// the user ID and PIN; over HTTPS only, a right PIN gives the manager's settings, each item
/// toggling one; a toggle chosen on an older screen changes nothing; 50 phones racing one
/// toggle from one screen change it once (the database decides); the session token is bound
/// to its phone and refused when altered; the assistant sees the manager's state and the call
/// ringing at the proxy line, and sends it to the manager, whose phone rings.
#[test]
fn r18_the_assistant_phone_service_over_https_after_the_pin() {
    let srv = Server::start(&[]);
    let http = srv.addr("http");
    let ca = srv.data_dir.path().join("node-cert.pem");
    let client = ucm::client::http_client(&ucm::client::ClientOptions {
        ca: Some(ca),
        timeout: Some(Duration::from_secs(30)),
        ..Default::default()
    })
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let get = |url: &str| -> String {
        rt.block_on(async {
            let r = client.get(url).send().await.expect(url);
            assert_eq!(r.status(), 200, "{url}");
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/xml"),
                "{url}"
            );
            r.text().await.unwrap()
        })
    };
    let service = |device: &str| {
        format!("http://{http}/ma/servlet/MAService?cmd=doPhoneService&Name={device}")
    };
    // 1. The service URL (reached over HTTP, as phones subscribed to `url` do) asks for the
    //    user ID and PIN and submits them to HTTPS.
    let input = get(&service("SEP00036BC7C001"));
    assert!(input.contains("<CiscoIPPhoneInput>"), "{input}");
    let action = input
        .split("<URL>")
        .nth(1)
        .and_then(|s| s.split("</URL>").next())
        .unwrap()
        .replace("&amp;", "&");
    assert!(action.starts_with("https://"), "{action}");
    // The PIN is never taken in clear.
    let clear = get(&format!(
        "http://{http}/ma/servlet/MAService?cmd=login&Name=SEP00036BC7C001&userid=manager1&pin=12345"
    ));
    assert!(clear.contains("HTTPS only"), "{clear}");
    let wrong = get(&format!("{action}&userid=manager1&pin=99999"));
    assert!(wrong.contains("Login failed"), "{wrong}");
    // 2. Manager One's screen: Do Not Disturb off; choosing it turns it on.
    let home = get(&format!("{action}&userid=manager1&pin=12345"));
    assert!(home.contains("<CiscoIPPhoneMenu>"), "{home}");
    let dnd_on = item_url(&home, "Do Not Disturb: Off");
    let on = get(&dnd_on);
    assert!(on.contains("Do Not Disturb is on"), "{on}");
    let dnd_off = item_url(&on, "Do Not Disturb: On");
    let (status, state) = api(
        http,
        "GET",
        "/ucm/assistant/managers/manager1",
        Some(("manager1", "cisco")),
        "",
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(v["state"]["dnd"], true, "{v}");
    let version = v["state"]["version"].as_i64().unwrap();
    // 3. The same item again, from the older screen: nothing changes.
    let stale = get(&dnd_on);
    assert!(stale.contains("Changed meanwhile"), "{stale}");
    item_url(&stale, "Do Not Disturb: On");
    // 4. Fifty phones choose "Do Not Disturb: On" (to turn it off) from one screen at once:
    //    exactly one change is made.
    let answers: Vec<String> = rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (c, u) = (client.clone(), dnd_off.clone());
            set.spawn(async move { c.get(&u).send().await.unwrap().text().await.unwrap() });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            out.push(r.unwrap());
        }
        out
    });
    let won = answers
        .iter()
        .filter(|a| a.contains("Do Not Disturb is off"))
        .count();
    let lost = answers
        .iter()
        .filter(|a| a.contains("Changed meanwhile"))
        .count();
    assert_eq!((won, lost), (1, 49), "{answers:#?}");
    let (_, state) = api(
        http,
        "GET",
        "/ucm/assistant/managers/manager1",
        Some(("manager1", "cisco")),
        "",
    );
    let v: Value = serde_json::from_str(&state).unwrap();
    assert_eq!(v["state"]["dnd"], false, "{v}");
    assert_eq!(v["state"]["version"].as_i64(), Some(version + 1), "{v}");
    // 5. The token: bound to its phone, refused when altered.
    let elsewhere = get(&dnd_off.replace("SEP00036BC7C001", "SEP00036BC7C002"));
    assert!(elsewhere.contains("another phone"), "{elsewhere}");
    let (head, tail) = dnd_off.split_once("t=").unwrap();
    let flipped = format!("{head}t={}", tail.replacen('a', "b", 1));
    let forged = get(&flipped);
    assert!(forged.contains("log in again"), "{forged}");

    // 6. Assistant One: a call to Manager One rings at the proxy line; the screen shows it
    //    and the manager's state, and sends it to the manager.
    let caller = Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.18.150"],
    );
    let manager = Sim::start(
        &srv,
        &[
            "--device",
            "SEP00036BC7C001",
            "--first-ip",
            "127.0.18.160",
            "--auto-answer",
        ],
    );
    let assistant = Sim::start(
        &srv,
        &["--device", "SEP00036BC7C002", "--first-ip", "127.0.18.170"],
    );
    let a = caller.http("SEP00036BC7B973");
    let m = manager.http("SEP00036BC7C001");
    let s = assistant.http("SEP00036BC7C002");
    let (status, body) = push(a, Some(("jsmith", "cisco")), &["Dial:60001"]);
    assert!(status == 200 && body.contains(r#"Status="0""#), "{body}");
    wait_state(s, 15, "the proxy line rings", |st| ringing_on(st, "39001"));
    let input = get(&service("SEP00036BC7C002"));
    let action = input
        .split("<URL>")
        .nth(1)
        .and_then(|s| s.split("</URL>").next())
        .unwrap()
        .replace("&amp;", "&");
    let home = get(&format!("{action}&userid=assistant1&pin=12345"));
    item_url(&home, "Manager One (60001)");
    let send = item_url(&home, "To manager: 10001 for Manager One");
    let sent = get(&send);
    assert!(
        sent.contains("Sent to the manager: rings at 60001"),
        "{sent}"
    );
    wait_state(m, 15, "the manager's phone answers the call", |st| {
        connected_count(st) == 1
    });
    wait_state(s, 10, "the proxy line stops ringing", all_ended);
    // Sent once: the same item again finds no call ringing.
    let again = get(&send);
    assert!(again.contains("not ringing"), "{again}");
}
