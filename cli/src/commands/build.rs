//! `berth build [-t REF]... [-f Dockerfile] [--build-arg K=V]... [--target STAGE] [--no-cache]
//! [--push] [--output type=oci|docker|registry[,dest=PATH]]... [--cache-from REF]...
//! [--cache-to REF]... [--platform P] [--progress auto|plain|tty|quiet] [--runtime PATH] CONTEXT`:
//! parses the flags and calls `builder::Builder::build`, then `builder::output` for each
//! destination; with `-t`, the image is also recorded in the local image store
//! (`runtime::Store::import`). RUN steps run through this binary's `berth oci-runtime` (the embedded
//! runtime) unless `--runtime` names another. SIGINT or SIGTERM cancels the build (its RUN
//! containers are killed and cleaned up; exit status 130 or 143); a second one exits at once.
//!
//! `berth build prune [--all] [--keep-storage SIZE] [--filter until=DURATION]`: removes
//! unused build cache (`builder::prune`) and prints what it freed.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use builder::progress::{Mode, Progress};
use builder::{output, Builder, Cancel, Compression, Options, RuntimeCommand};
use runtime::{LayerRecord, LocalImage};
use shared::client::Client;
use shared::manifest::Platform;
use shared::ImageRef;

/// Flags of `berth build`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    /// `berth build prune`.
    #[command(subcommand)]
    pub command: Option<Subcommand>,
    /// Name the image (repeatable): [HOST[:PORT]/]NAME[:TAG].
    #[arg(short = 't', long = "tag", value_name = "REF")]
    pub tags: Vec<String>,
    /// The Dockerfile [default: CONTEXT/Dockerfile].
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// A build argument, KEY=VALUE, or KEY to take the value from the environment.
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,
    /// Build this stage (and what it needs) instead of the last one.
    #[arg(long)]
    pub target: Option<String>,
    /// Run every step instead of reusing cached layers.
    #[arg(long)]
    pub no_cache: bool,
    /// Push the image to the registry of each -t name.
    #[arg(long)]
    pub push: bool,
    /// Where the image goes: type=oci,dest=PATH (a layout directory, or a tar for *.tar),
    /// type=docker,dest=PATH (a tar for `docker load`), type=registry (push).
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// Import build cache from a registry reference (repeatable).
    #[arg(long, value_name = "REF")]
    pub cache_from: Vec<String>,
    /// Export the cache this build used to a registry reference.
    #[arg(long, value_name = "REF")]
    pub cache_to: Vec<String>,
    /// The platform to build for [default: the host's].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
    /// auto (a spinner on a terminal, plain otherwise), plain, tty or quiet.
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// Keep files' modification times instead of clamping them to SOURCE_DATE_EPOCH (or 0).
    #[arg(long)]
    pub keep_timestamps: bool,
    /// Layer compression: gzip or zstd.
    #[arg(long, default_value = "gzip")]
    pub compression: Compression,
    /// The gzip level, 0 (no compression) to 9 [default: 3].
    #[arg(long, value_name = "0-9", value_parser = clap::value_parser!(u32).range(0..=9))]
    pub compression_level: Option<u32>,
    /// Timestamps in the image are clamped to this many seconds since 1970 [default: 0].
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    pub source_date_epoch: Option<i64>,
    /// Run RUN steps with this OCI runtime binary (runc, crun, a path) instead of the
    /// embedded runtime.
    #[arg(long = "runtime", value_name = "PATH")]
    pub oci_runtime: Option<PathBuf>,
    /// Grant an entitlement, as BuildKit's: network.host lets `RUN --network=host` use the
    /// host's network (RUN steps otherwise run on the default bridge network).
    #[arg(long = "allow", value_name = "ENTITLEMENT", value_parser = ["network.host"])]
    pub allow: Vec<String>,
    /// A secret for RUN --mount=type=secret: id=ID,src=PATH.
    #[arg(long, value_name = "id=ID,src=PATH")]
    pub secret: Vec<String>,
    /// Allow plain HTTP for registries (loopback registries always are).
    #[arg(long)]
    pub plain_http: bool,
    /// Write the image's manifest digest to this file.
    #[arg(long, value_name = "PATH")]
    pub iidfile: Option<PathBuf>,
    /// The build context directory.
    #[arg(required = true)]
    pub context: Option<PathBuf>,
}

