//! WebDialer (issue 7) over the wire: the SOAP interface with envelopes written as Cisco's
//! samples write them (pyCiscoWebDialer, Cisco's developer guide), calls placed with
//! third-party call control to simulated phones, every response code that can arise, the WSDL,
//! `ucm dial`, and the HTML servlet driven by plain HTTP requests with its cookie.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use crate::common::{http_get, split_http, ucm, write_file, Server};
use crate::phone::{calls, state, wait_state, Sim};

const PHONE_A: &str = "SEP00036BC7B973";
const PHONE_B: &str = "SEP00036BC7B974";

/// The demo cluster with WebDialer parameters, an application with proxy rights (`wdproxy`),
/// one without (`wdapp`), and a user with no device (`nodev`).
fn wd_cluster(dir: &std::path::Path, max_concurrent: u32, extra_params: &str) -> String {
    let text = ucm::config::DEMO_YAML
        .replace(
            "  webdialer:\n    user_session_expiry_hours: 0\n    max_concurrent_call_requests: 3\n",
            &format!(
                "  webdialer:\n    user_session_expiry_hours: 0\n    max_concurrent_call_requests: {max_concurrent}\n{extra_params}"
            ),
        )
        .replace(
            "application_users:\n",
            "application_users:\n  - userid: wdproxy\n    password: wdproxy\n    roles: [cti-control-all-devices]\n  - userid: wdapp\n    password: wdapp\n",
        )
        .replace(
            "end_users:\n",
            "end_users:\n  - userid: nodev\n    last_name: Nodevice\n    password: cisco\n",
        );
    write_file(dir, "wd.yaml", &text)
        .to_str()
        .unwrap()
        .to_string()
}

fn start(max_concurrent: u32) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let def = wd_cluster(dir.path(), max_concurrent, "");
    let srv = Server::start(&["--config", &def]);
    (dir, srv)
}

fn post(
    addr: SocketAddr,
    path: &str,
    ctype: &str,
    headers: &str,
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(90))).ok();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ctype}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let (status, head, body) = split_http(&raw);
    (status, head, String::from_utf8(body).unwrap())
}

fn soap(addr: SocketAddr, xml: &str) -> (u16, String) {
    let (st, head, body) = post(
        addr,
        "/webdialer/services/WebdialerSoapService70",
        "text/xml; charset=utf-8",
        "SOAPAction: \"\"\r\n",
        xml,
    );
    assert!(head.to_ascii_lowercase().contains("text/xml"), "{head}");
    (st, body)
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let i = s.find(open)?;
    let rest = &s[i + open.len()..];
    let rest = &rest[rest.find('>')? + 1..];
    Some(&rest[..rest.find(close)?])
}

fn code(body: &str) -> u32 {
    between(body, "<responseCode", "</responseCode>")
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no responseCode in {body}"))
}

/// makeCallSoap exactly as pyCiscoWebDialer writes it.
pub(crate) fn make_call_xml(
    user: &str,
    pw: &str,
    dest: &str,
    caller: &str,
    device: &str,
    line: &str,
) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:WD70" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
   <soapenv:Header />
   <soapenv:Body>
      <urn:makeCallSoap soapenv:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
         <in0 xsi:type="urn:Credential">
            <userID xsi:type="xsd:string">{user}</userID>
            <password xsi:type="xsd:string">{pw}</password>
         </in0>
         <in1 xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xsi:type="soapenc:string">{dest}</in1>
         <in2 xsi:type="urn:UserProfile">
            <user xsi:type="xsd:string">{caller}</user>
            <deviceName xsi:type="xsd:string">{device}</deviceName>
            <lineNumber xsi:type="xsd:string">{line}</lineNumber>
            <supportEM xsi:type="xsd:boolean">false</supportEM>
            <locale xsi:type="xsd:string">Italian</locale>
            <dontAutoClose xsi:type="xsd:boolean">false</dontAutoClose>
            <dontShowCallConf xsi:type="xsd:boolean">true</dontShowCallConf>
         </in2>
      </urn:makeCallSoap>
   </soapenv:Body>
</soapenv:Envelope>"#
    )
}

/// Any other operation, in the developer guide's compact style.
fn op_xml(op: &str, parts: &str) -> String {
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:WD70" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Header/><soapenv:Body><urn:{op} soapenv:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">{parts}</urn:{op}></soapenv:Body></soapenv:Envelope>"#
    )
}

fn cred(user: &str, pw: &str) -> String {
    format!(
        r#"<in0 xsi:type="urn:Credential"><userID xsi:type="xsd:string">{user}</userID><password xsi:type="xsd:string">{pw}</password></in0>"#
    )
}

fn profile(part: &str, user: &str, device: &str, line: &str, em: bool) -> String {
    format!(
        r#"<{part} xsi:type="urn:UserProfile"><user xsi:type="xsd:string">{user}</user><deviceName xsi:type="xsd:string">{device}</deviceName><lineNumber xsi:type="xsd:string">{line}</lineNumber><supportEM xsi:type="xsd:boolean">{em}</supportEM></{part}>"#
    )
}

fn end_call_xml(user: &str, pw: &str, device: &str) -> String {
    op_xml(
        "endCallSoap",
        &format!(
            "{}{}",
            cred(user, pw),
            profile("in1", user, device, "", false)
        ),
    )
}

fn connected(s: &serde_json::Value) -> bool {
    calls(s).iter().any(|c| c["state"] == "connected")
}

fn ended(s: &serde_json::Value) -> bool {
    !calls(s).is_empty() && calls(s).iter().all(|c| c["state"] == "ended")
}

#[test]
fn r7_soap_make_call_rings_the_users_phone_then_the_destination_and_end_call_hangs_up() {
    let (_dir, srv) = start(3);
    let http = srv.addr("http");
    let sim_a = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_A,
            "--first-ip",
            "127.0.71.10",
            "--auto-answer",
        ],
    );
    let sim_b = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_B,
            "--first-ip",
            "127.0.71.20",
            "--auto-answer",
        ],
    );
    let (a, b) = (sim_a.http(PHONE_A), sim_b.http(PHONE_B));

    let (st, body) = soap(
        http,
        &make_call_xml("jsmith", "cisco", "10002", "jsmith", PHONE_A, "10001"),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(code(&body), 0, "{body}");
    assert!(
        body.contains("<responseDescription xsi:type=\"xsd:string\">Success</responseDescription>"),
        "{body}"
    );
    // makeCall answers once the user's phone has answered: it rang first.
    let sa = state(a);
    assert!(
        calls(&sa).iter().any(|c| c["direction"] == "inbound"),
        "the user's phone rang first: {sa:#}"
    );
    let sb = wait_state(b, 10, "the destination is connected", connected);
    let cb = calls(&sb);
    assert_eq!(cb[0]["direction"], "inbound");
    assert_eq!(cb[0]["remote_number"], "10001", "B sees the user's number");
    wait_state(a, 10, "the user's phone is connected", connected);

    // endCallSoap hangs up both sides; a second one finds no call (1).
    let (st, body) = soap(http, &end_call_xml("jsmith", "cisco", PHONE_A));
    assert_eq!((st, code(&body)), (200, 0), "{body}");
    wait_state(a, 10, "A hung up", ended);
    wait_state(b, 10, "B hung up", ended);
    let (_, body) = soap(http, &end_call_xml("jsmith", "cisco", PHONE_A));
    assert_eq!(code(&body), 1, "{body}");
    assert!(body.contains("no WebDialer call in progress"), "{body}");

    // A proxy application places a call for the user (device and line from the profile).
    let (_, body) = soap(
        http,
        &make_call_xml("wdproxy", "wdproxy", "10002", "jsmith", "", ""),
    );
    assert_eq!(code(&body), 0, "{body}");
    wait_state(b, 10, "the proxied call reaches B", |s| {
        calls(s)
            .iter()
            .filter(|c| c["state"] == "connected")
            .count()
            == 1
    });
    let (_, body) = soap(http, &end_call_xml("jsmith", "cisco", PHONE_A));
    assert_eq!(code(&body), 0, "{body}");
}

