//! The console protocol: the listener `attendant_console` (TLS with the node's certificate,
//! marked CS3 before `listen()`), where an attendant's console opens a WebSocket on
//! [`PATH`] with HTTP Basic credentials (the attendant's end-user password) and then gets its
//! queues' events as JSON text messages, and sends commands:
//! - on connecting: `{"event":"hello","attendant":..,"line":..}`, then
//!   `{"event":"queues","queues":[{"queue":..,"calls":[{"call","position","calling",
//!   "waiting_seconds","device"}]}]}` (the attendant's queues);
//! - as it happens, for the attendant's queues: `{"event":"queued",..}` (a call starts waiting),
//!   `{"event":"answered","call","attendant"}`, `{"event":"left","call","how"}` (abandoned);
//! - commands: `{"cmd":"queues"}` (the queues message again), `{"cmd":"answer","call":N}`
//!   (without `call`: the oldest call waiting in the attendant's queues), answered with
//!   `{"event":"answer","ok":true,"call","line","connected"}` once the attendant's phone
//!   connected (or after 5 s with `connected` false), or `"ok":false` with the HTTP-like
//!   `status` and `error` (409 taken, 404 not waiting ...); `{"cmd":"search","text":..}`
//!   (the directory: users and lines by name or number, with partitions; at most 50,
//!   `more` when more matched), answered with `{"event":"search","results":[..]}`;
//!   `{"cmd":"transfer","call":N,"to":"10002"}` (blind transfer through a service queue,
//!   answered `{"event":"transfer","ok":true,"call","to","device"}` once the caller hears the
//!   music on hold; then `transferring`, and `transferred` or `recall` and `recalled` events),
//!   `{"cmd":"park","call":N}` (answered `{"event":"park","ok":true,"call","park"}`, the park
//!   device's number; a `parked` event), `{"cmd":"retrieve","park":"5921"}` (answered
//!   `{"event":"retrieve","ok":true,"call","line"}` once it rings on the attendant's phone,
//!   409 when another attendant retrieved it first; a `retrieved` event). Else:
//!   `{"event":"error","error":..}`.
//!
//! Bounded: at most [`MAX_SESSIONS`] connections, [`MAX_PER_SOURCE`] from one source (the
//! rest are closed at once), [`HANDSHAKE_TIMEOUT`] to complete TLS and the upgrade request
//! (at most [`MAX_REQUEST`] bytes), messages of at most [`MAX_MESSAGE`] bytes (a larger frame
//! is refused from its header: close 1009), and a console that does not read its events for
//! [`WRITE_TIMEOUT`] is dropped. The browser console will be served on this listener too
//! (not built yet: other paths answer 404).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};

use super::model::AttendantUser;
use super::{AnswerError, AttendantService};
use crate::net::per_source::{PerSource, SourceSlot};
use crate::services::authenticate::{check_password, with_source, SecretCheck};
use crate::wire::websocket::{self, Message, Opcode, Reassembly};

/// Its key in the ready line.
pub const LISTENER: &str = "attendant_console";
/// Where consoles open their WebSocket.
pub const PATH: &str = "/attendant/console";
pub const MAX_SESSIONS: usize = 1024;
pub const MAX_PER_SOURCE: usize = 16;
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_REQUEST: usize = 8192;
pub const MAX_MESSAGE: usize = 16 * 1024;
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts consoles until the node stops.
pub async fn serve(
    svc: Arc<AttendantService>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(svc.node.tls.clone());
    let slots = Arc::new(Semaphore::new(MAX_SESSIONS));
    let per_source = Arc::new(PerSource::default());
    let mut sessions = tokio::task::JoinSet::new();
    if let Ok(a) = listener.local_addr() {
        tracing::info!(addr = %a, "attendant: console protocol listening");
    }
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
            _ = stop.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "attendant: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Some(src) = per_source.take(peer.ip(), MAX_PER_SOURCE) else {
            tracing::debug!(%peer, "attendant: source holds its share of console connections; closed");
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "attendant: console connections full; closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let svc = svc.clone();
        let acceptor = acceptor.clone();
        let stop = stop.clone();
        sessions.spawn(async move {
            session(svc, acceptor, stream, peer, (src, permit), stop).await;
        });
    }
    sessions.abort_all();
}

