//! Commands from services: third-party calls, route points (offer, redirect, answer,
//! reject), ending calls and NOTIFYs to devices.

use super::*;

impl B2bua {
    /// An out-of-dialog NOTIFY to each address the device registered from.
    fn notify_device(
        &mut self,
        registrar: &dyn Registrations,
        device: &str,
        event: &str,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        let mut seen = BTreeSet::new();
        let local = registrar.local_node();
        // A phone registered with another node hears from that node only.
        for b in registrar
            .device_bindings_at(device, now.unix)
            .into_iter()
            .filter(|b| b.node == local)
        {
            if !seen.insert((b.source, b.transport.as_str())) {
                continue;
            }
            let peer = Peer {
                addr: b.source,
                transport: b.transport,
            };
            self.send_notify(device, &b.contact, peer, event, now, out);
        }
    }

    /// One unsolicited NOTIFY to a phone's contact at `peer`.
    fn send_notify(
        &mut self,
        device: &str,
        contact: &str,
        peer: Peer,
        event: &str,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        let host = self.host_on(peer.transport);
        let branch = self.branch();
        let tag = self.tag();
        let call_id = format!("{:x}{:x}@ucm", self.random(), self.random());
        let mut req = Request::new(Method::Notify, contact);
        req.headers.push(
            "Via",
            format!(
                "SIP/2.0/{} {host};branch={branch};rport",
                peer.transport.as_str()
            ),
        );
        req.headers.push("Max-Forwards", "70");
        req.headers.push("From", format!("<sip:{host}>;tag={tag}"));
        req.headers.push("To", format!("<{contact}>"));
        req.headers.push("Call-ID", call_id);
        req.headers.push("CSeq", "1 NOTIFY");
        req.headers.push("Event", event.to_string());
        req.headers.push("Subscription-State", "terminated");
        tracing::debug!(device, to = %peer.addr, event, "NOTIFY");
        self.send_request(req, peer, now, out);
    }

