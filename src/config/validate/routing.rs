//! Calling search spaces, locations, device pools, and the way out: SIP trunks, route groups
//! and route lists.

use std::collections::HashSet;
use std::net::IpAddr;

use super::{is_host_port, is_hostname, is_multicast_range, Checker, Names};
use crate::config::model::SipTransport;
use crate::config::model::SipTrunk;
use crate::dialplan::STANDARD_LOCAL_ROUTE_GROUP;
use crate::wire::yaml::Path;

impl Checker<'_> {
    pub(super) fn calling_search_spaces(&mut self, n: &Names) {
        let d = self.def;
        let root = Path::root();
        for (i, c) in d.calling_search_spaces.iter().enumerate() {
            let p = root.key("calling_search_spaces").index(i).key("partitions");
            let mut seen = HashSet::new();
            for (j, part) in c.partitions.iter().enumerate() {
                self.refers(p.index(j), Some(part), &n.partitions, "partition");
                if !seen.insert(part) {
                    self.err(p.index(j), format!("partition {part:?} listed twice"));
                }
            }
        }
    }

    pub(super) fn locations(&mut self) {
        let d = self.def;
        let root = Path::root();
        for (i, l) in d.locations.iter().enumerate() {
            if let Some(r) = &l.multicast_range {
                if !is_multicast_range(r) {
                    self.err(
                        root.key("locations").index(i).key("multicast_range"),
                        format!("{r:?} is not an IPv4 multicast range like 239.1.1.0/24"),
                    );
                }
            }
        }
    }

    pub(super) fn device_pools(&mut self, n: &Names) {
        let d = self.def;
        let root = Path::root();
        for (i, dp) in d.device_pools.iter().enumerate() {
            let p = root.key("device_pools").index(i);
            for (j, node) in dp.node_group.iter().enumerate() {
                self.refers(p.key("node_group").index(j), Some(node), &n.nodes, "node");
            }
            self.refers(p.key("region"), dp.region.as_deref(), &n.regions, "region");
            self.refers(
                p.key("location"),
                dp.location.as_deref(),
                &n.locations,
                "location",
            );
            self.refers(
                p.key("adjunct_css"),
                dp.adjunct_css.as_deref(),
                &n.css,
                "calling search space",
            );
            self.refers(
                p.key("local_route_group"),
                dp.local_route_group.as_deref(),
                &n.groups,
                "route group",
            );
        }
    }

    pub(super) fn sip_trunks(&mut self, n: &Names) {
        let d = self.def;
        let root = Path::root();
        for (i, t) in d.sip_trunks.iter().enumerate() {
            let p = root.key("sip_trunks").index(i);
            if t.destinations.is_empty() {
                self.err(
                    p.key("destinations"),
                    "a SIP trunk needs at least one destination",
                );
            }
            for (j, dest) in t.destinations.iter().enumerate() {
                if !is_host_port(dest) {
                    self.err(
                        p.key("destinations").index(j),
                        format!("{dest:?} is not host:port"),
                    );
                }
            }
            self.refers(
                p.key("device_pool"),
                Some(&t.device_pool),
                &n.pools,
                "device pool",
            );
            self.refers(
                p.key("css"),
                t.css.as_deref(),
                &n.css,
                "calling search space",
            );
            self.refers(
                p.key("location"),
                t.location.as_deref(),
                &n.locations,
                "location",
            );
            self.trunk_tls(&p, t);
        }
    }

    pub(super) fn route_groups(&mut self, n: &Names) {
        let d = self.def;
        let root = Path::root();
        for (i, g) in d.route_groups.iter().enumerate() {
            let p = root.key("route_groups").index(i).key("members");
            if g.members.is_empty() {
                self.err(p.clone(), "a route group needs at least one SIP trunk");
            }
            for (j, m) in g.members.iter().enumerate() {
                self.refers(p.index(j), Some(m), &n.trunks, "SIP trunk");
            }
        }
    }

    pub(super) fn route_lists(&mut self, n: &Names) {
        let d = self.def;
        let root = Path::root();
        for (i, l) in d.route_lists.iter().enumerate() {
            let p = root.key("route_lists").index(i).key("members");
            if l.members.is_empty() {
                self.err(p.clone(), "a route list needs at least one route group");
            }
            for (j, m) in l.members.iter().enumerate() {
                if m != STANDARD_LOCAL_ROUTE_GROUP {
                    self.refers(p.index(j), Some(m), &n.groups, "route group");
                }
            }
        }
    }

    /// TLS settings of a trunk: only on `transport: tls`, a CA file that exists and holds
    /// certificates, a server name that is a host name or an IP address.
    fn trunk_tls(&mut self, p: &Path, t: &SipTrunk) {
        let tls = t.transport == SipTransport::Tls;
        for (key, set) in [
            ("tls_ca", t.tls_ca.is_some()),
            ("tls_server_name", t.tls_server_name.is_some()),
        ] {
            if set && !tls {
                self.err(
                    p.key(key),
                    format!("{key} applies only to a trunk with transport: tls"),
                );
            }
        }
        if let Some(ca) = t.tls_ca.as_deref() {
            if let Err(reason) = crate::net::tls::read_ca_file(std::path::Path::new(ca)) {
                self.err(p.key("tls_ca"), reason);
            }
        }
        if let Some(n) = t.tls_server_name.as_deref() {
            if n.parse::<IpAddr>().is_err() && !is_hostname(n) {
                self.err(
                    p.key("tls_server_name"),
                    format!("{n:?} is not a host name or IP address"),
                );
            }
        }
    }
}
