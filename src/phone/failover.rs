//! Which Unified CM of its group the phone registers with: failover to the next member when
//! its node stops answering, fallback to a higher-priority member when that one answers
//! again. Sans-IO: it takes answers and the time and returns [`Action`]s; the user agent
//! sends the probes and moves the registrations.
//!
//! Cisco SIP phones register with the first member of the device pool's Unified CM group and
//! notice that their node is gone when a keepalive or a REGISTER refresh goes unanswered
//! after its retransmissions (the SIP profile's "Timer Keep Alive Expires", "Timer Register
//! Expires", "Timer T1" and "Retry non-INVITE"); they then register with the next member,
//! and while there keep checking the higher-priority members to fall back to the first one
//! that answers ("Unified CM fallback" in the Cisco IP Phone administration guides). This
//! machine keeps that shape. Its keepalive is an OPTIONS probe, which every node answers
//! without state (a REGISTER refresh at this rate would rewrite bindings in the database),
//! and its timers are seconds rather than Cisco's minutes so a lab sees a failover within a
//! few seconds of a node's death.

use std::time::{Duration, Instant};

/// How often the phone checks its nodes and how patient it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverSettings {
    /// Between two probes of one node.
    pub interval: Duration,
    /// How long a probe waits for its answer.
    pub timeout: Duration,
    /// Unanswered probes in a row after which the active node counts as gone.
    pub misses: u32,
    /// Answered probes in a row after which a higher-priority node counts as back (so a node
    /// still starting is not taken at its first answer).
    pub rises: u32,
}

impl Default for FailoverSettings {
    fn default() -> Self {
        FailoverSettings {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            misses: 2,
            rises: 2,
        }
    }
}

impl FailoverSettings {
    /// Probes every `interval`, each waiting half of it.
    pub fn every(interval: Duration) -> FailoverSettings {
        let interval = interval.max(Duration::from_millis(50));
        FailoverSettings {
            interval,
            timeout: interval / 2,
            ..FailoverSettings::default()
        }
    }
}

/// Why the phone moves its registrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Move {
    /// The active node stopped answering: on to the next member.
    Failover,
    /// A higher-priority member answers again: back to it.
    Fallback,
}

/// What the user agent must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send probe `id` to member `node` (index in priority order).
    Probe { node: usize, id: u64 },
    /// Register every line with member `node`, leaving member `from`.
    Register { node: usize, from: usize, why: Move },
}

#[derive(Debug, Clone)]
struct Probe {
    next_at: Instant,
    /// The probe in flight and when it counts as unanswered.
    pending: Option<(u64, Instant)>,
    misses: u32,
    answers: u32,
}

/// The failover state of one phone over the members of its Unified CM group.
#[derive(Debug, Clone)]
pub struct Failover {
    s: FailoverSettings,
    active: usize,
    probes: Vec<Probe>,
    next_id: u64,
    /// Moves made (failovers and fallbacks).
    pub moves: u64,
}

impl Failover {
    /// Registered (or registering) with member 0 of `members` at `now`.
    pub fn new(members: usize, s: FailoverSettings, now: Instant) -> Failover {
        Failover {
            s,
            active: 0,
            probes: (0..members)
                .map(|_| Probe {
                    next_at: now + s.interval,
                    pending: None,
                    misses: 0,
                    answers: 0,
                })
                .collect(),
            next_id: 1,
            moves: 0,
        }
    }

    /// The member registered with, in priority order.
    pub fn active(&self) -> usize {
        self.active
    }

    /// The active member and the higher-priority ones are probed; with one member there is
    /// nowhere to go.
    fn watched(&self, i: usize) -> bool {
        self.probes.len() > 1 && i <= self.active
    }

