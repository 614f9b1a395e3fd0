//! Recipient groups: which phones a page reaches, found from the cluster's data (devices,
//! device pools, locations, directory-number patterns), and which multicast range serves them.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::model::{Paging, RecipientGroup};
use crate::cluster::Cluster;
use crate::config::model::Device;
use crate::dialplan::pattern::{MatchResult, Pattern};

/// The phones of a group, in name order, and those left out by the cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    pub devices: Vec<String>,
    /// Phones beyond the group's cap, reported as not paged.
    pub over_cap: Vec<String>,
    /// Phones of the group with their speakerphone disabled: never paged (the seed's phone
    /// selection rules), and not counted against the cap.
    pub no_speakerphone: Vec<String>,
}

/// The cap of a group: its own `max_phones`, else the paging `max_group_size` (50).
pub fn cap(paging: &Paging, group: &RecipientGroup) -> usize {
    group.max_phones.unwrap_or(paging.max_group_size)
}

/// A device's location: its own, else its device pool's.
pub fn location_of<'a>(cluster: &'a Cluster, dev: &'a Device) -> Option<&'a str> {
    dev.location.as_deref().or_else(|| {
        cluster
            .device_pools
            .iter()
            .find(|p| p.name == dev.device_pool)
            .and_then(|p| p.location.as_deref())
    })
}

/// Resolves a group against the cluster as it is now (Extension Mobility logins included:
/// a DN pattern reaches the phone a user is logged in on).
pub fn members(cluster: &Cluster, paging: &Paging, group: &RecipientGroup) -> Members {
    let patterns: Vec<Pattern> = group
        .dn_patterns
        .iter()
        .filter_map(|p| Pattern::parse(p).ok())
        .collect();
    let mut found: BTreeSet<&str> = BTreeSet::new();
    let mut no_speakerphone: BTreeSet<&str> = BTreeSet::new();
    for d in &cluster.devices {
        let named = group.devices.iter().any(|n| n == &d.name);
        let pooled = group.device_pools.iter().any(|p| p == &d.device_pool);
        let located =
            location_of(cluster, d).is_some_and(|l| group.locations.iter().any(|g| g == l));
        let dialled = !patterns.is_empty()
            && cluster.lines_of(d).iter().any(|l| {
                patterns
                    .iter()
                    .any(|p| p.matches(&l.dn) == MatchResult::Complete)
            });
        let described = d.description.as_deref().is_some_and(|text| {
            group
                .descriptions
                .iter()
                .any(|p| description_matches(p, text))
        });
        let searched = d
            .css
            .as_deref()
            .is_some_and(|c| group.calling_search_spaces.iter().any(|g| g == c));
        if named || pooled || located || dialled || described || searched {
            if d.disable_speakerphone {
                no_speakerphone.insert(d.name.as_str());
            } else {
                found.insert(d.name.as_str());
            }
        }
    }
    let n = cap(paging, group);
    let all: Vec<String> = found.into_iter().map(str::to_string).collect();
    let (devices, over_cap) = if all.len() > n {
        (all[..n].to_vec(), all[n..].to_vec())
    } else {
        (all, Vec::new())
    };
    Members {
        devices,
        over_cap,
        no_speakerphone: no_speakerphone.into_iter().map(str::to_string).collect(),
    }
}

/// A description pattern against a description, ignoring case: `*` matches any run of
/// characters (none too), `?` exactly one; everything else itself.
pub fn description_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    // Iterative wildcard match with one backtrack point: linear in practice, never exponential.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// An IPv4 multicast range `a.b.c.d/len` as (first, count), or `None` if malformed.
pub fn parse_range(range: &str) -> Option<(Ipv4Addr, u32)> {
    let (a, len) = range.split_once('/')?;
    let ip: Ipv4Addr = a.trim().parse().ok()?;
    let len: u32 = len.trim().parse().ok()?;
    if !ip.is_multicast() || !(4..=32).contains(&len) {
        return None;
    }
    let mask = if len == 32 {
        u32::MAX
    } else {
        !(u32::MAX >> len)
    };
    let first = u32::from(ip) & mask;
    Some((Ipv4Addr::from(first), 1u32 << (32 - len)))
}

