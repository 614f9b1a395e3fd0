//! AXL on `/axl/` read by real clients: the `ciscoaxl` package and zeep over Cisco's AXL 12.5
//! WSDL (which ciscoaxl ships; never copied into this repository), and attacked (issue 20).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{skip_or_fail, spawn_ready, ucm, PgDb, Server};

fn have_ciscoaxl() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import ciscoaxl, zeep"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip_or_fail("Python's ciscoaxl and zeep (pip install ciscoaxl zeep)");
    }
    ok
}

/// A raw AXL POST over HTTPS (the node's own certificate is not checked): (status, body).
fn post(https: SocketAddr, auth: Option<&str>, action: &str, body: &str) -> (u16, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sk", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"])
        .args(["-H", "Content-Type: text/xml; charset=utf-8"])
        .args(["-H", &format!("SOAPAction: \"CUCM:DB ver=12.5 {action}\"")])
        .args(["--data-binary", body]);
    if let Some(a) = auth {
        cmd.args(["-u", a]);
    }
    let out = cmd
        .arg(format!("https://{https}/axl/"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn envelope(op: &str, inner: &str) -> String {
    format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:ns=\"http://www.cisco.com/AXL/API/12.5\"><soapenv:Body><ns:{op}>{inner}</ns:{op}>\
         </soapenv:Body></soapenv:Envelope>"
    )
}

#[test]
fn r20_ciscoaxl_and_strict_zeep_read_the_cluster_through_axl() {
    if !have_ciscoaxl() {
        return;
    }
    let srv = Server::start(&[]);
    let https = srv.addr("https");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/axl_clients/ciscoaxl_client.py"
    );
    // The clients verify the node's own certificate (made on first start, for its address).
    let ca = srv.data_dir.path().join("node-cert.pem");
    let out = std::process::Command::new("python3")
        .env("REQUESTS_CA_BUNDLE", &ca)
        .arg(script)
        .args([
            "127.0.0.1",
            &https.port().to_string(),
            "axladmin",
            "axladmin",
        ])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(r["version"], "14.0", "{r}");
    let demo = ucm::services::demo().expect("demo");
    assert_eq!(r["phones"], demo.devices.len(), "{r}");
    assert_eq!(
        r["first"],
        serde_json::json!({"name": "SEP00036BC7B973", "product": "Cisco 8845",
            "protocol": "SIP", "callingSearchSpaceName": "Internal_CSS"}),
        "{r}"
    );
    assert_eq!(
        r["lines"],
        serde_json::json!([[1, "10001", "Internal_PT"]]),
        "{r}"
    );
    assert_eq!(r["by_uuid"], "SEP00036BC7B973");
    assert_eq!(
        r["missing"],
        "Item not valid: The specified Device was not found"
    );
    assert_eq!(r["missing_code"], "5007");
    let mut users: Vec<String> = demo.end_users.iter().map(|u| u.userid.clone()).collect();
    users.sort();
    assert_eq!(r["users"], serde_json::json!(users), "{r}");
    assert_eq!(r["jsmith"]["lastName"], "Smith", "{r}");
    assert!(r["jsmith"]["devices"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("SEP00036BC7B973")));
    assert!(r["partitions"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("Assistant_Route_Point")));
    assert!(r["css"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("Internal_CSS")));
    let names: Vec<&str> = demo
        .devices
        .iter()
        .map(|d| d.name.as_str())
        .filter(|n| n.starts_with("SEP"))
        .take(4)
        .collect();
    assert_eq!(r["paged"], serde_json::json!(names), "{r}");
    assert_eq!(r["strict_list"], serde_json::json!(["SEP00036BC7B973"]));
    assert_eq!(r["strict_user"], "jsmith");
}

