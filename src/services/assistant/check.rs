//! Unified CM Assistant's checks of a definition: the managers and assistants are users whose
//! phones carry the lines named, the route point exists, the seed's rules on extensions
//! (proxy lines unique, no two managers with one Assistant-controlled line, one mode per
//! assistant) and its capacity figures (service parameters, defaulting to the seed's values).

use std::collections::{HashMap, HashSet};

use super::model::{Assistant, AssistantParameters, Mode};
use crate::config::validate::Diagnostics;
use crate::config::ClusterDefinition;
use crate::wire::yaml::Path;

/// Whether `user`'s phones (associated or owned) carry line `dn`.
fn user_has_line(d: &ClusterDefinition, user: &str, dn: &str) -> bool {
    let associated: HashSet<&str> = d
        .end_users
        .iter()
        .filter(|u| u.userid == user)
        .flat_map(|u| u.associated_devices.iter().map(|s| s.as_str()))
        .collect();
    d.devices
        .iter()
        .filter(|dev| associated.contains(dev.name.as_str()) || dev.owner.as_deref() == Some(user))
        .any(|dev| dev.lines.iter().any(|l| l.dn == dn))
}

/// Every check of the Assistant's part of a definition: the structure, then the dial plan
/// rules ([`dialplan`]), each violation an error naming its rule.
pub fn check(d: &ClusterDefinition, diag: &mut Diagnostics) {
    check_structure(d, diag);
    for v in dialplan(d) {
        diag.err(v.path, format!("[{}] {}", v.rule, v.message));
    }
}

/// Parses and checks a definition with every check but the Assistant's dial plan rules (what
/// `ucm assistant check-dialplan` reports on its own).
pub fn parse_for_dialplan(
    text: &str,
    origin: &str,
) -> Result<ClusterDefinition, crate::config::LoadError> {
    let mut schema = crate::services::definition::schema();
    schema.checks = crate::services::ALL
        .iter()
        .filter_map(|s| {
            let assistant = s
                .flags
                .iter()
                .any(|f| f.flag == crate::config::model::NodeService::Assistant);
            if assistant {
                Some(check_structure as crate::config::section::Check)
            } else {
                s.check
            }
        })
        .collect();
    crate::config::parse_with(text, origin, &schema)
}

