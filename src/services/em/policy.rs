//! Extension Mobility's login policy as decisions without I/O, clock or randomness: given the
//! cluster, the logins as the caller sees them, who asks and what, and the time, say what a
//! login or logout will do or which EM error refuses it. The service ([`super::EmService`])
//! carries the plan out: the database transaction, the running cluster's logins, the timers
//! and the phone resets.
//!
//! Codes, in the order Cisco's service applies them: for a login the device (11, 22), the user
//! (23), the caller's right to act for the user (10), the profile (12), the duration (7), the
//! device's current login (18) and Multiple Login Behavior (25, or logging the user's other
//! devices out); for a
//! logout the device (11, 5), its login (19) and the caller's right (10).

use std::net::IpAddr;

use super::api::Duration;
use super::model::{ExtensionMobilityParameters, MultipleLoginBehavior};
use super::store::EmLoginRow;
use super::{EmError, Principal};
use crate::cluster::{Cluster, Login, Mobility};
use crate::config::model::LineAppearance;

/// The logins a decision is taken against. The running cluster's [`Mobility`] is one; a
/// database read inside the login's transaction can be another.
pub trait CurrentLogins {
    /// The login on `device`, if any.
    fn on_device(&self, device: &str) -> Option<Login>;
    /// The devices `user` is logged in on.
    fn devices_of(&self, user: &str) -> Vec<String>;
}

impl CurrentLogins for Mobility {
    fn on_device(&self, device: &str) -> Option<Login> {
        self.login(device)
    }
    fn devices_of(&self, user: &str) -> Vec<String> {
        Mobility::devices_of(self, user)
    }
}

/// A login request, as the EM API and the EM application make it.
#[derive(Debug, Clone, Copy)]
pub struct LoginRequest<'a> {
    pub device: &'a str,
    pub user: &'a str,
    /// The device profile asked for; `None`: the user's default (else first) profile.
    pub profile: Option<&'a str>,
    pub duration: Option<Duration>,
}

/// What an accepted login does.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginPlan {
    /// The login to record (its automatic logout time included).
    pub login: Login,
    /// The profile's lines, which the device carries while the login lasts.
    pub lines: Vec<LineAppearance>,
    /// The user's logins on other devices that end with this one (Multiple Login Behavior
    /// `auto-logout`), as the logins looked when planning.
    pub also_logout: Vec<String>,
    /// The Multiple Login Behavior the plan applied, so that whoever writes the login can
    /// decide it again against what is stored at that moment.
    pub multiple_login: MultipleLoginBehavior,
}

impl LoginPlan {
    /// The database row of the login, made by `node`.
    pub fn row(&self, node: &str) -> EmLoginRow {
        EmLoginRow {
            device: self.login.device.clone(),
            userid: self.login.user.clone(),
            profile: self.login.profile.clone(),
            logged_in_at: self.login.logged_in_at,
            logout_at: self.login.logout_at,
            node: node.to_string(),
        }
    }
}

