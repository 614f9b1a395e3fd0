//! The typed CiscoIPPhone objects.
//!
//! Fields mirror the elements of Cisco's `CiscoIPPhone.xsd` 3.3.4 (spec §1.3). Elements that
//! may be absent are `Option`s, and so are the ones the XSD requires: a parsed document may
//! lack them, and [`validate`](super::validate()) reports it (rule `required`) instead of
//! the parser refusing the whole object. Numbers are `i64` so an out-of-range value
//! survives parsing and is reported by validation (rule `range`); text that is not a
//! number at all is a parse error. Image data stays hex text as sent.

/// Which object a document holds; [`ObjectKind::root_name`] is its root element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Menu,
    Text,
    Input,
    Directory,
    Image,
    ImageFile,
    GraphicMenu,
    GraphicFileMenu,
    IconMenu,
    IconFileMenu,
    Status,
    StatusFile,
    Execute,
    Response,
    Error,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 15] = [
        ObjectKind::Menu,
        ObjectKind::Text,
        ObjectKind::Input,
        ObjectKind::Directory,
        ObjectKind::Image,
        ObjectKind::ImageFile,
        ObjectKind::GraphicMenu,
        ObjectKind::GraphicFileMenu,
        ObjectKind::IconMenu,
        ObjectKind::IconFileMenu,
        ObjectKind::Status,
        ObjectKind::StatusFile,
        ObjectKind::Execute,
        ObjectKind::Response,
        ObjectKind::Error,
    ];

    /// The root element name, e.g. `CiscoIPPhoneMenu`.
    pub fn root_name(self) -> &'static str {
        match self {
            ObjectKind::Menu => "CiscoIPPhoneMenu",
            ObjectKind::Text => "CiscoIPPhoneText",
            ObjectKind::Input => "CiscoIPPhoneInput",
            ObjectKind::Directory => "CiscoIPPhoneDirectory",
            ObjectKind::Image => "CiscoIPPhoneImage",
            ObjectKind::ImageFile => "CiscoIPPhoneImageFile",
            ObjectKind::GraphicMenu => "CiscoIPPhoneGraphicMenu",
            ObjectKind::GraphicFileMenu => "CiscoIPPhoneGraphicFileMenu",
            ObjectKind::IconMenu => "CiscoIPPhoneIconMenu",
            ObjectKind::IconFileMenu => "CiscoIPPhoneIconFileMenu",
            ObjectKind::Status => "CiscoIPPhoneStatus",
            ObjectKind::StatusFile => "CiscoIPPhoneStatusFile",
            ObjectKind::Execute => "CiscoIPPhoneExecute",
            ObjectKind::Response => "CiscoIPPhoneResponse",
            ObjectKind::Error => "CiscoIPPhoneError",
        }
    }

    /// The kind whose root element is `name` (case-sensitive, as phones are).
    pub fn from_root_name(name: &str) -> Option<ObjectKind> {
        ObjectKind::ALL.into_iter().find(|k| k.root_name() == name)
    }
}

/// One of the CiscoIPPhone objects.
// The displayable objects are a few hundred bytes; boxing them would only make matching
// and building clumsier for callers.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CiscoIPPhoneObject {
    Menu(Menu),
    Text(Text),
    Input(Input),
    Directory(Directory),
    Image(Image),
    ImageFile(ImageFile),
    GraphicMenu(GraphicMenu),
    GraphicFileMenu(GraphicFileMenu),
    IconMenu(IconMenu),
    IconFileMenu(IconFileMenu),
    Status(Status),
    StatusFile(StatusFile),
    Execute(Execute),
    Response(Response),
    Error(PhoneError),
}

impl CiscoIPPhoneObject {
    pub fn kind(&self) -> ObjectKind {
        match self {
            CiscoIPPhoneObject::Menu(_) => ObjectKind::Menu,
            CiscoIPPhoneObject::Text(_) => ObjectKind::Text,
            CiscoIPPhoneObject::Input(_) => ObjectKind::Input,
            CiscoIPPhoneObject::Directory(_) => ObjectKind::Directory,
            CiscoIPPhoneObject::Image(_) => ObjectKind::Image,
            CiscoIPPhoneObject::ImageFile(_) => ObjectKind::ImageFile,
            CiscoIPPhoneObject::GraphicMenu(_) => ObjectKind::GraphicMenu,
            CiscoIPPhoneObject::GraphicFileMenu(_) => ObjectKind::GraphicFileMenu,
            CiscoIPPhoneObject::IconMenu(_) => ObjectKind::IconMenu,
            CiscoIPPhoneObject::IconFileMenu(_) => ObjectKind::IconFileMenu,
            CiscoIPPhoneObject::Status(_) => ObjectKind::Status,
            CiscoIPPhoneObject::StatusFile(_) => ObjectKind::StatusFile,
            CiscoIPPhoneObject::Execute(_) => ObjectKind::Execute,
            CiscoIPPhoneObject::Response(_) => ObjectKind::Response,
            CiscoIPPhoneObject::Error(_) => ObjectKind::Error,
        }
    }

