//! What a simulated phone takes from its configuration file (`SEP<MAC>.cnf.xml`): the Unified CM group (where to register), the lines, the service URLs and the DSCP
//! values. Unknown elements are ignored; missing ones take Cisco's defaults.

use serde::Serialize;

use super::xml;
use crate::net::Dscp;

/// One Unified CM node of the device pool's group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallManager {
    pub priority: u32,
    pub name: String,
    /// `processNodeName`: the address phones use.
    pub host: String,
    pub sip_port: u16,
}

impl CallManager {
    /// `host:port` of its SIP listener.
    pub fn sip_address(&self) -> Option<String> {
        if self.host.is_empty() {
            return None;
        }
        Some(if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.sip_port)
        } else {
            format!("{}:{}", self.host, self.sip_port)
        })
    }
}

/// One line button (`featureID` 9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub button: u32,
    /// The directory number (`name`).
    pub dn: String,
    pub label: String,
    pub display_name: String,
    pub max_calls: u32,
    pub busy_trigger: u32,
}

/// The parsed configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PhoneConfig {
    pub device_pool: Option<String>,
    /// By priority, lowest first.
    pub call_managers: Vec<CallManager>,
    pub lines: Vec<Line>,
    pub authentication_url: Option<String>,
    pub services_url: Option<String>,
    pub directory_url: Option<String>,
    /// URL Idle (`idleURL`): fetched and shown after `idle_timeout` seconds of idle.
    pub idle_url: Option<String>,
    /// URL Idle Time (`idleTimeout`, seconds); 0: never.
    pub idle_timeout: u32,
    /// DSCP of the phone's RTP (`dscpForAudio`, a ToS byte in the file).
    pub dscp_audio: Dscp,
    /// DSCP of the phone's SIP signalling (`dscpForCm2Dvce`).
    pub dscp_signalling: Dscp,
    /// DSCP of the phone's HTTP services traffic (`dscpForSCCPPhoneServices`).
    pub dscp_services: Dscp,
    pub owner: Option<String>,
    pub device_security_mode: u8,
    /// `phoneServices/provisioning`: 0 Internal (the list below), 1 External URL (ask
    /// servicesURL), 2 Both.
    pub services_provisioning: u8,
    /// `phoneServices useHTTPS`.
    pub services_use_https: bool,
    /// The `phoneService` entries, in file order.
    pub phone_services: Vec<ConfigService>,
    /// An EMCC login: the visiting cluster's small configuration named the user's home
    /// cluster and its TFTP servers, and the rest of this configuration came from there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emcc: Option<EmccLogin>,
    /// Service URL buttons, by button.
    pub service_buttons: Vec<ServiceButton>,
}

/// The `emccLogin` element of a visiting cluster's small configuration (UNCONFIRMED name:
/// ucm's, Cisco's file for this step is not documented).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmccLogin {
    pub home_cluster: String,
    /// `host:port` of the home's TFTP-over-HTTP servers, default first.
    pub tftp_servers: Vec<String>,
    /// The one the configuration was fetched from (set by the phone).
    pub fetched_from: Option<String>,
}

/// One `phoneService` of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigService {
    /// 0 Applications/Services, 1 Directories, 2 Messages.
    #[serde(rename = "type")]
    pub service_type: u8,
    /// 0 XML, 1 Java MIDlet (the phone installs it from the JAD at `url`).
    pub category: u8,
    pub name: String,
    pub url: String,
}

/// A Service URL button (`featureID` 20): the key opens `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceButton {
    pub button: u32,
    pub label: String,
    pub url: String,
}

/// The file is not a phone configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a phone configuration file: {0}")]
pub struct ConfigError(pub String);

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|v| !v.is_empty())
}

fn tos(text: &str, name: &str, default: Dscp) -> Dscp {
    xml::text_of(text, name)
        .and_then(|v| v.parse::<u8>().ok())
        .map_or(default, Dscp::from_tos)
}

