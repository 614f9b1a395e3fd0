//! Cluster definitions: every kind of mistake is refused with file, line and field (issue 2).

use ucm::config::{ConfigError, LoadError};

/// A small valid definition the cases below break one way each.
const BASE: &str = r#"cluster:
  id: t
  name: Test
nodes:
  - name: n1
    address: 127.0.0.1
    services: [call-processing, tftp]
partitions:
  - name: PT1
calling_search_spaces:
  - name: CSS1
    partitions: [PT1]
device_pools:
  - name: DP1
    node_group: [n1]
directory_numbers:
  - pattern: "1000"
    partition: PT1
  - pattern: "1001"
    partition: PT1
devices:
  - name: SEP000000000001
    model: Cisco 8845
    device_pool: DP1
    css: CSS1
    lines:
      - dn: "1000"
        partition: PT1
  - name: SEP000000000002
    model: Cisco 8845
    device_pool: DP1
    lines:
      - dn: "1001"
        partition: PT1
end_users:
  - userid: alice
    last_name: Liddell
    password: secret
    pin: "1234"
    associated_devices: [SEP000000000001]
"#;

fn errors(text: &str) -> Vec<ConfigError> {
    match ucm::services::parse_str(text, "cluster.yaml") {
        Ok(_) => panic!("definition was accepted:\n{text}"),
        Err(LoadError::Invalid(e)) => e,
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn line_of(text: &str, needle: &str) -> u64 {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in text")) as u64
        + 1
}

/// The line number of the `n`th (0-based) line containing `needle`.
fn nth_line_of(text: &str, needle: &str, n: usize) -> u64 {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(n)
        .unwrap_or_else(|| panic!("{needle:?} #{n} not in text"))
        .0 as u64
        + 1
}

/// Asserts exactly one error, on the line holding `marker`, naming `field` and saying `says`.
fn expect_one(text: &str, marker: &str, field: &str, says: &str) {
    expect_one_at(text, line_of(text, marker), field, says)
}

fn expect_one_at(text: &str, line: u64, field: &str, says: &str) {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
    let e = &errs[0];
    assert_eq!(e.file, "cluster.yaml");
    assert_eq!(e.line, line, "wrong line in {e}");
    assert_eq!(e.field, field, "wrong field in {e}");
    assert!(
        e.message.contains(says),
        "message {:?} lacks {says:?}",
        e.message
    );
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("cluster.yaml:{}:", e.line)),
        "{shown}"
    );
}

#[test]
fn r2_base_definition_is_valid() {
    let def = ucm::services::parse_str(BASE, "cluster.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(def.devices.len(), 2);
}

#[test]
fn r2_unknown_partition_in_css() {
    let t = BASE.replace("partitions: [PT1]", "partitions: [PT1, Nowhere_PT]");
    expect_one(
        &t,
        "Nowhere_PT",
        "calling_search_spaces[0].partitions[1]",
        "unknown partition \"Nowhere_PT\"",
    );
}

#[test]
fn r2_dn_pattern_that_is_not_a_pattern() {
    let t = BASE.replace("pattern: \"1001\"", "pattern: \"10O1\"");
    // The device's line now names a DN that does not exist either; both are reported.
    let errs = errors(&t.replace("dn: \"1001\"", "dn: \"10O1\""));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].field, "directory_numbers[1].pattern");
    assert!(errs[0].message.contains("not a pattern"), "{}", errs[0]);
    assert_eq!(errs[0].line, line_of(&t, "10O1"));
}

#[test]
fn r2_bad_mac_in_device_name() {
    let t = BASE.replace("SEP000000000002", "SEP00000000000G");
    expect_one(&t, "SEP00000000000G", "devices[1].name", "bad device name");
    let t = BASE.replace("SEP000000000002", "SEP0000000002");
    expect_one(
        &t,
        "SEP0000000002",
        "devices[1].name",
        "12 upper-case hex digits",
    );
}

#[test]
fn r2_duplicate_device_names() {
    let t = BASE.replacen("SEP000000000002", "SEP000000000001", 1);
    expect_one_at(
        &t,
        nth_line_of(&t, "SEP000000000001", 1),
        "devices[1]",
        "duplicate device name",
    );
}