/// Decides a login of `req.user` on `req.device` at `now_unix` (unix seconds).
pub fn plan_login(
    cluster: &Cluster,
    logins: &impl CurrentLogins,
    principal: &Principal,
    req: &LoginRequest<'_>,
    now_unix: i64,
) -> Result<LoginPlan, EmError> {
    let LoginRequest { device, user, .. } = *req;
    let params = &cluster.section::<super::model::ExtensionMobilityParameters>();
    let dev = cluster
        .device(device)
        .ok_or_else(|| EmError::new(11, format!("device {device} does not exist")))?;
    if !dev.em_enabled {
        return Err(EmError::new(
            22,
            format!("Extension Mobility is not enabled on {device}"),
        ));
    }
    let eu = cluster
        .end_user(user)
        .ok_or_else(|| EmError::new(23, format!("user {user} not found")))?;
    if !principal.may_act_for(user) {
        return Err(EmError::new(
            10,
            format!("{} lacks EM proxy rights to log {user} in", principal.id),
        ));
    }
    let profile_name = req
        .profile
        .map(str::to_string)
        .or_else(|| eu.default_profile.clone())
        .or_else(|| eu.device_profiles.first().cloned())
        .ok_or_else(|| EmError::new(12, format!("{user} has no device profile")))?;
    let owns = eu.device_profiles.contains(&profile_name)
        || eu.default_profile.as_deref() == Some(profile_name.as_str());
    let prof = cluster
        .device_profile(&profile_name)
        .filter(|_| owns)
        .ok_or_else(|| {
            EmError::new(
                12,
                format!("device profile {profile_name} not found for {user}"),
            )
        })?;
    let logout_in = login_seconds(params, req.duration)?;
    if let Some(current) = logins.on_device(device) {
        if current.user != user {
            return Err(EmError::new(
                18,
                format!("{} is logged in on {device}", current.user),
            ));
        }
    }
    let elsewhere: Vec<String> = logins
        .devices_of(user)
        .into_iter()
        .filter(|d| d != device)
        .collect();
    let behavior = params.multiple_login_behavior;
    let also_logout = match (behavior, elsewhere.is_empty()) {
        (_, true) | (MultipleLoginBehavior::Allowed, _) => Vec::new(),
        (MultipleLoginBehavior::NotAllowed, false) => {
            return Err(EmError::new(
                25,
                format!("{user} is logged in on {}", elsewhere.join(", ")),
            ))
        }
        (MultipleLoginBehavior::AutoLogout, false) => elsewhere,
    };
    Ok(LoginPlan {
        login: Login {
            device: device.to_string(),
            user: user.to_string(),
            profile: profile_name,
            logged_in_at: now_unix,
            logout_at: logout_in.map(|s| now_unix + s),
        },
        lines: prof.lines.clone(),
        also_logout,
        multiple_login: behavior,
    })
}

/// The longest login a request may ask for, in minutes: 168 hours, the top of the
/// Intra-cluster Maximum Login Time's range (0:00 to 168:00).
pub const MAX_LOGIN_MINUTES: u32 = 168 * 60;

/// How long a login lasts, in seconds (`None`: until logout): what the request asked for,
/// capped by the Intra-cluster Maximum Login Time when that is enforced. A duration of no
/// minutes, or over [`MAX_LOGIN_MINUTES`], is refused with 7 ("Could not set auto-logout
/// duration during log in", the API's code for the login's automatic logout).
pub fn login_seconds(
    params: &ExtensionMobilityParameters,
    asked: Option<Duration>,
) -> Result<Option<i64>, EmError> {
    if let Some(Duration::Minutes(m)) = asked {
        if !(1..=MAX_LOGIN_MINUTES).contains(&m) {
            return Err(EmError::new(
                7,
                format!(
                    "exclusiveDuration {m} minutes is not between 1 and {MAX_LOGIN_MINUTES} \
                     (168 hours); use <indefinite/> for no automatic logout"
                ),
            ));
        }
    }
    let max = params
        .enforce_max_login_time
        .then(|| parse_hmm(&params.max_login_time))
        .flatten()
        .map(|m| i64::from(m) * 60);
    let asked = match asked {
        Some(Duration::Minutes(m)) => Some(i64::from(m) * 60),
        Some(Duration::Indefinite) | None => None,
    };
    Ok(match (asked, max) {
        (Some(a), Some(m)) => Some(a.min(m)),
        (a, m) => a.or(m),
    })
}

/// An accepted logout: the device and who is logged in on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutPlan {
    pub device: String,
    pub user: String,
}

/// Decides a logout of `device` asked by `principal`.
pub fn plan_logout(
    cluster: &Cluster,
    logins: &impl CurrentLogins,
    principal: &Principal,
    device: &str,
) -> Result<LogoutPlan, EmError> {
    let dev = cluster
        .device(device)
        .ok_or_else(|| EmError::new(11, format!("device {device} does not exist")))?;
    if !dev.em_enabled {
        return Err(EmError::new(
            5,
            format!("Extension Mobility is not enabled on {device}"),
        ));
    }
    let Some(current) = logins.on_device(device) else {
        return Err(EmError::new(19, format!("nobody is logged in on {device}")));
    };
    if !principal.may_act_for(&current.user) {
        return Err(EmError::new(
            10,
            format!(
                "{} lacks EM proxy rights to log {} out",
                principal.id, current.user
            ),
        ));
    }
    Ok(LogoutPlan {
        device: device.to_string(),
        user: current.user,
    })
}

