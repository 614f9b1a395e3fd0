//! `ucm services`: IP Phone Services from scripts.
//!
//! - `push` POSTs a CiscoIPPhone object to a phone's `/CGI/Execute` as phones expect it (form
//!   field `XML`, HTTP Basic) and reads the CiscoIPPhoneResponse or CiscoIPPhoneError. Exit 0
//!   when every item reports status 0, 1 when the phone refused (error number and meaning
//!   printed) or an item failed, 2 for usage, input, an unreachable phone or an answer that
//!   is not a CiscoIPPhone reply.
//! - `lint` fetches a service the way a phone does (its headers) or reads a file, parses and
//!   validates the object for a phone model. Exit 0 clean, 1 violations or an answer a phone
//!   cannot parse (malformed XML, HTML), 2 unreachable or unreadable.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use ucm::client::lint::fetch_as_phone;
use ucm::client::push::{DeviceSet, PushError, PushOutcome, Pusher, Report, Verdict};
use ucm::wire::xml::{self, ExecuteReply, PhoneModel};

use crate::client_args::{ClientArgs, ServerArgs};
use crate::{print_out, Failure};

#[derive(Subcommand)]
pub enum Command {
    /// Push a CiscoIPPhoneExecute (or any object) to a phone's /CGI/Execute.
    Push(PushArgs),
    /// Fetch a service as a phone would (or read a file) and validate the object. Exit 0 valid,
    /// 1 violations or not an object a phone can parse (malformed XML, HTML), 2 unreachable.
    Lint(LintArgs),
}

#[derive(Args)]
#[command(mut_arg("server", |a| a.help(
    "The node that resolves a device name (its HTTP base URL)"
)))]
#[command(mut_arg("timeout", |a| a.help(
    "Seconds to wait for the phone (Play: answers only after the clip ends)"
)))]
pub struct PushArgs {
    /// The phone: `host`, `host:port`, `http://host:port`, or a device name (`SEP<MAC>`)
    /// whose registered address the node (--server) tells. Repeat for several phones.
    #[arg(
        long,
        value_name = "ADDR|DEVICE",
        required_unless_present_any = ["from", "device_pool", "group"]
    )]
    phone: Vec<String>,
    /// Push to every registered phone of a device pool that --user may push to (the node
    /// --server lists them).
    #[arg(long, value_name = "POOL")]
    device_pool: Option<String>,
    /// Push to every registered phone of a paging recipient group that --user may push to
    /// (the node --server resolves the group).
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Push to every phone listed in a file (one ADDR or DEVICE a line, `#` comments).
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
    /// Pushes in flight at once when there are several phones.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[command(flatten)]
    srv: ServerArgs,
    /// The phone's HTTP port when --phone is a device name.
    #[arg(long, default_value_t = 80)]
    phone_port: u16,
    /// A user associated with the phone (the phone checks it with the authentication URL).
    #[arg(long)]
    user: String,
    /// Read --user's password from the first line of stdin (otherwise the environment variable
    /// UCM_PASSWORD).
    #[arg(long)]
    password_stdin: bool,
    /// A file holding the object to push, sent as it is.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "execute",
        required_unless_present = "execute"
    )]
    xml: Option<PathBuf>,
    /// A URL or internal URI to execute (up to 3, at most one HTTP URL).
    #[arg(long, value_name = "URI", num_args = 1..)]
    execute: Vec<String>,
    /// Priority of the --execute items: 0 now, 1 when idle, 2 only if idle.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    priority: u8,
}

