//! The Paging Server: its user, multicast settings, recipient groups and DialCast numbers.

use std::collections::{HashMap, HashSet};

use super::model::Paging;
use crate::config::model::Role;
use crate::config::validate::{is_multicast_range, names, Diagnostics};
use crate::config::ClusterDefinition;
use crate::wire::yaml::Path;

pub fn check(d: &ClusterDefinition, diag: &mut Diagnostics) {
    let pg: &Paging = &d.section();
    let devices = names(&d.devices, |x| x.name.as_str());
    let pools = names(&d.device_pools, |x| x.name.as_str());
    let locations = names(&d.locations, |x| x.name.as_str());
    let css_names = names(&d.calling_search_spaces, |x| x.name.as_str());
    let p = Path::root().key("paging");
    if let Some(user) = &pg.user {
        let roles = d
            .application_users
            .iter()
            .find(|a| &a.userid == user)
            .map(|a| &a.roles);
        match roles {
            None => diag.err(p.key("user"), format!("unknown application user {user:?}")),
            Some(r) if !r.contains(&Role::CtiControlAllDevices) => diag.err(
                p.key("user"),
                format!("{user:?} needs the role cti-control-all-devices to push to phones"),
            ),
            Some(_) => {}
        }
    } else if !pg.dialcasts.is_empty() {
        diag.err(
            p.key("user"),
            "DialCast numbers need a paging user to push with",
        );
    }
    if pg.max_group_size == 0 {
        diag.err(p.key("max_group_size"), "must be at least 1");
    }
    if !is_multicast_range(&pg.multicast_range) {
        diag.err(
            p.key("multicast_range"),
            format!(
                "{:?} is not an IPv4 multicast range like 239.0.1.0/24",
                pg.multicast_range
            ),
        );
    }
    if pg.multicast_port % 2 != 0 || !(20480..=32768).contains(&pg.multicast_port) {
        diag.err(
            p.key("multicast_port"),
            "phones receive on an even port from 20480 to 32768",
        );
    }
    if pg.multicast_ttl == 0 || pg.multicast_ttl > 255 {
        diag.err(p.key("multicast_ttl"), "a TTL is 1 to 255");
    }
    if pg.volume.is_some_and(|v| v > 100) {
        diag.err(p.key("volume"), "a volume is 0 to 100");
    }
    if pg.phone_http_port == 0 {
        diag.err(
            p.key("phone_http_port"),
            "port 0 is not a phone's web server",
        );
    }
    if pg.max_concurrent_pages == 0 {
        diag.err(p.key("max_concurrent_pages"), "must be at least 1");
    }
    if pg.max_page_seconds == 0 {
        diag.err(p.key("max_page_seconds"), "must be at least 1");
    }
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, g) in pg.recipient_groups.iter().enumerate() {
        let gp = p.key("recipient_groups").index(i);
        if g.name.trim().is_empty() {
            diag.err(gp.key("name"), "recipient group has an empty name");
        } else if let Some(f) = first.insert(g.name.as_str(), i) {
            diag.err(
                    gp.key("name"),
                    format!(
                        "duplicate recipient group {:?} (first defined at paging.recipient_groups[{f}])",
                        g.name
                    ),
                );
        }
        if g.devices.is_empty()
            && g.device_pools.is_empty()
            && g.locations.is_empty()
            && g.dn_patterns.is_empty()
            && g.descriptions.is_empty()
            && g.calling_search_spaces.is_empty()
        {
            diag.err(
                gp.clone(),
                "a recipient group names devices, device pools, locations, DN patterns, descriptions or calling search spaces",
            );
        }
        for (j, x) in g.descriptions.iter().enumerate() {
            if x.trim().is_empty() {
                diag.err(
                    gp.key("descriptions").index(j),
                    "an empty description pattern matches nothing; use \"*\" for every phone",
                );
            }
        }
        for (j, x) in g.calling_search_spaces.iter().enumerate() {
            diag.refers(
                gp.key("calling_search_spaces").index(j),
                Some(x),
                &css_names,
                "calling search space",
            );
        }
        for (j, x) in g.devices.iter().enumerate() {
            diag.refers(gp.key("devices").index(j), Some(x), &devices, "device");
        }
        for (j, x) in g.device_pools.iter().enumerate() {
            diag.refers(
                gp.key("device_pools").index(j),
                Some(x),
                &pools,
                "device pool",
            );
        }
        for (j, x) in g.locations.iter().enumerate() {
            diag.refers(
                gp.key("locations").index(j),
                Some(x),
                &locations,
                "location",
            );
        }
        for (j, x) in g.dn_patterns.iter().enumerate() {
            diag.pattern(gp.key("dn_patterns").index(j), x);
        }
        if g.max_phones == Some(0) {
            diag.err(gp.key("max_phones"), "must be at least 1");
        }
    }
    let groups = names(&pg.recipient_groups, |g| g.name.as_str());
    let rps = names(&d.route_points, |r| r.name.as_str());
    let mut seen = HashSet::new();
    for (i, dc) in pg.dialcasts.iter().enumerate() {
        let dp = p.key("dialcasts").index(i);
        diag.refers(
            dp.key("route_point"),
            Some(&dc.route_point),
            &rps,
            "route point",
        );
        diag.refers(
            dp.key("recipient_group"),
            Some(&dc.recipient_group),
            &groups,
            "recipient group",
        );
        if !seen.insert(dc.route_point.as_str()) {
            diag.err(
                dp.key("route_point"),
                format!("route point {:?} already pages a group", dc.route_point),
            );
        }
    }
}
