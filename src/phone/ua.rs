//! The phone's SIP user agent, sans-IO: line registrations and calls as state machines over
//! the RFC 3261 transaction layer ([`TransactionTable`]).
//!
//! [`Ua`] takes datagrams, commands (dial, answer, hang up, hold) and the time, and returns
//! [`Output`]s for the shell to carry out: datagrams to send, media to start, change or stop,
//! and a configuration resync. It does no I/O, reads no clock and draws its randomness from a
//! seeded generator. RTP ports come from the shell through [`MediaPorts`], because binding one
//! is I/O.
//!
//! It behaves like a Cisco SIP phone towards Unified CM, which is also its outbound proxy:
//! every request and ACK goes to the node. Lines register with a Contact naming the device
//! (`+sip.instance="<urn:uuid:00000000-0000-0000-0000-<mac>>"`) and re-register before expiry.
//! Calls offer and accept G.711 mu-law only (plus telephone-event). Incoming calls ring (180)
//! and are answered on command or automatically after a delay; a busy phone answers 486.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use super::config::Line;
use super::failover::{self, Failover, FailoverSettings, Move};
use crate::sip::transaction::{
    new_branch, Action, ClientState, Incoming, Reliability, ResponseOutcome, Role, Timers,
    TransactionKey, TransactionTable,
};
use crate::wire::sdp::{answer_for, Direction, SessionDescription};
use crate::wire::sip::{
    parse_datagram, quote, ContactList, Method, NameAddr, Request, Response, SipMessage,
};

/// Methods the phone accepts (the Allow header).
pub const ALLOW: &str = "ACK,BYE,CANCEL,INVITE,NOTIFY,OPTIONS,REFER,REGISTER,UPDATE,SUBSCRIBE,INFO";
/// Option tags the phone supports.
pub const SUPPORTED: &str = "replaces,join,sdp-anat,norefersub,X-cisco-serviceuri,X-cisco-config";
/// Ended calls kept for the state view.
pub const MAX_ENDED_CALLS: usize = 20;
/// Calls (ringing, connected, held) a phone handles at once, whatever its lines allow.
pub const MAX_ACTIVE_CALLS: usize = 16;
/// How long a failed registration waits before trying again.
pub const REGISTER_RETRY: Duration = Duration::from_secs(30);
/// G.711 mu-law.
pub const PCMU: u8 = 0;
/// The telephone-event payload type offered.
pub const TELEPHONE_EVENT: u8 = 101;

/// Who the phone is and how it behaves.
#[derive(Debug, Clone)]
pub struct UaSettings {
    /// `SEP<MAC>`.
    pub device: String,
    /// The MAC, 12 lowercase hex digits.
    pub mac: String,
    /// The phone's SIP socket address.
    pub local: SocketAddr,
    /// The Unified CM node (registrar and outbound proxy).
    pub server: SocketAddr,
    pub user_agent: String,
    /// Where the phone's RTP sockets are.
    pub media_ip: IpAddr,
    /// Expires asked for in REGISTER.
    pub register_expires: u32,
    /// Answer incoming calls by itself after `answer_delay`.
    pub auto_answer: bool,
    pub answer_delay: Duration,
    /// Refuse every incoming call with 486 Busy Here.
    pub busy: bool,
    /// Answer an incoming INVITE with 100 Trying before 180 Ringing, as Cisco phones do.
    pub send_trying: bool,
    pub seed: u64,
    pub timers: Timers,
}

/// Binds RTP sockets for the UA (the shell's job).
pub trait MediaPorts {
    /// A fresh RTP port on the media address, or `None` when none can be had.
    fn allocate(&mut self) -> Option<u16>;
    /// The call holding `port` ended.
    fn release(&mut self, port: u16);
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send a SIP message.
    Send { to: SocketAddr, msg: SipMessage },
    /// Start a call's media on `local_port`: receive, and send to `remote` when `send`.
    MediaStart {
        call_id: String,
        local_port: u16,
        remote: Option<SocketAddr>,
        payload_type: u8,
        send: bool,
    },
    /// The far end moved or (un)held the stream.
    MediaUpdate {
        call_id: String,
        remote: Option<SocketAddr>,
        send: bool,
    },
    /// Stop a call's media.
    MediaStop { call_id: String },
    /// The lines moved to member `node` of the Unified CM group at `server` (calls and their
    /// media stay as they are).
    Moved {
        node: usize,
        server: SocketAddr,
        why: Move,
    },
    /// The node asked for a configuration resync (`NOTIFY` with `Event: check-sync` or
    /// `resync`): fetch the configuration file again, then [`Ua::set_lines`].
    Resync { event: String },
}

/// Whether a REGISTER's answer says another registrant holds the device: the node's
/// registrar answers `403 Forbidden (SEP... is registered from another address)` until that
/// binding expires.
pub fn registered_elsewhere(status: u16, reason: &str) -> bool {
    status == 403 && reason.contains("registered from another address")
}

/// A line registration's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegState {
    Unregistered,
    Registering,
    Registered,
    Failed,
    Unregistering,
}

#[derive(Debug, Clone)]
struct Registration {
    line: Line,
    call_id: String,
    from_tag: String,
    cseq: u32,
    state: RegState,
    registered: bool,
    /// The expiry asked for in the pending request.
    asked: u32,
    /// The expiry granted by the last 2xx.
    expires: u32,
    expires_at: Option<Instant>,
    refresh_at: Option<Instant>,
    pending: Option<TransactionKey>,
    last_status: Option<u16>,
    last_reason: Option<String>,
    /// Drop this registration once its removal (Expires: 0) is answered.
    remove_when_done: bool,
    /// Register (at `refresh_at`) only once the removals of old lines are answered.
    after_removals: bool,
}

/// A registration as the state view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrationView {
    pub line: String,
    pub label: String,
    pub registered: bool,
    /// What is true of the registration now: `registered` (a binding the node granted and
    /// that has not expired), `refused` (the node said no: see `last_status`), `expired` (the
    /// binding ran out without a refresh the node answered), `unreachable` (no answer yet),
    /// `registering`, `unregistering` or `unregistered`.
    pub status: &'static str,
    pub state: RegState,
    /// Seconds granted by the registrar.
    pub expires: u32,
    /// Seconds until the binding expires, while registered.
    pub expires_in: Option<u64>,
    pub last_status: Option<u16>,
    pub last_reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallDirection {
    Inbound,
    Outbound,
}

/// A call's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// INVITE sent, nothing heard yet.
    Dialing,
    /// 100 Trying received.
    Proceeding,
    /// 180/183 received: the far end rings.
    Ringback,
    /// An incoming call alerts.
    Ringing,
    Connected,
    /// On hold (either side).
    Held,
    /// Hanging up (CANCEL sent, waiting for the final answer).
    Ending,
    Ended,
}

#[derive(Debug, Clone)]
struct Call {
    id: String,
    direction: CallDirection,
    line: String,
    remote_number: String,
    remote_display: Option<String>,
    state: CallState,
    /// Inbound: the INVITE's Alert-Info asked for a silent ring (the phone shows the call
    /// without ringing: the Assistant's shared line with the manager on Do Not Disturb).
    silent: bool,
    local_tag: String,
    remote_tag: Option<String>,
    /// Our From/To header value without the tag.
    local_uri: String,
    /// Theirs, without the tag.
    remote_uri: String,
    remote_target: String,
    local_cseq: u32,
    /// Inbound: the INVITE server transaction while unanswered, and the INVITE.
    invite_key: Option<TransactionKey>,
    invite: Option<Request>,
    answer_at: Option<Instant>,
    /// Outbound: the INVITE client transaction and the INVITE.
    client_key: Option<TransactionKey>,
    provisional: bool,
    cancel_pending: bool,
    /// The ACK sent for the 2xx (re-sent on 2xx retransmissions).
    ack: Option<Request>,
    reinvite_key: Option<TransactionKey>,
    rtp_port: Option<u16>,
    local_sdp: Option<SessionDescription>,
    remote_sdp: Option<SessionDescription>,
    payload_type: u8,
    media_started: bool,
    local_hold: bool,
    remote_hold: bool,
    final_status: Option<u16>,
    end_reason: Option<String>,
    created: Instant,
    connected_at: Option<Instant>,
    ended_at: Option<Instant>,
}

/// A call as the state view shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallView {
    pub call_id: String,
    pub direction: CallDirection,
    pub line: String,
    pub remote_number: String,
    pub remote_display: Option<String>,
    pub state: CallState,
    /// Shown without ringing (an inbound INVITE's Alert-Info asked for it).
    pub silent: bool,
    /// The negotiated codec (`PCMU`), once media is set up.
    pub codec: Option<String>,
    pub payload_type: Option<u8>,
    pub local_rtp: Option<SocketAddr>,
    pub remote_rtp: Option<SocketAddr>,
    pub local_hold: bool,
    pub remote_hold: bool,
    pub final_status: Option<u16>,
    pub end_reason: Option<String>,
    pub age_ms: u64,
    /// Time connected (until the end for ended calls).
    pub connected_ms: Option<u64>,
}

/// The phone's SIP user agent.
pub struct Ua {
    s: UaSettings,
    txns: TransactionTable,
    txn_peer: HashMap<TransactionKey, SocketAddr>,
    /// Client and server transactions that belong to a call.
    call_of_txn: HashMap<TransactionKey, String>,
    regs: Vec<Registration>,
    calls: HashMap<String, Call>,
    /// Call-IDs in creation order.
    order: Vec<String>,
    ended: VecDeque<String>,
    rng: u64,
    sess_id: u64,
    /// Datagrams that were not SIP or not well formed.
    pub malformed: u64,
    /// The last NOTIFY event received.
    pub last_notify: Option<String>,
    /// The Unified CM group's members in priority order, and which one the lines are on.
    members: Vec<SocketAddr>,
    failover: Option<Failover>,
}

/// Call-IDs of the keepalive probes start so.
const KEEPALIVE: &str = "keepalive-";

fn without_tag(a: &NameAddr) -> String {
    let mut a = a.clone();
    a.remove_param("tag");
    a.to_string()
}

fn sdp_body(sdp: &SessionDescription) -> (String, Bytes) {
    ("application/sdp".to_string(), Bytes::from(sdp.to_string()))
}

/// The address and payload type to send to, and whether the far end wants our audio.
fn media_target(remote: &SessionDescription) -> (Option<SocketAddr>, u8, bool) {
    let Some(m) = remote.audio().filter(|m| !m.is_rejected()) else {
        return (None, PCMU, false);
    };
    let addr = remote
        .media_address(m)
        .filter(|a| !a.ip().is_unspecified() && a.port() != 0);
    let pt = m
        .codecs()
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case("PCMU"))
        .map_or(PCMU, |c| c.pt);
    let wants = remote.direction(m).receives() && addr.is_some();
    (addr, pt, wants)
}

impl Ua {
    pub fn new(settings: UaSettings, lines: &[Line]) -> Ua {
        let timers = settings.timers;
        let mut ua = Ua {
            rng: settings.seed | 1,
            sess_id: 0,
            s: settings,
            txns: TransactionTable::new(timers),
            txn_peer: HashMap::new(),
            call_of_txn: HashMap::new(),
            regs: Vec::new(),
            calls: HashMap::new(),
            order: Vec::new(),
            ended: VecDeque::new(),
            malformed: 0,
            last_notify: None,
            members: Vec::new(),
            failover: None,
        };
        ua.sess_id = ua.random() >> 16;
        for l in lines {
            let r = ua.new_registration(l.clone());
            ua.regs.push(r);
        }
        ua
    }

