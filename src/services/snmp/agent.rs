//! One SNMP request in, at most one response out, without I/O: the message is decoded (BER,
//! with rasn's SNMP types), its community checked, its PDU answered from a [`View`] (RFC 3416
//! section 4.2: Get, GetNext, GetBulk; Set refused), and the response encoded within the
//! maximum message size.
//!
//! SNMPv2c here; SNMPv3 (USM) in [`super::usm`], which answers its PDUs with [`process`] and
//! [`fit`]. A v2c message with an unknown community, or not a request, is dropped without an
//! answer (RFC 3584's handling of a bad community: count and discard), so a stranger gets
//! nothing back; SNMPv1 is not served.

use rasn::types::{Integer, ObjectIdentifier, OctetString};
use rasn_smi::v2::{ApplicationSyntax, ObjectSyntax, SimpleSyntax};
use rasn_snmp::v2::{BulkPdu, Pdu, Pdus, Response, VarBind, VarBindValue};
use rasn_snmp::v2c::Message;

use super::mib::{Value, View};
use super::model::MAX_BULK_BINDINGS;

/// Why a message got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Not a BER-encoded SNMPv2c message.
    Malformed,
    /// SNMPv1 (0) or SNMPv3 (3).
    Version,
    /// A community the definition does not list.
    Community,
    /// A PDU an agent does not answer (Response, Trap, Report, InformRequest).
    NotARequest,
}

impl Dropped {
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::Malformed => "malformed",
            Dropped::Version => "version not served (SNMPv2c and SNMPv3 only)",
            Dropped::Community => "unknown community",
            Dropped::NotARequest => "not a request",
        }
    }
}

/// The request kinds, for counters and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Get,
    GetNext,
    GetBulk,
    Set,
    /// An SNMPv3 Report of a USM error (RFC 3414 3.2).
    Report(super::usm::UsmError),
}

/// What the agent answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub kind: Kind,
    pub bytes: Vec<u8>,
    /// Bindings in the response.
    pub bindings: usize,
}

/// Answers `request` from `view` when it carries one of `communities`.
pub fn answer(
    request: &[u8],
    communities: &[&str],
    view: &View,
    max_size: usize,
) -> Result<Answer, Dropped> {
    // The version comes first: an SNMPv1 or v3 message need not decode as v2c's PDUs.
    let msg: Message<Pdus> = match rasn::ber::decode(request) {
        Ok(m) => m,
        Err(_) => {
            return match rasn::ber::decode::<Message<rasn::types::Any>>(request) {
                Ok(m) if m.version != Integer::from(1) => Err(Dropped::Version),
                _ => Err(Dropped::Malformed),
            }
        }
    };
    if msg.version != Integer::from(1) {
        return Err(Dropped::Version);
    }
    // Every listed community is compared, so the time taken does not say how much matched.
    let given = msg.community.as_ref();
    let known = communities
        .iter()
        .fold(false, |ok, c| ok | constant_time_eq(c.as_bytes(), given));
    if !known {
        return Err(Dropped::Community);
    }
    let (kind, pdu) = process(msg.data, view)?;
    let community = msg.community.clone();
    fit(kind, pdu, max_size, |pdu: Pdu| {
        let m = Message {
            version: Integer::from(1),
            community: community.clone(),
            data: Pdus::Response(Response(pdu)),
        };
        // Encoding values built here cannot fail; an empty answer is dropped by the caller.
        rasn::ber::encode(&m).unwrap_or_default()
    })
}

/// The response PDU to a request PDU (SNMPv2c's or SNMPv3's scoped PDU).
pub(super) fn process(data: Pdus, view: &View) -> Result<(Kind, Pdu), Dropped> {
    Ok(match data {
        Pdus::GetRequest(r) => (Kind::Get, get(&r.0, view)),
        Pdus::GetNextRequest(r) => (Kind::GetNext, get_next(&r.0, view)),
        Pdus::GetBulkRequest(r) => (Kind::GetBulk, get_bulk(&r.0, view)),
        Pdus::SetRequest(r) => (Kind::Set, refuse_set(&r.0)),
        _ => return Err(Dropped::NotARequest),
    })
}

