//! `cargo xtask bench webdialer`: WebDialer makeCall requests per second on one node that
//! really set up calls between simulated phones (each makeCall is followed by endCall; a call
//! counts only when the destination phone shows it connected and it is gone after endCall),
//! and Redirector requests per second (a second node redirects the users of the first to it,
//! asking it isClusterUser and checking the password there, over HTTPS). Both are printed
//! against the seed's figures (4 calls/s, 8 redirects/s) with the 100x goal.
//!
//! Loopback only; every loop is bounded in count and time.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use ucm::client::webdialer::WdClient;
use ucm::client::ClientOptions;
use ucm::wire::soap::{Credential, Request, UserProfile};

/// The seed's figures per node (Capacity Planning for WebDialer).
const SEED_CALLS_PER_SEC: f64 = 4.0;
const SEED_REDIRECTS_PER_SEC: f64 = 8.0;
const GOAL: f64 = 100.0;
/// Hard bounds on each phase.
const MAX_CALLS: usize = 50_000;
const MAX_REDIRECTS: usize = 200_000;
/// How long a call may take to show connected, or to be gone after endCall.
const SETTLE: Duration = Duration::from_secs(5);

struct Opts {
    pairs: usize,
    seconds: u64,
}

fn parse(rest: &[&str]) -> Result<Opts> {
    let mut o = Opts {
        pairs: 8,
        seconds: 15,
    };
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let v = it.next().with_context(|| format!("{a} needs a value"))?;
        match *a {
            "--pairs" => o.pairs = v.parse().context("--pairs")?,
            "--seconds" => o.seconds = v.parse().context("--seconds")?,
            _ => bail!("usage: cargo xtask bench webdialer [--pairs N] [--seconds S]"),
        }
    }
    if !(1..=64).contains(&o.pairs) || !(1..=120).contains(&o.seconds) {
        bail!("--pairs 1..64, --seconds 1..120");
    }
    Ok(o)
}

fn device(i: usize) -> String {
    format!("SEP{:012X}", 0x0100_0000_0000u64 + i as u64)
}

fn dn(i: usize) -> String {
    (100_000 + i).to_string()
}

pub fn bench_webdialer(
    bin: &Path,
    spawn: impl Fn(&Path, &Path, &Path) -> Result<(super::Bg, serde_json::Value)>,
    gen: impl Fn(usize, &Path) -> Result<()>,
    rest: &[&str],
) -> Result<()> {
    let o = parse(rest)?;
    let tmp = std::env::temp_dir().join(format!("ucm-bench-webdialer-{}", std::process::id()));
    let r = run_all(bin, &spawn, &gen, &o, &tmp);
    let _ = std::fs::remove_dir_all(&tmp);
    r
}

