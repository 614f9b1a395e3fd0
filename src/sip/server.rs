//! The node's SIP server: answers OPTIONS and REGISTER in the transport tasks, and runs
//! call control, one task that owns the B2BUA, hands it the time, the cluster and the
//! registrations, and carries out what it returns (messages to send, answers to services'
//! commands, calls offered to route points).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use super::call_control::Submission;
use super::context::SipNode;
use super::message::{self, Method, Request, Response, SipMessage};
use super::transport::{reason_with_detail, TransportFailure};
use super::{b2bua, digest, registrar, trunks, Transport, ALLOW};

/// The node's SIP service: stateless answers (OPTIONS, REGISTER) in the transport tasks,
/// everything else through one call-control task that owns the B2BUA.
#[derive(Clone)]
pub struct SipServer {
    pub(super) state: Arc<SipNode>,
    pub(super) shared: Arc<Shared>,
}

pub(super) struct Shared {
    pub(super) core_tx: mpsc::Sender<(SipMessage, b2bua::Peer)>,
    pub(super) core_rx: Mutex<Option<mpsc::Receiver<(SipMessage, b2bua::Peer)>>>,
    pub(super) udp: OnceLock<Arc<UdpSocket>>,
    /// Writers of open TCP and TLS connections, by remote address: requests to a phone go back
    /// over the connection it registered on.
    pub(super) conns: Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Vec<u8>>>>,
    pub(super) nonces: digest::Nonces,
    /// Messages the transport could not deliver (connect or TLS handshake failed), with why:
    /// call control ends their transactions at once.
    pub(super) failures_tx: mpsc::UnboundedSender<TransportFailure>,
    pub(super) failures_rx: Mutex<Option<mpsc::UnboundedReceiver<TransportFailure>>>,
    /// How TLS trunk peers are reached, by address (see [`trunks::TrunkTable`]).
    pub(super) tls_targets: Mutex<Arc<HashMap<SocketAddr, trunks::TlsTarget>>>,
    /// Requests refused with 503 since the last overload warning, and the second (Unix
    /// time) of that warning: under overload one line a second, not one per message.
    pub(super) overload_refused: std::sync::atomic::AtomicU64,
    pub(super) overload_warned_at: std::sync::atomic::AtomicI64,
    /// REGISTERs refused because another registrant holds the device.
    pub(super) held_log: super::throttle::LogThrottle,
    /// Connections closed for a message not completed in time.
    pub(super) slow_log: super::throttle::LogThrottle,
    /// Malformed messages, refused REGISTERs and failed digest answers: what strangers can
    /// send as fast as they like is logged at most once a second, with the count.
    pub(super) malformed_log: super::throttle::LogThrottle,
    pub(super) refused_log: super::throttle::LogThrottle,
    pub(super) digest_log: super::throttle::LogThrottle,
    pub(super) stream_limits: super::transport::StreamLimits,
}

/// What the transport does with a request.
pub(super) enum Disposition {
    Reply(Response),
    Core,
    Drop,
}

/// What the call-control task keeps for the core: the channels behind the services'
/// commands, which the core names but does not hold.
#[derive(Default)]
struct Links {
    next_id: u64,
    /// Commands waiting for their answer.
    replies: HashMap<b2bua::CommandId, oneshot::Sender<b2bua::Reply>>,
    /// Where each route point's offered calls go.
    offers: HashMap<String, mpsc::UnboundedSender<b2bua::OfferedCall>>,
}

impl Links {
    /// Keeps a command's channels and names it for the core.
    fn submit(&mut self, sub: Submission) -> (b2bua::CommandId, b2bua::Command) {
        self.next_id += 1;
        let id = b2bua::CommandId(self.next_id);
        if let Some(tx) = sub.reply {
            self.replies.insert(id, tx);
        }
        if let (b2bua::Command::RegisterRoutePoint { name }, Some(tx)) = (&sub.cmd, sub.offers) {
            self.offers.insert(name.clone(), tx);
        }
        (id, sub.cmd)
    }
}

/// The time for the core: the monotonic clock for its timers, Unix seconds for
/// registrations and nonces.
fn now() -> b2bua::Now {
    b2bua::Now {
        mono: std::time::Instant::now(),
        unix: registrar::unix_now(),
    }
}

/// Says at start how many devices register without digest authentication: anyone who can
/// reach the node's SIP ports can register as such a device while it is not registered (and
/// the registrant that holds a device keeps it until its binding expires).
fn warn_devices_without_digest(cluster: &crate::cluster::Cluster) {
    let open: Vec<&str> = cluster
        .devices
        .iter()
        .filter(|d| !digest::requires_digest(cluster, d))
        .map(|d| d.name.as_str())
        .collect();
    if !open.is_empty() {
        tracing::warn!(
            devices = open.len(),
            first = open.first().copied().unwrap_or_default(),
            "devices register without digest authentication: whoever registers such a device first holds it until its binding expires; give them a phone security profile with digest_authentication and a digest user with credentials"
        );
    }
}

