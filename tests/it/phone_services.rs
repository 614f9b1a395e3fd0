//! IP Phone Services on the cluster (issue 5): the services menu under each Services
//! Provisioning value, the Corporate Directory (search, pages, dial), `ucm services push` and
//! `ucm services lint`, all over the wire with simulated phones.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Output, Stdio};

use serde_json::Value;

use crate::common::{http_get, ucm, write_file, Server};
use crate::phone::{calls, push, state, wait_state, Sim};

const JOHN: &str = "SEP00036BC7B973";
const SALLY: &str = "SEP00036BC7B975";
const STEVE: &str = "SEP00036BC7B976";

/// The demo cluster with Services Provisioning Both for the enterprise, John's phone set to
/// Internal and Sally's to External URL on the phone itself (Steve's inherits Both), and
/// `extra_users` more end users.
fn services_cluster(dir: &std::path::Path, extra_users: &str) -> std::path::PathBuf {
    let demo = ucm::config::DEMO_YAML;
    for needle in [
        "  services_provisioning: internal\n",
        "    owner: jsmith\n",
        "    owner: sadams\n",
        "\napplication_users:\n",
    ] {
        assert_eq!(
            demo.matches(needle).count(),
            1,
            "fixture changed: {needle:?}"
        );
    }
    let text = demo
        .replace(
            "  services_provisioning: internal\n",
            "  services_provisioning: both\n",
        )
        .replace(
            "    owner: jsmith\n",
            "    owner: jsmith\n    services_provisioning: internal\n",
        )
        .replace(
            "    owner: sadams\n",
            "    owner: sadams\n    services_provisioning: external-url\n",
        )
        .replace(
            "\napplication_users:\n",
            &format!("{extra_users}\napplication_users:\n"),
        );
    write_file(dir, "services.yaml", &text)
}

fn get_text(addr: SocketAddr, path: &str) -> String {
    let (st, head, body) = http_get(addr, path);
    assert_eq!(st, 200, "GET {path}: {head}");
    assert!(
        head.to_ascii_lowercase().contains("content-type: text/xml"),
        "{head}"
    );
    String::from_utf8(body).expect("UTF-8")
}

/// The path and query of an absolute URL on the node.
fn path_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/".into(), |i| rest[i..].to_string())
}

fn press_services(addr: SocketAddr, user: &str) -> Value {
    let (st, body) = push(addr, Some((user, "cisco")), &["Key:Services"]);
    assert_eq!(st, 200);
    assert!(body.contains("Status=\"0\""), "{body}");
    wait_state(addr, 10, "services menu shown", |s| {
        !s["services_menu"].is_null()
    })
}

