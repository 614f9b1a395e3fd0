//! Storage: the cluster model in SQLite (embedded, the default) or PostgreSQL (multi-node).
//!
//! One API over both through sqlx's `Any` driver with runtime queries; SQL is written once with
//! `$N` placeholders, which both backends accept. Migrations live per backend in
//! `migrations/sqlite` and `migrations/postgres` so each can use its own types when they differ.
//!
//! The definition is stored one row per object (see `0001_cluster.sql`); runtime state
//! (registrations, EM logins, timers) lives in its own tables, which an import never touches.

use std::str::FromStr;
use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

use crate::config::ClusterDefinition;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("database {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("stored cluster definition is unreadable ({kind}): {reason}")]
    Corrupt { kind: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database behind a node.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub objects: usize,
    /// False when the stored definition already had this digest and nothing was written.
    pub changed: bool,
}

static MIGRATE_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static MIGRATE_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The collections of a definition that hold single settings rather than lists.
const SETTINGS: &[&str] = &[
    "cluster",
    "enterprise_parameters",
    "service_parameters",
    "qos",
    "paging",
];

impl Store {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    /// `sqlite:PATH`, `sqlite::memory:` and `postgres://...` are accepted.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::BadUrl {
                url: url.to_string(),
                reason: "expected sqlite:PATH, sqlite::memory: or postgres://...".into(),
            });
        };
        let mut url_owned = url.to_string();
        let memory = url.contains(":memory:");
        if backend == Backend::Sqlite && !memory && !url.contains("mode=") {
            url_owned.push_str(if url.contains('?') {
                "&mode=rwc"
            } else {
                "?mode=rwc"
            });
        }
        let opts = AnyConnectOptions::from_str(&url_owned).map_err(|e| StoreError::BadUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let mut pool_opts = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            // One connection for an in-memory database (each connection would get its own);
            // WAL and a busy timeout so readers never block the writer on a file.
            pool_opts = pool_opts
                .max_connections(if memory { 1 } else { 8 })
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::query("PRAGMA journal_mode=WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout=10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys=ON")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous=NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                });
            if memory {
                pool_opts = pool_opts.idle_timeout(None).max_lifetime(None);
            }
        } else {
            pool_opts = pool_opts.max_connections(16);
        }
        let pool = pool_opts
            .connect_with(opts)
            .await
            .map_err(|source| StoreError::Connect {
                url: redact(url),
                source,
            })?;
        match backend {
            Backend::Sqlite => MIGRATE_SQLITE.run(&pool).await?,
            Backend::Postgres => MIGRATE_POSTGRES.run(&pool).await?,
        }
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The digest recorded with the stored definition, if any.
    pub async fn definition_digest(&self) -> Result<Option<String>, StoreError> {
        self.meta("digest").await
    }

    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM cluster_meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<String, _>(0)?),
            None => None,
        })
    }

    /// Replaces the stored definition with `def` in one transaction. Secrets must already be
    /// hashed (see `config::hash_secrets`). Runtime state is left as it is.
    pub async fn import(
        &self,
        def: &ClusterDefinition,
        digest: &str,
        origin: &str,
    ) -> Result<ImportSummary, StoreError> {
        debug_assert!(def
            .end_users
            .iter()
            .all(|u| u.password.is_none() && u.pin.is_none()));
        let value = serde_json::to_value(def).map_err(|e| StoreError::Corrupt {
            kind: "definition".into(),
            reason: e.to_string(),
        })?;
        let Value::Object(map) = value else {
            return Err(StoreError::Corrupt {
                kind: "definition".into(),
                reason: "not an object".into(),
            });
        };
        let mut rows: Vec<(String, i64, String, String)> = Vec::new();
        for (kind, v) in map {
            match v {
                Value::Array(items) => {
                    for (i, item) in items.into_iter().enumerate() {
                        let name = natural_name(&item);
                        rows.push((kind.clone(), i as i64, name, item.to_string()));
                    }
                }
                other => rows.push((kind.clone(), 0, kind.clone(), other.to_string())),
            }
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM config_objects")
            .execute(&mut *tx)
            .await?;
        // Multi-row inserts: far fewer round trips for a 20,000-object cluster.
        for chunk in rows.chunks(200) {
            let mut sql =
                String::from("INSERT INTO config_objects (kind, position, name, body) VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                let b = i * 4;
                sql.push_str(&format!("(${},${},${},${})", b + 1, b + 2, b + 3, b + 4));
            }
            let mut q = sqlx::query(&sql);
            for (kind, pos, name, body) in chunk {
                q = q.bind(kind).bind(*pos).bind(name).bind(body);
            }
            q.execute(&mut *tx).await?;
        }
        for (k, v) in [
            ("digest", digest.to_string()),
            ("origin", origin.to_string()),
            ("imported_at", unix_now().to_string()),
        ] {
            sqlx::query("DELETE FROM cluster_meta WHERE key = $1")
                .bind(k)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO cluster_meta (key, value) VALUES ($1, $2)")
                .bind(k)
                .bind(v)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(ImportSummary {
            objects: rows.len(),
            changed: true,
        })
    }

    /// Reads the stored definition back; `None` when nothing was ever imported.
    pub async fn load(&self) -> Result<Option<ClusterDefinition>, StoreError> {
        let rows = sqlx::query("SELECT kind, body FROM config_objects ORDER BY kind, position")
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut map = Map::new();
        for r in rows {
            let kind: String = r.try_get(0)?;
            let body: String = r.try_get(1)?;
            let v: Value = serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                kind: kind.clone(),
                reason: e.to_string(),
            })?;
            if SETTINGS.contains(&kind.as_str()) {
                map.insert(kind, v);
            } else if let Value::Array(a) =
                map.entry(kind).or_insert_with(|| Value::Array(Vec::new()))
            {
                a.push(v);
            }
        }
        let def = serde_json::from_value(Value::Object(map)).map_err(|e| StoreError::Corrupt {
            kind: "definition".into(),
            reason: e.to_string(),
        })?;
        Ok(Some(def))
    }
}

