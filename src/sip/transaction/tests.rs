use super::*;
use crate::sip::message::parse_datagram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const T1: Duration = Duration::from_millis(500);
const T4: Duration = Duration::from_secs(5);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn request_with(method: &str, via: &str, seq: u32, to_tag: Option<&str>) -> Request {
    let to = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let text = format!(
        "{method} sip:1001@10.0.0.1 SIP/2.0\r\n\
         Via: {via}\r\n\
         Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKlower\r\n\
         Route: <sip:10.0.0.1;lr>\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:1002@10.0.0.1>;tag=from1\r\n\
         To: <sip:1001@10.0.0.1>{to}\r\n\
         Call-ID: call1@10.0.0.2\r\n\
         CSeq: {seq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    match parse_datagram(text.as_bytes()) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("bad test request: {other:?}"),
    }
}

fn request(method: &str, branch: &str) -> Request {
    request_with(
        method,
        &format!("SIP/2.0/UDP 10.0.0.2:5060;branch={branch}"),
        1,
        None,
    )
}

fn invite(branch: &str) -> Request {
    request("INVITE", branch)
}

fn response(req: &Request, status: u16) -> Response {
    req.make_response(status, "", Some("totag"))
}

fn sent(actions: &[Action]) -> Vec<&SipMessage> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn sent_request(a: &Action) -> &Request {
    match a {
        Action::Send(SipMessage::Request(r)) => r,
        other => panic!("expected a sent request, got {other:?}"),
    }
}

fn sent_status(a: &Action) -> u16 {
    match a {
        Action::Send(SipMessage::Response(r)) => r.status,
        other => panic!("expected a sent response, got {other:?}"),
    }
}

/// Runs every deadline of `t` up to `until`, returning (time, actions).
fn run_client(t: &mut ClientTransaction, until: Instant) -> Vec<(Instant, Vec<Action>)> {
    let mut out = Vec::new();
    while let Some(d) = t.next_deadline() {
        if d > until {
            break;
        }
        out.push((d, t.on_timer(d)));
    }
    out
}

fn run_server(t: &mut ServerTransaction, until: Instant) -> Vec<(Instant, Vec<Action>)> {
    let mut out = Vec::new();
    while let Some(d) = t.next_deadline() {
        if d > until {
            break;
        }
        out.push((d, t.on_timer(d)));
    }
    out
}

fn offsets(
    base: Instant,
    fired: &[(Instant, Vec<Action>)],
    want: fn(&Action) -> bool,
) -> Vec<Duration> {
    fired
        .iter()
        .filter(|(_, a)| a.iter().any(want))
        .map(|(t, _)| *t - base)
        .collect()
}

fn is_send(a: &Action) -> bool {
    matches!(a, Action::Send(_))
}

#[test]
fn branch_helper_and_defaults() {
    assert_eq!(new_branch(0xab), "z9hG4bK00000000000000ab");
    let t = Timers::default();
    assert_eq!((t.t1, t.t2, t.t4), (T1, Duration::from_secs(4), T4));
    assert_eq!(t.transaction_timeout(), Duration::from_secs(32));
    // Degenerate values are clamped rather than looping or overflowing.
    let z = Timers {
        t1: Duration::ZERO,
        t2: Duration::ZERO,
        t4: Duration::MAX,
    };
    assert_eq!(z.transaction_timeout(), Duration::from_millis(64));
}

#[test]
fn keys_follow_rfc3261_matching_rules() {
    let inv = invite("z9hG4bKaaa");
    let k = TransactionKey::for_request(&inv).unwrap();
    assert_eq!(k.role(), Role::Server);
    assert_eq!(k.method(), &Method::Invite);
    assert_eq!(k.branch(), Some("z9hg4bkaaa"));
    // ACK matches the INVITE; CANCEL does not.
    let ack = request_with(
        "ACK",
        "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKaaa",
        1,
        Some("x"),
    );
    assert_eq!(TransactionKey::for_request(&ack).unwrap(), k);
    let cancel = request("CANCEL", "z9hG4bKaaa");
    let ck = TransactionKey::for_request(&cancel).unwrap();
    assert_ne!(ck, k);
    assert_eq!(ck.with_method(Method::Invite), k);
    // Branch and host compare case-insensitively; sent-by matters.
    let upper = request_with(
        "INVITE",
        "SIP/2.0/UDP 10.0.0.2:5060;branch=Z9HG4BKAAA",
        1,
        None,
    );
    assert_eq!(TransactionKey::for_request(&upper).unwrap(), k);
    let other_port = request_with(
        "INVITE",
        "SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bKaaa",
        1,
        None,
    );
    assert_ne!(TransactionKey::for_request(&other_port).unwrap(), k);
    // Client side: branch + CSeq method; a response matches its request.
    let ck = TransactionKey::client_for_request(&inv).unwrap();
    assert_eq!(ck.role(), Role::Client);
    assert_ne!(ck, k);
    assert_eq!(
        TransactionKey::for_response(&response(&inv, 180)).unwrap(),
        ck
    );
    let cancel_resp = response(&cancel, 200);
    assert_ne!(TransactionKey::for_response(&cancel_resp).unwrap(), ck);
    // No Via: unidentifiable.
    let mut bad = inv.clone();
    bad.headers.remove("Via");
    assert!(matches!(
        TransactionKey::for_request(&bad),
        Err(TransactionError::Unidentifiable(_))
    ));
    assert!(TransactionKey::client_for_request(&bad).is_err());
}

#[test]
fn rfc2543_requests_match_without_magic_cookie() {
    let old = request("INVITE", "1234");
    let k = TransactionKey::for_request(&old).unwrap();
    assert_eq!(k.branch(), None);
    assert_eq!(TransactionKey::for_request(&old.clone()).unwrap(), k);
    let ack = request_with("ACK", "SIP/2.0/UDP 10.0.0.2:5060;branch=1234", 1, Some("t"));
    assert_eq!(TransactionKey::for_request(&ack).unwrap(), k);
    let next = request_with("INVITE", "SIP/2.0/UDP 10.0.0.2:5060;branch=1234", 2, None);
    assert_ne!(TransactionKey::for_request(&next).unwrap(), k);
    // No branch at all also falls back to RFC 2543 matching.
    let none = request_with("OPTIONS", "SIP/2.0/UDP 10.0.0.2:5060", 1, None);
    assert!(TransactionKey::for_request(&none).is_ok());
}

