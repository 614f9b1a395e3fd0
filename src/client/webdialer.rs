//! A client of the WebDialer SOAP interface (ours or Cisco Unified CM's): what `ucm dial`
//! speaks.

use super::{http_client, ClientOptions};
use crate::services::webdialer::soap::{self, Reply, Request};
use crate::services::webdialer::SOAP_PATH;

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
            .map_err(|e| WdCallError::Transport(format!("{}: {e}", self.url)))?;
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
