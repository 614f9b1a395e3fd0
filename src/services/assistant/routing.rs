//! Where a call to a manager goes in proxy line mode, from the manager's state and the calling
//! number (no I/O): the order of Cisco's Manager Assistant (the filter first; DivertAll then
//! applies to the calls the filter leaves with the manager).

use super::store::{FilterMode, ManagerState};

/// Where the route point sends a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The active assistant's proxy line for the manager.
    Assistant,
    /// The manager's own line.
    Manager,
    /// DivertAll's configured target.
    Divert(String),
}

/// Decides for one call from `calling`.
pub fn route(state: &ManagerState, calling: &str) -> Target {
    let to_manager = if !state.filter_on {
        true
    } else {
        match state.filter_mode {
            FilterMode::Inclusive => matches_any(&state.inclusive_filters, calling),
            FilterMode::Exclusive => !matches_any(&state.exclusive_filters, calling),
        }
    };
    if !to_manager {
        return Target::Assistant;
    }
    if state.divert_all {
        return match &state.divert_target {
            Some(t) => Target::Divert(t.clone()),
            None => Target::Assistant,
        };
    }
    // UNCONFIRMED: Cisco's DND turns the manager's ringer off; in proxy line mode a call the
    // manager would get goes to the assistant instead (the seed says only that DND exists).
    if state.dnd {
        return Target::Assistant;
    }
    Target::Manager
}

/// The order a manager's calls try the assistants in (indexes into `m.assistants`): the
/// selected assistant first (when it is one of them), then the others in the definition's order.
pub fn assistant_order(m: &super::model::Manager, selected: Option<&str>) -> Vec<usize> {
    let first = selected.and_then(|s| m.assistants.iter().position(|a| a.user == s));
    first
        .into_iter()
        .chain((0..m.assistants.len()).filter(|i| Some(*i) != first))
        .collect()
}

pub fn matches_any(filters: &[String], calling: &str) -> bool {
    filters.iter().any(|f| filter_matches(f, calling))
}

/// A filter (Cisco's filter list syntax): digits, `X`/`x` one digit, `*` any digits at the
/// start or the end; hyphens, dots and spaces are ignored.
pub fn filter_matches(filter: &str, calling: &str) -> bool {
    let f: Vec<char> = filter
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | ' '))
        .collect();
    let n: Vec<char> = calling.chars().collect();
    if f.is_empty() {
        return false;
    }
    let (lead, f) = match f.split_first() {
        Some(('*', rest)) => (true, rest),
        _ => (false, &f[..]),
    };
    let (trail, f) = match f.split_last() {
        Some(('*', rest)) => (true, rest),
        _ => (false, f),
    };
    let fixed = |at: usize| {
        f.iter()
            .zip(&n[at..])
            .all(|(p, c)| matches!(p, 'X' | 'x') && c.is_ascii_digit() || p == c)
    };
    if f.len() > n.len() {
        return false;
    }
    match (lead, trail) {
        (false, false) => f.len() == n.len() && fixed(0),
        (false, true) => fixed(0),
        (true, false) => fixed(n.len() - f.len()),
        (true, true) => (0..=n.len() - f.len()).any(fixed),
    }
}

/// Whether `filter` is one [`filter_matches`] understands.
pub fn valid_filter(filter: &str) -> Result<(), String> {
    let f: String = filter
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | ' '))
        .collect();
    if f.is_empty() || f.len() > 64 {
        return Err(format!(
            "filter {filter:?} must have 1 to 64 digits or wildcards"
        ));
    }
    let inner = f.trim_start_matches('*').trim_end_matches('*');
    if f.len() - inner.len() > 2 || inner.contains('*') {
        return Err(format!(
            "filter {filter:?}: `*` only at the start or the end"
        ));
    }
    if let Some(c) = inner
        .chars()
        .find(|c| !(c.is_ascii_digit() || matches!(c, 'X' | 'x' | '+' | '#')))
    {
        return Err(format!("filter {filter:?}: {c:?} is not a digit, X or *"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_cisco_documents_them() {
        assert!(filter_matches("54321", "54321"));
        assert!(!filter_matches("54321", "543210"));
        assert!(filter_matches("54xxx", "54123"));
        assert!(!filter_matches("54xxx", "5412"));
        assert!(filter_matches("5*", "5"));
        assert!(filter_matches("5*", "598765"));
        assert!(!filter_matches("5*", "65"));
        assert!(filter_matches("*01", "2001"));
        assert!(filter_matches("*00*", "2001"));
        assert!(filter_matches("408-555.1234", "4085551234"));
        assert!(!filter_matches("", "1"));
        assert!(valid_filter("54xxx").is_ok());
        assert!(valid_filter("*1*").is_ok());
        assert!(valid_filter("1*2").is_err());
        assert!(valid_filter("abc").is_err());
        assert!(valid_filter("").is_err());
    }

    #[test]
    fn the_filter_decides_first_then_divert_all_then_dnd() {
        let mut s = ManagerState::default();
        // Cisco's initial settings: filtering on, inclusive, empty list: the assistant.
        assert_eq!(route(&s, "10001"), Target::Assistant);
        s.inclusive_filters = vec!["1000X".into()];
        assert_eq!(route(&s, "10001"), Target::Manager);
        assert_eq!(route(&s, "20001"), Target::Assistant);
        s.filter_mode = FilterMode::Exclusive;
        s.exclusive_filters = vec!["2*".into()];
        assert_eq!(route(&s, "20001"), Target::Assistant);
        assert_eq!(route(&s, "10001"), Target::Manager);
        s.divert_all = true;
        assert_eq!(route(&s, "10001"), Target::Assistant);
        s.divert_target = Some("30001".into());
        assert_eq!(route(&s, "10001"), Target::Divert("30001".into()));
        assert_eq!(route(&s, "20001"), Target::Assistant);
        s.divert_all = false;
        s.dnd = true;
        assert_eq!(route(&s, "10001"), Target::Assistant);
        s.dnd = false;
        s.filter_on = false;
        assert_eq!(route(&s, "20001"), Target::Manager);
    }
}
