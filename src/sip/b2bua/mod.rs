//! The back-to-back user agent: every call is two (or, while forking, more) dialogs, and the
//! node sits between them, relaying SDP so media flows phone to phone.
//!
//! Sans-IO like the transaction layer it stands on: [`B2bua::on_message`] and
//! [`B2bua::on_timers`] take a message or the time and return what to send where. The shell in
//! `sip/mod.rs` owns the sockets and the clock.
//!
//! Routing follows Unified CM: the caller is a registered device line (its line CSS, then device
//! CSS) or a SIP trunk (the trunk's CSS); the dialled number goes through digit analysis; a
//! directory number rings every registered device that carries it (a shared line: first answer
//! wins, the others are cancelled) after Call Forward All, Busy (busy trigger), Do Not Disturb,
//! Unregistered and No Answer (per-line timer) have had their say, each with its own CSS.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::message::{default_reason, Method, NameAddr, Request, Response, SipMessage};
use super::registrar::Registrar;
use super::transaction::{
    Action, Incoming, Reliability, ResponseOutcome, Timers, TransactionKey, TransactionTable,
};
use super::Transport;
use crate::cluster::Cluster;
use crate::config::model::{CallForward, DirectoryNumber, ForwardSetting};
use crate::dialplan::analysis::{CallingContext, Destination, DnKey};

/// Where a message goes or came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub addr: SocketAddr,
    pub transport: Transport,
}

impl Peer {
    fn reliability(&self) -> Reliability {
        match self.transport {
            Transport::Udp => Reliability::Unreliable,
            _ => Reliability::Reliable,
        }
    }
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct Out {
    pub msg: SipMessage,
    pub to: Peer,
}

/// A request from a service (WebDialer, Assistant, ...) to call control.
#[derive(Debug)]
pub enum Command {
    /// Third-party call control (RFC 3725): ring the user's own phone first and, once it answers,
    /// call the destination from it with the phone's own calling search spaces.
    MakeCall {
        device: String,
        line: String,
        destination: String,
        reply: tokio::sync::oneshot::Sender<Result<u64, CallError>>,
    },
    /// Offers calls to a route point's DNs to this service from now on.
    RegisterRoutePoint {
        name: String,
        offers: tokio::sync::mpsc::UnboundedSender<OfferedCall>,
    },
    /// Sends an offered (ringing, unanswered) call elsewhere without answering it: the CTI
    /// redirect route-point services use.
    Redirect {
        call: u64,
        destination: String,
        reply: tokio::sync::oneshot::Sender<Result<(), CallError>>,
    },
    /// Answers a call offered to a route point, with the service's own SDP answer.
    Answer {
        call: u64,
        sdp: Bytes,
        reply: tokio::sync::oneshot::Sender<Result<(), CallError>>,
    },
    /// Refuses an offered, unanswered route-point call with a final status (488 for an
    /// offer the service cannot take, 486 when it is full).
    Reject {
        call: u64,
        status: u16,
        reason: String,
        reply: tokio::sync::oneshot::Sender<Result<(), CallError>>,
    },
    /// The devices on a call now (ringing, connected or held), for services that leave busy
    /// phones out.
    BusyDevices {
        reply: tokio::sync::oneshot::Sender<std::collections::HashSet<String>>,
    },
    /// Whether the call is still up (a service that missed line events asks).
    CallExists {
        call: u64,
        reply: tokio::sync::oneshot::Sender<bool>,
    },
    /// Ends a call (BYE to every connected side, CANCEL to the ringing ones).
    EndCall {
        call: u64,
        reply: tokio::sync::oneshot::Sender<Result<(), CallError>>,
    },
    /// Sends an unsolicited NOTIFY (`Event: check-sync` makes a Cisco phone fetch its
    /// configuration again) to every address the device is registered from.
    NotifyDevice { device: String, event: String },
}

/// A call offered to a service's route point.
#[derive(Debug, Clone)]
pub struct OfferedCall {
    pub call: u64,
    pub route_point: String,
    pub dn: String,
    /// The calling number.
    pub calling: String,
    /// The caller's SIP Call-ID (what the caller knows its call by).
    pub call_id: String,
    /// The caller's SDP offer, if the INVITE carried one.
    pub offer: Option<Bytes>,
}

/// Why call control refused or failed a command, with the SIP status behind it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason}")]
pub struct CallError {
    pub status: u16,
    pub reason: String,
}

fn call_error(status: u16, reason: impl Into<String>) -> CallError {
    CallError {
        status,
        reason: reason.into(),
    }
}

/// A line's state as monitoring (BLF, Attendant Console, Assistant) sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LineState {
    Idle,
    Ringing,
    Connected,
    Held,
}

/// A change of a line's state on one call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineEvent {
    pub call: u64,
    pub dn: String,
    pub partition: Option<String>,
    /// The device concerned, when one is (ringing and connected name it).
    pub device: Option<String>,
    pub state: LineState,
}

/// The state of one side of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegState {
    Trying,
    Early,
    Confirmed,
    /// CANCEL sent or to be sent (no provisional yet).
    Cancelling,
    Failed(u16),
    Ended,
}

#[derive(Debug, Clone)]
struct Leg {
    peer: Peer,
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    /// Our side's From/To header value without the tag (we add `;tag=local_tag`).
    local_addr: String,
    /// Their side's header value without the tag.
    remote_addr: String,
    remote_target: String,
    local_cseq: u32,
    route_set: Vec<String>,
    /// The INVITE we sent on this leg (outgoing legs), to build ACK and CANCEL.
    invite_key: Option<TransactionKey>,
    invite: Option<Request>,
    state: LegState,
    device: Option<String>,
}

/// Who placed a call, as far as routing cares.
#[derive(Debug, Clone)]
struct Caller {
    ctx: CallingContext,
    /// The calling device, when the caller is one (digest authentication of its INVITEs).
    device: Option<String>,
    /// The calling line (busy accounting), when the caller is a device.
    dn: Option<DnKey>,
    number: String,
    display: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    Routing,
    Connected,
    Ended,
}

#[derive(Debug)]
struct Call {
    /// legs[0] is the caller's side (we are its UAS); the rest are forks towards the callee.
    legs: Vec<Leg>,
    /// The caller's INVITE server transaction while unanswered.
    a_invite: Option<TransactionKey>,
    a_request: Request,
    caller: Caller,
    state: CallState,
    answered: Option<usize>,
    /// The line being offered the call (busy accounting, forwarding).
    target_dn: Option<DnKey>,
    /// Forwarding hops so far (loops end at `MAX_HOPS`).
    hops: u8,
    /// Trunks, destinations and addresses left to hunt after the current one fails.
    hunt: TrunkHunt,
    trunk_number: String,
    /// When Call Forward No Answer fires.
    no_answer_at: Option<Instant>,
    /// The caller's INVITE carried no SDP: B's ACK waits for A's (which carries the answer).
    delayed_offer: bool,
    /// A forward is under way: failures of the cancelled forks are ignored.
    superseded_legs: usize,
    busy_seen: bool,
    /// A 180 without SDP went to the caller: later forks' plain ringing adds nothing.
    ringing_sent: bool,
    /// Third-party call: legs[0] is an outgoing INVITE to the user's phone; the destination
    /// is called once it answers, and its ACK carries the destination's answer.
    third_party: Option<ThirdParty>,
    /// The route point the call is offered to, while its service decides.
    at_route_point: Option<String>,
    /// Legs whose side has put the call on hold (their last offer was sendonly/inactive).
    held: BTreeSet<usize>,
}

#[derive(Debug)]
struct ThirdParty {
    destination: String,
    reply: Option<tokio::sync::oneshot::Sender<Result<u64, CallError>>>,
}

const MAX_HOPS: u8 = 6;

/// What the names among the trunks' destinations resolved to, by destination as configured
/// (`host:port`): the addresses in the resolver's order, or why there are none. The shell
/// resolves (the core does no I/O) and hands a new table over with [`B2bua::set_resolved`].
pub type Resolved = HashMap<String, Result<Vec<SocketAddr>, String>>;

/// Where a call to trunks stands: trunks still to try, the current trunk's destinations
/// still to try, and the current destination's addresses still to try, each in order.
#[derive(Debug, Default)]
struct TrunkHunt {
    trunks: std::collections::VecDeque<String>,
    trunk: String,
    transport: Option<Transport>,
    dests: std::collections::VecDeque<String>,
    dest: String,
    addrs: std::collections::VecDeque<SocketAddr>,
}

impl TrunkHunt {
    fn exhausted(&self) -> bool {
        self.trunks.is_empty() && self.dests.is_empty() && self.addrs.is_empty()
    }
}

/// The addresses of one trunk destination: an IP literal as it is, a name from the table.
pub fn destination_addrs(resolved: &Resolved, dest: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(a) = dest.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    match resolved.get(dest) {
        Some(Ok(addrs)) if addrs.is_empty() => Err("the name has no address".into()),
        Some(Ok(addrs)) => Ok(addrs.clone()),
        Some(Err(e)) => Err(e.clone()),
        None => Err("the name is not resolved yet".into()),
    }
}

/// The B2BUA core.
pub struct B2bua {
    txns: TransactionTable,
    /// Our SIP address as peers should see it (`host:port`).
    host: String,
    calls: super::transaction::IdMap<Call>,
    next_call: u64,
    by_dialog: HashMap<(String, String), (u64, usize)>,
    by_client_txn: HashMap<TransactionKey, (u64, usize)>,
    by_server_invite: HashMap<TransactionKey, u64>,
    /// In-dialog requests relayed to the other leg: client key -> (server key, call, that leg).
    relays: HashMap<TransactionKey, (TransactionKey, u64, usize)>,
    txn_peer: HashMap<TransactionKey, Peer>,
    timers: BTreeSet<(Instant, u64)>,
    line_load: HashMap<DnKey, u32>,
    rng: u64,
    events: Vec<LineEvent>,
    /// INVITEs still pending on legs of calls that ended (cancelled forks, abandoned calls).
    orphans: HashMap<TransactionKey, Leg>,
    route_point_handlers: HashMap<String, tokio::sync::mpsc::UnboundedSender<OfferedCall>>,
    /// Nonces for digest challenges of INVITEs from devices whose security profile asks for it.
    nonces: super::digest::Nonces,
    /// Trunk destination names and their addresses (see [`Resolved`]).
    resolved: Arc<Resolved>,
    /// How peers reach us over TLS (`host:port` of the SIPS listener), when it differs.
    tls_host: Option<String>,
}

/// Something the node's services want to know about (monitoring, BLF, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSummary {
    pub calls: usize,
    pub connected: usize,
    pub transactions: usize,
}

