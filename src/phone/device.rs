//! One simulated phone: the async shell around the sans-IO [`Ua`], its RTP, its URI streams
//! and its HTTP server (`/CGI/Execute`, `/state`).
//!
//! A phone lives on its own loopback address. One task owns the user agent, the SIP socket
//! and the call media; the HTTP handlers talk to it through a command channel. Pushes are
//! authenticated through the cluster's authentication URL before any item runs.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt;

use super::apps::{self, BuiltIn, CallHistory, HistoryEntry, HistoryList, MidletState};
use super::config::PhoneConfig;
use super::execute::{self, ResponseItem, Uri, UriError};
use super::failover::{FailoverSettings, Move};
use super::http::{self as client, HttpResponse};
use super::media::{
    bind_exclusive_udp, lock, tone_payload, MediaSession, SendParams, StreamKind, Streams,
    UriStream,
};
use super::ua::{MediaPorts, Output, RegState, Ua, UaSettings};
use crate::net::Dscp;
use crate::sip::transaction::Timers;
use crate::wire::codec;
use crate::wire::xml::escape;

/// First RTP port tried on the phone's address.
pub const RTP_PORT_MIN: u16 = 20000;
/// Last RTP port (RTP URIs allow up to 32768).
pub const RTP_PORT_MAX: u16 = 32766;
/// How long an HTTP exchange of the phone (config, auth URL, services) may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Events (keys, plays, inits...) kept for the state view.
pub const MAX_EVENTS: usize = 64;
/// Largest body kept of a fetched page (services menu, pushed URL).
pub const MAX_KEPT_BODY: usize = 16 * 1024;
/// Largest POST body read from `/CGI/Execute` (the form-encoded 40 KB object).
pub const MAX_POST_BODY: usize = 160 * 1024;

/// How to run one phone.
#[derive(Debug, Clone)]
pub struct PhoneOptions {
    /// `SEP<MAC>`.
    pub device: String,
    /// The phone's own address.
    pub ip: Ipv4Addr,
    /// `host:port` of the TFTP-over-HTTP service serving `SEP<MAC>.cnf.xml`.
    pub tftp: String,
    /// The node's SIP address; by default the configuration file's first Unified CM.
    pub sip: Option<String>,
    /// SIP port tried first (5060); any free port if taken.
    pub sip_port: u16,
    /// HTTP port (0: any).
    pub http_port: u16,
    /// When `http_port` cannot be bound (taken, or below 1024 without the privilege), take any
    /// free port instead of failing.
    pub http_port_fallback: bool,
    pub auto_answer: bool,
    pub answer_delay: Duration,
    pub busy: bool,
    /// Send 100 Trying before 180 Ringing (see [`UaSettings::send_trying`]).
    pub send_trying: bool,
    /// `CP-8845` and the like.
    pub model: String,
    pub firmware: String,
    pub register_expires: u32,
    /// Between two keepalive probes of the node the phone is on (and of the higher-priority
    /// members of its Unified CM group while it is elsewhere); see [`super::failover`].
    pub keepalive: Duration,
}

impl PhoneOptions {
    pub fn new(device: &str, ip: Ipv4Addr, tftp: &str) -> PhoneOptions {
        PhoneOptions {
            device: device.to_string(),
            ip,
            tftp: tftp.to_string(),
            sip: None,
            sip_port: 5060,
            http_port: 0,
            http_port_fallback: false,
            auto_answer: false,
            answer_delay: Duration::ZERO,
            busy: false,
            send_trying: true,
            model: "CP-8845".into(),
            firmware: "14.2.1".into(),
            register_expires: 3600,
            keepalive: FailoverSettings::default().interval,
        }
    }

    fn user_agent(&self) -> String {
        format!("Cisco-{}/{}", self.model.replace('-', ""), self.firmware)
    }
}

/// Why a phone could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("{0} is not a phone name (SEP followed by 12 hex digits)")]
    BadName(String),
    #[error("{device}: cannot fetch its configuration file: {reason}")]
    Config { device: String, reason: String },
    #[error("{device}: {reason}")]
    Setup { device: String, reason: String },
    #[error("{device}: registration of line {line} refused: {reason}")]
    Refused {
        device: String,
        line: String,
        reason: String,
    },
    #[error("{device} is registered elsewhere: another phone (or another `ucm phone sim`) runs it, and the node keeps it until that registration expires; stop that one or run a device nothing else runs (the node said: {reason})")]
    RegisteredElsewhere { device: String, reason: String },
    #[error("{device}: lines not registered within {secs} s: {lines}")]
    RegisterTimeout {
        device: String,
        secs: u64,
        lines: String,
    },
}

