//! The capture reader against real third-party captures: per-DSCP tallies must equal tshark's.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Command;

use ucm::pcap::dscp_tally;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus/pcaps");

fn capture_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            capture_files(&path, out);
        } else if path
            .extension()
            .is_some_and(|e| e == "pcap" || e == "pcapng")
        {
            out.push(path);
        }
    }
}

/// Per-DSCP tally of the innermost IP header of each packet, as tshark dissects it.
///
/// tshark prints each field's occurrences in layer order, but the two fields separately: for
/// 6in4 the line is `outer-v4 <TAB> inner-v6`, for 4in6 `inner-v4 <TAB> outer-v6`. So the
/// innermost header's family is taken from `frame.protocols` (last `ip` / `ipv6` layer), and its
/// value is that family's occurrence with the same index. IP headers quoted inside ICMP errors
/// are not tunnels: layers from `icmp` / `icmpv6` on are ignored.
fn tshark_tally(file: &Path) -> Result<BTreeMap<u8, u64>, String> {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args(["-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"])
        .args(["-e", "ip.dsfield.dscp", "-e", "ipv6.tclass.dscp"])
        .args(["-e", "frame.protocols"])
        .output()
        .map_err(|e| format!("running tshark: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "tshark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut tally = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut cols = line.split('\t');
        let values = |col: Option<&str>| -> Vec<u8> {
            col.unwrap_or("")
                .split(',')
                .filter(|v| !v.is_empty())
                .map(|v| v.parse().expect("tshark DSCP value"))
                .collect()
        };
        let v4 = values(cols.next());
        let v6 = values(cols.next());
        let protocols = cols.next().unwrap_or("");
        let (mut n4, mut n6, mut last) = (0usize, 0usize, None);
        for layer in protocols.split(':') {
            match layer {
                "icmp" | "icmpv6" => break,
                "ip" => {
                    n4 += 1;
                    last = Some(4);
                }
                "ipv6" => {
                    n6 += 1;
                    last = Some(6);
                }
                _ => {}
            }
        }
        let dscp = match last {
            Some(4) => v4.get(n4 - 1).or(v4.last()),
            Some(6) => v6.get(n6 - 1).or(v6.last()),
            _ => None,
        };
        if let Some(&dscp) = dscp {
            *tally.entry(dscp).or_insert(0) += 1;
        }
    }
    Ok(tally)
}

#[test]
fn r4_dscp_tallies_match_tshark_for_every_corpus_capture() {
    let corpus = Path::new(CORPUS);
    if !corpus.is_dir() {
        // Plain skip even under CI: shared/ is not part of the checkout.
        eprintln!("SKIPPED: ../shared/corpus is not beside the checkout");
        return;
    }
    if Command::new("tshark").arg("-v").output().is_err() {
        crate::common::skip_or_fail("tshark is not installed (Debian package tshark)");
        return;
    }
    let mut files = Vec::new();
    capture_files(corpus, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no captures under {CORPUS}");
    let mut mismatches = Vec::new();
    for file in &files {
        let name = file.strip_prefix(corpus).unwrap_or(file).display();
        let expected = match tshark_tally(file) {
            Ok(t) => t,
            Err(e) => {
                mismatches.push(format!("{name}: {e}"));
                continue;
            }
        };
        let reader = BufReader::new(File::open(file).expect("open capture"));
        match dscp_tally(reader) {
            Ok(ours) if ours.by_dscp == expected => {}
            Ok(ours) => mismatches.push(format!(
                "{name}: tshark {expected:?}, ucm {:?} (unsupported link types {:?})",
                ours.by_dscp, ours.unsupported_link_types
            )),
            Err(e) => mismatches.push(format!("{name}: ucm failed: {e}")),
        }
    }
    for m in &mismatches {
        eprintln!("MISMATCH {m}");
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} captures differ from tshark:\n{}",
        mismatches.len(),
        files.len(),
        mismatches.join("\n")
    );
    eprintln!("{} captures match tshark", files.len());
}
