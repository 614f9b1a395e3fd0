//! Dialogs that outlive their node: any node of the cluster can carry on a call another node
//! set up.
//!
//! A call through the B2BUA is two dialogs, and each side knows only its own. When the node in
//! the middle dies (`kill -9`), its phones fail over to another node and keep their media
//! (phone to phone), but a BYE or re-INVITE they send next names a dialog no living node
//! knows: without more, the other party would stay in a dead call.
//!
//! So every Contact the node gives one side of a connected call carries, in the URI
//! parameter [`PARAM`], a *dialog handle*: the other side's dialog (Call-ID, tags, From/To,
//! remote target, route set, the address it is reached at), encrypted and authenticated with
//! the cluster's secret (`cluster_meta`, shared by every node through the database). The side
//! puts the Contact in the Request-URI of its next in-dialog request (RFC 3261 12.2.1.1:
//! the remote target), whichever node it sends it to. A node that does not know the dialog
//! checks the handle and *adopts* the call: it rebuilds both legs (the sender's from the
//! request itself, the other from the handle) and relays the request as the first node would
//! have. The other way round, a node relaying a request towards a node that is down (its
//! heartbeat stale: [`super::Command::NodesDown`]) *splices* the dialog: the remote target
//! it would send to carries that node's handle of the far side, so it talks to the far side
//! directly instead.
//!
//! Why a signed handle rather than a table of dialogs in the database: nothing is written per
//! call (cross-node calls cost no database round trip), nothing is left behind by a node
//! that died, and the handle is as fresh as the last target refresh. Why signed: the handle
//! makes a node send requests to the address it names; unauthenticated, anyone could make a
//! node BYE (or re-INVITE) arbitrary dialogs at arbitrary addresses. Why encrypted: it names
//! the far side's address and dialog, which a B2BUA does not show (topology hiding). A handle
//! is bound to the dialog it was handed to (its Call-ID), so it cannot be replayed on another
//! call. The handle also names the lines the call counts against (the caller's and the one
//! it was offered to), so the adopting node counts the call against their busy trigger and
//! maximum number of calls (and tells line monitoring they are connected). What an adopting
//! node does not know: the CSeq the dead node reached on the far side (it uses the Unix
//! time, above any counter a node starts at 1).
//!
//! Single-node (SQLite) servers have no secret and hand out no handle: their Contacts are as
//! before.

use std::net::SocketAddr;

use sha2::{Digest, Sha256};

use super::{Peer, Transport};
use crate::dialplan::analysis::DnKey;

/// The Contact URI parameter carrying the handle.
pub const PARAM: &str = "ucm-dlg";
/// What a record of a dialog to release is bound to instead of a dialog (a Call-ID has no
/// space, so no request's Call-ID matches).
const RELEASE: &str = "release ";
/// Handles longer than this (characters) are refused unread.
const MAX_TOKEN: usize = 3000;
const NONCE: usize = 8;
const MAC: usize = 16;
const VERSION: u8 = 1;

/// The keys derived from the cluster's secret.
#[derive(Clone)]
pub struct Handoff {
    enc: [u8; 32],
    mac: [u8; 32],
}

/// One side's dialog as a handle carries it (we are the node in the middle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegHandle {
    /// The Call-ID of the dialog the handle was handed to (the other side's).
    pub for_call_id: String,
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    pub local_addr: String,
    pub remote_addr: String,
    pub remote_target: String,
    pub route_set: Vec<String>,
    pub peer: Peer,
    pub device: Option<String>,
    /// The lines the call was counted against where it was set up (the caller's, when a
    /// device placed it, and the one it was offered to), so a node taking the call over
    /// counts it against them too.
    pub lines: CallLines,
}

/// The lines a call counts against (busy trigger, maximum number of calls).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallLines {
    pub caller: Option<DnKey>,
    pub target: Option<DnKey>,
    /// The call came to its node from another node over the intra-cluster trunk, which
    /// counts the target line itself.
    pub delivered: bool,
}

