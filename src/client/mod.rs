//! Clients of a cluster: what the commands that drive one speak, over the same wire formats a
//! phone or a third-party application uses (so they work against Cisco Unified CM too).
//!
//! - [`assistant`]: the Assistant Console protocol on TCP 2912 (`ucm assistant console`)
//! - [`em`]: the EM service API (`ucm em`)
//! - [`webdialer`]: the WebDialer SOAP interface and the Redirector (`ucm dial`)
//! - [`page`]: a caller paging a recipient group, as a phone of the cluster (`ucm page`)
//! - [`push`]: CiscoIPPhone objects pushed to phones, by address, device, pool or group
//!   (`ucm services push`)
//! - [`lint`]: a service fetched as a phone fetches it (`ucm services lint`)
//!
//! This module itself holds the HTTP(S) client settings they share: one connection pool, rustls
//! with the ring provider, and the trust choices an operator needs against real clusters (the
//! system's roots), labs (the node's own certificate as a CA file) and throwaway test beds
//! (`--insecure`).

pub mod assistant;
pub mod console;
pub mod em;
pub mod emcc;
pub mod lint;
pub mod page;
pub mod push;
pub mod sftp;
pub mod webdialer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// PEM file of CA certificates to trust instead of the system's.
    pub ca: Option<PathBuf>,
    /// Accept any server certificate (test beds only).
    pub insecure: bool,
    /// Whole-request timeout.
    pub timeout: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("CA file {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("HTTP client: {0}")]
    Build(String),
}

/// Why a request failed, in words an operator acts on: the connection was refused, the name
/// does not resolve, the certificate is not trusted (with the flags that change that), the
/// server took too long. reqwest alone says "error sending request for url" for all of these.
pub fn describe_error(e: &reqwest::Error) -> String {
    let mut chain = Vec::new();
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        chain.push(s.to_string());
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return "connection refused (is the node running, and on that port?)".into()
                }
                std::io::ErrorKind::ConnectionReset => {
                    return "the connection was reset by the peer".into()
                }
                std::io::ErrorKind::TimedOut => return "the connection timed out".into(),
                _ => {}
            }
        }
        // An io::Error's source() skips the error it wraps: look inside it too.
        let inner = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>());
        if let Some(tls) = s.downcast_ref::<rustls::Error>().or(inner) {
            return match tls {
                rustls::Error::InvalidCertificate(why) => format!(
                    "the server's certificate is not trusted ({why:?}): give its CA with --ca \
                     FILE (a node's own is node-cert.pem in its data directory), or --insecure \
                     on a test bed"
                ),
                other => format!("TLS failed: {other}"),
            };
        }
        src = s.source();
    }
    let all = chain.join(": ");
    if e.is_timeout() {
        return "no answer within --timeout".into();
    }
    // Layers between reqwest and rustls do not always expose the rustls error as a source.
    if let Some(i) = all.find("invalid peer certificate") {
        return format!(
            "the server's certificate is not trusted ({}): give its CA with --ca FILE (a \
             node's own is node-cert.pem in its data directory), or --insecure on a test bed",
            &all[i..]
        );
    }
    if all.contains("dns error") || all.contains("failed to lookup address") {
        return format!(
            "the host name does not resolve ({})",
            chain.last().map_or("", |s| s)
        );
    }
    if e.is_builder() {
        return format!("not a usable URL: {all}");
    }
    // Whatever else: the whole chain, not only its outermost words.
    all
}

/// Builds a client with the options' trust settings and timeout.
pub fn http_client(opts: &ClientOptions) -> Result<reqwest::Client, ClientError> {
    http_client_trusting(opts, &[])
}

/// The TLS settings of [`http_client_trusting`], for clients of other protocols.
pub fn tls_client_config(
    opts: &ClientOptions,
    extra: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let tls = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &opts.ca {
            Some(path) => {
                let ca_err = |reason: String| ClientError::Ca {
                    path: path.display().to_string(),
                    reason,
                };
                let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
                let mut n = 0;
                for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                    let cert = cert.map_err(|e| ca_err(e.to_string()))?;
                    roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
                    n += 1;
                }
                if n == 0 {
                    return Err(ca_err("no PEM certificate in the file".into()));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    let _ = roots.add(cert);
                }
            }
        }
        for cert in extra {
            // A self-signed node certificate is its own anchor; one that is not a usable
            // anchor is left out (the handshake then names the peer as untrusted).
            let _ = roots.add(cert.clone());
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(tls)
}

/// [`http_client`] that also trusts `extra` certificates (a cluster's trust store: the other
/// clusters' certificates imported by the certificate exchange), beside the CA file or the
/// system's roots.
pub fn http_client_trusting(
    opts: &ClientOptions,
    extra: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<reqwest::Client, ClientError> {
    let tls = tls_client_config(opts, extra)?;
    let mut b = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .user_agent(concat!("ucm/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(64);
    if let Some(t) = opts.timeout {
        b = b.timeout(t);
    }
    b.build().map_err(|e| ClientError::Build(e.to_string()))
}

/// `--insecure`: verifies signatures (so the handshake is sound) but trusts any certificate.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
