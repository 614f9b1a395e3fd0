//! Automatic logouts as a schedule without I/O or clock: the times are unix seconds handed in
//! by the caller, which ends the logins that [`LogoutTimers::due`] returns and sleeps until
//! [`LogoutTimers::next_deadline`].
//!
//! One timer per device: a device holds one login at a time, so a new logout time replaces
//! the old one. A timer remembers the logout time of the login it was set for, also when it
//! fires later (a retry), so that ending the login can check it is still that login.

use std::collections::{BTreeSet, HashMap};

/// A logout that is due: end the login on `device` whose automatic logout time is
/// `logout_at` (a newer login on the device is left alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub device: String,
    pub logout_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timer {
    /// When it fires: the logout time, or later after a failed attempt.
    fire_at: i64,
    logout_at: i64,
}

/// The pending automatic logouts.
#[derive(Debug, Default)]
pub struct LogoutTimers {
    by_device: HashMap<String, Timer>,
    /// (fire_at, device), for the earliest first.
    queue: BTreeSet<(i64, String)>,
}

impl LogoutTimers {
    pub fn new() -> LogoutTimers {
        LogoutTimers::default()
    }

    /// Arms the logout of the login on `device` that ends at `logout_at`. Arming the same
    /// login again changes nothing (a pending retry keeps its time). Returns whether the
    /// schedule changed.
    pub fn schedule(&mut self, logout_at: i64, device: &str) -> bool {
        if self
            .by_device
            .get(device)
            .is_some_and(|t| t.logout_at == logout_at)
        {
            return false;
        }
        self.set(
            device,
            Timer {
                fire_at: logout_at,
                logout_at,
            },
        );
        true
    }

    /// Fires `due` again at `at` (its attempt failed), still for the same login.
    pub fn retry(&mut self, due: Due, at: i64) {
        // A login armed meanwhile on the device takes precedence.
        if self.by_device.contains_key(&due.device) {
            return;
        }
        self.set(
            &due.device,
            Timer {
                fire_at: at,
                logout_at: due.logout_at,
            },
        );
    }

    /// Forgets the device's timer (its login ended otherwise). Returns whether it had one.
    pub fn cancel(&mut self, device: &str) -> bool {
        match self.by_device.remove(device) {
            Some(t) => {
                self.queue.remove(&(t.fire_at, device.to_string()));
                true
            }
            None => false,
        }
    }

    /// When the earliest timer fires.
    pub fn next_deadline(&self) -> Option<i64> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Takes the timers that fire at `now` or earlier, earliest first.
    pub fn due(&mut self, now: i64) -> Vec<Due> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.queue.first() {
            if *at > now {
                break;
            }
            let Some((_, device)) = self.queue.pop_first() else {
                break;
            };
            if let Some(t) = self.by_device.remove(&device) {
                out.push(Due {
                    device,
                    logout_at: t.logout_at,
                });
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.by_device.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_device.is_empty()
    }

    fn set(&mut self, device: &str, timer: Timer) {
        self.cancel(device);
        self.queue.insert((timer.fire_at, device.to_string()));
        self.by_device.insert(device.to_string(), timer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manual clock: unix seconds, moved by hand.
    const T0: i64 = 1_700_000_000;

    fn due(device: &str, logout_at: i64) -> Due {
        Due {
            device: device.into(),
            logout_at,
        }
    }

    #[test]
    fn r14_an_automatic_logout_fires_at_its_time_not_before() {
        let mut t = LogoutTimers::new();
        assert_eq!(t.next_deadline(), None);
        assert!(t.schedule(T0 + 60, "A"));
        assert!(t.schedule(T0 + 30, "B"));
        assert_eq!(t.next_deadline(), Some(T0 + 30));
        assert!(t.due(T0).is_empty());
        assert!(t.due(T0 + 29).is_empty());
        assert_eq!(t.due(T0 + 30), vec![due("B", T0 + 30)]);
        assert!(t.due(T0 + 30).is_empty(), "fires once");
        assert_eq!(t.next_deadline(), Some(T0 + 60));
        assert!(t.due(T0 + 59).is_empty());
        // Late (the node was down or busy): fires at once.
        assert_eq!(t.due(T0 + 3600), vec![due("A", T0 + 60)]);
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn r14_several_logouts_due_at_once_come_earliest_first() {
        let mut t = LogoutTimers::new();
        t.schedule(T0 + 3, "C");
        t.schedule(T0 + 1, "A");
        t.schedule(T0 + 2, "B");
        assert_eq!(t.due(T0 + 2), vec![due("A", T0 + 1), due("B", T0 + 2)]);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn r14_a_failed_logout_is_armed_again_for_the_same_login() {
        let mut t = LogoutTimers::new();
        t.schedule(T0 + 10, "A");
        let d = t.due(T0 + 10);
        assert_eq!(d, vec![due("A", T0 + 10)]);
        // The database write failed: try again 5 s later, for the login ending at T0 + 10.
        t.retry(d[0].clone(), T0 + 15);
        assert_eq!(t.next_deadline(), Some(T0 + 15));
        // Re-arming the same login from the cluster's logins keeps the retry's time.
        assert!(!t.schedule(T0 + 10, "A"));
        assert!(t.due(T0 + 14).is_empty());
        assert_eq!(t.due(T0 + 15), vec![due("A", T0 + 10)]);
        assert!(t.is_empty());
    }

    #[test]
    fn r14_a_retry_yields_to_a_login_armed_meanwhile() {
        let mut t = LogoutTimers::new();
        t.schedule(T0 + 10, "A");
        let d = t.due(T0 + 10).remove(0);
        t.schedule(T0 + 100, "A");
        t.retry(d, T0 + 15);
        assert!(t.due(T0 + 15).is_empty());
        assert_eq!(t.due(T0 + 100), vec![due("A", T0 + 100)]);
    }

    #[test]
    fn r14_a_manual_logout_cancels_the_timer() {
        let mut t = LogoutTimers::new();
        t.schedule(T0 + 10, "A");
        t.schedule(T0 + 20, "B");
        assert!(t.cancel("A"));
        assert!(!t.cancel("A"));
        assert_eq!(t.next_deadline(), Some(T0 + 20));
        assert!(t.due(T0 + 10).is_empty());
        assert_eq!(t.due(T0 + 20), vec![due("B", T0 + 20)]);
    }

    #[test]
    fn r14_a_new_login_replaces_the_devices_timer() {
        let mut t = LogoutTimers::new();
        t.schedule(T0 + 10, "A");
        // The same user logs in again with a longer duration.
        assert!(t.schedule(T0 + 600, "A"));
        assert_eq!(t.len(), 1);
        assert!(t.due(T0 + 10).is_empty());
        assert_eq!(t.due(T0 + 600), vec![due("A", T0 + 600)]);
    }
}
