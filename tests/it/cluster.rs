//! A cluster of nodes on one database (issue 16): the change feed over PostgreSQL
//! LISTEN/NOTIFY, the node table and `ucm cluster status`, one node on SQLite, automatic
//! logouts once cluster-wide. Every test runs real `ucm serve` processes on a fresh database.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{spawn_ready, split_http, ucm, PgDb, Server};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/clusters/three-nodes.yaml"
);
const HOTDESK: &str = "SEP0000000000A1";
const OK: &str = "<response><success/></response>";

/// Starts node `name` of `def` on `db` on its own `bind` address (any free ports).
fn node(def: &Path, db: &str, name: &str) -> Server {
    let data_dir = tempfile::tempdir().unwrap();
    let mut cmd = ucm();
    cmd.args(["serve", "--config"])
        .arg(def)
        .args(["--db", db, "--node", name])
        .args(["--http-port", "0", "--https-port", "0", "--tftp-http-port", "0"])
        .args(["--tftp-port", "0", "--sip-port", "0", "--sips-port", "0"])
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

fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn em_post(http: SocketAddr, xml: &str) -> String {
    let body = format!("xml={}", form_encode(xml));
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    write!(
        s,
        "POST /emservice/EMServiceServlet HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    String::from_utf8(split_http(&raw).2).unwrap()
}

const APP: &str = "<appInfo><appID>emproxy</appID><appCertificate>emproxy</appCertificate></appInfo>";

fn login_xml(device: &str, user: &str) -> String {
    format!("<request>{APP}<login><deviceName>{device}</deviceName><userID>{user}</userID></login></request>")
}

fn logout_xml(device: &str) -> String {
    format!("<request>{APP}<logout><deviceName>{device}</deviceName></logout></request>")
}

fn query_xml(device: &str) -> String {
    format!("<query>{APP}<deviceUserQuery><deviceName>{device}</deviceName></deviceUserQuery></query>")
}

/// Asks `http` who is on `device` until `want` is in the answer (bounded: 10 s).
fn wait_em(http: SocketAddr, device: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = em_post(http, &query_xml(device));
        if r.contains(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{http} never answered {want}: {r}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ucm cluster status --db URL --json`: (exit code, document).
fn status(db: &str) -> (i32, serde_json::Value) {
    let o = ucm()
        .args(["cluster", "status", "--json"])
        .env("UCM_DB", db)
        .output()
        .unwrap();
    let doc = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "status is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.code().unwrap_or(-1), doc)
}

fn node_status<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {doc}"))
}

fn kill9(s: &mut Server) {
    // SAFETY: kill with a pid we own and a valid signal number.
    unsafe {
        libc::kill(s.child.id() as libc::pid_t, libc::SIGKILL);
    }
    let _ = s.child.wait();
}

#[test]
fn r16_a_second_node_on_one_sqlite_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("one.db").display());
    let first = Server::start(&["--db", &db]);
    let o = ucm()
        .args(["serve", "--db", &db, "--bind", "127.0.0.1", "--http-port", "0"])
        .args(["--https-port", "0", "--tftp-http-port", "0", "--tftp-port", "0"])
        .args(["--sip-port", "0", "--sips-port", "0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("another node is already running") && err.contains("PostgreSQL"),
        "{err}"
    );
    // The first node goes on serving; once it is gone (even killed) a node starts again.
    let (code, _, _) = crate::common::http_get(first.addr("http"), "/healthz");
    assert_eq!(code, 200);
    drop(first);
    let again = Server::start(&["--db", &db]);
    drop(again);
}

#[tokio::test]
async fn r16_three_nodes_report_in_cluster_status_and_a_killed_one_is_down_within_seconds() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let def = Path::new(FIXTURE);
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || {
        let pubn = node(def, &url, "ucm-pub");
        let sub1 = node(def, &url, "ucm-sub1");
        let mut sub2 = node(def, &url, "ucm-sub2");
        // Each node listens on the address its definition's `bind` names.
        for (n, ip) in [(&pubn, "127.0.0.1"), (&sub1, "127.0.0.2"), (&sub2, "127.0.0.3")] {
            assert_eq!(n.addr("http").ip().to_string(), ip);
        }
        // Every node reports within its first heartbeat.
        let deadline = Instant::now() + Duration::from_secs(10);
        let doc = loop {
            let (code, doc) = status(&url);
            if code == 0 {
                break doc;
            }
            assert!(Instant::now() < deadline, "never all up: {doc}");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(doc["cluster"], "three-nodes");
        for name in ["ucm-pub", "ucm-sub1", "ucm-sub2"] {
            let n = node_status(&doc, name);
            assert_eq!(n["up"], true, "{n}");
            assert_eq!(n["healthy"], true, "{n}");
        }
        let services = |name: &str| -> Vec<String> {
            serde_json::from_value(node_status(&doc, name)["services"].clone()).unwrap()
        };
        assert!(services("ucm-sub1").contains(&"extension-mobility".to_string()));
        assert!(!services("ucm-pub").contains(&"extension-mobility".to_string()));
        assert!(services("ucm-pub").contains(&"paging".to_string()));
        // An EM login on sub1 counts there.
        assert_eq!(em_post(sub1.addr("http"), &login_xml(HOTDESK, "jsmith")), OK);
        let (_, doc) = status(&url);
        assert_eq!(node_status(&doc, "ucm-sub1")["em_logins"], 1, "{doc}");
        // kill -9 sub2: the status says so, and exits 1, within seconds.
        kill9(&mut sub2);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (code, doc) = status(&url);
            if code == 1 {
                assert_eq!(doc["down"], serde_json::json!(["ucm-sub2"]), "{doc}");
                assert_eq!(node_status(&doc, "ucm-sub1")["up"], true);
                break;
            }
            assert_eq!(code, 0, "{doc}");
            assert!(Instant::now() < deadline, "sub2 never reported down: {doc}");
            std::thread::sleep(Duration::from_millis(200));
        }
        // The human table names it too.
        let o = ucm()
            .args(["cluster", "status", "--db", &url])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            text.lines().any(|l| l.starts_with("ucm-sub2") && l.contains("DOWN")),
            "{text}"
        );
        drop((pubn, sub1));
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}
