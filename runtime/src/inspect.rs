//! What `berth inspect` (in `cli`) prints: images and containers as JSON shaped like
//! `docker inspect`'s, so scripts and `--format` habits carry over. [`Store::inspect_image`]
//! describes an image from its index record and config; [`Store::inspect_container`] a
//! container from its record and its image's record and config ([`inspect_container`]).
//!
//! Field names are Docker's (Engine API `ImageInspect`, `ContainerJSON`); fields berth has
//! no notion of are left out rather than invented, and times are RFC 3339 in UTC, with
//! Docker's `0001-01-01T00:00:00Z` for "never".

use serde_json::{json, Map, Value};
use shared::date::rfc3339;

use crate::container::{ContainerRecord, Status};
use crate::content::ContentError;
use crate::images::ImageRecord;
use crate::store::StoreError;
use crate::Store;

/// Docker's time for "never".
const NEVER: &str = "0001-01-01T00:00:00Z";

/// Why an image could not be described.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The image is not in the store, or the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The image's config could not be read.
    #[error("reading the config {digest}")]
    Config {
        /// The config.
        digest: shared::Digest,
        /// The cause.
        #[source]
        source: ContentError,
    },
}

impl Store {
    /// The image `name` means (see [`Store::find_one`]), as `docker image inspect` shows it.
    pub fn inspect_image(&self, name: &str) -> Result<Value, InspectError> {
        let record = self.find_one(name)?;
        let same: Vec<ImageRecord> = self.images()?.into_iter().filter(|r| r.config == record.config).collect();
        let config_bytes = self
            .content
            .read(&record.config)
            .map_err(|source| InspectError::Config { digest: record.config.clone(), source })?;
        // A config that is not JSON was refused when stored; an odd one shows as empty.
        let config: Value = serde_json::from_slice(&config_bytes).unwrap_or(Value::Null);
        Ok(image_json(&record, &same, &config))
    }
}

/// `docker image inspect`'s shape for `record`, named by every record in `same` (those of the
/// same config, so the same image ID), with the image config `config`.
fn image_json(record: &ImageRecord, same: &[ImageRecord], config: &Value) -> Value {
    let mut tags = Vec::new();
    let mut digests = Vec::new();
    for r in same {
        let Ok(image) = r.image_ref() else { continue };
        if image.tag().is_some() {
            tags.push(image.familiar());
        }
        let repo_digest = format!("{}@{}", image.familiar_name(), r.manifest);
        if !digests.contains(&repo_digest) {
            digests.push(repo_digest);
        }
    }
    let diff_ids: Vec<String> = record.layers.iter().map(|l| l.diff_id.to_string()).collect();
    let mut out = Map::new();
    out.insert("Id".into(), json!(record.config));
    out.insert("RepoTags".into(), json!(tags));
    out.insert("RepoDigests".into(), json!(digests));
    out.insert("Created".into(), json!(record.created.clone().unwrap_or_else(|| NEVER.into())));
    out.insert("Author".into(), config.get("author").cloned().unwrap_or(json!("")));
    out.insert("Config".into(), config.get("config").cloned().unwrap_or(Value::Null));
    out.insert("Architecture".into(), json!(record.platform.architecture));
    if let Some(variant) = &record.platform.variant {
        out.insert("Variant".into(), json!(variant));
    }
    out.insert("Os".into(), json!(record.platform.os));
    out.insert("Size".into(), json!(record.unpacked_size));
    out.insert("RootFS".into(), json!({"Type": "layers", "Layers": diff_ids}));
    out.insert("Metadata".into(), json!({"LastTagTime": rfc3339(record.pulled_at as i64)}));
    Value::Object(out)
}

impl Store {
    /// `docker container inspect`'s shape for `record`, with its image's ID and config when
    /// the image (by manifest) is still in the store.
    pub fn inspect_container(&self, record: &ContainerRecord) -> Result<Value, InspectError> {
        let images = self.images()?;
        let image = images
            .iter()
            .find(|i| i.manifest == record.image_manifest && i.reference == record.image_reference)
            .or_else(|| images.iter().find(|i| i.manifest == record.image_manifest));
        let config = match image {
            Some(i) => {
                let bytes = self
                    .content
                    .read(&i.config)
                    .map_err(|source| InspectError::Config { digest: i.config.clone(), source })?;
                serde_json::from_slice::<Value>(&bytes).ok().and_then(|c| c.get("config").cloned())
            }
            None => None,
        };
        Ok(inspect_container(record, image, config.as_ref().unwrap_or(&Value::Null)))
    }
}

