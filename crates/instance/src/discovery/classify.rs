//! What a host is, from what it answered: an SNMP agent's `sysObjectID` and
//! `sysDescr`, an SSH banner, an HTTP `Server` header, the names in a TLS
//! certificate, and which ports are open. The rules run strongest first — what the
//! host says about its operating system (SNMP, SSH, Windows' own services) before
//! what merely runs on it (a database port, a web server) — and every rule that
//! matched is kept as evidence, so an operator can see why a device is what it is.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What was learned of one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Open TCP ports.
    pub open_ports: Vec<u16>,
    /// What services sent first, by port (an SSH banner, an FTP greeting).
    pub banners: BTreeMap<u16, String>,
    /// An HTTP(S) `Server` header.
    pub http_server: Option<String>,
    /// Names in its TLS certificate (subject CN and DNS names).
    pub tls_names: Vec<String>,
    /// SNMP `sysDescr.0`.
    pub sys_descr: Option<String>,
    /// SNMP `sysObjectID.0`, dotted.
    pub sys_object_id: Option<String>,
}

/// The classes a device is put in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    /// A Linux (or other Unix) server.
    LinuxServer,
    /// A Windows server.
    WindowsServer,
    /// A router, switch, firewall or access point.
    NetworkDevice,
    /// A printer.
    Printer,
    /// A host seen only as a web server.
    WebServer,
    /// A host seen only as a database server.
    Database,
    /// Alive, nothing said what it is.
    Unknown,
}

impl DeviceClass {
    /// The name written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LinuxServer => "linux_server",
            Self::WindowsServer => "windows_server",
            Self::NetworkDevice => "network_device",
            Self::Printer => "printer",
            Self::WebServer => "web_server",
            Self::Database => "database",
            Self::Unknown => "unknown",
        }
    }
}

/// A class and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    /// The class.
    pub class: DeviceClass,
    /// Every rule that matched, strongest first (the first decided).
    pub reasons: Vec<String>,
}

/// Enterprise numbers (the arc under 1.3.6.1.4.1) of makers whose `sysObjectID` says
/// the class by itself.
const ENTERPRISES: &[(u32, DeviceClass, &str)] = &[
    (9, DeviceClass::NetworkDevice, "Cisco"),
    (2636, DeviceClass::NetworkDevice, "Juniper"),
    (30065, DeviceClass::NetworkDevice, "Arista"),
    (12356, DeviceClass::NetworkDevice, "Fortinet"),
    (25461, DeviceClass::NetworkDevice, "Palo Alto Networks"),
    (14988, DeviceClass::NetworkDevice, "MikroTik"),
    (2011, DeviceClass::NetworkDevice, "Huawei"),
    (311, DeviceClass::WindowsServer, "Microsoft"),
    (2435, DeviceClass::Printer, "Brother"),
    (1248, DeviceClass::Printer, "Epson"),
    (367, DeviceClass::Printer, "Ricoh"),
    (1602, DeviceClass::Printer, "Canon"),
    (253, DeviceClass::Printer, "Xerox"),
    (641, DeviceClass::Printer, "Lexmark"),
    (1347, DeviceClass::Printer, "Kyocera"),
];

/// Ports only printers listen on: JetDirect, LPD, IPP.
const PRINTER_PORTS: [u16; 3] = [9100, 515, 631];
/// Ports of database servers.
const DATABASE_PORTS: [(u16, &str); 7] = [
    (5432, "PostgreSQL"),
    (3306, "MySQL/MariaDB"),
    (1433, "SQL Server"),
    (1521, "Oracle"),
    (27017, "MongoDB"),
    (6379, "Redis"),
    (9042, "Cassandra"),
];
/// Ports of web servers.
const WEB_PORTS: [u16; 4] = [80, 443, 8080, 8443];

