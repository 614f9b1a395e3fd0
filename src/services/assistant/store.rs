//! The Assistant service's storage: each manager's state (table `assistant_managers`,
//! migration 0018), as queries on the node's store handle. Every change is one UPDATE that
//! bumps `version`; a change that names the version it expects applies only if the row still
//! has it, so of writers racing from one version exactly one wins.

use std::future::Future;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::store::{Store, StoreError};

/// Which filter list applies while filtering is on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterMode {
    /// Calls from numbers on the inclusive list go to the manager, the rest to the assistant.
    #[default]
    Inclusive,
    /// Calls from numbers on the exclusive list go to the assistant, the rest to the manager.
    Exclusive,
}

impl FilterMode {
    fn as_str(self) -> &'static str {
        match self {
            FilterMode::Inclusive => "inclusive",
            FilterMode::Exclusive => "exclusive",
        }
    }
}

/// A manager's state. [`Default`] is Cisco's initial settings: filtering on, inclusive, empty
/// lists (every call goes to the assistant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerState {
    pub dnd: bool,
    pub divert_all: bool,
    /// Where DivertAll sends calls; none: the manager's active assistant.
    pub divert_target: Option<String>,
    pub filter_on: bool,
    pub filter_mode: FilterMode,
    pub inclusive_filters: Vec<String>,
    pub exclusive_filters: Vec<String>,
    /// Assistant selection (proxy line mode): the assistant whose proxy line gets the calls
    /// first; none: the manager's first assistant.
    pub selected_assistant: Option<String>,
    /// Changes so far (0: never changed).
    pub version: i64,
}

impl Default for ManagerState {
    fn default() -> Self {
        ManagerState {
            dnd: false,
            divert_all: false,
            divert_target: None,
            filter_on: true,
            filter_mode: FilterMode::Inclusive,
            inclusive_filters: Vec::new(),
            exclusive_filters: Vec::new(),
            selected_assistant: None,
            version: 0,
        }
    }
}

/// A change to a manager's state: the fields given are set, the rest kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerChange {
    pub dnd: Option<bool>,
    pub divert_all: Option<bool>,
    /// An empty string clears it (back to the assistant).
    pub divert_target: Option<String>,
    pub filter_on: Option<bool>,
    pub filter_mode: Option<FilterMode>,
    pub inclusive_filters: Option<Vec<String>>,
    pub exclusive_filters: Option<Vec<String>>,
    /// An empty string clears it (back to the first assistant).
    pub selected_assistant: Option<String>,
    /// Apply only if the stored version is this one (else [`Changed::Conflict`]).
    pub if_version: Option<i64>,
}

impl ManagerChange {
    pub fn is_empty(&self) -> bool {
        self.dnd.is_none()
            && self.divert_all.is_none()
            && self.divert_target.is_none()
            && self.filter_on.is_none()
            && self.filter_mode.is_none()
            && self.inclusive_filters.is_none()
            && self.exclusive_filters.is_none()
            && self.selected_assistant.is_none()
    }
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    Applied(ManagerState),
    /// `if_version` named a version the row no longer has: the state as it is now.
    Conflict(ManagerState),
}

pub trait ManagerStates {
    /// The manager's state (the initial settings when it was never changed).
    fn manager_state(
        &self,
        manager: &str,
    ) -> impl Future<Output = Result<ManagerState, StoreError>> + Send;

    /// Applies `change` at `now` (unix seconds).
    fn change_manager_state(
        &self,
        manager: &str,
        change: &ManagerChange,
        now: i64,
    ) -> impl Future<Output = Result<Changed, StoreError>> + Send;
}

const COLUMNS: &str = "dnd, divert_all, divert_target, filter_on, filter_mode, \
                       inclusive_filters, exclusive_filters, selected_assistant, version";

