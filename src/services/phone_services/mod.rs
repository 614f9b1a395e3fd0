//! The services menu a phone asks for when the Services (or Applications) button is pressed
//! with Services Provisioning set to External URL or Both (`/ccmcip/getservicesmenu.jsp`,
//! as in Cisco's IP Phone Services architecture).
//!
//! The phone names itself with `name=SEP...`; `locale` and any other parameter are tolerated.
//! The answer lists the device's subscribed services (the Extension Mobility login profile's
//! when someone is logged in) plus every enterprise subscription, without disabled services,
//! as `CiscoIPPhoneMenu` objects built with [`crate::wire::xml`]:
//!
//! - **Grouping.** Services are grouped by service type (Services, Directories, Messages).
//!   When the device has services of one type only, the answer is the flat list of them. When
//!   it has more than one type, the answer is a top menu of the types ("Services",
//!   "Directories", "Messages", in that order) whose items point back here with `type=...`;
//!   `type=services|directories|messages` asks for one type's flat list directly.
//! - **Secure URLs.** A phone that uses HTTPS gets each service's secure URL (when it has
//!   one): the request came in over this node's HTTPS listener (its `Host` is the HTTPS
//!   authority), or the device's security profile is authenticated or encrypted (such phones
//!   have the trust list and use HTTPS, as the configuration file's `useHTTPS` says).
//! - **Parameters.** `#DEVICENAME#` becomes the device name and `#EMCC#` `false` (no EMCC
//!   here); `{http}` / `{https}` this node's base URLs.
//! - **Limits.** At most 100 items (the phone's maximum); more are dropped with a warning in
//!   the log. Names are cut to the 64 characters a MenuItem allows.
//!
//! An unknown or missing device gets a `CiscoIPPhoneText` saying so (HTTP 200, so the phone
//! shows it), and a log line.

pub mod check;
pub mod feed;
pub mod midlet;
pub mod model;
pub mod personal_directory;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

use crate::cluster::Cluster;
use crate::config::model::{Device, DeviceSecurityMode, PhoneService, ServiceType};
use crate::node::NodeState;
use crate::wire::xml::{CiscoIPPhoneObject, Menu, Text};

/// Menu items a phone shows at most.
pub const MAX_MENU_ITEMS: usize = 100;
/// A MenuItem's Name is at most this many characters.
pub const MAX_NAME_CHARS: usize = 64;

/// The services of `dev` a phone is offered: enabled, and subscribed on the device (or its
/// login profile, already applied by [`Cluster::effective_device`]) or by enterprise
/// subscription, in the cluster definition's order.
pub fn services_for<'a>(
    cluster: &'a crate::config::model::ClusterDefinition,
    dev: &Device,
) -> Vec<&'a PhoneService> {
    cluster
        .phone_services
        .iter()
        .filter(|s| {
            s.enabled && (s.enterprise_subscription || dev.subscribed_services.contains(&s.name))
        })
        .collect()
}

/// Whether the device's phone uses HTTPS for services by its security profile.
pub fn device_uses_https(cluster: &crate::config::model::ClusterDefinition, dev: &Device) -> bool {
    cluster
        .phone_security_profiles
        .iter()
        .find(|p| Some(&p.name) == dev.security_profile.as_ref())
        .is_some_and(|p| p.device_security_mode != DeviceSecurityMode::NonSecure)
}

/// Replaces the phone parameters a service URL may carry.
pub fn substitute(url: &str, device: &str) -> String {
    url.replace("#DEVICENAME#", device)
        .replace("#EMCC#", "false")
}

/// The URL a phone is given for `s`: the secure one when `secure` and there is one, with
/// phone parameters substituted and `{http}`/`{https}` expanded by `expand`.
pub fn service_url(
    s: &PhoneService,
    secure: bool,
    device: &str,
    expand: impl Fn(&str) -> String,
) -> String {
    let raw = match (&s.secure_url, secure) {
        (Some(u), true) if !u.is_empty() => u.as_str(),
        _ => s.url.as_str(),
    };
    substitute(&expand(raw), device)
}

