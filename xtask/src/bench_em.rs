//! `cargo xtask bench em`: Extension Mobility logins plus logouts per minute on one node with a
//! generated 10,000-user cluster, from a concurrent client speaking the EM API over HTTP, with
//! p50 and p99 latency, printed against the seed's capacity (250 logins per minute per node).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ucm::client::em::EmClient;
use ucm::client::ClientOptions;

/// The seed's figure: EM logins per minute per node.
const SEED_PER_MINUTE: f64 = 250.0;
/// The goal: 100 times the seed.
const GOAL_PER_MINUTE: f64 = 25_000.0;

pub fn bench_em(
    bin: &Path,
    spawn: impl Fn(&Path, &Path, &Path) -> Result<(super::Bg, serde_json::Value)>,
    gen: impl Fn(usize, &Path) -> Result<()>,
    rest: &[&str],
) -> Result<()> {
    let (users, seconds, concurrency) = match rest {
        [] => (10_000usize, 30u64, 4usize),
        ["--users", n] => (n.parse().context("--users")?, 30, 4),
        _ => bail!("usage: cargo xtask bench em [--users N]"),
    };
    let tmp = std::env::temp_dir().join(format!("ucm-bench-em-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let config = tmp.join("cluster.yaml");
    gen(users, &config)?;
    let (node, ready) = spawn(bin, &config, &tmp)?;
    let http = ready["http"]
        .as_str()
        .context("ready line without http")?
        .to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(run(&http, users, seconds, concurrency));
    drop(node);
    let _ = std::fs::remove_dir_all(&tmp);
    let r = result?;
    let per_minute = r.ops as f64 / r.elapsed.as_secs_f64() * 60.0;
    println!(
        "bench em: {users}-user cluster, SQLite, release build, {concurrency} requests in flight (Maximum Concurrent Requests is 5)"
    );
    println!(
        "  {} logins + {} logouts in {:.2} s: {:.0} per minute ({:.0}/s), errors {}",
        r.logins,
        r.logouts,
        r.elapsed.as_secs_f64(),
        per_minute,
        per_minute / 60.0,
        r.errors
    );
    println!(
        "  latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        r.p50_ms, r.p99_ms, r.max_ms
    );
    println!(
        "  vs the seed's {SEED_PER_MINUTE:.0} logins/min per node: {:.0}x; goal {GOAL_PER_MINUTE:.0}/min with no errors: {}",
        per_minute / SEED_PER_MINUTE,
        if per_minute >= GOAL_PER_MINUTE && r.errors == 0 { "met" } else { "not met" }
    );
    if let Some(e) = r.first_error {
        println!("  first error: {e}");
    }
    Ok(())
}

/// What one load run did.
pub struct Outcome {
    pub ops: usize,
    pub logins: usize,
    pub logouts: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Outcome {
    pub fn per_minute(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9) * 60.0
    }
}

/// Logs `user<i>` in on its phone and out again for each i below `users`, `concurrency` at
/// a time, through the EM API at `http` (HOST:PORT), for at most `seconds`.
pub async fn run(http: &str, users: usize, seconds: u64, concurrency: usize) -> Result<Outcome> {
    let client = Arc::new(
        EmClient::new(
            &format!("http://{http}"),
            "emproxy",
            "emproxy",
            &ClientOptions {
                timeout: Some(Duration::from_secs(10)),
                ..ClientOptions::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    // Warm the connection pool and the credential cache outside the measurement.
    let _ = client.device_users(&["SEP010000000000"]).await;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, next) = (client.clone(), next.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let (mut logins, mut logouts, mut errors) = (0, 0, 0);
            let mut first_error = None;
            // Each worker takes the next user: login on the user's phone, then logout. Bounded
            // by the user count and by time.
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= users || Instant::now() > deadline {
                    break;
                }
                let device = format!("SEP{:012X}", 0x0100_0000_0000u64 + i as u64);
                let user = format!("user{i}");
                let t = Instant::now();
                match client.login(&device, &user, None, None).await {
                    Ok(()) => logins += 1,
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(format!("login {user}: {e}"));
                        continue;
                    }
                }
                lat.push(t.elapsed());
                let t = Instant::now();
                match client.logout(&device).await {
                    Ok(()) => logouts += 1,
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(format!("logout {device}: {e}"));
                    }
                }
                lat.push(t.elapsed());
            }
            (lat, logins, logouts, errors, first_error)
        });
    }
    let mut all = Vec::new();
    let (mut logins, mut logouts, mut errors) = (0, 0, 0);
    let mut first_error = None;
    while let Some(r) = tasks.join_next().await {
        let (lat, li, lo, er, fe) = r?;
        all.extend(lat);
        logins += li;
        logouts += lo;
        errors += er;
        if first_error.is_none() {
            first_error = fe;
        }
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(Outcome {
        ops: logins + logouts,
        logins,
        logouts,
        errors,
        first_error,
        elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: all.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    })
}
