//! Digit analysis: which directory number, route or block a dialled string reaches from a
//! calling search space, as Unified CM decides it.
//!
//! - The caller's search space is the line CSS's partitions followed by the device CSS's
//!   (then the device pool's adjunct CSS); patterns in no partition are reachable by everyone.
//!   For an EMCC logged-in phone (a visiting phone registered here, its home) the assembled CSS
//!   is the seed's Figure 18-6: the roaming device pool's Adjunct CSS, the line CSS, then the
//!   device profile's EMCC CSS (carried as the device CSS).
//! - Among every complete match in those partitions the closest match wins: the pattern that
//!   matches the fewest strings. The partition order only breaks ties.
//! - A translation pattern transforms the number and analysis starts again with its CSS.
//! - A route pattern leads through its route list to route groups and SIP trunks; the Standard
//!   Local Route Group means the calling device pool's local route group, and for an EMCC
//!   logged-in phone the EMCC SIP trunk back to the phone's own (visiting) cluster.
//!
//! The plan is compiled once per cluster definition so a call costs a few hash lookups. It is
//! built from plain parts (the `add_*` methods, in the definition's order), so the dial plan
//! knows nothing of the definition's file format.

use std::collections::HashMap;

use super::pattern::{apply_mask, MatchResult, Pattern};

/// The name a route list uses for the Standard Local Route Group.
pub const STANDARD_LOCAL_ROUTE_GROUP: &str = "Standard Local Route Group";

/// Called-party transformations, applied in Cisco's order: discard digits, mask, prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transform {
    /// Drop the digits matched before the `.` of the pattern.
    pub discard_pre_dot: bool,
    pub mask: Option<String>,
    pub prefix: Option<String>,
}

/// A route pattern: out through a route list or one SIP trunk, or blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub pattern: String,
    pub partition: Option<String>,
    pub route_list: Option<String>,
    pub sip_trunk: Option<String>,
    pub block: bool,
    pub transform: Transform,
}

/// A translation pattern: the number is transformed and analysed again, with the pattern's
/// calling search space when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    pub pattern: String,
    pub partition: Option<String>,
    pub css: Option<String>,
    pub transform: Transform,
}

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
    /// The caller is an EMCC logged-in phone: its Standard Local Route Group is this EMCC SIP
    /// trunk (to the phone's own cluster), and its pool's Adjunct CSS is searched first.
    pub emcc_trunk: Option<String>,
}

impl CallingContext {
    /// A search through one CSS only (forwarding, translation patterns, trunks).
    pub fn css(css: Option<&str>, device_pool: Option<&str>) -> CallingContext {
        CallingContext {
            line_css: None,
            device_css: css.map(str::to_string),
            device_pool: device_pool.map(str::to_string),
            emcc_trunk: None,
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
    /// The digits the last pattern matched (the dialled number after translations): for a
    /// line, the number that reached it (a pattern DN is reached by many numbers).
    pub number: String,
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
    route_patterns: Vec<Route>,
    translations: Vec<Translation>,
}

/// Translation patterns that feed each other are cut off after this many steps.
const MAX_TRANSLATIONS: usize = 10;

impl DialPlan {
    /// Adds a pattern; one that does not parse is skipped (validation refuses it first).
    fn add(&mut self, partition: &Option<String>, text: &str, target: Target) {
        if let Ok(pattern) = Pattern::parse(text) {
            self.by_partition
                .entry(partition.clone())
                .or_default()
                .push(Entry { pattern, target });
        }
    }

    /// A directory number. Add them before route and translation patterns: among equally
    /// close patterns in one partition the first added wins.
    pub fn add_directory_number(&mut self, pattern: &str, partition: Option<&str>) {
        let partition = partition.map(str::to_string);
        let key = (pattern.to_string(), partition.clone());
        self.add(&partition, pattern, Target::Line(key));
    }

    pub fn add_route_pattern(&mut self, route: Route) {
        let target = Target::Route(self.route_patterns.len());
        self.add(&route.partition.clone(), &route.pattern, target);
        self.route_patterns.push(route);
    }

    pub fn add_translation_pattern(&mut self, translation: Translation) {
        let target = Target::Translation(self.translations.len());
        self.add(&translation.partition.clone(), &translation.pattern, target);
        self.translations.push(translation);
    }

    /// A calling search space: its partitions in search order.
    pub fn add_calling_search_space(&mut self, name: &str, partitions: &[String]) {
        self.css.insert(name.to_string(), partitions.to_vec());
    }

    /// A device pool's adjunct CSS and local route group.
    pub fn add_device_pool(
        &mut self,
        name: &str,
        adjunct_css: Option<&str>,
        local_route_group: Option<&str>,
    ) {
        if let Some(a) = adjunct_css {
            self.adjunct_css.insert(name.to_string(), a.to_string());
        }
        if let Some(g) = local_route_group {
            self.local_route_group
                .insert(name.to_string(), g.to_string());
        }
    }

    /// A route list: route groups in order (or the Standard Local Route Group).
    pub fn add_route_list(&mut self, name: &str, members: &[String]) {
        self.route_lists.insert(name.to_string(), members.to_vec());
    }

    /// A route group: SIP trunks in order.
    pub fn add_route_group(&mut self, name: &str, members: &[String]) {
        self.route_groups.insert(name.to_string(), members.to_vec());
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
        let adjunct = ctx
            .device_pool
            .as_ref()
            .and_then(|dp| self.adjunct_css.get(dp))
            .cloned();
        if ctx.emcc_trunk.is_some() {
            // Figure 18-6: Adjunct CSS, line CSS, EMCC CSS.
            push_css(&adjunct);
            push_css(&ctx.line_css);
            push_css(&ctx.device_css);
        } else {
            push_css(&ctx.line_css);
            push_css(&ctx.device_css);
            push_css(&adjunct);
        }
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
                        number,
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
                    number = transform(&entry.pattern, &number, &tp.transform);
                    if let Some(css) = &tp.css {
                        let emcc_trunk = ctx.emcc_trunk.take();
                        ctx = CallingContext::css(Some(css), ctx.device_pool.as_deref());
                        ctx.emcc_trunk = emcc_trunk;
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
                    let out = transform(&entry.pattern, &number, &rp.transform);
                    let trunks = self.trunks_for(rp, &ctx)?;
                    return Ok(Analysis {
                        destination: Destination::Trunks {
                            trunks,
                            number: out,
                        },
                        pattern: rp.pattern.clone(),
                        partition,
                        translations,
                        number,
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

    fn trunks_for(&self, rp: &Route, ctx: &CallingContext) -> Result<Vec<String>, AnalysisError> {
        let device_pool = ctx.device_pool.as_deref();
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
            if member == STANDARD_LOCAL_ROUTE_GROUP {
                if let Some(t) = &ctx.emcc_trunk {
                    // The seed: "When Unified CM logic must invoke a Standard LRG for an EMCC
                    // logged-in device, it ... sends the PSTN call across a designated
                    // EMCC-specific SIP trunk to the visiting cluster".
                    if !trunks.contains(t) {
                        trunks.push(t.clone());
                    }
                    continue;
                }
            }
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
fn transform(pattern: &Pattern, number: &str, t: &Transform) -> String {
    let mut n = number.to_string();
    if t.discard_pre_dot {
        if let Some(rest) = pattern.discard_pre_dot(&n) {
            n = rest;
        }
    }
    if let Some(m) = &t.mask {
        n = apply_mask(m, &n);
    }
    if let Some(p) = &t.prefix {
        n = format!("{p}{n}");
    }
    n
}
