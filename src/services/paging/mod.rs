//! The Paging Server (Cisco's Paging Server, InformaCast Basic Paging): a caller
//! dials a DialCast number, the service gathers a recipient group of phones onto a multicast
//! group and streams the caller's voice to them.
//!
//! A page, step by step (the sequence of Cisco's Paging Server):
//! 1. Call control offers the call to the DialCast route point; an offer without G.711 mu-law
//!    gets 488 (DialCast takes G.711 mu-law only), a page beyond `max_concurrent_pages` 486.
//! 2. The service answers and plays the low stall tone while it pushes
//!    `RTPMRx:<group>:<port>[:<volume>]` in a CiscoIPPhoneExecute to every phone of the group
//!    at once (`POST /CGI/Execute` with the paging user's credentials, which each phone checks
//!    with the cluster's authentication URL).
//! 3. When every phone has answered, or the join timeout passed, the high go-ahead tone; from
//!    then the caller's audio goes out as one multicast stream, EF, with the configured TTL.
//! 4. When the caller hangs up, every phone that joined gets `RTPRx:Stop` (Cisco documents
//!    only that one for leaving a multicast stream in its phone service URIs), and the report is stored.
//!
//! Busy phones are skipped or paged as configured; Do Not Disturb is ignored, as by Cisco's Paging Server.
//! The multicast address comes from the range of the location all the group's phones share
//! (else the paging range), never one a running page holds.
//!
//! Steps 2 to 4 are decided by [`session::PageSession`] and the stream is paced by
//! [`stream::PageStream`], both without I/O or clock; this module admits the call, then does
//! what the session says (call control, the media thread, the pushes) and tells it what
//! happened.

pub mod check;
pub mod feed;
pub mod groups;
pub mod http;
pub mod model;
pub mod session;
pub mod store;
pub mod stream;
pub mod waiters;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::model::NodeService;
use crate::node::NodeState;
use crate::sip::b2bua::{LineEvent, LineState, OfferedCall};
use crate::wire::xml::{CiscoIPPhoneObject, Execute, ExecuteReply};
use model::BusyPhones;
use store::PageReports;

use self::session::{Effect, Event, PageSession, PageSetup, PushKind, Recipient};
use self::stream::{PageStream, StreamCounts};

/// Reports kept in the database (oldest dropped first).
pub const KEEP_REPORTS: i64 = 1000;
/// Pushes in flight at once, whatever the group's size.
const MAX_PUSHES_IN_FLIGHT: usize = 512;
/// How long the `RTPRx:Stop` pushes may take at the end of a page.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// The lease that makes one node of the cluster the Paging Server (one per cluster, as the
/// seed says): `paging` may be named on several nodes, the holder is active, the others stand by.
pub const LEASE: &str = "paging";
/// How long the lease lasts unrenewed: a standby takes over at most this long (plus one
/// [`LEASE_RENEW`]) after the active node died without releasing it.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// How often the holder renews the lease and a standby asks for it.
pub const LEASE_RENEW: Duration = Duration::from_secs(1);

/// One phone's part in a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneResult {
    pub device: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// `joined`, `failed`, `busy` (skipped), `not-registered`, `over-cap`, `no-speakerphone`.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Milliseconds from the answer to the phone's reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_ms: Option<u64>,
    /// Whether the phone acknowledged `RTPRx:Stop` (joined phones only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left: Option<bool>,
}

/// The multicast stream's pacing, measured at the sender.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pacing {
    /// Intervals between multicast packets, in microseconds.
    pub interval_p50_us: u64,
    pub interval_p99_us: u64,
    pub interval_max_us: u64,
}

/// What a page did: kept in the database, listed with `ucm page --list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageReport {
    pub id: String,
    /// The caller's SIP Call-ID.
    pub call_id: String,
    pub node: String,
    pub route_point: String,
    pub dialcast: String,
    pub calling: String,
    pub recipient_group: String,
    /// Unix time (milliseconds) of the offer.
    pub started_at_ms: i64,
    /// `239.x.y.z:port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multicast: Option<String>,
    pub ttl: u32,
    /// From the answer to the go-ahead tone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub go_ahead_ms: Option<u64>,
    pub duration_ms: u64,
    pub joined: usize,
    pub failed: usize,
    pub phones: Vec<PhoneResult>,
    pub stream: StreamCounts,
    pub pacing: Pacing,
    /// Why the page ended: `caller hung up`, `max page time`, `node stopping`, or why it
    /// was refused (`488 ...`).
    pub ended_by: String,
}

/// The paging service of a node.
pub struct PagingService {
    pub node: Arc<NodeState>,
    /// Multicast addresses held by running pages, by call.
    active: Mutex<BTreeMap<u64, Ipv4Addr>>,
    /// The secret this node presents for the paging user (made at start).
    secret: OnceLock<String>,
    http: OnceLock<reqwest::Client>,
    /// The route points taken on becoming active, with the group each pages, until `run`
    /// serves them.
    prepared: Mutex<Vec<(String, RoutePointOffers)>>,
    /// Requests waiting for a page report (`GET /ucm/paging/pages?call_id=&wait_ms=`),
    /// woken when this node stores one.
    pub(crate) waiters: Arc<waiters::ReportWaiters<crate::store::Store>>,
}