/// The MAC of a `SEP<MAC>` name, lowercase.
pub fn mac_of(device: &str) -> Option<String> {
    let mac = device.strip_prefix("SEP")?;
    (mac.len() == 12 && mac.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| mac.to_ascii_lowercase())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The object the phone shows on its screen: the last one pushed to `/CGI/Execute` or fetched
/// by an Execute item's URL.
#[derive(Debug, Clone, Serialize)]
pub struct Screen {
    pub at_unix_ms: u64,
    /// `push`, `fetch` or `idle` (URL Idle).
    pub source: &'static str,
    /// The URL fetched (`fetch` only).
    pub url: Option<String>,
    /// The root element, e.g. `CiscoIPPhoneText`.
    pub kind: String,
    pub title: Option<String>,
    pub prompt: Option<String>,
    /// A CiscoIPPhoneText's text.
    pub text: Option<String>,
    pub soft_keys: Vec<String>,
    /// The object as the phone read it (canonical form).
    pub xml: String,
}

impl Screen {
    /// What the phone shows for `object`, or `None` for objects that are not shown
    /// (Execute, Response, Error).
    fn of(
        object: &crate::wire::xml::CiscoIPPhoneObject,
        source: &'static str,
        url: Option<&str>,
    ) -> Option<Screen> {
        use crate::wire::xml::CiscoIPPhoneObject as O;
        if matches!(object, O::Execute(_) | O::Response(_) | O::Error(_)) {
            return None;
        }
        let base = object.displayable();
        Some(Screen {
            at_unix_ms: unix_ms(),
            source,
            url: url.map(str::to_string),
            kind: object.kind().root_name().to_string(),
            title: base.and_then(|b| b.title.clone()),
            prompt: base.and_then(|b| b.prompt.clone()),
            text: match object {
                O::Text(t) => t.text.clone(),
                _ => None,
            },
            soft_keys: base
                .map(|b| b.soft_keys.iter().filter_map(|k| k.name.clone()).collect())
                .unwrap_or_default(),
            xml: object.to_xml_pretty(),
        })
    }
}

/// The result of one pushed object.
#[derive(Debug, Clone, Serialize)]
pub struct PushRecord {
    pub at_unix_ms: u64,
    pub user: Option<String>,
    pub authorized: bool,
    /// `CiscoIPPhoneError` number when the push was refused as a whole.
    pub error: Option<u32>,
    pub xml: Option<String>,
    pub items: Vec<PushedItem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PushedItem {
    pub url: String,
    pub priority: u8,
    pub status: u32,
    pub data: String,
}

/// A page the phone fetched (services menu, pushed URL).
#[derive(Debug, Clone, Serialize)]
pub struct FetchRecord {
    pub at_unix_ms: u64,
    pub url: String,
    pub status: Option<u16>,
    pub content_type: Option<String>,
    pub body: Option<String>,
    pub error: Option<String>,
}

/// What the phone showed when Services was pressed last.
#[derive(Debug, Clone, Serialize)]
pub struct ServicesMenu {
    pub at_unix_ms: u64,
    /// Services Provisioning from the configuration file: 0 Internal, 1 External URL, 2 Both.
    pub provisioning: u8,
    /// Whether the phone asked the services URL (External URL, Both, or a model that always
    /// asks).
    pub asked: bool,
    /// The configuration file's services first (Internal, Both), then the fetched menu's
    /// items not already listed (External URL, Both).
    pub items: Vec<ServicesMenuItem>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServicesMenuItem {
    pub name: String,
    pub url: String,
    /// `config` or `url`: where the item came from.
    pub source: &'static str,
    /// The configuration file's service type (0 services, 1 directories, 2 messages).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub service_type: Option<u8>,
}

/// Models that cannot read the service list from their configuration file and always ask
/// the services URL (seed: the 7960, and its sibling the 7940).
pub fn always_asks_services_url(model: &str) -> bool {
    let m = model.trim().to_ascii_uppercase();
    let m = m.strip_prefix("CP-").unwrap_or(&m);
    m.starts_with("7960") || m.starts_with("7940")
}

/// Something the phone was told to do that has no other trace (keys, plays, inits).
#[derive(Debug, Clone, Serialize)]
pub struct PhoneEvent {
    pub at_unix_ms: u64,
    pub what: String,
}

enum Cmd {
    Dial(String, oneshot::Sender<Result<String, String>>),
    Answer(oneshot::Sender<Result<String, String>>),
    Hangup(oneshot::Sender<Result<String, String>>),
    Decline(oneshot::Sender<Result<String, String>>),
    Hold(oneshot::Sender<Result<String, String>>),
    Snapshot(oneshot::Sender<Snapshot>),
    /// The calls as JSON (only those not ended when true), and whether the phone is idle.
    Calls(bool, oneshot::Sender<(Vec<Value>, bool)>),
    /// A configuration fetched again, and the Unified CM it names (resolved).
    ApplyConfig(Box<PhoneConfig>, Option<SocketAddr>),
    Shutdown(Duration, oneshot::Sender<()>),
}

/// The user agent's part of the state.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The node the lines register with, its place in the Unified CM group, and how many
    /// times the phone moved (failovers and fallbacks).
    pub server: SocketAddr,
    pub member: usize,
    pub moves: u64,
    pub registrations: Vec<super::ua::RegistrationView>,
    pub calls: Vec<Value>,
    pub idle: bool,
    pub malformed_sip: u64,
    pub last_notify: Option<String>,
}

/// What the phone's tasks and HTTP handlers share.
struct Shared {
    opts: PhoneOptions,
    device: String,
    ip: Ipv4Addr,
    http: SocketAddr,
    sip: SocketAddr,
    server: SocketAddr,
    cmd: mpsc::Sender<Cmd>,
    config: Mutex<PhoneConfig>,
    config_version: AtomicU64,
    config_error: Mutex<Option<String>>,
    auth_failures: AtomicU64,
    pushes: AtomicU64,
    last_pushed: Mutex<Option<PushRecord>>,
    screen: Mutex<Option<Screen>>,
    streams: Mutex<Streams>,
    services: Mutex<Option<FetchRecord>>,
    services_menu: Mutex<Option<ServicesMenu>>,
    last_fetch: Mutex<Option<FetchRecord>>,
    events: Mutex<VecDeque<PhoneEvent>>,
    /// Counts what the user agent handled (SIP, commands, timers), so `GET /state/calls`
    /// can wait for the next change instead of being polled.
    changes: watch::Sender<u64>,
    tone: Arc<Vec<u8>>,
    started: Instant,
    /// The last thing the user (or a push) did, or the end of the last call: URL Idle counts
    /// its idle time from here.
    last_activity: Mutex<Instant>,
    /// How often URL Idle was fetched.
    idle_fetches: AtomicU64,
    /// Missed, Received and Placed Calls.
    history: Mutex<CallHistory>,
    /// The Java MIDlets of the configuration file, installed or not.
    midlets: Mutex<Vec<MidletState>>,
    /// One MIDlet synchronisation at a time.
    midlet_sync: tokio::sync::Mutex<()>,
}

impl Shared {
    fn changed(&self) {
        self.changes.send_modify(|v| *v += 1);
    }

    /// The user did something: the idle time starts again.
    fn touch(&self) {
        *lock(&self.last_activity) = Instant::now();
    }

    fn event(&self, what: impl Into<String>) {
        let mut ev = lock(&self.events);
        ev.push_back(PhoneEvent {
            at_unix_ms: unix_ms(),
            what: what.into(),
        });
        while ev.len() > MAX_EVENTS {
            ev.pop_front();
        }
    }

    fn cisco_headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("User-Agent", self.opts.user_agent()),
            ("x-CiscoIPPhoneModelName", self.opts.model.clone()),
            ("x-CiscoIPPhoneDisplay", "800, 480, 24, C".to_string()),
            ("x-CiscoIPPhoneSDKVersion", self.opts.firmware.clone()),
            ("Accept-Language", "en-US".to_string()),
        ]
    }

    async fn fetch(&self, url: &str) -> Result<HttpResponse, client::HttpError> {
        let hs = self.cisco_headers();
        let refs: Vec<(&str, &str)> = hs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        client::get(url, Some(IpAddr::V4(self.ip)), &refs, HTTP_TIMEOUT).await
    }

    async fn fetch_record(&self, url: &str) -> FetchRecord {
        match self.fetch(url).await {
            Ok(r) => FetchRecord {
                at_unix_ms: unix_ms(),
                url: url.to_string(),
                status: Some(r.status),
                content_type: r.header("Content-Type").map(str::to_string),
                body: Some(
                    String::from_utf8_lossy(r.body.get(..MAX_KEPT_BODY).unwrap_or(&r.body))
                        .into_owned(),
                ),
                error: None,
            },
            Err(e) => FetchRecord {
                at_unix_ms: unix_ms(),
                url: url.to_string(),
                status: None,
                content_type: None,
                body: None,
                error: Some(e.to_string()),
            },
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(make(tx)).await.ok()?;
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .ok()?
            .ok()
    }
}

/// Fetches and parses `SEP<MAC>.cnf.xml` from `tftp`, from `local`.
pub async fn fetch_config(
    tftp: &str,
    device: &str,
    local: Option<IpAddr>,
) -> Result<PhoneConfig, String> {
    let cfg = fetch_one(tftp, device, local).await?;
    // EMCC: the visiting cluster's small configuration names the home's TFTP servers; the
    // full configuration comes from the first that answers (default, then backup).
    let Some(emcc) = cfg.emcc.clone() else {
        return Ok(cfg);
    };
    let mut last = format!("the EMCC configuration of {device} names no home TFTP server");
    for t in &emcc.tftp_servers {
        match fetch_one(t, device, local).await {
            Ok(mut full) => {
                full.emcc = Some(super::config::EmccLogin {
                    fetched_from: Some(t.clone()),
                    ..emcc
                });
                return Ok(full);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn fetch_one(tftp: &str, device: &str, local: Option<IpAddr>) -> Result<PhoneConfig, String> {
    let url = format!("http://{tftp}/{device}.cnf.xml");
    let r = client::get(&url, local, &[], HTTP_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("GET {url}: HTTP {}", r.status));
    }
    PhoneConfig::parse(&r.text()).map_err(|e| format!("GET {url}: {e}"))
}

/// What a phone knows before it binds anything: its MAC, its configuration file and the
/// Unified CM it registers with.
pub struct Bootstrap {
    pub mac: String,
    pub config: PhoneConfig,
    pub server: SocketAddr,
    /// The Unified CM group's members in priority order (`server` first); empty when the
    /// SIP server was given by hand.
    pub members: Vec<SocketAddr>,
}

/// A phone's first steps: checks the device name, fetches the configuration file from `tftp`
/// (from the phone's own address `ip`, which the node matches) and resolves the SIP server:
/// `sip` when given, else the file's first Unified CM.
pub async fn bootstrap(
    device: &str,
    tftp: &str,
    ip: IpAddr,
    sip: Option<&str>,
) -> Result<Bootstrap, PhoneError> {
    let setup = |reason: String| PhoneError::Setup {
        device: device.to_string(),
        reason,
    };
    let mac = mac_of(device).ok_or_else(|| PhoneError::BadName(device.to_string()))?;
    let config = fetch_config(tftp, device, Some(ip))
        .await
        .map_err(|reason| PhoneError::Config {
            device: device.to_string(),
            reason,
        })?;
    let server_text = sip
        .map(str::to_string)
        .or_else(|| config.sip_server())
        .ok_or_else(|| setup("the configuration file names no Unified CM".into()))?;
    let server = resolve_v4(&server_text)
        .await
        .ok_or_else(|| setup(format!("cannot resolve the SIP server {server_text:?}")))?;
    let mut members = Vec::new();
    if sip.is_none() {
        for m in config.call_managers.iter().filter_map(|c| c.sip_address()) {
            match resolve_v4(&m).await {
                Some(a) => members.push(a),
                // A member the phone cannot resolve is one it cannot fail over to.
                None => {
                    tracing::warn!(device, member = %m, "cannot resolve a Unified CM of the group")
                }
            }
        }
    }
    Ok(Bootstrap {
        mac,
        config,
        server,
        members,
    })
}

async fn resolve_v4(host_port: &str) -> Option<SocketAddr> {
    tokio::net::lookup_host(host_port)
        .await
        .ok()
        .and_then(|mut a| a.find(|a| a.is_ipv4()))
}

/// RTP ports for the user agent: sockets bound exclusively on the phone's address, kept
/// until their call starts its media.
struct PortPool {
    ip: IpAddr,
    dscp: Dscp,
    next: u16,
    used: HashSet<u16>,
    pending: HashMap<u16, UdpSocket>,
}

impl PortPool {
    fn take(&mut self, port: u16) -> Option<UdpSocket> {
        self.pending.remove(&port)
    }
}

impl MediaPorts for PortPool {
    fn allocate(&mut self) -> Option<u16> {
        let span = usize::from((RTP_PORT_MAX - RTP_PORT_MIN) / 2 + 1);
        for _ in 0..span.min(512) {
            let port = self.next;
            self.next = if self.next >= RTP_PORT_MAX {
                RTP_PORT_MIN
            } else {
                self.next + 2
            };
            if self.used.contains(&port) {
                continue;
            }
            if let Ok(sock) = bind_exclusive_udp(SocketAddr::new(self.ip, port), self.dscp) {
                self.used.insert(port);
                self.pending.insert(port, sock);
                return Some(port);
            }
        }
        None
    }

    fn release(&mut self, port: u16) {
        self.used.remove(&port);
        self.pending.remove(&port);
    }
}

/// A running simulated phone.
pub struct Phone {
    shared: Arc<Shared>,
    http_stop: watch::Sender<bool>,
    ua_task: Option<JoinHandle<()>>,
    http_task: Option<JoinHandle<()>>,
    idle_task: Option<JoinHandle<()>>,
}

impl Phone {
    /// Fetches the configuration, binds the SIP socket, the HTTP server and starts
    /// registering the lines (see [`Phone::wait_registered`]).
    pub async fn start(opts: PhoneOptions) -> Result<Phone, PhoneError> {
        let device = opts.device.clone();
        let setup = |reason: String| PhoneError::Setup {
            device: device.clone(),
            reason,
        };
        let ip = IpAddr::V4(opts.ip);
        let Bootstrap {
            mac,
            config,
            server,
            members,
        } = bootstrap(&opts.device, &opts.tftp, ip, opts.sip.as_deref()).await?;
        let sip_sock =
            match bind_exclusive_udp(SocketAddr::new(ip, opts.sip_port), config.dscp_signalling) {
                Ok(s) => s,
                Err(_) => bind_exclusive_udp(SocketAddr::new(ip, 0), config.dscp_signalling)
                    .map_err(|e| setup(format!("binding SIP on {ip}: {e}")))?,
            };
        let sip = sip_sock
            .local_addr()
            .map_err(|e| setup(format!("SIP socket: {e}")))?;
        let listener = match crate::net::bind_tcp(
            SocketAddr::new(ip, opts.http_port),
            config.dscp_services,
            128,
        ) {
            Ok(l) => l,
            Err(e) if opts.http_port_fallback && opts.http_port != 0 => {
                tracing::warn!(
                    device = %opts.device,
                    "cannot listen for HTTP on {ip}:{} ({e}); using any free port: pushes \
                     must name it (ucm services push --phone-port)",
                    opts.http_port
                );
                crate::net::bind_tcp(SocketAddr::new(ip, 0), config.dscp_services, 128)
                    .map_err(|e| setup(format!("binding HTTP on {ip}: {e}")))?
            }
            Err(e) => {
                let hint = if opts.http_port < 1024 {
                    " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                } else {
                    ""
                };
                return Err(setup(format!(
                    "binding HTTP on {ip}:{}: {e}{hint}",
                    opts.http_port
                )));
            }
        };
        let http = listener
            .local_addr()
            .map_err(|e| setup(format!("HTTP listener: {e}")))?;
        let (cmd_tx, cmd_rx) = mpsc::channel(256);
        let settings = UaSettings {
            device: opts.device.clone(),
            mac,
            local: sip,
            server,
            user_agent: opts.user_agent(),
            media_ip: ip,
            register_expires: opts.register_expires,
            auto_answer: opts.auto_answer,
            answer_delay: opts.answer_delay,
            busy: opts.busy,
            send_trying: opts.send_trying,
            seed: rand::random(),
            timers: Timers::default(),
        };
        let mut ua = Ua::new(settings, &config.lines);
        ua.set_failover(
            members,
            FailoverSettings::every(opts.keepalive),
            Instant::now(),
        );
        let pool = PortPool {
            ip,
            dscp: config.dscp_audio,
            next: RTP_PORT_MIN,
            used: HashSet::new(),
            pending: HashMap::new(),
        };
        let shared = Arc::new(Shared {
            device: opts.device.clone(),
            ip: opts.ip,
            http,
            sip,
            server,
            cmd: cmd_tx,
            config: Mutex::new(config),
            config_version: AtomicU64::new(1),
            config_error: Mutex::new(None),
            auth_failures: AtomicU64::new(0),
            pushes: AtomicU64::new(0),
            last_pushed: Mutex::new(None),
            screen: Mutex::new(None),
            streams: Mutex::new(Streams::default()),
            services: Mutex::new(None),
            services_menu: Mutex::new(None),
            last_fetch: Mutex::new(None),
            events: Mutex::new(VecDeque::new()),
            changes: watch::channel(0).0,
            tone: tone_payload(),
            started: Instant::now(),
            last_activity: Mutex::new(Instant::now()),
            idle_fetches: AtomicU64::new(0),
            history: Mutex::new(CallHistory::default()),
            midlets: Mutex::new(Vec::new()),
            midlet_sync: tokio::sync::Mutex::new(()),
            opts,
        });
        tokio::spawn(sync_midlets(shared.clone()));
        let (http_stop, http_stop_rx) = watch::channel(false);
        let idle_task = tokio::spawn(url_idle(shared.clone(), http_stop.subscribe()));
        let ua_task = tokio::spawn(run_ua(shared.clone(), ua, pool, Arc::new(sip_sock), cmd_rx));
        let http_task = tokio::spawn(serve_http(listener, router(shared.clone()), http_stop_rx));
        Ok(Phone {
            shared,
            http_stop,
            ua_task: Some(ua_task),
            http_task: Some(http_task),
            idle_task: Some(idle_task),
        })
    }

    pub fn device(&self) -> &str {
        &self.shared.device
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.shared.ip
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.shared.http
    }

    pub fn sip_addr(&self) -> SocketAddr {
        self.shared.sip
    }

    /// The directory numbers of the phone's lines.
    pub fn lines(&self) -> Vec<String> {
        lock(&self.shared.config)
            .lines
            .iter()
            .map(|l| l.dn.clone())
            .collect()
    }

    /// The phone's state as `GET /state` returns it.
    pub async fn state(&self) -> Value {
        state_json(&self.shared).await
    }

    /// Waits until every line is registered; fails as soon as the registrar refuses one.
    pub async fn wait_registered(&self, timeout: Duration) -> Result<(), PhoneError> {
        let deadline = Instant::now() + timeout;
        let mut pending = String::new();
        while Instant::now() < deadline {
            if let Some(snap) = self.shared.ask(Cmd::Snapshot).await {
                if let Some(r) = snap
                    .registrations
                    .iter()
                    .find(|r| r.state == RegState::Failed && r.last_status != Some(408))
                {
                    let status = r.last_status.unwrap_or(0);
                    let reason = format!("{status} {}", r.last_reason.clone().unwrap_or_default());
                    let device = self.shared.device.clone();
                    if super::ua::registered_elsewhere(
                        status,
                        r.last_reason.as_deref().unwrap_or_default(),
                    ) {
                        return Err(PhoneError::RegisteredElsewhere { device, reason });
                    }
                    return Err(PhoneError::Refused {
                        device,
                        line: r.line.clone(),
                        reason,
                    });
                }
                if snap.registrations.iter().all(|r| r.registered) {
                    return Ok(());
                }
                pending = snap
                    .registrations
                    .iter()
                    .filter(|r| !r.registered)
                    .map(|r| r.line.clone())
                    .collect::<Vec<_>>()
                    .join(", ");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(PhoneError::RegisterTimeout {
            device: self.shared.device.clone(),
            secs: timeout.as_secs(),
            lines: pending,
        })
    }

    /// Unregisters every line (waiting up to `grace` for the answers), stops media and the
    /// HTTP server.
    pub async fn shutdown(mut self, grace: Duration) {
        let (tx, rx) = oneshot::channel();
        if self.shared.cmd.send(Cmd::Shutdown(grace, tx)).await.is_ok() {
            let _ = tokio::time::timeout(grace + Duration::from_secs(1), rx).await;
        }
        lock(&self.shared.streams).stop_all("shutdown", Instant::now());
        let _ = self.http_stop.send(true);
        if let Some(t) = self.http_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        if let Some(t) = self.ua_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
        }
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = self.http_stop.send(true);
        if let Some(t) = self.idle_task.take() {
            t.abort();
        }
        if let Some(t) = self.ua_task.take() {
            t.abort();
        }
        if let Some(t) = self.http_task.take() {
            t.abort();
        }
    }
}

// -------------------------------------------------------------------------------------------
// The user agent task
// -------------------------------------------------------------------------------------------

struct UaShell {
    shared: Arc<Shared>,
    ua: Ua,
    pool: PortPool,
    sock: Arc<UdpSocket>,
    media: HashMap<String, MediaSession>,
    /// Calls already in the call history.
    logged: HashSet<String>,
}

impl UaShell {
    /// Keeps the call history as a phone does: a call placed goes to Placed Calls when
    /// dialled; an incoming call goes to Received Calls when it ends answered, to Missed
    /// Calls when it ends unanswered (declined included: UNCONFIRMED, models differ).
    fn log_calls(&mut self) {
        let calls = self.ua.calls(Instant::now());
        let now_ms = unix_ms();
        for c in &calls {
            if self.logged.contains(&c.call_id) {
                continue;
            }
            let list = match (c.direction, c.state) {
                (super::ua::CallDirection::Outbound, _) => HistoryList::Placed,
                (super::ua::CallDirection::Inbound, super::ua::CallState::Ended) => {
                    if c.connected_ms.is_some() {
                        HistoryList::Received
                    } else {
                        HistoryList::Missed
                    }
                }
                _ => continue,
            };
            self.logged.insert(c.call_id.clone());
            lock(&self.shared.history).add(
                list,
                HistoryEntry {
                    number: c.remote_number.clone(),
                    name: c.remote_display.clone(),
                    line: c.line.clone(),
                    at_unix_ms: now_ms,
                },
            );
        }
        self.logged
            .retain(|id| calls.iter().any(|c| &c.call_id == id));
    }

    async fn apply(&mut self, outs: Vec<Output>) {
        for o in outs {
            match o {
                Output::Send { to, msg } => {
                    let bytes = msg.to_bytes();
                    if let Err(e) = self.sock.send_to(&bytes, to).await {
                        tracing::debug!(device = %self.shared.device, %to, error = %e, "SIP send failed");
                    }
                }
                Output::MediaStart {
                    call_id,
                    local_port,
                    remote,
                    payload_type,
                    send,
                } => {
                    // A new call ends the URI streams (spec 2.3).
                    lock(&self.shared.streams).stop_all("call", Instant::now());
                    let sock = match self.pool.take(local_port) {
                        Some(s) => s,
                        None => match bind_exclusive_udp(
                            SocketAddr::new(IpAddr::V4(self.shared.ip), local_port),
                            self.pool.dscp,
                        ) {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::warn!(device = %self.shared.device, port = local_port, error = %e, "cannot open the call's RTP socket");
                                continue;
                            }
                        },
                    };
                    let session = MediaSession::start(
                        sock,
                        SendParams { remote, send },
                        payload_type,
                        self.shared.tone.clone(),
                        None,
                    );
                    self.media.insert(call_id, session);
                }
                Output::MediaUpdate {
                    call_id,
                    remote,
                    send,
                } => {
                    if let Some(m) = self.media.get(&call_id) {
                        m.update(SendParams { remote, send });
                    }
                }
                Output::MediaStop { call_id } => {
                    if let Some(m) = self.media.get(&call_id) {
                        m.stop();
                    }
                }
                Output::Moved { node, server, why } => {
                    let name = lock(&self.shared.config)
                        .call_managers
                        .get(node)
                        .map(|c| c.name.clone())
                        .unwrap_or_default();
                    let why = match why {
                        Move::Failover => "failover",
                        Move::Fallback => "fallback",
                    };
                    self.shared
                        .event(format!("{why}: registering with {name} ({server})"));
                }
                Output::Resync { event } => {
                    self.shared.event(format!("NOTIFY {event}"));
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        let local = Some(IpAddr::V4(shared.ip));
                        match fetch_config(&shared.opts.tftp, &shared.device, local).await {
                            Ok(cfg) => {
                                // The Unified CM the new configuration names (another
                                // cluster's after an EMCC login or logout); a SIP server
                                // given by hand stays.
                                let server = match (&shared.opts.sip, cfg.sip_server()) {
                                    (None, Some(s)) => resolve_v4(&s).await,
                                    _ => None,
                                };
                                let _ = shared
                                    .cmd
                                    .send(Cmd::ApplyConfig(Box::new(cfg), server))
                                    .await;
                            }
                            Err(e) => {
                                tracing::warn!(device = %shared.device, error = %e, "resync: cannot fetch the configuration");
                                *lock(&shared.config_error) = Some(e);
                            }
                        }
                    });
                }
            }
        }
    }

    fn snapshot(&mut self) -> Snapshot {
        let now = Instant::now();
        let (member, moves) = self.ua.member();
        Snapshot {
            server: self.ua.server(),
            member,
            moves,
            registrations: self.ua.registrations(now),
            calls: self.calls_json(now, false),
            idle: self.ua.is_idle(),
            malformed_sip: self.ua.malformed,
            last_notify: self.ua.last_notify.clone(),
        }
    }

    /// The calls with their media counters; `live`: leave out the ended ones.
    fn calls_json(&mut self, now: Instant, live: bool) -> Vec<Value> {
        let calls = self.ua.calls(now);
        self.media
            .retain(|id, _| calls.iter().any(|c| c.call_id == *id));
        calls
            .into_iter()
            .filter(|c| !live || c.state != super::ua::CallState::Ended)
            .map(|c| {
                let media = self.media.get(&c.call_id).map(|m| m.view());
                let mut v = serde_json::to_value(&c).unwrap_or(Value::Null);
                if let Value::Object(o) = &mut v {
                    o.insert(
                        "rtp_tx_packets".into(),
                        json!(media.as_ref().map_or(0, |m| m.tx_packets)),
                    );
                    o.insert(
                        "rtp_rx_packets".into(),
                        json!(media.as_ref().map_or(0, |m| m.rx.packets)),
                    );
                    o.insert(
                        "rtp".into(),
                        serde_json::to_value(&media).unwrap_or(Value::Null),
                    );
                }
                v
            })
            .collect()
    }
}

async fn run_ua(
    shared: Arc<Shared>,
    ua: Ua,
    pool: PortPool,
    sock: Arc<UdpSocket>,
    mut cmd_rx: mpsc::Receiver<Cmd>,
) {
    let mut sh = UaShell {
        shared,
        ua,
        pool,
        sock,
        media: HashMap::new(),
        logged: HashSet::new(),
    };
    let outs = sh.ua.register_all(Instant::now(), &mut sh.pool);
    sh.apply(outs).await;
    let mut buf = vec![0u8; 65_536];
    let mut stopping: Option<(Instant, oneshot::Sender<()>)> = None;
    // Ends on Shutdown (bounded by its grace time) or when every sender is gone.
    loop {
        if let Some((until, _)) = &stopping {
            if sh.ua.all_unregistered() || Instant::now() >= *until {
                break;
            }
        }
        let deadline = sh.ua.next_deadline();
        let stop_at = stopping.as_ref().map(|(t, _)| *t);
        let wake = match (deadline, stop_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let sleep = async {
            match wake {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        let sock = sh.sock.clone();
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let data = buf.get(..n).unwrap_or(&[]);
                let outs = sh.ua.on_datagram(data, from, Instant::now(), &mut sh.pool);
                sh.apply(outs).await;
                sh.log_calls();
                sh.shared.changed();
            }
            cmd = cmd_rx.recv() => {
                let Some(cmd) = cmd else { break };
                let now = Instant::now();
                let observed = matches!(cmd, Cmd::Snapshot(_) | Cmd::Calls(..));
                match cmd {
                    Cmd::Dial(number, reply) => {
                        let r = sh.ua.dial(&number, now, &mut sh.pool);
                        let r = match r {
                            Ok((id, outs)) => { sh.apply(outs).await; Ok(id) }
                            Err(e) => Err(e),
                        };
                        let _ = reply.send(r);
                    }
                    Cmd::Answer(reply) => {
                        let r = match sh.ua.answer(now, &mut sh.pool) {
                            Ok((id, outs)) => { sh.apply(outs).await; Ok(id) }
                            Err(e) => Err(e),
                        };
                        let _ = reply.send(r);
                    }
                    Cmd::Hangup(reply) => {
                        let r = match sh.ua.hangup(now, &mut sh.pool) {
                            Ok((id, outs)) => { sh.apply(outs).await; Ok(id) }
                            Err(e) => Err(e),
                        };
                        let _ = reply.send(r);
                    }
                    Cmd::Decline(reply) => {
                        let r = match sh.ua.decline(now, &mut sh.pool) {
                            Ok((id, outs)) => { sh.apply(outs).await; Ok(id) }
                            Err(e) => Err(e),
                        };
                        let _ = reply.send(r);
                    }
                    Cmd::Hold(reply) => {
                        let r = match sh.ua.toggle_hold(now, &mut sh.pool) {
                            Ok((id, outs)) => { sh.apply(outs).await; Ok(id) }
                            Err(e) => Err(e),
                        };
                        let _ = reply.send(r);
                    }
                    Cmd::Snapshot(reply) => {
                        let _ = reply.send(sh.snapshot());
                    }
                    Cmd::Calls(live, reply) => {
                        let calls = sh.calls_json(now, live);
                        let _ = reply.send((calls, sh.ua.is_idle()));
                    }
                    Cmd::ApplyConfig(cfg, server) => {
                        let outs = match server.filter(|s| *s != sh.ua.server()) {
                            // Cross-registration (EMCC): the lines leave the node they are on
                            // and register with the one the configuration names.
                            Some(to) => {
                                let from = sh.ua.server();
                                sh.shared.event(format!("registering with {to} (was {from}): the configuration names another Unified CM"));
                                sh.ua.rehome(&cfg.lines, to, now, &mut sh.pool)
                            }
                            None => sh.ua.set_lines(&cfg.lines, now, &mut sh.pool),
                        };
                        *lock(&sh.shared.config) = *cfg;
                        *lock(&sh.shared.config_error) = None;
                        sh.shared.config_version.fetch_add(1, Ordering::Relaxed);
                        sh.apply(outs).await;
                        // The seed: after a configuration download the phone installs,
                        // upgrades, downgrades and uninstalls MIDlets as the file says.
                        tokio::spawn(sync_midlets(sh.shared.clone()));
                    }
                    Cmd::Shutdown(grace, reply) => {
                        let ids: Vec<String> = sh.ua.calls(now).into_iter().map(|c| c.call_id).collect();
                        let mut outs = Vec::new();
                        for id in ids {
                            sh.ua.hangup_call(&id, now, &mut sh.pool, &mut outs);
                        }
                        outs.extend(sh.ua.unregister_all(now, &mut sh.pool));
                        sh.apply(outs).await;
                        stopping = Some((now + grace, reply));
                    }
                }
                if !observed {
                    sh.log_calls();
                    sh.shared.changed();
                }
            }
            _ = sleep => {
                let outs = sh.ua.on_timers(Instant::now(), &mut sh.pool);
                sh.apply(outs).await;
                sh.log_calls();
                sh.shared.changed();
            }
        }
    }
    for m in sh.media.values() {
        m.stop();
    }
    if let Some((_, reply)) = stopping {
        let _ = reply.send(());
    }
}

// -------------------------------------------------------------------------------------------
// HTTP
// -------------------------------------------------------------------------------------------

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/state", get(state_handler))
        .route("/state/calls", get(calls_handler))
        .route("/CGI/Execute", get(execute_get).post(execute_post))
        .route("/DeviceInformationX", get(device_information))
        .with_state(shared)
}

async fn serve_http(listener: TcpListener, app: Router, mut stop: watch::Receiver<bool>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(256));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => break,
        };
        let Ok((stream, _peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    async move { Ok::<_, Infallible>(app.oneshot(req).await.into_response()) }
                });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            let _ = watcher.watch(conn).await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
}