/// Classifies a host.
pub fn classify(e: &Evidence) -> Classification {
    let mut found: Vec<(DeviceClass, String)> = Vec::new();
    if let Some(oid) = &e.sys_object_id
        && let Some(number) = enterprise(oid)
        && let Some((_, class, maker)) = ENTERPRISES.iter().find(|(n, _, _)| *n == number)
    {
        found.push((*class, format!("SNMP sysObjectID {oid} is {maker}'s")));
    }
    if let Some(descr) = &e.sys_descr {
        let d = descr.to_ascii_lowercase();
        let class = if d.contains("windows") {
            Some(DeviceClass::WindowsServer)
        } else if [
            "cisco ios",
            "junos",
            "routeros",
            "fortios",
            "arista",
            "switch",
            "router",
        ]
        .iter()
        .any(|w| d.contains(w))
        {
            Some(DeviceClass::NetworkDevice)
        } else if ["printer", "jetdirect", "laserjet", "officejet"]
            .iter()
            .any(|w| d.contains(w))
        {
            Some(DeviceClass::Printer)
        } else if ["linux", "freebsd", "sunos", "aix", "hp-ux"]
            .iter()
            .any(|w| d.contains(w))
        {
            Some(DeviceClass::LinuxServer)
        } else {
            None
        };
        if let Some(class) = class {
            found.push((class, format!("SNMP sysDescr \"{}\"", short(descr))));
        }
    }
    if let Some(banner) = e
        .banners
        .get(&22)
        .or_else(|| e.banners.values().find(|b| b.starts_with("SSH-")))
    {
        let b = banner.to_ascii_lowercase();
        let class = if b.contains("windows") {
            Some(DeviceClass::WindowsServer)
        } else if b.contains("cisco") || b.contains("rosssh") || b.contains("comware") {
            Some(DeviceClass::NetworkDevice)
        } else if b.starts_with("ssh-") {
            Some(DeviceClass::LinuxServer)
        } else {
            None
        };
        if let Some(class) = class {
            found.push((class, format!("SSH banner \"{}\"", short(banner))));
        }
    }
    let open = |p: u16| e.open_ports.contains(&p);
    if open(3389) || (open(135) && open(445)) {
        found.push((
            DeviceClass::WindowsServer,
            "Windows services open (RDP 3389, or RPC 135 with SMB 445)".into(),
        ));
    }
    if let Some(server) = &e.http_server
        && server.to_ascii_lowercase().contains("microsoft-iis")
    {
        found.push((
            DeviceClass::WindowsServer,
            format!("HTTP Server \"{}\"", short(server)),
        ));
    }
    let printer: Vec<u16> = PRINTER_PORTS.into_iter().filter(|p| open(*p)).collect();
    if !printer.is_empty() {
        found.push((
            DeviceClass::Printer,
            format!("printing ports open: {printer:?}"),
        ));
    }
    let databases: Vec<&str> = DATABASE_PORTS
        .iter()
        .filter(|(p, _)| open(*p))
        .map(|(_, name)| *name)
        .collect();
    if !databases.is_empty() {
        found.push((
            DeviceClass::Database,
            format!("database ports open: {}", databases.join(", ")),
        ));
    }
    let web: Vec<u16> = WEB_PORTS.into_iter().filter(|p| open(*p)).collect();
    if !web.is_empty() || e.http_server.is_some() {
        let mut why = format!("web ports open: {web:?}");
        if let Some(server) = &e.http_server {
            why.push_str(&format!(", HTTP Server \"{}\"", short(server)));
        }
        if !e.tls_names.is_empty() {
            why.push_str(&format!(", TLS names {}", e.tls_names.join(", ")));
        }
        found.push((DeviceClass::WebServer, why));
    }
    match found.first() {
        Some((class, _)) => Classification {
            class: *class,
            reasons: found.into_iter().map(|(_, why)| why).collect(),
        },
        None => Classification {
            class: DeviceClass::Unknown,
            reasons: vec![if e.open_ports.is_empty() {
                "alive, no open port among those scanned".into()
            } else {
                format!("open ports {:?} say nothing of what it is", e.open_ports)
            }],
        },
    }
}

/// The enterprise number of a `sysObjectID` under 1.3.6.1.4.1.
fn enterprise(oid: &str) -> Option<u32> {
    let rest = oid.trim_start_matches('.').strip_prefix("1.3.6.1.4.1.")?;
    rest.split('.').next()?.parse().ok()
}

/// At most 80 characters of outside text, one line.
fn short(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(80)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ports(ports: &[u16]) -> Evidence {
        Evidence {
            open_ports: ports.to_vec(),
            ..Evidence::default()
        }
    }

    #[test]
    fn what_the_host_says_of_itself_comes_first() {
        let mut e = with_ports(&[22, 80, 5432]);
        e.banners
            .insert(22, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3".into());
        let c = classify(&e);
        assert_eq!(c.class, DeviceClass::LinuxServer);
        assert!(c.reasons[0].contains("OpenSSH_9.2p1 Debian"));
        assert!(c.reasons.iter().any(|r| r.contains("PostgreSQL")), "{c:?}");

        let e = Evidence {
            sys_object_id: Some("1.3.6.1.4.1.9.1.1208".into()),
            sys_descr: Some("Cisco IOS Software, C2960X".into()),
            ..with_ports(&[22, 23])
        };
        assert_eq!(classify(&e).class, DeviceClass::NetworkDevice);

        let e = Evidence {
            sys_descr: Some("Linux web3 6.1.0-18-amd64 #1 SMP x86_64".into()),
            sys_object_id: Some(".1.3.6.1.4.1.8072.3.2.10".into()),
            ..Evidence::default()
        };
        assert_eq!(classify(&e).class, DeviceClass::LinuxServer);
    }

    #[test]
    fn services_decide_when_nothing_else_does() {
        assert_eq!(
            classify(&with_ports(&[135, 445, 3389])).class,
            DeviceClass::WindowsServer
        );
        assert_eq!(
            classify(&with_ports(&[80, 9100])).class,
            DeviceClass::Printer
        );
        assert_eq!(classify(&with_ports(&[3306])).class, DeviceClass::Database);
        assert_eq!(classify(&with_ports(&[443])).class, DeviceClass::WebServer);
        let iis = Evidence {
            http_server: Some("Microsoft-IIS/10.0".into()),
            ..with_ports(&[80])
        };
        assert_eq!(classify(&iis).class, DeviceClass::WindowsServer);
        let unknown = classify(&with_ports(&[7777]));
        assert_eq!(unknown.class, DeviceClass::Unknown);
        assert!(unknown.reasons[0].contains("7777"));
        assert_eq!(classify(&Evidence::default()).class, DeviceClass::Unknown);
    }

    #[test]
    fn outside_text_is_kept_short_and_on_one_line() {
        let mut e = with_ports(&[22]);
        e.banners
            .insert(22, format!("SSH-2.0-x\r\n{}", "A".repeat(500)));
        let c = classify(&e);
        assert!(c.reasons[0].len() < 120 && !c.reasons[0].contains('\n'));
    }

    proptest::proptest! {
        #[test]
        fn any_evidence_gets_a_class_and_a_reason(
            ports in proptest::collection::vec(proptest::num::u16::ANY, 0..8),
            banner in "\\PC{0,40}", descr in proptest::option::of("\\PC{0,40}"), oid in proptest::option::of("[0-9.]{0,30}"),
        ) {
            let mut e = with_ports(&ports);
            e.banners.insert(22, banner);
            e.sys_descr = descr;
            e.sys_object_id = oid;
            let c = classify(&e);
            proptest::prop_assert!(!c.reasons.is_empty());
        }
    }
}
