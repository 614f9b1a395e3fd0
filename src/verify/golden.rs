//! Golden ladders: a capture's normalised ladder ([`super::ladder::Ladder::normalised`])
//! compared with a stored one, differences shown as a unified diff.
//!
//! A golden is `ladder.txt`: one normalised ladder line per line; lines starting with `#` and
//! blank lines are comments. `--golden` takes the file itself, or a directory holding
//! `ladder.txt`, or a directory of scenarios where `<capture file stem>/ladder.txt` is used.
//!
//! A golden holds one run's order, and a run of the same flow may interleave what happens at
//! once in another order. [`equivalent`] asks only what the flow promises:
//!
//! - **The same steps.** Every line of the golden is in the capture and the capture has no
//!   other: a missing, extra or changed step differs.
//! - **Each conversation in order.** A conversation is a SIP call (`call 3`: its dialogs and
//!   transactions), or HTTP between two roles (a push `B -> A` and the phone's authentication
//!   callback `A -> B` made while it is open are one conversation, push first). Within one,
//!   the golden's order always counts, however close the lines.
//! - **Roles and calls renamed.** Letters (`A`, `B`...), policy roles' numbers (`phone2`) and
//!   call numbers are given by first appearance, so a run that interleaves differently may
//!   name them differently. The capture matches when one renaming (one to one) turns its
//!   conversations into the golden's; the letters themselves mean nothing.
//! - **RTP stream lines anywhere.** A stream's first packet races with the signalling sent
//!   at the same moment (the callee starts sending as it answers, while the 200 OK is still
//!   on its way through the B2BUA), so its position varies; which streams there are must
//!   still match.
//! - **Concurrent conversations in any interleaving.** Two lines of different conversations
//!   may come in the other order than the golden's only when they are concurrent:
//!   - a fan-out: both belong to exchanges begun by the same role (an HTTP exchange with the
//!     callbacks made while it was open, a SIP transaction, exchanges of one conversation in
//!     progress at once taken together) that were in progress at the same time, as the golden
//!     shows (their lines interleave there) or as the capture shows (their times overlap;
//!     not when the golden shows the first SIP transaction answered before the other began:
//!     then waiting for it is the flow). The node's pushes to a group's phones, or a UA's BYE
//!     and REGISTER sent before either is answered;
//!   - or they are in one burst of the capture: a run of lines each less than
//!     [`CONCURRENT_WINDOW`] after the one before. What a trigger sets off at once (a hangup:
//!     the caller's unREGISTER and report request, the node's RTPRx:Stop pushes) comes in
//!     one burst in any order, however slow one of its parties is while the others go on.
//!
//!   Anything else keeps the golden's order: a B2BUA's two legs (begun by different roles),
//!   a REGISTER sent after the previous one was answered.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use super::ladder::LadderLine;

/// Where the golden of `capture` is, given `--golden`'s argument.
pub fn locate(golden: &Path, capture: &Path) -> PathBuf {
    if golden.is_dir() {
        let direct = golden.join("ladder.txt");
        if direct.is_file() {
            return direct;
        }
        let stem = capture
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        return golden.join(stem).join("ladder.txt");
    }
    golden.to_path_buf()
}

/// The ladder lines of a golden file (comments and blank lines dropped).
pub fn lines_of(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_end())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The longest pause (seconds) within a burst of ladder lines: lines of different
/// conversations in one burst are concurrent (two requests a UA sends at once, the answers to
/// them, what one event sets off in several places), so the order they reach the wire in
/// varies from run to run.
pub const CONCURRENT_WINDOW: f64 = 0.05;

/// Steps the search for a renaming of roles and calls may take before it gives up (the
/// ladders then differ).
const SEARCH_BUDGET: usize = 200_000;

/// Line pairs out of the golden's order the check looks at before it gives up.
const INVERSION_BUDGET: usize = 5_000_000;

/// Whether a capture's ladder (`actual`) matches the golden (`expected`), as the module docs
/// say: the same lines up to a renaming of roles and calls; in each conversation the same
/// order; RTP stream lines anywhere; lines of different conversations in another order only
/// where they are concurrent.
pub fn equivalent(expected: &[String], actual: &[LadderLine]) -> bool {
    if expected.len() != actual.len() {
        return false;
    }
    if expected.iter().zip(actual).all(|(e, a)| *e == a.text) {
        return true;
    }
    let golden = Side::new(expected.iter().map(String::as_str));
    let capture = Side::new(actual.iter().map(|l| l.text.as_str()));
    if golden.roles.len() != capture.roles.len() || golden.rtp.len() != capture.rtp.len() {
        return false;
    }
    // Conversations of the capture by shape: a golden conversation can only be one of these.
    let mut by_shape: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, c) in capture.convs.iter().enumerate() {
        by_shape.entry(c.shape.as_str()).or_default().push(i);
    }
    let mut shapes_g: HashMap<&str, usize> = HashMap::new();
    for c in &golden.convs {
        *shapes_g.entry(c.shape.as_str()).or_default() += 1;
    }
    if shapes_g.len() != by_shape.len()
        || shapes_g
            .iter()
            .any(|(s, n)| by_shape.get(s).map(Vec::len) != Some(*n))
    {
        return false;
    }
    let episodes = Episodes::of(&capture, actual);
    Search {
        golden: &golden,
        capture: &capture,
        by_shape: &by_shape,
        episodes: &episodes,
        used: vec![false; capture.convs.len() + capture.rtp.len()],
        paired: vec![usize::MAX; golden.convs.len()],
        budget: SEARCH_BUDGET,
    }
    .run()
}

