//! Issue 21, the seed's leftovers in IP Phone Services, end to end with simulated phones:
//! Java MIDlets (JAD and JAR served, category in the configuration file, installed by the
//! phone), Service URL buttons, the Personal Directory, Missed/Received/Placed Calls and the
//! Corporate Directory default service disabled and replaced.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::common::{http_get, split_http, ucm, write_file, Server};
use crate::phone::{calls, push, state, wait_state, Sim};

const JOHN: &str = "SEP00036BC7B973";
const PHONE_B: &str = "SEP00036BC7B974";
/// May push to every phone (demo).
const PUSHER: (&str, &str) = ("paging", "paging");

const DEMO_CORPORATE: &str = "  - name: Corporate Directory
    url: \"{http}/ccmcip/xmldirectoryinput.jsp\"
    secure_url: \"{https}/ccmcip/xmldirectoryinput.jsp\"
    service_type: directories
    enterprise_subscription: true
";

/// The demo with `services` instead of its Corporate Directory service and `john` added to
/// John's phone (after its owner line).
fn cluster(dir: &std::path::Path, services: &str, john: &str) -> std::path::PathBuf {
    let demo = ucm::config::DEMO_YAML;
    assert_eq!(demo.matches(DEMO_CORPORATE).count(), 1, "fixture changed");
    assert_eq!(
        demo.matches("    owner: jsmith\n").count(),
        1,
        "fixture changed"
    );
    let text = demo
        .replace(DEMO_CORPORATE, services)
        .replace("    owner: jsmith\n", &format!("    owner: jsmith\n{john}"));
    write_file(dir, "apps.yaml", &text)
}

fn cnf(srv: &Server, dev: &str) -> String {
    let (st, head, body) = http_get(srv.addr("tftp_http"), &format!("/{dev}.cnf.xml"));
    assert_eq!(st, 200, "{head}");
    String::from_utf8(body).unwrap()
}

/// One HTTP request with optional Basic credentials and JSON body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    creds: Option<(&str, &str)>,
    body: &str,
) -> (u16, String) {
    let auth = creds
        .map(|(u, p)| {
            format!(
                "Authorization: Basic {}\r\n",
                ucm::wire::codec::base64_encode(format!("{u}:{p}").as_bytes())
            )
        })
        .unwrap_or_default();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let (st, _, body) = split_http(&raw);
    (st, String::from_utf8_lossy(&body).into_owned())
}

fn press(addr: SocketAddr, keys: &[&str]) {
    let (st, body) = push(addr, Some(PUSHER), keys);
    assert_eq!(st, 200);
    assert!(body.contains("Status=\"0\""), "{keys:?}: {body}");
}

/// The item names of the menu on the phone's screen.
fn menu_names(s: &Value) -> Vec<String> {
    let xml = s["screen"]["xml"].as_str().unwrap_or("");
    xml.split("<MenuItem>")
        .skip(1)
        .map(|x| {
            let x = x.split("<Name>").nth(1).unwrap_or("");
            x.split("</Name>").next().unwrap_or("").to_string()
        })
        .collect()
}

fn screen_is(s: &Value, kind: &str, title: &str) -> bool {
    s["screen"]["kind"] == kind && s["screen"]["title"] == title
}

