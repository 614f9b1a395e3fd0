//! The Corporate Directory service: search the cluster's end users by first name, last name
//! and number from a phone (a CiscoIPPhoneDirectory; the phone finds it at the directoryURL of its configuration file).
//!
//! - `GET /ccmcip/xmldirectory.jsp` (the configuration file's `directoryURL`) and
//!   `GET /ccmcip/xmldirectoryinput.jsp` (the demo's Corporate Directory service) answer a
//!   `CiscoIPPhoneInput` with three fields, First name `f`, Last name `l` and Number `n`,
//!   submitting to `/ccmcip/xmldirectorylist.jsp`.
//! - `GET /ccmcip/xmldirectorylist.jsp?f=..&l=..&n=..[&start=N]` answers a
//!   `CiscoIPPhoneDirectory` page of at most 32 entries, from entry `start` (0-based). Names
//!   match by case-insensitive prefix of the first and last name; the number by prefix of
//!   the user's telephone number or primary extension. Users with neither number are left
//!   out (nothing to dial). Entries are sorted by last name, first name, user ID. The page
//!   declares Dial, EditDial and Exit softkeys and, when more entries follow, Next, whose URL
//!   carries the same search and the next page's `start`.
//!
//! Every object is built with [`crate::wire::xml`] and meets its limits (Name and Telephone cut to
//! 32 characters).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;

use crate::config::model::EndUser;
use crate::node::NodeState;
use crate::services::phone_services::{came_over_https, xml_reply};
use crate::wire::codec::with_query;
use crate::wire::xml::{CiscoIPPhoneObject, Directory, Input, InputItem, SoftKeyItem};

/// Entries per page: the most a CiscoIPPhoneDirectory carries.
pub const PAGE_SIZE: usize = 32;
/// Directory Name and Telephone are at most this many characters.
pub const MAX_FIELD_CHARS: usize = 32;

/// A search: empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search {
    pub first: String,
    pub last: String,
    pub number: String,
}

impl Search {
    fn from_query(q: &HashMap<String, String>) -> Search {
        let get = |k: &str| q.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
        Search {
            first: get("f"),
            last: get("l"),
            number: get("n"),
        }
    }
}

/// One user found: display name and the number to dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub name: String,
    pub number: String,
}

fn starts_with_ci(hay: &str, needle: &str) -> bool {
    needle.is_empty() || hay.to_lowercase().starts_with(&needle.to_lowercase())
}

/// The number a directory entry dials for `u`: the telephone number, else the primary
/// extension.
pub fn number_of(u: &EndUser) -> Option<String> {
    u.telephone_number
        .clone()
        .filter(|t| !t.trim().is_empty())
        .or_else(|| u.primary_extension.as_ref().map(|p| p.dn.clone()))
}

/// Every user matching `s`, sorted.
pub fn search(users: &[EndUser], s: &Search) -> Vec<Found> {
    let mut hits: Vec<(&EndUser, String)> = users
        .iter()
        .filter_map(|u| number_of(u).map(|n| (u, n)))
        .filter(|(u, n)| {
            starts_with_ci(u.first_name.as_deref().unwrap_or(""), &s.first)
                && starts_with_ci(&u.last_name, &s.last)
                && (s.number.is_empty()
                    || n.starts_with(&s.number)
                    || u.primary_extension
                        .as_ref()
                        .is_some_and(|p| p.dn.starts_with(&s.number)))
        })
        .collect();
    hits.sort_by(|(a, _), (b, _)| {
        (
            a.last_name.to_lowercase(),
            a.first_name.as_deref().map(str::to_lowercase),
            &a.userid,
        )
            .cmp(&(
                b.last_name.to_lowercase(),
                b.first_name.as_deref().map(str::to_lowercase),
                &b.userid,
            ))
    });
    hits.into_iter()
        .map(|(u, n)| Found {
            name: u.display_name(),
            number: n,
        })
        .collect()
}

fn cut(s: &str) -> String {
    s.chars().take(MAX_FIELD_CHARS).collect()
}

/// The search form, submitting to `list_url`.
pub fn input_page(list_url: &str) -> CiscoIPPhoneObject {
    let mut input = Input::new("Corporate Directory", list_url)
        .item(InputItem::new("First name", "f", "A"))
        .item(InputItem::new("Last name", "l", "A"))
        .item(InputItem::new("Number", "n", "T"));
    input.base.prompt = Some("Enter search criteria".into());
    CiscoIPPhoneObject::Input(input)
}

