//! The Paging Server's storage: page reports, newest kept (table `page_reports`, in the shared
//! migration sequence), as queries on the node's store handle.

use std::future::Future;

use sqlx::Row;

use crate::store::{Backend, Store, StoreError};

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
}

impl PageReports for Store {
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