type RoutePointOffers = tokio::sync::mpsc::UnboundedReceiver<OfferedCall>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl PagingService {
    pub fn new(node: Arc<NodeState>) -> PagingService {
        let store = Arc::new(node.store.clone());
        let waiters = waiters::ReportWaiters::new(store);
        // Reports other nodes store wake these waiters through the change feed.
        node.shared::<feed::Waiters>().set(waiters.clone());
        PagingService {
            node,
            active: Default::default(),
            secret: Default::default(),
            http: Default::default(),
            prepared: Default::default(),
            waiters,
        }
    }

    fn client(&self, timeout: Duration) -> Result<reqwest::Client, String> {
        if let Some(c) = self.http.get() {
            return Ok(c.clone());
        }
        let c = crate::client::http_client(&crate::client::ClientOptions {
            timeout: Some(timeout),
            ..Default::default()
        })
        .map_err(|e| e.to_string())?;
        Ok(self.http.get_or_init(|| c).clone())
    }

    /// Makes this node's push secret and tries for the Paging Server's lease: the node that
    /// gets it takes the cluster's DialCast route points and stores its push credential, the
    /// others stand by ([`PagingService::run`] keeps trying). Done before the node says it is
    /// ready, so no DialCast call finds the service absent.
    pub async fn prepare(&self) {
        let Some((_, dialcasts)) = self.configured() else {
            return;
        };
        let _ = self.secret.set(hex::encode(rand::random::<[u8; 32]>()));
        match self.take_lease(&dialcasts).await {
            Ok(lease) if lease.instance == self.node.feed.instance => {
                if !self.activate().await {
                    let _ = self.release_lease().await;
                }
            }
            Ok(lease) => tracing::info!(
                active = %lease.node,
                "paging: standing by; another node is the active Paging Server"
            ),
            Err(e) => tracing::warn!(error = %e, "paging: cannot ask for the lease; standing by"),
        }
    }

    /// The paging user and the DialCast route points, when the definition has any.
    fn configured(&self) -> Option<(String, Vec<String>)> {
        let cluster = self.node.cluster();
        let paging = cluster.section::<model::Paging>();
        if paging.dialcasts.is_empty() {
            return None;
        }
        let Some(user) = paging.user.clone() else {
            tracing::warn!("paging: DialCast numbers but no paging user; not started");
            return None;
        };
        Some((
            user,
            paging
                .dialcasts
                .iter()
                .map(|d| d.route_point.clone())
                .collect(),
        ))
    }

    /// Takes or renews the lease (the database decides); the lease as it stands.
    async fn take_lease(
        &self,
        route_points: &[String],
    ) -> Result<crate::store::LeaseRow, crate::store::StoreError> {
        self.node
            .store
            .take_lease(
                LEASE,
                &self.node.node.name,
                &self.node.feed.instance,
                route_points,
                LEASE_TTL.as_millis() as i64,
            )
            .await
    }

    async fn release_lease(&self) -> Result<bool, crate::store::StoreError> {
        self.node
            .store
            .release_lease(LEASE, &self.node.feed.instance)
            .await
    }

    /// Becomes the active Paging Server (the lease is ours): stores the push credential and
    /// takes the DialCast route points. False when it could not.
    async fn activate(&self) -> bool {
        let Some((user, _)) = self.configured() else {
            return false;
        };
        let Some(secret) = self.secret.get() else {
            return false;
        };
        let state = &self.node;
        if let Err(e) = state
            .store
            .set_service_credential(
                &user,
                &crate::node::sha256_hex(secret),
                &state.node.name,
                unix_ms() / 1000,
            )
            .await
        {
            tracing::error!(error = %e, "paging: storing the push credential failed; not active");
            return false;
        }
        state.set_own_service_secret(&user, secret);
        let paging = state.cluster().section::<model::Paging>().as_ref().clone();
        // Before taking pages: phones still listening to pages of a Paging Server that died
        // mid-page (kill -9, no RTPRx:Stop from it) are told to stop.
        self.stop_orphan_listeners(&user, secret, paging.phone_http_port)
            .await;
        self.release_orphan_callers().await;
        let mut taken = Vec::new();
        for dc in &paging.dialcasts {
            match state
                .call_control
                .register_route_point(&dc.route_point)
                .await
            {
                Ok(rx) => {
                    tracing::info!(route_point = %dc.route_point, group = %dc.recipient_group, "DialCast ready");
                    taken.push((dc.recipient_group.clone(), rx));
                }
                Err(e) => {
                    tracing::error!(route_point = %dc.route_point, error = %e, "paging: cannot take the route point");
                }
            }
        }
        if taken.is_empty() {
            return false;
        }
        lock(&self.prepared).extend(taken);
        tracing::info!(node = %state.node.name, "paging: this node is the active Paging Server");
        true
    }

    /// Tells every phone left listening by another instance's page (its node died mid-page,
    /// so the rows of `paging_listeners` it wrote were never removed) `RTPRx:Stop`, at once,
    /// and forgets them. A phone that cannot be reached is forgotten too (logged): nothing
    /// would ever try again. UNCONFIRMED: Cisco's Paging Server is one virtual machine and the
    /// seed says nothing of a page outliving it; ending it is what the issue asks.
    async fn stop_orphan_listeners(&self, user: &str, secret: &str, port: u16) {
        let state = &self.node;
        let orphans = match state
            .store
            .orphan_page_listeners(&state.feed.instance)
            .await
        {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "paging: cannot read listeners left by another node");
                return;
            }
        };
        if orphans.is_empty() {
            return;
        }
        let client = match self.client(STOP_TIMEOUT) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "paging: no HTTP client to stop left-behind listeners");
                return;
            }
        };
        let xml = CiscoIPPhoneObject::Execute(Execute::single(session::LEAVE_URI)).to_xml();
        let form = format!("XML={}", crate::wire::codec::percent_encode(&xml));
        let mut pushes = tokio::task::JoinSet::new();
        for (instance, node, call_id, device, ip) in orphans {
            let url = match ip.parse::<IpAddr>() {
                Ok(IpAddr::V6(v6)) => format!("http://[{v6}]:{port}/CGI/Execute"),
                _ => format!("http://{ip}:{port}/CGI/Execute"),
            };
            let (client, form) = (client.clone(), form.clone());
            let (user, secret) = (user.to_string(), secret.to_string());
            pushes.spawn(async move {
                let r = push_one(&client, &url, &user, &secret, form).await;
                (instance, node, call_id, device, r)
            });
        }
        while let Some(done) = pushes.join_next().await {
            let Ok((instance, node, call_id, device, r)) = done else {
                continue;
            };
            match r {
                Ok(()) => {
                    tracing::info!(device, call_id, from = %node, "paging: a phone left listening by a page of a dead Paging Server was told RTPRx:Stop")
                }
                Err(e) => {
                    tracing::warn!(device, call_id, from = %node, error = %e, "paging: a phone left listening by a dead Paging Server's page did not take RTPRx:Stop")
                }
            }
            if let Err(e) = state
                .store
                .remove_page_listener(&instance, &call_id, &device)
                .await
            {
                tracing::warn!(device, error = %e, "paging: cannot forget a left-behind listener");
            }
        }
    }

    /// Ends the calls of the callers another instance's page left behind (its node died
    /// mid-page and carried the caller's call itself, so no other node knows the call): a BYE
    /// in each caller's dialog with a Reason saying the node is down, then forgets them. A
    /// caller whose call went through another node is not here: that node releases it when it
    /// sees this one down. UNCONFIRMED, like the listeners: the seed says nothing of a page
    /// outliving its Paging Server; a caller left talking to nobody is what the issue forbids.
    async fn release_orphan_callers(&self) {
        let state = &self.node;
        let orphans = match state.store.orphan_page_callers(&state.feed.instance).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "paging: cannot read callers left by another node");
                return;
            }
        };
        for (instance, node, call_id, dialog) in orphans {
            state.call_control.release_dialog(dialog);
            tracing::info!(call_id, from = %node, "paging: the caller of a page of a dead Paging Server was released");
            if let Err(e) = state.store.remove_page_caller(&instance, &call_id).await {
                tracing::warn!(call_id, error = %e, "paging: cannot forget a left-behind caller");
            }
        }
    }

    /// Serves the route points while this node holds the Paging Server's lease, renewing it;
    /// stands by (trying for it every [`LEASE_RENEW`], and at once when its holder changes)
    /// while another node holds it. When the node stops: no new page is taken, the running
    /// ones end (every joined phone gets `RTPRx:Stop`) while the lease is still renewed, then
    /// the lease is released so a standby takes over at once.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let Some((_, dialcasts)) = self.configured() else {
            return;
        };
        let (offer_tx, mut offer_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut readers = tokio::task::JoinSet::new();
        let mut pages = tokio::task::JoinSet::new();
        let mut active = self.serve_prepared(&mut readers, &offer_tx);
        let mut renewed = Instant::now();
        let mut tick = tokio::time::interval(LEASE_RENEW);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let changed = self.node.leases.changed.notified();
            tokio::select! {
                _ = tick.tick() => {}
                _ = changed, if !active => {}
                Some((offer, group)) = offer_rx.recv() => {
                    let (st, stop_rx) = (self.clone(), stop.clone());
                    pages.spawn(async move {
                        let report = page(&st, offer, &group, stop_rx).await;
                        save(&st, &report).await;
                    });
                    continue;
                }
                Some(_) = pages.join_next(), if !pages.is_empty() => continue,
                _ = stop.changed() => break,
            }
            let asked = Instant::now();
            match self.take_lease(&dialcasts).await {
                Ok(lease) if lease.instance == self.node.feed.instance => {
                    renewed = asked;
                    if !active {
                        if self.activate().await {
                            active = self.serve_prepared(&mut readers, &offer_tx);
                        } else {
                            let _ = self.release_lease().await;
                        }
                    }
                }
                Ok(lease) => {
                    if active {
                        tracing::warn!(active = %lease.node, "paging: another node took the lease; standing by");
                        readers.abort_all();
                        active = false;
                    }
                }
                Err(e) => {
                    // The lease is ours until its time passes; stop taking pages before then.
                    if active && renewed.elapsed() + LEASE_RENEW >= LEASE_TTL {
                        tracing::warn!(error = %e, "paging: cannot renew the lease; standing by");
                        readers.abort_all();
                        active = false;
                    }
                }
            }
        }
        // Stopping: no new page; the running ones see the stop and end cleanly.
        readers.abort_all();
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT + Duration::from_secs(2);
        while !pages.is_empty() {
            tokio::select! {
                _ = pages.join_next() => {}
                _ = tick.tick(), if active => {
                    // Still ours while the pages end (their pushes carry this node's secret).
                    let _ = self.take_lease(&dialcasts).await;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(pages = pages.len(), "paging: pages still running at shutdown");
                    pages.abort_all();
                    break;
                }
            }
        }
        if active {
            match self.release_lease().await {
                Ok(_) => tracing::info!("paging: lease released for a standby"),
                Err(e) => {
                    tracing::warn!(error = %e, "paging: releasing the lease failed; a standby takes it when it expires")
                }
            }
        }
    }

    /// Starts a reader for each route point taken, sending its offers to `offers`; whether any
    /// was started.
    fn serve_prepared(
        &self,
        readers: &mut tokio::task::JoinSet<()>,
        offers: &tokio::sync::mpsc::UnboundedSender<(OfferedCall, String)>,
    ) -> bool {
        let prepared = std::mem::take(&mut *lock(&self.prepared));
        let any = !prepared.is_empty();
        for (group, mut rx) in prepared {
            let tx = offers.clone();
            readers.spawn(async move {
                while let Some(offer) = rx.recv().await {
                    if tx.send((offer, group.clone())).is_err() {
                        return;
                    }
                }
            });
        }
        any
    }
}

