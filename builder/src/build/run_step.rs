//! RUN steps of the executor: the stage's workspace (a plain directory holding its layers),
//! the step's container through [`crate::run`], and the layer of what it changed. A step is
//! its command and environment (`run_spec`), its mounts and what they add to the key
//! (`mounts`; bind mount sources made ready on a miss only, `ready_binds`), and on a miss the
//! run and the diff (`execute`).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use runtime::container::spec::{Tmpfs, Volume};
use runtime::inroot::Root;
use runtime::unpack;
use shared::{Algorithm, Digest, Hasher};

use super::{
    absolute, apply_layer, escapes, key_of, only_heredoc_markers, step_io, Exec, Image, StageState, StepError,
    Workspace,
};
use crate::context::{ContextError, Pick, PickKind, Select};
use crate::instructions::{Command, Mount, MountKind, NetworkMode, Run};
use crate::plan::PROXY_ARGS;
use crate::progress::Outcome;
use crate::run::{self as runner, Request, Sandbox, Snapshot, StepNetwork};
use crate::tarball::Entry;

/// Where a bind mount's files come from, made ready on a cache miss only.
enum BindSource {
    /// Files of the build context (targets below `m`, from [`Exec::context_bind`]).
    Context { picks: Vec<Pick> },
    /// A path in the root of another stage or an image.
    Stage { name: String, image: Box<Image>, source: String },
}

/// A RUN step's command and environment, as its key and history see them.
struct RunSpec {
    args: Vec<String>,
    /// The environment (declared build arguments, then ENV).
    env: Vec<String>,
    /// Proxy build arguments: in the environment, out of the key and history.
    proxies: Vec<String>,
    user: String,
    cwd: String,
    created_by: String,
    /// A `RUN <<EOF` whose heredoc starts with `#!`: its (name, content), run as a file of
    /// its own from [`SCRIPTS`].
    script: Option<(String, String)>,
}

/// Where a `RUN <<EOF` heredoc that starts with `#!` is mounted (read-only, as a directory
/// holding the file `EOF`, mode 0755) and run from by the shell (`/bin/sh -c
/// /dev/pipes/EOF`), so the kernel hands it to its own interpreter: BuildKit's
/// `dispatchRun`. Inside the container's `/dev` tmpfs, so nothing of it reaches the layer.
const SCRIPTS: &str = "/dev/pipes";

/// A RUN step's mounts: what the container gets and what they add to the key.
#[derive(Default)]
struct Mounts {
    binds: Vec<Volume>,
    tmpfs: Vec<Tmpfs>,
    key: Vec<String>,
    /// Bind mounts whose sources are made ready on a miss: (bind, source, read-only).
    deferred: Vec<(usize, BindSource, bool)>,
}

/// The mount points (as [`runner::missing_mount_points`] names them) that the runtime makes
/// and BuildKit leaves in a RUN step's layer.
const RUNTIME_DIRS: &[&str] = &["proc", "dev", "sys"];

/// Counts RUN containers, so their IDs are unique within the process.
static RUNS: AtomicUsize = AtomicUsize::new(0);

