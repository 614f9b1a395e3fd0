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
        }
    }
}