pub fn type_param(t: ServiceType) -> &'static str {
    match t {
        ServiceType::Services => "services",
        ServiceType::Directories => "directories",
        ServiceType::Messages => "messages",
    }
}

fn type_title(t: ServiceType) -> &'static str {
    match t {
        ServiceType::Services => "Services",
        ServiceType::Directories => "Directories",
        ServiceType::Messages => "Messages",
    }
}

fn parse_type(s: &str) -> Option<ServiceType> {
    match s.to_ascii_lowercase().as_str() {
        "services" | "0" => Some(ServiceType::Services),
        "directories" | "1" => Some(ServiceType::Directories),
        "messages" | "2" => Some(ServiceType::Messages),
        _ => None,
    }
}

fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// What the menu request asked for.
#[derive(Debug, Clone, Default)]
pub struct MenuRequest<'a> {
    pub device: &'a str,
    pub secure: bool,
    /// One type's flat list; `None`: the whole menu (a top menu of types when several).
    pub service_type: Option<ServiceType>,
    /// The URL of this endpoint as the phone reached it (for the top menu's items).
    pub self_url: String,
}

/// The services menu for a device that exists (see the module docs).
pub fn services_menu(
    cluster: &Cluster,
    dev: &Device,
    req: &MenuRequest<'_>,
    expand: impl Fn(&str) -> String,
) -> CiscoIPPhoneObject {
    let services = services_for(cluster, dev);
    let secure = req.secure || device_uses_https(cluster, dev);
    let order = [
        ServiceType::Services,
        ServiceType::Directories,
        ServiceType::Messages,
    ];
    let present: Vec<ServiceType> = order
        .into_iter()
        .filter(|t| services.iter().any(|s| s.service_type == *t))
        .collect();
    let flat = |t: Option<ServiceType>| {
        let mut menu = Menu::new(t.map_or("Services", type_title));
        let mut dropped = 0usize;
        for s in services
            .iter()
            .filter(|s| t.is_none_or(|t| s.service_type == t))
        {
            if menu.items.len() >= MAX_MENU_ITEMS {
                dropped += 1;
                continue;
            }
            menu = menu.item(
                &cut(&s.name, MAX_NAME_CHARS),
                &service_url(s, secure, &dev.name, &expand),
            );
        }
        if dropped > 0 {
            tracing::warn!(
                device = %dev.name,
                dropped,
                "services menu: more than {MAX_MENU_ITEMS} services; the rest are left out"
            );
        }
        if menu.items.is_empty() {
            menu.base.prompt = Some("No services".into());
        }
        CiscoIPPhoneObject::Menu(menu)
    };
    match req.service_type {
        Some(t) => flat(Some(t)),
        None if present.len() <= 1 => flat(present.first().copied()),
        None => {
            let mut top = Menu::new("Services");
            for t in present {
                let url = crate::wire::codec::with_query(
                    &req.self_url,
                    &[("name", &dev.name), ("type", type_param(t))],
                );
                top = top.item(type_title(t), &url);
            }
            CiscoIPPhoneObject::Menu(top)
        }
    }
}

/// The answer for a device name that is not in the cluster.
pub fn unknown_device(name: &str) -> CiscoIPPhoneObject {
    let text = if name.is_empty() {
        "The phone did not say which device it is (name=SEP...).".to_string()
    } else {
        format!(
            "Device {} is not configured on this cluster.",
            cut(name, 64)
        )
    };
    CiscoIPPhoneObject::Text(Text::new("Services", &text))
}

/// Whether the request reached this node's HTTPS listener, going by its `Host` header.
pub fn came_over_https(state: &NodeState, headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let https = state
        .https_base
        .strip_prefix("https://")
        .unwrap_or(&state.https_base);
    let http = state
        .http_base
        .strip_prefix("http://")
        .unwrap_or(&state.http_base);
    // Same port as the HTTPS listener (hosts differ when reached by another name).
    let port = |a: &str| a.rsplit_once(':').map(|(_, p)| p.to_string());
    !host.is_empty()
        && port(host).is_some()
        && port(host) == port(https)
        && port(https) != port(http)
}