/// Allow Proxy: a request that came through an HTTP proxy (`via`) is refused with 30 unless
/// the parameter allows it. `kind` names the request in the message.
pub fn check_proxy(
    params: &ExtensionMobilityParameters,
    via: bool,
    kind: &str,
) -> Result<(), EmError> {
    if via && !params.allow_proxy {
        return Err(EmError::new(
            30,
            format!("{kind} through an HTTP proxy is not allowed (Allow Proxy is off)"),
        ));
    }
    Ok(())
}

/// Where a request came from, as the HTTP layer saw it: what Validate IP Address checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// The TCP peer: the only address nobody on the path can choose.
    pub peer: Option<IpAddr>,
    /// Proxies the HTTP `Via` header names (comma-separated entries, over every Via line).
    pub via_hops: usize,
    /// Addresses the proxies reported (`X-Forwarded-For`, `Forwarded: for=`), the client
    /// first: believed only from a proxy on the Trusted List of IPs.
    pub forwarded_for: Vec<IpAddr>,
    /// The address the request body claims (`<remoteIPAddr>`): believed only in a request
    /// forwarded by a trusted proxy that reported none itself.
    pub claimed: Option<IpAddr>,
}

/// Most `Via` entries and forwarded addresses read from one request (a longer list is cut:
/// more proxies than this on one path is not a deployment but an attack).
pub const MAX_PROXY_HOPS: usize = 16;

impl Source {
    /// Reads the proxy headers of a request that came from `peer`.
    pub fn from_http(
        peer: IpAddr,
        headers: &axum::http::HeaderMap,
        claimed: Option<&str>,
    ) -> Source {
        let values = |name: &str| {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .take(MAX_PROXY_HOPS)
                .collect::<Vec<String>>()
        };
        let via_hops = values("via").len();
        let mut forwarded_for: Vec<IpAddr> = Vec::new();
        for entry in values("forwarded") {
            // RFC 7239: `for=192.0.2.60;proto=http`, `for="[2001:db8::1]:4711"`.
            for pair in entry.split(';') {
                if let Some((k, v)) = pair.trim().split_once('=') {
                    if k.trim().eq_ignore_ascii_case("for") {
                        if let Some(ip) = parse_node(v) {
                            forwarded_for.push(ip);
                        }
                    }
                }
            }
        }
        if forwarded_for.is_empty() {
            forwarded_for = values("x-forwarded-for")
                .iter()
                .filter_map(|v| parse_node(v))
                .collect();
        }
        Source {
            peer: Some(peer),
            via_hops,
            forwarded_for,
            claimed: claimed.and_then(|c| c.trim().parse().ok()),
        }
    }
}

/// An address from a forwarding header: `1.2.3.4`, `1.2.3.4:80`, `"[2001:db8::1]:80"`.
fn parse_node(v: &str) -> Option<IpAddr> {
    let v = v.trim().trim_matches('"');
    if let Ok(ip) = v.parse() {
        return Some(ip);
    }
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    v.rsplit_once(':')?.0.parse().ok()
}

/// Validate IP Address: when it is on, the login or logout must come from the device itself
/// (one of the addresses `device_ips` gives, asked only when needed) or a trusted address;
/// else 28. See [`source_allowed`] for which address is validated.
pub fn check_ip(
    params: &ExtensionMobilityParameters,
    device: &str,
    source: &Source,
    device_ips: impl FnOnce() -> Vec<IpAddr>,
) -> Result<(), EmError> {
    if !params.validate_ip_address {
        return Ok(());
    }
    source_allowed(&params.trusted_ips, device, source, device_ips)
}

