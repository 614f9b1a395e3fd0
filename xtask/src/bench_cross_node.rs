//! `cargo xtask bench cross-node`: calls per second between phones registered with two nodes
//! of a cluster (signalling over the intra-cluster trunk) against phones registered with one
//! node, with SIPp, on a fresh PostgreSQL database (`UCM_TEST_PG_URL`, else the local server).
//!
//! The nodes are ucm-pub and ucm-sub1 of `fixtures/clusters/three-nodes.yaml` moved to
//! 127.70.0.1 and 127.70.0.2 (SIP on 5060 of each). SIPp's uac is line 10001 registered with
//! ucm-pub; SIPp's uas is line 10002, registered with ucm-sub1 for the cross-node runs and with
//! ucm-pub for the one-node runs. Both lines may carry 200 calls at once.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{cpu_ms, max_rate, root, Bg};

const USAGE: &str = "usage: cargo xtask bench cross-node [--debug]";
const UAC: (&str, u16) = ("127.70.0.11", 5071);
const UAS: (&str, u16) = ("127.70.0.12", 5072);
const PUB_SIP: &str = "127.70.0.1:5060";
const SUB1_SIP: &str = "127.70.0.2:5060";

pub fn bench_cross_node(rest: &[&str]) -> Result<()> {
    let debug = match rest {
        [] => false,
        ["--debug"] => true,
        _ => bail!(USAGE),
    };
    if Command::new("sipp").arg("-v").output().is_err() {
        bail!("sipp is not installed (Debian package sip-tester)");
    }
    let bin = if debug {
        let st = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--bin", "ucm"])
            .current_dir(root())
            .status()
            .context("cargo build")?;
        if !st.success() {
            bail!("cargo build failed");
        }
        root().join("target/debug/ucm")
    } else {
        crate::release_binary()?
    };
    let admin = std::env::var("UCM_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let name = format!("ucm_bench_xnode_{}", std::process::id());
    psql(&admin, &format!("CREATE DATABASE {name}"))?;
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |x| x.0);
    let url = format!("{base}/{name}");
    let tmp = std::env::temp_dir().join(format!("ucm-bench-xnode-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let r = run(&bin, &url, &tmp, if debug { "debug" } else { "release" });
    let _ = psql(
        &admin,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
    let _ = std::fs::remove_dir_all(&tmp);
    r
}

fn psql(url: &str, sql: &str) -> Result<()> {
    let st = Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .status()
        .context("run psql (Debian package postgresql-client)")?;
    if !st.success() {
        bail!("psql failed: {sql}");
    }
    Ok(())
}

fn run(bin: &Path, url: &str, tmp: &Path, build: &str) -> Result<()> {
    let mut def = std::fs::read_to_string(root().join("fixtures/clusters/three-nodes.yaml"))?;
    for h in 1..=3 {
        def = def.replace(
            &format!("    address: 127.0.0.{h}\n    bind: 127.0.0.{h}\n"),
            &format!("    address: 127.70.0.{h}\n    bind: 127.70.0.{h}\n"),
        );
    }
    for dn in ["10001", "10002"] {
        def = def.replace(
            &format!("  - pattern: \"{dn}\"\n    partition: Internal_PT\n"),
            &format!("  - pattern: \"{dn}\"\n    partition: Internal_PT\n    max_calls: 200\n    busy_trigger: 200\n"),
        );
    }
    let cfg = tmp.join("cluster.yaml");
    std::fs::write(&cfg, def)?;
    // The nodes start one after the other: the first imports the definition.
    let pubn = spawn(bin, &cfg, url, "ucm-pub", tmp)?;
    let sub1 = spawn(bin, &cfg, url, "ucm-sub1", tmp)?;
    let pids = [pubn.0.id(), sub1.0.id()];
    register(UAC, "10001", "00036bc7b973", PUB_SIP)?;
    // SIPp's uac as line 10001 (the built-in scenario's From user is "sipp").
    let out = Command::new("sipp")
        .args(["-sd", "uac"])
        .output()
        .context("sipp -sd uac")?;
    let scenario = tmp.join("uac.xml");
    std::fs::write(
        &scenario,
        String::from_utf8_lossy(&out.stdout).replace("sip:sipp@", "sip:10001@"),
    )?;
    println!("bench cross-node: SIPp uac (line 10001 on ucm-pub) -> uas (line 10002), two nodes on PostgreSQL, {build} build, zero failed calls required");
    let measure = |label: &str, callee_node: &str| {
        max_rate(|rate| {
            register(UAS, "10002", "00036bc7b974", callee_node)?;
            // The other node learns the registration through the change feed.
            std::thread::sleep(Duration::from_secs(1));
            let cpu0: f64 = pids.iter().map(|p| cpu_ms(*p)).sum();
            let calls = (rate * 4).clamp(500, 20_000);
            let (ok, got) = sipp(&scenario, rate, calls, tmp)?;
            let cpu: f64 = pids.iter().map(|p| cpu_ms(*p)).sum::<f64>() - cpu0;
            println!(
                "  {label:<10} {rate:>5} calls/s asked, {got:>7.0} achieved: {} (CPU of both nodes {:.0} us/call)",
                if ok { "ok" } else { "failures" },
                cpu * 1000.0 / f64::from(calls)
            );
            Ok((ok, got))
        })
    };
    let (_, one) = measure("one node", PUB_SIP)?;
    let (_, two) = measure("two nodes", SUB1_SIP)?;
    println!("  highest rate with zero failed calls (achieved): one node {one:.0} calls/s, across two nodes {two:.0} calls/s");
    if one > 0.0 {
        println!("  across / one node = {:.2}", two / one);
    }
    drop((pubn, sub1));
    Ok(())
}

fn spawn(bin: &Path, cfg: &Path, url: &str, node: &str, tmp: &Path) -> Result<Bg> {
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(cfg)
        .args(["--db", url, "--node", node])
        .args([
            "--http-port",
            "0",
            "--https-port",
            "0",
            "--tftp-http-port",
            "0",
        ])
        .args(["--tftp-port", "0", "--sips-port", "0", "--data-dir"])
        .arg(tmp.join(node))
        .env("UCM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("spawn ucm serve")?;
    let stdout = child.stdout.take().context("stdout")?;
    let bg = Bg(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut l = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut l);
        let _ = tx.send(l);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(300))
        .with_context(|| format!("{node}: no ready line within 300 s"))?;
    if !line.contains("\"ready\"") {
        bail!("{node}: unexpected first line: {line}");
    }
    Ok(bg)
}

/// Registers `dn` of the phone with MAC `mac` from `from` (the address SIPp then uses) with
/// the node at `node`.
fn register(from: (&str, u16), dn: &str, mac: &str, node: &str) -> Result<()> {
    let sock = UdpSocket::bind((from.0, from.1)).with_context(|| format!("bind {from:?}"))?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let (ip, port) = from;
    let msg = format!(
        "REGISTER sip:{node} SIP/2.0\r\nVia: SIP/2.0/UDP {ip}:{port};branch=z9hG4bK{mac}{r}\r\nFrom: <sip:{dn}@{node}>;tag=r{mac}\r\nTo: <sip:{dn}@{node}>\r\nCall-ID: bench-reg-{mac}-{r}\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\nContact: <sip:{dn}@{ip}:{port};transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-{mac}>\";expires=3600\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n",
        r = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    let to: SocketAddr = node.parse()?;
    sock.send_to(msg.as_bytes(), to)?;
    let mut buf = [0u8; 4096];
    let (n, _) = sock
        .recv_from(&mut buf)
        .with_context(|| format!("no answer to REGISTER from {node}"))?;
    let reply = String::from_utf8_lossy(&buf[..n]);
    if !reply.starts_with("SIP/2.0 200") {
        bail!(
            "REGISTER {dn} at {node}: {}",
            reply.lines().next().unwrap_or("")
        );
    }
    Ok(())
}

/// One run: SIPp's uas answers as line 10002, the uac calls it through ucm-pub.
fn sipp(scenario: &Path, rate: u32, calls: u32, dir: &Path) -> Result<(bool, f64)> {
    let _uas = Bg(Command::new("sipp")
        .args(["-sn", "uas", "-i", UAS.0, "-p", &UAS.1.to_string()])
        .args(["-nostdin", "-timeout", "60s", "-buff_size", "4194304"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start sipp uas")?);
    std::thread::sleep(Duration::from_millis(300));
    let st = Command::new("sipp")
        .arg("-sf")
        .arg(scenario)
        .args([
            "-s",
            "10002",
            PUB_SIP,
            "-i",
            UAC.0,
            "-p",
            &UAC.1.to_string(),
        ])
        .args(["-r", &rate.to_string(), "-m", &calls.to_string()])
        .args(["-l", "100000", "-nostdin", "-timeout", "30s"])
        .args(["-recv_timeout", "5000", "-buff_size", "4194304"])
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()
        .context("run sipp uac")?;
    let text = String::from_utf8_lossy(&st.stdout);
    let achieved = crate::sipp_call_rate(&text);
    Ok((st.status.success(), achieved))
}
