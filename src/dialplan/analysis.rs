//! Digit analysis: which directory number, route or block a dialled string reaches from a
//! calling search space, as Unified CM decides it.
//!
//! - The caller's search space is the line CSS's partitions followed by the device CSS's
//!   (then the device pool's adjunct CSS); patterns in no partition are reachable by everyone.
//! - Among every complete match in those partitions the closest match wins: the pattern that
//!   matches the fewest strings. The partition order only breaks ties.
//! - A translation pattern transforms the number and analysis starts again with its CSS.
//! - A route pattern leads through its route list to route groups and SIP trunks; the Standard
//!   Local Route Group means the calling device pool's local route group.
//!
//! The plan is compiled once per cluster definition so a call costs a few hash lookups.

use std::collections::HashMap;

use super::pattern::{apply_mask, MatchResult, Pattern};
use crate::config::model::{
    ClusterDefinition, DiscardDigits, RoutePattern, TranslationPattern, STANDARD_LOCAL_ROUTE_GROUP,
};

/// A DN is its pattern and partition (`None`: the null partition).
pub type DnKey = (String, Option<String>);

#[derive(Debug, Clone)]
enum Target {
    Line(DnKey),
    Route(usize),
    Translation(usize),
}

#[derive(Debug, Clone)]
struct Entry {
    pattern: Pattern,
    target: Target,
}

/// Who is calling, as far as digit analysis cares.
#[derive(Debug, Clone, Default)]
pub struct CallingContext {
    pub line_css: Option<String>,
    pub device_css: Option<String>,
    /// The calling device's pool: its adjunct CSS and local route group.
    pub device_pool: Option<String>,
}

impl CallingContext {
    /// A search through one CSS only (forwarding, translation patterns, trunks).
    pub fn css(css: Option<&str>, device_pool: Option<&str>) -> CallingContext {
        CallingContext {
            line_css: None,
            device_css: css.map(str::to_string),
            device_pool: device_pool.map(str::to_string),
        }
    }
}

/// Where a call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A directory number (ring every device that has it, or its route point).
    Line(DnKey),
    /// Out through SIP trunks, tried in this order, with the number to send.
    Trunks { trunks: Vec<String>, number: String },
}

/// The outcome of analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    pub destination: Destination,
    /// The pattern that matched last, and its partition.
    pub pattern: String,
    pub partition: Option<String>,
    /// Translation patterns applied on the way, in order.
    pub translations: Vec<String>,
}

/// Why a number cannot be routed, with the SIP status to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct AnalysisError {
    pub status: u16,
    pub reason: String,
}

impl AnalysisError {
    fn new(status: u16, reason: impl Into<String>) -> AnalysisError {
        AnalysisError {
            status,
            reason: reason.into(),
        }
    }
}

/// The compiled dial plan of one cluster definition.
#[derive(Debug, Clone, Default)]
pub struct DialPlan {
    by_partition: HashMap<Option<String>, Vec<Entry>>,
    css: HashMap<String, Vec<String>>,
    adjunct_css: HashMap<String, String>,
    local_route_group: HashMap<String, String>,
    route_lists: HashMap<String, Vec<String>>,
    route_groups: HashMap<String, Vec<String>>,
    route_patterns: Vec<RoutePattern>,
    translations: Vec<TranslationPattern>,
}

/// Translation patterns that feed each other are cut off after this many steps.
const MAX_TRANSLATIONS: usize = 10;

