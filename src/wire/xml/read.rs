//! Element tree → typed object. Tolerant: children in any order, unknown elements and
//! attributes ignored with a warning, a repeated single element keeps its first value.

use super::dom::{push_warning, Lines, Node};
use super::objects::*;
use super::{Position, Warning, XmlError};

struct Ctx<'a, 'w> {
    lines: &'a Lines<'a>,
    warnings: &'w mut Vec<Warning>,
}

impl Ctx<'_, '_> {
    fn pos(&self, n: &Node) -> Position {
        self.lines.position(n.offset)
    }

    fn warn(&mut self, code: &'static str, n: &Node, msg: String) {
        let pos = self.pos(n);
        push_warning(self.warnings, code, &n.path, pos, msg);
    }

    fn unknown(&mut self, n: &Node) {
        self.warn(
            "unknown-element",
            n,
            format!("unknown element <{}> ignored", n.name),
        );
    }

    /// Warns about attributes not in `allowed`.
    fn attrs(&mut self, n: &Node, allowed: &[&str]) {
        for (k, _) in &n.attrs {
            if !allowed.contains(&k.as_str()) {
                let msg = format!("unknown attribute {k} ignored");
                self.warn("unknown-attribute", n, msg);
            }
        }
    }

    /// Warns about text directly inside an element that holds only elements.
    fn container(&mut self, n: &Node, allowed_attrs: &[&str]) {
        self.attrs(n, allowed_attrs);
        if !n.text.trim().is_empty() {
            self.warn(
                "stray-text",
                n,
                format!("text directly inside <{}> ignored", n.name),
            );
        }
    }

    /// The text of a leaf element.
    fn text(&mut self, n: &Node) -> String {
        self.text_allowing(n, &[])
    }

