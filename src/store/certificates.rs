//! Certificates: what each node presents (its own), and other clusters' certificates imported
//! into trust stores (see `crate::wire::certs` for the bundle and Cisco's store mapping).

use sqlx::Row;

use super::{Store, StoreError};

/// A node's own certificate, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeCertificate {
    pub node: String,
    /// `tomcat` or `callmanager`.
    pub purpose: String,
    pub sha256: String,
    pub pem: String,
    pub updated_at: i64,
}

/// A certificate in a trust store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrustedCertificate {
    pub trust_store: String,
    pub sha256: String,
    pub cluster: String,
    pub node: String,
    pub purpose: String,
    pub pem: String,
    pub imported_at: i64,
}

/// What an import changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TrustImport {
    /// Entries written (new or replacing).
    pub added: usize,
    /// Entries already there, unchanged.
    pub unchanged: usize,
    /// Entries of a source cluster no longer in its bundle, removed.
    pub removed: usize,
}

impl Store {
    /// Records what `node` presents for `purpose` (at start; a renewed certificate replaces
    /// the old one).
    pub async fn save_node_certificate(
        &self,
        node: &str,
        purpose: &str,
        sha256: &str,
        pem: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO node_certificates (node, purpose, fingerprint, pem, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (node, purpose) DO UPDATE SET fingerprint = excluded.fingerprint, pem = excluded.pem, \
             updated_at = excluded.updated_at",
        )
        .bind(node)
        .bind(purpose)
        .bind(sha256)
        .bind(pem)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every node's certificates, by node then purpose.
    pub async fn node_certificates(&self) -> Result<Vec<NodeCertificate>, StoreError> {
        let rows = sqlx::query(
            "SELECT node, purpose, fingerprint, pem, updated_at FROM node_certificates ORDER BY node, purpose",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(NodeCertificate {
                    node: r.try_get(0)?,
                    purpose: r.try_get(1)?,
                    sha256: r.try_get(2)?,
                    pem: r.try_get(3)?,
                    updated_at: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// The trust stores' certificates, by store, cluster, node.
    pub async fn trusted_certificates(&self) -> Result<Vec<TrustedCertificate>, StoreError> {
        let rows = sqlx::query(
            "SELECT trust_store, fingerprint, source_cluster, source_node, purpose, pem, imported_at \
             FROM trusted_certificates ORDER BY trust_store, source_cluster, source_node, purpose",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(TrustedCertificate {
                    trust_store: r.try_get(0)?,
                    sha256: r.try_get(1)?,
                    cluster: r.try_get(2)?,
                    node: r.try_get(3)?,
                    purpose: r.try_get(4)?,
                    pem: r.try_get(5)?,
                    imported_at: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Imports `entries` (trust store, sha256, cluster, node, purpose, pem) in one
    /// transaction. For every source cluster present, what it had before and no longer has is
    /// removed (a renewed certificate replaces the old one; a removed node's goes), so a
    /// bundle is the truth about the clusters it names and touches no other.
    pub async fn import_trust(
        &self,
        entries: &[TrustedCertificate],
        now: i64,
    ) -> Result<TrustImport, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Write first: on SQLite a transaction that reads and then writes fails when another
        // committed in between (SQLITE_BUSY_SNAPSHOT); a writing statement takes the write
        // lock at once, so concurrent imports wait for each other (busy_timeout) instead.
        sqlx::query("DELETE FROM trusted_certificates WHERE 1 = 0")
            .execute(&mut *tx)
            .await?;
        let mut out = TrustImport::default();
        let mut clusters: Vec<&str> = entries.iter().map(|e| e.cluster.as_str()).collect();
        clusters.sort_unstable();
        clusters.dedup();
        for cluster in clusters {
            let had = sqlx::query(
                "SELECT trust_store, fingerprint FROM trusted_certificates WHERE source_cluster = $1",
            )
            .bind(cluster)
            .fetch_all(&mut *tx)
            .await?;
            for r in had {
                let store: String = r.try_get(0)?;
                let fp: String = r.try_get(1)?;
                let kept = entries
                    .iter()
                    .any(|e| e.cluster == cluster && e.trust_store == store && e.sha256 == fp);
                if !kept {
                    sqlx::query(
                        "DELETE FROM trusted_certificates WHERE trust_store = $1 AND fingerprint = $2",
                    )
                    .bind(&store)
                    .bind(&fp)
                    .execute(&mut *tx)
                    .await?;
                    out.removed += 1;
                }
            }
        }
        for e in entries {
            let exists = sqlx::query(
                "SELECT 1 FROM trusted_certificates WHERE trust_store = $1 AND fingerprint = $2 \
                 AND source_cluster = $3 AND source_node = $4 AND purpose = $5",
            )
            .bind(&e.trust_store)
            .bind(&e.sha256)
            .bind(&e.cluster)
            .bind(&e.node)
            .bind(&e.purpose)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
            if exists {
                out.unchanged += 1;
                continue;
            }
            sqlx::query(
                "INSERT INTO trusted_certificates (trust_store, fingerprint, source_cluster, source_node, purpose, pem, imported_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (trust_store, fingerprint) DO UPDATE SET \
                 source_cluster = excluded.source_cluster, source_node = excluded.source_node, \
                 purpose = excluded.purpose, pem = excluded.pem, imported_at = excluded.imported_at",
            )
            .bind(&e.trust_store)
            .bind(&e.sha256)
            .bind(&e.cluster)
            .bind(&e.node)
            .bind(&e.purpose)
            .bind(&e.pem)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            out.added += 1;
        }
        tx.commit().await?;
        Ok(out)
    }
}

impl Store {
    /// The certificates of one trust store, as DER (for a TLS client's roots).
    pub async fn trust_store_ders(
        &self,
        trust_store: &str,
    ) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, StoreError> {
        let rows = sqlx::query(
            "SELECT pem FROM trusted_certificates WHERE trust_store = $1 ORDER BY fingerprint",
        )
        .bind(trust_store)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let pem: String = r.try_get(0)?;
            for cert in rustls_pemfile::certs(&mut pem.as_bytes()).flatten() {
                out.push(cert);
            }
        }
        Ok(out)
    }
}