async fn save(svc: &PagingService, report: &PageReport) {
    let state = &svc.node;
    tracing::info!(
        page = %report.id,
        group = %report.recipient_group,
        joined = report.joined,
        failed = report.failed,
        duration_ms = report.duration_ms,
        ended_by = %report.ended_by,
        "page finished"
    );
    crate::net::counters::page_finished(report.joined as u64);
    let json = match serde_json::to_string(report) {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = %e, "page report: cannot serialise");
            return;
        }
    };
    if let Err(e) = state
        .store
        .add_page_report(
            &report.id,
            report.started_at_ms,
            &report.call_id,
            &json,
            KEEP_REPORTS,
        )
        .await
    {
        tracing::error!(error = %e, page = %report.id, "page report: storing failed");
    }
    svc.waiters.stored(&report.call_id);
}

/// The node's own IP for media: the address its SIP service is reached at.
fn media_ip(state: &NodeState) -> IpAddr {
    state
        .sip_host
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| state.node.address.parse())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Runs one page from offer to report.
async fn page(
    svc: &Arc<PagingService>,
    offer: OfferedCall,
    group_name: &str,
    stop: watch::Receiver<bool>,
) -> PageReport {
    let state = &svc.node;
    let started = Instant::now();
    let paging = state.cluster().section::<model::Paging>().as_ref().clone();
    let mut report = PageReport {
        id: hex::encode(rand::random::<[u8; 8]>()),
        call_id: offer.call_id.clone(),
        node: state.node.name.clone(),
        route_point: offer.route_point.clone(),
        dialcast: offer.dn.clone(),
        calling: offer.calling.clone(),
        recipient_group: group_name.to_string(),
        started_at_ms: unix_ms(),
        multicast: None,
        ttl: paging.multicast_ttl,
        go_ahead_ms: None,
        duration_ms: 0,
        joined: 0,
        failed: 0,
        phones: Vec::new(),
        stream: StreamCounts::default(),
        pacing: Pacing::default(),
        ended_by: String::new(),
    };
    let admitted = match admit(svc, &offer, group_name, &mut report).await {
        Ok(a) => a,
        Err((status, reason)) => {
            report.ended_by = format!("{status} {reason}");
            report.duration_ms = started.elapsed().as_millis() as u64;
            let _ = state.call_control.reject(offer.call, status, &reason).await;
            return report;
        }
    };
    let listed = svc.node.live.add(
        "pages",
        &report.call_id,
        serde_json::json!({
            "call_id": report.call_id, "dialcast": report.dialcast, "calling": report.calling,
            "recipient_group": report.recipient_group, "multicast": report.multicast,
            "started": report.started_at_ms / 1000, "node": report.node,
        }),
    );
    let report = run(svc, &offer, group_name, admitted, report, started, stop).await;
    drop(listed);
    lock(&svc.active).remove(&offer.call);
    crate::net::counters::gauge(crate::net::counters::PAGES_RUNNING, &[], -1);
    report
}