/// Messages queued for call control before new requests are refused with 503.
const CORE_QUEUE: usize = 65_536;

pub(super) fn new_tag() -> String {
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

pub(super) fn server_header() -> String {
    format!("ucm/{}", env!("CARGO_PKG_VERSION"))
}

impl SipServer {
    pub fn new(state: Arc<SipNode>) -> SipServer {
        SipServer::with_limits(state, Default::default())
    }

    /// A server whose TCP and TLS listeners keep to `limits`.
    pub fn with_limits(state: Arc<SipNode>, limits: super::transport::StreamLimits) -> SipServer {
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
                held_log: super::throttle::LogThrottle::new(),
                slow_log: super::throttle::LogThrottle::new(),
                malformed_log: super::throttle::LogThrottle::new(),
                refused_log: super::throttle::LogThrottle::new(),
                digest_log: super::throttle::LogThrottle::new(),
                stream_limits: limits,
            }),
        }
    }

    /// Decides what happens to a request: answered here, or handed to call control.
    pub(super) fn disposition(
        &self,
        req: &Request,
        source: SocketAddr,
        transport: Transport,
    ) -> Disposition {
        if req.method == Method::Ack {
            return Disposition::Core;
        }
        // Only parsed requests come here: the parser checked the header syntax.
        if let Err(e) = req.validate_parsed() {
            if let Some(n) = self.shared.malformed_log.hit(registrar::unix_now()) {
                tracing::info!(%source, transport = transport.as_str(), error = %e, refused = n, "refusing malformed SIP request");
            }
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
                let device = d.device().to_string();
                if let Some(challenge) = self.digest_challenge(&cluster, req, &device, source) {
                    return challenge;
                }
                // A device that proved itself with its digest credentials may move; without
                // digest, the registrant holding the device keeps it until it expires.
                let takeover = cluster
                    .device(&device)
                    .is_some_and(|dev| digest::requires_digest(&cluster, dev));
                let now = registrar::unix_now();
                let bindings = match self
                    .state
                    .registrar
                    .register(&d, transport, source, now, takeover)
                {
                    Ok(b) => b,
                    Err(holder) => return self.held_elsewhere(req, &device, &holder, source, now),
                };
                if let registrar::Decision::Bind { device, line, .. } = &d {
                    tracing::info!(%source, device, line, "registered");
                    crate::net::counters::count(crate::net::counters::REGISTRATIONS, &[]);
                }
                let mut r = self.respond(req, 200, "OK");
                for b in bindings {
                    let left = (b.expires_at - now).max(0);
                    r.headers
                        .push("Contact", format!("<{}>;expires={left}", b.contact));
                }
                r.headers.push("Date", httpdate_now());
                r
            }
            Err(refusal) => {
                if let Some(n) = self.shared.refused_log.hit(registrar::unix_now()) {
                    tracing::info!(%source, status = refusal.status, reason = %refusal.reason, refused = n, "REGISTER refused");
                }
                crate::net::counters::count(
                    crate::net::counters::REGISTRATION_FAILURES,
                    &[("status", &refusal.status.to_string())],
                );
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

    /// The 403 for a REGISTER from another registrant than the one holding the device,
    /// logged (at most a line a second, with the count). The answer names neither the holder's
    /// address nor its contact: a stranger learns only that the device is taken.
    fn held_elsewhere(
        &self,
        req: &Request,
        device: &str,
        holder: &registrar::Binding,
        source: SocketAddr,
        now: i64,
    ) -> Response {
        if let Some(refused) = self.shared.held_log.hit(now) {
            tracing::warn!(
                device,
                %source,
                holder = %holder.source,
                expires_in = holder.expires_at - now,
                refused,
                "REGISTER refused: the device is registered from another address (the first registrant keeps it until its binding expires; enable digest authentication to let a phone move)"
            );
        }
        self.respond(
            req,
            403,
            &format!("Forbidden ({device} is registered from another address)"),
        )
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
        let now = registrar::unix_now();
        let auth = req.headers.get("Authorization");
        let check = digest::check_device(
            cluster,
            device,
            auth,
            req.method.as_str(),
            digest::request_fingerprint(req),
            &self.shared.nonces,
            now,
        );
        match check {
            digest::DeviceCheck::Pass => None,
            digest::DeviceCheck::Challenge { stale, refused } => {
                if let Some(why) = refused {
                    if let Some(n) = self.shared.digest_log.hit(now) {
                        tracing::info!(%source, device, reason = why, failed = n, "digest authentication failed");
                    }
                    crate::net::counters::count(
                        crate::net::counters::REGISTRATION_FAILURES,
                        &[("status", "401")],
                    );
                }
                let mut r = self.respond(req, 401, "Unauthorized");
                r.headers
                    .push("WWW-Authenticate", self.shared.nonces.challenge(now, stale));
                Some(r)
            }
            digest::DeviceCheck::NoCredentials => {
                tracing::warn!(
                    device,
                    "digest authentication required but the digest user has no credentials"
                );
                Some(self.respond(req, 403, "Forbidden (no digest credentials configured)"))
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
    pub(super) fn to_core(&self, msg: SipMessage, peer: b2bua::Peer) -> Option<Response> {
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
        warn_devices_without_digest(&self.state.cluster());
        let mut core =
            b2bua::B2bua::new(self.state.sip_host.clone(), rand::random(), rand::random());
        core.set_tls_host(self.state.sips_host.clone());
        if let Some(secret) = self.state.dialog_secret {
            core.set_dialog_secret(secret);
        }
        let mut links = Links::default();
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
                while let Ok(sub) = cmds.try_recv() {
                    let cluster = self.state.cluster();
                    let (id, cmd) = links.submit(sub);
                    outs.extend(core.on_command(&cluster, &*self.state.registrar, id, cmd, now()));
                }
                self.carry_out(&mut core, &mut links, outs);
            }
            let outs = tokio::select! {
                // Everything queued is handled in one wake-up: under load this saves a
                // cross-thread wake per message.
                n = rx.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        break;
                    }
                    let cluster = self.state.cluster();
                    let now = now();
                    let mut outs = Vec::new();
                    for (msg, peer) in batch.drain(..) {
                        outs.extend(core.on_message(&cluster, &*self.state.registrar, msg, peer, now));
                    }
                    outs
                }
                _ = sleep => {
                    let cluster = self.state.cluster();
                    core.on_timers(&cluster, &*self.state.registrar, now())
                }
                Some(sub) = cmds.recv() => {
                    let cluster = self.state.cluster();
                    let (id, cmd) = links.submit(sub);
                    core.on_command(&cluster, &*self.state.registrar, id, cmd, now())
                }
                Some(failure) = failures.recv() => {
                    let cluster = self.state.cluster();
                    let now = now();
                    match failure {
                        TransportFailure::Undelivered(msg, reason) => {
                            core.on_transport_failure(&cluster, &*self.state.registrar, &msg, &reason, now)
                        }
                        TransportFailure::Closed(peer, reason) => {
                            core.on_connection_lost(&cluster, &*self.state.registrar, peer, &reason, now)
                        }
                    }
                }
                Some(table) = tables.recv() => {
                    core.set_resolved(table);
                    Vec::new()
                }
                _ = stop.changed() => {
                    // No phone is left ringing by a node that will never finish the call.
                    let outs = core.on_shutdown(now());
                    self.carry_out(&mut core, &mut links, outs);
                    break;
                }
            };
            self.carry_out(&mut core, &mut links, outs);
            for e in core.take_events() {
                // Nobody listening is fine.
                let _ = self.state.call_control.events.send(e);
            }
        }
    }

    /// Does what the core asked: sends its messages, answers the services' commands, and
    /// offers calls to route points (telling the core when a route point's service is gone).
    fn carry_out(&self, core: &mut b2bua::B2bua, links: &mut Links, outs: Vec<b2bua::Out>) {
        let mut outs = std::collections::VecDeque::from(outs);
        while let Some(o) = outs.pop_front() {
            match o {
                b2bua::Out::Send { msg, to } => self.transmit(msg, to),
                b2bua::Out::Reply(id, reply) => {
                    // A service that stopped waiting is fine.
                    if let Some(tx) = links.replies.remove(&id) {
                        let _ = tx.send(reply);
                    }
                }
                b2bua::Out::Offer(offer) => {
                    let (call, rp) = (offer.call, offer.route_point.clone());
                    let delivered = links
                        .offers
                        .get(&rp)
                        .is_some_and(|tx| tx.send(offer).is_ok());
                    if !delivered {
                        links.offers.remove(&rp);
                        let cluster = self.state.cluster();
                        let more = core.on_offer_undelivered(
                            &cluster,
                            &*self.state.registrar,
                            call,
                            now(),
                        );
                        outs.extend(more);
                    }
                }
            }
        }
    }

    /// Resolves the trunks of `cluster`; the TLS targets take effect here, the returned table
    /// is for the core.
    async fn resolve_trunks(&self, cluster: &crate::cluster::Cluster) -> Arc<b2bua::Resolved> {
        let node_cert = self.state.data_dir.join(crate::net::tls::CERT_FILE);
        let (_, node_certs) = self.state.node_certs.get();
        let t = trunks::resolve(cluster, &node_cert, &node_certs).await;
        if !node_certs.is_empty() {
            tracing::info!(
                certificates = node_certs.len(),
                "intra-cluster trunk over TLS: trusting the nodes' certificates"
            );
        }
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
        let mut certs_seen = self.state.node_certs.get().0;
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
            let now = self.state.cluster();
            let certs = self.state.node_certs.get().0;
            if Arc::ptr_eq(&now, &seen) && certs == certs_seen && last.elapsed() < trunks::REFRESH {
                continue;
            }
            seen = now;
            certs_seen = certs;
            last = tokio::time::Instant::now();
            let table = self.resolve_trunks(&seen).await;
            if tables.send(table).await.is_err() {
                return;
            }
        }
    }
}
