//! The services' handle on call control (a Rust API, not a wire protocol): place a call from a
//! user's phone to a destination (third-party call control), serve route points, end a call,
//! and watch line states.
//!
//! Each method queues a [`Command`] for the call-control task with the means to answer it: a
//! one-shot channel for the [`Reply`], and for a route point the channel its offered calls
//! arrive on. The task keeps those channels; the B2BUA only names the command.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::b2bua::{CallError, Command, LineEvent, OfferedCall, Reply};
use crate::dialplan::analysis::DnKey;

/// A command as it travels to the call-control task.
pub(super) struct Submission {
    pub cmd: Command,
    /// Where the answer goes, for commands that have one.
    pub reply: Option<oneshot::Sender<Reply>>,
    /// Where calls offered to the route point go (route point registration only).
    pub offers: Option<mpsc::UnboundedSender<OfferedCall>>,
}

/// See the module documentation.
pub struct CallControl {
    commands: mpsc::Sender<Submission>,
    pub(super) receiver: Mutex<Option<mpsc::Receiver<Submission>>>,
    pub(super) events: broadcast::Sender<LineEvent>,
    /// Names third-party call attempts ([`Command::Abandon`]).
    next_request: AtomicU64,
}

/// Abandons a MakeCall whose caller stopped waiting before its answer (dropped with the
/// request: a timeout, a client gone, a node stopping), so call control releases the call.
struct Pending<'a> {
    cc: &'a CallControl,
    request: u64,
    armed: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let sub = Submission {
            cmd: Command::Abandon {
                request: self.request,
            },
            reply: None,
            offers: None,
        };
        if self.cc.commands.try_send(sub).is_err() {
            tracing::warn!(
                request = self.request,
                "call control busy or stopped: an abandoned call request was not withdrawn"
            );
        }
    }
}

impl Default for CallControl {
    fn default() -> Self {
        CallControl::new()
    }
}

fn stopped() -> CallError {
    CallError {
        status: 503,
        reason: "call control stopped".into(),
    }
}

impl CallControl {
    pub fn new() -> CallControl {
        let (commands, rx) = mpsc::channel(4096);
        let (events, _) = broadcast::channel(4096);
        CallControl {
            commands,
            receiver: Mutex::new(Some(rx)),
            events,
            next_request: AtomicU64::new(1),
        }
    }

    /// Queues `cmd` and waits for its answer.
    async fn ask(&self, cmd: Command) -> Result<Reply, CallError> {
        let (reply, rx) = oneshot::channel();
        self.send(Submission {
            cmd,
            reply: Some(reply),
            offers: None,
        })
        .await?;
        rx.await.map_err(|_| stopped())
    }

    /// Rings `device`'s `line` and, once the phone answers, calls `destination` from it.
    /// Resolves when the phone answered (with the call's id) or the attempt failed: 408 when
    /// the phone did not answer within `answer_within` (its ringing is then cancelled).
    /// Dropping the future before it resolves abandons the attempt: every leg it started is
    /// released.
    pub async fn make_call(
        &self,
        device: &str,
        line: &str,
        destination: &str,
        answer_within: Duration,
    ) -> Result<u64, CallError> {
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let mut pending = Pending {
            cc: self,
            request,
            armed: false,
        };
        let cmd = Command::MakeCall {
            device: device.to_string(),
            line: line.to_string(),
            destination: destination.to_string(),
            answer_within,
            request,
        };
        let (reply, rx) = oneshot::channel();
        self.send(Submission {
            cmd,
            reply: Some(reply),
            offers: None,
        })
        .await?;
        pending.armed = true;
        let answer = rx.await.map_err(|_| stopped());
        pending.armed = false;
        match answer? {
            Reply::Call(r) => r,
            other => Err(unexpected(other)),
        }
    }

    /// Ends a call set up by anyone.
    pub async fn end_call(&self, call: u64) -> Result<(), CallError> {
        done(self.ask(Command::EndCall { call }).await?)
    }

    /// Registers the caller as the service behind a route point; calls to its DNs arrive on the
    /// returned receiver. Dropping the receiver is the service going down: calls then fall
    /// through to the lines' Call Forward No Answer.
    pub async fn register_route_point(
        &self,
        name: &str,
    ) -> Result<mpsc::UnboundedReceiver<OfferedCall>, CallError> {
        let (offers, rx) = mpsc::unbounded_channel();
        self.send(Submission {
            cmd: Command::RegisterRoutePoint {
                name: name.to_string(),
            },
            reply: None,
            offers: Some(offers),
        })
        .await?;
        Ok(rx)
    }