async fn state_json(sh: &Arc<Shared>) -> Value {
    let snap = sh.ask(Cmd::Snapshot).await;
    let now = Instant::now();
    let cfg = lock(&sh.config).clone();
    let streams = lock(&sh.streams).views(now);
    json!({
        "device": sh.device,
        "ip": sh.ip.to_string(),
        "http": sh.http.to_string(),
        "sip": sh.sip.to_string(),
        "server": snap.as_ref().map_or(sh.server, |s| s.server).to_string(),
        // The member of the Unified CM group the lines are on (by its configuration name).
        "node": snap.as_ref().and_then(|s| cfg.call_managers.get(s.member).filter(|_| sh.opts.sip.is_none()).map(|c| c.name.clone())),
        "node_priority": snap.as_ref().map(|s| s.member),
        "failovers": snap.as_ref().map(|s| s.moves),
        "model": sh.opts.model,
        "user_agent": sh.opts.user_agent(),
        "uptime_ms": sh.started.elapsed().as_millis() as u64,
        "version": *sh.changes.borrow(),
        "settings": {
            "auto_answer": sh.opts.auto_answer,
            "answer_delay_ms": sh.opts.answer_delay.as_millis() as u64,
            "busy": sh.opts.busy,
        },
        "config_version": sh.config_version.load(Ordering::Relaxed),
        "config_error": lock(&sh.config_error).clone(),
        "config": cfg,
        "registrations": snap.as_ref().map(|s| json!(s.registrations)).unwrap_or(Value::Null),
        "registered": snap.as_ref().is_some_and(|s| s.registrations.iter().all(|r| r.registered)),
        "calls": snap.as_ref().map(|s| json!(s.calls)).unwrap_or(Value::Null),
        "idle": snap.as_ref().map(|s| s.idle),
        "malformed_sip": snap.as_ref().map(|s| s.malformed_sip),
        "last_notify": snap.as_ref().and_then(|s| s.last_notify.clone()),
        "streams": streams,
        "last_pushed": lock(&sh.last_pushed).clone(),
        "screen": lock(&sh.screen).clone(),
        "idle_fetches": sh.idle_fetches.load(Ordering::Relaxed),
        "call_history": lock(&sh.history).clone(),
        "midlets": lock(&sh.midlets).clone(),
        "pushes": sh.pushes.load(Ordering::Relaxed),
        "auth_failures": sh.auth_failures.load(Ordering::Relaxed),
        "services": lock(&sh.services).clone(),
        "services_menu": lock(&sh.services_menu).clone(),
        "last_fetch": lock(&sh.last_fetch).clone(),
        "events": lock(&sh.events).iter().cloned().collect::<Vec<_>>(),
    })
}

