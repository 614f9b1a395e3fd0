//! SIP: message model ([`message`]), and the node's SIP service over UDP, TCP and TLS.
//!
//! The node answers what a Unified CM node answers to any peer: OPTIONS pings (trunk keepalive,
//! monitoring), and refuses malformed requests with the right 4xx. Registrar, digit analysis
//! and the B2BUA build on this module (call-control issue).

pub mod b2bua;
pub mod digest;
pub mod registrar;
pub mod transaction;
pub mod trunks;

// Call control speaks the wire codec.
pub use crate::wire::sdp;
pub use crate::wire::sip as message;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};

use crate::node::metrics::inc;
use crate::node::NodeState;
use message::{Method, ParseError, Request, Response, SipMessage};

/// Methods this node accepts (the Allow header).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, NOTIFY, REFER, INFO, UPDATE";

/// Transport a message arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn parse(s: &str) -> Option<Transport> {
        match s.to_ascii_uppercase().as_str() {
            "UDP" => Some(Transport::Udp),
            "TCP" => Some(Transport::Tcp),
            "TLS" => Some(Transport::Tls),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

/// The services' handle on call control (a Rust API, not a wire protocol): place a call from a
/// user's phone to a destination (third-party call control), end a call, and watch line states.
pub struct CallControl {
    commands: mpsc::Sender<b2bua::Command>,
    receiver: Mutex<Option<mpsc::Receiver<b2bua::Command>>>,
    events: tokio::sync::broadcast::Sender<b2bua::LineEvent>,
}

impl Default for CallControl {
    fn default() -> Self {
        CallControl::new()
    }
}

impl CallControl {
    pub fn new() -> CallControl {
        let (commands, rx) = mpsc::channel(4096);
        let (events, _) = tokio::sync::broadcast::channel(4096);
        CallControl {
            commands,
            receiver: Mutex::new(Some(rx)),
            events,
        }
    }

    /// Rings `device`'s `line` and, once the phone answers, calls `destination` from it.
    /// Resolves when the phone answered (with the call's id) or the attempt failed.
    pub async fn make_call(
        &self,
        device: &str,
        line: &str,
        destination: &str,
    ) -> Result<u64, b2bua::CallError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(b2bua::Command::MakeCall {
            device: device.to_string(),
            line: line.to_string(),
            destination: destination.to_string(),
            reply,
        })
        .await?;
        rx.await.map_err(|_| b2bua::CallError {
            status: 503,
            reason: "call control stopped".into(),
        })?
    }

    /// Ends a call set up by anyone.
    pub async fn end_call(&self, call: u64) -> Result<(), b2bua::CallError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(b2bua::Command::EndCall { call, reply }).await?;
        rx.await.map_err(|_| b2bua::CallError {
            status: 503,
            reason: "call control stopped".into(),
        })?
    }

    /// Registers the caller as the service behind a route point; calls to its DNs arrive on the
    /// returned receiver. Dropping the receiver is the service going down: calls then fall
    /// through to the lines' Call Forward No Answer.
    pub async fn register_route_point(
        &self,
        name: &str,
    ) -> Result<mpsc::UnboundedReceiver<b2bua::OfferedCall>, b2bua::CallError> {
        let (offers, rx) = mpsc::unbounded_channel();
        self.send(b2bua::Command::RegisterRoutePoint {
            name: name.to_string(),
            offers,
        })
        .await?;
        Ok(rx)
    }

    /// Redirects an offered, unanswered call to `destination` without answering it.
    pub async fn redirect(&self, call: u64, destination: &str) -> Result<(), b2bua::CallError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(b2bua::Command::Redirect {
            call,
            destination: destination.to_string(),
            reply,
        })
        .await?;
        rx.await.map_err(|_| b2bua::CallError {
            status: 503,
            reason: "call control stopped".into(),
        })?
    }

    /// Answers a call offered to a route point with the service's SDP answer.
    pub async fn answer(&self, call: u64, sdp: bytes::Bytes) -> Result<(), b2bua::CallError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(b2bua::Command::Answer { call, sdp, reply })
            .await?;
        rx.await.map_err(|_| b2bua::CallError {
            status: 503,
            reason: "call control stopped".into(),
        })?
    }

    /// Refuses a call offered to a route point with `status` and `reason` (the reason phrase
    /// the caller sees, e.g. 488 for a codec the service cannot take).
    pub async fn reject(
        &self,
        call: u64,
        status: u16,
        reason: &str,
    ) -> Result<(), b2bua::CallError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(b2bua::Command::Reject {
            call,
            status,
            reason: reason.to_string(),
            reply,
        })
        .await?;
        rx.await.map_err(|_| b2bua::CallError {
            status: 503,
            reason: "call control stopped".into(),
        })?
    }

    /// The devices on a call now (ringing, connected or held).
    /// Whether `call` is still up: for a service whose line events lagged (a missed Idle).
    pub async fn call_exists(&self, call: u64) -> Result<bool, b2bua::CallError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(b2bua::Command::CallExists { call, reply })
            .await?;
        rx.await.map_err(|_| b2bua::CallError {
            status: 503,
            reason: "call control stopped".into(),
        })
    }

    pub async fn busy_devices(
        &self,
    ) -> Result<std::collections::HashSet<String>, b2bua::CallError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send(b2bua::Command::BusyDevices { reply }).await?;
        rx.await.map_err(|_| b2bua::CallError {
            status: 503,
            reason: "call control stopped".into(),
        })
    }

    /// Tells a device to act on `event` with an unsolicited NOTIFY (`check-sync`: fetch the
    /// configuration again, the reset Unified CM sends after an EM login). Best effort: a
    /// full command queue drops it with a log line.
    pub fn notify_device(&self, device: &str, event: &str) {
        let cmd = b2bua::Command::NotifyDevice {
            device: device.to_string(),
            event: event.to_string(),
        };
        if self.commands.try_send(cmd).is_err() {
            tracing::warn!(device, event, "call control busy: NOTIFY not sent");
        }
    }

    /// Line-state changes from now on (ringing, connected, idle) for monitoring.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<b2bua::LineEvent> {
        self.events.subscribe()
    }

    async fn send(&self, cmd: b2bua::Command) -> Result<(), b2bua::CallError> {
        self.commands.send(cmd).await.map_err(|_| b2bua::CallError {
            status: 503,
            reason: "call control is not running".into(),
        })
    }
}

