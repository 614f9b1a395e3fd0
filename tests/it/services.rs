//! Phone services endpoints (issue 5): the authentication URL phones use for pushes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::{http_get, split_http, Server};

fn post_form(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let (st, _, b) = split_http(&raw);
    (st, b)
}

#[test]
fn r5_authentication_url_answers_exactly() {
    let srv = Server::start(&[]);
    let http = srv.addr("http");
    let get = |q: &str| {
        let (st, _, body) = http_get(http, &format!("/ccmcip/authenticate.jsp?{q}"));
        assert_eq!(st, 200);
        String::from_utf8(body).unwrap()
    };
    assert_eq!(
        get("UserID=jsmith&Password=cisco&devicename=SEP00036BC7B973"),
        "AUTHORIZED"
    );
    assert_eq!(
        get("UserID=jsmith&Password=wrong&devicename=SEP00036BC7B973"),
        "UN-AUTHORIZED"
    );
    // Right password, but not a device associated with the user.
    assert_eq!(
        get("UserID=jsmith&Password=cisco&devicename=SEP00036BC7B974"),
        "UN-AUTHORIZED"
    );
    assert_eq!(
        get("UserID=nobody&Password=cisco&devicename=SEP00036BC7B973"),
        "UN-AUTHORIZED"
    );
    assert_eq!(get("UserID=jsmith&Password=cisco"), "ERROR");
    let (st, body) = post_form(
        http,
        "/ccmcip/authenticate.jsp",
        "UserID=jsmith&Password=cisco&devicename=SEP00036BC7B973",
    );
    assert_eq!((st, body.as_slice()), (200, b"AUTHORIZED".as_slice()));
}

#[test]
fn r5_wrong_passwords_lock_the_user_out_cluster_wide() {
    // A definition with a lockout after 3 failures, for 1 minute.
    let dir = tempfile::tempdir().unwrap();
    let text = ucm::config::DEMO_YAML.replace(
        "service_parameters:\n",
        "service_parameters:\n  phone_services:\n    auth_lockout_threshold: 3\n    auth_lockout_minutes: 1\n",
    );
    let def = crate::common::write_file(dir.path(), "lockout.yaml", &text);
    let srv = Server::start(&["--config", def.to_str().unwrap()]);
    let http = srv.addr("http");
    let auth_on = |user: &str, pw: &str, device: &str| {
        let q = format!("/ccmcip/authenticate.jsp?UserID={user}&Password={pw}&devicename={device}");
        let (st, _, body) = http_get(http, &q);
        assert_eq!(st, 200);
        String::from_utf8(body).unwrap()
    };
    let auth = |user: &str, pw: &str| auth_on(user, pw, "SEP00036BC7B973");
    // Two failures, then a success: the count starts again.
    assert_eq!(auth("jsmith", "bad1"), "UN-AUTHORIZED");
    assert_eq!(auth("jsmith", "bad2"), "UN-AUTHORIZED");
    assert_eq!(auth("jsmith", "cisco"), "AUTHORIZED");
    // Three failures in a row lock jsmith out: the right password is refused too.
    for pw in ["bad3", "bad4", "bad5"] {
        assert_eq!(auth("jsmith", pw), "UN-AUTHORIZED");
    }
    assert_eq!(auth("jsmith", "cisco"), "UN-AUTHORIZED", "locked out");
    // Other users are not affected.
    assert_eq!(auth_on("sadams", "cisco", "SEP00036BC7B975"), "AUTHORIZED");
    srv.wait_for_log("locked out");
}

/// A TFTP read request as a phone sends it, with options.
fn rrq(file: &str, opts: &[(&str, &str)]) -> Vec<u8> {
    let mut p = vec![0, 1];
    for f in [file, "octet"]
        .into_iter()
        .chain(opts.iter().flat_map(|(k, v)| [*k, *v]))
    {
        p.extend_from_slice(f.as_bytes());
        p.push(0);
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_configuration_files_over_tftp_on_udp() {
    use ucm::net::Dscp;
    // Configuration traffic marked AF21 in this cluster, to see the marking on the wire.
    let dir = tempfile::tempdir().unwrap();
    let text = ucm::config::DEMO_YAML.replace("qos:\n", "qos:\n  phone_configuration: af21\n");
    let def = crate::common::write_file(dir.path(), "tftp.yaml", &text);
    let srv = Server::start(&["--config", def.to_str().unwrap()]);
    let tftp = srv.addr("tftp");
    let (st, _, over_http) = http_get(srv.addr("tftp_http"), "/SEP00036BC7B973.cnf.xml");
    assert_eq!(st, 200);

    // curl is a real TFTP client: plain, with a negotiated block size, and for a missing file.
    let fetch = |extra: &[&str], file: &str| {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10"])
            .args(extra)
            .arg(format!("tftp://{tftp}/{file}"))
            .output()
            .expect("curl runs")
    };
    for extra in [&[][..], &["--tftp-blksize", "1024"][..]] {
        let out = fetch(extra, "SEP00036BC7B973.cnf.xml");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.stdout, over_http,
            "same file over TFTP ({extra:?}) as over HTTP"
        );
    }
    // curl's exit code 68 is "TFTP: file not found" (the error packet's code 1).
    let out = fetch(&[], "SEP000000000000.cnf.xml");
    assert_eq!(
        out.status.code(),
        Some(68),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // By hand: the OACK and data come from a new transfer ID, marked AF21; a write is refused.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ucm::net::enable_recv_tos(&sock).unwrap();
    sock.send_to(
        &rrq(
            "ConfigFileCacheList.txt",
            &[("tsize", "0"), ("blksize", "1400")],
        ),
        tftp,
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 2048];
    let (n, from, dscp) = tokio::time::timeout(
        Duration::from_secs(5),
        ucm::net::recv_from_with_dscp(&sock, &mut buf),
    )
    .await
    .unwrap()
    .unwrap();
    assert_ne!(
        from, tftp,
        "a transfer answers from its own port (RFC 1350 TID)"
    );
    assert_eq!(&buf[..2], &[0, 6], "OACK");
    let oack = String::from_utf8_lossy(&buf[2..n]).to_string();
    assert!(
        oack.starts_with("blksize\u{0}1400\u{0}tsize\u{0}"),
        "{oack:?}"
    );
    assert_eq!(dscp, Some(Dscp::AF21));
    sock.send_to(&[0, 4, 0, 0], from).await.unwrap();
    let (n, _, dscp) = ucm::net::recv_from_with_dscp(&sock, &mut buf)
        .await
        .unwrap();
    assert_eq!(&buf[..4], &[0, 3, 0, 1]);
    assert!(n < 1404, "a short first block ends the file");
    assert_eq!(dscp, Some(Dscp::AF21));
    sock.send_to(&[0, 4, 0, 1], from).await.unwrap();

    let mut wrq = rrq("evil.cnf.xml", &[]);
    wrq[1] = 2;
    sock.send_to(&wrq, tftp).await.unwrap();
    let (n, _, _) = ucm::net::recv_from_with_dscp(&sock, &mut buf)
        .await
        .unwrap();
    assert_eq!(&buf[..4], &[0, 5, 0, 2], "access violation");
    assert!(String::from_utf8_lossy(&buf[4..n]).contains("read-only"));
}