    /// The earliest moment [`Failover::on_timers`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.probes
            .iter()
            .enumerate()
            .filter(|(i, _)| self.watched(*i))
            .map(|(_, p)| p.pending.map_or(p.next_at, |(_, d)| d))
            .min()
    }

    /// Counts unanswered probes, fails over when the active member missed too many, and
    /// sends the probes that are due.
    pub fn on_timers(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        for i in 0..self.probes.len() {
            if !self.watched(i) {
                continue;
            }
            let Some(p) = self.probes.get_mut(i) else {
                continue;
            };
            if p.pending.is_some_and(|(_, d)| d <= now) {
                p.pending = None;
                p.misses += 1;
                p.answers = 0;
                if i == self.active && p.misses >= self.s.misses {
                    let next = (i + 1) % self.probes.len();
                    self.switch(next, now);
                    out.push(Action::Register {
                        node: next,
                        from: i,
                        why: Move::Failover,
                    });
                    // The members now watched start from a clean slate.
                    continue;
                }
            }
        }
        for i in 0..self.probes.len() {
            if !self.watched(i) {
                continue;
            }
            let id = self.next_id;
            let Some(p) = self.probes.get_mut(i) else {
                continue;
            };
            if p.pending.is_none() && p.next_at <= now {
                p.pending = Some((id, now + self.s.timeout));
                p.next_at = now + self.s.interval;
                self.next_id += 1;
                out.push(Action::Probe { node: i, id });
            }
        }
        out
    }

    /// Probe `id` was answered (any final response: the node is alive).
    pub fn on_answer(&mut self, id: u64, now: Instant) -> Vec<Action> {
        let Some(i) = self
            .probes
            .iter()
            .position(|p| p.pending.is_some_and(|(p, _)| p == id))
        else {
            return Vec::new();
        };
        let Some(p) = self.probes.get_mut(i) else {
            return Vec::new();
        };
        p.pending = None;
        p.misses = 0;
        p.answers += 1;
        if i < self.active && p.answers >= self.s.rises {
            let from = self.active;
            self.switch(i, now);
            return vec![Action::Register {
                node: i,
                from,
                why: Move::Fallback,
            }];
        }
        Vec::new()
    }

    fn switch(&mut self, to: usize, now: Instant) {
        self.active = to;
        self.moves += 1;
        let interval = self.s.interval;
        for p in &mut self.probes {
            // Give the new node a full interval to take the registrations.
            p.pending = None;
            p.misses = 0;
            p.answers = 0;
            p.next_at = now + interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the timers up to `until` in 50 ms steps, answering the probes sent to the members
    /// `alive` says are up; returns the moves made.
    fn run(
        f: &mut Failover,
        t: &mut Instant,
        until: Instant,
        alive: &dyn Fn(usize) -> bool,
    ) -> Vec<(Instant, Action)> {
        let mut moves = Vec::new();
        while *t < until {
            *t += Duration::from_millis(50);
            for a in f.on_timers(*t) {
                match a {
                    Action::Probe { node, id } if alive(node) => {
                        moves.extend(f.on_answer(id, *t).into_iter().map(|a| (*t, a)));
                    }
                    Action::Probe { .. } => {}
                    other => moves.push((*t, other)),
                }
            }
        }
        moves
    }

    #[test]
    fn r16_fails_over_to_the_next_member_and_falls_back_to_the_first() {
        let t0 = Instant::now();
        let mut t = t0;
        let mut f = Failover::new(3, FailoverSettings::default(), t0);
        assert_eq!(f.active(), 0);
        // All up: only the active member is probed, nothing moves.
        assert!(run(&mut f, &mut t, t0 + Duration::from_secs(10), &|_| true).is_empty());
        assert_eq!(f.active(), 0);
        // Member 0 dies at 10 s: the phone is on member 1 within 3 s.
        let died = t;
        let moves = run(&mut f, &mut t, died + Duration::from_secs(10), &|n| n != 0);
        assert_eq!(moves.len(), 1, "{moves:?}");
        let (at, a) = &moves[0];
        assert_eq!(
            *a,
            Action::Register {
                node: 1,
                from: 0,
                why: Move::Failover
            }
        );
        assert!(*at - died <= Duration::from_secs(3), "{:?}", *at - died);
        assert_eq!(f.active(), 1);
        // Member 1 dies too: on to member 2.
        let until = t + Duration::from_secs(10);
        let moves = run(&mut f, &mut t, until, &|n| n == 2);
        assert_eq!(
            moves.iter().map(|(_, a)| a.clone()).collect::<Vec<_>>(),
            vec![Action::Register {
                node: 2,
                from: 1,
                why: Move::Failover
            }]
        );
        // Member 0 returns: back to it after two answered probes, not at the first.
        let back = t;
        let moves = run(&mut f, &mut t, back + Duration::from_secs(10), &|n| n != 1);
        assert_eq!(moves.len(), 1, "{moves:?}");
        let (at, a) = &moves[0];
        assert_eq!(
            *a,
            Action::Register {
                node: 0,
                from: 2,
                why: Move::Fallback
            }
        );
        assert!(*at - back >= Duration::from_secs(1), "{:?}", *at - back);
        assert!(*at - back <= Duration::from_secs(3), "{:?}", *at - back);
        assert_eq!((f.active(), f.moves), (0, 3));
        // Back on member 0, the others are no longer probed.
        let mut probed = Vec::new();
        for _ in 0..100 {
            t += Duration::from_millis(50);
            for a in f.on_timers(t) {
                if let Action::Probe { node, id } = a {
                    probed.push(node);
                    f.on_answer(id, t);
                }
            }
        }
        assert!(!probed.is_empty() && probed.iter().all(|n| *n == 0));
    }

    #[test]
    fn one_member_is_never_probed_and_a_late_answer_counts_for_nothing() {
        let t0 = Instant::now();
        let mut f = Failover::new(1, FailoverSettings::default(), t0);
        assert_eq!(f.next_deadline(), None);
        assert!(f.on_timers(t0 + Duration::from_secs(60)).is_empty());
        let mut f = Failover::new(2, FailoverSettings::default(), t0);
        let t = t0 + Duration::from_secs(1);
        let [Action::Probe { node: 0, id }] = f.on_timers(t)[..] else {
            panic!("no probe")
        };
        // Unanswered in time: one miss; its answer arriving later changes nothing.
        assert!(f.on_timers(t + Duration::from_millis(600)).is_empty());
        assert!(f.on_answer(id, t + Duration::from_millis(700)).is_empty());
        assert_eq!(f.active(), 0);
    }
}