async fn state_handler(State(sh): State<Arc<Shared>>) -> Json<Value> {
    Json(state_json(&sh).await)
}

/// The longest `GET /state/calls` waits for a change.
const MAX_CALLS_WAIT: Duration = Duration::from_secs(30);

#[derive(serde::Deserialize)]
struct CallsQuery {
    /// Answer once the version passes this one (or at `timeout_ms`).
    after: Option<u64>,
    timeout_ms: Option<u64>,
    /// Only the calls that have not ended.
    #[serde(default)]
    live: bool,
}

/// `GET /state/calls[?after=V[&timeout_ms=T]][&live=true]`: the calls alone (`live`: those not
/// ended), with a version. With `after`, it waits (at most `timeout_ms`, default and cap 30 s)
/// until the phone has handled something since version V, so a script sees a call connect or
/// end without polling.
async fn calls_handler(
    State(sh): State<Arc<Shared>>,
    axum::extract::Query(q): axum::extract::Query<CallsQuery>,
) -> Json<Value> {
    // Subscribe before reading the version, so a change in between is not missed.
    let mut rx = sh.changes.subscribe();
    if let Some(after) = q.after {
        let wait = q
            .timeout_ms
            .map_or(MAX_CALLS_WAIT, Duration::from_millis)
            .min(MAX_CALLS_WAIT);
        let _ = tokio::time::timeout(wait, rx.wait_for(|v| *v > after)).await;
    }
    let version = *rx.borrow();
    let calls = sh.ask(|tx| Cmd::Calls(q.live, tx)).await;
    Json(json!({
        "device": sh.device,
        "version": version,
        "calls": calls.as_ref().map(|c| json!(c.0)).unwrap_or(Value::Null),
        "idle": calls.as_ref().map(|c| c.1),
    }))
}

