//! Answers to strangers (a new call from neither a registered line nor a SIP trunk): once,
//! statelessly, within a budget per source address. A retransmitting INVITE transaction
//! answering forged sources made the node a reflector (issue 15: 20,000 INVITEs drew 220,000
//! 403s).

use super::*;
use crate::sip::throttle::{LogThrottle, SourceBudget};

/// Answers one source address gets to requests from strangers per [`STRANGER_WINDOW`]; the
/// rest are dropped unanswered.
pub const STRANGER_ANSWERS_PER_WINDOW: u32 = 5;
pub const STRANGER_WINDOW: Duration = Duration::from_secs(1);

/// The strangers' budgets and the throttle of their log line.
#[derive(Debug)]
pub(super) struct Strangers {
    budget: SourceBudget,
    log: LogThrottle,
}

impl Default for Strangers {
    fn default() -> Self {
        Strangers {
            budget: SourceBudget::new(STRANGER_ANSWERS_PER_WINDOW, STRANGER_WINDOW),
            log: LogThrottle::new(),
        }
    }
}

impl B2bua {
    /// Refuses a stranger's request: one answer without retransmission (RFC 3261 8.2.7), or
    /// none once its source has had its budget; a log line a second at most.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn refuse_stranger(
        &mut self,
        key: &TransactionKey,
        req: &Request,
        peer: Peer,
        status: u16,
        reason: &str,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        let answer = self.strangers.budget.allow(peer.addr.ip(), now.mono);
        if let Some(refused) = self.strangers.log.hit(now.unix) {
            tracing::info!(source = %peer.addr, refused, reason, "request from a stranger refused (answered once, at most {STRANGER_ANSWERS_PER_WINDOW} a second per source)");
        }
        let tag = self.tag();
        let mut resp = req.make_response(status, reason, Some(&tag));
        resp.headers
            .push("Server", format!("ucm/{}", env!("CARGO_PKG_VERSION")));
        for a in self.txns.respond_statelessly(key, resp, answer) {
            match a {
                Action::Send(msg) => out.push(Out::Send { msg, to: peer }),
                Action::Terminated => self.forget(key),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse_datagram;
    use crate::sip::registrar::Bindings;

    fn invite(n: u32, from: SocketAddr) -> SipMessage {
        parse_datagram(format!(
            "INVITE sip:10001@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKs{n}\r\nFrom: <sip:666@{from}>;tag=s{n}\r\nTo: <sip:10001@127.0.0.1>\r\nCall-ID: stranger-{n}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:666@{from}>\r\nContent-Length: 0\r\n\r\n"
        ).as_bytes())
        .unwrap()
    }

    /// Issue 15's reflection: 20,000 INVITEs from an unregistered source drew 220,000
    /// retransmitted 403s. Now each gets at most one answer, never retransmitted, within the
    /// source's budget, and no transaction stays behind.
    #[test]
    fn r15_strangers_are_answered_once_within_a_budget() {
        let cluster = Cluster::new(crate::services::demo().unwrap());
        let bindings = Bindings::new("n1");
        let mut core = B2bua::new("127.0.0.1:5060".into(), 7, [9; 32]);
        let origin = Instant::now();
        let mut now = Now {
            mono: origin,
            unix: 1_700_000_000,
        };
        let stranger: SocketAddr = "127.0.0.66:5060".parse().unwrap();
        let other: SocketAddr = "127.0.0.67:5060".parse().unwrap();
        let peer = |addr| Peer {
            addr,
            transport: Transport::Udp,
        };
        let mut answers = 0;
        for n in 0..200 {
            for o in core.on_message(
                &cluster,
                &bindings,
                invite(n, stranger),
                peer(stranger),
                now,
            ) {
                if let Out::Send {
                    msg: SipMessage::Response(r),
                    to,
                } = o
                {
                    assert_eq!((r.status, to.addr), (403, stranger));
                    answers += 1;
                }
            }
        }
        assert_eq!(answers, STRANGER_ANSWERS_PER_WINDOW);
        assert_eq!(
            core.summary().transactions,
            0,
            "no state kept for strangers"
        );
        // Another source has its own budget.
        let out = core.on_message(&cluster, &bindings, invite(999, other), peer(other), now);
        assert_eq!(out.len(), 1);
        // Nothing is retransmitted, however long we wait.
        for _ in 0..70 {
            now.mono += Duration::from_secs(1);
            now.unix += 1;
            assert!(core.on_timers(&cluster, &bindings, now).is_empty());
        }
        assert_eq!(core.next_deadline(), None);
        // The next window brings a new budget.
        let out = core.on_message(
            &cluster,
            &bindings,
            invite(1000, stranger),
            peer(stranger),
            now,
        );
        assert_eq!(out.len(), 1);
    }
}