/// `docker container inspect`'s shape for `record`; `image` is the image's record in the
/// store, when it is still there (for the image ID), and `config` the `config` part of its
/// config (`Null` when unknown): Docker's `Config` shows the image's settings merged with
/// the container's. Each part is built by its own function, for the other parts of the
/// engine to add their fields to.
pub fn inspect_container(record: &ContainerRecord, image: Option<&ImageRecord>, config: &Value) -> Value {
    let time = |t: Option<u64>| t.map_or_else(|| NEVER.to_string(), |t| rfc3339(t as i64));
    json!({
        "Id": record.id,
        "Created": time(Some(record.created)),
        "Path": record.command.first().cloned().unwrap_or_default(),
        "Args": record.command.iter().skip(1).collect::<Vec<_>>(),
        "State": container_state(record),
        "Image": image.map_or_else(|| record.image_manifest.to_string(), |i| i.config.to_string()),
        "Name": format!("/{}", record.name),
        "RestartCount": record.restart_count,
        "HostConfig": host_config(record),
        "Mounts": mounts(record),
        "Config": container_config(record, config),
    })
}

/// `State`: the status words and times Docker uses.
fn container_state(record: &ContainerRecord) -> Value {
    let time = |t: Option<u64>| t.map_or_else(|| NEVER.to_string(), |t| rfc3339(t as i64));
    let running = record.is_running();
    let status = match record.status {
        Status::Created if !running => "created",
        Status::Running | Status::Created if running => "running",
        Status::Restarting if running => "restarting",
        _ => "exited",
    };
    let mut state = json!({
        "Status": status,
        "Running": running,
        "Paused": false,
        "Restarting": status == "restarting",
        "Dead": false,
        "Pid": if running { record.pid.unwrap_or(0) } else { 0 },
        "ExitCode": record.exit_code.unwrap_or(0),
        "Error": record.error.clone().unwrap_or_default(),
        "StartedAt": time(record.started),
        "FinishedAt": time(record.finished),
    });
    if let Some(health) = &record.health {
        state["Health"] = json!(health);
    }
    state
}

/// `Config`: the image's settings with the container's over them, as Docker records them
/// at creation (`Env` merged by key; an `--entrypoint` drops the image's `Cmd`).
fn container_config(record: &ContainerRecord, image: &Value) -> Value {
    let o = &record.options;
    let mut env: Vec<String> = Vec::new();
    let image_env = image["Env"].as_array().into_iter().flatten().filter_map(Value::as_str);
    for entry in image_env.chain(o.env.iter().map(String::as_str)) {
        let key = entry.split_once('=').map_or(entry, |(k, _)| k);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(entry.to_string());
    }
    let (entrypoint, cmd) = match &o.entrypoint {
        Some(e) if e.is_empty() => (Value::Null, Value::Null),
        Some(e) => (json!([e]), Value::Null),
        None => (image["Entrypoint"].clone(), image["Cmd"].clone()),
    };
    let cmd = if o.command.is_empty() { cmd } else { json!(o.command) };
    let non_empty = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(String::from);
    let mut volumes: Map<String, Value> =
        image["Volumes"].as_object().map(|m| m.keys().map(|k| (k.clone(), json!({}))).collect()).unwrap_or_default();
    for v in o.volumes.iter().filter(|v| v.anonymous && !v.long_syntax) {
        volumes.insert(v.container.clone(), json!({}));
    }
    let mut config = json!({
        "Hostname": o.hostname.clone().unwrap_or_else(|| record.short_id().to_string()),
        "User": o.user.clone().or_else(|| non_empty(&image["User"])).unwrap_or_default(),
        "Env": env,
        "Cmd": cmd,
        "Image": record.image,
        "Volumes": if volumes.is_empty() { Value::Null } else { Value::Object(volumes) },
        "WorkingDir": o.workdir.clone().or_else(|| non_empty(&image["WorkingDir"])).unwrap_or_default(),
        "Entrypoint": entrypoint,
        "Labels": o.labels,
        "Tty": o.tty,
        "OpenStdin": o.interactive,
    });
    // Docker shows these two only when the run or the image sets them.
    if let Some(signal) = o.stop_signal.clone().or_else(|| record.image_stop_signal.clone()) {
        config["StopSignal"] = json!(signal);
    }
    if let Some(timeout) = o.stop_timeout {
        config["StopTimeout"] = json!(timeout);
    }
    config
}

