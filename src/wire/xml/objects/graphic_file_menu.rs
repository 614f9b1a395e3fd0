//! `CiscoIPPhoneGraphicFileMenu`.

use super::{Checker, Displayable, Node, Reader, Writer, XmlError, XmlObject};

/// The `TouchArea` of a GraphicFileMenu item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TouchArea {
    pub x1: Option<i64>,
    pub y1: Option<i64>,
    pub x2: Option<i64>,
    pub y2: Option<i64>,
}

/// A GraphicFileMenu item.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TouchAreaMenuItem {
    pub name: Option<String>,
    pub url: Option<String>,
    pub touch_area: Option<TouchArea>,
}

/// `CiscoIPPhoneGraphicFileMenu`: a PNG with up to 32 touch areas.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GraphicFileMenu {
    pub base: Displayable,
    pub location_x: Option<i64>,
    pub location_y: Option<i64>,
    pub url: Option<String>,
    pub items: Vec<TouchAreaMenuItem>,
}

impl XmlObject for GraphicFileMenu {
    const ROOT: &'static str = "CiscoIPPhoneGraphicFileMenu";
    const NEEDS_GRAPHICS: bool = true;

    fn base(&self) -> Option<&Displayable> {
        Some(&self.base)
    }

    fn read(r: &mut Reader, root: &Node) -> Result<Self, XmlError> {
        let mut o = GraphicFileMenu::default();
        r.displayable(root, &mut o.base, |r, c| match c.name.as_str() {
            "LocationX" => r.set_num(&mut o.location_x, c),
            "LocationY" => r.set_num(&mut o.location_y, c),
            "URL" => r.set_text(&mut o.url, c),
            "MenuItem" => r.item(&mut o.items, c, |r, g, m: &mut TouchAreaMenuItem| {
                match g.name.as_str() {
                    "Name" => r.set_text(&mut m.name, g),
                    "URL" => r.set_text(&mut m.url, g),
                    "TouchArea" => {
                        r.container(g, &["X1", "Y1", "X2", "Y2"]);
                        if m.touch_area.is_some() {
                            r.duplicate(g);
                            return Ok(true);
                        }
                        r.fields(g, |_, _| Ok(false))?;
                        m.touch_area = Some(TouchArea {
                            x1: r.attr_num(g, "X1")?,
                            y1: r.attr_num(g, "Y1")?,
                            x2: r.attr_num(g, "X2")?,
                            y2: r.attr_num(g, "Y2")?,
                        });
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            }),
            _ => Ok(false),
        })?;
        Ok(o)
    }

    fn write(&self, w: &mut Writer) {
        w.displayable(Self::ROOT, &self.base, &[], |w| {
            w.num("LocationX", self.location_x);
            w.num("LocationY", self.location_y);
            w.leaf("URL", self.url.as_deref());
            for i in &self.items {
                w.element("MenuItem", &[], |w| {
                    w.leaf("Name", i.name.as_deref());
                    w.leaf("URL", i.url.as_deref());
                    if let Some(t) = &i.touch_area {
                        let s = |v: Option<i64>| v.map(|v| v.to_string());
                        w.empty(
                            "TouchArea",
                            &[
                                ("X1", s(t.x1)),
                                ("Y1", s(t.y1)),
                                ("X2", s(t.x2)),
                                ("Y2", s(t.y2)),
                            ],
                        );
                    }
                });
            }
        });
    }

    fn validate(&self, v: &mut Checker) {
        let root = Self::ROOT;
        v.range(&format!("{root}/LocationX"), self.location_x, -1, 297);
        v.range(&format!("{root}/LocationY"), self.location_y, -1, 167);
        v.req_len(&format!("{root}/URL"), self.url.as_deref(), 1, 256);
        v.items(root, "MenuItem", self.items.len(), 32);
        for (n, m) in self.items.iter().enumerate() {
            let p = format!("{root}/MenuItem[{}]", n + 1);
            v.len(&format!("{p}/Name"), m.name.as_deref(), 0, 32);
            v.len(&format!("{p}/URL"), m.url.as_deref(), 0, 256);
            if let Some(t) = &m.touch_area {
                for (a, n) in [("X1", t.x1), ("Y1", t.y1), ("X2", t.x2), ("Y2", t.y2)] {
                    v.req_range(&format!("{p}/TouchArea/@{a}"), n, 0, 65535);
                }
            }
        }
    }
}
