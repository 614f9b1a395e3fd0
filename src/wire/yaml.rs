//! YAML as the cluster definition and the verifier's policy files use it: reader limits that
//! scale with the text ([`options`]), and a path in a document (`devices[3].device_pool`)
//! mapped back to a line and column ([`Locator`]).
//!
//! Semantic validation works on plain structs; only when it finds a problem is the YAML read a
//! second time into this tree of located nodes, so the happy path pays nothing for locations.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Reader limits that scale with the file: a cluster of 10,000 phones is far past the library's
/// defaults, while alias bombs (expansion far beyond the text's size) stay refused.
pub fn options(text: &str) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = budget.max_nodes.max(text.len());
    budget.max_events = budget.max_events.max(text.len().saturating_mul(2));
    let mut opts = serde_saphyr::Options::default();
    opts.budget = Some(budget);
    opts
}

/// One step of a path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the document root, printed as `devices[3].lines[0].dn`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Path(pub Vec<Seg>);

impl Path {
    pub fn root() -> Path {
        Path(Vec::new())
    }
    pub fn key(&self, k: &str) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }
    pub fn index(&self, i: usize) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            match s {
                Seg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        if first {
            f.write_str("(document)")?;
        }
        Ok(())
    }
}

#[derive(Debug)]
enum Node {
    Map(Vec<(String, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i128<E: de::Error>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u128<E: de::Error>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut v = Vec::new();
                while let Some(n) = seq.next_element::<Spanned<Node>>()? {
                    v.push(n);
                }
                Ok(Node::Seq(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = map.next_key::<KeyText>()? {
                    let val = map.next_value::<Spanned<Node>>()?;
                    v.push((k.0, val));
                }
                Ok(Node::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping key as text whatever its YAML type (`10001:` is a number to YAML).
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeyText, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<KeyText, E> {
                Ok(KeyText(s.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<KeyText, E> {
                Ok(KeyText(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<KeyText, E> {
                Ok(KeyText(n.to_string()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<KeyText, E> {
                Ok(KeyText(b.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<KeyText, E> {
                Ok(KeyText(n.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Located tree of one YAML document.
pub struct Locator {
    root: Option<Spanned<Node>>,
}

impl Locator {
    /// Reads `text`; a document that cannot be read yields a locator that knows nothing.
    pub fn new(text: &str) -> Locator {
        Locator {
            root: serde_saphyr::from_str_with_options::<Spanned<Node>>(text, options(text)).ok(),
        }
    }

    /// Line and column (1-based) of the deepest node on `path` that exists: a missing field
    /// points at the mapping that should have held it.
    pub fn locate(&self, path: &Path) -> Option<(u64, u64)> {
        let mut node = self.root.as_ref()?;
        let mut best = (node.referenced.line(), node.referenced.column());
        for seg in &path.0 {
            let next = match (&node.value, seg) {
                (Node::Map(entries), Seg::Key(k)) => {
                    entries.iter().find(|(name, _)| name == k).map(|(_, v)| v)
                }
                (Node::Seq(items), Seg::Index(i)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => {
                    node = n;
                    if n.referenced.line() > 0 {
                        best = (n.referenced.line(), n.referenced.column());
                    }
                }
                None => break,
            }
        }
        (best.0 > 0).then_some(best)
    }
}

impl Locator {
    /// The deepest path whose node starts on `line`: names the field of an error the YAML
    /// reader reported only by position.
    pub fn path_at(&self, line: u64) -> Option<Path> {
        fn walk(n: &Spanned<Node>, line: u64, here: &Path, best: &mut Option<Path>) {
            if n.referenced.line() == line {
                *best = Some(here.clone());
            }
            match &n.value {
                Node::Map(entries) => {
                    for (k, v) in entries {
                        walk(v, line, &here.key(k), best);
                    }
                }
                Node::Seq(items) => {
                    for (i, v) in items.iter().enumerate() {
                        walk(v, line, &here.index(i), best);
                    }
                }
                Node::Scalar => {}
            }
        }
        let mut best = None;
        walk(self.root.as_ref()?, line, &Path::root(), &mut best);
        best.filter(|p| !p.0.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_of_nested_fields() {
        let text = "a: 1\nlist:\n  - name: x\n    pool: p1\n  - name: y\n    pool: p2\n";
        let l = Locator::new(text);
        let p = Path::root().key("list").index(1).key("pool");
        assert_eq!(l.locate(&p).map(|x| x.0), Some(6));
        // A missing key points at its parent item.
        let p = Path::root().key("list").index(0).key("missing");
        assert_eq!(l.locate(&p).map(|x| x.0), Some(3));
        assert_eq!(p.to_string(), "list[0].missing");
    }
}
