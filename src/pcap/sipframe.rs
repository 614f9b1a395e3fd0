//! SIP-over-TCP message framing over reassembled TCP streams.
//!
//! [`SipStreamParser`] cuts one direction's stream into messages with the project's own
//! stream framing ([`StreamFramer`]: Content-Length is mandatory on streams) and parses each
//! with [`parse_stream_message`], so captures are judged by the same strict rules as live
//! traffic. Each [`SipFramedMessage`] names the frames its first and last bytes came from.
//! CRLF keep-alives are reported as [`SipStreamEvent::KeepAlive`] (RFC 5626: a double-CRLF ping
//! has `ping: true`, a single-CRLF pong `ping: false`).
//!
//! A message that frames but does not parse is reported ([`SipStreamEvent::Error`]) and skipped;
//! framing stays in step. When framing itself fails (no Content-Length, not SIP, too large), and
//! after a gap, the parser drops what it has and resynchronises at the next line that begins a
//! SIP start line (`METHOD uri SIP/2.0` or `SIP/2.0 NNN`). Memory is bounded by
//! [`MAX_MESSAGE_SIZE`] plus the last pushed chunk.
//!
//! [`SipTcpFramer`] runs one parser per direction of a connection and takes [`TcpEvent`]s.

use std::collections::VecDeque;

use super::http::Incomplete;
use super::tcp::{Direction, StreamBuffer, StreamChunk, TcpEvent};
use crate::wire::sip::{
    parse_stream_message, ParseError, SipMessage, StreamEvent, StreamFramer, MAX_MESSAGE_SIZE,
};

/// One SIP message found in a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipFramedMessage {
    pub message: SipMessage,
    /// Bytes on the wire (start line to the end of the body).
    pub len: usize,
    pub first_frame: u64,
    /// Frame of the last byte (the frame tshark shows the message in).
    pub last_frame: u64,
    pub first_ts_ns: u64,
    pub last_ts_ns: u64,
}

/// What a [`SipStreamParser`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SipStreamEvent {
    Message(SipFramedMessage),
    /// CR/LF bytes between messages; `ping` when they completed a double CRLF.
    KeepAlive {
        frame: u64,
        len: usize,
        ping: bool,
    },
    /// Bytes from `first_frame` to `last_frame` were not a valid message (dropped).
    Error {
        first_frame: u64,
        last_frame: u64,
        error: ParseError,
    },
    /// A message started but could not be completed (gap or end of stream); dropped.
    Incomplete {
        reason: Incomplete,
        first_frame: u64,
        last_frame: u64,
    },
}

/// Frames the SIP messages of one direction of a TCP connection.
#[derive(Clone, Debug, Default)]
pub struct SipStreamParser {
    buf: StreamBuffer,
    framer: StreamFramer,
    resync: bool,
    events: VecDeque<SipStreamEvent>,
}

impl SipStreamParser {
    pub fn new() -> Self {
        SipStreamParser::default()
    }

    /// The next event, oldest first.
    pub fn poll(&mut self) -> Option<SipStreamEvent> {
        self.events.pop_front()
    }

    /// Adds in-order stream bytes that came from `frame`.
    pub fn push(&mut self, data: &[u8], frame: u64, ts_ns: u64) {
        self.buf.push(data, frame, ts_ns);
        self.run();
    }

    /// Adds a reassembled chunk (its direction is not checked).
    pub fn push_chunk(&mut self, chunk: &StreamChunk) {
        self.push(&chunk.data, chunk.last_frame, chunk.ts_ns);
    }

    /// Bytes are missing before the next ones: drops the message in progress and resynchronises.
    pub fn gap(&mut self) {
        self.abandon(Incomplete::Gap);
        self.resync = true;
    }

    /// The stream ended: a message in progress is reported incomplete.
    pub fn end(&mut self) {
        self.abandon(Incomplete::End);
    }

