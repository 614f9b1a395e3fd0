//! `executeSQLQuery`: a read-only SQL view of the cluster under the table and column names of
//! Cisco's data dictionary, answered by SQLite in memory. The view is built from the node's
//! cluster definition and rebuilt when the definition changes; the statement runs on it as
//! written (one `SELECT`, Informix's `SELECT SKIP m FIRST n` turned into `LIMIT`/`OFFSET`).
//!
//! Tables (columns as public AXL scripts use them; the data dictionary itself was not read, so
//! types and enum values are UNCONFIRMED):
//! - `device` (pkid, name, description, tkclass, tkmodel, tkdeviceprotocol, fkdevicepool,
//!   fkcallingsearchspace, fklocation, fkenduser): phones (tkclass 1) and device profiles (254);
//! - `numplan` (pkid, dnorpattern, fkroutepartition, tkpatternusage 2, description,
//!   alertingname, fkcallingsearchspace_sharedlineappear);
//! - `devicenumplanmap` (pkid, fkdevice, fknumplan, numplanindex, label, display);
//! - `enduser` (pkid, userid, firstname, lastname, mailid, telephonenumber, department);
//! - `enduserdevicemap` (pkid, fkenduser, fkdevice);
//! - `routepartition`, `callingsearchspace`, `devicepool` (pkid, name, description);
//! - `typemodel`, `typeclass` (enum, name). `typemodel.enum` is derived from the model's name
//!   (stable on every node), not Cisco's number.
//!
//! Bounds: the statement at most [`MAX_SQL`] bytes, at most [`MAX_SQL_ROWS`] rows (more is a
//! fault naming the count, as Cisco's "Query request too large"), and at most [`MAX_VM_STEPS`]
//! SQLite virtual-machine steps (a cross join of everything is stopped, not run to its end).
//! One statement at a time per node; the view has no other table, and `PRAGMA query_only`.

use std::sync::Arc;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Column, ConnectOptions, Connection, Row};

use crate::cluster::Cluster;
use crate::config::ClusterDefinition;

/// Longest statement accepted.
pub const MAX_SQL: usize = 16 * 1024;
/// Rows one answer may carry.
pub const MAX_SQL_ROWS: usize = 10_000;
/// SQLite steps one statement may take (a fraction of a second).
pub const MAX_VM_STEPS: u64 = 20_000_000;
/// The progress handler's granularity (steps between checks).
const STEP_CHUNK: i32 = 10_000;

/// Why a statement got no rows: the fault's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError(pub String);

/// Statements waiting for the view; more are refused as busy.
pub const MAX_QUEUED: usize = 16;

type Rows = Vec<Vec<(String, String)>>;

struct Job {
    cluster: Arc<Cluster>,
    sql: String,
    reply: tokio::sync::oneshot::Sender<Result<Rows, SqlError>>,
}

/// The view of one node: a thread of its own owns the SQLite connection and answers one
/// statement at a time (SQLite's work is synchronous; the node's async workers only wait for
/// the answer), rebuilding the view when the node's definition changes.
#[derive(Default)]
pub struct SqlView {
    jobs: std::sync::Mutex<Option<tokio::sync::mpsc::Sender<Job>>>,
}

impl SqlView {
    /// Runs `sql` on the view of `cluster`: rows of (column, value).
    pub async fn query(&self, cluster: Arc<Cluster>, sql: &str) -> Result<Rows, SqlError> {
        let statement = prepare(sql)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            cluster,
            sql: statement,
            reply,
        };
        let sent = {
            let mut g = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            let tx = g.get_or_insert_with(start_worker);
            tx.try_send(job)
        };
        match sent {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                return Err(SqlError(format!(
                    "busy: {MAX_QUEUED} statements are waiting; try again later"
                )))
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                *self.jobs.lock().unwrap_or_else(|p| p.into_inner()) = None;
                return Err(SqlError("the SQL view stopped; try again".into()));
            }
        }
        answer
            .await
            .unwrap_or_else(|_| Err(SqlError("the SQL view stopped; try again".into())))
    }
}