async fn device_information(State(sh): State<Arc<Shared>>) -> Response {
    let cfg = lock(&sh.config).clone();
    let mac = mac_of(&sh.device).unwrap_or_default().to_ascii_uppercase();
    let dn = cfg.lines.first().map(|l| l.dn.clone()).unwrap_or_default();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<DeviceInformation><MACAddress>{mac}</MACAddress><HostName>{}</HostName><phoneDN>{}</phoneDN><versionID>{}</versionID><modelNumber>{}</modelNumber></DeviceInformation>\n",
        escape(&sh.device),
        escape(&dn),
        escape(&sh.opts.firmware),
        escape(&sh.opts.model),
    );
    xml_response(StatusCode::OK, body)
}

fn xml_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

async fn execute_get() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST")],
        "POST a form with the XML field\n",
    )
        .into_response()
}

/// Asks the cluster's authentication URL whether `user`/`password` may push to this phone.
async fn authorized(sh: &Shared, user: &str, password: &str) -> Result<(), String> {
    let Some(url) = lock(&sh.config).authentication_url.clone() else {
        return Err("no authentication URL configured".into());
    };
    let url = codec::with_query(
        &url,
        &[
            ("UserID", user),
            ("Password", password),
            ("devicename", &sh.device),
        ],
    );
    match sh.fetch(&url).await {
        Ok(r) if r.status == 200 && r.body == b"AUTHORIZED" => Ok(()),
        Ok(r) => Err(format!(
            "authentication URL answered {} {:?}",
            r.status,
            r.text()
        )),
        Err(e) => Err(e.to_string()),
    }
}

