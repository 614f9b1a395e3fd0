//! Validation: every violation of the XSD's limits and of the Development Notes' rules
//! (spec §1.2–1.8), each with its element path and a stable rule id, optionally against a
//! phone model's capabilities.
//!
//! Rule ids: `required`, `max-length`, `min-length`, `range`, `max-items`, `min-items`,
//! `input-flags`, `url-method`, `softkey-position`, `softkey-position-duplicate`,
//! `key-name`, `keypad-target`, `urldown-http`, `control-char`, `menu-name-lines`,
//! `hex-data`, `image-data-size`, `execute-http-count`, `execute-uri-forbidden`, and with a
//! model: `model-object`, `model-softkey-position`, `model-input-post`, `model-input-flags`,
//! `model-size`.
//!
//! Lengths count characters (XSD `maxLength` on strings), hex data counts bytes.

use std::fmt;

use super::objects::*;

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Element path, 1-based indices on repeated elements, `@` for attributes:
    /// `CiscoIPPhoneInput/InputItem[2]/InputFlags`, `CiscoIPPhoneExecute/ExecuteItem[1]/@URL`.
    pub path: String,
    /// A stable short id (see the module docs).
    pub rule: &'static str,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} [{}]", self.path, self.message, self.rule)
    }
}

/// What a phone's screen can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplayKind {
    /// Text only: no Image, GraphicMenu, ImageFile, GraphicFileMenu, IconMenu, IconFileMenu,
    /// Status or StatusFile. No model in the table below is known to be text-only.
    TextOnly,
    Greyscale,
    Colour,
}

/// A phone model's capabilities that bear on XML objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneModel {
    /// As sent in `x-CiscoIPPhoneModelName`, e.g. `CP-8851`.
    pub name: &'static str,
    /// Other names of the same capability set (family members).
    pub aliases: &'static [&'static str],
    pub display: DisplayKind,
    /// Application area in pixels and bits per pixel.
    pub width: u16,
    pub height: u16,
    pub depth: u8,
    /// The highest SoftKeyItem `Position` (−1, the Applications button, is also allowed).
    pub softkey_max: i64,
    /// Objects the model does not display.
    pub unsupported: &'static [ObjectKind],
    /// Multiplatform (MPP/3PCC) firmware: no Response or Error objects, no `E` input flag.
    pub mpp: bool,
    /// Whether `<URL method="post">` in an Input is supported.
    pub input_post: bool,
    /// The largest object the model downloads.
    pub max_document_bytes: Option<usize>,
    /// Which of the facts above no source confirmed.
    pub unconfirmed: &'static str,
}

const PNG_OBJECTS: &[ObjectKind] = &[
    ObjectKind::ImageFile,
    ObjectKind::GraphicFileMenu,
    ObjectKind::IconFileMenu,
    ObjectKind::StatusFile,
];

