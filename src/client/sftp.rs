//! An sFTP client (SSH with the `sftp` subsystem, through russh and russh-sftp) for the
//! certificate exchange between clusters: the server is an ordinary sFTP server (OpenSSH's in
//! the tests) that every cluster's export and the consolidated bundle meet on, as Cisco's Bulk
//! Certificate Management does.
//!
//! The server's host key is checked against a known_hosts file (`~/.ssh/known_hosts` unless
//! told otherwise): an unknown or changed key is refused, naming its fingerprint. The user
//! authenticates with a private key file or, without one, with the keys of the SSH agent
//! (`SSH_AUTH_SOCK`). Passwords are not offered.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{HashAlg, PrivateKeyWithHashAlg};
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::OpenFlags;
use tokio::io::AsyncWriteExt;

/// The largest file read from the server (bundles are a few kilobytes per node).
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Where the files are: `sftp://user@host[:port]/dir` (`/~/dir`: relative to the user's home,
/// as the sftp URI draft has it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpUrl {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub dir: String,
}

impl SftpUrl {
    pub fn parse(s: &str) -> Result<SftpUrl, String> {
        let rest = s
            .strip_prefix("sftp://")
            .ok_or_else(|| format!("{s:?} is not an sftp:// URL (sftp://user@host[:port]/dir)"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, hostport) = authority
            .rsplit_once('@')
            .ok_or_else(|| format!("{s:?} names no user (sftp://user@host[:port]/dir)"))?;
        if user.is_empty() {
            return Err(format!("{s:?}: the user is empty"));
        }
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, after) = h
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: unclosed [ in the host"))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("{s:?}: the host is empty"));
        }
        let port = match port {
            None | Some("") => 22,
            Some(p) => p
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{s:?}: port {p:?} is not a port number"))?,
        };
        let dir = match path
            .strip_prefix("~/")
            .or(if path == "~" { Some("") } else { None })
        {
            Some(home) => home.trim_end_matches('/').to_string(),
            None => format!("/{}", path.trim_end_matches('/')),
        };
        let dir = if dir.is_empty() { ".".into() } else { dir };
        Ok(SftpUrl {
            user: user.to_string(),
            host,
            port,
            dir,
        })
    }

    /// A file in the directory.
    pub fn file(&self, name: &str) -> String {
        format!("{}/{name}", self.dir.trim_end_matches('/'))
    }
}

impl std::fmt::Display for SftpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let dir = self.dir.strip_prefix('/').map_or_else(
            || format!("~/{}", self.dir.trim_start_matches('.')),
            str::to_string,
        );
        write!(f, "sftp://{}@{host}:{}/{dir}", self.user, self.port)
    }
}

/// How to reach and trust the server.
#[derive(Debug, Clone)]
pub struct SftpOptions {
    /// The private key; `None`: the SSH agent's keys.
    pub identity: Option<PathBuf>,
    /// The known_hosts file; `None`: `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    #[error("sftp server {server}: {reason}")]
    Connect { server: String, reason: String },
    #[error("sftp server {server}: host key {fingerprint} is not in {known_hosts} (check it, then add it: ssh-keyscan -p {port} {host} >> {known_hosts})")]
    UnknownHost {
        server: String,
        host: String,
        port: u16,
        fingerprint: String,
        known_hosts: String,
    },
    #[error("sftp server {server}: its host key CHANGED (line {line} of {known_hosts} records another); refusing to connect")]
    HostKeyChanged {
        server: String,
        line: usize,
        known_hosts: String,
    },
    #[error("sftp server {server}: {user} was refused ({how})")]
    Auth {
        server: String,
        user: String,
        how: String,
    },
    #[error("identity file {path}: {reason}")]
    Identity { path: String, reason: String },
    #[error("sftp {path}: {reason}")]
    File { path: String, reason: String },
}

/// What the SSH layer tells us about the server's key.
struct Checker {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    /// The refusal, when the key was not accepted.
    refusal: Arc<std::sync::Mutex<Option<SftpError>>>,
    server: String,
}