/// `HostConfig`: the run options, by Docker's names (empty lists as Docker shows them).
fn host_config(record: &ContainerRecord) -> Value {
    let o = &record.options;
    let binds: Vec<String> = o
        .volumes
        .iter()
        .filter(|v| !v.long_syntax && !v.anonymous)
        .map(|v| {
            let source = v.name.clone().unwrap_or_else(|| v.host.display().to_string());
            format!("{source}:{}{}", v.container, if v.read_only { ":ro" } else { "" })
        })
        .collect();
    let long: Vec<Value> = o
        .volumes
        .iter()
        .filter(|v| v.long_syntax)
        .map(|v| {
            let (kind, source) = match &v.name {
                Some(name) if !v.anonymous => ("volume", name.clone()),
                _ if v.is_volume() => ("volume", String::new()),
                _ => ("bind", v.host.display().to_string()),
            };
            json!({"Type": kind, "Source": source, "Target": v.container, "ReadOnly": v.read_only})
        })
        .collect();
    let tmpfs: Map<String, Value> = o.tmpfs.iter().map(|t| (t.path.clone(), json!(t.options.join(",")))).collect();
    let network = match &o.network {
        crate::container::Network::None => "none",
        crate::container::Network::Host => "host",
        crate::container::Network::Bridge(name) => name.as_str(),
    };
    let or_null = |v: Value, empty: bool| if empty { Value::Null } else { v };
    let mut value = json!({
        "Binds": or_null(json!(binds), binds.is_empty()),
        "NetworkMode": network,
        "RestartPolicy": {"Name": o.restart.to_string(), "MaximumRetryCount": o.restart.max_retries()},
        "AutoRemove": o.remove,
        "ReadonlyRootfs": o.read_only,
        "Privileged": o.privileged,
        "CapAdd": or_null(json!(o.cap_add), o.cap_add.is_empty()),
        "CapDrop": or_null(json!(o.cap_drop), o.cap_drop.is_empty()),
        "Memory": o.memory.unwrap_or(0),
        "NanoCpus": o.cpus.map_or(0, |c| (c * 1e9) as i64),
        "PidsLimit": o.pids_limit,
        "Runtime": o.runtime.clone().unwrap_or_else(|| "berth".into()),
        "ExtraHosts": or_null(
            json!(o.extra_hosts.iter().map(|h| format!("{}:{}", h.name, h.ip)).collect::<Vec<_>>()),
            o.extra_hosts.is_empty(),
        ),
        "Dns": o.dns,
        "DnsSearch": o.dns_search,
        "DnsOptions": o.dns_options,
        "Ulimits": or_null(
            json!(o.ulimits.iter().map(|u| json!({"Name": u.name, "Soft": rlimit(u.soft), "Hard": rlimit(u.hard)})).collect::<Vec<_>>()),
            o.ulimits.is_empty(),
        ),
    });
    // Docker leaves these out when not set.
    if !tmpfs.is_empty() {
        value["Tmpfs"] = Value::Object(tmpfs);
    }
    if !long.is_empty() {
        value["Mounts"] = json!(long);
    }
    if o.init.is_some() {
        value["Init"] = json!(true);
    }
    value
}

/// A limit as Docker shows it: -1 for none.
fn rlimit(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(-1)
}

