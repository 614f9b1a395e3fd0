//! The file-descriptor budget the node's connection listeners share. One process has
//! `RLIMIT_NOFILE` descriptors: [`raise_nofile_limit`] lifts the soft limit to the hard one at
//! start, [`FD_RESERVE`] of them are kept for everything that is not an accepted connection
//! (database, files, UDP sockets, connections the node opens), and the rest is split evenly
//! between the [`STREAM_LISTENERS`]: every listener caps its connections at
//! [`per_listener_cap`] of its own maximum, so that together they never use every descriptor
//! (19,980 idle SIP connections once took HTTP, EM, TFTP-over-HTTP and SIP down alike).

/// Descriptors kept for what is not an accepted connection.
pub const FD_RESERVE: usize = 256;
/// Listeners that accept connections and share the budget: HTTP, HTTPS, TFTP over HTTP,
/// SIP over TCP, SIP over TLS.
pub const STREAM_LISTENERS: usize = 5;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit in force.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write or read the struct passed; no other preconditions.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
    }
    Ok(lim.rlim_cur)
}

/// The soft `RLIMIT_NOFILE` now (1,024 when it cannot be read).
pub fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 1024;
    }
    lim.rlim_cur
}

/// The connections one listener may hold: its own maximum `wanted`, kept within its share of
/// the descriptors (at least 1).
pub fn per_listener_cap(wanted: usize) -> usize {
    cap_within(wanted, nofile_limit())
}

fn cap_within(wanted: usize, nofile: u64) -> usize {
    let nofile = usize::try_from(nofile).unwrap_or(usize::MAX);
    let share = nofile.saturating_sub(FD_RESERVE) / STREAM_LISTENERS;
    wanted.min(share).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r15_listeners_together_stay_below_the_descriptor_limit() {
        for nofile in [1024u64, 4096, 65_536, 1_048_576] {
            let cap = cap_within(10_000, nofile);
            assert!(
                cap * STREAM_LISTENERS + FD_RESERVE <= nofile as usize,
                "{nofile}"
            );
        }
        assert_eq!(
            cap_within(10_000, 1024),
            (1024 - FD_RESERVE) / STREAM_LISTENERS
        );
        assert_eq!(cap_within(10_000, 1_048_576), 10_000);
        assert_eq!(cap_within(10_000, 10), 1);
    }

    #[test]
    fn raising_keeps_or_lifts_the_soft_limit() {
        let before = nofile_limit();
        let after = raise_nofile_limit().unwrap();
        assert!(after >= before);
        assert_eq!(nofile_limit(), after);
    }
}
