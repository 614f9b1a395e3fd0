//! Deterministic serialisation.
//!
//! Children are written in the order of the XSD (`xsd:extension`: the displayable base's
//! Title, Prompt, SoftKeyItem, KeyItem first, then the object's own elements), so the
//! output validates against `CiscoIPPhone.xsd`. One exception: `ResponseItem` is written
//! with attributes, as real phones send it (the XSD's child elements `Status/Data/URL` were
//! never seen on the wire; both forms are read).
//!
//! Each kind writes itself ([`XmlObject::write`](super::objects::XmlObject::write)) with the
//! methods of [`Writer`], which also writes the parts several kinds share.
//!
//! Escaping: `& < > " '` always; CR (and in attributes TAB and LF) as character references
//! (see [`super::escape`]).

use super::escape::{escape_attr, escape_text};
use super::objects::*;

const DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// Writes elements, compact or indented.
pub(super) struct Writer {
    out: String,
    pretty: bool,
    depth: usize,
}

impl Writer {
    fn newline(&mut self) {
        if self.pretty {
            self.out.push('\n');
            for _ in 0..self.depth {
                self.out.push_str("  ");
            }
        }
    }

    fn open(&mut self, name: &str, attrs: &[(&str, Option<String>)]) {
        self.newline();
        self.out.push('<');
        self.out.push_str(name);
        self.attrs(attrs);
        self.out.push('>');
        self.depth += 1;
    }

    fn close(&mut self, name: &str) {
        self.depth -= 1;
        self.newline();
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    fn attrs(&mut self, attrs: &[(&str, Option<String>)]) {
        for (k, v) in attrs {
            if let Some(v) = v {
                self.out.push(' ');
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_attr(v, &mut self.out);
                self.out.push('"');
            }
        }
    }

    pub(super) fn empty(&mut self, name: &str, attrs: &[(&str, Option<String>)]) {
        self.newline();
        self.out.push('<');
        self.out.push_str(name);
        self.attrs(attrs);
        self.out.push_str("/>");
    }

    pub(super) fn leaf(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.leaf_attrs(name, &[], v);
        }
    }

    pub(super) fn leaf_attrs(&mut self, name: &str, attrs: &[(&str, Option<String>)], v: &str) {
        self.newline();
        self.out.push('<');
        self.out.push_str(name);
        self.attrs(attrs);
        self.out.push('>');
        escape_text(v, &mut self.out);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    pub(super) fn num(&mut self, name: &str, value: Option<i64>) {
        if let Some(v) = value {
            self.leaf(name, Some(&v.to_string()));
        }
    }

    /// An element holding elements: `children` writes them.
    pub(super) fn element(
        &mut self,
        name: &str,
        attrs: &[(&str, Option<String>)],
        children: impl FnOnce(&mut Self),
    ) {
        self.open(name, attrs);
        children(self);
        self.close(name);
    }

    /// A displayable object: the root with the base's attributes and `extra`, the base's
    /// children, then the ones `children` writes.
    pub(super) fn displayable(
        &mut self,
        name: &str,
        b: &Displayable,
        extra: &[(&str, Option<String>)],
        children: impl FnOnce(&mut Self),
    ) {
        let mut attrs: Vec<(&str, Option<String>)> = vec![
            ("keypadTarget", b.keypad_target.clone()),
            ("appId", b.app_id.clone()),
            ("onAppFocusLost", b.on_app_focus_lost.clone()),
            ("onAppFocusGained", b.on_app_focus_gained.clone()),
            ("onAppMinimized", b.on_app_minimized.clone()),
            ("onAppClosed", b.on_app_closed.clone()),
        ];
        attrs.extend(extra.iter().cloned());
        self.element(name, &attrs, |w| {
            w.leaf("Title", b.title.as_deref());
            w.leaf("Prompt", b.prompt.as_deref());
            for sk in &b.soft_keys {
                w.element("SoftKeyItem", &[], |w| {
                    // XSD order (Name, Position, URL, URLDown); Cisco's examples put Position last.
                    w.leaf("Name", sk.name.as_deref());
                    w.num("Position", sk.position);
                    w.leaf("URL", sk.url.as_deref());
                    w.leaf("URLDown", sk.url_down.as_deref());
                });
            }
            for k in &b.keys {
                w.element("KeyItem", &[], |w| {
                    w.leaf("Key", k.key.as_deref());
                    w.leaf("URL", k.url.as_deref());
                    w.leaf("URLDown", k.url_down.as_deref());
                });
            }
            children(w);
        });
    }

    pub(super) fn bitmap(&mut self, b: &Bitmap) {
        self.num("LocationX", b.location_x);
        self.num("LocationY", b.location_y);
        self.num("Width", b.width);
        self.num("Height", b.height);
        self.num("Depth", b.depth);
        self.leaf("Data", b.data.as_deref());
    }

    pub(super) fn menu_items(&mut self, items: &[MenuItem]) {
        for i in items {
            self.element("MenuItem", &[], |w| {
                w.leaf("Name", i.name.as_deref());
                w.leaf("URL", i.url.as_deref());
            });
        }
    }

    pub(super) fn icon_menu_items(&mut self, items: &[IconMenuItem]) {
        for i in items {
            self.element("MenuItem", &[], |w| {
                w.leaf("Name", i.name.as_deref());
                w.leaf("URL", i.url.as_deref());
                w.num("IconIndex", i.icon_index);
            });
        }
    }
}

impl CiscoIPPhoneObject {
    /// The document: `<?xml version="1.0" encoding="UTF-8"?>` and the object on one line,
    /// with no whitespace between elements (compact: push bodies are size-limited).
    pub fn to_xml(&self) -> String {
        let mut w = Writer {
            out: String::from(DECL),
            pretty: false,
            depth: 0,
        };
        self.write_to(&mut w);
        w.out
    }

    /// The document with one element per line, indented by two spaces, ending in a newline.
    /// This is the [`canonicalize`](super::canonicalize) form.
    pub fn to_xml_pretty(&self) -> String {
        let mut w = Writer {
            out: String::from(DECL),
            pretty: true,
            depth: 0,
        };
        self.write_to(&mut w);
        w.out.push('\n');
        w.out
    }
}