    pub fn settings(&self) -> &UaSettings {
        &self.s
    }

    /// Keeps the lines on a live member of the Unified CM group `members` (priority order;
    /// the first is the server the lines register with now): see [`failover`]. With fewer
    /// than two members, or when the server is not the first of them (a SIP server given
    /// by hand), the phone stays where it is.
    pub fn set_failover(&mut self, members: Vec<SocketAddr>, s: FailoverSettings, now: Instant) {
        if members.len() < 2 || members.first() != Some(&self.s.server) {
            return;
        }
        self.failover = Some(Failover::new(members.len(), s, now));
        self.members = members;
    }

    /// The member of the Unified CM group the lines are on (0 without failover), and the
    /// moves made so far.
    pub fn member(&self) -> (usize, u64) {
        self.failover
            .as_ref()
            .map_or((0, 0), |f| (f.active(), f.moves))
    }

    /// The node the lines register with.
    pub fn server(&self) -> SocketAddr {
        self.s.server
    }

    fn run_failover(
        &mut self,
        actions: Vec<failover::Action>,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) {
        for a in actions {
            match a {
                failover::Action::Probe { node, id } => {
                    let Some(to) = self.members.get(node).copied() else {
                        continue;
                    };
                    let local = self.s.local;
                    let tag = self.tag();
                    let mut req = self.request(
                        Method::Options,
                        &format!("sip:{to}"),
                        format!("<sip:{}@{local}>;tag={tag}", self.s.device),
                        format!("<sip:{to}>"),
                        &format!("{KEEPALIVE}{id}@{}", local.ip()),
                        1,
                    );
                    req.headers.push("Accept", "application/sdp");
                    // Not a transaction: an unanswered probe is the failover machine's to count.
                    out.push(Output::Send {
                        to,
                        msg: SipMessage::Request(req),
                    });
                }
                failover::Action::Register { node, from, why } => {
                    let Some(to) = self.members.get(node).copied() else {
                        continue;
                    };
                    tracing::info!(device = %self.s.device, from = %self.s.server, from_member = from, %to, ?why, "moving the registrations");
                    self.move_registrations(to, why == Move::Fallback, now, ports, out);
                    out.push(Output::Moved {
                        node,
                        server: to,
                        why,
                    });
                }
            }
        }
    }

    /// Registers every line with `to`. `leave`: the node left is alive (a fallback), so its
    /// bindings are removed rather than left to expire. Calls are not touched: their media
    /// flows phone to phone whatever node carries the signalling.
    fn move_registrations(
        &mut self,
        to: SocketAddr,
        leave: bool,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) {
        for i in 0..self.regs.len() {
            let Some(r) = self.regs.get_mut(i) else {
                continue;
            };
            if r.remove_when_done {
                continue;
            }
            let was = r.registered;
            r.registered = false;
            r.expires_at = None;
            if leave && was {
                // Sent to the old node (the server is still it), answered or not, untracked.
                if let Some(old) = r.pending.take() {
                    self.txn_peer.remove(&old);
                }
                if let Some(req) = self.register_request(i, 0) {
                    let _ = self.start_client(req, None, now, ports, out);
                }
            }
        }
        self.s.server = to;
        for i in 0..self.regs.len() {
            if self.regs.get(i).is_some_and(|r| !r.remove_when_done) {
                let e = self.s.register_expires;
                self.send_register(i, e, now, ports, out);
            }
        }
    }

    pub fn set_answer_policy(&mut self, auto_answer: bool, answer_delay: Duration, busy: bool) {
        self.s.auto_answer = auto_answer;
        self.s.answer_delay = answer_delay;
        self.s.busy = busy;
    }

    fn random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn tag(&mut self) -> String {
        format!("{:08x}{:08x}", self.random() as u32, self.random() as u32)
    }

    fn server_host(&self) -> String {
        self.s.server.to_string()
    }

    fn instance(&self) -> String {
        format!("\"<urn:uuid:00000000-0000-0000-0000-{}>\"", self.s.mac)
    }

    fn contact(&self, dn: &str) -> String {
        format!(
            "<sip:{dn}@{};transport=udp>;+sip.instance={}",
            self.s.local,
            self.instance()
        )
    }

    fn new_registration(&mut self, line: Line) -> Registration {
        let call_id = format!(
            "{:08x}-{:08x}@{}",
            self.random() as u32,
            self.random() as u32,
            self.s.local.ip()
        );
        Registration {
            line,
            call_id,
            from_tag: self.tag(),
            cseq: 100,
            state: RegState::Unregistered,
            registered: false,
            asked: 0,
            expires: 0,
            expires_at: None,
            refresh_at: None,
            pending: None,
            last_status: None,
            last_reason: None,
            remove_when_done: false,
            after_removals: false,
        }
    }

    /// A request with the headers every request carries (Via with a fresh branch, Max-Forwards,
    /// From, To, Call-ID, CSeq, User-Agent).
    fn request(
        &mut self,
        method: Method,
        uri: &str,
        from: String,
        to: String,
        call_id: &str,
        seq: u32,
    ) -> Request {
        let branch = new_branch(self.random());
        let mut r = Request::new(method.clone(), uri);
        r.headers.push(
            "Via",
            format!("SIP/2.0/UDP {};branch={branch};rport", self.s.local),
        );
        r.headers.push("From", from);
        r.headers.push("To", to);
        r.headers.push("Call-ID", call_id);
        r.headers.push("CSeq", format!("{seq} {method}"));
        r.headers.push("Max-Forwards", "70");
        r.headers.push("User-Agent", self.s.user_agent.clone());
        r
    }

