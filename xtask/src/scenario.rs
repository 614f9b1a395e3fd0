//! The conformance scenario runner: reads `conformance/scenarios/<name>.yaml`, starts a fresh
//! `ucm serve` on the scenario's cluster fixture (temporary data directory, in-memory SQLite,
//! port 0 everywhere), captures its traffic on `lo` with tcpdump, runs the scenario's actors
//! and steps (simulated phones, SIPp, ucm client subcommands), stops everything, and checks the
//! capture with `ucm pcap verify --policy conformance/qos-policy.yaml --golden
//! golden/<name>/`. The file format is documented in `conformance/README.md`.
//!
//! This file depends on nothing of xtask's: the integration tests include it too
//! (`tests/it/conformance.rs`), so CI runs the scenarios with `cargo test`.
//!
//! Every process it starts is killed when the run ends, whatever happens (each is held by a
//! guard that kills and reaps it on drop), every wait has a deadline, and the whole scenario
//! has one (`timeout_s`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// One scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// What the scenario does, in a sentence or two.
    pub description: String,
    /// The cluster definition `ucm serve` starts with, relative to the repository root (one
    /// cluster; `clusters` for several).
    #[serde(default)]
    pub cluster: Option<String>,
    /// Several clusters, each its own `ucm serve` with its own database (EMCC: a home and a
    /// visiting cluster), started in this order; the first is the one the unnamed placeholders
    /// (`{http}`...) and phones without `cluster` use.
    #[serde(default)]
    pub clusters: Vec<ClusterActor>,
    /// Start an OpenSSH sftp server on loopback for the steps (`ucm emcc sync-certs`):
    /// placeholders `{sftp}`, `{sftp_identity}`, `{sftp_known_hosts}`.
    #[serde(default)]
    pub sftp: bool,
    /// The QoS policy the capture is checked against, relative to the repository root
    /// (default `conformance/qos-policy.yaml`).
    #[serde(default)]
    pub policy: Option<String>,
    /// Seconds the whole scenario may take (start, steps, stop, verify).
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// Simulated phones (`ucm phone sim`), started in this order before the steps.
    #[serde(default)]
    pub phones: Vec<PhoneActor>,
    /// What happens, in order.
    pub steps: Vec<Step>,
    /// What the capture must show.
    #[serde(default)]
    pub expect: Expect,
}

fn default_timeout() -> u64 {
    90
}

/// One cluster of a scenario with several.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterActor {
    /// Its name in placeholders (`{http:NAME}`) and phones' `cluster`.
    pub name: String,
    /// Its definition, relative to the repository root.
    pub cluster: String,
    /// The address its node listens on (127.0.0.0/8; the definition's node address).
    #[serde(default = "default_bind")]
    pub bind: String,
    /// Overrides `PATH=VALUE` of the definition, like `--set`; `{https_addr:NAME}` in a value
    /// is another cluster's HTTPS address (chosen before any starts).
    #[serde(default)]
    pub set: Vec<String>,
}

fn default_bind() -> String {
    "127.0.0.1".into()
}

/// A simulated phone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneActor {
    /// Device name (`SEP<MAC>`) in the cluster.
    pub device: String,
    /// The cluster it starts at (a name under `clusters`; default the first).
    #[serde(default)]
    pub cluster: Option<String>,
    /// More `ucm phone sim` options (`--auto-answer`, `--model CP-7841`...).
    #[serde(default)]
    pub args: Vec<String>,
}

/// One step.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Run `ucm ARGS...` (a client subcommand) to completion.
    Ucm(UcmStep),
    /// Run a SIPp scenario (`sipp -sf FILE`) against the node's SIP address.
    Sipp(SippStep),
    /// Poll a phone's `GET /state` until every pointer holds its value.
    Wait(WaitStep),
    /// Stop a phone now (SIGTERM: it unregisters its lines and exits).
    StopPhone(String),
    /// Let time pass (audio flowing, timers...), in milliseconds.
    SleepMs(u64),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UcmStep {
    /// The arguments after `ucm`; placeholders are replaced (see the README).
    pub args: Vec<String>,
    /// Environment variables for it (passwords: `UCM_PASSWORD`...).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Expected exit code.
    #[serde(default)]
    pub exit: i32,
    /// Strings its stdout must contain.
    #[serde(default)]
    pub stdout_contains: Vec<String>,
    #[serde(default = "default_step_timeout")]
    pub timeout_s: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SippStep {
    /// SIPp scenario XML, relative to the repository root.
    pub scenario: String,
    /// Lines of the injection file (`-inf`), `;`-separated fields.
    #[serde(default)]
    pub inject: Vec<String>,
    /// Calls to make (`-m`).
    #[serde(default = "one")]
    pub calls: u32,
    /// Expected exit code (SIPp exits 0 only when every call succeeded).
    #[serde(default)]
    pub exit: i32,
    #[serde(default = "default_step_timeout")]
    pub timeout_s: u64,
}

fn one() -> u32 {
    1
}

fn default_step_timeout() -> u64 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitStep {
    /// The phone (device name).
    pub phone: String,
    /// JSON pointer -> expected value. A string `">=N"` means a number at least N; anything
    /// else must be equal.
    pub state: BTreeMap<String, Value>,
    #[serde(default = "default_wait")]
    pub timeout_s: u64,
}

fn default_wait() -> u64 {
    10
}

/// What the capture must show besides the golden ladder, the policy and valid XML.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Traffic classes that must be in the capture (as audited flows): `sip`, `voice`, `http`...
    #[serde(default)]
    pub classes: Vec<String>,
    /// At least this many XML documents checked (CiscoIPPhone objects, EM API messages...).
    #[serde(default)]
    pub xml_documents_min: u64,
    /// Root elements that must be among the XML documents found (`CiscoIPPhoneExecute`...).
    #[serde(default)]
    pub xml_roots: Vec<String>,
    /// Audited flows that must be in the capture between two addresses, with their class
    /// (the EMCC inter-cluster API between the two clusters' nodes...).
    #[serde(default)]
    pub flows_between: Vec<FlowBetween>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowBetween {
    /// The sending address.
    pub from: std::net::IpAddr,
    /// The receiving address.
    pub to: std::net::IpAddr,
    /// Its traffic class.
    pub class: String,
}

/// How a run is done.
#[derive(Debug, Clone)]
pub struct Options {
    /// Repository root (scenario, fixture, policy and golden paths are relative to it).
    pub root: PathBuf,
    /// The `ucm` binary.
    pub ucm: PathBuf,
    /// Cluster overrides `PATH=VALUE` (dotted path, YAML value), applied to the fixture.
    pub set: Vec<String>,
    /// Record the golden ladder instead of comparing with it.
    pub bless: bool,
    /// Third octet of the phones' loopback network 127.77.N.0/24 (distinct per concurrent run).
    pub net: u8,
}

/// The outcome of one scenario.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    pub passed: bool,
    /// Why it failed (each line names the step, flow, frame or element), empty when it passed.
    pub reasons: Vec<String>,
    pub seconds: f64,
}

