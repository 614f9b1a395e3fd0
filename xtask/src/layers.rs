//! `cargo xtask layers`: the import rules between the library's modules, checked on the sources.
//!
//! It reads every `.rs` file under `src/` (comments and string contents set aside), finds each
//! reference to another module of the crate — `use crate::…` (groups over several lines
//! included), `crate::x::…` written inline, `super::…` and `self::…` resolved to the module
//! they name — and builds the graph of imports between top-level modules (keeping the whole
//! module path, so a rule can allow `sip::transaction` and not the rest of `sip`). It fails,
//! naming `file:line` and the rule, on an import a rule forbids and on any cycle between
//! top-level modules; when everything holds it prints the graph, lowest layer first. Two rules
//! read more than imports: names a module must not use (a clock in the wire layer, a service's
//! state in the node core), and the tables the SQL in a module names (string literals that
//! start like a statement: every table after `FROM`, `JOIN`, `INTO`, `UPDATE` or `TABLE`), so
//! a service's table is queried in its own folder only.
//!
//! Test code does not count: `#[cfg(test)]` items (test modules, test-only imports) and the
//! files of `#[cfg(test)] mod x;` declarations. Tests build fixtures with whatever they need (a
//! parsed definition, a database); what ships is what must keep its layers.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// What a rule allows a module to import.
#[derive(Debug, Clone, Copy)]
enum Allow {
    /// Only these modules (a `a::b` entry allows `a::b` and below, not the rest of `a`).
    Only(&'static [&'static str]),
    /// Anything but these modules.
    Not(&'static [&'static str]),
    /// Anything but what lies below these modules (the modules themselves allowed), except
    /// the modules `except` lists.
    NotBelow {
        of: &'static [&'static str],
        except: &'static [&'static str],
    },
}

/// What a rule checks.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// The imports of the top-level modules `from` (`*`: every module).
    Imports {
        from: &'static [&'static str],
        allow: Allow,
    },
    /// None of these texts in the code of these top-level modules (comments and strings not
    /// counted).
    NoText {
        modules: &'static [&'static str],
        texts: &'static [&'static str],
    },
    /// The SQL of every top-level module but `except` names only the tables `allow` lists.
    SqlTables {
        except: &'static [&'static str],
        allow: &'static [&'static str],
    },
    /// No file outside `src/` pulled in by `#[path]` or `include!` from `cmd/`.
    NoCmd,
    /// No cycle between top-level modules.
    NoCycles,
}

struct Rule {
    name: &'static str,
    check: Check,
}

/// The rules, in one place. Each says why the layer exists.
const RULES: &[Rule] = &[
    // `server` binds listeners and starts the services a node runs: it is the top of the
    // house, and whatever it holds that others need belongs in the node core or `net`.
    Rule {
        name: "nothing in src/ imports server",
        check: Check::Imports {
            from: &["*"],
            allow: Allow::Not(&["server"]),
        },
    },
    // The wire formats are pure data, shared by services, phone, clients and harness alike.
    Rule {
        name: "wire imports nothing of the crate outside wire",
        check: Check::Imports {
            from: &["wire"],
            allow: Allow::Only(&[]),
        },
    },
    // ... and have no clock and no sockets: the same bytes give the same answer, any time.
    Rule {
        name: "wire reads no clock and opens no socket",
        check: Check::NoText {
            modules: &["wire"],
            texts: &[
                "Instant::now",
                "SystemTime::now",
                "UdpSocket",
                "TcpStream",
                "TcpListener",
                "tokio::net",
            ],
        },
    },
    // The harness judges what ucm sends: it must not borrow the implementation it judges.
    Rule {
        name: "pcap imports only wire, net and media",
        check: Check::Imports {
            from: &["pcap"],
            allow: Allow::Only(&["wire", "net", "media"]),
        },
    },
    Rule {
        name: "verify imports only wire, net, media and pcap",
        check: Check::Imports {
            from: &["verify"],
            allow: Allow::Only(&["wire", "net", "media", "pcap"]),
        },
    },
    // Call control knows no service, no client, no harness and no simulated phone: services
    // are built on it, never the reverse.
    Rule {
        name: "sip imports no services, client, server, phone, verify or pcap",
        check: Check::Imports {
            from: &["sip"],
            allow: Allow::Not(&["services", "client", "server", "phone", "verify", "pcap"]),
        },
    },
    // The definition and its storage come before anything that runs: they know no service,
    // no node and no call control.
    Rule {
        name: "store and config import no services, server, node or sip",
        check: Check::Imports {
            from: &["store", "config"],
            allow: Allow::Not(&["services", "server", "node", "sip"]),
        },
    },
    // The node core (and the cluster snapshot it holds) runs every service and knows none:
    // a service's model, checks, storage and tasks are its own, registered in
    // `services::ALL`.
    Rule {
        name: "node and cluster import no services, client or phone",
        check: Check::Imports {
            from: &["node", "cluster"],
            allow: Allow::Not(&["services", "client", "phone", "server"]),
        },
    },
    // ... nor does it hold a service's state or apply its changes: the change feed hands a
    // service's announcements to the hook the service declares (`ServiceSpec::feed`), and the
    // status view asks each service for its sections. The cluster snapshot holds the logins
    // (they change devices' lines); only Extension Mobility's hook writes them.
    Rule {
        name: "node, store and server name no service's state",
        check: Check::NoText {
            modules: &["node", "store", "server"],
            texts: &[
                "mobility",
                "Mobility",
                "logins_changed",
                "sync_logins",
                "apply_login_change",
                "apply_login_states",
            ],
        },
    },
    // A service's tables are its own: the core's SQL (store, node, server, call control...)
    // names only the core's tables, and a new service's table is queried in its folder.
    Rule {
        name: "SQL outside services names only the node core's tables",
        check: Check::SqlTables {
            except: &["services"],
            allow: &[
                "cluster_meta",
                "config_objects",
                "cluster_nodes",
                "registrations",
                "service_credentials",
                // Which node runs a service the cluster runs once: the core routes its
                // route points to the holder (node::leases), whatever the service.
                "service_leases",
                "node_certificates",
                "trusted_certificates",
            ],
        },
    },
    // The server starts services through their registry (`services::ALL`: routes, tasks,
    // listeners, feed hooks, status sections), never by reaching into one. The
    // authentication helpers every HTTP surface shares are the one exception.
    Rule {
        name: "server reaches services only through services::ALL",
        check: Check::Imports {
            from: &["server"],
            allow: Allow::NotBelow {
                of: &["services"],
                except: &["services::authenticate"],
            },
        },
    },
    // The simulated phone knows the cluster only over the wire, as a real phone does; it
    // shares the sans-IO SIP transactions, nothing else of call control.
    Rule {
        name: "phone imports only wire, net, media, client and sip::transaction",
        check: Check::Imports {
            from: &["phone"],
            allow: Allow::Only(&["wire", "net", "media", "client", "sip::transaction"]),
        },
    },
    // The binary is a thin layer over the library; the library never reaches back into it.
    Rule {
        name: "nothing in src/ reaches cmd/",
        check: Check::NoCmd,
    },
    // Layers: every module can be understood (and tested) without those above it.
    Rule {
        name: "no cycles between top-level modules",
        check: Check::NoCycles,
    },
];