    /// Starts a client transaction towards the node.
    fn start_client(
        &mut self,
        req: Request,
        call: Option<&str>,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) -> Option<TransactionKey> {
        match self.txns.start_client(req, Reliability::Unreliable, now) {
            Ok((key, actions)) => {
                self.txn_peer.insert(key.clone(), self.s.server);
                if let Some(c) = call {
                    self.call_of_txn.insert(key.clone(), c.to_string());
                }
                self.run_actions(&key, actions, now, ports, out);
                Some(key)
            }
            Err(e) => {
                tracing::warn!(device = %self.s.device, error = %e, "cannot start a client transaction");
                None
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Registrations
    // ---------------------------------------------------------------------------------------

    /// Registers every line now.
    pub fn register_all(&mut self, now: Instant, ports: &mut dyn MediaPorts) -> Vec<Output> {
        let mut out = Vec::new();
        for i in 0..self.regs.len() {
            let e = self.s.register_expires;
            self.send_register(i, e, now, ports, &mut out);
        }
        out
    }

    /// Removes every binding (REGISTER with Expires: 0).
    pub fn unregister_all(&mut self, now: Instant, ports: &mut dyn MediaPorts) -> Vec<Output> {
        let mut out = Vec::new();
        for i in 0..self.regs.len() {
            let active = self.regs.get(i).is_some_and(|r| {
                r.registered || matches!(r.state, RegState::Registering | RegState::Registered)
            });
            if active {
                self.send_register(i, 0, now, ports, &mut out);
            } else if let Some(r) = self.regs.get_mut(i) {
                r.refresh_at = None;
                r.state = RegState::Unregistered;
            }
        }
        out
    }

    /// True when no line is registered or has a REGISTER in flight.
    pub fn all_unregistered(&self) -> bool {
        self.regs
            .iter()
            .all(|r| !r.registered && r.pending.is_none())
    }

    /// Replaces the lines (after a configuration resync): lines no longer present are
    /// unregistered, every present line registers again.
    pub fn set_lines(
        &mut self,
        lines: &[Line],
        now: Instant,
        ports: &mut dyn MediaPorts,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        let mut removing = false;
        for i in 0..self.regs.len() {
            let gone = self
                .regs
                .get(i)
                .is_some_and(|r| !lines.iter().any(|l| l.dn == r.line.dn));
            if gone {
                let registered = self.regs.get(i).is_some_and(|r| r.registered);
                if let Some(r) = self.regs.get_mut(i) {
                    r.remove_when_done = true;
                }
                if registered {
                    self.send_register(i, 0, now, ports, &mut out);
                    removing = true;
                }
            }
        }
        self.regs
            .retain(|r| !(r.remove_when_done && !r.registered && r.pending.is_none()));
        for l in lines {
            let idx = match self
                .regs
                .iter()
                .position(|r| r.line.dn == l.dn && !r.remove_when_done)
            {
                Some(i) => {
                    if let Some(r) = self.regs.get_mut(i) {
                        r.line = l.clone();
                    }
                    i
                }
                None => {
                    let r = self.new_registration(l.clone());
                    self.regs.push(r);
                    self.regs.len() - 1
                }
            };
            if removing {
                // As a Cisco phone applying a new configuration: the old lines are removed
                // first, then the new ones registered (a registrar sees one, then the other).
                if let Some(r) = self.regs.get_mut(idx) {
                    r.after_removals = true;
                    r.refresh_at = Some(now);
                }
            } else {
                let e = self.s.register_expires;
                self.send_register(idx, e, now, ports, &mut out);
            }
        }
        out
    }

    /// Moves the phone to another Unified CM with a new set of lines (an EMCC login or
    /// logout: the configuration now names another cluster's node): every registered line
    /// is removed from the node it is on (Expires: 0, sent there), then every new line
    /// registers with `to`. Failover to the old group's members stops; calls are not touched.
    pub fn rehome(
        &mut self,
        lines: &[Line],
        to: SocketAddr,
        now: Instant,
        ports: &mut dyn MediaPorts,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        let mut removing = false;
        for i in 0..self.regs.len() {
            let registered = self.regs.get(i).is_some_and(|r| r.registered);
            if let Some(r) = self.regs.get_mut(i) {
                r.remove_when_done = true;
            }
            if registered {
                // Built and sent while the server is still the old node.
                self.send_register(i, 0, now, ports, &mut out);
                removing = true;
            }
        }
        self.regs
            .retain(|r| !(r.remove_when_done && !r.registered && r.pending.is_none()));
        self.s.server = to;
        self.failover = None;
        self.members.clear();
        for l in lines {
            let mut r = self.new_registration(l.clone());
            if removing {
                r.after_removals = true;
                r.refresh_at = Some(now);
            }
            self.regs.push(r);
            if !removing {
                let idx = self.regs.len() - 1;
                let e = self.s.register_expires;
                self.send_register(idx, e, now, ports, &mut out);
            }
        }
        out
    }

    /// Whether a removal of an old line (Expires: 0) is still unanswered.
    fn removals_pending(&self) -> bool {
        self.regs
            .iter()
            .any(|r| r.remove_when_done && r.pending.is_some())
    }

    fn send_register(
        &mut self,
        idx: usize,
        expires: u32,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) {
        let Some(r) = self.regs.get_mut(idx) else {
            return;
        };
        r.asked = expires;
        r.refresh_at = None;
        r.state = if expires == 0 {
            RegState::Unregistering
        } else {
            RegState::Registering
        };
        if let Some(old) = r.pending.take() {
            // A REGISTER still in flight is superseded; its answer is ignored.
            self.txn_peer.remove(&old);
        }
        let Some(req) = self.register_request(idx, expires) else {
            return;
        };
        let key = self.start_client(req, None, now, ports, out);
        if let Some(r) = self.regs.get_mut(idx) {
            r.pending = key;
        }
    }

    /// The next REGISTER of line `idx` to the server, asking for `expires`.
    fn register_request(&mut self, idx: usize, expires: u32) -> Option<Request> {
        let host = self.server_host();
        let r = self.regs.get_mut(idx)?;
        r.cseq = r.cseq.wrapping_add(1);
        let (dn, call_id, from_tag, seq) = (
            r.line.dn.clone(),
            r.call_id.clone(),
            r.from_tag.clone(),
            r.cseq,
        );
        let mut req = self.request(
            Method::Register,
            &format!("sip:{host}"),
            format!("<sip:{dn}@{host}>;tag={from_tag}"),
            format!("<sip:{dn}@{host}>"),
            &call_id,
            seq,
        );
        req.headers.push(
            "Contact",
            format!(
                "{};+u.sip!devicename.ccm.cisco.com=\"{}\";expires={expires}",
                self.contact(&dn),
                self.s.device
            ),
        );
        req.headers.push("Expires", expires.to_string());
        req.headers.push("Allow", ALLOW);
        req.headers.push("Supported", SUPPORTED);
        Some(req)
    }

    fn on_register_response(&mut self, key: &TransactionKey, resp: &Response, now: Instant) {
        let Some(idx) = self
            .regs
            .iter()
            .position(|r| r.pending.as_ref() == Some(key))
        else {
            return;
        };
        if resp.status < 200 {
            return;
        }
        let local = self.s.local;
        let Some(r) = self.regs.get_mut(idx) else {
            return;
        };
        r.pending = None;
        r.last_status = Some(resp.status);
        r.last_reason = Some(resp.reason.clone());
        if r.asked == 0 {
            r.registered = false;
            r.expires_at = None;
            r.refresh_at = None;
            r.state = if (200..300).contains(&resp.status) {
                RegState::Unregistered
            } else {
                RegState::Failed
            };
            if r.remove_when_done {
                self.regs.remove(idx);
            }
            return;
        }
        if (200..300).contains(&resp.status) {
            let ours = |a: &NameAddr| {
                a.uri.host == local.ip().to_string() && a.uri.port == Some(local.port())
                    || a.uri.host_port() == local.to_string()
            };
            let from_contact = resp
                .headers
                .get_all("Contact")
                .filter_map(|v| crate::wire::sip::parse_contact_list(v).ok())
                .filter_map(|l| match l {
                    ContactList::Addrs(a) => Some(a),
                    ContactList::Wildcard => None,
                })
                .flatten()
                .find(|a| ours(a))
                .and_then(|a| a.expires());
            let from_header = resp
                .headers
                .get("Expires")
                .and_then(|v| v.trim().parse::<u32>().ok());
            let granted = from_contact.or(from_header).unwrap_or(r.asked);
            if granted == 0 {
                r.registered = false;
                r.state = RegState::Failed;
                r.refresh_at = Some(now + REGISTER_RETRY);
                return;
            }
            r.registered = true;
            r.state = RegState::Registered;
            r.expires = granted;
            r.expires_at = Some(now + Duration::from_secs(u64::from(granted)));
            let refresh = (u64::from(granted) * 85 / 100).max(1);
            r.refresh_at = Some(now + Duration::from_secs(refresh));
        } else if resp.status == 423 {
            let min = resp
                .headers
                .get("Min-Expires")
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|m| *m > r.asked);
            match min {
                Some(m) => {
                    // Retried from on_timers at once.
                    r.asked = m;
                    r.refresh_at = Some(now);
                    r.state = RegState::Registering;
                }
                None => {
                    r.state = RegState::Failed;
                    r.refresh_at = Some(now + REGISTER_RETRY);
                }
            }
        } else {
            if registered_elsewhere(resp.status, &resp.reason) {
                tracing::warn!(device = %self.s.device, line = %r.line.dn, reason = %resp.reason, "registration refused: another phone holds this device");
            } else {
                tracing::info!(line = %r.line.dn, status = resp.status, reason = %resp.reason, "registration refused");
            }
            r.registered = false;
            r.state = RegState::Failed;
            r.expires_at = None;
            r.refresh_at = Some(now + REGISTER_RETRY);
        }
    }

    fn on_register_timeout(&mut self, key: &TransactionKey, now: Instant) {
        if let Some(r) = self
            .regs
            .iter_mut()
            .find(|r| r.pending.as_ref() == Some(key))
        {
            r.pending = None;
            r.last_status = Some(408);
            r.last_reason = Some("Request Timeout (no answer from the node)".into());
            if r.asked == 0 {
                r.registered = false;
                r.state = RegState::Unregistered;
            } else {
                r.state = RegState::Failed;
                r.refresh_at = Some(now + REGISTER_RETRY);
            }
        }
        self.regs
            .retain(|r| !(r.remove_when_done && r.pending.is_none() && !r.registered));
    }

    /// The registrations, in line order.
    pub fn registrations(&self, now: Instant) -> Vec<RegistrationView> {
        self.regs
            .iter()
            .filter(|r| !r.remove_when_done)
            .map(|r| {
                let live = r.registered && r.expires_at.is_some_and(|e| e > now);
                let refused = r.last_status.is_some_and(|s| s >= 300 && s != 408);
                // A binding that ran out stays `expired` while the phone retries.
                let ran_out = r.registered && r.expires_at.is_some();
                let status = match r.state {
                    _ if live => "registered",
                    RegState::Unregistering => "unregistering",
                    _ if ran_out => "expired",
                    RegState::Registering => "registering",
                    RegState::Unregistered => "unregistered",
                    RegState::Registered | RegState::Failed => {
                        if refused {
                            "refused"
                        } else if r.last_status == Some(408) {
                            "unreachable"
                        } else {
                            "unregistered"
                        }
                    }
                };
                RegistrationView {
                    line: r.line.dn.clone(),
                    label: r.line.label.clone(),
                    registered: live,
                    status,
                    state: r.state,
                    expires: r.expires,
                    expires_in: r
                        .expires_at
                        .filter(|_| live)
                        .map(|e| e.saturating_duration_since(now).as_secs()),
                    last_status: r.last_status,
                    last_reason: r.last_reason.clone(),
                }
            })
            .collect()
    }

    // ---------------------------------------------------------------------------------------
    // Calls: commands
    // ---------------------------------------------------------------------------------------

    fn active_calls(&self) -> impl Iterator<Item = &Call> + '_ {
        self.order
            .iter()
            .filter_map(|id| self.calls.get(id))
            .filter(|c| c.state != CallState::Ended)
    }

    /// True when no call is in progress.
    pub fn is_idle(&self) -> bool {
        self.active_calls().next().is_none()
    }

    /// True while a request sent in call `id` (a BYE, a re-INVITE...) has no final answer yet
    /// and has not timed out: a call hung up here is `Ended` at once, its BYE still in flight.
    pub fn awaiting_answer(&self, id: &str) -> bool {
        self.call_of_txn.iter().any(|(key, call)| {
            call == id
                && key.role() == Role::Client
                && self.txns.client(key).is_some_and(|t| {
                    matches!(
                        t.state(),
                        ClientState::Calling | ClientState::Trying | ClientState::Proceeding
                    )
                })
        })
    }

    fn line_load(&self, dn: &str) -> usize {
        self.active_calls().filter(|c| c.line == dn).count()
    }

    fn insert_call(&mut self, call: Call) {
        self.order.push(call.id.clone());
        self.calls.insert(call.id.clone(), call);
    }

    fn our_offer(&mut self, port: u16) -> SessionDescription {
        self.sess_id = self.sess_id.wrapping_add(1);
        let mut sd = SessionDescription::audio_offer(
            "Cisco-SIPUA",
            self.sess_id,
            self.s.media_ip,
            port,
            &[
                (PCMU, "PCMU", 8000),
                (TELEPHONE_EVENT, "telephone-event", 8000),
            ],
            Some(20),
            Direction::SendRecv,
        );
        sd.origin.sess_version = 0;
        sd
    }

    /// Places a call from the first line to `number` (commas, the pause character, are
    /// dropped). Returns the Call-ID.
    pub fn dial(
        &mut self,
        number: &str,
        now: Instant,
        ports: &mut dyn MediaPorts,
    ) -> Result<(String, Vec<Output>), String> {
        let number: String = number.chars().filter(|c| *c != ',').collect();
        if number.is_empty() {
            return Err("nothing to dial".into());
        }
        let line = self
            .regs
            .iter()
            .find(|r| !r.remove_when_done)
            .map(|r| r.line.clone())
            .ok_or("the phone has no line")?;
        if self.line_load(&line.dn) >= line.max_calls.max(1) as usize
            || self.active_calls().count() >= MAX_ACTIVE_CALLS
        {
            return Err("line busy".into());
        }
        let port = ports.allocate().ok_or("no RTP port free")?;
        let host = self.server_host();
        let call_id = format!(
            "{:08x}-{:08x}-{:08x}@{}",
            self.random() as u32,
            self.random() as u32,
            self.random() as u32,
            self.s.local.ip()
        );
        let local_tag = self.tag();
        let local_uri = format!("{} <sip:{}@{host}>", quote(&line.display_name), line.dn);
        let remote_uri = format!("<sip:{number}@{host}>");
        let offer = self.our_offer(port);
        let mut req = self.request(
            Method::Invite,
            &format!("sip:{number}@{host}"),
            format!("{local_uri};tag={local_tag}"),
            remote_uri.clone(),
            &call_id,
            101,
        );
        req.headers.push("Contact", self.contact(&line.dn));
        req.headers.push("Allow", ALLOW);
        req.headers.push("Supported", SUPPORTED);
        req.headers.push("Allow-Events", "kpml,dialog");
        let (ctype, body) = sdp_body(&offer);
        req.headers.push("Content-Type", ctype);
        req.body = body;
        let call = Call {
            id: call_id.clone(),
            direction: CallDirection::Outbound,
            line: line.dn.clone(),
            remote_number: number.clone(),
            remote_display: None,
            state: CallState::Dialing,
            silent: false,
            local_tag,
            remote_tag: None,
            local_uri,
            remote_uri,
            remote_target: format!("sip:{number}@{host}"),
            local_cseq: 101,
            invite_key: None,
            invite: Some(req.clone()),
            answer_at: None,
            client_key: None,
            provisional: false,
            cancel_pending: false,
            ack: None,
            reinvite_key: None,
            rtp_port: Some(port),
            local_sdp: Some(offer),
            remote_sdp: None,
            payload_type: PCMU,
            media_started: false,
            local_hold: false,
            remote_hold: false,
            final_status: None,
            end_reason: None,
            created: now,
            connected_at: None,
            ended_at: None,
        };
        self.insert_call(call);
        let mut out = Vec::new();
        let key = self.start_client(req, Some(&call_id), now, ports, &mut out);
        match key {
            Some(k) => {
                if let Some(c) = self.calls.get_mut(&call_id) {
                    c.client_key = Some(k);
                }
            }
            None => {
                self.end_call(
                    &call_id,
                    "could not send INVITE",
                    None,
                    now,
                    ports,
                    &mut out,
                );
                return Err("could not send INVITE".into());
            }
        }
        Ok((call_id, out))
    }

    /// Answers the oldest ringing call.
    pub fn answer(
        &mut self,
        now: Instant,
        ports: &mut dyn MediaPorts,
    ) -> Result<(String, Vec<Output>), String> {
        let id = self
            .active_calls()
            .find(|c| c.state == CallState::Ringing)
            .map(|c| c.id.clone())
            .ok_or("No Incoming Call")?;
        let mut out = Vec::new();
        self.answer_call(&id, now, ports, &mut out)?;
        Ok((id, out))
    }

    /// Ends the most relevant call: a connected or held one, else one being placed (CANCEL),
    /// else a ringing one (refused with 486).
    pub fn hangup(
        &mut self,
        now: Instant,
        ports: &mut dyn MediaPorts,
    ) -> Result<(String, Vec<Output>), String> {
        let pick = |states: &[CallState]| {
            self.active_calls()
                .find(|c| states.contains(&c.state))
                .map(|c| c.id.clone())
        };
        let id = pick(&[CallState::Connected, CallState::Held])
            .or_else(|| {
                pick(&[
                    CallState::Dialing,
                    CallState::Proceeding,
                    CallState::Ringback,
                ])
            })
            .or_else(|| pick(&[CallState::Ringing]))
            .ok_or("No Active Call")?;
        let mut out = Vec::new();
        self.hangup_call(&id, now, ports, &mut out);
        Ok((id, out))
    }

    /// Declines the ringing call (a connected one is left alone): 486, as the phone's Decline
    /// softkey does. UNCONFIRMED whether Cisco phones send 486 or 603 for Decline; 486 makes
    /// the cluster apply Call Forward Busy, which is what Cisco documents for Decline.
    pub fn decline(
        &mut self,
        now: Instant,
        ports: &mut dyn MediaPorts,
    ) -> Result<(String, Vec<Output>), String> {
        let id = self
            .active_calls()
            .find(|c| c.state == CallState::Ringing)
            .map(|c| c.id.clone())
            .ok_or("No Incoming Call")?;
        let mut out = Vec::new();
        self.hangup_call(&id, now, ports, &mut out);
        Ok((id, out))
    }

    /// Ends call `id` whatever its state.
    pub fn hangup_call(
        &mut self,
        id: &str,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) {
        let Some(c) = self.calls.get(id) else {
            return;
        };
        match c.state {
            CallState::Connected | CallState::Held => {
                self.send_bye(id, now, ports, out);
                self.end_call(id, "local hangup", None, now, ports, out);
            }
            CallState::Dialing | CallState::Proceeding | CallState::Ringback => {
                let provisional = c.provisional;
                if let Some(c) = self.calls.get_mut(id) {
                    c.state = CallState::Ending;
                    c.end_reason = Some("cancelled".into());
                }
                if provisional {
                    self.send_cancel(id, now, ports, out);
                } else if let Some(c) = self.calls.get_mut(id) {
                    // RFC 3261 9.1: CANCEL only after a provisional response.
                    c.cancel_pending = true;
                }
            }
            CallState::Ringing => {
                self.reject(id, 486, now, ports, out);
                self.end_call(id, "declined", Some(486), now, ports, out);
            }
            CallState::Ending | CallState::Ended => {}
        }
    }

    /// Puts the connected call on hold, or resumes the held one (re-INVITE).
    pub fn toggle_hold(
        &mut self,
        now: Instant,
        ports: &mut dyn MediaPorts,
    ) -> Result<(String, Vec<Output>), String> {
        let id = self
            .active_calls()
            .find(|c| {
                (c.state == CallState::Connected || c.state == CallState::Held)
                    && c.reinvite_key.is_none()
            })
            .map(|c| c.id.clone())
            .ok_or("No Active Call")?;
        let host_dir = |hold: bool| {
            if hold {
                Direction::SendOnly
            } else {
                Direction::SendRecv
            }
        };
        let Some(c) = self.calls.get_mut(&id) else {
            return Err("No Active Call".into());
        };
        let Some(sdp) = c.local_sdp.as_ref() else {
            return Err("no media".into());
        };
        let want_hold = !c.local_hold;
        let offer = sdp.with_direction(host_dir(want_hold));
        c.local_cseq += 1;
        let seq = c.local_cseq;
        let (uri, from, to, line) = (
            c.remote_target.clone(),
            format!("{};tag={}", c.local_uri, c.local_tag),
            match &c.remote_tag {
                Some(t) => format!("{};tag={t}", c.remote_uri),
                None => c.remote_uri.clone(),
            },
            c.line.clone(),
        );
        let mut req = self.request(Method::Invite, &uri, from, to, &id, seq);
        req.headers.push("Contact", self.contact(&line));
        req.headers.push("Allow", ALLOW);
        let (ctype, body) = sdp_body(&offer);
        req.headers.push("Content-Type", ctype);
        req.body = body;
        let mut out = Vec::new();
        let key = self.start_client(req, Some(&id), now, ports, &mut out);
        if let Some(c) = self.calls.get_mut(&id) {
            c.reinvite_key = key;
            c.local_sdp = Some(offer);
        }
        Ok((id, out))
    }

    fn in_dialog_request(&mut self, id: &str, method: Method) -> Option<Request> {
        let c = self.calls.get_mut(id)?;
        let seq = if method == Method::Ack || method == Method::Cancel {
            c.local_cseq
        } else {
            c.local_cseq += 1;
            c.local_cseq
        };
        let (uri, from, to) = (
            c.remote_target.clone(),
            format!("{};tag={}", c.local_uri, c.local_tag),
            match &c.remote_tag {
                Some(t) => format!("{};tag={t}", c.remote_uri),
                None => c.remote_uri.clone(),
            },
        );
        Some(self.request(method, &uri, from, to, id, seq))
    }

    fn send_bye(
        &mut self,
        id: &str,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) {
        if let Some(req) = self.in_dialog_request(id, Method::Bye) {
            self.start_client(req, Some(id), now, ports, out);
        }
    }

    fn send_cancel(
        &mut self,
        id: &str,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) {
        let Some(key) = self.calls.get(id).and_then(|c| c.client_key.clone()) else {
            return;
        };
        let Some(cancel) = self.txns.client(&key).and_then(|t| t.make_cancel()) else {
            return;
        };
        if let Some(c) = self.calls.get_mut(id) {
            c.cancel_pending = false;
        }
        self.start_client(cancel, Some(id), now, ports, out);
        self.txns.cancel_sent(&key, now);
    }

    /// Sends the ACK for a 2xx to our INVITE (`seq`) and remembers it.
    fn send_ack(
        &mut self,
        id: &str,
        seq: u32,
        body: Option<(String, Bytes)>,
        out: &mut Vec<Output>,
    ) {
        let Some(c) = self.calls.get(id) else {
            return;
        };
        let (uri, from, to) = (
            c.remote_target.clone(),
            format!("{};tag={}", c.local_uri, c.local_tag),
            match &c.remote_tag {
                Some(t) => format!("{};tag={t}", c.remote_uri),
                None => c.remote_uri.clone(),
            },
        );
        let mut ack = self.request(Method::Ack, &uri, from, to, id, seq);
        if let Some((ctype, b)) = body {
            ack.headers.push("Content-Type", ctype);
            ack.body = b;
        }
        out.push(Output::Send {
            to: self.s.server,
            msg: SipMessage::Request(ack.clone()),
        });
        if let Some(c) = self.calls.get_mut(id) {
            c.ack = Some(ack);
        }
    }

    fn end_call(
        &mut self,
        id: &str,
        reason: &str,
        status: Option<u16>,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) {
        let Some(c) = self.calls.get_mut(id) else {
            return;
        };
        if c.state == CallState::Ended {
            return;
        }
        c.state = CallState::Ended;
        c.ended_at = Some(now);
        c.answer_at = None;
        c.cancel_pending = false;
        if c.end_reason.is_none() {
            c.end_reason = Some(reason.to_string());
        }
        if c.final_status.is_none() {
            c.final_status = status;
        }
        if c.media_started {
            out.push(Output::MediaStop {
                call_id: id.to_string(),
            });
        }
        if let Some(p) = c.rtp_port {
            ports.release(p);
        }
        tracing::debug!(device = %self.s.device, call = id, reason, "call ended");
        self.ended.push_back(id.to_string());
        while self.ended.len() > MAX_ENDED_CALLS {
            if let Some(old) = self.ended.pop_front() {
                self.calls.remove(&old);
                self.order.retain(|x| *x != old);
                self.call_of_txn.retain(|_, c| *c != old);
            }
        }
    }

    fn start_media(&mut self, id: &str, out: &mut Vec<Output>) {
        let Some(c) = self.calls.get_mut(id) else {
            return;
        };
        let (Some(port), Some(remote)) = (c.rtp_port, c.remote_sdp.as_ref()) else {
            return;
        };
        let (addr, pt, wants) = media_target(remote);
        c.payload_type = pt;
        c.remote_hold = remote.is_hold();
        let send = wants && !c.local_hold;
        if c.media_started {
            out.push(Output::MediaUpdate {
                call_id: id.to_string(),
                remote: addr,
                send,
            });
        } else {
            c.media_started = true;
            out.push(Output::MediaStart {
                call_id: id.to_string(),
                local_port: port,
                remote: addr,
                payload_type: pt,
                send,
            });
        }
    }

    // ---------------------------------------------------------------------------------------
    // Incoming
    // ---------------------------------------------------------------------------------------

    /// One datagram from `from`.
    pub fn on_datagram(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        now: Instant,
        ports: &mut dyn MediaPorts,
    ) -> Vec<Output> {
        let mut out = Vec::new();
        if data.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return out; // keep-alive
        }
        match parse_datagram(data) {
            Ok(SipMessage::Request(req)) => self.on_request(req, from, now, ports, &mut out),
            Ok(SipMessage::Response(resp)) => {
                let probe = resp
                    .call_id()
                    .and_then(|c| c.strip_prefix(KEEPALIVE))
                    .and_then(|c| c.split('@').next())
                    .and_then(|id| id.parse::<u64>().ok());
                match (probe, self.failover.as_mut()) {
                    (Some(id), Some(f)) => {
                        if resp.status >= 200 {
                            let actions = f.on_answer(id, now);
                            self.run_failover(actions, now, ports, &mut out);
                        }
                    }
                    (Some(_), None) => {}
                    (None, _) => self.on_response(resp, now, ports, &mut out),
                }
            }
            Err(e) => {
                self.malformed += 1;
                tracing::debug!(device = %self.s.device, %from, error = %e, "malformed SIP datagram");
            }
        }
        out
    }

