//! `ucm user unlock USER`: ends a user's lockout (failed password and PIN checks) cluster-wide.

use clap::Subcommand;
use ucm::services::phone_services::store::Lockouts;

use crate::db::DbArgs;
use crate::{print_out, Failure};

#[derive(Subcommand)]
pub enum Command {
    /// Unlock a user locked out by failed password or PIN checks, on every node at once:
    /// forgets the failures of the user's password and PIN in the cluster database.
    /// Exit status: 0 the user's failure records were removed; 1 there was nothing to unlock
    /// (no failure recorded for USER: not locked, or no such user); 2 bad input or the
    /// database could not be used. A node's per-source throttle (in memory) is not reset.
    #[command(
        after_help = "Exit status: 0 unlocked, 1 nothing to unlock (no failures recorded for USER), 2 bad input or database error."
    )]
    Unlock {
        /// The user ID (end user or application user).
        user: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Longest user ID accepted (Cisco's user IDs are at most 128 characters).
const MAX_USERID: usize = 128;

pub async fn run(cmd: Command) -> Result<(), Failure> {
    match cmd {
        Command::Unlock { user, db } => {
            let user = user.trim();
            if user.is_empty()
                || user.chars().count() > MAX_USERID
                || user.chars().any(char::is_control)
            {
                return Err(Failure::Input(format!(
                    "{user:?} is not a user ID (1 to {MAX_USERID} characters, no control characters)"
                )));
            }
            let store = db.open().await?;
            let removed = store.unlock_user(user).await;
            store.close().await;
            match removed? {
                0 => Err(Failure::Check(format!(
                    "{user}: nothing to unlock (no failed checks recorded)"
                ))),
                n => print_out(&format!(
                    "{user}: unlocked ({n} failure record(s) removed)\n"
                )),
            }
        }
    }
}
