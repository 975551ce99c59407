//! Layers and images for the runtime's integration tests: layers made of (path, contents),
//! and images of them added to a [`FakeRegistry`].

use std::io::Write;

use serde_json::json;
use shared::client::testing::FakeRegistry;
use shared::manifest::{Descriptor, Platform};
use shared::{media_type, Digest};

/// A gzip layer and its diff ID.
pub struct Layer {
    pub gz: Vec<u8>,
    pub diff_id: Digest,
}

/// A layer of (path, contents); paths ending in `/` are directories.
pub fn layer(entries: &[(&str, &[u8])]) -> Layer {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        if let Some(dir) = path.strip_suffix('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            builder.append_data(&mut h, dir, &[][..]).unwrap();
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            builder.append_data(&mut h, path, *data).unwrap();
        }
    }
    let tar = builder.into_inner().unwrap();
    let diff_id = Digest::sha256_of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    Layer { gz: gz.finish().unwrap(), diff_id }
}

fn descriptor(media_type: &str, data: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: Digest::sha256_of(data),
        size: data.len() as u64,
        artifact_type: None,
        annotations: None,
        platform: None,
        urls: None,
    }
}

/// Adds an image of `layers` as `repo:tag` (its config naming `diff_ids`, by default the
/// layers' own) and returns its manifest digest.
pub fn add_image(
    registry: &FakeRegistry,
    repo: &str,
    tag: &str,
    layers: &[&Layer],
    diff_ids: Option<Vec<Digest>>,
) -> Digest {
    let diff_ids = diff_ids.unwrap_or_else(|| layers.iter().map(|l| l.diff_id.clone()).collect());
    let host = Platform::host();
    let config = serde_json::to_vec(&json!({
        "created": "2024-01-02T03:04:05Z",
        "architecture": host.architecture,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {"Cmd": ["sh"]},
        "history": [{"comment": tag}],
    }))
    .unwrap();
    registry.add_blob(&config);
    for l in layers {
        registry.add_blob(&l.gz);
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": descriptor(media_type::OCI_CONFIG, &config),
        "layers": layers.iter().map(|l| descriptor(media_type::OCI_LAYER_GZIP, &l.gz)).collect::<Vec<_>>(),
    }))
    .unwrap();
    registry.add_manifest(repo, Some(tag), media_type::OCI_MANIFEST, &manifest)
}
