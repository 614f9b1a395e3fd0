//! `cargo xtask fuzz [--seconds N] [--runs N] [--keep-corpus] [TARGET..]`: runs the fuzz targets of `fuzz/`
//! with cargo-fuzz (libFuzzer) on the nightly toolchain, one after another, at the lowest CPU
//! priority.
//!
//! - cargo-fuzz is installed (`cargo install cargo-fuzz`) when missing;
//! - each target starts from its corpus in the repository (`fuzz/corpus/<target>`) and the inputs
//!   that once failed (`fuzz/regressions/<target>`, never rewritten); what the run finds goes to
//!   a scratch corpus, and at the end the corpus and the scratch are merged (libFuzzer's
//!   `-merge=1`) into a minimal corpus of inputs no longer than [`MAX_INPUT`] that replaces the
//!   committed one;
//! - it prints executions, speed and coverage per target;
//! - a crash (panic, hang over [`INPUT_TIMEOUT_S`] s, memory over [`RSS_LIMIT_MB`] MB) fails
//!   the command after the other targets ran, with the input saved under
//!   `fuzz/artifacts/<target>/` and printed in hex.
//!
//! Targets are built without a sanitizer: the code they reach is safe Rust (the only `unsafe`
//! is in src/net's socket calls), so AddressSanitizer would find nothing a panic does not, at
//! half the speed. Overflow checks and debug assertions are on.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Longest input the fuzzer makes (bytes): every parser's interesting structure fits, and the
/// committed corpus stays small.
const MAX_INPUT: usize = 4096;
/// An input running longer than this (seconds) is reported as a hang.
const INPUT_TIMEOUT_S: u32 = 10;
/// A run using more memory than this (MB) is reported as a crash.
const RSS_LIMIT_MB: u32 = 2048;
/// Seconds per target when neither `--seconds` nor `--runs` is given.
const DEFAULT_SECONDS: u64 = 60;

struct Options {
    seconds: Option<u64>,
    runs: Option<u64>,
    /// `--keep-corpus`: leave fuzz/corpus as it is (CI, where the clone is thrown away).
    keep_corpus: bool,
    targets: Vec<String>,
}

fn parse_args(args: &[&str]) -> Result<Options> {
    let mut o = Options {
        seconds: None,
        runs: None,
        keep_corpus: false,
        targets: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        match a {
            "--seconds" | "--runs" => {
                let v = it.next().with_context(|| format!("{a} needs a number"))?;
                let n: u64 = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("{a} {v:?}: expected a positive whole number"))?;
                if a == "--seconds" {
                    o.seconds = Some(n);
                } else {
                    o.runs = Some(n);
                }
            }
            "--keep-corpus" => o.keep_corpus = true,
            s if s.starts_with('-') => {
                bail!("unknown option {s:?} (--seconds N, --runs N, --keep-corpus)")
            }
            t => o.targets.push(t.to_string()),
        }
    }
    Ok(o)
}

fn fuzz_dir() -> PathBuf {
    super::root().join("fuzz")
}

/// The targets named in fuzz/Cargo.toml, in file order.
fn all_targets(dir: &Path) -> Result<Vec<String>> {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).context("fuzz/Cargo.toml")?;
    let mut in_bin = false;
    let mut out = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin {
            if let Some(v) = line.strip_prefix("name") {
                let name = v
                    .trim_start()
                    .trim_start_matches('=')
                    .trim()
                    .trim_matches('"');
                out.push(name.to_string());
            }
        }
    }
    if out.is_empty() {
        bail!("fuzz/Cargo.toml names no [[bin]] target");
    }
    Ok(out)
}

/// `cargo +nightly fuzz ...` in fuzz/.
fn cargo_fuzz(dir: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.arg("+nightly").arg("fuzz").current_dir(dir);
    // A build cache kept outside the checkout (CI's clone is new each time; the sanitizer
    // coverage build of every dependency is most of the time).
    if let Some(t) = std::env::var_os("UCM_FUZZ_TARGET_DIR") {
        c.env("CARGO_TARGET_DIR", t);
    }
    // `cargo xtask` runs us with its package's variables (CARGO_PKG_NAME, CARGO_MANIFEST_DIR,
    // ...) and the stable toolchain's; build scripts that watch such variables (ring's) would
    // rebuild everything above them whenever the fuzz crate is built from a shell instead.
    for (k, _) in std::env::vars_os() {
        let Some(k) = k.to_str() else { continue };
        let cargo_set = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|p| k.starts_with(p))
            || matches!(
                k,
                "CARGO"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "OUT_DIR"
                    | "RUSTC"
                    | "RUSTDOC"
                    | "RUSTUP_TOOLCHAIN"
                    | "LD_LIBRARY_PATH"
            );
        if cargo_set {
            c.env_remove(k);
        }
    }
    c
}

