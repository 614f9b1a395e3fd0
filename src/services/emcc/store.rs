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

/// Which side of an EMCC login a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// This cluster is the user's home; the device is a phone of the remote (visiting) cluster.
    Home,
    /// The device is this cluster's phone; the user's home is the remote cluster.
    Visiting,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Home => "home",
            Role::Visiting => "visiting",
        }
    }
}

/// One EMCC logged-in device (table `emcc_devices`, migration 0017).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EmccDeviceRow {
    pub role: Role,
    pub device: String,
    /// The EMCC device slot it holds (1 to the cap); shown as `EMCC<slot>`.
    pub slot: i64,
    pub userid: String,
    /// The other side: the home cluster for a visiting row, the visiting one for a home row.
    pub remote_cluster: String,
    /// The user's device profile (home rows).
    pub profile: String,
    /// JSON: the visiting device's settings (home rows), the home's answer (visiting rows).
    pub settings: String,
    pub logged_in_at: i64,
    pub node: String,
}

/// Why a slot was not taken.
#[derive(Debug)]
pub enum SlotRefused {
    /// Every slot up to the cap is held (Cisco's "No free EMCC dummy device").
    Full {
        cap: u32,
    },
    /// The device already holds a slot on this side.
    DeviceTaken(EmccDeviceRow),
    Store(StoreError),
}

impl From<sqlx::Error> for SlotRefused {
    fn from(e: sqlx::Error) -> Self {
        SlotRefused::Store(StoreError::from(e))
    }
}

const DEVICE_COLUMNS: &str =
    "role, device, slot, userid, remote_cluster, profile, settings, logged_in_at, node";

fn device_row(r: &sqlx::any::AnyRow) -> Result<EmccDeviceRow, sqlx::Error> {
    let role: String = r.try_get(0)?;
    Ok(EmccDeviceRow {
        role: if role == "home" {
            Role::Home
        } else {
            Role::Visiting
        },
        device: r.try_get(1)?,
        slot: r.try_get(2)?,
        userid: r.try_get(3)?,
        remote_cluster: r.try_get(4)?,
        profile: r.try_get(5)?,
        settings: r.try_get(6)?,
        logged_in_at: r.try_get(7)?,
        node: r.try_get(8)?,
    })
}

pub trait EmccDevices {
    /// Takes the lowest free EMCC device slot of `row.role` up to `cap` for `row.device`
    /// (`row.slot` is ignored): the row as stored, with its slot. The database decides: the
    /// unique (role, slot) lets one of any number of racers have a slot, a loser reads again
    /// and tries the next; so at most `cap` rows of a side ever exist.
    fn take_emcc_slot(
        &self,
        row: &EmccDeviceRow,
        cap: u32,
    ) -> impl Future<Output = Result<EmccDeviceRow, SlotRefused>> + Send;

    /// Frees the device's slot on that side; the row that held it, if any.
    fn free_emcc_slot(
        &self,
        role: Role,
        device: &str,
    ) -> impl Future<Output = Result<Option<EmccDeviceRow>, StoreError>> + Send;

    /// Replaces the `settings` of the device's row on that side.
    fn set_emcc_settings(
        &self,
        role: Role,
        device: &str,
        settings: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every EMCC logged-in device of a side, by device.
    fn emcc_devices(
        &self,
        role: Role,
    ) -> impl Future<Output = Result<Vec<EmccDeviceRow>, StoreError>> + Send;
}

impl EmccDevices for Store {
    async fn take_emcc_slot(
        &self,
        row: &EmccDeviceRow,
        cap: u32,
    ) -> Result<EmccDeviceRow, SlotRefused> {
        let role = row.role.as_str();
        // Each failed attempt means another login took a slot: at most `cap` of them before
        // every slot is held.
        for _ in 0..=cap {
            if let Some(r) = sqlx::query(&format!(
                "SELECT {DEVICE_COLUMNS} FROM emcc_devices WHERE role = $1 AND device = $2"
            ))
            .bind(role)
            .bind(&row.device)
            .fetch_optional(self.pool())
            .await?
            {
                return Err(SlotRefused::DeviceTaken(device_row(&r)?));
            }
            let used: Vec<i64> =
                sqlx::query("SELECT slot FROM emcc_devices WHERE role = $1 ORDER BY slot")
                    .bind(role)
                    .fetch_all(self.pool())
                    .await?
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()?;
            let mut free = 1i64;
            for s in &used {
                if *s == free {
                    free += 1;
                } else if *s > free {
                    break;
                }
            }
            if free > i64::from(cap) {
                return Err(SlotRefused::Full { cap });
            }
            let done = sqlx::query(
                "INSERT INTO emcc_devices (role, device, slot, userid, remote_cluster, profile, \
                 settings, logged_in_at, node) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(role)
            .bind(&row.device)
            .bind(free)
            .bind(&row.userid)
            .bind(&row.remote_cluster)
            .bind(&row.profile)
            .bind(&row.settings)
            .bind(row.logged_in_at)
            .bind(&row.node)
            .execute(self.pool())
            .await?;
            if done.rows_affected() == 1 {
                return Ok(EmccDeviceRow {
                    slot: free,
                    ..row.clone()
                });
            }
        }
        Err(SlotRefused::Full { cap })
    }

    async fn free_emcc_slot(
        &self,
        role: Role,
        device: &str,
    ) -> Result<Option<EmccDeviceRow>, StoreError> {
        let row = sqlx::query(&format!(
            "DELETE FROM emcc_devices WHERE role = $1 AND device = $2 RETURNING {DEVICE_COLUMNS}"
        ))
        .bind(role.as_str())
        .bind(device)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| device_row(&r)).transpose()?)
    }

