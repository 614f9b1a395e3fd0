//! `ucm serve`: one node of a cluster. The server binds the node's listeners, builds the node
//! core and starts the services the node's definition activates (`nodes[].services`); nothing
//! imports it but the binary.
//!
//! Start-up is split so scripts can use port 0: [`Listeners::bind`] opens every socket (marked
//! with its DSCP before `listen()`), [`start`] builds the node and its services, the caller
//! prints the bound addresses ([`Listeners::ready`]), then [`run`] serves until the shutdown
//! future completes, letting in-flight requests finish.

mod certificates;
mod status;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::{TcpListener, UdpSocket};

use crate::config::model::{ClusterDefinition, NodeService};
use crate::net::{self, Dscp};
use crate::node::http::Listener;
use crate::node::{BoundAddrs, NodeError, NodeState};
use crate::node::{HTTPS_PORT, HTTP_PORT, SIPS_PORT, SIP_PORT};
use crate::services::{self, Bound, Parts, Proto, ServiceSpec};
use crate::store::Store;

/// Where the node listens; `None` ports take the standard ones, 0 any free one.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    pub bind: IpAddr,
    pub http_port: Option<u16>,
    pub https_port: Option<u16>,
    pub tftp_http_port: Option<u16>,
    /// TFTP on UDP. The standard port 69 needs root or CAP_NET_BIND_SERVICE; when it is
    /// left at the default and cannot be bound, the node runs without it (with a warning).
    pub tftp_port: Option<u16>,
    pub sip_port: Option<u16>,
    pub sips_port: Option<u16>,
    /// The SNMP agent on UDP. The standard port 161 needs root or CAP_NET_BIND_SERVICE; left
    /// at the default and not bindable, the node runs without the agent (with a warning).
    pub snmp_port: Option<u16>,
    /// The Assistant Console listener on TCP (standard 2912); left at the default and taken
    /// (a second node on the host), the node runs without it (with a warning).
    pub assistant_console_port: Option<u16>,
    /// The Attendant Console's console protocol listener (a node running `attendant`).
    pub attendant_console_port: Option<u16>,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            http_port: None,
            https_port: None,
            tftp_http_port: None,
            tftp_port: None,
            sip_port: None,
            sips_port: None,
            snmp_port: None,
            assistant_console_port: None,
            attendant_console_port: None,
        }
    }
}

impl ListenOptions {
    /// The port asked for the listener called `name` in the ready line.
    fn port(&self, name: &str) -> Option<u16> {
        match name {
            "tftp_http" => self.tftp_http_port,
            "tftp" => self.tftp_port,
            "snmp" => self.snmp_port,
            "assistant_console" => self.assistant_console_port,
            "attendant_console" => self.attendant_console_port,
            _ => None,
        }
    }
}

/// SIP over UDP, TCP and TLS: a node with call processing.
pub struct SipListeners {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
    pub tls: TcpListener,
}

/// Every socket of a node, bound and marked, not yet served.
pub struct Listeners {
    node: String,
    active: Vec<NodeService>,
    pub http: TcpListener,
    pub https: TcpListener,
    pub sip: Option<SipListeners>,
    /// The services' own listeners, per entry of [`services::ALL`].
    services: Vec<Vec<Option<Bound>>>,
}

/// The `{"event":"ready",...}` line: every bound address, by the listener's name.
#[derive(Debug, Clone)]
pub struct Ready(serde_json::Map<String, serde_json::Value>);

impl Ready {
    pub fn get(&self, name: &str) -> Option<SocketAddr> {
        self.0.get(name)?.as_str()?.parse().ok()
    }
}