/// A module path inside the crate (`["sip", "transaction"]`; empty for the crate root).
type ModPath = Vec<String>;

fn show(p: &[String]) -> String {
    if p.is_empty() {
        "crate".into()
    } else {
        p.join("::")
    }
}

/// One reference from a module to another.
#[derive(Debug, Clone)]
struct Import {
    file: PathBuf,
    line: usize,
    from: ModPath,
    to: ModPath,
    /// The path as written.
    text: String,
}

/// A text a rule forbids, found.
#[derive(Debug, Clone)]
struct Found {
    file: PathBuf,
    line: usize,
    text: String,
}

/// What reading `src/` gave.
#[derive(Debug, Default)]
struct Scan {
    /// Top-level modules (those with a file), each with its known sub-module paths.
    modules: BTreeSet<ModPath>,
    imports: Vec<Import>,
    /// Imports made by test code, not checked.
    test_imports: usize,
    /// `(module, file, line, text)` of texts the text rules look for.
    texts: Vec<(ModPath, Found)>,
    /// `(module, file, line, table)` of the tables named by SQL outside test code.
    tables: Vec<(ModPath, Found)>,
    /// Files under `cmd/` pulled in by `#[path]` or `include!`.
    cmd_refs: Vec<Found>,
}

/// A broken rule.
#[derive(Debug)]
pub struct Violation {
    pub rule: &'static str,
    pub message: String,
}

impl fmt::Display for Violation {
    /// The rule goes at the end of the first line (a cycle's steps follow on their own lines).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (first, rest) = match self.message.split_once('\n') {
            Some((a, b)) => (a, Some(b)),
            None => (self.message.as_str(), None),
        };
        write!(f, "{first} [rule: {}]", self.rule)?;
        if let Some(rest) = rest {
            write!(f, "\n{rest}")?;
        }
        Ok(())
    }
}

/// The outcome of a check.
pub struct Report {
    pub violations: Vec<Violation>,
    /// Top-level module → the top-level modules it imports (test code not counted).
    pub graph: BTreeMap<String, BTreeSet<String>>,
    pub files: usize,
    pub test_imports: usize,
}

/// `cargo xtask layers [DIR]`: checks `DIR/src` (default: the workspace's).
pub fn layers(args: &[&str]) -> Result<()> {
    let root = match args {
        [] => crate::root(),
        [dir] => PathBuf::from(dir),
        _ => bail!("usage: cargo xtask layers [DIR]"),
    };
    let report = check(&root.join("src"))?;
    if report.violations.is_empty() {
        print!("{}", summary(&report));
        return Ok(());
    }
    for v in &report.violations {
        println!("{v}");
    }
    println!();
    print!("{}", summary(&report));
    bail!(
        "{} broken layer rule{} (see above)",
        report.violations.len(),
        if report.violations.len() == 1 {
            ""
        } else {
            "s"
        }
    )
}

/// Reads the tree under `src` and checks every rule.
pub fn check(src: &Path) -> Result<Report> {
    let scan = scan(src)?;
    let files = count_files(src)?;
    let top = |p: &ModPath| p.first().cloned();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &scan.modules {
        if let Some(t) = m.first() {
            graph.entry(t.clone()).or_default();
        }
    }
    // Every edge between two top-level modules, with the first place it is made.
    let mut first: BTreeMap<(String, String), &Import> = BTreeMap::new();
    for i in &scan.imports {
        let (Some(a), Some(b)) = (top(&i.from), top(&i.to)) else {
            continue;
        };
        if a != b {
            graph.entry(a.clone()).or_default().insert(b.clone());
            first.entry((a, b)).or_insert(i);
        }
    }
    let mut violations = Vec::new();
    for rule in RULES {
        match rule.check {
            Check::Imports { from, allow } => {
                // One violation a line and target module, however many names it imports.
                let mut seen: BTreeMap<(PathBuf, usize, ModPath), (usize, usize)> = BTreeMap::new();
                for i in &scan.imports {
                    let (Some(a), Some(b)) = (i.from.first(), i.to.first()) else {
                        continue;
                    };
                    if a == b || !(from.contains(&"*") || from.contains(&a.as_str())) {
                        continue;
                    }
                    if allowed(allow, &i.to) {
                        continue;
                    }
                    let key = (i.file.clone(), i.line, i.to.clone());
                    if let Some((_, more)) = seen.get_mut(&key) {
                        *more += 1;
                        continue;
                    }
                    seen.insert(key, (violations.len(), 0));
                    violations.push(Violation {
                        rule: rule.name,
                        message: format!(
                            "{}:{}: {} imports {} ({})",
                            i.file.display(),
                            i.line,
                            show(&i.from),
                            show(&i.to),
                            i.text
                        ),
                    });
                }
                for (at, more) in seen.into_values() {
                    if more > 0 {
                        let m = &mut violations[at].message;
                        m.pop();
                        m.push_str(&format!(" and {more} more)"));
                    }
                }
            }
            Check::SqlTables { except, allow } => {
                for (m, f) in &scan.tables {
                    let top = m.first().map(String::as_str).unwrap_or_default();
                    if except.contains(&top) || allow.contains(&f.text.as_str()) {
                        continue;
                    }
                    violations.push(Violation {
                        rule: rule.name,
                        message: format!(
                            "{}:{}: {} names the table {}",
                            f.file.display(),
                            f.line,
                            show(m),
                            f.text
                        ),
                    });
                }
            }
            Check::NoText { modules, texts } => {
                for (m, f) in &scan.texts {
                    if m.first().is_some_and(|t| modules.contains(&t.as_str()))
                        && texts.contains(&f.text.as_str())
                    {
                        violations.push(Violation {
                            rule: rule.name,
                            message: format!(
                                "{}:{}: {} uses {}",
                                f.file.display(),
                                f.line,
                                show(m),
                                f.text
                            ),
                        });
                    }
                }
            }
            Check::NoCmd => {
                for f in &scan.cmd_refs {
                    violations.push(Violation {
                        rule: rule.name,
                        message: format!("{}:{}: pulls in {:?}", f.file.display(), f.line, f.text),
                    });
                }
            }
            Check::NoCycles => {
                for cycle in cycles(&graph) {
                    let mut steps = Vec::new();
                    for w in cycle.windows(2) {
                        if let Some(i) = first.get(&(w[0].clone(), w[1].clone())) {
                            steps.push(format!(
                                "\n    {} -> {}: {}:{}: {}",
                                w[0],
                                w[1],
                                i.file.display(),
                                i.line,
                                i.text
                            ));
                        }
                    }
                    violations.push(Violation {
                        rule: rule.name,
                        message: format!("cycle {}{}", cycle.join(" -> "), steps.concat()),
                    });
                }
            }
        }
    }
    Ok(Report {
        violations,
        graph,
        files,
        test_imports: scan.test_imports,
    })
}

