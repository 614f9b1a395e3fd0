//! Fuzzes the TFTP server's request reader and its transfer state machine.
//!
//! Input: a 2-byte length, the request packet, then the client's side of the transfer as
//! 5-byte steps (a byte saying packet or timeout, then a 4-byte packet).
//!
//! - `parse_request` never panics; a refusal encodes as an ERROR packet; an accepted request
//!   has a file name, a supported mode and options within RFC 2347-2349's ranges;
//! - a transfer started from it, given any packets and timeouts, sends only OACK or DATA
//!   packets of at most `blksize` data bytes, gives up after `MAX_RETRIES` timeouts in a row,
//!   and, with a well-behaved client acknowledging every block, delivers exactly the file.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use ucm::services::tftp::{error_packet, parse_request, Step, Transfer, MAX_BLKSIZE, MAX_RETRIES};

fn data_len(p: &[u8], blksize: usize) -> Option<usize> {
    let body = p.get(4..)?;
    assert_eq!(p.get(..2), Some(&[0u8, 3][..]), "not a DATA packet: {p:?}");
    assert!(body.len() <= blksize);
    Some(body.len())
}

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (packet, client) = rest.split_at(len);
    let req = match parse_request(packet) {
        Err(e) => {
            let p = error_packet(&e);
            assert_eq!(p.get(..2), Some(&[0u8, 5][..]));
            assert_eq!(p.last(), Some(&0));
            return;
        }
        Ok(r) => r,
    };
    assert!(!req.filename.is_empty());
    assert!(req.mode == "octet" || req.mode == "netascii");
    if let Some(b) = req.blksize {
        assert!((8..=MAX_BLKSIZE).contains(&b));
    }
    if let Some(t) = req.timeout {
        assert!(t >= 1);
    }
    let blksize = usize::from(req.blksize.unwrap_or(512));
    // A file as long as the client part, repeated to span a few blocks.
    let file: Vec<u8> = client
        .iter()
        .copied()
        .cycle()
        .take(client.len() * 7)
        .collect();
    let t0 = Instant::now();

    // Any client.
    let (mut t, first) = Transfer::start(&req, file.clone().into(), t0);
    assert!(first.starts_with(&[0, 6]) || first.starts_with(&[0, 3]));
    let mut now = t0;
    let mut timeouts_in_a_row = 0;
    for step in client.chunks(5) {
        let (&kind, packet) = step.split_first().unwrap_or((&0, &[]));
        let out = if kind & 1 == 0 {
            timeouts_in_a_row = 0;
            t.on_packet(packet, now)
        } else {
            now += Duration::from_secs(u64::from(kind >> 1));
            let out = t.on_timeout(now);
            if matches!(out, Step::Send(_)) {
                timeouts_in_a_row += 1;
                assert!(timeouts_in_a_row <= MAX_RETRIES);
            }
            out
        };
        if let Step::Send(p) = out {
            if !p.starts_with(&[0, 6]) {
                data_len(&p, blksize);
            }
        }
    }

    // A client that acknowledges every block: the file arrives whole.
    let (mut t, first) = Transfer::start(&req, file.clone().into(), t0);
    let mut got = Vec::new();
    let mut next = if first.starts_with(&[0, 6]) {
        0u16
    } else {
        got.extend_from_slice(first.get(4..).unwrap_or(&[]));
        1
    };
    for _ in 0..=file.len() / blksize + 2 {
        let mut ack = vec![0, 4];
        ack.extend_from_slice(&next.to_be_bytes());
        match t.on_packet(&ack, t0) {
            Step::Send(p) => {
                got.extend_from_slice(p.get(4..).unwrap_or(&[]));
                data_len(&p, blksize);
                next = next.wrapping_add(1);
            }
            Step::Done => break,
            other => panic!("transfer stopped: {other:?}"),
        }
    }
    assert_eq!(got, file);
});
