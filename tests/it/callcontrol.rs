//! Call control over the wire: registration (issue 3).

use std::net::SocketAddr;
use std::time::Duration;

use ucm::net::Dscp;

use crate::common::Server;

pub(crate) fn register(
    local: SocketAddr,
    target: SocketAddr,
    dn: &str,
    mac: &str,
    expires: u32,
    cseq: u32,
) -> String {
    format!(
        "REGISTER sip:{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{mac}{cseq};rport\r\n\
         From: <sip:{dn}@{target}>;tag=reg{mac}\r\n\
         To: <sip:{dn}@{target}>\r\n\
         Call-ID: reg-{mac}@{local}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Max-Forwards: 70\r\n\
         User-Agent: Cisco-CP8845/14.2.1\r\n\
         Contact: <sip:{dn}@{local};transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-{mac}>\";expires={expires}\r\n\
         Expires: {expires}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

pub(crate) async fn exchange(
    sock: &tokio::net::UdpSocket,
    target: SocketAddr,
    msg: &str,
) -> String {
    sock.send_to(msg.as_bytes(), target).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("reply within 5 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).to_string()
}

#[tokio::test]
async fn r3_phones_register_and_unknown_devices_are_refused() {
    let srv = Server::start(&[]);
    let target = srv.addr("sip_udp");
    let sock = ucm::net::bind_udp("127.0.0.2:0".parse().unwrap(), Dscp::CS3).unwrap();
    let local = sock.local_addr().unwrap();
    let ok = exchange(
        &sock,
        target,
        &register(local, target, "10001", "00036bc7b973", 3600, 1),
    )
    .await;
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}");
    assert!(ok.contains(";expires=3600"), "{ok}");
    assert!(ok.contains("\r\nDate: "), "{ok}");
    let unknown = exchange(
        &sock,
        target,
        &register(local, target, "10001", "0000deadbeef", 3600, 2),
    )
    .await;
    assert!(unknown.starts_with("SIP/2.0 404 "), "{unknown}");
    assert!(unknown.contains("SEP0000DEADBEEF"), "{unknown}");
    let foreign = exchange(
        &sock,
        target,
        &register(local, target, "23923", "00036bc7b973", 3600, 3),
    )
    .await;
    assert!(foreign.starts_with("SIP/2.0 403 "), "{foreign}");
    srv.wait_for_log("REGISTER refused");
}

#[tokio::test]
async fn r3_registrations_survive_a_restart() {
    let mut srv = Server::start(&[]);
    let target = srv.addr("sip_udp");
    let sock = ucm::net::bind_udp("127.0.0.3:0".parse().unwrap(), Dscp::CS3).unwrap();
    let local = sock.local_addr().unwrap();
    let ok = exchange(
        &sock,
        target,
        &register(local, target, "10002", "00036bc7b974", 600, 1),
    )
    .await;
    assert!(ok.starts_with("SIP/2.0 200 OK"), "{ok}");
    assert_eq!(srv.terminate().code(), Some(0));
    // The registration is in the database the node left behind.
    let db = format!("sqlite:{}", srv.data_dir.path().join("ucm.db").display());
    let store = ucm::store::Store::open(&db).await.unwrap();
    let rows = store
        .live_registrations(ucm::sip::registrar::unix_now())
        .await
        .unwrap();
    store.close().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].device, "SEP00036BC7B974");
    assert_eq!(rows[0].line, "10002");
    assert_eq!(rows[0].source, local.to_string());
    // A restarted node loads it: a query REGISTER (no Contact) returns the binding.
    let dir = std::mem::replace(&mut srv.data_dir, tempfile::tempdir().unwrap());
    drop(srv);
    let srv = Server::start_in(dir, &[]);
    let target = srv.addr("sip_udp");
    let query: String = register(local, target, "10002", "00036bc7b974", 600, 2)
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("Contact:") && !l.starts_with("Expires:"))
        .collect();
    let reply = exchange(&sock, target, &query).await;
    assert!(reply.starts_with("SIP/2.0 200 OK"), "{reply}");
    assert!(
        reply.contains(&format!(
            "Contact: <sip:10002@{local};transport=udp>;expires="
        )),
        "{reply}"
    );
}

/// A minimal SIP user agent for tests: a UDP socket on its own loopback address that registers
/// a line like a Cisco phone and exchanges raw messages.
pub struct TestPhone {
    pub sock: tokio::net::UdpSocket,
    pub local: SocketAddr,
    pub server: SocketAddr,
    pub dn: String,
    tag: String,
    /// Requests already received (Call-ID, CSeq, method, branch): a retransmission of one is
    /// absorbed, as a UA's server transaction does (RFC 3261 §17.2), so a node that retransmits
    /// an INVITE on a loaded machine (Timer A) is not mistaken for a second call.
    seen: std::sync::Mutex<std::collections::HashSet<String>>,
}

use ucm::wire::sip::{parse_datagram, Request, Response, SipMessage};

impl TestPhone {
    pub async fn register(ip: &str, dn: &str, mac: &str, server: SocketAddr) -> TestPhone {
        let sock = ucm::net::bind_udp(format!("{ip}:0").parse().unwrap(), Dscp::CS3).unwrap();
        let local = sock.local_addr().unwrap();
        let p = TestPhone {
            sock,
            local,
            server,
            dn: dn.into(),
            tag: format!("t{mac}"),
            seen: Default::default(),
        };
        let ok = exchange(&p.sock, server, &register(local, server, dn, mac, 3600, 1)).await;
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        p
    }

    /// Registers again, with `server` from now on (a phone failing over to another node).
    pub async fn reregister(&mut self, mac: &str, server: SocketAddr, cseq: u32) {
        self.server = server;
        let msg = register(self.local, server, &self.dn, mac, 3600, cseq);
        let ok = exchange(&self.sock, server, &msg).await;
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    }

    pub async fn send(&self, msg: &SipMessage) {
        self.sock
            .send_to(&msg.to_bytes(), self.server)
            .await
            .unwrap();
    }

    pub async fn send_text(&self, text: &str) {
        self.sock
            .send_to(text.as_bytes(), self.server)
            .await
            .unwrap();
    }

    /// Notes a request as received (for one read from the socket directly); false when it is a
    /// retransmission of one already received.
    pub fn mark_seen(&self, r: &Request) -> bool {
        let key = format!(
            "{} {:?} {} {:?}",
            r.call_id().unwrap_or_default(),
            r.cseq().map(|c| c.seq).ok(),
            r.method.as_str(),
            r.top_via()
                .ok()
                .and_then(|v| v.branch().map(str::to_string)),
        );
        self.seen.lock().unwrap().insert(key)
    }

