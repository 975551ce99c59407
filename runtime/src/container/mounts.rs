//! The mount points of a container's volumes, bind mounts, tmpfs mounts and `--init` binary,
//! made inside its root before it starts, and the paths handed to the OCI runtime.
//!
//! A target is resolved as a chroot would ([`crate::inroot::Root`]): an image whose
//! `/data` is a link to `/var/lib/x` gets the volume on `/var/lib/x` inside its root, and a
//! link to `/../../etc` stays inside too. The runtime is given the resolved path (no link
//! left in it for the runtime to follow), and the mount point is made there: a directory, or
//! an empty file when the source is a file. An empty volume is first filled with what the
//! image has at that path ([`Volumes::fill`]). Called by the supervisor ([`super::shim`])
//! once the root is mounted.

use std::path::{Path, PathBuf};

use super::spec::{RunOptions, Tmpfs, Volume, INIT_PATH};
use crate::inroot::{InRootError, Root};
use crate::volumes::{VolumeError, Volumes};

/// Why a mount point could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point could not be resolved or made inside the root.
    #[error("making the mount point {target}")]
    Target {
        /// The mount point as given.
        target: String,
        /// The cause.
        #[source]
        source: InRootError,
    },
    /// The source of a bind mount cannot be used.
    #[error("the mount source {source_path} cannot be used")]
    Source {
        /// The host path.
        source_path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A volume could not be filled.
    #[error(transparent)]
    Volume(#[from] VolumeError),
}

/// Makes the mount points of `options`' volumes, tmpfs mounts and init binary inside
/// `rootfs` and fills empty volumes; returns the options with every target replaced by its
/// resolved path, and the init binary added as a read-only bind mount at [`INIT_PATH`].
pub fn prepare(rootfs: &Path, options: &RunOptions, volumes: &Volumes) -> Result<RunOptions, MountError> {
    let root = Root::open(rootfs).map_err(|source| MountError::Target { target: "/".into(), source })?;
    let mut resolved = options.clone();
    if let Some(init) = &options.init {
        resolved.volumes.insert(0, Volume::bind(init.clone(), INIT_PATH, true));
    }
    for v in &mut resolved.volumes {
        let target_err = |source| MountError::Target { target: v.container.clone(), source };
        let inside = root.resolve(&v.container, true).map_err(target_err)?;
        if let (Some(name), false) = (&v.name, v.no_copy) {
            volumes.fill(name, &root.host_path(&inside.path))?;
        }
        let is_dir = std::fs::metadata(&v.host)
            .map_err(|source| MountError::Source { source_path: v.host.clone(), source })?
            .is_dir();
        let target_err = |source| MountError::Target { target: v.container.clone(), source };
        if is_dir {
            root.mkdir_all(&inside.path, 0o755).map_err(target_err)?;
        } else {
            if let Some((parent, _)) = inside.path.rsplit_once('/') {
                root.mkdir_all(parent, 0o755).map_err(target_err)?;
            }
            let target_err = |source| MountError::Target { target: v.container.clone(), source };
            if inside.fd.is_none() {
                root.create_file(&inside.path, 0o644).map_err(target_err)?;
            }
        }
        v.container = format!("/{}", inside.path);
    }
    for t in &mut resolved.tmpfs {
        *t = Tmpfs { path: resolve_dir(&root, &t.path)?, options: t.options.clone() };
    }
    Ok(resolved)
}

/// Resolves the directory `target` inside `root`, making it when missing.
fn resolve_dir(root: &Root, target: &str) -> Result<String, MountError> {
    let made = root.mkdir_all(target, 0o755).map_err(|source| MountError::Target { target: target.into(), source })?;
    Ok(format!("/{}", made.path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn targets_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        let outside = dir.path().join("outside");
        fs::create_dir_all(rootfs.join("var/lib/app")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(rootfs.join("var/lib/app/seed"), "seed").unwrap();
        // An absolute link, a `..` escape and a link to `/` all stay inside.
        symlink("/var/lib/app", rootfs.join("data")).unwrap();
        symlink("../../../outside", rootfs.join("escape")).unwrap();
        symlink("/", rootfs.join("host")).unwrap();
        let store = dir.path().join("store");
        let volumes = Volumes::at(&store);
        let host_dir = dir.path().join("bind");
        fs::create_dir_all(&host_dir).unwrap();
        let host_file = dir.path().join("file");
        fs::write(&host_file, "f").unwrap();
        let containers = super::super::Containers::at(&store);
        let asked = RunOptions {
            volumes: vec![
                Volume { name: Some("vol".into()), container: "/data".into(), ..Volume::default() },
                Volume::bind(&host_dir, "/escape/x", false),
                Volume::bind(&host_file, "/host/etc/conf", true),
            ],
            tmpfs: vec![Tmpfs { path: "/host/tmp".into(), options: vec![] }],
            init: Some(host_file.clone()),
            ..RunOptions::default()
        };
        let record = containers.create("i", "r", &shared::Digest::sha256_of(b"m"), &asked, None).unwrap();
        let out = prepare(&rootfs, &record.options, &volumes).unwrap();
        let targets: Vec<&str> = out.volumes.iter().map(|v| v.container.as_str()).collect();
        assert_eq!(targets, ["/sbin/docker-init", "/var/lib/app", "/outside/x", "/etc/conf"]);
        assert!(out.volumes[0].read_only && out.volumes[0].host == host_file);
        assert_eq!(out.tmpfs[0].path, "/tmp");
        assert!(rootfs.join("outside/x").is_dir() && rootfs.join("etc/conf").is_file());
        assert!(rootfs.join("sbin/docker-init").is_file());
        assert!(fs::read_dir(&outside).unwrap().next().is_none(), "nothing was made outside the root");
        assert_eq!(fs::read_to_string(volumes.data("vol").join("seed")).unwrap(), "seed", "the volume was filled");
    }
}