fn start_worker() -> tokio::sync::mpsc::Sender<Job> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Job>(MAX_QUEUED);
    let spawned = std::thread::Builder::new()
        .name("axl-sql".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
                return;
            };
            rt.block_on(async move {
                let mut built: Option<(Arc<Cluster>, SqliteConnection)> = None;
                while let Some(job) = rx.recv().await {
                    let stale = built
                        .as_ref()
                        .is_none_or(|(of, _)| !Arc::ptr_eq(of, &job.cluster));
                    if stale {
                        built = None;
                        match build(job.cluster.definition()).await {
                            Ok(conn) => built = Some((job.cluster.clone(), conn)),
                            Err(e) => {
                                let _ = job.reply.send(Err(SqlError(format!(
                                    "the SQL view could not be built: {e}"
                                ))));
                                continue;
                            }
                        }
                    }
                    if let Some((_, conn)) = built.as_mut() {
                        let _ = job.reply.send(run(conn, &job.sql).await);
                    }
                }
            });
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "AXL: the SQL view's thread could not start");
    }
    tx
}

/// Checks the statement and turns Informix's `SKIP`/`FIRST` into SQLite's `LIMIT`/`OFFSET`.
fn prepare(sql: &str) -> Result<String, SqlError> {
    if sql.len() > MAX_SQL {
        return Err(SqlError(format!(
            "the statement is {} bytes, over the {MAX_SQL}-byte limit",
            sql.len()
        )));
    }
    let s = sql.trim().trim_end_matches(';').trim();
    if s.contains(';') {
        return Err(SqlError("one statement only (no ';' inside it)".into()));
    }
    let words: Vec<&str> = s.split_whitespace().collect();
    let Some(first) = words.first() else {
        return Err(SqlError("the statement is empty".into()));
    };
    if first.eq_ignore_ascii_case("with") {
        // A common table expression: read-only like any SELECT (the view is query_only).
        return Ok(s.to_string());
    }
    if !first.eq_ignore_ascii_case("select") {
        return Err(SqlError(format!(
            "{first}: executeSQLQuery runs SELECT statements only (this cluster's view is read-only)"
        )));
    }
    // SELECT [SKIP m] [FIRST n] ...
    let mut i = 1;
    let mut skip = None;
    let mut limit = None;
    loop {
        match (words.get(i), words.get(i + 1)) {
            (Some(w), Some(n)) if w.eq_ignore_ascii_case("skip") && skip.is_none() => {
                skip = Some(number(n)?);
                i += 2;
            }
            (Some(w), Some(n)) if w.eq_ignore_ascii_case("first") && limit.is_none() => {
                limit = Some(number(n)?);
                i += 2;
            }
            _ => break,
        }
    }
    if i == 1 {
        return Ok(s.to_string());
    }
    let rest = words[i..].join(" ");
    let mut out = format!("SELECT {rest}");
    match (limit, skip) {
        (Some(l), Some(o)) => out.push_str(&format!(" LIMIT {l} OFFSET {o}")),
        (Some(l), None) => out.push_str(&format!(" LIMIT {l}")),
        (None, Some(o)) => out.push_str(&format!(" LIMIT -1 OFFSET {o}")),
        (None, None) => {}
    }
    Ok(out)
}

fn number(s: &str) -> Result<u64, SqlError> {
    s.parse().map_err(|_| {
        SqlError(format!(
            "{s:?} is not a whole number (SKIP and FIRST take one)"
        ))
    })
}

/// A pkid as Cisco writes them: a lower-case UUID without braces.
fn pkid(kind: &str, name: &str) -> String {
    super::ops::uuid_of(kind, name)
        .trim_matches(|c| c == '{' || c == '}')
        .to_ascii_lowercase()
}

/// A model's `typemodel.enum`: derived from its name (UNCONFIRMED: not Cisco's numbers).
fn model_enum(model: &str) -> i64 {
    let h = crate::node::sha256_hex(model);
    i64::from_str_radix(&h[..7], 16).unwrap_or(0) + 1_000
}

