//! Extension Mobility's checks of its parameters.

use std::net::IpAddr;

use super::model::ExtensionMobilityParameters;
use crate::config::validate::{is_hostname, Diagnostics};
use crate::config::ClusterDefinition;
use crate::wire::yaml::Path;

pub fn check(d: &ClusterDefinition, diag: &mut Diagnostics) {
    let em: ExtensionMobilityParameters = d.section();
    let emp = Path::root()
        .key("service_parameters")
        .key("extension_mobility");
    if em.max_login_minutes().is_none() {
        diag.err(
            emp.key("max_login_time"),
            format!(
                "{:?} is not a time H:MM between 0:00 and 168:00",
                em.max_login_time
            ),
        );
    }
    for (i, ip) in em.trusted_ips.iter().enumerate() {
        // Compared with request source addresses: an address or an `addr/len` prefix.
        // Host names are not resolved, so they are refused rather than silently ignored.
        let prefix_ok = ip.split_once('/').is_some_and(|(a, len)| {
            match (a.parse::<IpAddr>(), len.parse::<u32>()) {
                (Ok(IpAddr::V4(_)), Ok(l)) => l <= 32,
                (Ok(IpAddr::V6(_)), Ok(l)) => l <= 128,
                _ => false,
            }
        });
        if ip.parse::<IpAddr>().is_err() && !prefix_ok {
            let what = if is_hostname(ip) {
                "is a host name; the Trusted List of IPs takes addresses and addr/len prefixes (names are not resolved)"
            } else {
                "is not an IP address or addr/len prefix"
            };
            diag.err(emp.key("trusted_ips").index(i), format!("{ip:?} {what}"));
        }
    }
    if em.max_concurrent_requests == 0 {
        diag.err(emp.key("max_concurrent_requests"), "must be at least 1");
    }
}