fn run_all(
    bin: &Path,
    spawn: &impl Fn(&Path, &Path, &Path) -> Result<(super::Bg, serde_json::Value)>,
    gen: &impl Fn(usize, &Path) -> Result<()>,
    o: &Opts,
    tmp: &Path,
) -> Result<()> {
    let phones = 2 * o.pairs;
    // Node B: the users' home, where the calls are placed. An operator expecting this load
    // raises Maximum Concurrent Call Requests to Cisco's highest, 8.
    let max_concurrent = 8;
    let dir_b = tmp.join("b");
    std::fs::create_dir_all(&dir_b)?;
    let config_b = tmp.join("b.yaml");
    gen(phones, &config_b)?;
    let mut y = std::fs::read_to_string(&config_b)?;
    y.push_str(&format!(
        "service_parameters:\n  webdialer:\n    max_concurrent_call_requests: {max_concurrent}\n"
    ));
    std::fs::write(&config_b, y)?;
    let (node_b, ready_b) = spawn(bin, &config_b, &dir_b)?;
    let addr = |r: &serde_json::Value, k: &str| -> Result<String> {
        Ok(r[k]
            .as_str()
            .with_context(|| format!("ready line without {k}"))?
            .to_string())
    };
    let (b_http, b_https) = (addr(&ready_b, "http")?, addr(&ready_b, "https")?);

    // The phones: one `ucm phone sim` process, answering automatically.
    let sim = spawn_sim(bin, &b_http, &addr(&ready_b, "tftp_http")?, phones)?;
    let mut phone_http = Vec::with_capacity(phones);
    for i in 0..phones {
        let d = device(i);
        let h = sim
            .1
            .get("phones")
            .and_then(|p| p.as_array())
            .and_then(|ps| ps.iter().find(|p| p["device"] == d.as_str()))
            .and_then(|p| p["http"].as_str())
            .with_context(|| format!("{d} is not in the simulator's ready line"))?;
        phone_http.push(h.parse::<SocketAddr>()?);
    }

    // Node R: the Redirector, whose List of WebDialers is B (trusted by B's certificate).
    let dir_r = tmp.join("r");
    std::fs::create_dir_all(&dir_r)?;
    let config_r = tmp.join("r.yaml");
    let demo_wd =
        "  webdialer:\n    user_session_expiry_hours: 0\n    max_concurrent_call_requests: 3\n";
    if !ucm::config::DEMO_YAML.contains(demo_wd) {
        bail!("the demo cluster's WebDialer parameters moved; update bench webdialer");
    }
    std::fs::write(
        &config_r,
        ucm::config::DEMO_YAML.replace(
            demo_wd,
            &format!(
                "{demo_wd}    webdialers: [\"https://{b_https}\"]\n    redirector_ca_file: {}\n",
                dir_b.join("node-cert.pem").display()
            ),
        ),
    )?;
    let (node_r, ready_r) = spawn(bin, &config_r, &dir_r)?;
    let r_http: SocketAddr = addr(&ready_r, "http")?.parse()?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let calls = rt.block_on(run_calls(&b_http, &phone_http, o, max_concurrent))?;
    let redirects = rt.block_on(run_redirects(r_http, &b_https, phones, o))?;
    drop(sim);
    drop(node_r);
    drop(node_b);

    let calls_per_sec = calls.connected as f64 / calls.elapsed.as_secs_f64();
    let redirects_per_sec = redirects.ok as f64 / redirects.elapsed.as_secs_f64();
    println!(
        "bench webdialer: release build, SQLite, {} phone pairs on `ucm phone sim` (auto-answer), one client per pair, at most {max_concurrent} makeCall requests in flight",
        o.pairs
    );
    println!(
        "  service parameters raised as an operator would: Maximum Concurrent Call Requests {max_concurrent} (default 3)"
    );
    // The client parses every SOAP answer and phone state: unoptimised, it is the bottleneck.
    if cfg!(debug_assertions) {
        println!(
            "  load generator: debug build (cargo xtask); `cargo run --release -p xtask -- bench webdialer` measures the node, not the client"
        );
    } else {
        println!("  load generator: release build");
    }
    println!(
        "  makeCall + endCall: {} calls connected and ended in {:.2} s: {:.1} calls/s; failed {}",
        calls.connected,
        calls.elapsed.as_secs_f64(),
        calls_per_sec,
        calls.failed
    );
    println!(
        "    makeCall latency (user's phone answered): p50 {:.2} ms, p99 {:.2} ms; whole cycle p50 {:.2} ms",
        calls.make_p50_ms, calls.make_p99_ms, calls.cycle_p50_ms
    );
    println!(
        "    vs the seed's {SEED_CALLS_PER_SEC} calls/s per node: {:.0}x (goal {GOAL:.0}x with no failed call: {})",
        calls_per_sec / SEED_CALLS_PER_SEC,
        if calls_per_sec >= GOAL * SEED_CALLS_PER_SEC && calls.failed == 0 {
            "met"
        } else {
            "not met"
        }
    );
    println!(
        "    mean per phase: makeCall {:.1} ms, destination connected {:.1} ms, endCall {:.1} ms, both phones idle {:.1} ms",
        calls.phases_ms[0], calls.phases_ms[1], calls.phases_ms[2], calls.phases_ms[3]
    );
    if let Some(e) = &calls.first_error {
        println!("    first failure: {e}");
    }
    println!(
        "  Redirector (a second node; isClusterUser and the password check at B over HTTPS): {} redirects in {:.2} s: {:.1}/s; failed {}",
        redirects.ok,
        redirects.elapsed.as_secs_f64(),
        redirects_per_sec,
        redirects.failed
    );
    println!(
        "    vs the seed's {SEED_REDIRECTS_PER_SEC} redirects/s: {:.0}x (goal {GOAL:.0}x: {})",
        redirects_per_sec / SEED_REDIRECTS_PER_SEC,
        if redirects_per_sec >= GOAL * SEED_REDIRECTS_PER_SEC && redirects.failed == 0 {
            "met"
        } else {
            "not met"
        }
    );
    if let Some(e) = &redirects.first_error {
        println!("    first failure: {e}");
    }
    Ok(())
}

