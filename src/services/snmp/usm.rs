//! SNMPv3 with the User-based Security Model (RFC 3412 message processing, RFC 3414 USM),
//! without I/O: one message in, at most one message out.
//!
//! - Authentication: HMAC-SHA-96 (usmHMACSHAAuthProtocol, RFC 3414 7) and HMAC-SHA-256-192
//!   (usmHMAC192SHA256AuthProtocol, RFC 7860). Keys are localised to this engine's ID once,
//!   when the `snmp` section is read (RFC 3414 A.2); passwords are not kept.
//! - Privacy: AES-128 in CFB-128 mode (usmAesCfb128Protocol, RFC 3826). CFB is built here on
//!   the `aes` crate's block cipher (a few lines: RFC 3826 3.1.3/3.1.4); the IV is
//!   engineBoots ‖ engineTime ‖ a 64-bit salt that counts up from a random start.
//! - Engine ID (RFC 3411 SnmpEngineID, format 5 "octets"): 0x80000009 (Cisco's enterprise
//!   number, as a Unified CM node's agent uses) then 0x05 then 12 bytes of
//!   SHA-256("ucm-snmp-engine" ‖ cluster id ‖ "/" ‖ node name): stable per node, different
//!   between nodes and clusters.
//! - engineBoots is derived, not persisted: the seconds from 2024-01-01 UTC to the node's
//!   start, so it grows with every restart while the clock does (two starts within one
//!   second share it; a clock set back makes it smaller, which managers see as a time-window
//!   failure and rediscover). engineTime is the seconds since the start.
//! - Errors as RFC 3414 3.2 orders them, each counted (usmStats*) and answered with a Report
//!   when the request is reportable: unknown engine ID (discovery), unknown user, unsupported
//!   security level, wrong digest, not in time window (this one authenticated, so the manager
//!   can trust the time it carries), decryption error.
//! - No VACM: every user reads the whole view, at no lower level than configured for it (a
//!   request below it gets authorizationError).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use hmac::{Hmac, Mac};
use rasn::types::{Integer, ObjectIdentifier, OctetString};
use rasn_smi::v2::{ApplicationSyntax, ObjectSyntax};
use rasn_snmp::v2::{Pdu, Pdus, Report, Response, VarBind, VarBindValue};
use rasn_snmp::v3::{HeaderData, Message, ScopedPdu, ScopedPduData, USMSecurityParameters};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::agent::{fit, process, Answer, Dropped};
use super::mib::View;
use super::model::{AuthProtocol, V3User};

/// The user-based security model's counters (usmStats, 1.3.6.1.6.3.15.1.1.N.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsmError {
    UnsupportedSecLevels = 1,
    NotInTimeWindows = 2,
    UnknownUserNames = 3,
    UnknownEngineIds = 4,
    WrongDigests = 5,
    DecryptionErrors = 6,
}

impl UsmError {
    pub fn as_str(self) -> &'static str {
        match self {
            UsmError::UnsupportedSecLevels => "SNMPv3: unsupported security level",
            UsmError::NotInTimeWindows => "SNMPv3: not in time window",
            UsmError::UnknownUserNames => "SNMPv3: unknown user name",
            UsmError::UnknownEngineIds => "SNMPv3: unknown engine ID (discovery)",
            UsmError::WrongDigests => "SNMPv3: wrong digest",
            UsmError::DecryptionErrors => "SNMPv3: decryption error",
        }
    }
}

/// RFC 3414 3.2 step 7: the time window, in seconds.
pub const TIME_WINDOW: u32 = 150;
/// The largest engineBoots; at it the engine is latched and nothing authenticates.
pub const MAX_BOOTS: u32 = 2_147_483_647;
/// 2024-01-01T00:00:00Z, the origin of the derived engineBoots.
const BOOTS_EPOCH: u64 = 1_704_067_200;
/// RFC 3412 6.3: the largest message this engine accepts (its receive buffer).
const OUR_MAX_SIZE: i32 = super::model::MAX_REQUEST_SIZE as i32;
const REPORTABLE: u8 = 4;

