//! The registrar: phones register their lines the way Cisco SIP phones do towards Unified CM.
//!
//! A phone names itself in its Contact with `+sip.instance="<urn:uuid:00000000-0000-0000-0000-
//! MMMMMMMMMMMM>"` (the last 12 hex digits are its MAC, so the device is `SEP<MAC>`) and puts the
//! line's DN in To. The decision ([`decide`]) is a pure function of the cluster and the request.
//! [`Bindings`] is the table of registrations, pure data handed the time; [`Registrar`] is the
//! node's shared copy of it, which writes every change behind to the database so other nodes and
//! services see the registrations and a restarted node keeps them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use super::message::{parse_contact_list, ContactList, Request};
use super::Transport;
use crate::cluster::Cluster;
use crate::config::model::{Device, LineAppearance};
use crate::store::{RegistrationRow, Store};

/// Where one line of one device can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub device: String,
    pub line: String,
    /// The Contact URI the phone registered (where to send requests).
    pub contact: String,
    pub instance: Option<String>,
    pub transport: Transport,
    /// Where the REGISTER came from (requests go here: phones sit behind no NAT we trust less).
    pub source: SocketAddr,
    /// Unix seconds.
    pub expires_at: i64,
    /// The node holding the registration (the phone's SIP peer): calls to this line go
    /// through it.
    pub node: String,
}

/// What a REGISTER asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Bind {
        device: String,
        line: String,
        contact: String,
        instance: Option<String>,
        expires: u32,
    },
    /// Remove the binding of `contact` (RFC 3261 10.3: only the contact named), or every
    /// binding of the line for `Contact: *` (`contact: None`).
    Unbind {
        device: String,
        line: String,
        contact: Option<String>,
    },
    /// No Contact: the phone asks for its current bindings.
    Query { device: String, line: String },
}

/// A refusal, with the SIP status and a reason for the log and the reason phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

fn refuse(status: u16, reason: impl Into<String>) -> Refusal {
    Refusal {
        status,
        reason: reason.into(),
    }
}

/// The device named by a `+sip.instance` value such as `"<urn:uuid:00000000-0000-0000-0000-00036bc7b973>"`.
pub fn device_from_instance(instance: &str) -> Option<String> {
    let v = instance
        .trim()
        .trim_matches('"')
        .trim_start_matches('<')
        .trim_end_matches('>');
    let uuid = v.strip_prefix("urn:uuid:")?;
    let mac: String = uuid.chars().filter(|c| *c != '-').collect();
    if mac.len() != 32 || !mac.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(format!("SEP{}", mac[20..].to_ascii_uppercase()))
}

/// Decides what a REGISTER means. `lines_of` gives the lines a device has right now (its own,
/// or its Extension Mobility profile's while a user is logged in).
pub fn decide<'a>(
    cluster: &'a Cluster,
    req: &Request,
    max_expires: u32,
    lines_of: impl Fn(&'a Device) -> Vec<LineAppearance>,
) -> Result<Decision, Refusal> {
    let to = req
        .to()
        .map_err(|e| refuse(400, format!("bad To header: {e}")))?;
    let line = to
        .uri
        .user_part()
        .map(str::to_string)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| refuse(400, "To names no line (no user part)"))?;
    let contacts = match req.headers.get("Contact") {
        None => None,
        Some(_) => Some(
            req.headers
                .get_all("Contact")
                .map(parse_contact_list)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| refuse(400, format!("bad Contact header: {e}")))?,
        ),
    };
    let header_expires: Option<u32> = match req.headers.get("Expires") {
        Some(v) => Some(
            v.trim()
                .parse()
                .map_err(|_| refuse(400, format!("bad Expires header {v:?}")))?,
        ),
        None => None,
    };
    // Find the device: from +sip.instance, else the one device that has this DN.
    let mut instance = None;
    let mut contact_uri = None;
    let mut contact_expires = None;
    let mut wildcard = false;
    for list in contacts.iter().flatten() {
        match list {
            ContactList::Wildcard => wildcard = true,
            ContactList::Addrs(addrs) => {
                for a in addrs {
                    if contact_uri.is_none() {
                        contact_uri = Some(a.uri.to_string());
                        contact_expires = a.expires();
                        instance = a.param("+sip.instance").flatten().map(|s| s.to_string());
                    }
                }
            }
        }
    }
    let device = match &instance {
        Some(inst) => {
            let name = device_from_instance(inst).ok_or_else(|| {
                refuse(
                    400,
                    format!("+sip.instance {inst:?} is not urn:uuid:...<MAC>"),
                )
            })?;
            cluster
                .device(&name)
                .ok_or_else(|| refuse(404, format!("device {name} is not configured")))?
        }
        None => {
            // Only configured lines are indexed: a phone that carries a line through an EM login
            // must name itself with +sip.instance (Cisco phones always do).
            let mut found = cluster
                .devices_with_line_digits(&line)
                .filter(|d| lines_of(d).iter().any(|l| l.dn == line));
            match (found.next(), found.next()) {
                (Some(d), None) => d,
                (None, _) => {
                    return Err(refuse(
                        404,
                        format!("no device has line {line} (and the Contact carries no +sip.instance)"),
                    ))
                }
                (Some(_), Some(_)) => {
                    return Err(refuse(
                        403,
                        format!("line {line} is shared; the Contact must carry +sip.instance to name the device"),
                    ))
                }
            }
        }
    };
    // A device may always drop a binding, even of a line it no longer has: after an EM login
    // or logout the phone unregisters its old line before registering the new one, and
    // refusing that would leave the old binding to expire on its own.
    let has_line = lines_of(device).iter().any(|l| l.dn == line);
    let no_line = || refuse(403, format!("{} has no line {line}", device.name));
    if wildcard {
        if header_expires != Some(0) || contact_uri.is_some() {
            return Err(refuse(
                400,
                "Contact: * needs Expires: 0 and no other Contact",
            ));
        }
        return Ok(Decision::Unbind {
            device: device.name.clone(),
            line,
            contact: None,
        });
    }
    let Some(contact) = contact_uri else {
        if !has_line {
            return Err(no_line());
        }
        return Ok(Decision::Query {
            device: device.name.clone(),
            line,
        });
    };
    let expires = contact_expires
        .or(header_expires)
        .unwrap_or(3600)
        .min(max_expires);
    if expires == 0 {
        return Ok(Decision::Unbind {
            device: device.name.clone(),
            line,
            contact: Some(contact),
        });
    }
    if !has_line {
        return Err(no_line());
    }
    let device = device.name.clone();
    Ok(Decision::Bind {
        device,
        line,
        contact,
        instance,
        expires,
    })
}

