//! Unified CM Assistant (the Cisco IP Manager Assistant service): in proxy line mode the
//! service registers the Assistant route point (`6XXXX`) and, for each call offered to it
//! (the offer names the number dialled, `60001`), redirects the call to the active
//! assistant's proxy line for that manager, to the manager, or to DivertAll's target, by the
//! manager's state (Do Not Disturb, DivertAll, call filtering; [`routing`]), which is kept in
//! the database ([`store`]) and set through the service's HTTP API ([`http`]). A call left
//! ringing at an assistant goes on to the manager's next assistant after RNA Timeout when RNA
//! Forward Calls is on; the manager may intercept a call ringing at an assistant.
//!
//! One node of the cluster serves the route point at a time (the holder of the lease
//! `assistant`; the others stand by and take over when it lapses). With no node serving it,
//! the route point's Forward No Answer (`6XXXX` through `MANAGER_EVERYONE_CSS`) lets calls
//! fall through to the managers, as the seed's step 4 says.

pub mod check;
pub mod console;
pub mod feed;
pub mod http;
pub mod model;
pub mod phone;
pub mod routing;
pub mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::model::NodeService;
use crate::node::NodeState;
use crate::sip::b2bua::{LineState, OfferedCall};
use model::{Assistant, AssistantParameters, Manager, Mode};
use routing::Target;
use store::ManagerStates;

/// The lease that makes one node the cluster's active Assistant server.
pub const LEASE: &str = "assistant";
const LEASE_TTL: Duration = Duration::from_secs(3);
const LEASE_RENEW: Duration = Duration::from_secs(1);
/// How long the target of an assistant's transfer may ring before the call stays with the
/// assistant (ucm's choice; Cisco's transfer has no such limit, its phone keeps the call held).
const TRANSFER_ANSWER: Duration = Duration::from_secs(30);

type Offers = tokio::sync::mpsc::UnboundedReceiver<OfferedCall>;

/// A call the service sent to an assistant's proxy line, while it rings there.
#[derive(Debug, Clone)]
struct AtAssistant {
    manager: String,
    /// Which of the manager's assistants it rings at.
    assistant: usize,
    /// The caller's number, as the phone service shows it.
    calling: String,
}

pub struct AssistantService {
    pub node: Arc<NodeState>,
    /// Calls ringing at an assistant's proxy line, by call (for intercept and RNA forwarding);
    /// a call leaves when it is answered or ends.
    ringing: Mutex<HashMap<u64, AtAssistant>>,
    /// For pushes to the assistants' phones (the console's answer), made when first needed.
    http: std::sync::OnceLock<reqwest::Client>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl AssistantService {
    pub fn new(node: Arc<NodeState>) -> Arc<AssistantService> {
        Arc::new(AssistantService {
            node,
            ringing: Default::default(),
            http: Default::default(),
        })
    }

    fn section(&self) -> Arc<Assistant> {
        self.node.cluster().section::<Assistant>()
    }

    fn parameters(&self) -> Arc<AssistantParameters> {
        self.node.cluster().section::<AssistantParameters>()
    }

    fn push_client(&self) -> Result<reqwest::Client, String> {
        if let Some(c) = self.http.get() {
            return Ok(c.clone());
        }
        let c = crate::client::http_client(&crate::client::ClientOptions {
            timeout: Some(Duration::from_secs(5)),
            ..Default::default()
        })
        .map_err(|e| e.to_string())?;
        Ok(self.http.get_or_init(|| c).clone())
    }

    /// The manager `user`, as the definition has it.
    pub fn manager(&self, user: &str) -> Option<Manager> {
        self.section()
            .managers
            .iter()
            .find(|m| m.user == user)
            .cloned()
    }

    /// A manager's state changed (HTTP API, console): silent ring follows it and online
    /// consoles hear of it.
    pub fn state_changed(&self, m: &Manager, s: &store::ManagerState) {
        self.node
            .shared::<feed::AssistantShared>()
            .apply(&self.node, m, s);
    }

    async fn take_lease(
        &self,
        rp: &str,
    ) -> Result<crate::store::LeaseRow, crate::store::StoreError> {
        self.node
            .store
            .take_lease(
                LEASE,
                &self.node.node.name,
                &self.node.feed.instance,
                &[rp.to_string()],
                LEASE_TTL.as_millis() as i64,
            )
            .await
    }

    /// Takes the lease and the route point when it can (before the node says it is ready, so
    /// no call finds the service absent).
    pub async fn prepare(&self) -> Option<Offers> {
        let rp = self.section().route_point.clone()?;
        match self.take_lease(&rp).await {
            Ok(l) if l.instance == self.node.feed.instance => self.activate(&rp).await,
            Ok(l) => {
                tracing::info!(active = %l.node, "assistant: standing by; another node serves the route point");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "assistant: cannot ask for the lease; standing by");
                None
            }
        }
    }

