//! Fresh random content for the checks: blobs, descriptors, and manifests of every media type
//! the checks push (OCI image manifest and index, Docker schema 2 manifest and manifest list),
//! so that each run writes content no earlier run wrote.
//!
//! The media type strings are spelled out here rather than taken from berth's `shared` crate:
//! the checks follow the specs, not the implementation under test.

use rand::RngCore;
use serde_json::{json, Value};
use shared::{Algorithm, Digest};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The OCI empty descriptor (`{}`), the config of artifacts.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// `len` random bytes.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0; len];
    rand::rng().fill_bytes(&mut data);
    data
}

/// `len` random lowercase hex digits, for unique names.
pub fn random_hex(len: usize) -> String {
    random_bytes(len.div_ceil(2)).iter().map(|b| format!("{b:02x}")).collect::<String>()[..len].to_string()
}

/// The sha256 digest of content nobody has pushed.
pub fn random_digest() -> Digest {
    Digest::sha256_of(&random_bytes(32))
}

/// A blob and its digest.
#[derive(Debug, Clone)]
pub struct Blob {
    /// The content.
    pub data: Vec<u8>,
    /// Its digest.
    pub digest: Digest,
}

impl Blob {
    /// A blob of `data` with a sha256 digest.
    pub fn new(data: Vec<u8>) -> Blob {
        let digest = Digest::sha256_of(&data);
        Blob { data, digest }
    }

    /// A blob of `data` with a sha512 digest.
    pub fn new_sha512(data: Vec<u8>) -> Blob {
        let digest = Digest::of(Algorithm::Sha512, &data);
        Blob { data, digest }
    }

    /// `len` random bytes.
    pub fn random(len: usize) -> Blob {
        Blob::new(random_bytes(len))
    }

    /// A random but well-formed image config.
    pub fn config() -> Blob {
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": [] },
            "config": { "Labels": { "org.berth.conformance.nonce": random_hex(32) } },
        });
        Blob::new(to_bytes(&config))
    }

    /// The empty JSON object, `{}`: the config of artifacts (image-spec, "Guidance for an
    /// Empty Descriptor").
    pub fn empty_json() -> Blob {
        Blob::new(b"{}".to_vec())
    }

    /// A descriptor of this blob.
    pub fn descriptor(&self, media_type: &str) -> Value {
        json!({ "mediaType": media_type, "digest": self.digest.to_string(), "size": self.data.len() })
    }
}

/// A manifest's bytes, media type and digest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The media type, sent as `Content-Type`.
    pub media_type: String,
    /// The bytes pushed.
    pub body: Vec<u8>,
    /// The sha256 of the bytes.
    pub digest: Digest,
}

impl Manifest {
    /// A manifest of exactly these bytes.
    pub fn from_bytes(media_type: &str, body: Vec<u8>) -> Manifest {
        let digest = Digest::sha256_of(&body);
        Manifest { media_type: media_type.to_string(), body, digest }
    }

    /// A manifest serialised from `value`.
    pub fn from_json(media_type: &str, value: &Value) -> Manifest {
        Manifest::from_bytes(media_type, to_bytes(value))
    }

    /// A descriptor of this manifest.
    pub fn descriptor(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest.to_string(), "size": self.body.len() })
    }

    /// A descriptor of this manifest with a platform, as index entries carry.
    pub fn platform_descriptor(&self) -> Value {
        let mut d = self.descriptor();
        d["platform"] = json!({ "architecture": "amd64", "os": "linux" });
        d
    }
}

/// An OCI image manifest (image-spec `manifest.md`).
pub fn image_manifest(config: &Value, layers: &[Value]) -> Value {
    json!({ "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": layers })
}

/// An OCI image index (image-spec `image-index.md`).
pub fn image_index(manifests: &[Value]) -> Value {
    json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests })
}

/// A Docker image manifest, schema 2.
pub fn docker_manifest(config: &Value, layers: &[Value]) -> Value {
    json!({ "schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": config, "layers": layers })
}

/// A Docker manifest list.
pub fn docker_manifest_list(manifests: &[Value]) -> Value {
    json!({ "schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": manifests })
}

/// Compact JSON bytes of `value`.
pub fn to_bytes(value: &Value) -> Vec<u8> {
    // Serialising a `Value` cannot fail: its keys are strings.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_content_differs() {
        assert_ne!(Blob::config().digest, Blob::config().digest);
        assert_eq!(random_hex(7).len(), 7);
        assert!(random_hex(8).bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn descriptors_name_the_content() {
        let blob = Blob::new(b"{}".to_vec());
        let d = blob.descriptor(OCI_EMPTY);
        assert_eq!(d["digest"], "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
        assert_eq!(d["size"], 2);
        assert!(Blob::new_sha512(vec![1]).digest.to_string().starts_with("sha512:"));
    }
}