/// What `berth build` does besides building.
#[derive(clap::Subcommand, Debug)]
pub enum Subcommand {
    /// Remove unused build cache (as `docker builder prune`); waits for running builds.
    Prune(PruneArgs),
}

/// Flags of `berth build prune`.
#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Also remove the cache of images built with -t, their names in the cache, RUN cache
    /// mounts and the stat cache.
    #[arg(short, long)]
    pub all: bool,
    /// Keep this much cache, removing the least recently used first (bytes, or 512MB, 10GB…).
    #[arg(long, value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// Only what was last used longer ago than DURATION: until=24h, until=1h30m.
    #[arg(long, value_name = "until=DURATION")]
    pub filter: Vec<String>,
    /// Accepted for `docker builder prune -f`: berth never asks.
    #[arg(short, long)]
    pub force: bool,
    /// Print only the total freed, in bytes.
    #[arg(short, long)]
    pub quiet: bool,
}

/// A parsed `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Output {
    Oci(PathBuf),
    Docker(PathBuf),
    Registry,
}

fn parse_output(spec: &str) -> Result<Output> {
    let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
    for field in spec.split(',') {
        let (k, v) = field.split_once('=').with_context(|| format!("--output {spec:?}: expected key=value fields"))?;
        fields.insert(k.trim(), v.trim());
    }
    let dest = || -> Result<PathBuf> {
        fields.get("dest").map(PathBuf::from).with_context(|| format!("--output {spec:?}: dest=PATH is required"))
    };
    match fields.get("type").copied() {
        Some("oci") => Ok(Output::Oci(dest()?)),
        Some("docker") => Ok(Output::Docker(dest()?)),
        Some("registry") | Some("image") if fields.get("push").is_none_or(|p| *p == "true") => Ok(Output::Registry),
        Some(other) => bail!("--output {spec:?}: unknown type {other:?} (use oci, docker or registry)"),
        None => bail!("--output {spec:?}: type= is required"),
    }
}

fn parse_refs(refs: &[String], what: &str) -> Result<Vec<ImageRef>> {
    refs.iter().map(|r| r.parse::<ImageRef>().with_context(|| format!("invalid {what} {r:?}"))).collect()
}

