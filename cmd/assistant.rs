//! `ucm assistant console`: the Assistant Console client over TCP 2912.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use ucm::client::assistant::{self, ConsoleError, ConsoleOptions, Seen};
use ucm::net::Dscp;

use crate::Failure;

#[derive(Subcommand)]
pub enum Command {
    /// Log in as an assistant and handle the managers' calls: live line states and manager
    /// states on stdout, commands on stdin.
    #[command(
        after_help = "Commands on stdin, one a line (or the protocol's JSON requests as they are):\n  \
        managers                      the managers, their lines and states\n  \
        dnd MANAGER on|off            Do Not Disturb\n  \
        divertall MANAGER on|off [N]  DivertAll (to N, else the assistant)\n  \
        filter MANAGER on|off|inclusive|exclusive\n  \
        select MANAGER [ASSISTANT]    assistant selection (none: the first assistant)\n  \
        answer CALL                   answer a call ringing at your proxy line (on your phone)\n  \
        tomanager CALL                a call ringing at your proxy line goes to the manager\n  \
        transfer CALL [NUMBER]        a call you answered for a manager goes to the manager (or NUMBER)\n  \
        divert CALL NUMBER            a call ringing at your proxy line goes to NUMBER\n  \
        intercept MANAGER             the call ringing at the manager's assistants goes to the manager\n  \
        directory NAME                search the directory (25 entries at most)\n\
The session ends at the end of stdin, once every command has its answer.\n\
Examples:\n  \
    UCM_PASSWORD=cisco ucm assistant console --user assistant1\n  \
    echo 'dnd manager1 on' | UCM_PASSWORD=cisco ucm assistant console --user assistant1 --json\n\
Exit codes: 0 the session ended with stdin, 1 the login was refused, 2 usage or no server reachable."
    )]
    Console(ConsoleArgs),
    /// Check the dial plan against the seed's rules for the Assistant: manager lines reachable
    /// only from the Assistant route point and the proxy lines (each line that can reach a
    /// manager directly is named), proxy line numbers unique across partitions, shared lines in
    /// one partition, mobile managers and Multiple Login Behavior, no EM for assistants.
    #[command(after_help = "Examples:\n  \
        ucm assistant check-dialplan                      # the stored definition\n  \
        ucm assistant check-dialplan --config cluster.yaml --json\n\
Exit codes: 0 the dial plan follows the rules, 1 a violation, 2 the definition cannot be read.")]
    CheckDialplan(CheckArgs),
}

#[derive(Args)]
pub struct CheckArgs {
    /// A definition file to check instead of the one stored in the database.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(flatten)]
    db: crate::db::DbArgs,
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ConsoleArgs {
    /// The Assistant server (HOST:PORT); give it twice for a primary and a backup.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:2912")]
    server: Vec<String>,
    /// The assistant's user ID (the password comes from UCM_PASSWORD).
    #[arg(long)]
    user: String,
    /// Seconds to wait for a connection or an answer (Cisco IPMA Assistant Console Request
    /// Timeout).
    #[arg(long, default_value_t = 30)]
    request_timeout: u64,
    /// Print every line from the server as it comes, one JSON object a line.
    #[arg(long)]
    json: bool,
}

pub async fn run(c: Command) -> Result<(), Failure> {
    match c {
        Command::Console(a) => console(a).await,
        Command::CheckDialplan(a) => check_dialplan(a).await,
    }
}

async fn check_dialplan(a: CheckArgs) -> Result<(), Failure> {
    use ucm::services::assistant::check;
    let (def, origin) = match &a.config {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| Failure::Input(format!("{}: {e}", f.display())))?;
            let origin = f.display().to_string();
            (check::parse_for_dialplan(&text, &origin)?, origin)
        }
        None => {
            let store = a.db.open_existing().await?;
            let def = store.load().await?.ok_or_else(|| {
                Failure::Input(
                    "the database holds no cluster definition (give --config FILE)".into(),
                )
            })?;
            (def, "the stored definition".to_string())
        }
    };
    let violations = check::dialplan(&def);
    if a.json {
        let list: Vec<Value> = violations
            .iter()
            .map(|v| json!({"rule": v.rule, "path": v.path.to_string(), "message": v.message}))
            .collect();
        let doc = json!({"definition": origin, "ok": violations.is_empty(), "violations": list});
        crate::print_out(&format!("{doc:#}\n"))?;
    } else {
        let mut out = String::new();
        for v in &violations {
            out.push_str(&format!(
                "{origin}: {}: [{}] {}\n",
                v.path, v.rule, v.message
            ));
        }
        if violations.is_empty() {
            out.push_str(&format!(
                "{origin}: ok: the Assistant's dial plan follows the rules\n"
            ));
        }
        crate::print_out(&out)?;
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Failure::Check(format!(
            "{} dial plan violation(s)",
            violations.len()
        )))
    }
}

