//! Unit tests: round trips per object, the quirks, errors, and each validation rule firing
//! and not firing.

use super::*;

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn full_base() -> Displayable {
    Displayable {
        title: s("Title & <co>"),
        prompt: s("Pick \"one\""),
        soft_keys: vec![
            SoftKeyItem::new("Select", "SoftKey:Select", 1),
            SoftKeyItem {
                name: s("Exit"),
                url: s("SoftKey:Exit"),
                url_down: s("Key:Onhook"),
                position: Some(2),
            },
        ],
        keys: vec![KeyItem {
            key: s("KeyPad1"),
            url: s("http://x/1"),
            url_down: s("Dial:1000"),
        }],
        keypad_target: s("applicationCall"),
        app_id: s("ucm/app"),
        on_app_focus_lost: s("RTPRx:Stop; RTPTx:Stop"),
        on_app_focus_gained: s("Init:Services"),
        on_app_minimized: s("Init:Services"),
        on_app_closed: s("RTPRx:Stop"),
    }
}

fn bitmap(w: i64, h: i64, d: i64) -> Bitmap {
    let bytes = (w * h * d + 7) / 8;
    Bitmap {
        location_x: Some(-1),
        location_y: Some(-1),
        width: Some(w),
        height: Some(h),
        depth: Some(d),
        data: Some("A5".repeat(bytes as usize)),
    }
}

/// One fully populated, valid instance of every object.
fn samples() -> Vec<CiscoIPPhoneObject> {
    vec![
        Menu {
            base: full_base(),
            items: vec![
                MenuItem::new("One\rtwo\rthree", "http://x/1?a=1&b=2"),
                MenuItem::new("Ünïcødé ☎", "Dial:1000"),
            ],
        }
        .into(),
        Text {
            base: full_base(),
            text: s("Line 1\nLine 2\r\n\tTabbed <b> & 'q'"),
        }
        .into(),
        Input {
            base: full_base(),
            url: s("http://x/search"),
            url_method: s("post"),
            items: vec![
                InputItem::new("Last name", "ln", "A"),
                InputItem {
                    display_name: s("PIN"),
                    query_string_param: s("pin"),
                    input_flags: s("NP"),
                    default_value: s(""),
                },
            ],
        }
        .into(),
        Directory::new("Corp")
            .entry("Alice", "1000")
            .entry("Bob & Co", "+1 555 0100")
            .into(),
        Image {
            base: full_base(),
            bitmap: bitmap(133, 65, 2),
        }
        .into(),
        ImageFile {
            base: full_base(),
            location_x: Some(0),
            location_y: Some(-1),
            url: s("http://x/a.png"),
        }
        .into(),
        GraphicMenu {
            base: full_base(),
            bitmap: bitmap(10, 3, 1),
            items: vec![MenuItem::new("A", "http://x/a")],
        }
        .into(),
        GraphicFileMenu {
            base: full_base(),
            location_x: Some(0),
            location_y: Some(0),
            url: s("http://x/m.png"),
            items: vec![TouchAreaMenuItem {
                name: s("Zone"),
                url: s("http://x/z"),
                touch_area: Some(TouchArea {
                    x1: Some(0),
                    y1: Some(0),
                    x2: Some(100),
                    y2: Some(50),
                }),
            }],
        }
        .into(),
        IconMenu {
            base: full_base(),
            items: vec![IconMenuItem {
                name: s("Item"),
                url: s("http://x/i"),
                icon_index: Some(0),
            }],
            icons: vec![IconItem {
                index: Some(0),
                width: Some(16),
                height: Some(10),
                depth: Some(2),
                data: Some("00".repeat(40)),
            }],
        }
        .into(),
        IconFileMenu {
            base: full_base(),
            icon_index: Some(1),
            items: vec![IconMenuItem {
                name: s("Item"),
                url: s("http://x/i"),
                icon_index: Some(9),
            }],
            icons: vec![IconFileItem {
                index: Some(9),
                url: s("http://x/i.png"),
            }],
        }
        .into(),
        Status {
            text: s("Paging: All Call"),
            timer: Some(0),
            bitmap: bitmap(106, 21, 2),
        }
        .into(),
        StatusFile {
            text: s("Status"),
            timer: Some(30),
            location_x: Some(-1),
            location_y: Some(-1),
            url: s("http://x/s.png"),
        }
        .into(),
        Execute::new()
            .item("Play:chime.raw", Priority::Immediately)
            .item("http://x/t.xml?a=1&b=2", Priority::WhenIdle)
            .item("RTPMRx:239.1.1.1:20480", Priority::IfIdle)
            .into(),
        Response {
            items: vec![ResponseItem {
                status: Some(0),
                data: s("Success"),
                url: s("Play:chime.raw"),
            }],
        }
        .into(),
        PhoneError::new(4).into(),
        PhoneError {
            number: Some(6),
            message: s("Expect: 100-continue"),
        }
        .into(),
    ]
}

