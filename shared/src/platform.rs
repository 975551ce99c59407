//! Platforms (`os/architecture[/variant]`, as Go names them) and choosing the entry of an
//! image index that suits one.
//!
//! The registry client resolves an index or Docker manifest list to the host's platform
//! with [`select`]; `berth pull --platform` parses [`Platform`] from text. Matching follows
//! containerd's default matcher: the OS and architecture must be equal (after normalising
//! aliases such as `x86_64`), a variant only has to match when both sides name one, and
//! `arm64` means `arm64/v8`. Among matches, an exact variant wins.

use std::fmt;
use std::str::FromStr;

use crate::manifest::{Descriptor, Platform};

/// Why a platform string is not `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {0:?}: expected os/architecture[/variant], such as linux/amd64 or linux/arm64/v8")]
pub struct PlatformError(pub String);

impl Platform {
    /// A platform from its parts, with the architecture and variant normalised.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let (architecture, implied) = normalise_arch(architecture);
        let variant = variant.filter(|v| !v.is_empty()).map(str::to_string).or(implied.map(str::to_string));
        Platform { os: os.to_ascii_lowercase(), architecture, variant }
    }

    /// The platform this program runs on: `linux` (containers are Linux) and the CPU
    /// architecture it was compiled for, by Go's names (`amd64`, `arm64/v8`, …).
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform::new("linux", architecture, variant)
    }

    /// True when an image for `self` (an index entry's platform) runs on `want`.
    pub fn satisfies(&self, want: &Platform) -> bool {
        let mine = Platform::new(&self.os, &self.architecture, self.variant.as_deref());
        let want = Platform::new(&want.os, &want.architecture, want.variant.as_deref());
        mine.os == want.os
            && mine.architecture == want.architecture
            && match (&mine.variant, &want.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// Go's architecture name for common aliases, and the variant an architecture implies.
fn normalise_arch(arch: &str) -> (String, Option<&'static str>) {
    match arch.to_ascii_lowercase().as_str() {
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), None),
        "aarch64" | "arm64" => ("arm64".into(), Some("v8")),
        "armhf" => ("arm".into(), Some("v7")),
        "armel" => ("arm".into(), Some("v6")),
        "i386" | "i686" | "386" => ("386".into(), None),
        other => (other.into(), None),
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(PlatformError(s.to_string())),
        }
    }
}

/// The entry of an index's `manifests` that best suits `want`: one whose platform matches
/// with the same variant, else the first that matches. Entries without a platform (such as
/// attestations) never match.
pub fn select<'a>(manifests: &'a [Descriptor], want: &Platform) -> Option<&'a Descriptor> {
    let want_norm = Platform::new(&want.os, &want.architecture, want.variant.as_deref());
    let matching = || manifests.iter().filter(|d| d.platform.as_ref().is_some_and(|p| p.satisfies(want)));
    matching()
        .find(|d| {
            d.platform.as_ref().is_some_and(|p| {
                Platform::new(&p.os, &p.architecture, p.variant.as_deref()).variant == want_norm.variant
            })
        })
        .or_else(|| matching().next())
}

/// The platforms an index offers, for error messages: `linux/amd64, linux/arm64/v8`.
pub fn describe(manifests: &[Descriptor]) -> String {
    let list: Vec<String> = manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| Platform::new(&p.os, &p.architecture, p.variant.as_deref()).to_string())
        .collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_type;

    fn entry(n: u8, os: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: media_type::OCI_MANIFEST.into(),
            digest: crate::Digest::sha256_of(&[n]),
            size: 1,
            artifact_type: None,
            annotations: None,
            platform: Some(Platform { os: os.into(), architecture: arch.into(), variant: variant.map(Into::into) }),
            urls: None,
        }
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!("linux/amd64".parse::<Platform>().unwrap().to_string(), "linux/amd64");
        assert_eq!("linux/arm64".parse::<Platform>().unwrap().to_string(), "linux/arm64/v8");
        assert_eq!("linux/x86_64".parse::<Platform>().unwrap().to_string(), "linux/amd64");
        assert_eq!("linux/arm/v6".parse::<Platform>().unwrap().variant.as_deref(), Some("v6"));
        for bad in ["", "linux", "linux/", "/amd64", "linux/amd64/v1/x", "linux/amd 64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }

    #[test]
    fn host_is_linux_and_go_named() {
        let host = Platform::host();
        assert_eq!(host.os, "linux");
        assert_ne!(host.architecture, "x86_64");
        assert_ne!(host.architecture, "aarch64");
    }

    #[test]
    fn selects_the_matching_entry() {
        let list = vec![
            entry(0, "unknown", "unknown", None),
            entry(1, "linux", "arm", Some("v6")),
            entry(2, "linux", "arm", Some("v7")),
            entry(3, "linux", "amd64", None),
            entry(4, "linux", "arm64", None),
            entry(5, "windows", "amd64", None),
        ];
        let pick = |p: &str| select(&list, &p.parse().unwrap()).map(|d| d.digest.clone());
        assert_eq!(pick("linux/amd64"), Some(list[3].digest.clone()));
        assert_eq!(pick("linux/arm64/v8"), Some(list[4].digest.clone()));
        assert_eq!(pick("linux/arm/v7"), Some(list[2].digest.clone()));
        assert_eq!(pick("linux/arm"), Some(list[1].digest.clone()));
        assert_eq!(pick("windows/amd64"), Some(list[5].digest.clone()));
        assert_eq!(pick("linux/s390x"), None);
        assert!(describe(&list).contains("linux/arm64/v8"));

        // An exact variant beats an entry without one.
        let list = vec![entry(1, "linux", "arm", None), entry(2, "linux", "arm", Some("v7"))];
        assert_eq!(select(&list, &"linux/arm/v7".parse().unwrap()).unwrap().digest, list[1].digest);
    }
}
