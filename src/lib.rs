//! ucm: an open implementation of the Cisco Unified CM application layer.
//!
//! The library holds all behaviour; the `ucm` binary (in `cmd/`) is a thin clap layer over it:
//! each command parses, calls the library, prints and exits.
//!
//! # Layout
//!
//! From the top down; a module imports only modules below it, and `cargo xtask layers` checks
//! that the imports say so (no cycles, nothing imports [`server`]).
//!
//! - [`server`]: `ucm serve`, one node of a cluster. It binds the listeners (marked with their
//!   DSCP before `listen()`), builds the node core and starts the services the node's
//!   definition activates.
//! - [`services`]: the applications, one module each (IP Phone Services, TFTP, Extension
//!   Mobility, WebDialer, Paging), all of one shape: a [`services::ServiceSpec`] declares the
//!   `nodes[].services` flags it answers to, its HTTP paths, its own listeners, its sections of
//!   the cluster definition (typed in its `model.rs`) and their checks, its hook on the change
//!   feed (run on every node), its sections of the status view, and how it starts; started, it
//!   hands the server its routes and tasks. Its queries live in its folder too, over the store
//!   handle. [`services::parse_str`] reads a definition against every service's
//!   sections and checks. Adding a service is its folder plus one line in [`services::ALL`].
//! - [`client`]: what the commands drive a cluster with (EM, WebDialer, the paging caller, push
//!   to phones, lint), over the wire like any third party, and their HTTP(S) settings.
//! - [`phone`]: the simulated Cisco phone; it knows the cluster only over the wire.
//! - [`node`]: the node core every running part shares: store handle, cluster snapshot,
//!   identity and base URLs, TLS identity, metrics, the HTTP accept loop, the change feed
//!   (which hands each service's announcements to the hook it declares), shutdown.
//! - [`sip`]: call control: transports, transactions, the registrar, the B2BUA (routing,
//!   forwarding, route points, third-party calls) and the API services use
//!   ([`sip::CallControl`]). It knows no service and no node: the node hands it a
//!   [`sip::SipNode`].
//! - [`store`]: the cluster model and runtime state in SQLite or PostgreSQL: the handle, one
//!   migration sequence for every table, the generic queries (services keep their own).
//! - [`cluster`]: the running cluster (definition plus indexes and EM logins; the services'
//!   sections parsed once per snapshot).
//! - [`config`]: cluster definitions (YAML), checked with file:line:field errors: the generic
//!   model, and the services' sections as values read against a [`config::Schema`] the
//!   services give (config names no service).
//! - [`dialplan`]: Cisco patterns, partitions, calling search spaces, digit analysis (pure).
//! - [`verify`] and [`pcap`]: `ucm pcap verify`: capture reading, flows, reassembly, the DSCP
//!   audit, XML checks and ladders compared with golden ones. They judge the implementation,
//!   so they use only [`wire`], [`net`] and [`media`].
//! - [`wire`]: wire formats as pure data (no sockets, store or clock): SIP and SDP,
//!   CiscoIPPhone XML, the EM API, WebDialer SOAP, form/percent/base64 codecs, one XML escape,
//!   YAML with locations.
//! - [`net`]: the DSCP type, marked sockets, multicast, TLS helpers, loopback capture.
//! - [`media`]: RTP, G.711, WAV, tones.
//! - [`auth`]: secret hashing and verification.
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
