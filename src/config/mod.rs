//! Cluster definitions: reading the YAML, checking it, and turning clear-text secrets into hashes.
//!
//! Every error names the file, the line and the field, e.g.
//! `demo.yaml:42:18: devices[3].device_pool: unknown device pool "Branch"`.

mod dialplan;
pub mod model;
pub mod validate;

use std::fmt;
use std::path::Path as FsPath;

pub use model::ClusterDefinition;

use crate::wire::yaml;

/// The demo cluster, built into the binary so `ucm serve` alone is a working lab.
pub const DEMO_YAML: &str = include_str!("../../fixtures/clusters/demo.yaml");
/// The name the demo cluster's errors and logs use for its source.
pub const DEMO_ORIGIN: &str = "fixtures/clusters/demo.yaml";

/// One problem in a definition, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// The field, as a path like `devices[3].device_pool`; empty for syntax errors.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a definition could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigError>),
}

/// Reads and checks a definition file.
pub fn load_file(path: &FsPath) -> Result<ClusterDefinition, LoadError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        file: file.clone(),
        source,
    })?;
    parse_str(&text, &file)
}

/// The built-in demo cluster.
pub fn demo() -> Result<ClusterDefinition, LoadError> {
    parse_str(DEMO_YAML, DEMO_ORIGIN)
}

/// Parses and checks a definition; `origin` names the source in errors.
pub fn parse_str(text: &str, origin: &str) -> Result<ClusterDefinition, LoadError> {
    let def: ClusterDefinition =
        match serde_saphyr::from_str_with_options(text, yaml::options(text)) {
            Ok(d) => d,
            Err(e) => {
                let (line, column) = e
                    .location()
                    .map(|l| (l.line(), l.column()))
                    .unwrap_or((1, 1));
                // A document that reads as YAML tells which field sits on the error's line.
                let field = yaml::Locator::new(text)
                    .path_at(line)
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                return Err(LoadError::Invalid(vec![ConfigError {
                    file: origin.to_string(),
                    line,
                    column,
                    field,
                    message: plain_message(&e),
                }]));
            }
        };
    let issues = validate::validate(&def);
    if issues.is_empty() {
        return Ok(def);
    }
    let locator = yaml::Locator::new(text);
    let errors = issues
        .into_iter()
        .map(|i| {
            let (line, column) = locator.locate(&i.path).unwrap_or((1, 1));
            ConfigError {
                file: origin.to_string(),
                line,
                column,
                field: i.path.to_string(),
                message: i.message,
            }
        })
        .collect();
    Err(LoadError::Invalid(errors))
}

/// serde-saphyr's message without its snippet and trailing location (we print our own).
fn plain_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let first = text.lines().next().unwrap_or("invalid YAML").trim();
    // Strip a trailing " at line N column M" the library adds; the prefix already says it.
    match first.find(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}

/// Writes a definition as YAML, the form `ucm db export` prints and `ucm db import` reads.
pub fn to_yaml(def: &ClusterDefinition) -> Result<String, serde_saphyr::SerializeError> {
    let mut opts = serde_saphyr::SerializerOptions::default();
    // Hashes and URLs stay on one line instead of folded block scalars.
    opts.prefer_block_scalars = false;
    serde_saphyr::to_string_with_options(def, opts)
}

/// Replaces clear-text passwords and PINs with argon2 hashes, using every core.
pub fn hash_secrets(def: &mut ClusterDefinition) {
    // Digest credentials become the RFC 2617 HA1 (cheap: MD5 is what SIP digest needs).
    for u in &mut def.end_users {
        if let Some(c) = u.digest_credentials.take() {
            u.digest_ha1 = Some(crate::auth::ha1(&u.userid, crate::auth::REALM, &c));
        }
    }
    let mut jobs: Vec<(&mut Option<String>, &mut Option<String>)> = Vec::new();
    for u in &mut def.end_users {
        jobs.push((&mut u.password, &mut u.password_hash));
        jobs.push((&mut u.pin, &mut u.pin_hash));
    }
    for a in &mut def.application_users {
        jobs.push((&mut a.password, &mut a.password_hash));
    }
    jobs.retain(|(clear, _)| clear.is_some());
    if jobs.is_empty() {
        return;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = jobs.len().div_ceil(threads);
    std::thread::scope(|s| {
        for part in jobs.chunks_mut(chunk) {
            s.spawn(move || {
                for (clear, hash) in part.iter_mut() {
                    if let Some(c) = clear.take() {
                        **hash = Some(crate::auth::hash_secret(&c));
                    }
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn type_errors_carry_line_numbers() {
        let text = "cluster:\n  id: x\n  name: y\n  security_mode: open\n";
        let e = parse_str(text, "t.yaml").unwrap_err();
        let LoadError::Invalid(errs) = e else {
            panic!()
        };
        assert_eq!(errs[0].line, 4, "{}", errs[0]);
        println!("{}", errs[0]);
        let text = "cluster:\n  id: x\n  name: y\n  colour: blue\n";
        let LoadError::Invalid(errs) = parse_str(text, "t.yaml").unwrap_err() else {
            panic!()
        };
        println!("{}", errs[0]);
        assert_eq!(errs[0].line, 4);
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
}