fn param<'a>(m: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    m.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `text/xml; charset=UTF-8` with the serialised object.
pub fn xml_reply(obj: &CiscoIPPhoneObject) -> Response {
    (
        [(header::CONTENT_TYPE, "text/xml; charset=UTF-8")],
        obj.to_xml(),
    )
        .into_response()
}

/// `GET /ccmcip/getservicesmenu.jsp?name=SEP...[&type=...][&locale=...]`.
pub async fn menu_handler(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let cluster = state.cluster();
    let name = param(&q, "name").unwrap_or("").trim();
    let Some(dev) = cluster.effective_device(name) else {
        tracing::info!(device = name, "services menu: unknown device");
        return xml_reply(&unknown_device(name));
    };
    let secure = came_over_https(&state, &headers);
    let base = if secure {
        &state.https_base
    } else {
        &state.http_base
    };
    let req = MenuRequest {
        device: name,
        secure,
        service_type: param(&q, "type").and_then(parse_type),
        self_url: format!("{base}/ccmcip/getservicesmenu.jsp"),
    };
    let obj = services_menu(&cluster, &dev, &req, |u| state.expand_url(u));
    tracing::debug!(device = name, secure, "services menu");
    xml_reply(&obj)
}

/// `GET /ucm/services/device-address?name=SEP...` with HTTP Basic: where a registered device
/// is, for `ucm services push --phone SEP...`. Only a user who may push to the device (the
/// authentication URL's rule, lockout included) is told: 200 `{"device","ip"}`, 401 without
/// or with refused credentials, 404 for a device that is not registered here.
pub async fn device_address_handler(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    use axum::http::StatusCode;
    let name = param(&q, "name").unwrap_or("").trim().to_string();
    let creds = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::wire::codec::parse_basic_auth);
    let unauthorized = || {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"ucm\"")],
            "credentials of a user who may push to the device are needed\n",
        )
            .into_response()
    };
    let Some((user, password)) = creds else {
        return unauthorized();
    };
    let verdict =
        crate::services::authenticate::check_with_lockout(&state, &user, &password, &name).await;
    if verdict != crate::services::authenticate::Verdict::Authorized {
        tracing::info!(user, device = %name, "device address: refused");
        return unauthorized();
    }
    match state.registrar.device_bindings(&name).first() {
        Some(b) => axum::Json(serde_json::json!({
            "device": name,
            "ip": b.source.ip().to_string(),
        }))
        .into_response(),
        None => (StatusCode::NOT_FOUND, format!("{name} is not registered\n")).into_response(),
    }
}

/// `GET /ucm/services/devices?device_pool=P` or `?recipient_group=G` (HTTP Basic): the
/// registered devices of the pool or paging recipient group that the user may push to
/// (associated with them, or all with CTI control of all devices), for `ucm services push
/// --device-pool` and `--group`.
pub async fn devices_handler(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    use axum::http::StatusCode;
    let pool = param(&q, "device_pool").unwrap_or("").trim().to_string();
    let group = param(&q, "recipient_group").map(|g| g.trim().to_string());
    let user =
        match crate::services::authenticate::basic_user(&state, &headers, "a cluster user").await {
            Ok(u) => u,
            Err(refused) => return refused,
        };
    let cluster = state.cluster();
    let paging = cluster.section::<super::paging::model::Paging>();
    if let Some(group) = group {
        let Some(g) = paging.recipient_groups.iter().find(|g| g.name == group) else {
            return (
                StatusCode::NOT_FOUND,
                format!("no recipient group {group:?}\n"),
            )
                .into_response();
        };
        let members = crate::services::paging::groups::members(
            &cluster,
            &cluster.section::<super::paging::model::Paging>(),
            g,
        );
        let out: Vec<&String> = members
            .devices
            .iter()
            .filter(|d| crate::services::authenticate::may_push(&cluster, &user, d))
            .filter(|d| state.registrar.is_registered(d))
            .collect();
        return axum::Json(serde_json::json!({ "recipient_group": group, "devices": out }))
            .into_response();
    }
    if !cluster.device_pools.iter().any(|p| p.name == pool) {
        return (StatusCode::NOT_FOUND, format!("no device pool {pool:?}\n")).into_response();
    }
    let out: Vec<String> = cluster
        .devices
        .iter()
        .filter(|d| d.device_pool == pool)
        .filter(|d| crate::services::authenticate::may_push(&cluster, &user, &d.name))
        .filter(|d| state.registrar.is_registered(&d.name))
        .map(|d| d.name.clone())
        .collect();
    axum::Json(serde_json::json!({ "device_pool": pool, "devices": out })).into_response()
}

