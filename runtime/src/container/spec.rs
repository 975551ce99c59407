//! The OCI runtime configuration (`config.json`) of a container, built with `oci-spec` from
//! the image's config and the `berth run` options, with Docker's defaults: mount, pid, uts,
//! ipc, network and (where the kernel has them) cgroup namespaces; `/proc`, `/dev`,
//! `/dev/pts`, `/dev/shm`, `/dev/mqueue`, `/sys` and `/sys/fs/cgroup` mounted as Docker mounts
//! them (every cgroup hierarchy read-only); Docker's masked and read-only paths and default
//! capability set; `no_new_privs`; an open-files limit and `--ulimit`s; `--init`'s tini as the
//! first process ([`INIT_PATH`]); the device cgroup's allow list and the
//! memory, CPU and pids limits; Docker's default seccomp profile ([`super::seccomp`]),
//! filtered by the container's capabilities.
//!
//! The security options follow `docker run`'s: `--cap-add`/`--cap-drop` (names with or
//! without `CAP_`, or `ALL`), `--security-opt seccomp=unconfined` or a profile file's
//! contents, `--security-opt no-new-privileges=false` (berth sets `no_new_privs` unless told
//! otherwise; Docker does not), `--device`, and `--privileged` (every capability, no
//! seccomp, masked or read-only paths, every host device, `/sys` and cgroups writable).
//!
//! [`build`] is pure (everything it needs is passed in), so every rule is unit-tested
//! without root; the supervisor ([`super::shim`]) calls it once the container's root is
//! mounted and the user has been resolved from it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::image::Config as ImageConfig;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDevice, LinuxDeviceBuilder,
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use serde::{Deserialize, Serialize};

use super::seccomp::{self, SeccompError};
use super::user::ResolvedUser;

/// The default `PATH`, Docker's.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability, in the kernel's order (`CAP_CHOWN` is 0): `--cap-add ALL` and
/// `--privileged` get those of them the host can grant ([`HostFacts::capability_mask`]).
pub const ALL_CAPABILITIES: [Capability; 41] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// Docker's masked paths: hidden behind `/dev/null` or an empty read-only tmpfs.
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/interrupts",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: [&str; 6] =
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", "/proc/sys/kernel/random"];

/// The cgroup file systems a container sees, made read-only as runc makes them: the
/// `/sys/fs/cgroup` tmpfs (v1, hybrid) or cgroup2 mount (v2), then every v1 hierarchy the
/// runtime may mount in it, by the names hosts give them (comounted ones included; `systemd`
/// is the named `name=systemd` hierarchy). Without them the embedded runtime (libcontainer
/// 0.7 ignores the mount's `ro` on v1) leaves the hierarchies writable, and a container could
/// lift its own `--memory`, `--cpus` and `--pids-limit` or write the host's `name=systemd`
/// hierarchy. A path the container lacks is skipped by the runtime; each is bound over
/// itself and remounted read-only, which a container without `CAP_SYS_ADMIN` cannot undo.
pub const CGROUP_READONLY_PATHS: [&str; 20] = [
    "/sys/fs/cgroup",
    "/sys/fs/cgroup/blkio",
    "/sys/fs/cgroup/cpu",
    "/sys/fs/cgroup/cpuacct",
    "/sys/fs/cgroup/cpu,cpuacct",
    "/sys/fs/cgroup/cpuacct,cpu",
    "/sys/fs/cgroup/cpuset",
    "/sys/fs/cgroup/devices",
    "/sys/fs/cgroup/freezer",
    "/sys/fs/cgroup/hugetlb",
    "/sys/fs/cgroup/memory",
    "/sys/fs/cgroup/misc",
    "/sys/fs/cgroup/net_cls",
    "/sys/fs/cgroup/net_prio",
    "/sys/fs/cgroup/net_cls,net_prio",
    "/sys/fs/cgroup/net_prio,net_cls",
    "/sys/fs/cgroup/perf_event",
    "/sys/fs/cgroup/pids",
    "/sys/fs/cgroup/rdma",
    "/sys/fs/cgroup/systemd",
];

/// The network a container gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Its own network namespace with only a loopback interface.
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// Its own network namespace attached to a berth network ([`crate::network`]): the
    /// default `bridge`, or a user-defined one.
    Bridge(String),
}

/// A bind mount (`-v HOST:CONTAINER[:ro]`, `--mount type=bind`) or a volume (`-v
/// NAME:CONTAINER`, `--mount type=volume`, or an anonymous one for the image's `VOLUME`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// The host path (absolute): a volume's files once [`super::Containers::create`] has
    /// made or found it.
    pub host: PathBuf,
    /// Where it appears in the container (absolute).
    pub container: String,
    /// Mounted read-only.
    pub read_only: bool,
    /// The volume's name ([`crate::volumes`]); `None` for a bind mount, and for an
    /// anonymous volume until it is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An anonymous volume (made for this container, removed with it by `rm -v`/`--rm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
    /// Do not fill an empty volume with the image's files (`volume-nocopy`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_copy: bool,
    /// Given with `--mount` rather than `-v` (Docker shows them apart in `inspect`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub long_syntax: bool,
}

impl Volume {
    /// A bind mount of `host` at `container`.
    pub fn bind(host: impl Into<PathBuf>, container: impl Into<String>, read_only: bool) -> Volume {
        Volume { host: host.into(), container: container.into(), read_only, ..Volume::default() }
    }

    /// Whether this is a volume (named or anonymous) rather than a bind mount.
    pub fn is_volume(&self) -> bool {
        self.name.is_some() || self.anonymous
    }
}

/// A line added to the container's `/etc/hosts` (`--add-host NAME:IP`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraHost {
    /// The host name.
    pub name: String,
    /// Its address.
    pub ip: std::net::IpAddr,
}

