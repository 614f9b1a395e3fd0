//! Golden ladders: a capture's normalised ladder ([`super::ladder::Ladder::normalised`])
//! compared with a stored one, differences shown as a unified diff.
//!
//! A golden is `ladder.txt`: one normalised ladder line per line; lines starting with `#` and
//! blank lines are comments. `--golden` takes the file itself, or a directory holding
//! `ladder.txt`, or a directory of scenarios where `<capture file stem>/ladder.txt` is used.
//!
//! Signalling and HTTP lines must come in the golden's order. An RTP stream's line may stand
//! anywhere ([`equivalent`]): a stream's first packet races with the signalling sent at the
//! same moment (the callee starts sending as it answers, while the 200 OK is still on its way
//! through the B2BUA, and the caller's ACK and first packet leave together), so its position
//! varies from run to run; which streams there are must still match.

use std::path::{Path, PathBuf};

/// Where the golden of `capture` is, given `--golden`'s argument.
pub fn locate(golden: &Path, capture: &Path) -> PathBuf {
    if golden.is_dir() {
        let direct = golden.join("ladder.txt");
        if direct.is_file() {
            return direct;
        }
        let stem = capture
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        return golden.join(stem).join("ladder.txt");
    }
    golden.to_path_buf()
}

/// The ladder lines of a golden file (comments and blank lines dropped).
pub fn lines_of(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_end())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// How close in time (seconds) two ladder lines of different conversations must be for their
/// order not to count: events that close are concurrent (two requests a UA sends at once, the
/// answers to them), so the order they reach the wire in varies from run to run.
pub const CONCURRENT_WINDOW: f64 = 0.05;

/// Whether a capture's ladder (`actual`: each line's text and its time in seconds) matches the
/// golden:
/// - the same RTP lines (as a multiset), wherever they stand;
/// - the same other lines, in the golden's order, except that lines of different
///   conversations (SIP calls, HTTP between two roles) less than [`CONCURRENT_WINDOW`] apart
///   may come in either order. Within a conversation the order always counts.
pub fn equivalent(expected: &[String], actual: &[(String, f64)]) -> bool {
    if expected.len() == actual.len() && expected.iter().zip(actual).all(|(e, a)| *e == a.0) {
        return true;
    }
    let mut rtp_e: Vec<&str> = expected
        .iter()
        .map(String::as_str)
        .filter(|l| is_rtp(l))
        .collect();
    let mut rtp_a: Vec<&str> = actual
        .iter()
        .map(|(l, _)| l.as_str())
        .filter(|l| is_rtp(l))
        .collect();
    rtp_e.sort_unstable();
    rtp_a.sort_unstable();
    if rtp_e != rtp_a {
        return false;
    }
    let exp: Vec<&str> = expected
        .iter()
        .map(String::as_str)
        .filter(|l| !is_rtp(l))
        .collect();
    let act: Vec<(&str, f64)> = actual
        .iter()
        .filter(|(l, _)| !is_rtp(l))
        .map(|(l, t)| (l.as_str(), *t))
        .collect();
    if exp.len() != act.len() {
        return false;
    }
    // Blocks of concurrent lines in the capture; each must be a reordering of the golden's
    // lines at the same place that keeps every conversation's order.
    let mut start = 0;
    while start < act.len() {
        let mut end = start + 1;
        while end < act.len() && act[end].1 - act[end - 1].1 <= CONCURRENT_WINDOW {
            end += 1;
        }
        let a: Vec<&str> = act[start..end].iter().map(|x| x.0).collect();
        let e = &exp[start..end];
        if a != e && !same_per_conversation(e, &a) {
            return false;
        }
        start = end;
    }
    true
}

/// The same lines, and in each conversation the same order.
fn same_per_conversation(e: &[&str], a: &[&str]) -> bool {
    let mut se = e.to_vec();
    let mut sa = a.to_vec();
    se.sort_unstable();
    sa.sort_unstable();
    if se != sa {
        return false;
    }
    let convs: std::collections::BTreeSet<String> = e.iter().map(|l| conversation(l)).collect();
    convs.iter().all(|c| {
        e.iter()
            .filter(|l| &conversation(l) == c)
            .eq(a.iter().filter(|l| &conversation(l) == c))
    })
}

