//! Issue 15, "bounded work for every stranger": limits on what one source can hold, and the
//! node's files kept private.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{ucm, Server};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn r15_database_and_data_directory_are_private_new_and_old() {
    // A data directory that does not exist yet: ucm creates it private.
    let parent = tempfile::tempdir().unwrap();
    let fresh = parent.path().join("ucm-data");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clusters/demo.yaml");
    let o = ucm()
        .args(["db", "import"])
        .arg(&demo)
        .arg("--data-dir")
        .arg(&fresh)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(mode(&fresh), 0o700, "new data directory");
    assert_eq!(mode(&fresh.join("ucm.db")), 0o600, "new database");

    // A data directory and database left readable by everyone (an older version, a copy):
    // fixed when the node starts, and the WAL files it makes are private too.
    let set = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    let holder = tempfile::tempdir().unwrap();
    set(holder.path(), 0o755).unwrap();
    let mut srv = Server::start_in(holder, &[]);
    let dir = srv.data_dir.path().to_path_buf();
    assert_eq!(mode(&dir), 0o700, "data directory");
    assert_eq!(mode(&dir.join("ucm.db")), 0o600, "database");
    assert_eq!(mode(&dir.join("ucm.db-wal")), 0o600, "WAL");
    assert_eq!(mode(&dir.join("ucm.db-shm")), 0o600, "shared memory");
    srv.terminate();
    set(&dir, 0o755).unwrap();
    set(&dir.join("ucm.db"), 0o644).unwrap();
    let holder = std::mem::replace(&mut srv.data_dir, tempfile::tempdir().unwrap());
    drop(srv);
    let srv = Server::start_in(holder, &[]);
    assert_eq!(mode(&dir), 0o700, "data directory after restart");
    assert_eq!(mode(&dir.join("ucm.db")), 0o600, "database after restart");
    assert_eq!(mode(&dir.join("ucm.db-wal")), 0o600, "WAL after restart");
    drop(srv);
}

/// A TFTP read request with options.
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

