//! The transaction table: many transactions, message matching and one earliest deadline.

use super::*;

/// What became of an incoming request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A new request: a server transaction was created under `key`; hand
    /// the request to the TU, which answers with
    /// [`TransactionTable::respond`].
    New {
        key: TransactionKey,
        request: Request,
    },
    /// A new CANCEL: a (non-INVITE) server transaction was created under
    /// `key`; the TU answers it (200, or 481 when
    /// `key_of_cancelled_invite` is `None`) and, if the INVITE is still
    /// Proceeding, answers the INVITE with 487.
    Cancel {
        key: TransactionKey,
        key_of_cancelled_invite: Option<TransactionKey>,
        request: Request,
    },
    /// A retransmission or an ACK for a non-2xx, handled by the transaction
    /// `key`; carry out `actions` (usually a `Send`, possibly `Terminated`).
    Absorbed {
        key: TransactionKey,
        actions: Vec<Action>,
    },
    /// An ACK that belongs to no transaction: the ACK for a 2xx, for the
    /// dialog layer. `invite` names the INVITE server transaction whose 2xx
    /// it acknowledges (matched by Call-ID, CSeq number, From tag and the
    /// 2xx's To tag), whose 2xx retransmissions it stopped.
    AckFor2xx {
        request: Request,
        invite: Option<TransactionKey>,
    },
    /// No transaction key can be derived (no parseable top Via, CSeq, ...).
    Invalid {
        request: Request,
        error: TransactionError,
    },
}

/// What became of an incoming response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOutcome {
    /// Handled by the client transaction `key`.
    Matched {
        key: TransactionKey,
        actions: Vec<Action>,
    },
    /// No client transaction matches (for instance a 2xx retransmission
    /// after the INVITE client transaction ended, or a 2xx from another
    /// fork): for the dialog layer, which re-sends its ACK.
    Stray(Response),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AckKey {
    call_id: String,
    seq: u32,
    from_tag: String,
    to_tag: String,
}

impl AckKey {
    fn of_ack(ack: &Request) -> Option<AckKey> {
        Some(AckKey {
            call_id: ack.call_id()?.to_string(),
            seq: ack.cseq().ok()?.seq,
            from_tag: ack.headers.from_ref().ok()?.tag()?.to_string(),
            to_tag: ack.headers.to_ref().ok()?.tag()?.to_string(),
        })
    }

    fn of_2xx(invite: &Request, ok: &Response) -> Option<AckKey> {
        Some(AckKey {
            call_id: invite.call_id()?.to_string(),
            seq: invite.cseq().ok()?.seq,
            from_tag: invite.headers.from_ref().ok()?.tag()?.to_string(),
            to_tag: ok.headers.to_ref().ok()?.tag()?.to_string(),
        })
    }
}

#[derive(Debug)]
enum Txn {
    Client(Box<ClientTransaction>),
    Server(Box<ServerTransaction>),
}

impl Txn {
    fn next_deadline(&self) -> Option<Instant> {
        match self {
            Txn::Client(c) => c.next_deadline(),
            Txn::Server(s) => s.next_deadline(),
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            Txn::Client(c) => c.state() == ClientState::Terminated,
            Txn::Server(s) => s.state() == ServerState::Terminated,
        }
    }

    fn key(&self) -> &TransactionKey {
        match self {
            Txn::Client(c) => c.key(),
            Txn::Server(s) => s.key(),
        }
    }

    fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        match self {
            Txn::Client(c) => c.on_timer(now),
            Txn::Server(s) => s.on_timer(now),
        }
    }

    fn on_transport_error(&mut self) -> Vec<Action> {
        match self {
            Txn::Client(c) => c.on_transport_error(),
            Txn::Server(s) => s.on_transport_error(),
        }
    }
}

/// Hashes ids a table hands out itself (never data from a peer, so there is nothing to
/// flood) with one multiplication instead of SipHash.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by ids the owner generates (transactions, calls).
pub(crate) type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

#[derive(Debug)]
struct Slot {
    txn: Txn,
    scheduled: Option<Instant>,
    ack_key: Option<AckKey>,
}

/// Owns many transactions: matches incoming messages to them, removes them
/// when they terminate, and keeps their deadlines ordered (a `BTreeSet` of
/// `(deadline, id)`), so every operation costs O(log n).
#[derive(Debug)]
pub struct TransactionTable {
    timers: Timers,
    ids: HashMap<TransactionKey, u64>,
    slots: IdMap<Slot>,
    schedule: BTreeSet<(Instant, u64)>,
    acks: HashMap<AckKey, u64>,
    next_id: u64,
}

impl TransactionTable {
    pub fn new(timers: Timers) -> Self {
        TransactionTable {
            timers: timers.sane(),
            ids: HashMap::new(),
            slots: IdMap::default(),
            schedule: BTreeSet::new(),
            acks: HashMap::new(),
            next_id: 0,
        }
    }