/// The upgrade request, as far as the console protocol needs it.
struct Upgrade {
    path: String,
    websocket: bool,
    key: Option<String>,
    authorization: Option<String>,
}

fn parse_request(head: &str) -> Option<Upgrade> {
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path, version) = (first.next()?, first.next()?, first.next()?);
    if method != "GET" || !version.starts_with("HTTP/1.") {
        return None;
    }
    let mut u = Upgrade {
        path: path.to_string(),
        websocket: false,
        key: None,
        authorization: None,
    };
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim().to_ascii_lowercase().as_str() {
            "upgrade" => u.websocket = v.eq_ignore_ascii_case("websocket"),
            "sec-websocket-key" => u.key = Some(v.to_string()),
            "authorization" => u.authorization = Some(v.to_string()),
            _ => {}
        }
    }
    Some(u)
}

fn response(status: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads the request head (up to the blank line), at most [`MAX_REQUEST`] bytes.
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Some((String::from_utf8(buf).ok()?, rest));
        }
        if buf.len() >= MAX_REQUEST {
            return None;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The attendant behind the request's credentials, or the response that refuses it.
async fn authenticate(
    svc: &Arc<AttendantService>,
    peer: SocketAddr,
    authorization: Option<&str>,
) -> Result<AttendantUser, Vec<u8>> {
    let unauthorized = || {
        response(
            "401 Unauthorized",
            "WWW-Authenticate: Basic realm=\"ucm\"\r\n",
            "credentials of an attendant are needed\n",
        )
    };
    let Some((user, password)) = authorization.and_then(crate::wire::codec::parse_basic_auth)
    else {
        return Err(unauthorized());
    };
    match with_source(peer.ip(), check_password(&svc.node, &user, &password)).await {
        SecretCheck::Ok => {}
        SecretCheck::Busy { retry_after } => {
            return Err(response(
                "503 Service Unavailable",
                &format!("Retry-After: {retry_after}\r\n"),
                "busy checking credentials; try again later\n",
            ))
        }
        SecretCheck::Throttled { retry_after } => {
            return Err(response(
                "429 Too Many Requests",
                &format!("Retry-After: {retry_after}\r\n"),
                "too many failed checks from this address; try again later\n",
            ))
        }
        _ => return Err(unauthorized()),
    }
    svc.attendant(&user).ok_or_else(|| {
        response(
            "403 Forbidden",
            "",
            &format!("{user:?} is not an attendant\n"),
        )
    })
}

async fn session(
    svc: Arc<AttendantService>,
    acceptor: tokio_rustls::TlsAcceptor,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    _held: (SourceSlot, OwnedSemaphorePermit),
    stop: watch::Receiver<bool>,
) {
    // Everything before the upgrade within the handshake time: a slow or silent stranger
    // holds one of its source's few places for that long, no more.
    let opened = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let mut tls = acceptor.accept(stream).await.ok()?;
        let (head, rest) = read_head(&mut tls).await?;
        Some((tls, head, rest))
    })
    .await;
    let Ok(Some((mut tls, head, rest))) = opened else {
        return;
    };
    let Some(req) = parse_request(&head) else {
        return refuse(
            &mut tls,
            response("400 Bad Request", "", "not an HTTP/1.1 GET request\n"),
        )
        .await;
    };
    if req.path != PATH {
        return refuse(
            &mut tls,
            response(
                "404 Not Found",
                "",
                &format!("the console protocol is at {PATH}\n"),
            ),
        )
        .await;
    }
    let user = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        authenticate(&svc, peer, req.authorization.as_deref()),
    )
    .await
    {
        Ok(Ok(u)) => u,
        Ok(Err(r)) => return refuse(&mut tls, r).await,
        Err(_) => return,
    };
    let Some(key) = req.key.filter(|_| req.websocket) else {
        return refuse(
            &mut tls,
            response(
                "426 Upgrade Required",
                "Upgrade: websocket\r\n",
                "a WebSocket upgrade is needed\n",
            ),
        )
        .await;
    };
    let accept = websocket::accept_key(&key);
    let ok = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if write(&mut tls, ok.as_bytes()).await.is_err() {
        return;
    }
    tracing::info!(attendant = %user.user, %peer, "attendant: console connected");
    let why = run_session(&svc, &user, &mut tls, rest, stop).await;
    tracing::info!(attendant = %user.user, %peer, why, "attendant: console disconnected");
}

