//! The `ucm` command line: help, exit codes, config check, db import/export (issue 2).

use crate::common::{ucm, write_file};

#[test]
fn r2_help_lists_the_subcommands() {
    let out = assert_cmd::Command::cargo_bin("ucm")
        .unwrap()
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .clone();
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["serve", "db", "config", "status"] {
        assert!(text.contains(sub), "--help lacks {sub}:\n{text}");
    }
    assert!(text.contains("Exit codes"), "{text}");
    // An unknown subcommand is a usage error.
    assert_cmd::Command::cargo_bin("ucm")
        .unwrap()
        .arg("frobnicate")
        .assert()
        .code(2);
}

#[test]
fn r2_config_check_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = ucm()
        .args(["config", "check", "fixtures/clusters/demo.yaml"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = write_file(
        dir.path(),
        "bad.yaml",
        "cluster:\n  id: x\n  name: y\npartitions:\n  - name: A\ncalling_search_spaces:\n  - name: C\n    partitions: [B]\n",
    );
    let out = ucm().args(["config", "check"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bad.yaml:8:") && text.contains("calling_search_spaces[0].partitions[0]"),
        "{text}"
    );
    let out = ucm()
        .args(["config", "check", "--json"])
        .arg(&bad)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["files"][0]["errors"][0]["line"], 8);
    let out = ucm()
        .args(["config", "check", "/nonexistent/x.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.yaml"));
}

#[test]
fn r2_db_import_export_round_trip_via_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("t.db").display());
    let out = ucm()
        .args([
            "db",
            "import",
            "fixtures/clusters/demo.yaml",
            "--json",
            "--db",
            &db,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cluster"], "demo");
    let export1 = dir.path().join("e1.yaml");
    let out = ucm()
        .args(["db", "export", "--db", &db, "-o"])
        .arg(&export1)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ucm()
        .args(["db", "import", "--db", &db])
        .arg(&export1)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ucm().args(["db", "export", "--db", &db]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(std::fs::read(&export1).unwrap(), out.stdout);
    // An invalid file is an input error (2) and leaves the database as it was.
    let bad = write_file(dir.path(), "bad.yaml", "cluster: [\n");
    let out = ucm()
        .args(["db", "import", "--db", &db])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out2 = ucm().args(["db", "export", "--db", &db]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read(&export1).unwrap(), out2.stdout);
}

/// Network errors name their cause (refused, unresolvable, untrusted certificate) instead of
/// reqwest's "error sending request for url", and exit 2.
#[test]
fn r21_network_errors_name_their_cause() {
    use assert_cmd::Command;
    let em_status = |server: &str| {
        let out = Command::cargo_bin("ucm")
            .unwrap()
            .args([
                "em",
                "status",
                "--device",
                "SEP000000000001",
                "--app-user",
                "a",
            ])
            .args(["--server", server])
            .env("UCM_APP_PASSWORD", "x")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{server}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = em_status("http://127.0.0.1:1");
    assert!(err.contains("connection refused"), "{err}");
    let err = em_status("http://no-such-host.invalid:8080");
    assert!(err.contains("does not resolve"), "{err}");
    let srv = crate::common::Server::start(&[]);
    let err = em_status(&format!("https://{}", srv.addr("https")));
    assert!(
        err.contains("certificate is not trusted")
            && err.contains("--ca")
            && err.contains("--insecure"),
        "{err}"
    );
    assert!(!err.contains("error sending request"), "{err}");
}

/// Logs carry no ANSI colour codes when stderr is not a terminal (here: a pipe).
#[test]
fn r21_logs_have_no_colours_off_a_terminal() {
    let out = assert_cmd::Command::cargo_bin("ucm")
        .unwrap()
        .args([
            "em",
            "status",
            "--device",
            "SEP000000000001",
            "--app-user",
            "a",
        ])
        .args(["--server", "http://127.0.0.1:1"])
        .env("UCM_EM_APP_PASSWORD", "x")
        .env("UCM_LOG", "info")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // The old variable name still works, with a warning saying the new one.
    assert!(err.contains("UCM_APP_PASSWORD"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

/// `ucm ARGS` (assert_cmd) with a password in the environment, stdout parsed as one JSON
/// document; asserts the exit code.
fn json_of(args: &[&str], code: i32) -> serde_json::Value {
    let out = assert_cmd::Command::cargo_bin("ucm")
        .unwrap()
        .args(args)
        .env("UCM_PASSWORD", "x")
        .env("UCM_APP_PASSWORD", "x")
        .write_stdin("")
        .assert()
        .code(code)
        .get_output()
        .clone();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("ucm {args:?}: not one JSON document ({e}):\n{text}"))
}

#[test]
fn r21_json_errors_are_one_object_with_the_exit_code() {
    // A port nothing listens on: every client command fails the same way.
    let refused = "http://127.0.0.1:1";
    let cases: &[&[&str]] = &[
        &[
            "db",
            "import",
            "/nonexistent/x.yaml",
            "--json",
            "--db",
            "sqlite::memory:",
        ],
        &[
            "page", "--json", "--list", "--user", "x", "--server", refused,
        ],
        &["dial", "--json", "--user", "x", "--server", refused, "1000"],
        &[
            "em",
            "login",
            "--json",
            "--user",
            "x",
            "--device",
            "SEP000000000001",
            "--server",
            refused,
        ],
        &["services", "lint", "--json", "/nonexistent/x.xml"],
        &["pcap", "ladder", "--json", "/nonexistent/x.pcap"],
        &["pcap", "dscp", "--json", "/nonexistent/x.pcap"],
        // A usage error too.
        &["dial", "--json", "--bogus"],
    ];
    for args in cases {
        let v = json_of(args, 2);
        assert_eq!(v["exit_code"], 2, "ucm {args:?}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "ucm {args:?}: {v}"
        );
    }
}

#[test]
fn r21_json_reports_every_file_even_when_one_is_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write_file(dir.path(), "bad.yaml", "cluster:\n  id: x\n name: y\n");
    let bad = bad.to_str().unwrap();
    let v = json_of(
        &[
            "config",
            "check",
            "--json",
            "fixtures/clusters/demo.yaml",
            "/nonexistent/x.yaml",
            bad,
        ],
        2,
    );
    assert_eq!(v["exit_code"], 2, "{v}");
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 3, "{v}");
    assert_eq!(files[0]["valid"], true, "{v}");
    assert!(
        files[1]["error"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/x.yaml"),
        "{v}"
    );
    assert!(
        files[2]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("YAML syntax error"),
        "{v}"
    );
    let v = json_of(
        &[
            "pcap",
            "verify",
            "--format",
            "json",
            "/nonexistent/x.pcap",
            "fixtures/pcaps/sip_mcast_paging.pcapng",
        ],
        2,
    );
    assert_eq!(v["files"].as_array().unwrap().len(), 2, "{v}");
    assert!(v["files"][0]["error"].is_string(), "{v}");
    assert!(
        v["files"][1]["error"].is_null(),
        "the readable capture is audited: {v}"
    );
}

#[test]
fn r21_services_push_json_has_one_shape_for_one_phone_or_many() {
    let one = json_of(
        &[
            "services",
            "push",
            "--json",
            "--phone",
            "127.0.0.1:1",
            "--user",
            "x",
            "--execute",
            "http://x/",
        ],
        2,
    );
    let two = json_of(
        &[
            "services",
            "push",
            "--json",
            "--phone",
            "127.0.0.1:1",
            "--phone",
            "127.0.0.1:2",
            "--user",
            "x",
            "--execute",
            "http://x/",
        ],
        2,
    );
    for v in [&one, &two] {
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["exit_code"], 2, "{v}");
        assert!(v["phones"][0]["failure"].as_str().is_some(), "{v}");
    }
    assert_eq!(one["phones"].as_array().unwrap().len(), 1);
    assert_eq!(two["phones"].as_array().unwrap().len(), 2);
}

#[test]
fn r21_services_lint_names_the_model_asked_and_fails_what_a_phone_cannot_parse() {
    let dir = tempfile::tempdir().unwrap();
    let text = write_file(
        dir.path(),
        "t.xml",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CiscoIPPhoneText><Text>hi</Text></CiscoIPPhoneText>\n",
    );
    let out = assert_cmd::Command::cargo_bin("ucm")
        .unwrap()
        .args(["services", "lint", "--model", "Cisco 8845"])
        .arg(&text)
        .assert()
        .code(0)
        .get_output()
        .clone();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("valid for Cisco 8845 (checked as CP-8851") && err.contains("CP-8845"),
        "{err}"
    );
    for (name, body) in [
        (
            "page.html",
            "<html><body>Service unavailable</body></html>\n",
        ),
        ("cut.xml", "<CiscoIPPhoneText><Text>hi</Text>\n"),
    ] {
        let f = write_file(dir.path(), name, body);
        let out = assert_cmd::Command::cargo_bin("ucm")
            .unwrap()
            .args(["services", "lint", "--json"])
            .arg(&f)
            .assert()
            .code(1)
            .get_output()
            .clone();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["valid"], false, "{v}");
        assert_eq!(v["violations"][0]["rule"], "parse", "{v}");
    }
}

fn ucm_fails(args: &[&str], code: i32) -> String {
    let out = assert_cmd::Command::cargo_bin("ucm")
        .unwrap()
        .args(args)
        .assert()
        .code(code)
        .get_output()
        .clone();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn r21_db_export_creates_nothing_and_errors_name_path_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ucm.db");
    let url = format!("sqlite:{}", file.display());
    let err = ucm_fails(&["db", "export", "--db", &url], 2);
    assert!(!file.exists(), "export created {}", file.display());
    assert!(
        err.contains(&file.display().to_string()) && err.contains("no such database"),
        "{err}"
    );
    // Nor a data directory.
    let data = dir.path().join("data");
    let err = ucm_fails(&["db", "export", "--data-dir", data.to_str().unwrap()], 2);
    assert!(!data.exists(), "export created {}: {err}", data.display());
    // A missing directory, in words, for export and import alike.
    for cmd in [
        vec!["db", "export", "--db", "sqlite:/missing/dir/ucm.db"],
        vec![
            "db",
            "import",
            "fixtures/clusters/demo.yaml",
            "--db",
            "sqlite:/missing/dir/ucm.db",
        ],
    ] {
        let err = ucm_fails(&cmd, 2);
        assert!(
            err.contains("/missing/dir/ucm.db")
                && err.contains("directory /missing/dir does not exist"),
            "{err}"
        );
        assert!(!err.contains("code: 14"), "{err}");
    }
}

#[test]
fn r21_postgres_that_cannot_be_used_is_named_at_once() {
    // Port 1 refuses: named, not "pool timed out" after the pool's retries.
    let err = ucm_fails(
        &["db", "export", "--db", "postgres://ucm@127.0.0.1:1/ucm"],
        2,
    );
    assert!(
        err.contains("connection refused") && !err.contains("pool timed out"),
        "{err}"
    );
    let err = ucm_fails(
        &[
            "db",
            "export",
            "--db",
            "postgres://postgres@127.0.0.1:5432/ucm_r21_no_such_database",
        ],
        2,
    );
    assert!(err.contains("no such database"), "{err}");
}

#[test]
fn r21_status_shows_the_live_cluster_to_an_application_user() {
    let srv = crate::common::Server::start(&[]);
    let _sim = crate::phone::Sim::start(
        &srv,
        &["--device", "SEP00036BC7B975", "--first-ip", "127.0.74.50"],
    );
    let server = format!("http://{}", srv.addr("http"));
    let status = |user: &str, password: &str, code: i32| {
        assert_cmd::Command::cargo_bin("ucm")
            .unwrap()
            .args(["status", "--json", "--user", user, "--server", &server])
            .env("UCM_PASSWORD", password)
            .assert()
            .code(code)
            .get_output()
            .stdout
            .clone()
    };
    let v: serde_json::Value = serde_json::from_slice(&status("paging", "paging", 0)).unwrap();
    let phones = v["registered_phones"].as_array().unwrap();
    let phone = phones
        .iter()
        .find(|p| p["device"] == "SEP00036BC7B975")
        .unwrap_or_else(|| panic!("the sim's phone is not listed: {v:#}"));
    assert!(
        phone["address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.74.50:"),
        "{phone}"
    );
    assert!(!phone["lines"].as_array().unwrap().is_empty(), "{phone}");
    assert!(phone["since"].as_i64().unwrap() > 0, "{phone}");
    for key in [
        "active_calls",
        "em_logins",
        "running_pages",
        "locked_out_users",
    ] {
        assert!(v[key].is_array(), "no {key} list: {v:#}");
    }
    // A call between two phones is listed with its numbers and devices, and a running page
    // with its DialCast number and multicast address; both go when they end.
    let _lock = crate::paging::paging_lock();
    let caller = crate::phone::Sim::start(
        &srv,
        &["--device", "SEP00036BC7B973", "--first-ip", "127.0.74.10"],
    );
    let _callee = crate::phone::Sim::start(
        &srv,
        &[
            "--device",
            "SEP00036BC7B974",
            "--first-ip",
            "127.0.74.20",
            "--auto-answer",
        ],
    );
    let a = caller.http("SEP00036BC7B973");
    let (st, body) = crate::phone::push(a, Some(("jsmith", "cisco")), &["Dial:10002"]);
    assert_eq!(st, 200, "{body}");
    crate::phone::wait_state(a, 10, "the call connects", |s| {
        crate::phone::calls(s)
            .iter()
            .any(|c| c["state"] == "connected")
    });
    let v: serde_json::Value = serde_json::from_slice(&status("paging", "paging", 0)).unwrap();
    let call = v["active_calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["dialled"] == "10002")
        .unwrap_or_else(|| panic!("the call is not listed: {v:#}"))
        .clone();
    assert_eq!(call["state"], "connected", "{call}");
    assert_eq!(call["calling"], "10001", "{call}");
    assert_eq!(
        call["devices"],
        serde_json::json!(["SEP00036BC7B973", "SEP00036BC7B974"]),
        "{call}"
    );
    assert!(call["started"].as_i64().unwrap() > 0, "{call}");
    let text = assert_cmd::Command::cargo_bin("ucm")
        .unwrap()
        .args(["status", "--user", "paging", "--server", &server])
        .env("UCM_PASSWORD", "paging")
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("ACTIVE CALLS ON THIS NODE")
            && text.contains("connected\t10001\t10002\tSEP00036BC7B973,SEP00036BC7B974"),
        "{text}"
    );
    let (st, body) = crate::phone::push(a, Some(("jsmith", "cisco")), &["Key:EndCall"]);
    assert_eq!(st, 200, "{body}");
    crate::phone::wait_state(a, 10, "the call ends", |s| {
        crate::phone::calls(s)
            .iter()
            .all(|c| !c["end_reason"].is_null())
    });
    // A page of four seconds from a phone no sim runs; listed while it runs.
    let page = {
        let srv_http = srv.addr("http").to_string();
        let srv_tftp = srv.addr("tftp_http").to_string();
        std::thread::spawn(move || {
            crate::common::ucm()
                .args(["page", "--server", &srv_http, "--tftp", &srv_tftp])
                .args(["--number", "7000", "--tone", "--seconds", "4"])
                .args(["--from", "SEP00036BC7B976", "--bind", "127.0.74.200"])
                .output()
                .unwrap()
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let listed = loop {
        let v: serde_json::Value = serde_json::from_slice(&status("paging", "paging", 0)).unwrap();
        if let Some(p) = v["running_pages"].as_array().and_then(|a| a.first()) {
            break p.clone();
        }
        assert!(
            std::time::Instant::now() < deadline && !page.is_finished(),
            "the page was never listed: {v:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(listed["dialcast"], "7000", "{listed}");
    assert_eq!(listed["calling"], "30271", "{listed}");
    assert_eq!(listed["recipient_group"], "demo-all", "{listed}");
    assert!(
        listed["multicast"].as_str().unwrap().starts_with("239."),
        "{listed}"
    );
    // No lab phone runs, so none joined: a page that reached nobody exits 1.
    let out = page.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("to demo-all (DialCast 7000)"),
        "{out:?}"
    );
    let v: serde_json::Value = serde_json::from_slice(&status("paging", "paging", 0)).unwrap();
    assert_eq!(v["running_pages"], serde_json::json!([]), "{v:#}");
    // The call ended (the phone hung up before the page): no longer listed.
    let v: serde_json::Value = serde_json::from_slice(&status("paging", "paging", 0)).unwrap();
    assert_eq!(v["active_calls"], serde_json::json!([]), "{v:#}");
    // A wrong password, or an end user: refused (exit 1), as JSON.
    let v: serde_json::Value = serde_json::from_slice(&status("paging", "wrong", 1)).unwrap();
    assert_eq!(v["exit_code"], 1, "{v}");
    status("jsmith", "cisco", 1);
    // The page at / for a browser, behind the same credentials.
    let (code, _, _) = crate::common::http_get(srv.addr("http"), "/");
    assert_eq!(code, 401);
}

/// stdout of `ucm ARGS` run in `dir` (assert_cmd), whatever the exit code.
fn stdout_in(dir: &std::path::Path, args: &[&str]) -> String {
    let out = assert_cmd::Command::cargo_bin("ucm")
        .unwrap()
        .current_dir(dir)
        .args(args)
        .env_remove("UCM_SERVER")
        .env_remove("UCM_APP_USER")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn r21_help_texts_and_reports_are_snapshots() {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    insta::assert_snapshot!("status_help", stdout_in(here, &["status", "--help"]));
    insta::assert_snapshot!(
        "config_check_help",
        stdout_in(here, &["config", "check", "--help"])
    );
    insta::assert_snapshot!(
        "services_lint_help",
        stdout_in(here, &["services", "lint", "--help"])
    );
    // The report of a definition with every kind of mistake: syntax in one file, structure and
    // meaning in another, and a file that cannot be read.
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "syntax.yaml", "cluster:\n  id: x\n name: y\n");
    write_file(
        dir.path(),
        "mistakes.yaml",
        "cluster: {id: x, name: y, colour: blue}\npartitions: [{name: PT}]\ncalling_search_spaces:\n  - name: CSS\n    partitions: [PTX]\ndevices:\n  - name: SEP000000000001\n    model: [1]\n  - name: SEPXYZ\n    model: Cisco 8845\n",
    );
    let report = stdout_in(
        dir.path(),
        &[
            "config",
            "check",
            "syntax.yaml",
            "mistakes.yaml",
            "missing.yaml",
        ],
    );
    insta::assert_snapshot!("config_check_report", report);
    let json = stdout_in(
        dir.path(),
        &["config", "check", "--json", "syntax.yaml", "missing.yaml"],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    insta::assert_snapshot!(
        "config_check_report_json",
        serde_json::to_string_pretty(&v).unwrap()
    );
}
