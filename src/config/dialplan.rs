//! The definition's dial plan, compiled for digit analysis: directory numbers first, then route
//! and translation patterns, each in the order the definition gives them.

use super::model::{ClusterDefinition, DiscardDigits};
use crate::dialplan::{DialPlan, Route, Transform, Translation};

fn transform(
    discard: Option<DiscardDigits>,
    mask: &Option<String>,
    prefix: &Option<String>,
) -> Transform {
    Transform {
        discard_pre_dot: discard == Some(DiscardDigits::PreDot),
        mask: mask.clone(),
        prefix: prefix.clone(),
    }
}

impl ClusterDefinition {
    /// The dial plan of this definition. Patterns that do not parse are skipped (validation
    /// refuses them first).
    pub fn dial_plan(&self) -> DialPlan {
        let mut plan = DialPlan::default();
        for dn in &self.directory_numbers {
            plan.add_directory_number(&dn.pattern, dn.partition.as_deref());
        }
        for rp in &self.route_patterns {
            plan.add_route_pattern(Route {
                pattern: rp.pattern.clone(),
                partition: rp.partition.clone(),
                route_list: rp.route_list.clone(),
                sip_trunk: rp.sip_trunk.clone(),
                block: rp.block,
                transform: transform(
                    rp.discard_digits,
                    &rp.called_party_transform_mask,
                    &rp.prefix_digits,
                ),
            });
        }
        for tp in &self.translation_patterns {
            plan.add_translation_pattern(Translation {
                pattern: tp.pattern.clone(),
                partition: tp.partition.clone(),
                css: tp.css.clone(),
                transform: transform(
                    tp.discard_digits,
                    &tp.called_party_transform_mask,
                    &tp.prefix_digits,
                ),
            });
        }
        for c in &self.calling_search_spaces {
            plan.add_calling_search_space(&c.name, &c.partitions);
        }
        for dp in &self.device_pools {
            plan.add_device_pool(
                &dp.name,
                dp.adjunct_css.as_deref(),
                dp.local_route_group.as_deref(),
            );
        }
        for l in &self.route_lists {
            plan.add_route_list(&l.name, &l.members);
        }
        for g in &self.route_groups {
            plan.add_route_group(&g.name, &g.members);
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use crate::dialplan::analysis::DnKey;
    use crate::dialplan::{CallingContext, Destination, DialPlan};

    fn plan(yaml: &str) -> DialPlan {
        let def = crate::services::parse_str(yaml, "t.yaml").unwrap_or_else(|e| panic!("{e}"));
        def.dial_plan()
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
            emcc_trunk: None,
        };
        assert_eq!(line(&ctx, &p, "1000"), key("1000", Some("B")));
    }

    /// The seed's Figure 18-6: an EMCC logged-in phone's assembled CSS is the roaming pool's
    /// Adjunct CSS, the line CSS, then the EMCC CSS; its Standard Local Route Group is the
    /// EMCC SIP trunk. Other phones of the same pool keep line, device, adjunct and the pool's
    /// local route group.
    #[test]
    fn r17_emcc_phone_searches_the_adjunct_css_first_and_its_lrg_is_the_emcc_trunk() {
        let yaml = BASE
            .replace(
                "  - {name: NOLRG, node_group: [n]}\n",
                "  - {name: NOLRG, node_group: [n]}\n  - {name: ROAM, node_group: [n], adjunct_css: CSS_EMERG, local_route_group: RG_HQ}\n",
            )
            .replace(
                "partitions: [{name: A}, {name: B}, {name: PSTN}]",
                "partitions: [{name: A}, {name: B}, {name: PSTN}, {name: EMERG}]",
            )
            .replace(
                "  - {name: CSS_ALL, partitions: [A, B, PSTN]}\n",
                "  - {name: CSS_ALL, partitions: [A, B, PSTN]}\n  - {name: CSS_EMERG, partitions: [EMERG]}\n  - {name: CSS_PSTN, partitions: [PSTN]}\n",
            )
            .replace(
                "  - {name: T_BR, destinations: [\"127.0.0.1:5071\"], device_pool: BR}\n",
                "  - {name: T_BR, destinations: [\"127.0.0.1:5071\"], device_pool: BR}\n  - {name: T_EMCC, destinations: [\"127.0.0.1:5072\"], device_pool: HQ}\n",
            )
            .replace(
                "route_patterns:\n",
                "route_patterns:\n  - {pattern: \"911\", partition: EMERG, route_list: RL}\n  - {pattern: \"911\", partition: PSTN, sip_trunk: T_BR}\n",
            );
        let p = plan(&yaml);
        let emcc = CallingContext {
            line_css: Some("CSS_PSTN".into()),
            device_css: Some("CSS_ALL".into()),
            device_pool: Some("ROAM".into()),
            emcc_trunk: Some("T_EMCC".into()),
        };
        // 911 is equally close in EMERG (adjunct) and PSTN (line CSS): the adjunct comes first
        // and its route list's Standard LRG is the EMCC trunk, not the pool's RG_HQ.
        let r = p.analyse(&emcc, "911").unwrap();
        assert_eq!(r.partition.as_deref(), Some("EMERG"));
        assert_eq!(
            r.destination,
            Destination::Trunks {
                trunks: vec!["T_EMCC".into()],
                number: "911".into()
            }
        );
        // PSTN calls through the Standard LRG leave on the EMCC trunk too.
        let r = p.analyse(&emcc, "914085551234").unwrap();
        assert_eq!(
            r.destination,
            Destination::Trunks {
                trunks: vec!["T_EMCC".into()],
                number: "14085551234".into()
            }
        );
        // The same pool without EMCC: line CSS first (PSTN's 911 to T_BR), the pool's LRG.
        let local = CallingContext {
            emcc_trunk: None,
            ..emcc.clone()
        };
        let r = p.analyse(&local, "911").unwrap();
        assert_eq!(r.partition.as_deref(), Some("PSTN"));
        assert_eq!(
            r.destination,
            Destination::Trunks {
                trunks: vec!["T_BR".into()],
                number: "911".into()
            }
        );
        let r = p.analyse(&local, "914085551234").unwrap();
        assert_eq!(
            r.destination,
            Destination::Trunks {
                trunks: vec!["T_HQ".into()],
                number: "14085551234".into()
            }
        );
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