#[test]
fn r21_a_java_midlet_is_installed_from_the_jad_and_jar_the_node_serves() {
    let dir = tempfile::tempdir().unwrap();
    let jar = dir.path().join("weather-88xx.jar");
    let jar_bytes: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&jar, &jar_bytes).unwrap();
    let missing = dir.path().join("missing.jar");
    let services = format!(
        "{DEMO_CORPORATE}  - name: Weather
    url: \"{{http}}/ucm/midlets/app.jad?service=Weather\"
    category: java-midlet
    enterprise_subscription: true
    midlet:
      version: \"1.2\"
      vendor: Example Corp
      class: com.example.Weather
      jars:
        - models: [\"Cisco 8845\", \"Cisco 8865\"]
          file: {}
  - name: Broken
    url: \"{{http}}/ucm/midlets/app.jad?service=Broken\"
    category: java-midlet
    enterprise_subscription: true
    midlet:
      version: \"1.0\"
      vendor: Example Corp
      class: com.example.Broken
      jars:
        - models: [\"*\"]
          file: {}
",
        jar.display(),
        missing.display()
    );
    let def = cluster(dir.path(), &services, "");
    let o = ucm().args(["config", "check"]).arg(&def).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let srv = Server::start(&["--config", def.to_str().unwrap()]);

    // The configuration file writes each service's category: 1 for the MIDlets.
    let c = cnf(&srv, JOHN);
    assert!(
        c.contains("<phoneService type=\"0\" category=\"1\"><name>Weather</name>"),
        "{c}"
    );
    assert!(
        c.contains("category=\"0\"><name>Extension Mobility</name>"),
        "{c}"
    );

    // The JAD names the JAR for the asking phone's model, with its size.
    let http = srv.addr("http");
    let (st, head, body) = http_get(http, "/ucm/midlets/app.jad?service=Weather&model=CP-8865");
    let jad = String::from_utf8(body).unwrap();
    assert_eq!(st, 200, "{head}{jad}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/vnd.sun.j2me.app-descriptor"),
        "{head}"
    );
    assert!(jad.contains("MIDlet-Name: Weather\n"), "{jad}");
    assert!(jad.contains("MIDlet-Version: 1.2\n"), "{jad}");
    assert!(
        jad.contains("MIDlet-1: Weather, , com.example.Weather\n"),
        "{jad}"
    );
    assert!(
        jad.contains(&format!("MIDlet-Jar-Size: {}\n", jar_bytes.len())),
        "{jad}"
    );
    assert!(
        jad.contains("/ucm/midlets/app.jar?service=Weather&model=CP-8865"),
        "{jad}"
    );
    // A model without a JAR, an XML service, an unknown service: 404 saying which.
    let (st, _, body) = http_get(http, "/ucm/midlets/app.jad?service=Weather&model=CP-7975");
    assert_eq!(st, 404);
    assert!(String::from_utf8_lossy(&body).contains("no JAR for model"));
    let (st, _, _) = http_get(http, "/ucm/midlets/app.jad?service=Extension%20Mobility");
    assert_eq!(st, 404);
    let (st, _, _) = http_get(http, "/ucm/midlets/app.jar?service=Nope&model=CP-8845");
    assert_eq!(st, 404);

    // The phone installs what its file lists: the JAD, then the JAR of its size; the MIDlet
    // whose JAR cannot be read is kept as failed, with the reason.
    let sim = Sim::start(&srv, &["--device", JOHN, "--first-ip", "127.0.21.10"]);
    let s = wait_state(sim.http(JOHN), 20, "MIDlets tried", |s| {
        s["midlets"].as_array().is_some_and(|m| m.len() == 2)
    });
    let m = &s["midlets"];
    assert_eq!(m[0]["service"], "Weather", "{m:#}");
    assert_eq!(m[0]["status"], "installed", "{m:#}");
    assert_eq!(m[0]["version"], "1.2");
    assert_eq!(m[0]["vendor"], "Example Corp");
    assert_eq!(m[0]["jar_bytes"], jar_bytes.len() as u64);
    assert!(m[0]["jar_url"].as_str().unwrap().contains("model=CP-8845"));
    assert_eq!(m[1]["service"], "Broken");
    assert_eq!(m[1]["status"], "failed", "{m:#}");
    assert!(
        m[1]["error"].as_str().unwrap().contains("HTTP 500"),
        "{m:#}"
    );
    assert!(
        srv.wait_for_log("MIDlet JAR cannot be read")
            .contains("missing.jar"),
        "the node logs the file"
    );
}

