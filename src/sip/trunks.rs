//! The I/O side of SIP trunks: resolving destination names and the TLS client settings of
//! `transport: tls` trunks. The B2BUA core does no I/O; it is handed the resolved table
//! ([`b2bua::Resolved`]) and hunts through the addresses in order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::ServerName;

use super::b2bua::{self, Resolved};
use crate::cluster::Cluster;
use crate::config::model::SipTransport;

/// Names resolved per round at most; a cluster with more gets the rest reported as
/// unresolved (a bound on the work one refresh does).
pub const MAX_NAMES: usize = 256;
/// Addresses kept per name: each is an attempt with its own Timer B over UDP.
pub const MAX_ADDRS_PER_NAME: usize = 8;
/// How long one name may take to resolve.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// How often names are resolved again while the cluster stays the same.
pub const REFRESH: Duration = Duration::from_secs(60);

/// How to reach the TLS peer at one address: the name its certificate must carry and the
/// client configuration (trust) of its trunk, or why there is none.
#[derive(Clone)]
pub struct TlsTarget {
    pub trunk: String,
    pub server_name: Result<ServerName<'static>, String>,
    pub config: Result<Arc<rustls::ClientConfig>, String>,
}

/// One resolution of every trunk: the core's table and the TLS targets by address.
#[derive(Clone, Default)]
pub struct TrunkTable {
    pub resolved: Arc<Resolved>,
    pub tls: Arc<HashMap<SocketAddr, TlsTarget>>,
}

/// The host part of a `host:port` destination, without IPv6 brackets.
pub fn host_of(dest: &str) -> &str {
    dest.rsplit_once(':')
        .map_or(dest, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
}

/// Resolves every name among the trunks' destinations (at most [`MAX_NAMES`], each within
/// [`LOOKUP_TIMEOUT`], all at once) and builds the TLS targets. `node_cert` is this node's
/// certificate file, trusted by TLS trunks without `tls_ca`.
/// `node_certs`: the cluster's nodes' certificates (PEM), trusted for the intra-cluster
/// trunk to nodes reached over TLS (`nodes[].sip_transport: tls`).
pub async fn resolve(cluster: &Cluster, node_cert: &Path, node_certs: &[String]) -> TrunkTable {
    let mut names: Vec<String> = cluster
        .sip_trunks
        .iter()
        .flat_map(|t| t.destinations.iter())
        .filter(|d| d.parse::<SocketAddr>().is_err())
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    let mut resolved = Resolved::new();
    let mut lookups = tokio::task::JoinSet::new();
    for (i, name) in names.into_iter().enumerate() {
        if i >= MAX_NAMES {
            resolved.insert(
                name,
                Err(format!("more than {MAX_NAMES} trunk names; not resolved")),
            );
            continue;
        }
        lookups.spawn(async move {
            let r = match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host(&name)).await
            {
                Ok(Ok(addrs)) => {
                    let mut out: Vec<SocketAddr> = Vec::new();
                    for a in addrs {
                        if !out.contains(&a) {
                            out.push(a);
                        }
                        if out.len() == MAX_ADDRS_PER_NAME {
                            break;
                        }
                    }
                    Ok(out)
                }
                Ok(Err(e)) => Err(format!("cannot resolve {name}: {e}")),
                Err(_) => Err(format!(
                    "cannot resolve {name}: no answer within {} s",
                    LOOKUP_TIMEOUT.as_secs()
                )),
            };
            (name, r)
        });
    }
    while let Some(j) = lookups.join_next().await {
        if let Ok((name, r)) = j {
            resolved.insert(name, r);
        }
    }
    let mut tls = tls_targets(cluster, &resolved, node_cert).await;
    node_tls_targets(cluster, node_certs, &mut tls);
    TrunkTable {
        resolved: Arc::new(resolved),
        tls: Arc::new(tls),
    }
}

async fn tls_targets(
    cluster: &Cluster,
    resolved: &Resolved,
    node_cert: &Path,
) -> HashMap<SocketAddr, TlsTarget> {
    let mut out = HashMap::new();
    for t in cluster
        .sip_trunks
        .iter()
        .filter(|t| t.transport == SipTransport::Tls)
    {
        let config = client_config(t.tls_ca.as_deref(), node_cert).await;
        if let Err(e) = &config {
            tracing::warn!(trunk = %t.name, error = %e, "TLS trunk has no usable trust; its calls fail over");
        }
        for d in &t.destinations {
            let Ok(addrs) = b2bua::destination_addrs(resolved, d) else {
                continue;
            };
            let name = t.tls_server_name.as_deref().unwrap_or(host_of(d));
            let server_name = ServerName::try_from(name.to_string())
                .map_err(|e| format!("{name:?} is not a TLS server name: {e}"));
            for a in addrs {
                // The first trunk naming an address decides how it is reached.
                out.entry(a).or_insert_with(|| TlsTarget {
                    trunk: t.name.clone(),
                    server_name: server_name.clone(),
                    config: config.clone(),
                });
            }
        }
    }
    out
}