fn menu_items(s: &Value) -> Vec<(String, String, String)> {
    s["services_menu"]["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap_or("").to_string(),
                i["url"].as_str().unwrap_or("").to_string(),
                i["source"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn r5_services_menu_under_each_provisioning_value() {
    let dir = tempfile::tempdir().unwrap();
    let def = services_cluster(dir.path(), "");
    let srv = Server::start(&["--config", def.to_str().unwrap()]);
    let tftp = srv.addr("tftp_http");
    let http = srv.addr("http");
    let cnf = |dev: &str| get_text(tftp, &format!("/{dev}.cnf.xml"));

    // The configuration files: Internal and Both list the services, External URL none.
    let c = cnf(JOHN);
    assert!(c.contains("<provisioning>0</provisioning>"), "{c}");
    assert!(c.contains("<name>Corporate Directory</name>"), "{c}");
    assert!(c.contains("#DEVICENAME#"), "the phone substitutes: {c}");
    let c = cnf(SALLY);
    assert!(c.contains("<provisioning>1</provisioning>"), "{c}");
    assert!(!c.contains("<phoneService "), "{c}");
    let c = cnf(STEVE);
    assert!(c.contains("<provisioning>2</provisioning>"), "{c}");
    assert!(c.contains("<name>Extension Mobility</name>"), "{c}");

    let sim = Sim::start(
        &srv,
        &[
            "--device",
            JOHN,
            "--device",
            SALLY,
            "--device",
            STEVE,
            "--first-ip",
            "127.0.15.10",
        ],
    );

    // Internal: the list from the file, the services URL never asked.
    let s = press_services(sim.http(JOHN), "jsmith");
    assert_eq!(s["services_menu"]["provisioning"], 0);
    assert_eq!(s["services_menu"]["asked"], false);
    assert!(s["services"].is_null(), "nothing fetched: {s:#}");
    let items = menu_items(&s);
    let names: Vec<&str> = items.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["Extension Mobility", "Corporate Directory"],
        "{s:#}"
    );
    assert!(items.iter().all(|(_, _, src)| src == "config"));
    assert!(
        items[0].1.ends_with(&format!("device={JOHN}")),
        "#DEVICENAME# substituted: {items:?}"
    );

    // External URL: nothing from the file; the node's menu (two service types: a top menu).
    let s = press_services(sim.http(SALLY), "sadams");
    assert_eq!(s["services_menu"]["provisioning"], 1);
    assert_eq!(s["services_menu"]["asked"], true);
    assert_eq!(s["services"]["status"], 200, "{s:#}");
    assert!(s["services"]["url"]
        .as_str()
        .is_some_and(|u| u.contains("getservicesmenu.jsp?name=SEP00036BC7B975")));
    let items = menu_items(&s);
    let names: Vec<&str> = items.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["Services", "Directories"], "{s:#}");
    assert!(items.iter().all(|(_, _, src)| src == "url"));
    // The Directories entry leads to the Corporate Directory service.
    let dirs = get_text(http, &path_of(&items[1].1));
    assert!(
        dirs.contains("<Name>Corporate Directory</Name>") && dirs.contains("xmldirectoryinput.jsp"),
        "{dirs}"
    );
    assert!(
        !dirs.contains("Extension Mobility"),
        "one type only: {dirs}"
    );

    // Both: the file's list, and the menu asked as well.
    let s = press_services(sim.http(STEVE), "ssmith");
    assert_eq!(s["services_menu"]["provisioning"], 2);
    assert_eq!(s["services_menu"]["asked"], true);
    assert_eq!(s["services"]["status"], 200);
    let items = menu_items(&s);
    assert!(items
        .iter()
        .any(|(n, _, src)| n == "Corporate Directory" && src == "config"));
    assert!(items.iter().any(|(_, _, src)| src == "url"), "{s:#}");

    // The seed's note: a 7960 cannot read the list from its file and always asks.
    drop(sim);
    let old = Sim::start(
        &srv,
        &[
            "--device",
            JOHN,
            "--first-ip",
            "127.0.15.40",
            "--model",
            "CP-7960",
        ],
    );
    let s = press_services(old.http(JOHN), "jsmith");
    assert_eq!(s["services_menu"]["provisioning"], 0);
    assert_eq!(s["services_menu"]["asked"], true, "{s:#}");
    assert_eq!(s["services"]["status"], 200);

    // One type asked for directly; unknown devices are told so.
    let menu = get_text(
        http,
        "/ccmcip/getservicesmenu.jsp?name=SEP00036BC7B974&locale=English_United_States&type=services",
    );
    assert!(
        menu.contains("<CiscoIPPhoneMenu>") && menu.contains("EMAppServlet?device=SEP00036BC7B974"),
        "{menu}"
    );
    let unknown = get_text(http, "/ccmcip/getservicesmenu.jsp?name=SEP0000DEADBEEF");
    assert!(
        unknown.contains("<CiscoIPPhoneText>") && unknown.contains("not configured"),
        "{unknown}"
    );
    let none = get_text(http, "/ccmcip/getservicesmenu.jsp");
    assert!(none.contains("<CiscoIPPhoneText>"), "{none}");
}

#[test]
fn r5_corporate_directory_search_pages_and_dial() {
    let mut extra = String::new();
    for i in 0..40 {
        extra.push_str(&format!(
            "  - userid: tester{i:02}\n    first_name: Test{i:02}\n    last_name: Tester\n    telephone_number: \"4{i:04}\"\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let def = services_cluster(dir.path(), &extra);
    let srv = Server::start(&["--config", def.to_str().unwrap()]);
    let http = srv.addr("http");

    // The directory URL answers the search form.
    let input = get_text(http, "/ccmcip/xmldirectory.jsp");
    for want in [
        "<CiscoIPPhoneInput>",
        "<QueryStringParam>f</QueryStringParam>",
        "<QueryStringParam>l</QueryStringParam>",
        "<QueryStringParam>n</QueryStringParam>",
        "/ccmcip/xmldirectorylist.jsp</URL>",
    ] {
        assert!(input.contains(want), "{want}: {input}");
    }
    assert_eq!(input, get_text(http, "/ccmcip/xmldirectoryinput.jsp"));

    // 40 matches: a page of 32 with Next, then 8 without.
    let p1 = get_text(http, "/ccmcip/xmldirectorylist.jsp?f=&l=tEsT&n=");
    assert_eq!(p1.matches("<DirectoryEntry>").count(), 32, "{p1}");
    assert!(p1.contains("Records 1 to 32 of 40"), "{p1}");
    assert!(p1.contains("<URL>SoftKey:Dial</URL>"), "{p1}");
    let next = p1
        .split("<Name>Next</Name>")
        .nth(1)
        .and_then(|r| r.split("<URL>").nth(1))
        .and_then(|r| r.split("</URL>").next())
        .expect("a Next softkey")
        .replace("&amp;", "&");
    assert!(next.contains("start=32"), "{next}");
    let p2 = get_text(http, &path_of(&next));
    assert_eq!(p2.matches("<DirectoryEntry>").count(), 8, "{p2}");
    assert!(
        p2.contains("Records 33 to 40 of 40") && !p2.contains("<Name>Next</Name>"),
        "{p2}"
    );

    // By first name and by number.
    let sally = get_text(http, "/ccmcip/xmldirectorylist.jsp?f=sal&l=&n=");
    assert!(
        sally.contains("<Name>Sally Adams</Name><Telephone>23923</Telephone>"),
        "{sally}"
    );
    assert_eq!(sally.matches("<DirectoryEntry>").count(), 1);
    let by_number = get_text(http, "/ccmcip/xmldirectorylist.jsp?n=3027");
    assert!(
        by_number.contains("<Name>Steve Smith</Name>"),
        "{by_number}"
    );
    let nobody = get_text(http, "/ccmcip/xmldirectorylist.jsp?l=Nobody&start=x");
    assert!(nobody.contains("No records found"), "{nobody}");

    // Dial from the result: John's phone dials Sally, whose phone rings.
    let sim = Sim::start(
        &srv,
        &[
            "--device",
            JOHN,
            "--device",
            SALLY,
            "--first-ip",
            "127.0.16.10",
        ],
    );
    let number = sally
        .split("<Telephone>")
        .nth(1)
        .and_then(|r| r.split("</Telephone>").next())
        .expect("a number");
    let (_, body) = push(
        sim.http(JOHN),
        Some(("jsmith", "cisco")),
        &[&format!("Dial:{number}")],
    );
    assert!(body.contains("Status=\"0\""), "{body}");
    wait_state(sim.http(SALLY), 10, "Sally's phone rings", |s| {
        !calls(s).is_empty()
    });
    let events = state(sim.http(JOHN))["events"].to_string();
    assert!(events.contains("Dial:23923"), "{events}");
}

fn run_ucm(args: &[&str], stdin: &str) -> Output {
    let mut child = ucm()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ucm");
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin.as_bytes());
    }
    child.wait_with_output().expect("ucm output")
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn r5_services_push_exit_codes() {
    let srv = Server::start(&[]);
    let sim = Sim::start(
        &srv,
        &[
            "--device",
            JOHN,
            "--first-ip",
            "127.0.17.10",
            "--http-port",
            "18081",
        ],
    );
    let phone = sim.http(JOHN).to_string();

    // A good push runs after the authentication callback.
    let o = run_ucm(
        &[
            "services",
            "push",
            "--phone",
            &phone,
            "--user",
            "jsmith",
            "--password-stdin",
            "--execute",
            "Play:chime.raw",
            "Init:Services",
        ],
        "cisco\n",
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0\tPlay:chime.raw"),
        "{}",
        show(&o)
    );
    let s = state(sim.http(JOHN));
    assert_eq!(s["last_pushed"]["authorized"], true);
    assert!(s["events"].to_string().contains("Play:chime.raw"), "{s:#}");

    // An object from a file (a third-party service's push, ISO-8859-1 declared), JSON out,
    // password from the environment.
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(
        dir.path(),
        "push.xml",
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<CiscoIPPhoneExecute>\n  <ExecuteItem Priority=\"0\" URL=\"Key:Headset\"/>\n</CiscoIPPhoneExecute>\n",
    );
    let mut cmd = ucm();
    let o = cmd
        .args([
            "services", "push", "--phone", &phone, "--user", "jsmith", "--json", "--xml",
        ])
        .arg(&file)
        .env("UCM_PASSWORD", "cisco")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    // One phone has the shape of many (issue 21).
    assert_eq!(v["ok"], true);
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["phones"][0]["response"][0]["url"], "Key:Headset");

    // By device name: the node tells the registered address to a user who may push to it.
    let node = format!("http://{}", srv.addr("http"));
    let by_name = |user: &str| {
        ucm()
            .args(["services", "push", "--phone", JOHN, "--server", &node])
            .args([
                "--phone-port",
                "18081",
                "--user",
                user,
                "--execute",
                "Key:Services",
            ])
            .env("UCM_PASSWORD", "cisco")
            .output()
            .unwrap()
    };
    let o = by_name("jsmith");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = by_name("sadams");
    assert_eq!(o.status.code(), Some(1), "not Sally's phone: {}", show(&o));

    // A wrong password: CiscoIPPhoneError 4, nothing runs, exit 1.
    let pushes_before = state(sim.http(JOHN))["events"]
        .as_array()
        .map_or(0, Vec::len);
    let o = run_ucm(
        &[
            "services",
            "push",
            "--phone",
            &phone,
            "--user",
            "jsmith",
            "--password-stdin",
            "--execute",
            "Dial:10002",
        ],
        "wrong\n",
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("CiscoIPPhoneError 4") && err.contains("authentication error"),
        "{}",
        show(&o)
    );
    let s = state(sim.http(JOHN));
    assert_eq!(s["last_pushed"]["error"], 4);
    assert_eq!(s["events"].as_array().map_or(0, Vec::len), pushes_before);
    assert!(calls(&s).is_empty());

    // Too many items: refused before sending (usage), exit 2.
    let o = run_ucm(
        &[
            "services",
            "push",
            "--phone",
            &phone,
            "--user",
            "jsmith",
            "--password-stdin",
            "--execute",
            "Key:Soft1",
            "Key:Soft2",
            "Key:Soft3",
            "Key:Soft4",
        ],
        "cisco\n",
    );
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));

    // Unreachable phone, and a peer that is not a phone: exit 2.
    let o = run_ucm(
        &[
            "services",
            "push",
            "--phone",
            "127.0.0.1:1",
            "--user",
            "jsmith",
            "--password-stdin",
            "--execute",
            "Key:Services",
            "--timeout",
            "5",
        ],
        "cisco\n",
    );
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let not_a_phone = srv.addr("http").to_string();
    let o = run_ucm(
        &[
            "services",
            "push",
            "--phone",
            &not_a_phone,
            "--user",
            "jsmith",
            "--password-stdin",
            "--execute",
            "Key:Services",
        ],
        "cisco\n",
    );
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));

    // Many phones at once: a list file, a result line each; the worst result decides.
    let list = write_file(
        dir.path(),
        "phones.txt",
        &format!("# lab phones\n{phone}\n{JOHN}\n"),
    );
    let o = ucm()
        .args([
            "services",
            "push",
            "--server",
            &node,
            "--phone-port",
            "18081",
        ])
        .args(["--user", "jsmith", "--execute", "Key:Services", "--from"])
        .arg(&list)
        .env("UCM_PASSWORD", "cisco")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert_eq!(table.matches("\tok\t").count(), 2, "{}", show(&o));
    let o = ucm()
        .args([
            "services",
            "push",
            "--phone",
            &phone,
            "--phone",
            "127.0.0.1:1",
            "--json",
        ])
        .args([
            "--user",
            "jsmith",
            "--execute",
            "Key:Services",
            "--timeout",
            "5",
        ])
        .env("UCM_PASSWORD", "cisco")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["phones"][0]["ok"], true, "{v:#}");
    assert_eq!(v["phones"][1]["ok"], false, "{v:#}");
}

