//! Element tree → typed object. Tolerant: children in any order, unknown elements and
//! attributes ignored with a warning, a repeated single element keeps its first value.
//!
//! [`object`] finds the kind from the root element and hands the tree to that kind's
//! [`XmlObject::read`](super::objects::XmlObject::read); the element readers every kind
//! uses, and the readers of the parts several kinds share, are the methods of [`Reader`].

use super::dom::{push_warning, Lines, Node};
use super::objects::*;
use super::{Position, Warning, XmlError};

/// Reads elements, collecting warnings with each element's position.
pub(super) struct Reader<'a, 'w> {
    lines: &'a Lines<'a>,
    warnings: &'w mut Vec<Warning>,
}

impl Reader<'_, '_> {
    fn pos(&self, n: &Node) -> Position {
        self.lines.position(n.offset)
    }

    fn warn(&mut self, code: &'static str, n: &Node, msg: String) {
        let pos = self.pos(n);
        push_warning(self.warnings, code, &n.path, pos, msg);
    }

    pub(super) fn unknown(&mut self, n: &Node) {
        self.warn(
            "unknown-element",
            n,
            format!("unknown element <{}> ignored", n.name),
        );
    }

    /// Warns about attributes not in `allowed`.
    pub(super) fn attrs(&mut self, n: &Node, allowed: &[&str]) {
        for (k, _) in &n.attrs {
            if !allowed.contains(&k.as_str()) {
                let msg = format!("unknown attribute {k} ignored");
                self.warn("unknown-attribute", n, msg);
            }
        }
    }

    /// Warns about text directly inside an element that holds only elements.
    pub(super) fn container(&mut self, n: &Node, allowed_attrs: &[&str]) {
        self.attrs(n, allowed_attrs);
        if !n.text.trim().is_empty() {
            self.warn(
                "stray-text",
                n,
                format!("text directly inside <{}> ignored", n.name),
            );
        }
    }

    /// Hands each child of `n` to `field`, which reads it and returns true, or returns
    /// false for a child it does not know: that one is ignored with a warning.
    pub(super) fn fields(
        &mut self,
        n: &Node,
        mut field: impl FnMut(&mut Self, &Node) -> Result<bool, XmlError>,
    ) -> Result<(), XmlError> {
        for c in &n.children {
            if !field(self, c)? {
                self.unknown(c);
            }
        }
        Ok(())
    }

    /// [`Reader::container`] and [`Reader::fields`]: an element of elements.
    pub(super) fn children(
        &mut self,
        n: &Node,
        allowed_attrs: &[&str],
        field: impl FnMut(&mut Self, &Node) -> Result<bool, XmlError>,
    ) -> Result<(), XmlError> {
        self.container(n, allowed_attrs);
        self.fields(n, field)
    }

    /// Reads a repeated element of elements, `c`, into a new `T` pushed onto `list`: `field`
    /// reads each child into it, as in [`Reader::fields`]. True: `c` was read.
    pub(super) fn item<T: Default>(
        &mut self,
        list: &mut Vec<T>,
        c: &Node,
        mut field: impl FnMut(&mut Self, &Node, &mut T) -> Result<bool, XmlError>,
    ) -> Result<bool, XmlError> {
        let mut it = T::default();
        self.children(c, &[], |r, g| field(r, g, &mut it))?;
        list.push(it);
        Ok(true)
    }

    /// The text of a leaf element.
    fn text(&mut self, n: &Node) -> String {
        self.text_allowing(n, &[])
    }

    /// The text of a leaf element that may carry the attributes `allowed`.
    pub(super) fn text_allowing(&mut self, n: &Node, allowed: &[&str]) -> String {
        self.attrs(n, allowed);
        if !n.children.is_empty() {
            self.warn(
                "nested-markup",
                n,
                format!(
                    "elements inside <{}> ignored; only its text is used",
                    n.name
                ),
            );
        }
        n.text.clone()
    }

    /// Reads a text leaf into `slot`, unless a first one is there. True: `n` was read (for
    /// [`Reader::fields`]).
    pub(super) fn set_text(
        &mut self,
        slot: &mut Option<String>,
        n: &Node,
    ) -> Result<bool, XmlError> {
        let v = self.text(n);
        if slot.is_some() {
            self.duplicate(n);
        } else {
            *slot = Some(v);
        }
        Ok(true)
    }

    pub(super) fn duplicate(&mut self, n: &Node) {
        self.warn(
            "duplicate-element",
            n,
            format!("<{}> repeated; the first is used", n.name),
        );
    }

    fn number(&self, n: &Node, value: &str) -> Result<i64, XmlError> {
        value.trim().parse::<i64>().map_err(|_| XmlError::BadValue {
            path: n.path.clone(),
            position: self.pos(n),
            value: value.chars().take(64).collect(),
            expected: "an integer",
        })
    }

    /// Reads a number leaf into `slot`, unless a first one is there. True: `n` was read (for
    /// [`Reader::fields`]).
    pub(super) fn set_num(&mut self, slot: &mut Option<i64>, n: &Node) -> Result<bool, XmlError> {
        let v = self.text(n);
        let v = self.number(n, &v)?;
        if slot.is_some() {
            self.duplicate(n);
        } else {
            *slot = Some(v);
        }
        Ok(true)
    }

    pub(super) fn attr_num(&self, n: &Node, name: &str) -> Result<Option<i64>, XmlError> {
        match n.attr(name) {
            None => Ok(None),
            Some(v) => self.number(n, v).map(Some).map_err(|e| match e {
                XmlError::BadValue {
                    path,
                    position,
                    value,
                    expected,
                } => XmlError::BadValue {
                    path: format!("{path}/@{name}"),
                    position,
                    value,
                    expected,
                },
                other => other,
            }),
        }
    }

