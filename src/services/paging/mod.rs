//! The Paging Server (the seed's "Cisco Paging Server", InformaCast Basic Paging): a caller
//! dials a DialCast number, the service gathers a recipient group of phones onto a multicast
//! group and streams the caller's voice to them.
//!
//! A page, step by step (the seed's sequence):
//! 1. Call control offers the call to the DialCast route point; an offer without G.711 mu-law
//!    gets 488 (the seed: DialCast takes mu-law only), a page beyond `max_concurrent_pages` 486.
//! 2. The service answers and plays the low stall tone while it pushes
//!    `RTPMRx:<group>:<port>[:<volume>]` in a CiscoIPPhoneExecute to every phone of the group
//!    at once (`POST /CGI/Execute` with the paging user's credentials, which each phone checks
//!    with the cluster's authentication URL).
//! 3. When every phone has answered, or the join timeout passed, the high go-ahead tone; from
//!    then the caller's audio goes out as one multicast stream, EF, with the configured TTL.
//! 4. When the caller hangs up, every phone that joined gets `RTPRx:Stop` (Cisco documents
//!    only that one for leaving a multicast stream; spec §2), and the report is stored.
//!
//! Busy phones are skipped or paged as configured; Do Not Disturb is ignored, as the seed says.
//! The multicast address comes from the range of the location all the group's phones share
//! (else the paging range), never one a running page holds.

pub mod groups;
pub mod http;
pub mod stream;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::model::{BusyPhones, NodeService};
use crate::node::NodeState;
use crate::sip::b2bua::{LineState, OfferedCall};
use crate::wire::xml::{CiscoIPPhoneObject, Execute, ExecuteReply};

use self::stream::{PageStream, StreamCounts};