fn allowed(allow: Allow, to: &ModPath) -> bool {
    let matches = |entry: &str| {
        let want: Vec<&str> = entry.split("::").collect();
        to.len() >= want.len() && to.iter().zip(&want).all(|(a, b)| a == b)
    };
    match allow {
        Allow::Only(list) => list.iter().any(|e| matches(e)),
        Allow::Not(list) => !list.iter().any(|e| matches(e)),
        Allow::NotBelow { of, except } => {
            let below = of
                .iter()
                .any(|e| matches(e) && to.len() > e.split("::").count());
            !below || except.iter().any(|e| matches(e))
        }
    }
}

/// The graph, lowest layer first (a module's layer is one above its highest dependency), and
/// the rules.
fn summary(r: &Report) -> String {
    let comps = components(&r.graph);
    let same = |a: &str, b: &str| comps.iter().any(|c| c.contains(a) && c.contains(b));
    let mut level: BTreeMap<&str, usize> = BTreeMap::new();
    // Longest path to a leaf; the modules of a cycle share one level, above what they import.
    for _ in 0..=r.graph.len() {
        for (m, deps) in &r.graph {
            let l = deps
                .iter()
                .filter(|d| !same(m, d))
                .map(|d| level.get(d.as_str()).map_or(1, |x| x + 1))
                .max()
                .unwrap_or(0);
            level.insert(m, l);
        }
        for c in &comps {
            let top = c
                .iter()
                .filter_map(|m| level.get(m.as_str()))
                .max()
                .copied();
            for m in c {
                level.insert(m, top.unwrap_or(0));
            }
        }
    }
    let mut order: Vec<(&str, usize)> = level.into_iter().collect();
    order.sort_by_key(|(m, l)| (*l, *m));
    let width = order.iter().map(|(m, _)| m.len()).max().unwrap_or(0);
    let mut out = format!(
        "layers: {} files, {} top-level modules; the imports between them, lowest layer first{}:\n",
        r.files,
        order.len(),
        if comps.is_empty() {
            ""
        } else {
            " (* on a cycle)"
        }
    );
    for (m, l) in &order {
        let deps: Vec<&str> = r.graph[*m].iter().map(String::as_str).collect();
        let mark = if comps.iter().any(|c| c.contains(*m)) {
            "*"
        } else {
            " "
        };
        out.push_str(&format!(
            "  {l:>2}{mark} {m:<width$}  -> {}\n",
            if deps.is_empty() {
                "(nothing of the crate)".to_string()
            } else {
                deps.join(", ")
            }
        ));
    }
    out.push_str(&format!(
        "test code ({} imports) is not checked.\nrules:\n",
        r.test_imports
    ));
    for rule in RULES {
        let broken = r.violations.iter().filter(|v| v.rule == rule.name).count();
        out.push_str(&format!(
            "  {} {}\n",
            if broken == 0 {
                "ok  ".to_string()
            } else {
                format!("{broken:<4}")
            },
            rule.name
        ));
    }
    out
}

/// The strongly connected components of more than one module, each as its members.
fn components(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from];
        while let Some(x) = stack.pop() {
            for y in graph.get(x).into_iter().flatten() {
                if seen.insert(y.clone()) {
                    stack.push(y);
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|k| (k, reach(k))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for a in graph.keys() {
        if !reaches[a].contains(a) || out.iter().any(|c| c.contains(a)) {
            continue;
        }
        out.push(
            graph
                .keys()
                .filter(|b| reaches[a].contains(*b) && reaches[*b].contains(a))
                .cloned()
                .collect(),
        );
    }
    out
}

/// The cycles between top-level modules: for each module on one, the shortest cycle through
/// it (`a -> b -> a`), each cycle once.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut seen: BTreeSet<Vec<String>> = BTreeSet::new();
    for comp in components(graph) {
        for a in &comp {
            // Breadth first from `a` inside the component, until an edge back to `a`.
            let mut prev: BTreeMap<&String, &String> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([a]);
            let mut end = None;
            'bfs: while let Some(x) = queue.pop_front() {
                for y in &graph[x] {
                    if !comp.contains(y) {
                        continue;
                    }
                    if y == a {
                        end = Some(x);
                        break 'bfs;
                    }
                    if y != a && !prev.contains_key(y) {
                        prev.insert(y, x);
                        queue.push_back(y);
                    }
                }
            }
            let Some(mut x) = end else { continue };
            let mut walk = vec![];
            while x != a {
                walk.push(x.clone());
                x = prev[x];
            }
            walk.push(a.clone());
            walk.reverse();
            // The same cycle found from another of its modules starts elsewhere.
            let mut key = walk.clone();
            let min = (0..key.len()).min_by_key(|&i| &key[i]).unwrap_or(0);
            key.rotate_left(min);
            if seen.insert(key) {
                walk.push(a.clone());
                out.push(walk);
            }
        }
    }
    out
}

