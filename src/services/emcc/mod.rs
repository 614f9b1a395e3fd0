//! Extension Mobility Cross Cluster, the part between clusters that runs in the EM service of
//! each node (Cisco's "EM service on each node"):
//!
//! - the **remote cluster update**: at start, every `emcc.remote_cluster_update_minutes` and
//!   on demand (`POST /ucm/emcc/update`, an administrator over HTTPS), the node asks each EMCC
//!   remote cluster for its version, its first three EM service nodes and the EMCC trunk
//!   services it enabled with up to three nodes each; the answers (or why there was none) go
//!   to the database (`store`), where every node and `ucm emcc status` read them;
//! - the answering side of it, `POST /ucm/emcc/v1/cluster`;
//! - the **home lookup** of a login at an EMCC phone of this cluster by a user who is not at
//!   home here ([`visiting_login`], called by the EM service): each activated remote cluster is
//!   asked (`POST /ucm/emcc/v1/user`) whether it is the user's home, and answers with the
//!   user's home-cluster flag.
//!
//! - the **login across clusters** ([`visiting_login`], [`visiting_logout`] at the visiting
//!   side, `POST /ucm/emcc/v1/login` and `/logout` at the home): see [`cross`].
//!
//! Both run ucm's own inter-cluster API ([`crate::wire::emcc`]; Cisco's is not public) over
//! HTTPS with **mutual** verification against the certificates exchanged by
//! `ucm emcc sync-certs`: the asking node presents its own HTTPS certificate and verifies the
//! answering node's against this cluster's Tomcat-trust store; the answering node accepts the
//! asking node only when its certificate is in its own Tomcat-trust store and comes from one of
//! its remote clusters. Before the exchange the update fails naming the peer that is not
//! trusted.
//!
//! - **call routing** of the EMCC logged-in phones (home side: Figure 18-6's assembled CSS,
//!   the Standard Local Route Group as the EMCC SIP trunk back to the phone's cluster, at the
//!   PSTN Access nodes it told; visiting side: the call named by the phone's device routed by
//!   its device pool): this service tells call control ([`cross::emcc_routing`],
//!   [`crate::cluster::EmccRouting`]), the dial plan and the B2BUA do it.

pub mod check;
pub mod cross;
pub mod feed;
pub mod model;
pub mod store;

pub use cross::{visiting_config, visiting_login, visiting_logout, EmccShared};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::model::{NodeService, Role};
use crate::net::tls::PeerCertificates;
use crate::node::http::Listener;
use crate::node::NodeState;
use crate::wire::emcc::{self as api, ClusterInfo, ClusterQuery, UserInfo, UserQuery};
use model::{Emcc, RemoteCluster, TrunkService};
use store::{RemoteClusterRow, RemoteClusters, UpdateOutcome};

/// The trust store the inter-cluster API verifies peers against (Cisco's Tomcat-trust).
pub const TRUST_STORE: &str = "tomcat-trust";
/// How long one remote cluster has to answer an update.
pub const UPDATE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer an update reads.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

use crate::sip::registrar::unix_now;

pub(crate) use crate::node::http::text_response as text;

/// The EMCC part of one node's EM service.
pub struct EmccService {
    pub node: Arc<NodeState>,
    /// The node's own certificate and key, presented as its client certificate.
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// One update at a time on this node (the periodic one and those asked for).
    updating: tokio::sync::Mutex<()>,
}

impl EmccService {
    pub fn new(node: Arc<NodeState>) -> EmccService {
        let identity = match crate::net::tls::load_or_create(&node.data_dir, &node.node.name, &[]) {
            Ok(id) => Some((id.certs, id.key)),
            Err(e) => {
                tracing::error!(error = %e, "EMCC: the node's certificate cannot be read; remote cluster updates will fail");
                None
            }
        };
        EmccService {
            node,
            identity,
            updating: tokio::sync::Mutex::new(()),
        }
    }

