//! Audit events: what a request changed, told by the handler that changed it.
//!
//! A handler that pushed or deleted something attaches an [`Event`] to its response's
//! extensions ([`Event::attach`]); the access-control middleware ([`crate::auth`]), which
//! knows who the caller is and where it came from, logs it on the `audit` tracing target
//! ([`Event::log`]), and [`crate::webhooks`] tells the configured receivers. Nothing is
//! guessed from methods and status codes.

use std::fmt::Display;

use axum::response::Response;

/// Something a request changed in a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A manifest was pushed under `reference` (a tag or its digest), and tagged with `tags`
    /// (the `tag` query parameters).
    ManifestPushed {
        /// The repository.
        repo: String,
        /// The tag or digest of the request's path.
        reference: String,
        /// The manifest's digest.
        digest: String,
        /// Further tags pointed at it.
        tags: Vec<String>,
        /// Its media type.
        media_type: String,
        /// Its size in bytes.
        size: u64,
    },
    /// A manifest was read by a `GET` (told to webhooks that ask for pulls; not audited).
    ManifestPulled {
        /// The repository.
        repo: String,
        /// The tag or digest of the request's path.
        reference: String,
        /// The manifest's digest.
        digest: String,
        /// Its media type.
        media_type: String,
        /// Its size in bytes.
        size: u64,
    },
    /// A manifest or a tag was deleted.
    ManifestDeleted {
        /// The repository.
        repo: String,
        /// The tag or digest deleted.
        reference: String,
    },
    /// A blob became readable in a repository: uploaded, or mounted from another one.
    BlobPushed {
        /// The repository.
        repo: String,
        /// The blob's digest.
        digest: String,
        /// The repository it was mounted from (`*`: any that held it), `None` for an upload.
        mounted_from: Option<String>,
    },
    /// A blob was removed from a repository.
    BlobDeleted {
        /// The repository.
        repo: String,
        /// The blob's digest.
        digest: String,
    },
}

impl Event {
    /// Attaches the event to the response that confirms it.
    pub fn attach(self, mut resp: Response) -> Response {
        resp.extensions_mut().insert(self);
        resp
    }

    /// Logs the event on the `audit` target: who did it, from where, and what.
    pub fn log(&self, who: &dyn Display, client: &dyn Display) {
        match self {
            Event::ManifestPushed { repo, reference, digest, tags, .. } => tracing::info!(
                target: "audit",
                event = "push",
                who = %who,
                client = %client,
                repo = repo.as_str(),
                reference = reference.as_str(),
                digest = digest.as_str(),
                tags = tags.join(","),
                "manifest pushed",
            ),
            Event::ManifestPulled { .. } => {}
            Event::ManifestDeleted { repo, reference } => tracing::info!(
                target: "audit",
                event = "delete",
                who = %who,
                client = %client,
                repo = repo.as_str(),
                reference = reference.as_str(),
                "manifest or tag deleted",
            ),
            Event::BlobPushed { repo, digest, mounted_from } => tracing::info!(
                target: "audit",
                event = "push",
                who = %who,
                client = %client,
                repo = repo.as_str(),
                digest = digest.as_str(),
                mounted_from = mounted_from.as_deref().unwrap_or("-"),
                "blob pushed",
            ),
            Event::BlobDeleted { repo, digest } => tracing::info!(
                target: "audit",
                event = "delete",
                who = %who,
                client = %client,
                repo = repo.as_str(),
                digest = digest.as_str(),
                "blob deleted",
            ),
        }
    }
}
