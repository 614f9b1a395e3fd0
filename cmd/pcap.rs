//! `ucm pcap`: checks on packet captures. `verify` audits DSCP markings per flow against a QoS
//! policy; `dscp` prints a capture's per-DSCP tally; `default-policy` prints the built-in policy.

use std::fs::File;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use ucm::net::Dscp;
use ucm::verify::{self, AuditOptions, FileOutcome, Format, Policy, Report};

use crate::{print_out, Failure};

#[derive(Subcommand)]
pub enum Command {
    /// Audit the DSCP marking of every flow in captures (pcap or pcapng) against a QoS policy.
    /// Exit 0 when every audited flow carries its expected DSCP; 1 when any packet does not,
    /// when a capture has nothing audited (no packets, none IP, or no flow under the policy's
    /// audit; see --allow-empty) or when a capture is cut short (the packets before the cut are
    /// audited, the cut is reported with its byte offset); 2 when a capture or the policy
    /// cannot be read.
    Verify(VerifyArgs),
    /// Print how many IP packets carry each DSCP value (innermost IP header), as tshark counts.
    Dscp {
        /// The capture (pcap or pcapng).
        #[arg(value_name = "CAPTURE")]
        capture: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the built-in QoS policy (Cisco's defaults) as a policy file to copy and edit.
    DefaultPolicy,
    /// Print a capture's call-flow ladder: SIP messages (UDP and TCP) as `A -> B: INVITE (call
    /// 1, cseq 1)`, HTTP exchanges as `A -> B: HTTP GET /path 200`, RTP streams with payload
    /// type, ptime, SSRC, loss and jitter. Roles name addresses (the policy's roles, else A, B...).
    /// A capture cut short gives the ladder of the packets before the cut, the cut on stderr
    /// and exit 1.
    Ladder {
        /// The capture (pcap or pcapng).
        #[arg(value_name = "CAPTURE")]
        capture: PathBuf,
        /// Print JSON (roles and lines with frame, time, text and detail).
        #[arg(long, conflicts_with = "normalised")]
        json: bool,
        /// Print only the normalised lines: the content of a golden `ladder.txt`.
        #[arg(long)]
        normalised: bool,
        /// QoS policy whose sender roles name addresses.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Capture files (pcap or pcapng).
    #[arg(required = true, value_name = "CAPTURE")]
    captures: Vec<PathBuf>,
    /// QoS policy (YAML); default: Cisco's (signalling CS3, voice EF, video AF41, routers'
    /// network control CS6, the rest 0), every sender audited. See `ucm pcap default-policy`.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    format: FormatArg,
    /// List only flow directions that have an expected DSCP.
    #[arg(long)]
    only_audited: bool,
    /// Compare each capture's normalised ladder with a golden one: a `ladder.txt`, a directory
    /// holding one, or a directory of `<capture stem>/ladder.txt`. A difference fails (exit 1)
    /// and is shown as a unified diff.
    #[arg(long, value_name = "DIR|FILE")]
    golden: Option<PathBuf>,
    /// Pass a capture in which nothing is audited (no packets, none IP, or no flow direction
    /// with an expected DSCP). Without it such a capture fails (exit 1): a capture taken on
    /// the wrong interface must not pass.
    #[arg(long)]
    allow_empty: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Text,
    Json,
    Junit,
}

pub async fn run(cmd: Command) -> Result<(), Failure> {
    match cmd {
        Command::Verify(a) => run_verify(a),
        Command::Dscp { capture, json } => run_dscp(capture, json),
        Command::DefaultPolicy => print_out(verify::DEFAULT_POLICY_YAML),
        Command::Ladder {
            capture,
            json,
            normalised,
            policy,
        } => run_ladder(capture, json, normalised, policy),
    }
}

fn load_policy(path: &Option<PathBuf>) -> Result<(Policy, String), Failure> {
    Ok(match path {
        Some(p) => (
            Policy::load(p).map_err(|e| Failure::Input(e.to_string()))?,
            p.display().to_string(),
        ),
        None => (
            Policy::cisco_default(),
            "built-in Cisco default".to_string(),
        ),
    })
}

fn audit_file(path: &std::path::Path, policy: &Policy, options: AuditOptions) -> FileOutcome {
    let name = path.display().to_string();
    match File::open(path) {
        Err(e) => FileOutcome::Unreadable {
            path: name,
            error: format!("cannot open: {e}"),
        },
        Ok(f) => {
            // The capture reader reads in large blocks itself (no BufReader: a second copy),
            // on a thread of its own so reading overlaps with the audit.
            let audited = ucm::pcap::CaptureReader::with_read_ahead(f)
                .and_then(|capture| verify::audit_capture_reader(capture, &name, policy, options));
            match audited {
                Ok(audit) => FileOutcome::Audited(audit),
                Err(e) => FileOutcome::Unreadable {
                    path: name,
                    error: e.to_string(),
                },
            }
        }
    }
}

fn run_ladder(
    capture: PathBuf,
    json: bool,
    normalised: bool,
    policy: Option<PathBuf>,
) -> Result<(), Failure> {
    let (policy, _) = load_policy(&policy)?;
    // A ladder is not an audit: a capture with nothing audited still has one (maybe empty).
    let options = AuditOptions {
        allow_empty: true,
        ..AuditOptions::default()
    };
    let audit = match audit_file(&capture, &policy, options) {
        FileOutcome::Audited(a) => a,
        FileOutcome::Unreadable { path, error } => {
            return Err(Failure::Input(format!("{path}: {error}")))
        }
    };
    // A capture cut short: the ladder of what was read, and the cut on stderr (exit 1).
    let cut = file_findings([&audit]);
    let printed = print_ladder(&audit, json, normalised);
    match (printed, cut) {
        (Err(e), _) => Err(e),
        (Ok(()), None) => Ok(()),
        (Ok(()), Some(msg)) => Err(Failure::Check(msg)),
    }
}

/// `ucm: PATH: MESSAGE` for every file-level finding (cut short, nothing audited), if any.
fn file_findings<'a>(audits: impl IntoIterator<Item = &'a verify::FileAudit>) -> Option<String> {
    let lines: Vec<String> = audits
        .into_iter()
        .flat_map(|a| {
            a.findings
                .iter()
                .map(move |f| format!("ucm: {}: {}", a.path, f.message))
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

fn print_ladder(audit: &verify::FileAudit, json: bool, normalised: bool) -> Result<(), Failure> {
    if json {
        let doc = serde_json::json!({
            "path": audit.path,
            "roles": audit.ladder.roles,
            "ladder": audit.ladder.lines,
            "dropped": audit.ladder.dropped,
        });
        let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
        s.push('\n');
        return print_out(&s);
    }
    if normalised {
        return print_out(&audit.ladder.normalised());
    }
    print_out(&audit.ladder.render())
}

fn run_verify(a: VerifyArgs) -> Result<(), Failure> {
    let (policy, policy_name) = load_policy(&a.policy)?;
    let options = AuditOptions {
        allow_empty: a.allow_empty,
        ..AuditOptions::default()
    };
    let mut files = Vec::new();
    for path in &a.captures {
        let mut outcome = audit_file(path, &policy, options);
        if let (Some(golden), FileOutcome::Audited(audit)) = (&a.golden, &mut outcome) {
            let g = verify::golden::locate(golden, path);
            match std::fs::read_to_string(&g) {
                Ok(text) => audit.compare_golden(&g.display().to_string(), &text),
                Err(e) => {
                    return Err(Failure::Input(format!(
                        "golden ladder {}: {e}",
                        g.display()
                    )))
                }
            }
        }
        files.push(outcome);
    }
    let report = Report {
        policy: policy_name,
        files,
        only_audited: a.only_audited,
    };
    let format = match a.format {
        FormatArg::Text => Format::Text,
        FormatArg::Json => Format::Json,
        FormatArg::Junit => Format::Junit,
    };
    if let Format::Json = format {
        // Streamed: the JSON of a big capture is not built as one string first.
        crate::mark_printed();
        let out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        match report.write_json(out) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            Err(e) => return Err(Failure::Input(format!("writing to stdout: {e}"))),
        }
    } else {
        print_out(&report.render(format))?;
    }
    // A person at a terminal has just read the report: say nothing twice. Redirected (a CI
    // job keeping the report as a file), what fails a capture as a whole goes to stderr too.
    let repeat = !std::io::IsTerminal::is_terminal(&std::io::stdout());
    if report.any_unreadable() {
        if !repeat {
            return Err(Failure::Input(String::new()));
        }
        let reasons: Vec<String> = report
            .files
            .iter()
            .filter_map(|f| match f {
                FileOutcome::Unreadable { path, error } => Some(format!("{path}: {error}")),
                FileOutcome::Audited(_) => None,
            })
            .collect();
        return Err(Failure::Input(reasons.join("\nucm: ")));
    }
    if report.passed() {
        Ok(())
    } else {
        // Flow verdicts are in the report; what fails a capture as a whole is said on stderr
        // too, where a CI log shows it whatever the format.
        let audits = report.files.iter().filter_map(|f| match f {
            FileOutcome::Audited(a) => Some(a),
            FileOutcome::Unreadable { .. } => None,
        });
        let findings = file_findings(audits).filter(|_| repeat);
        Err(Failure::Check(findings.unwrap_or_default()))
    }
}

fn run_dscp(capture: PathBuf, json: bool) -> Result<(), Failure> {
    let name = capture.display().to_string();
    let f =
        File::open(&capture).map_err(|e| Failure::Input(format!("{name}: cannot open: {e}")))?;
    let tally = ucm::pcap::dscp_tally(f).map_err(|e| Failure::Input(format!("{name}: {e}")))?;
    if json {
        let doc = serde_json::json!({
            "path": name,
            "packets": tally.packets,
            "ip_packets": tally.ip_packets,
            "dscp_counts": tally.by_dscp.iter().map(|(d, n)| (d.to_string(), serde_json::Value::from(*n))).collect::<serde_json::Map<String, serde_json::Value>>(),
            "unsupported_link_types": tally.unsupported_link_types,
        });
        return print_out(&format!("{doc}\n"));
    }
    let mut out = format!(
        "{name}: {} packets, {} IP\n",
        tally.packets, tally.ip_packets
    );
    for (d, n) in &tally.by_dscp {
        let label = match Dscp::new(*d).ok().and_then(Dscp::name) {
            Some(name) => format!("{d} ({name})"),
            None => d.to_string(),
        };
        out.push_str(&format!("  {label:<10} {n:>10}\n"));
    }
    print_out(&out)
}
