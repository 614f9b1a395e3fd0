//! `CiscoIPPhoneError`.

use super::{Checker, Node, Reader, Writer, XmlError, XmlObject};

/// `CiscoIPPhoneError`: `Number` 1 parse error, 2 framing error, 3 internal file error,
/// 4 authentication error; 5 and 6 are seen but undocumented.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PhoneError {
    pub number: Option<i64>,
    /// Optional text content.
    pub message: Option<String>,
}

impl PhoneError {
    pub fn new(number: i64) -> Self {
        PhoneError {
            number: Some(number),
            message: None,
        }
    }
    /// The documented meaning of the number, if any.
    pub fn meaning(&self) -> Option<&'static str> {
        match self.number? {
            1 => Some("error parsing CiscoIPPhoneExecute object"),
            2 => Some("error framing CiscoIPPhoneResponse object"),
            3 => Some("internal file error"),
            4 => Some("authentication error"),
            _ => None,
        }
    }
}

impl XmlObject for PhoneError {
    const ROOT: &'static str = "CiscoIPPhoneError";
    const NEEDS_GRAPHICS: bool = false;

    /// The root's text is the message: no `stray-text` warning.
    fn read(r: &mut Reader, root: &Node) -> Result<Self, XmlError> {
        r.attrs(root, &["Number"]);
        r.fields(root, |_, _| Ok(false))?;
        Ok(PhoneError {
            number: r.attr_num(root, "Number")?,
            message: Some(root.text.clone()).filter(|t| !t.trim().is_empty()),
        })
    }

    fn write(&self, w: &mut Writer) {
        let attrs = [("Number", self.number.map(|n| n.to_string()))];
        match &self.message {
            Some(m) => w.leaf_attrs(Self::ROOT, &attrs, m),
            None => w.empty(Self::ROOT, &attrs),
        }
    }

    fn validate(&self, v: &mut Checker) {
        v.req_range(&format!("{}/@Number", Self::ROOT), self.number, 0, 65535);
    }
}
