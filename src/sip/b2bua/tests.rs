use super::*;
use crate::sip::message::parse_datagram;

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

fn invite() -> SipMessage {
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.50\r\ns=-\r\nc=IN IP4 127.0.0.50\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let text = format!(
        "INVITE sip:91234@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.50:5060;branch=z9hG4bKin1\r\nFrom: <sip:5550100@127.0.0.50>;tag=a1\r\nTo: <sip:91234@127.0.0.1>\r\nCall-ID: hunt-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:5550100@127.0.0.50:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    parse_datagram(text.as_bytes()).unwrap()
}

fn invites(out: &[Out]) -> Vec<(Peer, Request)> {
    out.iter()
        .filter_map(|o| match &o.msg {
            SipMessage::Request(r) if r.method == Method::Invite => Some((o.to, r.clone())),
            _ => None,
        })
        .collect()
}

fn final_to_caller(out: &[Out]) -> Option<Response> {
    out.iter().find_map(|o| match &o.msg {
        SipMessage::Response(r) if r.status >= 200 && o.to.addr.port() == 5060 => Some(r.clone()),
        _ => None,
    })
}

/// Destinations are tried in order, every address of a name counts, a name that does not
/// resolve is skipped, and a transport failure or a 5xx moves on at once.
#[tokio::test]
async fn r3_trunk_hunt_tries_every_address_in_order() {
    let def = crate::config::parse_str(TRUNKS, "trunks.yaml").unwrap();
    let cluster = Cluster::new(def);
    let store = crate::store::Store::open("sqlite::memory:").await.unwrap();
    let (registrar, _w) = Registrar::load(store, "n1").await.unwrap();
    let mut core = B2bua::new("127.0.0.1:5060".into(), 7);
    let mut table = Resolved::new();
    table.insert(
        "nonexistent.invalid:5060".into(),
        Err("cannot resolve nonexistent.invalid".into()),
    );
    let gw = ["127.0.0.7:5070", "127.0.0.8:5070"].map(|a| a.parse::<SocketAddr>().unwrap());
    table.insert("gw.test:5070".into(), Ok(gw.to_vec()));
    core.set_resolved(Arc::new(table));
    let caller = Peer {
        addr: "127.0.0.50:5060".parse().unwrap(),
        transport: Transport::Udp,
    };
    let now = Instant::now();
    let out = core.on_message(&cluster, &registrar, invite(), caller, now);
    let sent = invites(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_eq!(sent[0].0.addr, gw[0]);
    assert_eq!(sent[0].1.uri, "sip:91234@gw.test:5070");
    // The first address cannot be reached: the second is tried at once.
    let failed = SipMessage::Request(sent[0].1.clone());
    let out = core.on_transport_failure(&cluster, &registrar, &failed, "refused", now);
    let sent = invites(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_eq!(sent[0].0.addr, gw[1]);
    // It answers 503: the next trunk (over TLS) is tried.
    let resp = sent[0]
        .1
        .make_response(503, "Service Unavailable", Some("b1"));
    let peer = sent[0].0;
    let out = core.on_message(&cluster, &registrar, SipMessage::Response(resp), peer, now);
    let sent = invites(&out);
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_eq!(sent[0].0.addr, "127.0.0.9:5071".parse().unwrap());
    assert_eq!(sent[0].0.transport, Transport::Tls);
    assert_eq!(sent[0].1.uri, "sip:91234@127.0.0.9:5071");
    // Its TLS handshake fails and nothing is left: the caller hears 503 and why.
    let failed = SipMessage::Request(sent[0].1.clone());
    let out = core.on_transport_failure(
        &cluster,
        &registrar,
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
