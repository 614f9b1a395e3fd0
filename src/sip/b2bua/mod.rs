//! The back-to-back user agent: every call is two (or, while forking, more) dialogs, and the
//! node sits between them, relaying SDP so media flows phone to phone.
//!
//! A state machine like the transaction layer it stands on: it does no I/O, reads no clock and
//! draws nothing random. Every input ([`B2bua::on_message`], [`B2bua::on_timers`],
//! [`B2bua::on_command`], transport failures, an undelivered route-point offer) comes with the
//! time ([`Now`]), the cluster and the registrations ([`Registrations`]), and returns what to do
//! ([`Out`]): messages to send, answers to services' commands, calls to offer to route points.
//! Tags, branches and Call-IDs come from a seeded generator and digest nonces from a secret,
//! both handed in. The shell (`sip/server.rs`) owns the sockets, the clock and the channels to
//! the services; the tests drive the core with a manual clock.
//!
//! Routing follows Unified CM: the caller is a registered device line (its line CSS, then device
//! CSS) or a SIP trunk (the trunk's CSS); the dialled number goes through digit analysis; a
//! directory number rings every registered device that carries it (a shared line: first answer
//! wins, the others are cancelled) after Call Forward All, Busy (busy trigger), Do Not Disturb,
//! Unregistered and No Answer (per-line timer) have had their say, each with its own CSS.
//! A device registered with another node of the cluster is rung through that node over the
//! intra-cluster trunk ([`intra`]), which rings only its own registrations.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::message::{default_reason, Method, NameAddr, Request, Response, SipMessage};
use super::registrar::Registrations;
use super::transaction::{
    Action, Incoming, Reliability, ResponseOutcome, Timers, TransactionKey, TransactionTable,
};
use super::Transport;
use crate::cluster::Cluster;
use crate::config::model::{CallForward, DirectoryNumber, ForwardSetting};
use crate::dialplan::analysis::{CallingContext, Destination, DnKey};

mod commands;
mod digest;
mod forward;
pub mod handoff;
pub mod intra;
mod legs;
mod moving;
mod routing;
pub use moving::MoveTo;
mod stranger;
pub use stranger::{STRANGER_ANSWERS_PER_WINDOW, STRANGER_WINDOW};
#[cfg(test)]
mod tests;

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

/// The time, handed to the core with every input: the monotonic clock for transaction and
/// call timers, and Unix seconds for the expiry of registrations and for digest nonces (which
/// any node must be able to check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: Instant,
    pub unix: i64,
}

/// What the core asks its shell to do, in order.
#[derive(Debug, Clone)]
pub enum Out {
    /// Send a SIP message.
    Send { msg: SipMessage, to: Peer },
    /// The answer to a service's command.
    Reply(CommandId, Reply),
    /// Offer a call to the service behind a route point. A shell that finds the service gone
    /// says so with [`B2bua::on_offer_undelivered`].
    Offer(OfferedCall),
}

/// Names a command from a service, so that its answer ([`Out::Reply`]) finds the service.
/// The shell hands them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommandId(pub u64);

