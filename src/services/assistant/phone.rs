//! The Assistant phone service (the seed's "phone console"): CiscoIPPhone XML objects for
//! managers (Do Not Disturb, DivertAll, call filtering, intercept) and assistants (their
//! managers' states, the calls ringing at their proxy lines, and the same settings on the
//! managers' behalf), after the user's ID and PIN, over HTTPS.
//!
//! Cisco's service URL is `/ma/servlet/MAService?cmd=doPhoneService&Name=#DEVICENAME#`; the
//! other commands are ucm's own (UNCONFIRMED: Cisco does not document its servlet's screens):
//! - `cmd=doPhoneService&Name=D`: a `CiscoIPPhoneInput` asking User ID and PIN, submitting to
//!   the HTTPS listener (it may be reached over HTTP: no secret travels yet).
//! - `cmd=login&Name=D&userid=U&pin=P`: the PIN is checked with the PIN lockout (the same
//!   `pin:<user>` count as Extension Mobility's and the Personal Directory's); right, the
//!   user's screen and a session token `t` that the screen's URLs carry instead of the PIN.
//! - `cmd=menu&t=T`: the user's screen again; `cmd=manager&m=M&t=T`: one manager's screen.
//! - `cmd=set&m=M&f=dnd|divert_all|filter_on&v=1|0&ver=N&t=T`: a change made only if the
//!   manager's state is still at version `N` (the screen it was chosen on); otherwise the
//!   screen as it is now, saying it changed meanwhile. The database decides between racers.
//! - `cmd=intercept&m=M&t=T`, `cmd=to_manager&call=C&t=T`: as the console's commands.
//!
//! Everything past `doPhoneService` is answered over HTTPS only: the PIN and the token never
//! travel in clear. The token is the user, the device and an expiry, signed (HMAC-SHA-256)
//! with a secret the cluster keeps in its database, so any node of the cluster takes it and
//! nothing is stored per session; it is bound to the device it was given to.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use axum::Extension;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::model::{Manager, Mode};
use super::store::{Changed, ManagerChange, ManagerState, ManagerStates};
use super::AssistantService;
use crate::node::http::Listener;
use crate::wire::xml::{CiscoIPPhoneObject, Input, InputItem, Menu, Text};

pub const PATH: &str = "/ma/servlet/MAService";
/// The `cluster_meta` key of the secret that signs the phone service's session tokens.
pub const SECRET: &str = "assistant_phone_secret";
/// How long a token lasts. ucm's choice: a working day's screen left open on a phone.
const TOKEN_SECS: i64 = 8 * 3600;
const TITLE: &str = "Assistant";
/// Longest user ID or device name taken into a token (Cisco's user IDs are at most 128).
const MAX_NAME: usize = 128;

pub struct PhoneService {
    pub svc: Arc<AssistantService>,
    pub secret: [u8; 32],
}

fn param<'a>(q: &'a HashMap<String, String>, k: &str) -> &'a str {
    q.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(k))
        .map_or("", |(_, v)| v.as_str())
        .trim()
}

fn reply(obj: CiscoIPPhoneObject) -> Response {
    crate::services::phone_services::xml_reply(&obj)
}

fn text(msg: &str) -> Response {
    reply(CiscoIPPhoneObject::Text(Text::new(TITLE, msg)))
}

fn mac(secret: &[u8; 32], payload: &str) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
    m.update(payload.as_bytes());
    m
}

/// `hex(user \n device \n expiry).hex(first 16 bytes of the HMAC)`.
pub fn sign(secret: &[u8; 32], user: &str, device: &str, expires: i64) -> String {
    let payload = format!("{user}\n{device}\n{expires}");
    let tag = mac(secret, &payload).finalize().into_bytes();
    format!("{}.{}", hex::encode(&payload), hex::encode(&tag[..16]))
}

/// The user a token names, when it is ours, unexpired and given to `device`.
pub fn verify(
    secret: &[u8; 32],
    token: &str,
    device: &str,
    now: i64,
) -> Result<String, &'static str> {
    let bad = "your session is not valid: log in again";
    let (payload, tag) = token.split_once('.').ok_or(bad)?;
    if payload.len() > 2 * (2 * MAX_NAME + 24) {
        return Err(bad);
    }
    let payload = String::from_utf8(hex::decode(payload).map_err(|_| bad)?).map_err(|_| bad)?;
    let tag = hex::decode(tag).map_err(|_| bad)?;
    if tag.len() != 16 {
        return Err(bad);
    }
    // Constant time: a forger learns nothing from how long the refusal took.
    mac(secret, &payload)
        .verify_truncated_left(&tag)
        .map_err(|_| bad)?;
    let mut parts = payload.split('\n');
    let (Some(user), Some(dev), Some(exp), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad);
    };
    if dev != device {
        return Err("this session belongs to another phone: log in again");
    }
    if exp.parse::<i64>().map_or(true, |e| e < now) {
        return Err("your session has expired: log in again");
    }
    Ok(user.to_string())
}