#[test]
fn r7_soap_response_codes_queries_faults_and_the_wsdl() {
    let (_dir, srv) = start(3);
    let http = srv.addr("http");
    let mc = |u: &str, p: &str, d: &str, c: &str, dev: &str, l: &str| {
        let (st, body) = soap(http, &make_call_xml(u, p, d, c, dev, l));
        assert_eq!(st, 200, "{body}");
        (code(&body), body)
    };
    // 2: wrong password, unknown user, missing credential.
    assert_eq!(
        mc("jsmith", "wrong", "10002", "jsmith", PHONE_A, "10001").0,
        2
    );
    assert_eq!(mc("nobody", "x", "10002", "nobody", "", "").0, 2);
    assert_eq!(mc("", "", "10002", "jsmith", "", "").0, 2);
    // 3: acting for another user without proxy rights (an end user, an application).
    assert_eq!(
        mc("sadams", "cisco", "10002", "jsmith", PHONE_A, "10001").0,
        3
    );
    assert_eq!(mc("wdapp", "wdapp", "10002", "jsmith", "", "").0, 3);
    // 5: no device, someone else's device, a line the device lacks, no destination, EM
    // without a login.
    let (c, body) = mc("nodev", "cisco", "10002", "nodev", "", "");
    assert_eq!(c, 5);
    assert!(
        body.contains("No supported device configured for user"),
        "{body}"
    );
    assert_eq!(
        mc("jsmith", "cisco", "10002", "jsmith", PHONE_B, "10002").0,
        5
    );
    assert_eq!(
        mc("jsmith", "cisco", "10002", "jsmith", PHONE_A, "99999").0,
        5
    );
    assert_eq!(mc("jsmith", "cisco", "", "jsmith", PHONE_A, "10001").0, 5);
    let (_, body) = soap(
        http,
        &op_xml(
            "makeCallSoap",
            &format!(
                "{}<in1 xsi:type=\"xsd:string\">10002</in1>{}",
                cred("jsmith", "cisco"),
                profile("in2", "jsmith", "", "", true)
            ),
        ),
    );
    assert_eq!(code(&body), 5, "{body}");
    assert!(
        body.contains("Call to 10002 failed: User not logged in on any device"),
        "{body}"
    );
    // 7: not a number to dial.
    assert_eq!(
        mc("jsmith", "cisco", "sip:x@y", "jsmith", PHONE_A, "10001").0,
        7
    );
    // 1: the user's phone is not registered.
    let (c, body) = mc("jsmith", "cisco", "10002", "jsmith", PHONE_A, "10001");
    assert_eq!(c, 1, "{body}");
    assert!(body.contains("not registered"), "{body}");

    // getProfileSoap as pyCiscoWebDialer writes it; a proxy may ask for others.
    let gp = |u: &str, p: &str, who: &str| {
        soap(
            http,
            &format!(
                r#"<?xml version="1.0" ?>
<soapenv:Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:urn="urn:WD70">
  <soapenv:Header/>
  <soapenv:Body>
     <urn:getProfileSoap soapenv:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
        <in0 xsi:type="urn:Credential">
           <userID xsi:type="xsd:string">{u}</userID>
           <password xsi:type="xsd:string">{p}</password>
        </in0>
        <in1 xsi:type="soapenc:string" xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/">{who}</in1>
     </urn:getProfileSoap>
   </soapenv:Body>
</soapenv:Envelope>"#
            ),
        )
        .1
    };
    let body = gp("jsmith", "cisco", "jsmith");
    assert_eq!(code(&body), 0, "{body}");
    assert!(body.contains(">SEP00036BC7B973</deviceName>"), "{body}");
    assert!(body.contains(">10001 ; Internal_PT</lines>"), "{body}");
    assert_eq!(code(&gp("wdproxy", "wdproxy", "sadams")), 0);
    assert_eq!(code(&gp("sadams", "cisco", "jsmith")), 3);
    assert_eq!(code(&gp("jsmith", "bad", "jsmith")), 2);
    assert_eq!(code(&gp("nodev", "cisco", "nodev")), 5);
    let (_, body) = soap(
        http,
        &op_xml("getProfileDetailSoap", &cred("jsmith", "cisco")),
    );
    assert_eq!(code(&body), 0, "{body}");
    assert!(
        body.contains("<phoneType xsi:type=\"soapenc:string\">Cisco 8845</phoneType>"),
        "{body}"
    );
    let (_, body) = soap(http, &op_xml("getPrimaryLine", &cred("jsmith", "cisco")));
    assert_eq!(
        between(&body, "<getPrimaryLineReturn", "</getPrimaryLineReturn>"),
        Some("10001"),
        "{body}"
    );
    for (who, yes) in [("jsmith", "true"), ("nobody", "false")] {
        let (st, body) = soap(
            http,
            &op_xml(
                "isClusterUserSoap",
                &format!("<in0 xsi:type=\"xsd:string\">{who}</in0>"),
            ),
        );
        assert_eq!(st, 200);
        assert_eq!(
            between(
                &body,
                "<isClusterUserSoapReturn",
                "</isClusterUserSoapReturn>"
            ),
            Some(yes),
            "{body}"
        );
    }

    // Malformed envelopes: a Client fault with a clear faultstring, HTTP 500, no trace.
    for (xml, want) in [
        ("this is not xml", "not a SOAP 1.1"),
        ("<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body><urn:makeCallSoap xmlns:urn=\"urn:WD70\">", "document ends inside"),
        (&op_xml("dialEveryone", ""), "no operation &quot;dialEveryone&quot;"),
        ("", "empty request"),
    ] {
        let (st, body) = soap(http, xml);
        assert_eq!(st, 500, "{body}");
        assert!(body.contains("<faultcode>soapenv:Client</faultcode>"), "{body}");
        assert!(body.contains(want), "{want}: {body}");
    }
    let big = op_xml("makeCallSoap", &"<x/>".repeat(20_000));
    let (st, body) = soap(http, &big);
    assert_eq!(st, 500);
    assert!(body.contains("limit"), "{body}");

    // The WSDL, with this node's address.
    for path in [
        "/webdialer/wsdl/wd70.wsdl",
        "/webdialer/services/WebdialerSoapService70?wsdl",
    ] {
        let (st, _, body) = http_get(http, path);
        let body = String::from_utf8(body).unwrap();
        assert_eq!(st, 200);
        assert!(
            body.contains(&format!(
                "<wsdlsoap:address location=\"http://{http}/webdialer/services/WebdialerSoapService70\"/>"
            )),
            "{body}"
        );
        assert!(body.contains("<wsdl:operation name=\"getPrimaryLine\">"));
    }
    // Every refusal is logged without the password.
    assert!(
        !srv.logs().contains("wrong"),
        "passwords never reach the log"
    );
}

#[test]
fn r7_soap_overloaded_past_maximum_concurrent_call_requests() {
    let (_dir, srv) = start(1);
    let http = srv.addr("http");
    // The user's phone rings without answering: the first request holds the only slot.
    let sim_a = Sim::start(&srv, &["--device", PHONE_A, "--first-ip", "127.0.72.10"]);
    let a = sim_a.http(PHONE_A);
    let first = std::thread::spawn(move || {
        soap(
            http,
            &make_call_xml("jsmith", "cisco", "10002", "jsmith", PHONE_A, "10001"),
        )
    });
    wait_state(a, 10, "the user's phone rings", |s| !calls(s).is_empty());
    let (st, body) = soap(
        http,
        &make_call_xml("wdproxy", "wdproxy", "10002", "sadams", "", ""),
    );
    assert_eq!(st, 200);
    assert_eq!(code(&body), 9, "{body}");
    assert!(body.contains("Service overloaded"), "{body}");
    // Nobody answers: stopping the phone fails the first request, not the service.
    drop(sim_a);
    drop(srv);
    let _ = first.join();
}

#[test]
fn r7_soap_em_mode_dials_from_the_phone_the_user_is_logged_in_on() {
    let (_dir, srv) = start(3);
    let http = srv.addr("http");
    let sim_a = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_A,
            "--first-ip",
            "127.0.73.10",
            "--auto-answer",
        ],
    );
    let sim_b = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_B,
            "--first-ip",
            "127.0.73.20",
            "--auto-answer",
        ],
    );
    // jsmith logs in (EM) on his EM-enabled phone with his profile.
    let xml = "<request><appInfo><appID>emproxy</appID><appCertificate>emproxy</appCertificate></appInfo><login><deviceName>SEP00036BC7B973</deviceName><userID>jsmith</userID></login></request>";
    let form = format!("xml={}", ucm::wire::codec::percent_encode(xml));
    let (_, _, body) = post(
        http,
        "/emservice/EMServiceServlet",
        "application/x-www-form-urlencoded",
        "",
        &form,
    );
    assert!(body.contains("<success/>"), "{body}");
    wait_state(
        sim_a.http(PHONE_A),
        10,
        "the phone runs jsmith's profile",
        |s| s["last_notify"] == "check-sync",
    );
    std::thread::sleep(Duration::from_millis(500));
    let (_, body) = soap(
        http,
        &op_xml(
            "makeCallSoap",
            &format!(
                "{}<in1 xsi:type=\"xsd:string\">10002</in1>{}",
                cred("jsmith", "cisco"),
                profile("in2", "jsmith", "", "", true)
            ),
        ),
    );
    assert_eq!(code(&body), 0, "{body}");
    wait_state(sim_b.http(PHONE_B), 10, "B is connected", connected);
    let (_, body) = soap(
        http,
        &op_xml(
            "endCallSoap",
            &format!(
                "{}{}",
                cred("jsmith", "cisco"),
                profile("in1", "jsmith", "", "", true)
            ),
        ),
    );
    assert_eq!(code(&body), 0, "{body}");
}