    /// The next message, skipping `100 Trying` and retransmitted requests; panics after 5 s.
    pub async fn recv(&self) -> SipMessage {
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, _) =
                tokio::time::timeout(Duration::from_secs(5), self.sock.recv_from(&mut buf))
                    .await
                    .unwrap_or_else(|_| panic!("{}: nothing received within 5 s", self.dn))
                    .unwrap();
            let msg = parse_datagram(&buf[..n]).expect("well-formed SIP from ucm");
            if let SipMessage::Request(r) = &msg {
                if !self.mark_seen(r) {
                    continue;
                }
            }
            if let SipMessage::Response(r) = &msg {
                if r.status == 100 {
                    continue;
                }
                // A UA's transaction layer ACKs a non-2xx final answer to its INVITE.
                if r.status >= 300 && r.cseq().is_ok_and(|c| c.method.as_str() == "INVITE") {
                    let ack = format!(
                        "ACK sip:{srv} SIP/2.0\r\nVia: {via}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {seq} ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                        srv = self.server,
                        via = r.headers.get("Via").unwrap(),
                        from = r.headers.get("From").unwrap(),
                        to = r.headers.get("To").unwrap(),
                        cid = r.call_id().unwrap(),
                        seq = r.cseq().unwrap().seq,
                    );
                    self.send_text(&ack).await;
                }
            }
            return msg;
        }
    }

    pub async fn expect_request(&self, method: &str) -> Request {
        match self.recv().await {
            SipMessage::Request(r) if r.method.as_str() == method => r,
            other => panic!("{}: expected {method}, got {other}", self.dn),
        }
    }

    pub async fn expect_response(&self, status: u16) -> Response {
        match self.recv().await {
            SipMessage::Response(r) if r.status == status => r,
            other => panic!("{}: expected {status}, got {other}", self.dn),
        }
    }

    pub fn sdp(&self, port: u16) -> String {
        let ip = self.local.ip();
        format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=sendrecv\r\n"
        )
    }

    pub fn invite(&self, dest: &str, call_id: &str) -> String {
        let sdp = self.sdp(20000);
        format!(
            "INVITE sip:{dest}@{srv} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bK{cid}\r\nFrom: <sip:{dn}@{srv}>;tag={tag}\r\nTo: <sip:{dest}@{srv}>\r\nCall-ID: {cid}\r\nCSeq: 101 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:{dn}@{l};transport=udp>\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
            srv = self.server,
            l = self.local,
            cid = call_id,
            dn = self.dn,
            tag = self.tag,
            len = sdp.len()
        )
    }

    /// Answers a request with `status`, adding a To tag, a Contact and optionally SDP.
    pub async fn answer(&self, req: &Request, status: u16, with_sdp: bool) -> Response {
        let mut r = req.make_response(
            status,
            ucm::wire::sip::default_reason(status),
            Some(&self.tag),
        );
        r.headers
            .push("Contact", format!("<sip:{}@{}>", self.dn, self.local));
        if with_sdp {
            r.headers.push("Content-Type", "application/sdp");
            r.body = self.sdp(30000).into_bytes().into();
        }
        self.send(&SipMessage::Response(r.clone())).await;
        r
    }

    /// An in-dialog request (ACK, BYE) built from the dialog's final response to our INVITE.
    pub fn in_dialog(&self, ok: &Response, method: &str, cseq: u32) -> String {
        let to = ok.headers.get("To").unwrap();
        let target = ok
            .headers
            .get("Contact")
            .map(|c| {
                c.trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap();
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bK{method}{cseq}{r}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            l = self.local,
            r = rand::random::<u32>(),
            from = ok.headers.get("From").unwrap(),
            cid = ok.call_id().unwrap(),
        )
    }

    /// An in-dialog request towards the node, for a dialog in which we answered `invite`.
    pub fn in_dialog_as_callee(&self, invite: &Request, method: &str, cseq: u32) -> String {
        let from = format!("{};tag={}", invite.headers.get("To").unwrap(), self.tag);
        let target = invite
            .headers
            .get("Contact")
            .map(|c| {
                c.trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap();
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bK{method}{cseq}{r}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            l = self.local,
            r = rand::random::<u32>(),
            to = invite.headers.get("From").unwrap(),
            cid = invite.call_id().unwrap(),
        )
    }
}

#[tokio::test]
async fn r3_basic_call_between_two_phones() {
    let srv = Server::start(&[]);
    let sip = srv.addr("sip_udp");
    let a = TestPhone::register("127.0.0.11", "10001", "00036bc7b973", sip).await;
    let b = TestPhone::register("127.0.0.12", "10002", "00036bc7b974", sip).await;
    a.send_text(&a.invite("10002", "call-basic")).await;
    let inv = b.expect_request("INVITE").await;
    assert!(
        String::from_utf8_lossy(&inv.body).contains("c=IN IP4 127.0.0.11"),
        "A's SDP passes through"
    );
    assert_ne!(
        inv.call_id(),
        Some("call-basic"),
        "the B leg is its own dialog"
    );
    assert!(
        inv.headers.get("From").unwrap().contains("sip:10001@"),
        "caller's number"
    );
    // Real phones send 100 Trying first; it must not end the leg.
    b.answer(&inv, 100, false).await;
    b.answer(&inv, 180, false).await;
    let ringing = a.expect_response(180).await;
    assert!(ringing.to().unwrap().tag().is_some());
    b.answer(&inv, 200, true).await;
    let ok = a.expect_response(200).await;
    assert!(
        String::from_utf8_lossy(&ok.body).contains("c=IN IP4 127.0.0.12"),
        "B's SDP passes back"
    );
    // B gets its ACK from the node.
    let ack = b.expect_request("ACK").await;
    assert_eq!(ack.call_id(), inv.call_id());
    a.send_text(&a.in_dialog(&ok, "ACK", 101)).await;
    // A hangs up: B gets a BYE, A gets 200.
    a.send_text(&a.in_dialog(&ok, "BYE", 102)).await;
    a.expect_response(200).await;
    let bye = b.expect_request("BYE").await;
    b.answer(&bye, 200, false).await;
}

#[tokio::test]
async fn r3_caller_cancels_before_answer() {
    let srv = Server::start(&[]);
    let sip = srv.addr("sip_udp");
    let a = TestPhone::register("127.0.0.13", "10001", "00036bc7b973", sip).await;
    let b = TestPhone::register("127.0.0.14", "10002", "00036bc7b974", sip).await;
    let invite = a.invite("10002", "call-cancel");
    a.send_text(&invite).await;
    let inv = b.expect_request("INVITE").await;
    b.answer(&inv, 180, false).await;
    a.expect_response(180).await;
    let cancel = invite
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 101 INVITE", "CSeq: 101 CANCEL");
    let cancel = format!(
        "{}Content-Length: 0\r\n\r\n",
        &cancel[..cancel.find("Content-Type").unwrap()]
    );
    a.send_text(&cancel).await;
    // A: 200 for the CANCEL and 487 for the INVITE, in either order.
    let mut got = vec![];
    for _ in 0..2 {
        if let SipMessage::Response(r) = a.recv().await {
            got.push((r.status, r.cseq().unwrap().method.as_str().to_string()));
        }
    }
    got.sort();
    assert_eq!(got, vec![(200, "CANCEL".into()), (487, "INVITE".into())]);
    // B: the node cancels its leg.
    let c = b.expect_request("CANCEL").await;
    b.answer(&c, 200, false).await;
    b.answer(&inv, 487, false).await;
    let ack = b.expect_request("ACK").await;
    assert_eq!(ack.cseq().unwrap().seq, inv.cseq().unwrap().seq);
}

#[tokio::test]
async fn r3_busy_callee_and_unknown_numbers() {
    let srv = Server::start(&[]);
    let sip = srv.addr("sip_udp");
    let a = TestPhone::register("127.0.0.15", "10001", "00036bc7b973", sip).await;
    let b = TestPhone::register("127.0.0.16", "10002", "00036bc7b974", sip).await;
    a.send_text(&a.invite("10002", "call-busy")).await;
    let inv = b.expect_request("INVITE").await;
    b.answer(&inv, 486, false).await;
    b.expect_request("ACK").await;
    let r = a.expect_response(486).await;
    assert!(r.reason.contains("Busy"), "{}", r.reason);
    // A number no pattern matches: 404 with the reason.
    a.send_text(&a.invite("55555", "call-404")).await;
    let r = a.expect_response(404).await;
    assert!(r.reason.contains("no pattern matches"), "{}", r.reason);
    // A line whose phone is not registered: 480.
    a.send_text(&a.invite("23923", "call-480")).await;
    let r = a.expect_response(480).await;
    assert!(r.reason.contains("registered"), "{}", r.reason);
    // An unregistered caller is refused.
    let stranger = ucm::net::bind_udp("127.0.0.17:0".parse().unwrap(), Dscp::CS3).unwrap();
    let text = a.invite("10002", "call-403").replace(
        &a.local.to_string(),
        &stranger.local_addr().unwrap().to_string(),
    );
    let reply = exchange(&stranger, sip, &text).await;
    assert!(reply.starts_with("SIP/2.0 403"), "{reply}");
}

/// A cluster for the routing rules: a shared line, each call forward, Do Not Disturb.
const ROUTING: &str = r#"cluster: {id: routing, name: Routing rules}
nodes: [{name: n1, address: 127.0.0.1}]
partitions: [{name: PT}]
calling_search_spaces: [{name: CSS, partitions: [PT]}]
device_pools: [{name: DP, node_group: [n1]}]
directory_numbers:
  - {pattern: "2000", partition: PT}
  - {pattern: "2001", partition: PT}
  - pattern: "2003"
    partition: PT
    no_answer_timer: 1
    call_forward:
      busy: {destination: "2004", css: CSS}
      no_answer: {destination: "2004", css: CSS}
  - {pattern: "2004", partition: PT}
  - {pattern: "2005", partition: PT, call_forward: {all: {destination: "2004", css: CSS}}}
  - {pattern: "2006", partition: PT, call_forward: {unregistered: {destination: "2004", css: CSS}}}
  - {pattern: "2007", partition: PT}
  - {pattern: "2008", partition: PT, max_calls: 1, busy_trigger: 1}
devices:
  - {name: SEP000000002000, model: Cisco 8845, device_pool: DP, css: CSS, lines: [{dn: "2000", partition: PT}]}
  - {name: SEP000000002001, model: Cisco 8845, device_pool: DP, css: CSS, lines: [{dn: "2001", partition: PT}]}
  - {name: SEP000000002002, model: Cisco 8845, device_pool: DP, css: CSS, lines: [{dn: "2001", partition: PT}]}
  - {name: SEP000000002003, model: Cisco 8845, device_pool: DP, css: CSS, lines: [{dn: "2003", partition: PT}]}
  - {name: SEP000000002004, model: Cisco 8845, device_pool: DP, css: CSS, lines: [{dn: "2004", partition: PT}]}
  - {name: SEP000000002005, model: Cisco 8845, device_pool: DP, css: CSS, lines: [{dn: "2005", partition: PT}]}
  - {name: SEP000000002006, model: Cisco 8845, device_pool: DP, css: CSS, lines: [{dn: "2006", partition: PT}]}
  - {name: SEP000000002007, model: Cisco 8845, device_pool: DP, css: CSS, do_not_disturb: true, lines: [{dn: "2007", partition: PT}]}
  - {name: SEP000000002008, model: Cisco 8845, device_pool: DP, css: CSS, lines: [{dn: "2008", partition: PT}]}
"#;

fn routing_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::common::write_file(dir.path(), "routing.yaml", ROUTING);
    let srv = Server::start_in(dir, &["--config", cfg.to_str().unwrap()]);
    assert_eq!(srv.ready["cluster"], "routing");
    srv
}

