//! Golden ladders: a capture's normalised ladder ([`super::ladder::Ladder::normalised`])
//! compared with a stored one, differences shown as a unified diff.
//!
//! A golden is `ladder.txt`: one normalised ladder line per line; lines starting with `#` and
//! blank lines are comments. `--golden` takes the file itself, or a directory holding
//! `ladder.txt`, or a directory of scenarios where `<capture file stem>/ladder.txt` is used.

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
