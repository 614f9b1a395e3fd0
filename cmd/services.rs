//! `ucm services`: IP Phone Services from scripts.
//!
//! - `push` POSTs a CiscoIPPhone object to a phone's `/CGI/Execute` as phones expect it (form
//!   field `XML`, HTTP Basic) and reads the CiscoIPPhoneResponse or CiscoIPPhoneError. Exit 0
//!   when every item reports status 0, 1 when the phone refused (error number and meaning
//!   printed) or an item failed, 2 for usage, input, an unreachable phone or an answer that
//!   is not a CiscoIPPhone reply.
//! - `lint` fetches a service the way a phone does (its headers) or reads a file, parses and
//!   validates the object for a phone model. Exit 0 clean, 1 violations, 2 unreachable or
//!   unparseable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use ucm::client::ClientOptions;
use ucm::wire::codec::percent_encode;
use ucm::wire::xml::{self, CiscoIPPhoneObject, Execute, ExecuteReply, PhoneModel, Priority};

use crate::{print_out, Failure};

#[derive(Subcommand)]
pub enum Command {
    /// Push a CiscoIPPhoneExecute (or any object) to a phone's /CGI/Execute.
    Push(PushArgs),
    /// Fetch a service as a phone would (or read a file) and validate the object.
    Lint(LintArgs),
}

#[derive(Args)]
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
    /// The node that resolves a device name (its HTTP base URL).
    #[arg(long, env = "UCM_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The phone's HTTP port when --phone is a device name.
    #[arg(long, default_value_t = 80)]
    phone_port: u16,
    /// A user associated with the phone (the phone checks it with the authentication URL).
    #[arg(long)]
    user: String,
    /// Read the password from the first line of stdin [default: env UCM_PUSH_PASSWORD].
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
    /// Seconds to wait for the phone (Play: answers only after the clip ends).
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
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
    /// PEM file of CA certificates for HTTPS.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Accept any HTTPS certificate (test beds only).
    #[arg(long)]
    insecure: bool,
    /// Seconds to wait for the service.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

pub async fn run(c: Command) -> Result<(), Failure> {
    match c {
        Command::Push(a) => push(a).await,
        Command::Lint(a) => lint(a).await,
    }
}

fn read_stdin_line(what: &str) -> Result<String, Failure> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Failure::Input(format!("reading {what} from stdin: {e}")))?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    if pw.is_empty() {
        return Err(Failure::Input(format!("no {what} on stdin")));
    }
    Ok(pw)
}

