//! Storage: the cluster model in SQLite (embedded, the default) or PostgreSQL (multi-node).
//!
//! One API over both through sqlx's `Any` driver with runtime queries; SQL is written once with
//! `$N` placeholders, which both backends accept. Migrations live per backend in
//! `migrations/sqlite` and `migrations/postgres` so each can use its own types when they differ.
//!
//! The definition is stored one row per object (see `0001_cluster.sql`); runtime state
//! (registrations, the services' state) lives in its own tables, which an import never touches.
//!
//! One schema version per database: every table, the services' included, is created by the
//! one numbered sequence in `migrations/{sqlite,postgres}`. A service keeps its queries in its
//! own folder (`services/em/store.rs`, `services/paging/store.rs`, ...) over [`Store::pool`]
//! and [`Store::backend`]; this module names no service's table (`cargo xtask layers` checks).

use std::str::FromStr;
use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

use crate::config::ClusterDefinition;

mod certificates;
mod credentials;
mod edits;
mod leases;
mod nodes;
mod registrations;

pub use certificates::{NodeCertificate, TrustImport, TrustedCertificate};
pub use edits::Edited;
pub use leases::LeaseRow;
pub use nodes::NodeRow;
pub use registrations::RegistrationRow;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("database {url}: {}", describe(.source))]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    /// The database could not be reached or opened, with the reason in words.
    #[error("database {url}: {reason}")]
    Unavailable { url: String, reason: String },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database file {path}: {source}")]
    Files {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "another node is already running on the SQLite database {path}: SQLite serves one node; \
         a cluster of several nodes needs PostgreSQL (--db postgres://...)"
    )]
    NodeRunning { path: String },
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
    /// The URL it was opened with (the change feed opens its own connection with it).
    url: String,
    /// The SQLite database file, when there is one.
    file: Option<std::path::PathBuf>,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub objects: usize,
    /// False when the stored definition already had this digest and nothing was written.
    pub changed: bool,
}

/// The advisory lock definition imports take on PostgreSQL (`ucm_impt` in ASCII).
const IMPORT_LOCK: i64 = 0x7563_6d5f_696d_7074;