    /// This cluster's answer to a remote cluster update.
    pub fn info(&self) -> ClusterInfo {
        let cluster = self.node.cluster();
        let me = &self.node.node;
        let em_service_nodes = cluster
            .nodes
            .iter()
            .filter(|n| n.runs(NodeService::ExtensionMobility))
            .take(api::MAX_NODES)
            .map(|n| {
                if n.name == me.name {
                    self.node.https_base.clone()
                } else {
                    let port = n.ports.https.unwrap_or(crate::node::HTTPS_PORT);
                    format!("https://{}", host_port(&n.address, port))
                }
            })
            .collect();
        let emcc = cluster.section::<Emcc>();
        let mut trunk_services = BTreeMap::new();
        for t in &emcc.trunks {
            let Some(trunk) = cluster.sip_trunks.iter().find(|x| x.name == t.sip_trunk) else {
                continue;
            };
            let group = cluster
                .device_pools
                .iter()
                .find(|p| p.name == trunk.device_pool)
                .map(|p| p.node_group.clone())
                .unwrap_or_default();
            let nodes: Vec<String> = group
                .iter()
                .filter_map(|name| cluster.nodes.iter().find(|n| &n.name == name))
                .filter(|n| n.runs(NodeService::CallProcessing))
                .take(api::MAX_NODES)
                .map(|n| {
                    if n.name == me.name {
                        self.node.sip_host.clone()
                    } else {
                        host_port(&n.address, n.ports.sip.unwrap_or(crate::node::SIP_PORT))
                    }
                })
                .collect();
            for s in &t.services {
                trunk_services.insert(s.as_str().to_string(), nodes.clone());
            }
        }
        ClusterInfo {
            api: api::API.into(),
            cluster: cluster.cluster.id.clone(),
            version: cluster.cluster.version.clone(),
            em_service_nodes,
            trunk_services,
        }
    }

