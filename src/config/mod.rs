//! Cluster definitions: reading the YAML, checking it, and turning clear-text secrets into hashes.
//!
//! Every error names the file, the line and the field, e.g.
//! `demo.yaml:42:18: devices[3].device_pool: unknown device pool "Branch"`.

mod dialplan;
pub mod model;
pub mod reference;
pub mod section;
pub mod validate;

use std::fmt;
use std::path::Path as FsPath;

pub use model::ClusterDefinition;
pub use section::{Schema, Section, SectionSpec};

use crate::wire::yaml;

/// The demo cluster, built into the binary so `ucm serve` alone is a working lab.
pub const DEMO_YAML: &str = include_str!("../../fixtures/clusters/demo.yaml");
/// The name the demo cluster's errors and logs use for its source.
pub const DEMO_ORIGIN: &str = "fixtures/clusters/demo.yaml";

/// One problem in a definition, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// The field, as a path like `devices[3].device_pool`; empty for syntax errors.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a definition could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigError>),
}

/// Reads and checks a definition file against the generic model and `schema` (the services':
/// `services::load_file` gives it).
pub fn load_file_with(path: &FsPath, schema: &Schema) -> Result<ClusterDefinition, LoadError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        file: file.clone(),
        source,
    })?;
    parse_with(&text, &file, schema)
}

/// Parses and checks a definition against the generic model and `schema` (the services'
/// sections and checks: `services::parse_str` gives it); `origin` names the source in errors.
///
/// Every problem is reported at once: a YAML syntax error alone (nothing after it can be read
/// reliably), otherwise each section and each list item is read on its own so that one wrong
/// field does not hide the next, and the items that read are checked for meaning as well.
pub fn parse_with(
    text: &str,
    origin: &str,
    schema: &Schema,
) -> Result<ClusterDefinition, LoadError> {
    let Partial {
        mut def,
        mut errors,
        index,
        cluster_read,
    } = match serde_saphyr::from_str_with_options(text, yaml::options(text)) {
        Ok(def) => Partial {
            def,
            errors: Vec::new(),
            index: Vec::new(),
            cluster_read: true,
        },
        Err(first) => read_by_parts(text, origin, &first).map_err(LoadError::Invalid)?,
    };
    read_service_sections(text, origin, schema, &mut def, &mut errors);
    let mut issues = validate::validate(&def);
    let mut diag = validate::Diagnostics::default();
    for check in &schema.checks {
        check(&def, &mut diag);
    }
    issues.extend(diag.issues);
    if issues.is_empty() && errors.is_empty() {
        return Ok(def);
    }
    let locator = yaml::Locator::new(text);
    for i in issues {
        // The stand-in for a `cluster` that did not read has nothing to report.
        if !cluster_read && matches!(i.path.0.first(), Some(yaml::Seg::Key(k)) if k == "cluster") {
            continue;
        }
        let path = original_path(i.path, &index);
        let (line, column) = locator.locate(&path).unwrap_or((1, 1));
        errors.push(ConfigError {
            file: origin.to_string(),
            line,
            column,
            field: path.to_string(),
            message: i.message,
        });
    }
    errors.sort_by_key(|e| (e.line, e.column));
    Err(LoadError::Invalid(errors))
}