/// A small table of models, from spec §1.3, §1.4, §1.7, §1.8 and the getDeviceCapsResponse
/// in the corpus (CP-7970G). What is not from those is named in `unconfirmed`.
pub static MODELS: &[PhoneModel] = &[
    PhoneModel {
        name: "CP-7960",
        aliases: &["CP-7960G", "CP-7940", "CP-7940G"],
        display: DisplayKind::Greyscale,
        width: 133,
        height: 65,
        depth: 2,
        softkey_max: 8,
        unsupported: PNG_OBJECTS,
        mpp: false,
        input_post: false,
        max_document_bytes: None,
        unconfirmed: "softkey_max 8 (XSD) and no PNG objects on this firmware generation",
    },
    PhoneModel {
        name: "CP-7970G",
        aliases: &["CP-7970", "CP-7971G-GE", "CP-7975G"],
        display: DisplayKind::Colour,
        width: 298,
        height: 168,
        depth: 12,
        softkey_max: 8,
        unsupported: &[],
        mpp: false,
        input_post: false,
        max_document_bytes: None,
        unconfirmed: "application area 298x168 (the physical display is 320x234); softkey_max 8",
    },
    PhoneModel {
        name: "CP-7821",
        aliases: &["CP-7811", "CP-7841", "CP-7861"],
        display: DisplayKind::Greyscale,
        width: 396,
        height: 162,
        depth: 4,
        softkey_max: 16,
        unsupported: &[ObjectKind::Image, ObjectKind::GraphicMenu],
        mpp: false,
        input_post: true,
        max_document_bytes: None,
        unconfirmed: "display size and depth",
    },
    PhoneModel {
        name: "CP-8851",
        aliases: &["CP-8841", "CP-8845", "CP-8861", "CP-8865"],
        display: DisplayKind::Colour,
        width: 559,
        height: 265,
        depth: 24,
        softkey_max: 16,
        unsupported: &[],
        mpp: false,
        input_post: true,
        max_document_bytes: None,
        unconfirmed: "",
    },
    PhoneModel {
        name: "CP-8851-3PCC",
        aliases: &[
            "CP-8841-3PCC",
            "CP-8861-3PCC",
            "CP-7841-3PCC",
            "CP-6871-3PCC",
        ],
        display: DisplayKind::Colour,
        width: 559,
        height: 265,
        depth: 24,
        softkey_max: 16,
        unsupported: &[ObjectKind::Response, ObjectKind::Error],
        mpp: true,
        input_post: true,
        max_document_bytes: None,
        unconfirmed: "display size taken from the enterprise 8851",
    },
    PhoneModel {
        name: "CP-8821",
        aliases: &["CP-9821"],
        display: DisplayKind::Colour,
        width: 240,
        height: 320,
        depth: 16,
        softkey_max: 8,
        unsupported: &[ObjectKind::Status],
        mpp: false,
        input_post: false,
        max_document_bytes: None,
        unconfirmed: "display size and depth; 9821 without Status",
    },
    PhoneModel {
        name: "CP-9971",
        aliases: &["CP-9951", "CP-8961"],
        display: DisplayKind::Colour,
        width: 640,
        height: 480,
        depth: 24,
        softkey_max: 16,
        unsupported: &[ObjectKind::Status],
        mpp: false,
        input_post: false,
        max_document_bytes: None,
        unconfirmed: "display size, depth and softkey_max",
    },
    PhoneModel {
        name: "CP-6921",
        aliases: &["CP-6941", "CP-6945", "CP-6961"],
        display: DisplayKind::Greyscale,
        width: 396,
        height: 81,
        depth: 1,
        softkey_max: 16,
        unsupported: &[],
        mpp: false,
        input_post: false,
        max_document_bytes: Some(196_608),
        unconfirmed: "display size, depth, softkey_max and object support",
    },
    PhoneModel {
        name: "DP-9841",
        aliases: &["DP-9811", "DP-9851", "DP-9861", "DP-9871"],
        display: DisplayKind::Greyscale,
        width: 384,
        height: 160,
        depth: 4,
        softkey_max: 16,
        unsupported: &[ObjectKind::Status],
        mpp: false,
        input_post: false,
        max_document_bytes: None,
        unconfirmed: "display, and Status support on 9851/9861/9871",
    },
];

impl PhoneModel {
    /// The model named `name` (case-insensitive; the `CP-` prefix may be left out).
    pub fn lookup(name: &str) -> Option<&'static PhoneModel> {
        // Cluster definitions name models as Unified CM does ("Cisco 8845"); accept that too.
        let upper = name.trim().to_ascii_uppercase();
        let want = ["CISCO IP PHONE ", "CISCO "]
            .iter()
            .find_map(|p| upper.strip_prefix(p))
            .unwrap_or(&upper)
            .trim()
            .to_string();
        let matches = |n: &str| {
            let n = n.to_ascii_uppercase();
            n == want || n.strip_prefix("CP-").is_some_and(|s| s == want)
        };
        MODELS
            .iter()
            .find(|m| matches(m.name) || m.aliases.iter().any(|a| matches(a)))
    }

    /// Whether the model displays or executes objects of `kind`.
    pub fn supports(&self, kind: ObjectKind) -> bool {
        if self.unsupported.contains(&kind) {
            return false;
        }
        if self.display == DisplayKind::TextOnly {
            return matches!(
                kind,
                ObjectKind::Menu
                    | ObjectKind::Text
                    | ObjectKind::Input
                    | ObjectKind::Directory
                    | ObjectKind::Execute
                    | ObjectKind::Response
                    | ObjectKind::Error
            );
        }
        true
    }
}