/// Answers the request with `r` and closes.
async fn refuse<S: AsyncWrite + Unpin>(s: &mut S, r: Vec<u8>) {
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        let _ = s.write_all(&r).await;
        let _ = s.shutdown().await;
    })
    .await;
}

async fn write<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> Result<(), ()> {
    match tokio::time::timeout(WRITE_TIMEOUT, s.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, v: &serde_json::Value) -> Result<(), ()> {
    write(
        s,
        &websocket::encode(Opcode::Text, v.to_string().as_bytes(), None),
    )
    .await
}

async fn close<S: AsyncWrite + Unpin>(s: &mut S, code: u16, reason: &str) {
    let _ = write(
        s,
        &websocket::encode(Opcode::Close, &websocket::close_payload(code, reason), None),
    )
    .await;
    let _ = s.shutdown().await;
}

/// The queue messages of the attendant's queues.
async fn send_queues<S: AsyncWrite + Unpin>(
    svc: &AttendantService,
    user: &AttendantUser,
    s: &mut S,
) -> Result<(), ()> {
    match svc.queue_view(&svc.queues_of(&user.user)).await {
        Ok(view) => send(s, &serde_json::json!({"event": "queues", "queues": view})).await,
        Err(e) => {
            tracing::warn!(error = %e, "attendant: database unavailable");
            send(
                s,
                &serde_json::json!({"event": "error", "error": "the database is unavailable: the queues cannot be read now"}),
            )
            .await
        }
    }
}

async fn run_session<S: AsyncRead + AsyncWrite + Unpin>(
    svc: &Arc<AttendantService>,
    user: &AttendantUser,
    s: &mut S,
    mut buf: Vec<u8>,
    mut stop: watch::Receiver<bool>,
) -> &'static str {
    let mut events = svc.events.subscribe();
    let hello = serde_json::json!({"event": "hello", "attendant": user.user, "line": user.line});
    if send(s, &hello).await.is_err() || send_queues(svc, user, s).await.is_err() {
        return "write failed";
    }
    let mut reassembly = Reassembly::default();
    let mut chunk = vec![0u8; 4096];
    loop {
        // Whole frames already read first.
        loop {
            let frame = match websocket::decode(&mut buf, true, MAX_MESSAGE) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    close(s, e.close_code, &e.reason).await;
                    return "protocol error";
                }
            };
            let msg = match reassembly.push(frame, MAX_MESSAGE) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    close(s, e.close_code, &e.reason).await;
                    return "protocol error";
                }
            };
            match msg {
                Message::Text(t) => {
                    if command(svc, user, s, &t).await.is_err() {
                        return "write failed";
                    }
                }
                Message::Binary(_) => {
                    close(s, 1003, "text messages only").await;
                    return "binary message";
                }
                Message::Ping(p) => {
                    if write(s, &websocket::encode(Opcode::Pong, &p, None))
                        .await
                        .is_err()
                    {
                        return "write failed";
                    }
                }
                Message::Pong => {}
                Message::Close(_) => {
                    close(s, 1000, "").await;
                    return "closed by the console";
                }
            }
        }
        tokio::select! {
            r = s.read(&mut chunk) => match r {
                Ok(0) | Err(_) => return "connection closed",
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if svc.queues_of(&user.user).iter().any(|q| q.name == ev.queue)
                        && send(s, &ev.body).await.is_err()
                    {
                        return "write failed";
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Missed some: the whole picture again.
                    if send_queues(svc, user, s).await.is_err() {
                        return "write failed";
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return "service stopped",
            },
            _ = stop.changed() => {
                close(s, 1001, "the node is stopping").await;
                return "node stopping";
            }
        }
    }
}

