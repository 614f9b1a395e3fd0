//! Extension Mobility's storage: one row per logged-in device (`em_logins`), each device's
//! version (`em_devices`), the users' locks (`em_user_locks`) and the last user of a device
//! (`em_last_user`), in the shared migration sequence, as queries on the node's store handle.
//!
//! The database decides. A login locks its user (`em_user_locks`) and then its device
//! (`em_devices`), reads what is stored under those locks and hands it to the caller's decision
//! (device taken, Multiple Login Behavior), so two logins of one user, on any nodes, are decided
//! one after the other on both backends. Every login or logout bumps the device's version in the
//! same transaction and returns the device's new state as an [`EmChange`]: a node applies a
//! change only when its version is newer than what it holds, whether it comes from its own
//! write, the read of [`EmStore::em_states`] at start and on reconnect, or a change feed that
//! names the device ([`EmStore::em_state`]).

use std::collections::BTreeMap;
use std::future::Future;

use sqlx::Row;

use crate::store::{Store, StoreError};

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

/// A device's EM state as of one committed version: its login, or none (logged out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmChange {
    pub device: String,
    /// Grows with every login and logout of the device (from 1).
    pub version: i64,
    pub login: Option<EmLoginRow>,
}

/// What is stored when a login is decided, read inside its transaction after the user's and
/// the device's locks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmCurrent {
    /// The device's login.
    pub on_device: Option<EmLoginRow>,
    /// Every login of the user (the device's included, if it is theirs).
    pub of_user: Vec<EmLoginRow>,
}

/// What a decided login writes: `row`, after logging out `also_logout` (the user's other
/// devices, for auto-logout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmLoginWrite {
    pub row: EmLoginRow,
    pub also_logout: Vec<String>,
}

/// Why a login or logout was not written: the decision refused it (`E`), or the database.
#[derive(Debug)]
pub enum EmWrite<E> {
    Refused(E),
    Store(StoreError),
}

impl<E> From<sqlx::Error> for EmWrite<E> {
    fn from(e: sqlx::Error) -> Self {
        EmWrite::Store(StoreError::from(e))
    }
}

impl<E> From<StoreError> for EmWrite<E> {
    fn from(e: StoreError) -> Self {
        EmWrite::Store(e)
    }
}

const LOGIN_COLUMNS: &str = "device, userid, profile, logged_in_at, logout_at, node";

fn login_row(r: &sqlx::any::AnyRow) -> Result<EmLoginRow, sqlx::Error> {
    Ok(EmLoginRow {
        device: r.try_get(0)?,
        userid: r.try_get(1)?,
        profile: r.try_get(2)?,
        logged_in_at: r.try_get(3)?,
        logout_at: r.try_get(4)?,
        node: r.try_get(5)?,
    })
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

/// Takes the device's lock and bumps its version, returning the new one.
async fn bump(tx: &mut Tx<'_>, device: &str) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO em_devices (device, version) VALUES ($1, 1) \
         ON CONFLICT (device) DO UPDATE SET version = em_devices.version + 1 \
         RETURNING version",
    )
    .bind(device)
    .fetch_one(&mut **tx)
    .await?;
    row.try_get(0)
}

