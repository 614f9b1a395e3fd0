//! Service parameters (Extension Mobility, WebDialer), the enterprise parameters' service
//! URLs, and the phone services.

use std::net::IpAddr;

use super::{is_hostname, Checker};
use crate::wire::yaml::Path;

impl Checker<'_> {
    pub(super) fn service_parameters(&mut self) {
        let d = self.def;
        let root = Path::root();
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
                self.err(emp.key("trusted_ips").index(i), format!("{ip:?} {what}"));
            }
        }
        let ps = &d.service_parameters.phone_services;
        if ps.auth_lockout_threshold > 0 && !(1..=1440).contains(&ps.auth_lockout_minutes) {
            self.err(
                root.key("service_parameters")
                    .key("phone_services")
                    .key("auth_lockout_minutes"),
                "must be 1 to 1440 minutes while auth_lockout_threshold is set",
            );
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
        if !(1..=wd_max_answer_timeout()).contains(&wd.answer_timeout_seconds) {
            self.err(
                wdp.key("answer_timeout_seconds"),
                format!("must be 1 to {} seconds", wd_max_answer_timeout()),
            );
        }
        for (i, u) in wd.webdialers.iter().enumerate() {
            self.url(wdp.key("webdialers").index(i), Some(u), false);
        }
    }

    pub(super) fn enterprise_parameters(&mut self) {
        let d = self.def;
        let root = Path::root();
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
    }

    pub(super) fn phone_services(&mut self) {
        let d = self.def;
        let root = Path::root();
        for (i, s) in d.phone_services.iter().enumerate() {
            let p = root.key("phone_services").index(i);
            if s.url.trim().is_empty() {
                self.err(p.key("url"), "a phone service needs a URL");
            } else {
                self.url(p.key("url"), Some(&s.url), false);
            }
            self.url(p.key("secure_url"), s.secure_url.as_deref(), true);
        }
    }
}

/// The longest makeCall may wait for the user's phone (a call request is held that long).
fn wd_max_answer_timeout() -> u32 {
    crate::config::model::MAX_WD_ANSWER_TIMEOUT_SECONDS
}