/// What a page that may go ahead holds: its sockets and multicast address (reserved in
/// [`PagingService::active`]), the answer to the caller and who is paged.
struct Admitted {
    paging: model::Paging,
    answer: String,
    caller_sock: tokio::net::UdpSocket,
    caller_rtp: SocketAddr,
    group_sock: tokio::net::UdpSocket,
    group_addr: SocketAddr,
    cap: usize,
    members: groups::Members,
    busy: HashSet<String>,
}

/// Decides whether the service takes the call: the group, a media socket, a mu-law offer, a
/// free page and multicast address (noted in the report). `Err` is the status and reason to
/// refuse it with.
async fn admit(
    svc: &PagingService,
    offer: &OfferedCall,
    group_name: &str,
    report: &mut PageReport,
) -> Result<Admitted, (u16, String)> {
    let state = &svc.node;
    let cluster = state.cluster();
    let paging = cluster.section::<model::Paging>().as_ref().clone();
    let Some(group) = paging
        .recipient_groups
        .iter()
        .find(|g| g.name == group_name)
        .cloned()
    else {
        return Err((
            404,
            format!("Not Found (no recipient group {group_name:?})"),
        ));
    };

    // The caller's offer: G.711 mu-law or nothing.
    let answer_ip = media_ip(state);
    let audio_dscp = cluster.qos.audio;
    let caller_sock = crate::net::bind_udp(SocketAddr::new(answer_ip, 0), audio_dscp)
        .map_err(|e| (503, format!("Service Unavailable (media socket: {e})")))?;
    let media_port = caller_sock.local_addr().map(|a| a.port()).unwrap_or(0);
    let (answer, caller_rtp) = check_offer(offer.offer.as_deref(), answer_ip, media_port)
        .map_err(|reason| (488, reason))?;

    // Who is paged, and the multicast address.
    let members = groups::members(&cluster, &paging, &group);
    let busy: HashSet<String> = match paging.busy_phones {
        BusyPhones::Skip => {
            let mut busy = state.call_control.busy_devices().await.unwrap_or_default();
            busy.extend(busy_elsewhere(state).await);
            busy
        }
        BusyPhones::Page => HashSet::new(),
    };
    let range = groups::range_for(&cluster, &paging, &members.devices);
    let address = {
        let mut active = lock(&svc.active);
        if active.len() >= paging.max_concurrent_pages {
            return Err((
                486,
                format!(
                    "Busy Here (the paging server runs its maximum of {} pages)",
                    paging.max_concurrent_pages
                ),
            ));
        }
        let used: BTreeSet<Ipv4Addr> = active.values().copied().collect();
        let Some(a) = groups::free_address(&range, &used) else {
            return Err((
                503,
                format!("Service Unavailable (every multicast address of {range} is in use)"),
            ));
        };
        active.insert(offer.call, a);
        crate::net::counters::gauge(crate::net::counters::PAGES_RUNNING, &[], 1);
        a
    };
    let group_addr = SocketAddr::new(IpAddr::V4(address), paging.multicast_port);
    report.multicast = Some(group_addr.to_string());
    let iface = match answer_ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    };
    let mcast_local = SocketAddr::new(IpAddr::V4(iface), 0);
    let group_sock =
        crate::net::multicast_sender(mcast_local, audio_dscp, paging.multicast_ttl, iface, true)
            .map_err(|e| {
                lock(&svc.active).remove(&offer.call);
                crate::net::counters::gauge(crate::net::counters::PAGES_RUNNING, &[], -1);
                (503, format!("Service Unavailable (multicast socket: {e})"))
            })?;
    Ok(Admitted {
        cap: groups::cap(&paging, &group),
        paging,
        answer,
        caller_sock,
        caller_rtp,
        group_sock,
        group_addr,
        members,
        busy,
    })
}

