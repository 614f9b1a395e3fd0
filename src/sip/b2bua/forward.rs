//! Call forwarding as Unified CM applies it to a line: Forward All before anything rings, Busy
//! (the line at its busy trigger, or every phone of it in Do Not Disturb), Unregistered, and
//! No Answer on the line's timer; each forward analysed with its own CSS.

use super::*;
use crate::config::model::Device;
use crate::dialplan::pattern::{MatchResult, Pattern};

impl B2bua {
    /// The calls line `dn` carries in the cluster, as one node would count them: this node's
    /// own plus what the other nodes announced. A call another node sent here is counted by
    /// that node (its announcement), so it counts here only while that node has not said so
    /// yet or is down: the larger of the two views. On a single node, this node's count.
    pub(super) fn line_load_of(&self, dn: &DnKey) -> u32 {
        let here = self.line_load.get(dn).copied().unwrap_or(0);
        let sent_here = self.delivered_load.get(dn).copied().unwrap_or(0);
        let elsewhere = self.remote_load.get(dn).copied().unwrap_or(0);
        here.max(here.saturating_sub(sent_here) + elsewhere)
    }

    /// The calls each line carries here that no other node counts (what this node announces).
    pub(super) fn own_loads(&self) -> HashMap<DnKey, u32> {
        self.line_load
            .iter()
            .filter_map(|(dn, &n)| {
                let own = n.saturating_sub(self.delivered_load.get(dn).copied().unwrap_or(0));
                (own > 0).then(|| (dn.clone(), own))
            })
            .collect()
    }

    /// The call is offered to line `dn` now: the line it was offered to before is no longer
    /// counted for it, `dn` is. `delivered`: another node sent the call here and counts it
    /// there (`None` keeps what the call had).
    pub(super) fn set_target(&mut self, call: u64, dn: DnKey, delivered: Option<bool>) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let was = c.delivered;
        let is = delivered.unwrap_or(was);
        c.delivered = is;
        if let Some(old) = c.target_dn.replace(dn.clone()) {
            uncount(&mut self.line_load, &old);
            if was {
                uncount(&mut self.delivered_load, &old);
            }
        }
        *self.line_load.entry(dn.clone()).or_default() += 1;
        if is {
            *self.delivered_load.entry(dn).or_default() += 1;
        }
    }

    /// Call Forward All: when the line forwards everything, routes the call there (true).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_all(
        &mut self,
        cluster: &Cluster,
        registrar: &dyn Registrations,
        call: u64,
        line: &DirectoryNumber,
        dn: &DnKey,
        now: Now,
        out: &mut Vec<Out>,
    ) -> bool {
        match forward_of(line, |cf| &cf.all, &self.reached(call)) {
            Fwd::Unset => false,
            Fwd::To(dest, ctx) => {
                tracing::debug!(call, dn = %dn.0, dest, "call forward all");
                self.route(cluster, registrar, call, &dest, &ctx, now, out);
                true
            }
            Fwd::NoMatch(why) => {
                self.fail_call(call, 404, &why, now, out);
                true
            }
        }
    }

    /// Whether the line counts as busy: it already carries its busy trigger of calls, or
    /// every phone that has it is in Do Not Disturb.
    pub(super) fn is_busy(&self, line: &DirectoryNumber, dn: &DnKey, devices: &[&Device]) -> bool {
        let load = self.line_load_of(dn);
        let all_dnd = !devices.is_empty() && devices.iter().all(|d| d.do_not_disturb);
        load >= line.busy_trigger || all_dnd
    }

    /// No phone of the line is registered: Call Forward Unregistered, else 480.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn unregistered(
        &mut self,
        cluster: &Cluster,
        registrar: &dyn Registrations,
        call: u64,
        line: &DirectoryNumber,
        dn: &DnKey,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        match forward_of(line, |cf| &cf.unregistered, &self.reached(call)) {
            Fwd::To(dest, ctx) => {
                tracing::debug!(call, dn = %dn.0, dest, "call forward unregistered");
                self.route(cluster, registrar, call, &dest, &ctx, now, out);
            }
            Fwd::NoMatch(why) => self.fail_call(call, 404, &why, now, out),
            Fwd::Unset => self.fail_call(
                call,
                480,
                "Temporarily Unavailable (no device of the line is registered)",
                now,
                out,
            ),
        }
    }

    /// The line rings: Call Forward No Answer, when set, fires after the line's no-answer
    /// timer (else the cluster's).
    pub(super) fn arm_forward_no_answer(
        &mut self,
        cluster: &Cluster,
        call: u64,
        line: &DirectoryNumber,
        now: Now,
    ) {
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
            self.arm_no_answer(call, now.mono + Duration::from_secs(u64::from(secs)));
        }
    }

    /// (Re)arms the call's no-answer timer (Call Forward No Answer, route point timeout).
    pub(super) fn arm_no_answer(&mut self, call: u64, at: Instant) {
        if let Some(c) = self.calls.get_mut(&call) {
            if let Some(old) = c.no_answer_at.replace(at) {
                self.timers.remove(&(old, call));
            }
        }
        self.timers.insert((at, call));
    }

    pub(super) fn busy(
        &mut self,
        cluster: &Cluster,
        registrar: &dyn Registrations,
        call: u64,
        dn: &DnKey,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        let reached = self.reached(call);
        match cluster
            .directory_number(dn)
            .map_or(Fwd::Unset, |l| forward_of(l, |cf| &cf.busy, &reached))
        {
            Fwd::To(dest, ctx) => {
                tracing::debug!(call, dn = %dn.0, dest, "call forward busy");
                self.route(cluster, registrar, call, &dest, &ctx, now, out);
            }
            Fwd::NoMatch(why) => self.fail_call(call, 404, &why, now, out),
            Fwd::Unset => self.fail_call(call, 486, "Busy Here", now, out),
        }
    }

    pub(super) fn no_answer(
        &mut self,
        cluster: &Cluster,
        registrar: &dyn Registrations,
        call: u64,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.no_answer_at = None;
        if c.state != CallState::Routing {
            return;
        }
        // A third-party call whose user's phone did not answer in time.
        if c.third_party.is_some()
            && c.legs
                .first()
                .is_some_and(|l| l.state != LegState::Confirmed)
        {
            tracing::info!(
                call,
                "third-party call: the user's phone did not answer in time"
            );
            self.end_third_party(
                call,
                408,
                "Request Timeout (the user's phone did not answer in time)",
                now,
                out,
            );
            return;
        }
        let Some(dn) = c.target_dn.clone() else {
            return;
        };
        let target = match cluster.directory_number(&dn).map_or(Fwd::Unset, |l| {
            forward_of(l, |cf| &cf.no_answer, &c.reached)
        }) {
            Fwd::To(dest, ctx) => Ok((dest, ctx)),
            Fwd::NoMatch(why) => Err(why),
            Fwd::Unset => {
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
            }
        };
        c.at_route_point = None;
        let forks: Vec<usize> = (1..c.legs.len()).collect();
        c.superseded_legs = c.legs.len() - 1;
        for i in forks {
            self.cancel_leg(call, i, now, out);
        }
        match target {
            Ok((dest, ctx)) => {
                tracing::debug!(call, dn = %dn.0, dest, "call forward no answer");
                self.route(cluster, registrar, call, &dest, &ctx, now, out);
            }
            Err(why) => self.fail_call(call, 404, &why, now, out),
        }
    }

    /// The number that reached the call's current line (empty before any).
    fn reached(&self, call: u64) -> String {
        self.calls
            .get(&call)
            .map(|c| c.reached.clone())
            .unwrap_or_default()
    }
}

