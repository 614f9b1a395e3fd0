//! EMCC on the change feed (migration 0024 on PostgreSQL: `emcc <unix ms> <role> <device>`
//! from a trigger on `emcc_devices`): every node of a cluster serves the EMCC devices whichever
//! node took the login. At the home, each node rebuilds its run-time devices and call routing
//! from the database (the phone may register with any node of the roaming pool's Unified CM
//! group), and the node a phone is registered with resets it when its login ends there by
//! another node's hand. At the visiting side, each node serves the small configuration of the
//! phones logged in through EMCC (or stops). Applying reads the database again, so order and
//! duplicates do not matter; [`resync`] reads everything at start and after the feed
//! reconnects.

use super::cross;
use super::store::Role;
use crate::node::feed::{Announcement, FeedHook, HookFuture};
use crate::node::NodeState;

/// EMCC's hook on the change feed.
pub const FEED: FeedHook = FeedHook {
    service: "Extension Mobility Cross Cluster",
    kinds: &["emcc"],
    on_change,
    resync,
    figures,
    on_definition: Some(on_definition),
};

/// An `emcc` announcement's payload: `<role> <device>`.
fn decode(payload: &str) -> Option<(Role, &str)> {
    let (role, device) = payload.split_once(' ')?;
    let role = match role {
        "home" => Role::Home,
        "visiting" => Role::Visiting,
        _ => return None,
    };
    (!device.is_empty() && !device.contains(' ')).then_some((role, device))
}

fn on_change<'a>(node: &'a NodeState, a: Announcement<'a>) -> HookFuture<'a, bool> {
    Box::pin(async move {
        let Some((role, device)) = decode(a.payload) else {
            tracing::warn!(
                payload = a.payload,
                "change feed: an EMCC announcement this node does not understand"
            );
            return Ok(false);
        };
        match role {
            Role::Home => {
                let had = node.cluster().emcc.visiting_phones.contains_key(device);
                cross::sync_home_devices(node).await?;
                let has = node.cluster().emcc.visiting_phones.contains_key(device);
                if had && !has {
                    // The login ended by another node's hand: the phone, if registered here,
                    // hears it from here (its Unified CM) and goes back to its own cluster.
                    node.call_control.notify_device(device, "check-sync");
                }
                Ok(had != has)
            }
            Role::Visiting => cross::reload_redirect(node, device).await,
        }
    })
}

fn resync(node: &NodeState) -> HookFuture<'_, ()> {
    Box::pin(async move { cross::load(node).await })
}

/// A new definition: the run-time devices (built from the users' profiles) and what call
/// control knows of EMCC (the EMCC trunks, their PSTN Access CSS choice, the EMCC phones) are
/// derived from it again; the cluster handle keeps them across the swap otherwise, stale.
fn on_definition(node: &NodeState) -> HookFuture<'_, ()> {
    Box::pin(async move { cross::sync_home_devices(node).await })
}

fn figures(node: &NodeState) -> Vec<(&'static str, serde_json::Value)> {
    vec![(
        "emcc_devices_home",
        node.cluster().emcc.visiting_phones.len().into(),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r17_emcc_announcements_decode_and_bad_ones_are_refused() {
        assert_eq!(
            decode("home SEP00000000E0B1"),
            Some((Role::Home, "SEP00000000E0B1"))
        );
        assert_eq!(decode("visiting SEPA"), Some((Role::Visiting, "SEPA")));
        for bad in ["", "home", "home ", "other SEPA", "home SEP A", "HOME SEPA"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
