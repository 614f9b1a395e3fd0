//! ucm: an open implementation of the Cisco Unified CM application layer.
//!
//! The library holds all behaviour; the `ucm` binary (in `cmd/`) is a thin clap layer over it.
//! - [`config`]: cluster definitions (YAML), checked with file:line:field errors
//! - [`store`]: the cluster model in SQLite or PostgreSQL
//! - [`net`]: the DSCP type and marked sockets, loopback capture
//! - [`dialplan`]: Cisco patterns
//! - [`server`]: `ucm serve`, one node of a cluster
//! - [`services`]: the applications (authentication URL, configuration files, Extension Mobility)
//! - [`client`]: the clients the commands drive a cluster with (EM, WebDialer, the paging caller,
//!   push to phones, lint), over the wire like any third party, and their HTTP(S) settings
//! - [`pcap`] and [`verify`]: capture reading, flows and the DSCP audit (`ucm pcap verify`)
//! - [`wire`]: wire formats as pure data: SIP and SDP, CiscoIPPhone XML, EM API, WebDialer SOAP
pub mod auth;
pub mod client;
pub mod cluster;
pub mod config;
pub mod dialplan;
pub mod media;
pub mod net;
pub mod node;
pub mod pcap;
pub mod phone;
pub mod server;
pub mod services;
pub mod sip;
pub mod store;
pub mod verify;
pub mod wire;
