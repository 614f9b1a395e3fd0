//! Extension Mobility Cross Cluster's checks of its section and of how it refers to the rest of
//! the definition.

use std::collections::{HashMap, HashSet};

use super::model::Emcc;
use crate::config::validate::{is_hostname, names, Diagnostics};
use crate::config::ClusterDefinition;
use crate::wire::yaml::Path;

/// Cisco's range of the Remote Cluster Update Interval (minutes).
pub const UPDATE_MINUTES: std::ops::RangeInclusive<u32> = 15..=10_080;

/// Whether `s` is a host (IP address or name) with an optional `:port` (IPv6 in brackets when
/// a port follows).
pub fn is_address(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || (h.starts_with('[') && h.ends_with(']')) => {
            (h, Some(p))
        }
        _ => (s, None),
    };
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return false;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse::<std::net::IpAddr>().is_ok() || is_hostname(host)
}

pub fn check(d: &ClusterDefinition, diag: &mut Diagnostics) {
    if d.section_value(&["emcc"]).is_none() {
        return;
    }
    let e: Emcc = d.section();
    let p = Path::root().key("emcc");
    if !UPDATE_MINUTES.contains(&e.remote_cluster_update_minutes) {
        diag.err(
            p.key("remote_cluster_update_minutes"),
            format!(
                "{} is outside the Remote Cluster Update Interval's range, 15 to 10080 minutes",
                e.remote_cluster_update_minutes
            ),
        );
    }
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, r) in e.remote_clusters.iter().enumerate() {
        let rp = p.key("remote_clusters").index(i);
        let id = r.cluster_id.trim();
        if id.is_empty() {
            diag.err(
                rp.key("cluster_id"),
                "a remote cluster needs its Cluster ID",
            );
        } else if id == d.cluster.id {
            diag.err(
                rp.key("cluster_id"),
                format!("{id:?} is this cluster's own id; a remote cluster is another one"),
            );
        } else if let Some(f) = ids.insert(id, i) {
            diag.err(
                rp.key("cluster_id"),
                format!(
                    "remote cluster {id:?} is named twice (first at emcc.remote_clusters[{f}])"
                ),
            );
        }
        if !is_address(r.address.trim()) {
            diag.err(
                rp.key("address"),
                format!(
                    "{:?} is not an address (an IP address or host name, optionally :port)",
                    r.address
                ),
            );
        }
    }
    let trunks = names(&d.sip_trunks, |t| t.name.as_str());
    if e.trunks.len() > 2 {
        diag.err(
            p.key("trunks"),
            "a cluster has at most two EMCC SIP trunks (one for PSTN access, one for RSVP agents, or one for both)",
        );
    }
    let mut carried = HashSet::new();
    let mut seen_trunks = HashSet::new();
    for (i, t) in e.trunks.iter().enumerate() {
        let tp = p.key("trunks").index(i);
        diag.refers(
            tp.key("sip_trunk"),
            Some(&t.sip_trunk),
            &trunks,
            "SIP trunk",
        );
        if !seen_trunks.insert(t.sip_trunk.as_str()) {
            diag.err(
                tp.key("sip_trunk"),
                format!("SIP trunk {:?} is named twice", t.sip_trunk),
            );
        }
        if t.services.is_empty() {
            diag.err(
                tp.key("services"),
                "an EMCC trunk carries pstn-access, rsvp-agent or both",
            );
        }
        for (j, s) in t.services.iter().enumerate() {
            if !carried.insert(*s) {
                diag.err(
                    tp.key("services").index(j),
                    format!("{} is carried by another EMCC trunk already", s.as_str()),
                );
            }
        }
    }
    let pools = names(&d.device_pools, |x| x.name.as_str());
    for (i, pool) in e.roaming_device_pools.iter().enumerate() {
        let pp = p.key("roaming_device_pools").index(i);
        diag.refers(pp.clone(), Some(pool), &pools, "device pool");
        if let Some(dp) = d.device_pools.iter().find(|x| &x.name == pool) {
            if dp.adjunct_css.is_none() {
                diag.err(
                    pp.clone(),
                    format!("EMCC roaming device pool {pool:?} needs an adjunct_css (its emergency patterns)"),
                );
            }
            if dp.local_route_group.is_none() {
                diag.err(
                    pp,
                    format!("EMCC roaming device pool {pool:?} needs a local_route_group (emergency calls leave through the Standard Local Route Group)"),
                );
            }
        }
    }
    let profiles = names(&d.device_profiles, |x| x.name.as_str());
    let css = names(&d.calling_search_spaces, |x| x.name.as_str());
    let mut seen_profiles = HashSet::new();
    for (i, x) in e.device_profiles.iter().enumerate() {
        let xp = p.key("device_profiles").index(i);
        diag.refers(
            xp.key("device_profile"),
            Some(&x.device_profile),
            &profiles,
            "device profile",
        );
        if !seen_profiles.insert(x.device_profile.as_str()) {
            diag.err(
                xp.key("device_profile"),
                format!("device profile {:?} is named twice", x.device_profile),
            );
        }
        diag.refers(
            xp.key("emcc_css"),
            Some(&x.emcc_css),
            &css,
            "calling search space",
        );
    }
    let devices = names(&d.devices, |x| x.name.as_str());
    for (i, name) in e.phones.iter().enumerate() {
        let pp = p.key("phones").index(i);
        diag.refers(pp.clone(), Some(name), &devices, "device");
        if d.devices.iter().any(|x| &x.name == name && !x.em_enabled) {
            diag.err(
                pp,
                format!("{name} must be EM enabled (em_enabled: true) to take EMCC logins"),
            );
        }
    }
    if e.max_emcc_devices == 0 {
        diag.err(p.key("max_emcc_devices"), "must be at least 1");
    }
    for key in ["default_tftp_server", "backup_tftp_server"] {
        let v = if key == "default_tftp_server" {
            &e.default_tftp_server
        } else {
            &e.backup_tftp_server
        };
        if let Some(v) = v {
            if !is_address(v.trim()) {
                diag.err(
                    p.key(key),
                    format!(
                        "{v:?} is not an address (an IP address or host name, optionally :port)"
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r17_emcc_mistakes_are_each_reported_where_they_are() {
        let text = "cluster: {id: home, name: Home}
calling_search_spaces: [{name: CSS, partitions: []}]
device_pools: [{name: DP}]
sip_trunks:
  - {name: T, destinations: [\"127.0.0.1:5060\"], device_pool: DP}
devices:
  - {name: SEP000000000001, model: Cisco 8845, device_pool: DP}
emcc:
  remote_cluster_update_minutes: 5
  remote_clusters:
    - {cluster_id: home, address: 127.0.2.1}
    - {cluster_id: v, address: \"a b\"}
    - {cluster_id: v, address: 127.0.3.1:8443}
  trunks:
    - {sip_trunk: T, services: [pstn-access]}
    - {sip_trunk: Nope, services: [pstn-access]}
  roaming_device_pools: [DP]
  device_profiles: [{device_profile: none, emcc_css: CSS}]
  phones: [SEP000000000001]
  max_emcc_devices: 0
";
        let crate::config::LoadError::Invalid(errs) =
            crate::services::parse_str(text, "e.yaml").unwrap_err()
        else {
            panic!()
        };
        let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        let want = [
            ("emcc.remote_cluster_update_minutes", "15 to 10080"),
            ("emcc.remote_clusters[0].cluster_id", "own id"),
            ("emcc.remote_clusters[1].address", "not an address"),
            ("emcc.remote_clusters[2].cluster_id", "named twice"),
            ("emcc.trunks[1].sip_trunk", "unknown SIP trunk"),
            ("emcc.trunks[1].services[0]", "another EMCC trunk"),
            ("emcc.roaming_device_pools[0]", "adjunct_css"),
            (
                "emcc.device_profiles[0].device_profile",
                "unknown device profile",
            ),
            ("emcc.phones[0]", "EM enabled"),
            ("emcc.max_emcc_devices", "at least 1"),
        ];
        for (field, words) in want {
            assert!(
                all.iter().any(|e| e.contains(field) && e.contains(words)),
                "{field}: {words}: {all:#?}"
            );
        }
        // Every mistake is located.
        assert!(all.iter().all(|e| e.starts_with("e.yaml:")), "{all:#?}");
        // The shipped clusters are valid.
        for f in ["emcc-home.yaml", "emcc-visiting.yaml"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/clusters")
                .join(f);
            crate::services::load_file(&path).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    #[test]
    fn addresses() {
        for ok in [
            "127.0.2.1",
            "127.0.2.1:8443",
            "ucm.example.com",
            "ucm.example.com:9443",
            "::1",
            "[::1]:8443",
        ] {
            assert!(is_address(ok), "{ok}");
        }
        for bad in ["", "127.0.2.1:0", "a b", "host:port", "127.0.2.1:99999"] {
            assert!(!is_address(bad), "{bad}");
        }
    }
}
