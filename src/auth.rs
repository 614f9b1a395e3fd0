//! Secrets: passwords and PINs are kept only as argon2id hashes in PHC string format; SIP
//! digest credentials only as their HA1.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Hashes a secret with argon2id and a fresh random salt.
pub fn hash_secret(secret: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    match Argon2::default().hash_password(secret.as_bytes(), &salt) {
        Ok(h) => h.to_string(),
        // Only reachable with invalid parameters, which the defaults are not; fail closed.
        Err(_) => String::from("$invalid$"),
    }
}

/// Verifies a secret against a stored hash; a malformed hash never verifies.
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Unified CM's default SIP realm: the realm of every digest HA1 the cluster keeps.
pub const REALM: &str = "ccmsipline";

/// HA1 = MD5(user:realm:password): what SIP digest verification needs, kept instead of the
/// password.
pub fn ha1(user: &str, realm: &str, password: &str) -> String {
    use md5::{Digest as _, Md5};
    hex::encode(Md5::digest(format!("{user}:{realm}:{password}").as_bytes()))
}

/// True when `s` is an argon2 hash in PHC format.
pub fn is_password_hash(s: &str) -> bool {
    PasswordHash::new(s).is_ok_and(|h| h.algorithm.as_str().starts_with("argon2"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_secret("cisco");
        assert!(h.starts_with("$argon2id$"));
        assert!(is_password_hash(&h));
        assert!(verify_secret("cisco", &h));
        assert!(!verify_secret("Cisco", &h));
        assert!(!verify_secret("cisco", "not a hash"));
        assert!(!is_password_hash("$1$abc$def"));
        assert_ne!(hash_secret("cisco"), h, "salts differ");
    }
}

/// Remembers recent successful secret checks so that an API client sending the same
/// credentials on every request (the EM API, WebDialer SOAP) costs one argon2 verification, not
/// one per request. Entries are keyed by user and bound to the stored hash, so a changed
/// password or PIN never matches an old entry; what is kept is a keyed SHA-256 of the secret
/// (with a per-process random key), never the secret.
pub struct VerifiedCache {
    key: [u8; 32],
    ttl: std::time::Duration,
    entries: std::sync::Mutex<std::collections::HashMap<String, ([u8; 32], std::time::Instant)>>,
}

/// Entries kept before the cache starts over (bounds memory under a flood of distinct users).
const VERIFIED_CACHE_MAX: usize = 100_000;

impl VerifiedCache {
    pub fn new(ttl: std::time::Duration) -> VerifiedCache {
        VerifiedCache {
            key: rand::random(),
            ttl,
            entries: Default::default(),
        }
    }

    fn fingerprint(&self, secret: &str, hash: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.key);
        h.update((hash.len() as u64).to_be_bytes());
        h.update(hash.as_bytes());
        h.update(secret.as_bytes());
        h.finalize().into()
    }

    /// Verifies `secret` against `hash` for `user`, from the cache when it can.
    pub fn verify(&self, user: &str, secret: &str, hash: &str) -> bool {
        let fp = self.fingerprint(secret, hash);
        let now = std::time::Instant::now();
        {
            let g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((cached, at)) = g.get(user) {
                if now.duration_since(*at) < self.ttl && constant_eq(cached, &fp) {
                    return true;
                }
            }
        }
        if !verify_secret(secret, hash) {
            return false;
        }
        let mut g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= VERIFIED_CACHE_MAX {
            g.clear();
        }
        g.insert(user.to_string(), (fp, now));
        true
    }

    /// Forgets a user (after a failed check, so a lockout is never bypassed by the cache).
    pub fn forget(&self, user: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user);
    }
}

fn constant_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn cache_answers_only_for_the_same_secret_and_hash() {
        let c = VerifiedCache::new(std::time::Duration::from_secs(60));
        let h = hash_secret("cisco");
        assert!(c.verify("u", "cisco", &h));
        assert!(c.verify("u", "cisco", &h), "from the cache");
        assert!(
            !c.verify("u", "Cisco", &h),
            "a wrong secret is checked, not cached"
        );
        let h2 = hash_secret("new");
        assert!(
            !c.verify("u", "cisco", &h2),
            "a changed hash is not matched"
        );
        let c0 = VerifiedCache::new(std::time::Duration::ZERO);
        assert!(c0.verify("u", "cisco", &h));
        assert!(!c0.verify("u", "x", &h));
    }
}
