//! The seed's sizing rules for the attendant console server ("Design Considerations for
//! Attendant Consoles"), checked against a definition and expected or measured peaks (no I/O):
//! - CT gateway devices: one per call waiting at the peak of incoming calls;
//! - service queues: 3 to 4 per attendant (at least 3), and one per call being transferred or
//!   held at the peak;
//! - call park devices: one per call parked at the peak;
//! - every Queue DDI, CT gateway device, service queue and park device is a CTI device of the
//!   cluster (it counts toward the CTI limits; reported, not judged).
//!
//! A rule whose peak is unknown (neither in `attendant.peaks` nor given) is reported as not
//! checked, never as passed.

use serde::Serialize;

use super::model::{Attendant, Peaks};

/// One rule's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// `ct_gateway_devices`, `service_queues_per_attendant`, `service_queues`,
    /// `park_devices`, `cti_devices`.
    pub rule: &'static str,
    /// What the definition has.
    pub have: usize,
    /// What the rule needs; `None` when it could not be judged (no peak).
    pub need: Option<usize>,
    /// `ok`, `short` (fails the check) or `unchecked`/`info`.
    pub verdict: &'static str,
    pub note: String,
}

/// The peaks to judge with: those given, else the definition's.
pub fn peaks(def: &Peaks, given: &Peaks) -> Peaks {
    Peaks {
        incoming_calls: given.incoming_calls.or(def.incoming_calls),
        transfers_and_holds: given.transfers_and_holds.or(def.transfers_and_holds),
        parked_calls: given.parked_calls.or(def.parked_calls),
    }
}

fn judged(rule: &'static str, have: usize, need: Option<usize>, what: &str) -> Rule {
    match need {
        None => Rule {
            rule,
            have,
            need: None,
            verdict: "unchecked",
            note: format!("{have} {what}; no peak given (attendant.peaks or the flags)"),
        },
        Some(n) if have >= n => Rule {
            rule,
            have,
            need: Some(n),
            verdict: "ok",
            note: format!("{have} {what} for a peak of {n}"),
        },
        Some(n) => Rule {
            rule,
            have,
            need: Some(n),
            verdict: "short",
            note: format!("{have} {what} for a peak of {n}: {} more needed", n - have),
        },
    }
}

/// Every rule, in the order above.
pub fn check(a: &Attendant, given: &Peaks) -> Vec<Rule> {
    let p = peaks(&a.peaks, given);
    let mut rules = vec![judged(
        "ct_gateway_devices",
        a.ct_gateway_devices.len(),
        p.incoming_calls,
        "CT gateway devices",
    )];
    let attendants = a.attendants.len();
    let sq = a.service_queues.len();
    let need = 3 * attendants;
    rules.push(Rule {
        rule: "service_queues_per_attendant",
        have: sq,
        need: Some(need),
        verdict: if sq >= need { "ok" } else { "short" },
        note: format!(
            "{sq} service queues for {attendants} attendants (the seed: 3 or 4 per attendant, so at least {need})"
        ),
    });
    rules.push(judged(
        "service_queues",
        sq,
        p.transfers_and_holds,
        "service queues",
    ));
    rules.push(judged(
        "park_devices",
        a.park_devices.len(),
        p.parked_calls,
        "call park devices",
    ));
    let cti = a.queues.len() + a.ct_gateway_devices.len() + sq + a.park_devices.len();
    rules.push(Rule {
        rule: "cti_devices",
        have: cti,
        need: None,
        verdict: "info",
        note: format!(
            "{cti} CTI devices (Queue DDIs, CT gateway devices, service queues, park devices) count toward the cluster's CTI limits"
        ),
    });
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_follow_the_seed_and_unknown_peaks_are_not_passed() {
        let mut a = Attendant {
            ct_gateway_devices: vec!["a".into(), "b".into()],
            service_queues: (0..5).map(|i| i.to_string()).collect(),
            park_devices: vec!["p".into()],
            ..Attendant::default()
        };
        a.attendants = (0..2)
            .map(|i| super::super::model::AttendantUser {
                user: format!("u{i}"),
                device: "d".into(),
                line: "1".into(),
            })
            .collect();
        let r = check(&a, &Peaks::default());
        let v: Vec<_> = r.iter().map(|r| (r.rule, r.verdict)).collect();
        assert_eq!(
            v,
            [
                ("ct_gateway_devices", "unchecked"),
                ("service_queues_per_attendant", "short"),
                ("service_queues", "unchecked"),
                ("park_devices", "unchecked"),
                ("cti_devices", "info"),
            ]
        );
        a.peaks.incoming_calls = Some(2);
        let given = Peaks {
            incoming_calls: Some(3),
            transfers_and_holds: Some(5),
            parked_calls: Some(1),
        };
        let r = check(&a, &given);
        assert_eq!((r[0].verdict, r[0].need), ("short", Some(3)), "given wins");
        assert_eq!(r[2].verdict, "ok");
        assert_eq!(r[3].verdict, "ok");
        let r = check(&a, &Peaks::default());
        assert_eq!(r[0].verdict, "ok", "the definition's peak");
    }
}
