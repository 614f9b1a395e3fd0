//! `CiscoIPPhoneText`.

use super::{Checker, Displayable, Node, Reader, Writer, XmlError, XmlObject};

/// `CiscoIPPhoneText`: up to 4000 characters of text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text {
    pub base: Displayable,
    pub text: Option<String>,
}

impl Text {
    pub fn new(title: &str, text: &str) -> Self {
        Text {
            base: Displayable::titled(title),
            text: Some(text.to_string()),
        }
    }
}

impl XmlObject for Text {
    const ROOT: &'static str = "CiscoIPPhoneText";
    const NEEDS_GRAPHICS: bool = false;

    fn base(&self) -> Option<&Displayable> {
        Some(&self.base)
    }

    fn read(r: &mut Reader, root: &Node) -> Result<Self, XmlError> {
        let mut o = Text::default();
        r.displayable(root, &mut o.base, |r, c| match c.name.as_str() {
            "Text" => r.set_text(&mut o.text, c),
            _ => Ok(false),
        })?;
        Ok(o)
    }

    fn write(&self, w: &mut Writer) {
        w.displayable(Self::ROOT, &self.base, &[], |w| {
            w.leaf("Text", self.text.as_deref());
        });
    }

    fn validate(&self, v: &mut Checker) {
        let path = format!("{}/Text", Self::ROOT);
        v.len(&path, self.text.as_deref(), 0, 4000);
        v.control_chars(&path, self.text.as_deref());
    }
}
