//! The Attendant Console's part of the cluster definition: the top-level `attendant` section
//! (the console server's Queue DDIs and their attendants, and the CTI devices it controls: CT
//! gateway devices, service queues and call park devices, each a route point of the cluster).

use serde::{Deserialize, Serialize};

use crate::config::section::Section;

impl Section for Attendant {
    const PATH: &'static [&'static str] = &["attendant"];
    // Most clusters have no attendant consoles: a definition leaves the section out then.
    const OMIT_DEFAULT: bool = true;
}

/// The attendant console server (Cisco's "Advanced" server) run by the nodes with the
/// `attendant` service: its queues and attendants, and the CTI devices it controls. Every
/// Queue DDI, CT gateway device, service queue and call park device is a route point of the
/// cluster (`route_points[].name`) with one line, a number without wildcards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attendant {
    /// The queues: each incoming number routed to the attendant consoles (one Queue DDI per
    /// number, as the seed says).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<Queue>,
    /// The attendants: end users and the phone line their answered calls ring on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attendants: Vec<AttendantUser>,
    /// CT gateway devices: every call into a Queue DDI is redirected to a free one at once
    /// (unanswered, no media) and waits there for an attendant. One call each: size them for
    /// the peak of calls waiting at any time (`ucm attendant check`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ct_gateway_devices: Vec<String>,
    /// Service queues: a call being transferred or put on hold by an attendant sits on one
    /// (the seed: 3 or 4 per attendant).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_queues: Vec<String>,
    /// Call park devices of the server's own (not the cluster's Call Park): one parked call
    /// each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub park_devices: Vec<String>,
    /// Seconds a transferred call may ring unanswered before it comes back to the attendant
    /// (transfer recall).
    #[serde(default = "default_recall")]
    pub recall_seconds: u32,
    /// Devices monitored for BLF at most; past it the oldest monitored device is dropped
    /// (Cisco's server: 2,000).
    #[serde(default = "default_blf_max_devices")]
    pub blf_max_devices: usize,
    /// The expected peaks, for the sizing rules of `ucm attendant check` (none given: only
    /// the rules that need no peak are checked).
    #[serde(default, skip_serializing_if = "Peaks::is_empty")]
    pub peaks: Peaks,
}

impl Default for Attendant {
    fn default() -> Self {
        Attendant {
            queues: Vec::new(),
            attendants: Vec::new(),
            ct_gateway_devices: Vec::new(),
            service_queues: Vec::new(),
            park_devices: Vec::new(),
            recall_seconds: default_recall(),
            blf_max_devices: default_blf_max_devices(),
            peaks: Peaks::default(),
        }
    }
}

fn default_recall() -> u32 {
    30
}
fn default_blf_max_devices() -> usize {
    2000
}

/// One queue: its Queue DDI and the attendants it is presented to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queue {
    /// How consoles name it ("Reception").
    pub name: String,
    /// The Queue DDI: a route point whose one line is the queue's number (in its partition).
    pub route_point: String,
    /// `attendants[].user` of the attendants the queue's calls are presented to.
    pub attendants: Vec<String>,
}

/// One attendant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttendantUser {
    /// `end_users[].userid`: the console logs in with the user's password.
    pub user: String,
    /// The attendant's phone (`devices[].name`, owned by or associated with the user).
    pub device: String,
    /// The line on that phone answered calls ring on (and connect by themselves).
    pub line: String,
}

/// Expected peaks (calls at one time), for the sizing rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peaks {
    /// Incoming queue calls waiting at one time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incoming_calls: Option<usize>,
    /// Calls being transferred or held by all attendants at one time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfers_and_holds: Option<usize>,
    /// Calls parked at one time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked_calls: Option<usize>,
}

impl Peaks {
    pub fn is_empty(&self) -> bool {
        self == &Peaks::default()
    }
}
