//! A container's root made from a pulled image: as an overlayfs over the snapshots (as
//! root), and as a flattened copy where the snapshots hold their whiteouts as `.wh.` marker
//! files (unpacked without the privileges for overlayfs whiteouts); whiteouts and opaque
//! directories are applied either way, and the user is resolved from the result. An image
//! that lists a layer twice is still overlaid.

mod support;

use std::fs;
use std::sync::Arc;

use runtime::container::rootfs::{self, RootfsKind};
use runtime::container::user;
use runtime::{NoProgress, PullOptions, Store};
use shared::client::testing::{FakeAuth, FakeRegistry};
use shared::client::{Anonymous, Client, ClientConfig};
use shared::ImageRef;
use support::{add_image, layer};

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
    add_image(&registry, "team/app", "v1", &[&base, &top], None);
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

/// An image may list one layer twice (a build that added the same files again): its root is
/// still an overlay, not a full copy (overlayfs refuses a directory twice among its layers).
#[tokio::test]
async fn an_image_with_a_layer_twice_is_still_an_overlay() {
    let test = "an_image_with_a_layer_twice_is_still_an_overlay";
    if !shared::testing::require_root(test) || !rootfs::overlay_available() {
        return;
    }
    let registry = FakeRegistry::start(FakeAuth::None, false).await.unwrap();
    let same = layer(&[("etc/", b""), ("etc/version", b"one")]);
    let middle = layer(&[("etc/", b""), ("etc/version", b"two"), ("etc/middle", b"m")]);
    add_image(&registry, "team/twice", "v1", &[&same, &middle, &same], None);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let reference: ImageRef = format!("{}/team/twice:v1", registry.host()).parse().unwrap();
    let client = Client::new(ClientConfig::default(), Arc::new(Anonymous)).unwrap();
    let image = store.pull(&client, &reference, &PullOptions::default(), &NoProgress).await.unwrap();
    assert_eq!(image.layers.len(), 3);
    let c = dir.path().join("c");
    let root = c.join("rootfs");
    let kind = rootfs::mount(&store, &image, &root, &c.join("upper"), &c.join("work")).unwrap();
    let seen = (fs::read_to_string(root.join("etc/version")), fs::read_to_string(root.join("etc/middle")));
    rootfs::unmount(&root).unwrap();
    assert_eq!(kind, RootfsKind::Overlay, "the image was copied, not overlaid");
    // The top copy of the layer wins over the middle one.
    assert_eq!((seen.0.unwrap().as_str(), seen.1.unwrap().as_str()), ("one", "m"));
}
