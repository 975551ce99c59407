//! BuildKit fidelity (issue 14): Dockerfile patterns whose meaning BuildKit's frontend
//! defines, each built by `berth build` and by BuildKit as the Docker engine 20.10 runs it
//! (`DOCKER_BUILDKIT=1 /usr/bin/docker build`), from the same busybox image in an in-process
//! berth registry, and compared with the differential harness of `build_buildah.rs` (root
//! file systems: paths, types, modes, owners, contents, link targets; image configs).
//! BuildKit is the reference: where buildah disagrees (it keeps ENV over a later ARG in RUN,
//! and gives a stage built FROM another none of its arguments), BuildKit wins. The engine's
//! frontend is older than today's: a case it cannot build (the `${VAR#…}` family came later)
//! is checked against BuildKit's documented behaviour instead, and says so.
//!
//! Also here: a plain missing COPY source fails in both, with BuildKit's `"/missing": not
//! found`; and `SOURCE_DATE_EPOCH` is part of every step's cache key (berth alone: the
//! engine's BuildKit has no SOURCE_DATE_EPOCH). Needs the Docker engine: without one the
//! BuildKit tests print a SKIP line, and fail under `CI=true`.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use e2e::build::{
    berth, berth_build, berth_ok, buildkit_available, flatten, image_differences, read_layout, write_files,
    BaseRegistry, Reference,
};
use e2e::require_tools;

