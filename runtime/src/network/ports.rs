//! Published ports: `-p [IP:][HOST:]CONTAINER[/tcp|udp]` (ranges `8000-8001:80-81` too) and
//! the image's `ExposedPorts` for `-P`, turned into the CNI portmap plugin's
//! `portMappings`. Host port 0 means "any free port", chosen when the container attaches.

use std::fmt;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address it is published on (`None`: every address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<Ipv4Addr>,
    /// The host port (0 until a free one is chosen).
    pub host_port: u16,
    /// The container's port.
    pub container_port: u16,
    /// TCP or UDP.
    #[serde(default)]
    pub protocol: Protocol,
}

impl PortMapping {
    /// The entry of the portmap plugin's `runtimeConfig.portMappings`.
    pub fn cni(&self) -> Value {
        json!({
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol.to_string(),
            "hostIP": self.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        })
    }

    /// Whether the two take the same host port.
    pub fn clashes(&self, other: &PortMapping) -> bool {
        let ips_meet = match (self.host_ip, other.host_ip) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.host_port != 0 && self.host_port == other.host_port && self.protocol == other.protocol && ips_meet
    }

    /// Docker's key for the container side: `80/tcp`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.container_port, self.protocol)
    }
}

/// Why a port specification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid port {spec:?}: {reason} (use [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp], ports 1-65535, ranges as 8000-8009)")]
pub struct PortError {
    /// What was given.
    pub spec: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A port or a range `A-B`, as (first, count).
fn range(text: &str, spec: &str) -> Result<(u16, u16), PortError> {
    let bad = |reason: &str| PortError { spec: spec.to_string(), reason: reason.to_string() };
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad(&format!("{p:?} is not a port")));
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if b < a {
                return Err(bad("a range must go upwards"));
            }
            Ok((a, b - a + 1))
        }
        None => Ok((port(text)?, 1)),
    }
}

/// Parses one `-p` value into its mappings (one per port of a range).
pub fn parse_publish(spec: &str) -> Result<Vec<PortMapping>, PortError> {
    let bad = |reason: &str| PortError { spec: spec.to_string(), reason: reason.to_string() };
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((rest, "tcp")) => (rest, Protocol::Tcp),
        Some((rest, "udp")) => (rest, Protocol::Udp),
        Some((_, other)) => return Err(bad(&format!("protocol {other:?} is not tcp or udp"))),
        None => (spec, Protocol::Tcp),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [ip, h, c] => (Some(*ip), (!h.is_empty()).then_some(*h), *c),
        _ => return Err(bad("too many colons (IPv6 host addresses are not supported)")),
    };
    let host_ip = match ip {
        None | Some("") => None,
        Some(ip) => Some(ip.parse::<Ipv4Addr>().map_err(|_| bad(&format!("{ip:?} is not an IPv4 address")))?),
    }
    .filter(|ip| !ip.is_unspecified());
    let (container_first, count) = range(container, spec)?;
    let host_first = match host {
        None => None,
        Some(h) => {
            let (first, host_count) = range(h, spec)?;
            if host_count != count {
                return Err(bad("the host and container ranges differ in length"));
            }
            Some(first)
        }
    };
    if container_first.checked_add(count - 1).is_none() {
        return Err(bad("the range goes past 65535"));
    }
    Ok((0..count)
        .map(|i| PortMapping {
            host_ip,
            host_port: host_first.map_or(0, |h| h + i),
            container_port: container_first + i,
            protocol,
        })
        .collect())
}

/// The mappings for `-P`: every port of the image's `ExposedPorts` (`80/tcp`, `53/udp`, `8080`)
/// on a free host port; ports already published with `-p` are left out.
pub fn exposed(exposed_ports: &[String], published: &[PortMapping]) -> Vec<PortMapping> {
    exposed_ports
        .iter()
        .filter_map(|p| {
            let (port, protocol) = match p.split_once('/') {
                Some((port, "udp")) => (port, Protocol::Udp),
                Some((port, "tcp")) | Some((port, "")) => (port, Protocol::Tcp),
                Some(_) => return None,
                None => (p.as_str(), Protocol::Tcp),
            };
            let container_port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
            Some(PortMapping { host_ip: None, host_port: 0, container_port, protocol })
        })
        .filter(|m| !published.iter().any(|p| p.container_port == m.container_port && p.protocol == m.protocol))
        .collect()
}

/// A host port that is free now on `ip` for `protocol` (the kernel picks it).
pub fn free_port(ip: Option<Ipv4Addr>, protocol: Protocol) -> std::io::Result<u16> {
    let addr = (ip.unwrap_or(Ipv4Addr::UNSPECIFIED), 0);
    match protocol {
        Protocol::Tcp => Ok(TcpListener::bind(addr)?.local_addr()?.port()),
        Protocol::Udp => Ok(UdpSocket::bind(addr)?.local_addr()?.port()),
    }
}

/// Whether something on the host listens on the mapping's port already.
pub fn in_use_on_host(m: &PortMapping) -> bool {
    let addr = (m.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), m.host_port);
    match m.protocol {
        Protocol::Tcp => TcpListener::bind(addr).is_err(),
        Protocol::Udp => UdpSocket::bind(addr).is_err(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> PortMapping {
        let all = parse_publish(spec).unwrap();
        assert_eq!(all.len(), 1, "{spec}");
        all[0]
    }

    #[test]
    fn publish_specs_parse_like_docker() {
        let m = one("127.0.0.1:8080:80");
        assert_eq!((m.host_ip, m.host_port, m.container_port), (Some(Ipv4Addr::LOCALHOST), 8080, 80));
        assert_eq!(m.protocol, Protocol::Tcp);
        assert_eq!(one("8080:80/udp").protocol, Protocol::Udp);
        assert_eq!(one("80").host_port, 0);
        assert_eq!(one("127.0.0.1::80").host_port, 0);
        assert_eq!(one("0.0.0.0:81:80").host_ip, None);
        let r = parse_publish("8000-8002:80-82").unwrap();
        assert_eq!(
            r.iter().map(|m| (m.host_port, m.container_port)).collect::<Vec<_>>(),
            [(8000, 80), (8001, 81), (8002, 82)]
        );
        for bad in ["", "0", "x:80", "80/sctp", "1.2.3:80:80", "8000-8001:80", "::1:80:80", "70000", "9-8"] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
        assert_eq!(m.cni()["hostIP"], "127.0.0.1");
        assert_eq!(m.key(), "80/tcp");
    }

    #[test]
    fn exposed_ports_and_clashes() {
        let published = parse_publish("9000:80").unwrap();
        let ports = exposed(&["80/tcp".into(), "53/udp".into(), "8080".into(), "x/tcp".into()], &published);
        assert_eq!(ports.iter().map(|m| m.key()).collect::<Vec<_>>(), ["53/udp", "8080/tcp"]);
        let a = one("127.0.0.1:9000:80");
        assert!(a.clashes(&one("9000:81")));
        assert!(!a.clashes(&one("127.0.0.2:9000:81")));
        assert!(!a.clashes(&one("9000:80/udp")));
        assert!(!one("80").clashes(&one("80")), "port 0 is not chosen yet");
    }
}