/// The devices on a call on the other running nodes of the cluster, as the change feed last
/// announced them (each node announces its list when it changes: milliseconds old), else as
/// their last heartbeats say (at most one `HEARTBEAT_INTERVAL` old). A node whose heartbeat
/// is older than `NODE_DOWN_AFTER` is down and its calls with it. A call between phones of other nodes is
/// invisible to this node's call control, yet its phones are busy all the same (the seed's
/// Paging Server checks busy phones through Unified CM, which knows every call).
async fn busy_elsewhere(state: &NodeState) -> HashSet<String> {
    use crate::node::feed::{BUSY_DEVICES, NODE_DOWN_AFTER};
    let rows = match state.store.nodes().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "paging: other nodes' busy phones unknown (database); only this node's are skipped");
            return HashSet::new();
        }
    };
    let now = unix_ms();
    rows.iter()
        .filter(|r| r.instance != state.feed.instance)
        .filter(|r| now - r.heartbeat_at <= NODE_DOWN_AFTER.as_millis() as i64)
        .flat_map(|r| {
            // The change feed's announcement when there is one (it comes when a call starts
            // or ends), else the heartbeat's list (at most one heartbeat old).
            state.feed.busy_of(&r.name, &r.instance).unwrap_or_else(|| {
                r.status
                    .get(BUSY_DEVICES)
                    .and_then(|v| v.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.as_str().map(str::to_string))
                    .collect()
            })
        })
        .collect()
}

/// Drives the page's [`PageSession`] from the answer to the report.
async fn run(
    svc: &Arc<PagingService>,
    offer: &OfferedCall,
    group_name: &str,
    a: Admitted,
    report: PageReport,
    started: Instant,
    stop: watch::Receiver<bool>,
) -> PageReport {
    let state = &svc.node;
    let paging = &a.paging;
    // Who is pushed to: each phone's address as it registered.
    let recipients: Vec<Recipient> = a
        .members
        .devices
        .iter()
        .map(|d| Recipient {
            device: d.clone(),
            ip: state
                .registrar
                .device_bindings(d)
                .into_iter()
                .next()
                .map(|b| b.source.ip().to_string()),
            busy: a.busy.contains(d),
        })
        .collect();
    // Where each phone was pushed from, for the listeners' rows (see `paging_listeners`).
    let ips: BTreeMap<String, String> = recipients
        .iter()
        .filter_map(|r| Some((r.device.clone(), r.ip.clone()?)))
        .collect();
    let mut listeners_stored = false;
    let mut caller_stored = false;
    let mut join_uri = format!("RTPMRx:{}:{}", a.group_addr.ip(), paging.multicast_port);
    if let Some(v) = paging.volume {
        join_uri.push_str(&format!(":{v}"));
    }
    let join_timeout = Duration::from_millis(paging.join_timeout_ms);
    let client = svc.client(join_timeout.max(STOP_TIMEOUT));
    let mut session = PageSession::new(PageSetup {
        report,
        started,
        recipients,
        over_cap: a.members.over_cap,
        no_speakerphone: a.members.no_speakerphone,
        cap: a.cap,
        busy_phones: paging.busy_phones,
        join_uri,
        join_timeout,
        max_page: Duration::from_secs(paging.max_page_seconds),
        leave_timeout: STOP_TIMEOUT,
        push_unavailable: client.as_ref().err().cloned(),
    });
    let (push_tx, push_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut io = PageIo {
        state: state.clone(),
        call: offer.call,
        group_name,
        answer: a.answer,
        media: Some((a.caller_sock, a.group_sock)),
        caller_rtp: a.caller_rtp,
        group_addr: a.group_addr,
        max_page: Duration::from_secs(paging.max_page_seconds),
        media_thread: None,
        control: Arc::new(AtomicU8::new(CONTINUE)),
        client: client.ok(),
        user: paging.user.clone().unwrap_or_default().into(),
        secret: svc.secret.get().cloned().unwrap_or_default().into(),
        phone_port: paging.phone_http_port,
        push_gate: Arc::new(tokio::sync::Semaphore::new(MAX_PUSHES_IN_FLIGHT)),
        push_tx,
        push_rx,
        in_flight: tokio::task::JoinSet::new(),
        events: None,
        stop,
        stop_seen: false,
    };
    let mut queue: std::collections::VecDeque<Effect> = session.offer().into();
    loop {
        while let Some(effect) = queue.pop_front() {
            if let Effect::Report(report) = effect {
                if listeners_stored {
                    if let Err(e) = state
                        .store
                        .remove_page_listeners(&state.feed.instance, &offer.call_id)
                        .await
                    {
                        tracing::warn!(error = %e, "paging: cannot forget the page's listeners");
                    }
                }
                if caller_stored {
                    if let Err(e) = state
                        .store
                        .remove_page_caller(&state.feed.instance, &offer.call_id)
                        .await
                    {
                        tracing::warn!(error = %e, "paging: cannot forget the page's caller");
                    }
                }
                return *report;
            }
            if matches!(effect, Effect::GoAhead) {
                // The phones listening now, so that whoever takes over after this node dies
                // mid-page tells them to stop (written before the go-ahead tone).
                let phones: Vec<(String, String)> = session
                    .joined()
                    .into_iter()
                    .filter_map(|d| Some((d.to_string(), ips.get(d)?.clone())))
                    .collect();
                match state
                    .store
                    .add_page_listeners(
                        &state.feed.instance,
                        &state.node.name,
                        &offer.call_id,
                        &phones,
                        unix_ms() / 1000,
                    )
                    .await
                {
                    Ok(()) => listeners_stored = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "paging: cannot record the page's listeners")
                    }
                }
                // And the caller, when this node carries its call (only in a cluster: the
                // dialog is sealed with the cluster's secret), so that it is released too.
                if let Ok(Some(dialog)) = state.call_control.caller_dialog(offer.call).await {
                    match state
                        .store
                        .add_page_caller(
                            &state.feed.instance,
                            &state.node.name,
                            &offer.call_id,
                            &dialog,
                            unix_ms() / 1000,
                        )
                        .await
                    {
                        Ok(()) => caller_stored = true,
                        Err(e) => {
                            tracing::warn!(error = %e, "paging: cannot record the page's caller")
                        }
                    }
                }
            }
            if let Some(event) = io.apply(effect, &session).await {
                queue.extend(session.on_event(event, Instant::now()));
            }
        }
        if let Some(event) = io.next_event(&session).await {
            queue.extend(session.on_event(event, Instant::now()));
        }
    }
}

