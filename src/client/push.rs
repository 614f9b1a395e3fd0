//! Pushing a CiscoIPPhone object to phones (`ucm services push`), as a third-party application
//! does: a POST to each phone's `/CGI/Execute` with the object in the form field `XML` and the
//! user's HTTP Basic credentials (the phone checks them with the cluster's authentication URL),
//! then the phone's CiscoIPPhoneResponse or CiscoIPPhoneError read back.
//!
//! A phone is an address (`host`, `host:port`, `http://host:port`) or a device name whose
//! registered address the node tells; a device pool or a paging recipient group is the list of
//! its registered phones the node gives. Both answers go only to a user who may push to them.

use std::sync::Arc;

use crate::wire::codec::percent_encode;
use crate::wire::xml::{self, CiscoIPPhoneObject, Execute, ExecuteReply, Priority};

/// How a push went, worst last: the exit code a push of this kind alone gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Every item succeeded.
    Ok = 0,
    /// The phone (or the node, for the user's credentials) refused, or an item failed.
    Refused = 1,
    /// Unreachable, unknown, or an answer that is not a CiscoIPPhone reply.
    Failed = 2,
}

/// Why a push, or finding the phones to push to, did not get a phone's answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PushError {
    /// The node refused the user's credentials for the device, pool or group.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

impl PushError {
    pub fn verdict(&self) -> Verdict {
        match self {
            PushError::Refused(_) => Verdict::Refused,
            PushError::Failed(_) => Verdict::Failed,
        }
    }
}

/// A set of phones the node lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSet {
    DevicePool,
    RecipientGroup,
}

impl DeviceSet {
    /// The query parameter of the node's device list.
    fn param(self) -> &'static str {
        match self {
            DeviceSet::DevicePool => "device_pool",
            DeviceSet::RecipientGroup => "recipient_group",
        }
    }

    fn label(self) -> &'static str {
        match self {
            DeviceSet::DevicePool => "device pool",
            DeviceSet::RecipientGroup => "recipient group",
        }
    }
}

/// `SEP` and 12 hex digits: a device name the node resolves, not an address.
pub fn is_device_name(s: &str) -> bool {
    s.strip_prefix("SEP")
        .is_some_and(|m| m.len() == 12 && m.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `http://host[:port]/CGI/Execute` for a phone given as an address.
pub fn execute_url(phone: &str) -> Result<String, PushError> {
    let p = phone.trim().trim_end_matches('/');
    if p.is_empty() || p.contains(char::is_whitespace) {
        return Err(PushError::Failed(format!(
            "--phone {phone:?} is not an address"
        )));
    }
    let base = if p.starts_with("http://") || p.starts_with("https://") {
        p.to_string()
    } else {
        format!("http://{p}")
    };
    Ok(if base.ends_with("/CGI/Execute") {
        base
    } else {
        format!("{base}/CGI/Execute")
    })
}

/// A CiscoIPPhoneExecute of `uris` at `priority` (0 now, 1 when idle, 2 only if idle), checked
/// against the schema; the error lists what is wrong with it.
pub fn execute_object(uris: &[String], priority: u8) -> Result<String, String> {
    let prio = match priority {
        1 => Priority::WhenIdle,
        2 => Priority::IfIdle,
        _ => Priority::Immediately,
    };
    let mut ex = Execute::new();
    for u in uris {
        ex = ex.item(u, prio);
    }
    let obj: CiscoIPPhoneObject = ex.into();
    let problems = xml::validate(&obj, None);
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|v| v.to_string()).collect();
        return Err(format!(
            "the Execute object is not valid:\n  {}",
            list.join("\n  ")
        ));
    }
    Ok(obj.to_xml())
}

/// Pushes one object to phones as one user.
pub struct Pusher {
    http: reqwest::Client,
    /// The node that resolves device names and lists pools (its HTTP base URL).
    server: String,
    /// The phones' HTTP port when a phone is given by device name.
    phone_port: u16,
    user: String,
    password: String,
    /// The object, sent as it is.
    body_xml: String,
}

/// How one push went.
#[derive(Debug, Clone)]
pub struct PushOutcome {
    /// The phone as it was given.
    pub phone: String,
    pub verdict: Verdict,
    /// The phone's answer, when there was one.
    pub reply: Option<ExecuteReply>,
    /// One line saying what happened.
    pub detail: String,
}

