//! The Attendant Console's checks of a definition: every Queue DDI, CT gateway device, service
//! queue and park device is a route point with one line, a number without wildcards, used for
//! one purpose only (and not the Assistant's); the attendants are users whose phones carry the
//! lines named; each queue has attendants and the server CT gateway devices to take its calls.
//! The sizing rules against the expected peaks are `ucm attendant check`'s ([`super::sizing`]),
//! not errors.

use std::collections::{HashMap, HashSet};

use super::model::Attendant;
use crate::config::validate::Diagnostics;
use crate::config::ClusterDefinition;
use crate::wire::yaml::Path;

/// Whether `user` owns or is associated with `device`.
pub fn user_has_device(d: &ClusterDefinition, user: &str, device: &str) -> bool {
    d.devices.iter().any(|dev| {
        dev.name == device
            && (dev.owner.as_deref() == Some(user)
                || d.end_users
                    .iter()
                    .any(|u| u.userid == user && u.associated_devices.iter().any(|a| a == device)))
    })
}

pub fn check(d: &ClusterDefinition, diag: &mut Diagnostics) {
    let a: &Attendant = &d.section();
    let p = Path::root().key("attendant");
    if a.recall_seconds == 0 || a.recall_seconds > 3600 {
        diag.err(p.key("recall_seconds"), "must be 1 to 3600 seconds");
    }
    if a.blf_max_devices == 0 || a.blf_max_devices > 1_000_000 {
        diag.err(p.key("blf_max_devices"), "must be 1 to 1000000");
    }
    let assistant_rp = d
        .section_value(&["assistant"])
        .and_then(|v| v.get("route_point"))
        .and_then(|v| v.as_str())
        .map(str::to_string);
    // route point -> what uses it first
    let mut used: HashMap<String, String> = HashMap::new();
    let mut device = |path: Path, rp: &str, what: String, diag: &mut Diagnostics| {
        let Some(r) = d.route_points.iter().find(|r| r.name == rp) else {
            diag.err(path, format!("unknown route point {rp:?}"));
            return;
        };
        if r.lines.len() != 1 {
            diag.err(
                path.clone(),
                format!(
                    "route point {rp:?} has {} lines: an attendant console device has exactly one",
                    r.lines.len()
                ),
            );
        } else if crate::dialplan::pattern::validate_digits(&r.lines[0].dn).is_err() {
            diag.err(
                path.clone(),
                format!(
                    "route point {rp:?}'s line {:?} is a pattern: an attendant console device needs a number",
                    r.lines[0].dn
                ),
            );
        }
        if assistant_rp.as_deref() == Some(rp) {
            diag.err(
                path.clone(),
                format!("route point {rp:?} is the Assistant's route point"),
            );
        }
        if let Some(first) = used.get(rp) {
            diag.err(
                path,
                format!("route point {rp:?} is already used as {first}"),
            );
        } else {
            used.insert(rp.to_string(), what);
        }
    };
    for (i, q) in a.queues.iter().enumerate() {
        device(
            p.key("queues").index(i).key("route_point"),
            &q.route_point,
            format!("queue {:?}'s Queue DDI", q.name),
            diag,
        );
    }
    for (key, list, what) in [
        (
            "ct_gateway_devices",
            &a.ct_gateway_devices,
            "a CT gateway device",
        ),
        ("service_queues", &a.service_queues, "a service queue"),
        ("park_devices", &a.park_devices, "a call park device"),
    ] {
        for (i, rp) in list.iter().enumerate() {
            device(p.key(key).index(i), rp, what.to_string(), diag);
        }
    }
    if !a.queues.is_empty() && a.ct_gateway_devices.is_empty() {
        diag.err(
            p.key("ct_gateway_devices"),
            "queues need CT gateway devices: every call into a Queue DDI is redirected to one",
        );
    }
    let users: HashSet<&str> = d.end_users.iter().map(|u| u.userid.as_str()).collect();
    let mut attendants: HashSet<&str> = HashSet::new();
    let mut lines: HashMap<(&str, &str), &str> = HashMap::new();
    for (i, at) in a.attendants.iter().enumerate() {
        let ap = p.key("attendants").index(i);
        if !users.contains(at.user.as_str()) {
            diag.err(ap.key("user"), format!("unknown end user {:?}", at.user));
        }
        if !attendants.insert(&at.user) {
            diag.err(
                ap.key("user"),
                format!("{:?} is an attendant twice", at.user),
            );
        }
        match d.devices.iter().find(|dev| dev.name == at.device) {
            None => diag.err(ap.key("device"), format!("unknown device {:?}", at.device)),
            Some(dev) => {
                if users.contains(at.user.as_str()) && !user_has_device(d, &at.user, &at.device) {
                    diag.err(
                        ap.key("device"),
                        format!(
                            "{:?} neither owns nor is associated with device {:?}",
                            at.user, at.device
                        ),
                    );
                }
                if !dev.lines.iter().any(|l| l.dn == at.line) {
                    diag.err(
                        ap.key("line"),
                        format!("device {:?} has no line {:?}", at.device, at.line),
                    );
                }
            }
        }
        if let Some(other) = lines.insert((&at.device, &at.line), &at.user) {
            diag.err(
                ap.key("line"),
                format!(
                    "line {:?} on {:?} is already attendant {other:?}'s",
                    at.line, at.device
                ),
            );
        }
    }
    let mut names: HashSet<&str> = HashSet::new();
    for (i, q) in a.queues.iter().enumerate() {
        let qp = p.key("queues").index(i);
        if q.name.trim().is_empty() || q.name.len() > 64 {
            diag.err(qp.key("name"), "a queue needs a name of 1 to 64 characters");
        }
        if !names.insert(&q.name) {
            diag.err(
                qp.key("name"),
                format!("queue {:?} is defined twice", q.name),
            );
        }
        if q.attendants.is_empty() {
            diag.err(
                qp.key("attendants"),
                "a queue needs at least one attendant to present its calls to",
            );
        }
        let mut seen = HashSet::new();
        for (j, u) in q.attendants.iter().enumerate() {
            if !attendants.contains(u.as_str()) {
                diag.err(
                    qp.key("attendants").index(j),
                    format!("{u:?} is not in attendant.attendants"),
                );
            }
            if !seen.insert(u) {
                diag.err(
                    qp.key("attendants").index(j),
                    format!("{u:?} is listed twice"),
                );
            }
        }
    }
}
