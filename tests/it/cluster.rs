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
    node_with(def, db, name, &["--http-port", "0", "--sip-port", "0"])
}

/// [`node`] with more flags (without `--http-port` or `--sip-port`, the definition's).
fn node_with(def: &Path, db: &str, name: &str, extra: &[&str]) -> Server {
    let data_dir = tempfile::tempdir().unwrap();
    let mut cmd = ucm();
    cmd.args(["serve", "--config"])
        .arg(def)
        .args(["--db", db, "--node", name])
        .args(["--https-port", "0", "--tftp-http-port", "0"])
        .args(["--tftp-port", "0", "--sips-port", "0"])
        .args(extra)
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

const APP: &str =
    "<appInfo><appID>emproxy</appID><appCertificate>emproxy</appCertificate></appInfo>";

fn login_xml(device: &str, user: &str) -> String {
    format!("<request>{APP}<login><deviceName>{device}</deviceName><userID>{user}</userID></login></request>")
}

fn logout_xml(device: &str) -> String {
    format!("<request>{APP}<logout><deviceName>{device}</deviceName></logout></request>")
}

fn query_xml(device: &str) -> String {
    format!(
        "<query>{APP}<deviceUserQuery><deviceName>{device}</deviceName></deviceUserQuery></query>"
    )
}

/// Asks `http` who is on `device` until `want` is in the answer (bounded: 10 s).
fn wait_em(http: SocketAddr, device: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = em_post(http, &query_xml(device));
        if r.contains(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{http} never answered {want}: {r}"
        );
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

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
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
        .args([
            "serve",
            "--db",
            &db,
            "--bind",
            "127.0.0.1",
            "--http-port",
            "0",
        ])
        .args([
            "--https-port",
            "0",
            "--tftp-http-port",
            "0",
            "--tftp-port",
            "0",
        ])
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
        for (n, ip) in [
            (&pubn, "127.0.0.1"),
            (&sub1, "127.0.0.2"),
            (&sub2, "127.0.0.3"),
        ] {
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
        // Paging is named on ucm-pub and ucm-sub1: the first started is active.
        assert_eq!(doc["paging"]["active"], "ucm-pub", "{doc}");
        assert_eq!(doc["paging"]["standby"], serde_json::json!(["ucm-sub1"]));
        assert_eq!(node_status(&doc, "ucm-sub1")["paging"], "standby");
        assert!(node_status(&doc, "ucm-sub2").get("paging").is_none());
        // An EM login on sub1 counts there.
        assert_eq!(
            em_post(sub1.addr("http"), &login_xml(HOTDESK, "jsmith")),
            OK
        );
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
            text.lines()
                .any(|l| l.starts_with("ucm-sub2") && l.contains("DOWN")),
            "{text}"
        );
        assert!(
            text.contains("Paging Server: active on ucm-pub") && text.contains("standby: ucm-sub1"),
            "{text}"
        );
        drop((pubn, sub1));
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

/// Workers of the propagation load: each logs its own user in and out of its own device.
const LOAD_WORKERS: usize = 4;
/// Login-logout rounds per worker.
const LOAD_ROUNDS: usize = 60;

/// The three-node fixture with lab phones 1..=LOAD_WORKERS EM-enabled and a user with a
/// device profile for each (`emuserN` on `SEP00000000100N`).
fn load_definition(dir: &Path) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(FIXTURE).unwrap();
    let mut profiles = String::new();
    let mut users = String::new();
    for i in 1..=LOAD_WORKERS {
        text = text.replace(
            &format!("    description: Lab phone {i}\n"),
            &format!("    description: Lab phone {i}\n    em_enabled: true\n"),
        );
        profiles.push_str(&format!(
            "  - name: emuser{i}-udp\n    model: Cisco 7841\n    lines:\n      - {{dn: \"2000{i}\", partition: Internal_PT}}\n    speed_dials:\n      - {{number: \"1000{i}\", label: \"EM emuser{i}\"}}\n"
        ));
        users.push_str(&format!(
            "  - userid: emuser{i}\n    last_name: Load{i}\n    password: cisco\n    pin: \"12345\"\n    device_profiles: [emuser{i}-udp]\n    default_profile: emuser{i}-udp\n"
        ));
    }
    let text = text
        .replace(
            "device_profiles:\n",
            &format!("device_profiles:\n{profiles}"),
        )
        .replace("end_users:\n", &format!("end_users:\n{users}"));
    let p = dir.join("load.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test]
async fn r16_em_changes_reach_the_other_node_through_the_feed_and_propagation_is_measured() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let def = load_definition(dir.path());
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || {
        let sub1 = node(&def, &url, "ucm-sub1");
        let sub2 = node(&def, &url, "ucm-sub2");
        let (h1, h2) = (sub1.addr("http"), sub2.addr("http"));
        // One login on sub1 is seen on sub2, and sub2's logout on sub1.
        assert_eq!(em_post(h1, &login_xml(HOTDESK, "jsmith")), OK);
        wait_em(h2, HOTDESK, "<userID>jsmith</userID>");
        assert_eq!(em_post(h2, &logout_xml(HOTDESK)), OK);
        wait_em(h1, HOTDESK, "<none/>");
        // Load: each worker logs its user in and out through alternating nodes.
        let t0 = Instant::now();
        let workers: Vec<_> = (1..=LOAD_WORKERS)
            .map(|i| {
                std::thread::spawn(move || {
                    let device = format!("SEP00000000100{i}");
                    let user = format!("emuser{i}");
                    for r in 0..LOAD_ROUNDS {
                        let (a, b) = if r % 2 == 0 { (h1, h2) } else { (h2, h1) };
                        assert_eq!(em_post(a, &login_xml(&device, &user)), OK);
                        assert_eq!(em_post(b, &logout_xml(&device)), OK);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        let took = t0.elapsed();
        // Both nodes agree with the database: every device logged out.
        for i in 1..=LOAD_WORKERS {
            for h in [h1, h2] {
                wait_em(h, &format!("SEP00000000100{i}"), "<none/>");
            }
        }
        // Each node measured the changes it applied from the other's (several changes of one
        // device heard at once apply as one: the newest). Its figures are in the first
        // heartbeat written after everything was applied.
        let changes = LOAD_WORKERS * LOAD_ROUNDS * 2;
        let applied_ms = unix_ms();
        let deadline = Instant::now() + Duration::from_secs(10);
        let doc = loop {
            let asked_ms = unix_ms();
            let (_, doc) = status(&url);
            let fresh = |n: &str| {
                let age = node_status(&doc, n)["heartbeat_age_ms"]
                    .as_i64()
                    .unwrap_or(i64::MAX);
                asked_ms.saturating_sub(age) >= applied_ms
            };
            if fresh("ucm-sub1") && fresh("ucm-sub2") {
                break doc;
            }
            assert!(
                Instant::now() < deadline,
                "no heartbeat after the load: {doc}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        for n in ["ucm-sub1", "ucm-sub2"] {
            let events = node_status(&doc, n)["feed"]["events"].as_u64().unwrap_or(0);
            assert!(events > 0, "{n} applied nothing from the feed: {doc}");
        }
        for n in ["ucm-sub1", "ucm-sub2"] {
            let f = &node_status(&doc, n)["feed"];
            println!(
                "propagation to {n}: {} applied from the feed, p50 {} ms, p99 {} ms, max {} ms",
                f["events"], f["p50_ms"], f["p99_ms"], f["max_ms"]
            );
        }
        println!(
            "load: {} EM logins and logouts through two nodes in {:.2} s ({:.0}/min)",
            changes,
            took.as_secs_f64(),
            changes as f64 / took.as_secs_f64() * 60.0
        );
        drop((sub1, sub2));
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

/// Moves the device's automatic logout to now, as the passage of time would, and announces it
/// the way every EM write does (a version bump in the same transaction). The API's unit is
/// minutes: the test moves the time instead of waiting (when a timer fires to the second is
/// the timers' unit tests' business). Returns the device's version after the move.
async fn logout_due_now(db: &str, device: &str) -> i64 {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(db).await.unwrap();
    let mut tx = c.begin().await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let n = sqlx::query("UPDATE em_logins SET logout_at = $1 WHERE device = $2")
        .bind(now)
        .bind(device)
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 1, "no login on {device}");
    let v: (i64,) = sqlx::query_as(
        "UPDATE em_devices SET version = version + 1 WHERE device = $1 RETURNING version",
    )
    .bind(device)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    v.0
}

async fn em_version(db: &str, device: &str) -> (i64, Option<String>) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(db).await.unwrap();
    let v: (i64,) = sqlx::query_as("SELECT version FROM em_devices WHERE device = $1")
        .bind(device)
        .fetch_one(&mut c)
        .await
        .unwrap();
    let last: Option<(String,)> =
        sqlx::query_as("SELECT userid FROM em_last_user WHERE device = $1")
            .bind(device)
            .fetch_optional(&mut c)
            .await
            .unwrap();
    (v.0, last.map(|l| l.0))
}

fn auto_logouts(s: &Server) -> usize {
    s.logs()
        .lines()
        .filter(|l| l.contains("EM logout") && l.contains("auto=true"))
        .count()
}

#[tokio::test]
async fn r16_an_automatic_logout_fires_once_cluster_wide_also_when_its_node_was_killed() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let def = Path::new(FIXTURE);
    let url = db.url.clone();
    let minute = "<exclusiveDuration><time>1</time></exclusiveDuration>";
    let login_minute = format!(
        "<request>{APP}<login><deviceName>{HOTDESK}</deviceName><userID>jsmith</userID>{minute}</login></request>"
    );
    let u = url.clone();
    let l = login_minute.clone();
    let (mut sub1, sub2) = tokio::task::spawn_blocking(move || {
        let sub1 = node(def, &u, "ucm-sub1");
        let sub2 = node(def, &u, "ucm-sub2");
        // sub1 makes the login (and schedules its logout); sub2 learns it through the feed.
        assert_eq!(em_post(sub1.addr("http"), &l), OK);
        wait_em(sub2.addr("http"), HOTDESK, "<userID>jsmith</userID>");
        (sub1, sub2)
    })
    .await
    .unwrap();
    kill9(&mut sub1);
    let v = logout_due_now(&url, HOTDESK).await;
    let h2 = sub2.addr("http");
    tokio::task::spawn_blocking(move || wait_em(h2, HOTDESK, "<none/>"))
        .await
        .unwrap();
    assert_eq!(
        em_version(&url, HOTDESK).await,
        (v + 1, Some("jsmith".into())),
        "one logout, by the surviving node"
    );
    sub2.wait_for_log("auto=true");
    assert_eq!(auto_logouts(&sub2), 1);

    // Both EM nodes alive: both arm the logout, exactly one ends it.
    let u = url.clone();
    let sub1 = tokio::task::spawn_blocking(move || {
        let sub1 = node(def, &u, "ucm-sub1");
        assert_eq!(em_post(h2, &login_minute), OK);
        wait_em(sub1.addr("http"), HOTDESK, "<userID>jsmith</userID>");
        sub1
    })
    .await
    .unwrap();
    let v = logout_due_now(&url, HOTDESK).await;
    let h1 = sub1.addr("http");
    tokio::task::spawn_blocking(move || {
        wait_em(h1, HOTDESK, "<none/>");
        wait_em(h2, HOTDESK, "<none/>");
    })
    .await
    .unwrap();
    assert_eq!(
        em_version(&url, HOTDESK).await.0,
        v + 1,
        "exactly one logout"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while auto_logouts(&sub1) + auto_logouts(&sub2) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        auto_logouts(&sub1) + auto_logouts(&sub2),
        2,
        "one automatic logout in each round, cluster-wide"
    );
    drop((sub1, sub2));
    db.drop_db().await;
}

fn healthz(http: SocketAddr) -> u16 {
    crate::common::http_get(http, "/healthz").0
}

fn wait_healthz(http: SocketAddr, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while healthz(http) != want {
        assert!(
            Instant::now() < deadline,
            "{http}/healthz never answered {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn r16_a_node_that_lost_the_database_refuses_em_then_resynchronises_on_reconnect() {
    use sqlx::Connection;
    let Some(db) = PgDb::create().await else {
        return;
    };
    let def = Path::new(FIXTURE);
    let name = db.url.rsplit('/').next().unwrap().to_string();
    let admin_url = std::env::var("UCM_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let u = db.url.clone();
    let sub2 = tokio::task::spawn_blocking(move || node(def, &u, "ucm-sub2"))
        .await
        .unwrap();
    let h2 = sub2.addr("http");
    assert_eq!(
        tokio::task::spawn_blocking(move || healthz(h2))
            .await
            .unwrap(),
        200
    );
    // The test's own connection outlives the outage; nobody else may connect meanwhile.
    let mut mine = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let (my_pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()")
        .fetch_one(&mut mine)
        .await
        .unwrap();
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    let outage = async |admin: &mut sqlx::PgConnection, allow: bool| {
        sqlx::query(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {allow}"))
            .execute(&mut *admin)
            .await
            .unwrap();
        if !allow {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> $2",
            )
            .bind(&name)
            .bind(my_pid)
            .execute(&mut *admin)
            .await
            .unwrap();
        }
    };
    outage(&mut admin, false).await;
    let refused = tokio::task::spawn_blocking(move || {
        wait_healthz(h2, 503);
        em_post(h2, &login_xml(HOTDESK, "jsmith"))
    })
    .await
    .unwrap();
    assert!(
        refused.contains("<error code=\"6\""),
        "EM's database error while the database is unreachable: {refused}"
    );
    // Another node's login commits while this one cannot hear it.
    let mut tx = mine.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO em_logins (device, userid, profile, logged_in_at, logout_at, node) \
         VALUES ($1, 'jsmith', 'jsmith-udp', 1, NULL, 'ucm-sub1')",
    )
    .bind(HOTDESK)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("INSERT INTO em_devices (device, version) VALUES ($1, 1)")
        .bind(HOTDESK)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    outage(&mut admin, true).await;
    // Back: the node read what it missed before it answers again.
    tokio::task::spawn_blocking(move || {
        wait_healthz(h2, 200);
        let r = em_post(h2, &query_xml(HOTDESK));
        assert!(r.contains("<userID>jsmith</userID>"), "resynchronised: {r}");
        assert_eq!(em_post(h2, &logout_xml(HOTDESK)), OK);
    })
    .await
    .unwrap();
    sub2.wait_for_log("resynchronised");
    drop(sub2);
    drop(mine);
    db.drop_db().await;
}

fn try_em_post(http: SocketAddr, xml: &str) -> Option<String> {
    let body = format!("xml={}", form_encode(xml));
    let mut s = TcpStream::connect_timeout(&http, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "POST /emservice/EMServiceServlet HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        return None;
    }
    let (status, _, body) = split_http(&raw);
    (status == 200).then(|| String::from_utf8_lossy(&body).to_string())
}

/// HAProxy (a real one) in front of the EM service of two nodes, killed on drop.
struct Haproxy {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn haproxy(backends: &[SocketAddr]) -> Haproxy {
    haproxy_checking(backends, "/healthz")
}

/// HAProxy in front of `backends`, health-checking each with `GET check`.
fn haproxy_checking(backends: &[SocketAddr], check: &str) -> Haproxy {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, b)| format!("    server n{i} {b} check inter 200ms fall 2 rise 2\n"))
        .collect();
    // Retries only when the connection to a node failed (the request never reached it); a
    // request a node may have carried out is never sent twice.
    let cfg = format!(
        "global\n    maxconn 256\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 10s\n    timeout server 10s\n    retries 3\n    option redispatch\n    retry-on conn-failure\nfrontend em\n    bind {addr}\n    default_backend nodes\nbackend nodes\n    balance roundrobin\n    option httpchk GET {check}\n    http-check expect status 200\n{servers}"
    );
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let child = std::process::Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("haproxy");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "haproxy never listened on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Haproxy {
        child,
        addr,
        _dir: dir,
    }
}

/// Login-logout rounds per worker through HAProxy (bounded in time too: `HA_LOAD_TIME`).
const HA_ROUNDS: usize = 150;
const HA_LOAD_TIME: Duration = Duration::from_secs(60);

#[tokio::test]
async fn r16_haproxy_in_front_of_two_em_nodes_loses_no_acknowledged_login_when_one_is_killed() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    if !crate::common::have("haproxy") {
        crate::common::skip_or_fail("haproxy is not installed");
        return;
    }
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let def = load_definition(dir.path());
    let url = db.url.clone();
    // Per device: the last acknowledged state (Some(user) logged in) and whether a request
    // after it went unanswered (its outcome unknown).
    let outcome = tokio::task::spawn_blocking(move || {
        let sub1 = node(&def, &url, "ucm-sub1");
        let mut sub1 = Some(sub1);
        let sub2 = node(&def, &url, "ucm-sub2");
        let lb = haproxy(&[sub1.as_ref().unwrap().addr("http"), sub2.addr("http")]);
        // The phones' configuration files (TFTP over HTTP) behind HAProxy too.
        let tftp_lb = haproxy_checking(
            &[
                sub1.as_ref().unwrap().addr("tftp_http"),
                sub2.addr("tftp_http"),
            ],
            "/ConfigFileCacheList.txt",
        );
        let done = Arc::new(AtomicUsize::new(0));
        let after_kill = Arc::new(AtomicUsize::new(0));
        let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let t0 = Instant::now();
        let workers: Vec<_> = (1..=LOAD_WORKERS)
            .map(|i| {
                let (done, after_kill, killed) = (done.clone(), after_kill.clone(), killed.clone());
                let lb = lb.addr;
                std::thread::spawn(move || {
                    let device = format!("SEP00000000100{i}");
                    let user = format!("emuser{i}");
                    let mut acked: Option<bool> = None;
                    let mut unknown = false;
                    let mut failed = 0;
                    for _ in 0..HA_ROUNDS {
                        if t0.elapsed() > HA_LOAD_TIME {
                            break;
                        }
                        for (xml, state) in [
                            (login_xml(&device, &user), true),
                            (logout_xml(&device), false),
                        ] {
                            match try_em_post(lb, &xml) {
                                Some(r) if r == OK => {
                                    acked = Some(state);
                                    unknown = false;
                                    done.fetch_add(1, Ordering::Relaxed);
                                    if killed.load(Ordering::Relaxed) {
                                        after_kill.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                // Refused (e.g. logging out a device whose login was lost in
                                // flight): the database's state stands, nothing to assume.
                                Some(_) => {}
                                None => {
                                    unknown = true;
                                    failed += 1;
                                }
                            }
                        }
                    }
                    (device, user, acked, unknown, failed)
                })
            })
            .collect();
        // Kill sub1 mid-load.
        let deadline = Instant::now() + Duration::from_secs(30);
        while done.load(Ordering::Relaxed) < 200 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        kill9(sub1.as_mut().unwrap());
        killed.store(true, Ordering::Relaxed);
        let results: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        let carried_on = after_kill.load(Ordering::Relaxed);
        let acked = done.load(Ordering::Relaxed);
        println!(
            "through HAProxy: {acked} acknowledged EM logins and logouts in {:.2} s ({:.0}/min), {carried_on} after the kill",
            t0.elapsed().as_secs_f64(),
            acked as f64 / t0.elapsed().as_secs_f64() * 60.0
        );
        let h2 = sub2.addr("http");
        let answers: Vec<String> = results
            .iter()
            .map(|r| em_post(h2, &query_xml(&r.0)))
            .collect();
        // Each device's configuration file as phones get it through HAProxy, and as the
        // surviving node serves it itself: the same file.
        let t2 = sub2.addr("tftp_http");
        let files: Vec<String> = results
            .iter()
            .map(|r| {
                let path = format!("/{}.cnf.xml", r.0);
                let (st, _, via_lb) = crate::common::http_get(tftp_lb.addr, &path);
                assert_eq!(st, 200, "{path} through HAProxy");
                let (st, _, own) = crate::common::http_get(t2, &path);
                assert_eq!(st, 200, "{path} from ucm-sub2");
                assert_eq!(
                    String::from_utf8_lossy(&via_lb),
                    String::from_utf8_lossy(&own),
                    "{path}: HAProxy's and the node's own differ"
                );
                String::from_utf8(own).unwrap()
            })
            .collect();
        drop((lb, tftp_lb));
        (results, answers, files, carried_on, sub2, sub1)
    })
    .await
    .unwrap();
    let (results, answers, files, carried_on, sub2, _sub1) = outcome;
    assert!(
        carried_on >= LOAD_WORKERS * 20,
        "the load carried on through the other node: {carried_on} acknowledged after the kill"
    );
    let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    for (((device, user, acked, unknown, failed), answer), file) in
        results.iter().zip(&answers).zip(&files)
    {
        let stored: Option<(String,)> =
            sqlx::query_as("SELECT userid FROM em_logins WHERE device = $1")
                .bind(device)
                .fetch_optional(&mut c)
                .await
                .unwrap();
        let stored = stored.map(|s| s.0);
        // The database, the surviving node's EM answer and the configuration file phones
        // get through HAProxy agree: the login's profile (its speed dial "EM <user>") is in
        // the file exactly when the database holds the login.
        match &stored {
            Some(u) => {
                assert!(
                    answer.contains(&format!("<userID>{u}</userID>")),
                    "{answer}"
                );
                assert!(
                    file.contains(&format!("<featureLabel>EM {u}</featureLabel>")),
                    "{device}: logged in as {u}, its file lacks the profile:\n{file}"
                );
            }
            None => {
                assert!(answer.contains("<none/>"), "{device}: {answer}");
                assert!(
                    !file.contains("<featureLabel>EM "),
                    "{device}: nobody logged in, its file has a profile:\n{file}"
                );
            }
        }
        // No acknowledged state lost: unless a later request's outcome is unknown, the
        // database holds what was last acknowledged.
        if !unknown {
            assert_eq!(
                stored.is_some(),
                acked.unwrap_or(false),
                "{device}: last acknowledged {acked:?}, stored {stored:?}"
            );
            if let Some(u) = &stored {
                assert_eq!(u, user);
            }
        }
        println!("{device}: {failed} requests unanswered around the kill");
    }
    drop(sub2);
    db.drop_db().await;
}

#[tokio::test]
async fn r16_a_definition_import_reaches_every_running_node() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let changed = dir.path().join("renamed.yaml");
    std::fs::write(
        &changed,
        std::fs::read_to_string(FIXTURE)
            .unwrap()
            .replace("id: three-nodes", "id: renamed"),
    )
    .unwrap();
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        let def = Path::new(FIXTURE);
        let a = node(def, &url, "ucm-sub1");
        let b = node(def, &url, "ucm-sub2");
        let o = ucm()
            .args(["db", "import"])
            .arg(&changed)
            .args(["--db", &url])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        for n in [&a, &b] {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let body = crate::common::http_get(n.addr("http"), "/healthz").2;
                let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
                if doc["cluster"] == "renamed" {
                    break;
                }
                assert!(Instant::now() < deadline, "never reloaded: {doc}");
                std::thread::sleep(Duration::from_millis(20));
            }
            n.wait_for_log("definition reloaded");
        }
    })
    .await
    .unwrap();
    db.drop_db().await;
}

/// Lockouts reach every node through the change feed: a lockout made on one node is heard on
/// both (and refuses the right password on both), and `ucm user unlock`, a write to the
/// database from outside any node, is heard on both too: each forgets the source's backoff
/// it kept in memory and answers the unlocked user at once.
#[tokio::test]
async fn r16_a_lockout_and_its_end_reach_every_node_through_the_feed() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let def = dir.path().join("lockout.yaml");
    std::fs::write(
        &def,
        std::fs::read_to_string(FIXTURE).unwrap().replace(
            "service_parameters:\n",
            "service_parameters:\n  phone_services:\n    auth_lockout_threshold: 3\n    auth_lockout_minutes: 1\n",
        ),
    )
    .unwrap();
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        let a = node(&def, &url, "ucm-sub1");
        let b = node(&def, &url, "ucm-sub2");
        let auth = |n: &Server, pw: &str| -> String {
            let q = format!(
                "/ccmcip/authenticate.jsp?UserID=jsmith&Password={pw}&devicename=SEP00036BC7B973"
            );
            let (st, _, body) = crate::common::http_get(n.addr("http"), &q);
            assert_eq!(st, 200);
            String::from_utf8(body).unwrap()
        };
        // b remembers a success; three failures on a lock jsmith out.
        assert_eq!(auth(&b, "cisco"), "AUTHORIZED");
        for pw in ["bad1", "bad2", "bad3"] {
            assert_eq!(auth(&a, pw), "UN-AUTHORIZED");
        }
        for n in [&a, &b] {
            n.wait_for_log("lockout: locked out on every node");
        }
        assert_eq!(auth(&b, "cisco"), "UN-AUTHORIZED", "locked out on b");
        assert_eq!(auth(&a, "cisco"), "UN-AUTHORIZED", "locked out on a");
        // The lockout ends from outside the nodes; a's backoff for this source (three
        // failures: 10 s) goes with it.
        let o = ucm()
            .args(["user", "unlock", "jsmith", "--db", &url])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        for n in [&a, &b] {
            n.wait_for_log("lockout ended: this node forgets the credential's failures");
        }
        assert_eq!(
            auth(&a, "cisco"),
            "AUTHORIZED",
            "a answers the unlocked user"
        );
        assert_eq!(
            auth(&b, "cisco"),
            "AUTHORIZED",
            "b answers the unlocked user"
        );
    })
    .await
    .unwrap();
    db.drop_db().await;
}

/// A port free for SIP (UDP and TCP) on `ip`.
fn free_sip_port(ip: &str) -> u16 {
    for _ in 0..50 {
        let t = std::net::TcpListener::bind((ip, 0)).unwrap();
        let port = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free SIP port on {ip}");
}

/// The three-node fixture with the two subscribers' SIP ports fixed (free ones), so every
/// node's configuration files name the other members of the Unified CM group correctly.
fn sip_port_definition(dir: &Path) -> (std::path::PathBuf, u16, u16) {
    let text = std::fs::read_to_string(FIXTURE).unwrap();
    let (p2, p3) = (free_sip_port("127.0.0.2"), free_sip_port("127.0.0.3"));
    let text = text
        .replace(
            "    bind: 127.0.0.2\n",
            &format!("    bind: 127.0.0.2\n    ports: {{sip: {p2}}}\n"),
        )
        .replace(
            "    bind: 127.0.0.3\n",
            &format!("    bind: 127.0.0.3\n    ports: {{sip: {p3}}}\n"),
        );
    let p = dir.join("sip-ports.yaml");
    std::fs::write(&p, text).unwrap();
    (p, p2, p3)
}

/// A `ucm phone sim` of `devices` fetching its configuration from `tftp`, killed on drop.
struct PhoneSim {
    child: std::process::Child,
    ready: serde_json::Value,
}

impl Drop for PhoneSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PhoneSim {
    fn start(tftp: SocketAddr, first_ip: &str, devices: &[&str], extra: &[&str]) -> PhoneSim {
        let mut cmd = ucm();
        cmd.args(["phone", "sim", "--server"])
            .arg(tftp.to_string())
            .arg("--tftp")
            .arg(tftp.to_string())
            .args(["--http-port", "0", "--first-ip", first_ip]);
        for d in devices {
            cmd.args(["--device", d]);
        }
        cmd.args(extra).env("UCM_LOG", "info");
        let (child, ready, _stderr) = spawn_ready(cmd, "ucm phone sim", Duration::from_secs(30));
        PhoneSim { child, ready }
    }

    fn http(&self, device: &str) -> SocketAddr {
        self.ready["phones"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["device"] == device)
            .and_then(|p| p["http"].as_str())
            .unwrap_or_else(|| panic!("{device} is not in {}", self.ready))
            .parse()
            .unwrap()
    }
}

/// Polls a phone's `/state` until `ok` holds (bounded by `secs`); returns the state.
fn wait_phone(
    addr: SocketAddr,
    secs: u64,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (code, _, body) = crate::common::http_get(addr, "/state");
        assert_eq!(code, 200);
        let s: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {secs} s; state:\n{s:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn on_node(s: &serde_json::Value, name: &str) -> bool {
    s["node"] == name && s["registered"] == true
}

/// The phone's only call's RTP packets received, when it is connected.
fn connected_rx(s: &serde_json::Value) -> Option<u64> {
    let c = s["calls"].as_array()?.first()?;
    (c["state"] == "connected").then(|| c["rtp_rx_packets"].as_u64().unwrap_or(0))
}

#[tokio::test]
async fn r16_a_phone_fails_over_when_its_node_is_killed_keeps_its_call_and_falls_back() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (def, p2, p3) = sip_port_definition(dir.path());
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || {
        // HQ_DP's group is ucm-sub1, ucm-sub2, ucm-pub.
        let mut sub1 = node_with(&def, &url, "ucm-sub1", &["--http-port", "0"]);
        let sub2 = node_with(&def, &url, "ucm-sub2", &["--http-port", "0"]);
        assert_eq!(sub1.addr("sip_udp").port(), p2, "{}", sub1.ready);
        let (a_dev, b_dev) = ("SEP00036BC7B973", "SEP00036BC7B974");
        let sim = PhoneSim::start(
            sub1.addr("tftp_http"),
            "127.0.16.10",
            &[a_dev, b_dev],
            &["--auto-answer", "--keepalive-ms", "300"],
        );
        let (a, b) = (sim.http(a_dev), sim.http(b_dev));
        for p in [a, b] {
            let s = wait_phone(p, 10, "registered with ucm-sub1", |s| {
                on_node(s, "ucm-sub1")
            });
            assert_eq!(s["server"], format!("127.0.0.2:{p2}"), "{s:#}");
            assert_eq!(s["failovers"], 0);
        }
        // A call between the two, with audio both ways.
        push_dial(a, "10002");
        for p in [a, b] {
            wait_phone(p, 10, "talking", |s| {
                connected_rx(s).is_some_and(|n| n > 10)
            });
        }
        // kill -9 the phones' node: both register with ucm-sub2, the call's media goes on.
        kill9(&mut sub1);
        let killed = Instant::now();
        let mut took = Vec::new();
        for p in [a, b] {
            let s = wait_phone(p, 15, "failed over to ucm-sub2", |s| on_node(s, "ucm-sub2"));
            took.push(killed.elapsed());
            assert_eq!(s["server"], format!("127.0.0.3:{p3}"), "{s:#}");
            assert_eq!(s["failovers"], 1, "{s:#}");
            assert!(
                s["events"]
                    .to_string()
                    .contains("failover: registering with ucm-sub2"),
                "{s:#}"
            );
        }
        eprintln!("failover after kill -9: {took:?}");
        for p in [a, b] {
            let before = connected_rx(&wait_phone(p, 5, "still talking", |s| {
                connected_rx(s).is_some()
            }))
            .unwrap();
            wait_phone(p, 10, "media flows after the failover", |s| {
                connected_rx(s).is_some_and(|n| n > before + 25)
            });
        }
        // ucm-sub2 holds both registrations now.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, doc) = status(&url);
            if node_status(&doc, "ucm-sub2")["registrations"].as_i64() >= Some(2) {
                break;
            }
            assert!(Instant::now() < deadline, "ucm-sub2 never held them: {doc}");
            std::thread::sleep(Duration::from_millis(200));
        }
        // ucm-sub1 returns: the phones fall back to it, still in their call.
        let sub1 = node_with(&def, &url, "ucm-sub1", &["--http-port", "0"]);
        for p in [a, b] {
            let s = wait_phone(p, 15, "fell back to ucm-sub1", |s| on_node(s, "ucm-sub1"));
            assert_eq!(s["failovers"], 2, "{s:#}");
            assert!(
                s["events"]
                    .to_string()
                    .contains("fallback: registering with ucm-sub1"),
                "{s:#}"
            );
            assert!(connected_rx(&s).is_some(), "the call survived: {s:#}");
        }
        drop((sim, sub1, sub2));
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

/// Makes the phone at `phone` dial `number` the way a server does (a pushed `Dial:`, with its
/// owner's credentials).
fn push_dial(phone: SocketAddr, number: &str) {
    push_url(phone, &format!("Dial:{number}"));
}

/// Pushes an Execute of `url` (`Dial:10002`, `Key:Hold`) to the phone at `phone`, with its
/// owner's credentials.
fn push_url(phone: SocketAddr, url: &str) {
    let xml = format!(
        "<CiscoIPPhoneExecute><ExecuteItem Priority=\"0\" URL=\"{url}\"/></CiscoIPPhoneExecute>"
    );
    let body = format!("XML={}", form_encode(&xml));
    let auth = ucm::wire::codec::base64_encode(b"jsmith:cisco");
    let mut s = TcpStream::connect(phone).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    write!(
        s,
        "POST /CGI/Execute HTTP/1.1\r\nHost: {phone}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let body = String::from_utf8_lossy(&split_http(&raw).2).to_string();
    assert!(body.contains("Status=\"0\""), "{url}: {body}");
}

/// POSTs the Redirector's login form to `http`: (status, Location).
fn redirector_login(http: SocketAddr, user: &str, password: &str) -> (u16, String) {
    let body = format!(
        "uid={}&pwd={}&destination=10002",
        form_encode(user),
        form_encode(password)
    );
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    write!(
        s,
        "POST /webdialer/Redirector HTTP/1.1\r\nHost: {http}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let (status, head, _) = split_http(&raw);
    let location = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, location)
}

#[tokio::test]
async fn r16_the_redirector_skips_a_killed_nodes_webdialer_for_the_next_one() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The Redirector on ucm-pub; its list names ucm-sub1's WebDialer first, then its own.
    let free = |ip: &str| {
        std::net::TcpListener::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (h1, h2) = (free("127.0.0.1"), free("127.0.0.2"));
    let (pub_wd, sub1_wd) = (
        format!("http://127.0.0.1:{h1}"),
        format!("http://127.0.0.2:{h2}"),
    );
    let text = std::fs::read_to_string(FIXTURE)
        .unwrap()
        .replace(
            "    bind: 127.0.0.1\n",
            &format!("    bind: 127.0.0.1\n    ports: {{http: {h1}}}\n"),
        )
        .replace(
            "    bind: 127.0.0.2\n",
            &format!("    bind: 127.0.0.2\n    ports: {{http: {h2}}}\n"),
        )
        .replace(
            "  webdialer:\n",
            &format!("  webdialer:\n    webdialers: [\"{sub1_wd}\", \"{pub_wd}/\"]\n"),
        );
    let def = dir.path().join("webdialers.yaml");
    std::fs::write(&def, text).unwrap();
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || {
        let pubn = node_with(&def, &url, "ucm-pub", &["--sip-port", "0"]);
        let mut sub1 = node_with(&def, &url, "ucm-sub1", &["--sip-port", "0"]);
        let redirector = pubn.addr("http");
        assert_eq!(redirector.port(), h1);
        let servlet = |base: &str| format!("{base}/webdialer/Webdialer?destination=10002");
        // Both up: jsmith (a user of this cluster) goes to the first WebDialer of the list.
        assert_eq!(
            redirector_login(redirector, "jsmith", "cisco"),
            (303, servlet(&sub1_wd))
        );
        // A wrong password is still refused, whichever node would serve.
        assert_eq!(redirector_login(redirector, "jsmith", "nope").0, 401);
        // kill -9 ucm-sub1: its WebDialer is skipped, the next one (this node) takes jsmith.
        kill9(&mut sub1);
        assert_eq!(
            redirector_login(redirector, "jsmith", "cisco"),
            (303, servlet(&pub_wd))
        );
        let (code, _, body) =
            crate::common::http_get(redirector, "/webdialer/Webdialer?destination=10002");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        assert!(pubn.logs().contains("Redirector: WebDialer skipped"));
        // ucm-sub1 back: the first of the list again.
        let sub1 = node_with(&def, &url, "ucm-sub1", &["--sip-port", "0"]);
        assert_eq!(
            redirector_login(redirector, "jsmith", "cisco"),
            (303, servlet(&sub1_wd))
        );
        drop((pubn, sub1));
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

// ---- Calls across nodes (issue 16) and registrations on the change feed ----

/// The three-node fixture with every node on 127.`net`.0.x (so tests run side by side) and
/// SIP on the standard port of its own address, as the intra-cluster trunk reads it from the
/// definition. `shared`: line 10002 also appears on Lab phone 1 (SEP000000001001).
fn call_definition(dir: &Path, net: u8, shared: bool) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(FIXTURE).unwrap();
    for h in 1..=3 {
        text = text.replace(
            &format!("    address: 127.0.0.{h}\n    bind: 127.0.0.{h}\n"),
            &format!("    address: 127.{net}.0.{h}\n    bind: 127.{net}.0.{h}\n"),
        );
    }
    if shared {
        text = text.replace(
            "    description: Lab phone 1\n    device_pool: HQ_DP\n    css: Internal_CSS\n    security_profile: Cisco SIP Non-Secure Profile\n    lines:\n",
            "    description: Lab phone 1\n    device_pool: HQ_DP\n    css: Internal_CSS\n    security_profile: Cisco SIP Non-Secure Profile\n    lines:\n      - dn: \"10002\"\n        partition: Internal_PT\n",
        );
        assert!(text.contains(
            "lines:\n      - dn: \"10002\"\n        partition: Internal_PT\n      - dn: \"20001\""
        ));
    }
    let p = dir.join(format!("calls-{net}.yaml"));
    std::fs::write(&p, text).unwrap();
    p
}

/// Starts node `name` of `def` with SIP on the definition's port (5060 on its own address).
fn sip_node(def: &Path, db: &str, name: &str) -> Server {
    sip_node_sips(def, db, name, false)
}

/// As [`sip_node`]; with `sips`, SIP over TLS on the definition's port too (5061 on its own
/// address) rather than any free one.
fn sip_node_sips(def: &Path, db: &str, name: &str, sips: bool) -> Server {
    let data_dir = tempfile::tempdir().unwrap();
    let mut cmd = ucm();
    cmd.args(["serve", "--config"])
        .arg(def)
        .args(["--db", db, "--node", name])
        .args(["--http-port", "0", "--https-port", "0"])
        .args(["--tftp-http-port", "0", "--tftp-port", "0"])
        .args(if sips {
            &[][..]
        } else {
            &["--sips-port", "0"][..]
        })
        .arg("--data-dir")
        .arg(data_dir.path())
        .env("UCM_LOG", "info,ucm::sip=debug");
    let (child, ready, stderr) = spawn_ready(cmd, name, Duration::from_secs(60));
    Server {
        child,
        ready,
        data_dir,
        stderr,
        seen: Default::default(),
    }
}

fn sip_of(net: u8, host: u8) -> SocketAddr {
    format!("127.{net}.0.{host}:5060").parse().unwrap()
}

/// A Call-ID never used before in this test binary. Each attempt is a new call, so it needs a
/// new Call-ID and branch (RFC 3261 §8.1.1.4, §8.1.1.7): an INVITE repeating an earlier one's
/// Call-ID, CSeq and branch is that INVITE's retransmission, which the node's server
/// transaction absorbs silently once the earlier one was answered and ACKed (§17.2.1).
fn fresh_call_id(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{tag}-{n}-{}", std::process::id())
}

/// Places a call from `from` to `number` until the node knows where the callee is (it learns
/// other nodes' registrations through the feed): each attempt answered 480 or 404 is retried,
/// within 10 s. Returns the INVITE the callee's phone got.
async fn call_when_known(
    from: &crate::callcontrol::TestPhone,
    to: &crate::callcontrol::TestPhone,
    number: &str,
    tag: &str,
) -> (String, ucm::wire::sip::Request) {
    use ucm::wire::sip::SipMessage;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let call_id = fresh_call_id(tag);
        from.send_text(&from.invite(number, &call_id)).await;
        let mut buf = vec![0u8; 65536];
        tokio::select! {
            got = to.sock.recv_from(&mut buf) => {
                let (n, _) = got.unwrap();
                match ucm::wire::sip::parse_datagram(&buf[..n]).unwrap() {
                    SipMessage::Request(r) if r.method.as_str() == "INVITE" => {
                        // Read past the phone's own reader: a retransmission of it later is absorbed.
                        to.mark_seen(&r);
                        return (call_id, r);
                    }
                    other => panic!("{number}: expected an INVITE, got {other}"),
                }
            }
            got = from.recv() => match got {
                SipMessage::Response(r) if matches!(r.status, 404 | 480) => {
                    assert!(Instant::now() < deadline, "the call to {number} never reached its node: {r}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => panic!("{number}: the caller got {other}"),
            }
        }
    }
}

/// A phone registered with ucm-pub calls a phone registered with ucm-sub1: ucm-pub sends the
/// INVITE to ucm-sub1 over the intra-cluster trunk, ucm-sub1 rings its phone, and
/// INVITE/180/200/ACK/BYE complete end to end with each phone's SDP reaching the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_a_call_between_phones_on_two_nodes_completes() {
    use crate::callcontrol::TestPhone;
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 61;
    let def = call_definition(dir.path(), net, false);
    let url = db.url.clone();
    let nodes = tokio::task::spawn_blocking(move || {
        (
            sip_node(&def, &url, "ucm-pub"),
            sip_node(&def, &url, "ucm-sub1"),
        )
    })
    .await
    .unwrap();
    // The intra-cluster trunk's packets between the two nodes, captured on lo.
    let work = tempfile::tempdir().unwrap();
    let pcap = work.path().join("trunk.pcap");
    let capture = crate::sipp::Capture::start(
        &pcap,
        &format!("udp and host 127.{net}.0.1 and host 127.{net}.0.2"),
    );
    let a = TestPhone::register(
        &format!("127.{net}.0.11"),
        "10001",
        "00036bc7b973",
        sip_of(net, 1),
    )
    .await;
    let b = TestPhone::register(
        &format!("127.{net}.0.12"),
        "10002",
        "00036bc7b974",
        sip_of(net, 2),
    )
    .await;
    let (_, inv) = call_when_known(&a, &b, "10002", "x-node").await;
    // The INVITE came from ucm-sub1 (b's node), carrying a's offer.
    let via = inv.headers.get("Via").unwrap().to_string();
    assert!(via.contains(&format!("127.{net}.0.2:5060")), "{via}");
    let offer = String::from_utf8_lossy(&inv.body).to_string();
    assert!(
        offer.contains(&format!("c=IN IP4 127.{net}.0.11")),
        "{offer}"
    );
    b.answer(&inv, 180, false).await;
    b.answer(&inv, 200, true).await;
    let ringing = a.expect_response(180).await;
    assert_eq!(ringing.status, 180);
    let ok = a.expect_response(200).await;
    let answer = String::from_utf8_lossy(&ok.body).to_string();
    assert!(
        answer.contains(&format!("c=IN IP4 127.{net}.0.12")),
        "{answer}"
    );
    a.send_text(&a.in_dialog(&ok, "ACK", 101)).await;
    b.expect_request("ACK").await;
    a.send_text(&a.in_dialog(&ok, "BYE", 102)).await;
    let bye = b.expect_request("BYE").await;
    b.answer(&bye, 200, false).await;
    a.expect_response(200).await;
    // Every SIP message between the nodes is marked CS3 (DSCP 24), the INVITE included.
    if let Some(c) = capture {
        c.stop();
        let out = std::process::Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&pcap)
            .args(["-d", "udp.port==5060,sip", "-Y", "sip", "-T", "fields"])
            .args(["-e", "ip.dsfield.dscp", "-e", "sip.CSeq.method"])
            .output()
            .expect("run tshark (Debian package tshark)");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(text.lines().any(|l| l.ends_with("INVITE")), "{text}");
        assert!(
            text.lines().all(|l| l.starts_with("24\t")),
            "not all CS3: {text}"
        );
    }
    // And back: b calls a, b hangs up.
    let (_, inv) = call_when_known(&b, &a, "10001", "x-back").await;
    a.answer(&inv, 200, true).await;
    let ok = b.expect_response(200).await;
    b.send_text(&b.in_dialog(&ok, "ACK", 101)).await;
    a.expect_request("ACK").await;
    b.send_text(&b.in_dialog(&ok, "BYE", 102)).await;
    let bye = a.expect_request("BYE").await;
    a.answer(&bye, 200, false).await;
    b.expect_response(200).await;
    drop(nodes);
    db.drop_db().await;
}

/// A shared line rings its devices on different nodes: 10002 is on SEP00036BC7B974
/// (registered with ucm-sub1) and SEP000000001001 (registered with ucm-sub2); a call from a
/// phone on ucm-pub rings both, the first to answer takes it, the other is cancelled. Before
/// the second device registers, a call that its only device refuses (486) ends 486 at the
/// caller, and the next call (a new Call-ID) is placed and rung normally: this is the path
/// that once hung, when the test placed the next call with the refused one's Call-ID and
/// branch, which the node rightly took for a retransmission (RFC 3261 §17.2.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_a_shared_line_rings_devices_on_different_nodes() {
    use crate::callcontrol::TestPhone;
    use ucm::wire::sip::SipMessage;
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 64;
    let def = call_definition(dir.path(), net, true);
    let url = db.url.clone();
    let nodes = tokio::task::spawn_blocking(move || {
        (
            sip_node(&def, &url, "ucm-pub"),
            sip_node(&def, &url, "ucm-sub1"),
            sip_node(&def, &url, "ucm-sub2"),
        )
    })
    .await
    .unwrap();
    let a = TestPhone::register(
        &format!("127.{net}.0.11"),
        "10001",
        "00036bc7b973",
        sip_of(net, 1),
    )
    .await;
    let b1 = TestPhone::register(
        &format!("127.{net}.0.12"),
        "10002",
        "00036bc7b974",
        sip_of(net, 2),
    )
    .await;
    // Only b1 is registered: b1 answers busy, the line has no Call Forward Busy, so the
    // caller gets 486 (and b1's transaction its ACK).
    let (_, inv1) = call_when_known(&a, &b1, "10002", "busy").await;
    b1.answer(&inv1, 486, false).await;
    let fin = loop {
        match a.recv().await {
            SipMessage::Response(r) if r.status >= 200 => break r,
            SipMessage::Response(_) => continue,
            other => panic!("a got {other}"),
        }
    };
    assert_eq!(fin.status, 486, "{fin}");
    b1.expect_request("ACK").await;
    let b2 = TestPhone::register(
        &format!("127.{net}.0.13"),
        "10002",
        "000000001001",
        sip_of(net, 3),
    )
    .await;
    // Once ucm-pub knows both registrations, one call rings both phones.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (inv1, inv2) = loop {
        let (_, inv1) = call_when_known(&a, &b1, "10002", "shared").await;
        let mut buf = vec![0u8; 65536];
        match tokio::time::timeout(Duration::from_secs(2), b2.sock.recv_from(&mut buf)).await {
            Ok(got) => {
                let (n, _) = got.unwrap();
                match ucm::wire::sip::parse_datagram(&buf[..n]).unwrap() {
                    SipMessage::Request(r) if r.method.as_str() == "INVITE" => {
                        b2.mark_seen(&r);
                        break (inv1, r);
                    }
                    other => panic!("b2 got {other}"),
                }
            }
            Err(_) => {
                // ucm-pub did not know b2 yet (or ucm-sub2 is slow to ring it): end this
                // attempt and call again.
                assert!(
                    Instant::now() < deadline,
                    "the shared line never rang on ucm-sub2"
                );
                b1.answer(&inv1, 486, false).await;
                // If ucm-pub did offer the call to ucm-sub2, b2 rings late: refuse that too,
                // then the call fails.
                let mut b2_refused = false;
                loop {
                    tokio::select! {
                        m = a.recv() => match m {
                            SipMessage::Response(r) if r.status >= 300 => break,
                            _ => continue,
                        },
                        m = b2.recv() => if let SipMessage::Request(r) = m {
                            if r.method.as_str() == "INVITE" {
                                b2.answer(&r, 486, false).await;
                                b2_refused = true;
                            }
                        },
                    }
                }
                // b1's (and b2's) transaction gets its ACK.
                let _ = b1.expect_request("ACK").await;
                if b2_refused {
                    let _ = b2.expect_request("ACK").await;
                }
            }
        }
    };
    assert!(inv1
        .headers
        .get("Via")
        .unwrap()
        .contains(&format!("127.{net}.0.2:5060")));
    assert!(inv2
        .headers
        .get("Via")
        .unwrap()
        .contains(&format!("127.{net}.0.3:5060")));
    b2.answer(&inv2, 180, false).await;
    b1.answer(&inv1, 200, true).await;
    let ok = loop {
        match a.recv().await {
            ucm::wire::sip::SipMessage::Response(r) if r.status == 200 => break r,
            ucm::wire::sip::SipMessage::Response(r) if r.status < 200 => continue,
            other => panic!("a got {other}"),
        }
    };
    a.send_text(&a.in_dialog(&ok, "ACK", 101)).await;
    b1.expect_request("ACK").await;
    // The other device stops ringing.
    let cancel = b2.expect_request("CANCEL").await;
    b2.answer(&cancel, 200, false).await;
    b2.answer(&inv2, 487, false).await;
    a.send_text(&a.in_dialog(&ok, "BYE", 102)).await;
    let bye = b1.expect_request("BYE").await;
    b1.answer(&bye, 200, false).await;
    a.expect_response(200).await;
    drop(nodes);
    db.drop_db().await;
}

/// Issue 15's second registrant, cluster-wide: a device registered with ucm-pub cannot be
/// taken from another address through ucm-sub1 (same rule, same 403, logged there), while
/// the phone itself may move to ucm-sub1 (its own address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_a_second_registrant_is_refused_on_another_node() {
    use crate::callcontrol::{exchange, register};
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 62;
    let def = call_definition(dir.path(), net, false);
    let url = db.url.clone();
    let (pubn, sub1) = tokio::task::spawn_blocking(move || {
        (
            sip_node(&def, &url, "ucm-pub"),
            sip_node(&def, &url, "ucm-sub1"),
        )
    })
    .await
    .unwrap();
    let (a_sip, b_sip) = (sip_of(net, 1), sip_of(net, 2));
    let phone = ucm::net::bind_udp(
        format!("127.{net}.0.11:0").parse().unwrap(),
        ucm::net::Dscp::CS3,
    )
    .unwrap();
    let phone_addr = phone.local_addr().unwrap();
    let ok = exchange(
        &phone,
        a_sip,
        &register(phone_addr, a_sip, "10001", "00036bc7b973", 600, 1),
    )
    .await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let thief = ucm::net::bind_udp(
        format!("127.{net}.0.66:0").parse().unwrap(),
        ucm::net::Dscp::CS3,
    )
    .unwrap();
    let thief_addr = thief.local_addr().unwrap();
    // A query (no Contact) binds nothing: it answers 200 until ucm-sub1 knows the binding,
    // then 403 like any request of another registrant.
    let deadline = Instant::now() + Duration::from_secs(10);
    for cseq in 1.. {
        let query: String = register(thief_addr, b_sip, "10001", "00036bc7b973", 600, cseq)
            .split_inclusive("\r\n")
            .filter(|l| !l.starts_with("Contact:") && !l.starts_with("Expires:"))
            .collect();
        let r = exchange(&thief, b_sip, &query).await;
        if r.starts_with("SIP/2.0 403") {
            break;
        }
        assert!(r.starts_with("SIP/2.0 200"), "{r}");
        assert!(
            !r.contains("Contact:"),
            "a query from a stranger listed a binding: {r}"
        );
        assert!(
            Instant::now() < deadline,
            "ucm-sub1 never learnt the registration"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stolen = exchange(
        &thief,
        b_sip,
        &register(thief_addr, b_sip, "10001", "00036bc7b973", 600, 99),
    )
    .await;
    assert!(stolen.starts_with("SIP/2.0 403"), "{stolen}");
    assert!(
        stolen.contains("registered from another address"),
        "{stolen}"
    );
    sub1.wait_for_log("REGISTER refused: the device is registered from another address");
    // Nor can it be removed through the other node.
    let gone = exchange(
        &thief,
        b_sip,
        &register(thief_addr, b_sip, "10001", "00036bc7b973", 0, 100),
    )
    .await;
    assert!(gone.starts_with("SIP/2.0 403"), "{gone}");
    // The phone itself moves to ucm-sub1 (failover), and ucm-pub learns it: the thief is
    // refused there too, the phone's refresh on ucm-sub1 is accepted.
    let moved = exchange(
        &phone,
        b_sip,
        &register(phone_addr, b_sip, "10001", "00036bc7b973", 600, 2),
    )
    .await;
    assert!(moved.starts_with("SIP/2.0 200"), "{moved}");
    let on_pub = exchange(
        &thief,
        a_sip,
        &register(thief_addr, a_sip, "10001", "00036bc7b973", 600, 101),
    )
    .await;
    assert!(on_pub.starts_with("SIP/2.0 403"), "{on_pub}");
    // The database says where the phone is now.
    let store = ucm::store::Store::open(&db.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = store
            .live_registrations(ucm::sip::registrar::unix_now())
            .await
            .unwrap();
        let row = rows.iter().find(|r| r.device == "SEP00036BC7B973");
        if row.is_some_and(|r| r.node == "ucm-sub1" && r.source == phone_addr.to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.close().await;
    drop((pubn, sub1));
    db.drop_db().await;
}

/// The intra-cluster trunk trusts only nodes of the definition: an INVITE carrying its header
/// from a stranger is refused (403) and rings nothing; from a node's address but another port
/// too. From a node (the test plays ucm-sub2, which is not running, on its address and SIP
/// port) a call is delivered only to devices registered with the receiving node: one
/// registered elsewhere gets 480 and is never sent on (no loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_intra_cluster_calls_trust_only_nodes_and_never_loop() {
    use crate::callcontrol::{exchange, TestPhone};
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 63;
    let def = call_definition(dir.path(), net, false);
    let url = db.url.clone();
    let (pubn, sub1) = tokio::task::spawn_blocking(move || {
        (
            sip_node(&def, &url, "ucm-pub"),
            sip_node(&def, &url, "ucm-sub1"),
        )
    })
    .await
    .unwrap();
    let (a_sip, b_sip) = (sip_of(net, 1), sip_of(net, 2));
    let a = TestPhone::register(&format!("127.{net}.0.11"), "10001", "00036bc7b973", a_sip).await;
    let b = TestPhone::register(&format!("127.{net}.0.12"), "10002", "00036bc7b974", b_sip).await;
    let invite = |from: SocketAddr, to: SocketAddr, dn: &str, device: &str, cid: &str| {
        let sdp = format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n", ip = from.ip());
        format!(
            "INVITE sip:{dn}@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{cid}\r\nFrom: <sip:30271@{from}>;tag=f{cid}\r\nTo: <sip:{dn}@{to}>\r\nCall-ID: {cid}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:{from}>\r\nX-Ucm-Deliver: line={dn};pt=Internal_PT;devices={device};node=ucm-sub2\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    };
    // A stranger forging the header.
    let stranger = ucm::net::bind_udp(
        format!("127.{net}.0.66:0").parse().unwrap(),
        ucm::net::Dscp::CS3,
    )
    .unwrap();
    let s_addr = stranger.local_addr().unwrap();
    let r = exchange(
        &stranger,
        b_sip,
        &invite(s_addr, b_sip, "10002", "SEP00036BC7B974", "forged-1"),
    )
    .await;
    assert!(r.starts_with("SIP/2.0 403"), "{r}");
    assert!(r.contains("no node of the cluster"), "{r}");
    // A node's address from another port is not the node either.
    let side = ucm::net::bind_udp(
        format!("127.{net}.0.3:0").parse().unwrap(),
        ucm::net::Dscp::CS3,
    )
    .unwrap();
    let side_addr = side.local_addr().unwrap();
    let r = exchange(
        &side,
        b_sip,
        &invite(side_addr, b_sip, "10002", "SEP00036BC7B974", "forged-2"),
    )
    .await;
    assert!(r.starts_with("SIP/2.0 403"), "{r}");
    // The node itself: ucm-sub2's address and SIP port.
    let node = ucm::net::bind_udp(sip_of(net, 3), ucm::net::Dscp::CS3).unwrap();
    let n_addr = node.local_addr().unwrap();
    // ucm-sub1 knows phone a is registered with ucm-pub once a call from b reaches it.
    let (_, inv) = call_when_known(&b, &a, "10001", "known").await;
    a.answer(&inv, 486, false).await;
    b.expect_response(486).await;
    a.expect_request("ACK").await;
    // Asked by a node to deliver to phone a, ucm-sub1 refuses (480) and does not send the
    // call on to ucm-pub.
    let mut r = exchange(
        &node,
        b_sip,
        &invite(n_addr, b_sip, "10001", "SEP00036BC7B973", "loop-1"),
    )
    .await;
    let mut buf = vec![0u8; 65536];
    while r.starts_with("SIP/2.0 1") {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), node.recv_from(&mut buf))
            .await
            .expect("a final answer within 5 s")
            .unwrap();
        r = String::from_utf8_lossy(&buf[..n]).to_string();
    }
    assert!(r.starts_with("SIP/2.0 480"), "{r}");
    sub1.wait_for_log("intra-cluster call for devices not registered here");
    // Sent on, phone a would ring with the caller 30271: the next thing it hears is b's
    // next call instead.
    b.send_text(&b.invite("10001", "after-loop")).await;
    let inv = a.expect_request("INVITE").await;
    let from = inv.headers.get("From").unwrap().to_string();
    assert!(from.contains("sip:10002@"), "{from}");
    a.answer(&inv, 486, false).await;
    b.expect_response(486).await;
    a.expect_request("ACK").await;
    // A device registered with ucm-sub1 is delivered: phone b rings.
    node.send_to(
        invite(n_addr, b_sip, "10002", "SEP00036BC7B974", "trusted-1").as_bytes(),
        b_sip,
    )
    .await
    .unwrap();
    let inv = b.expect_request("INVITE").await;
    assert_eq!(
        inv.headers.get("X-Ucm-Deliver"),
        None,
        "the trunk's header stays between nodes"
    );
    drop((pubn, sub1));
    db.drop_db().await;
}

/// WebDialer on one node places a third-party call for phones registered with the two
/// others: ucm-sub2 rings jsmith's phone (registered with ucm-pub) through ucm-pub, once it
/// answers calls 10002 (registered with ucm-sub1) through ucm-sub1, and the two phones'
/// SDP meet (the user's phone's ACK carries the destination's answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_webdialer_on_one_node_calls_for_phones_registered_on_others() {
    use crate::callcontrol::TestPhone;
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 65;
    let def = call_definition(dir.path(), net, false);
    let url = db.url.clone();
    let nodes = tokio::task::spawn_blocking(move || {
        (
            sip_node(&def, &url, "ucm-pub"),
            sip_node(&def, &url, "ucm-sub1"),
            sip_node(&def, &url, "ucm-sub2"),
        )
    })
    .await
    .unwrap();
    let wd = nodes.2.addr("http");
    let a = TestPhone::register(
        &format!("127.{net}.0.11"),
        "10001",
        "00036bc7b973",
        sip_of(net, 1),
    )
    .await;
    let b = TestPhone::register(
        &format!("127.{net}.0.12"),
        "10002",
        "00036bc7b974",
        sip_of(net, 2),
    )
    .await;
    // ucm-sub2 must have heard of both registrations: until then WebDialer answers an error.
    let deadline = Instant::now() + Duration::from_secs(15);
    let xml = crate::webdialer::make_call_xml(
        "jsmith",
        "cisco",
        "10002",
        "jsmith",
        "SEP00036BC7B973",
        "10001",
    );
    let inv = loop {
        let xml = xml.clone();
        let mut soap = tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(wd).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(60))).ok();
            write!(
                s,
                "POST /webdialer/services/WebdialerSoapService70 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml; charset=utf-8\r\nSOAPAction: \"\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                xml.len()
            )
            .unwrap();
            let mut raw = Vec::new();
            s.read_to_end(&mut raw).unwrap();
            String::from_utf8(split_http(&raw).2).unwrap()
        });
        let mut buf = vec![0u8; 65536];
        tokio::select! {
            got = a.sock.recv_from(&mut buf) => {
                let (n, _) = got.unwrap();
                match ucm::wire::sip::parse_datagram(&buf[..n]).unwrap() {
                    ucm::wire::sip::SipMessage::Request(r) if r.method.as_str() == "INVITE" => {
                        a.mark_seen(&r);
                        break (r, soap);
                    }
                    other => panic!("the user's phone got {other}"),
                }
            }
            body = &mut soap => {
                let body = body.unwrap();
                assert!(Instant::now() < deadline, "WebDialer on ucm-sub2 never rang the phone: {body}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let (inv, soap) = inv;
    // The user's phone is rung by its own node.
    let via = inv.headers.get("Via").unwrap().to_string();
    assert!(via.contains(&format!("127.{net}.0.1:5060")), "{via}");
    a.answer(&inv, 200, true).await;
    // The destination is rung by its node, with the user's phone's offer.
    let binv = b.expect_request("INVITE").await;
    assert!(binv
        .headers
        .get("Via")
        .unwrap()
        .contains(&format!("127.{net}.0.2:5060")));
    let offer = String::from_utf8_lossy(&binv.body).to_string();
    assert!(
        offer.contains(&format!("c=IN IP4 127.{net}.0.11")),
        "{offer}"
    );
    b.answer(&binv, 200, true).await;
    b.expect_request("ACK").await;
    let ack = a.expect_request("ACK").await;
    let answer = String::from_utf8_lossy(&ack.body).to_string();
    assert!(
        answer.contains(&format!("c=IN IP4 127.{net}.0.12")),
        "{answer}"
    );
    let body = soap.await.unwrap();
    assert!(body.contains(">0</responseCode>"), "{body}");
    drop(nodes);
    db.drop_db().await;
}

// ---- Startup race and one Paging Server per cluster with standbys (issue 16) ----

/// Two nodes started at the same moment on an empty PostgreSQL database with the same
/// definition: both import it (the database lets one write it; the other finds it there) and
/// both serve; both name paging, and the database makes exactly one the active Paging Server.
/// Several rounds, each on a fresh database.
#[tokio::test]
async fn r16_two_nodes_started_at_once_on_an_empty_database_both_serve() {
    for round in 0..3 {
        let Some(db) = PgDb::create().await else {
            return;
        };
        let url = db.url.clone();
        let result = tokio::task::spawn_blocking(move || {
            let def = Path::new(FIXTURE);
            // Both processes are started before either is waited for.
            let (a, b) = std::thread::scope(|s| {
                let a = s.spawn(|| node(def, &url, "ucm-pub"));
                let b = s.spawn(|| node(def, &url, "ucm-sub1"));
                (a.join(), b.join())
            });
            let (a, b) = (
                a.unwrap_or_else(|_| panic!("round {round}: ucm-pub did not come up")),
                b.unwrap_or_else(|_| panic!("round {round}: ucm-sub1 did not come up")),
            );
            // Exactly one wrote it; the other found it stored (before or under the lock).
            let logs = [a.logs(), b.logs()];
            let wrote = logs
                .iter()
                .filter(|l| l.contains("definition imported") && !l.contains("by another node"))
                .count();
            let raced = logs
                .iter()
                .filter(|l| l.contains("definition imported by another node"))
                .count();
            assert_eq!(wrote, 1, "round {round}: {logs:#?}");
            for n in [&a, &b] {
                let logs = n.logs();
                assert!(!logs.contains("duplicate key"), "round {round}: {logs}");
            }
            // Both are up and healthy, and exactly one is the active Paging Server.
            let deadline = Instant::now() + Duration::from_secs(10);
            let doc = loop {
                let (_, doc) = status(&url);
                let ok = ["ucm-pub", "ucm-sub1"]
                    .iter()
                    .all(|n| node_status(&doc, n)["healthy"] == true);
                if ok && doc["paging"]["active"].is_string() {
                    break doc;
                }
                assert!(Instant::now() < deadline, "round {round}: {doc}");
                std::thread::sleep(Duration::from_millis(100));
            };
            let roles: Vec<&str> = ["ucm-pub", "ucm-sub1"]
                .iter()
                .map(|n| node_status(&doc, n)["paging"].as_str().unwrap_or("?"))
                .collect();
            let mut sorted = roles.clone();
            sorted.sort();
            assert_eq!(sorted, ["active", "standby"], "round {round}: {doc}");
            let active = doc["paging"]["active"].as_str().unwrap().to_string();
            let (winner, loser) = if active == "ucm-pub" { (&a, &b) } else { (&b, &a) };
            winner.wait_for_log("this node is the active Paging Server");
            assert!(
                !loser
                    .logs()
                    .contains("this node is the active Paging Server"),
                "round {round}: both active"
            );
            // Both serve the one stored definition.
            for n in [&a, &b] {
                assert_eq!(healthz(n.addr("http")), 200);
            }
            eprintln!(
                "round {round}: both up, one import written ({raced} found it under the lock), {active} active"
            );
            drop((a, b));
        })
        .await;
        db.drop_db().await;
        result.unwrap();
    }
}

/// The three-node fixture on 127.`net`.0.x (SIP on 5060 of each node's own address, as the
/// intra-cluster trunk reads it), with paging also named on the nodes in `more_paging`.
fn paging_definition(dir: &Path, net: u8, more_paging: &[&str]) -> std::path::PathBuf {
    let p = call_definition(dir, net, false);
    let mut text = std::fs::read_to_string(&p).unwrap();
    for n in more_paging {
        let at = text.find(&format!("  - name: {n}\n")).unwrap();
        let end = at + text[at..].find("webdialer]").unwrap();
        text.replace_range(end..end + "webdialer]".len(), "webdialer, paging]");
    }
    std::fs::write(&p, text).unwrap();
    p
}

/// Who pages whom in a cluster page test: the caller's phone (dialling with its owner's
/// credentials) and the lab phones paged (group demo-all, DialCast 7000).
struct Who {
    pager: &'static str,
    owner: (&'static str, &'static str),
    paged: &'static [&'static str],
}

/// HQ phones: their Unified CM group starts with ucm-sub1.
const HQ: Who = Who {
    pager: "SEP00036BC7B973",
    owner: ("jsmith", "cisco"),
    paged: &[
        "SEP000000001001",
        "SEP000000001002",
        "SEP000000001003",
        "SEP000000001004",
    ],
};

/// Branch phones: their Unified CM group starts with ucm-sub2.
const BRANCH: Who = Who {
    pager: "SEP00036BC7B976",
    owner: ("ssmith", "cisco"),
    paged: &[
        "SEP00000000101A",
        "SEP00000000101B",
        "SEP00000000101C",
        "SEP00000000101D",
    ],
};

/// The caller's phone and the paged phones (web servers on 8081, as the fixture's paging
/// section says), from `first_ip`, on `srv`'s node (their Unified CM group's first).
fn paging_phones(srv: &Server, first_ip: &str, who: &Who) -> crate::phone::Sim {
    let mut args = vec![
        "--first-ip",
        first_ip,
        "--http-port",
        "8081",
        "--auto-answer",
        "--device",
        who.pager,
    ];
    for d in who.paged {
        args.extend(["--device", d]);
    }
    let sim = crate::phone::Sim::start(srv, &args);
    for d in who.paged.iter().chain([&who.pager]) {
        crate::phone::wait_state(sim.http(d), 15, &format!("{d} registered"), |s| {
            s["registered"] == true
        });
    }
    sim
}

/// Waits (bounded) until `ucm cluster status` names `node` the active Paging Server.
fn wait_active_paging(db: &str, node: &str, secs: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (_, doc) = status(db);
        if doc["paging"]["active"] == node {
            return doc;
        }
        assert!(
            Instant::now() < deadline,
            "{node} not the active Paging Server within {secs} s: {doc}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The caller dials 7000 (the pushed `Dial:`, with its owner's credentials); returns the
/// Call-ID of its page once every paged phone hears the stream.
fn start_page(sim: &crate::phone::Sim, who: &Who) -> String {
    let caller = sim.http(who.pager);
    let (_, body) = crate::phone::push(caller, Some(who.owner), &["Dial:7000"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    let s = crate::phone::wait_state(caller, 15, "the page answered", |s| {
        crate::phone::calls(s)
            .iter()
            .any(|c| c["state"] == "connected")
    });
    let call_id = crate::phone::calls(&s)
        .iter()
        .find(|c| c["state"] == "connected")
        .and_then(|c| c["call_id"].as_str().map(str::to_string))
        .expect("a connected call");
    for d in who.paged {
        crate::phone::wait_state(sim.http(d), 15, &format!("{d} joined"), |s| {
            crate::paging::page_stream(s)
                .is_some_and(|st| st["active"] == true && st["packets"].as_u64() > Some(10))
        });
    }
    call_id
}

/// The caller hangs up.
fn hang_up(sim: &crate::phone::Sim, who: &Who) {
    let (_, body) = crate::phone::push(sim.http(who.pager), Some(who.owner), &["Key:Onhook"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
}

/// Every paged phone left the page on `RTPRx:Stop`.
fn all_left(sim: &crate::phone::Sim, who: &Who) {
    for d in who.paged {
        let s = crate::phone::wait_state(sim.http(d), 15, &format!("{d} left the page"), |s| {
            crate::paging::page_stream(s).is_some_and(|st| st["active"] == false)
        });
        let st = crate::paging::page_stream(&s).unwrap();
        assert_eq!(st["stop_reason"], "RTPRx:Stop", "{d}: {st:#}");
    }
}

/// The page's report, stored by the node that ran it, as checked by any node.
fn page_report(srv: &Server, call_id: &str, who: &Who) -> serde_json::Value {
    let r = crate::paging::report_for(srv, call_id);
    assert_eq!(r["joined"].as_u64(), Some(who.paged.len() as u64), "{r:#}");
    r
}

/// One Paging Server per cluster: ucm-pub is active, ucm-sub1 stands by and holds the phones.
/// A page from a phone on ucm-sub1 goes to ucm-pub over the intra-cluster trunk; `kill -9` of
/// ucm-pub; ucm-sub1 takes the lease within seconds and the same phone pages again, through it.
#[tokio::test]
async fn r16_a_standby_paging_server_takes_over_when_the_active_node_is_killed() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 66;
    let def = paging_definition(dir.path(), net, &[]);
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _one = crate::paging::PAGING
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut pubn = sip_node(&def, &url, "ucm-pub");
        let sub1 = sip_node(&def, &url, "ucm-sub1");
        let doc = wait_active_paging(&url, "ucm-pub", 10);
        assert_eq!(node_status(&doc, "ucm-sub1")["paging"], "standby", "{doc}");
        assert_eq!(node_status(&doc, "ucm-pub")["paging"], "active", "{doc}");
        assert!(
            node_status(&doc, "ucm-sub2").get("paging").is_none(),
            "{doc}"
        );
        sub1.wait_for_log("route points served by other nodes");
        let sim = paging_phones(&sub1, &format!("127.{net}.1.10"), &HQ);
        // A page through the active node.
        let call_id = start_page(&sim, &HQ);
        hang_up(&sim, &HQ);
        all_left(&sim, &HQ);
        let r = page_report(&sub1, &call_id, &HQ);
        assert_eq!(r["node"], "ucm-pub", "{r:#}");
        assert_eq!(r["ended_by"], "caller hung up", "{r:#}");
        assert!(sub1
            .logs()
            .contains("offering the call to the route point's node"));
        // kill -9 the active node: the standby takes the lease once it lapses.
        kill9(&mut pubn);
        let killed = Instant::now();
        let doc = wait_active_paging(&url, "ucm-sub1", 15);
        let took = killed.elapsed();
        assert_eq!(node_status(&doc, "ucm-sub1")["paging"], "active", "{doc}");
        eprintln!("standby Paging Server active {took:?} after kill -9 of the active one");
        // The same phone pages again: the page runs on ucm-sub1.
        let call_id = start_page(&sim, &HQ);
        hang_up(&sim, &HQ);
        all_left(&sim, &HQ);
        let r = page_report(&sub1, &call_id, &HQ);
        assert_eq!(r["node"], "ucm-sub1", "{r:#}");
        for p in r["phones"].as_array().unwrap() {
            if p["outcome"] == "joined" {
                assert_eq!(p["left"], true, "{p}");
            }
        }
        drop((sim, sub1));
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

/// The active Paging Server is killed (`kill -9`) while a page runs: it can tell nobody to
/// stop, so the phones would keep listening to a stream nobody sends. The standby that takes
/// the lease finds the page's listeners the dead node recorded (`paging_listeners`, migration
/// 0020) and tells each one `RTPRx:Stop`, then forgets them; it pages normally afterwards.
#[tokio::test]
async fn r16_phones_of_a_page_whose_node_is_killed_are_told_to_stop_by_the_standby() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 76;
    let def = paging_definition(dir.path(), net, &[]);
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _one = crate::paging::PAGING
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut pubn = sip_node(&def, &url, "ucm-pub");
        let sub1 = sip_node(&def, &url, "ucm-sub1");
        wait_active_paging(&url, "ucm-pub", 10);
        sub1.wait_for_log("route points served by other nodes");
        let sim = paging_phones(&sub1, &format!("127.{net}.1.10"), &HQ);
        let call_id = start_page(&sim, &HQ);
        // The page is live on ucm-pub, its listeners recorded; kill -9 it mid-page.
        let deadline = Instant::now() + Duration::from_secs(10);
        let recorded = loop {
            let r = listeners(&url);
            if r.len() == HQ.paged.len() {
                break r;
            }
            assert!(Instant::now() < deadline, "listeners not recorded: {r:?}");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            recorded
                .iter()
                .all(|(n, c)| n == "ucm-pub" && c == &call_id),
            "{recorded:?}"
        );
        kill9(&mut pubn);
        wait_active_paging(&url, "ucm-sub1", 15);
        // Every paged phone is told to stop by the new active node.
        all_left(&sim, &HQ);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !listeners(&url).is_empty() {
            assert!(
                Instant::now() < deadline,
                "left-behind listeners never forgotten"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(sub1.logs().contains("told RTPRx:Stop"));
        // The caller is not left in a dead call: ucm-sub1, whose call it was, releases it once
        // it sees ucm-pub down (the BYE says why).
        let s = crate::phone::wait_state(sim.http(HQ.pager), 15, "the page call released", |s| {
            crate::phone::calls(s)
                .iter()
                .any(|c| c["call_id"] == call_id.as_str() && c["state"] == "ended")
        });
        let ended = crate::phone::calls(&s)
            .into_iter()
            .find(|c| c["call_id"] == call_id.as_str())
            .unwrap();
        assert_eq!(ended["end_reason"], "remote hangup", "{ended:#}");
        sub1.wait_for_log("call released: the node serving its other side is down");
        // ucm-sub1 pages on its own now.
        let call_id = start_page(&sim, &HQ);
        hang_up(&sim, &HQ);
        all_left(&sim, &HQ);
        let r = page_report(&sub1, &call_id, &HQ);
        assert_eq!(r["node"], "ucm-sub1", "{r:#}");
        assert!(listeners(&url).is_empty());
        drop((sim, sub1));
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

/// A phone in a call that runs through other nodes than the Paging Server's is busy all the
/// same: Steve Smith's phone (on ucm-sub2) calls Lab phone 1 (on ucm-sub1), then John's phone
/// pages demo-all on ucm-pub at once, which learns the other nodes' busy phones from the
/// change feed (`busy` announcements). Lab phone 1 is skipped and reported busy (the default
/// `busy_phones: skip`), the other lab phones are paged. Once the call ends, a page right
/// after reaches Lab phone 1 too.
#[tokio::test]
async fn r16_a_phone_on_a_call_on_other_nodes_is_not_paged() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 77;
    let def = paging_definition(dir.path(), net, &[]);
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _one = crate::paging::PAGING
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let pubn = sip_node(&def, &url, "ucm-pub");
        let sub1 = sip_node(&def, &url, "ucm-sub1");
        let sub2 = sip_node(&def, &url, "ucm-sub2");
        wait_active_paging(&url, "ucm-pub", 10);
        sub1.wait_for_log("route points served by other nodes");
        let first_ip = format!("127.{net}.1.10");
        let mut args = vec![
            "--first-ip",
            first_ip.as_str(),
            "--http-port",
            "8081",
            "--auto-answer",
            "--device",
            HQ.pager,
            "--device",
            BRANCH.pager,
        ];
        for d in HQ.paged {
            args.extend(["--device", d]);
        }
        let sim = crate::phone::Sim::start(&sub1, &args);
        for (d, node) in HQ
            .paged
            .iter()
            .chain([&HQ.pager])
            .map(|d| (*d, "ucm-sub1"))
            .chain([(BRANCH.pager, "ucm-sub2")])
        {
            crate::phone::wait_state(sim.http(d), 15, &format!("{d} on {node}"), |s| {
                on_node(s, node)
            });
        }
        // Steve calls Lab phone 1 (20001), which answers: both are on a call that ucm-pub
        // carries no part of.
        let (lab1, steve) = (HQ.paged[0], sim.http(BRANCH.pager));
        let (_, body) = crate::phone::push(steve, Some(BRANCH.owner), &["Dial:20001"]);
        assert!(body.contains(r#"Status="0""#), "{body}");
        for p in [steve, sim.http(lab1)] {
            crate::phone::wait_state(p, 15, "on the call", |s| {
                crate::phone::calls(s)
                    .iter()
                    .any(|c| c["state"] == "connected")
            });
        }
        // John pages demo-all on ucm-pub at once (the call's nodes announce their busy
        // devices on the change feed, not only in their next heartbeat): the other three
        // join, Lab phone 1 is left out.
        let heartbeats_knew = busy_rows(&url).contains(&format!("\"{lab1}\""));
        let caller = sim.http(HQ.pager);
        let (_, body) = crate::phone::push(caller, Some(HQ.owner), &["Dial:7000"]);
        assert!(body.contains(r#"Status="0""#), "{body}");
        let s = crate::phone::wait_state(caller, 15, "the page answered", |s| {
            crate::phone::calls(s)
                .iter()
                .any(|c| c["state"] == "connected")
        });
        let call_id = crate::phone::calls(&s)
            .iter()
            .find(|c| c["state"] == "connected")
            .and_then(|c| c["call_id"].as_str().map(str::to_string))
            .expect("a connected call");
        for d in &HQ.paged[1..] {
            crate::phone::wait_state(sim.http(d), 15, &format!("{d} joined"), |s| {
                crate::paging::page_stream(s).is_some_and(|st| st["active"] == true)
            });
        }
        hang_up(&sim, &HQ);
        let r = crate::paging::report_for(&sub1, &call_id);
        assert_eq!(r["node"], "ucm-pub", "{r:#}");
        let outcome = |d: &str| {
            r["phones"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["device"] == d)
                .map(|p| p["outcome"].as_str().unwrap_or("").to_string())
        };
        assert_eq!(outcome(lab1).as_deref(), Some("busy"), "{r:#}");
        for d in &HQ.paged[1..] {
            assert_eq!(outcome(d).as_deref(), Some("joined"), "{d}: {r:#}");
        }
        eprintln!("the heartbeats already listed {lab1} when the page started: {heartbeats_knew}");
        // Steve hangs up, and John pages again at once: Lab phone 1 is free and joins (its
        // node's last heartbeat, up to a second old, may still list it busy; the feed says
        // it is not).
        let (_, body) = crate::phone::push(steve, Some(BRANCH.owner), &["Key:Onhook"]);
        assert!(body.contains(r#"Status="0""#), "{body}");
        crate::phone::wait_state(sim.http(lab1), 15, "off the call", |s| {
            crate::phone::calls(s).iter().all(|c| c["state"] == "ended")
        });
        let stale = busy_rows(&url).contains(&format!("\"{lab1}\""));
        let call_id = start_page(&sim, &HQ);
        hang_up(&sim, &HQ);
        let r = crate::paging::report_for(&sub1, &call_id);
        let joined = r["phones"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["outcome"] == "joined")
            .count();
        assert_eq!(joined, HQ.paged.len(), "{r:#}");
        eprintln!("a heartbeat still listed {lab1} busy when the second page started: {stale}");
        drop((sim, pubn, sub1, sub2));
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

/// The `status` column of `cluster_nodes`, all rows, as text.
fn busy_rows(db: &str) -> String {
    let db = db.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::{Connection, Row};
            let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
            sqlx::query("SELECT name, status FROM cluster_nodes ORDER BY name")
                .fetch_all(&mut c)
                .await
                .unwrap()
                .iter()
                .map(|r| format!("{}: {}\n", r.get::<String, _>(0), r.get::<String, _>(1)))
                .collect()
        })
    })
    .join()
    .unwrap()
}

/// The rows of `paging_listeners` as (node, call_id).
fn listeners(db: &str) -> Vec<(String, String)> {
    let db = db.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::{Connection, Row};
            let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
            sqlx::query("SELECT node, call_id FROM paging_listeners ORDER BY device")
                .fetch_all(&mut c)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        })
    })
    .join()
    .unwrap()
}

/// The active Paging Server is stopped (SIGTERM) while a page runs: the page ends cleanly,
/// every paged phone gets `RTPRx:Stop`, the report says why; the lease is released and the
/// standby is active at once. With both paging nodes gone, `ucm cluster status` says no
/// Paging Server is active and exits 1.
#[tokio::test]
async fn r16_a_page_on_a_node_that_stops_gracefully_ends_cleanly_and_the_standby_takes_over() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 67;
    let def = paging_definition(dir.path(), net, &[]);
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _one = crate::paging::PAGING
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut pubn = sip_node(&def, &url, "ucm-pub");
        let mut sub1 = sip_node(&def, &url, "ucm-sub1");
        wait_active_paging(&url, "ucm-pub", 10);
        sub1.wait_for_log("route points served by other nodes");
        let sim = paging_phones(&sub1, &format!("127.{net}.1.10"), &HQ);
        let call_id = start_page(&sim, &HQ);
        // Stop the active node mid-page.
        let stopped = Instant::now();
        let st = pubn.terminate();
        assert!(st.success(), "{st:?}\n{}", pubn.logs());
        all_left(&sim, &HQ);
        let r = page_report(&sub1, &call_id, &HQ);
        assert_eq!(r["node"], "ucm-pub", "{r:#}");
        assert_eq!(r["ended_by"], "node stopping", "{r:#}");
        for p in r["phones"].as_array().unwrap() {
            if p["outcome"] == "joined" {
                assert_eq!(p["left"], true, "{p}");
            }
        }
        assert!(pubn.logs().contains("lease released"), "{}", pubn.logs());
        // The caller's call was ended by the stopping node (a BYE through ucm-sub1).
        crate::phone::wait_state(sim.http(HQ.pager), 10, "the caller's call ended", |s| {
            !crate::phone::calls(s)
                .iter()
                .any(|c| c["state"] == "connected")
        });
        wait_active_paging(&url, "ucm-sub1", 10);
        eprintln!(
            "standby Paging Server active {:?} after SIGTERM of the active one",
            stopped.elapsed()
        );
        // Neither paging node left: no active Paging Server, and the status says so.
        let st = sub1.terminate();
        assert!(st.success());
        let o = ucm()
            .args(["cluster", "status", "--db", &url])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{text}{err}");
        assert!(text.contains("Paging Server: NONE ACTIVE"), "{text}");
        assert!(err.contains("no active Paging Server"), "{err}");
        let (code, doc) = status(&url);
        assert_eq!(code, 1);
        assert!(doc["paging"]["active"].is_null(), "{doc}");
        drop(sim);
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

/// Paging on all three nodes; the active one is killed and the two standbys race for its
/// lease: the database gives it to exactly one, which stays active while the other stands by.
#[tokio::test]
async fn r16_two_standbys_racing_for_the_lease_make_exactly_one_active() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 68;
    let def = paging_definition(dir.path(), net, &["ucm-sub2"]);
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut pubn = sip_node(&def, &url, "ucm-pub");
        let sub1 = sip_node(&def, &url, "ucm-sub1");
        let sub2 = sip_node(&def, &url, "ucm-sub2");
        let doc = wait_active_paging(&url, "ucm-pub", 10);
        assert_eq!(
            doc["paging"]["standby"],
            serde_json::json!(["ucm-sub1", "ucm-sub2"]),
            "{doc}"
        );
        kill9(&mut pubn);
        let deadline = Instant::now() + Duration::from_secs(15);
        let active = loop {
            let (_, doc) = status(&url);
            if let Some(a) = doc["paging"]["active"].as_str() {
                if a != "ucm-pub" {
                    break a.to_string();
                }
            }
            assert!(Instant::now() < deadline, "no standby took over: {doc}");
            std::thread::sleep(Duration::from_millis(100));
        };
        // Two more renewals later, the same one holds it and the other never took it.
        std::thread::sleep(Duration::from_millis(2500));
        let (_, doc) = status(&url);
        assert_eq!(doc["paging"]["active"], active.as_str(), "{doc}");
        let (winner, loser) = if active == "ucm-sub1" {
            (&sub1, &sub2)
        } else {
            (&sub2, &sub1)
        };
        assert_eq!(node_status(&doc, &active)["paging"], "active", "{doc}");
        winner.wait_for_log("this node is the active Paging Server");
        let l = loser.logs();
        assert!(!l.contains("this node is the active Paging Server"), "{l}");
        assert!(!winner.logs().contains("another node took the lease"));
        drop((sub1, sub2));
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

/// A phone registered with a node that does not run paging (ucm-sub2) dials the DialCast
/// number: its node sends the call to the active Paging Server (ucm-pub) over the
/// intra-cluster trunk, and the phones registered with ucm-sub2 are paged from there.
#[tokio::test]
async fn r16_a_page_dialled_on_a_node_without_paging_runs_on_the_active_paging_server() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 69;
    let def = paging_definition(dir.path(), net, &[]);
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _one = crate::paging::PAGING
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let pubn = sip_node(&def, &url, "ucm-pub");
        let sub1 = sip_node(&def, &url, "ucm-sub1");
        let sub2 = sip_node(&def, &url, "ucm-sub2");
        wait_active_paging(&url, "ucm-pub", 10);
        sub2.wait_for_log("route points served by other nodes");
        let sim = paging_phones(&sub2, &format!("127.{net}.1.10"), &BRANCH);
        crate::phone::wait_state(sim.http(BRANCH.pager), 10, "on ucm-sub2", |s| {
            on_node(s, "ucm-sub2")
        });
        let call_id = start_page(&sim, &BRANCH);
        hang_up(&sim, &BRANCH);
        all_left(&sim, &BRANCH);
        let r = page_report(&pubn, &call_id, &BRANCH);
        assert_eq!(r["node"], "ucm-pub", "{r:#}");
        assert_eq!(r["calling"], "30271", "{r:#}");
        assert!(sub2
            .logs()
            .contains("offering the call to the route point's node"));
        drop((sim, pubn, sub1, sub2));
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

/// The reset Unified CM sends after an EM login or logout (NOTIFY check-sync) reaches a phone
/// registered with a node other than the one that made the change: the hot-desk phone is
/// registered with ucm-pub (which runs no EM), the login is made on ucm-sub1 and the logout
/// on ucm-sub2, and each time ucm-pub, the phone's own node, tells it to fetch its
/// configuration again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_check_sync_reaches_a_phone_registered_with_another_node() {
    use crate::callcontrol::TestPhone;
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 75;
    let def = call_definition(dir.path(), net, false);
    let url = db.url.clone();
    let nodes = tokio::task::spawn_blocking(move || {
        (
            sip_node(&def, &url, "ucm-pub"),
            sip_node(&def, &url, "ucm-sub1"),
            sip_node(&def, &url, "ucm-sub2"),
        )
    })
    .await
    .unwrap();
    let phone = TestPhone::register(
        &format!("127.{net}.0.21"),
        "29001",
        "0000000000a1",
        sip_of(net, 1),
    )
    .await;
    let (h1, h2) = (nodes.1.addr("http"), nodes.2.addr("http"));
    for (http, xml) in [
        (h1, login_xml(HOTDESK, "jsmith")),
        (h2, logout_xml(HOTDESK)),
    ] {
        let reply = tokio::task::spawn_blocking(move || em_post(http, &xml))
            .await
            .unwrap();
        assert_eq!(reply, OK);
        let notify = phone.expect_request("NOTIFY").await;
        assert_eq!(notify.headers.get("Event"), Some("check-sync"), "{notify}");
        let via = notify.headers.get("Via").unwrap();
        assert!(via.contains(&format!("127.{net}.0.1:5060")), "{via}");
        phone.answer(&notify, 200, false).await;
    }
    drop(nodes);
    db.drop_db().await;
}

/// README's "Cluster of nodes" example run as written, in network and PID namespaces of its
/// own (the three nodes bind the standard ports on 127.0.0.1-3), against a PostgreSQL of its
/// own started there (its reader has one on localhost and a role of their own). Every line of
/// the block runs unchanged; between the loop and `ucm cluster status` the script waits
/// (bounded) where a reader would, for the nodes to serve and the Paging Server's lease to be
/// taken, then the status must exit 0 and name all three nodes up.
#[test]
fn r16_readme_cluster_example_runs_as_written() {
    use crate::common::{have, is_root, skip_or_fail};
    let pg_bin = std::fs::read_dir("/usr/lib/postgresql")
        .ok()
        .and_then(|d| d.flatten().map(|e| e.path().join("bin")).max())
        .filter(|b| b.join("initdb").is_file());
    if !is_root() || !have("unshare") || !have("ip") || !have("curl") || !have("runuser") {
        skip_or_fail("root, unshare, ip, curl and runuser for README's cluster example");
        return;
    }
    let Some(pg_bin) = pg_bin else {
        skip_or_fail("PostgreSQL's server (initdb, pg_ctl) for README's cluster example");
        return;
    };
    let blocks = crate::readme::sh_blocks("## Cluster of nodes", 1);
    assert_eq!(blocks.len(), 1);
    let block = &blocks[0];
    let lines: Vec<&str> = block.lines().collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(lines[0].starts_with("createdb "), "{lines:?}");
    assert!(lines[4].starts_with("ucm cluster status"), "{lines:?}");
    let setup = lines[..4].join("\n");
    let status = lines[4].split(" #").next().unwrap().trim();
    let dir = tempfile::tempdir().unwrap();
    // PostgreSQL runs as its own user, which must reach its directory.
    let pg = dir.path().join("pg");
    std::fs::create_dir(&pg).unwrap();
    let mut perms = std::fs::metadata(dir.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(dir.path(), perms).unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_ucm"))
        .parent()
        .unwrap();
    let fixture_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = format!(
        r#"set -u
W=$PWD
fail() {{ echo "FAILED($1): $2" >&2; exit 1; }}
ip link set lo up
chown postgres: {pg}
runuser -u postgres -- {pgbin}/initdb -D {pg}/data -A trust -U postgres > $W/initdb.out 2>&1 || fail initdb "$(cat $W/initdb.out)"
runuser -u postgres -- {pgbin}/pg_ctl -D {pg}/data -w -l {pg}/log \
  -o "-c listen_addresses=localhost -c unix_socket_directories={pg} -c fsync=off" start > $W/pgctl.out 2>&1 \
  || fail pg_ctl "$(cat $W/pgctl.out {pg}/log)"
PGHOST=localhost runuser -u postgres -- {pgbin}/createuser -h localhost -U postgres -s "$(id -un)" || fail createuser "no role"
export PGHOST=localhost
cd {fixtures}
{{
{setup}
}} > $W/nodes.out 2>&1
for h in 1 2 3; do
  for i in $(seq 1 600); do curl -sf http://127.0.0.$h:8080/healthz >/dev/null && break; sleep 0.1; done
  curl -sf http://127.0.0.$h:8080/healthz >/dev/null || fail "node $h" "not serving: $(tail -50 $W/nodes.out)"
done
ok=no
for i in $(seq 1 100); do
  if {status} > $W/status.out 2> $W/status.err; then ok=yes; break; fi
  sleep 0.2
done
[ $ok = yes ] || fail status "$(cat $W/status.out $W/status.err; tail -50 $W/nodes.out)"
echo STATUS-BEGIN
cat $W/status.out
echo STATUS-END
"#,
        pg = pg.display(),
        pgbin = pg_bin.display(),
        fixtures = fixture_dir.display(),
    );
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
            &format!("cd {} && {{ {script} }}", dir.path().display()),
        ])
        .env("PATH", path)
        .env("HOME", dir.path())
        .env_remove("UCM_DB")
        .env_remove("UCM_DATA_DIR")
        .env_remove("PGDATABASE")
        .env_remove("PGUSER")
        .output()
        .expect("unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = text
        .split_once("STATUS-BEGIN\n")
        .and_then(|(_, rest)| rest.split_once("STATUS-END"))
        .map(|(t, _)| t.to_string());
    let Some(shown) = shown.filter(|_| out.status.success()) else {
        panic!("{text}\n--- script:\n{script}");
    };
    // What README says the status shows: every node of the fixture, up, and the active
    // Paging Server.
    for n in ["ucm-pub", "ucm-sub1", "ucm-sub2"] {
        let line = shown
            .lines()
            .find(|l| l.starts_with(n))
            .unwrap_or_else(|| panic!("{n} not in the status:\n{shown}"));
        assert_eq!(line.split_whitespace().nth(2), Some("up"), "{shown}");
    }
    assert!(shown.contains("Paging Server: active on"), "{shown}");
}

/// A node's log once a line holds every one of `needles` (bounded by `secs`).
fn wait_log_line(s: &Server, secs: u64, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let logs = s.logs();
        if let Some(l) = logs.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needles:?} within {secs} s:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The Request-URI of the next in-dialog request: the Contact a response or request carried.
fn contact_of(headers: &ucm::wire::sip::Headers) -> String {
    let c = headers.get("Contact").unwrap();
    c.trim_start_matches('<')
        .split('>')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A re-INVITE putting the call on hold (`a=sendonly`), built like `in_dialog`.
fn hold_reinvite(
    p: &crate::callcontrol::TestPhone,
    ok: &ucm::wire::sip::Response,
    cseq: u32,
) -> String {
    let sdp = p.sdp(20000).replace("a=sendrecv", "a=sendonly");
    p.in_dialog(ok, "INVITE", cseq).replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Contact: <sip:{}@{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            p.dn,
            p.local,
            sdp.len()
        ),
    )
}

/// In-dialog requests after the node of a call died (issue 16). A phone on ucm-sub1 calls a
/// phone on ucm-sub2 (the call crosses the intra-cluster trunk). Every Contact a node gives
/// carries a dialog handle (the other side's dialog, sealed with the cluster's secret), so:
/// - ucm-sub1 is killed (`kill -9`): when the callee hangs up, ucm-sub2 knows ucm-sub1 is
///   down and sends the BYE to the caller directly, in the caller's own dialog (spliced).
/// - Again with ucm-sub1 restarted: after its `kill -9` the caller fails over to ucm-sub2 and
///   sends a re-INVITE (hold) and then a BYE there, in a dialog ucm-sub2 never saw: ucm-sub2
///   takes the call over from the handle; both reach the callee in the callee's dialog.
/// - A forged or altered handle is refused 481, and a handle replayed in another dialog too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_in_dialog_requests_reach_the_other_party_after_the_calls_node_was_killed() {
    use crate::callcontrol::TestPhone;
    use ucm::wire::sip::SipMessage;
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 72;
    let def = call_definition(dir.path(), net, false);
    let (url, d) = (db.url.clone(), def.clone());
    let (mut sub1, sub2) = tokio::task::spawn_blocking(move || {
        (
            sip_node(&d, &url, "ucm-sub1"),
            sip_node(&d, &url, "ucm-sub2"),
        )
    })
    .await
    .unwrap();
    let (a_mac, b_mac) = ("00036bc7b973", "00036bc7b974");
    let mut a =
        TestPhone::register(&format!("127.{net}.0.11"), "10001", a_mac, sip_of(net, 2)).await;
    let b = TestPhone::register(&format!("127.{net}.0.12"), "10002", b_mac, sip_of(net, 3)).await;

    // 1. The callee hangs up after the caller's node died: spliced past it.
    let (a_cid, inv) = call_when_known(&a, &b, "10002", "handoff-1").await;
    assert!(contact_of(&inv.headers).contains(";ucm-dlg="), "{inv}");
    b.answer(&inv, 200, true).await;
    let ok = a.expect_response(200).await;
    let target = contact_of(&ok.headers);
    assert!(
        target.starts_with(&format!("sip:127.{net}.0.2:5060")),
        "{target}"
    );
    assert!(target.contains(";ucm-dlg="), "{target}");
    // The handle hides the far side: neither the callee's address nor its Call-ID shows.
    assert!(!target.contains(&format!("127.{net}.0.12")), "{target}");
    assert!(!target.contains(inv.call_id().unwrap()), "{target}");
    a.send_text(&a.in_dialog(&ok, "ACK", 101)).await;
    b.expect_request("ACK").await;
    kill9(&mut sub1);
    let line = wait_log_line(&sub2, 15, &["nodes down now", "ucm-sub1"]);
    eprintln!("{line}");
    b.send_text(&b.in_dialog_as_callee(&inv, "BYE", 1)).await;
    b.expect_response(200).await;
    let bye = a.expect_request("BYE").await;
    assert_eq!(bye.call_id().unwrap(), a_cid, "{bye}");
    assert_eq!(
        bye.headers.to_ref().unwrap().tag(),
        ok.headers.from_ref().unwrap().tag(),
        "the BYE is in the caller's own dialog: {bye}"
    );
    a.answer(&bye, 200, false).await;
    sub2.wait_for_log("dialog spliced past a node that is down");

    // 2. The caller fails over and carries on its call through a node that never saw it.
    let (url, d) = (db.url.clone(), def.clone());
    let mut sub1 = tokio::task::spawn_blocking(move || sip_node(&d, &url, "ucm-sub1"))
        .await
        .unwrap();
    a.reregister(a_mac, sip_of(net, 2), 2).await;
    let (_, inv) = call_when_known(&a, &b, "10002", "handoff-2").await;
    b.answer(&inv, 200, true).await;
    let ok = a.expect_response(200).await;
    a.send_text(&a.in_dialog(&ok, "ACK", 101)).await;
    b.expect_request("ACK").await;
    kill9(&mut sub1);
    a.reregister(a_mac, sip_of(net, 3), 3).await;
    // Hold: the re-INVITE reaches the callee with the hold offer, in the callee's dialog.
    a.send_text(&hold_reinvite(&a, &ok, 102)).await;
    let reinv = b.expect_request("INVITE").await;
    assert_eq!(reinv.call_id(), inv.call_id(), "{reinv}");
    assert_eq!(
        reinv.headers.from_ref().unwrap().tag(),
        inv.headers.from_ref().unwrap().tag(),
        "{reinv}"
    );
    assert!(
        String::from_utf8_lossy(&reinv.body).contains("a=sendonly"),
        "{reinv}"
    );
    b.answer(&reinv, 200, true).await;
    let held = a.expect_response(200).await;
    // The 2xx names ucm-sub2 now (a target refresh), still with a handle.
    let target = contact_of(&held.headers);
    assert!(
        target.starts_with(&format!("sip:127.{net}.0.3:5060")),
        "{target}"
    );
    assert!(target.contains(";ucm-dlg="), "{target}");
    let ack = a.in_dialog(&held, "ACK", 102);
    a.send_text(&ack).await;
    b.expect_request("ACK").await;
    sub2.wait_for_log("call taken over from another node");
    // A handle altered by one character, or replayed in another dialog: 481, nothing relayed.
    // (Each its own transaction: a new branch.)
    let token = target.split(";ucm-dlg=").nth(1).unwrap().to_string();
    let mut bad = token.clone().into_bytes();
    bad[10] = if bad[10] == b'A' { b'B' } else { b'A' };
    let forged = a
        .in_dialog(&held, "BYE", 103)
        .replace(&token, std::str::from_utf8(&bad).unwrap())
        .replace(
            &format!("To: {}", held.headers.get("To").unwrap()),
            "To: <sip:10002@x>;tag=unknown",
        );
    a.send_text(&forged).await;
    assert_eq!(a.expect_response(481).await.status, 481);
    let replayed = a
        .in_dialog(&held, "BYE", 103)
        .replace(
            &format!("Call-ID: {}", held.call_id().unwrap()),
            "Call-ID: another-call",
        )
        .replace(
            &format!("To: {}", held.headers.get("To").unwrap()),
            "To: <sip:10002@x>;tag=unknown",
        );
    a.send_text(&replayed).await;
    assert_eq!(a.expect_response(481).await.status, 481);
    // The caller hangs up: the callee gets the BYE.
    a.send_text(&a.in_dialog(&held, "BYE", 103)).await;
    a.expect_response(200).await;
    let got = b.expect_request("BYE").await;
    assert_eq!(got.call_id(), inv.call_id(), "{got}");
    b.answer(&got, 200, false).await;
    // Nothing more arrives at the callee (no second BYE, no stray request).
    let mut buf = vec![0u8; 4096];
    if let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(700), b.sock.recv_from(&mut buf)).await
    {
        match ucm::wire::sip::parse_datagram(&buf[..n]) {
            Ok(SipMessage::Request(r)) if !b.mark_seen(&r) => {}
            other => panic!("the callee got more: {other:?}"),
        }
    }
    drop((sub1, sub2));
    db.drop_db().await;
}

/// Real phones (`ucm phone sim`) in a call through ucm-sub1 fail over to ucm-sub2 when
/// ucm-sub1 is killed (`kill -9`) and keep using their call: the caller's Hold reaches the
/// callee (its `/state` shows the call held by the other side), Resume too, and when the
/// caller hangs up the callee's call ends with "remote hangup". ucm-sub2 never saw the call:
/// it takes it over from the dialog handles in the phones' remote targets.
#[tokio::test]
async fn r16_phones_that_failed_over_hold_and_hang_up_their_call_through_the_new_node() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (def, _, _) = sip_port_definition(dir.path());
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut sub1 = node_with(&def, &url, "ucm-sub1", &["--http-port", "0"]);
        let sub2 = node_with(&def, &url, "ucm-sub2", &["--http-port", "0"]);
        let (a_dev, b_dev) = ("SEP00036BC7B973", "SEP00036BC7B974");
        // Their configuration comes from ucm-sub2, so the pushes below authenticate there
        // (the authentication URL names the node that served it); they register with
        // ucm-sub1, the first of their Unified CM group.
        let sim = PhoneSim::start(
            sub2.addr("tftp_http"),
            "127.0.17.10",
            &[a_dev, b_dev],
            &["--auto-answer", "--keepalive-ms", "300"],
        );
        let (a, b) = (sim.http(a_dev), sim.http(b_dev));
        for p in [a, b] {
            wait_phone(p, 10, "registered with ucm-sub1", |s| {
                on_node(s, "ucm-sub1")
            });
        }
        push_dial(a, "10002");
        for p in [a, b] {
            wait_phone(p, 10, "talking", |s| {
                connected_rx(s).is_some_and(|n| n > 10)
            });
        }
        kill9(&mut sub1);
        for p in [a, b] {
            wait_phone(p, 15, "failed over to ucm-sub2", |s| on_node(s, "ucm-sub2"));
        }
        let call = |s: &serde_json::Value| s["calls"][0].clone();
        // Hold and resume from the caller: the callee sees both.
        push_url(a, "Key:Hold");
        wait_phone(a, 10, "held here", |s| call(s)["local_hold"] == true);
        wait_phone(b, 10, "held by the other side", |s| {
            call(s)["remote_hold"] == true
        });
        push_url(a, "Key:Hold");
        wait_phone(b, 10, "resumed by the other side", |s| {
            call(s)["remote_hold"] == false && call(s)["state"] == "connected"
        });
        // The caller hangs up (the pushes authenticate as the caller's owner): the callee's
        // call ends.
        push_url(a, "Key:Onhook");
        let s = wait_phone(b, 10, "call ended by the other side", |s| {
            call(s)["state"] == "ended"
        });
        assert_eq!(call(&s)["end_reason"], "remote hangup", "{s:#}");
        sub2.wait_for_log("call taken over from another node");
        drop((sim, sub2));
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

/// Page reports on the change feed: a request waiting on the standby Paging Server
/// (ucm-sub1) for the report of a page the active one (ucm-pub) runs is answered as soon as
/// ucm-pub stores it, woken by the feed's announcement: well before the waiters' own look in
/// the database (every 5 s) would have found it.
#[tokio::test]
async fn r16_a_page_report_wakes_a_waiter_on_another_node_through_the_feed() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 78;
    let def = paging_definition(dir.path(), net, &["ucm-sub1"]);
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _one = crate::paging::PAGING
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let pubn = sip_node(&def, &url, "ucm-pub");
        wait_active_paging(&url, "ucm-pub", 10);
        let sub1 = sip_node(&def, &url, "ucm-sub1");
        sub1.wait_for_log("route points served by other nodes");
        let sim = paging_phones(&sub1, &format!("127.{net}.1.10"), &HQ);
        let call_id = start_page(&sim, &HQ);
        let http = sub1.addr("http");
        let path = format!(
            "/ucm/paging/pages?call_id={}&wait_ms=8000",
            ucm::wire::codec::percent_encode(&call_id)
        );
        let waiter = std::thread::spawn(move || {
            let r = crate::common::http_get(http, &path);
            (r, Instant::now())
        });
        // The request is waiting (its first look found nothing) before the page ends.
        std::thread::sleep(Duration::from_millis(500));
        hang_up(&sim, &HQ);
        let hung_up = Instant::now();
        all_left(&sim, &HQ);
        let ((status, _, body), answered) = waiter.join().unwrap();
        let body = String::from_utf8_lossy(&body).to_string();
        assert_eq!(status, 200, "{body}");
        let took = answered.saturating_duration_since(hung_up);
        eprintln!("the report reached the other node's waiter {took:?} after the hang-up");
        assert!(
            took < Duration::from_secs(3),
            "woken by the database look ({took:?}), not by the feed"
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["pages"][0]["call_id"], call_id.as_str(), "{v:#}");
        assert_eq!(v["pages"][0]["node"], "ucm-pub", "{v:#}");
        drop((sim, sub1, pubn));
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

/// The intra-cluster trunk over TCP and TLS (`nodes[].sip_transport`): ucm-sub1 takes calls
/// from other nodes over TCP, ucm-sub2 over TLS (verified against the certificate ucm-sub2
/// stored in the database). A call from a phone on ucm-sub1 to one on ucm-sub2 crosses over
/// TLS, the call back over TCP; both complete, and every segment between the two nodes is
/// marked CS3 (DSCP 24), in both directions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_the_intra_cluster_trunk_runs_over_tcp_and_tls_marked_cs3() {
    use crate::callcontrol::TestPhone;
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 71;
    let def = call_definition(dir.path(), net, false);
    let mut text = std::fs::read_to_string(&def).unwrap();
    for (host, transport) in [(2, "tcp"), (3, "tls")] {
        let at = format!("    address: 127.{net}.0.{host}\n    bind: 127.{net}.0.{host}\n");
        assert!(text.contains(&at), "{text}");
        text = text.replace(&at, &format!("{at}    sip_transport: {transport}\n"));
    }
    std::fs::write(&def, &text).unwrap();
    let url = db.url.clone();
    let nodes = tokio::task::spawn_blocking(move || {
        (
            sip_node_sips(&def, &url, "ucm-sub1", true),
            sip_node_sips(&def, &url, "ucm-sub2", true),
        )
    })
    .await
    .unwrap();
    // ucm-sub1 trusts ucm-sub2's certificate once it read both nodes' from the database.
    wait_log_line(
        &nodes.0,
        10,
        &["trusting the nodes' certificates", "certificates=2"],
    );
    let work = tempfile::tempdir().unwrap();
    let pcap = work.path().join("trunk.pcap");
    let capture = crate::sipp::Capture::start(
        &pcap,
        &format!("tcp and host 127.{net}.0.2 and host 127.{net}.0.3"),
    );
    let a = TestPhone::register(
        &format!("127.{net}.0.11"),
        "10001",
        "00036bc7b973",
        sip_of(net, 2),
    )
    .await;
    let b = TestPhone::register(
        &format!("127.{net}.0.12"),
        "10002",
        "00036bc7b974",
        sip_of(net, 3),
    )
    .await;
    for (from, to, number, over) in [(&a, &b, "10002", "TLS"), (&b, &a, "10001", "TCP")] {
        let (_, inv) = call_when_known(from, to, number, &format!("x-{over}")).await;
        to.answer(&inv, 200, true).await;
        let ok = from.expect_response(200).await;
        from.send_text(&from.in_dialog(&ok, "ACK", 101)).await;
        to.expect_request("ACK").await;
        from.send_text(&from.in_dialog(&ok, "BYE", 102)).await;
        let bye = to.expect_request("BYE").await;
        to.answer(&bye, 200, false).await;
        from.expect_response(200).await;
    }
    if let Some(c) = capture {
        c.stop();
        let out = std::process::Command::new("tshark")
            .args(["-n", "-r"])
            .arg(&pcap)
            .args(["-Y", "tcp.len > 0", "-T", "fields"])
            .args([
                "-e",
                "ip.dsfield.dscp",
                "-e",
                "tcp.srcport",
                "-e",
                "tcp.dstport",
            ])
            .output()
            .expect("run tshark (Debian package tshark)");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let lines: Vec<&str> = text.lines().collect();
        // Both connections carried data, both ways: TLS to ucm-sub2's SIPS port (5061), TCP to
        // ucm-sub1's SIP port (5060).
        for port in ["5060", "5061"] {
            assert!(
                lines
                    .iter()
                    .filter(|l| l.split('\t').nth(2) == Some(port))
                    .count()
                    > 0,
                "nothing sent to port {port}: {text}"
            );
            assert!(
                lines
                    .iter()
                    .filter(|l| l.split('\t').nth(1) == Some(port))
                    .count()
                    > 0,
                "nothing sent from port {port}: {text}"
            );
        }
        assert!(
            lines.iter().all(|l| l.starts_with("24\t")),
            "not all CS3: {text}"
        );
    }
    drop(nodes);
    db.drop_db().await;
}

/// [`call_definition`] with the lines' busy trigger at 1 (`busy`) and, for 10002, Call
/// Forward Busy to Lab phone 1 (20001) when `cfb`.
fn busy_definition(dir: &Path, net: u8, cfb: bool) -> std::path::PathBuf {
    let p = call_definition(dir, net, false);
    let mut text = std::fs::read_to_string(&p).unwrap();
    let a = "  - pattern: \"10001\"\n    partition: Internal_PT\n";
    let b = "  - pattern: \"10002\"\n    partition: Internal_PT\n";
    assert!(text.contains(a) && text.contains(b));
    text = text.replace(a, &format!("{a}    busy_trigger: 1\n"));
    let forward = if cfb {
        "    call_forward:\n      busy: { destination: \"20001\", css: Internal_CSS }\n"
    } else {
        ""
    };
    text = text.replace(b, &format!("{b}    busy_trigger: 1\n{forward}"));
    std::fs::write(&p, text).unwrap();
    p
}

/// The last line of a node's log holding `needle`, once it also holds every one of `want`
/// (bounded by `secs`).
fn wait_last_log_line(s: &Server, secs: u64, needle: &str, want: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let logs = s.logs();
        if let Some(l) = logs.lines().rfind(|l| l.contains(needle)) {
            if want.iter().all(|w| l.contains(w)) {
                return l.to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the last {needle:?} line never held {want:?} within {secs} s:\n{logs}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Nothing but retransmissions reaches `p` for a little while (the end of a test: no stray
/// INVITE rang it).
async fn nothing_more(p: &crate::callcontrol::TestPhone) {
    use ucm::wire::sip::SipMessage;
    let mut buf = vec![0u8; 65536];
    let until = Instant::now() + Duration::from_millis(700);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        let Ok(Ok((n, _))) = tokio::time::timeout(left, p.sock.recv_from(&mut buf)).await else {
            return;
        };
        match ucm::wire::sip::parse_datagram(&buf[..n]) {
            Ok(SipMessage::Request(r)) if !p.mark_seen(&r) => {}
            other => panic!("{} got more: {other:?}", p.dn),
        }
    }
}

/// Line busy state across nodes (issue 16). Phones A (10001) and B (10002) are registered
/// with ucm-pub and talk to each other there; both lines have a busy trigger of 1, and 10002
/// forwards on busy to Lab phone 1 (20001). A third phone (Sally, registered with ucm-sub1)
/// calls through ucm-sub1, which carries no part of the A-B call: 10002 is busy there too
/// (ucm-pub announced its lines' calls on the change feed), so the call is forwarded to
/// 20001 and B does not ring; 10001, busy without Call Forward Busy, answers 486 Busy Here;
/// both as one node would. Once A hangs up, a call to 10001 through ucm-sub1 rings A again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_a_line_on_a_call_through_another_node_is_busy_for_routing() {
    use crate::callcontrol::TestPhone;
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 81;
    let def = busy_definition(dir.path(), net, true);
    let url = db.url.clone();
    let (pubn, sub1) = tokio::task::spawn_blocking(move || {
        (
            sip_node(&def, &url, "ucm-pub"),
            sip_node(&def, &url, "ucm-sub1"),
        )
    })
    .await
    .unwrap();
    let ip = |h: u8| format!("127.{net}.0.{h}");
    let a = TestPhone::register(&ip(11), "10001", "00036bc7b973", sip_of(net, 1)).await;
    let b = TestPhone::register(&ip(12), "10002", "00036bc7b974", sip_of(net, 1)).await;
    let c = TestPhone::register(&ip(13), "23923", "00036bc7b975", sip_of(net, 2)).await;
    let d = TestPhone::register(&ip(14), "20001", "000000001001", sip_of(net, 2)).await;
    // A calls B, all on ucm-pub.
    let (_, inv) = call_when_known(&a, &b, "10002", "busy-ab").await;
    b.answer(&inv, 200, true).await;
    let ok = a.expect_response(200).await;
    a.send_text(&a.in_dialog(&ok, "ACK", 101)).await;
    b.expect_request("ACK").await;
    let known = "calls on lines at other nodes";
    let line = wait_last_log_line(
        &sub1,
        10,
        known,
        &["10001@Internal_PT=1", "10002@Internal_PT=1"],
    );
    eprintln!("{line}");
    // Sally calls B's line through ucm-sub1: forwarded on busy to 20001, which answers.
    let (_, fwd) = call_when_known(&c, &d, "10002", "busy-cfb").await;
    assert!(
        fwd.headers.get("Via").unwrap().contains(&ip(2)),
        "ucm-sub1 rang 20001 itself: {fwd}"
    );
    d.answer(&fwd, 200, true).await;
    let ok_d = c.expect_response(200).await;
    assert!(
        String::from_utf8_lossy(&ok_d.body).contains(&format!("c=IN IP4 {}", ip(14))),
        "{ok_d}"
    );
    c.send_text(&c.in_dialog(&ok_d, "ACK", 101)).await;
    d.expect_request("ACK").await;
    c.send_text(&c.in_dialog(&ok_d, "BYE", 102)).await;
    let bye = d.expect_request("BYE").await;
    d.answer(&bye, 200, false).await;
    c.expect_response(200).await;
    // Sally calls A's line through ucm-sub1: busy, no Call Forward Busy: 486.
    c.send_text(&c.invite("10001", &fresh_call_id("busy-486")))
        .await;
    let busy = c.expect_response(486).await;
    eprintln!("{} {}", busy.status, busy.reason);
    nothing_more(&a).await;
    nothing_more(&b).await;
    // A hangs up: ucm-sub1 hears the lines are free, and A's line rings again from there.
    a.send_text(&a.in_dialog(&ok, "BYE", 102)).await;
    let bye = b.expect_request("BYE").await;
    b.answer(&bye, 200, false).await;
    a.expect_response(200).await;
    wait_last_log_line(&sub1, 10, known, &["lines=-"]);
    let (_, inv) = call_when_known(&c, &a, "10001", "busy-free").await;
    a.answer(&inv, 486, false).await;
    c.expect_response(486).await;
    drop((pubn, sub1));
    db.drop_db().await;
}

/// A call taken over from a dialog handle counts against its lines (issue 16). A (10001) and
/// B (10002), both with a busy trigger of 1 and no Call Forward Busy, talk through ucm-sub1,
/// which is killed; both phones register with ucm-sub2, and A's hold re-INVITE makes ucm-sub2
/// take the call over (it never saw it). A third phone calling either line through ucm-sub2
/// then gets 486 Busy Here, as it would from the node that set the call up; after A hangs
/// up, B's line rings again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_a_call_taken_over_from_a_dialog_handle_counts_against_its_lines() {
    use crate::callcontrol::TestPhone;
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 82;
    let def = busy_definition(dir.path(), net, false);
    let url = db.url.clone();
    let (mut sub1, sub2) = tokio::task::spawn_blocking(move || {
        (
            sip_node(&def, &url, "ucm-sub1"),
            sip_node(&def, &url, "ucm-sub2"),
        )
    })
    .await
    .unwrap();
    let ip = |h: u8| format!("127.{net}.0.{h}");
    let (a_mac, b_mac) = ("00036bc7b973", "00036bc7b974");
    let mut a = TestPhone::register(&ip(11), "10001", a_mac, sip_of(net, 2)).await;
    let mut b = TestPhone::register(&ip(12), "10002", b_mac, sip_of(net, 2)).await;
    let c = TestPhone::register(&ip(13), "23923", "00036bc7b975", sip_of(net, 3)).await;
    let (_, inv) = call_when_known(&a, &b, "10002", "adopt-ab").await;
    b.answer(&inv, 200, true).await;
    let ok = a.expect_response(200).await;
    a.send_text(&a.in_dialog(&ok, "ACK", 101)).await;
    b.expect_request("ACK").await;
    let known = "calls on lines at other nodes";
    wait_last_log_line(&sub2, 10, known, &["10002@Internal_PT=1"]);
    kill9(&mut sub1);
    wait_log_line(&sub2, 15, &["nodes down now", "ucm-sub1"]);
    // The dead node's calls count no more.
    wait_last_log_line(&sub2, 10, known, &["lines=-"]);
    a.reregister(a_mac, sip_of(net, 3), 2).await;
    b.reregister(b_mac, sip_of(net, 3), 2).await;
    a.send_text(&hold_reinvite(&a, &ok, 102)).await;
    let reinv = b.expect_request("INVITE").await;
    b.answer(&reinv, 200, true).await;
    let held = a.expect_response(200).await;
    a.send_text(&a.in_dialog(&held, "ACK", 102)).await;
    b.expect_request("ACK").await;
    sub2.wait_for_log("call taken over from another node");
    for (n, line) in ["10002", "10001"].into_iter().enumerate() {
        c.send_text(&c.invite(line, &fresh_call_id(&format!("adopt-busy-{n}"))))
            .await;
        let r = c.expect_response(486).await;
        eprintln!("{line}: {} {}", r.status, r.reason);
    }
    nothing_more(&a).await;
    nothing_more(&b).await;
    a.send_text(&a.in_dialog(&held, "BYE", 103)).await;
    let bye = b.expect_request("BYE").await;
    b.answer(&bye, 200, false).await;
    a.expect_response(200).await;
    let (_, inv) = call_when_known(&c, &b, "10002", "adopt-free").await;
    b.answer(&inv, 486, false).await;
    c.expect_response(486).await;
    drop((sub1, sub2));
    db.drop_db().await;
}

/// The rows of `paging_callers` as (node, call_id).
fn page_callers(db: &str) -> Vec<(String, String)> {
    let db = db.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::{Connection, Row};
            let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
            sqlx::query("SELECT node, call_id FROM paging_callers ORDER BY call_id")
                .fetch_all(&mut c)
                .await
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect()
        })
    })
    .join()
    .unwrap()
}

/// A page whose caller is registered with the Paging Server's own node, which is killed
/// (`kill -9`) mid-page (issue 16): no other node carries any part of the caller's call, so
/// nothing would end it. The active node recorded the caller's dialog (sealed, in
/// `paging_callers`, migration 0026) when the page went ahead; the standby that takes the
/// lease sends the caller a BYE in that dialog (Reason: the node is down), as it tells the
/// paged phones `RTPRx:Stop`. The caller, failed over to the standby, pages again through it.
#[tokio::test]
async fn r16_a_page_caller_on_the_killed_paging_node_gets_its_call_ended() {
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 83;
    let def = paging_definition(dir.path(), net, &[]);
    // HQ phones register with ucm-pub, the active Paging Server, first.
    let text = std::fs::read_to_string(&def).unwrap().replace(
        "node_group: [ucm-sub1, ucm-sub2, ucm-pub]",
        "node_group: [ucm-pub, ucm-sub1, ucm-sub2]",
    );
    std::fs::write(&def, text).unwrap();
    let url = db.url.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _one = crate::paging::PAGING
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut pubn = sip_node(&def, &url, "ucm-pub");
        let sub1 = sip_node(&def, &url, "ucm-sub1");
        wait_active_paging(&url, "ucm-pub", 10);
        let sim = paging_phones(&sub1, &format!("127.{net}.1.10"), &HQ);
        for d in HQ.paged.iter().chain([&HQ.pager]) {
            crate::phone::wait_state(sim.http(d), 15, &format!("{d} on ucm-pub"), |s| {
                on_node(s, "ucm-pub")
            });
        }
        let call_id = start_page(&sim, &HQ);
        let deadline = Instant::now() + Duration::from_secs(10);
        while page_callers(&url) != [("ucm-pub".to_string(), call_id.clone())] {
            assert!(
                Instant::now() < deadline,
                "the caller not recorded: {:?}",
                page_callers(&url)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        kill9(&mut pubn);
        wait_active_paging(&url, "ucm-sub1", 15);
        all_left(&sim, &HQ);
        let s = crate::phone::wait_state(sim.http(HQ.pager), 15, "the page call released", |s| {
            crate::phone::calls(s)
                .iter()
                .any(|c| c["call_id"] == call_id.as_str() && c["state"] == "ended")
        });
        let ended = crate::phone::calls(&s)
            .into_iter()
            .find(|c| c["call_id"] == call_id.as_str())
            .unwrap();
        assert_eq!(ended["end_reason"], "remote hangup", "{ended:#}");
        sub1.wait_for_log("the caller of a page of a dead Paging Server was released");
        sub1.wait_for_log("dialog released: the node that carried it is down");
        assert!(page_callers(&url).is_empty(), "{:?}", page_callers(&url));
        // The caller failed over to ucm-sub1 and pages through it; that page's caller row goes
        // when it ends.
        crate::phone::wait_state(sim.http(HQ.pager), 15, "the caller on ucm-sub1", |s| {
            on_node(s, "ucm-sub1")
        });
        let call_id = start_page(&sim, &HQ);
        hang_up(&sim, &HQ);
        all_left(&sim, &HQ);
        let r = page_report(&sub1, &call_id, &HQ);
        assert_eq!(r["node"], "ucm-sub1", "{r:#}");
        assert!(page_callers(&url).is_empty(), "{:?}", page_callers(&url));
        drop((sim, sub1));
    })
    .await;
    db.drop_db().await;
    result.unwrap();
}

/// A call whose path crossed two nodes that both die (issue 16): A (on ucm-sub1) calls B (on
/// ucm-sub2); both nodes are killed (`kill -9`) and both phones register with ucm-pub. A's
/// hold re-INVITE names ucm-sub1's handle, which carries ucm-sub2's handle of B's dialog one
/// level deep: ucm-pub takes the call over and splices past both dead nodes, so the re-INVITE
/// reaches B in B's own dialog. Then B hangs up through ucm-pub and A gets the BYE in its own
/// dialog: the call ends cleanly at both ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_a_call_through_two_dead_nodes_is_carried_on_by_the_surviving_one() {
    use crate::callcontrol::TestPhone;
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 84;
    let def = call_definition(dir.path(), net, false);
    let url = db.url.clone();
    let (pubn, mut sub1, mut sub2) = tokio::task::spawn_blocking(move || {
        (
            sip_node(&def, &url, "ucm-pub"),
            sip_node(&def, &url, "ucm-sub1"),
            sip_node(&def, &url, "ucm-sub2"),
        )
    })
    .await
    .unwrap();
    let ip = |h: u8| format!("127.{net}.0.{h}");
    let (a_mac, b_mac) = ("00036bc7b973", "00036bc7b974");
    let mut a = TestPhone::register(&ip(11), "10001", a_mac, sip_of(net, 2)).await;
    let mut b = TestPhone::register(&ip(12), "10002", b_mac, sip_of(net, 3)).await;
    let (a_cid, inv) = call_when_known(&a, &b, "10002", "two-dead").await;
    b.answer(&inv, 200, true).await;
    let ok = a.expect_response(200).await;
    a.send_text(&a.in_dialog(&ok, "ACK", 101)).await;
    b.expect_request("ACK").await;
    kill9(&mut sub1);
    kill9(&mut sub2);
    wait_log_line(&pubn, 15, &["nodes down now", "ucm-sub1,ucm-sub2"]);
    a.reregister(a_mac, sip_of(net, 1), 2).await;
    b.reregister(b_mac, sip_of(net, 1), 2).await;
    a.send_text(&hold_reinvite(&a, &ok, 102)).await;
    let reinv = b.expect_request("INVITE").await;
    assert_eq!(reinv.call_id(), inv.call_id(), "{reinv}");
    assert_eq!(
        reinv.headers.from_ref().unwrap().tag(),
        inv.headers.from_ref().unwrap().tag(),
        "the re-INVITE is in B's own dialog: {reinv}"
    );
    assert!(
        reinv.headers.get("Via").unwrap().contains(&ip(1)),
        "{reinv}"
    );
    b.answer(&reinv, 200, true).await;
    let held = a.expect_response(200).await;
    a.send_text(&a.in_dialog(&held, "ACK", 102)).await;
    b.expect_request("ACK").await;
    pubn.wait_for_log("call taken over from another node");
    pubn.wait_for_log("dialog spliced past a node that is down");
    // B hangs up, in its dialog (ucm-pub carries it now).
    b.send_text(&b.in_dialog_as_callee(&inv, "BYE", 2)).await;
    b.expect_response(200).await;
    let bye = a.expect_request("BYE").await;
    assert_eq!(bye.call_id().unwrap(), a_cid, "{bye}");
    assert_eq!(
        bye.headers.to_ref().unwrap().tag(),
        ok.headers.from_ref().unwrap().tag(),
        "the BYE is in A's own dialog: {bye}"
    );
    a.answer(&bye, 200, false).await;
    nothing_more(&a).await;
    nothing_more(&b).await;
    drop((pubn, sub1, sub2));
    db.drop_db().await;
}

/// A node stalled (SIGSTOP) past the 3 s down limit, then resumed (issue 16). A (on ucm-sub2)
/// talks to B (on ucm-sub1) through both nodes; ucm-sub1 is stopped until ucm-sub2 counts it
/// down (its lines' calls count no more there), and a call from A's line to B placed meanwhile
/// waits in ucm-sub2's retransmissions. On SIGCONT ucm-sub1 is up again for ucm-sub2, its lines'
/// calls count again, B gets that second call once (not twice), and both calls end cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r16_a_node_stalled_past_the_down_limit_recovers_without_double_calls() {
    use crate::callcontrol::TestPhone;
    let Some(db) = PgDb::create().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let net = 85;
    let def = call_definition(dir.path(), net, false);
    let url = db.url.clone();
    let (sub1, sub2) = tokio::task::spawn_blocking(move || {
        (
            sip_node(&def, &url, "ucm-sub1"),
            sip_node(&def, &url, "ucm-sub2"),
        )
    })
    .await
    .unwrap();
    let ip = |h: u8| format!("127.{net}.0.{h}");
    let a = TestPhone::register(&ip(11), "10001", "00036bc7b973", sip_of(net, 3)).await;
    let b = TestPhone::register(&ip(12), "10002", "00036bc7b974", sip_of(net, 2)).await;
    let c = TestPhone::register(&ip(13), "23923", "00036bc7b975", sip_of(net, 2)).await;
    // C calls A across the nodes (ucm-sub1 counts C's line).
    let (_, inv1) = call_when_known(&c, &a, "10001", "stall-1").await;
    a.answer(&inv1, 200, true).await;
    let ok1 = c.expect_response(200).await;
    c.send_text(&c.in_dialog(&ok1, "ACK", 101)).await;
    a.expect_request("ACK").await;
    let known = "calls on lines at other nodes";
    wait_last_log_line(&sub2, 10, known, &["23923@Internal_PT=1"]);
    let pid = sub1.child.id() as libc::pid_t;
    // SAFETY: signals to a child process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let stopped = wait_log_line(&sub2, 15, &["nodes down now", "ucm-sub1"]);
    eprintln!("{stopped}");
    wait_last_log_line(&sub2, 10, known, &["lines=-"]);
    // A calls B (on the stalled node): ucm-sub2 sends the INVITE, unanswered for now.
    let cid = fresh_call_id("stall-2");
    a.send_text(&a.invite("10002", &cid)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    unsafe { libc::kill(pid, libc::SIGCONT) };
    // B gets the call once: its first INVITE; retransmissions are absorbed.
    let inv2 = b.expect_request("INVITE").await;
    b.answer(&inv2, 200, true).await;
    let ok2 = a.expect_response(200).await;
    assert_eq!(ok2.call_id(), Some(cid.as_str()), "{ok2}");
    a.send_text(&a.in_dialog(&ok2, "ACK", 101)).await;
    b.expect_request("ACK").await;
    // ucm-sub1 is up again for ucm-sub2, and its lines' calls count there again.
    let line = wait_last_log_line(&sub2, 10, known, &["23923@Internal_PT=1"]);
    eprintln!("{line}");
    nothing_more(&b).await;
    // Both calls end cleanly.
    a.send_text(&a.in_dialog(&ok2, "BYE", 102)).await;
    let bye = b.expect_request("BYE").await;
    b.answer(&bye, 200, false).await;
    a.expect_response(200).await;
    c.send_text(&c.in_dialog(&ok1, "BYE", 102)).await;
    let bye = a.expect_request("BYE").await;
    a.answer(&bye, 200, false).await;
    c.expect_response(200).await;
    wait_last_log_line(&sub2, 10, known, &["lines=-"]);
    nothing_more(&a).await;
    nothing_more(&b).await;
    drop((sub1, sub2));
    db.drop_db().await;
}
