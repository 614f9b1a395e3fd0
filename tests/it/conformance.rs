//! The conformance harness (issue 4): every scenario of `conformance/scenarios/` runs against a
//! fresh `ucm serve` with tcpdump on `lo` and must match its golden ladder and the QoS policy
//! (the same runner as `cargo xtask conformance`, included from `xtask/src/scenario.rs`); and
//! breaking a DSCP setting or an XML element makes it fail with a reason naming the flow and
//! frames, or the frame and element path.

#[path = "../../xtask/src/scenario.rs"]
#[allow(dead_code)]
pub(crate) mod scenario;

use std::path::{Path, PathBuf};

use crate::common::{is_root, skip_or_fail};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The runner's options; `net` keeps concurrent tests' phones apart (127.77.net.0/24).
fn options(net: u8, set: &[&str]) -> Option<scenario::Options> {
    if !is_root() {
        skip_or_fail("capturing on lo needs root");
        return None;
    }
    if std::process::Command::new("tcpdump")
        .arg("--version")
        .output()
        .is_err()
    {
        skip_or_fail("tcpdump is not installed (Debian package tcpdump)");
        return None;
    }
    Some(scenario::Options {
        root: root(),
        ucm: PathBuf::from(env!("CARGO_BIN_EXE_ucm")),
        set: set.iter().map(|s| s.to_string()).collect(),
        bless: false,
        net,
    })
}

fn report(o: &scenario::Outcome) -> String {
    format!("{} ({:.1} s):\n{}", o.name, o.seconds, o.reasons.join("\n"))
}

#[test]
fn r4_every_scenario_matches_its_golden_and_the_policy() {
    let _lo = crate::common::capture_alone();
    let Some(opts) = options(41, &[]) else {
        return;
    };
    let names = scenario::list(&root()).unwrap();
    for want in [
        "registration",
        "basic_call",
        "forwarded_call",
        "services_menu",
        "push_auth",
        "em_hotdesk",
        "webdialer_call",
        "paging",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    // emcc_login (two clusters and an sftp server) runs in its own test below.
    let failed: Vec<String> = names
        .iter()
        .filter(|n| *n != "emcc_login")
        .map(|n| scenario::run(n, &opts))
        .filter(|o| !o.passed)
        .map(|o| report(&o))
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn r4_sip_marked_0_fails_naming_the_flows_and_frames() {
    let _lo = crate::common::capture_alone();
    // The cluster's call-signalling DSCP set to 0: the node's SIP (and the phone's, which takes
    // it from its configuration file) is no longer CS3.
    let Some(opts) = options(42, &["qos.call_signalling=0"]) else {
        return;
    };
    let o = scenario::run("registration", &opts);
    eprintln!("{}", report(&o));
    assert!(!o.passed, "passed with SIP marked 0");
    let node_sip = o.reasons.iter().find(|r| {
        r.starts_with("DSCP: flow 127.0.0.1:")
            && r.contains("(udp, class sip): expected DSCP 24, observed {\"0\":")
            && r.contains("first offending frames ")
    });
    assert!(node_sip.is_some(), "{}", report(&o));
    // Nothing else is blamed: HTTP is still 0 as the policy wants, and the ladder is the same.
    assert!(
        o.reasons.iter().all(|r| r.contains("class sip")),
        "{}",
        report(&o)
    );
}

#[test]
fn r4_a_push_with_a_bad_element_fails_naming_frame_and_element() {
    let _lo = crate::common::capture_alone();
    let Some(opts) = options(43, &[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Four ExecuteItems: a CiscoIPPhoneExecute carries at most three.
    let items = (1..=4)
        .map(|i| format!("<ExecuteItem Priority=\"0\" URL=\"Play:Classic{i}.raw\"/>"))
        .collect::<String>();
    let xml = dir.path().join("execute.xml");
    std::fs::write(
        &xml,
        format!("<CiscoIPPhoneExecute>{items}</CiscoIPPhoneExecute>"),
    )
    .unwrap();
    let scen = dir.path().join("push_auth.yaml");
    let text = std::fs::read_to_string(root().join("conformance/scenarios/push_auth.yaml"))
        .unwrap()
        .replacen(
            "--execute, \"Play:Classic2.raw\"]",
            &format!("--xml, \"{}\"]", xml.display()),
            1,
        );
    assert!(
        text.contains("--xml"),
        "push_auth.yaml changed: update this test"
    );
    std::fs::write(&scen, text).unwrap();
    let o = scenario::run_path("push_auth", Path::new(&scen), &opts);
    eprintln!("{}", report(&o));
    assert!(!o.passed, "passed with a bad Execute object");
    let xml_reason = o.reasons.iter().find(|r| {
        r.starts_with("XML: frame ")
            && r.contains("CiscoIPPhoneExecute element CiscoIPPhoneExecute")
            && r.contains("ExecuteItem")
    });
    assert!(xml_reason.is_some(), "{}", report(&o));
}

/// Issue 17: the `emcc_login` scenario, the runner's two clusters (home on 127.0.1.1, visiting
/// on 127.0.2.1, each its own `ucm serve`, each definition naming the other's HTTPS address
/// chosen before either starts) and OpenSSH's sftp server for `ucm emcc sync-certs`: the
/// cross-cluster login and logout match the golden ladder, every flow its DSCP, and the
/// inter-cluster API between the two nodes is classified `http` (TLS, by its ALPN).
#[test]
fn r17_emcc_login_scenario_runs_two_clusters_and_matches_its_golden() {
    let _lo = crate::common::capture_alone();
    if !Path::new("/usr/sbin/sshd").exists() {
        skip_or_fail("OpenSSH's sshd is not installed (apt-get install openssh-server)");
        return;
    }
    let Some(opts) = options(44, &[]) else {
        return;
    };
    let o = scenario::run("emcc_login", &opts);
    assert!(o.passed, "{}", report(&o));
}

/// A scenario with two clusters is checked before anything starts: a phone naming a cluster
/// that is not there, a cluster bound outside loopback and two clusters of one name are
/// errors naming the file and the field.
#[test]
fn r17_a_scenario_s_clusters_are_checked() {
    let _lo = crate::common::capture_alone();
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(root().join("conformance/scenarios/emcc_login.yaml")).unwrap();
    for (from, to, want) in [
        (
            "    cluster: visiting\n",
            "    cluster: elsewhere\n",
            "names cluster elsewhere, which is not under clusters",
        ),
        (
            "    bind: 127.0.2.1\n",
            "    bind: 10.0.0.1\n",
            "bind 10.0.0.1 is not an address in 127.0.0.0/8",
        ),
        (
            "  - name: visiting\n",
            "  - name: home\n",
            "cluster home named twice",
        ),
        (
            "clusters:\n",
            "cluster: fixtures/clusters/emcc-home.yaml\nclusters:\n",
            "cluster and clusters both given",
        ),
    ] {
        assert!(text.contains(from), "emcc_login.yaml changed: {from}");
        let p = dir.path().join("bad.yaml");
        std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
        let e = scenario::load_path(&p).unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("bad.yaml"), "{e}");
    }
    scenario::load_path(&root().join("conformance/scenarios/emcc_login.yaml")).unwrap();
}
