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
        Locator::read(text).unwrap_or(Locator { root: None })
    }

    /// Reads `text` as YAML without any schema: the error is a syntax error (or a reader limit),
    /// never a field the schema misses.
    pub fn read(text: &str) -> Result<Locator, serde_saphyr::Error> {
        Ok(Locator {
            root: Some(serde_saphyr::from_str_with_options::<Spanned<Node>>(
                text,
                options(text),
            )?),
        })
    }

    /// The top-level entries of a mapping document with the byte ranges of their values and,
    /// for a block sequence, of each item: parts that can be read alone (see [`isolate`]) so
    /// that one mistake does not hide the next.
    pub fn parts(&self, text: &str) -> Vec<Part> {
        let Some(Node::Map(entries)) = self.root.as_ref().map(|r| &r.value) else {
            return Vec::new();
        };
        let start_of = |n: &Spanned<Node>| {
            let o = n.defined.span().byte_offset()? as usize;
            (o <= text.len() && text.is_char_boundary(o)).then_some((o, n.defined.line()))
        };
        let mut parts = Vec::new();
        for (key, value) in entries {
            let Some((start, line)) = start_of(value) else {
                continue;
            };
            // A top-level value ends at the next line that starts in the first column.
            let range = start..block_end(text, start, 1);
            let items = match &value.value {
                Node::Seq(items) => items
                    .iter()
                    .map(|item| {
                        let (s, line) = start_of(item)?;
                        let dash = block_item_dash(text, s)?;
                        Some(Piece {
                            range: s..block_end(text, s, dash),
                            line,
                        })
                    })
                    .collect::<Option<Vec<_>>>(),
                _ => None,
            };
            parts.push(Part {
                key: key.clone(),
                value: Piece { range, line },
                items,
            });
        }
        parts
    }
}

/// The value of the top-level `key:` of a block mapping document, found in the text alone
/// (no second pass of the reader over a large document): from its first character to the next
/// line that starts in the first column. `None` when no line starts with `key:`.
pub fn top_level_block(text: &str, key: &str) -> Option<Piece> {
    let head = format!("{key}:");
    let mut pos = 0;
    let mut line = 1u64;
    while pos < text.len() {
        let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i + 1);
        if text[pos..end].starts_with(&head) {
            // The value: after the colon on this line, or on the next line with content.
            let mut at = pos + head.len();
            let mut at_line = line;
            let rest = text[at..end].trim_start_matches(' ');
            if rest.trim().is_empty() || rest.starts_with('#') {
                at = end;
                at_line += 1;
                while at < text.len() {
                    let e = text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
                    let content = text[at..e].trim_start_matches(' ');
                    if !(content.trim().is_empty() || content.starts_with('#')) {
                        at = e - content.len();
                        break;
                    }
                    at = e;
                    at_line += 1;
                }
            } else {
                at = end - rest.len();
            }
            if at >= text.len() {
                return None;
            }
            return Some(Piece {
                range: at..block_end(text, at, 1),
                line: at_line,
            });
        }
        pos = end;
        line += 1;
    }
    None
}

/// A top-level entry of a document: see [`Locator::parts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub key: String,
    /// The value.
    pub value: Piece,
    /// Each item when the value is a block sequence (`None` for anything else).
    pub items: Option<Vec<Piece>>,
}

/// A node's bytes in the document and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub range: std::ops::Range<usize>,
    pub line: u64,
}

/// The part of `text` in `range` as a document of its own: the text before it on its first line
/// is blanked, so it reads alone at the same columns; add `lines_before` to its error lines.
pub fn isolate(text: &str, piece: &Piece) -> Isolated {
    let range = piece.range.clone();
    let line_start = text[..range.start].rfind('\n').map_or(0, |i| i + 1);
    let lines_before = piece.line.saturating_sub(1);
    let mut part = " ".repeat(text[line_start..range.start].chars().count());
    part.push_str(&text[range]);
    Isolated {
        text: part,
        lines_before,
    }
}

/// See [`isolate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolated {
    pub text: String,
    pub lines_before: u64,
}

/// The 1-based column of the `- ` that introduces a block sequence item starting at `start`.
fn block_item_dash(text: &str, start: usize) -> Option<usize> {
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let before = text[line_start..start].trim_end_matches(' ');
    let dash = before.strip_suffix('-')?;
    dash.bytes().all(|b| b == b' ').then_some(dash.len() + 1)
}

/// Where a block node starting at `start` ends: the first later line whose content starts at or
/// left of column `col` (blank and comment lines do not end it).
fn block_end(text: &str, start: usize, col: usize) -> usize {
    let mut pos = text[start..]
        .find('\n')
        .map_or(text.len(), |i| start + i + 1);
    while pos < text.len() {
        let line_end = text[pos..].find('\n').map_or(text.len(), |i| pos + i + 1);
        let line = &text[pos..line_end];
        let content = line.trim_start_matches(' ');
        let blank = content.trim().is_empty() || content.starts_with('#');
        if !blank && line.len() - content.len() < col {
            return pos;
        }
        pos = line_end;
    }
    text.len()
}

impl Locator {
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

    #[test]
    fn parts_isolate_block_items_at_their_place() {
        let text =
            "a: {x: 1}\nlist:\n  - name: x\n    pool: p1\n  # note\n  - name: y\nb:\n- 1\n- [2]\n";
        let parts = Locator::read(text).unwrap().parts(text);
        assert_eq!(parts.len(), 3);
        let list = &parts[1];
        let items = list.items.as_ref().unwrap();
        assert_eq!(
            &text[items[0].range.clone()],
            "name: x\n    pool: p1\n  # note\n"
        );
        assert_eq!(&text[items[1].range.clone()], "name: y\n");
        assert_eq!(parts[2].items.as_ref().unwrap().len(), 2);
        let alone = isolate(text, &items[0]);
        assert_eq!(alone.lines_before, 2);
        assert_eq!(alone.text.lines().next(), Some("    name: x"));
        assert!(Locator::read(&alone.text).is_ok());
    }
}