/// The name an object is known by: name, userid, or pattern (with its partition).
fn natural_name(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    if let Some(n) = s("name").or(s("userid")) {
        return n.to_string();
    }
    if let Some(p) = s("pattern") {
        return match s("partition") {
            Some(part) => format!("{p}/{part}"),
            None => p.to_string(),
        };
    }
    String::new()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A URL with any password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// SHA-256 of a definition's source text, the digest `import` records.
pub fn digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// One registered line of a device, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    pub async fn save_registrations(
        &self,
        upserts: &[RegistrationRow],
        removals: &[(String, String)],
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
        for (device, line) in removals {
            sqlx::query("DELETE FROM registrations WHERE device = $1 AND line = $2")
                .bind(device)
                .bind(line)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
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
        rows.into_iter()
            .map(|r| {
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
            })
            .collect()
    }
}

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

    /// Keeps a finished page's report (JSON); at most `keep` reports are kept, oldest go first.
    pub async fn add_page_report(
        &self,
        id: &str,
        started_at: i64,
        call_id: &str,
        report: &str,
        keep: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO page_reports (id, started_at, call_id, report) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(started_at)
        .bind(call_id)
        .bind(report)
        .execute(&mut *tx)
        .await?;
        // SQLite needs a LIMIT before OFFSET (-1: none); PostgreSQL takes OFFSET alone.
        let prune = match self.backend() {
            Backend::Sqlite => {
                "DELETE FROM page_reports WHERE id IN (SELECT id FROM page_reports \
                 ORDER BY started_at DESC, id DESC LIMIT -1 OFFSET $1)"
            }
            Backend::Postgres => {
                "DELETE FROM page_reports WHERE id IN (SELECT id FROM page_reports \
                 ORDER BY started_at DESC, id DESC OFFSET $1)"
            }
        };
        sqlx::query(prune).bind(keep).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest `limit` page reports (JSON), newest first; only `call_id`'s when given.
    pub async fn page_reports(
        &self,
        call_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows =
            match call_id {
                Some(c) => {
                    sqlx::query(
                        "SELECT report FROM page_reports WHERE call_id = $1 \
                     ORDER BY started_at DESC, id DESC LIMIT $2",
                    )
                    .bind(c)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
                }
                None => sqlx::query(
                    "SELECT report FROM page_reports ORDER BY started_at DESC, id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?,
            };
        rows.iter()
            .map(|r| r.try_get(0).map_err(StoreError::from))
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