/// The node's SIP service: stateless answers (OPTIONS, REGISTER) in the transport tasks,
/// everything else through one call-control task that owns the B2BUA.
#[derive(Clone)]
pub struct SipServer {
    state: Arc<NodeState>,
    shared: Arc<Shared>,
}

struct Shared {
    core_tx: mpsc::Sender<(SipMessage, b2bua::Peer)>,
    core_rx: Mutex<Option<mpsc::Receiver<(SipMessage, b2bua::Peer)>>>,
    udp: OnceLock<Arc<UdpSocket>>,
    /// Writers of open TCP and TLS connections, by remote address: requests to a phone go back
    /// over the connection it registered on.
    conns: Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>>,
    nonces: digest::Nonces,
    /// Messages the transport could not deliver (connect or TLS handshake failed), with why:
    /// call control ends their transactions at once.
    failures_tx: mpsc::UnboundedSender<TransportFailure>,
    failures_rx: Mutex<Option<mpsc::UnboundedReceiver<TransportFailure>>>,
    /// How TLS trunk peers are reached, by address (see [`trunks::TrunkTable`]).
    tls_targets: Mutex<Arc<HashMap<SocketAddr, trunks::TlsTarget>>>,
    /// Requests refused with 503 since the last overload warning, and the second (Unix
    /// time) of that warning: under overload one line a second, not one per message.
    overload_refused: std::sync::atomic::AtomicU64,
    overload_warned_at: std::sync::atomic::AtomicI64,
}

/// The writer side of a connection and the receiver its writer task drains.
type ConnChannel = (
    mpsc::UnboundedSender<Vec<u8>>,
    mpsc::UnboundedReceiver<Vec<u8>>,
);

/// What the transport does with a request.
enum Disposition {
    Reply(Response),
    Core,
    Drop,
}

/// Messages queued for call control before new requests are refused with 503.
const CORE_QUEUE: usize = 65_536;

fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// An RFC 7231 date (`Date` header of REGISTER responses; phones set their clocks from it).
fn httpdate_now() -> String {
    let secs = registrar::unix_now();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mn = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(mo - 1).clamp(0, 11) as usize];
    format!("{wd}, {d:02} {mn} {y} {h:02}:{m:02}:{s:02} GMT")
}

fn server_header() -> String {
    format!("ucm/{}", env!("CARGO_PKG_VERSION"))
}

