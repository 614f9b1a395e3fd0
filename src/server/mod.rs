//! `ucm serve`: one node of a cluster.
//!
//! Start-up is split so scripts can use port 0: [`Listeners::bind`] opens every socket (marked
//! with its DSCP before `listen()`), the caller prints the bound addresses, then [`run`] serves
//! until the shutdown future completes, letting in-flight requests finish.

pub mod http;
pub mod metrics;
pub mod tftp;
pub mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use crate::cluster::Cluster;
use crate::config::model::{ClusterDefinition, Node};
use crate::net::{self, Dscp};
use crate::store::Store;

/// Standard Unified CM ports (see the spec's port table).
pub const HTTP_PORT: u16 = 8080;
pub const HTTPS_PORT: u16 = 8443;
pub const TFTP_HTTP_PORT: u16 = 6970;
pub const TFTP_PORT: u16 = 69;
pub const SIP_PORT: u16 = 5060;
pub const SIPS_PORT: u16 = 5061;

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
        }
    }
}

/// Every socket of a node, bound and marked, not yet served.
pub struct Listeners {
    pub http: TcpListener,
    pub https: TcpListener,
    pub tftp_http: TcpListener,
    pub tftp: Option<UdpSocket>,
    pub sip_udp: UdpSocket,
    pub sip_tcp: TcpListener,
    pub sip_tls: TcpListener,
}

/// The `{"event":"ready",...}` line: every bound address.
#[derive(Debug, Clone, Serialize)]
pub struct Ready {
    pub event: &'static str,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub tftp_http: SocketAddr,
    /// TFTP on UDP; absent when the default port could not be bound.
    pub tftp: Option<SocketAddr>,
    pub sip_udp: SocketAddr,
    pub sip_tcp: SocketAddr,
    pub sip_tls: SocketAddr,
    pub cluster: String,
    pub node: String,
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
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("node {0:?} is not in the cluster definition")]
    UnknownNode(String),
}

impl Listeners {
    /// Binds every listener. Signalling sockets carry `qos.call_signalling`, the web and TFTP
    /// ones `qos.phone_configuration` / `qos.phone_services`.
    pub fn bind(opts: &ListenOptions, def: &ClusterDefinition) -> Result<Listeners, ServeError> {
        let q = &def.qos;
        let addr = |p: Option<u16>, default: u16| SocketAddr::new(opts.bind, p.unwrap_or(default));
        let tcp = |what, a: SocketAddr, d: Dscp| {
            net::bind_tcp(a, d, 1024).map_err(|source| ServeError::Bind {
                what,
                addr: a,
                source,
            })
        };
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
        // Bursts of thousands of calls a second overflow the default 208 KiB receive buffer;
        // the kernel caps this at net.core.rmem_max (failure to enlarge is not fatal).
        let sock = socket2::SockRef::from(&sip_udp);
        let _ = sock.set_recv_buffer_size(8 << 20);
        let _ = sock.set_send_buffer_size(8 << 20);
        let tftp_addr = addr(opts.tftp_port, TFTP_PORT);
        let tftp = match net::bind_udp(tftp_addr, q.phone_configuration) {
            Ok(s) => Some(s),
            Err(e)
                if opts.tftp_port.is_none() && e.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                tracing::warn!(
                    addr = %tftp_addr,
                    "TFTP on UDP is off: port 69 needs root or CAP_NET_BIND_SERVICE \
                     (choose another with --tftp-port); TFTP over HTTP still serves the files"
                );
                None
            }
            Err(source) => {
                return Err(ServeError::Bind {
                    what: "TFTP",
                    addr: tftp_addr,
                    source,
                })
            }
        };
        Ok(Listeners {
            http: tcp("HTTP", addr(opts.http_port, HTTP_PORT), q.phone_services)?,
            https: tcp("HTTPS", addr(opts.https_port, HTTPS_PORT), q.phone_services)?,
            tftp_http: tcp(
                "TFTP-over-HTTP",
                addr(opts.tftp_http_port, TFTP_HTTP_PORT),
                q.phone_configuration,
            )?,
            tftp,
            sip_udp,
            sip_tcp,
            sip_tls: tcp(
                "SIP TLS",
                addr(opts.sips_port, SIPS_PORT),
                q.call_signalling,
            )?,
        })
    }

    pub fn ready(&self, cluster: &str, node: &str) -> std::io::Result<Ready> {
        Ok(Ready {
            event: "ready",
            http: self.http.local_addr()?,
            https: self.https.local_addr()?,
            tftp_http: self.tftp_http.local_addr()?,
            tftp: self.tftp.as_ref().map(|s| s.local_addr()).transpose()?,
            sip_udp: self.sip_udp.local_addr()?,
            sip_tcp: self.sip_tcp.local_addr()?,
            sip_tls: self.sip_tls.local_addr()?,
            cluster: cluster.to_string(),
            node: node.to_string(),
        })
    }
}

