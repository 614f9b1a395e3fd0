//! Server transactions (RFC 3261 17.2, with RFC 6026's Accepted state), and the UAS core's
//! 2xx retransmission.

use super::*;

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

    pub(super) fn handle_retransmission(&mut self) -> Vec<Action> {
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

    pub(super) fn handle_ack(&mut self, now: Instant) -> Vec<Action> {
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

    /// The TU answers with a final response once and keeps no state, as a
    /// stateless UAS does (RFC 3261 8.2.7): no Timer G retransmissions, no
    /// waiting for the ACK. `send: false` answers nothing at all. For
    /// requests from strangers, whose source may be forged: a retransmitting
    /// transaction would make the node a reflector. Returns the response to
    /// send (if any) and `Terminated`; a transaction that already answered
    /// finally gives nothing.
    pub fn respond_statelessly(&mut self, resp: Response, send: bool) -> Vec<Action> {
        if !(200..=699).contains(&resp.status)
            || !matches!(self.state, ServerState::Trying | ServerState::Proceeding)
        {
            return Vec::new();
        }
        self.terminate();
        let mut out = Vec::new();
        if send {
            out.push(Action::Send(SipMessage::Response(resp.clone())));
        }
        self.final_response = Some(resp);
        out.push(Action::Terminated);
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
