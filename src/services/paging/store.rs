//! The Paging Server's storage: page reports, newest kept (table `page_reports`, in the shared
//! migration sequence), as queries on the node's store handle.

use std::future::Future;

use sqlx::Row;

use crate::store::{Backend, Store, StoreError};

/// A phone another instance's page left listening: `(instance, node, call_id, device, ip)`.
pub type OrphanListener = (String, String, String, String, String);

/// Page reports in the database.
pub trait PageReports {
    /// Keeps a finished page's report (JSON); at most `keep` reports are kept, oldest go first.
    fn add_page_report(
        &self,
        id: &str,
        started_at: i64,
        call_id: &str,
        report: &str,
        keep: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The newest `limit` page reports (JSON), newest first; only `call_id`'s when given.
    fn page_reports(
        &self,
        call_id: Option<&str>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Which of `call_ids` have a page report stored (one query for all of them; the caller
    /// bounds how many it asks about).
    fn page_report_call_ids(
        &self,
        call_ids: &[String],
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Records the phones listening to a page that went ahead (table `paging_listeners`):
    /// `(device, ip)` each, under this node's `instance`.
    fn add_page_listeners(
        &self,
        instance: &str,
        node: &str,
        call_id: &str,
        phones: &[(String, String)],
        joined_at: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets the listeners of this instance's page `call_id` (it ended).
    fn remove_page_listeners(
        &self,
        instance: &str,
        call_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Listeners other instances left behind (their node died mid-page), as
    /// `(instance, node, call_id, device, ip)`, oldest first.
    fn orphan_page_listeners(
        &self,
        instance: &str,
    ) -> impl Future<Output = Result<Vec<OrphanListener>, StoreError>> + Send;

    /// Forgets one left-behind listener (told to stop, or unreachable).
    fn remove_page_listener(
        &self,
        instance: &str,
        call_id: &str,
        device: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records the caller of a page that went ahead whose call this node carries (table
    /// `paging_callers`): its dialog, sealed (a dialog handle).
    fn add_page_caller(
        &self,
        instance: &str,
        node: &str,
        call_id: &str,
        dialog: &str,
        started_at: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets the caller of `instance`'s page `call_id` (the page ended, or the caller's call
    /// was released by the node that took over).
    fn remove_page_caller(
        &self,
        instance: &str,
        call_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Callers other instances left behind (their node died mid-page), as
    /// `(instance, node, call_id, dialog)`, oldest first.
    fn orphan_page_callers(
        &self,
        instance: &str,
    ) -> impl Future<Output = Result<Vec<OrphanCaller>, StoreError>> + Send;
}

/// A page caller another instance left in its call: `(instance, node, call_id, dialog)`.
pub type OrphanCaller = (String, String, String, String);

impl PageReports for Store {
    async fn add_page_listeners(
        &self,
        instance: &str,
        node: &str,
        call_id: &str,
        phones: &[(String, String)],
        joined_at: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        for (device, ip) in phones {
            sqlx::query(
                "INSERT INTO paging_listeners (instance, node, call_id, device, ip, joined_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(instance)
            .bind(node)
            .bind(call_id)
            .bind(device)
            .bind(ip)
            .bind(joined_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn remove_page_listeners(&self, instance: &str, call_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM paging_listeners WHERE instance = $1 AND call_id = $2")
            .bind(instance)
            .bind(call_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn orphan_page_listeners(
        &self,
        instance: &str,
    ) -> Result<Vec<OrphanListener>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance, node, call_id, device, ip FROM paging_listeners \
             WHERE instance <> $1 ORDER BY joined_at, call_id, device",
        )
        .bind(instance)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn remove_page_listener(
        &self,
        instance: &str,
        call_id: &str,
        device: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM paging_listeners WHERE instance = $1 AND call_id = $2 AND device = $3",
        )
        .bind(instance)
        .bind(call_id)
        .bind(device)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn add_page_caller(
        &self,
        instance: &str,
        node: &str,
        call_id: &str,
        dialog: &str,
        started_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO paging_callers (instance, node, call_id, dialog, started_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(instance)
        .bind(node)
        .bind(call_id)
        .bind(dialog)
        .bind(started_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn remove_page_caller(&self, instance: &str, call_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM paging_callers WHERE instance = $1 AND call_id = $2")
            .bind(instance)
            .bind(call_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn orphan_page_callers(&self, instance: &str) -> Result<Vec<OrphanCaller>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance, node, call_id, dialog FROM paging_callers \
             WHERE instance <> $1 ORDER BY started_at, call_id",
        )
        .bind(instance)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn add_page_report(
        &self,
        id: &str,
        started_at: i64,
        call_id: &str,
        report: &str,
        keep: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
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

    async fn page_reports(
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
                    .fetch_all(self.pool())
                    .await?
                }
                None => sqlx::query(
                    "SELECT report FROM page_reports ORDER BY started_at DESC, id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(self.pool())
                .await?,
            };
        rows.iter()
            .map(|r| r.try_get(0).map_err(StoreError::from))
            .collect()
    }

    async fn page_report_call_ids(&self, call_ids: &[String]) -> Result<Vec<String>, StoreError> {
        if call_ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=call_ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT DISTINCT call_id FROM page_reports WHERE call_id IN ({})",
            placeholders.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for c in call_ids {
            q = q.bind(c);
        }
        let rows = q.fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| r.try_get(0).map_err(StoreError::from))
            .collect()
    }
}