/// The structure and the limits.
fn check_structure(d: &ClusterDefinition, diag: &mut Diagnostics) {
    let prm: &AssistantParameters = &d.section();
    let a: &Assistant = &d.section();
    let pp = Path::root().key("service_parameters").key("assistant");
    for (key, v) in [
        ("max_assistants_per_manager", prm.max_assistants_per_manager),
        ("max_managers_per_assistant", prm.max_managers_per_assistant),
        ("max_managers_per_cluster", prm.max_managers_per_cluster),
        ("max_assistants_per_cluster", prm.max_assistants_per_cluster),
    ] {
        if v == 0 {
            diag.err(pp.key(key), "must be at least 1");
        }
    }
    for (key, v) in [
        ("rna_timeout_seconds", prm.rna_timeout_seconds),
        ("console_heartbeat_seconds", prm.console_heartbeat_seconds),
        (
            "console_request_timeout_seconds",
            prm.console_request_timeout_seconds,
        ),
    ] {
        if v == 0 || v > 3600 {
            diag.err(pp.key(key), "must be 1 to 3600 seconds");
        }
    }
    if prm.phone_http_port == 0 {
        diag.err(pp.key("phone_http_port"), "must be a port (1 to 65535)");
    }
    let p = Path::root().key("assistant");
    if let Some(rp) = &a.route_point {
        if !d.route_points.iter().any(|r| &r.name == rp) {
            diag.err(p.key("route_point"), format!("unknown route point {rp:?}"));
        }
    } else if a.managers.iter().any(|m| m.mode == Mode::Proxy) {
        diag.err(
            p.key("route_point"),
            "managers in proxy line mode need the Assistant route point that intercepts their calls",
        );
    }
    if a.managers.len() > prm.max_managers_per_cluster {
        diag.err(
            p.key("managers"),
            format!(
                "{} managers: at most {} per cluster (service_parameters.assistant.max_managers_per_cluster)",
                a.managers.len(),
                prm.max_managers_per_cluster
            ),
        );
    }
    let users: HashSet<&str> = d.end_users.iter().map(|u| u.userid.as_str()).collect();
    let mut manager_lines: HashMap<&str, &str> = HashMap::new();
    let mut manager_users: HashSet<&str> = HashSet::new();
    let mut proxy_lines: HashMap<&str, &str> = HashMap::new();
    // assistant -> (mode first seen, managers)
    let mut assistants: HashMap<&str, (Mode, usize)> = HashMap::new();
    for (i, m) in a.managers.iter().enumerate() {
        let mp = p.key("managers").index(i);
        if !users.contains(m.user.as_str()) {
            diag.err(mp.key("user"), format!("unknown end user {:?}", m.user));
        } else if !user_has_line(d, &m.user, &m.line) {
            diag.err(
                mp.key("line"),
                format!("no phone of {:?} carries line {:?}", m.user, m.line),
            );
        }
        if !manager_users.insert(&m.user) {
            diag.err(mp.key("user"), format!("{:?} is a manager twice", m.user));
        }
        // The seed: two managers cannot have the same Assistant-controlled line, even
        // across partitions.
        if let Some(other) = manager_lines.insert(&m.line, &m.user) {
            diag.err(
                mp.key("line"),
                format!(
                    "line {:?} is already {other:?}'s Assistant-controlled line",
                    m.line
                ),
            );
        }
        if m.assistants.is_empty() {
            diag.err(
                mp.key("assistants"),
                "a manager needs at least one assistant",
            );
        }
        if m.assistants.len() > prm.max_assistants_per_manager {
            diag.err(
                mp.key("assistants"),
                format!(
                    "{} assistants: at most {} per manager (service_parameters.assistant.max_assistants_per_manager)",
                    m.assistants.len(),
                    prm.max_assistants_per_manager
                ),
            );
        }
        for (j, s) in m.assistants.iter().enumerate() {
            let sp = mp.key("assistants").index(j);
            if !users.contains(s.user.as_str()) {
                diag.err(sp.key("user"), format!("unknown end user {:?}", s.user));
            }
            let entry = assistants.entry(&s.user).or_insert((m.mode, 0));
            entry.1 += 1;
            if entry.0 != m.mode {
                diag.err(
                    sp.key("user"),
                    format!(
                        "assistant {:?} serves managers in both proxy line and shared line mode; one assistant never mixes the two",
                        s.user
                    ),
                );
            }
            if entry.1 == prm.max_managers_per_assistant + 1 {
                diag.err(
                    sp.key("user"),
                    format!(
                        "assistant {:?} has more than {} managers (service_parameters.assistant.max_managers_per_assistant)",
                        s.user, prm.max_managers_per_assistant
                    ),
                );
            }
            match (m.mode, &s.proxy_line) {
                (Mode::Proxy, None) => diag.err(
                    sp.key("proxy_line"),
                    "in proxy line mode each assistant needs the manager's proxy line",
                ),
                (Mode::Shared, Some(_)) => diag.err(
                    sp.key("proxy_line"),
                    "in shared line mode there are no proxy lines (the assistant's phone carries the manager's line)",
                ),
                (Mode::Proxy, Some(pl)) => {
                    if users.contains(s.user.as_str()) && !user_has_line(d, &s.user, pl) {
                        diag.err(
                            sp.key("proxy_line"),
                            format!("no phone of {:?} carries line {pl:?}", s.user),
                        );
                    }
                    // The seed: proxy line numbers unique, even across partitions.
                    if let Some(other) = proxy_lines.insert(pl, &m.user) {
                        diag.err(
                            sp.key("proxy_line"),
                            format!("proxy line {pl:?} is already a proxy line for {other:?}"),
                        );
                    }
                }
                (Mode::Shared, None) => {
                    if users.contains(s.user.as_str()) && !user_has_line(d, &s.user, &m.line) {
                        diag.err(
                            sp.key("user"),
                            format!(
                                "in shared line mode {:?}'s phone must carry the manager's line {:?}",
                                s.user, m.line
                            ),
                        );
                    }
                }
            }
        }
    }
    if assistants.len() > prm.max_assistants_per_cluster {
        diag.err(
            p.key("managers"),
            format!(
                "{} assistants: at most {} per cluster (service_parameters.assistant.max_assistants_per_cluster)",
                assistants.len(),
                prm.max_assistants_per_cluster
            ),
        );
    }
}

/// One violation of the seed's design considerations for the Assistant's dial plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which rule: `manager-reachable`, `proxy-line-unique`, `shared-line-partition`,
    /// `mobile-manager`, `assistant-em`.
    pub rule: &'static str,
    pub path: Path,
    pub message: String,
}

