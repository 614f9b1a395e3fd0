//! A client of the EM service API (ours or Cisco Unified CM's): what `ucm em` speaks.

use super::{http_client, ClientOptions};
use crate::wire::em::{self as api, DeviceUser, Duration, EmError, Reply};

/// Why a call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum EmCallError {
    /// The service answered with an EM error.
    #[error("EM error {} ({}): {}", .0.code, api::code_meaning(.0.code), .0.message)]
    Refused(EmError),
    /// The service could not be reached or answered something that is not the EM API.
    #[error("{0}")]
    Transport(String),
}

pub struct EmClient {
    http: reqwest::Client,
    url: String,
    app_id: String,
    password: String,
}

/// The service URL for `server`: a base URL gets the standard path appended.
pub fn service_url(server: &str) -> String {
    let s = server.trim_end_matches('/');
    if s.to_ascii_lowercase().contains("/emservice/") {
        s.to_string()
    } else {
        format!("{s}/emservice/EMServiceServlet")
    }
}

impl EmClient {
    pub fn new(
        server: &str,
        app_id: &str,
        password: &str,
        opts: &ClientOptions,
    ) -> Result<EmClient, EmCallError> {
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            return Err(EmCallError::Transport(format!(
                "--server {server:?}: expected http://HOST:PORT or https://HOST:PORT"
            )));
        }
        Ok(EmClient {
            http: http_client(opts).map_err(|e| EmCallError::Transport(e.to_string()))?,
            url: service_url(server),
            app_id: app_id.to_string(),
            password: password.to_string(),
        })
    }

    /// Posts one request (form field `xml=`, as Cisco's guide shows) and reads the reply.
    pub async fn call(&self, xml: &str) -> Result<Reply, EmCallError> {
        let resp = self
            .http
            .post(&self.url)
            .form(&[("xml", xml)])
            .send()
            .await
            .map_err(|e| {
                EmCallError::Transport(format!("{}: {}", self.url, super::describe_error(&e)))
            })?;
        let status = resp.status();
        let body = resp
            .text()
            .await
            .map_err(|e| EmCallError::Transport(format!("{}: {e}", self.url)))?;
        if !status.is_success() {
            return Err(EmCallError::Transport(format!(
                "{}: HTTP {status}",
                self.url
            )));
        }
        match api::parse_reply(&body) {
            Ok(Reply::Failure { code, message }) => {
                Err(EmCallError::Refused(EmError { code, message }))
            }
            Ok(r) => Ok(r),
            Err(e) => Err(EmCallError::Transport(format!(
                "{}: not an EM API response ({})",
                self.url, e.message
            ))),
        }
    }

    pub async fn login(
        &self,
        device: &str,
        user: &str,
        profile: Option<&str>,
        duration: Option<Duration>,
    ) -> Result<(), EmCallError> {
        let xml = api::login_request(
            &self.app_id,
            &self.password,
            device,
            user,
            profile,
            duration,
        );
        self.expect_success(&xml).await
    }

    pub async fn logout(&self, device: &str) -> Result<(), EmCallError> {
        let xml = api::logout_request(&self.app_id, &self.password, device);
        self.expect_success(&xml).await
    }

    async fn expect_success(&self, xml: &str) -> Result<(), EmCallError> {
        match self.call(xml).await? {
            Reply::Success => Ok(()),
            Reply::Results(_) | Reply::Failure { .. } => Err(EmCallError::Transport(
                "the service answered a login or logout with query results".into(),
            )),
        }
    }

    pub async fn device_users(
        &self,
        devices: &[&str],
    ) -> Result<Vec<(String, DeviceUser)>, EmCallError> {
        let xml = api::device_user_query(&self.app_id, &self.password, devices);
        match self.call(&xml).await? {
            Reply::Results(x) => {
                api::parse_device_user_results(&x).map_err(|e| EmCallError::Transport(e.message))
            }
            _ => Err(EmCallError::Transport(
                "no query results in the answer".into(),
            )),
        }
    }

    pub async fn user_devices(&self, users: &[&str]) -> Result<Vec<api::UserDevices>, EmCallError> {
        let xml = api::user_devices_query(&self.app_id, &self.password, users);
        match self.call(&xml).await? {
            Reply::Results(x) => {
                api::parse_user_devices_results(&x).map_err(|e| EmCallError::Transport(e.message))
            }
            _ => Err(EmCallError::Transport(
                "no query results in the answer".into(),
            )),
        }
    }
}

/// One line of a bulk login file (`device,user[,profile]`).
#[derive(Debug, Clone, PartialEq)]
pub struct LoginEntry {
    /// 1-based line number in the file.
    pub line: usize,
    pub device: String,
    pub user: String,
    pub profile: Option<String>,
}

/// A line of a bulk login file that is not `device,user[,profile]`.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    pub line: usize,
    pub text: String,
}

/// Reads a bulk login file: `device,user[,profile]` a line; blank lines and `#` comments skipped.
pub fn parse_login_list(text: &str) -> Result<Vec<LoginEntry>, BadLine> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = l.split(',').map(str::trim).collect();
        match f.as_slice() {
            [d, u] | [d, u, ""] if !d.is_empty() && !u.is_empty() => out.push(LoginEntry {
                line: i + 1,
                device: d.to_string(),
                user: u.to_string(),
                profile: None,
            }),
            [d, u, p] if !d.is_empty() && !u.is_empty() => out.push(LoginEntry {
                line: i + 1,
                device: d.to_string(),
                user: u.to_string(),
                profile: Some(p.to_string()),
            }),
            _ => {
                return Err(BadLine {
                    line: i + 1,
                    text: raw.to_string(),
                })
            }
        }
    }
    Ok(out)
}

impl EmClient {
    /// Logs many in, at most `concurrency` requests in flight (the service's Maximum Concurrent
    /// Requests refuses more with error 26). `progress` is told how many are done after each.
    /// The results come back in the order of the entries.
    pub async fn login_many(
        self: &std::sync::Arc<Self>,
        entries: Vec<LoginEntry>,
        duration: Option<Duration>,
        concurrency: usize,
        mut progress: impl FnMut(usize),
    ) -> Vec<(LoginEntry, Result<(), EmCallError>)> {
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, e) in entries.into_iter().enumerate() {
            let (c, sem) = (self.clone(), sem.clone());
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let r = c
                    .login(&e.device, &e.user, e.profile.as_deref(), duration)
                    .await;
                (i, e, r)
            });
        }
        let mut results = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let Ok(r) = done else { continue };
            results.push(r);
            progress(results.len());
        }
        results.sort_by_key(|(i, _, _)| *i);
        results.into_iter().map(|(_, e, r)| (e, r)).collect()
    }
}