/// A resource limit of the container's processes (`--ulimit NAME=SOFT[:HARD]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// Docker's name: `nofile`, `nproc`, `core`, `memlock`, `stack`, ...
    pub name: String,
    /// The soft limit (`u64::MAX`: unlimited).
    pub soft: u64,
    /// The hard limit (`u64::MAX`: unlimited).
    pub hard: u64,
}

/// Docker's `--ulimit` names and the resources they set.
pub const ULIMITS: [(&str, PosixRlimitType); 16] = [
    ("core", PosixRlimitType::RlimitCore),
    ("cpu", PosixRlimitType::RlimitCpu),
    ("data", PosixRlimitType::RlimitData),
    ("fsize", PosixRlimitType::RlimitFsize),
    ("locks", PosixRlimitType::RlimitLocks),
    ("memlock", PosixRlimitType::RlimitMemlock),
    ("msgqueue", PosixRlimitType::RlimitMsgqueue),
    ("nice", PosixRlimitType::RlimitNice),
    ("nofile", PosixRlimitType::RlimitNofile),
    ("nproc", PosixRlimitType::RlimitNproc),
    ("rss", PosixRlimitType::RlimitRss),
    ("rtprio", PosixRlimitType::RlimitRtprio),
    ("rttime", PosixRlimitType::RlimitRttime),
    ("sigpending", PosixRlimitType::RlimitSigpending),
    ("stack", PosixRlimitType::RlimitStack),
    ("as", PosixRlimitType::RlimitAs),
];

/// Where `--init`'s init binary appears in the container (Docker's path), run as
/// `/sbin/docker-init -- COMMAND...`.
pub const INIT_PATH: &str = "/sbin/docker-init";

/// A tmpfs mount (`--tmpfs PATH[:OPTIONS]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tmpfs {
    /// Where it is mounted (absolute).
    pub path: String,
    /// Mount options such as `size=64m,mode=1777`, comma-separated.
    pub options: Vec<String>,
}

/// The seccomp profile a container runs under (`--security-opt seccomp=`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompProfile {
    /// Docker's default profile.
    #[default]
    Default,
    /// No filter (`seccomp=unconfined`).
    Unconfined,
    /// A profile in Docker's format: the contents of the file given.
    Custom(String),
}

/// A host device made available in the container (`--device HOST[:CONTAINER][:PERMISSIONS]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Where it appears in the container (absolute).
    pub container: String,
    /// Block (`b`) or character (`c`) device.
    pub block: bool,
    /// The device's major number.
    pub major: i64,
    /// The device's minor number.
    pub minor: i64,
    /// The permission bits of the node.
    pub file_mode: u32,
    /// The node's owner.
    pub uid: u32,
    /// The node's group.
    pub gid: u32,
    /// What the device cgroup allows: some of `r`, `w`, `m`.
    pub permissions: String,
}

/// What `berth run` was asked for, as Docker's flags have it. Stored in the container's
/// record; the defaults are Docker's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunOptions {
    /// `--name`: the container's name (default: generated).
    pub name: Option<String>,
    /// The command after the image (replaces the image's `Cmd`).
    pub command: Vec<String>,
    /// `--entrypoint`: replaces the image's `Entrypoint` (empty: none) and resets its `Cmd`.
    pub entrypoint: Option<String>,
    /// `-e`/`--env-file`: `KEY=VALUE` entries, later ones win (the CLI resolves bare `KEY`s).
    pub env: Vec<String>,
    /// `-w`: the working directory (absolute).
    pub workdir: Option<String>,
    /// `-u`: `name`, `uid`, with `:group` or `:gid` optionally.
    pub user: Option<String>,
    /// `-v`: bind mounts.
    pub volumes: Vec<Volume>,
    /// `--read-only`: mount the root read-only.
    pub read_only: bool,
    /// `--tmpfs`: tmpfs mounts.
    pub tmpfs: Vec<Tmpfs>,
    /// `--hostname` (default: the first 12 digits of the ID).
    pub hostname: Option<String>,
    /// `--network`.
    pub network: Network,
    /// `--network-alias`: more names the container has on a user network.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network_aliases: Vec<String>,
    /// `-p`: published ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<crate::network::PortMapping>,
    /// `-P`: publish the image's exposed ports on free host ports.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub publish_all: bool,
    /// `--memory`: bytes of memory (swap is not allowed beyond it).
    pub memory: Option<i64>,
    /// `--cpus`: CPUs' worth of time per period.
    pub cpus: Option<f64>,
    /// `--pids-limit`: most processes at once.
    pub pids_limit: Option<i64>,
    /// `-i`: keep standard input open.
    pub interactive: bool,
    /// `-t`: give the container a terminal.
    pub tty: bool,
    /// `-d`: run in the background, output to the log.
    pub detach: bool,
    /// `--rm`: remove the container when it exits.
    pub remove: bool,
    /// `--runtime`: an OCI runtime (`runc`, `crun` or a path) instead of the embedded one.
    pub runtime: Option<String>,
    /// `--cap-add`: capabilities added to Docker's default set (`ALL`: every one).
    pub cap_add: Vec<String>,
    /// `--cap-drop`: capabilities dropped from it (`ALL`: every one).
    pub cap_drop: Vec<String>,
    /// `--security-opt seccomp=`.
    pub seccomp: SeccompProfile,
    /// `--security-opt no-new-privileges=false`: let set-user-ID programs gain privileges.
    pub new_privileges: bool,
    /// `--device`: host devices.
    pub devices: Vec<Device>,
    /// `--privileged`.
    pub privileged: bool,
    /// `--restart`: when the supervisor restarts the process.
    pub restart: super::restart::RestartPolicy,
    /// `--stop-signal`: what `berth stop` sends first (default: the image's, else SIGTERM).
    pub stop_signal: Option<String>,
    /// `--stop-timeout`: seconds `berth stop` waits before SIGKILL (default 10).
    pub stop_timeout: Option<u64>,
    /// `--health-*`: the health check's settings given, over the image's `HEALTHCHECK`
    /// (`--no-healthcheck`: a test of `["NONE"]`).
    pub healthcheck: Option<super::health::HealthConfig>,
    /// `--label`/`--label-file`, over the image's labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// `--add-host`: lines added to `/etc/hosts`.
    pub extra_hosts: Vec<ExtraHost>,
    /// `--dns`: name servers for `/etc/resolv.conf`.
    pub dns: Vec<std::net::IpAddr>,
    /// `--dns-search`: search domains for `/etc/resolv.conf`.
    pub dns_search: Vec<String>,
    /// `--dns-option`: options for `/etc/resolv.conf`.
    pub dns_options: Vec<String>,
    /// `--ulimit`: resource limits (a `nofile` one replaces the default).
    pub ulimits: Vec<Ulimit>,
    /// `--init`: the host's init binary (tini), run as PID 1 at [`INIT_PATH`].
    pub init: Option<PathBuf>,
}