const SCHEMA: &str = "
CREATE TABLE typeclass (enum INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE typemodel (enum INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE routepartition (pkid TEXT PRIMARY KEY, name TEXT, description TEXT);
CREATE TABLE callingsearchspace (pkid TEXT PRIMARY KEY, name TEXT, description TEXT, clause TEXT);
CREATE TABLE devicepool (pkid TEXT PRIMARY KEY, name TEXT);
CREATE TABLE device (pkid TEXT PRIMARY KEY, name TEXT, description TEXT, tkclass INTEGER,
    tkmodel INTEGER, tkdeviceprotocol INTEGER, fkdevicepool TEXT, fkcallingsearchspace TEXT,
    fklocation TEXT, fkenduser TEXT);
CREATE TABLE numplan (pkid TEXT PRIMARY KEY, dnorpattern TEXT, fkroutepartition TEXT,
    tkpatternusage INTEGER, description TEXT, alertingname TEXT,
    fkcallingsearchspace_sharedlineappear TEXT);
CREATE TABLE devicenumplanmap (pkid TEXT PRIMARY KEY, fkdevice TEXT, fknumplan TEXT,
    numplanindex INTEGER, label TEXT, display TEXT);
CREATE TABLE enduser (pkid TEXT PRIMARY KEY, userid TEXT, firstname TEXT, lastname TEXT,
    mailid TEXT, telephonenumber TEXT, department TEXT);
CREATE TABLE enduserdevicemap (pkid TEXT PRIMARY KEY, fkenduser TEXT, fkdevice TEXT);
CREATE INDEX devicenumplanmap_fkdevice ON devicenumplanmap (fkdevice);
CREATE INDEX devicenumplanmap_fknumplan ON devicenumplanmap (fknumplan);
CREATE INDEX device_name ON device (name);
CREATE INDEX numplan_dnorpattern ON numplan (dnorpattern);
";

/// The names the view answers to (for the fault of a table that is not there).
pub const TABLES: &[&str] = &[
    "device",
    "numplan",
    "devicenumplanmap",
    "enduser",
    "enduserdevicemap",
    "routepartition",
    "callingsearchspace",
    "devicepool",
    "typemodel",
    "typeclass",
];

async fn build(def: &ClusterDefinition) -> Result<SqliteConnection, sqlx::Error> {
    let mut conn = SqliteConnectOptions::new()
        .in_memory(true)
        .connect()
        .await?;
    sqlx::raw_sql(SCHEMA).execute(&mut conn).await?;
    let mut tx = conn.begin().await?;
    let opt = |o: &Option<String>| o.clone();
    for (e, n) in [(1, "Phone"), (254, "Device Profile")] {
        sqlx::query("INSERT INTO typeclass VALUES ($1, $2)")
            .bind(e as i64)
            .bind(n)
            .execute(&mut *tx)
            .await?;
    }
    let mut models: Vec<&str> = def
        .devices
        .iter()
        .map(|d| d.model.as_str())
        .chain(
            def.device_profiles
                .iter()
                .filter_map(|p| p.model.as_deref()),
        )
        .collect();
    models.sort_unstable();
    models.dedup();
    for m in models {
        sqlx::query("INSERT OR IGNORE INTO typemodel VALUES ($1, $2)")
            .bind(model_enum(m))
            .bind(m)
            .execute(&mut *tx)
            .await?;
    }
    for p in &def.partitions {
        sqlx::query("INSERT INTO routepartition VALUES ($1, $2, $3)")
            .bind(pkid("routePartition", &p.name))
            .bind(&p.name)
            .bind(opt(&p.description))
            .execute(&mut *tx)
            .await?;
    }
    for c in &def.calling_search_spaces {
        sqlx::query("INSERT INTO callingsearchspace VALUES ($1, $2, $3, $4)")
            .bind(pkid("css", &c.name))
            .bind(&c.name)
            .bind(opt(&c.description))
            .bind(c.partitions.join(":"))
            .execute(&mut *tx)
            .await?;
    }
    for p in &def.device_pools {
        sqlx::query("INSERT INTO devicepool VALUES ($1, $2)")
            .bind(pkid("devicePool", &p.name))
            .bind(&p.name)
            .execute(&mut *tx)
            .await?;
    }
    let line_pkid = |dn: &str, part: Option<&str>| pkid("line", &super::write::line_key(dn, part));
    for d in &def.directory_numbers {
        sqlx::query("INSERT INTO numplan VALUES ($1, $2, $3, 2, $4, $5, $6)")
            .bind(line_pkid(&d.pattern, d.partition.as_deref()))
            .bind(&d.pattern)
            .bind(d.partition.as_ref().map(|p| pkid("routePartition", p)))
            .bind(opt(&d.description))
            .bind(opt(&d.alerting_name))
            .bind(d.css.as_ref().map(|c| pkid("css", c)))
            .execute(&mut *tx)
            .await?;
    }
    for u in &def.end_users {
        sqlx::query("INSERT INTO enduser VALUES ($1, $2, $3, $4, $5, $6, NULL)")
            .bind(pkid("user", &u.userid))
            .bind(&u.userid)
            .bind(opt(&u.first_name))
            .bind(&u.last_name)
            .bind(opt(&u.mail))
            .bind(opt(&u.telephone_number))
            .execute(&mut *tx)
            .await?;
        for d in &u.associated_devices {
            sqlx::query("INSERT OR IGNORE INTO enduserdevicemap VALUES ($1, $2, $3)")
                .bind(pkid("enduserdevicemap", &format!("{}/{d}", u.userid)))
                .bind(pkid("user", &u.userid))
                .bind(pkid("phone", d))
                .execute(&mut *tx)
                .await?;
        }
    }
    // Phones, then device profiles (Cisco keeps both in `device`).
    let phones = def.devices.iter().map(|d| {
        (
            pkid("phone", &d.name),
            d.name.as_str(),
            d.description.clone(),
            1i64,
            Some(d.model.as_str()),
            Some(pkid("devicePool", &d.device_pool)),
            d.css.as_ref().map(|c| pkid("css", c)),
            d.location.as_ref().map(|l| pkid("location", l)),
            d.owner.as_ref().map(|o| pkid("user", o)),
            &d.lines,
        )
    });
    let profiles = def.device_profiles.iter().map(|p| {
        (
            pkid("deviceProfile", &p.name),
            p.name.as_str(),
            p.description.clone(),
            254i64,
            p.model.as_deref(),
            None,
            None,
            None,
            None,
            &p.lines,
        )
    });
    for (id, name, description, class, model, pool, css, location, owner, lines) in
        phones.chain(profiles)
    {
        sqlx::query("INSERT OR IGNORE INTO device VALUES ($1, $2, $3, $4, $5, 11, $6, $7, $8, $9)")
            .bind(&id)
            .bind(name)
            .bind(description)
            .bind(class)
            .bind(model.map(model_enum))
            .bind(pool)
            .bind(css)
            .bind(location)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        for (i, l) in lines.iter().enumerate() {
            sqlx::query("INSERT OR IGNORE INTO devicenumplanmap VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(pkid("devicenumplanmap", &format!("{name}/{}", i + 1)))
                .bind(&id)
                .bind(line_pkid(&l.dn, l.partition.as_deref()))
                .bind(i as i64 + 1)
                .bind(l.label.clone())
                .bind(l.display.clone())
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await?;
    sqlx::query("PRAGMA query_only = 1")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

/// An XML element name for a result column: Cisco answers one child per column, named as the
/// column (lower case); an expression without a name gets `col<N>`.
fn element_name(column: &str, index: usize) -> String {
    let c = column.to_ascii_lowercase();
    let ok = c
        .chars()
        .next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.chars().all(|x| x.is_ascii_alphanumeric() || x == '_');
    if ok {
        c
    } else {
        format!("col{}", index + 1)
    }
}

/// Reads the statement's rows: at most one more than [`MAX_SQL_ROWS`] (the statement runs as
/// a subquery under a `LIMIT`, which keeps its column names), and, when there are more, how
/// many it matches.
async fn collect(conn: &mut SqliteConnection, sql: &str) -> Result<(Rows, usize), sqlx::Error> {
    let limited = format!("SELECT * FROM ({sql}) LIMIT {}", MAX_SQL_ROWS + 1);
    let found = sqlx::query(&limited).fetch_all(&mut *conn).await?;
    let mut total = found.len();
    if total > MAX_SQL_ROWS {
        let count = format!("SELECT count(*) FROM ({sql})");
        let row = sqlx::query(&count).fetch_one(&mut *conn).await?;
        total = usize::try_from(row.try_get::<i64, _>(0)?).unwrap_or(usize::MAX);
    }
    let mut rows = Vec::with_capacity(found.len().min(MAX_SQL_ROWS));
    for row in found.iter().take(MAX_SQL_ROWS) {
        let mut out = Vec::with_capacity(row.columns().len());
        for (i, c) in row.columns().iter().enumerate() {
            // Every value as text, as Informix answers through AXL.
            let v: Option<String> = row.try_get_unchecked(i).unwrap_or(None);
            out.push((element_name(c.name(), i), v.unwrap_or_default()));
        }
        rows.push(out);
    }
    Ok((rows, total))
}

async fn run(conn: &mut SqliteConnection, sql: &str) -> Result<Rows, SqlError> {
    {
        let mut h = conn
            .lock_handle()
            .await
            .map_err(|e| SqlError(e.to_string()))?;
        let mut steps: u64 = 0;
        h.set_progress_handler(STEP_CHUNK, move || {
            steps += STEP_CHUNK as u64;
            steps < MAX_VM_STEPS
        });
    }
    let outcome = collect(conn, sql).await;
    if let Ok(mut h) = conn.lock_handle().await {
        h.remove_progress_handler();
    }
    match outcome {
        Ok((_, total)) if total > MAX_SQL_ROWS => Err(SqlError(format!(
            "Query request too large. Total rows matched: {total} rows. Suggestive Row Fetch: less than {MAX_SQL_ROWS} rows"
        ))),
        Ok((rows, _)) => Ok(rows),
        Err(e) => {
            let msg = e.to_string();
            Err(SqlError(if msg.contains("interrupted") {
                format!("the query took more than {MAX_VM_STEPS} steps and was stopped; narrow it (a join without its condition?)")
            } else if msg.contains("no such table") {
                format!("{msg} (this cluster's view has: {})", TABLES.join(", "))
            } else {
                msg
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn informix_skip_and_first_become_limit_and_offset() {
        assert_eq!(
            prepare("select name from device").unwrap(),
            "select name from device"
        );
        assert_eq!(
            prepare("SELECT FIRST 5 name FROM device;").unwrap(),
            "SELECT name FROM device LIMIT 5"
        );
        assert_eq!(
            prepare("select skip 10 first 5 name from device").unwrap(),
            "SELECT name from device LIMIT 5 OFFSET 10"
        );
        assert!(prepare("delete from device")
            .unwrap_err()
            .0
            .contains("SELECT statements only"));
        assert!(prepare("select 1; drop table device")
            .unwrap_err()
            .0
            .contains("one statement"));
        assert!(prepare("select first x name from device")
            .unwrap_err()
            .0
            .contains("whole number"));
    }

    #[tokio::test]
    async fn the_view_answers_the_usual_joins_and_bounds_the_rest() {
        let def = crate::services::demo().unwrap();
        let cluster = Arc::new(Cluster::new(def.clone()));
        let view = SqlView::default();
        let rows = view
            .query(
                cluster.clone(),
                "select d.name, n.dnorpattern, dm.numplanindex from device d \
                 join devicenumplanmap dm on dm.fkdevice = d.pkid \
                 join numplan n on n.pkid = dm.fknumplan where d.name = 'SEP00036BC7B973'",
            )
            .await
            .unwrap();
        assert_eq!(
            rows,
            vec![vec![
                ("name".into(), "SEP00036BC7B973".into()),
                ("dnorpattern".into(), "10001".into()),
                ("numplanindex".into(), "1".into()),
            ]]
        );
        let rows = view
            .query(
                cluster.clone(),
                "select count(*) from device where tkclass = 1",
            )
            .await
            .unwrap();
        assert_eq!(rows[0][0], ("col1".into(), def.devices.len().to_string()));
        let e = view
            .query(cluster.clone(), "select * from callmanager")
            .await
            .unwrap_err();
        assert!(
            e.0.contains("no such table") && e.0.contains("devicenumplanmap"),
            "{e:?}"
        );
        // A join of everything with everything is stopped, and the view still answers.
        let e = view
            .query(
                cluster.clone(),
                "select count(*) from numplan a, numplan b, numplan c, numplan d, numplan e",
            )
            .await
            .unwrap_err();
        assert!(e.0.contains("stopped"), "{e:?}");
        let e = view
            .query(
                cluster.clone(),
                "with recursive n(x) as (select 1 union all select x + 1 from n where x < 20000) select x from n",
            )
            .await
            .unwrap_err();
        assert!(e.0.contains("Query request too large"), "{e:?}");
        assert_eq!(
            view.query(cluster, "select name from typeclass where enum = 1")
                .await
                .unwrap(),
            vec![vec![("name".into(), "Phone".into())]]
        );
    }
}
