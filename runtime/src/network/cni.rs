//! Driving the CNI plugins (Debian's `containernetworking-plugins`) as the CNI spec says
//! (<https://www.cni.dev/docs/spec/#section-2-execution-protocol>): each plugin binary is
//! executed with `CNI_COMMAND` (`ADD`, `DEL`), `CNI_CONTAINERID`, `CNI_NETNS`,
//! `CNI_IFNAME` and `CNI_PATH` in its environment and its configuration as JSON on
//! standard input; it answers with a result (or an error object) on standard output.
//!
//! A berth network is a plugin chain ([`network_config`], a "conflist"): `bridge` with
//! `host-local` addresses and outbound NAT (`ipMasq`), `portmap` for published ports (with
//! `snat` so that the host's own 127.0.0.1 reaches them), and `firewall`, which lets the
//! container's traffic through the host's `FORWARD` chain (Docker sets its policy to DROP).
//! ADD runs the chain in order, each plugin given the previous one's result
//! (`prevResult`); DEL runs it backwards with the cached ADD result, which the `firewall`
//! and `portmap` plugins need to find their rules again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::{NetworkDef, NetworkError, PortMapping};

/// Where CNI plugins are looked for, in order (Debian's folder first).
pub const PLUGIN_DIRS: &[&str] = &["/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni"];

/// The CNI version berth speaks.
const CNI_VERSION: &str = "1.0.0";

/// The `PATH` plugins run with (they run `iptables`).
const PLUGIN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The container's interface name.
pub const IFNAME: &str = "eth0";

/// The plugin chain of network `def` for a container publishing `ports` (no `portmap`
/// without: it would only cost a process and its `iptables` calls); `ipam_dir` holds the
/// address leases. Kept with the attachment, so DEL runs the same chain.
pub fn network_config(def: &NetworkDef, ipam_dir: &Path, ports: &[PortMapping]) -> Value {
    let mut list = json!({
        "cniVersion": CNI_VERSION,
        "name": format!("berth-{}", def.name),
        "plugins": [
            {
                "type": "bridge",
                "bridge": def.bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": def.subnet.to_string(), "gateway": def.gateway.to_string()}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
            {"type": "firewall", "backend": "iptables"},
        ],
    });
    if ports.is_empty() {
        if let Some(plugins) = list["plugins"].as_array_mut() {
            plugins.retain(|p| p["type"] != "portmap");
        }
    }
    list
}

/// The folder holding `plugin`.
fn plugin_dir(plugin: &str) -> Result<PathBuf, NetworkError> {
    PLUGIN_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|dir| dir.join(plugin).is_file())
        .ok_or_else(|| NetworkError::PluginMissing { plugin: plugin.to_string() })
}

/// One plugin's configuration: its entry of the chain, with the chain's name and version,
/// the previous result and the runtime's port mappings.
fn plugin_config(list: &Value, plugin: &Value, prev: Option<&Value>, ports: &[PortMapping]) -> Value {
    let mut conf = plugin.clone();
    conf["cniVersion"] = list["cniVersion"].clone();
    conf["name"] = list["name"].clone();
    if let Some(prev) = prev {
        conf["prevResult"] = prev.clone();
    }
    if plugin["capabilities"]["portMappings"] == json!(true) {
        conf["runtimeConfig"] = json!({"portMappings": ports.iter().map(PortMapping::cni).collect::<Vec<_>>()});
    }
    conf
}

/// Runs `command` of one plugin; its result (`Null` when it printed nothing, as DEL does).
fn invoke(command: &str, conf: &Value, container: &str, netns: &Path) -> Result<Value, NetworkError> {
    let plugin = conf["type"].as_str().unwrap_or_default().to_string();
    let dir = plugin_dir(&plugin)?;
    tracing::debug!(plugin, command, "CNI plugin");
    let exec_err = |source| NetworkError::PluginExec { plugin: plugin.clone(), source };
    let mut child = Command::new(dir.join(&plugin))
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", IFNAME)
        .env("CNI_PATH", PLUGIN_DIRS.join(":"))
        .env("PATH", PLUGIN_PATH)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(exec_err)?;
    let body = serde_json::to_vec(conf).unwrap_or_default();
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body).map_err(exec_err)?;
    }
    let output = child.wait_with_output().map_err(exec_err)?;
    let result: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    if output.status.success() {
        return Ok(result);
    }
    // A CNI error object: {"code", "msg", "details"}.
    let msg = result["msg"].as_str().map(String::from).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(if output.stdout.is_empty() { &output.stderr } else { &output.stdout });
        text.trim().to_string()
    });
    let details = result["details"].as_str().map(|d| format!(": {d}")).unwrap_or_default();
    Err(NetworkError::Plugin { plugin, command: command.to_string(), message: format!("{msg}{details}") })
}