/// Whether `source` may act for `device` by its address, whatever Validate IP Address says
/// (the EM application asks this before logging a phone out without credentials). The
/// address validated is the request's source (the TCP peer); what the request body says
/// (`remoteIPAddr`) is not believed from it. A request forwarded by web proxies (a `Via`
/// header) is accepted only when the proxy that connected is on the Trusted List of IPs, and
/// only then is the forwarded address considered: the client the trusted proxies reported
/// (the nearest untrusted address of `X-Forwarded-For` or `Forwarded`, read from the right),
/// else `remoteIPAddr`; that address must be the device's or trusted. A trusted proxy that
/// reports no address is accepted (Cisco's rule for proxies on the Trusted List).
pub fn source_allowed(
    trusted_ips: &[String],
    device: &str,
    source: &Source,
    device_ips: impl FnOnce() -> Vec<IpAddr>,
) -> Result<(), EmError> {
    let Some(peer) = source.peer else {
        return Err(EmError::new(
            28,
            format!("the request's source address is unknown, so it cannot be {device}'s"),
        ));
    };
    let addr = if source.via_hops == 0 {
        peer
    } else {
        if !trusted(peer, trusted_ips) {
            return Err(EmError::new(
                28,
                format!("{peer} forwarded the request (Via) but is not in the Trusted List of IPs"),
            ));
        }
        let reported = source
            .forwarded_for
            .iter()
            .rev()
            .find(|a| !trusted(**a, trusted_ips))
            .or(source.forwarded_for.first())
            .copied()
            .or(source.claimed);
        match reported {
            Some(a) => a,
            None => return Ok(()),
        }
    };
    if trusted(addr, trusted_ips) || device_ips().contains(&addr) {
        Ok(())
    } else {
        Err(EmError::new(
            28,
            format!("{addr} is neither {device}'s address nor in the Trusted List of IPs"),
        ))
    }
}

/// Parses `H:MM` (Intra-cluster Maximum Login Time) into minutes.
pub fn parse_hmm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && h * 60 + m <= MAX_LOGIN_MINUTES).then_some(h * 60 + m)
}