fn count_files(src: &Path) -> Result<usize> {
    let mut files = Vec::new();
    rs_files(src, &mut files)?;
    Ok(files.len())
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| dir.display().to_string())?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// The module a file is: `src/lib.rs` the root, `src/a/mod.rs` and `src/a.rs` `a`,
/// `src/a/b.rs` `a::b`.
fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" && stem != "lib" && stem != "main" {
            parts.push(stem.to_string());
        }
    }
    parts
}

fn scan(src: &Path) -> Result<Scan> {
    let mut files = Vec::new();
    rs_files(src, &mut files)?;
    let mut out = Scan::default();
    let mut parsed = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).with_context(|| f.display().to_string())?;
        let module = module_of(src, f);
        out.modules.insert(module.clone());
        let p = parse_file(&text, &module);
        for m in &p.inline_modules {
            out.modules.insert(m.clone());
        }
        parsed.push((f.clone(), module, p));
    }
    // Files declared by `#[cfg(test)] mod x;` are test code, and so is everything below them.
    let test_mods: Vec<ModPath> = parsed
        .iter()
        .flat_map(|(_, _, p)| p.test_children.clone())
        .collect();
    let is_test_file = |m: &ModPath| test_mods.iter().any(|t| m.starts_with(t));
    for (file, module, p) in parsed {
        let shown = Path::new("src").join(file.strip_prefix(src).unwrap_or(&file));
        let test_file = is_test_file(&module);
        for r in p.refs {
            let Some(to) = resolve(&out.modules, &r.from, &r.path) else {
                continue;
            };
            if r.test || test_file {
                out.test_imports += 1;
                continue;
            }
            out.imports.push(Import {
                file: shown.clone(),
                line: r.line,
                from: r.from,
                to,
                text: r.path.join("::"),
            });
        }
        if !test_file {
            for (line, text, from) in p.texts {
                out.texts.push((
                    from,
                    Found {
                        file: shown.clone(),
                        line,
                        text,
                    },
                ));
            }
            for (line, table, from) in p.tables {
                out.tables.push((
                    from,
                    Found {
                        file: shown.clone(),
                        line,
                        text: table,
                    },
                ));
            }
        }
        for (line, text) in p.cmd_refs {
            out.cmd_refs.push(Found {
                file: shown.clone(),
                line,
                text,
            });
        }
    }
    Ok(out)
}

/// The module a path names: `crate::`/`$crate::` from the root, `super::` and `self::` from
/// the module it is written in, then the longest prefix that is a module. Bare paths name
/// something of the current module, or another crate, except at the root.
fn resolve(modules: &BTreeSet<ModPath>, from: &ModPath, path: &[String]) -> Option<ModPath> {
    let mut abs: ModPath = Vec::new();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") | Some("$crate") => rest = &path[1..],
        Some("self") => {
            abs = from.clone();
            rest = &path[1..];
        }
        Some("super") => {
            abs = from.clone();
            while rest.first().map(String::as_str) == Some("super") {
                abs.pop()?;
                rest = &rest[1..];
            }
        }
        Some(_) if from.is_empty() => {}
        _ => return None,
    }
    abs.extend(rest.iter().cloned());
    (1..=abs.len())
        .rev()
        .map(|n| abs[..n].to_vec())
        .find(|p| modules.contains(p))
}

/// A path written in a file, in the module it is written in.
#[derive(Debug, Clone, PartialEq)]
struct Ref {
    line: usize,
    from: ModPath,
    path: Vec<String>,
    /// Written in test code.
    test: bool,
}

#[derive(Debug, Default)]
struct Parsed {
    refs: Vec<Ref>,
    inline_modules: Vec<ModPath>,
    /// `#[cfg(test)] mod x;`: the file modules that are test code.
    test_children: Vec<ModPath>,
    /// `(line, text, module)` of texts the text rules look for, outside test code.
    texts: Vec<(usize, String, ModPath)>,
    /// `(line, table, module)` of the tables SQL names, outside test code.
    tables: Vec<(usize, String, ModPath)>,
    /// `(line, path)` of `#[path]`/`include!` strings that reach `cmd/`.
    cmd_refs: Vec<(usize, String)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
    Str(String),
}