#[test]
fn r21_a_service_url_button_opens_its_service_from_a_line_key() {
    let dir = tempfile::tempdir().unwrap();
    let def = cluster(
        dir.path(),
        DEMO_CORPORATE,
        "    service_url_buttons:\n      - service: Corporate Directory\n        label: Directory\n",
    );
    let srv = Server::start(&["--config", def.to_str().unwrap()]);
    // Written after John's one line: button 2, featureID 20, the service's URL.
    let c = cnf(&srv, JOHN);
    assert!(
        c.contains("<line button=\"2\"><featureID>20</featureID><featureLabel>Directory</featureLabel><serviceURI>http://"),
        "{c}"
    );
    assert!(
        c.contains("/ccmcip/xmldirectoryinput.jsp</serviceURI>"),
        "{c}"
    );
    assert!(!cnf(&srv, PHONE_B).contains("<featureID>20</featureID>"));

    let sim = Sim::start(&srv, &["--device", JOHN, "--first-ip", "127.0.21.20"]);
    let addr = sim.http(JOHN);
    let s = state(addr);
    assert_eq!(s["config"]["service_buttons"][0]["button"], 2, "{s:#}");
    assert_eq!(s["config"]["service_buttons"][0]["label"], "Directory");
    // Pressing the line key: the phone fetches the service and shows it.
    press(addr, &["Key:Line2"]);
    let s = wait_state(addr, 10, "the button's service shown", |s| {
        s["screen"]["source"] == "button"
    });
    assert_eq!(s["screen"]["kind"], "CiscoIPPhoneInput", "{s:#}");
    assert!(s["screen"]["url"]
        .as_str()
        .unwrap()
        .ends_with("/ccmcip/xmldirectoryinput.jsp"));
    // Its line key stays a line: pressing it shows nothing new.
    press(addr, &["Key:Line1"]);

    // A button for a service the phone does not have is refused by config check.
    let bad = cluster(
        dir.path(),
        &format!(
            "{DEMO_CORPORATE}  - name: Private
    url: \"http://127.0.0.1:9/private.xml\"
"
        ),
        "    service_url_buttons:\n      - service: Private\n      - service: Nope\n",
    );
    let o = ucm().args(["config", "check"]).arg(&bad).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success(), "{text}");
    assert!(
        text.contains("\"Private\" is not subscribed on this device"),
        "{text}"
    );
    assert!(text.contains("Nope"), "{text}");
}

const DEFAULT_SERVICES: &str = "  - name: Missed Calls
    url: \"Application:Cisco/MissedCalls\"
    service_type: directories
    enterprise_subscription: true
  - name: Received Calls
    url: \"Application:Cisco/ReceivedCalls\"
    service_type: directories
    enterprise_subscription: true
  - name: Placed Calls
    url: \"Application:Cisco/PlacedCalls\"
    service_type: directories
    enterprise_subscription: true
  - name: Personal Directory
    url: \"Application:Cisco/PersonalDirectory\"
    service_type: directories
    enterprise_subscription: true
";

