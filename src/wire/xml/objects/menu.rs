//! `CiscoIPPhoneMenu`.

use super::{
    Checker, Displayable, MenuItem, Node, Reader, SoftKeyItem, Writer, XmlError, XmlObject,
};

/// `CiscoIPPhoneMenu`: up to 100 items.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Menu {
    pub base: Displayable,
    pub items: Vec<MenuItem>,
}

impl Menu {
    pub fn new(title: &str) -> Self {
        Menu {
            base: Displayable::titled(title),
            items: Vec::new(),
        }
    }
    pub fn prompt(mut self, prompt: &str) -> Self {
        self.base.prompt = Some(prompt.to_string());
        self
    }
    pub fn item(mut self, name: &str, url: &str) -> Self {
        self.items.push(MenuItem::new(name, url));
        self
    }
    pub fn soft_key(mut self, name: &str, url: &str, position: i64) -> Self {
        self.base
            .soft_keys
            .push(SoftKeyItem::new(name, url, position));
        self
    }
}

impl XmlObject for Menu {
    const ROOT: &'static str = "CiscoIPPhoneMenu";
    const NEEDS_GRAPHICS: bool = false;

    fn base(&self) -> Option<&Displayable> {
        Some(&self.base)
    }

    fn read(r: &mut Reader, root: &Node) -> Result<Self, XmlError> {
        let mut o = Menu::default();
        r.displayable(root, &mut o.base, |r, c| match c.name.as_str() {
            "MenuItem" => r.menu_item(&mut o.items, c),
            _ => Ok(false),
        })?;
        Ok(o)
    }

    fn write(&self, w: &mut Writer) {
        w.displayable(Self::ROOT, &self.base, &[], |w| w.menu_items(&self.items));
    }

    fn validate(&self, v: &mut Checker) {
        v.menu_items(Self::ROOT, &self.items, 100);
    }
}