/// A request from a service (WebDialer, Assistant, ...) to call control.
#[derive(Debug, Clone)]
pub enum Command {
    /// Third-party call control (RFC 3725): ring the user's own phone first and, once it answers,
    /// call the destination from it with the phone's own calling search spaces. Answered with
    /// [`Reply::Call`] once the phone answers or the attempt fails.
    ///
    /// The user's phone has `answer_within` to answer: then the attempt fails (408) and its
    /// ringing is cancelled; an answer that comes later anyway is acknowledged and hung up.
    /// `request` names the attempt for [`Command::Abandon`].
    MakeCall {
        device: String,
        line: String,
        destination: String,
        answer_within: Duration,
        request: u64,
    },
    /// The service gave up on the MakeCall named `request` (its client went away, its session
    /// ended, the node is stopping): the third-party call ends, every leg it started released
    /// (CANCEL while ringing, ACK and BYE once answered). Not answered.
    Abandon { request: u64 },
    /// Offers calls to a route point's DNs to this service from now on ([`Out::Offer`]).
    RegisterRoutePoint { name: String },
    /// The route points other nodes' services serve now (route point -> node), replacing what
    /// was known: calls to them that reach this node go to that node over the intra-cluster
    /// trunk (see `intra`). Not answered.
    RoutePointsElsewhere { at: HashMap<String, String> },
    /// Sends an offered (ringing, unanswered) call elsewhere without answering it: the CTI
    /// redirect route-point services use. Answered with [`Reply::Done`].
    Redirect { call: u64, destination: String },
    /// Answers a call offered to a route point, with the service's own SDP answer.
    /// Answered with [`Reply::Done`].
    Answer { call: u64, sdp: Bytes },
    /// Refuses an offered, unanswered route-point call with a final status (488 for an
    /// offer the service cannot take, 486 when it is full). Answered with [`Reply::Done`].
    Reject {
        call: u64,
        status: u16,
        reason: String,
    },
    /// The devices on a call now (ringing, connected or held), for services that leave busy
    /// phones out. Answered with [`Reply::Devices`].
    BusyDevices,
    /// Whether the call is still up (a service that missed line events asks). Answered with
    /// [`Reply::Exists`].
    CallExists { call: u64 },
    /// Ends a call (BYE to every connected side, CANCEL to the ringing ones). Answered with
    /// [`Reply::Done`].
    EndCall { call: u64 },
    /// The nodes of the cluster that are down now (their heartbeat stale or gone), replacing
    /// what was known: a dialog towards one of them is spliced past it (see [`handoff`]).
    /// Not answered.
    NodesDown { names: HashSet<String> },
    /// Sends an unsolicited NOTIFY (`Event: check-sync` makes a Cisco phone fetch its
    /// configuration again) to every address the device is registered from. Not answered.
    NotifyDevice { device: String, event: String },
    /// Sends an unsolicited NOTIFY (`event`) to a phone at an address it registered from
    /// earlier, which this node holds no registration of now (EMCC: a phone of this cluster
    /// registered with its user's home, which cannot be reached at logout, is told to fetch
    /// its configuration here again). Best effort, not answered.
    NotifyContact {
        device: String,
        contact: String,
        source: SocketAddr,
        transport: Transport,
        event: String,
    },
    /// The calls up now, for the operator's view. Answered with [`Reply::Calls`].
    ListCalls,
    /// `device` rings silently for calls to line `dn` (`on`), or audibly again: the
    /// Assistant's shared line mode with the manager on Do Not Disturb. Not answered.
    SilentRing {
        device: String,
        dn: String,
        on: bool,
    },
    /// `device` answers calls to line `dn` by itself (`on`), or rings again: the INVITE asks
    /// for it with [`AUTO_ANSWER_CALL_INFO`] (the Attendant Console's attendant phones, whose
    /// calls connect without a key press). Not answered.
    AutoAnswer {
        device: String,
        dn: String,
        on: bool,
    },
    /// The service keeps an offered call at its route point, unanswered and without media,
    /// for as long as it likes (an Attendant Console CT gateway device queueing it for the
    /// attendants): the route point timeout no longer applies until the service redirects,
    /// answers or rejects it. Answered with [`Reply::Done`].
    Keep { call: u64 },
    /// The calls each line carries at the other nodes of the cluster (summed over the nodes
    /// that are up), replacing what was known: routing counts them with this node's own
    /// against the line's busy trigger and maximum number of calls, as one node would.
    /// Not answered.
    RemoteLineLoads { loads: HashMap<DnKey, u32> },
    /// The caller's dialog of a call this node carries (a route point's service answered it),
    /// sealed with the cluster's secret, for whoever must release it should this node die
    /// (the Paging Server's standby). `None` when there is no such dialog here: no cluster
    /// secret, the call is gone or not answered, or another node carries the caller's side
    /// (that node releases it). Answered with [`Reply::Dialog`].
    CallerDialog { call: u64 },
    /// Ends a dialog another node carried, from its sealed record ([`Command::CallerDialog`]):
    /// a BYE with a Reason saying the node is down. A record that does not open is logged.
    /// Not answered.
    ReleaseDialog { dialog: String },
    /// The calls each line carries at this node, not counting the calls another node sent
    /// here over the intra-cluster trunk (that node counts them): what this node announces
    /// to the others. Answered with [`Reply::Loads`].
    LineLoads,
    /// Moves the far side of an answered call (see [`moving`]): the caller's leg stays up and
    /// is re-INVITEd with the new far side's SDP. Answered with [`Reply::Moved`] once the
    /// caller took the re-INVITE, or the move failed (the call then stays as it was).
    Move { call: u64, to: MoveTo },
}