static MIGRATE_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static MIGRATE_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long opening a PostgreSQL database may take before it is called unreachable (one
/// attempt: a wrong address fails now rather than after the pool's retries).
pub const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Store {
    /// Opens (creating if needed) the database at `url` and brings its schema up to date.
    /// `sqlite:PATH`, `sqlite::memory:` and `postgres://...` are accepted.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_as(url, false).await
    }

    /// Opens an existing database to read only (`ucm db export`): nothing is created, a missing
    /// SQLite file is an error, and the schema is not migrated.
    pub async fn open_existing(url: &str) -> Result<Store, StoreError> {
        Store::open_as(url, true).await
    }

    async fn open_as(url: &str, read_only: bool) -> Result<Store, StoreError> {
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
            let mode = if read_only { "mode=ro" } else { "mode=rwc" };
            url_owned.push(if url.contains('?') { '&' } else { '?' });
            url_owned.push_str(mode);
        }
        let file = (backend == Backend::Sqlite && !memory)
            .then(|| sqlite_path(url))
            .flatten();
        if let Some(f) = &file {
            // Said in words before SQLite says "(code: 14) unable to open database file".
            let files = |reason: String| StoreError::Files {
                path: f.display().to_string(),
                source: std::io::Error::other(reason),
            };
            let dir = f.parent().filter(|d| !d.as_os_str().is_empty());
            if let Some(d) = dir.filter(|d| !d.is_dir()) {
                return Err(files(format!(
                    "the directory {} does not exist",
                    d.display()
                )));
            }
            if read_only && !f.exists() {
                return Err(files(
                    "no such database (nothing to read; `ucm db import` creates one)".into(),
                ));
            }
            if f.is_dir() {
                return Err(files("is a directory, not a database file".into()));
            }
            if !read_only {
                create_private_file(f).map_err(|e| StoreError::Files {
                    path: f.display().to_string(),
                    source: e,
                })?;
            }
        }
        let opts = AnyConnectOptions::from_str(&url_owned).map_err(|e| StoreError::BadUrl {
            url: redact(url),
            reason: e.to_string(),
        })?;
        if backend == Backend::Postgres {
            // One attempt with a short timeout: the pool would retry for its acquire timeout
            // and then say only "pool timed out".
            use sqlx::Connection;
            let reason = match tokio::time::timeout(
                PG_CONNECT_TIMEOUT,
                sqlx::AnyConnection::connect_with(&opts),
            )
            .await
            {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    None
                }
                Ok(Err(e)) => Some(describe(&e)),
                Err(_) => Some(format!(
                    "no answer within {} s (is the address right, and PostgreSQL reachable?)",
                    PG_CONNECT_TIMEOUT.as_secs()
                )),
            };
            if let Some(reason) = reason {
                return Err(StoreError::Unavailable {
                    url: redact(url),
                    reason,
                });
            }
        }
        let mut pool_opts = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            // One connection for an in-memory database (each connection would get its own);
            // WAL and a busy timeout so readers never block the writer on a file.
            pool_opts = pool_opts
                .max_connections(if memory { 1 } else { 8 })
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        // A reader leaves the journal mode as the writer set it.
                        if !read_only {
                            sqlx::query("PRAGMA journal_mode=WAL")
                                .execute(&mut *conn)
                                .await?;
                        }
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
        if read_only {
            return Ok(Store {
                pool,
                backend,
                url: url.to_string(),
                file,
            });
        }
        match backend {
            Backend::Sqlite => MIGRATE_SQLITE.run(&pool).await?,
            Backend::Postgres => MIGRATE_POSTGRES.run(&pool).await?,
        }
        // The WAL and shared-memory files exist now; files an older version left readable by
        // everyone are fixed here too.
        if let Some(f) = &file {
            restrict_db_files(f).map_err(|e| StoreError::Files {
                path: f.display().to_string(),
                source: e,
            })?;
        }
        Ok(Store {
            pool,
            backend,
            url: url.to_string(),
            file,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL the store was opened with (it may hold a password: see [`redact`]).
    pub fn url(&self) -> &str {
        &self.url
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

    /// The cluster's shared secret named `key` (hex of 32 random bytes), made by whichever node
    /// asks first: concurrent first asks race on the primary key and every node reads the one
    /// row that won. Signs what one node hands out and any other node must trust (the SIP
    /// dialog handles of `sip::b2bua::handoff`). Anyone who can read the database owns the
    /// cluster anyway; the secret never leaves it otherwise.
    pub async fn cluster_secret(&self, key: &str) -> Result<[u8; 32], StoreError> {
        let fresh: [u8; 32] = rand::random();
        sqlx::query(
            "INSERT INTO cluster_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(hex::encode(fresh))
        .execute(&self.pool)
        .await?;
        let stored = self.meta(key).await?.unwrap_or_default();
        let mut out = [0u8; 32];
        match hex::decode(stored.trim()) {
            Ok(b) if b.len() == 32 => out.copy_from_slice(&b),
            _ => {
                return Err(StoreError::Corrupt {
                    kind: format!("cluster_meta {key}"),
                    reason: "not 32 bytes of hex".into(),
                })
            }
        }
        Ok(out)
    }

    /// Replaces the stored definition with `def` in one transaction. Secrets must already be
    /// hashed (see `config::hash_secrets`). Runtime state is left as it is.
    pub async fn import(
        &self,
        def: &ClusterDefinition,
        digest: &str,
        origin: &str,
    ) -> Result<ImportSummary, StoreError> {
        self.import_as(def, digest, origin, false).await
    }

    /// [`Store::import`], unless the database already holds a definition with this digest
    /// (then nothing is written and `changed` is false): what a node does at start. On
    /// PostgreSQL the check and the write are made under the import lock, so nodes started at
    /// once on an empty database import the definition once and all serve it.
    pub async fn import_unless_current(
        &self,
        def: &ClusterDefinition,
        digest: &str,
        origin: &str,
    ) -> Result<ImportSummary, StoreError> {
        self.import_as(def, digest, origin, true).await
    }

    async fn import_as(
        &self,
        def: &ClusterDefinition,
        digest: &str,
        origin: &str,
        unless_current: bool,
    ) -> Result<ImportSummary, StoreError> {
        debug_assert!(def
            .end_users
            .iter()
            .all(|u| u.password.is_none() && u.pin.is_none()));
        let rows = rows_of(def)?;
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // Imports take turns (a transaction-level advisory lock, released at commit or
            // rollback): two writers of an empty database would otherwise both insert the
            // same keys, and one would fail on config_objects' primary key.
            sqlx::query("SELECT count(*) FROM (SELECT pg_advisory_xact_lock($1)) AS l")
                .bind(IMPORT_LOCK)
                .execute(&mut *tx)
                .await?;
            if unless_current {
                // The text last imported, or the definition as it stands (edits through AXL
                // move the latter on): either means this text is already in.
                let stored = sqlx::query(
                    "SELECT value FROM cluster_meta WHERE key IN ('digest', 'source_digest')",
                )
                .fetch_all(&mut *tx)
                .await?;
                let mut current = false;
                for r in stored {
                    current |= r.try_get::<String, _>(0)? == digest;
                }
                if current {
                    tx.rollback().await?;
                    return Ok(ImportSummary {
                        objects: rows.len(),
                        changed: false,
                    });
                }
            }
        }
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
            ("source_digest", digest.to_string()),
            ("origin", origin.to_string()),
            ("imported_at", unix_now().to_string()),
            ("edits", "0".to_string()),
        ] {
            set_meta(&mut tx, k, &v).await?;
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
        let mut pairs = Vec::with_capacity(rows.len());
        for r in rows {
            pairs.push((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?));
        }
        definition_of(pairs)
    }
}

/// The definition stored as (kind, body) rows in position order; `None` when there are none.
fn definition_of(
    rows: impl IntoIterator<Item = (String, String)>,
) -> Result<Option<ClusterDefinition>, StoreError> {
    let mut map = Map::new();
    let mut any = false;
    for (kind, body) in rows {
        any = true;
        let v: Value = serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
            kind: kind.clone(),
            reason: e.to_string(),
        })?;
        if !is_list(&kind) {
            map.insert(kind, v);
        } else if let Value::Array(a) = map.entry(kind).or_insert_with(|| Value::Array(Vec::new()))
        {
            a.push(v);
        }
    }
    if !any {
        return Ok(None);
    }
    let def = serde_json::from_value(Value::Object(map)).map_err(|e| StoreError::Corrupt {
        kind: "definition".into(),
        reason: e.to_string(),
    })?;
    Ok(Some(def))
}

