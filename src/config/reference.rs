//! The configuration reference (`fixtures/clusters/REFERENCE.md`), generated from the model:
//! every section and field of [`super::model`], its YAML type, its default and its doc comment.
//! `cargo xtask config-reference` writes it; a test checks the file matches.
//!
//! The model's source is read for names, types and comments (they exist only there); defaults
//! of the single sections are the values the code really gives a definition that leaves them
//! out, and a `default = "fn"` is shown as what that function returns.
//!
//! The services' sections live in their own model files: `services::reference_markdown` hands
//! them in, with the sections and the defaults of a minimal definition read with every service.

use std::collections::BTreeMap;

use super::section::SectionSpec;

/// The generic model's source, as compiled.
pub const MODEL: &str = include_str!("model.rs");

struct Field {
    name: String,
    ty: String,
    doc: String,
    /// `None`: required.
    default: Option<String>,
}

struct Item {
    name: String,
    doc: String,
    fields: Vec<Field>,
    /// For enums: the values as YAML spells them.
    values: Vec<String>,
}

fn kebab(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// What a `fn name() -> T { EXPR }` of the model returns, as written.
fn function_value(sources: &[&str], name: &str) -> Option<String> {
    let pat = format!("fn {name}() -> ");
    let model = sources.iter().find(|s| s.contains(&pat))?;
    let start = model.find(&pat)?;
    let body = &model[start..];
    let open = body.find('{')?;
    let close = body.find("\n}")?;
    // The body without comment lines; a multi-line one is described, not quoted.
    let lines: Vec<&str> = body[open + 1..close]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .collect();
    let joined = lines.join("\n");
    let expr = joined.as_str();
    let expr = expr
        .strip_suffix(".to_string()")
        .or_else(|| expr.strip_suffix(".into()"))
        .unwrap_or(expr);
    Some(match expr {
        "Dscp::CS0" | "Dscp::Cs0" => "cs0".into(),
        e if e.starts_with("Dscp::") => e.trim_start_matches("Dscp::").to_ascii_lowercase(),
        e if e.contains("vec![") && name == "all" => "every service".into(),
        e if e.contains('\n') => return None,
        e => e.to_string(),
    })
}

/// A Rust type as the YAML reader expects it.
fn yaml_type(ty: &str) -> String {
    let ty = ty.trim().trim_end_matches(',');
    if let Some(inner) = ty.strip_prefix("Option<").and_then(|t| t.strip_suffix('>')) {
        return yaml_type(inner);
    }
    if let Some(inner) = ty.strip_prefix("Vec<").and_then(|t| t.strip_suffix('>')) {
        return format!("list of {}", yaml_type(inner));
    }
    match ty {
        "String" => "string".into(),
        "bool" => "boolean".into(),
        "u8" | "u16" | "u32" | "u64" | "usize" | "i64" | "i32" => "integer".into(),
        "f64" | "f32" => "number".into(),
        "std::net::IpAddr" | "IpAddr" => "IP address".into(),
        other => format!("[{other}](#{})", other.to_ascii_lowercase()),
    }
}

/// A `#[serde(flatten)]` field: where the services' sections go.
const SECTIONS: &str = "#sections";

fn parse(model: &str, sources: &[&str]) -> Vec<Item> {
    let mut items = Vec::new();
    let mut doc: Vec<String> = Vec::new();
    let mut attrs: Vec<String> = Vec::new();
    let mut cur: Option<Item> = None;
    let mut in_enum = false;
    for line in model.lines() {
        let t = line.trim();
        if let Some(d) = t.strip_prefix("///") {
            doc.push(d.trim().to_string());
            continue;
        }
        if t.starts_with("#[") {
            attrs.push(t.to_string());
            continue;
        }
        if let Some(rest) = t
            .strip_prefix("pub struct ")
            .or_else(|| t.strip_prefix("pub enum "))
        {
            if t.ends_with('{') {
                in_enum = t.starts_with("pub enum");
                cur = Some(Item {
                    name: rest.trim_end_matches('{').trim().to_string(),
                    doc: doc.join(" "),
                    fields: Vec::new(),
                    values: Vec::new(),
                });
            }
        } else if t == "}" && line.starts_with('}') {
            if let Some(i) = cur.take() {
                items.push(i);
            }
        } else if let Some(item) = cur
            .as_mut()
            .filter(|_| line.starts_with("    ") && !line.starts_with("     "))
        {
            if in_enum {
                let v = t.trim_end_matches(',');
                let v = v.split(['(', '{', ' ']).next().unwrap_or(v);
                if !v.is_empty() && v.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
                    let renamed = attrs.iter().find_map(|a| {
                        a.split("rename = \"")
                            .nth(1)
                            .and_then(|r| r.split('"').next())
                    });
                    item.values
                        .push(renamed.map_or_else(|| kebab(v), str::to_string));
                }
            } else if let Some(f) = t.strip_prefix("pub ") {
                if let Some((name, ty)) = f.split_once(": ") {
                    let serde = attrs
                        .iter()
                        .filter(|a| a.starts_with("#[serde("))
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" ");
                    let default = if let Some(func) = serde
                        .split("default = \"")
                        .nth(1)
                        .and_then(|r| r.split('"').next())
                    {
                        let fname = func.rsplit("::").next().unwrap_or(func);
                        Some(
                            function_value(sources, fname).unwrap_or_else(|| format!("`{func}()`")),
                        )
                    } else if serde.contains("default") {
                        Some(String::new())
                    } else {
                        None
                    };
                    let name = if serde.contains("flatten") {
                        SECTIONS
                    } else {
                        name.trim()
                    };
                    item.fields.push(Field {
                        name: name.to_string(),
                        ty: ty.trim_end_matches(',').to_string(),
                        doc: doc.join(" "),
                        default,
                    });
                }
            }
        }
        if !t.is_empty() {
            doc.clear();
            attrs.clear();
        }
    }
    items
}

