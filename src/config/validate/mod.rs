//! Semantic checks of a cluster definition: every reference resolves, every name is unique,
//! every pattern is a pattern. All problems are collected, not just the first.
//!
//! One function a section of the generic model, each in the file of its part of the model:
//! [`nodes`] (the cluster and its nodes), [`services`] (enterprise parameters, phone
//! services), [`routing`] (search spaces, locations, pools, trunks, route groups and lists),
//! [`dialplan`] (directory numbers, route and translation patterns), [`devices`] (phones, route
//! points, device profiles) and [`users`]; [`unsupported`] refuses settings ucm does not act
//! on yet. [`Checker::run`] calls them in the order the messages come out. A service's own
//! sections are checked by the service (its `ServiceSpec::check`), with a [`Diagnostics`].

mod devices;
mod dialplan;
mod nodes;
mod routing;
mod services;
mod unsupported;
mod users;

use std::collections::{HashMap, HashSet};

use super::model::ClusterDefinition;
use crate::dialplan::pattern::Pattern;
use crate::wire::yaml::Path;

/// One problem: where (a path into the definition) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: Path,
    pub message: String,
}

struct Checker<'a> {
    def: &'a ClusterDefinition,
    diag: Diagnostics,
}

impl std::ops::Deref for Checker<'_> {
    type Target = Diagnostics;
    fn deref(&self) -> &Diagnostics {
        &self.diag
    }
}

impl std::ops::DerefMut for Checker<'_> {
    fn deref_mut(&mut self) -> &mut Diagnostics {
        &mut self.diag
    }
}

/// The problems found so far, and the checks every part of the model shares (a service's
/// checks get one too: see [`crate::config::section::Schema`]).
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub issues: Vec<Issue>,
}

/// True for `SEP` followed by 12 upper-case hex digits.
pub fn is_device_name(name: &str) -> bool {
    name.len() == 15
        && name.starts_with("SEP")
        && name[3..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// The names of a list's items.
pub fn names<'a, T>(items: &'a [T], f: impl Fn(&'a T) -> &'a str) -> HashSet<&'a str> {
    items.iter().map(f).collect()
}

/// A DN is identified by its pattern and partition (`None` is the null partition).
pub type DnKey = (String, Option<String>);

/// The names references resolve against, one set a list.
struct Names<'a> {
    partitions: HashSet<&'a str>,
    css: HashSet<&'a str>,
    regions: HashSet<&'a str>,
    locations: HashSet<&'a str>,
    pools: HashSet<&'a str>,
    nodes: HashSet<&'a str>,
    trunks: HashSet<&'a str>,
    groups: HashSet<&'a str>,
    lists: HashSet<&'a str>,
    secprofiles: HashSet<&'a str>,
    services: HashSet<&'a str>,
    devices: HashSet<&'a str>,
    profiles: HashSet<&'a str>,
    users: HashSet<&'a str>,
}

impl<'a> Names<'a> {
    fn of(d: &'a ClusterDefinition) -> Names<'a> {
        Names {
            partitions: names(&d.partitions, |x| x.name.as_str()),
            css: names(&d.calling_search_spaces, |x| x.name.as_str()),
            regions: names(&d.regions, |x| x.name.as_str()),
            locations: names(&d.locations, |x| x.name.as_str()),
            pools: names(&d.device_pools, |x| x.name.as_str()),
            nodes: names(&d.nodes, |x| x.name.as_str()),
            trunks: names(&d.sip_trunks, |x| x.name.as_str()),
            groups: names(&d.route_groups, |x| x.name.as_str()),
            lists: names(&d.route_lists, |x| x.name.as_str()),
            secprofiles: names(&d.phone_security_profiles, |x| x.name.as_str()),
            services: names(&d.phone_services, |x| x.name.as_str()),
            devices: names(&d.devices, |x| x.name.as_str()),
            profiles: names(&d.device_profiles, |x| x.name.as_str()),
            users: names(&d.end_users, |u| u.userid.as_str()),
        }
    }
}

/// The generic model's checks (the services' are in their modules).
pub fn validate(def: &ClusterDefinition) -> Vec<Issue> {
    let mut c = Checker {
        def,
        diag: Diagnostics::default(),
    };
    c.run();
    c.diag.issues
}

impl Diagnostics {
    pub fn err(&mut self, path: Path, message: impl Into<String>) {
        self.issues.push(Issue {
            path,
            message: message.into(),
        });
    }

    /// `value`, when given, is one of `set` (the names of a list).
    pub fn refers(&mut self, path: Path, value: Option<&str>, set: &HashSet<&str>, what: &str) {
        if let Some(v) = value {
            if !set.contains(v) {
                self.err(path, format!("unknown {what} {v:?}"));
            }
        }
    }

    /// `text` is a Cisco pattern.
    pub fn pattern(&mut self, path: Path, text: &str) {
        if let Err(e) = Pattern::parse(text) {
            self.err(path, format!("not a pattern: {e}"));
        }
    }