/// The engine ID of `node` in `cluster`.
pub fn engine_id(cluster: &str, node: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"ucm-snmp-engine");
    h.update(cluster.as_bytes());
    h.update(b"/");
    h.update(node.as_bytes());
    let mut id = vec![0x80, 0x00, 0x00, 0x09, 0x05];
    id.extend_from_slice(&h.finalize()[..12]);
    id
}

/// engineBoots for a node started at `unix_secs`.
pub fn boots_at(unix_secs: u64) -> u32 {
    unix_secs
        .saturating_sub(BOOTS_EPOCH)
        .clamp(1, u64::from(MAX_BOOTS)) as u32
}

/// RFC 3414 A.2: the password stretched to 1 MiB, hashed (Ku), then localised
/// Kul = H(Ku ‖ engineID ‖ Ku).
pub fn localize(proto: AuthProtocol, password: &[u8], engine: &[u8]) -> Vec<u8> {
    fn run<D: Digest>(password: &[u8], engine: &[u8]) -> Vec<u8> {
        let mut h = D::new();
        let mut block = [0u8; 64];
        let mut at = 0usize;
        for _ in 0..(1_048_576 / 64) {
            for b in block.iter_mut() {
                *b = password[at % password.len()];
                at += 1;
            }
            h.update(block);
        }
        let ku = h.finalize();
        let mut h = D::new();
        h.update(&ku);
        h.update(engine);
        h.update(&ku);
        h.finalize().to_vec()
    }
    if password.is_empty() {
        return Vec::new();
    }
    match proto {
        AuthProtocol::Sha => run::<Sha1>(password, engine),
        AuthProtocol::Sha256 => run::<Sha256>(password, engine),
    }
}

/// The length of the message digest on the wire (msgAuthenticationParameters).
fn mac_len(proto: AuthProtocol) -> usize {
    match proto {
        AuthProtocol::Sha => 12,
        AuthProtocol::Sha256 => 24,
    }
}

fn mac(proto: AuthProtocol, key: &[u8], msg: &[u8]) -> Vec<u8> {
    let full = match proto {
        AuthProtocol::Sha => {
            let mut m = <Hmac<Sha1> as Mac>::new_from_slice(key).expect("HMAC takes any key");
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        AuthProtocol::Sha256 => {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
    };
    full[..mac_len(proto)].to_vec()
}

/// AES-128-CFB (RFC 3826 3.1.3, 3.1.4) of `data` in place.
pub fn aes_cfb(key: &[u8; 16], iv: [u8; 16], data: &mut [u8], encrypt: bool) {
    let cipher = aes::Aes128::new(key.into());
    let mut prev = iv;
    for chunk in data.chunks_mut(16) {
        let mut block = prev.into();
        cipher.encrypt_block(&mut block);
        let stream: [u8; 16] = block.into();
        let mut next = [0u8; 16];
        for (i, b) in chunk.iter_mut().enumerate() {
            let given = *b;
            *b ^= stream[i];
            // The feedback is the ciphertext: the output when encrypting, the input when not.
            next[i] = if encrypt { *b } else { given };
        }
        prev = next;
    }
}

fn iv(boots: u32, time: u32, salt: &[u8; 8]) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..4].copy_from_slice(&boots.to_be_bytes());
    iv[4..8].copy_from_slice(&time.to_be_bytes());
    iv[8..].copy_from_slice(salt);
    iv
}

/// A configured user with its localised keys.
struct User {
    name: Vec<u8>,
    auth: Option<(AuthProtocol, Vec<u8>)>,
    privacy: Option<[u8; 16]>,
}

/// This node's SNMP engine: its ID, boots and users, and the USM counters.
pub struct Usm {
    pub engine_id: Vec<u8>,
    pub boots: u32,
    users: Vec<User>,
    salt: AtomicU64,
    stats: [AtomicU32; 6],
}