#[test]
fn invite_client_udp_retransmits_then_times_out() {
    let base = Instant::now();
    let inv = invite("z9hG4bKc1");
    let (mut t, first) = ClientTransaction::new(
        inv.clone(),
        Reliability::Unreliable,
        Timers::default(),
        base,
    )
    .unwrap();
    assert_eq!(first, vec![Action::Send(SipMessage::Request(inv.clone()))]);
    assert_eq!(t.state(), ClientState::Calling);
    let fired = run_client(&mut t, base + Duration::from_secs(40));
    // Timer A: intervals 0.5, 1, 2, 4, 8, 16 s.
    assert_eq!(
        offsets(base, &fired, is_send),
        [500, 1500, 3500, 7500, 15500, 31500].map(ms)
    );
    for (_, a) in &fired {
        for m in sent(a) {
            assert_eq!(m, &SipMessage::Request(inv.clone()));
        }
    }
    // Timer B at 64*T1.
    let (when, last) = fired.last().unwrap();
    assert_eq!(*when - base, Duration::from_secs(32));
    assert_eq!(last, &vec![Action::Timeout, Action::Terminated]);
    assert_eq!(t.state(), ClientState::Terminated);
    assert_eq!(t.next_deadline(), None);
    assert!(t.on_timer(base + Duration::from_secs(100)).is_empty());
}

#[test]
fn invite_client_provisional_stops_retransmissions() {
    let base = Instant::now();
    let inv = invite("z9hG4bKc2");
    let (mut t, _) = ClientTransaction::new(
        inv.clone(),
        Reliability::Unreliable,
        Timers::default(),
        base,
    )
    .unwrap();
    let fired = run_client(&mut t, base + ms(600));
    assert_eq!(offsets(base, &fired, is_send), vec![ms(500)]);
    let trying = response(&inv, 100);
    assert_eq!(
        t.on_response(trying.clone(), base + ms(700)),
        vec![Action::DeliverResponse(trying)]
    );
    assert_eq!(t.state(), ClientState::Proceeding);
    // No Timer A, no Timer B in Proceeding.
    assert_eq!(t.next_deadline(), None);
    let ringing = response(&inv, 180);
    assert_eq!(
        t.on_response(ringing.clone(), base + ms(900)),
        vec![Action::DeliverResponse(ringing)]
    );
    // A response of another transaction is ignored.
    let other = response(&invite("z9hG4bKzzz"), 486);
    assert!(t.on_response(other, base + ms(950)).is_empty());
    assert_eq!(t.state(), ClientState::Proceeding);
}

#[test]
fn invite_client_non_2xx_is_acked_and_absorbed() {
    let base = Instant::now();
    let inv = invite("z9hG4bKc3");
    let (mut t, _) = ClientTransaction::new(
        inv.clone(),
        Reliability::Unreliable,
        Timers::default(),
        base,
    )
    .unwrap();
    t.on_response(response(&inv, 180), base + ms(100));
    let busy = response(&inv, 486);
    let a = t.on_response(busy.clone(), base + ms(2000));
    assert_eq!(a.len(), 2);
    assert_eq!(a[0], Action::DeliverResponse(busy.clone()));
    let ack = sent_request(&a[1]);
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, inv.uri);
    assert_eq!(ack.headers.count("Via"), 1);
    assert_eq!(ack.top_via().unwrap(), inv.top_via().unwrap());
    assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bKc3"));
    assert_eq!(ack.to().unwrap().tag(), Some("totag"));
    assert_eq!(ack.from().unwrap(), inv.from().unwrap());
    assert_eq!(ack.call_id(), inv.call_id());
    assert_eq!(
        ack.cseq().unwrap(),
        crate::sip::message::CSeq::new(1, Method::Ack)
    );
    assert_eq!(ack.headers.get("Route"), Some("<sip:10.0.0.1;lr>"));
    assert!(ack.validate().is_ok());
    assert_eq!(t.state(), ClientState::Completed);
    // A retransmitted 486 re-sends the ACK and is not delivered again.
    let again = t.on_response(busy.clone(), base + ms(2500));
    assert_eq!(again, vec![Action::Send(SipMessage::Request(ack.clone()))]);
    // Timer D: 32 s on UDP.
    assert_eq!(t.next_deadline(), Some(base + ms(34_000)));
    assert!(t.on_timer(base + ms(33_999)).is_empty());
    assert_eq!(t.on_timer(base + ms(34_000)), vec![Action::Terminated]);
    assert!(t.on_response(busy, base + ms(35_000)).is_empty());
}

#[test]
fn invite_client_reliable_never_retransmits() {
    let base = Instant::now();
    let inv = invite("z9hG4bKc4");
    let (mut t, first) =
        ClientTransaction::new(inv.clone(), Reliability::Reliable, Timers::default(), base)
            .unwrap();
    assert_eq!(first.len(), 1);
    // Only Timer B.
    assert_eq!(t.next_deadline(), Some(base + Duration::from_secs(32)));
    let busy = response(&inv, 486);
    let a = t.on_response(busy.clone(), base + ms(100));
    // Timer D is 0: ACK, and terminated at once.
    assert_eq!(a.len(), 3);
    assert_eq!(a[0], Action::DeliverResponse(busy));
    assert_eq!(sent_request(&a[1]).method, Method::Ack);
    assert_eq!(a[2], Action::Terminated);
    assert_eq!(t.state(), ClientState::Terminated);

    let (mut t, _) = ClientTransaction::new(
        invite("z9hG4bKc5"),
        Reliability::Reliable,
        Timers::default(),
        base,
    )
    .unwrap();
    let fired = run_client(&mut t, base + Duration::from_secs(60));
    assert_eq!(
        fired,
        vec![(
            base + Duration::from_secs(32),
            vec![Action::Timeout, Action::Terminated]
        )]
    );
}

