//! An attendant console's connection to the Attendant Console's console protocol (see
//! `services::attendant::console`): TLS to the `attendant_console` listener, from a socket
//! marked CS3 before `connect()`, a WebSocket opened with the attendant's HTTP Basic
//! credentials, then JSON text messages both ways.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{tls_client_config, ClientOptions};
use crate::net::Dscp;
use crate::wire::codec::base64_encode;
use crate::wire::websocket::{self, Message, Opcode, Reassembly};

/// Where consoles open their WebSocket (the server's `PATH`).
pub const PATH: &str = "/attendant/console";
/// The console protocol's marking (the server marks its side alike).
pub const DSCP: Dscp = Dscp::CS3;
const MAX_MESSAGE: usize = 1024 * 1024;

type Stream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("cannot reach {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("TLS with {addr}: {reason}")]
    Tls { addr: SocketAddr, reason: String },
    /// The server refused the upgrade: its status line and text.
    #[error("the server refused the console: {status} {text}")]
    Refused { status: u16, text: String },
    #[error("console protocol: {0}")]
    Protocol(String),
    #[error("the connection was lost: {0}")]
    Io(String),
}

impl ConsoleError {
    /// The refusal's status, for exit codes (401/403: the credentials).
    pub fn status(&self) -> Option<u16> {
        match self {
            ConsoleError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// An open console.
pub struct Console {
    stream: Stream,
    buf: Vec<u8>,
    reassembly: Reassembly,
    mask_seed: u32,
}

impl Console {
    /// Connects to `addr` (the ready line's `attendant_console`) as `user`.
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        user: &str,
        password: &str,
        opts: &ClientOptions,
    ) -> Result<Console, ConsoleError> {
        let timeout = opts.timeout.unwrap_or(Duration::from_secs(10));
        let tcp = tokio::time::timeout(timeout, crate::net::socket::connect_tcp(addr, None, DSCP))
            .await
            .map_err(|_| ConsoleError::Connect {
                addr,
                reason: "timed out".into(),
            })?
            .map_err(|e| ConsoleError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        let tls = tls_client_config(opts, &[]).map_err(|e| ConsoleError::Tls {
            addr,
            reason: e.to_string(),
        })?;
        let name =
            rustls::pki_types::ServerName::try_from(server_name.to_string()).map_err(|e| {
                ConsoleError::Tls {
                    addr,
                    reason: format!("{server_name:?} is not a server name: {e}"),
                }
            })?;
        let mut stream = tokio::time::timeout(
            timeout,
            tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, tcp),
        )
        .await
        .map_err(|_| ConsoleError::Tls {
            addr,
            reason: "handshake timed out".into(),
        })?
        .map_err(|e| ConsoleError::Tls {
            addr,
            reason: e.to_string(),
        })?;
        let nonce: [u8; 16] = rand::random();
        let key = base64_encode(&nonce);
        let auth = base64_encode(format!("{user}:{password}").as_bytes());
        let req = format!(
            "GET {PATH} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Basic {auth}\r\n\r\n"
        );
        let head = tokio::time::timeout(timeout, async {
            stream.write_all(req.as_bytes()).await?;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let rest = buf.split_off(end + 4);
                    return Ok::<_, std::io::Error>((buf, rest));
                }
                if buf.len() > 65536 {
                    return Err(std::io::Error::other("response head over 64 KiB"));
                }
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    // The body of a refusal follows its head; a bare close is an error.
                    return Ok((buf, Vec::new()));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .map_err(|_| ConsoleError::Protocol("no answer to the upgrade in time".into()))?
        .map_err(|e| ConsoleError::Io(e.to_string()))?;
        let (head, rest) = head;
        let text = String::from_utf8_lossy(&head).to_string();
        let status: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ConsoleError::Protocol(format!("not an HTTP answer: {text:?}")))?;
        if status != 101 {
            let mut body = rest;
            let _ =
                tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut body)).await;
            return Err(ConsoleError::Refused {
                status,
                text: String::from_utf8_lossy(&body).trim().to_string(),
            });
        }
        let want = websocket::accept_key(&key);
        let ok = text.lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == want
            })
        });
        if !ok {
            return Err(ConsoleError::Protocol(
                "the server's Sec-WebSocket-Accept does not match our key".into(),
            ));
        }
        Ok(Console {
            stream,
            buf: rest,
            reassembly: Reassembly::default(),
            mask_seed: rand::random(),
        })
    }

    /// Sends one command (a JSON object: `{"cmd":"answer","call":N}`).
    pub async fn send(&mut self, v: &serde_json::Value) -> Result<(), ConsoleError> {
        self.mask_seed = self
            .mask_seed
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        let frame = websocket::encode(
            Opcode::Text,
            v.to_string().as_bytes(),
            Some(self.mask_seed.to_be_bytes()),
        );
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| ConsoleError::Io(e.to_string()))
    }

    /// The next message from the server; `None` once it closed the console.
    pub async fn next(&mut self) -> Result<Option<serde_json::Value>, ConsoleError> {
        let mut chunk = vec![0u8; 8192];
        loop {
            while let Some(f) = websocket::decode(&mut self.buf, false, MAX_MESSAGE)
                .map_err(|e| ConsoleError::Protocol(e.reason))?
            {
                match self
                    .reassembly
                    .push(f, MAX_MESSAGE)
                    .map_err(|e| ConsoleError::Protocol(e.reason))?
                {
                    Some(Message::Text(t)) => {
                        return serde_json::from_str(&t)
                            .map(Some)
                            .map_err(|e| ConsoleError::Protocol(format!("not JSON: {e}")))
                    }
                    Some(Message::Close(_)) => return Ok(None),
                    Some(Message::Ping(p)) => {
                        self.mask_seed = self.mask_seed.wrapping_add(0x9e37_79b9);
                        let pong =
                            websocket::encode(Opcode::Pong, &p, Some(self.mask_seed.to_be_bytes()));
                        self.stream
                            .write_all(&pong)
                            .await
                            .map_err(|e| ConsoleError::Io(e.to_string()))?;
                    }
                    _ => {}
                }
            }
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| ConsoleError::Io(e.to_string()))?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Closes the console (a close frame, then the connection).
    pub async fn close(mut self) {
        let frame = websocket::encode(
            Opcode::Close,
            &websocket::close_payload(1000, ""),
            Some(self.mask_seed.to_be_bytes()),
        );
        let _ = self.stream.write_all(&frame).await;
        let _ = self.stream.shutdown().await;
    }
}