/// Reads the services' sections typed from the text (their mistakes located like any other
/// field's), refuses keys no part of the model claims, and leaves each section in `def` in its
/// canonical form: every default written out, a top-level section that is all defaults left
/// out (what `ucm db export` writes). A section that does not read is left out, so the checks
/// see its defaults.
fn read_service_sections(
    text: &str,
    origin: &str,
    schema: &Schema,
    def: &mut ClusterDefinition,
    errors: &mut Vec<ConfigError>,
) {
    let mut unknown: Vec<(yaml::Path, String, Vec<&str>)> = Vec::new();
    for k in def.sections.keys() {
        if schema.section(false, k).is_none() {
            unknown.push((
                yaml::Path::root().key(k),
                k.to_string(),
                schema.known_keys(false),
            ));
        }
    }
    for k in def.service_parameters.sections.keys() {
        if schema.section(true, k).is_none() {
            let path = yaml::Path::root().key("service_parameters").key(k);
            unknown.push((path, k.to_string(), schema.known_keys(true)));
        }
    }
    let locator = std::cell::OnceCell::new();
    let locator = || locator.get_or_init(|| yaml::Locator::new(text));
    for (path, key, known) in unknown {
        let (line, column) = locator().locate(&path).unwrap_or((1, 1));
        errors.push(ConfigError {
            file: origin.to_string(),
            line,
            column,
            field: path.to_string(),
            message: format!(
                "unknown field `{key}`, expected one of {}",
                known.join(", ")
            ),
        });
        match path.0.len() {
            1 => def.sections.remove(&key),
            _ => def.service_parameters.sections.remove(&key),
        };
    }
    if schema.sections.is_empty() {
        return;
    }
    // A block mapping's entry, cut out of the text; a key with nothing after it is null, not
    // the next top-level key.
    let piece = |key: &str| {
        let p = yaml::top_level_block(text, key)?;
        let line_start = text[..p.range.start].rfind('\n').map_or(0, |i| i + 1);
        (line_start != p.range.start).then(|| yaml::isolate(text, &p))
    };
    let holder = piece("service_parameters");
    let mut canonical = Vec::new();
    for spec in &schema.sections {
        let alone = if spec.is_service_parameter() {
            holder.clone()
        } else {
            piece(spec.key())
        };
        let read = match &alone {
            Some(a) => spec
                .read(&a.text, yaml::options(text))
                .map_err(|e| located(origin, locator(), &e, a.lines_before, "")),
            // Not in the text as a block of its own (a flow-style document): from the value.
            None => match def.section_value(spec.path) {
                Some(v) => spec.canonical(v).map(Some).map_err(|message| {
                    let path = spec.path.iter().fold(yaml::Path::root(), |p, k| p.key(k));
                    let (line, column) = locator().locate(&path).unwrap_or((1, 1));
                    ConfigError {
                        file: origin.to_string(),
                        line,
                        column,
                        field: path.to_string(),
                        message,
                    }
                }),
                None => Ok(None),
            },
        };
        let value = match read {
            Ok(Some(v)) => Some(v),
            Ok(None) => Some(spec.default_value()),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let value = value.filter(|v| !(spec.omit_default && *v == spec.default_value()));
        canonical.push((spec, value));
    }
    def.sections.clear();
    def.service_parameters.sections.clear();
    for (spec, value) in canonical {
        let Some(v) = value else { continue };
        if spec.is_service_parameter() {
            def.service_parameters.sections.set(spec.key(), v);
        } else {
            def.sections.set(spec.key(), v);
        }
    }
    schema.attach(def);
}

/// What a definition that did not read whole yields: see [`read_by_parts`].
struct Partial {
    def: ClusterDefinition,
    errors: Vec<ConfigError>,
    index: ItemIndex,
    /// Whether `cluster` read (otherwise `def` has a stand-in).
    cluster_read: bool,
}

/// Which item of the document each item of a list section read by parts was.
type ItemIndex = Vec<(&'static str, Vec<usize>)>;

/// A semantic issue's path in the document: items that did not read are not in the definition,
/// so `devices[2]` of the definition may be `devices[3]` of the file.
fn original_path(path: yaml::Path, index: &ItemIndex) -> yaml::Path {
    let mut segs = path.0;
    if let [yaml::Seg::Key(k), yaml::Seg::Index(i), ..] = segs.as_mut_slice() {
        if let Some((_, map)) = index.iter().find(|(s, _)| s == k) {
            if let Some(orig) = map.get(*i) {
                *i = *orig;
            }
        }
    }
    yaml::Path(segs)
}

fn located(
    origin: &str,
    locator: &yaml::Locator,
    e: &serde_saphyr::Error,
    lines_before: u64,
    prefix: &str,
) -> ConfigError {
    let (line, column) = e
        .location()
        .map(|l| (l.line() + lines_before, l.column()))
        .unwrap_or((lines_before + 1, 1));
    // The field on the error's line, when the document reads as YAML.
    let field = locator
        .path_at(line)
        .map(|p| p.to_string())
        .unwrap_or_default();
    ConfigError {
        file: origin.to_string(),
        line,
        column,
        field,
        message: format!("{prefix}{}", plain_message(e)),
    }
}

/// The definition's sections as `ClusterDefinition` names them: lists, then single mappings.
macro_rules! read_sections {
    ($cluster:ident, $text:ident, $origin:ident, $locator:ident, $parts:ident, $errors:ident, $index:ident;
     lists: $($list:ident),*; single: $($one:ident),*) => {{
        $( let mut $list = Vec::new(); )*
        $( let mut $one = None; )*
        let mut sections = section::Sections::default();
        for part in &$parts {
            match part.key.as_str() {
                $( stringify!($list) => {
                    let kept = read_list($text, $origin, &$locator, part, &mut $list, &mut $errors);
                    $index.push((stringify!($list), kept));
                } )*
                $( stringify!($one) => $one = read_one($text, $origin, &$locator, part, &mut $errors), )*
                "cluster" => {}
                // A service's section (read typed later) or an unknown one (refused later).
                other => {
                    if let Some(v) = read_one::<serde_json::Value>($text, $origin, &$locator, part, &mut $errors) {
                        sections.set(other, v);
                    }
                }
            }
        }
        ClusterDefinition {
            cluster: $cluster,
            sections,
            $( $list, )*
            $( $one: $one.unwrap_or_default(), )*
        }
    }};
}

/// Reads a definition that did not read whole, section by section and item by item: every
/// structural error, and the definition made of what did read. A syntax error is the only
/// error reported.
fn read_by_parts(
    text: &str,
    origin: &str,
    first: &serde_saphyr::Error,
) -> Result<Partial, Vec<ConfigError>> {
    let locator = match yaml::Locator::read(text) {
        Ok(l) => l,
        Err(e) => {
            let none = yaml::Locator::new("");
            return Err(vec![located(origin, &none, &e, 0, "YAML syntax error: ")]);
        }
    };
    let parts = locator.parts(text);
    let mut errors = Vec::new();
    let mut index: ItemIndex = Vec::new();
    let mut cluster: Option<model::ClusterInfo> = None;
    for part in parts.iter().filter(|p| p.key == "cluster") {
        cluster = read_one(text, origin, &locator, part, &mut errors);
    }
    // Without a readable `cluster` the rest is still checked, against a stand-in whose own
    // issues are not reported (`cluster` is left out of the index: see `parse_str`).
    let cluster_read = cluster.is_some();
    let cluster = cluster.unwrap_or_else(|| model::ClusterInfo {
        id: String::new(),
        name: String::new(),
        version: model::default_version(),
        security_mode: Default::default(),
    });
    let def = read_sections!(cluster, text, origin, locator, parts, errors, index;
        lists: nodes, partitions, calling_search_spaces, regions, locations, device_pools,
            sip_trunks, route_groups, route_lists, route_patterns, translation_patterns,
            phone_security_profiles, phone_services, directory_numbers, devices, device_profiles,
            route_points, end_users, application_users;
        single: enterprise_parameters, service_parameters, qos);
    // The whole document's first error is new when it is outside every part (a missing
    // `cluster`).
    let whole = located(origin, &locator, first, 0, "");
    if !errors
        .iter()
        .any(|e| e.line == whole.line && e.message == whole.message)
    {
        errors.push(whole);
    }
    Ok(Partial {
        def,
        errors,
        index,
        cluster_read,
    })
}

/// Reads a list section item by item into `out`; returns the document index of each item read.
fn read_list<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &str,
    locator: &yaml::Locator,
    part: &yaml::Part,
    out: &mut Vec<T>,
    errors: &mut Vec<ConfigError>,
) -> Vec<usize> {
    let Some(items) = &part.items else {
        // A flow sequence (or not a sequence): read as one.
        if let Some(all) =
            read_piece::<Vec<T>>(text, origin, locator, &part.value, &part.key, errors)
        {
            *out = all;
        }
        return (0..out.len()).collect();
    };
    let mut kept = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(v) = read_piece::<T>(
            text,
            origin,
            locator,
            item,
            &format!("{}[{i}]", part.key),
            errors,
        ) {
            out.push(v);
            kept.push(i);
        }
    }
    kept
}