impl Usm {
    /// The engine with `users`' keys localised to `engine_id`.
    pub fn new(engine_id: Vec<u8>, boots: u32, users: &[V3User]) -> Usm {
        let users = users
            .iter()
            .map(|u| {
                let auth = u.auth.as_ref().map(|a| {
                    (
                        a.protocol,
                        localize(a.protocol, a.password.as_bytes(), &engine_id),
                    )
                });
                // RFC 3826 3.1.2.1: the privacy key is localised with the auth protocol's
                // hash; AES-128 takes its first 16 bytes.
                let privacy = match (&u.privacy, &u.auth) {
                    (Some(x), Some(a)) => {
                        let k = localize(a.protocol, x.password.as_bytes(), &engine_id);
                        let mut key = [0u8; 16];
                        key.copy_from_slice(&k[..16]);
                        Some(key)
                    }
                    _ => None,
                };
                User {
                    name: u.name.as_bytes().to_vec(),
                    auth,
                    privacy,
                }
            })
            .collect();
        Usm {
            engine_id,
            boots,
            users,
            salt: AtomicU64::new(rand::random()),
            stats: Default::default(),
        }
    }

    /// The count of `e` so far.
    pub fn stat(&self, e: UsmError) -> u32 {
        self.stats[e as usize - 1].load(Ordering::Relaxed)
    }

    fn count(&self, e: UsmError) -> u32 {
        self.stats[e as usize - 1].fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Answers an SNMPv3 `request` at engine time `time` (seconds since the start).
    pub fn answer(
        &self,
        request: &[u8],
        view: &View,
        max_size: usize,
        time: u32,
    ) -> Result<Answer, V3Dropped> {
        let msg: Message = rasn::ber::decode(request).map_err(|_| Dropped::Malformed)?;
        if msg.version != Integer::from(3) {
            return Err(Dropped::Version.into());
        }
        let flags = match msg.global_data.flags.as_ref() {
            [f] => *f,
            _ => return Err(Dropped::Malformed.into()),
        };
        let (auth, privacy) = (flags & 1 != 0, flags & 2 != 0);
        // RFC 3412 7.2 step 5: priv without auth is invalid; only USM (3) is served.
        if privacy && !auth || msg.global_data.security_model != Integer::from(3) {
            return Err(Dropped::Malformed.into());
        }
        let msg_id = msg.global_data.message_id.clone();
        let their_max = i64::try_from(&msg.global_data.max_size).unwrap_or(0);
        if !(484..=2_147_483_647).contains(&their_max) {
            return Err(Dropped::Malformed.into());
        }
        let max_size = max_size.min(their_max as usize);
        let sp: USMSecurityParameters =
            rasn::ber::decode(&msg.security_parameters).map_err(|_| Dropped::Malformed)?;
        let reportable = flags & REPORTABLE != 0;
        let cleartext_id = match &msg.scoped_data {
            ScopedPduData::CleartextPdu(s) => request_id(&s.data),
            ScopedPduData::EncryptedPdu(_) => 0,
        };
        let reply = Reply {
            usm: self,
            msg_id,
            user: sp.user_name.clone(),
            time,
        };
        let report = |e: UsmError, keys: Option<&User>| -> Result<Answer, V3Dropped> {
            let n = self.count(e);
            if !reportable {
                return Err(V3Dropped::Usm(e));
            }
            reply
                .report(e, n, cleartext_id, keys, max_size)
                .map_err(|_| V3Dropped::Usm(e))
        };
        // RFC 3414 3.2 step 3: another engine's ID (an empty one is discovery).
        if sp.authoritative_engine_id.as_ref() != self.engine_id.as_slice() {
            return report(UsmError::UnknownEngineIds, None);
        }
        // Step 4: the user.
        let Some(user) = self.users.iter().find(|u| u.name == sp.user_name.as_ref()) else {
            return report(UsmError::UnknownUserNames, None);
        };
        // Step 5: a level the user has keys for.
        if auth && user.auth.is_none() || privacy && user.privacy.is_none() {
            return report(UsmError::UnsupportedSecLevels, None);
        }
        if auth {
            let (proto, key) = user.auth.as_ref().expect("checked above");
            // Step 6: the digest, over the whole message with its own place zeroed.
            let given = sp.authentication_parameters.as_ref();
            let ok = given.len() == mac_len(*proto)
                && zeroed(request, given).is_some_and(|whole| {
                    super::agent::constant_time_eq(&mac(*proto, key, &whole), given)
                });
            if !ok {
                return report(UsmError::WrongDigests, None);
            }
            // Step 7: the time window (an authentic message only).
            let boots = u32::try_from(&sp.authoritative_engine_boots).unwrap_or(u32::MAX);
            let their_time = i64::try_from(&sp.authoritative_engine_time).unwrap_or(-1);
            if self.boots >= MAX_BOOTS
                || boots != self.boots
                || (their_time - i64::from(time)).abs() > i64::from(TIME_WINDOW)
            {
                return report(UsmError::NotInTimeWindows, Some(user));
            }
        }
        // Step 8: the scoped PDU, decrypted with the IV of the message's own boots and time.
        let scoped = match (&msg.scoped_data, privacy) {
            (ScopedPduData::CleartextPdu(s), false) => s.clone(),
            (ScopedPduData::EncryptedPdu(data), true) => {
                let key = user.privacy.as_ref().expect("checked above");
                let salt: Option<[u8; 8]> = sp.privacy_parameters.as_ref().try_into().ok();
                let decoded = salt.and_then(|salt| {
                    let boots = u32::try_from(&sp.authoritative_engine_boots).ok()?;
                    let t = u32::try_from(&sp.authoritative_engine_time).ok()?;
                    let mut plain = data.to_vec();
                    aes_cfb(key, iv(boots, t, &salt), &mut plain, false);
                    // BER tolerates trailing bytes here: some managers pad to the block.
                    rasn::ber::decode::<ScopedPdu>(&plain).ok()
                });
                match decoded {
                    Some(s) => s,
                    None => return report(UsmError::DecryptionErrors, Some(user)),
                }
            }
            _ => return Err(Dropped::Malformed.into()),
        };
        let min_auth = user.auth.is_some();
        let min_priv = user.privacy.is_some();
        let (kind, mut pdu) = process(scoped.data, view)?;
        if (min_auth && !auth) || (min_priv && !privacy) {
            // Below the user's configured level: RFC 3416 authorizationError, no bindings.
            pdu = Pdu {
                request_id: pdu.request_id,
                error_status: 16,
                error_index: 0,
                variable_bindings: Vec::new(),
            };
        }
        let level = Level { auth, privacy };
        let context = scoped.name.clone();
        fit(kind, pdu, max_size, |pdu| {
            reply.encode(
                Pdus::Response(Response(pdu)),
                context.clone(),
                level,
                Some(user),
            )
        })
        .map_err(V3Dropped::from)
    }
}

/// The first PDU's request-id, for a Report about it.
fn request_id(p: &Pdus) -> i32 {
    match p {
        Pdus::GetRequest(r) => r.0.request_id,
        Pdus::GetNextRequest(r) => r.0.request_id,
        Pdus::GetBulkRequest(r) => r.0.request_id,
        Pdus::SetRequest(r) => r.0.request_id,
        Pdus::InformRequest(r) => r.0.request_id,
        _ => 0,
    }
}

/// `request` with the first `04 len digest` zeroed.
fn zeroed(request: &[u8], digest: &[u8]) -> Option<Vec<u8>> {
    let mut tlv = vec![0x04, digest.len() as u8];
    tlv.extend_from_slice(digest);
    let at = request
        .windows(tlv.len())
        .position(|w| w == tlv.as_slice())?
        + 2;
    let mut whole = request.to_vec();
    whole[at..at + digest.len()].fill(0);
    Some(whole)
}

/// Why a v3 message got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V3Dropped {
    Message(Dropped),
    /// A USM error in a message not marked reportable.
    Usm(UsmError),
}