#[test]
fn r2_line_on_no_device() {
    let t = BASE.replace(
        "\ndevices:",
        "\n  - pattern: \"1002\"\n    partition: PT1\ndevices:",
    );
    expect_one(
        &t,
        "\"1002\"",
        "directory_numbers[2].pattern",
        "on no device",
    );
}

#[test]
fn r2_unknown_references_each_name_their_field() {
    let t = BASE.replace("    css: CSS1\n", "    css: CSS9\n");
    expect_one(
        &t,
        "css: CSS9",
        "devices[0].css",
        "unknown calling search space",
    );
    let t = BASE.replacen("device_pool: DP1\n    css", "device_pool: DP9\n    css", 1);
    expect_one(&t, "DP9", "devices[0].device_pool", "unknown device pool");
    let t = BASE.replace("node_group: [n1]", "node_group: [n7]");
    expect_one(&t, "n7", "device_pools[0].node_group[0]", "unknown node");
    let t = BASE.replace(
        "associated_devices: [SEP000000000001]",
        "associated_devices: [SEP0000000000FF]",
    );
    expect_one(
        &t,
        "SEP0000000000FF",
        "end_users[0].associated_devices[0]",
        "unknown device",
    );
    // A line naming a DN that does not exist; the DN it used to name is now on no device.
    let t = BASE.replace("      - dn: \"1000\"", "      - dn: \"1009\"");
    let errs = errors(&t);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs.iter().any(|e| e.field == "devices[0].lines[0].dn"
        && e.line == line_of(&t, "\"1009\"")
        && e.message.contains("unknown directory number")));
    assert!(errs
        .iter()
        .any(|e| e.field == "directory_numbers[0].pattern" && e.message.contains("on no device")));
}

#[test]
fn r2_yaml_type_and_spelling_errors() {
    let t = BASE.replace(
        "    services: [call-processing, tftp]",
        "    services: [call-processing, teletype]",
    );
    let errs = errors(&t);
    assert_eq!(errs[0].line, line_of(&t, "teletype"));
    assert!(errs[0].message.contains("teletype"), "{}", errs[0]);
    let t = BASE.replace("  name: Test\n", "  name: Test\n  colour: blue\n");
    let errs = errors(&t);
    assert_eq!(errs[0].line, line_of(&t, "colour"));
    assert_eq!(errs[0].field, "cluster.colour");
    assert!(errs[0].message.contains("unknown field"), "{}", errs[0]);
    let t = BASE.replace(
        "model: Cisco 8845\n    device_pool: DP1\n    lines",
        "model: [1, 2]\n    device_pool: DP1\n    lines",
    );
    // Found where it is, among what follows from that device not reading (its line is on no
    // device).
    let errs = errors(&t);
    assert!(
        errs.iter()
            .any(|e| e.line == line_of(&t, "model: [1, 2]")
                && e.field.starts_with("devices[1].model")),
        "{errs:#?}"
    );
}

#[test]
fn r2_secrets_and_pins() {
    let t = BASE.replace("pin: \"1234\"", "pin: \"12ab\"");
    expect_one(&t, "12ab", "end_users[0].pin", "digits");
    let t = BASE.replace(
        "password: secret",
        "password: secret\n    password_hash: \"$argon2id$nope\"",
    );
    let errs = errors(&t);
    assert!(
        errs.iter().any(|e| e.message.contains("not both")),
        "{errs:#?}"
    );
}

#[test]
fn r2_route_patterns_and_translations() {
    let extra =
        "route_patterns:\n  - pattern: 9.[2-9]XXXXXX\n    partition: PT1\n    block: true\n";
    let ok = format!("{BASE}{extra}");
    ucm::services::parse_str(&ok, "cluster.yaml").unwrap_or_else(|e| panic!("{e}"));
    let bad = ok.replace("9.[2-9]XXXXXX", "9.[9-2]XXXXXX");
    expect_one(
        &bad,
        "9.[9-2]",
        "route_patterns[0].pattern",
        "not a pattern",
    );
    let dup = ok.replace("9.[2-9]XXXXXX", "\"1000\"");
    expect_one_at(
        &dup,
        nth_line_of(&dup, "\"1000\"", 2),
        "route_patterns[0].pattern",
        "already defined",
    );
    let no_target = ok.replace("    block: true\n", "");
    expect_one(
        &no_target,
        "9.[2-9]",
        "route_patterns[0]",
        "exactly one of route_list or sip_trunk",
    );
}

