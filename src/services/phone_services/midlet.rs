//! Java MIDlet services (seed, "IP Phone Services Architecture"): the service's URL is where
//! the phone gets the MIDlet's descriptor (JAD); "the server should return the appropriate JAR
//! file for that device". For a service with a `midlet` in the definition this node serves
//! both:
//!
//! - `GET /ucm/midlets/app.jad?service=NAME`: the JAD (`text/vnd.sun.j2me.app-descriptor`),
//!   whose `MIDlet-Jar-URL` names the JAR for the asking phone's model (its
//!   `x-CiscoIPPhoneModelName` header, or `model=`) and `MIDlet-Jar-Size` its size.
//! - `GET /ucm/midlets/app.jar?service=NAME&model=MODEL`: that JAR.
//!
//! An unknown service, a service without a MIDlet, or a model without a JAR is a 404 saying
//! which; a JAR file that cannot be read is a 500 (the file and reason are logged).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::config::model::{Midlet, MidletJar, PhoneService};
use crate::node::NodeState;

/// The JAD's media type (MIDP 2.0).
pub const JAD_CONTENT_TYPE: &str = "text/vnd.sun.j2me.app-descriptor";

/// A phone model as compared: `Cisco 8845`, `CP-8845` and `cp-8845` are one model.
pub fn model_key(model: &str) -> String {
    let m = model.trim().to_ascii_uppercase();
    let m = m.strip_prefix("CISCO").map(str::trim_start).unwrap_or(&m);
    let m = m.strip_prefix("IP PHONE").map(str::trim_start).unwrap_or(m);
    let m = m.strip_prefix("CP-").unwrap_or(m);
    m.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The JAR of `midlet` for `model`: the first whose models name it (or `*`).
pub fn jar_for<'a>(midlet: &'a Midlet, model: &str) -> Option<&'a MidletJar> {
    let key = model_key(model);
    midlet
        .jars
        .iter()
        .find(|j| j.models.iter().any(|m| m == "*" || model_key(m) == key))
}

/// The JAD text of `s` for the JAR at `jar_url` of `jar_size` bytes.
pub fn jad(s: &PhoneService, m: &Midlet, jar_url: &str, jar_size: u64) -> String {
    // Attribute values are single lines (checked with the definition).
    format!(
        "MIDlet-1: {name}, , {class}\nMIDlet-Jar-Size: {jar_size}\nMIDlet-Jar-URL: {jar_url}\nMIDlet-Name: {name}\nMIDlet-Vendor: {vendor}\nMIDlet-Version: {version}\n",
        name = s.name,
        class = m.class,
        vendor = m.vendor,
        version = m.version,
    )
}

fn not_found(why: String) -> Response {
    tracing::info!(reason = %why, "MIDlet request refused");
    (StatusCode::NOT_FOUND, format!("{why}\n")).into_response()
}

/// The service named by `service=`, with its MIDlet, and the model asked for; otherwise why
/// not (a 404).
fn lookup(
    state: &NodeState,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<(PhoneService, Midlet, String), String> {
    let name = q.get("service").map(|s| s.trim()).unwrap_or("");
    let cluster = state.cluster();
    let Some(s) = cluster.phone_services.iter().find(|s| s.name == name) else {
        return Err(format!("no phone service {name:?}"));
    };
    let Some(m) = s.midlet.clone().filter(|_| s.enabled) else {
        return Err(format!(
            "phone service {name:?} has no MIDlet served here (or is disabled)"
        ));
    };
    let model = q
        .get("model")
        .cloned()
        .or_else(|| {
            headers
                .get("x-CiscoIPPhoneModelName")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    Ok((s.clone(), m, model))
}

/// `GET /ucm/midlets/app.jad?service=NAME[&model=MODEL]`.
pub async fn jad_handler(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (s, m, model) = match lookup(&state, &headers, &q) {
        Ok(x) => x,
        Err(why) => return not_found(why),
    };
    let Some(jar) = jar_for(&m, &model) else {
        return not_found(format!(
            "phone service {:?} has no JAR for model {model:?}",
            s.name
        ));
    };
    let size = match tokio::fs::metadata(&jar.file).await {
        Ok(md) if md.is_file() => md.len(),
        Ok(_) => return unreadable(&jar.file, "not a file"),
        Err(e) => return unreadable(&jar.file, &e.to_string()),
    };
    let base = if super::came_over_https(&state, &headers) {
        &state.https_base
    } else {
        &state.http_base
    };
    let jar_url = crate::wire::codec::with_query(
        &format!("{base}/ucm/midlets/app.jar"),
        &[("service", &s.name), ("model", &model)],
    );
    tracing::debug!(service = %s.name, model, "MIDlet JAD");
    (
        [(header::CONTENT_TYPE, JAD_CONTENT_TYPE)],
        jad(&s, &m, &jar_url, size),
    )
        .into_response()
}

fn unreadable(file: &str, why: &str) -> Response {
    tracing::warn!(file, reason = why, "MIDlet JAR cannot be read");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "the MIDlet's JAR file cannot be read on this node (see its log)\n",
    )
        .into_response()
}

/// `GET /ucm/midlets/app.jar?service=NAME&model=MODEL`.
pub async fn jar_handler(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (s, m, model) = match lookup(&state, &headers, &q) {
        Ok(x) => x,
        Err(why) => return not_found(why),
    };
    let Some(jar) = jar_for(&m, &model) else {
        return not_found(format!(
            "phone service {:?} has no JAR for model {model:?}",
            s.name
        ));
    };
    match tokio::fs::read(&jar.file).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/java-archive")], bytes).into_response(),
        Err(e) => unreadable(&jar.file, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_match_however_spelled() {
        assert_eq!(model_key("Cisco 8845"), "8845");
        assert_eq!(model_key("CP-8845"), "8845");
        assert_eq!(model_key("cp-8845"), "8845");
        assert_eq!(model_key("Cisco IP Phone 7975"), "7975");
        let m = Midlet {
            version: "1.0".into(),
            vendor: "V".into(),
            class: "a.B".into(),
            jars: vec![
                MidletJar {
                    models: vec!["Cisco 8845".into(), "Cisco 8865".into()],
                    file: "88xx.jar".into(),
                },
                MidletJar {
                    models: vec!["*".into()],
                    file: "any.jar".into(),
                },
            ],
        };
        assert_eq!(jar_for(&m, "CP-8865").unwrap().file, "88xx.jar");
        assert_eq!(jar_for(&m, "CP-7975").unwrap().file, "any.jar");
    }
}