/// IP Phone Services: the services menu, the authentication URL, Corporate Directory and the
/// device lookups `ucm services push` uses.
pub const SERVICE: super::ServiceSpec = super::ServiceSpec {
    flags: &[super::Flag {
        flag: crate::config::model::NodeService::PhoneServices,
        name: "IP Phone Services",
        paths: &[
            "/ccmcip/",
            "/ccmpd/",
            "/ucm/services/",
            "/ucm/midlets/",
            "/ucm/pd/",
        ],
    }],
    listeners: &[],
    sections: &[crate::config::SectionSpec::of::<
        model::PhoneServicesParameters,
    >()],
    check: Some(check::check),
    model_source: include_str!("model.rs"),
    feed: Some(feed::FEED),
    status: &[super::StatusSection {
        key: "locked_out_users",
        title: "Locked-out users",
        columns: &["user", "secret", "locked_until"],
        read: status_locked,
    }],
    start: start_service,
};

/// The users whose password or PIN is locked now, cluster-wide (the cluster status).
fn status_locked(state: &NodeState, now: i64) -> super::StatusFuture<'_> {
    use store::Lockouts;
    Box::pin(async move {
        let locked = state.store.locked_credentials(now).await?;
        Ok(locked
            .into_iter()
            .map(|(credential, until)| {
                let (kind, user) = credential
                    .split_once(':')
                    .unwrap_or(("password", &credential));
                serde_json::json!({"user": user, "secret": kind, "locked_until": until})
            })
            .collect())
    })
}