fn is_device_name(s: &str) -> bool {
    s.strip_prefix("SEP")
        .is_some_and(|m| m.len() == 12 && m.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The address a device registered from, asked of the node with the pushing user's
/// credentials (only a user who may push to the device is told).
async fn resolve(
    client: &reqwest::Client,
    server: &str,
    device: &str,
    user: &str,
    password: &str,
) -> Result<String, Failure> {
    let url = format!(
        "{}/ucm/services/device-address?name={device}",
        server.trim_end_matches('/')
    );
    let r = client
        .get(&url)
        .basic_auth(user, Some(password))
        .send()
        .await
        .map_err(|e| Failure::Input(format!("{url}: {e}")))?;
    match r.status().as_u16() {
        200 => {
            let body = r
                .bytes()
                .await
                .map_err(|e| Failure::Input(format!("{url}: {e}")))?;
            let v: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| Failure::Input(format!("{url}: {e}")))?;
            v["ip"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| Failure::Input(format!("{url}: no ip in the answer")))
        }
        401 | 403 => Err(Failure::Check(format!(
            "{device}: the node refused {user}'s credentials for this device"
        ))),
        404 => Err(Failure::Input(format!("{device} is not registered"))),
        s => Err(Failure::Input(format!("{url}: HTTP {s}"))),
    }
}

/// The registered devices of a device pool or recipient group (`what`: `device_pool`,
/// `recipient_group`) that `user` may push to, as the node lists them.
async fn pool_devices(
    client: &reqwest::Client,
    server: &str,
    what: &str,
    pool: &str,
    user: &str,
    password: &str,
) -> Result<Vec<String>, Failure> {
    let url = format!(
        "{}/ucm/services/devices?{what}={}",
        server.trim_end_matches('/'),
        percent_encode(pool)
    );
    let label = what.replace('_', " ");
    let r = client
        .get(&url)
        .basic_auth(user, Some(password))
        .send()
        .await
        .map_err(|e| Failure::Input(format!("{url}: {e}")))?;
    match r.status().as_u16() {
        200 => {
            let body = r
                .bytes()
                .await
                .map_err(|e| Failure::Input(format!("{url}: {e}")))?;
            let v: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| Failure::Input(format!("{url}: {e}")))?;
            Ok(v["devices"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default())
        }
        401 | 403 => Err(Failure::Check(format!(
            "{label} {pool}: the node refused {user}'s credentials"
        ))),
        404 => Err(Failure::Input(format!("no {label} {pool} in the cluster"))),
        s => Err(Failure::Input(format!("{url}: HTTP {s}"))),
    }
}

/// `http://host[:port]/CGI/Execute` for what --phone says.
fn execute_url(phone: &str) -> Result<String, Failure> {
    let p = phone.trim().trim_end_matches('/');
    if p.is_empty() || p.contains(char::is_whitespace) {
        return Err(Failure::Input(format!(
            "--phone {phone:?} is not an address"
        )));
    }
    let base = if p.starts_with("http://") || p.starts_with("https://") {
        p.to_string()
    } else {
        format!("http://{p}")
    };
    Ok(if base.ends_with("/CGI/Execute") {
        base
    } else {
        format!("{base}/CGI/Execute")
    })
}

fn json_out(v: &serde_json::Value) -> Result<(), Failure> {
    print_out(&format!(
        "{}\n",
        serde_json::to_string_pretty(v).unwrap_or_default()
    ))
}

async fn push(a: PushArgs) -> Result<(), Failure> {
    let password = if a.password_stdin {
        read_stdin_line("the password")?
    } else {
        std::env::var("UCM_PUSH_PASSWORD").map_err(|_| {
            Failure::Input("the password comes from --password-stdin or UCM_PUSH_PASSWORD".into())
        })?
    };
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
            let prio = match a.priority {
                1 => Priority::WhenIdle,
                2 => Priority::IfIdle,
                _ => Priority::Immediately,
            };
            let mut ex = Execute::new();
            for u in &a.execute {
                ex = ex.item(u, prio);
            }
            let obj: CiscoIPPhoneObject = ex.into();
            let problems = xml::validate(&obj, None);
            if !problems.is_empty() {
                let list: Vec<String> = problems.iter().map(|v| v.to_string()).collect();
                return Err(Failure::Input(format!(
                    "the Execute object is not valid:\n  {}",
                    list.join("\n  ")
                )));
            }
            obj.to_xml()
        }
    };
    let client = ucm::client::http_client(&ClientOptions {
        ca: None,
        insecure: false,
        timeout: Some(Duration::from_secs(a.timeout.max(1))),
    })?;
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
            pool_devices(&client, &a.server, "device_pool", pool, &a.user, &password).await?,
        );
    }
    if let Some(group) = &a.group {
        phones.extend(
            pool_devices(
                &client,
                &a.server,
                "recipient_group",
                group,
                &a.user,
                &password,
            )
            .await?,
        );
    }
    if phones.is_empty() {
        return Err(Failure::Input("no phone to push to".into()));
    }
    let ctx = std::sync::Arc::new(PushCtx {
        client,
        server: a.server.clone(),
        phone_port: a.phone_port,
        user: a.user.clone(),
        password,
        body_xml,
    });
    if phones.len() == 1 {
        let o = push_one(&ctx, &phones[0]).await;
        return report_one(&o, a.json);
    }
    // Many phones: a bounded number in flight, then one result line (or JSON entry) each.
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(a.concurrency.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, p) in phones.iter().enumerate() {
        let (ctx, sem, p) = (ctx.clone(), sem.clone(), p.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            (i, push_one(&ctx, &p).await)
        });
    }
    let mut outcomes = Vec::with_capacity(phones.len());
    // Progress on a terminal only: scripts read the result lines.
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    while let Some(r) = set.join_next().await {
        if let Ok(x) = r {
            outcomes.push(x);
        }
        if progress {
            eprint!("\r{}/{} phones pushed", outcomes.len(), phones.len());
        }
    }
    if progress {
        eprintln!();
    }
    outcomes.sort_by_key(|(i, _)| *i);
    let worst = outcomes.iter().map(|(_, o)| o.code).max().unwrap_or(2);
    if a.json {
        let v: Vec<serde_json::Value> = outcomes.iter().map(|(_, o)| o.json()).collect();
        json_out(&serde_json::json!({"ok": worst == 0, "phones": v}))?;
    } else {
        let mut out = String::from("PHONE\tRESULT\tDETAIL\n");
        for (_, o) in &outcomes {
            let result = match o.code {
                0 => "ok",
                1 => "refused",
                _ => "error",
            };
            out.push_str(&format!("{}\t{result}\t{}\n", o.phone, o.detail));
        }
        print_out(&out)?;
    }
    let failed = outcomes.iter().filter(|(_, o)| o.code != 0).count();
    match worst {
        0 => Ok(()),
        1 => Err(Failure::Check(format!(
            "{failed} of {} pushes failed",
            outcomes.len()
        ))),
        _ => Err(Failure::Input(format!(
            "{failed} of {} pushes failed",
            outcomes.len()
        ))),
    }
}