async fn execute_post(State(sh): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    sh.pushes.fetch_add(1, Ordering::Relaxed);
    sh.touch();
    let creds = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(codec::parse_basic_auth);
    let xml_text = if body.len() <= MAX_POST_BODY {
        codec::form_field(&body, "XML")
    } else {
        None
    };
    let mut record = PushRecord {
        at_unix_ms: unix_ms(),
        user: creds.as_ref().map(|(u, _)| u.clone()),
        authorized: false,
        error: None,
        xml: xml_text.clone(),
        items: Vec::new(),
    };
    let auth = match &creds {
        Some((user, pass)) => authorized(&sh, user, pass).await,
        None => Err("no HTTP Basic credentials".into()),
    };
    if let Err(why) = auth {
        sh.auth_failures.fetch_add(1, Ordering::Relaxed);
        tracing::info!(device = %sh.device, user = ?record.user, reason = %why, "push refused");
        record.error = Some(execute::ERROR_AUTH);
        *lock(&sh.last_pushed) = Some(record);
        return xml_response(
            StatusCode::OK,
            execute::error_xml(execute::ERROR_AUTH, None),
        );
    }
    record.authorized = true;
    // A phone shows any displayable object pushed to it; only an Execute runs items.
    if let Some(text) = xml_text.as_deref().filter(|t| !is_execute(t)) {
        return match crate::wire::xml::parse(text) {
            Ok(parsed) => match Screen::of(&parsed.object, "push", None) {
                Some(screen) => {
                    sh.event(format!("shown: {}", screen.kind));
                    *lock(&sh.screen) = Some(screen);
                    *lock(&sh.last_pushed) = Some(record);
                    // UNCONFIRMED what a phone answers to a displayed object; one successful
                    // item with an empty URL, as for an Execute that ran.
                    xml_response(
                        StatusCode::OK,
                        execute::response_xml(&[ResponseItem::success("")]),
                    )
                }
                None => {
                    tracing::info!(device = %sh.device, "push of an object a phone does not show");
                    record.error = Some(execute::ERROR_PARSE);
                    *lock(&sh.last_pushed) = Some(record);
                    xml_response(
                        StatusCode::OK,
                        execute::error_xml(execute::ERROR_PARSE, None),
                    )
                }
            },
            Err(why) => {
                tracing::info!(device = %sh.device, reason = %why, "push not understood");
                record.error = Some(execute::ERROR_PARSE);
                *lock(&sh.last_pushed) = Some(record);
                xml_response(
                    StatusCode::OK,
                    execute::error_xml(execute::ERROR_PARSE, None),
                )
            }
        };
    }
    let items = match xml_text.as_deref().map(execute::parse_execute) {
        Some(Ok(items)) => items,
        Some(Err(why)) => {
            tracing::info!(device = %sh.device, reason = %why, "push not understood");
            record.error = Some(execute::ERROR_PARSE);
            *lock(&sh.last_pushed) = Some(record);
            return xml_response(
                StatusCode::OK,
                execute::error_xml(execute::ERROR_PARSE, None),
            );
        }
        None => {
            record.error = Some(execute::ERROR_PARSE);
            *lock(&sh.last_pushed) = Some(record);
            return xml_response(
                StatusCode::OK,
                execute::error_xml(execute::ERROR_PARSE, None),
            );
        }
    };
    let mut results = Vec::with_capacity(items.len());
    for item in &items {
        let r = run_item(&sh, &item.url, item.priority).await;
        record.items.push(PushedItem {
            url: item.url.clone(),
            priority: item.priority,
            status: r.status,
            data: r.data.clone(),
        });
        results.push(r);
    }
    *lock(&sh.last_pushed) = Some(record);
    xml_response(StatusCode::OK, execute::response_xml(&results))
}

/// Whether a pushed document's root element is `CiscoIPPhoneExecute` (after any declaration,
/// comments and whitespace).
fn is_execute(text: &str) -> bool {
    let mut rest = text.trim_start_matches('\u{feff}').trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("<?") {
            rest = r.split_once("?>").map_or("", |(_, r)| r).trim_start();
        } else if let Some(r) = rest.strip_prefix("<!--") {
            rest = r.split_once("-->").map_or("", |(_, r)| r).trim_start();
        } else {
            break;
        }
    }
    rest.strip_prefix("<CiscoIPPhoneExecute")
        .is_some_and(|r| r.starts_with(|c: char| c == '>' || c == '/' || c.is_whitespace()))
}

async fn call_cmd(
    sh: &Shared,
    make: impl FnOnce(oneshot::Sender<Result<String, String>>) -> Cmd,
) -> Result<String, String> {
    sh.ask(make)
        .await
        .unwrap_or_else(|| Err("the phone is not responding".into()))
}

async fn is_idle(sh: &Shared) -> bool {
    sh.ask(Cmd::Snapshot).await.is_none_or(|s| s.idle)
}

/// The Services button: with Services Provisioning Internal the list comes from the
/// configuration file and nothing is asked; External URL asks the services URL (with
/// `name=<device>`); Both shows the file's list and asks. Models that cannot read the list
/// from the file always ask. The fetch is kept in `services`, what the phone shows in
/// `services_menu`.
async fn fetch_services(sh: &Shared) {
    sh.touch();
    let cfg = lock(&sh.config).clone();
    let provisioning = cfg.services_provisioning;
    let ask = provisioning != 0 || always_asks_services_url(&sh.opts.model);
    let mut items: Vec<ServicesMenuItem> = Vec::new();
    if provisioning != 1 {
        for s in &cfg.phone_services {
            items.push(ServicesMenuItem {
                name: s.name.clone(),
                url: s.url.replace("#DEVICENAME#", &sh.device),
                source: "config",
                service_type: Some(s.service_type),
            });
        }
    }
    let mut error = None;
    if ask {
        let url = cfg.services_url.clone();
        let rec = match url {
            Some(u) => {
                let full = codec::with_query(&u, &[("name", &sh.device)]);
                sh.fetch_record(&full).await
            }
            None => FetchRecord {
                at_unix_ms: unix_ms(),
                url: String::new(),
                status: None,
                content_type: None,
                body: None,
                error: Some("no services URL configured".into()),
            },
        };
        match (&rec.error, &rec.body) {
            (Some(e), _) => error = Some(e.clone()),
            (None, Some(body)) => match crate::wire::xml::parse(body) {
                Ok(p) => match p.object {
                    crate::wire::xml::CiscoIPPhoneObject::Menu(m) => {
                        for i in m.items {
                            let url = i.url.unwrap_or_default();
                            if items.iter().any(|x| x.url == url) {
                                continue;
                            }
                            items.push(ServicesMenuItem {
                                name: i.name.unwrap_or_default(),
                                url,
                                source: "url",
                                service_type: None,
                            });
                        }
                    }
                    other => {
                        error = Some(format!(
                            "services URL answered {}",
                            other.kind().root_name()
                        ))
                    }
                },
                Err(e) => error = Some(format!("XML Error: {e}")),
            },
            (None, None) => error = Some("empty answer".into()),
        }
        *lock(&sh.services) = Some(rec);
    }
    *lock(&sh.services_menu) = Some(ServicesMenu {
        at_unix_ms: unix_ms(),
        provisioning,
        asked: ask,
        items,
        error,
    });
}

/// URL Idle: once the phone has been idle (no call, nothing pressed or pushed) for URL Idle
/// Time, it fetches URL Idle and shows what comes back, once per idle spell (the next spell
/// starts with the next activity). Ends when the phone stops.
async fn url_idle(sh: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The activity whose idle spell already got its fetch.
    let mut shown_for: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        let (url, secs) = {
            let c = lock(&sh.config);
            (c.idle_url.clone(), c.idle_timeout)
        };
        let Some(url) = url.filter(|_| secs > 0) else {
            continue;
        };
        if !is_idle(&sh).await {
            sh.touch();
            continue;
        }
        let since = *lock(&sh.last_activity);
        if since.elapsed() < Duration::from_secs(u64::from(secs)) || shown_for == Some(since) {
            continue;
        }
        shown_for = Some(since);
        let url = url.replace("#DEVICENAME#", &sh.device);
        sh.event(format!("URL Idle: {url}"));
        let rec = sh.fetch_record(&url).await;
        sh.idle_fetches.fetch_add(1, Ordering::Relaxed);
        if let Some(body) = rec.body.as_deref().filter(|_| rec.status == Some(200)) {
            match crate::wire::xml::parse(body) {
                Ok(parsed) => {
                    if let Some(screen) = Screen::of(&parsed.object, "idle", Some(&url)) {
                        *lock(&sh.screen) = Some(screen);
                    }
                }
                Err(e) => sh.event(format!("URL Idle: XML Error: {e}")),
            }
        }
        *lock(&sh.last_fetch) = Some(rec);
        sh.changed();
    }
}

