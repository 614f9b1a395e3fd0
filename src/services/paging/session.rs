//! One page, from the answer to its report, as a state machine without I/O, clock or
//! randomness: [`PageSession::on_event`] takes what happened and the time, and returns what
//! to do. The service ([`super::page`]) owns the sockets, the HTTP client, call control and the
//! media thread, does the [`Effect`]s and feeds back the [`Event`]s.
//!
//! The session's course:
//! 1. [`Effect::Answer`]; once answered, [`Effect::StartStream`] (the media thread plays the
//!    low stall tone to the caller).
//! 2. One [`Effect::Push`] of `RTPMRx` per registered phone of the group, all at once; busy
//!    phones are left out when the paging setting says to skip them. A phone joins when its
//!    push succeeds; phones that have not answered when the join timeout passes have failed.
//! 3. [`Effect::GoAhead`] (the high tone; the caller's audio goes to the group) once every
//!    phone answered or the join timeout passed.
//! 4. The page ends when the caller hangs up, call control stops, the node stops or the
//!    maximum page time passes (the last two also end the call, [`Effect::EndCall`]). An end
//!    that comes while phones are still joining waits for the go-ahead, so that every phone
//!    that joined is told to leave.
//! 5. [`Effect::StopStream`]; once the stream's counts are back, `RTPRx:Stop` to every phone
//!    that joined, each within the leave timeout; then [`Effect::Report`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::model::BusyPhones;
use super::stream::StreamCounts;
use super::{Pacing, PageReport, PhoneResult};

/// The Execute URI that makes a phone leave the multicast stream.
pub const LEAVE_URI: &str = "RTPRx:Stop";

/// A phone's outcome once its join push succeeded.
const JOINED: &str = "joined";
/// A phone's outcome while its join push is out (never in a report: every push ends in
/// `joined` or `failed`, at the latest at the join timeout).
const PUSHED: &str = "pushed";

/// A phone of the recipient group, as the service found it before answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub device: String,
    /// The address it registered from; `None`: not registered.
    pub ip: Option<String>,
    /// On a call, as call control says.
    pub busy: bool,
}

/// What a session is started with.
#[derive(Debug, Clone)]
pub struct PageSetup {
    /// The report so far (identity, caller, group, multicast address); the session fills in
    /// the rest.
    pub report: PageReport,
    /// When the call was offered.
    pub started: Instant,
    /// The group's phones, in order.
    pub recipients: Vec<Recipient>,
    /// Phones beyond the group's cap, and the cap.
    pub over_cap: Vec<String>,
    /// Group members whose speakerphone is disabled: reported, never pushed to.
    pub no_speakerphone: Vec<String>,
    pub cap: usize,
    pub busy_phones: BusyPhones,
    /// `RTPMRx:<group>:<port>[:<volume>]`.
    pub join_uri: String,
    pub join_timeout: Duration,
    pub max_page: Duration,
    /// How long the `RTPRx:Stop` pushes may take.
    pub leave_timeout: Duration,
    /// Why no phone can be pushed to at all (the HTTP client could not be made), if so.
    pub push_unavailable: Option<String>,
}

/// Which of a page's pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushKind {
    /// `RTPMRx`: join the multicast stream.
    Join,
    /// `RTPRx:Stop`: leave it.
    Leave,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Call control accepted the answer.
    Answered,
    AnswerFailed(String),
    /// The media thread runs (the stall tone plays).
    StreamStarted,
    StreamFailed(String),
    /// A phone answered a push (or the push failed).
    Pushed {
        device: String,
        kind: PushKind,
        result: Result<(), String>,
    },
    CallerHungUp,
    CallControlStopped,
    NodeStopping,
    /// The media thread ended, with what it counted.
    StreamStopped {
        counts: StreamCounts,
        pacing: Pacing,
    },
    /// [`PageSession::next_deadline`] was reached.
    Timer,
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Answer the caller's call.
    Answer,
    /// Start the media: the stall tone to the caller now, the stream after [`Effect::GoAhead`].
    StartStream,
    /// Push a CiscoIPPhoneExecute of `uri` to the phone at `ip`.
    Push {
        device: String,
        ip: String,
        uri: String,
        kind: PushKind,
    },
    /// Give up the pushes still in flight (their timeout passed).
    CancelPushes,
    /// The go-ahead tone; from now the caller's audio goes to the group.
    GoAhead,
    /// End the caller's call.
    EndCall,
    /// Stop the media and hand back its counts ([`Event::StreamStopped`]).
    StopStream,
    /// The page is over; nothing follows.
    Report(Box<PageReport>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Offered,
    Answered,
    Joining { deadline: Instant },
    Live { deadline: Instant },
    Stopping,
    Leaving { deadline: Instant },
    Done,
}

