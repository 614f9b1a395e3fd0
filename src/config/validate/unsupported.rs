//! Settings the definition accepts but ucm does not act on yet: refused with "not supported
//! yet", naming the field, rather than accepted and silently ignored.

use super::Checker;
use crate::config::model::SecurityMode;
use crate::wire::yaml::Path;

/// The Unified CM version ucm presents: its files and interfaces follow this release.
pub const SUPPORTED_VERSION: &str = "14.0";
/// The lowest region audio bit rate (kbit/s) ucm honours: every codec it offers (G.711,
/// 64 kbit/s) fits. A lower rate would call for G.729 or a transcoder between regions.
pub const MIN_REGION_AUDIO_BIT_RATE: u32 = 64;

impl Checker<'_> {
    pub(super) fn unsupported(&mut self) {
        let d = self.def;
        let root = Path::root();
        if d.cluster.version.trim() != SUPPORTED_VERSION {
            self.err(
                root.key("cluster").key("version"),
                format!(
                    "Unified CM version {:?} is not supported yet: ucm presents {SUPPORTED_VERSION} only",
                    d.cluster.version
                ),
            );
        }
        if d.cluster.security_mode != SecurityMode::NonSecure {
            self.err(
                root.key("cluster").key("security_mode"),
                "mixed mode is not supported yet (no CTL/ITL files, no CAPF): use non-secure",
            );
        }
        for (i, r) in d.regions.iter().enumerate() {
            if r.max_audio_bit_rate < MIN_REGION_AUDIO_BIT_RATE {
                self.err(
                    root.key("regions").index(i).key("max_audio_bit_rate"),
                    format!(
                        "{} kbit/s is not supported yet: ucm offers G.711 only, which needs \
                         {MIN_REGION_AUDIO_BIT_RATE}",
                        r.max_audio_bit_rate
                    ),
                );
            }
        }
        for (i, p) in d.device_pools.iter().enumerate() {
            if p.srst_reference.is_some() {
                self.err(
                    root.key("device_pools").index(i).key("srst_reference"),
                    "SRST references are not supported yet (phones are given no SRST gateway)",
                );
            }
        }
    }
}