#[test]
fn invite_client_2xx_terminates() {
    let base = Instant::now();
    let inv = invite("z9hG4bKc6");
    let (mut t, _) = ClientTransaction::new(
        inv.clone(),
        Reliability::Unreliable,
        Timers::default(),
        base,
    )
    .unwrap();
    let ok = response(&inv, 200);
    assert_eq!(
        t.on_response(ok.clone(), base + ms(300)),
        vec![Action::DeliverResponse(ok.clone()), Action::Terminated]
    );
    assert_eq!(t.next_deadline(), None);
    assert!(t.on_response(ok, base + ms(800)).is_empty());
}

#[test]
fn invite_client_cancel_and_guard() {
    let base = Instant::now();
    let inv = invite("z9hG4bKc7");
    let (mut t, _) = ClientTransaction::new(
        inv.clone(),
        Reliability::Unreliable,
        Timers::default(),
        base,
    )
    .unwrap();
    t.on_response(response(&inv, 180), base + ms(100));
    let cancel = t.make_cancel().unwrap();
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(cancel.uri, inv.uri);
    assert_eq!(cancel.headers.count("Via"), 1);
    assert_eq!(cancel.top_via().unwrap(), inv.top_via().unwrap());
    assert_eq!(cancel.to().unwrap(), inv.to().unwrap());
    assert_eq!(
        cancel.cseq().unwrap(),
        crate::sip::message::CSeq::new(1, Method::Cancel)
    );
    assert!(cancel.validate().is_ok());
    // CANCEL is its own client transaction with the same branch.
    let ck = TransactionKey::client_for_request(&cancel).unwrap();
    assert_ne!(&ck, t.key());
    assert_eq!(ck.branch(), t.key().branch());

    assert_eq!(t.next_deadline(), None);
    t.cancel_sent(base + ms(1000));
    assert_eq!(t.next_deadline(), Some(base + ms(33_000)));
    assert_eq!(
        t.on_timer(base + ms(33_000)),
        vec![Action::Timeout, Action::Terminated]
    );
    let (nit, _) = ClientTransaction::new(
        request("OPTIONS", "z9hG4bKo"),
        Reliability::Unreliable,
        Timers::default(),
        base,
    )
    .unwrap();
    assert!(nit.make_cancel().is_none());
}

#[test]
fn non_invite_client_timers_e_f() {
    let base = Instant::now();
    let req = request("REGISTER", "z9hG4bKn1");
    let (mut t, first) = ClientTransaction::new(
        req.clone(),
        Reliability::Unreliable,
        Timers::default(),
        base,
    )
    .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(t.state(), ClientState::Trying);
    let fired = run_client(&mut t, base + Duration::from_secs(40));
    // Timer E: 0.5, 1, 2, 4, then T2 = 4 s.
    assert_eq!(
        offsets(base, &fired, is_send),
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500].map(ms)
    );
    let (when, last) = fired.last().unwrap();
    assert_eq!(*when - base, Duration::from_secs(32));
    assert_eq!(last, &vec![Action::Timeout, Action::Terminated]);
}

#[test]
fn non_invite_client_proceeding_and_timer_k() {
    let base = Instant::now();
    let req = request("BYE", "z9hG4bKn2");
    let (mut t, _) = ClientTransaction::new(
        req.clone(),
        Reliability::Unreliable,
        Timers::default(),
        base,
    )
    .unwrap();
    run_client(&mut t, base + ms(500));
    let p = response(&req, 100);
    assert_eq!(
        t.on_response(p.clone(), base + ms(600)),
        vec![Action::DeliverResponse(p)]
    );
    assert_eq!(t.state(), ClientState::Proceeding);
    // Next E was scheduled at 0.5 + 1 s; once it fires in Proceeding the
    // interval becomes T2.
    let fired = run_client(&mut t, base + ms(6000));
    assert_eq!(offsets(base, &fired, is_send), vec![ms(1500), ms(5500)]);
    let ok = response(&req, 200);
    assert_eq!(
        t.on_response(ok.clone(), base + ms(6000)),
        vec![Action::DeliverResponse(ok.clone())]
    );
    assert_eq!(t.state(), ClientState::Completed);
    // Retransmissions absorbed; Timer K = T4.
    assert!(t.on_response(ok, base + ms(6100)).is_empty());
    assert_eq!(t.next_deadline(), Some(base + ms(11_000)));
    assert_eq!(t.on_timer(base + ms(11_000)), vec![Action::Terminated]);
}

#[test]
fn non_invite_client_reliable() {
    let base = Instant::now();
    let req = request("OPTIONS", "z9hG4bKn3");
    let (mut t, _) =
        ClientTransaction::new(req.clone(), Reliability::Reliable, Timers::default(), base)
            .unwrap();
    assert_eq!(t.next_deadline(), Some(base + Duration::from_secs(32)));
    let ok = response(&req, 200);
    assert_eq!(
        t.on_response(ok.clone(), base + ms(50)),
        vec![Action::DeliverResponse(ok), Action::Terminated]
    );
}

#[test]
fn client_transport_error_and_ack_refused() {
    let base = Instant::now();
    let (mut t, _) = ClientTransaction::new(
        invite("z9hG4bKe1"),
        Reliability::Reliable,
        Timers::default(),
        base,
    )
    .unwrap();
    assert_eq!(
        t.on_transport_error(),
        vec![Action::Timeout, Action::Terminated]
    );
    assert!(t.on_transport_error().is_empty());
    let ack = request_with("ACK", "SIP/2.0/UDP h;branch=z9hG4bKx", 1, Some("t"));
    assert_eq!(
        ClientTransaction::new(ack.clone(), Reliability::Reliable, Timers::default(), base).err(),
        Some(TransactionError::Ack)
    );
    assert_eq!(
        ServerTransaction::new(ack, Reliability::Reliable, Timers::default(), base).err(),
        Some(TransactionError::Ack)
    );
}