#[test]
fn r20_axl_refuses_strangers_plain_http_and_users_without_the_role() {
    let srv = Server::start(&[]);
    let https = srv.addr("https");
    let body = envelope("getCCMVersion", "");
    let (code, text) = post(https, None, "getCCMVersion", &body);
    assert_eq!(code, 401, "{text}");
    let (code, _) = post(https, Some("axladmin:wrong"), "getCCMVersion", &body);
    assert_eq!(code, 401);
    // An end user without Standard AXL API Access.
    let (code, text) = post(https, Some("jsmith:cisco"), "getCCMVersion", &body);
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("Standard AXL API Access"), "{text}");
    // Plain HTTP carries the password in clear: refused before any check.
    let http = srv.addr("http");
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-u",
            "axladmin:axladmin",
        ])
        .args(["--data-binary", &body])
        .arg(format!("http://{http}/axl/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
    let (code, text) = post(https, Some("axladmin:axladmin"), "getCCMVersion", &body);
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("<version>14.0</version>"), "{text}");
}

#[test]
fn r20_axl_answers_bad_requests_with_faults() {
    let srv = Server::start(&[]);
    let https = srv.addr("https");
    let auth = Some("axladmin:axladmin");
    let cases: &[(&str, String, &str)] = &[
        (
            "listPhone",
            envelope("listPhone", "<returnedTags><name/></returnedTags>"),
            "searchCriteria is required",
        ),
        (
            "listPhone",
            envelope(
                "listPhone",
                "<searchCriteria><name>%</name></searchCriteria><first>x</first>",
            ),
            "first must be a whole number",
        ),
        (
            "getUser",
            envelope("getUser", "<userid>nobody</userid>"),
            "<axlcode>5007</axlcode>",
        ),
        (
            "executeSQLUpdate",
            envelope("executeSQLUpdate", "<sql>delete from device</sql>"),
            "operation executeSQLUpdate is not supported",
        ),
        (
            "getCCMVersion",
            "<not-soap/>".to_string(),
            "not a SOAP &lt;Envelope&gt;",
        ),
        (
            "getCCMVersion",
            "<!DOCTYPE x [<!ENTITY a \"b\">]><x/>".to_string(),
            "DOCTYPE",
        ),
        (
            "getCCMVersion",
            format!("<a>{}</a>", "x".repeat(70 * 1024)),
            "limit",
        ),
    ];
    for (action, body, says) in cases {
        let (code, text) = post(https, auth, action, body);
        assert!(code == 500 || code == 413, "{action}: {code} {text}");
        assert!(
            text.contains("Fault") && text.contains(says),
            "{action}: {text}"
        );
    }
    // Still served.
    let (code, _) = post(https, auth, "getCCMVersion", &envelope("getCCMVersion", ""));
    assert_eq!(code, 200);
}

/// README's AXL example run as written.
#[test]
fn r20_readme_axl_example_runs_as_written() {
    crate::readme::run_example(
        "## AXL",
        3,
        &[(1, "<version>14.0</version>"), (2, "<return>{")],
    );
}

fn add_phone_xml(name: &str, line: Option<&str>) -> String {
    let lines = line.map_or(String::new(), |l| {
        format!(
            "<lines><line><index>1</index><dirn><pattern>{l}</pattern>\
             <routePartitionName>Internal_PT</routePartitionName></dirn></line></lines>"
        )
    });
    envelope(
        "addPhone",
        &format!(
            "<phone><name>{name}</name><product>Cisco 8845</product><class>Phone</class>\
             <protocol>SIP</protocol><protocolSide>User</protocolSide>\
             <devicePoolName>HQ_DP</devicePoolName>{lines}</phone>"
        ),
    )
}

fn axl_code(body: &str) -> Option<String> {
    let a = body.find("<axlcode>")? + "<axlcode>".len();
    let b = body[a..].find('<')? + a;
    Some(body[a..b].to_string())
}