#[derive(Args)]
#[command(mut_arg("ca", |a| a.help("PEM file of CA certificates for HTTPS")))]
#[command(mut_arg("timeout", |a| a.help("Seconds to wait for the service")))]
pub struct LintArgs {
    /// An http(s):// URL to fetch, or a file.
    target: String,
    /// The phone model to validate for (e.g. CP-8851, 7841); without it, the schema limits only.
    #[arg(long, value_name = "M")]
    model: Option<String>,
    /// x-CiscoIPPhoneSDKVersion sent with the request.
    #[arg(long, default_value = "14.2.1")]
    sdk_version: String,
    /// Accept-Language sent with the request.
    #[arg(long, default_value = "en-US")]
    locale: String,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(c: Command) -> Result<(), Failure> {
    match c {
        Command::Push(a) => push(a).await,
        Command::Lint(a) => lint(a).await,
    }
}

fn json_out(v: &serde_json::Value) -> Result<(), Failure> {
    print_out(&format!(
        "{}\n",
        serde_json::to_string_pretty(v).unwrap_or_default()
    ))
}

/// A refusal is a failed check (exit 1), anything else an error (exit 2).
fn failure(e: PushError) -> Failure {
    match e {
        PushError::Refused(m) => Failure::Check(m),
        PushError::Failed(m) => Failure::Input(m),
    }
}

async fn push(a: PushArgs) -> Result<(), Failure> {
    let password = crate::password(
        a.password_stdin,
        crate::PASSWORD_ENV,
        "UCM_PUSH_PASSWORD",
        "password for --user",
    )?;
    let body_xml = match &a.xml {
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
            // Check it is an object at all; what it contains is the phone's business.
            xml::parse_bytes(&bytes)
                .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
            String::from_utf8(bytes).map_err(|_| {
                Failure::Input(format!(
                    "{}: not UTF-8 (the form field carries UTF-8 text)",
                    path.display()
                ))
            })?
        }
        None => {
            ucm::client::push::execute_object(&a.execute, a.priority).map_err(Failure::Input)?
        }
    };
    let http = ucm::client::http_client(&a.srv.client.options())?;
    let pusher = Arc::new(Pusher::new(
        http,
        &a.srv.server,
        a.phone_port,
        &a.user,
        &password,
        body_xml,
    ));
    let mut phones = a.phone.clone();
    if let Some(path) = &a.from {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
        phones.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    if let Some(pool) = &a.device_pool {
        phones.extend(
            pusher
                .devices(DeviceSet::DevicePool, pool)
                .await
                .map_err(failure)?,
        );
    }
    if let Some(group) = &a.group {
        phones.extend(
            pusher
                .devices(DeviceSet::RecipientGroup, group)
                .await
                .map_err(failure)?,
        );
    }
    if phones.is_empty() {
        return Err(Failure::Input("no phone to push to".into()));
    }
    let json = a.srv.client.json;
    // JSON has one shape however many phones: {"ok", "phones": [...], "exit_code"}.
    if phones.len() == 1 && !json {
        let o = pusher.push(&phones[0]).await;
        return report_one(&o);
    }
    // Many phones: a bounded number in flight, then one result line (or JSON entry) each.
    // Progress on a terminal only: scripts read the result lines.
    let progress = phones.len() > 1 && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let total = phones.len();
    let outcomes = pusher
        .push_all(&phones, a.concurrency, |done| {
            if progress {
                eprint!("\r{done}/{total} phones pushed");
            }
        })
        .await;
    if progress {
        eprintln!();
    }
    let report = Report::of(&outcomes);
    if json {
        let mut doc = report.json(&outcomes);
        doc["exit_code"] = match report.worst {
            Verdict::Ok => 0,
            Verdict::Refused => 1,
            Verdict::Failed => 2,
        }
        .into();
        json_out(&doc)?;
    } else {
        print_out(&Report::table(&outcomes))?;
    }
    let summary = format!("{} of {} pushes failed", report.failed, report.total);
    match report.worst {
        Verdict::Ok => Ok(()),
        Verdict::Refused => Err(Failure::Check(summary)),
        Verdict::Failed => Err(Failure::Input(summary)),
    }
}

/// One phone's result as the single-phone form prints it.
fn report_one(o: &PushOutcome) -> Result<(), Failure> {
    match &o.reply {
        Some(ExecuteReply::Response(_)) => {
            print_out(&o.items_text())?;
            if o.verdict == Verdict::Ok {
                Ok(())
            } else {
                Err(Failure::Check(format!("{}: {}", o.phone, o.detail)))
            }
        }
        Some(ExecuteReply::Error(_)) => Err(Failure::Check(format!("{}: {}", o.phone, o.detail))),
        None if o.verdict == Verdict::Refused => Err(Failure::Check(o.detail.clone())),
        None => Err(Failure::Input(o.detail.clone())),
    }
}

async fn lint(a: LintArgs) -> Result<(), Failure> {
    let model = match &a.model {
        Some(m) => Some(PhoneModel::lookup(m).ok_or_else(|| {
            let known: Vec<&str> = xml::MODELS.iter().map(|m| m.name).collect();
            Failure::Input(format!(
                "unknown phone model {m:?} (known: {})",
                known.join(", ")
            ))
        })?),
        None => None,
    };
    let is_url = a.target.starts_with("http://") || a.target.starts_with("https://");
    let (bytes, notes) = if is_url {
        let f = fetch_as_phone(
            &a.target,
            model,
            &a.sdk_version,
            &a.locale,
            &a.client.options(),
        )
        .await
        .map_err(Failure::Input)?;
        (f.body, f.notes)
    } else {
        let bytes =
            std::fs::read(&a.target).map_err(|e| Failure::Input(format!("{}: {e}", a.target)))?;
        (bytes, Vec::new())
    };
    let parsed = match xml::parse_bytes(&bytes) {
        Ok(p) => p,
        Err(e) => {
            // What a phone cannot parse (malformed XML, an HTML page) fails the check: the
            // service is wrong, not the command line.
            let message = format!(
                "{}: not a CiscoIPPhone object a phone can parse: {e}",
                a.target
            );
            if a.client.json {
                json_out(&serde_json::json!({
                    "target": a.target,
                    "object": null,
                    "model": model_json(a.model.as_deref(), model),
                    "valid": false,
                    "violations": [{"path": "", "rule": "parse", "message": e.to_string()}],
                    "warnings": notes,
                    "exit_code": 1,
                }))?;
            }
            return Err(Failure::Check(message));
        }
    };
    let violations = xml::validate(&parsed.object, model);
    let warnings: Vec<String> = parsed
        .warnings
        .iter()
        .map(|w| w.to_string())
        .chain(notes)
        .collect();
    if a.client.json {
        let v: Vec<serde_json::Value> = violations
            .iter()
            .map(|v| serde_json::json!({"path": v.path, "rule": v.rule, "message": v.message}))
            .collect();
        json_out(&serde_json::json!({
            "target": a.target,
            "object": parsed.object.kind().root_name(),
            "model": model_json(a.model.as_deref(), model),
            "valid": violations.is_empty(),
            "violations": v,
            "warnings": warnings,
            "exit_code": if violations.is_empty() { 0 } else { 1 },
        }))?;
    } else {
        let mut out = String::new();
        for v in &violations {
            out.push_str(&format!("{v}\n"));
        }
        print_out(&out)?;
        for w in &warnings {
            eprintln!("warning: {w}");
        }
    }
    let model_text = match (a.model.as_deref(), model) {
        (Some(asked), Some(m)) => format!(" for {}", model_label(asked, m)),
        _ => String::new(),
    };
    if violations.is_empty() {
        if !a.client.json {
            eprintln!(
                "{}: {} is valid{model_text}",
                a.target,
                parsed.object.kind().root_name(),
            );
        }
        Ok(())
    } else {
        Err(Failure::Check(format!(
            "{}: {} violation(s){model_text}",
            a.target,
            violations.len()
        )))
    }
}

/// The model asked for and how it was mapped: `Cisco 8845 (checked as CP-8851, whose limits its
/// family CP-8851, CP-8845, ... shares)`, or just the name when it was asked by that name.
fn model_label(asked: &str, m: &PhoneModel) -> String {
    let plain = |s: &str| {
        let u = s.trim().to_ascii_uppercase();
        u.strip_prefix("CP-").map(str::to_string).unwrap_or(u)
    };
    if plain(asked) == plain(m.name) {
        return m.name.to_string();
    }
    format!(
        "{asked} (checked as {}: the same display and limits as {})",
        m.name,
        family(m).join(", ")
    )
}

fn family(m: &PhoneModel) -> Vec<&'static str> {
    std::iter::once(m.name)
        .chain(m.aliases.iter().copied())
        .collect()
}

fn model_json(asked: Option<&str>, m: Option<&PhoneModel>) -> serde_json::Value {
    match (asked, m) {
        (Some(asked), Some(m)) => serde_json::json!({
            "asked": asked,
            "checked_as": m.name,
            "family": family(m),
        }),
        _ => serde_json::Value::Null,
    }
}
