//! `berth build` end to end, through the binary: a build from the busybox image in an
//! in-process berth registry, run from the local store right after the build, pushed back,
//! pulled and run; the OCI layout, OCI tar and
//! docker-archive outputs; reproducibility across directories, times and stores; the cache
//! (warm builds, one changed file, `COPY --link` layers that survive a change before them,
//! export and import through a registry, `berth build prune`); and bad input,
//! each a clear error that leaves no image, cache entry or temporary file behind. RUN steps
//! run with the embedded runtime (`berth oci-runtime`) unless a test names another: the same
//! RUN-bearing build under runc gives the same layers, and SIGINT or SIGTERM during a RUN
//! leaves no container, state, mount, cgroup or process behind, under either runtime. ADD
//! extracts bzip2 and xz archives made by the system's `tar`, by content, not name. Links
//! never lead out of a root: RUN bind mounts of a context link or a stage's `r -> /` do not
//! show a host canary (and a context mount hides `.dockerignore`d files); a base whose
//! working directory goes through a link to a host directory leaves that directory empty;
//! `COPY tool /bin/` on a merged-`/usr` base writes `usr/bin/tool`, as BuildKit does (compared
//! with the engine's BuildKit when there is one). With a
//! Docker engine, `docker load` of the archive and `docker pull` + `docker run` of the
//! pushed image (SKIP without an engine, failure under `CI=true`).

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{bail, ensure, Context, Result};
use e2e::build::{
    berth, berth_binary, berth_ok, flatten, list_tree, read_layout, write_files, BaseRegistry, Reference,
};
use e2e::{describe_failure, require_tools, run, run_ok};
use tokio::io::{AsyncBufReadExt, BufReader};

const APP_DOCKERFILE: &str = r#"# syntax=docker/dockerfile:1
ARG BASE
FROM ${BASE} AS build
WORKDIR /src
COPY src/ ./
RUN mkdir -p /out && cat *.txt > /out/all.txt && echo built > /out/marker

FROM ${BASE}
ARG GREETING=hello
ENV APP_HOME=/app \
    MODE=prod
WORKDIR $APP_HOME
COPY --from=build /out/ ./
COPY --chown=1000:1000 --chmod=0640 config.ini ./conf/
COPY <<EOF /app/motd
$GREETING from $MODE
EOF
RUN echo "$GREETING" > greeting && rm -f marker && mkdir -p /var/lib/app
LABEL org.example.name=app
EXPOSE 8080/tcp
VOLUME /data
USER 1000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --retries=3 CMD ["cat", "/app/greeting"]
CMD ["cat", "/app/greeting", "/app/all.txt"]
"#;

fn app_context(dir: &Path) -> Result<()> {
    write_files(
        dir,
        &[
            ("Dockerfile", APP_DOCKERFILE),
            ("src/a.txt", "alpha\n"),
            ("src/b.txt", "beta\n"),
            ("src/notes.md", "ignored\n"),
            ("config.ini", "[app]\nport=8080\n"),
            (".dockerignore", "**/*.md\n"),
        ],
    )
}

/// Sets every file's modification time under `dir` to `secs` past the epoch.
fn touch_all(dir: &Path, secs: u64) -> Result<()> {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            touch_all(&path, secs)?;
        }
        fs::File::open(&path)?.set_modified(t)?;
    }
    Ok(())
}

fn steps_cached(stderr: &str) -> usize {
    stderr.lines().filter(|l| l.starts_with('#') && l.ends_with("CACHED") || l.contains(" CACHED ")).count()
}

/// Fails unless a store's build cache has no temporary files left.
fn assert_no_debris(root: &Path) -> Result<()> {
    let tmp = root.join("build/tmp");
    if tmp.is_dir() {
        let left: Vec<_> = fs::read_dir(&tmp)?.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
        ensure!(left.is_empty(), "temporary files left in {}: {left:?}", tmp.display());
    }
    Ok(())
}

