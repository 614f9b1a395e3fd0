//! Routing a new call: who calls, digit analysis, trunk hunting, and offering the call to
//! every registered device of a line.

use super::*;

impl B2bua {
    /// Who is calling: a registered device line (by From user and source address), or a trunk.
    fn identify_caller(
        cluster: &Cluster,
        registrar: &dyn Registrations,
        resolved: &Resolved,
        req: &Request,
        peer: Peer,
        now: Now,
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
                if let Some(c) = Self::emcc_trunk_caller(cluster, trunk, req, &user, &from) {
                    return Some(c);
                }
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
                let Some(b) = registrar.binding_at(&d.name, &l.dn, now.unix) else {
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
                        emcc_trunk: cluster.emcc.visiting_phones.get(&d.name).cloned(),
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

    /// Visiting side of EMCC: a call on one of this cluster's EMCC SIP trunks (PSTN Access)
    /// that names one of its EMCC phones ([`crate::cluster::EMCC_DEVICE_HEADER`]) is a PSTN
    /// or emergency call of that phone, sent back by its user's home: it is routed with the
    /// trunk's CSS (or the phone's own device CSS, per "CSS for PSTN Access SIP Trunk") and the
    /// phone's device pool, so the Standard Local Route Group is the phone's local gateway.
    /// `None` for any other call on the trunk (a name that is no EMCC phone here is ignored).
    fn emcc_trunk_caller(
        cluster: &Cluster,
        trunk: &crate::config::model::SipTrunk,
        req: &Request,
        user: &str,
        from: &NameAddr,
    ) -> Option<Caller> {
        let use_phone_css = *cluster.emcc.pstn_trunks.get(&trunk.name)?;
        let name = req.headers.get(crate::cluster::EMCC_DEVICE_HEADER)?.trim();
        if !cluster.emcc.phones.contains(name) {
            return None;
        }
        let d = cluster.device(name)?;
        let css = if use_phone_css {
            d.css.as_deref()
        } else {
            trunk.css.as_deref()
        };
        Some(Caller {
            ctx: CallingContext::css(css, Some(&d.device_pool)),
            device: None,
            dn: None,
            number: user.to_string(),
            display: from.display_name.clone(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn new_call(
        &mut self,
        cluster: &Cluster,
        registrar: &dyn Registrations,
        key: TransactionKey,
        req: Request,
        peer: Peer,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        // An intra-cluster call (see `intra`): honoured only from a node of the cluster.
        let deliver = match req.headers.get(intra::DELIVER_HEADER) {
            None => None,
            Some(v) => {
                if intra::node_at(cluster, peer).is_none() {
                    self.refuse_stranger(
                        &key,
                        &req,
                        peer,
                        403,
                        "Forbidden (intra-cluster request from an address that is no node of the cluster)",
                        now,
                        out,
                    );
                    return;
                }
                match intra::Deliver::parse(v) {
                    Ok(d) => Some(d),
                    Err(why) => {
                        let reason = format!("Bad Request ({}: {why})", intra::DELIVER_HEADER);
                        self.refuse_stranger(&key, &req, peer, 400, &reason, now, out);
                        return;
                    }
                }
            }
        };
        let caller = match &deliver {
            Some(_) => req.from().ok().map(|from| Caller {
                ctx: CallingContext::css(None, None),
                device: None,
                dn: None,
                number: from.uri.user_part().unwrap_or_default().to_string(),
                display: from.display_name.clone(),
            }),
            None => Self::identify_caller(cluster, registrar, &self.resolved, &req, peer, now),
        };
        let Some(caller) = caller else {
            self.refuse_stranger(
                &key,
                &req,
                peer,
                403,
                "Forbidden (caller is neither a registered line nor a SIP trunk)",
                now,
                out,
            );
            return;
        };
        // Devices whose security profile asks for digest authentication prove themselves on
        // every INVITE too, not only on REGISTER (407 with a challenge, as a proxy would).
        if let Some(device) = caller.device.as_deref() {
            if let Some((status, reason, challenge)) =
                self.invite_digest(cluster, &req, device, now)
            {
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
                crate::sip::sdp::SessionDescription::parse_bytes(&req.body)
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
                let actions = self.txns.respond(&key, r, now.mono);
                for a in actions {
                    match a {
                        Action::Send(msg) => out.push(Out::Send { msg, to: peer }),
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
            if self.line_load_of(dn) >= max {
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
        crate::net::counters::count(crate::net::counters::CALLS_ATTEMPTED, &[]);
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
                service_ctx: None,
                held: BTreeSet::new(),
                dialled: dialled.clone(),
                reached: String::new(),
                started: now.unix,
                delivered: false,
                moving: None,
            },
        );
        self.respond(&key, &req, 100, Some(&a_tag), None, now, out);
        match deliver {
            Some(d) => self.deliver_here(cluster, registrar, id, &d, now, out),
            None => self.route(cluster, registrar, id, &dialled, &caller.ctx, now, out),
        }
    }

    /// Runs digit analysis for a call and offers it where it leads.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn route(
        &mut self,
        cluster: &Cluster,
        registrar: &dyn Registrations,
        call: u64,
        number: &str,
        ctx: &CallingContext,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        match cluster.dialplan.analyse(ctx, number) {
            Err(e) => {
                tracing::info!(call, number, status = e.status, reason = %e.reason, "digit analysis refused the call");
                let reason = format!("{} ({})", default_reason(e.status), e.reason);
                self.fail_call(call, e.status, &reason, now, out);
            }
            Ok(a) => match a.destination {
                Destination::Line(dn) => {
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.reached = a.number;
                    }
                    self.offer_to_line(cluster, registrar, call, dn, now, out)
                }
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
    pub(super) fn next_trunk(
        &mut self,
        cluster: &Cluster,
        call: u64,
        now: Now,
        out: &mut Vec<Out>,
    ) {
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
            // The EMCC SIP trunk reaches the calling EMCC phone's own cluster.
            if let Some(d) = c.caller.device.as_deref() {
                if cluster.emcc.visiting_phones.get(d) == Some(&name) {
                    if let Some(nodes) = cluster.emcc.phone_destinations.get(d) {
                        if !nodes.is_empty() {
                            h.dests = nodes.iter().cloned().collect();
                        }
                    }
                }
            }
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
        // An EMCC logged-in phone's call on its EMCC SIP trunk names the phone, so its own
        // cluster routes it by the phone's device pool (its local gateway).
        let emcc = c
            .caller
            .device
            .as_ref()
            .filter(|d| cluster.emcc.visiting_phones.get(d.as_str()) == Some(&c.hunt.trunk));
        let extra = emcc.map(|d| (crate::cluster::EMCC_DEVICE_HEADER, d.clone()));
        let presented = (c.caller.number.clone(), c.caller.display.clone());
        self.fork_as(
            call, peer, &target, &number, None, presented, extra, now, out,
        );
    }

    fn offer_to_line(
        &mut self,
        cluster: &Cluster,
        registrar: &dyn Registrations,
        call: u64,
        dn: DnKey,
        now: Now,
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
        if self.forward_all(cluster, registrar, call, &line, &dn, now, out) {
            return;
        }
        let devices: Vec<_> = cluster.devices_with_line(&dn).collect();
        if self.is_busy(&line, &dn, &devices) {
            self.busy(cluster, registrar, call, &dn, now, out);
            return;
        }
        if let Some(rp) = cluster.route_point_for(&dn) {
            // Digit analysis chose the route point here: this node counts the call for it.
            self.set_target(call, dn.clone(), Some(false));
            self.offer_to_route_point(cluster, registrar, call, &dn, rp.name.clone(), now, out);
            return;
        }
        let local = registrar.local_node();
        let (registered, mut elsewhere): (Vec<_>, Vec<_>) = devices
            .iter()
            .filter(|d| !d.do_not_disturb)
            .filter_map(|d| {
                registrar
                    .binding_at(&d.name, &dn.0, now.unix)
                    .map(|b| (d.name.clone(), b))
            })
            .partition(|(_, b)| b.node == local);
        // Devices on a node the definition does not let us reach count as unregistered.
        elsewhere.retain(|(device, b)| {
            let reachable = cluster
                .nodes
                .iter()
                .find(|n| n.name == b.node)
                .is_some_and(|n| intra::node_sip_addr(n).is_ok());
            if !reachable {
                tracing::warn!(call, device, node = %b.node, "device registered with a node that cannot be reached (not in the definition, or no fixed SIP port)");
            }
            reachable
        });
        if registered.is_empty() && elsewhere.is_empty() {
            self.unregistered(cluster, registrar, call, &line, &dn, now, out);
            return;
        }
        // Digit analysis chose this line here: this node counts the call for it.
        self.set_target(call, dn.clone(), Some(false));
        for (device, b) in registered {
            self.event(call, &dn, Some(device.clone()), LineState::Ringing);
            let peer = Peer {
                addr: b.source,
                transport: b.transport,
            };
            let callee = match self.calls.get(&call) {
                Some(c) if !c.reached.is_empty() => c.reached.clone(),
                _ => dn.0.clone(),
            };
            let key = (device.clone(), dn.0.clone());
            let extra = if self.auto_answer.contains(&key) {
                Some((
                    "Call-Info",
                    format!("<sip:{}>;{AUTO_ANSWER_CALL_INFO}", self.host),
                ))
            } else if self.silent_ring.contains(&key) {
                Some(("Alert-Info", SILENT_ALERT_INFO.to_string()))
            } else {
                None
            };
            if extra.is_some() {
                let presented = self
                    .calls
                    .get(&call)
                    .map(|c| (c.caller.number.clone(), c.caller.display.clone()))
                    .unwrap_or_default();
                self.fork_as(
                    call,
                    peer,
                    &b.contact,
                    &callee,
                    Some(device),
                    presented,
                    extra,
                    now,
                    out,
                );
                continue;
            }
            self.fork(call, peer, &b.contact, &callee, Some(device), now, out);
        }
        for (device, _) in &elsewhere {
            self.event(call, &dn, Some(device.clone()), LineState::Ringing);
        }
        self.offer_through_nodes(cluster, &local, call, &dn, elsewhere, now, out);
        self.arm_forward_no_answer(cluster, call, &line, now);
    }

    /// Sends an INVITE towards one destination as a new leg of the call.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fork(
        &mut self,
        call: u64,
        peer: Peer,
        target: &str,
        to_user: &str,
        device: Option<String>,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        let presented = self
            .calls
            .get(&call)
            .map(|c| (c.caller.number.clone(), c.caller.display.clone()));
        if let Some(p) = presented {
            self.fork_as(call, peer, target, to_user, device, p, None, now, out);
        }
    }

    /// Sends an INVITE towards one destination as a new leg, presenting `from` as the caller,
    /// with an `extra` header if given (the intra-cluster trunk's).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fork_as(
        &mut self,
        call: u64,
        peer: Peer,
        target: &str,
        to_user: &str,
        device: Option<String>,
        from: (String, Option<String>),
        extra: Option<(&str, String)>,
        now: Now,
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
        req.headers.push("Allow", crate::sip::ALLOW);
        if let Some(id) = c.a_request.headers.get("P-Asserted-Identity") {
            req.headers.push("P-Asserted-Identity", id.to_string());
        }
        if let Some((name, value)) = extra {
            req.headers.push(name, value);
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
        if self.handoff.is_some() {
            // The callee's remote target carries the caller's dialog (see `handoff`).
            let plain = req.headers.get("Contact").unwrap_or_default().to_string();
            let contact = self.contact_with_handle(plain, call, idx);
            req.headers.set("Contact", contact);
            if let Some(l) = self.calls.get_mut(&call).and_then(|c| c.legs.get_mut(idx)) {
                l.invite = Some(req.clone());
            }
        }
        if let Some(key) = self.send_request(req, peer, now, out) {
            self.by_client_txn.insert(key.clone(), (call, idx));
            if let Some(l) = self.calls.get_mut(&call).and_then(|c| c.legs.get_mut(idx)) {
                l.invite_key = Some(key);
            }
        }
    }
}