fn on_off(w: Option<&str>) -> Result<bool, String> {
    match w {
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        _ => Err("on or off".into()),
    }
}

/// A line of stdin as a request.
fn parse_command(line: &str) -> Result<Value, String> {
    let line = line.trim();
    if line.starts_with('{') {
        return serde_json::from_str(line).map_err(|e| format!("not a JSON request: {e}"));
    }
    let w: Vec<&str> = line.split_whitespace().collect();
    let call = |i: usize| {
        w.get(i)
            .and_then(|c| c.parse::<u64>().ok())
            .ok_or_else(|| "a call number (from a line event)".to_string())
    };
    let manager = || w.get(1).copied().ok_or_else(|| "a manager".to_string());
    let set = |change: Value| -> Result<Value, String> {
        Ok(json!({"cmd": "set", "manager": manager()?, "change": change}))
    };
    let r = match w.first().copied() {
        Some("managers") => Ok(json!({"cmd": "managers"})),
        Some("ping") => Ok(json!({"cmd": "ping"})),
        Some("dnd") => set(json!({"dnd": on_off(w.get(2).copied())?})),
        Some("divertall") => {
            let on = on_off(w.get(2).copied())?;
            let mut c = json!({"divert_all": on});
            if let Some(t) = w.get(3) {
                c["divert_target"] = json!(t);
            }
            set(c)
        }
        Some("filter") => match w.get(2).copied() {
            Some(m @ ("inclusive" | "exclusive")) => set(json!({"filter_mode": m})),
            o => set(json!({"filter_on": on_off(o)?})),
        },
        Some("select") => set(json!({"selected_assistant": w.get(2).copied().unwrap_or("")})),
        Some("answer") => Ok(json!({"cmd": "answer", "call": call(1)?})),
        Some("tomanager") => Ok(json!({"cmd": "to_manager", "call": call(1)?})),
        Some("transfer") => {
            let mut c = json!({"cmd": "transfer", "call": call(1)?});
            if let Some(to) = w.get(2) {
                c["to"] = json!(to);
            }
            Ok(c)
        }
        Some("divert") => Ok(json!({
            "cmd": "divert",
            "call": call(1)?,
            "to": w.get(2).ok_or("a number to divert to")?,
        })),
        Some("intercept") => Ok(json!({"cmd": "intercept", "manager": manager()?})),
        Some("directory") => Ok(json!({"cmd": "directory", "name": w[1..].join(" ")})),
        Some(other) => Err(format!("unknown command {other:?} (see --help)")),
        None => Err("an empty line".into()),
    };
    r.map_err(|e| format!("{line:?}: needs {e}"))
}