#[test]
fn every_object_round_trips_compact_and_pretty() {
    let all = samples();
    assert_eq!(
        all.iter()
            .map(|o| o.kind())
            .collect::<std::collections::HashSet<_>>()
            .len(),
        ObjectKind::ALL.len()
    );
    for obj in all {
        for text in [obj.to_xml(), obj.to_xml_pretty()] {
            assert!(text.starts_with(r#"<?xml version="1.0" encoding="UTF-8"?>"#));
            let p = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(p.object, obj, "{text}");
            assert!(p.warnings.is_empty(), "{:?}", p.warnings);
            let b = parse_bytes(text.as_bytes()).unwrap();
            assert_eq!(b.object, obj);
        }
        // Deterministic: the same object gives the same bytes.
        assert_eq!(obj.to_xml(), obj.clone().to_xml());
        assert_eq!(validate(&obj, None), vec![], "{}", obj.to_xml_pretty());
    }
}

#[test]
fn output_is_exact() {
    let e = Execute::single("RTPMRx:239.1.1.99:20480");
    assert_eq!(
        CiscoIPPhoneObject::from(e).to_xml(),
        r#"<?xml version="1.0" encoding="UTF-8"?><CiscoIPPhoneExecute><ExecuteItem Priority="0" URL="RTPMRx:239.1.1.99:20480"/></CiscoIPPhoneExecute>"#
    );
    let m: CiscoIPPhoneObject = Menu::new("A&B").item("x<y", "http://h/?a=1&b='2'").into();
    assert_eq!(
        m.to_xml_pretty(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CiscoIPPhoneMenu>\n  <Title>A&amp;B</Title>\n  <MenuItem>\n    <Name>x&lt;y</Name>\n    <URL>http://h/?a=1&amp;b=&apos;2&apos;</URL>\n  </MenuItem>\n</CiscoIPPhoneMenu>\n"
    );
    let err: CiscoIPPhoneObject = PhoneError::new(4).into();
    assert_eq!(
        err.to_xml(),
        r#"<?xml version="1.0" encoding="UTF-8"?><CiscoIPPhoneError Number="4"/>"#
    );
}

fn codes(p: &Parsed) -> Vec<&'static str> {
    p.warnings.iter().map(|w| w.code).collect()
}

#[test]
fn cisco_declaration_without_space_parses_with_a_warning() {
    let x = br#"<?xml version="1.0"encoding="ISO-8859-1" ?><CiscoIPPhoneExecute><ExecuteItem Priority= "0" URL="RTPMRx:239.1.1.99:20480:100:off"/></CiscoIPPhoneExecute>"#;
    let p = parse_bytes(x).unwrap();
    assert_eq!(codes(&p), vec!["decl-no-space"]);
    assert_eq!(
        p.object,
        Execute::single("RTPMRx:239.1.1.99:20480:100:off").into()
    );
    let p =
        parse(r#"<?xml version="1.0"encoding="utf-8"?><CiscoIPPhoneError Number="1"/>"#).unwrap();
    assert_eq!(codes(&p), vec!["decl-no-space"]);
    assert_eq!(p.warnings[0].position, Position { line: 1, column: 1 });
    // A well-formed declaration gives no warning.
    let p =
        parse(r#"<?xml version="1.0" encoding="utf-8"?><CiscoIPPhoneError Number="1"/>"#).unwrap();
    assert!(p.warnings.is_empty());
}

#[test]
fn prolog_warnings() {
    let p = parse(r#"<CiscoIPPhoneError Number="1"/>"#).unwrap();
    assert_eq!(codes(&p), vec!["decl-missing"]);
    let p = parse(r#"<?xml version="1.0"?><CiscoIPPhoneError Number="1"/>"#).unwrap();
    assert_eq!(codes(&p), vec!["decl-no-encoding"]);
    let p = parse(
        "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?><CiscoIPPhoneError Number=\"1\"/>",
    )
    .unwrap();
    assert!(p.warnings.is_empty(), "BOM is fine: {:?}", p.warnings);
    let p = parse("\n <?xml version=\"1.0\" encoding=\"UTF-8\"?><CiscoIPPhoneError Number=\"1\"/>")
        .unwrap();
    assert_eq!(codes(&p), vec!["decl-not-first"]);
    let p =
        parse("<?xml version=1.0 encoding=\"UTF-8\"?><CiscoIPPhoneError Number=\"1\"/>").unwrap();
    assert_eq!(codes(&p)[0], "decl-malformed");
}

#[test]
fn encodings() {
    let mut latin =
        b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><CiscoIPPhoneText><Text>caf".to_vec();
    latin.push(0xE9);
    latin.extend_from_slice(b"</Text></CiscoIPPhoneText>");
    let p = parse_bytes(&latin).unwrap();
    assert_eq!(
        p.object,
        Text {
            text: s("café"),
            ..Text::default()
        }
        .into()
    );
    assert!(p.warnings.is_empty());
    // No encoding and not UTF-8: read as Latin-1 with a warning.
    let mut undeclared = b"<CiscoIPPhoneText><Text>caf".to_vec();
    undeclared.push(0xE9);
    undeclared.extend_from_slice(b"</Text></CiscoIPPhoneText>");
    let p = parse_bytes(&undeclared).unwrap();
    assert_eq!(codes(&p), vec!["decl-missing", "encoding-fallback"]);
    // Declared UTF-8 but not: an error, not a guess.
    let mut bad = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><CiscoIPPhoneText><Text>".to_vec();
    bad.push(0xE9);
    bad.extend_from_slice(b"</Text></CiscoIPPhoneText>");
    assert!(matches!(parse_bytes(&bad), Err(XmlError::Encoding(_))));
    assert!(matches!(
        parse_bytes(b"\xFF\xFE<\x00"),
        Err(XmlError::Encoding(_))
    ));
    assert!(matches!(
        parse_bytes(b"<?xml version=\"1.0\" encoding=\"EBCDIC\"?><a/>"),
        Err(XmlError::Encoding(_))
    ));
    let p = parse_bytes(
        b"<?xml version=\"1.0\" encoding=\"windows-1252\"?><CiscoIPPhoneError Number=\"1\"/>",
    )
    .unwrap();
    assert_eq!(codes(&p), vec!["encoding-approximated"]);
}

/// Found by the ciscoipphone_xml fuzz target (issue 15): a reference in an attribute followed,
/// within 16 bytes, by a character whose bytes straddle that cut was kept as text (`&#10;`,
/// `&amp;`), so the written object read back differently.
#[test]
fn r15_attribute_reference_before_multibyte_text_is_decoded() {
    let x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CiscoIPPhoneExecute><ExecuteItem URL=\"http://s/?a&#10;ÚÚÚÚÚÚÚÚ&amp;ééééééé\"/></CiscoIPPhoneExecute>";
    let p = parse(x).unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let CiscoIPPhoneObject::Execute(e) = &p.object else {
        panic!("not an execute")
    };
    assert_eq!(e.items[0].url, s("http://s/?a\nÚÚÚÚÚÚÚÚ&ééééééé"));
    assert_eq!(parse(&p.object.to_xml()).unwrap().object, p.object);
}

#[test]
fn entities_cdata_comments_and_any_order() {
    let x = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment -->
<CiscoIPPhoneMenu>
  <MenuItem><URL>http://x/?a=1&amp;b=2</URL><Name><![CDATA[A <raw> & name]]></Name></MenuItem>
  <SoftKeyItem><Position>1</Position><Name>Go</Name><URL>SoftKey:Select</URL></SoftKeyItem>
  <Prompt>&#72;&#x69; &quot;you&quot; &apos;x&apos; &lt;&gt;</Prompt>
  <Title>T</Title>
</CiscoIPPhoneMenu>"#;
    let p = parse(x).unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let CiscoIPPhoneObject::Menu(m) = p.object else {
        panic!("not a menu")
    };
    assert_eq!(m.base.title, s("T"));
    assert_eq!(m.base.prompt, s("Hi \"you\" 'x' <>"));
    assert_eq!(
        m.items,
        vec![MenuItem::new("A <raw> & name", "http://x/?a=1&b=2")]
    );
    assert_eq!(
        m.base.soft_keys,
        vec![SoftKeyItem::new("Go", "SoftKey:Select", 1)]
    );
}

#[test]
fn unknown_things_are_ignored_with_warnings_naming_the_path() {
    let x = r#"<?xml version="1.0" encoding="UTF-8"?><CiscoIPPhoneMenu bogus="1"><Title>T</Title><Title>U</Title><MenuItem><Name>a</Name><Icon>x</Icon></MenuItem><MenuItem><Name>b<b>!</b></Name></MenuItem>stray<Extra/><Text>&nbsp;</Text></CiscoIPPhoneMenu>"#;
    let p = parse(x).unwrap();
    let got: Vec<(&str, &str)> = p
        .warnings
        .iter()
        .map(|w| (w.code, w.path.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("unknown-entity", "CiscoIPPhoneMenu/Text"),
            ("unknown-attribute", "CiscoIPPhoneMenu"),
            ("stray-text", "CiscoIPPhoneMenu"),
            ("duplicate-element", "CiscoIPPhoneMenu/Title[2]"),
            ("unknown-element", "CiscoIPPhoneMenu/MenuItem[1]/Icon"),
            ("nested-markup", "CiscoIPPhoneMenu/MenuItem[2]/Name"),
            ("unknown-element", "CiscoIPPhoneMenu/Extra"),
            ("unknown-element", "CiscoIPPhoneMenu/Text"),
        ]
    );
    let CiscoIPPhoneObject::Menu(m) = p.object else {
        panic!()
    };
    assert_eq!(m.base.title, s("T"));
    assert_eq!(m.items[1].name, s("b"));
    assert!(p.warnings[0].to_string().contains("CiscoIPPhoneMenu/Text"));
}

#[test]
fn response_and_error_replies() {
    let real = br#"<?xml version="1.0" encoding="utf-8"?>
<CiscoIPPhoneResponse>
<ResponseItem URL="RTPMRx:239.1.1.99:20480:100:off" Data="Success" Status="0" />
</CiscoIPPhoneResponse>
"#;
    let ExecuteReply::Response(r) = parse_execute_reply(real).unwrap() else {
        panic!()
    };
    assert!(r.all_ok());
    assert_eq!(
        r.for_url("RTPMRx:239.1.1.99:20480:100:off")
            .and_then(|i| i.data.as_deref()),
        Some("Success")
    );
    // The XSD's child-element form and misspelt root are read too.
    let xsd = br#"<CiscoIPhoneResponse><ResponseItem><Status>6</Status><Data>URI not found</Data><URL>Key:Nope</URL></ResponseItem></CiscoIPhoneResponse>"#;
    let p = parse_bytes(xsd).unwrap();
    assert_eq!(codes(&p), vec!["decl-missing", "alias-root"]);
    let CiscoIPPhoneObject::Response(r) = p.object else {
        panic!()
    };
    assert!(!r.all_ok());
    assert_eq!(r.items[0].status, Some(6));
    let ExecuteReply::Error(e) = parse_execute_reply(b"<CiscoIPPhoneError Number=\"4\"/>").unwrap()
    else {
        panic!()
    };
    assert_eq!(e.number, Some(4));
    assert_eq!(e.meaning(), Some("authentication error"));
    let ExecuteReply::Error(e) =
        parse_execute_reply(b"<CiscoIPPhoneError Number=\"6\">Timeout</CiscoIPPhoneError>")
            .unwrap()
    else {
        panic!()
    };
    assert_eq!(e.message, s("Timeout"));
    assert_eq!(e.meaning(), None);
    assert!(parse_execute_reply(b"<CiscoIPPhoneText/>").is_err());
}

#[test]
fn errors_name_position_and_path() {
    let e = parse("<CiscoIPPhoneMenu>\n<MenuItem>\n<Name>x</URL></MenuItem></CiscoIPPhoneMenu>")
        .unwrap_err();
    let XmlError::Syntax { path, position, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(path, "CiscoIPPhoneMenu/MenuItem[1]/Name");
    assert_eq!(position.line, 3);
    let e = parse("<CiscoIPPhoneMenu><MenuItem>").unwrap_err();
    assert!(
        matches!(&e, XmlError::Syntax { path, .. } if path == "CiscoIPPhoneMenu/MenuItem[1]"),
        "{e:?}"
    );
    let e = parse("<CiscoIPPhoneStatus><Timer>soon</Timer></CiscoIPPhoneStatus>").unwrap_err();
    assert!(
        matches!(&e, XmlError::BadValue { path, .. } if path == "CiscoIPPhoneStatus/Timer"),
        "{e:?}"
    );
    let e = parse(
        r#"<CiscoIPPhoneExecute><ExecuteItem URL="x" Priority="high"/></CiscoIPPhoneExecute>"#,
    )
    .unwrap_err();
    assert!(
        matches!(&e, XmlError::BadValue { path, .. } if path == "CiscoIPPhoneExecute/ExecuteItem[1]/@Priority"),
        "{e:?}"
    );
    assert!(matches!(
        parse("<html><body/></html>"),
        Err(XmlError::UnknownObject { .. })
    ));
    assert!(matches!(parse(""), Err(XmlError::Empty)));
    assert!(matches!(parse("<!-- only -->"), Err(XmlError::Empty)));
    assert!(matches!(
        parse("<CiscoIPPhoneError Number=\"1\"/><CiscoIPPhoneError Number=\"2\"/>"),
        Err(XmlError::Syntax { .. })
    ));
    let big = "x".repeat(MAX_INPUT_BYTES + 1);
    assert!(matches!(parse(&big), Err(XmlError::TooLarge { .. })));
    assert!(matches!(
        parse_bytes(big.as_bytes()),
        Err(XmlError::TooLarge { .. })
    ));
    let deep = format!("<CiscoIPPhoneMenu>{}", "<a>".repeat(100));
    assert!(matches!(parse(&deep), Err(XmlError::TooDeep { .. })));
    // A message names where: line:column and path.
    let msg = parse("<CiscoIPPhoneText>\n  <Text>x</Title></CiscoIPPhoneText>")
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("2:") && msg.contains("CiscoIPPhoneText/Text"),
        "{msg}"
    );
}

#[test]
fn never_panics_on_garbage() {
    let cases: &[&[u8]] = &[
        b"",
        b"<",
        b"<<",
        b"</",
        b"<?xml",
        b"<?xml ?>",
        b"<?xml version=\"1.0\" encoding=\"",
        b"<CiscoIPPhoneMenu",
        b"<CiscoIPPhoneMenu a=>",
        b"<CiscoIPPhoneMenu a='1\"'>",
        b"<CiscoIPPhoneMenu><Title>&#0;&#x110000;&#xZZ;&</Title></CiscoIPPhoneMenu>",
        b"<CiscoIPPhoneMenu><![CDATA[",
        b"<CiscoIPPhoneMenu><!--",
        b"<!DOCTYPE x [<!ENTITY e \"boom\">]><CiscoIPPhoneText><Text>&e;</Text></CiscoIPPhoneText>",
        b"\xEF\xBB\xBF",
        b"\xC3",
        b"<CiscoIPPhoneExecute><ExecuteItem URL=\"&#xD800;\" Priority=\"99999999999999999999\"/></CiscoIPPhoneExecute>",
        b"<CiscoIPPhoneGraphicFileMenu><MenuItem><TouchArea X1=\"-1\"/></MenuItem></CiscoIPPhoneGraphicFileMenu>",
    ];
    for c in cases {
        if let Ok(p) = parse_bytes(c) {
            let _ = validate(&p.object, PhoneModel::lookup("CP-6921"));
            let again = parse(&p.object.to_xml()).unwrap();
            assert_eq!(again.object, p.object);
        }
        if let Ok(t) = std::str::from_utf8(c) {
            let _ = parse(t);
            let _ = canonicalize(t);
        }
    }
}

#[test]
fn bare_ampersands_in_urls_are_kept() {
    // A classic mistake in real applications: unescaped `&` in a query string.
    let x = r#"<CiscoIPPhoneMenu><MenuItem><Name>n</Name><URL>http://x/?a=1&b=2</URL></MenuItem><SoftKeyItem><Name>k</Name><URL>http://x/?a=1&amp;b=2&c=3</URL><Position>1</Position></SoftKeyItem></CiscoIPPhoneMenu>"#;
    let p = parse(x).unwrap();
    let CiscoIPPhoneObject::Menu(m) = &p.object else {
        panic!()
    };
    assert_eq!(m.items[0].url, s("http://x/?a=1&b=2"));
    assert_eq!(m.base.soft_keys[0].url, s("http://x/?a=1&b=2&c=3"));
    let e = parse(
        r#"<CiscoIPPhoneExecute><ExecuteItem URL="http://x/?a=1&b=2"/></CiscoIPPhoneExecute>"#,
    )
    .unwrap();
    assert_eq!(
        e.object,
        Execute {
            items: vec![ExecuteItem {
                url: s("http://x/?a=1&b=2"),
                priority: None
            }]
        }
        .into()
    );
    assert!(e
        .warnings
        .iter()
        .any(|w| w.code == "unknown-entity" && w.path == "CiscoIPPhoneExecute/ExecuteItem[1]"));
    // Our output escapes it.
    assert!(p.object.to_xml().contains("a=1&amp;b=2"));
}

#[test]
fn many_distinct_names_and_attributes_stay_fast() {
    let mut x = String::from("<CiscoIPPhoneMenu>");
    for i in 0..20_000 {
        x.push_str(&format!("<E{i}/>"));
    }
    x.push_str("<MenuItem");
    for i in 0..20_000 {
        x.push_str(&format!(" a{i}=\"1\""));
    }
    x.push_str("/></CiscoIPPhoneMenu>");
    let start = std::time::Instant::now();
    let p = parse(&x).unwrap();
    assert_eq!(p.warnings.len(), MAX_WARNINGS + 1);
    assert!(start.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn warnings_are_capped() {
    let x = format!(
        "<CiscoIPPhoneMenu>{}</CiscoIPPhoneMenu>",
        "<X/>".repeat(1000)
    );
    let p = parse(&x).unwrap();
    assert_eq!(p.warnings.len(), MAX_WARNINGS + 1);
    assert_eq!(p.warnings.last().map(|w| w.code), Some("too-many-warnings"));
}

#[test]
fn canonical_form_ignores_formatting_order_and_quoting() {
    let a = r#"<?xml version="1.0" encoding="UTF-8"?><CiscoIPPhoneExecute><ExecuteItem Priority="0" URL="Dial:1000"/></CiscoIPPhoneExecute>"#;
    let b = "<?xml version='1.0'encoding='utf-8'?>\n<CiscoIPPhoneExecute>\n   <!-- c -->\n   <ExecuteItem URL = 'Dial:1000'   Priority=\"0\"></ExecuteItem>\n</CiscoIPPhoneExecute>\n";
    assert_eq!(canonicalize(a).unwrap(), canonicalize(b).unwrap());
    assert_eq!(
        canonicalize_bytes(b.as_bytes()).unwrap(),
        canonicalize(a).unwrap()
    );
    let c = a.replace("Dial:1000", "Dial:1001");
    assert_ne!(canonicalize(a).unwrap(), canonicalize(&c).unwrap());
    // Canonical form is a fixed point.
    let once = canonicalize(b).unwrap();
    assert_eq!(canonicalize(&once).unwrap(), once);
}

fn rules(obj: impl Into<CiscoIPPhoneObject>, model: Option<&str>) -> Vec<(String, &'static str)> {
    let m = model.map(|m| PhoneModel::lookup(m).expect("known model"));
    validate(&obj.into(), m)
        .into_iter()
        .map(|v| (v.path, v.rule))
        .collect()
}

fn one(path: &str, rule: &'static str) -> Vec<(String, &'static str)> {
    vec![(path.to_string(), rule)]
}

#[test]
fn rule_lengths_and_counts() {
    let long = |n: usize| "x".repeat(n);
    assert_eq!(rules(Menu::new(&long(32)), None), vec![]);
    assert_eq!(
        rules(Menu::new(&long(33)), None),
        one("CiscoIPPhoneMenu/Title", "max-length")
    );
    // Characters, not bytes.
    assert_eq!(rules(Menu::new(&"é".repeat(32)), None), vec![]);
    let mut m = Menu::new("t");
    for i in 0..100 {
        m = m.item(&format!("{i}"), "http://x");
    }
    assert_eq!(rules(m.clone(), None), vec![]);
    m = m.item("101", "http://x");
    assert_eq!(
        rules(m, None),
        one("CiscoIPPhoneMenu/MenuItem[101]", "max-items")
    );
    assert_eq!(
        rules(Menu::new("t").item(&long(65), &long(257)), None),
        vec![
            (
                "CiscoIPPhoneMenu/MenuItem[1]/Name".to_string(),
                "max-length"
            ),
            ("CiscoIPPhoneMenu/MenuItem[1]/URL".to_string(), "max-length"),
        ]
    );
    assert_eq!(rules(Menu::new("t").item("a\rb\rc", "u"), None), vec![]);
    assert_eq!(
        rules(Menu::new("t").item("a\rb\rc\rd", "u"), None),
        one("CiscoIPPhoneMenu/MenuItem[1]/Name", "menu-name-lines")
    );
    let mut d = Directory::new("d");
    for _ in 0..32 {
        d = d.entry("n", "1");
    }
    assert_eq!(rules(d.clone(), None), vec![]);
    assert_eq!(
        rules(d.entry("n", "1"), None),
        one("CiscoIPPhoneDirectory/DirectoryEntry[33]", "max-items")
    );
    assert_eq!(
        rules(Directory::new("d").entry(&long(33), &long(33)), None),
        vec![
            (
                "CiscoIPPhoneDirectory/DirectoryEntry[1]/Name".to_string(),
                "max-length"
            ),
            (
                "CiscoIPPhoneDirectory/DirectoryEntry[1]/Telephone".to_string(),
                "max-length"
            ),
        ]
    );
    assert_eq!(rules(Text::new("t", &long(4000)), None), vec![]);
    assert_eq!(
        rules(Text::new("t", &long(4001)), None),
        one("CiscoIPPhoneText/Text", "max-length")
    );
    assert_eq!(
        rules(Text::new("t", "a\u{7}b"), None),
        one("CiscoIPPhoneText/Text", "control-char")
    );
    let mut gm = GraphicMenu {
        bitmap: bitmap(1, 1, 1),
        ..GraphicMenu::default()
    };
    gm.items = vec![MenuItem::new("a", "b"); 12];
    assert_eq!(rules(gm.clone(), None), vec![]);
    gm.items.push(MenuItem::new("a", "b"));
    assert_eq!(
        rules(gm, None),
        one("CiscoIPPhoneGraphicMenu/MenuItem[13]", "max-items")
    );
}

#[test]
fn rule_input() {
    let ok = Input::new("t", "http://x").item(InputItem::new("d", "p", "A"));
    assert_eq!(rules(ok.clone(), None), vec![]);
    for f in INPUT_FLAGS {
        let i = Input::new("t", "http://x").item(InputItem::new("d", "p", f));
        assert_eq!(rules(i, None), vec![], "{f}");
    }
    for f in ["X", "AP P", "PP", "", "a", "AN", "APP"] {
        let i = Input::new("t", "http://x")
            .item(InputItem::new("d", "p", "A"))
            .item(InputItem::new("d", "p", f));
        assert_eq!(
            rules(i, None),
            one("CiscoIPPhoneInput/InputItem[2]/InputFlags", "input-flags"),
            "{f}"
        );
    }
    let mut many = Input::new("t", "http://x");
    for _ in 0..6 {
        many = many.item(InputItem::new("d", "p", "N"));
    }
    assert_eq!(
        rules(many, None),
        one("CiscoIPPhoneInput/InputItem[6]", "max-items")
    );
    let missing = Input {
        items: vec![InputItem::default()],
        ..Input::default()
    };
    assert_eq!(
        rules(missing, None),
        vec![
            ("CiscoIPPhoneInput/URL".to_string(), "required"),
            (
                "CiscoIPPhoneInput/InputItem[1]/QueryStringParam".to_string(),
                "required"
            ),
            (
                "CiscoIPPhoneInput/InputItem[1]/InputFlags".to_string(),
                "required"
            ),
        ]
    );
    let mut empty_param = ok.clone();
    empty_param.items[0].query_string_param = s("");
    assert_eq!(
        rules(empty_param, None),
        one(
            "CiscoIPPhoneInput/InputItem[1]/QueryStringParam",
            "min-length"
        )
    );
    let mut method = ok.clone();
    method.url_method = s("put");
    assert_eq!(
        rules(method.clone(), None),
        one("CiscoIPPhoneInput/URL/@method", "url-method")
    );
    method.url_method = s("post");
    assert_eq!(rules(method.clone(), Some("CP-8851")), vec![]);
    assert_eq!(
        rules(method, Some("CP-7960")),
        one("CiscoIPPhoneInput/URL/@method", "model-input-post")
    );
    let e = Input::new("t", "http://x").item(InputItem::new("d", "p", "EP"));
    assert_eq!(rules(e.clone(), Some("CP-8851")), vec![]);
    assert_eq!(
        rules(e, Some("CP-8851-3PCC")),
        one(
            "CiscoIPPhoneInput/InputItem[1]/InputFlags",
            "model-input-flags"
        )
    );
}

#[test]
fn rule_softkeys_and_keys() {
    let with = |pos: Vec<i64>| {
        let mut m = Menu::new("t");
        for p in pos {
            m = m.soft_key("k", "SoftKey:Exit", p);
        }
        m
    };
    assert_eq!(rules(with(vec![1, 2, 8, -1]), None), vec![]);
    assert_eq!(rules(with(vec![16]), None), vec![]);
    assert_eq!(
        rules(with(vec![0]), None),
        one(
            "CiscoIPPhoneMenu/SoftKeyItem[1]/Position",
            "softkey-position"
        )
    );
    assert_eq!(
        rules(with(vec![1, 17]), None),
        one(
            "CiscoIPPhoneMenu/SoftKeyItem[2]/Position",
            "softkey-position"
        )
    );
    assert_eq!(
        rules(with(vec![1, 1]), None),
        one(
            "CiscoIPPhoneMenu/SoftKeyItem[2]/Position",
            "softkey-position-duplicate"
        )
    );
    assert_eq!(rules(with(vec![9]), Some("CP-8851")), vec![]);
    assert_eq!(
        rules(with(vec![9]), Some("CP-8821")),
        one(
            "CiscoIPPhoneMenu/SoftKeyItem[1]/Position",
            "model-softkey-position"
        )
    );
    assert_eq!(rules(with((1..=16).collect()), None), vec![]);
    assert_eq!(
        rules(with((1..=9).collect()), Some("CP-7960")),
        vec![
            ("CiscoIPPhoneMenu/SoftKeyItem[9]".to_string(), "max-items"),
            (
                "CiscoIPPhoneMenu/SoftKeyItem[9]/Position".to_string(),
                "model-softkey-position"
            ),
        ]
    );
    let mut m = with(vec![1]);
    m.base.soft_keys[0].position = None;
    m.base.soft_keys[0].url_down = s("http://x/down");
    assert_eq!(
        rules(m, None),
        vec![
            (
                "CiscoIPPhoneMenu/SoftKeyItem[1]/URLDown".to_string(),
                "urldown-http"
            ),
            (
                "CiscoIPPhoneMenu/SoftKeyItem[1]/Position".to_string(),
                "required"
            ),
        ]
    );
    let mut m = Menu::new("t");
    m.base.keys = vec![
        KeyItem {
            key: s("NavBack"),
            url: s("SoftKey:Exit"),
            url_down: None,
        },
        KeyItem {
            key: s("Volume"),
            url: None,
            url_down: s("HTTPS://x"),
        },
        KeyItem::default(),
    ];
    m.base.keypad_target = s("phone");
    m.base.app_id = s("");
    assert_eq!(
        rules(m, None),
        vec![
            (
                "CiscoIPPhoneMenu/@keypadTarget".to_string(),
                "keypad-target"
            ),
            ("CiscoIPPhoneMenu/@appId".to_string(), "min-length"),
            ("CiscoIPPhoneMenu/KeyItem[2]/Key".to_string(), "key-name"),
            (
                "CiscoIPPhoneMenu/KeyItem[2]/URLDown".to_string(),
                "urldown-http"
            ),
            ("CiscoIPPhoneMenu/KeyItem[3]/Key".to_string(), "required"),
        ]
    );
}

#[test]
fn rule_execute_and_response() {
    let two_uris_one_url = Execute::new()
        .item("Play:a.raw", Priority::Immediately)
        .item("Key:Speaker", Priority::Immediately)
        .item("http://x/a", Priority::IfIdle);
    assert_eq!(rules(two_uris_one_url, None), vec![]);
    let two_urls = Execute::new()
        .item("http://x/a", Priority::Immediately)
        .item("HTTPS://x/b", Priority::Immediately);
    assert_eq!(
        rules(two_urls, None),
        one(
            "CiscoIPPhoneExecute/ExecuteItem[2]/@URL",
            "execute-http-count"
        )
    );
    let four = Execute::new()
        .item("Key:1", Priority::Immediately)
        .item("Key:2", Priority::Immediately)
        .item("Key:3", Priority::Immediately)
        .item("Key:4", Priority::Immediately);
    assert_eq!(
        rules(four, None),
        one("CiscoIPPhoneExecute/ExecuteItem[4]", "max-items")
    );
    assert_eq!(
        rules(Execute::new(), None),
        one("CiscoIPPhoneExecute/ExecuteItem[1]", "min-items")
    );
    let bad = Execute {
        items: vec![
            ExecuteItem {
                url: s("Dial:1"),
                priority: Some(3),
            },
            ExecuteItem {
                url: None,
                priority: None,
            },
            ExecuteItem {
                url: s("SoftKey:Exit"),
                priority: Some(-1),
            },
        ],
    };
    assert_eq!(
        rules(bad, None),
        vec![
            (
                "CiscoIPPhoneExecute/ExecuteItem[1]/@Priority".to_string(),
                "range"
            ),
            (
                "CiscoIPPhoneExecute/ExecuteItem[2]/@URL".to_string(),
                "required"
            ),
            (
                "CiscoIPPhoneExecute/ExecuteItem[3]/@Priority".to_string(),
                "range"
            ),
            (
                "CiscoIPPhoneExecute/ExecuteItem[3]/@URL".to_string(),
                "execute-uri-forbidden"
            ),
        ]
    );
    let softkey = Execute::single("SoftKey:Exit");
    assert_eq!(
        rules(softkey.clone(), None),
        one(
            "CiscoIPPhoneExecute/ExecuteItem[1]/@URL",
            "execute-uri-forbidden"
        )
    );
    assert_eq!(rules(softkey, Some("CP-8821")), vec![]);
    assert_eq!(
        rules(Execute::single("Notify:http:h:80:p::d"), Some("CP-8821")),
        one(
            "CiscoIPPhoneExecute/ExecuteItem[1]/@URL",
            "execute-uri-forbidden"
        )
    );
    let long = Execute::single(&format!("http://{}", "x".repeat(250)));
    assert_eq!(
        rules(long, None),
        one("CiscoIPPhoneExecute/ExecuteItem[1]/@URL", "max-length")
    );
    let r = Response {
        items: vec![ResponseItem {
            status: Some(40000),
            data: s(&"d".repeat(33)),
            url: s("u"),
        }],
    };
    assert_eq!(
        rules(r, None),
        vec![
            (
                "CiscoIPPhoneResponse/ResponseItem[1]/@Status".to_string(),
                "range"
            ),
            (
                "CiscoIPPhoneResponse/ResponseItem[1]/@Data".to_string(),
                "max-length"
            ),
        ]
    );
    assert_eq!(
        rules(PhoneError::default(), None),
        one("CiscoIPPhoneError/@Number", "required")
    );
    assert_eq!(
        rules(PhoneError::new(70000), None),
        one("CiscoIPPhoneError/@Number", "range")
    );
    assert_eq!(
        rules(PhoneError::new(4), Some("CP-8851-3PCC")),
        one("CiscoIPPhoneError", "model-object")
    );
}

#[test]
fn rule_images() {
    let img = |b: Bitmap| Image {
        base: Displayable::default(),
        bitmap: b,
    };
    assert_eq!(rules(img(bitmap(133, 65, 2)), None), vec![]);
    // 3 pixels at 2 bits need 1 byte; rows are not padded.
    assert_eq!(rules(img(bitmap(3, 1, 2)), None), vec![]);
    let mut b = bitmap(4, 4, 2);
    b.data = s("A5A5A5");
    assert_eq!(
        rules(img(b.clone()), None),
        one("CiscoIPPhoneImage/Data", "image-data-size")
    );
    b.data = s("A5A5A5G5");
    assert_eq!(
        rules(img(b.clone()), None),
        one("CiscoIPPhoneImage/Data", "hex-data")
    );
    b.data = s("A5A");
    assert_eq!(
        rules(img(b.clone()), None),
        one("CiscoIPPhoneImage/Data", "hex-data")
    );
    b.data = None;
    assert_eq!(rules(img(b), None), vec![]);
    let big = Bitmap {
        location_x: Some(133),
        location_y: Some(-2),
        width: Some(134),
        height: Some(0),
        depth: Some(3),
        data: s(&"00".repeat(2163)),
    };
    assert_eq!(
        rules(img(big), None),
        vec![
            ("CiscoIPPhoneImage/LocationX".to_string(), "range"),
            ("CiscoIPPhoneImage/LocationY".to_string(), "range"),
            ("CiscoIPPhoneImage/Width".to_string(), "range"),
            ("CiscoIPPhoneImage/Height".to_string(), "range"),
            ("CiscoIPPhoneImage/Depth".to_string(), "range"),
            ("CiscoIPPhoneImage/Data".to_string(), "max-length"),
        ]
    );
    assert_eq!(
        rules(img(Bitmap::default()), None),
        vec![
            ("CiscoIPPhoneImage/Width".to_string(), "required"),
            ("CiscoIPPhoneImage/Height".to_string(), "required"),
            ("CiscoIPPhoneImage/Depth".to_string(), "required"),
        ]
    );
    let st = Status {
        text: s("x"),
        timer: Some(70000),
        bitmap: bitmap(107, 21, 2),
    };
    assert_eq!(
        rules(st, None),
        vec![
            ("CiscoIPPhoneStatus/Timer".to_string(), "range"),
            ("CiscoIPPhoneStatus/Width".to_string(), "range"),
            ("CiscoIPPhoneStatus/Data".to_string(), "max-length"),
        ]
    );
    let icons = IconMenu {
        icons: vec![
            IconItem {
                index: Some(0),
                width: Some(17),
                height: Some(10),
                depth: Some(2),
                data: None
            };
            11
        ],
        items: vec![IconMenuItem {
            name: None,
            url: None,
            icon_index: Some(10),
        }],
        ..IconMenu::default()
    };
    let got = rules(icons, None);
    assert_eq!(
        got[0],
        (
            "CiscoIPPhoneIconMenu/MenuItem[1]/IconIndex".to_string(),
            "range"
        )
    );
    assert_eq!(
        got[1],
        ("CiscoIPPhoneIconMenu/IconItem[11]".to_string(), "max-items")
    );
    assert_eq!(
        got[2],
        (
            "CiscoIPPhoneIconMenu/IconItem[1]/Width".to_string(),
            "range"
        )
    );
    assert_eq!(got.len(), 2 + 11);
    let file = ImageFile {
        url: None,
        location_x: Some(298),
        ..ImageFile::default()
    };
    assert_eq!(
        rules(file, None),
        vec![
            ("CiscoIPPhoneImageFile/LocationX".to_string(), "range"),
            ("CiscoIPPhoneImageFile/URL".to_string(), "required"),
        ]
    );
    let gfm = GraphicFileMenu {
        url: s("http://x"),
        items: vec![TouchAreaMenuItem {
            name: None,
            url: None,
            touch_area: Some(TouchArea {
                x1: Some(-1),
                ..TouchArea::default()
            }),
        }],
        ..GraphicFileMenu::default()
    };
    assert_eq!(
        rules(gfm, None),
        vec![
            (
                "CiscoIPPhoneGraphicFileMenu/MenuItem[1]/TouchArea/@X1".to_string(),
                "range"
            ),
            (
                "CiscoIPPhoneGraphicFileMenu/MenuItem[1]/TouchArea/@Y1".to_string(),
                "required"
            ),
            (
                "CiscoIPPhoneGraphicFileMenu/MenuItem[1]/TouchArea/@X2".to_string(),
                "required"
            ),
            (
                "CiscoIPPhoneGraphicFileMenu/MenuItem[1]/TouchArea/@Y2".to_string(),
                "required"
            ),
        ]
    );
    let ifm = IconFileMenu {
        icons: vec![IconFileItem {
            index: Some(10),
            url: None,
        }],
        ..IconFileMenu::default()
    };
    assert_eq!(
        rules(ifm, None),
        vec![
            (
                "CiscoIPPhoneIconFileMenu/IconItem[1]/Index".to_string(),
                "range"
            ),
            (
                "CiscoIPPhoneIconFileMenu/IconItem[1]/URL".to_string(),
                "required"
            ),
        ]
    );
    let sf = StatusFile {
        location_y: Some(50),
        ..StatusFile::default()
    };
    assert_eq!(
        rules(sf, None),
        vec![
            ("CiscoIPPhoneStatusFile/LocationY".to_string(), "range"),
            ("CiscoIPPhoneStatusFile/URL".to_string(), "required"),
        ]
    );
}

#[test]
fn models() {
    assert_eq!(
        PhoneModel::lookup("cp-8861").map(|m| m.name),
        Some("CP-8851")
    );
    assert_eq!(PhoneModel::lookup("7960").map(|m| m.name), Some("CP-7960"));
    // As cluster definitions name them.
    assert_eq!(
        PhoneModel::lookup("Cisco 8845").map(|m| m.name),
        Some("CP-8851")
    );
    assert!(PhoneModel::lookup("CP-0000").is_none());
    let img: CiscoIPPhoneObject = Image {
        base: Displayable::default(),
        bitmap: bitmap(1, 1, 1),
    }
    .into();
    assert_eq!(validate(&img, PhoneModel::lookup("CP-8851")), vec![]);
    let v = validate(&img, PhoneModel::lookup("CP-7841"));
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].rule, "model-object");
    assert!(v[0].message.contains("CP-7821"));
    let status: CiscoIPPhoneObject = Status {
        text: s("x"),
        timer: None,
        bitmap: bitmap(1, 1, 1),
    }
    .into();
    assert_eq!(rules(status.clone(), Some("CP-8851")), vec![]);
    for m in ["CP-8821", "CP-9971", "DP-9841"] {
        assert_eq!(
            rules(status.clone(), Some(m)),
            one("CiscoIPPhoneStatus", "model-object"),
            "{m}"
        );
    }
    let png: CiscoIPPhoneObject = ImageFile {
        url: s("http://x/a.png"),
        ..ImageFile::default()
    }
    .into();
    assert_eq!(rules(png.clone(), Some("CP-7970G")), vec![]);
    assert_eq!(
        rules(png, Some("CP-7960")),
        one("CiscoIPPhoneImageFile", "model-object")
    );
    let text_only = PhoneModel {
        display: DisplayKind::TextOnly,
        unsupported: &[],
        ..MODELS[0].clone()
    };
    assert!(!text_only.supports(ObjectKind::Image));
    assert!(text_only.supports(ObjectKind::Directory));
    let shown: Vec<ObjectKind> = ObjectKind::ALL
        .into_iter()
        .filter(|k| text_only.supports(*k))
        .collect();
    assert_eq!(
        shown,
        [
            ObjectKind::Menu,
            ObjectKind::Text,
            ObjectKind::Input,
            ObjectKind::Directory,
            ObjectKind::Execute,
            ObjectKind::Response,
            ObjectKind::Error
        ]
    );
    let mut t = Text::new("t", &"x".repeat(4000));
    t.base.soft_keys = vec![SoftKeyItem::new(&"k".repeat(32), &"u".repeat(256), 1); 1];
    let mut d = Directory::new("d");
    for _ in 0..32 {
        d = d.entry(&"n".repeat(32), &"1".repeat(32));
    }
    assert_eq!(rules(d.clone(), Some("CP-6921")), vec![]);
    // Every model's table entry is self-consistent.
    for m in MODELS {
        assert!(m.softkey_max >= 1 && m.softkey_max <= 16, "{}", m.name);
        assert_eq!(PhoneModel::lookup(m.name).map(|x| x.name), Some(m.name));
        for a in m.aliases {
            assert_eq!(PhoneModel::lookup(a).map(|x| x.name), Some(m.name), "{a}");
        }
    }
}

#[test]
fn model_size_limit() {
    let model = PhoneModel {
        max_document_bytes: Some(200),
        ..MODELS[0].clone()
    };
    let small: CiscoIPPhoneObject = Text::new("t", "x").into();
    assert_eq!(validate(&small, Some(&model)), vec![]);
    let big: CiscoIPPhoneObject = Text::new("t", &"x".repeat(300)).into();
    let v = validate(&big, Some(&model));
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].rule, "model-size");
}

#[test]
fn every_violation_is_reported_not_just_the_first() {
    let x = r#"<CiscoIPPhoneInput><Title>0123456789012345678901234567890123</Title>
      <InputItem><QueryStringParam>a</QueryStringParam><InputFlags>Q</InputFlags></InputItem>
      <InputItem><QueryStringParam>b</QueryStringParam><InputFlags>A</InputFlags></InputItem>
      <InputItem><QueryStringParam>c</QueryStringParam><InputFlags>W</InputFlags></InputItem>
    </CiscoIPPhoneInput>"#;
    let p = parse(x).unwrap();
    let got: Vec<String> = validate(&p.object, None)
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(got[0].starts_with("CiscoIPPhoneInput/Title: 34 characters"));
    assert!(got[1].starts_with("CiscoIPPhoneInput/URL: missing [required]"));
    assert!(got[2].starts_with("CiscoIPPhoneInput/InputItem[1]/InputFlags"));
    assert!(got[3].starts_with("CiscoIPPhoneInput/InputItem[3]/InputFlags"));
}

/// The fuzz target's properties over deterministic mutations of every sample: parse never
/// panics; what parses serializes to text that parses back to the same object, without
/// warnings; the canonical form is a fixed point.
#[test]
fn mutated_documents_keep_the_round_trip_properties() {
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    const PIECES: &[&[u8]] = &[
        b"<",
        b">",
        b"/>",
        b"&",
        b"&amp;",
        b"&#13;",
        b"&#x0;",
        b"<![CDATA[x]]>",
        b"\"",
        b"'",
        b"=",
        b" ",
        b"\r\n",
        b"<Title>",
        b"</Title>",
        b"<MenuItem>",
        b"<?xml",
        b"?>",
        b"\xE9",
        b"\xFF",
        b"<!--",
        b"-->",
        b"1",
        b"-1",
        b"99999999999999999999",
        b"<X a='1'/>",
    ];
    let mut parsed_ok = 0;
    for obj in samples() {
        let base = obj.to_xml_pretty().into_bytes();
        for _ in 0..300 {
            let mut doc = base.clone();
            for _ in 0..=(next() % 4) {
                let at = (next() as usize) % (doc.len() + 1);
                match next() % 3 {
                    0 => {
                        let end = (at + 1 + (next() as usize) % 8).min(doc.len());
                        doc.drain(at..end);
                    }
                    1 => {
                        let piece = PIECES[(next() as usize) % PIECES.len()];
                        doc.splice(at..at, piece.iter().copied());
                    }
                    _ => {
                        if let Some(b) = doc.get_mut(at) {
                            *b = (next() % 256) as u8;
                        }
                    }
                }
            }
            let Ok(p) = parse_bytes(&doc) else { continue };
            parsed_ok += 1;
            for text in [p.object.to_xml(), p.object.to_xml_pretty()] {
                let again = parse(&text).unwrap_or_else(|e| {
                    panic!("{e}\n{text}\nfrom {}", String::from_utf8_lossy(&doc))
                });
                assert_eq!(again.object, p.object, "{text}");
                assert!(again.warnings.is_empty(), "{:?}\n{text}", again.warnings);
            }
            let canon = canonicalize(&p.object.to_xml()).unwrap();
            assert_eq!(canonicalize(&canon).unwrap(), canon);
            let _ = validate(&p.object, None);
            for m in MODELS {
                let _ = validate(&p.object, Some(m));
            }
        }
    }
    assert!(parsed_ok > 500, "only {parsed_ok} mutants parsed");
}