/// One ladder line taken apart.
#[derive(Clone, Debug)]
struct Parsed {
    /// Sender and receiver (`A`, `B`, `sipp`...), when the line is `X -> Y: ...`.
    roles: Option<(String, String)>,
    /// What follows `X -> Y: `, the call number replaced by `#`; the whole line otherwise.
    body: String,
    /// The SIP call number.
    call: Option<u64>,
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// A SIP message and its transaction: method (of the CSeq), relative CSeq, and whether
    /// it is a request.
    Sip {
        method: String,
        cseq: String,
        request: bool,
    },
    Http,
    Rtp,
    Other,
}

impl Parsed {
    fn new(line: &str) -> Parsed {
        let whole = Parsed {
            roles: None,
            body: line.to_string(),
            call: None,
            kind: Kind::Other,
        };
        let Some((src, rest)) = line.split_once(" -> ") else {
            return whole;
        };
        let Some((dst, body)) = rest.split_once(": ") else {
            return whole;
        };
        if [src, dst].iter().any(|r| r.is_empty() || r.contains(' ')) {
            return whole;
        }
        let roles = Some((src.to_string(), dst.to_string()));
        let simple = |kind| Parsed {
            roles: roles.clone(),
            body: body.to_string(),
            call: None,
            kind,
        };
        if body.starts_with("RTP ") {
            return simple(Kind::Rtp);
        }
        if body.starts_with("HTTP ") {
            return simple(Kind::Http);
        }
        // `INVITE (call 4, cseq 1)`, `200 REGISTER (call 3 leg 2, cseq 2)`.
        let Some(i) = body.find(" (call ") else {
            return simple(Kind::Other);
        };
        let (head, inner) = (&body[..i], &body[i + 7..]);
        let digits = inner.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(call) = inner[..digits].parse::<u64>() else {
            return simple(Kind::Other);
        };
        let cseq = inner
            .rsplit_once("cseq ")
            .map(|(_, c)| c.trim_end_matches(')').to_string())
            .unwrap_or_default();
        let (method, request) = match head.split_once(' ') {
            Some((status, m)) if status.bytes().all(|b| b.is_ascii_digit()) => (m, false),
            _ => (head, true),
        };
        Parsed {
            roles,
            body: format!("{head} (call #{}", &inner[digits..]),
            call: Some(call),
            kind: Kind::Sip {
                method: method.to_string(),
                cseq,
                request,
            },
        }
    }

