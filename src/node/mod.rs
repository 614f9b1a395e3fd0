//! The node core: what every running part of one node shares, below the services and call
//! control and above the store. `server` builds it, the services and call control read it;
//! nothing here knows a service.
//!
//! [`NodeState`] holds the store handle, the cluster snapshot, the node's identity and the URLs
//! phones should use, its TLS identity, the metrics, call control's handles (registrar and the
//! call-control API), the change feed with the services' hooks, a per-node slot for what a
//! service shares between its parts ([`NodeState::shared`]) and the shutdown signal.

pub mod feed;
pub mod http;
pub mod leases;
pub mod live;
pub mod metrics;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::cluster::{Cluster, ClusterHandle};
use crate::config::model::{ClusterDefinition, Node, NodeService};
use crate::net::tls;
use crate::store::Store;

/// Standard Unified CM ports.
pub const HTTP_PORT: u16 = 8080;
pub const HTTPS_PORT: u16 = 8443;
pub const TFTP_HTTP_PORT: u16 = 6970;
pub const TFTP_PORT: u16 = 69;
pub const SIP_PORT: u16 = 5060;
pub const SIPS_PORT: u16 = 5061;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("node {0:?} is not in the cluster definition")]
    UnknownNode(String),
}

/// Where this node's shared listeners ended up (port 0 becomes a real port): the URLs handed
/// to phones are made from these.
#[derive(Debug, Clone, Copy)]
pub struct BoundAddrs {
    pub http: SocketAddr,
    pub https: SocketAddr,
    /// SIP over UDP and TCP; `None` on a node without call processing.
    pub sip: Option<SocketAddr>,
    pub sips: Option<SocketAddr>,
}

/// The `cluster_meta` key of the secret that signs SIP dialog handles.
pub const DIALOG_SECRET: &str = "sip_dialog_secret";

