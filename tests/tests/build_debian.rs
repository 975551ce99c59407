//! The builder on a real Debian base (issue 14's corpus): a merged-`/usr` bookworm root made
//! by `debootstrap --variant=minbase` ([`e2e::debian`], bootstrapped once a day and cached
//! under `target/`), pushed into an in-process berth registry, and everyday Dockerfile
//! patterns built on it by `berth build` and by BuildKit as the Docker engine 20.10 runs it
//! (`DOCKER_BUILDKIT=1 /usr/bin/docker build`, pulling the same image), compared with the
//! differential harness of `build_fidelity.rs` (root file systems: paths, types, modes,
//! owners, contents, link targets; image configs).
//!
//! The cases: COPY into `/bin/` and `/lib/…` through the base's links then RUN what was
//! copied, a WORKDIR through `/var/run -> /run`; `apt-get install` from Debian's mirror; a
//! non-root user made with `useradd` (USER, WORKDIR, `COPY --chown` by name); optional lock
//! files (`COPY package.json yarn.lock* ./`), all in one image (each comparison flattens
//! two Debian roots, the test's main cost); and a multi-stage build whose program goes into
//! a `scratch` image. apt and dpkg write the time into their logs and caches, so those
//! files' contents are not compared (their paths, modes and owners are).
//!
//! The engine's frontend is older than today's and builds neither heredocs nor `COPY
//! --link` (both came with Dockerfile 1.4): those cases are checked against BuildKit's
//! documented behaviour instead (its heredoc tests, `frontend/dockerfile/
//! dockerfile_heredoc_test.go`, and the Dockerfile reference on `--link`), and say so.
//!
//! Needs root, `debootstrap`, skopeo, Debian's mirror and (for the BuildKit comparison) the
//! Docker engine: without them a test prints a SKIP line, and fails under `CI=true`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{ensure, Context, Result};
use e2e::build::{
    berth_build, berth_ok, buildkit_available, flatten, image_differences_except, layer_entries, write_files, Reference,
};
use e2e::debian::push_debian_image;
use e2e::{require_tools, Registry};

struct Case {
    /// What it proves (issue 14's items, or the corpus pattern).
    item: &'static str,
    name: &'static str,
    dockerfile: &'static str,
    /// Context files besides the Dockerfile: (path, content, mode).
    files: &'static [(&'static str, &'static str, u32)],
    /// Files whose contents are not compared (apt's and dpkg's logs and caches).
    volatile: &'static [&'static str],
    /// Empty directories the engine's BuildKit (v0.8, Docker 20.10) leaves in the image and
    /// today's does not, so not counted as differences (see each case).
    engine_only: &'static [&'static str],
}

/// What apt and dpkg stamp with the time, or fetch from the mirror between the two builds.
const APT_VOLATILE: &[&str] =
    &["var/log", "var/cache/apt", "var/cache/debconf", "var/cache/ldconfig", "var/lib/apt/lists"];

const TOOL: &str = "#!/bin/sh\necho \"tool ran as $(id -u)\"\n";

