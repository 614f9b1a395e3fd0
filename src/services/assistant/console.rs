//! The Assistant Console protocol on TCP 2912 (the listener `assistant_console`, marked CS3:
//! the cluster's call signalling class, as Cisco marks its own 2912 traffic).
//!
//! Cisco's console protocol is not public (the spec: UNCONFIRMED), so ucm defines its own:
//! - Transport: TCP, plain (TLS is not offered yet). UTF-8 JSON objects, one per line (`\n`),
//!   each at most [`MAX_LINE`] bytes; a longer line gets `{"error":...}` and the connection is
//!   closed. A line begun must end within Request Timeout, and the login must be done within
//!   Request Timeout of connecting (service parameter `console_request_timeout_seconds`).
//! - The server speaks first: `{"event":"hello","protocol":"ucm-assistant-console/1",
//!   "heartbeat_seconds":30,"request_timeout_seconds":30}`, then sends `{"event":"heartbeat"}`
//!   every Heartbeat Interval (`console_heartbeat_seconds`): a console that hears nothing for
//!   longer fails over to its backup server.
//! - Requests: `{"id":ANY,"cmd":NAME,...}`; each gets one reply with the same `id`:
//!   `{"id":..,"ok":true,...}` or `{"id":..,"error":"what went wrong"}` (a conflicting `set`
//!   also carries `"conflict":true` and the state as it is).
//!   - `login` `user` `password`: an end user who is an assistant of some manager. First, and
//!     only once; a failed login closes the connection.
//!   - `online` / `offline`: events of the managers' lines and states flow while online
//!     (`online` answers with the managers and their states).
//!   - `managers`: the managers, their lines, the assistant's proxy lines and their states.
//!   - `set` `manager` `change` (the HTTP API's change: `dnd`, `divert_all`, `divert_target`,
//!     `filter_on`, `filter_mode`, `inclusive_filters`, `exclusive_filters`, `if_version`):
//!     the database decides between racing writers.
//!   - `to_manager` `call`: a call ringing at the assistant's proxy line goes to the manager.
//!   - `divert` `call` `to`: a call ringing at the assistant's proxy line goes to `to`.
//!   - `transfer` `call` [`to`]: a call the assistant answered for a manager (connected at the
//!     assistant's phone) goes to the manager's line, or to `to`; the assistant's phone is let
//!     go when the target answers, and the call stays if it does not within 30 s.
//!   - `intercept` `manager`: the oldest call ringing at the manager's assistants goes to the
//!     manager.
//!   - `directory` `name`: end users whose first or last name (or user ID) starts with
//!     `name`; at most 25 entries, past that the seed's "Your search returned more than 25
//!     entries. Please refine your search."
//!   - `ping`: `{"ok":true}`.
//! - Events (online): `{"event":"state","manager":..,"state":{..}}` when a manager's state
//!   changes (on this node at once; changes made on other nodes by the next heartbeat), and
//!   `{"event":"line","manager":..,"role":"manager"|"proxy","dn":..,"call":..,
//!   "state":"ringing"|"connected"|"held"|"idle","device":..}` for the managers' lines and
//!   the assistant's proxy lines.
//!
//! Strangers get bounded work: at most [`MAX_CONNECTIONS`] connections (within the node's
//! descriptor share; past it a connection gets one error line and is closed), nothing but a
//! login before Request Timeout, no line past [`MAX_LINE`], and a console that does not read
//! its events ([`QUEUE`] lines behind) is disconnected.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use super::model::{Manager, Mode};
use super::store::{Changed, ManagerChange, ManagerState, ManagerStates};
use super::AssistantService;
use crate::services::authenticate::SecretCheck;

pub const PROTOCOL: &str = "ucm-assistant-console/1";
/// Cisco IPMA Server Port.
pub const PORT: u16 = 2912;
/// The longest request line, in bytes.
pub const MAX_LINE: usize = 8192;
/// Connections the listener holds at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// Lines queued for a console before it counts as not reading.
pub const QUEUE: usize = 1024;
/// Directory entries one search returns at most (the seed).
pub const DIRECTORY_MAX: usize = 25;
pub const DIRECTORY_TOO_MANY: &str =
    "Your search returned more than 25 entries. Please refine your search.";

