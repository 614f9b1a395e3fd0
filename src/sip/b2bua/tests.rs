//! The B2BUA driven by hand: a cluster parsed from text, a bindings table filled directly, a
//! manual clock, and SIP messages built as phones and trunks send them. No database, socket,
//! task or sleep: a test runs in milliseconds and always the same way.

use super::*;
use crate::sip::message::parse_datagram;
use crate::sip::registrar::{Binding, Bindings, Decision, Write};

const T0_UNIX: i64 = 1_700_000_000;

/// The time as the tests decide it: it moves only when a test says so.
struct Clock {
    origin: Instant,
    now: Now,
}

impl Clock {
    fn new() -> Clock {
        // Any instant will do as the origin; only differences from it matter.
        let origin = Instant::now();
        Clock {
            origin,
            now: Now {
                mono: origin,
                unix: T0_UNIX,
            },
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now.mono += by;
        self.now.unix = T0_UNIX + (self.now.mono - self.origin).as_secs() as i64;
    }
}

/// One node's call control: the core, the registrations it reads, the cluster, and the clock.
struct Node {
    cluster: Cluster,
    bindings: Bindings,
    core: B2bua,
    clock: Clock,
}

impl Node {
    fn new(yaml: &str) -> Node {
        let def = crate::services::parse_str(yaml, "unit.yaml").unwrap_or_else(|e| panic!("{e}"));
        Node {
            cluster: Cluster::new(def),
            bindings: Bindings::new("n1"),
            core: B2bua::new("127.0.0.1:5060".into(), 7, [9; 32]),
            clock: Clock::new(),
        }
    }

    fn now(&self) -> Now {
        self.clock.now
    }

    /// `phone` registers its line for `expires` seconds from now.
    fn register(&mut self, phone: &Phone, expires: u32) {
        let decision = Decision::Bind {
            device: phone.device(),
            line: phone.dn.to_string(),
            contact: format!("sip:{}@{}", phone.dn, phone.addr),
            instance: None,
            expires,
        };
        let now = self.now().unix;
        self.bindings
            .apply(&decision, Transport::Udp, phone.addr, now);
    }

    fn receive(&mut self, msg: SipMessage, from: SocketAddr) -> Vec<Out> {
        let peer = Peer {
            addr: from,
            transport: Transport::Udp,
        };
        let now = self.now();
        self.core
            .on_message(&self.cluster, &self.bindings, msg, peer, now)
    }

    fn command(&mut self, id: u64, cmd: Command) -> Vec<Out> {
        let now = self.now();
        self.core
            .on_command(&self.cluster, &self.bindings, CommandId(id), cmd, now)
    }

    /// Moves the clock on by `by` and fires what is due.
    fn advance(&mut self, by: Duration) -> Vec<Out> {
        self.clock.advance(by);
        let now = self.now();
        self.core.on_timers(&self.cluster, &self.bindings, now)
    }
}

/// A SIP phone with one line, as far as these tests need one.
struct Phone {
    dn: &'static str,
    addr: SocketAddr,
}

impl Phone {
    fn new(dn: &'static str, addr: &str) -> Phone {
        Phone {
            dn,
            addr: addr.parse().unwrap(),
        }
    }

    fn device(&self) -> String {
        format!("SEP00000000{}", self.dn)
    }

    fn sdp(&self) -> String {
        let ip = self.addr.ip();
        format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
    }

    /// A new call to `number`.
    fn invite(&self, number: &str, call_id: &str) -> SipMessage {
        let sdp = self.sdp();
        parse(&format!(
            "INVITE sip:{number}@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bK{call_id}i\r\nFrom: <sip:{dn}@{ip}>;tag={dn}a\r\nTo: <sip:{number}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:{dn}@{addr}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len(),
            addr = self.addr,
            ip = self.addr.ip(),
            dn = self.dn,
        ))
    }

    /// The phone's answer to `req`, with its SDP on a 2xx.
    fn answer(&self, req: &Request, status: u16) -> SipMessage {
        let mut r = req.make_response(
            status,
            default_reason(status),
            Some(&format!("{}b", self.dn)),
        );
        if (101..300).contains(&status) && req.method == Method::Invite {
            r.headers
                .push("Contact", format!("<sip:{}@{}>", self.dn, self.addr));
        }
        if (200..300).contains(&status) && req.method == Method::Invite {
            r.headers.push("Content-Type", "application/sdp");
            r.body = Bytes::from(self.sdp());
        }
        SipMessage::Response(r)
    }