fn on_off(b: bool) -> &'static str {
    if b {
        "On"
    } else {
        "Off"
    }
}

/// What the screens' URLs need.
struct Screen<'a> {
    base: &'a str,
    device: &'a str,
    token: &'a str,
}

impl Screen<'_> {
    fn url(&self, args: &[(&str, &str)]) -> String {
        let mut all = vec![("Name", self.device), ("t", self.token)];
        all.extend_from_slice(args);
        crate::wire::codec::with_query(&format!("{}{PATH}", self.base), &all)
    }

    fn soft_keys(&self, menu: Menu) -> Menu {
        menu.soft_key("Select", "SoftKey:Select", 1)
            .soft_key("Update", &self.url(&[("cmd", "menu")]), 2)
            .soft_key("Exit", "SoftKey:Exit", 3)
    }
}

/// Whether `user` may act for `m`: the manager and their assistants may.
fn may_act(user: &str, m: &Manager) -> bool {
    m.user == user || m.assistants.iter().any(|a| a.user == user)
}

impl PhoneService {
    fn display(&self, user: &str) -> String {
        self.svc
            .node
            .cluster()
            .end_user(user)
            .map_or_else(|| user.to_string(), |u| u.display_name())
    }

    /// One manager's settings as menu items, each toggling one of them.
    fn manager_items(&self, mut menu: Menu, sc: &Screen, m: &Manager, st: &ManagerState) -> Menu {
        let ver = st.version.to_string();
        let toggle = |field: &str, now: bool| {
            sc.url(&[
                ("cmd", "set"),
                ("m", &m.user),
                ("f", field),
                ("v", if now { "0" } else { "1" }),
                ("ver", &ver),
            ])
        };
        menu = menu
            .item(
                &format!("Do Not Disturb: {}", on_off(st.dnd)),
                &toggle("dnd", st.dnd),
            )
            .item(
                &format!("Divert All: {}", on_off(st.divert_all)),
                &toggle("divert_all", st.divert_all),
            );
        // Filtering and intercept are proxy line mode's (the seed: absent in shared line mode).
        if m.mode == Mode::Proxy {
            menu = menu
                .item(
                    &format!("Call Filter: {}", on_off(st.filter_on)),
                    &toggle("filter_on", st.filter_on),
                )
                .item(
                    "Intercept",
                    &sc.url(&[("cmd", "intercept"), ("m", &m.user)]),
                );
        }
        menu
    }

    /// The user's screen: their own settings when a manager; their managers and the calls
    /// ringing at their proxy lines when an assistant.
    async fn home(&self, sc: &Screen<'_>, user: &str, prompt: Option<String>) -> Response {
        let section = self.svc.section();
        let own = section.managers.iter().find(|m| m.user == user);
        let assisted: Vec<&Manager> = section
            .managers
            .iter()
            .filter(|m| m.assistants.iter().any(|a| a.user == user))
            .collect();
        if own.is_none() && assisted.is_empty() {
            return text(&format!(
                "{} is neither an Assistant manager nor an assistant.",
                self.display(user)
            ));
        }
        let mut menu = Menu::new(&format!("{TITLE}: {}", self.display(user)));
        if let Some(m) = own {
            let st = match self.svc.node.store.manager_state(&m.user).await {
                Ok(s) => s,
                Err(e) => return unavailable(e),
            };
            menu = self.manager_items(menu, sc, m, &st);
        }
        // The calls ringing at this assistant's proxy lines, oldest first.
        let mut ringing: Vec<(u64, super::AtAssistant)> = super::lock(&self.svc.ringing)
            .iter()
            .map(|(c, a)| (*c, a.clone()))
            .collect();
        ringing.sort_by_key(|(c, _)| *c);
        for (call, at) in ringing {
            let Some(m) = assisted.iter().find(|m| m.user == at.manager) else {
                continue;
            };
            if m.assistants
                .get(at.assistant)
                .is_none_or(|a| a.user != user)
            {
                continue;
            }
            menu = menu.item(
                &cut(&format!(
                    "To manager: {} for {}",
                    at.calling,
                    self.display(&m.user)
                )),
                &sc.url(&[("cmd", "to_manager"), ("call", &call.to_string())]),
            );
        }
        for m in &assisted {
            let st = match self.svc.node.store.manager_state(&m.user).await {
                Ok(s) => s,
                Err(e) => return unavailable(e),
            };
            let flags = [(st.dnd, "DND"), (st.divert_all, "Divert")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| *n)
                .collect::<Vec<_>>()
                .join(", ");
            let label = format!(
                "{} ({}){}",
                self.display(&m.user),
                m.line,
                if flags.is_empty() {
                    String::new()
                } else {
                    format!(": {flags}")
                }
            );
            menu = menu.item(&cut(&label), &sc.url(&[("cmd", "manager"), ("m", &m.user)]));
        }
        menu.base.prompt = prompt;
        reply(CiscoIPPhoneObject::Menu(sc.soft_keys(menu)))
    }

