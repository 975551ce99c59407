//! Conformance checks for the OCI Distribution Specification v1.1, written from the spec text
//! (`spec.md` of opencontainers/distribution-spec).
//!
//! Each check is an async function that takes a registry's base URL (`http://127.0.0.1:5000`)
//! and a repository name it may use freely. It pushes fresh random content, so runs are
//! independent and can be repeated against a long-lived registry, exercises one group of
//! requirements, and returns a [`CheckError`] showing the request sent and the response
//! received (status, headers, body) when the registry does not answer as the spec requires.
//! Where the spec leaves the registry a choice, a check asserts what berth does and says so
//! in a comment.
//!
//! The checks are grouped by the spec's conformance workflows: [`pull`], [`push`],
//! [`discovery`] and [`management`]. `tests/conformance.rs` runs every one of them against an
//! in-process berth server, or against the registry named by `BERTH_CONFORMANCE_URL`.
#![deny(missing_docs)]

pub mod discovery;
pub mod fixtures;
pub mod http;
pub mod management;
pub mod pull;
pub mod push;
mod steps;

pub use http::{CheckError, Exchange, Registry, Request};
