//! The resume text of an S3 multipart upload (see the module doc of [`super`]): what a
//! write returns and the next write, `complete` or `abort` continues from.

use serde::{Deserialize, Serialize};

use super::backend;
use crate::storage::StorageError;

/// A part uploaded: its number, the ETag S3 gave it, and its size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Part {
    pub(super) n: i32,
    pub(super) etag: String,
    pub(super) size: u64,
}

/// Bytes below the part minimum, kept as an object of their own until more arrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Tail {
    pub(super) key: String,
    pub(super) size: u64,
}

/// An upload's state after a write: its resume text (see the module's doc).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Multipart {
    /// The data object's key (without the prefix).
    pub(super) key: String,
    pub(super) upload_id: String,
    pub(super) parts: Vec<Part>,
    pub(super) tail: Option<Tail>,
    pub(super) total: u64,
    /// The tail of the point this write started from, when this write replaced it: no
    /// longer needed once this write is recorded, so the next write deletes it.
    #[serde(default)]
    pub(super) replaced: Option<Tail>,
}

impl Multipart {
    /// Parses a resume text; an empty one (no write yet) is `NotFound`.
    pub(super) fn parse(upload: &str, resume: &str) -> Result<Multipart, StorageError> {
        if resume.is_empty() {
            return Err(StorageError::NotFound(upload.to_string()));
        }
        serde_json::from_str(resume).map_err(|e| backend(upload, format!("bad resume text: {e}")))
    }
}