    /// The displayable base (title, prompt, softkeys, keys), for the objects that have one.
    pub fn displayable(&self) -> Option<&Displayable> {
        match self {
            CiscoIPPhoneObject::Menu(o) => Some(&o.base),
            CiscoIPPhoneObject::Text(o) => Some(&o.base),
            CiscoIPPhoneObject::Input(o) => Some(&o.base),
            CiscoIPPhoneObject::Directory(o) => Some(&o.base),
            CiscoIPPhoneObject::Image(o) => Some(&o.base),
            CiscoIPPhoneObject::ImageFile(o) => Some(&o.base),
            CiscoIPPhoneObject::GraphicMenu(o) => Some(&o.base),
            CiscoIPPhoneObject::GraphicFileMenu(o) => Some(&o.base),
            CiscoIPPhoneObject::IconMenu(o) => Some(&o.base),
            CiscoIPPhoneObject::IconFileMenu(o) => Some(&o.base),
            _ => None,
        }
    }
}

macro_rules! from_impls {
    ($($t:ident => $v:ident),* $(,)?) => {
        $(impl From<$t> for CiscoIPPhoneObject {
            fn from(o: $t) -> Self {
                CiscoIPPhoneObject::$v(o)
            }
        })*
    };
}

from_impls!(
    Menu => Menu, Text => Text, Input => Input, Directory => Directory, Image => Image,
    ImageFile => ImageFile, GraphicMenu => GraphicMenu, GraphicFileMenu => GraphicFileMenu,
    IconMenu => IconMenu, IconFileMenu => IconFileMenu, Status => Status,
    StatusFile => StatusFile, Execute => Execute, Response => Response, PhoneError => Error,
);

/// The common base of displayable objects (`CiscoIPPhoneDisplayableType`, spec §1.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Displayable {
    pub title: Option<String>,
    pub prompt: Option<String>,
    pub soft_keys: Vec<SoftKeyItem>,
    pub keys: Vec<KeyItem>,
    /// `keypadTarget`: `application` (the default), `applicationCall` or `activeCall`.
    pub keypad_target: Option<String>,
    pub app_id: Option<String>,
    pub on_app_focus_lost: Option<String>,
    pub on_app_focus_gained: Option<String>,
    pub on_app_minimized: Option<String>,
    pub on_app_closed: Option<String>,
}

/// A custom softkey (spec §1.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SoftKeyItem {
    pub name: Option<String>,
    /// Run on release.
    pub url: Option<String>,
    /// Run on press; internal URIs only.
    pub url_down: Option<String>,
    /// 1..=8 in the XSD, 1..=16 on newer phones, -1 for the Applications button.
    pub position: Option<i64>,
}

impl SoftKeyItem {
    pub fn new(name: &str, url: &str, position: i64) -> Self {
        SoftKeyItem {
            name: Some(name.to_string()),
            url: Some(url.to_string()),
            url_down: None,
            position: Some(position),
        }
    }
}

/// The keys a `KeyItem` may name (XSD `CiscoIPPhoneKeyType`).
pub const KEY_NAMES: [&str; 19] = [
    "KeyPad0",
    "KeyPad1",
    "KeyPad2",
    "KeyPad3",
    "KeyPad4",
    "KeyPad5",
    "KeyPad6",
    "KeyPad7",
    "KeyPad8",
    "KeyPad9",
    "KeyPadStar",
    "KeyPadPound",
    "NavUp",
    "NavDown",
    "NavLeft",
    "NavRight",
    "NavSelect",
    "NavBack",
    "PushToTalk",
];

/// A hardware key handler.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyItem {
    pub key: Option<String>,
    pub url: Option<String>,
    pub url_down: Option<String>,
}

/// An entry of a Menu or GraphicMenu.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MenuItem {
    pub name: Option<String>,
    pub url: Option<String>,
}

impl MenuItem {
    pub fn new(name: &str, url: &str) -> Self {
        MenuItem {
            name: Some(name.to_string()),
            url: Some(url.to_string()),
        }
    }
}

