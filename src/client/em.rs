//! A client of the EM service API (ours or Cisco Unified CM's): what `ucm em` speaks.

use super::{http_client, ClientOptions};
use crate::services::em::api::{self, DeviceUser, Duration, Reply};
use crate::services::em::{code_meaning, EmError};

/// Why a call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum EmCallError {
    /// The service answered with an EM error.
    #[error("EM error {} ({}): {}", .0.code, code_meaning(.0.code), .0.message)]
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
            .map_err(|e| EmCallError::Transport(format!("{}: {e}", self.url)))?;
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
