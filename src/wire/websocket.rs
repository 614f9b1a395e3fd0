//! WebSocket (RFC 6455), sans-IO: the opening handshake's accept key and frames, with a cap on
//! what a peer may make the other side hold. Enough for text messages, ping/pong and close;
//! extensions (compression) are never negotiated.

use sha1::{Digest, Sha1};

use super::codec::base64_encode;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key` (RFC 6455 section 4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.trim().as_bytes());
    h.update(GUID.as_bytes());
    base64_encode(&h.finalize())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn of(b: u8) -> Option<Opcode> {
        Some(match b {
            0 => Opcode::Continuation,
            1 => Opcode::Text,
            2 => Opcode::Binary,
            8 => Opcode::Close,
            9 => Opcode::Ping,
            10 => Opcode::Pong,
            _ => return None,
        })
    }

    fn code(self) -> u8 {
        match self {
            Opcode::Continuation => 0,
            Opcode::Text => 1,
            Opcode::Binary => 2,
            Opcode::Close => 8,
            Opcode::Ping => 9,
            Opcode::Pong => 10,
        }
    }

    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// One frame, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: Opcode,
    pub payload: Vec<u8>,
}

/// Why a peer's bytes are not a frame this side takes; `close_code` is the status to close
/// the connection with (RFC 6455 section 7.4.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct FrameError {
    pub close_code: u16,
    pub reason: String,
}

fn err(close_code: u16, reason: impl Into<String>) -> FrameError {
    FrameError {
        close_code,
        reason: reason.into(),
    }
}

/// Encodes a frame; `mask` is the client's masking key (clients must mask, servers must not).
pub fn encode(opcode: Opcode, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode.code());
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= 0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A close frame's payload: the status and a reason (cut to fit a control frame).
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    let mut r = reason.as_bytes();
    if r.len() > 123 {
        r = &r[..123];
    }
    p.extend_from_slice(r);
    p
}

/// Takes one frame off the front of `buf` if it is all there: `Ok(None)` while more bytes
/// are needed. A frame whose payload exceeds `max_payload`, an unmasked frame where masking
/// is required (`masked`: the server's side), a reserved bit or opcode, or a control frame
/// that is fragmented or longer than 125 bytes is an error, found from the header alone (a
/// peer cannot make this side buffer an oversized frame).
pub fn decode(
    buf: &mut Vec<u8>,
    masked: bool,
    max_payload: usize,
) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x70 != 0 {
        return Err(err(1002, "reserved bits set (no extension was negotiated)"));
    }
    let opcode = Opcode::of(b0 & 0x0f).ok_or_else(|| err(1002, "reserved opcode"))?;
    let fin = b0 & 0x80 != 0;
    let is_masked = b1 & 0x80 != 0;
    if is_masked != masked {
        return Err(err(
            1002,
            if masked {
                "a client's frames must be masked"
            } else {
                "a server's frames must not be masked"
            },
        ));
    }
    let (len, mut at) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode.is_control() && (len > 125 || !fin) {
        return Err(err(
            1002,
            "a control frame must be whole and at most 125 bytes",
        ));
    }
    if len > max_payload as u64 {
        return Err(err(
            1009,
            format!("frame of {len} bytes: at most {max_payload}"),
        ));
    }
    let len = len as usize;
    let key = if masked {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let k = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(k)
    } else {
        None
    };
    if buf.len() < at + len {
        return Ok(None);
    }
    let mut payload: Vec<u8> = buf[at..at + len].to_vec();
    if let Some(k) = key {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= k[i % 4];
        }
    }
    buf.drain(..at + len);
    Ok(Some(Frame {
        fin,
        opcode,
        payload,
    }))
}

/// Joins fragmented messages, with a cap on the whole message.
#[derive(Debug, Default)]
pub struct Reassembly {
    partial: Option<(Opcode, Vec<u8>)>,
}

/// What a frame makes of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    /// The peer closes, with its status if it gave one.
    Close(Option<u16>),
}

impl Reassembly {
    /// Feeds one frame: a message when one is complete.
    pub fn push(&mut self, f: Frame, max_message: usize) -> Result<Option<Message>, FrameError> {
        match f.opcode {
            Opcode::Ping => return Ok(Some(Message::Ping(f.payload))),
            Opcode::Pong => return Ok(Some(Message::Pong)),
            Opcode::Close => {
                let code = (f.payload.len() >= 2)
                    .then(|| u16::from_be_bytes([f.payload[0], f.payload[1]]));
                return Ok(Some(Message::Close(code)));
            }
            Opcode::Continuation => {
                let Some((_, data)) = self.partial.as_mut() else {
                    return Err(err(1002, "a continuation frame with no message begun"));
                };
                if data.len() + f.payload.len() > max_message {
                    return Err(err(1009, format!("message over {max_message} bytes")));
                }
                data.extend_from_slice(&f.payload);
            }
            Opcode::Text | Opcode::Binary => {
                if self.partial.is_some() {
                    return Err(err(1002, "a new message before the last one ended"));
                }
                self.partial = Some((f.opcode, f.payload));
            }
        }
        if !f.fin {
            return Ok(None);
        }
        let Some((op, data)) = self.partial.take() else {
            return Ok(None);
        };
        Ok(Some(match op {
            Opcode::Text => Message::Text(
                String::from_utf8(data).map_err(|_| err(1007, "a text message not in UTF-8"))?,
            ),
            _ => Message::Binary(data),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_example_accept_key() {
        // RFC 6455 section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frames_round_trip_and_limits_hold_from_the_header() {
        for n in [0usize, 5, 125, 126, 70_000] {
            let data = vec![b'x'; n];
            let mut b = encode(Opcode::Text, &data, Some([1, 2, 3, 4]));
            let f = decode(&mut b, true, 100_000).unwrap().unwrap();
            assert_eq!((f.opcode, f.payload.len(), f.fin), (Opcode::Text, n, true));
            assert!(b.is_empty());
        }
        // A server's frame to a server: refused (unmasked).
        let mut b = encode(Opcode::Text, b"hi", None);
        assert_eq!(decode(&mut b, true, 10).unwrap_err().close_code, 1002);
        // An announced 2^40-byte frame: refused from its 10 header bytes.
        let mut b = vec![0x81, 0x80 | 127, 0, 0, 1, 0, 0, 0, 0, 0];
        assert_eq!(decode(&mut b, true, 65536).unwrap_err().close_code, 1009);
        // Partial input waits.
        let full = encode(Opcode::Text, b"hello", Some([9, 9, 9, 9]));
        let mut b = full[..4].to_vec();
        assert_eq!(decode(&mut b, true, 10).unwrap(), None);
        let mut r = Reassembly::default();
        let mut b = full.clone();
        let f = decode(&mut b, true, 10).unwrap().unwrap();
        assert_eq!(r.push(f, 10).unwrap(), Some(Message::Text("hello".into())));
        // A fragmented message past the message cap.
        let mut r = Reassembly::default();
        let first = Frame {
            fin: false,
            opcode: Opcode::Text,
            payload: vec![b'a'; 8],
        };
        assert_eq!(r.push(first, 10).unwrap(), None);
        let more = Frame {
            fin: true,
            opcode: Opcode::Continuation,
            payload: vec![b'a'; 8],
        };
        assert_eq!(r.push(more, 10).unwrap_err().close_code, 1009);
    }
}
