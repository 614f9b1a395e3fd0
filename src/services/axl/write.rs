//! AXL's writes as edits of the cluster definition, without I/O: `addPhone`, `updatePhone`,
//! `removePhone`, `addLine`, `addUser`, `updateUser`. Each takes the parsed operation element and
//! the definition as the database holds it, changes the definition, and checks the result with
//! the same checks `ucm config check` runs; the caller commits it (`Store::edit_definition`),
//! or writes nothing when this refuses. The answer is the object's UUID, as Cisco returns it.
//!
//! Field names follow Cisco's AXL schema (XPhone, XLine, XUser). A field this cluster does not
//! keep is refused by name rather than dropped, so a script learns what did not happen, unless
//! it is empty or one of the Cisco settings listed as accepted and ignored (`*_IGNORED`).

use crate::config::model::{
    Device, DirectoryNumber, DnRef, EndUser, ForwardSetting, LineAppearance,
};
use crate::config::ClusterDefinition;
use crate::wire::soap::Node;

use super::ops::{uuid_of, AxlFault};

/// The write operations.
pub const WRITES: &[&str] = &[
    "addPhone",
    "updatePhone",
    "removePhone",
    "addLine",
    "addUser",
    "updateUser",
];

/// Whether `op` is one of [`WRITES`].
pub fn is_write(op: &str) -> bool {
    WRITES.contains(&op)
}

/// Longest name, description or other text field accepted (Cisco's longest is 128 or 255; the
/// definition keeps any, so this bounds what a client can make the cluster carry).
const MAX_FIELD: usize = 255;
/// Lines one phone may carry through AXL (the largest Cisco phone with expansion modules).
const MAX_LINES: usize = 200;
/// Devices one user may control through AXL.
const MAX_ASSOCIATED: usize = 1000;

/// Applies one write to `def`; the UUID of the object written.
pub fn apply(def: &mut ClusterDefinition, op: &Node) -> Result<String, AxlFault> {
    let uuid = match op.name.as_str() {
        "addPhone" => add_phone(def, op)?,
        "updatePhone" => update_phone(def, op)?,
        "removePhone" => remove_phone(def, op)?,
        "addLine" => add_line(def, op)?,
        "addUser" => add_user(def, op)?,
        "updateUser" => update_user(def, op)?,
        other => {
            return Err(AxlFault::client(
                other,
                format!("{other} is not a write operation"),
            ))
        }
    };
    if matches!(op.name.as_str(), "updatePhone" | "removePhone") {
        keep_lines_left_alone(def);
    }
    check(def, &op.name)?;
    Ok(uuid)
}

/// A line no phone, device profile or route point carries any longer stays, unassigned, as
/// Cisco keeps it when its phone goes.
fn keep_lines_left_alone(def: &mut ClusterDefinition) {
    use std::collections::HashSet;
    let mut used: HashSet<(&str, Option<&str>)> = HashSet::new();
    let appearances = def
        .devices
        .iter()
        .flat_map(|d| &d.lines)
        .chain(def.device_profiles.iter().flat_map(|p| &p.lines))
        .chain(def.route_points.iter().flat_map(|r| &r.lines));
    for l in appearances {
        used.insert((l.dn.as_str(), l.partition.as_deref()));
    }
    let alone: Vec<usize> = def
        .directory_numbers
        .iter()
        .enumerate()
        .filter(|(_, d)| !used.contains(&(d.pattern.as_str(), d.partition.as_deref())))
        .map(|(i, _)| i)
        .collect();
    for i in alone {
        def.directory_numbers[i].unassigned = true;
    }
}

/// The definition's own checks over the edited definition (a reload of its export, the path
/// `ucm db export | ucm config check` takes): an edit may not leave the cluster invalid.
fn check(def: &ClusterDefinition, request: &str) -> Result<(), AxlFault> {
    let yaml = crate::config::to_yaml(def)
        .map_err(|e| AxlFault::server(request, format!("the edited definition: {e}")))?;
    match crate::services::parse_str(&yaml, "axl") {
        Ok(_) => Ok(()),
        Err(crate::config::LoadError::Invalid(errs)) => {
            let msg = errs
                .iter()
                .take(5)
                .map(|e| {
                    if e.field.is_empty() {
                        e.message.clone()
                    } else {
                        format!("{}: {}", e.field, e.message)
                    }
                })
                .collect::<Vec<_>>()
                .join("; ");
            Err(AxlFault::client(
                request,
                format!("the change would leave the cluster invalid: {msg}"),
            ))
        }
        Err(e) => Err(AxlFault::server(request, e.to_string())),
    }
}

