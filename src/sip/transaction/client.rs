//! Client transactions (RFC 3261 17.1): we sent the request.

use super::*;

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
    pub(super) fn with_key(
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

    pub(super) fn handle_response(&mut self, resp: Response, now: Instant) -> Vec<Action> {
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