impl Decision {
    /// The device the REGISTER is for.
    pub fn device(&self) -> &str {
        match self {
            Decision::Bind { device, .. }
            | Decision::Unbind { device, .. }
            | Decision::Query { device, .. } => device,
        }
    }
}

/// Whether a REGISTER from `source` over `transport` comes from the registrant that holds
/// `held`: the same address, and over UDP the same port too (a UDP phone sends from the
/// socket it is reached on; a second phone program on the same host has another port).
/// Over TCP and TLS the port is the connection's ephemeral one, new with every connection,
/// so the host address alone decides.
pub fn same_registrant(held: &Binding, transport: Transport, source: SocketAddr) -> bool {
    if held.source.ip() != source.ip() {
        return false;
    }
    let datagram = transport == Transport::Udp && held.transport == Transport::Udp;
    !datagram || held.source.port() == source.port()
}

/// The wall clock in Unix seconds, for the shells (the bindings table and the B2BUA are
/// handed the time instead).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The binding a stored row describes, if its source and transport read back.
fn binding_of_row(r: RegistrationRow) -> Option<Binding> {
    let (Ok(source), Some(transport)) = (r.source.parse(), Transport::parse(&r.transport)) else {
        return None;
    };
    Some(Binding {
        device: r.device,
        line: r.line,
        contact: r.contact,
        instance: r.instance,
        transport,
        source,
        expires_at: r.expires_at,
        node: r.node,
    })
}

/// A change the bindings table asks the database to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Upsert(RegistrationRow),
    Remove {
        device: String,
        line: String,
    },
    /// Remove the row if it expired by `now` (a sweep must not remove a row another node
    /// refreshed meanwhile).
    Expire {
        device: String,
        line: String,
        now: i64,
    },
}

/// The registrations in memory, keyed by device and line: pure data that is handed the time.
/// Each change returns the [`Write`]s that keep the database in step.
#[derive(Debug, Default, Clone)]
pub struct Bindings {
    map: HashMap<(String, String), Binding>,
    /// This node's name, recorded with each registration it writes.
    node: String,
}

impl Bindings {
    pub fn new(node: &str) -> Bindings {
        Bindings {
            map: HashMap::new(),
            node: node.to_string(),
        }
    }

