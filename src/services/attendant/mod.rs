//! Cisco Unified Attendant Console (the "Advanced" attendant console server, played by the
//! nodes with the `attendant` service), the seed's nine steps:
//! 1-2. A call's number matches a Queue DDI, a route point the service serves.
//! 3-4. The service redirects it at once (a CTI redirect: no answer, no media) to a free CT
//!    gateway device, another route point of its own, and keeps it there unanswered
//!    (`CallControl::keep`: the route point timeout does not apply) while it waits.
//! 5. The call is presented to the queue's attendants: queue order, waiting time and caller
//!    ([`http`], the `queued` rows of [`store`]).
//! 6. An attendant answers: one conditional UPDATE decides which attendant gets it, and the
//!    call is redirected from the CT gateway device to the attendant's line, which answers by
//!    itself (the INVITE asks for it: `CallControl::set_auto_answer`).
//!
//! With no CT gateway device free the call is refused (486: UNCONFIRMED, the seed says only to
//! size the devices for the peak; `ucm attendant check` does). One node of the cluster serves
//! the route points at a time (the holder of the lease `attendant`; the others stand by and
//! take over when it lapses); a node taking over closes the waiting calls of the last one
//! (`lost`). With no node serving them, the Queue DDIs' Call Forward settings apply.
//!
//! 7-9. An attendant transfers the call: it moves to a free service queue device, which
//!    answers it and plays music on hold, then to the target; unanswered within
//!    `recall_seconds` it comes back to the attendant (transfer recall). Park is the same
//!    with the server's own park devices, until any attendant retrieves it ([`hold`]).
//!
//! Not built yet (issue 19): consultation transfer, BLF, the browser console and the
//! two-server failover beyond the lease.

pub mod check;
pub mod console;
pub mod directory;
pub mod hold;
pub mod http;
pub mod model;
pub mod sizing;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, watch};

use crate::config::model::NodeService;
use crate::node::NodeState;
use crate::sip::b2bua::{LineState, OfferedCall};
use model::{Attendant, AttendantUser, Queue};
use store::{AttendantCalls, QueuedCall};

/// The lease that makes one node the cluster's active attendant console server.
pub const LEASE: &str = "attendant";
const LEASE_TTL: Duration = Duration::from_secs(3);
const LEASE_RENEW: Duration = Duration::from_secs(1);
/// How long an answer waits to see the call connected on the attendant's phone.
pub const CONNECT_WAIT: Duration = Duration::from_secs(5);

type Offers = mpsc::UnboundedReceiver<OfferedCall>;

/// The route points the service serves while it holds the lease: one receiver for all, fed by
/// one forwarder per route point (dropping this drops them all: the service going down).
struct Serving {
    offers: Offers,
    _forwarders: tokio::task::JoinSet<()>,
}

/// A call redirected from a Queue DDI to a CT gateway device, until the device is offered it.
#[derive(Debug, Clone)]
struct Redirected {
    queue: String,
    calling: String,
    device: String,
    at: i64,
}

pub struct AttendantService {
    pub node: Arc<NodeState>,
    /// CT gateway device -> the call it holds (redirected to it or waiting on it).
    devices: Mutex<HashMap<String, u64>>,
    /// Calls on their way to a CT gateway device.
    redirected: Mutex<HashMap<u64, Redirected>>,
    /// Calls waiting on a CT gateway device: call -> (queue, device).
    waiting: Mutex<HashMap<u64, (String, String)>>,
    /// What the consoles are told, as it happens.
    pub events: broadcast::Sender<Event>,
    /// Calls the server holds on a service queue or park device, with their music on hold.
    held: Mutex<HashMap<u64, hold::HeldCall>>,
    /// Calls on an attendant's phone (answered, recalled or retrieved through the console):
    /// call -> (queue, attendant).
    at_attendant: Mutex<HashMap<u64, (String, String)>>,
}

/// A change the consoles of a queue's attendants are told of (a JSON object with `event`).
#[derive(Debug, Clone)]
pub struct Event {
    pub queue: String,
    pub body: Arc<serde_json::Value>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Why an attendant's answer did not take the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    /// No call of that id waits (never, or it ended or was answered and left).
    NotWaiting,
    /// The call waits in a queue the attendant does not serve.
    NotYourQueue,
    /// Another attendant's answer took it.
    Taken,
    /// The caller was gone when the call was to move to the attendant's phone.
    Gone(String),
    Database(String),
}

