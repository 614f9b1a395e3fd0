//! The Assistant Console's client side of ucm's console protocol on TCP 2912 (the protocol:
//! `services::assistant::console`): connect (marked CS3 before `connect()`, unlike Cisco's
//! console, which sends best effort and needs a switch ACL), log in, go online, then requests
//! and events as JSON lines. [`run`] keeps a session up across servers: when no line (the
//! server's heartbeat) comes within the heartbeat interval plus the request timeout, or the
//! connection ends, it moves on to the next server (the backup) and logs in again.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use crate::net::Dscp;

/// The longest line the client takes from a server.
const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    /// The Assistant servers, primary first (`HOST:PORT`).
    pub servers: Vec<String>,
    pub user: String,
    pub password: String,
    /// Marking of the console's traffic (CS3).
    pub dscp: Dscp,
    /// How long to wait for a connection or an answer (the server says its own in `hello`).
    pub request_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No server could be reached or kept.
    #[error("{0}")]
    Unreachable(String),
    /// A server refused the login (the answer's error).
    #[error("login refused by {server}: {reason}")]
    Refused { server: String, reason: String },
}

/// One connection to a server.
pub struct Connection {
    pub server: String,
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    /// The server's `hello`.
    pub hello: Value,
    next_id: u64,
    /// A line begun (kept when a wait for the next line is cancelled).
    pending: Vec<u8>,
}

async fn resolve(server: &str) -> Result<SocketAddr, String> {
    tokio::net::lookup_host(server)
        .await
        .map_err(|e| format!("{server}: {e}"))?
        .next()
        .ok_or_else(|| format!("{server}: no address"))
}

impl Connection {
    /// Connects and reads the server's `hello`.
    pub async fn open(server: &str, dscp: Dscp, wait: Duration) -> Result<Connection, String> {
        let addr = resolve(server).await?;
        let sock = tokio::time::timeout(wait, crate::net::connect_tcp(addr, None, dscp))
            .await
            .map_err(|_| format!("{server}: no connection within {} s", wait.as_secs()))?
            .map_err(|e| format!("{server}: {e}"))?;
        let (r, w) = sock.into_split();
        let mut c = Connection {
            server: server.to_string(),
            reader: BufReader::new(r),
            writer: w,
            hello: Value::Null,
            next_id: 1,
            pending: Vec::new(),
        };
        let hello = c.next(wait).await?;
        if hello["event"] != "hello" {
            return Err(format!(
                "{server}: not an Assistant server (it said {hello})"
            ));
        }
        c.hello = hello;
        Ok(c)
    }

    /// Sends a request (an `id` is added when it has none); returns its id.
    pub async fn send(&mut self, mut req: Value) -> Result<Value, String> {
        if req.get("id").is_none() {
            req["id"] = json!(self.next_id);
            self.next_id += 1;
        }
        let mut line = req.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("{}: {e}", self.server))?;
        Ok(req["id"].clone())
    }

    /// The next line from the server, within `wait` (cancel safe: a line begun is kept).
    pub async fn next(&mut self, wait: Duration) -> Result<Value, String> {
        let (reader, pending) = (&mut self.reader, &mut self.pending);
        let read = async {
            loop {
                let avail = reader.fill_buf().await?;
                if avail.is_empty() {
                    return Ok(None);
                }
                if let Some(i) = avail.iter().position(|b| *b == b'\n') {
                    pending.extend_from_slice(&avail[..i]);
                    reader.consume(i + 1);
                    return Ok(Some(std::mem::take(pending)));
                }
                let n = avail.len();
                pending.extend_from_slice(avail);
                reader.consume(n);
                if pending.len() > MAX_LINE {
                    return Err(std::io::Error::other("a line longer than 1 MiB"));
                }
            }
        };
        match tokio::time::timeout(wait, read).await {
            Err(_) => Err(format!(
                "{}: nothing heard for {} s",
                self.server,
                wait.as_secs()
            )),
            Ok(Err(e)) => Err(format!("{}: {e}", self.server)),
            Ok(Ok(None)) => Err(format!("{}: the server closed the connection", self.server)),
            Ok(Ok(Some(line))) => serde_json::from_slice(&line)
                .map_err(|e| format!("{}: a line that is not JSON: {e}", self.server)),
        }
    }

    /// Sends `req` and waits for its reply, handing other lines (events) to `other`.
    pub async fn call(
        &mut self,
        req: Value,
        wait: Duration,
        other: &mut impl FnMut(&Value),
    ) -> Result<Value, String> {
        let id = self.send(req).await?;
        loop {
            let v = self.next(wait).await?;
            if v.get("id") == Some(&id) {
                return Ok(v);
            }
            other(&v);
        }
    }
}