    async fn activate(&self, rp: &str) -> Option<Offers> {
        match self.node.call_control.register_route_point(rp).await {
            Ok(rx) => {
                tracing::info!(route_point = rp, node = %self.node.node.name, "assistant: serving the route point");
                Some(rx)
            }
            Err(e) => {
                tracing::error!(route_point = rp, error = %e, "assistant: cannot take the route point");
                None
            }
        }
    }

    /// Serves the route point while this node holds the lease; stands by otherwise. Dropping
    /// the offers' receiver (standing by, stopping) is the service going down: call control
    /// then applies the route point's Forward No Answer.
    pub async fn run(self: Arc<Self>, mut offers: Option<Offers>, mut stop: watch::Receiver<bool>) {
        let Some(rp) = self.section().route_point.clone() else {
            return;
        };
        let mut events = self.node.call_control.subscribe();
        let mut tick = tokio::time::interval(LEASE_RENEW);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut renewed = Instant::now();
        let mut calls = tokio::task::JoinSet::new();
        loop {
            let changed = self.node.leases.changed.notified();
            tokio::select! {
                _ = tick.tick() => {}
                _ = changed, if offers.is_none() => {}
                Some(offer) = async { offers.as_mut()?.recv().await }, if offers.is_some() => {
                    let svc = self.clone();
                    calls.spawn(async move { svc.offered(offer).await });
                    continue;
                }
                ev = events.recv() => {
                    match ev {
                        Ok(ev) if matches!(ev.state, LineState::Connected | LineState::Idle) => {
                            lock(&self.ringing).remove(&ev.call);
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => events = self.node.call_control.subscribe(),
                    }
                    continue;
                }
                Some(_) = calls.join_next(), if !calls.is_empty() => continue,
                _ = stop.changed() => break,
            }
            let asked = Instant::now();
            match self.take_lease(&rp).await {
                Ok(l) if l.instance == self.node.feed.instance => {
                    renewed = asked;
                    if offers.is_none() {
                        offers = self.activate(&rp).await;
                    }
                }
                Ok(l) => {
                    if offers.take().is_some() {
                        tracing::warn!(active = %l.node, "assistant: another node took the lease; standing by");
                    }
                }
                Err(e) => {
                    if offers.is_some() && renewed.elapsed() + LEASE_RENEW >= LEASE_TTL {
                        tracing::warn!(error = %e, "assistant: cannot renew the lease; standing by");
                        offers = None;
                    }
                }
            }
        }
        calls.abort_all();
        if offers.take().is_some() {
            let _ = self
                .node
                .store
                .release_lease(LEASE, &self.node.feed.instance)
                .await;
        }
    }

    /// One call offered to the route point.
    async fn offered(self: Arc<Self>, offer: OfferedCall) {
        let cc = &self.node.call_control;
        let section = self.section();
        let Some(m) = section
            .managers
            .iter()
            .find(|m| m.mode == Mode::Proxy && m.line == offer.number)
        else {
            // Not a manager's line: on as dialled, through the route point's CSS (what the
            // fall-through would do).
            tracing::info!(call = offer.call, number = %offer.number, "assistant: not a manager's line; redirected as dialled");
            if let Err(e) = cc.redirect(offer.call, &offer.number).await {
                tracing::info!(call = offer.call, error = %e, "assistant: redirect failed");
            }
            return;
        };
        // Call handling goes on with the database down: Cisco's initial settings then.
        let state = match self.node.store.manager_state(&m.user).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(manager = %m.user, error = %e, "assistant: manager state unreadable; initial settings apply");
                store::ManagerState::default()
            }
        };
        let target = routing::route(&state, &offer.calling);
        // Assistant selection: the selected assistant first, then the others in the
        // definition's order (RNA forwarding goes down this list).
        let order = routing::assistant_order(m, state.selected_assistant.as_deref());
        let (destination, at) = match &target {
            Target::Manager => (m.line.clone(), None),
            Target::Divert(t) => (t.clone(), None),
            Target::Assistant => match order
                .first()
                .and_then(|i| Some((m.assistants[*i].proxy_line.clone()?, *i)))
            {
                Some((pl, i)) => (pl, Some(i)),
                None => (m.line.clone(), None),
            },
        };
        tracing::info!(call = offer.call, manager = %m.user, calling = %offer.calling, ?target, destination = %destination, "assistant: call to a manager redirected");
        if let Some(i) = at {
            lock(&self.ringing).insert(
                offer.call,
                AtAssistant {
                    manager: m.user.clone(),
                    assistant: i,
                    calling: offer.calling.clone(),
                },
            );
        }
        if let Err(e) = cc.redirect(offer.call, &destination).await {
            tracing::info!(call = offer.call, error = %e, "assistant: redirect failed");
            lock(&self.ringing).remove(&offer.call);
            return;
        }
        if at.is_some() {
            self.rna_forward(offer.call, m, &order).await;
        }
    }

    /// RNA forwarding: while the call rings unanswered at an assistant for RNA Timeout, on to
    /// the manager's next assistant in `order`, each assistant once.
    async fn rna_forward(&self, call: u64, m: &Manager, order: &[usize]) {
        let prm = self.parameters();
        if !prm.rna_forward_calls {
            return;
        }
        let timeout = Duration::from_secs(u64::from(prm.rna_timeout_seconds));
        for &next in order.iter().skip(1) {
            tokio::time::sleep(timeout).await;
            if !lock(&self.ringing).contains_key(&call) {
                return;
            }
            let Some(pl) = m.assistants[next].proxy_line.clone() else {
                continue;
            };
            if let Some(r) = lock(&self.ringing).get_mut(&call) {
                r.assistant = next;
            }
            // Only an unanswered call can be redirected: an answer in between wins.
            match self.node.call_control.redirect(call, &pl).await {
                Ok(()) => {
                    tracing::info!(call, manager = %m.user, assistant = %m.assistants[next].user, proxy_line = %pl, "assistant: no answer; on to the next assistant")
                }
                Err(e) => {
                    tracing::info!(call, error = %e, "assistant: RNA forward not done");
                    lock(&self.ringing).remove(&call);
                    return;
                }
            }
        }
    }

    /// A call ringing at `assistant`'s proxy line goes to its manager's line (the console's
    /// and the phone service's "to manager"). The manager's line, or why not.
    pub async fn to_manager(&self, assistant: &str, call: u64) -> Result<String, String> {
        let at = lock(&self.ringing)
            .get(&call)
            .cloned()
            .ok_or_else(|| format!("call {call} is not ringing at an assistant"))?;
        let m = self
            .manager(&at.manager)
            .filter(|m| {
                m.assistants
                    .get(at.assistant)
                    .is_some_and(|a| a.user == assistant)
            })
            .ok_or_else(|| format!("call {call} is not ringing at your proxy line"))?;
        lock(&self.ringing).remove(&call);
        self.node
            .call_control
            .redirect(call, &m.line)
            .await
            .map_err(|e| format!("call {call} could not go to the manager: {e}"))?;
        tracing::info!(call, manager = %m.user, assistant, "assistant: call sent to the manager");
        Ok(m.line)
    }

    /// Transfers a call `assistant` answered for one of their managers (a call to the
    /// manager's line, connected at one of the assistant's phones) to the manager's line, or to
    /// `to`: the caller stays, a new leg rings the target, and the assistant's phone is let go
    /// when the target answers. The destination, or why not (the call then stays as it was).
    pub async fn transfer_answered(
        &self,
        assistant: &str,
        call: u64,
        to: Option<&str>,
    ) -> Result<String, String> {
        let calls = self
            .node
            .call_control
            .list_calls()
            .await
            .map_err(|e| format!("call control: {e}"))?;
        let c = calls
            .iter()
            .find(|c| c.id == call)
            .ok_or_else(|| format!("call {call} is not up"))?;
        if c.state != "connected" {
            return Err(format!("call {call} is not answered"));
        }
        let m = self
            .section()
            .managers
            .iter()
            .find(|m| m.line == c.dialled && m.assistants.iter().any(|a| a.user == assistant))
            .cloned()
            .ok_or_else(|| format!("call {call} is not a call to one of your managers"))?;
        let cluster = self.node.cluster();
        let associated: Vec<&str> = cluster
            .end_users
            .iter()
            .filter(|u| u.userid == assistant)
            .flat_map(|u| u.associated_devices.iter().map(String::as_str))
            .collect();
        let mine = |d: &String| {
            associated.contains(&d.as_str())
                || cluster
                    .devices
                    .iter()
                    .any(|x| &x.name == d && x.owner.as_deref() == Some(assistant))
        };
        // The first device is the caller's; the assistant's phone must be on the far side.
        if !c.devices.iter().skip(1).any(mine) {
            return Err(format!("call {call} is not on your phone"));
        }
        drop(cluster);
        let to = to
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or(&m.line);
        crate::dialplan::pattern::validate_digits(to)
            .map_err(|_| format!("{to:?} is not a number to dial"))?;
        self.node
            .call_control
            .move_call(call, to, TRANSFER_ANSWER)
            .await
            .map_err(|e| format!("call {call} could not be transferred to {to}: {e}"))?;
        tracing::info!(call, manager = %m.user, assistant, to, "assistant: answered call transferred");
        Ok(to.to_string())
    }

    /// Intercept: the oldest call ringing at one of `manager`'s assistants goes to the
    /// manager's own line. The call, or None when none rings.
    pub async fn intercept(&self, manager: &Manager) -> Option<u64> {
        loop {
            let call = {
                let r = lock(&self.ringing);
                r.iter()
                    .filter(|(_, a)| a.manager == manager.user)
                    .map(|(c, _)| *c)
                    .min()
            }?;
            lock(&self.ringing).remove(&call);
            match self.node.call_control.redirect(call, &manager.line).await {
                Ok(()) => return Some(call),
                Err(e) => {
                    tracing::info!(call, error = %e, "assistant: intercept found the call answered or gone")
                }
            }
        }
    }
}

