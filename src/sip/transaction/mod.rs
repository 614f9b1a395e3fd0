//! SIP transactions (RFC 3261 section 17), sans-IO.
//!
//! The state machines here take events (a message arrived, the TU responded,
//! time passed, the transport failed) together with the current [`Instant`] and
//! return the [`Action`]s the caller must carry out. They do no I/O, read no
//! clock and generate nothing random, so they run deterministically under test;
//! a thin async shell owns the sockets and the clock and calls
//! [`TransactionTable::on_timers`] whenever [`TransactionTable::next_deadline`]
//! passes.
//!
//! * [`ClientTransaction`]: INVITE client (17.1.1, timers A, B, D, ACK for
//!   non-2xx finals) and non-INVITE client (17.1.2, timers E, F, K).
//! * [`ServerTransaction`]: INVITE server (17.2.1, automatic 100 Trying after
//!   200 ms, timers G, H, I) and non-INVITE server (17.2.2, timer J).
//! * [`InviteOkRetransmitter`]: the UAS core's 2xx retransmission until the
//!   ACK arrives (13.3.1.4).
//! * [`TransactionTable`]: many transactions, message matching (17.1.3,
//!   17.2.3) and one earliest deadline for the shell.
//!
//! A 2xx to an INVITE moves the INVITE server transaction to the `Accepted`
//! state of RFC 6026 instead of destroying it: for 64*T1 it absorbs
//! retransmissions of the INVITE (which RFC 3261 would hand to the TU as a new
//! request) and retransmits the 2xx itself until the ACK is reported (through
//! [`ServerTransaction::on_ack`], or automatically by the table, which matches
//! the ACK for the 2xx by dialog and CSeq). The INVITE client transaction
//! follows RFC 3261: a 2xx terminates it, and later 2xx retransmissions are
//! [`ResponseOutcome::Stray`] so that the dialog layer can re-send its ACK.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::message::{Method, Request, Response, SipMessage, ViaRef};

mod client;
mod key;
mod server;
mod table;
#[cfg(test)]
mod tests;
mod timers;

pub use client::*;
pub use key::*;
pub use server::*;
pub use table::*;
pub use timers::*;

/// The RFC 3261 branch prefix.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// A branch parameter value: the magic cookie followed by `random` in hex.
pub fn new_branch(random: u64) -> String {
    format!("{MAGIC_COOKIE}{random:016x}")
}

/// Whether the transport retransmits by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reliability {
    /// UDP: the transaction layer retransmits.
    Unreliable,
    /// TCP, TLS: no retransmissions, and the "linger" timers D, I, J, K are 0.
    Reliable,
}

impl Reliability {
    pub fn is_reliable(self) -> bool {
        self == Reliability::Reliable
    }
}

/// What the shell must do, in order, for one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this message (a request or a response) to the transaction's peer.
    Send(SipMessage),
    /// Deliver this response to the TU of a client transaction.
    DeliverResponse(Response),
    /// The transaction failed. For a client transaction: Timer B or F fired,
    /// the CANCEL guard expired, or the transport failed; the TU acts as if a
    /// 408 had been received. For an INVITE server transaction: Timer H fired
    /// (no ACK for a non-2xx final), no ACK came for a 2xx within 64*T1 (the
    /// TU should send BYE, RFC 3261 13.3.1.4), or the transport failed.
    Timeout,
    /// The transaction is finished and can be forgotten. Nothing follows.
    Terminated,
}

/// Why a transaction cannot be created or identified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// The message lacks what identifies a transaction (top Via, branch,
    /// CSeq).
    #[error("cannot identify the transaction: {0}")]
    Unidentifiable(String),
    /// ACK never creates a transaction (RFC 3261 17).
    #[error("ACK does not create a transaction")]
    Ack,
    /// The table already holds a transaction with this key.
    #[error("transaction already exists: {0:?}")]
    Duplicate(TransactionKey),
}

fn unidentifiable(e: impl std::fmt::Display) -> TransactionError {
    TransactionError::Unidentifiable(e.to_string())
}