/// `CiscoIPPhoneMenu`: up to 100 items.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Menu {
    pub base: Displayable,
    pub items: Vec<MenuItem>,
}

impl Menu {
    pub fn new(title: &str) -> Self {
        Menu {
            base: Displayable {
                title: Some(title.to_string()),
                ..Displayable::default()
            },
            items: Vec::new(),
        }
    }
    pub fn prompt(mut self, prompt: &str) -> Self {
        self.base.prompt = Some(prompt.to_string());
        self
    }
    pub fn item(mut self, name: &str, url: &str) -> Self {
        self.items.push(MenuItem::new(name, url));
        self
    }
    pub fn soft_key(mut self, name: &str, url: &str, position: i64) -> Self {
        self.base
            .soft_keys
            .push(SoftKeyItem::new(name, url, position));
        self
    }
}

/// `CiscoIPPhoneText`: up to 4000 characters of text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text {
    pub base: Displayable,
    pub text: Option<String>,
}

impl Text {
    pub fn new(title: &str, text: &str) -> Self {
        Text {
            base: Displayable {
                title: Some(title.to_string()),
                ..Displayable::default()
            },
            text: Some(text.to_string()),
        }
    }
}

/// The values `InputFlags` may take (XSD enumeration; spec §1.5): one of A, T, N, E, U, L,
/// optionally combined with the password modifier P on either side.
pub const INPUT_FLAGS: [&str; 18] = [
    "A", "T", "N", "E", "U", "L", "AP", "TP", "NP", "EP", "UP", "LP", "PA", "PT", "PN", "PE", "PU",
    "PL",
];

/// One field of a `CiscoIPPhoneInput`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InputItem {
    pub display_name: Option<String>,
    pub query_string_param: Option<String>,
    pub input_flags: Option<String>,
    pub default_value: Option<String>,
}

impl InputItem {
    pub fn new(display_name: &str, param: &str, flags: &str) -> Self {
        InputItem {
            display_name: Some(display_name.to_string()),
            query_string_param: Some(param.to_string()),
            input_flags: Some(flags.to_string()),
            default_value: None,
        }
    }
}

/// `CiscoIPPhoneInput`: a form of up to 5 fields submitted to `url`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Input {
    pub base: Displayable,
    pub url: Option<String>,
    /// `<URL method="post">`: HTTP POST, on 7800/8800/7832/8832 only (not in the XSD).
    pub url_method: Option<String>,
    pub items: Vec<InputItem>,
}

impl Input {
    pub fn new(title: &str, url: &str) -> Self {
        Input {
            base: Displayable {
                title: Some(title.to_string()),
                ..Displayable::default()
            },
            url: Some(url.to_string()),
            url_method: None,
            items: Vec::new(),
        }
    }
    pub fn item(mut self, item: InputItem) -> Self {
        self.items.push(item);
        self
    }
}

/// One entry of a `CiscoIPPhoneDirectory`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirectoryEntry {
    pub name: Option<String>,
    pub telephone: Option<String>,
}

/// `CiscoIPPhoneDirectory`: up to 32 entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Directory {
    pub base: Displayable,
    pub entries: Vec<DirectoryEntry>,
}

impl Directory {
    pub fn new(title: &str) -> Self {
        Directory {
            base: Displayable {
                title: Some(title.to_string()),
                ..Displayable::default()
            },
            entries: Vec::new(),
        }
    }
    pub fn entry(mut self, name: &str, telephone: &str) -> Self {
        self.entries.push(DirectoryEntry {
            name: Some(name.to_string()),
            telephone: Some(telephone.to_string()),
        });
        self
    }
}

/// The packed-pixel fields of Image, GraphicMenu and Status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bitmap {
    pub location_x: Option<i64>,
    pub location_y: Option<i64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// Bits per pixel, 1 or 2.
    pub depth: Option<i64>,
    /// The pixels as hex text (XSD hexBinary).
    pub data: Option<String>,
}

/// `CiscoIPPhoneImage`: a 133×65 pane of 2-bit greyscale pixels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Image {
    pub base: Displayable,
    pub bitmap: Bitmap,
}

/// `CiscoIPPhoneImageFile`: a PNG at `url`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageFile {
    pub base: Displayable,
    pub location_x: Option<i64>,
    pub location_y: Option<i64>,
    pub url: Option<String>,
}

/// `CiscoIPPhoneGraphicMenu`: an image with up to 12 menu items.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GraphicMenu {
    pub base: Displayable,
    pub bitmap: Bitmap,
    pub items: Vec<MenuItem>,
}

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

