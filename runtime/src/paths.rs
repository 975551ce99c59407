//! The on-disk layout of the local image store, drawn once; every path is built here.
//!
//! ```text
//! <root>/                         default /var/lib/berth (the CLI's --root or BERTH_ROOT)
//!   lock                          flock: shared while a pull runs, exclusive while images
//!                                 are removed and unused content is collected
//!   images.json                   the image index: reference → manifest, config, layers
//!   images.lock                   flock held while images.json is read, changed, replaced
//!   blobs/<alg>/<hex>             verified content: indexes, manifests, configs, layer blobs
//!   snapshots/<alg>/<hex>/        one unpacked layer, named by its diff ID:
//!     rootfs/                     the layer's files, whiteouts in overlayfs form
//!     snapshot.json               what unpacking found (content size, entries, whiteouts)
//!   tmp/                          blobs being downloaded and layers being unpacked; emptied
//!                                 when the store is opened while nobody else uses it
//!   containers.lock               flock held while container names are checked and records
//!                                 are created or removed
//!   containers/<id>/              one container, named by its 64-hex-digit ID; an OCI bundle:
//!     container.json              berth's record: name, image, command, options, state, exit
//!     config.json                 the OCI runtime configuration (the bundle's)
//!     rootfs/                     the container's root: an overlayfs mount point, or a plain
//!                                 copy (flattened image) where overlayfs is unavailable
//!     upper/  work/               overlayfs upper and work directories (the container's changes)
//!     container.log               stdout and stderr of a detached container
//!     <id>/                       the OCI runtime's own state: this folder is the `--root` of
//!                                 libcontainer or runc, which keep a folder per container ID in
//!                                 it (one folder less to create and delete for every run)
//!   networks.lock                 flock held while networks and attachments change
//!   networks/                     container networks ([`crate::network`]):
//!     <name>.json                 one network's definition: subnet, gateway, bridge, DNS
//!     attachments/<id>.json       a container's place on its network: address, ports, the
//!                                 CNI result that DEL is given back; removed on detach
//!     netns/<id>                  the container's network namespace, held by a bind mount
//!     ipam/                       the CNI host-local plugin's address leases (its dataDir) for
//!                                 user networks; the default network's are host-wide, in
//!                                 /run/berth/ipam, as its bridge is
//!     dns/                        aardvark-dns's configuration (a file per network) and pid
//!   volumes/<name>/               one volume (`berth volume`, `-v NAME:/path`); anonymous
//!                                 ones are named by 64 hex digits. Created, checked for use
//!                                 and removed under containers.lock
//!     volume.json                 its record: name, labels, when created, anonymous or not
//!     _data/                      its files, bind-mounted into the containers that use it
//! ```
//!
//! Everything under `blobs/` and `snapshots/` appears by one `rename` from `tmp/` (same
//! file system) once it is complete and verified, so a name there always holds what it
//! promises, and an interrupted pull leaves only `tmp/` debris plus the blobs it finished.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use shared::Digest;

/// Builds the store's paths from its root.
#[derive(Debug, Clone)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    /// The paths of a store rooted at `root`. A relative `root` is made absolute from the
    /// current directory now, so that every path handed on stays right whatever directory
    /// it is used from (runc, for one, resolves a bundle's mount sources from the bundle).
    pub fn new(root: impl Into<PathBuf>) -> Paths {
        let root = root.into();
        Paths { root: std::path::absolute(&root).unwrap_or(root) }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store-wide lock file.
    pub fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// The image index.
    pub fn images(&self) -> PathBuf {
        self.root.join("images.json")
    }

    /// The image index's lock file.
    pub fn images_lock(&self) -> PathBuf {
        self.root.join("images.lock")
    }

    /// The folder of all blobs.
    pub fn blobs(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Where blob `digest` lives.
    pub fn blob(&self, digest: &Digest) -> PathBuf {
        self.blobs().join(digest.algorithm().as_str()).join(digest.hex())
    }

    /// The folder of all snapshots.
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// The snapshot of the layer with diff ID `diff_id`.
    pub fn snapshot(&self, diff_id: &Digest) -> PathBuf {
        self.snapshots().join(diff_id.algorithm().as_str()).join(diff_id.hex())
    }

    /// The layer's files inside a snapshot (an overlayfs lower directory).
    pub fn snapshot_rootfs(&self, diff_id: &Digest) -> PathBuf {
        self.snapshot(diff_id).join(ROOTFS)
    }

    /// What unpacking the layer found, inside a snapshot.
    pub fn snapshot_info(&self, diff_id: &Digest) -> PathBuf {
        self.snapshot(diff_id).join(SNAPSHOT_INFO)
    }

    /// The folder for work in progress.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh name in `tmp/` starting with `prefix`, unique within this machine.
    pub fn temp(&self, prefix: &str) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        self.tmp().join(format!("{prefix}-{}-{n}", std::process::id()))
    }
}