impl SipServer {
    pub fn new(state: Arc<NodeState>) -> SipServer {
        let (core_tx, core_rx) = mpsc::channel(CORE_QUEUE);
        let (failures_tx, failures_rx) = mpsc::unbounded_channel();
        SipServer {
            state,
            shared: Arc::new(Shared {
                core_tx,
                core_rx: Mutex::new(Some(core_rx)),
                udp: OnceLock::new(),
                conns: Mutex::new(HashMap::new()),
                nonces: digest::Nonces::new(rand::random()),
                failures_tx,
                failures_rx: Mutex::new(Some(failures_rx)),
                tls_targets: Mutex::new(Arc::new(HashMap::new())),
                overload_refused: std::sync::atomic::AtomicU64::new(0),
                overload_warned_at: std::sync::atomic::AtomicI64::new(0),
            }),
        }
    }

    /// Decides what happens to a request: answered here, or handed to call control.
    fn disposition(&self, req: &Request, source: SocketAddr, transport: Transport) -> Disposition {
        if req.method == Method::Ack {
            return Disposition::Core;
        }
        // Only parsed requests come here: the parser checked the header syntax.
        if let Err(e) = req.validate_parsed() {
            tracing::info!(%source, transport = transport.as_str(), error = %e, "refusing malformed SIP request");
            let status = e.status.unwrap_or(400);
            return Disposition::Reply(self.respond(req, status, &reason_with_detail(status, &e)));
        }
        match req.method {
            Method::Options | Method::Register => match self.handle_request(req, source, transport)
            {
                Some(r) => Disposition::Reply(r),
                None => Disposition::Drop,
            },
            _ => Disposition::Core,
        }
    }

    /// Answers the requests the node handles without call state (OPTIONS, REGISTER).
    pub fn handle_request(
        &self,
        req: &Request,
        source: SocketAddr,
        transport: Transport,
    ) -> Option<Response> {
        let resp = match &req.method {
            Method::Options => {
                let mut r = self.respond(req, 200, "OK");
                r.headers.push("Allow", ALLOW);
                r.headers.push("Accept", "application/sdp");
                r.headers.push("Supported", "replaces, timer");
                r
            }
            Method::Register => self.register(req, source, transport),
            _ => return None,
        };
        Some(resp)
    }

    fn register(&self, req: &Request, source: SocketAddr, transport: Transport) -> Response {
        let cluster = self.state.cluster();
        let max = cluster.service_parameters.call_manager.register_expires;
        let decision = registrar::decide(&cluster, req, max, |d| cluster.lines_of(d));
        match decision {
            Ok(d) => {
                let device = match &d {
                    registrar::Decision::Bind { device, .. }
                    | registrar::Decision::Unbind { device, .. }
                    | registrar::Decision::Query { device, .. } => device.clone(),
                };
                if let Some(challenge) = self.digest_challenge(&cluster, req, &device, source) {
                    return challenge;
                }
                let bindings = self.state.registrar.apply(&d, transport, source);
                if let registrar::Decision::Bind { device, line, .. } = &d {
                    tracing::debug!(%source, device, line, "registered");
                }
                let mut r = self.respond(req, 200, "OK");
                let now = registrar::unix_now();
                for b in bindings {
                    let left = (b.expires_at - now).max(0);
                    r.headers
                        .push("Contact", format!("<{}>;expires={left}", b.contact));
                }
                r.headers.push("Date", httpdate_now());
                r
            }
            Err(refusal) => {
                tracing::info!(%source, status = refusal.status, reason = %refusal.reason, "REGISTER refused");
                let phrase = format!(
                    "{} ({})",
                    message::default_reason(refusal.status),
                    refusal
                        .reason
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(120)
                        .collect::<String>()
                );
                self.respond(req, refusal.status, &phrase)
            }
        }
    }

    /// When the device's security profile asks for digest authentication, checks the
    /// request's credentials: `None` lets it through, otherwise the 401 (or 403) to send.
    fn digest_challenge(
        &self,
        cluster: &crate::cluster::Cluster,
        req: &Request,
        device: &str,
        source: SocketAddr,
    ) -> Option<Response> {
        let dev = cluster.device(device)?;
        let profile = dev.security_profile.as_ref().and_then(|sp| {
            cluster
                .phone_security_profiles
                .iter()
                .find(|p| &p.name == sp)
        })?;
        if !profile.digest_authentication {
            return None;
        }
        let now = registrar::unix_now();
        let user = dev.digest_user.as_deref().unwrap_or_default();
        let ha1 = cluster.end_user(user).and_then(|u| u.digest_ha1.clone());
        let challenge = |stale: bool| {
            let mut r = self.respond(req, 401, "Unauthorized");
            r.headers
                .push("WWW-Authenticate", self.shared.nonces.challenge(now, stale));
            r
        };
        let Some(auth) = req.headers.get("Authorization") else {
            return Some(challenge(false));
        };
        let Some(ha1) = ha1 else {
            tracing::warn!(
                device,
                "digest authentication required but the digest user has no credentials"
            );
            return Some(self.respond(req, 403, "Forbidden (no digest credentials configured)"));
        };
        let Some(params) = digest::parse_authorization(auth) else {
            return Some(challenge(false));
        };
        match digest::verify(
            &self.shared.nonces,
            &params,
            req.method.as_str(),
            user,
            &ha1,
            now,
        ) {
            digest::Verdict::Ok => None,
            digest::Verdict::Stale => Some(challenge(true)),
            digest::Verdict::Refused(why) => {
                tracing::info!(%source, device, reason = why, "digest authentication failed");
                Some(challenge(false))
            }
        }
    }

