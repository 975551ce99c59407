//! Container networks: the default `bridge` network and user-defined ones, a container's
//! attachment to one (its own network namespace, an address, published ports), and name
//! resolution between the containers of a user network.
//!
//! A namespace made by [`netns`] is wired to its network's bridge by berth ([`cni`]'s
//! native wiring: a lease in `host-local`'s layout ([`lease`]), a veth pair over netlink
//! ([`link`]), one set of netfilter rules per bridge ([`rules`], in chains of their own next
//! to Docker's, whose `FORWARD` policy of DROP they get through)); published ports are the
//! CNI `portmap` plugin's, and podman's `aardvark-dns` ([`dns`]) answers names.
//!
//! Callers: the container supervisor ([`crate::container::shim`]) attaches a container
//! before it starts ([`Networks::attach`]); [`crate::container::Containers::cleanup`]
//! detaches it when it ends or is removed; `berth network create|ls|rm|inspect` (in `cli`)
//! manage definitions. Everything lives under the store root (see [`crate::paths`]) and
//! changes under one lock (`networks.lock`). An attachment whose container is gone or whose
//! supervisor died is collected ([`Networks::collect_stale`]) by the next attach, `berth
//! rm`, or `berth network` command, so nothing leaks for ever.

pub mod cni;
pub mod dns;
pub mod etc;
mod inspect;
pub mod lease;
pub mod link;
pub mod netns;
pub mod ports;
pub mod rules;
pub mod subnet;

use std::fs::{self, File};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::container::Containers;
use crate::images::FileLock;
use crate::paths::Paths;
pub use inspect::settings;
pub use ports::{PortError, PortMapping, Protocol};
pub use subnet::{Subnet, SubnetError};

/// The name of the default network, which `berth run` uses unless told otherwise.
pub const DEFAULT_NETWORK: &str = "bridge";
/// The default network's subnet: clear of Docker's 172.17.0.0/16 and of podman's
/// 10.88.0.0/16, so that all three can run on one host.
pub const DEFAULT_SUBNET: Subnet = Subnet { addr: Ipv4Addr::new(10, 77, 0, 0), prefix: 16 };
/// The default network's bridge interface.
pub const DEFAULT_BRIDGE: &str = "berth0";
/// The default network's address leases, shared by every store root of the host (a
/// tmpfs: leases go with the namespaces when the host restarts).
pub const SHARED_IPAM: &str = "/run/berth/ipam";
/// User networks without `--subnet` get the first free /24 of this range.
const USER_POOL: Subnet = Subnet { addr: Ipv4Addr::new(10, 78, 0, 0), prefix: 16 };
/// Names that are modes of `--network`, not networks.
const RESERVED: &[&str] = &["none", "host", "default", "container"];