impl RunOptions {
    /// Takes from the image what Docker takes when it creates a container: its labels
    /// (under those given, which win), and an anonymous volume for each `VOLUME` path on
    /// which nothing else (a volume, bind or tmpfs mount) is mounted.
    pub fn apply_image(&mut self, image: Option<&ImageConfig>) {
        let Some(image) = image else { return };
        for (key, value) in image.labels().iter().flatten() {
            self.labels.entry(key.clone()).or_insert_with(|| value.clone());
        }
        let clean =
            |p: &str| format!("/{}", p.split('/').filter(|c| !c.is_empty() && *c != ".").collect::<Vec<_>>().join("/"));
        for path in image.volumes().iter().flatten() {
            let path = clean(path);
            let taken = self.volumes.iter().any(|v| clean(&v.container) == path)
                || self.tmpfs.iter().any(|t| clean(&t.path) == path);
            if !taken {
                self.volumes.push(Volume { container: path, anonymous: true, ..Volume::default() });
            }
        }
    }
}

/// Facts about the host the configuration depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Whether swap can be limited (cgroup v2, or v1 with `memory.memsw.*`).
    pub swap_limit: bool,
    /// The caller's hard limit of open files (0: unknown). Containers get at most this,
    /// since raising it needs `CAP_SYS_RESOURCE`.
    pub nofile_max: u64,
    /// Whether the kernel offers cgroup namespaces (Linux 4.6+; [`host_has_cgroup_namespaces`]):
    /// containers then get one of their own, rooted at their cgroup.
    pub cgroup_namespace: bool,
    /// The architecture and kernel the seccomp profile is filtered for.
    pub seccomp: seccomp::Target,
    /// The host's devices, given to `--privileged` containers.
    pub devices: Vec<Device>,
    /// The capabilities berth may grant (its bounding set, bit N for capability N;
    /// [`host_capability_mask`]); 0: unknown, every one.
    pub capability_mask: u64,
}

/// This process's bounding set (`CapBnd` of `/proc/self/status`); 0 when unreadable.
pub fn host_capability_mask() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string())))
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(0)
}

/// Whether this kernel offers cgroup namespaces.
pub fn host_has_cgroup_namespaces() -> bool {
    std::path::Path::new("/proc/self/ns/cgroup").exists()
}

/// The device node at `host` (following links, as Docker does), to appear at `container`
/// with `permissions`; `None` when `host` is not a block or character device.
pub fn device_at(host: &std::path::Path, container: &str, permissions: &str) -> std::io::Result<Option<Device>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(host)?;
    let block = meta.file_type().is_block_device();
    if !block && !meta.file_type().is_char_device() {
        return Ok(None);
    }
    let rdev = meta.rdev();
    Ok(Some(Device {
        container: container.to_string(),
        block,
        major: nix::sys::stat::major(rdev) as i64,
        minor: nix::sys::stat::minor(rdev) as i64,
        file_mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        permissions: permissions.to_string(),
    }))
}

/// Every device node under the host's `/dev` (not `/dev/pts` or `/dev/shm`, which a
/// container gets of its own), for `--privileged` containers; unreadable ones are skipped.
pub fn host_devices() -> Vec<Device> {
    let mut found = Vec::new();
    let mut dirs = vec![PathBuf::from("/dev")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() && !["/dev/pts", "/dev/shm", "/dev/mqueue"].iter().any(|p| path == std::path::Path::new(p))
            {
                dirs.push(path);
            } else if !kind.is_symlink() && !kind.is_dir() && path != std::path::Path::new("/dev/console") {
                if let Ok(Some(d)) = device_at(&path, &path.to_string_lossy(), "rwm") {
                    found.push(d);
                }
            }
        }
    }
    found
}

/// The open-files limit containers get where the host allows it (Docker's).
pub const NOFILE: u64 = 1_048_576;

/// Everything [`build`] needs.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    /// The container's ID.
    pub id: &'a str,
    /// The image config's `config` part (`None` when it has none).
    pub image: Option<&'a ImageConfig>,
    /// The options.
    pub options: &'a RunOptions,
    /// The user, resolved from the image.
    pub user: &'a ResolvedUser,
    /// The cgroup path (`/berth/<id>`).
    pub cgroups_path: PathBuf,
    /// Files berth writes for the container, bind-mounted over the image's: (container
    /// path, host file), such as `/etc/hostname` and `/etc/hosts`.
    pub etc_files: Vec<(String, PathBuf)>,
    /// Host facts.
    pub host: HostFacts,
}

/// Why a configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Neither the options nor the image name a command.
    #[error("no command specified: the image has no Entrypoint or Cmd, and none was given")]
    NoCommand,
    /// A path that must be absolute is not.
    #[error("{what} {path:?} is not an absolute path")]
    NotAbsolute {
        /// Which option.
        what: &'static str,
        /// The path.
        path: String,
    },
    /// An option is out of range.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which option.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A capability name is not one.
    #[error("unknown capability {0:?} (use names such as NET_ADMIN or CAP_NET_ADMIN, or ALL)")]
    UnknownCapability(String),
    /// The seccomp profile could not be used.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// `oci-spec` refused a part of the configuration.
    #[error("building the OCI runtime configuration")]
    Oci(#[from] oci_spec::OciSpecError),
}

