//! WebDialer's checks of its parameters.

use super::model::{WebDialerParameters, MAX_WD_ANSWER_TIMEOUT_SECONDS};
use crate::config::validate::Diagnostics;
use crate::config::ClusterDefinition;
use crate::wire::yaml::Path;

pub fn check(d: &ClusterDefinition, diag: &mut Diagnostics) {
    let wd: WebDialerParameters = d.section();
    let wdp = Path::root().key("service_parameters").key("webdialer");
    if wd.user_session_expiry_hours > 168 {
        diag.err(
            wdp.key("user_session_expiry_hours"),
            "must be 0 (never) to 168 hours",
        );
    }
    if wd.max_concurrent_call_requests == 0 {
        diag.err(
            wdp.key("max_concurrent_call_requests"),
            "must be at least 1",
        );
    }
    // The longest makeCall may wait for the user's phone (a call request is held that long).
    if !(1..=MAX_WD_ANSWER_TIMEOUT_SECONDS).contains(&wd.answer_timeout_seconds) {
        diag.err(
            wdp.key("answer_timeout_seconds"),
            format!("must be 1 to {MAX_WD_ANSWER_TIMEOUT_SECONDS} seconds"),
        );
    }
    for (i, u) in wd.webdialers.iter().enumerate() {
        diag.url(wdp.key("webdialers").index(i), Some(u), false);
    }
}