pub(crate) use crate::sip::{AUTO_ANSWER_CALL_INFO, SILENT_ALERT_INFO};

/// A call as the operator's view lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActiveCall {
    pub id: u64,
    /// `routing` (offered, ringing, hunting), `at-route-point` (a service decides) or
    /// `connected`.
    pub state: &'static str,
    pub calling: String,
    pub dialled: String,
    /// The calling device, then the devices of the legs still up.
    pub devices: Vec<String>,
    /// Some side has put the call on hold.
    pub held: bool,
    /// Placed by a service (WebDialer's third-party call control).
    pub third_party: bool,
    /// Unix seconds.
    pub started: i64,
}

/// The answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The third-party call, once the user's phone answered.
    Call(Result<u64, CallError>),
    /// Whether a redirect, answer, reject or end of call was done.
    Done(Result<(), CallError>),
    /// The devices on a call.
    Devices(HashSet<String>),
    /// Whether the call is still up.
    Exists(bool),
    /// The calls up now, oldest first.
    Calls(Vec<ActiveCall>),
    /// Calls per line ([`Command::LineLoads`]).
    Loads(HashMap<DnKey, u32>),
    /// A caller's dialog, sealed ([`Command::CallerDialog`]).
    Dialog(Option<String>),
    /// A move done (with the caller's SDP answer to its re-INVITE) or failed.
    Moved(Result<Option<Bytes>, CallError>),
}

/// A call offered to a service's route point.
#[derive(Debug, Clone)]
pub struct OfferedCall {
    pub call: u64,
    pub route_point: String,
    /// The route point's line (its pattern: `6XXXX`).
    pub dn: String,
    /// The number that reached the route point's line (after translations): what the caller
    /// dialled (`60001`), never the pattern.
    pub number: String,
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
    /// The search a route point's service redirected the call with: its later redirects
    /// (the Assistant's RNA forwarding, intercept) use it again, not the caller's (which may
    /// lead back to the route point).
    service_ctx: Option<CallingContext>,
    /// Legs whose side has put the call on hold (their last offer was sendonly/inactive).
    held: BTreeSet<usize>,
    /// The number dialled (the caller's Request-URI, or a third-party call's destination).
    dialled: String,
    /// The number whose analysis reached `target_dn` (after translations): what a pattern
    /// forward destination forwards, and the callee the offer names.
    reached: String,
    /// Unix seconds when the call began (the operator's view lists it).
    started: i64,
    /// Another node sent the call here over the intra-cluster trunk and counts its line
    /// there: the count of `target_dn` here is not announced (see [`B2bua::own_loads`]).
    delivered: bool,
    /// A move of the far side under way ([`Command::Move`]).
    moving: Option<moving::Moving>,
}

