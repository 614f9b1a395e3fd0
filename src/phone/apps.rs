//! The phone's own applications: call history (Missed, Received and Placed Calls, kept by
//! the phone as a Cisco phone keeps them), the built-in `Application:Cisco/...` service URLs,
//! and Java MIDlets installed from the services of the configuration file. Data and rules
//! only; the phone's tasks (`device`) do the fetching.

use std::collections::VecDeque;

use serde::Serialize;

use crate::wire::xml::{CiscoIPPhoneObject, Directory};

/// Entries kept per call history list. UNCONFIRMED: Cisco phones keep "up to 150" per list
/// (phone user guides); the oldest goes first.
pub const MAX_HISTORY: usize = 150;

/// One call in a history list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    pub number: String,
    pub name: Option<String>,
    /// The phone's line the call was on.
    pub line: String,
    pub at_unix_ms: u64,
}

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryList {
    Missed,
    Received,
    Placed,
}

impl HistoryList {
    pub fn title(self) -> &'static str {
        match self {
            HistoryList::Missed => "Missed Calls",
            HistoryList::Received => "Received Calls",
            HistoryList::Placed => "Placed Calls",
        }
    }
}

/// Missed, Received and Placed Calls, newest first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallHistory {
    pub missed: VecDeque<HistoryEntry>,
    pub received: VecDeque<HistoryEntry>,
    pub placed: VecDeque<HistoryEntry>,
}

impl CallHistory {
    fn list_mut(&mut self, l: HistoryList) -> &mut VecDeque<HistoryEntry> {
        match l {
            HistoryList::Missed => &mut self.missed,
            HistoryList::Received => &mut self.received,
            HistoryList::Placed => &mut self.placed,
        }
    }

    pub fn list(&self, l: HistoryList) -> &VecDeque<HistoryEntry> {
        match l {
            HistoryList::Missed => &self.missed,
            HistoryList::Received => &self.received,
            HistoryList::Placed => &self.placed,
        }
    }

    pub fn add(&mut self, l: HistoryList, e: HistoryEntry) {
        let list = self.list_mut(l);
        list.push_front(e);
        list.truncate(MAX_HISTORY);
    }

    /// What the phone shows for a list: a CiscoIPPhoneDirectory of its newest 32 entries (the
    /// most one object carries), the name where the call had one.
    pub fn directory(&self, l: HistoryList) -> CiscoIPPhoneObject {
        let mut d = Directory::new(l.title());
        for e in self.list(l).iter().take(32) {
            let name = e.name.clone().unwrap_or_else(|| e.number.clone());
            d = d.entry(&cut(&name, 32), &cut(&e.number, 32));
        }
        if d.entries.is_empty() {
            d.base.prompt = Some("No calls".into());
        }
        CiscoIPPhoneObject::Directory(d)
    }
}

fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The phone's built-in applications a service URL can name (spec: `Application:Cisco/
/// MissedCalls`, `/ReceivedCalls`, `/PlacedCalls`, `/Voicemail`, `/PersonalDirectory`,
/// `/CorporateDirectory`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltIn {
    History(HistoryList),
    CorporateDirectory,
    PersonalDirectory,
    Voicemail,
}

/// The built-in application `url` names, if it is an `Application:Cisco/...` URL (any case).
pub fn built_in(url: &str) -> Option<Result<BuiltIn, String>> {
    let prefix = "application:cisco/";
    let head = url.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let name = &url[prefix.len()..];
    Some(match name.to_ascii_lowercase().as_str() {
        "missedcalls" => Ok(BuiltIn::History(HistoryList::Missed)),
        "receivedcalls" => Ok(BuiltIn::History(HistoryList::Received)),
        "placedcalls" => Ok(BuiltIn::History(HistoryList::Placed)),
        "corporatedirectory" => Ok(BuiltIn::CorporateDirectory),
        "personaldirectory" => Ok(BuiltIn::PersonalDirectory),
        "voicemail" => Ok(BuiltIn::Voicemail),
        _ => Err(format!("no built-in application {name:?}")),
    })
}

/// `scheme://host[:port]` of an absolute URL.
pub fn origin(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find('/').unwrap_or(rest.len());
    url.get(..scheme.len() + 3 + end)
}

/// A MIDlet the phone has installed, or tried to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MidletState {
    /// The service's name in the configuration file.
    pub service: String,
    /// Where the JAD is (the service's URL).
    pub jad_url: String,
    /// `installed` or `failed` (retried at the next configuration check).
    pub status: &'static str,
    pub name: Option<String>,
    pub version: Option<String>,
    pub vendor: Option<String>,
    pub jar_url: Option<String>,
    pub jar_bytes: u64,
    pub error: Option<String>,
    /// Installs, upgrades or downgrades done (not counting failures).
    pub installs: u32,
    pub at_unix_ms: u64,
}

/// The attributes of a JAD the installer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jad {
    pub name: String,
    pub version: String,
    pub vendor: String,
    pub jar_url: String,
    pub jar_size: u64,
}

/// Reads a JAD (`Name: value` lines, MIDP 2.0); the attributes a phone needs must be there.
pub fn parse_jad(text: &str) -> Result<Jad, String> {
    let get = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let need = |key: &str| get(key).ok_or_else(|| format!("the JAD has no {key}"));
    Ok(Jad {
        name: need("MIDlet-Name")?,
        version: need("MIDlet-Version")?,
        vendor: need("MIDlet-Vendor")?,
        jar_url: need("MIDlet-Jar-URL")?,
        jar_size: need("MIDlet-Jar-Size")?
            .parse()
            .map_err(|_| "MIDlet-Jar-Size is not a number".to_string())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_urls() {
        assert_eq!(
            built_in("Application:Cisco/MissedCalls"),
            Some(Ok(BuiltIn::History(HistoryList::Missed)))
        );
        assert_eq!(
            built_in("application:cisco/CorporateDirectory"),
            Some(Ok(BuiltIn::CorporateDirectory))
        );
        assert!(matches!(built_in("Application:Cisco/Nope"), Some(Err(_))));
        assert_eq!(built_in("http://x/y"), None);
        assert_eq!(origin("http://h:80/a/b?c"), Some("http://h:80"));
    }

    #[test]
    fn history_is_newest_first_and_bounded() {
        let mut h = CallHistory::default();
        for i in 0..(MAX_HISTORY + 5) {
            h.add(
                HistoryList::Placed,
                HistoryEntry {
                    number: i.to_string(),
                    name: None,
                    line: "10001".into(),
                    at_unix_ms: i as u64,
                },
            );
        }
        assert_eq!(h.placed.len(), MAX_HISTORY);
        assert_eq!(h.placed[0].number, (MAX_HISTORY + 4).to_string());
        let CiscoIPPhoneObject::Directory(d) = h.directory(HistoryList::Placed) else {
            panic!()
        };
        assert_eq!(d.entries.len(), 32);
        assert!(crate::wire::xml::validate(&h.directory(HistoryList::Missed), None).is_empty());
    }

    #[test]
    fn jads() {
        let j = parse_jad("MIDlet-1: W, , a.B\nMIDlet-Jar-Size: 12\nMIDlet-Jar-URL: http://h/app.jar?x=1\nMIDlet-Name: W\nMIDlet-Vendor: V\nMIDlet-Version: 1.2\n").unwrap();
        assert_eq!(j.jar_url, "http://h/app.jar?x=1");
        assert_eq!(j.jar_size, 12);
        assert!(parse_jad("MIDlet-Name: W\n").is_err());
    }
}