struct PushCtx {
    client: reqwest::Client,
    server: String,
    phone_port: u16,
    user: String,
    password: String,
    body_xml: String,
}

/// How one push went: `code` is the exit code it alone would give.
struct PushOutcome {
    phone: String,
    code: u8,
    reply: Option<ExecuteReply>,
    detail: String,
}

impl PushOutcome {
    fn failed(phone: &str, f: Failure) -> PushOutcome {
        let (code, detail) = match f {
            Failure::Check(m) => (1, m),
            Failure::Input(m) => (2, m),
        };
        PushOutcome {
            phone: phone.to_string(),
            code,
            reply: None,
            detail,
        }
    }

    fn json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"phone": self.phone, "ok": self.code == 0});
        match &self.reply {
            Some(ExecuteReply::Response(r)) => {
                v["response"] = r
                    .items
                    .iter()
                    .map(|i| serde_json::json!({"status": i.status, "data": i.data, "url": i.url}))
                    .collect();
            }
            Some(ExecuteReply::Error(e)) => {
                v["error"] = serde_json::json!({
                    "number": e.number,
                    "meaning": e.meaning().unwrap_or("undocumented error number"),
                    "message": e.message,
                });
            }
            None => v["failure"] = serde_json::Value::String(self.detail.clone()),
        }
        v
    }
}

async fn push_one(ctx: &PushCtx, phone: &str) -> PushOutcome {
    match try_push(ctx, phone).await {
        Ok(reply) => {
            let (code, detail) = match &reply {
                ExecuteReply::Response(r) if r.all_ok() => (0, "every item succeeded".into()),
                ExecuteReply::Response(_) => (1, "not every item succeeded".into()),
                ExecuteReply::Error(e) => (
                    1,
                    format!(
                        "CiscoIPPhoneError {}: {}",
                        e.number.map_or("?".into(), |n| n.to_string()),
                        e.meaning().unwrap_or("undocumented error number")
                    ),
                ),
            };
            PushOutcome {
                phone: phone.to_string(),
                code,
                reply: Some(reply),
                detail,
            }
        }
        Err(f) => PushOutcome::failed(phone, f),
    }
}

async fn try_push(ctx: &PushCtx, phone: &str) -> Result<ExecuteReply, Failure> {
    let url = if is_device_name(phone) {
        let ip = resolve(&ctx.client, &ctx.server, phone, &ctx.user, &ctx.password).await?;
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip
        };
        execute_url(&format!("{host}:{}", ctx.phone_port))?
    } else {
        execute_url(phone)?
    };
    let form = format!("XML={}", percent_encode(&ctx.body_xml));
    let resp = ctx
        .client
        .post(&url)
        .basic_auth(&ctx.user, Some(&ctx.password))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .map_err(|e| Failure::Input(format!("{url}: {e}")))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| Failure::Input(format!("{url}: reading the answer: {e}")))?;
    xml::parse_execute_reply(&bytes).map_err(|e| {
        Failure::Input(format!(
            "{url}: HTTP {status}, not a CiscoIPPhoneResponse or CiscoIPPhoneError: {e}"
        ))
    })
}

/// One phone's result as the single-phone form prints it.
fn report_one(o: &PushOutcome, json: bool) -> Result<(), Failure> {
    if json && o.reply.is_some() {
        json_out(&o.json())?;
    }
    match &o.reply {
        Some(ExecuteReply::Response(r)) => {
            if !json {
                let mut out = String::new();
                for i in &r.items {
                    out.push_str(&format!(
                        "{}\t{}\t{}\n",
                        i.status.map_or("?".into(), |s| s.to_string()),
                        i.url.as_deref().unwrap_or(""),
                        i.data.as_deref().unwrap_or("")
                    ));
                }
                print_out(&out)?;
            }
            if o.code == 0 {
                Ok(())
            } else {
                Err(Failure::Check(format!("{}: {}", o.phone, o.detail)))
            }
        }
        Some(ExecuteReply::Error(_)) => Err(Failure::Check(format!("{}: {}", o.phone, o.detail))),
        None if o.code == 1 => Err(Failure::Check(o.detail.clone())),
        None => Err(Failure::Input(o.detail.clone())),
    }
}

