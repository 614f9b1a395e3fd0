//! SIP transactions (RFC 3261 section 17), sans-IO.
//!
//! The state machines here take events (a message arrived, the TU responded,
//! time passed, the transport failed) together with the current [`Instant`] and
//! return the [`Action`]s the caller must carry out. They do no I/O, read no
//! clock and generate nothing random, so they run deterministically under test;
//! a thin async shell owns the sockets and the clock and calls
//! [`TransactionTable::on_timers`] whenever [`TransactionTable::next_deadline`]
//! passes.
//!
//! * [`ClientTransaction`]: INVITE client (17.1.1, timers A, B, D, ACK for
//!   non-2xx finals) and non-INVITE client (17.1.2, timers E, F, K).
//! * [`ServerTransaction`]: INVITE server (17.2.1, automatic 100 Trying after
//!   200 ms, timers G, H, I) and non-INVITE server (17.2.2, timer J).
//! * [`InviteOkRetransmitter`]: the UAS core's 2xx retransmission until the
//!   ACK arrives (13.3.1.4).
//! * [`TransactionTable`]: many transactions, message matching (17.1.3,
//!   17.2.3) and one earliest deadline for the shell.
//!
//! A 2xx to an INVITE moves the INVITE server transaction to the `Accepted`
//! state of RFC 6026 instead of destroying it: for 64*T1 it absorbs
//! retransmissions of the INVITE (which RFC 3261 would hand to the TU as a new
//! request) and retransmits the 2xx itself until the ACK is reported (through
//! [`ServerTransaction::on_ack`], or automatically by the table, which matches
//! the ACK for the 2xx by dialog and CSeq). The INVITE client transaction
//! follows RFC 3261: a 2xx terminates it, and later 2xx retransmissions are
//! [`ResponseOutcome::Stray`] so that the dialog layer can re-send its ACK.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::message::{Method, Request, Response, SipMessage, ViaRef};

/// The RFC 3261 branch prefix.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// How long an INVITE server transaction waits for the TU's first response
/// before it sends 100 Trying itself (RFC 3261 17.2.1).
pub const TRYING_DELAY: Duration = Duration::from_millis(200);

/// Lower bound of Timer D on unreliable transports (RFC 3261 17.1.1.2).
const TIMER_D_MIN: Duration = Duration::from_secs(32);

/// Upper bound applied to T1, T2 and T4 so that deadline arithmetic never
/// overflows.
const MAX_TIMER: Duration = Duration::from_secs(3600);

/// Lower bound applied to T1 so that retransmission intervals are never zero.
const MIN_T1: Duration = Duration::from_millis(1);

/// A branch parameter value: the magic cookie followed by `random` in hex.
pub fn new_branch(random: u64) -> String {
    format!("{MAGIC_COOKIE}{random:016x}")
}

// ---------------------------------------------------------------------------
// Timers, reliability, actions, errors
// ---------------------------------------------------------------------------

/// The base timer values of RFC 3261 17 (table 4). The other timers derive
/// from them: B, F, H, J, L = 64*T1; D = max(32 s, 64*T1) on unreliable
/// transports; K, I = T4 on unreliable transports; D, K, I, J = 0 on reliable
/// ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate, 500 ms.
    pub t1: Duration,
    /// Maximum retransmission interval of non-INVITE requests and INVITE
    /// responses, 4 s.
    pub t2: Duration,
    /// Maximum time a message remains in the network, 5 s.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// Values clamped to sane ranges (1 ms <= T1 <= T2 <= 1 h, T4 <= 1 h).
    fn sane(self) -> Timers {
        let t1 = self.t1.clamp(MIN_T1, MAX_TIMER);
        Timers {
            t1,
            t2: self.t2.clamp(t1, MAX_TIMER),
            t4: self.t4.min(MAX_TIMER),
        }
    }

    /// 64*T1: Timers B, F, H, J and L.
    pub fn transaction_timeout(&self) -> Duration {
        self.sane().t1 * 64
    }

    fn timer_d(&self) -> Duration {
        self.transaction_timeout().max(TIMER_D_MIN)
    }
}

/// Whether the transport retransmits by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reliability {
    /// UDP: the transaction layer retransmits.
    Unreliable,
    /// TCP, TLS: no retransmissions, and the "linger" timers D, I, J, K are 0.
    Reliable,
}

impl Reliability {
    pub fn is_reliable(self) -> bool {
        self == Reliability::Reliable
    }
}

/// What the shell must do, in order, for one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this message (a request or a response) to the transaction's peer.
    Send(SipMessage),
    /// Deliver this response to the TU of a client transaction.
    DeliverResponse(Response),
    /// The transaction failed. For a client transaction: Timer B or F fired,
    /// the CANCEL guard expired, or the transport failed; the TU acts as if a
    /// 408 had been received. For an INVITE server transaction: Timer H fired
    /// (no ACK for a non-2xx final), no ACK came for a 2xx within 64*T1 (the
    /// TU should send BYE, RFC 3261 13.3.1.4), or the transport failed.
    Timeout,
    /// The transaction is finished and can be forgotten. Nothing follows.
    Terminated,
}

/// Why a transaction cannot be created or identified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// The message lacks what identifies a transaction (top Via, branch,
    /// CSeq).
    #[error("cannot identify the transaction: {0}")]
    Unidentifiable(String),
    /// ACK never creates a transaction (RFC 3261 17).
    #[error("ACK does not create a transaction")]
    Ack,
    /// The table already holds a transaction with this key.
    #[error("transaction already exists: {0:?}")]
    Duplicate(TransactionKey),
}

fn unidentifiable(e: impl std::fmt::Display) -> TransactionError {
    TransactionError::Unidentifiable(e.to_string())
}

fn due(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|d| d <= now)
}

fn earliest(deadlines: &[Option<Instant>]) -> Option<Instant> {
    deadlines.iter().flatten().min().copied()
}

// ---------------------------------------------------------------------------
// Transaction keys
// ---------------------------------------------------------------------------

/// Which side of a transaction a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// We sent the request.
    Client,
    /// We received the request.
    Server,
}