impl serde::Serialize for Ready {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Node(#[from] NodeError),
}

impl From<crate::store::StoreError> for ServeError {
    fn from(e: crate::store::StoreError) -> Self {
        ServeError::Node(NodeError::Store(e))
    }
}

impl Listeners {
    /// Binds every listener of the node `node` (default: the definition's first) runs: HTTP and
    /// HTTPS always, SIP with call processing, and each active service's own. Signalling
    /// sockets carry `qos.call_signalling`, the web ones `qos.phone_services`, the others what
    /// their service declares.
    pub fn bind(
        opts: &ListenOptions,
        def: &ClusterDefinition,
        node: Option<&str>,
    ) -> Result<Listeners, ServeError> {
        let this = crate::node::this_node(def, node)?;
        let active = this.services.clone();
        let q = &def.qos;
        let addr = |p: Option<u16>, default: u16| SocketAddr::new(opts.bind, p.unwrap_or(default));
        let tcp = |what, a: SocketAddr, d: Dscp| {
            net::bind_tcp(a, d, 1024).map_err(|source| ServeError::Bind {
                what,
                addr: a,
                source,
            })
        };
        let sip = if active.contains(&NodeService::CallProcessing) {
            let sip_addr = addr(opts.sip_port, SIP_PORT);
            let sip_tcp = tcp("SIP TCP", sip_addr, q.call_signalling)?;
            // Port 0 for SIP means one free port shared by UDP and TCP, as phones expect.
            let udp_addr = SocketAddr::new(opts.bind, sip_tcp.local_addr().map_or(0, |a| a.port()));
            let sip_udp =
                net::bind_udp(udp_addr, q.call_signalling).map_err(|source| ServeError::Bind {
                    what: "SIP UDP",
                    addr: udp_addr,
                    source,
                })?;
            // Bursts of thousands of calls a second overflow the default 208 KiB receive
            // buffer; the kernel caps this at net.core.rmem_max (failure is not fatal).
            let sock = socket2::SockRef::from(&sip_udp);
            let _ = sock.set_recv_buffer_size(8 << 20);
            let _ = sock.set_send_buffer_size(8 << 20);
            let sip_tls = tcp(
                "SIP TLS",
                addr(opts.sips_port, SIPS_PORT),
                q.call_signalling,
            )?;
            Some(SipListeners {
                udp: sip_udp,
                tcp: sip_tcp,
                tls: sip_tls,
            })
        } else {
            None
        };
        let mut services = Vec::new();
        for spec in services::ALL {
            let mut bound = Vec::new();
            for l in spec.listeners {
                if !active.contains(&l.flag) {
                    bound.push(None);
                    continue;
                }
                let asked = opts.port(l.name);
                let a = addr(asked, l.default_port);
                let dscp = (l.dscp)(q);
                let r = match l.proto {
                    Proto::Tcp => net::bind_tcp(a, dscp, 1024).map(Bound::Tcp),
                    Proto::Udp => net::bind_udp(a, dscp).map(Bound::Udp),
                };
                match r {
                    Ok(b) => bound.push(Some(b)),
                    Err(e)
                        if l.optional_without_privilege
                            && asked.is_none()
                            && matches!(
                                e.kind(),
                                std::io::ErrorKind::PermissionDenied
                                    | std::io::ErrorKind::AddrInUse
                            ) =>
                    {
                        let why = if e.kind() == std::io::ErrorKind::AddrInUse {
                            "is in use (another node or server on this host?)"
                        } else {
                            "needs root or CAP_NET_BIND_SERVICE"
                        };
                        tracing::warn!(
                            addr = %a,
                            "{} is off: port {} {why} (choose another port)",
                            l.what,
                            l.default_port
                        );
                        bound.push(None);
                    }
                    Err(source) => {
                        return Err(ServeError::Bind {
                            what: l.what,
                            addr: a,
                            source,
                        })
                    }
                }
            }
            services.push(bound);
        }
        Ok(Listeners {
            node: this.name,
            active,
            http: tcp("HTTP", addr(opts.http_port, HTTP_PORT), q.phone_services)?,
            https: tcp("HTTPS", addr(opts.https_port, HTTPS_PORT), q.phone_services)?,
            sip,
            services,
        })
    }

