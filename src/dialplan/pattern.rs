//! Cisco Unified CM dial-plan patterns: `X`, `!`, `[1-5]`, `[^0]`, `.`, `*`, `#`, `+`, `\+`.
//!
//! A pattern is parsed once into a list of elements; matching walks dialled digits against it.
//! Closest match (Cisco's "most specific" pattern) is decided by [`Pattern::specificity`]: the
//! number of digit strings of the matched length the pattern accepts, fewer being closer.

use std::fmt;

/// The characters a dialled string may contain.
pub const DIAL_CHARS: &str = "0123456789*#+ABCD";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Element {
    /// One literal character.
    Literal(char),
    /// A set of characters (`X`, `[...]`), stored as a bitmap over [`DIAL_CHARS`].
    Set(u32),
    /// `!`: one or more digits 0-9, `*` or `#`.
    OneOrMore,
}

/// A parsed Cisco pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    elements: Vec<Element>,
    /// Index into `elements` where the first `.` stood (PreDot discard), if any.
    dot: Option<usize>,
}

/// Why a pattern is not a pattern; `position` is a 0-based character index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pattern {pattern:?}: {reason} at position {position}")]
pub struct PatternError {
    pub pattern: String,
    pub position: usize,
    pub reason: &'static str,
}

/// Result of matching dialled digits against a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchResult {
    /// The digits match the whole pattern.
    Complete,
    /// More digits could still make it match (used for overlap / inter-digit timing).
    Potential,
    /// No number of further digits can match.
    NoMatch,
}

fn bit(c: char) -> Option<u32> {
    DIAL_CHARS.find(c).map(|i| 1u32 << i)
}

