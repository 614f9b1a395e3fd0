//! Rate-limited warnings: a flood of strangers (refused connections, bad requests) must not
//! become a flood of log lines. The first event in a window is logged; the rest are counted
//! and the count goes out with the next line that is let through.
//!
//! ```
//! use std::time::Instant;
//! use ucm::net::lograte::{LogRate, LOG_RATE_WINDOW};
//!
//! static REFUSED: LogRate = LogRate::new(LOG_RATE_WINDOW);
//! let peer = "192.0.2.1:5060";
//! if let Some(suppressed) = REFUSED.allow(Instant::now()) {
//!     tracing::warn!(%peer, suppressed, "connection limit reached; closing");
//! }
//! ```

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The default window: at most one line per kind of warning every this long.
pub const LOG_RATE_WINDOW: Duration = Duration::from_secs(10);

/// One kind of repeated warning.
#[derive(Debug)]
pub struct LogRate {
    window: Duration,
    state: Mutex<RateState>,
}

#[derive(Debug)]
struct RateState {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogRate {
    pub const fn new(window: Duration) -> LogRate {
        LogRate {
            window,
            state: Mutex::new(RateState {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when a line should be written now, `n` being how many were held back since
    /// the last one; `None` when this one is only counted.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.last {
            Some(last) if now.saturating_duration_since(last) < self.window => {
                s.suppressed += 1;
                None
            }
            _ => {
                s.last = Some(now);
                Some(std::mem::take(&mut s.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r15_repeated_warnings_are_counted_not_written() {
        let rate = LogRate::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(rate.allow(t0), Some(0), "the first is written");
        // 4,097 more within the window: none written, all counted.
        for i in 0..4097u64 {
            assert_eq!(rate.allow(t0 + Duration::from_millis(i % 9_999)), None);
        }
        assert_eq!(
            rate.allow(t0 + Duration::from_secs(10)),
            Some(4097),
            "the next line carries the count"
        );
        assert_eq!(rate.allow(t0 + Duration::from_secs(11)), None);
        assert_eq!(rate.allow(t0 + Duration::from_secs(25)), Some(1));
    }
}