    /// The ready line: `http`, `https`, each service listener (`tftp_http`, `tftp`; `null` for
    /// an optional one that could not be bound), `sip_udp`/`sip_tcp`/`sip_tls` on a node with
    /// call processing, then `cluster` and `node`.
    pub fn ready(&self, cluster: &str) -> std::io::Result<Ready> {
        use serde_json::Value;
        let mut m = serde_json::Map::new();
        let s = |a: SocketAddr| Value::String(a.to_string());
        m.insert("event".into(), "ready".into());
        m.insert("http".into(), s(self.http.local_addr()?));
        m.insert("https".into(), s(self.https.local_addr()?));
        for (spec, bound) in services::ALL.iter().zip(&self.services) {
            for (l, b) in spec.listeners.iter().zip(bound) {
                if !self.active.contains(&l.flag) {
                    continue;
                }
                let v = match b {
                    Some(b) => s(b.local_addr()?),
                    None => Value::Null,
                };
                m.insert(l.name.into(), v);
            }
        }
        if let Some(sip) = &self.sip {
            m.insert("sip_udp".into(), s(sip.udp.local_addr()?));
            m.insert("sip_tcp".into(), s(sip.tcp.local_addr()?));
            m.insert("sip_tls".into(), s(sip.tls.local_addr()?));
        }
        m.insert("cluster".into(), cluster.into());
        m.insert("node".into(), self.node.clone().into());
        Ok(Ready(m))
    }
}

/// A node whose services are started, ready to serve.
pub struct Node {
    pub state: Arc<NodeState>,
    http: TcpListener,
    https: TcpListener,
    sip: Option<SipListeners>,
    parts: Vec<Parts>,
    sip_limits: crate::sip::StreamLimits,
}

impl Node {
    /// The limits of the SIP TCP and TLS listeners (default: the named constants).
    pub fn set_sip_limits(&mut self, limits: crate::sip::StreamLimits) {
        self.sip_limits = limits;
    }
}

/// Builds the node core and starts the services this node runs (they take what they need
/// before the node says it is ready: DialCast route points, logins made before a restart).
pub async fn start(
    listeners: Listeners,
    store: Store,
    def: ClusterDefinition,
    data_dir: PathBuf,
) -> Result<Node, ServeError> {
    let local = |l: &TcpListener| {
        l.local_addr().map_err(|source| ServeError::Bind {
            what: "listener",
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            source,
        })
    };
    let addrs = BoundAddrs {
        http: local(&listeners.http)?,
        https: local(&listeners.https)?,
        sip: listeners.sip.as_ref().and_then(|s| s.udp.local_addr().ok()),
        sips: listeners.sip.as_ref().and_then(|s| s.tls.local_addr().ok()),
    };
    let state =
        NodeState::start(store, def, Some(&listeners.node), addrs, data_dir.clone()).await?;
    // Every service's part in the change feed runs on every node, whichever services the node
    // runs; what they hold (logins made before a restart or by other nodes) is read now.
    for hook in services::feed_hooks() {
        state.feed.add_hook(hook);
    }
    state.resync_services().await?;
    let mut parts = Vec::new();
    for (spec, bound) in services::ALL.iter().zip(listeners.services) {
        let active = spec.active(&listeners.active);
        if active.is_empty() {
            continue;
        }
        parts.push(start_service(spec, &state, active, bound).await?);
    }
    Ok(Node {
        state,
        http: listeners.http,
        https: listeners.https,
        sip: listeners.sip,
        parts,
        sip_limits: Default::default(),
    })
}

async fn start_service(
    spec: &ServiceSpec,
    state: &Arc<NodeState>,
    active: Vec<NodeService>,
    listeners: Vec<Option<Bound>>,
) -> Result<Parts, ServeError> {
    Ok((spec.start)(services::Start {
        node: state.clone(),
        active,
        listeners,
        stop: state.stopping(),
    })
    .await?)
}

/// How long in-flight work may take to finish after shutdown is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves every listener until `shutdown` completes, then drains and closes the database.
pub async fn run(
    node: Node,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let state = node.state;
    let stop_rx = state.stopping();
    let mut tasks = tokio::task::JoinSet::new();
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(status::STATUS_PATH, get(status::json_handler))
        .route("/", get(status::html_handler))
        .route(certificates::CERTIFICATES_PATH, get(certificates::export))
        .route(
            certificates::TRUST_PATH,
            get(certificates::trust).post(certificates::import),
        )
        .fallback(not_here)
        .with_state(state.clone());
    for p in node.parts {
        app = app.merge(p.routes);
        for t in p.tasks {
            tasks.spawn(t);
        }
    }
    // Every secret check is throttled and remembered per source address.
    let app = app.layer(axum::middleware::from_fn(
        crate::services::authenticate::scope_source,
    ));
    let app = app.layer(axum::middleware::from_fn(count_http_request));
    // Handlers that must not answer in clear (the certificate exchange) see which listener
    // a request came in on.
    tasks.spawn(crate::node::http::serve(
        node.http,
        app.clone().layer(axum::Extension(Listener::Http)),
        None,
        Listener::Http,
        state.clone(),
        stop_rx.clone(),
    ));
    tasks.spawn(crate::node::http::serve(
        node.https,
        app.layer(axum::Extension(Listener::Https)),
        Some(tokio_rustls::TlsAcceptor::from(state.tls.clone())),
        Listener::Https,
        state.clone(),
        stop_rx.clone(),
    ));
    tasks.spawn(state.clone().run_feed());
    tasks.spawn(state.clone().run_heartbeat());
    tasks.spawn(state.clone().run_busy_announcer());
    tasks.spawn(state.clone().run_leases());
    if let Some(sip_l) = node.sip {
        let sip = crate::sip::SipServer::with_limits(Arc::new(state.sip_node()), node.sip_limits);
        tasks.spawn(sip.clone().serve_core(stop_rx.clone()));
        tasks.spawn(sip.clone().serve_udp(sip_l.udp, stop_rx.clone()));
        tasks.spawn(sip.clone().serve_stream(sip_l.tcp, None, stop_rx.clone()));
        tasks.spawn(sip.serve_stream(
            sip_l.tls,
            Some(tokio_rustls::TlsAcceptor::from(state.sip_tls.clone())),
            stop_rx.clone(),
        ));
        // Expired registrations leave memory and the database once a minute.
        let (st, mut stop) = (state.clone(), stop_rx.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tick.tick() => st.registrar.sweep(),
                    _ = stop.changed() => return,
                }
            }
        });
    }
    shutdown.await;
    tracing::info!("shutting down: finishing in-flight requests");
    state.stop();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some connections did not finish within {SHUTDOWN_GRACE:?}; closing them");
        tasks.abort_all();
    }
    state.close(SHUTDOWN_GRACE).await;
    tracing::info!("stopped");
    Ok(())
}