/// Starts `ucm phone sim` for the cluster's first `count` phones; returns it and its ready line.
fn spawn_sim(
    bin: &Path,
    http: &str,
    tftp: &str,
    count: usize,
) -> Result<(super::Bg, serde_json::Value)> {
    let mut child = Command::new(bin)
        .args(["phone", "sim", "--server", http, "--tftp", tftp])
        .args(["--count", &count.to_string(), "--auto-answer"])
        .args(["--first-ip", "127.0.90.10", "--http-port", "0"])
        .env("UCM_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawn ucm phone sim")?;
    let stdout = child.stdout.take().context("stdout")?;
    let sim = super::Bg(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut l = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut l);
        let _ = tx.send(l);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .context("the phone simulator printed no ready line within 60 s")?;
    let v: serde_json::Value = serde_json::from_str(&line)
        .with_context(|| format!("unexpected first line from the simulator: {line}"))?;
    if v["event"] != "ready" {
        bail!("unexpected first line from the simulator: {line}");
    }
    Ok((sim, v))
}

/// A minimal HTTP/1.1 client on one keep-alive connection (reconnects when the server closes).
struct Conn {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
    /// The phone's state version last seen (`GET /state/calls`).
    version: u64,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            stream: None,
            version: 0,
        }
    }

    /// One request: (status, head, body). Bounded by a 10 s timeout.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        ctype: &str,
        body: &str,
    ) -> Result<(u16, String, Vec<u8>)> {
        tokio::time::timeout(
            Duration::from_secs(10),
            self.request_inner(method, path, ctype, body),
        )
        .await
        .map_err(|_| anyhow::anyhow!("{method} {path}: no answer within 10 s"))
        .and_then(|r| r)
        .inspect_err(|_| self.stream = None)
    }

    async fn request_inner(
        &mut self,
        method: &str,
        path: &str,
        ctype: &str,
        body: &str,
    ) -> Result<(u16, String, Vec<u8>)> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(BufReader::new(s));
        }
        let s = self.stream.as_mut().context("no connection")?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        s.get_mut().write_all(req.as_bytes()).await?;
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if s.read_line(&mut line).await? == 0 {
                bail!("{method} {path}: connection closed before the answer");
            }
            if head.len() + line.len() > 16 * 1024 {
                bail!("{method} {path}: answer head over 16 KiB");
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .with_context(|| format!("{method} {path}: no status in {head:?}"))?;
        let lower = head.to_ascii_lowercase();
        let len = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let mut out = Vec::new();
        match len {
            Some(n) if n <= 4 << 20 => {
                out.resize(n, 0);
                s.read_exact(&mut out).await?;
            }
            Some(n) => bail!("{method} {path}: answer of {n} bytes"),
            None => {
                s.take(4 << 20).read_to_end(&mut out).await?;
                self.stream = None;
            }
        }
        if lower.contains("connection: close") {
            self.stream = None;
        }
        Ok((status, head, out))
    }
}

/// Watches a phone's calls (bounded by [`SETTLE`]) until `ok` holds for them: the first look
/// answers at once, each next one when the phone has handled something since (a long poll on
/// `GET /state/calls?after=V`), so a change is seen when it happens and nothing spins.
async fn wait_phone(
    conn: &mut Conn,
    what: &str,
    ok: impl Fn(&[serde_json::Value]) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + SETTLE;
    // Ended calls (the phone keeps its last 20) are left out: less to write and to read.
    let mut path = "/state/calls?live=true".to_string();
    loop {
        let (st, _, body) = conn.request("GET", &path, "text/plain", "").await?;
        if st != 200 {
            bail!("phone {path} answered {st}");
        }
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let calls = v["calls"].as_array().map(Vec::as_slice).unwrap_or_default();
        if ok(calls) {
            conn.version = v["version"].as_u64().unwrap_or(conn.version);
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("{what} within {SETTLE:?}: calls {}", v["calls"]);
        }
        conn.version = v["version"].as_u64().unwrap_or(conn.version);
        path = format!(
            "/state/calls?live=true&after={}&timeout_ms={}",
            conn.version,
            left.as_millis().max(1)
        );
    }
}