impl DialPlan {
    /// Compiles the plan. Patterns that do not parse are skipped (validation refuses them first).
    pub fn new(def: &ClusterDefinition) -> DialPlan {
        let mut plan = DialPlan {
            route_patterns: def.route_patterns.clone(),
            translations: def.translation_patterns.clone(),
            ..DialPlan::default()
        };
        let mut add = |partition: &Option<String>, text: &str, target: Target| {
            if let Ok(pattern) = Pattern::parse(text) {
                plan.by_partition
                    .entry(partition.clone())
                    .or_default()
                    .push(Entry { pattern, target });
            }
        };
        for dn in &def.directory_numbers {
            add(
                &dn.partition,
                &dn.pattern,
                Target::Line((dn.pattern.clone(), dn.partition.clone())),
            );
        }
        for (i, rp) in def.route_patterns.iter().enumerate() {
            add(&rp.partition, &rp.pattern, Target::Route(i));
        }
        for (i, tp) in def.translation_patterns.iter().enumerate() {
            add(&tp.partition, &tp.pattern, Target::Translation(i));
        }
        for c in &def.calling_search_spaces {
            plan.css.insert(c.name.clone(), c.partitions.clone());
        }
        for dp in &def.device_pools {
            if let Some(a) = &dp.adjunct_css {
                plan.adjunct_css.insert(dp.name.clone(), a.clone());
            }
            if let Some(g) = &dp.local_route_group {
                plan.local_route_group.insert(dp.name.clone(), g.clone());
            }
        }
        for l in &def.route_lists {
            plan.route_lists.insert(l.name.clone(), l.members.clone());
        }
        for g in &def.route_groups {
            plan.route_groups.insert(g.name.clone(), g.members.clone());
        }
        plan
    }

