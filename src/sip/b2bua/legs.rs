//! The legs of a call: answers to our INVITEs, in-dialog requests relayed between the
//! sides, CANCEL, ACK and BYE, hold, and legs left ringing by calls that ended.

use super::*;

impl B2bua {
    pub(super) fn on_response(
        &mut self,
        cluster: &Cluster,
        registrar: &dyn Registrations,
        key: &TransactionKey,
        resp: Response,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        if let Some((server_key, call, idx)) = self.relays.get(key).cloned() {
            self.relay_response(call, idx, &server_key, resp, now, out);
            return;
        }
        if let Some(&call) = self.reinvites.get(key) {
            self.reinvite_answered(call, resp, now, out);
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
        if status >= 200 && self.is_move_leg(call, idx) {
            self.move_leg_answered(call, idx, resp, now, out);
            return;
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
            learn_dialog(leg, &resp);
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
            crate::net::counters::call_connected();
            tracing::info!(call, "call connected");
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
    pub(super) fn fail_call(
        &mut self,
        call: u64,
        status: u16,
        reason: &str,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        if self.routing_a_move(call) {
            // Routing a moved call's new target failed: the call itself goes on.
            self.abort_move(call, status, reason, now, out);
            return;
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        crate::net::counters::count(
            crate::net::counters::CALLS_FAILED,
            &[("status", &status.to_string())],
        );
        if c.third_party.is_some() {
            if let Some(id) = c.third_party.as_mut().and_then(|t| t.reply.take()) {
                out.push(Out::Reply(id, Reply::Call(Err(call_error(status, reason)))));
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
            self.end_call(call, out);
            return;
        }
        tracing::info!(call, status, reason, "call failed");
        if let Some(akey) = c.a_invite.take() {
            let a_req = c.a_request.clone();
            let a_tag = c.legs[0].local_tag.clone();
            self.respond_reason(&akey, &a_req, status, reason, Some(&a_tag), None, now, out);
        }
        self.end_call(call, out);
    }

    fn end_call(&mut self, call: u64, out: &mut Vec<Out>) {
        let Some(mut c) = self.calls.remove(&call) else {
            return;
        };
        crate::net::counters::call_ended(c.state == CallState::Connected);
        c.state = CallState::Ended;
        if let Some(id) = c.third_party.as_mut().and_then(|t| t.reply.take()) {
            let e = call_error(480, "the call ended before it was set up");
            out.push(Out::Reply(id, Reply::Call(Err(e))));
        }
        if let Some(m) = c.moving.take() {
            let e = call_error(487, "the call ended while it was being moved");
            out.push(Out::Reply(m.reply(), Reply::Moved(Err(e))));
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
        if let (true, Some(dn)) = (c.delivered, &c.target_dn) {
            forward::uncount(&mut self.delivered_load, dn);
        }
        for dn in [c.caller.dn, c.target_dn].into_iter().flatten() {
            forward::uncount(&mut self.line_load, &dn);
        }
        // Transactions finish on their own; their maps clear on Terminated.
    }

    pub(super) fn cancel_leg(&mut self, call: u64, idx: usize, now: Now, out: &mut Vec<Out>) {
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

    pub(super) fn send_cancel(&mut self, call: u64, idx: usize, now: Now, out: &mut Vec<Out>) {
        let Some(leg) = self.calls.get(&call).and_then(|c| c.legs.get(idx)) else {
            return;
        };
        let (Some(key), peer) = (leg.invite_key.clone(), leg.peer) else {
            return;
        };
        let Some(cancel) = self.txns.client(&key).and_then(|c| c.make_cancel()) else {
            return;
        };
        self.txns.cancel_sent(&key, now.mono);
        if let Some(ckey) = self.send_request(cancel, peer, now, out) {
            self.by_client_txn.insert(ckey, (call, idx));
        }
    }

    /// Builds an in-dialog request on a leg (we are its sender).
    pub(super) fn dialog_request(
        &mut self,
        call: u64,
        idx: usize,
        method: Method,
    ) -> Option<(Request, Peer)> {
        let branch = self.branch();
        let transport = self.calls.get(&call)?.legs.get(idx)?.peer.transport;
        let host = self.host_on(transport);
        let leg = self.calls.get_mut(&call)?.legs.get_mut(idx)?;
        let (mut req, peer) = leg_request(leg, method, &host, &branch);
        if self.handoff.is_some() {
            if let Some(plain) = req.headers.get("Contact").map(str::to_string) {
                let contact = self.contact_with_handle(plain, call, idx);
                req.headers.set("Contact", contact);
            }
        }
        Some((req, peer))
    }

    /// A leg whose peer is a node that is down now, and whose remote target carries that
    /// node's handle of the far side's dialog, talks to the far side directly from now on
    /// (see [`handoff`]): the dead node's half of the dialog is taken over here.
    pub(super) fn splice_if_down(&mut self, call: u64, idx: usize, now: Now) {
        // A chain of dead nodes is followed a few hops at most.
        for _ in 0..4 {
            let (Some(h), false) = (self.handoff.as_ref(), self.down_nodes.is_empty()) else {
                return;
            };
            let Some(leg) = self.calls.get(&call).and_then(|c| c.legs.get(idx)) else {
                return;
            };
            if !self.down_nodes.contains(&leg.peer.addr) {
                return;
            }
            let Some(far) =
                handoff::token_in(&leg.remote_target).and_then(|t| h.open(t, &leg.call_id))
            else {
                return;
            };
            let old = (leg.call_id.clone(), leg.local_tag.clone());
            let Some(leg) = self.calls.get_mut(&call).and_then(|c| c.legs.get_mut(idx)) else {
                return;
            };
            tracing::info!(call, node = %leg.peer.addr, to = %far.peer.addr, "dialog spliced past a node that is down");
            leg.peer = far.peer;
            leg.call_id = far.call_id;
            leg.local_tag = far.local_tag;
            leg.remote_tag = Some(far.remote_tag);
            leg.local_addr = far.local_addr;
            leg.remote_addr = far.remote_addr;
            leg.remote_target = far.remote_target;
            leg.route_set = far.route_set;
            leg.local_cseq = leg.local_cseq.max(handoff_cseq(now));
            if far.device.is_some() {
                leg.device = far.device;
            }
            let new = (leg.call_id.clone(), leg.local_tag.clone());
            self.by_dialog.remove(&old);
            self.by_dialog.insert(new, (call, idx));
        }
    }

    /// The caller's side of `call`, sealed (see [`Command::CallerDialog`]).
    pub(super) fn caller_dialog(&mut self, call: u64) -> Option<String> {
        let c = self.calls.get(&call)?;
        if c.a_request.headers.get(intra::DELIVER_HEADER).is_some() || c.third_party.is_some() {
            return None;
        }
        let leg = c.legs.first()?;
        let handle = handoff::LegHandle {
            for_call_id: String::new(),
            call_id: leg.call_id.clone(),
            local_tag: leg.local_tag.clone(),
            remote_tag: leg.remote_tag.clone()?,
            local_addr: leg.local_addr.clone(),
            remote_addr: leg.remote_addr.clone(),
            remote_target: leg.remote_target.clone(),
            route_set: leg.route_set.clone(),
            peer: leg.peer,
            device: c.caller.device.clone(),
            lines: Default::default(),
        };
        let nonce = self.random();
        Some(self.handoff.as_ref()?.seal_release(&handle, nonce))
    }

    /// Ends the dialog `record` describes (see [`Command::ReleaseDialog`]): one BYE, with
    /// a CSeq above any the dead node used (the Unix time, as a takeover does).
    pub(super) fn release_dialog(&mut self, record: &str, now: Now, out: &mut Vec<Out>) {
        let Some(d) = self.handoff.as_ref().and_then(|h| h.open_release(record)) else {
            tracing::warn!(
                "a dialog to release whose record does not open (another cluster's secret?)"
            );
            return;
        };
        let mut leg = Leg {
            peer: d.peer,
            call_id: d.call_id,
            local_tag: d.local_tag,
            remote_tag: Some(d.remote_tag),
            local_addr: d.local_addr,
            remote_addr: d.remote_addr,
            remote_target: d.remote_target,
            local_cseq: handoff_cseq(now),
            route_set: d.route_set,
            invite_key: None,
            invite: None,
            state: LegState::Confirmed,
            device: d.device,
        };
        let host = self.host_on(leg.peer.transport);
        let branch = self.branch();
        let (mut bye, peer) = leg_request(&mut leg, Method::Bye, &host, &branch);
        bye.headers.push("Reason", NODE_DOWN_REASON);
        tracing::info!(call_id = %leg.call_id, to = %peer.addr, device = ?leg.device, "dialog released: the node that carried it is down");
        self.send_request(bye, peer, now, out);
    }

    /// A request in a dialog this node does not know whose Request-URI carries a dialog handle
    /// of this cluster: the call another node set up (and died with, or forgot in a restart)
    /// is taken over here, its sender's side from the request and the other side from the
    /// handle (see [`handoff`]). Returns the new call and the sender's leg.
    fn adopt(
        &mut self,
        key: &TransactionKey,
        req: &Request,
        our_tag: &str,
        now: Now,
    ) -> Option<(u64, usize)> {
        let h = self.handoff.as_ref()?;
        let call_id = req.call_id()?.to_string();
        let other = h.open(handoff::token_in(&req.uri)?, &call_id)?;
        let peer = *self.txn_peer.get(key)?;
        let from = req.from().ok()?;
        let to = req.to().ok()?;
        let b_key = (other.call_id.clone(), other.local_tag.clone());
        if self.by_dialog.contains_key(&b_key) {
            return None;
        }
        let cseq = handoff_cseq(now);
        let a_leg = Leg {
            peer,
            call_id: call_id.clone(),
            local_tag: our_tag.to_string(),
            remote_tag: from.tag().map(str::to_string),
            local_addr: strip_tag(&to),
            remote_addr: strip_tag(&from),
            remote_target: contact_uri(req).unwrap_or_else(|| format!("sip:{}", peer.addr)),
            local_cseq: cseq,
            route_set: Vec::new(),
            invite_key: None,
            invite: None,
            state: LegState::Confirmed,
            device: None,
        };
        let b_leg = Leg {
            peer: other.peer,
            call_id: other.call_id,
            local_tag: other.local_tag,
            remote_tag: Some(other.remote_tag),
            local_addr: other.local_addr,
            remote_addr: other.remote_addr,
            remote_target: other.remote_target,
            local_cseq: cseq,
            route_set: other.route_set,
            invite_key: None,
            invite: None,
            state: LegState::Confirmed,
            device: other.device,
        };
        let id = self.next_call;
        self.next_call += 1;
        tracing::info!(call = id, %call_id, from = %peer.addr, to = %b_leg.peer.addr, method = req.method.as_str(), "call taken over from another node (dialog handle)");
        self.by_dialog
            .insert((call_id.clone(), our_tag.to_string()), (id, 0));
        self.by_dialog.insert(b_key, (id, 1));
        let number = from.uri.user_part().unwrap_or_default().to_string();
        // The call counts against the lines it counted against on the node that set it up.
        let lines = other.lines;
        let delivered = lines.delivered && lines.target.is_some();
        for dn in [&lines.caller, &lines.target].into_iter().flatten() {
            *self.line_load.entry(dn.clone()).or_default() += 1;
        }
        if let (true, Some(dn)) = (delivered, &lines.target) {
            *self.delivered_load.entry(dn.clone()).or_default() += 1;
        }
        for dn in [&lines.caller, &lines.target].into_iter().flatten() {
            self.event(id, dn, None, LineState::Connected);
        }
        self.calls.insert(
            id,
            Call {
                legs: vec![a_leg, b_leg],
                a_invite: None,
                a_request: req.clone(),
                caller: Caller {
                    ctx: CallingContext::css(None, None),
                    device: None,
                    dn: lines.caller,
                    number,
                    display: None,
                },
                state: CallState::Connected,
                answered: Some(1),
                target_dn: lines.target,
                hops: 0,
                hunt: TrunkHunt::default(),
                trunk_number: String::new(),
                no_answer_at: None,
                delayed_offer: false,
                superseded_legs: 0,
                busy_seen: false,
                ringing_sent: false,
                third_party: None,
                at_route_point: None,
                service_ctx: None,
                held: BTreeSet::new(),
                dialled: String::new(),
                reached: String::new(),
                started: now.unix,
                delivered,
                moving: None,
            },
        );
        Some((id, 0))
    }

    /// A leg still ringing when its call ended. A provisional answer lets us CANCEL it (RFC
    /// 3261 9.1: not before one); if it answers anyway (the answer crossed the end of the
    /// call), ACK and BYE it. It is forgotten on a final answer, or when its transaction ends.
    fn orphan_answered(
        &mut self,
        key: &TransactionKey,
        resp: &Response,
        now: Now,
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
            self.txns.cancel_sent(key, now.mono);
            self.send_request(cancel, peer, now, out);
            return;
        }
        let Some(mut leg) = self.orphans.remove(key) else {
            return;
        };
        if !(200..300).contains(&resp.status) {
            return;
        }
        learn_dialog(&mut leg, resp);
        let host = self.host_on(leg.peer.transport);
        let b1 = self.branch();
        let (mut ack, peer) = leg_request(&mut leg, Method::Ack, &host, &b1);
        let seq = resp.cseq().map_or(1, |c| c.seq);
        ack.headers.set("CSeq", format!("{seq} ACK"));
        out.push(Out::Send {
            msg: SipMessage::Request(ack),
            to: peer,
        });
        let b2 = self.branch();
        let (bye, peer) = leg_request(&mut leg, Method::Bye, &host, &b2);
        self.send_request(bye, peer, now, out);
    }

    pub(super) fn send_ack(
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
        out.push(Out::Send {
            msg: SipMessage::Request(ack),
            to: peer,
        });
    }

    pub(super) fn send_bye(&mut self, call: u64, idx: usize, now: Now, out: &mut Vec<Out>) {
        let Some((mut bye, peer)) = self.dialog_request(call, idx, Method::Bye) else {
            return;
        };
        if let Some(r) = self.bye_reason {
            bye.headers.push("Reason", r);
        }
        if let Some(l) = self.calls.get_mut(&call).and_then(|c| c.legs.get_mut(idx)) {
            l.state = LegState::Ended;
        }
        if let Some(key) = self.send_request(bye, peer, now, out) {
            self.by_client_txn.insert(key, (call, idx));
        }
    }

    pub(super) fn caller_cancelled(
        &mut self,
        _cluster: &Cluster,
        call: u64,
        now: Now,
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
    pub(super) fn ack_for_2xx(&mut self, ack: Request, out: &mut Vec<Out>) {
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
    pub(super) fn on_stray(&mut self, resp: Response, out: &mut Vec<Out>) {
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
        // A third-party call's user phone waits for its ACK until the destination answers:
        // that ACK carries the destination's answer, so a retransmitted 2xx gets nothing yet.
        let delayed = self.calls.get(&call).is_some_and(|c| {
            c.delayed_offer
                || (idx == 0 && c.third_party.is_some() && c.state != CallState::Connected)
        });
        if is_invite && !delayed {
            self.send_ack(call, idx, None, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn in_dialog(
        &mut self,
        cluster: &Cluster,
        registrar: &dyn Registrations,
        key: TransactionKey,
        req: Request,
        tag: String,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        let _ = (cluster, registrar);
        let dialog = (req.call_id().unwrap_or_default().to_string(), tag.clone());
        let known = self
            .by_dialog
            .get(&dialog)
            .copied()
            .filter(|(call, _)| self.calls.contains_key(call));
        let Some((call, idx)) = known.or_else(|| self.adopt(&key, &req, &tag, now)) else {
            self.respond(&key, &req, 481, Some(&tag), None, now, out);
            return;
        };
        // A target refresh (RFC 3261 12.2.2): the sender's Contact is its remote target from
        // now on, and where it sent from is where it is (a node that took the call over).
        if matches!(req.method, Method::Invite | Method::Update) {
            if let Some(target) = contact_uri(&req) {
                let peer = self.txn_peer.get(&key).copied();
                if let Some(leg) = self.calls.get_mut(&call).and_then(|c| c.legs.get_mut(idx)) {
                    if leg.remote_target != target {
                        leg.remote_target = target;
                        if let (Some(p), true) = (peer, leg.route_set.is_empty()) {
                            leg.peer = p;
                        }
                    }
                }
            }
        }
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
            if let Ok(sdp) = crate::sip::sdp::SessionDescription::parse_bytes(&req.body) {
                self.note_hold(call, idx, sdp.is_hold());
            }
        }
        // Relay everything else (re-INVITE for hold and resume, UPDATE, INFO...) to the other
        // leg and its answer back.
        self.splice_if_down(call, other, now);
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
        now: Now,
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
                out.push(Out::Send {
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
    pub(super) fn hang_up(
        &mut self,
        call: u64,
        from_leg: Option<usize>,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let targets: Vec<usize> = (0..c.legs.len())
            .filter(|&i| Some(i) != from_leg && c.legs[i].state == LegState::Confirmed)
            .collect();
        if let Some(l) = from_leg.and_then(|i| c.legs.get_mut(i)) {
            l.state = LegState::Ended;
        }
        // Legs still ringing (a move's new target) are cancelled, not left to ring.
        let ringing: Vec<usize> = (1..c.legs.len())
            .filter(|&i| matches!(c.legs[i].state, LegState::Trying | LegState::Early))
            .collect();
        for i in ringing {
            self.cancel_leg(call, i, now, out);
        }
        for i in targets {
            self.splice_if_down(call, i, now);
            self.send_bye(call, i, now, out);
        }
        self.end_call(call, out);
    }
}

/// The CSeq a node starts at on a dialog it took over from another node (see [`handoff`]): it
/// cannot know how far the other got, so the Unix time, above any counter a node starts at 1
/// (and below 2^31, RFC 3261 8.1.1.5, until 2038).
fn handoff_cseq(now: Now) -> u32 {
    now.unix.clamp(1, i64::from(i32::MAX) - 1_000_000) as u32
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
    let next_hop = apply_route_set(&mut req, leg);
    if matches!(method, Method::Invite | Method::Update) {
        let contact = match leg.peer.transport {
            crate::sip::Transport::Tls => format!("<sip:{host};transport=tls>"),
            _ => format!("<sip:{host}>"),
        };
        req.headers.push("Contact", contact);
    }
    (req, next_hop)
}

/// Puts a dialog's route set on a request built for its remote target (RFC 3261 12.2.1.1) and
/// says where the request goes (8.1.2: the first route). A loose router (`;lr`) keeps the
/// remote target in the Request-URI with every route in Route; a strict router (no `lr`, RFC
/// 2543) takes the Request-URI itself, the other routes and then the remote target going in
/// Route. The first route is the next hop when its host is an IP address; a name there (the
/// core resolves nothing) or an unreadable route leaves the request going to the peer the
/// dialog talks to, which is where a record-routing proxy sent the dialog's first request
/// from.
fn apply_route_set(req: &mut Request, leg: &Leg) -> Peer {
    let Some(first) = leg.route_set.first() else {
        return leg.peer;
    };
    let parsed = NameAddr::parse(first).ok();
    let loose = parsed.as_ref().is_none_or(|n| n.uri.param("lr").is_some());
    if loose {
        for r in &leg.route_set {
            req.headers.push("Route", r.clone());
        }
    } else if let Some(n) = &parsed {
        // The first route becomes the Request-URI, without what a Request-URI may not carry
        // (RFC 3261 19.1.1: method and headers).
        let mut uri = n.uri.clone();
        uri.remove_param("method");
        uri.headers.clear();
        req.uri = uri.to_string();
        for r in &leg.route_set[1..] {
            req.headers.push("Route", r.clone());
        }
        req.headers.push(
            "Route",
            format!("<{}>", leg.remote_target.trim_matches(['<', '>'])),
        );
    }
    parsed
        .and_then(|n| route_address(&n.uri))
        .map_or(leg.peer, |addr| Peer {
            addr,
            transport: leg.peer.transport,
        })
}

/// The address a route URI names, when its host is an IP address (default port 5060, 5061 for
/// `sips:` or TLS).
fn route_address(uri: &crate::sip::message::SipUri) -> Option<SocketAddr> {
    let ip: std::net::IpAddr = uri.host.trim_matches(['[', ']']).parse().ok()?;
    let tls = uri.scheme.eq_ignore_ascii_case("sips")
        || uri
            .transport()
            .is_some_and(|t| t.eq_ignore_ascii_case("tls"));
    let port = uri.port.unwrap_or(if tls { 5061 } else { 5060 });
    Some(SocketAddr::new(ip, port))
}

/// What a 2xx (or a provisional with a tag) to our INVITE tells a leg about its dialog (RFC
/// 3261 12.1.2): the remote tag, the remote target (Contact) and the route set, the
/// Record-Route values in reverse order.
pub(super) fn learn_dialog(leg: &mut Leg, resp: &Response) {
    leg.remote_tag = resp
        .headers
        .to_ref()
        .ok()
        .and_then(|t| t.tag().map(str::to_string));
    if let Some(ct) = contact_of_response(resp) {
        leg.remote_target = ct;
    }
    let mut rr: Vec<String> = resp
        .headers
        .get_all_split("Record-Route")
        .map(str::to_string)
        .collect();
    rr.reverse();
    leg.route_set = rr;
}
