//! Extension Mobility's part on every node of the cluster, whether or not the node runs the EM
//! service: a login changes the device's lines, so every node's configuration files and call
//! routing follow it ([`crate::cluster::Mobility`]).
//!
//! Every committed change reaches the running cluster through [`EmNode::apply_login_change`]:
//! the device's state as of a database version, applied only when newer than what the node
//! holds. The node's own logins and logouts, the read of every device's state at start and
//! when the change feed reconnects ([`EmNode::sync_logins`]), and the feed's announcements of
//! other nodes' changes ([`FEED`]: `em <unix ms> <version> <device>`, from the trigger of
//! migration 0010) all come here, so a read made before a commit can never undo that commit.

use tokio::sync::Notify;

use super::store::{EmChange, EmStore};
use crate::cluster::Login;
use crate::node::feed::{Announcement, FeedHook, HookFuture};
use crate::node::NodeState;
use crate::store::StoreError;

/// What EM's parts share on one node ([`NodeState::shared`]).
#[derive(Default)]
pub struct EmShared {
    /// Woken when another node's login change was applied here (the EM service arms its
    /// logout timers).
    pub logins_changed: Notify,
}

/// EM's changes applied to a node's running cluster.
pub trait EmNode {
    /// Applies the device's state as of `change.version` when it is newer than what the node
    /// holds (see [`crate::cluster::Mobility::apply`]). Returns whether it applied.
    fn apply_login_change(&self, change: &EmChange) -> bool;

    /// Applies a snapshot of every device's EM state (from [`EmStore::em_states`], however
    /// old): only what is newer than the node's own view changes it. Returns how many logins
    /// were newly applied.
    fn apply_login_states(&self, states: &[EmChange]) -> usize;

    /// Brings the running cluster's EM logins in line with the database, where every node of
    /// the cluster records its own: at start and whenever the change feed reconnects. Phones
    /// are not reset here: the node that made the change did that. Returns how many logins
    /// were newly applied.
    fn sync_logins(&self) -> HookFuture<'_, usize>;
}

impl EmNode for NodeState {
    fn apply_login_change(&self, change: &EmChange) -> bool {
        let cluster = self.cluster();
        let Some(r) = &change.login else {
            return cluster.mobility.apply(&change.device, change.version, None);
        };
        let lines = cluster
            .device_profile(&r.profile)
            .map(|p| p.lines.clone())
            .unwrap_or_default();
        let login = Login {
            device: r.device.clone(),
            user: r.userid.clone(),
            profile: r.profile.clone(),
            logged_in_at: r.logged_in_at,
            logout_at: r.logout_at,
        };
        cluster
            .mobility
            .apply(&change.device, change.version, Some((login, &lines)))
    }

    fn apply_login_states(&self, states: &[EmChange]) -> usize {
        states
            .iter()
            .filter(|c| self.apply_login_change(c) && c.login.is_some())
            .count()
    }

    fn sync_logins(&self) -> HookFuture<'_, usize> {
        Box::pin(async move {
            let states = self.store.em_states().await?;
            Ok(self.apply_login_states(&states))
        })
    }
}

/// EM's hook on the change feed.
pub const FEED: FeedHook = FeedHook {
    service: "Extension Mobility",
    kinds: &["em"],
    on_change,
    resync,
    figures,
    on_definition: None,
};

/// An `em` announcement's payload: `<version> <device>`.
fn decode(payload: &str) -> Option<(i64, &str)> {
    let (version, device) = payload.split_once(' ')?;
    Some((version.parse().ok()?, device))
}

fn on_change<'a>(node: &'a NodeState, a: Announcement<'a>) -> HookFuture<'a, bool> {
    Box::pin(async move {
        let Some((version, device)) = decode(a.payload) else {
            tracing::warn!(
                payload = a.payload,
                "change feed: an EM announcement this node does not understand"
            );
            return Ok(false);
        };
        if version <= node.cluster().mobility.version(device) {
            // Our own write, already applied (or an older one).
            return Ok(false);
        }
        let Some(state) = node.store.em_state(device).await? else {
            return Ok(false);
        };
        if node.apply_login_change(&state) {
            node.shared::<EmShared>().logins_changed.notify_one();
            // Another node made the change; a phone registered here hears only from this node
            // (its Unified CM), so this node sends the reset Unified CM sends after a login or
            // logout. The node that made it reset its own phones; a change reaches a node's
            // hook once (by version), so each phone is told once.
            node.call_control.notify_device(device, "check-sync");
        }
        Ok(true)
    })
}

fn resync(node: &NodeState) -> HookFuture<'_, ()> {
    Box::pin(async move {
        let applied = node.sync_logins().await?;
        if applied > 0 {
            tracing::info!(logins = applied, "Extension Mobility logins restored");
            node.shared::<EmShared>().logins_changed.notify_one();
        }
        Ok::<(), StoreError>(())
    })
}

fn figures(node: &NodeState) -> Vec<(&'static str, serde_json::Value)> {
    vec![("em_logins", node.cluster().mobility.len().into())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r16_em_announcements_decode_and_bad_ones_are_refused() {
        assert_eq!(decode("7 SEP 0001"), Some((7, "SEP 0001")));
        assert_eq!(decode("12 SEP000000001001"), Some((12, "SEP000000001001")));
        for bad in ["", "7", "x SEP0001", " SEP0001", "7.5 SEP0001"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