/// Tokens with their lines; comments dropped, literals kept as `Str` (char and number
/// literals dropped), lifetimes dropped.
fn lex(text: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let n = c.len();
    // Reads a "..." string starting at the quote; returns the content and the index after.
    let quoted = |mut i: usize, line: &mut usize| {
        let mut s = String::new();
        i += 1;
        while i < n && c[i] != '"' {
            if c[i] == '\\' && i + 1 < n {
                if c[i + 1] == '\n' {
                    *line += 1;
                }
                s.push(c[i + 1]);
                i += 2;
                continue;
            }
            if c[i] == '\n' {
                *line += 1;
            }
            s.push(c[i]);
            i += 1;
        }
        (s, i + 1)
    };
    while i < n {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < n && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < n {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if ch == '"' {
            let start = line;
            let (s, j) = quoted(i, &mut line);
            out.push((Tok::Str(s), start));
            i = j;
        } else if let Some((skip, raw)) = string_prefix(&c, i) {
            // Byte, C and raw strings: b"..", c"..", r"..", r#".."#, br"..", cr#".."#.
            let mut j = i + skip;
            if !raw {
                let start = line;
                let (s, k) = quoted(j, &mut line);
                out.push((Tok::Str(s), start));
                i = k;
                continue;
            }
            let mut hashes = 0;
            while j < n && c[j] == '#' {
                hashes += 1;
                j += 1;
            }
            if j >= n || c[j] != '"' {
                // `r#ident`: a raw identifier.
                let mut k = j;
                while k < n && (c[k].is_alphanumeric() || c[k] == '_') {
                    k += 1;
                }
                out.push((Tok::Ident(c[j..k].iter().collect()), line));
                i = k;
                continue;
            }
            let start = line;
            j += 1;
            let mut s = String::new();
            loop {
                if j >= n {
                    break;
                }
                if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                if c[j] == '\n' {
                    line += 1;
                }
                s.push(c[j]);
                j += 1;
            }
            out.push((Tok::Str(s), start));
            i = j;
        } else if ch == '\'' {
            // A char literal ('a', '\n', '\u{..}') or a lifetime / label ('a).
            if c.get(i + 1) == Some(&'\\') {
                // The escaped character, then up to the closing quote ('\u{..}').
                let mut j = i + 3;
                while j < n && c[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < n && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let mut j = i;
            while j < n && (c[j].is_alphanumeric() || c[j] == '_') {
                j += 1;
            }
            out.push((Tok::Ident(c[i..j].iter().collect()), line));
            i = j;
        } else if ch.is_ascii_digit() {
            while i < n && (c[i].is_alphanumeric() || c[i] == '_' || c[i] == '.') {
                // `1..2` is a range, not a number.
                if c[i] == '.' && c.get(i + 1) == Some(&'.') {
                    break;
                }
                i += 1;
            }
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::Path, line));
            i += 2;
        } else if ch == '$' && c[i + 1..].starts_with(&['c', 'r', 'a', 't', 'e']) {
            out.push((Tok::Ident("$crate".into()), line));
            i += 6;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// Whether a string literal starts at `i` after a prefix (`b`, `c`, `r`, `br`, `cr`): the
/// prefix's length and whether the string is raw. `r#` may also start a raw identifier.
fn string_prefix(c: &[char], i: usize) -> Option<(usize, bool)> {
    let at = |k: usize| c.get(i + k).copied();
    match (at(0)?, at(1), at(2)) {
        ('r', Some('"' | '#'), _) => Some((1, true)),
        ('b' | 'c', Some('"'), _) => Some((1, false)),
        ('b' | 'c', Some('r'), Some('"' | '#')) => Some((2, true)),
        _ => None,
    }
}

/// Parses one file of module `module`.
fn parse_file(text: &str, module: &ModPath) -> Parsed {
    let toks = lex(text);
    let mut p = Parsed::default();
    let is = |i: usize, t: &Tok| toks.get(i).map(|x| &x.0) == Some(t);
    let ident = |i: usize| match toks.get(i) {
        Some((Tok::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    // Inline modules: (path, brace depth inside them).
    let mut scopes: Vec<(ModPath, usize)> = vec![(module.clone(), 0)];
    let mut depth = 0usize;
    // A `#[cfg(test)]` seen, waiting for its item.
    let mut pending_test = false;
    // The test item being read: the depth it started at, and whether it opened a brace.
    let mut test_item: Option<(usize, bool)> = None;
    // `#![cfg(test)]` at the top of the file.
    let mut file_test = false;
    let mut i = 0;
    while i < toks.len() {
        let line = toks[i].1;
        let current = scopes.last().map(|s| s.0.clone()).unwrap_or_default();
        // Attributes.
        if is(i, &Tok::Punct('#')) {
            let inner = is(i + 1, &Tok::Punct('!'));
            let open = if inner { i + 2 } else { i + 1 };
            if is(open, &Tok::Punct('[')) {
                let mut j = open + 1;
                let mut d = 1;
                while j < toks.len() && d > 0 {
                    match &toks[j].0 {
                        Tok::Punct('[') => d += 1,
                        Tok::Punct(']') => d -= 1,
                        _ => {}
                    }
                    j += 1;
                }
                let body = &toks[open + 1..j.saturating_sub(1)];
                let words: Vec<&Tok> = body.iter().map(|t| &t.0).collect();
                let cfg_test = words
                    == [
                        &Tok::Ident("cfg".into()),
                        &Tok::Punct('('),
                        &Tok::Ident("test".into()),
                        &Tok::Punct(')'),
                    ];
                if cfg_test {
                    if inner && depth == 0 {
                        file_test = true;
                    } else if !inner {
                        pending_test = true;
                    }
                }
                if let (Some((Tok::Ident(k), _)), Some((Tok::Punct('='), _))) =
                    (body.first(), body.get(1))
                {
                    if k == "path" {
                        for (t, l) in body {
                            if let Tok::Str(s) = t {
                                if reaches_cmd(s) {
                                    p.cmd_refs.push((*l, s.clone()));
                                }
                            }
                        }
                    }
                }
                i = j;
                continue;
            }
        }
        // The first token of an item after `#[cfg(test)]` starts a test item.
        if pending_test && test_item.is_none() {
            test_item = Some((depth, false));
            pending_test = false;
        }
        let in_test = file_test || test_item.is_some();
        match &toks[i].0 {
            Tok::Punct('{') => {
                depth += 1;
                if let Some((d, opened)) = &mut test_item {
                    if depth == *d + 1 {
                        *opened = true;
                    }
                }
            }
            Tok::Punct('}') => {
                depth = depth.saturating_sub(1);
                if scopes.len() > 1 && scopes.last().is_some_and(|s| s.1 > depth) {
                    scopes.pop();
                }
                if let Some((d, true)) = test_item {
                    if depth == d {
                        test_item = None;
                    }
                }
            }
            Tok::Punct(';') => {
                if let Some((d, false)) = test_item {
                    if depth == d {
                        test_item = None;
                    }
                }
            }
            Tok::Ident(k) if k == "mod" => {
                if let Some(name) = ident(i + 1) {
                    let mut sub = current.clone();
                    sub.push(name.to_string());
                    if is(i + 2, &Tok::Punct('{')) {
                        p.inline_modules.push(sub.clone());
                        scopes.push((sub, depth + 1));
                    } else if is(i + 2, &Tok::Punct(';')) && in_test {
                        p.test_children.push(sub);
                    }
                }
            }
            Tok::Ident(k) if k == "use" && !is(i + 1, &Tok::Path) => {
                // A use declaration, to its `;`.
                let mut j = i + 1;
                while j < toks.len() && !is(j, &Tok::Punct(';')) {
                    j += 1;
                }
                let mut paths = Vec::new();
                use_tree(&toks[i + 1..j], &mut Vec::new(), &mut paths);
                for (path, line) in paths {
                    p.refs.push(Ref {
                        line,
                        from: current.clone(),
                        path,
                        test: in_test,
                    });
                }
                if let Some((d, false)) = test_item {
                    if depth == d {
                        test_item = None;
                    }
                }
                i = j + 1;
                continue;
            }
            Tok::Ident(k)
                if (k == "crate" || k == "$crate" || k == "super" || k == "self")
                    && is(i + 1, &Tok::Path)
                    && !(i > 0 && is(i - 1, &Tok::Path)) =>
            {
                // An inline path: segments joined by `::`.
                let mut path = vec![k.clone()];
                let mut j = i + 1;
                while is(j, &Tok::Path) {
                    match ident(j + 1) {
                        Some(s) => {
                            path.push(s.to_string());
                            j += 2;
                        }
                        None => break,
                    }
                }
                p.refs.push(Ref {
                    line,
                    from: current.clone(),
                    path,
                    test: in_test,
                });
                i = j;
                continue;
            }
            Tok::Ident(k)
                if (k == "include" || k == "include_str" || k == "include_bytes")
                    && is(i + 1, &Tok::Punct('!')) =>
            {
                if let Some((Tok::Str(s), l)) = toks.get(i + 3) {
                    if reaches_cmd(s) {
                        p.cmd_refs.push((*l, s.clone()));
                    }
                }
            }
            _ => {}
        }
        if !in_test {
            for t in watched_texts() {
                if text_at(&toks, i, t) {
                    p.texts.push((line, t.to_string(), current.clone()));
                }
            }
            if let Tok::Str(s) = &toks[i].0 {
                for table in sql_tables(s) {
                    p.tables.push((line, table, current.clone()));
                }
            }
        }
        i += 1;
    }
    p
}

/// The texts the text rules look for.
fn watched_texts() -> impl Iterator<Item = &'static str> {
    RULES
        .iter()
        .flat_map(|r| match r.check {
            Check::NoText { texts, .. } => texts,
            _ => &[],
        })
        .copied()
}

/// The tables a string names when it is SQL (it starts like a statement): the word after
/// `FROM`, `JOIN`, `INTO`, `UPDATE` or `TABLE` (and `TABLE IF NOT EXISTS`), unless that is
/// a sub-query, a keyword or a placeholder of `format!` (`{table}`).
fn sql_tables(s: &str) -> Vec<String> {
    const STATEMENTS: &[&str] = &[
        "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "WITH", "ALTER", "DROP",
    ];
    const BEFORE: &[&str] = &["FROM", "JOIN", "INTO", "UPDATE", "TABLE", "EXISTS"];
    const NOT_TABLES: &[&str] = &["SELECT", "SET", "IF", "LATERAL", "ONLY", "VALUES"];
    let words: Vec<&str> = s
        .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ',' | ';'))
        .filter(|w| !w.is_empty())
        .collect();
    if !words
        .first()
        .is_some_and(|w| STATEMENTS.contains(&w.to_ascii_uppercase().as_str()))
    {
        return Vec::new();
    }
    let mut out = Vec::new();
    for pair in words.windows(2) {
        let (kw, next) = (pair[0].to_ascii_uppercase(), pair[1]);
        if !BEFORE.contains(&kw.as_str()) || next.starts_with('{') || next.starts_with('$') {
            continue;
        }
        if NOT_TABLES.contains(&next.to_ascii_uppercase().as_str()) {
            continue;
        }
        let name = next.trim_matches('"');
        if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            out.push(name.to_string());
        }
    }
    out
}

/// Whether the tokens at `i` spell `text` (identifiers joined by `::`).
fn text_at(toks: &[(Tok, usize)], i: usize, text: &str) -> bool {
    text.split("::").enumerate().all(|(n, word)| {
        let at = i + 2 * n;
        let sep_ok = n == 0 || toks.get(at - 1).map(|t| &t.0) == Some(&Tok::Path);
        sep_ok && toks.get(at).map(|t| &t.0) == Some(&Tok::Ident(word.to_string()))
    })
}

/// A `#[path]` or `include!` string leading into the binary's `cmd/`.
fn reaches_cmd(s: &str) -> bool {
    Path::new(s).components().any(|c| c.as_os_str() == "cmd")
}

/// Expands a use tree (`a::b::{c, d::{e as f}, *}`) into its paths, each with the line of its
/// last segment.
fn use_tree(toks: &[(Tok, usize)], prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, usize)>) {
    let mut i = 0;
    let start = prefix.len();
    let mut last_line = toks.first().map_or(0, |t| t.1);
    // A leading `::` names another crate.
    if matches!(toks.first(), Some((Tok::Path, _))) && prefix.is_empty() {
        return;
    }
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Ident(s) if s == "as" => {
                i += 2;
                continue;
            }
            Tok::Ident(s) => {
                prefix.push(s.clone());
                last_line = toks[i].1;
            }
            Tok::Path => {}
            Tok::Punct('{') => {
                // The group's items, split at top-level commas.
                let mut d = 1;
                let mut j = i + 1;
                let mut item = i + 1;
                while j < toks.len() && d > 0 {
                    match &toks[j].0 {
                        Tok::Punct('{') => d += 1,
                        Tok::Punct('}') => d -= 1,
                        Tok::Punct(',') if d == 1 => {
                            use_tree(&toks[item..j], prefix, out);
                            item = j + 1;
                        }
                        _ => {}
                    }
                    if d == 0 {
                        use_tree(&toks[item..j], prefix, out);
                    }
                    j += 1;
                }
                prefix.truncate(start);
                return;
            }
            Tok::Punct('*') => {}
            _ => {}
        }
        i += 1;
    }
    if prefix.len() > start {
        // `a::{self}` is `a`.
        let mut path = prefix.clone();
        if path.len() > 1 && path.last().map(String::as_str) == Some("self") {
            path.pop();
        }
        out.push((path, last_line));
    }
    prefix.truncate(start);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small tree shaped like the library: wire at the bottom, call control, a service,
    /// the server on top, and a phone.
    const TREE: &[(&str, &str)] = &[
        (
            "lib.rs",
            "//! The crate.\npub mod config;\npub mod phone;\npub mod server;\npub mod services;\npub mod sip;\npub mod store;\npub mod wire;\n",
        ),
        ("wire/mod.rs", "//! Pure data.\npub mod sip;\n"),
        (
            "wire/sip.rs",
            "/// A message.\npub struct Message;\n// Not a clock: Instant::now\nconst S: &str = \"crate::server\";\n",
        ),
        (
            "sip/mod.rs",
            "pub mod transaction;\nuse crate::wire::sip::Message;\n",
        ),
        ("sip/transaction.rs", "use super::super::wire::sip::Message;\n"),
        (
            "services/mod.rs",
            "use crate::{\n    sip::transaction,\n    store,\n};\npub fn f() { crate::wire::sip::Message; }\n",
        ),
        ("store/mod.rs", "use crate::config;\n"),
        (
            "config/mod.rs",
            "pub struct Def;\n#[cfg(test)]\nmod tests {\n    use crate::store;\n}\n#[cfg(test)]\nmod fixtures;\n",
        ),
        ("config/fixtures.rs", "use crate::services;\n"),
        (
            "phone/mod.rs",
            "use crate::sip::transaction::Timers;\nuse crate::wire;\n",
        ),
        (
            "server/mod.rs",
            "use crate::services;\nuse crate::sip;\n",
        ),
    ];

    fn tree(name: &str, plant: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-layers-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in TREE {
            let p = dir.join("src").join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
        }
        for (path, line) in plant {
            let p = dir.join("src").join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let mut text = std::fs::read_to_string(&p).unwrap_or_default();
            text.push_str(line);
            std::fs::write(&p, text).unwrap();
        }
        dir
    }

    fn run(name: &str, plant: &[(&str, &str)]) -> Report {
        let dir = tree(name, plant);
        let r = check(&dir.join("src")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn the_clean_tree_passes_and_its_graph_is_printed() {
        let r = run("clean", &[]);
        let v: Vec<String> = r.violations.iter().map(|v| v.to_string()).collect();
        assert!(v.is_empty(), "{v:#?}");
        assert_eq!(
            r.graph["services"],
            BTreeSet::from(["sip".to_string(), "store".into(), "wire".into()])
        );
        // super::super:: resolved; the test module and the test file are not counted.
        assert_eq!(r.graph["sip"], BTreeSet::from(["wire".to_string()]));
        assert!(r.graph["config"].is_empty());
        assert_eq!(r.test_imports, 2);
        let s = summary(&r);
        assert!(
            s.contains("server") && s.contains("-> services, sip"),
            "{s}"
        );
    }

    #[test]
    fn a_planted_forbidden_import_fails_naming_file_line_and_rule() {
        let r = run(
            "forbidden",
            &[(
                "store/mod.rs",
                "\npub fn f() {\n    crate::sip::transaction::run();\n}\n",
            )],
        );
        let v: Vec<String> = r.violations.iter().map(|v| v.to_string()).collect();
        assert_eq!(
            v,
            ["src/store/mod.rs:4: store imports sip::transaction (crate::sip::transaction::run) \
              [rule: store and config import no services, server, node or sip]"]
        );
    }

    #[test]
    fn the_node_core_may_not_import_a_service() {
        let r = run(
            "node",
            &[
                ("lib.rs", "pub mod node;\n"),
                (
                    "node/mod.rs",
                    "use crate::store;\nuse crate::services::em::Params;\n",
                ),
            ],
        );
        let v: Vec<String> = r.violations.iter().map(|v| v.to_string()).collect();
        assert_eq!(
            v,
            [
                "src/node/mod.rs:2: node imports services (crate::services::em::Params) \
              [rule: node and cluster import no services, client or phone]"
            ]
        );
    }

    #[test]
    fn importing_the_server_fails_twice_and_closes_a_cycle() {
        let r = run(
            "server",
            &[("sip/transaction.rs", "use crate::server::run;\n")],
        );
        let v: Vec<String> = r.violations.iter().map(|v| v.to_string()).collect();
        assert_eq!(v.len(), 4, "{v:#?}");
        assert!(v[0].starts_with("src/sip/transaction.rs:2: sip::transaction imports server (crate::server::run) [rule: nothing in src/ imports server]"), "{v:#?}");
        assert!(
            v[1].ends_with(
                "[rule: sip imports no services, client, server, phone, verify or pcap]"
            ),
            "{v:#?}"
        );
        assert!(
            v[2].starts_with("cycle server -> sip -> server [rule: no cycles"),
            "{v:#?}"
        );
        assert!(
            v[2].ends_with("\n    sip -> server: src/sip/transaction.rs:2: crate::server::run"),
            "{v:#?}"
        );
        assert!(
            v[3].starts_with("cycle services -> sip -> server -> services"),
            "{v:#?}"
        );
    }

    #[test]
    fn a_phone_may_use_sip_transactions_but_not_the_rest_of_call_control() {
        let r = run(
            "phone",
            &[("phone/mod.rs", "use crate::{\n    sip::Other,\n};\n")],
        );
        let v: Vec<String> = r.violations.iter().map(|v| v.to_string()).collect();
        assert_eq!(v.len(), 1, "{v:#?}");
        assert!(
            v[0].starts_with("src/phone/mod.rs:4: phone imports sip (crate::sip::Other)"),
            "{v:#?}"
        );
    }

    #[test]
    fn a_planted_cycle_fails_and_is_printed() {
        let r = run("cycle", &[("config/mod.rs", "use crate::store::Store;\n")]);
        let v: Vec<String> = r.violations.iter().map(|v| v.to_string()).collect();
        assert_eq!(v.len(), 1, "{v:#?}");
        assert!(
            v[0].starts_with("cycle config -> store -> config"),
            "{v:#?}"
        );
        assert!(
            v[0].contains("config -> store: src/config/mod.rs:8: crate::store::Store"),
            "{v:#?}"
        );
        assert!(
            v[0].contains("store -> config: src/store/mod.rs:1: crate::config"),
            "{v:#?}"
        );
    }

    #[test]
    fn the_wire_layer_reads_no_clock() {
        let r = run(
            "clock",
            &[(
                "wire/sip.rs",
                "pub fn stamp() -> std::time::Instant { std::time::Instant::now() }\n",
            )],
        );
        let v: Vec<String> = r.violations.iter().map(|v| v.to_string()).collect();
        assert_eq!(v.len(), 1, "{v:#?}");
        assert!(
            v[0].starts_with("src/wire/sip.rs:5: wire::sip uses Instant::now"),
            "{v:#?}"
        );
    }

    #[test]
    fn the_node_core_queries_no_service_table() {
        let r = run(
            "tables",
            &[
                ("lib.rs", "pub mod node;\n"),
                (
                    "store/mod.rs",
                    "pub const Q: &str = \"SELECT r.device FROM registrations r \\\n JOIN em_logins l ON l.device = r.device\";\n",
                ),
                // The service's own folder may; so may test code and prose.
                (
                    "services/mod.rs",
                    "pub const Q: &str = \"DELETE FROM em_logins WHERE device = $1\";\n",
                ),
                (
                    "node/mod.rs",
                    "pub const E: &str = \"read from the em_logins table\";\n#[cfg(test)]\nmod tests {\n    const Q: &str = \"SELECT * FROM em_logins\";\n}\n",
                ),
            ],
        );
        let v: Vec<String> = r.violations.iter().map(|v| v.to_string()).collect();
        assert_eq!(
            v,
            ["src/store/mod.rs:2: store names the table em_logins \
              [rule: SQL outside services names only the node core's tables]"]
        );
    }

    #[test]
    fn the_node_core_holds_no_service_state() {
        let r = run(
            "state",
            &[
                ("lib.rs", "pub mod node;\n"),
                (
                    "node/mod.rs",
                    "pub fn n(c: &Cluster) -> usize {\n    c.mobility.len()\n}\n",
                ),
            ],
        );
        let v: Vec<String> = r.violations.iter().map(|v| v.to_string()).collect();
        assert_eq!(
            v,
            ["src/node/mod.rs:2: node uses mobility \
              [rule: node, store and server name no service's state]"]
        );
    }

    #[test]
    fn the_server_starts_services_only_through_their_registry() {
        let r = run(
            "registry",
            &[
                (
                    "server/mod.rs",
                    "use crate::services::{ALL, authenticate::basic_user};\nuse crate::services::em::store::EmStore;\n",
                ),
                ("services/mod.rs", "pub mod authenticate;\npub mod em;\n"),
                ("services/authenticate.rs", "pub fn basic_user() {}\n"),
                ("services/em/mod.rs", "pub mod store;\n"),
                ("services/em/store.rs", "pub trait EmStore {}\n"),
            ],
        );
        let v: Vec<String> = r.violations.iter().map(|v| v.to_string()).collect();
        assert_eq!(
            v,
            ["src/server/mod.rs:4: server imports services::em::store \
              (crate::services::em::store::EmStore) \
              [rule: server reaches services only through services::ALL]"]
        );
    }

    #[test]
    fn sql_names_its_tables() {
        assert_eq!(
            sql_tables(
                "SELECT d.device, l.userid FROM em_devices d LEFT JOIN em_logins l \
                 ON l.device = d.device WHERE d.device IN (SELECT device FROM x)"
            ),
            ["em_devices", "em_logins", "x"]
        );
        assert_eq!(
            sql_tables(
                "INSERT INTO a (k) VALUES ($1) ON CONFLICT (k) DO UPDATE SET k = excluded.k"
            ),
            ["a"]
        );
        assert_eq!(
            sql_tables("CREATE TABLE IF NOT EXISTS \"t\" (k TEXT)"),
            ["t"]
        );
        assert_eq!(sql_tables("update b set k = 1"), ["b"]);
        assert_eq!(
            sql_tables("DELETE FROM {table} WHERE k = $1"),
            Vec::<String>::new()
        );
        assert_eq!(sql_tables("read from the database"), Vec::<String>::new());
    }

    #[test]
    fn nothing_reaches_cmd() {
        let r = run(
            "cmd",
            &[("store/mod.rs", "#[path = \"../../cmd/db.rs\"]\nmod db;\n")],
        );
        let v: Vec<String> = r.violations.iter().map(|v| v.to_string()).collect();
        assert_eq!(v.len(), 1, "{v:#?}");
        assert!(
            v[0].contains("src/store/mod.rs:2: pulls in \"../../cmd/db.rs\""),
            "{v:#?}"
        );
    }

    #[test]
    fn lexing_sets_comments_strings_and_chars_aside() {
        let toks = lex("let a = '\"'; /* crate::x */ let b = r#\"crate::y\"#; 'l: loop {}\nc::d");
        let idents: Vec<&str> = toks
            .iter()
            .filter_map(|(t, _)| match t {
                Tok::Ident(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(idents, ["let", "a", "let", "b", "loop", "c", "d"]);
        assert_eq!(toks.last().map(|t| t.1), Some(2));
    }

    #[test]
    fn use_groups_expand_with_the_line_of_each_path() {
        let toks = lex("crate::{\n  a::{b, c as d},\n  e,\n  self,\n}");
        let mut out = Vec::new();
        use_tree(&toks, &mut Vec::new(), &mut out);
        let got: Vec<(String, usize)> = out.into_iter().map(|(p, l)| (p.join("::"), l)).collect();
        assert_eq!(
            got,
            [
                ("crate::a::b".to_string(), 2),
                ("crate::a::c".to_string(), 2),
                ("crate::e".to_string(), 3),
                ("crate".to_string(), 4),
            ]
        );
    }
}