    fn respond(&self, req: &Request, status: u16, reason: &str) -> Response {
        let tag = new_tag();
        let mut r = req.make_response(status, reason, Some(&tag));
        r.headers.push("Server", server_header());
        r
    }

    /// Hands a message to call control; a full queue refuses new requests with 503.
    fn to_core(&self, msg: SipMessage, peer: b2bua::Peer) -> Option<Response> {
        match self.shared.core_tx.try_send((msg, peer)) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full((SipMessage::Request(req), _)))
                if req.method != Method::Ack =>
            {
                self.warn_overloaded();
                let mut r = self.respond(&req, 503, "Service Unavailable");
                r.headers.push("Retry-After", "1");
                Some(r)
            }
            Err(_) => None,
        }
    }

    /// Logs that call control is overloaded at most once a second, with how many requests
    /// were refused since the last line (a line per refusal would feed the overload).
    fn warn_overloaded(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.shared.overload_refused.fetch_add(1, Relaxed);
        let now = registrar::unix_now();
        let last = self.shared.overload_warned_at.load(Relaxed);
        if now != last
            && self
                .shared
                .overload_warned_at
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            let refused = self.shared.overload_refused.swap(0, Relaxed);
            tracing::warn!(refused, "call control is overloaded; answering 503");
        }
    }

    /// Runs call control until shutdown: one task owns the B2BUA and its timers.
    pub async fn serve_core(self, mut stop: watch::Receiver<bool>) {
        let rx = match self.shared.core_rx.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        let Some(mut rx) = rx else { return };
        let cmds = match self.state.call_control.receiver.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        let Some(mut cmds) = cmds else { return };
        let failures = match self.shared.failures_rx.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        let Some(mut failures) = failures else { return };
        let mut core = b2bua::B2bua::new(self.state.sip_host.clone(), rand::random());
        core.set_tls_host(self.state.sips_host.clone());
        // Trunk names are resolved before the first call is routed, then kept fresh.
        let table = self.resolve_trunks(&self.state.cluster()).await;
        core.set_resolved(table);
        let (tables_tx, mut tables) = mpsc::channel(4);
        tokio::spawn(self.clone().refresh_trunks(tables_tx, stop.clone()));
        let mut batch = Vec::with_capacity(256);
        let mut first = true;
        loop {
            let deadline = core.next_deadline();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            };
            // Commands queued before the loop started (route points services took while the
            // node was starting) go first, so no early call finds its service absent.
            if first {
                first = false;
                let mut outs = Vec::new();
                while let Ok(cmd) = cmds.try_recv() {
                    let cluster = self.state.cluster();
                    outs.extend(core.on_command(
                        &cluster,
                        &self.state.registrar,
                        cmd,
                        std::time::Instant::now(),
                    ));
                }
                for o in outs {
                    self.dispatch(o);
                }
            }
            let outs = tokio::select! {
                // Everything queued is handled in one wake-up: under load this saves a
                // cross-thread wake per message.
                n = rx.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        break;
                    }
                    let cluster = self.state.cluster();
                    let now = std::time::Instant::now();
                    let mut outs = Vec::new();
                    for (msg, peer) in batch.drain(..) {
                        outs.extend(core.on_message(&cluster, &self.state.registrar, msg, peer, now));
                    }
                    outs
                }
                _ = sleep => {
                    let cluster = self.state.cluster();
                    core.on_timers(&cluster, &self.state.registrar, std::time::Instant::now())
                }
                Some(cmd) = cmds.recv() => {
                    let cluster = self.state.cluster();
                    core.on_command(&cluster, &self.state.registrar, cmd, std::time::Instant::now())
                }
                Some(failure) = failures.recv() => {
                    let cluster = self.state.cluster();
                    let now = std::time::Instant::now();
                    match failure {
                        TransportFailure::Undelivered(msg, reason) => {
                            core.on_transport_failure(&cluster, &self.state.registrar, &msg, &reason, now)
                        }
                        TransportFailure::Closed(peer, reason) => {
                            core.on_connection_lost(&cluster, &self.state.registrar, peer, &reason, now)
                        }
                    }
                }
                Some(table) = tables.recv() => {
                    core.set_resolved(table);
                    Vec::new()
                }
                _ = stop.changed() => break,
            };
            for o in outs {
                self.dispatch(o);
            }
            for e in core.take_events() {
                // Nobody listening is fine.
                let _ = self.state.call_control.events.send(e);
            }
        }
    }

    /// Resolves the trunks of `cluster`; the TLS targets take effect here, the returned table
    /// is for the core.
    async fn resolve_trunks(&self, cluster: &crate::cluster::Cluster) -> Arc<b2bua::Resolved> {
        let node_cert = self.state.data_dir.join(crate::net::tls::CERT_FILE);
        let t = trunks::resolve(cluster, &node_cert).await;
        for (dest, r) in t.resolved.iter() {
            match r {
                Ok(addrs) => {
                    tracing::debug!(destination = %dest, ?addrs, "trunk destination resolved")
                }
                Err(e) => {
                    tracing::warn!(destination = %dest, error = %e, "trunk destination does not resolve")
                }
            }
        }
        match self.shared.tls_targets.lock() {
            Ok(mut g) => *g = t.tls,
            Err(p) => *p.into_inner() = t.tls,
        }
        t.resolved
    }

    /// Resolves the trunks again every [`trunks::REFRESH`], and within a second of the
    /// cluster definition changing, until shutdown.
    async fn refresh_trunks(
        self,
        tables: mpsc::Sender<Arc<b2bua::Resolved>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut seen = self.state.cluster();
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
            let now = self.state.cluster();
            if Arc::ptr_eq(&now, &seen) && last.elapsed() < trunks::REFRESH {
                continue;
            }
            seen = now;
            last = tokio::time::Instant::now();
            let table = self.resolve_trunks(&seen).await;
            if tables.send(table).await.is_err() {
                return;
            }
        }
    }

    /// Tells call control that `bytes` (a message we built) could not be delivered.
    fn report_failure(&self, bytes: &[u8], reason: &str) {
        if let Ok(msg) = message::parse_stream_message_bytes(&bytes::Bytes::copy_from_slice(bytes))
        {
            let _ = self
                .shared
                .failures_tx
                .send(TransportFailure::Undelivered(msg, reason.to_string()));
        }
    }

    /// Opens a connection to a peer we have none with (a trunk), TCP or TLS, marked CS3
    /// before connecting; messages for it queue on `chan` meanwhile. A failure is logged
    /// with why, and every queued message is reported to call control.
    async fn open_conn(self, to: SocketAddr, transport: Transport, chan: ConnChannel) {
        const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
        const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
        let dscp = self.state.cluster().qos.call_signalling;
        let stop_rx = self.state.stopping();
        let fail = |this: &SipServer, chan: ConnChannel, why: String| {
            let (tx, mut rx) = chan;
            this.forget_conn(to, &tx);
            drop(tx);
            // Bounded: the sender is gone from the table, so only what was queued remains.
            while let Ok(b) = rx.try_recv() {
                this.report_failure(&b, &why);
            }
        };
        let stream = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            crate::net::connect_tcp(to, None, dscp),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::info!(%to, transport = transport.as_str(), error = %e, "SIP connect failed");
                return fail(&self, chan, format!("connecting to {to}: {e}"));
            }
            Err(_) => {
                tracing::info!(%to, transport = transport.as_str(), "SIP connect timed out");
                return fail(&self, chan, format!("connecting to {to}: timed out"));
            }
        };
        if transport == Transport::Tcp {
            self.stream_conn(stream, to, Transport::Tcp, stop_rx, Some(chan))
                .await;
            return;
        }
        let target = match self.shared.tls_targets.lock() {
            Ok(g) => g.get(&to).cloned(),
            Err(p) => p.into_inner().get(&to).cloned(),
        };
        let (name, config, trunk) = match target {
            Some(trunks::TlsTarget {
                trunk,
                server_name: Ok(n),
                config: Ok(c),
            }) => (n, c, trunk),
            Some(trunks::TlsTarget {
                trunk,
                server_name,
                config,
            }) => {
                let why = server_name.err().or(config.err()).unwrap_or_default();
                tracing::warn!(%to, %trunk, error = %why, "SIP TLS connection not attempted");
                return fail(&self, chan, format!("TLS to {to}: {why}"));
            }
            None => {
                tracing::warn!(%to, "no TLS trunk has this address; SIP TLS connection not attempted");
                return fail(&self, chan, format!("TLS to {to}: no trunk configuration"));
            }
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name.clone(), stream)).await
        {
            Ok(Ok(tls)) => {
                tracing::debug!(%to, %trunk, "SIP TLS connection up");
                self.stream_conn(tls, to, Transport::Tls, stop_rx, Some(chan))
                    .await;
            }
            Ok(Err(e)) => {
                inc(&self.state.metrics.tls_handshake_failures);
                let server = name.to_str();
                tracing::warn!(%to, %trunk, server_name = %server, error = %e, "SIP TLS handshake failed");
                fail(
                    &self,
                    chan,
                    format!("TLS handshake with {to} ({server}) failed: {e}"),
                );
            }
            Err(_) => {
                inc(&self.state.metrics.tls_handshake_failures);
                tracing::warn!(%to, %trunk, "SIP TLS handshake timed out");
                fail(&self, chan, format!("TLS handshake with {to} timed out"));
            }
        }
    }

    /// Sends a message from call control to its peer, over UDP or the peer's connection.
    fn dispatch(&self, o: b2bua::Out) {
        let bytes = o.msg.to_bytes();
        if matches!(o.msg, SipMessage::Response(_)) {
            inc(&self.state.metrics.sip_responses_sent);
        }
        match o.to.transport {
            Transport::Udp => {
                if let Some(sock) = self.shared.udp.get() {
                    if let Err(e) = sock.try_send_to(&bytes, o.to.addr) {
                        if e.kind() == std::io::ErrorKind::WouldBlock {
                            let sock = sock.clone();
                            tokio::spawn(async move {
                                let _ = sock.send_to(&bytes, o.to.addr).await;
                            });
                        } else {
                            tracing::debug!(to = %o.to.addr, error = %e, "SIP UDP send failed");
                        }
                    }
                }
            }
            Transport::Tcp | Transport::Tls => {
                let conn = match self.shared.conns.lock() {
                    Ok(g) => g.get(&o.to.addr).cloned(),
                    Err(p) => p.into_inner().get(&o.to.addr).cloned(),
                };
                match conn {
                    Some(tx) => {
                        let _ = tx.send(bytes);
                    }
                    None => {
                        // No connection to this peer yet (a trunk): open one. The channel is
                        // in the table from now on, so what follows queues behind this.
                        let chan = self.register_conn(o.to.addr);
                        let _ = chan.0.send(bytes);
                        tokio::spawn(self.clone().open_conn(o.to.addr, o.to.transport, chan));
                    }
                }
            }
        }
    }

    /// Records the writer of a connection to `addr`; the receiver goes to its writer task.
    fn register_conn(
        &self,
        addr: SocketAddr,
    ) -> (
        mpsc::UnboundedSender<Vec<u8>>,
        mpsc::UnboundedReceiver<Vec<u8>>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        match self.shared.conns.lock() {
            Ok(mut g) => g.insert(addr, tx.clone()),
            Err(p) => p.into_inner().insert(addr, tx.clone()),
        };
        (tx, rx)
    }

    fn forget_conn(&self, addr: SocketAddr, tx: &mpsc::UnboundedSender<Vec<u8>>) {
        let mut g = match self.shared.conns.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if g.get(&addr).is_some_and(|t| t.same_channel(tx)) {
            g.remove(&addr);
        }
    }

    /// What to do with one parsed message from `peer`: a reply to send now, if any, and
    /// where it goes (over UDP, RFC 3261 18.2.2 / RFC 3581; the peer itself on streams).
    fn on_parsed(&self, msg: SipMessage, peer: b2bua::Peer) -> Option<(SocketAddr, Vec<u8>)> {
        match msg {
            SipMessage::Request(mut req) => {
                let target = stamp_via(&mut req, peer.addr);
                let reply_to = if peer.transport == Transport::Udp {
                    target
                } else {
                    peer.addr
                };
                match self.disposition(&req, peer.addr, peer.transport) {
                    Disposition::Reply(r) => Some((reply_to, r.to_bytes())),
                    Disposition::Drop => None,
                    Disposition::Core => {
                        let to = b2bua::Peer {
                            addr: reply_to,
                            transport: peer.transport,
                        };
                        self.to_core(SipMessage::Request(req), to)
                            .map(|r| (reply_to, r.to_bytes()))
                    }
                }
            }
            SipMessage::Response(resp) => {
                let _ = self.to_core(SipMessage::Response(resp), peer);
                None
            }
        }
    }

    /// Serves SIP over UDP until shutdown.
    pub async fn serve_udp(self, sock: UdpSocket, mut stop: watch::Receiver<bool>) {
        let sock = Arc::new(sock);
        let _ = self.shared.udp.set(sock.clone());
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, source) = tokio::select! {
                r = sock.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // ICMP port-unreachable from a previous send surfaces here on Linux.
                        tracing::debug!(error = %e, "SIP UDP receive error");
                        continue;
                    }
                },
                _ = stop.changed() => break,
            };
            inc(&self.state.metrics.sip_udp_received);
            let data = &buf[..n];
            if data.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
                continue; // keep-alive
            }
            let peer = b2bua::Peer {
                addr: source,
                transport: Transport::Udp,
            };
            let reply = match message::parse_datagram(data) {
                Ok(msg) => self.on_parsed(msg, peer),
                Err(e) => {
                    inc(&self.state.metrics.sip_parse_errors);
                    tracing::info!(%source, error = %e, "malformed SIP datagram");
                    error_reply(data, &e, source).map(|b| (source, b))
                }
            };
            if let Some((to, bytes)) = reply {
                inc(&self.state.metrics.sip_responses_sent);
                if let Err(e) = sock.send_to(&bytes, to).await {
                    tracing::debug!(%to, error = %e, "SIP UDP send failed");
                }
            }
        }
    }

    /// Serves SIP over TCP, or TLS when `tls` is given, until shutdown.
    pub async fn serve_stream(
        self,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let (stream, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "SIP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.changed() => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            };
            inc(&self.state.metrics.sip_tcp_connections);
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            let stop = stop.clone();
            let tls = tls.clone();
            conns.spawn(async move {
                match tls {
                    None => {
                        this.stream_conn(stream, peer, Transport::Tcp, stop, None)
                            .await
                    }
                    Some(acc) => {
                        match tokio::time::timeout(Duration::from_secs(10), acc.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => {
                                this.stream_conn(s, peer, Transport::Tls, stop, None).await
                            }
                            _ => {
                                inc(&this.state.metrics.tls_handshake_failures);
                                tracing::debug!(%peer, "SIP TLS handshake failed");
                            }
                        }
                    }
                }
            });
        }
        drop(listener);
        // In-flight connections see the stop signal and close after their current message.
        while conns.join_next().await.is_some() {}
    }

    /// Reads messages from one TCP or TLS connection; everything sent to the peer goes through
    /// the connection's writer task (replies here, requests from call control).
    async fn stream_conn<S>(
        &self,
        io: S,
        peer: SocketAddr,
        transport: Transport,
        mut stop: watch::Receiver<bool>,
        chan: Option<ConnChannel>,
    ) where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (tx, mut rx) = match chan {
            Some(c) => c,
            None => self.register_conn(peer),
        };
        let (mut rd, mut wr) = tokio::io::split(io);
        let writer = tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        let mut buf = BytesMut::with_capacity(8192);
        let mut framer = message::StreamFramer::new();
        let p = b2bua::Peer {
            addr: peer,
            transport,
        };
        'conn: loop {
            // Handle every complete message already buffered.
            loop {
                match framer.poll(&buf) {
                    Ok(Some(message::StreamEvent::KeepAlive { len, ping })) => {
                        buf.advance(len);
                        framer.reset();
                        // A double-CRLF ping gets a single CRLF pong (RFC 5626 section 4.4.1).
                        if ping {
                            let _ = tx.send(b"\r\n".to_vec());
                        }
                    }
                    Ok(Some(message::StreamEvent::Message { len })) => {
                        let frame = buf.split_to(len).freeze();
                        framer.reset();
                        match transport {
                            Transport::Tls => inc(&self.state.metrics.sip_tls_received),
                            _ => inc(&self.state.metrics.sip_tcp_received),
                        }
                        let reply = match message::parse_stream_message_bytes(&frame) {
                            Ok(msg) => self.on_parsed(msg, p).map(|(_, b)| b),
                            Err(e) => {
                                inc(&self.state.metrics.sip_parse_errors);
                                tracing::info!(%peer, error = %e, "malformed SIP message on stream");
                                error_reply(&frame, &e, peer)
                            }
                        };
                        if let Some(bytes) = reply {
                            inc(&self.state.metrics.sip_responses_sent);
                            let _ = tx.send(bytes);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // The stream cannot be re-synchronised after a framing error: answer
                        // if possible, then close.
                        inc(&self.state.metrics.sip_parse_errors);
                        tracing::info!(%peer, error = %e, "SIP stream framing error; closing connection");
                        if let Some(bytes) = error_reply(&buf, &e, peer) {
                            let _ = tx.send(bytes);
                        }
                        break 'conn;
                    }
                }
            }
            tokio::select! {
                r = rd.read_buf(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                },
                _ = stop.changed() => break,
            }
        }
        self.forget_conn(peer, &tx);
        // Requests still waiting for an answer on this connection will get none: call
        // control ends them now (a trunk call hunts on) rather than at Timer B.
        if !*stop.borrow() {
            let _ = self.shared.failures_tx.send(TransportFailure::Closed(
                p,
                format!("the {} connection to {peer} closed", transport.as_str()),
            ));
        }
        drop(tx);
        let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    }
}

