//! CiscoIPPhone XML objects: build, serialise, parse, validate and compare.
//!
//! The objects are the ones Cisco IP phones display or execute (spec
//! `cisco-interfaces.md` §1): Menu, Text, Input, Directory, Image, ImageFile, GraphicMenu,
//! GraphicFileMenu, IconMenu, IconFileMenu, Status, StatusFile, Execute, Response and Error.
//!
//! Layout:
//! - [`objects`]: the typed objects ([`CiscoIPPhoneObject`] and one struct per object), with
//!   small builders (`Menu::new("Title").item("Name", "http://…")`).
//! - `dom` (private): a tolerant, bounded reader on top of `quick-xml` that decodes the
//!   declared encoding (UTF-8 or ISO-8859-1), accepts real Cisco quirks such as
//!   `<?xml version="1.0"encoding="utf-8"?>` with a [`Warning`], and builds a small element
//!   tree with each element's path and position.
//! - `read` (private): element tree → typed object. Unknown elements and attributes are
//!   ignored with a warning; children may come in any order; missing optional elements are
//!   `None`. Only malformed XML, an unknown root, or a non-numeric value in a numeric field
//!   is an error ([`XmlError`], naming the element path and line:column).
//! - `write` (private): deterministic serialisation (`to_xml`, `to_xml_pretty`) with the
//!   declaration `<?xml version="1.0" encoding="UTF-8"?>`, children in the XSD's order.
//! - [`validate()`](validate::validate): every limit of the XSD and the Development Notes,
//!   each violation with its path and a stable rule id, optionally against a
//!   [`PhoneModel`]'s capabilities.
//! - [`canonicalize`]: parse and re-serialise (pretty form), so two documents that mean the
//!   same thing compare equal as strings. Unknown elements are dropped by it.
//! - [`escape()`] and [`escape_legal`]: the XML escape every writer in ucm uses.
//! - [`tree`]: a small bounded element tree for the other XML formats (EM API, SOAP).
//!
//! Parsing never panics and is linear in the input: input is refused above
//! [`MAX_INPUT_BYTES`] and element nesting above [`MAX_DEPTH`].
//!
//! ```
//! use ucm::wire::xml::{parse_bytes, validate, CiscoIPPhoneObject, Execute, PhoneModel, Priority};
//!
//! let push: CiscoIPPhoneObject = Execute::new()
//!     .item("RTPMRx:239.1.1.1:20480", Priority::Immediately)
//!     .into();
//! assert!(validate(&push, PhoneModel::lookup("CP-8851")).is_empty());
//! assert!(push.to_xml().starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><CiscoIPPhoneExecute>"#));
//!
//! // What Cisco CME really sends: no space before `encoding`. Accepted, with a warning.
//! let real = br#"<?xml version="1.0"encoding="ISO-8859-1" ?><CiscoIPPhoneExecute><ExecuteItem Priority= "0" URL="RTPMRx:Stop"/></CiscoIPPhoneExecute>"#;
//! let parsed = parse_bytes(real)?;
//! assert_eq!(parsed.object, Execute::single("RTPMRx:Stop").into());
//! assert_eq!(parsed.warnings[0].code, "decl-no-space");
//! # Ok::<(), ucm::wire::xml::XmlError>(())
//! ```

mod dom;
mod escape;
pub mod objects;
mod read;
pub mod tree;
pub mod validate;
mod write;

#[cfg(test)]
mod tests;

use std::fmt;

pub use escape::{escape, escape_legal};
pub use objects::*;
pub use validate::{validate, DisplayKind, PhoneModel, Violation, MODELS};

/// The largest document [`parse_bytes`] accepts. Phones take far less (40 KB for a push on
/// 9.1+ firmware, 196608 bytes downloaded on a 6900); this bound only keeps a bad peer from
/// costing us memory.
pub const MAX_INPUT_BYTES: usize = 512 * 1024;

/// The deepest element nesting accepted. CiscoIPPhone objects are at most four levels deep.
pub const MAX_DEPTH: usize = 16;

/// At most this many warnings are kept; one more (`too-many-warnings`) says others were dropped.
pub const MAX_WARNINGS: usize = 200;