/// The response PDU encoded by `encode` within `max_size`: a GetBulk answer loses bindings
/// until it fits, any other gets `tooBig`.
pub(super) fn fit(
    kind: Kind,
    pdu: Pdu,
    max_size: usize,
    encode: impl Fn(Pdu) -> Vec<u8>,
) -> Result<Answer, Dropped> {
    let mut pdu = pdu;
    let mut bytes = encode(pdu.clone());
    if bytes.len() > max_size {
        if kind == Kind::GetBulk {
            // RFC 3416 4.2.3: a GetBulk answer carries as many bindings as fit.
            while bytes.len() > max_size && !pdu.variable_bindings.is_empty() {
                let over = bytes.len() - max_size;
                let per = bytes.len() / pdu.variable_bindings.len().max(1);
                let cut = (over / per.max(1)).max(1);
                let keep = pdu.variable_bindings.len().saturating_sub(cut);
                pdu.variable_bindings.truncate(keep);
                bytes = encode(pdu.clone());
            }
        } else {
            // RFC 3416 4.2.1: tooBig, error-index 0, no bindings.
            pdu = Pdu {
                request_id: pdu.request_id,
                error_status: Pdu::ERROR_STATUS_TOO_BIG,
                error_index: 0,
                variable_bindings: Vec::new(),
            };
            bytes = encode(pdu.clone());
        }
    }
    if bytes.is_empty() || bytes.len() > max_size {
        return Err(Dropped::Malformed);
    }
    Ok(Answer {
        kind,
        bindings: pdu.variable_bindings.len(),
        bytes,
    })
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn syntax(v: &Value) -> VarBindValue {
    use rasn_smi::v1::{Gauge, TimeTicks};
    let s = match v {
        Value::Integer(i) => ObjectSyntax::Simple(SimpleSyntax::Integer(Integer::from(*i))),
        Value::Octets(b) => {
            ObjectSyntax::Simple(SimpleSyntax::String(OctetString::from(b.clone())))
        }
        Value::ObjectId(o) => match ObjectIdentifier::new(o.clone()) {
            Some(o) => ObjectSyntax::Simple(SimpleSyntax::ObjectId(o)),
            None => return VarBindValue::NoSuchObject,
        },
        Value::Unsigned(u) => ObjectSyntax::ApplicationWide(ApplicationSyntax::Unsigned(Gauge(*u))),
        Value::Ticks(t) => ObjectSyntax::ApplicationWide(ApplicationSyntax::Ticks(TimeTicks(*t))),
    };
    VarBindValue::Value(s)
}

fn response(request_id: i32, bindings: Vec<VarBind>) -> Pdu {
    Pdu {
        request_id,
        error_status: Pdu::ERROR_STATUS_NO_ERROR,
        error_index: 0,
        variable_bindings: bindings,
    }
}

fn get(r: &Pdu, view: &View) -> Pdu {
    let bindings = r
        .variable_bindings
        .iter()
        .map(|b| {
            let value = match view.get(&b.name) {
                Some(v) => syntax(v),
                None if view.has_object(&b.name) => VarBindValue::NoSuchInstance,
                None => VarBindValue::NoSuchObject,
            };
            VarBind {
                name: b.name.clone(),
                value,
            }
        })
        .collect();
    response(r.request_id, bindings)
}

/// The binding after `name`, or `endOfMibView` at `name` itself.
fn next_binding(name: &ObjectIdentifier, view: &View) -> VarBind {
    match view.next(name) {
        Some((o, v)) => VarBind {
            name: ObjectIdentifier::new(o.clone()).unwrap_or_else(|| name.clone()),
            value: syntax(v),
        },
        None => VarBind {
            name: name.clone(),
            value: VarBindValue::EndOfMibView,
        },
    }
}

fn get_next(r: &Pdu, view: &View) -> Pdu {
    let bindings = r
        .variable_bindings
        .iter()
        .map(|b| next_binding(&b.name, view))
        .collect();
    response(r.request_id, bindings)
}

/// RFC 3416 4.2.3: the first `non_repeaters` bindings once, then the rest `max_repetitions`
/// times, each repetition continuing where the last left off; bounded by
/// [`MAX_BULK_BINDINGS`] whatever the request asks.
fn get_bulk(r: &BulkPdu, view: &View) -> Pdu {
    let n = r.variable_bindings.len();
    let non_rep = (r.non_repeaters as usize).min(n);
    let mut out = Vec::new();
    for b in &r.variable_bindings[..non_rep] {
        if out.len() >= MAX_BULK_BINDINGS {
            break;
        }
        out.push(next_binding(&b.name, view));
    }
    let mut cursor: Vec<ObjectIdentifier> = r.variable_bindings[non_rep..]
        .iter()
        .map(|b| b.name.clone())
        .collect();
    if !cursor.is_empty() {
        'reps: for _ in 0..r.max_repetitions {
            let mut all_ended = true;
            for c in cursor.iter_mut() {
                if out.len() >= MAX_BULK_BINDINGS {
                    break 'reps;
                }
                let b = next_binding(c, view);
                if b.value != VarBindValue::EndOfMibView {
                    all_ended = false;
                }
                *c = b.name.clone();
                out.push(b);
            }
            // Every column ran out: more repetitions would only repeat endOfMibView.
            if all_ended {
                break;
            }
        }
    }
    response(r.request_id, out)
}