/// One page in progress.
#[derive(Debug)]
pub struct PageSession {
    setup: PageSetup,
    phase: Phase,
    answered: Option<Instant>,
    /// Every phone's part so far, by device (the report's order).
    phones: BTreeMap<String, PhoneResult>,
    /// The phones pushed to, in the group's order.
    targets: Vec<String>,
    /// Devices whose push is not answered yet.
    pending: BTreeSet<String>,
    /// Why the page ends, and whether that ends the call, once known.
    end: Option<(&'static str, bool)>,
    ended_by: Option<String>,
}

impl PageSession {
    /// A session for an offered call; [`PageSession::offer`] starts it.
    pub fn new(setup: PageSetup) -> PageSession {
        PageSession {
            setup,
            phase: Phase::Offered,
            answered: None,
            phones: BTreeMap::new(),
            targets: Vec::new(),
            pending: BTreeSet::new(),
            end: None,
            ended_by: None,
        }
    }

    /// The first step: answer the call.
    pub fn offer(&mut self) -> Vec<Effect> {
        vec![Effect::Answer]
    }

    /// When [`Event::Timer`] is due, if the session waits for a time.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Joining { deadline }
            | Phase::Live { deadline }
            | Phase::Leaving { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// Whether the caller's call and the node's stop matter now (from the answer to the end).
    pub fn listening(&self) -> bool {
        matches!(
            self.phase,
            Phase::Answered | Phase::Joining { .. } | Phase::Live { .. }
        )
    }

    /// Whether the report was given.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The phones that joined, in the group's order.
    pub fn joined(&self) -> Vec<&str> {
        self.targets
            .iter()
            .filter(|d| self.phones.get(*d).is_some_and(|p| p.outcome == JOINED))
            .map(String::as_str)
            .collect()
    }

    /// Phones in the group, within its cap.
    pub fn group_size(&self) -> usize {
        self.setup.recipients.len()
    }

    /// From the answer to the go-ahead, once given.
    pub fn go_ahead_ms(&self) -> Option<u64> {
        self.setup.report.go_ahead_ms
    }

    pub fn on_event(&mut self, event: Event, now: Instant) -> Vec<Effect> {
        let mut out = Vec::new();
        match (self.phase, event) {
            (Phase::Offered, Event::Answered) => {
                self.answered = Some(now);
                self.phase = Phase::Answered;
                out.push(Effect::StartStream);
            }
            (Phase::Offered, Event::AnswerFailed(e)) => {
                self.finish(format!("not answered: {e}"), now, &mut out);
            }
            (Phase::Answered, Event::StreamStarted) => self.join(now, &mut out),
            (Phase::Answered, Event::StreamFailed(e)) => {
                out.push(Effect::EndCall);
                self.finish(format!("media: {e}"), now, &mut out);
            }
            (
                Phase::Joining { deadline },
                Event::Pushed {
                    device,
                    kind: PushKind::Join,
                    result,
                },
            ) => {
                if self.pending.remove(&device) {
                    self.joined_or_failed(&device, result, now);
                }
                if self.pending.is_empty() {
                    self.go_ahead(now, &mut out);
                } else if now >= deadline {
                    self.join_timed_out(now, &mut out);
                }
            }
            (Phase::Joining { deadline }, Event::Timer) if now >= deadline => {
                self.join_timed_out(now, &mut out);
            }
            (Phase::Answered | Phase::Joining { .. }, ev) if ending(&ev).is_some() => {
                // Phones may be joining: they hear of the end after the go-ahead.
                self.end = self.end.or(ending(&ev));
            }
            (Phase::Live { .. }, ev) if ending(&ev).is_some() => {
                if let Some((why, end_call)) = ending(&ev) {
                    self.stop(why, end_call, &mut out);
                }
            }
            (Phase::Live { deadline }, Event::Timer) if now >= deadline => {
                self.stop("max page time", true, &mut out);
            }
            (Phase::Stopping, Event::StreamStopped { counts, pacing }) => {
                self.setup.report.stream = counts;
                self.setup.report.pacing = pacing;
                self.leave(now, &mut out);
            }
            (
                Phase::Leaving { deadline },
                Event::Pushed {
                    device,
                    kind: PushKind::Leave,
                    result,
                },
            ) => {
                if self.pending.remove(&device) {
                    self.left(&device, result);
                }
                if self.pending.is_empty() {
                    self.finish_ended(now, &mut out);
                } else if now >= deadline {
                    self.leave_timed_out(now, &mut out);
                }
            }
            (Phase::Leaving { deadline }, Event::Timer) if now >= deadline => {
                self.leave_timed_out(now, &mut out);
            }
            // Late answers to pushes given up, ends after the end, early timers.
            _ => {}
        }
        out
    }

    /// Sorts the group into who is pushed to and who is not, and pushes `RTPMRx`.
    fn join(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let skip_busy = self.setup.busy_phones == BusyPhones::Skip;
        let mut add = |device: &str, ip: Option<&String>, outcome: &str, reason: Option<String>| {
            let p = PhoneResult {
                device: device.to_string(),
                ip: ip.cloned(),
                outcome: outcome.into(),
                reason,
                join_ms: None,
                left: None,
            };
            self.phones.insert(p.device.clone(), p);
        };
        for r in &self.setup.recipients {
            match (&r.ip, r.busy && skip_busy) {
                (None, _) => add(&r.device, None, "not-registered", None),
                (Some(ip), true) => add(&r.device, Some(ip), "busy", Some("on a call".into())),
                (Some(ip), false) => match &self.setup.push_unavailable {
                    Some(e) => add(
                        &r.device,
                        Some(ip),
                        "failed",
                        Some(format!("HTTP client: {e}")),
                    ),
                    None => add(&r.device, Some(ip), PUSHED, None),
                },
            }
        }
        for d in &self.setup.over_cap {
            let why = format!("the group holds at most {} phones", self.setup.cap);
            add(d, None, "over-cap", Some(why));
        }
        for d in &self.setup.no_speakerphone {
            add(
                d,
                None,
                "no-speakerphone",
                Some("its speakerphone is disabled".into()),
            );
        }
        for r in &self.setup.recipients {
            let Some(ip) = &r.ip else { continue };
            if self
                .phones
                .get(&r.device)
                .is_none_or(|p| p.outcome != PUSHED)
            {
                continue;
            }
            self.targets.push(r.device.clone());
            self.pending.insert(r.device.clone());
            out.push(Effect::Push {
                device: r.device.clone(),
                ip: ip.clone(),
                uri: self.setup.join_uri.clone(),
                kind: PushKind::Join,
            });
        }
        if self.pending.is_empty() {
            self.go_ahead(now, out);
        } else {
            self.phase = Phase::Joining {
                deadline: now + self.setup.join_timeout,
            };
        }
    }

    fn since_answer_ms(&self, now: Instant) -> u64 {
        self.answered
            .map_or(0, |a| now.saturating_duration_since(a).as_millis() as u64)
    }

    fn joined_or_failed(&mut self, device: &str, result: Result<(), String>, now: Instant) {
        let join_ms = self.since_answer_ms(now);
        if let Some(p) = self.phones.get_mut(device) {
            (p.outcome, p.reason) = match result {
                Ok(()) => (JOINED.into(), None),
                Err(e) => ("failed".into(), Some(e)),
            };
            p.join_ms = Some(join_ms);
        }
    }

    fn join_timed_out(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let why = format!(
            "no answer within {} ms",
            self.setup.join_timeout.as_millis()
        );
        for device in std::mem::take(&mut self.pending) {
            self.joined_or_failed(&device, Err(why.clone()), now);
        }
        out.push(Effect::CancelPushes);
        self.go_ahead(now, out);
    }

    fn go_ahead(&mut self, now: Instant, out: &mut Vec<Effect>) {
        out.push(Effect::GoAhead);
        self.setup.report.go_ahead_ms = Some(self.since_answer_ms(now));
        let deadline = self.answered.unwrap_or(now) + self.setup.max_page;
        self.phase = Phase::Live { deadline };
        if let Some((why, end_call)) = self.end {
            self.stop(why, end_call, out);
        } else if now >= deadline {
            self.stop("max page time", true, out);
        }
    }

    fn stop(&mut self, why: &'static str, end_call: bool, out: &mut Vec<Effect>) {
        if end_call {
            out.push(Effect::EndCall);
        }
        out.push(Effect::StopStream);
        self.ended_by = Some(why.to_string());
        self.phase = Phase::Stopping;
    }

    /// `RTPRx:Stop` to every phone that joined.
    fn leave(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let joined: Vec<(String, String)> = self
            .joined()
            .into_iter()
            .filter_map(|d| Some((d.to_string(), self.phones.get(d)?.ip.clone()?)))
            .collect();
        for (device, ip) in joined {
            self.pending.insert(device.clone());
            out.push(Effect::Push {
                device,
                ip,
                uri: LEAVE_URI.into(),
                kind: PushKind::Leave,
            });
        }
        if self.pending.is_empty() {
            self.finish_ended(now, out);
        } else {
            self.phase = Phase::Leaving {
                deadline: now + self.setup.leave_timeout,
            };
        }
    }

    fn left(&mut self, device: &str, result: Result<(), String>) {
        if let Some(p) = self.phones.get_mut(device) {
            p.left = Some(result.is_ok());
            if let Err(e) = result {
                p.reason = Some(format!("{LEAVE_URI}: {e}"));
            }
        }
    }

    fn leave_timed_out(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let why = format!(
            "no answer within {} ms",
            self.setup.leave_timeout.as_millis()
        );
        for device in std::mem::take(&mut self.pending) {
            self.left(&device, Err(why.clone()));
        }
        out.push(Effect::CancelPushes);
        self.finish_ended(now, out);
    }

    fn finish_ended(&mut self, now: Instant, out: &mut Vec<Effect>) {
        let why = self.ended_by.take().unwrap_or_default();
        self.finish(why, now, out);
    }

    fn finish(&mut self, ended_by: String, now: Instant, out: &mut Vec<Effect>) {
        let mut report = self.setup.report.clone();
        let phones: Vec<PhoneResult> = std::mem::take(&mut self.phones).into_values().collect();
        report.joined = phones.iter().filter(|p| p.outcome == JOINED).count();
        report.failed = phones.len() - report.joined;
        report.phones = phones;
        report.ended_by = ended_by;
        report.duration_ms = now
            .saturating_duration_since(self.setup.started)
            .as_millis() as u64;
        self.phase = Phase::Done;
        out.push(Effect::Report(Box::new(report)));
    }
}

/// Why an event ends the page, and whether the call must be ended for it.
fn ending(ev: &Event) -> Option<(&'static str, bool)> {
    match ev {
        Event::CallerHungUp => Some(("caller hung up", false)),
        Event::CallControlStopped => Some(("call control stopped", false)),
        Event::NodeStopping => Some(("node stopping", true)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOIN: Duration = Duration::from_millis(2000);
    const MAX_PAGE: Duration = Duration::from_secs(60);
    const LEAVE: Duration = Duration::from_secs(5);
    const URI: &str = "RTPMRx:239.1.1.1:20480";

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn report() -> PageReport {
        PageReport {
            id: "0011223344556677".into(),
            call_id: "call-1".into(),
            node: "ucm".into(),
            route_point: "DialCast_All".into(),
            dialcast: "7000".into(),
            calling: "10001".into(),
            recipient_group: "demo-all".into(),
            started_at_ms: 1_700_000_000_000,
            multicast: Some("239.1.1.1:20480".into()),
            ttl: 2,
            go_ahead_ms: None,
            duration_ms: 0,
            joined: 0,
            failed: 0,
            phones: Vec::new(),
            stream: StreamCounts::default(),
            pacing: Pacing::default(),
            ended_by: String::new(),
        }
    }

    fn phone(device: &str, ip: Option<&str>, busy: bool) -> Recipient {
        Recipient {
            device: device.into(),
            ip: ip.map(str::to_string),
            busy,
        }
    }

    fn setup(t0: Instant, recipients: Vec<Recipient>, busy_phones: BusyPhones) -> PageSetup {
        PageSetup {
            report: report(),
            started: t0,
            recipients,
            over_cap: Vec::new(),
            no_speakerphone: Vec::new(),
            cap: 50,
            busy_phones,
            join_uri: URI.into(),
            join_timeout: JOIN,
            max_page: MAX_PAGE,
            leave_timeout: LEAVE,
            push_unavailable: None,
        }
    }

    /// The devices pushed to, in order, with the kind of push.
    fn pushes(effects: &[Effect]) -> Vec<(String, PushKind)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Push { device, kind, .. } => Some((device.clone(), *kind)),
                _ => None,
            })
            .collect()
    }

