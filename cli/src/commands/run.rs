//! `berth run [OPTIONS] IMAGE [COMMAND [ARG...]]`: Docker's flags turned into
//! `runtime::container::RunOptions`; pulls the image when the store lacks it, records the
//! container, then supervises it in this process (foreground) or hands it to a detached
//! supervisor (`-d`), through `runtime::container::shim`. Also the hidden
//! `container-shim` subcommand that supervisor runs as.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use oci_spec::image::ImageConfiguration;
use runtime::container::health::HealthConfig;
use runtime::container::lifecycle::parse_signal;
use runtime::container::restart::RestartPolicy;
use runtime::container::shim::{self, ShimArgs, EXIT_START_FAILED};
use runtime::container::spec::device_at;
use runtime::container::{Containers, Device, ExtraHost, Network, RunOptions, SeccompProfile, Tmpfs, Ulimit, Volume};
use runtime::{ImageRecord, PullOptions, Store, TerminalProgress};
use shared::client::Client;
use shared::ImageRef;

/// Flags of `berth run`, as `docker run` has them.
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run in the background and print the container's ID; output goes to its log.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Name of the container [default: generated].
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here).
    #[arg(long = "env", short = 'e', value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file (one KEY=VALUE or KEY a line; # comments).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container (absolute).
    #[arg(long, short = 'w', value_name = "DIR")]
    pub workdir: Option<String>,
    /// User: name or uid, optionally with :group or :gid (from the image's /etc/passwd and /etc/group).
    #[arg(long, short = 'u', value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Replace the image's entrypoint ("" for none); the image's command is not used then.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Bind-mount a host path (HOST absolute; a missing one is made), mount a named volume
    /// (made on first use, and filled with the image's files there when new), or, with a
    /// container path alone, an anonymous volume: [HOST|NAME:]CONTAINER[:ro|rw][,nocopy].
    #[arg(long = "volume", short = 'v', value_name = "[HOST|NAME:]CONTAINER[:OPTIONS]")]
    pub volumes: Vec<String>,
    /// Mount a bind, volume or tmpfs: type=bind|volume|tmpfs,source=SRC,target=DST[,readonly]
    /// [,volume-nocopy][,tmpfs-size=BYTES][,tmpfs-mode=OCTAL] (a bind's source must exist).
    #[arg(long = "mount", value_name = "type=...,target=...")]
    pub mounts: Vec<String>,
    /// Set a label on the container (KEY=VALUE, or KEY for an empty value).
    #[arg(long = "label", short = 'l', value_name = "KEY[=VALUE]")]
    pub labels: Vec<String>,
    /// Read labels from a file (one KEY=VALUE a line; # comments).
    #[arg(long = "label-file", value_name = "FILE")]
    pub label_files: Vec<PathBuf>,
    /// Add a line to the container's /etc/hosts: NAME:IP.
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_hosts: Vec<String>,
    /// A name server for the container's /etc/resolv.conf (replaces the host's).
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// A search domain for the container's /etc/resolv.conf (replaces the host's).
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// A resolver option for the container's /etc/resolv.conf, such as ndots:2.
    #[arg(long = "dns-option", value_name = "OPTION")]
    pub dns_options: Vec<String>,
    /// A resource limit: NAME=SOFT[:HARD], such as nofile=1024:2048 (-1 or unlimited: none).
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,
    /// Run an init (Debian's tini, static build) as PID 1: it reaps zombies and forwards
    /// signals to the command.
    #[arg(long)]
    pub init: bool,
    /// Mount the container's root file system read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Mount a tmpfs: PATH[:OPTIONS] such as /run:size=64m.
    #[arg(long, value_name = "PATH[:OPTIONS]")]
    pub tmpfs: Vec<String>,
    /// Host name inside the container [default: the first 12 digits of its ID].
    #[arg(long)]
    pub hostname: Option<String>,
    /// Network: bridge (the default network: an address of its own, outbound NAT), the name
    /// of a network made with `berth network create` (containers on it resolve each other's
    /// names), none (own namespace, loopback only) or host.
    #[arg(long, visible_alias = "net", default_value = "bridge", value_name = "bridge|NAME|none|host")]
    pub network: String,
    /// Another name the container has on a user network.
    #[arg(long = "network-alias", visible_alias = "net-alias", value_name = "ALIAS")]
    pub network_aliases: Vec<String>,
    /// Publish a container's port on the host: [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]
    /// (ranges as 8000-8009; no host port: a free one).
    #[arg(long = "publish", short = 'p', value_name = "[IP:][HOST:]PORT[/PROTO]")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes on free host ports.
    #[arg(long = "publish-all", short = 'P')]
    pub publish_all: bool,
    /// Memory limit, such as 64m or 1g (swap is not allowed beyond it).
    #[arg(long, short = 'm', value_name = "BYTES")]
    pub memory: Option<String>,
    /// CPUs' worth of time, such as 0.5 or 2.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Most processes at once (-1 or 0: unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Keep standard input open.
    #[arg(long, short = 'i')]
    pub interactive: bool,
    /// Give the container a terminal.
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Add a Linux capability (NET_ADMIN or CAP_NET_ADMIN; ALL for every one). Docker's default
    /// set: CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP
    /// NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE.
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a Linux capability from the default set (ALL for every one).
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Security options. By default Docker's seccomp profile applies and no_new_privs is set:
    /// seccomp=unconfined (no filter), seccomp=FILE (a profile in Docker's format),
    /// no-new-privileges[=true|false].
    #[arg(long = "security-opt", value_name = "OPTION")]
    pub security_opt: Vec<String>,
    /// Give the container a host device: HOST[:CONTAINER][:PERMISSIONS] (some of r, w, m; default rwm).
    #[arg(long = "device", value_name = "HOST[:CONTAINER][:rwm]")]
    pub devices: Vec<String>,
    /// Give the container every capability and host device, no seccomp filter or masked paths,
    /// and writable /sys and cgroups.
    #[arg(long)]
    pub privileged: bool,
    /// OCI runtime: runc, crun, or a path [default: the embedded one].
    #[arg(long, value_name = "RUNTIME")]
    pub runtime: Option<String>,
    /// Restart policy: no, on-failure[:MAX-RETRIES], always or unless-stopped (berth has no
    /// daemon: the last two differ only in Docker, across daemon restarts).
    #[arg(long, default_value = "no", value_name = "POLICY")]
    pub restart: String,
    /// Signal `berth stop` sends first [default: the image's StopSignal, else SIGTERM].
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `berth stop` waits after the stop signal before SIGKILL [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub stop_timeout: Option<u64>,
    /// Health check command, run in the container by its supervisor with `/bin/sh -c`
    /// (replaces the image's HEALTHCHECK command).
    #[arg(long, value_name = "COMMAND")]
    pub health_cmd: Option<String>,
    /// Time between health checks, such as 30s or 1m [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Time a health check may take before it counts as failed [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Failures in a row before the container is unhealthy [default: 3].
    #[arg(long, value_name = "N")]
    pub health_retries: Option<u32>,
    /// Time after the start during which failed checks do not count [default: 0s].
    #[arg(long, value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Run no health check, not even the image's.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Allow plain HTTP when the image has to be pulled.
    #[arg(long)]
    pub plain_http: bool,
    /// The image: a reference, or a manifest digest as `berth images` shows it.
    pub image: String,
    /// The command and its arguments [default: the image's].
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Flags of the hidden `berth container-shim`.
#[derive(clap::Args, Debug)]
pub struct ShimFlags {
    /// Leave the caller's session first.
    #[arg(long)]
    pub detach: bool,
    /// Report the start on this file descriptor.
    #[arg(long)]
    pub ready_fd: Option<i32>,
    /// The container's ID.
    pub id: String,
}

/// Parses `64m`, `1g`, `512k`, `100b` or plain bytes (powers of 1024, as Docker), through
/// [`shared::size::parse_size`]; the kernel takes at most `i64::MAX`.
pub fn parse_bytes(text: &str) -> Result<i64> {
    let bytes = shared::size::parse_size(text)?;
    i64::try_from(bytes).map_err(|_| anyhow!("size {text:?} is too large"))
}

/// `KEY=VALUE` stays; a bare `KEY` takes the value `lookup` gives, or is dropped.
pub(crate) fn env_entry(entry: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if entry.contains('=') {
        return Some(entry.to_string());
    }
    lookup(entry).map(|v| format!("{entry}={v}"))
}

/// The entries of an env file.
fn env_file_entries(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect()
}

/// `-v`: `/path` (anonymous volume), `NAME:/path` (named volume) or `/host:/path` (bind),
/// with options `ro`, `rw`, `nocopy`, comma-separated.
fn parse_volume(spec: &str) -> Result<Volume> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, container, opts) = match parts.as_slice() {
        [c] => ("", *c, ""),
        [s, c] => (*s, *c, ""),
        [s, c, o] => (*s, *c, *o),
        _ => bail!("invalid volume {spec:?}: use [HOST|NAME:]CONTAINER[:ro|rw][,nocopy]"),
    };
    if !container.starts_with('/') {
        bail!("invalid volume {spec:?}: the container path must be absolute");
    }
    let mut volume = Volume { container: container.to_string(), ..Volume::default() };
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => volume.read_only = true,
            "rw" => volume.read_only = false,
            "nocopy" => volume.no_copy = true,
            _ => bail!("invalid volume {spec:?}: unknown option {opt:?} (use ro, rw or nocopy)"),
        }
    }
    if source.is_empty() {
        volume.anonymous = true;
    } else if source.starts_with('/') {
        volume.host = PathBuf::from(source);
    } else if runtime::volumes::valid_name(source) {
        volume.name = Some(source.to_string());
    } else {
        bail!("invalid volume {spec:?}: {source:?} is neither an absolute host path nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)");
    }
    Ok(volume)
}

