//! Driving the CNI plugins (Debian's `containernetworking-plugins`) as the CNI spec says
//! (<https://www.cni.dev/docs/spec/#section-2-execution-protocol>): each plugin binary is
//! executed with `CNI_COMMAND` (`ADD`, `DEL`), `CNI_CONTAINERID`, `CNI_NETNS`,
//! `CNI_IFNAME` and `CNI_PATH` in its environment and its configuration as JSON on
//! standard input; it answers with a result (or an error object) on standard output.
//!
//! A berth network is described as a plugin chain ([`network_config`], a "conflist"):
//! `bridge` and, for a container that publishes ports, `portmap` (with `snat` so that the
//! host's own 127.0.0.1 reaches them); the address lease is the list's own `ipam` entry.
//!
//! **Native wiring.** A list marked `"berth": "native"` (every list made now) is not run
//! plugin by plugin: each plugin is a process and `bridge` (`ipMasq`) and `firewall` ran
//! several `iptables` commands per container, which cost about 200 ms a start. Instead
//! [`add`] takes the lease itself ([`super::lease`], host-local's layout and lock), makes
//! the bridge when it is missing with the network's rules ([`super::rules`]: one set per
//! bridge, as Docker's, naming no container), and wires the veth pair over netlink
//! ([`super::link`]); only `portmap` still runs as a plugin, given that result as its
//! `prevResult`. DEL ([`start_del`]) runs `portmap`'s DEL, deletes the pair (or, for a
//! container whose processes have ended, leaves it to go with the namespace, which saves
//! the kernel's wait of some milliseconds: [`Unlink`]), then gives the lease back.
//!
//! **Older attachments** keep the chain they were made with and are detached by running
//! it: with the lease split off (`host-local` run on its own, then `bridge` and `firewall`
//! at once, then `portmap`; DEL runs every plugin at once with the cached ADD result and
//! releases the lease last), or, older still, the chain backwards.

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::{lease, link, rules, NetworkDef, NetworkError, PortMapping, Subnet};

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
        // Wired by berth itself: see the module docs.
        "berth": NATIVE,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": def.subnet.to_string(), "gateway": def.gateway.to_string()}]],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": ipam_dir,
        },
        "plugins": [
            {
                "type": "bridge",
                "bridge": def.bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {"type": "static"},
            },
            {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
        ],
    });
    if ports.is_empty() {
        if let Some(plugins) = list["plugins"].as_array_mut() {
            plugins.retain(|p| p["type"] != "portmap");
        }
    }
    list
}

/// The mark of a list whose lease, bridge and veth berth makes itself.
const NATIVE: &str = "native";

/// Whether `list` is wired by berth itself (else every plugin of it runs).
fn is_native(list: &Value) -> bool {
    list["berth"] == NATIVE
}

/// What a natively wired list says of its network.
struct Native {
    name: String,
    dir: PathBuf,
    subnet: Subnet,
    gateway: Ipv4Addr,
    bridge: String,
}

fn native(list: &Value) -> Result<Native, NetworkError> {
    let range = &list["ipam"]["ranges"][0][0];
    let parsed = (|| {
        Some(Native {
            name: list["name"].as_str()?.to_string(),
            dir: PathBuf::from(list["ipam"]["dataDir"].as_str()?),
            subnet: range["subnet"].as_str()?.parse().ok()?,
            gateway: range["gateway"].as_str()?.parse().ok()?,
            bridge: list["plugins"][0]["bridge"].as_str()?.to_string(),
        })
    })();
    parsed.ok_or_else(|| NetworkError::Wiring {
        what: "reading the attachment's network configuration".into(),
        source: io::Error::new(io::ErrorKind::InvalidData, "no subnet, gateway, bridge or lease folder"),
    })
}

/// The host end of `container`'s veth pair: `veth` and 11 hex digits of a hash of the ID.
pub fn veth_name(container: &str) -> String {
    format!("veth{}", &shared::Digest::sha256_of(container.as_bytes()).hex()[..11])
}

fn wiring(what: impl Into<String>) -> impl FnOnce(io::Error) -> NetworkError {
    let what = what.into();
    move |source| NetworkError::Wiring { what, source }
}

