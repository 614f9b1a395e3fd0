//! A tolerant, bounded element tree over `quick-xml`, plus the prolog checks (encoding and
//! the XML declaration quirks real Cisco software emits).

use std::collections::{HashMap, HashSet};

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::{Position, Warning, XmlError, MAX_DEPTH};

/// Elements that repeat; their path segments always carry a 1-based index.
const REPEATABLE: [&str; 9] = [
    "MenuItem",
    "SoftKeyItem",
    "KeyItem",
    "DirectoryEntry",
    "InputItem",
    "ExecuteItem",
    "ResponseItem",
    "IconItem",
    "TouchArea",
];

/// Byte offsets of line starts, for offset → line:column.
pub(crate) struct Lines<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines { text, starts }
    }

    pub(crate) fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        Position { line, column }
    }
}

/// One element: its name, attributes in document order, child elements, and the text
/// directly inside it (text, CDATA and references concatenated).
#[derive(Debug)]
pub(crate) struct Node {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
    pub text: String,
    pub path: String,
    pub offset: usize,
    /// How many of each child name have been seen, for path indices.
    counts: HashMap<String, usize>,
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn warn(warnings: &mut Vec<Warning>, code: &'static str, path: &str, pos: Position, msg: String) {
    use std::cmp::Ordering;
    match warnings.len().cmp(&super::MAX_WARNINGS) {
        Ordering::Less => warnings.push(Warning {
            code,
            path: path.to_string(),
            position: pos,
            message: msg,
        }),
        Ordering::Equal => warnings.push(Warning {
            code: "too-many-warnings",
            path: String::new(),
            position: pos,
            message: "further warnings not shown".into(),
        }),
        Ordering::Greater => {}
    }
}

pub(crate) fn push_warning(
    warnings: &mut Vec<Warning>,
    code: &'static str,
    path: &str,
    pos: Position,
    msg: String,
) {
    warn(warnings, code, path, pos, msg)
}

/// What the XML declaration says.
#[derive(Debug, Default)]
pub(crate) struct Prolog {
    pub encoding: Option<String>,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Checks the XML declaration at the start of `bytes` (after any BOM), warning about the
/// quirks phones tolerate: no declaration, no space between pseudo-attributes
/// (`version="1.0"encoding="utf-8"`), no encoding, whitespace before it.
pub(crate) fn prolog(bytes: &[u8], warnings: &mut Vec<Warning>) -> Result<Prolog, XmlError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = bytes.iter().position(|&b| !is_ws(b)).unwrap_or(bytes.len());
    let rest = bytes.get(start..).unwrap_or(&[]);
    let pos = Position { line: 1, column: 1 };
    let is_decl = rest.starts_with(b"<?xml") && rest.get(5).is_some_and(|&b| is_ws(b) || b == b'?');
    if !is_decl {
        warn(
            warnings,
            "decl-missing",
            "",
            pos,
            "no XML declaration: the phone then assumes its locale's encoding".into(),
        );
        return Ok(Prolog::default());
    }
    if start > 0 {
        warn(
            warnings,
            "decl-not-first",
            "",
            pos,
            "whitespace before the XML declaration".into(),
        );
    }
    let Some(end) = rest.windows(2).position(|w| w == b"?>") else {
        return Err(XmlError::Syntax {
            path: String::new(),
            position: pos,
            message: "unterminated XML declaration".into(),
        });
    };
    let body = rest.get(5..end).unwrap_or(&[]);
    let mut prolog = Prolog::default();
    let mut i = 0;
    let mut first = true;
    loop {
        let had_ws = body.get(i).is_some_and(|&b| is_ws(b));
        while body.get(i).is_some_and(|&b| is_ws(b)) {
            i += 1;
        }
        if i >= body.len() {
            break;
        }
        if !had_ws && !first {
            warn(
                warnings,
                "decl-no-space",
                "",
                pos,
                "no whitespace between pseudo-attributes of the XML declaration (a Cisco quirk; strict XML parsers refuse it)".into(),
            );
        }
        first = false;
        let name_start = i;
        while body
            .get(i)
            .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            i += 1;
        }
        let name = String::from_utf8_lossy(body.get(name_start..i).unwrap_or(&[])).to_string();
        while body.get(i).is_some_and(|&b| is_ws(b)) {
            i += 1;
        }
        let quote = match (name.is_empty(), body.get(i), body.get(i + 1..)) {
            (false, Some(b'='), Some(after)) => {
                let skip = after.iter().take_while(|&&b| is_ws(b)).count();
                i += 1 + skip;
                body.get(i).copied()
            }
            _ => None,
        };
        let Some(q) = quote.filter(|&q| q == b'"' || q == b'\'') else {
            warn(
                warnings,
                "decl-malformed",
                "",
                pos,
                "unreadable XML declaration".into(),
            );
            break;
        };
        let vstart = i + 1;
        let Some(len) = body
            .get(vstart..)
            .and_then(|r| r.iter().position(|&b| b == q))
        else {
            warn(
                warnings,
                "decl-malformed",
                "",
                pos,
                "unterminated value in the XML declaration".into(),
            );
            break;
        };
        let value = String::from_utf8_lossy(body.get(vstart..vstart + len).unwrap_or(&[]));
        if name == "encoding" {
            prolog.encoding = Some(value.trim().to_string());
        }
        i = vstart + len + 1;
    }
    if prolog.encoding.is_none() {
        warn(
            warnings,
            "decl-no-encoding",
            "",
            pos,
            "the XML declaration names no encoding: the phone then assumes its locale's".into(),
        );
    }
    Ok(prolog)
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Decodes `bytes` by the declared encoding (see [`super::parse_bytes`]).
pub(crate) fn decode(bytes: &[u8], warnings: &mut Vec<Warning>) -> Result<String, XmlError> {
    if bytes.starts_with(b"\xFE\xFF") || bytes.starts_with(b"\xFF\xFE") {
        return Err(XmlError::Encoding("UTF-16 is not supported".into()));
    }
    let prolog = prolog(bytes, warnings)?;
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let pos = Position { line: 1, column: 1 };
    let utf8 = |b: &[u8]| {
        std::str::from_utf8(b).map(str::to_string).map_err(|e| {
            XmlError::Encoding(format!(
                "invalid UTF-8 at byte {} of a document declared UTF-8",
                e.valid_up_to()
            ))
        })
    };
    match prolog
        .encoding
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("utf-8" | "utf8") => utf8(body),
        Some(
            "iso-8859-1" | "iso8859-1" | "iso_8859-1" | "latin1" | "latin-1" | "us-ascii" | "ascii",
        ) => Ok(latin1(body)),
        Some(e @ ("windows-1252" | "cp1252")) => {
            warn(
                warnings,
                "encoding-approximated",
                "",
                pos,
                format!("{e} read as ISO-8859-1"),
            );
            Ok(latin1(body))
        }
        Some(other) => Err(XmlError::Encoding(format!(
            "unsupported encoding {other:?}"
        ))),
        None => match std::str::from_utf8(body) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => {
                warn(
                    warnings,
                    "encoding-fallback",
                    "",
                    pos,
                    "not UTF-8 and no encoding declared: read as ISO-8859-1".into(),
                );
                Ok(latin1(body))
            }
        },
    }
}