/// An IconMenu / IconFileMenu item.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IconMenuItem {
    pub name: Option<String>,
    pub url: Option<String>,
    pub icon_index: Option<i64>,
}

/// An icon of a `CiscoIPPhoneIconMenu` (at most 16×10 pixels).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IconItem {
    pub index: Option<i64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    pub depth: Option<i64>,
    pub data: Option<String>,
}

/// `CiscoIPPhoneIconMenu`: up to 32 items and 10 icons.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IconMenu {
    pub base: Displayable,
    pub items: Vec<IconMenuItem>,
    pub icons: Vec<IconItem>,
}

/// An icon of a `CiscoIPPhoneIconFileMenu`: a PNG at `url`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IconFileItem {
    pub index: Option<i64>,
    pub url: Option<String>,
}

/// `CiscoIPPhoneIconFileMenu`: up to 32 items and 10 PNG icons.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IconFileMenu {
    pub base: Displayable,
    /// The XSD's optional root attribute `IconIndex` (meaning undocumented).
    pub icon_index: Option<i64>,
    pub items: Vec<IconMenuItem>,
    pub icons: Vec<IconFileItem>,
}

/// `CiscoIPPhoneStatus` (push only; no softkeys).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    pub text: Option<String>,
    /// Seconds.
    pub timer: Option<i64>,
    pub bitmap: Bitmap,
}

/// `CiscoIPPhoneStatusFile`: a status line with a PNG at `url`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusFile {
    pub text: Option<String>,
    pub timer: Option<i64>,
    pub location_x: Option<i64>,
    pub location_y: Option<i64>,
    pub url: Option<String>,
}

/// `Priority` of an ExecuteItem (spec §1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// 0: run regardless of the phone's state (the default).
    Immediately = 0,
    /// 1: wait until the phone is idle.
    WhenIdle = 1,
    /// 2: run only if the phone is idle now, else drop.
    IfIdle = 2,
}

/// One URL or URI to execute.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecuteItem {
    pub url: Option<String>,
    /// 0..=2; absent means 0.
    pub priority: Option<i64>,
}

/// `CiscoIPPhoneExecute`: up to 3 items, at most one of them an HTTP URL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Execute {
    pub items: Vec<ExecuteItem>,
}

impl Execute {
    pub fn new() -> Self {
        Execute::default()
    }
    /// One item with an explicit priority.
    pub fn item(mut self, url: &str, priority: Priority) -> Self {
        self.items.push(ExecuteItem {
            url: Some(url.to_string()),
            priority: Some(priority as i64),
        });
        self
    }
    /// An Execute of one item at priority 0, e.g. `Execute::single("RTPMRx:239.1.1.1:20480")`.
    pub fn single(url: &str) -> Self {
        Execute::new().item(url, Priority::Immediately)
    }
    /// The URLs in order (items without one are skipped).
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.items.iter().filter_map(|i| i.url.as_deref())
    }
}

/// One result of a `CiscoIPPhoneResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResponseItem {
    /// 0 is success.
    pub status: Option<i64>,
    pub data: Option<String>,
    pub url: Option<String>,
}

/// `CiscoIPPhoneResponse`: one item per executed URL or URI, in completion order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub items: Vec<ResponseItem>,
}

impl Response {
    /// Whether every item reports status 0.
    pub fn all_ok(&self) -> bool {
        !self.items.is_empty() && self.items.iter().all(|i| i.status == Some(0))
    }
    /// The item echoing `url`.
    pub fn for_url(&self, url: &str) -> Option<&ResponseItem> {
        self.items.iter().find(|i| i.url.as_deref() == Some(url))
    }
}

/// `CiscoIPPhoneError`: `Number` 1 parse error, 2 framing error, 3 internal file error,
/// 4 authentication error; 5 and 6 are seen but undocumented.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PhoneError {
    pub number: Option<i64>,
    /// Optional text content.
    pub message: Option<String>,
}

impl PhoneError {
    pub fn new(number: i64) -> Self {
        PhoneError {
            number: Some(number),
            message: None,
        }
    }
    /// The documented meaning of the number, if any.
    pub fn meaning(&self) -> Option<&'static str> {
        match self.number? {
            1 => Some("error parsing CiscoIPPhoneExecute object"),
            2 => Some("error framing CiscoIPPhoneResponse object"),
            3 => Some("internal file error"),
            4 => Some("authentication error"),
            _ => None,
        }
    }
}
