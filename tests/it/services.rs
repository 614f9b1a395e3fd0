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
    assert!(
        srv.logs().contains("locked out"),
        "the lockout is logged:\n{}",
        srv.logs()
    );
}
