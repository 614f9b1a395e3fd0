//! Network plumbing shared by every ucm component: DSCP-marked sockets
//! (Cisco QoS: call signalling CS3, voice EF, video AF41, the rest CS0),
//! DSCP-aware receive, multicast helpers and a loopback packet capture used
//! to verify marking.

pub mod capture;
pub mod counters;
pub mod dscp;
pub mod limits;
pub mod lograte;
pub mod per_source;
pub mod socket;
pub mod tls;

pub use dscp::Dscp;
pub use socket::*;