#[tokio::test]
async fn r3_shared_line_rings_everywhere_and_first_answer_wins() {
    let srv = routing_server();
    let sip = srv.addr("sip_udp");
    let a = TestPhone::register("127.0.0.21", "2000", "000000002000", sip).await;
    let b1 = TestPhone::register("127.0.0.22", "2001", "000000002001", sip).await;
    let b2 = TestPhone::register("127.0.0.23", "2001", "000000002002", sip).await;
    a.send_text(&a.invite("2001", "call-shared")).await;
    let i1 = b1.expect_request("INVITE").await;
    let i2 = b2.expect_request("INVITE").await;
    b1.answer(&i1, 180, false).await;
    b2.answer(&i2, 180, false).await;
    a.expect_response(180).await;
    b2.answer(&i2, 200, true).await;
    let ok = a.expect_response(200).await;
    assert!(
        String::from_utf8_lossy(&ok.body).contains("127.0.0.23"),
        "the answering phone's SDP"
    );
    b2.expect_request("ACK").await;
    // The other phone of the shared line is cancelled.
    let c = b1.expect_request("CANCEL").await;
    b1.answer(&c, 200, false).await;
    b1.answer(&i1, 487, false).await;
    b1.expect_request("ACK").await;
    a.send_text(&a.in_dialog(&ok, "ACK", 101)).await;
    // The callee hangs up this time.
    b2.send_text(&b2.in_dialog_as_callee(&i2, "BYE", 1)).await;
    b2.expect_response(200).await;
    let bye = a.expect_request("BYE").await;
    a.answer(&bye, 200, false).await;
}

#[tokio::test]
async fn r3_call_forward_all_busy_no_answer_unregistered_and_dnd() {
    let srv = routing_server();
    let sip = srv.addr("sip_udp");
    let a = TestPhone::register("127.0.0.31", "2000", "000000002000", sip).await;
    let busy = TestPhone::register("127.0.0.32", "2003", "000000002003", sip).await;
    let target = TestPhone::register("127.0.0.33", "2004", "000000002004", sip).await;
    let _dnd = TestPhone::register("127.0.0.34", "2007", "000000002007", sip).await;
    let _cfa = TestPhone::register("127.0.0.35", "2005", "000000002005", sip).await;

    // Forward all: 2005 never rings, 2004 does.
    a.send_text(&a.invite("2005", "cfa")).await;
    let inv = target.expect_request("INVITE").await;
    target.answer(&inv, 486, false).await;
    target.expect_request("ACK").await;
    a.expect_response(486).await;

    // Forward busy: 2003 answers 486, the call moves to 2004.
    a.send_text(&a.invite("2003", "cfb")).await;
    let inv = busy.expect_request("INVITE").await;
    busy.answer(&inv, 486, false).await;
    busy.expect_request("ACK").await;
    let inv = target.expect_request("INVITE").await;
    target.answer(&inv, 200, true).await;
    target.expect_request("ACK").await;
    let ok = a.expect_response(200).await;
    a.send_text(&a.in_dialog(&ok, "ACK", 101)).await;
    a.send_text(&a.in_dialog(&ok, "BYE", 102)).await;
    a.expect_response(200).await;
    let bye = target.expect_request("BYE").await;
    target.answer(&bye, 200, false).await;

    // Forward no answer after the line's 1 s timer: 2003 rings, is cancelled, 2004 rings.
    a.send_text(&a.invite("2003", "cfna")).await;
    let inv = busy.expect_request("INVITE").await;
    busy.answer(&inv, 180, false).await;
    a.expect_response(180).await;
    let c = busy.expect_request("CANCEL").await;
    busy.answer(&c, 200, false).await;
    busy.answer(&inv, 487, false).await;
    busy.expect_request("ACK").await;
    let inv = target.expect_request("INVITE").await;
    target.answer(&inv, 486, false).await;
    target.expect_request("ACK").await;
    a.expect_response(486).await;

    // Forward unregistered: 2006's phone never registered.
    a.send_text(&a.invite("2006", "cfur")).await;
    let inv = target.expect_request("INVITE").await;
    target.answer(&inv, 480, false).await;
    target.expect_request("ACK").await;
    a.expect_response(480).await;

    // Do Not Disturb: the phone is not offered the call; busy treatment.
    a.send_text(&a.invite("2007", "dnd")).await;
    a.expect_response(486).await;
}

