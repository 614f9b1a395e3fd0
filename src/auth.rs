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

/// Most memory one verification may use, in KiB (argon2's `m`): a stored hash asking for more
/// never verifies (the default, argon2id's recommended 19 MiB, is far below).
pub const MAX_VERIFY_MEMORY_KIB: u32 = 65_536;

/// Verifies a secret like [`verify_secret`], with argon2's working memory in `blocks` (grown
/// to the hash's `m` once, then reused): a thread that verifies many secrets holds one block
/// array instead of leaving a freed 19 MiB allocation behind per call. A hash asking for more
/// than [`MAX_VERIFY_MEMORY_KIB`] never verifies.
pub fn verify_secret_in(secret: &str, hash: &str, blocks: &mut Vec<argon2::Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = argon2::Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(argon2::Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = argon2::Params::try_from(&parsed) else {
        return false;
    };
    if params.m_cost() > MAX_VERIFY_MEMORY_KIB {
        tracing::warn!(
            m_cost = params.m_cost(),
            "a stored hash asks for more memory than a verification may use; refused"
        );
        return false;
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let need = params.block_count();
    if blocks.len() < need {
        blocks.resize(need, argon2::Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let done = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        secret.as_bytes(),
        salt,
        &mut out,
        &mut blocks[..need],
    );
    // Constant time: `Output`'s comparison is.
    done.is_ok()
        && argon2::password_hash::Output::new(&out).is_ok_and(|computed| computed == expected)
}

/// Unified CM's default SIP realm: the realm of every digest HA1 the cluster keeps.
pub const REALM: &str = "ccmsipline";

/// HA1 = MD5(user:realm:password): what SIP digest verification needs, kept instead of the
/// password.
pub fn ha1(user: &str, realm: &str, password: &str) -> String {
    use md5::{Digest as _, Md5};
    hex::encode(Md5::digest(format!("{user}:{realm}:{password}").as_bytes()))
}

/// True when `s` is an argon2 hash in PHC format whose parameters a verification accepts
/// (at most [`MAX_VERIFY_MEMORY_KIB`] of memory).
pub fn is_password_hash(s: &str) -> bool {
    PasswordHash::new(s).is_ok_and(|h| {
        h.algorithm.as_str().starts_with("argon2")
            && argon2::Params::try_from(&h).is_ok_and(|p| p.m_cost() <= MAX_VERIFY_MEMORY_KIB)
    })
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

    #[test]
    fn r15_verifying_in_reused_memory_agrees_with_the_library() {
        let mut blocks = Vec::new();
        let h = hash_secret("cisco");
        assert!(verify_secret_in("cisco", &h, &mut blocks));
        let used = blocks.len();
        assert_eq!(
            used,
            19 * 1024,
            "argon2id's default 19 MiB, in 1 KiB blocks"
        );
        assert!(!verify_secret_in("Cisco", &h, &mut blocks));
        assert!(!verify_secret_in("cisco", "not a hash", &mut blocks));
        assert_eq!(blocks.len(), used, "reused, not grown");
        // Other parameters and argon2i/argon2d hashes verify the same way.
        let params = argon2::Params::new(8 * 1024, 3, 1, None).unwrap();
        for alg in [argon2::Algorithm::Argon2i, argon2::Algorithm::Argon2d] {
            let salt = SaltString::generate(&mut OsRng);
            let h2 = Argon2::new(alg, argon2::Version::V0x13, params.clone())
                .hash_password(b"pin", &salt)
                .unwrap()
                .to_string();
            assert!(verify_secret_in("pin", &h2, &mut blocks), "{h2}");
            assert!(!verify_secret_in("pim", &h2, &mut blocks));
        }
        // More memory than a verification may use: never verifies.
        let big = argon2::Params::new(MAX_VERIFY_MEMORY_KIB + 8, 1, 1, None).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        let h3 = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, big)
            .hash_password(b"x", &salt)
            .unwrap()
            .to_string();
        assert!(!verify_secret_in("x", &h3, &mut blocks));
        assert!(
            !is_password_hash(&h3),
            "refused by the definition's validation too"
        );
        assert!(is_password_hash(&h));
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

    /// Whether `secret` for `user` matches a recent successful check (no argon2 run).
    pub fn hit(&self, user: &str, secret: &str, hash: &str) -> bool {
        let fp = self.fingerprint(secret, hash);
        let g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        g.get(user)
            .is_some_and(|(cached, at)| at.elapsed() < self.ttl && constant_eq(cached, &fp))
    }

    /// Remembers a successful check made elsewhere.
    pub fn insert(&self, user: &str, secret: &str, hash: &str) {
        let fp = self.fingerprint(secret, hash);
        let mut g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= VERIFIED_CACHE_MAX {
            g.clear();
        }
        g.insert(user.to_string(), (fp, std::time::Instant::now()));
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

/// A hash nobody's secret matches, with the same parameters as real ones: checking a secret
/// for an unknown user (or one without a password) against it costs what a real check costs,
/// so the answer's timing does not tell which user IDs exist.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_secret(&hex::encode(rand::random::<[u8; 32]>())))
}

/// How long a wrong secret from one source is remembered ([`FailureCache`]).
pub const FAILURE_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// Wrong secrets remembered before the cache starts over (bounds memory under a flood).
pub const FAILURE_CACHE_MAX: usize = 100_000;

/// Recent wrong secrets per source: the same wrong password sent again from the same address
/// (a misconfigured application retrying, or a flood of one guess) is answered from here
/// without another argon2 verification and without counting again. Keyed by a keyed SHA-256
/// of source, credential, secret and stored hash (per-process random key): the secret is
/// never kept, and a changed hash never matches.
pub struct FailureCache {
    key: [u8; 32],
    ttl: std::time::Duration,
    entries: std::sync::Mutex<std::collections::HashMap<[u8; 32], std::time::Instant>>,
}

impl FailureCache {
    pub fn new(ttl: std::time::Duration) -> FailureCache {
        FailureCache {
            key: rand::random(),
            ttl,
            entries: Default::default(),
        }
    }

    fn fingerprint(
        &self,
        source: std::net::IpAddr,
        credential: &str,
        secret: &str,
        hash: &str,
    ) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.key);
        for part in [source.to_string().as_str(), credential, hash, secret] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    /// Whether this exact wrong secret came from `source` for `credential` within the TTL.
    pub fn seen(
        &self,
        source: std::net::IpAddr,
        credential: &str,
        secret: &str,
        hash: &str,
        now: std::time::Instant,
    ) -> bool {
        let fp = self.fingerprint(source, credential, secret, hash);
        let g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        g.get(&fp)
            .is_some_and(|at| now.saturating_duration_since(*at) < self.ttl)
    }

    /// Remembers a wrong secret.
    pub fn remember(
        &self,
        source: std::net::IpAddr,
        credential: &str,
        secret: &str,
        hash: &str,
        now: std::time::Instant,
    ) {
        let fp = self.fingerprint(source, credential, secret, hash);
        let mut g = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= FAILURE_CACHE_MAX {
            let ttl = self.ttl;
            g.retain(|_, at| now.saturating_duration_since(*at) < ttl);
            if g.len() >= FAILURE_CACHE_MAX {
                g.clear();
            }
        }
        g.insert(fp, now);
    }
}

/// Failed checks of one account a source may make before it is slowed down
/// ([`SourceThrottle`]): below the default account lockout threshold (5), so one anonymous
/// source cannot lock an account at full speed.
pub const SOURCE_FREE_FAILURES: u32 = 3;
/// The first wait imposed on a source past its free failures; each further failure doubles it.
pub const SOURCE_BACKOFF_START: std::time::Duration = std::time::Duration::from_secs(10);
/// The longest wait imposed on a source.
pub const SOURCE_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(900);
/// A source with no failure for this long starts afresh.
pub const SOURCE_FORGET_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);
/// Source and account pairs tracked at once (bounds memory; past it the quietest are dropped).
pub const SOURCE_TRACKED_MAX: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct SourceState {
    /// Failures (and checks still in progress, which count until they succeed).
    failures: u32,
    last: std::time::Instant,
}

/// Per-source throttle for secret checks, kept per source address and account (credential),
/// as a state machine over `now` (no clock inside). Every check is reserved before it runs
/// (so parallel guesses are counted, not raced past): the first [`SOURCE_FREE_FAILURES`] go
/// straight through; after that the source waits [`SOURCE_BACKOFF_START`], doubling with each
/// further failure up to [`SOURCE_BACKOFF_MAX`], between checks of that account, and a check
/// asked for sooner is refused unchecked and uncounted (by the account too). A success starts
/// the pair afresh. Keyed by account as well as address so that one user's typos behind a
/// shared address (NAT) do not slow down the others there.
#[derive(Default)]
pub struct SourceThrottle {
    sources: std::sync::Mutex<std::collections::HashMap<(std::net::IpAddr, String), SourceState>>,
}

impl SourceThrottle {
    /// The wait a source with `failures` failures owes after its last one.
    pub fn backoff(failures: u32) -> std::time::Duration {
        if failures < SOURCE_FREE_FAILURES {
            return std::time::Duration::ZERO;
        }
        let doublings = (failures - SOURCE_FREE_FAILURES).min(16);
        SOURCE_BACKOFF_START
            .saturating_mul(1u32 << doublings)
            .min(SOURCE_BACKOFF_MAX)
    }

    /// Reserves one check of `credential` for `source` at `now`: `Ok` (counted as a failure
    /// until [`SourceThrottle::succeeded`]) or `Err(wait)` when the source must wait that long.
    pub fn reserve(
        &self,
        source: std::net::IpAddr,
        credential: &str,
        now: std::time::Instant,
    ) -> Result<(), std::time::Duration> {
        let key = (source, credential.to_string());
        let mut g = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= SOURCE_TRACKED_MAX && !g.contains_key(&key) {
            g.retain(|_, s| now.saturating_duration_since(s.last) < SOURCE_FORGET_AFTER);
            if g.len() >= SOURCE_TRACKED_MAX {
                // Still full of active sources: drop the quietest half rather than grow.
                let mut lasts: Vec<std::time::Instant> = g.values().map(|s| s.last).collect();
                lasts.sort();
                let cut = lasts[lasts.len() / 2];
                g.retain(|_, s| s.last > cut);
            }
        }
        let s = g.entry(key).or_insert(SourceState {
            failures: 0,
            last: now,
        });
        if now.saturating_duration_since(s.last) >= SOURCE_FORGET_AFTER {
            s.failures = 0;
        }
        let due = s.last + Self::backoff(s.failures);
        if now < due {
            return Err(due - now);
        }
        s.failures += 1;
        s.last = now;
        Ok(())
    }

    /// Gives back a reservation whose check never ran (the node was busy).
    pub fn release(&self, source: std::net::IpAddr, credential: &str) {
        let mut g = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = g.get_mut(&(source, credential.to_string())) {
            s.failures = s.failures.saturating_sub(1);
        }
    }

    /// A check of `credential` from `source` succeeded: the pair starts afresh.
    pub fn succeeded(&self, source: std::net::IpAddr, credential: &str) {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(source, credential.to_string()));
    }

    /// Forgets every source's failures of `credential` (its lockout was ended): returns how
    /// many sources were waiting on it.
    pub fn forget_credential(&self, credential: &str) -> usize {
        let mut g = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let before = g.len();
        g.retain(|(_, c), _| c != credential);
        before - g.len()
    }
}

/// How long a check waits for a free verification slot before it is refused as busy.
pub const VERIFY_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Checks that may wait for a slot, per slot; past it a check is refused at once.
pub const VERIFY_QUEUE_PER_SLOT: usize = 32;

/// A verification handed to the gate's threads.
type VerifyJob = (String, String, tokio::sync::oneshot::Sender<bool>);

/// Bounds the argon2 verifications running at once (each holds about 19 MiB): `slots` of them
/// (one per core), at most `slots * VERIFY_QUEUE_PER_SLOT` waiting up to
/// [`VERIFY_QUEUE_WAIT`]; the rest are refused and answered "busy" by the protocol. The
/// verifications run on the gate's own `slots` threads, not on tokio's blocking pool (up to
/// 512 threads): the allocator keeps a freed 19 MiB block per thread that used one, so
/// memory stays bounded by the slots, not by how many threads ever verified.
/// Counts what it did, so tests and `/metrics` can see the bound held.
pub struct VerifyGate {
    slots: std::sync::Arc<tokio::sync::Semaphore>,
    jobs: std::sync::Mutex<std::sync::mpsc::Sender<VerifyJob>>,
    size: usize,
    waiting: std::sync::atomic::AtomicUsize,
    running: std::sync::atomic::AtomicUsize,
    /// The most verifications ever running at once.
    pub high_water: std::sync::atomic::AtomicUsize,
    /// Verifications run.
    pub verified: std::sync::atomic::AtomicU64,
    /// Checks refused because every slot was taken and the queue full or too slow.
    pub refused_busy: std::sync::atomic::AtomicU64,
}

/// A verification slot; the verification runs while it is held.
pub struct VerifySlot<'a> {
    gate: &'a VerifyGate,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl VerifySlot<'_> {
    /// Verifies `secret` against `hash` (argon2, off the async workers) in this slot.
    pub async fn verify(&self, secret: &str, hash: &str) -> bool {
        self.gate
            .verified
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self
            .gate
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((secret.to_string(), hash.to_string(), tx));
        // A gate without threads (they cannot have ended) verifies nothing: fail closed.
        sent.is_ok() && rx.await.unwrap_or(false)
    }
}

impl Drop for VerifySlot<'_> {
    fn drop(&mut self) {
        self.gate
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl VerifyGate {
    /// A gate with one slot per available core (at least one).
    pub fn for_cores() -> VerifyGate {
        VerifyGate::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    pub fn new(slots: usize) -> VerifyGate {
        let size = slots.max(1);
        let (tx, rx) = std::sync::mpsc::channel::<VerifyJob>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..size {
            let rx = rx.clone();
            // The threads end when the gate (the sender) is dropped.
            let spawned = std::thread::Builder::new()
                .name(format!("verify-{i}"))
                .spawn(move || {
                    // This thread's argon2 memory, allocated once and reused.
                    let mut blocks = Vec::new();
                    loop {
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok((secret, hash, reply)) = job else {
                            return;
                        };
                        let _ = reply.send(verify_secret_in(&secret, &hash, &mut blocks));
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "starting a password verification thread failed");
            }
        }
        VerifyGate {
            slots: std::sync::Arc::new(tokio::sync::Semaphore::new(size)),
            jobs: std::sync::Mutex::new(tx),
            size,
            waiting: Default::default(),
            running: Default::default(),
            high_water: Default::default(),
            verified: Default::default(),
            refused_busy: Default::default(),
        }
    }

    /// The number of verifications that may run at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Waits (briefly, and only if few others wait) for a slot; `None`: busy.
    pub async fn acquire(&self) -> Option<VerifySlot<'_>> {
        use std::sync::atomic::Ordering;
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let n = self.waiting.fetch_add(1, Ordering::AcqRel);
                let got = if n < self.size * VERIFY_QUEUE_PER_SLOT {
                    tokio::time::timeout(VERIFY_QUEUE_WAIT, self.slots.clone().acquire_owned())
                        .await
                        .ok()
                        .and_then(Result::ok)
                } else {
                    None
                };
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                match got {
                    Some(p) => p,
                    None => {
                        self.refused_busy.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                }
            }
        };
        let now = self.running.fetch_add(1, Ordering::AcqRel) + 1;
        self.high_water.fetch_max(now, Ordering::AcqRel);
        Some(VerifySlot {
            gate: self,
            _permit: permit,
        })
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use std::net::IpAddr;
    use std::time::{Duration, Instant};

    #[test]
    fn r15_a_source_is_slowed_down_before_an_account_locks() {
        let t = SourceThrottle::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let u = "password:emproxy";
        let t0 = Instant::now();
        // Parallel checks are reserved one by one: the free ones pass, the next is refused.
        for _ in 0..SOURCE_FREE_FAILURES {
            assert!(t.reserve(a, u, t0).is_ok());
        }
        assert_eq!(t.reserve(a, u, t0), Err(SOURCE_BACKOFF_START));
        // Another source, or another account from the same source, is not affected.
        assert!(t.reserve(b, u, t0).is_ok());
        assert!(t.reserve(a, "password:jsmith", t0).is_ok());
        // After the wait one more check; then the wait doubles.
        assert_eq!(
            t.reserve(a, u, t0 + Duration::from_secs(4)),
            Err(Duration::from_secs(6))
        );
        let t1 = t0 + SOURCE_BACKOFF_START;
        assert!(t.reserve(a, u, t1).is_ok());
        assert_eq!(t.reserve(a, u, t1), Err(SOURCE_BACKOFF_START * 2));
        // The wait is capped.
        assert_eq!(SourceThrottle::backoff(40), SOURCE_BACKOFF_MAX);
        // A success starts the pair afresh; so does a long quiet time; a check that never
        // ran is given back.
        t.succeeded(a, u);
        assert!(t.reserve(a, u, t1).is_ok());
        for _ in 0..SOURCE_FREE_FAILURES {
            let _ = t.reserve(b, u, t0);
        }
        assert!(t.reserve(b, u, t0).is_err());
        t.release(b, u);
        assert!(t.reserve(b, u, t0).is_ok());
        assert!(t.reserve(b, u, t0).is_err());
        assert!(t.reserve(b, u, t0 + SOURCE_FORGET_AFTER).is_ok());
    }

    #[test]
    fn r15_a_repeated_wrong_secret_is_remembered_per_source() {
        let c = FailureCache::new(Duration::from_secs(60));
        let h = dummy_hash();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        assert!(!c.seen(a, "password:u", "x", h, t0));
        c.remember(a, "password:u", "x", h, t0);
        assert!(c.seen(a, "password:u", "x", h, t0));
        assert!(!c.seen(b, "password:u", "x", h, t0), "another source");
        assert!(!c.seen(a, "password:u", "y", h, t0), "another secret");
        assert!(!c.seen(a, "password:v", "x", h, t0), "another user");
        assert!(
            !c.seen(a, "password:u", "x", "$other", t0),
            "a changed hash"
        );
        assert!(!c.seen(a, "password:u", "x", h, t0 + Duration::from_secs(60)));
        assert!(!verify_secret("", dummy_hash()));
        assert!(is_password_hash(dummy_hash()));
    }

    #[tokio::test]
    async fn r15_verifications_never_exceed_the_gate() {
        let gate = std::sync::Arc::new(VerifyGate::new(2));
        let hash = hash_secret("right");
        let mut set = tokio::task::JoinSet::new();
        for i in 0..40 {
            let (g, h) = (gate.clone(), hash.clone());
            set.spawn(async move {
                let slot = g.acquire().await?;
                Some(slot.verify(&format!("w{i}"), &h).await)
            });
        }
        let mut answered = 0;
        while let Some(r) = set.join_next().await {
            if r.unwrap().is_some() {
                answered += 1;
            }
        }
        use std::sync::atomic::Ordering;
        assert!(gate.high_water.load(Ordering::Relaxed) <= 2);
        assert_eq!(
            answered as u64 + gate.refused_busy.load(Ordering::Relaxed),
            40
        );
        assert!(answered >= 2);
        assert_eq!(gate.verified.load(Ordering::Relaxed), answered as u64);
    }
}

/// What a node keeps to bound the work strangers can cause with secret checks.
pub struct SecretGuards {
    /// Wrong secrets recently sent, per source.
    pub failures: FailureCache,
    /// Per-source throttle with backoff.
    pub sources: SourceThrottle,
    /// Bound on argon2 verifications running at once.
    pub gate: VerifyGate,
    /// Unix seconds of the last pruning of stale failure records (one per minute per node).
    pub last_prune: std::sync::atomic::AtomicI64,
}

impl Default for SecretGuards {
    fn default() -> Self {
        // Made now (about 20 ms, at start) rather than by the first stranger's request.
        let _ = dummy_hash();
        SecretGuards {
            failures: FailureCache::new(FAILURE_CACHE_TTL),
            sources: SourceThrottle::default(),
            gate: VerifyGate::for_cores(),
            last_prune: Default::default(),
        }
    }
}