/// The process's arguments: Docker's rules for `--entrypoint`, the command, and the
/// image's `Entrypoint` and `Cmd`.
pub fn process_args(image: Option<&ImageConfig>, options: &RunOptions) -> Result<Vec<String>, SpecError> {
    let image_entrypoint = image.and_then(|c| c.entrypoint().clone()).unwrap_or_default();
    let image_cmd = image.and_then(|c| c.cmd().clone()).unwrap_or_default();
    let (entrypoint, default_cmd) = match &options.entrypoint {
        // An explicit entrypoint resets the image's Cmd, as in Docker.
        Some(e) if e.is_empty() => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.clone()], Vec::new()),
        None => (image_entrypoint, image_cmd),
    };
    let cmd = if options.command.is_empty() { default_cmd } else { options.command.clone() };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(args)
}

/// The environment: the image's, then the options' (a later `KEY=` replaces an earlier
/// one), plus `PATH`, `HOSTNAME`, `HOME` and, with a terminal, `TERM` unless set.
pub fn environment(image: Option<&ImageConfig>, options: &RunOptions, hostname: &str, home: &str) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |entry: &str| {
        let key = entry.split_once('=').map_or(entry, |(k, _)| k);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(entry.to_string());
    };
    let image_env = image.and_then(|c| c.env().clone()).unwrap_or_default();
    if !image_env.iter().any(|e| e.starts_with("PATH=")) {
        set(&format!("PATH={DEFAULT_PATH}"));
    }
    set(&format!("HOSTNAME={hostname}"));
    for entry in image_env.iter().chain(&options.env) {
        set(entry);
    }
    let has = |env: &[String], key: &str| env.iter().any(|e| e.starts_with(&format!("{key}=")));
    if !has(&env, "HOME") {
        env.push(format!("HOME={home}"));
    }
    if options.tty && !has(&env, "TERM") {
        env.push("TERM=xterm".to_string());
    }
    env
}

/// The working directory: `-w`, else the image's `WorkingDir`, else `/`.
pub fn working_dir(image: Option<&ImageConfig>, options: &RunOptions) -> Result<String, SpecError> {
    let dir = options
        .workdir
        .clone()
        .or_else(|| image.and_then(|c| c.working_dir().clone()))
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/".to_string());
    if !dir.starts_with('/') {
        return Err(SpecError::NotAbsolute { what: "working directory", path: dir });
    }
    Ok(dir)
}

/// The hostname: `--hostname`, else the first 12 digits of the ID.
pub fn hostname(options: &RunOptions, id: &str) -> String {
    options.hostname.clone().unwrap_or_else(|| id.chars().take(12).collect())
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

/// The mounts: Docker's standard ones, then berth's `/etc` files, tmpfs mounts and volumes.
fn mounts(input: &SpecInput<'_>) -> Result<Vec<Mount>, SpecError> {
    // As Docker: a privileged container may write /sys and its cgroups.
    let ro = if input.options.privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"])?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        )?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", ro])?,
        mount("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", ro])?,
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"])?,
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"])?,
    ];
    for (path, file) in &input.etc_files {
        mounts.push(mount(path, "bind", &file.to_string_lossy(), &["rbind", "rprivate"])?);
    }
    for t in &input.options.tmpfs {
        if !t.path.starts_with('/') {
            return Err(SpecError::NotAbsolute { what: "tmpfs mount point", path: t.path.clone() });
        }
        let mut options = vec!["nosuid", "nodev", "noexec"];
        options.extend(t.options.iter().map(String::as_str));
        mounts.push(mount(&t.path, "tmpfs", "tmpfs", &options)?);
    }
    for v in &input.options.volumes {
        if !v.container.starts_with('/') {
            return Err(SpecError::NotAbsolute { what: "volume mount point", path: v.container.clone() });
        }
        if !v.host.is_absolute() {
            return Err(SpecError::NotAbsolute { what: "volume source", path: v.host.to_string_lossy().into_owned() });
        }
        let mut options = vec!["rbind", "rprivate"];
        if v.read_only {
            options.push("ro");
        }
        mounts.push(mount(&v.container, "bind", &v.host.to_string_lossy(), &options)?);
    }
    Ok(mounts)
}

fn device_rule(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<oci_spec::runtime::LinuxDeviceCgroup, SpecError> {
    let mut b = LinuxDeviceCgroupBuilder::default().allow(true).typ(typ).access(access);
    if let Some(major) = major {
        b = b.major(major);
    }
    if let Some(minor) = minor {
        b = b.minor(minor);
    }
    Ok(b.build()?)
}

/// `CAP_NET_ADMIN`, `net_admin` or `NET_ADMIN` → the capability.
fn parse_capability(name: &str) -> Result<Capability, SpecError> {
    let upper = name.to_ascii_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper).parse().map_err(|_| SpecError::UnknownCapability(name.to_string()))
}

/// The container's capabilities: every one with `--privileged`, else Docker's default set
/// with `--cap-add` and `--cap-drop` applied as Docker applies them (`--cap-add ALL` keeps
/// the drops; `--cap-drop ALL` keeps only the adds; otherwise drops, then adds).
pub fn capabilities(options: &RunOptions, host: &HostFacts) -> Result<HashSet<Capability>, SpecError> {
    let all = || {
        ALL_CAPABILITIES
            .into_iter()
            .enumerate()
            .filter(|(n, _)| host.capability_mask == 0 || host.capability_mask & (1 << n) != 0)
            .map(|(_, c)| c)
    };
    if options.privileged {
        return Ok(all().collect());
    }
    let is_all = |n: &&String| n.eq_ignore_ascii_case("ALL");
    let parse = |names: &[String]| {
        names.iter().filter(|n| !is_all(n)).map(|n| parse_capability(n)).collect::<Result<HashSet<_>, _>>()
    };
    let (add, drop) = (parse(&options.cap_add)?, parse(&options.cap_drop)?);
    Ok(if options.cap_add.iter().any(|n| is_all(&n)) {
        all().filter(|c| !drop.contains(c)).collect()
    } else if options.cap_drop.iter().any(|n| is_all(&n)) {
        add
    } else {
        DEFAULT_CAPABILITIES.into_iter().filter(|c| !drop.contains(c)).chain(add).collect()
    })
}

