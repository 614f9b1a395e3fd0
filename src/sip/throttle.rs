//! Bounded answers and log lines for strangers: a per-source budget of answers
//! ([`SourceBudget`]) and a log line at most once per interval with the count of what it
//! stood for ([`LogThrottle`]). Both are handed the time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Sources a [`SourceBudget`] remembers; when full, expired windows are dropped, and when
/// most are live the table starts over.
pub const MAX_TRACKED_SOURCES: usize = 16_384;

/// At most `per_window` answers to each source address per `window`.
#[derive(Debug)]
pub struct SourceBudget {
    per_window: u32,
    window: Duration,
    /// Per source: when its window began and how many answers it had in it.
    seen: HashMap<IpAddr, (Instant, u32)>,
}

impl SourceBudget {
    pub fn new(per_window: u32, window: Duration) -> SourceBudget {
        SourceBudget {
            per_window,
            window,
            seen: HashMap::new(),
        }
    }

    /// Whether `source` may have one more answer at `now` (and counts it).
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        if self.seen.len() >= MAX_TRACKED_SOURCES && !self.seen.contains_key(&source) {
            let window = self.window;
            self.seen
                .retain(|_, (start, _)| now.saturating_duration_since(*start) < window);
            // Still full of live windows: start over (amortised O(1) per source; forgetting
            // gives each source at most one fresh budget per MAX_TRACKED_SOURCES newcomers).
            if self.seen.len() >= MAX_TRACKED_SOURCES / 2 {
                self.seen.clear();
            }
        }
        let e = self.seen.entry(source).or_insert((now, 0));
        if now.saturating_duration_since(e.0) >= self.window {
            *e = (now, 0);
        }
        if e.1 >= self.per_window {
            return false;
        }
        e.1 += 1;
        true
    }
}

/// One log line per second at most, saying how many events it stands for: a flood of
/// refusals must not become a flood of log lines (each line costs more than the refusal).
#[derive(Debug, Default)]
pub struct LogThrottle {
    count: AtomicU64,
    last: AtomicI64,
}

impl LogThrottle {
    pub const fn new() -> LogThrottle {
        LogThrottle {
            count: AtomicU64::new(0),
            last: AtomicI64::new(i64::MIN),
        }
    }

    /// Counts an event at `now` (Unix seconds); `Some(n)` when a line is due now, `n` the
    /// events since the last line (this one included).
    pub fn hit(&self, now: i64) -> Option<u64> {
        self.count.fetch_add(1, Relaxed);
        let last = self.last.load(Relaxed);
        if now != last
            && self
                .last
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            return Some(self.count.swap(0, Relaxed));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_budget_per_window() {
        let mut b = SourceBudget::new(2, Duration::from_secs(1));
        let t = Instant::now();
        let a: IpAddr = "127.0.0.5".parse().unwrap();
        let c: IpAddr = "127.0.0.6".parse().unwrap();
        assert!(b.allow(a, t));
        assert!(b.allow(a, t));
        assert!(!b.allow(a, t + Duration::from_millis(500)));
        assert!(b.allow(c, t), "another source has its own budget");
        assert!(b.allow(a, t + Duration::from_secs(1)), "a new window");
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut b = SourceBudget::new(1, Duration::from_secs(60));
        let t = Instant::now();
        for i in 0..(MAX_TRACKED_SOURCES as u32 + 10) {
            assert!(b.allow(IpAddr::from(i.to_be_bytes()), t));
        }
        assert!(b.seen.len() <= MAX_TRACKED_SOURCES);
    }

    #[test]
    fn log_lines_carry_the_count() {
        let l = LogThrottle::new();
        assert_eq!(l.hit(100), Some(1));
        assert_eq!(l.hit(100), None);
        assert_eq!(l.hit(100), None);
        assert_eq!(l.hit(101), Some(3));
    }
}
