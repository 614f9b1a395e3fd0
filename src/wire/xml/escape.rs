//! The one XML escape every writer uses (CiscoIPPhone objects, configuration files, EM API and
//! SOAP replies, WebDialer pages, the verifier's JUnit report, the simulated phone).
//!
//! All forms write `& < > " '` as the five predefined entities, so one escape serves element
//! text and attribute values alike. They differ only in other characters:
//! - [`escape`] keeps them as they are: enough for values from the definition or a request.
//! - [`escape_legal`] drops the characters XML 1.0 cannot carry at all (control characters
//!   other than TAB, LF and CR, U+FFFE, U+FFFF), for text that may hold anything, such as what
//!   a capture contained.
//! - The CiscoIPPhone writer also writes CR (and in attributes TAB and LF) as character
//!   references, so that a reader's end-of-line and attribute-value normalisation cannot
//!   change them (a Menu item `Name` may hold CRs to span lines).

/// What happens to characters other than the five markup characters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// Kept.
    Plain,
    /// Dropped when XML 1.0 cannot carry them.
    Legal,
    /// CR as `&#13;`.
    Text,
    /// CR, TAB and LF as character references.
    Attribute,
}

fn escape_into(s: &str, out: &mut String, form: Form) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' if matches!(form, Form::Text | Form::Attribute) => out.push_str("&#13;"),
            '\t' if form == Form::Attribute => out.push_str("&#9;"),
            '\n' if form == Form::Attribute => out.push_str("&#10;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if form == Form::Legal
                && ((c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}') => {}
            c => out.push(c),
        }
    }
}

/// `s` with the five predefined entities escaped, for element text or an attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(s, &mut out, Form::Plain);
    out
}

/// Like [`escape`], and drops the characters XML 1.0 cannot carry.
pub fn escape_legal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(s, &mut out, Form::Legal);
    out
}

/// Element text as the CiscoIPPhone writer writes it (CR as `&#13;`).
pub(super) fn escape_text(s: &str, out: &mut String) {
    escape_into(s, out, Form::Text);
}

/// An attribute value as the CiscoIPPhone writer writes it (CR, TAB and LF as references).
pub(super) fn escape_attr(s: &str, out: &mut String) {
    escape_into(s, out, Form::Attribute);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_five_entities_everywhere() {
        let s = "a<b>&\"c'\u{1}\t\r\n\u{fffe}é";
        assert_eq!(
            escape(s),
            "a&lt;b&gt;&amp;&quot;c&apos;\u{1}\t\r\n\u{fffe}é"
        );
        let mut text = String::new();
        escape_text(s, &mut text);
        assert_eq!(text, "a&lt;b&gt;&amp;&quot;c&apos;\u{1}\t&#13;\n\u{fffe}é");
        let mut attr = String::new();
        escape_attr(s, &mut attr);
        assert_eq!(
            attr,
            "a&lt;b&gt;&amp;&quot;c&apos;\u{1}&#9;&#13;&#10;\u{fffe}é"
        );
    }

    #[test]
    fn legal_drops_what_xml_cannot_carry() {
        assert_eq!(
            escape_legal("a<b>&\"c'\u{1}"),
            "a&lt;b&gt;&amp;&quot;c&apos;"
        );
        assert_eq!(
            escape_legal("\t\r\n\u{1f}\u{7f}\u{fffe}\u{ffff}é"),
            "\t\r\n\u{7f}é"
        );
    }
}
