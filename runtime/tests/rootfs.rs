//! A container's root made from a pulled image: as an overlayfs over the snapshots (as
//! root), and as a flattened copy where the snapshots hold their whiteouts as `.wh.` marker
//! files (unpacked without the privileges for overlayfs whiteouts); whiteouts and opaque
//! directories are applied either way, and the user is resolved from the result.

use std::fs;
use std::io::Write;
use std::sync::Arc;

use runtime::container::rootfs::{self, RootfsKind};
use runtime::container::user;
use runtime::{NoProgress, PullOptions, Store};
use serde_json::json;
use shared::client::testing::{FakeAuth, FakeRegistry};
use shared::client::{Anonymous, Client, ClientConfig};
use shared::manifest::{Descriptor, Platform};
use shared::{media_type, Digest, ImageRef};

struct Layer {
    gz: Vec<u8>,
    diff_id: Digest,
}

/// A layer of (path, contents); paths ending in `/` are directories.
fn layer(entries: &[(&str, &[u8])]) -> Layer {
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

fn add_image(registry: &FakeRegistry, repo: &str, tag: &str, layers: &[&Layer]) {
    let host = Platform::host();
    let config = serde_json::to_vec(&json!({
        "architecture": host.architecture,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
        "config": {"Cmd": ["sh"]},
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
    registry.add_manifest(repo, Some(tag), media_type::OCI_MANIFEST, &manifest);
}

/// Fails unless `root` shows the image with its whiteouts applied.
fn check_tree(root: &std::path::Path) {
    assert_eq!(fs::read(root.join("etc/keep")).unwrap(), b"base");
    assert!(!root.join("etc/gone").exists(), "a whited-out file shows");
    assert!(fs::symlink_metadata(root.join("etc/.wh.gone")).is_err(), "a whiteout marker shows");
    let mut listed: Vec<String> = fs::read_dir(root.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, ["new"], "the opaque directory shows lower files");
    let passwd = rootfs::read_in_root(root, "etc/passwd").unwrap().unwrap();
    let group = rootfs::read_in_root(root, "etc/group").unwrap().unwrap_or_default();
    assert_eq!(user::resolve("app", &passwd, &group).unwrap().uid, 1000);
}

#[tokio::test]
async fn container_roots_apply_whiteouts_as_overlay_or_copy() {
    let registry = FakeRegistry::start(FakeAuth::None, false).await.unwrap();
    let base = layer(&[
        ("etc/", b""),
        ("etc/keep", b"base"),
        ("etc/gone", b"base"),
        ("etc/passwd", b"root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"),
        ("data/", b""),
        ("data/old", b"base"),
    ]);
    let top = layer(&[
        ("etc/", b""),
        ("etc/.wh.gone", b""),
        ("data/", b""),
        ("data/.wh..wh..opq", b""),
        ("data/new", b"top"),
    ]);
    add_image(&registry, "team/app", "v1", &[&base, &top]);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let reference: ImageRef = format!("{}/team/app:v1", registry.host()).parse().unwrap();
    let client = Client::new(ClientConfig::default(), Arc::new(Anonymous)).unwrap();
    let image = store.pull(&client, &reference, &PullOptions::default(), &NoProgress).await.unwrap();

    let (rootfs_dir, upper, work) =
        (dir.path().join("c1/rootfs"), dir.path().join("c1/upper"), dir.path().join("c1/work"));
    let kind = rootfs::mount(&store, &image, &rootfs_dir, &upper, &work).unwrap();
    let test = "container_roots_apply_whiteouts_as_overlay_or_copy (as overlayfs)";
    if shared::testing::require_root(test) && rootfs::overlay_available() {
        assert_eq!(kind, RootfsKind::Overlay);
        assert!(rootfs::is_mounted(&rootfs_dir));
        // Writes go to the container's upper directory, never to a snapshot.
        fs::write(rootfs_dir.join("etc/keep"), "changed").unwrap();
        let unmounted = rootfs::unmount(&rootfs_dir);
        assert!(fs::read(upper.join("etc/keep")).is_ok_and(|b| b == b"changed"));
        unmounted.unwrap();
        assert!(!rootfs::is_mounted(&rootfs_dir));
        let kind =
            rootfs::mount(&store, &image, &rootfs_dir, &dir.path().join("c2/upper"), &dir.path().join("c2/work"));
        assert_eq!(kind.unwrap(), RootfsKind::Overlay);
        let checked = std::panic::catch_unwind(|| check_tree(&rootfs_dir));
        rootfs::unmount(&rootfs_dir).unwrap();
        checked.unwrap();
        assert_eq!(fs::read(store.snapshots().rootfs(&base.diff_id).join("etc/keep")).unwrap(), b"base");
        // Snapshots whose whiteouts are marker files cannot be overlaid: the image is copied.
        let info_path = store.root().join("snapshots/sha256").join(top.diff_id.hex()).join("snapshot.json");
        let info = fs::read_to_string(&info_path)
            .unwrap()
            .replace("\"overlay_whiteouts\": true", "\"overlay_whiteouts\": false");
        fs::write(&info_path, info).unwrap();
        let copy = dir.path().join("c3/rootfs");
        let kind = rootfs::mount(&store, &image, &copy, &dir.path().join("c3/upper"), &dir.path().join("c3/work"));
        assert_eq!(kind.unwrap(), RootfsKind::Copy);
        assert!(!rootfs::is_mounted(&copy));
        check_tree(&copy);
    } else {
        // Unprivileged snapshots keep marker files, so the root is a copy.
        assert_eq!(kind, RootfsKind::Copy);
        check_tree(&rootfs_dir);
    }
}