impl From<Dropped> for V3Dropped {
    fn from(d: Dropped) -> Self {
        V3Dropped::Message(d)
    }
}

impl V3Dropped {
    pub fn as_str(self) -> &'static str {
        match self {
            V3Dropped::Message(d) => d.as_str(),
            V3Dropped::Usm(e) => e.as_str(),
        }
    }
}

#[derive(Clone, Copy)]
struct Level {
    auth: bool,
    privacy: bool,
}

/// What every answer to one message shares.
struct Reply<'a> {
    usm: &'a Usm,
    msg_id: Integer,
    user: OctetString,
    time: u32,
}

impl Reply<'_> {
    fn report(
        &self,
        e: UsmError,
        count: u32,
        request_id: i32,
        user: Option<&User>,
        max_size: usize,
    ) -> Result<Answer, Dropped> {
        let oid = ObjectIdentifier::new(vec![1, 3, 6, 1, 6, 3, 15, 1, 1, e as u32, 0])
            .expect("a valid OID");
        let pdu = Pdu {
            request_id,
            error_status: 0,
            error_index: 0,
            variable_bindings: vec![VarBind {
                name: oid,
                value: VarBindValue::Value(ObjectSyntax::ApplicationWide(
                    ApplicationSyntax::Counter(rasn_smi::v1::Counter(count)),
                )),
            }],
        };
        // RFC 3414 3.2: a Report is noAuthNoPriv, except notInTimeWindow's, which is
        // authenticated so the manager can take the engine's boots and time from it.
        let level = Level {
            auth: user.is_some(),
            privacy: false,
        };
        let bytes = self.encode(
            Pdus::Report(Report(pdu)),
            OctetString::from(Vec::new()),
            level,
            user,
        );
        if bytes.is_empty() || bytes.len() > max_size {
            return Err(Dropped::Malformed);
        }
        Ok(Answer {
            kind: super::agent::Kind::Report(e),
            bytes,
            bindings: 1,
        })
    }

    /// The message carrying `data` at `level` with `user`'s keys; empty when it cannot be
    /// encoded.
    fn encode(
        &self,
        data: Pdus,
        context: OctetString,
        level: Level,
        user: Option<&User>,
    ) -> Vec<u8> {
        let usm = self.usm;
        let scoped = ScopedPdu {
            engine_id: OctetString::from(usm.engine_id.clone()),
            name: context,
            data,
        };
        let auth = if level.auth {
            user.and_then(|u| u.auth.as_ref())
        } else {
            None
        };
        let mut salt = [0u8; 8];
        let scoped_data = match (level.privacy, user.and_then(|u| u.privacy.as_ref())) {
            (true, Some(key)) => {
                salt = usm.salt.fetch_add(1, Ordering::Relaxed).to_be_bytes();
                let Ok(mut plain) = rasn::ber::encode(&scoped) else {
                    return Vec::new();
                };
                aes_cfb(key, iv(usm.boots, self.time, &salt), &mut plain, true);
                ScopedPduData::EncryptedPdu(OctetString::from(plain))
            }
            _ => ScopedPduData::CleartextPdu(scoped),
        };
        let mut sp = USMSecurityParameters {
            authoritative_engine_id: OctetString::from(usm.engine_id.clone()),
            authoritative_engine_boots: Integer::from(usm.boots),
            authoritative_engine_time: Integer::from(self.time),
            user_name: self.user.clone(),
            authentication_parameters: OctetString::from(
                auth.map(|(p, _)| vec![0u8; mac_len(*p)])
                    .unwrap_or_default(),
            ),
            privacy_parameters: OctetString::from(
                if matches!(scoped_data, ScopedPduData::EncryptedPdu(_)) {
                    salt.to_vec()
                } else {
                    Vec::new()
                },
            ),
        };
        let flags = u8::from(auth.is_some())
            | if matches!(scoped_data, ScopedPduData::EncryptedPdu(_)) {
                2
            } else {
                0
            };
        let build = |sp: &USMSecurityParameters| -> Vec<u8> {
            let Ok(params) = rasn::ber::encode(sp) else {
                return Vec::new();
            };
            let m = Message {
                version: Integer::from(3),
                global_data: HeaderData {
                    message_id: self.msg_id.clone(),
                    max_size: Integer::from(OUR_MAX_SIZE),
                    flags: OctetString::from(vec![flags]),
                    security_model: Integer::from(3),
                },
                security_parameters: OctetString::from(params),
                scoped_data: scoped_data.clone(),
            };
            rasn::ber::encode(&m).unwrap_or_default()
        };
        let unsigned = build(&sp);
        match auth {
            None => unsigned,
            Some((p, key)) => {
                // The digest has the same length as the zeros it replaces: same layout.
                sp.authentication_parameters = OctetString::from(mac(*p, key, &unsigned));
                build(&sp)
            }
        }
    }
}

