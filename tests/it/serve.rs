//! `ucm serve` end to end: ready line, health, HTTPS with the node certificate, SIP OPTIONS
//! over UDP, TCP and TLS with CS3 marking, configuration files, clean shutdown (issue 2).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use ucm::net::capture::{CaptureFilter, LoopbackCapture, Transport};
use ucm::net::Dscp;

use crate::common::{http_get, is_root, skip_or_fail, split_http, Server};

fn options(transport: &str, local: SocketAddr, target: SocketAddr, branch: &str) -> String {
    format!(
        "OPTIONS sip:{target} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK{branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:monitor@{local}>;tag=mon1\r\n\
         To: <sip:{target}>\r\n\
         Call-ID: {branch}@test\r\n\
         CSeq: 1 OPTIONS\r\n\
         Contact: <sip:monitor@{local}>\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn read_sip_response(s: &mut impl Read) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).expect("read SIP response");
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).to_string()
}

#[test]
fn r2_serve_on_port_zero_prints_every_address() {
    let mut srv = Server::start(&[]);
    for key in [
        "http",
        "https",
        "tftp_http",
        "sip_udp",
        "sip_tcp",
        "sip_tls",
    ] {
        let a = srv.addr(key);
        assert_ne!(a.port(), 0, "{key} has a real port");
        assert_eq!(a.ip().to_string(), "127.0.0.1");
    }
    assert_eq!(srv.ready["event"], "ready");
    assert_eq!(srv.ready["cluster"], "demo");
    let (status, _, body) = http_get(srv.addr("http"), "/healthz");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["cluster"], "demo");
    let (status, head, body) = http_get(srv.addr("http"), "/metrics");
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("text/plain"));
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("ucm_http_requests_total{listener=\"http\"}"),
        "{text}"
    );
    assert!(text.contains("ucm_configured_devices 61"), "{text}");
    let st = srv.terminate();
    assert_eq!(
        st.code(),
        Some(0),
        "exit status on SIGTERM; logs:\n{}",
        srv.logs()
    );
}

#[test]
fn r2_https_with_the_node_certificate() {
    let srv = Server::start(&[]);
    let pem = std::fs::read(srv.data_dir.path().join("node-cert.pem"))
        .expect("node certificate kept in the data directory");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(ucm::net::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let sock = TcpStream::connect(srv.addr("https")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    // rustls reports the peer's close without close_notify as an error after the data.
    let _ = tls.read_to_end(&mut raw);
    let (status, _, body) = split_http(&raw);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("\"ok\""));
}

#[tokio::test]
async fn r2_sip_options_over_udp_is_answered_with_cs3() {
    let srv = Server::start(&[]);
    let target = srv.addr("sip_udp");
    let sock = ucm::net::bind_udp("127.0.0.1:0".parse().unwrap(), Dscp::CS0).unwrap();
    ucm::net::enable_recv_tos(&sock).unwrap();
    let local = sock.local_addr().unwrap();
    sock.send_to(options("UDP", local, target, "udp1").as_bytes(), target)
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from, dscp) = tokio::time::timeout(
        Duration::from_secs(5),
        ucm::net::recv_from_with_dscp(&sock, &mut buf),
    )
    .await
    .expect("a reply within 5 s")
    .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(from, target);
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
    assert!(text.contains("Allow: "), "{text}");
    assert!(text.contains(";tag="), "{text}");
    assert!(text.contains(&format!("rport={}", local.port())), "{text}");
    assert_eq!(dscp, Some(Dscp::CS3), "the reply is marked CS3 (24)");
}