    /// Tells call control which route points other nodes' services serve now (route point ->
    /// node, replacing what it knew): calls to them go to that node. Best effort: a full
    /// command queue drops it with a log line (the next change of holder says it again).
    pub fn set_remote_route_points(&self, at: std::collections::HashMap<String, String>) {
        let sub = Submission {
            cmd: Command::RoutePointsElsewhere { at },
            reply: None,
            offers: None,
        };
        if self.commands.try_send(sub).is_err() {
            tracing::warn!("call control busy or stopped: route points of other nodes not updated");
        }
    }

    /// Tells call control which nodes of the cluster are down now (replacing what it knew):
    /// dialogs through them are spliced past them. Best effort like
    /// [`CallControl::set_remote_route_points`] (the heartbeat says it again each second).
    pub fn set_nodes_down(&self, names: HashSet<String>) {
        let sub = Submission {
            cmd: Command::NodesDown { names },
            reply: None,
            offers: None,
        };
        if self.commands.try_send(sub).is_err() {
            tracing::debug!("call control busy or stopped: nodes down not updated");
        }
    }

    /// Redirects an offered, unanswered call to `destination` without answering it.
    pub async fn redirect(&self, call: u64, destination: &str) -> Result<(), CallError> {
        let cmd = Command::Redirect {
            call,
            destination: destination.to_string(),
        };
        done(self.ask(cmd).await?)
    }

    /// Answers a call offered to a route point with the service's SDP answer.
    pub async fn answer(&self, call: u64, sdp: bytes::Bytes) -> Result<(), CallError> {
        done(self.ask(Command::Answer { call, sdp }).await?)
    }

    /// Refuses a call offered to a route point with `status` and `reason` (the reason phrase
    /// the caller sees, e.g. 488 for a codec the service cannot take).
    pub async fn reject(&self, call: u64, status: u16, reason: &str) -> Result<(), CallError> {
        let cmd = Command::Reject {
            call,
            status,
            reason: reason.to_string(),
        };
        done(self.ask(cmd).await?)
    }