/// `--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,volume-nocopy]
/// [,tmpfs-size=...][,tmpfs-mode=...]`: a volume or bind mount, or a tmpfs.
fn parse_mount(spec: &str) -> Result<std::result::Result<Volume, Tmpfs>> {
    let (mut kind, mut source, mut target, mut read_only, mut no_copy) = ("volume", None, None, false, false);
    let mut tmpfs_options = Vec::new();
    let flag = |value: Option<&str>| match value {
        None | Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(v) => Err(anyhow!("invalid mount {spec:?}: {v:?} is not true or false")),
    };
    for field in spec.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        match (key, value) {
            ("type", Some(t @ ("bind" | "volume" | "tmpfs"))) => kind = t,
            ("source" | "src", Some(v)) => source = Some(v),
            ("target" | "destination" | "dst", Some(v)) => target = Some(v),
            ("readonly" | "ro", v) => read_only = flag(v)?,
            ("volume-nocopy", v) => no_copy = flag(v)?,
            ("tmpfs-size", Some(v)) => tmpfs_options.push(format!("size={}", parse_bytes(v)?)),
            ("tmpfs-mode", Some(v)) => {
                let mode = u32::from_str_radix(v, 8)
                    .map_err(|_| anyhow!("invalid mount {spec:?}: tmpfs-mode {v:?} is not an octal mode"))?;
                tmpfs_options.push(format!("mode={mode:o}"));
            }
            _ => bail!(
                "invalid mount {spec:?}: unknown field {field:?} (use type=bind|volume|tmpfs, source, target, \
                 readonly, volume-nocopy, tmpfs-size, tmpfs-mode)"
            ),
        }
    }
    let target = target.ok_or_else(|| anyhow!("invalid mount {spec:?}: target=PATH is required"))?;
    if !target.starts_with('/') {
        bail!("invalid mount {spec:?}: the target must be an absolute path");
    }
    let volume = |v: Volume| Ok(Ok(Volume { container: target.to_string(), read_only, long_syntax: true, ..v }));
    match (kind, source) {
        ("tmpfs", None) => Ok(Err(Tmpfs { path: target.to_string(), options: tmpfs_options })),
        ("tmpfs", Some(_)) => bail!("invalid mount {spec:?}: a tmpfs has no source"),
        ("bind", Some(s)) if s.starts_with('/') => {
            if !Path::new(s).exists() {
                bail!("invalid mount {spec:?}: bind source path {s} does not exist");
            }
            volume(Volume { host: s.into(), ..Volume::default() })
        }
        ("bind", _) => bail!("invalid mount {spec:?}: a bind mount needs an absolute source=HOST_PATH"),
        (_, None) => volume(Volume { anonymous: true, no_copy, ..Volume::default() }),
        (_, Some(name)) if runtime::volumes::valid_name(name) => {
            volume(Volume { name: Some(name.to_string()), no_copy, ..Volume::default() })
        }
        (_, Some(name)) => bail!("invalid mount {spec:?}: {name:?} is not a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)"),
    }
}

