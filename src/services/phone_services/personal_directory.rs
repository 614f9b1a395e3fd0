//! Personal Directory: each end user's own entries (table `personal_directory`, migration
//! 0019, on both backends), shown on a phone as a phone service after the user's ID and PIN,
//! kept by the user over HTTP with their password.
//!
//! Phone side (Cisco's paths: `/ccmpd/pdCheckLogin.do?name=<device>` is the Personal
//! Directory service URL of Unified CM before the built-in one; `/ccmpd/login.do` takes
//! `name`, `userid`, `pin`):
//! - `GET /ccmpd/pdCheckLogin.do?name=SEP...`: a `CiscoIPPhoneInput` asking User ID and PIN,
//!   submitting to `/ccmpd/login.do?name=SEP...`.
//! - `GET /ccmpd/login.do?name=SEP...&userid=U&pin=P`: the PIN is checked with the lockout
//!   policy (the same `pin:<user>` count as Extension Mobility's); right, a
//!   `CiscoIPPhoneMenu` of the user's entries, each dialling its number (`Dial:`), by last
//!   name, at most 100 (a menu's limit; `start=N` for the next 100 with a Next softkey);
//!   wrong, locked or unknown, a `CiscoIPPhoneText` saying the login failed.
//!
//! User side, HTTP Basic with an end user's password:
//! - `GET /ucm/pd/entries`: the user's entries as JSON.
//! - `POST /ucm/pd/entries` `{"first_name","last_name","nickname","number"}`: 201 `{"id"}`;
//!   a number is required (digits, `*`, `#`, `+`), names at most 64 characters; at most
//!   [`MAX_ENTRIES`] entries per user (409 past it).
//! - `DELETE /ucm/pd/entries/{id}`: 204, or 404 when the user has no such entry.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::node::NodeState;
use crate::store::{Store, StoreError};
use crate::wire::xml::{CiscoIPPhoneObject, Input, InputItem, Menu, Text};

/// Entries one user may keep. UNCONFIRMED: Cisco documents no limit here; this one bounds
/// what a user can store.
pub const MAX_ENTRIES: i64 = 500;
/// Items per page on the phone: a CiscoIPPhoneMenu's most.
pub const PAGE: usize = 100;
const MAX_NAME: usize = 64;

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub nickname: String,
    pub number: String,
}

impl Entry {
    /// How the phone lists it: "Last, First (nickname)", or the number when nameless.
    pub fn label(&self) -> String {
        let name = match (self.last_name.is_empty(), self.first_name.is_empty()) {
            (false, false) => format!("{}, {}", self.last_name, self.first_name),
            (false, true) => self.last_name.clone(),
            (true, false) => self.first_name.clone(),
            (true, true) => self.number.clone(),
        };
        if self.nickname.is_empty() {
            name
        } else {
            format!("{name} ({})", self.nickname)
        }
    }

    /// What is wrong with the entry, for the 400 answer.
    pub fn problem(&self) -> Option<String> {
        let n = self.number.trim();
        if n.is_empty() || n.len() > 32 {
            return Some("number: 1 to 32 characters".into());
        }
        if !n
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_digit() || c == '*' || c == '#' || (c == '+' && i == 0))
        {
            return Some(format!("number {n:?}: digits, * and #, and + first"));
        }
        for (f, v) in [
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
            ("nickname", &self.nickname),
        ] {
            if v.chars().count() > MAX_NAME || v.chars().any(char::is_control) {
                return Some(format!(
                    "{f}: at most {MAX_NAME} characters, no control characters"
                ));
            }
        }
        None
    }
}

