//! `CiscoIPPhoneIconFileMenu`.

use super::{Checker, Displayable, IconMenuItem, Node, Reader, Writer, XmlError, XmlObject};

/// An icon of a `CiscoIPPhoneIconFileMenu`: a PNG at `url`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IconFileItem {
    pub index: Option<i64>,
    pub url: Option<String>,
}

/// `CiscoIPPhoneIconFileMenu`: up to 32 items and 10 PNG icons.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IconFileMenu {
    pub base: Displayable,
    /// The XSD's optional root attribute `IconIndex` (meaning undocumented).
    pub icon_index: Option<i64>,
    pub items: Vec<IconMenuItem>,
    pub icons: Vec<IconFileItem>,
}

impl XmlObject for IconFileMenu {
    const ROOT: &'static str = "CiscoIPPhoneIconFileMenu";
    const NEEDS_GRAPHICS: bool = true;

    fn base(&self) -> Option<&Displayable> {
        Some(&self.base)
    }

    fn read(r: &mut Reader, root: &Node) -> Result<Self, XmlError> {
        let mut o = IconFileMenu::default();
        r.base_attrs(root, &mut o.base, &["IconIndex"]);
        o.icon_index = r.attr_num(root, "IconIndex")?;
        r.base_children(root, &mut o.base, |r, c| match c.name.as_str() {
            "MenuItem" => r.icon_menu_item(&mut o.items, c),
            "IconItem" => r.item(&mut o.icons, c, |r, g, i: &mut IconFileItem| {
                match g.name.as_str() {
                    "Index" => r.set_num(&mut i.index, g),
                    "URL" => r.set_text(&mut i.url, g),
                    _ => Ok(false),
                }
            }),
            _ => Ok(false),
        })?;
        Ok(o)
    }

    fn write(&self, w: &mut Writer) {
        let idx = self.icon_index.map(|v| v.to_string());
        w.displayable(Self::ROOT, &self.base, &[("IconIndex", idx)], |w| {
            w.icon_menu_items(&self.items);
            for i in &self.icons {
                w.element("IconItem", &[], |w| {
                    w.num("Index", i.index);
                    w.leaf("URL", i.url.as_deref());
                });
            }
        });
    }

    fn validate(&self, v: &mut Checker) {
        let root = Self::ROOT;
        v.range(&format!("{root}/@IconIndex"), self.icon_index, 0, 65535);
        v.icon_menu_items(root, &self.items);
        v.items(root, "IconItem", self.icons.len(), 10);
        for (n, i) in self.icons.iter().enumerate() {
            let p = format!("{root}/IconItem[{}]", n + 1);
            v.req_range(&format!("{p}/Index"), i.index, 0, 9);
            v.req_len(&format!("{p}/URL"), i.url.as_deref(), 1, 256);
        }
    }
}
