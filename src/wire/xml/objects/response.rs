//! `CiscoIPPhoneResponse`.

use super::{Checker, Node, Reader, Writer, XmlError, XmlObject};

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

impl XmlObject for Response {
    const ROOT: &'static str = "CiscoIPPhoneResponse";
    const MISSPELLED_ROOT: Option<&'static str> = Some("CiscoIPhoneResponse");
    const NEEDS_GRAPHICS: bool = false;

    fn read(r: &mut Reader, root: &Node) -> Result<Self, XmlError> {
        let mut o = Response::default();
        r.children(root, &[], |r, c| match c.name.as_str() {
            "ResponseItem" => {
                // Phones send attributes; the XSD has child elements. Read both.
                r.container(c, &["Status", "Data", "URL"]);
                let mut it = ResponseItem {
                    status: r.attr_num(c, "Status")?,
                    data: c.attr("Data").map(str::to_string),
                    url: c.attr("URL").map(str::to_string),
                };
                r.fields(c, |r, g| match g.name.as_str() {
                    "Status" => r.set_num(&mut it.status, g),
                    "Data" => r.set_text(&mut it.data, g),
                    "URL" => r.set_text(&mut it.url, g),
                    _ => Ok(false),
                })?;
                o.items.push(it);
                Ok(true)
            }
            _ => Ok(false),
        })?;
        Ok(o)
    }

    /// Items as attributes, as real phones send them.
    fn write(&self, w: &mut Writer) {
        w.element(Self::ROOT, &[], |w| {
            for i in &self.items {
                w.empty(
                    "ResponseItem",
                    &[
                        ("Status", i.status.map(|p| p.to_string())),
                        ("Data", i.data.clone()),
                        ("URL", i.url.clone()),
                    ],
                );
            }
        });
    }

    fn validate(&self, v: &mut Checker) {
        let root = Self::ROOT;
        if self.items.is_empty() {
            v.push(
                format!("{root}/ResponseItem[1]"),
                "min-items",
                "no ResponseItem".into(),
            );
        }
        v.items(root, "ResponseItem", self.items.len(), 3);
        for (n, i) in self.items.iter().enumerate() {
            let p = format!("{root}/ResponseItem[{}]", n + 1);
            v.req_range(&format!("{p}/@Status"), i.status, -32768, 32767);
            v.len(&format!("{p}/@Data"), i.data.as_deref(), 0, 32);
            v.len(&format!("{p}/@URL"), i.url.as_deref(), 0, 256);
        }
    }
}
