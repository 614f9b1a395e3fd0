//! Semantic checks of a cluster definition: every reference resolves, every name is unique,
//! every pattern is a pattern. All problems are collected, not just the first.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::locate::Path;
use super::model::*;
use crate::dialplan::pattern::{validate_digits, validate_mask, Pattern};
use crate::dialplan::STANDARD_LOCAL_ROUTE_GROUP;

/// One problem: where (a path into the definition) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: Path,
    pub message: String,
}

struct Checker<'a> {
    def: &'a ClusterDefinition,
    issues: Vec<Issue>,
}

/// True for `SEP` followed by 12 upper-case hex digits.
pub fn is_device_name(name: &str) -> bool {
    name.len() == 15
        && name.starts_with("SEP")
        && name[3..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

fn names<'a, T>(items: &'a [T], f: impl Fn(&'a T) -> &'a str) -> HashSet<&'a str> {
    items.iter().map(f).collect()
}

/// A DN is identified by its pattern and partition (`None` is the null partition).
pub type DnKey = (String, Option<String>);

pub fn validate(def: &ClusterDefinition) -> Vec<Issue> {
    let mut c = Checker {
        def,
        issues: Vec::new(),
    };
    c.run();
    c.issues
}

impl<'a> Checker<'a> {
    fn err(&mut self, path: Path, message: impl Into<String>) {
        self.issues.push(Issue {
            path,
            message: message.into(),
        });
    }

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

    fn refers(&mut self, path: Path, value: Option<&str>, set: &HashSet<&str>, what: &str) {
        if let Some(v) = value {
            if !set.contains(v) {
                self.err(path, format!("unknown {what} {v:?}"));
            }
        }
    }

    fn pattern(&mut self, path: Path, text: &str) {
        if let Err(e) = Pattern::parse(text) {
            self.err(path, format!("not a pattern: {e}"));
        }
    }

    fn url(&mut self, path: Path, url: Option<&str>, https_only: bool) {
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
            if let Err(reason) = crate::server::tls::read_ca_file(std::path::Path::new(ca)) {
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

    fn run(&mut self) {
        let d = self.def;
        let root = Path::root();

        // Cluster and nodes.
        if d.cluster.id.trim().is_empty() {
            self.err(root.key("cluster").key("id"), "cluster id is empty");
        }
        self.unique("nodes", &d.nodes, |n| n.name.clone(), "node");
        for (i, n) in d.nodes.iter().enumerate() {
            let p = root.key("nodes").index(i);
            if n.address.parse::<IpAddr>().is_err() && !is_hostname(&n.address) {
                self.err(
                    p.key("address"),
                    format!("{:?} is neither an IP address nor a host name", n.address),
                );
            }
            let mut seen = HashSet::new();
            for (j, s) in n.services.iter().enumerate() {
                if !seen.insert(*s) {
                    self.err(
                        p.key("services").index(j),
                        format!("service {s:?} listed twice"),
                    );
                }
            }
        }

        // Parameters.
        let em = &d.service_parameters.extension_mobility;
        let emp = root.key("service_parameters").key("extension_mobility");
        if em.max_login_minutes().is_none() {
            self.err(
                emp.key("max_login_time"),
                format!(
                    "{:?} is not a time H:MM between 0:00 and 168:00",
                    em.max_login_time
                ),
            );
        }
        for (i, ip) in em.trusted_ips.iter().enumerate() {
            if ip.parse::<IpAddr>().is_err() && !is_hostname(ip) {
                self.err(
                    emp.key("trusted_ips").index(i),
                    format!("{ip:?} is not an IP address or host name"),
                );
            }
        }
        if em.max_concurrent_requests == 0 {
            self.err(emp.key("max_concurrent_requests"), "must be at least 1");
        }
        let wd = &d.service_parameters.webdialer;
        let wdp = root.key("service_parameters").key("webdialer");
        if wd.user_session_expiry_hours > 168 {
            self.err(
                wdp.key("user_session_expiry_hours"),
                "must be 0 (never) to 168 hours",
            );
        }
        if wd.max_concurrent_call_requests == 0 {
            self.err(
                wdp.key("max_concurrent_call_requests"),
                "must be at least 1",
            );
        }
        for (i, u) in wd.webdialers.iter().enumerate() {
            self.url(wdp.key("webdialers").index(i), Some(u), false);
        }
        let ep = &d.enterprise_parameters;
        let epp = root.key("enterprise_parameters");
        for (name, v, secure) in [
            ("url_services", &ep.url_services, false),
            ("url_authentication", &ep.url_authentication, false),
            ("url_directories", &ep.url_directories, false),
            ("url_idle", &ep.url_idle, false),
            ("url_information", &ep.url_information, false),
            ("url_messages", &ep.url_messages, false),
            ("secure_url_services", &ep.secure_url_services, true),
            (
                "secure_url_authentication",
                &ep.secure_url_authentication,
                true,
            ),
            ("secure_url_directories", &ep.secure_url_directories, true),
            ("secure_url_idle", &ep.secure_url_idle, true),
            ("secure_url_information", &ep.secure_url_information, true),
            ("secure_url_messages", &ep.secure_url_messages, true),
        ] {
            self.url(epp.key(name), v.as_deref(), secure);
        }

        // Names.
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

        let partitions = names(&d.partitions, |x| x.name.as_str());
        let css = names(&d.calling_search_spaces, |x| x.name.as_str());
        let regions = names(&d.regions, |x| x.name.as_str());
        let locations = names(&d.locations, |x| x.name.as_str());
        let pools = names(&d.device_pools, |x| x.name.as_str());
        let nodes = names(&d.nodes, |x| x.name.as_str());
        let trunks = names(&d.sip_trunks, |x| x.name.as_str());
        let groups = names(&d.route_groups, |x| x.name.as_str());
        let lists = names(&d.route_lists, |x| x.name.as_str());
        let secprofiles = names(&d.phone_security_profiles, |x| x.name.as_str());
        let services = names(&d.phone_services, |x| x.name.as_str());
        let devices = names(&d.devices, |x| x.name.as_str());
        let profiles = names(&d.device_profiles, |x| x.name.as_str());

        for (i, c) in d.calling_search_spaces.iter().enumerate() {
            let p = root.key("calling_search_spaces").index(i).key("partitions");
            let mut seen = HashSet::new();
            for (j, part) in c.partitions.iter().enumerate() {
                self.refers(p.index(j), Some(part), &partitions, "partition");
                if !seen.insert(part) {
                    self.err(p.index(j), format!("partition {part:?} listed twice"));
                }
            }
        }
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
        for (i, dp) in d.device_pools.iter().enumerate() {
            let p = root.key("device_pools").index(i);
            for (j, n) in dp.node_group.iter().enumerate() {
                self.refers(p.key("node_group").index(j), Some(n), &nodes, "node");
            }
            self.refers(p.key("region"), dp.region.as_deref(), &regions, "region");
            self.refers(
                p.key("location"),
                dp.location.as_deref(),
                &locations,
                "location",
            );
            self.refers(
                p.key("adjunct_css"),
                dp.adjunct_css.as_deref(),
                &css,
                "calling search space",
            );
            self.refers(
                p.key("local_route_group"),
                dp.local_route_group.as_deref(),
                &groups,
                "route group",
            );
        }
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
                &pools,
                "device pool",
            );
            self.refers(p.key("css"), t.css.as_deref(), &css, "calling search space");
            self.refers(
                p.key("location"),
                t.location.as_deref(),
                &locations,
                "location",
            );
            self.trunk_tls(&p, t);
        }
        for (i, g) in d.route_groups.iter().enumerate() {
            let p = root.key("route_groups").index(i).key("members");
            if g.members.is_empty() {
                self.err(p.clone(), "a route group needs at least one SIP trunk");
            }
            for (j, m) in g.members.iter().enumerate() {
                self.refers(p.index(j), Some(m), &trunks, "SIP trunk");
            }
        }
        for (i, l) in d.route_lists.iter().enumerate() {
            let p = root.key("route_lists").index(i).key("members");
            if l.members.is_empty() {
                self.err(p.clone(), "a route list needs at least one route group");
            }
            for (j, m) in l.members.iter().enumerate() {
                if m != STANDARD_LOCAL_ROUTE_GROUP {
                    self.refers(p.index(j), Some(m), &groups, "route group");
                }
            }
        }

        // Patterns share one namespace per partition: DNs, route and translation patterns.
        let mut pattern_owner: HashMap<DnKey, String> = HashMap::new();
        let mut claim = |c: &mut Self, key: DnKey, path: Path| {
            let label = path.to_string();
            if let Some(first) = pattern_owner.get(&key) {
                c.err(
                    path,
                    format!(
                        "pattern {:?} in partition {} is already defined at {first}",
                        key.0,
                        key.1
                            .as_deref()
                            .map_or("<None>".to_string(), |p| format!("{p:?}"))
                    ),
                );
            } else {
                pattern_owner.insert(key, label);
            }
        };
        // Directory numbers claim their patterns first: a route or translation pattern that
        // collides with a DN is the one reported.
        for (i, dn) in d.directory_numbers.iter().enumerate() {
            let p = root.key("directory_numbers").index(i).key("pattern");
            claim(self, (dn.pattern.clone(), dn.partition.clone()), p);
        }
        for (i, rp) in d.route_patterns.iter().enumerate() {
            let p = root.key("route_patterns").index(i);
            self.pattern(p.key("pattern"), &rp.pattern);
            self.refers(
                p.key("partition"),
                rp.partition.as_deref(),
                &partitions,
                "partition",
            );
            let targets =
                usize::from(rp.route_list.is_some()) + usize::from(rp.sip_trunk.is_some());
            if rp.block && targets > 0 {
                self.err(
                    p.clone(),
                    "a blocking route pattern has no route list or trunk",
                );
            } else if !rp.block && targets != 1 {
                self.err(
                    p.clone(),
                    "a route pattern needs exactly one of route_list or sip_trunk (or block: true)",
                );
            }
            self.refers(
                p.key("route_list"),
                rp.route_list.as_deref(),
                &lists,
                "route list",
            );
            self.refers(
                p.key("sip_trunk"),
                rp.sip_trunk.as_deref(),
                &trunks,
                "SIP trunk",
            );
            self.masks(&p, &rp.called_party_transform_mask, &rp.prefix_digits);
            self.dot(&p, &rp.pattern, rp.discard_digits);
            claim(
                self,
                (rp.pattern.clone(), rp.partition.clone()),
                p.key("pattern"),
            );
        }
        for (i, tp) in d.translation_patterns.iter().enumerate() {
            let p = root.key("translation_patterns").index(i);
            self.pattern(p.key("pattern"), &tp.pattern);
            self.refers(
                p.key("partition"),
                tp.partition.as_deref(),
                &partitions,
                "partition",
            );
            self.refers(
                p.key("css"),
                tp.css.as_deref(),
                &css,
                "calling search space",
            );
            self.masks(&p, &tp.called_party_transform_mask, &tp.prefix_digits);
            self.dot(&p, &tp.pattern, tp.discard_digits);
            claim(
                self,
                (tp.pattern.clone(), tp.partition.clone()),
                p.key("pattern"),
            );
        }
        for (i, sp) in d.phone_security_profiles.iter().enumerate() {
            let p = root.key("phone_security_profiles").index(i);
            if sp.device_security_mode == DeviceSecurityMode::Encrypted
                && sp.transport != SipTransport::Tls
            {
                self.err(p.key("transport"), "an encrypted profile must use tls");
            }
        }
        for (i, s) in d.phone_services.iter().enumerate() {
            let p = root.key("phone_services").index(i);
            if s.url.trim().is_empty() {
                self.err(p.key("url"), "a phone service needs a URL");
            } else {
                self.url(p.key("url"), Some(&s.url), false);
            }
            self.url(p.key("secure_url"), s.secure_url.as_deref(), true);
        }

        let mut dn_keys: HashSet<DnKey> = HashSet::new();
        for (i, dn) in d.directory_numbers.iter().enumerate() {
            let p = root.key("directory_numbers").index(i);
            self.pattern(p.key("pattern"), &dn.pattern);
            self.refers(
                p.key("partition"),
                dn.partition.as_deref(),
                &partitions,
                "partition",
            );
            self.refers(
                p.key("css"),
                dn.css.as_deref(),
                &css,
                "calling search space",
            );
            let cf = &dn.call_forward;
            for (name, f) in [
                ("all", &cf.all),
                ("busy", &cf.busy),
                ("no_answer", &cf.no_answer),
                ("unregistered", &cf.unregistered),
            ] {
                let Some(f) = f else { continue };
                let fp = p.key("call_forward").key(name);
                if let Some(dest) = &f.destination {
                    if let Err(e) = validate_digits(dest) {
                        self.err(fp.key("destination"), format!("not a number: {e}"));
                    }
                }
                self.refers(
                    fp.key("css"),
                    f.css.as_deref(),
                    &css,
                    "calling search space",
                );
            }
            if dn.max_calls == 0 || dn.max_calls > 200 {
                self.err(p.key("max_calls"), "max_calls must be 1 to 200");
            }
            if dn.busy_trigger == 0 || dn.busy_trigger > dn.max_calls {
                self.err(
                    p.key("busy_trigger"),
                    format!("busy_trigger must be 1 to max_calls ({})", dn.max_calls),
                );
            }
            if dn.no_answer_timer.is_some_and(|t| t == 0 || t > 300) {
                self.err(
                    p.key("no_answer_timer"),
                    "no_answer_timer must be 1 to 300 seconds",
                );
            }
            dn_keys.insert((dn.pattern.clone(), dn.partition.clone()));
        }

        let mut used_dns: HashSet<DnKey> = HashSet::new();
        let users = names(&d.end_users, |u| u.userid.as_str());
        for (i, dev) in d.devices.iter().enumerate() {
            let p = root.key("devices").index(i);
            if !is_device_name(&dev.name) {
                self.err(
                    p.key("name"),
                    format!(
                        "bad device name {:?}: a phone is named SEP followed by its MAC address in 12 upper-case hex digits",
                        dev.name
                    ),
                );
            }
            if dev.model.trim().is_empty() {
                self.err(p.key("model"), "model is empty");
            }
            self.refers(
                p.key("device_pool"),
                Some(&dev.device_pool),
                &pools,
                "device pool",
            );
            self.refers(
                p.key("css"),
                dev.css.as_deref(),
                &css,
                "calling search space",
            );
            self.refers(
                p.key("location"),
                dev.location.as_deref(),
                &locations,
                "location",
            );
            self.refers(p.key("owner"), dev.owner.as_deref(), &users, "end user");
            self.refers(
                p.key("logout_profile"),
                dev.logout_profile.as_deref(),
                &profiles,
                "device profile",
            );
            if dev.logout_profile.is_some() && !dev.em_enabled {
                self.err(
                    p.key("logout_profile"),
                    "a logout profile needs em_enabled: true",
                );
            }
            self.refers(
                p.key("security_profile"),
                dev.security_profile.as_deref(),
                &secprofiles,
                "phone security profile",
            );
            self.refers(
                p.key("digest_user"),
                dev.digest_user.as_deref(),
                &users,
                "end user",
            );
            let wants_digest = dev.security_profile.as_ref().is_some_and(|sp| {
                d.phone_security_profiles
                    .iter()
                    .any(|x| &x.name == sp && x.digest_authentication)
            });
            if wants_digest {
                let has_creds = dev.digest_user.as_ref().is_some_and(|u| {
                    d.end_users.iter().any(|x| {
                        &x.userid == u && (x.digest_credentials.is_some() || x.digest_ha1.is_some())
                    })
                });
                if !has_creds {
                    self.err(
                        p.key("digest_user"),
                        "the security profile asks for digest authentication: name a digest_user that has digest_credentials",
                    );
                }
            }
            for (j, s) in dev.subscribed_services.iter().enumerate() {
                self.refers(
                    p.key("subscribed_services").index(j),
                    Some(s),
                    &services,
                    "phone service",
                );
            }
            self.lines(&p, &dev.lines, &dn_keys, &mut used_dns);
            self.speed_dials(&p, &dev.speed_dials);
        }
        self.unique(
            "route_points",
            &d.route_points,
            |x| x.name.clone(),
            "route point",
        );
        for (i, rp) in d.route_points.iter().enumerate() {
            let p = root.key("route_points").index(i);
            if devices.contains(rp.name.as_str()) {
                self.err(
                    p.key("name"),
                    format!("{:?} is already a device name", rp.name),
                );
            }
            self.refers(
                p.key("device_pool"),
                Some(&rp.device_pool),
                &pools,
                "device pool",
            );
            self.refers(
                p.key("css"),
                rp.css.as_deref(),
                &css,
                "calling search space",
            );
            if rp.lines.is_empty() {
                self.err(p.key("lines"), "a route point needs at least one line");
            }
            self.lines(&p, &rp.lines, &dn_keys, &mut used_dns);
        }
        for (i, prof) in d.device_profiles.iter().enumerate() {
            let p = root.key("device_profiles").index(i);
            for (j, s) in prof.subscribed_services.iter().enumerate() {
                self.refers(
                    p.key("subscribed_services").index(j),
                    Some(s),
                    &services,
                    "phone service",
                );
            }
            self.lines(&p, &prof.lines, &dn_keys, &mut used_dns);
            self.speed_dials(&p, &prof.speed_dials);
        }
        for (i, dn) in d.directory_numbers.iter().enumerate() {
            if !used_dns.contains(&(dn.pattern.clone(), dn.partition.clone())) {
                self.err(
                    root.key("directory_numbers").index(i).key("pattern"),
                    format!(
                        "directory number {:?} is on no device, device profile or route point",
                        dn.pattern
                    ),
                );
            }
        }

        for (i, u) in d.end_users.iter().enumerate() {
            let p = root.key("end_users").index(i);
            if u.last_name.trim().is_empty() {
                self.err(p.key("last_name"), "last_name is empty");
            }
            self.secret(&p, "password", &u.password, &u.password_hash);
            self.secret(&p, "pin", &u.pin, &u.pin_hash);
            if u.digest_credentials.is_some() && u.digest_ha1.is_some() {
                self.err(
                    p.key("digest_credentials"),
                    "give either digest_credentials or digest_ha1, not both",
                );
            }
            if let Some(h) = &u.digest_ha1 {
                if h.len() != 32 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    self.err(p.key("digest_ha1"), "not an MD5 HA1 (32 hex digits)");
                }
            }
            if let Some(pin) = &u.pin {
                if pin.len() < 4 || pin.len() > 32 || !pin.bytes().all(|b| b.is_ascii_digit()) {
                    self.err(p.key("pin"), "a PIN is 4 to 32 digits");
                }
            }
            for (j, dev) in u.associated_devices.iter().enumerate() {
                self.refers(
                    p.key("associated_devices").index(j),
                    Some(dev),
                    &devices,
                    "device",
                );
            }
            for (j, prof) in u.device_profiles.iter().enumerate() {
                self.refers(
                    p.key("device_profiles").index(j),
                    Some(prof),
                    &profiles,
                    "device profile",
                );
            }
            if let Some(def) = &u.default_profile {
                if !profiles.contains(def.as_str()) {
                    self.err(
                        p.key("default_profile"),
                        format!("unknown device profile {def:?}"),
                    );
                } else if !u.device_profiles.iter().any(|x| x == def) {
                    self.err(
                        p.key("default_profile"),
                        format!("default profile {def:?} is not among the user's device_profiles"),
                    );
                }
            }
            if let Some(pe) = &u.primary_extension {
                if !dn_keys.contains(&(pe.dn.clone(), pe.partition.clone())) {
                    self.err(
                        p.key("primary_extension"),
                        format!(
                            "unknown directory number {:?} in partition {}",
                            pe.dn,
                            pe.partition.as_deref().unwrap_or("<None>")
                        ),
                    );
                }
            }
        }
        for (i, a) in d.application_users.iter().enumerate() {
            let p = root.key("application_users").index(i);
            self.secret(&p, "password", &a.password, &a.password_hash);
            for (j, dev) in a.associated_devices.iter().enumerate() {
                self.refers(
                    p.key("associated_devices").index(j),
                    Some(dev),
                    &devices,
                    "device",
                );
            }
        }
        self.paging(&devices, &pools, &locations);
    }

    fn paging(
        &mut self,
        devices: &HashSet<&str>,
        pools: &HashSet<&str>,
        locations: &HashSet<&str>,
    ) {
        let d = self.def;
        let pg = &d.paging;
        let p = Path::root().key("paging");
        if let Some(user) = &pg.user {
            let roles = d
                .application_users
                .iter()
                .find(|a| &a.userid == user)
                .map(|a| &a.roles);
            match roles {
                None => self.err(p.key("user"), format!("unknown application user {user:?}")),
                Some(r) if !r.contains(&Role::CtiControlAllDevices) => self.err(
                    p.key("user"),
                    format!("{user:?} needs the role cti-control-all-devices to push to phones"),
                ),
                Some(_) => {}
            }
        } else if !pg.dialcasts.is_empty() {
            self.err(
                p.key("user"),
                "DialCast numbers need a paging user to push with",
            );
        }
        if pg.max_group_size == 0 {
            self.err(p.key("max_group_size"), "must be at least 1");
        }
        if !is_multicast_range(&pg.multicast_range) {
            self.err(
                p.key("multicast_range"),
                format!(
                    "{:?} is not an IPv4 multicast range like 239.0.1.0/24",
                    pg.multicast_range
                ),
            );
        }
        if pg.multicast_port % 2 != 0 || !(20480..=32768).contains(&pg.multicast_port) {
            self.err(
                p.key("multicast_port"),
                "phones receive on an even port from 20480 to 32768",
            );
        }
        if pg.multicast_ttl == 0 || pg.multicast_ttl > 255 {
            self.err(p.key("multicast_ttl"), "a TTL is 1 to 255");
        }
        if pg.volume.is_some_and(|v| v > 100) {
            self.err(p.key("volume"), "a volume is 0 to 100");
        }
        if pg.phone_http_port == 0 {
            self.err(
                p.key("phone_http_port"),
                "port 0 is not a phone's web server",
            );
        }
        if pg.max_concurrent_pages == 0 {
            self.err(p.key("max_concurrent_pages"), "must be at least 1");
        }
        if pg.max_page_seconds == 0 {
            self.err(p.key("max_page_seconds"), "must be at least 1");
        }
        let mut first: HashMap<&str, usize> = HashMap::new();
        for (i, g) in pg.recipient_groups.iter().enumerate() {
            let gp = p.key("recipient_groups").index(i);
            if g.name.trim().is_empty() {
                self.err(gp.key("name"), "recipient group has an empty name");
            } else if let Some(f) = first.insert(g.name.as_str(), i) {
                self.err(
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
            {
                self.err(
                    gp.clone(),
                    "a recipient group names devices, device pools, locations or DN patterns",
                );
            }
            for (j, x) in g.devices.iter().enumerate() {
                self.refers(gp.key("devices").index(j), Some(x), devices, "device");
            }
            for (j, x) in g.device_pools.iter().enumerate() {
                self.refers(
                    gp.key("device_pools").index(j),
                    Some(x),
                    pools,
                    "device pool",
                );
            }
            for (j, x) in g.locations.iter().enumerate() {
                self.refers(gp.key("locations").index(j), Some(x), locations, "location");
            }
            for (j, x) in g.dn_patterns.iter().enumerate() {
                self.pattern(gp.key("dn_patterns").index(j), x);
            }
            if g.max_phones == Some(0) {
                self.err(gp.key("max_phones"), "must be at least 1");
            }
        }
        let groups = names(&pg.recipient_groups, |g| g.name.as_str());
        let rps = names(&d.route_points, |r| r.name.as_str());
        let mut seen = HashSet::new();
        for (i, dc) in pg.dialcasts.iter().enumerate() {
            let dp = p.key("dialcasts").index(i);
            self.refers(
                dp.key("route_point"),
                Some(&dc.route_point),
                &rps,
                "route point",
            );
            self.refers(
                dp.key("recipient_group"),
                Some(&dc.recipient_group),
                &groups,
                "recipient group",
            );
            if !seen.insert(dc.route_point.as_str()) {
                self.err(
                    dp.key("route_point"),
                    format!("route point {:?} already pages a group", dc.route_point),
                );
            }
        }
    }

    fn masks(&mut self, p: &Path, mask: &Option<String>, prefix: &Option<String>) {
        for (name, v) in [
            ("called_party_transform_mask", mask),
            ("prefix_digits", prefix),
        ] {
            if let Some(m) = v {
                if let Err(e) = validate_mask(m) {
                    self.err(p.key(name), format!("{e}"));
                }
            }
        }
    }

    fn dot(&mut self, p: &Path, pattern: &str, discard: Option<DiscardDigits>) {
        if discard == Some(DiscardDigits::PreDot) && !pattern.contains('.') {
            self.err(
                p.key("discard_digits"),
                "pre-dot discard needs a '.' in the pattern",
            );
        }
    }

    fn secret(&mut self, p: &Path, name: &str, clear: &Option<String>, hash: &Option<String>) {
        if clear.is_some() && hash.is_some() {
            self.err(
                p.key(name),
                format!("give either {name} or {name}_hash, not both"),
            );
        }
        if let Some(h) = hash {
            if !crate::auth::is_password_hash(h) {
                self.err(
                    p.key(&format!("{name}_hash")),
                    "not an argon2 hash in PHC format ($argon2id$...)",
                );
            }
        }
    }

    fn lines(
        &mut self,
        p: &Path,
        lines: &[LineAppearance],
        dn_keys: &HashSet<DnKey>,
        used: &mut HashSet<DnKey>,
    ) {
        let mut here = HashSet::new();
        for (j, l) in lines.iter().enumerate() {
            let lp = p.key("lines").index(j);
            let key = (l.dn.clone(), l.partition.clone());
            if !dn_keys.contains(&key) {
                self.err(
                    lp.key("dn"),
                    format!(
                        "unknown directory number {:?} in partition {} (define it under directory_numbers)",
                        l.dn,
                        l.partition.as_deref().map_or("<None>".to_string(), |x| format!("{x:?}"))
                    ),
                );
            }
            if !here.insert(key.clone()) {
                self.err(
                    lp.key("dn"),
                    format!("directory number {:?} appears twice", l.dn),
                );
            }
            used.insert(key);
        }
    }

    fn speed_dials(&mut self, p: &Path, sds: &[SpeedDial]) {
        for (j, sd) in sds.iter().enumerate() {
            if let Err(e) = validate_digits(&sd.number) {
                self.err(
                    p.key("speed_dials").index(j).key("number"),
                    format!("not a number: {e}"),
                );
            }
        }
    }
}

fn is_hostname(s: &str) -> bool {
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

fn is_multicast_range(s: &str) -> bool {
    let Some((a, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(ip) = a.parse::<std::net::Ipv4Addr>() else {
        return false;
    };
    len.parse::<u8>().is_ok_and(|l| (4..=32).contains(&l)) && ip.is_multicast()
}
