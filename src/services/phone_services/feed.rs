//! Lockouts on the change feed: every node hears when a credential is locked out or its lockout
//! ends (`ucm user unlock`, run against the database from anywhere), whichever services it
//! runs, because every node checks passwords and PINs (the authentication URL, EM, the EM
//! application, WebDialer).
//!
//! The database stays the judge (every check reads or reserves the credential's row there);
//! what the feed carries is what nodes remember in memory about the credential. A lockout
//! drops a cached success with it; an ended lockout drops every source's backoff on it, so
//! the unlocked user is answered at once on every node instead of after the throttle's wait.
//! Announced by a trigger on `credential_failures` (migration 0016):
//!   `lockout <unix ms> <locked_until> <credential>` and `unlock <unix ms> <credential>`.

use crate::node::feed::{Announcement, FeedHook, HookFuture};
use crate::node::NodeState;

/// The lockouts' hook on the change feed.
pub const FEED: FeedHook = FeedHook {
    service: "lockouts",
    kinds: &["lockout", "unlock"],
    on_change,
    resync,
    figures,
    on_definition: None,
};

/// What an announcement says.
#[derive(Debug, PartialEq, Eq)]
enum Lockout<'a> {
    Locked { until: i64, credential: &'a str },
    Ended { credential: &'a str },
}

fn decode<'a>(kind: &str, payload: &'a str) -> Option<Lockout<'a>> {
    match kind {
        "lockout" => {
            let (until, credential) = payload.split_once(' ')?;
            let until = until.parse().ok()?;
            (!credential.is_empty()).then_some(Lockout::Locked { until, credential })
        }
        "unlock" => (!payload.is_empty()).then_some(Lockout::Ended {
            credential: payload,
        }),
        _ => None,
    }
}

/// Applies one announcement to what this node remembers (nothing is read from the database).
fn apply(node: &NodeState, change: &Lockout<'_>) {
    match *change {
        Lockout::Locked { until, credential } => {
            node.password_cache.forget(credential);
            tracing::info!(credential, until, "lockout: locked out on every node");
        }
        Lockout::Ended { credential } => {
            node.password_cache.forget(credential);
            let sources = node.secret_guards.sources.forget_credential(credential);
            tracing::info!(
                credential,
                sources,
                "lockout ended: this node forgets the credential's failures"
            );
        }
    }
}

fn on_change<'a>(node: &'a NodeState, a: Announcement<'a>) -> HookFuture<'a, bool> {
    Box::pin(async move {
        match decode(a.kind, a.payload) {
            Some(change) => {
                apply(node, &change);
                Ok(true)
            }
            None => {
                tracing::warn!(
                    kind = a.kind,
                    payload = a.payload,
                    "change feed: a lockout announcement this node does not understand"
                );
                Ok(false)
            }
        }
    })
}

/// Nothing to read again: the database decides every check, and what a node remembers only
/// ever makes it stricter (a missed unlock leaves at most a source's backoff, which expires).
fn resync(_node: &NodeState) -> HookFuture<'_, ()> {
    Box::pin(async { Ok(()) })
}

fn figures(_node: &NodeState) -> Vec<(&'static str, serde_json::Value)> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r16_lockout_announcements_decode_and_bad_ones_are_refused() {
        assert_eq!(
            decode("lockout", "1700000060 password:j smith"),
            Some(Lockout::Locked {
                until: 1700000060,
                credential: "password:j smith"
            })
        );
        assert_eq!(
            decode("unlock", "pin:jsmith"),
            Some(Lockout::Ended {
                credential: "pin:jsmith"
            })
        );
        for (kind, bad) in [
            ("lockout", ""),
            ("lockout", "x password:a"),
            ("lockout", "17"),
            ("lockout", "17 "),
            ("unlock", ""),
            ("em", "1 SEP1"),
        ] {
            assert_eq!(decode(kind, bad), None, "{kind} {bad:?}");
        }
    }
}