    fn abandon(&mut self, reason: Incomplete) {
        let bytes = self.buf.bytes();
        let k = bytes
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(bytes.len());
        if k < bytes.len() && !self.resync {
            self.events.push_back(SipStreamEvent::Incomplete {
                reason,
                first_frame: self.buf.frame_at(k).0,
                last_frame: self.buf.frame_at(bytes.len()).0,
            });
        }
        self.buf.clear();
        self.framer.reset();
    }

    fn run(&mut self) {
        loop {
            if self.resync && !self.find_start() {
                return;
            }
            match self.framer.poll(self.buf.bytes()) {
                Ok(None) => return,
                Ok(Some(StreamEvent::KeepAlive { len, ping })) => {
                    let frame = self.buf.frame_at(len.saturating_sub(1)).0;
                    self.events
                        .push_back(SipStreamEvent::KeepAlive { frame, len, ping });
                    self.buf.consume(len.max(1));
                }
                Ok(Some(StreamEvent::Message { len })) => {
                    let (first_frame, first_ts_ns) = self.buf.frame_at(0);
                    let (last_frame, last_ts_ns) = self.buf.frame_at(len.saturating_sub(1));
                    let bytes = self.buf.bytes().get(..len).unwrap_or(&[]);
                    let ev = match parse_stream_message(bytes) {
                        Ok(message) => SipStreamEvent::Message(SipFramedMessage {
                            message,
                            len,
                            first_frame,
                            last_frame,
                            first_ts_ns,
                            last_ts_ns,
                        }),
                        Err(error) => SipStreamEvent::Error {
                            first_frame,
                            last_frame,
                            error,
                        },
                    };
                    self.events.push_back(ev);
                    self.buf.consume(len.max(1));
                }
                Err(error) => {
                    let frame = self.buf.frame_at(0).0;
                    self.events.push_back(SipStreamEvent::Error {
                        first_frame: frame,
                        last_frame: self.buf.frame_at(self.buf.len()).0,
                        error,
                    });
                    // Skip the offending start line, then look for the next one.
                    let bytes = self.buf.bytes();
                    let n = bytes
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(bytes.len(), |p| p + 1);
                    self.buf.consume(n.max(1));
                    self.framer.reset();
                    self.resync = true;
                }
            }
        }
    }

    /// Drops bytes up to the next SIP start line. False if none is in the buffer yet.
    fn find_start(&mut self) -> bool {
        let bytes = self.buf.bytes();
        let mut pos = 0;
        while let Some(lf) = bytes
            .get(pos..)
            .and_then(|r| r.iter().position(|&b| b == b'\n'))
        {
            if looks_like_sip_start_line(bytes.get(pos..pos + lf).unwrap_or(&[])) {
                self.buf.consume(pos);
                self.framer.reset();
                self.resync = false;
                return true;
            }
            pos += lf + 1;
        }
        // Keep the last partial line unless it is already too long to be a start line.
        let drop = if bytes.len() - pos > MAX_MESSAGE_SIZE {
            bytes.len()
        } else {
            pos
        };
        self.buf.consume(drop);
        false
    }
}

/// True if `line` (without its LF) is `METHOD uri SIP/2.0` or `SIP/2.0 NNN ...`.
fn looks_like_sip_start_line(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let is_version = |v: &[u8]| v.eq_ignore_ascii_case(b"SIP/2.0");
    let parts: Vec<&[u8]> = line.splitn(3, |&b| b == b' ').collect();
    match parts.as_slice() {
        [v, code, ..] if is_version(v) => code.len() == 3 && code.iter().all(u8::is_ascii_digit),
        [method, uri, v] => {
            let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(b);
            !method.is_empty()
                && method.iter().all(tchar)
                && !uri.is_empty()
                && !uri.contains(&b' ')
                && is_version(v)
        }
        _ => false,
    }
}

/// Both directions of one SIP-over-TCP connection.
#[derive(Clone, Debug, Default)]
pub struct SipTcpFramer {
    parsers: [SipStreamParser; 2],
    events: VecDeque<(Direction, SipStreamEvent)>,
}

impl SipTcpFramer {
    pub fn new() -> Self {
        SipTcpFramer::default()
    }