/// Reports kept in the database (oldest dropped first).
pub const KEEP_REPORTS: i64 = 1000;
/// Pushes in flight at once, whatever the group's size.
const MAX_PUSHES_IN_FLIGHT: usize = 512;
/// How long the `RTPRx:Stop` pushes may take at the end of a page.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// One phone's part in a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneResult {
    pub device: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// `joined`, `failed`, `busy` (skipped), `not-registered`, `over-cap`.
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
    /// The route points taken at start, with the group each pages, until `run` serves them.
    prepared: Mutex<Vec<(String, RoutePointOffers)>>,
    /// Woken when this node stores a page report (`GET /ucm/paging/pages?call_id=&wait_ms=`).
    pub(crate) reported: tokio::sync::Notify,
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
        PagingService {
            node,
            active: Default::default(),
            secret: Default::default(),
            http: Default::default(),
            prepared: Default::default(),
            reported: Default::default(),
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

    /// Takes the cluster's DialCast route points and stores this node's push credential;
    /// done before the node says it is ready, so no DialCast call finds the service absent.
    pub async fn prepare(&self) {
        let state = &self.node;
        let cluster = state.cluster();
        let paging = cluster.paging.clone();
        if paging.dialcasts.is_empty() {
            return;
        }
        let Some(user) = paging.user.clone() else {
            tracing::warn!("paging: DialCast numbers but no paging user; not started");
            return;
        };
        let secret = hex::encode(rand::random::<[u8; 32]>());
        if let Err(e) = state
            .store
            .set_service_credential(
                &user,
                &crate::node::sha256_hex(&secret),
                &state.node.name,
                unix_ms() / 1000,
            )
            .await
        {
            tracing::error!(error = %e, "paging: storing the push credential failed; not started");
            return;
        }
        state.set_own_service_secret(&user, &secret);
        let _ = self.secret.set(secret);
        for dc in &paging.dialcasts {
            match state
                .call_control
                .register_route_point(&dc.route_point)
                .await
            {
                Ok(rx) => {
                    tracing::info!(route_point = %dc.route_point, group = %dc.recipient_group, "DialCast ready");
                    lock(&self.prepared).push((dc.recipient_group.clone(), rx));
                }
                Err(e) => {
                    tracing::error!(route_point = %dc.route_point, error = %e, "paging: cannot take the route point");
                }
            }
        }
    }

    /// Serves the route points [`PagingService::prepare`] took until the node stops.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let prepared = std::mem::take(&mut *lock(&self.prepared));
        if prepared.is_empty() {
            return;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (group, mut offers) in prepared {
            let (st, stop_rx) = (self.clone(), stop.clone());
            tasks.spawn(async move {
                while let Some(offer) = offers.recv().await {
                    let (st, group, stop_rx) = (st.clone(), group.clone(), stop_rx.clone());
                    tokio::spawn(async move {
                        let report = page(&st, offer, &group, stop_rx).await;
                        save(&st, &report).await;
                    });
                }
            });
        }
        let _ = stop.changed().await;
        tasks.abort_all();
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
    svc.reported.notify_waiters();
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
    let cluster = state.cluster();
    let paging = cluster.paging.clone();
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
    let cc = &state.call_control;
    let refuse = |report: &mut PageReport, status: u16, reason: String| {
        report.ended_by = format!("{status} {reason}");
        report.duration_ms = started.elapsed().as_millis() as u64;
        (status, reason)
    };
    let Some(group) = paging
        .recipient_groups
        .iter()
        .find(|g| g.name == group_name)
        .cloned()
    else {
        let (s, r) = refuse(
            &mut report,
            404,
            format!("Not Found (no recipient group {group_name:?})"),
        );
        let _ = cc.reject(offer.call, s, &r).await;
        return report;
    };

    // The caller's offer: G.711 mu-law or nothing.
    let answer_ip = media_ip(state);
    let audio_dscp = cluster.qos.audio;
    let caller_sock = match crate::net::bind_udp(SocketAddr::new(answer_ip, 0), audio_dscp) {
        Ok(s) => s,
        Err(e) => {
            let (s, r) = refuse(
                &mut report,
                503,
                format!("Service Unavailable (media socket: {e})"),
            );
            let _ = cc.reject(offer.call, s, &r).await;
            return report;
        }
    };
    let media_port = caller_sock.local_addr().map(|a| a.port()).unwrap_or(0);
    let (answer, caller_rtp) = match check_offer(offer.offer.as_deref(), answer_ip, media_port) {
        Ok(x) => x,
        Err(reason) => {
            let (s, r) = refuse(&mut report, 488, reason);
            let _ = cc.reject(offer.call, s, &r).await;
            return report;
        }
    };

    // Who is paged, and the multicast address.
    let members = groups::members(&cluster, &paging, &group);
    let busy: HashSet<String> = match paging.busy_phones {
        BusyPhones::Skip => cc.busy_devices().await.unwrap_or_default(),
        BusyPhones::Page => HashSet::new(),
    };
    let range = groups::range_for(&cluster, &paging, &members.devices);
    let address = {
        let mut active = lock(&svc.active);
        if active.len() >= paging.max_concurrent_pages {
            None
        } else {
            let used: BTreeSet<Ipv4Addr> = active.values().copied().collect();
            match groups::free_address(&range, &used) {
                Some(a) => {
                    active.insert(offer.call, a);
                    Some(Ok(a))
                }
                None => Some(Err(())),
            }
        }
    };
    let address = match address {
        None => {
            let (s, r) = refuse(
                &mut report,
                486,
                format!(
                    "Busy Here (the paging server runs its maximum of {} pages)",
                    paging.max_concurrent_pages
                ),
            );
            let _ = cc.reject(offer.call, s, &r).await;
            return report;
        }
        Some(Err(())) => {
            let (s, r) = refuse(
                &mut report,
                503,
                format!("Service Unavailable (every multicast address of {range} is in use)"),
            );
            let _ = cc.reject(offer.call, s, &r).await;
            return report;
        }
        Some(Ok(a)) => a,
    };
    let group_addr = SocketAddr::new(IpAddr::V4(address), paging.multicast_port);
    report.multicast = Some(group_addr.to_string());
    let release = || {
        lock(&svc.active).remove(&offer.call);
    };
    let iface = match answer_ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    };
    let mcast_local = SocketAddr::new(IpAddr::V4(iface), 0);
    let group_sock = match crate::net::multicast_sender(
        mcast_local,
        audio_dscp,
        paging.multicast_ttl,
        iface,
        true,
    ) {
        Ok(s) => s,
        Err(e) => {
            release();
            let (s, r) = refuse(
                &mut report,
                503,
                format!("Service Unavailable (multicast socket: {e})"),
            );
            let _ = cc.reject(offer.call, s, &r).await;
            return report;
        }
    };

    // Hang-ups arrive as line events; subscribe before answering so none is missed.
    let mut events = cc.subscribe();
    if let Err(e) = cc.answer(offer.call, answer.into()).await {
        release();
        report.ended_by = format!("not answered: {e}");
        report.duration_ms = started.elapsed().as_millis() as u64;
        return report;
    }
    let answered = Instant::now();

    // The media thread: stall tone now, go-ahead when told, then the relay.
    let control = Arc::new(AtomicU8::new(CONTINUE));
    let media = match start_media(
        caller_sock,
        group_sock,
        caller_rtp,
        group_addr,
        control.clone(),
        Duration::from_secs(paging.max_page_seconds),
    ) {
        Ok(h) => h,
        Err(e) => {
            release();
            let _ = cc.end_call(offer.call).await;
            report.ended_by = format!("media: {e}");
            report.duration_ms = started.elapsed().as_millis() as u64;
            return report;
        }
    };

    // Join: push RTPMRx to every phone at once.
    let mut uri = format!("RTPMRx:{address}:{}", paging.multicast_port);
    if let Some(v) = paging.volume {
        uri.push_str(&format!(":{v}"));
    }
    let join_timeout = Duration::from_millis(paging.join_timeout_ms);
    let user = paging.user.clone().unwrap_or_default();
    let secret = svc.secret.get().cloned().unwrap_or_default();
    let client = svc.client(join_timeout.max(STOP_TIMEOUT));
    let mut phones: Vec<PhoneResult> = Vec::new();
    let mut targets: Vec<(String, String)> = Vec::new();
    for d in &members.devices {
        let binding = state.registrar.device_bindings(d).into_iter().next();
        let ip = binding.map(|b| b.source.ip().to_string());
        let result = |outcome: &str, reason: Option<String>| PhoneResult {
            device: d.clone(),
            ip: ip.clone(),
            outcome: outcome.into(),
            reason,
            join_ms: None,
            left: None,
        };
        match (&ip, busy.contains(d)) {
            (None, _) => phones.push(result("not-registered", None)),
            (Some(_), true) => phones.push(result("busy", Some("on a call".into()))),
            (Some(ip), false) => targets.push((d.clone(), ip.clone())),
        }
    }
    for d in &members.over_cap {
        phones.push(PhoneResult {
            device: d.clone(),
            ip: None,
            outcome: "over-cap".into(),
            reason: Some(format!(
                "the group holds at most {} phones",
                groups::cap(&paging, &group)
            )),
            join_ms: None,
            left: None,
        });
    }
    let joined: Vec<(String, String)> = match &client {
        Ok(client) => {
            let results = push_all(
                client,
                &targets,
                paging.phone_http_port,
                &user,
                &secret,
                &uri,
                join_timeout,
                answered,
            )
            .await;
            let mut ok = Vec::new();
            for ((device, ip), r) in targets.iter().zip(results) {
                let (outcome, reason) = match &r.1 {
                    Ok(()) => {
                        ok.push((device.clone(), ip.clone()));
                        ("joined", None)
                    }
                    Err(e) => ("failed", Some(e.clone())),
                };
                phones.push(PhoneResult {
                    device: device.clone(),
                    ip: Some(ip.clone()),
                    outcome: outcome.into(),
                    reason,
                    join_ms: r.0,
                    left: None,
                });
            }
            ok
        }
        Err(e) => {
            for (device, ip) in &targets {
                phones.push(PhoneResult {
                    device: device.clone(),
                    ip: Some(ip.clone()),
                    outcome: "failed".into(),
                    reason: Some(format!("HTTP client: {e}")),
                    join_ms: None,
                    left: None,
                });
            }
            Vec::new()
        }
    };
    control.store(GO_AHEAD, Ordering::SeqCst);
    report.go_ahead_ms = Some(answered.elapsed().as_millis() as u64);
    tracing::info!(
        call = offer.call,
        group = %group_name,
        joined = joined.len(),
        of = members.devices.len(),
        go_ahead_ms = report.go_ahead_ms,
        multicast = %group_addr,
        "page live"
    );

    // Until the caller hangs up (or the page's time is up, or the node stops).
    let deadline =
        tokio::time::Instant::from_std(answered + Duration::from_secs(paging.max_page_seconds));
    let mut stop = stop;
    let ended_by = loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) if ev.call == offer.call && ev.state == LineState::Idle => break "caller hung up",
                Ok(_) => {}
                // The caller's hang-up may be among the missed events: ask.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "paging: line events lagged; asking call control whether the page's call is up");
                    match cc.call_exists(offer.call).await {
                        Ok(true) => {}
                        Ok(false) => break "caller hung up",
                        Err(_) => break "call control stopped",
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break "call control stopped",
            },
            _ = tokio::time::sleep_until(deadline) => {
                let _ = cc.end_call(offer.call).await;
                break "max page time";
            }
            _ = stop.changed() => {
                let _ = cc.end_call(offer.call).await;
                break "node stopping";
            }
        }
    };
    control.store(STOP, Ordering::SeqCst);
    let media_result = tokio::task::spawn_blocking(move || media.join())
        .await
        .ok()
        .and_then(|r| r.ok());
    if let Some((counts, pacing)) = media_result {
        report.stream = counts;
        report.pacing = pacing;
    }
    // Leave: RTPRx:Stop to every phone that joined.
    if let Ok(client) = &client {
        let results = push_all(
            client,
            &joined,
            paging.phone_http_port,
            &user,
            &secret,
            "RTPRx:Stop",
            STOP_TIMEOUT,
            Instant::now(),
        )
        .await;
        for ((device, _), r) in joined.iter().zip(results) {
            if let Some(p) = phones.iter_mut().find(|p| &p.device == device) {
                p.left = Some(r.1.is_ok());
                if let Err(e) = r.1 {
                    p.reason = Some(format!("RTPRx:Stop: {e}"));
                }
            }
        }
    }
    release();
    phones.sort_by(|a, b| a.device.cmp(&b.device));
    report.joined = phones.iter().filter(|p| p.outcome == "joined").count();
    report.failed = phones.len() - report.joined;
    report.phones = phones;
    report.ended_by = ended_by.to_string();
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
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