/// The `linux.seccomp` section: none when unconfined or privileged, else the profile
/// filtered by the bounding set.
fn seccomp_section(
    options: &RunOptions,
    caps: &HashSet<Capability>,
    host: &HostFacts,
) -> Result<Option<oci_spec::runtime::LinuxSeccomp>, SpecError> {
    let profile = match &options.seccomp {
        _ if options.privileged => return Ok(None),
        SeccompProfile::Unconfined => return Ok(None),
        SeccompProfile::Default => seccomp::DEFAULT_PROFILE,
        SeccompProfile::Custom(profile) => profile.as_str(),
    };
    Ok(Some(seccomp::to_oci(profile, caps, &host.seccomp)?))
}

/// The device nodes the runtime creates (`--device`; every host device when privileged)
/// and the device cgroup's rules: deny all, then allow the standard ones and those nodes
/// (allow all when privileged).
fn devices(input: &SpecInput<'_>) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecError> {
    let options = input.options;
    let mut rules = if options.privileged {
        vec![LinuxDeviceCgroupBuilder::default().allow(true).access("rwm").build()?]
    } else {
        let mut rules = vec![LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build()?];
        for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2)] {
            rules.push(device_rule(LinuxDeviceType::C, Some(major), Some(minor), "rwm")?);
        }
        rules.push(device_rule(LinuxDeviceType::C, Some(136), None, "rwm")?);
        rules
    };
    let privileged = if options.privileged { input.host.devices.as_slice() } else { &[] };
    let mut nodes = Vec::new();
    for d in privileged.iter().chain(&options.devices) {
        if !d.container.starts_with('/') {
            return Err(SpecError::NotAbsolute { what: "device path", path: d.container.clone() });
        }
        if d.permissions.is_empty() || !d.permissions.chars().all(|c| "rwm".contains(c)) {
            let reason = format!("{:?} for {}: use some of r, w and m", d.permissions, d.container);
            return Err(SpecError::Invalid { what: "device permissions", reason });
        }
        let typ = if d.block { LinuxDeviceType::B } else { LinuxDeviceType::C };
        nodes.push(
            LinuxDeviceBuilder::default()
                .path(&d.container)
                .typ(typ)
                .major(d.major)
                .minor(d.minor)
                .file_mode(d.file_mode)
                .uid(d.uid)
                .gid(d.gid)
                .build()?,
        );
        if !options.privileged {
            rules.push(device_rule(typ, Some(d.major), Some(d.minor), &d.permissions)?);
        }
    }
    Ok((nodes, rules))
}

/// The process's resource limits: Docker's open-files limit (at most the caller's), then
/// every `--ulimit` (which replaces a default of the same resource).
fn rlimits(options: &RunOptions, host: &HostFacts) -> Result<Vec<oci_spec::runtime::PosixRlimit>, SpecError> {
    let limit = if host.nofile_max == 0 { NOFILE } else { host.nofile_max.min(NOFILE) };
    let mut limits = vec![(PosixRlimitType::RlimitNofile, limit, limit)];
    for u in &options.ulimits {
        let typ = ULIMITS.iter().find(|(name, _)| *name == u.name).map(|(_, t)| *t).ok_or_else(|| {
            SpecError::Invalid { what: "--ulimit", reason: format!("{:?} is not a resource limit", u.name) }
        })?;
        if u.soft > u.hard {
            let reason = format!("the soft limit of {} ({}) is above the hard one ({})", u.name, u.soft, u.hard);
            return Err(SpecError::Invalid { what: "--ulimit", reason });
        }
        limits.retain(|(t, _, _)| *t != typ);
        limits.push((typ, u.soft, u.hard));
    }
    limits
        .into_iter()
        .map(|(typ, soft, hard)| Ok(PosixRlimitBuilder::default().typ(typ).soft(soft).hard(hard).build()?))
        .collect()
}

