//! A small, tolerant reader for the little XML a phone handles: its configuration file and
//! pushed `CiscoIPPhoneExecute` objects.
//!
//! It is not a conforming XML parser and does not try to be: it finds elements by name, reads
//! their attributes and text, and decodes the five predefined entities and numeric character
//! references. Comments, processing instructions, DOCTYPE and CDATA sections are skipped when
//! looking for tags. It never panics and runs in time linear in the input for each lookup.

/// One element found in the text, borrowing from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element<'a> {
    /// The raw attribute text between the name and the end of the start tag.
    pub attrs: &'a str,
    /// The raw content between the start and end tags; `None` for an empty-element tag
    /// (`<a/>`) or a start tag whose end tag is missing.
    pub inner: Option<&'a str>,
}

impl<'a> Element<'a> {
    /// The decoded value of attribute `name` (case-sensitive, as XML is).
    pub fn attr(&self, name: &str) -> Option<String> {
        attr(self.attrs, name)
    }

    /// The decoded, trimmed text content (tags inside are kept as text).
    pub fn text(&self) -> String {
        decode_entities(self.inner.unwrap_or("").trim())
    }
}

/// Where the next markup construct starting at `lt` (a `<`) ends, and what it is.
enum Markup<'a> {
    /// `<name attrs>` or `<name attrs/>`: name, attrs, self-closing, end offset (after `>`).
    Start(&'a str, &'a str, bool, usize),
    /// `</name>`: name, end offset.
    End(&'a str, usize),
    /// Comment, PI, DOCTYPE, CDATA or a stray `<`: end offset.
    Other(usize),
}

fn find_from(text: &str, from: usize, pat: &str) -> Option<usize> {
    text.get(from..)?.find(pat).map(|i| i + from)
}

/// The offset just after the `>` ending the tag that starts at `from`, skipping quoted
/// attribute values.
fn tag_end(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut quote: Option<u8> = None;
    let mut i = from;
    while let Some(&b) = bytes.get(i) {
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => return Some(i + 1),
            None => {}
        }
        i += 1;
    }
    None
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':') || b >= 0x80
}

fn markup_at(text: &str, lt: usize) -> Markup<'_> {
    let rest = text.get(lt..).unwrap_or("");
    let skip_to = |pat: &str, start: usize| {
        find_from(text, lt + start, pat).map_or(text.len(), |i| i + pat.len())
    };
    if rest.starts_with("<!--") {
        return Markup::Other(skip_to("-->", 4));
    }
    if rest.starts_with("<![CDATA[") {
        return Markup::Other(skip_to("]]>", 9));
    }
    if rest.starts_with("<?") {
        return Markup::Other(skip_to("?>", 2));
    }
    if rest.starts_with("<!") {
        return Markup::Other(tag_end(text, lt + 2).unwrap_or(text.len()));
    }
    let closing = rest.starts_with("</");
    let name_start = lt + if closing { 2 } else { 1 };
    let bytes = text.as_bytes();
    let mut name_end = name_start;
    while bytes.get(name_end).is_some_and(|&b| is_name_byte(b)) {
        name_end += 1;
    }
    let name = text.get(name_start..name_end).unwrap_or("");
    if name.is_empty() {
        return Markup::Other(lt + 1);
    }
    let Some(end) = tag_end(text, name_end) else {
        return Markup::Other(text.len());
    };
    if closing {
        return Markup::End(name, end);
    }
    let body = text.get(name_end..end - 1).unwrap_or("");
    let self_closing = body.trim_end().ends_with('/');
    let attrs = if self_closing {
        body.trim_end().strip_suffix('/').unwrap_or("")
    } else {
        body
    };
    Markup::Start(name, attrs, self_closing, end)
}

/// The elements named `name` (case-sensitive), in document order. Elements of the same name
/// nested inside a found element are part of its content, not returned separately.
pub fn elements<'a>(text: &'a str, name: &str) -> Vec<Element<'a>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(lt) = find_from(text, pos, "<") {
        match markup_at(text, lt) {
            Markup::Start(n, attrs, self_closing, end) if n == name => {
                if self_closing {
                    out.push(Element { attrs, inner: None });
                    pos = end;
                    continue;
                }
                match matching_end(text, end, name) {
                    Some((inner_end, after)) => {
                        out.push(Element {
                            attrs,
                            inner: text.get(end..inner_end),
                        });
                        pos = after;
                    }
                    None => {
                        out.push(Element { attrs, inner: None });
                        pos = end;
                    }
                }
            }
            Markup::Start(_, _, _, end) | Markup::End(_, end) | Markup::Other(end) => {
                pos = end.max(lt + 1);
            }
        }
    }
    out
}

/// Finds the end tag of `name` matching a start tag whose content begins at `from`: the offset
/// of its `<` and the offset after its `>`.
fn matching_end(text: &str, from: usize, name: &str) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut pos = from;
    while let Some(lt) = find_from(text, pos, "<") {
        match markup_at(text, lt) {
            Markup::Start(n, _, self_closing, end) => {
                if n == name && !self_closing {
                    depth += 1;
                }
                pos = end.max(lt + 1);
            }
            Markup::End(n, end) => {
                if n == name {
                    if depth == 0 {
                        return Some((lt, end));
                    }
                    depth -= 1;
                }
                pos = end.max(lt + 1);
            }
            Markup::Other(end) => pos = end.max(lt + 1),
        }
    }
    None
}

/// The first element named `name`.
pub fn first<'a>(text: &'a str, name: &str) -> Option<Element<'a>> {
    elements(text, name).into_iter().next()
}