/// Whether `request` is an SNMPv3 message: SEQUENCE { INTEGER 3, … }.
pub fn is_v3(request: &[u8]) -> bool {
    let rest = match request {
        [0x30, l, rest @ ..] if *l < 0x80 => rest,
        [0x30, 0x81, _, rest @ ..] => rest,
        [0x30, 0x82, _, _, rest @ ..] => rest,
        _ => return false,
    };
    rest.starts_with(&[0x02, 0x01, 0x03])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    /// RFC 3414 A.3.2 (SHA) and RFC 7860's SHA-256 counterpart as net-snmp computes it:
    /// "maplesyrup" localised to engine 000000000000000000000002.
    #[test]
    fn key_localisation_matches_rfc_3414_a3() {
        let engine = unhex("000000000000000000000002");
        assert_eq!(
            hex::encode(localize(AuthProtocol::Sha, b"maplesyrup", &engine)),
            "6695febc9288e36282235fc7151f128497b38f3f"
        );
        // RFC 3414 A.3.2's intermediate Ku (the 1 MiB digest) checked through Kul's formula.
        let mut h = Sha1::new();
        let mut stretched = Vec::with_capacity(1_048_576);
        while stretched.len() < 1_048_576 {
            stretched.extend_from_slice(b"maplesyrup");
        }
        stretched.truncate(1_048_576);
        h.update(&stretched);
        assert_eq!(
            hex::encode(h.finalize()),
            "9fb5cc0381497b3793528939ff788d5d79145211"
        );
    }

    #[test]
    fn aes_cfb_round_trips_and_matches_a_known_vector() {
        // NIST SP 800-38A F.3.13, CFB128-AES128.Encrypt, first two blocks.
        let key: [u8; 16] = unhex("2b7e151628aed2a6abf7158809cf4f3c")
            .try_into()
            .unwrap();
        let iv: [u8; 16] = unhex("000102030405060708090a0b0c0d0e0f")
            .try_into()
            .unwrap();
        let plain = unhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51");
        let mut data = plain.clone();
        aes_cfb(&key, iv, &mut data, true);
        assert_eq!(
            hex::encode(&data),
            "3b3fd92eb72dad20333449f8e83cfb4ac8a64537a0b3a93fcde3cdad9f1ce58b"
        );
        aes_cfb(&key, iv, &mut data, false);
        assert_eq!(data, plain);
        // A partial last block.
        let mut odd = plain[..21].to_vec();
        aes_cfb(&key, iv, &mut odd, true);
        aes_cfb(&key, iv, &mut odd, false);
        assert_eq!(odd, plain[..21]);
    }

    #[test]
    fn engine_id_is_rfc_3411_format_and_per_node() {
        let a = engine_id("demo", "ucm-pub");
        assert_eq!(a.len(), 17);
        assert_eq!(a[..5], [0x80, 0, 0, 9, 5]);
        assert_eq!(a, engine_id("demo", "ucm-pub"));
        assert_ne!(a, engine_id("demo", "ucm-sub1"));
        assert_ne!(a, engine_id("other", "ucm-pub"));
        assert!(boots_at(BOOTS_EPOCH + 10) < boots_at(BOOTS_EPOCH + 11));
    }

    use super::super::mib::{NodeFacts, View};
    use super::super::model::{PrivProtocol, V3Auth, V3Privacy};
    use rasn_snmp::v2::GetRequest;

    fn view() -> View {
        View::build(&NodeFacts {
            sys_descr: "ucm test".into(),
            sys_name: "ucm-pub".into(),
            uptime_ticks: 1,
            cluster_id: "demo".into(),
            nodes: Vec::new(),
            phones: Vec::new(),
        })
    }

    fn usm() -> Usm {
        let users = users();
        // The definition's Debug (what a log line would show) hides the passwords.
        let shown = format!("{users:?}");
        assert!(
            !shown.contains("ucmv3auth") && !shown.contains("ucmv3priv"),
            "{shown}"
        );
        Usm::new(engine_id("demo", "ucm-pub"), 1000, &users)
    }

    fn users() -> [V3User; 1] {
        [V3User {
            name: "ucmv3".into(),
            auth: Some(V3Auth {
                protocol: AuthProtocol::Sha,
                password: "ucmv3auth".into(),
            }),
            privacy: Some(V3Privacy {
                protocol: PrivProtocol::Aes,
                password: "ucmv3priv".into(),
            }),
        }]
    }

    /// A Get of sysName.0 from a manager holding `usm`'s keys, its clock at (`boots`, `time`).
    fn request(usm: &Usm, boots: u32, time: u32, privacy: bool) -> Vec<u8> {
        let pdu = Pdu {
            request_id: 42,
            error_status: 0,
            error_index: 0,
            variable_bindings: vec![VarBind {
                name: ObjectIdentifier::new(vec![1, 3, 6, 1, 2, 1, 1, 5, 0]).unwrap(),
                value: VarBindValue::Unspecified,
            }],
        };
        // The manager's side is the same encoding with the message's boots and time.
        let manager = Usm {
            engine_id: usm.engine_id.clone(),
            boots,
            users: Vec::new(),
            salt: AtomicU64::new(7),
            stats: Default::default(),
        };
        let reply = Reply {
            usm: &manager,
            msg_id: Integer::from(9),
            user: OctetString::from(b"ucmv3".to_vec()),
            time,
        };
        let mut m = reply.encode(
            Pdus::GetRequest(GetRequest(pdu)),
            OctetString::from(Vec::new()),
            Level {
                auth: true,
                privacy,
            },
            Some(&usm.users[0]),
        );
        // Reportable, as a request is.
        let at = m.windows(3).position(|w| w[0] == 4 && w[1] == 1).unwrap() + 2;
        m[at] |= REPORTABLE;
        // The flags are under the digest: sign again.
        let sp_digest = {
            let msg: Message = rasn::ber::decode(&m).unwrap();
            let sp: USMSecurityParameters = rasn::ber::decode(&msg.security_parameters).unwrap();
            sp.authentication_parameters.to_vec()
        };
        let whole = zeroed(&m, &sp_digest).unwrap();
        let (_, key) = usm.users[0].auth.as_ref().unwrap();
        let digest = mac(AuthProtocol::Sha, key, &whole);
        let mut signed = whole.clone();
        let pos = whole
            .windows(14)
            .position(|w| w[..2] == [4, 12] && w[2..].iter().all(|&b| b == 0))
            .unwrap();
        signed[pos + 2..pos + 14].copy_from_slice(&digest);
        signed
    }

    fn reported(a: &Answer) -> Option<UsmError> {
        match a.kind {
            super::super::agent::Kind::Report(e) => Some(e),
            _ => None,
        }
    }

    #[test]
    fn auth_priv_round_trip_and_the_time_window() {
        let u = usm();
        let v = view();
        let a = u
            .answer(&request(&u, 1000, 500, true), &v, 1472, 500)
            .unwrap();
        assert_eq!(reported(&a), None);
        // The answer is encrypted: sysName is not in clear.
        assert!(!a.bytes.windows(7).any(|w| w == b"ucm-pub"));
        // 150 seconds either way is inside the window; 151 is not; another boots is not.
        assert_eq!(
            reported(
                &u.answer(&request(&u, 1000, 650, true), &v, 1472, 500)
                    .unwrap()
            ),
            None
        );
        for (boots, time) in [(1000, 651), (1000, 349), (999, 500), (1001, 500)] {
            let a = u
                .answer(&request(&u, boots, time, true), &v, 1472, 500)
                .unwrap();
            assert_eq!(
                reported(&a),
                Some(UsmError::NotInTimeWindows),
                "{boots} {time}"
            );
        }
        assert_eq!(u.stat(UsmError::NotInTimeWindows), 4);
        // authNoPriv for an authPriv user: answered with authorizationError.
        let a = u
            .answer(&request(&u, 1000, 500, false), &v, 1472, 500)
            .unwrap();
        assert_eq!(reported(&a), None);
        assert!(!a.bytes.windows(7).any(|w| w == b"ucm-pub"));
        // A flipped byte anywhere: wrong digest.
        let mut bad = request(&u, 1000, 500, true);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let a = u.answer(&bad, &v, 1472, 500).unwrap();
        assert_eq!(reported(&a), Some(UsmError::WrongDigests));
        // Garbage is dropped, not answered.
        assert!(u
            .answer(&[0x30, 0x03, 0x02, 0x01, 0x03], &v, 1472, 500)
            .is_err());
    }
}
