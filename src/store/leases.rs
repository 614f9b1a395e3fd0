//! Service leases (migration 0014): which node runs a service the cluster runs once (the
//! Paging Server). The database decides: taking or renewing a lease is one upsert whose
//! condition (the lease is ours, or its time has passed) PostgreSQL evaluates on the locked
//! row, so of any number of nodes racing for an expired lease exactly one gets it. Times are
//! the database's clock (unix ms), so nodes whose clocks differ still agree.

use sqlx::Row;

use super::{Backend, Store, StoreError};

/// A service's lease as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseRow {
    pub service: String,
    /// The node holding it.
    pub node: String,
    /// The holder's run (a node restarted under the same name is another holder).
    pub instance: String,
    /// The route points the holder serves.
    pub route_points: Vec<String>,
    /// Unix milliseconds (the database's clock).
    pub acquired_at: i64,
    pub expires_at: i64,
    /// The database's clock when this was read.
    pub now: i64,
}

impl LeaseRow {
    /// Whether the holder's time has not passed (as of the read).
    pub fn live(&self) -> bool {
        self.expires_at > self.now
    }
}

/// The database's clock in unix milliseconds, as SQL of each backend.
fn now_ms(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "(extract(epoch FROM clock_timestamp()) * 1000)::bigint",
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    }
}

fn row_of(r: &sqlx::any::AnyRow) -> Result<LeaseRow, StoreError> {
    let rps: String = r.try_get(3)?;
    Ok(LeaseRow {
        service: r.try_get(0)?,
        node: r.try_get(1)?,
        instance: r.try_get(2)?,
        route_points: serde_json::from_str(&rps).unwrap_or_default(),
        acquired_at: r.try_get(4)?,
        expires_at: r.try_get(5)?,
        now: r.try_get(6)?,
    })
}

impl Store {
    /// Takes `service`'s lease for `node`'s run `instance` for `ttl_ms`, or renews it when this
    /// instance holds it already; taken only when nobody holds it or its holder's time has
    /// passed. Returns the lease as it stands afterwards: ours when `instance` matches.
    pub async fn take_lease(
        &self,
        service: &str,
        node: &str,
        instance: &str,
        route_points: &[String],
        ttl_ms: i64,
    ) -> Result<LeaseRow, StoreError> {
        let now = now_ms(self.backend);
        // On SQLite there is one node (the database file's lock says so): a lease left by its
        // previous run (killed) is its own, taken back at once.
        let condition = match self.backend {
            Backend::Postgres => format!(
                "WHERE service_leases.instance = excluded.instance \
                 OR service_leases.expires_at < {now}"
            ),
            Backend::Sqlite => String::new(),
        };
        let rps = serde_json::to_string(route_points).unwrap_or_else(|_| "[]".into());
        let sql = format!(
            "INSERT INTO service_leases \
             (service, node, instance, route_points, acquired_at, expires_at) \
             VALUES ($1, $2, $3, $4, {now}, {now} + $5) \
             ON CONFLICT (service) DO UPDATE SET node = excluded.node, \
             instance = excluded.instance, route_points = excluded.route_points, \
             acquired_at = CASE WHEN service_leases.instance = excluded.instance \
                 THEN service_leases.acquired_at ELSE excluded.acquired_at END, \
             expires_at = excluded.expires_at {condition}"
        );
        sqlx::query(&sql)
            .bind(service)
            .bind(node)
            .bind(instance)
            .bind(rps)
            .bind(ttl_ms)
            .execute(&self.pool)
            .await?;
        // Read after the write (committed: the statement ran alone); always finds the row.
        self.lease(service)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                kind: "service_leases".into(),
                reason: format!("no lease row for {service} after taking it"),
            })
    }

    /// Gives up `service`'s lease if `instance` holds it (a node stopping): a standby may take
    /// it at once.
    pub async fn release_lease(&self, service: &str, instance: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM service_leases WHERE service = $1 AND instance = $2")
            .bind(service)
            .bind(instance)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// `service`'s lease, if anyone ever took it (live or not: see [`LeaseRow::live`]).
    pub async fn lease(&self, service: &str) -> Result<Option<LeaseRow>, StoreError> {
        let sql = format!(
            "SELECT service, node, instance, route_points, acquired_at, expires_at, {} \
             FROM service_leases WHERE service = $1",
            now_ms(self.backend)
        );
        let row = sqlx::query(&sql)
            .bind(service)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(row_of).transpose()
    }

    /// Every lease.
    pub async fn leases(&self) -> Result<Vec<LeaseRow>, StoreError> {
        let sql = format!(
            "SELECT service, node, instance, route_points, acquired_at, expires_at, {} \
             FROM service_leases ORDER BY service",
            now_ms(self.backend)
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(row_of).collect()
    }
}