/// ADD of a native list: the lease, the bridge and its rules when missing, the veth pair,
/// then the plugins after the bridge (`portmap`) with that result.
fn native_add(list: &Value, container: &str, netns: &Path, ports: &[PortMapping]) -> Result<Value, NetworkError> {
    let net = native(list)?;
    let address = lease::take(&net.dir, &net.name, net.subnet, net.gateway, container, IFNAME)
        .map_err(wiring(format!("leasing an address on {}", net.subnet)))?;
    let host = veth_name(container);
    let wired = (|| {
        let mut nl = link::Netlink::open().map_err(wiring("opening a netlink socket"))?;
        let bridge = link::ensure_bridge(&mut nl, &net.bridge, net.gateway, net.subnet.prefix)
            .map_err(wiring(format!("making bridge {}", net.bridge)))?;
        rules::ensure(&net.bridge, net.subnet, bridge.made)
            .map_err(wiring(format!("the rules of bridge {}", net.bridge)))?;
        let w = link::Wiring {
            bridge: &bridge,
            host: &host,
            ifname: IFNAME,
            address: (address, net.subnet.prefix),
            gateway: net.gateway,
        };
        link::attach(&mut nl, netns, &w).map_err(wiring(format!("wiring {host} to bridge {}", net.bridge)))
    })();
    let made = match wired {
        Ok(made) => made,
        Err(e) => {
            let _ = lease::release(&net.dir, &net.name, Some(address), container);
            return Err(e);
        }
    };
    let mut prev = json!({
        "cniVersion": list["cniVersion"],
        "interfaces": [
            {"name": net.bridge, "mac": made.bridge_mac},
            {"name": made.host, "mac": made.host_mac},
            {"name": IFNAME, "mac": made.mac, "sandbox": netns},
        ],
        "ips": [{"interface": 2, "address": format!("{address}/{}", net.subnet.prefix), "gateway": net.gateway.to_string()}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {},
    });
    for plugin in list["plugins"].as_array().into_iter().flatten().filter(|p| p["type"] != "bridge") {
        let conf = plugin_config(list, plugin, Some(&prev), ports);
        prev = invoke("ADD", &conf, container, netns)?;
    }
    Ok(prev)
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
    spawn(command, conf, container, netns)?.finish()
}

/// A plugin started by [`spawn`]; [`Running::finish`] waits for its answer.
struct Running {
    plugin: String,
    command: String,
    child: std::process::Child,
}

/// Starts `command` of one plugin and hands it its configuration (a few kilobytes, which
/// the pipe holds whether or not the plugin reads it yet).
fn spawn(command: &str, conf: &Value, container: &str, netns: &Path) -> Result<Running, NetworkError> {
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
    if let Some(Err(e)) = child.stdin.as_ref().map(|mut stdin| stdin.write_all(&body)) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(exec_err(e));
    }
    Ok(Running { plugin, command: command.to_string(), child })
}

impl Running {
    /// Waits for the plugin: its result, or its error object as a [`NetworkError`].
    fn finish(mut self) -> Result<Value, NetworkError> {
        // Closed first: a plugin reads its configuration to the end.
        drop(self.child.stdin.take());
        let plugin = self.plugin;
        let output = self
            .child
            .wait_with_output()
            .map_err(|source| NetworkError::PluginExec { plugin: plugin.clone(), source })?;
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
        Err(NetworkError::Plugin { plugin, command: self.command, message: format!("{msg}{details}") })
    }
}

/// The configuration of the list's own IPAM plugin (`host-local`), run on its own.
fn ipam_config(list: &Value) -> Option<Value> {
    let ipam = list.get("ipam")?;
    Some(json!({
        "cniVersion": list["cniVersion"],
        "name": list["name"],
        "type": ipam["type"],
        "ipam": ipam,
    }))
}

