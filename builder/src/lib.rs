//! The image builder: `berth build` turns a Dockerfile and a context directory into an OCI
//! image, reproducibly and with a content-addressed layer cache.
//!
//! The pipeline, module by module:
//! - [`syntax`] lexes the Dockerfile (directives, continuations, heredocs, flags) and
//!   [`instructions`] types each instruction; [`expand`] does `$VAR` expansion and
//!   [`ignore`] reads `.dockerignore`.
//! - [`plan`] groups the steps into stages, resolves `ARG` scoping and the stage graph.
//! - [`build`] executes the stages: [`context`] selects and hashes COPY sources,
//!   [`archive`] decides which ADD sources are archives and decompresses them,
//!   [`tarball`] writes reproducible layers compressed on every core, [`run`] runs RUN
//!   steps in a container and diffs their root, [`fsindex`] knows the image's paths,
//!   [`config`] is the image config, and [`cache`] maps step keys to layers.
//! - [`output`] writes the result as an OCI layout, a docker-archive, or pushes it.
//! - [`progress`] shows it all, BuildKit-style.
//! - [`prune`] removes unused cache entries and their layers (`berth build prune`).
//!
//! `cli`'s `berth build` calls [`build::Builder::build`] and [`output`]. Each module has its
//! own error enum; messages name the file, step or path involved and do not repeat their
//! `source()`, so print the chain (anyhow's `{:#}`).
#![deny(missing_docs)]

pub mod archive;
pub mod build;
pub mod cache;
pub mod config;
pub mod context;
pub mod expand;
pub mod fsindex;
pub mod ignore;
pub mod instructions;
pub mod output;
pub mod plan;
pub mod progress;
pub mod prune;
pub mod run;
pub mod syntax;
pub mod tarball;

#[cfg(test)]
mod never_panics;

pub use build::{BuildError, Builder, Built, Options};
pub use run::{Cancel, RuntimeCommand};
pub use tarball::Compression;
