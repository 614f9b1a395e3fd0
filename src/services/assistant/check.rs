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

pub fn check(d: &ClusterDefinition, diag: &mut Diagnostics) {
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