impl russh::client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        presented: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // Host certificates are not trusted by a CA here: only known_hosts keys.
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = presented else {
            *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(SftpError::Connect {
                server: self.server.clone(),
                reason:
                    "the server presented a host certificate; only known_hosts keys are trusted"
                        .into(),
            });
            return Ok(false);
        };
        // known_hosts names a non-standard port as `[host]:port`; the check does that.
        let verdict =
            russh::keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts);
        let refusal = match verdict {
            Ok(true) => return Ok(true),
            Ok(false) => SftpError::UnknownHost {
                server: self.server.clone(),
                host: self.host.clone(),
                port: self.port,
                fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
                known_hosts: self.known_hosts.display().to_string(),
            },
            Err(russh::keys::Error::KeyChanged { line }) => SftpError::HostKeyChanged {
                server: self.server.clone(),
                line,
                known_hosts: self.known_hosts.display().to_string(),
            },
            Err(e) => SftpError::Connect {
                server: self.server.clone(),
                reason: format!("known_hosts {}: {e}", self.known_hosts.display()),
            },
        };
        *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(refusal);
        Ok(false)
    }
}

/// An open sFTP session in the URL's directory.
pub struct Sftp {
    pub url: SftpUrl,
    session: SftpSession,
    _ssh: russh::client::Handle<Checker>,
}

fn home_known_hosts() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".ssh/known_hosts")
}

impl Sftp {
    pub async fn connect(url: &SftpUrl, opts: &SftpOptions) -> Result<Sftp, SftpError> {
        let server = url.to_string();
        let known_hosts = opts.known_hosts.clone().unwrap_or_else(home_known_hosts);
        let refusal = Arc::new(std::sync::Mutex::new(None));
        let checker = Checker {
            host: url.host.clone(),
            port: url.port,
            known_hosts,
            refusal: refusal.clone(),
            server: server.clone(),
        };
        let config = Arc::new(russh::client::Config {
            inactivity_timeout: Some(opts.timeout.max(Duration::from_secs(5))),
            ..Default::default()
        });
        let connect = russh::client::connect(config, (url.host.as_str(), url.port), checker);
        let mut ssh = match tokio::time::timeout(opts.timeout, connect).await {
            Err(_) => {
                return Err(SftpError::Connect {
                    server,
                    reason: format!("no answer within {:?}", opts.timeout),
                })
            }
            Ok(Err(e)) => {
                if let Some(r) = refusal.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(r);
                }
                return Err(SftpError::Connect {
                    server,
                    reason: e.to_string(),
                });
            }
            Ok(Ok(h)) => h,
        };
        let auth_err = |how: String| SftpError::Auth {
            server: server.clone(),
            user: url.user.clone(),
            how,
        };
        let ok = match &opts.identity {
            Some(path) => {
                let key =
                    russh::keys::load_secret_key(path, None).map_err(|e| SftpError::Identity {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                let hash = ssh.best_supported_rsa_hash().await.ok().flatten().flatten();
                ssh.authenticate_publickey(
                    &url.user,
                    PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                )
                .await
                .map_err(|e| auth_err(e.to_string()))?
                .success()
            }
            None => agent_auth(&mut ssh, &url.user).await.map_err(&auth_err)?,
        };
        if !ok {
            return Err(auth_err(match &opts.identity {
                Some(p) => format!("the key {} is not accepted", p.display()),
                None => "no key of the SSH agent is accepted".into(),
            }));
        }
        let channel = ssh
            .channel_open_session()
            .await
            .map_err(|e| SftpError::Connect {
                server: server.clone(),
                reason: format!("opening a session: {e}"),
            })?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| SftpError::Connect {
                server: server.clone(),
                reason: format!("the sftp subsystem: {e}"),
            })?;
        let session =
            SftpSession::new(channel.into_stream())
                .await
                .map_err(|e| SftpError::Connect {
                    server: server.clone(),
                    reason: format!("the sftp subsystem: {e}"),
                })?;
        let sftp = Sftp {
            url: url.clone(),
            session,
            _ssh: ssh,
        };
        // The directory must exist: a typo should not scatter files elsewhere.
        let meta = sftp
            .session
            .metadata(url.dir.clone())
            .await
            .map_err(|e| SftpError::File {
                path: url.dir.clone(),
                reason: e.to_string(),
            })?;
        if !meta.is_dir() {
            return Err(SftpError::File {
                path: url.dir.clone(),
                reason: "not a directory".into(),
            });
        }
        Ok(sftp)
    }

