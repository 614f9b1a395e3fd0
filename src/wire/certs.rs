//! The certificate bundle clusters exchange for Extension Mobility Cross Cluster: PEM, one
//! certificate per block, each after `# key: value` lines that say whose it is.
//!
//! ```text
//! # cluster: home
//! # node: ucm-pub
//! # purpose: tomcat
//! # sha256: 3f0c…
//! -----BEGIN CERTIFICATE-----
//! …
//! -----END CERTIFICATE-----
//! ```
//!
//! Cisco's Bulk Certificate Management exchanges PKCS#12 files; ucm's bundle is PEM (text that
//! `openssl x509` and every TLS library read; the headers are explanatory text that PEM
//! readers skip, RFC 7468 section 5.2). A cluster's export and the consolidated bundle have the
//! same form. The trust stores each purpose goes to are Cisco's (`trust_stores`).

use sha2::{Digest, Sha256};

/// Where a node serves its cluster's export (HTTPS, administrator).
pub const CERTIFICATES_PATH: &str = "/ucm/certificates";
/// Where a node serves (GET) and imports into (POST) its trust stores.
pub const TRUST_PATH: &str = "/ucm/trust";

/// What a certificate is for on the cluster that presents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Purpose {
    /// The HTTPS (Tomcat) certificate.
    Tomcat,
    /// The call-control (SIP over TLS, TFTP signing) certificate.
    CallManager,
    /// The Certificate Authority Proxy Function's.
    Capf,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Tomcat => "tomcat",
            Purpose::CallManager => "callmanager",
            Purpose::Capf => "capf",
        }
    }

    pub fn parse(s: &str) -> Option<Purpose> {
        match s {
            "tomcat" => Some(Purpose::Tomcat),
            "callmanager" => Some(Purpose::CallManager),
            "capf" => Some(Purpose::Capf),
            _ => None,
        }
    }

    /// The trust stores an import puts it in, as Cisco maps them (CallManager also into
    /// Phone-SAST-trust, CAPF into CallManager-trust).
    pub fn trust_stores(self) -> &'static [&'static str] {
        match self {
            Purpose::Tomcat => &["tomcat-trust"],
            Purpose::CallManager => &["callmanager-trust", "phone-sast-trust"],
            Purpose::Capf => &["callmanager-trust"],
        }
    }
}

/// One certificate of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertEntry {
    pub cluster: String,
    pub node: String,
    pub purpose: Purpose,
    /// The DER bytes.
    pub der: Vec<u8>,
}

impl CertEntry {
    /// SHA-256 of the DER, lowercase hex (what `openssl x509 -fingerprint -sha256` prints,
    /// without the colons).
    pub fn sha256(&self) -> String {
        fingerprint(&self.der)
    }

    /// The certificate alone, as PEM.
    pub fn pem(&self) -> String {
        let b64 = super::codec::base64_encode(&self.der);
        let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
        out
    }
}

pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// A mistake in a bundle, with the line it is on (1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct BundleError {
    pub line: usize,
    pub reason: String,
}

/// Certificates a bundle may hold (a cluster has a few nodes, a bundle a few clusters).
pub const MAX_ENTRIES: usize = 4096;
/// The longest name a header may give.
const MAX_NAME: usize = 128;

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Writes entries as a bundle, in the order given.
pub fn write_bundle(entries: &[CertEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&format!(
            "# cluster: {}\n# node: {}\n# purpose: {}\n# sha256: {}\n",
            e.cluster,
            e.node,
            e.purpose.as_str(),
            e.sha256()
        ));
        out.push_str(&e.pem());
    }
    out
}

