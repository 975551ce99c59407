//! Differential tests of `berth build` against Debian's buildah (`buildah bud --layers
//! --timestamp 0 --isolation chroot`): the same Dockerfiles, from the same busybox image in
//! an in-process berth registry, must give the same root file system (paths, types, modes,
//! owners, contents, link targets) and the same image config (Env, Cmd, Entrypoint,
//! WorkingDir, User, ExposedPorts, Labels, Volumes, StopSignal, Healthcheck). berth runs the
//! RUN steps with its default, the embedded runtime (`berth oci-runtime`).
//!
//! buildah 1.28 has no heredocs, so these Dockerfiles use none. buildah adds the label
//! `io.buildah.version`, and its RUN steps leave empty `/etc/hostname`, `/etc/hosts`,
//! `/etc/resolv.conf` and `/run` behind in the image: those are left out of buildah's side of
//! the comparison, and berth's image must not have them. It also ignores `SHELL` for the
//! shell form of `CMD` (Docker and BuildKit do not), so no case has `CMD` after `SHELL`. Needs `buildah`
//! (`apt-get install -y buildah`), which the test command installs.

use anyhow::{ensure, Result};
use e2e::build::{berth_build, image_differences, write_files, BaseRegistry, Reference};
use e2e::{require_tools, run, run_ok};

struct Case {
    name: &'static str,
    dockerfile: &'static str,
    files: &'static [(&'static str, &'static str)],
    build_args: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "files-and-metadata",
        dockerfile: r#"ARG BASE
FROM ${BASE}
ENV A=1 B="two words"
ENV C=${A}-x
WORKDIR /app
COPY . .
COPY --chown=1000:1000 data/ /data/
COPY --chmod=0755 script.sh /usr/local/bin/
COPY a.txt b.txt /multi/
COPY a.txt /renamed.txt
COPY link /followed
COPY data/x/*.txt /globbed/
ADD archive.tar.gz /extracted/
ADD archive.tar.bz2 /extracted-bz2/
ADD archive.tar.xz /extracted-xz/
ADD notar.xz /copied-xz/
ADD plain.txt /added/
RUN mkdir -p /var/made && echo "$A $B $C" > /app/env.txt && chmod 600 /app/env.txt && ln -s /app/env.txt /app/link-to-env
RUN rm /app/a.txt && chown 1000:1000 /app/b.txt
USER 1000:1000
EXPOSE 80 443/tcp 53/udp
VOLUME ["/data", "/logs"]
LABEL a=b "c d"="e f"
STOPSIGNAL SIGINT
HEALTHCHECK --interval=10s --timeout=3s --retries=2 CMD ["true"]
ENTRYPOINT ["sh", "-c"]
CMD ["echo hi"]
"#,
        files: &[
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
            ("data/x/y.txt", "y\n"),
            ("data/x/z.txt", "z\n"),
            ("data/top", "top\n"),
            ("script.sh", "#!/bin/sh\necho script\n"),
            ("keep.log", "kept\n"),
            ("drop.log", "dropped\n"),
            (".dockerignore", "*.log\n!keep.log\n"),
        ],
        build_args: &[],
    },
    Case {
        name: "stages-and-args",
        dockerfile: r#"ARG BASE
ARG V=1
FROM ${BASE} AS build
ARG V
RUN mkdir -p /out/sub && echo "v=$V" > /out/v.txt && touch /out/sub/empty
FROM ${BASE} AS unused
RUN echo never > /never
FROM ${BASE}
COPY --from=build /out /copied
COPY --from=build /out/v.txt /single.txt
ARG LATE=late
ENV FROM_ENV=env
RUN echo "$LATE $FROM_ENV" > /late.txt
CMD pwd
SHELL ["/bin/sh", "-e", "-c"]
RUN echo shell > /shell.txt
WORKDIR rel
WORKDIR more
RUN pwd > /pwd.txt
"#,
        files: &[],
        build_args: &["V=2"],
    },
    Case {
        name: "deletions-and-replacements",
        dockerfile: r#"ARG BASE
FROM ${BASE}
RUN mkdir -p /a/b/c && echo 1 > /a/b/c/f && echo 2 > /a/file && ln -s /a/file /a/link
RUN rm -rf /a/b && rm /a/file && mkdir /a/file && echo new > /a/file/inside && rm /bin/wc
RUN rm -rf /root && mkdir -m 0700 /root && touch /root/.profile
COPY sub/ /a/
"#,
        files: &[("sub/added", "added\n"), ("sub/deep/er", "er\n")],
        build_args: &[],
    },
];

/// Paths whose metadata buildah and BuildKit disagree on, where berth follows BuildKit (the
/// reference, issue 14): the directories ADD makes to extract an archive into get the
/// archive's `./` owners from buildah, 0755 and root's (or `--chown`'s) ids from BuildKit
/// (`build_fidelity`'s case `add-chown-archive-dir`). Their other differences still count.
const BUILDKIT_WINS: &[&str] = &["extracted", "extracted-bz2", "extracted-xz"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_and_buildah_build_the_same_images() -> Result<()> {
    require_tools(&["buildah"])?;
    let base = BaseRegistry::start().await?;
    let work = tempfile::tempdir()?;
    let root = work.path().join("root");
    let mut failures = Vec::new();
    for case in CASES {
        let ctx = work.path().join(case.name);
        write_files(&ctx, &[("Dockerfile", case.dockerfile)])?;
        write_files(&ctx, case.files)?;
        if case.name == "files-and-metadata" {
            std::os::unix::fs::symlink("a.txt", ctx.join("link"))?;
            write_files(&ctx.join("arch"), &[("inner/one", "1\n"), ("two", "2\n")])?;
            write_files(&ctx, &[("plain.txt", "plain\n")])?;
            let arch = ctx.join("arch").to_string_lossy().into_owned();
            for (flag, name) in [("-czf", "archive.tar.gz"), ("-cjf", "archive.tar.bz2"), ("-cJf", "archive.tar.xz")] {
                let archive = ctx.join(name).to_string_lossy().into_owned();
                run_ok("tar", &[flag, &archive, "--owner=1234", "--group=5678", "--numeric-owner", "-C", &arch, "."])
                    .await?;
            }
            // xz holding no tar: copied as it is.
            write_files(&ctx, &[("notar", "not a tar\n")])?;
            run_ok("xz", &[&ctx.join("notar").to_string_lossy()]).await?;
        }
        let mut args = vec![format!("BASE={}", base.base)];
        args.extend(case.build_args.iter().map(|a| a.to_string()));
        let ours = berth_build(&root, &ctx, &args, &work.path().join(format!("{}-berth", case.name))).await?;
        let tag = format!("localhost/berth-diff-{}", case.name);
        let dir = work.path().join(format!("{}-buildah", case.name));
        let theirs = Reference::Buildah.build(&tag, &ctx, &args, &dir).await?;
        let mut diffs = image_differences(&ours, &theirs, Reference::Buildah, work.path())?;
        diffs.retain(|d| !BUILDKIT_WINS.iter().any(|p| d.starts_with(&format!("{p}: berth dir "))));
        if !diffs.is_empty() {
            failures.push(format!("{}:\n  {}", case.name, diffs.join("\n  ")));
        }
    }
    // buildah pulled the base into its own storage: leave nothing behind.
    let _ = run("buildah", &["rmi", "-f", &base.base]).await;
    ensure!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}
