//! The Assistant's part on every node of the cluster, whether or not the node runs the
//! service: a manager's state drives more than the route point's redirects (read from the
//! database for each call, so any node serving the route point after a lease move routes the
//! same): in shared line mode Do Not Disturb makes the manager's phones ring silently, on
//! whichever node they are registered with, and every node's Assistant Consoles show the
//! state. Every committed change reaches every node through the change feed ([`FEED`]:
//! `assistant <unix ms> <version> <manager>`, from the trigger of migration 0023) and is
//! applied by version ([`AssistantShared::apply`]), so order and duplicates do not matter; the
//! node's own changes apply directly (SQLite has no feed), and a node reads every manager's
//! state again at start and when its feed reconnects.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

use super::model::{Assistant, Manager, Mode};
use super::store::{ManagerState, ManagerStates};
use crate::node::feed::{Announcement, FeedHook, HookFuture};
use crate::node::NodeState;

/// What the Assistant's parts share on one node ([`NodeState::shared`]).
pub struct AssistantShared {
    /// Managers' state changes as this node applies them, for its consoles.
    pub states: broadcast::Sender<(String, ManagerState)>,
    /// The version of each manager's state this node applied.
    versions: Mutex<HashMap<String, i64>>,
}

impl Default for AssistantShared {
    fn default() -> Self {
        AssistantShared {
            states: broadcast::channel(1024).0,
            versions: Mutex::default(),
        }
    }
}

impl AssistantShared {
    /// Applies `s`, the state of manager `m`, when it is newer than what the node applied:
    /// silent ring, then the consoles. Returns whether it applied.
    pub fn apply(&self, node: &NodeState, m: &Manager, s: &ManagerState) -> bool {
        {
            let mut v = self.versions.lock().unwrap_or_else(|p| p.into_inner());
            let seen = v.entry(m.user.clone()).or_insert(-1);
            if *seen >= s.version {
                return false;
            }
            *seen = s.version;
        }
        silent_ring(node, m, s.dnd);
        let _ = self.states.send((m.user.clone(), s.clone()));
        true
    }
}

/// Shared line mode: the manager's phones ring silently on the manager's line while the
/// manager is on Do Not Disturb (the assistants' ring audibly).
pub fn silent_ring(node: &NodeState, m: &Manager, dnd: bool) {
    if m.mode != Mode::Shared {
        return;
    }
    let cluster = node.cluster();
    let associated: Vec<&str> = cluster
        .end_users
        .iter()
        .filter(|u| u.userid == m.user)
        .flat_map(|u| u.associated_devices.iter().map(|s| s.as_str()))
        .collect();
    for dev in cluster.devices.iter().filter(|d| {
        (d.owner.as_deref() == Some(m.user.as_str()) || associated.contains(&d.name.as_str()))
            && d.lines.iter().any(|l| l.dn == m.line)
    }) {
        tracing::info!(manager = %m.user, device = %dev.name, line = %m.line, dnd, "assistant: shared line rings silently at the manager's phone: {dnd}");
        node.call_control.set_silent_ring(&dev.name, &m.line, dnd);
    }
}

/// The Assistant's hook on the change feed.
pub const FEED: FeedHook = FeedHook {
    service: "the Assistant service",
    kinds: &["assistant"],
    on_change,
    resync,
    figures,
    on_definition: None,
};

/// An `assistant` announcement's payload: `<version> <manager>`.
fn decode(payload: &str) -> Option<(i64, &str)> {
    let (version, manager) = payload.split_once(' ')?;
    Some((version.parse().ok()?, manager))
}

fn manager(node: &NodeState, user: &str) -> Option<Manager> {
    node.cluster()
        .section::<Assistant>()
        .managers
        .iter()
        .find(|m| m.user == user)
        .cloned()
}

fn on_change<'a>(node: &'a NodeState, a: Announcement<'a>) -> HookFuture<'a, bool> {
    Box::pin(async move {
        let Some((version, user)) = decode(a.payload) else {
            tracing::warn!(
                payload = a.payload,
                "change feed: an Assistant announcement this node does not understand"
            );
            return Ok(false);
        };
        let Some(m) = manager(node, user) else {
            return Ok(false);
        };
        let shared = node.shared::<AssistantShared>();
        if shared
            .versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            .is_some_and(|v| *v >= version)
        {
            // Our own write, already applied (or an older one).
            return Ok(false);
        }
        let s = node.store.manager_state(user).await?;
        Ok(shared.apply(node, &m, &s))
    })
}

fn resync(node: &NodeState) -> HookFuture<'_, ()> {
    Box::pin(async move {
        let shared = node.shared::<AssistantShared>();
        let managers = node.cluster().section::<Assistant>().managers.clone();
        for m in &managers {
            let s = node.store.manager_state(&m.user).await?;
            shared.apply(node, m, &s);
        }
        Ok(())
    })
}

fn figures(_: &NodeState) -> Vec<(&'static str, serde_json::Value)> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r18_assistant_announcements_decode_and_bad_ones_are_refused() {
        assert_eq!(decode("7 manager1"), Some((7, "manager1")));
        assert_eq!(decode("x manager1"), None);
        assert_eq!(decode("7"), None);
    }
}
