//! The executor: runs a planned Dockerfile stage by stage, step by step, with the cache.
//!
//! - **FROM** pulls the base through the runtime's image store ([`runtime::Store::pull`]) or
//!   starts from `scratch` or another stage's result; the base image's `ONBUILD` triggers
//!   run first.
//! - **COPY/ADD** select their files from the context (or a stage's or image's root),
//!   hash exactly those (through the stat cache), and write the layer straight from the
//!   files: no container. Owners are 0:0 unless `--chown` (files from a stage or an image
//!   keep theirs); `--chmod` (octal or symbolic) sets the modes of what is copied; parent
//!   directories the image lacks are created (0755); context hard links stay links. The
//!   image's symbolic links on the way to a destination are followed inside the image
//!   (`/bin -> usr/bin`: `usr/bin/tool`) and stay links. ADD extracts local tar archives (plain, gzip,
//!   bzip2, xz, zstd: [`crate::archive`]) and downloads URLs (checked against `--checksum`).
//! - **RUN** runs in a container over the stage's root ([`crate::run`]); its layer is the
//!   difference. **WORKDIR** creates its directory when the image lacks it, owned by the
//!   current USER (through the image's links, inside it). Paths of a step's root, the context and other stages' roots
//!   are resolved with [`runtime::inroot`], as a chroot would.
//! - The other instructions change the image config only.
//!
//! **Keys.** Each stage carries the key of its file system (`layer key`): the base's is the
//! hash of its manifest digest (or `scratch`), and each layer-making step's key hashes the
//! parent layer key with everything that decides its result — for COPY/ADD the expanded
//! arguments and every selected path's name, type, mode, link target and content digest
//! (plus modification times with `--keep-timestamps`); for RUN the command, environment,
//! user, working directory, network and mounts (a bind mount of the context hashes the files
//! it exposes). A COPY `--from` another stage hashes that stage's layer key. A `COPY --link`
//! (or `ADD --link`) step's key leaves the parent out: its layer is made as on an empty root
//! (parent directories created, nothing of the image read, `--chown` numeric), so a change
//! before it reuses the cached layer, blob for blob; the stage's layer key after it still
//! hashes the parent's with it. Metadata steps
//! do not change the layer key, so a changed LABEL or CMD re-runs nothing. A cache entry's
//! key adds to the step's key the compression and `SOURCE_DATE_EPOCH` (as given, unset
//! differing from 0), which every layer's timestamps follow. A hit reuses the
//! stored layer without running anything; `--no-cache` skips lookups (results are still
//! stored).
//!
//! **Reproducibility.** Layer timestamps are clamped to `SOURCE_DATE_EPOCH` (0 by default),
//! the config's `created` and each new history entry are that epoch too, and entries,
//! JSON maps and gzip headers are fixed (see [`crate::tarball`], [`crate::config`]).
//!
//! **Stages** the target needs run wave by wave ([`crate::plan::Plan::waves`]); the stages
//! of a wave run at once on their own threads.

use runtime::unpack::{self, UnpackMode};
use runtime::Store;
use shared::client::Client;
use shared::date::rfc3339;
use shared::manifest::Platform;
use shared::{media_type, Algorithm, Digest, Hasher, ImageRef};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::runtime::Handle;

use crate::cache::{Cache, CacheError, Entry as CacheEntry, LayerRef};
use crate::config::{Empty, Health, History, ImageConfig};
use crate::context::{ContextError, StatCache, Tree};
use crate::expand;
use crate::fsindex::{self, FsIndex, LayerIndex};
use crate::ignore::Ignore;
use crate::instructions::{self, Command, Instruction, Step};
use crate::plan::{Plan, PROXY_ARGS};
use crate::progress::{Outcome, Progress};
use crate::run::{Cancel, RunError, RuntimeCommand};
use crate::tarball::{self, Compression, Entry, WriteOptions};

mod chmod;
mod copy;
mod error;
mod from;
mod run_step;
mod vars;

pub use error::{BuildError, StepError};
use vars::StageVars;
pub use vars::DEFAULT_PATH;

/// What to build, and how. `Options::new(context)` gives the defaults documented here.
#[derive(Debug, Clone)]
pub struct Options {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile. Default `<context>/Dockerfile`.
    pub dockerfile: Option<PathBuf>,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// `--target`. Default: the last stage.
    pub target: Option<String>,
    /// `--no-cache`: run every step.
    pub no_cache: bool,
    /// `--platform`. Default: the host's.
    pub platform: Option<Platform>,
    /// `SOURCE_DATE_EPOCH`: timestamps are clamped to it. Default 0. Given here or as the
    /// build argument of that name (BuildKit's way), it is both: a stage that declares
    /// `ARG SOURCE_DATE_EPOCH` sees it in its RUN steps (see [`Options::epoch`]).
    pub source_date_epoch: Option<i64>,
    /// `--keep-timestamps`: keep files' modification times (the config still uses the epoch).
    pub keep_timestamps: bool,
    /// `--compression`. Default gzip.
    pub compression: Compression,
    /// `--compression-level` for gzip (0–9). Default [`tarball::DEFAULT_GZIP_LEVEL`].
    pub compression_level: u32,
    /// The OCI runtime command for RUN steps. Default `runc`; `berth build` passes
    /// [`RuntimeCommand::embedded`] with its own binary unless `--runtime` names one.
    pub oci_runtime: RuntimeCommand,
    /// Cancels the build (the CLI sets it on SIGINT or SIGTERM). Default: never.
    pub cancel: Cancel,
    /// `--secret id=ID,src=PATH`: files for `RUN --mount=type=secret`.
    pub secrets: BTreeMap<String, PathBuf>,
    /// `--cache-from`.
    pub cache_from: Vec<ImageRef>,
    /// The store root whose default bridge network RUN steps use (as BuildKit's default,
    /// an isolated namespace with outbound NAT). Default `None`: the host's network.
    pub network_root: Option<PathBuf>,
    /// `--allow network.host` (BuildKit's entitlement): `RUN --network=host` is allowed.
    /// Default: refused.
    pub allow_host_network: bool,
}

