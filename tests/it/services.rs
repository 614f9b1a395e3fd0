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
    // The demo's 61 devices list in more than 1400 bytes: a full first block, then a short
    // one that ends the file.
    assert_eq!(&buf[..4], &[0, 3, 0, 1]);
    assert_eq!(n, 1404, "a full first block");
    assert_eq!(dscp, Some(Dscp::AF21));
    sock.send_to(&[0, 4, 0, 1], from).await.unwrap();
    let (n, _, dscp) = tokio::time::timeout(
        Duration::from_secs(5),
        ucm::net::recv_from_with_dscp(&sock, &mut buf),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(&buf[..4], &[0, 3, 0, 2]);
    assert!(n < 1404, "a short second block ends the file");
    assert_eq!(dscp, Some(Dscp::AF21));
    sock.send_to(&[0, 4, 0, 2], from).await.unwrap();

    let mut wrq = rrq("evil.cnf.xml", &[]);
    wrq[1] = 2;
    sock.send_to(&wrq, tftp).await.unwrap();
    let (n, _, _) = ucm::net::recv_from_with_dscp(&sock, &mut buf)
        .await
        .unwrap();
    assert_eq!(&buf[..4], &[0, 5, 0, 2], "access violation");
    assert!(String::from_utf8_lossy(&buf[4..n]).contains("read-only"));
}

/// A metric of the node's `/metrics` page.
fn metric(http: std::net::SocketAddr, name: &str) -> f64 {
    let (st, _, body) = http_get(http, "/metrics");
    assert_eq!(st, 200);
    let body = String::from_utf8(body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{body}"))
}

/// A GET of the authentication URL from the loopback address `src`: (status, head, body).
fn auth_from(src: &str, http: std::net::SocketAddr, user: &str, pw: &str) -> (u16, String, String) {
    let (st, head, body) = crate::em::http_from(
        src,
        http,
        &format!("GET /ccmcip/authenticate.jsp?UserID={user}&Password={pw}&devicename=SEP00036BC7B973 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    );
    (st, head, String::from_utf8(body).unwrap())
}

/// `n` concurrent wrong guesses at jsmith's password, each from its own address (so no
/// per-source throttle hides the account's limit), spread over `nodes`. Every answer is a
/// refusal: UN-AUTHORIZED, or 503 with Retry-After when the node is busy.
fn parallel_guesses(nodes: &[std::net::SocketAddr], n: usize) {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                let http = nodes[i % nodes.len()];
                s.spawn(move || {
                    auth_from(
                        &format!("127.0.3.{}", 10 + i),
                        http,
                        "jsmith",
                        &format!("guess{i}"),
                    )
                })
            })
            .collect();
        for h in hs {
            let (st, head, body) = h.join().unwrap();
            assert_eq!(body, "UN-AUTHORIZED");
            assert!(
                st == 200 || (st == 503 && head.to_ascii_lowercase().contains("retry-after:")),
                "{st} {head}"
            );
        }
    });
}

#[test]
fn r15_parallel_guesses_get_at_most_the_threshold_of_checks() {
    // The demo's lockout: 5 failures. 60 concurrent guesses (the report's right one was the
    // 46th) may run at most 5 password verifications; the account is then locked.
    let srv = Server::start(&[]);
    let http = srv.addr("http");
    let before = metric(http, "ucm_password_verifications");
    parallel_guesses(&[http], 60);
    let ran = metric(http, "ucm_password_verifications") - before;
    assert!(ran <= 5.0, "{ran} verifications for a threshold of 5");
    if ran == 5.0 {
        let (_, _, body) = auth_from("127.0.3.200", http, "jsmith", "cisco");
        assert_eq!(body, "UN-AUTHORIZED", "locked out");
    }
}

#[test]
fn r15_parallel_guesses_on_two_nodes_share_one_limit_postgres() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = rt.block_on(crate::common::PgDb::create()) else {
        return;
    };
    let a = Server::start(&["--db", &db.url]);
    let b = Server::start(&["--db", &db.url]);
    let nodes = [a.addr("http"), b.addr("http")];
    let total = || {
        nodes
            .iter()
            .map(|n| metric(*n, "ucm_password_verifications"))
            .sum::<f64>()
    };
    let before = total();
    parallel_guesses(&nodes, 60);
    let ran = total() - before;
    assert!(
        ran <= 5.0,
        "{ran} verifications on two nodes for a threshold of 5"
    );
    drop((a, b));
    rt.block_on(db.drop_db());
}