/// Attaches the namespace `netns` of `container` to the network of conflist `list` (see
/// the module docs for what runs at once): the chain's final result. `list` is updated
/// to what was run (the bridge's `static` address), which DEL is to be given.
pub fn add(list: &mut Value, container: &str, netns: &Path, ports: &[PortMapping]) -> Result<Value, NetworkError> {
    if is_native(list) {
        return native_add(list, container, netns, ports);
    }
    let Some(ipam) = ipam_config(list) else {
        // A list whose bridge leases addresses itself: the chain in order.
        let mut prev: Option<Value> = None;
        for plugin in list["plugins"].as_array().into_iter().flatten() {
            let conf = plugin_config(list, plugin, prev.as_ref(), ports);
            prev = Some(invoke("ADD", &conf, container, netns)?);
        }
        return Ok(prev.unwrap_or(Value::Null));
    };
    let lease = invoke("ADD", &ipam, container, netns)?;
    let addresses: Vec<Value> = lease["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|ip| json!({"address": ip["address"], "gateway": ip["gateway"]}))
        .collect();
    let plugins: Vec<Value> = list["plugins"].as_array().cloned().unwrap_or_default();
    let mut bridge = None;
    let mut alongside = Vec::new();
    let mut after = Vec::new();
    for (i, plugin) in plugins.iter().enumerate() {
        match plugin["type"].as_str() {
            Some("bridge") if bridge.is_none() => {
                list["plugins"][i]["ipam"] =
                    json!({"type": "static", "addresses": addresses, "routes": lease["routes"].clone()});
                bridge = Some(list["plugins"][i].clone());
            }
            Some("firewall") => alongside.push(plugin),
            _ => after.push(plugin),
        }
    }
    let bridge = bridge.ok_or_else(|| NetworkError::Plugin {
        plugin: "bridge".into(),
        command: "ADD".into(),
        message: "the network's plugin list has no bridge".into(),
    })?;
    // The bridge and the firewall at once: both are waited for, whatever fails.
    let started = spawn("ADD", &plugin_config(list, &bridge, None, ports), container, netns);
    let others: Vec<Result<Running, NetworkError>> = alongside
        .iter()
        .map(|p| spawn("ADD", &plugin_config(list, p, Some(&lease), ports), container, netns))
        .collect();
    let bridged = started.and_then(Running::finish);
    let mut first_error = None;
    for other in others {
        if let Err(e) = other.and_then(Running::finish) {
            first_error.get_or_insert(e);
        }
    }
    let mut prev = bridged?;
    if let Some(e) = first_error {
        return Err(e);
    }
    for plugin in after {
        let conf = plugin_config(list, plugin, Some(&prev), ports);
        prev = invoke("ADD", &conf, container, netns)?;
    }
    Ok(prev)
}

/// Detaches `container` with the cached ADD result `prev` (`None` when ADD failed
/// half-way): every plugin at once, then the lease (see the module docs). Every plugin is
/// run; the first error is returned.
pub fn del(
    list: &Value,
    container: &str,
    netns: &Path,
    ports: &[PortMapping],
    prev: Option<&Value>,
) -> Result<(), NetworkError> {
    start_del(list, container, netns, ports, prev, Unlink::Now).finish()
}

/// How a native DEL removes the container's veth pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlink {
    /// Deleted now, over netlink (the kernel takes some milliseconds: it waits for readers
    /// of the interface list); for a namespace processes may still hold.
    Now,
    /// Left to go with the network namespace, which the kernel dismantles in the background
    /// once its file is unmounted (the pair goes with its end inside): for a container whose
    /// processes have all ended, so that nothing holds the namespace.
    WithNamespace,
}

/// A DEL under way ([`start_del`]): the plugins run while the caller does other work.
pub struct Deleting {
    running: Vec<Result<Running, NetworkError>>,
    first_error: Option<NetworkError>,
    lease: Option<(Value, String, PathBuf)>,
    /// A native list's lease: folder, network, address when known, container.
    native_lease: Option<(PathBuf, String, Option<Ipv4Addr>, String)>,
    /// A native list's veth pair being deleted.
    unlinking: Option<std::thread::JoinHandle<Result<bool, NetworkError>>>,
}

/// Starts [`del`]: every plugin's DEL runs once this returns (an attachment of the older
/// shape has been detached already, the chain backwards); [`Deleting::finish`] waits for
/// them and releases the lease.
pub fn start_del(
    list: &Value,
    container: &str,
    netns: &Path,
    ports: &[PortMapping],
    prev: Option<&Value>,
    unlink: Unlink,
) -> Deleting {
    if is_native(list) {
        return native_start_del(list, container, netns, ports, prev, unlink);
    }
    let plugins = list["plugins"].as_array().into_iter().flatten().rev();
    let Some(ipam) = ipam_config(list) else {
        let mut first_error = None;
        for plugin in plugins {
            if let Err(e) = invoke("DEL", &plugin_config(list, plugin, prev, ports), container, netns) {
                first_error.get_or_insert(e);
            }
        }
        return Deleting::done(first_error);
    };
    let running =
        plugins.map(|plugin| spawn("DEL", &plugin_config(list, plugin, prev, ports), container, netns)).collect();
    Deleting {
        running,
        first_error: None,
        lease: Some((ipam, container.to_string(), netns.to_path_buf())),
        native_lease: None,
        unlinking: None,
    }
}

