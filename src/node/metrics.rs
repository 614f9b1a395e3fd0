//! Counters exposed at `/metrics` in the Prometheus text format. Plain atomics: the hot paths
//! (every SIP message, every HTTP request) pay one relaxed increment.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub http_requests: AtomicU64,
    pub https_requests: AtomicU64,
    pub tftp_http_requests: AtomicU64,
    pub http_connections: AtomicU64,
    /// HTTP connections closed at accept: a listener's or one source's cap was reached.
    pub http_connections_refused: AtomicU64,
    /// HTTPS handshakes that failed (SIP's are among `sip`'s counters).
    pub tls_handshake_failures: AtomicU64,
    /// Call control's counters.
    pub sip: std::sync::Arc<crate::sip::SipMetrics>,
}

pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// Renders the counters plus the gauges the caller passes (name, help, value).
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let tls_failures = AtomicU64::new(
            self.tls_handshake_failures.load(Ordering::Relaxed)
                + self.sip.tls_handshake_failures.load(Ordering::Relaxed),
        );
        let counter = |out: &mut String, name: &str, help: &str, labels: &[(&str, &AtomicU64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for (l, v) in labels {
                let _ = writeln!(out, "{name}{l} {}", v.load(Ordering::Relaxed));
            }
        };
        counter(
            &mut out,
            "ucm_http_requests_total",
            "HTTP requests served, by listener.",
            &[
                ("{listener=\"http\"}", &self.http_requests),
                ("{listener=\"https\"}", &self.https_requests),
                ("{listener=\"tftp_http\"}", &self.tftp_http_requests),
            ],
        );
        counter(
            &mut out,
            "ucm_http_connections_total",
            "HTTP and HTTPS connections accepted.",
            &[("", &self.http_connections)],
        );
        counter(
            &mut out,
            "ucm_http_connections_refused_total",
            "HTTP and HTTPS connections closed at accept (listener or per-source cap).",
            &[("", &self.http_connections_refused)],
        );
        counter(
            &mut out,
            "ucm_sip_messages_received_total",
            "SIP messages received, by transport.",
            &[
                ("{transport=\"udp\"}", &self.sip.sip_udp_received),
                ("{transport=\"tcp\"}", &self.sip.sip_tcp_received),
                ("{transport=\"tls\"}", &self.sip.sip_tls_received),
            ],
        );
        counter(
            &mut out,
            "ucm_sip_responses_sent_total",
            "SIP responses sent.",
            &[("", &self.sip.sip_responses_sent)],
        );
        counter(
            &mut out,
            "ucm_sip_parse_errors_total",
            "SIP messages refused as malformed.",
            &[("", &self.sip.sip_parse_errors)],
        );
        counter(
            &mut out,
            "ucm_sip_stream_connections_total",
            "SIP TCP and TLS connections accepted.",
            &[("", &self.sip.sip_tcp_connections)],
        );
        counter(
            &mut out,
            "ucm_sip_stream_connections_closed_total",
            "SIP TCP and TLS connections closed by a limit: refused at a cap, or timed out idle or mid-message.",
            &[
                ("{reason=\"cap\"}", &self.sip.sip_connections_refused),
                ("{reason=\"timeout\"}", &self.sip.sip_connections_timed_out),
            ],
        );
        counter(
            &mut out,
            "ucm_tls_handshake_failures_total",
            "TLS handshakes that failed.",
            &[("", &tls_failures)],
        );
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {v}");
        }
        out
    }
}
