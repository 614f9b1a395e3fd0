//! `CiscoIPPhoneStatus`.

use super::{Bitmap, Checker, Node, Reader, Writer, XmlError, XmlObject};

/// `CiscoIPPhoneStatus` (push only; no softkeys).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    pub text: Option<String>,
    /// Seconds.
    pub timer: Option<i64>,
    pub bitmap: Bitmap,
}

impl XmlObject for Status {
    const ROOT: &'static str = "CiscoIPPhoneStatus";
    const NEEDS_GRAPHICS: bool = true;

    fn read(r: &mut Reader, root: &Node) -> Result<Self, XmlError> {
        let mut o = Status::default();
        r.children(root, &[], |r, c| {
            if r.bitmap_child(c, &mut o.bitmap)? {
                return Ok(true);
            }
            match c.name.as_str() {
                "Text" => r.set_text(&mut o.text, c),
                "Timer" => r.set_num(&mut o.timer, c),
                _ => Ok(false),
            }
        })?;
        Ok(o)
    }

    fn write(&self, w: &mut Writer) {
        w.element(Self::ROOT, &[], |w| {
            w.leaf("Text", self.text.as_deref());
            w.num("Timer", self.timer);
            w.bitmap(&self.bitmap);
        });
    }

    fn validate(&self, v: &mut Checker) {
        let root = Self::ROOT;
        v.status_text(root, self.text.as_deref(), self.timer);
        v.bitmap(root, &self.bitmap, 105, 20, 106, 21, 557);
    }
}