async fn logout_in(tx: &mut Tx<'_>, device: &str) -> Result<Option<String>, sqlx::Error> {
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

/// Extension Mobility in the database.
pub trait EmStore {
    /// Every current login.
    fn em_logins(&self) -> impl Future<Output = Result<Vec<EmLoginRow>, StoreError>> + Send;

    /// Every device's EM state with its version, read in one statement (one consistent
    /// snapshot): what a node applies to catch up with the other nodes.
    fn em_states(&self) -> impl Future<Output = Result<Vec<EmChange>, StoreError>> + Send;

    /// The EM state of one device as of its latest committed version (what a node applies
    /// when the change feed names the device); `None` when the device never had a login.
    fn em_state(
        &self,
        device: &str,
    ) -> impl Future<Output = Result<Option<EmChange>, StoreError>> + Send;

    /// The last user of a device that nobody is logged in on.
    fn em_last_user(
        &self,
        device: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// How many logins each node made (`ucm cluster status`).
    fn em_logins_per_node(
        &self,
    ) -> impl Future<Output = Result<BTreeMap<String, i64>, StoreError>> + Send;

    /// Logs `user` in on `device` as `decide` says, given what is stored: in one transaction
    /// that holds the user's and the device's locks while it reads, decides and writes.
    /// Returns the changes made (the devices logged out first, the login last).
    fn em_login<E: Send>(
        &self,
        device: &str,
        user: &str,
        decide: impl FnOnce(&EmCurrent) -> Result<EmLoginWrite, E> + Send,
    ) -> impl Future<Output = Result<Vec<EmChange>, EmWrite<E>>> + Send;

    /// Logs the device out, recording its last user, when `decide` agrees given the device's
    /// stored login (`Ok(false)`: leave it, nothing is written). Returns the change and the
    /// login that ended, or `None` when nothing ended.
    fn em_logout<E: Send>(
        &self,
        device: &str,
        decide: impl FnOnce(Option<&EmLoginRow>) -> Result<bool, E> + Send,
    ) -> impl Future<Output = Result<Option<(EmChange, EmLoginRow)>, EmWrite<E>>> + Send;
}

impl EmStore for Store {
    async fn em_logins(&self) -> Result<Vec<EmLoginRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {LOGIN_COLUMNS} FROM em_logins ORDER BY device"
        ))
        .fetch_all(self.pool())
        .await?;
        Ok(rows.iter().map(login_row).collect::<Result<_, _>>()?)
    }

    async fn em_states(&self) -> Result<Vec<EmChange>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.device, d.version, l.userid, l.profile, l.logged_in_at, l.logout_at, l.node \
             FROM em_devices d LEFT JOIN em_logins l ON l.device = d.device ORDER BY d.device",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let device: String = r.try_get(0)?;
                let userid: Option<String> = r.try_get(2)?;
                let login = match userid {
                    Some(userid) => Some(EmLoginRow {
                        device: device.clone(),
                        userid,
                        profile: r.try_get(3)?,
                        logged_in_at: r.try_get(4)?,
                        logout_at: r.try_get(5)?,
                        node: r.try_get(6)?,
                    }),
                    None => None,
                };
                Ok(EmChange {
                    device,
                    version: r.try_get(1)?,
                    login,
                })
            })
            .collect()
    }

    async fn em_last_user(&self, device: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT userid FROM em_last_user WHERE device = $1")
            .bind(device)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    async fn em_login<E: Send>(
        &self,
        device: &str,
        user: &str,
        decide: impl FnOnce(&EmCurrent) -> Result<EmLoginWrite, E> + Send,
    ) -> Result<Vec<EmChange>, EmWrite<E>> {
        let mut tx = self.pool().begin().await?;
        // A write first: on SQLite it takes the database's write lock before anything is read
        // (no snapshot to lose to another writer), on PostgreSQL the user's row lock.
        sqlx::query(
            "INSERT INTO em_user_locks (userid, logins) VALUES ($1, 1) \
             ON CONFLICT (userid) DO UPDATE SET logins = em_user_locks.logins + 1",
        )
        .bind(user)
        .execute(&mut *tx)
        .await?;
        // Always the user before the device, and the user's other devices last: no two
        // logins wait on each other in a circle.
        let version = bump(&mut tx, device).await?;
        let on_device = sqlx::query(&format!(
            "SELECT {LOGIN_COLUMNS} FROM em_logins WHERE device = $1"
        ))
        .bind(device)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| login_row(&r))
        .transpose()?;
        let of_user = sqlx::query(&format!(
            "SELECT {LOGIN_COLUMNS} FROM em_logins WHERE userid = $1 ORDER BY device"
        ))
        .bind(user)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(login_row)
        .collect::<Result<Vec<_>, _>>()?;
        let current = EmCurrent { on_device, of_user };
        let write = match decide(&current) {
            Ok(w) => w,
            Err(e) => {
                tx.rollback().await?;
                return Err(EmWrite::Refused(e));
            }
        };
        if write.row.device != device || write.row.userid != user {
            tx.rollback().await?;
            return Err(EmWrite::Store(StoreError::Corrupt {
                kind: "em login".into(),
                reason: format!(
                    "decided a login of {} on {} inside the transaction of {user} on {device}",
                    write.row.userid, write.row.device
                ),
            }));
        }
        let mut changes = Vec::with_capacity(write.also_logout.len() + 1);
        for d in write.also_logout.iter().filter(|d| *d != device) {
            let v = bump(&mut tx, d).await?;
            logout_in(&mut tx, d).await?;
            changes.push(EmChange {
                device: d.clone(),
                version: v,
                login: None,
            });
        }
        // The same user logging in again replaces their own login (a new profile or duration);
        // the decision refused anyone else's.
        sqlx::query("DELETE FROM em_logins WHERE device = $1")
            .bind(device)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO em_logins ({LOGIN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
        ))
        .bind(&write.row.device)
        .bind(&write.row.userid)
        .bind(&write.row.profile)
        .bind(write.row.logged_in_at)
        .bind(write.row.logout_at)
        .bind(&write.row.node)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        changes.push(EmChange {
            device: device.to_string(),
            version,
            login: Some(write.row),
        });
        Ok(changes)
    }

    async fn em_logout<E: Send>(
        &self,
        device: &str,
        decide: impl FnOnce(Option<&EmLoginRow>) -> Result<bool, E> + Send,
    ) -> Result<Option<(EmChange, EmLoginRow)>, EmWrite<E>> {
        let mut tx = self.pool().begin().await?;
        // The lock first (see em_login); rolled back when there is nothing to end.
        let version = bump(&mut tx, device).await?;
        let current = sqlx::query(&format!(
            "SELECT {LOGIN_COLUMNS} FROM em_logins WHERE device = $1"
        ))
        .bind(device)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| login_row(&r))
        .transpose()?;
        let end = match decide(current.as_ref()) {
            Ok(end) => end,
            Err(e) => {
                tx.rollback().await?;
                return Err(EmWrite::Refused(e));
            }
        };
        let Some(ended) = current.filter(|_| end) else {
            tx.rollback().await?;
            return Ok(None);
        };
        logout_in(&mut tx, device).await?;
        tx.commit().await?;
        let change = EmChange {
            device: device.to_string(),
            version,
            login: None,
        };
        Ok(Some((change, ended)))
    }

    async fn em_state(&self, device: &str) -> Result<Option<EmChange>, StoreError> {
        let row = sqlx::query(
            "SELECT d.version, l.userid, l.profile, l.logged_in_at, l.logout_at, l.node \
             FROM em_devices d LEFT JOIN em_logins l ON l.device = d.device \
             WHERE d.device = $1",
        )
        .bind(device)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let userid: Option<String> = r.try_get(1)?;
        let login = match userid {
            Some(userid) => Some(EmLoginRow {
                device: device.to_string(),
                userid,
                profile: r.try_get(2)?,
                logged_in_at: r.try_get(3)?,
                logout_at: r.try_get(4)?,
                node: r.try_get(5)?,
            }),
            None => None,
        };
        Ok(Some(EmChange {
            device: device.to_string(),
            version: r.try_get(0)?,
            login,
        }))
    }

    async fn em_logins_per_node(&self) -> Result<BTreeMap<String, i64>, StoreError> {
        let rows = sqlx::query("SELECT node, COUNT(*) FROM em_logins GROUP BY node")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}