fn dial(args: &[&str], password: Option<&str>) -> (i32, String, String) {
    let mut cmd = ucm();
    cmd.arg("dial")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.env_remove("UCM_PASSWORD").env_remove("UCM_SERVER");
    let mut child = cmd.spawn().unwrap();
    if let Some(p) = password {
        writeln!(child.stdin.take().unwrap(), "{p}").unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn r21_ucm_dial_says_what_it_knows_and_metrics_count_it() {
    let (_dir, srv) = start(3);
    let server = format!("http://{}", srv.addr("http"));
    let _sim_a = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_A,
            "--first-ip",
            "127.0.74.30",
            "--auto-answer",
        ],
    );
    // Nothing has 99999: WebDialer placed the call, it cannot know that anything rings.
    let (rc, out, err) = dial(
        &[
            "99999",
            "--user",
            "jsmith",
            "--password-stdin",
            "--server",
            &server,
        ],
        Some("cisco"),
    );
    assert_eq!(rc, 0, "{out}{err}");
    assert!(!out.contains("ringing"), "{out}");
    assert!(out.contains("the call to 99999 was placed"), "{out}");

    // What happened is on /metrics, by the names README lists.
    let (_, _, body) = crate::common::http_get(srv.addr("http"), "/metrics");
    let m = String::from_utf8_lossy(&body);
    let value = |series: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {series} in\n{m}"))
    };
    assert!(value("ucm_sip_registrations_total ") >= 1.0, "{m}");
    assert_eq!(
        value("ucm_webdialer_requests_total{code=\"0\",operation=\"makeCallSoap\"} "),
        1.0
    );
    assert!(value("ucm_calls_attempted_total ") >= 1.0, "{m}");
    assert!(
        value("ucm_http_requests_by_route_total{route=\"/webdialer/services/WebdialerSoapService70\",status=\"200\"} ")
            >= 1.0,
        "{m}"
    );
    for family in [
        "ucm_sip_registration_failures_total",
        "ucm_calls_connected_total",
        "ucm_calls_failed_total",
        "ucm_calls_active",
        "ucm_em_logins_total",
        "ucm_em_login_failures_total",
        "ucm_pages_total",
        "ucm_page_phones_joined_total",
    ] {
        assert!(
            m.contains(&format!("# TYPE {family} ")),
            "no {family} in\n{m}"
        );
    }
}

#[test]
fn r7_ucm_dial_places_and_ends_calls_with_exit_codes() {
    let (_dir, srv) = start(3);
    let server = format!("http://{}", srv.addr("http"));
    let sim_a = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_A,
            "--first-ip",
            "127.0.74.10",
            "--auto-answer",
        ],
    );
    let sim_b = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_B,
            "--first-ip",
            "127.0.74.20",
            "--auto-answer",
        ],
    );
    let s = ["--server", server.as_str()];

    let (rc, out, err) = dial(
        &["10002", "--user", "jsmith", "--password-stdin", s[0], s[1]],
        Some("cisco"),
    );
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("calling 10002"), "{out}");
    wait_state(sim_b.http(PHONE_B), 10, "B is connected", connected);
    let (rc, out, err) = dial(
        &[
            "--end",
            "--user",
            "jsmith",
            "--device",
            PHONE_A,
            "--password-stdin",
            "--json",
            s[0],
            s[1],
        ],
        Some("cisco"),
    );
    assert_eq!(rc, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["response_code"], 0);
    wait_state(sim_a.http(PHONE_A), 10, "A hung up", ended);

    // --profile lists devices and lines.
    let (rc, out, _) = dial(
        &[
            "--profile",
            "--user",
            "jsmith",
            "--password-stdin",
            s[0],
            s[1],
        ],
        Some("cisco"),
    );
    assert_eq!(rc, 0);
    assert!(
        out.contains("SEP00036BC7B973\n  10001 ; Internal_PT"),
        "{out}"
    );

    // 1: WebDialer refused, with the code and its meaning.
    let (rc, _, err) = dial(
        &["10002", "--user", "jsmith", "--password-stdin", s[0], s[1]],
        Some("bad"),
    );
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("code 2 (Authentication error)"), "{err}");
    let (rc, out, _) = dial(
        &[
            "10002",
            "--user",
            "nodev",
            "--password-stdin",
            "--json",
            s[0],
            s[1],
        ],
        Some("cisco"),
    );
    assert_eq!(rc, 1);
    assert!(out.contains("\"response_code\":5"), "{out}");
    // 2: unreachable, no password, usage.
    let (rc, _, err) = dial(
        &[
            "10002",
            "--user",
            "jsmith",
            "--password-stdin",
            "--server",
            "http://127.0.0.1:1",
        ],
        Some("cisco"),
    );
    assert_eq!(rc, 2, "{err}");
    let (rc, _, err) = dial(&["10002", "--user", "jsmith", s[0], s[1]], None);
    assert_eq!(rc, 2);
    assert!(err.contains("UCM_PASSWORD"), "{err}");
    let (rc, _, _) = dial(&["--user", "jsmith"], None);
    assert_eq!(rc, 2, "a destination, --end or --profile is required");
    // The password may come from the environment.
    let out = ucm()
        .args(["dial", "--profile", "--user", "jsmith", s[0], s[1]])
        .env("UCM_PASSWORD", "cisco")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn form_encode(s: &str) -> String {
    ucm::wire::codec::percent_encode(s)
}

/// POSTs a form to the servlet with the session cookie, if any.
fn servlet(
    http: SocketAddr,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
) -> (u16, String, String) {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect();
    let hdr = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    post(
        http,
        "/webdialer/Webdialer",
        "application/x-www-form-urlencoded",
        &hdr,
        &body.join("&"),
    )
}

/// The CSRF token the page's forms carry.
fn csrf_of(body: &str) -> String {
    body.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .filter(|t| t.len() == 32)
        .unwrap_or_else(|| panic!("no CSRF token in {body}"))
        .to_string()
}

fn session_cookie(head: &str) -> String {
    let line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie: wdsession="))
        .unwrap_or_else(|| panic!("no session cookie: {head}"));
    assert!(line.contains("HttpOnly"), "{line}");
    line["set-cookie: ".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn r7_html_servlet_login_preferences_dial_and_end_call() {
    let (_dir, srv) = start(3);
    let http = srv.addr("http");
    let sim_a = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_A,
            "--first-ip",
            "127.0.75.10",
            "--auto-answer",
        ],
    );
    let sim_b = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_B,
            "--first-ip",
            "127.0.75.20",
            "--auto-answer",
        ],
    );

    // No session: the login page, destination carried along.
    let (st, _, body) = http_get(http, "/webdialer/Webdialer?destination=10002");
    let body = String::from_utf8(body).unwrap();
    assert_eq!(st, 200);
    assert!(
        body.contains("<label for=\"uid\">User ID</label>"),
        "{body}"
    );
    assert!(
        body.contains("name=\"destination\" value=\"10002\""),
        "{body}"
    );
    assert!(!body.contains("<script"), "works without JavaScript");

    // Wrong password: the login page again, no cookie.
    let (st, head, body) = servlet(
        http,
        None,
        &[
            ("action", "login"),
            ("uid", "jsmith"),
            ("pwd", "x"),
            ("destination", "10002"),
        ],
    );
    assert_eq!(st, 401);
    assert!(!head.to_ascii_lowercase().contains("set-cookie"), "{head}");
    assert!(body.contains("Login failed"), "{body}");

    // Login → preferences with the user's device and line.
    let (st, head, body) = servlet(
        http,
        None,
        &[
            ("action", "login"),
            ("uid", "jsmith"),
            ("pwd", "cisco"),
            ("destination", "10002"),
        ],
    );
    assert_eq!(st, 200, "{body}");
    let cookie = session_cookie(&head);
    let csrf = csrf_of(&body);
    let csrf = csrf.as_str();
    assert!(body.contains("value=\"SEP00036BC7B973|10001\""), "{body}");
    assert!(body.contains("Use Extension Mobility"), "{body}");

    // Preferences → the dial page with the number filled in.
    let (_, _, body) = servlet(
        http,
        Some(&cookie),
        &[
            ("action", "prefs"),
            ("use", "device"),
            ("device", "SEP00036BC7B973|10001"),
            ("destination", "10002"),
            ("csrf", csrf),
        ],
    );
    assert!(
        body.contains("id=\"destination\" name=\"destination\" value=\"10002\""),
        "{body}"
    );
    // The cookie remembers: a later GET goes straight to the dial page.
    let (_, _, body) = post(
        http,
        "/webdialer/Webdialer?destination=10002",
        "text/plain",
        &format!("Cookie: {cookie}\r\n"),
        "",
    );
    assert!(body.contains("<h1>Dial</h1>"), "{body}");

    // Dial → the call is placed (user's phone first) → the end-call page.
    let (_, _, body) = servlet(
        http,
        Some(&cookie),
        &[("action", "dial"), ("destination", "10002"), ("csrf", csrf)],
    );
    assert!(
        body.contains("Calling 10002 from SEP00036BC7B973"),
        "{body}"
    );
    assert!(body.contains(">End call</button>"), "{body}");
    // Cisco's end-call dialog (a popup) closes itself after Duration of End Call Dialog (15 s).
    assert!(
        body.contains("<script>if(window.opener){document.getElementById(\"autoclose\").hidden=false;setTimeout(window.close, 15000);}</script>"),
        "{body}"
    );
    wait_state(sim_b.http(PHONE_B), 10, "B is connected", connected);
    wait_state(sim_a.http(PHONE_A), 10, "A is connected", connected);
    let (_, _, body) = servlet(
        http,
        Some(&cookie),
        &[("action", "end"), ("destination", "10002"), ("csrf", csrf)],
    );
    assert!(body.contains("The call has ended."), "{body}");
    wait_state(sim_b.http(PHONE_B), 10, "B hung up", ended);

    // Use Extension Mobility without a login: the seed's message.
    let (_, _, body) = servlet(
        http,
        Some(&cookie),
        &[
            ("action", "prefs"),
            ("use", "em"),
            ("destination", "10002"),
            ("csrf", csrf),
        ],
    );
    assert!(body.contains("Extension Mobility"), "{body}");
    let (_, _, body) = servlet(
        http,
        Some(&cookie),
        &[("action", "dial"), ("destination", "10002"), ("csrf", csrf)],
    );
    assert!(
        body.contains("Call to 10002 failed: User not logged in on any device"),
        "{body}"
    );

    // Someone else's device is refused on the preferences page.
    let (_, _, body) = servlet(
        http,
        Some(&cookie),
        &[
            ("action", "prefs"),
            ("use", "device"),
            ("device", "SEP00036BC7B974|10002"),
            ("csrf", csrf),
        ],
    );
    assert!(body.contains("is not a device of jsmith"), "{body}");

    // Logout ends the session.
    let (_, head, _) = servlet(http, Some(&cookie), &[("action", "logout"), ("csrf", csrf)]);
    assert!(head.contains("Max-Age=0"), "{head}");
    let (_, _, body) = servlet(
        http,
        Some(&cookie),
        &[("action", "dial"), ("destination", "10002"), ("csrf", csrf)],
    );
    assert!(body.contains("<h1>Log in</h1>"), "{body}");

    // A user with no device.
    let (_, _, body) = servlet(
        http,
        None,
        &[("action", "login"), ("uid", "nodev"), ("pwd", "cisco")],
    );
    assert!(
        body.contains("No supported device configured for user"),
        "{body}"
    );

    // makeCallProxy: an application with proxy rights places the call at once; one without
    // is refused (3).
    let (st, _, body) = servlet(
        http,
        None,
        &[
            ("destination", "10002"),
            ("uid", "jsmith"),
            ("appid", "wdproxy"),
            ("pwd", "wdproxy"),
        ],
    );
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("Calling 10002"), "{body}");
    wait_state(sim_b.http(PHONE_B), 10, "the proxied call reaches B", |s| {
        calls(s).iter().any(|c| c["state"] == "connected")
    });
    let (st, _, body) = servlet(
        http,
        None,
        &[
            ("destination", "10002"),
            ("uid", "jsmith"),
            ("appid", "wdapp"),
            ("pwd", "wdapp"),
        ],
    );
    assert_eq!(st, 403, "{body}");
    assert!(
        body.contains("Call to 10002 failed: wdapp has no proxy rights."),
        "{body}"
    );
}