/// A push's outcome, as the push task reports it.
type Pushed = (String, PushKind, Result<(), String>);

/// The I/O of one page: call control, the media thread and the pushes.
struct PageIo<'a> {
    state: Arc<NodeState>,
    call: u64,
    group_name: &'a str,
    /// The SDP answer to the caller.
    answer: String,
    /// The sockets, until the media thread takes them.
    media: Option<(tokio::net::UdpSocket, tokio::net::UdpSocket)>,
    caller_rtp: SocketAddr,
    group_addr: SocketAddr,
    max_page: Duration,
    media_thread: Option<std::thread::JoinHandle<(StreamCounts, Pacing)>>,
    control: Arc<AtomicU8>,
    client: Option<reqwest::Client>,
    user: Arc<str>,
    secret: Arc<str>,
    phone_port: u16,
    /// At most [`MAX_PUSHES_IN_FLIGHT`] pushes at once, whatever the group's size.
    push_gate: Arc<tokio::sync::Semaphore>,
    push_tx: tokio::sync::mpsc::UnboundedSender<Pushed>,
    push_rx: tokio::sync::mpsc::UnboundedReceiver<Pushed>,
    in_flight: tokio::task::JoinSet<()>,
    events: Option<tokio::sync::broadcast::Receiver<LineEvent>>,
    stop: watch::Receiver<bool>,
    stop_seen: bool,
}