impl Paths {
    /// The folder of all containers.
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// The lock file guarding container names.
    pub fn containers_lock(&self) -> PathBuf {
        self.root.join("containers.lock")
    }

    /// The folder (OCI bundle) of container `id`.
    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }

    /// Berth's record of container `id`.
    pub fn container_record(&self, id: &str) -> PathBuf {
        self.container(id).join("container.json")
    }

    /// The OCI runtime configuration of container `id`.
    pub fn container_config(&self, id: &str) -> PathBuf {
        self.container(id).join("config.json")
    }

    /// The root file system of container `id`.
    pub fn container_rootfs(&self, id: &str) -> PathBuf {
        self.container(id).join(ROOTFS)
    }

    /// The overlayfs upper directory of container `id`.
    pub fn container_upper(&self, id: &str) -> PathBuf {
        self.container(id).join("upper")
    }

    /// The overlayfs work directory of container `id`.
    pub fn container_work(&self, id: &str) -> PathBuf {
        self.container(id).join("work")
    }

    /// The log of a detached container `id`.
    pub fn container_log(&self, id: &str) -> PathBuf {
        self.container(id).join("container.log")
    }

    /// The OCI runtime's state directory (its `--root`) for container `id`: the container's
    /// own folder, in which the runtime makes a folder named by the ID.
    pub fn container_runtime_state(&self, id: &str) -> PathBuf {
        self.container(id)
    }
}

impl Paths {
    /// The lock file guarding networks and attachments.
    pub fn networks_lock(&self) -> PathBuf {
        self.root.join("networks.lock")
    }

    /// The folder of container networks.
    pub fn networks(&self) -> PathBuf {
        self.root.join("networks")
    }

    /// The definition of network `name`.
    pub fn network(&self, name: &str) -> PathBuf {
        self.networks().join(format!("{name}.json"))
    }

    /// The folder of attachments (a file per attached container).
    pub fn network_attachments(&self) -> PathBuf {
        self.networks().join("attachments")
    }

    /// Container `id`'s attachment.
    pub fn network_attachment(&self, id: &str) -> PathBuf {
        self.network_attachments().join(format!("{id}.json"))
    }

    /// The network namespace file of container `id`.
    pub fn netns(&self, id: &str) -> PathBuf {
        self.networks().join("netns").join(id)
    }

    /// The host-local IPAM plugin's data folder.
    pub fn network_ipam(&self) -> PathBuf {
        self.networks().join("ipam")
    }

    /// aardvark-dns's configuration folder.
    pub fn network_dns(&self) -> PathBuf {
        self.networks().join("dns")
    }

    /// The folder of all volumes.
    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// The folder of volume `name`.
    pub fn volume(&self, name: &str) -> PathBuf {
        self.volumes().join(name)
    }

    /// The record of volume `name`.
    pub fn volume_record(&self, name: &str) -> PathBuf {
        self.volume(name).join("volume.json")
    }

    /// The files of volume `name` (its mount point, as Docker's `_data`).
    pub fn volume_data(&self, name: &str) -> PathBuf {
        self.volume(name).join("_data")
    }
}

/// The name of a snapshot's file tree.
pub const ROOTFS: &str = "rootfs";

/// The name of a snapshot's description.
pub const SNAPSHOT_INFO: &str = "snapshot.json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_drawing() {
        let p = Paths::new("/var/lib/berth");
        let d = Digest::sha256_of(b"x");
        assert_eq!(p.blob(&d), Path::new("/var/lib/berth/blobs/sha256").join(d.hex()));
        assert_eq!(p.snapshot_rootfs(&d), Path::new("/var/lib/berth/snapshots/sha256").join(d.hex()).join("rootfs"));
        assert_ne!(p.temp("blob"), p.temp("blob"));
        assert!(p.temp("blob").starts_with("/var/lib/berth/tmp"));
    }

    #[test]
    fn a_relative_root_is_made_absolute() {
        let p = Paths::new("relative/store");
        assert!(p.root().is_absolute(), "{}", p.root().display());
        assert!(p.container_config("x").ends_with("relative/store/containers/x/config.json"));
    }
}