/// Identifies a transaction.
///
/// * Server side (RFC 3261 17.2.3): the top Via branch, if it starts with the
///   magic cookie, plus the top Via sent-by plus the method (ACK counts as
///   INVITE; CANCEL is its own transaction). Without the cookie the RFC 2543
///   rule applies: Request-URI, From tag, Call-ID, CSeq number, top Via and
///   method (the To tag is left out, so that the ACK for a non-2xx, which
///   carries the response's To tag, matches its INVITE).
/// * Client side (RFC 3261 17.1.3): the top Via branch plus the CSeq method.
///
/// Branches and hosts compare case-insensitively. The key also records the
/// [`Role`], so client and server transactions never collide, even when the
/// node sends a request to itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    role: Role,
    id: KeyId,
    method: Method,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyId {
    Branch {
        branch: String,
        sent_by: Option<String>,
    },
    Rfc2543(Box<LegacyId>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LegacyId {
    request_uri: String,
    from_tag: Option<String>,
    call_id: String,
    cseq: u32,
    top_via: String,
}

fn sent_by(via: &ViaRef<'_>) -> String {
    let mut s = String::with_capacity(via.host.len() + 6);
    s.push_str(via.host);
    s.make_ascii_lowercase();
    if let Some(p) = via.port {
        use std::fmt::Write as _;
        let _ = write!(s, ":{p}");
    }
    s
}

/// The cookie test, case-insensitive like the branch comparison.
fn has_magic_cookie(branch: &str) -> bool {
    branch
        .get(..MAGIC_COOKIE.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(MAGIC_COOKIE))
}

fn key_method(m: &Method) -> Method {
    match m {
        Method::Ack => Method::Invite,
        other => other.clone(),
    }
}

impl TransactionKey {
    /// The key of the server transaction an incoming request belongs to
    /// (RFC 3261 17.2.3). For an ACK this is the key of the INVITE it
    /// acknowledges.
    pub fn for_request(req: &Request) -> Result<Self, TransactionError> {
        let via = req.headers.top_via_ref().map_err(unidentifiable)?;
        let method = key_method(&req.method);
        let id = match via.branch() {
            Some(b) if has_magic_cookie(b) => KeyId::Branch {
                branch: b.to_ascii_lowercase(),
                sent_by: Some(sent_by(&via)),
            },
            _ => {
                let cseq = req.cseq().map_err(unidentifiable)?;
                let call_id = req
                    .call_id()
                    .ok_or_else(|| unidentifiable("missing Call-ID"))?;
                let from_tag = req
                    .headers
                    .from_ref()
                    .map_err(unidentifiable)?
                    .tag()
                    .map(str::to_string);
                let mut top = via.to_owned_via();
                top.host.make_ascii_lowercase();
                KeyId::Rfc2543(Box::new(LegacyId {
                    request_uri: req.uri.trim().to_string(),
                    from_tag,
                    call_id: call_id.to_string(),
                    cseq: cseq.seq,
                    top_via: top.to_string(),
                }))
            }
        };
        Ok(TransactionKey {
            role: Role::Server,
            id,
            method,
        })
    }

    /// The key of the client transaction an outgoing request creates
    /// (RFC 3261 17.1.3): top Via branch and method. The branch is required.
    pub fn client_for_request(req: &Request) -> Result<Self, TransactionError> {
        let via = req.headers.top_via_ref().map_err(unidentifiable)?;
        let branch = via
            .branch()
            .ok_or_else(|| unidentifiable("top Via has no branch"))?;
        Ok(TransactionKey {
            role: Role::Client,
            id: KeyId::Branch {
                branch: branch.to_ascii_lowercase(),
                sent_by: None,
            },
            method: key_method(&req.method),
        })
    }

    /// The key of the client transaction an incoming response belongs to
    /// (RFC 3261 17.1.3): top Via branch and CSeq method.
    pub fn for_response(resp: &Response) -> Result<Self, TransactionError> {
        let via = resp.headers.top_via_ref().map_err(unidentifiable)?;
        let branch = via
            .branch()
            .ok_or_else(|| unidentifiable("top Via has no branch"))?;
        let cseq = resp.cseq().map_err(unidentifiable)?;
        Ok(TransactionKey {
            role: Role::Client,
            id: KeyId::Branch {
                branch: branch.to_ascii_lowercase(),
                sent_by: None,
            },
            method: cseq.method,
        })
    }

    /// Client or server side.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The method of the request that created the transaction.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The (lower-cased) branch, unless the key follows the RFC 2543 rule.
    pub fn branch(&self) -> Option<&str> {
        match &self.id {
            KeyId::Branch { branch, .. } => Some(branch),
            KeyId::Rfc2543(_) => None,
        }
    }

    /// The same transaction identifier with another method: a CANCEL's key
    /// with [`Method::Invite`] is the key of the INVITE it cancels (RFC 3261
    /// 9.2).
    pub fn with_method(&self, method: Method) -> TransactionKey {
        TransactionKey {
            role: self.role,
            id: self.id.clone(),
            method,
        }
    }
}

// ---------------------------------------------------------------------------
// Requests generated by the transaction layer
// ---------------------------------------------------------------------------

/// A request built from `orig` per RFC 3261 9.1 / 17.1.1.3: same
/// Request-URI, one Via (the original top Via), the original Route headers,
/// From, Call-ID and CSeq number, `to` as the To header, no body.
fn derived_request(orig: &Request, method: Method, to: Option<&str>, seq: u32) -> Request {
    let mut r = Request::new(method.clone(), orig.uri.clone());
    if let Some(v) = orig.headers.get_all_split("Via").next() {
        r.headers.push("Via", v);
    }
    for route in orig.headers.get_all("Route") {
        r.headers.push("Route", route);
    }
    r.headers.push("Max-Forwards", "70");
    if let Some(v) = orig.headers.get("From") {
        r.headers.push("From", v);
    }
    if let Some(v) = to.or_else(|| orig.headers.get("To")) {
        r.headers.push("To", v);
    }
    if let Some(v) = orig.call_id() {
        r.headers.push("Call-ID", v);
    }
    r.headers.push("CSeq", format!("{seq} {method}"));
    r.headers.push("Content-Length", "0");
    r
}

// ---------------------------------------------------------------------------
// Client transactions
// ---------------------------------------------------------------------------

/// State of a [`ClientTransaction`] (RFC 3261 figures 5 and 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientState {
    /// INVITE sent, no response yet.
    Calling,
    /// Non-INVITE request sent, no response yet.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived (for INVITE: a non-2xx, ACKed); absorbing
    /// retransmissions.
    Completed,
    /// Finished.
    Terminated,
}

/// One client transaction: we sent the request.
#[derive(Debug, Clone)]
pub struct ClientTransaction {
    key: TransactionKey,
    request: Request,
    seq: u32,
    invite: bool,
    reliability: Reliability,
    timers: Timers,
    state: ClientState,
    /// Timer A (INVITE) or E (non-INVITE).
    retransmit_at: Option<Instant>,
    interval: Duration,
    /// Timer B (INVITE, Calling only), F (non-INVITE), or the CANCEL guard.
    timeout_at: Option<Instant>,
    /// 64*T1 after the TU sent a CANCEL for this INVITE (RFC 3261 9.1).
    cancel_guard: Option<Instant>,
    /// Timer D (INVITE) or K (non-INVITE).
    terminate_at: Option<Instant>,
    /// The ACK sent for the non-2xx final response, re-sent on each
    /// retransmission of that response.
    ack: Option<Request>,
}

impl ClientTransaction {
    /// Starts a client transaction for `req`, which the TU built with a
    /// fresh branch (see [`new_branch`]). Returns the transaction and the
    /// first `Send`. ACK is refused (an ACK for a 2xx is sent by the dialog
    /// layer directly; the ACK for a non-2xx is generated here).
    pub fn new(
        req: Request,
        reliability: Reliability,
        timers: Timers,
        now: Instant,
    ) -> Result<(Self, Vec<Action>), TransactionError> {
        if req.method == Method::Ack {
            return Err(TransactionError::Ack);
        }
        let key = TransactionKey::client_for_request(&req)?;
        Self::with_key(key, req, reliability, timers, now)
    }

    /// [`ClientTransaction::new`] with the key already worked out (not an ACK).
    fn with_key(
        key: TransactionKey,
        req: Request,
        reliability: Reliability,
        timers: Timers,
        now: Instant,
    ) -> Result<(Self, Vec<Action>), TransactionError> {
        let seq = req.cseq().map_err(unidentifiable)?.seq;
        let timers = timers.sane();
        let invite = req.method == Method::Invite;
        let retransmit_at = (!reliability.is_reliable()).then(|| now + timers.t1);
        let send = Action::Send(SipMessage::Request(req.clone()));
        let t = ClientTransaction {
            key,
            request: req,
            seq,
            invite,
            reliability,
            timers,
            state: if invite {
                ClientState::Calling
            } else {
                ClientState::Trying
            },
            retransmit_at,
            interval: timers.t1,
            timeout_at: Some(now + timers.transaction_timeout()),
            cancel_guard: None,
            terminate_at: None,
            ack: None,
        };
        Ok((t, vec![send]))
    }

    /// A response arrived. Responses that do not belong to this transaction
    /// (per [`TransactionKey::for_response`]) are ignored.
    pub fn on_response(&mut self, resp: Response, now: Instant) -> Vec<Action> {
        match TransactionKey::for_response(&resp) {
            Ok(k) if k == self.key => self.handle_response(resp, now),
            _ => Vec::new(),
        }
    }

    fn handle_response(&mut self, resp: Response, now: Instant) -> Vec<Action> {
        let status = resp.status;
        if !(100..=699).contains(&status) {
            return Vec::new();
        }
        match self.state {
            ClientState::Terminated => Vec::new(),
            ClientState::Completed => match (&self.ack, status >= 300) {
                // 17.1.1.2: retransmitted non-2xx finals are ACKed again, not
                // passed up.
                (Some(ack), true) => vec![Action::Send(SipMessage::Request(ack.clone()))],
                _ => Vec::new(),
            },
            ClientState::Calling | ClientState::Trying | ClientState::Proceeding => {
                if status < 200 {
                    if self.invite {
                        // Timer A stops; Timer B only runs in Calling.
                        self.retransmit_at = None;
                        self.timeout_at = self.cancel_guard;
                    }
                    self.state = ClientState::Proceeding;
                    return vec![Action::DeliverResponse(resp)];
                }
                self.retransmit_at = None;
                self.timeout_at = None;
                self.cancel_guard = None;
                if self.invite && status < 300 {
                    self.terminate();
                    return vec![Action::DeliverResponse(resp), Action::Terminated];
                }
                self.state = ClientState::Completed;
                let mut out = Vec::with_capacity(3);
                if self.invite {
                    let ack = derived_request(
                        &self.request,
                        Method::Ack,
                        resp.headers.get("To"),
                        self.seq,
                    );
                    out.push(Action::DeliverResponse(resp));
                    out.push(Action::Send(SipMessage::Request(ack.clone())));
                    if self.reliability.is_reliable() {
                        self.terminate();
                        out.push(Action::Terminated);
                    } else {
                        self.ack = Some(ack);
                        self.terminate_at = Some(now + self.timers.timer_d());
                    }
                } else {
                    out.push(Action::DeliverResponse(resp));
                    if self.reliability.is_reliable() {
                        self.terminate();
                        out.push(Action::Terminated);
                    } else {
                        self.terminate_at = Some(now + self.timers.t4);
                    }
                }
                out
            }
        }
    }

    /// Time passed. Call when `now >= next_deadline()`; earlier calls do
    /// nothing.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        if self.state == ClientState::Terminated {
            return Vec::new();
        }
        if due(self.terminate_at, now) {
            // Timer D or K.
            self.terminate();
            return vec![Action::Terminated];
        }
        if due(self.timeout_at, now) {
            // Timer B or F, or the CANCEL guard.
            self.terminate();
            return vec![Action::Timeout, Action::Terminated];
        }
        if due(self.retransmit_at, now) {
            // Timer A doubles without bound (Timer B ends it); Timer E
            // doubles up to T2, and is T2 once a provisional arrived.
            self.interval = if self.invite {
                self.interval.saturating_mul(2).min(MAX_TIMER * 64)
            } else if self.state == ClientState::Proceeding {
                self.timers.t2
            } else {
                self.interval.saturating_mul(2).min(self.timers.t2)
            };
            self.retransmit_at = Some(now + self.interval);
            return vec![Action::Send(SipMessage::Request(self.request.clone()))];
        }
        Vec::new()
    }

    /// When [`ClientTransaction::on_timer`] must next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        earliest(&[self.retransmit_at, self.timeout_at, self.terminate_at])
    }

    /// The transport failed to deliver the request (RFC 3261 17.1.1.2,
    /// 17.1.2.2): `Timeout` (unless a final response already arrived) and
    /// `Terminated`.
    pub fn on_transport_error(&mut self) -> Vec<Action> {
        match self.state {
            ClientState::Terminated => Vec::new(),
            ClientState::Completed => {
                self.terminate();
                vec![Action::Terminated]
            }
            _ => {
                self.terminate();
                vec![Action::Timeout, Action::Terminated]
            }
        }
    }

    /// The TU sent a CANCEL for this INVITE. If no final response arrives
    /// within 64*T1 the transaction gives up with `Timeout` (RFC 3261 9.1);
    /// without this an INVITE client transaction in Proceeding waits for
    /// ever, as RFC 3261 specifies. Ignored for non-INVITE transactions and
    /// after a final response.
    pub fn cancel_sent(&mut self, now: Instant) {
        if !self.invite || !matches!(self.state, ClientState::Calling | ClientState::Proceeding) {
            return;
        }
        let guard = now + self.timers.transaction_timeout();
        let guard = self.cancel_guard.map_or(guard, |g| g.min(guard));
        self.cancel_guard = Some(guard);
        self.timeout_at = Some(self.timeout_at.map_or(guard, |t| t.min(guard)));
    }

    /// Whether the TU has sent a CANCEL for this INVITE.
    pub fn cancelling(&self) -> bool {
        self.cancel_guard.is_some()
    }

    /// The CANCEL for this INVITE (RFC 3261 9.1): same Request-URI, Call-ID,
    /// From, To, CSeq number and top Via (so the same branch), the Route
    /// headers of the INVITE. `None` for a non-INVITE transaction. RFC 3261
    /// allows sending it only once a provisional response arrived
    /// (state `Proceeding`). Send it in its own client transaction
    /// ([`TransactionTable::start_client`]) and call
    /// [`ClientTransaction::cancel_sent`].
    pub fn make_cancel(&self) -> Option<Request> {
        self.invite
            .then(|| derived_request(&self.request, Method::Cancel, None, self.seq))
    }

    fn terminate(&mut self) {
        self.state = ClientState::Terminated;
        self.retransmit_at = None;
        self.timeout_at = None;
        self.cancel_guard = None;
        self.terminate_at = None;
        self.ack = None;
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// The request this transaction sends.
    pub fn request(&self) -> &Request {
        &self.request
    }

    pub fn reliability(&self) -> Reliability {
        self.reliability
    }

    pub fn is_invite(&self) -> bool {
        self.invite
    }
}

// ---------------------------------------------------------------------------
// 2xx retransmission (UAS core)
// ---------------------------------------------------------------------------

/// RFC 3261 13.3.1.4: the UAS core re-sends a 2xx to an INVITE at T1,
/// doubling up to T2, until the ACK arrives, and gives up with `Timeout`
/// after 64*T1 (the TU should then send BYE). The RFC asks for this
/// whatever the transport, so it retransmits on TCP and TLS too.
///
/// [`ServerTransaction`] does the same itself in the `Accepted` state; use
/// this only for a 2xx sent outside a server transaction.
#[derive(Debug, Clone)]
pub struct InviteOkRetransmitter {
    response: Response,
    t2: Duration,
    interval: Duration,
    retransmit_at: Option<Instant>,
    give_up_at: Option<Instant>,
}

impl InviteOkRetransmitter {
    /// Starts retransmitting `resp`; the returned actions send it the first
    /// time.
    pub fn new(resp: Response, timers: Timers, now: Instant) -> (Self, Vec<Action>) {
        let timers = timers.sane();
        let send = Action::Send(SipMessage::Response(resp.clone()));
        let r = InviteOkRetransmitter {
            response: resp,
            t2: timers.t2,
            interval: timers.t1,
            retransmit_at: Some(now + timers.t1),
            give_up_at: Some(now + timers.transaction_timeout()),
        };
        (r, vec![send])
    }

    /// The ACK for the 2xx arrived: stop.
    pub fn on_ack(&mut self) {
        self.retransmit_at = None;
        self.give_up_at = None;
    }

    /// Time passed: `Send` (a retransmission) or `Timeout` (no ACK within
    /// 64*T1; nothing follows).
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        if due(self.give_up_at, now) {
            self.on_ack();
            return vec![Action::Timeout];
        }
        if due(self.retransmit_at, now) {
            self.interval = self.interval.saturating_mul(2).min(self.t2);
            self.retransmit_at = Some(now + self.interval);
            return vec![Action::Send(SipMessage::Response(self.response.clone()))];
        }
        Vec::new()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        earliest(&[self.retransmit_at, self.give_up_at])
    }

    /// True until the ACK arrived or the retransmitter gave up.
    pub fn is_active(&self) -> bool {
        self.give_up_at.is_some()
    }

    pub fn response(&self) -> &Response {
        &self.response
    }
}

// ---------------------------------------------------------------------------
// Server transactions
// ---------------------------------------------------------------------------

/// State of a [`ServerTransaction`] (RFC 3261 figures 7 and 8, RFC 6026).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerState {
    /// Non-INVITE received, the TU has not responded.
    Trying,
    /// INVITE received, or a provisional response sent.
    Proceeding,
    /// Final response sent (for INVITE: non-2xx, waiting for the ACK).
    Completed,
    /// INVITE only: the ACK for the non-2xx final arrived (absorbing ACK
    /// retransmissions until Timer I).
    Confirmed,
    /// INVITE only (RFC 6026): a 2xx was sent; retransmitting it until the
    /// ACK, absorbing INVITE retransmissions until Timer L (64*T1).
    Accepted,
    /// Finished.
    Terminated,
}