/// Peak resident memory of a process, in KiB (`VmHWM`).
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn r15_two_hundred_strangers_never_exceed_the_verification_slots() {
    let srv = Server::start(&[]);
    let http = srv.addr("http");
    let slots = metric(http, "ucm_password_verification_slots");
    assert!(slots >= 1.0);
    // An unknown user costs a verification (against a dummy hash) like a known one: the
    // answer's time does not tell which user IDs exist.
    let before = metric(http, "ucm_password_verifications");
    assert_eq!(
        auth_from("127.0.4.1", http, "nobody", "x").2,
        "UN-AUTHORIZED"
    );
    assert_eq!(metric(http, "ucm_password_verifications") - before, 1.0);
    assert_eq!(
        auth_from("127.0.4.1", http, "jsmith", "x").2,
        "UN-AUTHORIZED"
    );
    assert_eq!(metric(http, "ucm_password_verifications") - before, 2.0);
    // The same wrong password again from the same address costs no verification.
    assert_eq!(
        auth_from("127.0.4.1", http, "nobody", "x").2,
        "UN-AUTHORIZED"
    );
    assert_eq!(metric(http, "ucm_password_verifications") - before, 2.0);

    // 200 concurrent wrong passwords from 200 addresses, for 200 names.
    let rss_before = peak_rss_kib(srv.child.id());
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..200)
            .map(|i| {
                s.spawn(move || {
                    let (st, head, body) = auth_from(
                        &format!("127.0.5.{}", 1 + i),
                        http,
                        &format!("stranger{i}"),
                        &format!("pw{i}"),
                    );
                    assert_eq!(body, "UN-AUTHORIZED");
                    if st == 503 {
                        assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
                    } else {
                        assert_eq!(st, 200);
                    }
                    st
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let most = metric(http, "ucm_password_verifications_running_max");
    assert!(
        most >= 1.0 && most <= slots,
        "{most} verifications at once, {slots} slots"
    );
    let busy = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(
        busy as f64,
        metric(http, "ucm_password_checks_refused_busy"),
        "every refusal is a busy answer, counted"
    );
    eprintln!(
        "200 strangers: {} answered after a verification, {busy} busy (503); peak RSS {} -> {} KiB; {slots} slots",
        200 - busy,
        rss_before,
        peak_rss_kib(srv.child.id())
    );
}

/// Runs README's simulated-phone and push examples exactly as written, in a network namespace
/// of its own (the demo binds the standard ports; port 80 on each phone's address needs root).
#[test]
fn r21_readme_sim_and_push_examples_run_as_written() {
    let sim = crate::readme::sh_blocks("## Simulated phones", 2);
    let push = crate::readme::sh_blocks("With the simulated phones above running", 1);
    assert_eq!(sim.len(), 2);
    assert!(sim[0].contains("ucm phone sim"), "{}", sim[0]);
    assert!(push[0].contains("ucm services push"), "{}", push[0]);
    let lines: Vec<&str> = sim
        .iter()
        .chain(push.iter())
        .flat_map(|b| b.lines())
        .collect();
    // The simulated phone's HTTP server is on port 80 of its address, as README says.
    let phone = lines
        .iter()
        .position(|l| l.contains("ucm phone sim"))
        .unwrap();
    // What README says the examples do: the phone dialled and shows the pushed menu.
    let after = format!(
        "grep -q '\"http\":\"127.0.0.10:80\"' bg{phone}.out || fail {phone} \"sim not on port 80: $(cat bg{phone}.out bg{phone}.err)\"\n\
         curl -s http://127.0.0.10/state > state.json\n\
         grep -q '\"kind\":\"CiscoIPPhoneMenu\"' state.json || fail state \"no menu shown: $(cat state.json)\"\n\
         grep -q 'Dial:10002' state.json || fail state \"no dial: $(cat state.json)\"\n"
    );
    crate::readme::run(
        "phone",
        &[(
            "menu.xml",
            "<CiscoIPPhoneMenu><Title>Apps</Title><MenuItem><Name>News</Name>\
             <URL>http://127.0.0.1:8080/news.xml</URL></MenuItem></CiscoIPPhoneMenu>\n",
        )],
        &lines,
        &[],
        &[],
        &after,
    );
}