    /// The names of the directory's regular files.
    pub async fn list(&self) -> Result<Vec<String>, SftpError> {
        let dir = self
            .session
            .read_dir(self.url.dir.clone())
            .await
            .map_err(|e| SftpError::File {
                path: self.url.dir.clone(),
                reason: e.to_string(),
            })?;
        let mut names: Vec<String> = dir
            .filter(|e| e.file_type().is_file())
            .map(|e| e.file_name())
            .collect();
        names.sort();
        Ok(names)
    }

    /// A file of the directory, if it exists.
    pub async fn read(&self, name: &str) -> Result<Option<Vec<u8>>, SftpError> {
        let path = self.url.file(name);
        let err = |reason: String| SftpError::File {
            path: path.clone(),
            reason,
        };
        if !self
            .session
            .try_exists(path.clone())
            .await
            .map_err(|e| err(e.to_string()))?
        {
            return Ok(None);
        }
        let meta = self
            .session
            .metadata(path.clone())
            .await
            .map_err(|e| err(e.to_string()))?;
        if meta.size.unwrap_or(0) > MAX_FILE_BYTES {
            return Err(err(format!(
                "{} bytes, more than the {MAX_FILE_BYTES} a bundle may have",
                meta.size.unwrap_or(0)
            )));
        }
        self.session
            .read(path.clone())
            .await
            .map(Some)
            .map_err(|e| err(e.to_string()))
    }

    /// Writes a file of the directory whole (created or replaced).
    pub async fn write(&self, name: &str, data: &[u8]) -> Result<(), SftpError> {
        let path = self.url.file(name);
        let err = |reason: String| SftpError::File {
            path: path.clone(),
            reason,
        };
        let mut f = self
            .session
            .open_with_flags(
                path.clone(),
                OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
            )
            .await
            .map_err(|e| err(e.to_string()))?;
        f.write_all(data).await.map_err(|e| err(e.to_string()))?;
        f.shutdown().await.map_err(|e| err(e.to_string()))?;
        Ok(())
    }

    pub async fn close(self) {
        let _ = self.session.close().await;
    }
}

/// Tries each key of the SSH agent.
async fn agent_auth(ssh: &mut russh::client::Handle<Checker>, user: &str) -> Result<bool, String> {
    let mut agent = russh::keys::agent::client::AgentClient::connect_env()
        .await
        .map_err(|e| format!("no --identity given and no SSH agent: {e}"))?;
    let ids = agent
        .request_identities()
        .await
        .map_err(|e| format!("the SSH agent: {e}"))?;
    let hash = ssh.best_supported_rsa_hash().await.ok().flatten().flatten();
    for id in ids {
        let key = id.public_key().into_owned();
        match ssh
            .authenticate_publickey_with(user, key, hash, &mut agent)
            .await
        {
            Ok(r) if r.success() => return Ok(true),
            Ok(_) => continue,
            Err(e) => return Err(format!("the SSH agent: {e}")),
        }
    }
    Ok(false)
}

/// Whether `path` names a file that exists (for a clear error before connecting).
pub fn identity_readable(path: &Path) -> Result<(), SftpError> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| SftpError::Identity {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r17_sftp_urls_parse_with_their_mistakes_named() {
        let u = SftpUrl::parse("sftp://certs@127.0.0.1:2222/srv/emcc/").unwrap();
        assert_eq!(
            u,
            SftpUrl {
                user: "certs".into(),
                host: "127.0.0.1".into(),
                port: 2222,
                dir: "/srv/emcc".into()
            }
        );
        assert_eq!(u.file("home.pem"), "/srv/emcc/home.pem");
        assert_eq!(u.to_string(), "sftp://certs@127.0.0.1:2222/srv/emcc");
        let u = SftpUrl::parse("sftp://a@[::1]/~/emcc").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.dir.as_str()),
            ("::1", 22, "emcc")
        );
        let u = SftpUrl::parse("sftp://a@h").unwrap();
        assert_eq!(u.dir, "/");
        for bad in [
            "http://a@h/x",
            "sftp://h/x",
            "sftp://@h/x",
            "sftp://a@:22/x",
            "sftp://a@h:0/x",
            "sftp://a@h:x/y",
        ] {
            assert!(SftpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