/// The Personal Directory in the database.
pub trait PersonalDirectory {
    /// `user`'s entries by last name, first name.
    fn pd_entries(&self, user: &str)
        -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send;
    /// Adds an entry; `None` when the user already has [`MAX_ENTRIES`].
    fn pd_add(
        &self,
        user: &str,
        e: &Entry,
        now: i64,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
    /// Removes `user`'s entry `id`; false when there is none.
    fn pd_delete(
        &self,
        user: &str,
        id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl PersonalDirectory for Store {
    async fn pd_entries(&self, user: &str) -> Result<Vec<Entry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, first_name, last_name, nickname, number FROM personal_directory \
             WHERE userid = $1 ORDER BY last_name, first_name, id",
        )
        .bind(user)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Entry {
                    id: r.try_get("id")?,
                    first_name: r.try_get("first_name")?,
                    last_name: r.try_get("last_name")?,
                    nickname: r.try_get("nickname")?,
                    number: r.try_get("number")?,
                })
            })
            .collect()
    }

    async fn pd_add(&self, user: &str, e: &Entry, now: i64) -> Result<Option<String>, StoreError> {
        let id = hex::encode(rand::random::<[u8; 8]>());
        // One statement: the count and the insert cannot race on either backend.
        let r = sqlx::query(
            "INSERT INTO personal_directory (id, userid, first_name, last_name, nickname, number, created_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7 \
             WHERE (SELECT COUNT(*) FROM personal_directory WHERE userid = $2) < $8",
        )
        .bind(&id)
        .bind(user)
        .bind(e.first_name.trim())
        .bind(e.last_name.trim())
        .bind(e.nickname.trim())
        .bind(e.number.trim())
        .bind(now)
        .bind(MAX_ENTRIES)
        .execute(self.pool())
        .await?;
        Ok((r.rows_affected() == 1).then_some(id))
    }

    async fn pd_delete(&self, user: &str, id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM personal_directory WHERE userid = $1 AND id = $2")
            .bind(user)
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() > 0)
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn param<'a>(q: &'a HashMap<String, String>, k: &str) -> &'a str {
    q.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(k))
        .map_or("", |(_, v)| v.as_str())
        .trim()
}

/// `GET /ccmpd/pdCheckLogin.do?name=SEP...`: asks the user's ID and PIN.
pub async fn check_login_handler(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let base = if super::came_over_https(&state, &headers) {
        &state.https_base
    } else {
        &state.http_base
    };
    let url = crate::wire::codec::with_query(
        &format!("{base}/ccmpd/login.do"),
        &[("name", param(&q, "name"))],
    );
    let input = Input::new("Personal Directory", &url)
        .item(InputItem::new("User ID", "userid", "A"))
        .item(InputItem::new("PIN", "pin", "NP"));
    super::xml_reply(&CiscoIPPhoneObject::Input(input))
}

/// `GET /ccmpd/login.do?name=SEP...&userid=U&pin=P[&start=N]`: the user's entries.
pub async fn login_handler(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    use crate::services::authenticate::{check_secret, Lockout, SecretCheck};
    let user = param(&q, "userid").to_string();
    let pin = param(&q, "pin").to_string();
    let device = param(&q, "name").to_string();
    let failed = |why: &str| {
        tracing::info!(
            user,
            device,
            reason = why,
            "Personal Directory: login refused"
        );
        super::xml_reply(&CiscoIPPhoneObject::Text(Text::new(
            "Personal Directory",
            "Login failed: check your user ID and PIN.",
        )))
    };
    let cluster = state.cluster();
    let hash = cluster.end_user(&user).and_then(|u| u.pin_hash.clone());
    let p = cluster.section::<super::model::PhoneServicesParameters>();
    let lockout = Lockout {
        threshold: p.auth_lockout_threshold,
        lock_secs: i64::from(p.auth_lockout_minutes) * 60,
    };
    drop(cluster);
    // The same count as Extension Mobility's PIN checks: one PIN, one lockout.
    match check_secret(
        &state,
        &format!("pin:{user}"),
        &pin,
        hash.as_deref(),
        lockout,
    )
    .await
    {
        SecretCheck::Ok => {}
        SecretCheck::Busy { retry_after } | SecretCheck::Throttled { retry_after } => {
            tracing::info!(user, retry_after, "Personal Directory: busy or throttled");
            return failed("busy or throttled");
        }
        SecretCheck::Locked => return failed("locked out"),
        SecretCheck::Wrong { .. } => return failed("wrong PIN"),
        SecretCheck::Unavailable(e) => return failed(&e),
    }
    let entries = match state.store.pd_entries(&user).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(user, error = %e, "Personal Directory: cannot read the entries");
            return super::xml_reply(&CiscoIPPhoneObject::Text(Text::new(
                "Personal Directory",
                "The directory cannot be read now; try again later.",
            )));
        }
    };
    let start: usize = param(&q, "start").parse().unwrap_or(0);
    let mut menu = Menu::new("Personal Directory");
    for e in entries.iter().skip(start).take(PAGE) {
        let label: String = e.label().chars().take(64).collect();
        menu = menu.item(&label, &format!("Dial:{}", e.number));
    }
    if menu.items.is_empty() {
        menu.base.prompt = Some("No entries".into());
    } else {
        menu.base.prompt = Some(format!("{} entries", entries.len()));
    }
    menu = menu
        .soft_key("Dial", "SoftKey:Select", 1)
        .soft_key("Exit", "SoftKey:Exit", 2);
    if entries.len() > start + PAGE {
        let base = if super::came_over_https(&state, &headers) {
            &state.https_base
        } else {
            &state.http_base
        };
        let next = crate::wire::codec::with_query(
            &format!("{base}/ccmpd/login.do"),
            &[
                ("name", device.as_str()),
                ("userid", user.as_str()),
                ("pin", pin.as_str()),
                ("start", &(start + PAGE).to_string()),
            ],
        );
        menu = menu.soft_key("Next", &next, 3);
    }
    tracing::info!(
        user,
        device,
        entries = entries.len(),
        "Personal Directory shown"
    );
    super::xml_reply(&CiscoIPPhoneObject::Menu(menu))
}

