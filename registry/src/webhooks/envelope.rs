//! distribution's notification envelope (its `notifications/event.go`): what a webhook
//! receiver gets, as `application/vnd.docker.distribution.events.v1+json`.
//!
//! ```json
//! {"events":[{"id":"…","timestamp":"2026-01-01T00:00:00Z","action":"push",
//!   "target":{"mediaType":"…","digest":"sha256:…","size":1234,"repository":"team/app",
//!             "url":"http://host/v2/team/app/manifests/sha256:…","tag":"v1"},
//!   "request":{"id":"…","addr":"10.0.0.1","host":"host","method":"PUT","useragent":"docker/…"},
//!   "actor":{"name":"user:alice"},"source":{"addr":"0.0.0.0:5000","instanceID":"…"}}]}
//! ```

use bytes::Bytes;
use serde::Serialize;

use super::{EventKind, RequestInfo};
use crate::events::Event;

/// The content type of the envelope.
pub const MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// The envelope.
#[derive(Debug, Serialize)]
pub struct Envelope {
    /// The events (berth sends one per request).
    pub events: Vec<Notification>,
}

/// One event.
#[derive(Debug, Serialize)]
pub struct Notification {
    /// A random id.
    pub id: String,
    /// When, RFC 3339.
    pub timestamp: String,
    /// `push`, `delete` or `pull`.
    pub action: &'static str,
    /// What it was about.
    pub target: Target,
    /// The request.
    pub request: RequestPart,
    /// Who.
    pub actor: Actor,
    /// Which server.
    pub source: Source,
}

/// The manifest or tag concerned.
#[derive(Debug, Default, Serialize)]
pub struct Target {
    /// Its media type (empty for deletions).
    #[serde(rename = "mediaType", skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// Its digest (absent for a tag deletion).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Its size (0 for deletions).
    #[serde(skip_serializing_if = "is_zero")]
    pub size: u64,
    /// The repository.
    pub repository: String,
    /// Where to fetch it (absent for deletions).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The tag (for a push or pull by tag, or a tag's deletion).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tag: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The request part.
#[derive(Debug, Serialize)]
pub struct RequestPart {
    /// A random id.
    pub id: String,
    /// The client's address.
    pub addr: String,
    /// The `Host` it was sent to.
    pub host: String,
    /// The method.
    pub method: String,
    /// The `User-Agent`.
    pub useragent: String,
}

/// Who made the request.
#[derive(Debug, Serialize)]
pub struct Actor {
    /// `anonymous`, `user:NAME`, `robot:NAME`, or the subject of an external token.
    pub name: String,
}

/// The server that saw the event.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// The address it listens on.
    pub addr: String,
    /// A random id of this process.
    #[serde(rename = "instanceID")]
    pub instance_id: String,
}