    /// The text of a leaf element that may carry the attributes `allowed`.
    fn text_allowing(&mut self, n: &Node, allowed: &[&str]) -> String {
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

    fn set_text(&mut self, slot: &mut Option<String>, n: &Node) {
        let v = self.text(n);
        if slot.is_some() {
            self.duplicate(n);
        } else {
            *slot = Some(v);
        }
    }

    fn duplicate(&mut self, n: &Node) {
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

    fn set_num(&mut self, slot: &mut Option<i64>, n: &Node) -> Result<(), XmlError> {
        let v = self.text(n);
        let v = self.number(n, &v)?;
        if slot.is_some() {
            self.duplicate(n);
        } else {
            *slot = Some(v);
        }
        Ok(())
    }

    fn attr_num(&self, n: &Node, name: &str) -> Result<Option<i64>, XmlError> {
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
}

const BASE_ATTRS: [&str; 6] = [
    "keypadTarget",
    "appId",
    "onAppFocusLost",
    "onAppFocusGained",
    "onAppMinimized",
    "onAppClosed",
];

fn base_attrs(ctx: &mut Ctx, root: &Node, b: &mut Displayable, extra: &[&str]) {
    let mut allowed: Vec<&str> = BASE_ATTRS.to_vec();
    allowed.extend_from_slice(extra);
    ctx.container(root, &allowed);
    let get = |k: &str| root.attr(k).map(str::to_string);
    b.keypad_target = get("keypadTarget");
    b.app_id = get("appId");
    b.on_app_focus_lost = get("onAppFocusLost");
    b.on_app_focus_gained = get("onAppFocusGained");
    b.on_app_minimized = get("onAppMinimized");
    b.on_app_closed = get("onAppClosed");
}

/// Reads a child of the displayable base; false if `c` is not one.
fn base_child(ctx: &mut Ctx, c: &Node, b: &mut Displayable) -> Result<bool, XmlError> {
    match c.name.as_str() {
        "Title" => ctx.set_text(&mut b.title, c),
        "Prompt" => ctx.set_text(&mut b.prompt, c),
        "SoftKeyItem" => {
            ctx.container(c, &[]);
            let mut sk = SoftKeyItem::default();
            for g in &c.children {
                match g.name.as_str() {
                    "Name" => ctx.set_text(&mut sk.name, g),
                    "URL" => ctx.set_text(&mut sk.url, g),
                    "URLDown" => ctx.set_text(&mut sk.url_down, g),
                    "Position" => ctx.set_num(&mut sk.position, g)?,
                    _ => ctx.unknown(g),
                }
            }
            b.soft_keys.push(sk);
        }
        "KeyItem" => {
            ctx.container(c, &[]);
            let mut k = KeyItem::default();
            for g in &c.children {
                match g.name.as_str() {
                    "Key" => ctx.set_text(&mut k.key, g),
                    "URL" => ctx.set_text(&mut k.url, g),
                    "URLDown" => ctx.set_text(&mut k.url_down, g),
                    _ => ctx.unknown(g),
                }
            }
            b.keys.push(k);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Reads a bitmap field; false if `c` is not one.
fn bitmap_child(ctx: &mut Ctx, c: &Node, bm: &mut Bitmap) -> Result<bool, XmlError> {
    match c.name.as_str() {
        "LocationX" => ctx.set_num(&mut bm.location_x, c)?,
        "LocationY" => ctx.set_num(&mut bm.location_y, c)?,
        "Width" => ctx.set_num(&mut bm.width, c)?,
        "Height" => ctx.set_num(&mut bm.height, c)?,
        "Depth" => ctx.set_num(&mut bm.depth, c)?,
        "Data" => ctx.set_text(&mut bm.data, c),
        _ => return Ok(false),
    }
    Ok(true)
}

fn menu_item(ctx: &mut Ctx, c: &Node) -> MenuItem {
    ctx.container(c, &[]);
    let mut m = MenuItem::default();
    for g in &c.children {
        match g.name.as_str() {
            "Name" => ctx.set_text(&mut m.name, g),
            "URL" => ctx.set_text(&mut m.url, g),
            _ => ctx.unknown(g),
        }
    }
    m
}

fn icon_menu_item(ctx: &mut Ctx, c: &Node) -> Result<IconMenuItem, XmlError> {
    ctx.container(c, &[]);
    let mut m = IconMenuItem::default();
    for g in &c.children {
        match g.name.as_str() {
            "Name" => ctx.set_text(&mut m.name, g),
            "URL" => ctx.set_text(&mut m.url, g),
            "IconIndex" => ctx.set_num(&mut m.icon_index, g)?,
            _ => ctx.unknown(g),
        }
    }
    Ok(m)
}

/// Reads the object rooted at `root`.
pub(crate) fn object(
    root: &Node,
    lines: &Lines<'_>,
    warnings: &mut Vec<Warning>,
) -> Result<CiscoIPPhoneObject, XmlError> {
    let mut ctx = Ctx { lines, warnings };
    let kind = match ObjectKind::from_root_name(&root.name) {
        Some(k) => k,
        // The 3.3.4 XSD misspells the Response root; accept it (phones send the right one).
        None if root.name == "CiscoIPhoneResponse" => {
            ctx.warn(
                "alias-root",
                root,
                "CiscoIPhoneResponse (the XSD's misspelling) read as CiscoIPPhoneResponse".into(),
            );
            ObjectKind::Response
        }
        None => {
            return Err(XmlError::UnknownObject {
                name: root.name.chars().take(64).collect(),
                position: ctx.pos(root),
            })
        }
    };
    let ctx = &mut ctx;
    Ok(match kind {
        ObjectKind::Menu => {
            let mut o = Menu::default();
            base_attrs(ctx, root, &mut o.base, &[]);
            for c in &root.children {
                if base_child(ctx, c, &mut o.base)? {
                    continue;
                }
                match c.name.as_str() {
                    "MenuItem" => o.items.push(menu_item(ctx, c)),
                    _ => ctx.unknown(c),
                }
            }
            o.into()
        }
        ObjectKind::Text => {
            let mut o = Text::default();
            base_attrs(ctx, root, &mut o.base, &[]);
            for c in &root.children {
                if base_child(ctx, c, &mut o.base)? {
                    continue;
                }
                match c.name.as_str() {
                    "Text" => ctx.set_text(&mut o.text, c),
                    _ => ctx.unknown(c),
                }
            }
            o.into()
        }
        ObjectKind::Input => {
            let mut o = Input::default();
            base_attrs(ctx, root, &mut o.base, &[]);
            for c in &root.children {
                if base_child(ctx, c, &mut o.base)? {
                    continue;
                }
                match c.name.as_str() {
                    "URL" => {
                        if o.url.is_some() {
                            ctx.duplicate(c);
                            continue;
                        }
                        o.url = Some(ctx.text_allowing(c, &["method"]));
                        o.url_method = c.attr("method").map(str::to_string);
                    }
                    "InputItem" => {
                        ctx.container(c, &[]);
                        let mut it = InputItem::default();
                        for g in &c.children {
                            match g.name.as_str() {
                                "DisplayName" => ctx.set_text(&mut it.display_name, g),
                                "QueryStringParam" => ctx.set_text(&mut it.query_string_param, g),
                                "InputFlags" => ctx.set_text(&mut it.input_flags, g),
                                "DefaultValue" => ctx.set_text(&mut it.default_value, g),
                                _ => ctx.unknown(g),
                            }
                        }
                        o.items.push(it);
                    }
                    _ => ctx.unknown(c),
                }
            }
            o.into()
        }
        ObjectKind::Directory => {
            let mut o = Directory::default();
            base_attrs(ctx, root, &mut o.base, &[]);
            for c in &root.children {
                if base_child(ctx, c, &mut o.base)? {
                    continue;
                }
                match c.name.as_str() {
                    "DirectoryEntry" => {
                        ctx.container(c, &[]);
                        let mut e = DirectoryEntry::default();
                        for g in &c.children {
                            match g.name.as_str() {
                                "Name" => ctx.set_text(&mut e.name, g),
                                "Telephone" => ctx.set_text(&mut e.telephone, g),
                                _ => ctx.unknown(g),
                            }
                        }
                        o.entries.push(e);
                    }
                    _ => ctx.unknown(c),
                }
            }
            o.into()
        }
        ObjectKind::Image => {
            let mut o = Image::default();
            base_attrs(ctx, root, &mut o.base, &[]);
            for c in &root.children {
                if base_child(ctx, c, &mut o.base)? || bitmap_child(ctx, c, &mut o.bitmap)? {
                    continue;
                }
                ctx.unknown(c);
            }
            o.into()
        }
        ObjectKind::GraphicMenu => {
            let mut o = GraphicMenu::default();
            base_attrs(ctx, root, &mut o.base, &[]);
            for c in &root.children {
                if base_child(ctx, c, &mut o.base)? || bitmap_child(ctx, c, &mut o.bitmap)? {
                    continue;
                }
                match c.name.as_str() {
                    "MenuItem" => o.items.push(menu_item(ctx, c)),
                    _ => ctx.unknown(c),
                }
            }
            o.into()
        }
        ObjectKind::ImageFile => {
            let mut o = ImageFile::default();
            base_attrs(ctx, root, &mut o.base, &[]);
            for c in &root.children {
                if base_child(ctx, c, &mut o.base)? {
                    continue;
                }
                match c.name.as_str() {
                    "LocationX" => ctx.set_num(&mut o.location_x, c)?,
                    "LocationY" => ctx.set_num(&mut o.location_y, c)?,
                    "URL" => ctx.set_text(&mut o.url, c),
                    _ => ctx.unknown(c),
                }
            }
            o.into()
        }
        ObjectKind::GraphicFileMenu => {
            let mut o = GraphicFileMenu::default();
            base_attrs(ctx, root, &mut o.base, &[]);
            for c in &root.children {
                if base_child(ctx, c, &mut o.base)? {
                    continue;
                }
                match c.name.as_str() {
                    "LocationX" => ctx.set_num(&mut o.location_x, c)?,
                    "LocationY" => ctx.set_num(&mut o.location_y, c)?,
                    "URL" => ctx.set_text(&mut o.url, c),
                    "MenuItem" => {
                        ctx.container(c, &[]);
                        let mut m = TouchAreaMenuItem::default();
                        for g in &c.children {
                            match g.name.as_str() {
                                "Name" => ctx.set_text(&mut m.name, g),
                                "URL" => ctx.set_text(&mut m.url, g),
                                "TouchArea" => {
                                    ctx.container(g, &["X1", "Y1", "X2", "Y2"]);
                                    if m.touch_area.is_some() {
                                        ctx.duplicate(g);
                                        continue;
                                    }
                                    for x in &g.children {
                                        ctx.unknown(x);
                                    }
                                    m.touch_area = Some(TouchArea {
                                        x1: ctx.attr_num(g, "X1")?,
                                        y1: ctx.attr_num(g, "Y1")?,
                                        x2: ctx.attr_num(g, "X2")?,
                                        y2: ctx.attr_num(g, "Y2")?,
                                    });
                                }
                                _ => ctx.unknown(g),
                            }
                        }
                        o.items.push(m);
                    }
                    _ => ctx.unknown(c),
                }
            }
            o.into()
        }
        ObjectKind::IconMenu => {
            let mut o = IconMenu::default();
            base_attrs(ctx, root, &mut o.base, &[]);
            for c in &root.children {
                if base_child(ctx, c, &mut o.base)? {
                    continue;
                }
                match c.name.as_str() {
                    "MenuItem" => o.items.push(icon_menu_item(ctx, c)?),
                    "IconItem" => {
                        ctx.container(c, &[]);
                        let mut i = IconItem::default();
                        for g in &c.children {
                            match g.name.as_str() {
                                "Index" => ctx.set_num(&mut i.index, g)?,
                                "Width" => ctx.set_num(&mut i.width, g)?,
                                "Height" => ctx.set_num(&mut i.height, g)?,
                                "Depth" => ctx.set_num(&mut i.depth, g)?,
                                "Data" => ctx.set_text(&mut i.data, g),
                                _ => ctx.unknown(g),
                            }
                        }
                        o.icons.push(i);
                    }
                    _ => ctx.unknown(c),
                }
            }
            o.into()
        }
        ObjectKind::IconFileMenu => {
            let mut o = IconFileMenu::default();
            base_attrs(ctx, root, &mut o.base, &["IconIndex"]);
            o.icon_index = ctx.attr_num(root, "IconIndex")?;
            for c in &root.children {
                if base_child(ctx, c, &mut o.base)? {
                    continue;
                }
                match c.name.as_str() {
                    "MenuItem" => o.items.push(icon_menu_item(ctx, c)?),
                    "IconItem" => {
                        ctx.container(c, &[]);
                        let mut i = IconFileItem::default();
                        for g in &c.children {
                            match g.name.as_str() {
                                "Index" => ctx.set_num(&mut i.index, g)?,
                                "URL" => ctx.set_text(&mut i.url, g),
                                _ => ctx.unknown(g),
                            }
                        }
                        o.icons.push(i);
                    }
                    _ => ctx.unknown(c),
                }
            }
            o.into()
        }
        ObjectKind::Status => {
            let mut o = Status::default();
            ctx.container(root, &[]);
            for c in &root.children {
                if bitmap_child(ctx, c, &mut o.bitmap)? {
                    continue;
                }
                match c.name.as_str() {
                    "Text" => ctx.set_text(&mut o.text, c),
                    "Timer" => ctx.set_num(&mut o.timer, c)?,
                    _ => ctx.unknown(c),
                }
            }
            o.into()
        }
        ObjectKind::StatusFile => {
            let mut o = StatusFile::default();
            ctx.container(root, &[]);
            for c in &root.children {
                match c.name.as_str() {
                    "Text" => ctx.set_text(&mut o.text, c),
                    "Timer" => ctx.set_num(&mut o.timer, c)?,
                    "LocationX" => ctx.set_num(&mut o.location_x, c)?,
                    "LocationY" => ctx.set_num(&mut o.location_y, c)?,
                    "URL" => ctx.set_text(&mut o.url, c),
                    _ => ctx.unknown(c),
                }
            }
            o.into()
        }
        ObjectKind::Execute => {
            let mut o = Execute::default();
            ctx.container(root, &[]);
            for c in &root.children {
                match c.name.as_str() {
                    "ExecuteItem" => {
                        ctx.container(c, &["URL", "Priority"]);
                        for g in &c.children {
                            ctx.unknown(g);
                        }
                        o.items.push(ExecuteItem {
                            url: c.attr("URL").map(str::to_string),
                            priority: ctx.attr_num(c, "Priority")?,
                        });
                    }
                    _ => ctx.unknown(c),
                }
            }
            o.into()
        }
        ObjectKind::Response => {
            let mut o = Response::default();
            ctx.container(root, &[]);
            for c in &root.children {
                match c.name.as_str() {
                    "ResponseItem" => {
                        // Phones send attributes; the XSD has child elements. Read both.
                        ctx.container(c, &["Status", "Data", "URL"]);
                        let mut it = ResponseItem {
                            status: ctx.attr_num(c, "Status")?,
                            data: c.attr("Data").map(str::to_string),
                            url: c.attr("URL").map(str::to_string),
                        };
                        for g in &c.children {
                            match g.name.as_str() {
                                "Status" => ctx.set_num(&mut it.status, g)?,
                                "Data" => ctx.set_text(&mut it.data, g),
                                "URL" => ctx.set_text(&mut it.url, g),
                                _ => ctx.unknown(g),
                            }
                        }
                        o.items.push(it);
                    }
                    _ => ctx.unknown(c),
                }
            }
            o.into()
        }
        ObjectKind::Error => {
            ctx.attrs(root, &["Number"]);
            for c in &root.children {
                ctx.unknown(c);
            }
            PhoneError {
                number: ctx.attr_num(root, "Number")?,
                message: Some(root.text.clone()).filter(|t| !t.trim().is_empty()),
            }
            .into()
        }
    })
}