/// What the transport tells call control about messages it could not carry.
enum TransportFailure {
    /// A message we built could not be sent (connect or TLS handshake failed), with why.
    Undelivered(SipMessage, String),
    /// A connection closed; requests sent on it wait for answers in vain.
    Closed(b2bua::Peer, String),
}

/// RFC 3261 18.2.1 and RFC 3581: record where the request really came from in the top Via.
/// Returns where a UDP response goes (see [`via_target`]; stamping does not change it).
fn stamp_via(req: &mut Request, source: SocketAddr) -> SocketAddr {
    let Ok(via) = req.headers.top_via_ref() else {
        return source;
    };
    let target = via_target(&via, source);
    let host_differs =
        via.host.trim_start_matches('[').trim_end_matches(']') != source.ip().to_string();
    let fill_rport = matches!(via.param("rport"), Some(None));
    if !host_differs && !fill_rport {
        return target;
    }
    let mut via = via.to_owned_via();
    if host_differs {
        via.set_param("received", Some(source.ip().to_string()));
    }
    if fill_rport {
        via.set_param("rport", Some(source.port().to_string()));
    }
    replace_top_via(req, &via.to_string());
    target
}

fn replace_top_via(req: &mut Request, new_top: &str) {
    let vias: Vec<String> = req
        .headers
        .get_all_split("Via")
        .map(str::to_string)
        .collect();
    if vias.is_empty() {
        return;
    }
    req.headers.remove("Via");
    // Keep every Via, the first replaced, in its own header line each.
    let mut first = true;
    for v in vias {
        let val = if first { new_top.to_string() } else { v };
        first = false;
        req.headers.push("Via", val);
    }
}

