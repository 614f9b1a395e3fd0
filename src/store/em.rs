//! Extension Mobility logins: one row per logged-in device, written in one transaction each.

use sqlx::Row;

use super::{Store, StoreError};

/// One Extension Mobility login as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmLoginRow {
    pub device: String,
    pub userid: String,
    pub profile: String,
    pub logged_in_at: i64,
    pub logout_at: Option<i64>,
    pub node: String,
}

/// Why a login could not be written.
#[derive(Debug)]
pub enum EmWrite {
    /// Another login holds the device (a race with another node or request).
    DeviceTaken,
    Store(StoreError),
}

impl From<sqlx::Error> for EmWrite {
    fn from(e: sqlx::Error) -> Self {
        EmWrite::Store(StoreError::from(e))
    }
}

impl Store {
    /// Every current login.
    pub async fn em_logins(&self) -> Result<Vec<EmLoginRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT device, userid, profile, logged_in_at, logout_at, node FROM em_logins ORDER BY device",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(EmLoginRow {
                    device: r.try_get(0)?,
                    userid: r.try_get(1)?,
                    profile: r.try_get(2)?,
                    logged_in_at: r.try_get(3)?,
                    logout_at: r.try_get(4)?,
                    node: r.try_get(5)?,
                })
            })
            .collect()
    }
    pub async fn em_last_user(&self, device: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT userid FROM em_last_user WHERE device = $1")
            .bind(device)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }
    /// Logs `login` in, first logging out `also_logout` (the user's other devices, for
    /// auto-logout), in one transaction. Fails with [`EmWrite::DeviceTaken`] when the device
    /// already has a login by someone else.
    pub async fn em_login(
        &self,
        login: &EmLoginRow,
        also_logout: &[String],
    ) -> Result<(), EmWrite> {
        let mut tx = self.pool.begin().await?;
        for d in also_logout {
            Self::em_logout_in(&mut tx, d).await?;
        }
        // The same user logging in again replaces their own login (a new profile or duration).
        sqlx::query("DELETE FROM em_logins WHERE device = $1 AND userid = $2")
            .bind(&login.device)
            .bind(&login.userid)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO em_logins (device, userid, profile, logged_in_at, logout_at, node) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (device) DO NOTHING",
        )
        .bind(&login.device)
        .bind(&login.userid)
        .bind(&login.profile)
        .bind(login.logged_in_at)
        .bind(login.logout_at)
        .bind(&login.node)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(EmWrite::DeviceTaken);
        }
        tx.commit().await?;
        Ok(())
    }

    async fn em_logout_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        device: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query("DELETE FROM em_logins WHERE device = $1 RETURNING userid")
            .bind(device)
            .fetch_optional(&mut **tx)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let user: String = row.try_get(0)?;
        sqlx::query(
            "INSERT INTO em_last_user (device, userid) VALUES ($1, $2) \
             ON CONFLICT (device) DO UPDATE SET userid = excluded.userid",
        )
        .bind(device)
        .bind(&user)
        .execute(&mut **tx)
        .await?;
        Ok(Some(user))
    }
    /// Logs the device out, recording its last user; returns who was logged in. With
    /// `only_if_logout_at`, only a login with that automatic logout time (so a timer that
    /// fires late never ends a newer login).
    pub async fn em_logout(
        &self,
        device: &str,
        only_if_logout_at: Option<i64>,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some(at) = only_if_logout_at {
            let current = sqlx::query("SELECT logout_at FROM em_logins WHERE device = $1")
                .bind(device)
                .fetch_optional(&mut *tx)
                .await?;
            let current: Option<Option<i64>> = current.map(|r| r.try_get(0)).transpose()?;
            if current != Some(Some(at)) {
                tx.rollback().await?;
                return Ok(None);
            }
        }
        let user = Self::em_logout_in(&mut tx, device).await?;
        tx.commit().await?;
        Ok(user)
    }
}