/// The range a page to these phones draws its address from: their common location's own
/// range when they all share one that has it, else the paging range. (IGMP joins name the
/// address only, so pages to different sites must not share one; the seed's advice.)
pub fn range_for(cluster: &Cluster, paging: &Paging, devices: &[String]) -> String {
    let mut locs = devices.iter().map(|n| {
        cluster
            .device(n)
            .and_then(|d| location_of(cluster, d))
            .map(str::to_string)
    });
    let first = locs.next().flatten();
    let common = match first {
        Some(l) if locs.all(|x| x.as_deref() == Some(l.as_str())) => Some(l),
        _ => None,
    };
    common
        .and_then(|l| {
            cluster
                .locations
                .iter()
                .find(|x| x.name == l)
                .and_then(|x| x.multicast_range.clone())
        })
        .unwrap_or_else(|| paging.multicast_range.clone())
}

/// The first address of `range` not in `in_use`; `None` when every one is taken.
pub fn free_address(range: &str, in_use: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let (first, count) = parse_range(range)?;
    let base = u32::from(first);
    // Skip the network's first address (x.x.x.0), which some switches treat specially.
    let start = u32::from(count > 2);
    (start..count)
        .map(|i| Ipv4Addr::from(base.wrapping_add(i)))
        .find(|a| !in_use.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Cluster {
        Cluster::new(crate::services::demo().expect("the demo cluster loads"))
    }

    fn group(f: impl FnOnce(&mut RecipientGroup)) -> RecipientGroup {
        let mut g = RecipientGroup {
            name: "g".into(),
            description: None,
            devices: vec![],
            device_pools: vec![],
            locations: vec![],
            dn_patterns: vec![],
            descriptions: vec![],
            calling_search_spaces: vec![],
            max_phones: None,
        };
        f(&mut g);
        g
    }

    #[test]
    fn each_kind_of_member_and_their_union() {
        let c = demo();
        let p = Paging::default();
        let by_dev = members(
            &c,
            &p,
            &group(|g| g.devices = vec!["SEP00036BC7B974".into()]),
        );
        assert_eq!(by_dev.devices, vec!["SEP00036BC7B974"]);
        let by_loc = members(&c, &p, &group(|g| g.locations = vec!["Branch".into()]));
        // Steve Smith's phone and the 25 lab phones of Branch_DP (lab phones 26-50).
        assert_eq!(by_loc.devices.len(), 26, "{:?}", by_loc.devices);
        assert!(by_loc.devices.contains(&"SEP00036BC7B976".to_string()));
        assert!(by_loc.devices.contains(&"SEP000000001032".to_string()));
        assert!(!by_loc.devices.contains(&"SEP000000001001".to_string()));
        let by_pool = members(
            &c,
            &p,
            &group(|g| g.device_pools = vec!["Branch_DP".into()]),
        );
        assert_eq!(by_pool.devices, by_loc.devices);
        let by_dn = members(&c, &p, &group(|g| g.dn_patterns = vec!["2000X".into()]));
        assert_eq!(by_dn.devices.len(), 9, "20001..20009: {:?}", by_dn.devices);
        let union = members(
            &c,
            &p,
            &group(|g| {
                g.device_pools = vec!["Branch_DP".into()];
                g.dn_patterns = vec!["2000[1-2]".into()];
                g.devices = vec!["SEP000000001001".into(), "SEP00036BC7B973".into()];
            }),
        );
        // 26 at Branch, lab phones 1 and 2 (named twice: counted once), John's phone.
        assert_eq!(union.devices.len(), 29, "{:?}", union.devices);
        assert_eq!(union.devices[0], "SEP000000001001");
        assert_eq!(union.devices[1], "SEP000000001002");
    }

    #[test]
    fn r21_groups_by_description_and_calling_search_space() {
        let c = demo();
        let p = Paging::default();
        // "Lab phone 1?": lab phones 10 to 19 (not 1, not 20 and up); case does not matter.
        let by_desc = members(
            &c,
            &p,
            &group(|g| g.descriptions = vec!["lab PHONE 1?".into()]),
        );
        assert_eq!(by_desc.devices.len(), 10, "{:?}", by_desc.devices);
        assert!(by_desc.devices.contains(&"SEP000000001010".to_string()));
        assert!(!by_desc.devices.contains(&"SEP000000001001".to_string()));
        let smiths = members(
            &c,
            &p,
            &group(|g| g.descriptions = vec!["*smith's*".into()]),
        );
        assert_eq!(smiths.devices, vec!["SEP00036BC7B973", "SEP00036BC7B976"]);
        // By CSS: every demo phone has Internal_CSS; give two others one of their own.
        let mut def = c.definition().clone();
        for d in def.devices.iter_mut() {
            if d.name == "SEP000000001003" || d.name == "SEP00036BC7B975" {
                d.css = Some("National_CSS".into());
            }
        }
        let c2 = Cluster::new(def);
        let by_css = members(
            &c2,
            &p,
            &group(|g| g.calling_search_spaces = vec!["National_CSS".into()]),
        );
        assert_eq!(by_css.devices, vec!["SEP000000001003", "SEP00036BC7B975"]);
    }

    #[test]
    fn description_patterns_match_like_globs() {
        for (p, t, want) in [
            ("*", "", true),
            ("*", "anything", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("?", "", false),
            ("a?c", "abc", true),
            ("*lobby*", "Main Lobby phone", true),
            ("lobby", "Main Lobby", false),
            ("**a**b", "xxaxxb", true),
            ("*a*a*a*a*b", &"a".repeat(200), false),
        ] {
            assert_eq!(description_matches(p, t), want, "{p:?} on {t:?}");
        }
    }

    #[test]
    fn the_cap_leaves_phones_out_and_says_which() {
        let c = demo();
        let p = Paging::default();
        let all = members(&c, &p, &group(|g| g.dn_patterns = vec!["!".into()]));
        assert_eq!(all.devices.len(), 50);
        assert_eq!(all.over_cap.len(), c.devices.len() - 50);
        let small = members(
            &c,
            &p,
            &group(|g| {
                g.dn_patterns = vec!["2XXXX".into()];
                g.max_phones = Some(3);
            }),
        );
        assert_eq!(small.devices.len(), 3);
        let big = members(
            &c,
            &p,
            &group(|g| {
                g.dn_patterns = vec!["!".into()];
                g.max_phones = Some(1000);
            }),
        );
        assert_eq!(big.devices.len(), c.devices.len());
        assert!(big.over_cap.is_empty());
    }

    /// The seed's phone selection rules: a phone whose speakerphone is disabled is never
    /// paged and does not take a place under the cap; one on Do Not Disturb is paged.
    #[test]
    fn r20_phones_without_speakerphone_are_left_out_and_dnd_is_ignored() {
        let mut def = crate::services::demo().expect("the demo cluster loads");
        for d in def.devices.iter_mut() {
            match d.name.as_str() {
                "SEP000000001001" => d.disable_speakerphone = true,
                "SEP000000001002" => d.do_not_disturb = true,
                _ => {}
            }
        }
        let c = Cluster::new(def);
        let p = Paging::default();
        let g = members(
            &c,
            &p,
            &group(|g| {
                g.dn_patterns = vec!["2000X".into()];
                g.max_phones = Some(3);
            }),
        );
        assert_eq!(g.no_speakerphone, vec!["SEP000000001001".to_string()]);
        assert_eq!(
            g.devices,
            vec!["SEP000000001002", "SEP000000001003", "SEP000000001004"]
        );
        assert_eq!(g.over_cap.len(), 5);
        assert!(!g.over_cap.contains(&"SEP000000001001".to_string()));
    }

    #[test]
    fn one_site_uses_its_range_and_mixed_sites_the_paging_range() {
        let c = demo();
        let p = Paging::default();
        let hq = vec!["SEP00036BC7B973".to_string(), "SEP000000001001".into()];
        assert_eq!(range_for(&c, &p, &hq), "239.1.1.0/24");
        let branch = vec!["SEP00036BC7B976".to_string()];
        assert_eq!(range_for(&c, &p, &branch), "239.1.2.0/24");
        let mixed = vec!["SEP00036BC7B973".to_string(), "SEP00036BC7B976".into()];
        assert_eq!(range_for(&c, &p, &mixed), p.multicast_range);
    }

    #[test]
    fn addresses_are_handed_out_once() {
        let mut used = BTreeSet::new();
        let a = free_address("239.1.1.0/30", &used).unwrap();
        assert_eq!(a, Ipv4Addr::new(239, 1, 1, 1));
        used.insert(a);
        assert_eq!(
            free_address("239.1.1.0/30", &used),
            Some(Ipv4Addr::new(239, 1, 1, 2))
        );
        used.insert(Ipv4Addr::new(239, 1, 1, 2));
        used.insert(Ipv4Addr::new(239, 1, 1, 3));
        assert_eq!(free_address("239.1.1.0/30", &used), None);
        assert_eq!(
            free_address("239.9.9.9/32", &BTreeSet::new()),
            Some(Ipv4Addr::new(239, 9, 9, 9))
        );
        assert_eq!(parse_range("10.0.0.0/8"), None);
        assert_eq!(
            parse_range("239.1.1.7/24"),
            Some((Ipv4Addr::new(239, 1, 1, 0), 256))
        );
    }
}