/// One line a person or a script types, as the command it means: `answer` (the oldest waiting
/// call), `answer N`, `queues`, `search TEXT`, `transfer N NUMBER`, `park N`, `retrieve P`
/// (P the park device's number); the error names what is understood.
pub fn parse_command(line: &str) -> Result<serde_json::Value, String> {
    let mut words = line.split_whitespace();
    let Some(cmd) = words.next() else {
        return Err("empty line".into());
    };
    let v = match cmd {
        "queues" => serde_json::json!({"cmd": "queues"}),
        "search" => {
            let text = line.trim_start()["search".len()..].trim();
            if text.is_empty() {
                return Err("search needs a name or number: search TEXT".into());
            }
            return Ok(serde_json::json!({"cmd": "search", "text": text}));
        }
        "answer" => match words.next() {
            None => serde_json::json!({"cmd": "answer"}),
            Some(w) => {
                let call = w
                    .parse::<u64>()
                    .map_err(|_| format!("answer: {w:?} is not a call id (answer, or answer N)"))?;
                serde_json::json!({"cmd": "answer", "call": call})
            }
        },
        "transfer" => {
            let (Some(n), Some(to)) = (words.next(), words.next()) else {
                return Err("transfer needs a call id and a number: transfer N NUMBER".into());
            };
            let call = n
                .parse::<u64>()
                .map_err(|_| format!("transfer: {n:?} is not a call id (transfer N NUMBER)"))?;
            serde_json::json!({"cmd": "transfer", "call": call, "to": to})
        }
        "park" => {
            let Some(n) = words.next() else {
                return Err("park needs a call id: park N".into());
            };
            let call = n
                .parse::<u64>()
                .map_err(|_| format!("park: {n:?} is not a call id (park N)"))?;
            serde_json::json!({"cmd": "park", "call": call})
        }
        "retrieve" => {
            let Some(p) = words.next() else {
                return Err("retrieve needs the park device's number: retrieve P".into());
            };
            serde_json::json!({"cmd": "retrieve", "park": p})
        }
        other => {
            return Err(format!(
                "unknown command {other:?} (commands: queues, answer, answer N, search TEXT, transfer N NUMBER, park N, retrieve P, quit)"
            ))
        }
    };
    if words.next().is_some() {
        return Err(format!("{cmd}: too many words"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::parse_command;
    use serde_json::json;

    #[test]
    fn r19_transfer_park_and_retrieve_lines_become_commands_or_clear_errors() {
        assert_eq!(
            parse_command("transfer 7 10002"),
            Ok(json!({"cmd": "transfer", "call": 7, "to": "10002"}))
        );
        assert_eq!(
            parse_command("park 7"),
            Ok(json!({"cmd": "park", "call": 7}))
        );
        assert_eq!(
            parse_command("retrieve 5921"),
            Ok(json!({"cmd": "retrieve", "park": "5921"}))
        );
        for (line, says) in [
            ("transfer 7", "transfer N NUMBER"),
            ("transfer x 10002", "\"x\" is not a call id"),
            ("park", "park N"),
            ("park seven", "\"seven\" is not a call id"),
            ("retrieve", "retrieve P"),
            ("park 7 8", "too many words"),
        ] {
            let e = parse_command(line).unwrap_err();
            assert!(e.contains(says), "{line:?}: {e}");
        }
    }
}