    /// The root of a displayable object: [`Reader::base_attrs`] and [`Reader::base_children`].
    pub(super) fn displayable(
        &mut self,
        root: &Node,
        b: &mut Displayable,
        field: impl FnMut(&mut Self, &Node) -> Result<bool, XmlError>,
    ) -> Result<(), XmlError> {
        self.base_attrs(root, b, &[]);
        self.base_children(root, b, field)
    }

    /// The displayable base's attributes; `extra` are the object's own.
    pub(super) fn base_attrs(&mut self, root: &Node, b: &mut Displayable, extra: &[&str]) {
        let mut allowed: Vec<&str> = BASE_ATTRS.to_vec();
        allowed.extend_from_slice(extra);
        self.container(root, &allowed);
        let get = |k: &str| root.attr(k).map(str::to_string);
        b.keypad_target = get("keypadTarget");
        b.app_id = get("appId");
        b.on_app_focus_lost = get("onAppFocusLost");
        b.on_app_focus_gained = get("onAppFocusGained");
        b.on_app_minimized = get("onAppMinimized");
        b.on_app_closed = get("onAppClosed");
    }

    /// The children of a displayable root: the base's are read here, the others are handed
    /// to `field` as in [`Reader::fields`].
    pub(super) fn base_children(
        &mut self,
        root: &Node,
        b: &mut Displayable,
        mut field: impl FnMut(&mut Self, &Node) -> Result<bool, XmlError>,
    ) -> Result<(), XmlError> {
        self.fields(root, |r, c| Ok(r.base_child(c, b)? || field(r, c)?))
    }

    /// Reads a child of the displayable base; false if `c` is not one.
    fn base_child(&mut self, c: &Node, b: &mut Displayable) -> Result<bool, XmlError> {
        match c.name.as_str() {
            "Title" => self.set_text(&mut b.title, c),
            "Prompt" => self.set_text(&mut b.prompt, c),
            "SoftKeyItem" => self.item(&mut b.soft_keys, c, |r, g, sk: &mut SoftKeyItem| {
                match g.name.as_str() {
                    "Name" => r.set_text(&mut sk.name, g),
                    "URL" => r.set_text(&mut sk.url, g),
                    "URLDown" => r.set_text(&mut sk.url_down, g),
                    "Position" => r.set_num(&mut sk.position, g),
                    _ => Ok(false),
                }
            }),
            "KeyItem" => self.item(&mut b.keys, c, |r, g, k: &mut KeyItem| {
                match g.name.as_str() {
                    "Key" => r.set_text(&mut k.key, g),
                    "URL" => r.set_text(&mut k.url, g),
                    "URLDown" => r.set_text(&mut k.url_down, g),
                    _ => Ok(false),
                }
            }),
            _ => Ok(false),
        }
    }

    /// Reads a bitmap field; false if `c` is not one.
    pub(super) fn bitmap_child(&mut self, c: &Node, bm: &mut Bitmap) -> Result<bool, XmlError> {
        match c.name.as_str() {
            "LocationX" => self.set_num(&mut bm.location_x, c),
            "LocationY" => self.set_num(&mut bm.location_y, c),
            "Width" => self.set_num(&mut bm.width, c),
            "Height" => self.set_num(&mut bm.height, c),
            "Depth" => self.set_num(&mut bm.depth, c),
            "Data" => self.set_text(&mut bm.data, c),
            _ => Ok(false),
        }
    }

    /// A `MenuItem` of a Menu or GraphicMenu, pushed onto `items`.
    pub(super) fn menu_item(
        &mut self,
        items: &mut Vec<MenuItem>,
        c: &Node,
    ) -> Result<bool, XmlError> {
        self.item(items, c, |r, g, m: &mut MenuItem| match g.name.as_str() {
            "Name" => r.set_text(&mut m.name, g),
            "URL" => r.set_text(&mut m.url, g),
            _ => Ok(false),
        })
    }

    /// A `MenuItem` of an IconMenu or IconFileMenu, pushed onto `items`.
    pub(super) fn icon_menu_item(
        &mut self,
        items: &mut Vec<IconMenuItem>,
        c: &Node,
    ) -> Result<bool, XmlError> {
        self.item(items, c, |r, g, m: &mut IconMenuItem| {
            match g.name.as_str() {
                "Name" => r.set_text(&mut m.name, g),
                "URL" => r.set_text(&mut m.url, g),
                "IconIndex" => r.set_num(&mut m.icon_index, g),
                _ => Ok(false),
            }
        })
    }
}

const BASE_ATTRS: [&str; 6] = [
    "keypadTarget",
    "appId",
    "onAppFocusLost",
    "onAppFocusGained",
    "onAppMinimized",
    "onAppClosed",
];

/// Reads the object rooted at `root`.
pub(crate) fn object(
    root: &Node,
    lines: &Lines<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<CiscoIPPhoneObject, XmlError> {
    let mut r = Reader { lines, warnings };
    let kind = match ObjectKind::from_root_name(&root.name) {
        Some(k) => k,
        None => match ObjectKind::from_misspelled_root(&root.name) {
            Some(k) => {
                let msg = format!(
                    "{} (the XSD's misspelling) read as {}",
                    root.name,
                    k.root_name()
                );
                r.warn("alias-root", root, msg);
                k
            }
            None => {
                return Err(XmlError::UnknownObject {
                    name: root.name.chars().take(64).collect(),
                    position: r.pos(root),
                })
            }
        },
    };
    kind.read(&mut r, root)
}