/// The format version of network definitions and attachments.
const VERSION: u32 = 1;

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A file or directory could not be used.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A definition or attachment is unreadable.
    #[error("{path} is not a valid network file")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// No network has this name.
    #[error("network {0} not found (see `berth network ls`)")]
    NotFound(String),
    /// The name is taken.
    #[error("network with name {0} already exists")]
    Exists(String),
    /// The name is not allowed.
    #[error("invalid network name {0:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-], and not none, host or default")]
    InvalidName(String),
    /// The subnet is not valid.
    #[error(transparent)]
    Subnet(#[from] SubnetError),
    /// The gateway is not in the subnet.
    #[error("gateway {gateway} is not a host address of subnet {subnet}")]
    Gateway {
        /// The gateway given.
        gateway: Ipv4Addr,
        /// The subnet.
        subnet: Subnet,
    },
    /// The subnet overlaps another network's or a host route.
    #[error("subnet {subnet} overlaps {other}; choose another --subnet")]
    Overlap {
        /// The subnet asked for.
        subnet: Subnet,
        /// What it overlaps.
        other: String,
    },
    /// No /24 of the pool is free.
    #[error("no free subnet is left in {USER_POOL}; give one with --subnet")]
    NoFreeSubnet,
    /// The default network cannot be removed.
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    /// Containers are attached.
    #[error("network {network} has active endpoints ({containers}); remove those containers first")]
    InUse {
        /// The network.
        network: String,
        /// The attached containers' names.
        containers: String,
    },
    /// A published port is taken.
    #[error("{0}: port is already allocated")]
    PortInUse(String),
    /// A CNI plugin is not installed.
    #[error(
        "the CNI plugin {plugin:?} is not installed (apt-get install containernetworking-plugins), \
         or run with --network none or --network host"
    )]
    PluginMissing {
        /// The plugin.
        plugin: String,
    },
    /// A CNI plugin could not be run.
    #[error("running the CNI plugin {plugin}")]
    PluginExec {
        /// The plugin.
        plugin: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A CNI plugin failed.
    #[error("CNI plugin {plugin} ({command}) failed: {message}")]
    Plugin {
        /// The plugin.
        plugin: String,
        /// ADD or DEL.
        command: String,
        /// Its error message.
        message: String,
    },
    /// The plugins' result has no IPv4 address.
    #[error("the CNI plugins gave container {0} no IPv4 address")]
    NoAddress(String),
    /// The network namespace could not be made or removed.
    #[error("network namespace {path}")]
    Netns {
        /// Its file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The DNS server could not be run.
    #[error("DNS for user networks: {0}")]
    Dns(String),
    /// Wiring a container to its network's bridge failed.
    #[error("{what}")]
    Wiring {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> NetworkError + '_ {
    move |source| NetworkError::Io { path: path.to_path_buf(), source }
}

/// A network's definition, `networks/<name>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkDef {
    /// Format version.
    pub version: u32,
    /// Its name.
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    /// Its subnet.
    pub subnet: Subnet,
    /// The bridge's address, the containers' gateway.
    pub gateway: Ipv4Addr,
    /// The bridge interface on the host.
    pub bridge: String,
    /// Whether containers resolve each other's names (user networks; not the default one,
    /// as with Docker).
    pub dns: bool,
    /// When it was created, Unix seconds.
    pub created: u64,
}

impl NetworkDef {
    /// A definition of network `name` (its ID from the name and the time, its bridge named
    /// after the ID as Docker's `br-<id>`).
    pub fn new(name: &str, subnet: Subnet, gateway: Option<Ipv4Addr>, dns: bool) -> NetworkDef {
        let created = crate::container::now();
        let id = shared::Digest::sha256_of(format!("{name}\n{created}\n{subnet}").as_bytes()).hex().to_string();
        let bridge = if name == DEFAULT_NETWORK { DEFAULT_BRIDGE.to_string() } else { format!("br-{}", &id[..12]) };
        NetworkDef {
            version: VERSION,
            name: name.to_string(),
            id,
            subnet,
            gateway: gateway.unwrap_or_else(|| subnet.first_host()),
            bridge,
            dns,
            created,
        }
    }
}

/// A container's place on a network, `networks/attachments/<id>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// The container's full ID.
    pub container: String,
    /// The network's name.
    pub network: String,
    /// Whether the network resolves container names (its DNS server is the gateway).
    #[serde(default)]
    pub dns: bool,
    /// The network namespace file.
    pub netns: PathBuf,
    /// The container's address.
    pub address: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The gateway.
    pub gateway: Ipv4Addr,
    /// The MAC address of the container's interface.
    pub mac: String,
    /// The published ports, host ports chosen.
    pub ports: Vec<PortMapping>,
    /// The names others resolve it by: its name, its aliases, its short ID.
    pub names: Vec<String>,
    /// `--network-alias` values.
    pub aliases: Vec<String>,
    /// The process that owns an attachment without a container record (a RUN step of
    /// `berth build`): it is stale once that process is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<i32>,
    /// The plugin chain it was attached with.
    pub config: Value,
    /// The chain's ADD result, given back to DEL.
    pub result: Value,
}

/// What [`Networks::attach`] attaches.
#[derive(Debug, Clone)]
pub struct AttachRequest<'a> {
    /// The container's full ID.
    pub container: &'a str,
    /// The container's name.
    pub name: &'a str,
    /// The network's name.
    pub network: &'a str,
    /// `--network-alias` values.
    pub aliases: &'a [String],
    /// Published ports (host port 0: any free one).
    pub ports: &'a [PortMapping],
    /// For a sandbox that has no container record (a RUN step): the process owning it.
    pub owner: Option<i32>,
}

/// The networks of a store root.
#[derive(Debug, Clone)]
pub struct Networks {
    paths: Paths,
}