#[test]
fn invite_server_sends_100_after_200ms() {
    let base = Instant::now();
    let inv = invite("z9hG4bKs1");
    let (mut t, a) = ServerTransaction::new(
        inv.clone(),
        Reliability::Unreliable,
        Timers::default(),
        base,
    )
    .unwrap();
    assert!(a.is_empty());
    assert_eq!(t.state(), ServerState::Proceeding);
    assert_eq!(t.next_deadline(), Some(base + ms(200)));
    assert!(t.on_timer(base + ms(199)).is_empty());
    let a = t.on_timer(base + ms(200));
    assert_eq!(a.len(), 1);
    assert_eq!(sent_status(&a[0]), 100);
    assert_eq!(t.next_deadline(), None);
    // A retransmitted INVITE gets the last provisional again.
    let a = t.on_request_retransmission(&inv, base + ms(500));
    assert_eq!(sent_status(&a[0]), 100);
    let ringing = response(&inv, 180);
    assert_eq!(
        t.respond(ringing.clone(), base + ms(600)),
        vec![Action::Send(SipMessage::Response(ringing.clone()))]
    );
    assert_eq!(
        t.on_request_retransmission(&inv, base + ms(1500)),
        vec![Action::Send(SipMessage::Response(ringing))]
    );

    // The TU answering within 200 ms suppresses the automatic 100.
    let (mut t, _) =
        ServerTransaction::new(inv.clone(), Reliability::Reliable, Timers::default(), base)
            .unwrap();
    t.respond(response(&inv, 180), base + ms(50));
    assert_eq!(t.next_deadline(), None);
    assert!(t.on_timer(base + ms(200)).is_empty());
}

#[test]
fn invite_server_non_2xx_timer_g_ack_and_timer_i() {
    let base = Instant::now();
    let inv = invite("z9hG4bKs2");
    let (mut t, _) = ServerTransaction::new(
        inv.clone(),
        Reliability::Unreliable,
        Timers::default(),
        base,
    )
    .unwrap();
    let busy = response(&inv, 486);
    let start = base + ms(100);
    assert_eq!(
        t.respond(busy.clone(), start),
        vec![Action::Send(SipMessage::Response(busy.clone()))]
    );
    assert_eq!(t.state(), ServerState::Completed);
    let fired = run_server(&mut t, start + ms(16_000));
    // Timer G: 0.5, 1, 2, 4, 4 ...
    assert_eq!(
        offsets(start, &fired, is_send),
        [500, 1500, 3500, 7500, 11500, 15500].map(ms)
    );
    // A retransmitted INVITE re-sends the final.
    assert_eq!(
        t.on_request_retransmission(&inv, start + ms(16_000)),
        vec![Action::Send(SipMessage::Response(busy.clone()))]
    );
    let ack = request_with(
        "ACK",
        "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKs2",
        1,
        Some("totag"),
    );
    assert!(t.on_ack(&ack, start + ms(16_100)).is_empty());
    assert_eq!(t.state(), ServerState::Confirmed);
    // ACK and INVITE retransmissions are absorbed.
    assert!(t
        .on_request_retransmission(&ack, start + ms(16_200))
        .is_empty());
    assert!(t
        .on_request_retransmission(&inv, start + ms(16_200))
        .is_empty());
    // Timer I = T4.
    assert_eq!(t.next_deadline(), Some(start + ms(21_100)));
    assert_eq!(t.on_timer(start + ms(21_100)), vec![Action::Terminated]);
}

#[test]
fn invite_server_timer_h_without_ack() {
    let base = Instant::now();
    let inv = invite("z9hG4bKs3");
    let (mut t, _) = ServerTransaction::new(
        inv.clone(),
        Reliability::Unreliable,
        Timers::default(),
        base,
    )
    .unwrap();
    t.respond(response(&inv, 603), base);
    let fired = run_server(&mut t, base + Duration::from_secs(60));
    let (when, last) = fired.last().unwrap();
    assert_eq!(*when - base, Duration::from_secs(32));
    assert_eq!(last, &vec![Action::Timeout, Action::Terminated]);
    assert_eq!(t.state(), ServerState::Terminated);
}

#[test]
fn invite_server_reliable() {
    let base = Instant::now();
    let inv = invite("z9hG4bKs4");
    let (mut t, _) =
        ServerTransaction::new(inv.clone(), Reliability::Reliable, Timers::default(), base)
            .unwrap();
    t.respond(response(&inv, 486), base + ms(10));
    // No Timer G; only H.
    assert_eq!(t.next_deadline(), Some(base + ms(32_010)));
    let ack = request_with(
        "ACK",
        "SIP/2.0/TCP 10.0.0.2:5060;branch=z9hG4bKs4",
        1,
        Some("totag"),
    );
    // Different transport in the ACK's Via does not matter; sent-by does.
    assert_eq!(t.on_ack(&ack, base + ms(20)), vec![Action::Terminated]);
}

#[test]
fn invite_server_2xx_accepted_retransmits_until_ack() {
    let base = Instant::now();
    let inv = invite("z9hG4bKs5");
    let (mut t, _) = ServerTransaction::new(
        inv.clone(),
        Reliability::Unreliable,
        Timers::default(),
        base,
    )
    .unwrap();
    let ok = response(&inv, 200);
    assert_eq!(
        t.respond(ok.clone(), base),
        vec![Action::Send(SipMessage::Response(ok.clone()))]
    );
    assert_eq!(t.state(), ServerState::Accepted);
    assert!(t.awaiting_ack_for_2xx());
    let fired = run_server(&mut t, base + ms(8000));
    assert_eq!(
        offsets(base, &fired, is_send),
        [500, 1500, 3500, 7500].map(ms)
    );
    // INVITE retransmissions are absorbed silently (RFC 6026).
    assert!(t
        .on_request_retransmission(&inv, base + ms(8000))
        .is_empty());
    // The ACK for the 2xx (new branch) stops the retransmissions.
    let ack = request_with(
        "ACK",
        "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKack",
        1,
        Some("totag"),
    );
    assert!(t.on_ack(&ack, base + ms(8100)).is_empty());
    assert!(!t.awaiting_ack_for_2xx());
    // Timer L ends the transaction at 64*T1.
    let fired = run_server(&mut t, base + Duration::from_secs(60));
    assert_eq!(
        fired,
        vec![(base + Duration::from_secs(32), vec![Action::Terminated])]
    );

    // Without an ACK: Timeout (send BYE), then Terminated.
    let (mut t, _) =
        ServerTransaction::new(inv.clone(), Reliability::Reliable, Timers::default(), base)
            .unwrap();
    t.respond(ok, base);
    let fired = run_server(&mut t, base + Duration::from_secs(60));
    // RFC 3261 13.3.1.4: the 2xx is retransmitted whatever the transport.
    assert_eq!(
        offsets(base, &fired, is_send),
        [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500].map(ms)
    );
    let (when, last) = fired.last().unwrap();
    assert_eq!(*when - base, Duration::from_secs(32));
    assert_eq!(last, &vec![Action::Timeout, Action::Terminated]);
}

