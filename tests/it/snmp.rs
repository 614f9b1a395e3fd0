//! The SNMP agent read by net-snmp's own tools (`snmpget`, `snmpwalk`, `snmpbulkwalk`,
//! `snmpset`) against a live node with simulated phones registered (issue 20).

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{have, skip_or_fail, write_file, Server};
use crate::phone::Sim;

const CCM_PHONE_ENTRY: &str = ".1.3.6.1.4.1.9.9.156.1.2.1.1";
const CCM_ENTRY: &str = ".1.3.6.1.4.1.9.9.156.1.1.2.1";
const CCM_PHONE_EXTN_ENTRY: &str = ".1.3.6.1.4.1.9.9.156.1.2.5.1";

fn net_snmp() -> bool {
    if have("snmpwalk") && have("snmpget") && have("snmpbulkwalk") {
        return true;
    }
    skip_or_fail("net-snmp's tools (Debian package snmp)");
    false
}

/// Runs a net-snmp tool against `agent` with numeric OIDs; (success, stdout + stderr).
fn snmp(tool: &str, agent: SocketAddr, community: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(tool)
        .args(["-v2c", "-c", community, "-On", "-t", "2", "-r", "1"])
        .arg(format!("udp:{agent}"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `OID = TYPE: value` lines of a walk, as (oid, value).
fn rows(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(o, v)| (o.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn column<'a>(rows: &'a [(String, String)], entry: &str, col: u32) -> Vec<(&'a str, &'a str)> {
    let prefix = format!("{entry}.{col}.");
    rows.iter()
        .filter_map(|(o, v)| o.strip_prefix(&prefix).map(|ix| (ix, v.as_str())))
        .collect()
}

#[test]
fn r20_snmp_agent_serves_nodes_and_registered_phones_to_net_snmp() {
    if !net_snmp() {
        return;
    }
    let srv = Server::start(&[]);
    let agent = srv.addr("snmp");
    let sim = Sim::start(&srv, &["--count", "3", "--first-ip", "127.0.6.10"]);

    let (ok, out) = snmp("snmpget", agent, "public", &[".1.3.6.1.2.1.1.5.0"]);
    assert!(ok && out.contains("STRING: \"ucm-pub\""), "{out}");

    let (ok, out) = snmp("snmpwalk", agent, "public", &[CCM_ENTRY]);
    assert!(ok, "{out}");
    let nodes = rows(&out);
    assert_eq!(
        column(&nodes, CCM_ENTRY, 2),
        [("1", "STRING: \"ucm-pub\"")],
        "{out}"
    );
    assert_eq!(
        column(&nodes, CCM_ENTRY, 5),
        [("1", "INTEGER: 2")],
        "up: {out}"
    );
    assert_eq!(
        column(&nodes, CCM_ENTRY, 7),
        [("1", "Hex-STRING: 7F 00 00 01")],
        "{out}"
    );

    let (ok, walk) = snmp("snmpwalk", agent, "public", &[".1.3.6.1.4.1.9.9.156"]);
    assert!(ok, "{walk}");
    let all = rows(&walk);
    // The three simulated phones are registered from their own addresses; the demo's other
    // phones are listed unregistered with address zero.
    let status = column(&all, CCM_PHONE_ENTRY, 7);
    let registered: Vec<&str> = status
        .iter()
        .filter(|(_, v)| *v == "INTEGER: 2")
        .map(|(ix, _)| *ix)
        .collect();
    assert_eq!(registered.len(), 3, "{walk}");
    assert!(status.len() > 3, "the unregistered demo phones too: {walk}");
    let names = column(&all, CCM_PHONE_ENTRY, 20);
    let addrs = column(&all, CCM_PHONE_ENTRY, 21);
    let mut seen = Vec::new();
    for ix in &registered {
        let name = names.iter().find(|(i, _)| i == ix).expect("name").1;
        let addr = addrs.iter().find(|(i, _)| i == ix).expect("address").1;
        seen.push((name.to_string(), addr.to_string()));
    }
    seen.sort();
    assert_eq!(
        seen[0],
        (
            "STRING: \"SEP00036BC7B973\"".to_string(),
            "Hex-STRING: 7F 00 06 0A".to_string()
        ),
        "{walk}"
    );
    for (_, a) in &seen {
        assert!(a.starts_with("Hex-STRING: 7F 00 06 "), "{seen:?}");
    }
    // jsmith's phone (SEP00036BC7B973) has DN 10001 on line 1.
    let ix = names
        .iter()
        .find(|(_, v)| *v == "STRING: \"SEP00036BC7B973\"")
        .unwrap()
        .0;
    let extn = column(&all, CCM_PHONE_EXTN_ENTRY, 2);
    assert!(
        extn.contains(&(&format!("{ix}.1"), "STRING: \"10001\"")),
        "{extn:?}"
    );

    // GetBulk walks the same objects as GetNext.
    let (ok, bulk) = snmp(
        "snmpbulkwalk",
        agent,
        "public",
        &["-Cr50", ".1.3.6.1.4.1.9.9.156"],
    );
    assert!(ok, "{bulk}");
    let bulk_rows = rows(&bulk);
    // sysUpTime is not in this subtree; the phones' state is stable while the sim runs.
    assert_eq!(bulk_rows, all, "snmpbulkwalk and snmpwalk disagree");

    // Nothing is writable.
    let (ok, out) = snmp(
        "snmpset",
        agent,
        "public",
        &[".1.3.6.1.2.1.1.5.0", "s", "stolen"],
    );
    assert!(!ok && out.contains("notWritable"), "{out}");
    drop(sim);
}

#[test]
fn r20_snmp_strangers_get_no_answer_and_others_are_still_served() {
    if !net_snmp() {
        return;
    }
    let srv = Server::start(&[]);
    let agent = srv.addr("snmp");
    // A wrong community, SNMPv1 and garbage: no answer at all (nothing to reflect).
    let (ok, out) = snmp("snmpget", agent, "private", &[".1.3.6.1.2.1.1.5.0"]);
    assert!(!ok && out.contains("Timeout"), "{out}");
    let v1 = Command::new("snmpget")
        .args(["-v1", "-c", "public", "-t", "1", "-r", "0"])
        .arg(format!("udp:{agent}"))
        .arg(".1.3.6.1.2.1.1.5.0")
        .output()
        .unwrap();
    assert!(!v1.status.success(), "SNMPv1 is not served");

    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    flood
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let garbage: Vec<Vec<u8>> = vec![
        vec![0x30, 0x82, 0xff, 0xff, 0x02, 0x01, 0x01],
        vec![0x30; 8192],
        vec![0u8; 60_000],
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
    ];
    for i in 0..2000 {
        let _ = flood.send_to(&garbage[i % garbage.len()], agent);
    }
    let mut buf = [0u8; 2048];
    assert!(
        flood.recv_from(&mut buf).is_err(),
        "the agent answered a stranger"
    );
    let (ok, out) = snmp("snmpget", agent, "public", &[".1.3.6.1.2.1.1.5.0"]);
    assert!(ok && out.contains("ucm-pub"), "still served: {out}");
    assert!(srv.logs().contains("SNMP: request dropped"), "logged");
}

#[test]
fn r20_snmp_answers_to_one_source_are_capped_per_second() {
    if !net_snmp() {
        return;
    }
    // The demo with a budget of 5 answers per second per source.
    let demo = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/clusters/demo.yaml"
    ))
    .unwrap();
    let text = demo.replace(
        "snmp:\n  communities:\n    - name: public\n",
        "snmp:\n  responses_per_source_per_second: 5\n  communities:\n    - name: public\n",
    );
    assert_ne!(text, demo, "the demo's snmp section moved");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_file(dir.path(), "demo.yaml", &text);
    let srv = Server::start(&["--config", cfg.to_str().unwrap()]);
    let agent = srv.addr("snmp");
    // A valid Get for sysName.0, BER as net-snmp sends it, request-id 1.
    let get: &[u8] = &[
        0x30, 0x26, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c', 0xa0, 0x19,
        0x02, 0x01, 0x01, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x0e, 0x30, 0x0c, 0x06, 0x08,
        0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x05, 0x00, 0x05, 0x00,
    ];
    // Check the hand-made request first (one answer), then a burst.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let started = Instant::now();
    let mut answered = 0u64;
    let mut buf = [0u8; 2048];
    sock.send_to(get, agent).unwrap();
    if sock.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    assert_eq!(answered, 1, "the hand-made Get is answered");
    for _ in 0..200 {
        sock.send_to(get, agent).unwrap();
    }
    while sock.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    // Each started second of the run allows 5 answers.
    let seconds = started.elapsed().as_secs() + 1;
    assert!(answered <= 5 * seconds, "{answered} answers in {seconds} s");
    assert!(srv.logs().contains("over its answers per second"), "logged");
}

/// README's SNMP example run as written, in network and PID namespaces of its own (the demo
/// binds the standard ports, 161 included; each phone serves HTTP on port 80 of its address).
#[test]
fn r20_readme_snmp_example_runs_as_written() {
    if !net_snmp() {
        return;
    }
    crate::readme::run_example(
        "## SNMP",
        6,
        &[
            (2, "ucm-pub"),
            (3, "ucm-pub"),
            (5, "ucm-pub"),
            (4, "7F 00 00 14"),
            (4, "7F 00 00 15"),
            (4, "00 00 00 00"),
        ],
    );
}

/// Runs a net-snmp tool with SNMPv3 `security` arguments (`-l`, `-u`, `-a` …) against `agent`.
fn snmp_v3(tool: &str, agent: SocketAddr, security: &[&str], args: &[&str]) -> (bool, String) {
    let out = Command::new(tool)
        .args(["-v3", "-On", "-t", "2", "-r", "0"])
        .args(security)
        .arg(format!("udp:{agent}"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const AUTH_PRIV: &[&str] = &[
    "-l",
    "authPriv",
    "-u",
    "ucmv3",
    "-a",
    "SHA",
    "-A",
    "ucmv3auth",
    "-x",
    "AES",
    "-X",
    "ucmv3priv",
];

/// The demo with more SNMPv3 users: `v3sha256` (SHA-256, authNoPriv) and `v3open`
/// (noAuthNoPriv), and `per_second` answers per source.
fn demo_with_v3_users(dir: &std::path::Path, per_second: u32) -> std::path::PathBuf {
    let demo = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/clusters/demo.yaml"
    ))
    .unwrap();
    let text = demo.replace(
        "  v3_users:\n",
        &format!(
            "  responses_per_source_per_second: {per_second}\n  v3_users:\n\
             \x20   - name: v3sha256\n\
             \x20     auth: {{ protocol: sha-256, password: sha256-secret }}\n\
             \x20   - name: v3open\n"
        ),
    );
    assert_ne!(text, demo, "the demo's snmp section moved");
    write_file(dir, "demo.yaml", &text)
}

#[test]
fn r20_snmpv3_auth_priv_reads_sys_name_and_the_ccm_table() {
    if !net_snmp() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_with_v3_users(dir.path(), 2000);
    let srv = Server::start(&["--config", cfg.to_str().unwrap()]);
    let agent = srv.addr("snmp");

    // authPriv: SHA + AES-128, discovery first (net-snmp learns the engine ID and time).
    let (ok, out) = snmp_v3("snmpget", agent, AUTH_PRIV, &[".1.3.6.1.2.1.1.5.0"]);
    assert!(ok && out.contains("STRING: \"ucm-pub\""), "{out}");
    let (ok, out) = snmp_v3("snmpwalk", agent, AUTH_PRIV, &[CCM_ENTRY]);
    assert!(ok, "{out}");
    let nodes = rows(&out);
    assert_eq!(
        column(&nodes, CCM_ENTRY, 2),
        [("1", "STRING: \"ucm-pub\"")],
        "{out}"
    );
    assert_eq!(column(&nodes, CCM_ENTRY, 5), [("1", "INTEGER: 2")], "{out}");
    // snmpEngineID, snmpEngineBoots (RFC 3411) read over SNMPv3: 17 octets, 80 00 00 09 05 …
    let (ok, out) = snmp_v3(
        "snmpget",
        agent,
        AUTH_PRIV,
        &[".1.3.6.1.6.3.10.2.1.1.0", ".1.3.6.1.6.3.10.2.1.2.0"],
    );
    assert!(ok && out.contains("Hex-STRING: 80 00 00 09 05"), "{out}");
    assert!(out.contains(".1.3.6.1.6.3.10.2.1.2.0 = INTEGER: "), "{out}");
    // The same walk over SNMPv2c agrees.
    let (_, v2) = snmp("snmpwalk", agent, "public", &[CCM_ENTRY]);
    assert_eq!(rows(&v2), nodes);

    // authNoPriv with HMAC-SHA-256-192 (RFC 7860) and noAuthNoPriv for a user set up so.
    let sha256 = [
        "-l",
        "authNoPriv",
        "-u",
        "v3sha256",
        "-a",
        "SHA-256",
        "-A",
        "sha256-secret",
    ];
    let (ok, out) = snmp_v3("snmpget", agent, &sha256, &[".1.3.6.1.2.1.1.5.0"]);
    assert!(ok && out.contains("ucm-pub"), "{out}");
    let open = ["-l", "noAuthNoPriv", "-u", "v3open"];
    let (ok, out) = snmp_v3("snmpget", agent, &open, &[".1.3.6.1.2.1.1.5.0"]);
    assert!(ok && out.contains("ucm-pub"), "{out}");

    // ucmv3 is an authPriv user: without privacy it is refused, not served.
    let below = [
        "-l",
        "authNoPriv",
        "-u",
        "ucmv3",
        "-a",
        "SHA",
        "-A",
        "ucmv3auth",
    ];
    let (ok, out) = snmp_v3("snmpget", agent, &below, &[".1.3.6.1.2.1.1.5.0"]);
    assert!(!ok && out.contains("authorizationError"), "{out}");
    // A noAuthNoPriv user asking for authentication: unsupported security level.
    let over = [
        "-l",
        "authNoPriv",
        "-u",
        "v3open",
        "-a",
        "SHA",
        "-A",
        "whatever1",
    ];
    let (ok, out) = snmp_v3("snmpget", agent, &over, &[".1.3.6.1.2.1.1.5.0"]);
    assert!(!ok && out.contains("Unsupported security level"), "{out}");

    // Wrong password: net-snmp reports the agent's usmStatsWrongDigests.
    let wrong = [
        "-l",
        "authPriv",
        "-u",
        "ucmv3",
        "-a",
        "SHA",
        "-A",
        "not-the-password",
        "-x",
        "AES",
        "-X",
        "ucmv3priv",
    ];
    let (ok, out) = snmp_v3("snmpget", agent, &wrong, &[".1.3.6.1.2.1.1.5.0"]);
    assert!(!ok && out.contains("Authentication failure"), "{out}");
    assert!(!out.contains("ucm-pub"), "{out}");
    // An unknown user: usmStatsUnknownUserNames.
    let stranger = [
        "-l",
        "authNoPriv",
        "-u",
        "mallory",
        "-a",
        "SHA",
        "-A",
        "whatever1",
    ];
    let (ok, out) = snmp_v3("snmpget", agent, &stranger, &[".1.3.6.1.2.1.1.5.0"]);
    assert!(!ok && out.contains("Unknown user name"), "{out}");
    assert!(
        srv.logs().contains("SNMP: request refused with a Report"),
        "logged"
    );
    assert!(
        !srv.logs().contains("ucmv3auth") && !srv.logs().contains("ucmv3priv"),
        "no secret in the logs"
    );
}

#[test]
fn r20_snmpv3_stranger_floods_stay_within_the_per_source_budget() {
    if !net_snmp() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = demo_with_v3_users(dir.path(), 5);
    let srv = Server::start(&["--config", cfg.to_str().unwrap()]);
    let agent = srv.addr("snmp");
    // A discovery request as net-snmp sends it (empty engine ID and user, reportable), and
    // v3 garbage: broken lengths, a wrong security model, random bytes after the version.
    let discovery: &[u8] = &[
        0x30, 0x3a, 0x02, 0x01, 0x03, 0x30, 0x0f, 0x02, 0x02, 0x4a, 0x69, 0x02, 0x03, 0x00, 0xff,
        0xe3, 0x04, 0x01, 0x04, 0x02, 0x01, 0x03, 0x04, 0x10, 0x30, 0x0e, 0x04, 0x00, 0x02, 0x01,
        0x00, 0x02, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00, 0x04, 0x00, 0x30, 0x12, 0x04, 0x00, 0x04,
        0x00, 0xa0, 0x0c, 0x02, 0x02, 0x37, 0xf0, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00, 0x30, 0x00,
    ];
    // The stranger sends from 127.0.0.2; net-snmp below from 127.0.0.1.
    let sock = UdpSocket::bind("127.0.0.2:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    sock.send_to(discovery, agent).unwrap();
    let (n, _) = sock.recv_from(&mut buf).expect("a discovery Report");
    // The Report names usmStatsUnknownEngineIDs (1.3.6.1.6.3.15.1.1.4.0).
    let oid = [
        0x06, 0x0a, 0x2b, 0x06, 0x01, 0x06, 0x03, 0x0f, 0x01, 0x01, 0x04, 0x00,
    ];
    assert!(
        buf[..n].windows(oid.len()).any(|w| w == oid),
        "{:02x?}",
        &buf[..n]
    );
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![0x30, 0x82, 0xff, 0xff, 0x02, 0x01, 0x03],
        discovery
            .iter()
            .map(|&b| if b == 0x03 { 0x02 } else { b })
            .collect(),
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20 {
        let mut g = vec![0x30, 0x81, 0xc8, 0x02, 0x01, 0x03];
        for _ in 0..200 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            g.push(seed as u8);
        }
        garbage.push(g);
    }
    let started = Instant::now();
    let mut answered = 0u64;
    for i in 0..2000 {
        let m: &[u8] = if i % 2 == 0 {
            discovery
        } else {
            &garbage[i % garbage.len()]
        };
        let _ = sock.send_to(m, agent);
    }
    while sock.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    let seconds = started.elapsed().as_secs() + 1;
    assert!(answered <= 5 * seconds, "{answered} answers in {seconds} s");
    // Other sources are still served, SNMPv3 included.
    let (ok, out) = snmp_v3("snmpget", agent, AUTH_PRIV, &[".1.3.6.1.2.1.1.5.0"]);
    assert!(ok && out.contains("ucm-pub"), "still served: {out}");
}

#[test]
fn r20_snmpv3_config_check_refuses_short_passwords_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let demo = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/clusters/demo.yaml"
    ))
    .unwrap();
    let text = demo.replace("password: ucmv3priv", "password: short");
    assert_ne!(text, demo);
    let line = text
        .lines()
        .position(|l| l.contains("password: short"))
        .unwrap()
        + 1;
    let f = write_file(dir.path(), "bad.yaml", &text);
    let out = crate::common::ucm()
        .args(["config", "check"])
        .arg(&f)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("snmp.v3_users[0].privacy.password")
            && said.contains("at least 8 characters")
            && said.contains(&format!(":{line}")),
        "line {line}: {said}"
    );
    assert!(
        !said.contains("short\""),
        "the password is not echoed: {said}"
    );
}
