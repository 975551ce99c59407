//! What `berth inspect` (in `cli`) prints: images and containers as JSON shaped like
//! `docker inspect`'s, so scripts and `--format` habits carry over. [`Store::inspect_image`]
//! describes an image from its index record and config; [`inspect_container`] a container
//! from its record (and the image's record, for the image ID).
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

/// `docker container inspect`'s shape for `record`; `image` is the image's record in the
/// store, when it is still there (for the image ID).
pub fn inspect_container(record: &ContainerRecord, image: Option<&ImageRecord>) -> Value {
    let time = |t: Option<u64>| t.map_or_else(|| NEVER.to_string(), |t| rfc3339(t as i64));
    let running = record.is_running();
    let status = match record.status {
        Status::Created if !running => "created",
        Status::Running | Status::Created if running => "running",
        Status::Restarting if running => "restarting",
        _ => "exited",
    };
    let restarting = status == "restarting";
    let o = &record.options;
    let binds: Vec<String> = o
        .volumes
        .iter()
        .map(|v| format!("{}:{}{}", v.host.display(), v.container, if v.read_only { ":ro" } else { "" }))
        .collect();
    let tmpfs: Map<String, Value> = o.tmpfs.iter().map(|t| (t.path.clone(), json!(t.options.join(",")))).collect();
    let network = match &o.network {
        crate::container::Network::None => "none",
        crate::container::Network::Host => "host",
        crate::container::Network::Bridge(name) => name.as_str(),
    };
    let mut value = json!({
        "Id": record.id,
        "Created": time(Some(record.created)),
        "Path": record.command.first().cloned().unwrap_or_default(),
        "Args": record.command.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": status,
            "Running": running,
            "Paused": false,
            "Restarting": restarting,
            "Dead": false,
            "Pid": if running { record.pid.unwrap_or(0) } else { 0 },
            "ExitCode": record.exit_code.unwrap_or(0),
            "Error": record.error.clone().unwrap_or_default(),
            "StartedAt": time(record.started),
            "FinishedAt": time(record.finished),
        },
        "Image": image.map_or_else(|| record.image_manifest.to_string(), |i| i.config.to_string()),
        "Name": format!("/{}", record.name),
        "RestartCount": record.restart_count,
        "HostConfig": {
            "Binds": binds,
            "NetworkMode": network,
            "AutoRemove": o.remove,
            "ReadonlyRootfs": o.read_only,
            "Memory": o.memory.unwrap_or(0),
            "NanoCpus": o.cpus.map_or(0, |c| (c * 1e9) as i64),
            "PidsLimit": o.pids_limit,
            "Runtime": o.runtime.clone().unwrap_or_else(|| "berth".into()),
            "RestartPolicy": { "Name": o.restart.to_string(), "MaximumRetryCount": o.restart.max_retries() },
        },
        "Config": {
            "Hostname": o.hostname.clone().unwrap_or_else(|| record.short_id().to_string()),
            "User": o.user.clone().unwrap_or_default(),
            "Env": o.env,
            "Cmd": if o.command.is_empty() { Value::Null } else { json!(o.command) },
            "Image": record.image,
            "WorkingDir": o.workdir.clone().unwrap_or_default(),
            "Entrypoint": o.entrypoint.as_ref().map_or(Value::Null, |e| json!([e])),
            "Tty": o.tty,
            "OpenStdin": o.interactive,
            "StopSignal": o.stop_signal.clone().or_else(|| record.image_stop_signal.clone()),
            "StopTimeout": o.stop_timeout,
        },
    });
    if let Some(health) = &record.health {
        value["State"]["Health"] = json!(health);
    }
    // Docker leaves it out when empty.
    if !tmpfs.is_empty() {
        value["HostConfig"]["Tmpfs"] = Value::Object(tmpfs);
    }
    value
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
        let out = inspect_container(&c, None);
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
        assert_eq!(inspect_container(&c, Some(&image))["Image"], json!(image.config));
        c.status = Status::Created;
        assert_eq!(inspect_container(&c, None)["State"]["Status"], "created");
    }
}
