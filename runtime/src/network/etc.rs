//! `/etc/hosts` and `/etc/resolv.conf` of a container on a berth network: its own address
//! under its host name, and, on a user network, the network's DNS server (aardvark-dns on
//! the gateway) as its only name server; on the default bridge, as with Docker, the host's
//! name servers but those on the host's loopback, which the container cannot reach.

use super::Attachment;

/// Docker's fallback when the host has only loopback name servers.
const FALLBACK_SERVERS: &[&str] = &["8.8.8.8", "8.8.4.4"];

/// The container's `/etc/hosts`.
pub fn hosts(hostname: &str, a: &Attachment) -> String {
    format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{hostname}\n", a.address)
}

/// The container's `/etc/resolv.conf`, from the host's (`host`).
pub fn resolv_conf(a: &Attachment, dns: bool, host: &str) -> String {
    let mut out = String::new();
    let mut servers = Vec::new();
    for line in host.lines() {
        let line = line.trim();
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["nameserver", server] => {
                let loopback = server.parse::<std::net::IpAddr>().map_or(true, |ip| ip.is_loopback());
                if !loopback {
                    servers.push(server.to_string());
                }
            }
            ["search", ..] | ["options", ..] => {
                out.push_str(line);
                out.push('\n');
            }
            _ => {}
        }
    }
    if dns {
        servers = vec![a.gateway.to_string()];
    } else if servers.is_empty() {
        servers = FALLBACK_SERVERS.iter().map(|s| s.to_string()).collect();
    }
    for server in servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn attachment() -> Attachment {
        Attachment {
            container: "c".into(),
            network: "web".into(),
            dns: true,
            netns: "/x".into(),
            address: Ipv4Addr::new(10, 78, 0, 2),
            prefix: 24,
            gateway: Ipv4Addr::new(10, 78, 0, 1),
            mac: String::new(),
            ports: vec![],
            names: vec![],
            aliases: vec![],
            owner: None,
            config: serde_json::Value::Null,
            result: serde_json::Value::Null,
        }
    }

    #[test]
    fn resolv_conf_points_at_the_network_or_the_host() {
        let host = "# hi\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nsearch lan\noptions ndots:1\n";
        let a = attachment();
        assert_eq!(resolv_conf(&a, true, host), "search lan\noptions ndots:1\nnameserver 10.78.0.1\n");
        assert_eq!(resolv_conf(&a, false, host), "search lan\noptions ndots:1\nnameserver 10.255.255.53\n");
        assert_eq!(resolv_conf(&a, false, "nameserver 127.0.0.53\n"), "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        assert!(hosts("web1", &a).contains("10.78.0.2\tweb1\n"));
    }
}