#[test]
fn r2_sip_options_over_tcp_is_answered_with_cs3() {
    if !is_root() {
        skip_or_fail("capturing on lo to read TCP DSCP needs root");
        return;
    }
    let srv = Server::start(&[]);
    let target = srv.addr("sip_tcp");
    let cap =
        LoopbackCapture::start(CaptureFilter::ports(&[target.port()])).expect("capture on lo");
    let mut s = TcpStream::connect(target).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let local = s.local_addr().unwrap();
    s.write_all(options("TCP", local, target, "tcp1").as_bytes())
        .unwrap();
    let text = read_sip_response(&mut s);
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
    drop(s);
    std::thread::sleep(Duration::from_millis(100));
    let packets = cap.stop();
    let from_server: Vec<_> = packets
        .iter()
        .filter(|p| p.proto == Transport::Tcp && p.src == target)
        .collect();
    assert!(
        from_server.iter().any(|p| p.is_syn_ack()),
        "SYN-ACK captured"
    );
    assert!(
        from_server
            .iter()
            .any(|p| String::from_utf8_lossy(&p.payload).starts_with("SIP/2.0 200")),
        "response captured"
    );
    for p in &from_server {
        assert_eq!(
            p.dscp,
            Dscp::CS3,
            "every segment from the SIP listener, handshake included, is CS3: {p:?}"
        );
    }
}

#[test]
fn r2_sip_options_over_tls() {
    let srv = Server::start(&[]);
    let pem = std::fs::read(srv.data_dir.path().join("node-cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(ucm::net::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let target = srv.addr("sip_tls");
    let conn = rustls::ClientConnection::new(
        Arc::new(cfg),
        rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
    )
    .unwrap();
    let sock = TcpStream::connect(target).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let local = sock.local_addr().unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(options("TLS", local, target, "tls1").as_bytes())
        .unwrap();
    let text = read_sip_response(&mut tls);
    assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
}

#[tokio::test]
async fn r2_malformed_sip_gets_400_and_the_node_survives() {
    let srv = Server::start(&[]);
    let target = srv.addr("sip_udp");
    let sock = ucm::net::bind_udp("127.0.0.1:0".parse().unwrap(), Dscp::CS0).unwrap();
    let local = sock.local_addr().unwrap();
    // Content-Length larger than the body: 400, with the reason named.
    let bad =
        options("UDP", local, target, "bad1").replace("Content-Length: 0", "Content-Length: 50");
    sock.send_to(bad.as_bytes(), target).await.unwrap();
    // Garbage: dropped silently.
    sock.send_to(b"\x00\x01garbage\xff", target).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("400 within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 400 "), "{text}");
    assert!(text.contains("Call-ID: bad1@test"), "{text}");
    // Still answering.
    sock.send_to(options("UDP", local, target, "ok2").as_bytes(), target)
        .await
        .unwrap();
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("reply within 5 s")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 200 OK"));
}

#[test]
fn r2_phone_configuration_file_over_tftp_http() {
    let srv = Server::start(&[]);
    let (status, head, body) = http_get(srv.addr("tftp_http"), "/SEP00036BC7B973.cnf.xml");
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("text/xml"));
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        "{text}"
    );
    assert!(text.contains("<name>10001</name>"), "{text}");
    assert!(
        text.contains("<dscpForAudio>184</dscpForAudio>"),
        "EF as a ToS byte: {text}"
    );
    let http = srv.addr("http");
    assert!(
        text.contains(&format!(
            "<authenticationURL>http://{http}/ccmcip/authenticate.jsp</authenticationURL>"
        )),
        "{text}"
    );
    let (status, _, _) = http_get(srv.addr("tftp_http"), "/SEP0000DEADBEEF.cnf.xml");
    assert_eq!(status, 404);
    let (status, _, _) = http_get(srv.addr("tftp_http"), "/..%2F..%2Fetc%2Fpasswd");
    assert_eq!(status, 404);
}

#[test]
fn r2_restart_with_the_same_definition_skips_the_import() {
    let srv = Server::start(&[]);
    let mut srv = srv;
    assert_eq!(srv.terminate().code(), Some(0));
    let logs = srv.logs();
    assert!(logs.contains("definition imported"), "{logs}");
    let dir = std::mem::replace(&mut srv.data_dir, tempfile::tempdir().unwrap());
    drop(srv);
    let mut again = Server::start_in(dir, &[]);
    assert_eq!(again.terminate().code(), Some(0));
    let logs = again.logs();
    assert!(logs.contains("definition unchanged"), "{logs}");
}