#[derive(Debug)]
struct ThirdParty {
    destination: String,
    /// The service's MakeCall, answered once the user's phone answers or the attempt fails.
    reply: Option<CommandId>,
    /// The service's name for the attempt ([`Command::Abandon`]).
    request: u64,
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
    /// The part of `line_load` made of calls other nodes sent here (they count them too).
    delivered_load: HashMap<DnKey, u32>,
    /// The calls each line carries at the other nodes ([`Command::RemoteLineLoads`]).
    remote_load: HashMap<DnKey, u32>,
    rng: u64,
    events: Vec<LineEvent>,
    /// INVITEs still pending on legs of calls that ended (cancelled forks, abandoned calls).
    orphans: HashMap<TransactionKey, Leg>,
    /// Route points a service has registered for (see [`B2bua::on_offer_undelivered`]).
    route_points: HashSet<String>,
    /// (device, line) pairs that ring silently ([`Command::SilentRing`]).
    silent_ring: HashSet<(String, String)>,
    /// (device, dn) that answer by themselves ([`Command::AutoAnswer`]).
    auto_answer: HashSet<(String, String)>,
    /// Route points served by another node's service, with that node (a service the
    /// cluster runs once, such as the Paging Server, on the node holding its lease).
    remote_route_points: HashMap<String, String>,
    /// Nonces for digest challenges of INVITEs from devices whose security profile asks for it.
    nonces: super::digest::Nonces,
    /// Trunk destination names and their addresses (see [`Resolved`]).
    resolved: Arc<Resolved>,
    /// How peers reach us over TLS (`host:port` of the SIPS listener), when it differs.
    tls_host: Option<String>,
    /// Budgets of answers to strangers, per source.
    strangers: stranger::Strangers,
    /// Seals and opens dialog handles, in a cluster (see [`handoff`]).
    handoff: Option<handoff::Handoff>,
    /// The SIP addresses of the nodes that are down now ([`Command::NodesDown`]).
    down_nodes: HashSet<SocketAddr>,
    /// A Reason header (RFC 3326) the BYEs sent now carry.
    bye_reason: Option<&'static str>,
    /// Re-INVITEs of callers whose call moved ([`Command::Move`]): client key -> call.
    reinvites: HashMap<TransactionKey, u64>,
}

/// Why a call whose other side was a service of a dead node is released.
const NODE_DOWN_REASON: &str = "SIP;cause=503;text=\"the node serving the call is down\"";

/// Something the node's services want to know about (monitoring, BLF, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSummary {
    pub calls: usize,
    pub connected: usize,
    pub transactions: usize,
}

