//! Seccomp profiles in Docker's format (`defaultAction`, `archMap`, `syscalls` with
//! `includes`/`excludes` by capability, architecture and kernel) turned into the OCI
//! `linux.seccomp` section of one container, as moby's `profiles/seccomp` does it: a rule is
//! kept only when the container's bounding capabilities, the host's architecture and its
//! kernel satisfy it.
//!
//! Docker's default profile ships inside the binary ([`DEFAULT_PROFILE`], a copy of
//! moby/profiles' `seccomp/default.json`, Apache-2.0: see `seccomp/NOTICE`). [`super::spec`]
//! calls [`to_oci`] for every container and every `RUN` step of the builder.

use std::collections::HashSet;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};
use serde::Deserialize;

/// Docker's default seccomp profile, in Docker's format.
pub const DEFAULT_PROFILE: &str = include_str!("seccomp/docker-default.json");

/// Why a profile could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile is not JSON of Docker's seccomp format.
    #[error("the seccomp profile is not valid: {0}")]
    Parse(#[source] serde_json::Error),
    /// A rule names syscalls both with `name` and `names`.
    #[error("the seccomp profile's rule for {name:?} has both name and names")]
    NameAndNames {
        /// The `name`.
        name: String,
    },
    /// The profile has both `architectures` and `archMap`.
    #[error("the seccomp profile has both architectures and archMap")]
    ArchitecturesAndArchMap,
    /// `oci-spec` refused the result.
    #[error("building the seccomp section")]
    Oci(#[from] oci_spec::OciSpecError),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Vec<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// The host a profile is filtered for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// The architecture as Go names it (`amd64`, `arm64`, ...), the names profiles use.
    pub arch: String,
    /// The kernel's version (major, minor); `None`: unknown, taken as new enough.
    pub kernel: Option<(u32, u32)>,
}

impl Target {
    /// This host.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let kernel = parse_kernel(release.trim());
        Target { arch: arch.to_string(), kernel }
    }

    /// The seccomp name of the architecture (`archMap`'s key).
    fn native(&self) -> Option<Arch> {
        Some(match self.arch.as_str() {
            "amd64" => Arch::ScmpArchX86_64,
            "386" => Arch::ScmpArchX86,
            "arm64" => Arch::ScmpArchAarch64,
            "arm" => Arch::ScmpArchArm,
            "ppc64le" => Arch::ScmpArchPpc64le,
            "s390x" => Arch::ScmpArchS390x,
            "riscv64" => Arch::ScmpArchRiscv64,
            _ => return None,
        })
    }
}

/// `6.1.0-18-amd64` → (6, 1).
fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Whether `cap` (`CAP_SYS_ADMIN`) is among `bounding`; unknown names are not.
fn has_cap(bounding: &HashSet<Capability>, cap: &str) -> bool {
    cap.strip_prefix("CAP_").and_then(|c| c.parse::<Capability>().ok()).is_some_and(|c| bounding.contains(&c))
}

/// Whether the kernel is at least `min` (`4.8`); an unknown kernel or version is.
fn kernel_at_least(kernel: Option<(u32, u32)>, min: &str) -> bool {
    match (kernel, parse_kernel(min)) {
        (Some(k), Some(m)) => k >= m,
        _ => true,
    }
}

/// Whether a rule applies to this container on this host (moby's order of checks).
fn applies(rule: &Rule, bounding: &HashSet<Capability>, target: &Target) -> bool {
    let ex = &rule.excludes;
    if ex.arches.contains(&target.arch)
        || ex.caps.iter().any(|c| has_cap(bounding, c))
        || ex.min_kernel.as_deref().is_some_and(|m| kernel_at_least(target.kernel, m))
    {
        return false;
    }
    let inc = &rule.includes;
    if !inc.arches.is_empty() && !inc.arches.contains(&target.arch) {
        return false;
    }
    if !inc.caps.iter().all(|c| has_cap(bounding, c)) {
        return false;
    }
    inc.min_kernel.as_deref().is_none_or(|m| kernel_at_least(target.kernel, m))
}