/// What every part of a running node shares.
pub struct NodeState {
    pub store: Store,
    cluster: Arc<ClusterHandle>,
    pub node: Node,
    pub metrics: metrics::Metrics,
    pub started: Instant,
    /// `http://host:port` and `https://host:port` as phones should use them.
    pub http_base: String,
    pub https_base: String,
    /// The address the HTTPS listener is bound to, unless a wildcard: the node's clients to
    /// other clusters speak from it (as a node with an address of its own would).
    pub https_ip: Option<IpAddr>,
    pub data_dir: PathBuf,
    pub tls: Arc<rustls::ServerConfig>,
    pub sip_tls: Arc<rustls::ServerConfig>,
    pub registrar: Arc<crate::sip::registrar::Registrar>,
    /// `host:port` of this node's SIP service as phones and peers should reach it.
    pub sip_host: String,
    /// `host:port` of this node's SIP over TLS service (Via and Contact on TLS connections).
    pub sips_host: String,
    /// Call control for the services: third-party calls, ending calls, line-state events.
    pub call_control: Arc<crate::sip::CallControl>,
    /// Recent successful password checks (the authentication URL is called on every push).
    pub password_cache: crate::auth::VerifiedCache,
    /// Bounds on the work secret checks cost: per-source throttle, failure cache, verification slots.
    pub secret_guards: crate::auth::SecretGuards,
    /// Secrets this node's own services present for their application users, by user (the
    /// Paging Server's push credential): checked before the database.
    own_secrets: RwLock<std::collections::HashMap<String, String>>,
    stop: watch::Sender<bool>,
    /// The change feed from the other nodes (and this node's heartbeat figures).
    pub feed: feed::Feed,
    /// Which node runs each service the cluster runs once (see [`leases`]).
    pub leases: leases::Leases,
    /// What runs at this node now (running pages), for the operator's view.
    pub live: live::Live,
    /// The registrar's database writer; awaited at shutdown so nothing queued is lost.
    registrar_writer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The cluster's secret for SIP dialog handles (PostgreSQL only: see
    /// `sip::b2bua::handoff`).
    pub dialog_secret: Option<[u8; 32]>,
    /// The nodes' SIP certificates (PEM), which the intra-cluster trunk over TLS trusts.
    pub node_certs: Arc<crate::sip::NodeCerts>,
    /// What services share between their parts on this node, one value per type.
    shared: std::sync::Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl NodeState {
    /// Picks this node from the definition, makes or loads the TLS identity, works out the URLs
    /// phones should use and loads the runtime state (registrations).
    pub async fn start(
        store: Store,
        def: ClusterDefinition,
        node_name: Option<&str>,
        addrs: BoundAddrs,
        data_dir: PathBuf,
    ) -> Result<Arc<NodeState>, NodeError> {
        let node = this_node(&def, node_name)?;
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
        let http_base = format!("http://{}", host_for(Some(addrs.http)));
        let https_base = format!("https://{}", host_for(Some(addrs.https)));
        let sip_host = host_for(addrs.sip);
        let sips_host = host_for(addrs.sips);
        let mut ips: Vec<IpAddr> = Vec::new();
        if let Ok(ip) = node.address.parse() {
            ips.push(ip);
        }
        if !addrs.https.ip().is_unspecified() {
            ips.push(addrs.https.ip());
        }
        let identity = tls::load_or_create(&data_dir, &node.name, &ips)?;
        // What this node presents, for the cluster's certificate export: one identity serves
        // HTTPS (Cisco's Tomcat certificate) and SIP over TLS (its CallManager certificate).
        if let Some(leaf) = identity.certs.first() {
            let entry = crate::wire::certs::CertEntry {
                cluster: String::new(),
                node: node.name.clone(),
                purpose: crate::wire::certs::Purpose::Tomcat,
                der: leaf.to_vec(),
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            for purpose in [
                crate::wire::certs::Purpose::Tomcat,
                crate::wire::certs::Purpose::CallManager,
            ] {
                store
                    .save_node_certificate(
                        &node.name,
                        purpose.as_str(),
                        &entry.sha256(),
                        &entry.pem(),
                        now,
                    )
                    .await?;
            }
        }
        // HTTPS asks for a client certificate without requiring one: the EMCC inter-cluster
        // API verifies the other cluster's node by it (mutual TLS); phones send none.
        let tls_cfg = tls::server_config_asking_client_certs(&identity, &[b"http/1.1"])?;
        let sip_tls = tls::server_config(&identity, &[])?;
        let (registrar, writer) =
            crate::sip::registrar::Registrar::load(store.clone(), &node.name).await?;
        let (stop, _) = watch::channel(false);
        let digest = store.definition_digest().await?;
        let dialog_secret = match store.backend() {
            crate::store::Backend::Postgres => Some(store.cluster_secret(DIALOG_SECRET).await?),
            crate::store::Backend::Sqlite => None,
        };
        Ok(Arc::new(NodeState {
            dialog_secret,
            node_certs: Default::default(),
            feed: feed::Feed::new(digest),
            leases: Default::default(),
            live: live::Live::default(),
            password_cache: crate::auth::VerifiedCache::new(Duration::from_secs(300)),
            secret_guards: Default::default(),
            call_control: Arc::new(crate::sip::CallControl::new()),
            sip_host,
            sips_host,
            own_secrets: Default::default(),
            stop,
            registrar,
            registrar_writer: std::sync::Mutex::new(Some(writer)),
            shared: Default::default(),
            store,
            cluster: Arc::new(ClusterHandle::new(def)),
            node,
            metrics: metrics::Metrics::default(),
            started: Instant::now(),
            http_base,
            https_base,
            https_ip: Some(addrs.https.ip()).filter(|ip| !ip.is_unspecified()),
            data_dir,
            tls: tls_cfg,
            sip_tls,
        }))
    }

    /// The current cluster definition (a cheap snapshot; writers swap the whole Arc).
    pub fn cluster(&self) -> Arc<Cluster> {
        self.cluster.get()
    }

    pub fn set_cluster(&self, def: ClusterDefinition) {
        self.cluster.set(def);
    }

    /// Replaces the devices that exist at run time only (EMCC devices): see
    /// [`ClusterHandle::set_extra_devices`], with what call control knows of EMCC.
    pub fn set_extra_devices(
        &self,
        devices: Vec<crate::config::model::Device>,
        routing: crate::cluster::EmccRouting,
    ) {
        self.cluster.set_extra_devices(devices, routing);
    }

    /// What call control's SIP shell needs of this node.
    pub fn sip_node(&self) -> crate::sip::SipNode {
        crate::sip::SipNode {
            cluster: self.cluster.clone(),
            registrar: self.registrar.clone(),
            call_control: self.call_control.clone(),
            sip_host: self.sip_host.clone(),
            sips_host: self.sips_host.clone(),
            data_dir: self.data_dir.clone(),
            metrics: self.metrics.sip.clone(),
            stop: self.stopping(),
            dialog_secret: self.dialog_secret,
            node_certs: self.node_certs.clone(),
        }
    }

    /// This node's one value of type `T`, made on first use: how a service's feed hook (which
    /// runs on every node) and the service's own tasks share state without the node core
    /// knowing it.
    pub fn shared<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        let any = {
            let mut g = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            g.entry(TypeId::of::<T>())
                .or_insert_with(|| Arc::new(T::default()))
                .clone()
        };
        // The entry of `T`'s type id holds a `T`: the fallback is never taken.
        any.downcast::<T>().unwrap_or_default()
    }

    /// Whether this node runs `service` (its `nodes[].services`).
    pub fn runs(&self, service: NodeService) -> bool {
        self.node.runs(service)
    }

    /// A receiver that changes when the node shuts down.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Tells every task of the node to finish.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Replaces `{http}` / `{https}` in a configured URL with this node's base URLs.
    pub fn expand_url(&self, url: &str) -> String {
        url.replace("{https}", &self.https_base)
            .replace("{http}", &self.http_base)
    }

    /// Flushes the registrar's queued writes and closes the database (after every task ended).
    pub async fn close(&self, grace: Duration) {
        // The registrar's writer ends once every sender is gone; the state still holds one, so
        // close the queue and wait briefly for it to drain instead.
        let writer = match self.registrar_writer.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(w) = writer {
            self.registrar.close();
            let _ = tokio::time::timeout(grace, w).await;
        }
        self.store.close().await;
    }
}

/// The node `name` of the definition, or its first node (a definition with none is one node
/// called `ucm` at 127.0.0.1).
pub fn this_node(def: &ClusterDefinition, name: Option<&str>) -> Result<Node, NodeError> {
    match name {
        Some(n) => def
            .nodes
            .iter()
            .find(|x| x.name == n)
            .cloned()
            .ok_or_else(|| NodeError::UnknownNode(n.to_string())),
        None => Ok(def.nodes.first().cloned().unwrap_or_else(|| Node {
            name: "ucm".into(),
            address: "127.0.0.1".into(),
            services: NodeService::all(),
            bind: None,
            ports: Default::default(),
            sip_transport: Default::default(),
        })),
    }
}

fn bracket(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.to_string(),
    }
}

impl NodeState {
    /// Records the secret one of this node's services presents for `user` (its hash is stored
    /// in the database by the service, so every node can check it).
    pub fn set_own_service_secret(&self, user: &str, secret: &str) {
        let mut g = self.own_secrets.write().unwrap_or_else(|p| p.into_inner());
        g.insert(user.to_string(), sha256_hex(secret));
    }

    /// Whether `password` is the secret a node's service presents for `user`: this node's own
    /// first, another node's through the database, so any node's authentication URL answers
    /// for any node's service.
    pub async fn is_service_secret(&self, user: &str, password: &str) -> bool {
        if password.is_empty() {
            return false;
        }
        let hash = sha256_hex(password);
        let own = {
            let g = self.own_secrets.read().unwrap_or_else(|p| p.into_inner());
            g.get(user).cloned()
        };
        if own.is_some_and(|o| same(&o, &hash)) {
            return true;
        }
        match self.store.service_credential(user).await {
            Ok(Some(stored)) => same(&stored, &hash),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "reading a service credential failed");
                false
            }
        }
    }
}

pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// Equal in time independent of where they differ (the secret's hash is compared).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_in_full() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