#[test]
fn r7_html_session_expiry_sets_the_cookie_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let def = wd_cluster(dir.path(), 3, "");
    let text = std::fs::read_to_string(&def).unwrap().replace(
        "user_session_expiry_hours: 0",
        "user_session_expiry_hours: 2",
    );
    std::fs::write(&def, text).unwrap();
    let srv = Server::start(&["--config", &def]);
    let (_, head, _) = servlet(
        srv.addr("http"),
        None,
        &[("action", "login"), ("uid", "jsmith"), ("pwd", "cisco")],
    );
    assert!(head.contains("Max-Age=7200"), "{head}");
    // An unknown or forged cookie is a login page, never an error.
    let (st, _, body) = servlet(
        srv.addr("http"),
        Some("WDSESSION=00000000000000000000000000000000"),
        &[("action", "dial"), ("destination", "1")],
    );
    assert_eq!(st, 200);
    assert!(body.contains("<h1>Log in</h1>"), "{body}");
}

/// Every operation of Cisco's wd70 WSDL through zeep (issue 15: getProfileSoap's device list
/// was typed in a namespace the WSDL lacks).
#[test]
fn r15_zeep_runs_every_operation_from_ciscos_wsdl() {
    use std::io::BufRead;
    let have_zeep = std::process::Command::new("python3")
        .args(["-c", "import zeep"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_zeep {
        crate::common::skip_or_fail("Python's zeep is not installed (pip install zeep)");
        return;
    }
    let (_dir, srv) = start(3);
    let http = srv.addr("http");
    let _sim_a = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_A,
            "--first-ip",
            "127.0.76.10",
            "--auto-answer",
        ],
    );
    let sim_b = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_B,
            "--first-ip",
            "127.0.76.20",
            "--auto-answer",
        ],
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/webdialer_zeep/zeep_client.py"
    );
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .arg(format!("http://{http}/webdialer/wsdl/wd70.wsdl"))
        .args(["jsmith", "cisco", PHONE_A, "10001", "10002"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first: serde_json::Value =
        serde_json::from_str(&lines.next().expect("zeep printed results").unwrap()).unwrap();
    assert_eq!(first["isClusterUser"], true, "{first}");
    assert_eq!(first["primaryLine"], "10001", "{first}");
    assert_eq!(first["makeCall"][0], 0, "{first}");
    assert_eq!(first["makeCall"][1], "Success", "{first}");
    assert_eq!(first["badPassword"], 2, "{first}");
    // The device lists, read through the WSDL's own types.
    assert_eq!(first["profile"][0], 0, "{first}");
    assert_eq!(
        first["profile"][2],
        serde_json::json!([[PHONE_A, "10001 ; Internal_PT"]]),
        "{first}"
    );
    assert_eq!(first["profileDetail"][0], 0, "{first}");
    assert_eq!(first["profileDetail"][2][0][0], PHONE_A, "{first}");
    assert_eq!(
        first["profileDetail"][2][0][1],
        serde_json::json!(["10001 ; Internal_PT"]),
        "{first}"
    );
    wait_state(sim_b.http(PHONE_B), 10, "zeep's call reaches B", connected);
    writeln!(child.stdin.as_mut().unwrap()).unwrap();
    let second: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(second["endCall"], 0, "{second}");
    wait_state(sim_b.http(PHONE_B), 10, "B hung up", ended);
    assert!(child.wait().unwrap().success());
}

#[test]
fn r7_redirector_sends_a_cluster_b_user_starting_at_a_to_bs_webdialer() {
    // Clusters B and C: the demo cluster; B also has bob (whose home it is).
    let dir_b = tempfile::tempdir().unwrap();
    let def_b = wd_cluster(dir_b.path(), 3, "");
    let text = std::fs::read_to_string(&def_b).unwrap().replace(
        "end_users:\n",
        "end_users:\n  - userid: bob\n    last_name: Builder\n    password: bobpw\n",
    );
    std::fs::write(&def_b, text).unwrap();
    let srv_b = Server::start(&["--config", &def_b]);
    let dir_c = tempfile::tempdir().unwrap();
    let srv_c = Server::start(&["--config", &wd_cluster(dir_c.path(), 3, "")]);
    // Cluster A asks B and C over HTTPS (trusting their certificates) and a dead address.
    let dir_a = tempfile::tempdir().unwrap();
    let mut bundle = String::new();
    for s in [&srv_b, &srv_c] {
        bundle.push_str(&std::fs::read_to_string(s.data_dir.path().join("node-cert.pem")).unwrap());
    }
    let ca = write_file(dir_a.path(), "webdialers-ca.pem", &bundle);
    let (b_https, c_https) = (
        format!("https://{}", srv_b.addr("https")),
        format!("https://{}", srv_c.addr("https")),
    );
    let params = format!(
        "    webdialers: [\"{b_https}\", \"{c_https}/\", \"https://127.0.0.1:1\"]\n    redirector_ca_file: {}\n    redirector_timeout_ms: 2000\n",
        ca.display()
    );
    let srv_a = Server::start(&["--config", &wd_cluster(dir_a.path(), 3, &params)]);
    let a = srv_a.addr("http");
    let redirect = |fields: &[(&str, &str)]| {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect();
        post(
            a,
            "/webdialer/Redirector",
            "application/x-www-form-urlencoded",
            "",
            &body.join("&"),
        )
    };

    let (st, _, body) = http_get(a, "/webdialer/Redirector?destination=10002");
    assert_eq!(st, 200);
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.contains("name=\"destination\" value=\"10002\""),
        "{body}"
    );

    // bob (home: B) is sent to B's WebDialer, the destination carried along.
    let (st, head, _) = redirect(&[("uid", "bob"), ("pwd", "bobpw"), ("destination", "10002")]);
    assert_eq!(st, 303, "{head}");
    assert!(
        head.contains(&format!(
            "location: {b_https}/webdialer/Webdialer?destination=10002"
        )) || head.contains(&format!(
            "Location: {b_https}/webdialer/Webdialer?destination=10002"
        )),
        "{head}"
    );
    // B checks bob's password.
    let (st, _, body) = redirect(&[("uid", "bob"), ("pwd", "wrong"), ("destination", "10002")]);
    assert_eq!(st, 401);
    assert!(body.contains("Login failed"), "{body}");
    // Nobody's user: a clear error page.
    let (st, _, body) = redirect(&[("uid", "nobody"), ("pwd", "x")]);
    assert_eq!(st, 404);
    assert!(
        body.contains("nobody is not a user of any WebDialer"),
        "{body}"
    );
    // jsmith is a user of all three: a page to pick from.
    let (st, _, body) = redirect(&[
        ("uid", "jsmith"),
        ("pwd", "cisco"),
        ("destination", "10002"),
    ]);
    assert_eq!(st, 200, "{body}");
    for base in [format!("http://{a}"), b_https.clone(), c_https.clone()] {
        assert!(
            body.contains(&format!(
                "href=\"{base}/webdialer/Webdialer?destination=10002\""
            )),
            "{base}: {body}"
        );
    }
    // ucm dial --redirector: bob's requests go to B (A would refuse bob with 2; B answers 5,
    // bob having no phone).
    let (rc, out, err) = dial(
        &[
            "--profile",
            "--user",
            "bob",
            "--password-stdin",
            "--json",
            "--insecure",
            "--redirector",
            &format!("http://{a}"),
        ],
        Some("bobpw"),
    );
    assert_eq!(rc, 1, "{out}{err}");
    assert!(out.contains("\"response_code\":5"), "{out}");
    let (rc, _, err) = dial(
        &[
            "--profile",
            "--user",
            "nobody",
            "--password-stdin",
            "--redirector",
            &format!("http://{a}"),
        ],
        Some("x"),
    );
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("not a user of any WebDialer"), "{err}");
    // The unreachable WebDialer was skipped and logged.
    std::thread::sleep(Duration::from_millis(200));
    let logs = srv_a.logs();
    assert!(
        logs.contains("Redirector: WebDialer skipped") && logs.contains("127.0.0.1:1"),
        "{logs}"
    );
}