/// A node running inside the test process, so tests can use the call-control API directly.
struct InProcessNode {
    state: std::sync::Arc<ucm::node::NodeState>,
    sip: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl InProcessNode {
    async fn start() -> InProcessNode {
        InProcessNode::start_with(ucm::services::demo().unwrap()).await
    }

    async fn start_with(def: ucm::config::ClusterDefinition) -> InProcessNode {
        let dir = tempfile::tempdir().unwrap();
        let store = ucm::store::Store::open("sqlite::memory:").await.unwrap();
        let mut def = def;
        ucm::config::hash_secrets(&mut def);
        store.import(&def, "demo", "demo").await.unwrap();
        let opts = ucm::server::ListenOptions {
            bind: "127.0.0.1".parse().unwrap(),
            http_port: Some(0),
            https_port: Some(0),
            tftp_http_port: Some(0),
            tftp_port: Some(0),
            sip_port: Some(0),
            sips_port: Some(0),
            snmp_port: Some(0),
            assistant_console_port: Some(0),
            attendant_console_port: Some(0),
        };
        let listeners = ucm::server::Listeners::bind(&opts, &def, None).unwrap();
        let sip = listeners.ready("t").unwrap().get("sip_udp").unwrap();
        let node = ucm::server::start(listeners, store, def, dir.path().to_path_buf())
            .await
            .unwrap();
        let state = node.state.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = ucm::server::run(node, async {
                let _ = rx.await;
            })
            .await;
        });
        InProcessNode {
            state,
            sip,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_third_party_call_rings_the_users_phone_first() {
    let node = InProcessNode::start().await;
    let mut events = node.state.call_control.subscribe();
    let a = TestPhone::register("127.0.0.41", "10001", "00036bc7b973", node.sip).await;
    let b = TestPhone::register("127.0.0.42", "10002", "00036bc7b974", node.sip).await;
    let cc = node.state.clone();
    let placing = tokio::spawn(async move {
        cc.call_control
            .make_call("SEP00036BC7B973", "10001", "10002", Duration::from_secs(60))
            .await
    });
    // The user's phone rings first, with no SDP: its answer carries the offer (RFC 3725).
    let inv_a = a.expect_request("INVITE").await;
    assert!(inv_a.body.is_empty(), "flow I: no offer to the first phone");
    assert!(
        inv_a.headers.get("From").unwrap().contains("sip:10002@"),
        "the phone shows whom it calls"
    );
    a.answer(&inv_a, 200, true).await;
    let call = placing.await.unwrap().expect("the user's phone answered");
    // Then the destination, with the first phone's offer.
    let inv_b = b.expect_request("INVITE").await;
    assert!(
        String::from_utf8_lossy(&inv_b.body).contains("127.0.0.41"),
        "A's offer reaches B"
    );
    assert!(
        inv_b.headers.get("From").unwrap().contains("sip:10001@"),
        "B sees the user's number"
    );
    b.answer(&inv_b, 200, true).await;
    b.expect_request("ACK").await;
    let ack_a = a.expect_request("ACK").await;
    assert!(
        String::from_utf8_lossy(&ack_a.body).contains("127.0.0.42"),
        "B's answer reaches A in the ACK"
    );
    // Line state: both lines connected.
    let mut connected = vec![];
    while connected.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap();
        if e.state == ucm::sip::b2bua::LineState::Connected {
            connected.push(e.dn.clone());
        }
    }
    connected.sort();
    assert_eq!(connected, vec!["10001".to_string(), "10002".to_string()]);
    // A service that missed line events can ask whether the call is up.
    assert!(node.state.call_control.call_exists(call).await.unwrap());
    assert!(!node
        .state
        .call_control
        .call_exists(call + 1000)
        .await
        .unwrap());
    // Ending the call from the API hangs up both phones.
    node.state.call_control.end_call(call).await.unwrap();
    assert!(!node.state.call_control.call_exists(call).await.unwrap());
    let bye_a = a.expect_request("BYE").await;
    a.answer(&bye_a, 200, false).await;
    let bye_b = b.expect_request("BYE").await;
    b.answer(&bye_b, 200, false).await;
    // Errors carry a SIP status: an unregistered phone cannot place calls.
    let e = node
        .state
        .call_control
        .make_call("SEP00036BC7B975", "23923", "10002", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(e.status, 480, "{e}");
    node.stop().await;
}

/// An application ends a third-party call while the destination's answer is on its way (found
/// by `cargo xtask bench webdialer`, whose client saw the destination connected before the node
/// did): the destination's 180 and 200 reach a call that has ended. The node cancels the leg
/// on the provisional and, when the 200 comes anyway, ACKs and BYEs it: no phone is left
/// connected to nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r7_call_ended_while_the_destination_answers_is_hung_up() {
    let node = InProcessNode::start().await;
    let a = TestPhone::register("127.0.0.43", "10001", "00036bc7b973", node.sip).await;
    let b = TestPhone::register("127.0.0.44", "10002", "00036bc7b974", node.sip).await;
    let cc = node.state.clone();
    let placing = tokio::spawn(async move {
        cc.call_control
            .make_call("SEP00036BC7B973", "10001", "10002", Duration::from_secs(60))
            .await
    });
    let inv_a = a.expect_request("INVITE").await;
    a.answer(&inv_a, 200, true).await;
    let call = placing.await.unwrap().expect("the user's phone answered");
    let inv_b = b.expect_request("INVITE").await;
    // Ended before the node has heard anything from B.
    node.state.call_control.end_call(call).await.unwrap();
    a.expect_request("ACK").await;
    let bye_a = a.expect_request("BYE").await;
    a.answer(&bye_a, 200, false).await;
    // B rings and answers at once, as an auto-answering phone does.
    b.answer(&inv_b, 180, false).await;
    b.answer(&inv_b, 200, true).await;
    let mut seen = Vec::new();
    while !seen.contains(&"BYE".to_string()) {
        match b.recv().await {
            SipMessage::Request(r) => {
                if r.method.as_str() == "BYE" || r.method.as_str() == "CANCEL" {
                    b.answer(&r, 200, false).await;
                }
                seen.push(r.method.as_str().to_string());
            }
            SipMessage::Response(_) => {}
        }
        assert!(seen.len() <= 4, "{seen:?}");
    }
    assert_eq!(
        seen,
        ["CANCEL", "ACK", "BYE"],
        "B's leg is cancelled, then its answer hung up"
    );
    node.stop().await;
}

/// The demo cluster plus two route points: 7100 (a service decides; Call Forward No Answer to
/// 10002 when it does not) and 7101 (no service; forwards to 10002).
fn route_point_cluster() -> ucm::config::ClusterDefinition {
    // The demo's own route points (the DialCast numbers) come first in the list.
    let extra = "route_points:\n  - {name: RP-Service, device_pool: HQ_DP, css: Internal_CSS, lines: [{dn: \"7100\", partition: Internal_PT}]}\n  - {name: RP-Orphan, device_pool: HQ_DP, css: Internal_CSS, lines: [{dn: \"7101\", partition: Internal_PT}]}\n";
    let text = ucm::config::DEMO_YAML
        .replacen("route_points:\n", extra, 1)
        .replace(
            "directory_numbers:\n",
            "directory_numbers:\n  - {pattern: \"7100\", partition: Internal_PT, call_forward: {no_answer: {destination: \"10002\", css: Internal_CSS}}}\n  - {pattern: \"7101\", partition: Internal_PT, call_forward: {no_answer: {destination: \"10002\", css: Internal_CSS}}}\n",
        )
        .replace("    register_expires: 3600\n", "")
        .replace("  webdialer:\n    user_session_expiry_hours: 0", "  call_manager:\n    route_point_timeout: 1\n  webdialer:\n    user_session_expiry_hours: 0");
    ucm::services::parse_str(&text, "route-points.yaml").unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_route_points_redirect_answer_and_fall_through() {
    let node = InProcessNode::start_with(route_point_cluster()).await;
    let cc = &node.state.call_control;
    let mut offers = cc.register_route_point("RP-Service").await.unwrap();
    let a = TestPhone::register("127.0.0.51", "10001", "00036bc7b973", node.sip).await;
    let b = TestPhone::register("127.0.0.52", "10002", "00036bc7b974", node.sip).await;

    // 1. The service redirects the offered call, without answering it, to 10002.
    a.send_text(&a.invite("7100", "rp-redirect")).await;
    let offered = tokio::time::timeout(Duration::from_secs(5), offers.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (offered.dn.as_str(), offered.calling.as_str()),
        ("7100", "10001")
    );
    assert!(
        offered.offer.is_some(),
        "the caller's SDP is offered to the service"
    );
    cc.redirect(offered.call, "10002").await.unwrap();
    let inv = b.expect_request("INVITE").await;
    b.answer(&inv, 200, true).await;
    b.expect_request("ACK").await;
    let ok = a.expect_response(200).await;
    a.send_text(&a.in_dialog(&ok, "ACK", 101)).await;
    a.send_text(&a.in_dialog(&ok, "BYE", 102)).await;
    a.expect_response(200).await;
    let bye = b.expect_request("BYE").await;
    b.answer(&bye, 200, false).await;

    // 2. The service answers on the route point itself (a media-terminating service).
    a.send_text(&a.invite("7100", "rp-answer")).await;
    let offered = tokio::time::timeout(Duration::from_secs(5), offers.recv())
        .await
        .unwrap()
        .unwrap();
    let sdp = "v=0\r\no=ucm 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    cc.answer(offered.call, bytes::Bytes::from(sdp))
        .await
        .unwrap();
    let ok = a.expect_response(200).await;
    assert!(
        String::from_utf8_lossy(&ok.body).contains("m=audio 40000"),
        "the service's SDP"
    );
    a.send_text(&a.in_dialog(&ok, "ACK", 101)).await;
    a.send_text(&a.in_dialog(&ok, "BYE", 102)).await;
    a.expect_response(200).await;
    // Redirecting an answered call is refused with a reason.
    assert_eq!(
        cc.redirect(offered.call, "10002").await.unwrap_err().status,
        481
    );

    // 3. The service stays silent: after the route point timeout (1 s) the line's CFNA applies.
    a.send_text(&a.invite("7100", "rp-silent")).await;
    let _ignored = tokio::time::timeout(Duration::from_secs(5), offers.recv())
        .await
        .unwrap()
        .unwrap();
    let inv = b.expect_request("INVITE").await;
    b.answer(&inv, 486, false).await;
    b.expect_request("ACK").await;
    a.expect_response(486).await;

    // 4. No service on the route point at all: CFNA at once.
    a.send_text(&a.invite("7101", "rp-orphan")).await;
    let inv = b.expect_request("INVITE").await;
    b.answer(&inv, 486, false).await;
    b.expect_request("ACK").await;
    a.expect_response(486).await;
    node.stop().await;
}

#[tokio::test]
async fn r3_bad_sdp_and_unknown_methods_get_the_right_4xx() {
    let srv = Server::start(&[]);
    let sip = srv.addr("sip_udp");
    let a = TestPhone::register("127.0.0.81", "10001", "00036bc7b973", sip).await;
    let _b = TestPhone::register("127.0.0.82", "10002", "00036bc7b974", sip).await;
    // An offer without the mandatory o= line.
    let bad = a
        .invite("10002", "bad-sdp")
        .replace("o=- 1 1 IN IP4 127.0.0.81\r\n", "");
    let fixed_len = {
        let body = &bad[bad.find("\r\n\r\n").unwrap() + 4..];
        let head = &bad[..bad.find("Content-Length:").unwrap()];
        format!("{head}Content-Length: {}\r\n\r\n{body}", body.len())
    };
    a.send_text(&fixed_len).await;
    let r = a.expect_response(400).await;
    assert!(r.reason.contains("SDP"), "{}", r.reason);
    // A body that is not SDP at all.
    let xml = a.invite("10002", "not-sdp").replace(
        "Content-Type: application/sdp",
        "Content-Type: application/xml",
    );
    a.send_text(&xml).await;
    a.expect_response(415).await;
    // A method nobody defined: 501.
    let foo = format!(
        "FOO sip:10002@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bKfoo1\r\nFrom: <sip:10001@{sip}>;tag=f\r\nTo: <sip:10002@{sip}>\r\nCall-ID: foo@t\r\nCSeq: 1 FOO\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        l = a.local
    );
    a.send_text(&foo).await;
    a.expect_response(501).await;
}

/// Reads one SIP message from a stream, skipping 100 Trying.
async fn read_stream_msg(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> SipMessage {
    use tokio::io::AsyncReadExt;
    loop {
        let skip = ucm::wire::sip::skip_keepalive(buf);
        buf.drain(..skip);
        if let Some(n) = ucm::wire::sip::frame_stream(buf).expect("framing") {
            let msg = ucm::wire::sip::parse_stream_message(&buf[..n]).expect("parse");
            buf.drain(..n);
            if matches!(&msg, SipMessage::Response(r) if r.status == 100) {
                continue;
            }
            return msg;
        }
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("a message within 5 s")
            .unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn r3_phone_over_tcp_registers_and_calls_over_its_connection() {
    use tokio::io::AsyncWriteExt;
    let srv = Server::start(&[]);
    let tcp = srv.addr("sip_tcp");
    let b = TestPhone::register("127.0.0.92", "10002", "00036bc7b974", srv.addr("sip_udp")).await;
    let mut s = ucm::net::connect_tcp(tcp, Some("127.0.0.91:0".parse().unwrap()), Dscp::CS3)
        .await
        .unwrap();
    let local = s.local_addr().unwrap();
    let mut buf = Vec::new();
    let reg = register(local, tcp, "10001", "00036bc7b973", 3600, 1)
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace("transport=udp", "transport=tcp");
    s.write_all(reg.as_bytes()).await.unwrap();
    match read_stream_msg(&mut s, &mut buf).await {
        SipMessage::Response(r) => assert_eq!(r.status, 200, "{r}"),
        other => panic!("{other}"),
    }
    // Call B over the same connection; B's answer comes back over it.
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.91\r\ns=-\r\nc=IN IP4 127.0.0.91\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\n";
    let invite = format!(
        "INVITE sip:10002@{tcp} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKtcp1\r\nFrom: <sip:10001@{tcp}>;tag=tcpa\r\nTo: <sip:10002@{tcp}>\r\nCall-ID: tcp-call\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:10001@{local};transport=tcp>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    s.write_all(invite.as_bytes()).await.unwrap();
    let inv = b.expect_request("INVITE").await;
    b.answer(&inv, 200, true).await;
    b.expect_request("ACK").await;
    match read_stream_msg(&mut s, &mut buf).await {
        SipMessage::Response(r) => {
            assert_eq!(r.status, 200, "{r}");
            assert!(String::from_utf8_lossy(&r.body).contains("127.0.0.92"));
        }
        other => panic!("{other}"),
    }
    // B hangs up: the BYE reaches A over its TCP connection.
    b.send_text(&b.in_dialog_as_callee(&inv, "BYE", 2)).await;
    b.expect_response(200).await;
    match read_stream_msg(&mut s, &mut buf).await {
        SipMessage::Request(r) => assert_eq!(r.method.as_str(), "BYE"),
        other => panic!("{other}"),
    }
}

const DIGEST: &str = r#"cluster: {id: digest, name: Digest}
nodes: [{name: n1, address: 127.0.0.1}]
partitions: [{name: PT}]
device_pools: [{name: DP, node_group: [n1]}]
phone_security_profiles:
  - {name: Digest Profile, digest_authentication: true}
directory_numbers: [{pattern: "4000", partition: PT}]
devices:
  - {name: SEP000000004000, model: Cisco 8845, device_pool: DP, security_profile: Digest Profile, digest_user: dana, lines: [{dn: "4000", partition: PT}]}
end_users:
  - {userid: dana, last_name: Scully, digest_credentials: "trust-no1"}
"#;

fn md5_hex(s: &str) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(s.as_bytes()))
}

#[tokio::test]
async fn r3_digest_authentication_of_registrations() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::common::write_file(dir.path(), "digest.yaml", DIGEST);
    let srv = Server::start_in(dir, &["--config", cfg.to_str().unwrap()]);
    let sip = srv.addr("sip_udp");
    let sock = ucm::net::bind_udp("127.0.0.95:0".parse().unwrap(), Dscp::CS3).unwrap();
    let local = sock.local_addr().unwrap();
    let first = register(local, sip, "4000", "000000004000", 3600, 1);
    let challenge = exchange(&sock, sip, &first).await;
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let www = challenge
        .lines()
        .find(|l| l.starts_with("WWW-Authenticate:"))
        .expect("a challenge");
    assert!(
        www.contains("realm=\"ccmsipline\"") && www.contains("qop=\"auth\""),
        "{www}"
    );
    let nonce = www
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let answer = |password: &str, cseq: u32| {
        let ha1 = md5_hex(&format!("dana:ccmsipline:{password}"));
        let uri = format!("sip:{sip}");
        let ha2 = md5_hex(&format!("REGISTER:{uri}"));
        let resp = md5_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
        register(local, sip, "4000", "000000004000", 3600, cseq).replace(
            "Content-Length: 0",
            &format!("Authorization: Digest username=\"dana\", realm=\"ccmsipline\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\"\r\nContent-Length: 0"),
        )
    };
    let wrong = exchange(&sock, sip, &answer("i-want-to-believe", 2)).await;
    assert!(
        wrong.starts_with("SIP/2.0 401"),
        "a wrong password is challenged again: {wrong}"
    );
    let ok = exchange(&sock, sip, &answer("trust-no1", 3)).await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    // The export keeps the HA1, never the clear credentials.
    let db = format!("sqlite:{}", srv.data_dir.path().join("ucm.db").display());
    let out = crate::common::ucm()
        .args(["db", "export", "--db", &db])
        .output()
        .unwrap();
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        yaml.contains("digest_ha1:") && !yaml.contains("trust-no1"),
        "{yaml}"
    );
}

#[tokio::test]
async fn r3_busy_trigger_and_maximum_calls_per_line() {
    let srv = routing_server();
    let sip = srv.addr("sip_udp");
    let a = TestPhone::register("127.0.0.101", "2000", "000000002000", sip).await;
    let c = TestPhone::register("127.0.0.102", "2001", "000000002001", sip).await;
    let b = TestPhone::register("127.0.0.103", "2008", "000000002008", sip).await;
    // The first call rings 2008, whose busy trigger is 1.
    a.send_text(&a.invite("2008", "bt-1")).await;
    let inv = b.expect_request("INVITE").await;
    b.answer(&inv, 180, false).await;
    a.expect_response(180).await;
    // A second caller finds the line busy (no Call Forward Busy set): 486, and 2008 does not ring.
    c.send_text(&c.invite("2008", "bt-2")).await;
    c.expect_response(486).await;
    // While 2008 has its one call, it cannot place another: max_calls is 1.
    b.send_text(&b.invite("2000", "bt-3")).await;
    let r = b.expect_response(486).await;
    assert!(r.reason.contains("maximum"), "{}", r.reason);
}

/// Adds an SDP body to an in-dialog request built by `TestPhone::in_dialog`.
fn with_sdp(request: &str, sdp: &str) -> String {
    request.replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_hold_and_resume_are_relayed_and_seen_as_line_state() {
    use ucm::sip::b2bua::LineState;
    let node = InProcessNode::start().await;
    let mut events = node.state.call_control.subscribe();
    let a = TestPhone::register("127.0.0.61", "10001", "00036bc7b973", node.sip).await;
    let b = TestPhone::register("127.0.0.62", "10002", "00036bc7b974", node.sip).await;
    a.send_text(&a.invite("10002", "call-hold")).await;
    let inv = b.expect_request("INVITE").await;
    b.answer(&inv, 200, true).await;
    let ok = a.expect_response(200).await;
    b.expect_request("ACK").await;
    a.send_text(&a.in_dialog(&ok, "ACK", 101)).await;

    // The next event for 10001 that is not `connected` from the call set-up.
    async fn next_for(
        events: &mut tokio::sync::broadcast::Receiver<ucm::sip::b2bua::LineEvent>,
        dn: &str,
        skip: LineState,
    ) -> LineState {
        loop {
            let e = tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .expect("a line event within 5 s")
                .expect("event channel open");
            if e.dn == dn && e.state != skip {
                return e.state;
            }
        }
    }

    // A holds (a=sendonly): B gets the re-INVITE with A's offer, A gets B's answer.
    let hold = a.sdp(20000).replace("a=sendrecv", "a=sendonly");
    a.send_text(&with_sdp(&a.in_dialog(&ok, "INVITE", 102), &hold))
        .await;
    let reinv = b.expect_request("INVITE").await;
    assert!(String::from_utf8_lossy(&reinv.body).contains("a=sendonly"));
    b.answer(&reinv, 200, true).await;
    a.expect_response(200).await;
    b.expect_request("ACK").await;
    a.send_text(&a.in_dialog(&ok, "ACK", 102)).await;
    assert_eq!(
        next_for(&mut events, "10001", LineState::Connected).await,
        LineState::Held,
        "the holding line is held"
    );

    // A resumes (a=sendrecv): the line is connected again.
    a.send_text(&with_sdp(&a.in_dialog(&ok, "INVITE", 103), &a.sdp(20000)))
        .await;
    let reinv = b.expect_request("INVITE").await;
    b.answer(&reinv, 200, true).await;
    a.expect_response(200).await;
    b.expect_request("ACK").await;
    a.send_text(&a.in_dialog(&ok, "ACK", 103)).await;
    assert_eq!(
        next_for(&mut events, "10001", LineState::Held).await,
        LineState::Connected,
        "resuming reconnects the line"
    );
    a.send_text(&a.in_dialog(&ok, "BYE", 104)).await;
    a.expect_response(200).await;
    let bye = b.expect_request("BYE").await;
    b.answer(&bye, 200, false).await;
    node.stop().await;
}

/// The `nonce` of a challenge header line.
fn nonce_of(challenge_line: &str) -> String {
    challenge_line
        .split("nonce=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a nonce")
        .to_string()
}

/// A digest answer for `method` on `uri` (qop=auth) as a header value.
fn digest_answer(user: &str, password: &str, method: &str, uri: &str, nonce: &str) -> String {
    let ha1 = md5_hex(&format!("{user}:ccmsipline:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let resp = md5_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    format!("Digest username=\"{user}\", realm=\"ccmsipline\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\"")
}

#[tokio::test]
async fn r3_digest_authentication_of_invites() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::common::write_file(dir.path(), "digest.yaml", DIGEST);
    let srv = Server::start_in(dir, &["--config", cfg.to_str().unwrap()]);
    let sip = srv.addr("sip_udp");
    let sock = ucm::net::bind_udp("127.0.0.96:0".parse().unwrap(), Dscp::CS3).unwrap();
    let local = sock.local_addr().unwrap();
    // Register with credentials first.
    let challenge = exchange(
        &sock,
        sip,
        &register(local, sip, "4000", "000000004000", 3600, 1),
    )
    .await;
    let www = challenge
        .lines()
        .find(|l| l.starts_with("WWW-Authenticate:"))
        .unwrap();
    let auth = digest_answer(
        "dana",
        "trust-no1",
        "REGISTER",
        &format!("sip:{sip}"),
        &nonce_of(www),
    );
    let ok = exchange(
        &sock,
        sip,
        &register(local, sip, "4000", "000000004000", 3600, 2).replace(
            "Content-Length: 0",
            &format!("Authorization: {auth}\r\nContent-Length: 0"),
        ),
    )
    .await;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");

    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.96\r\ns=-\r\nc=IN IP4 127.0.0.96\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\n";
    let invite = |cseq: u32, extra: &str| {
        format!(
            "INVITE sip:4000@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKinv{cseq}\r\nFrom: <sip:4000@{sip}>;tag=a{cseq}\r\nTo: <sip:4000@{sip}>\r\nCall-ID: digest-invite-{cseq}\r\nCSeq: {cseq} INVITE\r\nMax-Forwards: 70\r\nContact: <sip:4000@{local}>\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    };
    // No credentials: 407 with a challenge.
    let r = exchange(&sock, sip, &invite(1, "")).await;
    assert!(r.starts_with("SIP/2.0 407"), "{r}");
    let pa = r
        .lines()
        .find(|l| l.starts_with("Proxy-Authenticate:"))
        .expect("a challenge");
    let nonce = nonce_of(pa);
    let uri = format!("sip:4000@{sip}");
    // A wrong password is challenged again; the right one goes through (the call is offered
    // to the line, which is this very socket).
    let wrong = digest_answer("dana", "i-want-to-believe", "INVITE", &uri, &nonce);
    let r = exchange(
        &sock,
        sip,
        &invite(2, &format!("Proxy-Authorization: {wrong}\r\n")),
    )
    .await;
    assert!(r.starts_with("SIP/2.0 407"), "{r}");
    let right = digest_answer("dana", "trust-no1", "INVITE", &uri, &nonce);
    sock.send_to(
        invite(3, &format!("Proxy-Authorization: {right}\r\n")).as_bytes(),
        sip,
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 65536];
    // The answer to the third INVITE (the earlier 407s are retransmitted until ACKed): the
    // call goes through digest and on to routing (the line calling itself is busy) or is
    // offered to the line, which is this very socket.
    let outcome = loop {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        let m = String::from_utf8_lossy(&buf[..n]).to_string();
        if m.starts_with("INVITE ")
            || (m.contains("Call-ID: digest-invite-3") && !m.starts_with("SIP/2.0 100"))
        {
            break m;
        }
    };
    assert!(
        !outcome.starts_with("SIP/2.0 407") && !outcome.starts_with("SIP/2.0 403"),
        "the right password is accepted: {outcome}"
    );
}

// ---- Record-Route through a real proxy (issue 15) ----

/// Kills a background process when the test ends, whatever happens.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kamailio in its own process group: its main process forks workers, which a kill of the
/// main process alone would leave running (holding the port). SIGTERM lets it stop them; the
/// group is then killed whatever is left.
struct Kamailio(std::process::Child);
impl Drop for Kamailio {
    fn drop(&mut self) {
        let pgid = self.0.id() as libc::pid_t;
        // SAFETY: signalling the process group of a child this test started.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        for _ in 0..50 {
            if self.0.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

/// A minimal record-routing Kamailio: initial INVITEs are record-routed and sent to ucm, or,
/// when ucm sends them, to the SIPp uas; in-dialog requests go only where their Route says
/// (an ACK or BYE without the route set is dropped or answered 404, as a real proxy does).
fn kamailio_cfg(listen: &str, ucm: SocketAddr, uas: &str) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=1
listen=udp:{listen}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
# No ftag in Record-Route: SIPp's [routes] garbles a route with parameters after lr.
modparam("rr", "append_fromtag", 0)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    t_check_trans();
    if (is_method("INVITE")) {{ record_route(); }}
    if ($si == "{ucm_ip}") {{ $ru = "sip:" + $rU + "@{uas}"; }} else {{ $ru = "sip:" + $rU + "@{ucm}"; }}
    t_relay();
}}
"#,
        ucm_ip = ucm.ip(),
    )
}

/// SIPp's caller: follows the route set of the 200 (`rrs`) for its ACK and BYE.
const RR_UAC: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="record-routed uac">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:sipp@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
[routes]
Max-Forwards: 70
Content-Length: 0

]]></send>
  <pause milliseconds="500"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
[routes]
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"#;

/// SIPp's callee: copies Record-Route into its answers and expects the ACK and BYE through
/// the proxy.
const RR_UAS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="record-routed uas">
  <recv request="INVITE" rrs="true"/>
  <send><![CDATA[
SIP/2.0 180 Ringing
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

]]></send>
  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
[last_Record-Route:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
]]></send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"#;

