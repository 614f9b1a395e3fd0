//! SIP digest authentication (RFC 3261 22.4 with RFC 2617 MD5 and qop=auth), as Unified CM
//! uses it for phones whose security profile enables digest authentication.
//!
//! A nonce carries its issue time, a serial number and a SHA-256 tag over both with a
//! per-node secret, so any nonce this node issued can be checked without a table, and
//! expires after [`NONCE_LIFETIME`] (the phone then retries with the fresh one of a
//! `stale=true` challenge). What is remembered is the nonce count each nonce was used with
//! (RFC 7616 3.4), in a bounded table per node ([`MAX_TRACKED_NONCES`]): a replayed count is
//! challenged again. Nonces are per node (the secret is), so the table is too.

use std::collections::HashMap;

use md5::{Digest as _, Md5};
use sha2::Sha256;

use crate::auth::REALM;

/// How long a nonce is accepted, in seconds.
pub const NONCE_LIFETIME: i64 = 300;
/// Nonces whose counts one node tracks at once (RFC 7616 3.4: a reused `nc` is a replay).
/// Each entry is a nonce some client authenticated with in the last [`NONCE_LIFETIME`]; when
/// the table is full of live ones, every nonce issued so far turns stale (clients answer the
/// `stale=true` challenge with a fresh one), so a replay is never accepted for lack of room.
pub const MAX_TRACKED_NONCES: usize = 65_536;
/// How long the very same request (a retransmission over UDP: same Via branch, Call-ID, CSeq
/// and Contact) may present the same `nc` again: 64*T1, a transaction's lifetime.
pub const RETRANSMIT_WINDOW: i64 = 32;

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// Issues and checks nonces with a secret that lives as long as the node, and remembers the
/// highest nonce count each nonce was used with (per node: only the node that issued a nonce
/// can check it, as its secret is its own).
pub struct Nonces {
    secret: [u8; 32],
    serial: std::sync::atomic::AtomicU64,
    used: std::sync::Mutex<Used>,
}

/// The nonces clients authenticated with, by nonce.
#[derive(Default)]
struct Used {
    by_nonce: HashMap<String, Use>,
    /// Nonces issued at or before this time are stale (set when the table overflowed).
    floor: Option<i64>,
}

struct Use {
    issued: i64,
    /// The highest `nc` accepted (0 without qop: such a nonce is good for one request).
    nc: u32,
    /// The request that used it, and when: its retransmissions may present `nc` again.
    request: u64,
    at: i64,
}

/// Whether a nonce count may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountCheck {
    Fresh,
    /// Not above the highest seen for the nonce (and not the same request retransmitted).
    Replayed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Valid,
    /// Ours, but too old: challenge again with `stale=true`.
    Stale,
    Invalid,
}

impl Nonces {
    pub fn new(secret: [u8; 32]) -> Nonces {
        Nonces {
            secret,
            serial: std::sync::atomic::AtomicU64::new(0),
            used: std::sync::Mutex::new(Used::default()),
        }
    }

    fn used(&self) -> std::sync::MutexGuard<'_, Used> {
        match self.used.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Records that `nonce` (issued at `issued`) authenticated `request` with count `nc`
    /// (`None`: no qop) at `now`, unless that count was used before.
    pub fn use_count(
        &self,
        nonce: &str,
        issued: i64,
        nc: Option<u32>,
        request: u64,
        now: i64,
    ) -> CountCheck {
        let mut used = self.used();
        if let Some(u) = used.by_nonce.get_mut(nonce) {
            let again = u.request == request && now - u.at <= RETRANSMIT_WINDOW;
            return match nc {
                Some(n) if n > u.nc => {
                    *u = Use {
                        issued,
                        nc: n,
                        request,
                        at: now,
                    };
                    CountCheck::Fresh
                }
                _ if again && nc.unwrap_or(0) == u.nc => CountCheck::Fresh,
                _ => CountCheck::Replayed,
            };
        }
        if nc == Some(0) {
            return CountCheck::Replayed;
        }
        if used.by_nonce.len() >= MAX_TRACKED_NONCES {
            used.by_nonce
                .retain(|_, u| now - u.issued <= NONCE_LIFETIME);
            if used.by_nonce.len() >= MAX_TRACKED_NONCES {
                // Full of live nonces: forget them all, and make every nonce issued until
                // now stale so that none of them can be replayed.
                used.by_nonce.clear();
                used.floor = Some(now);
                return CountCheck::Replayed;
            }
        }
        used.by_nonce.insert(
            nonce.to_string(),
            Use {
                issued,
                nc: nc.unwrap_or(0),
                request,
                at: now,
            },
        );
        CountCheck::Fresh
    }