impl AttendantService {
    pub fn new(node: Arc<NodeState>) -> Arc<AttendantService> {
        Arc::new(AttendantService {
            node,
            devices: Default::default(),
            redirected: Default::default(),
            waiting: Default::default(),
            events: broadcast::channel(4096).0,
            held: Default::default(),
            at_attendant: Default::default(),
        })
    }

    fn tell(&self, queue: &str, body: serde_json::Value) {
        let _ = self.events.send(Event {
            queue: queue.to_string(),
            body: Arc::new(body),
        });
    }

    /// The queues given with their waiting calls in queue order: position (from 1), caller,
    /// seconds waited, CT gateway device.
    pub async fn queue_view(
        &self,
        queues: &[Queue],
    ) -> Result<Vec<serde_json::Value>, crate::store::StoreError> {
        let names: Vec<String> = queues.iter().map(|q| q.name.clone()).collect();
        let waiting = self.waiting_in(&names).await?;
        let now = unix_ms();
        Ok(queues
            .iter()
            .map(|q| {
                let calls: Vec<_> = waiting
                    .iter()
                    .filter(|c| c.queue == q.name)
                    .enumerate()
                    .map(|(i, c)| {
                        serde_json::json!({
                            "call": c.call,
                            "position": i + 1,
                            "calling": c.calling,
                            "waiting_seconds": (now - c.queued_at).max(0) / 1000,
                            "device": c.device,
                        })
                    })
                    .collect();
                serde_json::json!({ "queue": q.name, "calls": calls })
            })
            .collect())
    }

    pub fn section(&self) -> Arc<Attendant> {
        self.node.cluster().section::<Attendant>()
    }

    /// The one line of route point `rp`.
    fn dn_of(&self, rp: &str) -> Option<String> {
        self.node
            .cluster()
            .route_points
            .iter()
            .find(|r| r.name == rp)
            .and_then(|r| r.lines.first())
            .map(|l| l.dn.clone())
    }

    pub fn attendant(&self, user: &str) -> Option<AttendantUser> {
        self.section()
            .attendants
            .iter()
            .find(|a| a.user == user)
            .cloned()
    }

    /// The queues `user` answers.
    pub fn queues_of(&self, user: &str) -> Vec<Queue> {
        self.section()
            .queues
            .iter()
            .filter(|q| q.attendants.iter().any(|a| a == user))
            .cloned()
            .collect()
    }

    /// Every route point the service serves: the Queue DDIs and the CT gateway devices.
    fn route_points(&self) -> Vec<String> {
        let s = self.section();
        s.queues
            .iter()
            .map(|q| q.route_point.clone())
            .chain(s.ct_gateway_devices.iter().cloned())
            .collect()
    }

    /// The attendants' lines answer by themselves (Cisco's attendant phones have Auto
    /// Answer on the line the console's calls arrive on).
    fn apply_auto_answer(&self) {
        for a in &self.section().attendants {
            self.node
                .call_control
                .set_auto_answer(&a.device, &a.line, true);
        }
    }

    async fn take_lease(&self) -> Result<crate::store::LeaseRow, crate::store::StoreError> {
        self.node
            .store
            .take_lease(
                LEASE,
                &self.node.node.name,
                &self.node.feed.instance,
                &self.route_points(),
                LEASE_TTL.as_millis() as i64,
            )
            .await
    }