/// Whether `ip` is one of the trusted entries (addresses or `addr/len` prefixes).
fn trusted(ip: IpAddr, list: &[String]) -> bool {
    list.iter().any(|entry| match entry.split_once('/') {
        None => entry.trim().parse::<IpAddr>().is_ok_and(|a| a == ip),
        Some((net, len)) => {
            let (Ok(net), Ok(len)) = (net.trim().parse::<IpAddr>(), len.trim().parse::<u32>())
            else {
                return false;
            };
            match (net, ip) {
                (IpAddr::V4(n), IpAddr::V4(a)) if len <= 32 => {
                    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                    u32::from(n) & mask == u32::from(a) & mask
                }
                (IpAddr::V6(n), IpAddr::V6(a)) if len <= 128 => {
                    let mask = if len == 0 {
                        0
                    } else {
                        u128::MAX << (128 - len)
                    };
                    u128::from(n) & mask == u128::from(a) & mask
                }
                _ => false,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOTDESK: &str = "SEP0000000000A1";
    /// John Smith's own phone, EM-enabled in the demo cluster.
    const JSMITH_PHONE: &str = "SEP00036BC7B973";
    /// Phone B: not EM-enabled.
    const PHONE_B: &str = "SEP00036BC7B974";
    const T0: i64 = 1_700_000_000;

    fn cluster_with(edit: impl FnOnce(&mut crate::config::model::ClusterDefinition)) -> Cluster {
        let mut def = crate::services::demo().expect("the demo cluster loads");
        edit(&mut def);
        Cluster::new(def)
    }

    fn cluster() -> Cluster {
        cluster_with(|_| {})
    }

    fn proxy() -> Principal {
        Principal {
            id: "emproxy".into(),
            proxy: true,
            is_end_user: false,
        }
    }

    fn end_user(id: &str) -> Principal {
        Principal {
            id: id.into(),
            proxy: false,
            is_end_user: true,
        }
    }

    fn req<'a>(device: &'a str, user: &'a str) -> LoginRequest<'a> {
        LoginRequest {
            device,
            user,
            profile: None,
            duration: None,
        }
    }

    fn logged_in(logins: &Mobility, device: &str, user: &str) {
        logins.insert(
            Login {
                device: device.into(),
                user: user.into(),
                profile: "jsmith-udp".into(),
                logged_in_at: T0 - 60,
                logout_at: None,
            },
            &[],
        );
    }

    fn code(r: Result<LoginPlan, EmError>) -> u32 {
        r.expect_err("refused").code
    }

    #[test]
    fn r14_a_login_plan_names_the_profile_its_lines_and_the_time() {
        let c = cluster();
        let plan = plan_login(
            &c,
            &Mobility::default(),
            &proxy(),
            &req(HOTDESK, "jsmith"),
            T0,
        )
        .unwrap();
        assert_eq!(
            plan.login,
            Login {
                device: HOTDESK.into(),
                user: "jsmith".into(),
                profile: "jsmith-udp".into(),
                logged_in_at: T0,
                logout_at: None,
            }
        );
        assert_eq!(plan.lines.len(), 1);
        assert_eq!(plan.lines[0].dn, "10001");
        assert!(plan.also_logout.is_empty());
        assert_eq!(plan.multiple_login, MultipleLoginBehavior::NotAllowed);
        let row = plan.row("node-a");
        assert_eq!(
            (row.device.as_str(), row.node.as_str()),
            (HOTDESK, "node-a")
        );
        assert_eq!((row.logged_in_at, row.logout_at), (T0, None));
        // A user may log themselves in.
        assert!(plan_login(
            &c,
            &Mobility::default(),
            &end_user("jsmith"),
            &req(HOTDESK, "jsmith"),
            T0
        )
        .is_ok());
    }

    #[test]
    fn r14_each_login_refusal_has_its_code() {
        let c = cluster();
        let none = Mobility::default();
        let p = proxy();
        assert_eq!(
            code(plan_login(
                &c,
                &none,
                &p,
                &req("SEPFFFFFFFFFFFF", "jsmith"),
                T0
            )),
            11
        );
        assert_eq!(
            code(plan_login(&c, &none, &p, &req(PHONE_B, "jsmith"), T0)),
            22
        );
        assert_eq!(
            code(plan_login(&c, &none, &p, &req(HOTDESK, "nobody"), T0)),
            23
        );
        // Another end user without proxy rights, and an application user without them.
        assert_eq!(
            code(plan_login(
                &c,
                &none,
                &end_user("sadams"),
                &req(HOTDESK, "jsmith"),
                T0
            )),
            10
        );
        let app = Principal {
            id: "paging".into(),
            proxy: false,
            is_end_user: false,
        };
        assert_eq!(
            code(plan_login(&c, &none, &app, &req(HOTDESK, "jsmith"), T0)),
            10
        );
        // sadams has no device profile; jsmith does not own the logout profile.
        assert_eq!(
            code(plan_login(&c, &none, &p, &req(HOTDESK, "sadams"), T0)),
            12
        );
        let foreign = LoginRequest {
            profile: Some("hotdesk-logout"),
            ..req(HOTDESK, "jsmith")
        };
        assert_eq!(code(plan_login(&c, &none, &p, &foreign, T0)), 12);
        let missing = LoginRequest {
            profile: Some("no-such-profile"),
            ..req(HOTDESK, "jsmith")
        };
        assert_eq!(code(plan_login(&c, &none, &p, &missing, T0)), 12);
        // Somebody else on the device: 18; the same user again replaces their own login.
        let taken = Mobility::default();
        logged_in(&taken, HOTDESK, "ssmith");
        assert_eq!(
            code(plan_login(&c, &taken, &p, &req(HOTDESK, "jsmith"), T0)),
            18
        );
        let own = Mobility::default();
        logged_in(&own, HOTDESK, "jsmith");
        assert!(plan_login(&c, &own, &p, &req(HOTDESK, "jsmith"), T0).is_ok());
    }

    #[test]
    fn r14_the_checks_come_in_cisco_order() {
        let c = cluster();
        let taken = Mobility::default();
        logged_in(&taken, HOTDESK, "ssmith");
        // An unknown user on a device somebody else holds: the user (23) before the device's
        // login (18); no rights and no profile: the rights (10) first.
        assert_eq!(
            code(plan_login(
                &c,
                &taken,
                &proxy(),
                &req(HOTDESK, "nobody"),
                T0
            )),
            23
        );
        assert_eq!(
            code(plan_login(
                &c,
                &taken,
                &end_user("ssmith"),
                &req(HOTDESK, "sadams"),
                T0
            )),
            10
        );
        // A device that does not take EM and an unknown user: the device (22).
        assert_eq!(
            code(plan_login(
                &c,
                &taken,
                &proxy(),
                &req(PHONE_B, "nobody"),
                T0
            )),
            22
        );
    }

    #[test]
    fn r14_multiple_login_behavior_on_the_plan() {
        let with = |b: MultipleLoginBehavior| {
            cluster_with(|d| {
                let mut p: ExtensionMobilityParameters = d.section();
                p.multiple_login_behavior = b;
                d.set_section(&p);
            })
        };
        let elsewhere = Mobility::default();
        logged_in(&elsewhere, JSMITH_PHONE, "jsmith");
        let r = req(HOTDESK, "jsmith");

        let c = with(MultipleLoginBehavior::NotAllowed);
        let e = plan_login(&c, &elsewhere, &proxy(), &r, T0).unwrap_err();
        assert_eq!(e.code, 25);
        assert!(e.message.contains(JSMITH_PHONE), "{e}");

        let c = with(MultipleLoginBehavior::AutoLogout);
        let plan = plan_login(&c, &elsewhere, &proxy(), &r, T0).unwrap();
        assert_eq!(plan.also_logout, vec![JSMITH_PHONE.to_string()]);
        assert_eq!(plan.multiple_login, MultipleLoginBehavior::AutoLogout);

        let c = with(MultipleLoginBehavior::Allowed);
        let plan = plan_login(&c, &elsewhere, &proxy(), &r, T0).unwrap();
        assert!(plan.also_logout.is_empty());
        assert_eq!(plan.multiple_login, MultipleLoginBehavior::Allowed);

        // The device being logged in on is never "elsewhere".
        let c = with(MultipleLoginBehavior::NotAllowed);
        let here = Mobility::default();
        logged_in(&here, HOTDESK, "jsmith");
        assert!(plan_login(&c, &here, &proxy(), &r, T0)
            .unwrap()
            .also_logout
            .is_empty());
    }

    #[test]
    fn r14_max_login_time_caps_the_asked_duration() {
        let with = |enforce: bool, max: &str| {
            cluster_with(|d| {
                let mut p: ExtensionMobilityParameters = d.section();
                p.enforce_max_login_time = enforce;
                p.max_login_time = max.into();
                d.set_section(&p);
            })
        };
        let logout_at = |c: &Cluster, duration: Option<Duration>| {
            let r = LoginRequest {
                duration,
                ..req(HOTDESK, "jsmith")
            };
            plan_login(c, &Mobility::default(), &proxy(), &r, T0)
                .unwrap()
                .login
                .logout_at
        };
        let free = with(false, "1:00");
        assert_eq!(logout_at(&free, None), None);
        assert_eq!(logout_at(&free, Some(Duration::Indefinite)), None);
        assert_eq!(
            logout_at(&free, Some(Duration::Minutes(600))),
            Some(T0 + 600 * 60)
        );
        let capped = with(true, "1:00");
        assert_eq!(logout_at(&capped, None), Some(T0 + 3600));
        assert_eq!(
            logout_at(&capped, Some(Duration::Indefinite)),
            Some(T0 + 3600)
        );
        assert_eq!(
            logout_at(&capped, Some(Duration::Minutes(600))),
            Some(T0 + 3600)
        );
        assert_eq!(
            logout_at(&capped, Some(Duration::Minutes(5))),
            Some(T0 + 300)
        );
        // A malformed maximum caps nothing.
        let broken = with(true, "junk");
        assert_eq!(logout_at(&broken, None), None);
    }

    #[test]
    fn r15_a_login_duration_is_one_minute_to_168_hours() {
        let enforced = cluster_with(|d| {
            let mut p: ExtensionMobilityParameters = d.section();
            p.enforce_max_login_time = true;
            p.max_login_time = "1:00".into();
            d.set_section(&p);
        });
        for c in [cluster(), enforced] {
            let at = |m: u32| {
                let r = LoginRequest {
                    duration: Some(Duration::Minutes(m)),
                    ..req(HOTDESK, "jsmith")
                };
                plan_login(&c, &Mobility::default(), &proxy(), &r, T0)
            };
            for bad in [0, MAX_LOGIN_MINUTES + 1, u32::MAX] {
                let e = at(bad).unwrap_err();
                assert_eq!(e.code, 7, "{bad}: {e}");
                assert!(e.message.contains("10080"), "{e}");
            }
            assert!(at(1).is_ok());
            assert!(at(MAX_LOGIN_MINUTES).is_ok());
        }
        // The duration is refused before the device's login or Multiple Login Behavior.
        let taken = Mobility::default();
        logged_in(&taken, HOTDESK, "ssmith");
        let r = LoginRequest {
            duration: Some(Duration::Minutes(0)),
            ..req(HOTDESK, "jsmith")
        };
        assert_eq!(code(plan_login(&cluster(), &taken, &proxy(), &r, T0)), 7);
    }

    #[test]
    fn r14_each_logout_refusal_has_its_code() {
        let c = cluster();
        let logins = Mobility::default();
        logged_in(&logins, HOTDESK, "jsmith");
        let p = proxy();
        let code = |r: Result<LogoutPlan, EmError>| r.expect_err("refused").code;
        assert_eq!(code(plan_logout(&c, &logins, &p, "SEPFFFFFFFFFFFF")), 11);
        assert_eq!(code(plan_logout(&c, &logins, &p, PHONE_B)), 5);
        assert_eq!(code(plan_logout(&c, &logins, &p, JSMITH_PHONE)), 19);
        assert_eq!(
            code(plan_logout(&c, &logins, &end_user("sadams"), HOTDESK)),
            10
        );
        let plan = plan_logout(&c, &logins, &end_user("jsmith"), HOTDESK).unwrap();
        assert_eq!(
            plan,
            LogoutPlan {
                device: HOTDESK.into(),
                user: "jsmith".into()
            }
        );
    }

    #[test]
    fn r14_proxy_and_ip_validation() {
        let mut params: ExtensionMobilityParameters = cluster().definition().section();
        params.allow_proxy = false;
        assert_eq!(check_proxy(&params, true, "login").unwrap_err().code, 30);
        assert!(check_proxy(&params, false, "login").is_ok());
        params.allow_proxy = true;
        assert!(check_proxy(&params, true, "login").is_ok());

        let phone: IpAddr = "10.0.0.9".parse().unwrap();
        let other: IpAddr = "10.0.0.10".parse().unwrap();
        let from = |peer: IpAddr| Source {
            peer: Some(peer),
            ..Source::default()
        };
        params.validate_ip_address = false;
        assert!(check_ip(&params, HOTDESK, &from(other), || unreachable!()).is_ok());
        params.validate_ip_address = true;
        params.trusted_ips = vec!["192.168.1.0/24".into()];
        assert!(check_ip(&params, HOTDESK, &from(phone), || vec![phone]).is_ok());
        assert_eq!(
            check_ip(&params, HOTDESK, &from(other), || vec![phone])
                .unwrap_err()
                .code,
            28
        );
        let trusted_ip: IpAddr = "192.168.1.7".parse().unwrap();
        assert!(check_ip(&params, HOTDESK, &from(trusted_ip), || unreachable!()).is_ok());
    }

    #[test]
    fn r15_the_source_address_is_validated_not_the_claimed_one() {
        let mut params: ExtensionMobilityParameters = cluster().definition().section();
        params.validate_ip_address = true;
        params.allow_proxy = true;
        params.trusted_ips = vec!["192.168.1.0/24".into()];
        let phone: IpAddr = "10.0.0.9".parse().unwrap();
        let attacker: IpAddr = "10.0.0.66".parse().unwrap();
        let proxy: IpAddr = "192.168.1.5".parse().unwrap();
        let code = |s: Source| {
            check_ip(&params, HOTDESK, &s, || vec![phone])
                .err()
                .map(|e| e.code)
        };
        // The attacker names the phone's address in the body: refused (the bypass).
        let claimed = Source {
            peer: Some(attacker),
            claimed: Some(phone),
            ..Source::default()
        };
        assert_eq!(code(claimed.clone()), Some(28));
        // An untrusted "proxy" (a Via header from anywhere) gains nothing either.
        assert_eq!(
            code(Source {
                via_hops: 1,
                forwarded_for: vec![phone],
                ..claimed.clone()
            }),
            Some(28)
        );
        // A trusted proxy: the address it reports is the one validated.
        let via = |forwarded_for: Vec<IpAddr>, claimed: Option<IpAddr>| Source {
            peer: Some(proxy),
            via_hops: 2,
            forwarded_for,
            claimed,
        };
        assert_eq!(code(via(vec![phone], None)), None);
        assert_eq!(code(via(vec![attacker], Some(phone))), Some(28));
        // Several proxies: the nearest untrusted address, read from the right.
        let inner: IpAddr = "192.168.1.6".parse().unwrap();
        assert_eq!(code(via(vec![attacker, phone, inner], None)), None);
        assert_eq!(code(via(vec![phone, attacker, inner], None)), Some(28));
        // Only from a trusted proxy is the body's address considered.
        assert_eq!(code(via(vec![], Some(phone))), None);
        assert_eq!(code(via(vec![], Some(attacker))), Some(28));
        // A trusted proxy that reports nothing is accepted (Cisco's rule).
        assert_eq!(code(via(vec![], None)), None);
        // An unknown source is never the device.
        assert_eq!(code(Source::default()), Some(28));
    }

    #[test]
    fn r15_proxy_headers_are_read_bounded() {
        let mut h = axum::http::HeaderMap::new();
        h.append("via", "1.1 proxy-a, 1.1 proxy-b".parse().unwrap());
        h.append("via", "1.0 proxy-c".parse().unwrap());
        h.append("x-forwarded-for", "10.0.0.9, 192.168.1.6".parse().unwrap());
        let s = Source::from_http("192.168.1.5".parse().unwrap(), &h, Some(" 10.0.0.1 "));
        assert_eq!(s.via_hops, 3);
        assert_eq!(
            s.forwarded_for,
            vec![
                "10.0.0.9".parse::<IpAddr>().unwrap(),
                "192.168.1.6".parse().unwrap()
            ]
        );
        assert_eq!(s.claimed, Some("10.0.0.1".parse().unwrap()));
        let mut h = axum::http::HeaderMap::new();
        h.append(
            "forwarded",
            "for=10.0.0.9;proto=http, for=\"[2001:db8::1]:4711\""
                .parse()
                .unwrap(),
        );
        h.append("via", vec!["x"; 100].join(",").parse().unwrap());
        let s = Source::from_http("192.168.1.5".parse().unwrap(), &h, Some("junk"));
        assert_eq!(s.via_hops, MAX_PROXY_HOPS);
        assert_eq!(
            s.forwarded_for,
            vec![
                "10.0.0.9".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
        assert_eq!(s.claimed, None);
    }

    #[test]
    fn max_login_time_and_trusted_lists() {
        assert_eq!(parse_hmm("8:00"), Some(480));
        assert_eq!(parse_hmm("168:00"), Some(10080));
        assert_eq!(parse_hmm("168:01"), None);
        assert_eq!(parse_hmm("1:60"), None);
        assert_eq!(parse_hmm("x"), None);
        let list = vec![
            "10.0.0.5".to_string(),
            "192.168.1.0/24".into(),
            "fd00::/8".into(),
        ];
        assert!(trusted("10.0.0.5".parse().unwrap(), &list));
        assert!(!trusted("10.0.0.6".parse().unwrap(), &list));
        assert!(trusted("192.168.1.77".parse().unwrap(), &list));
        assert!(!trusted("192.168.2.1".parse().unwrap(), &list));
        assert!(trusted("fd12::1".parse().unwrap(), &list));
        assert!(!trusted("fe80::1".parse().unwrap(), &list));
        assert!(!trusted("1.2.3.4".parse().unwrap(), &["junk/99".into()]));
    }
}
