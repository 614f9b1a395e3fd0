//! `cargo xtask bench paging`: how fast a page gets going and how evenly it streams. One node
//! (release build) with a generated cluster of N phones, all simulated by one `ucm phone sim`
//! on 127.2.x.x; `ucm page` calls DialCast numbers paging 50 phones and all N. Printed: the
//! time from the INVITE to the go-ahead tone (the caller's answer time plus the server's
//! answer-to-go-ahead time, which is the phones joining), against the goals (50
//! phones under 100 ms, 1,000 under 1 s) and the seed's group size of 50; and the multicast
//! stream's packet intervals at the sender, against 20 ms +- 1 ms at the 99th percentile.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The seed's recipient group size (InformaCast Basic Paging).
const SEED_GROUP: f64 = 50.0;
const CALLER: &str = "SEP0000CA11E900";

fn device(i: usize) -> String {
    format!("SEP0000BE{:06X}", i)
}

fn gen(n: usize, out: &Path) -> Result<()> {
    let mut y = String::with_capacity(n * 300);
    y.push_str(
        "cluster: {id: pagebench, name: Paging bench}\n\
nodes:\n  - name: n1\n    address: 127.0.0.1\n    services: [call-processing, tftp, phone-services, paging]\n\
partitions: [{name: PT}]\ncalling_search_spaces: [{name: CSS, partitions: [PT]}]\n\
device_pools: [{name: DP, node_group: [n1]}]\n\
directory_numbers:\n  - {pattern: \"7000\", partition: PT}\n  - {pattern: \"7050\", partition: PT}\n  - {pattern: \"99999\", partition: PT}\n",
    );
    for i in 0..n {
        let _ = writeln!(y, "  - {{pattern: \"{}\", partition: PT}}", 100_000 + i);
    }
    y.push_str("devices:\n");
    let _ = writeln!(
        y,
        "  - {{name: {CALLER}, model: Cisco 8845, device_pool: DP, css: CSS, lines: [{{dn: \"99999\", partition: PT}}]}}"
    );
    for i in 0..n {
        let _ = writeln!(
            y,
            "  - {{name: {}, model: Cisco 7841, device_pool: DP, css: CSS, lines: [{{dn: \"{}\", partition: PT}}]}}",
            device(i),
            100_000 + i
        );
    }
    y.push_str(
        "route_points:\n\
  - {name: Page_All, device_pool: DP, css: CSS, lines: [{dn: \"7000\", partition: PT}]}\n\
  - {name: Page_50, device_pool: DP, css: CSS, lines: [{dn: \"7050\", partition: PT}]}\n\
application_users:\n  - {userid: paging, password: paging, roles: [cti-control-all-devices]}\n\
paging:\n  user: paging\n  phone_http_port: 8081\n  join_timeout_ms: 5000\n  recipient_groups:\n",
    );
    let _ = writeln!(
        y,
        "    - {{name: all, dn_patterns: [\"1XXXXX\"], max_phones: {n}}}"
    );
    let fifty: Vec<String> = (0..n.min(50)).map(device).collect();
    let _ = writeln!(y, "    - {{name: fifty, devices: [{}]}}", fifty.join(", "));
    y.push_str(
        "  dialcasts:\n    - {route_point: Page_All, recipient_group: all}\n    - {route_point: Page_50, recipient_group: fifty}\n",
    );
    std::fs::write(out, y)?;
    Ok(())
}

struct PageRun {
    invite_to_go_ahead_ms: f64,
    joined: u64,
    failed: u64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
}

fn page(bin: &Path, http: &str, tftp: &str, number: &str) -> Result<PageRun> {
    let out = Command::new(bin)
        .args(["page", "--number", number, "--tone", "--seconds", "5"])
        .args(["--from", CALLER, "--bind", "127.0.0.1", "--json"])
        .args(["--server", http, "--tftp", tftp])
        .env("UCM_LOG", "warn")
        .stderr(Stdio::inherit())
        .output()
        .context("ucm page")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "ucm page printed no JSON (exit {:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    let r = &v["report"];
    let answer = v["caller"]["answer_ms"].as_f64().context("answer_ms")?;
    let go = r["go_ahead_ms"].as_f64().context("go_ahead_ms")?;
    Ok(PageRun {
        invite_to_go_ahead_ms: answer + go,
        joined: r["joined"].as_u64().unwrap_or(0),
        failed: r["failed"].as_u64().unwrap_or(0),
        p50_us: r["pacing"]["interval_p50_us"].as_u64().unwrap_or(0),
        p99_us: r["pacing"]["interval_p99_us"].as_u64().unwrap_or(0),
        max_us: r["pacing"]["interval_max_us"].as_u64().unwrap_or(0),
    })
}

