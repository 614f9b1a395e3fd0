//! ucm's integration tests: one binary, a module per area. Tests that need an outside service
//! (PostgreSQL, root for packet capture) fail with a clear message under CI=true and print why
//! they were skipped elsewhere.

mod assistant;
mod assistant_console;
mod attendant;
mod axl;
mod bounded;
mod callcontrol;
mod cli;
mod cluster;
mod common;
mod config;
mod conformance;
mod em;
mod emcc;
pub mod paging;
mod pcap;
pub mod phone;
mod phone_apps;
mod phone_services;
mod readme;
mod serve;
pub mod services;
mod sip_trust;
pub mod sipp;
mod snapshots;
mod snmp;
mod store;
mod verify;
mod webdialer;
mod xml;
