//! TLS helpers: the one crypto provider, CA files, and the node's identity (a certificate and
//! key made with rcgen on first start and kept in the data directory, so phones and browsers
//! see the same certificate across restarts).

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub const CERT_FILE: &str = "node-cert.pem";
pub const KEY_FILE: &str = "node-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("making the node certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {reason}")]
    BadPem { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The one crypto provider ucm uses (ring); a second one in the tree makes rustls panic.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The node certificate chain and key, made on first use.
pub struct NodeIdentity {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub cert_pem: String,
}

/// Loads the node identity from `dir`, or makes and stores one for `names` (DNS names and
/// IP addresses) when there is none.
pub fn load_or_create(
    dir: &Path,
    node_name: &str,
    ips: &[IpAddr],
) -> Result<NodeIdentity, TlsError> {
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Io { path, source }
    };
    if !cert_path.exists() || !key_path.exists() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut sans: Vec<String> = vec![node_name.to_string(), "localhost".to_string()];
        sans.extend(ips.iter().map(|ip| ip.to_string()));
        sans.push("127.0.0.1".into());
        sans.push("::1".into());
        sans.sort();
        sans.dedup();
        let mut params = rcgen::CertificateParams::new(sans)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("ucm {node_name}"));
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "ucm");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = params.self_signed(&key)?;
        write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io_err(&key_path))?;
        std::fs::write(&cert_path, cert.pem()).map_err(io_err(&cert_path))?;
    }
    let cert_pem = std::fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadPem {
            path: cert_path.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::BadPem {
            path: cert_path,
            reason: "no certificate in file".into(),
        });
    }
    let key_pem = std::fs::read(&key_path).map_err(io_err(&key_path))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| TlsError::BadPem {
            path: key_path.clone(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| TlsError::BadPem {
            path: key_path.clone(),
            reason: "no private key in file".into(),
        })?;
    Ok(NodeIdentity {
        certs,
        key,
        cert_pem,
    })
}

/// Reads a PEM file of CA certificates (a SIP trunk's `tls_ca`) into a root store. Every
/// problem names the file: a missing file, no certificate in it, one that does not parse.
pub fn read_ca_file(path: &Path) -> Result<rustls::RootCertStore, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("{shown}: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| format!("{shown}: not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("{shown}: not a usable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{shown}: no PEM certificate in the file"));
    }
    Ok(roots)
}

/// A rustls server configuration for the node identity with the given ALPN protocols.
pub fn server_config(
    id: &NodeIdentity,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(id.certs.clone(), id.key.clone_key())?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// [`server_config`] that asks the client for a certificate without requiring one (a phone or
/// browser sends none and is served as before). A certificate sent must come with proof of its
/// key (the handshake signature is checked); whether it is *trusted* is left to the handler
/// that needs it, which reads it from [`PeerCertificates`] and decides against the trust store
/// it keeps (the EMCC inter-cluster API: Tomcat-trust, which changes while the node runs).
pub fn server_config_asking_client_certs(
    id: &NodeIdentity,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = provider();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(OptionalClientCert(provider)))
        .with_single_cert(id.certs.clone(), id.key.clone_key())?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// The certificates a TLS client presented (end entity first), as a request extension; empty
/// when it presented none.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

impl PeerCertificates {
    /// What `conn` holds after the handshake.
    pub fn of(conn: &rustls::ServerConnection) -> PeerCertificates {
        PeerCertificates(Arc::new(
            conn.peer_certificates()
                .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
                .unwrap_or_default(),
        ))
    }

    pub fn end_entity(&self) -> Option<&CertificateDer<'static>> {
        self.0.first()
    }
}

/// Asks for a client certificate, takes none, and checks the handshake signature of one sent.
#[derive(Debug)]
struct OptionalClientCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::server::danger::ClientCertVerifier for OptionalClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        // Trust is decided by the handler that needs it (see above).
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
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
        cert: &CertificateDer<'_>,
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

fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}