/// DEL of a native list: the plugins after the bridge start, the veth pair goes (its
/// host end by name; the container's end with it), and [`Deleting::finish`] gives the lease
/// back.
fn native_start_del(
    list: &Value,
    container: &str,
    netns: &Path,
    ports: &[PortMapping],
    prev: Option<&Value>,
    unlink: Unlink,
) -> Deleting {
    let net = match native(list) {
        Ok(net) => net,
        Err(e) => return Deleting::done(Some(e)),
    };
    let running = list["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["type"] != "bridge")
        .map(|plugin| spawn("DEL", &plugin_config(list, plugin, prev, ports), container, netns))
        .collect();
    // The kernel takes some milliseconds to delete a veth pair (it waits for readers of
    // the interface list): on a thread, while the caller unmounts the root.
    let host = veth_name(container);
    let unlinking = (unlink == Unlink::Now).then(|| {
        std::thread::spawn(move || {
            link::Netlink::open()
                .and_then(|mut nl| nl.delete_link(&host))
                .map_err(wiring(format!("deleting interface {host}")))
        })
    });
    let address = prev.and_then(parse_result).map(|(ip, ..)| ip);
    Deleting {
        running,
        first_error: None,
        lease: None,
        native_lease: Some((net.dir, net.name, address, container.to_string())),
        unlinking,
    }
}

impl Deleting {
    /// A DEL with nothing left to wait for (its error, if it failed or could not start).
    fn done(first_error: Option<NetworkError>) -> Deleting {
        Deleting { running: Vec::new(), first_error, lease: None, native_lease: None, unlinking: None }
    }

    /// Waits for the plugins, then releases the lease; the first error.
    pub fn finish(self) -> Result<(), NetworkError> {
        let mut first_error = self.first_error;
        for run in self.running {
            if let Err(e) = run.and_then(Running::finish) {
                first_error.get_or_insert(e);
            }
        }
        if let Some((ipam, container, netns)) = self.lease {
            if let Err(e) = invoke("DEL", &ipam, &container, &netns) {
                first_error.get_or_insert(e);
            }
        }
        if let Some(unlinking) = self.unlinking {
            let unlinked = unlinking.join().unwrap_or_else(|_| {
                Err(NetworkError::Wiring {
                    what: "deleting a veth pair".into(),
                    source: io::Error::other("the thread panicked"),
                })
            });
            if let Err(e) = unlinked {
                first_error.get_or_insert(e);
            }
        }
        if let Some((dir, network, address, container)) = self.native_lease {
            if let Err(e) = lease::release(&dir, &network, address, &container) {
                first_error
                    .get_or_insert(NetworkError::Wiring { what: "giving back an address lease".into(), source: e });
            }
        }
        first_error.map_or(Ok(()), Err)
    }
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
        assert_eq!(types(&list), ["bridge", "portmap"]);
        assert_eq!(types(&network_config(&def, Path::new("/x"), &[])), ["bridge"]);
        // Wired by berth: what it reads back for ADD and DEL.
        assert!(is_native(&list));
        let net = native(&list).unwrap();
        assert_eq!(
            (net.name.as_str(), net.subnet.to_string(), net.gateway.to_string(), net.bridge.as_str()),
            ("berth-web", "10.90.0.0/24".to_string(), "10.90.0.1".to_string(), def.bridge.as_str())
        );
        assert_eq!(net.dir, Path::new("/var/lib/berth/networks/ipam"));
        assert_eq!(veth_name("abc").len(), 15);
        assert!(veth_name("abc").starts_with("veth") && veth_name("abc") != veth_name("abd"));
        assert_eq!(list["ipam"]["ranges"][0][0]["gateway"], "10.90.0.1");
        // The lease is taken on its own, by host-local, with the list's name and version.
        let ipam = ipam_config(&list).unwrap();
        assert_eq!((ipam["type"].as_str(), ipam["name"].as_str()), (Some("host-local"), Some("berth-web")));
        assert_eq!(ipam["ipam"]["dataDir"], "/var/lib/berth/networks/ipam");
        assert_eq!(plugins[0]["ipam"]["type"], "static");
        // An attachment of the older shape (the bridge leasing itself) has no list IPAM.
        assert!(ipam_config(&json!({"plugins": []})).is_none());
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