const DIGITS_0_9: u32 = 0x3ff;
const ONE_OR_MORE_SET: u32 = DIGITS_0_9 | (1 << 10) | (1 << 11); // 0-9 * #

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let err = |position, reason| PatternError {
            pattern: text.to_string(),
            position,
            reason,
        };
        if text.is_empty() {
            return Err(err(0, "empty pattern"));
        }
        if text.chars().count() > 50 {
            return Err(err(50, "longer than 50 characters"));
        }
        let chars: Vec<char> = text.chars().collect();
        let mut elements = Vec::new();
        let mut dot = None;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '0'..='9' | '*' | '#' | '+' | 'A'..='D' => elements.push(Element::Literal(c)),
                'X' | 'x' => elements.push(Element::Set(DIGITS_0_9)),
                '!' => {
                    if elements.last() == Some(&Element::OneOrMore) {
                        return Err(err(i, "two '!' in a row"));
                    }
                    elements.push(Element::OneOrMore)
                }
                '.' => {
                    if dot.is_some() {
                        return Err(err(i, "more than one '.'"));
                    }
                    dot = Some(elements.len());
                }
                '\\' => match chars.get(i + 1) {
                    Some('+') => {
                        elements.push(Element::Literal('+'));
                        i += 1;
                    }
                    _ => return Err(err(i, "'\\' must be followed by '+'")),
                },
                '[' => {
                    let start = i;
                    i += 1;
                    let negate = chars.get(i) == Some(&'^');
                    if negate {
                        i += 1;
                    }
                    let mut set = 0u32;
                    let mut any = false;
                    loop {
                        let Some(&c) = chars.get(i) else {
                            return Err(err(start, "unclosed '['"));
                        };
                        if c == ']' {
                            break;
                        }
                        let Some(b) = bit(c).filter(|_| c.is_ascii_digit() || c == '*' || c == '#')
                        else {
                            return Err(err(i, "only digits, '*' and '#' may stand in [ ]"));
                        };
                        if chars.get(i + 1) == Some(&'-') && chars.get(i + 2) != Some(&']') {
                            let Some(&end) = chars.get(i + 2) else {
                                return Err(err(start, "unclosed '['"));
                            };
                            if !c.is_ascii_digit() || !end.is_ascii_digit() || end < c {
                                return Err(err(
                                    i,
                                    "a range must go from a lower to a higher digit",
                                ));
                            }
                            for d in c..=end {
                                set |= bit(d).unwrap_or(0);
                            }
                            i += 3;
                        } else {
                            set |= b;
                            i += 1;
                        }
                        any = true;
                    }
                    if !any {
                        return Err(err(start, "empty [ ]"));
                    }
                    if negate {
                        set = ONE_OR_MORE_SET & !set;
                        if set == 0 {
                            return Err(err(start, "[^ ] excludes every digit"));
                        }
                    }
                    elements.push(Element::Set(set));
                }
                '@' => return Err(err(i, "'@' (national numbering plan) is not supported")),
                _ => return Err(err(i, "not a pattern character")),
            }
            i += 1;
        }
        if elements.is_empty() {
            return Err(err(0, "a pattern needs at least one digit or wildcard"));
        }
        Ok(Pattern {
            text: text.to_string(),
            elements,
            dot,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the pattern is a plain digit string (no wildcards): a directory number.
    pub fn is_literal(&self) -> bool {
        self.elements
            .iter()
            .all(|e| matches!(e, Element::Literal(_)))
    }

    /// Matches dialled digits. `!` is greedy-tolerant: it accepts one or more characters.
    pub fn matches(&self, dialled: &str) -> MatchResult {
        let digits: Vec<char> = dialled.chars().collect();
        // Positions in `elements` reachable after consuming k digits (NFA simulation; `!` loops).
        let n = self.elements.len();
        let mut states = vec![false; n + 1];
        states[0] = true;
        for &d in &digits {
            let mut next = vec![false; n + 1];
            for (pos, &on) in states.iter().enumerate() {
                if !on || pos == n {
                    continue;
                }
                match &self.elements[pos] {
                    Element::Literal(c) if *c == d => next[pos + 1] = true,
                    Element::Set(s) if bit(d).is_some_and(|b| s & b != 0) => next[pos + 1] = true,
                    Element::OneOrMore if bit(d).is_some_and(|b| ONE_OR_MORE_SET & b != 0) => {
                        next[pos + 1] = true;
                        next[pos] = true;
                    }
                    _ => {}
                }
            }
            states = next;
            if !states.iter().any(|&s| s) {
                return MatchResult::NoMatch;
            }
        }
        if states[n] {
            MatchResult::Complete
        } else {
            MatchResult::Potential
        }
    }

    /// Whether every string this pattern matches is also matched by `other` (`Some(true)`),
    /// none is (`Some(false)`), or some are and some are not (`None`). Decided exactly for
    /// fixed-length patterns; a pattern with `!` gives `None` unless both are the same text.
    pub fn coverage_by(&self, other: &Pattern) -> Option<bool> {
        if self.elements == other.elements {
            return Some(true);
        }
        let fixed = |p: &Pattern| !p.elements.contains(&Element::OneOrMore);
        if !fixed(self) || !fixed(other) {
            return None;
        }
        if self.elements.len() != other.elements.len() {
            return Some(false);
        }
        let set = |e: &Element| match e {
            Element::Literal(c) => bit(*c).unwrap_or(0),
            Element::Set(s) => *s,
            Element::OneOrMore => 0,
        };
        let (mut all, mut any) = (true, true);
        for (a, b) in self.elements.iter().zip(&other.elements) {
            let (a, b) = (set(a), set(b));
            if a & b == 0 {
                any = false;
            }
            if a & !b != 0 {
                all = false;
            }
        }
        if !any {
            Some(false)
        } else if all {
            Some(true)
        } else {
            None
        }
    }

    /// How many strings of `len` characters this pattern accepts; lower is more specific.
    /// A pattern with `!` counts as unbounded (`u128::MAX`), so it loses to any fixed pattern.
    pub fn specificity(&self) -> u128 {
        let mut total: u128 = 1;
        for e in &self.elements {
            match e {
                Element::Literal(_) => {}
                Element::Set(s) => total = total.saturating_mul(u128::from(s.count_ones())),
                Element::OneOrMore => return u128::MAX,
            }
        }
        total
    }

    /// The digits left after PreDot discard: everything the elements before the `.` matched
    /// is dropped. Returns `None` when the pattern has no dot or the digits do not match.
    pub fn discard_pre_dot(&self, dialled: &str) -> Option<String> {
        let dot = self.dot?;
        let prefix = Pattern {
            text: String::new(),
            elements: self.elements[..dot].to_vec(),
            dot: None,
        };
        // Fixed-length prefix only (no `!` before the dot), as Cisco requires in practice.
        if prefix.elements.contains(&Element::OneOrMore) {
            return None;
        }
        let cut = prefix.elements.len();
        let head: String = dialled.chars().take(cut).collect();
        if prefix.matches(&head) != MatchResult::Complete {
            return None;
        }
        Some(dialled.chars().skip(cut).collect())
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Applies a Cisco transformation mask: mask characters `X` let the dialled digit through,
/// anything else replaces it; a mask longer than the number prefixes its extra leading chars.
pub fn apply_mask(mask: &str, digits: &str) -> String {
    let m: Vec<char> = mask.chars().collect();
    let d: Vec<char> = digits.chars().collect();
    if m.is_empty() {
        return digits.to_string();
    }
    let mut out: Vec<char> = Vec::with_capacity(m.len().max(d.len()));
    if d.len() > m.len() {
        out.extend(&d[..d.len() - m.len()]);
    }
    let offset = m.len() as isize - d.len() as isize;
    for (i, &mc) in m.iter().enumerate() {
        let di = i as isize - offset;
        if mc == 'X' || mc == 'x' {
            if di >= 0 {
                out.push(d[di as usize]);
            }
        } else {
            out.push(mc);
        }
    }
    out.into_iter().collect()
}

/// Checks a transformation mask or prefix: digits, `X`, `*`, `#`, `+`.
pub fn validate_mask(mask: &str) -> Result<(), PatternError> {
    for (i, c) in mask.chars().enumerate() {
        if !(c.is_ascii_digit() || matches!(c, 'X' | 'x' | '*' | '#' | '+')) {
            return Err(PatternError {
                pattern: mask.to_string(),
                position: i,
                reason: "a mask holds only digits, X, *, # and +",
            });
        }
    }
    Ok(())
}

/// Checks a dialled destination (call forward target, speed dial): `0-9 * # + A-D`.
pub fn validate_digits(s: &str) -> Result<(), PatternError> {
    if s.is_empty() {
        return Err(PatternError {
            pattern: String::new(),
            position: 0,
            reason: "empty number",
        });
    }
    for (i, c) in s.chars().enumerate() {
        if !DIAL_CHARS.contains(c) {
            return Err(PatternError {
                pattern: s.to_string(),
                position: i,
                reason: "a number holds only 0-9, *, #, + and A-D",
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn literals_and_wildcards() {
        assert_eq!(p("10001").matches("10001"), MatchResult::Complete);
        assert_eq!(p("10001").matches("1000"), MatchResult::Potential);
        assert_eq!(p("10001").matches("10002"), MatchResult::NoMatch);
        assert_eq!(p("1XXXX").matches("12345"), MatchResult::Complete);
        assert_eq!(p("9.!").matches("9"), MatchResult::Potential);
        assert_eq!(p("9.!").matches("914085551234"), MatchResult::Complete);
        assert_eq!(p("[2-4]XX").matches("350"), MatchResult::Complete);
        assert_eq!(p("[2-4]XX").matches("550"), MatchResult::NoMatch);
        assert_eq!(p("[^0]XX").matches("050"), MatchResult::NoMatch);
        assert_eq!(p("\\+1XXX").matches("+1234"), MatchResult::Complete);
        assert_eq!(p("*XX").matches("*12"), MatchResult::Complete);
    }

    #[test]
    fn closest_match_ordering() {
        assert!(p("1000").specificity() < p("100X").specificity());
        assert!(p("100X").specificity() < p("10XX").specificity());
        assert!(p("10[0-4]X").specificity() < p("10XX").specificity());
        assert!(p("10XX").specificity() < p("1!").specificity());
    }

    #[test]
    fn bad_patterns_name_the_position() {
        let e = Pattern::parse("10a01").unwrap_err();
        assert_eq!(e.position, 2);
        assert!(Pattern::parse("").is_err());
        assert!(Pattern::parse("1[23").is_err());
        assert!(Pattern::parse("1[5-2]").is_err());
        assert!(Pattern::parse("9..1").is_err());
        assert!(Pattern::parse("!!").is_err());
        assert!(Pattern::parse(".").is_err());
    }

    #[test]
    fn pre_dot_and_masks() {
        assert_eq!(
            p("9.1XXX").discard_pre_dot("91234").as_deref(),
            Some("1234")
        );
        assert_eq!(apply_mask("4085551XXX", "1234"), "4085551234");
        assert_eq!(apply_mask("XXXX", "51234"), "51234");
        assert_eq!(apply_mask("", "123"), "123");
        assert!(validate_mask("+1408XXX").is_ok());
        assert!(validate_mask("1-2").is_err());
        assert!(validate_digits("9#*+1").is_ok());
        assert!(validate_digits("12e").is_err());
    }

    #[test]
    fn r18_coverage_of_one_pattern_by_another() {
        let p = |t: &str| Pattern::parse(t).unwrap();
        assert_eq!(p("6XXXX").coverage_by(&p("6XXXX")), Some(true));
        assert_eq!(p("60001").coverage_by(&p("6XXXX")), Some(true));
        assert_eq!(p("6[0-4]XXX").coverage_by(&p("6XXXX")), Some(true));
        assert_eq!(p("6XXXX").coverage_by(&p("7XXXX")), Some(false));
        assert_eq!(p("6XXXX").coverage_by(&p("6XXX")), Some(false));
        assert_eq!(p("6XXXX").coverage_by(&p("60XXX")), None);
        assert_eq!(p("6!").coverage_by(&p("6XXXX")), None);
        assert_eq!(p("6!").coverage_by(&p("6!")), Some(true));
    }
}
