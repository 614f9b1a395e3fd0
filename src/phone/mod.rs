//! Simulated Cisco IP phones (`ucm phone sim`), for labs and tests.
//!
//! Each phone behaves as Cisco documents a Cisco SIP
//! phone: it fetches its `SEP<MAC>.cnf.xml` from the cluster's TFTP-over-HTTP service,
//! registers its lines with the Unified CM group's first node (moving to the next when that
//! one stops answering, and back when it returns: [`failover`]), rings, answers (on command,
//! automatically after a delay, or not at all when busy) and places calls, sends and counts
//! G.711 mu-law RTP, and serves HTTP: `POST /CGI/Execute` (credentials checked through the
//! cluster's authentication URL before anything runs) and `GET /state` (its state as JSON).
//! A `NOTIFY` with `Event: check-sync` makes it fetch its configuration again and
//! re-register.
//!
//! - [`xml`]: the tolerant tag reader for configuration files and pushed objects
//! - [`config`]: what a phone takes from its configuration file
//! - [`execute`]: `CiscoIPPhoneExecute`, internal URIs, `CiscoIPPhoneResponse` / `Error`
//! - [`http`]: the phone's HTTP client and form, percent and Basic codecs
//! - [`ua`]: the SIP user agent, sans-IO (registrations and calls)
//! - [`failover`]: which Unified CM of its group the phone registers with, sans-IO
//! - [`media`]: call RTP and URI streams with receiver statistics
//! - [`device`]: one phone (the async shell and its HTTP server)
//! - [`sim`]: many phones at once

pub mod apps;
pub mod config;
pub mod device;
pub mod execute;
pub mod failover;
pub mod http;
pub mod media;
pub mod sim;
pub mod ua;
pub mod xml;

pub use config::PhoneConfig;
pub use device::{Phone, PhoneError, PhoneOptions};