/// A GET with a cookie, over plain HTTP.
fn get_with_cookie(addr: SocketAddr, path: &str, cookie: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let (status, head, body) = split_http(&raw);
    (status, head, String::from_utf8(body).unwrap())
}

/// The seed's note on the Redirector: a user who logged in there and whose cookie is still
/// live is not asked again; the cookie lasts User Session Expiry hours.
#[test]
fn r21_the_redirector_keeps_a_session_by_its_cookie() {
    let dir_b = tempfile::tempdir().unwrap();
    let def_b = wd_cluster(dir_b.path(), 3, "");
    let text = std::fs::read_to_string(&def_b).unwrap().replace(
        "end_users:\n",
        "end_users:\n  - userid: bob\n    last_name: Builder\n    password: bobpw\n",
    );
    std::fs::write(&def_b, text).unwrap();
    let srv_b = Server::start(&["--config", &def_b]);
    let dir_a = tempfile::tempdir().unwrap();
    let ca = write_file(
        dir_a.path(),
        "b-ca.pem",
        &std::fs::read_to_string(srv_b.data_dir.path().join("node-cert.pem")).unwrap(),
    );
    let b_https = format!("https://{}", srv_b.addr("https"));
    let params = format!(
        "    webdialers: [\"{b_https}\"]\n    redirector_ca_file: {}\n    redirector_timeout_ms: 2000\n",
        ca.display()
    );
    let def_a = wd_cluster(dir_a.path(), 3, &params);
    let text = std::fs::read_to_string(&def_a).unwrap().replace(
        "user_session_expiry_hours: 0",
        "user_session_expiry_hours: 2",
    );
    std::fs::write(&def_a, text).unwrap();
    let srv_a = Server::start(&["--config", &def_a]);
    let a = srv_a.addr("http");
    let location = |head: &str| {
        head.lines()
            .find(|l| l.to_ascii_lowercase().starts_with("location: "))
            .map(|l| l["location: ".len()..].trim().to_string())
            .unwrap_or_default()
    };

    // Without a cookie: the login form.
    let (st, _, body) = get_with_cookie(a, "/webdialer/Redirector?destination=10002", "x=y");
    assert_eq!(st, 200);
    assert!(body.contains("name=\"uid\""), "{body}");
    // bob logs in once: sent to B, and the Redirector's cookie lives two hours.
    let (st, head, _) = post(
        a,
        "/webdialer/Redirector",
        "application/x-www-form-urlencoded",
        "",
        "uid=bob&pwd=bobpw&destination=10002",
    );
    assert_eq!(st, 303, "{head}");
    let line = head
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: wdredirector=")
        })
        .unwrap_or_else(|| panic!("no Redirector cookie: {head}"));
    assert!(
        line.contains("HttpOnly") && line.contains("Max-Age=7200"),
        "{line}"
    );
    let cookie = line["set-cookie: ".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    // Later requests with the cookie go straight to bob's WebDialer, with their destination.
    let (st, head, _) = get_with_cookie(a, "/webdialer/Redirector?destination=10003", &cookie);
    assert_eq!(st, 303, "{head}");
    assert_eq!(
        location(&head),
        format!("{b_https}/webdialer/Webdialer?destination=10003")
    );
    let (st, head, _) = get_with_cookie(a, "/webdialer/WebdialerRedirector", &cookie);
    assert_eq!(st, 303, "{head}");
    assert_eq!(location(&head), format!("{b_https}/webdialer/Webdialer"));
    // login=1 asks again (someone else at this browser); a forged cookie is a login form.
    let (st, _, body) = get_with_cookie(a, "/webdialer/Redirector?login=1", &cookie);
    assert_eq!(st, 200);
    assert!(body.contains("name=\"uid\""), "{body}");
    let (st, _, body) = get_with_cookie(
        a,
        "/webdialer/Redirector?destination=1",
        "WDREDIRECTOR=00000000000000000000000000000000",
    );
    assert_eq!(st, 200);
    assert!(body.contains("name=\"uid\""), "{body}");
    // A login with the cookie but a wrong password is still refused: the form decides.
    let (st, _, body) = post(
        a,
        "/webdialer/Redirector",
        "application/x-www-form-urlencoded",
        &format!("Cookie: {cookie}\r\n"),
        "uid=bob&pwd=wrong&destination=10002",
    );
    assert_eq!(st, 401);
    assert!(body.contains("Login failed"), "{body}");
    // A restart of the Redirector's node forgets the session, as the seed says.
    drop(srv_a);
    let srv_a = Server::start(&["--config", &def_a]);
    let (st, _, body) = get_with_cookie(
        srv_a.addr("http"),
        "/webdialer/Redirector?destination=10003",
        &cookie,
    );
    assert_eq!(st, 200);
    assert!(body.contains("name=\"uid\""), "{body}");
}

#[test]
fn r7_response_codes_4_directory_and_8_service_error() {
    let (_dir, srv) = start(3);
    let http = srv.addr("http");
    // 4: a proxy acts for a user the directory lacks (makeCall, getProfile, makeCallProxy).
    let (_, body) = soap(
        http,
        &make_call_xml("wdproxy", "wdproxy", "10002", "nobody", "", ""),
    );
    assert_eq!(code(&body), 4, "{body}");
    assert!(body.contains("Directory error"), "{body}");
    let (_, body) = soap(
        http,
        &op_xml(
            "getProfileSoap",
            &format!(
                "{}<in1 xsi:type=\"xsd:string\">nobody</in1>",
                cred("wdproxy", "wdproxy")
            ),
        ),
    );
    assert_eq!(code(&body), 4, "{body}");
    let (st, _, body) = servlet(
        http,
        None,
        &[
            ("destination", "10002"),
            ("uid", "nobody"),
            ("appid", "wdproxy"),
            ("pwd", "wdproxy"),
        ],
    );
    assert_eq!(st, 200, "{body}");
    assert!(
        body.contains("Call to 10002 failed: user nobody is not in the directory."),
        "{body}"
    );

    // 8: the database behind the password checks breaks under the running node.
    let db = srv.data_dir.path().join("ucm.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display()))
            .await
            .unwrap();
        sqlx::query("DROP TABLE credential_failures")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();
    });
    let (st, body) = soap(
        http,
        &make_call_xml("jsmith", "cisco", "10002", "jsmith", PHONE_A, "10001"),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(code(&body), 8, "{body}");
    assert!(body.contains("Service error: database"), "{body}");
}

#[test]
fn r7_response_code_6_when_the_node_shuts_down_during_a_call_request() {
    let (_dir, mut srv) = start(3);
    let http = srv.addr("http");
    // The user's phone rings without answering; the node is told to stop meanwhile.
    let sim_a = Sim::start(&srv, &["--device", PHONE_A, "--first-ip", "127.0.77.10"]);
    let first = std::thread::spawn(move || {
        soap(
            http,
            &make_call_xml("jsmith", "cisco", "10002", "jsmith", PHONE_A, "10001"),
        )
    });
    wait_state(sim_a.http(PHONE_A), 10, "the user's phone rings", |s| {
        !calls(s).is_empty()
    });
    let status = srv.terminate();
    let (st, body) = first.join().expect("the request thread");
    assert_eq!(st, 200, "{body}");
    assert_eq!(code(&body), 6, "{body}");
    assert!(
        body.contains("Service temporarily unavailable: the node is shutting down"),
        "{body}"
    );
    assert!(status.success(), "{status:?}");
}

/// A request to the pre-7.0 service, in its namespace.
fn legacy_xml(op: &str, parts: &str) -> String {
    op_xml(op, parts).replace("urn:WD70", "urn:WebdialerSoap")
}

