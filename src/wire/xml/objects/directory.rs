//! `CiscoIPPhoneDirectory`.

use super::{Checker, Displayable, Node, Reader, Writer, XmlError, XmlObject};

/// One entry of a `CiscoIPPhoneDirectory`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirectoryEntry {
    pub name: Option<String>,
    pub telephone: Option<String>,
}

/// `CiscoIPPhoneDirectory`: up to 32 entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Directory {
    pub base: Displayable,
    pub entries: Vec<DirectoryEntry>,
}

impl Directory {
    pub fn new(title: &str) -> Self {
        Directory {
            base: Displayable::titled(title),
            entries: Vec::new(),
        }
    }
    pub fn entry(mut self, name: &str, telephone: &str) -> Self {
        self.entries.push(DirectoryEntry {
            name: Some(name.to_string()),
            telephone: Some(telephone.to_string()),
        });
        self
    }
}

impl XmlObject for Directory {
    const ROOT: &'static str = "CiscoIPPhoneDirectory";
    const NEEDS_GRAPHICS: bool = false;

    fn base(&self) -> Option<&Displayable> {
        Some(&self.base)
    }

    fn read(r: &mut Reader, root: &Node) -> Result<Self, XmlError> {
        let mut o = Directory::default();
        r.displayable(root, &mut o.base, |r, c| match c.name.as_str() {
            "DirectoryEntry" => r.item(&mut o.entries, c, |r, g, e: &mut DirectoryEntry| {
                match g.name.as_str() {
                    "Name" => r.set_text(&mut e.name, g),
                    "Telephone" => r.set_text(&mut e.telephone, g),
                    _ => Ok(false),
                }
            }),
            _ => Ok(false),
        })?;
        Ok(o)
    }

    fn write(&self, w: &mut Writer) {
        w.displayable(Self::ROOT, &self.base, &[], |w| {
            for e in &self.entries {
                w.element("DirectoryEntry", &[], |w| {
                    w.leaf("Name", e.name.as_deref());
                    w.leaf("Telephone", e.telephone.as_deref());
                });
            }
        });
    }

    fn validate(&self, v: &mut Checker) {
        let root = Self::ROOT;
        v.items(root, "DirectoryEntry", self.entries.len(), 32);
        for (n, e) in self.entries.iter().enumerate() {
            let p = format!("{root}/DirectoryEntry[{}]", n + 1);
            v.len(&format!("{p}/Name"), e.name.as_deref(), 0, 32);
            v.len(&format!("{p}/Telephone"), e.telephone.as_deref(), 0, 32);
        }
    }
}
