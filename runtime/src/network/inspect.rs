//! What `berth network inspect` and `berth inspect` show of networks and attachments, in the
//! shapes `docker network inspect` and `docker container inspect` (`NetworkSettings`) give.

use serde_json::{json, Map, Value};
use shared::date::rfc3339;

use super::{Attachment, NetworkDef, NetworkError, Networks};
use crate::container::{ContainerRecord, Containers};

impl Networks {
    /// `docker network inspect`'s shape for `def`, with the containers attached to it.
    pub fn inspect(&self, def: &NetworkDef, containers: &Containers) -> Result<Value, NetworkError> {
        let mut attached = Map::new();
        for a in self.attachments()?.into_iter().filter(|a| a.network == def.name) {
            let name = containers.load(&a.container).map(|r| r.name).unwrap_or_default();
            attached.insert(
                a.container.clone(),
                json!({
                    "Name": name,
                    "EndpointID": endpoint_id(&a),
                    "MacAddress": a.mac,
                    "IPv4Address": format!("{}/{}", a.address, a.prefix),
                    "IPv6Address": "",
                }),
            );
        }
        Ok(json!({
            "Name": def.name,
            "Id": def.id,
            "Created": rfc3339(def.created as i64),
            "Scope": "local",
            "Driver": "bridge",
            "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": {}, "Config": [{"Subnet": def.subnet.to_string(), "Gateway": def.gateway.to_string()}]},
            "Internal": false,
            "Attachable": false,
            "Ingress": false,
            "Containers": attached,
            "Options": {"com.docker.network.bridge.name": def.bridge},
            "Labels": {},
        }))
    }
}

/// An endpoint ID for Docker's shape: derived from the container and network.
fn endpoint_id(a: &Attachment) -> String {
    shared::Digest::sha256_of(format!("{}\n{}", a.container, a.network).as_bytes()).hex().to_string()
}

/// `NetworkSettings` of `docker container inspect` for `record` (empty while unattached).
pub fn settings(networks: &Networks, record: &ContainerRecord) -> Value {
    let attachment = networks.attachment(&record.id).ok().flatten().filter(|_| record.is_running());
    let Some(a) = attachment else {
        return json!({"Bridge": "", "SandboxKey": "", "Ports": {}, "IPAddress": "", "IPPrefixLen": 0, "Gateway": "", "MacAddress": "", "Networks": {}});
    };
    let mut ports = Map::new();
    for p in &a.ports {
        let binding = json!({"HostIp": p.host_ip.map_or("0.0.0.0".to_string(), |ip| ip.to_string()), "HostPort": p.host_port.to_string()});
        match ports.entry(p.key()).or_insert_with(|| json!([])) {
            Value::Array(list) => list.push(binding),
            other => *other = json!([binding]),
        }
    }
    let network_id = networks.get(&a.network).map(|d| d.id).unwrap_or_default();
    json!({
        "Bridge": "",
        "SandboxKey": a.netns,
        "Ports": ports,
        "IPAddress": a.address.to_string(),
        "IPPrefixLen": a.prefix,
        "Gateway": a.gateway.to_string(),
        "MacAddress": a.mac,
        "Networks": {
            a.network.clone(): {
                "Aliases": a.aliases,
                "NetworkID": network_id,
                "EndpointID": endpoint_id(&a),
                "Gateway": a.gateway.to_string(),
                "IPAddress": a.address.to_string(),
                "IPPrefixLen": a.prefix,
                "MacAddress": a.mac,
            }
        },
    })
}