/// Nothing is writable: notWritable (RFC 3416 4.2.5) naming the first binding.
fn refuse_set(r: &Pdu) -> Pdu {
    Pdu {
        request_id: r.request_id,
        error_status: Pdu::ERROR_STATUS_NOT_WRITABLE,
        error_index: if r.variable_bindings.is_empty() { 0 } else { 1 },
        variable_bindings: r.variable_bindings.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::mib::{DeviceStatus, NodeFacts, NodeRow, NodeStatus, PhoneRow};
    use super::*;
    use rasn_snmp::v2::{GetBulkRequest, GetNextRequest, GetRequest, SetRequest};

    fn view(phones: u32) -> View {
        View::build(&NodeFacts {
            sys_descr: "ucm test".into(),
            sys_name: "ucm-pub".into(),
            uptime_ticks: 42,
            cluster_id: "demo".into(),
            nodes: vec![NodeRow {
                name: "ucm-pub".into(),
                description: String::new(),
                version: "1".into(),
                status: NodeStatus::Up,
                ipv4: Some([127, 0, 0, 1]),
            }],
            phones: (1..=phones)
                .map(|i| PhoneRow {
                    index: i,
                    name: format!("SEP{i:012X}"),
                    description: "a phone".into(),
                    user: String::new(),
                    status: DeviceStatus::Registered,
                    ipv4: [127, 0, 0, 10],
                    device_pool_index: 1,
                    lines: vec![format!("{}", 10000 + i)],
                })
                .collect(),
        })
    }

    fn oid(v: &[u32]) -> ObjectIdentifier {
        ObjectIdentifier::new(v.to_vec()).unwrap()
    }

    fn pdu(names: &[&[u32]]) -> Pdu {
        Pdu {
            request_id: 7,
            error_status: 0,
            error_index: 0,
            variable_bindings: names
                .iter()
                .map(|n| VarBind {
                    name: oid(n),
                    value: VarBindValue::Unspecified,
                })
                .collect(),
        }
    }

    fn msg(version: i32, community: &str, data: Pdus) -> Vec<u8> {
        rasn::ber::encode(&Message {
            version: Integer::from(version),
            community: OctetString::from(community.as_bytes().to_vec()),
            data,
        })
        .unwrap()
    }

    fn reply(a: &Answer) -> Pdu {
        let m: Message<Pdus> = rasn::ber::decode(&a.bytes).unwrap();
        assert_eq!(m.version, Integer::from(1));
        match m.data {
            Pdus::Response(r) => r.0,
            other => panic!("{other:?}"),
        }
    }

    const SYS_NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 1, 5, 0];

    #[test]
    fn get_answers_the_value_and_no_such_for_the_rest() {
        let v = view(2);
        let req = msg(
            1,
            "public",
            Pdus::GetRequest(GetRequest(pdu(&[
                SYS_NAME,
                &[1, 3, 6, 1, 4, 1, 9, 9, 156, 1, 2, 1, 1, 20, 99],
                &[1, 3, 6, 1, 9, 9],
            ]))),
        );
        let a = answer(&req, &["public"], &v, 1472).unwrap();
        let p = reply(&a);
        assert_eq!((p.request_id, p.error_status), (7, 0));
        assert_eq!(
            p.variable_bindings[0].value,
            VarBindValue::Value(ObjectSyntax::Simple(SimpleSyntax::String(
                OctetString::from(b"ucm-pub".to_vec())
            )))
        );
        assert_eq!(p.variable_bindings[1].value, VarBindValue::NoSuchInstance);
        assert_eq!(p.variable_bindings[2].value, VarBindValue::NoSuchObject);
    }

    #[test]
    fn strangers_and_other_versions_get_nothing() {
        let v = view(1);
        let get = || Pdus::GetRequest(GetRequest(pdu(&[SYS_NAME])));
        assert_eq!(
            answer(&msg(1, "private", get()), &["public"], &v, 1472),
            Err(Dropped::Community)
        );
        assert_eq!(
            answer(&msg(1, "public", get()), &[], &v, 1472),
            Err(Dropped::Community)
        );
        assert_eq!(
            answer(&msg(0, "public", get()), &["public"], &v, 1472),
            Err(Dropped::Version)
        );
        assert_eq!(
            answer(&msg(3, "public", get()), &["public"], &v, 1472),
            Err(Dropped::Version)
        );
        assert_eq!(
            answer(b"\x30\x03\x02\x01", &["public"], &v, 1472),
            Err(Dropped::Malformed)
        );
        let resp = Pdus::Response(Response(pdu(&[SYS_NAME])));
        assert_eq!(
            answer(&msg(1, "public", resp), &["public"], &v, 1472),
            Err(Dropped::NotARequest)
        );
    }

    #[test]
    fn getnext_from_the_last_object_is_end_of_mib_view() {
        let v = view(1);
        let req = msg(
            1,
            "public",
            Pdus::GetNextRequest(GetNextRequest(pdu(&[&[1, 3, 6, 1, 4, 1, 9, 9, 157]]))),
        );
        let p = reply(&answer(&req, &["public"], &v, 1472).unwrap());
        assert_eq!(p.variable_bindings[0].value, VarBindValue::EndOfMibView);
    }

    #[test]
    fn get_bulk_is_bounded_by_the_message_size_and_the_binding_cap() {
        let v = view(2000);
        let mut b = BulkPdu {
            request_id: 9,
            non_repeaters: 0,
            max_repetitions: u32::MAX,
            variable_bindings: pdu(&[&[1, 3, 6, 1, 4, 1, 9, 9, 156]]).variable_bindings,
        };
        let req = msg(1, "public", Pdus::GetBulkRequest(GetBulkRequest(b.clone())));
        let a = answer(&req, &["public"], &v, 1472).unwrap();
        assert!(a.bytes.len() <= 1472 && a.bindings > 10, "{}", a.bindings);
        let big = answer(&req, &["public"], &v, 65_507).unwrap();
        assert_eq!(big.bindings, MAX_BULK_BINDINGS);
        // Two columns side by side, repetitions interleaved (RFC 3416 4.2.3).
        b.max_repetitions = 3;
        b.variable_bindings = pdu(&[
            &[1, 3, 6, 1, 4, 1, 9, 9, 156, 1, 2, 1, 1, 20],
            &[1, 3, 6, 1, 4, 1, 9, 9, 156, 1, 2, 1, 1, 21],
        ])
        .variable_bindings;
        let req = msg(1, "public", Pdus::GetBulkRequest(GetBulkRequest(b)));
        let p = reply(&answer(&req, &["public"], &v, 65_507).unwrap());
        let names: Vec<Vec<u32>> = p
            .variable_bindings
            .iter()
            .map(|b| b.name.to_vec())
            .collect();
        assert_eq!(names.len(), 6);
        assert_eq!(names[0][13..], [20, 1]);
        assert_eq!(names[1][13..], [21, 1]);
        assert_eq!(names[2][13..], [20, 2]);
    }

    #[test]
    fn a_get_too_big_for_the_message_size_is_too_big() {
        let v = view(50);
        let names: Vec<Vec<u32>> = (1..=50)
            .map(|i| vec![1, 3, 6, 1, 4, 1, 9, 9, 156, 1, 2, 1, 1, 4, i])
            .collect();
        let refs: Vec<&[u32]> = names.iter().map(|n| n.as_slice()).collect();
        let req = msg(1, "public", Pdus::GetRequest(GetRequest(pdu(&refs))));
        let p = reply(&answer(&req, &["public"], &v, 484).unwrap());
        assert_eq!(
            (p.error_status, p.error_index, p.variable_bindings.len()),
            (Pdu::ERROR_STATUS_TOO_BIG, 0, 0)
        );
    }

    #[test]
    fn set_is_refused_not_writable() {
        let v = view(1);
        let req = msg(1, "public", Pdus::SetRequest(SetRequest(pdu(&[SYS_NAME]))));
        let a = answer(&req, &["public"], &v, 1472).unwrap();
        let p = reply(&a);
        assert_eq!(
            (a.kind, p.error_status, p.error_index),
            (Kind::Set, Pdu::ERROR_STATUS_NOT_WRITABLE, 1)
        );
        assert_eq!(v.get(SYS_NAME), Some(&Value::Octets(b"ucm-pub".to_vec())));
    }
}