    /// A client that verifies servers against Tomcat-trust only and presents this node's
    /// certificate.
    pub(crate) async fn client(&self) -> Result<reqwest::Client, String> {
        let Some((certs, key)) = &self.identity else {
            return Err("this node's certificate cannot be read (see its log at start)".into());
        };
        let ders = self
            .node
            .store
            .trust_store_ders(TRUST_STORE)
            .await
            .map_err(|e| format!("the trust store cannot be read: {e}"))?;
        let mut roots = rustls::RootCertStore::empty();
        for d in ders {
            // A self-signed node certificate is its own anchor.
            let _ = roots.add(d);
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(crate::net::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs.clone(), key.clone_key())
            .map_err(|e| format!("TLS setup: {e}"))?;
        // Say what it speaks (RFC 7301), as reqwest does with its own TLS: a capture (`ucm pcap
        // verify`) tells this HTTPS from SIP over TLS by it.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            // From the node's own address when it listens on one (clusters on one machine,
            // each node on its loopback address): the peer and a capture see the node.
            .local_address(self.node.https_ip)
            .user_agent(concat!("ucm-emcc/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(UPDATE_TIMEOUT)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))
    }

    /// Asks one remote cluster.
    async fn ask(&self, http: &reqwest::Client, r: &RemoteCluster) -> UpdateOutcome {
        let authority = r.authority();
        let url = format!("https://{authority}{}", api::CLUSTER_PATH);
        let cluster = self.node.cluster();
        let query = ClusterQuery {
            api: api::API.into(),
            cluster: cluster.cluster.id.clone(),
            version: cluster.cluster.version.clone(),
        };
        let who = format!("remote cluster {} at {authority}", r.cluster_id);
        let body = serde_json::to_vec(&query).unwrap_or_default();
        let resp = match http
            .post(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return UpdateOutcome::Failed(describe(&e, &who)),
        };
        let status = resp.status();
        let body = match read_bounded(resp, MAX_ANSWER_BYTES).await {
            Ok(b) => b,
            Err(why) => return UpdateOutcome::Failed(format!("{who}: {why}")),
        };
        let body_text = String::from_utf8_lossy(&body);
        if status == StatusCode::FORBIDDEN {
            return UpdateOutcome::Failed(format!(
                "{who} does not trust this cluster: {}",
                body_text.trim()
            ));
        }
        if !status.is_success() {
            return UpdateOutcome::Failed(format!("{who} answered {status}: {}", body_text.trim()));
        }
        let info: ClusterInfo = match serde_json::from_slice(&body) {
            Ok(i) => i,
            Err(e) => {
                return UpdateOutcome::Failed(format!(
                    "{who} answered something that is not the EMCC cluster information: {e}"
                ))
            }
        };
        if info.api != api::API {
            return UpdateOutcome::Failed(format!("{who} speaks {:?}, not {}", info.api, api::API));
        }
        if info.cluster != r.cluster_id {
            return UpdateOutcome::Failed(format!(
                "{who}: the node there is of cluster {:?}, not {:?} (check the remote cluster's Cluster ID)",
                info.cluster, r.cluster_id
            ));
        }
        let mut trunk_services = info.trunk_services;
        trunk_services.retain(|k, _| {
            k == TrunkService::PstnAccess.as_str() || k == TrunkService::RsvpAgent.as_str()
        });
        for v in trunk_services.values_mut() {
            v.truncate(api::MAX_NODES);
        }
        let mut em_service_nodes = info.em_service_nodes;
        em_service_nodes.truncate(api::MAX_NODES);
        UpdateOutcome::Ok {
            version: info.version,
            em_service_nodes,
            trunk_services,
        }
    }

    /// Updates every remote cluster of the definition now; returns what the database holds
    /// for them afterwards.
    pub async fn update_all(&self) -> Result<Vec<RemoteClusterRow>, crate::store::StoreError> {
        let _one = self.updating.lock().await;
        let cluster = self.node.cluster();
        let emcc = cluster.section::<Emcc>();
        if !emcc.remote_clusters.is_empty() {
            let http = self.client().await;
            for r in &emcc.remote_clusters {
                let outcome = match &http {
                    Ok(http) => self.ask(http, r).await,
                    Err(why) => UpdateOutcome::Failed(why.clone()),
                };
                match &outcome {
                    UpdateOutcome::Ok { version, .. } => tracing::info!(
                        remote = %r.cluster_id,
                        version = %version,
                        "EMCC: remote cluster updated"
                    ),
                    UpdateOutcome::Failed(why) => tracing::warn!(
                        remote = %r.cluster_id,
                        "EMCC: remote cluster update failed: {why}"
                    ),
                }
                self.node
                    .store
                    .record_remote_update(
                        &r.cluster_id,
                        &r.address,
                        &outcome,
                        &self.node.node.name,
                        unix_now(),
                    )
                    .await?;
            }
        }
        // The EMCC SIP trunk reaches each visiting phone's cluster at the nodes it just told.
        cross::sync_home_devices(&self.node).await?;
        let rows = self.node.store.remote_clusters().await?;
        Ok(rows
            .into_iter()
            .filter(|row| {
                emcc.remote_clusters
                    .iter()
                    .any(|r| r.cluster_id == row.cluster_id)
            })
            .collect())
    }

    /// At start, then every `remote_cluster_update_minutes` (read again each time), until
    /// the node stops.
    async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.update_all().await {
                tracing::error!(error = %e, "EMCC: remote cluster update not stored");
            }
            let minutes = self
                .node
                .cluster()
                .section::<Emcc>()
                .remote_cluster_update_minutes
                .clamp(*check::UPDATE_MINUTES.start(), *check::UPDATE_MINUTES.end());
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(u64::from(minutes) * 60)) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Reads at most `max` bytes of a body; more is an error.
pub(crate) async fn read_bounded(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("its answer is larger than {max} bytes"));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| crate::client::describe_error(&e))?
    {
        if out.len() + chunk.len() > max {
            return Err(format!("its answer is larger than {max} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Why a request to a remote cluster failed, naming the peer; an untrusted certificate says
/// what to do about it.
pub(crate) fn describe(e: &reqwest::Error, who: &str) -> String {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut all = Vec::new();
    while let Some(s) = src {
        all.push(s.to_string());
        let inner = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>());
        if let Some(rustls::Error::InvalidCertificate(why)) =
            s.downcast_ref::<rustls::Error>().or(inner)
        {
            return untrusted(who, &format!("{why:?}"));
        }
        src = s.source();
    }
    let all = all.join(": ");
    if let Some(i) = all.find("invalid peer certificate") {
        return untrusted(who, &all[i..]);
    }
    format!("{who}: {}", crate::client::describe_error(e))
}

fn untrusted(who: &str, why: &str) -> String {
    format!(
        "{who} is not trusted: its HTTPS certificate is not in this cluster's Tomcat-trust store ({why}); exchange certificates with ucm emcc sync-certs"
    )
}

/// HTTPS and an administrator, or the refusal.
async fn administrator(
    state: &Arc<NodeState>,
    listener: Option<Extension<Listener>>,
    headers: &HeaderMap,
) -> Result<String, Response> {
    if !matches!(listener, Some(Extension(Listener::Https))) {
        return Err(text(
            StatusCode::FORBIDDEN,
            format!(
                "the remote cluster update is asked for over HTTPS only: {}{}\n",
                state.https_base,
                api::UPDATE_PATH
            ),
        ));
    }
    let user =
        crate::services::authenticate::basic_user(state, headers, "an administrator").await?;
    let admin = state
        .cluster()
        .application_user(&user)
        .is_some_and(|a| a.roles.contains(&Role::Administrator));
    if !admin {
        return Err(text(
            StatusCode::FORBIDDEN,
            format!("{user} is not an application user with the administrator role\n"),
        ));
    }
    Ok(user)
}

/// "Update Remote Cluster Now".
async fn update_handler(
    State(svc): State<Arc<EmccService>>,
    listener: Option<Extension<Listener>>,
    headers: HeaderMap,
) -> Response {
    let user = match administrator(&svc.node, listener, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    tracing::info!(user, "EMCC: remote cluster update asked for");
    match svc.update_all().await {
        Ok(rows) => axum::Json(serde_json::json!({
            "cluster": svc.node.cluster().cluster.id,
            "node": svc.node.node.name,
            "remote_clusters": rows,
        }))
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "EMCC: the database failed");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database cannot be written now; try again\n".into(),
            )
        }
    }
}

/// The inter-cluster API's gate: HTTPS, a client certificate in Tomcat-trust, of a remote
/// cluster. The cluster it belongs to, or the refusal.
pub(crate) async fn remote_peer(
    svc: &EmccService,
    listener: Option<Extension<Listener>>,
    certs: Option<Extension<PeerCertificates>>,
) -> Result<String, Response> {
    let own = svc.node.cluster().cluster.id.clone();
    if !matches!(listener, Some(Extension(Listener::Https))) {
        return Err(text(
            StatusCode::FORBIDDEN,
            "the EMCC inter-cluster API answers over HTTPS only, to a client certificate\n".into(),
        ));
    }
    // No certificate: refused before any work.
    let Some(ee) = certs.as_ref().and_then(|Extension(c)| c.end_entity()) else {
        return Err(text(
            StatusCode::FORBIDDEN,
            format!("no client certificate: cluster {own} answers only the nodes of its EMCC remote clusters, by the HTTPS certificate in its Tomcat-trust store\n"),
        ));
    };
    let sha = crate::wire::certs::fingerprint(ee);
    let rows = svc.node.store.trusted_certificates().await.map_err(|e| {
        tracing::error!(error = %e, "EMCC: the trust store cannot be read");
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the trust store cannot be read now; try again\n".into(),
        )
    })?;
    let Some(row) = rows
        .iter()
        .find(|r| r.trust_store == TRUST_STORE && r.sha256 == sha)
    else {
        return Err(text(
            StatusCode::FORBIDDEN,
            format!("the client certificate (sha256 {sha}) is not in cluster {own}'s Tomcat-trust store; exchange certificates with ucm emcc sync-certs\n"),
        ));
    };
    let remote = svc
        .node
        .cluster()
        .section::<Emcc>()
        .remote_clusters
        .iter()
        .any(|r| r.cluster_id == row.cluster);
    if !remote {
        return Err(text(
            StatusCode::FORBIDDEN,
            format!(
                "cluster {} is not an EMCC remote cluster of cluster {own}\n",
                row.cluster
            ),
        ));
    }
    Ok(row.cluster.clone())
}

/// Reads a query of the inter-cluster API (at most [`api::MAX_BODY_BYTES`]), or the refusal.
pub(crate) async fn read_query<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<T, Response> {
    let too_big = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a query is at most {} bytes\n", api::MAX_BODY_BYTES),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > api::MAX_BODY_BYTES as u64) {
        return Err(too_big());
    }
    let Ok(bytes) = axum::body::to_bytes(body, api::MAX_BODY_BYTES).await else {
        return Err(too_big());
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| text(StatusCode::BAD_REQUEST, format!("not an EMCC query: {e}\n")))
}

/// The query's API and cluster must be the API's and the client certificate's: the refusal
/// when they are not.
pub(crate) fn other_peer(api_name: &str, cluster: &str, peer: &str) -> Option<Response> {
    if api_name != api::API {
        return Some(text(
            StatusCode::BAD_REQUEST,
            format!("this cluster speaks {}, not {api_name:?}\n", api::API),
        ));
    }
    if cluster != peer {
        return Some(text(
            StatusCode::FORBIDDEN,
            format!("the client certificate is cluster {peer}'s, but the query says {cluster:?}\n"),
        ));
    }
    None
}

/// `POST /ucm/emcc/v1/cluster`: a remote cluster update from another cluster.
async fn cluster_handler(
    State(svc): State<Arc<EmccService>>,
    listener: Option<Extension<Listener>>,
    certs: Option<Extension<PeerCertificates>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let peer = match remote_peer(&svc, listener, certs).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let query: ClusterQuery = match read_query(&headers, body).await {
        Ok(q) => q,
        Err(r) => return r,
    };
    if let Some(r) = other_peer(&query.api, &query.cluster, &peer) {
        return r;
    }
    tracing::info!(remote = %peer, version = %query.version, "EMCC: remote cluster update answered");
    axum::Json(svc.info()).into_response()
}

/// `POST /ucm/emcc/v1/user`: another cluster looks for a user's home.
async fn user_handler(
    State(svc): State<Arc<EmccService>>,
    listener: Option<Extension<Listener>>,
    certs: Option<Extension<PeerCertificates>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let peer = match remote_peer(&svc, listener, certs).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let query: UserQuery = match read_query(&headers, body).await {
        Ok(q) => q,
        Err(r) => return r,
    };
    if let Some(r) = other_peer(&query.api, &query.cluster, &peer) {
        return r;
    }
    let cluster = svc.node.cluster();
    let home = cluster
        .end_user(&query.userid)
        .is_some_and(|u| u.home_cluster);
    tracing::info!(remote = %peer, user = %query.userid, home, "EMCC: home lookup answered");
    axum::Json(UserInfo {
        api: api::API.into(),
        cluster: cluster.cluster.id.clone(),
        userid: query.userid,
        home,
    })
    .into_response()
}

/// What the visiting side's home lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HomeLookup {
    /// This remote cluster is the user's home.
    Home(String),
    /// Every remote cluster answered, none is the user's home.
    Nowhere,
    /// No remote cluster is configured.
    NoRemoteCluster,
    /// None said home, and these could not be asked (not activated, unreachable, refused).
    Unanswered(Vec<String>),
}