impl B2bua {
    /// `host` is how peers reach us (`ip:port`); `seed` makes tags and branches reproducible in
    /// tests (use a random seed in production).
    pub fn new(host: String, seed: u64) -> B2bua {
        B2bua {
            txns: TransactionTable::new(Timers::default()),
            host,
            calls: Default::default(),
            next_call: 1,
            by_dialog: HashMap::new(),
            by_client_txn: HashMap::new(),
            by_server_invite: HashMap::new(),
            relays: HashMap::new(),
            txn_peer: HashMap::new(),
            timers: BTreeSet::new(),
            line_load: HashMap::new(),
            rng: seed | 1,
            events: Vec::new(),
            orphans: HashMap::new(),
            route_point_handlers: HashMap::new(),
            nonces: super::digest::Nonces::new(rand::random()),
            resolved: Arc::new(Resolved::new()),
            tls_host: None,
        }
    }

    /// Our address on TLS connections: Via and Contact there name the SIPS port, so a peer
    /// that opens a connection of its own for a dialog reaches our TLS listener.
    pub fn set_tls_host(&mut self, host: String) {
        self.tls_host = Some(host);
    }

    /// Our `host:port` as a peer on `transport` should see it.
    fn host_on(&self, transport: Transport) -> String {
        match (&self.tls_host, transport) {
            (Some(h), Transport::Tls) => h.clone(),
            _ => self.host.clone(),
        }
    }

    /// The trunk destination names' addresses from now on.
    pub fn set_resolved(&mut self, resolved: Arc<Resolved>) {
        self.resolved = resolved;
    }

    pub fn summary(&self) -> CallSummary {
        CallSummary {
            calls: self.calls.len(),
            connected: self
                .calls
                .values()
                .filter(|c| c.state == CallState::Connected)
                .count(),
            transactions: self.txns.len(),
        }
    }

    /// Line-state changes since the last call (the shell publishes them).
    pub fn take_events(&mut self) -> Vec<LineEvent> {
        std::mem::take(&mut self.events)
    }

