//! Secrets: passwords and PINs are kept only as argon2id hashes in PHC string format.

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
