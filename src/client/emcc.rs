//! `ucm emcc sync-certs`: the certificate exchange Extension Mobility Cross Cluster needs,
//! done the way Cisco's Bulk Certificate Management does it, against ucm clusters:
//!
//! 1. **Export**: every cluster's certificates (each node's HTTPS and call-control
//!    certificate, `GET /ucm/certificates`) are written to the sFTP directory as
//!    `<cluster id>.pem`.
//! 2. **Consolidate**: every export in the directory (also of clusters not named in this run,
//!    as Cisco consolidates every file there) is merged into `consolidated.pem`.
//! 3. **Import**: each cluster imports the consolidated bundle into its trust stores
//!    (`POST /ucm/trust`).
//!
//! `check` changes nothing: it reports every cluster whose exchange is stale (its certificates
//! differ from its export or from the consolidated bundle, a node was added, a certificate
//! renewed, or its trust stores lack another cluster's current certificates).

use std::collections::{BTreeMap, BTreeSet};

use super::sftp::{Sftp, SftpError, SftpOptions, SftpUrl};
use super::{describe_error, http_client, ClientOptions};
use crate::wire::certs::{self, CertEntry};

/// The consolidated bundle's file name on the sFTP server.
pub const CONSOLIDATED: &str = "consolidated.pem";

/// Who does the exchange.
pub struct SyncOptions {
    /// The clusters' HTTPS base URLs.
    pub clusters: Vec<String>,
    pub sftp: SftpUrl,
    pub sftp_options: SftpOptions,
    pub client: ClientOptions,
    /// An application user with the administrator role on every cluster.
    pub user: String,
    pub password: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Sftp(#[from] SftpError),
    /// A cluster could not be reached or answered an error.
    #[error("cluster {url}: {reason}")]
    Cluster { url: String, reason: String },
    /// A cluster refused the administrator's credentials.
    #[error("cluster {url}: {reason}")]
    Refused { url: String, reason: String },
    /// A file on the sFTP server is not a bundle.
    #[error("sftp {file}: {reason}")]
    BadFile { file: String, reason: String },
    #[error("{0}")]
    Usage(String),
}

/// What happened at one cluster.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ClusterOutcome {
    pub url: String,
    pub cluster: String,
    /// Its certificates exported.
    pub exported: usize,
    /// The import's counts (sync).
    pub added: usize,
    pub unchanged: usize,
    pub removed: usize,
    /// Why it is stale (check); empty when it is current.
    pub stale: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SyncReport {
    pub sftp: String,
    pub clusters: Vec<ClusterOutcome>,
    /// Clusters in the consolidated bundle, with how many certificates each.
    pub consolidated: BTreeMap<String, usize>,
}

impl SyncReport {
    pub fn stale(&self) -> bool {
        self.clusters.iter().any(|c| !c.stale.is_empty())
    }
}

struct Peer {
    url: String,
    http: reqwest::Client,
}

fn base(url: &str) -> Result<String, SyncError> {
    let u = url.trim_end_matches('/');
    if !u.starts_with("https://") {
        return Err(SyncError::Usage(format!(
            "cluster {url:?}: name a cluster by its HTTPS base URL (https://host:8443); certificates are not exchanged in clear"
        )));
    }
    Ok(u.to_string())
}

impl Peer {
    async fn get(&self, path: &str, o: &SyncOptions) -> Result<String, SyncError> {
        let url = format!("{}{path}", self.url);
        let r = self
            .http
            .get(&url)
            .basic_auth(&o.user, Some(&o.password))
            .send()
            .await
            .map_err(|e| SyncError::Cluster {
                url: self.url.clone(),
                reason: describe_error(&e),
            })?;
        self.body(r).await
    }

