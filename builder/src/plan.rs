//! The build plan: steps grouped into stages, build arguments resolved with BuildKit's
//! scoping, and the stage graph.
//!
//! **Scoping.** `ARG`s before the first `FROM` are global: they (and the automatic platform
//! arguments `TARGETPLATFORM`, `TARGETOS`, `TARGETARCH`, `TARGETVARIANT`, `BUILDPLATFORM`,
//! `BUILDOS`, `BUILDARCH`, `BUILDVARIANT`) can be used in `FROM` lines only. Inside a stage
//! an argument exists from its `ARG` on: its value is the `--build-arg` given, else its own
//! default, else the global one of the same name. An `ARG` with a value and an `ENV` set the
//! same environment, the later winning (see `build::vars`); a stage built `FROM` another
//! stage sees that stage's arguments. The proxy arguments (`HTTP_PROXY`, `https_proxy`, `NO_PROXY`, …) reach `RUN` steps
//! when given with `--build-arg` without being declared, and stay out of the image's history
//! and the cache key.
//!
//! **Graph.** A stage depends on the stage its `FROM` names and on those its `COPY --from`
//! and `RUN --mount=from=` name (by name or index). Only the target stage (the last, or
//! `--target`) and what it depends on are built; [`Plan::waves`] orders them so every stage
//! in a wave can build in parallel with the others of its wave.
//!
//! The executor ([`crate::build`]) calls [`Plan::new`], [`Plan::needed`] and [`Plan::waves`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use shared::manifest::Platform;

use crate::expand::{self, ExpandError};
use crate::instructions::{Instruction, Parsed, Step};
use crate::syntax::Pos;

/// Proxy arguments every build accepts without an `ARG`.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A word did not expand.
    #[error("{}:{pos}", file.display())]
    Expand {
        /// The Dockerfile.
        file: PathBuf,
        /// Where.
        pos: Pos,
        /// The cause.
        #[source]
        source: ExpandError,
    },
    /// `--target` names no stage.
    #[error("target stage {0:?} could not be found")]
    NoTarget(String),
    /// A stage uses itself or a later stage.
    #[error("{}:{pos}: stage {name:?} refers to itself or a later stage", file.display())]
    Cycle {
        /// The Dockerfile.
        file: PathBuf,
        /// Where.
        pos: Pos,
        /// The name used.
        name: String,
    },
    /// Two stages have the same name.
    #[error("{}:{pos}: duplicate stage name {name:?}", file.display())]
    DuplicateStage {
        /// The Dockerfile.
        file: PathBuf,
        /// Where.
        pos: Pos,
        /// The name.
        name: String,
    },
}

/// One stage: a `FROM` and the steps up to the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Its position among the stages, from 0.
    pub index: usize,
    /// `AS name`.
    pub name: Option<String>,
    /// The `FROM` step.
    pub from: Step,
    /// The steps after `FROM`.
    pub steps: Vec<Step>,
}

impl Stage {
    /// How the stage is shown in progress: its name, or `stage-N`.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// What a stage's base is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`.
    Scratch,
    /// An earlier stage.
    Stage(usize),
    /// An image reference.
    Image(String),
}

/// The parsed Dockerfile as stages, with the build's arguments.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The Dockerfile (for messages).
    pub file: PathBuf,
    /// The escape character.
    pub escape: char,
    /// The stages, in file order.
    pub stages: Vec<Stage>,
    /// Global arguments with their resolved values (`None`: declared without a value).
    pub globals: BTreeMap<String, Option<String>>,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// The automatic platform arguments.
    pub platform_args: BTreeMap<String, String>,
}

/// The automatic platform arguments for a target and build platform.
pub fn platform_args(target: &Platform, build: &Platform) -> BTreeMap<String, String> {
    let mut args = BTreeMap::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        args.insert(format!("{prefix}PLATFORM"), p.to_string());
        args.insert(format!("{prefix}OS"), p.os.clone());
        args.insert(format!("{prefix}ARCH"), p.architecture.clone());
        args.insert(format!("{prefix}VARIANT"), p.variant.clone().unwrap_or_default());
    }
    args
}