    fn on_request(
        &mut self,
        req: Request,
        from: SocketAddr,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) {
        if req.method != Method::Ack {
            if let Err(e) = req.validate() {
                self.malformed += 1;
                let status = e.status.unwrap_or(400);
                let tag = self.tag();
                let resp = req.make_response(status, "", Some(&tag));
                out.push(Output::Send {
                    to: from,
                    msg: SipMessage::Response(resp),
                });
                return;
            }
        }
        match self.txns.on_request(req, Reliability::Unreliable, now) {
            Incoming::New { key, request } => {
                self.txn_peer.insert(key.clone(), from);
                self.on_new_request(key, request, now, ports, out);
            }
            Incoming::Cancel {
                key,
                key_of_cancelled_invite,
                request,
            } => {
                self.txn_peer.insert(key.clone(), from);
                let call = key_of_cancelled_invite
                    .as_ref()
                    .and_then(|k| self.call_of_txn.get(k).cloned());
                match call {
                    Some(id) => {
                        self.respond(&key, &request, 200, None, None, None, now, ports, out);
                        let ringing = self
                            .calls
                            .get(&id)
                            .is_some_and(|c| c.state == CallState::Ringing);
                        if ringing {
                            self.reject(&id, 487, now, ports, out);
                            self.end_call(&id, "cancelled by caller", Some(487), now, ports, out);
                        }
                    }
                    None => self.respond(&key, &request, 481, None, None, None, now, ports, out),
                }
            }
            Incoming::Absorbed { key, actions } => self.run_actions(&key, actions, now, ports, out),
            Incoming::AckFor2xx { request, .. } => self.on_ack(request, out),
            Incoming::Invalid { request, error } => {
                tracing::debug!(device = %self.s.device, %error, "request without a transaction key");
                if request.method != Method::Ack {
                    let tag = self.tag();
                    out.push(Output::Send {
                        to: from,
                        msg: SipMessage::Response(request.make_response(400, "", Some(&tag))),
                    });
                }
            }
        }
    }

