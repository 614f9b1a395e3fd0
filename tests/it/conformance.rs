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
    let failed: Vec<String> = names
        .iter()
        .map(|n| scenario::run(n, &opts))
        .filter(|o| !o.passed)
        .map(|o| report(&o))
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn r4_sip_marked_0_fails_naming_the_flows_and_frames() {
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