    /// Takes the lease and the route points when it can (before the node says it is ready).
    async fn prepare(&self) -> Option<Serving> {
        if self.section().queues.is_empty() {
            return None;
        }
        match self.take_lease().await {
            Ok(l) if l.instance == self.node.feed.instance => self.activate().await,
            Ok(l) => {
                tracing::info!(active = %l.node, "attendant: standing by; another node serves the Queue DDIs");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "attendant: cannot ask for the lease; standing by");
                None
            }
        }
    }

    async fn activate(&self) -> Option<Serving> {
        let (tx, offers) = mpsc::unbounded_channel();
        let mut forwarders = tokio::task::JoinSet::new();
        for rp in self.route_points() {
            match self.node.call_control.register_route_point(&rp).await {
                Ok(mut rx) => {
                    let tx = tx.clone();
                    forwarders.spawn(async move {
                        while let Some(o) = rx.recv().await {
                            if tx.send(o).is_err() {
                                return;
                            }
                        }
                    });
                }
                Err(e) => {
                    tracing::error!(route_point = %rp, error = %e, "attendant: cannot take the route point");
                    return None;
                }
            }
        }
        match self
            .node
            .store
            .close_other_instances(&self.node.feed.instance, unix_ms())
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                calls = n,
                "attendant: calls left waiting by the last server closed as lost"
            ),
            Err(e) => tracing::warn!(error = %e, "attendant: cannot close the last server's calls"),
        }
        for q in &self.section().queues {
            tracing::info!(queue = %q.name, route_point = %q.route_point, ddi = ?self.dn_of(&q.route_point), node = %self.node.node.name, "attendant: serving the Queue DDI");
        }
        Some(Serving {
            offers,
            _forwarders: forwarders,
        })
    }

    /// Serves the route points while this node holds the lease; stands by otherwise.
    async fn run(self: Arc<Self>, mut serving: Option<Serving>, mut stop: watch::Receiver<bool>) {
        if self.section().queues.is_empty() {
            return;
        }
        let mut tick = tokio::time::interval(LEASE_RENEW);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut renewed = Instant::now();
        let mut calls = tokio::task::JoinSet::new();
        loop {
            let changed = self.node.leases.changed.notified();
            tokio::select! {
                _ = tick.tick() => {}
                _ = changed, if serving.is_none() => {}
                Some(offer) = async { serving.as_mut()?.offers.recv().await }, if serving.is_some() => {
                    let svc = self.clone();
                    calls.spawn(async move { svc.offered(offer).await });
                    continue;
                }
                Some(_) = calls.join_next(), if !calls.is_empty() => continue,
                _ = stop.changed() => break,
            }
            if serving.is_some() {
                self.sweep().await;
            }
            let asked = Instant::now();
            match self.take_lease().await {
                Ok(l) if l.instance == self.node.feed.instance => {
                    renewed = asked;
                    if serving.is_none() {
                        serving = self.activate().await;
                    }
                }
                Ok(l) => {
                    if serving.take().is_some() {
                        tracing::warn!(active = %l.node, "attendant: another node took the lease; standing by");
                        self.forget_all();
                    }
                }
                Err(e) => {
                    if serving.is_some() && renewed.elapsed() + LEASE_RENEW >= LEASE_TTL {
                        tracing::warn!(error = %e, "attendant: cannot renew the lease; standing by");
                        serving = None;
                        self.forget_all();
                    }
                }
            }
        }
        calls.abort_all();
        if serving.take().is_some() {
            let _ = self
                .node
                .store
                .release_lease(LEASE, &self.node.feed.instance)
                .await;
        }
    }

    fn forget_all(&self) {
        lock(&self.devices).clear();
        lock(&self.redirected).clear();
        lock(&self.waiting).clear();
        lock(&self.held).clear();
        lock(&self.at_attendant).clear();
    }

    /// Waiting calls whose caller hung up: closed as abandoned, their devices freed.
    async fn sweep(&self) {
        let held: Vec<u64> = lock(&self.waiting).keys().copied().collect();
        for call in held {
            if let Ok(false) = self.node.call_control.call_exists(call).await {
                self.leave(call, "abandoned").await;
            }
        }
        // Calls that ended on an attendant's phone are no longer theirs to transfer or park.
        let talking: Vec<u64> = lock(&self.at_attendant).keys().copied().collect();
        for call in talking {
            if let Ok(false) = self.node.call_control.call_exists(call).await {
                lock(&self.at_attendant).remove(&call);
            }
        }
    }

    /// A waiting call leaves unanswered (`abandoned`, `lost`).
    async fn leave(&self, call: u64, how: &str) {
        let Some((queue, device)) = lock(&self.waiting).remove(&call) else {
            return;
        };
        lock(&self.devices).remove(&device);
        tracing::info!(call, queue = %queue, device = %device, how = %how, "attendant: a waiting call left the queue");
        self.tell(
            &queue,
            serde_json::json!({ "event": "left", "queue": queue, "call": call, "how": how }),
        );
        if let Err(e) = self
            .node
            .store
            .end_waiting(&self.node.feed.instance, call, how, unix_ms())
            .await
        {
            tracing::warn!(call, error = %e, "attendant: cannot close a waiting call");
        }
    }

    async fn offered(self: Arc<Self>, offer: OfferedCall) {
        let section = self.section();
        if let Some(q) = section
            .queues
            .iter()
            .find(|q| q.route_point == offer.route_point)
        {
            self.queue_ddi(q, offer).await;
        } else if section.ct_gateway_devices.contains(&offer.route_point) {
            self.ct_gateway(offer).await;
        } else {
            tracing::warn!(route_point = %offer.route_point, "attendant: offered a call on a route point it no longer serves");
            let _ = self
                .node
                .call_control
                .reject(offer.call, 404, "Not Found (no such Queue DDI)")
                .await;
        }
    }

    /// Steps 1-3: a call into a Queue DDI goes at once to a free CT gateway device.
    async fn queue_ddi(&self, q: &Queue, offer: OfferedCall) {
        let cc = &self.node.call_control;
        let section = self.section();
        let device = {
            let mut devices = lock(&self.devices);
            let free = section
                .ct_gateway_devices
                .iter()
                .find(|d| !devices.contains_key(*d))
                .cloned();
            if let Some(d) = &free {
                devices.insert(d.clone(), offer.call);
            }
            free
        };
        let Some(device) = device else {
            tracing::warn!(call = offer.call, queue = %q.name, devices = section.ct_gateway_devices.len(), "attendant: every CT gateway device holds a call; call refused");
            let _ = cc
                .reject(
                    offer.call,
                    486,
                    "Busy Here (every CT gateway device holds a call)",
                )
                .await;
            return;
        };
        let Some(dn) = self.dn_of(&device) else {
            lock(&self.devices).remove(&device);
            return;
        };
        lock(&self.redirected).insert(
            offer.call,
            Redirected {
                queue: q.name.clone(),
                calling: offer.calling.clone(),
                device: device.clone(),
                at: unix_ms(),
            },
        );
        tracing::info!(call = offer.call, queue = %q.name, calling = %offer.calling, device = %device, dn = %dn, "attendant: Queue DDI call redirected to a CT gateway device");
        if let Err(e) = cc.redirect(offer.call, &dn).await {
            tracing::info!(call = offer.call, error = %e, "attendant: redirect to the CT gateway device failed");
            lock(&self.redirected).remove(&offer.call);
            lock(&self.devices).remove(&device);
        }
    }

    /// Steps 4-5: the CT gateway device keeps the call, unanswered, and it is presented.
    async fn ct_gateway(&self, offer: OfferedCall) {
        let cc = &self.node.call_control;
        let Some(r) = lock(&self.redirected).remove(&offer.call) else {
            // Dialled directly: a CT gateway device takes only the server's own redirects.
            tracing::info!(call = offer.call, route_point = %offer.route_point, "attendant: a call dialled straight to a CT gateway device refused");
            let _ = cc
                .reject(
                    offer.call,
                    404,
                    "Not Found (a CT gateway device takes no direct calls)",
                )
                .await;
            return;
        };
        if let Err(e) = cc.keep(offer.call).await {
            tracing::info!(call = offer.call, error = %e, "attendant: the CT gateway device cannot keep the call");
            lock(&self.devices).remove(&r.device);
            return;
        }
        let row = QueuedCall {
            call: offer.call,
            queue: r.queue.clone(),
            calling: r.calling.clone(),
            device: r.device.clone(),
            queued_at: r.at,
        };
        lock(&self.waiting).insert(offer.call, (r.queue.clone(), r.device.clone()));
        if let Err(e) = self
            .node
            .store
            .queue_call(&self.node.feed.instance, &row)
            .await
        {
            // No row, no attendant can take it: refuse it rather than keep it unseen.
            tracing::warn!(call = offer.call, error = %e, "attendant: cannot queue the call; refused");
            lock(&self.waiting).remove(&offer.call);
            lock(&self.devices).remove(&r.device);
            let _ = cc
                .reject(
                    offer.call,
                    503,
                    "Service Unavailable (the attendant console's database)",
                )
                .await;
            return;
        }
        tracing::info!(call = offer.call, queue = %r.queue, device = %r.device, calling = %r.calling, "attendant: call waiting for an attendant");
        self.tell(
            &r.queue,
            serde_json::json!({
                "event": "queued",
                "queue": r.queue,
                "call": offer.call,
                "calling": r.calling,
                "device": r.device,
            }),
        );
    }

    /// The calls waiting now in `queues`, oldest first.
    pub async fn waiting_in(
        &self,
        queues: &[String],
    ) -> Result<Vec<QueuedCall>, crate::store::StoreError> {
        let all = self
            .node
            .store
            .waiting_calls(&self.node.feed.instance)
            .await?;
        let held = lock(&self.waiting).clone();
        Ok(all
            .into_iter()
            .filter(|c| queues.contains(&c.queue) && held.contains_key(&c.call))
            .collect())
    }

    /// Step 6: `user` answers `call`; it moves to the attendant's line, which connects by
    /// itself. The attendant's line on success, and whether the call was seen connected there
    /// within [`CONNECT_WAIT`].
    pub async fn answer(
        &self,
        user: &AttendantUser,
        call: u64,
    ) -> Result<(String, bool), AnswerError> {
        let Some((queue, device)) = lock(&self.waiting).get(&call).cloned() else {
            return Err(AnswerError::NotWaiting);
        };
        if !self.queues_of(&user.user).iter().any(|q| q.name == queue) {
            return Err(AnswerError::NotYourQueue);
        }
        match self
            .node
            .store
            .answer_call(&self.node.feed.instance, call, &user.user, unix_ms())
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(AnswerError::Taken),
            Err(e) => return Err(AnswerError::Database(e.to_string())),
        }
        lock(&self.waiting).remove(&call);
        lock(&self.devices).remove(&device);
        tracing::info!(call, queue = %queue, attendant = %user.user, line = %user.line, "attendant: call answered; redirected to the attendant's phone");
        self.tell(
            &queue,
            serde_json::json!({
                "event": "answered",
                "queue": queue,
                "call": call,
                "attendant": user.user,
            }),
        );
        let mut events = self.node.call_control.subscribe();
        if let Err(e) = self.node.call_control.redirect(call, &user.line).await {
            return Err(AnswerError::Gone(e.to_string()));
        }
        lock(&self.at_attendant).insert(call, (queue.clone(), user.user.clone()));
        let connected = tokio::time::timeout(CONNECT_WAIT, async {
            loop {
                match events.recv().await {
                    Ok(ev) if ev.call == call && ev.state == LineState::Connected => return true,
                    Ok(ev) if ev.call == call && ev.state == LineState::Idle => return false,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return false,
                }
            }
        })
        .await
        .unwrap_or(false);
        Ok((user.line.clone(), connected))
    }
}

