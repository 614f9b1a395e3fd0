//! README's examples, run as written: the fenced `sh` blocks under a heading, each line a
//! command, in network and PID namespaces of their own (the demo binds the standard ports, and
//! each simulated phone serves HTTP on port 80 of its address). The modules' `r…_readme_…`
//! tests say which block and what its output must show.

use std::process::Command;

use crate::common::{have, is_root, skip_or_fail};

/// The fenced `sh` blocks of README.md that follow the line containing `after` (up to `count`
/// blocks), continuation lines joined, comment-only lines dropped.
pub fn sh_blocks(after: &str, count: usize) -> Vec<String> {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .expect("README.md");
    let start = readme
        .find(after)
        .unwrap_or_else(|| panic!("README.md has no {after:?}"));
    let mut out = Vec::new();
    let mut rest = &readme[start..];
    while out.len() < count {
        let Some(i) = rest.find("```sh\n") else { break };
        let body = &rest[i + 6..];
        let end = body.find("```").expect("unclosed block");
        let joined = body[..end].replace("\\\n", " ");
        let lines: Vec<&str> = joined
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .collect();
        out.push(lines.join("\n"));
        rest = &body[end + 3..];
    }
    out
}

/// Runs the first `sh` block after `heading` as written (`lines` commands; see [`run`]).
pub fn run_example(heading: &str, lines: usize, expect: &[(usize, &str)]) {
    let blocks = sh_blocks(heading, 1);
    assert_eq!(blocks.len(), 1, "README has a sh block after {heading:?}");
    let cmds: Vec<&str> = blocks[0].lines().collect();
    assert_eq!(cmds.len(), lines, "{cmds:?}");
    run(heading, &[], &cmds, &[], expect, "");
}

/// Runs `cmds` (README lines, numbered from 0) in namespaces of their own, in a directory
/// holding `files` (name, content): a `ucm serve … &` line waits for the node's health, another
/// `… &` line for its ready line, every other line must succeed; then each (step, text) of
/// `expect` must be in that step's output, and `after` (shell, with `fail STEP WHY` at hand)
/// must pass. `before` (step, shell) runs ahead of a step: where README's reader would wait.
pub fn run(
    what: &str,
    files: &[(&str, &str)],
    cmds: &[&str],
    before: &[(usize, &str)],
    expect: &[(usize, &str)],
    after: &str,
) {
    if !is_root() || !have("unshare") || !have("ip") || !have("curl") {
        skip_or_fail(&format!(
            "root, unshare, ip and curl for README's {what} example"
        ));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_ucm"))
        .parent()
        .unwrap();
    let mut script = String::from(
        "set -u\nip link set lo up\nfail() { echo \"FAILED(step $1): $2\" >&2; exit 1; }\n",
    );
    for (n, line) in cmds.iter().enumerate() {
        for (_, wait) in before.iter().filter(|(b, _)| *b == n) {
            script.push_str(wait);
            script.push('\n');
        }
        let line = line.split(" #").next().unwrap().trim();
        if let Some(bg) = line.strip_suffix('&') {
            script.push_str(&format!("{} > bg{n}.out 2> bg{n}.err &\n", bg.trim_end()));
            if line.starts_with("ucm serve") {
                script.push_str(
                    "for i in $(seq 1 300); do curl -sf http://127.0.0.1:8080/healthz >/dev/null && break; sleep 0.1; done\n",
                );
            } else {
                script.push_str(&format!(
                    "for i in $(seq 1 600); do grep -q ready bg{n}.out && break; sleep 0.1; done\n\
                     grep -q ready bg{n}.out || fail {n} \"not ready: $(cat bg{n}.out bg{n}.err)\"\n"
                ));
            }
        } else {
            script.push_str(&format!(
                "( {line} ) > out{n} 2> err{n} || fail {n} \"$(cat out{n} err{n})\"\n"
            ));
        }
    }
    for (n, text) in expect {
        script.push_str(&format!(
            "grep -qF '{text}' out{n} || fail {n} \"no '{text}' in: $(cat out{n})\"\n"
        ));
    }
    script.push_str(after);
    script.push_str("echo ALL-OK\n");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("unshare")
        .args([
            "--net",
            "--pid",
            "--fork",
            "--kill-child",
            "bash",
            "-c",
            &script,
        ])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("HOME", dir.path())
        .env("UCM_DATA_DIR", dir.path().join("data"))
        .output()
        .expect("unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("ALL-OK"),
        "{text}\n--- script:\n{script}"
    );
}
