//! The container runtime's image side: a local content-addressed store, pulling images into
//! it, unpacking layers into shared snapshots, and removing images again.
//!
//! `berth pull`, `push`, `images`, `rmi`, `tag`, `save`, `load` and `inspect` (in `cli`) call
//! [`Store`] ([`pull`], [`push`], [`archive`], [`inspect`]), and `berth build -t` records what
//! it built with [`Store::import`]; the registry client is [`shared::client`]. The store's
//! layout on disk is drawn in [`paths`].
//! `berth run`, `ps`, `logs`, `stop` and `rm` call [`container`]: containers whose roots are
//! overlays of the snapshots (or [`Store::flatten`]ed copies), run as OCI bundles by an
//! embedded runtime or by runc/crun. `berth volume` and `-v NAME:/path` call [`volumes`].
//!
//! Each module has its own error enum; a message names what failed (path, digest, layer
//! entry) and does not repeat its `source()`, so print the chain (anyhow's `{:#}`).
#![deny(missing_docs)]

pub mod archive;
pub mod container;
pub mod content;
pub mod images;
pub mod import;
pub mod inroot;
pub mod inspect;
pub mod network;
pub mod paths;
pub mod progress;
pub mod pull;
pub mod push;
pub mod snapshots;
pub mod store;
pub mod unpack;
pub mod volumes;

pub use archive::ArchiveError;
#[cfg(test)]
mod never_panics;

pub use images::{ImageRecord, LayerRecord};
pub use import::{ImportError, LocalImage};
pub use inspect::{inspect_container, InspectError};
pub use progress::{NoProgress, Progress, PullEvent, TerminalProgress};
pub use pull::{PullError, PullOptions};
pub use push::{PushError, PushEvent, PushProgress};
pub use store::{Collected, Removed, Store, StoreError, DEFAULT_ROOT};