impl PageIo<'_> {
    /// Does one effect; some answer at once with an event.
    async fn apply(&mut self, effect: Effect, session: &PageSession) -> Option<Event> {
        let cc = &self.state.call_control;
        match effect {
            Effect::Answer => {
                // Hang-ups arrive as line events; subscribe before answering so none is missed.
                self.events = Some(cc.subscribe());
                Some(
                    match cc.answer(self.call, self.answer.clone().into()).await {
                        Ok(()) => Event::Answered,
                        Err(e) => Event::AnswerFailed(e.to_string()),
                    },
                )
            }
            Effect::StartStream => {
                let (caller, group) = self.media.take()?;
                Some(
                    match start_media(
                        caller,
                        group,
                        self.caller_rtp,
                        self.group_addr,
                        self.control.clone(),
                        self.max_page,
                    ) {
                        Ok(h) => {
                            self.media_thread = Some(h);
                            Event::StreamStarted
                        }
                        Err(e) => Event::StreamFailed(e.to_string()),
                    },
                )
            }
            Effect::Push {
                device,
                ip,
                uri,
                kind,
            } => {
                self.push(device, &ip, &uri, kind);
                None
            }
            Effect::CancelPushes => {
                self.in_flight.abort_all();
                None
            }
            Effect::GoAhead => {
                self.control.store(GO_AHEAD, Ordering::SeqCst);
                tracing::info!(
                    call = self.call,
                    group = %self.group_name,
                    joined = session.joined().len(),
                    of = session.group_size(),
                    go_ahead_ms = session.go_ahead_ms(),
                    multicast = %self.group_addr,
                    "page live"
                );
                None
            }
            Effect::EndCall => {
                let _ = cc.end_call(self.call).await;
                None
            }
            Effect::StopStream => {
                self.control.store(STOP, Ordering::SeqCst);
                let counted = match self.media_thread.take() {
                    Some(h) => tokio::task::spawn_blocking(move || h.join())
                        .await
                        .ok()
                        .and_then(|r| r.ok()),
                    None => None,
                };
                let (counts, pacing) = counted.unwrap_or_default();
                Some(Event::StreamStopped { counts, pacing })
            }
            Effect::Report(_) => None,
        }
    }

    /// Waits for what happens next: a push's outcome, the caller's call, the session's timer
    /// or the node's stop. `None`: nothing the session needs to hear.
    async fn next_event(&mut self, session: &PageSession) -> Option<Event> {
        use tokio::sync::broadcast::error::RecvError;
        let deadline = session.next_deadline();
        let listening = session.listening();
        let cc = &self.state.call_control;
        let call = self.call;
        tokio::select! {
            Some((device, kind, result)) = self.push_rx.recv() => {
                Some(Event::Pushed { device, kind, result })
            }
            ev = recv_line(&mut self.events), if listening && self.events.is_some() => match ev {
                Ok(ev) if ev.call == call && ev.state == LineState::Idle => Some(Event::CallerHungUp),
                Ok(_) => None,
                // The caller's hang-up may be among the missed events: ask.
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "paging: line events lagged; asking call control whether the page's call is up");
                    match cc.call_exists(call).await {
                        Ok(true) => None,
                        Ok(false) => Some(Event::CallerHungUp),
                        Err(_) => Some(Event::CallControlStopped),
                    }
                }
                Err(RecvError::Closed) => {
                    self.events = None;
                    Some(Event::CallControlStopped)
                }
            },
            _ = sleep_until(deadline) => Some(Event::Timer),
            _ = self.stop.changed(), if listening && !self.stop_seen => {
                self.stop_seen = true;
                Some(Event::NodeStopping)
            }
        }
    }

    /// Pushes an Execute of `uri` to the phone at `ip` in a task; its outcome comes back on
    /// `push_rx`.
    fn push(&mut self, device: String, ip: &str, uri: &str, kind: PushKind) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let xml = CiscoIPPhoneObject::Execute(Execute::single(uri)).to_xml();
        let form = format!("XML={}", crate::wire::codec::percent_encode(&xml));
        let port = self.phone_port;
        let url = match ip.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("http://[{v6}]:{port}/CGI/Execute"),
            _ => format!("http://{ip}:{port}/CGI/Execute"),
        };
        let (user, password) = (self.user.clone(), self.secret.clone());
        let (gate, results) = (self.push_gate.clone(), self.push_tx.clone());
        self.in_flight.spawn(async move {
            let Ok(_permit) = gate.acquire_owned().await else {
                return;
            };
            let r = push_one(&client, &url, &user, &password, form).await;
            let _ = results.send((device, kind, r));
        });
    }
}

/// The next line event; pending forever without a subscription.
async fn recv_line(
    events: &mut Option<tokio::sync::broadcast::Receiver<LineEvent>>,
) -> Result<LineEvent, tokio::sync::broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// Pushes one Execute (the form `XML=...`) with the paging user's credentials; `Ok` when the
/// phone answered that every item succeeded.
async fn push_one(
    client: &reqwest::Client,
    url: &str,
    user: &str,
    password: &str,
    form: String,
) -> Result<(), String> {
    let resp = client
        .post(url)
        .basic_auth(user, Some(password))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    match crate::wire::xml::parse_execute_reply(&body) {
        Ok(ExecuteReply::Response(r)) if r.all_ok() => Ok(()),
        Ok(ExecuteReply::Response(r)) => Err(format!(
            "the phone refused: {}",
            r.items
                .iter()
                .filter_map(|i| i.data.clone())
                .collect::<Vec<_>>()
                .join("; ")
        )),
        Ok(ExecuteReply::Error(e)) => Err(format!(
            "CiscoIPPhoneError {}",
            e.number.map_or("?".into(), |n| n.to_string())
        )),
        Err(e) => Err(format!("HTTP {status}, not a phone's answer: {e}")),
    }
}

/// Checks the caller's offer: an SDP offer with G.711 mu-law, answered with mu-law alone.
/// Returns the answer and where the caller receives RTP; the `Err` is the 488's reason.
fn check_offer(
    offer: Option<&[u8]>,
    ip: IpAddr,
    port: u16,
) -> Result<(String, SocketAddr), String> {
    use crate::wire::sdp::{answer_for, SessionDescription};
    let Some(body) = offer else {
        return Err(
            "Not Acceptable Here (DialCast needs an SDP offer with G.711 mu-law in the INVITE)"
                .into(),
        );
    };
    let sdp = SessionDescription::parse_bytes(body)
        .map_err(|e| format!("Not Acceptable Here (the SDP offer does not parse: {e})"))?;
    let answer = answer_for(&sdp, ip, port, &["PCMU"]).map_err(|e| {
        format!(
            "Not Acceptable Here (DialCast takes G.711 mu-law only; offered {})",
            if e.offered.is_empty() {
                "no audio codec".to_string()
            } else {
                e.offered.join(", ")
            }
        )
    })?;
    let remote = sdp
        .audio()
        .and_then(|m| sdp.media_address(m))
        .ok_or_else(|| "Not Acceptable Here (the offer has no audio address)".to_string())?;
    Ok((answer.to_string(), remote))
}

const CONTINUE: u8 = 0;
const GO_AHEAD: u8 = 1;
const STOP: u8 = 2;