/// Builds the configuration.
pub fn build(input: &SpecInput<'_>) -> Result<Spec, SpecError> {
    let options = input.options;
    let hostname = hostname(options, input.id);
    let user = input.user;
    let args = process_args(input.image, options)?;
    let env = environment(input.image, options, &hostname, &user.home);
    let cwd = working_dir(input.image, options)?;

    let caps = capabilities(options, &input.host)?;
    let seccomp = seccomp_section(options, &caps, &input.host)?;
    // A non-root user gets no effective capabilities (newer Docker does the same).
    let (effective, permitted) =
        if user.uid == 0 { (caps.clone(), caps.clone()) } else { (HashSet::new(), HashSet::new()) };
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(effective)
        .permitted(permitted)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let rlimits = rlimits(options, &input.host)?;
    let args = match &options.init {
        Some(_) => [INIT_PATH.to_string(), "--".to_string()].into_iter().chain(args).collect(),
        None => args,
    };
    let process = ProcessBuilder::default()
        .terminal(options.tty)
        .user(UserBuilder::default().uid(user.uid).gid(user.gid).additional_gids(user.additional_gids.clone()).build()?)
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .rlimits(rlimits)
        .no_new_privileges(!options.new_privileges)
        .build()?;

    let mut namespaces =
        vec![LinuxNamespaceType::Pid, LinuxNamespaceType::Ipc, LinuxNamespaceType::Uts, LinuxNamespaceType::Mount];
    // A berth network's namespace is made beforehand: the supervisor sets its path
    // ([`join_network_namespace`]).
    if options.network != Network::Host {
        namespaces.push(LinuxNamespaceType::Network);
    }
    if input.host.cgroup_namespace {
        namespaces.push(LinuxNamespaceType::Cgroup);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect::<Result<Vec<_>, _>>()?;

    let (devices, device_rules) = devices(input)?;
    let mut resources = LinuxResourcesBuilder::default().devices(device_rules);
    if let Some(memory) = options.memory {
        if memory < 6 * 1024 * 1024 {
            return Err(SpecError::Invalid { what: "--memory", reason: "the minimum is 6 MiB".into() });
        }
        let mut m = LinuxMemoryBuilder::default().limit(memory);
        if input.host.swap_limit {
            m = m.swap(memory);
        }
        resources = resources.memory(m.build()?);
    }
    if let Some(cpus) = options.cpus {
        if !(cpus > 0.0 && cpus.is_finite()) {
            return Err(SpecError::Invalid { what: "--cpus", reason: format!("{cpus} is not a positive number") });
        }
        let period = 100_000u64;
        let quota = (cpus * period as f64).round() as i64;
        resources = resources.cpu(LinuxCpuBuilder::default().period(period).quota(quota.max(1000)).build()?);
    }
    if let Some(limit) = options.pids_limit {
        if limit > 0 {
            resources = resources.pids(LinuxPidsBuilder::default().limit(limit).build()?);
        }
    }
    let (masked, readonly): (Vec<String>, Vec<String>) = if options.privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            MASKED_PATHS.iter().map(|p| p.to_string()).collect(),
            READONLY_PATHS.iter().chain(&CGROUP_READONLY_PATHS).map(|p| p.to_string()).collect(),
        )
    };
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(input.cgroups_path.clone())
        .resources(resources.build()?)
        .devices(devices)
        .masked_paths(masked)
        .readonly_paths(readonly);
    if let Some(seccomp) = seccomp {
        linux = linux.seccomp(seccomp);
    }
    let linux = linux.build()?;

    Ok(SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path("rootfs").readonly(options.read_only).build()?)
        .hostname(hostname)
        .mounts(mounts(input)?)
        .process(process)
        .linux(linux)
        .build()?)
}