impl Options {
    /// Defaults for building `context`.
    pub fn new(context: impl Into<PathBuf>) -> Options {
        Options {
            context: context.into(),
            dockerfile: None,
            build_args: BTreeMap::new(),
            target: None,
            no_cache: false,
            platform: None,
            source_date_epoch: None,
            keep_timestamps: false,
            compression: Compression::Gzip,
            compression_level: tarball::DEFAULT_GZIP_LEVEL,
            oci_runtime: RuntimeCommand::external("runc"),
            cancel: Cancel::default(),
            secrets: BTreeMap::new(),
            cache_from: Vec::new(),
            network_root: None,
            allow_host_network: false,
        }
    }
}

impl Options {
    /// `SOURCE_DATE_EPOCH`, from [`Options::source_date_epoch`] or else the build argument
    /// of that name; and the build arguments with it (set from the option when they lack
    /// it), as BuildKit takes it (`--build-arg SOURCE_DATE_EPOCH=…`, which buildx sets from
    /// the environment variable).
    pub fn epoch(&self) -> Result<(Option<i64>, BTreeMap<String, String>), BuildError> {
        let mut args = self.build_args.clone();
        let epoch = match (self.source_date_epoch, args.get(SOURCE_DATE_EPOCH)) {
            (Some(e), _) => Some(e),
            // An empty value is no epoch (BuildKit's `SOURCE_DATE_EPOCH=` resets it).
            (None, Some(v)) if v.is_empty() => None,
            (None, Some(v)) => Some(v.parse().map_err(|_| BuildError::SourceDateEpoch(v.clone()))?),
            (None, None) => None,
        };
        if let Some(e) = epoch {
            args.insert(SOURCE_DATE_EPOCH.to_string(), e.to_string());
        }
        Ok((epoch, args))
    }
}

/// The build argument (and environment variable) that pins timestamps.
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// A layer of an image being built, and where its blob is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// Digests, size and media type.
    pub layer: LayerRef,
    /// The blob on disk.
    pub blob: PathBuf,
}

/// A built image: everything needed to write or push it.
#[derive(Debug, Clone)]
pub struct Built {
    /// The config's bytes.
    pub config: Vec<u8>,
    /// The config's digest.
    pub config_digest: Digest,
    /// The manifest's bytes (OCI image manifest).
    pub manifest: Vec<u8>,
    /// The manifest's digest.
    pub manifest_digest: Digest,
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
    /// The base image the layers came from, for cross-repository mounts when pushing.
    pub base: Option<ImageRef>,
    /// Steps run or served from the cache.
    pub steps: usize,
    /// Steps served from the cache.
    pub cached: usize,
    /// Context files whose content was read to hash them (the stat cache spared the rest).
    pub files_read: usize,
}

fn step_io(path: &Path) -> impl FnOnce(io::Error) -> StepError + '_ {
    move |source| StepError::Io { path: path.to_path_buf(), source }
}

/// A key from parts, each length-prefixed so parts cannot run into each other.
pub fn key_of(parts: &[&[u8]]) -> Digest {
    let mut h = Hasher::new(Algorithm::Sha256);
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finish()
}

/// An image as a stage builds it.
#[derive(Debug, Clone)]
struct Image {
    config: ImageConfig,
    layers: Vec<Layer>,
    layer_key: Digest,
    base: Option<ImageRef>,
    /// A finished stage's variables, for the stages built `FROM` it (none for images).
    vars: Option<StageVars>,
}

/// A stage's root materialised on disk, and which layers it holds.
#[derive(Debug)]
struct Workspace {
    dir: PathBuf,
    applied: Vec<Digest>,
}

/// The builder of one image store.
#[derive(Debug)]
pub struct Builder {
    store: Store,
    cache: Cache,
    client: Arc<Client>,
}

impl Builder {
    /// A builder keeping its cache under `store`'s root (`build/`) and talking to
    /// registries through `client`.
    pub fn new(store: Store, client: Arc<Client>) -> Result<Builder, BuildError> {
        let cache = Cache::open(&store.root().join("build"))?;
        Ok(Builder { store, cache, client })
    }

