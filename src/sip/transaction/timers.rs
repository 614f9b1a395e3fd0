//! RFC 3261 timer values (table 4) and the deadline helpers every transaction uses.

use std::time::{Duration, Instant};

/// How long an INVITE server transaction waits for the TU's first response
/// before it sends 100 Trying itself (RFC 3261 17.2.1).
pub const TRYING_DELAY: Duration = Duration::from_millis(200);

/// Lower bound of Timer D on unreliable transports (RFC 3261 17.1.1.2).
const TIMER_D_MIN: Duration = Duration::from_secs(32);

/// Upper bound applied to T1, T2 and T4 so that deadline arithmetic never
/// overflows.
pub(super) const MAX_TIMER: Duration = Duration::from_secs(3600);

/// Lower bound applied to T1 so that retransmission intervals are never zero.
const MIN_T1: Duration = Duration::from_millis(1);

/// The base timer values of RFC 3261 17 (table 4). The other timers derive
/// from them: B, F, H, J, L = 64*T1; D = max(32 s, 64*T1) on unreliable
/// transports; K, I = T4 on unreliable transports; D, K, I, J = 0 on reliable
/// ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate, 500 ms.
    pub t1: Duration,
    /// Maximum retransmission interval of non-INVITE requests and INVITE
    /// responses, 4 s.
    pub t2: Duration,
    /// Maximum time a message remains in the network, 5 s.
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// Values clamped to sane ranges (1 ms <= T1 <= T2 <= 1 h, T4 <= 1 h).
    pub(super) fn sane(self) -> Timers {
        let t1 = self.t1.clamp(MIN_T1, MAX_TIMER);
        Timers {
            t1,
            t2: self.t2.clamp(t1, MAX_TIMER),
            t4: self.t4.min(MAX_TIMER),
        }
    }

    /// 64*T1: Timers B, F, H, J and L.
    pub fn transaction_timeout(&self) -> Duration {
        self.sane().t1 * 64
    }

    pub(super) fn timer_d(&self) -> Duration {
        self.transaction_timeout().max(TIMER_D_MIN)
    }
}

pub(super) fn due(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|d| d <= now)
}

pub(super) fn earliest(deadlines: &[Option<Instant>]) -> Option<Instant> {
    deadlines.iter().flatten().min().copied()
}
