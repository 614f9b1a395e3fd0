//! Labelled counters and gauges for `/metrics` (Prometheus naming: `ucm_<what>_total` for
//! counters), counted from wherever an outcome is decided with one call:
//! `counters::count(counters::REGISTRATIONS, &[])`.
//!
//! Process-wide, as a Prometheus client's default registry is: one `ucm serve` is one process.
//! Label values come from bounded sets (status codes, route templates, reason names); past
//! [`MAX_SERIES`] series, new ones are dropped and counted in `ucm_metrics_series_dropped_total`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// The most label combinations kept: a bug passing an unbounded value cannot exhaust memory.
pub const MAX_SERIES: usize = 10_000;

/// A metric family: its name, type and help.
pub struct Family {
    pub name: &'static str,
    pub gauge: bool,
    pub help: &'static str,
}

macro_rules! families {
    ($($id:ident = $name:literal, $kind:ident, $help:literal;)*) => {
        $(pub const $id: &Family = &Family { name: $name, gauge: families!(@g $kind), help: $help };)*
        /// Every family, in the order `/metrics` lists them.
        pub const FAMILIES: &[&Family] = &[$($id),*];
    };
    (@g counter) => { false };
    (@g gauge) => { true };
}

families! {
    REGISTRATIONS = "ucm_sip_registrations_total", counter,
        "SIP REGISTERs accepted that bound a line.";
    REGISTRATION_FAILURES = "ucm_sip_registration_failures_total", counter,
        "SIP REGISTERs refused, by status code (401: digest authentication failed).";
    CALLS_ATTEMPTED = "ucm_calls_attempted_total", counter,
        "Calls call control tried to place (INVITEs from phones and trunks, third-party calls).";
    CALLS_CONNECTED = "ucm_calls_connected_total", counter,
        "Calls answered.";
    CALLS_FAILED = "ucm_calls_failed_total", counter,
        "Calls that ended unanswered, by SIP status code.";
    CALLS_ACTIVE = "ucm_calls_active", gauge,
        "Calls connected now.";
    EM_LOGINS = "ucm_em_logins_total", counter,
        "Extension Mobility logins that succeeded.";
    EM_LOGIN_FAILURES = "ucm_em_login_failures_total", counter,
        "Extension Mobility logins refused, by EM error code.";
    PAGES = "ucm_pages_total", counter,
        "Pages started through the Paging Server.";
    PAGES_RUNNING = "ucm_pages_running", gauge,
        "Pages running now.";
    PAGE_PHONES_JOINED = "ucm_page_phones_joined_total", counter,
        "Phones that joined a page.";
    WEBDIALER_CALLS = "ucm_webdialer_requests_total", counter,
        "WebDialer makeCall and endCall requests answered, by operation and response code.";
    HTTP_REQUESTS = "ucm_http_requests_by_route_total", counter,
        "HTTP(S) requests answered, by route template and status code.";
    SERIES_DROPPED = "ucm_metrics_series_dropped_total", counter,
        "Label combinations not kept because MAX_SERIES were held.";
}

type Key = (&'static str, Vec<(&'static str, String)>);

static SERIES: Mutex<BTreeMap<Key, i64>> = Mutex::new(BTreeMap::new());

/// Labels sorted by name: one series whatever order a caller gives them in.
fn key(family: &Family, labels: &[(&'static str, &str)]) -> Key {
    let mut l: Vec<(&'static str, String)> =
        labels.iter().map(|(k, v)| (*k, v.to_string())).collect();
    l.sort();
    (family.name, l)
}

fn add(family: &Family, labels: &[(&'static str, &str)], delta: i64) {
    let key = key(family, labels);
    let mut series = SERIES.lock().unwrap_or_else(|p| p.into_inner());
    let full = series.len() >= MAX_SERIES;
    match series.get_mut(&key) {
        Some(v) => *v += delta,
        None if full => {
            *series.entry((SERIES_DROPPED.name, Vec::new())).or_insert(0) += 1;
        }
        None => {
            series.insert(key, delta);
        }
    }
}

/// Adds one to a counter.
pub fn count(family: &Family, labels: &[(&'static str, &str)]) {
    add(family, labels, 1);
}

/// Moves a gauge by `delta`.
pub fn gauge(family: &Family, labels: &[(&'static str, &str)], delta: i64) {
    add(family, labels, delta);
}

/// A call was answered: counted, and one more active.
pub fn call_connected() {
    count(CALLS_CONNECTED, &[]);
    gauge(CALLS_ACTIVE, &[], 1);
}

/// A call left call control; `was_connected` ones are active no more.
pub fn call_ended(was_connected: bool) {
    if was_connected {
        gauge(CALLS_ACTIVE, &[], -1);
    }
}

/// An Extension Mobility login was refused with EM error `code`.
pub fn em_login_failed(code: u32) {
    count(EM_LOGIN_FAILURES, &[("code", &code.to_string())]);
}

/// WebDialer answered `operation` (makeCallSoap, endCallSoap) with response `code`.
pub fn webdialer_answered(operation: &str, code: i64) {
    count(
        WEBDIALER_CALLS,
        &[("operation", operation), ("code", &code.to_string())],
    );
}

/// A page ended; `joined` phones had joined it.
pub fn page_finished(joined: u64) {
    count(PAGES, &[]);
    add(PAGE_PHONES_JOINED, &[], joined.min(i64::MAX as u64) as i64);
}

/// The current value of a series (tests, `ucm status`).
pub fn value(family: &Family, labels: &[(&'static str, &str)]) -> i64 {
    let key = key(family, labels);
    let series = SERIES.lock().unwrap_or_else(|p| p.into_inner());
    series.get(&key).copied().unwrap_or(0)
}

/// Appends every family in the Prometheus text format (families never counted show 0 when they
/// have no labels, so a dashboard finds them).
pub fn render(out: &mut String) {
    let series = SERIES.lock().unwrap_or_else(|p| p.into_inner());
    for f in FAMILIES {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let kind = if f.gauge { "gauge" } else { "counter" };
        let _ = writeln!(out, "# TYPE {} {kind}", f.name);
        let mut any = false;
        for ((_, labels), v) in series
            .range((f.name, Vec::new())..)
            .take_while(|((n, _), _)| *n == f.name)
        {
            any = true;
            let _ = write!(out, "{}", f.name);
            if !labels.is_empty() {
                let body: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                let _ = write!(out, "{{{}}}", body.join(","));
            }
            let _ = writeln!(out, " {v}");
        }
        if !any {
            let _ = writeln!(out, "{} 0", f.name);
        }
    }
}

/// A label value as the text format writes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labelled_series_under_their_family() {
        count(WEBDIALER_CALLS, &[("operation", "makeCall"), ("code", "0")]);
        count(WEBDIALER_CALLS, &[("operation", "makeCall"), ("code", "0")]);
        count(HTTP_REQUESTS, &[("route", "/a\"b"), ("status", "200")]);
        let mut out = String::new();
        render(&mut out);
        assert!(out.contains("# TYPE ucm_calls_active gauge"), "{out}");
        assert!(
            out.contains("ucm_webdialer_requests_total{code=\"0\",operation=\"makeCall\"}"),
            "{out}"
        );
        assert!(out.contains("route=\"/a\\\"b\""), "{out}");
        assert!(value(WEBDIALER_CALLS, &[("operation", "makeCall"), ("code", "0")]) >= 2);
    }
}