    fn pushed(device: &str, kind: PushKind, ok: bool) -> Event {
        Event::Pushed {
            device: device.into(),
            kind,
            result: if ok { Ok(()) } else { Err("HTTP 401".into()) },
        }
    }

    fn the_report(effects: Vec<Effect>) -> PageReport {
        match effects.into_iter().last() {
            Some(Effect::Report(r)) => *r,
            other => panic!("no report: {other:?}"),
        }
    }

    fn result<'a>(r: &'a PageReport, device: &str) -> &'a PhoneResult {
        r.phones.iter().find(|p| p.device == device).unwrap()
    }

    /// Answers the call 10 ms after the offer and starts the stream: returns the session, the
    /// answer's time and the pushes' effects.
    fn answered(setup: PageSetup) -> (PageSession, Instant, Vec<Effect>) {
        let t0 = setup.started;
        let mut s = PageSession::new(setup);
        assert_eq!(s.offer(), vec![Effect::Answer]);
        let t1 = t0 + ms(10);
        assert_eq!(s.on_event(Event::Answered, t1), vec![Effect::StartStream]);
        let fx = s.on_event(Event::StreamStarted, t1);
        (s, t1, fx)
    }

    #[test]
    fn r14_a_page_from_answer_to_report() {
        let t0 = Instant::now();
        let group = vec![
            phone("SEP000000001001", Some("127.0.10.1"), false),
            phone("SEP000000001002", Some("127.0.10.2"), false),
        ];
        let (mut s, t1, fx) = answered(setup(t0, group, BusyPhones::Skip));
        assert_eq!(
            fx[0],
            Effect::Push {
                device: "SEP000000001001".into(),
                ip: "127.0.10.1".into(),
                uri: URI.into(),
                kind: PushKind::Join,
            }
        );
        assert_eq!(fx.len(), 2);
        assert_eq!(s.next_deadline(), Some(t1 + JOIN));
        assert!(s
            .on_event(pushed("SEP000000001002", PushKind::Join, true), t1 + ms(40))
            .is_empty());
        assert_eq!(
            s.on_event(pushed("SEP000000001001", PushKind::Join, true), t1 + ms(55)),
            vec![Effect::GoAhead]
        );
        assert_eq!(s.go_ahead_ms(), Some(55));
        assert_eq!(s.joined(), vec!["SEP000000001001", "SEP000000001002"]);
        assert_eq!(s.next_deadline(), Some(t1 + MAX_PAGE));
        // The caller hangs up after 10 s.
        let t2 = t1 + ms(10_000);
        assert_eq!(
            s.on_event(Event::CallerHungUp, t2),
            vec![Effect::StopStream]
        );
        let counts = StreamCounts {
            caller_packets: 500,
            group_packets: 497,
            ..Default::default()
        };
        let fx = s.on_event(
            Event::StreamStopped {
                counts: counts.clone(),
                pacing: Pacing::default(),
            },
            t2 + ms(20),
        );
        assert_eq!(
            fx.iter()
                .filter_map(|e| match e {
                    Effect::Push { uri, .. } => Some(uri.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>(),
            vec![LEAVE_URI, LEAVE_URI]
        );
        assert!(s
            .on_event(
                pushed("SEP000000001001", PushKind::Leave, true),
                t2 + ms(30)
            )
            .is_empty());
        let r = the_report(s.on_event(
            pushed("SEP000000001002", PushKind::Leave, true),
            t2 + ms(35),
        ));
        assert!(s.is_done());
        assert_eq!(r.ended_by, "caller hung up");
        assert_eq!((r.joined, r.failed), (2, 0));
        assert_eq!(r.go_ahead_ms, Some(55));
        assert_eq!(r.duration_ms, 10 + 10_000 + 35);
        assert_eq!(r.stream, counts);
        let p = result(&r, "SEP000000001002");
        assert_eq!(
            (p.outcome.as_str(), p.join_ms, p.left),
            ("joined", Some(40), Some(true))
        );
        assert_eq!(p.ip.as_deref(), Some("127.0.10.2"));
    }

    #[test]
    fn r14_phones_that_miss_the_join_timeout_fail_and_the_go_ahead_proceeds() {
        let t0 = Instant::now();
        let group = vec![
            phone("A", Some("127.0.10.1"), false),
            phone("B", Some("127.0.10.2"), false),
            phone("C", Some("127.0.10.3"), false),
        ];
        let (mut s, t1, fx) = answered(setup(t0, group, BusyPhones::Skip));
        assert_eq!(pushes(&fx).len(), 3);
        assert!(s
            .on_event(pushed("A", PushKind::Join, true), t1 + ms(300))
            .is_empty());
        assert!(s
            .on_event(pushed("B", PushKind::Join, false), t1 + ms(400))
            .is_empty());
        // Not before the timeout.
        assert!(s.on_event(Event::Timer, t1 + ms(1999)).is_empty());
        assert_eq!(s.go_ahead_ms(), None);
        assert_eq!(
            s.on_event(Event::Timer, t1 + JOIN),
            vec![Effect::CancelPushes, Effect::GoAhead]
        );
        assert_eq!(s.go_ahead_ms(), Some(2000));
        // C's answer after all changes nothing.
        assert!(s
            .on_event(pushed("C", PushKind::Join, true), t1 + ms(2100))
            .is_empty());
        assert_eq!(s.joined(), vec!["A"]);
        s.on_event(Event::CallerHungUp, t1 + ms(5000));
        let fx = s.on_event(
            Event::StreamStopped {
                counts: StreamCounts::default(),
                pacing: Pacing::default(),
            },
            t1 + ms(5000),
        );
        assert_eq!(pushes(&fx), vec![("A".to_string(), PushKind::Leave)]);
        let r = the_report(s.on_event(pushed("A", PushKind::Leave, true), t1 + ms(5010)));
        assert_eq!((r.joined, r.failed), (1, 2));
        let c = result(&r, "C");
        assert_eq!(c.outcome, "failed");
        assert_eq!(c.reason.as_deref(), Some("no answer within 2000 ms"));
        assert_eq!(c.join_ms, Some(2000));
        assert_eq!(result(&r, "B").reason.as_deref(), Some("HTTP 401"));
        assert_eq!(result(&r, "B").left, None);
    }

    #[test]
    fn r14_busy_phones_are_skipped_or_paged_as_configured() {
        let group = || {
            vec![
                phone("A", Some("127.0.10.1"), false),
                phone("BUSY", Some("127.0.10.2"), true),
                phone("GONE", None, true),
            ]
        };
        let t0 = Instant::now();
        let (mut s, t1, fx) = answered(setup(t0, group(), BusyPhones::Skip));
        assert_eq!(pushes(&fx), vec![("A".to_string(), PushKind::Join)]);
        s.on_event(pushed("A", PushKind::Join, true), t1 + ms(20));
        s.on_event(Event::CallerHungUp, t1 + ms(100));
        s.on_event(
            Event::StreamStopped {
                counts: StreamCounts::default(),
                pacing: Pacing::default(),
            },
            t1 + ms(100),
        );
        let r = the_report(s.on_event(pushed("A", PushKind::Leave, true), t1 + ms(110)));
        let busy = result(&r, "BUSY");
        assert_eq!(
            (busy.outcome.as_str(), busy.reason.as_deref()),
            ("busy", Some("on a call"))
        );
        assert_eq!(result(&r, "GONE").outcome, "not-registered");
        assert_eq!((r.joined, r.failed), (1, 2));

        // Paged anyway: the busy phone is pushed to like the others.
        let (_, _, fx) = answered(setup(t0, group(), BusyPhones::Page));
        assert_eq!(
            pushes(&fx),
            vec![
                ("A".to_string(), PushKind::Join),
                ("BUSY".to_string(), PushKind::Join)
            ]
        );
    }

    #[test]
    fn r14_a_caller_hang_up_tells_the_joined_phones_to_stop() {
        let t0 = Instant::now();
        let group = vec![
            phone("A", Some("127.0.10.1"), false),
            phone("B", Some("127.0.10.2"), false),
            phone("C", Some("127.0.10.3"), false),
        ];
        let (mut s, t1, _) = answered(setup(t0, group, BusyPhones::Skip));
        s.on_event(pushed("A", PushKind::Join, true), t1 + ms(10));
        s.on_event(pushed("B", PushKind::Join, false), t1 + ms(10));
        s.on_event(pushed("C", PushKind::Join, true), t1 + ms(10));
        let t2 = t1 + ms(3000);
        // The hang-up stops the stream (the call is already over: no EndCall) ...
        assert_eq!(
            s.on_event(Event::CallerHungUp, t2),
            vec![Effect::StopStream]
        );
        assert!(!s.listening());
        // ... then RTPRx:Stop goes to A and C, not to B, which never joined.
        let fx = s.on_event(
            Event::StreamStopped {
                counts: StreamCounts::default(),
                pacing: Pacing::default(),
            },
            t2,
        );
        assert_eq!(
            fx,
            vec![
                Effect::Push {
                    device: "A".into(),
                    ip: "127.0.10.1".into(),
                    uri: "RTPRx:Stop".into(),
                    kind: PushKind::Leave
                },
                Effect::Push {
                    device: "C".into(),
                    ip: "127.0.10.3".into(),
                    uri: "RTPRx:Stop".into(),
                    kind: PushKind::Leave
                },
            ]
        );
        assert_eq!(s.next_deadline(), Some(t2 + LEAVE));
        s.on_event(pushed("A", PushKind::Leave, true), t2 + ms(15));
        // C never answers: after the leave timeout the report says so.
        assert!(s.on_event(Event::Timer, t2 + ms(4999)).is_empty());
        let fx = s.on_event(Event::Timer, t2 + LEAVE);
        assert_eq!(fx[0], Effect::CancelPushes);
        let r = the_report(fx);
        assert_eq!(result(&r, "A").left, Some(true));
        let c = result(&r, "C");
        assert_eq!(c.left, Some(false));
        assert_eq!(
            c.reason.as_deref(),
            Some("RTPRx:Stop: no answer within 5000 ms")
        );
        assert_eq!(c.outcome, "joined");
        assert_eq!(r.ended_by, "caller hung up");
    }

    #[test]
    fn r14_the_maximum_page_time_ends_the_page() {
        let t0 = Instant::now();
        let (mut s, t1, _) = answered(setup(
            t0,
            vec![phone("A", Some("127.0.10.1"), false)],
            BusyPhones::Skip,
        ));
        s.on_event(pushed("A", PushKind::Join, true), t1 + ms(50));
        assert_eq!(s.next_deadline(), Some(t1 + MAX_PAGE));
        assert!(s.on_event(Event::Timer, t1 + MAX_PAGE - ms(1)).is_empty());
        assert_eq!(
            s.on_event(Event::Timer, t1 + MAX_PAGE),
            vec![Effect::EndCall, Effect::StopStream]
        );
        // The hang-up that ending the call causes changes nothing.
        assert!(s
            .on_event(Event::CallerHungUp, t1 + MAX_PAGE + ms(5))
            .is_empty());
        s.on_event(
            Event::StreamStopped {
                counts: StreamCounts::default(),
                pacing: Pacing::default(),
            },
            t1 + MAX_PAGE + ms(20),
        );
        let r = the_report(s.on_event(pushed("A", PushKind::Leave, true), t1 + MAX_PAGE + ms(30)));
        assert_eq!(r.ended_by, "max page time");
        assert_eq!(r.duration_ms, 10 + 60_000 + 30);
    }

    #[test]
    fn r14_an_end_while_phones_join_waits_for_the_go_ahead() {
        let t0 = Instant::now();
        let group = vec![
            phone("A", Some("127.0.10.1"), false),
            phone("B", Some("127.0.10.2"), false),
        ];
        let (mut s, t1, _) = answered(setup(t0, group, BusyPhones::Skip));
        s.on_event(pushed("A", PushKind::Join, true), t1 + ms(10));
        assert!(s.on_event(Event::NodeStopping, t1 + ms(20)).is_empty());
        assert!(s.on_event(Event::CallerHungUp, t1 + ms(30)).is_empty());
        // B joins: go-ahead, then at once the first end (the node's stop ends the call).
        assert_eq!(
            s.on_event(pushed("B", PushKind::Join, true), t1 + ms(40)),
            vec![Effect::GoAhead, Effect::EndCall, Effect::StopStream]
        );
        let fx = s.on_event(
            Event::StreamStopped {
                counts: StreamCounts::default(),
                pacing: Pacing::default(),
            },
            t1 + ms(60),
        );
        assert_eq!(pushes(&fx).len(), 2, "both joined phones leave");
        s.on_event(pushed("A", PushKind::Leave, true), t1 + ms(70));
        let r = the_report(s.on_event(pushed("B", PushKind::Leave, true), t1 + ms(70)));
        assert_eq!(r.ended_by, "node stopping");
        assert_eq!(r.go_ahead_ms, Some(40));
    }

    #[test]
    fn r14_a_group_nobody_can_join_goes_ahead_at_once() {
        let t0 = Instant::now();
        let mut su = setup(
            t0,
            vec![
                phone("A", None, false),
                phone("B", Some("127.0.10.2"), false),
            ],
            BusyPhones::Skip,
        );
        su.push_unavailable = Some("no TLS backend".into());
        su.over_cap = vec!["Z".into()];
        su.cap = 2;
        let (mut s, t1, fx) = answered(su);
        assert_eq!(fx, vec![Effect::GoAhead]);
        assert_eq!(s.go_ahead_ms(), Some(0));
        s.on_event(Event::CallControlStopped, t1 + ms(100));
        let r = the_report(s.on_event(
            Event::StreamStopped {
                counts: StreamCounts::default(),
                pacing: Pacing::default(),
            },
            t1 + ms(100),
        ));
        assert_eq!(r.ended_by, "call control stopped");
        assert_eq!(result(&r, "A").outcome, "not-registered");
        let b = result(&r, "B");
        assert_eq!(
            (b.outcome.as_str(), b.reason.as_deref(), b.join_ms),
            ("failed", Some("HTTP client: no TLS backend"), None)
        );
        let z = result(&r, "Z");
        assert_eq!(
            (z.outcome.as_str(), z.reason.as_deref()),
            ("over-cap", Some("the group holds at most 2 phones"))
        );
        assert_eq!((r.joined, r.failed), (0, 3));
        assert_eq!(
            r.phones
                .iter()
                .map(|p| p.device.as_str())
                .collect::<Vec<_>>(),
            vec!["A", "B", "Z"]
        );
    }

    #[test]
    fn r14_a_page_that_cannot_start_reports_why() {
        let t0 = Instant::now();
        let mut s = PageSession::new(setup(t0, Vec::new(), BusyPhones::Skip));
        s.offer();
        let r = the_report(s.on_event(Event::AnswerFailed("gone".into()), t0 + ms(3)));
        assert_eq!(r.ended_by, "not answered: gone");
        assert_eq!(r.duration_ms, 3);

        let mut s = PageSession::new(setup(t0, Vec::new(), BusyPhones::Skip));
        s.offer();
        s.on_event(Event::Answered, t0 + ms(3));
        let fx = s.on_event(Event::StreamFailed("no thread".into()), t0 + ms(4));
        assert_eq!(fx[0], Effect::EndCall);
        assert_eq!(the_report(fx).ended_by, "media: no thread");
    }
}