/// Decodes an attribute value: the predefined entities and character references; an
/// unknown or malformed reference is kept literally (with a warning).
fn unescape(raw: &str, warnings: &mut Vec<Warning>, path: &str, pos: Position) -> String {
    if !raw.contains('&') {
        return raw.to_string();
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or(""));
        let after = rest.get(amp..).unwrap_or("");
        // Bytes, not a str slice: cutting at 16 bytes could split a character after the
        // reference and lose it (issue 15's fuzzing found `&#10;` then `Ú...` kept literally).
        let semi = after.bytes().take(16).position(|b| b == b';');
        let decoded = semi.and_then(|semi| Some((resolve(after.get(1..semi)?)?, semi + 1)));
        match decoded {
            Some((ch, len)) => {
                out.push(ch);
                rest = after.get(len..).unwrap_or("");
            }
            None => {
                warn(
                    warnings,
                    "unknown-entity",
                    path,
                    pos,
                    "unknown or malformed reference kept as text".into(),
                );
                out.push('&');
                rest = after.get(1..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    out
}

/// A predefined entity or a character reference (`#65`, `#x41`) to its character.
pub(crate) fn resolve(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        n => {
            let n = n.strip_prefix('#')?;
            let v = match n.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => n.parse().ok()?,
            };
            char::from_u32(v).filter(|&c| c != '\0')
        }
    }
}

struct Builder<'a, 'w> {
    lines: &'a Lines<'a>,
    warnings: &'w mut Vec<Warning>,
    stack: Vec<Node>,
    root: Option<Node>,
}

impl Builder<'_, '_> {
    fn path(&self) -> String {
        self.stack
            .last()
            .map(|n| n.path.clone())
            .unwrap_or_default()
    }

    fn node(&mut self, start: &BytesStart, offset: usize) -> Result<Node, XmlError> {
        let name = String::from_utf8_lossy(start.name().as_ref()).to_string();
        let pos = self.lines.position(offset);
        let path = match self.stack.last_mut() {
            Some(parent) => {
                let count = parent.counts.entry(name.clone()).or_insert(0);
                *count += 1;
                let n = *count;
                if REPEATABLE.contains(&name.as_str()) || n > 1 {
                    format!("{}/{}[{}]", parent.path, name, n)
                } else {
                    format!("{}/{}", parent.path, name)
                }
            }
            None => name.clone(),
        };
        if self.stack.len() >= MAX_DEPTH {
            return Err(XmlError::TooDeep {
                path,
                position: pos,
                limit: MAX_DEPTH,
            });
        }
        let mut attrs: Vec<(String, String)> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut it = start.html_attributes();
        it.with_checks(false);
        for a in it {
            let a = a.map_err(|e| XmlError::Syntax {
                path: path.clone(),
                position: pos,
                message: format!("bad attribute: {e}"),
            })?;
            let key = String::from_utf8_lossy(a.key.as_ref()).to_string();
            let raw = String::from_utf8_lossy(&a.value).to_string();
            let value = unescape(&raw, self.warnings, &path, pos);
            if !seen.insert(key.clone()) {
                warn(
                    self.warnings,
                    "duplicate-attribute",
                    &path,
                    pos,
                    format!("attribute {key} repeated; the first is used"),
                );
                continue;
            }
            attrs.push((key, value));
        }
        Ok(Node {
            name,
            attrs,
            children: Vec::new(),
            text: String::new(),
            path,
            offset,
            counts: HashMap::new(),
        })
    }

    fn attach(&mut self, node: Node) -> Result<(), XmlError> {
        match self.stack.last_mut() {
            Some(parent) => parent.children.push(node),
            None if self.root.is_none() => self.root = Some(node),
            None => {
                return Err(XmlError::Syntax {
                    path: node.path.clone(),
                    position: self.lines.position(node.offset),
                    message: "a second root element".into(),
                })
            }
        }
        Ok(())
    }

    fn text(&mut self, s: &str, offset: usize) {
        match self.stack.last_mut() {
            Some(top) => top.text.push_str(s),
            None => {
                if !s.trim().is_empty() {
                    let pos = self.lines.position(offset);
                    warn(
                        self.warnings,
                        "stray-text",
                        "",
                        pos,
                        "text outside the root element ignored".into(),
                    );
                }
            }
        }
    }
}

/// Reads `text` into an element tree.
pub(crate) fn read_tree(
    text: &str,
    lines: &Lines<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<Node, XmlError> {
    let mut reader = Reader::from_str(text);
    {
        let cfg = reader.config_mut();
        cfg.allow_dangling_amp = true;
        cfg.check_end_names = true;
        cfg.trim_text(false);
        cfg.expand_empty_elements = false;
    }
    let mut b = Builder {
        lines,
        warnings,
        stack: Vec::new(),
        root: None,
    };
    loop {
        let offset = usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX);
        let event = reader.read_event().map_err(|e| XmlError::Syntax {
            path: b.path(),
            position: lines
                .position(usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX)),
            message: e.to_string(),
        })?;
        match event {
            Event::Start(s) => {
                let node = b.node(&s, offset)?;
                b.stack.push(node);
            }
            Event::Empty(s) => {
                let node = b.node(&s, offset)?;
                b.attach(node)?;
            }
            Event::End(_) => match b.stack.pop() {
                Some(node) => b.attach(node)?,
                None => {
                    return Err(XmlError::Syntax {
                        path: String::new(),
                        position: lines.position(offset),
                        message: "end tag without a start tag".into(),
                    })
                }
            },
            Event::Text(t) => {
                let s = t.decode().map_err(|e| XmlError::Encoding(e.to_string()))?;
                b.text(&s, offset);
            }
            Event::CData(c) => {
                let s = c.decode().map_err(|e| XmlError::Encoding(e.to_string()))?;
                b.text(&s, offset);
            }
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| XmlError::Encoding(e.to_string()))?;
                match resolve(&name) {
                    Some(c) => b.text(c.encode_utf8(&mut [0; 4]), offset),
                    None => {
                        let path = b.path();
                        warn(
                            b.warnings,
                            "unknown-entity",
                            &path,
                            lines.position(offset),
                            format!("unknown or malformed reference &{name}; kept as text"),
                        );
                        b.text(&format!("&{name};"), offset);
                    }
                }
            }
            Event::DocType(_) => warn(
                b.warnings,
                "doctype-ignored",
                "",
                lines.position(offset),
                "DOCTYPE ignored (its entities are not expanded)".into(),
            ),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = b.stack.last() {
        return Err(XmlError::Syntax {
            path: open.path.clone(),
            position: lines.position(text.len()),
            message: format!("<{}> is not closed", open.name),
        });
    }
    b.root.ok_or(XmlError::Empty)
}
