//! Verification of captures: `ucm pcap verify`.
//!
//! Every IP packet of a capture is put in a flow ([`crate::pcap::flow`]), every flow in a
//! traffic class ([`classify`]), and each direction's packets are checked against the DSCP the
//! [`policy`] expects from that sender for that class. TCP connections are reassembled
//! ([`streams`]) and read as SIP or HTTP; SIP (UDP and TCP) feeds the SDP media book, the
//! ladder and the XML checks; HTTP feeds the ladder and the XML checks. The pipeline:
//!
//! ```text
//! CaptureReader -> dissect (innermost IP, ports) -> Defragmenter -> FlowTable
//!      -> per direction: DSCP counts + first frames, RTP evidence and receiver statistics
//!      -> UDP SIP / TCP (TcpReassembler -> SipTcpFramer | HttpConversation)
//!           -> SDP -> MediaBook, XML bodies -> payload checks, messages -> LadderBuilder
//!      -> finish: classify each flow, judge each direction, RTP streams into the ladder
//!      -> FileAudit (+ golden diff) -> Report
//! ```
//!
//! - [`audit::audit_capture`] / [`audit::Auditor`]: streaming audit of one capture (memory
//!   bounded by the flow table and the bounded reassembly, never by the file size). A capture
//!   cut short is audited up to the cut; the cut, and a capture in which nothing was audited,
//!   are findings that fail the file ([`audit::FileFinding`]).
//! - [`streams`]: per-connection TCP reassembly, SIP/HTTP detection, notes on retransmissions,
//!   gaps and overlap conflicts.
//! - [`payload`]: CiscoIPPhone, EM API, SOAP and remotecc documents in HTTP and SIP bodies.
//! - [`ladder`]: SIP/HTTP/RTP call-flow ladders with roles; [`golden`]: comparison with a
//!   stored ladder as a unified diff.
//! - [`policy::Policy`]: the YAML policy (built-in default: [`policy::DEFAULT_POLICY_YAML`]).
//! - [`report::Report`]: text, JSON and JUnit renderings of a run.

pub mod audit;
pub mod classify;
pub mod golden;
pub mod ladder;
pub mod payload;
pub mod policy;
pub mod report;
pub mod streams;

pub use audit::{
    audit_capture, audit_capture_reader, AuditOptions, Auditor, FileAudit, FileFinding,
    FileFindingKind, FlowAudit,
};
pub use classify::{Evidence, TrafficClass};
pub use ladder::{Ladder, LadderLine, Role};
pub use payload::{Finding, Severity, XmlDocument};
pub use policy::{Policy, PolicyError, DEFAULT_POLICY_YAML};
pub use report::{FileOutcome, Format, Report};
pub use streams::TcpNote;

#[cfg(test)]
mod tests;