/// A text field: `Ok(None)` when absent, `Ok(Some(""))` when present and empty (clears it).
fn text(parent: &Node, tag: &str, request: &str) -> Result<Option<String>, AxlFault> {
    let Some(e) = parent.child(tag) else {
        return Ok(None);
    };
    let v = e.value().trim().to_string();
    if v.chars().count() > MAX_FIELD {
        return Err(AxlFault::client(
            request,
            format!("{tag} is longer than {MAX_FIELD} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(AxlFault::client(
            request,
            format!("{tag} holds a control character"),
        ));
    }
    Ok(Some(v))
}

fn required(parent: &Node, tag: &str, request: &str) -> Result<String, AxlFault> {
    match text(parent, tag, request)? {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(AxlFault::client(request, format!("{tag} is required"))),
    }
}

/// An optional reference: absent → unchanged (`None`), empty → cleared (`Some(None)`).
fn reference(parent: &Node, tag: &str, request: &str) -> Result<Option<Option<String>>, AxlFault> {
    Ok(text(parent, tag, request)?.map(|v| (!v.is_empty()).then_some(v)))
}

fn boolean(parent: &Node, tag: &str, request: &str) -> Result<Option<bool>, AxlFault> {
    match text(parent, tag, request)?.as_deref() {
        None | Some("") => Ok(None),
        Some("true" | "t" | "1") => Ok(Some(true)),
        Some("false" | "f" | "0") => Ok(Some(false)),
        Some(v) => Err(AxlFault::client(
            request,
            format!("{tag} is {v:?}, not true or false"),
        )),
    }
}

/// Whether an element says nothing: no text and no children (what clients send for a field
/// they leave at its default).
fn is_empty(e: &Node) -> bool {
    e.value().trim().is_empty() && e.children.iter().all(is_empty)
}

/// The fields of an object other than `kept`: accepted when empty or one of `ignored` (Cisco
/// settings with no counterpart in this cluster, such as phone button templates, which clients
/// like the `ciscoaxl` package always send); any other is refused by name, so a script learns
/// what would not happen rather than having it dropped.
fn refuse_unkept(
    obj: &Node,
    kept: &[&str],
    ignored: &[&str],
    request: &str,
) -> Result<(), AxlFault> {
    for c in &obj.children {
        let name = c.name.as_str();
        if kept.contains(&name) || ignored.contains(&name) || is_empty(c) {
            continue;
        }
        return Err(AxlFault::client(
            request,
            format!(
                "{name} is not kept by this cluster (accepted: {}; accepted and ignored: {})",
                kept.join(", "),
                ignored.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Cisco phone settings with no counterpart here: accepted, without effect (README, AXL).
pub const PHONE_IGNORED: &[&str] = &[
    "commonDeviceConfigName",
    "commonPhoneConfigName",
    "softkeyTemplateName",
    "phoneTemplateName",
    "useTrustedRelayPoint",
    "builtInBridgeStatus",
    "certificateOperation",
    "packetCaptureMode",
    "deviceMobilityMode",
    "automatedAlternateRoutingCssName",
    "subscribeCallingSearchSpaceName",
    "enableActivationID",
    "allowMraMode",
    "vendorConfig",
    "networkLocation",
    "mediaResourceListName",
    "networkHoldMohAudioSourceId",
    "userHoldMohAudioSourceId",
    "aarNeighborhoodName",
    "mlppIndicationStatus",
    "preemption",
    "retryVideoCallAsAudio",
    "sipProfileName",
    "networkLocale",
    "singleButtonBarge",
    "joinAcrossLines",
    "callInfoPrivacyStatus",
];

/// Cisco line-appearance settings with no counterpart here.
pub const LINE_APPEARANCE_IGNORED: &[&str] = &[
    "displayAscii",
    "e164Mask",
    "ringSetting",
    "consecutiveRingSetting",
    "mwlPolicy",
    "recordingFlag",
    "audibleMwi",
    "missedCallLogging",
];

/// Cisco directory-number settings with no counterpart here.
pub const LINE_IGNORED: &[&str] = &[
    "voiceMailProfileName",
    "aarNeighborhoodName",
    "aarDestinationMask",
    "presenceGroupName",
    "autoAnswer",
];

/// Cisco end-user settings with no counterpart here.
pub const USER_IGNORED: &[&str] = &[
    "presenceGroupName",
    "displayName",
    "middleName",
    "department",
    "title",
    "subscribeCallingSearchSpaceName",
    "enableCti",
    "enableMobility",
    "enableMobileVoiceAccess",
    "imAndPresenceEnable",
    "mobileNumber",
    "homeNumber",
    "pagerNumber",
];

fn exists<T>(
    items: &[T],
    name: impl Fn(&T) -> &str,
    wanted: &str,
    request: &str,
    what: &str,
) -> Result<(), AxlFault> {
    if items.iter().any(|i| name(i) == wanted) {
        Ok(())
    } else {
        Err(AxlFault::not_found(request, &format!("{what} {wanted}")))
    }
}

/// The object a get/update/remove names (by `key` or `uuid`): its index in `names`.
fn which<'a>(
    op: &Node,
    key: &str,
    kind: &str,
    mut names: impl Iterator<Item = &'a str>,
    what: &str,
) -> Result<usize, AxlFault> {
    let by_key = op.child(key).map(|e| e.value()).filter(|v| !v.is_empty());
    let by_uuid = op
        .child("uuid")
        .map(|e| e.value())
        .filter(|v| !v.is_empty());
    let found = match (by_key, by_uuid) {
        (Some(n), _) => names.position(|m| m.eq_ignore_ascii_case(&n)),
        (None, Some(u)) => names.position(|m| uuid_of(kind, m).eq_ignore_ascii_case(&u)),
        (None, None) => {
            return Err(AxlFault::client(
                &op.name,
                format!("{} needs {key} or uuid", op.name),
            ))
        }
    };
    found.ok_or_else(|| AxlFault::not_found(&op.name, what))
}

const PHONE_FIELDS: &[&str] = &[
    "name",
    "newName",
    "description",
    "product",
    "model",
    "class",
    "protocol",
    "protocolSide",
    "callingSearchSpaceName",
    "devicePoolName",
    "locationName",
    "securityProfileName",
    "lines",
    "addLines",
    "removeLines",
    "userLocale",
    "enableExtensionMobility",
    "ownerUserName",
    "uuid",
];

/// `lines` (or `addLines`/`removeLines`) of a phone request: its line appearances, by index.
fn lines(
    list: &Node,
    def: &ClusterDefinition,
    request: &str,
) -> Result<Vec<(u32, LineAppearance)>, AxlFault> {
    let mut out: Vec<(u32, LineAppearance)> = Vec::new();
    for l in list.all("line") {
        refuse_unkept(
            l,
            &["index", "label", "display", "dirn"],
            LINE_APPEARANCE_IGNORED,
            request,
        )?;
        let index: u32 = match text(l, "index", request)?.as_deref() {
            None | Some("") => out.len() as u32 + 1,
            Some(v) => v
                .parse()
                .ok()
                .filter(|i| (1..=MAX_LINES as u32).contains(i))
                .ok_or_else(|| {
                    AxlFault::client(request, format!("line index {v:?} is not 1 to {MAX_LINES}"))
                })?,
        };
        let dirn = l.child("dirn").ok_or_else(|| {
            AxlFault::client(
                request,
                "a line needs its dirn (pattern, routePartitionName)",
            )
        })?;
        let pattern = required(dirn, "pattern", request)?;
        let partition = reference(dirn, "routePartitionName", request)?.flatten();
        if !def
            .directory_numbers
            .iter()
            .any(|d| d.pattern == pattern && d.partition == partition)
        {
            return Err(AxlFault::not_found(
                request,
                &format!(
                    "Line {pattern} in partition {} (add it with addLine first)",
                    partition.as_deref().unwrap_or("<None>")
                ),
            ));
        }
        if out.iter().any(|(i, _)| *i == index) {
            return Err(AxlFault::client(
                request,
                format!("line index {index} is given twice"),
            ));
        }
        out.push((
            index,
            LineAppearance {
                dn: pattern,
                partition,
                label: text(l, "label", request)?.filter(|v| !v.is_empty()),
                display: text(l, "display", request)?.filter(|v| !v.is_empty()),
            },
        ));
        if out.len() > MAX_LINES {
            return Err(AxlFault::client(
                request,
                format!("more than {MAX_LINES} lines"),
            ));
        }
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out)
}

/// Line appearances by index into the device's list: indexes must run 1, 2, 3 … (the
/// definition keeps lines as a list, the button order).
fn place(
    lines: Vec<(u32, LineAppearance)>,
    request: &str,
) -> Result<Vec<LineAppearance>, AxlFault> {
    let mut out = Vec::with_capacity(lines.len());
    for (n, (i, l)) in lines.into_iter().enumerate() {
        if i as usize != n + 1 {
            return Err(AxlFault::client(
                request,
                format!(
                    "line indexes must run 1, 2, 3 … without a gap (index {i} at position {})",
                    n + 1
                ),
            ));
        }
        out.push(l);
    }
    Ok(out)
}

/// The phone fields common to add and update.
fn phone_fields(
    d: &mut Device,
    p: &Node,
    def: &ClusterDefinition,
    request: &str,
) -> Result<(), AxlFault> {
    if let Some(v) = text(p, "description", request)? {
        d.description = (!v.is_empty()).then_some(v);
    }
    if let Some(v) = text(p, "protocol", request)? {
        if !v.is_empty() && !v.eq_ignore_ascii_case("SIP") {
            return Err(AxlFault::client(
                request,
                format!("protocol {v}: this cluster's phones speak SIP"),
            ));
        }
    }
    if let Some(v) = text(p, "class", request)? {
        if !v.is_empty() && v != "Phone" {
            return Err(AxlFault::client(request, format!("class {v}: only Phone is kept (device profiles are defined in the cluster definition)")));
        }
    }
    if let Some(v) = text(p, "protocolSide", request)? {
        if !v.is_empty() && v != "User" {
            return Err(AxlFault::client(
                request,
                format!("protocolSide {v}: only User"),
            ));
        }
    }
    if let Some(pool) = text(p, "devicePoolName", request)? {
        if pool.is_empty() {
            return Err(AxlFault::client(request, "devicePoolName may not be empty"));
        }
        exists(
            &def.device_pools,
            |x| &x.name,
            &pool,
            request,
            "Device Pool",
        )?;
        d.device_pool = pool;
    }
    if let Some(css) = reference(p, "callingSearchSpaceName", request)? {
        if let Some(c) = &css {
            exists(
                &def.calling_search_spaces,
                |x| &x.name,
                c,
                request,
                "Calling Search Space",
            )?;
        }
        d.css = css;
    }
    if let Some(loc) = reference(p, "locationName", request)? {
        // Cisco's default location: not a location of the definition.
        let loc = loc.filter(|l| l != "Hub_None");
        if let Some(l) = &loc {
            exists(&def.locations, |x| &x.name, l, request, "Location")?;
        }
        d.location = loc;
    }
    if let Some(sp) = reference(p, "securityProfileName", request)? {
        if let Some(s) = &sp {
            exists(
                &def.phone_security_profiles,
                |x| &x.name,
                s,
                request,
                "Security Profile",
            )?;
        }
        d.security_profile = sp;
    }
    if let Some(owner) = reference(p, "ownerUserName", request)? {
        if let Some(o) = &owner {
            exists(&def.end_users, |x| &x.userid, o, request, "User")?;
        }
        d.owner = owner;
    }
    if let Some(v) = reference(p, "userLocale", request)? {
        d.user_locale = v;
    }
    if let Some(em) = boolean(p, "enableExtensionMobility", request)? {
        d.em_enabled = em;
    }
    if let Some(l) = p.child("lines") {
        d.lines = place(lines(l, def, request)?, request)?;
    }
    if let Some(l) = p.child("removeLines") {
        let gone = lines(l, def, request)?;
        d.lines.retain(|x| {
            !gone
                .iter()
                .any(|(_, g)| g.dn == x.dn && g.partition == x.partition)
        });
    }
    if let Some(l) = p.child("addLines") {
        for (_, a) in lines(l, def, request)? {
            if !d
                .lines
                .iter()
                .any(|x| x.dn == a.dn && x.partition == a.partition)
            {
                d.lines.push(a);
            }
        }
        if d.lines.len() > MAX_LINES {
            return Err(AxlFault::client(
                request,
                format!("more than {MAX_LINES} lines"),
            ));
        }
    }
    Ok(())
}

fn add_phone(def: &mut ClusterDefinition, op: &Node) -> Result<String, AxlFault> {
    let request = op.name.as_str();
    let p = op
        .child("phone")
        .ok_or_else(|| AxlFault::client(request, "addPhone needs a <phone>"))?;
    refuse_unkept(p, PHONE_FIELDS, PHONE_IGNORED, request)?;
    let name = required(p, "name", request)?.to_ascii_uppercase();
    if def
        .devices
        .iter()
        .any(|d| d.name.eq_ignore_ascii_case(&name))
    {
        return Err(AxlFault::duplicate(request));
    }
    let model = match text(p, "product", request)? {
        Some(v) if !v.is_empty() => v,
        _ => required(p, "model", request)
            .map_err(|_| AxlFault::client(request, "product is required"))?,
    };
    if p.child("devicePoolName")
        .is_none_or(|e| e.value().trim().is_empty())
    {
        return Err(AxlFault::client(request, "devicePoolName is required"));
    }
    // Every setting the request does not give takes the model's default, as in a file.
    let mut d: Device = serde_json::from_value(serde_json::json!({
        "name": name, "model": model, "device_pool": ""
    }))
    .map_err(|e| AxlFault::server(request, e.to_string()))?;
    phone_fields(&mut d, p, def, request)?;
    def.devices.push(d);
    Ok(uuid_of("phone", &name))
}

fn update_phone(def: &mut ClusterDefinition, op: &Node) -> Result<String, AxlFault> {
    let request = op.name.as_str();
    refuse_unkept(op, PHONE_FIELDS, PHONE_IGNORED, request)?;
    let i = which(
        op,
        "name",
        "phone",
        def.devices.iter().map(|d| d.name.as_str()),
        "Device",
    )?;
    let name = def.devices[i].name.clone();
    let mut d = def.devices[i].clone();
    if op.child("product").or(op.child("model")).is_some() {
        return Err(AxlFault::client(
            request,
            "a phone's product cannot be changed (remove and add it)",
        ));
    }
    phone_fields(&mut d, op, def, request)?;
    let mut final_name = name.clone();
    if let Some(new) = text(op, "newName", request)?.filter(|v| !v.is_empty()) {
        let new = new.to_ascii_uppercase();
        if new != name {
            if def
                .devices
                .iter()
                .any(|x| x.name.eq_ignore_ascii_case(&new))
            {
                return Err(AxlFault::duplicate(request));
            }
            rename_device(def, &name, &new);
            d.name = new.clone();
            final_name = new;
        }
    }
    def.devices[i] = d;
    Ok(uuid_of("phone", &final_name))
}

/// A device renamed: the users' references follow (the checks refuse any other left behind).
fn rename_device(def: &mut ClusterDefinition, old: &str, new: &str) {
    for u in &mut def.end_users {
        for d in &mut u.associated_devices {
            if d == old {
                *d = new.to_string();
            }
        }
    }
    for a in &mut def.application_users {
        for d in &mut a.associated_devices {
            if d == old {
                *d = new.to_string();
            }
        }
    }
}

fn remove_phone(def: &mut ClusterDefinition, op: &Node) -> Result<String, AxlFault> {
    let i = which(
        op,
        "name",
        "phone",
        def.devices.iter().map(|d| d.name.as_str()),
        "Device",
    )?;
    let name = def.devices.remove(i).name;
    // As Cisco does: the users' device associations go with the phone.
    for u in &mut def.end_users {
        u.associated_devices.retain(|d| d != &name);
    }
    for a in &mut def.application_users {
        a.associated_devices.retain(|d| d != &name);
    }
    Ok(uuid_of("phone", &name))
}

const LINE_FIELDS: &[&str] = &[
    "pattern",
    "description",
    "usage",
    "routePartitionName",
    "alertingName",
    "asciiAlertingName",
    "shareLineAppearanceCssName",
    "callForwardAll",
    "callForwardBusy",
    "callForwardBusyInt",
    "callForwardNoAnswer",
    "callForwardNoAnswerInt",
    "callForwardNoCoverage",
    "callForwardNoCoverageInt",
    "callForwardOnFailure",
    "callForwardNotRegistered",
    "callForwardNotRegisteredInt",
];

/// The name a line is known by in UUIDs: pattern and partition.
pub fn line_key(pattern: &str, partition: Option<&str>) -> String {
    format!("{pattern}/{}", partition.unwrap_or(""))
}

fn add_line(def: &mut ClusterDefinition, op: &Node) -> Result<String, AxlFault> {
    let request = op.name.as_str();
    let l = op
        .child("line")
        .ok_or_else(|| AxlFault::client(request, "addLine needs a <line>"))?;
    refuse_unkept(l, LINE_FIELDS, LINE_IGNORED, request)?;
    let pattern = required(l, "pattern", request)?;
    if !pattern
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | '+'))
    {
        return Err(AxlFault::client(
            request,
            format!("pattern {pattern:?}: a directory number is digits, *, # and a leading +"),
        ));
    }
    if let Some(u) = text(l, "usage", request)? {
        if !u.is_empty() && u != "Device" {
            return Err(AxlFault::client(
                request,
                format!("usage {u}: only Device lines are kept"),
            ));
        }
    }
    let partition = reference(l, "routePartitionName", request)?.flatten();
    if let Some(p) = &partition {
        exists(&def.partitions, |x| &x.name, p, request, "Route Partition")?;
    }
    if def
        .directory_numbers
        .iter()
        .any(|d| d.pattern == pattern && d.partition == partition)
    {
        return Err(AxlFault::duplicate(request));
    }
    let css = reference(l, "shareLineAppearanceCssName", request)?.flatten();
    if let Some(c) = &css {
        exists(
            &def.calling_search_spaces,
            |x| &x.name,
            c,
            request,
            "Calling Search Space",
        )?;
    }
    let alerting = match text(l, "alertingName", request)? {
        Some(v) if !v.is_empty() => Some(v),
        _ => text(l, "asciiAlertingName", request)?.filter(|v| !v.is_empty()),
    };
    let mut dn: DirectoryNumber = serde_json::from_value(serde_json::json!({ "pattern": pattern }))
        .map_err(|e| AxlFault::server(request, e.to_string()))?;
    dn.partition = partition.clone();
    dn.description = text(l, "description", request)?.filter(|v| !v.is_empty());
    dn.alerting_name = alerting;
    dn.css = css;
    // A line on its own until a phone carries it (addPhone after addLine, as scripts do).
    dn.unassigned = true;
    let cf = |tag: &str| forward(l, tag, def, request);
    dn.call_forward.all = cf("callForwardAll")?;
    dn.call_forward.busy = cf("callForwardBusy")?;
    dn.call_forward.no_answer = cf("callForwardNoAnswer")?;
    dn.call_forward.unregistered = cf("callForwardNotRegistered")?;
    // This cluster does not tell internal from external callers, and has no coverage or
    // failure forwarding: those are accepted only when they say nothing different.
    for (int, ext) in [
        ("callForwardBusyInt", &dn.call_forward.busy),
        ("callForwardNoAnswerInt", &dn.call_forward.no_answer),
        ("callForwardNotRegisteredInt", &dn.call_forward.unregistered),
        ("callForwardNoCoverage", &None),
        ("callForwardNoCoverageInt", &None),
        ("callForwardOnFailure", &None),
    ] {
        let got = cf(int)?;
        if got.is_some() && &got != ext {
            return Err(AxlFault::client(
                request,
                format!("{int}: a separate forward for this case is not kept by this cluster"),
            ));
        }
    }
    def.directory_numbers.push(dn);
    Ok(uuid_of("line", &line_key(&pattern, partition.as_deref())))
}

/// A `callForward*` block: its destination (and CSS), or `None` when it forwards nowhere.
fn forward(
    l: &Node,
    tag: &str,
    def: &ClusterDefinition,
    request: &str,
) -> Result<Option<ForwardSetting>, AxlFault> {
    let Some(f) = l.child(tag) else {
        return Ok(None);
    };
    if boolean(f, "forwardToVoiceMail", request)? == Some(true) {
        return Err(AxlFault::client(
            request,
            format!("{tag}.forwardToVoiceMail: this cluster has no voice mail"),
        ));
    }
    let Some(destination) = text(f, "destination", request)?.filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let css = reference(f, "callingSearchSpaceName", request)?.flatten();
    if let Some(c) = &css {
        exists(
            &def.calling_search_spaces,
            |x| &x.name,
            c,
            request,
            "Calling Search Space",
        )?;
    }
    Ok(Some(ForwardSetting {
        destination: Some(destination),
        css,
    }))
}

const USER_FIELDS: &[&str] = &[
    "firstName",
    "lastName",
    "userid",
    "uuid",
    "mailid",
    "password",
    "pin",
    "telephoneNumber",
    "associatedDevices",
    "primaryExtension",
    "phoneProfiles",
    "defaultProfile",
    "homeCluster",
    "associatedGroups",
];

fn user_fields(
    u: &mut EndUser,
    x: &Node,
    def: &ClusterDefinition,
    request: &str,
) -> Result<(), AxlFault> {
    if let Some(v) = text(x, "firstName", request)? {
        u.first_name = (!v.is_empty()).then_some(v);
    }
    if let Some(v) = text(x, "lastName", request)? {
        if v.is_empty() {
            return Err(AxlFault::client(request, "lastName may not be empty"));
        }
        u.last_name = v;
    }
    if let Some(v) = text(x, "mailid", request)? {
        u.mail = (!v.is_empty()).then_some(v);
    }
    if let Some(v) = text(x, "telephoneNumber", request)? {
        u.telephone_number = (!v.is_empty()).then_some(v);
    }
    // Secrets: kept in clear only until the caller hashes them (before the write commits).
    if let Some(v) = x.child("password").map(|e| e.value()) {
        if v.is_empty() {
            return Err(AxlFault::client(request, "password may not be empty"));
        }
        if v.chars().count() > MAX_FIELD {
            return Err(AxlFault::client(
                request,
                format!("password is longer than {MAX_FIELD} characters"),
            ));
        }
        u.password = Some(v);
        u.password_hash = None;
    }
    if let Some(v) = x.child("pin").map(|e| e.value()) {
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_digit()) || v.len() > 32 {
            return Err(AxlFault::client(request, "pin must be 1 to 32 digits"));
        }
        u.pin = Some(v);
        u.pin_hash = None;
    }
    if let Some(list) = x.child("associatedDevices") {
        let mut devices = Vec::new();
        for d in list.all("device") {
            let name = d.value().trim().to_ascii_uppercase();
            exists(&def.devices, |x| &x.name, &name, request, "Device")?;
            if !devices.contains(&name) {
                devices.push(name);
            }
            if devices.len() > MAX_ASSOCIATED {
                return Err(AxlFault::client(
                    request,
                    format!("more than {MAX_ASSOCIATED} associated devices"),
                ));
            }
        }
        u.associated_devices = devices;
    }
    if let Some(pe) = x.child("primaryExtension") {
        let pattern = text(pe, "pattern", request)?.unwrap_or_default();
        u.primary_extension = if pattern.is_empty() {
            None
        } else {
            let partition = reference(pe, "routePartitionName", request)?.flatten();
            if !def
                .directory_numbers
                .iter()
                .any(|d| d.pattern == pattern && d.partition == partition)
            {
                return Err(AxlFault::not_found(request, &format!("Line {pattern}")));
            }
            Some(DnRef {
                dn: pattern,
                partition,
            })
        };
    }
    if let Some(list) = x.child("phoneProfiles") {
        let mut profiles = Vec::new();
        for p in list.all("profileName") {
            let mut name = p.value().trim().to_string();
            // An XFkType may name its object by uuid alone (ciscoaxl's update_user_em does).
            if name.is_empty() {
                if let Some(u) = p.attr("uuid") {
                    if let Some(found) = def
                        .device_profiles
                        .iter()
                        .find(|d| uuid_of("deviceProfile", &d.name).eq_ignore_ascii_case(u))
                    {
                        name = found.name.clone();
                    }
                }
            }
            exists(
                &def.device_profiles,
                |x| &x.name,
                &name,
                request,
                "Device Profile",
            )?;
            if !profiles.contains(&name) {
                profiles.push(name);
            }
        }
        u.device_profiles = profiles;
    }
    if let Some(v) = reference(x, "defaultProfile", request)? {
        if let Some(p) = &v {
            exists(
                &def.device_profiles,
                |x| &x.name,
                p,
                request,
                "Device Profile",
            )?;
        }
        u.default_profile = v;
    }
    if let Some(groups) = x.child("associatedGroups") {
        // Cisco's user groups carry roles; the one every end user has carries none here.
        for g in groups.all("userGroup") {
            let name = g.child("name").map(|n| n.value()).unwrap_or_default();
            if name.trim() != "Standard CCM End Users" {
                return Err(AxlFault::client(
                    request,
                    format!("userGroup {name:?}: roles are given in the cluster definition (only Standard CCM End Users is accepted here)"),
                ));
            }
        }
    }
    if let Some(h) = boolean(x, "homeCluster", request)? {
        u.home_cluster = h;
    }
    Ok(())
}

fn add_user(def: &mut ClusterDefinition, op: &Node) -> Result<String, AxlFault> {
    let request = op.name.as_str();
    let x = op
        .child("user")
        .ok_or_else(|| AxlFault::client(request, "addUser needs a <user>"))?;
    refuse_unkept(x, USER_FIELDS, USER_IGNORED, request)?;
    let userid = required(x, "userid", request)?;
    required(x, "lastName", request)?;
    if def.end_users.iter().any(|u| u.userid == userid)
        || def.application_users.iter().any(|u| u.userid == userid)
    {
        return Err(AxlFault::duplicate(request));
    }
    let mut u: EndUser = serde_json::from_value(serde_json::json!({
        "userid": userid, "last_name": "-"
    }))
    .map_err(|e| AxlFault::server(request, e.to_string()))?;
    user_fields(&mut u, x, def, request)?;
    def.end_users.push(u);
    Ok(uuid_of("user", &userid))
}

fn update_user(def: &mut ClusterDefinition, op: &Node) -> Result<String, AxlFault> {
    let request = op.name.as_str();
    refuse_unkept(op, USER_FIELDS, USER_IGNORED, request)?;
    let i = which(
        op,
        "userid",
        "user",
        def.end_users.iter().map(|u| u.userid.as_str()),
        "User",
    )?;
    let userid = def.end_users[i].userid.clone();
    let mut u = def.end_users[i].clone();
    user_fields(&mut u, op, def, request)?;
    def.end_users[i] = u;
    Ok(uuid_of("user", &userid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(xml: &str) -> Node {
        crate::wire::soap::read_tree(xml).expect("xml")
    }

    #[test]
    fn add_update_and_remove_a_phone() {
        let mut def = crate::services::demo().unwrap();
        let n = def.devices.len();
        let pool = def.device_pools[0].name.clone();
        let dn = def.directory_numbers[0].clone();
        let add = op(&format!(
            "<addPhone><phone><name>sep0000000000aa</name><product>Cisco 8845</product><class>Phone</class>\
             <protocol>SIP</protocol><devicePoolName>{pool}</devicePoolName><lines><line><index>1</index>\
             <dirn><pattern>{}</pattern><routePartitionName>{}</routePartitionName></dirn></line></lines></phone></addPhone>",
            dn.pattern,
            dn.partition.clone().unwrap_or_default()
        ));
        let uuid = apply(&mut def, &add).unwrap_or_else(|f| panic!("{f:?}"));
        assert_eq!(uuid, uuid_of("phone", "SEP0000000000AA"));
        assert_eq!(def.devices.len(), n + 1);
        assert_eq!(def.devices[n].lines[0].dn, dn.pattern);
        // Twice: Cisco's duplicate-key fault.
        let f = apply(&mut def, &add).unwrap_err();
        assert_eq!(f.axlcode, -239, "{f:?}");
        let upd = op(&format!(
            "<updatePhone><uuid>{uuid}</uuid><description>lobby</description><newName>SEP0000000000AB</newName></updatePhone>"
        ));
        apply(&mut def, &upd).unwrap();
        assert_eq!(def.devices[n].name, "SEP0000000000AB");
        assert_eq!(def.devices[n].description.as_deref(), Some("lobby"));
        apply(
            &mut def,
            &op("<removePhone><name>SEP0000000000AB</name></removePhone>"),
        )
        .unwrap();
        assert_eq!(def.devices.len(), n);
        let f = apply(
            &mut def,
            &op("<removePhone><name>SEP0000000000AB</name></removePhone>"),
        )
        .unwrap_err();
        assert_eq!(f.axlcode, 5007);
    }

    #[test]
    fn mistakes_are_named() {
        let mut def = crate::services::demo().unwrap();
        let cases = [
            ("<addPhone><phone><name>SEP0000000000AA</name><product>x</product><devicePoolName>Nope</devicePoolName></phone></addPhone>", "Device Pool Nope"),
            ("<addPhone><phone><name>SEP0000000000AA</name><product>x</product></phone></addPhone>", "devicePoolName is required"),
            ("<addPhone><phone><name>SEP0000000000AA</name><speeddials><speeddial><dirn>1</dirn></speeddial></speeddials></phone></addPhone>", "speeddials is not kept"),
            ("<addLine><line><pattern>12a</pattern></line></addLine>", "a directory number is digits"),
            ("<addUser><user><userid>u1</userid></user></addUser>", "lastName is required"),
            ("<addUser><user><userid>u1</userid><lastName>L</lastName><pin>12ab</pin></user></addUser>", "pin must be"),
            ("<updateUser><userid>nobody</userid></updateUser>", "User was not found"),
        ];
        for (xml, says) in cases {
            let before = def.clone();
            let f = apply(&mut def, &op(xml)).unwrap_err();
            assert!(f.message.contains(says), "{xml}: {}", f.message);
            let _ = before;
        }
    }

    #[test]
    fn a_phone_named_against_the_checks_is_refused_by_them() {
        let mut def = crate::services::demo().unwrap();
        let pool = def.device_pools[0].name.clone();
        let f = apply(
            &mut def,
            &op(&format!("<addPhone><phone><name>NOTAPHONE</name><product>Cisco 8845</product><devicePoolName>{pool}</devicePoolName></phone></addPhone>")),
        )
        .unwrap_err();
        assert!(
            f.message.contains("would leave the cluster invalid"),
            "{}",
            f.message
        );
    }

    #[test]
    fn users_are_added_and_updated() {
        let mut def = crate::services::demo().unwrap();
        let dev = def.devices[0].name.clone();
        apply(
            &mut def,
            &op(&format!("<addUser><user><userid>newbie</userid><lastName>New</lastName><password>pw1</password><pin>4321</pin><associatedDevices><device>{dev}</device></associatedDevices></user></addUser>")),
        )
        .unwrap_or_else(|f| panic!("{f:?}"));
        let u = def.end_users.iter().find(|u| u.userid == "newbie").unwrap();
        assert_eq!(u.password.as_deref(), Some("pw1"));
        assert_eq!(u.associated_devices, vec![dev]);
        apply(&mut def, &op("<updateUser><userid>newbie</userid><firstName>Nia</firstName><associatedDevices/></updateUser>")).unwrap();
        let u = def.end_users.iter().find(|u| u.userid == "newbie").unwrap();
        assert_eq!(u.first_name.as_deref(), Some("Nia"));
        assert!(u.associated_devices.is_empty());
    }
}
