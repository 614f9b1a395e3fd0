//! The dial plan: directory numbers, route and translation patterns (one namespace per
//! partition), and the called-party transformations.

use std::collections::{HashMap, HashSet};

use super::{Checker, DnKey, Names};
use crate::config::model::DiscardDigits;
use crate::dialplan::pattern::{validate_digits, validate_mask, Pattern};
use crate::wire::yaml::Path;

impl Checker<'_> {
    pub(super) fn patterns(&mut self, n: &Names) {
        let d = self.def;
        let root = Path::root();
        // Patterns share one namespace per partition: DNs, route and translation patterns.
        let mut pattern_owner: HashMap<DnKey, String> = HashMap::new();
        let mut claim = |c: &mut Self, key: DnKey, path: Path| {
            let label = path.to_string();
            if let Some(first) = pattern_owner.get(&key) {
                c.err(
                    path,
                    format!(
                        "pattern {:?} in partition {} is already defined at {first}",
                        key.0,
                        key.1
                            .as_deref()
                            .map_or("<None>".to_string(), |p| format!("{p:?}"))
                    ),
                );
            } else {
                pattern_owner.insert(key, label);
            }
        };
        // Directory numbers claim their patterns first: a route or translation pattern that
        // collides with a DN is the one reported.
        for (i, dn) in d.directory_numbers.iter().enumerate() {
            let p = root.key("directory_numbers").index(i).key("pattern");
            claim(self, (dn.pattern.clone(), dn.partition.clone()), p);
        }
        for (i, rp) in d.route_patterns.iter().enumerate() {
            let p = root.key("route_patterns").index(i);
            self.pattern(p.key("pattern"), &rp.pattern);
            self.refers(
                p.key("partition"),
                rp.partition.as_deref(),
                &n.partitions,
                "partition",
            );
            let targets =
                usize::from(rp.route_list.is_some()) + usize::from(rp.sip_trunk.is_some());
            if rp.block && targets > 0 {
                self.err(
                    p.clone(),
                    "a blocking route pattern has no route list or trunk",
                );
            } else if !rp.block && targets != 1 {
                self.err(
                    p.clone(),
                    "a route pattern needs exactly one of route_list or sip_trunk (or block: true)",
                );
            }
            self.refers(
                p.key("route_list"),
                rp.route_list.as_deref(),
                &n.lists,
                "route list",
            );
            self.refers(
                p.key("sip_trunk"),
                rp.sip_trunk.as_deref(),
                &n.trunks,
                "SIP trunk",
            );
            self.masks(&p, &rp.called_party_transform_mask, &rp.prefix_digits);
            self.dot(&p, &rp.pattern, rp.discard_digits);
            claim(
                self,
                (rp.pattern.clone(), rp.partition.clone()),
                p.key("pattern"),
            );
        }
        for (i, tp) in d.translation_patterns.iter().enumerate() {
            let p = root.key("translation_patterns").index(i);
            self.pattern(p.key("pattern"), &tp.pattern);
            self.refers(
                p.key("partition"),
                tp.partition.as_deref(),
                &n.partitions,
                "partition",
            );
            self.refers(
                p.key("css"),
                tp.css.as_deref(),
                &n.css,
                "calling search space",
            );
            self.masks(&p, &tp.called_party_transform_mask, &tp.prefix_digits);
            self.dot(&p, &tp.pattern, tp.discard_digits);
            claim(
                self,
                (tp.pattern.clone(), tp.partition.clone()),
                p.key("pattern"),
            );
        }
    }

    pub(super) fn directory_numbers(&mut self, n: &Names) -> HashSet<DnKey> {
        let d = self.def;
        let root = Path::root();
        let mut dn_keys: HashSet<DnKey> = HashSet::new();
        for (i, dn) in d.directory_numbers.iter().enumerate() {
            let p = root.key("directory_numbers").index(i);
            self.pattern(p.key("pattern"), &dn.pattern);
            self.refers(
                p.key("partition"),
                dn.partition.as_deref(),
                &n.partitions,
                "partition",
            );
            self.refers(
                p.key("css"),
                dn.css.as_deref(),
                &n.css,
                "calling search space",
            );
            let cf = &dn.call_forward;
            for (name, f) in [
                ("all", &cf.all),
                ("busy", &cf.busy),
                ("no_answer", &cf.no_answer),
                ("unregistered", &cf.unregistered),
            ] {
                let Some(f) = f else { continue };
                let fp = p.key("call_forward").key(name);
                if let Some(dest) = &f.destination {
                    self.forward_destination(fp.key("destination"), &dn.pattern, dest);
                }
                self.refers(
                    fp.key("css"),
                    f.css.as_deref(),
                    &n.css,
                    "calling search space",
                );
            }
            if dn.max_calls == 0 || dn.max_calls > 200 {
                self.err(p.key("max_calls"), "max_calls must be 1 to 200");
            }
            if dn.busy_trigger == 0 || dn.busy_trigger > dn.max_calls {
                self.err(
                    p.key("busy_trigger"),
                    format!("busy_trigger must be 1 to max_calls ({})", dn.max_calls),
                );
            }
            if dn.no_answer_timer.is_some_and(|t| t == 0 || t > 300) {
                self.err(
                    p.key("no_answer_timer"),
                    "no_answer_timer must be 1 to 300 seconds",
                );
            }
            dn_keys.insert((dn.pattern.clone(), dn.partition.clone()));
        }

        dn_keys
    }

    /// A forward goes to a number, or to a pattern meaning the number that reached the line
    /// (re-analysed with the forward's CSS: the Assistant route point's fall-through). A
    /// pattern that can match none of the line's numbers is refused here; one that matches
    /// only some of them refuses the others at call time (404).
    fn forward_destination(&mut self, path: Path, line: &str, dest: &str) {
        if validate_digits(dest).is_ok() {
            return;
        }
        let fwd = match Pattern::parse(dest) {
            Ok(p) => p,
            Err(e) => {
                self.err(path, format!("not a number or pattern: {e}"));
                return;
            }
        };
        let Ok(own) = Pattern::parse(line) else {
            return; // the line's own pattern is reported where it stands
        };
        if own.coverage_by(&fwd) == Some(false) {
            self.err(
                path,
                format!(
                    "forward pattern {dest:?} matches no number of the line {line:?} (a pattern forwards the number that was dialled)"
                ),
            );
        }
    }

    pub(super) fn unused_directory_numbers(&mut self, used: &HashSet<DnKey>) {
        let d = self.def;
        let root = Path::root();
        for (i, dn) in d.directory_numbers.iter().enumerate() {
            if !dn.unassigned && !used.contains(&(dn.pattern.clone(), dn.partition.clone())) {
                self.err(
                    root.key("directory_numbers").index(i).key("pattern"),
                    format!(
                        "directory number {:?} is on no device, device profile or route point",
                        dn.pattern
                    ),
                );
            }
        }
    }

    fn masks(&mut self, p: &Path, mask: &Option<String>, prefix: &Option<String>) {
        for (name, v) in [
            ("called_party_transform_mask", mask),
            ("prefix_digits", prefix),
        ] {
            if let Some(m) = v {
                if let Err(e) = validate_mask(m) {
                    self.err(p.key(name), format!("{e}"));
                }
            }
        }
    }

    fn dot(&mut self, p: &Path, pattern: &str, discard: Option<DiscardDigits>) {
        if discard == Some(DiscardDigits::PreDot) && !pattern.contains('.') {
            self.err(
                p.key("discard_digits"),
                "pre-dot discard needs a '.' in the pattern",
            );
        }
    }
}