/// Real clients change the cluster through AXL: ciscoaxl's helpers (with the many Cisco
/// settings they send) and strict zeep. The changes are the cluster's: the node serves them at
/// once (a new user's password works, a new phone gets its configuration file), `ucm db export`
/// shows them with the secrets hashed, and a restart keeps them.
#[test]
fn r20_ciscoaxl_and_strict_zeep_change_the_cluster_and_the_changes_last() {
    if !have_ciscoaxl() {
        return;
    }
    let mut srv = Server::start(&[]);
    let https = srv.addr("https");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/axl_clients/ciscoaxl_writes.py"
    );
    let ca = srv.data_dir.path().join("node-cert.pem");
    let out = std::process::Command::new("python3")
        .env("REQUESTS_CA_BUNDLE", &ca)
        .arg(script)
        .args([
            "127.0.0.1",
            &https.port().to_string(),
            "axladmin",
            "axladmin",
        ])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    let uuid = |v: &serde_json::Value| {
        v.as_str()
            .is_some_and(|s| s.len() == 38 && s.starts_with('{'))
    };
    for k in [
        "add_line",
        "add_phone",
        "update_phone",
        "add_user",
        "credentials",
        "associate",
    ] {
        assert!(uuid(&r[k]), "{k}: {r}");
    }
    assert_eq!(
        r["phone"],
        serde_json::json!({"description": "Lobby phone", "lines": [["30500", "Lobby - 30500"]]}),
        "{r}"
    );
    assert_eq!(r["described"], "Lobby phone, east");
    assert_eq!(
        r["user"],
        serde_json::json!({"lastName": "Axl", "devices": ["SEP0000000070A1"]})
    );
    assert_eq!(
        r["sql"],
        serde_json::json!([{"name": "SEP0000000070A1", "dnorpattern": "30500", "numplanindex": "1"}]),
        "{r}"
    );
    assert!(
        r["sql_bad"][1]
            .as_str()
            .unwrap()
            .contains("no such table: callmanager"),
        "{r}"
    );
    assert_eq!(r["again"][0], "-239", "{r}");
    assert_eq!(r["bad_pool"][0], "5007", "{r}");
    assert!(
        r["bad_pool"][1].as_str().unwrap().contains("Nowhere_DP"),
        "{r}"
    );
    assert_eq!(
        r["line"],
        serde_json::json!({"alertingName": "Lobby", "devices": ["SEP0000000070A1"]})
    );
    assert_eq!(r["lines"], serde_json::json!([["30500", "Lobby line"]]));
    assert!(r["profile_lines"].as_u64().unwrap() >= 1, "{r}");
    assert!(uuid(&r["removed"]), "{r}");
    assert_eq!(r["removed_again"][0], "5007", "{r}");

    // The new user's password works at once (403: known, but without the AXL role; a wrong
    // password is 401).
    let body = envelope("getCCMVersion", "");
    assert_eq!(
        post(https, Some("axluser:pw-axl-1"), "getCCMVersion", &body).0,
        403
    );
    assert_eq!(
        post(https, Some("axluser:wrong"), "getCCMVersion", &body).0,
        401
    );
    // A phone added now gets its configuration file with its line.
    let (code, text) = post(
        https,
        Some("axladmin:axladmin"),
        "addPhone",
        &add_phone_xml("SEP0000000070B1", Some("30500")),
    );
    assert_eq!(code, 200, "{text}");
    let (code, _, cnf) = crate::common::http_get(srv.addr("tftp_http"), "/SEP0000000070B1.cnf.xml");
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&cnf).contains("30500"));

    // `ucm db export` shows the changes, the secrets hashed.
    let db = format!("sqlite:{}", srv.data_dir.path().join("ucm.db").display());
    let export = ucm().args(["db", "export", "--db", &db]).output().unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let yaml = String::from_utf8_lossy(&export.stdout);
    assert!(
        yaml.contains("SEP0000000070B1") && yaml.contains("axluser"),
        "{yaml}"
    );
    assert!(!yaml.contains("pw-axl-1") && !yaml.contains("2468"));

    // A restart (same database, the demo definition again) keeps the edits.
    srv.terminate();
    let dir = std::mem::replace(&mut srv.data_dir, tempfile::tempdir().unwrap());
    drop(srv);
    let srv = Server::start_in(dir, &[]);
    let https = srv.addr("https");
    let (code, text) = post(
        https,
        Some("axladmin:axladmin"),
        "getPhone",
        &envelope("getPhone", "<name>SEP0000000070B1</name>"),
    );
    assert_eq!(code, 200, "{text}");
    assert_eq!(
        post(https, Some("axluser:pw-axl-1"), "getCCMVersion", &body).0,
        403
    );
}