/// Serves the console listener until `stop`.
pub async fn serve(
    svc: Arc<AssistantService>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let cap = crate::net::limits::per_listener_cap(MAX_CONNECTIONS);
    let slots = Arc::new(Semaphore::new(cap));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((sock, peer)) => {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        // Full: one line, never waited for, and the connection closed.
                        let _ = sock.try_write(b"{\"error\":\"the Assistant server is full; try again later\"}\n");
                        continue;
                    };
                    let svc = svc.clone();
                    conns.spawn(async move {
                        let _held = permit;
                        session(svc, sock, peer).await;
                    });
                }
                Err(e) => {
                    // Out of descriptors, say: wait for connections to end.
                    tracing::warn!(error = %e, "assistant console: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    conns.abort_all();
}

enum Line {
    Full(Vec<u8>),
    /// Bytes taken, no end of line yet.
    Partial,
    TooLong,
    Eof,
}

/// Reads towards the next line into `buf` (cancel safe: what was read stays in `buf`).
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> std::io::Result<Line> {
    let avail = r.fill_buf().await?;
    if avail.is_empty() {
        return Ok(Line::Eof);
    }
    let (take, end) = match avail.iter().position(|b| *b == b'\n') {
        Some(i) => (i, Some(i + 1)),
        None => (avail.len(), None),
    };
    let room = (MAX_LINE + 1).saturating_sub(buf.len());
    buf.extend_from_slice(&avail[..take.min(room)]);
    r.consume(end.unwrap_or(take));
    if buf.len() > MAX_LINE {
        return Ok(Line::TooLong);
    }
    Ok(match end {
        Some(_) => Line::Full(std::mem::take(buf)),
        None => Line::Partial,
    })
}

/// A logged-in assistant.
struct Assistant {
    user: String,
    /// Kept for the session: the console answers on the assistant's phone with the
    /// assistant's own credentials (the phone checks them like any push).
    password: String,
    /// The managers the assistant serves, as the definition has them.
    managers: Vec<Manager>,
    /// Lines watched: DN → (manager, "manager" or "proxy").
    watched: HashMap<String, (String, &'static str)>,
    online: bool,
    /// The state version last sent, per manager.
    sent: HashMap<String, i64>,
}

impl Assistant {
    fn new(svc: &AssistantService, user: &str, password: &str) -> Assistant {
        let managers: Vec<Manager> = svc
            .section()
            .managers
            .iter()
            .filter(|m| m.assistants.iter().any(|a| a.user == user))
            .cloned()
            .collect();
        let mut watched = HashMap::new();
        for m in &managers {
            watched.insert(m.line.clone(), (m.user.clone(), "manager"));
            for a in m.assistants.iter().filter(|a| a.user == user) {
                if let Some(pl) = &a.proxy_line {
                    watched.insert(pl.clone(), (m.user.clone(), "proxy"));
                }
            }
        }
        Assistant {
            user: user.to_string(),
            password: password.to_string(),
            managers,
            watched,
            online: false,
            sent: HashMap::new(),
        }
    }

    fn manager(&self, user: &str) -> Option<&Manager> {
        self.managers.iter().find(|m| m.user == user)
    }

    fn proxy_line(&self, m: &Manager) -> Option<String> {
        m.assistants
            .iter()
            .find(|a| a.user == self.user)
            .and_then(|a| a.proxy_line.clone())
    }
}

/// Queues a line for the console; false when the console is not reading (or gone).
fn send(out: &mpsc::Sender<String>, v: &Value) -> bool {
    let mut line = v.to_string();
    line.push('\n');
    out.try_send(line).is_ok()
}

async fn session(svc: Arc<AssistantService>, sock: TcpStream, peer: SocketAddr) {
    let prm = svc.parameters();
    let heartbeat = Duration::from_secs(u64::from(prm.console_heartbeat_seconds.max(1)));
    let request_timeout =
        Duration::from_secs(u64::from(prm.console_request_timeout_seconds.max(1)));
    let (rd, mut wr) = sock.into_split();
    let (out, mut queued) = mpsc::channel::<String>(QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(line) = queued.recv().await {
            match tokio::time::timeout(request_timeout, wr.write_all(line.as_bytes())).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut rd = BufReader::with_capacity(4096, rd);
    send(
        &out,
        &json!({
            "event": "hello",
            "protocol": PROTOCOL,
            "heartbeat_seconds": heartbeat.as_secs(),
            "request_timeout_seconds": request_timeout.as_secs(),
        }),
    );
    let login_by = Instant::now() + request_timeout;
    let mut me: Option<Assistant> = None;
    let mut lines = svc.node.call_control.subscribe();
    let shared = svc.node.shared::<super::feed::AssistantShared>();
    let mut states = shared.states.subscribe();
    let mut tick = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    let mut buf = Vec::new();
    let mut line_begun: Option<Instant> = None;
    loop {
        let deadline = match (&me, line_begun) {
            (None, _) => Some(login_by),
            (Some(_), Some(t)) => Some(t + request_timeout),
            (Some(_), None) => None,
        };
        let online = me.as_ref().is_some_and(|a| a.online);
        tokio::select! {
            r = read_line(&mut rd, &mut buf) => match r {
                Ok(Line::Partial) => {
                    line_begun.get_or_insert_with(Instant::now);
                }
                Ok(Line::Full(l)) => {
                    line_begun = None;
                    if l.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let (reply, close) = request(&svc, peer, &mut me, &l).await;
                    if !send(&out, &reply) || close {
                        break;
                    }
                    if !online && me.as_ref().is_some_and(|a| a.online) {
                        // Line events from going online on, not what happened before.
                        lines = lines.resubscribe();
                        states = states.resubscribe();
                    }
                }
                Ok(Line::TooLong) => {
                    send(&out, &json!({"error": format!("a request line is longer than {MAX_LINE} bytes")}));
                    break;
                }
                Ok(Line::Eof) | Err(_) => break,
            },
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                let what = if me.is_none() { "no login" } else { "a request line did not end" };
                send(&out, &json!({"error": format!("{what} within the request timeout ({} s)", request_timeout.as_secs())}));
                break;
            }
            ev = lines.recv(), if online => {
                let Some(a) = me.as_ref() else { continue };
                match ev {
                    Ok(ev) => {
                        if let Some((manager, role)) = a.watched.get(&ev.dn) {
                            let v = json!({
                                "event": "line",
                                "manager": manager,
                                "role": role,
                                "dn": ev.dn,
                                "call": ev.call,
                                "state": ev.state,
                                "device": ev.device,
                            });
                            if !send(&out, &v) {
                                break;
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        if !send(&out, &json!({"event": "lagged", "missed": n})) {
                            break;
                        }
                    }
                    Err(_) => lines = svc.node.call_control.subscribe(),
                }
            }
            ev = states.recv(), if online => {
                let Some(a) = me.as_mut() else { continue };
                match ev {
                    Ok((manager, state)) => {
                        if a.manager(&manager).is_some() && !state_event(&out, a, &manager, &state) {
                            break;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Read them again at the next heartbeat.
                        a.sent.clear();
                    }
                    Err(_) => states = shared.states.subscribe(),
                }
            }
            _ = tick.tick() => {
                if !send(&out, &json!({"event": "heartbeat"})) {
                    break;
                }
                // Changes made through other nodes reach online consoles here.
                if let Some(a) = me.as_mut().filter(|a| a.online) {
                    let ms: Vec<String> = a.managers.iter().map(|m| m.user.clone()).collect();
                    let mut gone = false;
                    for m in ms {
                        if let Ok(s) = svc.node.store.manager_state(&m).await {
                            if !state_event(&out, a, &m, &s) {
                                gone = true;
                                break;
                            }
                        }
                    }
                    if gone {
                        break;
                    }
                }
            }
        }
    }
    if let Some(a) = &me {
        tracing::info!(assistant = %a.user, %peer, "assistant console: session ended");
    }
    drop(out);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

/// Sends the manager's state when it is newer than what the console has.
fn state_event(
    out: &mpsc::Sender<String>,
    a: &mut Assistant,
    manager: &str,
    s: &ManagerState,
) -> bool {
    if a.sent.get(manager).is_some_and(|v| *v >= s.version) {
        return true;
    }
    a.sent.insert(manager.to_string(), s.version);
    send(
        out,
        &json!({"event": "state", "manager": manager, "state": s}),
    )
}

fn field<'a>(req: &'a Value, name: &str) -> Result<&'a str, String> {
    req.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{name:?} (a string) is missing"))
}

fn call_field(req: &Value) -> Result<u64, String> {
    req.get("call")
        .and_then(Value::as_u64)
        .ok_or_else(|| "\"call\" (a call number from a line event) is missing".to_string())
}

/// A refused request: `{"error":...}` and what else the reply carries.
struct Failure(Value);

impl From<String> for Failure {
    fn from(e: String) -> Failure {
        Failure(json!({ "error": e }))
    }
}

impl From<&str> for Failure {
    fn from(e: &str) -> Failure {
        Failure(json!({ "error": e }))
    }
}

/// Handles one request line: the reply, and whether to close the connection after it.
async fn request(
    svc: &Arc<AssistantService>,
    peer: SocketAddr,
    me: &mut Option<Assistant>,
    line: &[u8],
) -> (Value, bool) {
    let req: Value = match serde_json::from_slice(line) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return (json!({"error": "a request is a JSON object"}), false),
        Err(e) => {
            return (
                json!({"error": format!("the request does not parse: {e}")}),
                false,
            )
        }
    };
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let cmd = req.get("cmd").and_then(Value::as_str).unwrap_or("");
    let (reply, close) = match (cmd, me.as_mut()) {
        ("login", None) => login(svc, peer, me, &req).await,
        ("login", Some(_)) => (Err("already logged in".into()), false),
        ("ping", _) => (Ok(json!({})), false),
        (_, None) if cmd.is_empty() => (Err("\"cmd\" is missing".into()), false),
        (_, None) => (Err(format!("{cmd:?}: log in first").into()), false),
        (_, Some(a)) => (command(svc, a, cmd, &req).await, false),
    };
    let mut v = match reply {
        Ok(mut v) => {
            if !v.is_object() {
                v = json!({});
            }
            v["ok"] = json!(true);
            v
        }
        Err(Failure(v)) => v,
    };
    v["id"] = id;
    (v, close)
}

async fn login(
    svc: &Arc<AssistantService>,
    peer: SocketAddr,
    me: &mut Option<Assistant>,
    req: &Value,
) -> (Result<Value, Failure>, bool) {
    let (user, password) = match (field(req, "user"), field(req, "password")) {
        (Ok(u), Ok(p)) => (u, p),
        (Err(e), _) | (_, Err(e)) => return (Err(e.into()), true),
    };
    let check = crate::services::authenticate::check_password(&svc.node, user, password);
    match crate::services::authenticate::with_source(peer.ip(), check).await {
        SecretCheck::Ok => {}
        SecretCheck::Busy { retry_after } | SecretCheck::Throttled { retry_after } => {
            return (
                Err(format!("the server is busy: try again in {retry_after} s").into()),
                true,
            )
        }
        _ => {
            tracing::info!(user, "assistant console: login refused");
            return (Err("login failed: wrong user ID or password".into()), true);
        }
    }
    let a = Assistant::new(svc, user, password);
    if a.managers.is_empty() {
        return (
            Err(format!("{user:?} is not an assistant of any manager").into()),
            true,
        );
    }
    tracing::info!(
        assistant = user,
        managers = a.managers.len(),
        "assistant console: logged in"
    );
    let v = json!({"user": a.user, "managers": a.managers.iter().map(|m| m.user.clone()).collect::<Vec<_>>()});
    *me = Some(a);
    (Ok(v), false)
}

/// The managers with their lines and states.
async fn managers(
    svc: &Arc<AssistantService>,
    a: &mut Assistant,
    mark_sent: bool,
) -> Result<Value, String> {
    let mut list = Vec::new();
    for m in a.managers.clone() {
        let s = svc
            .node
            .store
            .manager_state(&m.user)
            .await
            .map_err(unavailable)?;
        if mark_sent {
            a.sent.insert(m.user.clone(), s.version);
        }
        list.push(json!({
            "manager": m.user,
            "line": m.line,
            "mode": m.mode,
            "proxy_line": a.proxy_line(&m),
            "state": s,
        }));
    }
    Ok(json!({ "managers": list }))
}

fn unavailable(e: impl std::fmt::Display) -> String {
    tracing::warn!(error = %e, "assistant console: database unavailable");
    "the database is unavailable: Assistant settings cannot be read or changed now (calls are still handled)".into()
}

/// Answers on the assistant's phone that has `line` (the proxy line): a push of `Key:Offhook`
/// (a ringing phone goes off hook: it answers) to the phone's `/CGI/Execute`, at the address
/// it registered from, with the assistant's credentials. The device pushed.
async fn answer_on_phone(
    svc: &AssistantService,
    a: &Assistant,
    line: &str,
) -> Result<String, Failure> {
    use crate::wire::xml::{CiscoIPPhoneObject, Execute, ExecuteReply};
    let cluster = svc.node.cluster();
    let associated: Vec<String> = cluster
        .end_users
        .iter()
        .filter(|u| u.userid == a.user)
        .flat_map(|u| u.associated_devices.iter().cloned())
        .collect();
    let devices: Vec<String> = cluster
        .devices
        .iter()
        .filter(|d| {
            (d.owner.as_deref() == Some(a.user.as_str()) || associated.contains(&d.name))
                && d.lines.iter().any(|l| l.dn == line)
        })
        .map(|d| d.name.clone())
        .collect();
    drop(cluster);
    let port = svc.parameters().phone_http_port;
    let client = svc
        .push_client()
        .map_err(|e| format!("no HTTP client to push with: {e}"))?;
    let xml = CiscoIPPhoneObject::Execute(Execute::single("Key:Offhook")).to_xml();
    let form = format!("XML={}", crate::wire::codec::percent_encode(&xml));
    let mut why = format!("no phone of yours with line {line} is registered");
    for d in devices {
        let Some(b) = svc.node.registrar.device_bindings(&d).into_iter().next() else {
            continue;
        };
        let url = match b.source.ip() {
            std::net::IpAddr::V6(v6) => format!("http://[{v6}]:{port}/CGI/Execute"),
            ip => format!("http://{ip}:{port}/CGI/Execute"),
        };
        let r = client
            .post(&url)
            .basic_auth(&a.user, Some(&a.password))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form.clone())
            .send()
            .await;
        let body = match r {
            Ok(resp) => resp.bytes().await.unwrap_or_default(),
            Err(e) => {
                why = format!("{d} did not take the push: {}", e.without_url());
                continue;
            }
        };
        match crate::wire::xml::parse_execute_reply(&body) {
            Ok(ExecuteReply::Response(r)) if r.all_ok() => return Ok(d),
            Ok(_) => why = format!("{d} refused the push"),
            Err(e) => why = format!("{d} answered no CiscoIPPhoneResponse: {e}"),
        }
    }
    Err(why.into())
}

/// A call ringing at one of `a`'s proxy lines, and its manager.
fn ringing_call(svc: &AssistantService, a: &Assistant, call: u64) -> Result<Manager, String> {
    let at = super::lock(&svc.ringing).get(&call).cloned();
    let Some(at) = at else {
        return Err(format!("call {call} is not ringing at an assistant"));
    };
    let m = a
        .manager(&at.manager)
        .filter(|m| {
            m.assistants
                .get(at.assistant)
                .is_some_and(|x| x.user == a.user)
        })
        .ok_or_else(|| format!("call {call} is not ringing at your proxy line"))?;
    Ok(m.clone())
}

async fn command(
    svc: &Arc<AssistantService>,
    a: &mut Assistant,
    cmd: &str,
    req: &Value,
) -> Result<Value, Failure> {
    let cc = &svc.node.call_control;
    match cmd {
        "online" => {
            a.online = true;
            Ok(managers(svc, a, true).await?)
        }
        "offline" => {
            a.online = false;
            a.sent.clear();
            Ok(json!({}))
        }
        "managers" => Ok(managers(svc, a, false).await?),
        "set" => {
            let user = field(req, "manager")?;
            let m = a
                .manager(user)
                .cloned()
                .ok_or_else(|| format!("you are not an assistant of {user:?}"))?;
            let mut change: ManagerChange = serde_json::from_value(req.get("change").cloned().unwrap_or(Value::Null))
                .map_err(|e| format!("\"change\" does not parse: {e}"))?;
            if let Some(v) = req.get("if_version").and_then(Value::as_i64) {
                change.if_version = Some(v);
            }
            super::http::validate(&m, &change)?;
            match svc.node.store.change_manager_state(&m.user, &change, super::unix_now()).await {
                Ok(Changed::Applied(s)) => {
                    tracing::info!(manager = %m.user, assistant = %a.user, version = s.version, "assistant: manager state changed from the console");
                    svc.state_changed(&m, &s);
                    Ok(json!({"manager": m.user, "state": s}))
                }
                Ok(Changed::Conflict(s)) => Err(Failure(json!({
                    "error": format!("conflict: {user:?}'s state is at version {} now", s.version),
                    "conflict": true,
                    "manager": m.user,
                    "state": s,
                }))),
                Err(e) => Err(unavailable(e).into()),
            }
        }
        "answer" => {
            let call = call_field(req)?;
            let m = ringing_call(svc, a, call)?;
            let line = a.proxy_line(&m).unwrap_or_default();
            let device = answer_on_phone(svc, a, &line).await?;
            tracing::info!(call, manager = %m.user, assistant = %a.user, %device, "assistant: call answered from the console");
            Ok(json!({"call": call, "device": device}))
        }
        "to_manager" => {
            let call = call_field(req)?;
            let line = svc.to_manager(&a.user, call).await?;
            Ok(json!({"call": call, "to": line}))
        }
        "transfer" => {
            let call = call_field(req)?;
            let to = req.get("to").and_then(Value::as_str);
            let to = svc.transfer_answered(&a.user, call, to).await?;
            Ok(json!({"call": call, "to": to}))
        }
        "divert" => {
            let call = call_field(req)?;
            let to = field(req, "to")?.trim().to_string();
            crate::dialplan::pattern::validate_digits(&to)
                .map_err(|_| format!("{to:?} is not a number to dial"))?;
            let _ = ringing_call(svc, a, call)?;
            super::lock(&svc.ringing).remove(&call);
            cc.redirect(call, &to).await.map_err(|e| format!("call {call} could not be diverted: {e}"))?;
            Ok(json!({"call": call, "to": to}))
        }
        "intercept" => {
            let user = field(req, "manager")?;
            let m = a
                .manager(user)
                .cloned()
                .ok_or_else(|| format!("you are not an assistant of {user:?}"))?;
            if m.mode == Mode::Shared {
                return Err("intercept is not available in shared line mode".into());
            }
            match svc.intercept(&m).await {
                Some(call) => Ok(json!({"call": call, "to": m.line})),
                None => Err(format!("no call is ringing at an assistant of {:?}", m.user).into()),
            }
        }
        "directory" => {
            let name = field(req, "name")?.trim().to_lowercase();
            if name.chars().count() > 64 {
                return Err("\"name\": at most 64 characters".into());
            }
            let cluster = svc.node.cluster();
            let mut hits: Vec<Value> = Vec::new();
            for u in cluster.end_users.iter() {
                let starts = |s: &str| s.to_lowercase().starts_with(&name);
                if !(starts(u.first_name.as_deref().unwrap_or(""))
                    || starts(&u.last_name)
                    || starts(&u.userid))
                {
                    continue;
                }
                if hits.len() == DIRECTORY_MAX {
                    return Err(DIRECTORY_TOO_MANY.into());
                }
                hits.push(json!({
                    "user": u.userid,
                    "name": u.display_name(),
                    "number": crate::services::directory::number_of(u),
                }));
            }
            Ok(json!({ "entries": hits }))
        }
        "" => Err("\"cmd\" is missing".into()),
        other => Err(format!(
            "unknown command {other:?} (login, online, offline, managers, set, answer, to_manager, transfer, divert, intercept, directory, ping)"
        )
        .into()),
    }
}
