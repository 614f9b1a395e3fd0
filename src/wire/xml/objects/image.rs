//! `CiscoIPPhoneImage`.

use super::{Bitmap, Checker, Displayable, Node, Reader, Writer, XmlError, XmlObject};

/// `CiscoIPPhoneImage`: a 133×65 pane of 2-bit greyscale pixels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Image {
    pub base: Displayable,
    pub bitmap: Bitmap,
}

impl XmlObject for Image {
    const ROOT: &'static str = "CiscoIPPhoneImage";
    const NEEDS_GRAPHICS: bool = true;

    fn base(&self) -> Option<&Displayable> {
        Some(&self.base)
    }

    fn read(r: &mut Reader, root: &Node) -> Result<Self, XmlError> {
        let mut o = Image::default();
        r.displayable(root, &mut o.base, |r, c| r.bitmap_child(c, &mut o.bitmap))?;
        Ok(o)
    }

    fn write(&self, w: &mut Writer) {
        w.displayable(Self::ROOT, &self.base, &[], |w| w.bitmap(&self.bitmap));
    }

    fn validate(&self, v: &mut Checker) {
        v.bitmap(Self::ROOT, &self.bitmap, 132, 64, 133, 65, 2162);
    }
}
