//! Image references as people type them: `[host[:port]/]repository[:tag][@digest]`.
//!
//! The grammar is distribution's `reference` package (reference.go), normalised the way the
//! Docker CLI does it: a reference without a registry is on Docker Hub (`docker.io`), a
//! Docker Hub repository without a `/` is under `library/`, and a reference with neither tag
//! nor digest means `:latest`. So `busybox` is `docker.io/library/busybox:latest`.
//!
//! The first path component is a registry when it contains a `.` or a `:`, or is
//! `localhost`; otherwise the whole path is the repository. `berth pull` and the registry
//! client parse references with [`ImageRef`]; the local image store keys images by the
//! canonical form ([`ImageRef`]'s `Display`), and `berth images` shows the short form
//! ([`ImageRef::familiar_name`]).

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::name::{NameError, Reference, RepoName, Tag, MAX_NAME_LEN};

/// The registry a reference without one is on.
pub const DOCKER_HUB: &str = "docker.io";

/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    /// Nothing was given.
    #[error("empty image reference")]
    Empty,
    /// The registry part is not `host[:port]`.
    #[error("invalid registry {registry:?} in image reference {input:?}")]
    Registry {
        /// The registry part.
        registry: String,
        /// The whole reference.
        input: String,
    },
    /// The repository contains upper-case letters, which the grammar forbids.
    #[error("invalid image reference {0:?}: repository names must be lowercase")]
    Uppercase(String),
    /// The repository, tag or digest breaks its grammar.
    #[error("invalid image reference {input:?}")]
    Name {
        /// The whole reference.
        input: String,
        /// Which part is wrong.
        #[source]
        source: NameError,
    },
    /// Registry and repository together are longer than distribution allows.
    #[error("invalid image reference {0:?}: the name is longer than 255 characters")]
    TooLong(String),
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    registry: String,
    repository: RepoName,
    tag: Option<Tag>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// A reference from its parts; with neither `tag` nor `digest` the tag is `latest`.
    /// `registry` is checked as `host[:port]`; `docker.io`'s aliases are normalised, but no
    /// `library/` is added (use [`FromStr`] for the Docker CLI's shorthand).
    pub fn new(
        registry: &str,
        repository: RepoName,
        tag: Option<Tag>,
        digest: Option<Digest>,
    ) -> Result<ImageRef, ImageRefError> {
        let input = format!("{registry}/{repository}");
        if !valid_registry(registry) {
            return Err(ImageRefError::Registry { registry: registry.to_string(), input });
        }
        if registry.len() + 1 + repository.as_str().len() > MAX_NAME_LEN {
            return Err(ImageRefError::TooLong(input));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some(latest()),
            (tag, _) => tag,
        };
        Ok(ImageRef { registry: normalise_registry(registry), repository, tag, digest })
    }

    /// The registry as written in references: `docker.io`, `ghcr.io`, `127.0.0.1:5000`.
    /// Credentials are looked up under this name.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) that serves the registry API: the registry itself, except
    /// `registry-1.docker.io` for `docker.io`.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// The repository: `library/busybox`.
    pub fn repository(&self) -> &RepoName {
        &self.repository
    }

    /// The tag, if the reference has one (`latest` when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&Tag> {
        self.tag.as_ref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when there is one (it wins over a tag, as
    /// with Docker), else the tag.
    pub fn reference(&self) -> Reference {
        match (&self.digest, &self.tag) {
            (Some(d), _) => Reference::Digest(d.clone()),
            (None, Some(t)) => Reference::Tag(t.clone()),
            (None, None) => Reference::Tag(latest()),
        }
    }

    /// The same repository at another tag or digest.
    pub fn with_reference(&self, reference: Reference) -> ImageRef {
        let (tag, digest) = match reference {
            Reference::Tag(t) => (Some(t), None),
            Reference::Digest(d) => (None, Some(d)),
        };
        ImageRef { registry: self.registry.clone(), repository: self.repository.clone(), tag, digest }
    }

    /// The canonical name without tag or digest: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The name as the Docker CLI shows it: `busybox`, `user/app`, `ghcr.io/org/app`.
    pub fn familiar_name(&self) -> String {
        if self.registry == DOCKER_HUB {
            let repo = self.repository.as_str();
            repo.strip_prefix("library/").filter(|r| !r.contains('/')).unwrap_or(repo).to_string()
        } else {
            self.name()
        }
    }

    /// The whole reference in the short form: `busybox:latest`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        push_suffix(&mut s, self.tag.as_ref(), self.digest.as_ref());
        s
    }
}

