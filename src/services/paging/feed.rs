//! Page reports on the change feed: the node that ran a page stores its report, a trigger
//! announces it (`page-report <unix ms> <call_id>`, migration 0025), and every node running
//! the Paging Server wakes the requests waiting for that Call-ID's report
//! (`GET /ucm/paging/pages?call_id=ID&wait_ms=MS`, see [`super::waiters`]) at once. The
//! waiters' own look in the database ([`super::waiters::REPORT_LOOK_INTERVAL`]) stays, as the
//! safety net for an announcement lost while the feed reconnects (the resync wakes every
//! waiter to look again, too).

use std::sync::{Arc, Mutex};

use super::waiters::ReportWaiters;
use crate::node::feed::{Announcement, FeedHook, HookFuture};
use crate::node::NodeState;
use crate::store::Store;

/// The page reports' hook on the change feed.
pub const FEED: FeedHook = FeedHook {
    service: "the Paging Server",
    kinds: &["page-report"],
    on_change,
    resync,
    figures,
    on_definition: None,
};

/// This node's report waiters, once its Paging Server started (nodes without it have none).
#[derive(Default)]
pub struct Waiters(Mutex<Option<Arc<ReportWaiters<Store>>>>);

impl Waiters {
    pub fn set(&self, w: Arc<ReportWaiters<Store>>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
    }

    fn get(&self) -> Option<Arc<ReportWaiters<Store>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A `page-report` payload: the Call-ID (one token, no space).
fn decode(payload: &str) -> Option<&str> {
    let id = payload.trim();
    (!id.is_empty() && !id.contains(char::is_whitespace) && id.len() <= 256).then_some(id)
}

fn on_change<'a>(node: &'a NodeState, a: Announcement<'a>) -> HookFuture<'a, bool> {
    Box::pin(async move {
        let Some(call_id) = decode(a.payload) else {
            tracing::warn!(
                payload = a.payload,
                "change feed: a page-report announcement this node does not understand"
            );
            return Ok(false);
        };
        match node.shared::<Waiters>().get() {
            Some(w) => {
                w.stored(call_id);
                Ok(true)
            }
            None => Ok(false),
        }
    })
}

fn resync(node: &NodeState) -> HookFuture<'_, ()> {
    Box::pin(async move {
        if let Some(w) = node.shared::<Waiters>().get() {
            w.look_again();
        }
        Ok(())
    })
}

fn figures(_node: &NodeState) -> Vec<(&'static str, serde_json::Value)> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r16_page_report_announcements_decode_and_bad_ones_are_refused() {
        assert_eq!(decode("abc-123@10.0.0.1"), Some("abc-123@10.0.0.1"));
        assert_eq!(decode(""), None);
        assert_eq!(decode("a b"), None);
        assert_eq!(decode(&"x".repeat(257)), None);
    }
}