/// A definition as the rows of `config_objects`: (kind, position, natural name, JSON body).
fn rows_of(def: &ClusterDefinition) -> Result<Vec<(String, i64, String, String)>, StoreError> {
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
    Ok(rows)
}

/// Sets one `cluster_meta` key inside a transaction (delete and insert: both backends, and the
/// insert is what PostgreSQL's trigger announces for `digest`).
async fn set_meta(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM cluster_meta WHERE key = $1")
        .bind(key)
        .execute(&mut **tx)
        .await?;
    sqlx::query("INSERT INTO cluster_meta (key, value) VALUES ($1, $2)")
        .bind(key)
        .bind(value)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Whether a collection of a definition is a list (one row an item) rather than one mapping:
/// the generic model's lists; its settings and the services' sections are mappings.
fn is_list(kind: &str) -> bool {
    use crate::config::model::{SETTINGS, TOP_LEVEL};
    TOP_LEVEL.contains(&Some(kind)) && !SETTINGS.contains(&kind)
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

/// Mode of the SQLite database and its WAL, shared-memory and journal files: they hold
/// password hashes and Extension Mobility state, so only the node's own user reads them.
pub const DB_FILE_MODE: u32 = 0o600;
/// Mode of the data directory (database, node certificate and key).
pub const DATA_DIR_MODE: u32 = 0o700;

/// Creates `dir` (and missing parents) and makes the directory itself [`DATA_DIR_MODE`], also
/// when it already existed with a wider mode. A directory that is not ucm's own to narrow (a
/// shared one with the sticky bit, like `/tmp`, or another user's) is left as it is, with a
/// warning: the database files in it are private anyway.
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DATA_DIR_MODE)
            .create(dir)?;
        let meta = std::fs::metadata(dir)?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o777 == DATA_DIR_MODE {
            return Ok(());
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let ours = meta.uid() == unsafe { libc::geteuid() };
        let shared = mode & 0o1000 != 0;
        let narrowed = if ours && !shared {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DATA_DIR_MODE))
        } else {
            Err(std::io::Error::other(
                "a shared or another user's directory",
            ))
        };
        if let Err(e) = narrowed {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{mode:o}"),
                error = %e,
                "data directory left readable by others"
            );
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// A connection error in words: SQLite's result codes and PostgreSQL's SQLSTATEs a person meets
/// when opening a database, the network's refusals; anything else as the driver says it.
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused (is the server running, and on that port?)".into()
            }
            std::io::ErrorKind::TimedOut => "connection timed out".into(),
            _ => format!("cannot connect: {io}"),
        },
        sqlx::Error::Database(d) => {
            let code = d.code().map(|c| c.to_string()).unwrap_or_default();
            let words = match code.as_str() {
                // SQLite primary result codes (extended codes keep the low byte).
                c if c.parse::<u32>().is_ok_and(|n| n & 0xff == 14) => {
                    "cannot open the database file (missing directory, no permission, or not a file)"
                }
                c if c.parse::<u32>().is_ok_and(|n| n & 0xff == 26) => "the file is not a database",
                c if c.parse::<u32>().is_ok_and(|n| n & 0xff == 8) => {
                    "the database is read-only (file or directory permissions)"
                }
                c if c.parse::<u32>().is_ok_and(|n| n & 0xff == 5) => {
                    "the database is locked by another process"
                }
                "3D000" => "no such database",
                "28P01" | "28000" => "authentication failed (user or password refused)",
                "53300" => "the server has no free connection",
                "57P03" => "the server is starting up or shutting down",
                _ => "",
            };
            if words.is_empty() {
                d.message().to_string()
            } else {
                format!("{words} ({})", d.message())
            }
        }
        sqlx::Error::PoolTimedOut => "no connection within the pool's timeout".into(),
        sqlx::Error::Tls(t) => format!("TLS: {t}"),
        other => other.to_string(),
    }
}

/// The file of a `sqlite:PATH` or `sqlite://PATH` URL (query string left out).
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty()).then(|| std::path::PathBuf::from(path))
}

/// Creates the database file with [`DB_FILE_MODE`] before SQLite does (it would use the
/// umask, typically 0644); SQLite gives the WAL and shared-memory files the database's mode.
fn create_private_file(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(DB_FILE_MODE)
            .open(path)
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            // A missing directory is SQLite's error to report, in its words.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Brings the database and its companion files to [`DB_FILE_MODE`].
fn restrict_db_files(path: &std::path::Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let name = path.as_os_str().to_os_string();
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut f = name.clone();
            f.push(suffix);
            let f = std::path::PathBuf::from(f);
            let Ok(meta) = std::fs::metadata(&f) else {
                continue;
            };
            if meta.permissions().mode() & 0o777 != DB_FILE_MODE {
                std::fs::set_permissions(&f, std::fs::Permissions::from_mode(DB_FILE_MODE))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
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
