//! The change feed: how the nodes of a cluster on one PostgreSQL database learn each other's
//! changes at once. Changes are announced by the database itself (`NOTIFY ucm_changes` from
//! triggers, delivered at commit; see migrations 0010 and 0011) as `<kind> <unix ms> <payload>`;
//! each node listens on its own connection. The node core reads its own kinds (definition
//! imports, registrations) and hands every other kind to the service that declared it
//! ([`FeedHook`], on the service's `ServiceSpec`): each hook runs on every node, whether or not
//! the node runs its service, decodes its own payload and applies it (by version, so order and
//! duplicates do not matter).
//!
//! A node that loses the feed's connection says so (services that need the database answer
//! their database error, `/healthz` answers 503), reconnects, has every hook read its state
//! again ([`FeedHook::resync`]), then serves again: nothing committed while it was away is
//! missed. On SQLite there is one node and no feed: its own writes apply directly.
//!
//! Registrations travel the same way (migration 0011): every node keeps every other node's
//! bindings in memory ([`crate::sip::registrar::Registrar::learn`]), so it routes a call to a
//! phone registered elsewhere through that phone's node, and refuses a second registrant of a
//! device another node holds by the same rule as that node. The window: a registration is
//! known elsewhere once its node has written it behind (a batch, milliseconds) and the feed
//! has carried it (its lag); two registrants racing on two nodes within that window can both
//! be accepted, and the later write wins in every node's memory.
//!
//! The heartbeat keeps the node's row in `cluster_nodes` alive (both backends).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::NodeState;
use crate::dialplan::analysis::DnKey;
use crate::store::{Backend, NodeRow, RegistrationRow, StoreError};

/// Calls per line, as announced (`[dn, partition, calls]`).
type LoadList = Vec<(String, Option<String>, u32)>;

/// The channel every node listens on.
pub const CHANNEL: &str = "ucm_changes";
/// How long a node waits before trying to reconnect its feed.
pub const FEED_RETRY: Duration = Duration::from_millis(500);
/// How often a node refreshes its row in `cluster_nodes`.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A node whose heartbeat is older than this is down (`ucm cluster status`).
pub const NODE_DOWN_AFTER: Duration = Duration::from_secs(3);
/// The heartbeat's key for the devices on a call on the node (a JSON array of names).
pub const BUSY_DEVICES: &str = "busy_devices";
/// The heartbeat's key for the calls each line carries at the node that no other node counts
/// (a JSON array of `[dn, partition or null, calls]`).
pub const LINE_LOADS: &str = "line_loads";
/// A `busy` announcement longer than this (bytes) says `?` instead of its list (PostgreSQL's
/// NOTIFY payload is at most 8,000 bytes): the node's heartbeat carries the list then.
const MAX_BUSY_PAYLOAD: usize = 7000;
/// How long the busy announcer gathers line events before asking call control once.
const BUSY_COALESCE: Duration = Duration::from_millis(5);
/// How long the heartbeat waits for call control's busy devices (else it reports none).
const BUSY_ASK_TIMEOUT: Duration = Duration::from_millis(300);
/// How many recent propagation delays a node keeps for its p50/p99.
pub const LAG_SAMPLES: usize = 4096;

/// One announcement of the feed as a service's hook receives it: `<kind> <at_ms> <payload>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement<'a> {
    pub kind: &'a str,
    /// When the change was written (unix milliseconds, the database's clock).
    pub at_ms: i64,
    /// What follows the time: the service's own encoding.
    pub payload: &'a str,
}

/// What a hook's work returns.
pub type HookFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A service's part in the change feed, declared on its `ServiceSpec` and registered with
/// every node ([`Feed::add_hook`]) whichever services the node runs: what another node's
/// change of the service's state means here (its logins change every node's configuration
/// files and call routing, for instance).
#[derive(Clone, Copy)]
pub struct FeedHook {
    /// How logs name the service.
    pub service: &'static str,
    /// The announcement kinds it reads (the payload's first word).
    pub kinds: &'static [&'static str],
    /// One announcement of its kinds. `Ok(true)`: a change this node had not seen was
    /// read (its delay counts in the feed's lag figures). An error is a database error: the
    /// feed reconnects and resynchronises rather than miss the change.
    pub on_change: for<'a> fn(&'a NodeState, Announcement<'a>) -> HookFuture<'a, bool>,
    /// Reads everything of the service again and applies what is newer than this node's view:
    /// at start, and whenever the feed reconnects.
    pub resync: for<'a> fn(&'a NodeState) -> HookFuture<'a, ()>,
    /// What the node reports of the service in its heartbeat (`cluster_nodes.status`).
    pub figures: fn(&NodeState) -> Vec<(&'static str, serde_json::Value)>,
    /// Derives again what the service derived from the definition and keeps beside it, once
    /// the node serves a new definition (an edit made here, another node's edit or a
    /// definition import heard through the feed); `None`: the service keeps nothing.
    pub on_definition: Option<for<'a> fn(&'a NodeState) -> HookFuture<'a, ()>>,
}

