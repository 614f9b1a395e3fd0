//! A client of the WebDialer SOAP interface (ours or Cisco Unified CM's): what `ucm dial`
//! speaks.

use super::{http_client, ClientOptions};
use crate::wire::soap::{self, Credential, Reply, Request};

// Cisco's standard paths, which a client knows as any third party does.
/// The SOAP service (wd70).
const SOAP_PATH: &str = "/webdialer/services/WebdialerSoapService70";
/// The servlet a Redirector sends the browser (and us) to.
const SERVLET_PATH: &str = "/webdialer/Webdialer";
/// The Redirector.
const REDIRECTOR_PATH: &str = "/webdialer/Redirector";

/// Why a request got no WebDialer answer.
#[derive(Debug, thiserror::Error)]
pub enum WdCallError {
    /// The service answered with a SOAP fault.
    #[error("SOAP fault: {0}")]
    Fault(String),
    /// Unreachable, or the answer is not WebDialer's.
    #[error("{0}")]
    Transport(String),
}

pub struct WdClient {
    http: reqwest::Client,
    url: String,
}

/// The service URL for `server`: a base URL gets the standard path appended.
pub fn service_url(server: &str) -> String {
    let s = server.trim_end_matches('/');
    if s.to_ascii_lowercase().contains("/webdialer/") {
        s.to_string()
    } else {
        format!("{s}{SOAP_PATH}")
    }
}

impl WdClient {
    pub fn new(server: &str, opts: &ClientOptions) -> Result<WdClient, WdCallError> {
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            return Err(WdCallError::Transport(format!(
                "--server {server:?}: expected http://HOST:PORT or https://HOST:PORT"
            )));
        }
        Ok(WdClient {
            http: http_client(opts).map_err(|e| WdCallError::Transport(e.to_string()))?,
            url: service_url(server),
        })
    }

    /// A client sharing an existing connection pool (the Redirector asks many WebDialers).
    pub fn with_http(http: reqwest::Client, server: &str) -> WdClient {
        WdClient {
            http,
            url: service_url(server),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Posts one request and reads the reply (a fault is an error).
    pub async fn call(&self, req: &Request) -> Result<Reply, WdCallError> {
        let resp = self
            .http
            .post(&self.url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", "\"\"")
            .body(soap::request_xml(req))
            .send()
            .await
            .map_err(|e| {
                WdCallError::Transport(format!("{}: {}", self.url, super::describe_error(&e)))
            })?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| WdCallError::Transport(format!("{}: {e}", self.url)))?;
        let reply = soap::parse_reply(&text).map_err(|e| {
            WdCallError::Transport(format!(
                "{} answered HTTP {status} with something that is not a SOAP response ({e})",
                self.url
            ))
        })?;
        if let Some(f) = reply.fault {
            return Err(WdCallError::Fault(f));
        }
        Ok(reply)
    }
}

/// Why the Redirector named no home WebDialer.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// It refused the credentials (401) or knows no WebDialer with the user (404).
    #[error("{0}")]
    Refused(String),
    /// Unreachable, or an answer that is not a redirect to a WebDialer.
    #[error("{0}")]
    Transport(String),
}

/// Asks the Redirector (a base URL or its full URL) where the user's home WebDialer is: it
/// answers with a redirect to that WebDialer's servlet, whose base URL is returned.
pub async fn find_home(
    redirector: &str,
    cred: &Credential,
    destination: Option<&str>,
    opts: &ClientOptions,
) -> Result<String, HomeError> {
    let r = redirector.trim_end_matches('/');
    let url = if r.to_ascii_lowercase().contains("/webdialer/") {
        r.to_string()
    } else {
        format!("{r}{REDIRECTOR_PATH}")
    };
    let http = http_client(opts).map_err(|e| HomeError::Transport(e.to_string()))?;
    let resp = http
        .post(&url)
        .form(&[
            ("uid", cred.user_id.as_str()),
            ("pwd", cred.password.as_str()),
            ("destination", destination.unwrap_or_default()),
        ])
        .send()
        .await
        .map_err(|e| HomeError::Transport(format!("{url}: {}", super::describe_error(&e))))?;
    let landed = resp.url().clone();
    let status = resp.status();
    if landed.path() != SERVLET_PATH {
        let why = match status.as_u16() {
            401 => "the user ID or password is not correct".to_string(),
            404 => format!("{} is not a user of any WebDialer it knows", cred.user_id),
            200 => format!(
                "{} is a user of several clusters; give --server to pick one",
                cred.user_id
            ),
            s => format!("HTTP {s}"),
        };
        return Err(if status.as_u16() == 401 || status.as_u16() == 404 {
            HomeError::Refused(format!("Redirector {url}: {why}"))
        } else {
            HomeError::Transport(format!("Redirector {url}: {why}"))
        });
    }
    let mut base = landed;
    base.set_path("");
    base.set_query(None);
    Ok(base.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_paths_are_the_ones_the_service_serves() {
        use crate::services::webdialer as wd;
        assert_eq!(super::SOAP_PATH, wd::SOAP_PATH);
        assert_eq!(super::SERVLET_PATH, wd::SERVLET_PATH);
        assert_eq!(super::REDIRECTOR_PATH, wd::redirector::PATH);
    }
}
