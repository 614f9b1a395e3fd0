//! The secrets nodes' services present (table `service_credentials`): the node core checks
//! them for any node's service.

use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    /// The last user of a device that nobody is logged in on.
    /// Sets the SHA-256 (hex) of the secret a service presents for `userid` (one per user:
    /// the newest start wins).
    pub async fn set_service_credential(
        &self,
        userid: &str,
        secret_sha256: &str,
        node: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO service_credentials (userid, secret_sha256, node, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (userid) DO UPDATE SET \
             secret_sha256 = excluded.secret_sha256, node = excluded.node, \
             updated_at = excluded.updated_at",
        )
        .bind(userid)
        .bind(secret_sha256)
        .bind(node)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
    /// The SHA-256 (hex) of the secret a service presents for `userid`, if any.
    pub async fn service_credential(&self, userid: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT secret_sha256 FROM service_credentials WHERE userid = $1")
            .bind(userid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }
}
