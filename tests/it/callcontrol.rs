//! Call control over the wire: registration (issue 3).

use std::net::SocketAddr;
use std::time::Duration;

use ucm::net::Dscp;

use crate::common::Server;

fn register(
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

async fn exchange(sock: &tokio::net::UdpSocket, target: SocketAddr, msg: &str) -> String {
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
    let logs = srv.logs();
    assert!(
        logs.contains("REGISTER refused"),
        "a log line says why: {logs}"
    );
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