/// One server transaction: we received the request.
#[derive(Debug, Clone)]
pub struct ServerTransaction {
    key: TransactionKey,
    request: Request,
    invite: bool,
    reliability: Reliability,
    timers: Timers,
    state: ServerState,
    provisional: Option<Response>,
    final_response: Option<Response>,
    /// Automatic 100 Trying (INVITE).
    trying_at: Option<Instant>,
    /// Timer G (non-2xx in Completed) or the 2xx retransmission (Accepted).
    retransmit_at: Option<Instant>,
    interval: Duration,
    /// Timer H (Completed), or giving up on the ACK for a 2xx (Accepted).
    timeout_at: Option<Instant>,
    /// Timer I, J or L.
    terminate_at: Option<Instant>,
}

impl ServerTransaction {
    /// Creates the server transaction for a new request (the caller hands
    /// the request to its TU itself). Returns no actions: an INVITE
    /// transaction sends 100 Trying from [`ServerTransaction::on_timer`] if
    /// the TU has not responded within 200 ms. ACK is refused.
    pub fn new(
        req: Request,
        reliability: Reliability,
        timers: Timers,
        now: Instant,
    ) -> Result<(Self, Vec<Action>), TransactionError> {
        if req.method == Method::Ack {
            return Err(TransactionError::Ack);
        }
        let key = TransactionKey::for_request(&req)?;
        let timers = timers.sane();
        let invite = req.method == Method::Invite;
        let t = ServerTransaction {
            key,
            request: req,
            invite,
            reliability,
            timers,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            provisional: None,
            final_response: None,
            trying_at: invite.then(|| now + TRYING_DELAY),
            retransmit_at: None,
            interval: timers.t1,
            timeout_at: None,
            terminate_at: None,
        };
        Ok((t, Vec::new()))
    }

    /// The request arrived again. An ACK is handled as by
    /// [`ServerTransaction::on_ack`]. Requests of other transactions are
    /// ignored.
    pub fn on_request_retransmission(&mut self, req: &Request, now: Instant) -> Vec<Action> {
        match TransactionKey::for_request(req) {
            Ok(k) if k == self.key => {}
            _ => return Vec::new(),
        }
        if req.method == Method::Ack {
            self.handle_ack(now)
        } else {
            self.handle_retransmission()
        }
    }

    /// An ACK for this INVITE transaction arrived: in Completed it moves to
    /// Confirmed; in Accepted (an ACK for the 2xx, matched by the caller) it
    /// stops the 2xx retransmissions. Requests of other transactions are
    /// ignored.
    pub fn on_ack(&mut self, ack: &Request, now: Instant) -> Vec<Action> {
        if ack.method != Method::Ack {
            return Vec::new();
        }
        if self.state != ServerState::Accepted {
            match TransactionKey::for_request(ack) {
                Ok(k) if k == self.key => {}
                _ => return Vec::new(),
            }
        }
        self.handle_ack(now)
    }

    fn handle_retransmission(&mut self) -> Vec<Action> {
        match self.state {
            ServerState::Proceeding => {
                if self.provisional.is_none() && self.invite {
                    self.trying_at = None;
                    self.provisional = Some(self.request.make_response(100, "Trying", None));
                }
                self.provisional
                    .iter()
                    .map(|p| Action::Send(SipMessage::Response(p.clone())))
                    .collect()
            }
            ServerState::Completed => self
                .final_response
                .iter()
                .map(|f| Action::Send(SipMessage::Response(f.clone())))
                .collect(),
            ServerState::Trying
            | ServerState::Confirmed
            | ServerState::Accepted
            | ServerState::Terminated => Vec::new(),
        }
    }

    fn handle_ack(&mut self, now: Instant) -> Vec<Action> {
        if !self.invite {
            return Vec::new();
        }
        match self.state {
            ServerState::Completed => {
                self.state = ServerState::Confirmed;
                self.retransmit_at = None;
                self.timeout_at = None;
                if self.reliability.is_reliable() {
                    self.terminate();
                    vec![Action::Terminated]
                } else {
                    self.terminate_at = Some(now + self.timers.t4);
                    Vec::new()
                }
            }
            ServerState::Accepted => {
                // The ACK for the 2xx: stop retransmitting it (13.3.1.4).
                self.retransmit_at = None;
                self.timeout_at = None;
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// The TU responds. Provisional responses are sent and remembered;
    /// a non-2xx final moves to Completed (INVITE: Timers G, H; non-INVITE:
    /// Timer J); a 2xx to an INVITE moves to Accepted, where the transaction
    /// retransmits it until [`ServerTransaction::on_ack`] (RFC 3261 13.3.1.4,
    /// RFC 6026). Responses after the final one are dropped, except further
    /// 2xx in Accepted, which are sent once.
    pub fn respond(&mut self, resp: Response, now: Instant) -> Vec<Action> {
        let status = resp.status;
        if !(100..=699).contains(&status) {
            return Vec::new();
        }
        match self.state {
            ServerState::Trying | ServerState::Proceeding => {}
            ServerState::Accepted if (200..300).contains(&status) => {
                return vec![Action::Send(SipMessage::Response(resp))];
            }
            _ => return Vec::new(),
        }
        self.trying_at = None;
        if status < 200 {
            self.state = ServerState::Proceeding;
            self.provisional = Some(resp.clone());
            return vec![Action::Send(SipMessage::Response(resp))];
        }
        self.final_response = Some(resp.clone());
        let mut out = vec![Action::Send(SipMessage::Response(resp))];
        if self.invite && status < 300 {
            // RFC 6026 Accepted; the 2xx is retransmitted at T1 doubling up
            // to T2 on every transport (RFC 3261 13.3.1.4) until the ACK, for
            // at most 64*T1, which is also Timer L.
            self.state = ServerState::Accepted;
            let end = now + self.timers.transaction_timeout();
            self.interval = self.timers.t1;
            self.retransmit_at = Some(now + self.timers.t1);
            self.timeout_at = Some(end);
            self.terminate_at = Some(end);
            return out;
        }
        self.state = ServerState::Completed;
        let reliable = self.reliability.is_reliable();
        if self.invite {
            if !reliable {
                self.interval = self.timers.t1;
                self.retransmit_at = Some(now + self.timers.t1);
            }
            self.timeout_at = Some(now + self.timers.transaction_timeout());
        } else if reliable {
            self.terminate();
            out.push(Action::Terminated);
        } else {
            self.terminate_at = Some(now + self.timers.transaction_timeout());
        }
        out
    }

    /// Time passed. Call when `now >= next_deadline()`; earlier calls do
    /// nothing.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        if self.state == ServerState::Terminated {
            return Vec::new();
        }
        let mut out = Vec::new();
        if due(self.trying_at, now) {
            self.trying_at = None;
            if self.state == ServerState::Proceeding && self.provisional.is_none() {
                let trying = self.request.make_response(100, "Trying", None);
                out.push(Action::Send(SipMessage::Response(trying.clone())));
                self.provisional = Some(trying);
            }
        }
        if due(self.timeout_at, now) {
            // Timer H, or no ACK for the 2xx: the ACK never came.
            self.terminate();
            out.push(Action::Timeout);
            out.push(Action::Terminated);
            return out;
        }
        if due(self.terminate_at, now) {
            // Timer I, J or L.
            self.terminate();
            out.push(Action::Terminated);
            return out;
        }
        if due(self.retransmit_at, now) {
            // Timer G, or the 2xx retransmission.
            self.interval = self.interval.saturating_mul(2).min(self.timers.t2);
            self.retransmit_at = Some(now + self.interval);
            if let Some(f) = &self.final_response {
                out.push(Action::Send(SipMessage::Response(f.clone())));
            }
        }
        out
    }

    /// When [`ServerTransaction::on_timer`] must next be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        earliest(&[
            self.trying_at,
            self.retransmit_at,
            self.timeout_at,
            self.terminate_at,
        ])
    }

    /// The transport failed to send a response (RFC 3261 17.2.4):
    /// `Timeout` (unless the exchange was already complete: non-INVITE
    /// Completed, Confirmed, or Accepted with the ACK received) and
    /// `Terminated`.
    pub fn on_transport_error(&mut self) -> Vec<Action> {
        let quiet = match self.state {
            ServerState::Terminated => return Vec::new(),
            ServerState::Confirmed => true,
            ServerState::Completed => !self.invite,
            ServerState::Accepted => self.timeout_at.is_none(),
            _ => false,
        };
        self.terminate();
        if quiet {
            vec![Action::Terminated]
        } else {
            vec![Action::Timeout, Action::Terminated]
        }
    }

    fn terminate(&mut self) {
        self.state = ServerState::Terminated;
        self.trying_at = None;
        self.retransmit_at = None;
        self.timeout_at = None;
        self.terminate_at = None;
    }

    pub fn state(&self) -> ServerState {
        self.state
    }

    pub fn key(&self) -> &TransactionKey {
        &self.key
    }

    /// The request that created the transaction.
    pub fn request(&self) -> &Request {
        &self.request
    }

    pub fn reliability(&self) -> Reliability {
        self.reliability
    }

    pub fn is_invite(&self) -> bool {
        self.invite
    }

    /// The final response sent, if any.
    pub fn final_response(&self) -> Option<&Response> {
        self.final_response.as_ref()
    }

    /// True while a 2xx to this INVITE is retransmitted (Accepted, no ACK
    /// yet).
    pub fn awaiting_ack_for_2xx(&self) -> bool {
        self.state == ServerState::Accepted && self.timeout_at.is_some()
    }
}

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

/// What became of an incoming request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A new request: a server transaction was created under `key`; hand
    /// the request to the TU, which answers with
    /// [`TransactionTable::respond`].
    New {
        key: TransactionKey,
        request: Request,
    },
    /// A new CANCEL: a (non-INVITE) server transaction was created under
    /// `key`; the TU answers it (200, or 481 when
    /// `key_of_cancelled_invite` is `None`) and, if the INVITE is still
    /// Proceeding, answers the INVITE with 487.
    Cancel {
        key: TransactionKey,
        key_of_cancelled_invite: Option<TransactionKey>,
        request: Request,
    },
    /// A retransmission or an ACK for a non-2xx, handled by the transaction
    /// `key`; carry out `actions` (usually a `Send`, possibly `Terminated`).
    Absorbed {
        key: TransactionKey,
        actions: Vec<Action>,
    },
    /// An ACK that belongs to no transaction: the ACK for a 2xx, for the
    /// dialog layer. `invite` names the INVITE server transaction whose 2xx
    /// it acknowledges (matched by Call-ID, CSeq number, From tag and the
    /// 2xx's To tag), whose 2xx retransmissions it stopped.
    AckFor2xx {
        request: Request,
        invite: Option<TransactionKey>,
    },
    /// No transaction key can be derived (no parseable top Via, CSeq, ...).
    Invalid {
        request: Request,
        error: TransactionError,
    },
}

/// What became of an incoming response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOutcome {
    /// Handled by the client transaction `key`.
    Matched {
        key: TransactionKey,
        actions: Vec<Action>,
    },
    /// No client transaction matches (for instance a 2xx retransmission
    /// after the INVITE client transaction ended, or a 2xx from another
    /// fork): for the dialog layer, which re-sends its ACK.
    Stray(Response),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AckKey {
    call_id: String,
    seq: u32,
    from_tag: String,
    to_tag: String,
}

impl AckKey {
    fn of_ack(ack: &Request) -> Option<AckKey> {
        Some(AckKey {
            call_id: ack.call_id()?.to_string(),
            seq: ack.cseq().ok()?.seq,
            from_tag: ack.headers.from_ref().ok()?.tag()?.to_string(),
            to_tag: ack.headers.to_ref().ok()?.tag()?.to_string(),
        })
    }

    fn of_2xx(invite: &Request, ok: &Response) -> Option<AckKey> {
        Some(AckKey {
            call_id: invite.call_id()?.to_string(),
            seq: invite.cseq().ok()?.seq,
            from_tag: invite.headers.from_ref().ok()?.tag()?.to_string(),
            to_tag: ok.headers.to_ref().ok()?.tag()?.to_string(),
        })
    }
}

