//! The OCI content model that every berth crate shares.
//!
//! `registry`, `builder`, `runtime` and `cli` all speak in these types: a [`Digest`] names
//! content, a [`RepoName`] and a [`Tag`] name where it lives, a [`Reference`] is what a
//! manifest URL points at, and [`manifest`] reads the manifests a client sends. An
//! [`ImageRef`] is what a person types (`busybox`, `ghcr.io/org/app:v1`), [`platform`]
//! picks an index entry for a machine, and [`client`] talks to registries. One helper per
//! job for what people type, for every crate: [`size`] (`64m`), [`duration`] (`1h30m`),
//! [`glob`] (`**/*.md`) and [`query`] (query strings, percent-encoding). This crate knows
//! nothing of HTTP servers or storage back ends.
#![deny(missing_docs)]

pub mod client;
pub mod date;
pub mod digest;
pub mod duration;
pub mod glob;
pub mod image_ref;
pub mod layer;
pub mod layout;
pub mod manifest;
pub mod media_type;
pub mod name;
pub mod platform;
pub mod query;
pub mod size;
#[cfg(feature = "testing")]
pub mod testing;

pub use digest::{Algorithm, Digest, DigestError, Hasher};

/// An error and its causes on one line, `outer: cause: root cause`, as anyhow's `{:#}`
/// prints them. Error messages in berth never repeat their `source()`, so a log line or a
/// message that shows only `{}` would lose the cause; this shows all of it.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}
pub use image_ref::{ImageRef, ImageRefError};
pub use name::{NameError, Reference, RepoName, Tag};
