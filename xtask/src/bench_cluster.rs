//! `cargo xtask bench cluster`: two `ucm serve` nodes (release build) on a fresh PostgreSQL
//! database behind HAProxy (health-checked on /healthz). Measured in one run:
//!
//! - EM logins plus logouts per minute through HAProxy, first with one node behind it, then
//!   with both, against the seed's figure for two nodes (375/min) and the one-node figure;
//! - the change feed's propagation delay (p50/p99) under that load, as each node reports it
//!   (`ucm cluster status --json`);
//! - how long simulated phones take to register with the second node of their Unified CM
//!   group after `kill -9` of the first, and whether their calls' media went on.
//!
//! Bounded in count and time; every address is on 127.0.0.0/8.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::bench_em;
use super::Bg;

/// The seed's figure: EM logins per minute on two nodes.
const SEED_TWO_NODES_PER_MINUTE: f64 = 375.0;
/// The goal for phone failover.
const FAILOVER_GOAL: Duration = Duration::from_secs(5);
/// EM's Maximum Concurrent Requests per node is 5: HAProxy queues beyond 4 per node.
const PER_NODE_IN_FLIGHT: usize = 4;

/// A database created for the run, dropped on the way out.
struct PgDb {
    admin: String,
    name: String,
    url: String,
}

