//! IP Phone Services' checks of its parameters.

use super::model::PhoneServicesParameters;
use crate::config::validate::Diagnostics;
use crate::config::ClusterDefinition;
use crate::wire::yaml::Path;

pub fn check(d: &ClusterDefinition, diag: &mut Diagnostics) {
    let ps: PhoneServicesParameters = d.section();
    if ps.auth_lockout_threshold > 0 && !(1..=1440).contains(&ps.auth_lockout_minutes) {
        diag.err(
            Path::root()
                .key("service_parameters")
                .key("phone_services")
                .key("auth_lockout_minutes"),
            "must be 1 to 1440 minutes while auth_lockout_threshold is set",
        );
    }
}