struct Calls {
    connected: usize,
    failed: usize,
    first_error: Option<String>,
    elapsed: Duration,
    make_p50_ms: f64,
    make_p99_ms: f64,
    cycle_p50_ms: f64,
    /// Mean ms per phase: makeCall, until the destination shows connected, endCall, until both
    /// phones show the call ended.
    phases_ms: [f64; 4],
}

fn pct(v: &[Duration], p: f64) -> f64 {
    v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Each pair: user{a} calls user{b}'s DN from their own phone, again and again.
/// At most `max_concurrent` makeCall requests are in flight at once, as a client of a node
/// with that Maximum Concurrent Call Requests keeps to (more would be refused with code 9).
async fn run_calls(
    b_http: &str,
    phone_http: &[SocketAddr],
    o: &Opts,
    max_concurrent: usize,
) -> Result<Calls> {
    let requests = Arc::new(tokio::sync::Semaphore::new(max_concurrent));
    let client = Arc::new(
        WdClient::new(
            &format!("http://{b_http}"),
            &ClientOptions {
                timeout: Some(Duration::from_secs(30)),
                ..ClientOptions::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..o.pairs {
        let (a, b) = (p, p + o.pairs);
        let (client, next, requests) = (client.clone(), next.clone(), requests.clone());
        let (mut phone_b, mut phone_a) = (Conn::new(phone_http[b]), Conn::new(phone_http[a]));
        tasks.spawn(async move {
            let cred = Credential {
                user_id: format!("user{a}"),
                password: "cisco".into(),
                token: None,
            };
            let profile = UserProfile {
                user: format!("user{a}"),
                device_name: device(a),
                line_number: dn(a),
                support_em: false,
            };
            let (mut connected, mut failed) = (0usize, 0usize);
            let mut first_error: Option<String> = None;
            let (mut make, mut cycle) = (Vec::new(), Vec::new());
            let mut phases = [Duration::ZERO; 4];
            let caller = dn(a);
            loop {
                if next.fetch_add(1, Ordering::Relaxed) >= MAX_CALLS || Instant::now() > deadline {
                    break;
                }
                let t = Instant::now();
                let r = async {
                    let slot = requests.acquire().await?;
                    let reply = client
                        .call(&Request::MakeCall {
                            cred: cred.clone(),
                            destination: dn(b),
                            profile: profile.clone(),
                        })
                        .await
                        .map_err(|e| anyhow::anyhow!("makeCall: {e}"))?;
                    drop(slot);
                    if reply.response_code != Some(0) {
                        bail!(
                            "makeCall answered {:?}: {}",
                            reply.response_code,
                            reply.description
                        );
                    }
                    let made = t.elapsed();
                    let mut marks = [made, Duration::ZERO, Duration::ZERO, Duration::ZERO];
                    let t1 = Instant::now();
                    // Really connected: the destination shows the call from the user's line.
                    wait_phone(&mut phone_b, "the destination connected", |calls| {
                        calls.iter().any(|c| {
                            c["state"] == "connected" && c["remote_number"] == caller.as_str()
                        })
                    })
                    .await?;
                    marks[1] = t1.elapsed();
                    let t2 = Instant::now();
                    let reply = client
                        .call(&Request::EndCall {
                            cred: cred.clone(),
                            profile: profile.clone(),
                        })
                        .await
                        .map_err(|e| anyhow::anyhow!("endCall: {e}"))?;
                    marks[2] = t2.elapsed();
                    let t3 = Instant::now();
                    if reply.response_code != Some(0) {
                        bail!(
                            "endCall answered {:?}: {}",
                            reply.response_code,
                            reply.description
                        );
                    }
                    // Really ended on both phones before the next call: no live call left.
                    let idle = |calls: &[serde_json::Value]| calls.is_empty();
                    let (b_idle, a_idle) = tokio::join!(
                        wait_phone(&mut phone_b, "the destination hung up", idle),
                        wait_phone(&mut phone_a, "the user's phone hung up", idle)
                    );
                    b_idle?;
                    a_idle?;
                    marks[3] = t3.elapsed();
                    Ok::<_, anyhow::Error>(marks)
                }
                .await;
                match r {
                    Ok(marks) => {
                        connected += 1;
                        make.push(marks[0]);
                        for (sum, m) in phases.iter_mut().zip(marks) {
                            *sum += m;
                        }
                        cycle.push(t.elapsed());
                    }
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert(format!("user{a}: {e:#}"));
                        // Leave the pair clean for the next try (best effort, bounded).
                        let _ = client
                            .call(&Request::EndCall {
                                cred: cred.clone(),
                                profile: profile.clone(),
                            })
                            .await;
                        if failed >= 20 {
                            break;
                        }
                    }
                }
            }
            (connected, failed, first_error, make, cycle, phases)
        });
    }
    let (mut connected, mut failed, mut first_error) = (0, 0, None);
    let (mut make, mut cycle) = (Vec::new(), Vec::new());
    let mut phases = [Duration::ZERO; 4];
    while let Some(r) = tasks.join_next().await {
        let (c, f, e, m, cy, ph) = r?;
        for (sum, p) in phases.iter_mut().zip(ph) {
            *sum += p;
        }
        connected += c;
        failed += f;
        if first_error.is_none() {
            first_error = e;
        }
        make.extend(m);
        cycle.extend(cy);
    }
    let elapsed = started.elapsed();
    make.sort();
    cycle.sort();
    Ok(Calls {
        connected,
        failed,
        first_error,
        elapsed,
        make_p50_ms: pct(&make, 0.50),
        make_p99_ms: pct(&make, 0.99),
        cycle_p50_ms: pct(&cycle, 0.50),
        phases_ms: phases.map(|d| d.as_secs_f64() * 1000.0 / connected.max(1) as f64),
    })
}

struct Redirects {
    ok: usize,
    failed: usize,
    first_error: Option<String>,
    elapsed: Duration,
}

/// Users of B log in at R's Redirector; each must be sent (303) to B's WebDialer.
async fn run_redirects(
    r_http: SocketAddr,
    b_https: &str,
    users: usize,
    o: &Opts,
) -> Result<Redirects> {
    // Heads are compared lowercased.
    let want = format!("location: https://{b_https}/webdialer/webdialer?destination=");
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..o.pairs {
        let (next, want) = (next.clone(), want.clone());
        tasks.spawn(async move {
            let mut conn = Conn::new(r_http);
            let (mut ok, mut failed, mut first_error) = (0usize, 0usize, None::<String>);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= MAX_REDIRECTS || Instant::now() > deadline {
                    break;
                }
                let u = i % users;
                let form = format!("uid=user{u}&pwd=cisco&destination={}", dn((u + 1) % users));
                let r = conn
                    .request(
                        "POST",
                        "/webdialer/Redirector",
                        "application/x-www-form-urlencoded",
                        &form,
                    )
                    .await;
                match r {
                    Ok((303, head, _)) if head.to_ascii_lowercase().contains(&want) => ok += 1,
                    Ok((st, head, body)) => {
                        failed += 1;
                        first_error.get_or_insert(format!(
                            "user{u}: {st} {head} {}",
                            String::from_utf8_lossy(&body)
                        ));
                    }
                    Err(e) => {
                        failed += 1;
                        first_error.get_or_insert(format!("user{u}: {e:#}"));
                    }
                }
                if failed >= 20 {
                    break;
                }
            }
            (ok, failed, first_error)
        });
    }
    let (mut ok, mut failed, mut first_error) = (0, 0, None);
    while let Some(r) = tasks.join_next().await {
        let (o, f, e) = r?;
        ok += o;
        failed += f;
        if first_error.is_none() {
            first_error = e;
        }
    }
    Ok(Redirects {
        ok,
        failed,
        first_error,
        elapsed: started.elapsed(),
    })
}