    async fn body(&self, r: reqwest::Response) -> Result<String, SyncError> {
        let status = r.status();
        let text = r.text().await.map_err(|e| SyncError::Cluster {
            url: self.url.clone(),
            reason: describe_error(&e),
        })?;
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(SyncError::Refused {
                url: self.url.clone(),
                reason: format!("{status}: {}", text.trim()),
            });
        }
        if !status.is_success() {
            return Err(SyncError::Cluster {
                url: self.url.clone(),
                reason: format!("{status}: {}", text.trim()),
            });
        }
        Ok(text)
    }

    /// The cluster's id and its trust stores' (store, sha256, cluster).
    async fn trust(
        &self,
        o: &SyncOptions,
    ) -> Result<(String, BTreeSet<(String, String, String)>), SyncError> {
        let text = self.get(certs::TRUST_PATH, o).await?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| SyncError::Cluster {
            url: self.url.clone(),
            reason: format!("its trust stores are not JSON: {e}"),
        })?;
        let id = v["cluster"].as_str().unwrap_or_default().to_string();
        let set = v["certificates"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|c| {
                (
                    c["trust_store"].as_str().unwrap_or_default().to_string(),
                    c["sha256"].as_str().unwrap_or_default().to_string(),
                    c["cluster"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        Ok((id, set))
    }

    async fn export(&self, o: &SyncOptions) -> Result<Vec<CertEntry>, SyncError> {
        let text = self.get(certs::CERTIFICATES_PATH, o).await?;
        certs::parse_bundle(&text).map_err(|e| SyncError::Cluster {
            url: self.url.clone(),
            reason: format!("its export is not a bundle: {e}"),
        })
    }

    async fn import(&self, bundle: &str, o: &SyncOptions) -> Result<serde_json::Value, SyncError> {
        let url = format!("{}{}", self.url, certs::TRUST_PATH);
        let r = self
            .http
            .post(&url)
            .basic_auth(&o.user, Some(&o.password))
            .header("Content-Type", "application/x-pem-file")
            .body(bundle.to_string())
            .send()
            .await
            .map_err(|e| SyncError::Cluster {
                url: self.url.clone(),
                reason: describe_error(&e),
            })?;
        let text = self.body(r).await?;
        serde_json::from_str(&text).map_err(|e| SyncError::Cluster {
            url: self.url.clone(),
            reason: format!("its import answer is not JSON: {e}"),
        })
    }
}

fn peers(o: &SyncOptions) -> Result<Vec<Peer>, SyncError> {
    if o.clusters.is_empty() {
        return Err(SyncError::Usage(
            "name at least one cluster (--cluster URL)".into(),
        ));
    }
    let http = http_client(&o.client).map_err(|e| SyncError::Usage(e.to_string()))?;
    let mut out: Vec<Peer> = Vec::new();
    for c in &o.clusters {
        let url = base(c)?;
        if out.iter().any(|p| p.url == url) {
            return Err(SyncError::Usage(format!("cluster {url} is named twice")));
        }
        out.push(Peer {
            url,
            http: http.clone(),
        });
    }
    Ok(out)
}

fn sorted(mut v: Vec<CertEntry>) -> Vec<CertEntry> {
    v.sort_by(|a, b| (&a.cluster, &a.node, a.purpose).cmp(&(&b.cluster, &b.node, b.purpose)));
    v.dedup_by(|a, b| a.cluster == b.cluster && a.node == b.node && a.purpose == b.purpose);
    v
}

/// An export file's name for a cluster id (ids are names: letters, digits, `-_.`).
fn export_file(cluster: &str) -> String {
    format!("{cluster}.pem")
}

/// Reads every export in the directory (not the consolidated bundle); a file that is not a
/// bundle, or holds another cluster's certificates than its name says, is an error naming it.
async fn read_exports(sftp: &Sftp) -> Result<Vec<CertEntry>, SyncError> {
    let mut all = Vec::new();
    for name in sftp.list().await? {
        let Some(id) = name.strip_suffix(".pem") else {
            continue;
        };
        if name == CONSOLIDATED {
            continue;
        }
        let Some(bytes) = sftp.read(&name).await? else {
            continue;
        };
        let text = String::from_utf8(bytes).map_err(|_| SyncError::BadFile {
            file: sftp.url.file(&name),
            reason: "not UTF-8 text".into(),
        })?;
        let entries = certs::parse_bundle(&text).map_err(|e| SyncError::BadFile {
            file: sftp.url.file(&name),
            reason: e.to_string(),
        })?;
        if let Some(other) = entries.iter().find(|e| e.cluster != id) {
            return Err(SyncError::BadFile {
                file: sftp.url.file(&name),
                reason: format!(
                    "holds a certificate of cluster {} in the export of {id}",
                    other.cluster
                ),
            });
        }
        all.extend(entries);
    }
    Ok(sorted(all))
}

/// Export, consolidate, import.
pub async fn sync(o: &SyncOptions) -> Result<SyncReport, SyncError> {
    let peers = peers(o)?;
    let sftp = Sftp::connect(&o.sftp, &o.sftp_options).await?;
    let mut report = SyncReport {
        sftp: o.sftp.to_string(),
        ..Default::default()
    };
    // Export: everything is read before anything is written, so a refused cluster leaves the
    // directory as it was.
    let mut exports = Vec::new();
    for p in &peers {
        let (id, _) = p.trust(o).await?;
        let entries = p.export(o).await?;
        if let Some(e) = entries.iter().find(|e| e.cluster != id) {
            return Err(SyncError::Cluster {
                url: p.url.clone(),
                reason: format!("its export names cluster {} but it is {id}", e.cluster),
            });
        }
        if exports
            .iter()
            .any(|(_, other, _): &(String, String, Vec<CertEntry>)| *other == id)
        {
            return Err(SyncError::Usage(format!(
                "two of the clusters named have the same cluster id {id}"
            )));
        }
        exports.push((p.url.clone(), id, sorted(entries)));
    }
    for (url, id, entries) in &exports {
        sftp.write(&export_file(id), certs::write_bundle(entries).as_bytes())
            .await?;
        report.clusters.push(ClusterOutcome {
            url: url.clone(),
            cluster: id.clone(),
            exported: entries.len(),
            ..Default::default()
        });
    }
    // Consolidate every export there.
    let all = read_exports(&sftp).await?;
    let bundle = certs::write_bundle(&all);
    sftp.write(CONSOLIDATED, bundle.as_bytes()).await?;
    for e in &all {
        *report.consolidated.entry(e.cluster.clone()).or_default() += 1;
    }
    sftp.close().await;
    // Import everywhere.
    for (p, outcome) in peers.iter().zip(report.clusters.iter_mut()) {
        let v = p.import(&bundle, o).await?;
        outcome.added = v["added"].as_u64().unwrap_or(0) as usize;
        outcome.unchanged = v["unchanged"].as_u64().unwrap_or(0) as usize;
        outcome.removed = v["removed"].as_u64().unwrap_or(0) as usize;
    }
    Ok(report)
}

/// What each cluster should trust, given the current certificates.
fn expected_trust(current: &[CertEntry], own: &str) -> BTreeSet<(String, String, String)> {
    current
        .iter()
        .filter(|e| e.cluster != own)
        .flat_map(|e| {
            e.purpose
                .trust_stores()
                .iter()
                .map(move |s| (s.to_string(), e.sha256(), e.cluster.clone()))
        })
        .collect()
}

/// Reports, without changing anything, every cluster whose exchange is stale.
pub async fn check(o: &SyncOptions) -> Result<SyncReport, SyncError> {
    let peers = peers(o)?;
    let sftp = Sftp::connect(&o.sftp, &o.sftp_options).await?;
    let mut report = SyncReport {
        sftp: o.sftp.to_string(),
        ..Default::default()
    };
    let consolidated = match sftp.read(CONSOLIDATED).await? {
        None => None,
        Some(b) => Some(
            certs::parse_bundle(&String::from_utf8_lossy(&b)).map_err(|e| SyncError::BadFile {
                file: sftp.url.file(CONSOLIDATED),
                reason: e.to_string(),
            })?,
        ),
    };
    let mut live = Vec::new();
    for p in &peers {
        let (id, trust) = p.trust(o).await?;
        let entries = sorted(p.export(o).await?);
        let exported = match sftp.read(&export_file(&id)).await? {
            None => None,
            Some(b) => certs::parse_bundle(&String::from_utf8_lossy(&b))
                .ok()
                .map(sorted),
        };
        live.push((p.url.clone(), id, entries, exported, trust));
    }
    sftp.close().await;
    // The truth: the clusters named here as they are now; the others as the bundle has them.
    let named: BTreeSet<&str> = live.iter().map(|(_, id, ..)| id.as_str()).collect();
    let mut current: Vec<CertEntry> = live.iter().flat_map(|(_, _, e, ..)| e.clone()).collect();
    if let Some(c) = &consolidated {
        current.extend(
            c.iter()
                .filter(|e| !named.contains(e.cluster.as_str()))
                .cloned(),
        );
        for e in c {
            *report.consolidated.entry(e.cluster.clone()).or_default() += 1;
        }
    }
    for (url, id, entries, exported, trust) in &live {
        let mut stale = Vec::new();
        match exported {
            None => stale.push(format!("its certificates are not exported to {}", o.sftp)),
            Some(x) if x != entries => stale.push(
                "its certificates changed since its export (a node added or removed, a certificate renewed)".into(),
            ),
            Some(_) => {}
        }
        match &consolidated {
            None => stale.push(format!("there is no {CONSOLIDATED} in {}", o.sftp)),
            Some(c) => {
                let in_bundle: Vec<CertEntry> =
                    sorted(c.iter().filter(|e| e.cluster == *id).cloned().collect());
                if in_bundle != *entries {
                    stale.push(format!(
                        "{CONSOLIDATED} does not hold its current certificates"
                    ));
                }
            }
        }
        let want = expected_trust(&current, id);
        let missing: BTreeSet<&String> = want
            .difference(trust)
            .map(|(_, _, cluster)| cluster)
            .collect();
        for cluster in missing {
            stale.push(format!(
                "its trust stores lack the current certificates of cluster {cluster}"
            ));
        }
        let replaced: BTreeSet<&String> = trust
            .difference(&want)
            .map(|(_, _, cluster)| cluster)
            .filter(|c| named.contains(c.as_str()))
            .collect();
        for cluster in replaced {
            stale.push(format!(
                "it still trusts certificates cluster {cluster} no longer presents"
            ));
        }
        report.clusters.push(ClusterOutcome {
            url: url.clone(),
            cluster: id.clone(),
            exported: exported.as_ref().map_or(0, Vec::len),
            stale,
            ..Default::default()
        });
    }
    Ok(report)
}

/// "Update Remote Cluster Now" at the node `server` (its HTTPS base URL), as the administrator
/// `user`: the node asks every remote cluster and answers what the database then holds for
/// them (`{"cluster", "node", "remote_clusters": [...]}`).
pub async fn update_now(
    server: &str,
    client: &ClientOptions,
    user: &str,
    password: &str,
) -> Result<serde_json::Value, SyncError> {
    let base = base(server)?;
    let http = http_client(client).map_err(|e| SyncError::Usage(e.to_string()))?;
    let peer = Peer { url: base, http };
    let url = format!("{}{}", peer.url, crate::wire::emcc::UPDATE_PATH);
    let r = peer
        .http
        .post(&url)
        .basic_auth(user, Some(password))
        .send()
        .await
        .map_err(|e| SyncError::Cluster {
            url: peer.url.clone(),
            reason: describe_error(&e),
        })?;
    let text = peer.body(r).await?;
    serde_json::from_str(&text).map_err(|e| SyncError::Cluster {
        url: peer.url.clone(),
        reason: format!("its answer is not JSON: {e}"),
    })
}