/// The feed's state on one node.
pub struct Feed {
    /// False while the node cannot reach the database through its feed.
    healthy: AtomicBool,
    /// Recent delays (ms) from a change's write in the database to its application here.
    lags: Mutex<LagWindow>,
    /// The services' hooks, called for the kinds they declared.
    hooks: Mutex<Vec<FeedHook>>,
    /// The digest of the definition the node runs.
    digest: Mutex<Option<String>>,
    /// Held while the node swaps its definition: the feed's reload and an edit made here
    /// (which adopts what it committed) must not cross, or an older definition could win.
    swapping: tokio::sync::Mutex<()>,
    /// Made at start: this run of the node.
    pub instance: String,
    pub started_ms: i64,
    /// The devices on a call at each other node, as their last `busy` announcements said.
    busy: Mutex<std::collections::HashMap<String, BusyReport>>,
    /// What the last heartbeats of the other nodes that are up said of their lines' calls
    /// (the fallback when the feed has not said, or said `?`), and the nodes that are down.
    heartbeats: Mutex<HeartbeatLines>,
}

/// The other nodes' lines as their heartbeats said, and which nodes are down.
#[derive(Default)]
struct HeartbeatLines {
    /// node -> (its run, when it wrote, its calls per line).
    up: std::collections::HashMap<String, (String, i64, std::collections::HashMap<DnKey, u32>)>,
    down: std::collections::HashSet<String>,
}

/// One node's devices on a call, as its last `busy` announcement said.
#[derive(Debug, Clone)]
struct BusyReport {
    instance: String,
    at_ms: i64,
    /// `None`: too many to announce (its heartbeat has them).
    devices: Option<std::collections::HashSet<String>>,
    /// The calls each line carries there (that no other node counts); `None`: not said, or
    /// too many to announce (its heartbeat has them).
    lines: Option<std::collections::HashMap<DnKey, u32>>,
}

#[derive(Default)]
struct LagWindow {
    samples: VecDeque<i64>,
    total: u64,
}

/// Percentiles of the feed's recent propagation delays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LagFigures {
    /// Changes applied from the feed since the node started.
    pub events: u64,
    pub p50_ms: i64,
    pub p99_ms: i64,
    pub max_ms: i64,
}

impl Feed {
    pub fn new(digest: Option<String>) -> Feed {
        use rand::Rng;
        let started_ms = unix_ms();
        Feed {
            healthy: AtomicBool::new(true),
            lags: Mutex::new(LagWindow::default()),
            hooks: Mutex::default(),
            digest: Mutex::new(digest),
            swapping: tokio::sync::Mutex::new(()),
            instance: format!(
                "{}-{started_ms}-{:08x}",
                std::process::id(),
                rand::thread_rng().gen::<u32>()
            ),
            started_ms,
            busy: Mutex::default(),
            heartbeats: Mutex::default(),
        }
    }

    /// The calls each line carries at the other nodes that are up, summed: each node's last
    /// announcement on the feed, or its last heartbeat when that is newer, of another run, or
    /// the announcement did not list them.
    pub fn remote_line_loads(&self) -> std::collections::HashMap<DnKey, u32> {
        let busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let hb = self.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
        let mut nodes: std::collections::BTreeSet<&str> = busy.keys().map(String::as_str).collect();
        nodes.extend(hb.up.keys().map(String::as_str));
        let mut sum: std::collections::HashMap<DnKey, u32> = Default::default();
        for node in nodes {
            if hb.down.contains(node) {
                continue;
            }
            let beat = hb.up.get(node);
            let announced = busy.get(node).and_then(|r| {
                let current =
                    beat.is_none_or(|(instance, at, _)| &r.instance == instance || r.at_ms >= *at);
                r.lines.as_ref().filter(|_| current)
            });
            if let Some(lines) = announced.or(beat.map(|(_, _, l)| l)) {
                for (dn, n) in lines {
                    *sum.entry(dn.clone()).or_default() += n;
                }
            }
        }
        sum
    }