/// The architectures the filter covers: the host's and its sub-architectures.
fn architectures(profile: &Profile, target: &Target) -> Result<Option<Vec<Arch>>, SeccompError> {
    match (&profile.architectures, &profile.arch_map) {
        (Some(a), Some(m)) if !a.is_empty() && !m.is_empty() => Err(SeccompError::ArchitecturesAndArchMap),
        (_, Some(map)) if !map.is_empty() => {
            let native = target.native();
            Ok(map.iter().find(|m| Some(m.architecture) == native).map(|m| {
                std::iter::once(m.architecture).chain(m.sub_architectures.iter().flatten().copied()).collect()
            }))
        }
        (a, _) => Ok(a.clone()),
    }
}

/// The OCI `linux.seccomp` section for a container with these bounding capabilities, from a
/// profile in Docker's format.
pub fn to_oci(profile: &str, bounding: &HashSet<Capability>, target: &Target) -> Result<LinuxSeccomp, SeccompError> {
    let profile: Profile = serde_json::from_str(profile).map_err(SeccompError::Parse)?;
    let mut syscalls: Vec<LinuxSyscall> = Vec::new();
    for rule in &profile.syscalls {
        let names = match &rule.name {
            Some(name) if !rule.names.is_empty() => return Err(SeccompError::NameAndNames { name: name.clone() }),
            Some(name) => vec![name.clone()],
            None => rule.names.clone(),
        };
        if !applies(rule, bounding, target) {
            continue;
        }
        let mut call = LinuxSyscallBuilder::default().names(names).action(rule.action);
        if let Some(errno) = rule.errno_ret {
            call = call.errno_ret(errno);
        }
        if let Some(args) = rule.args.as_ref().filter(|a| !a.is_empty()) {
            call = call.args(args.clone());
        }
        syscalls.push(call.build()?);
    }
    let mut seccomp = LinuxSeccompBuilder::default().default_action(profile.default_action).syscalls(syscalls);
    if let Some(errno) = profile.default_errno_ret {
        seccomp = seccomp.default_errno_ret(errno);
    }
    if let Some(arches) = architectures(&profile, target)? {
        seccomp = seccomp.architectures(arches);
    }
    Ok(seccomp.build()?)
}