/// What [`run`] hands the caller.
pub enum Seen<'a> {
    /// A line from the server: an event or a reply.
    Line(&'a Value),
    /// Connected and logged in (again) to a server, online.
    Online { server: &'a str },
    /// Lost a server; trying the next one.
    Lost { server: &'a str, reason: &'a str },
}

/// Logs in and goes online at the first server that answers, then sends the requests that
/// come on `requests` and hands every line to `seen`, failing over when a server goes quiet.
/// Ends when `requests` ends and every request sent has its reply.
pub async fn run(
    opts: &ConsoleOptions,
    mut requests: mpsc::Receiver<Value>,
    mut seen: impl FnMut(Seen<'_>),
) -> Result<(), ConsoleError> {
    if opts.servers.is_empty() {
        return Err(ConsoleError::Unreachable("no server given".into()));
    }
    let mut failures = 0;
    let mut at = 0;
    let mut more = true;
    loop {
        let server = &opts.servers[at % opts.servers.len()];
        match session(opts, server, &mut requests, &mut more, &mut seen).await {
            Ok(()) => return Ok(()),
            Err(Lost::Refused(reason)) => {
                return Err(ConsoleError::Refused {
                    server: server.clone(),
                    reason,
                })
            }
            Err(Lost::Gone(reason)) => {
                seen(Seen::Lost {
                    server,
                    reason: &reason,
                });
                failures += 1;
                // Every server tried twice in a row without a session: give up.
                if failures >= 2 * opts.servers.len() {
                    return Err(ConsoleError::Unreachable(reason));
                }
                at += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(Lost::WasOnline(reason)) => {
                seen(Seen::Lost {
                    server,
                    reason: &reason,
                });
                failures = 0;
                at += 1;
            }
        }
    }
}

enum Lost {
    Refused(String),
    /// Never got online there.
    Gone(String),
    /// Was online, then lost it.
    WasOnline(String),
}

async fn session(
    opts: &ConsoleOptions,
    server: &str,
    requests: &mut mpsc::Receiver<Value>,
    more: &mut bool,
    seen: &mut impl FnMut(Seen<'_>),
) -> Result<(), Lost> {
    let wait = opts.request_timeout;
    let mut c = Connection::open(server, opts.dscp, wait)
        .await
        .map_err(Lost::Gone)?;
    // The server's Heartbeat Interval and Request Timeout (its service parameters) govern the
    // failover: quiet past a heartbeat and a request timeout, the server is gone.
    let heartbeat = c.hello["heartbeat_seconds"].as_u64().unwrap_or(30).max(1);
    let timeout = c.hello["request_timeout_seconds"]
        .as_u64()
        .map_or(wait, |s| Duration::from_secs(s.max(1)));
    let quiet = Duration::from_secs(heartbeat) + timeout;
    let mut pass = |v: &Value| seen(Seen::Line(v));
    let login = json!({"cmd": "login", "user": opts.user, "password": opts.password});
    let r = c.call(login, wait, &mut pass).await.map_err(Lost::Gone)?;
    if let Some(e) = r.get("error").and_then(Value::as_str) {
        return Err(Lost::Refused(e.to_string()));
    }
    let r = c
        .call(json!({"cmd": "online"}), wait, &mut pass)
        .await
        .map_err(Lost::Gone)?;
    if let Some(e) = r.get("error").and_then(Value::as_str) {
        return Err(Lost::Gone(e.to_string()));
    }
    seen(Seen::Online { server });
    seen(Seen::Line(&r));
    let mut waiting: Vec<(Value, tokio::time::Instant)> = Vec::new();
    loop {
        if !*more && waiting.is_empty() {
            return Ok(());
        }
        let oldest = waiting.first().map(|(_, t)| *t + wait);
        tokio::select! {
            req = requests.recv(), if *more => match req {
                Some(req) => {
                    let id = c.send(req).await.map_err(Lost::WasOnline)?;
                    waiting.push((id, tokio::time::Instant::now()));
                }
                None => *more = false,
            },
            v = c.next(quiet) => {
                let v = v.map_err(Lost::WasOnline)?;
                if let Some(id) = v.get("id") {
                    waiting.retain(|(w, _)| w != id);
                }
                seen(Seen::Line(&v));
            }
            _ = async {
                match oldest {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {
                return Err(Lost::WasOnline(format!("{server}: no answer within the request timeout ({} s)", wait.as_secs())));
            }
        }
    }
}
