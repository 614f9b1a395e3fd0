//! SIP digest authentication (RFC 3261 22.4 with RFC 2617 MD5 and qop=auth), as Unified CM
//! uses it for phones whose security profile enables digest authentication.
//!
//! Nonces are stateless: the issue time and a SHA-256 tag over it with a per-node secret, so
//! any nonce this node issued can be checked without a table, and expires after
//! [`NONCE_LIFETIME`] (the phone then retries with the fresh one of a `stale=true` challenge).

use std::collections::HashMap;

use md5::{Digest as _, Md5};
use sha2::Sha256;

use crate::auth::REALM;

/// How long a nonce is accepted, in seconds.
pub const NONCE_LIFETIME: i64 = 300;

fn md5_hex(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

/// Issues and checks nonces with a secret that lives as long as the node.
pub struct Nonces {
    secret: [u8; 32],
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
        Nonces { secret }
    }

    fn tag(&self, issued: i64) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(issued.to_be_bytes());
        hex::encode(&h.finalize()[..12])
    }

    pub fn issue(&self, now: i64) -> String {
        format!("{issued:x}.{}", self.tag(now), issued = now)
    }

    pub fn check(&self, nonce: &str, now: i64) -> NonceCheck {
        let Some((t, tag)) = nonce.split_once('.') else {
            return NonceCheck::Invalid;
        };
        let Ok(issued) = i64::from_str_radix(t, 16) else {
            return NonceCheck::Invalid;
        };
        if !constant_time_eq(tag.as_bytes(), self.tag(issued).as_bytes()) {
            return NonceCheck::Invalid;
        }
        if now - issued > NONCE_LIFETIME || issued > now + 5 {
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
    Refused(&'static str),
}

/// Checks an Authorization header for `method` against the user's HA1.
pub fn verify(
    nonces: &Nonces,
    params: &HashMap<String, String>,
    method: &str,
    expected_user: &str,
    ha1: &str,
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
    let expected = match get("qop") {
        Some(q) if q.eq_ignore_ascii_case("auth") => {
            let (Some(nc), Some(cnonce)) = (get("nc"), get("cnonce")) else {
                return Verdict::Refused("qop=auth without nc or cnonce");
            };
            md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
        }
        Some(_) => return Verdict::Refused("unsupported qop"),
        None => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
    };
    if constant_time_eq(
        expected.as_bytes(),
        response.to_ascii_lowercase().as_bytes(),
    ) {
        Verdict::Ok
    } else {
        Verdict::Refused("wrong response (bad password)")
    }
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
/// from `device`, when the device's security profile enables digest authentication.
/// `now` is Unix seconds (nonces carry it, so that any node can check them).
pub fn check_device(
    cluster: &crate::cluster::Cluster,
    device: &str,
    authorization: Option<&str>,
    method: &str,
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
    match verify(nonces, &params, method, user, &ha1, now) {
        Verdict::Ok => DeviceCheck::Pass,
        Verdict::Stale => challenge(true, None),
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
        assert_eq!(n.check("3e8.00", 1010), NonceCheck::Invalid);
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
        assert_eq!(verify(&n, &p, "REGISTER", "alice", &h1, 60), Verdict::Ok);
        let wrong = ha1("alice", REALM, "guess");
        assert!(matches!(
            verify(&n, &p, "REGISTER", "alice", &wrong, 60),
            Verdict::Refused(_)
        ));
        assert!(matches!(
            verify(&n, &p, "REGISTER", "bob", &h1, 60),
            Verdict::Refused(_)
        ));
        assert_eq!(
            verify(&n, &p, "REGISTER", "alice", &h1, 50 + NONCE_LIFETIME + 9),
            Verdict::Stale
        );
    }
}