fn key_count(root: &Path) -> Result<usize> {
    let keys = root.join("build/keys");
    Ok(if keys.is_dir() { fs::read_dir(keys)?.count() } else { 0 })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_pushes_writes_every_output_and_runs() -> Result<()> {
    require_tools(&[])?;
    let base = BaseRegistry::start().await?;
    let work = tempfile::tempdir()?;
    let ctx = work.path().join("ctx");
    app_context(&ctx)?;
    let root = work.path().join("root");
    let tag = format!("{}/e2e/app:v1", base.registry.host());
    let oci = work.path().join("oci");
    let oci_tar = work.path().join("image.tar");
    let docker_tar = work.path().join("docker.tar");
    let base_arg = format!("BASE={}", base.base);
    let ran = berth_ok(
        &root,
        &[
            "build",
            "--progress",
            "plain",
            "--build-arg",
            &base_arg,
            "-t",
            &tag,
            "--push",
            "--output",
            &format!("type=oci,dest={}", oci.display()),
            "--output",
            &format!("type=oci,dest={}", oci_tar.display()),
            "--output",
            &format!("type=docker,dest={}", docker_tar.display()),
            "--iidfile",
            &work.path().join("iid").display().to_string(),
            ctx.to_str().context("utf-8")?,
        ],
    )
    .await?;
    // BuildKit-style progress: numbered steps with DONE and a duration.
    ensure!(ran.stderr.contains("#1 [build 1/4] FROM"), "{}", ran.stderr);
    ensure!(ran.stderr.lines().any(|l| l.contains(" DONE ") && l.ends_with('B')), "{}", ran.stderr);
    assert_no_debris(&root)?;

    // The layout holds the image under its tag; its config is what the Dockerfile says.
    let image = read_layout(&oci, "v1")?;
    let iid = fs::read_to_string(work.path().join("iid"))?;
    ensure!(image.manifest.to_string() == iid, "layout {} vs iidfile {iid}", image.manifest);
    let c = &image.config["config"];
    ensure!(c["WorkingDir"] == "/app" && c["User"] == "1000" && c["StopSignal"] == "SIGTERM", "{c}");
    ensure!(
        c["Env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|v| v == "APP_HOME=/app") && e.iter().any(|v| v == "MODE=prod")),
        "{c}"
    );
    ensure!(c["ExposedPorts"]["8080/tcp"].is_object() && c["Volumes"]["/data"].is_object(), "{c}");
    ensure!(c["Labels"]["org.example.name"] == "app", "{c}");
    ensure!(c["Healthcheck"]["Test"] == serde_json::json!(["CMD", "cat", "/app/greeting"]), "{c}");
    ensure!(c["Healthcheck"]["Interval"] == 30_000_000_000u64 && c["Healthcheck"]["Retries"] == 3, "{c}");
    ensure!(image.config["created"] == "1970-01-01T00:00:00Z", "{}", image.config);

    // The root file system.
    let flat = work.path().join("flat");
    flatten(&image, &flat)?;
    let tree = list_tree(&flat)?;
    let get = |p: &str| tree.get(p).cloned().unwrap_or_default();
    ensure!(fs::read_to_string(flat.join("app/all.txt"))? == "alpha\nbeta\n");
    ensure!(fs::read_to_string(flat.join("app/greeting"))? == "hello\n");
    ensure!(fs::read_to_string(flat.join("app/motd"))? == "hello from prod\n");
    ensure!(!flat.join("app/marker").exists(), "the RUN's rm did not stick");
    ensure!(get("app/conf/config.ini").ends_with(" 640 1000:1000"), "{}", get("app/conf/config.ini"));
    ensure!(get("app/conf").starts_with("dir 755 1000:1000"), "{}", get("app/conf"));
    ensure!(flat.join("var/lib/app").is_dir());
    // Nothing of the build container leaked.
    for leak in ["etc/hosts", "etc/resolv.conf", "etc/hostname", "run", "proc/self", "src/notes.md"] {
        ensure!(!flat.join(leak).exists(), "{leak} leaked into the image");
    }
    ensure!(!tree.keys().any(|p| p.ends_with(".md")), ".dockerignore was not applied");

    // `-t` also named it in the local store: it is listed and runs without a pull.
    let images = berth_ok(&root, &["images", "--no-trunc"]).await?;
    ensure!(images.stdout.contains(&image.manifest.to_string()), "{}", images.stdout);
    let ran = berth_ok(&root, &["run", "--rm", &tag]).await?;
    ensure!(ran.stdout == "hello\nalpha\nbeta\n", "berth run after the build printed {:?}", ran.stdout);
    ensure!(!ran.stderr.contains("Unable to find image"), "berth run pulled the image:\n{}", ran.stderr);

    // The OCI tar has the same manifest.
    let unpacked = work.path().join("oci-from-tar");
    fs::create_dir_all(&unpacked)?;
    run_ok("tar", &["-xf", oci_tar.to_str().context("utf-8")?, "-C", unpacked.to_str().context("utf-8")?]).await?;
    ensure!(read_layout(&unpacked, "v1")?.manifest == image.manifest);

    // The registry has it: berth pulls it into another store.
    let other = work.path().join("other");
    berth_ok(&other, &["pull", "-q", &tag]).await?;
    let images = berth_ok(&other, &["images", "--no-trunc"]).await?;
    ensure!(images.stdout.contains(&image.manifest.to_string()), "{}", images.stdout);

    // And runs it.
    let ran = berth(&other, &["run", "--rm", &tag]).await?;
    if ran.ok {
        ensure!(ran.stdout == "hello\nalpha\nbeta\n", "berth run printed {:?}", ran.stdout);
    } else {
        bail!("berth run of the built image failed:\n{}\n{}", ran.stdout, ran.stderr);
    }

    // With a Docker engine: docker load of the archive, docker pull + run of the pushed image.
    if e2e::docker_available("builds_pushes_writes_every_output_and_runs").await? {
        let loaded = run_ok("docker", &["load", "-i", docker_tar.to_str().context("utf-8")?]).await?;
        ensure!(loaded.contains(&tag) || loaded.contains("Loaded image"), "docker load printed {loaded:?}");
        let out = run_ok("docker", &["run", "--rm", &tag]).await?;
        ensure!(out == "hello\nalpha\nbeta\n", "docker run of the loaded image printed {out:?}");
        run_ok("docker", &["rmi", "-f", &tag]).await?;
        run_ok("docker", &["pull", &tag]).await?;
        let out = run_ok("docker", &["run", "--rm", &tag]).await?;
        ensure!(out == "hello\nalpha\nbeta\n", "docker run of the pulled image printed {out:?}");
        let _ = run("docker", &["rmi", "-f", &tag]).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_context_anywhere_anytime_gives_the_same_digest() -> Result<()> {
    require_tools(&[])?;
    let base = BaseRegistry::start().await?;
    let work = tempfile::tempdir()?;
    let base_arg = format!("BASE={}", base.base);
    let mut digests = Vec::new();
    for (i, mtime) in [(0, 1_000_000_000u64), (1, 1_700_000_000)] {
        let ctx = work.path().join(format!("ctx-{i}"));
        app_context(&ctx)?;
        touch_all(&ctx, mtime)?;
        let root = work.path().join(format!("root-{i}"));
        let iid = work.path().join(format!("iid-{i}"));
        berth_ok(
            &root,
            &[
                "build",
                "--progress",
                "plain",
                "--build-arg",
                &base_arg,
                "--iidfile",
                iid.to_str().context("utf-8")?,
                ctx.to_str().context("utf-8")?,
            ],
        )
        .await?;
        digests.push(fs::read_to_string(iid)?);
    }
    ensure!(digests[0] == digests[1], "two builds of the same context differ: {digests:?}");

    // SOURCE_DATE_EPOCH changes the digest (the config's created time follows it).
    let root = work.path().join("root-epoch");
    let iid = work.path().join("iid-epoch");
    let ctx = work.path().join("ctx-0");
    berth_ok(
        &root,
        &[
            "build",
            "--progress",
            "quiet",
            "--source-date-epoch",
            "1700000000",
            "--build-arg",
            &base_arg,
            "--iidfile",
            iid.to_str().context("utf-8")?,
            ctx.to_str().context("utf-8")?,
        ],
    )
    .await?;
    ensure!(fs::read_to_string(iid)? != digests[0]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_builds_hit_and_one_change_redoes_only_later_layers() -> Result<()> {
    require_tools(&[])?;
    let base = BaseRegistry::start().await?;
    let work = tempfile::tempdir()?;
    let ctx = work.path().join("ctx");
    let dockerfile = format!(
        "FROM {}\nCOPY one.txt /one.txt\nRUN echo first > /first\nCOPY two.txt /two.txt\nRUN cat /two.txt > /copy\nCMD [\"sh\"]\n",
        base.base
    );
    write_files(&ctx, &[("Dockerfile", &dockerfile), ("one.txt", "1\n"), ("two.txt", "2\n")])?;
    let root = work.path().join("root");
    let out = work.path().join("out");
    let build = |dest: &str| {
        vec![
            "build".to_string(),
            "--progress".into(),
            "plain".into(),
            "-t".into(),
            "local/app:v1".into(),
            "--output".into(),
            format!("type=oci,dest={}/{dest}", out.display()),
            ctx.display().to_string(),
        ]
    };
    let args = build("a");
    let first = berth_ok(&root, &args.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    let a = read_layout(&out.join("a"), "v1")?;

    // Nothing changed (only touched): every step is cached and the image is the same.
    touch_all(&ctx, 1_600_000_000)?;
    // Past the stat cache's racy window (a file changed just before it was hashed is hashed
    // again next time, as git does).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let args = build("b");
    let warm = berth_ok(&root, &args.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    let b = read_layout(&out.join("b"), "v1")?;
    ensure!(a.manifest == b.manifest, "warm build gave another image");
    ensure!(steps_cached(&warm.stderr) >= 4, "warm build was not cached:\n{}", warm.stderr);
    // Touched files are read again once (their stat changed); untouched ones never are.
    ensure!(first.stderr.contains(" 2 context files read"), "{}", first.stderr);
    let args = build("b2");
    let again = berth_ok(&root, &args.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    ensure!(again.stderr.contains(" 0 context files read"), "a warm build read files:\n{}", again.stderr);
    ensure!(steps_cached(&first.stderr) < steps_cached(&warm.stderr));

    // One changed file: the layers before it are the same, it and those after are redone.
    fs::write(ctx.join("two.txt"), "2 changed\n")?;
    let args = build("c");
    let changed = berth_ok(&root, &args.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    let c = read_layout(&out.join("c"), "v1")?;
    ensure!(a.layers.len() == 5 && c.layers.len() == 5, "{} / {} layers", a.layers.len(), c.layers.len());
    for i in 0..3 {
        ensure!(a.layers[i].digest == c.layers[i].digest, "layer {i} changed although its inputs did not");
    }
    for i in 3..5 {
        ensure!(a.layers[i].digest != c.layers[i].digest, "layer {i} did not change");
    }
    ensure!(changed.stderr.contains("COPY one.txt /one.txt\n#2 CACHED"), "{}", changed.stderr);
    ensure!(changed.stderr.contains("RUN echo first > /first\n#3 CACHED"), "{}", changed.stderr);
    ensure!(changed.stderr.contains("COPY two.txt /two.txt\n#4 DONE"), "{}", changed.stderr);

    // --no-cache runs everything again and still gives the same image.
    let mut args = build("d");
    args.insert(1, "--no-cache".into());
    let nocache = berth_ok(&root, &args.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    ensure!(read_layout(&out.join("d"), "v1")?.manifest == c.manifest, "--no-cache gave another image");
    ensure!(steps_cached(&nocache.stderr) <= 1, "{}", nocache.stderr);
    assert_no_debris(&root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_link_layers_do_not_depend_on_earlier_steps() -> Result<()> {
    require_tools(&[])?;
    let base = BaseRegistry::start().await?;
    let work = tempfile::tempdir()?;
    let ctx = work.path().join("ctx");
    let link_steps = "COPY --link two.txt /etc/app/two.txt\nCOPY --link --chown=1000:1000 data/ /srv/data/\n";
    let dockerfile = format!(
        "FROM {}\nCOPY one.txt /one.txt\nRUN echo ran > /ran\n{link_steps}COPY --chown=app:app three.txt /home/three.txt\n",
        base.base
    );
    write_files(
        &ctx,
        &[("Dockerfile", &dockerfile), ("one.txt", "1\n"), ("two.txt", "2\n"), ("three.txt", "3\n"), ("data/d", "d\n")],
    )?;
    let root = work.path().join("root");
    let out = work.path().join("out");
    let build = |ctx: &Path, dest: &str| {
        vec![
            "build".to_string(),
            "--progress".into(),
            "plain".into(),
            "--output".into(),
            format!("type=oci,dest={}/{dest}", out.display()),
            ctx.display().to_string(),
        ]
    };
    let args = build(&ctx, "a");
    berth_ok(&root, &args.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    let a = read_layout(&out.join("a"), "latest")?;
    let base_layers = a.layers.len() - 5;

    // The --link layers hold only what they copy, and the parents they need, as on an empty
    // root; a later plain COPY still resolves names in the image (after a RUN).
    let only = |image: &e2e::build::ImageFiles, i: usize, dir: &str| -> Result<_> {
        let mut one = image.clone();
        one.layers = vec![image.layers[i].clone()];
        one.blobs = vec![image.blobs[i].clone()];
        let flat = work.path().join(dir);
        flatten(&one, &flat)?;
        list_tree(&flat)
    };
    let two = only(&a, base_layers + 2, "two")?;
    let keys: Vec<&String> = two.keys().collect();
    // /etc is in the base image: a plain COPY would leave it out of its layer.
    ensure!(keys == ["etc", "etc/app", "etc/app/two.txt"], "COPY --link layer: {two:#?}");
    ensure!(two["etc"].starts_with("dir 755 0:0"), "{two:#?}");
    let data = only(&a, base_layers + 3, "data")?;
    ensure!(data["srv"].starts_with("dir 755 1000:1000") && data["srv/data/d"].ends_with("644 1000:1000"), "{data:#?}");
    let three = only(&a, base_layers + 4, "three")?;
    ensure!(three["home/three.txt"].ends_with("644 1000:1000"), "COPY --chown=app after a RUN: {three:#?}");

    // An earlier step changes: the steps after it that depend on it run again, the --link
    // ones are cached, and their blobs are the very same.
    fs::write(ctx.join("one.txt"), "1 changed\n")?;
    let args = build(&ctx, "b");
    let changed = berth_ok(&root, &args.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    let b = read_layout(&out.join("b"), "latest")?;
    ensure!(changed.stderr.contains("COPY one.txt /one.txt\n#2 DONE"), "{}", changed.stderr);
    ensure!(changed.stderr.contains("RUN echo ran > /ran\n#3 DONE"), "{}", changed.stderr);
    ensure!(changed.stderr.contains("COPY --link two.txt /etc/app/two.txt\n#4 CACHED"), "{}", changed.stderr);
    ensure!(changed.stderr.contains("data/ /srv/data/\n#5 CACHED"), "{}", changed.stderr);
    ensure!(changed.stderr.contains("three.txt /home/three.txt\n#6 DONE"), "{}", changed.stderr);
    ensure!(a.layers[base_layers].digest != b.layers[base_layers].digest, "the changed COPY layer did not change");
    for i in base_layers + 2..base_layers + 4 {
        ensure!(a.layers[i].digest == b.layers[i].digest, "--link layer {i} changed with an earlier step");
    }
    ensure!(a.manifest != b.manifest);

    // The same --link steps on another base (scratch) give the same blobs.
    let other = work.path().join("other");
    write_files(
        &other,
        &[("Dockerfile", &format!("FROM scratch\n{link_steps}")), ("two.txt", "2\n"), ("data/d", "d\n")],
    )?;
    let args = build(&other, "c");
    let fresh = berth_ok(&root, &args.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    let c = read_layout(&out.join("c"), "latest")?;
    ensure!(fresh.stderr.contains("two.txt /etc/app/two.txt\n#2 CACHED"), "--link on another base:\n{}", fresh.stderr);
    ensure!(fresh.stderr.contains("data/ /srv/data/\n#3 CACHED"), "--link on another base:\n{}", fresh.stderr);
    ensure!(
        c.layers[0].digest == a.layers[base_layers + 2].digest
            && c.layers[1].digest == a.layers[base_layers + 3].digest
    );

    // A RUN first, then a COPY naming a user: the path index (not read by the RUN) is read
    // from the layers then, /etc/passwd included.
    let run_first = work.path().join("run-first");
    let df = format!("FROM {}\nRUN echo ran > /ran\nCOPY --chown=app:app two.txt /two.txt\n", base.base);
    write_files(&run_first, &[("Dockerfile", &df), ("two.txt", "2\n")])?;
    let args = build(&run_first, "e");
    berth_ok(&root, &args.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    let e = read_layout(&out.join("e"), "latest")?;
    let last = only(&e, e.layers.len() - 1, "e-last")?;
    ensure!(last["two.txt"].ends_with("644 1000:1000"), "COPY --chown=app right after a RUN: {last:#?}");

    // --link reads no image, so --chown takes no names.
    let bad = work.path().join("bad");
    write_files(
        &bad,
        &[("Dockerfile", &format!("FROM {}\nCOPY --link --chown=app two.txt /\n", base.base)), ("two.txt", "2\n")],
    )?;
    let args = build(&bad, "d");
    let failed = berth(&root, &args.iter().map(String::as_str).collect::<Vec<_>>()).await?;
    ensure!(!failed.ok && failed.stderr.contains("numeric ids"), "{}", failed.stderr);
    assert_no_debris(&root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_prune_removes_unused_cache() -> Result<()> {
    require_tools(&[])?;
    let work = tempfile::tempdir()?;
    let ctx = work.path().join("ctx");
    // 100 kB that gzip cannot shrink much: a chain of SHA-256 hex digests.
    let mut big = String::new();
    let mut d = shared::Digest::sha256_of(b"seed");
    while big.len() < 100_000 {
        big.push_str(d.hex());
        d = shared::Digest::sha256_of(d.hex().as_bytes());
    }
    write_files(
        &ctx,
        &[("Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\nCOPY big /big\n"), ("a.txt", "a\n"), ("big", &big)],
    )?;
    let root = work.path().join("root");
    let ctx_arg = ctx.to_str().context("utf-8")?;
    berth_ok(&root, &["build", "--progress", "plain", ctx_arg]).await?;
    ensure!(key_count(&root)? == 2);

    // Nothing is older than an hour, and a roomy --keep-storage keeps everything.
    let kept = berth_ok(&root, &["build", "prune", "--filter", "until=1h"]).await?;
    ensure!(kept.stdout.starts_with("Total reclaimed space: 0B"), "{}", kept.stdout);
    let kept = berth_ok(&root, &["build", "prune", "--keep-storage", "1GB"]).await?;
    ensure!(kept.stdout.starts_with("Total reclaimed space: 0B") && key_count(&root)? == 2, "{}", kept.stdout);

    // A prune removes both entries, their layers and the build's config and manifest.
    let pruned = berth_ok(&root, &["build", "prune", "-f"]).await?;
    ensure!(
        pruned.stdout.contains("COPY big /big") && pruned.stdout.contains("COPY a.txt /a.txt"),
        "{}",
        pruned.stdout
    );
    ensure!(pruned.stdout.lines().filter(|l| l.starts_with("deleted")).count() == 4, "{}", pruned.stdout);
    let total = pruned.stdout.lines().last().and_then(|l| l.strip_prefix("Total reclaimed space: ")).unwrap_or("");
    let kb: f64 = total.split_once("kB").map_or("0", |(n, _)| n).parse()?;
    ensure!(kb > 40.0, "some 50 kB of gzip: {}", pruned.stdout);
    ensure!(key_count(&root)? == 0);
    let blobs = fs::read_dir(root.join("build/blobs/sha256"))?.count();
    ensure!(blobs == 0, "{blobs} blobs left");

    // The next build runs every step again and gives the same image.
    let again = berth_ok(&root, &["build", "--progress", "plain", ctx_arg]).await?;
    ensure!(again.stderr.contains("#2 DONE") && again.stderr.contains("#3 DONE"), "{}", again.stderr);
    let quiet = berth_ok(&root, &["build", "prune", "--all", "-q"]).await?;
    ensure!(quiet.stdout.trim().parse::<u64>()? > 100, "{}", quiet.stdout);
    assert_no_debris(&root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_exports_to_a_registry_and_imports_elsewhere() -> Result<()> {
    require_tools(&[])?;
    let base = BaseRegistry::start().await?;
    let work = tempfile::tempdir()?;
    let ctx = work.path().join("ctx");
    let dockerfile = format!("FROM {}\nCOPY a.txt /a.txt\nRUN echo ran > /ran\n", base.base);
    write_files(&ctx, &[("Dockerfile", &dockerfile), ("a.txt", "a\n")])?;
    let cache_ref = format!("{}/e2e/cache:build", base.registry.host());
    let first = work.path().join("first");
    berth_ok(&first, &["build", "--progress", "plain", "--cache-to", &cache_ref, ctx.to_str().context("utf-8")?])
        .await?;
    // Another machine (store) with an empty cache imports it and runs nothing.
    let second = work.path().join("second");
    let ran = berth_ok(
        &second,
        &["build", "--progress", "plain", "--cache-from", &cache_ref, ctx.to_str().context("utf-8")?],
    )
    .await?;
    ensure!(ran.stderr.contains("#2 CACHED") && ran.stderr.contains("#3 CACHED"), "{}", ran.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_clear_error_and_leaves_nothing() -> Result<()> {
    require_tools(&[])?;
    let base = BaseRegistry::start().await?;
    let work = tempfile::tempdir()?;
    let root = work.path().join("root");
    let cases: Vec<(&str, String, Vec<&str>, &str)> = vec![
        ("missing base", format!("FROM {}/e2e/nothing:here\nRUN true\n", base.registry.host()), vec![], "nothing"),
        (
            "missing COPY source",
            format!("FROM {}\nCOPY nope.txt /\n", base.base),
            vec![],
            "nope.txt\": not found in the build context",
        ),
        (
            "escaping the context",
            format!("FROM {}\nCOPY ../secret /\n", base.base),
            vec![],
            "outside the build context",
        ),
        (
            "failing RUN",
            format!("FROM {}\nRUN echo about to fail && exit 3\n", base.base),
            vec![],
            "exited with code 3",
        ),
        (
            "syntax error",
            format!("FROM {}\nCOPY --bogus=1 a b\n", base.base),
            vec![],
            "Dockerfile:2:6: unknown flag: --bogus",
        ),
        ("invalid reference", format!("FROM {}\n", base.base), vec!["-t", "Not/A:Valid:Ref"], "invalid tag"),
        ("invalid base reference", "FROM busybox@sha256:abc\n".to_string(), vec![], "invalid image reference"),
    ];
    for (what, dockerfile, extra, expected) in cases {
        let ctx = work.path().join(what.replace(' ', "-"));
        write_files(&ctx, &[("Dockerfile", &dockerfile), ("present.txt", "x")])?;
        let keys_before = key_count(&root)?;
        let mut args = vec!["build", "--progress", "plain"];
        args.extend(extra);
        args.push(ctx.to_str().context("utf-8")?);
        let ran = berth(&root, &args).await?;
        ensure!(!ran.ok, "{what}: the build succeeded");
        ensure!(ran.stderr.contains(expected), "{what}: expected {expected:?} in:\n{}", ran.stderr);
        if what == "failing RUN" {
            ensure!(ran.stderr.contains("about to fail"), "{what}: the command's output is not shown:\n{}", ran.stderr);
        }
        ensure!(key_count(&root)? == keys_before, "{what}: a cache entry was written");
        assert_no_debris(&root)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_extracts_bzip2_and_xz_archives_by_content() -> Result<()> {
    require_tools(&[])?;
    let work = tempfile::tempdir()?;
    let ctx = work.path().join("ctx");
    let dockerfile =
        "FROM scratch\nADD a.tar.bz2 /bz/\nADD a.tar.xz /xz/\nADD data.bin /renamed/\nADD notar.tar.xz /copied/\n";
    write_files(&ctx, &[("Dockerfile", dockerfile)])?;
    let src = work.path().join("src");
    write_files(&src, &[("hello.txt", "hello\n"), ("d/f", "inner\n")])?;
    let src_arg = src.to_str().context("utf-8")?;
    let in_ctx = |name: &str| ctx.join(name).to_string_lossy().into_owned();
    for (flag, name) in [("-cjf", "a.tar.bz2"), ("-cJf", "a.tar.xz")] {
        let archive = in_ctx(name);
        run_ok("tar", &[flag, &archive, "--owner=1234", "--group=5678", "--numeric-owner", "-C", src_arg, "."]).await?;
    }
    // A bzip2 tar under a name that says nothing, and an xz file that holds no tar.
    fs::copy(ctx.join("a.tar.bz2"), ctx.join("data.bin"))?;
    fs::write(work.path().join("notar.tar"), "not a tar\n")?;
    run_ok("xz", &["-k", &work.path().join("notar.tar").to_string_lossy()]).await?;
    fs::rename(work.path().join("notar.tar.xz"), ctx.join("notar.tar.xz"))?;

    let root = work.path().join("root");
    let out = work.path().join("out");
    let dest = format!("type=oci,dest={}", out.display());
    berth_ok(&root, &["build", "--progress", "plain", "--output", &dest, ctx.to_str().context("utf-8")?]).await?;
    let flat = work.path().join("flat");
    flatten(&read_layout(&out, "latest")?, &flat)?;
    let tree = list_tree(&flat)?;
    for dir in ["bz", "xz", "renamed"] {
        for (path, content) in [("hello.txt", "hello\n"), ("d/f", "inner\n")] {
            let want = format!("file {} 644 1234:5678", shared::Digest::sha256_of(content.as_bytes()));
            let got = tree.get(&format!("{dir}/{path}"));
            ensure!(got == Some(&want), "{dir}/{path}: {got:?}, want {want}\n{tree:#?}");
        }
        ensure!(tree.get(&format!("{dir}/d")).is_some_and(|d| d.starts_with("dir ")), "{dir}/d:\n{tree:#?}");
        // The archive's `./` entry does not give the directory ADD makes its owner: 0755,
        // root's, as BuildKit's (build_fidelity's `add-chown-archive-dir`).
        ensure!(tree[dir].starts_with("dir 755 0:0"), "{dir}: {}", tree[dir]);
    }
    let copied = fs::read(ctx.join("notar.tar.xz"))?;
    let want = format!("file {} 644 0:0", shared::Digest::sha256_of(&copied));
    ensure!(tree.get("copied/notar.tar.xz") == Some(&want), "an xz file without a tar is copied:\n{tree:#?}");
    ensure!(!tree.contains_key("renamed/data.bin"), "an archive named data.bin was copied, not extracted");
    assert_no_debris(&root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_mounts_network_and_heredocs() -> Result<()> {
    require_tools(&[])?;
    let base = BaseRegistry::start().await?;
    let work = tempfile::tempdir()?;
    let ctx = work.path().join("ctx");
    let dockerfile = format!(
        r#"FROM {base} AS tools
RUN mkdir -p /opt && echo tool > /opt/tool
ONBUILD RUN echo triggered > /onbuilt
FROM tools
ADD --checksum=sha256:2689367b205c16ce32ed4200942b8b8b1e262dfc70d9bc9fbc77c49699a4f1df http://{host}/healthz /fetched/
RUN --mount=type=cache,target=/cache,id=counter sh -c 'echo x >> /cache/runs; wc -l < /cache/runs > /runs-seen'
RUN --mount=type=bind,source=src,target=/mnt/src cat /mnt/src/input.txt > /from-bind
RUN --mount=type=bind,from=tools,source=/opt,target=/mnt/tools cat /mnt/tools/tool > /from-stage
RUN --mount=type=secret,id=token cat /run/secrets/token | wc -c > /secret-length
RUN --mount=type=tmpfs,target=/scratch sh -c 'echo t > /scratch/t && cat /scratch/t > /from-tmpfs'
RUN --network=none sh -c 'ls /sys/class/net | sort | tr "\n" " " > /interfaces'
RUN if unshare -U true 2>/dev/null; then echo allowed; else echo refused; fi > /unshare
RUN <<EOT
echo "heredoc script" > /heredoc
EOT
RUN cat <<EOT > /heredoc-cat
piped
EOT
RUN <<EOT
#!/bin/sh -e
case $- in *e*) echo "$0: errexit" ;; *) echo "$0: no errexit" ;; esac > /heredoc-sh-e
EOT
USER app
RUN <<EOT
#!/bin/env sh
echo "$0" > /tmp/heredoc-env
EOT
"#,
        base = base.base,
        host = base.registry.host()
    );
    write_files(&ctx, &[("Dockerfile", &dockerfile), ("src/input.txt", "from the context\n")])?;
    let secret = work.path().join("token");
    fs::write(&secret, "s3cret")?;
    let root = work.path().join("root");
    let out = work.path().join("out");
    let secret_arg = format!("id=token,src={}", secret.display());
    let dest = format!("type=oci,dest={}", out.display());
    berth_ok(
        &root,
        &["build", "--progress", "plain", "--secret", &secret_arg, "--output", &dest, ctx.to_str().context("utf-8")?],
    )
    .await?;
    let image = read_layout(&out, "latest")?;
    let flat = work.path().join("flat");
    flatten(&image, &flat)?;
    let read = |p: &str| fs::read_to_string(flat.join(p)).unwrap_or_else(|e| format!("<{e}>"));
    ensure!(read("runs-seen").trim() == "1", "cache mount: {}", read("runs-seen"));
    ensure!(read("from-bind") == "from the context\n", "bind mount: {}", read("from-bind"));
    ensure!(read("from-stage") == "tool\n", "bind from a stage: {}", read("from-stage"));
    ensure!(read("secret-length").trim() == "6", "secret: {}", read("secret-length"));
    ensure!(read("from-tmpfs") == "t\n", "tmpfs: {}", read("from-tmpfs"));
    ensure!(read("interfaces").trim() == "lo", "--network=none: {}", read("interfaces"));
    // Docker's default seccomp profile, as BuildKit applies it, refuses new namespaces.
    ensure!(read("unshare") == "refused\n", "RUN under the default seccomp profile: unshare -U {}", read("unshare"));
    ensure!(read("heredoc") == "heredoc script\n", "RUN heredoc: {}", read("heredoc"));
    ensure!(read("heredoc-cat") == "piped\n", "RUN with a heredoc: {}", read("heredoc-cat"));
    // A heredoc that starts with `#!` runs with that interpreter, as BuildKit runs it
    // (`dispatchRun`: the file mounted read-only at `/dev/pipes/EOT`, mode 0755, run by
    // `/bin/sh -c /dev/pipes/EOT`; BuildKit's testRunShebangHeredoc): its options apply and
    // `$0` is the file, for a non-root USER too; nothing of `/dev/pipes` reaches the image.
    ensure!(read("heredoc-sh-e") == "/dev/pipes/EOT: errexit\n", "RUN <<EOT #!/bin/sh -e: {}", read("heredoc-sh-e"));
    ensure!(read("tmp/heredoc-env") == "/dev/pipes/EOT\n", "RUN <<EOT #!/bin/env sh: {}", read("tmp/heredoc-env"));
    ensure!(read("onbuilt") == "triggered\n", "ONBUILD trigger: {}", read("onbuilt"));
    ensure!(image.config["config"]["OnBuild"].is_null(), "ONBUILD triggers are not inherited: {}", image.config);
    ensure!(read("fetched/healthz") == "ok", "ADD of a URL: {}", read("fetched/healthz"));
    ensure!(list_tree(&flat)?["fetched/healthz"].ends_with(" 600 0:0"), "ADD of a URL is mode 600");
    // No secret, cache content or stub file leaked into the image; the directories made for
    // the mounts stay, empty, as BuildKit's do (issue 14.10).
    let tree = list_tree(&flat)?;
    ensure!(tree["tmp/heredoc-env"].ends_with(" 1000:1000"), "the #! script ran as app: {}", tree["tmp/heredoc-env"]);
    for leak in [
        "cache/runs",
        "mnt/src/input.txt",
        "mnt/tools/tool",
        "run/secrets/token",
        "scratch/t",
        "etc/hosts",
        "dev/pipes",
    ] {
        ensure!(!tree.contains_key(leak), "{leak} leaked into the image");
    }
    for made in ["cache", "mnt/src", "mnt/tools", "run/secrets", "scratch"] {
        let empty = fs::read_dir(flat.join(made)).map(|mut d| d.next().is_none()).unwrap_or(false);
        ensure!(empty && tree[made].starts_with("dir 755 0:0"), "mount point {made}: {:?}", tree.get(made));
    }
    // The cache mount persists: a --no-cache build sees the earlier run.
    berth_ok(
        &root,
        &[
            "build",
            "--progress",
            "plain",
            "--no-cache",
            "--secret",
            &secret_arg,
            "--output",
            &dest,
            ctx.to_str().context("utf-8")?,
        ],
    )
    .await?;
    let image = read_layout(&out, "latest")?;
    let flat2 = work.path().join("flat2");
    flatten(&image, &flat2)?;
    ensure!(fs::read_to_string(flat2.join("runs-seen"))?.trim() == "2");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_and_runc_runtimes_build_the_same_layers() -> Result<()> {
    require_tools(&["runc"])?;
    let base = BaseRegistry::start().await?;
    let work = tempfile::tempdir()?;
    let ctx = work.path().join("ctx");
    app_context(&ctx)?;
    let base_arg = format!("BASE={}", base.base);
    let bin = berth_binary()?;
    let bin = bin.to_str().context("utf-8")?;

    // The default needs no runtime binary: with runc out of PATH, the RUN steps still run
    // (through `berth oci-runtime`, the embedded runtime).
    let embedded = work.path().join("embedded");
    let root = work.path().join("root-embedded");
    let dest = format!("type=oci,dest={}", embedded.display());
    let args = [
        "PATH=/nonexistent",
        bin,
        "--root",
        root.to_str().context("utf-8")?,
        "build",
        "--progress",
        "plain",
        "--build-arg",
        &base_arg,
        "--output",
        &dest,
        ctx.to_str().context("utf-8")?,
    ];
    let output = run("env", &args).await?;
    ensure!(output.status.success(), "{}", describe_failure("env", &args, &output));

    let external = work.path().join("runc");
    let root = work.path().join("root-runc");
    let dest = format!("type=oci,dest={}", external.display());
    berth_ok(
        &root,
        &[
            "build",
            "--progress",
            "plain",
            "--runtime",
            "runc",
            "--build-arg",
            &base_arg,
            "--output",
            &dest,
            ctx.to_str().context("utf-8")?,
        ],
    )
    .await?;

    let (a, b) = (read_layout(&embedded, "latest")?, read_layout(&external, "latest")?);
    let digests = |i: &e2e::build::ImageFiles| i.layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>();
    ensure!(digests(&a) == digests(&b), "layers differ:\n  embedded {:?}\n  runc     {:?}", digests(&a), digests(&b));
    ensure!(a.manifest == b.manifest, "manifests differ: {} / {}", a.manifest, b.manifest);
    Ok(())
}

/// Processes whose command line contains `marker`.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(marker) {
                found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// Cgroups of RUN containers a `berth build` with process ID `pid` made, in any hierarchy.
fn build_cgroups(pid: u32) -> Vec<String> {
    let mut found = Vec::new();
    for hierarchy in fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let parent = hierarchy.path().join("berth-build");
        for entry in fs::read_dir(&parent).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("berth-build-") && name.contains(&format!("-{pid}-")) {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_during_a_run_cancel_and_leave_nothing_behind() -> Result<()> {
    require_tools(&["runc"])?;
    let base = BaseRegistry::start().await?;
    let work = tempfile::tempdir()?;
    let bin = berth_binary()?;
    // (runtime flag, signal, to the whole process group as a terminal's Ctrl-C does)
    let cases: [(Option<&str>, &str, bool); 3] =
        [(None, "INT", true), (None, "TERM", false), (Some("runc"), "TERM", false)];
    for (i, (runtime, signal, group)) in cases.into_iter().enumerate() {
        let what = format!("{} SIG{signal}{}", runtime.unwrap_or("embedded"), if group { " (group)" } else { "" });
        // A marker unique to this case, to find the container's process.
        let marker = format!("{}", 7_000_000 + std::process::id() * 10 + i as u32);
        let ctx = work.path().join(format!("ctx-{i}"));
        let dockerfile = format!("FROM {}\nRUN echo started && sleep {marker}\n", base.base);
        write_files(&ctx, &[("Dockerfile", &dockerfile)])?;
        let root = work.path().join(format!("root-{i}"));
        let mut command = tokio::process::Command::new(&bin);
        command.arg("--root").arg(&root).args(["build", "--progress", "plain"]);
        if let Some(r) = runtime {
            command.args(["--runtime", r]);
        }
        command.arg(&ctx).stdin(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        command.process_group(0).kill_on_drop(true);
        let mut child = command.spawn()?;
        let pid = child.id().context("no pid")?;
        let mut lines = BufReader::new(child.stderr.take().context("no stderr")?).lines();
        let mut seen = Vec::new();
        let started = tokio::time::timeout(Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await? {
                let done = line.ends_with(" started");
                seen.push(line);
                if done {
                    return Ok(true);
                }
            }
            anyhow::Ok(false)
        })
        .await;
        ensure!(matches!(started, Ok(Ok(true))), "{what}: the RUN step did not start:\n{}", seen.join("\n"));
        ensure!(!processes_with(&marker).is_empty(), "{what}: the container's process is not running");
        ensure!(!build_cgroups(pid).is_empty(), "{what}: the container has no cgroup");

        let target = if group { format!("-{pid}") } else { pid.to_string() };
        run_ok("kill", &[&format!("-{signal}"), "--", &target]).await?;
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.context("no exit")??;
        while let Some(line) = lines.next_line().await? {
            seen.push(line);
        }
        let expected = if signal == "INT" { 130 } else { 143 };
        ensure!(status.code() == Some(expected), "{what}: exit status {status}:\n{}", seen.join("\n"));
        ensure!(seen.iter().any(|l| l == "berth: build cancelled"), "{what}:\n{}", seen.join("\n"));

        let left = processes_with(&marker);
        ensure!(left.is_empty(), "{what}: processes left: {left:?}");
        let left = build_cgroups(pid);
        ensure!(left.is_empty(), "{what}: cgroups left: {left:?}");
        let mounts = fs::read_to_string("/proc/self/mountinfo")?;
        let root_text = root.to_str().context("utf-8")?;
        ensure!(!mounts.contains(root_text), "{what}: mounts left under {root_text}");
        assert_no_debris(&root)?;
    }
    Ok(())
}

/// Every file under `dir` whose content holds `needle`, for canary checks.
fn files_containing(dir: &Path, needle: &str) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for (path, _) in list_tree(dir)? {
        let full = dir.join(&path);
        if fs::symlink_metadata(&full)?.is_file() && fs::read_to_string(&full).unwrap_or_default().contains(needle) {
            found.push(path);
        }
    }
    Ok(found)
}

/// A host file outside every root the build reads: a directory with `secret` holding a
/// value unique to this run. Returns the directory and the value.
fn canary() -> Result<(tempfile::TempDir, String)> {
    let dir = tempfile::Builder::new().prefix("berth-canary-").tempdir()?;
    let secret = format!("canary-{}-{}", std::process::id(), dir.path().display());
    fs::write(dir.path().join("secret"), &secret)?;
    Ok((dir, secret))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_bind_mounts_resolve_inside_the_context_and_the_stage() -> Result<()> {
    // RUN steps run containers.
    if !shared::testing::require_root("run_bind_mounts_resolve_inside_the_context_and_the_stage") {
        return Ok(());
    }
    require_tools(&[])?;
    let base = BaseRegistry::start().await?;
    let (canary_dir, secret) = canary()?;
    let canary_path = canary_dir.path().to_str().context("utf-8")?.to_string();
    let work = tempfile::tempdir()?;
    let ctx = work.path().join("ctx");
    // `link` points at the host's canary directory; the context has a directory of the same
    // path, so the in-context check passes: the mount must show that one, not the host's.
    let dockerfile = format!(
        r#"FROM {base} AS stage
RUN ln -s / /r && mkdir -p {canary_path} && echo stage-own > {canary_path}/secret
FROM {base}
RUN --mount=type=bind,source=link,target=/m cat /m/secret > /via-link
RUN --mount=type=bind,target=/ctx sh -c 'ls -a /ctx > /listing; cat /ctx/link/secret > /ctx-link || true'
RUN --mount=type=bind,from=stage,source=r{canary_path}/secret,target=/s cat /s > /via-stage
"#,
        base = base.base
    );
    let in_context = format!("{}/secret", canary_path.trim_start_matches('/'));
    write_files(
        &ctx,
        &[
            ("Dockerfile", &dockerfile),
            (&in_context, "in-context\n"),
            ("kept.txt", "kept\n"),
            ("ignored.txt", "ignored\n"),
            (".dockerignore", "ignored.txt\n"),
        ],
    )?;
    std::os::unix::fs::symlink(&canary_path, ctx.join("link"))?;
    let root = work.path().join("root");
    let out = work.path().join("out");
    let dest = format!("type=oci,dest={}", out.display());
    berth_ok(&root, &["build", "--progress", "plain", "--output", &dest, ctx.to_str().context("utf-8")?]).await?;
    let flat = work.path().join("flat");
    flatten(&read_layout(&out, "latest")?, &flat)?;
    let read = |p: &str| fs::read_to_string(flat.join(p)).unwrap_or_else(|e| format!("<{e}>"));
    ensure!(read("via-link") == "in-context\n", "a context link was followed out of the context: {}", read("via-link"));
    ensure!(read("via-stage") == "stage-own\n", "a stage's link was followed out of its root: {}", read("via-stage"));
    let listing = read("listing");
    ensure!(listing.contains("kept.txt") && listing.contains("link"), "context bind mount shows:\n{listing}");
    ensure!(!listing.contains("ignored.txt"), "a .dockerignore'd file is in the context bind mount:\n{listing}");
    let leaks = files_containing(&flat, &secret)?;
    ensure!(leaks.is_empty(), "the host's canary was read into {leaks:?}");

    // A source that exists only through the link, on the host: a clear error, no canary.
    fs::write(canary_dir.path().join("only-on-host"), &secret)?;
    let dockerfile = format!(
        "FROM {base} AS stage\nRUN ln -s / /r\nFROM {base}\nRUN --mount=type=bind,from=stage,source=r{canary_path}/only-on-host,target=/s cat /s\n",
        base = base.base
    );
    write_files(&ctx, &[("Dockerfile", &dockerfile)])?;
    let ran =
        berth(&root, &["build", "--progress", "plain", "--output", &dest, ctx.to_str().context("utf-8")?]).await?;
    ensure!(!ran.ok, "the build read a host file through a stage's link:\n{}", ran.stderr);
    ensure!(ran.stderr.contains("does not exist in stage"), "unclear error:\n{}", ran.stderr);
    ensure!(!ran.stderr.contains(&secret) && !ran.stdout.contains(&secret), "the canary was printed");
    assert_no_debris(&root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_dir_through_a_link_is_made_inside_the_root() -> Result<()> {
    // RUN steps run containers.
    if !shared::testing::require_root("a_working_dir_through_a_link_is_made_inside_the_root") {
        return Ok(());
    }
    require_tools(&[])?;
    let base = BaseRegistry::start().await?;
    let canary_dir = tempfile::Builder::new().prefix("berth-canary-").tempdir()?;
    let canary_path = canary_dir.path().to_str().context("utf-8")?.to_string();
    let canary_rel = canary_path.trim_start_matches('/').to_string();
    let work = tempfile::tempdir()?;
    // A base image whose working directory goes through `/w -> <the host's canary dir>`.
    let rootfs = work.path().join("rootfs");
    e2e::busybox_rootfs(&rootfs)?;
    std::os::unix::fs::symlink(&canary_path, rootfs.join("w"))?;
    let image = e2e::build::push_rootfs_image(&base.registry, "linked-workdir", &rootfs, Some("/w/sub")).await?;
    let ctx = work.path().join("ctx");
    let dockerfile = format!(
        "FROM {image}\nRUN pwd > /pwd.txt\nRUN --mount=type=tmpfs,target=/w/mnt true\nWORKDIR /w/wd\nRUN pwd > /pwd2.txt\n"
    );
    write_files(&ctx, &[("Dockerfile", &dockerfile)])?;
    let root = work.path().join("root");
    let out = work.path().join("out");
    let dest = format!("type=oci,dest={}", out.display());
    let built =
        berth(&root, &["build", "--progress", "plain", "--output", &dest, ctx.to_str().context("utf-8")?]).await;
    let gained: Vec<_> = fs::read_dir(canary_dir.path())?.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
    ensure!(gained.is_empty(), "the build created {gained:?} in the host's {canary_path}");
    let built = built?;
    ensure!(built.ok, "build failed:\n{}", built.stderr);
    let flat = work.path().join("flat");
    flatten(&read_layout(&out, "latest")?, &flat)?;
    let tree = list_tree(&flat)?;
    let read = |p: &str| fs::read_to_string(flat.join(p)).unwrap_or_else(|e| format!("<{e}>"));
    // The command runs where the link leads inside the root (`pwd` prints the physical path).
    let (pwd, pwd2) = (read("pwd.txt"), read("pwd2.txt"));
    ensure!(pwd == format!("{canary_path}/sub\n") && pwd2 == format!("{canary_path}/wd\n"), "{pwd} {pwd2}");
    ensure!(tree["w"].starts_with("link -> "), "/w is no longer a link: {}", tree["w"]);
    for made in ["sub", "wd"] {
        let path = format!("{canary_rel}/{made}");
        ensure!(tree.get(&path).is_some_and(|d| d.starts_with("dir ")), "{path} is not in the image:\n{tree:#?}");
    }
    // The tmpfs mount point stays in the image, as BuildKit's do (issue 14.10), where the
    // link leads inside the root.
    let mnt = format!("{canary_rel}/mnt");
    ensure!(
        tree.get(&mnt).is_some_and(|d| d.starts_with("dir ")),
        "{mnt} is not in the image:
{tree:#?}"
    );
    Ok(())
}

/// Images this test made in the Docker engine, removed however the test ends.
struct DockerImages(Vec<String>);

impl Drop for DockerImages {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let _ = std::process::Command::new("/usr/bin/docker").arg("rmi").arg("-f").args(&self.0).output();
        }
    }
}

/// Builds `ctx` with the engine's BuildKit (the differential harness's reference) and returns
/// its layer tars, bottom first, from the image's `dir:` copy under `dir`.
async fn buildkit_layers(ctx: &Path, tag: &str, dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    Ok(Reference::BuildKit.build(tag, ctx, &[], &dir.join("image")).await?.blobs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_through_merged_usr_links_writes_where_they_point() -> Result<()> {
    // RUN steps run containers.
    if !shared::testing::require_root("copy_through_merged_usr_links_writes_where_they_point") {
        return Ok(());
    }
    require_tools(&[])?;
    let base = BaseRegistry::start().await?;
    let work = tempfile::tempdir()?;
    // Debian's merged /usr: /bin is a link to usr/bin.
    let rootfs = work.path().join("rootfs");
    e2e::busybox_rootfs(&rootfs)?;
    fs::create_dir_all(rootfs.join("usr"))?;
    fs::rename(rootfs.join("bin"), rootfs.join("usr/bin"))?;
    std::os::unix::fs::symlink("usr/bin", rootfs.join("bin"))?;
    let image = e2e::build::push_rootfs_image(&base.registry, "merged-usr", &rootfs, None).await?;
    let docker = e2e::docker_available("copy_through_merged_usr_links_writes_where_they_point").await?;
    let mut cleanup = DockerImages(Vec::new());
    let cases = [("copy-only", ""), ("copy-and-run", "RUN /bin/tool > /ran\n")];
    for (name, run_step) in cases {
        let ctx = work.path().join(name);
        let dockerfile = format!("FROM {image}\nCOPY tool /bin/\n{run_step}");
        write_files(&ctx, &[("Dockerfile", &dockerfile), ("tool", "#!/bin/sh\necho tool ran\n")])?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(ctx.join("tool"), fs::Permissions::from_mode(0o755))?;
        let root = work.path().join(format!("root-{name}"));
        let out = work.path().join(format!("out-{name}"));
        let dest = format!("type=oci,dest={}", out.display());
        berth_ok(&root, &["build", "--progress", "plain", "--output", &dest, ctx.to_str().context("utf-8")?]).await?;
        let ours = read_layout(&out, "latest")?;
        // The COPY layer is the base's next one.
        let copy_layer = e2e::build::layer_entries(&ours.blobs[1])?;
        ensure!(copy_layer.get("usr/bin/tool").is_some_and(|e| e == "file"), "{name}: COPY layer {copy_layer:?}");
        ensure!(!copy_layer.keys().any(|p| p == "bin" || p.starts_with("bin/")), "{name}: COPY layer {copy_layer:?}");
        let flat = work.path().join(format!("flat-{name}"));
        flatten(&ours, &flat)?;
        let tree = list_tree(&flat)?;
        ensure!(tree["bin"] == "link -> usr/bin 777 0:0", "{name}: /bin became {}", tree["bin"]);
        if !run_step.is_empty() {
            let ran = fs::read_to_string(flat.join("ran"))?;
            ensure!(ran == "tool ran\n", "{name}: RUN /bin/tool printed {ran:?}");
        }
        if !docker {
            continue;
        }
        // BuildKit (which wins where it and buildah disagree) writes the same places. Its
        // COPY layer also lists the existing parents (`usr`, `usr/bin`), which berth's does
        // not: those directories are unchanged, so the other entries and the root file
        // systems are compared.
        let tag = format!("berth-e2e-merged-usr-{name}:{}", std::process::id());
        cleanup.0.push(tag.clone());
        let saved = work.path().join(format!("docker-{name}"));
        fs::create_dir_all(&saved)?;
        let theirs = buildkit_layers(&ctx, &tag, &saved).await?;
        let their_copy = e2e::build::layer_entries(&theirs[1])?;
        let files = |l: &std::collections::BTreeMap<String, String>| {
            l.iter().filter(|(_, w)| *w != "dir").map(|(p, w)| format!("{p} {w}")).collect::<Vec<_>>()
        };
        ensure!(
            files(&copy_layer) == files(&their_copy),
            "{name}: COPY layers: berth {copy_layer:?} / BuildKit {their_copy:?}"
        );
        let their_flat = work.path().join(format!("flat-docker-{name}"));
        let files_of = e2e::build::ImageFiles {
            manifest: ours.manifest.clone(),
            config: serde_json::Value::Null,
            layers: Vec::new(),
            blobs: theirs,
        };
        flatten(&files_of, &their_flat)?;
        let diffs = e2e::build::tree_differences(&tree, &list_tree(&their_flat)?);
        ensure!(diffs.is_empty(), "{name}: root file systems differ from BuildKit's:\n  {}", diffs.join("\n  "));
    }
    Ok(())
}
