//! Moving the far side of an answered call ([`Command::Move`]): the caller's leg stays up and
//! is re-pointed by a re-INVITE carrying the new far side's SDP.
//! - To a number: a new leg is placed to it (digit analysis with the service's, else the
//!   caller's, search space) with the caller's offer; once it answers, the caller is
//!   re-INVITEd with its answer and the old far leg (if any) gets a BYE. If the new leg fails
//!   or does not answer in time, it is cancelled and the call stays as it was.
//! - To a service's media ([`MoveTo::Media`]): the old far leg gets a BYE and the caller is
//!   re-INVITEd with the service's SDP (music on hold from the Attendant Console's service
//!   queues and park devices); the reply carries the caller's answer (where to send media).
//!
//! UNCONFIRMED: the re-INVITE's SDP is the new far side's own (its `o=` line, not a
//! continuation of what the caller saw before): RFC 3264 8 wants the origin kept within a
//! session. The B2BUA relays SDP unchanged elsewhere too (hold, resume); Cisco phones and
//! ucm's simulated phone accept it.

use super::*;

/// Where [`Command::Move`] takes the far side of a call.
#[derive(Debug, Clone)]
pub enum MoveTo {
    /// A new leg to this number, which has `answer_within` to answer.
    Number {
        destination: String,
        answer_within: Duration,
    },
    /// The service's own media: this SDP is offered to the caller.
    Media { sdp: Bytes },
}

/// A move under way on a call.
#[derive(Debug)]
pub(super) struct Moving {
    reply: CommandId,
    /// The far leg being replaced (None: the call was on a service's media).
    old: Option<usize>,
    /// New legs are those from this index on.
    first_leg: usize,
    /// The line the call was on before (restored when the move fails).
    old_target: Option<DnKey>,
    /// When the new leg must have answered by.
    deadline: Option<Instant>,
    /// The caller's re-INVITE is out: the move is past the point of return.
    reinviting: bool,
}

impl Moving {
    pub(super) fn reply(&self) -> CommandId {
        self.reply
    }
}

impl B2bua {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_move(
        &mut self,
        cluster: &Cluster,
        registrar: &dyn Registrations,
        id: CommandId,
        call: u64,
        to: MoveTo,
        now: Now,
        out: &mut Vec<Out>,
    ) -> Result<(), CallError> {
        let Some(c) = self.calls.get_mut(&call) else {
            return Err(call_error(481, "no such call"));
        };
        if c.state != CallState::Connected
            || c.third_party.is_some()
            || c.legs[0].state != LegState::Confirmed
        {
            return Err(call_error(409, "only an answered call can be moved"));
        }
        if c.moving.is_some() {
            return Err(call_error(409, "the call is being moved already"));
        }
        match to {
            MoveTo::Media { sdp } => {
                c.moving = Some(Moving {
                    reply: id,
                    old: c.answered,
                    first_leg: c.legs.len(),
                    old_target: c.target_dn.clone(),
                    deadline: None,
                    reinviting: true,
                });
                let old = c.answered.take();
                let target = c.target_dn.take();
                if let Some(o) = old {
                    c.held.remove(&o);
                    if c.legs[o].state == LegState::Confirmed {
                        self.send_bye(call, o, now, out);
                    }
                }
                if let Some(dn) = target {
                    self.event(call, &dn, None, LineState::Idle);
                    self.unload(&dn);
                }
                tracing::info!(call, "call moved to a service's media");
                self.reinvite_caller(call, Some(("application/sdp".into(), sdp)), now, out);
                Ok(())
            }
            MoveTo::Number {
                destination,
                answer_within,
            } => {
                if crate::dialplan::pattern::validate_digits(&destination).is_err() {
                    return Err(call_error(
                        484,
                        format!("{destination:?} is not a number to dial"),
                    ));
                }
                if c.a_request.body.is_empty() {
                    // The new leg is offered the caller's SDP: without one there is nothing
                    // to offer (a delayed-offer caller would need an offerless re-INVITE).
                    return Err(call_error(
                        488,
                        "the caller's INVITE carried no SDP offer: the call cannot be moved",
                    ));
                }
                let deadline = now.mono + answer_within;
                c.moving = Some(Moving {
                    reply: id,
                    old: c.answered,
                    first_leg: c.legs.len(),
                    old_target: c.target_dn.clone(),
                    deadline: Some(deadline),
                    reinviting: false,
                });
                // A move is a fresh routing: earlier redirects do not count as forwarding hops.
                c.hops = 0;
                let ctx = c
                    .service_ctx
                    .clone()
                    .unwrap_or_else(|| c.caller.ctx.clone());
                self.timers.insert((deadline, call));
                tracing::info!(call, destination = %destination, "moving the call to a new target");
                self.route(cluster, registrar, call, &destination, &ctx, now, out);
                Ok(())
            }
        }
    }

