//! What is going on at this node right now, as the services say it (running pages, say), for
//! the operator's view: each service adds an entry when something starts and the entry goes
//! when its guard is dropped, so an entry cannot outlive what it describes. Nothing here
//! knows a service: kinds and entries are the services' own.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Entries by kind (`"pages"`) and id.
#[derive(Debug, Default)]
pub struct Live {
    inner: Mutex<BTreeMap<&'static str, BTreeMap<String, serde_json::Value>>>,
}

impl Live {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, BTreeMap<String, serde_json::Value>>>
    {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds (or replaces) an entry; it is removed when the returned guard is dropped.
    #[must_use = "the entry is removed when the guard is dropped"]
    pub fn add(&self, kind: &'static str, id: &str, entry: serde_json::Value) -> Entry<'_> {
        self.lock()
            .entry(kind)
            .or_default()
            .insert(id.to_string(), entry);
        Entry {
            live: self,
            kind,
            id: id.to_string(),
        }
    }

    /// The entries of `kind`, by id.
    pub fn list(&self, kind: &str) -> Vec<serde_json::Value> {
        self.lock()
            .get(kind)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Keeps an entry listed while it lives.
pub struct Entry<'a> {
    live: &'a Live,
    kind: &'static str,
    id: String,
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        let mut g = self.live.lock();
        if let Some(m) = g.get_mut(self.kind) {
            m.remove(&self.id);
            if m.is_empty() {
                g.remove(self.kind);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r21_entries_are_listed_while_their_guard_lives() {
        let live = Live::default();
        assert!(live.list("pages").is_empty());
        let a = live.add("pages", "a", serde_json::json!({"id": "a"}));
        {
            let _b = live.add("pages", "b", serde_json::json!({"id": "b"}));
            assert_eq!(live.list("pages").len(), 2);
        }
        assert_eq!(live.list("pages"), vec![serde_json::json!({"id": "a"})]);
        drop(a);
        assert!(live.list("pages").is_empty());
    }
}