/// One call fewer on a line (entries at zero go).
pub(super) fn uncount(loads: &mut HashMap<DnKey, u32>, dn: &DnKey) {
    if let Some(n) = loads.get_mut(dn) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            loads.remove(dn);
        }
    }
}

/// What one of a line's call forwards makes of a call.
enum Fwd {
    /// The forward is not set.
    Unset,
    /// Route to this number with this search.
    To(String, CallingContext),
    /// The forward is a pattern the number that reached the line does not match (404).
    NoMatch(String),
}

/// Where one of a line's call forwards sends a call: the destination, and the search to
/// analyse it with (the forward's own CSS, else the line's). A destination that is a pattern
/// (`6XXXX`) means the number that reached the line (`reached`), when it matches.
fn forward_of(
    line: &DirectoryNumber,
    which: impl Fn(&CallForward) -> &Option<ForwardSetting>,
    reached: &str,
) -> Fwd {
    let Some(dest) = which(&line.call_forward)
        .as_ref()
        .and_then(|f| f.destination.clone())
    else {
        return Fwd::Unset;
    };
    let f = which(&line.call_forward).as_ref();
    let css = f.and_then(|f| f.css.as_deref()).or(line.css.as_deref());
    let ctx = CallingContext::css(css, None);
    match Pattern::parse(&dest) {
        Ok(p) if !p.is_literal() => {
            if p.matches(reached) == MatchResult::Complete {
                Fwd::To(reached.to_string(), ctx)
            } else {
                Fwd::NoMatch(format!(
                    "Not Found (the forward pattern {dest:?} of line {:?} does not match the dialled number {reached:?})",
                    line.pattern
                ))
            }
        }
        _ => Fwd::To(dest, ctx),
    }
}
