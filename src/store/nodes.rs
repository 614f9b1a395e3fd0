//! The cluster's node table: each running node keeps its row alive with a heartbeat, which is
//! how `ucm cluster status` (and any node) tells which nodes are up. Also the one-node rule
//! on SQLite: a lock on the database file held for the node's lifetime.

use sqlx::Row;

use super::{Backend, Store, StoreError};

/// One running node as it last reported itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeRow {
    pub name: String,
    pub address: String,
    /// The services it runs (`nodes[].services` names).
    pub services: Vec<String>,
    /// Made at each start: tells a restarted node from the one before.
    pub instance: String,
    pub pid: i64,
    /// Unix milliseconds.
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// The node's own figures (change-feed lag), as it wrote them.
    pub status: serde_json::Value,
}

impl Store {
    /// Writes (or refreshes) this node's row.
    pub async fn node_heartbeat(&self, row: &NodeRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO cluster_nodes \
             (name, address, services, instance, pid, started_at, heartbeat_at, status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (name) DO UPDATE SET address = excluded.address, \
             services = excluded.services, instance = excluded.instance, pid = excluded.pid, \
             started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, \
             status = excluded.status",
        )
        .bind(&row.name)
        .bind(&row.address)
        .bind(serde_json::to_string(&row.services).unwrap_or_default())
        .bind(&row.instance)
        .bind(row.pid)
        .bind(row.started_at)
        .bind(row.heartbeat_at)
        .bind(row.status.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes this node's row when it stops (only its own instance's: a node started again
    /// under the same name keeps its row).
    pub async fn node_gone(&self, name: &str, instance: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM cluster_nodes WHERE name = $1 AND instance = $2")
            .bind(name)
            .bind(instance)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Announces `payload` on the change feed's channel (PostgreSQL; nothing on SQLite, which
    /// has one node): for what nodes tell each other without a table behind it.
    pub async fn announce(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        if self.backend() != Backend::Postgres {
            return Ok(());
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every node row.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, address, services, instance, pid, started_at, heartbeat_at, status \
             FROM cluster_nodes ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let services: String = r.try_get(2)?;
                let status: String = r.try_get(7)?;
                Ok(NodeRow {
                    name: r.try_get(0)?,
                    address: r.try_get(1)?,
                    services: serde_json::from_str(&services).unwrap_or_default(),
                    instance: r.try_get(3)?,
                    pid: r.try_get(4)?,
                    started_at: r.try_get(5)?,
                    heartbeat_at: r.try_get(6)?,
                    status: serde_json::from_str(&status).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Devices with live registrations (`expires_at` after `now`, unix seconds), by the node
    /// that holds them.
    pub async fn registrations_per_node(
        &self,
        now: i64,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        let regs = sqlx::query(
            "SELECT node, COUNT(DISTINCT device) FROM registrations WHERE expires_at > $1 \
             GROUP BY node",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        regs.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// The one-node rule of SQLite: takes an exclusive lock on `<database>.node.lock` for as
    /// long as the returned file stays open (the kernel drops it when the process dies, even
    /// by `kill -9`). A second node on the same file is refused with [`StoreError::NodeRunning`].
    /// `None` on PostgreSQL and for an in-memory database.
    pub fn single_node_lock(&self) -> Result<Option<std::fs::File>, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        let Some(db) = self.file.clone() else {
            return Ok(None);
        };
        let mut path = db.clone().into_os_string();
        path.push(".node.lock");
        let path = std::path::PathBuf::from(path);
        let file = open_lock_file(&path).map_err(|source| StoreError::Files {
            path: path.display().to_string(),
            source,
        })?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor we own; it has no memory effects.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    return Err(StoreError::NodeRunning {
                        path: db.display().to_string(),
                    });
                }
                return Err(StoreError::Files {
                    path: path.display().to_string(),
                    source: e,
                });
            }
        }
        Ok(Some(file))
    }
}

fn open_lock_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(super::DB_FILE_MODE);
    }
    o.open(path)
}