fn legacy_soap(addr: SocketAddr, xml: &str) -> (u16, String) {
    let (st, head, body) = post(
        addr,
        "/webdialer/services/WebdialerSoapService",
        "text/xml; charset=utf-8",
        "SOAPAction: \"\"\r\n",
        xml,
    );
    assert!(head.to_ascii_lowercase().contains("text/xml"), "{head}");
    (st, body)
}

#[test]
fn r7_legacy_webdialersoapservice_places_and_ends_calls_in_its_namespace() {
    let (_dir, srv) = start(3);
    let http = srv.addr("http");
    let sim_a = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_A,
            "--first-ip",
            "127.0.78.10",
            "--auto-answer",
        ],
    );
    let sim_b = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_B,
            "--first-ip",
            "127.0.78.20",
            "--auto-answer",
        ],
    );
    let (st, body) = legacy_soap(
        http,
        &legacy_xml(
            "makeCallSoap",
            &format!(
                "{}<in1 xsi:type=\"xsd:string\">10002</in1>{}",
                cred("jsmith", "cisco"),
                profile("in2", "jsmith", PHONE_A, "10001", false)
            ),
        ),
    );
    assert_eq!(st, 200, "{body}");
    assert_eq!(code(&body), 0, "{body}");
    assert!(
        body.contains("<ns1:makeCallSoapResponse")
            && body.contains("xmlns:ns1=\"urn:WebdialerSoap\"")
            && !body.contains("urn:WD70"),
        "answered in the old namespace: {body}"
    );
    wait_state(sim_b.http(PHONE_B), 10, "B is connected", connected);
    let (_, body) = legacy_soap(
        http,
        &legacy_xml(
            "endCallSoap",
            &format!(
                "{}{}",
                cred("jsmith", "cisco"),
                profile("in1", "jsmith", PHONE_A, "", false)
            ),
        ),
    );
    assert_eq!(code(&body), 0, "{body}");
    wait_state(sim_a.http(PHONE_A), 10, "A hung up", ended);
    // getProfileSoap and isClusterUserSoap are there too, with the same codes.
    let (_, body) = legacy_soap(
        http,
        &legacy_xml(
            "getProfileSoap",
            &format!(
                "{}<in1 xsi:type=\"xsd:string\">jsmith</in1>",
                cred("jsmith", "bad")
            ),
        ),
    );
    assert_eq!(code(&body), 2, "{body}");
    let (_, body) = legacy_soap(
        http,
        &legacy_xml(
            "isClusterUserSoap",
            "<in0 xsi:type=\"xsd:string\">jsmith</in0>",
        ),
    );
    assert_eq!(
        between(
            &body,
            "<isClusterUserSoapReturn",
            "</isClusterUserSoapReturn>"
        ),
        Some("true"),
        "{body}"
    );
    // What 7.0 added is not in the old service: a Client fault naming what is.
    let (st, body) = legacy_soap(
        http,
        &legacy_xml("getPrimaryLine", &cred("jsmith", "cisco")),
    );
    assert_eq!(st, 500, "{body}");
    assert!(
        body.contains("no operation &quot;getPrimaryLine&quot; in WebdialerSoapService (makeCallSoap, endCallSoap, getProfileSoap, isClusterUserSoap)"),
        "{body}"
    );
}

#[test]
fn r7_html_forms_carry_a_csrf_token_and_requests_without_it_get_403() {
    let (_dir, srv) = start(3);
    let http = srv.addr("http");
    let (_, head, body) = servlet(
        http,
        None,
        &[
            ("action", "login"),
            ("uid", "jsmith"),
            ("pwd", "cisco"),
            ("destination", "10002"),
        ],
    );
    let cookie = session_cookie(&head);
    let csrf = csrf_of(&body);
    // Every form of the session's pages carries the token.
    assert_eq!(
        body.matches("<form").count(),
        body.matches(&format!("name=\"csrf\" value=\"{csrf}\""))
            .count(),
        "{body}"
    );
    let prefs = [
        ("action", "prefs"),
        ("use", "device"),
        ("device", "SEP00036BC7B973|10001"),
        ("destination", "10002"),
    ];
    // Missing, wrong, another session's: 403 and nothing done.
    let (_, _, other) = servlet(
        http,
        None,
        &[("action", "login"), ("uid", "sadams"), ("pwd", "cisco")],
    );
    let other = csrf_of(&other);
    for token in [
        None,
        Some("0123456789abcdef0123456789abcdef"),
        Some(other.as_str()),
    ] {
        let mut f = prefs.to_vec();
        if let Some(t) = token {
            f.push(("csrf", t));
        }
        let (st, _, body) = servlet(http, Some(&cookie), &f);
        assert_eq!(st, 403, "{token:?}: {body}");
        assert!(body.contains("missing or wrong security token"), "{body}");
        assert!(body.contains("Nothing was done."), "{body}");
    }
    // A link that tries to act (GET with an action) is refused the same way.
    let (st, _, body) = post(
        http,
        "/webdialer/Webdialer?action=dial&destination=10002",
        "text/plain",
        &format!("Cookie: {cookie}\r\n"),
        "",
    );
    assert_eq!(st, 403, "{body}");
    let (_, _, body) = servlet(
        http,
        Some(&cookie),
        &[("action", "logout"), ("destination", "10002")],
    );
    assert!(
        body.contains("security token"),
        "logout needs it too: {body}"
    );
    // Nothing happened: no preference was saved, the session lives on.
    let (st, _, body) = post(
        http,
        "/webdialer/Webdialer?destination=10002",
        "text/plain",
        &format!("Cookie: {cookie}\r\n"),
        "",
    );
    assert_eq!(st, 200);
    assert!(body.contains("<h1>Preferences</h1>"), "{body}");
    // With the token the same form works.
    let mut f = prefs.to_vec();
    f.push(("csrf", &csrf));
    let (st, _, body) = servlet(http, Some(&cookie), &f);
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("<h1>Dial</h1>"), "{body}");
    assert_eq!(csrf_of(&body), csrf, "one token per session");
    assert_eq!(
        body.matches("<form").count(),
        body.matches(&format!("name=\"csrf\" value=\"{csrf}\""))
            .count(),
        "every form of the dial page carries it: {body}"
    );
    assert!(srv
        .logs()
        .contains("without the session's CSRF token refused"));
}

/// A headless Chromium driven over the W3C WebDriver protocol (chromedriver on a loopback
/// port); chromedriver, and with it the browser, is killed on drop.
struct Browser {
    driver: std::process::Child,
    base: String,
    session: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
    _profile: tempfile::TempDir,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// `None` (after printing why, or failing under CI) when Chromium or chromedriver is missing.
    fn start() -> Option<Browser> {
        let (chromium, driver) = ("/usr/bin/chromium", "/usr/bin/chromedriver");
        for tool in [chromium, driver] {
            if !std::path::Path::new(tool).exists() {
                crate::common::skip_or_fail(&format!(
                    "{tool} is not installed (apt-get install chromium chromium-driver)"
                ));
                return None;
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(driver)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = ucm::client::http_client(&ucm::client::ClientOptions {
            timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        })
        .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser {
            driver: child,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            http,
            rt,
            _profile: profile,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(v) = b.call(reqwest::Method::GET, "/status", None) {
                if v["ready"] == true {
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "chromedriver not ready within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--window-size=900,700", "--no-proxy-server",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", b._profile.path().display()),
                ]
            }
        }}});
        let v = b
            .call(reqwest::Method::POST, "/session", Some(caps))
            .expect("new WebDriver session");
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId: {v}"))
            .to_string();
        Some(b)
    }

    /// One WebDriver command: its `value`, or the error it answered.
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let url = format!("{}{path}", self.base);
        self.rt.block_on(async {
            let mut req = self.http.request(method, &url);
            if let Some(b) = body {
                req = req
                    .header("Content-Type", "application/json")
                    .body(b.to_string());
            }
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| format!("{status}: {e}"))?;
            if !status.is_success() {
                return Err(format!("{status}: {}", v["value"]));
            }
            Ok(v["value"].clone())
        })
    }

    fn cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let p = format!("/session/{}{path}", self.session);
        self.call(method, &p, Some(body))
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    fn goto(&self, url: &str) {
        self.cmd(
            reqwest::Method::POST,
            "/url",
            serde_json::json!({ "url": url }),
        );
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            reqwest::Method::POST,
            "/element",
            serde_json::json!({"using": "css selector", "value": css}),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            serde_json::json!({ "text": text }),
        );
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            serde_json::json!({}),
        );
    }

    fn displayed(&self, css: &str) -> bool {
        let e = self.find(css);
        let p = format!("/session/{}/element/{e}/displayed", self.session);
        self.call(reqwest::Method::GET, &p, None)
            .unwrap_or_else(|e| panic!("displayed {css}: {e}"))
            == true
    }

    fn source(&self) -> String {
        let p = format!("/session/{}/source", self.session);
        let v = self
            .call(reqwest::Method::GET, &p, None)
            .unwrap_or_else(|e| panic!("page source: {e}"));
        v.as_str().unwrap_or_default().to_string()
    }

    /// The page source once it contains `text` (a click that submits a form may return before
    /// the next page has loaded); the last source after 10 s otherwise.
    fn source_with(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.source();
            if s.contains(text) || std::time::Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The page as a PNG (WebDriver sends it base64-encoded).
    fn screenshot(&self) -> Vec<u8> {
        let p = format!("/session/{}/screenshot", self.session);
        let v = self
            .call(reqwest::Method::GET, &p, None)
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        base64_decode(v.as_str().unwrap_or_default())
    }
}