impl B2bua {
    /// `host` is how peers reach us (`ip:port`). The core draws nothing random itself: `seed`
    /// starts the generator of tags, branches and Call-IDs, and `nonce_secret` signs digest
    /// nonces (both random in production, fixed in tests).
    pub fn new(host: String, seed: u64, nonce_secret: [u8; 32]) -> B2bua {
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
            delivered_load: HashMap::new(),
            remote_load: HashMap::new(),
            rng: seed | 1,
            events: Vec::new(),
            orphans: HashMap::new(),
            route_points: HashSet::new(),
            silent_ring: HashSet::new(),
            auto_answer: HashSet::new(),
            remote_route_points: HashMap::new(),
            nonces: super::digest::Nonces::new(nonce_secret),
            resolved: Arc::new(Resolved::new()),
            tls_host: None,
            strangers: Default::default(),
            handoff: None,
            down_nodes: HashSet::new(),
            bye_reason: None,
            reinvites: HashMap::new(),
        }
    }

    /// The cluster's shared secret: from now on the Contacts of connected calls carry dialog
    /// handles any node of the cluster can act on (see [`handoff`]).
    pub fn set_dialog_secret(&mut self, secret: [u8; 32]) {
        self.handoff = Some(handoff::Handoff::new(secret));
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
        registrar: &dyn Registrations,
        msg: SipMessage,
        peer: Peer,
        now: Now,
    ) -> Vec<Out> {
        let mut out = Vec::new();
        match msg {
            SipMessage::Request(req) => {
                self.on_request(cluster, registrar, req, peer, now, &mut out)
            }
            SipMessage::Response(resp) => match self.txns.on_response(resp, now.mono) {
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
        registrar: &dyn Registrations,
        msg: &SipMessage,
        reason: &str,
        now: Now,
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
        registrar: &dyn Registrations,
        peer: Peer,
        reason: &str,
        now: Now,
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
        registrar: &dyn Registrations,
        key: &TransactionKey,
        reason: &str,
        now: Now,
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
        registrar: &dyn Registrations,
        now: Now,
    ) -> Vec<Out> {
        let mut out = Vec::new();
        for (key, action) in self.txns.on_timers(now.mono) {
            self.run_actions(cluster, registrar, &key, vec![action], now, &mut out);
        }
        while let Some(&(at, call)) = self.timers.first() {
            if at > now.mono {
                break;
            }
            self.timers.pop_first();
            if self.move_deadline(call, at, now, &mut out) {
                continue;
            }
            self.no_answer(cluster, registrar, call, now, &mut out);
        }
        out
    }

    fn on_request(
        &mut self,
        cluster: &Cluster,
        registrar: &dyn Registrations,
        req: Request,
        peer: Peer,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        match self.txns.on_request(req, peer.reliability(), now.mono) {
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
                    out.push(Out::Send {
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
        registrar: &dyn Registrations,
        key: &TransactionKey,
        actions: Vec<Action>,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        for a in actions {
            match a {
                Action::Send(msg) => {
                    if let Some(&to) = self.txn_peer.get(key) {
                        out.push(Out::Send { msg, to });
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
        self.reinvites.remove(key);
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
        now: Now,
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
        now: Now,
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
            // A 2xx sets the caller's remote target for the rest of the dialog: in a cluster
            // it carries the handle of the other side's dialog (see `handoff`).
            let contact = if (200..300).contains(&status) {
                let dialog = (
                    req.call_id().unwrap_or_default().to_string(),
                    tag.to_string(),
                );
                match self.by_dialog.get(&dialog).copied() {
                    Some((call, idx)) => self.contact_with_handle(contact, call, idx),
                    None => contact,
                }
            } else {
                contact
            };
            resp.headers.push("Contact", contact);
            // The caller's route set is the request's Record-Route: copied into every answer
            // that sets up (or confirms) the dialog, so its ACK, BYE and re-INVITEs come back
            // through the proxies that asked to stay on the path (RFC 3261 12.1.1).
            for rr in req.headers.get_all("Record-Route") {
                resp.headers.push("Record-Route", rr.to_string());
            }
        }
        if let Some((ctype, b)) = body {
            resp.headers.push("Content-Type", ctype);
            resp.body = b;
        }
        resp.headers
            .push("Server", format!("ucm/{}", env!("CARGO_PKG_VERSION")));
        let actions = self.txns.respond(key, resp, now.mono);
        for a in actions {
            if let Action::Send(msg) = a {
                if let Some(&to) = self.txn_peer.get(key) {
                    out.push(Out::Send { msg, to });
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

    /// `contact` (ours, for leg `idx` of `call`) with the handle of the other side's dialog
    /// added, in a cluster and once the other side is known (see [`handoff`]).
    pub(super) fn contact_with_handle(&mut self, contact: String, call: u64, idx: usize) -> String {
        if self.handoff.is_none() {
            return contact;
        }
        let Some(c) = self.calls.get(&call) else {
            return contact;
        };
        let other = if idx == 0 { c.answered } else { Some(0) };
        let (Some(o), Some(mine)) = (other.and_then(|o| c.legs.get(o)), c.legs.get(idx)) else {
            return contact;
        };
        let Some(remote_tag) = o.remote_tag.clone() else {
            return contact;
        };
        let handle = handoff::LegHandle {
            for_call_id: mine.call_id.clone(),
            call_id: o.call_id.clone(),
            local_tag: o.local_tag.clone(),
            remote_tag,
            local_addr: o.local_addr.clone(),
            remote_addr: o.remote_addr.clone(),
            remote_target: o.remote_target.clone(),
            route_set: o.route_set.clone(),
            peer: o.peer,
            device: o.device.clone(),
            lines: handoff::CallLines {
                caller: c.caller.dn.clone(),
                target: c.target_dn.clone(),
                delivered: c.delivered,
            },
        };
        let nonce = self.random();
        match self.handoff.as_ref() {
            Some(h) => handoff::with_token(&contact, &h.seal(&handle, nonce)),
            None => contact,
        }
    }

    /// Starts a client transaction towards `peer` and queues its first transmission.
    fn send_request(
        &mut self,
        req: Request,
        peer: Peer,
        now: Now,
        out: &mut Vec<Out>,
    ) -> Option<TransactionKey> {
        match self.txns.start_client(req, peer.reliability(), now.mono) {
            Ok((key, actions)) => {
                self.txn_peer.insert(key.clone(), peer);
                for a in actions {
                    if let Action::Send(msg) = a {
                        out.push(Out::Send { msg, to: peer });
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