    /// Whether `call` is still up: for a service whose line events lagged (a missed Idle).
    pub async fn call_exists(&self, call: u64) -> Result<bool, CallError> {
        match self.ask(Command::CallExists { call }).await? {
            Reply::Exists(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// The calls up now, oldest first (the operator's view).
    pub async fn list_calls(&self) -> Result<Vec<super::b2bua::ActiveCall>, CallError> {
        match self.ask(Command::ListCalls).await? {
            Reply::Calls(c) => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    /// The devices on a call now (ringing, connected or held).
    pub async fn busy_devices(&self) -> Result<HashSet<String>, CallError> {
        match self.ask(Command::BusyDevices).await? {
            Reply::Devices(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    /// The calls each line carries at this node that no other node counts (see
    /// [`Command::LineLoads`]).
    pub async fn line_loads(&self) -> Result<HashMap<DnKey, u32>, CallError> {
        match self.ask(Command::LineLoads).await? {
            Reply::Loads(l) => Ok(l),
            other => Err(unexpected(other)),
        }
    }

    /// Tells call control the calls each line carries at the other nodes (replacing what it
    /// knew). Best effort like [`CallControl::set_nodes_down`] (the heartbeat says it again
    /// each second).
    pub fn set_remote_line_loads(&self, loads: HashMap<DnKey, u32>) {
        let sub = Submission {
            cmd: Command::RemoteLineLoads { loads },
            reply: None,
            offers: None,
        };
        if self.commands.try_send(sub).is_err() {
            tracing::debug!("call control busy or stopped: other nodes' line loads not updated");
        }
    }

    /// The caller's dialog of `call`, sealed, for whoever must release it should this node die
    /// (see [`Command::CallerDialog`]).
    pub async fn caller_dialog(&self, call: u64) -> Result<Option<String>, CallError> {
        match self.ask(Command::CallerDialog { call }).await? {
            Reply::Dialog(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    /// Ends a dialog a dead node carried, from its sealed record (see
    /// [`Command::ReleaseDialog`]). Best effort like [`CallControl::notify_device`].
    pub fn release_dialog(&self, dialog: String) {
        let sub = Submission {
            cmd: Command::ReleaseDialog { dialog },
            reply: None,
            offers: None,
        };
        if self.commands.try_send(sub).is_err() {
            tracing::warn!("call control busy: a dead node's dialog not released");
        }
    }

    /// Tells a device to act on `event` with an unsolicited NOTIFY (`check-sync`: fetch the
    /// configuration again, the reset Unified CM sends after an EM login). Best effort: a
    /// full command queue drops it with a log line.
    pub fn notify_device(&self, device: &str, event: &str) {
        let cmd = Command::NotifyDevice {
            device: device.to_string(),
            event: event.to_string(),
        };
        let sub = Submission {
            cmd,
            reply: None,
            offers: None,
        };
        if self.commands.try_send(sub).is_err() {
            tracing::warn!(device, event, "call control busy: NOTIFY not sent");
        }
    }

    /// Sends a NOTIFY `event` to `device` at a contact it registered earlier (see
    /// [`Command::NotifyContact`]). Best effort like [`CallControl::notify_device`].
    pub fn notify_contact(
        &self,
        device: &str,
        contact: &str,
        source: std::net::SocketAddr,
        transport: crate::sip::transport::Transport,
        event: &str,
    ) {
        let sub = Submission {
            cmd: Command::NotifyContact {
                device: device.to_string(),
                contact: contact.to_string(),
                source,
                transport,
                event: event.to_string(),
            },
            reply: None,
            offers: None,
        };
        if self.commands.try_send(sub).is_err() {
            tracing::warn!(device, event, "call control busy: NOTIFY not sent");
        }
    }

    /// Makes `device` ring silently for calls to line `dn` (or audibly again). Best effort
    /// like [`CallControl::notify_device`].
    pub fn set_silent_ring(&self, device: &str, dn: &str, on: bool) {
        let cmd = Command::SilentRing {
            device: device.to_string(),
            dn: dn.to_string(),
            on,
        };
        let sub = Submission {
            cmd,
            reply: None,
            offers: None,
        };
        if self.commands.try_send(sub).is_err() {
            tracing::warn!(device, dn, "call control busy: silent ring not set");
        }
    }

    /// Makes `device` answer calls to line `dn` by itself (or ring again). Best effort like
    /// [`CallControl::notify_device`].
    pub fn set_auto_answer(&self, device: &str, dn: &str, on: bool) {
        let cmd = Command::AutoAnswer {
            device: device.to_string(),
            dn: dn.to_string(),
            on,
        };
        let sub = Submission {
            cmd,
            reply: None,
            offers: None,
        };
        if self.commands.try_send(sub).is_err() {
            tracing::warn!(device, dn, "call control busy: auto-answer not set");
        }
    }

    /// Keeps an offered call at its route point, unanswered, with no route point timeout
    /// (until the service redirects, answers or rejects it, or the caller hangs up).
    pub async fn keep(&self, call: u64) -> Result<(), CallError> {
        done(self.ask(Command::Keep { call }).await?)
    }

    /// Moves the far side of an answered call to `destination` (a new leg, which has
    /// `answer_within` to answer), re-pointing the caller's media with a re-INVITE and
    /// releasing the old far side. On failure (busy, no answer in time, no such number) the
    /// call stays as it was and the error says why.
    pub async fn move_call(
        &self,
        call: u64,
        destination: &str,
        answer_within: Duration,
    ) -> Result<(), CallError> {
        let to = super::b2bua::MoveTo::Number {
            destination: destination.to_string(),
            answer_within,
        };
        match self.ask(Command::Move { call, to }).await? {
            Reply::Moved(r) => r.map(|_| ()),
            other => Err(unexpected(other)),
        }
    }

    /// Moves the far side of an answered call to the service's own media: the old far side
    /// is released and the caller re-INVITEd with `sdp`. Returns the caller's SDP answer.
    pub async fn move_to_media(
        &self,
        call: u64,
        sdp: bytes::Bytes,
    ) -> Result<bytes::Bytes, CallError> {
        let to = super::b2bua::MoveTo::Media { sdp };
        match self.ask(Command::Move { call, to }).await? {
            Reply::Moved(Ok(Some(answer))) => Ok(answer),
            Reply::Moved(Ok(None)) => Err(CallError {
                status: 488,
                reason: "the caller answered the re-INVITE without SDP".into(),
            }),
            Reply::Moved(Err(e)) => Err(e),
            other => Err(unexpected(other)),
        }
    }

    /// Line-state changes from now on (ringing, connected, idle) for monitoring.
    pub fn subscribe(&self) -> broadcast::Receiver<LineEvent> {
        self.events.subscribe()
    }

    async fn send(&self, sub: Submission) -> Result<(), CallError> {
        self.commands.send(sub).await.map_err(|_| CallError {
            status: 503,
            reason: "call control is not running".into(),
        })
    }
}

fn done(reply: Reply) -> Result<(), CallError> {
    match reply {
        Reply::Done(r) => r,
        other => Err(unexpected(other)),
    }
}

/// An answer of the wrong kind (a bug in call control, never the caller's fault).
fn unexpected(reply: Reply) -> CallError {
    tracing::error!(
        ?reply,
        "call control answered a command with the wrong kind of reply"
    );
    CallError {
        status: 500,
        reason: "call control answered with the wrong kind of reply".into(),
    }
}