impl Handoff {
    pub fn new(secret: [u8; 32]) -> Handoff {
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(label);
            h.update(secret);
            h.finalize().into()
        };
        Handoff {
            enc: derive(b"ucm sip dialog handle encryption"),
            mac: derive(b"ucm sip dialog handle authentication"),
        }
    }

    /// The handle of `leg`, URI-safe (base64url). `nonce` must not repeat under one secret.
    pub fn seal(&self, leg: &LegHandle, nonce: u64) -> String {
        let mut plain = vec![VERSION];
        let transport = leg.peer.transport.as_str();
        let addr = leg.peer.addr.to_string();
        let device = leg.device.clone().unwrap_or_default();
        let routes = leg.route_set.join("\n");
        // The far side's target keeps its own handle when that one nests no further: a call
        // crosses the intra-cluster trunk once, so its path holds two nodes at most, and when
        // both die a node that takes the call over follows the first node's handle to the
        // second's and that one to the phone (see `splice_if_down`). Deeper nesting is cut, or
        // a handle would grow with every takeover. (Two levels make a Contact of about 1.2 kB.)
        let target = match token_in(&leg.remote_target) {
            Some(t)
                if self
                    .open(t, &leg.call_id)
                    .is_some_and(|inner| token_in(&inner.remote_target).is_none()) =>
            {
                leg.remote_target.clone()
            }
            _ => without_token(&leg.remote_target),
        };
        let dn = |l: &Option<DnKey>| l.as_ref().map(|l| l.0.clone()).unwrap_or_default();
        let pt = |l: &Option<DnKey>| l.as_ref().and_then(|l| l.1.clone()).unwrap_or_default();
        let lines = &leg.lines;
        let (caller_dn, caller_pt) = (dn(&lines.caller), pt(&lines.caller));
        let (target_dn, target_pt) = (dn(&lines.target), pt(&lines.target));
        let delivered = if lines.delivered { "1" } else { "" };
        for f in [
            leg.for_call_id.as_str(),
            &leg.call_id,
            &leg.local_tag,
            &leg.remote_tag,
            &leg.local_addr,
            &leg.remote_addr,
            &target,
            &routes,
            &addr,
            transport,
            &device,
            &caller_dn,
            &caller_pt,
            &target_dn,
            &target_pt,
            delivered,
        ] {
            let b = f.as_bytes();
            let n = b.len().min(u16::MAX as usize);
            plain.extend_from_slice(&(n as u16).to_be_bytes());
            plain.extend_from_slice(&b[..n]);
        }
        let nonce = nonce.to_be_bytes();
        self.keystream(&nonce, &mut plain);
        let mut out = nonce.to_vec();
        out.extend_from_slice(&plain);
        let tag = hmac(&self.mac, &[&out]);
        out.extend_from_slice(&tag[..MAC]);
        b64_encode(&out)
    }

    /// Opens a handle: `None` when it is not one of this cluster's (forged, altered, another
    /// secret, malformed) or was handed to another dialog than `call_id`.
    pub fn open(&self, token: &str, call_id: &str) -> Option<LegHandle> {
        self.open_any(token).filter(|l| l.for_call_id == call_id)
    }

    /// The record of a dialog to release ([`Handoff::seal_release`]): `None` when it is not
    /// one of this cluster's, or not such a record.
    pub fn open_release(&self, token: &str) -> Option<LegHandle> {
        self.open_any(token)
            .filter(|l| l.for_call_id == format!("{RELEASE}{}", l.call_id))
    }

    /// `leg` sealed as a record of a dialog some node may have to release (a page caller's,
    /// kept in the database): it is bound to no dialog, so no phone can use it as a handle.
    pub fn seal_release(&self, leg: &LegHandle, nonce: u64) -> String {
        let mut leg = leg.clone();
        leg.for_call_id = format!("{RELEASE}{}", leg.call_id);
        self.seal(&leg, nonce)
    }

    fn open_any(&self, token: &str) -> Option<LegHandle> {
        if token.len() > MAX_TOKEN {
            return None;
        }
        let raw = b64_decode(token)?;
        if raw.len() < NONCE + MAC + 1 {
            return None;
        }
        let (body, tag) = raw.split_at(raw.len() - MAC);
        let want = hmac(&self.mac, &[body]);
        let diff = want[..MAC]
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return None;
        }
        let (nonce, cipher) = body.split_at(NONCE);
        let mut plain = cipher.to_vec();
        self.keystream(nonce, &mut plain);
        let (&version, mut rest) = plain.split_first()?;
        if version != VERSION {
            return None;
        }
        let mut fields = Vec::with_capacity(16);
        while !rest.is_empty() {
            if rest.len() < 2 {
                return None;
            }
            let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            let f = rest.get(2..2 + n)?;
            fields.push(String::from_utf8(f.to_vec()).ok()?);
            rest = &rest[2 + n..];
        }
        // The five fields of the lines came later: a handle without them counts no line.
        if fields.len() == 11 {
            fields.extend(std::iter::repeat_n(String::new(), 5));
        }
        let [for_call_id, cid, lt, rt, la, ra, target, routes, addr, transport, device, caller_dn, caller_pt, target_dn, target_pt, delivered]: [String;
            16] = fields.try_into().ok()?;
        let line =
            |dn: String, pt: String| (!dn.is_empty()).then(|| (dn, (!pt.is_empty()).then_some(pt)));
        let addr: SocketAddr = addr.parse().ok()?;
        let transport = Transport::parse(&transport)?;
        Some(LegHandle {
            for_call_id,
            call_id: cid,
            local_tag: lt,
            remote_tag: rt,
            local_addr: la,
            remote_addr: ra,
            remote_target: target,
            route_set: if routes.is_empty() {
                Vec::new()
            } else {
                routes.split('\n').map(str::to_string).collect()
            },
            peer: Peer { addr, transport },
            device: (!device.is_empty()).then_some(device),
            lines: CallLines {
                caller: line(caller_dn, caller_pt),
                target: line(target_dn, target_pt),
                delivered: delivered == "1",
            },
        })
    }

    /// XORs `data` with SHA-256(key, nonce, counter) blocks (a stream cipher; the MAC covers
    /// the result).
    fn keystream(&self, nonce: &[u8], data: &mut [u8]) {
        for (i, chunk) in data.chunks_mut(32).enumerate() {
            let mut h = Sha256::new();
            h.update(self.enc);
            h.update(nonce);
            h.update((i as u32).to_be_bytes());
            let block: [u8; 32] = h.finalize().into();
            for (d, k) in chunk.iter_mut().zip(block) {
                *d ^= k;
            }
        }
    }
}