    fn on_new_request(
        &mut self,
        key: TransactionKey,
        req: Request,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) {
        let to_tag = req.to().ok().and_then(|t| t.tag().map(str::to_string));
        let call = req
            .call_id()
            .map(str::to_string)
            .filter(|id| self.calls.contains_key(id));
        match (&req.method, to_tag.is_some(), call) {
            (Method::Invite, false, _) => self.on_invite(key, req, now, ports, out),
            (Method::Invite, true, Some(id)) => self.on_reinvite(&id, key, req, now, ports, out),
            (Method::Bye, _, Some(id)) => {
                self.respond(&key, &req, 200, None, None, None, now, ports, out);
                self.end_call(&id, "remote hangup", None, now, ports, out);
            }
            (Method::Notify, _, _) => {
                let event = req
                    .headers
                    .get("Event")
                    .map(|e| {
                        e.split(';')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .to_ascii_lowercase()
                    })
                    .unwrap_or_default();
                self.respond(&key, &req, 200, None, None, None, now, ports, out);
                self.last_notify = Some(event.clone());
                if event == "check-sync" || event == "resync" {
                    out.push(Output::Resync { event });
                }
            }
            (Method::Options, _, _) => {
                let resp = self.build_response(&req, 200, None, None, None);
                let mut resp = resp;
                resp.headers.push("Allow", ALLOW);
                resp.headers.push("Accept", "application/sdp");
                resp.headers.push("Supported", SUPPORTED);
                let actions = self.txns.respond(&key, resp, now);
                self.run_actions(&key, actions, now, ports, out);
            }
            (Method::Info | Method::Update, _, Some(_)) => {
                self.respond(&key, &req, 200, None, None, None, now, ports, out);
            }
            (Method::Bye | Method::Info | Method::Update | Method::Invite, _, None) => {
                self.respond(&key, &req, 481, None, None, None, now, ports, out);
            }
            _ => self.respond(&key, &req, 501, None, None, None, now, ports, out),
        }
    }

    fn build_response(
        &self,
        req: &Request,
        status: u16,
        tag: Option<&str>,
        contact: Option<String>,
        body: Option<(String, Bytes)>,
    ) -> Response {
        let mut resp = req.make_response(status, "", tag);
        if let Some(c) = contact {
            resp.headers.push("Contact", c);
        }
        resp.headers.push("Server", self.s.user_agent.clone());
        if let Some((ctype, b)) = body {
            resp.headers.push("Content-Type", ctype);
            resp.body = b;
        }
        resp
    }

    #[allow(clippy::too_many_arguments)]
    fn respond(
        &mut self,
        key: &TransactionKey,
        req: &Request,
        status: u16,
        tag: Option<&str>,
        contact: Option<String>,
        body: Option<(String, Bytes)>,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) {
        let fallback;
        let tag = match tag {
            Some(t) => Some(t),
            None if status > 100 => {
                fallback = self.tag();
                Some(fallback.as_str())
            }
            None => None,
        };
        let resp = self.build_response(req, status, tag, contact, body);
        let actions = self.txns.respond(key, resp, now);
        self.run_actions(key, actions, now, ports, out);
    }

    /// Answers the pending INVITE of inbound call `id` with a final non-2xx `status`.
    fn reject(
        &mut self,
        id: &str,
        status: u16,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) {
        let Some(c) = self.calls.get(id) else {
            return;
        };
        let (Some(key), Some(req)) = (c.invite_key.clone(), c.invite.clone()) else {
            return;
        };
        let tag = c.local_tag.clone();
        self.respond(&key, &req, status, Some(&tag), None, None, now, ports, out);
        if let Some(c) = self.calls.get_mut(id) {
            c.invite_key = None;
        }
    }

    fn on_invite(
        &mut self,
        key: TransactionKey,
        req: Request,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) {
        let (Ok(from), Ok(to), Some(call_id)) = (req.from(), req.to(), req.call_id()) else {
            self.respond(&key, &req, 400, None, None, None, now, ports, out);
            return;
        };
        let call_id = call_id.to_string();
        if self.calls.contains_key(&call_id) {
            // A new INVITE reusing a known Call-ID without a To tag: a loop or a confused peer.
            self.respond(&key, &req, 482, None, None, None, now, ports, out);
            return;
        }
        let called = to
            .uri
            .user_part()
            .map(str::to_string)
            .or_else(|| {
                req.request_uri()
                    .ok()
                    .and_then(|u| u.user_part().map(str::to_string))
            })
            .unwrap_or_default();
        let line = self
            .regs
            .iter()
            .find(|r| r.line.dn == called && !r.remove_when_done)
            .or_else(|| self.regs.iter().find(|r| !r.remove_when_done))
            .map(|r| r.line.clone());
        let Some(line) = line else {
            self.respond(&key, &req, 404, None, None, None, now, ports, out);
            return;
        };
        if self.s.busy
            || self.line_load(&line.dn) >= line.max_calls.max(1) as usize
            || self.active_calls().count() >= MAX_ACTIVE_CALLS
        {
            self.respond(&key, &req, 486, None, None, None, now, ports, out);
            return;
        }
        let offer = if req.body.is_empty() {
            None
        } else {
            match SessionDescription::parse_bytes(&req.body) {
                Ok(sd) if sd.offers_codec("PCMU") => Some(sd),
                Ok(_) => {
                    self.respond(&key, &req, 488, None, None, None, now, ports, out);
                    return;
                }
                Err(e) => {
                    tracing::debug!(device = %self.s.device, error = %e, "unreadable SDP offer");
                    self.respond(&key, &req, 400, None, None, None, now, ports, out);
                    return;
                }
            }
        };
        let remote_target = match req.contacts() {
            Ok(ContactList::Addrs(a)) => a.first().map(|a| a.uri.to_string()),
            _ => None,
        }
        .unwrap_or_else(|| format!("sip:{}", self.server_host()));
        let local_tag = self.tag();
        // The server asked for an automatic answer (an attendant's phone).
        let asked_auto = req.headers.get("Call-Info").is_some_and(|v| {
            v.split(';')
                .any(|p| p.trim() == crate::wire::sip::AUTO_ANSWER_CALL_INFO)
        });
        let call = Call {
            id: call_id.clone(),
            direction: CallDirection::Inbound,
            line: line.dn.clone(),
            remote_number: from.uri.user_part().unwrap_or_default().to_string(),
            remote_display: from.display_name.clone(),
            state: CallState::Ringing,
            silent: req
                .headers
                .get("Alert-Info")
                .is_some_and(|v| v.contains(crate::wire::sip::SILENT_ALERT_INFO)),
            local_tag: local_tag.clone(),
            remote_tag: from.tag().map(str::to_string),
            local_uri: without_tag(&to),
            remote_uri: without_tag(&from),
            remote_target,
            local_cseq: 100,
            invite_key: Some(key.clone()),
            invite: Some(req.clone()),
            answer_at: None,
            client_key: None,
            provisional: false,
            cancel_pending: false,
            ack: None,
            reinvite_key: None,
            rtp_port: None,
            local_sdp: None,
            remote_sdp: offer,
            payload_type: PCMU,
            media_started: false,
            local_hold: false,
            remote_hold: false,
            final_status: None,
            end_reason: None,
            created: now,
            connected_at: None,
            ended_at: None,
        };
        self.insert_call(call);
        self.call_of_txn.insert(key.clone(), call_id.clone());
        if self.s.send_trying {
            self.respond(&key, &req, 100, None, None, None, now, ports, out);
        }
        let contact = self.contact(&line.dn);
        self.respond(
            &key,
            &req,
            180,
            Some(&local_tag),
            Some(contact),
            None,
            now,
            ports,
            out,
        );
        if self.s.auto_answer || asked_auto {
            if self.s.answer_delay.is_zero() || asked_auto {
                if let Err(e) = self.answer_call(&call_id, now, ports, out) {
                    tracing::info!(device = %self.s.device, error = %e, "auto-answer failed");
                }
            } else if let Some(c) = self.calls.get_mut(&call_id) {
                c.answer_at = Some(now + self.s.answer_delay);
            }
        }
    }

    fn answer_call(
        &mut self,
        id: &str,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) -> Result<(), String> {
        let Some(c) = self.calls.get(id) else {
            return Err("no such call".into());
        };
        if c.state != CallState::Ringing {
            return Err("the call is not ringing".into());
        }
        let (Some(key), Some(req)) = (c.invite_key.clone(), c.invite.clone()) else {
            return Err("the call is not ringing".into());
        };
        let (tag, line, offer) = (c.local_tag.clone(), c.line.clone(), c.remote_sdp.clone());
        let Some(port) = ports.allocate() else {
            self.respond(&key, &req, 500, Some(&tag), None, None, now, ports, out);
            self.end_call(id, "no RTP port free", Some(500), now, ports, out);
            return Err("no RTP port free".into());
        };
        let local = match &offer {
            Some(offer) => match answer_for(offer, self.s.media_ip, port, &["PCMU"]) {
                Ok(mut sd) => {
                    self.sess_id = self.sess_id.wrapping_add(1);
                    sd.origin.username = "Cisco-SIPUA".into();
                    sd.origin.sess_id = self.sess_id;
                    sd.origin.sess_version = 0;
                    sd
                }
                Err(_) => {
                    ports.release(port);
                    self.respond(&key, &req, 488, Some(&tag), None, None, now, ports, out);
                    self.end_call(id, "no common codec", Some(488), now, ports, out);
                    return Err("no common codec".into());
                }
            },
            None => self.our_offer(port),
        };
        let contact = self.contact(&line);
        let mut resp =
            self.build_response(&req, 200, Some(&tag), Some(contact), Some(sdp_body(&local)));
        resp.headers.push("Allow", ALLOW);
        resp.headers.push("Supported", SUPPORTED);
        let actions = self.txns.respond(&key, resp, now);
        if let Some(c) = self.calls.get_mut(id) {
            c.rtp_port = Some(port);
            c.local_sdp = Some(local);
            c.state = CallState::Connected;
            c.connected_at = Some(now);
            c.answer_at = None;
            c.invite_key = None;
        }
        self.run_actions(&key, actions, now, ports, out);
        // With an offer in the INVITE, media starts now; otherwise when the ACK brings the answer.
        if offer.is_some() {
            self.start_media(id, out);
        }
        Ok(())
    }