#[test]
fn r21_missed_received_and_placed_calls_and_the_corporate_directory_disabled_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    // The Corporate Directory default service disabled for everyone; a custom service with
    // its URL subscribed on John's phone only (the seed's "disabled and replaced").
    let services = format!(
        "{DEFAULT_SERVICES}  - name: Corporate Directory
    url: \"Application:Cisco/CorporateDirectory\"
    service_type: directories
    enterprise_subscription: true
    enabled: false
  - name: Company Directory
    url: \"Application:Cisco/CorporateDirectory\"
    service_type: directories
"
    );
    let def = cluster(
        dir.path(),
        &services,
        "    subscribed_services: [Company Directory]\n",
    );
    let srv = Server::start(&["--config", def.to_str().unwrap()]);
    let john_cnf = cnf(&srv, JOHN);
    let b_cnf = cnf(&srv, PHONE_B);
    assert!(
        john_cnf.contains(
            "<name>Company Directory</name><url>Application:Cisco/CorporateDirectory</url>"
        ),
        "{john_cnf}"
    );
    assert!(
        john_cnf.contains("/ccmcip/xmldirectory.jsp</directoryURL>"),
        "{john_cnf}"
    );
    assert!(
        john_cnf.contains("<phoneService type=\"1\" category=\"0\"><name>Missed Calls</name><url>Application:Cisco/MissedCalls</url>"),
        "{john_cnf}"
    );
    assert!(!b_cnf.contains("CorporateDirectory"), "{b_cnf}");
    assert!(b_cnf.contains("<directoryURL></directoryURL>"), "{b_cnf}");

    let sim = Sim::start(
        &srv,
        &[
            "--device",
            JOHN,
            "--device",
            PHONE_B,
            "--first-ip",
            "127.0.21.30",
        ],
    );
    let (john, b) = (sim.http(JOHN), sim.http(PHONE_B));
    // John calls B, B does not answer, John gives up: B misses the call, John placed it.
    press(john, &["Dial:10002"]);
    wait_state(b, 10, "B rings", |s| {
        calls(s).iter().any(|c| c["state"] == "ringing")
    });
    press(john, &["Key:Onhook"]);
    wait_state(b, 10, "B's missed call", |s| {
        s["call_history"]["missed"]
            .as_array()
            .is_some_and(|m| m.len() == 1)
    });
    // Again, and B answers: a received call.
    press(john, &["Dial:10002"]);
    wait_state(b, 10, "B rings again", |s| {
        calls(s).iter().any(|c| c["state"] == "ringing")
    });
    press(b, &["Key:Offhook"]);
    wait_state(john, 10, "connected", |s| {
        calls(s).iter().any(|c| c["state"] == "connected")
    });
    press(john, &["Key:Onhook"]);
    let s = wait_state(b, 10, "B's received call", |s| {
        s["call_history"]["received"]
            .as_array()
            .is_some_and(|m| m.len() == 1)
    });
    assert_eq!(s["call_history"]["missed"][0]["number"], "10001", "{s:#}");
    assert_eq!(s["call_history"]["received"][0]["number"], "10001");
    let s = state(john);
    let placed = s["call_history"]["placed"].as_array().unwrap();
    assert_eq!(placed.len(), 2, "{s:#}");
    assert!(placed.iter().all(|p| p["number"] == "10002"));
    assert!(s["call_history"]["missed"].as_array().unwrap().is_empty());

    // B's Directories button: the file's directory services, no Corporate Directory.
    press(b, &["Key:Directories"]);
    let s = wait_state(b, 10, "directories", |s| {
        screen_is(s, "CiscoIPPhoneMenu", "Directories")
    });
    assert_eq!(
        menu_names(&s),
        [
            "Missed Calls",
            "Received Calls",
            "Placed Calls",
            "Personal Directory"
        ],
        "{s:#}"
    );
    // Item 1, Missed Calls: the phone's own list, as a directory; 1 again dials it back.
    press(b, &["Key:KeyPad1"]);
    let s = wait_state(b, 10, "missed calls", |s| {
        screen_is(s, "CiscoIPPhoneDirectory", "Missed Calls")
    });
    assert_eq!(s["screen"]["source"], "history");
    assert!(
        s["screen"]["xml"]
            .as_str()
            .unwrap()
            .contains("<Telephone>10001</Telephone>"),
        "{s:#}"
    );
    press(b, &["Key:KeyPad1"]);
    wait_state(john, 10, "B calls John back from Missed Calls", |s| {
        calls(s)
            .iter()
            .any(|c| c["state"] == "ringing" && c["remote_number"] == "10002")
    });
    press(b, &["Key:Onhook"]);

    // John's Directories: his Company Directory opens the Corporate Directory at the file's
    // directory URL.
    press(john, &["Key:Directories"]);
    let s = wait_state(john, 10, "John's directories", |s| {
        screen_is(s, "CiscoIPPhoneMenu", "Directories")
    });
    let names = menu_names(&s);
    let i = names
        .iter()
        .position(|n| n == "Company Directory")
        .expect("listed")
        + 1;
    press(john, &[&format!("Key:KeyPad{i}")]);
    let s = wait_state(john, 10, "corporate directory", |s| {
        s["screen"]["kind"] == "CiscoIPPhoneInput"
    });
    assert!(
        s["screen"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/ccmcip/xmldirectory.jsp"),
        "{s:#}"
    );
    // Init:CallHistory clears the lists.
    press(john, &["Init:CallHistory"]);
    let s = state(john);
    assert!(
        s["call_history"]["placed"].as_array().unwrap().is_empty(),
        "{s:#}"
    );
}