const CASES: &[Case] = &[
    Case {
        item: "14.1, 14.3, 14.4, 14.6: merged /usr, apt-get, a non-root user, lock files",
        name: "everyday",
        // One image, with few RUN steps, for the patterns that need the whole Debian root
        // compared (each comparison flattens two Debian roots; each RUN snapshots one).
        // `/bin`, `/lib` and `/var/run` are links in the base: COPY and WORKDIR write where
        // they point (usr/bin, usr/lib, /run), the links stay links, and RUN finds the tool.
        // apt-get installs from Debian's mirror. useradd's user owns the WORKDIR it makes,
        // the files `--chown` names (a user name alone: its primary group), and what its
        // RUN makes; a numeric USER too. Optional lock files: `COPY package.json yarn.lock*
        // ./` copies what is there.
        dockerfile: r#"ARG BASE
FROM ${BASE}
COPY tool /bin/
COPY tool /usr/local/bin/tool2
COPY lib.txt /lib/x86_64-linux-gnu/
WORKDIR /var/run/app
RUN tool > /tool.out && tool2 >> /tool.out \
 && stat -c '%n %F %a %u:%g %s' /bin /bin/tool /usr/bin/tool /lib/x86_64-linux-gnu/lib.txt >> /tool.out \
 && touch made-in-run-dir && readlink /var/run >> /tool.out
RUN apt-get update && apt-get install -y --no-install-recommends hello && hello > /hello.out \
 && useradd --create-home --uid 1500 --user-group app
USER app
WORKDIR /home/app/src
COPY --chown=app:app a.txt ./
COPY --chown=app a.txt ./by-name.txt
COPY a.txt ./as-root.txt
RUN id > whoami && touch made-by-app && mkdir -p sub/deeper
USER 1600:1700
WORKDIR /srv/data
USER app
WORKDIR /app
COPY package.json yarn.lock* ./
COPY requirements.txt poetry.lock* ./
COPY go.mod go.sum* ./
CMD ["tool"]
"#,
        files: &[
            ("tool", TOOL, 0o755),
            ("lib.txt", "lib\n", 0o644),
            ("a.txt", "a\n", 0o644),
            ("package.json", "{}\n", 0o644),
            ("requirements.txt", "requests\n", 0o644),
            ("poetry.lock", "# lock\n", 0o644),
            ("go.mod", "module x\n", 0o644),
        ],
        volatile: APT_VOLATILE,
        engine_only: &[],
    },
    Case {
        item: "corpus: multi-stage",
        name: "multi-stage",
        // The build stage installs a static busybox and makes the program; the image is
        // `scratch` with both, copied through the build stage's `/bin -> usr/bin`. Its RUN
        // on a root without `/proc`, `/dev`, `/sys` and `/etc` leaves the first three (the
        // runtime's mount points, which BuildKit keeps). The engine's BuildKit keeps an empty
        // `/etc` too (made for the `/etc/hosts` and `/etc/resolv.conf` stubs); today's
        // removes it with the stubs (`executor/stubs.go`: `MountStubsCleaner` walks up to the
        // empty directories made for them; the LLB of a Dockerfile RUN asks for that with
        // `removeMountStubsRecursive`), and so does berth.
        dockerfile: r#"ARG BASE
FROM ${BASE} AS build
RUN apt-get update && apt-get install -y --no-install-recommends busybox-static
WORKDIR /src
COPY app.sh .
RUN mkdir -p /out && { printf '#!/bin/busybox sh\n'; cat app.sh; } > /out/app && chmod 0755 /out/app
FROM scratch
COPY --from=build /bin/busybox /bin/busybox
COPY --from=build /out/ /usr/local/bin/
RUN ["/bin/busybox", "sh", "-c", "/usr/local/bin/app > /app.out"]
ENTRYPOINT ["/usr/local/bin/app"]
"#,
        files: &[("app.sh", "echo built in a stage\n", 0o644)],
        volatile: APT_VOLATILE,
        engine_only: &["etc"],
    },
];

