//! `CiscoIPPhoneImageFile`.

use super::{Checker, Displayable, Node, Reader, Writer, XmlError, XmlObject};

/// `CiscoIPPhoneImageFile`: a PNG at `url`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageFile {
    pub base: Displayable,
    pub location_x: Option<i64>,
    pub location_y: Option<i64>,
    pub url: Option<String>,
}

impl XmlObject for ImageFile {
    const ROOT: &'static str = "CiscoIPPhoneImageFile";
    const NEEDS_GRAPHICS: bool = true;

    fn base(&self) -> Option<&Displayable> {
        Some(&self.base)
    }

    fn read(r: &mut Reader, root: &Node) -> Result<Self, XmlError> {
        let mut o = ImageFile::default();
        r.displayable(root, &mut o.base, |r, c| match c.name.as_str() {
            "LocationX" => r.set_num(&mut o.location_x, c),
            "LocationY" => r.set_num(&mut o.location_y, c),
            "URL" => r.set_text(&mut o.url, c),
            _ => Ok(false),
        })?;
        Ok(o)
    }

    fn write(&self, w: &mut Writer) {
        w.displayable(Self::ROOT, &self.base, &[], |w| {
            w.num("LocationX", self.location_x);
            w.num("LocationY", self.location_y);
            w.leaf("URL", self.url.as_deref());
        });
    }

    fn validate(&self, v: &mut Checker) {
        let root = Self::ROOT;
        v.range(&format!("{root}/LocationX"), self.location_x, -1, 297);
        v.range(&format!("{root}/LocationY"), self.location_y, -1, 167);
        v.req_len(&format!("{root}/URL"), self.url.as_deref(), 1, 256);
    }
}