/// `KEY=VALUE` or `KEY` (an empty value), from `--label` or a label file.
fn parse_label(text: &str) -> Result<(String, String)> {
    let (key, value) = text.split_once('=').unwrap_or((text, ""));
    if key.trim().is_empty() {
        bail!("invalid label {text:?}: use KEY=VALUE");
    }
    Ok((key.to_string(), value.to_string()))
}

/// `--add-host NAME:IP` (the address may be IPv6: the name ends at the first colon).
/// `NAME:host-gateway` is `host_gateway()`: as with Docker's default `host-gateway-ip`, the
/// host's address on the default bridge network, whatever network the container is on.
fn parse_extra_host(text: &str, host_gateway: &dyn Fn() -> Result<IpAddr>) -> Result<ExtraHost> {
    let (name, ip) = text.split_once([':', '=']).ok_or_else(|| anyhow!("invalid --add-host {text:?}: use NAME:IP"))?;
    let ip = if ip == "host-gateway" {
        host_gateway().with_context(|| format!("--add-host {text}: cannot find the default bridge's gateway"))?
    } else {
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        ip.parse().map_err(|_| anyhow!("invalid --add-host {text:?}: {ip:?} is not an IP address"))?
    };
    if name.is_empty() || name.chars().any(|c| c.is_whitespace()) {
        bail!("invalid --add-host {text:?}: the host name is empty or has spaces");
    }
    Ok(ExtraHost { name: name.to_string(), ip })
}

