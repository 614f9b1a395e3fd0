//! A small bounded element tree over `quick-xml` for the API messages that are not CiscoIPPhone
//! objects (the EM API, WebDialer SOAP): element and attribute names without namespace
//! prefixes, text (character data, CDATA and references concatenated), children in order.
//! DOCTYPE is refused (so no entity is ever expanded), nesting and element counts are bounded by
//! the caller,
//! and only the predefined entities and character references are resolved.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
}

impl Element {
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The text, trimmed.
    pub fn value(&self) -> String {
        self.text.trim().to_string()
    }
}

/// A name without its namespace prefix.
fn local(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    match s.rsplit_once(':') {
        Some((_, l)) => l.to_string(),
        None => s.into_owned(),
    }
}

/// A predefined entity or character reference (`#65`, `#x41`) to its character.
fn resolve_entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        n => {
            let n = n.strip_prefix('#')?;
            let v = match n.strip_prefix('x').or_else(|| n.strip_prefix('X')) {
                Some(h) => u32::from_str_radix(h, 16).ok()?,
                None => n.parse().ok()?,
            };
            char::from_u32(v).filter(|&c| c != '\0')
        }
    }
}

fn element(s: &BytesStart<'_>) -> Result<Element, String> {
    let mut attrs = Vec::new();
    for a in s.attributes() {
        let a = a.map_err(|e| format!("bad attribute: {e}"))?;
        let v = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| format!("bad attribute value: {e}"))?;
        attrs.push((local(a.key.as_ref()), v.into_owned()));
    }
    Ok(Element {
        name: local(s.name().as_ref()),
        attrs,
        ..Element::default()
    })
}

/// Reads `xml` into its root element; `Ok(None)` when it holds no element at all. Errors say
/// what was wrong (and where, for malformed XML).
pub fn read(xml: &str, max_depth: usize, max_elements: usize) -> Result<Option<Element>, String> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    let attach = |stack: &mut Vec<Element>, root: &mut Option<Element>, n: Element| {
        match stack.last_mut() {
            Some(p) => p.children.push(n),
            None if root.is_none() => *root = Some(n),
            None => return Err("more than one root element".to_string()),
        }
        Ok(())
    };
    loop {
        let pos = reader.buffer_position();
        let ev = reader
            .read_event()
            .map_err(|e| format!("malformed XML at byte {pos}: {e}"))?;
        if matches!(ev, Event::Start(_) | Event::Empty(_)) {
            count += 1;
            if count > max_elements {
                return Err("too many elements".into());
            }
        }
        match ev {
            Event::Start(s) => {
                if stack.len() >= max_depth {
                    return Err("elements nested too deeply".into());
                }
                stack.push(element(&s)?);
            }
            Event::Empty(s) => {
                let n = element(&s)?;
                attach(&mut stack, &mut root, n)?;
            }
            Event::End(_) => {
                let n = stack
                    .pop()
                    .ok_or_else(|| "end tag without a start tag".to_string())?;
                attach(&mut stack, &mut root, n)?;
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text
                        .push_str(&t.decode().map_err(|e| format!("bad text: {e}"))?);
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text
                        .push_str(&c.decode().map_err(|e| format!("bad CDATA: {e}"))?);
                }
            }
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| format!("bad reference: {e}"))?;
                let c = resolve_entity(&name).ok_or_else(|| format!("unknown entity &{name};"))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push(c);
                }
            }
            Event::DocType(_) => return Err("DOCTYPE is not allowed".into()),
            Event::Eof => break,
            // Declarations, comments, processing instructions.
            _ => {}
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("document ends inside <{}>", open.name));
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_without_prefixes_text_and_references_and_refuses_the_rest() {
        let read = |x: &str| read(x, 16, 100);
        let t = read(r##"<s:Envelope xmlns:s="u"><s:Body a:href="#1">x &amp; <![CDATA[<y>]]>&#65;</s:Body></s:Envelope>"##)
            .unwrap()
            .unwrap();
        let body = t.child("Body").unwrap();
        assert_eq!(
            (t.name.as_str(), body.text.as_str()),
            ("Envelope", "x & <y>A")
        );
        assert_eq!(body.attr("href"), Some("#1"));
        assert_eq!(read("  ").unwrap(), None);
        for (bad, why) in [
            ("<a><b></a>", "malformed XML"),
            ("<a/><b/>", "more than one root"),
            ("<a>", "ends inside <a>"),
            ("<a>&bogus;</a>", "unknown entity"),
            ("<!DOCTYPE a [<!ENTITY e 'x'>]><a/>", "DOCTYPE"),
        ] {
            assert!(read(bad).unwrap_err().contains(why), "{bad}");
        }
        assert!(read(&"<a>".repeat(17)).unwrap_err().contains("deeply"));
        let many = format!("<r>{}</r>", "<i/>".repeat(100));
        assert!(read(&many).unwrap_err().contains("too many"));
    }
}
