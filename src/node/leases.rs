//! Service leases as every node sees them: which node runs each service the cluster runs once
//! (the Paging Server), and so where the route points that service serves are. The database
//! announces a change of holder (`NOTIFY ucm_leases`, migration 0014; renewals are not
//! announced); each node listens on its own connection, reads the leases again and tells its
//! call control which route points other nodes serve, so a call to them reaching this node goes
//! to the holder over the intra-cluster trunk. A service standing by is woken by the same
//! announcement ([`Leases::changed`]) and tries for the lease at once (a holder that stopped
//! released it).
//!
//! Kept apart from the change feed (`feed`): its own channel and connection. On SQLite there is
//! one node, which holds every lease it asks for; nothing is announced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::NodeState;
use crate::config::model::NodeService;
use crate::store::{Backend, LeaseRow};

/// The channel lease changes are announced on.
pub const LEASE_CHANNEL: &str = "ucm_leases";

/// What this node knows of the cluster's leases.
#[derive(Default)]
pub struct Leases {
    current: Mutex<Vec<LeaseRow>>,
    /// Woken whenever the leases were read again (a holder changed or left).
    pub changed: tokio::sync::Notify,
}

impl Leases {
    /// The leases as last read.
    pub fn current(&self) -> Vec<LeaseRow> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Route point -> node for every lease held by a node other than `local`.
pub fn route_points_elsewhere(rows: &[LeaseRow], local: &str) -> HashMap<String, String> {
    let mut at = HashMap::new();
    for r in rows.iter().filter(|r| r.node != local) {
        for rp in &r.route_points {
            at.insert(rp.clone(), r.node.clone());
        }
    }
    at
}

impl NodeState {
    /// Follows lease changes until the node stops (PostgreSQL only).
    pub async fn run_leases(self: Arc<Self>) {
        if self.store.backend() != Backend::Postgres {
            return;
        }
        let mut stop = self.stopping();
        loop {
            let listener = async {
                let mut l = sqlx::postgres::PgListener::connect(self.store.url()).await?;
                l.listen(LEASE_CHANNEL).await?;
                Ok::<_, sqlx::Error>(l)
            };
            let mut listener = match listener.await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "service leases: cannot listen; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(super::feed::FEED_RETRY) => continue,
                        _ = stop.changed() => return,
                    }
                }
            };
            // Listening before reading: a change from here on is read or announced.
            loop {
                if let Err(e) = self.read_leases().await {
                    tracing::warn!(error = %e, "service leases: reading them failed");
                    break;
                }
                let n = tokio::select! {
                    n = listener.try_recv() => n,
                    _ = stop.changed() => return,
                };
                match n {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        tracing::warn!("service leases: the connection closed; reconnecting");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "service leases: lost; reconnecting");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(super::feed::FEED_RETRY) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Reads every lease, tells call control where other nodes' route points are, and wakes
    /// whoever waits for a change.
    pub async fn read_leases(&self) -> Result<(), crate::store::StoreError> {
        let rows = self.store.leases().await?;
        if self.runs(NodeService::CallProcessing) {
            self.call_control
                .set_remote_route_points(route_points_elsewhere(&rows, &self.node.name));
        }
        *self
            .leases
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = rows;
        self.leases.changed.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(service: &str, node: &str, rps: &[&str]) -> LeaseRow {
        LeaseRow {
            service: service.into(),
            node: node.into(),
            instance: format!("{node}-1"),
            route_points: rps.iter().map(|s| s.to_string()).collect(),
            acquired_at: 1,
            expires_at: 2,
            now: 1,
        }
    }

    #[test]
    fn r16_route_points_of_other_nodes_leases_only() {
        let rows = [
            row("paging", "ucm-pub", &["DialCast_All", "DialCast_Branch"]),
            row("other", "ucm-sub1", &["RP"]),
        ];
        let at = route_points_elsewhere(&rows, "ucm-sub1");
        assert_eq!(at.len(), 2);
        assert_eq!(at["DialCast_All"], "ucm-pub");
        assert!(route_points_elsewhere(&rows, "ucm-pub").contains_key("RP"));
        assert!(!route_points_elsewhere(&rows, "ucm-pub").contains_key("DialCast_All"));
    }
}
