//! Wire formats as pure data: bytes in, values out, and back. Nothing here opens a socket,
//! reads the clock or the store, or knows the cluster; call control, the services, the
//! simulated phone, the clients and the capture checker all speak through this module.
//!
//! - [`sip`]: SIP messages (RFC 3261): parser, framer and serializer; [`sdp`]: session
//!   descriptions and the offer/answer rules.
//! - [`xml`]: CiscoIPPhone XML objects, a small bounded XML tree reader, and the one XML
//!   escape every writer uses.
//! - [`em`]: the Extension Mobility API's requests, queries, replies and error codes;
//!   [`emcc`]: ucm's own inter-cluster API for EMCC.
//! - [`soap`]: WebDialer's SOAP interface (wd70 and the legacy service).
//! - [`codec`]: percent-encoding, form bodies, base64 and HTTP Basic credentials.
//! - [`yaml`]: YAML reading limits and a located tree that maps a field path to its line.

pub mod certs;
pub mod codec;
pub mod em;
pub mod emcc;
pub mod sdp;
pub mod sip;
pub mod soap;
pub mod websocket;
pub mod xml;
pub mod yaml;
