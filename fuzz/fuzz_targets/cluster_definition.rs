//! Cluster definitions come from users' files: any text must give a definition or errors that
//! name a line, never a panic; a definition that loads must survive export and reload.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ucm::services::parse_str(text, "fuzz.yaml") {
        Ok(def) => {
            let yaml = ucm::config::to_yaml(&def).expect("a loaded definition serialises");
            let again = ucm::services::parse_str(&yaml, "export.yaml").expect("an export reloads");
            assert_eq!(def, again);
        }
        Err(ucm::config::LoadError::Invalid(errs)) => {
            assert!(!errs.is_empty());
            for e in errs {
                assert!(e.line >= 1);
            }
        }
        Err(e) => panic!("unexpected error kind: {e}"),
    }
});