impl EmccService {
    /// Asks every activated remote cluster (at its EM service nodes, in order, then its
    /// configured address) whether it is `user`'s home.
    pub async fn find_home(&self, user: &str) -> HomeLookup {
        let cluster = self.node.cluster();
        let emcc = cluster.section::<Emcc>();
        if emcc.remote_clusters.is_empty() {
            return HomeLookup::NoRemoteCluster;
        }
        let rows = self.node.store.remote_clusters().await.unwrap_or_default();
        let http = match self.client().await {
            Ok(h) => h,
            Err(why) => {
                tracing::warn!("EMCC: home lookup impossible: {why}");
                return HomeLookup::Unanswered(
                    emcc.remote_clusters
                        .iter()
                        .map(|r| r.cluster_id.clone())
                        .collect(),
                );
            }
        };
        let query = UserQuery {
            api: api::API.into(),
            cluster: cluster.cluster.id.clone(),
            userid: user.to_string(),
        };
        let body = serde_json::to_vec(&query).unwrap_or_default();
        let mut unanswered = Vec::new();
        for r in &emcc.remote_clusters {
            // Cisco: a remote cluster whose last update failed is not activated, and logins
            // to it are unavailable until the next successful update.
            let Some(row) = rows
                .iter()
                .find(|x| x.cluster_id == r.cluster_id && x.remote_activated)
            else {
                unanswered.push(format!("{} (not activated)", r.cluster_id));
                continue;
            };
            let mut bases: Vec<String> = row.em_service_nodes.clone();
            bases.push(format!("https://{}", r.authority()));
            let mut answer = None;
            for base in bases.iter().take(api::MAX_NODES + 1) {
                let sent = http
                    .post(format!("{base}{}", api::USER_PATH))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let resp = match sent {
                    Ok(resp) if resp.status().is_success() => resp,
                    Ok(resp) => {
                        tracing::warn!(remote = %r.cluster_id, %base, status = %resp.status(), "EMCC: home lookup refused");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(remote = %r.cluster_id, %base, "EMCC: home lookup failed: {}", describe(&e, &r.cluster_id));
                        continue;
                    }
                };
                let Ok(bytes) = read_bounded(resp, MAX_ANSWER_BYTES).await else {
                    continue;
                };
                match serde_json::from_slice::<UserInfo>(&bytes) {
                    Ok(info) if info.cluster == r.cluster_id && info.userid == user => {
                        answer = Some(info.home);
                        break;
                    }
                    _ => continue,
                }
            }
            match answer {
                Some(true) => return HomeLookup::Home(r.cluster_id.clone()),
                Some(false) => {}
                None => unanswered.push(r.cluster_id.clone()),
            }
        }
        if unanswered.is_empty() {
            HomeLookup::Nowhere
        } else {
            HomeLookup::Unanswered(unanswered)
        }
    }
}