impl PgDb {
    fn create(admin: &str) -> Result<PgDb> {
        let name = format!("ucm_bench_cluster_{}", std::process::id());
        psql(
            admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )?;
        psql(admin, &format!("CREATE DATABASE {name}"))?;
        let base = admin.rsplit_once('/').map_or(admin, |x| x.0);
        Ok(PgDb {
            admin: admin.to_string(),
            url: format!("{base}/{name}"),
            name,
        })
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(url: &str, sql: &str) -> Result<()> {
    let o = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .context("psql (Debian postgresql-client)")?;
    if !o.status.success() {
        bail!(
            "psql {url} -c {sql:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

/// A port free on `ip` for SIP (UDP and TCP).
fn free_sip_port(ip: &str) -> Result<u16> {
    for _ in 0..50 {
        let t = std::net::TcpListener::bind((ip, 0))?;
        let port = t.local_addr()?.port();
        if std::net::UdpSocket::bind((ip, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free SIP port on {ip}")
}

/// Runs `cmd` in the background and waits (bounded) for its first stdout line, a JSON
/// `ready` event.
fn spawn_ready(mut cmd: Command, what: &str, wait: Duration) -> Result<(Bg, Value)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("spawn {what}"))?;
    let stdout = child.stdout.take().context("stdout")?;
    let bg = Bg(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut l = String::new();
        let _ = BufReader::new(stdout).read_line(&mut l);
        let _ = tx.send(l);
    });
    let line = rx
        .recv_timeout(wait)
        .with_context(|| format!("{what}: no ready line within {} s", wait.as_secs()))?;
    let v: Value = serde_json::from_str(&line)
        .with_context(|| format!("{what}: unexpected first line: {line}"))?;
    if v["event"] != "ready" {
        bail!("{what}: unexpected first line: {line}");
    }
    Ok((bg, v))
}

fn node(bin: &Path, def: &Path, db: &str, name: &str, dir: &Path) -> Result<(Bg, Value)> {
    let data = dir.join(name);
    std::fs::create_dir_all(&data)?;
    let mut cmd = Command::new(bin);
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
        .args(["--tftp-port", "0", "--sips-port", "0", "--data-dir"])
        .arg(&data)
        .env("UCM_LOG", "warn");
    spawn_ready(cmd, name, Duration::from_secs(300))
}

fn addr(ready: &Value, key: &str) -> Result<SocketAddr> {
    ready[key]
        .as_str()
        .with_context(|| format!("ready line without {key}: {ready}"))?
        .parse()
        .with_context(|| format!("{key} in {ready}"))
}

/// HAProxy in front of `backends`, health-checked on /healthz.
fn haproxy(backends: &[SocketAddr], dir: &Path) -> Result<(Bg, SocketAddr)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let front: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!("    server n{i} {b} check inter 200ms fall 2 rise 2 maxconn {PER_NODE_IN_FLIGHT}\n")
        })
        .collect();
    let cfg = format!(
        "global\n    maxconn 512\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n    timeout queue 30s\n    retries 3\n    option redispatch\n    retry-on conn-failure\nfrontend em\n    bind {front}\n    default_backend nodes\nbackend nodes\n    balance roundrobin\n    option httpchk GET /healthz\n    http-check expect status 200\n{servers}"
    );
    let path = dir.join(format!("haproxy-{}.cfg", backends.len()));
    std::fs::write(&path, cfg)?;
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("haproxy (Debian haproxy)")?;
    let bg = Bg(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(front).is_err() {
        if Instant::now() > deadline {
            bail!("haproxy never listened on {front}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every backend passes its health checks (rise 2 at 200 ms) before the load.
    std::thread::sleep(Duration::from_millis(800));
    Ok((bg, front))
}

/// One HTTP/1.1 exchange on a fresh connection: (status, body).
fn http(addr: SocketAddr, request: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

fn phone_state(phone: SocketAddr) -> Result<Value> {
    let (status, body) = http(
        phone,
        &format!("GET /state HTTP/1.1\r\nHost: {phone}\r\nConnection: close\r\n\r\n"),
    )?;
    if status != 200 {
        bail!("GET /state on {phone}: HTTP {status}");
    }
    Ok(serde_json::from_str(&body)?)
}

fn on_node(s: &Value, name: &str) -> bool {
    s["node"] == name && s["registered"] == true
}

/// RTP packets the phone's call received, while it is connected.
fn talking(s: &Value) -> Option<u64> {
    let c = s["calls"]
        .as_array()?
        .iter()
        .find(|c| c["state"] == "connected")?;
    c["rtp_rx_packets"].as_u64()
}

/// Has the phone at `phone` dial `number`, with its owner's credentials (as a server pushes).
fn push_dial(phone: SocketAddr, user: &str, number: &str) -> Result<()> {
    use ucm::wire::codec::{base64_encode, percent_encode};
    let xml = format!(
        "<CiscoIPPhoneExecute><ExecuteItem Priority=\"0\" URL=\"Dial:{number}\"/></CiscoIPPhoneExecute>"
    );
    let body = format!("XML={}", percent_encode(&xml));
    let auth = base64_encode(format!("{user}:cisco").as_bytes());
    let (status, answer) = http(
        phone,
        &format!(
            "POST /CGI/Execute HTTP/1.1\r\nHost: {phone}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )?;
    if status != 200 || !answer.contains("Status=\"0\"") {
        bail!("Dial:{number} from {phone}: HTTP {status} {answer}");
    }
    Ok(())
}

/// Polls every phone until `done` holds for it (bounded by `limit`); the time each took.
fn wait_phones(
    phones: &[SocketAddr],
    limit: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Result<Vec<Duration>> {
    let t0 = Instant::now();
    let mut took: Vec<Option<Duration>> = vec![None; phones.len()];
    while took.iter().any(Option::is_none) {
        if t0.elapsed() > limit {
            let left = took.iter().filter(|t| t.is_none()).count();
            bail!(
                "{what}: {left} of {} phones not within {limit:?}",
                phones.len()
            );
        }
        for (i, p) in phones.iter().enumerate() {
            if took.get(i).is_some_and(Option::is_none) && phone_state(*p).is_ok_and(|s| done(&s)) {
                took[i] = Some(t0.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(took.into_iter().flatten().collect())
}

fn run_load(
    front: SocketAddr,
    nodes: &[SocketAddr],
    users: usize,
    seconds: u64,
    in_flight: usize,
) -> Result<bench_em::Outcome> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Each node verifies the proxy user's password once before the measurement (as
        // `bench em` warms its one node), not in a burst of its first requests.
        for n in nodes {
            let c = ucm::client::em::EmClient::new(
                &format!("http://{n}"),
                "emproxy",
                "emproxy",
                &ucm::client::ClientOptions::default(),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            let _ = c.device_users(&["SEP010000000000"]).await;
        }
        bench_em::run(&front.to_string(), users, seconds, in_flight).await
    })
}

fn print_load(label: &str, r: &bench_em::Outcome) {
    println!(
        "  {label}: {} logins + {} logouts in {:.2} s: {:.0} per minute, errors {}, latency p50 {:.2} ms, p99 {:.2} ms",
        r.logins,
        r.logouts,
        r.elapsed.as_secs_f64(),
        r.per_minute(),
        r.errors,
        r.p50_ms,
        r.p99_ms
    );
    if let Some(e) = &r.first_error {
        println!("    first error: {e}");
    }
}

pub fn bench_cluster(
    bin: &Path,
    gen: impl Fn(usize, &Path) -> Result<()>,
    rest: &[&str],
) -> Result<()> {
    let (mut users, mut seconds, mut phones) = (3000usize, 20u64, 20usize);
    let mut args = rest.iter();
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> Result<usize> {
            args.next()
                .with_context(|| format!("{name} needs a value"))?
                .parse()
                .with_context(|| name.to_string())
        };
        match *a {
            "--users" => users = value("--users")?.max(1),
            "--seconds" => seconds = value("--seconds")?.clamp(1, 300) as u64,
            "--phones" => phones = (value("--phones")?.max(2) / 2 * 2).min(users).min(200),
            _ => bail!("usage: cargo xtask bench cluster [--users N] [--seconds S] [--phones P]"),
        }
    }
    for tool in ["haproxy", "psql"] {
        if !Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()?
            .success()
        {
            bail!("{tool} is needed: apt-get install haproxy postgresql-client");
        }
    }
    let admin = std::env::var("UCM_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let db = PgDb::create(&admin)?;
    let tmp = std::env::temp_dir().join(format!("ucm-bench-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let r = measure(bin, &gen, &db.url, &tmp, users, seconds, phones);
    let _ = std::fs::remove_dir_all(&tmp);
    drop(db);
    r
}

fn measure(
    bin: &Path,
    gen: &impl Fn(usize, &Path) -> Result<()>,
    db: &str,
    tmp: &Path,
    users: usize,
    seconds: u64,
    phones: usize,
) -> Result<()> {
    // The generated cluster on two nodes, each on its own address with a known SIP port so
    // the phones' configuration files name both members of their Unified CM group.
    let def = tmp.join("cluster.yaml");
    gen(users, &def)?;
    let text = std::fs::read_to_string(&def)?;
    let (p1, p2) = (free_sip_port("127.0.0.2")?, free_sip_port("127.0.0.3")?);
    let services = "[call-processing, tftp, phone-services, extension-mobility, em-application]";
    let nodes = format!(
        "nodes:\n  - name: ucm-sub1\n    address: 127.0.0.2\n    bind: 127.0.0.2\n    ports: {{sip: {p1}}}\n    services: {services}\n  - name: ucm-sub2\n    address: 127.0.0.3\n    bind: 127.0.0.3\n    ports: {{sip: {p2}}}\n    services: {services}\npartitions:\n"
    );
    let start = text
        .find("nodes:\n")
        .context("generated cluster without nodes")?;
    let end = text
        .find("partitions:\n")
        .context("generated cluster without partitions")?;
    let text = format!(
        "{}{nodes}{}",
        &text[..start],
        &text[end + "partitions:\n".len()..]
    )
    .replace("node_group: [ucm-pub]", "node_group: [ucm-sub1, ucm-sub2]");
    std::fs::write(&def, text)?;

    println!(
        "bench cluster: {users}-user cluster, PostgreSQL, release build, HAProxy (roundrobin, /healthz checks, {PER_NODE_IN_FLIGHT} requests in flight per node)"
    );
    let (mut n1, r1) = node(bin, &def, db, "ucm-sub1", tmp)?;
    let h1 = addr(&r1, "http")?;
    let one = {
        let (_lb, front) = haproxy(&[h1], tmp)?;
        run_load(front, &[h1], users, seconds, PER_NODE_IN_FLIGHT)?
    };
    let (_n2, r2) = node(bin, &def, db, "ucm-sub2", tmp)?;
    let h2 = addr(&r2, "http")?;
    let two = {
        let (_lb, front) = haproxy(&[h1, h2], tmp)?;
        run_load(front, &[h1, h2], users, seconds, 2 * PER_NODE_IN_FLIGHT)?
    };
    println!("  EM logins + logouts through HAProxy:");
    print_load("one node ", &one);
    print_load("two nodes", &two);
    let ratio = two.per_minute() / one.per_minute().max(1e-9);
    println!(
        "  two nodes vs the seed's {SEED_TWO_NODES_PER_MINUTE:.0}/min: {:.0}x; vs one node in this run: {ratio:.2}x; goal 2x one node with 0 errors: {}",
        two.per_minute() / SEED_TWO_NODES_PER_MINUTE,
        if ratio >= 2.0 && one.errors + two.errors == 0 { "met" } else { "not met" }
    );

    // The feed's figures as each node last reported them (heartbeats are a second apart).
    std::thread::sleep(Duration::from_millis(2500));
    let o = Command::new(bin)
        .args(["cluster", "status", "--json", "--db", db])
        .output()
        .context("ucm cluster status")?;
    let status: Value = serde_json::from_slice(&o.stdout)
        .with_context(|| format!("cluster status: {}", String::from_utf8_lossy(&o.stderr)))?;
    println!(
        "  change propagation under that load (the feed's recent window, per receiving node):"
    );
    let mut worst_p99 = 0;
    for n in status["nodes"].as_array().into_iter().flatten() {
        let f = &n["feed"];
        worst_p99 = worst_p99.max(f["p99_ms"].as_i64().unwrap_or(0));
        println!(
            "    {}: {} changes applied, p50 {} ms, p99 {} ms, max {} ms",
            n["name"].as_str().unwrap_or("?"),
            f["events"],
            f["p50_ms"],
            f["p99_ms"],
            f["max_ms"]
        );
    }
    println!(
        "    goal p99 < 100 ms: {}",
        if worst_p99 < 100 { "met" } else { "not met" }
    );

    // Phones on ucm-sub1 (the first of their group), in calls by pairs; then kill -9.
    let tftp = addr(&r1, "tftp_http")?;
    let mut cmd = Command::new(bin);
    cmd.args(["phone", "sim", "--server"])
        .arg(tftp.to_string())
        .arg("--tftp")
        .arg(tftp.to_string())
        .args([
            "--first-ip",
            "127.0.40.10",
            "--http-port",
            "0",
            "--auto-answer",
        ])
        .env("UCM_LOG", "warn");
    for i in 0..phones {
        cmd.args([
            "--device",
            &format!("SEP{:012X}", 0x0100_0000_0000u64 + i as u64),
        ]);
    }
    let (_sim, ready) = spawn_ready(cmd, "ucm phone sim", Duration::from_secs(120))?;
    let addrs: Vec<SocketAddr> = ready["phones"]
        .as_array()
        .context("ready line without phones")?
        .iter()
        .filter_map(|p| p["http"].as_str()?.parse().ok())
        .collect();
    if addrs.len() != phones {
        bail!("{} phones up of {phones}", addrs.len());
    }
    wait_phones(
        &addrs,
        Duration::from_secs(20),
        "registered with ucm-sub1",
        |s| on_node(s, "ucm-sub1"),
    )?;
    for (k, pair) in addrs.chunks(2).enumerate() {
        let (caller, callee) = (2 * k, 2 * k + 1);
        if pair.len() == 2 {
            push_dial(
                pair[0],
                &format!("user{caller}"),
                &(100_000 + callee).to_string(),
            )?;
        }
    }
    wait_phones(&addrs, Duration::from_secs(20), "in a call", |s| {
        talking(s).is_some_and(|n| n > 10)
    })?;
    n1.0.kill().context("kill -9 ucm-sub1")?;
    let _ = n1.0.wait();
    let took = wait_phones(
        &addrs,
        Duration::from_secs(30),
        "registered with ucm-sub2",
        |s| on_node(s, "ucm-sub2"),
    )?;
    let mut sorted = took.clone();
    sorted.sort();
    let p50 = sorted[sorted.len() / 2];
    let max = sorted[sorted.len() - 1];
    // A call that goes on receives RTP after the move.
    let before: Vec<Option<u64>> = addrs
        .iter()
        .map(|p| phone_state(*p).ok().as_ref().and_then(talking))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let dropped = addrs
        .iter()
        .zip(&before)
        .filter(|(p, b)| {
            let now = phone_state(**p).ok().as_ref().and_then(talking);
            !matches!((b, now), (Some(b), Some(n)) if n > *b)
        })
        .count();
    println!(
        "  phone failover after kill -9 of ucm-sub1 ({phones} phones, keepalive every 1 s, {} calls): every phone on ucm-sub2 after p50 {:.2} s, max {:.2} s; calls whose media stopped: {dropped}; goal < {} s, every phone back, no call dropped: {}",
        phones / 2,
        p50.as_secs_f64(),
        max.as_secs_f64(),
        FAILOVER_GOAL.as_secs(),
        if max < FAILOVER_GOAL && dropped == 0 { "met" } else { "not met" }
    );
    Ok(())
}