#[test]
fn r5_services_lint_good_and_bad_objects() {
    let srv = Server::start(&[]);
    let http = srv.addr("http");
    // The node's own services menu, fetched as an 8851 would.
    let url = format!("http://{http}/ccmcip/getservicesmenu.jsp?name={JOHN}");
    let o = run_ucm(&["services", "lint", &url, "--model", "CP-8851"], "");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let url = format!("http://{http}/ccmcip/xmldirectorylist.jsp?l=s");
    let o = run_ucm(&["services", "lint", &url, "--json"], "");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["object"], "CiscoIPPhoneDirectory");
    assert_eq!(v["valid"], true);

    let dir = tempfile::tempdir().unwrap();
    // A third-party style menu (written as such services write them): valid.
    let good = write_file(
        dir.path(),
        "good.xml",
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<CiscoIPPhoneMenu>\n<Title>Weather</Title>\n<Prompt>Pick a city</Prompt>\n<MenuItem><Name>Auckland</Name><URL>http://example.net/w?c=akl</URL></MenuItem>\n<SoftKeyItem><Name>Select</Name><URL>SoftKey:Select</URL><Position>1</Position></SoftKeyItem>\n</CiscoIPPhoneMenu>\n",
    );
    let o = run_ucm(
        &[
            "services",
            "lint",
            good.to_str().unwrap(),
            "--model",
            "7841",
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));

    // Bad: an Input with six items and a bad flag, an image on a model without Image.
    let items: String = (0..6)
        .map(|i| format!("<InputItem><DisplayName>F{i}</DisplayName><QueryStringParam>p{i}</QueryStringParam><InputFlags>X</InputFlags></InputItem>"))
        .collect();
    let bad = write_file(
        dir.path(),
        "bad.xml",
        &format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><CiscoIPPhoneInput><Title>T</Title><URL>http://x/</URL>{items}</CiscoIPPhoneInput>"),
    );
    let o = run_ucm(&["services", "lint", bad.to_str().unwrap()], "");
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("CiscoIPPhoneInput"), "{}", show(&o));
    assert!(
        out.contains("InputItem[1]/InputFlags"),
        "every violation with its path: {}",
        show(&o)
    );
    let image = write_file(
        dir.path(),
        "image.xml",
        "<CiscoIPPhoneImage><LocationX>-1</LocationX><LocationY>-1</LocationY><Width>4</Width><Height>1</Height><Depth>2</Depth><Data>00</Data></CiscoIPPhoneImage>",
    );
    let o = run_ucm(
        &[
            "services",
            "lint",
            image.to_str().unwrap(),
            "--model",
            "CP-7841",
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));

    // What a phone cannot parse fails the check (issue 21): exit 1.
    let junk = write_file(dir.path(), "junk.xml", "<html><body>hello</body></html>");
    let o = run_ucm(&["services", "lint", junk.to_str().unwrap()], "");
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    // Unreachable, unknown model: exit 2.
    let o = run_ucm(
        &["services", "lint", "http://127.0.0.1:1/x", "--timeout", "5"],
        "",
    );
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let o = run_ucm(
        &[
            "services",
            "lint",
            good.to_str().unwrap(),
            "--model",
            "CP-0000",
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
}

/// Objects made by a third-party generator, the PyPI toolkit `cisco-ip-phone-services`
/// (nficano/cisco-ip-phone-services-toolkit, MIT): linted for a model, and its Execute pushed
/// to a simulated phone, which dials.
#[test]
fn r5_third_party_toolkit_objects_are_linted_and_pushed() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import cisco_ip_phone_services"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        crate::common::skip_or_fail(
            "the PyPI package cisco-ip-phone-services is not installed (pip install cisco-ip-phone-services)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
import sys, cisco_ip_phone_services as c
out = sys.argv[1]
open(out + "/menu.xml", "wb").write(c.CiscoIPPhoneMenu(title="Toolkit", prompt="Pick one").add_menu_item("Directory", "http://127.0.0.1/d").render())
open(out + "/text.xml", "wb").write(c.CiscoIPPhoneText(title="Hello", prompt="p", text="From the toolkit").render())
open(out + "/execute.xml", "wb").write(c.CiscoIPPhoneExecute(url="Dial:10002").render())
"#;
    let gen = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    for f in ["menu.xml", "text.xml", "execute.xml"] {
        let path = dir.path().join(f);
        let o = run_ucm(
            &[
                "services",
                "lint",
                path.to_str().unwrap(),
                "--model",
                "Cisco 8845",
            ],
            "",
        );
        assert_eq!(o.status.code(), Some(0), "{f}: {}", show(&o));
    }
    let srv = Server::start(&[]);
    let sim = Sim::start(&srv, &["--device", JOHN, "--first-ip", "127.0.18.10"]);
    let phone = sim.http(JOHN).to_string();
    let exec = dir.path().join("execute.xml");
    let o = run_ucm(
        &[
            "services",
            "push",
            "--phone",
            &phone,
            "--user",
            "jsmith",
            "--password-stdin",
            "--xml",
            exec.to_str().unwrap(),
        ],
        "cisco\n",
    );
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    wait_state(sim.http(JOHN), 10, "the pushed Dial runs", |s| {
        calls(s).iter().any(|c| c["remote_number"] == "10002")
    });
}