/// Runs one item; the ResponseItem says how it went.
async fn run_item(sh: &Arc<Shared>, url: &str, priority: u8) -> ResponseItem {
    sh.touch();
    let uri = match execute::parse_uri(url) {
        Ok(u) => u,
        Err(e) => return ResponseItem::error(url, e),
    };
    let ok = || ResponseItem::success(url);
    let fail = |e: String| ResponseItem::error(url, UriError::internal(&e));
    match uri {
        Uri::Dial(number) => {
            sh.event(format!("Dial:{number}"));
            match call_cmd(sh, |tx| Cmd::Dial(number, tx)).await {
                Ok(_) => ok(),
                Err(e) => fail(e),
            }
        }
        Uri::Key(key) => {
            sh.event(format!("Key:{key}"));
            let r = match key.as_str() {
                "Offhook" | "Speaker" | "Headset" | "Soft1" => {
                    call_cmd(sh, Cmd::Answer).await.map(|_| ())
                }
                "Onhook" | "EndCall" | "Soft2" | "Release" => {
                    call_cmd(sh, Cmd::Hangup).await.map(|_| ())
                }
                "Hold" => call_cmd(sh, Cmd::Hold).await.map(|_| ()),
                // The ringing call's Decline softkey (a key name of this simulator's: Cisco's
                // URIs reach softkeys only by position).
                "Decline" => call_cmd(sh, Cmd::Decline).await.map(|_| ()),
                "Services" => {
                    fetch_services(sh).await;
                    Ok(())
                }
                "Directories" => show_directories(sh).await,
                k if k.starts_with("KeyPad") && k[6..].parse::<usize>().is_ok() => {
                    select_item(sh, k[6..].parse().unwrap_or(0)).await
                }
                k if k.starts_with("Line") => press_line(sh, k[4..].parse().unwrap_or(0)).await,
                _ => Ok(()),
            };
            // A key press succeeds even when it has nothing to act on, as on a real phone.
            if let Err(e) = r {
                tracing::debug!(device = %sh.device, key, result = %e, "key had no effect");
                sh.event(format!("Key:{key}: {e}"));
            }
            ok()
        }
        Uri::Init(what) => {
            sh.event(format!("Init:{what}"));
            if what == "Services" {
                fetch_services(sh).await;
            }
            if what == "CallHistory" {
                // Init:CallHistory clears the call history (derived spec).
                *lock(&sh.history) = CallHistory::default();
            }
            ok()
        }
        Uri::Play(file) => {
            sh.event(format!("Play:{file}"));
            ok()
        }
        Uri::SendDigits(d) => {
            if is_idle(sh).await {
                return ResponseItem::error(url, UriError::internal("No Active Call"));
            }
            sh.event(format!("SendDigits:{d}"));
            ok()
        }
        Uri::EditDial(x) => {
            sh.event(format!("EditDial:{x}"));
            ok()
        }
        Uri::Display(x) => {
            sh.event(format!("Display:{x}"));
            ok()
        }
        Uri::Device(x) => {
            sh.event(format!("Device:{x}"));
            ok()
        }
        Uri::App(x) => {
            sh.event(format!("App:{x}"));
            ok()
        }
        Uri::RtpRx { port, volume, .. } => start_rx(sh, url, None, port, volume),
        Uri::RtpMRx {
            group,
            port,
            volume,
        } => start_rx(sh, url, Some(group), Some(port), volume),
        Uri::RtpRxStop => {
            lock(&sh.streams).stop(true, "RTPRx:Stop", Instant::now());
            ok()
        }
        Uri::RtpTx { addr, port } => start_tx(sh, url, addr, port, false).await,
        Uri::RtpMTx { group, port } => start_tx(sh, url, group, port, true).await,
        Uri::RtpTxStop => {
            lock(&sh.streams).stop(false, "RTPTx:Stop", Instant::now());
            ok()
        }
        Uri::Http(target) => {
            if priority == 2 && !is_idle(sh).await {
                sh.event(format!("dropped (not idle): {target}"));
                return ok();
            }
            let rec = sh.fetch_record(&target).await;
            let item = match (rec.status, &rec.error) {
                (Some(s), _) if (200..300).contains(&s) => ok(),
                (Some(s), _) => fail(format!("HTTP {s}")),
                (None, Some(e)) => fail(e.clone()),
                (None, None) => fail("no answer".into()),
            };
            // What the URL returned is what the phone now shows.
            if let Some(body) = rec.body.as_deref().filter(|_| item.status == 0) {
                if let Ok(parsed) = crate::wire::xml::parse(body) {
                    if let Some(screen) = Screen::of(&parsed.object, "fetch", Some(&target)) {
                        *lock(&sh.screen) = Some(screen);
                    }
                }
            }
            *lock(&sh.last_fetch) = Some(rec);
            item
        }
    }
}

/// Shows `object` as the phone's screen, from `source`.
fn show(
    sh: &Shared,
    object: &crate::wire::xml::CiscoIPPhoneObject,
    source: &'static str,
    url: Option<&str>,
) {
    if let Some(screen) = Screen::of(object, source, url) {
        sh.event(format!("shown: {} ({source})", screen.kind));
        *lock(&sh.screen) = Some(screen);
    }
}

/// Fetches `url` and shows what it answers (a CiscoIPPhone object), as `source`.
async fn fetch_and_show(sh: &Shared, url: &str, source: &'static str) -> Result<(), String> {
    let rec = sh.fetch_record(url).await;
    let r = match (&rec.error, rec.status, rec.body.as_deref()) {
        (Some(e), _, _) => Err(e.clone()),
        (None, Some(200), Some(body)) => match crate::wire::xml::parse(body) {
            Ok(parsed) => {
                show(sh, &parsed.object, source, Some(url));
                Ok(())
            }
            Err(e) => Err(format!("XML Error: {e}")),
        },
        (None, st, _) => Err(format!("HTTP {}", st.unwrap_or(0))),
    };
    *lock(&sh.last_fetch) = Some(rec);
    r
}

/// Opens a service URL as the phone does when a menu item, a Service URL button or a
/// directory is chosen: the phone's own applications for `Application:Cisco/...`, a fetch for
/// HTTP(S), a call for `Dial:`.
async fn open_url(sh: &Shared, url: &str, source: &'static str) -> Result<(), String> {
    let url = url.replace("#DEVICENAME#", &sh.device);
    sh.event(format!("open: {url}"));
    match apps::built_in(&url) {
        Some(Ok(BuiltIn::History(list))) => {
            let obj = lock(&sh.history).directory(list);
            show(sh, &obj, "history", Some(&url));
            Ok(())
        }
        Some(Ok(BuiltIn::CorporateDirectory)) => {
            // The phone's Corporate Directory application asks the configuration file's
            // directory URL; without one it has nothing to ask.
            let dir = lock(&sh.config).directory_url.clone();
            match dir {
                Some(d) => fetch_and_show(sh, &d, "fetch").await,
                None => Err("no directory URL configured".into()),
            }
        }
        Some(Ok(BuiltIn::PersonalDirectory)) => {
            // UNCONFIRMED: the Personal Directory application's address. Cisco's service
            // before the built-in one was `http://<node>:8080/ccmpd/pdCheckLogin.do?name=..`
            // on the node the phone is registered to; taken here from the node that serves
            // the authentication URL.
            let auth = lock(&sh.config).authentication_url.clone();
            let Some(base) = auth.as_deref().and_then(apps::origin).map(str::to_string) else {
                return Err("no node to ask for the Personal Directory".into());
            };
            let pd = codec::with_query(
                &format!("{base}/ccmpd/pdCheckLogin.do"),
                &[("name", &sh.device)],
            );
            fetch_and_show(sh, &pd, "fetch").await
        }
        Some(Ok(BuiltIn::Voicemail)) => Err("no voicemail here".into()),
        Some(Err(e)) => Err(e),
        None if url.starts_with("http://") || url.starts_with("https://") => {
            fetch_and_show(sh, &url, source).await
        }
        None => match url.strip_prefix("Dial:") {
            Some(number) => {
                let number = number.to_string();
                call_cmd(sh, |tx| Cmd::Dial(number, tx)).await.map(|_| ())
            }
            None => Err(format!("cannot open {url:?}")),
        },
    }
}

/// The Directories button: with Services Provisioning External URL the phone shows what the
/// directory URL answers; otherwise a menu of the configuration file's directory services
/// (type 1: Missed, Received and Placed Calls, Personal and Corporate Directory, custom ones).
async fn show_directories(sh: &Shared) -> Result<(), String> {
    sh.touch();
    let cfg = lock(&sh.config).clone();
    if cfg.services_provisioning == 1 {
        return match cfg.directory_url {
            Some(d) => fetch_and_show(sh, &d, "fetch").await,
            None => Err("no directory URL configured".into()),
        };
    }
    let mut menu = crate::wire::xml::Menu::new("Directories");
    for s in cfg.phone_services.iter().filter(|s| s.service_type == 1) {
        menu = menu.item(&s.name, &s.url);
    }
    if menu.items.is_empty() {
        menu.base.prompt = Some("No directories".into());
    }
    show(
        sh,
        &crate::wire::xml::CiscoIPPhoneObject::Menu(menu),
        "directories",
        None,
    );
    Ok(())
}

/// A keypad digit while a menu is shown chooses its item `n` (1-based); while a directory
/// is shown it dials entry `n` (the simulator's shortcut for select + Dial).
async fn select_item(sh: &Shared, n: usize) -> Result<(), String> {
    use crate::wire::xml::CiscoIPPhoneObject as O;
    sh.touch();
    let shown = lock(&sh.screen).as_ref().map(|s| s.xml.clone());
    let Some(xml) = shown else {
        return Err("nothing shown".into());
    };
    let parsed = crate::wire::xml::parse(&xml).map_err(|e| e.to_string())?;
    let target = match parsed.object {
        O::Menu(m) => m.items.get(n.wrapping_sub(1)).and_then(|i| i.url.clone()),
        O::Directory(d) => d
            .entries
            .get(n.wrapping_sub(1))
            .and_then(|e| e.telephone.clone())
            .map(|t| format!("Dial:{t}")),
        _ => None,
    };
    match target {
        Some(url) => open_url(sh, &url, "fetch").await,
        None => Err(format!("no item {n} on the screen")),
    }
}