/// Swaps `value` and `valueTwo` of every `SCMP_CMP_MASKED_EQ` argument (a missing `valueTwo`
/// is 0), for a runtime that reads them the other way round ([`super::oci`]); returns
/// whether any was swapped.
pub fn swap_masked_operands(seccomp: &mut LinuxSeccomp) -> bool {
    let mut swapped = false;
    let Some(mut syscalls) = seccomp.syscalls().clone() else { return false };
    for call in &mut syscalls {
        let Some(mut args) = call.args().clone() else { continue };
        for arg in args.iter_mut().filter(|a| a.op() == LinuxSeccompOperator::ScmpCmpMaskedEq) {
            let swap = LinuxSeccompArgBuilder::default()
                .index(arg.index())
                .op(arg.op())
                .value(arg.value_two().unwrap_or(0))
                .value_two(arg.value())
                .build();
            if let Ok(swap) = swap {
                *arg = swap;
                swapped = true;
            }
        }
        call.set_args(Some(args));
    }
    seccomp.set_syscalls(Some(syscalls));
    swapped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::spec::DEFAULT_CAPABILITIES;

    fn amd64() -> Target {
        Target { arch: "amd64".into(), kernel: Some((6, 1)) }
    }

    /// The rules that allow `name`, in order.
    fn rules_for<'a>(s: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        s.syscalls().iter().flatten().filter(|c| c.names().iter().any(|n| n == name)).collect()
    }

    #[test]
    fn default_profile_follows_capabilities() {
        let default: HashSet<Capability> = DEFAULT_CAPABILITIES.into_iter().collect();
        let s = to_oci(DEFAULT_PROFILE, &default, &amd64()).unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(1));
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        // ptrace: allowed on 4.8+ by its own rule, no CAP_SYS_PTRACE rule.
        assert_eq!(rules_for(&s, "ptrace").len(), 1);
        let old = Target { kernel: Some((4, 4)), ..amd64() };
        assert!(rules_for(&to_oci(DEFAULT_PROFILE, &default, &old).unwrap(), "ptrace").is_empty());
        // mount, unshare, keyctl and add_key: only with CAP_SYS_ADMIN.
        for name in ["mount", "unshare", "keyctl", "add_key", "kcmp"] {
            assert!(rules_for(&s, name).is_empty(), "{name} is allowed");
        }
        // clone: only with the namespace flags masked out; clone3 answers ENOSYS.
        let clone = rules_for(&s, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0].args().as_ref().unwrap()[0].value(), 2114060288);
        assert_eq!(rules_for(&s, "clone3")[0].errno_ret(), Some(38));
        // personality keeps its argument filters.
        let personality = rules_for(&s, "personality");
        assert_eq!(personality.len(), 5);
        assert!(personality.iter().all(|r| r.args().as_ref().is_some_and(|a| a.len() == 1)));
        // Architecture rules: arch_prctl on amd64, not on arm64.
        assert_eq!(rules_for(&s, "arch_prctl").len(), 1);
        let arm = Target { arch: "arm64".into(), ..amd64() };
        let s_arm = to_oci(DEFAULT_PROFILE, &default, &arm).unwrap();
        assert!(rules_for(&s_arm, "arch_prctl").is_empty());
        assert_eq!(s_arm.architectures().as_deref(), Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..]));

        let mut more = default.clone();
        more.extend([Capability::SysAdmin, Capability::SysPtrace]);
        let s = to_oci(DEFAULT_PROFILE, &more, &amd64()).unwrap();
        for name in ["mount", "unshare", "kcmp", "clone3"] {
            assert_eq!(rules_for(&s, name).len(), 1, "{name}");
            assert_eq!(rules_for(&s, name)[0].action(), LinuxSeccompAction::ScmpActAllow);
        }
        // The key syscalls stay refused whatever the capabilities.
        assert!(rules_for(&s, "keyctl").is_empty() && rules_for(&s, "add_key").is_empty());
        // clone: the unconditional CAP_SYS_ADMIN rule replaces the masked one.
        assert!(rules_for(&s, "clone").iter().all(|r| r.args().is_none()));
        assert_eq!(rules_for(&s, "ptrace").len(), 2);
    }

    #[test]
    fn refuses_bad_profiles() {
        let caps = HashSet::new();
        assert!(matches!(to_oci("{", &caps, &amd64()), Err(SeccompError::Parse(_))));
        assert!(matches!(
            to_oci(r#"{"defaultAction": "SCMP_ACT_NOPE"}"#, &caps, &amd64()),
            Err(SeccompError::Parse(_))
        ));
        let both = r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ERRNO"}]}"#;
        assert!(matches!(to_oci(both, &caps, &amd64()), Err(SeccompError::NameAndNames { .. })));
        let old = r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"name": "mount", "action": "SCMP_ACT_ERRNO"}]}"#;
        let s = to_oci(old, &caps, &amd64()).unwrap();
        assert_eq!(s.architectures().as_deref(), Some(&[Arch::ScmpArchX86_64][..]));
        assert_eq!(rules_for(&s, "mount").len(), 1);
    }

    #[test]
    fn masked_operands_swap() {
        let default: HashSet<Capability> = DEFAULT_CAPABILITIES.into_iter().collect();
        let mut s = to_oci(DEFAULT_PROFILE, &default, &amd64()).unwrap();
        assert!(swap_masked_operands(&mut s));
        let clone = rules_for(&s, "clone")[0].args().as_ref().unwrap()[0];
        assert_eq!((clone.value(), clone.value_two()), (0, Some(2114060288)));
        // Other comparisons are left alone.
        assert_eq!(rules_for(&s, "personality")[0].args().as_ref().unwrap()[0].value(), 0);
        let mut plain = to_oci(r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#, &default, &amd64()).unwrap();
        assert!(!swap_masked_operands(&mut plain));
    }

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel("6.1.0-18-amd64"), Some((6, 1)));
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
        assert!(kernel_at_least(Some((5, 10)), "4.8"));
        assert!(!kernel_at_least(Some((4, 4)), "4.8"));
        assert!(kernel_at_least(None, "4.8"));
    }
}