pub fn bench_paging(
    bin: &Path,
    spawn: impl Fn(&Path, &Path, &Path) -> Result<(super::Bg, serde_json::Value)>,
    rest: &[&str],
) -> Result<()> {
    let n = match rest {
        [] => 1000usize,
        ["--phones", n] => n.parse().context("--phones")?,
        _ => bail!("usage: cargo xtask bench paging [--phones N]"),
    };
    if !(50..=4000).contains(&n) {
        bail!("--phones must be 50 to 4000");
    }
    let tmp = std::env::temp_dir().join(format!("ucm-bench-paging-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let config = tmp.join("cluster.yaml");
    gen(n, &config)?;
    let (node, ready) = spawn(bin, &config, &tmp)?;
    let http = ready["http"].as_str().context("http")?.to_string();
    let tftp = ready["tftp_http"]
        .as_str()
        .context("tftp_http")?
        .to_string();
    println!("bench paging: {n} simulated phones (one `ucm phone sim`), one node, release build, 2 cores shared");
    let mut sim = Command::new(bin)
        .args(["phone", "sim", "--server", &http, "--tftp", &tftp])
        .args(["--count", &(n + 1).to_string(), "--first-ip", "127.2.0.10"])
        .args(["--http-port", "8081"])
        .env("UCM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawn ucm phone sim")?;
    let stdout = sim.stdout.take().context("sim stdout")?;
    let sim = super::Bg(sim);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut l = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut l);
        let _ = tx.send(l);
    });
    let t0 = std::time::Instant::now();
    let line = rx
        .recv_timeout(Duration::from_secs(600))
        .context("the simulated phones were not ready within 600 s")?;
    if !line.contains("\"ready\"") {
        bail!("ucm phone sim: {line}");
    }
    println!(
        "  {} phones registered in {:.1} s",
        n + 1,
        t0.elapsed().as_secs_f64()
    );
    let mut rows = Vec::new();
    for (label, number, size, goal_ms) in
        [("50", "7050", 50usize, 100.0), ("all", "7000", n, 1000.0)]
    {
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(page(bin, &http, &tftp, number)?);
        }
        runs.sort_by(|a, b| a.invite_to_go_ahead_ms.total_cmp(&b.invite_to_go_ahead_ms));
        let mid = &runs[1];
        let all_joined = runs
            .iter()
            .all(|r| r.joined == size as u64 && r.failed == 0);
        println!(
            "  {size:>5} phones ({label}): INVITE to go-ahead median {:.0} ms (runs {:.0} / {:.0} / {:.0}); goal {goal_ms:.0} ms: {:.1}x under it; every phone joined: {all_joined}",
            mid.invite_to_go_ahead_ms,
            runs[0].invite_to_go_ahead_ms,
            runs[1].invite_to_go_ahead_ms,
            runs[2].invite_to_go_ahead_ms,
            goal_ms / mid.invite_to_go_ahead_ms.max(0.001),
        );
        rows.extend(runs);
    }
    let worst_p99 = rows.iter().map(|r| r.p99_us).max().unwrap_or(0);
    let median_p50 = {
        let mut v: Vec<u64> = rows.iter().map(|r| r.p50_us).collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    let worst_max = rows.iter().map(|r| r.max_us).max().unwrap_or(0);
    println!(
        "  multicast pacing at the sender over {} pages of 5 s: interval p50 {:.3} ms, worst p99 {:.3} ms, worst max {:.3} ms; goal p99 within 1 ms of 20 ms: {}",
        rows.len(),
        median_p50 as f64 / 1000.0,
        worst_p99 as f64 / 1000.0,
        worst_max as f64 / 1000.0,
        if worst_p99.abs_diff(20_000) <= 1000 { "met" } else { "not met" }
    );
    println!(
        "  group size: {n} phones in one page, {:.0}x the seed's recipient group of {SEED_GROUP:.0}",
        n as f64 / SEED_GROUP
    );
    drop(sim);
    drop(node);
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