fn ensure_tools(dir: &Path) -> Result<()> {
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !nightly {
        bail!(
            "the nightly toolchain is missing (libFuzzer needs it): rustup toolchain install nightly"
        );
    }
    let have = cargo_fuzz(dir)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        eprintln!("xtask fuzz: installing cargo-fuzz");
        let st = Command::new("cargo")
            .args(["install", "--locked", "cargo-fuzz"])
            .status()
            .context("cargo install cargo-fuzz")?;
        if !st.success() {
            bail!("cargo install cargo-fuzz failed");
        }
    }
    Ok(())
}

/// The build options every command of a run shares (build, run and merge must agree, or
/// cargo-fuzz rebuilds).
const BUILD: [&str; 2] = ["--sanitizer", "none"];

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

fn dir_size(dir: &Path) -> (usize, u64) {
    let f = files(dir);
    let bytes = f
        .iter()
        .filter_map(|p| p.metadata().ok())
        .map(|m| m.len())
        .sum();
    (f.len(), bytes)
}

/// What one libFuzzer run printed that we report.
#[derive(Default)]
struct Stats {
    execs: u64,
    exec_per_s: u64,
    cov: u64,
    ft: u64,
}

fn read_stats(log: &str) -> Stats {
    let mut s = Stats::default();
    for line in log.lines() {
        let num = |key: &str| -> Option<u64> {
            let rest = line.split(key).nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        };
        if line.starts_with('#') {
            if let Some(c) = num("cov: ") {
                s.cov = c;
            }
            if let Some(f) = num("ft: ") {
                s.ft = f;
            }
        }
        if let Some(n) = num("stat::number_of_executed_units: ") {
            s.execs = n;
        }
        if let Some(n) = num("stat::average_exec_per_sec: ") {
            s.exec_per_s = n;
        }
    }
    s
}