    /// `url`, when given, is an http(s) URL (https only when `https_only`), as an enterprise
    /// parameter or phone service takes it.
    pub fn url(&mut self, path: Path, url: Option<&str>, https_only: bool) {
        let Some(u) = url else { return };
        let ok = if https_only {
            u.starts_with("https://") || u.starts_with("{https}")
        } else {
            u.starts_with("http://")
                || u.starts_with("https://")
                || u.starts_with("{http}")
                || u.starts_with("{https}")
                || u.starts_with("Application:")
        };
        if !ok || u.contains(char::is_whitespace) {
            let want = if https_only {
                "an https:// URL"
            } else {
                "an http:// or https:// URL"
            };
            self.err(path, format!("{u:?} is not {want}"));
        }
    }
}

impl<'a> Checker<'a> {
    fn unique<T>(&mut self, list: &str, items: &[T], key: impl Fn(&T) -> String, what: &str) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let root = Path::root().key(list);
        for (i, item) in items.iter().enumerate() {
            let k = key(item);
            if k.trim().is_empty() {
                self.err(root.index(i), format!("{what} has an empty name"));
                continue;
            }
            if let Some(first) = seen.get(&k) {
                self.err(
                    root.index(i),
                    format!("duplicate {what} {k:?} (first defined at {list}[{first}])"),
                );
            } else {
                seen.insert(k, i);
            }
        }
    }

    fn run(&mut self) {
        // The sections, in the order their messages come out.
        self.cluster_and_nodes();
        self.enterprise_parameters();
        self.unique_names();
        let n = Names::of(self.def);
        self.calling_search_spaces(&n);
        self.locations();
        self.device_pools(&n);
        self.sip_trunks(&n);
        self.route_groups(&n);
        self.route_lists(&n);
        self.patterns(&n);
        self.phone_security_profiles();
        self.phone_services();
        let dn_keys = self.directory_numbers(&n);
        let mut used = HashSet::new();
        self.devices(&n, &dn_keys, &mut used);
        self.route_points(&n, &dn_keys, &mut used);
        self.device_profiles(&n, &dn_keys, &mut used);
        self.unused_directory_numbers(&used);
        self.end_users(&n, &dn_keys);
        self.application_users(&n);
        self.unsupported();
    }

    /// Every list's names are unique; no user ID is both an end user and an application user.
    fn unique_names(&mut self) {
        let d = self.def;
        let root = Path::root();
        self.unique("partitions", &d.partitions, |x| x.name.clone(), "partition");
        self.unique(
            "calling_search_spaces",
            &d.calling_search_spaces,
            |x| x.name.clone(),
            "calling search space",
        );
        self.unique("regions", &d.regions, |x| x.name.clone(), "region");
        self.unique("locations", &d.locations, |x| x.name.clone(), "location");
        self.unique(
            "device_pools",
            &d.device_pools,
            |x| x.name.clone(),
            "device pool",
        );
        self.unique("sip_trunks", &d.sip_trunks, |x| x.name.clone(), "SIP trunk");
        self.unique(
            "route_groups",
            &d.route_groups,
            |x| x.name.clone(),
            "route group",
        );
        self.unique(
            "route_lists",
            &d.route_lists,
            |x| x.name.clone(),
            "route list",
        );
        self.unique(
            "phone_security_profiles",
            &d.phone_security_profiles,
            |x| x.name.clone(),
            "phone security profile",
        );
        self.unique(
            "phone_services",
            &d.phone_services,
            |x| x.name.clone(),
            "phone service",
        );
        self.unique("devices", &d.devices, |x| x.name.clone(), "device name");
        self.unique(
            "device_profiles",
            &d.device_profiles,
            |x| x.name.clone(),
            "device profile",
        );
        self.unique("end_users", &d.end_users, |x| x.userid.clone(), "user ID");
        self.unique(
            "application_users",
            &d.application_users,
            |x| x.userid.clone(),
            "user ID",
        );
        let end_ids = names(&d.end_users, |u| u.userid.as_str());
        for (i, a) in d.application_users.iter().enumerate() {
            if end_ids.contains(a.userid.as_str()) {
                self.err(
                    root.key("application_users").index(i).key("userid"),
                    format!("user ID {:?} is also an end user", a.userid),
                );
            }
        }
    }
}

/// A DNS host name (letters, digits and hyphens, dot-separated).
pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
        })
}

fn is_host_port(s: &str) -> bool {
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return sa.port() != 0;
    }
    match s.rsplit_once(':') {
        Some((h, p)) => is_hostname(h) && p.parse::<u16>().is_ok_and(|p| p != 0),
        None => false,
    }
}
/// An IPv4 multicast range `addr/len`.
pub fn is_multicast_range(s: &str) -> bool {
    let Some((a, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(ip) = a.parse::<std::net::Ipv4Addr>() else {
        return false;
    };
    len.parse::<u8>().is_ok_and(|l| (4..=32).contains(&l)) && ip.is_multicast()
}