    /// A request in the dialog that `invite` (ours) and `ok` (its answer) set up.
    fn in_dialog(&self, method: &str, invite: &SipMessage, ok: &Response, seq: u32) -> SipMessage {
        let SipMessage::Request(inv) = invite else {
            panic!("not a request")
        };
        let to = ok.headers.get("To").unwrap();
        let from = inv.headers.get("From").unwrap();
        let call_id = inv.call_id().unwrap();
        parse(&format!(
            "{method} sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bK{call_id}{method}{seq}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {seq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            addr = self.addr,
        ))
    }
}

fn parse(text: &str) -> SipMessage {
    parse_datagram(text.as_bytes()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The requests of `method` sent to `to`.
fn requests(out: &[Out], method: &str, to: SocketAddr) -> Vec<Request> {
    out.iter()
        .filter_map(|o| match o {
            Out::Send {
                msg: SipMessage::Request(r),
                to: p,
            } if p.addr == to && r.method.as_str() == method => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// The statuses of the responses sent to `to`.
fn statuses(out: &[Out], to: SocketAddr) -> Vec<u16> {
    responses(out, to).iter().map(|r| r.status).collect()
}

fn responses(out: &[Out], to: SocketAddr) -> Vec<Response> {
    out.iter()
        .filter_map(|o| match o {
            Out::Send {
                msg: SipMessage::Response(r),
                to: p,
            } if p.addr == to => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn only<T: std::fmt::Debug>(mut v: Vec<T>, what: &str) -> T {
    assert_eq!(v.len(), 1, "{what}: {v:?}");
    v.remove(0)
}

fn replies(out: &[Out]) -> Vec<(CommandId, Reply)> {
    out.iter()
        .filter_map(|o| match o {
            Out::Reply(id, r) => Some((*id, r.clone())),
            _ => None,
        })
        .collect()
}

const LINES: &str = r#"cluster: {id: unit, name: Unit}
nodes: [{name: n1, address: 127.0.0.1}]
partitions: [{name: PT}]
calling_search_spaces: [{name: CSS, partitions: [PT]}]
device_pools: [{name: DP, node_group: [n1]}]
directory_numbers:
  - {pattern: "2000", partition: PT}
  - {pattern: "2001", partition: PT}
  - pattern: "2003"
    partition: PT
    no_answer_timer: 7
    call_forward:
      no_answer: {destination: "2004", css: CSS}
  - {pattern: "2004", partition: PT}
  - {pattern: "2008", partition: PT, max_calls: 1, busy_trigger: 1}
  - {pattern: "7100", partition: PT, call_forward: {no_answer: {destination: "2004", css: CSS}}}
devices:
  - {name: SEP000000002000, model: Cisco 8845, device_pool: DP, css: CSS, lines: [{dn: "2000", partition: PT}]}
  - {name: SEP000000002001, model: Cisco 8845, device_pool: DP, css: CSS, lines: [{dn: "2001", partition: PT}]}
  - {name: SEP000000002003, model: Cisco 8845, device_pool: DP, css: CSS, lines: [{dn: "2003", partition: PT}]}
  - {name: SEP000000002004, model: Cisco 8845, device_pool: DP, css: CSS, lines: [{dn: "2004", partition: PT}]}
  - {name: SEP000000002008, model: Cisco 8845, device_pool: DP, css: CSS, lines: [{dn: "2008", partition: PT}]}
route_points:
  - {name: RP-Service, device_pool: DP, css: CSS, lines: [{dn: "7100", partition: PT}]}
"#;

fn event(call: u64, dn: &str, device: Option<&str>, state: LineState) -> LineEvent {
    LineEvent {
        call,
        dn: dn.into(),
        partition: Some("PT".into()),
        device: device.map(str::to_string),
        state,
    }
}

/// INVITE, 180, 200, ACK and BYE between two registered lines: each message goes where it
/// should, the SDP crosses, the lines' states follow, and the transactions end on their timers.
#[test]
fn r14_basic_call_between_two_registered_lines() {
    let mut node = Node::new(LINES);
    let a = Phone::new("2000", "127.0.0.21:5060");
    let b = Phone::new("2001", "127.0.0.22:5060");
    node.register(&a, 3600);
    node.register(&b, 3600);

    let invite = a.invite("2001", "basic");
    let out = node.receive(invite.clone(), a.addr);
    assert_eq!(statuses(&out, a.addr), [100]);
    let to_b = only(requests(&out, "INVITE", b.addr), "INVITE to B");
    assert_eq!(to_b.uri, "sip:2001@127.0.0.22:5060");
    assert!(String::from_utf8_lossy(&to_b.body).contains("c=IN IP4 127.0.0.21"));

    let out = node.receive(b.answer(&to_b, 180), b.addr);
    assert_eq!(statuses(&out, a.addr), [180]);

    let out = node.receive(b.answer(&to_b, 200), b.addr);
    only(requests(&out, "ACK", b.addr), "ACK to B");
    let ok = only(responses(&out, a.addr), "200 to A");
    assert_eq!(ok.status, 200);
    assert!(String::from_utf8_lossy(&ok.body).contains("c=IN IP4 127.0.0.22"));
    assert_eq!(node.core.summary().connected, 1);

    let out = node.receive(a.in_dialog("ACK", &invite, &ok, 1), a.addr);
    assert!(out.is_empty(), "{out:?}");

    let out = node.receive(a.in_dialog("BYE", &invite, &ok, 2), a.addr);
    assert_eq!(statuses(&out, a.addr), [200]);
    let bye = only(requests(&out, "BYE", b.addr), "BYE to B");
    let out = node.receive(b.answer(&bye, 200), b.addr);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(node.core.summary().calls, 0);

    // The callee's events name its device; the caller's line is known by its DN.
    let b_dev = Some("SEP000000002001");
    assert_eq!(
        node.core.take_events(),
        [
            event(1, "2001", b_dev, LineState::Ringing),
            event(1, "2001", b_dev, LineState::Connected),
            event(1, "2000", None, LineState::Connected),
            event(1, "2000", None, LineState::Idle),
            event(1, "2001", None, LineState::Idle),
        ]
    );
    // The transactions linger for their timers, then nothing is left.
    node.advance(Duration::from_secs(40));
    assert_eq!(node.core.summary().transactions, 0);
    assert_eq!(node.core.next_deadline(), None);
}

/// A line at its busy trigger refuses a second call with 486 without ringing its phone, and
/// a phone's own 486 reaches the caller.
#[test]
fn r14_busy_line_and_busy_phone() {
    let mut node = Node::new(LINES);
    let a = Phone::new("2000", "127.0.0.21:5060");
    let c = Phone::new("2001", "127.0.0.22:5060");
    let busy = Phone::new("2008", "127.0.0.28:5060");
    for p in [&a, &c, &busy] {
        node.register(p, 3600);
    }
    let out = node.receive(a.invite("2008", "first"), a.addr);
    let first = only(requests(&out, "INVITE", busy.addr), "first INVITE");
    node.receive(busy.answer(&first, 180), busy.addr);

    // 2008 carries one call and its busy trigger is 1.
    let out = node.receive(c.invite("2008", "second"), c.addr);
    assert!(requests(&out, "INVITE", busy.addr).is_empty(), "{out:?}");
    assert_eq!(statuses(&out, c.addr), [100, 486]);

    // The phone itself says busy to the first call.
    let out = node.receive(busy.answer(&first, 486), busy.addr);
    only(requests(&out, "ACK", busy.addr), "ACK of the 486");
    assert_eq!(statuses(&out, a.addr), [486]);
    assert_eq!(node.core.summary().calls, 0);
}

/// Call Forward No Answer fires at the line's no-answer timer, not a millisecond before: the
/// ringing phone is cancelled and the forward destination rings; its answer reaches the caller.
#[test]
fn r14_call_forward_no_answer_fires_at_its_time() {
    let mut node = Node::new(LINES);
    let a = Phone::new("2000", "127.0.0.21:5060");
    let slow = Phone::new("2003", "127.0.0.23:5060");
    let fwd = Phone::new("2004", "127.0.0.24:5060");
    for p in [&a, &slow, &fwd] {
        node.register(p, 3600);
    }
    let invite = a.invite("2003", "cfna");
    let out = node.receive(invite, a.addr);
    let ringing = only(requests(&out, "INVITE", slow.addr), "INVITE to 2003");
    let out = node.receive(slow.answer(&ringing, 180), slow.addr);
    assert_eq!(statuses(&out, a.addr), [180]);

    let out = node.advance(Duration::from_millis(6_999));
    assert!(requests(&out, "INVITE", fwd.addr).is_empty(), "{out:?}");
    assert!(requests(&out, "CANCEL", slow.addr).is_empty(), "{out:?}");

    let out = node.advance(Duration::from_millis(1));
    let cancel = only(requests(&out, "CANCEL", slow.addr), "CANCEL to 2003");
    let forwarded = only(requests(&out, "INVITE", fwd.addr), "INVITE to 2004");
    assert_eq!(forwarded.uri, "sip:2004@127.0.0.24:5060");
    assert!(String::from_utf8_lossy(&forwarded.body).contains("c=IN IP4 127.0.0.21"));
    assert!(
        responses(&out, a.addr).is_empty(),
        "the caller hears nothing yet: {out:?}"
    );

    // The cancelled phone's 487 decides nothing.
    node.receive(slow.answer(&cancel, 200), slow.addr);
    let out = node.receive(slow.answer(&ringing, 487), slow.addr);
    only(requests(&out, "ACK", slow.addr), "ACK of the 487");
    assert!(responses(&out, a.addr).is_empty(), "{out:?}");

    let out = node.receive(fwd.answer(&forwarded, 200), fwd.addr);
    let ok = only(responses(&out, a.addr), "200 to the caller");
    assert_eq!(ok.status, 200);
    assert!(String::from_utf8_lossy(&ok.body).contains("c=IN IP4 127.0.0.24"));
    assert_eq!(node.core.summary().connected, 1);
}

/// A third-party call: the user's phone rings first with no SDP; the service's answer comes
/// as `Out::Reply` when the phone answers, and the destination then gets the phone's offer.
/// A call from a phone that is not registered is answered at once.
#[test]
fn r14_make_call_answers_through_out_reply() {
    let mut node = Node::new(LINES);
    let user = Phone::new("2000", "127.0.0.21:5060");
    let dest = Phone::new("2001", "127.0.0.22:5060");
    node.register(&user, 3600);
    node.register(&dest, 3600);

    let out = node.command(
        1,
        Command::MakeCall {
            device: "SEP000000002003".into(),
            line: "2003".into(),
            destination: "2001".into(),
            answer_within: Duration::from_secs(60),
            request: 1,
        },
    );
    assert_eq!(
        replies(&out),
        [(
            CommandId(1),
            Reply::Call(Err(call_error(480, "SEP000000002003 is not registered")))
        )]
    );

    let out = node.command(
        2,
        Command::MakeCall {
            device: "SEP000000002000".into(),
            line: "2000".into(),
            destination: "2001".into(),
            answer_within: Duration::from_secs(60),
            request: 2,
        },
    );
    assert!(
        replies(&out).is_empty(),
        "no answer before the phone answers"
    );
    let to_user = only(requests(&out, "INVITE", user.addr), "INVITE to the user");
    assert!(
        to_user.body.is_empty(),
        "RFC 3725 flow I: no offer to the user's phone"
    );

    node.receive(user.answer(&to_user, 180), user.addr);
    let out = node.receive(user.answer(&to_user, 200), user.addr);
    assert_eq!(replies(&out), [(CommandId(2), Reply::Call(Ok(1)))]);
    let to_dest = only(
        requests(&out, "INVITE", dest.addr),
        "INVITE to the destination",
    );
    assert!(String::from_utf8_lossy(&to_dest.body).contains("c=IN IP4 127.0.0.21"));

    // The destination's answer goes to the user's phone in the ACK.
    let out = node.receive(dest.answer(&to_dest, 200), dest.addr);
    let ack = only(requests(&out, "ACK", user.addr), "ACK to the user");
    assert!(String::from_utf8_lossy(&ack.body).contains("c=IN IP4 127.0.0.22"));
    assert!(replies(&out).is_empty());
}

/// A call to a route point's DN is offered to its service as `Out::Offer`, and the service
/// answers it; when the shell finds the service gone, the line's Call Forward No Answer
/// takes the next call at once.
#[test]
fn r14_route_point_offer_answer_and_service_gone() {
    let mut node = Node::new(LINES);
    let a = Phone::new("2000", "127.0.0.21:5060");
    let fwd = Phone::new("2004", "127.0.0.24:5060");
    node.register(&a, 3600);
    node.register(&fwd, 3600);
    let out = node.command(
        1,
        Command::RegisterRoutePoint {
            name: "RP-Service".into(),
        },
    );
    assert!(out.is_empty(), "{out:?}");

    let out = node.receive(a.invite("7100", "rp-1"), a.addr);
    let offers: Vec<&OfferedCall> = out
        .iter()
        .filter_map(|o| match o {
            Out::Offer(c) => Some(c),
            _ => None,
        })
        .collect();
    let offer = only(offers, "offer").clone();
    assert_eq!(
        (offer.route_point.as_str(), offer.dn.as_str()),
        ("RP-Service", "7100")
    );
    assert_eq!(
        (offer.calling.as_str(), offer.call_id.as_str()),
        ("2000", "rp-1")
    );
    assert!(offer.offer.is_some());

    let sdp = Bytes::from_static(b"v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n");
    let out = node.command(
        2,
        Command::Answer {
            call: offer.call,
            sdp: sdp.clone(),
        },
    );
    assert_eq!(replies(&out), [(CommandId(2), Reply::Done(Ok(())))]);
    let ok = only(responses(&out, a.addr), "200 to the caller");
    assert_eq!((ok.status, ok.body.clone()), (200, sdp));

    // The service's receiver is gone: the shell says so and the forward rings at once.
    let out = node.receive(a.invite("7100", "rp-2"), a.addr);
    let call = out
        .iter()
        .find_map(|o| match o {
            Out::Offer(c) => Some(c.call),
            _ => None,
        })
        .expect("an offer");
    let now = node.now();
    let out = node
        .core
        .on_offer_undelivered(&node.cluster, &node.bindings, call, now);
    only(requests(&out, "INVITE", fwd.addr), "INVITE to the forward");
    // From now on the route point counts as unserved: no offer, straight to the forward.
    let out = node.receive(a.invite("7100", "rp-3"), a.addr);
    assert!(!out.iter().any(|o| matches!(o, Out::Offer(_))), "{out:?}");
    only(requests(&out, "INVITE", fwd.addr), "INVITE to the forward");
}

/// Registrations expire by the clock they are handed: live until their last second, gone at
/// it (so the line no longer rings), and swept with a write that removes them.
#[test]
fn r14_registration_expires_in_the_bindings_table() {
    let mut node = Node::new(LINES);
    let a = Phone::new("2000", "127.0.0.21:5060");
    let b = Phone::new("2001", "127.0.0.22:5060");
    node.register(&a, 3600);
    node.register(&b, 60);
    let t0 = node.now().unix;
    let live: Option<Binding> = node.bindings.binding("SEP000000002001", "2001", t0 + 59);
    assert_eq!(live.map(|b| b.expires_at), Some(t0 + 60));
    assert_eq!(
        node.bindings.binding("SEP000000002001", "2001", t0 + 60),
        None
    );
    assert!(node.bindings.is_registered("SEP000000002001", t0 + 59));
    assert_eq!(node.bindings.count(t0 + 60), 1);

    node.advance(Duration::from_secs(59));
    let out = node.receive(a.invite("2001", "before"), a.addr);
    only(requests(&out, "INVITE", b.addr), "INVITE while registered");

    node.advance(Duration::from_secs(1));
    let out = node.receive(a.invite("2001", "after"), a.addr);
    assert!(requests(&out, "INVITE", b.addr).is_empty(), "{out:?}");
    assert_eq!(statuses(&out, a.addr), [100, 480]);

    let now = node.now().unix;
    // The sweep's removal is conditional on the row having expired (issue 16: another node
    // may have refreshed it meanwhile).
    assert_eq!(
        node.bindings.sweep(now),
        [Write::Expire {
            device: "SEP000000002001".into(),
            line: "2001".into(),
            now
        }]
    );
    assert_eq!(node.bindings.count(now), 1);
}

const TRUNKS: &str = r#"cluster: {id: t, name: trunks}
nodes: [{name: n1, address: 127.0.0.1}]
partitions: [{name: PT}]
calling_search_spaces: [{name: CSS, partitions: [PT]}]
device_pools: [{name: DP, node_group: [n1]}]
sip_trunks:
  - {name: IN, destinations: ["127.0.0.50:5060"], device_pool: DP, css: CSS}
  - {name: A, destinations: ["nonexistent.invalid:5060", "gw.test:5070"], device_pool: DP}
  - {name: B, destinations: ["127.0.0.9:5071"], transport: tls, device_pool: DP}
route_groups: [{name: RG, members: [A, B]}]
route_lists: [{name: RL, members: [RG]}]
route_patterns: [{pattern: 9.XXXX, partition: PT, route_list: RL}]
"#;

fn trunk_invite() -> SipMessage {
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.50\r\ns=-\r\nc=IN IP4 127.0.0.50\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let text = format!(
        "INVITE sip:91234@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.50:5060;branch=z9hG4bKin1\r\nFrom: <sip:5550100@127.0.0.50>;tag=a1\r\nTo: <sip:91234@127.0.0.1>\r\nCall-ID: hunt-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:5550100@127.0.0.50:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    parse_datagram(text.as_bytes()).unwrap()
}

fn invites(out: &[Out]) -> Vec<(Peer, Request)> {
    out.iter()
        .filter_map(|o| match o {
            Out::Send {
                msg: SipMessage::Request(r),
                to,
            } if r.method == Method::Invite => Some((*to, r.clone())),
            _ => None,
        })
        .collect()
}

fn final_to_caller(out: &[Out]) -> Option<Response> {
    out.iter().find_map(|o| match o {
        Out::Send {
            msg: SipMessage::Response(r),
            to,
        } if r.status >= 200 && to.addr.port() == 5060 => Some(r.clone()),
        _ => None,
    })
}

/// Destinations are tried in order, every address of a name counts, a name that does not
/// resolve is skipped, and a transport failure or a 5xx moves on at once.
#[test]
fn r3_trunk_hunt_tries_every_address_in_order() {
    let mut node = Node::new(TRUNKS);
    let mut table = Resolved::new();
    table.insert(
        "nonexistent.invalid:5060".into(),
        Err("cannot resolve nonexistent.invalid".into()),
    );
    let gw = ["127.0.0.7:5070", "127.0.0.8:5070"].map(|a| a.parse::<SocketAddr>().unwrap());
    table.insert("gw.test:5070".into(), Ok(gw.to_vec()));
    node.core.set_resolved(Arc::new(table));
    let caller: SocketAddr = "127.0.0.50:5060".parse().unwrap();
    let now = node.now();
    let out = node.receive(trunk_invite(), caller);
    let sent = invites(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_eq!(sent[0].0.addr, gw[0]);
    assert_eq!(sent[0].1.uri, "sip:91234@gw.test:5070");
    // The first address cannot be reached: the second is tried at once.
    let failed = SipMessage::Request(sent[0].1.clone());
    let out =
        node.core
            .on_transport_failure(&node.cluster, &node.bindings, &failed, "refused", now);
    let sent = invites(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_eq!(sent[0].0.addr, gw[1]);
    // It answers 503: the next trunk (over TLS) is tried.
    let resp = sent[0]
        .1
        .make_response(503, "Service Unavailable", Some("b1"));
    let out = node.receive(SipMessage::Response(resp), sent[0].0.addr);
    let sent = invites(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_eq!(sent[0].0.addr, "127.0.0.9:5071".parse().unwrap());
    assert_eq!(sent[0].0.transport, Transport::Tls);
    assert_eq!(sent[0].1.uri, "sip:91234@127.0.0.9:5071");
    // Its TLS handshake fails and nothing is left: the caller hears 503 and why.
    let failed = SipMessage::Request(sent[0].1.clone());
    let out = node.core.on_transport_failure(
        &node.cluster,
        &node.bindings,
        &failed,
        "TLS handshake failed: certificate refused",
        now,
    );
    let last = final_to_caller(&out).expect("a final answer to the caller");
    assert_eq!(last.status, 503);
    assert!(
        last.reason.contains("certificate refused"),
        "{}",
        last.reason
    );
}

/// Before the shell resolved a name, the core does not guess: the destination is skipped.
#[test]
fn unresolved_names_and_ip_literals() {
    let t = Resolved::new();
    assert_eq!(
        destination_addrs(&t, "127.0.0.1:5060").unwrap(),
        vec!["127.0.0.1:5060".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(
        destination_addrs(&t, "[::1]:5061").unwrap(),
        vec!["[::1]:5061".parse::<SocketAddr>().unwrap()]
    );
    assert!(destination_addrs(&t, "gw.test:5060")
        .unwrap_err()
        .contains("not resolved yet"));
}

/// A record-routing proxy between two registered lines (RFC 3261 12.1.1, 12.1.2, 12.2.1.1):
/// the caller's Record-Route comes back in ucm's 180 and 200, the callee's 200 Record-Route
/// makes that leg's route set (reversed), and in-dialog requests on either side carry the route
/// set and go to its first hop, not straight to the phone.
#[test]
fn r15_record_route_is_copied_and_route_sets_are_followed() {
    let mut node = Node::new(LINES);
    let a = Phone::new("2000", "127.0.0.21:5060");
    let b = Phone::new("2001", "127.0.0.22:5060");
    node.register(&a, 3600);
    node.register(&b, 3600);
    let proxy_a: SocketAddr = "127.0.0.31:5070".parse().unwrap();
    let proxy_b: SocketAddr = "127.0.0.32:5060".parse().unwrap();

    let SipMessage::Request(mut invite) = a.invite("2001", "rr") else {
        unreachable!()
    };
    invite.headers.push(
        "Record-Route",
        "<sip:127.0.0.31:5070;lr>, <sip:edge.example;lr>",
    );
    let invite = SipMessage::Request(invite);
    let out = node.receive(invite.clone(), a.addr);
    let to_b = only(requests(&out, "INVITE", b.addr), "INVITE to B");
    let out = node.receive(b.answer(&to_b, 180), b.addr);
    let ringing = only(responses(&out, a.addr), "180 to A");
    assert_eq!(
        ringing.headers.get_all("Record-Route").collect::<Vec<_>>(),
        ["<sip:127.0.0.31:5070;lr>, <sip:edge.example;lr>"],
        "the 180 copies the request's Record-Route"
    );

    // B's side is behind a proxy too: its 200 names two hops, the nearest last.
    let SipMessage::Response(mut ok_b) = b.answer(&to_b, 200) else {
        unreachable!()
    };
    ok_b.headers.push("Record-Route", "<sip:127.0.0.33;lr>");
    ok_b.headers.push("Record-Route", "<sip:127.0.0.32;lr>");
    let out = node.receive(SipMessage::Response(ok_b), b.addr);
    let (peer, ack_b) = out
        .iter()
        .find_map(|o| match o {
            Out::Send {
                msg: SipMessage::Request(r),
                to,
            } if r.method == Method::Ack => Some((*to, r.clone())),
            _ => None,
        })
        .expect("ACK to B's side");
    assert_eq!(peer.addr, proxy_b, "the ACK goes to the first route");
    assert_eq!(
        ack_b.uri, "sip:2001@127.0.0.22:5060",
        "loose routing keeps the target"
    );
    assert_eq!(
        ack_b.headers.get_all("Route").collect::<Vec<_>>(),
        ["<sip:127.0.0.32;lr>", "<sip:127.0.0.33;lr>"]
    );
    let ok = only(responses(&out, a.addr), "200 to A");
    assert_eq!(
        ok.headers.get_all("Record-Route").collect::<Vec<_>>(),
        ["<sip:127.0.0.31:5070;lr>, <sip:edge.example;lr>"],
        "the 200 copies the request's Record-Route"
    );

    // B hangs up: the BYE to A follows A's route set, in the request's order, to its first hop.
    let bye_from_b = parse(&format!(
        "BYE sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {}:5060;branch=z9hG4bKrrbye\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        b.addr.ip(),
        ack_b.headers.get("To").unwrap(),
        ack_b.headers.get("From").unwrap(),
        ack_b.call_id().unwrap(),
    ));
    let out = node.receive(bye_from_b, proxy_b);
    let (peer, bye_a) = out
        .iter()
        .find_map(|o| match o {
            Out::Send {
                msg: SipMessage::Request(r),
                to,
            } if r.method == Method::Bye => Some((*to, r.clone())),
            _ => None,
        })
        .expect("BYE to A's side");
    assert_eq!(peer.addr, proxy_a);
    assert_eq!(bye_a.uri, "sip:2000@127.0.0.21:5060");
    assert_eq!(
        bye_a.headers.get_all("Route").collect::<Vec<_>>(),
        ["<sip:127.0.0.31:5070;lr>", "<sip:edge.example;lr>"]
    );
}

/// A strict router (no `;lr`, RFC 2543) in the route set: its URI becomes the Request-URI and
/// the remote target goes last in Route (RFC 3261 12.2.1.1).
#[test]
fn r15_strict_route_puts_the_target_last_in_route() {
    let mut node = Node::new(LINES);
    let a = Phone::new("2000", "127.0.0.21:5060");
    let b = Phone::new("2001", "127.0.0.22:5060");
    node.register(&a, 3600);
    node.register(&b, 3600);
    let invite = a.invite("2001", "strict");
    let out = node.receive(invite, a.addr);
    let to_b = only(requests(&out, "INVITE", b.addr), "INVITE to B");
    let SipMessage::Response(mut ok_b) = b.answer(&to_b, 200) else {
        unreachable!()
    };
    ok_b.headers.push(
        "Record-Route",
        "<sip:127.0.0.34:5080;lr>, <sip:127.0.0.35;maddr=x>",
    );
    let out = node.receive(SipMessage::Response(ok_b), b.addr);
    let (peer, ack) = out
        .iter()
        .find_map(|o| match o {
            Out::Send {
                msg: SipMessage::Request(r),
                to,
            } if r.method == Method::Ack => Some((*to, r.clone())),
            _ => None,
        })
        .expect("ACK to B's side");
    assert_eq!(peer.addr, "127.0.0.35:5060".parse().unwrap());
    assert_eq!(ack.uri, "sip:127.0.0.35;maddr=x");
    assert_eq!(
        ack.headers.get_all("Route").collect::<Vec<_>>(),
        ["<sip:127.0.0.34:5080;lr>", "<sip:2001@127.0.0.22:5060>"]
    );
}

/// The user's phone does not answer a third-party call in time: the attempt fails with 408
/// on the timer (manual clock), the ringing is cancelled, the destination is never called, and
/// an answer that crosses the CANCEL is acknowledged and hung up.
#[test]
fn r15_make_call_timeout_cancels_the_users_phone_and_releases_a_late_answer() {
    let mut node = Node::new(LINES);
    let user = Phone::new("2000", "127.0.0.21:5060");
    let dest = Phone::new("2001", "127.0.0.22:5060");
    node.register(&user, 3600);
    node.register(&dest, 3600);
    let out = node.command(
        5,
        Command::MakeCall {
            device: "SEP000000002000".into(),
            line: "2000".into(),
            destination: "2001".into(),
            answer_within: Duration::from_secs(20),
            request: 77,
        },
    );
    let to_user = only(requests(&out, "INVITE", user.addr), "INVITE to the user");
    node.receive(user.answer(&to_user, 180), user.addr);
    let out = node.advance(Duration::from_secs(19));
    assert!(replies(&out).is_empty(), "still ringing: {out:?}");
    let out = node.advance(Duration::from_secs(1));
    assert_eq!(
        replies(&out),
        [(
            CommandId(5),
            Reply::Call(Err(call_error(
                408,
                "Request Timeout (the user's phone did not answer in time)"
            )))
        )]
    );
    only(requests(&out, "CANCEL", user.addr), "CANCEL to the user");
    // Someone picks up as the CANCEL travels: ACK and BYE, and nobody calls the destination.
    let out = node.receive(user.answer(&to_user, 200), user.addr);
    only(requests(&out, "ACK", user.addr), "ACK to the late answer");
    only(requests(&out, "BYE", user.addr), "BYE to the late answer");
    assert!(requests(&out, "INVITE", dest.addr).is_empty(), "{out:?}");
    assert_eq!(node.core.summary().calls, 0);
}

/// A service abandons its MakeCall (its client went away): the ringing phone is cancelled;
/// once answered and waiting for the destination it is ACKed and hung up, and the
/// destination's ringing is cancelled too. A node shutting down does the same.
#[test]
fn r15_abandoned_or_shut_down_third_party_calls_release_every_leg() {
    let mut node = Node::new(LINES);
    let user = Phone::new("2000", "127.0.0.21:5060");
    let dest = Phone::new("2001", "127.0.0.22:5060");
    node.register(&user, 3600);
    node.register(&dest, 3600);
    let make = |request| Command::MakeCall {
        device: "SEP000000002000".into(),
        line: "2000".into(),
        destination: "2001".into(),
        answer_within: Duration::from_secs(60),
        request,
    };
    // Ringing, then abandoned.
    let out = node.command(1, make(1));
    let to_user = only(requests(&out, "INVITE", user.addr), "INVITE to the user");
    node.receive(user.answer(&to_user, 180), user.addr);
    let out = node.command(2, Command::Abandon { request: 1 });
    only(requests(&out, "CANCEL", user.addr), "CANCEL to the user");
    assert_eq!(node.core.summary().calls, 0);

    // Answered, the destination ringing, then the node stops.
    let out = node.command(3, make(2));
    let to_user = only(requests(&out, "INVITE", user.addr), "INVITE to the user");
    node.receive(user.answer(&to_user, 180), user.addr);
    let out = node.receive(user.answer(&to_user, 200), user.addr);
    let to_dest = only(
        requests(&out, "INVITE", dest.addr),
        "INVITE to the destination",
    );
    node.receive(dest.answer(&to_dest, 180), dest.addr);
    // The user's phone repeats its 200 while the destination rings: no empty ACK for it.
    let out = node.receive(user.answer(&to_user, 200), user.addr);
    assert!(requests(&out, "ACK", user.addr).is_empty(), "{out:?}");
    let now = node.now();
    let out = node.core.on_shutdown(now);
    only(
        requests(&out, "CANCEL", dest.addr),
        "CANCEL to the destination",
    );
    only(requests(&out, "ACK", user.addr), "ACK to the user");
    only(requests(&out, "BYE", user.addr), "BYE to the user");
    assert_eq!(node.core.summary().calls, 0);
}

/// A route point served by another node's service (the Paging Server on the node holding its
/// lease): a call to it goes to that node over the intra-cluster trunk, naming the route point
/// and the caller's Call-ID; that node offers it only to a route point its own service serves,
/// and never sends it on.
#[test]
fn r16_route_points_served_by_another_node_are_reached_through_it() {
    let two = LINES.replace(
        "nodes: [{name: n1, address: 127.0.0.1}]",
        "nodes: [{name: n1, address: 127.0.0.1}, {name: n2, address: 127.0.0.2}]",
    );
    let n2: SocketAddr = "127.0.0.2:5060".parse().unwrap();
    let mut node = Node::new(&two);
    let a = Phone::new("2000", "127.0.0.21:5060");
    let fwd = Phone::new("2004", "127.0.0.24:5060");
    node.register(&a, 3600);
    node.register(&fwd, 3600);
    let elsewhere = |rp: Option<&str>| Command::RoutePointsElsewhere {
        at: rp
            .map(|n| HashMap::from([("RP-Service".to_string(), n.to_string())]))
            .unwrap_or_default(),
    };
    assert!(node.command(1, elsewhere(Some("n2"))).is_empty());
    let out = node.receive(a.invite("7100", "rp-x"), a.addr);
    assert!(!out.iter().any(|o| matches!(o, Out::Offer(_))), "{out:?}");
    let inv = only(requests(&out, "INVITE", n2), "INVITE to n2");
    let deliver = inv.headers.get(intra::DELIVER_HEADER).unwrap().to_string();
    assert_eq!(deliver, "line=7100;pt=PT;rp=RP-Service;cid=rp-x;node=n1");
    assert!(requests(&out, "INVITE", fwd.addr).is_empty());
    // Nobody serves it: the line's forward, as before.
    assert!(node.command(2, elsewhere(None)).is_empty());
    let out = node.receive(a.invite("7100", "rp-y"), a.addr);
    only(requests(&out, "INVITE", fwd.addr), "INVITE to the forward");
    // Served here, then the service steps down as n2's takes over: the call goes to n2.
    node.command(
        3,
        Command::RegisterRoutePoint {
            name: "RP-Service".into(),
        },
    );
    node.command(4, elsewhere(Some("n2")));
    let out = node.receive(a.invite("7100", "rp-z"), a.addr);
    let call = out
        .iter()
        .find_map(|o| match o {
            Out::Offer(c) => Some(c.call),
            _ => None,
        })
        .expect("offered here first");
    let now = node.now();
    let out = node
        .core
        .on_offer_undelivered(&node.cluster, &node.bindings, call, now);
    only(requests(&out, "INVITE", n2), "INVITE to n2");

    // Calls n2 sends here for the route point.
    let delivered = |call_id: &str, rp: &str| {
        let sdp = a.sdp();
        parse(&format!(
            "INVITE sip:7100@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK{call_id}\r\nFrom: <sip:2000@127.0.0.2>;tag=n2{call_id}\r\nTo: <sip:7100@127.0.0.1>\r\nCall-ID: {call_id}@ucm\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:2000@127.0.0.2:5060>\r\nX-Ucm-Deliver: line=7100;pt=PT;rp={rp};cid=orig-{call_id};node=n2\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ))
    };
    // Served here again: offered to the service, named by the caller's own Call-ID.
    node.command(
        5,
        Command::RegisterRoutePoint {
            name: "RP-Service".into(),
        },
    );
    let out = node.receive(delivered("d1", "RP-Service"), n2);
    let offer = out
        .iter()
        .find_map(|o| match o {
            Out::Offer(c) => Some(c.clone()),
            _ => None,
        })
        .expect("an offer");
    assert_eq!(offer.call_id, "orig-d1");
    assert_eq!(offer.calling, "2000");
    // A route point that is not this DN's, or one not served here: 480, never sent on.
    let out = node.receive(delivered("d2", "Other-RP"), n2);
    assert!(statuses(&out, n2).contains(&480), "{out:?}");
    let mut other = Node::new(&two);
    other.command(1, elsewhere(Some("n2")));
    let out = other.receive(delivered("d3", "RP-Service"), n2);
    assert!(statuses(&out, n2).contains(&480), "{out:?}");
    assert!(requests(&out, "INVITE", n2).is_empty(), "{out:?}");
    assert!(!out.iter().any(|o| matches!(o, Out::Offer(_))), "{out:?}");
}

const ASSISTANT: &str = r#"cluster: {id: unit, name: Unit}
nodes: [{name: n1, address: 127.0.0.1}]
partitions: [{name: RP}, {name: EVERYONE}, {name: MGR}]
calling_search_spaces:
  - {name: EVERYONE_CSS, partitions: [RP, EVERYONE]}
  - {name: MGR_CSS, partitions: [MGR, EVERYONE]}
device_pools: [{name: DP, node_group: [n1]}]
directory_numbers:
  - {pattern: "2000", partition: EVERYONE}
  - {pattern: "60001", partition: MGR}
  - pattern: "6XXXX"
    partition: RP
    call_forward:
      no_answer: {destination: "6XXXX", css: MGR_CSS}
  - pattern: "7XXXX"
    partition: RP
    call_forward:
      no_answer: {destination: "7000X", css: MGR_CSS}
devices:
  - {name: SEP000000002000, model: Cisco 8845, device_pool: DP, css: EVERYONE_CSS, lines: [{dn: "2000", partition: EVERYONE}]}
  - {name: SEP000000060001, model: Cisco 8845, device_pool: DP, css: MGR_CSS, lines: [{dn: "60001", partition: MGR}]}
route_points:
  - {name: RP-Assistant, device_pool: DP, css: MGR_CSS, lines: [{dn: "6XXXX", partition: RP}, {dn: "7XXXX", partition: RP}]}
"#;

/// The Assistant route point's fall-through: with no service on the route point, its Forward
/// No Answer to the pattern `6XXXX` forwards the number that was dialled, analysed with the
/// forward's CSS, so the manager's phone rings with 60001 (not the pattern). A pattern that
/// does not match the dialled number refuses the call with 404.
#[test]
fn r18_pattern_forward_rings_the_dialled_number() {
    let mut node = Node::new(ASSISTANT);
    let a = Phone::new("2000", "127.0.0.21:5060");
    node.register(&a, 3600);
    let manager: SocketAddr = "127.0.0.31:5060".parse().unwrap();
    let decision = Decision::Bind {
        device: "SEP000000060001".into(),
        line: "60001".into(),
        contact: format!("sip:60001@{manager}"),
        instance: None,
        expires: 3600,
    };
    let unix = node.now().unix;
    node.bindings
        .apply(&decision, Transport::Udp, manager, unix);

    // The caller's CSS does not reach the manager's partition: 60001 hits the route point.
    let out = node.receive(a.invite("60001", "fall"), a.addr);
    let invite = only(requests(&out, "INVITE", manager), "INVITE to the manager");
    assert_eq!(invite.uri, format!("sip:60001@{manager}"));
    assert!(
        invite
            .headers
            .get("To")
            .is_some_and(|t| t.starts_with("<sip:60001@")),
        "{invite:?}"
    );
    assert!(!out.iter().any(|o| matches!(o, Out::Offer(_))), "{out:?}");

    // 71234 reaches 7XXXX, whose forward pattern 7000X does not match it: 404 at call time.
    let out = node.receive(a.invite("71234", "nomatch"), a.addr);
    let finals: Vec<Response> = responses(&out, a.addr)
        .into_iter()
        .filter(|r| r.status >= 200)
        .collect();
    let r = only(finals, "final to the caller");
    assert_eq!(r.status, 404, "{r:?}");
    assert!(
        r.reason.contains("does not match the dialled number"),
        "{r:?}"
    );

    // 61234 is forwarded as dialled, and nothing in the managers' CSS has it: 404.
    let out = node.receive(a.invite("61234", "nobody"), a.addr);
    let finals: Vec<Response> = responses(&out, a.addr)
        .into_iter()
        .filter(|r| r.status >= 200)
        .collect();
    let r = only(finals, "final to the caller");
    assert_eq!(r.status, 404, "{r:?}");
}

/// The visiting side of EMCC: a call on the EMCC SIP trunk that names one of the cluster's
/// EMCC phones (the header) is routed with the trunk's CSS (or, per "CSS for PSTN Access SIP
/// Trunk", the phone's own) and the phone's device pool, whose Standard Local Route Group is
/// the phone's local gateway. Without the header, or naming a device that is no EMCC phone,
/// it is an ordinary trunk call: the trunk's pool has no local route group, so no route.
#[test]
fn r17_emcc_trunk_calls_are_routed_by_the_named_phone() {
    const VISITING: &str = r#"cluster: {id: v, name: visiting}
nodes: [{name: n1, address: 127.0.0.1}]
partitions: [{name: EMERG}, {name: PSTN}]
calling_search_spaces:
  - {name: TRUNK_CSS, partitions: [EMERG]}
  - {name: PHONE_CSS, partitions: [EMERG, PSTN]}
device_pools:
  - {name: DP_T, node_group: [n1]}
  - {name: DP_V, node_group: [n1], local_route_group: RG_V}
sip_trunks:
  - {name: EMCC, destinations: ["127.0.0.50:5060"], device_pool: DP_T, css: TRUNK_CSS}
  - {name: GW_V, destinations: ["127.0.0.60:5060"], device_pool: DP_V}
route_groups: [{name: RG_V, members: [GW_V]}]
route_lists: [{name: LRG, members: [Standard Local Route Group]}]
route_patterns:
  - {pattern: "911", partition: EMERG, route_list: LRG}
  - {pattern: 9.!, partition: PSTN, route_list: LRG, discard_digits: pre-dot}
devices:
  - {name: SEP00000000E0B1, model: m, device_pool: DP_V, css: PHONE_CSS}
  - {name: SEP00000000E0B9, model: m, device_pool: DP_V, css: PHONE_CSS}
"#;
    let trunk: SocketAddr = "127.0.0.50:5060".parse().unwrap();
    let gw: SocketAddr = "127.0.0.60:5060".parse().unwrap();
    let invite = |number: &str, call_id: &str, device: Option<&str>| {
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.50\r\ns=-\r\nc=IN IP4 127.0.0.50\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let header = device
            .map(|d| format!("{}: {d}\r\n", crate::cluster::EMCC_DEVICE_HEADER))
            .unwrap_or_default();
        let text = format!(
            "INVITE sip:{number}@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.50:5060;branch=z9hG4bK{call_id}\r\nFrom: <sip:4001@127.0.0.50>;tag=a1\r\nTo: <sip:{number}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{header}Contact: <sip:4001@127.0.0.50:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        parse_datagram(text.as_bytes()).unwrap()
    };
    for use_phone_css in [false, true] {
        let mut node = Node::new(VISITING);
        let mut routing = crate::cluster::EmccRouting::default();
        routing.pstn_trunks.insert("EMCC".into(), use_phone_css);
        routing.phones.insert("SEP00000000E0B1".into());
        node.cluster.emcc = Arc::new(routing);
        // 911 names the EMCC phone: its pool's LRG, the local gateway.
        let out = node.receive(invite("911", "e1", Some("SEP00000000E0B1")), trunk);
        let sent = invites(&out);
        assert_eq!(sent.len(), 1, "{out:?}");
        assert_eq!(sent[0].0.addr, gw);
        assert_eq!(sent[0].1.uri, "sip:911@127.0.0.60:5060");
        // 9.! is in the phone's CSS only.
        let out = node.receive(invite("95551234", "e2", Some("SEP00000000E0B1")), trunk);
        let sent = invites(&out);
        if use_phone_css {
            assert_eq!(sent.len(), 1, "{out:?}");
            assert_eq!(sent[0].1.uri, "sip:5551234@127.0.0.60:5060");
        } else {
            assert!(sent.is_empty(), "{out:?}");
            assert_eq!(final_to_caller_from(&out, trunk), Some(404), "{out:?}");
        }
        // No header, or a device that is no EMCC phone: the trunk's own pool, no LRG.
        for (id, device) in [
            ("e3", None),
            ("e4", Some("SEP00000000E0B9")),
            ("e5", Some("SEPNOSUCH")),
        ] {
            let out = node.receive(invite("911", id, device), trunk);
            assert!(invites(&out).is_empty(), "{device:?}: {out:?}");
            assert_eq!(
                final_to_caller_from(&out, trunk),
                Some(404),
                "{device:?}: {out:?}"
            );
        }
    }
}

fn final_to_caller_from(out: &[Out], caller: SocketAddr) -> Option<u16> {
    statuses(out, caller).into_iter().find(|s| *s >= 200)
}

fn move_to(destination: &str, secs: u64) -> Command {
    Command::Move {
        call: 1,
        to: MoveTo::Number {
            destination: destination.into(),
            answer_within: Duration::from_secs(secs),
        },
    }
}

/// Moving a connected call's far side (issue 19): a new leg rings 2004 with the caller's
/// offer; unanswered at the deadline it is cancelled and the call stays with 2001 (408); to
/// a number digit analysis refuses, the call stays too (404). Moved again, 2004 answers: it
/// is acknowledged, 2001 gets a BYE, the caller is re-INVITEd with 2004's SDP and, once it
/// answers, the move is done with the caller's SDP; the caller's BYE then reaches 2004.
#[test]
fn r19_move_reinvites_the_caller_and_leaves_the_call_alone_when_the_target_fails() {
    let mut node = Node::new(LINES);
    let a = Phone::new("2000", "127.0.0.21:5060");
    let b = Phone::new("2001", "127.0.0.22:5060");
    let c = Phone::new("2004", "127.0.0.24:5060");
    for p in [&a, &b, &c] {
        node.register(p, 3600);
    }
    let invite = a.invite("2001", "mv");
    let out = node.receive(invite.clone(), a.addr);
    let to_b = only(requests(&out, "INVITE", b.addr), "INVITE to B");
    let out = node.receive(b.answer(&to_b, 200), b.addr);
    let ok = only(responses(&out, a.addr), "200 to A");
    node.receive(a.in_dialog("ACK", &invite, &ok, 1), a.addr);

    // Not answered by the deadline: cancelled, the call stays with B.
    let out = node.command(1, move_to("2004", 5));
    let to_c = only(requests(&out, "INVITE", c.addr), "INVITE to C");
    assert!(String::from_utf8_lossy(&to_c.body).contains("c=IN IP4 127.0.0.21"));
    assert!(replies(&out).is_empty(), "{out:?}");
    let out = node.receive(c.answer(&to_c, 180), c.addr);
    assert!(
        statuses(&out, a.addr).is_empty(),
        "no ringing to a connected caller"
    );
    let out = node.advance(Duration::from_secs(6));
    only(requests(&out, "CANCEL", c.addr), "CANCEL to C");
    let (id, r) = only(replies(&out), "the move's answer");
    assert_eq!(id, CommandId(1));
    assert!(
        matches!(r, Reply::Moved(Err(ref e)) if e.status == 408),
        "{r:?}"
    );
    assert!(requests(&out, "BYE", b.addr).is_empty(), "{out:?}");
    // Nowhere to go: the call stays too.
    let out = node.command(2, move_to("2999", 5));
    let (_, r) = only(replies(&out), "the move's answer");
    assert!(
        matches!(r, Reply::Moved(Err(ref e)) if e.status == 404),
        "{r:?}"
    );
    assert!(requests(&out, "BYE", b.addr).is_empty(), "{out:?}");
    assert_eq!(node.core.summary().connected, 1);

    // C answers this time.
    let out = node.command(3, move_to("2004", 5));
    let to_c = only(requests(&out, "INVITE", c.addr), "INVITE to C");
    let out = node.receive(c.answer(&to_c, 200), c.addr);
    only(requests(&out, "ACK", c.addr), "ACK to C");
    only(requests(&out, "BYE", b.addr), "BYE to B");
    let reinvite = only(requests(&out, "INVITE", a.addr), "re-INVITE to A");
    assert!(String::from_utf8_lossy(&reinvite.body).contains("c=IN IP4 127.0.0.24"));
    assert!(replies(&out).is_empty(), "{out:?}");
    let out = node.receive(a.answer(&reinvite, 200), a.addr);
    only(requests(&out, "ACK", a.addr), "ACK to A");
    let (id, r) = only(replies(&out), "the move's answer");
    assert_eq!(id, CommandId(3));
    assert!(matches!(r, Reply::Moved(Ok(Some(_)))), "{r:?}");
    // The caller hangs up: C gets the BYE.
    let out = node.receive(a.in_dialog("BYE", &invite, &ok, 3), a.addr);
    only(requests(&out, "BYE", c.addr), "BYE to C");
    assert_eq!(node.core.summary().calls, 0);
}