    /// The cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The registry client.
    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// Builds `options` and returns the image. Blocks; async work (pulls, downloads, cache
    /// imports) runs on `handle`, so call this from outside that runtime's threads (for
    /// instance inside `spawn_blocking`).
    pub fn build(&self, options: &Options, progress: &Progress, handle: &Handle) -> Result<Built, BuildError> {
        let dockerfile = options.dockerfile.clone().unwrap_or_else(|| options.context.join("Dockerfile"));
        let text = fs::read_to_string(&dockerfile)
            .map_err(|source| BuildError::Dockerfile { path: dockerfile.clone(), source })?;
        let parsed = instructions::parse_file(&text, &dockerfile)?;
        let platform = options.platform.clone().unwrap_or_else(Platform::host);
        let (source_date_epoch, build_args) = options.epoch()?;
        let plan = Plan::new(&parsed, build_args, crate::plan::platform_args(&platform, &Platform::host()))?;
        let target = plan.target(options.target.as_deref())?;
        let needed = plan.needed(target)?;
        let waves = plan.waves(&needed)?;
        let ignore = Ignore::load(&options.context, &dockerfile)?;
        let context = Tree::new(&options.context, ignore, "build context").map_err(|e| match e {
            ContextError::Io { path, source } => BuildError::Io { path, source },
            other => BuildError::Io { path: options.context.clone(), source: io::Error::other(other.to_string()) },
        })?;
        for reference in &options.cache_from {
            let n = handle.block_on(self.cache.import(&self.client, reference))?;
            progress.note(&format!("importing cache from {reference}: {n} entries"));
        }
        let exec = Exec {
            builder: self,
            options,
            plan: &plan,
            context,
            stat: StatCache::load(&self.cache.stat_cache_path()),
            progress,
            handle,
            epoch: source_date_epoch.unwrap_or(0),
            source_date_epoch,
            platform,
            results: Mutex::new(HashMap::new()),
            rootfs: Mutex::new(HashMap::new()),
            summaries: Mutex::new(HashMap::new()),
            temps: Mutex::new(Vec::new()),
            used_args: Mutex::new(BTreeSet::new()),
            steps: AtomicUsize::new(0),
            cached: AtomicUsize::new(0),
            multi: needed.len() > 1,
        };
        let result = exec.run_waves(&waves, target);
        exec.cleanup();
        let image = result?;
        if let Err(e) = exec.stat.save() {
            tracing::warn!(error = %shared::error_chain(&e), "cannot save the stat cache");
        }
        let used = exec.used_args.lock().map(|u| u.clone()).unwrap_or_default();
        let unused: Vec<&String> = options
            .build_args
            .keys()
            .filter(|k| !used.contains(*k) && !PROXY_ARGS.contains(&k.as_str()) && *k != SOURCE_DATE_EPOCH)
            .collect();
        if !unused.is_empty() {
            let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            progress.note(&format!("warning: one or more build args were not consumed: {}", names.join(", ")));
        }
        let built = self.finish(image, &exec)?;
        Ok(built)
    }

    /// Writes the config and manifest into the cache's blobs.
    fn finish(&self, mut image: Image, exec: &Exec<'_>) -> Result<Built, BuildError> {
        image.config.rootfs.diff_ids = image.layers.iter().map(|l| l.layer.diff_id.clone()).collect();
        image.config.created = Some(rfc3339(exec.epoch));
        let config = image
            .config
            .to_bytes()
            .map_err(|e| BuildError::Io { path: self.cache.root().to_path_buf(), source: io::Error::other(e) })?;
        let layout = self.cache.layout();
        let config_digest = layout.add_blob(&config).map_err(CacheError::from)?;
        let layers: Vec<serde_json::Value> = image
            .layers
            .iter()
            .map(|l| {
                serde_json::json!({
                    "mediaType": oci_layer_type(&l.layer.media_type),
                    "digest": l.layer.digest,
                    "size": l.layer.size,
                })
            })
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": layers,
        }))
        .map_err(|e| BuildError::Io { path: self.cache.root().to_path_buf(), source: io::Error::other(e) })?;
        let manifest_digest = layout.add_blob(&manifest).map_err(CacheError::from)?;
        Ok(Built {
            config,
            config_digest,
            manifest,
            manifest_digest,
            layers: image.layers,
            base: image.base,
            steps: exec.steps.load(Ordering::Relaxed),
            cached: exec.cached.load(Ordering::Relaxed),
            files_read: exec.stat.hashed.load(Ordering::Relaxed),
        })
    }
}

/// The OCI media type for a layer blob's media type (Docker's gzip type becomes OCI's).
pub fn oci_layer_type(media: &str) -> &str {
    match media {
        media_type::DOCKER_LAYER_GZIP => media_type::OCI_LAYER_GZIP,
        other => other,
    }
}

/// One build in progress.
struct Exec<'a> {
    builder: &'a Builder,
    options: &'a Options,
    plan: &'a Plan,
    context: Tree,
    stat: StatCache,
    progress: &'a Progress,
    handle: &'a Handle,
    /// Timestamps are clamped to this: `source_date_epoch`, or 0.
    epoch: i64,
    /// `SOURCE_DATE_EPOCH` as given (option or build argument), for the cache keys.
    source_date_epoch: Option<i64>,
    platform: Platform,
    results: Mutex<HashMap<usize, Image>>,
    rootfs: Mutex<HashMap<Digest, PathBuf>>,
    /// Summaries of base layers being read in the background (see [`Exec::summarise_base`]).
    summaries: Mutex<HashMap<Digest, std::thread::JoinHandle<Result<LayerIndex, fsindex::IndexError>>>>,
    temps: Mutex<Vec<PathBuf>>,
    used_args: Mutex<BTreeSet<String>>,
    steps: AtomicUsize,
    cached: AtomicUsize,
    multi: bool,
}