    /// A table holding the registrations read back from the database (unusable rows are
    /// skipped).
    pub fn from_rows(node: &str, rows: Vec<RegistrationRow>) -> Bindings {
        let mut table = Bindings::new(node);
        for r in rows {
            if let Some(b) = binding_of_row(r) {
                table.map.insert((b.device.clone(), b.line.clone()), b);
            }
        }
        table
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Follows a registration another node wrote (heard on the change feed). Our own
    /// writes are in memory already (and may be newer than their echo); an unusable row is
    /// ignored.
    pub fn learn(&mut self, row: RegistrationRow) -> bool {
        if row.node == self.node {
            return false;
        }
        match binding_of_row(row) {
            Some(b) => {
                self.map.insert((b.device.clone(), b.line.clone()), b);
                true
            }
            None => false,
        }
    }

    /// Follows a registration removed from the database: the binding in memory goes only if
    /// it is the one removed (same node, not refreshed since), so neither the echo of our own
    /// unREGISTER nor another node's sweep of a stale row drops a newer binding.
    pub fn forget(&mut self, row: &RegistrationRow) -> bool {
        let key = (row.device.clone(), row.line.clone());
        let gone = self
            .map
            .get(&key)
            .is_some_and(|b| b.node == row.node && b.expires_at <= row.expires_at);
        if gone {
            self.map.remove(&key);
        }
        gone
    }

    /// Takes the other nodes' registrations from a full read of the database (the feed
    /// reconnected): each row another node holds replaces what memory has, and a binding of
    /// another node that is no longer stored goes. This node's own bindings stay: memory is
    /// their truth (the database may not have their latest write yet).
    pub fn resync(&mut self, rows: Vec<RegistrationRow>) -> usize {
        let mut stored = std::collections::HashSet::new();
        let mut changed = 0;
        for r in rows {
            stored.insert((r.device.clone(), r.line.clone()));
            if self.learn(r) {
                changed += 1;
            }
        }
        let node = self.node.clone();
        self.map.retain(|k, b| {
            let keep = b.node == node || stored.contains(k);
            if !keep {
                changed += 1;
            }
            keep
        });
        changed
    }

    /// Carries out a REGISTER's decision at `now` (Unix seconds): the bindings to report in
    /// the answer, and the database write it needs.
    pub fn apply(
        &mut self,
        decision: &Decision,
        transport: Transport,
        source: SocketAddr,
        now: i64,
    ) -> (Vec<Binding>, Option<Write>) {
        match decision {
            Decision::Bind {
                device,
                line,
                contact,
                instance,
                expires,
            } => {
                let b = Binding {
                    device: device.clone(),
                    line: line.clone(),
                    contact: contact.clone(),
                    instance: instance.clone(),
                    transport,
                    source,
                    expires_at: now + i64::from(*expires),
                    node: self.node.clone(),
                };
                let row = RegistrationRow {
                    device: b.device.clone(),
                    line: b.line.clone(),
                    contact: b.contact.clone(),
                    instance: b.instance.clone(),
                    transport: transport.as_str().to_string(),
                    source: source.to_string(),
                    node: self.node.clone(),
                    expires_at: b.expires_at,
                    updated_at: now,
                };
                self.map.insert((device.clone(), line.clone()), b.clone());
                (vec![b], Some(Write::Upsert(row)))
            }
            Decision::Unbind {
                device,
                line,
                contact,
            } => {
                let key = (device.clone(), line.clone());
                // Only the contact named goes (RFC 3261 10.3): an unREGISTER of another
                // contact leaves the binding, and the answer lists it.
                let named = self
                    .map
                    .get(&key)
                    .is_some_and(|b| contact.as_ref().is_none_or(|c| *c == b.contact));
                if !named {
                    return (self.binding(device, line, now).into_iter().collect(), None);
                }
                self.map.remove(&key);
                let write = Write::Remove {
                    device: device.clone(),
                    line: line.clone(),
                };
                (Vec::new(), Some(write))
            }
            Decision::Query { device, line } => {
                (self.binding(device, line, now).into_iter().collect(), None)
            }
        }
    }

    /// Carries out a REGISTER's decision unless another registrant holds the device: a live
    /// binding of any of its lines from another address ([`same_registrant`]) makes the
    /// answer `Err(that binding)`, until it expires. `takeover` (the request proved itself
    /// with the device's digest credentials) lets a phone that moved replace it.
    pub fn register(
        &mut self,
        decision: &Decision,
        transport: Transport,
        source: SocketAddr,
        now: i64,
        takeover: bool,
    ) -> Result<(Vec<Binding>, Option<Write>), Box<Binding>> {
        if !takeover {
            let device = decision.device();
            if let Some(holder) = self
                .map
                .values()
                .find(|b| b.device == device && b.expires_at > now)
                .filter(|b| !same_registrant(b, transport, source))
            {
                return Err(Box::new(holder.clone()));
            }
        }
        Ok(self.apply(decision, transport, source, now))
    }

    /// The binding of a device's line that is live at `now`.
    pub fn binding(&self, device: &str, line: &str, now: i64) -> Option<Binding> {
        self.map
            .get(&(device.to_string(), line.to_string()))
            .filter(|b| b.expires_at > now)
            .cloned()
    }

    /// The device's bindings live at `now` (one per registered line).
    pub fn device_bindings(&self, device: &str, now: i64) -> Vec<Binding> {
        self.map
            .values()
            .filter(|b| b.device == device && b.expires_at > now)
            .cloned()
            .collect()
    }

    /// Whether any line of the device is registered at `now`.
    pub fn is_registered(&self, device: &str, now: i64) -> bool {
        self.map
            .values()
            .any(|b| b.device == device && b.expires_at > now)
    }

    /// How many bindings are live at `now`, on every node.
    pub fn count(&self, now: i64) -> usize {
        self.map.values().filter(|b| b.expires_at > now).count()
    }

    /// How many bindings this node holds live at `now`.
    pub fn count_here(&self, now: i64) -> usize {
        self.map
            .values()
            .filter(|b| b.expires_at > now && b.node == self.node)
            .count()
    }

    /// Drops the bindings expired at `now`, with the writes that remove them from the database.
    /// The removal is conditional, so sweeping another node's rows is safe (a dead node's
    /// rows go too).
    pub fn sweep(&mut self, now: i64) -> Vec<Write> {
        let mut writes = Vec::new();
        self.map.retain(|(device, line), b| {
            let keep = b.expires_at > now;
            if !keep {
                writes.push(Write::Expire {
                    device: device.clone(),
                    line: line.clone(),
                    now,
                });
            }
            keep
        });
        writes
    }
}

/// Reading the bindings live at a given time: what call control needs from the registrar.
/// The plain table answers directly; the node's [`Registrar`] locks its table for each read.
pub trait Registrations {
    fn binding_at(&self, device: &str, line: &str, now: i64) -> Option<Binding>;
    fn device_bindings_at(&self, device: &str, now: i64) -> Vec<Binding>;
    /// The name of the node these registrations are read on: a binding of another node is
    /// reached through that node.
    fn local_node(&self) -> String;
}

impl Registrations for Bindings {
    fn binding_at(&self, device: &str, line: &str, now: i64) -> Option<Binding> {
        self.binding(device, line, now)
    }

