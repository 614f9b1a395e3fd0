//! Fetching a service the way a phone does (`ucm services lint`): the headers a phone of the
//! model sends, and what in the answer a phone would stumble on before parsing the object.

use super::{http_client, ClientOptions};
use crate::wire::xml::{DisplayKind, PhoneModel};

/// A service's answer, and what about the request or the answer a phone minds.
pub struct Fetched {
    pub body: Vec<u8>,
    /// The URL is too long for a phone, the Content-Type is not XML or has no charset.
    pub notes: Vec<String>,
}

/// The headers a phone of `model` (default a CP-8851) sends with a request.
pub fn phone_headers(model: Option<&PhoneModel>, sdk: &str, locale: &str) -> Vec<(String, String)> {
    let name = model.map_or("CP-8851", |m| m.name);
    let display = model.map_or("559, 265, 24, C".to_string(), |m| {
        let kind = match m.display {
            DisplayKind::Colour => "C",
            _ => "G",
        };
        format!("{}, {}, {}, {kind}", m.width, m.height, m.depth)
    });
    let charset = if model.is_some_and(|m| m.name == "CP-7960") {
        "iso-8859-1, utf-8;q=0.8"
    } else {
        "utf-8,iso-8859-1;q=0.8"
    };
    vec![
        (
            "User-Agent".into(),
            format!("Cisco-{}/{sdk}", name.replace('-', "")),
        ),
        ("x-CiscoIPPhoneModelName".into(), name.into()),
        ("x-CiscoIPPhoneDisplay".into(), display),
        ("x-CiscoIPPhoneSDKVersion".into(), sdk.into()),
        ("Accept".into(), "x-CiscoIPPhone/*;version=3.3.4".into()),
        ("Accept-Language".into(), locale.into()),
        ("Accept-Charset".into(), charset.into()),
    ]
}

/// GETs `url` with a phone's headers. A status other than 2xx is an error.
pub async fn fetch_as_phone(
    url: &str,
    model: Option<&PhoneModel>,
    sdk: &str,
    locale: &str,
    opts: &ClientOptions,
) -> Result<Fetched, String> {
    let mut notes = Vec::new();
    if url.len() > 256 {
        notes.push(format!(
            "the URL is {} characters; phones take at most 256",
            url.len()
        ));
    }
    let client = http_client(opts).map_err(|e| e.to_string())?;
    let mut req = client.get(url);
    for (k, v) in phone_headers(model, sdk, locale) {
        req = req.header(k, v);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("{url}: {}", super::describe_error(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: HTTP {}", resp.status()));
    }
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !ct.starts_with("text/xml") && !ct.starts_with("application/xml") {
        notes.push(format!(
            "Content-Type is {ct:?}; phones expect text/xml with a charset"
        ));
    } else if !ct.contains("charset") {
        notes.push("Content-Type has no charset; phones then assume ISO-8859-1".into());
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .to_vec();
    Ok(Fetched { body, notes })
}