/// The conversation a ladder line belongs to: its SIP call (`call 3`), or for HTTP the two
/// roles, whichever way; any other line is its own.
fn conversation(line: &str) -> String {
    if let Some(i) = line.find("(call ") {
        let n: String = line[i + 6..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        return format!("call {n}");
    }
    if let Some((roles, what)) = line.split_once(": ") {
        if what.starts_with("HTTP ") {
            let mut r: Vec<&str> = roles.split(" -> ").collect();
            r.sort_unstable();
            return format!("http {}", r.join(" "));
        }
    }
    line.to_string()
}

/// An RTP stream's line (`A -> B: RTP PT 0 ptime 20ms`).
fn is_rtp(line: &str) -> bool {
    line.split_once(": ")
        .is_some_and(|(_, rest)| rest.starts_with("RTP "))
}

/// A unified diff (`--- golden`, `+++ capture`, `@@` hunks with 3 lines of context) of two
/// line lists; empty when they are equal.
pub fn unified_diff(
    expected: &[String],
    actual: &[String],
    expected_name: &str,
    actual_name: &str,
) -> Vec<String> {
    if expected == actual {
        return Vec::new();
    }
    let ops = edit_script(expected, actual);
    let mut out = vec![format!("--- {expected_name}"), format!("+++ {actual_name}")];
    const CONTEXT: usize = 3;
    // Indices of ops that are changes.
    let changes: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, Op::Same(..)))
        .map(|(i, _)| i)
        .collect();
    let mut k = 0;
    while k < changes.len() {
        let start = changes[k].saturating_sub(CONTEXT);
        let mut end = (changes[k] + CONTEXT + 1).min(ops.len());
        let mut j = k + 1;
        while j < changes.len() && changes[j] <= end + CONTEXT {
            end = (changes[j] + CONTEXT + 1).min(ops.len());
            j += 1;
        }
        // Line numbers at the hunk's start.
        let (mut a0, mut b0) = (1usize, 1usize);
        for o in &ops[..start] {
            match o {
                Op::Same(..) => {
                    a0 += 1;
                    b0 += 1;
                }
                Op::Del(_) => a0 += 1,
                Op::Add(_) => b0 += 1,
            }
        }
        let (mut an, mut bn) = (0usize, 0usize);
        let mut body = Vec::new();
        for o in &ops[start..end] {
            match o {
                Op::Same(a, _) => {
                    an += 1;
                    bn += 1;
                    body.push(format!(" {}", expected[*a]));
                }
                Op::Del(a) => {
                    an += 1;
                    body.push(format!("-{}", expected[*a]));
                }
                Op::Add(b) => {
                    bn += 1;
                    body.push(format!("+{}", actual[*b]));
                }
            }
        }
        let a_start = if an == 0 { a0 - 1 } else { a0 };
        let b_start = if bn == 0 { b0 - 1 } else { b0 };
        out.push(format!("@@ -{a_start},{an} +{b_start},{bn} @@"));
        out.extend(body);
        k = j;
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Same(usize, usize),
    Del(usize),
    Add(usize),
}