fn latest() -> Tag {
    Tag::from_str("latest").unwrap_or_else(|_| unreachable!("\"latest\" is a valid tag"))
}

fn push_suffix(s: &mut String, tag: Option<&Tag>, digest: Option<&Digest>) {
    if let Some(tag) = tag {
        s.push(':');
        s.push_str(tag.as_str());
    }
    if let Some(digest) = digest {
        s.push('@');
        s.push_str(&digest.to_string());
    }
}

impl fmt::Display for ImageRef {
    /// The canonical form: `docker.io/library/busybox:latest`, `host:5000/app@sha256:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        push_suffix(&mut s, self.tag.as_ref(), self.digest.as_ref());
        f.write_str(&s)
    }
}

fn normalise_registry(registry: &str) -> String {
    match registry {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.to_string(),
        other => other.to_string(),
    }
}

/// `host[:port]` where host is a domain name, an IPv4 address or a bracketed IPv6 address.
fn valid_registry(registry: &str) -> bool {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        // [IPv6]:port or [IPv6]
        let Some((addr, after)) = rest.split_once(']') else { return false };
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => return valid_port(port),
                None => return false,
            },
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
    };
    host.split('.').all(component_ok) && port.is_none_or(valid_port)
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

impl FromStr for ImageRef {
    type Err = ImageRefError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(ImageRefError::Empty);
        }
        let name_err = |source| ImageRefError::Name { input: input.to_string(), source };
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest.parse::<Digest>().map_err(|e| name_err(e.into()))?)),
            None => (input, None),
        };
        // A tag is after the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(rest[at + 1..].parse::<Tag>().map_err(name_err)?))
            }
            None => (rest, None),
        };
        let (registry, path) = match name.split_once('/') {
            Some((first, path))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first, path)
            }
            _ => (DOCKER_HUB, name),
        };
        if !valid_registry(registry) {
            return Err(ImageRefError::Registry { registry: registry.to_string(), input: input.to_string() });
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ImageRefError::Uppercase(input.to_string()));
        }
        let registry = normalise_registry(registry);
        let path =
            if registry == DOCKER_HUB && !path.contains('/') { format!("library/{path}") } else { path.to_string() };
        let repository = path.parse::<RepoName>().map_err(name_err)?;
        if registry.len() + 1 + repository.as_str().len() > MAX_NAME_LEN {
            return Err(ImageRefError::TooLong(input.to_string()));
        }
        let tag = if tag.is_none() && digest.is_none() { Some(latest()) } else { tag };
        Ok(ImageRef { registry, repository, tag, digest })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(s: &str) -> ImageRef {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_defaults() {
        let r = parse("busybox");
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.repository().as_str(), "library/busybox");
        assert_eq!(r.reference().to_string(), "latest");
        assert_eq!(r.familiar(), "busybox:latest");
        assert_eq!(parse("user/app:v1").to_string(), "docker.io/user/app:v1");
        assert_eq!(parse("user/app:v1").familiar_name(), "user/app");
        assert_eq!(parse("index.docker.io/library/busybox").to_string(), "docker.io/library/busybox:latest");
        assert_eq!(parse("docker.io/busybox").to_string(), "docker.io/library/busybox:latest");
        assert_eq!(parse("docker.io/library/busybox").familiar_name(), "busybox");
    }

    #[test]
    fn registries_ports_tags_and_digests() {
        let r = parse("127.0.0.1:5000/team/app:v1.2");
        assert_eq!((r.registry(), r.api_host()), ("127.0.0.1:5000", "127.0.0.1:5000"));
        assert_eq!(r.repository().as_str(), "team/app");
        assert_eq!(r.tag().map(Tag::as_str), Some("v1.2"));
        assert_eq!(r.familiar_name(), "127.0.0.1:5000/team/app");

        let r = parse(&format!("localhost/app@{D}"));
        assert_eq!(r.registry(), "localhost");
        assert_eq!(r.tag(), None);
        assert_eq!(r.reference().to_string(), D);
        assert_eq!(r.to_string(), format!("localhost/app@{D}"));

        // Tag and digest: the digest is what is fetched, both are kept.
        let r = parse(&format!("ghcr.io/org/app:1@{D}"));
        assert_eq!(r.reference().to_string(), D);
        assert_eq!(r.to_string(), format!("ghcr.io/org/app:1@{D}"));

        // A port without a tag, and a tag on a name whose registry has a port.
        assert_eq!(parse("host:5000/app").tag().map(Tag::as_str), Some("latest"));
        assert_eq!(parse("[::1]:5000/app:x").registry(), "[::1]:5000");
        // "local" has no dot or colon: it is a Docker Hub user, not a registry.
        assert_eq!(parse("local/app").to_string(), "docker.io/local/app:latest");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Busybox",
            "docker.io/Library/busybox",
            "busybox:",
            "busybox:bad/tag",
            "busybox@sha256:abc",
            "busybox@",
            "a..b/app",
            "-host.io/app",
            "host.io:port/app",
            "host.io:123456/app",
            "app/",
            "/app",
            "a//b",
            ":tag",
            "[::1/app",
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad} parsed as {:?}", bad.parse::<ImageRef>());
        }
        assert!(matches!("Upper".parse::<ImageRef>(), Err(ImageRefError::Uppercase(_))));
        let long = format!("host.io/{}", "a".repeat(250));
        assert!(matches!(long.parse::<ImageRef>(), Err(ImageRefError::TooLong(_))));
    }

    #[test]
    fn builds_from_parts() {
        let repo: RepoName = "team/app".parse().unwrap();
        let r = ImageRef::new("index.docker.io", repo.clone(), None, None).unwrap();
        assert_eq!(r.to_string(), "docker.io/team/app:latest");
        assert!(ImageRef::new("bad host", repo.clone(), None, None).is_err());
        let pinned = r.with_reference(Reference::Digest(D.parse().unwrap()));
        assert_eq!(pinned.to_string(), format!("docker.io/team/app@{D}"));
    }

    fn registry() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            "[a-z0-9]{1,8}(\\.[a-z0-9]{1,8}){1,2}(:[0-9]{1,5})?".prop_map(Some),
            "localhost(:[0-9]{1,5})?".prop_map(Some),
            "127\\.0\\.0\\.1:[0-9]{1,5}".prop_map(Some),
        ]
    }

    proptest! {
        #[test]
        fn canonical_form_round_trips(
            registry in registry(),
            // No "." in the first component: without a registry it would be taken for one.
            path in "[a-z0-9]{1,6}((_|__|-+)[a-z0-9]{1,4})?(/[a-z0-9]{1,6}(\\.[a-z0-9]{1,3})?){0,2}",
            tag in proptest::option::of("[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}"),
            digest in proptest::option::of(proptest::collection::vec(any::<u8>(), 32)),
        ) {
            let mut s = match &registry { Some(r) => format!("{r}/{path}"), None => path.clone() };
            if let Some(t) = &tag { s.push(':'); s.push_str(t); }
            let digest = digest.map(|b| Digest::from_bytes(crate::digest::Algorithm::Sha256, &b));
            if let Some(d) = &digest { s.push('@'); s.push_str(&d.to_string()); }

            let r: ImageRef = s.parse().unwrap();
            // Canonical and short forms both parse back to the same reference.
            prop_assert_eq!(&r.to_string().parse::<ImageRef>().unwrap(), &r);
            prop_assert_eq!(&r.familiar().parse::<ImageRef>().unwrap(), &r);
            prop_assert_eq!(r.digest(), digest.as_ref());
            match (&tag, &digest) {
                (Some(t), _) => prop_assert_eq!(r.tag().map(Tag::as_str), Some(t.as_str())),
                (None, None) => prop_assert_eq!(r.tag().map(Tag::as_str), Some("latest")),
                (None, Some(_)) => prop_assert_eq!(r.tag(), None),
            }
            match &registry {
                Some(reg) => prop_assert_eq!(r.registry(), reg.as_str()),
                None => prop_assert_eq!(r.registry(), DOCKER_HUB),
            }
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = s.parse::<ImageRef>();
        }
    }
}
