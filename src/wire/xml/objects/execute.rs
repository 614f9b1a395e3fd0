//! `CiscoIPPhoneExecute`.

use super::super::validate::is_http;
use super::{Checker, Node, Reader, Writer, XmlError, XmlObject};

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

impl XmlObject for Execute {
    const ROOT: &'static str = "CiscoIPPhoneExecute";
    const NEEDS_GRAPHICS: bool = false;

    fn read(r: &mut Reader, root: &Node) -> Result<Self, XmlError> {
        let mut o = Execute::default();
        r.children(root, &[], |r, c| match c.name.as_str() {
            "ExecuteItem" => {
                r.children(c, &["URL", "Priority"], |_, _| Ok(false))?;
                o.items.push(ExecuteItem {
                    url: c.attr("URL").map(str::to_string),
                    priority: r.attr_num(c, "Priority")?,
                });
                Ok(true)
            }
            _ => Ok(false),
        })?;
        Ok(o)
    }

    fn write(&self, w: &mut Writer) {
        w.element(Self::ROOT, &[], |w| {
            for i in &self.items {
                w.empty(
                    "ExecuteItem",
                    &[
                        ("Priority", i.priority.map(|p| p.to_string())),
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
                format!("{root}/ExecuteItem[1]"),
                "min-items",
                "no ExecuteItem".into(),
            );
        }
        v.items(root, "ExecuteItem", self.items.len(), 3);
        let mut http = 0;
        for (n, i) in self.items.iter().enumerate() {
            let p = format!("{root}/ExecuteItem[{}]", n + 1);
            let up = format!("{p}/@URL");
            v.req_len(&up, i.url.as_deref(), 1, 256);
            v.range(&format!("{p}/@Priority"), i.priority, 0, 2);
            let Some(url) = i.url.as_deref() else {
                continue;
            };
            if is_http(url) {
                http += 1;
                if http == 2 {
                    v.push(
                        up.clone(),
                        "execute-http-count",
                        "a second HTTP URL: at most one ExecuteItem may be an HTTP URL".into(),
                    );
                }
            }
            // Development Notes: SoftKey: URIs are not allowed in an Execute except on the
            // 8821 (whose table entry also covers the 9821: UNCONFIRMED there); Notify: never.
            let scheme = url.split(':').next().unwrap_or("");
            let softkey_ok = v.model.is_some_and(|m| m.name == "CP-8821");
            if scheme == "Notify" || (scheme == "SoftKey" && !softkey_ok) {
                v.push(
                    up,
                    "execute-uri-forbidden",
                    format!("{scheme}: URIs are not allowed in an Execute"),
                );
            }
        }
    }
}