fn read_one<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &str,
    locator: &yaml::Locator,
    part: &yaml::Part,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    read_piece(text, origin, locator, &part.value, &part.key, errors)
}

fn read_piece<T: serde::de::DeserializeOwned>(
    text: &str,
    origin: &str,
    locator: &yaml::Locator,
    piece: &yaml::Piece,
    path: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let alone = yaml::isolate(text, piece);
    match serde_saphyr::from_str_with_options::<T>(&alone.text, yaml::options(text)) {
        Ok(v) => Some(v),
        Err(e) => {
            let mut error = located(origin, locator, &e, alone.lines_before, "");
            // A missing field is missed by the item, not by the field on the line the reader
            // stopped at.
            if error.message.starts_with("missing field") {
                error.field = path.to_string();
            }
            errors.push(error);
            None
        }
    }
}

/// serde-saphyr's message without its snippet and trailing location (we print our own).
fn plain_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let first = text.lines().next().unwrap_or("invalid YAML").trim();
    // Strip a trailing " at line N column M" the library adds; the prefix already says it.
    match first.find(" at line ") {
        Some(i) => first[..i].to_string(),
        None => first.to_string(),
    }
}

/// Writes a definition as YAML, the form `ucm db export` prints and `ucm db import` reads.
pub fn to_yaml(def: &ClusterDefinition) -> Result<String, serde_saphyr::SerializeError> {
    let mut opts = serde_saphyr::SerializerOptions::default();
    // Hashes and URLs stay on one line instead of folded block scalars.
    opts.prefer_block_scalars = false;
    serde_saphyr::to_string_with_options(def, opts)
}