/// A line key: a Service URL button opens its service; a line key does nothing here.
async fn press_line(sh: &Shared, button: u32) -> Result<(), String> {
    sh.touch();
    let url = lock(&sh.config)
        .service_buttons
        .iter()
        .find(|b| b.button == button)
        .map(|b| b.url.clone());
    match url {
        Some(u) => open_url(sh, &u, "button").await,
        None => Ok(()),
    }
}

/// Installs, upgrades, downgrades and uninstalls the Java MIDlets (category 1 services) to
/// match the configuration file: each JAD is read again, its JAR fetched when the MIDlet is
/// new, failed before or of another version; the JAR must be `MIDlet-Jar-Size` long.
/// Failures are kept and retried at the next configuration download, as the seed says.
async fn sync_midlets(sh: Arc<Shared>) {
    let _one = sh.midlet_sync.lock().await;
    let wanted: Vec<super::config::ConfigService> = lock(&sh.config)
        .phone_services
        .iter()
        .filter(|s| s.category == 1)
        .cloned()
        .collect();
    let before = lock(&sh.midlets).clone();
    let mut after = Vec::new();
    for m in &before {
        if !wanted
            .iter()
            .any(|w| w.url.replace("#DEVICENAME#", &sh.device) == m.jad_url)
        {
            sh.event(format!("MIDlet uninstalled: {}", m.service));
        }
    }
    for w in &wanted {
        let jad_url = w.url.replace("#DEVICENAME#", &sh.device);
        let old = before.iter().find(|m| m.jad_url == jad_url).cloned();
        let state = install_midlet(&sh, &w.name, &jad_url, old).await;
        after.push(state);
    }
    *lock(&sh.midlets) = after;
    sh.changed();
}

async fn install_midlet(
    sh: &Shared,
    service: &str,
    jad_url: &str,
    old: Option<MidletState>,
) -> MidletState {
    let mut st = old.clone().unwrap_or(MidletState {
        service: service.to_string(),
        jad_url: jad_url.to_string(),
        status: "failed",
        name: None,
        version: None,
        vendor: None,
        jar_url: None,
        jar_bytes: 0,
        error: None,
        installs: 0,
        at_unix_ms: 0,
    });
    st.service = service.to_string();
    st.at_unix_ms = unix_ms();
    let jad = match sh.fetch(jad_url).await {
        Ok(r) if r.status == 200 => apps::parse_jad(&r.text()),
        Ok(r) => Err(format!("JAD: HTTP {}", r.status)),
        Err(e) => Err(format!("JAD: {e}")),
    };
    let jad = match jad {
        Ok(j) => j,
        Err(e) => {
            // An installed MIDlet stays installed when its JAD cannot be read now.
            if st.status != "installed" {
                st.error = Some(e.clone());
            }
            sh.event(format!("MIDlet {service}: {e}"));
            return st;
        }
    };
    if st.status == "installed" && st.version.as_deref() == Some(jad.version.as_str()) {
        return st;
    }
    let what = match (st.status, st.version.as_deref()) {
        ("installed", Some(v)) => format!("{v} -> {}", jad.version),
        _ => format!("install {}", jad.version),
    };
    let jar = match sh.fetch(&jad.jar_url).await {
        Ok(r) if r.status == 200 && r.body.len() as u64 == jad.jar_size => Ok(r.body.len() as u64),
        Ok(r) if r.status == 200 => Err(format!(
            "JAR is {} bytes, the JAD says {}",
            r.body.len(),
            jad.jar_size
        )),
        Ok(r) => Err(format!("JAR: HTTP {}", r.status)),
        Err(e) => Err(format!("JAR: {e}")),
    };
    match jar {
        Ok(n) => {
            sh.event(format!("MIDlet {service}: {what}"));
            st.status = "installed";
            st.error = None;
            st.jar_bytes = n;
            st.name = Some(jad.name);
            st.version = Some(jad.version);
            st.vendor = Some(jad.vendor);
            st.jar_url = Some(jad.jar_url);
            st.installs += 1;
        }
        Err(e) => {
            sh.event(format!("MIDlet {service}: {what} failed: {e}"));
            // A failed upgrade keeps the installed version; a failed install is retried.
            if st.status != "installed" {
                st.status = "failed";
            }
            st.error = Some(e);
        }
    }
    st
}

fn busy_item(url: &str, errno: u32) -> ResponseItem {
    ResponseItem {
        url: url.to_string(),
        status: errno,
        data: format!("errorNo={errno}"),
    }
}

/// `RTPRx` (unicast, on the phone's own address) or `RTPMRx` (`group`, joined on the phone's
/// address). A unicast request without a port gets one picked and returned in Data.
fn start_rx(
    sh: &Arc<Shared>,
    url: &str,
    group: Option<IpAddr>,
    port: Option<u16>,
    volume: Option<u8>,
) -> ResponseItem {
    let mut streams = lock(&sh.streams);
    let kind = if group.is_some() {
        StreamKind::Mrx
    } else {
        StreamKind::Rx
    };
    if streams.busy(kind) {
        return busy_item(url, 1);
    }
    let ip = IpAddr::V4(sh.ip);
    let dscp = lock(&sh.config).dscp_audio;
    let (sock, leave) = match group {
        Some(g) => match crate::net::bind_multicast_receiver(g, port.unwrap_or(0), sh.ip) {
            Ok(s) => (s, Some((g, sh.ip))),
            Err(e) => return ResponseItem::error(url, UriError::internal(&format!("join: {e}"))),
        },
        None => {
            let bound = match port {
                Some(p) => bind_exclusive_udp(SocketAddr::new(ip, p), dscp),
                None => (0..64u16)
                    .map(|i| 20480 + i * 2)
                    .find_map(|p| bind_exclusive_udp(SocketAddr::new(ip, p), dscp).ok())
                    .ok_or_else(|| std::io::Error::other("no free port")),
            };
            match bound {
                Ok(s) => (s, None),
                Err(e) => {
                    return ResponseItem::error(url, UriError::internal(&format!("bind: {e}")))
                }
            }
        }
    };
    let local = sock.local_addr().ok();
    let address = match (group, local) {
        (Some(g), Some(l)) => SocketAddr::new(g, l.port()),
        (_, Some(l)) => l,
        (_, None) => SocketAddr::new(ip, port.unwrap_or(0)),
    };
    let session = MediaSession::start(
        sock,
        SendParams {
            remote: None,
            send: false,
        },
        0,
        sh.tone.clone(),
        leave,
    );
    streams.add(UriStream {
        kind,
        uri: url.to_string(),
        address,
        volume,
        started: Instant::now(),
        stopped: None,
        session,
    });
    drop(streams);
    sh.event(url.to_string());
    let mut item = ResponseItem::success(url);
    if port.is_none() {
        item.data = address.port().to_string();
    }
    item
}

/// `RTPTx` / `RTPMTx`: the tone to `addr:port`, refused during a call (errorNo=4).
async fn start_tx(
    sh: &Arc<Shared>,
    url: &str,
    addr: IpAddr,
    port: u16,
    multicast: bool,
) -> ResponseItem {
    if !is_idle(sh).await {
        return busy_item(url, 4);
    }
    let mut streams = lock(&sh.streams);
    let kind = if multicast {
        StreamKind::Mtx
    } else {
        StreamKind::Tx
    };
    if streams.busy(kind) {
        return busy_item(url, 1);
    }
    let ip = IpAddr::V4(sh.ip);
    let dscp = lock(&sh.config).dscp_audio;
    let sock = if multicast {
        crate::net::multicast_sender(SocketAddr::new(ip, 0), dscp, 1, sh.ip, true)
    } else {
        bind_exclusive_udp(SocketAddr::new(ip, 0), dscp)
    };
    let sock = match sock {
        Ok(s) => s,
        Err(e) => return ResponseItem::error(url, UriError::internal(&format!("bind: {e}"))),
    };
    let target = SocketAddr::new(addr, port);
    let session = MediaSession::start(
        sock,
        SendParams {
            remote: Some(target),
            send: true,
        },
        0,
        sh.tone.clone(),
        None,
    );
    streams.add(UriStream {
        kind,
        uri: url.to_string(),
        address: target,
        volume: None,
        started: Instant::now(),
        stopped: None,
        session,
    });
    drop(streams);
    sh.event(url.to_string());
    ResponseItem::success(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names() {
        assert_eq!(mac_of("SEP00036BC7B973").as_deref(), Some("00036bc7b973"));
        assert_eq!(mac_of("SEP00036BC7B97"), None);
        assert_eq!(mac_of("CSFjsmith"), None);
        assert_eq!(mac_of("SEP00036BC7B97G"), None);
    }

    #[test]
    fn user_agent_is_cisco_like() {
        let o = PhoneOptions::new("SEP00036BC7B973", Ipv4Addr::new(127, 0, 0, 10), "x:1");
        assert_eq!(o.user_agent(), "Cisco-CP8845/14.2.1");
    }
}