#[test]
fn r5_services_push_to_a_device_pool() {
    let srv = Server::start(&[]);
    let sim = Sim::start(
        &srv,
        &[
            "--device",
            JOHN,
            "--device",
            "SEP00036BC7B974",
            "--first-ip",
            "127.0.19.10",
            "--http-port",
            "18095",
        ],
    );
    let server = format!("http://{}", srv.addr("http"));
    let push = |password: &str| {
        run_ucm(
            &[
                "services",
                "push",
                "--device-pool",
                "HQ_DP",
                "--server",
                &server,
                "--phone-port",
                "18095",
                "--user",
                "jsmith",
                "--password-stdin",
                "--execute",
                "Play:chime.raw",
                "--json",
            ],
            &format!("{password}\n"),
        )
    };
    // jsmith may push to his own phone only: of the pool's registered phones, that one.
    let o = push("cisco");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(state(sim.http(JOHN))["events"]
        .to_string()
        .contains("Play:chime.raw"));
    assert!(!state(sim.http("SEP00036BC7B974"))["events"]
        .to_string()
        .contains("Play:chime.raw"));
    // A wrong password: the node refuses the list (exit 1) and nothing is pushed.
    let o = push("wrong");
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
}

#[test]
fn r5_services_push_to_a_paging_recipient_group() {
    let srv = Server::start(&[]);
    // Steve Smith's phone is in the demo's `branch` group, John's is not.
    let sim = Sim::start(
        &srv,
        &[
            "--device",
            JOHN,
            "--device",
            "SEP00036BC7B976",
            "--first-ip",
            "127.0.21.10",
            "--http-port",
            "18096",
        ],
    );
    let server = format!("http://{}", srv.addr("http"));
    let push = |group: &str| {
        run_ucm(
            &[
                "services",
                "push",
                "--group",
                group,
                "--server",
                &server,
                "--phone-port",
                "18096",
                "--user",
                "paging",
                "--password-stdin",
                "--execute",
                "Play:chime.raw",
                "--json",
            ],
            "paging\n",
        )
    };
    let o = push("branch");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(state(sim.http("SEP00036BC7B976"))["events"]
        .to_string()
        .contains("Play:chime.raw"));
    assert!(!state(sim.http(JOHN))["events"]
        .to_string()
        .contains("Play:chime.raw"));
    let o = push("no-such-group");
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        show(&o).contains("no recipient group no-such-group"),
        "{}",
        show(&o)
    );
}