/// `--ulimit NAME=SOFT[:HARD]`; -1 or `unlimited` for no limit.
fn parse_ulimit(text: &str) -> Result<Ulimit> {
    let usage = || anyhow!("invalid --ulimit {text:?}: use NAME=SOFT[:HARD], such as nofile=1024:2048");
    let (name, values) = text.split_once('=').ok_or_else(usage)?;
    if !runtime::container::spec::ULIMITS.iter().any(|(n, _)| *n == name) {
        let names: Vec<&str> = runtime::container::spec::ULIMITS.iter().map(|(n, _)| *n).collect();
        bail!("invalid --ulimit {text:?}: {name:?} is not one of {}", names.join(", "));
    }
    let value = |v: &str| match v {
        "-1" | "unlimited" => Ok(u64::MAX),
        v => v.parse::<u64>().map_err(|_| usage()),
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (value(s)?, value(h)?),
        None => (value(values)?, value(values)?),
    };
    if soft > hard {
        bail!("invalid --ulimit {text:?}: the soft limit is above the hard one");
    }
    Ok(Ulimit { name: name.to_string(), soft, hard })
}

/// The init binary for `--init`: Debian's static tini (a dynamically linked one would not
/// run in images without the host's C library), looked up in `PATH`.
pub fn find_init(path_var: Option<&str>) -> Result<PathBuf> {
    let path = path_var.unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    ["tini-static", "docker-init"]
        .iter()
        .flat_map(|name| path.split(':').map(move |dir| Path::new(dir).join(name)))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("--init needs tini: install Debian's tini package (apt-get install tini)"))
}

fn parse_tmpfs(spec: &str) -> Result<Tmpfs> {
    let (path, options) = spec.split_once(':').unwrap_or((spec, ""));
    if !path.starts_with('/') {
        bail!("invalid tmpfs {spec:?}: the path must be absolute");
    }
    Ok(Tmpfs { path: path.into(), options: options.split(',').filter(|o| !o.is_empty()).map(String::from).collect() })
}

/// The security options (`--security-opt`): the seccomp profile and whether set-user-ID
/// programs may gain privileges.
fn parse_security_opts(opts: &[String]) -> Result<(SeccompProfile, bool)> {
    let (mut seccomp, mut new_privileges) = (SeccompProfile::Default, false);
    for opt in opts {
        let (key, value) = opt.split_once(['=', ':']).unwrap_or((opt, ""));
        match (key, value) {
            ("seccomp", "unconfined") => seccomp = SeccompProfile::Unconfined,
            ("seccomp", "" | "builtin") => seccomp = SeccompProfile::Default,
            ("seccomp", file) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read the seccomp profile {file} (--security-opt seccomp=FILE)"))?;
                seccomp = SeccompProfile::Custom(text);
            }
            ("no-new-privileges", "" | "true") => new_privileges = false,
            ("no-new-privileges", "false") => new_privileges = true,
            _ => bail!(
                "invalid --security-opt {opt:?}: use seccomp=unconfined, seccomp=FILE or no-new-privileges[=true|false]"
            ),
        }
    }
    Ok((seccomp, new_privileges))
}

/// `--device HOST[:CONTAINER][:PERMISSIONS]`, read from the host's device node.
fn parse_device(spec: &str) -> Result<Device> {
    let is_perms = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, container, permissions) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if is_perms(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] if is_perms(p) => (*h, *c, *p),
        _ => bail!("invalid device {spec:?}: use HOST[:CONTAINER][:PERMISSIONS], permissions some of r, w and m"),
    };
    if !host.starts_with('/') || !container.starts_with('/') {
        bail!("invalid device {spec:?}: both paths must be absolute");
    }
    device_at(Path::new(host), container, permissions)
        .with_context(|| format!("cannot use device {host}"))?
        .ok_or_else(|| anyhow!("{host} is not a device node (--device takes a block or character device)"))
}