async fn read_status(
    node: &NodeState,
    _now: i64,
) -> Result<serde_json::Value, crate::store::StoreError> {
    let rows = node.store.all_waiting_calls().await?;
    Ok(serde_json::json!(rows
        .into_iter()
        .map(|c| serde_json::json!({
            "queue": c.queue,
            "calling": c.calling,
            "device": c.device,
            "call": c.call,
            "queued_at": c.queued_at,
        }))
        .collect::<Vec<_>>()))
}

pub const SERVICE: super::ServiceSpec = super::ServiceSpec {
    flags: &[super::Flag {
        flag: NodeService::Attendant,
        name: "the Attendant Console server",
        paths: &["/ucm/attendant/"],
    }],
    listeners: &[super::ListenerSpec {
        flag: NodeService::Attendant,
        name: console::LISTENER,
        what: "Attendant Console (HTTPS + WebSocket)",
        proto: super::Proto::Tcp,
        // UNCONFIRMED: Cisco's console server uses ports of its own, undocumented in the
        // seed; ucm's default is 8446, beside HTTPS's 8443.
        default_port: 8446,
        // The seed: Cisco's consoles send best effort; ucm marks its console protocol CS3
        // (call signalling), server and client.
        dscp: |_| crate::net::Dscp::CS3,
        optional_without_privilege: true,
    }],
    sections: &[crate::config::SectionSpec::of::<Attendant>()],
    check: Some(check::check),
    model_source: include_str!("model.rs"),
    feed: None,
    status: &[super::StatusSection {
        key: "attendant_queues",
        title: "Attendant Console: calls waiting",
        columns: &["queue", "calling", "device", "call"],
        read: |node, now| Box::pin(read_status(node, now)),
    }],
    start: start_service,
};

fn start_service(mut s: super::Start) -> super::StartFuture {
    use axum::routing::{get, post};
    Box::pin(async move {
        let listener = s.take_listener(&SERVICE, console::LISTENER);
        let svc = AttendantService::new(s.node.clone());
        svc.apply_auto_answer();
        let serving = svc.prepare().await;
        let routes = axum::Router::new()
            .route(http::QUEUES_PATH, get(http::get_queues))
            .route(http::ANSWER_PATH, post(http::answer))
            .route(http::TRANSFER_PATH, post(http::transfer))
            .route(http::PARK_PATH, post(http::park))
            .route(http::RETRIEVE_PATH, post(http::retrieve))
            .with_state(svc.clone());
        let mut tasks: Vec<super::Task> = vec![Box::pin(svc.clone().run(serving, s.stop.clone()))];
        if let Some(super::Bound::Tcp(l)) = listener {
            tasks.push(Box::pin(console::serve(svc, l, s.stop)));
        }
        Ok(super::Parts { routes, tasks })
    })
}
