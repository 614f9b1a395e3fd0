//! The cluster's applications, one module each, all of one shape: a [`ServiceSpec`] says which
//! `nodes[].services` flags the module answers to, which HTTP paths it owns, which listeners of
//! its own it needs, its sections of the cluster definition and their checks, its part in the
//! change feed and in the status view, and how it starts; started, it hands the server its
//! routes and background tasks ([`Parts`]). `server` starts exactly the modules a node's
//! definition activates and answers the paths of the others with a 404 naming the service and
//! the nodes that run it; every module's feed hook runs on every node (another node's change
//! can matter to a node that does not run the service).
//!
//! A service's part of the model is its own: its typed sections (`model.rs`, each a
//! [`crate::config::Section`] the definition holds as a plain value and the cluster snapshot
//! parses once), their checks (`check.rs`), its queries on the store handle the node core
//! gives it (`store.rs`, over tables of the shared migration sequence). [`definition`] reads a
//! definition against every service's sections and checks.
//!
//! Adding a service: its folder here (model, checks, storage, routes, tasks, listeners) and one
//! line in [`ALL`].

pub mod assistant;
pub mod attendant;
pub mod authenticate;
pub mod axl;
pub mod definition;
pub mod directory;
pub mod em;
pub mod emcc;
pub mod paging;
pub mod phone_config;
pub mod phone_services;
pub mod snmp;
pub mod tftp;
pub mod webdialer;

pub use definition::{demo, load_file, parse_str, reference_markdown, schema};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use crate::config::model::{NodeService, QosParameters};
use crate::config::section::{Check, SectionSpec};
use crate::net::Dscp;
use crate::node::feed::FeedHook;
use crate::node::{NodeError, NodeState};
use crate::store::StoreError;

/// Every service module a node can run, in the order they start; their sections are written
/// in this order too (`service_parameters`: extension_mobility, webdialer, phone_services).
pub const ALL: &[ServiceSpec] = &[
    tftp::SERVICE,
    em::SERVICE,
    emcc::SERVICE,
    webdialer::SERVICE,
    phone_services::SERVICE,
    paging::SERVICE,
    assistant::SERVICE,
    attendant::SERVICE,
    snmp::SERVICE,
    axl::SERVICE,
];

/// A background task of a service; it ends when the node's stop signal turns.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a started service gives the server.
#[derive(Default)]
pub struct Parts {
    /// Routes served on the node's HTTP and HTTPS listeners.
    pub routes: Router,
    pub tasks: Vec<Task>,
}

/// One `nodes[].services` flag a module answers to.
pub struct Flag {
    pub flag: NodeService,
    /// How people call it ("WebDialer"), in the 404 of a node that does not run it.
    pub name: &'static str,
    /// Path prefixes on HTTP and HTTPS that belong to it.
    pub paths: &'static [&'static str],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// A listener a service owns, bound and marked by the server (before `listen()`) with the
/// node's other listeners, so the ready line names it.
pub struct ListenerSpec {
    /// The flag that needs it.
    pub flag: NodeService,
    /// Its key in the ready line (`tftp_http`).
    pub name: &'static str,
    /// How errors and logs name it (`TFTP-over-HTTP`).
    pub what: &'static str,
    pub proto: Proto,
    pub default_port: u16,
    /// Its DSCP, from the cluster's QoS parameters.
    pub dscp: fn(&QosParameters) -> Dscp,
    /// When the default port needs privileges the node lacks or is taken (a second node on the
    /// host), run without this listener (with a warning) instead of failing the start. A port
    /// asked for explicitly must be bound.
    pub optional_without_privilege: bool,
}

/// A bound listener of a service.
pub enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Bound {
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        match self {
            Bound::Tcp(l) => l.local_addr(),
            Bound::Udp(s) => s.local_addr(),
        }
    }
}

/// What a module is started with.
pub struct Start {
    pub node: Arc<NodeState>,
    /// Its flags this node runs (never empty).
    pub active: Vec<NodeService>,
    /// Its listeners, in the order of [`ServiceSpec::listeners`]; `None` for one this node
    /// does not run or an optional one that could not be bound.
    pub listeners: Vec<Option<Bound>>,
    pub stop: watch::Receiver<bool>,
}

impl Start {
    pub fn runs(&self, flag: NodeService) -> bool {
        self.active.contains(&flag)
    }

    /// Takes the bound listener named `name`.
    pub fn take_listener(&mut self, spec: &ServiceSpec, name: &str) -> Option<Bound> {
        let i = spec.listeners.iter().position(|l| l.name == name)?;
        self.listeners.get_mut(i)?.take()
    }
}

pub type StartFuture = Pin<Box<dyn Future<Output = Result<Parts, NodeError>> + Send>>;

/// A service module as the server sees it.
pub struct ServiceSpec {
    pub flags: &'static [Flag],
    pub listeners: &'static [ListenerSpec],
    /// Its sections of the cluster definition (under `service_parameters` or at the top level).
    pub sections: &'static [SectionSpec],
    /// Its checks of a definition (its sections, and how they refer to the rest), run with the
    /// generic ones wherever a definition is read.
    pub check: Option<Check>,
    /// The source of its model file (`include_str!("model.rs")`), for the configuration
    /// reference; empty without one.
    pub model_source: &'static str,
    /// Its part in the change feed: registered on every node, whether or not the node runs
    /// the service.
    pub feed: Option<FeedHook>,
    /// Its sections of the cluster status (`/ucm/status`), read on any node.
    pub status: &'static [StatusSection],
    pub start: fn(Start) -> StartFuture,
}

/// What a status section's read returns: its rows (a JSON array of objects).
pub type StatusFuture<'a> =
    Pin<Box<dyn Future<Output = Result<serde_json::Value, StoreError>> + Send + 'a>>;

/// A service's section of the cluster status: a list read from the database, so every node
/// shows the whole cluster.
pub struct StatusSection {
    /// Its key in the JSON document (`em_logins`).
    pub key: &'static str,
    /// Its heading on the page.
    pub title: &'static str,
    /// The fields of a row shown on the page, in order.
    pub columns: &'static [&'static str],
    /// Reads its rows at `now` (unix seconds).
    pub read: for<'a> fn(&'a NodeState, i64) -> StatusFuture<'a>,
}

/// Every status section, in the order of [`ALL`].
pub fn status_sections() -> impl Iterator<Item = &'static StatusSection> {
    ALL.iter().flat_map(|s| s.status.iter())
}

/// Every service's feed hook, in the order of [`ALL`].
pub fn feed_hooks() -> impl Iterator<Item = FeedHook> {
    ALL.iter().filter_map(|s| s.feed)
}

impl ServiceSpec {
    /// The flags of this module that `active` turns on.
    pub fn active(&self, active: &[NodeService]) -> Vec<NodeService> {
        self.flags
            .iter()
            .map(|f| f.flag)
            .filter(|f| active.contains(f))
            .collect()
    }
}

/// The service that owns `path` (the longest matching prefix), if any.
pub fn owner_of(path: &str) -> Option<&'static Flag> {
    ALL.iter()
        .flat_map(|s| s.flags.iter())
        .flat_map(|f| f.paths.iter().map(move |p| (f, p)))
        .filter(|(_, p)| path.starts_with(*p))
        .max_by_key(|(_, p)| p.len())
        .map(|(f, _)| f)
}
