//! The Attendant Console's storage: the calls queued for the attendants (table
//! `attendant_calls`, migration 0021), as queries on the node's store handle. Answering is one
//! conditional UPDATE from `queued`: of attendants racing for one call exactly one wins.

use std::future::Future;

use serde::Serialize;
use sqlx::Row;

use crate::store::{Store, StoreError};

/// A call waiting in a queue, as the consoles see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueuedCall {
    pub call: u64,
    pub queue: String,
    pub calling: String,
    /// The CT gateway device (route point) holding it.
    pub device: String,
    /// Unix milliseconds.
    pub queued_at: i64,
}

pub trait AttendantCalls {
    /// A call redirected to a CT gateway device starts waiting.
    fn queue_call(
        &self,
        instance: &str,
        c: &QueuedCall,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The calls of `instance` waiting now, oldest first.
    fn waiting_calls(
        &self,
        instance: &str,
    ) -> impl Future<Output = Result<Vec<QueuedCall>, StoreError>> + Send;

    /// Every waiting call of the cluster (the status view), oldest first.
    fn all_waiting_calls(&self)
        -> impl Future<Output = Result<Vec<QueuedCall>, StoreError>> + Send;

    /// `attendant` answers the call if it still waits: true for the one answer that took it.
    fn answer_call(
        &self,
        instance: &str,
        call: u64,
        attendant: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// A waiting call ends unanswered (`abandoned`, `lost`): true if it was waiting.
    fn end_waiting(
        &self,
        instance: &str,
        call: u64,
        state: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Closes (as `lost`) the waiting calls of every other instance: a server taking over.
    fn close_other_instances(
        &self,
        instance: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

fn queued(r: &sqlx::any::AnyRow) -> Result<QueuedCall, StoreError> {
    Ok(QueuedCall {
        call: r.try_get::<i64, _>("call")? as u64,
        queue: r.try_get("queue")?,
        calling: r.try_get("calling")?,
        device: r.try_get("device")?,
        queued_at: r.try_get("queued_at")?,
    })
}

impl AttendantCalls for Store {
    async fn queue_call(&self, instance: &str, c: &QueuedCall) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO attendant_calls (instance, call, queue, calling, device, state, queued_at) \
             VALUES ($1, $2, $3, $4, $5, 'queued', $6)",
        )
        .bind(instance)
        .bind(c.call as i64)
        .bind(&c.queue)
        .bind(&c.calling)
        .bind(&c.device)
        .bind(c.queued_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn waiting_calls(&self, instance: &str) -> Result<Vec<QueuedCall>, StoreError> {
        let rows = sqlx::query(
            "SELECT call, queue, calling, device, queued_at FROM attendant_calls \
             WHERE state = 'queued' AND instance = $1 ORDER BY queued_at, call",
        )
        .bind(instance)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(queued).collect()
    }

    async fn all_waiting_calls(&self) -> Result<Vec<QueuedCall>, StoreError> {
        let rows = sqlx::query(
            "SELECT call, queue, calling, device, queued_at FROM attendant_calls \
             WHERE state = 'queued' ORDER BY queued_at, call",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(queued).collect()
    }

    async fn answer_call(
        &self,
        instance: &str,
        call: u64,
        attendant: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE attendant_calls SET state = 'answered', attendant = $1, answered_at = $2 \
             WHERE instance = $3 AND call = $4 AND state = 'queued'",
        )
        .bind(attendant)
        .bind(now_ms)
        .bind(instance)
        .bind(call as i64)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn end_waiting(
        &self,
        instance: &str,
        call: u64,
        state: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE attendant_calls SET state = $1, ended_at = $2 \
             WHERE instance = $3 AND call = $4 AND state = 'queued'",
        )
        .bind(state)
        .bind(now_ms)
        .bind(instance)
        .bind(call as i64)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn close_other_instances(&self, instance: &str, now_ms: i64) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE attendant_calls SET state = 'lost', ended_at = $1 \
             WHERE state = 'queued' AND instance <> $2",
        )
        .bind(now_ms)
        .bind(instance)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected())
    }
}

/// Calls the server holds for attendants after they answered them (steps 7-9, park): states
/// `transferring` (on a service queue), `transferred` (the target answered), `parked`, and
/// back to `answered` (recalled, retrieved). Every change is one conditional UPDATE from the
/// state the caller expects: of attendants racing for one parked call exactly one retrieves it.
pub trait AttendantHolds {
    /// The call `attendant` answered goes from `answered` to `state` on `device`: true if it
    /// was theirs and answered.
    fn hold_call(
        &self,
        instance: &str,
        call: u64,
        attendant: &str,
        state: &str,
        device: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The call goes from `from` to `to` (with `attendant` when given): true if it was `from`.
    fn set_call_state(
        &self,
        instance: &str,
        call: u64,
        from: &str,
        to: &str,
        attendant: Option<&str>,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The call parked on `device` now, if any.
    fn parked_on(
        &self,
        instance: &str,
        device: &str,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// `attendant` retrieves the parked call: true for the one retrieval that took it.
    fn retrieve_call(
        &self,
        instance: &str,
        call: u64,
        attendant: &str,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl AttendantHolds for Store {
    async fn hold_call(
        &self,
        instance: &str,
        call: u64,
        attendant: &str,
        state: &str,
        device: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE attendant_calls SET state = $1, device = $2 \
             WHERE instance = $3 AND call = $4 AND state = 'answered' AND attendant = $5",
        )
        .bind(state)
        .bind(device)
        .bind(instance)
        .bind(call as i64)
        .bind(attendant)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn set_call_state(
        &self,
        instance: &str,
        call: u64,
        from: &str,
        to: &str,
        attendant: Option<&str>,
    ) -> Result<bool, StoreError> {
        let r = match attendant {
            Some(a) => {
                sqlx::query(
                    "UPDATE attendant_calls SET state = $1, attendant = $2 \
                     WHERE instance = $3 AND call = $4 AND state = $5",
                )
                .bind(to)
                .bind(a)
                .bind(instance)
                .bind(call as i64)
                .bind(from)
                .execute(self.pool())
                .await?
            }
            None => {
                sqlx::query(
                    "UPDATE attendant_calls SET state = $1, ended_at = $2 \
                     WHERE instance = $3 AND call = $4 AND state = $5",
                )
                .bind(to)
                .bind(super::unix_ms())
                .bind(instance)
                .bind(call as i64)
                .bind(from)
                .execute(self.pool())
                .await?
            }
        };
        Ok(r.rows_affected() == 1)
    }

    async fn parked_on(&self, instance: &str, device: &str) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query(
            "SELECT call FROM attendant_calls \
             WHERE instance = $1 AND device = $2 AND state = 'parked' ORDER BY call LIMIT 1",
        )
        .bind(instance)
        .bind(device)
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            Some(r) => Some(r.try_get::<i64, _>("call")? as u64),
            None => None,
        })
    }

    async fn retrieve_call(
        &self,
        instance: &str,
        call: u64,
        attendant: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE attendant_calls SET state = 'answered', attendant = $1, answered_at = $2 \
             WHERE instance = $3 AND call = $4 AND state = 'parked'",
        )
        .bind(attendant)
        .bind(now_ms)
        .bind(instance)
        .bind(call as i64)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected() == 1)
    }
}