#[test]
fn invite_ok_retransmitter_standalone() {
    let base = Instant::now();
    let ok = response(&invite("z9hG4bKr"), 200);
    let (mut r, a) = InviteOkRetransmitter::new(ok.clone(), Timers::default(), base);
    assert_eq!(a, vec![Action::Send(SipMessage::Response(ok.clone()))]);
    assert_eq!(r.next_deadline(), Some(base + ms(500)));
    assert_eq!(
        r.on_timer(base + ms(500)),
        vec![Action::Send(SipMessage::Response(ok))]
    );
    assert_eq!(r.next_deadline(), Some(base + ms(1500)));
    r.on_ack();
    assert!(!r.is_active());
    assert_eq!(r.next_deadline(), None);
    assert!(r.on_timer(base + Duration::from_secs(99)).is_empty());
}

#[test]
fn non_invite_server_trying_and_timer_j() {
    let base = Instant::now();
    let req = request("REGISTER", "z9hG4bKs6");
    let (mut t, a) = ServerTransaction::new(
        req.clone(),
        Reliability::Unreliable,
        Timers::default(),
        base,
    )
    .unwrap();
    assert!(a.is_empty());
    assert_eq!(t.state(), ServerState::Trying);
    assert_eq!(t.next_deadline(), None);
    // Trying: retransmissions are absorbed without a response.
    assert!(t.on_request_retransmission(&req, base + ms(500)).is_empty());
    let trying = response(&req, 100);
    t.respond(trying.clone(), base + ms(600));
    assert_eq!(t.state(), ServerState::Proceeding);
    assert_eq!(
        t.on_request_retransmission(&req, base + ms(700)),
        vec![Action::Send(SipMessage::Response(trying))]
    );
    let ok = response(&req, 200);
    t.respond(ok.clone(), base + ms(1000));
    assert_eq!(t.state(), ServerState::Completed);
    assert_eq!(
        t.on_request_retransmission(&req, base + ms(1500)),
        vec![Action::Send(SipMessage::Response(ok.clone()))]
    );
    // A second final response is dropped.
    assert!(t.respond(response(&req, 500), base + ms(1600)).is_empty());
    // Timer J = 64*T1, no retransmission of its own.
    let fired = run_server(&mut t, base + Duration::from_secs(60));
    assert_eq!(fired, vec![(base + ms(33_000), vec![Action::Terminated])]);

    let (mut t, _) =
        ServerTransaction::new(req.clone(), Reliability::Reliable, Timers::default(), base)
            .unwrap();
    assert_eq!(
        t.respond(ok.clone(), base),
        vec![Action::Send(SipMessage::Response(ok)), Action::Terminated]
    );
}

#[test]
fn server_transport_error() {
    let base = Instant::now();
    let inv = invite("z9hG4bKs7");
    let (mut t, _) = ServerTransaction::new(
        inv.clone(),
        Reliability::Unreliable,
        Timers::default(),
        base,
    )
    .unwrap();
    t.respond(response(&inv, 486), base);
    assert_eq!(
        t.on_transport_error(),
        vec![Action::Timeout, Action::Terminated]
    );
    assert_eq!(t.next_deadline(), None);
}

fn ack_for(inv_branch_via: &str, to_tag: &str) -> Request {
    request_with("ACK", inv_branch_via, 1, Some(to_tag))
}

#[test]
fn table_matches_retransmissions_ack_and_cancel() {
    let base = Instant::now();
    let mut tab = TransactionTable::new(Timers::default());
    let inv = invite("z9hG4bKt1");
    let Incoming::New { key, request: got } =
        tab.on_request(inv.clone(), Reliability::Unreliable, base)
    else {
        panic!("expected a new transaction");
    };
    assert_eq!(got, inv);
    assert_eq!(tab.len(), 1);
    assert_eq!(tab.next_deadline(), Some(base + ms(200)));
    // 100 Trying comes from the table's timers.
    let fired = tab.on_timers(base + ms(200));
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].0, key);
    assert_eq!(sent_status(&fired[0].1), 100);
    // Same branch, same sent-by: retransmission.
    let Incoming::Absorbed { key: k2, actions } =
        tab.on_request(inv.clone(), Reliability::Unreliable, base + ms(500))
    else {
        panic!("expected absorption");
    };
    assert_eq!(k2, key);
    assert_eq!(sent_status(&actions[0]), 100);
    // Same branch from another sent-by: a different transaction.
    let other = request_with(
        "INVITE",
        "SIP/2.0/UDP 10.0.0.3:5060;branch=z9hG4bKt1",
        1,
        None,
    );
    let Incoming::New { key: other_key, .. } =
        tab.on_request(other.clone(), Reliability::Unreliable, base + ms(510))
    else {
        panic!("expected a new transaction");
    };
    assert_ne!(other_key, key);
    assert_eq!(tab.len(), 2);

    // CANCEL: its own transaction, naming the INVITE.
    let cancel = request("CANCEL", "z9hG4bKt1");
    let Incoming::Cancel {
        key: ck,
        key_of_cancelled_invite,
        request: got,
    } = tab.on_request(cancel.clone(), Reliability::Unreliable, base + ms(600))
    else {
        panic!("expected a CANCEL");
    };
    assert_eq!(got, cancel);
    assert_ne!(ck, key);
    assert_eq!(key_of_cancelled_invite.as_ref(), Some(&key));
    assert_eq!(tab.len(), 3);
    // The TU answers the CANCEL, then the INVITE with 487.
    let ok = response(&cancel, 200);
    assert_eq!(
        tab.respond(&ck, ok.clone(), base + ms(610)),
        vec![Action::Send(SipMessage::Response(ok.clone()))]
    );
    assert_eq!(
        tab.on_request(cancel.clone(), Reliability::Unreliable, base + ms(700)),
        Incoming::Absorbed {
            key: ck.clone(),
            actions: vec![Action::Send(SipMessage::Response(ok))]
        }
    );
    let terminated = response(&inv, 487);
    tab.respond(&key, terminated.clone(), base + ms(620));
    // ACK for the 487: absorbed by the INVITE transaction.
    let ack = ack_for("SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKt1", "totag");
    assert_eq!(
        tab.on_request(ack.clone(), Reliability::Unreliable, base + ms(800)),
        Incoming::Absorbed {
            key: key.clone(),
            actions: vec![]
        }
    );
    assert_eq!(tab.server(&key).unwrap().state(), ServerState::Confirmed);
    // A CANCEL for an unknown INVITE names nothing.
    let lone = request("CANCEL", "z9hG4bKnone");
    let Incoming::Cancel {
        key: lone_key,
        key_of_cancelled_invite: None,
        ..
    } = tab.on_request(lone.clone(), Reliability::Unreliable, base + ms(900))
    else {
        panic!("expected a CANCEL naming nothing");
    };
    // The TU answers what is still open (server transactions wait for it).
    tab.respond(&lone_key, response(&lone, 481), base + ms(900));
    tab.respond(&other_key, response(&other, 486), base + ms(900));
    // A request without Via is invalid.
    let mut bad = invite("z9hG4bKbad");
    bad.headers.remove("Via");
    assert!(matches!(
        tab.on_request(bad, Reliability::Unreliable, base),
        Incoming::Invalid { .. }
    ));
    // Everything ends by itself.
    drain(&mut tab, base + ms(900));
    assert!(tab.is_empty());
    assert_eq!(tab.next_deadline(), None);
}