#[test]
fn r2_all_problems_are_reported_at_once() {
    let t = BASE
        .replace("partitions: [PT1]", "partitions: [PTX]")
        .replace("SEP000000000002", "SEPXYZ");
    let errs = errors(&t);
    assert_eq!(errs.len(), 2, "{errs:#?}");
}

#[test]
fn r2_demo_cluster_carries_the_seed_examples() {
    let d = ucm::services::demo().unwrap_or_else(|e| panic!("{e}"));
    let jsmith = d
        .end_users
        .iter()
        .find(|u| u.userid == "jsmith")
        .expect("jsmith");
    assert_eq!(jsmith.display_name(), "John Smith");
    assert_eq!(jsmith.password.as_deref(), Some("cisco"));
    assert_eq!(jsmith.pin.as_deref(), Some("12345"));
    assert_eq!(jsmith.associated_devices, ["SEP00036BC7B973"]);
    let dev = |n: &str| {
        d.devices
            .iter()
            .find(|x| x.name == n)
            .unwrap_or_else(|| panic!("{n}"))
    };
    assert_eq!(dev("SEP00036BC7B973").lines[0].dn, "10001");
    assert_eq!(dev("SEP00036BC7B974").lines[0].dn, "10002");
    assert!(dev("SEP0000000000A1").em_enabled);
    let prof = d
        .device_profiles
        .iter()
        .find(|p| Some(&p.name) == jsmith.default_profile.as_ref())
        .expect("EM profile");
    assert_eq!(prof.lines[0].dn, "10001");
    let logout = dev("SEP0000000000A1")
        .logout_profile
        .clone()
        .expect("logout profile");
    let lp = d
        .device_profiles
        .iter()
        .find(|p| p.name == logout)
        .expect("profile");
    assert_eq!(lp.lines[0].dn, "29001");
    for (u, dn) in [("sadams", "23923"), ("ssmith", "30271")] {
        let user = d.end_users.iter().find(|x| x.userid == u).expect(u);
        assert_eq!(
            user.primary_extension.as_ref().map(|p| p.dn.as_str()),
            Some(dn)
        );
    }
    let emproxy = d
        .application_users
        .iter()
        .find(|a| a.userid == "emproxy")
        .expect("emproxy");
    assert!(emproxy.roles.contains(&ucm::config::model::Role::EmProxy));
    assert!(d
        .phone_services
        .iter()
        .any(|s| s.name == "Extension Mobility"));
    assert!(d
        .phone_services
        .iter()
        .any(|s| s.name == "Corporate Directory"));
    assert!(
        d.devices.len() >= 50,
        "phone sim --count 50 needs 50 phones"
    );
}

/// A TLS trunk's CA file must exist and hold certificates; every mistake names the field and
/// the file (issue 3).
#[test]
fn r3_trunk_tls_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&key).unwrap();
    let good = dir.path().join("ca.pem");
    std::fs::write(&good, ca.pem()).unwrap();
    let not_pem = dir.path().join("junk.pem");
    std::fs::write(&not_pem, "this is no certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let trunk = |transport: &str, ca: &std::path::Path, name: &str| {
        format!(
            "{BASE}sip_trunks:\n  - name: GW\n    destinations: [\"gw.example.com:5061\", \"127.0.0.1:5061\"]\n    transport: {transport}\n    device_pool: DP1\n    tls_ca: {}\n    tls_server_name: {name}\n",
            ca.display()
        )
    };
    ucm::services::parse_str(&trunk("tls", &good, "gw.example.com"), "cluster.yaml")
        .unwrap_or_else(|e| panic!("{e}"));
    let text = trunk("tls", &missing, "gw.example.com");
    expect_one(
        &text,
        "tls_ca:",
        "sip_trunks[0].tls_ca",
        "missing.pem: No such file",
    );
    let text = trunk("tls", &not_pem, "gw.example.com");
    expect_one(
        &text,
        "tls_ca:",
        "sip_trunks[0].tls_ca",
        "junk.pem: no PEM certificate",
    );
    let text = trunk("tls", &good, "not a name");
    expect_one(
        &text,
        "tls_server_name:",
        "sip_trunks[0].tls_server_name",
        "not a host name",
    );
    let errs = errors(&trunk("udp", &good, "gw.example.com"));
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["sip_trunks[0].tls_ca", "sip_trunks[0].tls_server_name"],
        "{errs:#?}"
    );
    assert!(errs[0]
        .message
        .contains("only to a trunk with transport: tls"));
}