/// The end user named by HTTP Basic credentials (application users have no Personal
/// Directory: 403).
async fn owner(state: &Arc<NodeState>, headers: &HeaderMap) -> Result<String, Response> {
    let user = crate::services::authenticate::basic_user(state, headers, "an end user").await?;
    if state.cluster().end_user(&user).is_none() {
        return Err((
            StatusCode::FORBIDDEN,
            "only end users have a Personal Directory\n",
        )
            .into_response());
    }
    Ok(user)
}

fn store_failed(e: StoreError) -> Response {
    tracing::warn!(error = %e, "Personal Directory: database");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the database cannot be used now: {e}\n"),
    )
        .into_response()
}

/// `GET /ucm/pd/entries`.
pub async fn list_handler(State(state): State<Arc<NodeState>>, headers: HeaderMap) -> Response {
    let user = match owner(&state, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match state.store.pd_entries(&user).await {
        Ok(e) => axum::Json(serde_json::json!({"user": user, "entries": e})).into_response(),
        Err(e) => store_failed(e),
    }
}

/// `POST /ucm/pd/entries`.
pub async fn add_handler(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let user = match owner(&state, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let entry: Entry = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!(
                "not an entry ({{\"first_name\",\"last_name\",\"nickname\",\"number\"}}): {e}\n"
            ),
            )
                .into_response()
        }
    };
    if let Some(p) = entry.problem() {
        return (StatusCode::BAD_REQUEST, format!("{p}\n")).into_response();
    }
    match state.store.pd_add(&user, &entry, now_secs()).await {
        Ok(Some(id)) => {
            tracing::info!(user, id, "Personal Directory: entry added");
            (
                StatusCode::CREATED,
                axum::Json(serde_json::json!({"id": id})),
            )
                .into_response()
        }
        Ok(None) => (
            StatusCode::CONFLICT,
            format!("{user} already has {MAX_ENTRIES} entries\n"),
        )
            .into_response(),
        Err(e) => store_failed(e),
    }
}

/// `DELETE /ucm/pd/entries/{id}`.
pub async fn delete_handler(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let user = match owner(&state, &headers).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match state.store.pd_delete(&user, &id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => (
            StatusCode::NOT_FOUND,
            format!("{user} has no entry {id:?}\n"),
        )
            .into_response(),
        Err(e) => store_failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(first: &str, last: &str, nick: &str, number: &str) -> Entry {
        Entry {
            id: String::new(),
            first_name: first.into(),
            last_name: last.into(),
            nickname: nick.into(),
            number: number.into(),
        }
    }

    #[test]
    fn labels_and_checks() {
        assert_eq!(e("Ann", "Lee", "", "1").label(), "Lee, Ann");
        assert_eq!(e("", "", "", "1").label(), "1");
        assert_eq!(e("Ann", "", "mum", "1").label(), "Ann (mum)");
        assert!(e("", "", "", "+14085551234").problem().is_none());
        assert!(e("", "", "", "").problem().is_some());
        assert!(e("", "", "", "1+2").problem().is_some());
        assert!(e("", "", "", "12a").problem().is_some());
        assert!(e(&"x".repeat(65), "", "", "1").problem().is_some());
    }
}
