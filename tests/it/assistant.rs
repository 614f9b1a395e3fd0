//! Unified CM Assistant (issue 18), first slice: the demo carries the seed's proxy line and
//! shared line examples, and with no Assistant service the route point's Forward No Answer to
//! the pattern `6XXXX` lets calls to the managers fall through to them, over the wire.

use serde_json::Value;

use crate::common::{ucm, write_file, Server};
use crate::phone::{calls, push, wait_state, Sim};

/// Proxy line mode with no Assistant service: jsmith's phone dials 60001, the route point
/// `6XXXX` intercepts it (jsmith's CSS does not reach `Assistant_Manager`), its Forward No
/// Answer forwards the dialled number through `MANAGER_EVERYONE_CSS`, and Manager One's phone
/// rings on line 60001 (the INVITE's To names 60001, not the pattern), answers, and the two
/// talk. Dialling the manager's number through the `8.XXXXX` translation falls through too.
#[test]
fn r18_calls_to_a_manager_fall_through_the_route_point_to_the_managers_phone() {
    let srv = Server::start(&[]);
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
    use crate::common::{have, is_root, skip_or_fail};
    if !is_root() || !have("unshare") || !have("ip") || !have("curl") {
        skip_or_fail("root, unshare, ip and curl for README's Assistant example");
        return;
    }
    let blocks = crate::services::readme_sh_blocks("## Assistant", 1);
    assert_eq!(blocks.len(), 1);
    let lines: Vec<&str> = blocks[0].lines().collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    let dir = tempfile::tempdir().unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_ucm"))
        .parent()
        .unwrap();
    let mut script = String::from(
        "set -u\nip link set lo up\nfail() { echo \"FAILED(step $1): $2\" >&2; exit 1; }\n",
    );
    for (n, line) in lines.iter().enumerate() {
        let line = line.split(" #").next().unwrap().trim();
        if let Some(bg) = line.strip_suffix('&') {
            script.push_str(&format!("{} > bg{n}.out 2> bg{n}.err &\n", bg.trim_end()));
            if line.starts_with("ucm serve") {
                script.push_str(
                    "for i in $(seq 1 300); do curl -sf http://127.0.0.1:8080/healthz >/dev/null && break; sleep 0.1; done\n",
                );
            } else {
                script.push_str(&format!(
                    "for i in $(seq 1 600); do grep -q ready bg{n}.out && break; sleep 0.1; done\n\
                     grep -q ready bg{n}.out || fail {n} \"sim not ready: $(cat bg{n}.out bg{n}.err)\"\n"
                ));
            }
        } else {
            if n == lines.len() - 1 {
                // The reader looks once the call has connected (bounded wait).
                script.push_str(
                    "for i in $(seq 1 200); do curl -s http://127.0.0.30/state/calls | grep -q '\"state\":\"connected\"' && break; sleep 0.1; done\n",
                );
            }
            script.push_str(&format!(
                "( {line} ) > out{n} 2> err{n} || fail {n} \"$(cat out{n} err{n})\"\n"
            ));
        }
    }
    let last = lines.len() - 1;
    script.push_str(&format!(
        "grep -q 'Status=\"0\"' out3 || fail 3 \"push: $(cat out3)\"\n\
         tr -d ' \\n' < out{last} > calls.json\n\
         grep -q '\"line\":\"60001\"' calls.json || fail {last} \"not on 60001: $(cat calls.json)\"\n\
         grep -q '\"remote_number\":\"10001\"' calls.json || fail {last} \"not from 10001: $(cat calls.json)\"\n\
         grep -q '\"state\":\"connected\"' calls.json || fail {last} \"not connected: $(cat calls.json)\"\n\
         echo ALL-OK\n"
    ));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("unshare")
        .args([
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
            "bash",
            "-c",
            &script,
        ])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("HOME", dir.path())
        .env("UCM_DATA_DIR", dir.path().join("data"))
        .output()
        .expect("unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("ALL-OK"),
        "{text}\n--- script:\n{script}"
    );
}