    /// The devices on a call at node `node` (run `instance`), as the change feed last said:
    /// `None` when it has said nothing of this run yet, or too many to announce (then its
    /// heartbeat says).
    pub fn busy_of(&self, node: &str, instance: &str) -> Option<std::collections::HashSet<String>> {
        let g = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        g.get(node)
            .filter(|r| r.instance == instance)
            .and_then(|r| r.devices.clone())
    }

    /// Keeps a newer busy report of another node; whether it was newer.
    fn learn_busy(&self, node: &str, report: BusyReport) -> bool {
        let mut g = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        match g.get(node) {
            Some(old) if old.instance == report.instance && old.at_ms > report.at_ms => false,
            _ => {
                g.insert(node.to_string(), report);
                true
            }
        }
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    fn set_healthy(&self, ok: bool) {
        if self.healthy.swap(ok, Ordering::AcqRel) != ok {
            if ok {
                tracing::info!("change feed: database reachable again, resynchronised");
            } else {
                tracing::warn!("change feed: database unreachable; services answer their database errors until it returns");
            }
        }
    }

    /// Registers a service's hook: its kinds reach it from now on.
    pub fn add_hook(&self, hook: FeedHook) {
        let mut g = self.hooks.lock().unwrap_or_else(|p| p.into_inner());
        g.push(hook);
    }

    /// The hooks registered (copied: none is held across a database read).
    pub fn hooks(&self) -> Vec<FeedHook> {
        self.hooks.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record_lag(&self, ms: i64) {
        let mut g = self.lags.lock().unwrap_or_else(|p| p.into_inner());
        if g.samples.len() == LAG_SAMPLES {
            g.samples.pop_front();
        }
        g.samples.push_back(ms.max(0));
        g.total += 1;
    }

    /// p50/p99/max of the last [`LAG_SAMPLES`] delays.
    pub fn lag(&self) -> LagFigures {
        let g = self.lags.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<i64> = g.samples.iter().copied().collect();
        v.sort_unstable();
        let pct = |p: usize| -> i64 {
            if v.is_empty() {
                0
            } else {
                v[((v.len() - 1) * p) / 100]
            }
        };
        LagFigures {
            events: g.total,
            p50_ms: pct(50),
            p99_ms: pct(99),
            max_ms: v.last().copied().unwrap_or(0),
        }
    }
}

pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One announcement of the feed.
#[derive(Debug, PartialEq, Eq)]
enum Change<'a> {
    /// A kind the node core does not read: a service's.
    Service(Announcement<'a>),
    Definition {
        at_ms: i64,
        digest: &'a str,
    },
    /// A registration written (another node's, or the echo of ours).
    Registered {
        at_ms: i64,
        row: RegistrationRow,
    },
    /// A registration removed.
    Unregistered {
        at_ms: i64,
        row: RegistrationRow,
    },
    /// A registration written that was too long to announce: read it.
    RegisteredId {
        at_ms: i64,
        device: String,
        line: String,
    },
    /// The devices on a call at a node now, and the calls on its lines:
    /// `busy <ms> <node> <instance> <d1,d2|-|?> [<lines|-|?>]` (`-` none, `?` too many to
    /// announce; the lines a JSON array of `[dn, partition or null, calls]`).
    Busy {
        at_ms: i64,
        node: &'a str,
        instance: &'a str,
        devices: Option<Vec<&'a str>>,
        lines: Option<LoadList>,
    },
}

#[derive(serde::Deserialize)]
struct RowId {
    device: String,
    line: String,
}

fn parse(payload: &str) -> Option<Change<'_>> {
    let (kind, rest) = payload.split_once(' ')?;
    let (at, rest) = rest.split_once(' ')?;
    let at_ms = at.parse().ok()?;
    match kind {
        "def" => Some(Change::Definition {
            at_ms,
            digest: rest,
        }),
        "reg" => Some(Change::Registered {
            at_ms,
            row: serde_json::from_str(rest).ok()?,
        }),
        "unreg" => Some(Change::Unregistered {
            at_ms,
            row: serde_json::from_str(rest).ok()?,
        }),
        "busy" => {
            let mut it = rest.splitn(4, ' ');
            let (node, instance, list) = (it.next()?, it.next()?, it.next()?);
            if node.is_empty() || instance.is_empty() {
                return None;
            }
            let lines = match it.next() {
                None | Some("?") => None,
                Some("-") => Some(Vec::new()),
                Some(l) => Some(serde_json::from_str::<LoadList>(l).ok()?),
            };
            let devices = match list {
                "?" => None,
                "-" => Some(Vec::new()),
                l => Some(l.split(',').filter(|d| !d.is_empty()).collect()),
            };
            Some(Change::Busy {
                at_ms,
                node,
                instance,
                devices,
                lines,
            })
        }
        "regid" => {
            let id: RowId = serde_json::from_str(rest).ok()?;
            Some(Change::RegisteredId {
                at_ms,
                device: id.device,
                line: id.line,
            })
        }
        _ if !kind.is_empty() => Some(Change::Service(Announcement {
            kind,
            at_ms,
            payload: rest,
        })),
        _ => None,
    }
}

impl NodeState {
    /// Whether the node can serve what needs the database (its feed is connected).
    pub fn database_ok(&self) -> bool {
        self.feed.healthy()
    }