    fn local_node(&self) -> String {
        self.node.clone()
    }

    fn device_bindings_at(&self, device: &str, now: i64) -> Vec<Binding> {
        self.device_bindings(device, now)
    }
}

enum Persist {
    Write(Write),
    /// Write what is queued, then stop.
    Close,
}

/// The node's registrations, shared by the SIP transports, call control and the services:
/// the [`Bindings`] table behind a lock, and its writes queued to a task that stores them.
/// The methods without a time argument read the wall clock.
pub struct Registrar {
    table: RwLock<Bindings>,
    persist: mpsc::UnboundedSender<Persist>,
    node: String,
}

impl Registrar {
    /// Loads the unexpired registrations from the store and starts the writer task, which
    /// ends (after writing what is queued) when the registrar is dropped.
    pub async fn load(
        store: Store,
        node: &str,
    ) -> Result<(Arc<Registrar>, tokio::task::JoinHandle<()>), crate::store::StoreError> {
        let mut rows = store.live_registrations(unix_now()).await?;
        if store.backend() != crate::store::Backend::Postgres {
            // One node on SQLite: every stored registration is its own, whatever name the
            // node ran under before.
            for r in &mut rows {
                r.node = node.to_string();
            }
        }
        let table = Bindings::from_rows(node, rows);
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(writer(store, rx));
        Ok((
            Arc::new(Registrar {
                table: RwLock::new(table),
                persist: tx,
                node: node.to_string(),
            }),
            writer,
        ))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Bindings> {
        match self.table.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Bindings> {
        match self.table.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn persist(&self, w: Write) {
        let _ = self.persist.send(Persist::Write(w));
    }

    /// Carries out a REGISTER's decision at `now` (see [`Bindings::register`]: refused while
    /// another registrant holds the device) and queues its database write. The check and
    /// the change happen under one lock, so two registrants racing cannot both win.
    pub fn register(
        &self,
        decision: &Decision,
        transport: Transport,
        source: SocketAddr,
        now: i64,
        takeover: bool,
    ) -> Result<Vec<Binding>, Box<Binding>> {
        let (bindings, write) = self
            .write()
            .register(decision, transport, source, now, takeover)?;
        if let Some(w) = write {
            self.persist(w);
        }
        Ok(bindings)
    }

    /// The device's live bindings (one per registered line).
    pub fn device_bindings(&self, device: &str) -> Vec<Binding> {
        self.read().device_bindings(device, unix_now())
    }

    /// The live bindings this node holds (its phones, for the SNMP agent's tables).
    pub fn bindings_here(&self) -> Vec<Binding> {
        let now = unix_now();
        self.read()
            .map
            .values()
            .filter(|b| b.expires_at > now && b.node == self.node)
            .cloned()
            .collect()
    }

    /// Whether a phone holds a live registration over the TCP or TLS connection from
    /// `source` (the connection is then kept while it lives).
    pub fn holds_connection(&self, source: SocketAddr) -> bool {
        let now = unix_now();
        self.read().map.values().any(|b| {
            b.source == source
                && b.transport != Transport::Udp
                && b.expires_at > now
                && b.node == self.node
        })
    }

    /// Whether any line of the device is registered.
    pub fn is_registered(&self, device: &str) -> bool {
        self.read().is_registered(device, unix_now())
    }

    /// The registrations this node holds.
    pub fn count(&self) -> usize {
        self.read().count_here(unix_now())
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Follows another node's registration (the change feed).
    pub fn learn(&self, row: RegistrationRow) -> bool {
        self.write().learn(row)
    }

    /// Follows a registration removed from the database (the change feed).
    pub fn forget(&self, row: &RegistrationRow) -> bool {
        self.write().forget(row)
    }

    /// Takes the other nodes' registrations from a full read of the database.
    pub fn resync(&self, rows: Vec<RegistrationRow>) -> usize {
        self.write().resync(rows)
    }

    /// Asks the writer to write what is queued and stop (node shutdown).
    pub fn close(&self) {
        let _ = self.persist.send(Persist::Close);
    }

    /// Drops expired bindings from memory and the database.
    pub fn sweep(&self) {
        let writes = self.write().sweep(unix_now());
        for w in writes {
            self.persist(w);
        }
    }
}

impl Registrations for Registrar {
    fn binding_at(&self, device: &str, line: &str, now: i64) -> Option<Binding> {
        self.read().binding(device, line, now)
    }

    fn local_node(&self) -> String {
        self.node.clone()
    }

    fn device_bindings_at(&self, device: &str, now: i64) -> Vec<Binding> {
        self.read().device_bindings(device, now)
    }
}

/// Writes registrations in batches: one transaction per burst keeps up with thousands of
/// REGISTERs a second on SQLite.
async fn writer(store: Store, mut rx: mpsc::UnboundedReceiver<Persist>) {
    let mut batch = Vec::new();
    let mut closing = false;
    while !closing && rx.recv_many(&mut batch, 1000).await > 0 {
        let mut upserts: HashMap<(String, String), RegistrationRow> = HashMap::new();
        let mut removals = Vec::new();
        for op in batch.drain(..) {
            match op {
                Persist::Close => closing = true,
                Persist::Write(Write::Upsert(r)) => {
                    upserts.insert((r.device.clone(), r.line.clone()), r);
                }
                Persist::Write(Write::Remove { device: d, line: l }) => {
                    upserts.remove(&(d.clone(), l.clone()));
                    removals.push((d, l, None));
                }
                Persist::Write(Write::Expire {
                    device: d,
                    line: l,
                    now,
                }) => {
                    upserts.remove(&(d.clone(), l.clone()));
                    removals.push((d, l, Some(now)));
                }
            }
        }
        let rows: Vec<RegistrationRow> = upserts.into_values().collect();
        for attempt in 0..3 {
            match store.save_registrations(&rows, &removals).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "saving registrations failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse_datagram, SipMessage};

    fn cluster() -> Cluster {
        let mut def = crate::services::demo().unwrap();
        // Make 10002 a shared line for the shared-line case.
        let line = def.devices[1].lines[0].clone();
        def.devices[2].lines.push(line);
        Cluster::new(def)
    }

    fn register(to_user: &str, contact: &str, extra: &str) -> Request {
        let text = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK1\r\nFrom: <sip:{to_user}@127.0.0.1>;tag=a\r\nTo: <sip:{to_user}@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n{contact}{extra}Content-Length: 0\r\n\r\n"
        );
        match parse_datagram(text.as_bytes()).unwrap() {
            SipMessage::Request(r) => r,
            _ => panic!(),
        }
    }

    fn own_lines(d: &Device) -> Vec<LineAppearance> {
        d.lines.clone()
    }

    const CISCO: &str = "Contact: <sip:10001@127.0.0.2:5060;transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-00036bc7b973>\";+u.sip!model.ccm.cisco.com=\"36213\";expires=3600\r\n";

    #[test]
    fn instance_names_the_device() {
        assert_eq!(
            device_from_instance("\"<urn:uuid:00000000-0000-0000-0000-00036bc7b973>\"").as_deref(),
            Some("SEP00036BC7B973")
        );
        assert_eq!(device_from_instance("\"<urn:uuid:nope>\""), None);
    }

    #[test]
    fn cisco_phone_registers_its_line() {
        let c = cluster();
        let d = decide(&c, &register("10001", CISCO, ""), 3600, own_lines).unwrap();
        assert!(
            matches!(d, Decision::Bind { ref device, ref line, expires: 3600, .. } if device == "SEP00036BC7B973" && line == "10001")
        );
        // Expires is capped at the service parameter.
        let d = decide(&c, &register("10001", CISCO, ""), 120, own_lines).unwrap();
        assert!(matches!(d, Decision::Bind { expires: 120, .. }));
    }

    #[test]
    fn unknown_device_and_foreign_line_are_refused() {
        let c = cluster();
        let other = CISCO.replace("00036bc7b973", "0000deadbeef");
        let e = decide(&c, &register("10001", &other, ""), 3600, own_lines).unwrap_err();
        assert_eq!(e.status, 404);
        assert!(e.reason.contains("SEP0000DEADBEEF"), "{}", e.reason);
        let e = decide(&c, &register("23923", CISCO, ""), 3600, own_lines).unwrap_err();
        assert_eq!(e.status, 403);
    }

    /// After an EM login the phone drops its old line first: that unregister is accepted
    /// (issue 4's em_hotdesk golden recorded a 403 here), while binding it is still refused.
    #[test]
    fn r4_a_device_may_unregister_a_line_it_no_longer_has() {
        let c = cluster();
        let gone = CISCO.replace("expires=3600", "expires=0");
        let d = decide(&c, &register("23923", &gone, ""), 3600, own_lines).unwrap();
        assert!(
            matches!(d, Decision::Unbind { ref device, ref line, .. } if device == "SEP00036BC7B973" && line == "23923")
        );
        let query = "Contact: *\r\n";
        let d = decide(
            &c,
            &register("23923", query, "Expires: 0\r\n"),
            3600,
            own_lines,
        );
        assert!(matches!(d, Ok(Decision::Unbind { .. })), "{d:?}");
    }

    #[test]
    fn without_instance_the_dn_must_name_one_device() {
        let c = cluster();
        let plain = "Contact: <sip:23923@127.0.0.9:5060>\r\n";
        let d = decide(&c, &register("23923", plain, ""), 3600, own_lines).unwrap();
        assert!(matches!(d, Decision::Bind { ref device, .. } if device == "SEP00036BC7B975"));
        let shared = "Contact: <sip:10002@127.0.0.9:5060>\r\n";
        assert_eq!(
            decide(&c, &register("10002", shared, ""), 3600, own_lines)
                .unwrap_err()
                .status,
            403
        );
    }

    #[test]
    fn expires_zero_and_wildcard_unbind() {
        let c = cluster();
        let d = decide(
            &c,
            &register("10001", &CISCO.replace("expires=3600", "expires=0"), ""),
            3600,
            own_lines,
        )
        .unwrap();
        assert!(matches!(d, Decision::Unbind { .. }));
        let star = "Contact: *\r\n";
        let e = decide(&c, &register("23923", star, ""), 3600, own_lines).unwrap_err();
        assert_eq!(e.status, 400, "* without Expires: 0");
        let d = decide(
            &c,
            &register("23923", star, "Expires: 0\r\n"),
            3600,
            own_lines,
        )
        .unwrap();
        assert!(matches!(d, Decision::Unbind { .. }));
        let d = decide(&c, &register("23923", "", ""), 3600, own_lines).unwrap();
        assert!(matches!(d, Decision::Query { .. }));
    }

    /// The table keeps what a REGISTER asks at the time it is handed, reports live bindings
    /// only, and returns the database write each change needs.
    #[test]
    fn r14_bindings_apply_query_and_unbind_with_their_writes() {
        let mut t = Bindings::new("n1");
        let src: SocketAddr = "127.0.0.2:5060".parse().unwrap();
        let bind = Decision::Bind {
            device: "SEP00036BC7B973".into(),
            line: "10001".into(),
            contact: "sip:10001@127.0.0.2:5060".into(),
            instance: None,
            expires: 120,
        };
        let (bound, write) = t.apply(&bind, Transport::Tcp, src, 1000);
        assert_eq!(bound.len(), 1);
        assert_eq!(bound[0].expires_at, 1120);
        match write {
            Some(Write::Upsert(row)) => {
                assert_eq!((row.node.as_str(), row.transport.as_str()), ("n1", "TCP"));
                assert_eq!((row.expires_at, row.updated_at), (1120, 1000));
            }
            other => panic!("{other:?}"),
        }
        let query = Decision::Query {
            device: "SEP00036BC7B973".into(),
            line: "10001".into(),
        };
        assert_eq!(t.apply(&query, Transport::Tcp, src, 1119).0, bound);
        assert_eq!(t.apply(&query, Transport::Tcp, src, 1120), (vec![], None));
        assert_eq!(t.device_bindings("SEP00036BC7B973", 1119), bound);
        let unbind = Decision::Unbind {
            device: "SEP00036BC7B973".into(),
            line: "10001".into(),
            contact: Some("sip:10001@127.0.0.2:5060".into()),
        };
        let (left, write) = t.apply(&unbind, Transport::Tcp, src, 1001);
        assert!(left.is_empty());
        assert_eq!(
            write,
            Some(Write::Remove {
                device: "SEP00036BC7B973".into(),
                line: "10001".into()
            })
        );
        assert_eq!(t.count(1001), 0);
        assert!(t.sweep(5000).is_empty());
    }

    fn bind(contact: &str) -> Decision {
        Decision::Bind {
            device: "SEP00036BC7B973".into(),
            line: "10001".into(),
            contact: contact.into(),
            instance: Some("\"<urn:uuid:00000000-0000-0000-0000-00036bc7b973>\"".into()),
            expires: 120,
        }
    }

    fn unbind(contact: Option<&str>) -> Decision {
        Decision::Unbind {
            device: "SEP00036BC7B973".into(),
            line: "10001".into(),
            contact: contact.map(str::to_string),
        }
    }

    /// Issue 15's hijack: with digest off, a REGISTER from another address carrying the
    /// phone's +sip.instance replaced its binding, and the same with Expires: 0 removed it.
    /// Now the registrant holding the device keeps it until it expires.
    #[test]
    fn r15_a_second_registrant_from_another_address_is_refused() {
        let mut t = Bindings::new("n1");
        let phone: SocketAddr = "127.0.0.10:5060".parse().unwrap();
        let thief: SocketAddr = "127.0.0.66:5060".parse().unwrap();
        let (b, _) = t
            .register(
                &bind("sip:10001@127.0.0.10:5060"),
                Transport::Udp,
                phone,
                1000,
                false,
            )
            .unwrap();
        assert_eq!(b.len(), 1);
        let held = t
            .register(
                &bind("sip:10001@127.0.0.66:5060"),
                Transport::Udp,
                thief,
                1001,
                false,
            )
            .unwrap_err();
        assert_eq!(held.source, phone);
        for d in [
            unbind(Some("sip:10001@127.0.0.10:5060")),
            unbind(None),
            Decision::Query {
                device: "SEP00036BC7B973".into(),
                line: "10001".into(),
            },
        ] {
            assert!(
                t.register(&d, Transport::Udp, thief, 1002, false).is_err(),
                "{d:?}"
            );
        }
        // Another line of the same device is the same device.
        let other_line = Decision::Bind {
            device: "SEP00036BC7B973".into(),
            line: "10009".into(),
            contact: "sip:10009@127.0.0.66:5060".into(),
            instance: None,
            expires: 60,
        };
        assert!(t
            .register(&other_line, Transport::Udp, thief, 1002, false)
            .is_err());
        // A second phone program on the phone's host has another UDP port: another registrant.
        let twin: SocketAddr = "127.0.0.10:40000".parse().unwrap();
        assert!(t
            .register(
                &bind("sip:10001@127.0.0.10:40000"),
                Transport::Udp,
                twin,
                1003,
                false
            )
            .is_err());
        assert_eq!(
            t.binding("SEP00036BC7B973", "10001", 1003).unwrap().source,
            phone
        );
        // The holder refreshes; once its binding expires, another may register.
        assert!(t
            .register(
                &bind("sip:10001@127.0.0.10:5060"),
                Transport::Udp,
                phone,
                1004,
                false
            )
            .is_ok());
        assert!(t
            .register(
                &bind("sip:10001@127.0.0.66:5060"),
                Transport::Udp,
                thief,
                1124,
                false
            )
            .is_ok());
        // Digest credentials that verified let a phone move.
        assert!(t
            .register(
                &bind("sip:10001@127.0.0.10:5060"),
                Transport::Udp,
                phone,
                1125,
                true
            )
            .is_ok());
    }

    /// Over TCP and TLS every connection has a new source port: the host decides.
    #[test]
    fn r15_a_stream_registrant_reconnecting_keeps_its_device() {
        let mut t = Bindings::new("n1");
        let first: SocketAddr = "127.0.0.10:40001".parse().unwrap();
        let again: SocketAddr = "127.0.0.10:40002".parse().unwrap();
        let c = "sip:10001@127.0.0.10:5060;transport=tcp";
        assert!(t
            .register(&bind(c), Transport::Tcp, first, 1000, false)
            .is_ok());
        assert!(t
            .register(&bind(c), Transport::Tcp, again, 1001, false)
            .is_ok());
        let thief: SocketAddr = "127.0.0.66:40003".parse().unwrap();
        assert!(t
            .register(&bind(c), Transport::Tcp, thief, 1002, false)
            .is_err());
    }

    /// RFC 3261 10.3: an unREGISTER removes only the contact it names.
    #[test]
    fn r15_unregister_removes_only_the_contact_it_names() {
        let mut t = Bindings::new("n1");
        let phone: SocketAddr = "127.0.0.10:5060".parse().unwrap();
        t.register(
            &bind("sip:10001@127.0.0.10:5060"),
            Transport::Udp,
            phone,
            1000,
            false,
        )
        .unwrap();
        let (left, write) = t
            .register(
                &unbind(Some("sip:10001@127.0.0.10:5999")),
                Transport::Udp,
                phone,
                1001,
                false,
            )
            .unwrap();
        assert_eq!((left.len(), write), (1, None));
        assert!(t.is_registered("SEP00036BC7B973", 1001));
        let (left, write) = t
            .register(
                &unbind(Some("sip:10001@127.0.0.10:5060")),
                Transport::Udp,
                phone,
                1002,
                false,
            )
            .unwrap();
        assert!(left.is_empty());
        assert!(matches!(write, Some(Write::Remove { .. })));
        assert!(!t.is_registered("SEP00036BC7B973", 1002));
    }

    fn row(node: &str, source: &str, expires_at: i64) -> RegistrationRow {
        RegistrationRow {
            device: "SEP00036BC7B973".into(),
            line: "10001".into(),
            contact: format!("sip:10001@{source}"),
            instance: None,
            transport: "UDP".into(),
            source: source.into(),
            node: node.into(),
            expires_at,
            updated_at: expires_at - 120,
        }
    }

    /// Issue 16: another node's registrations, heard on the change feed, are in the table
    /// with their node; the echo of our own write is not taken (memory may be newer); the
    /// same second-registrant rule holds against them.
    #[test]
    fn r16_other_nodes_bindings_are_learnt_and_hold_the_device() {
        let mut t = Bindings::new("n1");
        assert!(!t.learn(row("n1", "127.0.0.10:5060", 1120)), "own echo");
        assert_eq!(t.count(1000), 0);
        assert!(t.learn(row("n2", "127.0.0.10:5060", 1120)));
        let b = t.binding("SEP00036BC7B973", "10001", 1000).unwrap();
        assert_eq!(b.node, "n2");
        assert_eq!((t.count(1000), t.count_here(1000)), (1, 0));
        let thief: SocketAddr = "127.0.0.66:5060".parse().unwrap();
        assert!(t
            .register(
                &bind("sip:10001@127.0.0.66:5060"),
                Transport::Udp,
                thief,
                1001,
                false
            )
            .is_err());
        // The phone itself moves here: the binding is ours now.
        let phone: SocketAddr = "127.0.0.10:5060".parse().unwrap();
        t.register(
            &bind("sip:10001@127.0.0.10:5060"),
            Transport::Udp,
            phone,
            1002,
            false,
        )
        .unwrap();
        assert_eq!(t.count_here(1002), 1);
        // A removal of the row n2 held (a stale one) leaves our newer binding.
        assert!(!t.forget(&row("n2", "127.0.0.10:5060", 1120)));
        assert!(t.is_registered("SEP00036BC7B973", 1002));
        // A removal of exactly what we hold from another node goes.
        let mut u = Bindings::new("n1");
        u.learn(row("n2", "127.0.0.10:5060", 1120));
        assert!(u.forget(&row("n2", "127.0.0.10:5060", 1120)));
        assert_eq!(u.count(1000), 0);
    }

    /// On reconnect the stored rows of other nodes replace memory; ours stay.
    #[test]
    fn r16_resync_takes_other_nodes_rows_and_keeps_ours() {
        let mut t = Bindings::new("n1");
        let phone: SocketAddr = "127.0.0.11:5060".parse().unwrap();
        let mine = Decision::Bind {
            device: "SEP00036BC7B974".into(),
            line: "10002".into(),
            contact: "sip:10002@127.0.0.11:5060".into(),
            instance: None,
            expires: 600,
        };
        t.register(&mine, Transport::Udp, phone, 1000, false)
            .unwrap();
        t.learn(row("n2", "127.0.0.10:5060", 1120));
        let mut gone_elsewhere = row("n3", "127.0.0.12:5060", 1300);
        gone_elsewhere.device = "SEP00036BC7B975".into();
        gone_elsewhere.line = "23923".into();
        t.learn(gone_elsewhere);
        assert_eq!(t.count(1000), 3);
        // Stored now: n2's row moved to n3; n3's other row is gone; ours not written yet.
        let changed = t.resync(vec![row("n3", "127.0.0.10:5060", 1200)]);
        assert_eq!(changed, 2);
        assert_eq!(
            t.binding("SEP00036BC7B973", "10001", 1000).unwrap().node,
            "n3"
        );
        assert!(t.binding("SEP00036BC7B975", "23923", 1000).is_none());
        assert!(t.binding("SEP00036BC7B974", "10002", 1000).is_some());
    }
}
