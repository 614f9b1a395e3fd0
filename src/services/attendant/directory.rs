//! The attendants' directory search (no I/O): end users by name, user id or number, and lines
//! (directory numbers that are numbers, not patterns) by number or alerting name, each shown
//! with its partition, so the same number in two partitions is two entries (the seed notes
//! Cisco's TSP is not aware of partitions).

use serde::Serialize;

use crate::config::ClusterDefinition;

/// Entries one search returns at most.
pub const MAX_RESULTS: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// `user` or `line`.
    pub kind: &'static str,
    pub name: String,
    /// The user id (users only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub userid: Option<String>,
    pub number: Option<String>,
    pub partition: Option<String>,
}

/// Checks a query: 1 to 64 characters after trimming.
pub fn valid_query(q: &str) -> Result<&str, String> {
    let q = q.trim();
    if q.is_empty() || q.chars().count() > 64 {
        return Err("a search needs 1 to 64 characters".into());
    }
    Ok(q)
}

/// The entries matching `query` (case-insensitive: a part of a name or user id, the start
/// or a part of a number), users first, then lines, each sorted by name; at most
/// [`MAX_RESULTS`], and whether more matched.
pub fn search(d: &ClusterDefinition, query: &str) -> (Vec<Entry>, bool) {
    let q = query.trim().to_lowercase();
    let has = |s: &str| s.to_lowercase().contains(&q);
    let mut users: Vec<Entry> = d
        .end_users
        .iter()
        .filter_map(|u| {
            let name = match &u.first_name {
                Some(f) => format!("{f} {}", u.last_name),
                None => u.last_name.clone(),
            };
            let (number, partition) = match &u.primary_extension {
                Some(p) => (Some(p.dn.clone()), p.partition.clone()),
                None => (u.telephone_number.clone(), None),
            };
            let hit = has(&name)
                || has(&u.userid)
                || number.as_deref().is_some_and(has)
                || u.telephone_number.as_deref().is_some_and(has);
            hit.then(|| Entry {
                kind: "user",
                name,
                userid: Some(u.userid.clone()),
                number,
                partition,
            })
        })
        .collect();
    users.sort_by(|a, b| a.name.cmp(&b.name).then(a.number.cmp(&b.number)));
    let mut lines: Vec<Entry> = d
        .directory_numbers
        .iter()
        .filter(|n| crate::dialplan::pattern::validate_digits(&n.pattern).is_ok())
        .filter_map(|n| {
            let name = n
                .alerting_name
                .clone()
                .or_else(|| n.description.clone())
                .unwrap_or_default();
            (has(&n.pattern) || has(&name)).then(|| Entry {
                kind: "line",
                name,
                userid: None,
                number: Some(n.pattern.clone()),
                partition: n.partition.clone(),
            })
        })
        .collect();
    lines.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then(a.number.cmp(&b.number))
            .then(a.partition.cmp(&b.partition))
    });
    let mut all = users;
    all.extend(lines);
    let more = all.len() > MAX_RESULTS;
    all.truncate(MAX_RESULTS);
    (all, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_users_and_lines_with_their_partitions() {
        let mut d = crate::services::demo().unwrap();
        let (r, more) = search(&d, "smith");
        assert!(!more);
        let names: Vec<_> = r.iter().map(|e| (e.kind, e.name.as_str())).collect();
        assert_eq!(
            names,
            [
                ("user", "John Smith"),
                ("user", "Steve Smith"),
                ("line", "John Smith"),
                ("line", "Steve Smith")
            ]
        );
        assert_eq!(r[0].partition.as_deref(), Some("Internal_PT"));
        // The same number in a second partition: two entries.
        let mut other = d.directory_numbers[0].clone();
        other.partition = Some("PSTN_PT".into());
        let number = other.pattern.clone();
        d.directory_numbers.push(other);
        let (r, _) = search(&d, &number);
        let parts: Vec<_> = r
            .iter()
            .filter(|e| e.kind == "line")
            .map(|e| e.partition.clone().unwrap_or_default())
            .collect();
        assert_eq!(parts, ["Internal_PT", "PSTN_PT"]);
        // Patterns are not lines to call.
        assert!(search(&d, "6XXXX").0.is_empty());
        let (r, more) = search(&d, "2");
        assert!(more && r.len() == MAX_RESULTS);
        assert!(valid_query("  ").is_err() && valid_query(&"x".repeat(65)).is_err());
    }
}
