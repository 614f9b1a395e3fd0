//! Reading a cluster definition against the generic model and every service's part of it:
//! what `ucm config check`, `ucm serve` and `ucm db import` use.

use std::path::Path;

use crate::config::{self, ClusterDefinition, LoadError, Schema};

/// Every service's sections and checks.
pub fn schema() -> Schema {
    Schema {
        sections: super::ALL.iter().flat_map(|s| s.sections.iter()).collect(),
        checks: super::ALL.iter().filter_map(|s| s.check).collect(),
    }
}

/// Parses and checks a definition; `origin` names the source in errors.
pub fn parse_str(text: &str, origin: &str) -> Result<ClusterDefinition, LoadError> {
    config::parse_with(text, origin, &schema())
}

/// Reads and checks a definition file.
pub fn load_file(path: &Path) -> Result<ClusterDefinition, LoadError> {
    config::load_file_with(path, &schema())
}

/// The configuration reference (`fixtures/clusters/REFERENCE.md`): the generic model and every
/// service's part of it.
pub fn reference_markdown() -> String {
    let minimal = parse_str("cluster: {id: x, name: y}\n", "reference")
        .ok()
        .and_then(|d| serde_json::to_value(&d).ok())
        .unwrap_or_default();
    let models: Vec<&str> = super::ALL
        .iter()
        .map(|s| s.model_source)
        .filter(|m| !m.is_empty())
        .collect();
    let schema = schema();
    config::reference::markdown(&models, &schema.sections, &minimal)
}