impl Pusher {
    pub fn new(
        http: reqwest::Client,
        server: &str,
        phone_port: u16,
        user: &str,
        password: &str,
        body_xml: String,
    ) -> Pusher {
        Pusher {
            http,
            server: server.to_string(),
            phone_port,
            user: user.to_string(),
            password: password.to_string(),
            body_xml,
        }
    }

    /// The address a device registered from, asked of the node with the pushing user's
    /// credentials (only a user who may push to the device is told).
    pub async fn device_address(&self, device: &str) -> Result<String, PushError> {
        let url = format!(
            "{}/ucm/services/device-address?name={device}",
            self.server.trim_end_matches('/')
        );
        let v = self.get_json(&url).await?;
        match v {
            Ok(v) => v["ip"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| PushError::Failed(format!("{url}: no ip in the answer"))),
            Err(401 | 403) => Err(PushError::Refused(format!(
                "{device}: the node refused {}'s credentials for this device",
                self.user
            ))),
            Err(404) => Err(PushError::Failed(format!("{device} is not registered"))),
            Err(s) => Err(PushError::Failed(format!("{url}: HTTP {s}"))),
        }
    }

    /// The registered devices of a device pool or recipient group that the user may push to,
    /// as the node lists them.
    pub async fn devices(&self, set: DeviceSet, name: &str) -> Result<Vec<String>, PushError> {
        let url = format!(
            "{}/ucm/services/devices?{}={}",
            self.server.trim_end_matches('/'),
            set.param(),
            percent_encode(name)
        );
        let label = set.label();
        match self.get_json(&url).await? {
            Ok(v) => Ok(v["devices"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|d| d.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()),
            Err(401 | 403) => Err(PushError::Refused(format!(
                "{label} {name}: the node refused {}'s credentials",
                self.user
            ))),
            Err(404) => Err(PushError::Failed(format!(
                "no {label} {name} in the cluster"
            ))),
            Err(s) => Err(PushError::Failed(format!("{url}: HTTP {s}"))),
        }
    }

    /// A GET to the node as the user: the JSON of a 200, or the status of anything else.
    async fn get_json(&self, url: &str) -> Result<Result<serde_json::Value, u16>, PushError> {
        let failed = |e: &dyn std::fmt::Display| PushError::Failed(format!("{url}: {e}"));
        let r = self
            .http
            .get(url)
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .map_err(|e| failed(&super::describe_error(&e)))?;
        match r.status().as_u16() {
            200 => {
                let body = r.bytes().await.map_err(|e| failed(&e))?;
                let v = serde_json::from_slice(&body).map_err(|e| failed(&e))?;
                Ok(Ok(v))
            }
            s => Ok(Err(s)),
        }
    }

    /// Pushes to one phone.
    pub async fn push(&self, phone: &str) -> PushOutcome {
        match self.try_push(phone).await {
            Ok(reply) => {
                let (verdict, detail) = match &reply {
                    ExecuteReply::Response(r) if r.all_ok() => {
                        (Verdict::Ok, "every item succeeded".into())
                    }
                    ExecuteReply::Response(_) => {
                        (Verdict::Refused, "not every item succeeded".into())
                    }
                    ExecuteReply::Error(e) => (
                        Verdict::Refused,
                        format!(
                            "CiscoIPPhoneError {}: {}",
                            e.number.map_or("?".into(), |n| n.to_string()),
                            e.meaning().unwrap_or("undocumented error number")
                        ),
                    ),
                };
                PushOutcome {
                    phone: phone.to_string(),
                    verdict,
                    reply: Some(reply),
                    detail,
                }
            }
            Err(e) => PushOutcome {
                phone: phone.to_string(),
                verdict: e.verdict(),
                reply: None,
                detail: e.to_string(),
            },
        }
    }

    async fn try_push(&self, phone: &str) -> Result<ExecuteReply, PushError> {
        let url = if is_device_name(phone) {
            let ip = self.device_address(phone).await?;
            let host = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip
            };
            execute_url(&format!("{host}:{}", self.phone_port))?
        } else {
            execute_url(phone)?
        };
        let form = format!("XML={}", percent_encode(&self.body_xml));
        let resp = self
            .http
            .post(&url)
            .basic_auth(&self.user, Some(&self.password))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| PushError::Failed(format!("{url}: {}", super::describe_error(&e))))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| PushError::Failed(format!("{url}: reading the answer: {e}")))?;
        xml::parse_execute_reply(&bytes).map_err(|e| {
            PushError::Failed(format!(
                "{url}: HTTP {status}, not a CiscoIPPhoneResponse or CiscoIPPhoneError: {e}"
            ))
        })
    }

    /// Pushes to many phones, at most `concurrency` in flight; `progress` is told how many are
    /// done after each. The outcomes come back in the order of `phones`.
    pub async fn push_all(
        self: &Arc<Self>,
        phones: &[String],
        concurrency: usize,
        mut progress: impl FnMut(usize),
    ) -> Vec<PushOutcome> {
        let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for (i, p) in phones.iter().enumerate() {
            let (pusher, sem, p) = (self.clone(), sem.clone(), p.clone());
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                (i, pusher.push(&p).await)
            });
        }
        let mut outcomes = Vec::with_capacity(phones.len());
        while let Some(r) = set.join_next().await {
            if let Ok(x) = r {
                outcomes.push(x);
            }
            progress(outcomes.len());
        }
        outcomes.sort_by_key(|(i, _)| *i);
        outcomes.into_iter().map(|(_, o)| o).collect()
    }
}