    fn on_ack(&mut self, ack: Request, out: &mut Vec<Output>) {
        let Some(id) = ack.call_id().map(str::to_string) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.state == CallState::Ended || ack.body.is_empty() {
            return;
        }
        // The answer to the offer we sent in a 2xx (late offer).
        if let Ok(sd) = SessionDescription::parse_bytes(&ack.body) {
            c.remote_sdp = Some(sd);
            self.start_media(&id, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_reinvite(
        &mut self,
        id: &str,
        key: TransactionKey,
        req: Request,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) {
        let Some(c) = self.calls.get(id) else {
            self.respond(&key, &req, 481, None, None, None, now, ports, out);
            return;
        };
        if !matches!(c.state, CallState::Connected | CallState::Held) {
            self.respond(&key, &req, 491, None, None, None, now, ports, out);
            return;
        }
        // A target refresh (RFC 3261 12.2.2): the re-INVITE's Contact is where this dialog's
        // requests go from now on (a node that took the call over names itself).
        if let Ok(ContactList::Addrs(a)) = req.contacts() {
            if let (Some(first), Some(c)) = (a.first(), self.calls.get_mut(id)) {
                c.remote_target = first.uri.to_string();
            }
        }
        let Some(c) = self.calls.get(id) else {
            return;
        };
        let (tag, line, port) = (c.local_tag.clone(), c.line.clone(), c.rtp_port);
        let local_sdp = c.local_sdp.clone();
        let contact = self.contact(&line);
        if req.body.is_empty() {
            // An offerless re-INVITE: offer what we have; the ACK carries the answer.
            let body = local_sdp.as_ref().map(sdp_body);
            self.respond(
                &key,
                &req,
                200,
                Some(&tag),
                Some(contact),
                body,
                now,
                ports,
                out,
            );
            return;
        }
        let Ok(offer) = SessionDescription::parse_bytes(&req.body) else {
            self.respond(&key, &req, 400, Some(&tag), None, None, now, ports, out);
            return;
        };
        let Some(port) = port else {
            self.respond(&key, &req, 488, Some(&tag), None, None, now, ports, out);
            return;
        };
        let Ok(mut answer) = answer_for(&offer, self.s.media_ip, port, &["PCMU"]) else {
            self.respond(&key, &req, 488, Some(&tag), None, None, now, ports, out);
            return;
        };
        if let Some(prev) = &local_sdp {
            answer.origin.username = prev.origin.username.clone();
            answer.origin.sess_id = prev.origin.sess_id;
            answer.origin.sess_version = prev.origin.sess_version.wrapping_add(1);
        }
        let body = sdp_body(&answer);
        self.respond(
            &key,
            &req,
            200,
            Some(&tag),
            Some(contact),
            Some(body),
            now,
            ports,
            out,
        );
        if let Some(c) = self.calls.get_mut(id) {
            c.remote_hold = offer.is_hold();
            c.state = if c.remote_hold || c.local_hold {
                CallState::Held
            } else {
                CallState::Connected
            };
            c.remote_sdp = Some(offer);
            c.local_sdp = Some(answer);
        }
        self.start_media(id, out);
    }

    fn on_response(
        &mut self,
        resp: Response,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) {
        match self.txns.on_response(resp, now) {
            ResponseOutcome::Matched { key, actions } => {
                self.run_actions(&key, actions, now, ports, out)
            }
            ResponseOutcome::Stray(resp) => {
                // A 2xx retransmission after our INVITE transaction ended: ACK it again.
                let is_invite_2xx = (200..300).contains(&resp.status)
                    && resp.cseq().is_ok_and(|c| c.method == Method::Invite);
                if !is_invite_2xx {
                    return;
                }
                let ack = resp
                    .call_id()
                    .and_then(|id| self.calls.get(id))
                    .and_then(|c| c.ack.clone());
                if let Some(ack) = ack {
                    out.push(Output::Send {
                        to: self.s.server,
                        msg: SipMessage::Request(ack),
                    });
                }
            }
        }
    }

    fn run_actions(
        &mut self,
        key: &TransactionKey,
        actions: Vec<Action>,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) {
        for a in actions {
            match a {
                Action::Send(msg) => {
                    let to = self.txn_peer.get(key).copied().unwrap_or(self.s.server);
                    out.push(Output::Send { to, msg });
                }
                Action::DeliverResponse(resp) => {
                    self.on_client_response(key, resp, now, ports, out)
                }
                Action::Timeout => self.on_timeout(key, now, ports, out),
                Action::Terminated => {
                    self.txn_peer.remove(key);
                    self.call_of_txn.remove(key);
                }
            }
        }
    }

    fn on_timeout(
        &mut self,
        key: &TransactionKey,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) {
        if *key.method() == Method::Register {
            self.on_register_timeout(key, now);
            return;
        }
        let Some(id) = self.call_of_txn.get(key).cloned() else {
            return;
        };
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        match (key.role(), key.method()) {
            (Role::Client, Method::Invite) if c.client_key.as_ref() == Some(key) => {
                self.end_call(&id, "no answer from the node", Some(408), now, ports, out);
            }
            (Role::Client, Method::Invite) => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.reinvite_key = None;
                }
            }
            (Role::Server, Method::Invite) => {
                // No ACK for our 2xx (RFC 3261 13.3.1.4): hang up.
                if matches!(c.state, CallState::Connected | CallState::Held) {
                    self.send_bye(&id, now, ports, out);
                    self.end_call(&id, "no ACK for the answer", None, now, ports, out);
                }
            }
            _ => {}
        }
    }

    fn on_client_response(
        &mut self,
        key: &TransactionKey,
        resp: Response,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) {
        match key.method() {
            Method::Register => self.on_register_response(key, &resp, now),
            Method::Invite => {
                let Some(id) = self.call_of_txn.get(key).cloned() else {
                    return;
                };
                let initial = self
                    .calls
                    .get(&id)
                    .is_some_and(|c| c.client_key.as_ref() == Some(key));
                if initial {
                    self.on_invite_response(&id, resp, now, ports, out);
                } else {
                    self.on_reinvite_response(&id, key, resp, out);
                }
            }
            _ => {}
        }
    }

    fn on_invite_response(
        &mut self,
        id: &str,
        resp: Response,
        now: Instant,
        ports: &mut dyn MediaPorts,
        out: &mut Vec<Output>,
    ) {
        let status = resp.status;
        let to_tag = resp.to().ok().and_then(|t| t.tag().map(str::to_string));
        let Some(c) = self.calls.get_mut(id) else {
            return;
        };
        if status < 200 {
            if status > 100 {
                c.provisional = true;
                if c.remote_tag.is_none() {
                    c.remote_tag = to_tag;
                }
                if matches!(c.state, CallState::Dialing | CallState::Proceeding) {
                    c.state = CallState::Ringback;
                }
                if !resp.body.is_empty() {
                    if let Ok(sd) = SessionDescription::parse_bytes(&resp.body) {
                        c.remote_sdp = Some(sd);
                    }
                }
            } else if c.state == CallState::Dialing {
                c.state = CallState::Proceeding;
            }
            if c.cancel_pending && status > 100 {
                self.send_cancel(id, now, ports, out);
            }
            return;
        }
        let seq = resp.cseq().map(|c| c.seq).unwrap_or(c.local_cseq);
        if (200..300).contains(&status) {
            c.remote_tag = to_tag.or(c.remote_tag.take());
            if let Ok(ContactList::Addrs(a)) = resp.contacts() {
                if let Some(first) = a.first() {
                    c.remote_target = first.uri.to_string();
                }
            }
            if !resp.body.is_empty() {
                if let Ok(sd) = SessionDescription::parse_bytes(&resp.body) {
                    c.remote_sdp = Some(sd);
                }
            }
            let hung_up = matches!(c.state, CallState::Ending | CallState::Ended);
            self.send_ack(id, seq, None, out);
            if hung_up {
                // Our CANCEL lost the race: the call was answered, so end it with BYE.
                self.send_bye(id, now, ports, out);
                self.end_call(id, "cancelled", None, now, ports, out);
                return;
            }
            if let Some(c) = self.calls.get_mut(id) {
                c.state = CallState::Connected;
                c.connected_at = Some(now);
            }
            self.start_media(id, out);
            return;
        }
        let reason = if c.state == CallState::Ending && status == 487 {
            "cancelled".to_string()
        } else {
            format!("{status} {}", resp.reason)
        };
        self.end_call(id, &reason, Some(status), now, ports, out);
    }

    fn on_reinvite_response(
        &mut self,
        id: &str,
        key: &TransactionKey,
        resp: Response,
        out: &mut Vec<Output>,
    ) {
        if resp.status < 200 {
            return;
        }
        let seq = resp.cseq().map(|c| c.seq).unwrap_or(0);
        let Some(c) = self.calls.get_mut(id) else {
            return;
        };
        if c.reinvite_key.as_ref() == Some(key) {
            c.reinvite_key = None;
        }
        if !(200..300).contains(&resp.status) {
            // The offer was refused: the old description stays.
            if let Some(sd) = c.local_sdp.as_ref() {
                let dir = if c.local_hold {
                    Direction::SendOnly
                } else {
                    Direction::SendRecv
                };
                c.local_sdp = Some(sd.with_direction(dir));
            }
            return;
        }
        // A 2xx to a re-INVITE refreshes the remote target too (RFC 3261 12.2.1.2).
        if let Ok(ContactList::Addrs(a)) = resp.contacts() {
            if let Some(first) = a.first() {
                c.remote_target = first.uri.to_string();
            }
        }
        let held = c
            .local_sdp
            .as_ref()
            .and_then(|sd| sd.audio().map(|m| sd.direction(m)))
            .is_some_and(|d| !d.receives());
        c.local_hold = held;
        if !resp.body.is_empty() {
            if let Ok(sd) = SessionDescription::parse_bytes(&resp.body) {
                c.remote_sdp = Some(sd);
            }
        }
        if c.state != CallState::Ended {
            c.state = if c.local_hold {
                CallState::Held
            } else {
                CallState::Connected
            };
        }
        self.send_ack(id, seq, None, out);
        if self
            .calls
            .get(id)
            .is_some_and(|c| c.state != CallState::Ended)
        {
            self.start_media(id, out);
            // start_media computes remote_hold from the answer, which mirrors our own hold.
            if let Some(c) = self.calls.get_mut(id) {
                c.remote_hold = false;
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Time
    // ---------------------------------------------------------------------------------------

    /// The earliest moment [`Ua::on_timers`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let waiting = self.removals_pending();
        let regs = self
            .regs
            .iter()
            .filter(|r| !(waiting && r.after_removals))
            .filter_map(|r| r.refresh_at);
        let calls = self.calls.values().filter_map(|c| c.answer_at);
        let failover = self.failover.as_ref().and_then(Failover::next_deadline);
        regs.chain(calls)
            .chain(self.txns.next_deadline())
            .chain(failover)
            .min()
    }

    /// Fires what is due: transaction timers, registration refreshes, delayed answers.
    pub fn on_timers(&mut self, now: Instant, ports: &mut dyn MediaPorts) -> Vec<Output> {
        let mut out = Vec::new();
        for (key, action) in self.txns.on_timers(now) {
            self.run_actions(&key, vec![action], now, ports, &mut out);
        }
        if let Some(f) = self.failover.as_mut() {
            let actions = f.on_timers(now);
            self.run_failover(actions, now, ports, &mut out);
        }
        let waiting = self.removals_pending();
        for i in 0..self.regs.len() {
            let due = self
                .regs
                .get(i)
                .filter(|r| !(waiting && r.after_removals))
                .and_then(|r| r.refresh_at)
                .is_some_and(|t| t <= now);
            if due {
                if let Some(r) = self.regs.get_mut(i) {
                    r.after_removals = false;
                }
                let asked = self.regs.get(i).map_or(0, |r| {
                    if r.asked == 0 {
                        self.s.register_expires
                    } else {
                        r.asked
                    }
                });
                self.send_register(i, asked, now, ports, &mut out);
            }
        }
        let due: Vec<String> = self
            .order
            .iter()
            .filter(|id| {
                self.calls
                    .get(*id)
                    .and_then(|c| c.answer_at)
                    .is_some_and(|t| t <= now)
            })
            .cloned()
            .collect();
        for id in due {
            if let Some(c) = self.calls.get_mut(&id) {
                c.answer_at = None;
            }
            if let Err(e) = self.answer_call(&id, now, ports, &mut out) {
                tracing::info!(device = %self.s.device, error = %e, "auto-answer failed");
            }
        }
        out
    }

    // ---------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------

    /// The calls, oldest first (ended ones included, up to [`MAX_ENDED_CALLS`]).
    pub fn calls(&self, now: Instant) -> Vec<CallView> {
        self.order
            .iter()
            .filter_map(|id| self.calls.get(id))
            .map(|c| {
                let end = c.ended_at.unwrap_or(now);
                let media = c.media_started;
                CallView {
                    call_id: c.id.clone(),
                    direction: c.direction,
                    line: c.line.clone(),
                    remote_number: c.remote_number.clone(),
                    remote_display: c.remote_display.clone(),
                    state: c.state,
                    silent: c.silent,
                    codec: media.then(|| "PCMU".to_string()),
                    payload_type: media.then_some(c.payload_type),
                    local_rtp: c.rtp_port.map(|p| SocketAddr::new(self.s.media_ip, p)),
                    remote_rtp: c.remote_sdp.as_ref().and_then(|sd| media_target(sd).0),
                    local_hold: c.local_hold,
                    remote_hold: c.remote_hold,
                    final_status: c.final_status,
                    end_reason: c.end_reason.clone(),
                    age_ms: now.saturating_duration_since(c.created).as_millis() as u64,
                    connected_ms: c
                        .connected_at
                        .map(|t| end.saturating_duration_since(t).as_millis() as u64),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ports(u16);
    impl MediaPorts for Ports {
        fn allocate(&mut self) -> Option<u16> {
            self.0 += 2;
            Some(self.0)
        }
        fn release(&mut self, _port: u16) {}
    }

    fn line(dn: &str) -> Line {
        Line {
            button: 1,
            dn: dn.into(),
            label: dn.into(),
            display_name: format!("Line {dn}"),
            max_calls: 4,
            busy_trigger: 2,
        }
    }

    fn ua(auto: bool, busy: bool) -> Ua {
        Ua::new(
            UaSettings {
                device: "SEP000000001001".into(),
                mac: "000000001001".into(),
                local: "127.0.0.10:5060".parse().unwrap(),
                server: "127.0.0.1:5070".parse().unwrap(),
                user_agent: "Cisco-CP8845/14.2.1".into(),
                media_ip: "127.0.0.10".parse().unwrap(),
                register_expires: 3600,
                auto_answer: auto,
                answer_delay: Duration::ZERO,
                busy,
                send_trying: true,
                seed: 42,
                timers: Timers::default(),
            },
            &[line("20001")],
        )
    }

    fn sent(out: &[Output]) -> Vec<SipMessage> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { msg, .. } => Some(msg.clone()),
                _ => None,
            })
            .collect()
    }

    fn reply(req: &Request, status: u16, tag: Option<&str>, body: Option<String>) -> Vec<u8> {
        let mut r = req.make_response(status, "", tag);
        r.headers
            .push("Contact", "<sip:127.0.0.1:5070;transport=udp>");
        if let Some(b) = body {
            r.headers.push("Content-Type", "application/sdp");
            r.body = Bytes::from(b);
        }
        r.to_bytes()
    }

    const SERVER: &str = "127.0.0.1:5070";

    /// A new configuration (an EM login) changes the line: the old one is removed first and
    /// the new one registered only once the removal is answered, so the registrar (and a
    /// golden capture) sees them in that order.
    #[test]
    fn r4_a_new_line_registers_after_the_old_one_is_removed() {
        let mut ports = Ports(20000);
        let mut ua = ua(false, false);
        let t0 = Instant::now();
        let out = ua.register_all(t0, &mut ports);
        let SipMessage::Request(reg) = &sent(&out)[0] else {
            panic!()
        };
        let ok = reg.make_response(200, "", Some("x"));
        ua.on_datagram(&ok.to_bytes(), SERVER.parse().unwrap(), t0, &mut ports);
        let out = ua.set_lines(&[line("10001")], t0, &mut ports);
        let msgs = sent(&out);
        assert_eq!(msgs.len(), 1, "only the removal: {msgs:?}");
        let SipMessage::Request(removal) = &msgs[0] else {
            panic!()
        };
        assert_eq!(removal.headers.get("Expires"), Some("0"));
        assert!(removal.headers.get("To").unwrap().contains("20001"));
        // Nothing is due while the removal is unanswered (and the loop does not spin).
        assert!(ua
            .next_deadline()
            .is_none_or(|d| d > t0 + Duration::from_millis(100)));
        assert!(sent(&ua.on_timers(t0, &mut ports)).is_empty());
        let ok = removal.make_response(200, "", Some("x"));
        ua.on_datagram(&ok.to_bytes(), SERVER.parse().unwrap(), t0, &mut ports);
        assert!(ua.next_deadline().is_some_and(|d| d <= t0));
        let msgs = sent(&ua.on_timers(t0, &mut ports));
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        let SipMessage::Request(new) = &msgs[0] else {
            panic!()
        };
        assert_eq!(new.method, Method::Register);
        assert!(new.headers.get("To").unwrap().contains("10001"));
        assert_eq!(new.headers.get("Expires"), Some("3600"));
    }

    #[test]
    fn registers_and_refreshes() {
        let mut ports = Ports(20000);
        let mut ua = ua(false, false);
        let t0 = Instant::now();
        let out = ua.register_all(t0, &mut ports);
        let msgs = sent(&out);
        assert_eq!(msgs.len(), 1);
        let SipMessage::Request(reg) = &msgs[0] else {
            panic!()
        };
        assert_eq!(reg.method, Method::Register);
        let contact = reg.headers.get("Contact").unwrap();
        assert!(
            contact.contains("+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-000000001001>\""),
            "{contact}"
        );
        assert_eq!(reg.headers.get("Expires"), Some("3600"));
        assert!(reg.validate().is_ok());
        let mut ok = reg.make_response(200, "", Some("x"));
        ok.headers.push(
            "Contact",
            "<sip:20001@127.0.0.10:5060;transport=udp>;expires=600",
        );
        ua.on_datagram(&ok.to_bytes(), SERVER.parse().unwrap(), t0, &mut ports);
        let v = ua.registrations(t0);
        assert!(v[0].registered, "{v:?}");
        assert_eq!(v[0].expires, 600);
        // Refreshed at 85 %.
        let refresh = ua.next_deadline().unwrap();
        assert!(refresh <= t0 + Duration::from_secs(510));
        let out = ua.on_timers(t0 + Duration::from_secs(511), &mut ports);
        assert!(sent(&out)
            .iter()
            .any(|m| matches!(m, SipMessage::Request(r) if r.method == Method::Register)));
        // Refused: failed, retried later.
        let mut ua = self::ua(false, false);
        let out = ua.register_all(t0, &mut ports);
        let SipMessage::Request(reg) = &sent(&out)[0] else {
            panic!()
        };
        let no = reg.make_response(
            404,
            "Not Found (device SEP000000001001 is not configured)",
            Some("x"),
        );
        ua.on_datagram(&no.to_bytes(), SERVER.parse().unwrap(), t0, &mut ports);
        let v = ua.registrations(t0);
        assert!(!v[0].registered);
        assert_eq!(v[0].state, RegState::Failed);
        assert_eq!(v[0].last_status, Some(404));
    }

    /// Issue 21: the sim's /state showed itself registered after the node had dropped it.
    /// Each registration says what is true now: registered, refused (and whether another
    /// phone holds the device), or expired when no refresh was answered.
    #[test]
    fn r21_the_registration_status_tells_the_truth() {
        let mut ports = Ports(20000);
        let server: SocketAddr = SERVER.parse().unwrap();
        let t0 = Instant::now();
        let mut ua = ua(false, false);
        let SipMessage::Request(reg) = &sent(&ua.register_all(t0, &mut ports))[0] else {
            panic!()
        };
        assert_eq!(ua.registrations(t0)[0].status, "registering");
        let mut ok = reg.make_response(200, "", Some("x"));
        ok.headers.push(
            "Contact",
            "<sip:20001@127.0.0.10:5060;transport=udp>;expires=600",
        );
        ua.on_datagram(&ok.to_bytes(), server, t0, &mut ports);
        assert_eq!(ua.registrations(t0)[0].status, "registered");
        // The refresh goes unanswered: once the binding has run out, it is expired.
        let mut t = t0 + Duration::from_secs(511);
        ua.on_timers(t, &mut ports);
        while t < t0 + Duration::from_secs(601) {
            t += Duration::from_secs(1);
            ua.on_timers(t, &mut ports);
        }
        let v = ua.registrations(t);
        assert_eq!((v[0].registered, v[0].status), (false, "expired"), "{v:?}");
        // Another phone holds the device: refused, and recognisably so.
        let mut ua = self::ua(false, false);
        let SipMessage::Request(reg) = &sent(&ua.register_all(t0, &mut ports))[0] else {
            panic!()
        };
        let reason = "Forbidden (SEP000000001001 is registered from another address)";
        let no = reg.make_response(403, reason, Some("x"));
        ua.on_datagram(&no.to_bytes(), server, t0, &mut ports);
        let v = ua.registrations(t0);
        assert_eq!((v[0].registered, v[0].status), (false, "refused"));
        assert!(registered_elsewhere(
            403,
            v[0].last_reason.as_deref().unwrap()
        ));
        assert!(!registered_elsewhere(404, "Not Found"));
    }

    /// Issue 16: the phone leaves a node that stops answering its keepalives for the next
    /// member of its group, keeps its call's media, and falls back when the first answers.
    #[test]
    fn r16_registrations_fail_over_and_back_and_the_call_keeps_its_media() {
        let mut ports = Ports(20000);
        let first: SocketAddr = SERVER.parse().unwrap();
        let second: SocketAddr = "127.0.0.2:5070".parse().unwrap();
        let t0 = Instant::now();
        let mut ua = ua(false, false);
        ua.set_failover(vec![first, second], FailoverSettings::default(), t0);
        let SipMessage::Request(reg) = &sent(&ua.register_all(t0, &mut ports))[0] else {
            panic!()
        };
        ua.on_datagram(
            &reg.make_response(200, "", Some("x")).to_bytes(),
            first,
            t0,
            &mut ports,
        );
        // A call comes in and is answered: media starts.
        ua.on_datagram(invite("call-1").as_bytes(), first, t0, &mut ports);
        let (_, out) = ua.answer(t0, &mut ports).unwrap();
        assert!(out.iter().any(|o| matches!(o, Output::MediaStart { .. })));
        let ok = sent(&out)
            .into_iter()
            .find_map(|m| m.as_response().cloned())
            .unwrap();
        let ack = format!(
            "ACK sip:20001@127.0.0.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKack1;rport\r\nMax-Forwards: 70\r\nFrom: \"Caller\" <sip:10001@127.0.0.1:5070>;tag=abc\r\nTo: {}\r\nCall-ID: call-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            ok.headers.get("To").unwrap()
        );
        ua.on_datagram(ack.as_bytes(), first, t0, &mut ports);
        assert_eq!(ua.calls(t0)[0].state, CallState::Connected);
        // The node goes silent: probes (OPTIONS) go unanswered, then every line registers
        // with the second member; the call's media is not stopped.
        let mut t = t0;
        let mut moved = None;
        let mut all = Vec::new();
        while t < t0 + Duration::from_secs(5) && moved.is_none() {
            t += Duration::from_millis(50);
            let out = ua.on_timers(t, &mut ports);
            moved = out.iter().find_map(|o| match o {
                Output::Moved { node, server, why } => Some((*node, *server, *why)),
                _ => None,
            });
            all.extend(out);
        }
        assert_eq!(moved, Some((1, second, Move::Failover)), "{all:?}");
        assert!(t - t0 <= Duration::from_secs(3));
        assert!(!all.iter().any(|o| matches!(o, Output::MediaStop { .. })));
        let probes = all
            .iter()
            .filter(|o| matches!(o, Output::Send { to, msg: SipMessage::Request(r) } if *to == first && r.method == Method::Options))
            .count();
        assert!(probes >= 2, "{all:?}");
        let reg = all
            .iter()
            .find_map(|o| match o {
                Output::Send {
                    to,
                    msg: SipMessage::Request(r),
                } if *to == second && r.method == Method::Register => Some(r.clone()),
                _ => None,
            })
            .expect("a REGISTER to the second member");
        assert_eq!(reg.uri.to_string(), format!("sip:{second}"));
        assert_eq!(ua.server(), second);
        ua.on_datagram(
            &reg.make_response(200, "", Some("y")).to_bytes(),
            second,
            t,
            &mut ports,
        );
        assert_eq!(ua.registrations(t)[0].status, "registered");
        assert_eq!(ua.calls(t)[0].state, CallState::Connected);
        // The first member answers its probes again: back to it, the second left.
        let mut back = None;
        let mut all = Vec::new();
        let until = t + Duration::from_secs(5);
        while t < until && back.is_none() {
            t += Duration::from_millis(50);
            let out = ua.on_timers(t, &mut ports);
            for o in &out {
                if let Output::Send {
                    to,
                    msg: SipMessage::Request(r),
                } = o
                {
                    if *to == first && r.method == Method::Options {
                        let ok = r.make_response(200, "", Some("z"));
                        let more = ua.on_datagram(&ok.to_bytes(), first, t, &mut ports);
                        back = more.iter().find_map(|o| match o {
                            Output::Moved { node, why, .. } => Some((*node, *why)),
                            _ => None,
                        });
                        all.extend(more);
                    }
                }
            }
            all.extend(out);
        }
        assert_eq!(back, Some((0, Move::Fallback)), "{all:?}");
        let to_second: Vec<_> = all
            .iter()
            .filter_map(|o| match o {
                Output::Send {
                    to,
                    msg: SipMessage::Request(r),
                } if *to == second && r.method == Method::Register => Some(r.clone()),
                _ => None,
            })
            .collect();
        assert!(
            to_second
                .iter()
                .any(|r| r.headers.get("Expires") == Some("0")),
            "{to_second:?}"
        );
        assert_eq!((ua.server(), ua.member()), (first, (0, 2)));
        assert_eq!(ua.calls(t)[0].state, CallState::Connected);
    }

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.20\r\ns=-\r\nc=IN IP4 127.0.0.20\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

    fn invite(call_id: &str) -> String {
        format!(
            "INVITE sip:20001@127.0.0.10:5060;transport=udp SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{call_id};rport\r\n\
             Max-Forwards: 69\r\n\
             From: \"Caller\" <sip:10001@127.0.0.1:5070>;tag=abc\r\n\
             To: <sip:20001@127.0.0.10:5060>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:127.0.0.1:5070;transport=udp>\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{OFFER}",
            OFFER.len()
        )
    }

    #[test]
    fn incoming_call_rings_then_answers_and_ends_with_bye() {
        let mut ports = Ports(20000);
        let mut ua = ua(false, false);
        let t0 = Instant::now();
        let out = ua.on_datagram(
            invite("c1").as_bytes(),
            SERVER.parse().unwrap(),
            t0,
            &mut ports,
        );
        let statuses: Vec<u16> = sent(&out)
            .iter()
            .filter_map(|m| m.as_response().map(|r| r.status))
            .collect();
        assert_eq!(statuses, vec![100, 180]);
        assert_eq!(ua.calls(t0)[0].state, CallState::Ringing);
        let (id, out) = ua.answer(t0, &mut ports).unwrap();
        assert_eq!(id, "c1");
        let ok = sent(&out)
            .into_iter()
            .find_map(|m| m.as_response().cloned())
            .unwrap();
        assert_eq!(ok.status, 200);
        let sd = SessionDescription::parse_bytes(&ok.body).unwrap();
        assert!(sd.offers_codec("PCMU"));
        assert!(out.iter().any(|o| matches!(o, Output::MediaStart { remote: Some(a), send: true, payload_type: 0, .. } if a.to_string() == "127.0.0.20:20000")));
        let to = ok.headers.get("To").unwrap().to_string();
        let bye = format!(
            "BYE sip:20001@127.0.0.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKbye1;rport\r\nMax-Forwards: 70\r\nFrom: \"Caller\" <sip:10001@127.0.0.1:5070>;tag=abc\r\nTo: {to}\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        let out = ua.on_datagram(bye.as_bytes(), SERVER.parse().unwrap(), t0, &mut ports);
        assert!(sent(&out)
            .iter()
            .any(|m| m.as_response().is_some_and(|r| r.status == 200)));
        assert!(out.iter().any(|o| matches!(o, Output::MediaStop { .. })));
        assert_eq!(ua.calls(t0)[0].state, CallState::Ended);
    }

    #[test]
    fn busy_auto_answer_and_cancel() {
        let mut ports = Ports(20000);
        let t0 = Instant::now();
        let mut busy = ua(false, true);
        let out = busy.on_datagram(
            invite("c2").as_bytes(),
            SERVER.parse().unwrap(),
            t0,
            &mut ports,
        );
        assert!(sent(&out)
            .iter()
            .any(|m| m.as_response().is_some_and(|r| r.status == 486)));
        let mut auto = ua(true, false);
        let out = auto.on_datagram(
            invite("c3").as_bytes(),
            SERVER.parse().unwrap(),
            t0,
            &mut ports,
        );
        let statuses: Vec<u16> = sent(&out)
            .iter()
            .filter_map(|m| m.as_response().map(|r| r.status))
            .collect();
        assert_eq!(statuses, vec![100, 180, 200]);
        let mut ringing = ua(false, false);
        ringing.on_datagram(
            invite("c4").as_bytes(),
            SERVER.parse().unwrap(),
            t0,
            &mut ports,
        );
        let cancel = invite("c4")
            .replacen("INVITE sip", "CANCEL sip", 1)
            .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
        let cancel =
            cancel.split("Content-Type").next().unwrap().to_string() + "Content-Length: 0\r\n\r\n";
        let out = ringing.on_datagram(cancel.as_bytes(), SERVER.parse().unwrap(), t0, &mut ports);
        let statuses: Vec<u16> = sent(&out)
            .iter()
            .filter_map(|m| m.as_response().map(|r| r.status))
            .collect();
        assert_eq!(statuses, vec![200, 487]);
        assert_eq!(ringing.calls(t0)[0].final_status, Some(487));
    }

    #[test]
    fn outgoing_call_acks_and_hangs_up() {
        let mut ports = Ports(20000);
        let mut ua = ua(false, false);
        let t0 = Instant::now();
        let (id, out) = ua.dial("10,001", t0, &mut ports).unwrap();
        let SipMessage::Request(inv) = &sent(&out)[0] else {
            panic!()
        };
        assert_eq!(inv.uri, "sip:10001@127.0.0.1:5070");
        assert!(inv
            .headers
            .get("From")
            .unwrap()
            .contains("<sip:20001@127.0.0.1:5070>"));
        assert!(inv.validate().is_ok());
        let srv: SocketAddr = SERVER.parse().unwrap();
        ua.on_datagram(&reply(inv, 180, Some("far"), None), srv, t0, &mut ports);
        assert_eq!(ua.calls(t0)[0].state, CallState::Ringback);
        let out = ua.on_datagram(
            &reply(inv, 200, Some("far"), Some(OFFER.into())),
            srv,
            t0,
            &mut ports,
        );
        let ack = sent(&out)
            .into_iter()
            .find_map(|m| match m {
                SipMessage::Request(r) if r.method == Method::Ack => Some(r),
                _ => None,
            })
            .unwrap();
        assert_eq!(ack.uri, "sip:127.0.0.1:5070;transport=udp");
        assert!(ack.headers.get("To").unwrap().contains("tag=far"));
        assert!(out.iter().any(|o| matches!(o, Output::MediaStart { .. })));
        assert_eq!(ua.calls(t0)[0].state, CallState::Connected);
        // 2xx retransmission: ACK again.
        let out = ua.on_datagram(
            &reply(inv, 200, Some("far"), Some(OFFER.into())),
            srv,
            t0,
            &mut ports,
        );
        assert!(sent(&out)
            .iter()
            .any(|m| matches!(m, SipMessage::Request(r) if r.method == Method::Ack)));
        let (hung, out) = ua.hangup(t0, &mut ports).unwrap();
        assert_eq!(hung, id);
        let bye = sent(&out)
            .into_iter()
            .find_map(|m| match m {
                SipMessage::Request(r) if r.method == Method::Bye => Some(r),
                _ => None,
            })
            .unwrap();
        assert!(out.iter().any(|o| matches!(o, Output::MediaStop { .. })));
        assert!(ua.is_idle());
        assert!(ua.hangup(t0, &mut ports).is_err());
        // Ended at once, but the BYE is still in flight until its answer.
        assert!(ua.awaiting_answer(&id));
        ua.on_datagram(&reply(&bye, 200, Some("far"), None), srv, t0, &mut ports);
        assert!(!ua.awaiting_answer(&id));
    }

    #[test]
    fn cancel_waits_for_a_provisional() {
        let mut ports = Ports(20000);
        let mut ua = ua(false, false);
        let t0 = Instant::now();
        let (_, out) = ua.dial("10001", t0, &mut ports).unwrap();
        let SipMessage::Request(inv) = &sent(&out)[0] else {
            panic!()
        };
        let srv: SocketAddr = SERVER.parse().unwrap();
        let (_, out) = ua.hangup(t0, &mut ports).unwrap();
        assert!(sent(&out).is_empty());
        let out = ua.on_datagram(&reply(inv, 180, Some("far"), None), srv, t0, &mut ports);
        assert!(sent(&out)
            .iter()
            .any(|m| matches!(m, SipMessage::Request(r) if r.method == Method::Cancel)));
        ua.on_datagram(&reply(inv, 487, Some("far"), None), srv, t0, &mut ports);
        let c = &ua.calls(t0)[0];
        assert_eq!((c.state, c.final_status), (CallState::Ended, Some(487)));
        assert_eq!(c.end_reason.as_deref(), Some("cancelled"));
    }

    #[test]
    fn check_sync_asks_for_a_resync() {
        let mut ports = Ports(20000);
        let mut ua = ua(false, false);
        let n = "NOTIFY sip:20001@127.0.0.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKn1\r\nMax-Forwards: 70\r\nFrom: <sip:127.0.0.1:5070>;tag=n\r\nTo: <sip:20001@127.0.0.10:5060>\r\nCall-ID: n1\r\nCSeq: 1 NOTIFY\r\nEvent: check-sync\r\nSubscription-State: terminated\r\nContent-Length: 0\r\n\r\n";
        let out = ua.on_datagram(
            n.as_bytes(),
            SERVER.parse().unwrap(),
            Instant::now(),
            &mut ports,
        );
        assert!(sent(&out)
            .iter()
            .any(|m| m.as_response().is_some_and(|r| r.status == 200)));
        assert!(out
            .iter()
            .any(|o| matches!(o, Output::Resync { event } if event == "check-sync")));
        // Garbage is counted, never answered or panicking.
        let out = ua.on_datagram(
            b"\x00\x01garbage",
            SERVER.parse().unwrap(),
            Instant::now(),
            &mut ports,
        );
        assert!(out.is_empty());
        assert_eq!(ua.malformed, 1);
    }
}