/// A line and column (both 1-based; the column counts characters) in the parsed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Why a document could not be read as a CiscoIPPhone object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("document is {size} bytes, more than the {limit} accepted")]
    TooLarge { size: usize, limit: usize },
    #[error("{position}: {path}: elements nested deeper than {limit}")]
    TooDeep {
        path: String,
        position: Position,
        limit: usize,
    },
    #[error("{position}: {path}: {message}")]
    Syntax {
        path: String,
        position: Position,
        message: String,
    },
    #[error("encoding: {0}")]
    Encoding(String),
    #[error("no root element")]
    Empty,
    #[error("{position}: <{name}> is not a CiscoIPPhone object")]
    UnknownObject { name: String, position: Position },
    #[error("{position}: {path}: {value:?} is not {expected}")]
    BadValue {
        path: String,
        position: Position,
        value: String,
        expected: &'static str,
    },
}

/// Something a phone tolerates but a careful server should not send. Stable `code`s:
/// `decl-missing`, `decl-no-space`, `decl-malformed`, `decl-no-encoding`,
/// `decl-not-first`, `encoding-fallback`, `encoding-approximated`, `doctype-ignored`,
/// `unknown-element`, `unknown-attribute`, `duplicate-element`, `duplicate-attribute`,
/// `unknown-entity`, `stray-text`, `nested-markup`, `alias-root`, `too-many-warnings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub code: &'static str,
    /// Element path, e.g. `CiscoIPPhoneMenu/MenuItem[2]/Name`; empty for the prolog.
    pub path: String,
    pub position: Position,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {} [{}]", self.position, self.message, self.code)
        } else {
            write!(
                f,
                "{}: {}: {} [{}]",
                self.position, self.path, self.message, self.code
            )
        }
    }
}

/// A parsed object and the warnings met on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub object: CiscoIPPhoneObject,
    pub warnings: Vec<Warning>,
}

/// Parses a CiscoIPPhone object from text already decoded (any `encoding` in the
/// declaration is only checked, not applied).
pub fn parse(text: &str) -> Result<Parsed, XmlError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(XmlError::TooLarge {
            size: text.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    let mut warnings = Vec::new();
    // The text is already decoded: the declared encoding is only read, not applied.
    dom::prolog(text.as_bytes(), &mut warnings)?;
    finish(text.strip_prefix('\u{feff}').unwrap_or(text), warnings)
}

/// Parses a CiscoIPPhone object from bytes, decoding the declared encoding: UTF-8 or
/// ISO-8859-1 (and US-ASCII; windows-1252 is read as ISO-8859-1 with a warning). Without a
/// declared encoding, UTF-8 is tried first and ISO-8859-1 is used (with a warning) when the
/// bytes are not UTF-8, as phones fall back to their locale's encoding.
pub fn parse_bytes(bytes: &[u8]) -> Result<Parsed, XmlError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(XmlError::TooLarge {
            size: bytes.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    let mut warnings = Vec::new();
    let text = dom::decode(bytes, &mut warnings)?;
    finish(&text, warnings)
}

fn finish(text: &str, mut warnings: Vec<Warning>) -> Result<Parsed, XmlError> {
    let lines = dom::Lines::new(text);
    let root = dom::read_tree(text, &lines, &mut warnings)?;
    let object = read::object(&root, &lines, &mut warnings)?;
    Ok(Parsed { object, warnings })
}

/// The canonical form of a document: parsed (tolerantly) and re-serialised with
/// [`CiscoIPPhoneObject::to_xml_pretty`]. Two documents with the same canonical form carry
/// the same object. Unknown elements and attributes, comments and formatting are dropped.
pub fn canonicalize(text: &str) -> Result<String, XmlError> {
    Ok(parse(text)?.object.to_xml_pretty())
}

/// [`canonicalize`] over bytes in any encoding [`parse_bytes`] reads.
pub fn canonicalize_bytes(bytes: &[u8]) -> Result<String, XmlError> {
    Ok(parse_bytes(bytes)?.object.to_xml_pretty())
}

/// What a phone answers to a pushed `CiscoIPPhoneExecute`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecuteReply {
    Response(Response),
    Error(PhoneError),
}

/// Reads a phone's answer to a push: a `CiscoIPPhoneResponse` or a `CiscoIPPhoneError`.
/// Any other object is an error.
pub fn parse_execute_reply(bytes: &[u8]) -> Result<ExecuteReply, XmlError> {
    let parsed = parse_bytes(bytes)?;
    match parsed.object {
        CiscoIPPhoneObject::Response(r) => Ok(ExecuteReply::Response(r)),
        CiscoIPPhoneObject::Error(e) => Ok(ExecuteReply::Error(e)),
        other => Err(XmlError::UnknownObject {
            name: format!(
                "{} (expected CiscoIPPhoneResponse or CiscoIPPhoneError)",
                other.kind().root_name()
            ),
            position: Position { line: 1, column: 1 },
        }),
    }
}