impl PushOutcome {
    /// The outcome as one JSON object: the phone, `ok`, and the phone's items, its error, or
    /// why there was no answer.
    pub fn json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"phone": self.phone, "ok": self.verdict == Verdict::Ok});
        match &self.reply {
            Some(ExecuteReply::Response(r)) => {
                v["response"] = r
                    .items
                    .iter()
                    .map(|i| serde_json::json!({"status": i.status, "data": i.data, "url": i.url}))
                    .collect();
            }
            Some(ExecuteReply::Error(e)) => {
                v["error"] = serde_json::json!({
                    "number": e.number,
                    "meaning": e.meaning().unwrap_or("undocumented error number"),
                    "message": e.message,
                });
            }
            None => v["failure"] = serde_json::Value::String(self.detail.clone()),
        }
        v
    }

    /// The phone's CiscoIPPhoneResponse items, `status<TAB>url<TAB>data` a line (empty without
    /// a response).
    pub fn items_text(&self) -> String {
        let mut out = String::new();
        if let Some(ExecuteReply::Response(r)) = &self.reply {
            for i in &r.items {
                out.push_str(&format!(
                    "{}\t{}\t{}\n",
                    i.status.map_or("?".into(), |s| s.to_string()),
                    i.url.as_deref().unwrap_or(""),
                    i.data.as_deref().unwrap_or("")
                ));
            }
        }
        out
    }
}

/// The report of a push to several phones: the worst verdict (`Failed` when nothing came back),
/// a `PHONE RESULT DETAIL` table and the JSON document.
pub struct Report {
    pub worst: Verdict,
    /// Pushes that did not succeed.
    pub failed: usize,
    pub total: usize,
}

impl Report {
    pub fn of(outcomes: &[PushOutcome]) -> Report {
        Report {
            worst: outcomes
                .iter()
                .map(|o| o.verdict)
                .max()
                .unwrap_or(Verdict::Failed),
            failed: outcomes.iter().filter(|o| o.verdict != Verdict::Ok).count(),
            total: outcomes.len(),
        }
    }

    /// One line a phone, tab-separated, under a header.
    pub fn table(outcomes: &[PushOutcome]) -> String {
        let mut out = String::from("PHONE\tRESULT\tDETAIL\n");
        for o in outcomes {
            let result = match o.verdict {
                Verdict::Ok => "ok",
                Verdict::Refused => "refused",
                Verdict::Failed => "error",
            };
            out.push_str(&format!("{}\t{result}\t{}\n", o.phone, o.detail));
        }
        out
    }

    pub fn json(&self, outcomes: &[PushOutcome]) -> serde_json::Value {
        let v: Vec<serde_json::Value> = outcomes.iter().map(PushOutcome::json).collect();
        serde_json::json!({"ok": self.worst == Verdict::Ok, "phones": v})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_addresses() {
        assert_eq!(
            execute_url("10.1.1.20").ok().as_deref(),
            Some("http://10.1.1.20/CGI/Execute")
        );
        assert_eq!(
            execute_url("http://127.0.0.1:8081/").ok().as_deref(),
            Some("http://127.0.0.1:8081/CGI/Execute")
        );
        assert!(execute_url("a b").is_err());
    }

    #[test]
    fn device_names() {
        assert!(is_device_name("SEP00036BC7B973"));
        assert!(!is_device_name("SEP00036BC7B97"));
        assert!(!is_device_name("10.1.1.20"));
    }
}