fn drain(tab: &mut TransactionTable, from: Instant) -> Vec<(Instant, TransactionKey, Action)> {
    let mut out = Vec::new();
    let mut guard = 0;
    while let Some(d) = tab.next_deadline() {
        let now = d.max(from);
        out.extend(tab.on_timers(now).into_iter().map(|(k, a)| (now, k, a)));
        guard += 1;
        assert!(guard < 100_000, "timers do not converge");
    }
    out
}

#[test]
fn table_ack_for_2xx_stops_retransmissions() {
    let base = Instant::now();
    let mut tab = TransactionTable::new(Timers::default());
    let inv = invite("z9hG4bKt2");
    let Incoming::New { key, .. } = tab.on_request(inv.clone(), Reliability::Unreliable, base)
    else {
        panic!("expected a new transaction");
    };
    let ok = response(&inv, 200);
    assert_eq!(tab.respond(&key, ok.clone(), base + ms(100)).len(), 1);
    let fired = tab.on_timers(base + ms(600));
    assert_eq!(sent_status(&fired[0].1), 200);
    // INVITE retransmission: absorbed, nothing sent.
    assert_eq!(
        tab.on_request(inv.clone(), Reliability::Unreliable, base + ms(700)),
        Incoming::Absorbed {
            key: key.clone(),
            actions: vec![]
        }
    );
    // ACK for the 2xx, new branch: for the dialog layer, naming the INVITE.
    let ack = ack_for("SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKa2", "totag");
    assert_eq!(
        tab.on_request(ack.clone(), Reliability::Unreliable, base + ms(800)),
        Incoming::AckFor2xx {
            request: ack,
            invite: Some(key.clone())
        }
    );
    assert!(!tab.server(&key).unwrap().awaiting_ack_for_2xx());
    let rest = drain(&mut tab, base + ms(800));
    assert_eq!(rest, vec![(base + ms(32_100), key, Action::Terminated)]);
    // An ACK matching nothing.
    let stray = ack_for("SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKa3", "other");
    assert!(matches!(
        tab.on_request(stray, Reliability::Unreliable, base + ms(40_000)),
        Incoming::AckFor2xx { invite: None, .. }
    ));
    assert!(tab.is_empty());
}

#[test]
fn table_client_side_and_stray_2xx() {
    let base = Instant::now();
    let mut tab = TransactionTable::new(Timers::default());
    let inv = invite(&new_branch(7));
    let (key, first) = tab
        .start_client(inv.clone(), Reliability::Unreliable, base)
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(tab.client(&key).unwrap().state(), ClientState::Calling);
    assert!(tab.server(&key).is_none());
    assert!(matches!(
        tab.start_client(inv.clone(), Reliability::Unreliable, base),
        Err(TransactionError::Duplicate(_))
    ));
    let fired = tab.on_timers(base + ms(500));
    assert_eq!(sent(&[fired[0].1.clone()]).len(), 1);
    let ringing = response(&inv, 180);
    assert_eq!(
        tab.on_response(ringing.clone(), base + ms(600)),
        ResponseOutcome::Matched {
            key: key.clone(),
            actions: vec![Action::DeliverResponse(ringing)]
        }
    );
    assert_eq!(tab.next_deadline(), None);
    let ok = response(&inv, 200);
    assert_eq!(
        tab.on_response(ok.clone(), base + ms(700)),
        ResponseOutcome::Matched {
            key,
            actions: vec![Action::DeliverResponse(ok.clone()), Action::Terminated]
        }
    );
    assert!(tab.is_empty());
    // The 2xx retransmission finds no transaction: the dialog re-ACKs.
    assert_eq!(
        tab.on_response(ok.clone(), base + ms(1200)),
        ResponseOutcome::Stray(ok)
    );
    // A request we sent to ourselves: client and server keys differ.
    let opt = request("OPTIONS", &new_branch(8));
    let (ck, _) = tab
        .start_client(opt.clone(), Reliability::Unreliable, base)
        .unwrap();
    let Incoming::New { key: sk, .. } = tab.on_request(opt.clone(), Reliability::Unreliable, base)
    else {
        panic!("expected a new server transaction");
    };
    assert_ne!(ck, sk);
    let resp = response(&opt, 200);
    let sends = tab.respond(&sk, resp.clone(), base);
    assert_eq!(sends.len(), 1);
    assert!(matches!(
        tab.on_response(resp, base),
        ResponseOutcome::Matched { .. }
    ));
    tab.cancel_sent(&ck, base);
    // The server side already answered: its transport failing is quiet.
    assert_eq!(tab.on_transport_error(&sk), vec![Action::Terminated]);
    assert!(tab.server(&sk).is_none());
    assert_eq!(tab.client(&ck).unwrap().state(), ClientState::Completed);
    let rest = drain(&mut tab, base);
    assert_eq!(rest, vec![(base + T4, ck, Action::Terminated)]);
    assert!(tab.is_empty());
}