#[test]
fn r2_port_in_use_is_a_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = crate::common::ucm()
        .args([
            "serve",
            "--bind",
            "127.0.0.1",
            "--http-port",
            &port,
            "--https-port",
            "0",
            "--tftp-http-port",
            "0",
            "--tftp-port",
            "0",
            "--sip-port",
            "0",
            "--sips-port",
            "0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot listen on HTTP") && err.contains(&port),
        "{err}"
    );
}

/// The demo cluster with its one node replaced by `nodes` (YAML list items).
fn demo_with_nodes(dir: &std::path::Path, nodes: &str) -> std::path::PathBuf {
    let demo = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clusters/demo.yaml"),
    )
    .unwrap();
    let start = demo.find("nodes:\n").unwrap();
    let end = start + demo[start..].find("\n\n").unwrap();
    let text = format!("{}nodes:\n{nodes}{}", &demo[..start], &demo[end..]);
    crate::common::write_file(dir, "cluster.yaml", &text)
}

#[test]
fn r14_a_node_serves_exactly_the_services_its_definition_activates() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_with_nodes(
        dir.path(),
        "  - name: ucm-pub\n    address: 127.0.0.1\n    services: [phone-services]\n\
         \x20 - name: ucm-sub\n    address: 127.0.0.2\n    services: [call-processing, tftp, webdialer, extension-mobility]\n",
    );
    let mut srv = Server::start(&["--config", cfg.to_str().unwrap(), "--node", "ucm-pub"]);
    // No call processing and no TFTP here: the ready line names neither's listeners.
    for key in ["sip_udp", "sip_tcp", "sip_tls", "tftp_http", "tftp"] {
        assert!(srv.ready.get(key).is_none(), "{key} in {}", srv.ready);
    }
    let http = srv.addr("http");
    // What it runs answers.
    let (status, _, body) = http_get(http, "/ccmcip/getservicesmenu.jsp?name=SEP00036BC7B973");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // What another node runs: a 404 that says where it runs.
    let (status, _, body) = http_get(http, "/webdialer/wsdl/wd70.wsdl");
    assert_eq!(status, 404);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "WebDialer is not active on node ucm-pub (it runs on ucm-sub)\n"
    );
    let (status, _, body) = http_get(http, "/emservice/EMServiceServlet?xml=x");
    assert_eq!(status, 404);
    assert!(
        String::from_utf8_lossy(&body)
            .starts_with("Extension Mobility is not active on node ucm-pub"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // What no node runs.
    let (status, _, body) = http_get(http, "/ucm/paging/groups");
    assert_eq!(status, 404);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "The Paging Server is not active on node ucm-pub (no node of the cluster runs it)\n"
    );
    let (status, _, body) = http_get(http, "/webdialer/Redirector");
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).starts_with("The WebDialer Redirector is not active"));
    let (status, _, body) = http_get(http, "/emapp/EMAppServlet?device=SEP00036BC7B973");
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body)
        .starts_with("The Extension Mobility application is not active"));
    assert_eq!(srv.terminate().code(), Some(0), "{}", srv.logs());

    // The other node: WebDialer, EM, SIP and TFTP, but no services menu.
    let mut srv = Server::start(&["--config", cfg.to_str().unwrap(), "--node", "ucm-sub"]);
    for key in ["sip_udp", "sip_tcp", "sip_tls", "tftp_http"] {
        assert_ne!(srv.addr(key).port(), 0, "{key}");
    }
    let http = srv.addr("http");
    let (status, _, _) = http_get(http, "/webdialer/wsdl/wd70.wsdl");
    assert_eq!(status, 200);
    let (status, _, body) = http_get(http, "/emservice/EMServiceServlet?xml=x");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = http_get(http, "/ccmcip/getservicesmenu.jsp?name=SEP00036BC7B973");
    assert_eq!(status, 404);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "IP Phone Services is not active on node ucm-sub (it runs on ucm-pub)\n"
    );
    let (status, _, _) = http_get(srv.addr("tftp_http"), "/SEP00036BC7B973.cnf.xml");
    assert_eq!(status, 200);
    assert_eq!(srv.terminate().code(), Some(0), "{}", srv.logs());
}