/// The caller side when the callee hangs up: it answers the BYE that ucm relays to it.
fn rr_uac_callee_hangs_up() -> String {
    let i = RR_UAC.find("  <pause milliseconds").unwrap();
    format!(
        "{}{}",
        &RR_UAC[..i],
        r#"  <recv request="BYE" timeout="20000"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"#
    )
}

/// The callee side that hangs up, its BYE along its route set (as received, RFC 3261 12.1.1)
/// to ucm's Contact, `UCM_TARGET` (SIPp's `[next_url]` mangles a Contact with parameters).
fn rr_uas_hangs_up() -> String {
    let i = RR_UAS.find("  <recv request=\"ACK\"/>").unwrap();
    format!(
        "{}{}",
        &RR_UAS[..i],
        r#"  <recv request="ACK">
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="remote_from"/>
      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="local_to"/>
    </action>
  </recv>
  <pause milliseconds="500"/>
  <send retrans="500"><![CDATA[
BYE sip:UCM_TARGET SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: [$local_to]
To: [$remote_from]
Call-ID: [call_id]
CSeq: 2 BYE
[routes]
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
</scenario>
"#
    )
}

/// A gateway behind a record-routing Kamailio calls in through it, and ucm calls out through
/// it: SIPp's caller sends INVITE, ACK and BYE through the proxy to ucm, and ucm's INVITE, ACK
/// and relayed BYE to SIPp's callee go through the proxy too. Both SIPp sides complete the
/// call only if every in-dialog request followed the route set.
#[test]
fn r15_kamailio_record_routes_inbound_and_outbound_calls() {
    record_routed_call(
        ("127.0.215.1", "127.0.215.2", "127.0.215.3"),
        RR_UAC,
        RR_UAS,
    );
}

/// The same with the callee hanging up: its BYE comes in through the proxy, and ucm's BYE to
/// the caller follows the caller's route set (the Record-Route of its INVITE) back through it.
/// Coverage rather than a regression test: main already sent that BYE along the route set.
#[test]
fn kamailio_callee_hangs_up_and_ucm_byes_the_caller_through_the_proxy() {
    record_routed_call(
        ("127.0.215.11", "127.0.215.12", "127.0.215.13"),
        &rr_uac_callee_hangs_up(),
        &rr_uas_hangs_up(),
    );
}

/// One call from SIPp (`uac_ip`) through Kamailio (`proxy`) to ucm, out again through Kamailio
/// to SIPp (`uas_ip`), with the given scenarios; both SIPp sides must complete it.
fn record_routed_call((proxy, uac_ip, uas_ip): (&str, &str, &str), uac_xml: &str, uas_xml: &str) {
    if !crate::sipp::sipp_available() {
        crate::common::skip_or_fail("sipp is not installed (Debian package sip-tester)");
        return;
    }
    if std::process::Command::new("kamailio")
        .arg("-v")
        .output()
        .is_err()
    {
        crate::common::skip_or_fail("kamailio is not installed (Debian package kamailio)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::common::write_file(
        dir.path(),
        "rr.yaml",
        &format!(
            r#"cluster: {{id: rr, name: Record-Route}}
nodes: [{{name: n1, address: 127.0.0.1}}]
partitions: [{{name: PT}}]
calling_search_spaces: [{{name: CSS, partitions: [PT]}}]
device_pools: [{{name: DP, node_group: [n1]}}]
sip_trunks:
  - {{name: GW, destinations: ["{proxy}:5060"], device_pool: DP, css: CSS}}
route_patterns:
  - {{pattern: 4XXX, partition: PT, sip_trunk: GW}}
"#
        ),
    );
    let srv = Server::start_in(dir, &["--config", cfg.to_str().unwrap()]);
    let sip = srv.addr("sip_udp");
    let work = tempfile::tempdir().unwrap();
    let kcfg = crate::common::write_file(
        work.path(),
        "kamailio.cfg",
        &kamailio_cfg(&format!("{proxy}:5060"), sip, &format!("{uas_ip}:5060")),
    );
    use std::os::unix::process::CommandExt;
    let _kamailio = Kamailio(
        std::process::Command::new("kamailio")
            .args(["-DD", "-E", "-f"])
            .arg(&kcfg)
            .arg("-Y")
            .arg(work.path())
            .arg("-w")
            .arg(work.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(work.path().join("kamailio.log")).unwrap())
            .process_group(0)
            .spawn()
            .expect("start kamailio"),
    );
    let uac = crate::common::write_file(work.path(), "uac.xml", uac_xml);
    let uas = crate::common::write_file(
        work.path(),
        "uas.xml",
        &uas_xml.replace("UCM_TARGET", &format!("{sip};transport=udp")),
    );
    let mut uas_proc = Child(
        std::process::Command::new("sipp")
            .args(["-sf", uas.to_str().unwrap(), "-i", uas_ip, "-p", "5060"])
            .args(["-m", "1", "-nostdin", "-timeout", "30s", "-trace_err"])
            .current_dir(work.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start sipp uas"),
    );
    // Kamailio answers an OPTIONS once it listens (bounded wait).
    let probe = std::net::UdpSocket::bind((uac_ip, 0)).unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut up = false;
    for i in 0..50 {
        let msg = format!(
            "OPTIONS sip:{proxy}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {}:{};branch=z9hG4bKprobe{i}\r\nFrom: <sip:probe@{uac_ip}>;tag=p\r\nTo: <sip:{proxy}>;tag=x\r\nCall-ID: probe{i}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            uac_ip,
            probe.local_addr().unwrap().port()
        );
        probe.send_to(msg.as_bytes(), (proxy, 5060)).unwrap();
        let mut buf = [0u8; 2048];
        if probe.recv_from(&mut buf).is_ok() {
            up = true;
            break;
        }
    }
    assert!(
        up,
        "kamailio did not start: {}",
        std::fs::read_to_string(work.path().join("kamailio.log")).unwrap_or_default()
    );
    let out = std::process::Command::new("sipp")
        .args(["-sf", uac.to_str().unwrap(), "-s", "4000"])
        .arg(format!("{proxy}:5060"))
        .args(["-i", uac_ip, "-p", "5060", "-m", "1", "-nostdin"])
        .args(["-timeout", "30s", "-trace_err"])
        .current_dir(work.path())
        .output()
        .expect("run sipp uac");
    let text = String::from_utf8_lossy(&out.stdout);
    let errors = std::fs::read_dir(work.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("errors"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        out.status.code(),
        Some(0),
        "the call through the proxy failed:\n{}\nSIPp errors:\n{errors}\nucm logs:\n{}\nKamailio:\n{}",
        text.lines().rev().take(30).collect::<Vec<_>>().join("\n"),
        srv.logs(),
        std::fs::read_to_string(work.path().join("kamailio.log")).unwrap_or_default()
    );
    // The callee's side completed too (SIPp exits 0): its ACK and BYE came through the proxy.
    let mut status = None;
    for _ in 0..100 {
        status = uas_proc.0.try_wait().unwrap();
        if status.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "SIPp's callee did not complete its call through the proxy: {errors}"
    );
}

/// A third-party call the user's phone does not answer in time (issue 15): make_call fails
/// with 408, the phone's ringing is cancelled, and when the phone answers anyway (its 200
/// crossing the CANCEL) the node ACKs and hangs up that answer and never calls the destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r15_timed_out_third_party_call_releases_a_late_answer() {
    let node = InProcessNode::start().await;
    let a = TestPhone::register("127.0.0.45", "10001", "00036bc7b973", node.sip).await;
    let b = TestPhone::register("127.0.0.46", "10002", "00036bc7b974", node.sip).await;
    let cc = node.state.clone();
    let placing = tokio::spawn(async move {
        cc.call_control
            .make_call("SEP00036BC7B973", "10001", "10002", Duration::from_secs(1))
            .await
    });
    let inv_a = a.expect_request("INVITE").await;
    a.answer(&inv_a, 180, false).await;
    let e = placing.await.unwrap().unwrap_err();
    assert_eq!(e.status, 408, "{e}");
    let cancel = a.expect_request("CANCEL").await;
    // The phone answered just before the CANCEL arrived.
    a.answer(&cancel, 200, false).await;
    a.answer(&inv_a, 200, true).await;
    a.expect_request("ACK").await;
    let bye = a.expect_request("BYE").await;
    a.answer(&bye, 200, false).await;
    assert!(
        !node
            .state
            .call_control
            .busy_devices()
            .await
            .unwrap()
            .contains("SEP00036BC7B973"),
        "no call is left on the user's phone"
    );
    // Nothing ever reached the destination.
    let mut buf = [0u8; 2048];
    let heard = tokio::time::timeout(Duration::from_millis(300), b.sock.recv_from(&mut buf)).await;
    assert!(heard.is_err(), "the destination was called");
    node.stop().await;
}

/// A service that stops waiting for make_call (its request ended: a client gone, a session
/// over) abandons the call: the ringing phone is cancelled at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r15_abandoned_make_call_cancels_the_ringing_phone() {
    let node = InProcessNode::start().await;
    let a = TestPhone::register("127.0.0.47", "10001", "00036bc7b973", node.sip).await;
    let cc = node.state.clone();
    let placing = tokio::spawn(async move {
        cc.call_control
            .make_call("SEP00036BC7B973", "10001", "10002", Duration::from_secs(60))
            .await
    });
    let inv_a = a.expect_request("INVITE").await;
    a.answer(&inv_a, 180, false).await;
    // Whether or not the 180 has reached call control yet, the phone gets its CANCEL (RFC
    // 3261 9.1: after a provisional).
    placing.abort();
    let cancel = a.expect_request("CANCEL").await;
    a.answer(&cancel, 200, false).await;
    a.answer(&inv_a, 487, false).await;
    node.stop().await;
}