/// A value of the defaults tree as the reference prints it.
fn shown(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "none".into(),
        serde_json::Value::String(s) => format!("`{s}`"),
        serde_json::Value::Array(a) if a.is_empty() => "empty".into(),
        serde_json::Value::Object(_) => String::new(),
        other => format!("`{other}`"),
    }
}

/// The reference as markdown: the generic model and the services' model files (`models`), the
/// services' `sections`, and `minimal`, a minimal definition read with every service (the
/// defaults of the single sections: what a definition that leaves them out gets).
pub fn markdown(models: &[&str], sections: &[&SectionSpec], minimal: &serde_json::Value) -> String {
    let mut sources = vec![MODEL];
    sources.extend(models);
    let mut items: Vec<Item> = sources.iter().flat_map(|m| parse(m, &sources)).collect();
    // The services' sections, where the model keeps their place.
    for item in &mut items {
        let service_parameters = match item.name.as_str() {
            "ServiceParameters" => true,
            "ClusterDefinition" => false,
            _ => continue,
        };
        let mut fields = Vec::new();
        for f in item.fields.drain(..) {
            if f.name != SECTIONS {
                fields.push(f);
                continue;
            }
            for s in sections
                .iter()
                .filter(|s| s.is_service_parameter() == service_parameters)
            {
                fields.push(Field {
                    name: s.key().to_string(),
                    ty: s.type_name().to_string(),
                    doc: String::new(),
                    default: Some(String::new()),
                });
            }
        }
        item.fields = fields;
    }
    let minimal = minimal.clone();
    // Where each struct sits in a definition (its first path), for its defaults.
    let by_name: BTreeMap<&str, &Item> = items.iter().map(|i| (i.name.as_str(), i)).collect();
    let mut paths: BTreeMap<String, Vec<String>> = BTreeMap::new();
    fn walk(
        name: &str,
        path: Vec<String>,
        by: &BTreeMap<&str, &Item>,
        out: &mut BTreeMap<String, Vec<String>>,
    ) {
        if out.contains_key(name) {
            return;
        }
        out.insert(name.to_string(), path.clone());
        if let Some(item) = by.get(name) {
            for f in &item.fields {
                let inner = f.ty.trim_end_matches(',');
                if !inner.starts_with("Vec<")
                    && by.contains_key(inner.trim_start_matches("Option<").trim_end_matches('>'))
                {
                    let mut p = path.clone();
                    p.push(f.name.clone());
                    walk(
                        inner.trim_start_matches("Option<").trim_end_matches('>'),
                        p,
                        by,
                        out,
                    );
                }
            }
        }
    }
    walk("ClusterDefinition", Vec::new(), &by_name, &mut paths);
    let mut out = String::from(
        "# Cluster definition reference\n\n\
         Generated from `src/config/model.rs` by `cargo xtask config-reference`; a test checks \
         that it matches the code. Do not edit by hand.\n\n\
         A definition is one YAML document whose top level is [ClusterDefinition](#clusterdefinition). \
         *Default* is what a field left out gets; *required* fields must be given. Unknown fields \
         are refused (`ucm config check` names them).\n",
    );
    for item in &items {
        if item.fields.is_empty() && item.values.is_empty() {
            continue;
        }
        out.push_str(&format!("\n## {}\n\n", item.name));
        if !item.doc.is_empty() {
            out.push_str(&format!("{}\n\n", item.doc));
        }
        if !item.values.is_empty() {
            out.push_str("One of: ");
            out.push_str(
                &item
                    .values
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            out.push_str(".\n");
            continue;
        }
        let base = paths
            .get(&item.name)
            .map(|p| p.iter().fold(&minimal, |v, k| &v[k.as_str()]));
        out.push_str("| Field | Type | Default | Meaning |\n|---|---|---|---|\n");
        for f in &item.fields {
            let default = match (&f.default, base.map(|b| &b[f.name.as_str()])) {
                (None, _) => "required".to_string(),
                (Some(_), Some(v)) if !v.is_null() || f.ty.starts_with("Option<") => {
                    let s = shown(v);
                    if s.is_empty() {
                        "see below".into()
                    } else {
                        s
                    }
                }
                (Some(d), _) if !d.is_empty() => d.clone(),
                (Some(_), _) if f.ty.starts_with("Option<") => "none".into(),
                (Some(_), _) if f.ty.starts_with("Vec<") => "empty".into(),
                (Some(_), _) if f.ty == "bool" => "`false`".into(),
                (Some(_), _) => "the type's default".into(),
            };
            let default = if default.starts_with('`')
                || default.contains(' ')
                || default == "required"
                || default == "none"
                || default == "empty"
            {
                default
            } else {
                format!("`{default}`")
            };
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                f.name,
                yaml_type(&f.ty),
                default,
                f.doc.replace('|', "\\|")
            ));
        }
    }
    out
}

/// Where the reference lives in the repository.
pub const REFERENCE_PATH: &str = "fixtures/clusters/REFERENCE.md";
