//! `CiscoIPPhoneIconMenu`.

use super::{Checker, Displayable, IconMenuItem, Node, Reader, Writer, XmlError, XmlObject};

/// An icon of a `CiscoIPPhoneIconMenu` (at most 16×10 pixels).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IconItem {
    pub index: Option<i64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub depth: Option<i64>,
    pub data: Option<String>,
}

/// `CiscoIPPhoneIconMenu`: up to 32 items and 10 icons.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IconMenu {
    pub base: Displayable,
    pub items: Vec<IconMenuItem>,
    pub icons: Vec<IconItem>,
}

impl XmlObject for IconMenu {
    const ROOT: &'static str = "CiscoIPPhoneIconMenu";
    const NEEDS_GRAPHICS: bool = true;

    fn base(&self) -> Option<&Displayable> {
        Some(&self.base)
    }

    fn read(r: &mut Reader, root: &Node) -> Result<Self, XmlError> {
        let mut o = IconMenu::default();
        r.displayable(root, &mut o.base, |r, c| match c.name.as_str() {
            "MenuItem" => r.icon_menu_item(&mut o.items, c),
            "IconItem" => r.item(&mut o.icons, c, |r, g, i: &mut IconItem| {
                match g.name.as_str() {
                    "Index" => r.set_num(&mut i.index, g),
                    "Width" => r.set_num(&mut i.width, g),
                    "Height" => r.set_num(&mut i.height, g),
                    "Depth" => r.set_num(&mut i.depth, g),
                    "Data" => r.set_text(&mut i.data, g),
                    _ => Ok(false),
                }
            }),
            _ => Ok(false),
        })?;
        Ok(o)
    }

    fn write(&self, w: &mut Writer) {
        w.displayable(Self::ROOT, &self.base, &[], |w| {
            w.icon_menu_items(&self.items);
            for i in &self.icons {
                w.element("IconItem", &[], |w| {
                    w.num("Index", i.index);
                    w.num("Width", i.width);
                    w.num("Height", i.height);
                    w.num("Depth", i.depth);
                    w.leaf("Data", i.data.as_deref());
                });
            }
        });
    }

    fn validate(&self, v: &mut Checker) {
        let root = Self::ROOT;
        v.icon_menu_items(root, &self.items);
        v.items(root, "IconItem", self.icons.len(), 10);
        for (n, i) in self.icons.iter().enumerate() {
            let p = format!("{root}/IconItem[{}]", n + 1);
            v.req_range(&format!("{p}/Index"), i.index, 0, 65535);
            v.req_range(&format!("{p}/Width"), i.width, 1, 16);
            v.req_range(&format!("{p}/Height"), i.height, 1, 10);
            v.req_range(&format!("{p}/Depth"), i.depth, 1, 2);
            v.hex(
                &format!("{p}/Data"),
                i.data.as_deref(),
                40,
                (i.width, i.height, i.depth),
            );
        }
    }
}