/// The handle in a URI (`…;ucm-dlg=TOKEN…`), if it carries one.
pub fn token_in(uri: &str) -> Option<&str> {
    let uri = uri.trim().trim_start_matches('<');
    let uri = uri.split('>').next()?;
    // Parameters end at the headers part (`?`).
    let params = uri.split('?').next()?;
    params.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(PARAM).then_some(v.trim())
    })
}

/// `uri` without its handle parameter.
pub fn without_token(uri: &str) -> String {
    let (main, headers) = match uri.split_once('?') {
        Some((m, h)) => (m, Some(h)),
        None => (uri, None),
    };
    let mut out: String = main
        .split(';')
        .enumerate()
        .filter(|(i, p)| {
            *i == 0
                || !p
                    .split('=')
                    .next()
                    .is_some_and(|k| k.trim().eq_ignore_ascii_case(PARAM))
        })
        .map(|(_, p)| p)
        .collect::<Vec<_>>()
        .join(";");
    if let Some(h) = headers {
        out.push('?');
        out.push_str(h);
    }
    out
}

/// `contact` (`<sip:host…>`) with `;ucm-dlg=TOKEN` added as the URI's last parameter.
pub fn with_token(contact: &str, token: &str) -> String {
    match contact.rfind('>') {
        Some(i) => format!("{};{PARAM}={token}{}", &contact[..i], &contact[i..]),
        None => format!("{contact};{PARAM}={token}"),
    }
}

