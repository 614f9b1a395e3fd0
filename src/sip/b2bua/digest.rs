//! Digest authentication of INVITEs from devices whose security profile asks for it.

use super::*;

impl B2bua {
    /// When the device must authenticate and the INVITE's credentials do not verify: the
    /// status, reason and `Proxy-Authenticate` challenge to answer with.
    pub(super) fn invite_digest(
        &self,
        cluster: &Cluster,
        req: &Request,
        device: &str,
    ) -> Option<(u16, String, Option<String>)> {
        let dev = cluster.device(device)?;
        let profile = dev.security_profile.as_ref().and_then(|sp| {
            cluster
                .phone_security_profiles
                .iter()
                .find(|p| &p.name == sp)
        })?;
        if !profile.digest_authentication {
            return None;
        }
        // Nonces carry unix time so that any node can check them; the one clock read here.
        let now = crate::sip::registrar::unix_now();
        let challenge = |stale: bool| {
            Some((
                407,
                "Proxy Authentication Required".to_string(),
                Some(self.nonces.challenge(now, stale)),
            ))
        };
        let Some(auth) = req
            .headers
            .get("Proxy-Authorization")
            .or_else(|| req.headers.get("Authorization"))
        else {
            return challenge(false);
        };
        let user = dev.digest_user.as_deref().unwrap_or_default();
        let Some(ha1) = cluster.end_user(user).and_then(|u| u.digest_ha1.clone()) else {
            return Some((
                403,
                "Forbidden (no digest credentials configured)".into(),
                None,
            ));
        };
        let Some(params) = crate::sip::digest::parse_authorization(auth) else {
            return challenge(false);
        };
        match crate::sip::digest::verify(&self.nonces, &params, "INVITE", user, &ha1, now) {
            crate::sip::digest::Verdict::Ok => None,
            crate::sip::digest::Verdict::Stale => challenge(true),
            crate::sip::digest::Verdict::Refused(why) => {
                tracing::info!(device, reason = why, "INVITE digest authentication failed");
                challenge(false)
            }
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
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let tag = self.tag();
        let mut resp = req.make_response(status, reason, Some(&tag));
        if let Some(c) = challenge {
            resp.headers.push("Proxy-Authenticate", c);
        }
        resp.headers
            .push("Server", format!("ucm/{}", env!("CARGO_PKG_VERSION")));
        for a in self.txns.respond(key, resp, now) {
            if let Action::Send(msg) = a {
                if let Some(&to) = self.txn_peer.get(key) {
                    out.push(Out { msg, to });
                }
            } else if let Action::Terminated = a {
                self.forget(key);
            }
        }
    }
}
