//! Phone configuration files (`SEP<MAC>.cnf.xml`), generated from the cluster definition on
//! every request, so they always reflect the device as it is now.
//!
//! The layout follows a real Unified CM 12.x SIP phone file: device pool with
//! its Unified CM group and SIP ports, the SIP profile with its lines, DSCP values as ToS bytes,
//! the service URLs and `phoneServices` with the Services Provisioning setting.

use std::fmt::Write;

use crate::cluster::Cluster;
use crate::config::model::{
    ClusterDefinition, Device, NodeService, ServicesProvisioning, SipTransport,
};
use crate::config::validate::is_device_name;
use crate::node::NodeState;
use crate::wire::xml::escape as esc;

/// The file served for `name`, or `None` when there is no such device.
pub fn file_for(state: &NodeState, def: &Cluster, name: &str) -> Option<String> {
    if name == "ConfigFileCacheList.txt" {
        return Some(cache_list(def));
    }
    let device = name.strip_suffix(".cnf.xml")?;
    if !is_device_name(device) {
        return None;
    }
    // A phone of this cluster logged in at its user's home cluster (EMCC): the small
    // configuration that sends it to the home's TFTP.
    if def.device(device).is_some() {
        if let Some(x) = crate::services::emcc::visiting_config(state, device) {
            return Some(x);
        }
    }
    // With an Extension Mobility login, the profile's lines, speed dials and services.
    let dev = def.effective_device(device)?;
    Some(device_config(state, def, &dev))
}

/// Cisco TFTP's list of the configuration files it serves, one `SEP<MAC>.cnf.xml` a line, in
/// the definition's order (simulated phones take the first N from it).
fn cache_list(def: &Cluster) -> String {
    let mut out = String::new();
    for d in &def.devices {
        out.push_str(&d.name);
        out.push_str(".cnf.xml\n");
    }
    out
}