/// The scenario names under `conformance/scenarios/`, sorted.
pub fn list(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("conformance/scenarios");
    let mut names = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "yaml") {
            if let Some(s) = p.file_stem() {
                names.push(s.to_string_lossy().into_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Reads and checks a scenario file.
pub fn load_path(path: &Path) -> Result<Scenario> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let s: Scenario =
        serde_saphyr::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    for st in &s.steps {
        let phone = match st {
            Step::Wait(w) => Some(&w.phone),
            Step::StopPhone(p) => Some(p),
            _ => None,
        };
        if let Some(p) = phone {
            if !s.phones.iter().any(|a| &a.device == p) {
                bail!(
                    "{}: step names phone {p}, which is not under phones",
                    path.display()
                );
            }
        }
    }
    if s.phones.len() > 200 {
        bail!("{}: at most 200 phones", path.display());
    }
    match (&s.cluster, s.clusters.len()) {
        (Some(_), 0) => {}
        (None, 1..=4) => {}
        (None, 0) => bail!("{}: neither cluster nor clusters", path.display()),
        (Some(_), _) => bail!("{}: cluster and clusters both given", path.display()),
        (None, _) => bail!("{}: at most 4 clusters", path.display()),
    }
    let mut names = std::collections::BTreeSet::new();
    for c in &s.clusters {
        if !names.insert(c.name.as_str()) {
            bail!("{}: cluster {} named twice", path.display(), c.name);
        }
        match c.bind.parse::<Ipv4Addr>() {
            Ok(a) if a.is_loopback() => {}
            _ => bail!(
                "{}: cluster {}: bind {} is not an address in 127.0.0.0/8",
                path.display(),
                c.name,
                c.bind
            ),
        }
    }
    for p in &s.phones {
        if let Some(c) = &p.cluster {
            if !names.contains(c.as_str()) {
                bail!(
                    "{}: phone {} names cluster {c}, which is not under clusters",
                    path.display(),
                    p.device
                );
            }
        }
    }
    Ok(s)
}

/// Runs one scenario: never panics, always stops what it started.
pub fn run(name: &str, opts: &Options) -> Outcome {
    run_path(
        name,
        &opts
            .root
            .join("conformance/scenarios")
            .join(format!("{name}.yaml")),
        opts,
    )
}

/// Runs the scenario file `path` under the name `name` (its golden is `golden/<name>/`).
pub fn run_path(name: &str, path: &Path, opts: &Options) -> Outcome {
    let t0 = Instant::now();
    let (passed, reasons) = match load_path(path).and_then(|s| run_loaded(name, &s, opts)) {
        Ok(reasons) => (reasons.is_empty(), reasons),
        Err(e) => (false, vec![format!("{e:#}")]),
    };
    Outcome {
        name: name.to_string(),
        passed,
        reasons,
        seconds: t0.elapsed().as_secs_f64(),
    }
}

/// A child process killed (SIGKILL) and reaped when dropped, unless already stopped.
struct Proc {
    what: String,
    child: Option<Child>,
}

impl Proc {
    fn new(what: &str, child: Child) -> Proc {
        Proc {
            what: what.to_string(),
            child: Some(child),
        }
    }

    /// Sends `sig`, waits up to `grace` for the exit, then kills. Returns the exit code.
    fn stop(&mut self, sig: libc::c_int, grace: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, sig);
        }
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(st)) => return st.code(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads the first stdout line of `proc` within `timeout`.
fn first_line(p: &mut Proc, timeout: Duration) -> Result<String> {
    let out = p
        .child
        .as_mut()
        .and_then(|c| c.stdout.take())
        .context("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut l = String::new();
        let _ = r.read_line(&mut l);
        let _ = tx.send(l);
        // Keep draining so the child never blocks on a full pipe.
        let mut sink = Vec::new();
        let _ = r.read_to_end(&mut sink);
    });
    match rx.recv_timeout(timeout) {
        Ok(l) if !l.trim().is_empty() => Ok(l),
        Ok(_) => bail!("{} exited before it was ready", p.what),
        Err(_) => bail!("{} was not ready within {} s", p.what, timeout.as_secs()),
    }
}

fn read_tail(path: &Path, lines: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

struct Run<'a> {
    opts: &'a Options,
    work: PathBuf,
    /// The first cluster's node's addresses (its ready line).
    node: BTreeMap<String, String>,
    /// Every cluster's, by name.
    nodes: BTreeMap<String, BTreeMap<String, String>>,
    /// The first cluster's name.
    main: String,
    /// `{sftp}`, `{sftp_identity}`, `{sftp_known_hosts}` when the scenario has the server.
    sftp: Option<BTreeMap<String, String>>,
    phones: BTreeMap<String, (Proc, SocketAddr, Ipv4Addr)>,
    deadline: Instant,
    /// The address the harness polls phones from: left out of the capture.
    poller: Ipv4Addr,
}

fn run_loaded(name: &str, s: &Scenario, opts: &Options) -> Result<Vec<String>> {
    let work = std::env::temp_dir().join(format!(
        "ucm-conformance-{name}-{}-{}",
        std::process::id(),
        opts.net
    ));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| work.display().to_string())?;
    let r = run_in(name, s, opts, &work);
    // The capture can be large (audio): it goes with the rest.
    let keep = std::env::var_os("UCM_CONFORMANCE_KEEP").is_some();
    if keep {
        eprintln!("conformance: {name}: work files kept in {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    r
}

impl Scenario {
    /// The clusters to start, in order (one unnamed `cluster` is named `cluster`).
    pub fn cluster_actors(&self) -> Vec<ClusterActor> {
        match &self.cluster {
            Some(c) => vec![ClusterActor {
                name: "cluster".into(),
                cluster: c.clone(),
                bind: default_bind(),
                set: Vec::new(),
            }],
            None => self
                .clusters
                .iter()
                .map(|c| ClusterActor {
                    name: c.name.clone(),
                    cluster: c.cluster.clone(),
                    bind: c.bind.clone(),
                    set: c.set.clone(),
                })
                .collect(),
        }
    }
}

/// A started node: its process, its ready line's addresses, its log, its bind address.
struct Node {
    serve: Proc,
    addrs: BTreeMap<String, String>,
    log: PathBuf,
    bind: String,
}

/// A free TCP port on `ip` (for a node whose address another cluster's definition names
/// before it starts).
fn free_port(ip: &str) -> Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))
        .with_context(|| format!("bind {ip}:0"))?
        .local_addr()?
        .port())
}