#[test]
fn table_scales_and_fires_in_deadline_order() {
    let base = Instant::now();
    let mut tab = TransactionTable::new(Timers::default());
    let n = 3000u64;
    for i in 0..n {
        let now = base + ms(i % 1000);
        let req = invite(&new_branch(i));
        let Incoming::New { key, .. } = tab.on_request(req.clone(), Reliability::Unreliable, now)
        else {
            panic!("expected a new transaction");
        };
        tab.respond(&key, response(&req, 486), now);
    }
    assert_eq!(tab.len(), n as usize);
    assert_eq!(tab.next_deadline(), Some(base + ms(500)));
    let mut last = base;
    let mut terminated = 0;
    let mut guard = 0;
    while let Some(d) = tab.next_deadline() {
        assert!(d >= last, "deadlines go backwards");
        last = d;
        for (_, a) in tab.on_timers(d) {
            if a == Action::Terminated {
                terminated += 1;
            }
        }
        guard += 1;
        assert!(guard < 1_000_000);
    }
    assert_eq!(terminated, n);
    assert!(tab.is_empty());
    assert!(last <= base + ms(999) + Duration::from_secs(32));
}

/// Bookkeeping of the actions one transaction produced.
#[derive(Default, Debug)]
struct Log {
    terminated: usize,
    timeouts: usize,
    finals: usize,
    after_end: bool,
    terminated_at: Option<Instant>,
}

impl Log {
    fn record(&mut self, actions: &[Action], now: Instant) {
        for a in actions {
            if self.terminated > 0 {
                self.after_end = true;
            }
            match a {
                Action::Terminated => {
                    self.terminated += 1;
                    self.terminated_at = Some(now);
                }
                Action::Timeout => self.timeouts += 1,
                Action::DeliverResponse(r) if r.status >= 200 => self.finals += 1,
                _ => {}
            }
        }
    }

    fn check(&self, last_event: Instant, what: &str) {
        let bound = last_event + T1 * 64 + T4;
        assert_eq!(self.terminated, 1, "{what}: {self:?}");
        assert!(!self.after_end, "{what}: actions after Terminated");
        assert!(self.timeouts <= 1, "{what}: {self:?}");
        assert!(self.finals <= 1, "{what}: final delivered twice");
        let at = self.terminated_at.unwrap_or(bound);
        assert!(
            at <= bound,
            "{what}: ended {:?} after the last event",
            at - last_event
        );
    }
}

const STATUSES: [u16; 12] = [100, 180, 183, 200, 202, 301, 404, 408, 486, 487, 503, 603];

fn random_reliability(rng: &mut StdRng) -> Reliability {
    if rng.gen() {
        Reliability::Reliable
    } else {
        Reliability::Unreliable
    }
}

#[test]
fn property_client_transactions_always_terminate() {
    for seed in 0..1500u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let base = Instant::now();
        let reliability = random_reliability(&mut rng);
        let method = ["INVITE", "INVITE", "OPTIONS", "BYE", "REGISTER"][rng.gen_range(0..5)];
        let req = request(method, &new_branch(seed));
        let (mut t, first) =
            ClientTransaction::new(req.clone(), reliability, Timers::default(), base).unwrap();
        let mut log = Log::default();
        log.record(&first, base);
        let mut now = base;
        let mut last_event = base;
        let what = format!("seed {seed} {method} {reliability:?}");
        for _ in 0..rng.gen_range(0..14) {
            now += ms(rng.gen_range(0..6000));
            while let Some(d) = t.next_deadline().filter(|&d| d <= now) {
                let a = t.on_timer(d);
                log.record(&a, d);
            }
            if t.state() != ClientState::Terminated {
                last_event = now;
            }
            match rng.gen_range(0..12) {
                0..=6 => {
                    let status = STATUSES[rng.gen_range(0..STATUSES.len())];
                    let a = t.on_response(response(&req, status), now);
                    log.record(&a, now);
                }
                7 => assert!(t.on_timer(now).is_empty(), "{what}: early timer acted"),
                8 => t.cancel_sent(now),
                9 => {
                    let a = t.on_transport_error();
                    log.record(&a, now);
                }
                _ => {
                    let other = response(&invite("z9hG4bKother"), 200);
                    assert!(t.on_response(other, now).is_empty());
                }
            }
        }
        if t.state() == ClientState::Proceeding && t.is_invite() {
            // The TU's duty: CANCEL a call that rings for ever.
            t.cancel_sent(now);
            last_event = now;
        }
        let mut guard = 0;
        while let Some(d) = t.next_deadline() {
            now = now.max(d);
            let a = t.on_timer(now);
            log.record(&a, now);
            guard += 1;
            assert!(guard < 1000, "{what}: timers do not converge");
        }
        assert_eq!(t.state(), ClientState::Terminated, "{what}");
        log.check(last_event, &what);
    }
}