    /// A command from a service; `id` names it in the [`Out::Reply`] that answers it.
    pub fn on_command(
        &mut self,
        cluster: &Cluster,
        registrar: &dyn Registrations,
        id: CommandId,
        cmd: Command,
        now: Now,
    ) -> Vec<Out> {
        let mut out = Vec::new();
        let reply = match cmd {
            Command::NotifyDevice { device, event } => {
                self.notify_device(registrar, &device, &event, now, &mut out);
                None
            }
            Command::NotifyContact {
                device,
                contact,
                source,
                transport,
                event,
            } => {
                let peer = Peer {
                    addr: source,
                    transport,
                };
                self.send_notify(&device, &contact, peer, &event, now, &mut out);
                None
            }
            Command::SilentRing { device, dn, on } => {
                if on {
                    self.silent_ring.insert((device, dn));
                } else {
                    self.silent_ring.remove(&(device, dn));
                }
                None
            }
            Command::AutoAnswer { device, dn, on } => {
                if on {
                    self.auto_answer.insert((device, dn));
                } else {
                    self.auto_answer.remove(&(device, dn));
                }
                None
            }
            Command::Keep { call } => {
                let r = match self.calls.get_mut(&call) {
                    None => Err(call_error(481, "no such call")),
                    Some(c) if c.at_route_point.is_none() || c.state != CallState::Routing => {
                        Err(call_error(409, "the call is not waiting at a route point"))
                    }
                    Some(c) => {
                        if let Some(at) = c.no_answer_at.take() {
                            self.timers.remove(&(at, call));
                        }
                        // The call alerts at the service's device: the caller hears ringback
                        // (and may now CANCEL: RFC 3261 9.1 wants a provisional first).
                        let ring = match (&c.a_invite, c.ringing_sent) {
                            (Some(akey), false) => {
                                c.ringing_sent = true;
                                Some((
                                    akey.clone(),
                                    c.a_request.clone(),
                                    c.legs[0].local_tag.clone(),
                                ))
                            }
                            _ => None,
                        };
                        if let Some((akey, a_req, a_tag)) = ring {
                            self.respond(&akey, &a_req, 180, Some(&a_tag), None, now, &mut out);
                        }
                        Ok(())
                    }
                };
                Some(Reply::Done(r))
            }
            Command::MakeCall {
                device,
                line,
                destination,
                answer_within,
                request,
            } => match self.make_call(
                cluster,
                registrar,
                (&device, &line, &destination),
                answer_within,
                request,
                now,
                &mut out,
            ) {
                Ok(call) => {
                    // Answered once the user's phone answers (or the attempt fails).
                    if let Some(t) = self
                        .calls
                        .get_mut(&call)
                        .and_then(|c| c.third_party.as_mut())
                    {
                        t.reply = Some(id);
                    }
                    None
                }
                Err(e) => Some(Reply::Call(Err(e))),
            },
            Command::Abandon { request } => {
                let call = self
                    .calls
                    .iter()
                    .find(|(_, c)| c.third_party.as_ref().is_some_and(|t| t.request == request))
                    .map(|(id, _)| *id);
                if let Some(call) = call {
                    tracing::info!(call, request, "third-party call abandoned by its service");
                    self.end_third_party(
                        call,
                        487,
                        "Request Terminated (abandoned)",
                        now,
                        &mut out,
                    );
                }
                None
            }
            Command::RegisterRoutePoint { name } => {
                tracing::info!(route_point = %name, "service registered for the route point");
                self.route_points.insert(name);
                None
            }
            Command::NodesDown { names } => {
                let down: HashSet<SocketAddr> = cluster
                    .nodes
                    .iter()
                    .filter(|n| names.contains(&n.name))
                    .flat_map(|n| {
                        let udp = intra::node_sip_addr(n).ok();
                        let peer = intra::node_peer(n).ok().map(|p| p.addr);
                        udp.into_iter().chain(peer)
                    })
                    .collect();
                if down != self.down_nodes {
                    let mut names: Vec<String> = names.into_iter().collect();
                    names.sort();
                    let names = names.join(",");
                    tracing::info!(%names, "nodes down now (dialogs through them are spliced past them)");
                }
                let newly: HashSet<SocketAddr> =
                    down.difference(&self.down_nodes).copied().collect();
                self.down_nodes = down;
                self.release_calls_served_by(&newly, now, &mut out);
                None
            }
            Command::RoutePointsElsewhere { at } => {
                if at != self.remote_route_points {
                    tracing::info!(?at, "route points served by other nodes");
                }
                self.remote_route_points = at;
                None
            }
            Command::Redirect { call, destination } => Some(Reply::Done(self.redirect(
                cluster,
                registrar,
                call,
                &destination,
                now,
                &mut out,
            ))),
            Command::Move { call, to } => self
                .start_move(cluster, registrar, id, call, to, now, &mut out)
                .err()
                .map(|e| Reply::Moved(Err(e))),
            Command::Answer { call, sdp } => Some(Reply::Done(
                self.answer_at_route_point(call, sdp, now, &mut out),
            )),
            Command::Reject {
                call,
                status,
                reason,
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
                Some(Reply::Done(r))
            }
            Command::BusyDevices => {
                let mut busy = HashSet::new();
                for c in self.calls.values() {
                    busy.extend(c.caller.device.iter().cloned());
                    for l in c.legs.iter().filter(|l| l.state != LegState::Ended) {
                        busy.extend(l.device.iter().cloned());
                    }
                }
                Some(Reply::Devices(busy))
            }
            Command::RemoteLineLoads { loads } => {
                if loads != self.remote_load {
                    let mut shown: Vec<String> = loads
                        .iter()
                        .map(|((dn, pt), n)| format!("{dn}@{}={n}", pt.as_deref().unwrap_or("")))
                        .collect();
                    shown.sort();
                    let lines = if shown.is_empty() {
                        "-".to_string()
                    } else {
                        shown.join(",")
                    };
                    tracing::debug!(%lines, "calls on lines at other nodes");
                    self.remote_load = loads;
                }
                None
            }
            Command::LineLoads => Some(Reply::Loads(self.own_loads())),
            Command::CallerDialog { call } => Some(Reply::Dialog(self.caller_dialog(call))),
            Command::ReleaseDialog { dialog } => {
                self.release_dialog(&dialog, now, &mut out);
                None
            }
            Command::CallExists { call } => Some(Reply::Exists(self.calls.contains_key(&call))),
            Command::ListCalls => {
                let mut list: Vec<ActiveCall> = self
                    .calls
                    .iter()
                    .filter(|(_, c)| c.state != CallState::Ended)
                    .map(|(&id, c)| {
                        let mut devices: Vec<String> = c.caller.device.iter().cloned().collect();
                        for l in c.legs.iter().filter(|l| l.state != LegState::Ended) {
                            if let Some(d) = &l.device {
                                if !devices.contains(d) {
                                    devices.push(d.clone());
                                }
                            }
                        }
                        ActiveCall {
                            id,
                            state: match (c.state, &c.at_route_point) {
                                (CallState::Connected, _) => "connected",
                                (_, Some(_)) => "at-route-point",
                                _ => "routing",
                            },
                            calling: c.caller.number.clone(),
                            dialled: c.dialled.clone(),
                            devices,
                            held: !c.held.is_empty(),
                            third_party: c.third_party.is_some(),
                            started: c.started,
                        }
                    })
                    .collect();
                // Calls are numbered in order: by id is oldest first.
                list.sort_by_key(|c| c.id);
                Some(Reply::Calls(list))
            }
            Command::EndCall { call } => {
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
                Some(Reply::Done(result))
            }
        };
        if let Some(r) = reply {
            out.push(Out::Reply(id, r));
        }
        out
    }