#[test]
fn r14_the_em_application_hands_the_phone_to_a_node_whose_em_service_is_active() {
    // The EM node first, to learn its HTTP port.
    let dir = tempfile::tempdir().unwrap();
    let nodes = |em_port: u16| {
        format!(
            "  - name: ucm-pub\n    address: 127.0.0.1\n    services: [phone-services, em-application]\n\
             \x20 - name: ucm-sub\n    address: 127.0.0.1\n    services: [extension-mobility, em-application]\n\
             \x20   ports: {{http: {em_port}}}\n"
        )
    };
    let cfg = demo_with_nodes(dir.path(), &nodes(0));
    let mut sub = Server::start(&["--config", cfg.to_str().unwrap(), "--node", "ucm-sub"]);
    let em_http = sub.addr("http");
    let cfg = demo_with_nodes(dir.path(), &nodes(em_http.port()));
    let mut publ = Server::start(&["--config", cfg.to_str().unwrap(), "--node", "ucm-pub"]);

    // The phone asks the node it knows; that node sends it, query unchanged, to the EM node.
    let query = "device=SEP00036BC7B973&loginType=DN";
    let (status, head, _) = http_get(publ.addr("http"), &format!("/emapp/EMAppServlet?{query}"));
    assert_eq!(status, 302, "{head}");
    let location = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or(l.strip_prefix("Location: "))
        })
        .unwrap_or_else(|| panic!("no Location in {head}"))
        .trim()
        .to_string();
    assert_eq!(
        location,
        format!(
            "http://127.0.0.1:{}/emapp/EMAppServlet?{query}",
            em_http.port()
        )
    );
    // There it gets the login form.
    let (status, _, body) = http_get(em_http, &format!("/emapp/EMAppServlet?{query}"));
    assert_eq!(status, 200);
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("<CiscoIPPhoneInput>") && body.contains("Primary Extension"),
        "{body}"
    );
    assert_eq!(publ.terminate().code(), Some(0), "{}", publ.logs());
    assert_eq!(sub.terminate().code(), Some(0), "{}", sub.logs());
}

/// `ucm serve` with every port but TFTP's on 0, on a fresh data directory, `extra` appended.
fn serve_cmd(dir: &std::path::Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = crate::common::ucm();
    cmd.arg("serve");
    for flag in [
        "--http-port",
        "--https-port",
        "--tftp-http-port",
        "--sip-port",
        "--sips-port",
    ] {
        cmd.args([flag, "0"]);
    }
    cmd.arg("--data-dir").arg(dir).args(extra);
    cmd.env("UCM_LOG", "info");
    cmd
}