    fn tag(&self, issued: i64, serial: u64) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(issued.to_be_bytes());
        h.update(serial.to_be_bytes());
        hex::encode(&h.finalize()[..12])
    }

    /// A new nonce: the time, a serial number (every challenge gets a nonce of its own, so
    /// the counts of one are never those of another) and the tag over both.
    pub fn issue(&self, now: i64) -> String {
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{now:x}.{serial:x}.{}", self.tag(now, serial))
    }

    /// When a nonce of this node's was issued (`None`: not one of ours).
    pub fn issued(&self, nonce: &str) -> Option<i64> {
        let mut parts = nonce.split('.');
        let (t, serial, tag) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let issued = i64::from_str_radix(t, 16).ok()?;
        let serial = u64::from_str_radix(serial, 16).ok()?;
        constant_time_eq(tag.as_bytes(), self.tag(issued, serial).as_bytes()).then_some(issued)
    }

    pub fn check(&self, nonce: &str, now: i64) -> NonceCheck {
        let Some(issued) = self.issued(nonce) else {
            return NonceCheck::Invalid;
        };
        let floor = self.used().floor;
        if now - issued > NONCE_LIFETIME || issued > now + 5 || floor.is_some_and(|f| issued <= f) {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid
        }
    }

    /// The `WWW-Authenticate` value of a challenge.
    pub fn challenge(&self, now: i64, stale: bool) -> String {
        format!(
            "Digest realm=\"{REALM}\", nonce=\"{}\", algorithm=MD5, qop=\"auth\"{}",
            self.issue(now),
            if stale { ", stale=true" } else { "" }
        )
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The parameters of an `Authorization: Digest ...` header, names lower-cased.
pub fn parse_authorization(value: &str) -> Option<HashMap<String, String>> {
    let rest = value.trim();
    let rest = rest
        .strip_prefix("Digest")
        .or_else(|| rest.strip_prefix("digest"))?;
    let mut out = HashMap::new();
    for part in super::message::split_commas(rest) {
        let (k, v) = part.trim().split_once('=')?;
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .unwrap_or(v);
        out.insert(k.trim().to_ascii_lowercase(), v.to_string());
    }
    Some(out)
}

/// Why credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Stale,
    /// Right credentials, but a nonce count used before: a replay.
    Replayed,
    Refused(&'static str),
}

/// Checks an Authorization header for `method` against the user's HA1. `request` names the
/// request ([`request_fingerprint`]): a nonce count is good once, except for retransmissions
/// of the same request.
pub fn verify(
    nonces: &Nonces,
    params: &HashMap<String, String>,
    method: &str,
    expected_user: &str,
    ha1: &str,
    request: u64,
    now: i64,
) -> Verdict {
    let get = |k: &str| params.get(k).map(String::as_str);
    if get("username") != Some(expected_user) {
        return Verdict::Refused("username is not the device's digest user");
    }
    if get("realm") != Some(REALM) {
        return Verdict::Refused("wrong realm");
    }
    if get("algorithm").is_some_and(|a| !a.eq_ignore_ascii_case("MD5")) {
        return Verdict::Refused("unsupported algorithm");
    }
    let (Some(nonce), Some(uri), Some(response)) = (get("nonce"), get("uri"), get("response"))
    else {
        return Verdict::Refused("nonce, uri or response missing");
    };
    match nonces.check(nonce, now) {
        NonceCheck::Valid => {}
        NonceCheck::Stale => return Verdict::Stale,
        NonceCheck::Invalid => return Verdict::Refused("not a nonce this node issued"),
    }
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let (expected, count) = match get("qop") {
        Some(q) if q.eq_ignore_ascii_case("auth") => {
            let (Some(nc), Some(cnonce)) = (get("nc"), get("cnonce")) else {
                return Verdict::Refused("qop=auth without nc or cnonce");
            };
            let Some(count) = parse_nc(nc) else {
                return Verdict::Refused("nc is not 8 hexadecimal digits");
            };
            (
                md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")),
                Some(count),
            )
        }
        Some(_) => return Verdict::Refused("unsupported qop"),
        None => (md5_hex(&format!("{ha1}:{nonce}:{ha2}")), None),
    };
    if !constant_time_eq(
        expected.as_bytes(),
        response.to_ascii_lowercase().as_bytes(),
    ) {
        return Verdict::Refused("wrong response (bad password)");
    }
    // Only a verified response is counted: a stranger cannot spend a client's counts.
    let issued = nonces.issued(nonce).unwrap_or(now);
    match nonces.use_count(nonce, issued, count, request, now) {
        CountCheck::Fresh => Verdict::Ok,
        // RFC 7616 3.4: a replay; the fresh nonce of a stale challenge lets the real client
        // go on without asking its user again.
        CountCheck::Replayed => Verdict::Replayed,
    }
}

/// The 8 hex digits of `nc` (RFC 7616 3.4).
fn parse_nc(nc: &str) -> Option<u32> {
    (nc.len() == 8 && nc.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(nc, 16).ok())
        .flatten()
}

/// Names a request for [`verify`]: its retransmissions (same top Via branch, Call-ID, CSeq,
/// Contact and Expires) have the same fingerprint, any other request another.
pub fn request_fingerprint(req: &super::message::Request) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    req.method.as_str().hash(&mut h);
    req.uri.hash(&mut h);
    for name in ["Via", "Call-ID", "CSeq", "Contact", "Expires"] {
        for v in req.headers.get_all(name) {
            v.hash(&mut h);
        }
        0u8.hash(&mut h);
    }
    h.finish()
}