    /// The next event with its direction, oldest first.
    pub fn poll(&mut self) -> Option<(Direction, SipStreamEvent)> {
        self.events.pop_front()
    }

    /// Feeds one reassembler event (data, gap, FIN, RST; others are ignored).
    pub fn on_tcp_event(&mut self, ev: &TcpEvent) {
        match ev {
            TcpEvent::Data(c) => self.push(c.dir, &c.data, c.last_frame, c.ts_ns),
            TcpEvent::Gap(g) => self.with(g.dir, SipStreamParser::gap),
            TcpEvent::Fin { dir, .. } => self.with(*dir, SipStreamParser::end),
            TcpEvent::Rst { .. } => self.finish(),
            TcpEvent::Handshake { .. } | TcpEvent::OverlapConflict { .. } => {}
        }
    }

    pub fn push(&mut self, dir: Direction, data: &[u8], frame: u64, ts_ns: u64) {
        self.with(dir, |p| p.push(data, frame, ts_ns));
    }

    /// The connection ended (RST or end of capture).
    pub fn finish(&mut self) {
        self.with(Direction::Forward, SipStreamParser::end);
        self.with(Direction::Reverse, SipStreamParser::end);
    }

    fn with(&mut self, dir: Direction, f: impl FnOnce(&mut SipStreamParser)) {
        let Some(p) = self.parsers.get_mut(dir.index()) else {
            return;
        };
        f(p);
        while let Some(ev) = p.poll() {
            self.events.push_back((dir, ev));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(start: &str, cseq: &str, body: &str) -> Vec<u8> {
        format!(
            "{start}\r\nVia: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK-1\r\nFrom: <sip:a@x>;tag=1\r\n\
             To: <sip:b@x>\r\nCall-ID: c1@x\r\nCSeq: {cseq}\r\nMax-Forwards: 70\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn drain(p: &mut SipStreamParser) -> Vec<SipStreamEvent> {
        std::iter::from_fn(|| p.poll()).collect()
    }

    fn frames_of_messages(evs: &[SipStreamEvent]) -> Vec<(u64, u64)> {
        evs.iter()
            .filter_map(|e| match e {
                SipStreamEvent::Message(m) => Some((m.first_frame, m.last_frame)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn messages_split_and_joined_across_frames() {
        let invite = msg("INVITE sip:b@x SIP/2.0", "1 INVITE", "v=0\r\n");
        let ok = msg("SIP/2.0 200 OK", "1 INVITE", "");
        let mut p = SipStreamParser::new();
        let (a, b) = invite.split_at(50);
        p.push(a, 1, 10);
        assert!(drain(&mut p).is_empty());
        let mut rest = b.to_vec();
        rest.extend_from_slice(&ok);
        p.push(&rest, 2, 20);
        let evs = drain(&mut p);
        assert_eq!(frames_of_messages(&evs), vec![(1, 2), (2, 2)]);
        match &evs[0] {
            SipStreamEvent::Message(m) => {
                assert_eq!(m.len, invite.len());
                assert_eq!((m.first_ts_ns, m.last_ts_ns), (10, 20));
                match &m.message {
                    SipMessage::Request(r) => assert_eq!(&r.body[..], b"v=0\r\n"),
                    SipMessage::Response(_) => panic!(),
                }
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn keepalive_ping_and_pong() {
        let mut p = SipStreamParser::new();
        p.push(b"\r\n\r\n", 1, 0);
        p.push(b"\r\n", 2, 0);
        let mut m = msg("OPTIONS sip:x SIP/2.0", "2 OPTIONS", "");
        m.splice(0..0, b"\r\n".iter().copied());
        p.push(&m, 3, 0);
        let evs = drain(&mut p);
        assert_eq!(
            evs[..2],
            [
                SipStreamEvent::KeepAlive {
                    frame: 1,
                    len: 4,
                    ping: true
                },
                SipStreamEvent::KeepAlive {
                    frame: 2,
                    len: 2,
                    ping: false
                },
            ]
        );
        assert!(matches!(
            evs[2],
            SipStreamEvent::KeepAlive {
                frame: 3,
                len: 2,
                ..
            }
        ));
        assert_eq!(frames_of_messages(&evs), vec![(3, 3)]);
    }

    #[test]
    fn gap_drops_message_and_resyncs() {
        let mut p = SipStreamParser::new();
        let invite = msg("INVITE sip:b@x SIP/2.0", "1 INVITE", "v=0\r\n");
        p.push(invite.get(..60).unwrap_or(&[]), 1, 0);
        p.gap();
        let mut after = invite.get(100..).unwrap_or(&[]).to_vec();
        after.extend_from_slice(&msg("SIP/2.0 180 Ringing", "1 INVITE", ""));
        p.push(&after, 3, 0);
        let evs = drain(&mut p);
        assert_eq!(
            evs[0],
            SipStreamEvent::Incomplete {
                reason: Incomplete::Gap,
                first_frame: 1,
                last_frame: 1
            }
        );
        assert_eq!(frames_of_messages(&evs), vec![(3, 3)]);
        assert_eq!(evs.len(), 2, "{evs:?}");
    }

    #[test]
    fn framing_error_resyncs_at_next_start_line() {
        let mut p = SipStreamParser::new();
        // No Content-Length: cannot be framed on a stream.
        p.push(
            b"MESSAGE sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n\r\nhello\r\n",
            1,
            0,
        );
        p.push(&msg("BYE sip:b@x SIP/2.0", "3 BYE", ""), 2, 0);
        p.push(b"\x16\x03\x01 not sip\r\n", 3, 0);
        p.push(&msg("SIP/2.0 200 OK", "3 BYE", ""), 4, 0);
        let evs = drain(&mut p);
        let errors: Vec<u64> = evs
            .iter()
            .filter_map(|e| match e {
                SipStreamEvent::Error { first_frame, .. } => Some(*first_frame),
                _ => None,
            })
            .collect();
        assert_eq!(errors, vec![1, 3]);
        assert_eq!(frames_of_messages(&evs), vec![(2, 2), (4, 4)]);
    }

    #[test]
    fn parse_error_in_a_framed_message_keeps_framing() {
        let mut p = SipStreamParser::new();
        let bad = msg("INVITE sip:b@x SIP/2.0", "x INVITE", "");
        p.push(&bad, 1, 0);
        p.push(&msg("SIP/2.0 100 Trying", "1 INVITE", ""), 2, 0);
        let evs = drain(&mut p);
        assert!(matches!(
            evs[0],
            SipStreamEvent::Error {
                first_frame: 1,
                last_frame: 1,
                ..
            }
        ));
        assert_eq!(frames_of_messages(&evs), vec![(2, 2)]);
    }

    #[test]
    fn end_in_the_middle_is_incomplete() {
        let mut p = SipStreamParser::new();
        p.push(b"\r\nSIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nabc", 5, 0);
        p.end();
        let evs = drain(&mut p);
        assert_eq!(
            evs.last(),
            Some(&SipStreamEvent::Incomplete {
                reason: Incomplete::End,
                first_frame: 5,
                last_frame: 5
            })
        );
    }

    /// SIP messages over TCP port 5060 as (last frame, method or status), sorted by frame,
    /// and the number of retransmitted segments seen.
    fn sip_in_capture(file: &str) -> Option<(Vec<(u64, String)>, u64)> {
        let path = crate::pcap::tcp::capture::corpus(file)?;
        let mut found = Vec::new();
        let mut retrans = 0;
        for conn in crate::pcap::tcp::capture::connections(&path) {
            if conn.ports.0 != 5060 && conn.ports.1 != 5060 {
                continue;
            }
            retrans += conn.stats.forward.retransmissions + conn.stats.reverse.retransmissions;
            let mut f = SipTcpFramer::new();
            for ev in &conn.events {
                f.on_tcp_event(ev);
            }
            f.finish();
            while let Some((_, ev)) = f.poll() {
                match ev {
                    SipStreamEvent::Message(m) => found.push((
                        m.last_frame,
                        match &m.message {
                            SipMessage::Request(r) => r.method.as_str().to_string(),
                            SipMessage::Response(r) => r.status.to_string(),
                        },
                    )),
                    SipStreamEvent::KeepAlive { .. } => {}
                    e => panic!("{file}: {e:?}"),
                }
            }
        }
        found.sort();
        Some((found, retrans))
    }

    /// "frame what, frame what, ..." -> pairs.
    fn expected(list: &str) -> Vec<(u64, String)> {
        list.split(',')
            .map(|item| {
                let (frame, what) = item.trim().split_once(' ').expect("frame and kind");
                (frame.parse().expect("frame number"), what.to_string())
            })
            .collect()
    }

    /// Expectations from `tshark -r FILE -Y "sip && tcp" -T fields -e frame.number
    /// -e sip.Method -e sip.Status-Code`. The paging NOTIFY spans frames 23 and 26.
    #[test]
    fn r4_corpus_sip_over_tcp_matches_tshark() {
        let Some((found, _)) =
            sip_in_capture("Wireshark-Captures/collab_pcap/sip/sip_mcast_paging.pcapng")
        else {
            return;
        };
        let want = expected(
            "20 REFER, 22 202, 26 NOTIFY, 27 200, 246 REFER, 248 202, 252 NOTIFY, 255 200",
        );
        assert_eq!(found, want);

        let Some((found, _)) = sip_in_capture("heplify/sip_ipv4_tcp.pcap") else {
            return;
        };
        let want = expected("3 INVITE, 5 100, 7 180, 9 200, 11 ACK, 81 BYE, 83 200");
        assert_eq!(found, want);

        // Frame 38 retransmits a 200 OK: counted, not reported twice.
        let Some((found, retrans)) = sip_in_capture("heplify/sip_ipv4_tcp_retrans.pcap") else {
            return;
        };
        let want = expected("28 REGISTER, 32 401, 33 REGISTER, 36 200");
        assert_eq!(found, want);
        assert!(retrans >= 1);
    }

    #[test]
    fn start_line_recognition() {
        assert!(looks_like_sip_start_line(b"INVITE sip:a@b SIP/2.0\r"));
        assert!(looks_like_sip_start_line(b"SIP/2.0 486 Busy Here"));
        assert!(!looks_like_sip_start_line(b"SIP/2.0 48 Busy"));
        assert!(!looks_like_sip_start_line(b"GET / HTTP/1.1"));
        assert!(!looks_like_sip_start_line(b"Via: SIP/2.0/TCP x"));
        assert!(!looks_like_sip_start_line(b""));
    }

    #[test]
    fn tcp_framer_over_both_directions() {
        use crate::pcap::tcp::{TcpFlags, TcpReassembler, TcpSegment};
        let refer = msg("REFER sip:p@x SIP/2.0", "101 REFER", "");
        let accepted = msg("SIP/2.0 202 Accepted", "101 REFER", "");
        let (r1, r2) = refer.split_at(30);
        let mut r = TcpReassembler::default();
        let mut f = SipTcpFramer::new();
        let ack = TcpFlags::ACK;
        let segs: [(Direction, u64, u32, &[u8]); 3] = [
            (Direction::Forward, 1, 1000, r1),
            (Direction::Forward, 2, 1000 + r1.len() as u32, r2),
            (Direction::Reverse, 3, 7, &accepted),
        ];
        for (dir, frame, seq, payload) in segs {
            r.push(
                dir,
                TcpSegment {
                    frame,
                    ts_ns: 0,
                    seq,
                    ack: 0,
                    flags: ack,
                    payload,
                },
            );
            for ev in r.drain() {
                f.on_tcp_event(&ev);
            }
        }
        let evs: Vec<_> = std::iter::from_fn(|| f.poll()).collect();
        let got: Vec<(Direction, u64, u64)> = evs
            .iter()
            .filter_map(|(d, e)| match e {
                SipStreamEvent::Message(m) => Some((*d, m.first_frame, m.last_frame)),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            vec![(Direction::Forward, 1, 2), (Direction::Reverse, 3, 3)]
        );
    }
}
