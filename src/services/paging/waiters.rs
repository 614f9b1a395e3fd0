//! Waiting for a page report (`GET /ucm/paging/pages?call_id=ID&wait_ms=MS`), woken by the
//! event, not by polling.
//!
//! A waiter looks once, then sleeps until the paging code says a report was stored for its
//! Call-ID ([`ReportWaiters::stored`]), or its time is up. Reports another node stores in the
//! same database wake them through the change feed (`super::feed`, PostgreSQL); one shared
//! look every [`REPORT_LOOK_INTERVAL`] while anyone waits, for all the Call-IDs waited on at
//! once, is the safety net. The database sees one query per interval whatever the number of
//! waiters, plus one per waiter when it starts and when it is woken.
//! Waiters are capped in total ([`MAX_REPORT_WAITERS`]) and per source address
//! ([`MAX_REPORT_WAITERS_PER_SOURCE`]); the request is unauthenticated.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

use super::store::PageReports;
use crate::net::per_source::PerSource;
use crate::store::{Store, StoreError};

/// Requests waiting for a report at once, on this node.
pub const MAX_REPORT_WAITERS: usize = 512;
/// Requests one source address keeps waiting at once.
pub const MAX_REPORT_WAITERS_PER_SOURCE: usize = 8;
/// How often the database is asked for reports other nodes stored, while anyone waits: the
/// safety net only, since the change feed wakes waiters as soon as another node stores a
/// report (`super::feed`).
pub const REPORT_LOOK_INTERVAL: Duration = Duration::from_secs(5);

/// Where reports are read: the store (or a counting stand-in in tests).
pub trait ReportSource: Send + Sync + 'static {
    /// The reports (JSON) of the page with this Call-ID, newest first.
    fn reports(
        &self,
        call_id: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// Which of these Call-IDs have a report stored.
    fn stored_among(
        &self,
        call_ids: Vec<String>,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
}

impl ReportSource for Store {
    async fn reports(&self, call_id: &str) -> Result<Vec<String>, StoreError> {
        self.page_reports(Some(call_id), 10).await
    }
    async fn stored_among(&self, call_ids: Vec<String>) -> Result<Vec<String>, StoreError> {
        self.page_report_call_ids(&call_ids).await
    }
}

/// Why a wait was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// This source already has [`MAX_REPORT_WAITERS_PER_SOURCE`] waiting.
    Source,
    /// [`MAX_REPORT_WAITERS`] are waiting.
    Total,
}

/// The waiting requests of one node.
pub struct ReportWaiters<S: ReportSource> {
    source: Arc<S>,
    stored: broadcast::Sender<String>,
    /// Call-IDs waited on, with how many wait for each.
    waiting: Mutex<HashMap<String, usize>>,
    per_source: Arc<PerSource>,
    total: Arc<tokio::sync::Semaphore>,
    per_source_cap: usize,
    look_interval: Duration,
    /// The shared look for other nodes' reports is running.
    looking: AtomicBool,
}

/// A waiter's registration, undone when the wait ends however it ends.
struct Registered<'a, S: ReportSource> {
    waiters: &'a ReportWaiters<S>,
    call_id: String,
}

