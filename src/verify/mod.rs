//! Verification of captures: `ucm pcap verify`.
//!
//! This first version is the **DSCP audit** (issue 4): every IP packet of a capture is put in a
//! flow ([`crate::pcap::flow`]), every flow in a traffic class ([`classify`]), and each
//! direction's packets are checked against the DSCP the [`policy`] expects from that sender for
//! that class. The pipeline:
//!
//! ```text
//! CaptureReader -> dissect (innermost IP, ports) -> Defragmenter -> FlowTable
//!      -> per direction: DSCP counts + first frames, RTP evidence; SIP/SDP -> MediaBook
//!      -> finish: classify each flow, judge each direction -> FileAudit -> Report
//! ```
//!
//! - [`audit::audit_capture`] / [`audit::Auditor`]: streaming audit of one capture (memory
//!   bounded by the flow table, never by the file size).
//! - [`policy::Policy`]: the YAML policy (built-in default: [`policy::DEFAULT_POLICY_YAML`]).
//! - [`report::Report`]: text, JSON and JUnit renderings of a run.
//!
//! Still to come (issue 4): XML payload checks, SIP/HTTP/RTP ladders compared with golden
//! captures, SIP over TCP through TCP reassembly ([`audit::Auditor::sip_message`] is the hook
//! a framer feeds), HTTP bodies.

pub mod audit;
pub mod classify;
pub mod golden;
pub mod ladder;
pub mod payload;
pub mod policy;
pub mod report;
pub mod streams;

pub use audit::{audit_capture, AuditOptions, Auditor, FileAudit, FlowAudit};
pub use classify::{Evidence, TrafficClass};
pub use ladder::{Ladder, LadderLine, Role};
pub use payload::{Finding, Severity, XmlDocument};
pub use policy::{Policy, PolicyError, DEFAULT_POLICY_YAML};
pub use report::{FileOutcome, Format, Report};
pub use streams::TcpNote;

#[cfg(test)]
mod tests;