/// One line for a person.
fn human(v: &Value) -> Option<String> {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    match v["event"].as_str() {
        Some("heartbeat") | Some("hello") => None,
        Some("state") => Some(state_line(&s("manager"), &v["state"])),
        Some("line") => Some(format!(
            "{} {} line {}: {} (call {}{})",
            s("manager"),
            s("role"),
            s("dn"),
            s("state"),
            v["call"],
            v["device"]
                .as_str()
                .map(|d| format!(", {d}"))
                .unwrap_or_default()
        )),
        Some(other) => Some(format!("{other}: {v}")),
        None => {
            if let Some(e) = v["error"].as_str() {
                return Some(format!("error: {e}"));
            }
            if let Some(ms) = v["managers"]
                .as_array()
                .filter(|m| m.iter().all(Value::is_object))
            {
                let mut out = Vec::new();
                for m in ms {
                    out.push(format!(
                        "{} line {} ({} mode{}): {}",
                        m["manager"].as_str().unwrap_or(""),
                        m["line"].as_str().unwrap_or(""),
                        m["mode"].as_str().unwrap_or(""),
                        m["proxy_line"]
                            .as_str()
                            .map(|p| format!(", proxy line {p}"))
                            .unwrap_or_default(),
                        state_line("", &m["state"]).trim_start_matches(": ")
                    ));
                }
                return Some(out.join("\n"));
            }
            if let Some(es) = v["entries"].as_array() {
                let mut out = vec![format!("{} entries", es.len())];
                for e in es {
                    out.push(format!(
                        "  {}  {}",
                        e["name"].as_str().unwrap_or(""),
                        e["number"].as_str().unwrap_or("-")
                    ));
                }
                return Some(out.join("\n"));
            }
            if let Some(st) = v.get("state") {
                return Some(state_line(&s("manager"), st));
            }
            Some("ok".into())
        }
    }
}

fn state_line(manager: &str, st: &Value) -> String {
    let b = |k: &str| if st[k] == true { "on" } else { "off" };
    format!(
        "{manager}: DND {}, DivertAll {}{}, filter {} ({})",
        b("dnd"),
        b("divert_all"),
        st["divert_target"]
            .as_str()
            .map(|t| format!(" to {t}"))
            .unwrap_or_default(),
        b("filter_on"),
        st["filter_mode"].as_str().unwrap_or("")
    )
}

async fn console(a: ConsoleArgs) -> Result<(), Failure> {
    let password = crate::password(false, crate::PASSWORD_ENV, crate::PASSWORD_ENV, "password")?;
    let opts = ConsoleOptions {
        servers: a.server.clone(),
        user: a.user.clone(),
        password,
        dscp: Dscp::CS3,
        request_timeout: Duration::from_secs(a.request_timeout.max(1)),
    };
    // Commands from stdin, read on a thread of their own (stdin blocks).
    let (tx, rx) = tokio::sync::mpsc::channel::<Value>(64);
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if line.trim().is_empty() {
                continue;
            }
            if matches!(line.trim(), "quit" | "exit") {
                break;
            }
            match parse_command(&line) {
                Ok(req) => {
                    if tx.blocking_send(req).is_err() {
                        break;
                    }
                }
                Err(e) => eprintln!("ucm: {e}"),
            }
        }
    });
    let json = a.json;
    let mut out_err: Option<Failure> = None;
    let r = assistant::run(&opts, rx, |seen| {
        if out_err.is_some() {
            return;
        }
        let text = match seen {
            Seen::Line(v) if json => Some(v.to_string()),
            Seen::Line(v) => human(v),
            Seen::Online { server } => {
                eprintln!("ucm: online at {server} as {}", opts.user);
                None
            }
            Seen::Lost { server, reason } => {
                eprintln!("ucm: lost {server} ({reason}); trying the next server");
                None
            }
        };
        if let Some(mut t) = text {
            t.push('\n');
            if let Err(e) = crate::print_out(&t) {
                out_err = Some(e);
            }
        }
    })
    .await;
    if let Some(e) = out_err {
        return Err(e);
    }
    match r {
        Ok(()) => Ok(()),
        Err(e @ ConsoleError::Refused { .. }) => Err(Failure::Check(format!("ucm: {e}"))),
        Err(e) => Err(Failure::Input(e.to_string())),
    }
}