/// Fifty clients racing: the database orders the edits. Fifty adds of one phone give exactly
/// one success and 49 duplicate faults; fifty adds of different phones all land (no edit lost
/// to another).
fn race(nodes: &[SocketAddr], prefix: &str) {
    // One request per node first, as a script's first call: the node then knows the
    // credentials (its per-source throttle budgets only the checks it has not yet verified).
    for https in nodes {
        let (code, body) = post(
            *https,
            Some("axladmin:axladmin"),
            "getCCMVersion",
            &envelope("getCCMVersion", ""),
        );
        assert_eq!(code, 200, "{body}");
    }
    let same: Vec<_> = (0..50)
        .map(|i| {
            let https = nodes[i % nodes.len()];
            std::thread::spawn(move || {
                post(
                    https,
                    Some("axladmin:axladmin"),
                    "addPhone",
                    &add_phone_xml("SEP00000000C0FF", None),
                )
            })
        })
        .collect();
    let mut ok = 0;
    for t in same {
        let (code, body) = t.join().unwrap();
        match code {
            200 => ok += 1,
            500 => assert_eq!(axl_code(&body).as_deref(), Some("-239"), "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(ok, 1, "exactly one add of the same phone succeeds");
    let distinct: Vec<_> = (0..50)
        .map(|i| {
            let https = nodes[i % nodes.len()];
            let name = format!("{prefix}{i:02X}");
            std::thread::spawn(move || {
                post(
                    https,
                    Some("axladmin:axladmin"),
                    "addPhone",
                    &add_phone_xml(&name, None),
                )
            })
        })
        .collect();
    for t in distinct {
        let (code, body) = t.join().unwrap();
        assert_eq!(code, 200, "{body}");
    }
    // Every node lists all fifty (through the feed on PostgreSQL: bounded wait).
    for https in nodes {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (code, body) = post(
                *https,
                Some("axladmin:axladmin"),
                "listPhone",
                &envelope(
                    "listPhone",
                    &format!("<searchCriteria><name>{prefix}%</name></searchCriteria><returnedTags><name/></returnedTags>"),
                ),
            );
            assert_eq!(code, 200, "{body}");
            let n = body.matches("<name>").count();
            if n == 50 {
                break;
            }
            assert!(Instant::now() < deadline, "{https} lists {n} of 50");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn r20_fifty_racing_axl_writes_on_sqlite_are_ordered_by_the_database() {
    let srv = Server::start(&[]);
    race(&[srv.addr("https")], "SEP00000000C1");
}

/// Two nodes on PostgreSQL: writes made on either are ordered by the database and reach both.
#[tokio::test]
async fn r20_fifty_racing_axl_writes_on_two_postgres_nodes_reach_both() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let def = dir.path().join("axl-nodes.yaml");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/clusters/three-nodes.yaml"
    ))
    .unwrap()
    .replace("webdialer, paging]", "webdialer, paging, axl]")
    .replace("               webdialer]\n", "               webdialer, axl]\n")
    .replace(
        "application_users:\n",
        "application_users:\n  - userid: axladmin\n    password: axladmin\n    roles: [axl-api-access]\n",
    );
    std::fs::write(&def, text).unwrap();
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        let a = pg_node(&def, &url, "ucm-sub1");
        let b = pg_node(&def, &url, "ucm-sub2");
        race(&[a.addr("https"), b.addr("https")], "SEP00000000C2");
    })
    .await
    .unwrap();
    db.drop_db().await;
}

fn pg_node(def: &Path, db: &str, name: &str) -> Server {
    let data_dir = tempfile::tempdir().unwrap();
    let mut cmd = ucm();
    cmd.args(["serve", "--config"])
        .arg(def)
        .args(["--db", db, "--node", name])
        .args(["--http-port", "0", "--sip-port", "0", "--https-port", "0"])
        .args([
            "--tftp-http-port",
            "0",
            "--tftp-port",
            "0",
            "--sips-port",
            "0",
        ])
        .args(["--snmp-port", "0"])
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("UCM_LOG", "info");
    let (child, ready, stderr) = spawn_ready(cmd, name, Duration::from_secs(60));
    Server {
        child,
        ready,
        data_dir,
        stderr,
        seen: Default::default(),
    }
}

