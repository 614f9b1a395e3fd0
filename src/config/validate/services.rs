//! The enterprise parameters' service URLs and the phone services. (Each service checks its
//! own parameters: see `ServiceSpec::check` in `services`.)

use super::Checker;
use crate::wire::yaml::Path;

impl Checker<'_> {
    pub(super) fn enterprise_parameters(&mut self) {
        let d = self.def;
        let root = Path::root();
        let ep = &d.enterprise_parameters;
        let epp = root.key("enterprise_parameters");
        for (name, v, secure) in [
            ("url_services", &ep.url_services, false),
            ("url_authentication", &ep.url_authentication, false),
            ("url_directories", &ep.url_directories, false),
            ("url_idle", &ep.url_idle, false),
            ("url_information", &ep.url_information, false),
            ("url_messages", &ep.url_messages, false),
            ("secure_url_services", &ep.secure_url_services, true),
            (
                "secure_url_authentication",
                &ep.secure_url_authentication,
                true,
            ),
            ("secure_url_directories", &ep.secure_url_directories, true),
            ("secure_url_idle", &ep.secure_url_idle, true),
            ("secure_url_information", &ep.secure_url_information, true),
            ("secure_url_messages", &ep.secure_url_messages, true),
        ] {
            self.url(epp.key(name), v.as_deref(), secure);
        }
    }

    pub(super) fn phone_services(&mut self) {
        let d = self.def;
        let root = Path::root();
        for (i, s) in d.phone_services.iter().enumerate() {
            let p = root.key("phone_services").index(i);
            if s.url.trim().is_empty() {
                self.err(p.key("url"), "a phone service needs a URL");
            } else {
                self.url(p.key("url"), Some(&s.url), false);
            }
            self.url(p.key("secure_url"), s.secure_url.as_deref(), true);
            if let Some(m) = &s.midlet {
                let mp = p.key("midlet");
                if s.category != crate::config::model::ServiceCategory::JavaMidlet {
                    self.err(
                        mp.clone(),
                        "a midlet belongs to a service of category java-midlet",
                    );
                }
                let version_ok = {
                    let parts: Vec<&str> = m.version.split('.').collect();
                    (2..=3).contains(&parts.len())
                        && parts.iter().all(|x| {
                            !x.is_empty() && x.len() <= 2 && x.bytes().all(|b| b.is_ascii_digit())
                        })
                };
                if !version_ok {
                    // MIDP's MIDlet-Version: Major.Minor[.Micro], each 0-99.
                    self.err(
                        mp.key("version"),
                        format!(
                            "{:?} is not a MIDlet version (major.minor[.micro], 0-99 each)",
                            m.version
                        ),
                    );
                }
                for (field, v) in [("vendor", &m.vendor), ("class", &m.class)] {
                    if v.trim().is_empty() || v.contains(['\n', '\r']) {
                        self.err(
                            mp.key(field),
                            format!("the MIDlet's {field} is empty or spans lines"),
                        );
                    }
                }
                if m.jars.is_empty() {
                    self.err(mp.key("jars"), "a MIDlet needs at least one JAR");
                }
                for (j, jar) in m.jars.iter().enumerate() {
                    if jar.models.is_empty() {
                        self.err(
                            mp.key("jars").index(j).key("models"),
                            "name the phone models (or \"*\")",
                        );
                    }
                    if jar.file.trim().is_empty() {
                        self.err(mp.key("jars").index(j).key("file"), "the JAR file is empty");
                    }
                }
            }
        }
    }
}
