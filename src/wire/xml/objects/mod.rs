//! The typed CiscoIPPhone objects, one file per object kind.
//!
//! Fields mirror the elements of Cisco's `CiscoIPPhone.xsd` 3.3.4 (spec §1.3). Elements that
//! may be absent are `Option`s, and so are the ones the XSD requires: a parsed document may
//! lack them, and [`validate`](super::validate()) reports it (rule `required`) instead of
//! the parser refusing the whole object. Numbers are `i64` so an out-of-range value
//! survives parsing and is reported by validation (rule `range`); text that is not a
//! number at all is a parse error. Image data stays hex text as sent.
//!
//! Each kind's file holds its struct, its builders and its `XmlObject` impl: the root
//! element, how the element tree is read into it, how it is written and which rules it
//! checks. The pieces several kinds share (the displayable base, bitmaps, menu items) are in
//! `parts`, and the element readers, writers and checks they use are in `read`, `write` and
//! `validate`. The list at the end of this file makes [`ObjectKind`] and
//! [`CiscoIPPhoneObject`] from the kinds.
//!
//! A new object kind is one new file here (its struct and `impl XmlObject`), its `mod` and
//! `pub use` lines, and one line in that list.

use super::dom::Node;
use super::read::Reader;
use super::validate::Checker;
use super::write::Writer;
use super::XmlError;

mod directory;
mod error;
mod execute;
mod graphic_file_menu;
mod graphic_menu;
mod icon_file_menu;
mod icon_menu;
mod image;
mod image_file;
mod input;
mod menu;
mod parts;
mod response;
mod status;
mod status_file;
mod text;

pub use directory::*;
pub use error::*;
pub use execute::*;
pub use graphic_file_menu::*;
pub use graphic_menu::*;
pub use icon_file_menu::*;
pub use icon_menu::*;
pub use image::*;
pub use image_file::*;
pub use input::*;
pub use menu::*;
pub use parts::*;
pub use response::*;
pub use status::*;
pub use status_file::*;
pub use text::*;

/// One CiscoIPPhone object kind: its root element and how it is read, written and checked.
pub(super) trait XmlObject: Sized {
    /// The root element name, e.g. `CiscoIPPhoneMenu`.
    const ROOT: &'static str;

    /// Another root name read as this kind, with the warning `alias-root`: the 3.3.4 XSD
    /// misspells the Response root, and documents made from the XSD may carry that spelling.
    const MISSPELLED_ROOT: Option<&'static str> = None;

    /// Whether the kind needs a graphic display: a text-only phone does not show it.
    const NEEDS_GRAPHICS: bool;

    /// The displayable base (title, prompt, softkeys, keys), for the kinds that have one.
    /// Its rules are checked before [`XmlObject::validate`]'s.
    fn base(&self) -> Option<&Displayable> {
        None
    }

    /// Reads the object from its root element, warning about what it ignores.
    fn read(r: &mut Reader, root: &Node) -> Result<Self, XmlError>;

    /// Writes the whole element, root included, children in the XSD's order.
    fn write(&self, w: &mut Writer);

    /// Checks the kind's own rules, in document order.
    fn validate(&self, v: &mut Checker);
}

/// Makes [`ObjectKind`], [`CiscoIPPhoneObject`] and their dispatch to each kind's
/// [`XmlObject`] impl from the list of kinds: `Variant => Type`.
macro_rules! object_kinds {
    ($($kind:ident => $ty:ident),* $(,)?) => {
        /// Which object a document holds; [`ObjectKind::root_name`] is its root element.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ObjectKind {
            $($kind,)*
        }

        impl ObjectKind {
            pub const ALL: [ObjectKind; [$(stringify!($kind)),*].len()] =
                [$(ObjectKind::$kind,)*];

            /// The root element name, e.g. `CiscoIPPhoneMenu`.
            pub fn root_name(self) -> &'static str {
                match self {
                    $(ObjectKind::$kind => <$ty as XmlObject>::ROOT,)*
                }
            }

            /// The kind whose root element is `name` (case-sensitive, as phones are).
            pub fn from_root_name(name: &str) -> Option<ObjectKind> {
                ObjectKind::ALL.into_iter().find(|k| k.root_name() == name)
            }

            /// Whether a text-only display cannot show this kind.
            pub(super) fn needs_graphics(self) -> bool {
                match self {
                    $(ObjectKind::$kind => <$ty as XmlObject>::NEEDS_GRAPHICS,)*
                }
            }

            /// The kind `name` is a known misspelling of the root of.
            pub(super) fn from_misspelled_root(name: &str) -> Option<ObjectKind> {
                $(if <$ty as XmlObject>::MISSPELLED_ROOT == Some(name) {
                    return Some(ObjectKind::$kind);
                })*
                None
            }

            /// Reads an object of this kind from `root`.
            pub(super) fn read(
                self,
                r: &mut Reader,
                root: &Node,
            ) -> Result<CiscoIPPhoneObject, XmlError> {
                Ok(match self {
                    $(ObjectKind::$kind => <$ty as XmlObject>::read(r, root)?.into(),)*
                })
            }
        }

        /// One of the CiscoIPPhone objects.
        // The displayable objects are a few hundred bytes; boxing them would only make
        // matching and building clumsier for callers.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum CiscoIPPhoneObject {
            $($kind($ty),)*
        }

        impl CiscoIPPhoneObject {
            pub fn kind(&self) -> ObjectKind {
                match self {
                    $(CiscoIPPhoneObject::$kind(_) => ObjectKind::$kind,)*
                }
            }

            /// The displayable base (title, prompt, softkeys, keys), for the objects that
            /// have one.
            pub fn displayable(&self) -> Option<&Displayable> {
                match self {
                    $(CiscoIPPhoneObject::$kind(o) => o.base(),)*
                }
            }

            pub(super) fn write_to(&self, w: &mut Writer) {
                match self {
                    $(CiscoIPPhoneObject::$kind(o) => o.write(w),)*
                }
            }

            pub(super) fn check(&self, v: &mut Checker) {
                match self {
                    $(CiscoIPPhoneObject::$kind(o) => o.validate(v),)*
                }
            }
        }

        $(impl From<$ty> for CiscoIPPhoneObject {
            fn from(o: $ty) -> Self {
                CiscoIPPhoneObject::$kind(o)
            }
        })*
    };
}

object_kinds! {
    Menu => Menu,
    Text => Text,
    Input => Input,
    Directory => Directory,
    Image => Image,
    ImageFile => ImageFile,
    GraphicMenu => GraphicMenu,
    GraphicFileMenu => GraphicFileMenu,
    IconMenu => IconMenu,
    IconFileMenu => IconFileMenu,
    Status => Status,
    StatusFile => StatusFile,
    Execute => Execute,
    Response => Response,
    Error => PhoneError,
}