/// What every part of a running node shares.
pub struct NodeState {
    pub store: Store,
    cluster: RwLock<Arc<Cluster>>,
    pub node: Node,
    pub metrics: metrics::Metrics,
    pub started: Instant,
    /// `http://host:port` and `https://host:port` as phones should use them.
    pub http_base: String,
    pub https_base: String,
    pub tftp_base: String,
    pub data_dir: PathBuf,
    pub tls: Arc<rustls::ServerConfig>,
    pub sip_tls: Arc<rustls::ServerConfig>,
    pub registrar: Arc<crate::sip::registrar::Registrar>,
    /// `host:port` of this node's SIP service as phones and peers should reach it.
    pub sip_host: String,
    /// `host:port` of this node's SIP over TLS service (Via and Contact on TLS connections).
    pub sips_host: String,
    /// Call control for the services: third-party calls, ending calls, line-state events.
    pub call_control: crate::sip::CallControl,
    /// Extension Mobility: the EM service API and its automatic logouts.
    pub em: crate::services::em::EmService,
    /// Recent successful password checks (the authentication URL is called on every push).
    pub password_cache: crate::auth::VerifiedCache,
    /// WebDialer: the SOAP interface, the HTML servlet's sessions and the calls it placed.
    pub webdialer: crate::services::webdialer::WebDialerService,
    /// The Paging Server: DialCast route points, running pages, the push credential.
    pub paging: crate::services::paging::PagingService,
    stop: watch::Sender<bool>,
    /// The registrar's database writer; awaited at shutdown so nothing queued is lost.
    registrar_writer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl NodeState {
    /// The current cluster definition (a cheap snapshot; writers swap the whole Arc).
    pub fn cluster(&self) -> Arc<Cluster> {
        match self.cluster.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// A receiver that changes when the node shuts down (for tasks started after `run`).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    pub fn set_cluster(&self, def: ClusterDefinition) {
        let mut g = match self.cluster.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mobility = g.mobility.clone();
        *g = Arc::new(Cluster::with_mobility(def, mobility));
    }

    /// Replaces `{http}` / `{https}` in a configured URL with this node's base URLs.
    pub fn expand_url(&self, url: &str) -> String {
        url.replace("{https}", &self.https_base)
            .replace("{http}", &self.http_base)
    }
}

/// Builds the shared state: picks this node from the definition, makes or loads the TLS
/// identity, works out the URLs phones should use, loads the runtime state (registrations).
pub async fn node_state(
    store: Store,
    def: ClusterDefinition,
    node_name: Option<&str>,
    listeners: &Listeners,
    data_dir: PathBuf,
) -> Result<Arc<NodeState>, ServeError> {
    let node = match node_name {
        Some(n) => def
            .nodes
            .iter()
            .find(|x| x.name == n)
            .cloned()
            .ok_or_else(|| ServeError::UnknownNode(n.to_string()))?,
        None => def.nodes.first().cloned().unwrap_or_else(|| Node {
            name: "ucm".into(),
            address: "127.0.0.1".into(),
            services: Vec::new(),
            bind: None,
            ports: Default::default(),
        }),
    };
    let local = |l: &TcpListener| l.local_addr().ok();
    // Phones must be given an address they can reach: the bound one, unless it is a wildcard.
    let host_for = |a: Option<SocketAddr>| -> String {
        match a {
            Some(a) if !a.ip().is_unspecified() => match a.ip() {
                IpAddr::V6(v6) => format!("[{v6}]:{}", a.port()),
                ip => format!("{ip}:{}", a.port()),
            },
            Some(a) => format!("{}:{}", bracket(&node.address), a.port()),
            None => node.address.clone(),
        }
    };
    let http_base = format!("http://{}", host_for(local(&listeners.http)));
    let https_base = format!("https://{}", host_for(local(&listeners.https)));
    let tftp_base = format!("http://{}", host_for(local(&listeners.tftp_http)));
    let sip_host = host_for(listeners.sip_udp.local_addr().ok());
    let sips_host = host_for(local(&listeners.sip_tls));
    let mut ips: Vec<IpAddr> = Vec::new();
    if let Ok(ip) = node.address.parse() {
        ips.push(ip);
    }
    if let Some(a) = local(&listeners.https) {
        if !a.ip().is_unspecified() {
            ips.push(a.ip());
        }
    }
    let identity = tls::load_or_create(&data_dir, &node.name, &ips)?;
    let tls_cfg = tls::server_config(&identity, &[b"http/1.1"])?;
    let sip_tls = tls::server_config(&identity, &[])?;
    let (registrar, writer) =
        crate::sip::registrar::Registrar::load(store.clone(), &node.name).await?;
    let (stop, _) = watch::channel(false);
    let state = Arc::new(NodeState {
        em: crate::services::em::EmService::new(),
        password_cache: crate::auth::VerifiedCache::new(Duration::from_secs(300)),
        webdialer: crate::services::webdialer::WebDialerService::new(),
        paging: crate::services::paging::PagingService::new(),
        call_control: crate::sip::CallControl::new(),
        sip_host,
        sips_host,
        stop,
        registrar,
        registrar_writer: std::sync::Mutex::new(Some(writer)),
        store,
        cluster: RwLock::new(Arc::new(Cluster::new(def))),
        node,
        metrics: metrics::Metrics::default(),
        started: Instant::now(),
        http_base,
        https_base,
        tftp_base,
        data_dir,
        tls: tls_cfg,
        sip_tls,
    });
    // Logins made before a restart are still in force, and so are their automatic logouts.
    let logins = state.em.restore(&state).await?;
    if state
        .node
        .services
        .contains(&crate::config::model::NodeService::Paging)
    {
        crate::services::paging::PagingService::prepare(&state).await;
    }
    if logins > 0 {
        tracing::info!(logins, "Extension Mobility logins restored");
    }
    Ok(state)
}

fn bracket(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.to_string(),
    }
}