/// A stage's state between steps.
struct StageState {
    image: Image,
    vars: StageVars,
    index: FsIndex,
    workspace: Option<Workspace>,
    cmd_from_base: bool,
    label: String,
    number: usize,
    count: usize,
}

impl StageState {
    fn lookup(&self, name: &str) -> Option<String> {
        self.vars.get(name).map(str::to_string)
    }
}

impl Exec<'_> {
    fn cache(&self) -> &Cache {
        &self.builder.cache
    }

    fn temp_dir(&self, prefix: &str) -> Result<PathBuf, StepError> {
        let dir = self.cache().temp(prefix);
        fs::create_dir_all(&dir).map_err(step_io(&dir))?;
        if let Ok(mut t) = self.temps.lock() {
            t.push(dir.clone());
        }
        Ok(dir)
    }

    fn cleanup(&self) {
        let temps = self.temps.lock().map(|t| t.clone()).unwrap_or_default();
        for t in temps.iter().filter(|t| t.exists()) {
            if let Err(e) = unpack::remove_tree(t) {
                tracing::warn!(path = %t.display(), error = %shared::error_chain(&e), "cannot remove a build directory");
            }
        }
    }

    fn run_waves(&self, waves: &[Vec<usize>], target: usize) -> Result<Image, BuildError> {
        for wave in waves {
            let results: Vec<Result<(), BuildError>> = std::thread::scope(|s| {
                let handles: Vec<_> = wave.iter().map(|&i| s.spawn(move || self.build_stage(i))).collect();
                handles.into_iter().map(|h| h.join().unwrap_or(Err(BuildError::Thread))).collect()
            });
            for r in results {
                r?;
            }
        }
        self.results.lock().ok().and_then(|r| r.get(&target).cloned()).ok_or(BuildError::Thread)
    }

    fn fail(&self, step: &Step, e: StepError) -> BuildError {
        BuildError::Step {
            file: self.plan.file.clone(),
            pos: step.pos,
            keyword: step.keyword.clone(),
            source: Box::new(e),
        }
    }

    fn title(&self, st: &StageState, step: &Step) -> String {
        let text: String = step.text.chars().take(100).collect();
        let text = text.replace('\n', " ");
        if self.multi {
            format!("[{} {}/{}] {} {}", st.label, st.number, st.count, step.keyword, text)
        } else {
            format!("[{}/{}] {} {}", st.number, st.count, step.keyword, text)
        }
    }

    fn build_stage(&self, index: usize) -> Result<(), BuildError> {
        let stage = &self.plan.stages[index];
        let from = &stage.from;
        let count = stage.steps.len() + 1;
        let mut st = StageState {
            image: Image {
                config: ImageConfig::default(),
                layers: Vec::new(),
                layer_key: key_of(&[b"scratch"]),
                base: None,
                vars: None,
            },
            vars: StageVars::default(),
            index: FsIndex::default(),
            workspace: None,
            cmd_from_base: false,
            label: stage.label(),
            number: 1,
            count,
        };
        let title = self.title(&st, from);
        let id = self.progress.start(&title);
        let base = self.plan.base(index)?;
        let start = self.base_image(&base, from).map_err(|e| {
            self.progress.finish(id, Outcome::Error, None);
            self.fail(from, e)
        })?;
        let (image, pulled) = start;
        st.image = image;
        self.summarise_base(&st.image, &stage.steps);
        st.vars = StageVars::start(st.image.vars.take(), &mut st.image.config);
        st.cmd_from_base = st.image.config.config.cmd.is_some();
        self.steps.fetch_add(1, Ordering::Relaxed);
        self.progress.finish(id, if pulled { Outcome::Done } else { Outcome::Cached }, None);
        if !pulled {
            self.cached.fetch_add(1, Ordering::Relaxed);
        }

        // The base image's ONBUILD triggers run first, and are not inherited.
        let triggers = st.image.config.config.on_build.take().unwrap_or_default();
        for trigger in triggers {
            let parsed = instructions::parse_file(&format!("FROM scratch\n{trigger}\n"), &self.plan.file)?;
            if let Some(step) = parsed.steps.get(1) {
                let step = Step { pos: from.pos, ..step.clone() };
                self.step(&mut st, &step)?;
            }
        }
        for (n, step) in stage.steps.iter().enumerate() {
            st.number = n + 2;
            self.step(&mut st, step)?;
        }
        st.image.vars = Some(st.vars);
        if let Ok(mut r) = self.results.lock() {
            r.insert(index, st.image);
        }
        Ok(())
    }

    fn expand(&self, st: &StageState, word: &str) -> Result<String, StepError> {
        Ok(expand::expand(word, self.plan.escape, &|n| st.lookup(n))?)
    }

    fn history(&self, st: &mut StageState, created_by: String, empty: bool) {
        st.image.config.history.push(History {
            created: Some(rfc3339(self.epoch)),
            created_by: Some(created_by),
            comment: Some("buildkit.dockerfile.v0".into()),
            empty_layer: empty,
            extra: BTreeMap::new(),
        });
    }

    fn step(&self, st: &mut StageState, step: &Step) -> Result<(), BuildError> {
        if self.options.cancel.is_cancelled() {
            return Err(self.fail(step, StepError::Run(RunError::Cancelled)));
        }
        let title = self.title(st, step);
        let id = self.progress.start(&title);
        self.steps.fetch_add(1, Ordering::Relaxed);
        let result = self.dispatch(st, step, id);
        match result {
            Ok((outcome, size)) => {
                if outcome == Outcome::Cached {
                    self.cached.fetch_add(1, Ordering::Relaxed);
                }
                self.progress.finish(id, outcome, size);
                Ok(())
            }
            Err(e) => {
                self.progress.finish(id, Outcome::Error, None);
                Err(self.fail(step, e))
            }
        }
    }

    /// Runs one step; returns how it ended and the size of its layer.
    fn dispatch(&self, st: &mut StageState, step: &Step, id: usize) -> Result<(Outcome, Option<u64>), StepError> {
        let text = format!("{} {}", step.keyword, step.text);
        let meta = |st: &mut StageState, created_by: String| {
            self.history(st, created_by, true);
            Ok((Outcome::Done, None))
        };
        match &step.instruction {
            Instruction::From(_) => Ok((Outcome::Done, None)),
            Instruction::Arg(args) => {
                // BuildKit's order: the build argument, else the default (expanded with the
                // variables before it), else the global value.
                let mut shown = Vec::new();
                for (name, default) in args {
                    let value = match (self.plan.build_args.get(name), default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(d)) => Some(self.expand(st, d)?),
                        (None, None) => self.plan.global(name),
                    };
                    if let Ok(mut u) = self.used_args.lock() {
                        u.insert(name.clone());
                    }
                    shown.push(value.as_ref().map_or_else(|| name.clone(), |v| format!("{name}={v}")));
                    st.vars.declare(name, value);
                }
                meta(st, format!("ARG {}", shown.join(" ")))
            }
            Instruction::Env(pairs) => {
                // Every word sees the variables from before the instruction: `ENV A=2 B=$A`
                // gives B the old A.
                let pairs: Vec<(String, String)> = pairs
                    .iter()
                    .map(|(k, v)| Ok((self.expand(st, k)?, self.expand(st, v)?)))
                    .collect::<Result<_, StepError>>()?;
                let mut shown = Vec::new();
                for (k, v) in pairs {
                    st.image.config.set_env(&k, &v);
                    st.vars.set(&k, &v);
                    shown.push(format!("{k}={v}"));
                }
                meta(st, format!("ENV {}", shown.join(" ")))
            }
            Instruction::Label(pairs) => {
                let mut shown = Vec::new();
                for (k, v) in pairs {
                    let (k, v) = (self.expand(st, k)?, self.expand(st, v)?);
                    shown.push(format!("{k}={v}"));
                    st.image.config.config.labels.get_or_insert_with(BTreeMap::new).insert(k, v);
                }
                meta(st, format!("LABEL {}", shown.join(" ")))
            }
            Instruction::Maintainer(m) => {
                st.image.config.author = Some(m.clone());
                meta(st, text)
            }
            Instruction::Expose(ports) => {
                let mut shown = Vec::new();
                for p in ports {
                    let p = self.expand(st, p)?;
                    for port in expose_ports(&p).map_err(StepError::Invalid)? {
                        shown.push(port.clone());
                        st.image.config.config.exposed_ports.get_or_insert_with(BTreeMap::new).insert(port, Empty {});
                    }
                }
                meta(
                    st,
                    format!("EXPOSE map[{}]", shown.iter().map(|p| format!("{p}:{{}}")).collect::<Vec<_>>().join(" ")),
                )
            }
            Instruction::User(u) => {
                let u = self.expand(st, u)?;
                st.image.config.config.user = Some(u.clone());
                meta(st, format!("USER {u}"))
            }
            Instruction::StopSignal(s) => {
                let s = self.expand(st, s)?;
                st.image.config.config.stop_signal = Some(s.clone());
                meta(st, format!("STOPSIGNAL {s}"))
            }
            Instruction::Volume(vols) => {
                let mut shown = Vec::new();
                for v in vols {
                    let v = self.expand(st, v)?;
                    if v.trim().is_empty() {
                        return Err(StepError::Invalid("VOLUME specified with an empty path".into()));
                    }
                    shown.push(v.clone());
                    st.image.config.config.volumes.get_or_insert_with(BTreeMap::new).insert(v, Empty {});
                }
                meta(st, format!("VOLUME {}", serde_json::to_string(&shown).unwrap_or_default()))
            }
            Instruction::Shell(shell) => {
                st.image.config.config.shell = Some(shell.clone());
                meta(st, format!("SHELL {}", serde_json::to_string(shell).unwrap_or_default()))
            }
            Instruction::Cmd(c) => {
                let args = self.command_args(st, c);
                st.image.config.config.cmd = Some(args.clone());
                st.cmd_from_base = false;
                meta(st, format!("CMD {}", serde_json::to_string(&args).unwrap_or_default()))
            }
            Instruction::Entrypoint(c) => {
                let args = self.command_args(st, c);
                st.image.config.config.entrypoint = Some(args.clone());
                if st.cmd_from_base {
                    st.image.config.config.cmd = None;
                }
                meta(st, format!("ENTRYPOINT {}", serde_json::to_string(&args).unwrap_or_default()))
            }
            Instruction::Healthcheck(h) => {
                let test = match &h.test {
                    None => vec!["NONE".to_string()],
                    Some(Command::Exec(args)) => {
                        std::iter::once("CMD".to_string()).chain(args.iter().cloned()).collect()
                    }
                    Some(Command::Shell(s)) => vec!["CMD-SHELL".into(), s.clone()],
                };
                let health = Health {
                    test,
                    interval: h.interval.unwrap_or(0),
                    timeout: h.timeout.unwrap_or(0),
                    start_period: h.start_period.unwrap_or(0),
                    start_interval: h.start_interval.unwrap_or(0),
                    retries: h.retries.unwrap_or(0),
                };
                st.image.config.config.healthcheck = Some(health);
                meta(st, text)
            }
            Instruction::Onbuild(trigger) => {
                st.image.config.config.on_build.get_or_insert_with(Vec::new).push(trigger.clone());
                meta(st, text)
            }
            Instruction::Workdir(w) => self.workdir(st, w),
            Instruction::Copy(c) => self.copy(st, c, &text),
            Instruction::Run(r) => self.run(st, r, id),
        }
    }

    fn command_args(&self, st: &StageState, c: &Command) -> Vec<String> {
        match c {
            Command::Exec(args) => args.clone(),
            Command::Shell(s) => {
                let mut shell =
                    st.image.config.config.shell.clone().unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
                shell.push(s.clone());
                shell
            }
        }
    }

    /// The cache entry's key for step key `key`: the layer blob depends on the compression
    /// too (the step key, which the next step builds on, does not).
    /// `SOURCE_DATE_EPOCH` is part of it as given (unset is not 0): a layer's timestamps
    /// follow it, so a build never reuses a layer made with another value, or without one.
    fn entry_key(&self, key: &Digest) -> Digest {
        let how = format!("{}:{}", self.options.compression.name(), self.options.compression_level);
        let epoch = match self.source_date_epoch {
            Some(e) => format!("epoch:{e}"),
            None => "epoch:unset".to_string(),
        };
        key_of(&[key.to_string().as_bytes(), how.as_bytes(), epoch.as_bytes()])
    }

    /// Looks the key up (unless --no-cache); a hit adds its layer.
    fn lookup(&self, st: &mut StageState, key: &Digest, created_by: &str) -> Result<Option<Option<u64>>, StepError> {
        if self.options.no_cache {
            return Ok(None);
        }
        let Some(entry) = self.handle.block_on(self.cache().get(&self.builder.client, &self.entry_key(key)))? else {
            return Ok(None);
        };
        let size = entry.layer.as_ref().map(|l| l.size);
        self.add_layer(st, key, entry.layer, created_by);
        Ok(Some(size))
    }

    fn add_layer(&self, st: &mut StageState, key: &Digest, layer: Option<LayerRef>, created_by: &str) {
        st.image.layer_key = key.clone();
        let empty = layer.is_none();
        if let Some(layer) = layer {
            let blob = self.cache().layout().blob_path(&layer.digest);
            st.image.layers.push(Layer { layer, blob });
        }
        self.history(st, created_by.to_string(), empty);
    }

    /// Writes `entries` as a layer into the cache, records `key`, and adds the layer.
    fn commit(
        &self,
        st: &mut StageState,
        key: &Digest,
        mut entries: Vec<Entry>,
        created_by: &str,
    ) -> Result<Option<u64>, StepError> {
        if entries.is_empty() {
            self.cache().put(&self.entry_key(key), &CacheEntry { layer: None, created_by: created_by.to_string() })?;
            self.add_layer(st, key, None, created_by);
            return Ok(None);
        }
        let options = WriteOptions {
            clamp_mtime: if self.options.keep_timestamps { None } else { Some(self.epoch) },
            compression: self.options.compression,
            level: self.options.compression_level,
            threads: 0,
        };
        let temp = self.cache().temp("layer");
        let file = File::create(&temp).map_err(step_io(&temp))?;
        let written = match tarball::write(&mut entries, &options, BufWriter::with_capacity(1 << 20, file)) {
            Ok((written, out)) => {
                let file = out.into_inner().map_err(|e| step_io(&temp)(e.into_error()))?;
                file.sync_all().map_err(step_io(&temp))?;
                written
            }
            Err(e) => {
                let _ = fs::remove_file(&temp);
                return Err(e.into());
            }
        };
        self.cache().commit_blob(&temp, &written.digest)?;
        let layer = LayerRef {
            digest: written.digest,
            size: written.size,
            diff_id: written.diff_id,
            media_type: self.options.compression.media_type().to_string(),
        };
        self.cache().put(
            &self.entry_key(key),
            &CacheEntry { layer: Some(layer.clone()), created_by: created_by.to_string() },
        )?;
        // The layer's summary, from the entries as written (no reading the blob back): kept
        // for later builds, and applied now to an index that was current (one that lags, as
        // after RUN and `--link` steps, reads the summaries when next needed).
        let summary = LayerIndex::of_entries(&entries).map_err(step_io(&temp))?;
        self.save_layer_index(&self.cache().layer_index_path(&layer.digest), &summary);
        let current = st.index.applied == st.image.layers.len();
        let size = layer.size;
        self.add_layer(st, key, Some(layer), created_by);
        if current {
            st.index.apply_layer(summary);
            st.index.applied = st.image.layers.len();
        }
        Ok(Some(size))
    }

    /// Starts reading the summaries of `base`'s layers that the cache has not got, each on a
    /// thread of its own, when a step of the stage will need the path index (COPY, ADD,
    /// WORKDIR): the base's layers are then decompressed while the steps before run (a RUN
    /// of `apt-get` takes seconds) rather than when the index is first needed.
    fn summarise_base(&self, base: &Image, steps: &[Step]) {
        let needed = steps.iter().any(|s| matches!(s.instruction, Instruction::Copy(_) | Instruction::Workdir(_)));
        if !needed {
            return;
        }
        let Ok(mut summaries) = self.summaries.lock() else { return };
        for layer in &base.layers {
            let path = self.cache().layer_index_path(&layer.layer.digest);
            if summaries.contains_key(&layer.layer.digest) || path.exists() {
                continue;
            }
            let blob = layer.blob.clone();
            let reading = std::thread::spawn(move || {
                let summary = LayerIndex::read(&blob)?;
                if let Err(e) = summary.save(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot keep a layer's index");
                }
                Ok(summary)
            });
            summaries.insert(layer.layer.digest.clone(), reading);
        }
    }

    /// Brings the stage's path index up to date with its layers, from their summaries in
    /// the cache (or being read: [`Self::summarise_base`]), or from the blobs (summarised for
    /// the next time).
    fn index(&self, st: &mut StageState) -> Result<(), StepError> {
        while st.index.applied < st.image.layers.len() {
            let layer = &st.image.layers[st.index.applied];
            let path = self.cache().layer_index_path(&layer.layer.digest);
            let reading = self.summaries.lock().ok().and_then(|mut s| s.remove(&layer.layer.digest));
            let read = reading.and_then(|r| r.join().ok()).and_then(Result::ok);
            let summary = match read.or_else(|| LayerIndex::load(&path)) {
                Some(summary) => summary,
                None => {
                    let summary = LayerIndex::read(&layer.blob)?;
                    self.save_layer_index(&path, &summary);
                    summary
                }
            };
            st.index.apply_layer(summary);
            st.index.applied += 1;
        }
        Ok(())
    }

    /// Keeps a layer's summary; one that cannot be written is only a slower next build.
    fn save_layer_index(&self, path: &Path, summary: &LayerIndex) {
        if let Err(e) = summary.save(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep a layer's index");
        }
    }

    fn workdir(&self, st: &mut StageState, w: &str) -> Result<(Outcome, Option<u64>), StepError> {
        let w = self.expand(st, w)?;
        let current = st.image.config.config.working_dir.clone().unwrap_or_else(|| "/".into());
        let dir = absolute(&current, &w);
        st.image.config.config.working_dir = Some(dir.clone());
        let created_by = format!("WORKDIR {dir}");
        // The directories it makes belong to the current USER (BuildKit's mkdir WithUser).
        let user = st.image.config.config.user.clone().unwrap_or_default();
        // Looked up before the image's paths are: a hit needs no index.
        let key = key_of(&[st.image.layer_key.to_string().as_bytes(), b"WORKDIR", dir.as_bytes(), user.as_bytes()]);
        if let Some(size) = self.lookup(st, &key, &created_by)? {
            return Ok((Outcome::Cached, size));
        }
        self.index(st)?;
        let (uid, gid) = match user.as_str() {
            "" => (0, 0),
            u => resolve_chown(u, Some(&st.index)).map_err(|e| match e {
                StepError::Invalid(m) => {
                    StepError::Invalid(format!("WORKDIR {dir} as USER {u}: {}", m.trim_start_matches("--chown: ")))
                }
                other => other,
            })?,
        };
        // An existing directory makes no layer (the entry records that). Links of the image
        // on the way are followed inside it (a link to a missing directory makes that
        // directory, as BuildKit's does), and stay links.
        let resolved = st.index.resolve(&dir, true).ok_or_else(|| {
            StepError::Invalid(format!("WORKDIR {dir}: too many levels of symbolic links in the image"))
        })?;
        let entries = self.missing_dirs(&st.index, &[resolved], uid, gid);
        let size = self.commit(st, &key, entries, &created_by)?;
        Ok((Outcome::Done, size))
    }
}