    /// The shell could not hand an offered call to its route point's service (the service
    /// dropped its receiver: it is down). The route point counts as unserved from now on and
    /// the call goes where the line's Call Forward No Answer sends it, at once.
    pub fn on_offer_undelivered(
        &mut self,
        cluster: &Cluster,
        registrar: &dyn Registrations,
        call: u64,
        now: Now,
    ) -> Vec<Out> {
        let mut out = Vec::new();
        let Some(c) = self.calls.get_mut(&call) else {
            return out;
        };
        let Some(rp) = c.at_route_point.clone() else {
            return out;
        };
        if let Some(at) = c.no_answer_at.take() {
            self.timers.remove(&(at, call));
        }
        self.route_points.remove(&rp);
        // The service stepped down here and another node's took over: the call goes there.
        if let Some(dn) = c.target_dn.clone() {
            if self
                .offer_route_point_through_node(cluster, registrar, call, &dn, &rp, now, &mut out)
            {
                return out;
            }
        }
        tracing::info!(call, route_point = %rp, "no service on the route point; call forwarding applies");
        self.no_answer(cluster, registrar, call, now, &mut out);
        out
    }

    /// Offers a call to the service that owns the route point; a service that is down or
    /// silent leaves the call to the line's Call Forward No Answer.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn offer_to_route_point(
        &mut self,
        cluster: &Cluster,
        registrar: &dyn Registrations,
        call: u64,
        dn: &DnKey,
        route_point: String,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        if self.routing_a_move(call) {
            self.fail_call(
                call,
                488,
                "Not Acceptable Here (a moved call cannot go to a route point)",
                now,
                out,
            );
            return;
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.at_route_point = Some(route_point.clone());
        let offer = OfferedCall {
            call,
            route_point: route_point.clone(),
            dn: dn.0.clone(),
            number: if c.reached.is_empty() {
                dn.0.clone()
            } else {
                c.reached.clone()
            },
            calling: c.caller.number.clone(),
            // A call another node sent here is named by its caller's own Call-ID.
            call_id: c
                .a_request
                .headers
                .get(intra::DELIVER_HEADER)
                .and_then(|v| intra::Deliver::parse(v).ok())
                .and_then(|d| d.call_id)
                .unwrap_or_else(|| c.a_request.call_id().unwrap_or_default().to_string()),
            offer: (!c.a_request.body.is_empty()).then(|| c.a_request.body.clone()),
        };
        self.set_target(call, dn.clone(), None);
        self.event(call, dn, Some(route_point.clone()), LineState::Ringing);
        if !self.route_points.contains(&route_point) {
            // Served by another node (a service the cluster runs once): the call goes there.
            if self.offer_route_point_through_node(
                cluster,
                registrar,
                call,
                dn,
                &route_point,
                now,
                out,
            ) {
                let secs = cluster.service_parameters.call_manager.route_point_timeout;
                self.arm_no_answer(call, now.mono + Duration::from_secs(u64::from(secs)));
                return;
            }
            tracing::info!(call, route_point = %route_point, "no service on the route point; call forwarding applies");
            self.no_answer(cluster, registrar, call, now, out);
            return;
        }
        out.push(Out::Offer(offer));
        let secs = cluster.service_parameters.call_manager.route_point_timeout;
        self.arm_no_answer(call, now.mono + Duration::from_secs(u64::from(secs)));
    }

