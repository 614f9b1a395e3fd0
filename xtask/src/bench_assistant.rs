//! `cargo xtask bench assistant [--debug]`: calls to a manager per second that the Assistant
//! route point intercepts and redirects to the assistant's proxy line, where they ring and are
//! answered, with zero failed calls. SIPp's uac calls 60001 through a trunk; the route point
//! `6XXXX` is offered each call, the Assistant service reads the manager's state from the
//! database and redirects the call to the proxy line 39001, registered by SIPp (the assistant's
//! phone) and answered by SIPp's uas.
//!
//! The seed gives the Assistant's capacity in users (3,500 managers per cluster), not in calls.
//! The comparison: every one of 3,500 managers receiving 6 calls in the busy hour (the seed's
//! per-user BHCA in its WebDialer sizing example; UNCONFIRMED as a figure for managers) is
//! 3,500 × 6 / 3,600 = 5.8 calls/s for the whole cluster's Assistant servers.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{max_rate, root, sipp_call_rate, spawn_node, Bg};

/// The seed's managers per cluster times its busy-hour calls per user, per second.
const SEED_CALLS_PER_SECOND: f64 = 3500.0 * 6.0 / 3600.0;

const CLUSTER: &str = r#"cluster: {id: bench-assistant, name: bench-assistant}
nodes: [{name: n1, address: 127.0.0.1, services: [call-processing, assistant]}]
partitions: [{name: PT}, {name: RP_PT}, {name: MGR}]
calling_search_spaces:
  - {name: CSS, partitions: [RP_PT, PT]}
  - {name: MCSS, partitions: [MGR, PT]}
device_pools: [{name: DP, node_group: [n1]}]
sip_trunks:
  - {name: uac, destinations: ["127.0.0.76:5071"], device_pool: DP, css: CSS}
directory_numbers:
  - {pattern: "6XXXX", partition: RP_PT, css: MCSS}
  - {pattern: "60001", partition: MGR}
  - {pattern: "39001", partition: PT, css: MCSS, max_calls: 200, busy_trigger: 200}
route_points:
  - {name: Assistant_RP, device_pool: DP, css: MCSS, lines: [{dn: "6XXXX", partition: RP_PT}]}
devices:
  - {name: SEP000000000001, model: Cisco 8845, device_pool: DP, css: CSS, owner: manager1, lines: [{dn: "60001", partition: MGR}]}
  - {name: SEP000000000002, model: Cisco 8845, device_pool: DP, css: CSS, owner: assistant1, lines: [{dn: "39001", partition: PT}]}
end_users:
  - {userid: manager1, last_name: One}
  - {userid: assistant1, last_name: One}
assistant:
  route_point: Assistant_RP
  managers:
    - {user: manager1, line: "60001", assistants: [{user: assistant1, proxy_line: "39001"}]}
"#;

pub fn bench_assistant(rest: &[&str]) -> Result<()> {
    if Command::new("sipp").arg("-v").output().is_err() {
        bail!("sipp is not installed (Debian package sip-tester)");
    }
    let (bin, build) = match rest {
        ["--debug"] => {
            let st = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "--bin", "ucm"])
                .current_dir(root())
                .status()
                .context("cargo build")?;
            if !st.success() {
                bail!("cargo build failed");
            }
            (root().join("target/debug/ucm"), "debug")
        }
        [] => (super::release_binary()?, "release"),
        _ => bail!("usage: cargo xtask bench assistant [--debug]"),
    };
    let tmp = std::env::temp_dir().join(format!("ucm-bench-assistant-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let cfg = tmp.join("cluster.yaml");
    std::fs::write(&cfg, CLUSTER)?;
    let (_node, ready) = spawn_node(&bin, &cfg, &tmp.join("node"))?;
    let sip = ready["sip_udp"].as_str().unwrap_or_default().to_string();
    println!("bench assistant ({build} build): SIPp uac -> 60001 -> Assistant_RP -> proxy line 39001 (SIPp uas), zero failed calls required");
    let (asked, achieved) = max_rate(|rate| {
        let calls = (rate * 4).clamp(500, 20_000);
        let (ok, got) = run(&sip, rate, calls, &tmp)?;
        println!(
            "  {rate:>5} calls/s asked, {got:>7.0} achieved: {}",
            if ok { "ok" } else { "failures" }
        );
        Ok((ok, got))
    })?;
    println!("  highest rate with zero failed calls: {achieved:.0} redirects/s (asked {asked})");
    println!(
        "  against the seed's 3,500 managers x 6 busy-hour calls = {SEED_CALLS_PER_SECOND:.1} calls/s: {:.0}x",
        achieved / SEED_CALLS_PER_SECOND
    );
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// Registers the assistant's phone (SIPp, the proxy line's contact 127.0.0.75:5072), starts
/// the uas there and runs `calls` calls at `rate` from the uac. (passed, achieved rate)
fn run(sip: &str, rate: u32, calls: u32, dir: &Path) -> Result<(bool, f64)> {
    let inf = dir.join("assistant.csv");
    std::fs::write(&inf, "SEQUENTIAL\n39001;000000000002\n")?;
    let st = Command::new("sipp")
        .arg("-sf")
        .arg(root().join("conformance/sipp/register.xml"))
        .arg("-inf")
        .arg(&inf)
        .args([
            sip,
            "-i",
            "127.0.0.75",
            "-p",
            "5072",
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "10s",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("run sipp (register)")?;
    if !st.success() {
        bail!("SIPp could not register the assistant's phone");
    }
    let _uas = Bg(Command::new("sipp")
        .args([
            "-sn",
            "uas",
            "-i",
            "127.0.0.75",
            "-p",
            "5072",
            "-nostdin",
            "-timeout",
            "60s",
        ])
        .args(["-buff_size", "4194304"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start sipp uas")?);
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("sipp")
        .args([
            "-sn",
            "uac",
            "-s",
            "60001",
            sip,
            "-i",
            "127.0.0.76",
            "-p",
            "5071",
        ])
        .args([
            "-r",
            &rate.to_string(),
            "-m",
            &calls.to_string(),
            "-l",
            "100000",
        ])
        .args(["-nostdin", "-timeout", "30s", "-recv_timeout", "5000"])
        .args(["-max_socket", "1000", "-buff_size", "4194304"])
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()
        .context("run sipp uac")?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok((out.status.success(), sipp_call_rate(&text)))
}