fn start_service(s: super::Start) -> super::StartFuture {
    use crate::services::{authenticate, directory};
    use axum::routing::get;
    let routes = axum::Router::new()
        .route(
            "/ccmcip/authenticate.jsp",
            get(authenticate::handler).post(authenticate::handler),
        )
        .route("/ccmcip/getservicesmenu.jsp", get(menu_handler))
        .route("/ucm/services/devices", get(devices_handler))
        .route("/ucm/services/device-address", get(device_address_handler))
        .route("/ccmcip/xmldirectory.jsp", get(directory::input_handler))
        .route(
            "/ccmcip/xmldirectoryinput.jsp",
            get(directory::input_handler),
        )
        .route("/ccmcip/xmldirectorylist.jsp", get(directory::list_handler))
        .route("/ucm/midlets/app.jad", get(midlet::jad_handler))
        .route("/ucm/midlets/app.jar", get(midlet::jar_handler))
        .route(
            "/ccmpd/pdCheckLogin.do",
            get(personal_directory::check_login_handler),
        )
        .route("/ccmpd/login.do", get(personal_directory::login_handler))
        .route(
            "/ucm/pd/entries",
            get(personal_directory::list_handler).post(personal_directory::add_handler),
        )
        .route(
            "/ucm/pd/entries/{id}",
            axum::routing::delete(personal_directory::delete_handler),
        )
        .with_state(s.node);
    Box::pin(async move {
        Ok(super::Parts {
            routes,
            tasks: Vec::new(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::ServiceCategory;

    fn svc(name: &str, t: ServiceType, ent: bool, enabled: bool) -> PhoneService {
        PhoneService {
            name: name.into(),
            description: None,
            url: format!("{{http}}/{name}?d=#DEVICENAME#"),
            secure_url: Some(format!("{{https}}/{name}?d=#DEVICENAME#")),
            service_type: t,
            category: ServiceCategory::Xml,
            enterprise_subscription: ent,
            enabled,
            midlet: None,
        }
    }

    fn cluster(services: Vec<PhoneService>, subscribed: &[&str]) -> Cluster {
        let mut def = crate::services::demo().expect("demo");
        def.phone_services = services;
        def.devices[0].subscribed_services = subscribed.iter().map(|s| s.to_string()).collect();
        Cluster::new(def)
    }

    fn expand(u: &str) -> String {
        u.replace("{https}", "https://n:8443")
            .replace("{http}", "http://n:8080")
    }

    fn items(o: &CiscoIPPhoneObject) -> Vec<(String, String)> {
        match o {
            CiscoIPPhoneObject::Menu(m) => m
                .items
                .iter()
                .map(|i| {
                    (
                        i.name.clone().unwrap_or_default(),
                        i.url.clone().unwrap_or_default(),
                    )
                })
                .collect(),
            other => panic!("not a menu: {other:?}"),
        }
    }

    fn req(dev: &str) -> MenuRequest<'_> {
        MenuRequest {
            device: dev,
            secure: false,
            service_type: None,
            self_url: "http://n:8080/ccmcip/getservicesmenu.jsp".into(),
        }
    }

    #[test]
    fn subscribed_plus_enterprise_without_disabled() {
        let c = cluster(
            vec![
                svc("A", ServiceType::Services, false, true),
                svc("B", ServiceType::Services, true, true),
                svc("C", ServiceType::Services, false, false),
                svc("D", ServiceType::Services, true, false),
                svc("E", ServiceType::Services, false, true),
            ],
            &["A", "C"],
        );
        let dev = c.effective_device(&c.devices[0].name).unwrap();
        let name = dev.name.clone();
        let o = services_menu(&c, &dev, &req(&name), expand);
        assert_eq!(
            items(&o),
            vec![
                ("A".into(), format!("http://n:8080/A?d={name}")),
                ("B".into(), format!("http://n:8080/B?d={name}")),
            ]
        );
        assert!(crate::wire::xml::validate(&o, None).is_empty());
        // Over HTTPS: the secure URLs.
        let mut r = req(&name);
        r.secure = true;
        let o = services_menu(&c, &dev, &r, expand);
        assert_eq!(items(&o)[0].1, format!("https://n:8443/A?d={name}"));
    }

    #[test]
    fn several_types_give_a_top_menu_and_one_type_a_flat_list() {
        let c = cluster(
            vec![
                svc("M", ServiceType::Messages, true, true),
                svc("S", ServiceType::Services, true, true),
                svc("D", ServiceType::Directories, true, true),
            ],
            &[],
        );
        let dev = c.effective_device(&c.devices[0].name).unwrap();
        let name = dev.name.clone();
        let top = items(&services_menu(&c, &dev, &req(&name), expand));
        let names: Vec<&str> = top.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Services", "Directories", "Messages"]);
        assert!(top[1].1.contains("type=directories") && top[1].1.contains(&name));
        let mut r = req(&name);
        r.service_type = Some(ServiceType::Directories);
        assert_eq!(
            items(&services_menu(&c, &dev, &r, expand)),
            vec![("D".into(), format!("http://n:8080/D?d={name}"))]
        );
    }

    #[test]
    fn at_most_100_items() {
        let many: Vec<PhoneService> = (0..130)
            .map(|i| svc(&format!("s{i}"), ServiceType::Services, true, true))
            .collect();
        let c = cluster(many, &[]);
        let dev = c.effective_device(&c.devices[0].name).unwrap();
        let name = dev.name.clone();
        let o = services_menu(&c, &dev, &req(&name), expand);
        assert_eq!(items(&o).len(), MAX_MENU_ITEMS);
        assert!(crate::wire::xml::validate(&o, None).is_empty());
    }

    #[test]
    fn unknown_devices_get_a_text() {
        let o = unknown_device("SEP000000000000");
        assert!(o.to_xml().contains("SEP000000000000 is not configured"));
        assert!(crate::wire::xml::validate(&o, None).is_empty());
    }
}
