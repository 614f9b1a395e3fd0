//! `ucm console`: an attendant console for terminals and scripts. Connects to the node's
//! `attendant_console` listener as an attendant, prints the queues and their events as they
//! happen (one JSON object a line with --json), and sends the commands read from stdin.

use std::net::SocketAddr;

use clap::Args as ClapArgs;
use tokio::io::AsyncBufReadExt;
use ucm::client::console::{parse_command, Console};

use crate::client_args::ClientArgs;
use crate::Failure;

#[derive(ClapArgs)]
#[command(after_help = "Examples:\n  \
    UCM_PASSWORD=cisco ucm console --server 127.0.0.1:8446 --user attendant1 --insecure\n  \
    echo 'answer 1' | UCM_PASSWORD=cisco ucm console --server 127.0.0.1:8446 --user attendant1 --ca node-cert.pem --json\n\
Commands on stdin, one a line: queues, answer (the oldest waiting call), answer N (N: the call's id),\nsearch TEXT (the directory, by name or number), transfer N NUMBER (blind, through a service queue),\npark N, retrieve P (P: the park device's number), quit. End of stdin ends the console\n\
once the answers to the commands sent have come.\n\
Exit codes: 0 the console ran and closed, 1 the server refused the credentials (401, 403), 2 usage or unreachable.")]
pub struct Args {
    /// The node's attendant_console listener (the ready line names it).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:8446")]
    server: SocketAddr,
    /// The name the node's certificate is checked for (default: the node's address).
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// The attendant (an end user; the password comes from UCM_PASSWORD).
    #[arg(long)]
    user: String,
    #[command(flatten)]
    client: ClientArgs,
}

fn show(v: &serde_json::Value, json: bool) {
    if json {
        println!("{v}");
        return;
    }
    let s = |k: &str| {
        v.get(k)
            .map(|x| x.to_string().trim_matches('"').to_string())
            .unwrap_or_default()
    };
    match v.get("event").and_then(|e| e.as_str()).unwrap_or("") {
        "hello" => println!("attendant {} (line {})", s("attendant"), s("line")),
        "queues" => {
            for q in v["queues"].as_array().cloned().unwrap_or_default() {
                let calls = q["calls"].as_array().cloned().unwrap_or_default();
                println!(
                    "queue {}: {} waiting",
                    q["queue"].as_str().unwrap_or(""),
                    calls.len()
                );
                for c in calls {
                    println!(
                        "  {}. call {} from {} waiting {} s",
                        c["position"],
                        c["call"],
                        c["calling"].as_str().unwrap_or(""),
                        c["waiting_seconds"]
                    );
                }
            }
        }
        "queued" => println!(
            "queue {}: call {} from {} waiting",
            s("queue"),
            s("call"),
            s("calling")
        ),
        "answered" => println!(
            "queue {}: call {} answered by {}",
            s("queue"),
            s("call"),
            s("attendant")
        ),
        "left" => println!(
            "queue {}: call {} left ({})",
            s("queue"),
            s("call"),
            s("how")
        ),
        "search" => {
            for e in v["results"].as_array().cloned().unwrap_or_default() {
                println!(
                    "{:<5} {:<24} {:<8} {}",
                    e["kind"].as_str().unwrap_or(""),
                    e["name"].as_str().unwrap_or(""),
                    e["number"].as_str().unwrap_or(""),
                    e["partition"].as_str().unwrap_or("")
                );
            }
            if v["more"] == true {
                println!("(more: narrow the search)");
            }
        }
        "transfer" if v["ok"] == true => println!(
            "call {} on service queue {}, transferring to {}",
            s("call"),
            s("device"),
            s("to")
        ),
        "park" if v["ok"] == true => println!("call {} parked on {}", s("call"), s("park")),
        "retrieve" if v["ok"] == true => {
            println!(
                "retrieved call {} from {} on line {}",
                s("call"),
                s("park"),
                s("line")
            )
        }
        "transferring" => println!("call {} ringing {}", s("call"), s("target")),
        "transferred" => println!("call {} transferred to {}", s("call"), s("target")),
        "recall" => println!(
            "call {}: {} did not take it ({}); recalling",
            s("call"),
            s("target"),
            s("reason")
        ),
        "recalled" => println!("call {} back on line {}", s("call"), s("line")),
        "parked" => println!(
            "call {} parked on {} by {}",
            s("call"),
            s("park"),
            s("attendant")
        ),
        "retrieved" => println!("call {} retrieved by {}", s("call"), s("attendant")),
        "answer" if v["ok"] == true => {
            println!("answered call {} on line {}", s("call"), s("line"))
        }
        "answer" | "transfer" | "park" | "retrieve" => {
            println!("{} failed: {} {}", s("event"), s("status"), s("error"))
        }
        _ => println!("{v}"),
    }
}

pub async fn run(a: Args) -> Result<(), Failure> {
    let password = crate::password(
        false,
        crate::PASSWORD_ENV,
        crate::PASSWORD_ENV,
        "password for --user",
    )?;
    let name = a
        .server_name
        .clone()
        .unwrap_or_else(|| a.server.ip().to_string());
    let json = a.client.json;
    let mut console =
        match Console::connect(a.server, &name, &a.user, &password, &a.client.options()).await {
            Ok(c) => c,
            Err(e) if matches!(e.status(), Some(401 | 403)) => {
                return Err(Failure::Check(e.to_string()))
            }
            Err(e) => return Err(Failure::Input(e.to_string())),
        };
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    // Commands sent whose answer has not come yet (stdin's end waits for them).
    let mut pending = 0usize;
    let mut greeted = false;
    let shutdown = crate::shutdown_signal()?;
    tokio::pin!(shutdown);
    loop {
        if !stdin_open && pending == 0 {
            console.close().await;
            return Ok(());
        }
        tokio::select! {
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(l)) => {
                    let l = l.trim();
                    if l.is_empty() {
                        continue;
                    }
                    if l == "quit" {
                        stdin_open = false;
                        continue;
                    }
                    match parse_command(l) {
                        Ok(cmd) => {
                            console.send(&cmd).await.map_err(|e| Failure::Input(e.to_string()))?;
                            pending += 1;
                        }
                        Err(e) => {
                            if json {
                                println!("{}", serde_json::json!({"event": "error", "error": e}));
                            } else {
                                eprintln!("ucm console: {e}");
                            }
                        }
                    }
                }
                Ok(None) | Err(_) => stdin_open = false,
            },
            msg = console.next() => match msg {
                Ok(Some(v)) => {
                    let ev = v.get("event").and_then(|e| e.as_str()).unwrap_or("");
                    // Answers to commands: `answer`, `error`, and each `queues` but the first
                    // (sent on connecting).
                    match ev {
                        "answer" | "error" | "search" | "transfer" | "park" | "retrieve" => pending = pending.saturating_sub(1),
                        "queues" if greeted => pending = pending.saturating_sub(1),
                        "queues" => greeted = true,
                        _ => {}
                    }
                    show(&v, json);
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(Failure::Input(e.to_string())),
            },
            _ = &mut shutdown => {
                console.close().await;
                return Ok(());
            }
        }
    }
}