/// What a device's security profile asks of a request's credentials: the one policy behind
/// the registrar's 401 challenges and call control's 407 challenges of INVITEs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceCheck {
    /// Let the request through: the profile asks for no digest, or the credentials verify.
    Pass,
    /// Challenge (again): no or unreadable credentials, credentials that do not verify
    /// (`refused` says why), or a nonce gone stale.
    Challenge {
        stale: bool,
        refused: Option<&'static str>,
    },
    /// The device must authenticate but its digest user has no credentials configured: 403.
    NoCredentials,
}

/// Whether the device's security profile enables digest authentication.
pub fn requires_digest(
    cluster: &crate::cluster::Cluster,
    dev: &crate::config::model::Device,
) -> bool {
    dev.security_profile.as_ref().is_some_and(|sp| {
        cluster
            .phone_security_profiles
            .iter()
            .find(|p| &p.name == sp)
            .is_some_and(|p| p.digest_authentication)
    })
}

/// Checks `authorization` (the request's credentials header, if any) for a `method` request
/// (`request`: its [`request_fingerprint`]) from `device`, when the device's security profile enables digest authentication.
/// `now` is Unix seconds (nonces carry it, so that any node can check them).
pub fn check_device(
    cluster: &crate::cluster::Cluster,
    device: &str,
    authorization: Option<&str>,
    method: &str,
    request: u64,
    nonces: &Nonces,
    now: i64,
) -> DeviceCheck {
    let Some(dev) = cluster.device(device) else {
        return DeviceCheck::Pass;
    };
    if !requires_digest(cluster, dev) {
        return DeviceCheck::Pass;
    }
    let challenge = |stale, refused| DeviceCheck::Challenge { stale, refused };
    let Some(auth) = authorization else {
        return challenge(false, None);
    };
    let user = dev.digest_user.as_deref().unwrap_or_default();
    let Some(ha1) = cluster.end_user(user).and_then(|u| u.digest_ha1.clone()) else {
        return DeviceCheck::NoCredentials;
    };
    let Some(params) = parse_authorization(auth) else {
        return challenge(false, None);
    };
    match verify(nonces, &params, method, user, &ha1, request, now) {
        Verdict::Ok => DeviceCheck::Pass,
        Verdict::Stale => challenge(true, None),
        Verdict::Replayed => challenge(true, Some("nonce count used before (a replay)")),
        Verdict::Refused(why) => challenge(false, Some(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ha1;

    #[test]
    fn rfc2617_example_response() {
        // RFC 2617 section 3.5 (HTTP, but the arithmetic is the same).
        let h1 = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert_eq!(h1, "939e7578ed9e3c518a452acee763bce9");
        let ha2 = md5_hex("GET:/dir/index.html");
        let r = md5_hex(&format!(
            "{h1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{ha2}"
        ));
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn nonces_expire_and_cannot_be_forged() {
        let n = Nonces::new([7; 32]);
        let nonce = n.issue(1000);
        assert_eq!(n.check(&nonce, 1010), NonceCheck::Valid);
        assert_eq!(
            n.check(&nonce, 1000 + NONCE_LIFETIME + 1),
            NonceCheck::Stale
        );
        assert_eq!(
            Nonces::new([8; 32]).check(&nonce, 1010),
            NonceCheck::Invalid
        );
        assert_eq!(n.check("3e8.0.00", 1010), NonceCheck::Invalid);
        assert_ne!(n.issue(1000), n.issue(1000), "every nonce is its own");
        assert_eq!(n.check("garbage", 1010), NonceCheck::Invalid);
    }

    #[test]
    fn verify_accepts_the_right_password_only() {
        let n = Nonces::new([1; 32]);
        let nonce = n.issue(50);
        let h1 = ha1("alice", REALM, "s3cret");
        let ha2 = md5_hex("REGISTER:sip:127.0.0.1");
        let resp = md5_hex(&format!("{h1}:{nonce}:00000001:abc:auth:{ha2}"));
        let header = format!(
            "Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1\", response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"abc\""
        );
        let p = parse_authorization(&header).unwrap();
        assert_eq!(verify(&n, &p, "REGISTER", "alice", &h1, 1, 60), Verdict::Ok);
        let wrong = ha1("alice", REALM, "guess");
        assert!(matches!(
            verify(&n, &p, "REGISTER", "alice", &wrong, 1, 60),
            Verdict::Refused(_)
        ));
        assert!(matches!(
            verify(&n, &p, "REGISTER", "bob", &h1, 1, 60),
            Verdict::Refused(_)
        ));
        assert_eq!(
            verify(&n, &p, "REGISTER", "alice", &h1, 1, 50 + NONCE_LIFETIME + 9),
            Verdict::Stale
        );
    }

    fn answer(nonce: &str, nc: &str, cnonce: &str) -> HashMap<String, String> {
        let h1 = ha1("alice", REALM, "s3cret");
        let ha2 = md5_hex("REGISTER:sip:127.0.0.1");
        let resp = md5_hex(&format!("{h1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        parse_authorization(&format!(
            "Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1\", response=\"{resp}\", qop=auth, nc={nc}, cnonce=\"{cnonce}\""
        ))
        .unwrap()
    }

    /// Issue 15: a captured Authorization header (same nonce, nc, cnonce) re-sent with another
    /// Contact registered again within the nonce's 300 s. A count is good once now; only the
    /// very same request (a UDP retransmission) may present it again, within 64*T1.
    #[test]
    fn r15_a_replayed_nonce_count_is_refused() {
        let n = Nonces::new([3; 32]);
        let h1 = ha1("alice", REALM, "s3cret");
        let nonce = n.issue(1000);
        let first = answer(&nonce, "00000001", "abc");
        assert_eq!(
            verify(&n, &first, "REGISTER", "alice", &h1, 7, 1001),
            Verdict::Ok
        );
        // The same request again (a retransmission) is answered as before...
        assert_eq!(
            verify(&n, &first, "REGISTER", "alice", &h1, 7, 1002),
            Verdict::Ok
        );
        // ...but not much later, and another request with that count is a replay.
        assert_eq!(
            verify(
                &n,
                &first,
                "REGISTER",
                "alice",
                &h1,
                7,
                1001 + RETRANSMIT_WINDOW + 1
            ),
            Verdict::Replayed
        );
        assert_eq!(
            verify(&n, &first, "REGISTER", "alice", &h1, 8, 1003),
            Verdict::Replayed
        );
        // The client's next count is fresh; going back is not.
        let second = answer(&nonce, "00000002", "abd");
        assert_eq!(
            verify(&n, &second, "REGISTER", "alice", &h1, 9, 1004),
            Verdict::Ok
        );
        assert_eq!(
            verify(&n, &first, "REGISTER", "alice", &h1, 10, 1005),
            Verdict::Replayed
        );
        // nc must be 8 hex digits; 0 is never a count.
        let bad = answer(&nonce, "3", "abe");
        assert!(matches!(
            verify(&n, &bad, "REGISTER", "alice", &h1, 11, 1006),
            Verdict::Refused(_)
        ));
        let zero = answer(&n.issue(1006), "00000000", "abf");
        assert_eq!(
            verify(&n, &zero, "REGISTER", "alice", &h1, 12, 1006),
            Verdict::Replayed
        );
        // A wrong password spends nothing: the real client's count stays good.
        let third = answer(&nonce, "00000003", "abg");
        let guess = ha1("alice", REALM, "guess");
        assert!(matches!(
            verify(&n, &third, "REGISTER", "alice", &guess, 13, 1007),
            Verdict::Refused(_)
        ));
        assert_eq!(
            verify(&n, &third, "REGISTER", "alice", &h1, 14, 1007),
            Verdict::Ok
        );
    }

    /// Without qop (RFC 2069 style) there is no count: the nonce is good for one request.
    #[test]
    fn r15_a_nonce_without_qop_is_single_use() {
        let n = Nonces::new([4; 32]);
        let h1 = ha1("alice", REALM, "s3cret");
        let nonce = n.issue(2000);
        let ha2 = md5_hex("REGISTER:sip:127.0.0.1");
        let resp = md5_hex(&format!("{h1}:{nonce}:{ha2}"));
        let p = parse_authorization(&format!(
            "Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1\", response=\"{resp}\""
        ))
        .unwrap();
        assert_eq!(
            verify(&n, &p, "REGISTER", "alice", &h1, 1, 2001),
            Verdict::Ok
        );
        assert_eq!(
            verify(&n, &p, "REGISTER", "alice", &h1, 2, 2002),
            Verdict::Replayed
        );
    }

    /// The table is bounded: when it is full of live nonces, every nonce issued so far turns
    /// stale rather than any count being forgotten.
    #[test]
    fn r15_the_nonce_table_is_bounded_and_never_forgets_a_count() {
        let n = Nonces::new([5; 32]);
        for i in 0..MAX_TRACKED_NONCES {
            assert_eq!(
                n.use_count(&format!("n{i}"), 100, Some(1), 1, 100),
                CountCheck::Fresh
            );
        }
        assert_eq!(
            n.use_count("one-more", 100, Some(1), 1, 101),
            CountCheck::Replayed
        );
        assert!(n.used().by_nonce.is_empty());
        let old = n.issue(100);
        assert_eq!(n.check(&old, 102), NonceCheck::Stale);
        assert_eq!(n.check(&n.issue(102), 102), NonceCheck::Valid);
        // Expired entries make room on their own.
        let m = Nonces::new([6; 32]);
        for i in 0..MAX_TRACKED_NONCES {
            m.use_count(&format!("n{i}"), 100, Some(1), 1, 100);
        }
        assert_eq!(
            m.use_count("later", 500, Some(1), 1, 500),
            CountCheck::Fresh,
            "the old entries expired"
        );
        assert_eq!(m.used().by_nonce.len(), 1);
    }
}
