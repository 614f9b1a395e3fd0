//! Registrations: the registrar writes its bindings behind, in batches.

use sqlx::Row;

use super::{Store, StoreError};

/// One registered line of a device, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegistrationRow {
    pub device: String,
    pub line: String,
    pub contact: String,
    pub instance: Option<String>,
    pub transport: String,
    pub source: String,
    pub node: String,
    /// Unix seconds.
    pub expires_at: i64,
    pub updated_at: i64,
}

impl Store {
    /// Writes registrations and removals in one transaction (the registrar batches them).
    /// A removal with a time removes the row only if it had expired by then (a sweep).
    pub async fn save_registrations(
        &self,
        upserts: &[RegistrationRow],
        removals: &[(String, String, Option<i64>)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for r in upserts {
            sqlx::query(
                "INSERT INTO registrations (device, line, contact, instance, transport, source, node, expires_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (device, line) DO UPDATE SET contact = excluded.contact, instance = excluded.instance, \
                 transport = excluded.transport, source = excluded.source, node = excluded.node, \
                 expires_at = excluded.expires_at, updated_at = excluded.updated_at",
            )
            .bind(&r.device)
            .bind(&r.line)
            .bind(&r.contact)
            .bind(&r.instance)
            .bind(&r.transport)
            .bind(&r.source)
            .bind(&r.node)
            .bind(r.expires_at)
            .bind(r.updated_at)
            .execute(&mut *tx)
            .await?;
        }
        for (device, line, expired_by) in removals {
            sqlx::query(
                "DELETE FROM registrations WHERE device = $1 AND line = $2 \
                 AND ($3 IS NULL OR expires_at <= $3)",
            )
            .bind(device)
            .bind(line)
            .bind(expired_by)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The stored registration of a device's line, if any.
    pub async fn registration(
        &self,
        device: &str,
        line: &str,
    ) -> Result<Option<RegistrationRow>, StoreError> {
        let row = sqlx::query(
            "SELECT device, line, contact, instance, transport, source, node, expires_at, updated_at \
             FROM registrations WHERE device = $1 AND line = $2",
        )
        .bind(device)
        .bind(line)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row_of).transpose()
    }

    /// Registrations that have not expired at `now` (unix seconds).
    pub async fn live_registrations(&self, now: i64) -> Result<Vec<RegistrationRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT device, line, contact, instance, transport, source, node, expires_at, updated_at \
             FROM registrations WHERE expires_at > $1 ORDER BY device, line",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_of).collect()
    }
}

fn row_of(r: &sqlx::any::AnyRow) -> Result<RegistrationRow, StoreError> {
    Ok(RegistrationRow {
        device: r.try_get(0)?,
        line: r.try_get(1)?,
        contact: r.try_get(2)?,
        instance: r.try_get(3)?,
        transport: r.try_get(4)?,
        source: r.try_get(5)?,
        node: r.try_get(6)?,
        expires_at: r.try_get(7)?,
        updated_at: r.try_get(8)?,
    })
}