/// The program for `--runtime`: none, `berth` or `embedded` mean the embedded runtime; a
/// name is looked up in `PATH`.
fn resolve_runtime(name: Option<&str>, path_var: Option<&str>) -> Result<Option<String>> {
    match name {
        None | Some("berth" | "embedded" | "") => Ok(None),
        Some(name) if name.contains('/') => {
            let path = std::path::absolute(name).with_context(|| format!("runtime {name}"))?;
            if !path.is_file() {
                bail!("OCI runtime {} does not exist", path.display());
            }
            Ok(Some(path.to_string_lossy().into_owned()))
        }
        Some(name) => path_var
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .split(':')
            .map(|dir| Path::new(dir).join(name))
            .find(|p| p.is_file())
            .map(|p| Some(p.to_string_lossy().into_owned()))
            .ok_or_else(|| anyhow!("OCI runtime {name:?} is not installed (not found in PATH)")),
    }
}

/// Turns the flags into options, reading env files and the environment as Docker does.
pub fn options(args: &Args, host_gateway: &dyn Fn() -> Result<IpAddr>) -> Result<RunOptions> {
    let lookup = |k: &str| std::env::var(k).ok();
    let mut env = Vec::new();
    for file in &args.env_file {
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read env file {}", file.display()))?;
        env.extend(env_file_entries(&text).iter().filter_map(|e| env_entry(e, &lookup)));
    }
    env.extend(args.env.iter().filter_map(|e| env_entry(e, &lookup)));
    let network = match args.network.as_str() {
        "none" => Network::None,
        "host" => Network::Host,
        "default" => Network::Bridge(runtime::network::DEFAULT_NETWORK.into()),
        name if name.starts_with("container:") => {
            bail!("--network container:NAME is not supported: use bridge, a network's name, none or host")
        }
        name => Network::Bridge(name.to_string()),
    };
    let mut publish = Vec::new();
    for spec in &args.publish {
        publish.extend(runtime::network::ports::parse_publish(spec)?);
    }
    if !matches!(network, Network::Bridge(_)) && (!publish.is_empty() || args.publish_all) {
        bail!("-p and -P need a bridge network: drop them, or run without --network {}", args.network);
    }
    for alias in &args.network_aliases {
        if !runtime::container::valid_name(alias) {
            bail!("invalid --network-alias {alias:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed");
        }
    }
    let mut volumes = args.volumes.iter().map(|v| parse_volume(v)).collect::<Result<Vec<_>>>()?;
    for v in volumes.iter().filter(|v| !v.is_volume()) {
        // Docker creates a missing host directory for a bind mount.
        if !v.host.exists() {
            std::fs::create_dir_all(&v.host).with_context(|| format!("cannot create {}", v.host.display()))?;
        }
    }
    let mut tmpfs = args.tmpfs.iter().map(|t| parse_tmpfs(t)).collect::<Result<Vec<_>>>()?;
    for m in &args.mounts {
        match parse_mount(m)? {
            Ok(v) => volumes.push(v),
            Err(t) => tmpfs.push(t),
        }
    }
    let mut labels = std::collections::BTreeMap::new();
    for file in &args.label_files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("cannot read label file {}", file.display()))?;
        for line in env_file_entries(&text) {
            labels.extend([parse_label(&line)?]);
        }
    }
    for label in &args.labels {
        labels.extend([parse_label(label)?]);
    }
    let dns = args
        .dns
        .iter()
        .map(|d| d.parse().map_err(|_| anyhow!("invalid --dns {d:?}: give a name server's IP address")))
        .collect::<Result<Vec<_>>>()?;
    let init = if args.init { Some(find_init(std::env::var("PATH").ok().as_deref())?) } else { None };
    let (seccomp, new_privileges) = parse_security_opts(&args.security_opt)?;
    let restart: RestartPolicy = args.restart.parse()?;
    if args.rm && restart != RestartPolicy::No {
        bail!("conflicting options: --restart and --rm (a removed container cannot be restarted)");
    }
    if let Some(signal) = &args.stop_signal {
        parse_signal(signal).with_context(|| "invalid --stop-signal")?;
    }
    Ok(RunOptions {
        healthcheck: healthcheck(args)?,
        restart,
        stop_signal: args.stop_signal.clone(),
        stop_timeout: args.stop_timeout,
        cap_add: args.cap_add.clone(),
        cap_drop: args.cap_drop.clone(),
        seccomp,
        new_privileges,
        devices: args.devices.iter().map(|d| parse_device(d)).collect::<Result<Vec<_>>>()?,
        privileged: args.privileged,
        name: args.name.clone(),
        command: args.command.clone(),
        entrypoint: args.entrypoint.clone(),
        env,
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        volumes,
        read_only: args.read_only,
        tmpfs,
        hostname: args.hostname.clone(),
        network,
        network_aliases: args.network_aliases.clone(),
        publish,
        publish_all: args.publish_all,
        memory: args.memory.as_deref().map(parse_bytes).transpose()?,
        cpus: args.cpus,
        pids_limit: args.pids_limit,
        interactive: args.interactive,
        tty: args.tty,
        detach: args.detach,
        remove: args.rm,
        runtime: resolve_runtime(args.runtime.as_deref(), std::env::var("PATH").ok().as_deref())?,
        labels,
        extra_hosts: args.add_hosts.iter().map(|h| parse_extra_host(h, host_gateway)).collect::<Result<Vec<_>>>()?,
        dns,
        dns_search: args.dns_search.clone(),
        dns_options: args.dns_options.clone(),
        ulimits: args.ulimits.iter().map(|u| parse_ulimit(u)).collect::<Result<Vec<_>>>()?,
        init,
    })
}