/// Starts `ucm serve` on `cluster` (in-memory SQLite, port 0 everywhere but HTTPS) and reads
/// its ready line.
fn start_node(
    opts: &Options,
    name: &str,
    cluster: &Path,
    bind: &str,
    https_port: u16,
    work: &Path,
) -> Result<Node> {
    let data = work.join(format!("data-{name}"));
    std::fs::create_dir_all(&data)?;
    let serve_log = work.join(format!("serve-{name}.log"));
    let child = Command::new(&opts.ucm)
        .args(["serve", "--bind", bind, "--db", "sqlite::memory:"])
        .args([
            "--http-port",
            "0",
            "--https-port",
            &https_port.to_string(),
            "--tftp-http-port",
            "0",
        ])
        .args(["--tftp-port", "0", "--sip-port", "0", "--sips-port", "0"])
        .arg("--config")
        .arg(cluster)
        .arg("--data-dir")
        .arg(&data)
        .env("UCM_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&serve_log)?)
        .spawn()
        .context("start ucm serve")?;
    let mut serve = Proc::new(&format!("ucm serve ({name})"), child);
    let line = first_line(&mut serve, Duration::from_secs(60))
        .map_err(|e| anyhow!("{e:#}\nucm serve's log:\n{}", read_tail(&serve_log, 20)))?;
    let ready: Value = serde_json::from_str(&line)
        .with_context(|| format!("ucm serve's first line is not JSON: {line}"))?;
    if ready["event"] != "ready" {
        bail!("ucm serve's first line is not its ready line: {line}");
    }
    let mut addrs = BTreeMap::new();
    if let Some(m) = ready.as_object() {
        for (k, v) in m {
            if let Some(s) = v.as_str() {
                addrs.insert(k.clone(), s.to_string());
            }
        }
    }
    for k in ["http", "tftp_http", "sip_udp", "https"] {
        if !addrs.contains_key(k) {
            bail!("ucm serve's ready line has no {k}: {line}");
        }
    }
    Ok(Node {
        serve,
        addrs,
        log: serve_log,
        bind: bind.to_string(),
    })
}

fn run_in(name: &str, s: &Scenario, opts: &Options, work: &Path) -> Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(s.timeout_s.clamp(1, 600));
    let actors = s.cluster_actors();
    // Every HTTPS port first: a cluster's definition may name another's (EMCC remote clusters).
    let single = actors.len() == 1;
    let mut https_ports = BTreeMap::new();
    for c in &actors {
        let p = if single { 0 } else { free_port(&c.bind)? };
        https_ports.insert(c.name.clone(), format!("{}:{p}", c.bind));
    }
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    for (i, c) in actors.iter().enumerate() {
        let mut set: Vec<String> = if i == 0 { opts.set.clone() } else { Vec::new() };
        for x in &c.set {
            set.push(expand_with(x, &|key| {
                key.strip_prefix("https_addr:")
                    .and_then(|n| https_ports.get(n).cloned())
            })?);
        }
        let cluster = write_cluster(&opts.root.join(&c.cluster), &set, work, &c.name)?;
        let port: u16 = https_ports[&c.name]
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let node = start_node(opts, &c.name, &cluster, &c.bind, port, work)?;
        nodes.insert(c.name.clone(), node);
    }
    let main = actors[0].name.clone();
    let node = nodes[&main].addrs.clone();
    let sftp = if s.sftp {
        Some(SftpServer::start(work)?)
    } else {
        None
    };
    let net = format!("127.77.{}", opts.net);
    let peers = format!("127.78.{}", opts.net);
    let poller: Ipv4Addr = format!("{net}.250").parse()?;
    // The capture: the nodes' ports and the actors' networks, not the harness's polling, and
    // not ICMP: the kernel's port-unreachable answers to RTP still in flight when a phone
    // closes its socket at hangup are not the scenario's traffic (and race with it).
    let capture = work.join(format!("{name}.pcap"));
    // A node's ports on the node's side only: another program's connection elsewhere on lo
    // may use the same port number as its own ephemeral port.
    // And with their protocol: another test's RTP on lo may use a UDP port whose number is one
    // of the node's TCP ports (a CI run once captured such a packet and the ladder changed).
    let mut node_ports = Vec::new();
    for n in nodes.values() {
        for (k, proto) in [
            ("http", "tcp"),
            ("https", "tcp"),
            ("tftp_http", "tcp"),
            ("sip_udp", "udp"),
        ] {
            let p = n.addrs[k]
                .parse::<SocketAddr>()
                .map(|a| a.port())
                .with_context(|| format!("{k} in the ready line"))?;
            let h = &n.bind;
            node_ports.push(format!(
                "({proto} and src host {h} and src port {p}) or ({proto} and dst host {h} and dst port {p})"
            ));
        }
    }
    // Multicast to 239.77.0.0/24: the conformance cluster's paging range (pages in other tests
    // use other ranges).
    let filter = format!(
        "(net {net}.0/24 or net {peers}.0/24 or dst net 239.77.0.0/24 or {}) and not host {poller} and not icmp and not icmp6",
        node_ports.join(" or ")
    );
    let mut tcpdump = start_tcpdump(&capture, &filter, work)?;
    let mut run = Run {
        opts,
        work: work.to_path_buf(),
        node,
        nodes: nodes
            .iter()
            .map(|(k, n)| (k.clone(), n.addrs.clone()))
            .collect(),
        main,
        sftp: sftp.as_ref().map(|x| x.placeholders()),
        phones: BTreeMap::new(),
        deadline,
        poller,
    };
    let mut reasons = Vec::new();
    // Actors, then steps; the first failure ends the scenario (its traffic is still checked).
    let mut failed_step = None;
    for (i, p) in s.phones.iter().enumerate() {
        let ip: Ipv4Addr = format!("{net}.{}", 10 + i).parse()?;
        if let Err(e) = run.start_phone(p, ip) {
            failed_step = Some(format!("phone {}: {e:#}", p.device));
            break;
        }
    }
    if failed_step.is_none() {
        for (i, st) in s.steps.iter().enumerate() {
            if Instant::now() > run.deadline {
                failed_step = Some(format!(
                    "step {}: the scenario's timeout ({} s) passed",
                    i + 1,
                    s.timeout_s
                ));
                break;
            }
            if let Err(e) = run.step(st, &peers) {
                failed_step = Some(format!("step {} ({}): {e:#}", i + 1, step_name(st)));
                break;
            }
        }
    }
    // Stop the phones in order (they unregister), then the capture, then the node.
    let names: Vec<String> = s.phones.iter().map(|p| p.device.clone()).collect();
    for d in names {
        if let Some((mut p, _, _)) = run.phones.remove(&d) {
            p.stop(libc::SIGTERM, Duration::from_secs(10));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let tcpdump_log = work.join("tcpdump.log");
    let written = tcpdump.child.as_ref().is_none_or(|c| {
        wait_until_written(
            c.id(),
            &|| std::fs::read_to_string(&tcpdump_log).unwrap_or_default(),
            Duration::from_secs(10),
        )
    });
    tcpdump.stop(libc::SIGINT, Duration::from_secs(5));
    // The nodes in reverse order of their start (a visiting cluster before its home).
    let mut serve_codes = Vec::new();
    for c in actors.iter().rev() {
        if let Some(mut n) = nodes.remove(&c.name) {
            let code = n.serve.stop(libc::SIGTERM, Duration::from_secs(10));
            serve_codes.push((c.name.clone(), code, n.log));
        }
    }
    drop(sftp);
    let logs = |lines: usize| -> String {
        serve_codes
            .iter()
            .map(|(n, _, log)| {
                if single {
                    read_tail(log, lines)
                } else {
                    format!("[{n}]\n{}", read_tail(log, lines))
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    // A capture that lost packets is no evidence either way: say so first.
    let dropped =
        dropped_by_kernel(&std::fs::read_to_string(work.join("tcpdump.log")).unwrap_or_default());
    if !written {
        // Not a failure by itself: what is missing, if anything, shows in the checks below.
        eprintln!("{name}: tcpdump had not written every packet after 10 s; the capture may be incomplete");
    }
    if dropped > 0 {
        reasons.push(format!(
            "the capture is incomplete: tcpdump reports {dropped} packets dropped by kernel \
             (what follows may come from that alone)"
        ));
    }
    if let Some(f) = failed_step {
        reasons.push(f);
        // What went on the wire until then may name the cause (a flow's DSCP, an element).
        if let Ok(more) = verify(name, s, opts, &capture, false) {
            reasons.extend(more);
        }
        reasons.push(format!("ucm serve's log (last lines):\n{}", logs(15)));
        return Ok(reasons);
    }
    for (n, code, log) in &serve_codes {
        if *code != Some(0) {
            reasons.push(format!(
                "ucm serve ({n}) did not exit cleanly on SIGTERM ({code:?}):\n{}",
                read_tail(log, 15)
            ));
        }
    }
    reasons.extend(verify(name, s, opts, &capture, true)?);
    Ok(reasons)
}

fn step_name(s: &Step) -> String {
    match s {
        Step::Ucm(u) => format!("ucm {}", u.args.join(" ")),
        Step::Sipp(x) => format!("sipp {}", x.scenario),
        Step::Wait(w) => format!("wait for {}", w.phone),
        Step::StopPhone(p) => format!("stop phone {p}"),
        Step::SleepMs(ms) => format!("sleep {ms} ms"),
    }
}

/// How long tcpdump may take to start capturing.
const TCPDUMP_START: Duration = Duration::from_secs(30);

fn start_tcpdump(file: &Path, filter: &str, work: &Path) -> Result<Proc> {
    let err = work.join("tcpdump.log");
    let child = Command::new("tcpdump")
        // A 32 MiB buffer: in immediate mode the default 2 MiB holds a few dozen packets of
        // lo's size, and a busy machine that keeps tcpdump waiting that long loses packets.
        .args([
            "-i",
            "lo",
            "-U",
            "--immediate-mode",
            "-B",
            "32768",
            "-s",
            "0",
            "-n",
            "-w",
        ])
        .arg(file)
        .arg(filter)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err)?)
        .spawn()
        .context("start tcpdump (Debian package tcpdump; capturing on lo needs root)")?;
    let mut p = Proc::new("tcpdump", child);
    // tcpdump says "listening on lo" once the capture is live. A loaded machine (CI runs the
    // build beside it) can take several seconds to get there: waiting is cheap, a flake is not.
    let deadline = Instant::now() + TCPDUMP_START;
    loop {
        let log = std::fs::read_to_string(&err).unwrap_or_default();
        if log.contains("listening on") {
            return Ok(p);
        }
        let exited = p
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
        if exited {
            p.stop(libc::SIGKILL, Duration::from_secs(1));
            bail!("tcpdump exited before capturing on lo (capturing needs root): {log}");
        }
        if Instant::now() > deadline {
            p.stop(libc::SIGKILL, Duration::from_secs(1));
            bail!(
                "tcpdump did not say it was capturing on lo within {} s: {log}",
                TCPDUMP_START.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The packets tcpdump's closing statistics (`N packets dropped by kernel`) say it lost.
/// tcpdump's counts (captured, received by filter, dropped by kernel) from the last line SIGUSR1
/// made it print: `tcpdump: C packets captured, R packets received by filter, D packets dropped
/// by kernel` ("packet" when one).
pub fn tcpdump_counts(log: &str) -> Option<(u64, u64, u64)> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(" received by filter,"))?;
    let line = line.strip_prefix("tcpdump: ").unwrap_or(line);
    let mut n = line.split(", ").map(|part| {
        part.split_whitespace()
            .next()
            .and_then(|w| w.parse::<u64>().ok())
    });
    Some((n.next()??, n.next()??, n.next()??))
}

/// Waits, at most `limit`, until tcpdump has written every packet the kernel queued for it, and
/// says whether it did. SIGINT makes tcpdump exit at once: what is still in its ring buffer is
/// lost without a word (not even "dropped by kernel"), and a busy machine can leave it that far
/// behind: CI once missed one phone's answer that way. So ask it for its counts (SIGUSR1) until
/// what it had received when first asked is written (traffic still flowing, a node's keepalives
/// say, keeps it a packet or two behind at any instant). On `lo` the kernel queues every packet
/// twice (out and in) and libpcap keeps one copy: written means 2 × captured + dropped ≥ received.
/// Some captures never add up so (a scenario of two clusters did not): a tcpdump that answers
/// twice running with nothing more captured in between is idle, its buffer empty, and that
/// counts as written too.
pub fn wait_until_written(pid: u32, log: &dyn Fn() -> String, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut goal: Option<u64> = None;
    let mut last_captured: Option<u64> = None;
    loop {
        let asked = log().matches(" received by filter,").count();
        // SAFETY: signalling a child of ours that has not been reaped.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGUSR1);
        }
        let answer_by = (Instant::now() + Duration::from_secs(1)).min(deadline);
        let mut counts = None;
        while Instant::now() < answer_by {
            let text = log();
            if text.matches(" received by filter,").count() > asked {
                counts = tcpdump_counts(&text);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some((captured, received, dropped)) = counts {
            if 2 * captured + dropped >= *goal.get_or_insert(received)
                || last_captured == Some(captured)
            {
                return true;
            }
            last_captured = Some(captured);
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn dropped_by_kernel(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| l.strip_suffix(" packets dropped by kernel"))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .sum()
}

/// The fixture, or a copy with `--set` overrides applied (written as JSON, which is YAML).
fn write_cluster(fixture: &Path, set: &[String], work: &Path, name: &str) -> Result<PathBuf> {
    let text =
        std::fs::read_to_string(fixture).with_context(|| format!("{}", fixture.display()))?;
    if set.is_empty() {
        return Ok(fixture.to_path_buf());
    }
    let mut doc: Value =
        serde_saphyr::from_str(&text).map_err(|e| anyhow!("{}: {e}", fixture.display()))?;
    for s in set {
        let (path, value) = s
            .split_once('=')
            .with_context(|| format!("--set {s}: expected PATH=VALUE"))?;
        let v: Value = serde_saphyr::from_str(value)
            .map_err(|e| anyhow!("--set {s}: the value is not YAML: {e}"))?;
        let mut at = &mut doc;
        for part in path.split('.') {
            if at.is_null() {
                *at = Value::Object(Default::default());
            }
            at = match at {
                Value::Object(m) => m.entry(part.to_string()).or_insert(Value::Null),
                Value::Array(a) => {
                    let i: usize = part
                        .parse()
                        .with_context(|| format!("--set {s}: {part} is not an index"))?;
                    a.get_mut(i)
                        .with_context(|| format!("--set {s}: no element {i}"))?
                }
                _ => bail!("--set {s}: {part} is under a scalar"),
            };
        }
        *at = v;
    }
    let out = work.join(format!("{name}.yaml"));
    std::fs::write(&out, serde_json::to_string_pretty(&doc)?)?;
    Ok(out)
}

impl Run<'_> {
    fn remaining(&self, step_s: u64) -> Duration {
        let left = self.deadline.saturating_duration_since(Instant::now());
        left.min(Duration::from_secs(step_s))
    }

    /// Replaces `{http}`, `{https}`, `{sip}`, `{tftp_http}`, `{http_addr}`, `{https_addr}`
    /// (the first cluster's; `{http:NAME}`... another's), `{phone:DEVICE}`,
    /// `{phone_ip:DEVICE}`, `{net}`, `{root}` and the sftp server's.
    fn expand(&self, s: &str) -> Result<String> {
        expand_with(s, &|key| {
            let (key, node) = match key.split_once(':') {
                Some(("phone", d)) => return self.phones.get(d).map(|p| p.1.to_string()),
                Some(("phone_ip", d)) => return self.phones.get(d).map(|p| p.2.to_string()),
                Some((k, n)) => (k, self.nodes.get(n)?),
                None => (key, self.nodes.get(&self.main)?),
            };
            match key {
                "http" => node.get("http").map(|a| format!("http://{a}")),
                "https" => node.get("https").map(|a| format!("https://{a}")),
                "sip" => node.get("sip_udp").cloned(),
                "tftp_http" => node.get("tftp_http").cloned(),
                "http_addr" => node.get("http").cloned(),
                "https_addr" => node.get("https").cloned(),
                "root" => Some(self.opts.root.display().to_string()),
                // The actors' network, for a client that needs its own address there.
                "net" => Some(format!("127.77.{}", self.opts.net)),
                k => self.sftp.as_ref().and_then(|x| x.get(k).cloned()),
            }
        })
    }

    fn start_phone(&mut self, p: &PhoneActor, ip: Ipv4Addr) -> Result<()> {
        let log = self.work.join(format!("phone-{}.log", p.device));
        let node = &self.nodes[p.cluster.as_ref().unwrap_or(&self.main)];
        // With several clusters the phone follows its configuration file to its SIP server (an
        // EMCC login sends it to another cluster's node): no fixed --sip.
        let sip: &[&str] = if self.nodes.len() == 1 {
            &["--sip", &node["sip_udp"]]
        } else {
            &[]
        };
        let child = Command::new(&self.opts.ucm)
            .args(["phone", "sim", "--server", &node["http"]])
            .args(["--tftp", &node["tftp_http"]])
            .args(sip)
            .args(["--device", &p.device, "--first-ip", &ip.to_string()])
            // Any free port, as when the goldens were recorded, unless the scenario says.
            .args(if p.args.iter().any(|a| a == "--http-port") {
                &[][..]
            } else {
                &["--http-port", "0"][..]
            })
            .args(&p.args)
            .env("UCM_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("start ucm phone sim")?;
        let mut proc = Proc::new(&format!("phone {}", p.device), child);
        let line = first_line(&mut proc, self.remaining(30))
            .map_err(|e| anyhow!("{e:#}\n{}", read_tail(&log, 10)))?;
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("phone sim's first line is not JSON: {line}"))?;
        let http: SocketAddr = v["phones"][0]["http"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no phone HTTP address in {line}"))?;
        self.phones.insert(p.device.clone(), (proc, http, ip));
        Ok(())
    }

    /// `peers`: the network of outside peers (SIPp at `.200`).
    fn step(&mut self, st: &Step, peers: &str) -> Result<()> {
        match st {
            Step::SleepMs(ms) => {
                std::thread::sleep(Duration::from_millis(*ms).min(self.remaining(600)));
                Ok(())
            }
            Step::StopPhone(d) => {
                let (mut p, _, _) = self.phones.remove(d).context("no such phone")?;
                match p.stop(libc::SIGTERM, Duration::from_secs(10)) {
                    Some(0) => Ok(()),
                    c => bail!("the phone exited with {c:?}"),
                }
            }
            Step::Wait(w) => self.wait(w),
            Step::Ucm(u) => {
                let args: Vec<String> = u
                    .args
                    .iter()
                    .map(|a| self.expand(a))
                    .collect::<Result<_>>()?;
                let mut cmd = Command::new(&self.opts.ucm);
                // The runner's own keys only (the sftp server's), never the user's agent.
                cmd.args(&args).env_remove("SSH_AUTH_SOCK");
                for (k, v) in &u.env {
                    cmd.env(k, self.expand(v)?);
                }
                let (code, out, err) = self.run_bounded(cmd, u.timeout_s, "ucm")?;
                if code != Some(u.exit) {
                    bail!(
                        "exit {code:?}, expected {}\nstdout: {}\nstderr: {}",
                        u.exit,
                        out.trim(),
                        err.trim()
                    );
                }
                for want in &u.stdout_contains {
                    let want = self.expand(want)?;
                    if !out.contains(&want) {
                        bail!("stdout lacks {want:?}\nstdout: {}", out.trim());
                    }
                }
                Ok(())
            }
            Step::Sipp(x) => {
                let scen = self.opts.root.join(&x.scenario);
                let inf = self.work.join("sipp.csv");
                let mut text = String::from("SEQUENTIAL\n");
                for l in &x.inject {
                    text.push_str(&self.expand(l)?);
                    text.push('\n');
                }
                std::fs::write(&inf, text)?;
                let mut cmd = Command::new("sipp");
                cmd.arg("-sf")
                    .arg(&scen)
                    .arg(&self.node["sip_udp"])
                    .args(["-i", &format!("{peers}.200"), "-p", "5060"])
                    .args(["-m", &x.calls.to_string(), "-nostdin"])
                    .args(["-timeout", &format!("{}s", x.timeout_s)])
                    .args(["-recv_timeout", "5000", "-trace_err"])
                    .current_dir(&self.work);
                if !x.inject.is_empty() {
                    cmd.arg("-inf").arg(&inf);
                }
                let (code, out, _) = self.run_bounded(cmd, x.timeout_s + 5, "sipp")?;
                if code != Some(x.exit) {
                    let errs = std::fs::read_dir(&self.work)
                        .ok()
                        .into_iter()
                        .flatten()
                        .flatten()
                        .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
                        .map(|e| read_tail(&e.path(), 10))
                        .collect::<Vec<_>>()
                        .join("\n");
                    bail!(
                        "SIPp exited {code:?}, expected {}\n{}\n{errs}",
                        x.exit,
                        out.lines()
                            .filter(|l| l.contains("Successful call") || l.contains("Failed call"))
                            .collect::<Vec<_>>()
                            .join("\n")
                    );
                }
                Ok(())
            }
        }
    }

    /// Runs `cmd` with stdout and stderr to files, killed after `timeout_s` (or the scenario's
    /// deadline): (exit code, stdout, stderr).
    fn run_bounded(
        &self,
        mut cmd: Command,
        timeout_s: u64,
        what: &str,
    ) -> Result<(Option<i32>, String, String)> {
        let out = self.work.join(format!("{what}.out"));
        let err = self.work.join(format!("{what}.err"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(&err)?)
            .spawn()
            .with_context(|| format!("start {what}"))?;
        let mut p = Proc::new(what, child);
        let deadline = Instant::now() + self.remaining(timeout_s);
        let code = loop {
            let c = p.child.as_mut().context("child")?;
            if let Some(st) = c.try_wait()? {
                p.child = None;
                break st.code();
            }
            if Instant::now() > deadline {
                p.stop(libc::SIGKILL, Duration::from_secs(1));
                bail!("{what} did not finish within {timeout_s} s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok((
            code,
            std::fs::read_to_string(&out).unwrap_or_default(),
            std::fs::read_to_string(&err).unwrap_or_default(),
        ))
    }

    fn wait(&self, w: &WaitStep) -> Result<()> {
        let (_, http, _) = self.phones.get(&w.phone).context("no such phone")?;
        let deadline = Instant::now() + self.remaining(w.timeout_s);
        loop {
            let last = match get_state(self.poller, *http) {
                Ok(v) => {
                    let misses: Vec<String> = w
                        .state
                        .iter()
                        .filter_map(|(ptr, want)| {
                            let got = v.pointer(ptr).cloned().unwrap_or(Value::Null);
                            // A string value may name a node's address (`{sip:home}`).
                            let want = &match want.as_str().map(|w| self.expand(w)) {
                                Some(Ok(w)) => Value::String(w),
                                _ => want.clone(),
                            };
                            (!holds(&got, want)).then(|| format!("{ptr} is {got}, want {want}"))
                        })
                        .collect();
                    if misses.is_empty() {
                        return Ok(());
                    }
                    misses.join("; ")
                }
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!("not reached within {} s: {last}", w.timeout_s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Replaces every `{KEY}` of `s` by `value(KEY)`; an unknown key is an error.
fn expand_with(s: &str, value: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find('}') else {
            out.push_str(&rest[i..]);
            rest = "";
            break;
        };
        let key = &rest[i + 1..i + j];
        match value(key) {
            Some(v) => out.push_str(&v),
            None => bail!("{s}: unknown placeholder {{{key}}}"),
        }
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// OpenSSH's sshd, serving sftp (internal-sftp) on 127.0.0.1 with keys made for the run: the
/// meeting point of `ucm emcc sync-certs`. Killed with the run (its `Proc`).
struct SftpServer {
    _sshd: Proc,
    port: u16,
    dir: PathBuf,
}

const SSHD: &str = "/usr/sbin/sshd";

impl SftpServer {
    fn start(work: &Path) -> Result<SftpServer> {
        if !Path::new(SSHD).exists() {
            bail!("{SSHD} is missing: the scenario needs OpenSSH's server (Debian package openssh-server)");
        }
        let dir = work.join("sftp");
        std::fs::create_dir_all(dir.join("exchange"))?;
        for name in ["host", "client"] {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                .arg(dir.join(name))
                .stdin(Stdio::null())
                .status()
                .context("ssh-keygen (Debian package openssh-client)")?;
            if !st.success() {
                bail!("ssh-keygen {name}: {st}");
            }
        }
        std::fs::copy(dir.join("client.pub"), dir.join("authorized_keys"))?;
        // sshd's privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = free_port("127.0.0.1")?;
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {keys}\n\
             PidFile none\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             Subsystem sftp internal-sftp\n",
            host = dir.join("host").display(),
            keys = dir.join("authorized_keys").display(),
        );
        let cfg = dir.join("sshd_config");
        std::fs::write(&cfg, config)?;
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("sshd.log"))?)
            .spawn()
            .context("start sshd")?;
        let sshd = Proc::new("sshd", child);
        let host_pub = std::fs::read_to_string(dir.join("host.pub"))?;
        let mut parts = host_pub.split_whitespace();
        let (alg, key) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        std::fs::write(
            dir.join("known_hosts"),
            format!("[127.0.0.1]:{port} {alg} {key}\n"),
        )?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "sshd did not listen within 20 s: {}",
                    read_tail(&work.join("sshd.log"), 5)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(SftpServer {
            _sshd: sshd,
            port,
            dir,
        })
    }

    fn placeholders(&self) -> BTreeMap<String, String> {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        BTreeMap::from([
            (
                "sftp".to_string(),
                format!(
                    "sftp://{user}@127.0.0.1:{}{}",
                    self.port,
                    self.dir.join("exchange").display()
                ),
            ),
            (
                "sftp_identity".to_string(),
                self.dir.join("client").display().to_string(),
            ),
            (
                "sftp_known_hosts".to_string(),
                self.dir.join("known_hosts").display().to_string(),
            ),
        ])
    }
}

fn holds(got: &Value, want: &Value) -> bool {
    if let Some(min) = want.as_str().and_then(|s| s.strip_prefix(">=")) {
        return match (min.trim().parse::<f64>(), got.as_f64()) {
            (Ok(m), Some(g)) => g >= m,
            _ => false,
        };
    }
    got == want
}

/// `GET /state` from `from` (so the capture filter leaves it out), HTTP/1.0, bounded.
fn get_state(from: Ipv4Addr, phone: SocketAddr) -> Result<Value> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::V4(SocketAddrV4::new(from, 0)).into())?;
    s.connect_timeout(&phone.into(), Duration::from_secs(2))?;
    let mut t: std::net::TcpStream = s.into();
    t.set_read_timeout(Some(Duration::from_secs(3)))?;
    t.set_write_timeout(Some(Duration::from_secs(3)))?;
    write!(t, "GET /state HTTP/1.0\r\nHost: {phone}\r\n\r\n")?;
    let mut buf = Vec::new();
    t.take(8 << 20).read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("no end of HTTP header")?;
    let status = head.split(' ').nth(1);
    if !head.starts_with("HTTP/1.") || status != Some("200") {
        bail!("GET /state: {}", head.lines().next().unwrap_or_default());
    }
    Ok(serde_json::from_str(body)?)
}

/// Runs `ucm pcap verify` (or records the golden) and turns its JSON report into reasons.
/// `complete`: the scenario ran to its end, so the golden and its expectations apply too.
fn verify(
    name: &str,
    s: &Scenario,
    opts: &Options,
    capture: &Path,
    complete: bool,
) -> Result<Vec<String>> {
    let golden = opts.root.join("golden").join(name);
    let policy = opts
        .root
        .join(s.policy.as_deref().unwrap_or("conformance/qos-policy.yaml"));
    let mut cmd = Command::new(&opts.ucm);
    cmd.args(["pcap", "verify", "--format", "json", "--policy"])
        .arg(&policy);
    if complete && !opts.bless {
        cmd.arg("--golden").arg(&golden);
        if !golden.join("ladder.txt").is_file() {
            return Ok(vec![format!(
                "no golden ladder {}: record it with `cargo xtask golden {name}`",
                golden.join("ladder.txt").display()
            )]);
        }
    }
    let o = cmd.arg(capture).output().context("run ucm pcap verify")?;
    let mut reasons = Vec::new();
    let v: Value = match serde_json::from_slice(&o.stdout) {
        Ok(v) => v,
        Err(_) => {
            return Ok(vec![format!(
                "ucm pcap verify exited {:?} without a report: {}",
                o.status.code(),
                String::from_utf8_lossy(&o.stderr).trim()
            )])
        }
    };
    let f = &v["files"][0];
    if let Some(e) = f["error"].as_str() {
        reasons.push(format!("the capture could not be read: {e}"));
        return Ok(reasons);
    }
    for fl in f["flows"].as_array().into_iter().flatten() {
        if fl["passed"] == false {
            let frames: Vec<String> = fl["violations"]
                .as_array()
                .into_iter()
                .flatten()
                .take(8)
                .map(|x| x.to_string())
                .collect();
            reasons.push(format!(
                "DSCP: flow {} -> {} ({}, class {}): expected DSCP {}, observed {} (DSCP: packets); first offending frames {}",
                fl["src"].as_str().unwrap_or("?"),
                fl["dst"].as_str().unwrap_or("?"),
                fl["transport"].as_str().unwrap_or("?"),
                fl["class"].as_str().unwrap_or("?"),
                fl["expected_dscp"],
                fl["dscp_counts"],
                frames.join(", ")
            ));
        }
    }
    for x in f["xml"].as_array().into_iter().flatten() {
        for e in x["errors"].as_array().into_iter().flatten() {
            reasons.push(format!(
                "XML: frame {} ({}), {} element {}: {} [{}]",
                x["frame"],
                x["source"].as_str().unwrap_or("?"),
                x["root"].as_str().unwrap_or("?"),
                e["path"].as_str().unwrap_or("?"),
                e["message"].as_str().unwrap_or("?"),
                e["rule"].as_str().unwrap_or("?")
            ));
        }
    }
    let diff: Vec<&str> = f["diff"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !diff.is_empty() {
        reasons.push(format!(
            "ladder: the call flow differs from {} (- golden, + this run):\n{}",
            golden.join("ladder.txt").display(),
            diff.join("\n")
        ));
    }
    if !complete {
        return Ok(reasons);
    }
    // Anything else the verifier failed on (its own exit code is the judge).
    if reasons.is_empty() && o.status.code() != Some(0) {
        reasons.push(format!(
            "ucm pcap verify exited {:?}: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    // The scenario's own expectations.
    let flows: Vec<&Value> = f["flows"].as_array().into_iter().flatten().collect();
    for c in &s.expect.classes {
        if !flows
            .iter()
            .any(|fl| fl["class"] == c.as_str() && fl["audited"] == true)
        {
            reasons.push(format!(
                "expected a flow of class {c} in the capture, found none"
            ));
        }
    }
    for want in &s.expect.flows_between {
        let host = |v: &Value| {
            v.as_str()
                .and_then(|a| a.parse::<SocketAddr>().ok())
                .map(|a| a.ip())
        };
        let found: Vec<String> = flows
            .iter()
            .filter(|fl| host(&fl["src"]) == Some(want.from) && host(&fl["dst"]) == Some(want.to))
            .map(|fl| fl["class"].as_str().unwrap_or("?").to_string())
            .collect();
        if !found.contains(&want.class) {
            reasons.push(format!(
                "expected a flow of class {} from {} to {} in the capture, found {}",
                want.class,
                want.from,
                want.to,
                if found.is_empty() {
                    "none".to_string()
                } else {
                    format!("only {}", found.join(", "))
                }
            ));
        }
    }
    let docs = f["xml_documents"].as_u64().unwrap_or(0);
    if docs < s.expect.xml_documents_min {
        reasons.push(format!(
            "expected at least {} XML documents in the capture, found {docs}",
            s.expect.xml_documents_min
        ));
    }
    for root in &s.expect.xml_roots {
        if !f["xml"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["root"] == root.as_str())
        {
            reasons.push(format!(
                "expected a {root} document in the capture, found none"
            ));
        }
    }
    if opts.bless && reasons.is_empty() {
        bless(name, s, opts, capture, &golden, &policy)?;
    }
    Ok(reasons)
}

fn first_line_of(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .map(|o| {
            let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
            t.push_str(&String::from_utf8_lossy(&o.stderr));
            t.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_else(|| "not installed".into())
}

/// Writes `golden/<name>/ladder.txt` from the capture and a README saying how.
fn bless(
    name: &str,
    s: &Scenario,
    opts: &Options,
    capture: &Path,
    golden: &Path,
    policy: &Path,
) -> Result<()> {
    let o = Command::new(&opts.ucm)
        .args(["pcap", "ladder", "--normalised", "--policy"])
        .arg(policy)
        .arg(capture)
        .output()
        .context("ucm pcap ladder")?;
    if !o.status.success() {
        bail!(
            "ucm pcap ladder failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // The commit recorded from, "-dirty" when the sources differ from it (goldens aside: this
    // run rewrites them).
    let mut commit = first_line_of(
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(&opts.root),
    );
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--", ".", ":(exclude)golden"])
        .current_dir(&opts.root)
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    if dirty {
        commit.push_str("-dirty");
    }
    std::fs::create_dir_all(golden)?;
    let mut ladder = format!("# cargo xtask golden {name} (see README.md)\n").into_bytes();
    ladder.extend_from_slice(&o.stdout);
    std::fs::write(golden.join("ladder.txt"), ladder)?;
    let version = first_line_of(Command::new(&opts.ucm).arg("--version"));

    let tcpdump = first_line_of(Command::new("tcpdump").arg("--version"));
    let tshark = first_line_of(Command::new("tshark").arg("-v"));
    let sipp = first_line_of(Command::new("sipp").arg("-v"));
    let date = first_line_of(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]));
    let sets = if opts.set.is_empty() {
        String::new()
    } else {
        format!(" with --set {}", opts.set.join(" --set "))
    };
    let readme = format!(
        "# Golden ladder: `{name}`\n\n{}\n\n`ladder.txt` is the normalised call flow of the scenario \
`conformance/scenarios/{name}.yaml` (cluster `{}`): what `ucm pcap verify --golden golden/{name}` \
compares a fresh run's capture with. The ladder format and what it normalises away (ports, \
Call-IDs, tags, branches, CSeq bases, SSRCs, timestamps; addresses become roles A, B, C... by \
first appearance) are documented in `src/verify/ladder.rs`.\n\n## How it was made\n\n```\ncargo xtask golden {name}\n```\n\n\
which started {serves}{sets} (in-memory SQLite, port 0 everywhere{https}){sftp}, captured on \
`lo` with tcpdump (the nodes' ports, the actors' network 127.77.N.0/24 and multicast to \
239.77.0.0/24, not the harness's \
own polling), ran the scenario's phones and steps, checked the capture with `ucm pcap verify \
--policy {}` (every audited flow and every XML document passed), and \
wrote `ucm pcap ladder --normalised` of it here.\n\n\
- date: {date}\n- ucm: {version}, commit {commit}, debug build\n- tcpdump: {tcpdump}\n\
- tshark: {tshark} (not used to record; the corpus tests compare with it)\n- SIPp: {sipp}\n\n\
`cargo xtask conformance {name}` runs the scenario again and compares.\n",
        s.description.trim(),
        s.cluster_actors()
            .iter()
            .map(|c| c.cluster.as_str())
            .collect::<Vec<_>>()
            .join("`, `"),
        s.policy.as_deref().unwrap_or("conformance/qos-policy.yaml"),
        serves = if s.clusters.is_empty() {
            "`ucm serve` on the fixture".to_string()
        } else {
            format!(
                "one `ucm serve` per cluster ({})",
                s.clusters
                    .iter()
                    .map(|c| format!("{} on {}", c.name, c.bind))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        https = if s.clusters.is_empty() {
            ""
        } else {
            " but HTTPS, on a free port chosen first"
        },
        sftp = if s.sftp {
            ", OpenSSH's sshd serving sftp on 127.0.0.1 with keys made for the run"
        } else {
            ""
        },
    );
    std::fs::write(golden.join("README.md"), readme)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn r14_packets_lost_are_read_from_tcpdumps_statistics() {
        let log = "tcpdump: listening on lo, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n\
                   247 packets captured\n498 packets received by filter\n4 packets dropped by kernel\n";
        assert_eq!(super::dropped_by_kernel(log), 4);
        assert_eq!(
            super::dropped_by_kernel(&log.replace("4 packets dropped", "0 packets dropped")),
            0
        );
        assert_eq!(super::dropped_by_kernel("tcpdump: listening on lo\n"), 0);
    }

    /// The counts SIGUSR1 prints (tcpdump 4.99 on Debian 12), the last line winning; the
    /// one-line form is not mistaken for the exit summary's lines.
    #[test]
    fn r8_tcpdump_counts_read_from_the_sigusr1_line() {
        let log = "tcpdump: listening on lo, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n\
                   tcpdump: 0 packets captured, 400 packets received by filter, 0 packets dropped by kernel\n\
                   tcpdump: 1 packet captured, 2 packets received by filter, 0 packets dropped by kernel\n";
        assert_eq!(super::tcpdump_counts(log), Some((1, 2, 0)));
        assert_eq!(
            super::tcpdump_counts("3 packets captured\n6 packets received by filter\n"),
            None
        );
        assert_eq!(super::dropped_by_kernel(log), 0);
    }
}
