//! Reports of a verification run: plain text, JSON (a stable contract for scripts) and JUnit
//! XML (one testsuite per capture, one testcase per audited flow direction). Problems of a
//! capture as a whole (cut short, nothing audited) are in every format: a `FAIL` line under
//! the file's, `findings` in JSON, a failed `capture` test case in JUnit.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::audit::{FileAudit, FlowAudit};
use super::ladder::LadderLine;
use super::payload::{Finding, Severity, XmlDocument};
use crate::net::Dscp;
use crate::wire::xml::escape_legal;

/// Report format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Junit,
}

/// [`Report::json`] as written: `top` and each file's `map` hold `null` where the files and
/// the ladder lines go, and those are serialised in their place.
struct JsonDoc<'a> {
    top: Value,
    files: Vec<FileDoc<'a>>,
}

struct FileDoc<'a> {
    map: Value,
    ladder: Option<&'a Vec<LadderLine>>,
}

/// Ladder lines, each turned into a `Value` only while it is written (as `json!` would).
struct LinesJson<'a>(&'a [LadderLine]);

impl serde::Serialize for JsonDoc<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(top) = &self.top else {
            return self.top.serialize(s);
        };
        let mut m = s.serialize_map(Some(top.len()))?;
        for (k, v) in top {
            if k == "files" {
                m.serialize_entry(k, &self.files)?;
            } else {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

impl serde::Serialize for FileDoc<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (Value::Object(map), Some(lines)) = (&self.map, self.ladder) else {
            return self.map.serialize(s);
        };
        let mut m = s.serialize_map(Some(map.len()))?;
        for (k, v) in map {
            if k == "ladder" {
                m.serialize_entry(k, &LinesJson(lines))?;
            } else {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

impl serde::Serialize for LinesJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for line in self.0 {
            seq.serialize_element(&serde_json::to_value(line).map_err(S::Error::custom)?)?;
        }
        seq.end()
    }
}

/// The outcome for one capture file.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // one per capture file
pub enum FileOutcome {
    Audited(FileAudit),
    /// The file could not be read (exit code 2); the message names the reason and offset.
    Unreadable {
        path: String,
        error: String,
    },
}

/// A whole run: every capture, in command-line order.
#[derive(Clone, Debug)]
pub struct Report {
    /// Where the policy came from (a path, or the built-in default).
    pub policy: String,
    pub files: Vec<FileOutcome>,
    /// Show only flow directions that have an expected DSCP.
    pub only_audited: bool,
}

impl Report {
    /// Every file was read and every audited flow passed.
    pub fn passed(&self) -> bool {
        self.files.iter().all(|f| match f {
            FileOutcome::Audited(a) => a.passed,
            FileOutcome::Unreadable { .. } => false,
        })
    }

    /// Some file could not be read.
    pub fn any_unreadable(&self) -> bool {
        self.files
            .iter()
            .any(|f| matches!(f, FileOutcome::Unreadable { .. }))
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.text(),
            Format::Json => {
                // The same document as `json()`, without holding every ladder line as a tree.
                let mut s = serde_json::to_string_pretty(&self.json_doc()).unwrap_or_default();
                s.push('\n');
                s
            }
            Format::Junit => self.junit(),
        }
    }

    /// `render(Format::Json)` written to `w` as it is produced (a big capture's report is
    /// not held in memory twice).
    pub fn write_json<W: std::io::Write>(&self, mut w: W) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut w, &self.json_doc()).map_err(std::io::Error::from)?;
        w.write_all(b"\n")?;
        w.flush()
    }

    fn shown<'a>(&self, a: &'a FileAudit) -> impl Iterator<Item = &'a FlowAudit> + 'a {
        let only = self.only_audited;
        a.flows
            .iter()
            .filter(move |f| !only || f.expected_dscp.is_some())
    }

    /// The JSON document.
    pub fn json(&self) -> Value {
        let files: Vec<Value> = self
            .files
            .iter()
            .map(|f| match f {
                FileOutcome::Unreadable { .. } => self.file_json(f, Value::Null),
                FileOutcome::Audited(a) => self.file_json(
                    f,
                    serde_json::to_value(&a.ladder.lines).unwrap_or(Value::Null),
                ),
            })
            .collect();
        self.top_json(Value::Array(files))
    }

    /// `json()` to be serialised: the ladder lines (most of a big capture's report) are turned
    /// into JSON one at a time while writing, not all at once.
    fn json_doc(&self) -> JsonDoc<'_> {
        JsonDoc {
            top: self.top_json(Value::Null),
            files: self
                .files
                .iter()
                .map(|f| FileDoc {
                    map: self.file_json(f, Value::Null),
                    ladder: match f {
                        FileOutcome::Audited(a) => Some(&a.ladder.lines),
                        FileOutcome::Unreadable { .. } => None,
                    },
                })
                .collect(),
        }
    }

    fn top_json(&self, files: Value) -> Value {
        json!({
            "passed": self.passed(),
            "policy": self.policy,
            "checks": ["dscp", "xml", "ladder"],
            "files": files,
        })
    }

    /// One file's object, with `ladder` as its `"ladder"` member.
    fn file_json(&self, f: &FileOutcome, ladder: Value) -> Value {
        match f {
            FileOutcome::Unreadable { path, error } => json!({
                "path": path, "passed": false, "error": error,
            }),
            FileOutcome::Audited(a) => json!({
                "path": a.path,
                "passed": a.passed,
                "packets": a.packets,
                "ip_packets": a.ip_packets,
                "non_ip_packets": a.non_ip_packets,
                "sip_messages": a.sip_messages,
                "sdp_bodies": a.sdp_bodies,
                "fragments": a.fragments,
                "reassembled_datagrams": a.reassembled_datagrams,
                "audited_flows": a.audited_flows,
                "failed_flows": a.failed_flows,
                "offending_packets": a.offending_packets,
                "findings": a.findings.iter().map(file_finding_json).collect::<Vec<_>>(),
                "notes": a.notes,
                "flows": self.shown(a).map(flow_json).collect::<Vec<_>>(),
                "xml_documents": a.xml_checked,
                "xml_invalid": a.xml_invalid,
                "xml": a.xml.iter().map(xml_json).collect::<Vec<_>>(),
                "tcp_connections": a.tcp_connections,
                "tcp": a.tcp,
                "roles": a.ladder.roles,
                "ladder": ladder,
                "golden": a.golden,
                "diff": a.diff,
            }),
        }
    }

    /// Plain, aligned text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for f in &self.files {
            match f {
                FileOutcome::Unreadable { path, error } => {
                    let _ = writeln!(out, "ERROR {path}: {error}\n");
                }
                FileOutcome::Audited(a) => self.text_file(a, &mut out),
            }
        }
        let (n, failed) = (
            self.files.len(),
            self.files
                .iter()
                .filter(|f| !matches!(f, FileOutcome::Audited(a) if a.passed))
                .count(),
        );
        let _ = writeln!(
            out,
            "{}: {n} capture{}, {failed} failed (policy: {})",
            if self.passed() { "PASS" } else { "FAIL" },
            if n == 1 { "" } else { "s" },
            self.policy
        );
        out
    }

    fn text_file(&self, a: &FileAudit, out: &mut String) {
        let _ = writeln!(
            out,
            "{} {}: {} packets ({} IP), {} flow directions, {} audited, {} failed, {} offending packets",
            if a.passed { "PASS" } else { "FAIL" },
            a.path,
            a.packets,
            a.ip_packets,
            a.flows.len(),
            a.audited_flows,
            a.failed_flows,
            a.offending_packets
        );
        for f in &a.findings {
            let _ = writeln!(out, "  FAIL {}", f.message);
        }
        let header = [
            "SRC",
            "DST",
            "PROTO",
            "CLASS",
            "BY",
            "EXPECTED",
            "OBSERVED",
            "OFFENDING",
            "FIRST OFFENDING FRAMES",
        ];
        let mut rows: Vec<[String; 9]> = vec![header.map(String::from)];
        for f in self.shown(a) {
            let expected = match (f.audited, f.expected_dscp) {
                (_, Some(d)) => dscp_text(d),
                (true, None) => "any".to_string(),
                (false, None) => "-".to_string(),
            };
            let observed = f
                .dscp_counts
                .iter()
                .map(|(d, n)| {
                    let d = Dscp::new(*d)
                        .map(dscp_text)
                        .unwrap_or_else(|_| d.to_string());
                    format!("{d} x{n}")
                })
                .collect::<Vec<_>>()
                .join(", ");
            let frames = f
                .violations
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let class = match &f.sender_role {
                Some(r) => format!("{} ({r})", f.class),
                None => f.class.to_string(),
            };
            rows.push([
                f.src.clone(),
                f.dst.clone(),
                f.transport.to_string(),
                class,
                f.evidence.as_str().to_string(),
                expected,
                observed,
                if f.expected_dscp.is_some() {
                    f.offending.to_string()
                } else {
                    "-".to_string()
                },
                frames,
            ]);
        }
        if rows.len() > 1 {
            let mut widths = [0usize; 9];
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r.iter()) {
                    *w = (*w).max(c.chars().count());
                }
            }
            for r in &rows {
                let mut line = String::from(" ");
                for (i, (c, w)) in r.iter().zip(widths.iter()).enumerate() {
                    line.push(' ');
                    if i + 1 == r.len() {
                        line.push_str(c);
                    } else {
                        let _ = write!(line, "{c:<w$} ");
                    }
                }
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
        if a.xml_checked > 0 {
            let _ = writeln!(
                out,
                "  XML: {} documents, {} invalid",
                a.xml_checked, a.xml_invalid
            );
            for d in &a.xml {
                let errors = d.errors();
                let _ = writeln!(
                    out,
                    "    {} frame {} {} <{}> ({}){}",
                    if errors > 0 { "FAIL" } else { "ok  " },
                    d.frame,
                    d.source,
                    d.root,
                    d.kind,
                    if d.findings.is_empty() { "" } else { ":" }
                );
                for f in &d.findings {
                    let _ = writeln!(out, "      {}", finding_text(f));
                }
            }
        }
        if let Some(g) = &a.golden {
            if a.diff.is_empty() {
                let _ = writeln!(out, "  ladder: matches golden {g}");
            } else {
                let _ = writeln!(out, "  ladder: differs from golden {g}:");
                for l in &a.diff {
                    let _ = writeln!(out, "    {l}");
                }
            }
        }
        for n in &a.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        out.push('\n');
    }

    /// JUnit XML: one `<testsuite>` per capture, one `<testcase>` per audited flow direction,
    /// a `<failure>` for each that offends, an `<error>` for an unreadable capture.
    pub fn junit(&self) -> String {
        let mut suites = String::new();
        let (mut tests, mut failures, mut errors) = (0usize, 0usize, 0usize);
        for f in &self.files {
            match f {
                FileOutcome::Unreadable { path, error } => {
                    tests += 1;
                    errors += 1;
                    let _ = write!(
                        suites,
                        "  <testsuite name=\"{p}\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\">\n    \
                         <testcase classname=\"capture\" name=\"read {p}\">\n      \
                         <error message=\"{e}\" type=\"unreadable\">{e}</error>\n    </testcase>\n  </testsuite>\n",
                        p = escape_legal(path),
                        e = escape_legal(error)
                    );
                }
                FileOutcome::Audited(a) => {
                    let audited: Vec<&FlowAudit> = a
                        .flows
                        .iter()
                        .filter(|f| f.expected_dscp.is_some())
                        .collect();
                    let failed = audited.iter().filter(|f| !f.passed).count()
                        + a.xml.iter().filter(|d| d.errors() > 0).count()
                        + usize::from(!a.diff.is_empty())
                        + a.findings.len();
                    let n = audited.len()
                        + a.xml.len()
                        + usize::from(a.golden.is_some())
                        + a.findings.len();
                    tests += n;
                    failures += failed;
                    let _ = writeln!(
                        suites,
                        "  <testsuite name=\"{}\" tests=\"{n}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\">",
                        escape_legal(&a.path),
                    );
                    for f in &a.findings {
                        let _ = write!(
                            suites,
                            "    <testcase classname=\"capture\" name=\"{}\">\n      \
                             <failure message=\"{m}\" type=\"{}\">{m}</failure>\n    </testcase>\n",
                            f.kind.title(),
                            f.kind.as_str(),
                            m = escape_legal(&f.message)
                        );
                    }
                    for d in &a.xml {
                        let name = format!("frame {} {} <{}>", d.frame, d.source, d.root);
                        let _ = write!(
                            suites,
                            "    <testcase classname=\"xml.{}\" name=\"{}\"",
                            d.kind,
                            escape_legal(&name)
                        );
                        if d.errors() == 0 {
                            suites.push_str("/>\n");
                        } else {
                            let msg = xml_failure_message(d);
                            let _ = write!(
                                suites,
                                ">\n      <failure message=\"{m}\" type=\"xml\">{m}</failure>\n    </testcase>\n",
                                m = escape_legal(&msg)
                            );
                        }
                    }
                    if let Some(g) = &a.golden {
                        let _ = write!(
                            suites,
                            "    <testcase classname=\"ladder\" name=\"golden {}\"",
                            escape_legal(g)
                        );
                        if a.diff.is_empty() {
                            suites.push_str("/>\n");
                        } else {
                            let _ = write!(
                                suites,
                                ">\n      <failure message=\"ladder differs from the golden\" type=\"ladder\">{}</failure>\n    </testcase>\n",
                                escape_legal(&a.diff.join("\n"))
                            );
                        }
                    }
                    for f in audited {
                        let name = format!("{} -> {} {} {}", f.src, f.dst, f.transport, f.class);
                        let _ = write!(
                            suites,
                            "    <testcase classname=\"dscp.{}\" name=\"{}\"",
                            f.class,
                            escape_legal(&name)
                        );
                        if f.passed {
                            suites.push_str("/>\n");
                        } else {
                            let msg = failure_message(f);
                            let _ = write!(
                                suites,
                                ">\n      <failure message=\"{m}\" type=\"dscp\">{m}</failure>\n    </testcase>\n",
                                m = escape_legal(&msg)
                            );
                        }
                    }
                    suites.push_str("  </testsuite>\n");
                }
            }
        }
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"ucm pcap verify\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\">\n{suites}</testsuites>\n"
        )
    }
}

