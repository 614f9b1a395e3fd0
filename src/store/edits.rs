//! Edits of the stored definition while the cluster runs (AXL's add, update and remove): read,
//! change and write back in one transaction that holds the definition lock, so concurrent edits
//! from any node take turns and each one sees the last. Only the rows that changed are written
//! (a phone added to a 20,000-object cluster is one insert), and the digest moves on, which
//! PostgreSQL's trigger announces to every node (migration 0010).
//!
//! `source_digest` keeps the digest of the text last imported: a node restarted with the same
//! file serves the edited definition rather than importing the file again over the edits.

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use super::{definition_of, rows_of, set_meta, unix_now, Backend, Store, StoreError, IMPORT_LOCK};
use crate::config::ClusterDefinition;

/// An edit that was committed.
#[derive(Debug)]
pub struct Edited<T> {
    /// The definition as it now stands in the database.
    pub definition: ClusterDefinition,
    /// Its digest (`cluster_meta.digest`).
    pub digest: String,
    /// What the edit returned.
    pub value: T,
}

type Row4 = (String, i64, String, String);

impl Store {
    /// Applies `edit` to the stored definition in one transaction. `Ok(Err(e))`: the edit
    /// refused (nothing written); `Err`: the database failed (nothing written).
    pub async fn edit_definition<T, E>(
        &self,
        by: &str,
        edit: impl FnOnce(&mut ClusterDefinition) -> Result<T, E>,
    ) -> Result<Result<Edited<T>, E>, StoreError> {
        let mut tx = match self.backend {
            // The write lock at once: two deferred transactions that both read would
            // deadlock on the upgrade.
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT count(*) FROM (SELECT pg_advisory_xact_lock($1)) AS l")
                    .bind(IMPORT_LOCK)
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        };
        let rows = sqlx::query(
            "SELECT kind, position, name, body FROM config_objects ORDER BY kind, position",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut old: Vec<Row4> = Vec::with_capacity(rows.len());
        for r in rows {
            old.push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?));
        }
        let Some(mut def) = definition_of(old.iter().map(|r| (r.0.clone(), r.3.clone())))? else {
            return Err(StoreError::Corrupt {
                kind: "definition".into(),
                reason: "the database holds no cluster definition to edit".into(),
            });
        };
        let value = match edit(&mut def) {
            Ok(v) => v,
            Err(e) => {
                tx.rollback().await?;
                return Ok(Err(e));
            }
        };
        let new = rows_of(&def)?;
        for w in plan(&old, &new) {
            match w {
                Write::Delete(kind, pos) => {
                    sqlx::query("DELETE FROM config_objects WHERE kind = $1 AND position = $2")
                        .bind(kind)
                        .bind(pos)
                        .execute(&mut *tx)
                        .await?;
                }
                Write::DeleteKind(kind) => {
                    sqlx::query("DELETE FROM config_objects WHERE kind = $1")
                        .bind(kind)
                        .execute(&mut *tx)
                        .await?;
                }
                Write::Update(kind, pos, body) => {
                    sqlx::query(
                        "UPDATE config_objects SET body = $3 WHERE kind = $1 AND position = $2",
                    )
                    .bind(kind)
                    .bind(pos)
                    .bind(body)
                    .execute(&mut *tx)
                    .await?;
                }
                Write::Insert(kind, pos, name, body) => {
                    sqlx::query(
                        "INSERT INTO config_objects (kind, position, name, body) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(kind)
                    .bind(pos)
                    .bind(name)
                    .bind(body)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        let json = serde_json::to_string(&def).map_err(|e| StoreError::Corrupt {
            kind: "definition".into(),
            reason: e.to_string(),
        })?;
        let digest = super::digest(&json);
        let edits: u64 = sqlx::query("SELECT value FROM cluster_meta WHERE key = 'edits'")
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<String, _>(0))
            .transpose()?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        set_meta(&mut tx, "edits", &(edits + 1).to_string()).await?;
        set_meta(&mut tx, "edited_at", &unix_now().to_string()).await?;
        set_meta(&mut tx, "edited_by", by).await?;
        set_meta(&mut tx, "digest", &digest).await?;
        tx.commit().await?;
        Ok(Ok(Edited {
            definition: def,
            digest,
            value,
        }))
    }

    /// How many edits were made since the last import (0 when none or never recorded).
    pub async fn edits_since_import(&self) -> Result<u64, StoreError> {
        Ok(self
            .meta("edits")
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Write<'a> {
    Delete(&'a str, i64),
    DeleteKind(&'a str),
    Update(&'a str, i64, &'a str),
    Insert(&'a str, i64, &'a str, &'a str),
}

/// The writes that turn the stored rows `old` (with their positions) into `new` (positions
/// 0..n per kind). Within a kind whose objects all have distinct names on both sides and whose
/// survivors keep their order with the additions at the end (what an edit does), only the rows
/// that changed are written: a removal leaves a gap in the positions, which ordering ignores.
/// Any other kind is rewritten whole.
fn plan<'a>(old: &'a [Row4], new: &'a [Row4]) -> Vec<Write<'a>> {
    let mut kinds: Vec<&str> = old.iter().chain(new).map(|r| r.0.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut out = Vec::new();
    for kind in kinds {
        let o: Vec<&Row4> = old.iter().filter(|r| r.0 == kind).collect();
        let n: Vec<&Row4> = new.iter().filter(|r| r.0 == kind).collect();
        if o.len() == n.len() && o.iter().zip(&n).all(|(a, b)| a.3 == b.3) {
            continue;
        }
        match targeted(kind, &o, &n) {
            Some(w) => out.extend(w),
            None => {
                out.push(Write::DeleteKind(kind));
                for r in &n {
                    out.push(Write::Insert(kind, r.1, &r.2, &r.3));
                }
            }
        }
    }
    out
}

fn targeted<'a>(kind: &'a str, o: &[&'a Row4], n: &[&'a Row4]) -> Option<Vec<Write<'a>>> {
    let unique = |rows: &[&Row4]| {
        let mut seen = HashSet::new();
        rows.iter()
            .all(|r| !r.2.is_empty() && seen.insert(r.2.as_str()))
    };
    if !unique(o) || !unique(n) {
        return None;
    }
    let new_names: HashSet<&str> = n.iter().map(|r| r.2.as_str()).collect();
    let old_by_name: HashMap<&str, &Row4> = o.iter().map(|r| (r.2.as_str(), *r)).collect();
    // The survivors, in the new order, must be the old ones in the old order; the rest follow.
    let survivors_old: Vec<&str> = o
        .iter()
        .map(|r| r.2.as_str())
        .filter(|m| new_names.contains(m))
        .collect();
    let survivors_new: Vec<&str> = n
        .iter()
        .map(|r| r.2.as_str())
        .take_while(|m| old_by_name.contains_key(m))
        .collect();
    if survivors_old != survivors_new {
        return None;
    }
    let mut out = Vec::new();
    for r in o {
        if !new_names.contains(r.2.as_str()) {
            out.push(Write::Delete(kind, r.1));
        }
    }
    let mut next = o.iter().map(|r| r.1).max().map_or(0, |m| m + 1);
    for r in n {
        match old_by_name.get(r.2.as_str()) {
            Some(was) if was.3 != r.3 => out.push(Write::Update(kind, was.1, &r.3)),
            Some(_) => {}
            None => {
                out.push(Write::Insert(kind, next, &r.2, &r.3));
                next += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, pos: i64, name: &str, body: &str) -> Row4 {
        (kind.into(), pos, name.into(), body.into())
    }

    #[test]
    fn an_edit_writes_only_what_changed() {
        let old = vec![
            row("devices", 0, "A", "a"),
            row("devices", 2, "B", "b"),
            row("devices", 3, "C", "c"),
            row("cluster", 0, "cluster", "x"),
        ];
        let new = vec![
            row("devices", 0, "A", "a"),
            row("devices", 1, "C", "c2"),
            row("devices", 2, "D", "d"),
            row("cluster", 0, "cluster", "x"),
        ];
        assert_eq!(
            plan(&old, &new),
            vec![
                Write::Delete("devices", 2),
                Write::Update("devices", 3, "c2"),
                Write::Insert("devices", 4, "D", "d"),
            ]
        );
    }

    #[test]
    fn a_reordered_or_unnamed_kind_is_rewritten_whole() {
        let old = vec![row("k", 0, "A", "a"), row("k", 1, "B", "b")];
        let new = vec![row("k", 0, "B", "b"), row("k", 1, "A", "a")];
        let p = plan(&old, &new);
        assert_eq!(p[0], Write::DeleteKind("k"));
        assert_eq!(p.len(), 3);
        let old = vec![row("k", 0, "", "a")];
        let new = vec![row("k", 0, "", "b")];
        assert_eq!(plan(&old, &new)[0], Write::DeleteKind("k"));
        // A kind that disappears (an emptied list is not serialised) is deleted.
        let p = plan(&old, &[]);
        assert_eq!(p, vec![Write::DeleteKind("k")]);
    }
}