impl Browser {
    /// Runs `script` in the page (WebDriver "execute sync").
    fn execute(&self, script: &str) -> serde_json::Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            serde_json::json!({ "script": script, "args": [] }),
        )
    }

    fn windows(&self) -> Vec<String> {
        let p = format!("/session/{}/window/handles", self.session);
        let v = self
            .call(reqwest::Method::GET, &p, None)
            .unwrap_or_else(|e| panic!("window handles: {e}"));
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| h.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn switch_to(&self, handle: &str) {
        self.cmd(
            reqwest::Method::POST,
            "/window",
            serde_json::json!({ "handle": handle }),
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let p = format!("/session/{}", self.session);
            let _ = self.call(reqwest::Method::DELETE, &p, None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn r7_chromium_logs_in_picks_a_device_and_dials_and_the_phones_connect() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let (_dir, srv) = start(3);
    let http = srv.addr("http");
    let sim_a = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_A,
            "--first-ip",
            "127.0.79.10",
            "--auto-answer",
        ],
    );
    let sim_b = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_B,
            "--first-ip",
            "127.0.79.20",
            "--auto-answer",
        ],
    );
    // UCM_SCREENSHOT_DIR=dir keeps a PNG of each page to look at.
    let shots = std::env::var_os("UCM_SCREENSHOT_DIR").map(std::path::PathBuf::from);
    let shot = |name: &str| {
        let png = browser.screenshot();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        if let Some(d) = &shots {
            std::fs::write(d.join(format!("webdialer-{name}.png")), png).unwrap();
        }
    };

    browser.goto(&format!(
        "http://{http}/webdialer/Webdialer?destination=10002"
    ));
    assert!(browser.source().contains("<h1>Log in</h1>"));
    shot("login");
    browser.type_into("#uid", "jsmith");
    browser.type_into("#pwd", "cisco");
    browser.click("button[type=submit]");

    let page = browser.source_with("<h1>Preferences</h1>");
    assert!(page.contains("<h1>Preferences</h1>"), "{page}");
    browser.click("#use-device");
    browser.click("option[value=\"SEP00036BC7B973|10001\"]");
    shot("preferences");
    browser.click("button:not(.secondary)");

    let page = browser.source_with("<h1>Dial</h1>");
    assert!(page.contains("<h1>Dial</h1>"), "{page}");
    assert!(
        page.contains("value=\"10002\""),
        "the number is filled in: {page}"
    );
    shot("dial");
    browser.click("button:not(.secondary)");

    let page = browser.source_with("Calling 10002 from SEP00036BC7B973");
    assert!(
        page.contains("Calling 10002 from SEP00036BC7B973"),
        "{page}"
    );
    shot("calling");
    // A tab the user opened cannot be closed by the page's script: nothing is promised.
    assert!(!browser.displayed("#autoclose"), "{page}");
    wait_state(
        sim_a.http(PHONE_A),
        10,
        "the user's phone is connected",
        connected,
    );
    let sb = wait_state(
        sim_b.http(PHONE_B),
        10,
        "the destination is connected",
        connected,
    );
    assert_eq!(calls(&sb)[0]["remote_number"], "10001", "{sb:#}");

    browser.click("button:not(.secondary)");
    let page = browser.source_with("The call has ended.");
    assert!(page.contains("The call has ended."), "{page}");
    wait_state(sim_b.http(PHONE_B), 10, "B hung up", ended);
    wait_state(sim_a.http(PHONE_A), 10, "A hung up", ended);
}

/// curl over HTTPS to the node (its own certificate, so `-k`): status, head and body.
fn curl_https(url: &str, args: &[&str]) -> (u16, String, String) {
    let out = std::process::Command::new("curl")
        .args(["-k", "-s", "-i", "--max-time", "20"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let (status, head, body) = split_http(&out.stdout);
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

/// WebDialer over HTTPS (issue 15): the session cookie set over HTTPS is `Secure` (and
/// `HttpOnly`, `SameSite`); an action sent with GET, even with the right CSRF token in the
/// URL, is refused with 405 and does nothing; `redirect_http_to_https` sends plain HTTP pages
/// to HTTPS.
#[test]
fn r15_webdialer_secure_cookie_post_only_actions_and_https_redirect() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        crate::common::skip_or_fail("curl is not installed");
        return;
    }
    let (_dir, srv) = start(3);
    let https = srv.addr("https");
    let url = format!("https://127.0.0.1:{}/webdialer/Webdialer", https.port());
    let (st, head, body) = curl_https(&url, &["-d", "action=login&uid=jsmith&pwd=cisco"]);
    assert_eq!(st, 200, "{head}{body}");
    let set = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie: wdsession="))
        .unwrap_or_else(|| panic!("no session cookie: {head}"))
        .to_string();
    for attr in ["; Secure", "; HttpOnly", "; SameSite=Lax"] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    let cookie = set["set-cookie: ".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = csrf_of(&body);
    // Plain HTTP cannot carry a Secure cookie back: there it is HttpOnly and SameSite only.
    let (_, head, _) = servlet(
        srv.addr("http"),
        None,
        &[("action", "login"), ("uid", "jsmith"), ("pwd", "cisco")],
    );
    let plain = session_cookie(&head);
    assert!(!head.contains("; Secure"), "{plain}: {head}");

    // A GET that tries to act, token and all, is refused and changes nothing.
    let (st, head, body) = curl_https(
        &format!("{url}?action=prefs&use=em&csrf={csrf}&destination=10002"),
        &["-H", &format!("Cookie: {cookie}")],
    );
    assert_eq!(st, 405, "{head}{body}");
    assert!(
        head.to_ascii_lowercase().contains("allow: get, post"),
        "{head}"
    );
    assert!(body.contains("Nothing was done"), "{body}");
    let (st, _, body) = curl_https(&url, &["-H", &format!("Cookie: {cookie}")]);
    assert_eq!(st, 200);
    assert!(
        body.contains("Place calls from"),
        "no preference was saved by the GET: {body}"
    );
    // The same action as a POST form works.
    let (st, _, body) = curl_https(
        &url,
        &[
            "-H",
            &format!("Cookie: {cookie}"),
            "-d",
            &format!("action=prefs&use=em&csrf={csrf}&destination=10002"),
        ],
    );
    assert_eq!(st, 200);
    assert!(body.contains("Extension Mobility"), "{body}");
    drop(srv);

    // With the parameter, plain HTTP pages move to HTTPS.
    let dir = tempfile::tempdir().unwrap();
    let def = wd_cluster(dir.path(), 3, "    redirect_http_to_https: true\n");
    let srv = Server::start(&["--config", &def]);
    let (st, head, _) = http_get(srv.addr("http"), "/webdialer/Webdialer?destination=10002");
    assert_eq!(st, 301, "{head}");
    let want = format!(
        "https://127.0.0.1:{}/webdialer/Webdialer?destination=10002",
        srv.addr("https").port()
    );
    assert!(
        head.lines()
            .any(|l| l.eq_ignore_ascii_case(&format!("location: {want}"))),
        "{head}"
    );
    let (st, _, body) = curl_https(&want, &[]);
    assert_eq!(st, 200, "HTTPS itself is served: {body}");
}

/// makeCall gives up when the user's phone does not answer within `answer_timeout_seconds`
/// (issue 15): code 1, and the phone stops ringing (CANCEL) instead of ringing on and calling
/// the destination when someone picks up later.
#[test]
fn r15_make_call_timeout_cancels_the_users_phone() {
    let dir = tempfile::tempdir().unwrap();
    let def = wd_cluster(dir.path(), 3, "    answer_timeout_seconds: 1\n");
    let srv = Server::start(&["--config", &def]);
    let http = srv.addr("http");
    // A answers only after 4 s, long after the request gave up.
    let sim_a = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_A,
            "--first-ip",
            "127.0.78.10",
            "--answer-delay-ms",
            "4000",
        ],
    );
    let sim_b = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_B,
            "--first-ip",
            "127.0.78.20",
            "--auto-answer",
        ],
    );
    let (st, body) = soap(
        http,
        &make_call_xml("jsmith", "cisco", "10002", "jsmith", PHONE_A, "10001"),
    );
    assert_eq!((st, code(&body)), (200, 1), "{body}");
    assert!(body.contains("did not answer within 1s"), "{body}");
    let sa = wait_state(sim_a.http(PHONE_A), 10, "A's ringing is cancelled", ended);
    assert_eq!(calls(&sa)[0]["end_reason"], "cancelled by caller", "{sa:#}");
    assert!(
        calls(&state(sim_b.http(PHONE_B))).is_empty(),
        "the destination was never called"
    );
    // endCall finds no call: the request is over.
    let (_, body) = soap(http, &end_call_xml("jsmith", "cisco", PHONE_A));
    assert_eq!(code(&body), 1, "{body}");
}

