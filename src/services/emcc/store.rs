//! EMCC's storage: what each remote cluster last told this one (table `emcc_remote_clusters`,
//! migration 0015 on both backends), as queries on the node's store handle.

use std::collections::BTreeMap;
use std::future::Future;

use sqlx::Row;

use crate::store::{Store, StoreError};

/// A remote cluster as the last update left it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RemoteClusterRow {
    pub cluster_id: String,
    pub address: String,
    /// Its Unified CM version (from the last successful update).
    pub version: Option<String>,
    /// Its first three EM service nodes, in its order (HTTPS base URLs).
    pub em_service_nodes: Vec<String>,
    /// The EMCC trunk services it enabled, each with up to three nodes (`host:port`).
    pub trunk_services: BTreeMap<String, Vec<String>>,
    /// Cisco's Remote Activated: the last update succeeded.
    pub remote_activated: bool,
    /// Unix seconds.
    pub last_attempt_at: i64,
    pub last_success_at: Option<i64>,
    /// `ok`, or why the last update failed.
    pub last_outcome: String,
    /// The node of this cluster that made the last update.
    pub updated_by: String,
}

/// What one update attempt learnt.
#[derive(Debug, Clone)]
pub enum UpdateOutcome {
    Ok {
        version: String,
        em_service_nodes: Vec<String>,
        trunk_services: BTreeMap<String, Vec<String>>,
    },
    Failed(String),
}

pub trait RemoteClusters {
    /// Records an attempt: a success replaces what is known; a failure keeps the last known
    /// version and services but marks the cluster not activated, with the reason.
    fn record_remote_update(
        &self,
        cluster_id: &str,
        address: &str,
        outcome: &UpdateOutcome,
        node: &str,
        now: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every remote cluster ever updated, by id.
    fn remote_clusters(
        &self,
    ) -> impl Future<Output = Result<Vec<RemoteClusterRow>, StoreError>> + Send;
}

impl RemoteClusters for Store {
    async fn record_remote_update(
        &self,
        cluster_id: &str,
        address: &str,
        outcome: &UpdateOutcome,
        node: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        match outcome {
            UpdateOutcome::Ok {
                version,
                em_service_nodes,
                trunk_services,
            } => {
                let nodes = serde_json::to_string(em_service_nodes).unwrap_or_else(|_| "[]".into());
                let services =
                    serde_json::to_string(trunk_services).unwrap_or_else(|_| "{}".into());
                sqlx::query(
                    "INSERT INTO emcc_remote_clusters (cluster_id, address, version, em_service_nodes, \
                     trunk_services, remote_activated, last_attempt_at, last_success_at, last_outcome, updated_by) \
                     VALUES ($1, $2, $3, $4, $5, 1, $6, $6, 'ok', $7) ON CONFLICT (cluster_id) DO UPDATE SET \
                     address = excluded.address, version = excluded.version, \
                     em_service_nodes = excluded.em_service_nodes, trunk_services = excluded.trunk_services, \
                     remote_activated = 1, last_attempt_at = excluded.last_attempt_at, \
                     last_success_at = excluded.last_success_at, last_outcome = 'ok', \
                     updated_by = excluded.updated_by",
                )
                .bind(cluster_id)
                .bind(address)
                .bind(version)
                .bind(nodes)
                .bind(services)
                .bind(now)
                .bind(node)
                .execute(self.pool())
                .await?;
            }
            UpdateOutcome::Failed(why) => {
                sqlx::query(
                    "INSERT INTO emcc_remote_clusters (cluster_id, address, version, em_service_nodes, \
                     trunk_services, remote_activated, last_attempt_at, last_success_at, last_outcome, updated_by) \
                     VALUES ($1, $2, NULL, '[]', '{}', 0, $3, NULL, $4, $5) ON CONFLICT (cluster_id) DO UPDATE SET \
                     address = excluded.address, remote_activated = 0, \
                     last_attempt_at = excluded.last_attempt_at, last_outcome = excluded.last_outcome, \
                     updated_by = excluded.updated_by",
                )
                .bind(cluster_id)
                .bind(address)
                .bind(now)
                .bind(why)
                .bind(node)
                .execute(self.pool())
                .await?;
            }
        }
        Ok(())
    }

    async fn remote_clusters(&self) -> Result<Vec<RemoteClusterRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT cluster_id, address, version, em_service_nodes, trunk_services, remote_activated, \
             last_attempt_at, last_success_at, last_outcome, updated_by FROM emcc_remote_clusters \
             ORDER BY cluster_id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                let nodes: String = r.try_get(3)?;
                let services: String = r.try_get(4)?;
                let activated: i64 = r.try_get(5)?;
                Ok(RemoteClusterRow {
                    cluster_id: r.try_get(0)?,
                    address: r.try_get(1)?,
                    version: r.try_get(2)?,
                    em_service_nodes: serde_json::from_str(&nodes).unwrap_or_default(),
                    trunk_services: serde_json::from_str(&services).unwrap_or_default(),
                    remote_activated: activated != 0,
                    last_attempt_at: r.try_get(6)?,
                    last_success_at: r.try_get(7)?,
                    last_outcome: r.try_get(8)?,
                    updated_by: r.try_get(9)?,
                })
            })
            .collect()
    }
}
