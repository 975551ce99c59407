//! Reading manifests sent by clients: OCI image manifests and indexes, Docker schema 2
//! manifests and manifest lists.
//!
//! The registry calls [`Manifest::parse`] on every manifest PUT to validate it and to learn
//! which blobs and child manifests it refers to and which `subject` it names. The bytes a
//! client sent are stored as they are; this module only reads them. The shapes follow the OCI
//! image spec (manifest.md, image-index.md, descriptor.md); the Docker types have the same
//! shape under other media types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_type;

/// A content descriptor (image-spec descriptor.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type of the referenced content.
    pub media_type: String,
    /// The digest of the referenced content.
    pub digest: Digest,
    /// The size in bytes of the referenced content.
    pub size: u64,
    /// The type of an artifact, when the descriptor points to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Arbitrary metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The platform of an index entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Other places the content may be fetched from (non-distributable layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

/// The platform an index entry is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture, as Go's GOARCH (`amd64`, `arm64`, …).
    pub architecture: String,
    /// Operating system, as Go's GOOS (`linux`, …).
    pub os: String,
    /// CPU variant (`v8`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The body is not a manifest berth accepts; the message says why.
    #[error("invalid manifest: {0}")]
    Invalid(String),
}

/// What berth needs to know about a manifest it stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The media type: the body's `mediaType`, else the request's `Content-Type`, else
    /// inferred from the shape.
    pub media_type: String,
    /// The config blob (image manifests only).
    pub config: Option<Descriptor>,
    /// The layer blobs (image manifests only).
    pub layers: Vec<Descriptor>,
    /// The child manifests (indexes only).
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to, for the referrers API.
    pub subject: Option<Descriptor>,
    /// The artifact type: `artifactType`, else (image manifests) the config's media type.
    pub artifact_type: Option<String>,
    /// The manifest's annotations.
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The wire shape, deliberately loose so the checks below can say precisely what is wrong.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<serde_json::Value>,
    layers: Option<serde_json::Value>,
    manifests: Option<serde_json::Value>,
    subject: Option<serde_json::Value>,
    annotations: Option<BTreeMap<String, String>>,
}

fn invalid(msg: impl Into<String>) -> ManifestError {
    ManifestError::Invalid(msg.into())
}

fn descriptor(v: serde_json::Value, what: &str) -> Result<Descriptor, ManifestError> {
    serde_json::from_value(v).map_err(|e| invalid(format!("{what}: {e}")))
}

fn descriptors(v: serde_json::Value, what: &str) -> Result<Vec<Descriptor>, ManifestError> {
    match v {
        serde_json::Value::Array(items) => items.into_iter().map(|d| descriptor(d, what)).collect(),
        _ => Err(invalid(format!("{what} must be an array"))),
    }
}

/// The media type part of a `Content-Type` header, without parameters.
fn bare_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

impl Manifest {
    /// Validates `body` as a manifest sent with `content_type` and extracts its references.
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let raw: Raw = serde_json::from_slice(body).map_err(|e| invalid(format!("not a JSON manifest: {e}")))?;
        match raw.schema_version.as_ref().and_then(|v| v.as_u64()) {
            Some(2) => {}
            Some(1) => return Err(invalid("schema version 1 manifests are not supported")),
            _ => return Err(invalid("schemaVersion must be 2")),
        }
        let header = content_type.map(bare_type).filter(|t| !t.is_empty());
        let media_type = match (raw.media_type.as_deref(), header) {
            (Some(body), Some(header)) if body != header => {
                return Err(invalid(format!("mediaType {body:?} does not match Content-Type {header:?}")))
            }
            (Some(t), _) | (None, Some(t)) => t.to_string(),
            (None, None) if raw.manifests.is_some() => media_type::OCI_INDEX.to_string(),
            (None, None) => media_type::OCI_MANIFEST.to_string(),
        };
        let subject = raw.subject.map(|s| descriptor(s, "subject")).transpose()?;
        if media_type::is_image_manifest(&media_type) {
            let config = descriptor(raw.config.ok_or_else(|| invalid("config is required"))?, "config")?;
            let layers = descriptors(raw.layers.ok_or_else(|| invalid("layers is required"))?, "layers")?;
            let artifact_type = raw.artifact_type.or_else(|| Some(config.media_type.clone()));
            Ok(Manifest {
                media_type,
                config: Some(config),
                layers,
                manifests: Vec::new(),
                subject,
                artifact_type,
                annotations: raw.annotations,
            })
        } else if media_type::is_index(&media_type) {
            let manifests = descriptors(raw.manifests.ok_or_else(|| invalid("manifests is required"))?, "manifests")?;
            Ok(Manifest {
                media_type,
                config: None,
                layers: Vec::new(),
                manifests,
                subject,
                artifact_type: raw.artifact_type,
                annotations: raw.annotations,
            })
        } else {
            Err(invalid(format!("unsupported manifest media type {media_type:?}")))
        }
    }

    /// True for indexes and manifest lists.
    pub fn is_index(&self) -> bool {
        media_type::is_index(&self.media_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{D}","size":0}},"layers":[{{"mediaType":"{}","digest":"{D}","size":0}}]{extra}}}"#,
            media_type::OCI_MANIFEST,
            media_type::OCI_CONFIG,
            media_type::OCI_LAYER_GZIP
        )
    }

    #[test]
    fn parses_image_manifest_with_subject() {
        let subject = format!(r#","subject":{{"mediaType":"{}","digest":"{D}","size":2}}"#, media_type::OCI_MANIFEST);
        let m = Manifest::parse(image(&subject).as_bytes(), Some(media_type::OCI_MANIFEST)).unwrap();
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.subject.unwrap().size, 2);
        assert_eq!(m.artifact_type.as_deref(), Some(media_type::OCI_CONFIG));
    }

    #[test]
    fn refuses_mismatched_content_type() {
        let err = Manifest::parse(image("").as_bytes(), Some(media_type::OCI_INDEX)).unwrap_err();
        assert!(err.to_string().contains("does not match"));
    }

    #[test]
    fn refuses_broken_manifests() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"schemaVersion":1}"#,
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
            r#"{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:00","size":1}]}"#,
            r#"{"schemaVersion":2,"manifests":{}}"#,
            r#"{"schemaVersion":2,"mediaType":"text/plain","config":{}}"#,
        ] {
            assert!(Manifest::parse(bad.as_bytes(), None).is_err(), "{bad}");
        }
    }

    #[test]
    fn infers_index() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{D}","size":3,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            media_type::OCI_MANIFEST
        );
        let m = Manifest::parse(body.as_bytes(), None).unwrap();
        assert!(m.is_index());
        assert_eq!(m.manifests[0].platform.as_ref().unwrap().architecture, "amd64");
    }
}