/// A node told to stop while a makeCall rings the user's phone answers 6 and cancels the
/// ringing before it goes (issue 15): no phone rings on for a node that is gone.
#[test]
fn r15_node_shutting_down_cancels_the_ringing_phone() {
    let (_dir, mut srv) = start(3);
    let http = srv.addr("http");
    let sim_a = Sim::start(&srv, &["--device", PHONE_A, "--first-ip", "127.0.78.30"]);
    let first = std::thread::spawn(move || {
        soap(
            http,
            &make_call_xml("jsmith", "cisco", "10002", "jsmith", PHONE_A, "10001"),
        )
    });
    wait_state(sim_a.http(PHONE_A), 10, "the user's phone rings", |s| {
        calls(s).iter().any(|c| c["state"] == "ringing")
    });
    let status = srv.terminate();
    let (_, body) = first.join().expect("the request thread");
    assert_eq!(code(&body), 6, "{body}");
    assert!(status.success(), "{status:?}");
    let sa = wait_state(sim_a.http(PHONE_A), 10, "A's ringing is cancelled", ended);
    assert_eq!(calls(&sa)[0]["end_reason"], "cancelled by caller", "{sa:#}");
}

/// endCall while makeCall still rings the user's phone (issue 15): the request ends (code 1)
/// and the ringing is cancelled, instead of the call going on once someone answers.
#[test]
fn r15_end_call_during_make_call_cancels_the_ringing_phone() {
    let (_dir, srv) = start(3);
    let http = srv.addr("http");
    let sim_a = Sim::start(&srv, &["--device", PHONE_A, "--first-ip", "127.0.78.40"]);
    let first = std::thread::spawn(move || {
        soap(
            http,
            &make_call_xml("jsmith", "cisco", "10002", "jsmith", PHONE_A, "10001"),
        )
    });
    wait_state(sim_a.http(PHONE_A), 10, "the user's phone rings", |s| {
        calls(s).iter().any(|c| c["state"] == "ringing")
    });
    let (_, body) = soap(http, &end_call_xml("jsmith", "cisco", PHONE_A));
    assert_eq!(code(&body), 0, "{body}");
    let (_, body) = first.join().expect("the request thread");
    assert_eq!(code(&body), 1, "{body}");
    assert!(body.contains("endCall ended the call"), "{body}");
    let sa = wait_state(sim_a.http(PHONE_A), 10, "A's ringing is cancelled", ended);
    assert_eq!(calls(&sa)[0]["end_reason"], "cancelled by caller", "{sa:#}");
}

/// A SOAP client that goes away while makeCall rings the user's phone (issue 15): the request
/// is over, so the ringing is cancelled rather than the call going on when someone answers.
#[test]
fn r15_client_gone_during_make_call_cancels_the_ringing_phone() {
    let (_dir, srv) = start(3);
    let http = srv.addr("http");
    let sim_a = Sim::start(&srv, &["--device", PHONE_A, "--first-ip", "127.0.78.50"]);
    let xml = make_call_xml("jsmith", "cisco", "10002", "jsmith", PHONE_A, "10001");
    let mut s = TcpStream::connect(http).unwrap();
    write!(
        s,
        "POST /webdialer/services/WebdialerSoapService70 HTTP/1.1\r\nHost: {http}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{xml}",
        xml.len(),
    )
    .unwrap();
    wait_state(sim_a.http(PHONE_A), 10, "the user's phone rings", |s| {
        calls(s).iter().any(|c| c["state"] == "ringing")
    });
    drop(s);
    let sa = wait_state(sim_a.http(PHONE_A), 10, "A's ringing is cancelled", ended);
    assert_eq!(calls(&sa)[0]["end_reason"], "cancelled by caller", "{sa:#}");
}

/// WebDialer as Cisco's pages use it: another page opens it in a popup with the number to
/// dial; the login page shows that number and keeps the user ID after a wrong password; the
/// device list reads as words; the end-call dialog promises to close and does; a failed call
/// says why in words.
#[test]
fn r21_chromium_popup_shows_the_number_keeps_the_user_and_closes_itself() {
    let Some(browser) = Browser::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let def = wd_cluster(dir.path(), 3, "    end_call_dialog_seconds: 2\n");
    let srv = Server::start(&["--config", &def]);
    let http = srv.addr("http");
    let sim_a = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_A,
            "--first-ip",
            "127.0.81.10",
            "--auto-answer",
        ],
    );
    let sim_b = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_B,
            "--first-ip",
            "127.0.81.20",
            "--auto-answer",
        ],
    );

    // The opener: any page of the node's origin.
    browser.goto(&format!("http://{http}/webdialer/Webdialer"));
    let opener = browser.windows();
    assert_eq!(opener.len(), 1);
    browser.execute("window.open('/webdialer/Webdialer?destination=10002', 'webdialer', 'width=500,height=600');");
    let popup = browser
        .windows()
        .into_iter()
        .find(|h| !opener.contains(h))
        .expect("the popup opened");
    browser.switch_to(&popup);
    let page = browser.source_with("Log in to call");
    assert!(
        page.contains("Log in to call <strong id=\"number\">10002</strong>"),
        "{page}"
    );

    // A wrong password: the user ID stays, the number too.
    browser.type_into("#uid", "jsmith");
    browser.type_into("#pwd", "wrong");
    browser.click("button[type=submit]");
    let page = browser.source_with("Login failed");
    assert!(page.contains("Login failed"), "{page}");
    assert!(page.contains("value=\"jsmith\""), "{page}");
    assert!(page.contains("Log in to call"), "{page}");
    browser.type_into("#pwd", "cisco");
    browser.click("button[type=submit]");

    let page = browser.source_with("<h1>Preferences</h1>");
    assert!(
        page.contains("SEP00036BC7B973 (") && page.contains(") · line 10001</option>"),
        "the device list reads as words: {page}"
    );
    browser.click("#use-device");
    browser.click("option[value=\"SEP00036BC7B973|10001\"]");
    browser.click("button:not(.secondary)");
    browser.source_with("<h1>Dial</h1>");
    browser.click("button:not(.secondary)");
    let page = browser.source_with("Calling 10002 from SEP00036BC7B973");
    assert!(page.contains("Calling 10002"), "{page}");
    // A window a script opened: the promise is shown and kept.
    assert!(browser.displayed("#autoclose"), "{page}");
    wait_state(sim_b.http(PHONE_B), 10, "B is connected", connected);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while browser.windows().contains(&popup) {
        assert!(
            std::time::Instant::now() < deadline,
            "the end-call dialog did not close itself"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    browser.switch_to(&opener[0]);

    // The call is still up after the dialog closed; end it the way a script would.
    let (st, body) = soap(http, &end_call_xml("jsmith", "cisco", PHONE_A));
    assert_eq!((st, code(&body)), (200, 0), "{body}");
    wait_state(sim_a.http(PHONE_A), 10, "A hung up", ended);
}

/// Two calls placed from one device: endCall ends the newer, a second endCall the older one,
/// which stayed connected (`ucm dial --end` twice).
#[test]
fn r21_end_call_reaches_every_call_placed_from_a_device() {
    let (_dir, srv) = start(3);
    let server = format!("http://{}", srv.addr("http"));
    let sim_a = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_A,
            "--first-ip",
            "127.0.82.10",
            "--auto-answer",
        ],
    );
    let sim_b = Sim::start(
        &srv,
        &[
            "--device",
            PHONE_B,
            "--first-ip",
            "127.0.82.20",
            "--auto-answer",
        ],
    );
    let s = ["--server", server.as_str()];
    let active = |v: &serde_json::Value| {
        calls(v)
            .iter()
            .filter(|c| c["state"] != "ended" && c["state"] != "idle")
            .count()
    };
    for n in 1..=2 {
        let (rc, out, err) = dial(
            &[
                "10002",
                "--user",
                "jsmith",
                "--device",
                PHONE_A,
                "--password-stdin",
                s[0],
                s[1],
            ],
            Some("cisco"),
        );
        assert_eq!(rc, 0, "call {n}: {out}{err}");
        wait_state(sim_b.http(PHONE_B), 10, &format!("B has {n} calls"), |v| {
            active(v) >= n
        });
    }
    for left in [1, 0] {
        let (rc, out, err) = dial(
            &[
                "--end",
                "--user",
                "jsmith",
                "--device",
                PHONE_A,
                "--password-stdin",
                s[0],
                s[1],
            ],
            Some("cisco"),
        );
        assert_eq!(rc, 0, "{out}{err}");
        wait_state(
            sim_a.http(PHONE_A),
            10,
            &format!("A has {left} calls up"),
            |v| active(v) == left,
        );
    }
    let (rc, _, err) = dial(
        &[
            "--end",
            "--user",
            "jsmith",
            "--device",
            PHONE_A,
            "--password-stdin",
            s[0],
            s[1],
        ],
        Some("cisco"),
    );
    assert_eq!(rc, 1, "nothing left to end: {err}");
    assert!(err.contains("no WebDialer call in progress"), "{err}");
}
