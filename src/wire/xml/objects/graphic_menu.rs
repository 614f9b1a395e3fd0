//! `CiscoIPPhoneGraphicMenu`.

use super::{Bitmap, Checker, Displayable, MenuItem, Node, Reader, Writer, XmlError, XmlObject};

/// `CiscoIPPhoneGraphicMenu`: an image with up to 12 menu items.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GraphicMenu {
    pub base: Displayable,
    pub bitmap: Bitmap,
    pub items: Vec<MenuItem>,
}

impl XmlObject for GraphicMenu {
    const ROOT: &'static str = "CiscoIPPhoneGraphicMenu";
    const NEEDS_GRAPHICS: bool = true;

    fn base(&self) -> Option<&Displayable> {
        Some(&self.base)
    }

    fn read(r: &mut Reader, root: &Node) -> Result<Self, XmlError> {
        let mut o = GraphicMenu::default();
        r.displayable(root, &mut o.base, |r, c| {
            if r.bitmap_child(c, &mut o.bitmap)? {
                return Ok(true);
            }
            match c.name.as_str() {
                "MenuItem" => r.menu_item(&mut o.items, c),
                _ => Ok(false),
            }
        })?;
        Ok(o)
    }

    fn write(&self, w: &mut Writer) {
        w.displayable(Self::ROOT, &self.base, &[], |w| {
            w.bitmap(&self.bitmap);
            w.menu_items(&self.items);
        });
    }

    fn validate(&self, v: &mut Checker) {
        v.bitmap(Self::ROOT, &self.bitmap, 132, 64, 133, 65, 2162);
        v.menu_items(Self::ROOT, &self.items, 12);
    }
}