/// Longest-common-subsequence edit script; beyond 25 million cells, common prefix and suffix
/// are kept and the middle is shown as deleted then added.
fn edit_script(a: &[String], b: &[String]) -> Vec<Op> {
    let pre = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suf = a[pre..]
        .iter()
        .rev()
        .zip(b[pre..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[pre..a.len() - suf], &b[pre..b.len() - suf]);
    let mut ops: Vec<Op> = (0..pre).map(|i| Op::Same(i, i)).collect();
    let (n, m) = (am.len(), bm.len());
    if n.saturating_mul(m) > 25_000_000 {
        ops.extend((0..n).map(|i| Op::Del(pre + i)));
        ops.extend((0..m).map(|j| Op::Add(pre + j)));
    } else {
        // lcs[i][j]: LCS length of am[i..] and bm[j..].
        let mut lcs = vec![0u32; (n + 1) * (m + 1)];
        let at = |i: usize, j: usize| i * (m + 1) + j;
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[at(i, j)] = if am[i] == bm[j] {
                    lcs[at(i + 1, j + 1)] + 1
                } else {
                    lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n || j < m {
            if i < n && j < m && am[i] == bm[j] {
                ops.push(Op::Same(pre + i, pre + j));
                i += 1;
                j += 1;
            } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
                ops.push(Op::Del(pre + i));
                i += 1;
            } else {
                ops.push(Op::Add(pre + j));
                j += 1;
            }
        }
    }
    let (ea, eb) = (a.len() - suf, b.len() - suf);
    ops.extend((0..suf).map(|k| Op::Same(ea + k, eb + k)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    /// Lines 1 s apart (nothing concurrent).
    fn apart(s: &[&str]) -> Vec<(String, f64)> {
        s.iter()
            .enumerate()
            .map(|(i, x)| (x.to_string(), i as f64))
            .collect()
    }

    #[test]
    fn rtp_lines_may_move_but_not_change() {
        let g = v(&[
            "A -> B: INVITE (call 1, cseq 1)",
            "B -> A: 200 INVITE (call 1, cseq 1)",
            "B -> A: RTP PT 0",
            "A -> B: ACK (call 1, cseq 1)",
            "A -> B: RTP PT 0",
        ]);
        let moved = apart(&[
            "A -> B: INVITE (call 1, cseq 1)",
            "B -> A: RTP PT 0",
            "B -> A: 200 INVITE (call 1, cseq 1)",
            "A -> B: RTP PT 0",
            "A -> B: ACK (call 1, cseq 1)",
        ]);
        assert!(equivalent(&g, &moved));
        let other_pt = apart(&[
            "A -> B: INVITE (call 1, cseq 1)",
            "B -> A: 200 INVITE (call 1, cseq 1)",
            "B -> A: RTP PT 8",
            "A -> B: ACK (call 1, cseq 1)",
            "A -> B: RTP PT 0",
        ]);
        assert!(!equivalent(&g, &other_pt));
        let missing = apart(&[
            "A -> B: INVITE (call 1, cseq 1)",
            "B -> A: 200 INVITE (call 1, cseq 1)",
            "A -> B: ACK (call 1, cseq 1)",
            "A -> B: RTP PT 0",
        ]);
        assert!(!equivalent(&g, &missing));
        let swapped = apart(&[
            "B -> A: 200 INVITE (call 1, cseq 1)",
            "A -> B: INVITE (call 1, cseq 1)",
            "B -> A: RTP PT 0",
            "A -> B: ACK (call 1, cseq 1)",
            "A -> B: RTP PT 0",
        ]);
        assert!(!equivalent(&g, &swapped));
    }

    #[test]
    fn concurrent_lines_of_different_calls_may_swap() {
        let g = v(&[
            "A -> B: REGISTER (call 1, cseq 2)",
            "B -> A: 403 REGISTER (call 1 leg 2, cseq 2)",
            "A -> B: REGISTER (call 3, cseq 1)",
            "B -> A: 200 REGISTER (call 3 leg 1, cseq 1)",
        ]);
        let t = |s: &[(&str, f64)]| -> Vec<(String, f64)> {
            s.iter().map(|(x, t)| (x.to_string(), *t)).collect()
        };
        // Sent at once, answered in the other order: fine.
        let raced = t(&[
            ("A -> B: REGISTER (call 1, cseq 2)", 1.000),
            ("A -> B: REGISTER (call 3, cseq 1)", 1.001),
            ("B -> A: 403 REGISTER (call 1 leg 2, cseq 2)", 1.002),
            ("B -> A: 200 REGISTER (call 3 leg 1, cseq 1)", 1.003),
        ]);
        assert!(equivalent(&g, &raced));
        // The same order a second apart: the second call really came first.
        let late = t(&[
            ("A -> B: REGISTER (call 1, cseq 2)", 1.0),
            ("A -> B: REGISTER (call 3, cseq 1)", 2.0),
            ("B -> A: 403 REGISTER (call 1 leg 2, cseq 2)", 3.0),
            ("B -> A: 200 REGISTER (call 3 leg 1, cseq 1)", 4.0),
        ]);
        assert!(!equivalent(&g, &late));
        // Within one call the order always counts, however close.
        let g2 = v(&[
            "A -> B: INVITE (call 1, cseq 1)",
            "B -> A: 100 INVITE (call 1, cseq 1)",
        ]);
        let rev = t(&[
            ("B -> A: 100 INVITE (call 1, cseq 1)", 1.0),
            ("A -> B: INVITE (call 1, cseq 1)", 1.001),
        ]);
        assert!(!equivalent(&g2, &rev));
        assert_eq!(
            conversation("B -> A: 403 REGISTER (call 12 leg 2, cseq 2)"),
            "call 12"
        );
        assert_eq!(conversation("A -> B: REGISTER (call 3, cseq 1)"), "call 3");
        assert_eq!(
            conversation("B -> A: HTTP POST /x 200"),
            conversation("A -> B: HTTP GET /y 200")
        );
    }

    #[test]
    fn equal_is_empty() {
        assert!(unified_diff(&v(&["a", "b"]), &v(&["a", "b"]), "g", "c").is_empty());
    }

    #[test]
    fn one_change() {
        let d = unified_diff(
            &v(&["1", "2", "3", "4", "5", "6", "7", "8"]),
            &v(&["1", "2", "3", "4", "X", "6", "7", "8"]),
            "golden",
            "capture",
        );
        assert_eq!(
            d,
            v(&[
                "--- golden",
                "+++ capture",
                "@@ -2,7 +2,7 @@",
                " 2",
                " 3",
                " 4",
                "-5",
                "+X",
                " 6",
                " 7",
                " 8"
            ])
        );
    }

    #[test]
    fn insertions_and_comments() {
        let g = lines_of("# made by hand\n\na\nb\n");
        let d = unified_diff(&g, &v(&["a", "b", "c"]), "g", "c");
        assert_eq!(d[2], "@@ -1,2 +1,3 @@");
        assert_eq!(d.last().unwrap(), "+c");
    }
}