/// One page of results from `start`; `list_url` is the results endpoint (for Next).
pub fn results_page(
    found: &[Found],
    s: &Search,
    start: usize,
    list_url: &str,
) -> CiscoIPPhoneObject {
    let total = found.len();
    let start = start.min(total);
    let end = (start + PAGE_SIZE).min(total);
    let mut dir = Directory::new("Corporate Directory");
    for f in found.get(start..end).unwrap_or(&[]) {
        dir = dir.entry(&cut(&f.name), &cut(&f.number));
    }
    dir.base.prompt = Some(if total == 0 {
        "No records found".into()
    } else {
        format!("Records {} to {end} of {total}", start + 1)
    });
    let keys = &mut dir.base.soft_keys;
    keys.push(SoftKeyItem::new("Dial", "SoftKey:Dial", 1));
    keys.push(SoftKeyItem::new("EditDial", "SoftKey:EditDial", 2));
    keys.push(SoftKeyItem::new("Exit", "SoftKey:Exit", 3));
    if end < total {
        let next = with_query(
            list_url,
            &[
                ("f", &s.first),
                ("l", &s.last),
                ("n", &s.number),
                ("start", &end.to_string()),
            ],
        );
        keys.push(SoftKeyItem::new("Next", &next, 4));
    }
    CiscoIPPhoneObject::Directory(dir)
}

fn base(state: &NodeState, headers: &HeaderMap) -> String {
    if came_over_https(state, headers) {
        state.https_base.clone()
    } else {
        state.http_base.clone()
    }
}

/// `GET /ccmcip/xmldirectory.jsp` and `/ccmcip/xmldirectoryinput.jsp`: the search form.
pub async fn input_handler(State(state): State<Arc<NodeState>>, headers: HeaderMap) -> Response {
    let list = format!("{}/ccmcip/xmldirectorylist.jsp", base(&state, &headers));
    xml_reply(&input_page(&list))
}

/// `GET /ccmcip/xmldirectorylist.jsp`: a page of results.
pub async fn list_handler(
    State(state): State<Arc<NodeState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let s = Search::from_query(&q);
    // A bad or missing start is the first page.
    let start = q
        .get("start")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let cluster = state.cluster();
    let found = search(&cluster.end_users, &s);
    tracing::debug!(first = %s.first, last = %s.last, number = %s.number, start, hits = found.len(), "corporate directory search");
    let list = format!("{}/ccmcip/xmldirectorylist.jsp", base(&state, &headers));
    xml_reply(&results_page(&found, &s, start, &list))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(n: usize) -> Vec<EndUser> {
        let mut def = crate::services::demo().expect("demo");
        let template = def.end_users[0].clone();
        def.end_users.clear();
        for i in 0..n {
            let mut u = template.clone();
            u.userid = format!("u{i:03}");
            u.first_name = Some(format!("First{i:03}"));
            u.last_name = format!("Last{i:03}");
            u.telephone_number = Some(format!("4{i:04}"));
            def.end_users.push(u);
        }
        def.end_users
    }

    #[test]
    fn pages_of_32_with_next_carrying_the_search() {
        let us = users(70);
        let s = Search {
            last: "last".into(),
            ..Search::default()
        };
        let found = search(&us, &s);
        assert_eq!(found.len(), 70);
        let p1 = results_page(&found, &s, 0, "http://n/ccmcip/xmldirectorylist.jsp");
        let CiscoIPPhoneObject::Directory(d) = &p1 else {
            panic!()
        };
        assert_eq!(d.entries.len(), 32);
        assert_eq!(d.base.prompt.as_deref(), Some("Records 1 to 32 of 70"));
        let next = d
            .base
            .soft_keys
            .iter()
            .find(|k| k.name.as_deref() == Some("Next"));
        let url = next.and_then(|k| k.url.clone()).unwrap();
        assert!(url.contains("l=last") && url.contains("start=32"), "{url}");
        assert!(crate::wire::xml::validate(&p1, None).is_empty());
        let p3 = results_page(&found, &s, 64, "http://n/x");
        let CiscoIPPhoneObject::Directory(d) = &p3 else {
            panic!()
        };
        assert_eq!(d.entries.len(), 6);
        assert!(d
            .base
            .soft_keys
            .iter()
            .all(|k| k.name.as_deref() != Some("Next")));
        // Past the end: an empty last page, no panic.
        let p = results_page(&found, &s, 1000, "http://n/x");
        assert!(crate::wire::xml::validate(&p, None).is_empty());
    }

    #[test]
    fn search_by_each_field() {
        let def = crate::services::demo().expect("demo");
        let by = |f: &str, l: &str, n: &str| {
            search(
                &def.end_users,
                &Search {
                    first: f.into(),
                    last: l.into(),
                    number: n.into(),
                },
            )
            .into_iter()
            .map(|f| f.name)
            .collect::<Vec<_>>()
        };
        assert_eq!(by("", "smi", ""), ["John Smith", "Steve Smith"]);
        assert_eq!(by("ST", "", ""), ["Steve Smith"]);
        assert_eq!(by("", "", "239"), ["Sally Adams"]);
        assert!(by("zz", "", "").is_empty());
        let input = input_page("http://n/ccmcip/xmldirectorylist.jsp");
        assert!(crate::wire::xml::validate(&input, None).is_empty());
    }
}