impl Plan {
    /// Groups `parsed` into stages and resolves the global arguments.
    pub fn new(
        parsed: &Parsed,
        build_args: BTreeMap<String, String>,
        platform_args: BTreeMap<String, String>,
    ) -> Result<Plan, PlanError> {
        let file = parsed.lexed.file.clone();
        let escape = parsed.lexed.escape;
        let mut stages: Vec<Stage> = Vec::new();
        let mut globals: BTreeMap<String, Option<String>> = BTreeMap::new();
        for step in &parsed.steps {
            match (&step.instruction, stages.last_mut()) {
                (Instruction::From(from), _) => {
                    if let Some(name) = &from.alias {
                        if stages.iter().any(|s| s.name.as_deref() == Some(name)) {
                            return Err(PlanError::DuplicateStage { file, pos: step.pos, name: name.clone() });
                        }
                    }
                    stages.push(Stage {
                        index: stages.len(),
                        name: from.alias.clone(),
                        from: step.clone(),
                        steps: Vec::new(),
                    });
                }
                (Instruction::Arg(args), None) => {
                    for (name, default) in args {
                        let value =
                            match build_args.get(name) {
                                Some(v) => Some(v.clone()),
                                None => match default {
                                    Some(d) => {
                                        let lookup = |n: &str| -> Option<String> {
                                            globals.get(n).cloned().flatten().or_else(|| platform_args.get(n).cloned())
                                        };
                                        Some(expand::expand(d, escape, &lookup).map_err(|source| {
                                            PlanError::Expand { file: file.clone(), pos: step.pos, source }
                                        })?)
                                    }
                                    None => platform_args.get(name).cloned(),
                                },
                            };
                        globals.insert(name.clone(), value);
                    }
                }
                (_, Some(stage)) => stage.steps.push(step.clone()),
                // The parser refuses anything but ARG before the first FROM.
                (_, None) => {}
            }
        }
        Ok(Plan { file, escape, stages, globals, build_args, platform_args })
    }

    /// The value a global-scope lookup (FROM lines) sees.
    pub fn global(&self, name: &str) -> Option<String> {
        match self.globals.get(name) {
            Some(v) => v.clone(),
            None => self.platform_args.get(name).cloned(),
        }
    }

    /// Expands `word` in the global scope.
    pub fn expand_global(&self, word: &str, pos: Pos) -> Result<String, PlanError> {
        expand::expand(word, self.escape, &|n| self.global(n)).map_err(|source| PlanError::Expand {
            file: self.file.clone(),
            pos,
            source,
        })
    }

    /// The value an `ARG name` without default takes in a stage: the build argument, else
    /// the global value.
    pub fn stage_arg(&self, name: &str, default: Option<String>) -> Option<String> {
        if let Some(v) = self.build_args.get(name) {
            return Some(v.clone());
        }
        default.or_else(|| self.global(name))
    }