fn device_config(state: &NodeState, def: &ClusterDefinition, dev: &Device) -> String {
    let ep = &def.enterprise_parameters;
    let q = &def.qos;
    let url = |configured: &Option<String>, default: String| {
        esc(&state.expand_url(configured.as_deref().unwrap_or(&default)))
    };
    let http = &state.http_base;
    let https = &state.https_base;
    // The node's real SIP address (port 0 in tests picks one), for this node's own entry.
    let (sip_host, own_sip) = split_host_port(&state.sip_host);
    let sip_port = own_sip.unwrap_or(crate::node::SIP_PORT);
    let mut x = String::new();
    let _ = writeln!(x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(x, "<device xsi:type=\"axl:XIPPhone\" ctiid=\"1\">");
    let _ = writeln!(x, "<fullConfig>true</fullConfig>");
    let _ = writeln!(x, "<deviceProtocol>SIP</deviceProtocol>");
    let _ = writeln!(x, "<devicePool>");
    let _ = writeln!(x, "<name>{}</name>", esc(&dev.device_pool));
    let _ = writeln!(x, "<callManagerGroup><members>");
    let pool = def.device_pools.iter().find(|p| p.name == dev.device_pool);
    let group: Vec<&str> = pool
        .map(|p| p.node_group.iter().map(String::as_str).collect())
        .unwrap_or_default();
    for (i, n) in group.iter().enumerate() {
        let (addr, ports) = if *n == state.node.name {
            (sip_host.clone(), own_ports(state))
        } else {
            match def.nodes.iter().find(|x| x.name == *n) {
                Some(node) => (node.address.clone(), defined_ports(node)),
                None => (n.to_string(), MemberPorts::default()),
            }
        };
        // Only the listeners the member has: ucm speaks no SCCP, so no ethernetPhonePort.
        let mut p = String::new();
        if let Some(sip) = ports.sip {
            let _ = write!(p, "<sipPort>{sip}</sipPort>");
        }
        if let Some(sips) = ports.sips {
            let _ = write!(p, "<securedSipPort>{sips}</securedSipPort>");
        }
        let _ = writeln!(
            x,
            "<member priority=\"{i}\"><callManager><name>{}</name><ports>{p}</ports><processNodeName>{}</processNodeName></callManager></member>",
            esc(n),
            esc(&addr)
        );
    }
    let _ = writeln!(x, "</members></callManagerGroup>");
    let _ = writeln!(x, "</devicePool>");
    let _ = writeln!(x, "<sipProfile>");
    let _ = writeln!(
        x,
        "<startMediaPort>16384</startMediaPort><stopMediaPort>32766</stopMediaPort>"
    );
    let _ = writeln!(x, "<dscpForAudio>{}</dscpForAudio>", q.audio.tos());
    let _ = writeln!(x, "<dscpVideo>{}</dscpVideo>", q.video.tos());
    let _ = writeln!(x, "<sipLines>");
    for (i, l) in dev.lines.iter().enumerate() {
        let dn = def
            .directory_numbers
            .iter()
            .find(|d| d.pattern == l.dn && d.partition == l.partition);
        let label = l
            .label
            .clone()
            .or_else(|| dn.and_then(|d| d.alerting_name.clone()))
            .unwrap_or_else(|| l.dn.clone());
        let display = l.display.clone().unwrap_or_else(|| label.clone());
        let _ = writeln!(
            x,
            "<line button=\"{}\" lineIndex=\"{}\"><featureID>9</featureID><featureLabel>{}</featureLabel><proxy>USECALLMANAGER</proxy><port>{sip_port}</port><name>{}</name><displayName>{}</displayName><maxNumCalls>{}</maxNumCalls><busyTrigger>{}</busyTrigger></line>",
            i + 1,
            i + 1,
            esc(&label),
            esc(&l.dn),
            esc(&display),
            dn.map_or(4, |d| d.max_calls),
            dn.map_or(2, |d| d.busy_trigger),
        );
    }
    for (j, sd) in dev.speed_dials.iter().enumerate() {
        let b = dev.lines.len() + j + 1;
        let _ = writeln!(
            x,
            "<line button=\"{b}\"><featureID>2</featureID><featureLabel>{}</featureLabel><speedDialNumber>{}</speedDialNumber></line>",
            esc(sd.label.as_deref().unwrap_or(&sd.number)),
            esc(&sd.number)
        );
    }
    // Service URL buttons (featureID 20 with serviceURI: the form public provisioning
    // examples of Cisco SIP phone files use; UNCONFIRMED against a Cisco document). The
    // device name is substituted here: the phone does not substitute in serviceURI.
    let secure_phone = crate::services::phone_services::device_uses_https(def, dev);
    for (k, b) in dev.service_url_buttons.iter().enumerate() {
        let Some(s) = def
            .phone_services
            .iter()
            .find(|s| s.name == b.service && s.enabled)
        else {
            continue;
        };
        let button = dev.lines.len() + dev.speed_dials.len() + k + 1;
        let uri = crate::services::phone_services::service_url(s, secure_phone, &dev.name, |u| {
            state.expand_url(u)
        });
        let _ = writeln!(
            x,
            "<line button=\"{button}\"><featureID>20</featureID><featureLabel>{}</featureLabel><serviceURI>{}</serviceURI></line>",
            esc(b.label.as_deref().unwrap_or(&s.name)),
            esc(&uri)
        );
    }
    let _ = writeln!(x, "</sipLines>");
    let _ = writeln!(x, "</sipProfile>");
    let _ = writeln!(
        x,
        "<dscpForSCCPPhoneConfig>{}</dscpForSCCPPhoneConfig>",
        q.call_signalling.tos()
    );
    let _ = writeln!(
        x,
        "<dscpForSCCPPhoneServices>{}</dscpForSCCPPhoneServices>",
        q.phone_services.tos()
    );
    let _ = writeln!(
        x,
        "<dscpForCm2Dvce>{}</dscpForCm2Dvce>",
        q.call_signalling.tos()
    );
    let security = def
        .phone_security_profiles
        .iter()
        .find(|p| Some(&p.name) == dev.security_profile.as_ref())
        .map_or(1, |p| match p.device_security_mode {
            crate::config::model::DeviceSecurityMode::NonSecure => 1,
            crate::config::model::DeviceSecurityMode::Authenticated => 2,
            crate::config::model::DeviceSecurityMode::Encrypted => 3,
        });
    // The user locale: a logged-in user's device profile's, the logout profile's, or the
    // device's own (element names as in a real Unified CM file).
    if let Some(locale) = dev.user_locale.as_deref().filter(|l| !l.is_empty()) {
        let _ = write!(x, "<userLocale><name>{}</name>", esc(locale));
        if let Some(code) = lang_code(locale) {
            let _ = write!(x, "<langCode>{code}</langCode>");
        }
        let _ = writeln!(x, "<winCharSet>utf-8</winCharSet></userLocale>");
    }
    let _ = writeln!(x, "<deviceSecurityMode>{security}</deviceSecurityMode>");
    let _ = writeln!(x, "<idleTimeout>{}</idleTimeout>", ep.url_idle_time);
    let _ = writeln!(
        x,
        "<authenticationURL>{}</authenticationURL>",
        url(
            &ep.url_authentication,
            format!("{http}/ccmcip/authenticate.jsp")
        )
    );
    // The Corporate Directory default service (URL `Application:Cisco/CorporateDirectory`)
    // disabled, and not given back to this device by a service with the same URL: the phone
    // gets no directory URL either (seed: default services can be disabled and replaced by a
    // custom service with the same URL). A definition that lists no such service keeps the
    // URL (phones before the default services were listed).
    let corporate = |u: &str| u.eq_ignore_ascii_case(CORPORATE_DIRECTORY);
    let corporate_listed = def.phone_services.iter().any(|s| corporate(&s.url));
    let corporate_on = !corporate_listed
        || crate::services::phone_services::services_for(def, dev)
            .iter()
            .any(|s| corporate(&s.url));
    let (dir_url, secure_dir_url) = if corporate_on {
        (
            url(
                &ep.url_directories,
                format!("{http}/ccmcip/xmldirectory.jsp"),
            ),
            url(
                &ep.secure_url_directories,
                format!("{https}/ccmcip/xmldirectory.jsp"),
            ),
        )
    } else {
        (String::new(), String::new())
    };
    let _ = writeln!(x, "<directoryURL>{dir_url}</directoryURL>");
    let _ = writeln!(x, "<idleURL>{}</idleURL>", url(&ep.url_idle, String::new()));
    let _ = writeln!(
        x,
        "<informationURL>{}</informationURL>",
        url(&ep.url_information, String::new())
    );
    let _ = writeln!(
        x,
        "<messagesURL>{}</messagesURL>",
        url(&ep.url_messages, String::new())
    );
    let _ = writeln!(
        x,
        "<servicesURL>{}</servicesURL>",
        url(
            &ep.url_services,
            format!("{http}/ccmcip/getservicesmenu.jsp")
        )
    );
    let _ = writeln!(
        x,
        "<secureAuthenticationURL>{}</secureAuthenticationURL>",
        url(
            &ep.secure_url_authentication,
            format!("{https}/ccmcip/authenticate.jsp")
        )
    );
    let _ = writeln!(
        x,
        "<secureDirectoryURL>{secure_dir_url}</secureDirectoryURL>"
    );
    let _ = writeln!(
        x,
        "<secureIdleURL>{}</secureIdleURL>",
        url(&ep.secure_url_idle, String::new())
    );
    let _ = writeln!(
        x,
        "<secureServicesURL>{}</secureServicesURL>",
        url(
            &ep.secure_url_services,
            format!("{https}/ccmcip/getservicesmenu.jsp")
        )
    );
    let _ = writeln!(
        x,
        "<transportLayerProtocol>{}</transportLayerProtocol>",
        transport_layer_protocol(def, dev)
    );
    if let Some(owner) = &dev.owner {
        let _ = writeln!(x, "<ownerId>{}</ownerId>", esc(owner));
    }
    // Services Provisioning (seed, "IP Phone Services Architecture"): Internal (0) lists
    // the services here and the phone never asks getservicesmenu.jsp, External URL (1) lists
    // none and the phone asks servicesURL, Both (2) does both. The device's own setting wins
    // over the enterprise parameter.
    let provisioning = dev
        .services_provisioning
        .unwrap_or(ep.services_provisioning);
    let provisioning_value = match provisioning {
        ServicesProvisioning::Internal => 0,
        ServicesProvisioning::ExternalUrl => 1,
        ServicesProvisioning::Both => 2,
    };
    let https = def
        .phone_security_profiles
        .iter()
        .find(|p| Some(&p.name) == dev.security_profile.as_ref())
        .is_some_and(|p| {
            p.device_security_mode != crate::config::model::DeviceSecurityMode::NonSecure
        });
    let _ = writeln!(x, "<phoneServices useHTTPS=\"{https}\">");
    let _ = writeln!(x, "<provisioning>{provisioning_value}</provisioning>");
    let listed = if provisioning == ServicesProvisioning::ExternalUrl {
        Vec::new()
    } else {
        def.phone_services
            .iter()
            .filter(|s| {
                s.enabled
                    && (s.enterprise_subscription || dev.subscribed_services.contains(&s.name))
            })
            .collect()
    };
    for s in listed {
        let t = match s.service_type {
            crate::config::model::ServiceType::Services => 0,
            crate::config::model::ServiceType::Directories => 1,
            crate::config::model::ServiceType::Messages => 2,
        };
        // Phone parameters (#DEVICENAME#) stay for the phone to substitute.
        let raw = match (&s.secure_url, https) {
            (Some(u), true) if !u.is_empty() => u.as_str(),
            _ => s.url.as_str(),
        };
        // UNCONFIRMED: 1 for a Java MIDlet. Real files show category="0" for XML services;
        // the MIDlet value is inferred from the Service Category list's order (XML, MIDlet).
        let category = match s.category {
            crate::config::model::ServiceCategory::Xml => 0,
            crate::config::model::ServiceCategory::JavaMidlet => 1,
        };
        let _ = writeln!(
            x,
            "<phoneService type=\"{t}\" category=\"{category}\"><name>{}</name><url>{}</url><vendor></vendor><version></version></phoneService>",
            esc(&s.name),
            esc(&state.expand_url(raw))
        );
    }
    let _ = writeln!(x, "</phoneServices>");
    let _ = writeln!(x, "</device>");
    x
}

/// The Corporate Directory default service's URL, the phone's own application (spec: the
/// built-in URLs `Application:Cisco/MissedCalls`, `/ReceivedCalls`, `/PlacedCalls`,
/// `/PersonalDirectory`, `/CorporateDirectory`).
pub const CORPORATE_DIRECTORY: &str = "Application:Cisco/CorporateDirectory";

/// `host` and `port` of `host:port` (`[v6]:port` too); a bare host has no port.
fn split_host_port(hp: &str) -> (String, Option<u16>) {
    let unbracket = |h: &str| h.trim_start_matches('[').trim_end_matches(']').to_string();
    match hp.rsplit_once(':') {
        // A bare IPv6 address has colons but no brackets: no port.
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (unbracket(h), p.parse().ok()),
        _ => (unbracket(hp), None),
    }
}

/// The SIP ports a Unified CM group member listens on; `None`: no such listener (or one
/// whose port cannot be known here).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct MemberPorts {
    sip: Option<u16>,
    sips: Option<u16>,
}