impl PhoneConfig {
    /// Parses the text of a `SEP<MAC>.cnf.xml`. Only the root `<device>` element is required.
    pub fn parse(text: &str) -> Result<PhoneConfig, ConfigError> {
        let device = xml::first(text, "device")
            .and_then(|d| d.inner)
            .ok_or_else(|| ConfigError("no <device> element".into()))?;
        let device_pool = xml::first(device, "devicePool").and_then(|p| p.inner);
        let mut call_managers = Vec::new();
        for (i, m) in xml::elements(device_pool.unwrap_or(""), "member")
            .into_iter()
            .enumerate()
        {
            let inner = m.inner.unwrap_or("");
            let priority = m
                .attr("priority")
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or(i as u32);
            let Some(host) = non_empty(xml::text_of(inner, "processNodeName")) else {
                continue;
            };
            call_managers.push(CallManager {
                priority,
                name: xml::text_of(inner, "name").unwrap_or_default(),
                host,
                sip_port: xml::text_of(inner, "sipPort")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(5060),
            });
        }
        call_managers.sort_by_key(|c| c.priority);
        let pool_name = device_pool.and_then(|p| {
            // The pool's own <name>, not a callManager's: the first <name> before <callManagerGroup>.
            let head = p.split("<callManagerGroup").next().unwrap_or("");
            non_empty(xml::text_of(head, "name"))
        });
        let mut lines = Vec::new();
        let mut service_buttons = Vec::new();
        let sip_lines = xml::first(device, "sipLines")
            .and_then(|l| l.inner)
            .unwrap_or("");
        for (i, l) in xml::elements(sip_lines, "line").into_iter().enumerate() {
            let inner = l.inner.unwrap_or("");
            let feature = xml::text_of(inner, "featureID").unwrap_or_else(|| "9".into());
            if feature == "20" {
                if let (Some(url), Some(button)) = (
                    non_empty(xml::text_of(inner, "serviceURI")),
                    l.attr("button").and_then(|b| b.trim().parse().ok()),
                ) {
                    service_buttons.push(ServiceButton {
                        button,
                        label: xml::text_of(inner, "featureLabel").unwrap_or_default(),
                        url,
                    });
                }
                continue;
            }
            if feature != "9" {
                continue;
            }
            let Some(dn) = non_empty(xml::text_of(inner, "name")) else {
                continue;
            };
            let label = non_empty(xml::text_of(inner, "featureLabel")).unwrap_or(dn.clone());
            let display_name =
                non_empty(xml::text_of(inner, "displayName")).unwrap_or(label.clone());
            let num = |name: &str, default: u32| {
                xml::text_of(inner, name)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(default)
            };
            lines.push(Line {
                button: l
                    .attr("button")
                    .and_then(|b| b.trim().parse().ok())
                    .unwrap_or(i as u32 + 1),
                dn,
                label,
                display_name,
                max_calls: num("maxNumCalls", 4),
                busy_trigger: num("busyTrigger", 2),
            });
        }
        lines.sort_by_key(|l| l.button);
        let services = xml::first(device, "phoneServices");
        let services_inner = services.and_then(|s| s.inner).unwrap_or("");
        let phone_services = xml::elements(services_inner, "phoneService")
            .into_iter()
            .filter_map(|e| {
                let inner = e.inner.unwrap_or("");
                Some(ConfigService {
                    service_type: e
                        .attr("type")
                        .and_then(|t| t.trim().parse().ok())
                        .unwrap_or(0),
                    category: e
                        .attr("category")
                        .and_then(|t| t.trim().parse().ok())
                        .unwrap_or(0),
                    name: xml::text_of(inner, "name").unwrap_or_default(),
                    url: non_empty(xml::text_of(inner, "url"))?,
                })
            })
            .collect();
        let emcc = xml::first(device, "emccLogin")
            .and_then(|e| e.inner)
            .map(|inner| EmccLogin {
                home_cluster: xml::text_of(inner, "homeCluster").unwrap_or_default(),
                tftp_servers: xml::elements(inner, "tftpServer")
                    .into_iter()
                    .filter_map(|t| non_empty(t.inner.map(|v| v.trim().to_string())))
                    .collect(),
                fetched_from: None,
            });
        Ok(PhoneConfig {
            emcc,
            services_provisioning: xml::text_of(services_inner, "provisioning")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
            services_use_https: services
                .and_then(|s| s.attr("useHTTPS"))
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            phone_services,
            service_buttons: {
                service_buttons.sort_by_key(|b: &ServiceButton| b.button);
                service_buttons
            },
            device_pool: pool_name,
            call_managers,
            lines,
            authentication_url: non_empty(xml::text_of(device, "authenticationURL")),
            services_url: non_empty(xml::text_of(device, "servicesURL")),
            directory_url: non_empty(xml::text_of(device, "directoryURL")),
            idle_url: non_empty(xml::text_of(device, "idleURL")),
            idle_timeout: xml::text_of(device, "idleTimeout")
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0),
            dscp_audio: tos(device, "dscpForAudio", Dscp::EF),
            dscp_signalling: tos(device, "dscpForCm2Dvce", Dscp::CS3),
            dscp_services: tos(device, "dscpForSCCPPhoneServices", Dscp::CS0),
            owner: non_empty(xml::text_of(device, "ownerId")),
            device_security_mode: xml::text_of(device, "deviceSecurityMode")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
        })
    }

    /// `host:port` of the first Unified CM of the group (where the phone registers).
    pub fn sip_server(&self) -> Option<String> {
        self.call_managers
            .first()
            .and_then(CallManager::sip_address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<device xsi:type="axl:XIPPhone" ctiid="1">
<devicePool>
<name>HQ_DP</name>
<callManagerGroup><members>
<member priority="1"><callManager><name>ucm-sub</name><ports><sipPort>5070</sipPort></ports><processNodeName>10.0.0.2</processNodeName></callManager></member>
<member priority="0"><callManager><name>ucm-pub</name><ports><ethernetPhonePort>2000</ethernetPhonePort><sipPort>45807</sipPort></ports><processNodeName>127.0.0.1</processNodeName></callManager></member>
</members></callManagerGroup>
</devicePool>
<sipProfile>
<dscpForAudio>184</dscpForAudio>
<sipLines>
<line button="2" lineIndex="2"><featureID>9</featureID><featureLabel>Second</featureLabel><name>10009</name><maxNumCalls>2</maxNumCalls></line>
<line button="1" lineIndex="1"><featureID>9</featureID><featureLabel>John &amp; Co</featureLabel><name>10001</name><displayName>John Smith</displayName><maxNumCalls>4</maxNumCalls><busyTrigger>2</busyTrigger></line>
<line button="3"><featureID>2</featureID><featureLabel>SD</featureLabel><speedDialNumber>9911</speedDialNumber></line>
<line button="4"><featureID>20</featureID><featureLabel>News &amp; Co</featureLabel><serviceURI>http://127.0.0.1:35781/news.xml</serviceURI></line>
</sipLines>
</sipProfile>
<dscpForCm2Dvce>96</dscpForCm2Dvce>
<authenticationURL>http://127.0.0.1:35781/ccmcip/authenticate.jsp</authenticationURL>
<servicesURL>http://127.0.0.1:35781/ccmcip/getservicesmenu.jsp</servicesURL>
<idleURL></idleURL>
<ownerId>jsmith</ownerId>
</device>"#;

    #[test]
    fn parses_the_node_file() {
        let c = PhoneConfig::parse(SAMPLE).unwrap();
        assert_eq!(c.device_pool.as_deref(), Some("HQ_DP"));
        assert_eq!(c.sip_server().as_deref(), Some("127.0.0.1:45807"));
        assert_eq!(c.call_managers.len(), 2);
        assert_eq!(c.lines.len(), 2);
        assert_eq!(c.lines[0].dn, "10001");
        assert_eq!(c.lines[0].label, "John & Co");
        assert_eq!(c.lines[0].display_name, "John Smith");
        assert_eq!(c.lines[1].dn, "10009");
        assert_eq!(c.lines[1].display_name, "Second");
        assert_eq!(c.lines[1].max_calls, 2);
        assert_eq!(c.dscp_audio, Dscp::EF);
        assert_eq!(c.dscp_signalling, Dscp::CS3);
        assert_eq!(
            c.authentication_url.as_deref(),
            Some("http://127.0.0.1:35781/ccmcip/authenticate.jsp")
        );
        assert_eq!(c.owner.as_deref(), Some("jsmith"));
        assert_eq!(
            c.service_buttons,
            vec![ServiceButton {
                button: 4,
                label: "News & Co".into(),
                url: "http://127.0.0.1:35781/news.xml".into()
            }]
        );
    }

    #[test]
    fn refuses_what_is_not_a_config_file() {
        assert!(PhoneConfig::parse("File not found\n").is_err());
        assert!(PhoneConfig::parse("<device/>").is_err());
        let minimal = PhoneConfig::parse("<device></device>").unwrap();
        assert!(minimal.lines.is_empty() && minimal.sip_server().is_none());
    }
}