/// Starts the page's media thread: a 20 ms clock of its own (an OS thread sleeping to
/// absolute deadlines paces more evenly than the async timer's 1 ms wheel), reading the
/// caller's RTP, playing the tones to the caller and sending the multicast stream.
fn start_media(
    caller: tokio::net::UdpSocket,
    group: tokio::net::UdpSocket,
    caller_rtp: SocketAddr,
    group_addr: SocketAddr,
    control: Arc<AtomicU8>,
    limit: Duration,
) -> std::io::Result<std::thread::JoinHandle<(StreamCounts, Pacing)>> {
    let caller: UdpSocket = caller.into_std()?;
    let group: UdpSocket = group.into_std()?;
    caller.set_nonblocking(true)?;
    group.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("page-media".into())
        .spawn(move || {
            realtime_priority();
            let mut s = PageStream::new(
                (rand::random(), rand::random(), rand::random()),
                (rand::random(), rand::random(), rand::random()),
            );
            let frame = Duration::from_millis(20);
            let start = Instant::now();
            let mut next = start;
            let mut buf = [0u8; 2048];
            let mut sent_at: Vec<Instant> = Vec::new();
            loop {
                match control.load(Ordering::SeqCst) {
                    STOP => break,
                    GO_AHEAD => s.go_ahead(),
                    _ => {}
                }
                if start.elapsed() > limit {
                    break;
                }
                // Only the caller's address may feed the page (symmetric RTP from its port,
                // or any port of its address behind a relay).
                while let Ok((n, from)) = caller.recv_from(&mut buf) {
                    if from.ip() == caller_rtp.ip() {
                        s.caller_packet(&buf[..n]);
                    } else {
                        s.counts.caller_ignored += 1;
                    }
                }
                let t = s.tick();
                if let Some(p) = t.to_caller {
                    let _ = caller.send_to(&p, caller_rtp);
                }
                if let Some(p) = t.to_group {
                    let _ = group.send_to(&p, group_addr);
                    if sent_at.len() < 1_000_000 {
                        sent_at.push(Instant::now());
                    }
                }
                next += frame;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else if now - next > frame * 5 {
                    // Far behind (the machine stalled): start a fresh schedule.
                    next = now;
                }
            }
            (s.counts, pacing(&sent_at))
        })
}

/// Asks for a real-time (SCHED_FIFO) slot for the page's clock, so a busy machine delays the
/// stream less. Best effort: without the privilege (CAP_SYS_NICE) the thread keeps the normal
/// policy and says so once in the log.
fn realtime_priority() {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: sets the calling thread's own policy with a valid, initialised parameter.
    let r = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if r != 0 {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            tracing::info!(
                error = r,
                "paging: no real-time priority for the stream's clock (needs CAP_SYS_NICE)"
            );
        });
    }
}

fn pacing(sent: &[Instant]) -> Pacing {
    let mut iv: Vec<u64> = sent
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_micros() as u64)
        .collect();
    if iv.is_empty() {
        return Pacing::default();
    }
    iv.sort_unstable();
    let pick = |q: f64| iv[((iv.len() - 1) as f64 * q).round() as usize];
    Pacing {
        interval_p50_us: pick(0.5),
        interval_p99_us: pick(0.99),
        interval_max_us: iv[iv.len() - 1],
    }
}

/// The Paging Server: DialCast route points, recipient groups and page reports.
pub const SERVICE: super::ServiceSpec = super::ServiceSpec {
    flags: &[super::Flag {
        flag: NodeService::Paging,
        name: "the Paging Server",
        paths: &["/ucm/paging/"],
    }],
    listeners: &[],
    sections: &[crate::config::SectionSpec::of::<model::Paging>()],
    check: Some(check::check),
    model_source: include_str!("model.rs"),
    feed: Some(feed::FEED),
    status: &[super::StatusSection {
        key: "running_pages",
        title: "Running pages on this node",
        columns: &[
            "dialcast",
            "calling",
            "recipient_group",
            "multicast",
            "started",
        ],
        read: status_running,
    }],
    start: start_service,
};

fn start_service(s: super::Start) -> super::StartFuture {
    use axum::routing::get;
    Box::pin(async move {
        let svc = Arc::new(PagingService::new(s.node.clone()));
        // Before the node says it is ready, so no DialCast call finds the service absent.
        svc.prepare().await;
        let routes = axum::Router::new()
            .route(http::GROUPS_PATH, get(http::groups_handler))
            .route(http::PAGES_PATH, get(http::pages_handler))
            .with_state(svc.clone());
        Ok(super::Parts {
            routes,
            tasks: vec![Box::pin(svc.run(s.stop))],
        })
    })
}

/// The pages running at this node now (the cluster status): listed in [`NodeState::live`] by
/// each page while it runs.
fn status_running(state: &NodeState, _now: i64) -> super::StatusFuture<'_> {
    Box::pin(async move { Ok(serde_json::Value::Array(state.live.list("pages"))) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_without_mulaw_are_refused_with_the_reason() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let g729 = "v=0\r\no=- 1 1 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
        let e = check_offer(Some(g729.as_bytes()), ip, 5000).unwrap_err();
        assert!(e.contains("G.711 mu-law only") && e.contains("G729"), "{e}");
        assert!(check_offer(None, ip, 5000)
            .unwrap_err()
            .contains("SDP offer"));
        assert!(check_offer(Some(b"garbage"), ip, 5000)
            .unwrap_err()
            .contains("does not parse"));
        let both = "v=0\r\no=- 1 1 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18 0 101\r\na=rtpmap:18 G729/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
        let (answer, remote) = check_offer(Some(both.as_bytes()), ip, 5000).unwrap();
        assert_eq!(remote, "127.0.0.5:4000".parse().unwrap());
        assert!(answer.contains("m=audio 5000 RTP/AVP 0"), "{answer}");
        assert!(!answer.contains("G729"));
    }

    #[test]
    fn pacing_percentiles() {
        let t0 = Instant::now();
        let sent: Vec<Instant> = (0..101)
            .map(|i| {
                t0 + Duration::from_millis(20 * i)
                    + Duration::from_micros(if i == 50 { 900 } else { 0 })
            })
            .collect();
        let p = pacing(&sent);
        assert_eq!(p.interval_p50_us, 20_000);
        assert_eq!(p.interval_max_us, 20_900);
        assert!(pacing(&[]).interval_p99_us == 0);
    }
}
