//! `cargo xtask`: project automation. `cargo xtask bench serve` measures start-up.
//!
//! Benchmarks print figures, never assert on them: speed is measured, not assumed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["bench", "serve", rest @ ..] => bench_serve(rest),
        ["gen-cluster", users, out] => users
            .parse()
            .context("user count")
            .and_then(|n| gen_cluster(n, Path::new(out))),
        _ => {
            eprintln!(
                "usage:\n  cargo xtask bench serve [--users N]   start-up time and memory of ucm serve\n  cargo xtask gen-cluster N FILE         write a cluster of N users and N phones"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = r {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Writes a cluster of `n` end users, each with a phone and a DN, and an EM profile each.
/// Secrets are argon2 hashes made once and shared (bench data, not a real cluster).
fn gen_cluster(n: usize, out: &Path) -> Result<()> {
    use std::fmt::Write;
    let pw = ucm::auth::hash_secret("cisco");
    let pin = ucm::auth::hash_secret("12345");
    let mut y = String::with_capacity(n * 700);
    y.push_str(
        "cluster:\n  id: bench\n  name: Bench Cluster\nnodes:\n  - name: ucm-pub\n    address: 127.0.0.1\n    services: [call-processing, tftp, phone-services, extension-mobility, em-application, webdialer]\n\
partitions:\n  - name: Internal_PT\ncalling_search_spaces:\n  - name: Internal_CSS\n    partitions: [Internal_PT]\n\
device_pools:\n  - name: DP\n    node_group: [ucm-pub]\n\
phone_services:\n  - name: Extension Mobility\n    url: \"{http}/emapp/EMAppServlet?device=#DEVICENAME#\"\n    enterprise_subscription: true\n",
    );
    y.push_str("directory_numbers:\n");
    for i in 0..n {
        let _ = writeln!(
            y,
            "  - pattern: \"{}\"\n    partition: Internal_PT",
            100_000 + i
        );
    }
    y.push_str("devices:\n");
    for i in 0..n {
        let _ = writeln!(
            y,
            "  - name: SEP{:012X}\n    model: Cisco 8845\n    device_pool: DP\n    css: Internal_CSS\n    owner: user{i}\n    em_enabled: true\n    lines:\n      - dn: \"{}\"\n        partition: Internal_PT",
            0x0100_0000_0000u64 + i as u64,
            100_000 + i
        );
    }
    y.push_str("device_profiles:\n");
    for i in 0..n {
        let _ = writeln!(
            y,
            "  - name: user{i}-udp\n    lines:\n      - dn: \"{}\"\n        partition: Internal_PT",
            100_000 + i
        );
    }
    y.push_str("end_users:\n");
    for i in 0..n {
        let _ = writeln!(
            y,
            "  - userid: user{i}\n    first_name: User\n    last_name: Number{i}\n    password_hash: \"{pw}\"\n    pin_hash: \"{pin}\"\n    associated_devices: [SEP{:012X}]\n    primary_extension: {{ dn: \"{}\", partition: Internal_PT }}\n    device_profiles: [user{i}-udp]\n    default_profile: user{i}-udp",
            0x0100_0000_0000u64 + i as u64,
            100_000 + i
        );
    }
    y.push_str(
        "application_users:\n  - userid: emproxy\n    password: emproxy\n    roles: [em-proxy]\n",
    );
    std::fs::write(out, y).with_context(|| out.display().to_string())?;
    Ok(())
}

fn release_binary() -> Result<PathBuf> {
    let st = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--bin", "ucm"])
        .current_dir(root())
        .status()
        .context("cargo build --release")?;
    if !st.success() {
        bail!("cargo build --release failed");
    }
    Ok(root().join("target/release/ucm"))
}

fn kb_field(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// One start: seconds to the ready line, peak and current RSS in MiB.
fn start_once(bin: &Path, config: &Path, dir: &Path) -> Result<(f64, f64, f64)> {
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--bind",
            "127.0.0.1",
            "--http-port",
            "0",
            "--https-port",
            "0",
            "--tftp-http-port",
            "0",
            "--sip-port",
            "0",
            "--sips-port",
            "0",
            "--config",
        ])
        .arg(config)
        .arg("--data-dir")
        .arg(dir)
        .env("UCM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawn ucm serve")?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut l = String::new();
        let _ = BufReader::new(stdout).read_line(&mut l);
        let _ = tx.send(l);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(300))
        .context("no ready line within 300 s")?;
    let secs = t0.elapsed().as_secs_f64();
    if !line.contains("\"ready\"") {
        let _ = child.kill();
        bail!("unexpected first line: {line}");
    }
    let pid = child.id();
    let hwm = kb_field(pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    let rss = kb_field(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0;
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    let st = child.wait()?;
    if !st.success() {
        bail!("ucm serve exited with {st} after SIGTERM");
    }
    Ok((secs, hwm, rss))
}

fn bench_serve(rest: &[&str]) -> Result<()> {
    let users = match rest {
        ["--users", n] => n.parse().context("--users")?,
        [] => 10_000,
        _ => bail!("usage: cargo xtask bench serve [--users N]"),
    };
    let bin = release_binary()?;
    let tmp = std::env::temp_dir().join(format!("ucm-bench-serve-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let config = tmp.join("cluster.yaml");
    gen_cluster(users, &config)?;
    let size = std::fs::metadata(&config)?.len() as f64 / 1e6;
    println!("bench serve: cluster of {users} users and {users} phones ({size:.1} MB of YAML), SQLite, release build");
    let (first, hwm1, _) = start_once(&bin, &config, &tmp)?;
    println!(
        "  first start (validate + import + load): ready in {first:.3} s, peak RSS {hwm1:.1} MiB"
    );
    let (second, hwm2, rss2) = start_once(&bin, &config, &tmp)?;
    println!("  restart, same definition (load only):   ready in {second:.3} s, peak RSS {hwm2:.1} MiB, RSS at ready {rss2:.1} MiB");
    let goal = 2.0;
    println!(
        "  goal: ready in under {goal:.1} s -> first start {:.2}x the goal's time, restart {:.2}x ({})",
        first / goal,
        second / goal,
        if first < goal && second < goal { "met" } else { "not met" }
    );
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