/// The built-in demo cluster.
pub fn demo() -> Result<ClusterDefinition, LoadError> {
    parse_str(config::DEMO_YAML, config::DEMO_ORIGIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEMO_YAML;

    #[test]
    fn demo_cluster_is_valid() {
        let d = demo().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d.cluster.id, "demo");
        assert!(d.devices.len() >= 50);
        assert_eq!(d.end_users[0].pin.as_deref(), Some("12345"));
    }

    #[test]
    fn r15_webdialer_answer_timeout_is_bounded() {
        for (v, ok) in [("0", false), ("1", true), ("300", true), ("301", false)] {
            let text = DEMO_YAML.replace(
                "    max_concurrent_call_requests: 3\n",
                &format!("    max_concurrent_call_requests: 3\n    answer_timeout_seconds: {v}\n"),
            );
            let r = parse_str(&text, "t.yaml");
            assert_eq!(r.is_ok(), ok, "{v}: {:?}", r.err().map(|e| e.to_string()));
            if let Err(e) = r {
                assert!(e.to_string().contains("answer_timeout_seconds"), "{e}");
            }
        }
    }

    #[test]
    fn r8_paging_mistakes_are_each_reported_where_they_are() {
        let text = "cluster: {id: x, name: y}
device_pools: [{name: DP}]
application_users:
  - {userid: nocti, password: x}
route_points: []
paging:
  user: nocti
  multicast_range: 10.0.0.0/8
  multicast_port: 20481
  multicast_ttl: 0
  volume: 101
  recipient_groups:
    - name: g
      devices: [SEP000000000001]
      device_pools: [Nope]
      dn_patterns: [\"10O1\"]
    - name: g
      locations: [Mars]
    - name: empty
    - name: css
      calling_search_spaces: [Nope_CSS]
      descriptions: [\"\"]
  dialcasts:
    - {route_point: RP, recipient_group: none}
";
        let LoadError::Invalid(errs) = parse_str(text, "p.yaml").unwrap_err() else {
            panic!()
        };
        let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let want = [
            ("paging.user", "cti-control-all-devices"),
            ("paging.multicast_range", "not an IPv4 multicast range"),
            ("paging.multicast_port", "even port"),
            ("paging.multicast_ttl", "TTL"),
            ("paging.volume", "0 to 100"),
            ("paging.recipient_groups[0].devices[0]", "unknown device"),
            (
                "paging.recipient_groups[0].device_pools[0]",
                "unknown device pool",
            ),
            ("paging.recipient_groups[0].dn_patterns[0]", "not a pattern"),
            (
                "paging.recipient_groups[1].name",
                "duplicate recipient group",
            ),
            (
                "paging.recipient_groups[1].locations[0]",
                "unknown location",
            ),
            ("paging.recipient_groups[2]", "names devices, device pools"),
            (
                "paging.recipient_groups[3].calling_search_spaces[0]",
                "unknown calling search space",
            ),
            (
                "paging.recipient_groups[3].descriptions[0]",
                "empty description pattern",
            ),
            ("paging.dialcasts[0].route_point", "unknown route point"),
            (
                "paging.dialcasts[0].recipient_group",
                "unknown recipient group",
            ),
        ];
        for (path, msg) in want {
            assert!(
                all.iter().any(|e| e.contains(path) && e.contains(msg)),
                "no {path}: {msg} in\n{}",
                all.join("\n")
            );
        }
        // Located in the file: the TTL is on line 10.
        let ttl = errs
            .iter()
            .find(|e| e.to_string().contains("multicast_ttl"))
            .unwrap();
        assert_eq!(ttl.line, 10, "{ttl}");
    }

    #[test]
    fn r14_every_section_is_owned_by_one_part_of_the_model() {
        let schema = schema();
        // Each service section is declared by exactly one service, and none takes a key of
        // the generic model.
        for spec in &schema.sections {
            let owners = super::super::ALL
                .iter()
                .filter(|s| s.sections.iter().any(|x| x.path == spec.path))
                .count();
            assert_eq!(
                owners, 1,
                "{:?} is declared by {owners} services",
                spec.path
            );
            let generic: &[&str] = if spec.is_service_parameter() {
                crate::config::model::SERVICE_PARAMETERS
            } else {
                &[]
            };
            assert!(!generic.contains(&spec.key()), "{:?}", spec.path);
            assert!(
                spec.is_service_parameter()
                    || !crate::config::model::TOP_LEVEL.contains(&Some(spec.key())),
                "{:?} is also a generic section",
                spec.path
            );
        }
        // Every key an export writes is claimed: by the generic model or by one service.
        let def = demo().unwrap();
        let v = serde_json::to_value(&def).unwrap();
        for k in v.as_object().unwrap().keys() {
            assert!(
                crate::config::model::TOP_LEVEL.contains(&Some(k.as_str()))
                    || schema.section(false, k).is_some(),
                "top-level {k} has no owner"
            );
        }
        for k in v["service_parameters"].as_object().unwrap().keys() {
            assert!(
                crate::config::model::SERVICE_PARAMETERS.contains(&k.as_str())
                    || schema.section(true, k).is_some(),
                "service_parameters.{k} has no owner"
            );
        }
        // The paging section is the paging service's: read without the services, it is an
        // unknown key, named, with where it is and what is known.
        let text = "cluster: {id: x, name: y}\npaging:\n  multicast_port: 20482\n";
        assert!(parse_str(text, "t.yaml").is_ok());
        let Err(LoadError::Invalid(errs)) = config::parse_with(text, "t.yaml", &Schema::default())
        else {
            panic!("the generic model alone takes a paging section")
        };
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "paging");
        assert_eq!(errs[0].line, 3, "{}", errs[0]);
        assert!(
            errs[0]
                .message
                .starts_with("unknown field `paging`, expected one of cluster, nodes"),
            "{}",
            errs[0]
        );
        // An unknown section is refused naming it and listing the services' sections too.
        for (text, field, line) in [
            ("cluster: {id: x, name: y}\npagingg:\n  user: x\n", "pagingg", 3),
            (
                "cluster: {id: x, name: y}\nservice_parameters:\n  extension_mobilty:\n    allow_proxy: true\n",
                "service_parameters.extension_mobilty",
                4,
            ),
        ] {
            let Err(LoadError::Invalid(errs)) = parse_str(text, "t.yaml") else {
                panic!("{text} read")
            };
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert_eq!(errs[0].field, field);
            assert_eq!(errs[0].line, line, "{}", errs[0]);
            let m = &errs[0].message;
            assert!(m.contains(&format!("unknown field `{}`", field.rsplit('.').next().unwrap())), "{m}");
            let known: &[&str] = if field == "pagingg" {
                &["cluster", "route_points, emcc, paging, assistant, attendant, snmp, end_users"]
            } else {
                &["call_manager, extension_mobility, webdialer, phone_services"]
            };
            for k in known {
                assert!(m.contains(k), "{k} in {m}");
            }
        }
        // A mistake inside a service's section is located on its line, with its field.
        let text = "cluster: {id: x, name: y}\nservice_parameters:\n  webdialer:\n    max_concurrent_call_requests: 2\n    colour: blue\n";
        let Err(LoadError::Invalid(errs)) = parse_str(text, "t.yaml") else {
            panic!()
        };
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            (errs[0].line, errs[0].field.as_str()),
            (5, "service_parameters.webdialer.colour"),
            "{}",
            errs[0]
        );
        assert!(
            errs[0]
                .message
                .starts_with("unknown field `colour`, expected one of user_session_expiry_hours"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn r14_a_flow_style_document_reads_its_service_sections() {
        let text = "{cluster: {id: x, name: y}, service_parameters: {webdialer: {max_concurrent_call_requests: 2}}, paging: {multicast_port: 20482}}";
        let def = parse_str(text, "flow.yaml").unwrap_or_else(|e| panic!("{e}"));
        let pg: crate::services::paging::model::Paging = def.section();
        assert_eq!(pg.multicast_port, 20482);
        let wd: crate::services::webdialer::model::WebDialerParameters = def.section();
        assert_eq!(wd.max_concurrent_call_requests, 2);
        let bad = text.replace("multicast_port: 20482", "multicast_port: 20481");
        let Err(LoadError::Invalid(errs)) = parse_str(&bad, "flow.yaml") else {
            panic!()
        };
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].message.contains("even port"), "{}", errs[0]);
    }

    #[test]
    fn r14_sections_are_written_with_their_defaults_and_read_back() {
        let def = parse_str("cluster: {id: x, name: y}\n", "t.yaml").unwrap();
        let yaml = config::to_yaml(&def).unwrap();
        // Every service parameter section is written out; paging, unused, is not.
        for k in [
            "extension_mobility:",
            "webdialer:",
            "phone_services:",
            "call_manager:",
        ] {
            assert!(yaml.contains(k), "{k} in\n{yaml}");
        }
        assert!(!yaml.contains("paging"), "{yaml}");
        assert_eq!(parse_str(&yaml, "again.yaml").unwrap(), def);
        let demo = demo().unwrap();
        let again = parse_str(&config::to_yaml(&demo).unwrap(), "again.yaml").unwrap();
        assert_eq!(again, demo);
        let pg: crate::services::paging::model::Paging = demo.section();
        assert!(!pg.dialcasts.is_empty());
        // Written in the services' order, each section in its type's field order, also after
        // a trip through JSON (the store), which sorts keys, once the schema is attached.
        let yaml = config::to_yaml(&demo).unwrap();
        let at = |k: &str| yaml.find(k).unwrap_or_else(|| panic!("{k} in\n{yaml}"));
        assert!(at("  extension_mobility:") < at("  webdialer:"));
        assert!(at("  webdialer:") < at("  phone_services:"));
        assert!(
            yaml.contains("  extension_mobility:\n    validate_ip_address:"),
            "{yaml}"
        );
        assert!(
            yaml.contains("paging:\n  user: paging\n  max_group_size:"),
            "{yaml}"
        );
        let mut stored: ClusterDefinition =
            serde_json::from_value(serde_json::to_value(&demo).unwrap()).unwrap();
        assert_eq!(stored, demo);
        schema().attach(&mut stored);
        assert_eq!(config::to_yaml(&stored).unwrap(), yaml);
    }

    #[test]
    fn r21_configuration_reference_matches_the_code() {
        let want = reference_markdown();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(config::reference::REFERENCE_PATH);
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is not what the model gives: run `cargo xtask config-reference`",
            path.display()
        );
        // Every section of a definition is described, with its fields.
        for section in [
            "## ClusterDefinition",
            "## Device",
            "## ServiceParameters",
            "## Paging",
        ] {
            assert!(want.contains(section), "no {section}");
        }
        assert!(
            want.contains("| `register_expires` | integer | `3600` |"),
            "{want}"
        );
    }
}