    /// The conversation the line belongs to: its SIP call, or the two roles (whichever way)
    /// of an HTTP exchange; any other line is its own. RTP lines belong to none.
    fn conversation(&self) -> Option<Conv> {
        let pair = |what: &'static str, (a, b): &(String, String)| {
            let (a, b) = if a <= b { (a, b) } else { (b, a) };
            Conv::Pair(what, a.clone(), b.clone())
        };
        match (&self.kind, &self.roles, self.call) {
            (Kind::Rtp, ..) => None,
            (_, _, Some(c)) => Some(Conv::Call(c)),
            (Kind::Http, Some(r), _) => Some(pair("http", r)),
            (_, Some(r), _) => Some(pair("other", r)),
            _ => Some(Conv::Line(self.body.clone())),
        }
    }

    /// Who began the exchange the line is part of: a request's (or HTTP exchange's) sender,
    /// a response's receiver.
    fn initiator(&self) -> Option<&str> {
        let (src, dst) = self.roles.as_ref()?;
        match &self.kind {
            Kind::Sip { request: false, .. } => Some(dst),
            _ => Some(src),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Conv {
    Call(u64),
    Pair(&'static str, String, String),
    Line(String),
}

/// The kind of name a role has: `""` for the letters given to addresses without a policy
/// role, else the policy's role without the number telling its addresses apart (`phone` for
/// `phone2`). Letters and numbers follow first appearance, so only they may be renamed.
fn class(role: &str) -> &str {
    if !role.is_empty() && role.bytes().all(|b| b.is_ascii_uppercase()) {
        ""
    } else {
        role.trim_end_matches(|c: char| c.is_ascii_digit())
    }
}

/// A conversation of one ladder.
struct Conversation {
    /// Its lines, in order (indices into the ladder).
    lines: Vec<usize>,
    /// Its lines with roles named by first appearance in the conversation (`phone#0`, `#1`)
    /// and without the call number: what it must equal in the other ladder.
    shape: String,
    /// Its roles in that order.
    roles: Vec<String>,
    call: Option<u64>,
    /// How many conversations of the same shape come before it.
    rank: usize,
}

/// A ladder taken apart.
struct Side {
    lines: Vec<Parsed>,
    /// Conversations in order of first appearance.
    convs: Vec<Conversation>,
    rtp: Vec<usize>,
    roles: BTreeSet<String>,
}

impl Side {
    fn new<'a>(text: impl Iterator<Item = &'a str>) -> Side {
        let lines: Vec<Parsed> = text.map(Parsed::new).collect();
        let mut index: HashMap<Conv, usize> = HashMap::new();
        let mut convs: Vec<Conversation> = Vec::new();
        let mut rtp = Vec::new();
        let mut roles = BTreeSet::new();
        for (i, l) in lines.iter().enumerate() {
            if let Some((s, d)) = &l.roles {
                roles.insert(s.clone());
                roles.insert(d.clone());
            }
            let Some(key) = l.conversation() else {
                rtp.push(i);
                continue;
            };
            let n = convs.len();
            let c = *index.entry(key).or_insert(n);
            if c == n {
                convs.push(Conversation {
                    lines: Vec::new(),
                    shape: String::new(),
                    roles: Vec::new(),
                    call: l.call,
                    rank: 0,
                });
            }
            let conv = &mut convs[c];
            conv.lines.push(i);
            let mut local = |r: &String| -> String {
                let k = match conv.roles.iter().position(|x| x == r) {
                    Some(k) => k,
                    None => {
                        conv.roles.push(r.clone());
                        conv.roles.len() - 1
                    }
                };
                format!("{}#{k}", class(r))
            };
            let text = match &l.roles {
                Some((s, d)) => format!("{} -> {}: {}", local(s), local(d), l.body),
                None => l.body.clone(),
            };
            conv.shape.push_str(&text);
            conv.shape.push('\n');
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        for c in &mut convs {
            let n = seen.entry(c.shape.clone()).or_default();
            c.rank = *n;
            *n += 1;
        }
        Side {
            lines,
            convs,
            rtp,
            roles,
        }
    }
}

/// A renaming of the golden's roles and calls to the capture's (both ways, so that it stays
/// one to one), with what was added in order (to take it back when the search backtracks).
#[derive(Default)]
struct Names {
    role: HashMap<String, String>,
    role_back: HashMap<String, String>,
    call: HashMap<u64, u64>,
    call_back: HashMap<u64, u64>,
    added: Vec<Added>,
}

enum Added {
    Role(String, String),
    Call(u64, u64),
}

impl Names {
    /// Adds golden role `g` = capture role `a`; false when that contradicts the renaming.
    fn role(&mut self, g: &str, a: &str) -> bool {
        match (self.role.get(g), self.role_back.get(a)) {
            (Some(x), Some(y)) => x == a && y == g,
            (None, None) if class(g) == class(a) => {
                self.role.insert(g.to_string(), a.to_string());
                self.role_back.insert(a.to_string(), g.to_string());
                self.added.push(Added::Role(g.to_string(), a.to_string()));
                true
            }
            _ => false,
        }
    }

    fn call(&mut self, g: u64, a: u64) -> bool {
        match (self.call.get(&g), self.call_back.get(&a)) {
            (Some(x), Some(y)) => *x == a && *y == g,
            (None, None) => {
                self.call.insert(g, a);
                self.call_back.insert(a, g);
                self.added.push(Added::Call(g, a));
                true
            }
            _ => false,
        }
    }

    /// Takes back what was added after `mark` (a length of `added`).
    fn back_to(&mut self, mark: usize) {
        while self.added.len() > mark {
            match self.added.pop() {
                Some(Added::Role(g, a)) => {
                    self.role.remove(&g);
                    self.role_back.remove(&a);
                }
                Some(Added::Call(g, a)) => {
                    self.call.remove(&g);
                    self.call_back.remove(&a);
                }
                None => {}
            }
        }
    }
}

/// Exchanges of the capture (a SIP transaction; an HTTP exchange with the callbacks made
/// while it was open) grouped per conversation into episodes: exchanges of one conversation
/// that were in progress at once are one episode.
struct Episodes {
    /// Episode of each capture line (`usize::MAX`: an RTP line).
    of: Vec<usize>,
    /// Per episode: who began it, when (seconds), and whether it is SIP only (the golden then
    /// shows where it ends: its last line).
    initiator: Vec<Option<String>>,
    span: Vec<(f64, f64)>,
    sip_only: Vec<bool>,
    /// Burst of each capture line (see [`CONCURRENT_WINDOW`]; `usize::MAX`: an RTP line).
    burst: Vec<usize>,
}

impl Episodes {
    fn of(side: &Side, actual: &[LadderLine]) -> Episodes {
        let mut e = Episodes {
            of: vec![usize::MAX; side.lines.len()],
            initiator: Vec::new(),
            span: Vec::new(),
            sip_only: Vec::new(),
            burst: vec![usize::MAX; side.lines.len()],
        };
        let mut by_time: Vec<usize> = (0..side.lines.len())
            .filter(|&i| side.lines[i].kind != Kind::Rtp)
            .collect();
        by_time.sort_by(|&a, &b| actual[a].time.total_cmp(&actual[b].time));
        let (mut burst, mut last) = (0, f64::NEG_INFINITY);
        for i in by_time {
            if actual[i].time - last > CONCURRENT_WINDOW {
                burst += 1;
            }
            last = actual[i].time;
            e.burst[i] = burst;
        }
        for conv in &side.convs {
            // Exchanges: a SIP transaction's lines together, any other line alone.
            let mut exchanges: Vec<(Vec<usize>, (f64, f64))> = Vec::new();
            let mut txn: HashMap<(String, String, Option<&str>), usize> = HashMap::new();
            for &i in &conv.lines {
                let l = &side.lines[i];
                let (t0, t1) = actual[i].span;
                let (t0, t1) = (t0.min(actual[i].time), t1.max(actual[i].time));
                let slot = match &l.kind {
                    Kind::Sip { method, cseq, .. } => {
                        let key = (method.clone(), cseq.clone(), l.initiator());
                        match txn.get(&key) {
                            Some(&x) => Some(x),
                            None => {
                                txn.insert(key, exchanges.len());
                                None
                            }
                        }
                    }
                    _ => None,
                };
                match slot {
                    Some(x) => {
                        let (lines, span) = &mut exchanges[x];
                        lines.push(i);
                        *span = (span.0.min(t0), span.1.max(t1));
                    }
                    None => exchanges.push((vec![i], (t0, t1))),
                }
            }
            // Episodes: exchanges that overlap, in order of their beginning.
            exchanges.sort_by(|a, b| a.1 .0.total_cmp(&b.1 .0));
            let mut current: Option<usize> = None;
            for (lines, span) in exchanges {
                let id = match current {
                    Some(c) if span.0 <= e.span[c].1 => {
                        e.span[c].1 = e.span[c].1.max(span.1);
                        c
                    }
                    _ => {
                        e.initiator
                            .push(side.lines[lines[0]].initiator().map(str::to_string));
                        e.span.push(span);
                        e.sip_only.push(true);
                        e.span.len() - 1
                    }
                };
                current = Some(id);
                for i in lines {
                    e.of[i] = id;
                    if !matches!(side.lines[i].kind, Kind::Sip { .. }) {
                        e.sip_only[id] = false;
                    }
                }
            }
        }
        e
    }
}

/// The search for a renaming under which the capture matches the golden: the golden's
/// conversations, then its RTP lines, are paired one by one with the capture's of the same
/// shape (the one at the same rank first), backtracking where the renaming contradicts
/// itself or the order does not hold.
struct Search<'a> {
    golden: &'a Side,
    capture: &'a Side,
    by_shape: &'a HashMap<&'a str, Vec<usize>>,
    episodes: &'a Episodes,
    /// Capture conversations, then capture RTP lines, already paired.
    used: Vec<bool>,
    /// The capture conversation of each golden one.
    paired: Vec<usize>,
    budget: usize,
}

/// One level of the search: a golden item's candidates, the next to try, the one taken, and
/// the renaming's length before it.
struct Level {
    candidates: Vec<usize>,
    next: usize,
    taken: Option<usize>,
    mark: usize,
}

impl Search<'_> {
    fn run(&mut self) -> bool {
        let convs = self.golden.convs.len();
        let items = convs + self.golden.rtp.len();
        let mut names = Names::default();
        let mut levels = vec![self.level(0)];
        while !levels.is_empty() {
            let item = levels.len() - 1;
            let l = &mut levels[item];
            if let Some(c) = l.taken.take() {
                self.used[c] = false;
                names.back_to(l.mark);
            }
            let mut took = false;
            while l.next < l.candidates.len() {
                let c = l.candidates[l.next];
                l.next += 1;
                if self.used[c] {
                    continue;
                }
                if self.budget == 0 {
                    return false;
                }
                self.budget -= 1;
                l.mark = names.added.len();
                if self.agree(item, c, &mut names) {
                    self.used[c] = true;
                    l.taken = Some(c);
                    if item < convs {
                        self.paired[item] = c;
                    }
                    took = true;
                    break;
                }
                names.back_to(l.mark);
            }
            if !took {
                levels.pop();
            } else if item + 1 < items {
                levels.push(self.level(item + 1));
            } else if self.golden.roles.iter().all(|r| names.role.contains_key(r))
                && self.order_holds()
            {
                return true;
            }
        }
        false
    }

    /// Golden item `item`'s candidates: capture conversations of its shape, nearest rank
    /// first, or capture RTP lines with its text (indices into `used`).
    fn level(&self, item: usize) -> Level {
        let convs = self.golden.convs.len();
        let candidates = if item < convs {
            let gc = &self.golden.convs[item];
            let same = self
                .by_shape
                .get(gc.shape.as_str())
                .map_or(&[][..], Vec::as_slice);
            let mut order: Vec<usize> = (0..same.len()).collect();
            order.sort_by_key(|&k| (k.abs_diff(gc.rank), k));
            order.into_iter().map(|k| same[k]).collect()
        } else {
            let body = &self.golden.lines[self.golden.rtp[item - convs]].body;
            let first = self.capture.convs.len();
            (0..self.capture.rtp.len())
                .filter(|&k| self.capture.lines[self.capture.rtp[k]].body == *body)
                .map(|k| first + k)
                .collect()
        };
        Level {
            candidates,
            next: 0,
            taken: None,
            mark: 0,
        }
    }

    /// Whether golden item `item` can be capture item `c` under the renaming (extended).
    fn agree(&self, item: usize, c: usize, names: &mut Names) -> bool {
        let convs = self.golden.convs.len();
        if item < convs {
            let (gc, ac) = (&self.golden.convs[item], &self.capture.convs[c]);
            let calls = match (gc.call, ac.call) {
                (Some(x), Some(y)) => names.call(x, y),
                (None, None) => true,
                _ => false,
            };
            calls
                && gc
                    .roles
                    .iter()
                    .zip(&ac.roles)
                    .all(|(x, y)| names.role(x, y))
        } else {
            let gl = &self.golden.lines[self.golden.rtp[item - convs]];
            let al = &self.capture.lines[self.capture.rtp[c - self.capture.convs.len()]];
            match (&gl.roles, &al.roles) {
                (Some((gs, gd)), Some((s, d))) => names.role(gs, s) && names.role(gd, d),
                _ => false,
            }
        }
    }

    /// With the conversations paired (the k-th line of one is the k-th of the other), every
    /// two lines the capture shows in the other order than the golden must be concurrent.
    fn order_holds(&self) -> bool {
        let g = self.golden;
        // Capture line of each golden line (RTP lines left out).
        let mut to_capture = vec![usize::MAX; g.lines.len()];
        for (gi, gc) in g.convs.iter().enumerate() {
            let ac = &self.capture.convs[self.paired[gi]];
            for (&x, &y) in gc.lines.iter().zip(&ac.lines) {
                to_capture[x] = y;
            }
        }
        // Where each episode stands in the golden (first and last line).
        let ep = self.episodes;
        let mut golden_span = vec![(usize::MAX, 0usize); ep.span.len()];
        for (gi, &a) in to_capture.iter().enumerate() {
            if a != usize::MAX {
                let s = &mut golden_span[ep.of[a]];
                *s = (s.0.min(gi), s.1.max(gi));
            }
        }
        let concurrent = |x: usize, y: usize| -> bool {
            // x comes first in the golden, y first in the capture.
            if ep.burst[x] == ep.burst[y] {
                return true;
            }
            let (ex, ey) = (ep.of[x], ep.of[y]);
            if ep.initiator[ex].is_none() || ep.initiator[ex] != ep.initiator[ey] {
                return false;
            }
            let (gx, gy) = (golden_span[ex], golden_span[ey]);
            if gx.0 <= gy.1 && gy.0 <= gx.1 {
                // Interleaved in the golden: begun by one role, in progress at once.
                return true;
            }
            let (tx, ty) = (ep.span[ex], ep.span[ey]);
            // In progress at once in this capture, unless the golden shows the first one
            // over before the other began (then waiting for it is the flow).
            tx.0 <= ty.1 && ty.0 <= tx.1 && !ep.sip_only[if gx.0 < gy.0 { ex } else { ey }]
        };
        // Pairs out of order: walk the golden, keeping the capture positions seen so far.
        let mut seen: BTreeSet<usize> = BTreeSet::new();
        let mut looked = 0usize;
        for &y in to_capture.iter().filter(|&&a| a != usize::MAX) {
            for &x in seen.range(y + 1..) {
                looked += 1;
                if looked > INVERSION_BUDGET || !concurrent(x, y) {
                    return false;
                }
            }
            seen.insert(y);
        }
        true
    }
}

/// A unified diff (`--- golden`, `+++ capture`, `@@` hunks with 3 lines of context) of two
/// line lists; empty when they are equal.
pub fn unified_diff(
    expected: &[String],
    actual: &[String],
    expected_name: &str,
    actual_name: &str,
) -> Vec<String> {
    if expected == actual {
        return Vec::new();
    }
    let ops = edit_script(expected, actual);
    let mut out = vec![format!("--- {expected_name}"), format!("+++ {actual_name}")];
    const CONTEXT: usize = 3;
    // Indices of ops that are changes.
    let changes: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, Op::Same(..)))
        .map(|(i, _)| i)
        .collect();
    let mut k = 0;
    while k < changes.len() {
        let start = changes[k].saturating_sub(CONTEXT);
        let mut end = (changes[k] + CONTEXT + 1).min(ops.len());
        let mut j = k + 1;
        while j < changes.len() && changes[j] <= end + CONTEXT {
            end = (changes[j] + CONTEXT + 1).min(ops.len());
            j += 1;
        }
        // Line numbers at the hunk's start.
        let (mut a0, mut b0) = (1usize, 1usize);
        for o in &ops[..start] {
            match o {
                Op::Same(..) => {
                    a0 += 1;
                    b0 += 1;
                }
                Op::Del(_) => a0 += 1,
                Op::Add(_) => b0 += 1,
            }
        }
        let (mut an, mut bn) = (0usize, 0usize);
        let mut body = Vec::new();
        for o in &ops[start..end] {
            match o {
                Op::Same(a, _) => {
                    an += 1;
                    bn += 1;
                    body.push(format!(" {}", expected[*a]));
                }
                Op::Del(a) => {
                    an += 1;
                    body.push(format!("-{}", expected[*a]));
                }
                Op::Add(b) => {
                    bn += 1;
                    body.push(format!("+{}", actual[*b]));
                }
            }
        }
        let a_start = if an == 0 { a0 - 1 } else { a0 };
        let b_start = if bn == 0 { b0 - 1 } else { b0 };
        out.push(format!("@@ -{a_start},{an} +{b_start},{bn} @@"));
        out.extend(body);
        k = j;
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Same(usize, usize),
    Del(usize),
    Add(usize),
}