/// The `--health-*` flags as a health check over the image's; `--no-healthcheck` as `NONE`.
fn healthcheck(args: &Args) -> Result<Option<HealthConfig>> {
    let nanos = |flag: &str, text: &Option<String>| -> Result<i64> {
        let Some(text) = text else { return Ok(0) };
        let d = shared::duration::parse_duration(text).with_context(|| format!("invalid --{flag}"))?;
        if d.is_zero() {
            bail!("invalid --{flag} {text:?}: it must be longer than zero");
        }
        i64::try_from(d.as_nanos()).map_err(|_| anyhow!("--{flag} {text:?} is too long"))
    };
    let config = HealthConfig {
        test: args.health_cmd.iter().flat_map(|c| ["CMD-SHELL".to_string(), c.clone()]).collect(),
        interval: nanos("health-interval", &args.health_interval)?,
        timeout: nanos("health-timeout", &args.health_timeout)?,
        start_period: nanos("health-start-period", &args.health_start_period)?,
        retries: args.health_retries.unwrap_or(0),
    };
    if args.no_healthcheck {
        if config != HealthConfig::default() {
            bail!("--no-healthcheck conflicts with the --health-* options");
        }
        return Ok(Some(HealthConfig { test: vec!["NONE".into()], ..HealthConfig::default() }));
    }
    Ok((config != HealthConfig::default()).then_some(config))
}

/// The image in the store, pulled first when missing.
pub(crate) fn find_or_pull(store: &Store, image: &str, plain_http: bool) -> Result<ImageRecord> {
    if let Some(found) = store.find(image).context("cannot read the image index")?.into_iter().next() {
        return Ok(found);
    }
    let reference: ImageRef = image.parse()?;
    eprintln!("Unable to find image '{}' locally", reference.familiar());
    let config = super::client_config(plain_http)?;
    let credentials = Arc::new(super::login::docker_config()?);
    let client = Client::new(config, credentials).context("cannot set up the registry client")?;
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    let stderr = std::io::stderr();
    let tty = stderr.is_terminal();
    let progress = TerminalProgress::new(stderr, tty);
    let record = tokio
        .block_on(store.pull(&client, &reference, &PullOptions::default(), &progress))
        .with_context(|| format!("cannot pull {}", reference.familiar()))?;
    tokio.shutdown_background();
    Ok(record)
}

/// Whether this process has one thread (so it may create containers itself).
fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Threads:", "1"]))
}

/// Fails early, with what to do, when the container's network does not exist, or has
/// aliases though it resolves no names.
fn check_network(root: &Path, options: &RunOptions) -> Result<()> {
    let Network::Bridge(name) = &options.network else { return Ok(()) };
    let def = runtime::network::Networks::at(root).get(name)?;
    if !def.dns && !options.network_aliases.is_empty() {
        bail!("--network-alias needs a user-defined network (berth network create NAME): {name} resolves no names");
    }
    Ok(())
}

/// Runs `berth run` against the store at `root`; the exit code is the container's.
pub fn run(root: &Path, args: Args) -> ExitCode {
    match start(root, args) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::from(EXIT_START_FAILED as u8)
        }
    }
}