    fn event(&mut self, call: u64, dn: &DnKey, device: Option<String>, state: LineState) {
        self.events.push(LineEvent {
            call,
            dn: dn.0.clone(),
            partition: dn.1.clone(),
            device,
            state,
        });
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: plenty for tags and branches, which need uniqueness, not secrecy.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn tag(&mut self) -> String {
        format!("{:x}", self.random())
    }

    fn branch(&mut self) -> String {
        format!("z9hG4bK{:x}{:x}", self.random(), self.random() & 0xffff)
    }

    /// The earliest time `on_timers` must be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        let t = self.txns.next_deadline();
        let c = self.timers.first().map(|(t, _)| *t);
        match (t, c) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A request or response that arrived from `peer`.
    pub fn on_message(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        msg: SipMessage,
        peer: Peer,
        now: Instant,
    ) -> Vec<Out> {
        let mut out = Vec::new();
        match msg {
            SipMessage::Request(req) => {
                self.on_request(cluster, registrar, req, peer, now, &mut out)
            }
            SipMessage::Response(resp) => match self.txns.on_response(resp, now) {
                ResponseOutcome::Matched { key, actions } => {
                    self.run_actions(cluster, registrar, &key, actions, now, &mut out)
                }
                ResponseOutcome::Stray(resp) => self.on_stray(resp, &mut out),
            },
        }
        out
    }

    /// The transport could not deliver `msg` to `peer` (connection refused, TLS handshake
    /// failed, certificate refused): its client transaction ends at once as if the peer
    /// answered 503 with `reason` (RFC 3261 8.1.3.1), so a trunk call hunts on or the caller
    /// hears why instead of waiting for Timer B.
    pub fn on_transport_failure(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        msg: &SipMessage,
        reason: &str,
        now: Instant,
    ) -> Vec<Out> {
        let mut out = Vec::new();
        let SipMessage::Request(req) = msg else {
            return out;
        };
        if req.method == Method::Ack {
            return out;
        }
        let Ok(key) = TransactionKey::client_for_request(req) else {
            return out;
        };
        self.fail_client_transaction(cluster, registrar, &key, reason, now, &mut out);
        out
    }

    /// A connection to `peer` closed: every client transaction still waiting for an answer
    /// over it ends as if the peer answered 503 (see [`B2bua::on_transport_failure`]).
    pub fn on_connection_lost(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        peer: Peer,
        reason: &str,
        now: Instant,
    ) -> Vec<Out> {
        let mut out = Vec::new();
        let mut keys: Vec<TransactionKey> = self
            .txn_peer
            .iter()
            .filter(|(k, p)| **p == peer && self.txns.client(k).is_some())
            .map(|(k, _)| k.clone())
            .collect();
        // Deterministic order (the map's is not).
        keys.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        if !keys.is_empty() {
            tracing::info!(peer = %peer.addr, transport = peer.transport.as_str(), requests = keys.len(), reason, "connection lost with requests unanswered; they end now");
        }
        for key in keys {
            self.fail_client_transaction(cluster, registrar, &key, reason, now, &mut out);
        }
        out
    }

    fn fail_client_transaction(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        key: &TransactionKey,
        reason: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(request) = self.txns.client(key).map(|c| c.request().clone()) else {
            return;
        };
        let phrase: String = format!("Service Unavailable ({reason})")
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        for a in self.txns.on_transport_error(key) {
            match a {
                Action::Timeout => {
                    let resp = request.make_response(503, &phrase, None);
                    self.on_response(cluster, registrar, key, resp, now, out);
                }
                other => self.run_actions(cluster, registrar, key, vec![other], now, out),
            }
        }
    }

    /// Fires due transaction and call timers.
    pub fn on_timers(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        now: Instant,
    ) -> Vec<Out> {
        let mut out = Vec::new();
        for (key, action) in self.txns.on_timers(now) {
            self.run_actions(cluster, registrar, &key, vec![action], now, &mut out);
        }
        while let Some(&(at, call)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.no_answer(cluster, registrar, call, now, &mut out);
        }
        out
    }

    fn on_request(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        req: Request,
        peer: Peer,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        match self.txns.on_request(req, peer.reliability(), now) {
            Incoming::New { key, request } => {
                self.txn_peer.insert(key.clone(), peer);
                let in_dialog = request
                    .headers
                    .to_ref()
                    .ok()
                    .and_then(|t| t.tag().map(str::to_string));
                match (&request.method, in_dialog) {
                    (_, Some(tag)) => {
                        self.in_dialog(cluster, registrar, key, request, tag, now, out)
                    }
                    (Method::Invite, None) => {
                        self.new_call(cluster, registrar, key, request, peer, now, out)
                    }
                    (Method::Bye, None) => {
                        self.respond(&key, &request, 481, None, None, now, out);
                    }
                    (m, None) => {
                        let status = if matches!(m, Method::Other(_)) {
                            501
                        } else {
                            405
                        };
                        self.respond(&key, &request, status, None, None, now, out);
                    }
                }
            }
            Incoming::Cancel {
                key,
                key_of_cancelled_invite,
                request,
            } => {
                self.txn_peer.insert(key.clone(), peer);
                match key_of_cancelled_invite.and_then(|k| self.by_server_invite.get(&k).copied()) {
                    Some(call) => {
                        self.respond(&key, &request, 200, None, None, now, out);
                        self.caller_cancelled(cluster, call, now, out);
                    }
                    None => self.respond(&key, &request, 481, None, None, now, out),
                }
            }
            Incoming::Absorbed { key, actions } => {
                self.run_actions(cluster, registrar, &key, actions, now, out)
            }
            Incoming::AckFor2xx { request, .. } => self.ack_for_2xx(request, out),
            Incoming::Invalid { request, error } => {
                tracing::info!(%error, "request without a usable transaction key");
                // Answer statelessly when possible.
                if request.method != Method::Ack {
                    let resp = request.make_response(400, "Bad Request", Some("x"));
                    out.push(Out {
                        msg: SipMessage::Response(resp),
                        to: peer,
                    });
                }
            }
        }
    }

    fn run_actions(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        key: &TransactionKey,
        actions: Vec<Action>,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        for a in actions {
            match a {
                Action::Send(msg) => {
                    if let Some(&to) = self.txn_peer.get(key) {
                        out.push(Out { msg, to });
                    }
                }
                Action::DeliverResponse(resp) => {
                    self.on_response(cluster, registrar, key, resp, now, out)
                }
                Action::Timeout => {
                    if self.by_client_txn.contains_key(key) || self.relays.contains_key(key) {
                        // As if a 408 arrived.
                        let req = self.txns.client(key).map(|c| c.request().clone());
                        if let Some(r) = req {
                            let resp = r.make_response(408, "Request Timeout", None);
                            self.on_response(cluster, registrar, key, resp, now, out);
                        }
                    } else if let Some(call) = self.by_server_invite.get(key).copied() {
                        // No ACK for our answer: end the call (RFC 3261 13.3.1.4).
                        tracing::info!(call, "no ACK from the caller; ending the call");
                        self.hang_up(call, None, now, out);
                    }
                }
                Action::Terminated => self.forget(key),
            }
        }
    }

    fn forget(&mut self, key: &TransactionKey) {
        self.orphans.remove(key);
        self.txn_peer.remove(key);
        self.by_client_txn.remove(key);
        self.relays.remove(key);
        self.by_server_invite.remove(key);
    }

    /// Answers a server transaction with `status`, optionally with a To tag, body and extra
    /// headers.
    #[allow(clippy::too_many_arguments)]
    fn respond(
        &mut self,
        key: &TransactionKey,
        req: &Request,
        status: u16,
        tag: Option<&str>,
        body: Option<(String, Bytes)>,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let reason = default_reason(status);
        self.respond_reason(key, req, status, reason, tag, body, now, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn respond_reason(
        &mut self,
        key: &TransactionKey,
        req: &Request,
        status: u16,
        reason: &str,
        tag: Option<&str>,
        body: Option<(String, Bytes)>,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let fallback;
        let tag = match tag {
            Some(t) => t,
            None => {
                fallback = self.tag();
                &fallback
            }
        };
        let mut resp = req.make_response(status, reason, Some(tag));
        if (101..300).contains(&status) && req.method == Method::Invite {
            let contact = match self.txn_peer.get(key).map(|p| p.transport) {
                Some(Transport::Tls) => {
                    format!("<sip:{};transport=tls>", self.host_on(Transport::Tls))
                }
                _ => format!("<sip:{}>", self.host),
            };
            resp.headers.push("Contact", contact);
        }
        if let Some((ctype, b)) = body {
            resp.headers.push("Content-Type", ctype);
            resp.body = b;
        }
        resp.headers
            .push("Server", format!("ucm/{}", env!("CARGO_PKG_VERSION")));
        let actions = self.txns.respond(key, resp, now);
        for a in actions {
            if let Action::Send(msg) = a {
                if let Some(&to) = self.txn_peer.get(key) {
                    out.push(Out { msg, to });
                }
            } else if let Action::Terminated = a {
                self.forget(key);
            }
        }
    }

    /// When the device must authenticate and the INVITE's credentials do not verify: the
    /// status, reason and `Proxy-Authenticate` challenge to answer with.
    fn invite_digest(
        &self,
        cluster: &Cluster,
        req: &Request,
        device: &str,
    ) -> Option<(u16, String, Option<String>)> {
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
        // Nonces carry unix time so that any node can check them; the one clock read here.
        let now = super::registrar::unix_now();
        let challenge = |stale: bool| {
            Some((
                407,
                "Proxy Authentication Required".to_string(),
                Some(self.nonces.challenge(now, stale)),
            ))
        };
        let Some(auth) = req
            .headers
            .get("Proxy-Authorization")
            .or_else(|| req.headers.get("Authorization"))
        else {
            return challenge(false);
        };
        let user = dev.digest_user.as_deref().unwrap_or_default();
        let Some(ha1) = cluster.end_user(user).and_then(|u| u.digest_ha1.clone()) else {
            return Some((
                403,
                "Forbidden (no digest credentials configured)".into(),
                None,
            ));
        };
        let Some(params) = super::digest::parse_authorization(auth) else {
            return challenge(false);
        };
        match super::digest::verify(&self.nonces, &params, "INVITE", user, &ha1, now) {
            super::digest::Verdict::Ok => None,
            super::digest::Verdict::Stale => challenge(true),
            super::digest::Verdict::Refused(why) => {
                tracing::info!(device, reason = why, "INVITE digest authentication failed");
                challenge(false)
            }
        }
    }

    /// A final answer with an optional `Proxy-Authenticate` challenge.
    #[allow(clippy::too_many_arguments)]
    fn respond_challenge(
        &mut self,
        key: &TransactionKey,
        req: &Request,
        status: u16,
        reason: &str,
        challenge: Option<String>,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let tag = self.tag();
        let mut resp = req.make_response(status, reason, Some(&tag));
        if let Some(c) = challenge {
            resp.headers.push("Proxy-Authenticate", c);
        }
        resp.headers
            .push("Server", format!("ucm/{}", env!("CARGO_PKG_VERSION")));
        for a in self.txns.respond(key, resp, now) {
            if let Action::Send(msg) = a {
                if let Some(&to) = self.txn_peer.get(key) {
                    out.push(Out { msg, to });
                }
            } else if let Action::Terminated = a {
                self.forget(key);
            }
        }
    }

    fn body_of(
        req_or_resp_headers: &super::message::Headers,
        body: &Bytes,
    ) -> Option<(String, Bytes)> {
        if body.is_empty() {
            return None;
        }
        let ctype = req_or_resp_headers
            .get("Content-Type")
            .unwrap_or("application/sdp")
            .to_string();
        Some((ctype, body.clone()))
    }

    /// Who is calling: a registered device line (by From user and source address), or a trunk.
    fn identify_caller(
        cluster: &Cluster,
        registrar: &Registrar,
        resolved: &Resolved,
        req: &Request,
        peer: Peer,
    ) -> Option<Caller> {
        let from = req.from().ok()?;
        let user = from.uri.user_part().unwrap_or_default().to_string();
        for trunk in &cluster.sip_trunks {
            // A peer is the trunk when it comes from one of its destinations' hosts (the
            // source port of a request need not be the port it listens on).
            let hit = trunk.destinations.iter().any(|d| {
                d.rsplit_once(':')
                    .is_some_and(|(h, _)| h.trim_matches(['[', ']']) == peer.addr.ip().to_string())
                    || destination_addrs(resolved, d)
                        .is_ok_and(|addrs| addrs.iter().any(|a| a.ip() == peer.addr.ip()))
            });
            if hit {
                return Some(Caller {
                    ctx: CallingContext::css(trunk.css.as_deref(), Some(&trunk.device_pool)),
                    device: None,
                    dn: None,
                    number: user,
                    display: from.display_name.clone(),
                });
            }
        }
        // A device that registered this line from this address.
        for d in cluster.devices_with_line_digits(&user) {
            for l in &cluster.lines_of(d) {
                if l.dn != user {
                    continue;
                }
                let Some(b) = registrar.binding(&d.name, &l.dn) else {
                    continue;
                };
                if b.source.ip() != peer.addr.ip() {
                    continue;
                }
                let key: DnKey = (l.dn.clone(), l.partition.clone());
                let line_css = cluster.directory_number(&key).and_then(|dn| dn.css.clone());
                let display = l.display.clone().or_else(|| {
                    cluster
                        .directory_number(&key)
                        .and_then(|dn| dn.alerting_name.clone())
                });
                return Some(Caller {
                    ctx: CallingContext {
                        line_css,
                        device_css: d.css.clone(),
                        device_pool: Some(d.device_pool.clone()),
                    },
                    device: Some(d.name.clone()),
                    dn: Some(key),
                    number: l.dn.clone(),
                    display,
                });
            }
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn new_call(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        key: TransactionKey,
        req: Request,
        peer: Peer,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(caller) = Self::identify_caller(cluster, registrar, &self.resolved, &req, peer)
        else {
            tracing::info!(source = %peer.addr, "INVITE from neither a registered line nor a SIP trunk");
            self.respond_reason(
                &key,
                &req,
                403,
                "Forbidden (caller is neither a registered line nor a SIP trunk)",
                None,
                None,
                now,
                out,
            );
            return;
        };
        // Devices whose security profile asks for digest authentication prove themselves on
        // every INVITE too, not only on REGISTER (407 with a challenge, as a proxy would).
        if let Some(device) = caller.device.as_deref() {
            if let Some((status, reason, challenge)) = self.invite_digest(cluster, &req, device) {
                tracing::info!(source = %peer.addr, device, status, "INVITE challenged");
                self.respond_challenge(&key, &req, status, &reason, challenge, now, out);
                return;
            }
        }
        // An offer that is not SDP we can read is refused before anyone's phone rings.
        let is_sdp = req
            .headers
            .get("Content-Type")
            .is_none_or(|t| t.trim().to_ascii_lowercase().starts_with("application/sdp"));
        if !req.body.is_empty() {
            let problem = if is_sdp {
                super::sdp::SessionDescription::parse_bytes(&req.body)
                    .err()
                    .map(|e| (400, format!("Bad Request (SDP: {e})")))
            } else {
                Some((
                    415,
                    "Unsupported Media Type (only application/sdp)".to_string(),
                ))
            };
            if let Some((status, reason)) = problem {
                tracing::info!(source = %peer.addr, reason, "INVITE refused");
                let reason: String = reason
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(160)
                    .collect();
                let mut r = req.make_response(status, &reason, Some(&self.tag()));
                if status == 415 {
                    r.headers.push("Accept", "application/sdp");
                }
                let actions = self.txns.respond(&key, r, now);
                for a in actions {
                    match a {
                        Action::Send(msg) => out.push(Out { msg, to: peer }),
                        Action::Terminated => self.forget(&key),
                        _ => {}
                    }
                }
                return;
            }
        }
        let dialled = req
            .request_uri()
            .ok()
            .and_then(|u| u.user_unescaped())
            .unwrap_or_default();
        if dialled.is_empty() {
            self.respond_reason(
                &key,
                &req,
                404,
                "Not Found (no number dialled)",
                None,
                None,
                now,
                out,
            );
            return;
        }
        if let Some(dn) = &caller.dn {
            let max = cluster.directory_number(dn).map_or(4, |d| d.max_calls);
            if self.line_load.get(dn).copied().unwrap_or(0) >= max {
                self.respond_reason(
                    &key,
                    &req,
                    486,
                    "Busy Here (line at its maximum number of calls)",
                    None,
                    None,
                    now,
                    out,
                );
                return;
            }
        }
        let a_tag = self.tag();
        let from = req.from().ok();
        let to = req.to().ok();
        let a_leg = Leg {
            peer,
            call_id: req.call_id().unwrap_or_default().to_string(),
            local_tag: a_tag.clone(),
            remote_tag: from.as_ref().and_then(|f| f.tag().map(str::to_string)),
            local_addr: to.map(|t| strip_tag(&t)).unwrap_or_default(),
            remote_addr: from.as_ref().map(strip_tag).unwrap_or_default(),
            remote_target: contact_uri(&req).unwrap_or_else(|| req.uri.clone()),
            local_cseq: 1,
            route_set: req
                .headers
                .get_all_split("Record-Route")
                .map(str::to_string)
                .collect(),
            invite_key: None,
            invite: None,
            state: LegState::Trying,
            device: None,
        };
        let id = self.next_call;
        self.next_call += 1;
        if let Some(dn) = &caller.dn {
            *self.line_load.entry(dn.clone()).or_default() += 1;
        }
        self.by_dialog
            .insert((a_leg.call_id.clone(), a_tag.clone()), (id, 0));
        self.by_server_invite.insert(key.clone(), id);
        let delayed_offer = req.body.is_empty();
        self.calls.insert(
            id,
            Call {
                legs: vec![a_leg],
                a_invite: Some(key.clone()),
                a_request: req.clone(),
                caller: caller.clone(),
                state: CallState::Routing,
                answered: None,
                target_dn: None,
                hops: 0,
                hunt: TrunkHunt::default(),
                trunk_number: String::new(),
                no_answer_at: None,
                delayed_offer,
                superseded_legs: 0,
                busy_seen: false,
                ringing_sent: false,
                third_party: None,
                at_route_point: None,
                held: BTreeSet::new(),
            },
        );
        self.respond(&key, &req, 100, Some(&a_tag), None, now, out);
        self.route(cluster, registrar, id, &dialled, &caller.ctx, now, out);
    }

    /// Runs digit analysis for a call and offers it where it leads.
    #[allow(clippy::too_many_arguments)]
    fn route(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        call: u64,
        number: &str,
        ctx: &CallingContext,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        match cluster.dialplan.analyse(ctx, number) {
            Err(e) => {
                tracing::info!(call, number, status = e.status, reason = %e.reason, "digit analysis refused the call");
                let reason = format!("{} ({})", default_reason(e.status), e.reason);
                self.fail_call(call, e.status, &reason, now, out);
            }
            Ok(a) => match a.destination {
                Destination::Line(dn) => self.offer_to_line(cluster, registrar, call, dn, now, out),
                Destination::Trunks { trunks, number } => {
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.hunt = TrunkHunt {
                            trunks: trunks.into(),
                            ..TrunkHunt::default()
                        };
                        c.trunk_number = number;
                    }
                    self.next_trunk(cluster, call, now, out);
                }
            },
        }
    }

    /// Offers the call to the next address of the trunk hunt: the current destination's
    /// next address, else the next destination of the current trunk (a name that does not
    /// resolve is logged and skipped), else the next trunk; 503 when nothing is left.
    fn next_trunk(&mut self, cluster: &Cluster, call: u64, now: Instant, out: &mut Vec<Out>) {
        let resolved = self.resolved.clone();
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let h = &mut c.hunt;
        // Every turn removes an entry from one of the finite lists.
        let (peer, dest) = loop {
            if let (Some(addr), Some(transport)) = (h.addrs.front().copied(), h.transport) {
                h.addrs.pop_front();
                break (Peer { addr, transport }, h.dest.clone());
            }
            h.addrs.clear();
            if let Some(dest) = h.dests.pop_front() {
                match destination_addrs(&resolved, &dest) {
                    Ok(addrs) => {
                        h.addrs = addrs.into();
                        h.dest = dest;
                    }
                    Err(why) => {
                        tracing::warn!(call, trunk = %h.trunk, destination = %dest, reason = %why,
                            "trunk destination does not resolve; trying the next");
                    }
                }
                continue;
            }
            let Some(name) = h.trunks.pop_front() else {
                self.fail_call(
                    call,
                    503,
                    "Service Unavailable (no SIP trunk answered)",
                    now,
                    out,
                );
                return;
            };
            let Some(trunk) = cluster.sip_trunks.iter().find(|t| t.name == name) else {
                continue;
            };
            h.transport = Some(match trunk.transport {
                crate::config::model::SipTransport::Udp => Transport::Udp,
                crate::config::model::SipTransport::Tcp => Transport::Tcp,
                crate::config::model::SipTransport::Tls => Transport::Tls,
            });
            h.dests = trunk.destinations.iter().cloned().collect();
            h.trunk = name;
        };
        let number = c.trunk_number.clone();
        // The Request-URI names the destination as configured (a name stays a name, which is
        // what a TLS peer's certificate carries); IP literals are written canonically.
        let host = match dest.parse::<SocketAddr>() {
            Ok(a) => a.to_string(),
            Err(_) => dest,
        };
        let target = format!("sip:{number}@{host}");
        self.fork(call, peer, &target, &number, None, now, out);
    }

    fn offer_to_line(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        call: u64,
        dn: DnKey,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(line) = cluster.directory_number(&dn).cloned() else {
            self.fail_call(
                call,
                404,
                "Not Found (directory number not configured)",
                now,
                out,
            );
            return;
        };
        let hops = match self.calls.get_mut(&call) {
            Some(c) => {
                c.hops += 1;
                c.hops
            }
            None => return,
        };
        if hops > MAX_HOPS {
            self.fail_call(call, 482, "Loop Detected (call forwarding loop)", now, out);
            return;
        }
        // Call Forward All.
        if let Some((dest, ctx)) = forward_of(&line, |cf| &cf.all) {
            tracing::debug!(call, dn = %dn.0, dest, "call forward all");
            self.route(cluster, registrar, call, &dest, &ctx, now, out);
            return;
        }
        // Busy: the line already carries its busy trigger of calls.
        let load = self.line_load.get(&dn).copied().unwrap_or(0);
        let devices: Vec<_> = cluster.devices_with_line(&dn).collect();
        let all_dnd = !devices.is_empty() && devices.iter().all(|d| d.do_not_disturb);
        if load >= line.busy_trigger || all_dnd {
            self.busy(cluster, registrar, call, &dn, now, out);
            return;
        }
        if let Some(rp) = cluster.route_point_for(&dn) {
            self.offer_to_route_point(cluster, registrar, call, &dn, rp.name.clone(), now, out);
            return;
        }
        let registered: Vec<(String, super::registrar::Binding)> = devices
            .iter()
            .filter(|d| !d.do_not_disturb)
            .filter_map(|d| {
                registrar
                    .binding(&d.name, &dn.0)
                    .map(|b| (d.name.clone(), b))
            })
            .collect();
        if registered.is_empty() {
            if let Some((dest, ctx)) = forward_of(&line, |cf| &cf.unregistered) {
                tracing::debug!(call, dn = %dn.0, dest, "call forward unregistered");
                self.route(cluster, registrar, call, &dest, &ctx, now, out);
            } else {
                self.fail_call(
                    call,
                    480,
                    "Temporarily Unavailable (no device of the line is registered)",
                    now,
                    out,
                );
            }
            return;
        }
        if let Some(c) = self.calls.get_mut(&call) {
            if let Some(old) = c.target_dn.replace(dn.clone()) {
                if let Some(n) = self.line_load.get_mut(&old) {
                    *n = n.saturating_sub(1);
                }
            }
        }
        *self.line_load.entry(dn.clone()).or_default() += 1;
        for (device, b) in registered {
            self.event(call, &dn, Some(device.clone()), LineState::Ringing);
            let peer = Peer {
                addr: b.source,
                transport: b.transport,
            };
            self.fork(call, peer, &b.contact, &dn.0, Some(device), now, out);
        }
        // Call Forward No Answer.
        if line
            .call_forward
            .no_answer
            .as_ref()
            .is_some_and(|f| f.destination.is_some())
        {
            let secs = line.no_answer_timer.unwrap_or(
                cluster
                    .service_parameters
                    .call_manager
                    .forward_no_answer_timer,
            );
            self.arm_no_answer(call, now + Duration::from_secs(u64::from(secs)));
        }
    }

    /// (Re)arms the call's no-answer timer (Call Forward No Answer, route point timeout).
    fn arm_no_answer(&mut self, call: u64, at: Instant) {
        if let Some(c) = self.calls.get_mut(&call) {
            if let Some(old) = c.no_answer_at.replace(at) {
                self.timers.remove(&(old, call));
            }
        }
        self.timers.insert((at, call));
    }

    fn busy(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        call: u64,
        dn: &DnKey,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        match cluster
            .directory_number(dn)
            .and_then(|l| forward_of(l, |cf| &cf.busy))
        {
            Some((dest, ctx)) => {
                tracing::debug!(call, dn = %dn.0, dest, "call forward busy");
                self.route(cluster, registrar, call, &dest, &ctx, now, out);
            }
            None => self.fail_call(call, 486, "Busy Here", now, out),
        }
    }

    /// Sends an INVITE towards one destination as a new leg of the call.
    #[allow(clippy::too_many_arguments)]
    fn fork(
        &mut self,
        call: u64,
        peer: Peer,
        target: &str,
        to_user: &str,
        device: Option<String>,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let presented = self
            .calls
            .get(&call)
            .map(|c| (c.caller.number.clone(), c.caller.display.clone()));
        if let Some(p) = presented {
            self.fork_as(call, peer, target, to_user, device, p, now, out);
        }
    }

    /// Sends an INVITE towards one destination as a new leg, presenting `from` as the caller.
    #[allow(clippy::too_many_arguments)]
    fn fork_as(
        &mut self,
        call: u64,
        peer: Peer,
        target: &str,
        to_user: &str,
        device: Option<String>,
        from: (String, Option<String>),
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        tracing::debug!(call, %target, to = %peer.addr, "offering the call");
        let call_id = format!("{:x}{:x}@ucm", self.random(), self.random());
        let tag = self.tag();
        let branch = self.branch();
        let host = self.host_on(peer.transport);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let display = from
            .1
            .as_deref()
            .map(|d| format!("\"{}\" ", d.replace('"', "")))
            .unwrap_or_default();
        let local_addr = format!("{display}<sip:{}@{host}>", from.0);
        let remote_addr = format!("<sip:{to_user}@{}>", peer.addr);
        let mut req = Request::new(Method::Invite, target);
        req.headers.push(
            "Via",
            format!(
                "SIP/2.0/{} {host};branch={branch};rport",
                peer.transport.as_str()
            ),
        );
        let mf = c
            .a_request
            .max_forwards()
            .unwrap_or(70)
            .saturating_sub(1)
            .min(70);
        req.headers.push("Max-Forwards", mf.to_string());
        req.headers.push("From", format!("{local_addr};tag={tag}"));
        req.headers.push("To", remote_addr.clone());
        req.headers.push("Call-ID", call_id.clone());
        req.headers.push("CSeq", "1 INVITE");
        req.headers.push(
            "Contact",
            format!(
                "<sip:{host};transport={}>",
                peer.transport.as_str().to_ascii_lowercase()
            ),
        );
        req.headers.push("Allow", super::ALLOW);
        if let Some(id) = c.a_request.headers.get("P-Asserted-Identity") {
            req.headers.push("P-Asserted-Identity", id.to_string());
        }
        if let Some((ctype, body)) = Self::body_of(&c.a_request.headers, &c.a_request.body) {
            req.headers.push("Content-Type", ctype);
            req.body = body;
        }
        let leg = Leg {
            peer,
            call_id: call_id.clone(),
            local_tag: tag.clone(),
            remote_tag: None,
            local_addr,
            remote_addr,
            remote_target: target.to_string(),
            local_cseq: 1,
            route_set: Vec::new(),
            invite_key: None,
            invite: Some(req.clone()),
            state: LegState::Trying,
            device,
        };
        c.legs.push(leg);
        let idx = c.legs.len() - 1;
        self.by_dialog.insert((call_id, tag), (call, idx));
        if let Some(key) = self.send_request(req, peer, now, out) {
            self.by_client_txn.insert(key.clone(), (call, idx));
            if let Some(l) = self.calls.get_mut(&call).and_then(|c| c.legs.get_mut(idx)) {
                l.invite_key = Some(key);
            }
        }
    }

    fn on_response(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        key: &TransactionKey,
        resp: Response,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        if let Some((server_key, call, idx)) = self.relays.get(key).cloned() {
            self.relay_response(call, idx, &server_key, resp, now, out);
            return;
        }
        let Some(&(call, idx)) = self.by_client_txn.get(key) else {
            return;
        };
        if !self.calls.contains_key(&call) {
            self.orphan_answered(key, &resp, now, out);
            return;
        }
        let method = resp.cseq().map(|c| c.method).unwrap_or(Method::Invite);
        if method != Method::Invite {
            return; // BYE or CANCEL answers need nothing more
        }
        let status = resp.status;
        if status == 100 {
            return; // hop-by-hop: the transaction layer already stopped retransmitting
        }
        let to_tag = resp
            .headers
            .to_ref()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        if idx == 0
            && self
                .calls
                .get(&call)
                .is_some_and(|c| c.third_party.is_some())
        {
            self.originator_response(cluster, registrar, call, resp, to_tag, now, out);
            return;
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let answered_elsewhere =
            c.answered.is_some_and(|a| a != idx) || c.state == CallState::Ended;
        let Some(leg) = c.legs.get_mut(idx) else {
            return;
        };
        if (101..200).contains(&status) {
            if to_tag.is_some() && leg.state == LegState::Trying {
                leg.state = LegState::Early;
                leg.remote_tag = to_tag;
            }
            if leg.state == LegState::Cancelling {
                self.send_cancel(call, idx, now, out);
                return;
            }
            if answered_elsewhere {
                return;
            }
            // Relay ringing or early media to the caller; plain ringing once is enough.
            if resp.body.is_empty() {
                if c.ringing_sent {
                    return;
                }
                c.ringing_sent = true;
            }
            if let Some(akey) = c.a_invite.clone() {
                let a_req = c.a_request.clone();
                let a_tag = c.legs[0].local_tag.clone();
                let body = Self::body_of(&resp.headers, &resp.body);
                let reason = resp.reason.clone();
                self.respond_reason(&akey, &a_req, status, &reason, Some(&a_tag), body, now, out);
            }
            return;
        }
        if (200..300).contains(&status) {
            leg.remote_tag = to_tag;
            if let Some(ct) = contact_of_response(&resp) {
                leg.remote_target = ct;
            }
            let mut rr: Vec<String> = resp
                .headers
                .get_all_split("Record-Route")
                .map(str::to_string)
                .collect();
            rr.reverse();
            leg.route_set = rr;
            if answered_elsewhere || leg.state == LegState::Cancelling {
                // A second answer (shared line race) or one after we cancelled: ACK and BYE it.
                leg.state = LegState::Confirmed;
                self.send_ack(call, idx, None, out);
                self.send_bye(call, idx, now, out);
                return;
            }
            leg.state = LegState::Confirmed;
            c.answered = Some(idx);
            c.state = CallState::Connected;
            if let Some(at) = c.no_answer_at.take() {
                self.timers.remove(&(at, call));
            }
            let delayed = c.delayed_offer;
            // Cancel the other forks.
            let others: Vec<usize> = (1..c.legs.len())
                .filter(|&i| {
                    i != idx && matches!(c.legs[i].state, LegState::Trying | LegState::Early)
                })
                .collect();
            for i in others {
                self.cancel_leg(call, i, now, out);
            }
            if !delayed {
                self.send_ack(call, idx, None, out);
            }
            if self
                .calls
                .get(&call)
                .is_some_and(|c| c.third_party.is_some())
            {
                // The user's phone has waited for the destination's answer: its ACK carries it.
                let body = Self::body_of(&resp.headers, &resp.body);
                self.send_ack(call, 0, body, out);
            }
            let Some(c) = self.calls.get_mut(&call) else {
                return;
            };
            let device = c.legs.get(idx).and_then(|l| l.device.clone());
            let connected: Vec<(DnKey, Option<String>)> = [
                c.target_dn.clone().map(|d| (d, device)),
                c.caller.dn.clone().map(|d| (d, c.legs[0].device.clone())),
            ]
            .into_iter()
            .flatten()
            .collect();
            for (dn, dev) in connected {
                self.event(call, &dn, dev, LineState::Connected);
            }
            let Some(c) = self.calls.get_mut(&call) else {
                return;
            };
            c.legs[0].state = LegState::Confirmed;
            if let Some(akey) = c.a_invite.take() {
                let a_req = c.a_request.clone();
                let a_tag = c.legs[0].local_tag.clone();
                let body = Self::body_of(&resp.headers, &resp.body);
                self.respond(&akey, &a_req, 200, Some(&a_tag), body, now, out);
                // Keep the mapping until the server transaction terminates (ACK timeout).
                self.by_server_invite.insert(akey, call);
            }
            let device = self
                .calls
                .get(&call)
                .and_then(|c| c.legs.get(idx))
                .and_then(|l| l.device.clone());
            tracing::debug!(
                call,
                device = device.as_deref().unwrap_or("trunk"),
                "connected"
            );
            let _ = (cluster, registrar);
            return;
        }
        // Final failure on this fork.
        let was_cancelling = leg.state == LegState::Cancelling;
        leg.state = LegState::Failed(status);
        if answered_elsewhere || c.state != CallState::Routing {
            return;
        }
        if matches!(status, 486 | 600) {
            c.busy_seen = true;
        }
        if was_cancelling {
            // A fork we cancelled (another answered, or a forward took over): it decides nothing.
            return;
        }
        let pending = c
            .legs
            .iter()
            .skip(1 + c.superseded_legs)
            .any(|l| matches!(l.state, LegState::Trying | LegState::Early));
        if pending {
            return;
        }
        if !c.hunt.exhausted() && matches!(status, 408 | 500..=599) {
            self.next_trunk(cluster, call, now, out);
            return;
        }
        let busy = c.busy_seen;
        let target = c.target_dn.clone();
        if busy {
            if let Some(dn) = target {
                self.busy(cluster, registrar, call, &dn, now, out);
                return;
            }
        }
        let reason = resp.reason.clone();
        self.fail_call(call, status, &reason, now, out);
    }

    /// Fails an unanswered call towards the caller and cleans up.
    fn fail_call(
        &mut self,
        call: u64,
        status: u16,
        reason: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.third_party.is_some() {
            if let Some(reply) = c.third_party.as_mut().and_then(|t| t.reply.take()) {
                let _ = reply.send(Err(call_error(status, reason)));
            }
            if c.legs
                .first()
                .is_some_and(|l| l.state == LegState::Confirmed)
            {
                // The user's phone answered and waits for an ACK; there is no answer SDP to give
                // it, so acknowledge and hang up at once (RFC 3725 flow I's failure path).
                self.send_ack(call, 0, None, out);
                self.send_bye(call, 0, now, out);
            } else {
                self.cancel_leg(call, 0, now, out);
            }
            tracing::info!(call, status, reason, "third-party call failed");
            self.end_call(call);
            return;
        }
        if let Some(akey) = c.a_invite.take() {
            let a_req = c.a_request.clone();
            let a_tag = c.legs[0].local_tag.clone();
            self.respond_reason(&akey, &a_req, status, reason, Some(&a_tag), None, now, out);
        }
        self.end_call(call);
    }

    fn end_call(&mut self, call: u64) {
        let Some(mut c) = self.calls.remove(&call) else {
            return;
        };
        c.state = CallState::Ended;
        if let Some(reply) = c.third_party.as_mut().and_then(|t| t.reply.take()) {
            let _ = reply.send(Err(call_error(480, "the call ended before it was set up")));
        }
        for dn in [c.caller.dn.clone(), c.target_dn.clone()]
            .into_iter()
            .flatten()
        {
            self.event(call, &dn, None, LineState::Idle);
        }
        for l in &c.legs {
            if matches!(
                l.state,
                LegState::Trying | LegState::Early | LegState::Cancelling
            ) {
                if let Some(k) = &l.invite_key {
                    self.orphans.insert(k.clone(), l.clone());
                }
            }
        }
        for l in &c.legs {
            self.by_dialog
                .remove(&(l.call_id.clone(), l.local_tag.clone()));
        }
        if let Some(at) = c.no_answer_at {
            self.timers.remove(&(at, call));
        }
        for dn in [c.caller.dn, c.target_dn].into_iter().flatten() {
            if let Some(n) = self.line_load.get_mut(&dn) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.line_load.remove(&dn);
                }
            }
        }
        // Transactions finish on their own; their maps clear on Terminated.
    }

    fn cancel_leg(&mut self, call: u64, idx: usize, now: Instant, out: &mut Vec<Out>) {
        let Some(leg) = self.calls.get_mut(&call).and_then(|c| c.legs.get_mut(idx)) else {
            return;
        };
        match leg.state {
            LegState::Early => {
                leg.state = LegState::Cancelling;
                self.send_cancel(call, idx, now, out);
            }
            // No provisional yet: RFC 3261 9.1 says wait for one before cancelling.
            LegState::Trying => leg.state = LegState::Cancelling,
            _ => {}
        }
    }

    fn send_cancel(&mut self, call: u64, idx: usize, now: Instant, out: &mut Vec<Out>) {
        let Some(leg) = self.calls.get(&call).and_then(|c| c.legs.get(idx)) else {
            return;
        };
        let (Some(key), peer) = (leg.invite_key.clone(), leg.peer) else {
            return;
        };
        let Some(cancel) = self.txns.client(&key).and_then(|c| c.make_cancel()) else {
            return;
        };
        self.txns.cancel_sent(&key, now);
        if let Some(ckey) = self.send_request(cancel, peer, now, out) {
            self.by_client_txn.insert(ckey, (call, idx));
        }
    }

    /// Starts a client transaction towards `peer` and queues its first transmission.
    fn send_request(
        &mut self,
        req: Request,
        peer: Peer,
        now: Instant,
        out: &mut Vec<Out>,
    ) -> Option<TransactionKey> {
        match self.txns.start_client(req, peer.reliability(), now) {
            Ok((key, actions)) => {
                self.txn_peer.insert(key.clone(), peer);
                for a in actions {
                    if let Action::Send(msg) = a {
                        out.push(Out { msg, to: peer });
                    }
                }
                Some(key)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not start a client transaction");
                None
            }
        }
    }

    /// An out-of-dialog NOTIFY to each address the device registered from.
    fn notify_device(
        &mut self,
        registrar: &Registrar,
        device: &str,
        event: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let mut seen = BTreeSet::new();
        for b in registrar.device_bindings(device) {
            if !seen.insert((b.source, b.transport.as_str())) {
                continue;
            }
            let peer = Peer {
                addr: b.source,
                transport: b.transport,
            };
            let host = self.host_on(peer.transport);
            let branch = self.branch();
            let tag = self.tag();
            let call_id = format!("{:x}{:x}@ucm", self.random(), self.random());
            let mut req = Request::new(Method::Notify, &b.contact);
            req.headers.push(
                "Via",
                format!(
                    "SIP/2.0/{} {host};branch={branch};rport",
                    peer.transport.as_str()
                ),
            );
            req.headers.push("Max-Forwards", "70");
            req.headers.push("From", format!("<sip:{host}>;tag={tag}"));
            req.headers.push("To", format!("<{}>", b.contact));
            req.headers.push("Call-ID", call_id);
            req.headers.push("CSeq", "1 NOTIFY");
            req.headers.push("Event", event.to_string());
            req.headers.push("Subscription-State", "terminated");
            tracing::debug!(device, to = %peer.addr, event, "NOTIFY");
            self.send_request(req, peer, now, out);
        }
    }

    /// Builds an in-dialog request on a leg (we are its sender).
    fn dialog_request(&mut self, call: u64, idx: usize, method: Method) -> Option<(Request, Peer)> {
        let branch = self.branch();
        let transport = self.calls.get(&call)?.legs.get(idx)?.peer.transport;
        let host = self.host_on(transport);
        let leg = self.calls.get_mut(&call)?.legs.get_mut(idx)?;
        Some(leg_request(leg, method, &host, &branch))
    }

    /// A leg still ringing when its call ended. A provisional answer lets us CANCEL it (RFC
    /// 3261 9.1: not before one); if it answers anyway (the answer crossed the end of the
    /// call), ACK and BYE it. It is forgotten on a final answer, or when its transaction ends.
    fn orphan_answered(
        &mut self,
        key: &TransactionKey,
        resp: &Response,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        if !self.orphans.contains_key(key) {
            return;
        }
        if resp.status < 200 {
            let Some(client) = self.txns.client(key) else {
                return;
            };
            if client.cancelling() {
                return;
            }
            let Some(cancel) = client.make_cancel() else {
                return;
            };
            let Some(peer) = self.orphans.get(key).map(|l| l.peer) else {
                return;
            };
            self.txns.cancel_sent(key, now);
            self.send_request(cancel, peer, now, out);
            return;
        }
        let Some(mut leg) = self.orphans.remove(key) else {
            return;
        };
        if !(200..300).contains(&resp.status) {
            return;
        }
        leg.remote_tag = resp
            .headers
            .to_ref()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        if let Some(ct) = contact_of_response(resp) {
            leg.remote_target = ct;
        }
        let host = self.host_on(leg.peer.transport);
        let b1 = self.branch();
        let (mut ack, peer) = leg_request(&mut leg, Method::Ack, &host, &b1);
        let seq = resp.cseq().map_or(1, |c| c.seq);
        ack.headers.set("CSeq", format!("{seq} ACK"));
        out.push(Out {
            msg: SipMessage::Request(ack),
            to: peer,
        });
        let b2 = self.branch();
        let (bye, peer) = leg_request(&mut leg, Method::Bye, &host, &b2);
        self.send_request(bye, peer, now, out);
    }
}

/// Builds an in-dialog request on a leg (we are its sender).
fn leg_request(leg: &mut Leg, method: Method, host: &str, branch: &str) -> (Request, Peer) {
    let cseq = if method == Method::Ack {
        1
    } else {
        leg.local_cseq += 1;
        leg.local_cseq
    };
    let mut req = Request::new(method.clone(), leg.remote_target.clone());
    req.headers.push(
        "Via",
        format!(
            "SIP/2.0/{} {host};branch={branch};rport",
            leg.peer.transport.as_str()
        ),
    );
    req.headers.push("Max-Forwards", "70");
    req.headers
        .push("From", format!("{};tag={}", leg.local_addr, leg.local_tag));
    let to = match &leg.remote_tag {
        Some(t) => format!("{};tag={t}", leg.remote_addr),
        None => leg.remote_addr.clone(),
    };
    req.headers.push("To", to);
    req.headers.push("Call-ID", leg.call_id.clone());
    let cseq_method = if method == Method::Ack {
        "ACK".to_string()
    } else {
        method.as_str().to_string()
    };
    req.headers.push("CSeq", format!("{cseq} {cseq_method}"));
    for r in &leg.route_set {
        req.headers.push("Route", r.clone());
    }
    if matches!(method, Method::Invite | Method::Update) {
        let contact = match leg.peer.transport {
            super::Transport::Tls => format!("<sip:{host};transport=tls>"),
            _ => format!("<sip:{host}>"),
        };
        req.headers.push("Contact", contact);
    }
    (req, leg.peer)
}

impl B2bua {
    fn send_ack(
        &mut self,
        call: u64,
        idx: usize,
        body: Option<(String, Bytes)>,
        out: &mut Vec<Out>,
    ) {
        let Some((mut ack, peer)) = self.dialog_request(call, idx, Method::Ack) else {
            return;
        };
        // The ACK for a 2xx carries the INVITE's CSeq number.
        let seq = self
            .calls
            .get(&call)
            .and_then(|c| c.legs.get(idx))
            .and_then(|l| l.invite.as_ref())
            .and_then(|r| r.cseq().ok())
            .map_or(1, |c| c.seq);
        ack.headers.set("CSeq", format!("{seq} ACK"));
        if let Some((ctype, b)) = body {
            ack.headers.push("Content-Type", ctype);
            ack.body = b;
        }
        out.push(Out {
            msg: SipMessage::Request(ack),
            to: peer,
        });
    }

    fn send_bye(&mut self, call: u64, idx: usize, now: Instant, out: &mut Vec<Out>) {
        let Some((bye, peer)) = self.dialog_request(call, idx, Method::Bye) else {
            return;
        };
        if let Some(l) = self.calls.get_mut(&call).and_then(|c| c.legs.get_mut(idx)) {
            l.state = LegState::Ended;
        }
        if let Some(key) = self.send_request(bye, peer, now, out) {
            self.by_client_txn.insert(key, (call, idx));
        }
    }

    /// A command from a service.
    pub fn on_command(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        cmd: Command,
        now: Instant,
    ) -> Vec<Out> {
        let mut out = Vec::new();
        match cmd {
            Command::NotifyDevice { device, event } => {
                self.notify_device(registrar, &device, &event, now, &mut out);
            }
            Command::MakeCall {
                device,
                line,
                destination,
                reply,
            } => match self.make_call(
                cluster,
                registrar,
                &device,
                &line,
                &destination,
                now,
                &mut out,
            ) {
                Ok(call) => {
                    if let Some(t) = self
                        .calls
                        .get_mut(&call)
                        .and_then(|c| c.third_party.as_mut())
                    {
                        t.reply = Some(reply);
                    }
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::RegisterRoutePoint { name, offers } => {
                tracing::info!(route_point = %name, "service registered for the route point");
                self.route_point_handlers.insert(name, offers);
            }
            Command::Redirect {
                call,
                destination,
                reply,
            } => {
                let r = self.redirect(cluster, registrar, call, &destination, now, &mut out);
                let _ = reply.send(r);
            }
            Command::Answer { call, sdp, reply } => {
                let r = self.answer_at_route_point(call, sdp, now, &mut out);
                let _ = reply.send(r);
            }
            Command::Reject {
                call,
                status,
                reason,
                reply,
            } => {
                let r = match self.calls.get(&call) {
                    None => Err(call_error(481, "no such call")),
                    Some(c) if c.at_route_point.is_none() || c.state != CallState::Routing => {
                        Err(call_error(409, "the call is not waiting at a route point"))
                    }
                    Some(_) if !(400..700).contains(&status) => Err(call_error(
                        400,
                        format!("{status} is not a final error status"),
                    )),
                    Some(_) => {
                        self.fail_call(call, status, &reason, now, &mut out);
                        Ok(())
                    }
                };
                let _ = reply.send(r);
            }
            Command::BusyDevices { reply } => {
                let mut busy = std::collections::HashSet::new();
                for c in self.calls.values() {
                    busy.extend(c.caller.device.iter().cloned());
                    for l in c.legs.iter().filter(|l| l.state != LegState::Ended) {
                        busy.extend(l.device.iter().cloned());
                    }
                }
                let _ = reply.send(busy);
            }
            Command::CallExists { call, reply } => {
                let _ = reply.send(self.calls.contains_key(&call));
            }
            Command::EndCall { call, reply } => {
                let result = match self.calls.get(&call).map(|c| c.state) {
                    None => Err(call_error(481, "no such call")),
                    Some(CallState::Connected) => {
                        self.hang_up(call, None, now, &mut out);
                        Ok(())
                    }
                    Some(_) => {
                        let forks: Vec<usize> = self
                            .calls
                            .get(&call)
                            .map(|c| (1..c.legs.len()).collect())
                            .unwrap_or_default();
                        for i in forks {
                            self.cancel_leg(call, i, now, &mut out);
                        }
                        self.fail_call(
                            call,
                            487,
                            "Request Terminated (ended by an application)",
                            now,
                            &mut out,
                        );
                        Ok(())
                    }
                };
                let _ = reply.send(result);
            }
        }
        out
    }

    /// Offers a call to the service that owns the route point; a service that is down or
    /// silent leaves the call to the line's Call Forward No Answer.
    #[allow(clippy::too_many_arguments)]
    fn offer_to_route_point(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        call: u64,
        dn: &DnKey,
        route_point: String,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if let Some(old) = c.target_dn.replace(dn.clone()) {
            if let Some(n) = self.line_load.get_mut(&old) {
                *n = n.saturating_sub(1);
            }
        }
        c.at_route_point = Some(route_point.clone());
        let offer = OfferedCall {
            call,
            route_point: route_point.clone(),
            dn: dn.0.clone(),
            calling: c.caller.number.clone(),
            call_id: c.a_request.call_id().unwrap_or_default().to_string(),
            offer: (!c.a_request.body.is_empty()).then(|| c.a_request.body.clone()),
        };
        *self.line_load.entry(dn.clone()).or_default() += 1;
        self.event(call, dn, Some(route_point.clone()), LineState::Ringing);
        let delivered = self
            .route_point_handlers
            .get(&route_point)
            .is_some_and(|tx| tx.send(offer).is_ok());
        if !delivered {
            tracing::info!(call, route_point = %route_point, "no service on the route point; call forwarding applies");
            self.no_answer(cluster, registrar, call, now, out);
            return;
        }
        let secs = cluster.service_parameters.call_manager.route_point_timeout;
        self.arm_no_answer(call, now + Duration::from_secs(u64::from(secs)));
    }

    /// Redirects an unanswered call: cancels whatever rings and routes the call afresh.
    fn redirect(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        call: u64,
        destination: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) -> Result<(), CallError> {
        let Some(c) = self.calls.get_mut(&call) else {
            return Err(call_error(481, "no such call"));
        };
        if c.state != CallState::Routing || c.third_party.is_some() {
            return Err(call_error(
                409,
                "only an offered, unanswered call can be redirected",
            ));
        }
        if crate::dialplan::pattern::validate_digits(destination).is_err() {
            return Err(call_error(
                484,
                format!("{destination:?} is not a number to dial"),
            ));
        }
        if let Some(at) = c.no_answer_at.take() {
            self.timers.remove(&(at, call));
        }
        // The redirecting route point's CSS, else the caller's.
        let ctx = match c.at_route_point.take() {
            Some(rp) => match cluster.route_points.iter().find(|r| r.name == rp) {
                Some(r) => CallingContext::css(r.css.as_deref(), Some(&r.device_pool)),
                None => c.caller.ctx.clone(),
            },
            None => c.caller.ctx.clone(),
        };
        c.superseded_legs = c.legs.len() - 1;
        let forks: Vec<usize> = (1..c.legs.len()).collect();
        for i in forks {
            self.cancel_leg(call, i, now, out);
        }
        tracing::debug!(call, destination, "redirected");
        self.route(cluster, registrar, call, destination, &ctx, now, out);
        Ok(())
    }

    fn answer_at_route_point(
        &mut self,
        call: u64,
        sdp: Bytes,
        now: Instant,
        out: &mut Vec<Out>,
    ) -> Result<(), CallError> {
        let Some(c) = self.calls.get_mut(&call) else {
            return Err(call_error(481, "no such call"));
        };
        if c.at_route_point.is_none() || c.state != CallState::Routing {
            return Err(call_error(409, "the call is not waiting at a route point"));
        }
        let Some(akey) = c.a_invite.take() else {
            return Err(call_error(409, "the call has no caller to answer"));
        };
        if let Some(at) = c.no_answer_at.take() {
            self.timers.remove(&(at, call));
        }
        c.state = CallState::Connected;
        c.legs[0].state = LegState::Confirmed;
        let a_req = c.a_request.clone();
        let a_tag = c.legs[0].local_tag.clone();
        let dn = c.target_dn.clone();
        let rp = c.at_route_point.clone();
        let body = (!sdp.is_empty()).then(|| ("application/sdp".to_string(), sdp));
        self.respond(&akey, &a_req, 200, Some(&a_tag), body, now, out);
        self.by_server_invite.insert(akey, call);
        if let Some(dn) = dn {
            self.event(call, &dn, rp, LineState::Connected);
        }
        Ok(())
    }

    /// Starts a third-party call: the user's phone is called first, with no SDP (RFC 3725
    /// flow I); its answer's offer then goes to the destination.
    #[allow(clippy::too_many_arguments)]
    fn make_call(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        device: &str,
        line: &str,
        destination: &str,
        now: Instant,
        out: &mut Vec<Out>,
    ) -> Result<u64, CallError> {
        let dev = cluster
            .device(device)
            .ok_or_else(|| call_error(404, format!("device {device} is not configured")))?;
        // The lines the device carries now (an Extension Mobility login's profile's, if any).
        let la = cluster
            .lines_of(dev)
            .into_iter()
            .find(|l| l.dn == line)
            .ok_or_else(|| call_error(404, format!("{device} has no line {line}")))?;
        if destination.is_empty() || crate::dialplan::pattern::validate_digits(destination).is_err()
        {
            return Err(call_error(
                484,
                format!("{destination:?} is not a number to dial"),
            ));
        }
        let key: DnKey = (la.dn.clone(), la.partition.clone());
        let b = registrar
            .binding(device, line)
            .ok_or_else(|| call_error(480, format!("{device} is not registered")))?;
        let dn_cfg = cluster.directory_number(&key);
        if self.line_load.get(&key).copied().unwrap_or(0) >= dn_cfg.map_or(4, |d| d.max_calls) {
            return Err(call_error(
                486,
                format!("line {line} is at its maximum number of calls"),
            ));
        }
        let caller = Caller {
            ctx: CallingContext {
                line_css: dn_cfg.and_then(|d| d.css.clone()),
                device_css: dev.css.clone(),
                device_pool: Some(dev.device_pool.clone()),
            },
            device: Some(device.to_string()),
            dn: Some(key.clone()),
            number: line.to_string(),
            display: la
                .display
                .clone()
                .or_else(|| dn_cfg.and_then(|d| d.alerting_name.clone())),
        };
        let mut synthetic =
            Request::new(Method::Invite, format!("sip:{destination}@{}", self.host));
        synthetic.headers.push("Max-Forwards", "70");
        let id = self.next_call;
        self.next_call += 1;
        *self.line_load.entry(key).or_default() += 1;
        self.calls.insert(
            id,
            Call {
                legs: Vec::new(),
                a_invite: None,
                a_request: synthetic,
                caller,
                state: CallState::Routing,
                answered: None,
                target_dn: None,
                hops: 0,
                hunt: TrunkHunt::default(),
                trunk_number: String::new(),
                no_answer_at: None,
                delayed_offer: false,
                superseded_legs: 0,
                busy_seen: false,
                ringing_sent: false,
                third_party: Some(ThirdParty {
                    destination: destination.to_string(),
                    reply: None,
                }),
                at_route_point: None,
                held: BTreeSet::new(),
            },
        );
        let peer = Peer {
            addr: b.source,
            transport: b.transport,
        };
        // The phone shows whom it is calling.
        let presented = (destination.to_string(), Some(destination.to_string()));
        self.fork_as(
            id,
            peer,
            &b.contact,
            line,
            Some(device.to_string()),
            presented,
            now,
            out,
        );
        tracing::debug!(
            call = id,
            device,
            line,
            destination,
            "third-party call: ringing the user's phone"
        );
        Ok(id)
    }

    /// A response from the user's phone in a third-party call.
    #[allow(clippy::too_many_arguments)]
    fn originator_response(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        call: u64,
        resp: Response,
        to_tag: Option<String>,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(leg) = c.legs.get_mut(0) else { return };
        let status = resp.status;
        if (101..200).contains(&status) {
            if to_tag.is_some() && leg.state == LegState::Trying {
                leg.state = LegState::Early;
                leg.remote_tag = to_tag;
            }
            if leg.state == LegState::Cancelling {
                self.send_cancel(call, 0, now, out);
            }
            return;
        }
        if (200..300).contains(&status) {
            let cancelled = leg.state == LegState::Cancelling || c.state == CallState::Ended;
            leg.state = LegState::Confirmed;
            leg.remote_tag = to_tag;
            if let Some(ct) = contact_of_response(&resp) {
                leg.remote_target = ct;
            }
            if cancelled {
                self.send_ack(call, 0, None, out);
                self.send_bye(call, 0, now, out);
                return;
            }
            // The phone's offer goes to the destination.
            if let Some((ctype, body)) = Self::body_of(&resp.headers, &resp.body) {
                c.a_request.headers.set("Content-Type", ctype);
                c.a_request.body = body;
            }
            let destination = c
                .third_party
                .as_ref()
                .map(|t| t.destination.clone())
                .unwrap_or_default();
            if let Some(reply) = c.third_party.as_mut().and_then(|t| t.reply.take()) {
                let _ = reply.send(Ok(call));
            }
            let ctx = c.caller.ctx.clone();
            tracing::debug!(
                call,
                destination,
                "third-party call: the user's phone answered; calling the destination"
            );
            self.route(cluster, registrar, call, &destination, &ctx, now, out);
            return;
        }
        leg.state = LegState::Failed(status);
        let reason = format!("the user's phone answered {status} {}", resp.reason);
        self.fail_call(call, status, &reason, now, out);
    }

    fn caller_cancelled(
        &mut self,
        _cluster: &Cluster,
        call: u64,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.state != CallState::Routing {
            return;
        }
        let forks: Vec<usize> = (1..c.legs.len()).collect();
        for i in forks {
            self.cancel_leg(call, i, now, out);
        }
        self.fail_call(call, 487, "Request Terminated", now, out);
    }

    /// The caller's ACK for our 2xx: send B's ACK now if it waited for the answer SDP.
    fn ack_for_2xx(&mut self, ack: Request, out: &mut Vec<Out>) {
        let Some(tag) = ack
            .headers
            .to_ref()
            .ok()
            .and_then(|t| t.tag().map(str::to_string))
        else {
            return;
        };
        let Some(&(call, idx)) = self
            .by_dialog
            .get(&(ack.call_id().unwrap_or_default().to_string(), tag))
        else {
            return;
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if idx != 0 || !c.delayed_offer {
            return;
        }
        c.delayed_offer = false;
        if let Some(b) = c.answered {
            let body = Self::body_of(&ack.headers, &ack.body);
            self.send_ack(call, b, body, out);
        }
    }

    /// Stray responses: 2xx retransmissions after our INVITE client transaction ended, which
    /// mean our ACK was lost. Re-ACK (RFC 3261 13.2.2.4).
    fn on_stray(&mut self, resp: Response, out: &mut Vec<Out>) {
        if !(200..300).contains(&resp.status) {
            return;
        }
        let is_invite = resp.cseq().is_ok_and(|c| c.method == Method::Invite);
        let Some(tag) = resp
            .headers
            .from_ref()
            .ok()
            .and_then(|f| f.tag().map(str::to_string))
        else {
            return;
        };
        let Some(&(call, idx)) = self
            .by_dialog
            .get(&(resp.call_id().unwrap_or_default().to_string(), tag))
        else {
            return;
        };
        let delayed = self.calls.get(&call).is_some_and(|c| c.delayed_offer);
        if is_invite && !delayed {
            self.send_ack(call, idx, None, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn in_dialog(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        key: TransactionKey,
        req: Request,
        tag: String,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let _ = (cluster, registrar);
        let dialog = (req.call_id().unwrap_or_default().to_string(), tag.clone());
        let Some(&(call, idx)) = self.by_dialog.get(&dialog) else {
            self.respond(&key, &req, 481, Some(&tag), None, now, out);
            return;
        };
        let Some(c) = self.calls.get(&call) else {
            self.respond(&key, &req, 481, Some(&tag), None, now, out);
            return;
        };
        // The other side of the call from this leg.
        let other = if idx == 0 { c.answered } else { Some(0) };
        if req.method == Method::Bye {
            self.respond(&key, &req, 200, Some(&tag), None, now, out);
            self.hang_up(call, Some(idx), now, out);
            return;
        }
        let Some(other) = other else {
            self.respond(&key, &req, 491, Some(&tag), None, now, out);
            return;
        };
        // A re-INVITE's offer says whether this side holds or resumes: monitoring sees it.
        if req.method == Method::Invite && !req.body.is_empty() {
            if let Ok(sdp) = super::sdp::SessionDescription::parse_bytes(&req.body) {
                self.note_hold(call, idx, sdp.is_hold());
            }
        }
        // Relay everything else (re-INVITE for hold and resume, UPDATE, INFO...) to the other
        // leg and its answer back.
        let Some((mut fwd, peer)) = self.dialog_request(call, other, req.method.clone()) else {
            self.respond(&key, &req, 481, Some(&tag), None, now, out);
            return;
        };
        for h in [
            "Content-Type",
            "Event",
            "Subscription-State",
            "Info-Package",
        ] {
            if let Some(v) = req.headers.get(h) {
                fwd.headers.push(h, v.to_string());
            }
        }
        fwd.body = req.body.clone();
        match self.send_request(fwd, peer, now, out) {
            Some(ckey) => {
                self.relays.insert(ckey, (key, call, other));
            }
            None => self.respond(&key, &req, 500, Some(&tag), None, now, out),
        }
    }

    /// Records that leg `idx`'s side held (or resumed) the call, with a line event for that
    /// side's line when its state changes.
    fn note_hold(&mut self, call: u64, idx: usize, hold: bool) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let changed = if hold {
            c.held.insert(idx)
        } else {
            c.held.remove(&idx)
        };
        if !changed {
            return;
        }
        let dn = if idx == 0 {
            c.caller.dn.clone()
        } else {
            c.target_dn.clone()
        };
        let device = c.legs.get(idx).and_then(|l| l.device.clone());
        if let Some(dn) = dn {
            let state = if hold {
                LineState::Held
            } else {
                LineState::Connected
            };
            self.event(call, &dn, device, state);
        }
    }

    fn relay_response(
        &mut self,
        call: u64,
        idx: usize,
        server_key: &TransactionKey,
        resp: Response,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        if resp.status == 100 {
            return;
        }
        let Some(orig) = self.txns.server(server_key).map(|s| s.request().clone()) else {
            return;
        };
        let tag = orig
            .headers
            .to_ref()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        // ACK a relayed re-INVITE's 2xx on the far side ourselves; the near side ACKs us.
        if orig.method == Method::Invite && (200..300).contains(&resp.status) {
            if let Some((mut ack, peer)) = self.dialog_request(call, idx, Method::Ack) {
                let seq = resp.cseq().map_or(1, |c| c.seq);
                ack.headers.set("CSeq", format!("{seq} ACK"));
                out.push(Out {
                    msg: SipMessage::Request(ack),
                    to: peer,
                });
            }
        }
        let body = Self::body_of(&resp.headers, &resp.body);
        let reason = resp.reason.clone();
        self.respond_reason(
            server_key,
            &orig,
            resp.status,
            &reason,
            tag.as_deref(),
            body,
            now,
            out,
        );
    }

    /// Ends a connected call: BYE to every confirmed leg except the one that hung up.
    fn hang_up(&mut self, call: u64, from_leg: Option<usize>, now: Instant, out: &mut Vec<Out>) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let targets: Vec<usize> = (0..c.legs.len())
            .filter(|&i| Some(i) != from_leg && c.legs[i].state == LegState::Confirmed)
            .collect();
        if let Some(l) = from_leg.and_then(|i| c.legs.get_mut(i)) {
            l.state = LegState::Ended;
        }
        for i in targets {
            self.send_bye(call, i, now, out);
        }
        self.end_call(call);
    }

    fn no_answer(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        call: u64,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.no_answer_at = None;
        if c.state != CallState::Routing {
            return;
        }
        let Some(dn) = c.target_dn.clone() else {
            return;
        };
        let Some((dest, ctx)) = cluster
            .directory_number(&dn)
            .and_then(|l| forward_of(l, |cf| &cf.no_answer))
        else {
            if c.at_route_point.is_some() {
                self.fail_call(
                    call,
                    480,
                    "Temporarily Unavailable (the route point's service did not act and the line has no Call Forward No Answer)",
                    now,
                    out,
                );
            }
            return;
        };
        c.at_route_point = None;
        let forks: Vec<usize> = (1..c.legs.len()).collect();
        c.superseded_legs = c.legs.len() - 1;
        for i in forks {
            self.cancel_leg(call, i, now, out);
        }
        tracing::debug!(call, dn = %dn.0, dest, "call forward no answer");
        self.route(cluster, registrar, call, &dest, &ctx, now, out);
    }
}

/// Where one of a line's call forwards sends a call: the destination, and the search to
/// analyse it with (the forward's own CSS, else the line's). `None` when it is not set.
fn forward_of(
    line: &DirectoryNumber,
    which: impl Fn(&CallForward) -> &Option<ForwardSetting>,
) -> Option<(String, CallingContext)> {
    let f = which(&line.call_forward).as_ref()?;
    let dest = f.destination.clone()?;
    let css = f.css.as_deref().or(line.css.as_deref());
    Some((dest, CallingContext::css(css, None)))
}

fn strip_tag(a: &NameAddr) -> String {
    let mut a = a.clone();
    a.remove_param("tag");
    a.to_string()
}

fn contact_uri(req: &Request) -> Option<String> {
    match req.contacts().ok()? {
        super::message::ContactList::Addrs(v) => v.first().map(|a| a.uri.to_string()),
        super::message::ContactList::Wildcard => None,
    }
}

fn contact_of_response(resp: &Response) -> Option<String> {
    let v = resp.headers.get("Contact")?;
    match super::message::parse_contact_list(v).ok()? {
        super::message::ContactList::Addrs(v) => v.first().map(|a| a.uri.to_string()),
        super::message::ContactList::Wildcard => None,
    }
}

/// Shared handle type for the shell.
pub type SharedCluster = Arc<Cluster>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse_datagram;

    const TRUNKS: &str = r#"cluster: {id: t, name: trunks}
nodes: [{name: n1, address: 127.0.0.1}]
partitions: [{name: PT}]
calling_search_spaces: [{name: CSS, partitions: [PT]}]
device_pools: [{name: DP, node_group: [n1]}]
sip_trunks:
  - {name: IN, destinations: ["127.0.0.50:5060"], device_pool: DP, css: CSS}
  - {name: A, destinations: ["nonexistent.invalid:5060", "gw.test:5070"], device_pool: DP}
  - {name: B, destinations: ["127.0.0.9:5071"], transport: tls, device_pool: DP}
route_groups: [{name: RG, members: [A, B]}]
route_lists: [{name: RL, members: [RG]}]
route_patterns: [{pattern: 9.XXXX, partition: PT, route_list: RL}]
"#;

    fn invite() -> SipMessage {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.50\r\ns=-\r\nc=IN IP4 127.0.0.50\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let text = format!(
            "INVITE sip:91234@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.50:5060;branch=z9hG4bKin1\r\nFrom: <sip:5550100@127.0.0.50>;tag=a1\r\nTo: <sip:91234@127.0.0.1>\r\nCall-ID: hunt-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:5550100@127.0.0.50:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        parse_datagram(text.as_bytes()).unwrap()
    }

    fn invites(out: &[Out]) -> Vec<(Peer, Request)> {
        out.iter()
            .filter_map(|o| match &o.msg {
                SipMessage::Request(r) if r.method == Method::Invite => Some((o.to, r.clone())),
                _ => None,
            })
            .collect()
    }

    fn final_to_caller(out: &[Out]) -> Option<Response> {
        out.iter().find_map(|o| match &o.msg {
            SipMessage::Response(r) if r.status >= 200 && o.to.addr.port() == 5060 => {
                Some(r.clone())
            }
            _ => None,
        })
    }

    /// Destinations are tried in order, every address of a name counts, a name that does not
    /// resolve is skipped, and a transport failure or a 5xx moves on at once.
    #[tokio::test]
    async fn r3_trunk_hunt_tries_every_address_in_order() {
        let def = crate::config::parse_str(TRUNKS, "trunks.yaml").unwrap();
        let cluster = Cluster::new(def);
        let store = crate::store::Store::open("sqlite::memory:").await.unwrap();
        let (registrar, _w) = Registrar::load(store, "n1").await.unwrap();
        let mut core = B2bua::new("127.0.0.1:5060".into(), 7);
        let mut table = Resolved::new();
        table.insert(
            "nonexistent.invalid:5060".into(),
            Err("cannot resolve nonexistent.invalid".into()),
        );
        let gw = ["127.0.0.7:5070", "127.0.0.8:5070"].map(|a| a.parse::<SocketAddr>().unwrap());
        table.insert("gw.test:5070".into(), Ok(gw.to_vec()));
        core.set_resolved(Arc::new(table));
        let caller = Peer {
            addr: "127.0.0.50:5060".parse().unwrap(),
            transport: Transport::Udp,
        };
        let now = Instant::now();
        let out = core.on_message(&cluster, &registrar, invite(), caller, now);
        let sent = invites(&out);
        assert_eq!(sent.len(), 1, "{out:?}");
        assert_eq!(sent[0].0.addr, gw[0]);
        assert_eq!(sent[0].1.uri, "sip:91234@gw.test:5070");
        // The first address cannot be reached: the second is tried at once.
        let failed = SipMessage::Request(sent[0].1.clone());
        let out = core.on_transport_failure(&cluster, &registrar, &failed, "refused", now);
        let sent = invites(&out);
        assert_eq!(sent.len(), 1, "{out:?}");
        assert_eq!(sent[0].0.addr, gw[1]);
        // It answers 503: the next trunk (over TLS) is tried.
        let resp = sent[0]
            .1
            .make_response(503, "Service Unavailable", Some("b1"));
        let peer = sent[0].0;
        let out = core.on_message(&cluster, &registrar, SipMessage::Response(resp), peer, now);
        let sent = invites(&out);
        assert_eq!(sent.len(), 1, "{out:?}");
        assert_eq!(sent[0].0.addr, "127.0.0.9:5071".parse().unwrap());
        assert_eq!(sent[0].0.transport, Transport::Tls);
        assert_eq!(sent[0].1.uri, "sip:91234@127.0.0.9:5071");
        // Its TLS handshake fails and nothing is left: the caller hears 503 and why.
        let failed = SipMessage::Request(sent[0].1.clone());
        let out = core.on_transport_failure(
            &cluster,
            &registrar,
            &failed,
            "TLS handshake failed: certificate refused",
            now,
        );
        let last = final_to_caller(&out).expect("a final answer to the caller");
        assert_eq!(last.status, 503);
        assert!(
            last.reason.contains("certificate refused"),
            "{}",
            last.reason
        );
    }

    /// Before the shell resolved a name, the core does not guess: the destination is skipped.
    #[test]
    fn unresolved_names_and_ip_literals() {
        let t = Resolved::new();
        assert_eq!(
            destination_addrs(&t, "127.0.0.1:5060").unwrap(),
            vec!["127.0.0.1:5060".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            destination_addrs(&t, "[::1]:5061").unwrap(),
            vec!["[::1]:5061".parse::<SocketAddr>().unwrap()]
        );
        assert!(destination_addrs(&t, "gw.test:5060")
            .unwrap_err()
            .contains("not resolved yet"));
    }
}