struct V<'m> {
    out: Vec<Violation>,
    model: Option<&'m PhoneModel>,
}

fn is_http(url: &str) -> bool {
    let l = url
        .trim_start()
        .get(..8)
        .unwrap_or(url)
        .to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

impl V<'_> {
    fn push(&mut self, path: String, rule: &'static str, message: String) {
        self.out.push(Violation {
            path,
            rule,
            message,
        });
    }

    /// An optional string's length in characters.
    fn len(&mut self, path: &str, v: Option<&str>, min: usize, max: usize) {
        if let Some(v) = v {
            let n = v.chars().count();
            if n > max {
                self.push(
                    path.into(),
                    "max-length",
                    format!("{n} characters, more than {max}"),
                );
            } else if n < min {
                self.push(
                    path.into(),
                    "min-length",
                    format!("{n} characters, fewer than {min}"),
                );
            }
        }
    }

    fn required<T>(&mut self, path: &str, v: Option<T>) -> Option<T> {
        if v.is_none() {
            self.push(path.into(), "required", "missing".into());
        }
        v
    }

    fn req_len(&mut self, path: &str, v: Option<&str>, min: usize, max: usize) {
        let v = self.required(path, v);
        self.len(path, v, min, max);
    }

    fn range(&mut self, path: &str, v: Option<i64>, min: i64, max: i64) {
        if let Some(v) = v {
            if v < min || v > max {
                self.push(
                    path.into(),
                    "range",
                    format!("{v} is outside {min}..={max}"),
                );
            }
        }
    }

    fn req_range(&mut self, path: &str, v: Option<i64>, min: i64, max: i64) {
        let v = self.required(path, v);
        self.range(path, v, min, max);
    }

    fn items(&mut self, parent: &str, name: &str, count: usize, max: usize) {
        if count > max {
            self.push(
                format!("{parent}/{name}[{}]", max + 1),
                "max-items",
                format!("{count} {name} elements, more than {max}"),
            );
        }
    }

    fn control_chars(&mut self, path: &str, v: Option<&str>) {
        if let Some(c) = v.and_then(|v| {
            v.chars()
                .find(|&c| c.is_control() && !matches!(c, '\r' | '\n' | '\t'))
        }) {
            self.push(
                path.into(),
                "control-char",
                format!("control character U+{:04X}", u32::from(c)),
            );
        }
    }

    /// Hex data: well-formed, at most `max` bytes, and as long as the dimensions need.
    fn hex(
        &mut self,
        path: &str,
        data: Option<&str>,
        max: usize,
        dims: (Option<i64>, Option<i64>, Option<i64>),
    ) {
        let Some(data) = data else { return };
        let data = data.trim();
        if data.len() % 2 != 0 || !data.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.push(
                path.into(),
                "hex-data",
                "not an even number of hex digits".into(),
            );
            return;
        }
        let bytes = data.len() / 2;
        if bytes > max {
            self.push(
                path.into(),
                "max-length",
                format!("{bytes} bytes, more than {max}"),
            );
        }
        // Pixels are packed contiguously, `depth` bits each, no row padding: the XSD's
        // maxima (133×65×2 bits → 2162 bytes, 106×21×2 → 557, 16×10×2 → 40) agree.
        if let (Some(w), Some(h), Some(d)) = dims {
            if w > 0 && h > 0 && d > 0 {
                let bits = w.saturating_mul(h).saturating_mul(d);
                let need = bits.saturating_add(7) / 8;
                if i64::try_from(bytes) != Ok(need) {
                    self.push(
                        path.into(),
                        "image-data-size",
                        format!(
                            "{bytes} bytes of data; {w}x{h} at {d} bits per pixel needs {need}"
                        ),
                    );
                }
            }
        }
    }

    fn base(&mut self, root: &str, b: &Displayable) {
        self.len(&format!("{root}/Title"), b.title.as_deref(), 0, 32);
        self.len(&format!("{root}/Prompt"), b.prompt.as_deref(), 0, 32);
        if let Some(t) = &b.keypad_target {
            if !matches!(t.as_str(), "application" | "applicationCall" | "activeCall") {
                self.push(
                    format!("{root}/@keypadTarget"),
                    "keypad-target",
                    format!("{t:?} is not application, applicationCall or activeCall"),
                );
            }
        }
        self.len(&format!("{root}/@appId"), b.app_id.as_deref(), 1, 64);
        for (name, v) in [
            ("onAppFocusLost", &b.on_app_focus_lost),
            ("onAppFocusGained", &b.on_app_focus_gained),
            ("onAppMinimized", &b.on_app_minimized),
            ("onAppClosed", &b.on_app_closed),
        ] {
            self.len(&format!("{root}/@{name}"), v.as_deref(), 1, 256);
        }
        // UNCONFIRMED: the XSD allows 8 softkeys at positions 1..=8; newer phones take
        // positions 1..=16 (and -1), so up to 16 are allowed unless a model says fewer.
        let max_keys = self
            .model
            .map_or(16, |m| m.softkey_max.clamp(1, 16) as usize);
        self.items(root, "SoftKeyItem", b.soft_keys.len(), max_keys);
        let mut seen: Vec<i64> = Vec::new();
        for (i, sk) in b.soft_keys.iter().enumerate() {
            let p = format!("{root}/SoftKeyItem[{}]", i + 1);
            self.len(&format!("{p}/Name"), sk.name.as_deref(), 0, 32);
            self.len(&format!("{p}/URL"), sk.url.as_deref(), 0, 256);
            self.url_down(&format!("{p}/URLDown"), sk.url_down.as_deref());
            let pos_path = format!("{p}/Position");
            if let Some(pos) = self.required(&pos_path, sk.position) {
                if pos != -1 && !(1..=16).contains(&pos) {
                    self.push(
                        pos_path.clone(),
                        "softkey-position",
                        format!("{pos} is not -1 or 1..=16"),
                    );
                } else if let Some(m) = self.model.filter(|m| pos > m.softkey_max) {
                    self.push(
                        pos_path.clone(),
                        "model-softkey-position",
                        format!("{pos} is beyond {}'s {} softkeys", m.name, m.softkey_max),
                    );
                }
                if seen.contains(&pos) {
                    self.push(
                        pos_path,
                        "softkey-position-duplicate",
                        format!("another softkey already has position {pos}"),
                    );
                }
                seen.push(pos);
            }
        }
        self.items(root, "KeyItem", b.keys.len(), 32);
        for (i, k) in b.keys.iter().enumerate() {
            let p = format!("{root}/KeyItem[{}]", i + 1);
            let kp = format!("{p}/Key");
            if let Some(key) = self.required(&kp, k.key.as_deref()) {
                if !KEY_NAMES.contains(&key) {
                    self.push(kp, "key-name", format!("{key:?} is not a key name"));
                }
            }
            self.len(&format!("{p}/URL"), k.url.as_deref(), 0, 256);
            self.url_down(&format!("{p}/URLDown"), k.url_down.as_deref());
        }
    }

    fn url_down(&mut self, path: &str, v: Option<&str>) {
        self.len(path, v, 0, 256);
        if v.is_some_and(is_http) {
            self.push(
                path.into(),
                "urldown-http",
                "URLDown may carry only internal URIs, not an HTTP URL".into(),
            );
        }
    }

    fn menu_items(&mut self, root: &str, items: &[MenuItem], max: usize) {
        self.items(root, "MenuItem", items.len(), max);
        for (i, m) in items.iter().enumerate() {
            let p = format!("{root}/MenuItem[{}]", i + 1);
            let np = format!("{p}/Name");
            self.len(&np, m.name.as_deref(), 0, 64);
            if m.name
                .as_deref()
                .is_some_and(|n| n.matches('\r').count() > 2)
            {
                self.push(
                    np,
                    "menu-name-lines",
                    "more than two CRs: a name spans at most three lines".into(),
                );
            }
            self.len(&format!("{p}/URL"), m.url.as_deref(), 0, 256);
        }
    }

    fn icon_menu_items(&mut self, root: &str, items: &[IconMenuItem]) {
        self.items(root, "MenuItem", items.len(), 32);
        for (i, m) in items.iter().enumerate() {
            let p = format!("{root}/MenuItem[{}]", i + 1);
            self.len(&format!("{p}/Name"), m.name.as_deref(), 0, 64);
            self.len(&format!("{p}/URL"), m.url.as_deref(), 0, 256);
            self.range(&format!("{p}/IconIndex"), m.icon_index, 0, 9);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn bitmap(
        &mut self,
        root: &str,
        b: &Bitmap,
        max_x: i64,
        max_y: i64,
        max_w: i64,
        max_h: i64,
        max_bytes: usize,
    ) {
        self.range(&format!("{root}/LocationX"), b.location_x, -1, max_x);
        self.range(&format!("{root}/LocationY"), b.location_y, -1, max_y);
        self.req_range(&format!("{root}/Width"), b.width, 1, max_w);
        self.req_range(&format!("{root}/Height"), b.height, 1, max_h);
        self.req_range(&format!("{root}/Depth"), b.depth, 1, 2);
        self.hex(
            &format!("{root}/Data"),
            b.data.as_deref(),
            max_bytes,
            (b.width, b.height, b.depth),
        );
    }

    fn object(&mut self, o: &CiscoIPPhoneObject) {
        let root = o.kind().root_name();
        if let Some(b) = o.displayable() {
            self.base(root, b);
        }
        let r = |s: &str| format!("{root}/{s}");
        match o {
            CiscoIPPhoneObject::Menu(m) => self.menu_items(root, &m.items, 100),
            CiscoIPPhoneObject::Text(t) => {
                self.len(&r("Text"), t.text.as_deref(), 0, 4000);
                self.control_chars(&r("Text"), t.text.as_deref());
            }
            CiscoIPPhoneObject::Input(i) => {
                self.req_len(&r("URL"), i.url.as_deref(), 1, 256);
                if let Some(m) = &i.url_method {
                    let post = m.eq_ignore_ascii_case("post");
                    if !post && !m.eq_ignore_ascii_case("get") {
                        self.push(
                            r("URL/@method"),
                            "url-method",
                            format!("{m:?} is not get or post"),
                        );
                    } else if let Some(model) = self.model.filter(|md| post && !md.input_post) {
                        self.push(
                            r("URL/@method"),
                            "model-input-post",
                            format!("{} does not support POST from an Input", model.name),
                        );
                    }
                }
                self.items(root, "InputItem", i.items.len(), 5);
                for (n, it) in i.items.iter().enumerate() {
                    let p = format!("{root}/InputItem[{}]", n + 1);
                    self.len(
                        &format!("{p}/DisplayName"),
                        it.display_name.as_deref(),
                        0,
                        32,
                    );
                    self.req_len(
                        &format!("{p}/QueryStringParam"),
                        it.query_string_param.as_deref(),
                        1,
                        32,
                    );
                    let fp = format!("{p}/InputFlags");
                    if let Some(f) = self.required(&fp, it.input_flags.as_deref()) {
                        if !INPUT_FLAGS.contains(&f) {
                            self.push(
                                fp.clone(),
                                "input-flags",
                                format!("{f:?} is not one of A T N E U L, optionally with P"),
                            );
                        } else if let Some(m) = self.model.filter(|m| m.mpp && f.contains('E')) {
                            self.push(
                                fp,
                                "model-input-flags",
                                format!("{} (MPP firmware) does not support E", m.name),
                            );
                        }
                    }
                    self.len(
                        &format!("{p}/DefaultValue"),
                        it.default_value.as_deref(),
                        0,
                        32,
                    );
                }
            }
            CiscoIPPhoneObject::Directory(d) => {
                self.items(root, "DirectoryEntry", d.entries.len(), 32);
                for (n, e) in d.entries.iter().enumerate() {
                    let p = format!("{root}/DirectoryEntry[{}]", n + 1);
                    self.len(&format!("{p}/Name"), e.name.as_deref(), 0, 32);
                    self.len(&format!("{p}/Telephone"), e.telephone.as_deref(), 0, 32);
                }
            }
            CiscoIPPhoneObject::Image(i) => self.bitmap(root, &i.bitmap, 132, 64, 133, 65, 2162),
            CiscoIPPhoneObject::GraphicMenu(g) => {
                self.bitmap(root, &g.bitmap, 132, 64, 133, 65, 2162);
                self.menu_items(root, &g.items, 12);
            }
            CiscoIPPhoneObject::ImageFile(i) => {
                self.range(&r("LocationX"), i.location_x, -1, 297);
                self.range(&r("LocationY"), i.location_y, -1, 167);
                self.req_len(&r("URL"), i.url.as_deref(), 1, 256);
            }
            CiscoIPPhoneObject::GraphicFileMenu(g) => {
                self.range(&r("LocationX"), g.location_x, -1, 297);
                self.range(&r("LocationY"), g.location_y, -1, 167);
                self.req_len(&r("URL"), g.url.as_deref(), 1, 256);
                self.items(root, "MenuItem", g.items.len(), 32);
                for (n, m) in g.items.iter().enumerate() {
                    let p = format!("{root}/MenuItem[{}]", n + 1);
                    self.len(&format!("{p}/Name"), m.name.as_deref(), 0, 32);
                    self.len(&format!("{p}/URL"), m.url.as_deref(), 0, 256);
                    if let Some(t) = &m.touch_area {
                        for (a, v) in [("X1", t.x1), ("Y1", t.y1), ("X2", t.x2), ("Y2", t.y2)] {
                            self.req_range(&format!("{p}/TouchArea/@{a}"), v, 0, 65535);
                        }
                    }
                }
            }
            CiscoIPPhoneObject::IconMenu(m) => {
                self.icon_menu_items(root, &m.items);
                self.items(root, "IconItem", m.icons.len(), 10);
                for (n, i) in m.icons.iter().enumerate() {
                    let p = format!("{root}/IconItem[{}]", n + 1);
                    self.req_range(&format!("{p}/Index"), i.index, 0, 65535);
                    self.req_range(&format!("{p}/Width"), i.width, 1, 16);
                    self.req_range(&format!("{p}/Height"), i.height, 1, 10);
                    self.req_range(&format!("{p}/Depth"), i.depth, 1, 2);
                    self.hex(
                        &format!("{p}/Data"),
                        i.data.as_deref(),
                        40,
                        (i.width, i.height, i.depth),
                    );
                }
            }
            CiscoIPPhoneObject::IconFileMenu(m) => {
                self.range(&r("@IconIndex"), m.icon_index, 0, 65535);
                self.icon_menu_items(root, &m.items);
                self.items(root, "IconItem", m.icons.len(), 10);
                for (n, i) in m.icons.iter().enumerate() {
                    let p = format!("{root}/IconItem[{}]", n + 1);
                    self.req_range(&format!("{p}/Index"), i.index, 0, 9);
                    self.req_len(&format!("{p}/URL"), i.url.as_deref(), 1, 256);
                }
            }
            CiscoIPPhoneObject::Status(s) => {
                self.len(&r("Text"), s.text.as_deref(), 0, 32);
                self.control_chars(&r("Text"), s.text.as_deref());
                self.range(&r("Timer"), s.timer, 0, 65535);
                self.bitmap(root, &s.bitmap, 105, 20, 106, 21, 557);
            }
            CiscoIPPhoneObject::StatusFile(s) => {
                self.len(&r("Text"), s.text.as_deref(), 0, 32);
                self.control_chars(&r("Text"), s.text.as_deref());
                self.range(&r("Timer"), s.timer, 0, 65535);
                self.range(&r("LocationX"), s.location_x, -1, 261);
                self.range(&r("LocationY"), s.location_y, -1, 49);
                self.req_len(&r("URL"), s.url.as_deref(), 1, 256);
            }
            CiscoIPPhoneObject::Execute(e) => {
                if e.items.is_empty() {
                    self.push(r("ExecuteItem[1]"), "min-items", "no ExecuteItem".into());
                }
                self.items(root, "ExecuteItem", e.items.len(), 3);
                let mut http = 0;
                for (n, i) in e.items.iter().enumerate() {
                    let p = format!("{root}/ExecuteItem[{}]", n + 1);
                    let up = format!("{p}/@URL");
                    self.req_len(&up, i.url.as_deref(), 1, 256);
                    self.range(&format!("{p}/@Priority"), i.priority, 0, 2);
                    let Some(url) = i.url.as_deref() else {
                        continue;
                    };
                    if is_http(url) {
                        http += 1;
                        if http == 2 {
                            self.push(
                                up.clone(),
                                "execute-http-count",
                                "a second HTTP URL: at most one ExecuteItem may be an HTTP URL"
                                    .into(),
                            );
                        }
                    }
                    // Development Notes: SoftKey: URIs are not allowed in an Execute except on
                    // the 8821 (whose table entry also covers the 9821: UNCONFIRMED there);
                    // Notify: never.
                    let scheme = url.split(':').next().unwrap_or("");
                    let softkey_ok = self.model.is_some_and(|m| m.name == "CP-8821");
                    if scheme == "Notify" || (scheme == "SoftKey" && !softkey_ok) {
                        self.push(
                            up,
                            "execute-uri-forbidden",
                            format!("{scheme}: URIs are not allowed in an Execute"),
                        );
                    }
                }
            }
            CiscoIPPhoneObject::Response(resp) => {
                if resp.items.is_empty() {
                    self.push(r("ResponseItem[1]"), "min-items", "no ResponseItem".into());
                }
                self.items(root, "ResponseItem", resp.items.len(), 3);
                for (n, i) in resp.items.iter().enumerate() {
                    let p = format!("{root}/ResponseItem[{}]", n + 1);
                    self.req_range(&format!("{p}/@Status"), i.status, -32768, 32767);
                    self.len(&format!("{p}/@Data"), i.data.as_deref(), 0, 32);
                    self.len(&format!("{p}/@URL"), i.url.as_deref(), 0, 256);
                }
            }
            CiscoIPPhoneObject::Error(e) => {
                self.req_range(&r("@Number"), e.number, 0, 65535);
            }
        }
        if let Some(m) = self.model {
            if !m.supports(o.kind()) {
                self.push(
                    root.into(),
                    "model-object",
                    format!("{} does not support {root}", m.name),
                );
            }
            if let Some(max) = m.max_document_bytes {
                let size = o.to_xml().len();
                if size > max {
                    self.push(
                        root.into(),
                        "model-size",
                        format!("{size} bytes, more than {}'s {max}", m.name),
                    );
                }
            }
        }
    }
}

/// Every violation in `obj`, in document order; with `model`, also the model's limits.
pub fn validate(obj: &CiscoIPPhoneObject, model: Option<&PhoneModel>) -> Vec<Violation> {
    let mut v = V {
        out: Vec::new(),
        model,
    };
    v.object(obj);
    v.out
}