/// The decoded, trimmed text of the first element named `name`, when it has content.
pub fn text_of(text: &str, name: &str) -> Option<String> {
    first(text, name).and_then(|e| e.inner.map(|_| e.text()))
}

/// The decoded value of attribute `name` in a start tag's raw attribute text.
pub fn attr(attrs: &str, name: &str) -> Option<String> {
    let bytes = attrs.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
            i += 1;
        }
        let start = i;
        while bytes
            .get(i)
            .is_some_and(|&b| !b.is_ascii_whitespace() && b != b'=')
        {
            i += 1;
        }
        let key = attrs.get(start..i).unwrap_or("");
        while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            if i == start {
                i += 1;
            }
            continue;
        }
        i += 1;
        while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
            i += 1;
        }
        let value = match bytes.get(i) {
            Some(&q) if q == b'"' || q == b'\'' => {
                let vstart = i + 1;
                let vend = attrs
                    .get(vstart..)
                    .and_then(|r| r.find(q as char))
                    .map_or(attrs.len(), |e| e + vstart);
                i = vend + 1;
                attrs.get(vstart..vend).unwrap_or("")
            }
            _ => {
                let vstart = i;
                while bytes.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
                    i += 1;
                }
                attrs.get(vstart..i).unwrap_or("")
            }
        };
        if key == name {
            return Some(decode_entities(value));
        }
    }
    None
}

/// Decodes `&amp; &lt; &gt; &quot; &apos;` and numeric character references (`&#65;`,
/// `&#x41;`). Anything else (unknown entities, a lone `&`) is kept literally.
pub fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or(""));
        let after = rest.get(amp..).unwrap_or("");
        // Entity names are short; look for `;` within a small window.
        let semi = after.get(..after.len().min(12)).and_then(|w| w.find(';'));
        let decoded = semi.and_then(|semi| {
            let name = after.get(1..semi)?;
            let ch = match name {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                n if n.starts_with("#x") || n.starts_with("#X") => {
                    char::from_u32(u32::from_str_radix(n.get(2..)?, 16).ok()?)?
                }
                n if n.starts_with('#') => char::from_u32(n.get(1..)?.parse().ok()?)?,
                _ => return None,
            };
            Some((ch, semi + 1))
        });
        match decoded {
            Some((ch, len)) => {
                out.push(ch);
                rest = after.get(len..).unwrap_or("");
            }
            None => {
                out.push('&');
                rest = after.get(1..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_elements_attributes_and_text() {
        let x = r#"<?xml version="1.0"?><!-- <ExecuteItem URL="no"/> -->
            <CiscoIPPhoneExecute>
              <ExecuteItem Priority="0" URL="Dial:1000"/>
              <ExecuteItem URL='Key:Onhook' Priority = "1" />
              <ExecuteItem URL="http://x/a?b=1&amp;c=&quot;2&quot;"></ExecuteItem>
            </CiscoIPPhoneExecute>"#;
        let items = elements(x, "ExecuteItem");
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].attr("URL").as_deref(), Some("Dial:1000"));
        assert_eq!(items[0].attr("Priority").as_deref(), Some("0"));
        assert_eq!(items[1].attr("URL").as_deref(), Some("Key:Onhook"));
        assert_eq!(items[1].attr("Priority").as_deref(), Some("1"));
        assert_eq!(
            items[2].attr("URL").as_deref(),
            Some("http://x/a?b=1&c=\"2\"")
        );
        assert_eq!(items[2].inner, Some(""));
        assert!(first(x, "CiscoIPPhoneExecute").is_some_and(|e| e.inner.is_some()));
    }

    #[test]
    fn nested_text_and_entities() {
        let x = "<a><name>x &lt;y&gt; &#65;&#x42; &bogus; &</name><b><name>inner</name></b></a>";
        assert_eq!(text_of(x, "name").as_deref(), Some("x <y> AB &bogus; &"));
        assert_eq!(elements(x, "name").len(), 2);
        let nested = "<m><m>1</m></m><m>2</m>";
        let ms = elements(nested, "m");
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[0].inner, Some("<m>1</m>"));
        assert_eq!(ms[1].inner, Some("2"));
    }

    #[test]
    fn never_panics_on_garbage() {
        for s in [
            "",
            "<",
            "<<",
            "</",
            "<a",
            "<a b=\"",
            "<a>",
            "<a/",
            "<!--",
            "<![CDATA[",
            "<?",
            "&",
            "&#",
            "&#x110000;",
            "<a b='1\"'>x</a",
            "é<é>é</é>",
            "<a =\"x\" b>",
        ] {
            let _ = elements(s, "a");
            let _ = elements(s, "é");
            let _ = text_of(s, "a");
            let _ = attr(s, "b");
            let _ = decode_entities(s);
        }
    }

    #[test]
    fn simulated_phone_reader_understands_our_execute() {
        use crate::wire::xml::{CiscoIPPhoneObject, Execute, Priority};

        let x = CiscoIPPhoneObject::from(
            Execute::new()
                .item("Dial:1000", Priority::Immediately)
                .item("http://x/a?b=1&c=2", Priority::WhenIdle),
        )
        .to_xml();
        let items = elements(&x, "ExecuteItem");
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].attr("URL").as_deref(), Some("Dial:1000"));
        assert_eq!(items[1].attr("URL").as_deref(), Some("http://x/a?b=1&c=2"));
        assert_eq!(items[1].attr("Priority").as_deref(), Some("1"));
    }
}
