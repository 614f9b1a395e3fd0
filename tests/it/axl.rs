//! AXL on `/axl/` read by real clients: the `ciscoaxl` package and zeep over Cisco's AXL 12.5
//! WSDL (which ciscoaxl ships; never copied into this repository), and attacked (issue 20).

use std::net::SocketAddr;

use crate::common::{skip_or_fail, Server};

fn have_ciscoaxl() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import ciscoaxl, zeep"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip_or_fail("Python's ciscoaxl and zeep (pip install ciscoaxl zeep)");
    }
    ok
}

/// A raw AXL POST over HTTPS (the node's own certificate is not checked): (status, body).
fn post(https: SocketAddr, auth: Option<&str>, action: &str, body: &str) -> (u16, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sk", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"])
        .args(["-H", "Content-Type: text/xml; charset=utf-8"])
        .args(["-H", &format!("SOAPAction: \"CUCM:DB ver=12.5 {action}\"")])
        .args(["--data-binary", body]);
    if let Some(a) = auth {
        cmd.args(["-u", a]);
    }
    let out = cmd
        .arg(format!("https://{https}/axl/"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn envelope(op: &str, inner: &str) -> String {
    format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:ns=\"http://www.cisco.com/AXL/API/12.5\"><soapenv:Body><ns:{op}>{inner}</ns:{op}>\
         </soapenv:Body></soapenv:Envelope>"
    )
}

#[test]
fn r20_ciscoaxl_and_strict_zeep_read_the_cluster_through_axl() {
    if !have_ciscoaxl() {
        return;
    }
    let srv = Server::start(&[]);
    let https = srv.addr("https");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/axl_clients/ciscoaxl_client.py"
    );
    // The clients verify the node's own certificate (made on first start, for its address).
    let ca = srv.data_dir.path().join("node-cert.pem");
    let out = std::process::Command::new("python3")
        .env("REQUESTS_CA_BUNDLE", &ca)
        .arg(script)
        .args([
            "127.0.0.1",
            &https.port().to_string(),
            "axladmin",
            "axladmin",
        ])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(r["version"], "14.0", "{r}");
    let demo = ucm::services::demo().expect("demo");
    assert_eq!(r["phones"], demo.devices.len(), "{r}");
    assert_eq!(
        r["first"],
        serde_json::json!({"name": "SEP00036BC7B973", "product": "Cisco 8845",
            "protocol": "SIP", "callingSearchSpaceName": "Internal_CSS"}),
        "{r}"
    );
    assert_eq!(
        r["lines"],
        serde_json::json!([[1, "10001", "Internal_PT"]]),
        "{r}"
    );
    assert_eq!(r["by_uuid"], "SEP00036BC7B973");
    assert_eq!(
        r["missing"],
        "Item not valid: The specified Device was not found"
    );
    assert_eq!(r["missing_code"], "5007");
    let mut users: Vec<String> = demo.end_users.iter().map(|u| u.userid.clone()).collect();
    users.sort();
    assert_eq!(r["users"], serde_json::json!(users), "{r}");
    assert_eq!(r["jsmith"]["lastName"], "Smith", "{r}");
    assert!(r["jsmith"]["devices"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("SEP00036BC7B973")));
    assert!(r["partitions"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("Assistant_Route_Point")));
    assert!(r["css"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("Internal_CSS")));
    let names: Vec<&str> = demo
        .devices
        .iter()
        .map(|d| d.name.as_str())
        .filter(|n| n.starts_with("SEP"))
        .take(4)
        .collect();
    assert_eq!(r["paged"], serde_json::json!(names), "{r}");
    assert_eq!(r["strict_list"], serde_json::json!(["SEP00036BC7B973"]));
    assert_eq!(r["strict_user"], "jsmith");
}

#[test]
fn r20_axl_refuses_strangers_plain_http_and_users_without_the_role() {
    let srv = Server::start(&[]);
    let https = srv.addr("https");
    let body = envelope("getCCMVersion", "");
    let (code, text) = post(https, None, "getCCMVersion", &body);
    assert_eq!(code, 401, "{text}");
    let (code, _) = post(https, Some("axladmin:wrong"), "getCCMVersion", &body);
    assert_eq!(code, 401);
    // An end user without Standard AXL API Access.
    let (code, text) = post(https, Some("jsmith:cisco"), "getCCMVersion", &body);
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("Standard AXL API Access"), "{text}");
    // Plain HTTP carries the password in clear: refused before any check.
    let http = srv.addr("http");
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-u",
            "axladmin:axladmin",
        ])
        .args(["--data-binary", &body])
        .arg(format!("http://{http}/axl/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "403");
    let (code, text) = post(https, Some("axladmin:axladmin"), "getCCMVersion", &body);
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("<version>14.0</version>"), "{text}");
}

#[test]
fn r20_axl_answers_bad_requests_with_faults() {
    let srv = Server::start(&[]);
    let https = srv.addr("https");
    let auth = Some("axladmin:axladmin");
    let cases: &[(&str, String, &str)] = &[
        (
            "listPhone",
            envelope("listPhone", "<returnedTags><name/></returnedTags>"),
            "searchCriteria is required",
        ),
        (
            "listPhone",
            envelope(
                "listPhone",
                "<searchCriteria><name>%</name></searchCriteria><first>x</first>",
            ),
            "first must be a whole number",
        ),
        (
            "getUser",
            envelope("getUser", "<userid>nobody</userid>"),
            "<axlcode>5007</axlcode>",
        ),
        (
            "addPhone",
            envelope("addPhone", "<phone><name>SEP1</name></phone>"),
            "operation addPhone is not supported",
        ),
        (
            "getCCMVersion",
            "<not-soap/>".to_string(),
            "not a SOAP &lt;Envelope&gt;",
        ),
        (
            "getCCMVersion",
            "<!DOCTYPE x [<!ENTITY a \"b\">]><x/>".to_string(),
            "DOCTYPE",
        ),
        (
            "getCCMVersion",
            format!("<a>{}</a>", "x".repeat(70 * 1024)),
            "limit",
        ),
    ];
    for (action, body, says) in cases {
        let (code, text) = post(https, auth, action, body);
        assert!(code == 500 || code == 413, "{action}: {code} {text}");
        assert!(
            text.contains("Fault") && text.contains(says),
            "{action}: {text}"
        );
    }
    // Still served.
    let (code, _) = post(https, auth, "getCCMVersion", &envelope("getCCMVersion", ""));
    assert_eq!(code, 200);
}

/// README's AXL example run as written.
#[test]
fn r20_readme_axl_example_runs_as_written() {
    crate::snmp::run_readme_example("## AXL", 2, &[(1, "<version>14.0</version>")]);
}