/// `46 (EF)`, or the number alone for unnamed codepoints.
fn dscp_text(d: Dscp) -> String {
    match d.name() {
        Some(n) => format!("{} ({n})", d.value()),
        None => d.value().to_string(),
    }
}

/// What a failed flow direction is told in JUnit (and usable anywhere).
pub fn failure_message(f: &FlowAudit) -> String {
    let want = f.expected_dscp.map(dscp_text).unwrap_or_default();
    let observed = f
        .dscp_counts
        .iter()
        .filter(|(d, _)| Some(**d) != f.expected_dscp.map(Dscp::value))
        .map(|(d, n)| {
            let d = Dscp::new(*d)
                .map(dscp_text)
                .unwrap_or_else(|_| d.to_string());
            format!("{d} x{n}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    let frames = f
        .violations
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{} {} -> {}: {} of {} packets not marked {want} (observed {observed}); first offending frames: {frames}",
        f.class, f.src, f.dst, f.offending, f.packets
    )
}

fn finding_text(f: &Finding) -> String {
    let sev = match f.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    if f.path.is_empty() {
        format!("{sev}: {} [{}]", f.message, f.rule)
    } else {
        format!("{sev}: {}: {} [{}]", f.path, f.message, f.rule)
    }
}

/// What an invalid XML document is told in JUnit.
pub fn xml_failure_message(d: &XmlDocument) -> String {
    let errors: Vec<String> = d
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(finding_text)
        .collect();
    format!(
        "frame {} {} <{}>: {}",
        d.frame,
        d.source,
        d.root,
        errors.join("; ")
    )
}

fn xml_json(d: &XmlDocument) -> Value {
    let list = |sev: Severity| {
        d.findings
            .iter()
            .filter(|f| f.severity == sev)
            .map(|f| json!({"path": f.path, "rule": f.rule, "message": f.message}))
            .collect::<Vec<_>>()
    };
    json!({
        "frame": d.frame,
        "source": d.source,
        "root": d.root,
        "kind": d.kind,
        "valid": d.errors() == 0,
        "errors": list(Severity::Error),
        "warnings": list(Severity::Warning),
    })
}

fn file_finding_json(f: &super::audit::FileFinding) -> Value {
    json!({"kind": f.kind.as_str(), "offset": f.offset, "message": f.message})
}

fn flow_json(f: &FlowAudit) -> Value {
    let counts: serde_json::Map<String, Value> = f
        .dscp_counts
        .iter()
        .map(|(d, n)| (d.to_string(), json!(n)))
        .collect();
    json!({
        "src": f.src,
        "dst": f.dst,
        "transport": f.transport,
        "protocol": f.protocol,
        "class": f.class.as_str(),
        "classified_by": f.evidence.as_str(),
        "sender_role": f.sender_role,
        "audited": f.audited,
        "expected_dscp": f.expected_dscp.map(Dscp::value),
        "packets": f.packets,
        "first_frame": f.first_frame,
        "dscp_counts": counts,
        "offending_packets": f.offending,
        "violations": f.violations,
        "passed": f.passed,
    })
}