    pub fn timers(&self) -> Timers {
        self.timers
    }

    /// An incoming request (already checked with `Request::validate`).
    ///
    /// * Matches a server transaction (17.2.3): that transaction handles it
    ///   (retransmission, or ACK for a non-2xx) → [`Incoming::Absorbed`].
    /// * ACK matching nothing, or matching an INVITE transaction that sent a
    ///   2xx → [`Incoming::AckFor2xx`] (never creates a transaction).
    /// * New CANCEL → [`Incoming::Cancel`], new other request →
    ///   [`Incoming::New`], both with a new server transaction.
    pub fn on_request(&mut self, req: Request, reliability: Reliability, now: Instant) -> Incoming {
        let key = match TransactionKey::for_request(&req) {
            Ok(k) => k,
            Err(error) => {
                return Incoming::Invalid {
                    request: req,
                    error,
                }
            }
        };
        if req.method == Method::Ack {
            return self.on_ack(key, req, now);
        }
        if let Some(&id) = self.ids.get(&key) {
            let actions = match self.slots.get_mut(&id) {
                Some(Slot {
                    txn: Txn::Server(s),
                    ..
                }) => s.handle_retransmission(),
                _ => Vec::new(),
            };
            self.settle(id);
            return Incoming::Absorbed { key, actions };
        }
        let cancel = req.method == Method::Cancel;
        let (txn, _) = match ServerTransaction::new(req.clone(), reliability, self.timers, now) {
            Ok(t) => t,
            Err(error) => {
                return Incoming::Invalid {
                    request: req,
                    error,
                }
            }
        };
        self.insert(key.clone(), Txn::Server(Box::new(txn)));
        if cancel {
            let invite = key.with_method(Method::Invite);
            let key_of_cancelled_invite = self.ids.contains_key(&invite).then_some(invite);
            Incoming::Cancel {
                key,
                key_of_cancelled_invite,
                request: req,
            }
        } else {
            Incoming::New { key, request: req }
        }
    }

    fn on_ack(&mut self, key: TransactionKey, req: Request, now: Instant) -> Incoming {
        let by_key = self.ids.get(&key).copied();
        let by_dialog = || AckKey::of_ack(&req).and_then(|k| self.acks.get(&k).copied());
        let Some(id) = by_key.or_else(by_dialog) else {
            return Incoming::AckFor2xx {
                request: req,
                invite: None,
            };
        };
        let Some(Slot {
            txn: Txn::Server(s),
            ..
        }) = self.slots.get_mut(&id)
        else {
            return Incoming::AckFor2xx {
                request: req,
                invite: None,
            };
        };
        let accepted = s.state() == ServerState::Accepted;
        let txn_key = s.key().clone();
        let actions = s.handle_ack(now);
        self.settle(id);
        if accepted {
            Incoming::AckFor2xx {
                request: req,
                invite: Some(txn_key),
            }
        } else {
            Incoming::Absorbed {
                key: txn_key,
                actions,
            }
        }
    }

    /// An incoming response, matched to its client transaction (17.1.3).
    pub fn on_response(&mut self, resp: Response, now: Instant) -> ResponseOutcome {
        let Ok(key) = TransactionKey::for_response(&resp) else {
            return ResponseOutcome::Stray(resp);
        };
        let Some(&id) = self.ids.get(&key) else {
            return ResponseOutcome::Stray(resp);
        };
        let actions = match self.slots.get_mut(&id) {
            Some(Slot {
                txn: Txn::Client(c),
                ..
            }) => c.handle_response(resp, now),
            _ => return ResponseOutcome::Stray(resp),
        };
        self.settle(id);
        ResponseOutcome::Matched { key, actions }
    }

    /// Starts a client transaction for `req` (built by the TU, with a fresh
    /// branch). Returns its key and the first `Send`.
    pub fn start_client(
        &mut self,
        req: Request,
        reliability: Reliability,
        now: Instant,
    ) -> Result<(TransactionKey, Vec<Action>), TransactionError> {
        let key = TransactionKey::client_for_request(&req)?;
        if self.ids.contains_key(&key) {
            return Err(TransactionError::Duplicate(key));
        }
        if req.method == Method::Ack {
            return Err(TransactionError::Ack);
        }
        let (txn, actions) =
            ClientTransaction::with_key(key.clone(), req, reliability, self.timers, now)?;
        self.insert(key.clone(), Txn::Client(Box::new(txn)));
        Ok((key, actions))
    }

