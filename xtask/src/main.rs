//! `cargo xtask`: project automation. `cargo xtask bench serve` measures start-up, `bench
//! calls` call rates, `profile calls` the instructions ucm spends per call.
//!
//! Benchmarks print figures, never assert on them: speed is measured, not assumed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

mod bench_assistant;
mod bench_cluster;
mod bench_cross_node;
mod bench_em;
mod bench_paging;
mod bench_webdialer;
mod conformance;
mod fuzz;
mod layers;
mod scenario;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["bench", "serve", rest @ ..] => bench_serve(rest),
        ["bench", "calls"] => bench_calls(),
        ["bench", "assistant", rest @ ..] => bench_assistant::bench_assistant(rest),
        ["bench", "cross-node", rest @ ..] => bench_cross_node::bench_cross_node(rest),
        ["bench", "pcap", rest @ ..] => conformance::bench_pcap(rest),
        ["conformance", rest @ ..] => conformance::conformance(rest, false),
        ["golden", rest @ ..] => conformance::conformance(rest, true),
        ["bench", "em", rest @ ..] => {
            release_binary().and_then(|bin| bench_em::bench_em(&bin, spawn_node, gen_cluster, rest))
        }
        ["bench", "cluster", rest @ ..] => {
            release_binary().and_then(|bin| bench_cluster::bench_cluster(&bin, gen_cluster, rest))
        }
        ["bench", "paging", rest @ ..] => {
            release_binary().and_then(|bin| bench_paging::bench_paging(&bin, spawn_node, rest))
        }
        ["profile", "calls", rest @ ..] => profile_calls(rest),
        ["bench", "services", rest @ ..] => bench_services(rest),
        ["bench", "webdialer", rest @ ..] => release_binary()
            .and_then(|bin| bench_webdialer::bench_webdialer(&bin, spawn_node, gen_cluster, rest)),
        ["layers", rest @ ..] => layers::layers(rest),
        ["config-reference"] => {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(ucm::config::reference::REFERENCE_PATH);
            std::fs::write(&path, ucm::services::reference_markdown())
                .with_context(|| path.display().to_string())
                .map(|()| println!("wrote {}", path.display()))
        }
        ["fuzz", rest @ ..] => fuzz::fuzz(rest),
        ["gen-cluster", users, out] => users
            .parse()
            .context("user count")
            .and_then(|n| gen_cluster(n, Path::new(out))),
        _ => {
            eprintln!(
                "usage:\n  cargo xtask conformance [--repeat N] [--set PATH=VALUE].. [NAME..]   run conformance scenarios, verify captures against golden/ and the QoS policy\n  cargo xtask golden [NAME..]            re-record golden/<scenario>/ (ladder.txt, README.md)\n  cargo xtask bench serve [--users N]   start-up time and memory of ucm serve\n  cargo xtask bench calls                highest call rate SIPp sustains direct and through ucm, registrations/s\n  cargo xtask bench cross-node [--debug]  calls/s between phones on two nodes (PostgreSQL) against phones on one node\n  cargo xtask profile calls [N [RATE]]   instructions ucm executes per call, counted by callgrind\n  cargo xtask bench em [--users N]       EM logins + logouts per minute, p50/p99, vs the seed's 250/min\n  cargo xtask bench services [--debug]   services-menu and authentication-URL requests/s on one node\n  cargo xtask bench cluster [--users N] [--seconds S] [--phones P]  two nodes on PostgreSQL behind HAProxy: EM logins/min vs one node and the seed's 375/min, feed p50/p99, phone failover after kill -9\n  cargo xtask bench paging [--phones N]  INVITE to go-ahead for 50 and N (1000) phones, multicast pacing\n  cargo xtask bench assistant [--debug]   calls to a manager per second redirected by Assistant_RP to the proxy line (SIPp), vs the seed's 3,500 managers\n  cargo xtask bench webdialer [--pairs N] [--seconds S]  makeCall calls/s really connected, Redirector requests/s, vs the seed's 4 and 8/s\n  cargo xtask gen-cluster N FILE         write a cluster of N users and N phones\n  cargo xtask config-reference           regenerate fixtures/clusters/REFERENCE.md from the model\n  cargo xtask fuzz [--seconds N] [--runs N] [--keep-corpus] [TARGET..]  run the fuzz targets (cargo-fuzz, nightly), keep fuzz/corpus minimal, fail on a crash\n  cargo xtask layers                     check the import rules between src/'s modules, print the layers"
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
    let (mut node, _ready) = spawn_node(bin, config, dir)?;
    let secs = t0.elapsed().as_secs_f64();
    let pid = node.0.id();
    let hwm = kb_field(pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    let rss = kb_field(pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0;
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    let st = node.0.wait()?;
    if !st.success() {
        bail!("ucm serve exited with {st} after SIGTERM");
    }
    Ok((secs, hwm, rss))
}

/// Starts `ucm serve` on port 0 everywhere and waits (bounded) for its ready line.
fn spawn_node(bin: &Path, config: &Path, data_dir: &Path) -> Result<(Bg, serde_json::Value)> {
    spawn_node_under(&[], bin, config, data_dir)
}

/// Like [`spawn_node`], run under `wrapper` (e.g. valgrind and its options) when not empty.
fn spawn_node_under(
    wrapper: &[&str],
    bin: &Path,
    config: &Path,
    data_dir: &Path,
) -> Result<(Bg, serde_json::Value)> {
    let mut cmd = match wrapper.split_first() {
        Some((prog, args)) => {
            let mut c = Command::new(prog);
            c.args(args).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = cmd
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
            "--tftp-port",
            "0",
            "--sip-port",
            "0",
            "--sips-port",
            "0",
            "--config",
        ])
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .env("UCM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawn ucm serve")?;
    let stdout = child.stdout.take().context("stdout")?;
    let node = Bg(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut l = String::new();
        let _ = BufReader::new(stdout).read_line(&mut l);
        let _ = tx.send(l);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(300))
        .context("no ready line within 300 s")?;
    let v: serde_json::Value =
        serde_json::from_str(&line).with_context(|| format!("unexpected first line: {line}"))?;
    if v["event"] != "ready" {
        bail!("unexpected first line: {line}");
    }
    Ok((node, v))
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
        "  first start (validate + import):        ready in {first:.3} s, peak RSS {hwm1:.1} MiB"
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

/// A background process killed on drop.
pub struct Bg(std::process::Child);
impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs SIPp's uac for `calls` calls at `rate` calls/s against `target`: whether every call
/// succeeded (SIPp exits 0 only then), and the call rate SIPp really achieved.
fn sipp_run(
    uac_ip: &str,
    uac_port: u16,
    target: &str,
    uas: (&str, u16),
    rate: u32,
    calls: u32,
    dir: &Path,
) -> Result<(bool, f64)> {
    let _uas = Bg(Command::new("sipp")
        .args([
            "-sn",
            "uas",
            "-i",
            uas.0,
            "-p",
            &uas.1.to_string(),
            "-nostdin",
            "-timeout",
            "60s",
            "-buff_size",
            "4194304",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start sipp uas (apt-get install sip-tester)")?);
    std::thread::sleep(Duration::from_millis(300));
    let st = Command::new("sipp")
        .args([
            "-sn",
            "uac",
            "-s",
            "3000",
            target,
            "-i",
            uac_ip,
            "-p",
            &uac_port.to_string(),
        ])
        .args([
            "-r",
            &rate.to_string(),
            "-m",
            &calls.to_string(),
            "-l",
            "100000",
            "-nostdin",
            "-timeout",
            "30s",
        ])
        // A call whose messages stop coming fails after 5 s instead of holding the run.
        .args(["-recv_timeout", "5000"])
        .args(["-max_socket", "1000", "-buff_size", "4194304"])
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()
        .context("run sipp uac")?;
    // The final statistics screen: "Call Rate | <period> cps | <cumulative> cps".
    let text = String::from_utf8_lossy(&st.stdout);
    let achieved = sipp_call_rate(&text);
    Ok((st.status.success(), achieved))
}

/// The highest rate with zero failed calls: doubling, then bisecting between the last success
/// and the first failure. Each run is bounded (4 s of calls, at most 20,000).
/// Returns the highest passing target rate and the highest rate SIPp achieved in a passing run
/// (past saturation, asking for more achieves less).
fn max_rate(mut run: impl FnMut(u32) -> Result<(bool, f64)>) -> Result<(u32, f64)> {
    let mut ok = 0;
    let mut achieved = 0.0;
    let mut bad = None;
    let mut rate = 250;
    while rate <= 8000 {
        let (pass, got) = run(rate)?;
        if pass {
            ok = rate;
            achieved = f64::max(achieved, got);
            rate *= 2;
        } else {
            bad = Some(rate);
            break;
        }
    }
    if let Some(mut hi) = bad {
        for _ in 0..3 {
            let mid = (ok + hi) / 2;
            if mid <= ok || mid >= hi {
                break;
            }
            let (pass, got) = run(mid)?;
            if pass {
                ok = mid;
                achieved = f64::max(achieved, got);
            } else {
                hi = mid;
            }
        }
    }
    Ok((ok, achieved))
}

fn bench_calls() -> Result<()> {
    if Command::new("sipp").arg("-v").output().is_err() {
        bail!("sipp is not installed (Debian package sip-tester)");
    }
    let bin = release_binary()?;
    let tmp = std::env::temp_dir().join(format!("ucm-bench-calls-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let calls_for = |rate: u32| (rate * 4).clamp(500, 20_000);
    println!("bench calls: SIPp uac -> uas (built-in scenarios), zero failed calls required");
    let (direct, direct_achieved) = max_rate(|rate| {
        let (ok, got) = sipp_run(
            "127.0.0.70",
            5071,
            "127.0.0.71:5072",
            ("127.0.0.71", 5072),
            rate,
            calls_for(rate),
            &tmp,
        )?;
        println!(
            "  direct      {rate:>5} calls/s asked, {got:>7.0} achieved: {}",
            if ok { "ok" } else { "failures" }
        );
        Ok((ok, got))
    })?;
    // ucm between them: two trunks, a route pattern to the uas.
    let cfg = tmp.join("cluster.yaml");
    std::fs::write(&cfg, TRUNKS_CLUSTER)?;
    let (mut node, ready) = start_node(&bin, &cfg, &tmp)?;
    let sip = ready["sip_udp"].as_str().unwrap_or_default().to_string();
    let pid = node.0.id();
    let (through, through_achieved) = max_rate(|rate| {
        let cpu0 = cpu_ms(pid);
        let t0 = Instant::now();
        let calls = calls_for(rate);
        let (ok, got) = sipp_run(
            "127.0.0.72",
            5071,
            &sip,
            ("127.0.0.73", 5072),
            rate,
            calls,
            &tmp,
        )?;
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_ms(pid) - cpu0;
        // Where the time goes: ucm's own CPU per call (both legs), against the wall clock.
        println!(
            "  through ucm {rate:>5} calls/s asked, {got:>7.0} achieved: {} (ucm CPU {:.0} ms for {calls} calls = {:.0} us/call, {:.0}% of one core)",
            if ok { "ok" } else { "failures" },
            cpu,
            cpu * 1000.0 / f64::from(calls),
            cpu / 10.0 / wall
        );
        Ok((ok, got))
    })?;
    let _ = node.0.kill();
    let _ = node.0.wait();
    println!(
        "  highest rate with zero failed calls (achieved): direct {direct_achieved:.0} calls/s (asked {direct}), through ucm {through_achieved:.0} calls/s (asked {through})"
    );
    if direct_achieved > 0.0 {
        println!(
            "  ucm / direct = {:.2} (goal: at least 0.50)",
            through_achieved / direct_achieved
        );
    }
    let regs = bench_registrations(&bin, &tmp)?;
    println!(
        "  registrations: {regs:.0} per second (SIPp REGISTER, {} devices, SQLite write-behind)",
        5000
    );
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// The cluster of `bench calls` through ucm: a trunk to SIPp's uac, one to its uas, and a
/// route pattern to the uas.
const TRUNKS_CLUSTER: &str = "cluster: {id: bench, name: bench}\nnodes: [{name: n1, address: 127.0.0.1}]\npartitions: [{name: PT}]\ncalling_search_spaces: [{name: CSS, partitions: [PT]}]\ndevice_pools: [{name: DP, node_group: [n1]}]\nsip_trunks:\n  - {name: uac, destinations: [\"127.0.0.72:5071\"], device_pool: DP, css: CSS}\n  - {name: uas, destinations: [\"127.0.0.73:5072\"], device_pool: DP, css: CSS}\nroute_patterns:\n  - {pattern: 3XXX, partition: PT, sip_trunk: uas}\n";

/// Instructions ucm executes per call (both legs, all threads, user space), counted by
/// callgrind: repeatable on a loaded machine where wall-clock rates are not. The node runs
/// under valgrind; counters are zeroed once it is ready, SIPp places `calls` calls at a
/// gentle `rate` through it (as in `bench calls`), and the counters are dumped after the
/// last one. Kernel time (socket calls) is not counted.
fn profile_calls(rest: &[&str]) -> Result<()> {
    let (calls, rate) = match rest {
        [] => (500u32, 25u32),
        [n] => (n.parse().context("calls")?, 25),
        [n, r] => (n.parse().context("calls")?, r.parse().context("rate")?),
        _ => bail!("usage: cargo xtask profile calls [CALLS [RATE]]"),
    };
    if f64::from(calls) / f64::from(rate.max(1)) > 25.0 {
        bail!("SIPp's run is bounded to 30 s: keep CALLS / RATE under 25");
    }
    for tool in ["valgrind", "callgrind_control", "sipp"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            bail!("{tool} is not installed (Debian packages valgrind, sip-tester)");
        }
    }
    let bin = release_binary()?;
    let tmp = std::env::temp_dir().join(format!("ucm-profile-calls-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let cfg = tmp.join("cluster.yaml");
    std::fs::write(&cfg, TRUNKS_CLUSTER)?;
    let out = tmp.join("callgrind.out.%p");
    let out_arg = format!("--callgrind-out-file={}", out.display());
    let (mut node, ready) = spawn_node_under(
        &["valgrind", "-q", "--tool=callgrind", &out_arg],
        &bin,
        &cfg,
        &tmp.join("node"),
    )?;
    let pid = node.0.id().to_string();
    let sip = ready["sip_udp"].as_str().unwrap_or_default().to_string();
    let control = |what: &str| {
        Command::new("callgrind_control")
            .args([what, &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    };
    control("-z")?;
    let (ok, _) = sipp_run(
        "127.0.0.72",
        5071,
        &sip,
        ("127.0.0.73", 5072),
        rate,
        calls,
        &tmp,
    )?;
    std::thread::sleep(Duration::from_secs(1));
    control("-d")?;
    let _ = node.0.kill();
    let _ = node.0.wait();
    if !ok {
        bail!("SIPp reported failed calls under valgrind; try a lower rate");
    }
    let dump = tmp.join(format!("callgrind.out.{pid}.1"));
    let text = std::fs::read_to_string(&dump).with_context(|| dump.display().to_string())?;
    let total: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("totals: "))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no totals line in the callgrind dump")?;
    println!(
        "profile calls: {calls} calls at {rate}/s through ucm under callgrind: {total} instructions, {} per call",
        total / u64::from(calls.max(1))
    );
    println!(
        "  where they go: callgrind_annotate --inclusive=yes {}",
        dump.display()
    );
    Ok(())
}

/// CPU time (user + system) a process has used, in milliseconds.
fn cpu_ms(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |x| x.1);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) * 1000.0 / hz.max(1.0)
}

fn start_node(bin: &Path, cfg: &Path, dir: &Path) -> Result<(Bg, serde_json::Value)> {
    let data = dir.join(format!(
        "node-{}",
        cfg.file_stem().and_then(|s| s.to_str()).unwrap_or("x")
    ));
    spawn_node(bin, cfg, &data)
}

/// Registrations per second: SIPp registers 5,000 generated phones, one REGISTER per call.
fn bench_registrations(bin: &Path, dir: &Path) -> Result<f64> {
    let n = 5000usize;
    let cfg = dir.join("regs.yaml");
    gen_cluster(n, &cfg)?;
    let mut csv = String::from("SEQUENTIAL\n");
    for i in 0..n {
        csv.push_str(&format!(
            "{};{:012x}\n",
            100_000 + i,
            0x0100_0000_0000u64 + i as u64
        ));
    }
    let inf = dir.join("phones.csv");
    std::fs::write(&inf, csv)?;
    let (mut node, ready) = start_node(bin, &cfg, dir)?;
    let sip = ready["sip_udp"].as_str().unwrap_or_default().to_string();
    let scenario = root().join("conformance/sipp/register.xml");
    let t0 = Instant::now();
    let st = Command::new("sipp")
        .args(["-sf"])
        .arg(&scenario)
        .args(["-inf"])
        .arg(&inf)
        .args([
            &sip,
            "-i",
            "127.0.0.74",
            "-p",
            "5075",
            "-r",
            "10000",
            "-m",
            &n.to_string(),
            "-l",
            "2000",
            "-nostdin",
            "-timeout",
            "60s",
            "-buff_size",
            "4194304",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let secs = t0.elapsed().as_secs_f64();
    let _ = node.0.kill();
    let _ = node.0.wait();
    if !st.success() {
        bail!("SIPp REGISTER run had failures");
    }
    Ok(n as f64 / secs)
}

/// One HTTP/1.1 keep-alive connection sending GETs and reading whole responses.
struct KeepAlive {
    stream: std::net::TcpStream,
    host: String,
    buf: Vec<u8>,
}

impl KeepAlive {
    fn connect(addr: &str) -> Result<KeepAlive> {
        let stream =
            std::net::TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(KeepAlive {
            stream,
            host: addr.to_string(),
            buf: Vec::new(),
        })
    }

    /// GET `path`: the status and body.
    fn get(&mut self, path: &str) -> Result<(u16, Vec<u8>)> {
        use std::io::{Read, Write};
        write!(
            self.stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nx-CiscoIPPhoneModelName: CP-8851\r\n\r\n",
            self.host
        )?;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let status: u16 = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .context("status line")?;
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim()
                            .eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .context("a Content-Length (chunked answers are not read here)")?;
                while self.buf.len() < end + 4 + len {
                    let n = self.stream.read(&mut chunk)?;
                    if n == 0 {
                        bail!("connection closed mid-body");
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                let body = self.buf[end + 4..end + 4 + len].to_vec();
                self.buf.drain(..end + 4 + len);
                return Ok((status, body));
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                bail!("connection closed before a response");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Requests per second from `conns` keep-alive connections sending `path` until `max`
/// requests are answered or `limit` passes; every answer is checked with `ok`.
fn http_rate(
    addr: &str,
    path: &str,
    conns: usize,
    max: usize,
    limit: Duration,
    ok: fn(u16, &[u8]) -> bool,
) -> Result<(usize, f64)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let done = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..conns {
        let (addr, path, done) = (addr.to_string(), path.to_string(), done.clone());
        workers.push(std::thread::spawn(move || -> Result<()> {
            let mut c = KeepAlive::connect(&addr)?;
            while t0.elapsed() < limit && done.fetch_add(1, Ordering::Relaxed) < max {
                let (st, body) = c.get(&path)?;
                if !ok(st, &body) {
                    bail!(
                        "unexpected answer to {path}: {st} {}",
                        String::from_utf8_lossy(&body)
                    );
                }
            }
            Ok(())
        }));
    }
    for w in workers {
        w.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    let secs = t0.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed).min(max);
    Ok((n, n as f64 / secs.max(1e-9)))
}

/// Services-menu and authentication-URL requests per second on one node (the demo cluster),
/// bounded in count and time. The baseline is the seed's load warning for the services list,
/// "hundreds of requests per minute or more": 1,000 requests a minute (16.7/s).
fn bench_services(rest: &[&str]) -> Result<()> {
    let bin = match rest {
        ["--debug"] => {
            let st = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "--bin", "ucm"])
                .current_dir(root())
                .status()
                .context("cargo build")?;
            if !st.success() {
                bail!("cargo build failed");
            }
            root().join("target/debug/ucm")
        }
        [] => release_binary()?,
        _ => bail!("usage: cargo xtask bench services [--debug]"),
    };
    let build = if rest.is_empty() { "release" } else { "debug" };
    let tmp = std::env::temp_dir().join(format!("ucm-bench-services-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let config = tmp.join("demo.yaml");
    std::fs::write(&config, ucm::config::DEMO_YAML)?;
    let (mut node, ready) = spawn_node(&bin, &config, &tmp.join("data"))?;
    let http = ready["http"].as_str().unwrap_or_default().to_string();
    let baseline = 1000.0 / 60.0;
    println!(
        "bench services: one node, demo cluster, SQLite, {build} build, 8 keep-alive connections"
    );
    let menu = http_rate(
        &http,
        "/ccmcip/getservicesmenu.jsp?name=SEP00036BC7B973&locale=English_United_States",
        8,
        50_000,
        Duration::from_secs(10),
        |st, b| st == 200 && b.windows(18).any(|w| w == b"<CiscoIPPhoneMenu>"),
    );
    let auth = http_rate(
        &http,
        "/ccmcip/authenticate.jsp?UserID=jsmith&Password=cisco&devicename=SEP00036BC7B973",
        8,
        2_000,
        Duration::from_secs(10),
        |st, b| st == 200 && b == b"AUTHORIZED",
    );
    let _ = node.0.kill();
    let _ = node.0.wait();
    let _ = std::fs::remove_dir_all(&tmp);
    let (n, rate) = menu?;
    println!(
        "  services menu (getservicesmenu.jsp):   {rate:>9.0} requests/s ({n} requests), {:.0}x the baseline of {baseline:.1}/s",
        rate / baseline
    );
    let (n, rate) = auth?;
    println!(
        "  authentication URL (checks cached):     {rate:>9.0} requests/s ({n} requests), {:.1}x the baseline of {baseline:.1}/s",
        rate / baseline
    );
    println!("  baseline: the seed's load warning for the services list, 1,000 requests a minute");
    Ok(())
}

/// The cumulative call rate on SIPp's final statistics screen
/// ("Call Rate | <period> cps | <cumulative> cps"); 0 when there is none.
pub fn sipp_call_rate(stdout: &str) -> f64 {
    stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("Call Rate"))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|v| v.trim().trim_end_matches("cps").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}
