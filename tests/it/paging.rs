//! Issue 8, the Paging Server: DialCast calls page a recipient group of simulated phones over
//! multicast; G.729-only offers get 488; reports are kept; `ucm page` and SIPp as callers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{http_get, Server};
use crate::phone::{push, state, wait_state, Sim};

/// The 50 lab phones of the demo cluster (recipient group `demo-all`, DialCast 7000).
pub fn lab_phones() -> Vec<String> {
    // MACs count in hex: SEP000000001001 .. SEP000000001032.
    (1..=50u32)
        .map(|i| format!("SEP00000000{:04X}", 0x1000 + i))
        .collect()
}

/// Runs the lab phones (web servers on 8081, as the demo's paging section says) from
/// `first_ip`, plus `extra` devices.
pub fn start_lab(srv: &Server, first_ip: &str, extra: &[&str]) -> Sim {
    let mut args: Vec<String> = vec![
        "--first-ip".into(),
        first_ip.into(),
        "--http-port".into(),
        "8081".into(),
        "--auto-answer".into(),
    ];
    for d in lab_phones()
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
    {
        args.push("--device".into());
        args.push(d.into());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Sim::start(srv, &refs)
}

/// The receive stream a page left on a phone (the newest `mrx` one).
pub fn page_stream(s: &Value) -> Option<Value> {
    s["streams"]
        .as_array()?
        .iter()
        .find(|x| x["kind"] == "mrx")
        .cloned()
}

/// Polls the node's reports for `call_id` (the page is stored when it ends).
pub fn report_for(srv: &Server, call_id: &str) -> Value {
    let path = format!(
        "/ucm/paging/pages?call_id={}",
        ucm::phone::http::encode_component(call_id)
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, body) = http_get(srv.addr("http"), &path);
        if status == 200 {
            let v: Value = serde_json::from_slice(&body).expect("reports are JSON");
            return v["pages"][0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no report for {call_id} within 15 s (last: {status} {})\n{}",
            String::from_utf8_lossy(&body),
            srv.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Checks that every lab phone received the whole page in order, marked EF, and left it.
pub fn check_lab_phones(sim: &Sim, min_packets: u64) {
    for d in lab_phones() {
        let a: SocketAddr = sim.http(&d);
        let s = wait_state(a, 10, &format!("{d} left the page"), |s| {
            page_stream(s).is_some_and(|st| st["active"] == false)
        });
        let st = page_stream(&s).expect("an mrx stream");
        assert_eq!(st["stop_reason"], "RTPRx:Stop", "{d}: {st:#}");
        let rx = &st["rx"];
        let packets = st["packets"].as_u64().unwrap_or(0);
        assert!(
            packets >= min_packets,
            "{d}: only {packets} packets: {st:#}"
        );
        assert_eq!(rx["lost"], 0, "{d}: {st:#}");
        assert_eq!(rx["out_of_order"], 0, "{d}: {st:#}");
        assert_eq!(rx["duplicates"], 0, "{d}: {st:#}");
        assert_eq!(rx["ssrcs"].as_array().map(Vec::len), Some(1), "{d}: {st:#}");
        assert_eq!(
            rx["marker_packets"], 1,
            "{d}: the first packet only: {st:#}"
        );
        assert_eq!(
            st["dscp_counts"]["46"].as_u64(),
            Some(packets),
            "{d}: EF: {st:#}"
        );
        assert_eq!(rx["payload_types"][0]["payload_type"], 0, "{d}: {st:#}");
        assert_eq!(
            rx["payload_bytes"].as_u64(),
            Some(packets * 160),
            "{d}: {st:#}"
        );
    }
}

#[test]
fn r8_a_phone_dials_7000_and_fifty_phones_are_paged() {
    let srv = Server::start(&[]);
    let sim = start_lab(&srv, "127.0.8.10", &["SEP00036BC7B973"]);
    let caller = sim.http("SEP00036BC7B973");
    let (_, body) = push(caller, Some(("jsmith", "cisco")), &["Dial:7000"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    let s = wait_state(caller, 10, "the page answered", |s| {
        crate::phone::calls(s)
            .iter()
            .any(|c| c["state"] == "connected")
    });
    let call_id = crate::phone::calls(&s)
        .iter()
        .find(|c| c["state"] == "connected")
        .and_then(|c| c["call_id"].as_str().map(str::to_string))
        .expect("a connected call");
    // Every lab phone joins the page's group.
    for d in lab_phones() {
        wait_state(sim.http(&d), 10, &format!("{d} joined"), |s| {
            page_stream(s)
                .is_some_and(|st| st["active"] == true && st["packets"].as_u64() > Some(10))
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    let (_, body) = push(caller, Some(("jsmith", "cisco")), &["Key:Onhook"]);
    assert!(body.contains(r#"Status="0""#), "{body}");
    let report = report_for(&srv, &call_id);
    check_lab_phones(&sim, 20);
    assert_eq!(report["joined"], 50, "{report:#}");
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_eq!(report["ended_by"], "caller hung up", "{report:#}");
    assert_eq!(report["recipient_group"], "demo-all");
    assert_eq!(report["dialcast"], "7000");
    assert_eq!(report["calling"], "10001");
    let m = report["multicast"].as_str().unwrap_or_default();
    // Half the lab phones are at HQ, half at Branch: not one site, so the paging range.
    assert!(
        m.starts_with("239.0.1.") && m.ends_with(":20480"),
        "{report:#}"
    );
    for p in report["phones"].as_array().unwrap() {
        assert_eq!(p["outcome"], "joined", "{p}");
        assert_eq!(p["left"], true, "{p}");
    }
    // Every phone got exactly what the server sent, in order.
    let sent = report["stream"]["group_packets"].as_u64().unwrap();
    for d in lab_phones() {
        let st = page_stream(&state(sim.http(&d))).unwrap();
        assert_eq!(
            st["packets"].as_u64(),
            Some(sent),
            "{d}: sent {sent}: {st:#}"
        );
    }
}