#[derive(Debug)]
enum Txn {
    Client(Box<ClientTransaction>),
    Server(Box<ServerTransaction>),
}

impl Txn {
    fn next_deadline(&self) -> Option<Instant> {
        match self {
            Txn::Client(c) => c.next_deadline(),
            Txn::Server(s) => s.next_deadline(),
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            Txn::Client(c) => c.state() == ClientState::Terminated,
            Txn::Server(s) => s.state() == ServerState::Terminated,
        }
    }

    fn key(&self) -> &TransactionKey {
        match self {
            Txn::Client(c) => c.key(),
            Txn::Server(s) => s.key(),
        }
    }

    fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        match self {
            Txn::Client(c) => c.on_timer(now),
            Txn::Server(s) => s.on_timer(now),
        }
    }

    fn on_transport_error(&mut self) -> Vec<Action> {
        match self {
            Txn::Client(c) => c.on_transport_error(),
            Txn::Server(s) => s.on_transport_error(),
        }
    }
}

/// Hashes ids a table hands out itself (never data from a peer, so there is nothing to
/// flood) with one multiplication instead of SipHash.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by ids the owner generates (transactions, calls).
pub(crate) type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

#[derive(Debug)]
struct Slot {
    txn: Txn,
    scheduled: Option<Instant>,
    ack_key: Option<AckKey>,
}

/// Owns many transactions: matches incoming messages to them, removes them
/// when they terminate, and keeps their deadlines ordered (a `BTreeSet` of
/// `(deadline, id)`), so every operation costs O(log n).
#[derive(Debug)]
pub struct TransactionTable {
    timers: Timers,
    ids: HashMap<TransactionKey, u64>,
    slots: IdMap<Slot>,
    schedule: BTreeSet<(Instant, u64)>,
    acks: HashMap<AckKey, u64>,
    next_id: u64,
}

impl TransactionTable {
    pub fn new(timers: Timers) -> Self {
        TransactionTable {
            timers: timers.sane(),
            ids: HashMap::new(),
            slots: IdMap::default(),
            schedule: BTreeSet::new(),
            acks: HashMap::new(),
            next_id: 0,
        }
    }

    pub fn timers(&self) -> Timers {
        self.timers
    }

    /// An incoming request (already checked with `Request::validate`).
    ///
    /// * Matches a server transaction (17.2.3): that transaction handles it
    ///   (retransmission, or ACK for a non-2xx) → [`Incoming::Absorbed`].
    /// * ACK matching nothing, or matching an INVITE transaction that sent a
    ///   2xx → [`Incoming::AckFor2xx`] (never creates a transaction).
    /// * New CANCEL → [`Incoming::Cancel`], new other request →
    ///   [`Incoming::New`], both with a new server transaction.
    pub fn on_request(&mut self, req: Request, reliability: Reliability, now: Instant) -> Incoming {
        let key = match TransactionKey::for_request(&req) {
            Ok(k) => k,
            Err(error) => {
                return Incoming::Invalid {
                    request: req,
                    error,
                }
            }
        };
        if req.method == Method::Ack {
            return self.on_ack(key, req, now);
        }
        if let Some(&id) = self.ids.get(&key) {
            let actions = match self.slots.get_mut(&id) {
                Some(Slot {
                    txn: Txn::Server(s),
                    ..
                }) => s.handle_retransmission(),
                _ => Vec::new(),
            };
            self.settle(id);
            return Incoming::Absorbed { key, actions };
        }
        let cancel = req.method == Method::Cancel;
        let (txn, _) = match ServerTransaction::new(req.clone(), reliability, self.timers, now) {
            Ok(t) => t,
            Err(error) => {
                return Incoming::Invalid {
                    request: req,
                    error,
                }
            }
        };
        self.insert(key.clone(), Txn::Server(Box::new(txn)));
        if cancel {
            let invite = key.with_method(Method::Invite);
            let key_of_cancelled_invite = self.ids.contains_key(&invite).then_some(invite);
            Incoming::Cancel {
                key,
                key_of_cancelled_invite,
                request: req,
            }
        } else {
            Incoming::New { key, request: req }
        }
    }

    fn on_ack(&mut self, key: TransactionKey, req: Request, now: Instant) -> Incoming {
        let by_key = self.ids.get(&key).copied();
        let by_dialog = || AckKey::of_ack(&req).and_then(|k| self.acks.get(&k).copied());
        let Some(id) = by_key.or_else(by_dialog) else {
            return Incoming::AckFor2xx {
                request: req,
                invite: None,
            };
        };
        let Some(Slot {
            txn: Txn::Server(s),
            ..
        }) = self.slots.get_mut(&id)
        else {
            return Incoming::AckFor2xx {
                request: req,
                invite: None,
            };
        };
        let accepted = s.state() == ServerState::Accepted;
        let txn_key = s.key().clone();
        let actions = s.handle_ack(now);
        self.settle(id);
        if accepted {
            Incoming::AckFor2xx {
                request: req,
                invite: Some(txn_key),
            }
        } else {
            Incoming::Absorbed {
                key: txn_key,
                actions,
            }
        }
    }

    /// An incoming response, matched to its client transaction (17.1.3).
    pub fn on_response(&mut self, resp: Response, now: Instant) -> ResponseOutcome {
        let Ok(key) = TransactionKey::for_response(&resp) else {
            return ResponseOutcome::Stray(resp);
        };
        let Some(&id) = self.ids.get(&key) else {
            return ResponseOutcome::Stray(resp);
        };
        let actions = match self.slots.get_mut(&id) {
            Some(Slot {
                txn: Txn::Client(c),
                ..
            }) => c.handle_response(resp, now),
            _ => return ResponseOutcome::Stray(resp),
        };
        self.settle(id);
        ResponseOutcome::Matched { key, actions }
    }

    /// Starts a client transaction for `req` (built by the TU, with a fresh
    /// branch). Returns its key and the first `Send`.
    pub fn start_client(
        &mut self,
        req: Request,
        reliability: Reliability,
        now: Instant,
    ) -> Result<(TransactionKey, Vec<Action>), TransactionError> {
        let key = TransactionKey::client_for_request(&req)?;
        if self.ids.contains_key(&key) {
            return Err(TransactionError::Duplicate(key));
        }
        if req.method == Method::Ack {
            return Err(TransactionError::Ack);
        }
        let (txn, actions) =
            ClientTransaction::with_key(key.clone(), req, reliability, self.timers, now)?;
        self.insert(key.clone(), Txn::Client(Box::new(txn)));
        Ok((key, actions))
    }

    /// The TU responds on server transaction `key` (see
    /// [`ServerTransaction::respond`]). A 2xx to an INVITE is retransmitted
    /// by the transaction until the ACK for it arrives through
    /// [`TransactionTable::on_request`]. Unknown keys give no actions.
    pub fn respond(&mut self, key: &TransactionKey, resp: Response, now: Instant) -> Vec<Action> {
        let Some(&id) = self.ids.get(key) else {
            return Vec::new();
        };
        let Some(slot) = self.slots.get_mut(&id) else {
            return Vec::new();
        };
        let Txn::Server(s) = &mut slot.txn else {
            return Vec::new();
        };
        let before = s.state();
        let ack_key = (s.is_invite() && (200..300).contains(&resp.status))
            .then(|| AckKey::of_2xx(s.request(), &resp))
            .flatten();
        let actions = s.respond(resp, now);
        if before != ServerState::Accepted && s.state() == ServerState::Accepted {
            if let Some(ak) = ack_key {
                slot.ack_key = Some(ak.clone());
                self.acks.insert(ak, id);
            }
        }
        self.settle(id);
        actions
    }

    /// The TU sent a CANCEL for the INVITE client transaction `key`: see
    /// [`ClientTransaction::cancel_sent`].
    pub fn cancel_sent(&mut self, key: &TransactionKey, now: Instant) {
        let Some(&id) = self.ids.get(key) else {
            return;
        };
        if let Some(Slot {
            txn: Txn::Client(c),
            ..
        }) = self.slots.get_mut(&id)
        {
            c.cancel_sent(now);
        }
        self.settle(id);
    }

    /// The transport reported an error for transaction `key`.
    pub fn on_transport_error(&mut self, key: &TransactionKey) -> Vec<Action> {
        let Some(&id) = self.ids.get(key) else {
            return Vec::new();
        };
        let actions = match self.slots.get_mut(&id) {
            Some(slot) => slot.txn.on_transport_error(),
            None => Vec::new(),
        };
        self.settle(id);
        actions
    }