/// Whether `name` may name a network.
pub fn valid_name(name: &str) -> bool {
    crate::container::valid_name(name) && !RESERVED.contains(&name) && name.len() <= 64
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, NetworkError> {
    match fs::read(path) {
        Ok(body) => {
            serde_json::from_slice(&body).map(Some).map_err(|source| NetworkError::Json { path: path.into(), source })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), NetworkError> {
    let body =
        serde_json::to_vec_pretty(value).map_err(|source| NetworkError::Json { path: path.to_path_buf(), source })?;
    let temp = path.with_extension("json.tmp");
    let write = || -> io::Result<()> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut file = File::create(&temp)?;
        file.write_all(&body)?;
        fs::rename(&temp, path)
    };
    write().map_err(io_err(path))
}

impl Networks {
    /// The networks of the store at `paths`.
    pub fn new(paths: Paths) -> Networks {
        Networks { paths }
    }

    /// The networks of the store at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Networks {
        Networks::new(Paths::new(root))
    }

    fn lock(&self) -> Result<FileLock, NetworkError> {
        let path = self.paths.networks_lock();
        fs::create_dir_all(self.paths.root()).map_err(io_err(self.paths.root()))?;
        FileLock::exclusive(&path).map_err(io_err(&path))
    }

    /// Every network, the default one included (made on first use), by name.
    pub fn list(&self) -> Result<Vec<NetworkDef>, NetworkError> {
        let _lock = self.lock()?;
        self.default_network()?;
        self.list_locked()
    }

    fn list_locked(&self) -> Result<Vec<NetworkDef>, NetworkError> {
        let dir = self.paths.networks();
        let mut all = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = name.strip_suffix(".json") else { continue };
            if let Some(def) = read_json::<NetworkDef>(&self.paths.network(name))? {
                all.push(def);
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// The default network's definition, written the first time.
    fn default_network(&self) -> Result<NetworkDef, NetworkError> {
        let path = self.paths.network(DEFAULT_NETWORK);
        if let Some(def) = read_json(&path)? {
            return Ok(def);
        }
        let def = NetworkDef::new(DEFAULT_NETWORK, DEFAULT_SUBNET, None, false);
        write_json(&path, &def)?;
        Ok(def)
    }

    /// The network `name` (a name, or a unique ID prefix as Docker accepts).
    pub fn get(&self, name: &str) -> Result<NetworkDef, NetworkError> {
        let _lock = self.lock()?;
        self.get_locked(name)
    }

    fn get_locked(&self, name: &str) -> Result<NetworkDef, NetworkError> {
        if name == DEFAULT_NETWORK {
            return self.default_network();
        }
        if valid_name(name) {
            if let Some(def) = read_json(&self.paths.network(name))? {
                return Ok(def);
            }
        }
        let by_id: Vec<NetworkDef> =
            self.list_locked()?.into_iter().filter(|d| name.len() >= 3 && d.id.starts_with(name)).collect();
        match <[NetworkDef; 1]>::try_from(by_id) {
            Ok([def]) => Ok(def),
            Err(_) => Err(NetworkError::NotFound(name.to_string())),
        }
    }

    /// Creates network `name` (`berth network create`): on `subnet`, or the first free /24
    /// of 10.78.0.0/16; with `gateway`, or the subnet's first address.
    pub fn create(
        &self,
        name: &str,
        subnet: Option<Subnet>,
        gateway: Option<Ipv4Addr>,
    ) -> Result<NetworkDef, NetworkError> {
        if !valid_name(name) || name == DEFAULT_NETWORK {
            return Err(if name == DEFAULT_NETWORK {
                NetworkError::Exists(name.to_string())
            } else {
                NetworkError::InvalidName(name.to_string())
            });
        }
        let _lock = self.lock()?;
        self.default_network()?;
        let existing = self.list_locked()?;
        if existing.iter().any(|d| d.name == name) {
            return Err(NetworkError::Exists(name.to_string()));
        }
        let mut taken: Vec<(Subnet, String)> =
            existing.iter().map(|d| (d.subnet, format!("network {}", d.name))).collect();
        let ours: Vec<Subnet> = existing.iter().map(|d| d.subnet).collect();
        taken.extend(
            subnet::host_routes().into_iter().filter(|r| !ours.contains(r)).map(|r| (r, format!("host route {r}"))),
        );
        let subnet = match subnet {
            Some(s) => {
                if let Some((_, other)) = taken.iter().find(|(t, _)| t.overlaps(&s)) {
                    return Err(NetworkError::Overlap { subnet: s, other: other.clone() });
                }
                s
            }
            None => (0..=255u8)
                .map(|i| Subnet::new(Ipv4Addr::new(10, 78, i, 0), 24))
                .find(|s| USER_POOL.contains(s.addr) && !taken.iter().any(|(t, _)| t.overlaps(s)))
                .ok_or(NetworkError::NoFreeSubnet)?,
        };
        if let Some(gateway) = gateway {
            if !subnet.is_host(gateway) {
                return Err(NetworkError::Gateway { gateway, subnet });
            }
        }
        let def = NetworkDef::new(name, subnet, gateway, true);
        write_json(&self.paths.network(name), &def)?;
        Ok(def)
    }

    /// Removes network `name` and its bridge; refused while containers are attached.
    pub fn remove(&self, name: &str, containers: &Containers) -> Result<NetworkDef, NetworkError> {
        self.collect_stale(containers)?;
        let _lock = self.lock()?;
        let def = self.get_locked(name)?;
        if def.name == DEFAULT_NETWORK {
            return Err(NetworkError::Predefined(def.name));
        }
        let attached: Vec<String> = self
            .attachments()?
            .into_iter()
            .filter(|a| a.network == def.name)
            .map(|a| containers.load(&a.container).map_or(a.container.clone(), |r| r.name))
            .collect();
        if !attached.is_empty() {
            return Err(NetworkError::InUse { network: def.name, containers: attached.join(", ") });
        }
        delete_link(&def.bridge);
        rules::remove(&def.bridge, def.subnet);
        let ipam = self.paths.network_ipam().join(format!("berth-{}", def.name));
        let _ = fs::remove_dir_all(ipam);
        let path = self.paths.network(&def.name);
        fs::remove_file(&path).map_err(io_err(&path))?;
        Ok(def)
    }

    /// Every attachment.
    pub fn attachments(&self) -> Result<Vec<Attachment>, NetworkError> {
        let dir = self.paths.network_attachments();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut all = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            if entry.file_name().to_string_lossy().ends_with(".json") {
                if let Some(a) = read_json(&entry.path())? {
                    all.push(a);
                }
            }
        }
        all.sort_by(|a: &Attachment, b| a.container.cmp(&b.container));
        Ok(all)
    }

    /// Container `id`'s attachment, if it has one.
    pub fn attachment(&self, id: &str) -> Result<Option<Attachment>, NetworkError> {
        read_json(&self.paths.network_attachment(id))
    }

    /// Attaches a container: makes its network namespace, runs the CNI chain, records the
    /// attachment and updates the network's DNS. On failure nothing is left.
    pub fn attach(&self, request: &AttachRequest<'_>, containers: &Containers) -> Result<Attachment, NetworkError> {
        self.collect_stale(containers)?;
        let _lock = self.lock()?;
        let def = self.get_locked(request.network)?;
        let others = self.attachments()?;
        let ports = choose_ports(request.ports, &others)?;
        let netns_path = self.paths.netns(request.container);
        netns::create(&netns_path).map_err(|source| NetworkError::Netns { path: netns_path.clone(), source })?;
        let mut config = cni::network_config(&def, &self.ipam_dir(&def), &ports);
        let result = match cni::add(&mut config, request.container, &netns_path, &ports) {
            Ok(result) => result,
            Err(e) => {
                let _ = cni::del(&config, request.container, &netns_path, &ports, None);
                let _ = netns::remove(&netns_path);
                return Err(e);
            }
        };
        let Some((address, prefix, gateway, mac)) = cni::parse_result(&result) else {
            let _ = cni::del(&config, request.container, &netns_path, &ports, Some(&result));
            let _ = netns::remove(&netns_path);
            return Err(NetworkError::NoAddress(request.container.to_string()));
        };
        let mut names = vec![request.name.to_string()];
        names.extend(request.aliases.iter().cloned());
        names.push(request.container[..12.min(request.container.len())].to_string());
        let attachment = Attachment {
            container: request.container.to_string(),
            network: def.name.clone(),
            dns: def.dns,
            netns: netns_path,
            address,
            prefix,
            gateway,
            mac,
            ports,
            names,
            aliases: request.aliases.to_vec(),
            owner: request.owner,
            config,
            result,
        };
        let saved = write_json(&self.paths.network_attachment(request.container), &attachment)
            .and_then(|()| self.sync_dns(&def));
        if let Err(e) = saved {
            let _ = self.detach_locked(&attachment);
            return Err(e);
        }
        Ok(attachment)
    }

    /// Where `def`'s address leases are kept: under the root for user networks (their
    /// bridges are the root's own); host-wide for the default network, whose bridge
    /// `berth0` every store root on the host shares, so that two roots never lease one
    /// address twice on it.
    fn ipam_dir(&self, def: &NetworkDef) -> PathBuf {
        if def.name == DEFAULT_NETWORK {
            PathBuf::from(SHARED_IPAM)
        } else {
            self.paths.network_ipam()
        }
    }

    /// Rewrites `def`'s DNS configuration from its attachments (user networks only).
    fn sync_dns(&self, def: &NetworkDef) -> Result<(), NetworkError> {
        if !def.dns {
            return Ok(());
        }
        let all = self.attachments()?;
        let attached: Vec<&Attachment> = all.iter().filter(|a| a.network == def.name).collect();
        dns::sync(&self.paths.network_dns(), def, &attached)
    }

    /// Detaches container `id`, if attached: CNI DEL with the cached result (the address
    /// lease, the veth, the NAT, port and forwarding rules go), its namespace, its DNS names.
    pub fn detach(&self, id: &str) -> Result<bool, NetworkError> {
        match self.start_detach_unlinking(id, cni::Unlink::Now)? {
            Some(detaching) => detaching.finish().map(|()| true),
            None => Ok(false),
        }
    }

    /// Starts [`Networks::detach`] of a container whose processes have all ended (its veth
    /// pair goes with its namespace: [`cni::Unlink::WithNamespace`]): the DEL runs (under the
    /// networks' lock) while the caller does other work, until [`Detaching::finish`].
    /// `None`: not attached.
    pub fn start_detach(&self, id: &str) -> Result<Option<Detaching<'_>>, NetworkError> {
        self.start_detach_unlinking(id, cni::Unlink::WithNamespace)
    }

    fn start_detach_unlinking(&self, id: &str, unlink: cni::Unlink) -> Result<Option<Detaching<'_>>, NetworkError> {
        // Most containers have none: no lock taken for them.
        if !self.paths.network_attachment(id).exists() {
            return Ok(None);
        }
        let lock = self.lock()?;
        Ok(self.attachment(id)?.map(|a| self.start_detach_locked(a, Some(lock), unlink)))
    }

    fn start_detach_locked(
        &self,
        attachment: Attachment,
        lock: Option<FileLock>,
        unlink: cni::Unlink,
    ) -> Detaching<'_> {
        let a = &attachment;
        let deleting = cni::start_del(&a.config, &a.container, &a.netns, &a.ports, Some(&a.result), unlink);
        Detaching { networks: self, attachment, deleting, _lock: lock }
    }

    /// Detaches `a` at once, its veth pair deleted now (a stale attachment's namespace may
    /// still hold processes).
    fn detach_locked(&self, a: &Attachment) -> Result<(), NetworkError> {
        self.start_detach_locked(a.clone(), None, cni::Unlink::Now).finish()
    }

    /// Detaches every container whose record is gone or whose supervisor is dead (it
    /// cannot detach itself any more); returns their IDs.
    pub fn collect_stale(&self, containers: &Containers) -> Result<Vec<String>, NetworkError> {
        let stale: Vec<Attachment> = self
            .attachments()?
            .into_iter()
            .filter(|a| match a.owner {
                Some(pid) => !crate::container::process_alive(pid),
                None => containers.load(&a.container).map_or(true, |r| !r.is_running()),
            })
            .collect();
        if stale.is_empty() {
            return Ok(Vec::new());
        }
        let _lock = self.lock()?;
        let mut ids = Vec::new();
        for a in stale {
            // Looked at again under the lock: its own supervisor may have detached it.
            if self.attachment(&a.container)?.is_some() {
                if let Err(e) = self.detach_locked(&a) {
                    tracing::warn!(container = %a.container, error = %shared::error_chain(&e), "detaching a stale container");
                }
                ids.push(a.container);
            }
        }
        Ok(ids)
    }
}