    /// The TU responds on server transaction `key` (see
    /// [`ServerTransaction::respond`]). A 2xx to an INVITE is retransmitted
    /// by the transaction until the ACK for it arrives through
    /// [`TransactionTable::on_request`]. Unknown keys give no actions.
    pub fn respond(&mut self, key: &TransactionKey, resp: Response, now: Instant) -> Vec<Action> {
        let Some(&id) = self.ids.get(key) else {
            return Vec::new();
        };
        let Some(slot) = self.slots.get_mut(&id) else {
            return Vec::new();
        };
        let Txn::Server(s) = &mut slot.txn else {
            return Vec::new();
        };
        let before = s.state();
        let ack_key = (s.is_invite() && (200..300).contains(&resp.status))
            .then(|| AckKey::of_2xx(s.request(), &resp))
            .flatten();
        let actions = s.respond(resp, now);
        if before != ServerState::Accepted && s.state() == ServerState::Accepted {
            if let Some(ak) = ack_key {
                slot.ack_key = Some(ak.clone());
                self.acks.insert(ak, id);
            }
        }
        self.settle(id);
        actions
    }

    /// Answers server transaction `key` once and forgets it (see
    /// [`ServerTransaction::respond_statelessly`]). Unknown keys give no actions.
    pub fn respond_statelessly(
        &mut self,
        key: &TransactionKey,
        resp: Response,
        send: bool,
    ) -> Vec<Action> {
        let Some(&id) = self.ids.get(key) else {
            return Vec::new();
        };
        let actions = match self.slots.get_mut(&id) {
            Some(Slot {
                txn: Txn::Server(s),
                ..
            }) => s.respond_statelessly(resp, send),
            _ => return Vec::new(),
        };
        self.settle(id);
        actions
    }

    /// The TU sent a CANCEL for the INVITE client transaction `key`: see
    /// [`ClientTransaction::cancel_sent`].
    pub fn cancel_sent(&mut self, key: &TransactionKey, now: Instant) {
        let Some(&id) = self.ids.get(key) else {
            return;
        };
        if let Some(Slot {
            txn: Txn::Client(c),
            ..
        }) = self.slots.get_mut(&id)
        {
            c.cancel_sent(now);
        }
        self.settle(id);
    }

    /// The transport reported an error for transaction `key`.
    pub fn on_transport_error(&mut self, key: &TransactionKey) -> Vec<Action> {
        let Some(&id) = self.ids.get(key) else {
            return Vec::new();
        };
        let actions = match self.slots.get_mut(&id) {
            Some(slot) => slot.txn.on_transport_error(),
            None => Vec::new(),
        };
        self.settle(id);
        actions
    }

    /// Fires every timer due at `now`, in deadline order.
    pub fn on_timers(&mut self, now: Instant) -> Vec<(TransactionKey, Action)> {
        let mut due_ids = Vec::new();
        while let Some(&(deadline, id)) = self.schedule.first() {
            if deadline > now {
                break;
            }
            self.schedule.pop_first();
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.scheduled = None;
            }
            due_ids.push(id);
        }
        let mut out = Vec::new();
        for id in due_ids {
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            let actions = slot.txn.on_timer(now);
            if !actions.is_empty() {
                let key = slot.txn.key();
                out.extend(actions.into_iter().map(|a| (key.clone(), a)));
            }
            self.settle(id);
        }
        out
    }

    /// The earliest deadline of all transactions.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.schedule.first().map(|&(t, _)| t)
    }

    /// Transactions alive (terminated ones are removed at once).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn client(&self, key: &TransactionKey) -> Option<&ClientTransaction> {
        match &self.slots.get(self.ids.get(key)?)?.txn {
            Txn::Client(c) => Some(&**c),
            Txn::Server(_) => None,
        }
    }

    pub fn server(&self, key: &TransactionKey) -> Option<&ServerTransaction> {
        match &self.slots.get(self.ids.get(key)?)?.txn {
            Txn::Server(s) => Some(&**s),
            Txn::Client(_) => None,
        }
    }

    fn insert(&mut self, key: TransactionKey, txn: Txn) {
        let id = self.next_id;
        self.next_id += 1;
        self.ids.insert(key, id);
        self.slots.insert(
            id,
            Slot {
                txn,
                scheduled: None,
                ack_key: None,
            },
        );
        self.settle(id);
    }

    /// Removes the transaction if it terminated, else brings its schedule
    /// entry up to date.
    fn settle(&mut self, id: u64) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        if slot.txn.is_terminated() {
            if let Some(t) = slot.scheduled {
                self.schedule.remove(&(t, id));
            }
            if let Some(ak) = &slot.ack_key {
                if self.acks.get(ak) == Some(&id) {
                    self.acks.remove(ak);
                }
            }
            self.ids.remove(slot.txn.key());
            self.slots.remove(&id);
            return;
        }
        let next = slot.txn.next_deadline();
        if next != slot.scheduled {
            if let Some(t) = slot.scheduled {
                self.schedule.remove(&(t, id));
            }
            if let Some(t) = next {
                self.schedule.insert((t, id));
            }
            slot.scheduled = next;
        }
    }
}