    /// The stage `name` means: a stage name, or an index of an earlier stage.
    pub fn stage_named(&self, name: &str, before: usize) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        if let Some(s) = self.stages.iter().find(|s| s.name.as_deref() == Some(lower.as_str())) {
            return Some(s.index);
        }
        name.parse::<usize>().ok().filter(|i| *i < before)
    }

    /// The base of stage `index`.
    pub fn base(&self, index: usize) -> Result<Base, PlanError> {
        let stage = &self.stages[index];
        let Instruction::From(from) = &stage.from.instruction else { return Ok(Base::Scratch) };
        let image = self.expand_global(&from.image, stage.from.pos)?;
        if image.eq_ignore_ascii_case("scratch") {
            return Ok(Base::Scratch);
        }
        match self.stages.iter().find(|s| s.name.as_deref() == Some(image.to_ascii_lowercase().as_str())) {
            Some(s) if s.index < index => Ok(Base::Stage(s.index)),
            Some(_) => Err(PlanError::Cycle { file: self.file.clone(), pos: stage.from.pos, name: image }),
            None => Ok(Base::Image(image)),
        }
    }

    /// The stages stage `index` needs built first.
    pub fn dependencies(&self, index: usize) -> Result<BTreeSet<usize>, PlanError> {
        let mut deps = BTreeSet::new();
        if let Base::Stage(s) = self.base(index)? {
            deps.insert(s);
        }
        let stage = &self.stages[index];
        for step in &stage.steps {
            let names: Vec<&String> = match &step.instruction {
                Instruction::Copy(c) => c.from.iter().collect(),
                Instruction::Run(r) => r.mounts.iter().filter_map(|m| m.from.as_ref()).collect(),
                _ => Vec::new(),
            };
            for name in names {
                let expanded = self.expand_global(name, step.pos)?;
                match self.stage_named(&expanded, index) {
                    Some(s) if s < index => {
                        deps.insert(s);
                    }
                    Some(_) => {
                        return Err(PlanError::Cycle { file: self.file.clone(), pos: step.pos, name: expanded });
                    }
                    // An image, pulled when the step runs.
                    None => {}
                }
            }
        }
        Ok(deps)
    }

    /// The index of the target stage: `--target`, else the last.
    pub fn target(&self, target: Option<&str>) -> Result<usize, PlanError> {
        match target {
            None => Ok(self.stages.len().saturating_sub(1)),
            Some(t) => {
                let lower = t.to_ascii_lowercase();
                self.stages
                    .iter()
                    .find(|s| s.name.as_deref() == Some(lower.as_str()))
                    .map(|s| s.index)
                    .ok_or_else(|| PlanError::NoTarget(t.to_string()))
            }
        }
    }

    /// The target and every stage it needs, transitively.
    pub fn needed(&self, target: usize) -> Result<BTreeSet<usize>, PlanError> {
        let mut needed = BTreeSet::new();
        let mut pending = vec![target];
        while let Some(i) = pending.pop() {
            if needed.insert(i) {
                pending.extend(self.dependencies(i)?);
            }
        }
        Ok(needed)
    }

    /// The needed stages in waves: each wave depends only on earlier waves.
    pub fn waves(&self, needed: &BTreeSet<usize>) -> Result<Vec<Vec<usize>>, PlanError> {
        let mut done: BTreeSet<usize> = BTreeSet::new();
        let mut waves = Vec::new();
        while done.len() < needed.len() {
            let mut wave = Vec::new();
            for &i in needed {
                if !done.contains(&i) && self.dependencies(i)?.iter().all(|d| done.contains(d)) {
                    wave.push(i);
                }
            }
            if wave.is_empty() {
                // Dependencies always point to earlier stages, so this cannot happen.
                break;
            }
            done.extend(wave.iter().copied());
            waves.push(wave);
        }
        Ok(waves)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instructions::parse_file;
    use std::path::Path;

    fn plan(text: &str, args: &[(&str, &str)]) -> Plan {
        let parsed = parse_file(text, Path::new("Dockerfile")).unwrap();
        let build_args = args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let p = Platform::new("linux", "amd64", None);
        Plan::new(&parsed, build_args, platform_args(&p, &p)).unwrap()
    }

    #[test]
    fn global_args_feed_from_lines() {
        let p = plan("ARG TAG=1.0\nARG IMG=busybox:$TAG\nFROM $IMG AS a\nFROM ${BASE:-alpine}\n", &[]);
        assert_eq!(p.base(0).unwrap(), Base::Image("busybox:1.0".into()));
        assert_eq!(p.base(1).unwrap(), Base::Image("alpine".into()));
        let p = plan("ARG TAG=1.0\nARG IMG=busybox:$TAG\nFROM $IMG\n", &[("TAG", "2.0")]);
        assert_eq!(p.base(0).unwrap(), Base::Image("busybox:2.0".into()));
        let p = plan("FROM busybox:$TARGETARCH\n", &[]);
        assert_eq!(p.base(0).unwrap(), Base::Image("busybox:amd64".into()));
    }

    #[test]
    fn stage_args_take_build_args_then_defaults_then_globals() {
        let p = plan("ARG G=global\nFROM scratch\n", &[("B", "given")]);
        assert_eq!(p.stage_arg("G", None).as_deref(), Some("global"));
        assert_eq!(p.stage_arg("G", Some("own".into())).as_deref(), Some("own"));
        assert_eq!(p.stage_arg("B", Some("own".into())).as_deref(), Some("given"));
        assert_eq!(p.stage_arg("TARGETOS", None).as_deref(), Some("linux"));
        assert_eq!(p.stage_arg("NONE", None), None);
    }

    #[test]
    fn builds_only_what_the_target_needs_in_waves() {
        let text = "FROM scratch AS a\nFROM scratch AS b\nFROM a AS c\nCOPY --from=b /x /x\nFROM scratch AS unused\nFROM c\nRUN --mount=type=bind,from=1,target=/m true\n";
        let p = plan(text, &[]);
        assert_eq!(p.stages.len(), 5);
        let target = p.target(None).unwrap();
        assert_eq!(target, 4);
        let needed = p.needed(target).unwrap();
        assert_eq!(needed, BTreeSet::from([0, 1, 2, 4]));
        assert_eq!(p.waves(&needed).unwrap(), vec![vec![0, 1], vec![2], vec![4]]);
        let t = p.target(Some("B")).unwrap();
        assert_eq!(p.needed(t).unwrap(), BTreeSet::from([1]));
        assert!(matches!(p.target(Some("nope")), Err(PlanError::NoTarget(_))));
        assert_eq!(p.base(2).unwrap(), Base::Stage(0));
        assert_eq!(p.base(0).unwrap(), Base::Scratch);
    }

    #[test]
    fn refuses_forward_references_and_duplicates() {
        let parsed =
            parse_file("FROM scratch AS a\nCOPY --from=b /x /x\nFROM scratch AS b\n", Path::new("Dockerfile")).unwrap();
        let p = Plan::new(&parsed, BTreeMap::new(), BTreeMap::new()).unwrap();
        assert!(matches!(p.dependencies(0), Err(PlanError::Cycle { .. })));
        let parsed = parse_file("FROM scratch AS a\nFROM scratch AS a\n", Path::new("Dockerfile")).unwrap();
        let e = Plan::new(&parsed, BTreeMap::new(), BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("Dockerfile:2:1: duplicate stage name"), "{e}");
    }
}
