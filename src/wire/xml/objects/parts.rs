//! The pieces several object kinds share: the displayable base with its softkeys and key
//! handlers, menu items, icon menu items and packed-pixel bitmaps.

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

impl Displayable {
    /// A base with only a title.
    pub(super) fn titled(title: &str) -> Self {
        Displayable {
            title: Some(title.to_string()),
            ..Displayable::default()
        }
    }
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

/// An IconMenu / IconFileMenu item.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IconMenuItem {
    pub name: Option<String>,
    pub url: Option<String>,
    pub icon_index: Option<i64>,
}