impl Exec<'_> {
    /// Makes sure the stage's workspace holds exactly its layers.
    pub(super) fn workspace(&self, st: &mut StageState) -> Result<PathBuf, StepError> {
        let want: Vec<Digest> = st.image.layers.iter().map(|l| l.layer.diff_id.clone()).collect();
        let reuse = st.workspace.as_ref().is_some_and(|w| want.starts_with(&w.applied));
        if !reuse {
            if let Some(old) = st.workspace.take() {
                let _ = unpack::remove_tree(&old.dir);
            }
            // Registered for removal at the end of the build, however the build ends.
            let dir = self.temp_dir("root")?;
            st.workspace = Some(Workspace { dir, applied: Vec::new() });
        }
        let Some(ws) = st.workspace.as_mut() else { return Err(StepError::Invalid("no workspace".into())) };
        for layer in &st.image.layers[ws.applied.len()..] {
            apply_layer(&ws.dir, layer)?;
            ws.applied.push(layer.layer.diff_id.clone());
        }
        Ok(ws.dir.clone())
    }

    pub(super) fn run(&self, st: &mut StageState, r: &Run, id: usize) -> Result<(Outcome, Option<u64>), StepError> {
        let spec = self.run_spec(st, r);
        let mut mounts = self.mounts(st, r, &spec.cwd)?;
        if let Some((name, content)) = &spec.script {
            mounts.key.push(format!("script:{name}:{}", Digest::sha256_of(content.as_bytes())));
        }
        let key_text = serde_json::json!({
            "args": spec.args, "env": spec.env, "user": spec.user, "cwd": spec.cwd,
            "network": format!("{:?}", r.network), "mounts": mounts.key, "security": r.security,
        })
        .to_string();
        let key = key_of(&[st.image.layer_key.to_string().as_bytes(), b"RUN", key_text.as_bytes()]);
        // The entitlement is checked before the cache: a cached step needs it too.
        let network = match r.network {
            NetworkMode::None => StepNetwork::None,
            NetworkMode::Host if !self.options.allow_host_network => return Err(StepError::HostNetwork),
            NetworkMode::Host => StepNetwork::Host,
            NetworkMode::Default => self.options.network_root.clone().map_or(StepNetwork::Host, StepNetwork::Bridge),
        };
        if let Some(size) = self.lookup(st, &key, &spec.created_by)? {
            return Ok((Outcome::Cached, size));
        }
        self.ready_binds(&mut mounts)?;
        if let Some((name, content)) = &spec.script {
            mounts.binds.push(self.script_bind(name, content)?);
        }
        let entries = self.execute(st, &spec, mounts, network, &key, id)?;
        let size = self.commit(st, &key, entries, &spec.created_by)?;
        if let Some(ws) = st.workspace.as_mut() {
            if let Some(l) = st.image.layers.last() {
                if !ws.applied.contains(&l.layer.diff_id) || ws.applied.len() < st.image.layers.len() {
                    ws.applied = st.image.layers.iter().map(|l| l.layer.diff_id.clone()).collect();
                }
            }
        }
        Ok((Outcome::Done, size))
    }

    /// The directory mounted at [`SCRIPTS`] for a `RUN <<EOF` script: the file `name` with
    /// the heredoc's content, mode 0755, in a directory anyone may search (the step's USER
    /// runs it).
    fn script_bind(&self, name: &str, content: &str) -> Result<Volume, StepError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.temp_dir("script")?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(step_io(&dir))?;
        let file = dir.join(name);
        fs::write(&file, content).map_err(step_io(&file))?;
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).map_err(step_io(&file))?;
        Ok(Volume::bind(dir, SCRIPTS.to_string(), true))
    }

    /// The step's command (heredocs included), environment, user, working directory and
    /// history text.
    fn run_spec(&self, st: &StageState, r: &Run) -> RunSpec {
        let shell = || st.image.config.config.shell.clone().unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
        let mut script = None;
        let args = match (&r.command, r.heredocs.first()) {
            // One heredoc with its own interpreter: the shell runs it as a file (BuildKit's
            // `/bin/sh -c /dev/pipes/EOF`). A name that is not a plain file name (BuildKit
            // would make its directories) goes to the shell as its text instead.
            (Command::Shell(cmd), Some(first))
                if only_heredoc_markers(cmd)
                    && r.heredocs.len() == 1
                    && first.content.starts_with("#!")
                    && is_file_name(&first.name) =>
            {
                script = Some((first.name.clone(), first.content.clone()));
                let mut shell = shell();
                shell.push(format!("{SCRIPTS}/{}", first.name));
                shell
            }
            (Command::Shell(cmd), Some(first)) if only_heredoc_markers(cmd) => {
                let mut shell = shell();
                shell.push(first.content.clone());
                shell
            }
            (Command::Shell(cmd), Some(_)) => {
                let mut full = cmd.clone();
                for h in &r.heredocs {
                    full.push('\n');
                    full.push_str(&h.content);
                    full.push_str(&h.name);
                }
                let mut shell = shell();
                shell.push(full);
                shell
            }
            (c, _) => self.command_args(st, c),
        };
        // The stage's variables, ARGs and ENVs in the order they came (BuildKit's).
        let full_env = st.vars.env_list();
        let arg_env = st.vars.history_args();
        let proxies: Vec<String> =
            PROXY_ARGS.iter().filter_map(|p| self.options.build_args.get(*p).map(|v| format!("{p}={v}"))).collect();
        let command_text = args.join(" ");
        let created_by = if arg_env.is_empty() {
            format!("RUN {command_text} # buildkit")
        } else {
            format!("RUN |{} {} {command_text} # buildkit", arg_env.len(), arg_env.join(" "))
        };
        RunSpec {
            args,
            env: full_env,
            proxies,
            user: st.image.config.config.user.clone().unwrap_or_default(),
            cwd: st.image.config.config.working_dir.clone().unwrap_or_else(|| "/".into()),
            created_by,
            script,
        }
    }

    /// The step's mounts and what they add to its key; bind mount sources are made ready
    /// later ([`Exec::ready_binds`]), on a miss only.
    fn mounts(&self, st: &StageState, r: &Run, cwd: &str) -> Result<Mounts, StepError> {
        let mut mounts = Mounts::default();
        for m in &r.mounts {
            let target = m.target.as_ref().map(|t| self.expand(st, t)).transpose()?;
            match m.kind {
                MountKind::Cache => {
                    let target = absolute(cwd, target.as_deref().unwrap_or_default());
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    let host = self.cache_mount_dir(m, &cache_dir_id(m, &id))?;
                    let read_only = m.readonly.unwrap_or(false);
                    mounts.binds.push(Volume::bind(host, target.clone(), read_only));
                    mounts.key.push(format!("cache:{id}:{target}"));
                }
                MountKind::Tmpfs => {
                    let target = absolute(cwd, target.as_deref().unwrap_or_default());
                    let mut options = vec!["mode=1777".to_string()];
                    if let Some(size) = m.size {
                        options.push(format!("size={size}"));
                    }
                    mounts.tmpfs.push(Tmpfs { path: target.clone(), options });
                    mounts.key.push(format!("tmpfs:{target}"));
                }
                MountKind::Bind => {
                    let target = absolute(cwd, target.as_deref().unwrap_or_default());
                    let source =
                        m.source.as_ref().map(|s| self.expand(st, s)).transpose()?.unwrap_or_else(|| ".".into());
                    let read_only = m.readonly.unwrap_or(true);
                    let (source, key) = match &m.from {
                        None => {
                            let (picks, key) = self.context_bind(&source)?;
                            (BindSource::Context { picks }, key)
                        }
                        Some(from) => {
                            // Keyed by the stage's (or image's) layer key; unpacked on a miss.
                            let name = self.expand(st, from)?;
                            let image = self.source_image(&name, self.stage_index(st))?;
                            let key = image.layer_key.clone();
                            (BindSource::Stage { name, image: Box::new(image), source }, key)
                        }
                    };
                    mounts.deferred.push((mounts.binds.len(), source, read_only));
                    mounts.binds.push(Volume::bind(PathBuf::new(), target.clone(), read_only));
                    mounts.key.push(format!("bind:{target}:{key}:{read_only}"));
                }
                MountKind::Secret => {
                    let id_name =
                        m.id.clone()
                            .or_else(|| target.as_ref().and_then(|t| t.rsplit('/').next().map(String::from)))
                            .unwrap_or_default();
                    let target = target.unwrap_or_else(|| format!("/run/secrets/{id_name}"));
                    match self.options.secrets.get(&id_name) {
                        Some(path) => {
                            mounts.binds.push(Volume::bind(path.clone(), target.clone(), true));
                        }
                        None if m.required => {
                            return Err(StepError::Invalid(format!(
                                "secret {id_name} is required but was not given (--secret id={id_name},src=PATH)"
                            )));
                        }
                        None => {}
                    }
                    // Secrets stay out of the key, as BuildKit keeps them out.
                    mounts.key.push(format!("secret:{id_name}:{target}"));
                }
                MountKind::Ssh if m.required => {
                    return Err(StepError::Invalid("RUN --mount=type=ssh is not supported".into()));
                }
                MountKind::Ssh => {}
            }
        }
        Ok(mounts)
    }

    /// The directory of cache mount `id` (see [`cache_dir_id`]), made (with the mount's mode and owners) the first
    /// time.
    fn cache_mount_dir(&self, m: &Mount, id: &str) -> Result<PathBuf, StepError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.cache().mount_dir(id);
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(step_io(&dir))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(m.mode.unwrap_or(0o755))).map_err(step_io(&dir))?;
            if m.uid.is_some() || m.gid.is_some() {
                std::os::unix::fs::chown(&dir, m.uid, m.gid).map_err(step_io(&dir))?;
            }
        }
        Ok(dir)
    }

    /// Gives the bind mounts their sources: a private copy of the context's files, or the
    /// path resolved in a stage's root (copied when the mount is writable).
    fn ready_binds(&self, mounts: &mut Mounts) -> Result<(), StepError> {
        for (i, source, read_only) in std::mem::take(&mut mounts.deferred) {
            mounts.binds[i].host = match source {
                // A private copy already: writes to it are thrown away with it.
                BindSource::Context { picks } => self.context_copy(&picks)?,
                BindSource::Stage { name, image, source } => {
                    let host = self.stage_source(&name, &image, &source)?;
                    if read_only {
                        host
                    } else {
                        // Writes to a rw bind mount are thrown away: give it a copy.
                        let copy = self.temp_dir("bind")?;
                        copy_tree(&host, &copy)?;
                        copy
                    }
                }
            };
        }
        Ok(())
    }

    /// Runs the step in a container over the stage's workspace and returns the layer
    /// entries of what it changed (mount points it needed removed again).
    fn execute(
        &self,
        st: &mut StageState,
        spec: &RunSpec,
        mounts: Mounts,
        network: StepNetwork,
        key: &Digest,
        id: usize,
    ) -> Result<Vec<Entry>, StepError> {
        let rootfs = self.workspace(st)?;
        let system: Vec<String> = ["/proc", "/dev", "/sys", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // The script's mount point is made in the container's `/dev` tmpfs, not in the root.
        let step_mounts: Vec<String> = mounts
            .binds
            .iter()
            .map(|b| b.container.clone())
            .chain(mounts.tmpfs.iter().map(|t| t.path.clone()))
            .filter(|t| t != SCRIPTS)
            .collect();
        let before = Snapshot::take(&rootfs)?;
        // The working directory exists for the command, as Docker makes it: inside the
        // root, through the image's links as a chroot would follow them. Made after the
        // snapshot, it belongs to the layer (as in BuildKit).
        if !runner::missing_mount_points(&rootfs, std::slice::from_ref(&spec.cwd))?.is_empty() {
            Root::open(&rootfs)?.mkdir_all(&spec.cwd, 0o755)?;
        }
        let created = runner::missing_mount_points(&rootfs, &system)?;
        let created_for_step = runner::missing_mount_points(&rootfs, &step_mounts)?;
        let times = runner::parent_times(&rootfs, &created)?;
        let request = Request {
            args: spec.args.clone(),
            env: spec.env.iter().chain(&spec.proxies).cloned().collect(),
            cwd: spec.cwd.clone(),
            user: spec.user.clone(),
            network,
            binds: mounts.binds,
            tmpfs: mounts.tmpfs,
        };
        let sandbox = Sandbox {
            runtime: self.options.oci_runtime.clone(),
            rootfs: rootfs.clone(),
            work: self.temp_dir("run")?,
            // Unique even when two stages run the same step at once.
            id: format!(
                "berth-build-{}-{}-{}",
                &key.hex()[..12],
                std::process::id(),
                RUNS.fetch_add(1, Ordering::Relaxed)
            ),
            cancel: self.options.cancel.clone(),
        };
        let progress = self.progress;
        let started = Instant::now();
        let (code, tail) = runner::run(&request, &sandbox, &|line| progress.output(id, line))?;
        // The directories the runtime made for `/proc`, `/dev` and `/sys` stay in the layer,
        // as runc's stay in BuildKit's (a RUN on `scratch` leaves them); the `/etc` files'
        // stubs go, and `/etc` with them when it was made for them and is empty (today's
        // BuildKit: its MountStubsCleaner walks up to the empty directories made for them).
        let created: Vec<String> = created.into_iter().filter(|p| !RUNTIME_DIRS.contains(&p.as_str())).collect();
        runner::remove_mount_points(&rootfs, &created, &times);
        // The step's mount points: empty stub files go, directories stay in the layer
        // (BuildKit's MountStubsCleaner skips directories).
        let stubs = runner::stub_files(&rootfs, &created_for_step);
        runner::remove_mount_points(&rootfs, &stubs, &[]);
        tracing::debug!(elapsed = ?started.elapsed(), code, "RUN finished");
        if code != 0 {
            // The root is now dirty: drop it, so a retry starts clean.
            if let Some(ws) = st.workspace.take() {
                let _ = unpack::remove_tree(&ws.dir);
            }
            return Err(StepError::Exit {
                command: serde_json::to_string(&spec.args).unwrap_or_default(),
                code,
                output: tail,
            });
        }
        let mut entries = before.diff(&rootfs)?;
        // Overlay whiteouts (character devices 0/0) must never appear; runc does not make
        // them, but a command could: keep them as devices, as Docker would.
        entries.retain(|e| !e.path.is_empty());
        Ok(entries)
    }

    /// The context files a bind mount of `source` shows (`.dockerignore` applied, links
    /// resolved inside the context, as targets below `m`) and the key they give the step.
    fn context_bind(&self, source: &str) -> Result<(Vec<Pick>, Digest), StepError> {
        if escapes(source) {
            return Err(ContextError::Escapes {
                what: "RUN --mount".into(),
                path: source.to_string(),
                tree: "build context".into(),
            }
            .into());
        }
        let all = vec![crate::ignore::clean(source)];
        let picks = self.context.select(&Select {
            what: "RUN --mount",
            sources: &all,
            dest: "/m",
            dest_is_dir: true,
            exclude: &[],
            parents: false,
        })?;
        let files: Vec<(&Path, &fs::Metadata)> =
            picks.iter().filter(|p| p.kind == PickKind::File).map(|p| (p.source.as_path(), &p.meta)).collect();
        let digests = self.stat.digest_all(&files)?;
        let mut h = Hasher::new(Algorithm::Sha256);
        for (p, d) in picks.iter().filter(|p| p.kind == PickKind::File).zip(&digests) {
            h.update(p.target.as_bytes());
            h.update(d.to_string().as_bytes());
        }
        Ok((picks, h.finish()))
    }

    /// A private copy of the context files `picks` (from [`Exec::context_bind`]), for a
    /// bind mount: only what the selection shows (so `.dockerignore` applies, as BuildKit
    /// applies it), each file read through the context's root as a chroot would resolve it,
    /// so no link (planted before or during the build) leads the mount out of the context.
    /// Returns the directory, or the file when the source is a single file.
    fn context_copy(&self, picks: &[Pick]) -> Result<PathBuf, StepError> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = self.temp_dir("bind")?;
        let context = Root::open(self.context.root())?;
        let mut dirs = vec![];
        let mut single_file = None;
        for p in picks {
            let below = p.target.strip_prefix('m').unwrap_or(&p.target).trim_start_matches('/');
            let dest = if below.is_empty() { dir.clone() } else { dir.join(below) };
            match &p.kind {
                PickKind::Dir => {
                    if dest != dir {
                        fs::create_dir(&dest).map_err(step_io(&dest))?;
                    }
                    dirs.push((dest, p.meta.clone()));
                }
                PickKind::File => {
                    let rel = p.source.strip_prefix(self.context.root()).unwrap_or(&p.source);
                    let rel = rel.to_string_lossy();
                    let Some(mut from) = context.open_file(&rel)? else {
                        return Err(StepError::Invalid(format!("RUN --mount: {rel} vanished from the build context")));
                    };
                    let mut to = File::create(&dest).map_err(step_io(&dest))?;
                    io::copy(&mut from, &mut to).map_err(step_io(&dest))?;
                    to.set_permissions(fs::Permissions::from_mode(p.meta.mode() & 0o7777)).map_err(step_io(&dest))?;
                    if let Ok(t) = p.meta.modified() {
                        let _ = to.set_modified(t);
                    }
                    if picks.len() == 1 {
                        single_file = Some(dest);
                    }
                }
                PickKind::Symlink(t) => std::os::unix::fs::symlink(t, &dest).map_err(step_io(&dest))?,
                // FIFOs and devices are not shown (BuildKit does not send them either).
                PickKind::Special => {}
            }
        }
        for (d, meta) in dirs.iter().rev() {
            fs::set_permissions(d, fs::Permissions::from_mode(meta.mode() & 0o7777)).map_err(step_io(d))?;
            if let (Ok(t), Ok(f)) = (meta.modified(), File::open(d)) {
                let _ = f.set_modified(t);
            }
        }
        Ok(single_file.unwrap_or(dir))
    }

    /// Where `source` is in the root of stage (or image) `name`: resolved inside that root
    /// as a chroot would, so a link the stage made (`r -> /`) stays in it. The root is this
    /// build's own unpacked copy and the path has no link left to follow.
    fn stage_source(&self, name: &str, image: &Image, source: &str) -> Result<PathBuf, StepError> {
        let root = Root::open(&self.materialise(image)?)?;
        let resolved = root.resolve(source, true)?;
        if resolved.fd.is_none() {
            return Err(StepError::Invalid(format!(
                "RUN --mount from={name}: {source:?} does not exist in {name} (links resolve inside its root)"
            )));
        }
        Ok(root.host_path(&resolved.path))
    }
}

/// True for a name that is one plain path component (a heredoc's name as a file name).
fn is_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// Copies the tree `from` into `to`, keeping owners, modes, links and times (`cp -a`).
fn copy_tree(from: &Path, to: &Path) -> Result<(), StepError> {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .map_err(step_io(from))?;
    if !status.success() {
        return Err(StepError::Io { path: from.to_path_buf(), source: io::Error::other("cp -a failed") });
    }
    Ok(())
}

/// The cache directory a cache mount uses: its id, and its `uid`, `gid` and `mode` when any
/// is given. BuildKit shares a cache by id and by the directory those make (its base), so
/// mounts with the same id but other owners or mode get caches of their own.
fn cache_dir_id(m: &Mount, id: &str) -> String {
    if m.uid.is_none() && m.gid.is_none() && m.mode.is_none() {
        return id.to_string();
    }
    format!("{id}\0{}:{}:{:o}", m.uid.unwrap_or(0), m.gid.unwrap_or(0), m.mode.unwrap_or(0o755))
}
