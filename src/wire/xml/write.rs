//! Deterministic serialisation.
//!
//! Children are written in the order of the XSD (`xsd:extension`: the displayable base's
//! Title, Prompt, SoftKeyItem, KeyItem first, then the object's own elements), so the
//! output validates against `CiscoIPPhone.xsd`. One exception: `ResponseItem` is written
//! with attributes, as real phones send it (the XSD's child elements `Status/Data/URL` were
//! never seen on the wire; both forms are read).
//!
//! Escaping: `& < > " '` always; CR (and in attributes TAB and LF) as character references
//! (see [`super::escape`]).

use super::escape::{escape_attr, escape_text};
use super::objects::*;

const DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

struct W {
    out: String,
    pretty: bool,
    depth: usize,
}

impl W {
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

    fn empty(&mut self, name: &str, attrs: &[(&str, Option<String>)]) {
        self.newline();
        self.out.push('<');
        self.out.push_str(name);
        self.attrs(attrs);
        self.out.push_str("/>");
    }

    fn leaf(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.leaf_attrs(name, &[], v);
        }
    }

    fn leaf_attrs(&mut self, name: &str, attrs: &[(&str, Option<String>)], v: &str) {
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

    fn num(&mut self, name: &str, value: Option<i64>) {
        if let Some(v) = value {
            self.leaf(name, Some(&v.to_string()));
        }
    }

    fn base_open(&mut self, name: &str, b: &Displayable, extra: &[(&str, Option<String>)]) {
        let mut attrs: Vec<(&str, Option<String>)> = vec![
            ("keypadTarget", b.keypad_target.clone()),
            ("appId", b.app_id.clone()),
            ("onAppFocusLost", b.on_app_focus_lost.clone()),
            ("onAppFocusGained", b.on_app_focus_gained.clone()),
            ("onAppMinimized", b.on_app_minimized.clone()),
            ("onAppClosed", b.on_app_closed.clone()),
        ];
        attrs.extend(extra.iter().cloned());
        self.open(name, &attrs);
        self.leaf("Title", b.title.as_deref());
        self.leaf("Prompt", b.prompt.as_deref());
        for sk in &b.soft_keys {
            self.open("SoftKeyItem", &[]);
            // XSD order (Name, Position, URL, URLDown); Cisco's examples put Position last.
            self.leaf("Name", sk.name.as_deref());
            self.num("Position", sk.position);
            self.leaf("URL", sk.url.as_deref());
            self.leaf("URLDown", sk.url_down.as_deref());
            self.close("SoftKeyItem");
        }
        for k in &b.keys {
            self.open("KeyItem", &[]);
            self.leaf("Key", k.key.as_deref());
            self.leaf("URL", k.url.as_deref());
            self.leaf("URLDown", k.url_down.as_deref());
            self.close("KeyItem");
        }
    }

    fn bitmap(&mut self, b: &Bitmap) {
        self.num("LocationX", b.location_x);
        self.num("LocationY", b.location_y);
        self.num("Width", b.width);
        self.num("Height", b.height);
        self.num("Depth", b.depth);
        self.leaf("Data", b.data.as_deref());
    }

    fn menu_items(&mut self, items: &[MenuItem]) {
        for i in items {
            self.open("MenuItem", &[]);
            self.leaf("Name", i.name.as_deref());
            self.leaf("URL", i.url.as_deref());
            self.close("MenuItem");
        }
    }

    fn icon_menu_items(&mut self, items: &[IconMenuItem]) {
        for i in items {
            self.open("MenuItem", &[]);
            self.leaf("Name", i.name.as_deref());
            self.leaf("URL", i.url.as_deref());
            self.num("IconIndex", i.icon_index);
            self.close("MenuItem");
        }
    }

    fn object(&mut self, o: &CiscoIPPhoneObject) {
        let root = o.kind().root_name();
        match o {
            CiscoIPPhoneObject::Menu(m) => {
                self.base_open(root, &m.base, &[]);
                self.menu_items(&m.items);
            }
            CiscoIPPhoneObject::Text(t) => {
                self.base_open(root, &t.base, &[]);
                self.leaf("Text", t.text.as_deref());
            }
            CiscoIPPhoneObject::Input(i) => {
                self.base_open(root, &i.base, &[]);
                if let Some(url) = &i.url {
                    self.leaf_attrs("URL", &[("method", i.url_method.clone())], url);
                }
                for it in &i.items {
                    self.open("InputItem", &[]);
                    self.leaf("DisplayName", it.display_name.as_deref());
                    self.leaf("QueryStringParam", it.query_string_param.as_deref());
                    self.leaf("InputFlags", it.input_flags.as_deref());
                    self.leaf("DefaultValue", it.default_value.as_deref());
                    self.close("InputItem");
                }
            }
            CiscoIPPhoneObject::Directory(d) => {
                self.base_open(root, &d.base, &[]);
                for e in &d.entries {
                    self.open("DirectoryEntry", &[]);
                    self.leaf("Name", e.name.as_deref());
                    self.leaf("Telephone", e.telephone.as_deref());
                    self.close("DirectoryEntry");
                }
            }
            CiscoIPPhoneObject::Image(i) => {
                self.base_open(root, &i.base, &[]);
                self.bitmap(&i.bitmap);
            }
            CiscoIPPhoneObject::ImageFile(i) => {
                self.base_open(root, &i.base, &[]);
                self.num("LocationX", i.location_x);
                self.num("LocationY", i.location_y);
                self.leaf("URL", i.url.as_deref());
            }
            CiscoIPPhoneObject::GraphicMenu(g) => {
                self.base_open(root, &g.base, &[]);
                self.bitmap(&g.bitmap);
                self.menu_items(&g.items);
            }
            CiscoIPPhoneObject::GraphicFileMenu(g) => {
                self.base_open(root, &g.base, &[]);
                self.num("LocationX", g.location_x);
                self.num("LocationY", g.location_y);
                self.leaf("URL", g.url.as_deref());
                for i in &g.items {
                    self.open("MenuItem", &[]);
                    self.leaf("Name", i.name.as_deref());
                    self.leaf("URL", i.url.as_deref());
                    if let Some(t) = &i.touch_area {
                        let s = |v: Option<i64>| v.map(|v| v.to_string());
                        self.empty(
                            "TouchArea",
                            &[
                                ("X1", s(t.x1)),
                                ("Y1", s(t.y1)),
                                ("X2", s(t.x2)),
                                ("Y2", s(t.y2)),
                            ],
                        );
                    }
                    self.close("MenuItem");
                }
            }
            CiscoIPPhoneObject::IconMenu(m) => {
                self.base_open(root, &m.base, &[]);
                self.icon_menu_items(&m.items);
                for i in &m.icons {
                    self.open("IconItem", &[]);
                    self.num("Index", i.index);
                    self.num("Width", i.width);
                    self.num("Height", i.height);
                    self.num("Depth", i.depth);
                    self.leaf("Data", i.data.as_deref());
                    self.close("IconItem");
                }
            }
            CiscoIPPhoneObject::IconFileMenu(m) => {
                let idx = m.icon_index.map(|v| v.to_string());
                self.base_open(root, &m.base, &[("IconIndex", idx)]);
                self.icon_menu_items(&m.items);
                for i in &m.icons {
                    self.open("IconItem", &[]);
                    self.num("Index", i.index);
                    self.leaf("URL", i.url.as_deref());
                    self.close("IconItem");
                }
            }
            CiscoIPPhoneObject::Status(s) => {
                self.open(root, &[]);
                self.leaf("Text", s.text.as_deref());
                self.num("Timer", s.timer);
                self.bitmap(&s.bitmap);
            }
            CiscoIPPhoneObject::StatusFile(s) => {
                self.open(root, &[]);
                self.leaf("Text", s.text.as_deref());
                self.num("Timer", s.timer);
                self.num("LocationX", s.location_x);
                self.num("LocationY", s.location_y);
                self.leaf("URL", s.url.as_deref());
            }
            CiscoIPPhoneObject::Execute(e) => {
                self.open(root, &[]);
                for i in &e.items {
                    self.empty(
                        "ExecuteItem",
                        &[
                            ("Priority", i.priority.map(|p| p.to_string())),
                            ("URL", i.url.clone()),
                        ],
                    );
                }
            }
            CiscoIPPhoneObject::Response(r) => {
                self.open(root, &[]);
                for i in &r.items {
                    self.empty(
                        "ResponseItem",
                        &[
                            ("Status", i.status.map(|p| p.to_string())),
                            ("Data", i.data.clone()),
                            ("URL", i.url.clone()),
                        ],
                    );
                }
            }
            CiscoIPPhoneObject::Error(e) => {
                let attrs = [("Number", e.number.map(|n| n.to_string()))];
                match &e.message {
                    Some(m) => self.leaf_attrs(root, &attrs, m),
                    None => self.empty(root, &attrs),
                }
                return;
            }
        }
        self.close(root);
    }
}

impl CiscoIPPhoneObject {
    /// The document: `<?xml version="1.0" encoding="UTF-8"?>` and the object on one line,
    /// with no whitespace between elements (compact: push bodies are size-limited).
    pub fn to_xml(&self) -> String {
        let mut w = W {
            out: String::from(DECL),
            pretty: false,
            depth: 0,
        };
        w.object(self);
        w.out
    }

    /// The document with one element per line, indented by two spaces, ending in a newline.
    /// This is the [`canonicalize`](super::canonicalize) form.
    pub fn to_xml_pretty(&self) -> String {
        let mut w = W {
            out: String::from(DECL),
            pretty: true,
            depth: 0,
        };
        w.object(self);
        w.out.push('\n');
        w.out
    }
}
