//! `CiscoIPPhoneInput`.

use super::{Checker, Displayable, Node, Reader, Writer, XmlError, XmlObject};

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
            base: Displayable::titled(title),
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

impl XmlObject for Input {
    const ROOT: &'static str = "CiscoIPPhoneInput";
    const NEEDS_GRAPHICS: bool = false;

    fn base(&self) -> Option<&Displayable> {
        Some(&self.base)
    }

    fn read(r: &mut Reader, root: &Node) -> Result<Self, XmlError> {
        let mut o = Input::default();
        r.displayable(root, &mut o.base, |r, c| match c.name.as_str() {
            "URL" => {
                if o.url.is_some() {
                    r.duplicate(c);
                } else {
                    o.url = Some(r.text_allowing(c, &["method"]));
                    o.url_method = c.attr("method").map(str::to_string);
                }
                Ok(true)
            }
            "InputItem" => r.item(&mut o.items, c, |r, g, it: &mut InputItem| {
                match g.name.as_str() {
                    "DisplayName" => r.set_text(&mut it.display_name, g),
                    "QueryStringParam" => r.set_text(&mut it.query_string_param, g),
                    "InputFlags" => r.set_text(&mut it.input_flags, g),
                    "DefaultValue" => r.set_text(&mut it.default_value, g),
                    _ => Ok(false),
                }
            }),
            _ => Ok(false),
        })?;
        Ok(o)
    }

    fn write(&self, w: &mut Writer) {
        w.displayable(Self::ROOT, &self.base, &[], |w| {
            if let Some(url) = &self.url {
                w.leaf_attrs("URL", &[("method", self.url_method.clone())], url);
            }
            for it in &self.items {
                w.element("InputItem", &[], |w| {
                    w.leaf("DisplayName", it.display_name.as_deref());
                    w.leaf("QueryStringParam", it.query_string_param.as_deref());
                    w.leaf("InputFlags", it.input_flags.as_deref());
                    w.leaf("DefaultValue", it.default_value.as_deref());
                });
            }
        });
    }

    fn validate(&self, v: &mut Checker) {
        let root = Self::ROOT;
        v.req_len(&format!("{root}/URL"), self.url.as_deref(), 1, 256);
        if let Some(m) = &self.url_method {
            let post = m.eq_ignore_ascii_case("post");
            if !post && !m.eq_ignore_ascii_case("get") {
                v.push(
                    format!("{root}/URL/@method"),
                    "url-method",
                    format!("{m:?} is not get or post"),
                );
            } else if let Some(model) = v.model.filter(|md| post && !md.input_post) {
                v.push(
                    format!("{root}/URL/@method"),
                    "model-input-post",
                    format!("{} does not support POST from an Input", model.name),
                );
            }
        }
        v.items(root, "InputItem", self.items.len(), 5);
        for (n, it) in self.items.iter().enumerate() {
            let p = format!("{root}/InputItem[{}]", n + 1);
            v.len(
                &format!("{p}/DisplayName"),
                it.display_name.as_deref(),
                0,
                32,
            );
            v.req_len(
                &format!("{p}/QueryStringParam"),
                it.query_string_param.as_deref(),
                1,
                32,
            );
            let fp = format!("{p}/InputFlags");
            if let Some(f) = v.required(&fp, it.input_flags.as_deref()) {
                if !INPUT_FLAGS.contains(&f) {
                    v.push(
                        fp.clone(),
                        "input-flags",
                        format!("{f:?} is not one of A T N E U L, optionally with P"),
                    );
                } else if let Some(m) = v.model.filter(|m| m.mpp && f.contains('E')) {
                    v.push(
                        fp,
                        "model-input-flags",
                        format!("{} (MPP firmware) does not support E", m.name),
                    );
                }
            }
            v.len(
                &format!("{p}/DefaultValue"),
                it.default_value.as_deref(),
                0,
                32,
            );
        }
    }
}