/// Replaces clear-text passwords and PINs with argon2 hashes, using every core.
pub fn hash_secrets(def: &mut ClusterDefinition) {
    // Digest credentials become the RFC 2617 HA1 (cheap: MD5 is what SIP digest needs).
    for u in &mut def.end_users {
        if let Some(c) = u.digest_credentials.take() {
            u.digest_ha1 = Some(crate::auth::ha1(&u.userid, crate::auth::REALM, &c));
        }
    }
    let mut jobs: Vec<(&mut Option<String>, &mut Option<String>)> = Vec::new();
    for u in &mut def.end_users {
        jobs.push((&mut u.password, &mut u.password_hash));
        jobs.push((&mut u.pin, &mut u.pin_hash));
    }
    for a in &mut def.application_users {
        jobs.push((&mut a.password, &mut a.password_hash));
    }
    jobs.retain(|(clear, _)| clear.is_some());
    if jobs.is_empty() {
        return;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = jobs.len().div_ceil(threads);
    std::thread::scope(|s| {
        for part in jobs.chunks_mut(chunk) {
            s.spawn(move || {
                for (clear, hash) in part.iter_mut() {
                    if let Some(c) = clear.take() {
                        **hash = Some(crate::auth::hash_secret(&c));
                    }
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_errors_carry_line_numbers() {
        let text = "cluster:\n  id: x\n  name: y\n  security_mode: open\n";
        let e = parse_with(text, "t.yaml", &Schema::default()).unwrap_err();
        let LoadError::Invalid(errs) = e else {
            panic!()
        };
        assert_eq!(errs[0].line, 4, "{}", errs[0]);
        println!("{}", errs[0]);
        let text = "cluster:\n  id: x\n  name: y\n  colour: blue\n";
        let LoadError::Invalid(errs) = parse_with(text, "t.yaml", &Schema::default()).unwrap_err()
        else {
            panic!()
        };
        println!("{}", errs[0]);
        assert_eq!(errs[0].line, 4);
    }
}