/// The headers a phone of `model` sends with a request (spec §1.9).
fn phone_headers(model: Option<&PhoneModel>, sdk: &str, locale: &str) -> Vec<(String, String)> {
    let name = model.map_or("CP-8851", |m| m.name);
    let display = model.map_or("559, 265, 24, C".to_string(), |m| {
        let kind = match m.display {
            xml::DisplayKind::Colour => "C",
            _ => "G",
        };
        format!("{}, {}, {}, {kind}", m.width, m.height, m.depth)
    });
    let charset = if model.is_some_and(|m| m.name == "CP-7960") {
        "iso-8859-1, utf-8;q=0.8"
    } else {
        "utf-8,iso-8859-1;q=0.8"
    };
    vec![
        (
            "User-Agent".into(),
            format!("Cisco-{}/{sdk}", name.replace('-', "")),
        ),
        ("x-CiscoIPPhoneModelName".into(), name.into()),
        ("x-CiscoIPPhoneDisplay".into(), display),
        ("x-CiscoIPPhoneSDKVersion".into(), sdk.into()),
        ("Accept".into(), "x-CiscoIPPhone/*;version=3.3.4".into()),
        ("Accept-Language".into(), locale.into()),
        ("Accept-Charset".into(), charset.into()),
    ]
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
    let mut notes: Vec<String> = Vec::new();
    let bytes: Vec<u8> = if is_url {
        if a.target.len() > 256 {
            notes.push(format!(
                "the URL is {} characters; phones take at most 256",
                a.target.len()
            ));
        }
        let client = ucm::client::http_client(&ClientOptions {
            ca: a.ca.clone(),
            insecure: a.insecure,
            timeout: Some(Duration::from_secs(a.timeout.max(1))),
        })?;
        let mut req = client.get(&a.target);
        for (k, v) in phone_headers(model, &a.sdk_version, &a.locale) {
            req = req.header(k, v);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Input(format!("{}: {e}", a.target)))?;
        if !resp.status().is_success() {
            return Err(Failure::Input(format!(
                "{}: HTTP {}",
                a.target,
                resp.status()
            )));
        }
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if !ct.starts_with("text/xml") && !ct.starts_with("application/xml") {
            notes.push(format!(
                "Content-Type is {ct:?}; phones expect text/xml with a charset"
            ));
        } else if !ct.contains("charset") {
            notes.push("Content-Type has no charset; phones then assume ISO-8859-1".into());
        }
        resp.bytes()
            .await
            .map_err(|e| Failure::Input(format!("{}: {e}", a.target)))?
            .to_vec()
    } else {
        std::fs::read(&a.target).map_err(|e| Failure::Input(format!("{}: {e}", a.target)))?
    };
    let parsed =
        xml::parse_bytes(&bytes).map_err(|e| Failure::Input(format!("{}: {e}", a.target)))?;
    let violations = xml::validate(&parsed.object, model);
    let warnings: Vec<String> = parsed
        .warnings
        .iter()
        .map(|w| w.to_string())
        .chain(notes)
        .collect();
    if a.json {
        let v: Vec<serde_json::Value> = violations
            .iter()
            .map(|v| serde_json::json!({"path": v.path, "rule": v.rule, "message": v.message}))
            .collect();
        json_out(&serde_json::json!({
            "target": a.target,
            "object": parsed.object.kind().root_name(),
            "model": model.map(|m| m.name),
            "valid": violations.is_empty(),
            "violations": v,
            "warnings": warnings,
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
    if violations.is_empty() {
        if !a.json {
            eprintln!(
                "{}: {} is valid{}",
                a.target,
                parsed.object.kind().root_name(),
                model.map_or(String::new(), |m| format!(" for {}", m.name))
            );
        }
        Ok(())
    } else {
        Err(Failure::Check(format!(
            "{}: {} violation(s)",
            a.target,
            violations.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_addresses() {
        assert_eq!(
            execute_url("10.1.1.20").ok().as_deref(),
            Some("http://10.1.1.20/CGI/Execute")
        );
        assert_eq!(
            execute_url("http://127.0.0.1:8081/").ok().as_deref(),
            Some("http://127.0.0.1:8081/CGI/Execute")
        );
        assert!(execute_url("a b").is_err());
    }
}