/// `Mounts`: every bind mount and volume, as Docker lists them.
fn mounts(record: &ContainerRecord) -> Value {
    let list: Vec<Value> = record
        .options
        .volumes
        .iter()
        .map(|v| {
            let mode = if v.read_only { "ro" } else { "" };
            match &v.name {
                Some(name) => json!({
                    "Type": "volume",
                    "Name": name,
                    "Source": v.host,
                    "Destination": v.container,
                    "Driver": "local",
                    "Mode": mode,
                    "RW": !v.read_only,
                    "Propagation": "",
                }),
                None => json!({
                    "Type": "bind",
                    "Source": v.host,
                    "Destination": v.container,
                    "Mode": mode,
                    "RW": !v.read_only,
                    "Propagation": "rprivate",
                }),
            }
        })
        .collect();
    json!(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::LayerRecord;
    use shared::manifest::Platform;
    use shared::Digest;

    fn record(reference: &str, manifest: &[u8]) -> ImageRecord {
        let layer = Digest::sha256_of(b"layer");
        ImageRecord {
            reference: reference.into(),
            manifest: Digest::sha256_of(manifest),
            media_type: shared::media_type::OCI_MANIFEST.into(),
            manifest_size: 1,
            index: None,
            platform: Platform::new("linux", "arm64", Some("v8")),
            config: Digest::sha256_of(b"config"),
            layers: vec![LayerRecord { digest: layer.clone(), media_type: "x".into(), size: 1, diff_id: layer }],
            created: Some("2024-01-02T03:04:05Z".into()),
            unpacked_size: 42,
            pulled_at: 0,
        }
    }

    #[test]
    fn images_are_named_by_every_record_of_their_config() {
        let a = record("registry.lan:5000/team/app:v1", b"m1");
        let b = record("docker.io/library/app:latest", b"m2");
        let config = json!({"author": "me", "config": {"Cmd": ["sh"], "Env": ["A=1"]}});
        let out = image_json(&a, &[a.clone(), b], &config);
        assert_eq!(out["Id"], json!(Digest::sha256_of(b"config")));
        assert_eq!(out["RepoTags"], json!(["registry.lan:5000/team/app:v1", "app:latest"]));
        assert_eq!(out["RepoDigests"][1], json!(format!("app@{}", Digest::sha256_of(b"m2"))));
        assert_eq!(out["Config"]["Cmd"], json!(["sh"]));
        assert_eq!((out["Architecture"].as_str(), out["Variant"].as_str()), (Some("arm64"), Some("v8")));
        assert_eq!(out["RootFS"]["Layers"][0], json!(Digest::sha256_of(b"layer")));
        assert_eq!(out["Size"], 42);
    }

    #[test]
    fn containers_show_docker_state_and_times() {
        let mut c = ContainerRecord {
            version: 1,
            id: "ab".repeat(32),
            name: "web".into(),
            image: "app:v1".into(),
            image_reference: "docker.io/library/app:v1".into(),
            image_manifest: Digest::sha256_of(b"m"),
            options: crate::container::RunOptions { command: vec!["sleep".into(), "1".into()], ..Default::default() },
            command: vec!["sleep".into(), "1".into()],
            created: 1_704_164_645,
            status: Status::Exited,
            shim_pid: None,
            pid: Some(77),
            started: Some(1_704_164_645),
            finished: None,
            exit_code: Some(3),
            error: None,
            rootfs: None,
            restart_count: 2,
            image_stop_signal: Some("SIGQUIT".into()),
            health: None,
        };
        c.options.restart = crate::container::restart::RestartPolicy::OnFailure { max: 5 };
        let out = inspect_container(&c, None, &Value::Null);
        assert_eq!(out["RestartCount"], 2);
        assert_eq!(out["HostConfig"]["RestartPolicy"], json!({"Name": "on-failure", "MaximumRetryCount": 5}));
        assert_eq!(out["Config"]["StopSignal"], "SIGQUIT");
        assert_eq!(out["Name"], "/web");
        assert_eq!((out["Path"].as_str(), out["Args"].clone()), (Some("sleep"), json!(["1"])));
        let state = &out["State"];
        assert_eq!((state["Status"].as_str(), state["Running"].as_bool()), (Some("exited"), Some(false)));
        assert_eq!((state["Pid"].as_i64(), state["ExitCode"].as_i64()), (Some(0), Some(3)));
        assert_eq!(state["StartedAt"], "2024-01-02T03:04:05Z");
        assert_eq!(state["FinishedAt"], NEVER);
        assert_eq!(out["Image"], json!(Digest::sha256_of(b"m")), "the manifest when the image is gone");
        let image = record("docker.io/library/app:v1", b"m");
        assert_eq!(inspect_container(&c, Some(&image), &Value::Null)["Image"], json!(image.config));
        c.status = Status::Created;
        assert_eq!(inspect_container(&c, None, &Value::Null)["State"]["Status"], "created");
    }
}