    /// Follows the other nodes' changes until the node stops (PostgreSQL only; on SQLite
    /// there is no other node).
    pub async fn run_feed(self: Arc<Self>) {
        if self.store.backend() != Backend::Postgres {
            return;
        }
        let mut stop = self.stopping();
        loop {
            let mut listener = match self.connect_feed().await {
                Ok(l) => l,
                Err(e) => {
                    self.feed.set_healthy(false);
                    tracing::warn!(error = %e, "change feed: cannot reach the database");
                    tokio::select! {
                        _ = tokio::time::sleep(FEED_RETRY) => continue,
                        _ = stop.changed() => return,
                    }
                }
            };
            // Listening before reading: whatever commits from here on is either in the read
            // or announced (and applied by version, so both is harmless).
            if let Err(e) = self.resync().await {
                self.feed.set_healthy(false);
                tracing::warn!(error = %e, "change feed: resynchronising failed");
                tokio::select! {
                    _ = tokio::time::sleep(FEED_RETRY) => continue,
                    _ = stop.changed() => return,
                }
            }
            self.feed.set_healthy(true);
            loop {
                let n = tokio::select! {
                    n = listener.try_recv() => n,
                    _ = stop.changed() => return,
                };
                let applied = match n {
                    Ok(Some(n)) => self.on_change(n.payload()).await.map_err(|e| e.to_string()),
                    Ok(None) => Err("the connection closed".to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = applied {
                    // A change heard but not read, or the connection lost: reconnect and read
                    // everything again rather than miss it.
                    tracing::warn!(error = %e, "change feed: lost; reconnecting and resynchronising");
                    self.feed.set_healthy(false);
                    break;
                }
            }
        }
    }

    async fn connect_feed(&self) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
        let mut l = sqlx::postgres::PgListener::connect(self.store.url()).await?;
        l.listen(CHANNEL).await?;
        Ok(l)
    }

    /// Has every service's hook read its state again (at start, and after the feed
    /// reconnects), in the order they were registered.
    pub async fn resync_services(&self) -> Result<(), StoreError> {
        for hook in self.feed.hooks() {
            (hook.resync)(self).await?;
        }
        Ok(())
    }

    /// Reads the definition, every service's state and the registrations once and applies
    /// what is newer.
    async fn resync(&self) -> Result<(), StoreError> {
        // What other nodes announced of their busy devices may be stale now: their heartbeats
        // say until their next announcement.
        self.feed
            .busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        if let Some(d) = self.store.definition_digest().await? {
            self.reload_definition(&d).await?;
        }
        self.resync_services().await?;
        let rows = self
            .store
            .live_registrations(crate::sip::registrar::unix_now())
            .await?;
        let changed = self.registrar.resync(rows);
        if changed > 0 {
            tracing::info!(
                changed,
                "change feed: registrations of other nodes resynchronised"
            );
        }
        Ok(())
    }

    async fn on_change(&self, payload: &str) -> Result<(), StoreError> {
        let Some(change) = parse(payload) else {
            tracing::warn!(
                payload,
                "change feed: an announcement this node does not know"
            );
            return Ok(());
        };
        match change {
            Change::Service(a) => {
                let hook = self
                    .feed
                    .hooks()
                    .into_iter()
                    .find(|h| h.kinds.contains(&a.kind));
                let Some(hook) = hook else {
                    tracing::warn!(
                        payload,
                        "change feed: an announcement this node does not know"
                    );
                    return Ok(());
                };
                if (hook.on_change)(self, a).await? {
                    self.feed.record_lag(unix_ms() - a.at_ms);
                }
            }
            Change::Definition { at_ms, digest } => {
                self.reload_definition(digest).await?;
                self.feed.record_lag(unix_ms() - at_ms);
            }
            Change::Registered { at_ms, row } => {
                if row.node != self.node.name {
                    self.registrar.learn(row);
                    self.feed.record_lag(unix_ms() - at_ms);
                }
            }
            Change::Unregistered { at_ms, row } => {
                if self.registrar.forget(&row) {
                    self.feed.record_lag(unix_ms() - at_ms);
                }
            }
            Change::Busy {
                at_ms,
                node,
                instance,
                devices,
                lines,
            } => {
                let report = BusyReport {
                    instance: instance.to_string(),
                    at_ms,
                    devices: devices.map(|d| d.into_iter().map(str::to_string).collect()),
                    lines: lines.map(|l| l.into_iter().map(|(dn, pt, n)| ((dn, pt), n)).collect()),
                };
                if node != self.node.name && self.feed.learn_busy(node, report) {
                    self.feed.record_lag(unix_ms() - at_ms);
                    // Routing counts the other nodes' calls on a line at once.
                    self.call_control
                        .set_remote_line_loads(self.feed.remote_line_loads());
                }
            }
            Change::RegisteredId {
                at_ms,
                device,
                line,
            } => {
                if let Some(row) = self.store.registration(&device, &line).await? {
                    if self.registrar.learn(row) {
                        self.feed.record_lag(unix_ms() - at_ms);
                    }
                }
            }
        }
        Ok(())
    }

    /// Loads the stored definition when its digest is not the one the node runs.
    async fn reload_definition(&self, digest: &str) -> Result<(), StoreError> {
        let _swap = self.feed.swapping.lock().await;
        {
            let g = self.feed.digest.lock().unwrap_or_else(|p| p.into_inner());
            if g.as_deref() == Some(digest) {
                return Ok(());
            }
        }
        let Some(def) = self.store.load().await? else {
            return Ok(());
        };
        // The stored digest may have moved on meanwhile; the next announcement brings it.
        self.set_cluster(def);
        *self.feed.digest.lock().unwrap_or_else(|p| p.into_inner()) = Some(digest.to_string());
        self.definition_replaced().await?;
        tracing::info!(digest, "change feed: definition reloaded");
        Ok(())
    }

    /// Every service's [`FeedHook::on_definition`], after the definition was replaced.
    async fn definition_replaced(&self) -> Result<(), StoreError> {
        for hook in self.feed.hooks() {
            if let Some(f) = hook.on_definition {
                f(self).await?;
            }
        }
        Ok(())
    }

    /// Serves `def`, which an edit made on this node just committed with `digest`: at once,
    /// so a client reads its own write here without waiting for the feed. When the database
    /// has moved on meanwhile (another node's edit), the newer definition is read instead.
    pub async fn adopt_definition(
        &self,
        def: crate::config::ClusterDefinition,
        digest: &str,
    ) -> Result<(), StoreError> {
        let _swap = self.feed.swapping.lock().await;
        let stored = self.store.definition_digest().await?;
        let (def, digest) = match stored {
            Some(d) if d != digest => match self.store.load().await? {
                Some(newer) => (newer, d),
                None => return Ok(()),
            },
            _ => (def, digest.to_string()),
        };
        self.set_cluster(def);
        *self.feed.digest.lock().unwrap_or_else(|p| p.into_inner()) = Some(digest);
        self.definition_replaced().await
    }

    /// This node's row as it reports itself now; `busy`: the devices on a call here; `lines`:
    /// the calls on its lines that no other node counts.
    fn node_row(&self, busy: Vec<String>, lines: LoadList) -> NodeRow {
        NodeRow {
            name: self.node.name.clone(),
            address: self.node.address.clone(),
            services: self
                .node
                .services
                .iter()
                .map(|s| s.flag().to_string())
                .collect(),
            instance: self.feed.instance.clone(),
            pid: i64::from(std::process::id()),
            started_at: self.feed.started_ms,
            heartbeat_at: unix_ms(),
            status: {
                let mut status = serde_json::json!({
                    "feed": self.feed.lag(),
                    "feed_connected": self.feed.healthy(),
                    "registrations": self.registrar.count(),
                    BUSY_DEVICES: busy,
                    LINE_LOADS: lines,
                });
                if let Some(m) = status.as_object_mut() {
                    for hook in self.feed.hooks() {
                        m.extend((hook.figures)(self).into_iter().map(|(k, v)| (k.into(), v)));
                    }
                }
                status
            },
        }
    }

    /// Announces this node's devices on a call on the change feed whenever they change
    /// (PostgreSQL only): a line event (ringing, connected, idle) wakes it, it gathers the
    /// events of [`BUSY_COALESCE`], asks call control once and announces the list if it
    /// differs from the last. Other nodes (the Paging Server's `busy_phones: skip`) read it
    /// at once instead of waiting for the heartbeat.
    pub async fn run_busy_announcer(self: Arc<Self>) {
        if self.store.backend() != Backend::Postgres {
            return;
        }
        let mut stop = self.stopping();
        let mut events = self.call_control.subscribe();
        let mut last: Option<(Vec<String>, LoadList)> = None;
        loop {
            tokio::select! {
                ev = events.recv() => {
                    if matches!(ev, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        return;
                    }
                }
                _ = stop.changed() => return,
            }
            tokio::time::sleep(BUSY_COALESCE).await;
            while events.try_recv().is_ok() {}
            let Some(now) = self.busy_here().await else {
                continue;
            };
            if last.as_ref() == Some(&now) {
                continue;
            }
            let (busy, lines) = &now;
            let list = if busy.is_empty() {
                "-".to_string()
            } else {
                busy.join(",")
            };
            let list = if list.len() > MAX_BUSY_PAYLOAD || list.contains(' ') {
                "?".to_string()
            } else {
                list
            };
            let lines = if lines.is_empty() {
                "-".to_string()
            } else {
                serde_json::to_string(lines).unwrap_or_else(|_| "?".to_string())
            };
            let lines = if list.len() + lines.len() > MAX_BUSY_PAYLOAD {
                "?".to_string()
            } else {
                lines
            };
            let payload = format!(
                "busy {} {} {} {list} {lines}",
                unix_ms(),
                self.node.name,
                self.feed.instance
            );
            match self.store.announce(CHANNEL, &payload).await {
                Ok(()) => last = Some(now),
                Err(e) => tracing::debug!(error = %e, "busy devices not announced"),
            }
        }
    }

    /// The devices on a call here and the calls on this node's lines that no other node
    /// counts, both sorted; `None` when call control does not answer in time.
    async fn busy_here(&self) -> Option<(Vec<String>, LoadList)> {
        let ask = async {
            let busy = self.call_control.busy_devices().await.ok()?;
            let loads = self.call_control.line_loads().await.ok()?;
            Some((busy, loads))
        };
        let (busy, loads) = tokio::time::timeout(BUSY_ASK_TIMEOUT, ask).await.ok()??;
        let mut busy: Vec<String> = busy.into_iter().collect();
        busy.sort();
        let mut lines: LoadList = loads.into_iter().map(|((dn, pt), n)| (dn, pt, n)).collect();
        lines.sort();
        Some((busy, lines))
    }

    /// Tells call control which nodes of the definition are down (no row, or a heartbeat older
    /// than [`NODE_DOWN_AFTER`]), so dialogs through them are spliced past them. PostgreSQL
    /// only; a database error says nothing (what was known stands).
    async fn tell_nodes_down(&self) {
        if self.store.backend() != Backend::Postgres {
            return;
        }
        let Ok(rows) = self.store.nodes().await else {
            return;
        };
        let now = unix_ms();
        let up: std::collections::HashSet<&str> = rows
            .iter()
            .filter(|r| now - r.heartbeat_at <= NODE_DOWN_AFTER.as_millis() as i64)
            .map(|r| r.name.as_str())
            .collect();
        let cluster = self.cluster();
        if cluster
            .nodes
            .iter()
            .any(|n| n.sip_transport == crate::config::model::SipTransport::Tls)
        {
            // The intra-cluster trunk over TLS trusts what the nodes stored.
            if let Ok(certs) = self.store.node_certificates().await {
                let purpose = crate::wire::certs::Purpose::CallManager.as_str();
                let mut pems: Vec<String> = certs
                    .into_iter()
                    .filter(|c| c.purpose == purpose)
                    .map(|c| c.pem)
                    .collect();
                pems.sort();
                let n = pems.len();
                if self.node_certs.set(pems) {
                    tracing::info!(
                        certificates = n,
                        "intra-cluster trunk over TLS: the nodes' certificates changed"
                    );
                }
            }
        }
        let down: std::collections::HashSet<String> = cluster
            .nodes
            .iter()
            .filter(|n| n.name != self.node.name && !up.contains(n.name.as_str()))
            .map(|n| n.name.clone())
            .collect();
        // The other nodes' calls on lines: what their heartbeats say is the fallback for
        // what the feed did not say; a node that is down counts no more.
        {
            let mut hb = self
                .feed
                .heartbeats
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            hb.up = rows
                .iter()
                .filter(|r| r.name != self.node.name && up.contains(r.name.as_str()))
                .map(|r| {
                    let lines: LoadList = r
                        .status
                        .get(LINE_LOADS)
                        .and_then(|v| serde_json::from_value(v.clone()).ok())
                        .unwrap_or_default();
                    let lines = lines.into_iter().map(|(dn, pt, n)| ((dn, pt), n)).collect();
                    (r.name.clone(), (r.instance.clone(), r.heartbeat_at, lines))
                })
                .collect();
            hb.down = down.clone();
        }
        self.call_control
            .set_remote_line_loads(self.feed.remote_line_loads());
        self.call_control.set_nodes_down(down);
    }

    /// Keeps the node's row in `cluster_nodes` alive until the node stops, then removes it.
    pub async fn run_heartbeat(self: Arc<Self>) {
        let mut stop = self.stopping();
        let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            // The devices on a call here, for services of other nodes that leave busy phones
            // out (the Paging Server), and the calls on the lines here, for other nodes'
            // routing: as of this heartbeat, at most one interval old.
            let (busy, lines) = self.busy_here().await.unwrap_or_default();
            if let Err(e) = self.store.node_heartbeat(&self.node_row(busy, lines)).await {
                tracing::debug!(error = %e, "heartbeat not written");
            }
            self.tell_nodes_down().await;
        }
        let _ = self
            .store
            .node_gone(&self.node.name, &self.feed.instance)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r16_feed_announcements_parse_and_bad_ones_are_refused() {
        // A service's kind is handed on whole, for its hook to decode.
        assert_eq!(
            parse("em 1700000000123 7 SEP 0001"),
            Some(Change::Service(Announcement {
                kind: "em",
                at_ms: 1700000000123,
                payload: "7 SEP 0001"
            }))
        );
        assert_eq!(
            parse("def 5 abc"),
            Some(Change::Definition {
                at_ms: 5,
                digest: "abc"
            })
        );
        let row = r#"{"device":"SEP0001","line":"10001","contact":"sip:10001@127.0.0.9:5060","instance":null,"transport":"UDP","source":"127.0.0.9:5060","node":"ucm-sub1","expires_at":1700000100,"updated_at":1700000000}"#;
        match parse(&format!("reg 9 {row}")) {
            Some(Change::Registered { at_ms: 9, row }) => {
                assert_eq!(
                    (row.node.as_str(), row.expires_at),
                    ("ucm-sub1", 1700000100)
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&format!("unreg 9 {row}")),
            Some(Change::Unregistered { .. })
        ));
        assert_eq!(
            parse(r#"regid 3 {"device":"SEP0001","line":"10001"}"#),
            Some(Change::RegisteredId {
                at_ms: 3,
                device: "SEP0001".into(),
                line: "10001".into()
            })
        );
        // Busy devices, and the calls on the node's lines (a JSON array; `-` none, `?` too
        // many, left out by a node that does not say).
        match parse(r#"busy 7 ucm-pub 1-2-3 SEP1,SEP2 [["10002","Internal PT",2],["7000",null,1]]"#)
        {
            Some(Change::Busy {
                at_ms: 7,
                node: "ucm-pub",
                instance: "1-2-3",
                devices: Some(d),
                lines: Some(l),
            }) => {
                assert_eq!(d, ["SEP1", "SEP2"]);
                assert_eq!(
                    l,
                    [
                        ("10002".to_string(), Some("Internal PT".to_string()), 2),
                        ("7000".to_string(), None, 1)
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("busy 7 n i - -"),
            Some(Change::Busy { devices: Some(d), lines: Some(l), .. }) if d.is_empty() && l.is_empty()
        ));
        assert!(matches!(
            parse("busy 7 n i ? ?"),
            Some(Change::Busy {
                devices: None,
                lines: None,
                ..
            })
        ));
        assert!(matches!(
            parse("busy 7 n i SEP1"),
            Some(Change::Busy { lines: None, .. })
        ));
        for bad in [
            "busy 7 n i - [[1]]",
            "busy 7 n i - nope",
            "busy 7  i -",
            "",
            "em",
            "em x 1 d",
            "em 1",
            " 1 2",
            "def 1",
            "reg 1 {}",
            "reg 1 nope",
            "regid 1 {\"device\":\"x\"}",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn r16_other_nodes_line_loads_from_the_feed_else_the_heartbeat_and_none_from_a_down_node() {
        let dn = |d: &str| (d.to_string(), Some("Internal_PT".to_string()));
        let loads = |v: &[(&str, u32)]| -> std::collections::HashMap<DnKey, u32> {
            v.iter().map(|(d, n)| (dn(d), *n)).collect()
        };
        let report = |instance: &str, at_ms: i64, lines: Option<&[(&str, u32)]>| BusyReport {
            instance: instance.into(),
            at_ms,
            devices: Some(Default::default()),
            lines: lines.map(loads),
        };
        let f = Feed::new(None);
        // Announced only (no heartbeat read yet): counted.
        assert!(f.learn_busy("a", report("a1", 10, Some(&[("10002", 1)]))));
        assert_eq!(f.remote_line_loads(), loads(&[("10002", 1)]));
        // An older announcement of the same run does not replace a newer one.
        assert!(!f.learn_busy("a", report("a1", 5, Some(&[("10002", 3)]))));
        {
            let mut hb = f.heartbeats.lock().unwrap();
            // The same run's heartbeat: the announcement (the latest change) stands.
            hb.up
                .insert("a".into(), ("a1".into(), 20, loads(&[("10002", 4)])));
            // A node heard only through its heartbeat.
            hb.up.insert(
                "b".into(),
                ("b1".into(), 20, loads(&[("10002", 1), ("10001", 2)])),
            );
        }
        assert_eq!(f.remote_line_loads(), loads(&[("10002", 2), ("10001", 2)]));
        // Too many to announce (`?`): the heartbeat says.
        assert!(f.learn_busy("a", report("a1", 30, None)));
        assert_eq!(f.remote_line_loads(), loads(&[("10002", 5), ("10001", 2)]));
        // A restarted node whose heartbeat is newer than its last run's announcement.
        assert!(f.learn_busy("a", report("a0", 1, Some(&[("10002", 9)]))));
        f.heartbeats.lock().unwrap().up.get_mut("a").unwrap().0 = "a2".into();
        assert_eq!(f.remote_line_loads(), loads(&[("10002", 5), ("10001", 2)]));
        // A node that is down counts no more.
        f.heartbeats.lock().unwrap().down.insert("a".into());
        assert_eq!(f.remote_line_loads(), loads(&[("10002", 1), ("10001", 2)]));
    }

    #[test]
    fn r16_feed_lag_percentiles() {
        let f = Feed::new(None);
        assert_eq!(f.lag(), LagFigures::default());
        for ms in 1..=100 {
            f.record_lag(ms);
        }
        f.record_lag(-3);
        let l = f.lag();
        assert_eq!((l.events, l.p50_ms, l.p99_ms, l.max_ms), (101, 50, 99, 100));
    }
}