/// A detach under way ([`Networks::start_detach`]).
pub struct Detaching<'a> {
    networks: &'a Networks,
    attachment: Attachment,
    deleting: cni::Deleting,
    _lock: Option<FileLock>,
}

impl Detaching<'_> {
    /// Waits for the plugins, then removes the namespace and the attachment and updates the
    /// network's DNS.
    pub fn finish(self) -> Result<(), NetworkError> {
        let (networks, a) = (self.networks, &self.attachment);
        let deleted = self.deleting.finish();
        netns::remove(&a.netns).map_err(|source| NetworkError::Netns { path: a.netns.clone(), source })?;
        let path = networks.paths.network_attachment(&a.container);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&path)(e)),
            _ => {}
        }
        if let Ok(def) = networks.get_locked(&a.network) {
            networks.sync_dns(&def)?;
        }
        deleted
    }
}

/// `ports` with free host ports chosen for 0, refused when one is published by another
/// container or taken by a host process.
fn choose_ports(ports: &[PortMapping], others: &[Attachment]) -> Result<Vec<PortMapping>, NetworkError> {
    let mut chosen: Vec<PortMapping> = Vec::new();
    for p in ports {
        let mut p = *p;
        if p.host_port == 0 {
            p.host_port = ports::free_port(p.host_ip, p.protocol).map_err(io_err(Path::new("choosing a free port")))?;
        } else {
            let taken = others.iter().flat_map(|a| &a.ports).chain(&chosen).any(|o| o.clashes(&p));
            if taken || ports::in_use_on_host(&p) {
                let ip = p.host_ip.map_or("0.0.0.0".to_string(), |ip| ip.to_string());
                return Err(NetworkError::PortInUse(format!("{ip}:{}/{}", p.host_port, p.protocol)));
            }
        }
        chosen.push(p);
    }
    Ok(chosen)
}

