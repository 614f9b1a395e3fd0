//! Helpers shared by the integration tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Conformance scenarios compare whole captures of lo with their goldens. While one runs, the
/// tests whose traffic could land in its filter wait (the attendant's music-on-hold streams,
/// the EMCC clusters on 127.0.1.1 and 127.0.2.1, which the `emcc_login` scenario uses too);
/// those tests run among themselves freely.
static LO: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Held by a conformance scenario for its whole run.
pub fn capture_alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    LO.write().unwrap_or_else(|p| p.into_inner())
}

/// Held by a test whose traffic a conformance capture must not see.
pub fn beside_captures() -> std::sync::RwLockReadGuard<'static, ()> {
    LO.read().unwrap_or_else(|p| p.into_inner())
}

pub fn ucm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ucm"))
}

/// Compares the capture `pcap` with `golden/<name>/` through `ucm pcap verify --golden`
/// (which must pass) and returns its JSON report; with `UCM_BLESS` set it records the golden
/// ladder from the capture instead and returns `None`.
pub fn verify_against_golden(pcap: &std::path::Path, name: &str) -> Option<serde_json::Value> {
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(name);
    if std::env::var_os("UCM_BLESS").is_some() {
        let o = ucm()
            .args(["pcap", "ladder", "--normalised"])
            .arg(pcap)
            .output()
            .unwrap();
        assert!(o.status.success());
        std::fs::create_dir_all(&golden).unwrap();
        std::fs::write(golden.join("ladder.txt"), &o.stdout).unwrap();
        return None;
    }
    let o = ucm()
        .args(["pcap", "verify", "--format", "json", "--golden"])
        .arg(&golden)
        .arg(pcap)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    Some(serde_json::from_slice(&o.stdout).expect("pcap verify --format json"))
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Either skips (printing why) or, under CI, fails: CI must run everything.
pub fn skip_or_fail(reason: &str) {
    if in_ci() {
        panic!("required test environment missing under CI=true: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A running `ucm serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub ready: serde_json::Value,
    pub data_dir: tempfile::TempDir,
    pub stderr: mpsc::Receiver<String>,
    /// Log lines already taken from `stderr`.
    pub seen: std::sync::Mutex<String>,
}

impl Server {
    /// Starts `ucm serve` on port 0 everywhere on 127.0.0.1 with a fresh data directory.
    pub fn start(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        Server::start_in(dir, extra)
    }

    pub fn start_in(data_dir: tempfile::TempDir, extra: &[&str]) -> Server {
        let mut cmd = ucm();
        cmd.args([
            "serve",
            "--bind",
            "127.0.0.1",
            "--http-port",
            "0",
            "--https-port",
            "0",
            "--tftp-http-port",
            "0",
            "--tftp-port",
            "0",
            "--sip-port",
            "0",
            "--sips-port",
            "0",
            "--snmp-port",
            "0",
            "--assistant-console-port",
            "0",
            "--attendant-console-port",
            "0",
            "--data-dir",
        ])
        .arg(data_dir.path())
        .args(extra)
        .env("UCM_LOG", "info");
        let (child, ready, stderr) = spawn_ready(cmd, "ucm serve", Duration::from_secs(60));
        Server {
            child,
            ready,
            data_dir,
            stderr,
            seen: Default::default(),
        }
    }

    pub fn addr(&self, key: &str) -> SocketAddr {
        self.ready[key]
            .as_str()
            .unwrap_or_else(|| panic!("ready line has no {key}: {}", self.ready))
            .parse()
            .expect("address")
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill with a pid we own and a valid signal number.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        for _ in 0..300 {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("ucm serve did not exit within 15 s of SIGTERM");
    }

    /// Everything the node logged so far (kept: calling it again returns earlier lines too).
    pub fn logs(&self) -> String {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for line in self.stderr.try_iter() {
            seen.push_str(&line);
            seen.push('\n');
        }
        seen.clone()
    }

    /// The logs once they contain `needle` (log lines arrive asynchronously); panics after 5 s.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            if std::time::Instant::now() > deadline {
                panic!("no {needle:?} in the node's log within 5 s:\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` with piped output and waits (bounded) for the JSON line it prints when ready.
/// Returns the child, that line parsed, and its stderr lines as they come. Panics with the
/// stderr seen so far when no ready line arrives.
pub fn spawn_ready(
    mut cmd: Command,
    what: &str,
    wait: Duration,
) -> (Child, serde_json::Value, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (err_tx, err_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = err_tx.send(line);
        }
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(l)) = lines.next() {
            let _ = tx.send(l);
        }
        for _ in lines {}
    });
    let Ok(line) = rx.recv_timeout(wait) else {
        let _ = child.kill();
        let _ = child.wait();
        let logs: Vec<String> = err_rx.try_iter().collect();
        panic!("{what} printed no ready line; stderr:\n{}", logs.join("\n"));
    };
    let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
    assert_eq!(ready["event"], "ready", "{ready}");
    (child, ready, err_rx)
}

/// A plain HTTP/1.1 GET; returns (status, headers, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    split_http(&raw)
}

pub fn split_http(raw: &[u8]) -> (u16, String, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP header end");
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut body = raw[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
    out
}

pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p
}

/// A fresh PostgreSQL database for one test, dropped afterwards. `None` (after printing why)
/// when no server is reachable outside CI.
pub struct PgDb {
    pub url: String,
    admin: String,
    name: String,
}

impl PgDb {
    pub async fn create() -> Option<PgDb> {
        let admin = std::env::var("UCM_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        sqlx::any::install_default_drivers();
        let mut conn = match <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                skip_or_fail(&format!("PostgreSQL at {admin} is not reachable: {e}"));
                return None;
            }
        };
        let name = format!("ucm_test_{}_{}", std::process::id(), rand::random::<u32>());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |x| x.0);
        Some(PgDb {
            url: format!("{base}/{name}"),
            admin,
            name,
        })
    }

    pub async fn drop_db(self) {
        if let Ok(mut conn) = <sqlx::AnyConnection as sqlx::Connection>::connect(&self.admin).await
        {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
        }
    }
}

/// Whether `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}