fn hmac(key: &[u8; 32], data: &[&[u8]]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for (i, k) in key.iter().enumerate() {
        ipad[i] ^= k;
        opad[i] ^= k;
    }
    let mut h = Sha256::new();
    h.update(ipad);
    for d in data {
        h.update(d);
    }
    let inner = h.finalize();
    let mut h = Sha256::new();
    h.update(opad);
    h.update(inner);
    h.finalize().into()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 4 / 3 + 3);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leg() -> LegHandle {
        LegHandle {
            for_call_id: "a-call@10.0.0.1".into(),
            call_id: "b-call@ucm".into(),
            local_tag: "1a2b".into(),
            remote_tag: "tB".into(),
            local_addr: "\"Alice\" <sip:10001@127.0.0.2:5060>".into(),
            remote_addr: "<sip:10002@127.0.0.12:5060>".into(),
            remote_target: "sip:10002@127.0.0.12:5060;transport=udp".into(),
            route_set: vec!["<sip:10.0.0.9;lr>".into(), "<sip:10.0.0.8;lr>".into()],
            peer: Peer {
                addr: "127.0.0.12:5060".parse().unwrap(),
                transport: Transport::Udp,
            },
            device: Some("SEP00036BC7B974".into()),
            lines: CallLines {
                caller: Some(("10001".into(), Some("Internal_PT".into()))),
                target: Some(("10002".into(), None)),
                delivered: true,
            },
        }
    }

    #[test]
    fn r16_a_dialog_handle_opens_only_with_the_clusters_secret_and_for_its_dialog() {
        let h = Handoff::new([7; 32]);
        let t = h.seal(&leg(), 42);
        assert!(t.bytes().all(|b| B64.contains(&b)), "{t}");
        assert_eq!(h.open(&t, "a-call@10.0.0.1"), Some(leg()));
        // Nothing of the far side shows in the clear.
        assert!(!t.contains("10002") && !b64_decode(&t).unwrap().windows(5).any(|w| w == b"10002"));
        // Another dialog, another cluster, any altered byte: refused.
        assert_eq!(h.open(&t, "other-call"), None);
        assert_eq!(Handoff::new([8; 32]).open(&t, "a-call@10.0.0.1"), None);
        let mut raw = b64_decode(&t).unwrap();
        for i in [0, NONCE + 3, raw.len() - 1] {
            raw[i] ^= 1;
            assert_eq!(
                h.open(&b64_encode(&raw), "a-call@10.0.0.1"),
                None,
                "byte {i}"
            );
            raw[i] ^= 1;
        }
        assert_eq!(h.open("", "a-call@10.0.0.1"), None);
        assert_eq!(h.open("!!!", "a-call@10.0.0.1"), None);
        assert_eq!(h.open(&"A".repeat(MAX_TOKEN + 1), "a-call@10.0.0.1"), None);
        // Different nonces, different handles.
        assert_ne!(h.seal(&leg(), 43), t);
    }

    #[test]
    fn r16_the_handle_rides_in_a_contact_and_comes_back_from_a_request_uri() {
        let c = with_token("<sip:127.0.0.2:5060;transport=tls>", "AbC-_9");
        assert_eq!(c, "<sip:127.0.0.2:5060;transport=tls;ucm-dlg=AbC-_9>");
        assert_eq!(token_in(&c), Some("AbC-_9"));
        assert_eq!(
            token_in("sip:127.0.0.2:5060;ucm-dlg=XY?Foo=bar"),
            Some("XY")
        );
        assert_eq!(token_in("sip:127.0.0.2:5060;transport=udp"), None);
        assert_eq!(
            without_token("sip:127.0.0.2:5060;transport=udp;ucm-dlg=XY?Foo=bar"),
            "sip:127.0.0.2:5060;transport=udp?Foo=bar"
        );
        // A handle does not carry a far side's handle that is not one of this cluster's.
        let h = Handoff::new([7; 32]);
        let mut l = leg();
        l.remote_target = "sip:127.0.0.3:5060;ucm-dlg=AAAA".into();
        let opened = h.open(&h.seal(&l, 1), "a-call@10.0.0.1").unwrap();
        assert_eq!(opened.remote_target, "sip:127.0.0.3:5060");
        // It carries the far side's own handle one level deep (a path through two nodes),
        // no deeper.
        let inner = h.seal(
            &LegHandle {
                for_call_id: l.call_id.clone(),
                ..leg()
            },
            2,
        );
        l.remote_target = format!("sip:127.0.0.3:5060;{PARAM}={inner}");
        let outer = h.seal(&l, 3);
        let opened = h.open(&outer, "a-call@10.0.0.1").unwrap();
        assert_eq!(opened.remote_target, l.remote_target);
        let next = h
            .open(token_in(&opened.remote_target).unwrap(), &l.call_id)
            .unwrap();
        assert_eq!(next.remote_target, leg().remote_target);
        let mut deeper = leg();
        deeper.for_call_id = "d-call".into();
        // The leg whose target carries `outer` is the dialog `outer` was handed to.
        deeper.call_id = "a-call@10.0.0.1".into();
        deeper.remote_target = format!("sip:127.0.0.4:5060;{PARAM}={outer}");
        let third = h.seal(&deeper, 4);
        let opened = h.open(&third, "d-call").unwrap();
        assert_eq!(opened.remote_target, "sip:127.0.0.4:5060");
        assert!(outer.len() < MAX_TOKEN && third.len() < MAX_TOKEN);
        for n in 0..40 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(b64_decode(&b64_encode(&data)).unwrap(), data);
        }
    }
}