async fn healthz(State(s): State<Arc<NodeState>>) -> Response {
    let c = s.cluster();
    // A load balancer takes a node whose database is unreachable out of rotation.
    let ok = s.database_ok();
    let body = Json(serde_json::json!({
        "status": if ok { "ok" } else { "database unreachable" },
        "cluster": c.cluster.id,
        "node": s.node.name,
        "uptime_seconds": s.started.elapsed().as_secs(),
    }));
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body).into_response()
}

/// Counts each answered request by its route template (bounded, unlike paths) and status.
async fn count_http_request(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "(unmatched)".to_string());
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    net::counters::count(
        net::counters::HTTP_REQUESTS,
        &[("route", &route), ("status", &status)],
    );
    resp
}

async fn metrics(State(s): State<Arc<NodeState>>) -> Response {
    let c = s.cluster();
    let mut body = s.metrics.render(&[
        (
            "ucm_uptime_seconds",
            "Seconds since the node started.",
            s.started.elapsed().as_secs_f64(),
        ),
        (
            "ucm_configured_devices",
            "Devices in the cluster definition.",
            c.devices.len() as f64,
        ),
        (
            "ucm_configured_end_users",
            "End users in the cluster definition.",
            c.end_users.len() as f64,
        ),
        (
            "ucm_password_verification_slots",
            "Password and PIN verifications allowed to run at once.",
            s.secret_guards.gate.size() as f64,
        ),
        (
            "ucm_password_verifications_running_max",
            "Most password and PIN verifications ever running at once.",
            s.secret_guards
                .gate
                .high_water
                .load(std::sync::atomic::Ordering::Relaxed) as f64,
        ),
        (
            "ucm_password_verifications",
            "Password and PIN verifications run (argon2).",
            s.secret_guards
                .gate
                .verified
                .load(std::sync::atomic::Ordering::Relaxed) as f64,
        ),
        (
            "ucm_password_checks_refused_busy",
            "Password and PIN checks refused because every verification slot was taken.",
            s.secret_guards
                .gate
                .refused_busy
                .load(std::sync::atomic::Ordering::Relaxed) as f64,
        ),
    ]);
    net::counters::render(&mut body);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// A path no route of this node matched: when it belongs to a service the node does not run,
/// say so and name the nodes that run it.
async fn not_here(State(s): State<Arc<NodeState>>, uri: Uri) -> Response {
    let Some(flag) = services::owner_of(uri.path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let cluster = s.cluster();
    let others: Vec<&str> = cluster
        .nodes
        .iter()
        .filter(|n| n.runs(flag.flag))
        .map(|n| n.name.as_str())
        .collect();
    let where_ = if others.is_empty() {
        "no node of the cluster runs it".to_string()
    } else {
        format!("it runs on {}", others.join(", "))
    };
    let body = format!(
        "{} is not active on node {} ({where_})\n",
        capitalise(flag.name),
        s.node.name
    );
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
