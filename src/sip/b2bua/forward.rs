//! Call forwarding: Busy and No Answer (with its timer), and where a forward leads.

use super::*;

impl B2bua {
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
        registrar: &Registrar,
        call: u64,
        dn: &DnKey,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        match cluster
            .directory_number(dn)
            .and_then(|l| forward_of(l, |cf| &cf.busy))
        {
            Some((dest, ctx)) => {
                tracing::debug!(call, dn = %dn.0, dest, "call forward busy");
                self.route(cluster, registrar, call, &dest, &ctx, now, out);
            }
            None => self.fail_call(call, 486, "Busy Here", now, out),
        }
    }

    pub(super) fn no_answer(
        &mut self,
        cluster: &Cluster,
        registrar: &Registrar,
        call: u64,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.no_answer_at = None;
        if c.state != CallState::Routing {
            return;
        }
        let Some(dn) = c.target_dn.clone() else {
            return;
        };
        let Some((dest, ctx)) = cluster
            .directory_number(&dn)
            .and_then(|l| forward_of(l, |cf| &cf.no_answer))
        else {
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
        };
        c.at_route_point = None;
        let forks: Vec<usize> = (1..c.legs.len()).collect();
        c.superseded_legs = c.legs.len() - 1;
        for i in forks {
            self.cancel_leg(call, i, now, out);
        }
        tracing::debug!(call, dn = %dn.0, dest, "call forward no answer");
        self.route(cluster, registrar, call, &dest, &ctx, now, out);
    }
}

/// Where one of a line's call forwards sends a call: the destination, and the search to
/// analyse it with (the forward's own CSS, else the line's). `None` when it is not set.
pub(super) fn forward_of(
    line: &DirectoryNumber,
    which: impl Fn(&CallForward) -> &Option<ForwardSetting>,
) -> Option<(String, CallingContext)> {
    let f = which(&line.call_forward).as_ref()?;
    let dest = f.destination.clone()?;
    let css = f.css.as_deref().or(line.css.as_deref());
    Some((dest, CallingContext::css(css, None)))
}