/// The intra-cluster trunk's TLS targets: each node reached over TLS, verified against the
/// certificates the cluster's nodes stored (and nothing else), by its address.
fn node_tls_targets(
    cluster: &Cluster,
    node_certs: &[String],
    out: &mut HashMap<SocketAddr, TlsTarget>,
) {
    let nodes: Vec<_> = cluster
        .nodes
        .iter()
        .filter(|n| n.sip_transport == SipTransport::Tls)
        .collect();
    if nodes.is_empty() {
        return;
    }
    let mut roots = rustls::RootCertStore::empty();
    for pem in node_certs {
        for cert in rustls_pemfile::certs(&mut pem.as_bytes()).flatten() {
            let _ = roots.add(cert);
        }
    }
    let config = if roots.is_empty() {
        Err("no node certificate is stored yet".to_string())
    } else {
        rustls::ClientConfig::builder_with_provider(crate::net::tls::provider())
            .with_safe_default_protocol_versions()
            .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
            .map_err(|e| e.to_string())
    };
    for n in nodes {
        let Ok(peer) = b2bua::intra::node_peer(n) else {
            continue;
        };
        let host = n.address.trim_matches(['[', ']']).to_string();
        out.insert(
            peer.addr,
            TlsTarget {
                trunk: format!("intra-cluster trunk to {}", n.name),
                server_name: ServerName::try_from(host.clone())
                    .map_err(|e| format!("{host:?} is not a TLS server name: {e}")),
                config: config.clone(),
            },
        );
    }
}

/// The system's trust store, read once (it does not change while the node runs).
fn system_roots() -> &'static [rustls::pki_types::CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<rustls::pki_types::CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// A client configuration trusting the trunk's `tls_ca`, or when it has none the system's
/// trust store and this node's own certificate (so a trunk to a peer presenting the node's
/// self-signed certificate, such as the node itself or a copy of it, works without setup; any
/// other self-signed peer needs `tls_ca`).
async fn client_config(
    tls_ca: Option<&str>,
    node_cert: &Path,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = match tls_ca {
        Some(ca) => {
            let ca = ca.to_string();
            tokio::task::spawn_blocking(move || crate::net::tls::read_ca_file(Path::new(&ca)))
                .await
                .map_err(|e| e.to_string())??
        }
        None => {
            let node_cert = node_cert.to_path_buf();
            tokio::task::spawn_blocking(move || {
                let mut roots = rustls::RootCertStore::empty();
                for c in system_roots() {
                    let _ = roots.add(c.clone());
                }
                // Missing or unreadable: the system store alone is still trust.
                if let Ok(own) = crate::net::tls::read_ca_file(&node_cert) {
                    roots.extend(own.roots);
                }
                roots
            })
            .await
            .map_err(|e| e.to_string())?
        }
    };
    let cfg = rustls::ClientConfig::builder_with_provider(crate::net::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without `tls_ca` a trunk trusts this node's own (self-signed) certificate; with a
    /// `tls_ca` that did not sign it, the same peer is refused.
    #[tokio::test]
    async fn default_trust_takes_the_node_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let id = crate::net::tls::load_or_create(dir.path(), "n1", &[]).unwrap();
        let server = crate::net::tls::server_config(&id, &[]).unwrap();
        let node_cert = dir.path().join(crate::net::tls::CERT_FILE);
        let handshake = |client: Arc<rustls::ClientConfig>| {
            let server = server.clone();
            async move {
                let (a, b) = tokio::io::duplex(64 * 1024);
                let acceptor = tokio_rustls::TlsAcceptor::from(server);
                let srv = tokio::spawn(async move { acceptor.accept(b).await.map(|_| ()) });
                let name = ServerName::try_from("localhost").unwrap();
                let r = tokio_rustls::TlsConnector::from(client)
                    .connect(name, a)
                    .await
                    .map(|_| ());
                let _ = srv.await;
                r
            }
        };
        let default = client_config(None, &node_cert).await.unwrap();
        handshake(default)
            .await
            .expect("the node's own certificate is trusted");
        // Another node's certificate as the only CA: refused.
        let other = tempfile::tempdir().unwrap();
        crate::net::tls::load_or_create(other.path(), "n2", &[]).unwrap();
        let other_ca = other.path().join(crate::net::tls::CERT_FILE);
        let strict = client_config(other_ca.to_str(), &node_cert).await.unwrap();
        let err = handshake(strict).await.unwrap_err();
        assert!(err.to_string().contains("certificate"), "{err}");
    }

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("gw.example.com:5061"), "gw.example.com");
        assert_eq!(host_of("[::1]:5061"), "::1");
        assert_eq!(host_of("127.0.0.1:5060"), "127.0.0.1");
    }
}