fn escapes(path: &str) -> bool {
    let mut depth: i64 = 0;
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

/// True when the command is nothing but heredoc markers (`<<EOF`).
fn only_heredoc_markers(cmd: &str) -> bool {
    cmd.split_whitespace().all(|w| w.starts_with("<<"))
}

fn apply_layer(dir: &Path, layer: &Layer) -> Result<(), StepError> {
    let file = File::open(&layer.blob).map_err(step_io(&layer.blob))?;
    unpack::unpack(BufReader::new(file), dir, UnpackMode::Flatten, Some(&layer.layer.diff_id))
        .map_err(|source| StepError::Unpack { digest: layer.layer.digest.clone(), source })?;
    Ok(())
}

/// `target` made absolute against `base` and cleaned (`/` for the root).
pub fn absolute(base: &str, target: &str) -> String {
    let joined = if target.starts_with('/') { target.to_string() } else { format!("{base}/{target}") };
    let clean = fsindex::normalise(&crate::ignore::clean(&joined));
    format!("/{clean}")
}

/// `--chown` to numeric ids: numbers, or names from the image's `/etc/passwd` and
/// `/etc/group`. Without a group, a user given by name takes its primary group from
/// `/etc/passwd`, and one given by number uses the uid as gid (BuildKit's rules). Without an
/// image to read (`COPY --link`), only numbers and `root` (BuildKit's rule).
fn resolve_chown(spec: &str, index: Option<&FsIndex>) -> Result<(u64, u64), StepError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    // The id, and for a user found in /etc/passwd its primary group.
    let lookup = |name: &str, file: Option<&str>, what: &str| -> Result<(u64, Option<u64>), StepError> {
        if let Ok(n) = name.parse::<u64>() {
            return Ok((n, None));
        }
        if index.is_none() {
            return match name {
                "root" => Ok((0, Some(0))),
                _ => Err(StepError::Invalid(format!(
                    "--chown {what} {name:?} with --link: a --link layer cannot read the image's users and groups; use numeric ids"
                ))),
            };
        }
        let text = file.unwrap_or("");
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                let id = (f.len() >= 3 && f[0] == name).then(|| f[2].parse::<u64>().ok()).flatten()?;
                Some((id, f.get(3).and_then(|g| g.parse::<u64>().ok())))
            })
            .next()
            .ok_or_else(|| StepError::Invalid(format!("--chown: unable to find {what} {name:?} in the image")))
    };
    let (uid, primary) = lookup(user, index.and_then(FsIndex::passwd), "user")?;
    let gid = match group {
        Some(g) => lookup(g, index.and_then(FsIndex::group), "group")?.0,
        None => primary.unwrap_or(uid),
    };
    Ok((uid, gid))
}