async fn recv(sock: &tokio::net::UdpSocket) -> (Vec<u8>, std::net::SocketAddr) {
    let mut buf = vec![0u8; 2048];
    let (n, from) =
        tokio::time::timeout(std::time::Duration::from_secs(10), sock.recv_from(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
    buf.truncate(n);
    (buf, from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r15_tftp_one_source_cannot_take_every_transfer() {
    use ucm::services::tftp::MAX_TRANSFERS_PER_SOURCE;
    let srv = Server::start(&[]);
    let tftp = srv.addr("tftp");
    // One host asks for more transfers than it may hold and never acknowledges (the issue's
    // 1,100 requests asking timeout=255, bounded here). Its transfers live 5 s unacknowledged.
    let flood = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let extra = 4;
    for _ in 0..MAX_TRANSFERS_PER_SOURCE + extra {
        let req = rrq(
            "SEP00036BC7B973.cnf.xml",
            &[("timeout", "5"), ("blksize", "1400")],
        );
        flood.send_to(&req, tftp).await.unwrap();
    }
    let (mut started, mut busy) = (0, 0);
    for _ in 0..MAX_TRANSFERS_PER_SOURCE + extra {
        let (p, from) = recv(&flood).await;
        match &p[..2] {
            [0, 6] => {
                assert_ne!(from, tftp);
                started += 1;
            }
            [0, 5] => {
                assert_eq!(from, tftp);
                assert!(String::from_utf8_lossy(&p[4..]).contains("busy"), "{p:?}");
                busy += 1;
            }
            other => panic!("unexpected packet {other:?}"),
        }
    }
    assert_eq!((started, busy), (MAX_TRANSFERS_PER_SOURCE, extra));
    // Another phone is served meanwhile.
    let phone = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    phone
        .send_to(
            &rrq("SEP00036BC7B973.cnf.xml", &[("blksize", "1400")]),
            tftp,
        )
        .await
        .unwrap();
    let (p, from) = recv(&phone).await;
    assert_eq!(&p[..2], &[0, 6], "OACK, not busy: {p:?}");
    phone.send_to(&[0, 4, 0, 0], from).await.unwrap();
    let (p, _) = recv(&phone).await;
    assert_eq!(&p[..4], &[0, 3, 0, 1]);
    // The refusals are logged once, with a count, not once each.
    let logs = srv.wait_for_log("TFTP: transfer limit reached");
    assert_eq!(
        logs.matches("TFTP: transfer limit reached").count(),
        1,
        "{logs}"
    );
}

/// The demo cluster with `edits` (old, new) applied, written to `dir`.
fn demo_with(dir: &Path, edits: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = ucm::config::DEMO_YAML.to_string();
    for (old, new) in edits {
        assert!(text.contains(old), "the demo has {old:?}");
        text = text.replacen(old, new, 1);
    }
    crate::common::write_file(dir, "cluster.yaml", &text)
}

#[test]
fn r15_configuration_file_says_what_the_definition_and_the_real_ports_say() {
    let dir = tempfile::tempdir().unwrap();
    let def = demo_with(
        dir.path(),
        &[
            (
                "\nenterprise_parameters:",
                "  - name: ucm-sub\n    address: 127.0.0.9\n    services: [call-processing]\n    \
                 ports: { sip: 5070, sips: 5071 }\n\nenterprise_parameters:",
            ),
            ("node_group: [ucm-pub]", "node_group: [ucm-pub, ucm-sub]"),
            (
                "phone_security_profiles:\n",
                "phone_security_profiles:\n  - name: TCP Profile\n    transport: tcp\n",
            ),
            (
                "owner: jsmith\n    em_enabled: true\n    security_profile: Cisco SIP Non-Secure Profile",
                "owner: jsmith\n    em_enabled: true\n    security_profile: TCP Profile",
            ),
            (
                "phone_services:\n",
                "phone_services:\n  - name: Stock Ticker\n    url: \"{http}/midlets/ticker.jad\"\n    \
                 category: java-midlet\n    enterprise_subscription: true\n",
            ),
        ],
    );
    let srv = Server::start(&["--config", def.to_str().unwrap()]);
    let file = |dev: &str| {
        let (st, _, body) =
            crate::common::http_get(srv.addr("tftp_http"), &format!("/{dev}.cnf.xml"));
        assert_eq!(st, 200);
        String::from_utf8(body).unwrap()
    };
    let text = file("SEP00036BC7B973");
    let (sip, sips) = (srv.addr("sip_udp").port(), srv.addr("sip_tls").port());
    assert!(
        text.contains(&format!(
            "<name>ucm-pub</name><ports><sipPort>{sip}</sipPort><securedSipPort>{sips}</securedSipPort></ports>"
        )),
        "this node's real ports: {text}"
    );
    assert!(
        text.contains(
            "<name>ucm-sub</name><ports><sipPort>5070</sipPort><securedSipPort>5071</securedSipPort></ports><processNodeName>127.0.0.9</processNodeName>"
        ),
        "the other member's defined ports: {text}"
    );
    assert!(
        !text.contains("ethernetPhonePort"),
        "no SCCP listener: {text}"
    );
    assert!(
        text.contains("<transportLayerProtocol>1</transportLayerProtocol>"),
        "TCP: {text}"
    );
    assert!(
        text.contains("<phoneService type=\"0\" category=\"1\"><name>Stock Ticker</name>"),
        "{text}"
    );
    assert!(
        text.contains("category=\"0\"><name>Extension Mobility</name>"),
        "{text}"
    );
    let other = file("SEP00036BC7B974");
    assert!(
        other.contains("<transportLayerProtocol>2</transportLayerProtocol>"),
        "UDP: {other}"
    );
}

/// POSTs an EM API request (`xml=`, form-encoded) and returns the answer's body.
fn em_post(http: std::net::SocketAddr, xml: &str) -> String {
    use std::io::{Read, Write};
    let mut body = String::from("xml=");
    for b in xml.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                body.push(char::from(b))
            }
            _ => body.push_str(&format!("%{b:02X}")),
        }
    }
    let mut s = std::net::TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .ok();
    write!(
        s,
        "POST /emservice/EMServiceServlet HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    String::from_utf8(crate::common::split_http(&raw).2).unwrap()
}

#[test]
fn r15_the_logout_profile_and_the_profiles_locale_reach_the_configuration_file() {
    const HOTDESK: &str = "SEP0000000000A1";
    let dir = tempfile::tempdir().unwrap();
    let def = demo_with(
        dir.path(),
        &[(
            "    model: Cisco 8845\n    lines:\n      - dn: \"29001\"\n        partition: Internal_PT\n",
            "    model: Cisco 8845\n    user_locale: French_France\n    lines:\n      - dn: \"29001\"\n        \
             partition: Internal_PT\n      - dn: \"23923\"\n        partition: Internal_PT\n",
        )],
    );
    let srv = Server::start(&["--config", def.to_str().unwrap()]);
    let cnf = || {
        let (st, _, body) =
            crate::common::http_get(srv.addr("tftp_http"), &format!("/{HOTDESK}.cnf.xml"));
        assert_eq!(st, 200);
        String::from_utf8(body).unwrap()
    };
    let locale = |name: &str, code: &str| {
        format!("<userLocale><name>{name}</name><langCode>{code}</langCode>")
    };
    // Nobody logged in: the logout profile's lines and locale.
    let c = cnf();
    assert!(
        c.contains("<name>29001</name>") && c.contains("<name>23923</name>"),
        "the logout profile's two lines: {c}"
    );
    assert!(c.contains(&locale("French_France", "fr_FR")), "{c}");
    // A user logs in: the user's device profile, with its locale.
    let app = "<appInfo><appID>emproxy</appID><appCertificate>emproxy</appCertificate></appInfo>";
    let r = em_post(
        srv.addr("http"),
        &format!("<request>{app}<login><deviceName>{HOTDESK}</deviceName><userID>jsmith</userID><deviceProfile>jsmith-udp</deviceProfile></login></request>"),
    );
    assert!(r.contains("<success/>"), "{r}");
    let c = cnf();
    assert!(
        c.contains("<name>10001</name>") && !c.contains("<name>23923</name>"),
        "{c}"
    );
    assert!(c.contains(&locale("English_United_States", "en_US")), "{c}");
    // Logged out: the logout profile again.
    let r = em_post(
        srv.addr("http"),
        &format!("<request>{app}<logout><deviceName>{HOTDESK}</deviceName></logout></request>"),
    );
    assert!(r.contains("<success/>"), "{r}");
    let c = cnf();
    assert!(
        c.contains("<name>23923</name>") && c.contains(&locale("French_France", "fr_FR")),
        "{c}"
    );
}

#[test]
fn r15_settings_ucm_does_not_act_on_are_refused_by_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let def = demo_with(
        dir.path(),
        &[
            ("  version: \"14.0\"", "  version: \"12.5\""),
            ("  security_mode: non-secure", "  security_mode: mixed"),
            ("    max_audio_bit_rate: 64", "    max_audio_bit_rate: 8"),
            (
                "  - name: HQ_DP\n",
                "  - name: HQ_DP\n    srst_reference: HQ_SRST\n",
            ),
        ],
    );
    let o = ucm().args(["config", "check"]).arg(&def).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string() + &String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "an invalid definition: {err}");
    for field in [
        "cluster.version",
        "cluster.security_mode",
        "regions[0].max_audio_bit_rate",
        "device_pools[0].srst_reference",
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!(": {field}: ")) && l.contains("not supported yet")),
            "{field}: {err}"
        );
    }
    // The demo as shipped (14.0, non-secure, 64 kbit/s, no SRST) passes.
    let ok = crate::common::write_file(dir.path(), "demo.yaml", ucm::config::DEMO_YAML);
    let o = ucm().args(["config", "check"]).arg(&ok).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