/// This node's real listeners (a port 0 in the definition became a real port).
fn own_ports(state: &NodeState) -> MemberPorts {
    if !state.node.services.contains(&NodeService::CallProcessing) {
        return MemberPorts::default();
    }
    MemberPorts {
        sip: split_host_port(&state.sip_host).1,
        sips: split_host_port(&state.sips_host).1,
    }
}

/// Another node's listeners as its definition gives them: the standard ports unless it sets
/// others; port 0 (any free port) cannot be known from here and is left out.
fn defined_ports(node: &crate::config::model::Node) -> MemberPorts {
    if !node.services.contains(&NodeService::CallProcessing) {
        return MemberPorts::default();
    }
    let known = |p: Option<u16>, standard: u16| Some(p.unwrap_or(standard)).filter(|p| *p != 0);
    MemberPorts {
        sip: known(node.ports.sip, crate::node::SIP_PORT),
        sips: known(node.ports.sips, crate::node::SIPS_PORT),
    }
}

/// `transportLayerProtocol` from the device's security profile. UNCONFIRMED values, those of
/// Unified CM's transport type list (1 TCP, 2 UDP, 3 TLS, 4 TCP+UDP; real files from the
/// default "TCP + UDP" profile carry 4); a device without a profile uses UDP, the default.
fn transport_layer_protocol(def: &ClusterDefinition, dev: &Device) -> u8 {
    let transport = def
        .phone_security_profiles
        .iter()
        .find(|p| Some(&p.name) == dev.security_profile.as_ref())
        .map(|p| p.transport)
        .unwrap_or_default();
    match transport {
        SipTransport::Tcp => 1,
        SipTransport::Udp => 2,
        SipTransport::Tls => 3,
    }
}

/// The language code of a Unified CM user locale name, for the locales Cisco's installers
/// most often carry; others are written by name only.
fn lang_code(locale: &str) -> Option<&'static str> {
    Some(match locale {
        "English_United_States" => "en_US",
        "English_United_Kingdom" => "en_GB",
        "French_France" => "fr_FR",
        "French_Canada" => "fr_CA",
        "German_Germany" => "de_DE",
        "Spanish_Spain" => "es_ES",
        "Italian_Italy" => "it_IT",
        "Dutch_Netherlands" => "nl_NL",
        "Portuguese_Brazil" => "pt_BR",
        "Japanese_Japan" => "ja_JP",
        "Chinese_China" => "zh_CN",
        _ => return None,
    })
}