fn list(text: &str) -> Vec<String> {
    // Our own JSON; a row that no longer parses reads as an empty list, not an error.
    serde_json::from_str(text).unwrap_or_default()
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<ManagerState, StoreError> {
    let mode: String = row.try_get("filter_mode")?;
    Ok(ManagerState {
        dnd: row.try_get::<i64, _>("dnd")? != 0,
        divert_all: row.try_get::<i64, _>("divert_all")? != 0,
        divert_target: row.try_get("divert_target")?,
        filter_on: row.try_get::<i64, _>("filter_on")? != 0,
        filter_mode: if mode == "exclusive" {
            FilterMode::Exclusive
        } else {
            FilterMode::Inclusive
        },
        inclusive_filters: list(&row.try_get::<String, _>("inclusive_filters")?),
        exclusive_filters: list(&row.try_get::<String, _>("exclusive_filters")?),
        selected_assistant: row.try_get("selected_assistant")?,
        version: row.try_get("version")?,
    })
}

enum Value {
    Int(i64),
    Text(Option<String>),
}

impl ManagerStates for Store {
    async fn manager_state(&self, manager: &str) -> Result<ManagerState, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM assistant_managers WHERE manager = $1"
        ))
        .bind(manager)
        .fetch_optional(self.pool())
        .await?;
        match row {
            Some(r) => from_row(&r),
            None => Ok(ManagerState::default()),
        }
    }

    async fn change_manager_state(
        &self,
        manager: &str,
        change: &ManagerChange,
        now: i64,
    ) -> Result<Changed, StoreError> {
        sqlx::query(
            "INSERT INTO assistant_managers (manager) VALUES ($1) ON CONFLICT (manager) DO NOTHING",
        )
        .bind(manager)
        .execute(self.pool())
        .await?;
        let mut sets: Vec<(&str, Value)> = Vec::new();
        let flag = |b: bool| Value::Int(i64::from(b));
        if let Some(b) = change.dnd {
            sets.push(("dnd", flag(b)));
        }
        if let Some(b) = change.divert_all {
            sets.push(("divert_all", flag(b)));
        }
        if let Some(t) = &change.divert_target {
            let t = t.trim();
            sets.push((
                "divert_target",
                Value::Text((!t.is_empty()).then(|| t.to_string())),
            ));
        }
        if let Some(t) = &change.selected_assistant {
            let t = t.trim();
            sets.push((
                "selected_assistant",
                Value::Text((!t.is_empty()).then(|| t.to_string())),
            ));
        }
        if let Some(b) = change.filter_on {
            sets.push(("filter_on", flag(b)));
        }
        if let Some(m) = change.filter_mode {
            sets.push(("filter_mode", Value::Text(Some(m.as_str().into()))));
        }
        for (col, l) in [
            ("inclusive_filters", &change.inclusive_filters),
            ("exclusive_filters", &change.exclusive_filters),
        ] {
            if let Some(l) = l {
                let json = serde_json::to_string(l).unwrap_or_else(|_| "[]".into());
                sets.push((col, Value::Text(Some(json))));
            }
        }
        let mut sql = String::from("UPDATE assistant_managers SET ");
        let mut n = 0;
        for (col, _) in &sets {
            n += 1;
            sql.push_str(&format!("{col} = ${n}, "));
        }
        n += 1;
        sql.push_str(&format!("version = version + 1, updated_at = ${n} "));
        n += 1;
        sql.push_str(&format!("WHERE manager = ${n}"));
        if change.if_version.is_some() {
            n += 1;
            sql.push_str(&format!(" AND version = ${n}"));
        }
        sql.push_str(&format!(" RETURNING {COLUMNS}"));
        let mut q = sqlx::query(&sql);
        for (_, v) in sets {
            q = match v {
                Value::Int(i) => q.bind(i),
                Value::Text(t) => q.bind(t),
            };
        }
        q = q.bind(now).bind(manager);
        if let Some(v) = change.if_version {
            q = q.bind(v);
        }
        match q.fetch_optional(self.pool()).await? {
            Some(row) => Ok(Changed::Applied(from_row(&row)?)),
            None => Ok(Changed::Conflict(self.manager_state(manager).await?)),
        }
    }
}