pub const SERVICE: super::ServiceSpec = super::ServiceSpec {
    flags: &[super::Flag {
        flag: NodeService::ExtensionMobility,
        name: "Extension Mobility Cross Cluster",
        paths: &["/ucm/emcc/"],
    }],
    listeners: &[],
    sections: &[crate::config::SectionSpec::of::<Emcc>()],
    check: Some(check::check),
    model_source: include_str!("model.rs"),
    // The remote cluster updates are in the database, read where needed; the EMCC devices
    // are on the feed (every node of either side serves them).
    feed: Some(feed::FEED),
    status: &[],
    start: start_service,
};

fn start_service(s: super::Start) -> super::StartFuture {
    use axum::routing::post;
    Box::pin(async move {
        let svc = Arc::new(EmccService::new(s.node.clone()));
        let routes = axum::Router::new()
            .route(api::CLUSTER_PATH, post(cluster_handler))
            .route(api::UPDATE_PATH, post(update_handler))
            .route(api::USER_PATH, post(user_handler))
            .route(api::LOGIN_PATH, post(cross::login_handler))
            .route(api::LOGOUT_PATH, post(cross::logout_handler))
            .route(api::PIN_PATH, post(cross::logout_pin_handler))
            .with_state(svc.clone());
        // What the database holds of EMCC logins, at start: the home's run-time devices and
        // the visiting side's redirections.
        if let Err(e) = cross::load(&s.node).await {
            tracing::error!(error = %e, "EMCC: logged-in devices not loaded");
        }
        Ok(super::Parts {
            routes,
            tasks: vec![
                Box::pin(svc.run(s.stop.clone())),
                Box::pin(cross::run_pending_logouts(s.node.clone(), s.stop)),
            ],
        })
    })
}