/// Runs `berth build` with the store at `root`; returns the exit status.
pub fn main(root: &Path, args: Args) -> ExitCode {
    if let Some(Subcommand::Prune(prune_args)) = &args.command {
        return match prune(root, prune_args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("berth: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let cancelled = Arc::new(AtomicU8::new(0));
    match run(root, args, &cancelled) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) if cancelled.load(Ordering::SeqCst) != 0 => {
            eprintln!("berth: build cancelled");
            ExitCode::from(cancelled.load(Ordering::SeqCst))
        }
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Cancels `cancel` on the first SIGINT or SIGTERM, noting 128 + the signal in `code`;
/// exits at once on the second.
fn cancel_on_signals(tokio: &tokio::runtime::Runtime, cancel: Cancel, code: Arc<AtomicU8>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let _entered = tokio.enter();
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
    tokio.spawn(async move {
        loop {
            let signal = tokio::select! {
                _ = interrupt.recv() => 130,
                _ = terminate.recv() => 143,
            };
            if cancel.is_cancelled() {
                std::process::exit(i32::from(signal));
            }
            code.store(signal, Ordering::SeqCst);
            cancel.cancel();
        }
    });
    Ok(())
}

/// `berth build prune`: one line per removed entry (and other removed thing), then the total.
fn prune(root: &Path, args: &PruneArgs) -> Result<()> {
    let mut until = None;
    for f in &args.filter {
        until = Some(builder::prune::parse_filter(f)?);
    }
    let options = builder::prune::PruneOptions {
        all: args.all,
        keep_storage: args.keep_storage.as_deref().map(builder::prune::parse_size).transpose()?,
        until,
    };
    let cache = root.join("build");
    let pruned = builder::prune::prune(&cache, &options)
        .with_context(|| format!("cannot prune the build cache in {}", cache.display()))?;
    if args.quiet {
        println!("{}", pruned.freed);
        return Ok(());
    }
    for r in &pruned.removed {
        let what = match &r.created_by {
            // `entry <64 hex>`: the first 12, as Docker shows IDs.
            Some(step) => format!("{:<18} {step}", r.what.get(..18).unwrap_or(&r.what)),
            None => r.what.clone(),
        };
        println!("deleted {:>10}  {what}", human(r.size));
    }
    println!("Total reclaimed space: {} ({} kept)", human(pruned.freed), human(pruned.remaining));
    Ok(())
}

/// Bytes as `docker builder prune` prints them (4 significant digits): `1.5kB`, `12.35MB`.
fn human(bytes: u64) -> String {
    runtime::progress::human_size_digits(bytes, 4)
}

fn run(root: &Path, args: Args, cancelled: &Arc<AtomicU8>) -> Result<()> {
    let Some(context) = args.context.clone() else { bail!("berth build needs a context directory") };
    let tags = parse_refs(&args.tags, "tag")?;
    let outputs: Vec<Output> = args.outputs.iter().map(|o| parse_output(o)).collect::<Result<_>>()?;
    let push = args.push || outputs.contains(&Output::Registry);
    if push && tags.is_empty() {
        bail!("--push needs at least one -t name to push to");
    }
    let cache_from = parse_refs(&args.cache_from, "--cache-from reference")?;
    let cache_to = parse_refs(&args.cache_to, "--cache-to reference")?;
    let mut build_args = BTreeMap::new();
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            None => build_args.insert(a.clone(), std::env::var(a).unwrap_or_default()),
        };
    }
    let mut secrets = BTreeMap::new();
    for s in &args.secret {
        let fields: BTreeMap<&str, &str> = s.split(',').filter_map(|f| f.split_once('=')).collect();
        let id = fields.get("id").with_context(|| format!("--secret {s:?}: id= is required"))?;
        let src =
            fields.get("src").or(fields.get("source")).with_context(|| format!("--secret {s:?}: src= is required"))?;
        secrets.insert(id.to_string(), PathBuf::from(src));
    }
    if !context.is_dir() {
        bail!("the build context {} is not a directory", context.display());
    }
    let mode = match args.progress.as_str() {
        "auto" if std::io::stderr().is_terminal() => Mode::Tty,
        "auto" | "plain" => Mode::Plain,
        "tty" => Mode::Tty,
        "quiet" => Mode::Quiet,
        other => bail!("--progress {other:?}: use auto, plain, tty or quiet"),
    };

    let store = super::open_store(root)?;
    let config = super::client_config(args.plain_http)?;
    let credentials = Arc::new(super::login::docker_config()?);
    let client = Arc::new(Client::new(config, credentials).context("cannot set up the registry client")?);
    let builder = Builder::new(store.clone(), Arc::clone(&client)).context("cannot open the build cache")?;
    let oci_runtime = match &args.oci_runtime {
        Some(path) => RuntimeCommand::external(path),
        // Run from the sealed copy (a build started by `berth compose`), the binary has no
        // path of its own: `/proc/self/exe` names it for the children.
        None if runtime::container::sealed::is_sealed() => RuntimeCommand::embedded(PathBuf::from("/proc/self/exe")),
        None => RuntimeCommand::embedded(std::env::current_exe().context("cannot find the berth binary")?),
    };
    let cancel = Cancel::default();
    let options = Options {
        dockerfile: args.file.clone(),
        build_args,
        target: args.target.clone(),
        no_cache: args.no_cache,
        platform: args.platform.clone(),
        source_date_epoch: args.source_date_epoch,
        keep_timestamps: args.keep_timestamps,
        compression: args.compression,
        compression_level: args.compression_level.unwrap_or(builder::tarball::DEFAULT_GZIP_LEVEL),
        oci_runtime,
        cancel: cancel.clone(),
        secrets,
        cache_from,
        network_root: Some(root.to_path_buf()),
        allow_host_network: args.allow.iter().any(|a| a == "network.host"),
        ..Options::new(&context)
    };
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    cancel_on_signals(&tokio, cancel.clone(), Arc::clone(cancelled))?;
    let progress = Progress::new(mode, Box::new(std::io::stderr()));
    let built = builder.build(&options, &progress, tokio.handle()).context("build failed")?;
    if cancel.is_cancelled() {
        bail!("cancelled");
    }

    for output in &outputs {
        match output {
            Output::Oci(dest) => {
                output::write_oci(&built, dest, &tags).with_context(|| format!("cannot write {}", dest.display()))?;
                progress.note(&format!("wrote OCI layout {}", dest.display()));
            }
            Output::Docker(dest) => {
                output::write_docker_archive(&built, dest, &tags)
                    .with_context(|| format!("cannot write {}", dest.display()))?;
                progress.note(&format!("wrote docker-archive {}", dest.display()));
            }
            Output::Registry => {}
        }
    }
    // Name the image in the build cache's layout too, so it can be found again.
    for tag in &tags {
        let layout = builder.cache().layout();
        layout
            .add_manifest(shared::media_type::OCI_MANIFEST, &built.manifest, Some(&tag.to_string()))
            .context("cannot record the image name")?;
    }
    // Record it in the local image store too, so `berth run NAME` runs it (as `docker build`).
    if !tags.is_empty() {
        let layers = built
            .layers
            .iter()
            .map(|l| {
                let record = LayerRecord {
                    digest: l.layer.digest.clone(),
                    media_type: builder::build::oci_layer_type(&l.layer.media_type).to_string(),
                    size: l.layer.size,
                    diff_id: l.layer.diff_id.clone(),
                };
                (record, l.blob.clone())
            })
            .collect();
        let image = LocalImage {
            manifest: &built.manifest,
            manifest_digest: &built.manifest_digest,
            media_type: shared::media_type::OCI_MANIFEST,
            config: &built.config,
            config_digest: &built.config_digest,
            layers,
        };
        store.import(&image, &tags).context("cannot record the image in the local store")?;
        for t in &tags {
            progress.note(&format!("naming to {}", t.familiar()));
        }
    }
    if push {
        tokio.block_on(output::push(&client, &built, &tags)).context("push failed")?;
        for t in &tags {
            progress.note(&format!("pushed {}@{}", t.familiar(), built.manifest_digest));
        }
    }
    for reference in &cache_to {
        let n = tokio
            .block_on(builder.cache().export(&client, reference))
            .with_context(|| format!("cannot export the cache to {}", reference.familiar()))?;
        progress.note(&format!("exported {n} cache entries to {}", reference.familiar()));
    }
    if let Some(path) = &args.iidfile {
        std::fs::write(path, built.manifest_digest.to_string())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    progress.note(&format!(
        "image {} ({} steps, {} cached, {} context files read, {:.1}s)",
        built.manifest_digest,
        built.steps,
        built.cached,
        built.files_read,
        progress.elapsed().as_secs_f64()
    ));
    if mode == Mode::Quiet {
        println!("{}", built.manifest_digest);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_sizes_as_docker() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(999), "999B");
        assert_eq!(human(1500), "1.5kB");
        assert_eq!(human(12_345_678), "12.35MB");
        assert_eq!(human(3_000_000_000), "3GB");
    }

    #[test]
    fn prune_is_a_subcommand_and_context_stays_required() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: Args,
        }
        let cli =
            Cli::try_parse_from(["build", "prune", "--all", "--keep-storage", "1GB", "--filter", "until=24h"]).unwrap();
        let Some(Subcommand::Prune(p)) = cli.args.command else { panic!("not prune") };
        assert!(p.all && p.keep_storage.as_deref() == Some("1GB") && p.filter == ["until=24h"]);
        let cli = Cli::try_parse_from(["build", "-t", "app", "."]).unwrap();
        assert!(cli.args.command.is_none() && cli.args.context == Some(".".into()));
        assert!(Cli::try_parse_from(["build", "-t", "app"]).is_err());
    }

    #[test]
    fn parses_outputs() {
        assert_eq!(parse_output("type=oci,dest=out").unwrap(), Output::Oci("out".into()));
        assert_eq!(parse_output("type=docker,dest=i.tar").unwrap(), Output::Docker("i.tar".into()));
        assert_eq!(parse_output("type=registry").unwrap(), Output::Registry);
        assert!(parse_output("type=oci").is_err());
        assert!(parse_output("type=local,dest=x").is_err());
        assert!(parse_output("dest=x").is_err());
    }
}