impl<S: ReportSource> Drop for Registered<'_, S> {
    fn drop(&mut self) {
        let mut w = lock(&self.waiters.waiting);
        if let Some(n) = w.get_mut(&self.call_id) {
            *n -= 1;
            if *n == 0 {
                w.remove(&self.call_id);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<S: ReportSource> ReportWaiters<S> {
    pub fn new(source: Arc<S>) -> Arc<Self> {
        Self::with_limits(
            source,
            MAX_REPORT_WAITERS,
            MAX_REPORT_WAITERS_PER_SOURCE,
            REPORT_LOOK_INTERVAL,
        )
    }

    pub fn with_limits(
        source: Arc<S>,
        total: usize,
        per_source: usize,
        look_interval: Duration,
    ) -> Arc<Self> {
        Arc::new(ReportWaiters {
            source,
            stored: broadcast::channel(1024).0,
            waiting: Mutex::default(),
            per_source: Arc::default(),
            total: Arc::new(tokio::sync::Semaphore::new(total)),
            per_source_cap: per_source,
            look_interval,
            looking: AtomicBool::new(false),
        })
    }

    /// The paging code stored a report for `call_id`: its waiters look now.
    pub fn stored(&self, call_id: &str) {
        // No receivers (nobody waits) is not an error.
        let _ = self.stored.send(call_id.to_string());
    }

    /// Every waiter looks in the database again (the change feed reconnected: an
    /// announcement may have been missed).
    pub fn look_again(&self) {
        let ids: Vec<String> = lock(&self.waiting).keys().cloned().collect();
        for id in ids {
            self.stored(&id);
        }
    }

    /// The reports of `call_id`, waiting up to `wait` for one to be stored.
    pub async fn wait(
        self: &Arc<Self>,
        call_id: &str,
        from: IpAddr,
        wait: Duration,
    ) -> Result<Result<Vec<String>, StoreError>, Refused> {
        if wait.is_zero() {
            return Ok(self.source.reports(call_id).await);
        }
        let Some(_source_slot) = self.per_source.take(from, self.per_source_cap) else {
            return Err(Refused::Source);
        };
        let Ok(_permit) = self.total.clone().try_acquire_owned() else {
            return Err(Refused::Total);
        };
        let deadline = tokio::time::Instant::now() + wait;
        // Subscribed before the first look, so a report stored in between is not missed.
        let mut events = self.stored.subscribe();
        *lock(&self.waiting).entry(call_id.to_string()).or_insert(0) += 1;
        let _registered = Registered {
            waiters: self,
            call_id: call_id.to_string(),
        };
        self.ensure_looking();
        loop {
            match self.source.reports(call_id).await {
                Ok(rows) if rows.is_empty() => {}
                other => return Ok(other),
            }
            // Sleep until this Call-ID's report is stored (or events were missed: look again).
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Ok(id) if id == call_id => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return Ok(Ok(Vec::new())),
                    },
                    _ = tokio::time::sleep_until(deadline) => return Ok(Ok(Vec::new())),
                }
            }
        }
    }

    /// Starts the shared look for other nodes' reports unless it runs.
    fn ensure_looking(self: &Arc<Self>) {
        if self.looking.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(me.look_interval).await;
                let ids: Vec<String> = lock(&me.waiting).keys().cloned().collect();
                if ids.is_empty() {
                    me.looking.store(false, Ordering::Release);
                    // A waiter that came in meanwhile saw `looking` still set: keep going.
                    if lock(&me.waiting).is_empty() || me.looking.swap(true, Ordering::AcqRel) {
                        return;
                    }
                    continue;
                }
                match me.source.stored_among(ids).await {
                    Ok(found) => {
                        for id in found {
                            me.stored(&id);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "page reports: looking failed"),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Reports in memory, counting the queries made (no database thread: the test runs on
    /// a paused clock, which would jump while a query waited on one).
    #[derive(Default)]
    struct Counting {
        reports: Mutex<HashMap<String, Vec<String>>>,
        /// Looks for one Call-ID, and shared looks for all of them.
        one: AtomicUsize,
        shared: AtomicUsize,
    }

    impl Counting {
        fn add(&self, call_id: &str, report: &str) {
            lock(&self.reports)
                .entry(call_id.to_string())
                .or_default()
                .push(report.to_string());
        }
    }

    impl ReportSource for Counting {
        async fn reports(&self, call_id: &str) -> Result<Vec<String>, StoreError> {
            self.one.fetch_add(1, Ordering::Relaxed);
            Ok(lock(&self.reports)
                .get(call_id)
                .cloned()
                .unwrap_or_default())
        }
        async fn stored_among(&self, ids: Vec<String>) -> Result<Vec<String>, StoreError> {
            self.shared.fetch_add(1, Ordering::Relaxed);
            let r = lock(&self.reports);
            Ok(ids.into_iter().filter(|i| r.contains_key(i)).collect())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn r15_waiters_are_woken_by_the_report_not_by_polling() {
        let src = Arc::new(Counting::default());
        let interval = Duration::from_millis(100);
        let waiters = ReportWaiters::with_limits(src.clone(), 1000, 1000, interval);
        // 200 unauthenticated requests wait for Call-IDs nobody pages (long enough for many
        // shared looks), one for a page this node finishes, one for a page another node
        // stores in the same database.
        let spawn_wait = |id: String, ip: &str, wait: Duration| {
            let (w, ip): (_, IpAddr) = (waiters.clone(), ip.parse().unwrap());
            tokio::spawn(async move { w.wait(&id, ip, wait).await })
        };
        let nobody: Vec<_> = (0..200)
            .map(|i| spawn_wait(format!("nobody-{i}"), "192.0.2.1", interval * 10))
            .collect();
        let ours = spawn_wait("mine".into(), "192.0.2.2", Duration::from_secs(60));
        let theirs = spawn_wait("theirs".into(), "192.0.2.3", Duration::from_secs(60));
        for _ in 0..1_000_000 {
            if lock(&waiters.waiting).len() == 202 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(lock(&waiters.waiting).len(), 202, "every waiter registered");
        src.add("mine", "{\"n\":1}");
        waiters.stored("mine");
        let got = ours.await.unwrap().unwrap().unwrap();
        assert_eq!(got, vec!["{\"n\":1}".to_string()]);
        for t in nobody {
            assert!(t.await.unwrap().unwrap().unwrap().is_empty());
        }
        // Stored by another node: nobody calls `stored`; the shared look finds it.
        src.add("theirs", "{\"n\":2}");
        let got = theirs.await.unwrap().unwrap().unwrap();
        assert_eq!(got, vec!["{\"n\":2}".to_string()]);
        // One look per waiter when it starts, one more for each woken: however long they
        // waited. Polling every 250 ms, as before, looked 4 times a second per waiter.
        assert_eq!(src.one.load(Ordering::Relaxed), 202 + 2);
        assert!(src.shared.load(Ordering::Relaxed) >= 1);
    }

    #[tokio::test]
    async fn r15_waiters_are_capped_per_source_and_in_total() {
        let waiters =
            ReportWaiters::with_limits(Arc::new(Counting::default()), 3, 2, REPORT_LOOK_INTERVAL);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let hold = |w: Arc<ReportWaiters<Counting>>, ip: IpAddr| {
            tokio::spawn(async move { w.wait("x", ip, Duration::from_secs(600)).await })
        };
        let h1 = hold(waiters.clone(), a);
        let h2 = hold(waiters.clone(), a);
        // The two from `a` are registered once the waiting map holds them.
        let registered = |n: usize| {
            let w = waiters.clone();
            async move {
                // Bounded: the spawned waiters register within a few scheduler turns.
                for _ in 0..100_000 {
                    if lock(&w.waiting).get("x").copied() == Some(n) {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
                panic!("{n} waiters never registered");
            }
        };
        registered(2).await;
        let wait = Duration::from_secs(600);
        assert_eq!(
            waiters.wait("x", a, wait).await.unwrap_err(),
            Refused::Source
        );
        let h3 = hold(waiters.clone(), b);
        registered(3).await;
        assert_eq!(
            waiters.wait("y", b, wait).await.unwrap_err(),
            Refused::Total
        );
        // Without waiting, a request is answered whatever the caps.
        assert!(waiters
            .wait("y", a, Duration::ZERO)
            .await
            .unwrap()
            .unwrap()
            .is_empty());
        for h in [h1, h2, h3] {
            h.abort();
        }
    }
}