/// Writes the case's context under `ctx`.
fn write_context(ctx: &Path, dockerfile: &str, files: &[(&str, &str, u32)]) -> Result<()> {
    write_files(ctx, &[("Dockerfile", dockerfile)])?;
    for (path, content, mode) in files {
        write_files(ctx, &[(path, content)])?;
        fs::set_permissions(ctx.join(path), fs::Permissions::from_mode(*mode))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_builds_on_debian_what_buildkit_builds() -> Result<()> {
    const TEST: &str = "berth_builds_on_debian_what_buildkit_builds";
    if !shared::testing::require_root(TEST) {
        return Ok(());
    }
    require_tools(&["skopeo", "debootstrap"])?;
    if !buildkit_available(TEST).await? {
        return Ok(());
    }
    let registry = Registry::start().await?;
    let base = push_debian_image(&registry).await?;
    let work = tempfile::tempdir()?;
    let root = work.path().join("root");
    let mut failures = Vec::new();
    for case in CASES {
        let dir = work.path().join(case.name);
        let ctx = dir.join("ctx");
        write_context(&ctx, case.dockerfile, case.files)?;
        let args = vec![format!("BASE={base}")];
        let ours = match berth_build(&root, &ctx, &args, &dir.join("berth")).await {
            Ok(image) => image,
            Err(e) => {
                failures.push(format!("{} ({}): berth: {e:#}", case.name, case.item));
                continue;
            }
        };
        // Unique per run: other builds share the engine.
        let tag = format!("berth-debian/{}:{}", case.name, registry.addr.port());
        let theirs = Reference::BuildKit
            .build(&tag, &ctx, &args, &dir.join("buildkit"))
            .await
            .with_context(|| format!("BuildKit building {}", case.name))?;
        let mut diffs = image_differences_except(&ours, &theirs, Reference::BuildKit, &dir, case.volatile)?;
        diffs.retain(|d| !case.engine_only.iter().any(|p| *d == format!("only in the other: {p} (dir 755 0:0)")));
        if !diffs.is_empty() {
            failures.push(format!("{} ({}):\n  {}", case.name, case.item, diffs.join("\n  ")));
        }
        // A case's images and copies take a few hundred megabytes.
        fs::remove_dir_all(&dir)?;
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

/// Heredocs, which the engine's 20.10 frontend refuses (they came with Dockerfile 1.4), so
/// checked against BuildKit's own heredoc tests (`dockerfile_heredoc_test.go`:
/// `testCopyHeredoc`, `testRunBasicHeredoc`, `testRunComplexHeredoc`, `testHeredocIndent`,
/// `testHeredocVarSubstitution`), whose Dockerfiles this one gathers, on the Debian base,
/// with the contents they expect. `testRunShebangHeredoc` (a `RUN <<EOF` that starts with
/// `#!` runs with that interpreter) is checked on the busybox base, where RUN steps are
/// cheaper: `tests/tests/build.rs`, `run_mounts_network_and_heredocs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heredocs_as_buildkit_documents() -> Result<()> {
    const TEST: &str = "heredocs_as_buildkit_documents";
    if !shared::testing::require_root(TEST) {
        return Ok(());
    }
    require_tools(&["debootstrap"])?;
    let registry = Registry::start().await?;
    let base = push_debian_image(&registry).await?;
    let work = tempfile::tempdir()?;
    let ctx = work.path().join("ctx");
    let dockerfile = r#"ARG BASE
FROM ${BASE} AS build
RUN useradd --no-create-home user
ARG name=world
WORKDIR /dest
COPY <<EOF single
single file
EOF
COPY <<EOF <<EOF2 double/
first file
EOF
second file
EOF2
RUN mkdir -p /permfiles
COPY --chmod=777 <<EOF /permfiles/all
dummy content
EOF
COPY --chown=user:user <<EOF /permfiles/owned
dummy content
EOF
RUN stat -c "%04a" /permfiles/all >> perms && stat -c "%U:%G" /permfiles/owned >> perms
RUN <<EOF
echo "i am" >> /dest/basic
whoami >> /dest/basic
EOF
RUN cat <<EOF1 | tr '[:upper:]' '[:lower:]' > ./out1; \
	cat <<EOF2 | tr '[:lower:]' '[:upper:]' > ./out2
hello WORLD
EOF1
HELLO world
EOF2
COPY <<EOF /dest/foo-copy
	foo
EOF
COPY <<-EOF /dest/bar-copy
	bar
EOF
RUN <<-EOF sh > /dest/bar3-run
echo "
	bar"
EOF
COPY <<EOF /dest/c1
Hello ${name}!
EOF
COPY <<'EOF' /dest/c2
Hello ${name}!
EOF
COPY <<EOF /dest/q2
Hello "${name}"!
EOF
RUN <<EOF
greeting="Hello"
echo "${greeting} ${name}!" > /dest/r1
EOF
FROM scratch
COPY --from=build /dest /
"#;
    write_files(&ctx, &[("Dockerfile", dockerfile)])?;
    let image =
        berth_build(&work.path().join("root"), &ctx, &[format!("BASE={base}")], &work.path().join("out")).await?;
    let flat = work.path().join("flat");
    flatten(&image, &flat)?;
    let expected = [
        ("single", "single file\n"),
        ("double/EOF", "first file\n"),
        ("double/EOF2", "second file\n"),
        ("perms", "0777\nuser:user\n"),
        ("basic", "i am\nroot\n"),
        ("out1", "hello world\n"),
        ("out2", "HELLO WORLD\n"),
        ("foo-copy", "\tfoo\n"),
        ("bar-copy", "bar\n"),
        ("bar3-run", "\nbar\n"),
        ("c1", "Hello world!\n"),
        ("c2", "Hello ${name}!\n"),
        ("q2", "Hello \"world\"!\n"),
        ("r1", "Hello world!\n"),
    ];
    let mut wrong = Vec::new();
    for (path, want) in expected {
        match fs::read_to_string(flat.join(path)) {
            Ok(got) if got == want => {}
            Ok(got) => wrong.push(format!("/{path}: {got:?}, BuildKit's tests expect {want:?}")),
            Err(e) => wrong.push(format!("/{path}: {e}")),
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

/// `COPY --link` into `/bin/` on the merged-`/usr` base, which the engine's 20.10 frontend
/// cannot build (`--link` came with Dockerfile 1.4), so checked against the Dockerfile
/// reference: a `--link` layer reads nothing of the image, so it cannot follow the image's
/// `/bin -> usr/bin`, and "the destination path created with `--link` will always be a path
/// containing only directories". berth makes that layer (`bin/` a directory, `bin/tool` in
/// it) and warns that `/bin` is a link the step does not follow, naming the path it points
/// to. Without `--link` the step writes through the link (the `merged-usr` case above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_link_into_a_linked_directory_as_buildkit_documents() -> Result<()> {
    const TEST: &str = "copy_link_into_a_linked_directory_as_buildkit_documents";
    if !shared::testing::require_root(TEST) {
        return Ok(());
    }
    require_tools(&["debootstrap"])?;
    let registry = Registry::start().await?;
    let base = push_debian_image(&registry).await?;
    let work = tempfile::tempdir()?;
    let ctx = work.path().join("ctx");
    let dockerfile = "ARG BASE\nFROM ${BASE}\nCOPY --link tool /bin/\nCOPY --link tool /usr/local/bin/\n";
    write_context(&ctx, dockerfile, &[("tool", TOOL, 0o755)])?;
    let root = work.path().join("root");
    let out = work.path().join("out");
    let dest = format!("type=oci,dest={}", out.display());
    let base_arg = format!("BASE={base}");
    let ctx_text = ctx.display().to_string();
    let args = ["build", "--progress", "plain", "--build-arg", &base_arg, "--output", &dest, &ctx_text];
    let ran = berth_ok(&root, &args).await?;
    ensure!(
        ran.stderr.contains("/bin is a symbolic link to usr/bin") && ran.stderr.contains("--link"),
        "no warning about /bin:\n{}",
        ran.stderr
    );
    ensure!(
        !ran.stderr.contains("/usr/local/bin is a symbolic link"),
        "a warning about a real directory:\n{}",
        ran.stderr
    );
    let image = e2e::build::read_layout(&out, "latest")?;
    let link_layer = layer_entries(&image.blobs[image.blobs.len() - 2])?;
    let want = [("bin".to_string(), "dir".to_string()), ("bin/tool".to_string(), "file".to_string())];
    ensure!(link_layer == want.into_iter().collect(), "the --link layer holds {link_layer:?}");
    let flat = work.path().join("flat");
    flatten(&image, &flat)?;
    let bin = fs::symlink_metadata(flat.join("bin"))?;
    ensure!(bin.is_dir(), "/bin is not the directory BuildKit's documentation describes");
    ensure!(fs::metadata(flat.join("bin/tool"))?.mode() & 0o777 == 0o755, "/bin/tool's mode");
    Ok(())
}