/// Makes the container join the network namespace at `path` (made and attached by
/// [`crate::network`]) instead of getting a new one.
pub fn join_network_namespace(spec: &mut Spec, path: &Path) -> Result<(), SpecError> {
    let joined = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network).path(path).build()?;
    if let Some(linux) = spec.linux_mut() {
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        namespaces.retain(|ns| ns.typ() != LinuxNamespaceType::Network);
        namespaces.push(joined);
        linux.set_namespaces(Some(namespaces));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ConfigBuilder;

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ImageConfig {
        let mut b = ConfigBuilder::default()
            .env(vec!["PATH=/bin".to_string(), "A=image".to_string()])
            .working_dir("/srv".to_string());
        if let Some(e) = entrypoint {
            b = b.entrypoint(e.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        if let Some(c) = cmd {
            b = b.cmd(c.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        b.build().unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args_follow_dockers_rules() {
        let img = image(Some(&["/entry"]), Some(&["default"]));
        let opts = |entrypoint: Option<&str>, command: &[&str]| RunOptions {
            entrypoint: entrypoint.map(String::from),
            command: strings(command),
            ..RunOptions::default()
        };
        assert_eq!(process_args(Some(&img), &opts(None, &[])).unwrap(), ["/entry", "default"]);
        assert_eq!(process_args(Some(&img), &opts(None, &["x", "y"])).unwrap(), ["/entry", "x", "y"]);
        assert_eq!(process_args(Some(&img), &opts(Some("sh"), &[])).unwrap(), ["sh"]);
        assert_eq!(process_args(Some(&img), &opts(Some("sh"), &["-c", "true"])).unwrap(), ["sh", "-c", "true"]);
        assert_eq!(process_args(Some(&img), &opts(Some(""), &["ls"])).unwrap(), ["ls"]);
        assert!(matches!(process_args(Some(&img), &opts(Some(""), &[])), Err(SpecError::NoCommand)));
        assert!(matches!(process_args(None, &opts(None, &[])), Err(SpecError::NoCommand)));
        let cmd_only = image(None, Some(&["sh"]));
        assert_eq!(process_args(Some(&cmd_only), &opts(None, &["echo", "hi"])).unwrap(), ["echo", "hi"]);
    }

    #[test]
    fn environment_merges_in_order() {
        let img = image(None, Some(&["sh"]));
        let opts = RunOptions { env: strings(&["A=option", "B=1", "B=2"]), tty: true, ..RunOptions::default() };
        let env = environment(Some(&img), &opts, "box", "/root");
        assert_eq!(env, strings(&["HOSTNAME=box", "PATH=/bin", "A=option", "B=2", "HOME=/root", "TERM=xterm"]));
        let env = environment(None, &RunOptions::default(), "h", "/");
        assert_eq!(env, strings(&[&format!("PATH={DEFAULT_PATH}"), "HOSTNAME=h", "HOME=/"]));
    }

    #[test]
    fn working_dir_and_hostname() {
        let img = image(None, Some(&["sh"]));
        assert_eq!(working_dir(Some(&img), &RunOptions::default()).unwrap(), "/srv");
        let opts = RunOptions { workdir: Some("/tmp".into()), ..RunOptions::default() };
        assert_eq!(working_dir(Some(&img), &opts).unwrap(), "/tmp");
        assert_eq!(working_dir(None, &RunOptions::default()).unwrap(), "/");
        let rel = RunOptions { workdir: Some("tmp".into()), ..RunOptions::default() };
        assert!(matches!(working_dir(None, &rel), Err(SpecError::NotAbsolute { .. })));
        assert_eq!(hostname(&RunOptions::default(), "0123456789abcdef"), "0123456789ab");
    }

    fn build_with(options: &RunOptions, uid: u32) -> Spec {
        let img = image(None, Some(&["sh"]));
        let user = ResolvedUser { uid, gid: uid, additional_gids: vec![], home: "/".into() };
        build(&SpecInput {
            id: "abcdefabcdef0123",
            image: Some(&img),
            options,
            user: &user,
            cgroups_path: "/berth/abcdefabcdef0123".into(),
            etc_files: vec![("/etc/hostname".into(), "/x/hostname".into())],
            host: HostFacts {
                swap_limit: true,
                nofile_max: 20_000,
                cgroup_namespace: true,
                seccomp: seccomp::Target { arch: "amd64".into(), kernel: Some((6, 1)) },
                devices: vec![],
                capability_mask: 0,
            },
        })
        .unwrap()
    }

    #[test]
    fn builds_a_docker_like_configuration() {
        let options = RunOptions {
            volumes: vec![Volume::bind("/data", "/mnt", true)],
            tmpfs: vec![Tmpfs { path: "/run".into(), options: strings(&["size=1m"]) }],
            read_only: true,
            memory: Some(64 << 20),
            cpus: Some(1.5),
            pids_limit: Some(20),
            ..RunOptions::default()
        };
        let spec = build_with(&options, 0);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["root"], serde_json::json!({"path": "rootfs", "readonly": true}));
        assert_eq!(json["hostname"], "abcdefabcdef");
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(
            json["process"]["rlimits"][0],
            serde_json::json!({"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000})
        );
        assert_eq!(json["process"]["capabilities"]["effective"].as_array().unwrap().len(), 14);
        let ns: Vec<&str> =
            json["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount", "network", "cgroup"]);
        assert_eq!(json["linux"]["resources"]["memory"], serde_json::json!({"limit": 64 << 20, "swap": 64 << 20}));
        assert_eq!(json["linux"]["resources"]["cpu"], serde_json::json!({"quota": 150000, "period": 100000}));
        assert_eq!(json["linux"]["resources"]["pids"]["limit"], 20);
        assert_eq!(json["linux"]["cgroupsPath"], "/berth/abcdefabcdef0123");
        let dests: Vec<&str> =
            json["mounts"].as_array().unwrap().iter().map(|m| m["destination"].as_str().unwrap()).collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm",
                "/etc/hostname",
                "/run",
                "/mnt"
            ]
        );
        assert_eq!(json["mounts"][9]["options"], serde_json::json!(["rbind", "rprivate", "ro"]));
        assert!(json["linux"]["maskedPaths"].as_array().unwrap().iter().any(|p| p == "/proc/kcore"));
        let readonly = json["linux"]["readonlyPaths"].as_array().unwrap();
        for path in ["/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/systemd"] {
            assert!(readonly.iter().any(|p| p == path), "{path} is not read-only");
        }

        let host = RunOptions { network: Network::Host, ..RunOptions::default() };
        let spec = build_with(&host, 1000);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["linux"]["namespaces"].as_array().unwrap().len(), 5);
        assert!(json["process"]["capabilities"]["effective"].as_array().is_none_or(|a| a.is_empty()));
        assert!(json["linux"]["resources"]["memory"].is_null());
    }

    #[test]
    fn capabilities_follow_dockers_rules() {
        let caps = |add: &[&str], drop: &[&str]| {
            let options = RunOptions { cap_add: strings(add), cap_drop: strings(drop), ..RunOptions::default() };
            capabilities(&options, &HostFacts::default())
        };
        assert_eq!(caps(&[], &[]).unwrap().len(), 14);
        let c = caps(&["net_admin", "CAP_SYS_PTRACE"], &["CHOWN", "cap_kill"]).unwrap();
        assert_eq!(c.len(), 14);
        assert!(c.contains(&Capability::NetAdmin) && c.contains(&Capability::SysPtrace));
        assert!(!c.contains(&Capability::Chown) && !c.contains(&Capability::Kill));
        assert_eq!(caps(&["ALL"], &["SYS_ADMIN"]).unwrap().len(), 40);
        assert_eq!(caps(&["KILL"], &["all"]).unwrap(), HashSet::from([Capability::Kill]));
        assert!(matches!(caps(&["NOPE"], &[]), Err(SpecError::UnknownCapability(n)) if n == "NOPE"));
        let privileged = RunOptions { privileged: true, cap_drop: strings(&["ALL"]), ..RunOptions::default() };
        assert_eq!(capabilities(&privileged, &HostFacts::default()).unwrap().len(), 41);
        // Only what the host can grant: here no CAP_SYS_RESOURCE (24).
        let host = HostFacts { capability_mask: 0x1ff_feff_ffff, ..HostFacts::default() };
        let granted = capabilities(&privileged, &host).unwrap();
        assert_eq!(granted.len(), 40);
        assert!(!granted.contains(&Capability::SysResource) && granted.contains(&Capability::CheckpointRestore));
    }

    #[test]
    fn security_options_shape_the_configuration() {
        let json = |options: &RunOptions| serde_json::to_value(build_with(options, 0)).unwrap();
        let default = json(&RunOptions::default());
        assert_eq!(default["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        let allowed =
            |j: &serde_json::Value, name: &str| {
                j["linux"]["seccomp"]["syscalls"].as_array().unwrap().iter().any(|r| {
                    r["action"] == "SCMP_ACT_ALLOW" && r["names"].as_array().unwrap().iter().any(|n| n == name)
                })
            };
        assert!(allowed(&default, "read") && !allowed(&default, "mount"));
        // The profile follows the capabilities: CAP_SYS_ADMIN allows mount.
        let admin = json(&RunOptions { cap_add: strings(&["SYS_ADMIN"]), ..RunOptions::default() });
        assert!(allowed(&admin, "mount"));
        assert_eq!(admin["process"]["capabilities"]["bounding"].as_array().unwrap().len(), 15);
        let unconfined = json(&RunOptions { seccomp: SeccompProfile::Unconfined, ..RunOptions::default() });
        assert!(unconfined["linux"]["seccomp"].is_null());
        let custom =
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}"#;
        let custom = json(&RunOptions { seccomp: SeccompProfile::Custom(custom.into()), ..RunOptions::default() });
        assert_eq!(custom["linux"]["seccomp"]["syscalls"][0]["names"][0], "mkdir");
        let free = json(&RunOptions { new_privileges: true, ..RunOptions::default() });
        assert!(free["process"]["noNewPrivileges"].is_null() || free["process"]["noNewPrivileges"] == false);

        let null = Device {
            container: "/dev/x".into(),
            block: false,
            major: 1,
            minor: 3,
            file_mode: 0o666,
            uid: 0,
            gid: 0,
            permissions: "rw".into(),
        };
        let dev = json(&RunOptions { devices: vec![null.clone()], ..RunOptions::default() });
        assert_eq!(dev["linux"]["devices"][0]["path"], "/dev/x");
        let rules = dev["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(
            rules.last().unwrap(),
            &serde_json::json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"})
        );

        let privileged = json(&RunOptions { privileged: true, ..RunOptions::default() });
        assert!(privileged["linux"]["seccomp"].is_null());
        assert_eq!(privileged["linux"]["resources"]["devices"], serde_json::json!([{"allow": true, "access": "rwm"}]));
        assert!(privileged["linux"]["maskedPaths"].as_array().is_none_or(|a| a.is_empty()));
        assert_eq!(privileged["mounts"][3]["options"], serde_json::json!(["nosuid", "noexec", "nodev", "rw"]));
        assert_eq!(privileged["process"]["capabilities"]["effective"].as_array().unwrap().len(), 41);
        let bad = Device { permissions: "rwx".into(), ..null };
        let img = image(None, Some(&["sh"]));
        let user = ResolvedUser { uid: 0, gid: 0, additional_gids: vec![], home: "/".into() };
        let options = RunOptions { devices: vec![bad], ..RunOptions::default() };
        let input = SpecInput {
            id: "x",
            image: Some(&img),
            options: &options,
            user: &user,
            cgroups_path: "/berth/x".into(),
            etc_files: vec![],
            host: HostFacts::default(),
        };
        assert!(matches!(build(&input), Err(SpecError::Invalid { what: "device permissions", .. })));
    }

    #[test]
    fn ulimits_init_and_image_settings() {
        let options = RunOptions {
            ulimits: vec![
                Ulimit { name: "nofile".into(), soft: 100, hard: 200 },
                Ulimit { name: "nproc".into(), soft: 7, hard: 7 },
            ],
            init: Some("/usr/bin/tini-static".into()),
            ..RunOptions::default()
        };
        let json = serde_json::to_value(build_with(&options, 0)).unwrap();
        assert_eq!(
            json["process"]["rlimits"],
            serde_json::json!([
                {"type": "RLIMIT_NOFILE", "hard": 200, "soft": 100},
                {"type": "RLIMIT_NPROC", "hard": 7, "soft": 7}
            ])
        );
        assert_eq!(json["process"]["args"], serde_json::json!(["/sbin/docker-init", "--", "sh"]));
        let bad = RunOptions { ulimits: vec![Ulimit { name: "nofile".into(), soft: 2, hard: 1 }], ..options };
        let img = image(None, Some(&["sh"]));
        let user = ResolvedUser { uid: 0, gid: 0, additional_gids: vec![], home: "/".into() };
        let input = SpecInput {
            id: "x",
            image: Some(&img),
            options: &bad,
            user: &user,
            cgroups_path: "/berth/x".into(),
            etc_files: vec![],
            host: HostFacts::default(),
        };
        assert!(matches!(build(&input), Err(SpecError::Invalid { what: "--ulimit", .. })));

        let labelled = ConfigBuilder::default()
            .labels(std::collections::HashMap::from([
                ("from".to_string(), "image".to_string()),
                ("both".to_string(), "image".to_string()),
            ]))
            .volumes(vec!["/data".to_string(), "/cache/".to_string(), "/tmpfs".to_string()])
            .build()
            .unwrap();
        let mut options = RunOptions {
            labels: [("both".to_string(), "run".to_string())].into(),
            volumes: vec![Volume { name: Some("mine".into()), container: "/data".into(), ..Volume::default() }],
            tmpfs: vec![Tmpfs { path: "/tmpfs".into(), options: vec![] }],
            ..RunOptions::default()
        };
        options.apply_image(Some(&labelled));
        assert_eq!(options.labels["both"], "run");
        assert_eq!(options.labels["from"], "image");
        let anonymous: Vec<&str> =
            options.volumes.iter().filter(|v| v.anonymous).map(|v| v.container.as_str()).collect();
        assert_eq!(anonymous, ["/cache"], "only the VOLUME nothing else is mounted on");
    }

    #[test]
    fn refuses_bad_options() {
        let img = image(None, Some(&["sh"]));
        let user = ResolvedUser { uid: 0, gid: 0, additional_gids: vec![], home: "/".into() };
        let try_build = |options: RunOptions| {
            build(&SpecInput {
                id: "x",
                image: Some(&img),
                options: &options,
                user: &user,
                cgroups_path: "/berth/x".into(),
                etc_files: vec![],
                host: HostFacts::default(),
            })
        };
        let volume = Volume::bind("rel", "/mnt", false);
        assert!(matches!(
            try_build(RunOptions { volumes: vec![volume], ..RunOptions::default() }),
            Err(SpecError::NotAbsolute { .. })
        ));
        assert!(matches!(
            try_build(RunOptions { memory: Some(1024), ..RunOptions::default() }),
            Err(SpecError::Invalid { .. })
        ));
        assert!(matches!(
            try_build(RunOptions { cpus: Some(-1.0), ..RunOptions::default() }),
            Err(SpecError::Invalid { .. })
        ));
    }
}
