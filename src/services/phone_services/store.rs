//! The authentication URL's lockouts (IP Phone Services, and EM's PINs): failed checks per
//! credential (table `credential_failures`, in the shared migration sequence), as queries on the
//! node's store handle.

use std::future::Future;

use sqlx::Row;

use crate::store::{Store, StoreError};

/// Failed checks of one credential (`password:<user>` or `pin:<user>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CredentialFailures {
    /// Failures since the last success or lockout.
    pub failures: i64,
    /// Unix seconds until which the credential is locked (0: not locked).
    pub locked_until: i64,
}

/// Credential lockouts in the database.
pub trait Lockouts {
    /// The failure record of `credential`, if it has failed since its last success.
    fn credential_failures(
        &self,
        credential: &str,
    ) -> impl Future<Output = Result<Option<CredentialFailures>, StoreError>> + Send;

    /// Reserves one check of `credential` at `now`, before the secret is verified, so that
    /// parallel guesses (on any node) are counted, not raced past: one statement, atomic on
    /// both backends. Every reserved check counts as a failure until
    /// [`Lockouts::clear_credential_failures`] records a success; the reservation that brings
    /// the count to `threshold` also locks the credential for `lock_secs` (so at most
    /// `threshold` checks run per lockout window, cluster-wide). A lock that has expired
    /// starts a new window. `None`: locked, refused without a check.
    fn reserve_credential_check(
        &self,
        credential: &str,
        now: i64,
        threshold: u32,
        lock_secs: i64,
    ) -> impl Future<Output = Result<Option<CredentialFailures>, StoreError>> + Send;

    /// Forgets failure records that are neither locked nor recent (older than `before`):
    /// failures count within a window, and names nobody has tried lately keep no row.
    fn prune_credential_failures(
        &self,
        now: i64,
        before: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Unlocks a user: forgets the failures and lockouts of their password and PIN. Returns
    /// the records removed (0: the user had none).
    fn unlock_user(&self, user: &str) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Forgets the failures of `credential` after a successful check.
    fn clear_credential_failures(
        &self,
        credential: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The credentials locked at `now`, with the time each lock ends, by credential.
    fn locked_credentials(
        &self,
        now: i64,
    ) -> impl Future<Output = Result<Vec<(String, i64)>, StoreError>> + Send;
}

impl Lockouts for Store {
    async fn credential_failures(
        &self,
        credential: &str,
    ) -> Result<Option<CredentialFailures>, StoreError> {
        let row = sqlx::query(
            "SELECT failures, locked_until FROM credential_failures WHERE credential = $1",
        )
        .bind(credential)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(CredentialFailures {
                failures: r.try_get(0)?,
                locked_until: r.try_get(1)?,
            })
        })
        .transpose()
    }

    async fn reserve_credential_check(
        &self,
        credential: &str,
        now: i64,
        threshold: u32,
        lock_secs: i64,
    ) -> Result<Option<CredentialFailures>, StoreError> {
        let threshold = i64::from(threshold.max(1));
        let row = sqlx::query(
            "INSERT INTO credential_failures (credential, failures, locked_until, updated_at) \
             VALUES ($1, 1, CASE WHEN $3 <= 1 THEN $2 + $4 ELSE 0 END, $2) \
             ON CONFLICT (credential) DO UPDATE SET \
               failures = CASE WHEN credential_failures.locked_until > 0 \
                 THEN 1 ELSE credential_failures.failures + 1 END, \
               locked_until = CASE WHEN (CASE WHEN credential_failures.locked_until > 0 \
                 THEN 1 ELSE credential_failures.failures + 1 END) >= $3 \
                 THEN $2 + $4 ELSE 0 END, \
               updated_at = $2 \
             WHERE credential_failures.locked_until <= $2 \
             RETURNING failures, locked_until",
        )
        .bind(credential)
        .bind(now)
        .bind(threshold)
        .bind(lock_secs)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(CredentialFailures {
                failures: r.try_get(0)?,
                locked_until: r.try_get(1)?,
            })
        })
        .transpose()
    }

    async fn prune_credential_failures(&self, now: i64, before: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "DELETE FROM credential_failures WHERE locked_until <= $1 AND updated_at < $2",
        )
        .bind(now)
        .bind(before)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected())
    }

    async fn unlock_user(&self, user: &str) -> Result<u64, StoreError> {
        let r =
            sqlx::query("DELETE FROM credential_failures WHERE credential = $1 OR credential = $2")
                .bind(format!("password:{user}"))
                .bind(format!("pin:{user}"))
                .execute(self.pool())
                .await?;
        Ok(r.rows_affected())
    }

    async fn clear_credential_failures(&self, credential: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM credential_failures WHERE credential = $1")
            .bind(credential)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn locked_credentials(&self, now: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT credential, locked_until FROM credential_failures WHERE locked_until > $1 \
             ORDER BY credential",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.try_get(0).ok()?, r.try_get(1).ok()?)))
            .collect())
    }
}
