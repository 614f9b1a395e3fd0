//! `CiscoIPPhoneStatusFile`.

use super::{Checker, Node, Reader, Writer, XmlError, XmlObject};

/// `CiscoIPPhoneStatusFile`: a status line with a PNG at `url`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusFile {
    pub text: Option<String>,
    pub timer: Option<i64>,
    pub location_x: Option<i64>,
    pub location_y: Option<i64>,
    pub url: Option<String>,
}

impl XmlObject for StatusFile {
    const ROOT: &'static str = "CiscoIPPhoneStatusFile";
    const NEEDS_GRAPHICS: bool = true;

    fn read(r: &mut Reader, root: &Node) -> Result<Self, XmlError> {
        let mut o = StatusFile::default();
        r.children(root, &[], |r, c| match c.name.as_str() {
            "Text" => r.set_text(&mut o.text, c),
            "Timer" => r.set_num(&mut o.timer, c),
            "LocationX" => r.set_num(&mut o.location_x, c),
            "LocationY" => r.set_num(&mut o.location_y, c),
            "URL" => r.set_text(&mut o.url, c),
            _ => Ok(false),
        })?;
        Ok(o)
    }

    fn write(&self, w: &mut Writer) {
        w.element(Self::ROOT, &[], |w| {
            w.leaf("Text", self.text.as_deref());
            w.num("Timer", self.timer);
            w.num("LocationX", self.location_x);
            w.num("LocationY", self.location_y);
            w.leaf("URL", self.url.as_deref());
        });
    }

    fn validate(&self, v: &mut Checker) {
        let root = Self::ROOT;
        v.status_text(root, self.text.as_deref(), self.timer);
        v.range(&format!("{root}/LocationX"), self.location_x, -1, 261);
        v.range(&format!("{root}/LocationY"), self.location_y, -1, 49);
        v.req_len(&format!("{root}/URL"), self.url.as_deref(), 1, 256);
    }
}