struct Case {
    /// The issue item it proves.
    item: &'static str,
    name: &'static str,
    dockerfile: &'static str,
    /// Build arguments besides `BASE`.
    build_args: &'static [&'static str],
    /// When the engine's BuildKit cannot build the case: the config `Env` BuildKit's
    /// documentation and its lexer's tests (`shell/lex_test.go`) give.
    documented_env: Option<&'static [&'static str]>,
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const CASES: &[Case] = &[
    Case {
        item: "14.5, 14.12",
        name: "env-and-arg-scoping",
        // BuildKit: ENV words expand with the values from before the instruction (B=1); an
        // ARG with a value after an ENV of the same name wins in RUN and in expansions
        // (E=arg in /base.txt, WORKDIR /w-arg, E2=arg) while the config keeps E=env; a build
        // argument beats a default (G=given); the stage built FROM `base` sees its arguments
        // (V, G) but the config's Env again over them (E=env).
        dockerfile: r#"ARG BASE
FROM ${BASE} AS base
ENV A=1
ENV A=2 B=$A C=${A}x
ENV E=env
ARG E=arg
ARG V=parent
ARG G=default
ARG NOVAL
RUN echo "A=$A B=$B C=$C E=$E V=$V G=$G NOVAL=${NOVAL-unset}" > /base.txt
ENV E2=$E
WORKDIR /w-$E
FROM base AS child
RUN echo "E=$E V=$V G=$G" > /child.txt
ENV F=$V
ARG E
RUN echo "E=$E" > /child-arg.txt
"#,
        build_args: &["G=given"],
        documented_env: None,
    },
    Case {
        item: "14.9",
        name: "scratch-gets-path",
        // BuildKit sets its default PATH (and WorkingDir `/`) in the config of an image FROM
        // scratch, and the stage's steps see it.
        dockerfile: r#"FROM scratch AS bare
COPY a.txt /
ENV X=1
FROM bare
ENV Y=$PATH
"#,
        build_args: &[],
        documented_env: None,
    },
    Case {
        item: "14.4",
        name: "empty-wildcards",
        // A wildcard that matches nothing is no error and copies nothing; `/empty` is not made.
        dockerfile: r#"ARG BASE
FROM ${BASE}
COPY a.json b.lock* /w/
COPY nomatch* /empty/
COPY sub/*.txt sub/*.nope /sub/
"#,
        build_args: &[],
        documented_env: None,
    },
    Case {
        item: "14.6",
        name: "chown-by-name",
        // A user name alone takes its primary group (1600) from /etc/passwd; a number alone
        // doubles as the gid.
        dockerfile: r#"ARG BASE
FROM ${BASE}
RUN echo 'svc:x:1500:1600::/:/bin/sh' >> /etc/passwd && echo 'svcg:x:1600:' >> /etc/group
COPY --chown=svc a.txt /owned-by-name.txt
COPY --chown=1500 a.txt /owned-by-number.txt
COPY --chown=svc:root a.txt /owned-with-group.txt
"#,
        build_args: &[],
        documented_env: None,
    },
    Case {
        item: "14.13",
        name: "pattern-substitutions",
        // The engine's frontend refuses these ("missing ':' in substitution"); the values are
        // those of BuildKit's lexer (`shell/lex.go`, its `lex_test.go` cases): shortest and
        // longest prefix and suffix, first and every match, `*` greedy in replacements.
        dockerfile: r#"FROM scratch
ARG F=archive.tar.gz
ARG P=/usr/local/bin/tool
ENV STEM=${F%%.*} NOEXT=${F%.*} EXT=${F#*.} LAST=${F##*.} NAME=${P##*/} DIR=${P%/*}
ENV ZIP=${F/tar/zip} UNDER=${F//a/_} DOTS=${P//\//.} ANY=${P/*\//x}
"#,
        build_args: &[],
        documented_env: Some(&[
            DEFAULT_PATH,
            "STEM=archive",
            "NOEXT=archive.tar",
            "EXT=tar.gz",
            "LAST=gz",
            "NAME=tool",
            "DIR=/usr/local/bin",
            "ZIP=archive.zip.gz",
            "UNDER=_rchive.t_r.gz",
            "DOTS=.usr.local.bin.tool",
            "ANY=xtool",
        ]),
    },
    Case {
        item: "14.2",
        name: "copy-from-keeps-owners",
        // Files from another stage keep their owners, directories too; `--chown` replaces
        // them; the parent directories the step makes are root's.
        dockerfile: r#"ARG BASE
FROM ${BASE} AS src
RUN mkdir -p /s/d && echo x > /s/d/f && echo y > /s/g && chown -R 1234:2345 /s && chown 42:43 /s/g
FROM ${BASE}
COPY --from=src /s /kept/
COPY --from=src /s/g /deep/er/kept-file
COPY --from=src --chown=7:8 /s /owned/
"#,
        build_args: &[],
        documented_env: None,
    },
    Case {
        item: "14.3",
        name: "workdir-owned-by-user",
        // WORKDIR makes the missing directories as the current USER (a name: its uid and
        // primary group; a number: itself twice), and RUN can then write in it.
        dockerfile: r#"ARG BASE
FROM ${BASE}
RUN echo 'app:x:1500:1600::/home/app:/bin/sh' >> /etc/passwd && echo 'appg:x:1600:' >> /etc/group
USER app
WORKDIR /home/app/x
RUN touch made-by-app
USER 1700
WORKDIR /n/m
USER root
WORKDIR /r
"#,
        build_args: &[],
        documented_env: None,
    },
    Case {
        item: "14.7",
        name: "chmod-copied-not-created",
        // `--chmod` gives its mode to the files and directories copied; the directories made
        // on the way to the destination are 0755.
        dockerfile: r#"ARG BASE
FROM ${BASE}
COPY --chmod=700 sub /d/
COPY --chmod=600 a.txt /new/deep/
COPY --chmod=640 sub /e/f/
COPY --chmod=751 a.txt sub /multi/in/
"#,
        build_args: &[],
        documented_env: None,
    },
    Case {
        item: "14.8",
        name: "add-chown-archive-dir",
        // ADD --chown extracts an archive with its own owners, and the directories it makes
        // for it (the destination and its parents) are `--chown`'s; an archive's `./` entry
        // changes neither an existing directory it extracts into (/tmp) nor one ADD makes
        // (/z, /made: 0755, `--chown`'s ids or root's). buildah gives them the `./`'s.
        dockerfile: r#"ARG BASE
FROM ${BASE}
ADD --chown=1500:1600 arch.tar /x/y/
ADD --chown=1500:1600 arch-root.tar /z/
ADD --chown=1500:1600 arch.tar /tmp/
ADD arch-root.tar /tmp/
ADD arch-root.tar /made/
"#,
        build_args: &[],
        documented_env: None,
    },
    Case {
        item: "14.10",
        name: "mount-points-and-cache-sharing",
        // The directories made for a RUN's mounts stay (empty) in the image; cache mounts
        // with one id but other uid/gid/mode use caches of their own.
        dockerfile: r#"ARG BASE
FROM ${BASE}
RUN --mount=type=tmpfs,target=/mnt/t/x --mount=type=bind,target=/bound/here --mount=type=cache,target=/var/cache/new true
RUN --mount=type=cache,id=shared,target=/c,uid=1000,gid=1000,mode=0700 stat -c '%u:%g:%a' /c > /first
RUN --mount=type=cache,id=shared,target=/c stat -c '%u:%g:%a' /c > /second
"#,
        build_args: &[],
        documented_env: None,
    },
    Case {
        item: "SOURCE_DATE_EPOCH",
        name: "source-date-epoch-arg",
        // Given as a build argument, SOURCE_DATE_EPOCH is one: RUN sees it once the stage
        // declares it (BuildKit's rule since 0.11, as the engine's older BuildKit, for which
        // it is any argument). berth also clamps the image's times to it (the next test).
        dockerfile: r#"ARG BASE
FROM ${BASE}
RUN echo "undeclared=${SOURCE_DATE_EPOCH:-unset}" > /undeclared.txt
ARG SOURCE_DATE_EPOCH
RUN echo "declared=${SOURCE_DATE_EPOCH:-unset}" > /declared.txt
"#,
        build_args: &["SOURCE_DATE_EPOCH=1000000000"],
        documented_env: None,
    },
];

/// The files every case's context holds (besides [`write_archives`]').
const FILES: &[(&str, &str)] = &[("a.txt", "a\n"), ("a.json", "{}\n"), ("sub/x.txt", "x\n")];

/// Writes the context's archives: `arch.tar` (a directory and a file owned 10:20, no `./`
/// entry) and `arch-root.tar` (the same after a `./` owned 30:40, mode 0750).
fn write_archives(ctx: &Path) -> Result<()> {
    for (name, with_root) in [("arch.tar", false), ("arch-root.tar", true)] {
        let mut b = tar::Builder::new(Vec::new());
        let mut entries =
            vec![("in/", tar::EntryType::Directory, 0o755, 10), ("in/f", tar::EntryType::Regular, 0o644, 10)];
        if with_root {
            entries.insert(0, ("./", tar::EntryType::Directory, 0o750, 30));
        }
        for (path, kind, mode, uid) in entries {
            let body: &[u8] = if kind == tar::EntryType::Regular { b"in\n" } else { b"" };
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(kind);
            h.set_path(path)?;
            h.set_mode(mode);
            h.set_uid(uid);
            h.set_gid(uid + 10);
            h.set_mtime(0);
            h.set_size(body.len() as u64);
            h.set_cksum();
            b.append(&h, body)?;
        }
        fs::write(ctx.join(name), b.into_inner()?)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_builds_what_buildkit_builds() -> Result<()> {
    require_tools(&["skopeo"])?;
    if !buildkit_available("berth_builds_what_buildkit_builds").await? {
        return Ok(());
    }
    let base = BaseRegistry::start().await?;
    let work = tempfile::tempdir()?;
    let root = work.path().join("root");
    let mut failures = Vec::new();
    for case in CASES {
        let ctx = work.path().join(case.name);
        write_files(&ctx, &[("Dockerfile", case.dockerfile)])?;
        write_files(&ctx, FILES)?;
        write_archives(&ctx)?;
        let mut args = vec![format!("BASE={}", base.base)];
        args.extend(case.build_args.iter().map(|a| a.to_string()));
        let ours = match berth_build(&root, &ctx, &args, &work.path().join(format!("{}-berth", case.name))).await {
            Ok(image) => image,
            Err(e) => {
                failures.push(format!("{} ({}): berth: {e:#}", case.name, case.item));
                continue;
            }
        };
        // Unique per run: other builds share the engine.
        let tag = format!("berth-fidelity/{}:{}", case.name, base.registry.addr.port());
        let dir = work.path().join(format!("{}-buildkit", case.name));
        let diffs = match (Reference::BuildKit.build(&tag, &ctx, &args, &dir).await, case.documented_env) {
            (Ok(theirs), _) => image_differences(&ours, &theirs, Reference::BuildKit, work.path())?,
            (Err(e), Some(env)) => {
                println!("{} ({}): the engine's BuildKit cannot build it ({e:#}); checked against BuildKit's documented behaviour", case.name, case.item);
                let got = &ours.config["config"]["Env"];
                let want = serde_json::json!(env);
                if *got == want {
                    Vec::new()
                } else {
                    vec![format!("Env {got}, BuildKit's documented {want}")]
                }
            }
            (Err(e), None) => return Err(e.context(format!("BuildKit building {}", case.name))),
        };
        if !diffs.is_empty() {
            failures.push(format!("{} ({}):\n  {}", case.name, case.item, diffs.join("\n  ")));
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_plain_source_fails_in_both() -> Result<()> {
    require_tools(&[])?;
    if !buildkit_available("a_missing_plain_source_fails_in_both").await? {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let ctx = work.path().join("ctx");
    write_files(&ctx, &[("Dockerfile", "FROM scratch\nCOPY a.txt sub/missing* sub/missing /x/\n")])?;
    write_files(&ctx, FILES)?;
    let ran = berth(&work.path().join("root"), &["build", "--progress", "plain", &ctx.display().to_string()]).await?;
    ensure!(!ran.ok, "berth built a COPY of a missing file");
    ensure!(ran.stderr.contains(r#""/sub/missing": not found in the build context"#), "{}", ran.stderr);
    let theirs = Reference::BuildKit.build_fails("berth-fidelity/missing:latest", &ctx).await?;
    ensure!(theirs.contains(r#""/sub/missing""#) && theirs.contains("not found"), "{theirs}");
    Ok(())
}

/// The modification times of `paths` in the image at `layout`.
fn mtimes(layout: &Path, scratch: &Path, paths: &[&str]) -> Result<Vec<i64>> {
    let image = read_layout(layout, "latest")?;
    flatten(&image, scratch)?;
    let times = paths
        .iter()
        .map(|p| fs::symlink_metadata(scratch.join(p)).map(|m| m.mtime()).with_context(|| p.to_string()))
        .collect::<Result<Vec<_>>>()?;
    fs::remove_dir_all(scratch)?;
    Ok(times)
}

/// 14.14: a build with SOURCE_DATE_EPOCH never reuses a layer built without it, or with
/// another value: every step runs again and its files carry the new epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_date_epoch_is_part_of_every_cache_key() -> Result<()> {
    require_tools(&[])?;
    let base = BaseRegistry::start().await?;
    let work = tempfile::tempdir()?;
    let ctx = work.path().join("ctx");
    let dockerfile = format!(
        "FROM {}\nCOPY a.txt /a.txt\nRUN echo ran > /ran.txt\nWORKDIR /made\nCOPY --link a.txt /linked.txt\n",
        base.base
    );
    write_files(&ctx, &[("Dockerfile", &dockerfile)])?;
    write_files(&ctx, FILES)?;
    let root = work.path().join("root");
    let paths = ["a.txt", "ran.txt", "made", "linked.txt"];
    let mut seen = Vec::new();
    for (i, epoch) in [None, Some("1000000000"), Some("1100000000"), Some("1000000000")].into_iter().enumerate() {
        let out = work.path().join(format!("out-{i}"));
        let mut args = vec!["build", "--progress", "plain"];
        if let Some(e) = epoch {
            args.extend(["--source-date-epoch", e]);
        }
        let dest = format!("type=oci,dest={}", out.display());
        let ctx_text = ctx.display().to_string();
        args.extend(["--output", &dest, &ctx_text]);
        let ran = berth_ok(&root, &args).await?;
        let cached = ran.stderr.lines().filter(|l| l.starts_with('#') && l.contains(" CACHED")).count();
        let want: i64 = epoch.map_or(Ok(0), str::parse)?;
        let times = mtimes(&out, &work.path().join(format!("flat-{i}")), &paths)?;
        ensure!(times.iter().all(|t| *t == want), "epoch {epoch:?}: {paths:?} have times {times:?}\n{}", ran.stderr);
        // Only the FROM step may be cached, until a value comes again.
        let again = seen.contains(&epoch);
        ensure!(again || cached <= 1, "epoch {epoch:?}: {cached} steps cached\n{}", ran.stderr);
        ensure!(!again || cached >= 5, "epoch {epoch:?} again: only {cached} steps cached\n{}", ran.stderr);
        seen.push(epoch);
    }
    Ok(())
}

/// SOURCE_DATE_EPOCH given as a build argument (`--build-arg SOURCE_DATE_EPOCH=…`, as
/// buildx passes it) does what `--source-date-epoch` does: the image's times are clamped to
/// it and it is part of every step's cache key; a RUN of a stage that declares the argument
/// sees it. Both ways of giving one value share the cache; another value shares nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_date_epoch_as_a_build_argument() -> Result<()> {
    require_tools(&[])?;
    let base = BaseRegistry::start().await?;
    let work = tempfile::tempdir()?;
    let ctx = work.path().join("ctx");
    let dockerfile =
        format!("FROM {}\nARG SOURCE_DATE_EPOCH\nRUN echo \"epoch=$SOURCE_DATE_EPOCH\" > /epoch.txt\n", base.base);
    write_files(&ctx, &[("Dockerfile", &dockerfile)])?;
    let root = work.path().join("root");
    let ctx_text = ctx.display().to_string();
    let runs: [(&[&str], i64, bool); 3] = [
        (&["--build-arg", "SOURCE_DATE_EPOCH=1000000000"], 1000000000, false),
        (&["--source-date-epoch", "1000000000"], 1000000000, true),
        (&["--build-arg", "SOURCE_DATE_EPOCH=1100000000"], 1100000000, false),
    ];
    for (i, (given, epoch, cached)) in runs.into_iter().enumerate() {
        let out = work.path().join(format!("out-{i}"));
        let dest = format!("type=oci,dest={}", out.display());
        let mut args = vec!["build", "--progress", "plain"];
        args.extend_from_slice(given);
        args.extend(["--output", &dest, &ctx_text]);
        let ran = berth_ok(&root, &args).await?;
        ensure!(!ran.stderr.contains("not consumed"), "{given:?}: a warning about the argument\n{}", ran.stderr);
        // `#N [2/2] RUN echo …`, then `#N CACHED` or `#N DONE …`.
        let id = ran.stderr.lines().find(|l| l.contains("RUN echo")).and_then(|l| l.split(' ').next()).unwrap_or("?");
        let run_cached = ran.stderr.lines().any(|l| l.starts_with(&format!("{id} CACHED")));
        ensure!(run_cached == cached, "{given:?}: the RUN step cached: {run_cached}\n{}", ran.stderr);
        let image = read_layout(&out, "latest")?;
        let created = image.config["created"].as_str().unwrap_or_default().to_string();
        ensure!(created == shared::date::rfc3339(epoch), "{given:?}: created {created}");
        let flat = work.path().join(format!("flat-{i}"));
        flatten(&image, &flat)?;
        let text = fs::read_to_string(flat.join("epoch.txt"))?;
        ensure!(text == format!("epoch={epoch}\n"), "{given:?}: RUN saw {text:?}");
        let mtime = fs::symlink_metadata(flat.join("epoch.txt"))?.mtime();
        ensure!(mtime == epoch, "{given:?}: /epoch.txt has time {mtime}");
    }
    let bad = berth(&root, &["build", "--build-arg", "SOURCE_DATE_EPOCH=yesterday", &ctx_text]).await?;
    ensure!(!bad.ok && bad.stderr.contains("SOURCE_DATE_EPOCH=\"yesterday\""), "{}", bad.stderr);
    Ok(())
}

/// A layer's entries: path (`./` and trailing `/` dropped) to kind, mode and owners, with a
/// hard link's target and a file's size.
fn layer_listing(blob: &Path) -> Result<std::collections::BTreeMap<String, String>> {
    let file = fs::File::open(blob).with_context(|| format!("opening {}", blob.display()))?;
    let mut archive = tar::Archive::new(runtime::unpack::decompress(std::io::BufReader::new(file))?);
    let clean = |p: &Path| p.to_string_lossy().trim_start_matches("./").trim_end_matches('/').to_string();
    let mut out = std::collections::BTreeMap::new();
    for entry in archive.entries()? {
        let entry = entry?;
        let h = entry.header();
        let what = match h.entry_type() {
            tar::EntryType::Link => format!("hardlink -> {}", clean(&entry.link_name()?.unwrap_or_default())),
            tar::EntryType::Directory => "dir".to_string(),
            tar::EntryType::Regular => format!("file of {} bytes", h.size()?),
            other => format!("{other:?}"),
        };
        let path = clean(&entry.path()?);
        if !path.is_empty() {
            out.insert(path, format!("{what} {:o} {}:{}", h.mode()? & 0o7777, h.uid()?, h.gid()?));
        }
    }
    Ok(out)
}

/// 14.11: hard links in the context stay hard links in COPY's layer (one name carries the
/// content), and a RUN that adds a name to an existing file puts only that name, with the
/// content, in its layer: the file it links to is unchanged. Layer by layer against BuildKit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_links_stay_hard_links() -> Result<()> {
    require_tools(&["skopeo"])?;
    if !buildkit_available("hard_links_stay_hard_links").await? {
        return Ok(());
    }
    let base = BaseRegistry::start().await?;
    let work = tempfile::tempdir()?;
    let ctx = work.path().join("ctx");
    let dockerfile = "ARG BASE\nFROM ${BASE}\nCOPY links /links/\nRUN ln /links/one /links/three\n";
    write_files(&ctx, &[("Dockerfile", dockerfile), ("links/one", "same\n"), ("links/other", "o\n")])?;
    fs::hard_link(ctx.join("links/one"), ctx.join("links/two"))?;
    let args = vec![format!("BASE={}", base.base)];
    let ours = berth_build(&work.path().join("root"), &ctx, &args, &work.path().join("berth")).await?;
    let tag = format!("berth-fidelity/hard-links:{}", base.registry.addr.port());
    let theirs = Reference::BuildKit.build(&tag, &ctx, &args, &work.path().join("buildkit")).await?;
    ensure!(ours.blobs.len() >= 2 && theirs.blobs.len() >= 2, "too few layers");
    let mut diffs = image_differences(&ours, &theirs, Reference::BuildKit, work.path())?;
    for back in [2, 1] {
        let a = layer_listing(&ours.blobs[ours.blobs.len() - back])?;
        let b = layer_listing(&theirs.blobs[theirs.blobs.len() - back])?;
        if a != b {
            diffs.push(format!("layer {back} from the top:\n  berth    {a:?}\n  BuildKit {b:?}"));
        }
    }
    ensure!(diffs.is_empty(), "{}", diffs.join("\n"));
    Ok(())
}

/// 14.7: the symbolic `--chmod` (`u+x,go-w`), which BuildKit's frontend accepts since
/// Dockerfile 1.14 and the engine's 20.10 refuses, so checked against BuildKit's documented
/// meaning (chmod(1)'s): applied to each copied path's own mode (`X`: directories and
/// executables); the directories the step makes for its destination are 0755, a source
/// directory's destination included (as the engine's BuildKit does with an octal mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbolic_chmod_applies_to_each_copied_path() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    require_tools(&[])?;
    let work = tempfile::tempdir()?;
    let ctx = work.path().join("ctx");
    let dockerfile = "FROM scratch\nCOPY --chmod=u+x,go-w a.txt /s/deep/\nCOPY --chmod=a=rX sub /r/\n";
    write_files(&ctx, &[("Dockerfile", dockerfile)])?;
    write_files(&ctx, FILES)?;
    write_files(&ctx, &[("sub/inner/y.sh", "y\n")])?;
    for (path, mode) in
        [("a.txt", 0o666), ("sub", 0o775), ("sub/x.txt", 0o664), ("sub/inner", 0o700), ("sub/inner/y.sh", 0o744)]
    {
        fs::set_permissions(ctx.join(path), fs::Permissions::from_mode(mode))?;
    }
    let image = berth_build(&work.path().join("root"), &ctx, &[], &work.path().join("out")).await?;
    let flat = work.path().join("flat");
    flatten(&image, &flat)?;
    for (path, want) in [
        ("s", 0o755),
        ("s/deep", 0o755),
        ("s/deep/a.txt", 0o744),
        ("r", 0o755),
        ("r/x.txt", 0o444),
        ("r/inner", 0o555),
        ("r/inner/y.sh", 0o555),
    ] {
        let got = fs::symlink_metadata(flat.join(path)).with_context(|| path.to_string())?.mode() & 0o7777;
        ensure!(got == want, "/{path}: mode {got:o}, want {want:o}");
    }
    Ok(())
}