/// Longest-common-subsequence edit script; beyond 25 million cells, common prefix and suffix
/// are kept and the middle is shown as deleted then added.
fn edit_script(a: &[String], b: &[String]) -> Vec<Op> {
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    let mut ops: Vec<Op> = (0..pre).map(|i| Op::Same(i, i)).collect();
    let (n, m) = (am.len(), bm.len());
    if n.saturating_mul(m) > 25_000_000 {
        ops.extend((0..n).map(|i| Op::Del(pre + i)));
        ops.extend((0..m).map(|j| Op::Add(pre + j)));
    } else {
        // lcs[i][j]: LCS length of am[i..] and bm[j..].
        let mut lcs = vec![0u32; (n + 1) * (m + 1)];
        let at = |i: usize, j: usize| i * (m + 1) + j;
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[at(i, j)] = if am[i] == bm[j] {
                    lcs[at(i + 1, j + 1)] + 1
                } else {
                    lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && am[i] == bm[j] {
                ops.push(Op::Same(pre + i, pre + j));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
                ops.push(Op::Del(pre + i));
                i += 1;
            } else {
                ops.push(Op::Add(pre + j));
                j += 1;
            }
        }
    }
    let (ea, eb) = (a.len() - suf, b.len() - suf);
    ops.extend((0..suf).map(|k| Op::Same(ea + k, eb + k)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    /// Lines 1 s apart (nothing concurrent).
    fn apart(s: &[&str]) -> Vec<LadderLine> {
        s.iter()
            .enumerate()
            .map(|(i, x)| LadderLine::at(i as u64 + 1, i as f64, *x))
            .collect()
    }

    #[test]
    fn rtp_lines_may_move_but_not_change() {
        let g = v(&[
            "A -> B: INVITE (call 1, cseq 1)",
            "B -> A: 200 INVITE (call 1, cseq 1)",
            "B -> A: RTP PT 0",
            "A -> B: ACK (call 1, cseq 1)",
            "A -> B: RTP PT 0",
        ]);
        let moved = apart(&[
            "A -> B: INVITE (call 1, cseq 1)",
            "B -> A: RTP PT 0",
            "B -> A: 200 INVITE (call 1, cseq 1)",
            "A -> B: RTP PT 0",
            "A -> B: ACK (call 1, cseq 1)",
        ]);
        assert!(equivalent(&g, &moved));
        let other_pt = apart(&[
            "A -> B: INVITE (call 1, cseq 1)",
            "B -> A: 200 INVITE (call 1, cseq 1)",
            "B -> A: RTP PT 8",
            "A -> B: ACK (call 1, cseq 1)",
            "A -> B: RTP PT 0",
        ]);
        assert!(!equivalent(&g, &other_pt));
        let missing = apart(&[
            "A -> B: INVITE (call 1, cseq 1)",
            "B -> A: 200 INVITE (call 1, cseq 1)",
            "A -> B: ACK (call 1, cseq 1)",
            "A -> B: RTP PT 0",
        ]);
        assert!(!equivalent(&g, &missing));
        let swapped = apart(&[
            "B -> A: 200 INVITE (call 1, cseq 1)",
            "A -> B: INVITE (call 1, cseq 1)",
            "B -> A: RTP PT 0",
            "A -> B: ACK (call 1, cseq 1)",
            "A -> B: RTP PT 0",
        ]);
        assert!(!equivalent(&g, &swapped));
    }

    #[test]
    fn concurrent_lines_of_different_calls_may_swap() {
        let g = v(&[
            "A -> B: REGISTER (call 1, cseq 2)",
            "B -> A: 403 REGISTER (call 1 leg 2, cseq 2)",
            "A -> B: REGISTER (call 3, cseq 1)",
            "B -> A: 200 REGISTER (call 3 leg 1, cseq 1)",
        ]);
        let t = |s: &[(&str, f64)]| -> Vec<LadderLine> {
            s.iter()
                .enumerate()
                .map(|(i, (x, t))| LadderLine::at(i as u64 + 1, *t, *x))
                .collect()
        };
        // Sent at once, answered in the other order: fine.
        let raced = t(&[
            ("A -> B: REGISTER (call 1, cseq 2)", 1.000),
            ("A -> B: REGISTER (call 3, cseq 1)", 1.001),
            ("B -> A: 403 REGISTER (call 1 leg 2, cseq 2)", 1.002),
            ("B -> A: 200 REGISTER (call 3 leg 1, cseq 1)", 1.003),
        ]);
        assert!(equivalent(&g, &raced));
        // The same order a second apart: the second call really came first.
        let late = t(&[
            ("A -> B: REGISTER (call 1, cseq 2)", 1.0),
            ("A -> B: REGISTER (call 3, cseq 1)", 2.0),
            ("B -> A: 403 REGISTER (call 1 leg 2, cseq 2)", 3.0),
            ("B -> A: 200 REGISTER (call 3 leg 1, cseq 1)", 4.0),
        ]);
        assert!(!equivalent(&g, &late));
        // Within one call the order always counts, however close.
        let g2 = v(&[
            "A -> B: INVITE (call 1, cseq 1)",
            "B -> A: 100 INVITE (call 1, cseq 1)",
        ]);
        let rev = t(&[
            ("B -> A: 100 INVITE (call 1, cseq 1)", 1.0),
            ("A -> B: INVITE (call 1, cseq 1)", 1.001),
        ]);
        assert!(!equivalent(&g2, &rev));
        let conversation = |l: &str| Parsed::new(l).conversation();
        assert_eq!(
            conversation("B -> A: 403 REGISTER (call 12 leg 2, cseq 2)"),
            Some(Conv::Call(12))
        );
        assert_eq!(
            conversation("A -> B: REGISTER (call 3, cseq 1)"),
            Some(Conv::Call(3))
        );
        assert_eq!(
            conversation("B -> A: HTTP POST /x 200"),
            conversation("A -> B: HTTP GET /y 200")
        );
    }

    const PAGING: &str = include_str!("../../golden/paging/ladder.txt");
    const UCM_PAGE: &str = include_str!("../../golden/ucm_page/ladder.txt");
    const BASIC_CALL: &str = include_str!("../../golden/basic_call/ladder.txt");

    type Spans = Vec<(usize, f64, f64)>;

    /// A capture's ladder made of the golden's lines `(index, time)`, in that order; an HTTP
    /// exchange's span is given in `spans` (`index, from, to`), other lines are moments.
    fn capture(
        golden: &[String],
        at: &[(usize, f64)],
        spans: &[(usize, f64, f64)],
    ) -> Vec<LadderLine> {
        at.iter()
            .enumerate()
            .map(|(k, &(i, t))| {
                let mut l = LadderLine::at(k as u64 + 1, t, golden[i].clone());
                if let Some(&(_, a, b)) = spans.iter().find(|s| s.0 == i) {
                    l.span = (a, b);
                }
                l
            })
            .collect()
    }

    /// The paging scenario on a slow machine, every line at least 100 ms from the next: the
    /// group's phones pushed at once and answering in the other order than the golden's, the
    /// caller's BYE answered before its unREGISTER (the golden has them raced), the report
    /// request sent while the RTPRx:Stop pushes are open and answered after them.
    fn paging_slow() -> (Vec<String>, Vec<(usize, f64)>, Spans) {
        let g = lines_of(PAGING);
        assert_eq!(
            g.len(),
            33,
            "golden/paging/ladder.txt changed: adapt this test"
        );
        let mut at: Vec<(usize, f64)> = (0..=13).map(|i| (i, i as f64 * 0.1)).collect();
        at.extend([
            (15, 1.4), // B -> C: push
            (16, 1.5), // C -> B: its authentication
            (14, 1.6), // B -> A: push (connection opened with C's)
            (17, 1.8), // A -> B: its authentication
            (19, 2.0),
            (18, 2.1),
            (20, 3.0), // D -> B: BYE
            (22, 3.1), // B -> D: 200 BYE
            (21, 3.2), // D -> B: REGISTER (unregister)
            (23, 3.3),
            (26, 3.5), // B -> A: RTPRx:Stop
            (25, 3.6), // B -> C: RTPRx:Stop
            (24, 3.7), // B -> B: GET the page's report (long poll)
            (28, 3.8),
            (27, 3.9),
        ]);
        at.extend((29..33).map(|i| (i, 5.0 + i as f64 * 0.1)));
        let spans = vec![
            (15, 1.35, 1.9),
            (16, 1.5, 1.55),
            (14, 1.34, 2.0),
            (17, 1.8, 1.85),
            (26, 3.45, 4.2),
            (25, 3.46, 4.3),
            (24, 3.7, 4.5),
            (28, 3.8, 3.85),
            (27, 3.9, 3.95),
        ];
        (g, at, spans)
    }

    /// Roles and calls renamed in a ladder line (`X -> Y: ... (call N`).
    fn renamed(line: &str, roles: &[(&str, &str)], calls: &[(u64, u64)]) -> String {
        let (src, rest) = line.split_once(" -> ").unwrap();
        let (dst, body) = rest.split_once(": ").unwrap();
        let role = |r: &str| {
            roles
                .iter()
                .find(|x| x.0 == r)
                .map_or(r.to_string(), |x| x.1.to_string())
        };
        let mut body = body.to_string();
        if let Some(i) = body.find("(call ") {
            let n: String = body[i + 6..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Some(&(_, to)) = calls.iter().find(|c| c.0.to_string() == n) {
                body = format!("{}(call {to}{}", &body[..i], &body[i + 6 + n.len()..]);
            }
        }
        format!("{} -> {}: {body}", role(src), role(dst))
    }

    #[test]
    fn r14_a_swapped_interleaving_of_concurrent_conversations_passes() {
        let (g, at, spans) = paging_slow();
        assert!(equivalent(&g, &capture(&g, &at, &spans)));
        // Nothing of it rests on lines being close: no two are within the window.
        assert!(at.windows(2).all(|w| w[1].1 - w[0].1 > CONCURRENT_WINDOW));
        // The golden itself, far apart, still matches.
        let same: Vec<(usize, f64)> = (0..g.len()).map(|i| (i, i as f64)).collect();
        assert!(equivalent(&g, &capture(&g, &same, &[])));
    }

    #[test]
    fn r14_a_changed_order_inside_one_conversation_fails() {
        let (g, at, spans) = paging_slow();
        // A phone's authentication callback before the push that asks for it.
        let mut early_auth = at.clone();
        let p = early_auth.iter().position(|x| x.0 == 14).unwrap();
        let q = early_auth.iter().position(|x| x.0 == 17).unwrap();
        let (tp, tq) = (early_auth[p].1, early_auth[q].1);
        early_auth[p].0 = 17;
        early_auth[q].0 = 14;
        early_auth[p].1 = tp;
        early_auth[q].1 = tq;
        assert!(!equivalent(&g, &capture(&g, &early_auth, &spans)));
        // However close: 1 ms apart.
        let mut close = early_auth.clone();
        close[q].1 = close[p].1 + 0.001;
        close.sort_by(|a, b| a.1.total_cmp(&b.1));
        assert!(!equivalent(&g, &capture(&g, &close, &spans)));
        // The BYE's answer before the BYE (one SIP call).
        let mut bye = at.clone();
        let p = bye.iter().position(|x| x.0 == 20).unwrap();
        bye[p].0 = 22;
        bye[p + 1].0 = 20;
        assert!(!equivalent(&g, &capture(&g, &bye, &spans)));
    }

    #[test]
    fn r14_a_missing_extra_or_changed_step_fails() {
        let (g, at, spans) = paging_slow();
        // Phone C's authentication callback to the first push is missing.
        let missing: Vec<(usize, f64)> = at.iter().copied().filter(|x| x.0 != 16).collect();
        assert!(!equivalent(&g, &capture(&g, &missing, &spans)));
        // ...and phone A authenticates twice instead (as many lines as the golden).
        let twice: Vec<(usize, f64)> = at
            .iter()
            .map(|&(i, t)| if i == 16 { (28, t) } else { (i, t) })
            .collect();
        assert!(!equivalent(&g, &capture(&g, &twice, &spans)));
        // One push more.
        let mut extra = at.clone();
        extra.insert(15, (14, 1.45));
        assert!(!equivalent(&g, &capture(&g, &extra, &spans)));
        // A push refused.
        let mut lines = capture(&g, &at, &spans);
        let k = at.iter().position(|x| x.0 == 25).unwrap();
        lines[k].text = lines[k].text.replace(" 200", " 500");
        assert!(!equivalent(&g, &lines));
        // An RTP stream to another address.
        let mut lines = capture(&g, &at, &spans);
        let k = at.iter().position(|x| x.0 == 18).unwrap();
        lines[k].text = "B -> A: RTP PT 0 ptime 20ms".into();
        assert!(!equivalent(&g, &lines));
    }

    #[test]
    fn r14_only_concurrent_exchanges_of_one_role_may_reorder_beyond_the_window() {
        let (g, mut at, spans) = paging_slow();
        // The report request sent after the pushes were answered: nothing shows it was open
        // at once with them (the window aside).
        let k = at.iter().position(|x| x.0 == 24).unwrap();
        at.remove(k);
        at.insert(at.iter().position(|x| x.0 == 29).unwrap(), (24, 4.6));
        let late_spans: Vec<(usize, f64, f64)> = spans
            .iter()
            .map(|&s| if s.0 == 24 { (24, 4.6, 4.61) } else { s })
            .collect();
        assert!(!equivalent(&g, &capture(&g, &at, &late_spans)));
        // A B2BUA's legs are begun by different roles: C's answer and its relay to A keep
        // their order, even though both INVITE transactions were open at once.
        let g = lines_of(BASIC_CALL);
        let a = g
            .iter()
            .position(|l| l == "C -> B: 200 INVITE (call 4, cseq 1)")
            .unwrap();
        let b = g
            .iter()
            .position(|l| l == "B -> A: 200 INVITE (call 3, cseq 1)")
            .unwrap();
        let mut order: Vec<usize> = (0..g.len()).collect();
        order.remove(b);
        order.insert(a, b);
        let at: Vec<(usize, f64)> = order
            .iter()
            .enumerate()
            .map(|(k, &i)| (i, k as f64))
            .collect();
        assert!(!equivalent(&g, &capture(&g, &at, &[])));
        // The same 10 ms apart: within the window, as before.
        let at: Vec<(usize, f64)> = order
            .iter()
            .enumerate()
            .map(|(k, &i)| (i, k as f64 * 0.01))
            .collect();
        assert!(equivalent(&g, &capture(&g, &at, &[])));
    }

    #[test]
    fn r14_what_a_hangup_sets_off_comes_in_one_burst_in_any_order() {
        let (g, mut at, mut spans) = paging_slow();
        // The caller is slow after its BYE's answer while the node pushes RTPRx:Stop and the
        // phones authenticate: its unREGISTER and report request come after all that, up to
        // 120 ms after the first push, but no pause in the burst reaches the window.
        let k = at.iter().position(|x| x.0 == 20).unwrap();
        at.truncate(k);
        at.extend([
            (20, 3.000), // D -> B: BYE
            (22, 3.001), // B -> D: 200 BYE
            (25, 3.005), // B -> C: RTPRx:Stop
            (26, 3.006), // B -> A: RTPRx:Stop
            (27, 3.040), // C -> B: authentication
            (28, 3.075), // A -> B: authentication
            (21, 3.090), // D -> B: REGISTER (unregister)
            (23, 3.091), // B -> D: 200 REGISTER
            (24, 3.125), // B -> B: GET the report
        ]);
        at.extend((29..33).map(|i| (i, 5.0 + i as f64 * 0.1)));
        spans.retain(|s| s.0 < 20);
        spans.extend([(25, 3.005, 3.05), (26, 3.006, 3.08), (24, 3.1, 3.13)]);
        assert!(equivalent(&g, &capture(&g, &at, &spans)));
        // The same with a pause of more than the window before the unREGISTER: the burst
        // ends there, and what comes after it keeps the golden's order with what came before.
        let paused: Vec<(usize, f64)> = at
            .iter()
            .map(|&(i, t)| {
                if (3.08..4.0).contains(&t) {
                    (i, t + 0.1)
                } else {
                    (i, t)
                }
            })
            .collect();
        let spans: Vec<(usize, f64, f64)> = spans
            .iter()
            .map(|&(i, a, b)| {
                if i == 24 {
                    (i, a + 0.1, b + 0.1)
                } else {
                    (i, a, b)
                }
            })
            .collect();
        assert!(!equivalent(&g, &capture(&g, &paused, &spans)));
    }

    #[test]
    fn r14_roles_and_calls_named_by_first_appearance_are_matched_not_compared() {
        // The group's multicast stream starts before the push to the phone: in the capture
        // the multicast address is C and the phone D.
        let g = lines_of(UCM_PAGE);
        let swap = [("C", "D"), ("D", "C")];
        let mut order: Vec<usize> = (0..g.len()).collect();
        let rtp = g
            .iter()
            .position(|l| l == "B -> D: RTP PT 0 ptime 20ms")
            .unwrap();
        order.remove(rtp);
        order.insert(8, rtp);
        let lines: Vec<LadderLine> = order
            .iter()
            .enumerate()
            .map(|(k, &i)| LadderLine::at(k as u64, k as f64, renamed(&g[i], &swap, &[])))
            .collect();
        assert_ne!(lines[9].text, g[9]);
        assert!(equivalent(&g, &lines));
        // Renamed one to one only: the second push going to the multicast address is another
        // flow, whatever the names.
        let mut other = lines.clone();
        for l in other.iter_mut().skip(14) {
            l.text = l.text.replace("-> D:", "-> C:").replace("D ->", "C ->");
        }
        assert!(!equivalent(&g, &other));
        // Calls: a UA subscribes and registers at once, answered in the other order; in the
        // capture the REGISTER is sent first, so it is call 1 there.
        let g = v(&[
            "A -> B: SUBSCRIBE (call 1, cseq 1)",
            "A -> B: REGISTER (call 2, cseq 1)",
            "B -> A: 200 SUBSCRIBE (call 1, cseq 1)",
            "B -> A: 200 REGISTER (call 2, cseq 1)",
        ]);
        let a = apart(&[
            "A -> B: REGISTER (call 1, cseq 1)",
            "A -> B: SUBSCRIBE (call 2, cseq 1)",
            "B -> A: 200 SUBSCRIBE (call 2, cseq 1)",
            "B -> A: 200 REGISTER (call 1, cseq 1)",
        ]);
        assert!(equivalent(&g, &a));
        assert_eq!(
            renamed(
                "A -> B: REGISTER (call 1, cseq 1)",
                &[("A", "C")],
                &[(1, 7)]
            ),
            "C -> B: REGISTER (call 7, cseq 1)"
        );
    }

    #[test]
    fn equal_is_empty() {
        assert!(unified_diff(&v(&["a", "b"]), &v(&["a", "b"]), "g", "c").is_empty());
    }

    #[test]
    fn one_change() {
        let d = unified_diff(
            &v(&["1", "2", "3", "4", "5", "6", "7", "8"]),
            &v(&["1", "2", "3", "4", "X", "6", "7", "8"]),
            "golden",
            "capture",
        );
        assert_eq!(
            d,
            v(&[
                "--- golden",
                "+++ capture",
                "@@ -2,7 +2,7 @@",
                " 2",
                " 3",
                " 4",
                "-5",
                "+X",
                " 6",
                " 7",
                " 8"
            ])
        );
    }

    #[test]
    fn insertions_and_comments() {
        let g = lines_of("# made by hand\n\na\nb\n");
        let d = unified_diff(&g, &v(&["a", "b", "c"]), "g", "c");
        assert_eq!(d[2], "@@ -1,2 +1,3 @@");
        assert_eq!(d.last().unwrap(), "+c");
    }
}