/// Reads a bundle. Every certificate must follow its `cluster`, `node` and `purpose` headers
/// (a `sha256` header, when present, must match); the DER must be an X.509 certificate.
pub fn parse_bundle(text: &str) -> Result<Vec<CertEntry>, BundleError> {
    let mut entries = Vec::new();
    let mut headers: Vec<(String, String, usize)> = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, raw)) = lines.next() {
        let line = raw.trim();
        let n = i + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(h) = line.strip_prefix('#') {
            let (k, v) = h.split_once(':').ok_or_else(|| BundleError {
                line: n,
                reason: format!("a header must be `# key: value`, not {line:?}"),
            })?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string(), n));
            continue;
        }
        if line != "-----BEGIN CERTIFICATE-----" {
            return Err(BundleError {
                line: n,
                reason: format!(
                    "expected a `# key: value` header or -----BEGIN CERTIFICATE-----, found {:?}",
                    line.chars().take(40).collect::<String>()
                ),
            });
        }
        let begin = n;
        let mut b64 = String::new();
        let mut ended = false;
        for (_, l) in lines.by_ref() {
            let l = l.trim();
            if l == "-----END CERTIFICATE-----" {
                ended = true;
                break;
            }
            b64.push_str(l);
            if b64.len() > 64 * 1024 {
                return Err(BundleError {
                    line: begin,
                    reason: "a certificate of more than 48 KiB".into(),
                });
            }
        }
        if !ended {
            return Err(BundleError {
                line: begin,
                reason: "the certificate has no -----END CERTIFICATE-----".into(),
            });
        }
        let der = super::codec::base64_decode(&b64).ok_or_else(|| BundleError {
            line: begin,
            reason: "the certificate is not valid base64".into(),
        })?;
        if webpki::EndEntityCert::try_from(&rustls::pki_types::CertificateDer::from(der.as_slice()))
            .is_err()
        {
            return Err(BundleError {
                line: begin,
                reason: "not an X.509 certificate".into(),
            });
        }
        // A header's value and its line.
        let take = |key: &str| -> Result<(String, usize), BundleError> {
            headers
                .iter()
                .rev()
                .find(|(k, _, _)| k == key)
                .map(|(_, v, at)| (v.clone(), *at))
                .ok_or_else(|| BundleError {
                    line: begin,
                    reason: format!("the certificate has no `# {key}:` header before it"),
                })
        };
        let (cluster, cluster_at) = take("cluster")?;
        let (node, node_at) = take("node")?;
        let (purpose_s, purpose_at) = take("purpose")?;
        for (what, v, at) in [("cluster", &cluster, cluster_at), ("node", &node, node_at)] {
            if !valid_name(v) {
                return Err(BundleError {
                    line: at,
                    reason: format!(
                        "{what} {v:?} is not a name (letters, digits, - _ ., at most {MAX_NAME})"
                    ),
                });
            }
        }
        let purpose = Purpose::parse(&purpose_s).ok_or_else(|| BundleError {
            line: purpose_at,
            reason: format!("purpose {purpose_s:?} is not tomcat, callmanager or capf"),
        })?;
        let entry = CertEntry {
            cluster,
            node,
            purpose,
            der,
        };
        if let Some((_, want, at)) = headers.iter().rev().find(|(k, _, _)| k == "sha256") {
            if !want.eq_ignore_ascii_case(&entry.sha256())
                && !want.replace(':', "").eq_ignore_ascii_case(&entry.sha256())
            {
                return Err(BundleError {
                    line: *at,
                    reason: format!(
                        "sha256 {want} does not match the certificate after it ({})",
                        entry.sha256()
                    ),
                });
            }
        }
        headers.clear();
        entries.push(entry);
        if entries.len() > MAX_ENTRIES {
            return Err(BundleError {
                line: begin,
                reason: format!("more than {MAX_ENTRIES} certificates"),
            });
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec()
    }

    #[test]
    fn r17_bundles_round_trip_and_map_to_ciscos_trust_stores() {
        let entries = vec![
            CertEntry {
                cluster: "home".into(),
                node: "ucm-pub".into(),
                purpose: Purpose::Tomcat,
                der: cert("a"),
            },
            CertEntry {
                cluster: "visiting".into(),
                node: "v1".into(),
                purpose: Purpose::CallManager,
                der: cert("b"),
            },
        ];
        let text = write_bundle(&entries);
        assert_eq!(parse_bundle(&text).unwrap(), entries);
        assert_eq!(Purpose::Tomcat.trust_stores(), ["tomcat-trust"]);
        assert_eq!(
            Purpose::CallManager.trust_stores(),
            ["callmanager-trust", "phone-sast-trust"]
        );
        assert_eq!(Purpose::Capf.trust_stores(), ["callmanager-trust"]);
        assert_eq!(entries[0].sha256().len(), 64);
    }

    #[test]
    fn r17_bundle_mistakes_are_named_with_their_line() {
        let good = write_bundle(&[CertEntry {
            cluster: "home".into(),
            node: "n".into(),
            purpose: Purpose::Tomcat,
            der: cert("a"),
        }]);
        let err = |t: &str| parse_bundle(t).unwrap_err();
        let e = err(&good.replace("# purpose: tomcat\n", ""));
        assert!(e.reason.contains("no `# purpose:` header"), "{e}");
        assert_eq!(e.line, 4);
        let e = err(&good.replace("purpose: tomcat", "purpose: ipsec"));
        assert!(e.reason.contains("\"ipsec\""), "{e}");
        assert_eq!(e.line, 3);
        let e = err(&good.replace("# sha256: ", "# sha256: 00"));
        assert!(e.reason.contains("does not match"), "{e}");
        assert_eq!(e.line, 4);
        let e = err(&good.replace("cluster: home", "cluster: ../etc"));
        assert!(e.reason.contains("not a name"), "{e}");
        let e = err(&good.replace("-----END CERTIFICATE-----\n", ""));
        assert!(e.reason.contains("no -----END"), "{e}");
        let e = err("# cluster: a\n# node: b\n# purpose: tomcat\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert!(e.reason.contains("not an X.509"), "{e}");
        let e = err("hello\n");
        assert_eq!(e.line, 1);
        assert!(parse_bundle("").unwrap().is_empty());
    }
}