async fn command<S: AsyncWrite + Unpin>(
    svc: &Arc<AttendantService>,
    user: &AttendantUser,
    s: &mut S,
    text: &str,
) -> Result<(), ()> {
    let v: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return send(
                s,
                &serde_json::json!({"event": "error", "error": format!("not JSON: {e}")}),
            )
            .await
        }
    };
    match v.get("cmd").and_then(|c| c.as_str()) {
        Some("queues") => send_queues(svc, user, s).await,
        Some("search") => {
            let text = v.get("text").and_then(|t| t.as_str()).unwrap_or("");
            let reply = match super::directory::valid_query(text) {
                Ok(q) => {
                    let (results, more) =
                        super::directory::search(svc.node.cluster().definition(), q);
                    serde_json::json!({"event": "search", "text": q, "results": results, "more": more})
                }
                Err(e) => serde_json::json!({"event": "error", "error": format!("search: {e}")}),
            };
            send(s, &reply).await
        }
        Some("answer") => {
            let call = match v.get("call") {
                Some(c) => match c.as_u64() {
                    Some(c) => c,
                    None => {
                        return send(
                            s,
                            &serde_json::json!({"event": "answer", "ok": false, "status": 400, "error": "\"call\" is the call's id (a number)"}),
                        )
                        .await
                    }
                },
                // No call named: the oldest waiting in the attendant's queues.
                None => {
                    let names: Vec<String> =
                        svc.queues_of(&user.user).into_iter().map(|q| q.name).collect();
                    match svc.waiting_in(&names).await.map(|w| w.first().map(|c| c.call)) {
                        Ok(Some(c)) => c,
                        Ok(None) => {
                            return send(
                                s,
                                &serde_json::json!({"event": "answer", "ok": false, "status": 404, "error": "no call is waiting in your queues"}),
                            )
                            .await
                        }
                        Err(_) => {
                            return send(
                                s,
                                &serde_json::json!({"event": "answer", "ok": false, "status": 503, "error": "the database is unavailable"}),
                            )
                            .await
                        }
                    }
                }
            };
            let reply = match svc.answer(user, call).await {
                Ok((line, connected)) => serde_json::json!({"event": "answer", "ok": true, "call": call, "line": line, "connected": connected}),
                Err(e) => {
                    let (status, error) = match e {
                        AnswerError::NotWaiting => (404, format!("no call {call} is waiting")),
                        AnswerError::NotYourQueue => {
                            (403, format!("call {call} waits in a queue you do not serve"))
                        }
                        AnswerError::Taken => {
                            (409, format!("call {call} was answered by another attendant"))
                        }
                        AnswerError::Gone(e) => (410, format!("the caller is gone: {e}")),
                        AnswerError::Database(_) => {
                            (503, "the database is unavailable".to_string())
                        }
                    };
                    serde_json::json!({"event": "answer", "ok": false, "call": call, "status": status, "error": error})
                }
            };
            send(s, &reply).await
        }
        Some(cmd @ ("transfer" | "park")) => {
            let Some(call) = v.get("call").and_then(|c| c.as_u64()) else {
                return send(
                    s,
                    &serde_json::json!({"event": cmd, "ok": false, "status": 400, "error": "\"call\" is the call's id (a number)"}),
                )
                .await;
            };
            let r = if cmd == "transfer" {
                let Some(to) = v.get("to").and_then(|t| t.as_str()) else {
                    return send(
                        s,
                        &serde_json::json!({"event": cmd, "ok": false, "call": call, "status": 400, "error": "\"to\" is the number to transfer to (a string)"}),
                    )
                    .await;
                };
                svc.transfer(user, call, to)
                    .await
                    .map(|device| serde_json::json!({"event": cmd, "ok": true, "call": call, "to": to, "device": device}))
            } else {
                svc.park(user, call)
                    .await
                    .map(|park| serde_json::json!({"event": cmd, "ok": true, "call": call, "park": park}))
            };
            let reply = r.unwrap_or_else(|e| {
                serde_json::json!({"event": cmd, "ok": false, "call": call, "status": e.status, "error": e.error})
            });
            send(s, &reply).await
        }
        Some("retrieve") => {
            let Some(park) = v.get("park").and_then(|p| p.as_str()) else {
                return send(
                    s,
                    &serde_json::json!({"event": "retrieve", "ok": false, "status": 400, "error": "\"park\" is the park device's number (a string)"}),
                )
                .await;
            };
            let reply = match svc.retrieve(user, park).await {
                Ok(call) => serde_json::json!({"event": "retrieve", "ok": true, "park": park, "call": call, "line": user.line}),
                Err(e) => serde_json::json!({"event": "retrieve", "ok": false, "park": park, "status": e.status, "error": e.error}),
            };
            send(s, &reply).await
        }
        other => {
            send(
                s,
                &serde_json::json!({"event": "error", "error": format!("unknown command {:?} (commands: queues, answer, search, transfer, park, retrieve)", other.unwrap_or(""))}),
            )
            .await
        }
    }
}