    /// Fires every timer due at `now`, in deadline order.
    pub fn on_timers(&mut self, now: Instant) -> Vec<(TransactionKey, Action)> {
        let mut due_ids = Vec::new();
        while let Some(&(deadline, id)) = self.schedule.first() {
            if deadline > now {
                break;
            }
            self.schedule.pop_first();
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.scheduled = None;
            }
            due_ids.push(id);
        }
        let mut out = Vec::new();
        for id in due_ids {
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            let actions = slot.txn.on_timer(now);
            if !actions.is_empty() {
                let key = slot.txn.key();
                out.extend(actions.into_iter().map(|a| (key.clone(), a)));
            }
            self.settle(id);
        }
        out
    }

    /// The earliest deadline of all transactions.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.schedule.first().map(|&(t, _)| t)
    }

    /// Transactions alive (terminated ones are removed at once).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn client(&self, key: &TransactionKey) -> Option<&ClientTransaction> {
        match &self.slots.get(self.ids.get(key)?)?.txn {
            Txn::Client(c) => Some(&**c),
            Txn::Server(_) => None,
        }
    }

    pub fn server(&self, key: &TransactionKey) -> Option<&ServerTransaction> {
        match &self.slots.get(self.ids.get(key)?)?.txn {
            Txn::Server(s) => Some(&**s),
            Txn::Client(_) => None,
        }
    }

    fn insert(&mut self, key: TransactionKey, txn: Txn) {
        let id = self.next_id;
        self.next_id += 1;
        self.ids.insert(key, id);
        self.slots.insert(
            id,
            Slot {
                txn,
                scheduled: None,
                ack_key: None,
            },
        );
        self.settle(id);
    }

    /// Removes the transaction if it terminated, else brings its schedule
    /// entry up to date.
    fn settle(&mut self, id: u64) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        if slot.txn.is_terminated() {
            if let Some(t) = slot.scheduled {
                self.schedule.remove(&(t, id));
            }
            if let Some(ak) = &slot.ack_key {
                if self.acks.get(ak) == Some(&id) {
                    self.acks.remove(ak);
                }
            }
            self.ids.remove(slot.txn.key());
            self.slots.remove(&id);
            return;
        }
        let next = slot.txn.next_deadline();
        if next != slot.scheduled {
            if let Some(t) = slot.scheduled {
                self.schedule.remove(&(t, id));
            }
            if let Some(t) = next {
                self.schedule.insert((t, id));
            }
            slot.scheduled = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse_datagram;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    const T1: Duration = Duration::from_millis(500);
    const T4: Duration = Duration::from_secs(5);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn request_with(method: &str, via: &str, seq: u32, to_tag: Option<&str>) -> Request {
        let to = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        let text = format!(
            "{method} sip:1001@10.0.0.1 SIP/2.0\r\n\
             Via: {via}\r\n\
             Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKlower\r\n\
             Route: <sip:10.0.0.1;lr>\r\n\
             Max-Forwards: 70\r\n\
             From: \"Alice\" <sip:1002@10.0.0.1>;tag=from1\r\n\
             To: <sip:1001@10.0.0.1>{to}\r\n\
             Call-ID: call1@10.0.0.2\r\n\
             CSeq: {seq} {method}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        match parse_datagram(text.as_bytes()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("bad test request: {other:?}"),
        }
    }

    fn request(method: &str, branch: &str) -> Request {
        request_with(
            method,
            &format!("SIP/2.0/UDP 10.0.0.2:5060;branch={branch}"),
            1,
            None,
        )
    }

    fn invite(branch: &str) -> Request {
        request("INVITE", branch)
    }

    fn response(req: &Request, status: u16) -> Response {
        req.make_response(status, "", Some("totag"))
    }

    fn sent(actions: &[Action]) -> Vec<&SipMessage> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    fn sent_request(a: &Action) -> &Request {
        match a {
            Action::Send(SipMessage::Request(r)) => r,
            other => panic!("expected a sent request, got {other:?}"),
        }
    }

    fn sent_status(a: &Action) -> u16 {
        match a {
            Action::Send(SipMessage::Response(r)) => r.status,
            other => panic!("expected a sent response, got {other:?}"),
        }
    }

    /// Runs every deadline of `t` up to `until`, returning (time, actions).
    fn run_client(t: &mut ClientTransaction, until: Instant) -> Vec<(Instant, Vec<Action>)> {
        let mut out = Vec::new();
        while let Some(d) = t.next_deadline() {
            if d > until {
                break;
            }
            out.push((d, t.on_timer(d)));
        }
        out
    }

    fn run_server(t: &mut ServerTransaction, until: Instant) -> Vec<(Instant, Vec<Action>)> {
        let mut out = Vec::new();
        while let Some(d) = t.next_deadline() {
            if d > until {
                break;
            }
            out.push((d, t.on_timer(d)));
        }
        out
    }

    fn offsets(
        base: Instant,
        fired: &[(Instant, Vec<Action>)],
        want: fn(&Action) -> bool,
    ) -> Vec<Duration> {
        fired
            .iter()
            .filter(|(_, a)| a.iter().any(want))
            .map(|(t, _)| *t - base)
            .collect()
    }

    fn is_send(a: &Action) -> bool {
        matches!(a, Action::Send(_))
    }

    #[test]
    fn branch_helper_and_defaults() {
        assert_eq!(new_branch(0xab), "z9hG4bK00000000000000ab");
        let t = Timers::default();
        assert_eq!((t.t1, t.t2, t.t4), (T1, Duration::from_secs(4), T4));
        assert_eq!(t.transaction_timeout(), Duration::from_secs(32));
        // Degenerate values are clamped rather than looping or overflowing.
        let z = Timers {
            t1: Duration::ZERO,
            t2: Duration::ZERO,
            t4: Duration::MAX,
        };
        assert_eq!(z.transaction_timeout(), Duration::from_millis(64));
    }

    #[test]
    fn keys_follow_rfc3261_matching_rules() {
        let inv = invite("z9hG4bKaaa");
        let k = TransactionKey::for_request(&inv).unwrap();
        assert_eq!(k.role(), Role::Server);
        assert_eq!(k.method(), &Method::Invite);
        assert_eq!(k.branch(), Some("z9hg4bkaaa"));
        // ACK matches the INVITE; CANCEL does not.
        let ack = request_with(
            "ACK",
            "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKaaa",
            1,
            Some("x"),
        );
        assert_eq!(TransactionKey::for_request(&ack).unwrap(), k);
        let cancel = request("CANCEL", "z9hG4bKaaa");
        let ck = TransactionKey::for_request(&cancel).unwrap();
        assert_ne!(ck, k);
        assert_eq!(ck.with_method(Method::Invite), k);
        // Branch and host compare case-insensitively; sent-by matters.
        let upper = request_with(
            "INVITE",
            "SIP/2.0/UDP 10.0.0.2:5060;branch=Z9HG4BKAAA",
            1,
            None,
        );
        assert_eq!(TransactionKey::for_request(&upper).unwrap(), k);
        let other_port = request_with(
            "INVITE",
            "SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKaaa",
            1,
            None,
        );
        assert_ne!(TransactionKey::for_request(&other_port).unwrap(), k);
        // Client side: branch + CSeq method; a response matches its request.
        let ck = TransactionKey::client_for_request(&inv).unwrap();
        assert_eq!(ck.role(), Role::Client);
        assert_ne!(ck, k);
        assert_eq!(
            TransactionKey::for_response(&response(&inv, 180)).unwrap(),
            ck
        );
        let cancel_resp = response(&cancel, 200);
        assert_ne!(TransactionKey::for_response(&cancel_resp).unwrap(), ck);
        // No Via: unidentifiable.
        let mut bad = inv.clone();
        bad.headers.remove("Via");
        assert!(matches!(
            TransactionKey::for_request(&bad),
            Err(TransactionError::Unidentifiable(_))
        ));
        assert!(TransactionKey::client_for_request(&bad).is_err());
    }

    #[test]
    fn rfc2543_requests_match_without_magic_cookie() {
        let old = request("INVITE", "1234");
        let k = TransactionKey::for_request(&old).unwrap();
        assert_eq!(k.branch(), None);
        assert_eq!(TransactionKey::for_request(&old.clone()).unwrap(), k);
        let ack = request_with("ACK", "SIP/2.0/UDP 10.0.0.2:5060;branch=1234", 1, Some("t"));
        assert_eq!(TransactionKey::for_request(&ack).unwrap(), k);
        let next = request_with("INVITE", "SIP/2.0/UDP 10.0.0.2:5060;branch=1234", 2, None);
        assert_ne!(TransactionKey::for_request(&next).unwrap(), k);
        // No branch at all also falls back to RFC 2543 matching.
        let none = request_with("OPTIONS", "SIP/2.0/UDP 10.0.0.2:5060", 1, None);
        assert!(TransactionKey::for_request(&none).is_ok());
    }

    #[test]
    fn invite_client_udp_retransmits_then_times_out() {
        let base = Instant::now();
        let inv = invite("z9hG4bKc1");
        let (mut t, first) = ClientTransaction::new(
            inv.clone(),
            Reliability::Unreliable,
            Timers::default(),
            base,
        )
        .unwrap();
        assert_eq!(first, vec![Action::Send(SipMessage::Request(inv.clone()))]);
        assert_eq!(t.state(), ClientState::Calling);
        let fired = run_client(&mut t, base + Duration::from_secs(40));
        // Timer A: intervals 0.5, 1, 2, 4, 8, 16 s.
        assert_eq!(
            offsets(base, &fired, is_send),
            [500, 1500, 3500, 7500, 15500, 31500].map(ms)
        );
        for (_, a) in &fired {
            for m in sent(a) {
                assert_eq!(m, &SipMessage::Request(inv.clone()));
            }
        }
        // Timer B at 64*T1.
        let (when, last) = fired.last().unwrap();
        assert_eq!(*when - base, Duration::from_secs(32));
        assert_eq!(last, &vec![Action::Timeout, Action::Terminated]);
        assert_eq!(t.state(), ClientState::Terminated);
        assert_eq!(t.next_deadline(), None);
        assert!(t.on_timer(base + Duration::from_secs(100)).is_empty());
    }

    #[test]
    fn invite_client_provisional_stops_retransmissions() {
        let base = Instant::now();
        let inv = invite("z9hG4bKc2");
        let (mut t, _) = ClientTransaction::new(
            inv.clone(),
            Reliability::Unreliable,
            Timers::default(),
            base,
        )
        .unwrap();
        let fired = run_client(&mut t, base + ms(600));
        assert_eq!(offsets(base, &fired, is_send), vec![ms(500)]);
        let trying = response(&inv, 100);
        assert_eq!(
            t.on_response(trying.clone(), base + ms(700)),
            vec![Action::DeliverResponse(trying)]
        );
        assert_eq!(t.state(), ClientState::Proceeding);
        // No Timer A, no Timer B in Proceeding.
        assert_eq!(t.next_deadline(), None);
        let ringing = response(&inv, 180);
        assert_eq!(
            t.on_response(ringing.clone(), base + ms(900)),
            vec![Action::DeliverResponse(ringing)]
        );
        // A response of another transaction is ignored.
        let other = response(&invite("z9hG4bKzzz"), 486);
        assert!(t.on_response(other, base + ms(950)).is_empty());
        assert_eq!(t.state(), ClientState::Proceeding);
    }

    #[test]
    fn invite_client_non_2xx_is_acked_and_absorbed() {
        let base = Instant::now();
        let inv = invite("z9hG4bKc3");
        let (mut t, _) = ClientTransaction::new(
            inv.clone(),
            Reliability::Unreliable,
            Timers::default(),
            base,
        )
        .unwrap();
        t.on_response(response(&inv, 180), base + ms(100));
        let busy = response(&inv, 486);
        let a = t.on_response(busy.clone(), base + ms(2000));
        assert_eq!(a.len(), 2);
        assert_eq!(a[0], Action::DeliverResponse(busy.clone()));
        let ack = sent_request(&a[1]);
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri, inv.uri);
        assert_eq!(ack.headers.count("Via"), 1);
        assert_eq!(ack.top_via().unwrap(), inv.top_via().unwrap());
        assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bKc3"));
        assert_eq!(ack.to().unwrap().tag(), Some("totag"));
        assert_eq!(ack.from().unwrap(), inv.from().unwrap());
        assert_eq!(ack.call_id(), inv.call_id());
        assert_eq!(
            ack.cseq().unwrap(),
            crate::sip::message::CSeq::new(1, Method::Ack)
        );
        assert_eq!(ack.headers.get("Route"), Some("<sip:10.0.0.1;lr>"));
        assert!(ack.validate().is_ok());
        assert_eq!(t.state(), ClientState::Completed);
        // A retransmitted 486 re-sends the ACK and is not delivered again.
        let again = t.on_response(busy.clone(), base + ms(2500));
        assert_eq!(again, vec![Action::Send(SipMessage::Request(ack.clone()))]);
        // Timer D: 32 s on UDP.
        assert_eq!(t.next_deadline(), Some(base + ms(34_000)));
        assert!(t.on_timer(base + ms(33_999)).is_empty());
        assert_eq!(t.on_timer(base + ms(34_000)), vec![Action::Terminated]);
        assert!(t.on_response(busy, base + ms(35_000)).is_empty());
    }

    #[test]
    fn invite_client_reliable_never_retransmits() {
        let base = Instant::now();
        let inv = invite("z9hG4bKc4");
        let (mut t, first) =
            ClientTransaction::new(inv.clone(), Reliability::Reliable, Timers::default(), base)
                .unwrap();
        assert_eq!(first.len(), 1);
        // Only Timer B.
        assert_eq!(t.next_deadline(), Some(base + Duration::from_secs(32)));
        let busy = response(&inv, 486);
        let a = t.on_response(busy.clone(), base + ms(100));
        // Timer D is 0: ACK, and terminated at once.
        assert_eq!(a.len(), 3);
        assert_eq!(a[0], Action::DeliverResponse(busy));
        assert_eq!(sent_request(&a[1]).method, Method::Ack);
        assert_eq!(a[2], Action::Terminated);
        assert_eq!(t.state(), ClientState::Terminated);

        let (mut t, _) = ClientTransaction::new(
            invite("z9hG4bKc5"),
            Reliability::Reliable,
            Timers::default(),
            base,
        )
        .unwrap();
        let fired = run_client(&mut t, base + Duration::from_secs(60));
        assert_eq!(
            fired,
            vec![(
                base + Duration::from_secs(32),
                vec![Action::Timeout, Action::Terminated]
            )]
        );
    }

    #[test]
    fn invite_client_2xx_terminates() {
        let base = Instant::now();
        let inv = invite("z9hG4bKc6");
        let (mut t, _) = ClientTransaction::new(
            inv.clone(),
            Reliability::Unreliable,
            Timers::default(),
            base,
        )
        .unwrap();
        let ok = response(&inv, 200);
        assert_eq!(
            t.on_response(ok.clone(), base + ms(300)),
            vec![Action::DeliverResponse(ok.clone()), Action::Terminated]
        );
        assert_eq!(t.next_deadline(), None);
        assert!(t.on_response(ok, base + ms(800)).is_empty());
    }

    #[test]
    fn invite_client_cancel_and_guard() {
        let base = Instant::now();
        let inv = invite("z9hG4bKc7");
        let (mut t, _) = ClientTransaction::new(
            inv.clone(),
            Reliability::Unreliable,
            Timers::default(),
            base,
        )
        .unwrap();
        t.on_response(response(&inv, 180), base + ms(100));
        let cancel = t.make_cancel().unwrap();
        assert_eq!(cancel.method, Method::Cancel);
        assert_eq!(cancel.uri, inv.uri);
        assert_eq!(cancel.headers.count("Via"), 1);
        assert_eq!(cancel.top_via().unwrap(), inv.top_via().unwrap());
        assert_eq!(cancel.to().unwrap(), inv.to().unwrap());
        assert_eq!(
            cancel.cseq().unwrap(),
            crate::sip::message::CSeq::new(1, Method::Cancel)
        );
        assert!(cancel.validate().is_ok());
        // CANCEL is its own client transaction with the same branch.
        let ck = TransactionKey::client_for_request(&cancel).unwrap();
        assert_ne!(&ck, t.key());
        assert_eq!(ck.branch(), t.key().branch());

        assert_eq!(t.next_deadline(), None);
        t.cancel_sent(base + ms(1000));
        assert_eq!(t.next_deadline(), Some(base + ms(33_000)));
        assert_eq!(
            t.on_timer(base + ms(33_000)),
            vec![Action::Timeout, Action::Terminated]
        );
        let (nit, _) = ClientTransaction::new(
            request("OPTIONS", "z9hG4bKo"),
            Reliability::Unreliable,
            Timers::default(),
            base,
        )
        .unwrap();
        assert!(nit.make_cancel().is_none());
    }

    #[test]
    fn non_invite_client_timers_e_f() {
        let base = Instant::now();
        let req = request("REGISTER", "z9hG4bKn1");
        let (mut t, first) = ClientTransaction::new(
            req.clone(),
            Reliability::Unreliable,
            Timers::default(),
            base,
        )
        .unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(t.state(), ClientState::Trying);
        let fired = run_client(&mut t, base + Duration::from_secs(40));
        // Timer E: 0.5, 1, 2, 4, then T2 = 4 s.
        assert_eq!(
            offsets(base, &fired, is_send),
            [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500].map(ms)
        );
        let (when, last) = fired.last().unwrap();
        assert_eq!(*when - base, Duration::from_secs(32));
        assert_eq!(last, &vec![Action::Timeout, Action::Terminated]);
    }

    #[test]
    fn non_invite_client_proceeding_and_timer_k() {
        let base = Instant::now();
        let req = request("BYE", "z9hG4bKn2");
        let (mut t, _) = ClientTransaction::new(
            req.clone(),
            Reliability::Unreliable,
            Timers::default(),
            base,
        )
        .unwrap();
        run_client(&mut t, base + ms(500));
        let p = response(&req, 100);
        assert_eq!(
            t.on_response(p.clone(), base + ms(600)),
            vec![Action::DeliverResponse(p)]
        );
        assert_eq!(t.state(), ClientState::Proceeding);
        // Next E was scheduled at 0.5 + 1 s; once it fires in Proceeding the
        // interval becomes T2.
        let fired = run_client(&mut t, base + ms(6000));
        assert_eq!(offsets(base, &fired, is_send), vec![ms(1500), ms(5500)]);
        let ok = response(&req, 200);
        assert_eq!(
            t.on_response(ok.clone(), base + ms(6000)),
            vec![Action::DeliverResponse(ok.clone())]
        );
        assert_eq!(t.state(), ClientState::Completed);
        // Retransmissions absorbed; Timer K = T4.
        assert!(t.on_response(ok, base + ms(6100)).is_empty());
        assert_eq!(t.next_deadline(), Some(base + ms(11_000)));
        assert_eq!(t.on_timer(base + ms(11_000)), vec![Action::Terminated]);
    }

    #[test]
    fn non_invite_client_reliable() {
        let base = Instant::now();
        let req = request("OPTIONS", "z9hG4bKn3");
        let (mut t, _) =
            ClientTransaction::new(req.clone(), Reliability::Reliable, Timers::default(), base)
                .unwrap();
        assert_eq!(t.next_deadline(), Some(base + Duration::from_secs(32)));
        let ok = response(&req, 200);
        assert_eq!(
            t.on_response(ok.clone(), base + ms(50)),
            vec![Action::DeliverResponse(ok), Action::Terminated]
        );
    }

    #[test]
    fn client_transport_error_and_ack_refused() {
        let base = Instant::now();
        let (mut t, _) = ClientTransaction::new(
            invite("z9hG4bKe1"),
            Reliability::Reliable,
            Timers::default(),
            base,
        )
        .unwrap();
        assert_eq!(
            t.on_transport_error(),
            vec![Action::Timeout, Action::Terminated]
        );
        assert!(t.on_transport_error().is_empty());
        let ack = request_with("ACK", "SIP/2.0/UDP h;branch=z9hG4bKx", 1, Some("t"));
        assert_eq!(
            ClientTransaction::new(ack.clone(), Reliability::Reliable, Timers::default(), base)
                .err(),
            Some(TransactionError::Ack)
        );
        assert_eq!(
            ServerTransaction::new(ack, Reliability::Reliable, Timers::default(), base).err(),
            Some(TransactionError::Ack)
        );
    }

    #[test]
    fn invite_server_sends_100_after_200ms() {
        let base = Instant::now();
        let inv = invite("z9hG4bKs1");
        let (mut t, a) = ServerTransaction::new(
            inv.clone(),
            Reliability::Unreliable,
            Timers::default(),
            base,
        )
        .unwrap();
        assert!(a.is_empty());
        assert_eq!(t.state(), ServerState::Proceeding);
        assert_eq!(t.next_deadline(), Some(base + ms(200)));
        assert!(t.on_timer(base + ms(199)).is_empty());
        let a = t.on_timer(base + ms(200));
        assert_eq!(a.len(), 1);
        assert_eq!(sent_status(&a[0]), 100);
        assert_eq!(t.next_deadline(), None);
        // A retransmitted INVITE gets the last provisional again.
        let a = t.on_request_retransmission(&inv, base + ms(500));
        assert_eq!(sent_status(&a[0]), 100);
        let ringing = response(&inv, 180);
        assert_eq!(
            t.respond(ringing.clone(), base + ms(600)),
            vec![Action::Send(SipMessage::Response(ringing.clone()))]
        );
        assert_eq!(
            t.on_request_retransmission(&inv, base + ms(1500)),
            vec![Action::Send(SipMessage::Response(ringing))]
        );

        // The TU answering within 200 ms suppresses the automatic 100.
        let (mut t, _) =
            ServerTransaction::new(inv.clone(), Reliability::Reliable, Timers::default(), base)
                .unwrap();
        t.respond(response(&inv, 180), base + ms(50));
        assert_eq!(t.next_deadline(), None);
        assert!(t.on_timer(base + ms(200)).is_empty());
    }

    #[test]
    fn invite_server_non_2xx_timer_g_ack_and_timer_i() {
        let base = Instant::now();
        let inv = invite("z9hG4bKs2");
        let (mut t, _) = ServerTransaction::new(
            inv.clone(),
            Reliability::Unreliable,
            Timers::default(),
            base,
        )
        .unwrap();
        let busy = response(&inv, 486);
        let start = base + ms(100);
        assert_eq!(
            t.respond(busy.clone(), start),
            vec![Action::Send(SipMessage::Response(busy.clone()))]
        );
        assert_eq!(t.state(), ServerState::Completed);
        let fired = run_server(&mut t, start + ms(16_000));
        // Timer G: 0.5, 1, 2, 4, 4 ...
        assert_eq!(
            offsets(start, &fired, is_send),
            [500, 1500, 3500, 7500, 11500, 15500].map(ms)
        );
        // A retransmitted INVITE re-sends the final.
        assert_eq!(
            t.on_request_retransmission(&inv, start + ms(16_000)),
            vec![Action::Send(SipMessage::Response(busy.clone()))]
        );
        let ack = request_with(
            "ACK",
            "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKs2",
            1,
            Some("totag"),
        );
        assert!(t.on_ack(&ack, start + ms(16_100)).is_empty());
        assert_eq!(t.state(), ServerState::Confirmed);
        // ACK and INVITE retransmissions are absorbed.
        assert!(t
            .on_request_retransmission(&ack, start + ms(16_200))
            .is_empty());
        assert!(t
            .on_request_retransmission(&inv, start + ms(16_200))
            .is_empty());
        // Timer I = T4.
        assert_eq!(t.next_deadline(), Some(start + ms(21_100)));
        assert_eq!(t.on_timer(start + ms(21_100)), vec![Action::Terminated]);
    }

    #[test]
    fn invite_server_timer_h_without_ack() {
        let base = Instant::now();
        let inv = invite("z9hG4bKs3");
        let (mut t, _) = ServerTransaction::new(
            inv.clone(),
            Reliability::Unreliable,
            Timers::default(),
            base,
        )
        .unwrap();
        t.respond(response(&inv, 603), base);
        let fired = run_server(&mut t, base + Duration::from_secs(60));
        let (when, last) = fired.last().unwrap();
        assert_eq!(*when - base, Duration::from_secs(32));
        assert_eq!(last, &vec![Action::Timeout, Action::Terminated]);
        assert_eq!(t.state(), ServerState::Terminated);
    }

    #[test]
    fn invite_server_reliable() {
        let base = Instant::now();
        let inv = invite("z9hG4bKs4");
        let (mut t, _) =
            ServerTransaction::new(inv.clone(), Reliability::Reliable, Timers::default(), base)
                .unwrap();
        t.respond(response(&inv, 486), base + ms(10));
        // No Timer G; only H.
        assert_eq!(t.next_deadline(), Some(base + ms(32_010)));
        let ack = request_with(
            "ACK",
            "SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bKs4",
            1,
            Some("totag"),
        );
        // Different transport in the ACK's Via does not matter; sent-by does.
        assert_eq!(t.on_ack(&ack, base + ms(20)), vec![Action::Terminated]);
    }

    #[test]
    fn invite_server_2xx_accepted_retransmits_until_ack() {
        let base = Instant::now();
        let inv = invite("z9hG4bKs5");
        let (mut t, _) = ServerTransaction::new(
            inv.clone(),
            Reliability::Unreliable,
            Timers::default(),
            base,
        )
        .unwrap();
        let ok = response(&inv, 200);
        assert_eq!(
            t.respond(ok.clone(), base),
            vec![Action::Send(SipMessage::Response(ok.clone()))]
        );
        assert_eq!(t.state(), ServerState::Accepted);
        assert!(t.awaiting_ack_for_2xx());
        let fired = run_server(&mut t, base + ms(8000));
        assert_eq!(
            offsets(base, &fired, is_send),
            [500, 1500, 3500, 7500].map(ms)
        );
        // INVITE retransmissions are absorbed silently (RFC 6026).
        assert!(t
            .on_request_retransmission(&inv, base + ms(8000))
            .is_empty());
        // The ACK for the 2xx (new branch) stops the retransmissions.
        let ack = request_with(
            "ACK",
            "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKack",
            1,
            Some("totag"),
        );
        assert!(t.on_ack(&ack, base + ms(8100)).is_empty());
        assert!(!t.awaiting_ack_for_2xx());
        // Timer L ends the transaction at 64*T1.
        let fired = run_server(&mut t, base + Duration::from_secs(60));
        assert_eq!(
            fired,
            vec![(base + Duration::from_secs(32), vec![Action::Terminated])]
        );

        // Without an ACK: Timeout (send BYE), then Terminated.
        let (mut t, _) =
            ServerTransaction::new(inv.clone(), Reliability::Reliable, Timers::default(), base)
                .unwrap();
        t.respond(ok, base);
        let fired = run_server(&mut t, base + Duration::from_secs(60));
        // RFC 3261 13.3.1.4: the 2xx is retransmitted whatever the transport.
        assert_eq!(
            offsets(base, &fired, is_send),
            [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500].map(ms)
        );
        let (when, last) = fired.last().unwrap();
        assert_eq!(*when - base, Duration::from_secs(32));
        assert_eq!(last, &vec![Action::Timeout, Action::Terminated]);
    }

    #[test]
    fn invite_ok_retransmitter_standalone() {
        let base = Instant::now();
        let ok = response(&invite("z9hG4bKr"), 200);
        let (mut r, a) = InviteOkRetransmitter::new(ok.clone(), Timers::default(), base);
        assert_eq!(a, vec![Action::Send(SipMessage::Response(ok.clone()))]);
        assert_eq!(r.next_deadline(), Some(base + ms(500)));
        assert_eq!(
            r.on_timer(base + ms(500)),
            vec![Action::Send(SipMessage::Response(ok))]
        );
        assert_eq!(r.next_deadline(), Some(base + ms(1500)));
        r.on_ack();
        assert!(!r.is_active());
        assert_eq!(r.next_deadline(), None);
        assert!(r.on_timer(base + Duration::from_secs(99)).is_empty());
    }

    #[test]
    fn non_invite_server_trying_and_timer_j() {
        let base = Instant::now();
        let req = request("REGISTER", "z9hG4bKs6");
        let (mut t, a) = ServerTransaction::new(
            req.clone(),
            Reliability::Unreliable,
            Timers::default(),
            base,
        )
        .unwrap();
        assert!(a.is_empty());
        assert_eq!(t.state(), ServerState::Trying);
        assert_eq!(t.next_deadline(), None);
        // Trying: retransmissions are absorbed without a response.
        assert!(t.on_request_retransmission(&req, base + ms(500)).is_empty());
        let trying = response(&req, 100);
        t.respond(trying.clone(), base + ms(600));
        assert_eq!(t.state(), ServerState::Proceeding);
        assert_eq!(
            t.on_request_retransmission(&req, base + ms(700)),
            vec![Action::Send(SipMessage::Response(trying))]
        );
        let ok = response(&req, 200);
        t.respond(ok.clone(), base + ms(1000));
        assert_eq!(t.state(), ServerState::Completed);
        assert_eq!(
            t.on_request_retransmission(&req, base + ms(1500)),
            vec![Action::Send(SipMessage::Response(ok.clone()))]
        );
        // A second final response is dropped.
        assert!(t.respond(response(&req, 500), base + ms(1600)).is_empty());
        // Timer J = 64*T1, no retransmission of its own.
        let fired = run_server(&mut t, base + Duration::from_secs(60));
        assert_eq!(fired, vec![(base + ms(33_000), vec![Action::Terminated])]);

        let (mut t, _) =
            ServerTransaction::new(req.clone(), Reliability::Reliable, Timers::default(), base)
                .unwrap();
        assert_eq!(
            t.respond(ok.clone(), base),
            vec![Action::Send(SipMessage::Response(ok)), Action::Terminated]
        );
    }

    #[test]
    fn server_transport_error() {
        let base = Instant::now();
        let inv = invite("z9hG4bKs7");
        let (mut t, _) = ServerTransaction::new(
            inv.clone(),
            Reliability::Unreliable,
            Timers::default(),
            base,
        )
        .unwrap();
        t.respond(response(&inv, 486), base);
        assert_eq!(
            t.on_transport_error(),
            vec![Action::Timeout, Action::Terminated]
        );
        assert_eq!(t.next_deadline(), None);
    }

    fn ack_for(inv_branch_via: &str, to_tag: &str) -> Request {
        request_with("ACK", inv_branch_via, 1, Some(to_tag))
    }

    #[test]
    fn table_matches_retransmissions_ack_and_cancel() {
        let base = Instant::now();
        let mut tab = TransactionTable::new(Timers::default());
        let inv = invite("z9hG4bKt1");
        let Incoming::New { key, request: got } =
            tab.on_request(inv.clone(), Reliability::Unreliable, base)
        else {
            panic!("expected a new transaction");
        };
        assert_eq!(got, inv);
        assert_eq!(tab.len(), 1);
        assert_eq!(tab.next_deadline(), Some(base + ms(200)));
        // 100 Trying comes from the table's timers.
        let fired = tab.on_timers(base + ms(200));
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].0, key);
        assert_eq!(sent_status(&fired[0].1), 100);
        // Same branch, same sent-by: retransmission.
        let Incoming::Absorbed { key: k2, actions } =
            tab.on_request(inv.clone(), Reliability::Unreliable, base + ms(500))
        else {
            panic!("expected absorption");
        };
        assert_eq!(k2, key);
        assert_eq!(sent_status(&actions[0]), 100);
        // Same branch from another sent-by: a different transaction.
        let other = request_with(
            "INVITE",
            "SIP/2.0/UDP 10.0.0.3:5060;branch=z9hG4bKt1",
            1,
            None,
        );
        let Incoming::New { key: other_key, .. } =
            tab.on_request(other.clone(), Reliability::Unreliable, base + ms(510))
        else {
            panic!("expected a new transaction");
        };
        assert_ne!(other_key, key);
        assert_eq!(tab.len(), 2);

        // CANCEL: its own transaction, naming the INVITE.
        let cancel = request("CANCEL", "z9hG4bKt1");
        let Incoming::Cancel {
            key: ck,
            key_of_cancelled_invite,
            request: got,
        } = tab.on_request(cancel.clone(), Reliability::Unreliable, base + ms(600))
        else {
            panic!("expected a CANCEL");
        };
        assert_eq!(got, cancel);
        assert_ne!(ck, key);
        assert_eq!(key_of_cancelled_invite.as_ref(), Some(&key));
        assert_eq!(tab.len(), 3);
        // The TU answers the CANCEL, then the INVITE with 487.
        let ok = response(&cancel, 200);
        assert_eq!(
            tab.respond(&ck, ok.clone(), base + ms(610)),
            vec![Action::Send(SipMessage::Response(ok.clone()))]
        );
        assert_eq!(
            tab.on_request(cancel.clone(), Reliability::Unreliable, base + ms(700)),
            Incoming::Absorbed {
                key: ck.clone(),
                actions: vec![Action::Send(SipMessage::Response(ok))]
            }
        );
        let terminated = response(&inv, 487);
        tab.respond(&key, terminated.clone(), base + ms(620));
        // ACK for the 487: absorbed by the INVITE transaction.
        let ack = ack_for("SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKt1", "totag");
        assert_eq!(
            tab.on_request(ack.clone(), Reliability::Unreliable, base + ms(800)),
            Incoming::Absorbed {
                key: key.clone(),
                actions: vec![]
            }
        );
        assert_eq!(tab.server(&key).unwrap().state(), ServerState::Confirmed);
        // A CANCEL for an unknown INVITE names nothing.
        let lone = request("CANCEL", "z9hG4bKnone");
        let Incoming::Cancel {
            key: lone_key,
            key_of_cancelled_invite: None,
            ..
        } = tab.on_request(lone.clone(), Reliability::Unreliable, base + ms(900))
        else {
            panic!("expected a CANCEL naming nothing");
        };
        // The TU answers what is still open (server transactions wait for it).
        tab.respond(&lone_key, response(&lone, 481), base + ms(900));
        tab.respond(&other_key, response(&other, 486), base + ms(900));
        // A request without Via is invalid.
        let mut bad = invite("z9hG4bKbad");
        bad.headers.remove("Via");
        assert!(matches!(
            tab.on_request(bad, Reliability::Unreliable, base),
            Incoming::Invalid { .. }
        ));
        // Everything ends by itself.
        drain(&mut tab, base + ms(900));
        assert!(tab.is_empty());
        assert_eq!(tab.next_deadline(), None);
    }

    fn drain(tab: &mut TransactionTable, from: Instant) -> Vec<(Instant, TransactionKey, Action)> {
        let mut out = Vec::new();
        let mut guard = 0;
        while let Some(d) = tab.next_deadline() {
            let now = d.max(from);
            out.extend(tab.on_timers(now).into_iter().map(|(k, a)| (now, k, a)));
            guard += 1;
            assert!(guard < 100_000, "timers do not converge");
        }
        out
    }

    #[test]
    fn table_ack_for_2xx_stops_retransmissions() {
        let base = Instant::now();
        let mut tab = TransactionTable::new(Timers::default());
        let inv = invite("z9hG4bKt2");
        let Incoming::New { key, .. } = tab.on_request(inv.clone(), Reliability::Unreliable, base)
        else {
            panic!("expected a new transaction");
        };
        let ok = response(&inv, 200);
        assert_eq!(tab.respond(&key, ok.clone(), base + ms(100)).len(), 1);
        let fired = tab.on_timers(base + ms(600));
        assert_eq!(sent_status(&fired[0].1), 200);
        // INVITE retransmission: absorbed, nothing sent.
        assert_eq!(
            tab.on_request(inv.clone(), Reliability::Unreliable, base + ms(700)),
            Incoming::Absorbed {
                key: key.clone(),
                actions: vec![]
            }
        );
        // ACK for the 2xx, new branch: for the dialog layer, naming the INVITE.
        let ack = ack_for("SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKa2", "totag");
        assert_eq!(
            tab.on_request(ack.clone(), Reliability::Unreliable, base + ms(800)),
            Incoming::AckFor2xx {
                request: ack,
                invite: Some(key.clone())
            }
        );
        assert!(!tab.server(&key).unwrap().awaiting_ack_for_2xx());
        let rest = drain(&mut tab, base + ms(800));
        assert_eq!(rest, vec![(base + ms(32_100), key, Action::Terminated)]);
        // An ACK matching nothing.
        let stray = ack_for("SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKa3", "other");
        assert!(matches!(
            tab.on_request(stray, Reliability::Unreliable, base + ms(40_000)),
            Incoming::AckFor2xx { invite: None, .. }
        ));
        assert!(tab.is_empty());
    }

    #[test]
    fn table_client_side_and_stray_2xx() {
        let base = Instant::now();
        let mut tab = TransactionTable::new(Timers::default());
        let inv = invite(&new_branch(7));
        let (key, first) = tab
            .start_client(inv.clone(), Reliability::Unreliable, base)
            .unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(tab.client(&key).unwrap().state(), ClientState::Calling);
        assert!(tab.server(&key).is_none());
        assert!(matches!(
            tab.start_client(inv.clone(), Reliability::Unreliable, base),
            Err(TransactionError::Duplicate(_))
        ));
        let fired = tab.on_timers(base + ms(500));
        assert_eq!(sent(&[fired[0].1.clone()]).len(), 1);
        let ringing = response(&inv, 180);
        assert_eq!(
            tab.on_response(ringing.clone(), base + ms(600)),
            ResponseOutcome::Matched {
                key: key.clone(),
                actions: vec![Action::DeliverResponse(ringing)]
            }
        );
        assert_eq!(tab.next_deadline(), None);
        let ok = response(&inv, 200);
        assert_eq!(
            tab.on_response(ok.clone(), base + ms(700)),
            ResponseOutcome::Matched {
                key,
                actions: vec![Action::DeliverResponse(ok.clone()), Action::Terminated]
            }
        );
        assert!(tab.is_empty());
        // The 2xx retransmission finds no transaction: the dialog re-ACKs.
        assert_eq!(
            tab.on_response(ok.clone(), base + ms(1200)),
            ResponseOutcome::Stray(ok)
        );
        // A request we sent to ourselves: client and server keys differ.
        let opt = request("OPTIONS", &new_branch(8));
        let (ck, _) = tab
            .start_client(opt.clone(), Reliability::Unreliable, base)
            .unwrap();
        let Incoming::New { key: sk, .. } =
            tab.on_request(opt.clone(), Reliability::Unreliable, base)
        else {
            panic!("expected a new server transaction");
        };
        assert_ne!(ck, sk);
        let resp = response(&opt, 200);
        let sends = tab.respond(&sk, resp.clone(), base);
        assert_eq!(sends.len(), 1);
        assert!(matches!(
            tab.on_response(resp, base),
            ResponseOutcome::Matched { .. }
        ));
        tab.cancel_sent(&ck, base);
        // The server side already answered: its transport failing is quiet.
        assert_eq!(tab.on_transport_error(&sk), vec![Action::Terminated]);
        assert!(tab.server(&sk).is_none());
        assert_eq!(tab.client(&ck).unwrap().state(), ClientState::Completed);
        let rest = drain(&mut tab, base);
        assert_eq!(rest, vec![(base + T4, ck, Action::Terminated)]);
        assert!(tab.is_empty());
    }

    #[test]
    fn table_scales_and_fires_in_deadline_order() {
        let base = Instant::now();
        let mut tab = TransactionTable::new(Timers::default());
        let n = 3000u64;
        for i in 0..n {
            let now = base + ms(i % 1000);
            let req = invite(&new_branch(i));
            let Incoming::New { key, .. } =
                tab.on_request(req.clone(), Reliability::Unreliable, now)
            else {
                panic!("expected a new transaction");
            };
            tab.respond(&key, response(&req, 486), now);
        }
        assert_eq!(tab.len(), n as usize);
        assert_eq!(tab.next_deadline(), Some(base + ms(500)));
        let mut last = base;
        let mut terminated = 0;
        let mut guard = 0;
        while let Some(d) = tab.next_deadline() {
            assert!(d >= last, "deadlines go backwards");
            last = d;
            for (_, a) in tab.on_timers(d) {
                if a == Action::Terminated {
                    terminated += 1;
                }
            }
            guard += 1;
            assert!(guard < 1_000_000);
        }
        assert_eq!(terminated, n);
        assert!(tab.is_empty());
        assert!(last <= base + ms(999) + Duration::from_secs(32));
    }

    /// Bookkeeping of the actions one transaction produced.
    #[derive(Default, Debug)]
    struct Log {
        terminated: usize,
        timeouts: usize,
        finals: usize,
        after_end: bool,
        terminated_at: Option<Instant>,
    }

    impl Log {
        fn record(&mut self, actions: &[Action], now: Instant) {
            for a in actions {
                if self.terminated > 0 {
                    self.after_end = true;
                }
                match a {
                    Action::Terminated => {
                        self.terminated += 1;
                        self.terminated_at = Some(now);
                    }
                    Action::Timeout => self.timeouts += 1,
                    Action::DeliverResponse(r) if r.status >= 200 => self.finals += 1,
                    _ => {}
                }
            }
        }

        fn check(&self, last_event: Instant, what: &str) {
            let bound = last_event + T1 * 64 + T4;
            assert_eq!(self.terminated, 1, "{what}: {self:?}");
            assert!(!self.after_end, "{what}: actions after Terminated");
            assert!(self.timeouts <= 1, "{what}: {self:?}");
            assert!(self.finals <= 1, "{what}: final delivered twice");
            let at = self.terminated_at.unwrap_or(bound);
            assert!(
                at <= bound,
                "{what}: ended {:?} after the last event",
                at - last_event
            );
        }
    }

    const STATUSES: [u16; 12] = [100, 180, 183, 200, 202, 301, 404, 408, 486, 487, 503, 603];

    fn random_reliability(rng: &mut StdRng) -> Reliability {
        if rng.gen() {
            Reliability::Reliable
        } else {
            Reliability::Unreliable
        }
    }

    #[test]
    fn property_client_transactions_always_terminate() {
        for seed in 0..1500u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let base = Instant::now();
            let reliability = random_reliability(&mut rng);
            let method = ["INVITE", "INVITE", "OPTIONS", "BYE", "REGISTER"][rng.gen_range(0..5)];
            let req = request(method, &new_branch(seed));
            let (mut t, first) =
                ClientTransaction::new(req.clone(), reliability, Timers::default(), base).unwrap();
            let mut log = Log::default();
            log.record(&first, base);
            let mut now = base;
            let mut last_event = base;
            let what = format!("seed {seed} {method} {reliability:?}");
            for _ in 0..rng.gen_range(0..14) {
                now += ms(rng.gen_range(0..6000));
                while let Some(d) = t.next_deadline().filter(|&d| d <= now) {
                    let a = t.on_timer(d);
                    log.record(&a, d);
                }
                if t.state() != ClientState::Terminated {
                    last_event = now;
                }
                match rng.gen_range(0..12) {
                    0..=6 => {
                        let status = STATUSES[rng.gen_range(0..STATUSES.len())];
                        let a = t.on_response(response(&req, status), now);
                        log.record(&a, now);
                    }
                    7 => assert!(t.on_timer(now).is_empty(), "{what}: early timer acted"),
                    8 => t.cancel_sent(now),
                    9 => {
                        let a = t.on_transport_error();
                        log.record(&a, now);
                    }
                    _ => {
                        let other = response(&invite("z9hG4bKother"), 200);
                        assert!(t.on_response(other, now).is_empty());
                    }
                }
            }
            if t.state() == ClientState::Proceeding && t.is_invite() {
                // The TU's duty: CANCEL a call that rings for ever.
                t.cancel_sent(now);
                last_event = now;
            }
            let mut guard = 0;
            while let Some(d) = t.next_deadline() {
                now = now.max(d);
                let a = t.on_timer(now);
                log.record(&a, now);
                guard += 1;
                assert!(guard < 1000, "{what}: timers do not converge");
            }
            assert_eq!(t.state(), ClientState::Terminated, "{what}");
            log.check(last_event, &what);
        }
    }

    #[test]
    fn property_server_transactions_always_terminate() {
        for seed in 0..1500u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let base = Instant::now();
            let reliability = random_reliability(&mut rng);
            let method = ["INVITE", "INVITE", "OPTIONS", "BYE", "REGISTER"][rng.gen_range(0..5)];
            let branch = new_branch(seed);
            let req = request(method, &branch);
            let via = format!("SIP/2.0/UDP 10.0.0.2:5060;branch={branch}");
            let (mut t, first) =
                ServerTransaction::new(req.clone(), reliability, Timers::default(), base).unwrap();
            let mut log = Log::default();
            log.record(&first, base);
            let mut now = base;
            let mut last_event = base;
            let what = format!("seed {seed} {method} {reliability:?}");
            for _ in 0..rng.gen_range(0..14) {
                now += ms(rng.gen_range(0..6000));
                while let Some(d) = t.next_deadline().filter(|&d| d <= now) {
                    let a = t.on_timer(d);
                    log.record(&a, d);
                }
                if t.state() != ServerState::Terminated {
                    last_event = now;
                }
                let a = match rng.gen_range(0..12) {
                    0..=4 => {
                        let status = STATUSES[rng.gen_range(0..STATUSES.len())];
                        t.respond(response(&req, status), now)
                    }
                    5 | 6 => t.on_request_retransmission(&req, now),
                    7 => t.on_ack(&ack_for(&via, "totag"), now),
                    8 => t.on_ack(
                        &ack_for("SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKack2xx", "totag"),
                        now,
                    ),
                    9 => t.on_transport_error(),
                    10 => t.on_timer(now),
                    _ => t.on_request_retransmission(&invite("z9hG4bKother"), now),
                };
                log.record(&a, now);
            }
            if matches!(t.state(), ServerState::Trying | ServerState::Proceeding) {
                // The TU's duty: answer every request.
                let a = t.respond(response(&req, 486), now);
                log.record(&a, now);
                last_event = now;
            }
            let mut guard = 0;
            while let Some(d) = t.next_deadline() {
                now = now.max(d);
                let a = t.on_timer(now);
                log.record(&a, now);
                guard += 1;
                assert!(guard < 1000, "{what}: timers do not converge");
            }
            assert_eq!(t.state(), ServerState::Terminated, "{what}");
            log.check(last_event, &what);
        }
    }

    fn count_terminated(
        ended: &mut HashMap<TransactionKey, usize>,
        key: &TransactionKey,
        actions: &[Action],
    ) {
        for a in actions {
            if *a == Action::Terminated {
                *ended.entry(key.clone()).or_default() += 1;
            }
        }
    }

    #[test]
    fn property_table_random_interleavings() {
        for seed in 0..150u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let base = Instant::now();
            let mut tab = TransactionTable::new(Timers::default());
            let mut now = base;
            let mut clients: Vec<(TransactionKey, Request)> = Vec::new();
            let mut servers: Vec<(TransactionKey, Request)> = Vec::new();
            let mut created: HashMap<TransactionKey, usize> = HashMap::new();
            let mut ended: HashMap<TransactionKey, usize> = HashMap::new();
            let mut branch = 0u64;
            for _ in 0..300 {
                now += ms(rng.gen_range(0..400));
                for (k, a) in tab.on_timers(now) {
                    count_terminated(&mut ended, &k, &[a]);
                }
                let reliability = random_reliability(&mut rng);
                let method = ["INVITE", "INVITE", "OPTIONS", "BYE"][rng.gen_range(0..4)];
                match rng.gen_range(0..9) {
                    0 => {
                        branch += 1;
                        let req = request(method, &new_branch(seed << 32 | branch));
                        let (key, a) = tab.start_client(req.clone(), reliability, now).unwrap();
                        *created.entry(key.clone()).or_default() += 1;
                        count_terminated(&mut ended, &key, &a);
                        clients.push((key, req));
                    }
                    1 | 2 if !clients.is_empty() => {
                        let (_, req) = &clients[rng.gen_range(0..clients.len())];
                        let status = STATUSES[rng.gen_range(0..STATUSES.len())];
                        if let ResponseOutcome::Matched { key, actions } =
                            tab.on_response(response(req, status), now)
                        {
                            count_terminated(&mut ended, &key, &actions);
                        }
                    }
                    3 => {
                        branch += 1;
                        let req = request(method, &new_branch(seed << 32 | branch));
                        match tab.on_request(req.clone(), reliability, now) {
                            Incoming::New { key, .. } => {
                                *created.entry(key.clone()).or_default() += 1;
                                servers.push((key, req));
                            }
                            other => panic!("seed {seed}: unexpected {other:?}"),
                        }
                    }
                    4 if !servers.is_empty() => {
                        let (_, req) = servers[rng.gen_range(0..servers.len())].clone();
                        match tab.on_request(req, reliability, now) {
                            Incoming::New { key, .. } => {
                                *created.entry(key).or_default() += 1;
                            }
                            Incoming::Absorbed { key, actions } => {
                                count_terminated(&mut ended, &key, &actions)
                            }
                            other => panic!("seed {seed}: unexpected {other:?}"),
                        }
                    }
                    5 | 6 if !servers.is_empty() => {
                        let (key, req) = &servers[rng.gen_range(0..servers.len())];
                        let status = STATUSES[rng.gen_range(0..STATUSES.len())];
                        let a = tab.respond(key, response(req, status), now);
                        count_terminated(&mut ended, key, &a);
                    }
                    7 if !servers.is_empty() => {
                        let (_, req) = &servers[rng.gen_range(0..servers.len())];
                        let via = if rng.gen() {
                            req.headers.get("Via").unwrap_or_default().to_string()
                        } else {
                            "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKfresh".to_string()
                        };
                        let ack = ack_for(&via, "totag");
                        if let Incoming::Absorbed { key, actions } =
                            tab.on_request(ack, reliability, now)
                        {
                            count_terminated(&mut ended, &key, &actions);
                        }
                    }
                    8 => {
                        let all: Vec<TransactionKey> = clients
                            .iter()
                            .chain(servers.iter())
                            .map(|(k, _)| k.clone())
                            .collect();
                        if !all.is_empty() && rng.gen_range(0..4) == 0 {
                            let key = &all[rng.gen_range(0..all.len())];
                            let a = tab.on_transport_error(key);
                            count_terminated(&mut ended, key, &a);
                        }
                    }
                    _ => {}
                }
            }
            // The TU's duties: answer every request, CANCEL ringing calls.
            for (key, req) in &servers {
                if tab.server(key).is_some_and(|s| {
                    matches!(s.state(), ServerState::Trying | ServerState::Proceeding)
                }) {
                    let a = tab.respond(key, response(req, 486), now);
                    count_terminated(&mut ended, key, &a);
                }
            }
            for (key, _) in &clients {
                tab.cancel_sent(key, now);
            }
            let last_event = now;
            for (t, k, a) in drain(&mut tab, now) {
                assert!(t <= last_event + T1 * 64 + T4, "seed {seed}: late timer");
                count_terminated(&mut ended, &k, &[a]);
            }
            assert!(tab.is_empty(), "seed {seed}");
            assert_eq!(tab.next_deadline(), None);
            assert_eq!(created, ended, "seed {seed}");
        }
    }
}
