//! Library code leaves the process's working directory alone (issue 11.1): the console
//! socket and the overlayfs mount of a container's root work, and the working directory is
//! the same afterwards, even when it is a directory that was deleted (where code that saves
//! and restores it cannot even read it).
//!
//! This file holds one test on purpose: it changes its own process's working directory,
//! which no other test may share.

mod support;

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use runtime::container::console::ConsoleSocket;
use runtime::container::rootfs::{self, RootfsKind};
use runtime::{NoProgress, PullOptions, Store};
use shared::client::testing::{FakeAuth, FakeRegistry};
use shared::client::{Anonymous, Client, ClientConfig};
use shared::ImageRef;
use support::{add_image, layer};

fn cwd() -> PathBuf {
    fs::read_link("/proc/self/cwd").unwrap()
}

/// A directory under `base` whose path is longer than a socket address (108 bytes).
fn long_dir(base: &Path) -> PathBuf {
    let dir = base.join("a-folder-name-of-forty-characters-or-so.").join("x".repeat(60)).join("y".repeat(60));
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn console_and_overlay_leave_the_working_directory_alone() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    fs::create_dir(&gone).unwrap();
    std::env::set_current_dir(&gone).unwrap();
    fs::remove_dir(&gone).unwrap();
    let before = cwd();
    assert!(before.to_string_lossy().ends_with(" (deleted)"), "{before:?}");

    let sockets = long_dir(dir.path());
    let socket = ConsoleSocket::bind(&sockets).unwrap();
    assert!(fs::symlink_metadata(sockets.join("console.sock")).unwrap().file_type().is_socket());
    assert_eq!(socket.path(), sockets.join("console.sock"));
    assert_eq!(cwd(), before, "binding the console socket changed the working directory");

    let test = "console_and_overlay_leave_the_working_directory_alone (overlayfs)";
    if !shared::testing::require_root(test) || !rootfs::overlay_available() {
        return;
    }
    let registry = FakeRegistry::start(FakeAuth::None, false).await.unwrap();
    let (base, top) = (layer(&[("etc/", b""), ("etc/base", b"base")]), layer(&[("etc/", b""), ("etc/top", b"top")]));
    add_image(&registry, "team/app", "v1", &[&base, &top], None);
    let store = Store::open(long_dir(dir.path()).join("store")).unwrap();
    let reference: ImageRef = format!("{}/team/app:v1", registry.host()).parse().unwrap();
    let client = Client::new(ClientConfig::default(), Arc::new(Anonymous)).unwrap();
    let image = store.pull(&client, &reference, &PullOptions::default(), &NoProgress).await.unwrap();
    let c = dir.path().join("c");
    let (root, upper, work) = (c.join("rootfs"), c.join("upper"), c.join("work"));
    let kind = rootfs::mount(&store, &image, &root, &upper, &work).unwrap();
    let seen = (fs::read(root.join("etc/base")), fs::read(root.join("etc/top")));
    rootfs::unmount(&root).unwrap();
    assert_eq!(kind, RootfsKind::Overlay, "overlayfs was not mounted");
    assert_eq!((seen.0.unwrap(), seen.1.unwrap()), (b"base".to_vec(), b"top".to_vec()));
    assert_eq!(cwd(), before, "mounting the overlay changed the working directory");
}