/// `EXPOSE` values: `80` → `80/tcp`, `53/udp`, and ranges `8000-8002/tcp`.
fn expose_ports(text: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match text.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (text, "tcp".to_string()),
    };
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(format!("invalid protocol in EXPOSE {text:?}"));
    }
    let parse = |p: &str| p.parse::<u16>().map_err(|_| format!("invalid port in EXPOSE {text:?}"));
    match ports.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b)?);
            if a > b {
                return Err(format!("invalid port range in EXPOSE {text:?}"));
            }
            Ok((a..=b).map(|p| format!("{p}/{proto}")).collect())
        }
        None => Ok(vec![format!("{}/{proto}", parse(ports)?)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_ports() {
        assert_eq!(absolute("/app", "src"), "/app/src");
        assert_eq!(absolute("/app", "/x/../y/"), "/y");
        assert_eq!(absolute("/", "."), "/");
        assert_eq!(expose_ports("80").unwrap(), ["80/tcp"]);
        assert_eq!(expose_ports("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(expose_ports("8000-8002").unwrap(), ["8000/tcp", "8001/tcp", "8002/tcp"]);
        assert!(expose_ports("x").is_err());
        assert!(only_heredoc_markers("<<EOF"));
        assert!(!only_heredoc_markers("python3 <<EOF"));
        assert!(escapes("../x") && !escapes("a/../b"));
    }

    #[test]
    fn chown_by_number_and_name() {
        let mut ix = FsIndex::default();
        let mut b = tar::Builder::new(Vec::new());
        for (path, body) in [("etc/passwd", "app:x:1000:1001::/home/app:/bin/sh\n"), ("etc/group", "staff:x:50:\n")] {
            let mut h = tar::Header::new_ustar();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_path(path).unwrap();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, body.as_bytes()).unwrap();
        }
        ix.apply_tar(b.into_inner().unwrap().as_slice()).unwrap();
        assert_eq!(resolve_chown("1:2", Some(&ix)).unwrap(), (1, 2));
        assert_eq!(resolve_chown("7", Some(&ix)).unwrap(), (7, 7));
        assert_eq!(resolve_chown("app:staff", Some(&ix)).unwrap(), (1000, 50));
        // A name alone takes the user's primary group from /etc/passwd; a number, itself.
        assert_eq!(resolve_chown("app", Some(&ix)).unwrap(), (1000, 1001));
        assert_eq!(resolve_chown("1000", Some(&ix)).unwrap(), (1000, 1000));
        assert!(resolve_chown("nobody", Some(&ix)).is_err());
        // --link reads no image: numbers and root only.
        assert_eq!(resolve_chown("1:2", None).unwrap(), (1, 2));
        assert_eq!(resolve_chown("root:root", None).unwrap(), (0, 0));
        let err = resolve_chown("app:staff", None).unwrap_err().to_string();
        assert!(err.contains("--link") && err.contains("numeric"), "{err}");
    }

    #[test]
    fn source_date_epoch_comes_from_the_option_or_the_build_argument() {
        let mut o = Options::new("/ctx");
        assert_eq!(o.epoch().unwrap(), (None, BTreeMap::new()));
        o.build_args.insert(SOURCE_DATE_EPOCH.into(), "1000".into());
        let (epoch, args) = o.epoch().unwrap();
        assert_eq!((epoch, args[SOURCE_DATE_EPOCH].as_str()), (Some(1000), "1000"));
        // The option wins, and RUN steps that declare the argument see its value.
        o.source_date_epoch = Some(2000);
        let (epoch, args) = o.epoch().unwrap();
        assert_eq!((epoch, args[SOURCE_DATE_EPOCH].as_str()), (Some(2000), "2000"));
        o.source_date_epoch = None;
        o.build_args.insert(SOURCE_DATE_EPOCH.into(), String::new());
        assert_eq!(o.epoch().unwrap().0, None, "an empty value is none");
        o.build_args.insert(SOURCE_DATE_EPOCH.into(), "yesterday".into());
        let err = o.epoch().unwrap_err().to_string();
        assert!(err.contains("SOURCE_DATE_EPOCH=\"yesterday\"") && err.contains("integer"), "{err}");
    }

    #[test]
    fn keys_separate_their_parts() {
        assert_ne!(key_of(&[b"ab", b"c"]), key_of(&[b"a", b"bc"]));
    }
}
