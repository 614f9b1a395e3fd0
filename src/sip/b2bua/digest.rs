//! Digest authentication of INVITEs from devices whose security profile asks for it: the
//! registrar's policy ([`crate::sip::digest::check_device`]), answered as a proxy answers
//! (407 with `Proxy-Authenticate`).

use super::*;
use crate::sip::digest::{check_device, DeviceCheck};

impl B2bua {
    /// When the device must authenticate and the INVITE's credentials do not verify: the
    /// status, reason and `Proxy-Authenticate` challenge to answer with.
    pub(super) fn invite_digest(
        &self,
        cluster: &Cluster,
        req: &Request,
        device: &str,
        now: Now,
    ) -> Option<(u16, String, Option<String>)> {
        let auth = req
            .headers
            .get("Proxy-Authorization")
            .or_else(|| req.headers.get("Authorization"));
        let request = crate::sip::digest::request_fingerprint(req);
        match check_device(
            cluster,
            device,
            auth,
            "INVITE",
            request,
            &self.nonces,
            now.unix,
        ) {
            DeviceCheck::Pass => None,
            DeviceCheck::Challenge { stale, refused } => {
                if let Some(why) = refused {
                    tracing::info!(device, reason = why, "INVITE digest authentication failed");
                }
                Some((
                    407,
                    "Proxy Authentication Required".to_string(),
                    Some(self.nonces.challenge(now.unix, stale)),
                ))
            }
            DeviceCheck::NoCredentials => Some((
                403,
                "Forbidden (no digest credentials configured)".into(),
                None,
            )),
        }
    }

    /// A final answer with an optional `Proxy-Authenticate` challenge.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn respond_challenge(
        &mut self,
        key: &TransactionKey,
        req: &Request,
        status: u16,
        reason: &str,
        challenge: Option<String>,
        now: Now,
        out: &mut Vec<Out>,
    ) {
        let tag = self.tag();
        let mut resp = req.make_response(status, reason, Some(&tag));
        if let Some(c) = challenge {
            resp.headers.push("Proxy-Authenticate", c);
        }
        resp.headers
            .push("Server", format!("ucm/{}", env!("CARGO_PKG_VERSION")));
        for a in self.txns.respond(key, resp, now.mono) {
            if let Action::Send(msg) = a {
                if let Some(&to) = self.txn_peer.get(key) {
                    out.push(Out::Send { msg, to });
                }
            } else if let Action::Terminated = a {
                self.forget(key);
            }
        }
    }
}