/// Attaches the namespace `netns` of `container` to the network of conflist `list`: the
/// chain's final result.
pub fn add(list: &Value, container: &str, netns: &Path, ports: &[PortMapping]) -> Result<Value, NetworkError> {
    let mut prev: Option<Value> = None;
    for plugin in list["plugins"].as_array().into_iter().flatten() {
        let conf = plugin_config(list, plugin, prev.as_ref(), ports);
        prev = Some(invoke("ADD", &conf, container, netns)?);
    }
    Ok(prev.unwrap_or(Value::Null))
}

/// Detaches `container`: the chain backwards with the cached ADD result `prev` (`None` when
/// ADD failed half-way). Every plugin is run; the first error is returned.
pub fn del(
    list: &Value,
    container: &str,
    netns: &Path,
    ports: &[PortMapping],
    prev: Option<&Value>,
) -> Result<(), NetworkError> {
    let mut first_error = None;
    for plugin in list["plugins"].as_array().into_iter().flatten().rev() {
        let conf = plugin_config(list, plugin, prev, ports);
        if let Err(e) = invoke("DEL", &conf, container, netns) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The container's address, prefix length, gateway and MAC address in an ADD result.
pub fn parse_result(result: &Value) -> Option<(std::net::Ipv4Addr, u8, std::net::Ipv4Addr, String)> {
    let ip = result["ips"].as_array()?.iter().find(|ip| {
        ip["address"]
            .as_str()
            .is_some_and(|a| a.split('/').next().is_some_and(|a| a.parse::<std::net::Ipv4Addr>().is_ok()))
    })?;
    let (address, prefix) = ip["address"].as_str()?.split_once('/')?;
    let gateway = ip["gateway"].as_str()?.parse().ok()?;
    let mac = ip["interface"]
        .as_u64()
        .and_then(|i| result["interfaces"].get(i as usize))
        .and_then(|i| i["mac"].as_str())
        .unwrap_or_default()
        .to_string();
    Some((address.parse().ok()?, prefix.parse().ok()?, gateway, mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_get_the_chain_name_previous_result_and_ports() {
        let def = NetworkDef::new("web", "10.90.0.0/24".parse().unwrap(), None, true);
        let ports = super::super::ports::parse_publish("127.0.0.1:8080:80").unwrap();
        let list = network_config(&def, Path::new("/var/lib/berth/networks/ipam"), &ports);
        let plugins = list["plugins"].as_array().unwrap();
        let types = |l: &Value| -> Vec<String> {
            l["plugins"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(types(&list), ["bridge", "portmap", "firewall"]);
        assert_eq!(types(&network_config(&def, Path::new("/x"), &[])), ["bridge", "firewall"]);
        assert_eq!(plugins[0]["ipam"]["ranges"][0][0]["gateway"], "10.90.0.1");
        let prev = json!({"ips": []});
        let conf = plugin_config(&list, &plugins[1], Some(&prev), &ports);
        assert_eq!(conf["name"], "berth-web");
        assert_eq!(conf["prevResult"], prev);
        assert_eq!(conf["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert!(plugin_config(&list, &plugins[0], None, &ports).get("runtimeConfig").is_none());
    }

    #[test]
    fn results_give_address_gateway_and_mac() {
        let result = json!({
            "interfaces": [{"name": "br"}, {"name": "veth"}, {"name": "eth0", "mac": "aa:bb", "sandbox": "/x"}],
            "ips": [{"interface": 2, "address": "10.90.0.5/24", "gateway": "10.90.0.1"}],
        });
        let (ip, prefix, gateway, mac) = parse_result(&result).unwrap();
        assert_eq!(
            (ip.to_string(), prefix, gateway.to_string(), mac.as_str()),
            ("10.90.0.5".into(), 24, "10.90.0.1".into(), "aa:bb")
        );
        assert!(parse_result(&json!({})).is_none());
    }
}