pub fn fuzz(args: &[&str]) -> Result<()> {
    let o = parse_args(args)?;
    let dir = fuzz_dir();
    let known = all_targets(&dir)?;
    let targets = if o.targets.is_empty() {
        known.clone()
    } else {
        for t in &o.targets {
            if !known.contains(t) {
                bail!("no fuzz target {t:?}; the targets are {}", known.join(", "));
            }
        }
        o.targets.clone()
    };
    // Other people's builds come first: the fuzzer takes only idle CPU.
    // SAFETY: setpriority on this process only; children inherit the niceness.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
    ensure_tools(&dir)?;

    let t0 = Instant::now();
    let st = cargo_fuzz(&dir)
        .arg("build")
        .args(BUILD)
        .status()
        .context("cargo fuzz build")?;
    if !st.success() {
        bail!("cargo fuzz build failed");
    }
    eprintln!(
        "xtask fuzz: built {} targets in {:.0} s",
        known.len(),
        t0.elapsed().as_secs_f64()
    );

    let mut crashes = Vec::new();
    let mut rows = Vec::new();
    for t in &targets {
        let corpus = dir.join("corpus").join(t);
        let scratch = dir.join("target").join("scratch-corpus").join(t);
        let artifacts = dir.join("artifacts").join(t);
        for d in [&corpus, &artifacts] {
            std::fs::create_dir_all(d).with_context(|| d.display().to_string())?;
        }
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).with_context(|| scratch.display().to_string())?;
        let before: Vec<PathBuf> = files(&artifacts);
        // Inputs that once failed stay whatever the merge keeps: every run reads them first.
        let regressions = dir.join("regressions").join(t);

        let mut limits = vec![
            format!("-max_len={MAX_INPUT}"),
            format!("-timeout={INPUT_TIMEOUT_S}"),
            format!("-rss_limit_mb={RSS_LIMIT_MB}"),
            format!("-artifact_prefix={}/", artifacts.display()),
            "-print_final_stats=1".to_string(),
        ];
        match (o.seconds, o.runs) {
            (None, None) => limits.push(format!("-max_total_time={DEFAULT_SECONDS}")),
            (s, r) => {
                if let Some(s) = s {
                    limits.push(format!("-max_total_time={s}"));
                }
                if let Some(r) = r {
                    limits.push(format!("-runs={r}"));
                }
            }
        }
        eprintln!("xtask fuzz: {t} ({})", limits.join(" "));
        let started = Instant::now();
        let out = cargo_fuzz(&dir)
            .arg("run")
            .args(BUILD)
            .arg(t)
            .arg(&scratch)
            .arg(&corpus)
            .args(regressions.is_dir().then_some(&regressions))
            .arg("--")
            .args(&limits)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("cargo fuzz run {t}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        let stats = read_stats(&log);
        let secs = started.elapsed().as_secs_f64();

        if !out.status.success() {
            let new: Vec<PathBuf> = files(&artifacts)
                .into_iter()
                .filter(|p| !before.contains(p))
                .collect();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("---- {t} failed; the fuzzer's last lines:");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
            if new.is_empty() {
                crashes.push(format!(
                    "{t}: the fuzzer failed ({}) without an artifact",
                    out.status
                ));
            }
            for p in new {
                let bytes = std::fs::read(&p).unwrap_or_default();
                crashes.push(format!(
                    "{t}: {} ({} bytes)\n  hex: {}",
                    p.display(),
                    bytes.len(),
                    hex(&bytes)
                ));
            }
        }

        // Minimise: the committed corpus and what this run found, merged into the inputs that
        // keep the coverage.
        if o.keep_corpus {
            let (n, bytes) = dir_size(&corpus);
            rows.push(row(t, &stats, n, bytes, secs));
            eprintln!("xtask fuzz: {}", rows.last().map_or("", String::as_str));
            continue;
        }
        let merged = dir.join("target").join("merged-corpus").join(t);
        let _ = std::fs::remove_dir_all(&merged);
        std::fs::create_dir_all(&merged).with_context(|| merged.display().to_string())?;
        let m = cargo_fuzz(&dir)
            .arg("run")
            .args(BUILD)
            .arg(t)
            .arg(&merged)
            .arg(&corpus)
            .arg(&scratch)
            .arg("--")
            // The smallest set of inputs that keeps every feature (not every input that
            // added one on the way), so the committed corpus stays small.
            .arg("-set_cover_merge=1")
            .arg(format!("-max_len={MAX_INPUT}"))
            .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
            .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("cargo fuzz run {t} -merge=1"))?;
        if m.status.success() && !files(&merged).is_empty() {
            for f in files(&corpus) {
                std::fs::remove_file(&f).with_context(|| f.display().to_string())?;
            }
            for f in files(&merged) {
                if let Some(name) = f.file_name() {
                    std::fs::copy(&f, corpus.join(name))
                        .with_context(|| f.display().to_string())?;
                }
            }
        } else if !m.status.success() {
            eprintln!(
                "xtask fuzz: {t}: merging the corpus failed ({}); the committed corpus is kept",
                m.status
            );
        }
        let (n, bytes) = dir_size(&corpus);
        rows.push(row(t, &stats, n, bytes, secs));
        // Each row as it comes too: a long campaign stopped half-way keeps what it measured.
        eprintln!("xtask fuzz: {}", rows.last().map_or("", String::as_str));
    }

    println!(
        "{:<20} {:>12} {:>9} {:>7} {:>7} {:>7} {:>9} {:>6}",
        "target", "executions", "exec/s", "cov", "ft", "corpus", "bytes", "s"
    );
    for r in &rows {
        println!("{r}");
    }
    if !crashes.is_empty() {
        for c in &crashes {
            eprintln!("CRASH {c}");
        }
        bail!("{} fuzz target run(s) failed", crashes.len());
    }
    Ok(())
}

fn row(t: &str, s: &Stats, files: usize, bytes: u64, secs: f64) -> String {
    format!(
        "{t:<20} {:>12} {:>9} {:>7} {:>7} {:>7} {:>9} {:>6.0}",
        s.execs, s.exec_per_s, s.cov, s.ft, files, bytes, secs
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libfuzzer_output_is_read() {
        let log = "#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 30Mb\n\
#1048576\tpulse  cov: 812 ft: 3011 corp: 200/9kb lim: 4096 exec/s: 349525 rss: 40Mb\n\
#2000000\tDONE   cov: 815 ft: 3020 corp: 201/9kb lim: 4096 exec/s: 333333 rss: 40Mb\n\
Done 2000000 runs in 6 second(s)\n\
stat::number_of_executed_units: 2000000\n\
stat::average_exec_per_sec:     333333\n";
        let s = read_stats(log);
        assert_eq!(
            (s.execs, s.exec_per_s, s.cov, s.ft),
            (2000000, 333333, 815, 3020)
        );
    }

    #[test]
    fn options_and_targets() {
        let o = parse_args(&["--seconds", "10", "sdp", "--runs", "5"]).expect("args");
        assert_eq!(
            (o.seconds, o.runs, o.targets),
            (Some(10), Some(5), vec!["sdp".into()])
        );
        assert!(parse_args(&["--seconds"]).is_err());
        assert!(parse_args(&["--seconds", "0"]).is_err());
        assert!(parse_args(&["--fast"]).is_err());
        let names = all_targets(&fuzz_dir()).expect("targets");
        assert!(names.contains(&"tcp_http".to_string()), "{names:?}");
    }
}