fn show(partition: &Option<String>) -> String {
    partition.as_deref().unwrap_or("<None>").to_string()
}

/// The partitions a calling search space names.
fn css_partitions<'a>(d: &'a ClusterDefinition, css: Option<&str>) -> Vec<&'a str> {
    css.and_then(|c| d.calling_search_spaces.iter().find(|x| x.name == c))
        .map(|c| c.partitions.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

/// The seed's dial plan rules for the Assistant ("Dial plan considerations", "Extension
/// Mobility considerations"), from partitions and calling search spaces:
/// - proxy line mode: a manager's Assistant-controlled line is reachable only from the
///   Assistant route point and the proxy lines: every other line (a phone's or a device
///   profile's) whose calling search space (line's, then device's) holds the manager line's
///   partition, and every translation pattern whose CSS does, is named;
/// - proxy line numbers unique across partitions (no other line with the number);
/// - shared line mode: the manager's and the assistant's appearance in one partition;
/// - a manager who uses Extension Mobility is a mobile manager, and Multiple Login Behavior
///   keeps them to one phone (not `allowed`);
/// - assistants do not use Extension Mobility.
pub fn dialplan(d: &ClusterDefinition) -> Vec<Violation> {
    let a: &Assistant = &d.section();
    let mut out = Vec::new();
    let ap = Path::root().key("assistant").key("managers");
    // The manager's line as it appears on the manager's phones: its partition.
    let appearance = |user: &str, dn: &str| -> Option<Option<String>> {
        let associated: HashSet<&str> = d
            .end_users
            .iter()
            .filter(|u| u.userid == user)
            .flat_map(|u| u.associated_devices.iter().map(|s| s.as_str()))
            .collect();
        d.devices
            .iter()
            .filter(|dev| {
                associated.contains(dev.name.as_str()) || dev.owner.as_deref() == Some(user)
            })
            .flat_map(|dev| dev.lines.iter())
            .find(|l| l.dn == dn)
            .map(|l| l.partition.clone())
    };
    let line_css = |dn: &str, partition: &Option<String>| -> Option<&str> {
        d.directory_numbers
            .iter()
            .find(|x| x.pattern == dn && &x.partition == partition)
            .and_then(|x| x.css.as_deref())
    };
    // Lines allowed to reach the managers: the route point's and the proxy lines.
    let route_point_lines: HashSet<&str> = a
        .route_point
        .as_deref()
        .and_then(|rp| d.route_points.iter().find(|r| r.name == rp))
        .map(|r| r.lines.iter().map(|l| l.dn.as_str()).collect())
        .unwrap_or_default();
    let proxy_lines: HashSet<&str> = a
        .managers
        .iter()
        .flat_map(|m| m.assistants.iter().filter_map(|s| s.proxy_line.as_deref()))
        .collect();
    let em_multiple = d
        .section_value(&["service_parameters", "extension_mobility"])
        .and_then(|v| v.get("multiple_login_behavior"))
        .and_then(|v| v.as_str())
        .unwrap_or("not-allowed")
        .to_string();
    for (i, m) in a.managers.iter().enumerate() {
        let mp = ap.index(i);
        let Some(mpart) = appearance(&m.user, &m.line) else {
            continue; // `check` names the missing line.
        };
        let reaches = |parts: &[&str]| match &mpart {
            // A DN in no partition: every calling search space reaches it.
            None => true,
            Some(p) => parts.contains(&p.as_str()),
        };
        if m.mode == Mode::Proxy {
            for (di, dev) in d.devices.iter().enumerate() {
                for (li, l) in dev.lines.iter().enumerate() {
                    if l.dn == m.line
                        || route_point_lines.contains(l.dn.as_str())
                        || proxy_lines.contains(l.dn.as_str())
                    {
                        continue;
                    }
                    let mut parts = css_partitions(d, line_css(&l.dn, &l.partition));
                    parts.extend(css_partitions(d, dev.css.as_deref()));
                    if reaches(&parts) {
                        out.push(Violation {
                            rule: "manager-reachable",
                            path: Path::root().key("devices").index(di).key("lines").index(li),
                            message: format!(
                                "line {} ({}) on {} reaches manager {:?}'s line {} in {} directly: only the Assistant route point and the proxy lines may",
                                l.dn, show(&l.partition), dev.name, m.user, m.line, show(&mpart)
                            ),
                        });
                    }
                }
            }
            for (pi, prof) in d.device_profiles.iter().enumerate() {
                for (li, l) in prof.lines.iter().enumerate() {
                    if l.dn == m.line || proxy_lines.contains(l.dn.as_str()) {
                        continue;
                    }
                    if reaches(&css_partitions(d, line_css(&l.dn, &l.partition))) {
                        out.push(Violation {
                            rule: "manager-reachable",
                            path: Path::root().key("device_profiles").index(pi).key("lines").index(li),
                            message: format!(
                                "line {} ({}) of device profile {} reaches manager {:?}'s line {} in {} directly",
                                l.dn, show(&l.partition), prof.name, m.user, m.line, show(&mpart)
                            ),
                        });
                    }
                }
            }
            for (ti, t) in d.translation_patterns.iter().enumerate() {
                if t.css.is_some() && reaches(&css_partitions(d, t.css.as_deref())) {
                    out.push(Violation {
                        rule: "manager-reachable",
                        path: Path::root().key("translation_patterns").index(ti).key("css"),
                        message: format!(
                            "translation pattern {} routes through {} which reaches manager {:?}'s line {} in {} directly",
                            t.pattern, t.css.as_deref().unwrap_or(""), m.user, m.line, show(&mpart)
                        ),
                    });
                }
            }
        }
        if m.mode == Mode::Shared {
            for (j, s) in m.assistants.iter().enumerate() {
                if let Some(spart) = appearance(&s.user, &m.line) {
                    if spart != mpart {
                        out.push(Violation {
                            rule: "shared-line-partition",
                            path: mp.key("assistants").index(j),
                            message: format!(
                                "shared line {}: {:?}'s appearance is in {}, the manager's in {}: one partition, or it is not one line",
                                m.line, s.user, show(&spart), show(&mpart)
                            ),
                        });
                    }
                }
            }
        }
        let em_user = d
            .end_users
            .iter()
            .find(|u| u.userid == m.user)
            .is_some_and(|u| !u.device_profiles.is_empty());
        if em_user && !m.mobile {
            out.push(Violation {
                rule: "mobile-manager",
                path: mp.key("mobile"),
                message: format!(
                    "manager {:?} has Extension Mobility device profiles: a manager who logs in with EM must be a mobile manager (mobile: true)",
                    m.user
                ),
            });
        }
        if (em_user || m.mobile) && em_multiple == "allowed" {
            out.push(Violation {
                rule: "mobile-manager",
                path: Path::root()
                    .key("service_parameters")
                    .key("extension_mobility")
                    .key("multiple_login_behavior"),
                message: format!(
                    "manager {:?} uses Extension Mobility while Multiple Login Behavior is `allowed`: logged in to two phones, the manager has two Assistant-controlled lines (not-allowed or auto-logout)",
                    m.user
                ),
            });
        }
        for (j, s) in m.assistants.iter().enumerate() {
            if d.end_users
                .iter()
                .find(|u| u.userid == s.user)
                .is_some_and(|u| !u.device_profiles.is_empty())
            {
                out.push(Violation {
                    rule: "assistant-em",
                    path: mp.key("assistants").index(j),
                    message: format!(
                        "assistant {:?} has Extension Mobility device profiles: assistants cannot use Extension Mobility",
                        s.user
                    ),
                });
            }
        }
    }
    // Proxy line numbers unique across partitions: no other line carries the number.
    let mut seen = HashSet::new();
    for (i, m) in a.managers.iter().enumerate() {
        for (j, s) in m.assistants.iter().enumerate() {
            let Some(pl) = s.proxy_line.as_deref() else {
                continue;
            };
            if !seen.insert(pl) {
                continue;
            }
            let mut partitions: Vec<Option<String>> = d
                .devices
                .iter()
                .flat_map(|dev| dev.lines.iter())
                .chain(d.device_profiles.iter().flat_map(|p| p.lines.iter()))
                .filter(|l| l.dn == pl)
                .map(|l| l.partition.clone())
                .chain(
                    d.directory_numbers
                        .iter()
                        .filter(|x| x.pattern == pl)
                        .map(|x| x.partition.clone()),
                )
                .collect();
            partitions.sort();
            partitions.dedup();
            if partitions.len() > 1 {
                out.push(Violation {
                    rule: "proxy-line-unique",
                    path: ap.index(i).key("assistants").index(j).key("proxy_line"),
                    message: format!(
                        "proxy line {pl} exists in {} partitions ({}): proxy line numbers must be unique across partitions",
                        partitions.len(),
                        partitions.iter().map(show).collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        }
    }
    out
}