/// Pushes an Execute of `uri` to every phone at once (at most [`MAX_PUSHES_IN_FLIGHT`] in
/// flight), each within `timeout`. Per phone: milliseconds since `since` and the outcome.
#[allow(clippy::too_many_arguments)]
async fn push_all(
    client: &reqwest::Client,
    targets: &[(String, String)],
    port: u16,
    user: &str,
    password: &str,
    uri: &str,
    timeout: Duration,
    since: Instant,
) -> Vec<(Option<u64>, Result<(), String>)> {
    use futures_util::StreamExt;
    let xml = CiscoIPPhoneObject::Execute(Execute::single(uri)).to_xml();
    let form = format!("XML={}", crate::wire::codec::percent_encode(&xml));
    let deadline = since + timeout;
    let urls: Vec<String> = targets
        .iter()
        .map(|(_, ip)| match ip.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("http://[{v6}]:{port}/CGI/Execute"),
            _ => format!("http://{ip}:{port}/CGI/Execute"),
        })
        .collect();
    let (user, password): (Arc<str>, Arc<str>) = (user.into(), password.into());
    futures_util::stream::iter(urls.into_iter().map(move |url| {
        let (client, form) = (client.clone(), form.clone());
        let (user, password) = (user.clone(), password.clone());
        async move {
            let left = deadline.saturating_duration_since(Instant::now());
            let req = client
                .post(&url)
                .basic_auth(&*user, Some(&*password))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form)
                .send();
            let r = match tokio::time::timeout(left, async {
                let resp = req.await.map_err(|e| e.without_url().to_string())?;
                let status = resp.status();
                let body = resp.bytes().await.map_err(|e| e.to_string())?;
                Ok::<_, String>((status, body))
            })
            .await
            {
                Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
                Ok(Err(e)) => Err(e),
                Ok(Ok((status, body))) => match crate::wire::xml::parse_execute_reply(&body) {
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
                },
            };
            (Some(since.elapsed().as_millis() as u64), r)
        }
    }))
    .buffered(MAX_PUSHES_IN_FLIGHT)
    .collect()
    .await
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