    /// The partitions a caller may reach, in search order; the null partition last.
    fn search_space(&self, ctx: &CallingContext) -> Vec<Option<String>> {
        let mut out: Vec<Option<String>> = Vec::new();
        let mut push_css = |name: &Option<String>| {
            if let Some(parts) = name.as_ref().and_then(|n| self.css.get(n)) {
                for p in parts {
                    let p = Some(p.clone());
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
            }
        };
        push_css(&ctx.line_css);
        push_css(&ctx.device_css);
        let adjunct = ctx
            .device_pool
            .as_ref()
            .and_then(|dp| self.adjunct_css.get(dp))
            .cloned();
        push_css(&adjunct);
        out.push(None);
        out
    }

    /// Analyses `dialled` for `ctx`.
    pub fn analyse(&self, ctx: &CallingContext, dialled: &str) -> Result<Analysis, AnalysisError> {
        let mut ctx = ctx.clone();
        let mut number = dialled.to_string();
        let mut translations = Vec::new();
        loop {
            let (entry, partition) = self.closest(&ctx, &number).ok_or_else(|| {
                AnalysisError::new(
                    404,
                    format!("no pattern matches {number:?} in the calling search space"),
                )
            })?;
            match &entry.target {
                Target::Line(dn) => {
                    return Ok(Analysis {
                        destination: Destination::Line(dn.clone()),
                        pattern: entry.pattern.as_str().to_string(),
                        partition,
                        translations,
                    })
                }
                Target::Translation(i) => {
                    let Some(tp) = self.translations.get(*i) else {
                        return Err(AnalysisError::new(500, "dial plan index out of date"));
                    };
                    if translations.len() >= MAX_TRANSLATIONS {
                        return Err(AnalysisError::new(
                            482,
                            format!("translation patterns loop on {dialled:?}"),
                        ));
                    }
                    translations.push(tp.pattern.clone());
                    number = transform(
                        &entry.pattern,
                        &number,
                        tp.discard_digits,
                        tp.called_party_transform_mask.as_deref(),
                        tp.prefix_digits.as_deref(),
                    );
                    if let Some(css) = &tp.css {
                        ctx = CallingContext::css(Some(css), ctx.device_pool.as_deref());
                    }
                }
                Target::Route(i) => {
                    let Some(rp) = self.route_patterns.get(*i) else {
                        return Err(AnalysisError::new(500, "dial plan index out of date"));
                    };
                    if rp.block {
                        return Err(AnalysisError::new(
                            403,
                            format!("blocked by route pattern {:?}", rp.pattern),
                        ));
                    }
                    let out = transform(
                        &entry.pattern,
                        &number,
                        rp.discard_digits,
                        rp.called_party_transform_mask.as_deref(),
                        rp.prefix_digits.as_deref(),
                    );
                    let trunks = self.trunks_for(rp, ctx.device_pool.as_deref())?;
                    return Ok(Analysis {
                        destination: Destination::Trunks {
                            trunks,
                            number: out,
                        },
                        pattern: rp.pattern.clone(),
                        partition,
                        translations,
                    });
                }
            }
        }
    }

    fn closest(&self, ctx: &CallingContext, number: &str) -> Option<(&Entry, Option<String>)> {
        let mut best: Option<(u128, &Entry, Option<String>)> = None;
        for part in self.search_space(ctx) {
            let Some(entries) = self.by_partition.get(&part) else {
                continue;
            };
            for e in entries {
                if e.pattern.matches(number) != MatchResult::Complete {
                    continue;
                }
                let s = e.pattern.specificity();
                // Strictly fewer strings wins; equal keeps the earlier partition.
                if best.as_ref().is_none_or(|(b, _, _)| s < *b) {
                    best = Some((s, e, part.clone()));
                }
            }
        }
        best.map(|(_, e, p)| (e, p))
    }

    fn trunks_for(
        &self,
        rp: &RoutePattern,
        device_pool: Option<&str>,
    ) -> Result<Vec<String>, AnalysisError> {
        if let Some(t) = &rp.sip_trunk {
            return Ok(vec![t.clone()]);
        }
        let Some(list) = rp.route_list.as_ref().and_then(|l| self.route_lists.get(l)) else {
            return Err(AnalysisError::new(
                404,
                format!("route pattern {:?} has no route list", rp.pattern),
            ));
        };
        let mut trunks = Vec::new();
        for member in list {
            let group = if member == STANDARD_LOCAL_ROUTE_GROUP {
                match device_pool.and_then(|dp| self.local_route_group.get(dp)) {
                    Some(g) => g,
                    // Cisco skips an unset local route group and tries the next member.
                    None => continue,
                }
            } else {
                member
            };
            for t in self.route_groups.get(group).into_iter().flatten() {
                if !trunks.contains(t) {
                    trunks.push(t.clone());
                }
            }
        }
        if trunks.is_empty() {
            return Err(AnalysisError::new(
                404,
                format!(
                    "route pattern {:?}: no route group applies to the calling device pool",
                    rp.pattern
                ),
            ));
        }
        Ok(trunks)
    }
}

/// Called-party transformations in Cisco's order: discard digits, then the mask, then prefix.
fn transform(
    pattern: &Pattern,
    number: &str,
    discard: Option<DiscardDigits>,
    mask: Option<&str>,
    prefix: Option<&str>,
) -> String {
    let mut n = number.to_string();
    if discard == Some(DiscardDigits::PreDot) {
        if let Some(rest) = pattern.discard_pre_dot(&n) {
            n = rest;
        }
    }
    if let Some(m) = mask {
        n = apply_mask(m, &n);
    }
    if let Some(p) = prefix {
        n = format!("{p}{n}");
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(yaml: &str) -> DialPlan {
        let def = crate::config::parse_str(yaml, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
        DialPlan::new(&def)
    }

    const BASE: &str = r#"cluster: {id: t, name: t}
nodes: [{name: n, address: 127.0.0.1}]
partitions: [{name: A}, {name: B}, {name: PSTN}]
calling_search_spaces:
  - {name: CSS_A, partitions: [A]}
  - {name: CSS_AB, partitions: [A, B]}
  - {name: CSS_BA, partitions: [B, A]}
  - {name: CSS_ALL, partitions: [A, B, PSTN]}
device_pools:
  - {name: HQ, node_group: [n], local_route_group: RG_HQ}
  - {name: BR, node_group: [n], local_route_group: RG_BR}
  - {name: NOLRG, node_group: [n]}
sip_trunks:
  - {name: T_HQ, destinations: ["127.0.0.1:5070"], device_pool: HQ}
  - {name: T_BR, destinations: ["127.0.0.1:5071"], device_pool: BR}
route_groups:
  - {name: RG_HQ, members: [T_HQ]}
  - {name: RG_BR, members: [T_BR]}
route_lists:
  - {name: RL, members: [Standard Local Route Group]}
route_patterns:
  - {pattern: 9.!, partition: PSTN, route_list: RL, discard_digits: pre-dot}
  - {pattern: 9.1900XXXXXXX, partition: PSTN, block: true}
translation_patterns:
  - {pattern: 8.XXXX, partition: A, discard_digits: pre-dot, css: CSS_AB}
  - {pattern: "0", partition: A, called_party_transform_mask: "2000"}
directory_numbers:
  - {pattern: "1000", partition: A}
  - {pattern: "1000", partition: B}
  - {pattern: "10XX", partition: B}
  - {pattern: "2000", partition: B}
  - {pattern: "3000"}
devices:
  - name: SEP000000000001
    model: m
    device_pool: HQ
    lines: [{dn: "1000", partition: A}, {dn: "1000", partition: B}, {dn: "10XX", partition: B}, {dn: "2000", partition: B}, {dn: "3000"}]
"#;

    fn line(ctx: &CallingContext, p: &DialPlan, n: &str) -> DnKey {
        match p.analyse(ctx, n).map(|a| a.destination) {
            Ok(Destination::Line(k)) => k,
            other => panic!("{n}: {other:?}"),
        }
    }

    fn key(p: &str, part: Option<&str>) -> DnKey {
        (p.to_string(), part.map(str::to_string))
    }

    #[test]
    fn css_order_breaks_ties_between_equal_patterns() {
        let p = plan(BASE);
        let ab = CallingContext::css(Some("CSS_AB"), Some("HQ"));
        let ba = CallingContext::css(Some("CSS_BA"), Some("HQ"));
        assert_eq!(line(&ab, &p, "1000"), key("1000", Some("A")));
        assert_eq!(line(&ba, &p, "1000"), key("1000", Some("B")));
    }

    #[test]
    fn closest_match_beats_partition_order() {
        let p = plan(BASE);
        let ab = CallingContext::css(Some("CSS_AB"), Some("HQ"));
        // 1001 only matches 10XX in B.
        assert_eq!(line(&ab, &p, "1001"), key("10XX", Some("B")));
    }

    #[test]
    fn line_css_is_searched_before_device_css() {
        let p = plan(BASE);
        let ctx = CallingContext {
            line_css: Some("CSS_BA".into()),
            device_css: Some("CSS_A".into()),
            device_pool: Some("HQ".into()),
        };
        assert_eq!(line(&ctx, &p, "1000"), key("1000", Some("B")));
    }

    #[test]
    fn unreachable_partitions_give_404() {
        let p = plan(BASE);
        let a = CallingContext::css(Some("CSS_A"), Some("HQ"));
        let e = p.analyse(&a, "2000").unwrap_err();
        assert_eq!(e.status, 404);
        // The null partition is reachable from any CSS, and with none.
        assert_eq!(line(&a, &p, "3000"), key("3000", None));
        assert_eq!(
            line(&CallingContext::default(), &p, "3000"),
            key("3000", None)
        );
    }

    #[test]
    fn translation_patterns_transform_and_use_their_css() {
        let p = plan(BASE);
        let a = CallingContext::css(Some("CSS_A"), Some("HQ"));
        // 8.XXXX drops the 8 and analyses 2000 with CSS_AB, which reaches B.
        let r = p.analyse(&a, "82000").unwrap();
        assert_eq!(r.destination, Destination::Line(key("2000", Some("B"))));
        assert_eq!(r.translations, vec!["8.XXXX".to_string()]);
        // "0" is masked to 2000 but keeps CSS_A, which does not reach B.
        assert_eq!(p.analyse(&a, "0").unwrap_err().status, 404);
    }

    #[test]
    fn local_route_group_follows_the_calling_device_pool() {
        let p = plan(BASE);
        let hq = CallingContext::css(Some("CSS_ALL"), Some("HQ"));
        let br = CallingContext::css(Some("CSS_ALL"), Some("BR"));
        let r = p.analyse(&hq, "914085551234").unwrap();
        assert_eq!(
            r.destination,
            Destination::Trunks {
                trunks: vec!["T_HQ".into()],
                number: "14085551234".into()
            }
        );
        let r = p.analyse(&br, "914085551234").unwrap();
        assert!(
            matches!(r.destination, Destination::Trunks { ref trunks, .. } if trunks == &["T_BR"])
        );
        let none = CallingContext::css(Some("CSS_ALL"), Some("NOLRG"));
        assert_eq!(p.analyse(&none, "914085551234").unwrap_err().status, 404);
    }

    #[test]
    fn blocking_pattern_wins_when_closer() {
        let p = plan(BASE);
        let hq = CallingContext::css(Some("CSS_ALL"), Some("HQ"));
        assert_eq!(p.analyse(&hq, "919005551234").unwrap_err().status, 403);
    }
}