fn start(root: &Path, args: Args) -> Result<i32> {
    super::init_logging();
    tracing::debug!("berth run");
    let host_gateway = || -> Result<IpAddr> {
        let def = runtime::network::Networks::at(root).get(runtime::network::DEFAULT_NETWORK)?;
        Ok(def.gateway.into())
    };
    let mut options = options(&args, &host_gateway)?;
    check_network(root, &options)?;
    let store = super::open_store(root)?;
    let image = find_or_pull(&store, &args.image, args.plain_http)?;
    tracing::debug!("image found");
    let config = store.content().read(&image.config).context("cannot read the image config")?;
    let config: ImageConfiguration = serde_json::from_slice(&config).context("the image config is not valid")?;
    options.apply_image(config.config().as_ref());
    let containers = Containers::at(root);
    // In the foreground and without threads (nothing was pulled), this process supervises.
    let in_process = !options.detach && single_threaded();
    let shim_pid = in_process.then(|| std::process::id() as i32);
    let record = containers
        .create(&args.image, &image.reference, &image.manifest, &options, shim_pid)
        .context("cannot create the container")?;
    tracing::debug!(id = %record.id, "container recorded");
    // This process runs from a read-only copy of the binary (`super::reexec_sealed`), which
    // only this name reaches; a supervisor started from it needs no copy of its own.
    let exe = Path::new("/proc/self/exe");
    if options.detach {
        super::start::spawn_supervisor(root, &record.id)
            .with_context(|| format!("cannot start container {}", record.short_id()))?;
        println!("{}", record.id);
        return Ok(0);
    }
    if in_process {
        let image = Some((store, image));
        return Ok(shim::run(ShimArgs { root: root.to_path_buf(), id: record.id, ready: None, image }));
    }
    drop(store);
    // Threads were started (to pull): the embedded runtime needs a fresh process.
    let err = std::process::Command::new(exe).arg("--root").arg(root).arg("container-shim").arg(&record.id).exec();
    Err(anyhow!(err).context("cannot run the container supervisor"))
}