    /// One manager's screen, for the manager or one of their assistants.
    async fn manager(&self, sc: &Screen<'_>, m: &Manager, prompt: Option<String>) -> Response {
        let st = match self.svc.node.store.manager_state(&m.user).await {
            Ok(s) => s,
            Err(e) => return unavailable(e),
        };
        let mut menu = Menu::new(&cut(&format!(
            "{TITLE}: {} ({})",
            self.display(&m.user),
            m.line
        )));
        menu = self.manager_items(menu, sc, m, &st);
        menu.base.prompt = prompt;
        reply(CiscoIPPhoneObject::Menu(sc.soft_keys(menu)))
    }

    async fn set(
        &self,
        sc: &Screen<'_>,
        user: &str,
        m: &Manager,
        q: &HashMap<String, String>,
    ) -> Response {
        let v = match param(q, "v") {
            "1" => true,
            "0" => false,
            other => return text(&format!("v={other:?}: 1 or 0")),
        };
        let Ok(ver) = param(q, "ver").parse::<i64>() else {
            return text("ver: the version of the screen the change was chosen on");
        };
        let mut change = ManagerChange {
            if_version: Some(ver),
            ..Default::default()
        };
        let (what, slot) = match param(q, "f") {
            "dnd" => ("Do Not Disturb", &mut change.dnd),
            "divert_all" => ("Divert All", &mut change.divert_all),
            "filter_on" => ("Call Filter", &mut change.filter_on),
            other => return text(&format!("f={other:?}: dnd, divert_all or filter_on")),
        };
        *slot = Some(v);
        if let Err(e) = super::http::validate(m, &change) {
            return text(&e);
        }
        let prompt = match self
            .svc
            .node
            .store
            .change_manager_state(&m.user, &change, super::unix_now())
            .await
        {
            Ok(Changed::Applied(s)) => {
                tracing::info!(manager = %m.user, by = user, version = s.version, "assistant: manager state changed from the phone service");
                self.svc.state_changed(m, &s);
                format!("{what} is {}", on_off(v).to_lowercase())
            }
            Ok(Changed::Conflict(_)) => "Changed meanwhile: shown as it is now".to_string(),
            Err(e) => return unavailable(e),
        };
        if m.user == user {
            self.home(sc, user, Some(prompt)).await
        } else {
            self.manager(sc, m, Some(prompt)).await
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "assistant: database unavailable for the phone service");
    text("The Assistant settings cannot be read or changed now (calls are still handled); try again later.")
}

/// A menu item's name: at most 64 characters on the phone.
fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

/// `GET /ma/servlet/MAService?cmd=…`.
pub async fn handler(
    State(ps): State<Arc<PhoneService>>,
    listener: Option<Extension<Listener>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let node = &ps.svc.node;
    let device: String = param(&q, "Name").chars().take(MAX_NAME).collect();
    let cmd = param(&q, "cmd");
    let https = matches!(listener, Some(Extension(Listener::Https)));
    if cmd.eq_ignore_ascii_case("doPhoneService") {
        let url = crate::wire::codec::with_query(
            &format!("{}{PATH}", node.https_base),
            &[("cmd", "login"), ("Name", device.as_str())],
        );
        let input = Input::new(TITLE, &url)
            .item(InputItem::new("User ID", "userid", "A"))
            .item(InputItem::new("PIN", "pin", "NP"));
        return reply(CiscoIPPhoneObject::Input(input));
    }
    if !https {
        // Nothing that carries a PIN or a session is taken in clear.
        return text("The Assistant service answers over HTTPS only.");
    }
    let base = node.https_base.as_str();
    if cmd == "login" {
        let user: String = param(&q, "userid").chars().take(MAX_NAME).collect();
        if let Err(why) = check_pin(node, &user, param(&q, "pin")).await {
            tracing::info!(
                user,
                device,
                reason = why,
                "assistant: phone service login refused"
            );
            return text("Login failed: check your user ID and PIN.");
        }
        let token = sign(&ps.secret, &user, &device, super::unix_now() + TOKEN_SECS);
        tracing::info!(user, device, "assistant: phone service login");
        let sc = Screen {
            base,
            device: &device,
            token: &token,
        };
        return ps.home(&sc, &user, None).await;
    }
    let token = param(&q, "t");
    let user = match verify(&ps.secret, token, &device, super::unix_now()) {
        Ok(u) => u,
        Err(why) => return text(why),
    };
    let sc = Screen {
        base,
        device: &device,
        token,
    };
    // The manager named by `m`, when the user may act for them; else the refusal's words.
    let named = |m: &str| {
        ps.svc
            .manager(m)
            .filter(|m| may_act(&user, m))
            .ok_or_else(|| format!("You may not act for {m:?}."))
    };
    match cmd {
        "menu" => ps.home(&sc, &user, None).await,
        "manager" => match named(param(&q, "m")) {
            Ok(m) => ps.manager(&sc, &m, None).await,
            Err(why) => text(&why),
        },
        "set" => match named(param(&q, "m")) {
            Ok(m) => ps.set(&sc, &user, &m, &q).await,
            Err(why) => text(&why),
        },
        "intercept" => match named(param(&q, "m")) {
            Ok(m) if m.mode == Mode::Shared => {
                text("Intercept is not available in shared line mode.")
            }
            Ok(m) => {
                let prompt = match ps.svc.intercept(&m).await {
                    Some(call) => {
                        tracing::info!(call, manager = %m.user, by = user, "assistant: intercepted from the phone service");
                        format!("Intercepted: rings at {}", m.line)
                    }
                    None => "No call rings at an assistant".to_string(),
                };
                if m.user == user {
                    ps.home(&sc, &user, Some(prompt)).await
                } else {
                    ps.manager(&sc, &m, Some(prompt)).await
                }
            }
            Err(why) => text(&why),
        },
        "to_manager" => {
            let Ok(call) = param(&q, "call").parse::<u64>() else {
                return text("call: the number of a call ringing at your proxy line");
            };
            let prompt = match ps.svc.to_manager(&user, call).await {
                Ok(line) => format!("Sent to the manager: rings at {line}"),
                Err(e) => e,
            };
            ps.home(&sc, &user, Some(prompt)).await
        }
        other => text(&format!(
            "cmd={other:?}: doPhoneService, login, menu, manager, set, intercept or to_manager"
        )),
    }
}

/// The PIN check, with the PIN lockout of the phone services (the Personal Directory's).
async fn check_pin(
    node: &Arc<crate::node::NodeState>,
    user: &str,
    pin: &str,
) -> Result<(), &'static str> {
    use crate::services::authenticate::{check_secret, Lockout, SecretCheck};
    let cluster = node.cluster();
    // An unknown user is checked against a dummy hash: the answer does not tell who exists.
    let hash = cluster.end_user(user).and_then(|u| u.pin_hash.clone());
    let p = cluster.section::<crate::services::phone_services::model::PhoneServicesParameters>();
    let lockout = Lockout {
        threshold: p.auth_lockout_threshold,
        lock_secs: i64::from(p.auth_lockout_minutes) * 60,
    };
    drop(cluster);
    match check_secret(node, &format!("pin:{user}"), pin, hash.as_deref(), lockout).await {
        SecretCheck::Ok => Ok(()),
        SecretCheck::Busy { .. } | SecretCheck::Throttled { .. } => Err("busy or throttled"),
        SecretCheck::Locked => Err("locked out"),
        SecretCheck::Wrong { .. } => Err("wrong PIN"),
        SecretCheck::Unavailable(_) => Err("database unavailable"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r18_tokens_name_their_user_only_on_their_device_until_they_expire() {
        let k = [7u8; 32];
        let t = sign(&k, "manager1", "SEP00036BC7C001", 1_000);
        assert_eq!(
            verify(&k, &t, "SEP00036BC7C001", 999).as_deref(),
            Ok("manager1")
        );
        assert!(verify(&k, &t, "SEP00036BC7C001", 1_001)
            .unwrap_err()
            .contains("expired"));
        assert!(verify(&k, &t, "SEP00036BC7C002", 999)
            .unwrap_err()
            .contains("another phone"));
        // Another key, a changed payload (another user), a cut tag, garbage: all refused.
        assert!(verify(&[8u8; 32], &t, "SEP00036BC7C001", 999).is_err());
        let (p, tag) = t.split_once('.').unwrap();
        let forged = format!("{}.{tag}", hex::encode("assistant1\nSEP00036BC7C001\n1000"));
        assert_ne!(forged.split_once('.').unwrap().0, p);
        assert!(verify(&k, &forged, "SEP00036BC7C001", 999).is_err());
        assert!(verify(&k, &format!("{p}.{}", &tag[..30]), "SEP00036BC7C001", 999).is_err());
        for junk in ["", ".", "zz.zz", "a", &"ab".repeat(5_000)] {
            assert!(verify(&k, junk, "SEP00036BC7C001", 999).is_err(), "{junk}");
        }
    }
}