    /// Redirects an unanswered call: cancels whatever rings and routes the call afresh.
    fn redirect(
        &mut self,
        cluster: &Cluster,
        registrar: &dyn Registrations,
        call: u64,
        destination: &str,
        now: Now,
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
        // The redirecting route point's CSS (kept for the service's later redirects), else
        // the caller's.
        let rp_ctx = c.at_route_point.take().and_then(|rp| {
            cluster
                .route_points
                .iter()
                .find(|r| r.name == rp)
                .map(|r| CallingContext::css(r.css.as_deref(), Some(&r.device_pool)))
        });
        if let Some(ctx) = rp_ctx {
            c.service_ctx = Some(ctx);
        }
        let ctx = c
            .service_ctx
            .clone()
            .unwrap_or_else(|| c.caller.ctx.clone());
        c.superseded_legs = c.legs.len() - 1;
        let forks: Vec<usize> = (1..c.legs.len()).collect();
        for i in forks {
            self.cancel_leg(call, i, now, out);
        }
        tracing::debug!(call, destination, "redirected");
        self.route(cluster, registrar, call, destination, &ctx, now, out);
        Ok(())
    }

    /// Ends the connected calls whose other side was a service of a node that is down now
    /// (a route point answered there: the Paging Server's DialCast, the Assistant's): nothing
    /// can carry them on, so the callers are not left in a dead call. Their BYE says why
    /// (RFC 3326 Reason). A leg whose remote target carries a dialog handle (a phone on the
    /// far side) is left alone: its media flows phone to phone and the next request through
    /// it is spliced past the dead node.
    fn release_calls_served_by(
        &mut self,
        nodes: &HashSet<SocketAddr>,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        if nodes.is_empty() {
            return;
        }
        let mut dead: Vec<(u64, usize)> = self
            .calls
            .iter()
            .filter(|(_, c)| c.state == CallState::Connected)
            .filter_map(|(&id, c)| {
                let idx = c.legs.iter().position(|l| {
                    l.state == LegState::Confirmed
                        && nodes.contains(&l.peer.addr)
                        && handoff::token_in(&l.remote_target).is_none()
                })?;
                Some((id, idx))
            })
            .collect();
        dead.sort_unstable();
        for (call, idx) in dead {
            tracing::info!(call, node = %self.calls.get(&call).map(|c| c.legs[idx].peer.addr.to_string()).unwrap_or_default(), "call released: the node serving its other side is down");
            self.bye_reason = Some(NODE_DOWN_REASON);
            self.hang_up(call, Some(idx), now, out);
            self.bye_reason = None;
        }
    }