    async fn set_emcc_settings(
        &self,
        role: Role,
        device: &str,
        settings: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE emcc_devices SET settings = $1 WHERE role = $2 AND device = $3")
            .bind(settings)
            .bind(role.as_str())
            .bind(device)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn emcc_devices(&self, role: Role) -> Result<Vec<EmccDeviceRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM emcc_devices WHERE role = $1 ORDER BY device"
        ))
        .bind(role.as_str())
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(device_row).collect::<Result<_, _>>()?)
    }
}

/// A logout the visiting side made that the user's home has not acknowledged yet (table
/// `emcc_pending_logouts`, migration 0024).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingLogout {
    pub device: String,
    pub home: String,
    pub userid: String,
    /// Unix seconds; names the logout.
    pub queued_at: i64,
    pub attempts: i64,
    /// Why the last attempt to tell the home failed (empty before any).
    pub last_error: String,
}

pub trait PendingLogouts {
    /// Ends the visiting side of the device's EMCC login in one transaction: frees its slot
    /// and queues the logout for its home. The row that held the slot, if any.
    fn end_visiting_login(
        &self,
        device: &str,
        now: i64,
    ) -> impl Future<Output = Result<Option<EmccDeviceRow>, StoreError>> + Send;

    /// Every logout not yet acknowledged, oldest first.
    fn pending_logouts(
        &self,
    ) -> impl Future<Output = Result<Vec<PendingLogout>, StoreError>> + Send;

    /// The home acknowledged the logout queued at `queued_at` (a newer one stays).
    fn logout_acknowledged(
        &self,
        device: &str,
        queued_at: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// An attempt to tell the home failed.
    fn logout_attempt_failed(
        &self,
        device: &str,
        queued_at: i64,
        why: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A new login of the device is handed to a home: an older logout of it is not told any
    /// more (the home replaces the login it still holds from this cluster).
    fn drop_pending_logout(
        &self,
        device: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl PendingLogouts for Store {
    async fn end_visiting_login(
        &self,
        device: &str,
        now: i64,
    ) -> Result<Option<EmccDeviceRow>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(&format!(
            "DELETE FROM emcc_devices WHERE role = 'visiting' AND device = $1 RETURNING {DEVICE_COLUMNS}"
        ))
        .bind(device)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row.map(|r| device_row(&r)).transpose()? else {
            tx.rollback().await?;
            return Ok(None);
        };
        sqlx::query(
            "INSERT INTO emcc_pending_logouts (device, home, userid, queued_at, attempts, last_error) \
             VALUES ($1, $2, $3, $4, 0, '') ON CONFLICT (device) DO UPDATE SET home = excluded.home, \
             userid = excluded.userid, queued_at = excluded.queued_at, attempts = 0, last_error = ''",
        )
        .bind(device)
        .bind(&row.remote_cluster)
        .bind(&row.userid)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(row))
    }

    async fn pending_logouts(&self) -> Result<Vec<PendingLogout>, StoreError> {
        let rows = sqlx::query(
            "SELECT device, home, userid, queued_at, attempts, last_error FROM emcc_pending_logouts \
             ORDER BY queued_at, device",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PendingLogout {
                    device: r.try_get(0)?,
                    home: r.try_get(1)?,
                    userid: r.try_get(2)?,
                    queued_at: r.try_get(3)?,
                    attempts: r.try_get(4)?,
                    last_error: r.try_get(5)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn logout_acknowledged(&self, device: &str, queued_at: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM emcc_pending_logouts WHERE device = $1 AND queued_at = $2")
            .bind(device)
            .bind(queued_at)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn logout_attempt_failed(
        &self,
        device: &str,
        queued_at: i64,
        why: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE emcc_pending_logouts SET attempts = attempts + 1, last_error = $1 \
             WHERE device = $2 AND queued_at = $3",
        )
        .bind(why)
        .bind(device)
        .bind(queued_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn drop_pending_logout(&self, device: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM emcc_pending_logouts WHERE device = $1")
            .bind(device)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