#[test]
fn r21_a_second_node_on_the_host_starts_without_tftp_on_udp_when_69_is_taken() {
    if !is_root() {
        skip_or_fail("root, to hold UDP port 69");
        return;
    }
    // Another TFTP server (or node) on this address holds port 69.
    let addr = "127.0.9.69";
    let _holder = std::net::UdpSocket::bind((addr, 69)).expect("bind 127.0.9.69:69");
    let dir = tempfile::tempdir().unwrap();
    let (mut child, ready, stderr) = crate::common::spawn_ready(
        serve_cmd(dir.path(), &["--bind", addr]),
        "ucm serve",
        Duration::from_secs(60),
    );
    assert!(ready["tftp"].is_null(), "{ready}");
    assert!(ready["tftp_http"].is_string(), "{ready}");
    // SAFETY: kill with a pid we own and a valid signal number.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let logs: Vec<String> = stderr.try_iter().collect();
    assert!(
        logs.iter().any(|l| l.contains("port 69 is in use")),
        "{logs:#?}"
    );
    // Asked for by name, the same port is an error.
    let out = serve_cmd(dir.path(), &["--bind", addr, "--tftp-port", "69"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn r21_the_demo_listens_on_loopback_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, ready, stderr) = crate::common::spawn_ready(
        serve_cmd(dir.path(), &["--tftp-port", "0"]),
        "ucm serve",
        Duration::from_secs(60),
    );
    for key in [
        "http",
        "https",
        "tftp_http",
        "sip_udp",
        "sip_tcp",
        "sip_tls",
    ] {
        let a: SocketAddr = ready[key].as_str().unwrap().parse().unwrap();
        assert_eq!(a.ip().to_string(), "127.0.0.1", "{key} in {ready}");
    }
    // SAFETY: kill with a pid we own and a valid signal number.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let logs: Vec<String> = stderr.try_iter().collect();
    assert!(
        logs.iter().any(|l| l.contains("--bind 0.0.0.0")),
        "{logs:#?}"
    );
}

/// Runs `argv` (a deployment file's command, `/usr/local/bin/ucm` standing for this build) in
/// network and PID namespaces of its own, as root, and returns whether `/healthz` answered on
/// 127.0.0.1:8080 with the node's status, plus what it printed.
fn deployed_command_answers_healthz(argv: &[String], data_dir: &std::path::Path) -> (bool, String) {
    let bin = env!("CARGO_BIN_EXE_ucm");
    let cmd: Vec<String> = argv
        .iter()
        .map(|a| a.replace("/usr/local/bin/ucm", bin))
        .map(|a| format!("'{a}'"))
        .collect();
    let script = format!(
        "ip link set lo up\n{} > out 2> err &\n\
         for i in $(seq 1 300); do curl -sf http://127.0.0.1:8080/healthz > health && break; sleep 0.1; done\n\
         cat health 2>/dev/null; echo; cat out; cat err | tail -5\n",
        cmd.join(" ")
    );
    let out = std::process::Command::new("unshare")
        .args([
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
            "bash",
            "-c",
            &script,
        ])
        .current_dir(data_dir)
        .env("UCM_DATA_DIR", data_dir)
        .output()
        .expect("unshare");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let first = text.lines().next().unwrap_or_default();
    (first.contains("\"status\":\"ok\""), text)
}

fn deploy_file(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/deploy")
            .join(name),
    )
    .unwrap()
}

#[test]
fn r21_the_systemd_unit_and_the_container_run_a_node_that_answers_healthz() {
    if !is_root() || !crate::common::have("unshare") || !crate::common::have("curl") {
        skip_or_fail("root, unshare and curl to run the deployment files' commands");
        return;
    }
    // systemd: ExecStart as written (systemd-analyze checks the unit where it is installed).
    let unit = deploy_file("ucm.service");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let argv: Vec<String> = exec.split_whitespace().map(String::from).collect();
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = deployed_command_answers_healthz(&argv, dir.path());
    assert!(ok, "ucm.service's ExecStart: {text}");
    if crate::common::have("systemd-analyze") {
        let out = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("fixtures/deploy/ucm.service"),
            )
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // The binary's path is where the unit says to install it, not here.
        let real: Vec<&str> = err
            .lines()
            .filter(|l| !l.contains("/usr/local/bin/ucm") && !l.trim().is_empty())
            .collect();
        assert!(real.is_empty(), "systemd-analyze verify: {err}");
    }

    // The container: ENTRYPOINT then CMD, as the engine runs them.
    let file = deploy_file("Containerfile");
    let json_of = |key: &str| -> Vec<String> {
        let line = file
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key}"));
        serde_json::from_str(line.trim()).unwrap()
    };
    let mut argv = json_of("ENTRYPOINT ");
    argv.extend(json_of("CMD "));
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = deployed_command_answers_healthz(&argv, dir.path());
    assert!(ok, "Containerfile's ENTRYPOINT and CMD: {text}");
    // Building the image needs an engine and its base images' registry; this machine may
    // have neither (then say so, as the check above already ran the command it holds).
    let engine = ["podman", "docker"].into_iter().find(|e| {
        std::process::Command::new(e)
            .arg("info")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    match engine {
        None => eprintln!("NOTE: no running container engine: the image was not built"),
        Some(e) => {
            let out = std::process::Command::new(e)
                .args([
                    "build",
                    "-f",
                    "fixtures/deploy/Containerfile",
                    "-t",
                    "ucm-test",
                    ".",
                ])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            if !out.status.success() && (err.contains("pull") || err.contains("registry")) {
                eprintln!("NOTE: {e} cannot fetch the base images here: {err}");
            } else {
                assert!(out.status.success(), "{e} build: {err}");
            }
        }
    }
}