    fn answer_at_route_point(
        &mut self,
        call: u64,
        sdp: Bytes,
        now: Now,
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
        crate::net::counters::call_connected();
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
        registrar: &dyn Registrations,
        (device, line, destination): (&str, &str, &str),
        answer_within: Duration,
        request: u64,
        now: Now,
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
            .binding_at(device, line, now.unix)
            .ok_or_else(|| call_error(480, format!("{device} is not registered")))?;
        let mut peer = Peer {
            addr: b.source,
            transport: b.transport,
        };
        let mut target = b.contact.clone();
        let mut extra = None;
        // A phone registered with another node is rung through that node (see `intra`).
        let local = registrar.local_node();
        if b.node != local {
            let addr = cluster
                .nodes
                .iter()
                .find(|n| n.name == b.node)
                .ok_or_else(|| format!("node {} is not in the definition", b.node))
                .and_then(intra::node_sip_addr)
                .map_err(|why| {
                    call_error(
                        503,
                        format!("{device} is registered with node {} ({why})", b.node),
                    )
                })?;
            peer = Peer {
                addr,
                transport: Transport::Udp,
            };
            target = format!("sip:{line}@{addr}");
            let deliver = intra::Deliver {
                line: line.to_string(),
                partition: la.partition.clone(),
                devices: vec![device.to_string()],
                route_point: None,
                call_id: None,
                node: local,
            };
            extra = Some((intra::DELIVER_HEADER, deliver.to_header()));
        }
        let dn_cfg = cluster.directory_number(&key);
        if self.line_load_of(&key) >= dn_cfg.map_or(4, |d| d.max_calls) {
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
                emcc_trunk: cluster.emcc.visiting_phones.get(device).cloned(),
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
        crate::net::counters::count(crate::net::counters::CALLS_ATTEMPTED, &[]);
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
                    request,
                }),
                at_route_point: None,
                service_ctx: None,
                held: BTreeSet::new(),
                dialled: destination.to_string(),
                reached: String::new(),
                started: now.unix,
                delivered: false,
                moving: None,
            },
        );
        // The user's phone answers in time or the attempt ends (see `no_answer`).
        self.arm_no_answer(id, now.mono + answer_within);
        // The phone shows whom it is calling.
        let presented = (destination.to_string(), Some(destination.to_string()));
        self.fork_as(
            id,
            peer,
            &target,
            line,
            Some(device.to_string()),
            presented,
            extra,
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

    /// Ends a third-party call that has not connected, whatever stage it is at: the
    /// destination's forks are cancelled and the user's phone released (see `fail_call`);
    /// a connected one is hung up.
    pub(super) fn end_third_party(
        &mut self,
        call: u64,
        status: u16,
        reason: &str,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state == CallState::Connected {
            self.hang_up(call, None, now, out);
            return;
        }
        let forks: Vec<usize> = (1..c.legs.len()).collect();
        for i in forks {
            self.cancel_leg(call, i, now, out);
        }
        self.fail_call(call, status, reason, now, out);
    }

    /// The node is stopping: every call still being set up ends now, so no phone is left
    /// ringing (or answered and waiting for an ACK) by a node that will never finish the call.
    /// Callers still waiting are answered 503; calls already connected are left to their phones
    /// (their media flows phone to phone).
    pub fn on_shutdown(&mut self, now: Now) -> Vec<Out> {
        let mut out = Vec::new();
        // A call a service of this node answered at a route point (a page) ends with the
        // service: its caller gets a BYE rather than a call to nobody.
        let mut served: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.state == CallState::Connected && c.at_route_point.is_some() && c.legs.len() == 1
            })
            .map(|(id, _)| *id)
            .collect();
        served.sort_unstable();
        for call in served {
            self.hang_up(call, None, now, &mut out);
        }
        let mut setting_up: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.state == CallState::Routing)
            .map(|(id, _)| *id)
            .collect();
        setting_up.sort_unstable();
        for call in setting_up {
            if self
                .calls
                .get(&call)
                .is_some_and(|c| c.third_party.is_some())
            {
                self.end_third_party(
                    call,
                    503,
                    "Service Unavailable (the node is shutting down)",
                    now,
                    &mut out,
                );
                continue;
            }
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
                503,
                "Service Unavailable (the node is shutting down)",
                now,
                &mut out,
            );
        }
        out
    }

    /// A response from the user's phone in a third-party call.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn originator_response(
        &mut self,
        cluster: &Cluster,
        registrar: &dyn Registrations,
        call: u64,
        resp: Response,
        to_tag: Option<String>,
        now: Now,
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
            super::legs::learn_dialog(leg, &resp);
            if cancelled {
                self.send_ack(call, 0, None, out);
                self.send_bye(call, 0, now, out);
                return;
            }
            // Answered in time: the timer is the destination's from now on.
            if let Some(at) = c.no_answer_at.take() {
                self.timers.remove(&(at, call));
            }
            let Some(c) = self.calls.get_mut(&call) else {
                return;
            };
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
            if let Some(id) = c.third_party.as_mut().and_then(|t| t.reply.take()) {
                out.push(Out::Reply(id, Reply::Call(Ok(call))));
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
}