pub const SERVICE: super::ServiceSpec = super::ServiceSpec {
    flags: &[super::Flag {
        flag: NodeService::Assistant,
        name: "the Assistant service",
        paths: &["/ucm/assistant/", "/ma/"],
    }],
    listeners: &[super::ListenerSpec {
        flag: NodeService::Assistant,
        name: "assistant_console",
        what: "Assistant Console",
        proto: super::Proto::Tcp,
        default_port: console::PORT,
        // Cisco marks its 2912 traffic CS3 (the seed): the call signalling class.
        dscp: |q| q.call_signalling,
        // A second node on the host finds 2912 taken: it runs without the console listener
        // (a port asked for explicitly must be bound).
        optional_without_privilege: true,
    }],
    sections: &[
        crate::config::SectionSpec::of::<AssistantParameters>(),
        crate::config::SectionSpec::of::<Assistant>(),
    ],
    check: Some(check::check),
    model_source: include_str!("model.rs"),
    feed: Some(feed::FEED),
    status: &[],
    start: start_service,
};

fn start_service(mut s: super::Start) -> super::StartFuture {
    use axum::routing::{get, post};
    let console = s.take_listener(&SERVICE, "assistant_console");
    Box::pin(async move {
        let svc = AssistantService::new(s.node.clone());
        let phone = Arc::new(phone::PhoneService {
            svc: svc.clone(),
            secret: s.node.store.cluster_secret(phone::SECRET).await?,
        });
        let offers = svc.prepare().await;
        let routes = axum::Router::new()
            .route(
                http::MANAGER_PATH,
                get(http::get_manager).put(http::put_manager),
            )
            .route(http::INTERCEPT_PATH, post(http::intercept))
            .with_state(svc.clone())
            .merge(
                axum::Router::new()
                    .route(phone::PATH, get(phone::handler))
                    .with_state(phone),
            );
        let mut tasks: Vec<super::Task> = vec![Box::pin(svc.clone().run(offers, s.stop.clone()))];
        if let Some(super::Bound::Tcp(l)) = console {
            tasks.push(Box::pin(console::serve(svc.clone(), l, s.stop.clone())));
        }
        Ok(super::Parts { routes, tasks })
    })
}