#[test]
fn r14_webdialer_and_paging_need_call_processing_on_their_node() {
    for flag in ["webdialer", "paging"] {
        let t = BASE.replace(
            "    services: [call-processing, tftp]",
            &format!("    services: [tftp, {flag}]"),
        );
        expect_one(
            &t,
            &format!("services: [tftp, {flag}]"),
            "nodes[0].services[1]",
            &format!("{flag} needs call-processing on the same node"),
        );
    }
}

#[test]
fn r14_every_service_flag_is_spelt_as_the_definition_spells_it() {
    for s in ucm::config::model::NodeService::all() {
        let yaml = serde_json::to_value(s).unwrap();
        assert_eq!(yaml.as_str(), Some(s.flag()));
    }
}

#[test]
fn r21_yaml_syntax_errors_are_reported_as_such() {
    // A key indented off its mapping: the parser's complaint, not "missing field".
    let t = BASE.replace("  name: Test\n", " name: Test\n");
    let errs = errors(&t);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(errs[0].line, line_of(&t, " name: Test"), "{}", errs[0]);
    assert!(
        errs[0].message.starts_with("YAML syntax error: ") && !errs[0].message.contains("missing"),
        "{}",
        errs[0]
    );
    let t = BASE.replace("partitions: [PT1]", "partitions: [PT1");
    let errs = errors(&t);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].message.contains("YAML syntax error"), "{}", errs[0]);
}

#[test]
fn r21_structural_and_semantic_errors_all_at_once() {
    // devices[0] has a misspelt field, devices[1] a wrong type, end_users[0] is fine but the
    // cluster section has an unknown field and a CSS names an unknown partition.
    let t = BASE
        .replace("  name: Test\n", "  name: Test\n  colour: blue\n")
        .replace("partitions: [PT1]", "partitions: [PTX]")
        .replace("    css: CSS1\n", "    css: CSS1\n    speling: 1\n")
        .replace(
            "model: Cisco 8845\n    device_pool: DP1\n    lines:\n      - dn: \"1001\"",
            "model: [1, 2]\n    device_pool: DP1\n    lines:\n      - dn: \"1001\"",
        );
    let t = format!(
        "{t}  - userid: bob\n    last_name: B\n    associated_devices: [SEP000000000009]\n"
    );
    let errs = errors(&t);
    let want = [
        (line_of(&t, "colour"), "cluster.colour", "unknown field"),
        (
            line_of(&t, "[PTX]"),
            "calling_search_spaces[0].partitions[0]",
            "PTX",
        ),
        (
            line_of(&t, "speling"),
            "devices[0].speling",
            "unknown field",
        ),
        (line_of(&t, "model: [1, 2]"), "devices[1].model", ""),
        // The second user is end_users[1] in the file whatever did not read before it.
        (
            line_of(&t, "[SEP000000000009]"),
            "end_users[1].associated_devices[0]",
            "unknown device",
        ),
    ];
    for (line, field, says) in want {
        assert!(
            errs.iter()
                .any(|e| e.line == line && e.field.starts_with(field) && e.message.contains(says)),
            "no {line}: {field}: {says} in {errs:#?}"
        );
    }
    // Sorted by place in the file.
    assert!(errs.windows(2).all(|w| w[0].line <= w[1].line), "{errs:#?}");
}