/// Where a UDP response goes (RFC 3261 18.2.2 with RFC 3581): the source port when the Via asked
/// for rport or named none, else the Via's port at the source address.
fn via_target(v: &message::ViaRef<'_>, source: SocketAddr) -> SocketAddr {
    match (v.param("rport"), v.port) {
        (None, Some(p)) => SocketAddr::new(source.ip(), p),
        _ => source,
    }
}

fn reason_with_detail(status: u16, e: &ParseError) -> String {
    // Reason phrases are one line of text; keep the detail short and free of CR/LF.
    let detail: String = e
        .detail
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect();
    format!("{} ({detail})", message::default_reason(status))
}

/// Builds an error response for a message that did not parse, from whatever header lines can
/// be read; `None` (drop) when the status says so or the headers needed to answer are missing.
fn error_reply(data: &[u8], e: &ParseError, source: SocketAddr) -> Option<Vec<u8>> {
    let status = e.status?;
    let head_end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(data.len().min(8192));
    let head = String::from_utf8_lossy(&data[..head_end]);
    let mut lines = head.lines();
    let first = lines.next()?;
    if first.starts_with("SIP/") {
        return None; // never answer a response
    }
    let mut keep: Vec<(String, String)> = Vec::new();
    for l in lines {
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let n = name.trim().to_ascii_lowercase();
        let canonical = match n.as_str() {
            "via" | "v" => "Via",
            "from" | "f" => "From",
            "to" | "t" => "To",
            "call-id" | "i" => "Call-ID",
            "cseq" => "CSeq",
            _ => continue,
        };
        keep.push((canonical.to_string(), value.trim().to_string()));
    }
    for needed in ["Via", "From", "To", "Call-ID", "CSeq"] {
        if !keep.iter().any(|(n, _)| n == needed) {
            tracing::debug!(%source, missing = needed, "cannot answer malformed message");
            return None;
        }
    }
    let tag = new_tag();
    let mut out = format!("SIP/2.0 {status} {}\r\n", reason_with_detail(status, e));
    for (n, v) in keep {
        if n == "To" && !v.contains(";tag=") {
            out.push_str(&format!("To: {v};tag={tag}\r\n"));
        } else {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    out.push_str(&format!(
        "Server: {}\r\nContent-Length: 0\r\n\r\n",
        server_header()
    ));
    Some(out.into_bytes())
}
