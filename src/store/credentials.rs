//! Credentials: failed checks per credential (lockout), and the secrets nodes' services present.

use sqlx::Row;

use super::{Store, StoreError};

/// Failed checks of one credential (`password:<user>` or `pin:<user>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CredentialFailures {
    /// Failures since the last success or lockout.
    pub failures: i64,
    /// Unix seconds until which the credential is locked (0: not locked).
    pub locked_until: i64,
}

impl Store {
    /// The failure record of `credential`, if it has failed since its last success.
    pub async fn credential_failures(
        &self,
        credential: &str,
    ) -> Result<Option<CredentialFailures>, StoreError> {
        let row = sqlx::query(
            "SELECT failures, locked_until FROM credential_failures WHERE credential = $1",
        )
        .bind(credential)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(CredentialFailures {
                failures: r.try_get(0)?,
                locked_until: r.try_get(1)?,
            })
        })
        .transpose()
    }

    /// Counts one failure of `credential` at `now`; the `threshold`-th failure in a row locks
    /// it for `lock_secs` (and starts the count again). A threshold of 0 never locks.
    /// One statement, so concurrent failures on several nodes are all counted.
    pub async fn record_credential_failure(
        &self,
        credential: &str,
        now: i64,
        threshold: u32,
        lock_secs: i64,
    ) -> Result<CredentialFailures, StoreError> {
        let threshold = i64::from(threshold);
        let row = sqlx::query(
            "INSERT INTO credential_failures (credential, failures, locked_until, updated_at) \
             VALUES ($1, CASE WHEN $3 = 1 THEN 0 ELSE 1 END, CASE WHEN $3 = 1 THEN $2 + $4 ELSE 0 END, $2) \
             ON CONFLICT (credential) DO UPDATE SET \
               locked_until = CASE WHEN $3 > 0 AND credential_failures.failures + 1 >= $3 \
                 THEN $2 + $4 ELSE credential_failures.locked_until END, \
               failures = CASE WHEN $3 > 0 AND credential_failures.failures + 1 >= $3 \
                 THEN 0 ELSE credential_failures.failures + 1 END, \
               updated_at = $2 \
             RETURNING failures, locked_until",
        )
        .bind(credential)
        .bind(now)
        .bind(threshold)
        .bind(lock_secs)
        .fetch_one(&self.pool)
        .await?;
        Ok(CredentialFailures {
            failures: row.try_get(0)?,
            locked_until: row.try_get(1)?,
        })
    }

    /// Forgets the failures of `credential` after a successful check.
    pub async fn clear_credential_failures(&self, credential: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM credential_failures WHERE credential = $1")
            .bind(credential)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

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