/// A node killed (-9) in the middle of a stream of AXL adds loses none it acknowledged: after a
/// restart on the same database every acknowledged phone is there.
#[test]
fn r20_acknowledged_axl_writes_survive_a_kill_9_mid_stream() {
    let mut srv = Server::start(&[]);
    let https = srv.addr("https");
    let (code, _) = post(
        https,
        Some("axladmin:axladmin"),
        "getCCMVersion",
        &envelope("getCCMVersion", ""),
    );
    assert_eq!(code, 200);
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = {
        let acked = acked.clone();
        std::thread::spawn(move || {
            // Bounded: at most 400 adds, stopping at the first failure (the kill).
            for i in 0..400u32 {
                let name = format!("SEP00000000{:04X}", 0xD000 + i);
                let (code, _) = post(
                    https,
                    Some("axladmin:axladmin"),
                    "addPhone",
                    &add_phone_xml(&name, None),
                );
                if code != 200 {
                    break;
                }
                acked.lock().unwrap().push(name);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill with a pid we own and a valid signal number.
    unsafe {
        libc::kill(srv.child.id() as libc::pid_t, libc::SIGKILL);
    }
    let _ = srv.child.wait();
    writer.join().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 20, "{}", acked.len());
    let dir = std::mem::replace(&mut srv.data_dir, tempfile::tempdir().unwrap());
    drop(srv);
    let srv = Server::start_in(dir, &[]);
    let (code, body) = post(
        srv.addr("https"),
        Some("axladmin:axladmin"),
        "listPhone",
        &envelope(
            "listPhone",
            "<searchCriteria><name>SEP00000000D%</name></searchCriteria><returnedTags><name/></returnedTags>",
        ),
    );
    assert_eq!(code, 200, "{body}");
    for name in &acked {
        assert!(
            body.contains(&format!("<name>{name}</name>")),
            "{name} acknowledged but lost"
        );
    }
}

/// `executeSQLQuery` floods: forty costly statements at once are each stopped or refused as
/// busy (bounded work: one at a time, a short queue), and the node answers others meanwhile.
#[test]
fn r20_a_flood_of_costly_sql_is_bounded_and_the_node_still_answers() {
    let srv = Server::start(&[]);
    let https = srv.addr("https");
    let auth = Some("axladmin:axladmin");
    assert_eq!(
        post(https, auth, "getCCMVersion", &envelope("getCCMVersion", "")).0,
        200
    );
    let heavy = envelope(
        "executeSQLQuery",
        "<sql>select count(*) from numplan a, numplan b, numplan c, numplan d, numplan e</sql>",
    );
    let flood: Vec<_> = (0..40)
        .map(|_| {
            let heavy = heavy.clone();
            std::thread::spawn(move || post(https, auth, "executeSQLQuery", &heavy))
        })
        .collect();
    let (code, body) = post(https, auth, "getCCMVersion", &envelope("getCCMVersion", ""));
    assert_eq!(code, 200, "{body}");
    let (mut stopped, mut busy) = (0, 0);
    for t in flood {
        let (code, body) = t.join().unwrap();
        assert_eq!(code, 500, "{body}");
        if body.contains("was stopped") {
            stopped += 1;
        } else if body.contains("busy") {
            busy += 1;
        } else {
            panic!("{body}");
        }
    }
    assert!(
        stopped >= 1 && stopped + busy == 40,
        "{stopped} stopped, {busy} busy"
    );
    // And the view still answers.
    let (code, body) = post(
        https,
        auth,
        "executeSQLQuery",
        &envelope(
            "executeSQLQuery",
            "<sql>select first 1 name from device where tkclass = 1</sql>",
        ),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("<row><name>SEP"), "{body}");
}