#[test]
fn r21_personal_directory_entries_are_kept_per_user_and_shown_after_the_pin() {
    let dir = tempfile::tempdir().unwrap();
    let def = cluster(
        dir.path(),
        &format!("{DEMO_CORPORATE}{DEFAULT_SERVICES}"),
        "",
    );
    let srv = Server::start(&["--config", def.to_str().unwrap()]);
    let http = srv.addr("http");
    let jsmith = Some(("jsmith", "cisco"));
    // The user keeps entries with their password.
    let (st, body) = request(
        http,
        "POST",
        "/ucm/pd/entries",
        jsmith,
        r#"{"first_name":"Phone","last_name":"Bee","nickname":"b","number":"10002"}"#,
    );
    assert_eq!(st, 201, "{body}");
    let (st, body) = request(
        http,
        "POST",
        "/ucm/pd/entries",
        jsmith,
        r#"{"first_name":"Ann","last_name":"Archer","number":"+14085551234"}"#,
    );
    assert_eq!(st, 201, "{body}");
    let archer: Value = serde_json::from_str(&body).unwrap();
    let (st, body) = request(
        http,
        "POST",
        "/ucm/pd/entries",
        jsmith,
        r#"{"number":"12a"}"#,
    );
    assert_eq!(st, 400, "{body}");
    let (st, _) = request(
        http,
        "POST",
        "/ucm/pd/entries",
        Some(("jsmith", "wrong")),
        r#"{"number":"1"}"#,
    );
    assert_eq!(st, 401);
    let (st, _) = request(http, "GET", "/ucm/pd/entries", Some(PUSHER), "");
    assert_eq!(st, 403, "application users have none");
    // Each user sees their own.
    let (st, body) = request(
        http,
        "GET",
        "/ucm/pd/entries",
        Some(("sadams", "cisco")),
        "",
    );
    assert_eq!(st, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["entries"],
        serde_json::json!([])
    );
    let (st, body) = request(http, "GET", "/ucm/pd/entries", jsmith, "");
    assert_eq!(st, 200);
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["entries"].as_array().unwrap().len(), 2, "{list:#}");
    assert_eq!(list["entries"][0]["last_name"], "Archer", "by last name");

    // On the phone: Directories, Personal Directory (the built-in application asks the node
    // for the user's ID and PIN), then the login the Input submits.
    let sim = Sim::start(
        &srv,
        &[
            "--device",
            JOHN,
            "--device",
            PHONE_B,
            "--first-ip",
            "127.0.21.40",
        ],
    );
    let john = sim.http(JOHN);
    press(john, &["Key:Directories"]);
    let s = wait_state(john, 10, "directories", |s| {
        screen_is(s, "CiscoIPPhoneMenu", "Directories")
    });
    let i = menu_names(&s)
        .iter()
        .position(|n| n == "Personal Directory")
        .expect("listed")
        + 1;
    press(john, &[&format!("Key:KeyPad{i}")]);
    let s = wait_state(john, 10, "PIN asked", |s| {
        screen_is(s, "CiscoIPPhoneInput", "Personal Directory")
    });
    let xml = s["screen"]["xml"].as_str().unwrap();
    assert!(
        xml.contains("/ccmpd/login.do?name=SEP00036BC7B973"),
        "{xml}"
    );
    assert!(
        xml.contains("<QueryStringParam>pin</QueryStringParam>"),
        "{xml}"
    );
    let login = |pin: &str| {
        format!("http://{http}/ccmpd/login.do?name={JOHN}&amp;userid=jsmith&amp;pin={pin}")
    };
    press(john, &[&login("99999")]);
    let s = wait_state(john, 10, "wrong PIN", |s| {
        s["screen"]["kind"] == "CiscoIPPhoneText"
    });
    assert!(
        s["screen"]["text"]
            .as_str()
            .unwrap()
            .contains("Login failed"),
        "{s:#}"
    );
    press(john, &[&login("12345")]);
    let s = wait_state(john, 10, "entries", |s| {
        screen_is(s, "CiscoIPPhoneMenu", "Personal Directory")
    });
    assert_eq!(menu_names(&s), ["Archer, Ann", "Bee, Phone (b)"], "{s:#}");
    // Item 2 dials Phone B.
    press(john, &["Key:KeyPad2"]);
    wait_state(
        sim.http(PHONE_B),
        10,
        "B rings from the Personal Directory",
        |s| {
            calls(s)
                .iter()
                .any(|c| c["state"] == "ringing" && c["remote_number"] == "10001")
        },
    );
    press(john, &["Key:Onhook"]);
    // Removing an entry: the owner only.
    let id = archer["id"].as_str().unwrap();
    let (st, _) = request(
        http,
        "DELETE",
        &format!("/ucm/pd/entries/{id}"),
        Some(("sadams", "cisco")),
        "",
    );
    assert_eq!(st, 404, "not Sally's");
    let (st, _) = request(http, "DELETE", &format!("/ucm/pd/entries/{id}"), jsmith, "");
    assert_eq!(st, 204);
    let (_, body) = request(http, "GET", "/ucm/pd/entries", jsmith, "");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["entries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// The Personal Directory's storage on both backends: per user, ordered, bounded, deleted by
/// its owner only.
#[tokio::test]
async fn r21_personal_directory_storage_on_sqlite_and_postgres() {
    use ucm::services::phone_services::personal_directory::{
        Entry, PersonalDirectory, MAX_ENTRIES,
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite:{}", dir.path().join("pd.db").display());
    let pg = crate::common::PgDb::create().await;
    let mut urls = vec![sqlite];
    if let Some(p) = &pg {
        urls.push(p.url.clone());
    }
    for url in &urls {
        let store = ucm::store::Store::open(url).await.expect("open");
        let e = |last: &str, n: &str| Entry {
            id: String::new(),
            first_name: String::new(),
            last_name: last.into(),
            nickname: String::new(),
            number: n.into(),
        };
        let b = store.pd_add("u1", &e("B", "2"), 1).await.unwrap().unwrap();
        store.pd_add("u1", &e("A", "1"), 1).await.unwrap().unwrap();
        store.pd_add("u2", &e("C", "3"), 1).await.unwrap().unwrap();
        let l = store.pd_entries("u1").await.unwrap();
        assert_eq!(
            l.iter().map(|x| x.number.as_str()).collect::<Vec<_>>(),
            ["1", "2"],
            "{url}"
        );
        assert!(!store.pd_delete("u2", &b).await.unwrap(), "{url}");
        assert!(store.pd_delete("u1", &b).await.unwrap(), "{url}");
        assert_eq!(store.pd_entries("u1").await.unwrap().len(), 1);
        for i in 1..MAX_ENTRIES {
            assert!(
                store
                    .pd_add("u1", &e("X", &i.to_string()), 2)
                    .await
                    .unwrap()
                    .is_some(),
                "{url} {i}"
            );
        }
        assert_eq!(
            store.pd_add("u1", &e("X", "9"), 2).await.unwrap(),
            None,
            "{url}: the bound"
        );
        assert_eq!(
            store.pd_entries("u1").await.unwrap().len() as i64,
            MAX_ENTRIES
        );
    }
    if let Some(p) = pg {
        p.drop_db().await;
    }
}
