//! SIP: the message model ([`message`], [`sdp`]) and the node's call control over UDP, TCP
//! and TLS.
//!
//! The node answers what a Unified CM node answers to any peer: OPTIONS pings (trunk keepalive,
//! monitoring), REGISTER ([`registrar`], with [`digest`] authentication), and calls, which the
//! back-to-back user agent ([`b2bua`]) routes and relays over [`transaction`]s. The registrar's
//! table, the transactions and the B2BUA are state machines handed the time; the shells around
//! them own the sockets ([`transport`]), the clock and the channels ([`server`]). Services reach
//! call control through [`CallControl`].

pub mod b2bua;
mod call_control;
pub mod context;
pub mod digest;
pub mod registrar;
mod server;
pub mod throttle;
pub mod transaction;
pub mod transport;
pub mod trunks;

// Call control speaks the wire codec.
pub use crate::wire::sdp;
pub use crate::wire::sip as message;

pub use call_control::CallControl;
pub use context::{NodeCerts, SipMetrics, SipNode};
pub use server::SipServer;
pub use transport::{StreamLimits, Transport};

/// Methods this node accepts (the Allow header).
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, NOTIFY, REFER, INFO, UPDATE";

pub use crate::wire::sip::{AUTO_ANSWER_CALL_INFO, SILENT_ALERT_INFO};