#[test]
fn property_server_transactions_always_terminate() {
    for seed in 0..1500u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let base = Instant::now();
        let reliability = random_reliability(&mut rng);
        let method = ["INVITE", "INVITE", "OPTIONS", "BYE", "REGISTER"][rng.gen_range(0..5)];
        let branch = new_branch(seed);
        let req = request(method, &branch);
        let via = format!("SIP/2.0/UDP 10.0.0.2:5060;branch={branch}");
        let (mut t, first) =
            ServerTransaction::new(req.clone(), reliability, Timers::default(), base).unwrap();
        let mut log = Log::default();
        log.record(&first, base);
        let mut now = base;
        let mut last_event = base;
        let what = format!("seed {seed} {method} {reliability:?}");
        for _ in 0..rng.gen_range(0..14) {
            now += ms(rng.gen_range(0..6000));
            while let Some(d) = t.next_deadline().filter(|&d| d <= now) {
                let a = t.on_timer(d);
                log.record(&a, d);
            }
            if t.state() != ServerState::Terminated {
                last_event = now;
            }
            let a = match rng.gen_range(0..12) {
                0..=4 => {
                    let status = STATUSES[rng.gen_range(0..STATUSES.len())];
                    t.respond(response(&req, status), now)
                }
                5 | 6 => t.on_request_retransmission(&req, now),
                7 => t.on_ack(&ack_for(&via, "totag"), now),
                8 => t.on_ack(
                    &ack_for("SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKack2xx", "totag"),
                    now,
                ),
                9 => t.on_transport_error(),
                10 => t.on_timer(now),
                _ => t.on_request_retransmission(&invite("z9hG4bKother"), now),
            };
            log.record(&a, now);
        }
        if matches!(t.state(), ServerState::Trying | ServerState::Proceeding) {
            // The TU's duty: answer every request.
            let a = t.respond(response(&req, 486), now);
            log.record(&a, now);
            last_event = now;
        }
        let mut guard = 0;
        while let Some(d) = t.next_deadline() {
            now = now.max(d);
            let a = t.on_timer(now);
            log.record(&a, now);
            guard += 1;
            assert!(guard < 1000, "{what}: timers do not converge");
        }
        assert_eq!(t.state(), ServerState::Terminated, "{what}");
        log.check(last_event, &what);
    }
}

fn count_terminated(
    ended: &mut HashMap<TransactionKey, usize>,
    key: &TransactionKey,
    actions: &[Action],
) {
    for a in actions {
        if *a == Action::Terminated {
            *ended.entry(key.clone()).or_default() += 1;
        }
    }
}

#[test]
fn property_table_random_interleavings() {
    for seed in 0..150u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let base = Instant::now();
        let mut tab = TransactionTable::new(Timers::default());
        let mut now = base;
        let mut clients: Vec<(TransactionKey, Request)> = Vec::new();
        let mut servers: Vec<(TransactionKey, Request)> = Vec::new();
        let mut created: HashMap<TransactionKey, usize> = HashMap::new();
        let mut ended: HashMap<TransactionKey, usize> = HashMap::new();
        let mut branch = 0u64;
        for _ in 0..300 {
            now += ms(rng.gen_range(0..400));
            for (k, a) in tab.on_timers(now) {
                count_terminated(&mut ended, &k, &[a]);
            }
            let reliability = random_reliability(&mut rng);
            let method = ["INVITE", "INVITE", "OPTIONS", "BYE"][rng.gen_range(0..4)];
            match rng.gen_range(0..9) {
                0 => {
                    branch += 1;
                    let req = request(method, &new_branch(seed << 32 | branch));
                    let (key, a) = tab.start_client(req.clone(), reliability, now).unwrap();
                    *created.entry(key.clone()).or_default() += 1;
                    count_terminated(&mut ended, &key, &a);
                    clients.push((key, req));
                }
                1 | 2 if !clients.is_empty() => {
                    let (_, req) = &clients[rng.gen_range(0..clients.len())];
                    let status = STATUSES[rng.gen_range(0..STATUSES.len())];
                    if let ResponseOutcome::Matched { key, actions } =
                        tab.on_response(response(req, status), now)
                    {
                        count_terminated(&mut ended, &key, &actions);
                    }
                }
                3 => {
                    branch += 1;
                    let req = request(method, &new_branch(seed << 32 | branch));
                    match tab.on_request(req.clone(), reliability, now) {
                        Incoming::New { key, .. } => {
                            *created.entry(key.clone()).or_default() += 1;
                            servers.push((key, req));
                        }
                        other => panic!("seed {seed}: unexpected {other:?}"),
                    }
                }
                4 if !servers.is_empty() => {
                    let (_, req) = servers[rng.gen_range(0..servers.len())].clone();
                    match tab.on_request(req, reliability, now) {
                        Incoming::New { key, .. } => {
                            *created.entry(key).or_default() += 1;
                        }
                        Incoming::Absorbed { key, actions } => {
                            count_terminated(&mut ended, &key, &actions)
                        }
                        other => panic!("seed {seed}: unexpected {other:?}"),
                    }
                }
                5 | 6 if !servers.is_empty() => {
                    let (key, req) = &servers[rng.gen_range(0..servers.len())];
                    let status = STATUSES[rng.gen_range(0..STATUSES.len())];
                    let a = tab.respond(key, response(req, status), now);
                    count_terminated(&mut ended, key, &a);
                }
                7 if !servers.is_empty() => {
                    let (_, req) = &servers[rng.gen_range(0..servers.len())];
                    let via = if rng.gen() {
                        req.headers.get("Via").unwrap_or_default().to_string()
                    } else {
                        "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKfresh".to_string()
                    };
                    let ack = ack_for(&via, "totag");
                    if let Incoming::Absorbed { key, actions } =
                        tab.on_request(ack, reliability, now)
                    {
                        count_terminated(&mut ended, &key, &actions);
                    }
                }
                8 => {
                    let all: Vec<TransactionKey> = clients
                        .iter()
                        .chain(servers.iter())
                        .map(|(k, _)| k.clone())
                        .collect();
                    if !all.is_empty() && rng.gen_range(0..4) == 0 {
                        let key = &all[rng.gen_range(0..all.len())];
                        let a = tab.on_transport_error(key);
                        count_terminated(&mut ended, key, &a);
                    }
                }
                _ => {}
            }
        }
        // The TU's duties: answer every request, CANCEL ringing calls.
        for (key, req) in &servers {
            if tab
                .server(key)
                .is_some_and(|s| matches!(s.state(), ServerState::Trying | ServerState::Proceeding))
            {
                let a = tab.respond(key, response(req, 486), now);
                count_terminated(&mut ended, key, &a);
            }
        }
        for (key, _) in &clients {
            tab.cancel_sent(key, now);
        }
        let last_event = now;
        for (t, k, a) in drain(&mut tab, now) {
            assert!(t <= last_event + T1 * 64 + T4, "seed {seed}: late timer");
            count_terminated(&mut ended, &k, &[a]);
        }
        assert!(tab.is_empty(), "seed {seed}");
        assert_eq!(tab.next_deadline(), None);
        assert_eq!(created, ended, "seed {seed}");
    }
}