/// A random 128-bit id, in hex.
pub fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The kind of an event and its repository; `None` for events webhooks are not told (blob
/// uploads, mounts and deletions: distribution's receivers mostly ignore them).
pub(super) fn kind_and_repository(event: &Event) -> Option<(EventKind, &str)> {
    match event {
        Event::ManifestPushed { repo, .. } => Some((EventKind::Push, repo.as_str())),
        Event::ManifestPulled { repo, .. } => Some((EventKind::Pull, repo.as_str())),
        Event::ManifestDeleted { repo, .. } => Some((EventKind::Delete, repo.as_str())),
        Event::BlobPushed { .. } | Event::BlobDeleted { .. } => None,
    }
}

/// The tag of a reference, when it is not a digest.
fn tag_of(reference: &str) -> String {
    if reference.contains(':') {
        String::new()
    } else {
        reference.to_string()
    }
}

/// The envelope's target.
fn target(event: &Event, request: &RequestInfo) -> Target {
    let scheme = if request.tls { "https" } else { "http" };
    let url = |repo: &str, digest: &str| format!("{scheme}://{}/v2/{repo}/manifests/{digest}", request.host);
    match event {
        Event::ManifestPushed { repo, reference, digest, tags, media_type, size } => Target {
            media_type: media_type.clone(),
            digest: digest.clone(),
            size: *size,
            repository: repo.clone(),
            url: url(repo, digest),
            // A push by digest with `?tag=` parameters: the first of them.
            tag: Some(tag_of(reference))
                .filter(|t| !t.is_empty())
                .or_else(|| tags.first().cloned())
                .unwrap_or_default(),
        },
        Event::ManifestPulled { repo, reference, digest, media_type, size } => Target {
            media_type: media_type.clone(),
            digest: digest.clone(),
            size: *size,
            repository: repo.clone(),
            url: url(repo, digest),
            tag: tag_of(reference),
        },
        Event::ManifestDeleted { repo, reference } => {
            let tag = tag_of(reference);
            let digest = if tag.is_empty() { reference.clone() } else { String::new() };
            Target { digest, tag, repository: repo.clone(), ..Target::default() }
        }
        Event::BlobPushed { repo, .. } | Event::BlobDeleted { repo, .. } => {
            Target { repository: repo.clone(), ..Target::default() }
        }
    }
}

/// The envelope of `event`, serialized.
pub(super) fn body(event: &Event, request: &RequestInfo, source: &Source) -> Bytes {
    let action = match kind_and_repository(event) {
        Some((EventKind::Pull, _)) => "pull",
        Some((EventKind::Delete, _)) => "delete",
        _ => "push",
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let envelope = Envelope {
        events: vec![Notification {
            id: random_id(),
            timestamp: shared::date::rfc3339(now as i64),
            action,
            target: target(event, request),
            request: RequestPart {
                id: random_id(),
                addr: request.addr.clone(),
                host: request.host.clone(),
                method: request.method.clone(),
                useragent: request.useragent.clone(),
            },
            actor: Actor { name: request.actor.clone() },
            source: source.clone(),
        }],
    };
    // Plain strings and numbers: serializing cannot fail.
    Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default())
}

/// The `X-Berth-Signature-256` value of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    format!("sha256={}", hex::encode(aws_lc_rs::hmac::sign(&key, body).as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_the_hmac_of_the_body() {
        // RFC 4231, test case 2.
        let sig = signature("Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn envelopes_say_what_happened() {
        let request = RequestInfo {
            addr: "10.0.0.1".into(),
            host: "reg:5000".into(),
            method: "PUT".into(),
            useragent: "docker/20.10".into(),
            actor: "user:alice".into(),
            tls: false,
        };
        let source = Source { addr: "0.0.0.0:5000".into(), instance_id: "me".into() };
        let pushed = Event::ManifestPushed {
            repo: "team/app".into(),
            reference: "v1".into(),
            digest: "sha256:abc".into(),
            tags: vec![],
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 123,
        };
        let v: serde_json::Value = serde_json::from_slice(&body(&pushed, &request, &source)).unwrap();
        let e = &v["events"][0];
        assert_eq!(e["action"], "push");
        assert_eq!(e["target"]["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!((e["target"]["digest"].as_str(), e["target"]["size"].as_u64()), (Some("sha256:abc"), Some(123)));
        assert_eq!((e["target"]["repository"].as_str(), e["target"]["tag"].as_str()), (Some("team/app"), Some("v1")));
        assert_eq!(e["target"]["url"], "http://reg:5000/v2/team/app/manifests/sha256:abc");
        assert_eq!(
            (e["request"]["method"].as_str(), e["request"]["useragent"].as_str()),
            (Some("PUT"), Some("docker/20.10"))
        );
        assert_eq!((e["actor"]["name"].as_str(), e["source"]["instanceID"].as_str()), (Some("user:alice"), Some("me")));
        assert!(shared::date::parse_rfc3339(e["timestamp"].as_str().unwrap()).is_some());
        let deleted = Event::ManifestDeleted { repo: "team/app".into(), reference: "sha256:abc".into() };
        let v: serde_json::Value = serde_json::from_slice(&body(&deleted, &request, &source)).unwrap();
        let t = &v["events"][0]["target"];
        assert_eq!(
            (v["events"][0]["action"].as_str(), t["digest"].as_str(), t.get("tag")),
            (Some("delete"), Some("sha256:abc"), None)
        );
    }
}
