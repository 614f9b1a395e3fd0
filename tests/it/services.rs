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