/// Deletes a host interface (a network's bridge) with iproute2; absent is fine.
fn delete_link(name: &str) {
    let _ = std::process::Command::new("ip")
        .args(["link", "delete", name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_created_listed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let networks = Networks::at(dir.path());
        let containers = Containers::at(dir.path());
        let all = networks.list().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].name.as_str(), all[0].subnet, all[0].bridge.as_str()), ("bridge", DEFAULT_SUBNET, "berth0"));
        assert!(!all[0].dns);
        let web = networks.create("web", Some("10.99.7.0/24".parse().unwrap()), None).unwrap();
        assert_eq!(web.gateway, Ipv4Addr::new(10, 99, 7, 1));
        assert!(web.dns && web.bridge.starts_with("br-") && web.bridge.len() == 15);
        assert!(matches!(networks.create("web", None, None), Err(NetworkError::Exists(_))));
        assert!(matches!(
            networks.create("other", Some("10.99.0.0/16".parse().unwrap()), None),
            Err(NetworkError::Overlap { .. })
        ));
        assert!(matches!(
            networks.create("gw", Some("10.98.0.0/24".parse().unwrap()), Some(Ipv4Addr::new(10, 97, 0, 1))),
            Err(NetworkError::Gateway { .. })
        ));
        assert!(matches!(networks.create("host", None, None), Err(NetworkError::InvalidName(_))));
        let auto = networks.create("auto", None, None).unwrap();
        assert!(USER_POOL.contains(auto.subnet.addr) && auto.subnet.prefix == 24);
        assert_eq!(networks.get(&web.id[..12]).unwrap().name, "web");
        let shown = networks.inspect(&web, &containers).unwrap();
        assert_eq!(shown["IPAM"]["Config"][0]["Subnet"], "10.99.7.0/24");
        assert!(matches!(networks.remove("bridge", &containers), Err(NetworkError::Predefined(_))));
        networks.remove("web", &containers).unwrap();
        assert!(matches!(networks.get("web"), Err(NetworkError::NotFound(_))));
        assert_eq!(networks.list().unwrap().len(), 2);
    }

    #[test]
    fn taken_ports_are_refused_and_free_ones_chosen() {
        let taken = ports::parse_publish("127.0.0.1:9999:80").unwrap();
        let other = Attachment {
            container: "c".into(),
            network: "bridge".into(),
            dns: false,
            netns: "/x".into(),
            address: Ipv4Addr::new(10, 77, 0, 2),
            prefix: 16,
            gateway: Ipv4Addr::new(10, 77, 0, 1),
            mac: String::new(),
            ports: taken.clone(),
            names: vec![],
            aliases: vec![],
            owner: None,
            config: Value::Null,
            result: Value::Null,
        };
        assert!(matches!(choose_ports(&taken, std::slice::from_ref(&other)), Err(NetworkError::PortInUse(_))));
        let any = ports::parse_publish("127.0.0.1::80").unwrap();
        let chosen = choose_ports(&any, &[other]).unwrap();
        assert_ne!(chosen[0].host_port, 0);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = format!("127.0.0.1:{}:80", listener.local_addr().unwrap().port());
        assert!(matches!(choose_ports(&ports::parse_publish(&busy).unwrap(), &[]), Err(NetworkError::PortInUse(_))));
    }
}