    fn unload(&mut self, dn: &DnKey) {
        if let Some(n) = self.line_load.get_mut(dn) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.line_load.remove(dn);
            }
        }
    }

    /// Whether `call` is moving and leg `idx` is one of the move's new legs still in play.
    pub(super) fn is_move_leg(&self, call: u64, idx: usize) -> bool {
        self.calls.get(&call).is_some_and(|c| {
            c.moving
                .as_ref()
                .is_some_and(|m| !m.reinviting && idx >= m.first_leg)
                && c.legs
                    .get(idx)
                    .is_some_and(|l| l.state != LegState::Cancelling)
        })
    }

    /// Whether a failure of routing during a move should end the move, not the call.
    pub(super) fn routing_a_move(&self, call: u64) -> bool {
        self.calls.get(&call).is_some_and(|c| {
            c.state == CallState::Connected && c.moving.as_ref().is_some_and(|m| !m.reinviting)
        })
    }

    /// The move's deadline fired: true if `at` was it (the move is then abandoned).
    pub(super) fn move_deadline(
        &mut self,
        call: u64,
        at: Instant,
        now: Now,
        out: &mut Vec<Out>,
    ) -> bool {
        let due = self.calls.get(&call).is_some_and(|c| {
            c.moving
                .as_ref()
                .is_some_and(|m| !m.reinviting && m.deadline == Some(at))
        });
        if due {
            self.abort_move(
                call,
                408,
                "Request Timeout (the new target did not answer in time)",
                now,
                out,
            );
        }
        due
    }

    /// A final answer on one of the move's new legs.
    pub(super) fn move_leg_answered(
        &mut self,
        call: u64,
        idx: usize,
        resp: Response,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        let status = resp.status;
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(leg) = c.legs.get_mut(idx) else {
            return;
        };
        if !(200..300).contains(&status) {
            leg.state = LegState::Failed(status);
            let first = c.moving.as_ref().map_or(usize::MAX, |m| m.first_leg);
            let pending = c
                .legs
                .iter()
                .skip(first)
                .any(|l| matches!(l.state, LegState::Trying | LegState::Early));
            if !pending {
                let reason = resp.reason.clone();
                self.abort_move(call, status, &reason, now, out);
            }
            return;
        }
        super::legs::learn_dialog(leg, &resp);
        leg.state = LegState::Confirmed;
        let device = leg.device.clone();
        let Some(m) = c.moving.as_mut() else {
            return;
        };
        m.reinviting = true;
        if let Some(d) = m.deadline.take() {
            self.timers.remove(&(d, call));
        }
        let (old, first, old_target) = (m.old, m.first_leg, m.old_target.clone());
        c.answered = Some(idx);
        let new_target = c.target_dn.clone();
        let others: Vec<usize> = (first..c.legs.len())
            .filter(|&i| i != idx && matches!(c.legs[i].state, LegState::Trying | LegState::Early))
            .collect();
        self.send_ack(call, idx, None, out);
        for i in others {
            self.cancel_leg(call, i, now, out);
        }
        if let Some(o) = old {
            if let Some(c) = self.calls.get_mut(&call) {
                c.held.remove(&o);
            }
            if self
                .calls
                .get(&call)
                .is_some_and(|c| c.legs[o].state == LegState::Confirmed)
            {
                self.send_bye(call, o, now, out);
            }
        }
        if let Some(dn) = old_target.filter(|d| Some(d) != new_target.as_ref()) {
            self.event(call, &dn, None, LineState::Idle);
        }
        if let Some(dn) = new_target {
            self.event(call, &dn, device, LineState::Connected);
        }
        tracing::info!(
            call,
            "moved call answered by its new target; re-pointing the caller"
        );
        let body = Self::body_of(&resp.headers, &resp.body);
        self.reinvite_caller(call, body, now, out);
    }

    /// The move failed before the caller was re-pointed: its new legs are cancelled and the
    /// call stays with its old far side.
    pub(super) fn abort_move(
        &mut self,
        call: u64,
        status: u16,
        reason: &str,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(m) = c.moving.take() else {
            return;
        };
        if let Some(d) = m.deadline {
            self.timers.remove(&(d, call));
        }
        let ringing: Vec<usize> = (m.first_leg..c.legs.len())
            .filter(|&i| matches!(c.legs[i].state, LegState::Trying | LegState::Early))
            .collect();
        let tried = std::mem::replace(&mut c.target_dn, m.old_target.clone());
        if let Some(at) = c.no_answer_at.take() {
            self.timers.remove(&(at, call));
        }
        for i in ringing {
            self.cancel_leg(call, i, now, out);
        }
        if let Some(dn) = tried.filter(|d| Some(d) != m.old_target.as_ref()) {
            self.event(call, &dn, None, LineState::Idle);
            self.unload(&dn);
            if let Some(old) = m.old_target {
                *self.line_load.entry(old).or_default() += 1;
            }
        }
        tracing::info!(
            call,
            status,
            reason,
            "move failed; the call stays where it was"
        );
        out.push(Out::Reply(
            m.reply,
            Reply::Moved(Err(call_error(status, reason))),
        ));
    }

    fn reinvite_caller(
        &mut self,
        call: u64,
        body: Option<(String, Bytes)>,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        self.splice_if_down(call, 0, now);
        let Some((mut req, peer)) = self.dialog_request(call, 0, Method::Invite) else {
            return;
        };
        req.headers.push("Allow", crate::sip::ALLOW);
        if let Some((ctype, b)) = body {
            req.headers.push("Content-Type", ctype);
            req.body = b;
        }
        if let Some(key) = self.send_request(req, peer, now, out) {
            self.reinvites.insert(key, call);
        }
    }

    /// The caller's answer to the move's re-INVITE.
    pub(super) fn reinvite_answered(
        &mut self,
        call: u64,
        resp: Response,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        if resp.status < 200 {
            return;
        }
        let Some(m) = self.calls.get_mut(&call).and_then(|c| c.moving.take()) else {
            return; // a retransmitted answer
        };
        if (200..300).contains(&resp.status) {
            if let Some((mut ack, peer)) = self.dialog_request(call, 0, Method::Ack) {
                let seq = resp.cseq().map_or(1, |c| c.seq);
                ack.headers.set("CSeq", format!("{seq} ACK"));
                out.push(Out::Send {
                    msg: SipMessage::Request(ack),
                    to: peer,
                });
            }
            let answer = (!resp.body.is_empty()).then(|| resp.body.clone());
            out.push(Out::Reply(m.reply, Reply::Moved(Ok(answer))));
            return;
        }
        // The caller refused the new media: its far side is gone already, so the call ends.
        tracing::info!(
            call,
            status = resp.status,
            "the caller refused the moved call's re-INVITE; call released"
        );
        out.push(Out::Reply(
            m.reply,
            Reply::Moved(Err(call_error(
                resp.status,
                format!("the caller refused the re-INVITE ({})", resp.reason),
            ))),
        ));
        self.hang_up(call, None, now, out);
    }
}
