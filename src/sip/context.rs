//! What the SIP shell needs of the node it runs in, handed over explicitly so call control
//! depends on no node or service: the cluster, the registrar's table, the services' handle,
//! the addresses it is reached at, its counters and the shutdown signal.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use super::registrar::Registrar;
use super::CallControl;
use crate::cluster::{Cluster, ClusterHandle};

pub struct SipNode {
    pub cluster: Arc<ClusterHandle>,
    pub registrar: Arc<Registrar>,
    pub call_control: Arc<CallControl>,
    /// `host:port` of this node's SIP service as phones and peers should reach it.
    pub sip_host: String,
    /// `host:port` of its SIP over TLS service (Via and Contact on TLS connections).
    pub sips_host: String,
    /// Where the node's certificate is (trusted for TLS trunks by default).
    pub data_dir: PathBuf,
    pub metrics: Arc<SipMetrics>,
    pub stop: watch::Receiver<bool>,
    /// The cluster's secret for dialog handles (PostgreSQL clusters; see
    /// `sip::b2bua::handoff`), none on a single node.
    pub dialog_secret: Option<[u8; 32]>,
    /// The cluster's nodes' SIP certificates, for the intra-cluster trunk over TLS.
    pub node_certs: Arc<NodeCerts>,
}

/// The certificates (PEM) the nodes of the cluster present for SIP over TLS, as the node core
/// last read them from the database, with a version that moves when they change.
#[derive(Default)]
pub struct NodeCerts(std::sync::RwLock<(u64, Vec<String>)>);

impl NodeCerts {
    /// Replaces the certificates (sorted by the caller); the version moves if they changed
    /// (and says so).
    pub fn set(&self, pems: Vec<String>) -> bool {
        let mut g = self.0.write().unwrap_or_else(|p| p.into_inner());
        if g.1 == pems {
            return false;
        }
        g.0 += 1;
        g.1 = pems;
        true
    }

    pub fn get(&self) -> (u64, Vec<String>) {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl SipNode {
    pub fn cluster(&self) -> Arc<Cluster> {
        self.cluster.get()
    }

    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }
}

/// SIP counters (exposed at `/metrics` by the node). Plain atomics: every message pays one
/// relaxed increment.
#[derive(Default)]
pub struct SipMetrics {
    /// TCP and TLS connections closed at once: a listener's or a source's cap was reached.
    pub sip_connections_refused: AtomicU64,
    /// TCP and TLS connections closed for idleness or a message not completed in time.
    pub sip_connections_timed_out: AtomicU64,
    pub sip_udp_received: AtomicU64,
    pub sip_tcp_received: AtomicU64,
    pub sip_tls_received: AtomicU64,
    pub sip_responses_sent: AtomicU64,
    pub sip_parse_errors: AtomicU64,
    pub sip_tcp_connections: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
}

pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}