/// How long in-flight work may take to finish after shutdown is asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves every listener until `shutdown` completes, then drains and closes the database.
pub async fn run(
    listeners: Listeners,
    state: Arc<NodeState>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let stop_rx = state.stopping();
    let mut tasks = tokio::task::JoinSet::new();
    let app = http::router(state.clone());
    let tftp_app = http::tftp_router(state.clone());
    tasks.spawn(http::serve(
        listeners.http,
        app.clone(),
        None,
        http::Listener::Http,
        state.clone(),
        stop_rx.clone(),
    ));
    tasks.spawn(http::serve(
        listeners.https,
        app,
        Some(tokio_rustls::TlsAcceptor::from(state.tls.clone())),
        http::Listener::Https,
        state.clone(),
        stop_rx.clone(),
    ));
    tasks.spawn(http::serve(
        listeners.tftp_http,
        tftp_app,
        None,
        http::Listener::TftpHttp,
        state.clone(),
        stop_rx.clone(),
    ));
    if let Some(sock) = listeners.tftp {
        let dscp = state.cluster().qos.phone_configuration;
        tasks.spawn(tftp::serve(sock, state.clone(), dscp, stop_rx.clone()));
    }
    tasks.spawn(crate::services::em::EmService::run_timers(
        state.clone(),
        stop_rx.clone(),
    ));
    tasks.spawn(crate::services::em::EmService::run_sync(
        state.clone(),
        stop_rx.clone(),
    ));
    let sip = crate::sip::SipServer::new(state.clone());
    tasks.spawn(sip.clone().serve_core(stop_rx.clone()));
    // Serves what PagingService::prepare took at start (nothing on a node without paging).
    tasks.spawn(crate::services::paging::PagingService::run(
        state.clone(),
        stop_rx.clone(),
    ));
    tasks.spawn(sip.clone().serve_udp(listeners.sip_udp, stop_rx.clone()));
    tasks.spawn(
        sip.clone()
            .serve_stream(listeners.sip_tcp, None, stop_rx.clone()),
    );
    tasks.spawn(sip.serve_stream(
        listeners.sip_tls,
        Some(tokio_rustls::TlsAcceptor::from(state.sip_tls.clone())),
        stop_rx.clone(),
    ));
    // Expired registrations leave memory and the database once a minute.
    let sweeper = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                state.registrar.sweep();
            }
        })
    };
    shutdown.await;
    sweeper.abort();
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = state.stop.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some connections did not finish within {SHUTDOWN_GRACE:?}; closing them");
        tasks.abort_all();
    }
    // The registrar's writer ends once every sender is gone; the state still holds one, so
    // flush by waiting briefly for the queue to drain instead.
    let writer = match state.registrar_writer.lock() {
        Ok(mut g) => g.take(),
        Err(p) => p.into_inner().take(),
    };
    if let Some(w) = writer {
        state.registrar.close();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, w).await;
    }
    state.store.close().await;
    tracing::info!("stopped");
    Ok(())
}