/// Runs the hidden `berth container-shim`.
pub fn shim_main(root: &Path, flags: ShimFlags) -> ExitCode {
    super::init_logging();
    if flags.detach {
        if let Err(e) = shim::detach() {
            eprintln!("berth: {e}");
            return ExitCode::from(EXIT_START_FAILED as u8);
        }
    }
    // SAFETY: the CLI passes the descriptor number of the pipe it left open for us.
    let ready = flags.ready_fd.map(|fd| unsafe { shim::take_fd(fd) });
    let code = shim::run(ShimArgs { root: root.to_path_buf(), id: flags.id, ready, image: None });
    ExitCode::from(u8::try_from(code).unwrap_or(255))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert_eq!(parse_bytes("64m").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512kb").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("1.5g").unwrap(), 3 << 29);
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("8388608t").is_err(), "2^63 bytes does not fit the kernel's i64");
        assert_eq!(parse_bytes("8388607t").unwrap(), 8_388_607 << 40);
    }

    #[test]
    fn volumes_tmpfs_and_env() {
        let v = parse_volume("/data:/mnt:ro").unwrap();
        assert_eq!((v.host.as_path(), v.container.as_str(), v.read_only), (Path::new("/data"), "/mnt", true));
        assert!(!parse_volume("/data:/mnt").unwrap().read_only && !parse_volume("/data:/mnt").unwrap().is_volume());
        let named = parse_volume("data:/mnt:ro,nocopy").unwrap();
        assert_eq!((named.name.as_deref(), named.read_only, named.no_copy), (Some("data"), true, true));
        let anonymous = parse_volume("/data").unwrap();
        assert!(anonymous.anonymous && anonymous.name.is_none() && anonymous.container == "/data");
        assert!(parse_volume("/a:/b:zz").is_err());
        assert!(parse_volume("a:/b").is_err(), "one-letter volume names are not Docker's");
        assert!(parse_volume("../x:/b").is_err());
        assert!(parse_volume("x:rel").is_err());
        let t = parse_tmpfs("/run:size=1m,mode=700").unwrap();
        assert_eq!(t.options, ["size=1m", "mode=700"]);
        assert!(parse_tmpfs("run").is_err());
        let lookup = |k: &str| (k == "HOME").then(|| "/home/me".to_string());
        assert_eq!(env_entry("A=1", &lookup).as_deref(), Some("A=1"));
        assert_eq!(env_entry("HOME", &lookup).as_deref(), Some("HOME=/home/me"));
        assert_eq!(env_entry("UNSET", &lookup), None);
        assert_eq!(env_file_entries("# c\nA=1\n\n  B=2 \nC\n"), ["A=1", "B=2", "C"]);
    }

    #[test]
    fn mounts_labels_hosts_and_ulimits() {
        let dir = tempfile::tempdir().unwrap();
        let bind = format!("type=bind,source={},target=/b,readonly", dir.path().display());
        let Ok(v) = parse_mount(&bind).unwrap() else { panic!("a bind is no tmpfs") };
        assert!(v.read_only && v.long_syntax && !v.is_volume() && v.host == dir.path());
        assert!(parse_mount("type=bind,source=/no/such/dir,target=/b")
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
        let Ok(v) = parse_mount("source=cache,target=/c,volume-nocopy").unwrap() else { panic!("not a volume") };
        assert_eq!((v.name.as_deref(), v.no_copy, v.read_only), (Some("cache"), true, false));
        let Ok(v) = parse_mount("type=volume,dst=/anon,ro=true").unwrap() else { panic!("not a volume") };
        assert!(v.anonymous && v.read_only);
        let Err(t) = parse_mount("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap() else {
            panic!("not a tmpfs")
        };
        assert_eq!((t.path.as_str(), t.options.clone()), ("/t", strings(&["size=1048576", "mode=1770"])));
        assert!(parse_mount("type=tmpfs").is_err() && parse_mount("type=nfs,target=/x").is_err());
        assert!(parse_mount("target=rel").is_err() && parse_mount("target=/x,colour=red").is_err());

        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_label("flag").unwrap(), ("flag".into(), String::new()));
        assert!(parse_label("=x").is_err());
        let gateway = || -> Result<IpAddr> { Ok("10.77.0.1".parse()?) };
        let h = parse_extra_host("db:10.0.0.2", &gateway).unwrap();
        assert_eq!((h.name.as_str(), h.ip.to_string()), ("db", "10.0.0.2".to_string()));
        assert_eq!(parse_extra_host("v6:fd00::1", &gateway).unwrap().ip.to_string(), "fd00::1");
        assert!(parse_extra_host("db", &gateway).is_err() && parse_extra_host("db:nope", &gateway).is_err());
        let h = parse_extra_host("gw:host-gateway", &gateway).unwrap();
        assert_eq!((h.name.as_str(), h.ip.to_string()), ("gw", "10.77.0.1".to_string()));
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.name.as_str(), u.soft, u.hard), ("nofile", 1024, 2048));
        assert_eq!(parse_ulimit("core=-1").unwrap().hard, u64::MAX);
        assert_eq!(parse_ulimit("nproc=50").unwrap().soft, 50);
        assert!(
            parse_ulimit("nofile=2:1").is_err() && parse_ulimit("files=1").is_err() && parse_ulimit("nofile").is_err()
        );
        assert!(find_init(Some("/nonexistent")).unwrap_err().to_string().contains("tini"));
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn security_options_and_devices() {
        assert_eq!(parse_security_opts(&[]).unwrap(), (SeccompProfile::Default, false));
        let opts = |o: &[&str]| parse_security_opts(&o.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(opts(&["seccomp=unconfined"]).unwrap(), (SeccompProfile::Unconfined, false));
        assert_eq!(opts(&["no-new-privileges=false"]).unwrap(), (SeccompProfile::Default, true));
        assert_eq!(opts(&["no-new-privileges"]).unwrap(), (SeccompProfile::Default, false));
        assert!(opts(&["seccomp=/no/such/profile.json"]).is_err());
        assert!(opts(&["apparmor=x"]).is_err());
        let null = parse_device("/dev/null:/dev/nothing:r").unwrap();
        assert_eq!((null.container.as_str(), null.major, null.minor, null.block), ("/dev/nothing", 1, 3, false));
        assert_eq!(null.permissions, "r");
        assert_eq!(parse_device("/dev/null").unwrap().permissions, "rwm");
        assert_eq!(parse_device("/dev/null:rw").unwrap().container, "/dev/null");
        assert!(parse_device("/etc/passwd").is_err());
        assert!(parse_device("/dev/null:/x:rwz").is_err());
    }

    #[test]
    fn runtimes_resolve() {
        assert_eq!(resolve_runtime(None, None).unwrap(), None);
        assert_eq!(resolve_runtime(Some("berth"), None).unwrap(), None);
        assert_eq!(resolve_runtime(Some("sh"), Some("/nonexistent:/bin")).unwrap().as_deref(), Some("/bin/sh"));
        assert!(resolve_runtime(Some("no-such-runtime"), Some("/bin")).is_err());
        assert!(resolve_runtime(Some("/no/such/runc"), None).is_err());
    }
}
