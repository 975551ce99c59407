//! Typed Dockerfile instructions: each lexed [`Node`] becomes an [`Instruction`] with its
//! flags checked and its arguments split the way BuildKit's `instructions/parse.go` splits
//! them. Arguments stay unexpanded here (quotes included); [`crate::plan`] expands them with
//! the variables in scope at each step.
//!
//! `parse_file` is the entry point: text in, [`Stage`]-less list of [`Step`]s out (the
//! planner groups them into stages). Every error is a [`SyntaxError`] with the file, line and
//! column of the offending instruction, flag or argument.

use std::path::Path;

use crate::syntax::{self, Dockerfile, Flag, Heredoc, Node, Pos, SyntaxError};

/// The command of `RUN`, `CMD`, `ENTRYPOINT` and `HEALTHCHECK CMD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `["prog", "arg"]`: run as is.
    Exec(Vec<String>),
    /// `prog arg`: run by the image's shell.
    Shell(String),
}

/// `FROM [--platform=P] IMAGE [AS NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The image, unexpanded.
    pub image: String,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
    /// `AS name`, lower-cased.
    pub alias: Option<String>,
}

/// What a `RUN --mount` mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// A directory of the context or of another stage/image, read-only by default.
    Bind,
    /// A directory kept between builds.
    Cache,
    /// A secret file.
    Secret,
    /// An empty tmpfs.
    Tmpfs,
    /// An SSH agent socket.
    Ssh,
}

/// How builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Used by concurrent builds at once (the default).
    Shared,
    /// A new cache directory when the shared one is in use.
    Private,
    /// One build at a time.
    Locked,
}

/// One `RUN --mount=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `type=`.
    pub kind: MountKind,
    /// `target=` (also `dst=`, `destination=`).
    pub target: Option<String>,
    /// `source=` (also `src=`).
    pub source: Option<String>,
    /// `from=`: a stage or image to take `source` from.
    pub from: Option<String>,
    /// `readonly`/`ro`, or `rw` (`false`). Default: read-only for bind, writable otherwise.
    pub readonly: Option<bool>,
    /// `id=` (cache and secret).
    pub id: Option<String>,
    /// `sharing=` (cache).
    pub sharing: Sharing,
    /// `mode=` in octal.
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
    /// `required=` (secret, ssh).
    pub required: bool,
    /// `size=` (tmpfs), bytes.
    pub size: Option<u64>,
    /// `env=` (secret): expose as an environment variable.
    pub env: Option<String>,
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// The default: berth runs build steps on the host network, as Docker does.
    Default,
    /// No network: a fresh network namespace with only loopback.
    None,
    /// The host's network.
    Host,
}

/// `RUN [--mount=…]… [--network=…] [--security=…] COMMAND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The command.
    pub command: Command,
    /// Heredocs attached to the command.
    pub heredocs: Vec<Heredoc>,
    /// Mounts.
    pub mounts: Vec<Mount>,
    /// Network.
    pub network: NetworkMode,
    /// `--security=insecure|sandbox`.
    pub security: Option<String>,
}

/// A source of `COPY` or `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path or pattern (or, for `ADD`, a URL), unexpanded.
    Path(String),
    /// A heredoc: a file with this content.
    Heredoc(Heredoc),
}

/// `COPY` and `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// True for `ADD`.
    pub add: bool,
    /// Sources.
    pub sources: Vec<Source>,
    /// Destination, unexpanded.
    pub dest: String,
    /// `--from=`.
    pub from: Option<String>,
    /// `--chown=`.
    pub chown: Option<String>,
    /// `--chmod=`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--exclude=` patterns.
    pub exclude: Vec<String>,
    /// `--parents`.
    pub parents: bool,
    /// `--checksum=` (ADD).
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD).
    pub keep_git_dir: bool,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// The test: `None` for `HEALTHCHECK NONE`.
    pub test: Option<Command>,
    /// `--interval`, nanoseconds.
    pub interval: Option<i64>,
    /// `--timeout`, nanoseconds.
    pub timeout: Option<i64>,
    /// `--start-period`, nanoseconds.
    pub start_period: Option<i64>,
    /// `--start-interval`, nanoseconds.
    pub start_interval: Option<i64>,
    /// `--retries`.
    pub retries: Option<u32>,
}

/// One instruction, arguments unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `FROM`.
    From(From),
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(Command),
    /// `ENTRYPOINT`.
    Entrypoint(Command),
    /// `ENV k=v…` (raw keys and values).
    Env(Vec<(String, String)>),
    /// `ARG name[=default]…`.
    Arg(Vec<(String, Option<String>)>),
    /// `LABEL k=v…`.
    Label(Vec<(String, String)>),
    /// `EXPOSE port[/proto]…`.
    Expose(Vec<String>),
    /// `COPY` or `ADD`.
    Copy(Copy),
    /// `WORKDIR`.
    Workdir(String),
    /// `USER`.
    User(String),
    /// `VOLUME`.
    Volume(Vec<String>),
    /// `SHELL [...]`.
    Shell(Vec<String>),
    /// `STOPSIGNAL`.
    StopSignal(String),
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
    /// `ONBUILD INSTRUCTION`: the trigger as written (checked to parse).
    Onbuild(String),
    /// `MAINTAINER` (deprecated; becomes the `author` of the config).
    Maintainer(String),
}

/// An instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The instruction.
    pub instruction: Instruction,
    /// Its keyword (`RUN`).
    pub keyword: String,
    /// The text after the keyword, continuations joined (for history and messages).
    pub text: String,
    /// Where it starts.
    pub pos: Pos,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The lexed form (directives, escape character).
    pub lexed: Dockerfile,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// Parses a Dockerfile's text; `file` names it in errors.
pub fn parse_file(text: &str, file: &Path) -> Result<Parsed, SyntaxError> {
    let lexed = syntax::parse(text, file)?;
    let mut steps = Vec::new();
    for node in &lexed.nodes {
        let instruction = parse_node(node, &lexed)?;
        steps.push(Step {
            instruction,
            keyword: node.keyword.clone(),
            text: node.original[node.keyword.len()..].trim().to_string(),
            pos: node.pos,
        });
    }
    if !steps.iter().any(|s| matches!(s.instruction, Instruction::From(_))) {
        return Err(SyntaxError {
            file: file.to_path_buf(),
            pos: Pos { line: 1, column: 1 },
            message: "the Dockerfile has no FROM instruction".into(),
        });
    }
    if let Some(first) = steps.iter().find(|s| !matches!(s.instruction, Instruction::Arg(_))) {
        if !matches!(first.instruction, Instruction::From(_)) {
            return Err(SyntaxError {
                file: file.to_path_buf(),
                pos: first.pos,
                message: format!("{} before the first FROM: only ARG may come before FROM", first.keyword),
            });
        }
    }
    Ok(Parsed { lexed, steps })
}

struct Ctx<'a> {
    node: &'a Node,
    file: &'a Path,
    escape: char,
}

impl Ctx<'_> {
    fn err_at(&self, pos: Pos, message: impl Into<String>) -> SyntaxError {
        SyntaxError { file: self.file.to_path_buf(), pos, message: message.into() }
    }

    fn err(&self, message: impl Into<String>) -> SyntaxError {
        self.err_at(self.node.pos, format!("{} {}", self.node.keyword, message.into()))
    }

    fn args_err(&self, message: impl Into<String>) -> SyntaxError {
        self.err_at(self.node.rest_pos, format!("{} {}", self.node.keyword, message.into()))
    }

    /// Checks every flag is one of `allowed`, and no single-valued flag repeats.
    fn check_flags(&self, allowed: &[&str], repeatable: &[&str]) -> Result<(), SyntaxError> {
        for (i, flag) in self.node.flags.iter().enumerate() {
            if !allowed.contains(&flag.name.as_str()) {
                return Err(self.err_at(flag.pos, format!("unknown flag: --{}", flag.name)));
            }
            if !repeatable.contains(&flag.name.as_str()) && self.node.flags[..i].iter().any(|f| f.name == flag.name) {
                return Err(self.err_at(flag.pos, format!("duplicate flag specified: --{}", flag.name)));
            }
        }
        Ok(())
    }

    fn flag(&self, name: &str) -> Option<&Flag> {
        self.node.flags.iter().find(|f| f.name == name)
    }

    fn string_flag(&self, name: &str) -> Result<Option<String>, SyntaxError> {
        match self.flag(name) {
            None => Ok(None),
            Some(Flag { value: Some(v), .. }) => Ok(Some(v.clone())),
            Some(f) => Err(self.err_at(f.pos, format!("missing a value on flag: --{name}"))),
        }
    }

    fn bool_flag(&self, name: &str) -> Result<bool, SyntaxError> {
        match self.flag(name) {
            None => Ok(false),
            Some(Flag { value: None, .. }) => Ok(true),
            Some(Flag { value: Some(v), pos, .. }) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(self.err_at(*pos, format!("expecting boolean value for flag --{name}, not {v:?}"))),
            },
        }
    }

    fn duration_flag(&self, name: &str) -> Result<Option<i64>, SyntaxError> {
        let Some(flag) = self.flag(name) else { return Ok(None) };
        let value = flag.value.as_deref().unwrap_or("");
        parse_duration(value)
            .map(Some)
            .ok_or_else(|| self.err_at(flag.pos, format!("invalid duration for --{name}: {value:?}")))
    }
}

fn parse_node(node: &Node, lexed: &Dockerfile) -> Result<Instruction, SyntaxError> {
    let cx = Ctx { node, file: &lexed.file, escape: lexed.escape };
    let rest = node.rest.as_str();
    let words = || syntax::split_words_keep_quotes(rest);
    let none: &[&str] = &[];
    let need_args = |cx: &Ctx<'_>| -> Result<(), SyntaxError> {
        if rest.is_empty() {
            Err(cx.err("requires at least one argument"))
        } else {
            Ok(())
        }
    };
    Ok(match node.keyword.as_str() {
        "FROM" => {
            cx.check_flags(&["platform"], none)?;
            let w = words();
            let alias = match w.len() {
                1 => None,
                3 if w[1].eq_ignore_ascii_case("as") => {
                    let name = w[2].to_ascii_lowercase();
                    if !valid_stage_name(&name) {
                        return Err(cx.args_err(format!("invalid stage name {:?}: must start with a letter and contain only letters, digits, '-', '_' and '.'", w[2])));
                    }
                    Some(name)
                }
                _ => return Err(cx.args_err("requires either one or three arguments (IMAGE [AS NAME])")),
            };
            Instruction::From(From { image: w[0].clone(), platform: cx.string_flag("platform")?, alias })
        }
        "RUN" => {
            cx.check_flags(&["mount", "network", "security"], &["mount"])?;
            need_args(&cx)?;
            let mut mounts = Vec::new();
            for flag in node.flags.iter().filter(|f| f.name == "mount") {
                mounts.push(parse_mount(&cx, flag)?);
            }
            let network = match cx.string_flag("network")?.as_deref() {
                None | Some("default") => NetworkMode::Default,
                Some("none") => NetworkMode::None,
                Some("host") => NetworkMode::Host,
                Some(other) => {
                    let pos = cx.flag("network").map_or(node.pos, |f| f.pos);
                    return Err(
                        cx.err_at(pos, format!("unsupported network mode {other:?}: use default, none or host"))
                    );
                }
            };
            let security = cx.string_flag("security")?;
            if let Some(s) = &security {
                if s != "insecure" && s != "sandbox" {
                    return Err(cx.err(format!("unsupported security mode {s:?}")));
                }
            }
            Instruction::Run(Run { command: command(rest), heredocs: node.heredocs.clone(), mounts, network, security })
        }
        "CMD" | "ENTRYPOINT" => {
            cx.check_flags(&[], none)?;
            let c = command(rest);
            if node.keyword == "CMD" {
                Instruction::Cmd(c)
            } else {
                Instruction::Entrypoint(c)
            }
        }
        "ENV" | "LABEL" => {
            cx.check_flags(&[], none)?;
            need_args(&cx)?;
            let pairs = name_values(&cx, rest)?;
            if node.keyword == "ENV" {
                Instruction::Env(pairs)
            } else {
                Instruction::Label(pairs)
            }
        }
        "ARG" => {
            cx.check_flags(&[], none)?;
            need_args(&cx)?;
            let mut args = Vec::new();
            for w in words() {
                match w.split_once('=') {
                    Some((k, v)) => args.push((k.to_string(), Some(v.to_string()))),
                    None => args.push((w, None)),
                }
            }
            for (name, _) in &args {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(cx.args_err(format!("names an invalid variable {name:?}")));
                }
            }
            Instruction::Arg(args)
        }
        "EXPOSE" => {
            cx.check_flags(&[], none)?;
            need_args(&cx)?;
            Instruction::Expose(words())
        }
        "COPY" | "ADD" => {
            let add = node.keyword == "ADD";
            if add {
                cx.check_flags(&["chown", "chmod", "link", "exclude", "checksum", "keep-git-dir"], &["exclude"])?;
            } else {
                cx.check_flags(&["from", "chown", "chmod", "link", "exclude", "parents"], &["exclude"])?;
            }
            let list = json_or_words(rest, cx.escape);
            if list.len() < 2 {
                return Err(cx.args_err(
                    "requires at least two arguments, but only one was provided. Destination could not be determined",
                ));
            }
            let (dest, srcs) = list.split_last().map(|(d, s)| (d.clone(), s.to_vec())).unwrap_or_default();
            let mut sources = Vec::new();
            let mut heredocs = node.heredocs.iter();
            for src in srcs {
                if src.starts_with("<<") && !node.heredocs.is_empty() {
                    match heredocs.next() {
                        Some(h) => sources.push(Source::Heredoc(h.clone())),
                        None => return Err(cx.args_err(format!("heredoc {src} has no body"))),
                    }
                } else {
                    sources.push(Source::Path(src));
                }
            }
            let chmod = cx.string_flag("chmod")?;
            let checksum = cx.string_flag("checksum")?;
            if let Some(c) = &checksum {
                if c.parse::<shared::Digest>().is_err() {
                    let pos = cx.flag("checksum").map_or(node.pos, |f| f.pos);
                    return Err(cx.err_at(pos, format!("invalid checksum digest format {c:?}")));
                }
            }
            Instruction::Copy(Copy {
                add,
                sources,
                dest,
                from: if add { None } else { cx.string_flag("from")? },
                chown: cx.string_flag("chown")?,
                chmod,
                link: cx.bool_flag("link")?,
                exclude: node.flags.iter().filter(|f| f.name == "exclude").filter_map(|f| f.value.clone()).collect(),
                parents: if add { false } else { cx.bool_flag("parents")? },
                checksum,
                keep_git_dir: if add { cx.bool_flag("keep-git-dir")? } else { false },
            })
        }
        "WORKDIR" | "USER" | "STOPSIGNAL" | "MAINTAINER" => {
            cx.check_flags(&[], none)?;
            need_args(&cx)?;
            let value = rest.to_string();
            match node.keyword.as_str() {
                "WORKDIR" => Instruction::Workdir(value),
                "USER" => Instruction::User(value),
                "STOPSIGNAL" => Instruction::StopSignal(value),
                _ => Instruction::Maintainer(value),
            }
        }
        "VOLUME" => {
            cx.check_flags(&[], none)?;
            need_args(&cx)?;
            let list = json_or_words(rest, cx.escape);
            if list.iter().any(|v| v.trim().is_empty()) {
                return Err(cx.args_err("specified with an empty path"));
            }
            Instruction::Volume(list)
        }
        "SHELL" => {
            cx.check_flags(&[], none)?;
            match json_array(rest) {
                Some(list) if !list.is_empty() => Instruction::Shell(list),
                _ => return Err(cx.args_err("requires the arguments to be in JSON form")),
            }
        }
        "HEALTHCHECK" => {
            cx.check_flags(&["interval", "timeout", "start-period", "start-interval", "retries"], none)?;
            need_args(&cx)?;
            let (kind, cmd) = match rest.split_once(char::is_whitespace) {
                Some((k, c)) => (k, c.trim()),
                None => (rest, ""),
            };
            let test = match kind.to_ascii_uppercase().as_str() {
                "NONE" => {
                    if !cmd.is_empty() || !node.flags.is_empty() {
                        return Err(cx.args_err("NONE takes no arguments"));
                    }
                    None
                }
                "CMD" => {
                    if cmd.is_empty() {
                        return Err(cx.args_err("CMD requires a command"));
                    }
                    Some(command(cmd))
                }
                other => return Err(cx.args_err(format!("unknown type {other:?}: use CMD or NONE"))),
            };
            let retries = match cx.flag("retries") {
                None => None,
                Some(f) => Some(f.value.as_deref().and_then(|v| v.parse::<u32>().ok()).ok_or_else(|| {
                    cx.err_at(f.pos, format!("invalid --retries value {:?}", f.value.as_deref().unwrap_or("")))
                })?),
            };
            Instruction::Healthcheck(Healthcheck {
                test,
                interval: cx.duration_flag("interval")?,
                timeout: cx.duration_flag("timeout")?,
                start_period: cx.duration_flag("start-period")?,
                start_interval: cx.duration_flag("start-interval")?,
                retries,
            })
        }
        "ONBUILD" => {
            cx.check_flags(&[], none)?;
            need_args(&cx)?;
            let trigger = rest.to_string();
            let first = trigger.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
            match first.as_str() {
                "ONBUILD" => return Err(cx.args_err("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")),
                "FROM" | "MAINTAINER" => {
                    return Err(cx.args_err(format!("{first} isn't allowed as an ONBUILD trigger")))
                }
                _ => {}
            }
            // The trigger must itself parse.
            let inner = syntax::parse(&trigger, cx.file)
                .map_err(|e| cx.err_at(node.rest_pos, format!("ONBUILD trigger: {}", e.message)))?;
            for n in &inner.nodes {
                parse_node(n, &inner)
                    .map_err(|e| cx.err_at(node.rest_pos, format!("ONBUILD trigger: {}", e.message)))?;
            }
            Instruction::Onbuild(trigger)
        }
        other => return Err(cx.err_at(node.pos, format!("unknown instruction: {other}"))),
    })
}

/// Exec form when `text` is a JSON array of strings, else shell form.
pub fn command(text: &str) -> Command {
    match json_array(text) {
        Some(list) => Command::Exec(list),
        None => Command::Shell(text.to_string()),
    }
}

/// `text` as a JSON array of strings, if it is one.
pub fn json_array(text: &str) -> Option<Vec<String>> {
    let t = text.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

/// A JSON array of strings, or else the words (quotes kept, for expansion).
fn json_or_words(text: &str, escape: char) -> Vec<String> {
    match json_array(text) {
        // JSON strings are already unquoted: re-quote them for the expander so that blanks
        // and quotes inside survive expansion.
        Some(list) => list.into_iter().map(|s| quote_for_expansion(&s, escape)).collect(),
        None => crate::expand::split_words(text, escape),
    }
}

/// Wraps `s` in double quotes, escaping what double quotes would interpret except `$`.
fn quote_for_expansion(s: &str, escape: char) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c == '"' || c == escape {
            out.push(escape);
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `k=v k2="v 2"` pairs, or the legacy `k value with blanks` form.
fn name_values(cx: &Ctx<'_>, rest: &str) -> Result<Vec<(String, String)>, SyntaxError> {
    let words = crate::expand::split_words(rest, cx.escape);
    let first_has_eq = words.first().is_some_and(|w| w.contains('='));
    if !first_has_eq {
        // Legacy: `ENV KEY value…`.
        let (key, value) = match rest.split_once(char::is_whitespace) {
            Some((k, v)) => (k.to_string(), v.trim_start().to_string()),
            None => return Err(cx.args_err("must have two arguments")),
        };
        return Ok(vec![(key, quote_for_expansion_legacy(&value))]);
    }
    let mut pairs = Vec::new();
    for w in words {
        match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => pairs.push((k.to_string(), v.to_string())),
            _ => return Err(cx.args_err(format!("names can not be blank, or {w:?} lacks an '='"))),
        }
    }
    Ok(pairs)
}

/// The legacy form's value is everything after the key, blanks included: it is still
/// expanded, so only the blanks need protecting.
fn quote_for_expansion_legacy(value: &str) -> String {
    value.to_string()
}

fn valid_stage_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_mount(cx: &Ctx<'_>, flag: &Flag) -> Result<Mount, SyntaxError> {
    let value = flag.value.as_deref().unwrap_or("");
    let bad = |m: String| cx.err_at(flag.pos, format!("--mount: {m}"));
    let mut mount = Mount {
        kind: MountKind::Bind,
        target: None,
        source: None,
        from: None,
        readonly: None,
        id: None,
        sharing: Sharing::Shared,
        mode: None,
        uid: None,
        gid: None,
        required: false,
        size: None,
        env: None,
    };
    let fields: Vec<&str> = value.split(',').map(str::trim).filter(|f| !f.is_empty()).collect();
    // The type decides the defaults, so read it first.
    for field in &fields {
        if let Some(t) = field.strip_prefix("type=") {
            mount.kind = match t {
                "bind" => MountKind::Bind,
                "cache" => MountKind::Cache,
                "secret" => MountKind::Secret,
                "tmpfs" => MountKind::Tmpfs,
                "ssh" => MountKind::Ssh,
                other => return Err(bad(format!("unsupported mount type {other:?}"))),
            };
        }
    }
    let number = |k: &str, v: &str, radix: u32| {
        u32::from_str_radix(v, radix).map_err(|_| bad(format!("invalid {k} value {v:?}")))
    };
    for field in fields {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        match (key.as_str(), val) {
            ("type", _) => {}
            ("readonly" | "ro", None) => mount.readonly = Some(true),
            ("readonly" | "ro", Some(v)) => mount.readonly = Some(v == "true" || v == "1"),
            ("rw" | "readwrite", None) => mount.readonly = Some(false),
            ("rw" | "readwrite", Some(v)) => mount.readonly = Some(!(v == "true" || v == "1")),
            ("required", None) => mount.required = true,
            ("required", Some(v)) => mount.required = v == "true" || v == "1",
            ("target" | "dst" | "destination", Some(v)) => mount.target = Some(v.to_string()),
            ("source" | "src", Some(v)) => mount.source = Some(v.to_string()),
            ("from", Some(v)) => mount.from = Some(v.to_string()),
            ("id", Some(v)) => mount.id = Some(v.to_string()),
            ("env", Some(v)) => mount.env = Some(v.to_string()),
            ("sharing", Some(v)) => {
                mount.sharing = match v {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    other => return Err(bad(format!("unsupported sharing value {other:?}"))),
                }
            }
            ("mode", Some(v)) => mount.mode = Some(number("mode", v, 8)?),
            ("uid", Some(v)) => mount.uid = Some(number("uid", v, 10)?),
            ("gid", Some(v)) => mount.gid = Some(number("gid", v, 10)?),
            ("size", Some(v)) => mount.size = Some(shared::size::parse_size(v).map_err(|e| bad(e.to_string()))?),
            (k, _) => return Err(bad(format!("unexpected key {k:?}"))),
        }
    }
    match mount.kind {
        MountKind::Secret | MountKind::Ssh => {}
        _ if mount.target.is_none() => return Err(bad("mount target is required".into())),
        _ => {}
    }
    if mount.kind == MountKind::Secret && mount.id.is_none() && mount.target.is_none() && mount.env.is_none() {
        return Err(bad("a secret mount needs an id or a target".into()));
    }
    Ok(mount)
}

/// A Go duration (`30s`, `1m30s`, `500ms`, `1h`) in nanoseconds, as BuildKit stores
/// `HEALTHCHECK` times; read by [`shared::duration::parse_duration`].
pub fn parse_duration(text: &str) -> Option<i64> {
    shared::duration::parse_duration(text).ok().and_then(|d| i64::try_from(d.as_nanos()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(text: &str) -> Vec<Instruction> {
        parse_file(text, Path::new("Dockerfile")).unwrap().steps.into_iter().map(|s| s.instruction).collect()
    }

    fn one(text: &str) -> Instruction {
        steps(&format!("FROM scratch\n{text}\n")).remove(1)
    }

    fn error(text: &str) -> SyntaxError {
        parse_file(text, Path::new("Dockerfile")).unwrap_err()
    }

    #[test]
    fn from() {
        let s = steps("ARG V=1\nFROM --platform=linux/amd64 busybox:$V AS Build\nFROM build\n");
        assert_eq!(s[0], Instruction::Arg(vec![("V".into(), Some("1".into()))]));
        assert_eq!(
            s[1],
            Instruction::From(From {
                image: "busybox:$V".into(),
                platform: Some("linux/amd64".into()),
                alias: Some("build".into())
            })
        );
        assert_eq!(s[2], Instruction::From(From { image: "build".into(), platform: None, alias: None }));
        let e = error("FROM a b\n");
        assert_eq!((e.pos.line, e.pos.column), (1, 6));
        assert!(e.message.contains("one or three"), "{e}");
        let e = error("FROM --plat=x a\n");
        assert_eq!(e.to_string(), "Dockerfile:1:6: unknown flag: --plat");
        assert!(error("FROM a AS 1x\n").message.contains("invalid stage name"));
    }

    #[test]
    fn needs_from_first() {
        let e = error("RUN x\nFROM a\n");
        assert_eq!(e.pos.line, 1);
        assert!(e.message.contains("before the first FROM"), "{e}");
        assert!(error("# only a comment\n").message.contains("no FROM"));
    }

    #[test]
    fn run_forms_mounts_and_network() {
        assert_eq!(
            one("RUN echo hi"),
            Instruction::Run(Run {
                command: Command::Shell("echo hi".into()),
                heredocs: vec![],
                mounts: vec![],
                network: NetworkMode::Default,
                security: None,
            })
        );
        let Instruction::Run(r) = one(r#"RUN ["echo", "a b"]"#) else { panic!() };
        assert_eq!(r.command, Command::Exec(vec!["echo".into(), "a b".into()]));
        // Not valid JSON: shell form.
        let Instruction::Run(r) = one("RUN [echo, x]") else { panic!() };
        assert_eq!(r.command, Command::Shell("[echo, x]".into()));

        let Instruction::Run(r) =
            one("RUN --network=none --mount=type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0700,uid=1 \
             --mount=type=bind,from=build,source=/out,target=/in,rw --mount=type=secret,id=tok,required \
             --mount=type=tmpfs,target=/t,size=64m make")
        else {
            panic!()
        };
        assert_eq!(r.network, NetworkMode::None);
        assert_eq!(r.mounts.len(), 4);
        let cache = &r.mounts[0];
        assert_eq!(
            (cache.kind, cache.target.as_deref(), cache.id.as_deref(), cache.sharing, cache.mode, cache.uid),
            (MountKind::Cache, Some("/root/.cache"), Some("pip"), Sharing::Locked, Some(0o700), Some(1))
        );
        let bind = &r.mounts[1];
        assert_eq!(
            (bind.kind, bind.from.as_deref(), bind.source.as_deref(), bind.readonly),
            (MountKind::Bind, Some("build"), Some("/out"), Some(false))
        );
        assert_eq!((r.mounts[2].kind, r.mounts[2].required), (MountKind::Secret, true));
        assert_eq!((r.mounts[3].kind, r.mounts[3].size), (MountKind::Tmpfs, Some(64 << 20)));

        let e = error("FROM a\nRUN --mount=type=cache x\n");
        assert_eq!((e.pos.line, e.pos.column), (2, 5));
        assert!(e.message.contains("target is required"), "{e}");
        assert!(error("FROM a\nRUN --mount=type=nfs,target=/x x\n").message.contains("unsupported mount type"));
        assert!(error("FROM a\nRUN --network=bridge x\n").message.contains("unsupported network"));
        assert!(error("FROM a\nRUN --network=none --network=host x\n").message.contains("duplicate flag"));
        assert!(error("FROM a\nRUN\n").message.contains("requires at least one argument"));
        let Instruction::Run(r) = one("RUN --security=insecure x") else { panic!() };
        assert_eq!(r.security.as_deref(), Some("insecure"));
    }

    #[test]
    fn run_heredoc() {
        let s = steps("FROM a\nRUN <<EOF\necho hi\nEOF\n");
        let Instruction::Run(r) = &s[1] else { panic!() };
        assert_eq!(r.command, Command::Shell("<<EOF".into()));
        assert_eq!(r.heredocs[0].content, "echo hi\n");
    }

    #[test]
    fn cmd_entrypoint_shell() {
        assert_eq!(
            one(r#"CMD ["sh", "-c", "x"]"#),
            Instruction::Cmd(Command::Exec(vec!["sh".into(), "-c".into(), "x".into()]))
        );
        assert_eq!(one("CMD echo $HOME"), Instruction::Cmd(Command::Shell("echo $HOME".into())));
        assert_eq!(one("ENTRYPOINT [\"/bin/app\"]"), Instruction::Entrypoint(Command::Exec(vec!["/bin/app".into()])));
        assert_eq!(one(r#"SHELL ["/bin/sh", "-ec"]"#), Instruction::Shell(vec!["/bin/sh".into(), "-ec".into()]));
        assert!(error("FROM a\nSHELL /bin/sh -c\n").message.contains("JSON form"));
    }

    #[test]
    fn env_label_arg() {
        assert_eq!(
            one(r#"ENV A=1 B="two words" C=$A"#),
            Instruction::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "\"two words\"".into()),
                ("C".into(), "$A".into())
            ])
        );
        assert_eq!(one("ENV A  legacy value"), Instruction::Env(vec![("A".into(), "legacy value".into())]));
        assert_eq!(
            one(r#"LABEL "com.x"="y" a=b"#),
            Instruction::Label(vec![("\"com.x\"".into(), "\"y\"".into()), ("a".into(), "b".into())])
        );
        assert_eq!(one("ARG A B=2"), Instruction::Arg(vec![("A".into(), None), ("B".into(), Some("2".into()))]));
        assert!(error("FROM a\nENV A\n").message.contains("two arguments"));
        assert!(error("FROM a\nENV A=1 =2\n").message.contains("blank"));
        assert!(error("FROM a\nARG a-b\n").message.contains("invalid variable"));
        assert!(error("FROM a\nENV --x=1 A=1\n").message.contains("unknown flag: --x"));
    }

    #[test]
    fn copy_and_add() {
        let Instruction::Copy(c) =
            one("COPY --from=build --chown=1:2 --chmod=0755 --link --exclude=*.md --exclude=.git --parents a b* /dst/")
        else {
            panic!()
        };
        assert_eq!(c.sources, [Source::Path("a".into()), Source::Path("b*".into())]);
        assert_eq!(c.dest, "/dst/");
        assert_eq!(
            (c.from.as_deref(), c.chown.as_deref(), c.chmod.as_deref(), c.link, c.parents),
            (Some("build"), Some("1:2"), Some("0755"), true, true)
        );
        assert_eq!(c.exclude, ["*.md", ".git"]);
        let Instruction::Copy(c) = one(r#"COPY ["a b", "/c d/"]"#) else { panic!() };
        assert_eq!(c.sources, [Source::Path("\"a b\"".into())]);
        assert_eq!(c.dest, "\"/c d/\"");

        let Instruction::Copy(a) = one(
            "ADD --checksum=sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 --keep-git-dir http://x/y /y",
        ) else {
            panic!()
        };
        assert!(a.add && a.keep_git_dir && a.checksum.is_some());
        assert!(error("FROM a\nADD --from=x a b\n").message.contains("unknown flag: --from"));
        assert!(error("FROM a\nADD --checksum=md5:1 a b\n").message.contains("invalid checksum"));
        let e = error("FROM a\nCOPY onlyone\n");
        assert_eq!((e.pos.line, e.pos.column), (2, 6));
        assert!(error("FROM a\nCOPY --link=maybe a b\n").message.contains("boolean"));

        let s = steps("FROM a\nCOPY <<one <<two /dir/\nfirst\none\nsecond\ntwo\n");
        let Instruction::Copy(c) = &s[1] else { panic!() };
        let bodies: Vec<_> = c
            .sources
            .iter()
            .map(|s| match s {
                Source::Heredoc(h) => h.content.as_str(),
                Source::Path(_) => "",
            })
            .collect();
        assert_eq!(bodies, ["first\n", "second\n"]);
    }

    #[test]
    fn simple_instructions() {
        assert_eq!(one("WORKDIR /app dir"), Instruction::Workdir("/app dir".into()));
        assert_eq!(one("USER 1000:1000"), Instruction::User("1000:1000".into()));
        assert_eq!(one("STOPSIGNAL SIGKILL"), Instruction::StopSignal("SIGKILL".into()));
        assert_eq!(one("MAINTAINER me <me@x>"), Instruction::Maintainer("me <me@x>".into()));
        assert_eq!(
            one("EXPOSE 80 443/tcp 53/udp"),
            Instruction::Expose(vec!["80".into(), "443/tcp".into(), "53/udp".into()])
        );
        assert_eq!(
            one(r#"VOLUME ["/data", "/logs"]"#),
            Instruction::Volume(vec!["\"/data\"".into(), "\"/logs\"".into()])
        );
        assert_eq!(one("VOLUME /a /b"), Instruction::Volume(vec!["/a".into(), "/b".into()]));
        assert!(error("FROM a\nWORKDIR\n").message.contains("at least one argument"));
    }

    #[test]
    fn healthcheck() {
        assert_eq!(
            one("HEALTHCHECK --interval=5s --timeout=1m30s --start-period=500ms --start-interval=1s --retries=3 CMD curl -f x"),
            Instruction::Healthcheck(Healthcheck {
                test: Some(Command::Shell("curl -f x".into())),
                interval: Some(5_000_000_000),
                timeout: Some(90_000_000_000),
                start_period: Some(500_000_000),
                start_interval: Some(1_000_000_000),
                retries: Some(3),
            })
        );
        assert_eq!(
            one("HEALTHCHECK NONE"),
            Instruction::Healthcheck(Healthcheck {
                test: None,
                interval: None,
                timeout: None,
                start_period: None,
                start_interval: None,
                retries: None
            })
        );
        let Instruction::Healthcheck(h) = one(r#"HEALTHCHECK CMD ["true"]"#) else { panic!() };
        assert_eq!(h.test, Some(Command::Exec(vec!["true".into()])));
        assert!(error("FROM a\nHEALTHCHECK --interval=5x CMD x\n").message.contains("invalid duration"));
        assert!(error("FROM a\nHEALTHCHECK --retries=-1 CMD x\n").message.contains("retries"));
        assert!(error("FROM a\nHEALTHCHECK WHAT\n").message.contains("unknown type"));
        assert!(error("FROM a\nHEALTHCHECK CMD\n").message.contains("requires a command"));
    }

    #[test]
    fn onbuild() {
        assert_eq!(one("ONBUILD RUN echo hi"), Instruction::Onbuild("RUN echo hi".into()));
        assert!(error("FROM a\nONBUILD ONBUILD RUN x\n").message.contains("chaining"));
        assert!(error("FROM a\nONBUILD FROM x\n").message.contains("isn't allowed"));
        let e = error("FROM a\nONBUILD BOGUS x\n");
        assert_eq!(e.pos, Pos { line: 2, column: 9 });
        assert!(e.message.contains("unknown instruction"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h2m3s"), Some(3_723_000_000_000));
        assert_eq!(parse_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration(""), None);
        // Go's limit: about 292 years of nanoseconds in an i64.
        assert_eq!(parse_duration("2562047h"), Some(2_562_047 * 3_600_000_000_000));
        assert_eq!(parse_duration("2562048h"), None);
    }

    #[test]
    fn tmpfs_sizes_that_overflow_are_errors() {
        let Instruction::Run(r) = one("RUN --mount=type=tmpfs,target=/t,size=1.5k true") else { panic!() };
        assert_eq!(r.mounts[0].size, Some(1536));
        // 99999999999 GiB is past u64: this multiplied without a check and panicked.
        let e = error("FROM a\nRUN --mount=type=tmpfs,target=/t,size=99999999999g true\n");
        assert!(e.message.contains("too large"), "{e}");
        let e = error("FROM a\nRUN --mount=type=tmpfs,target=/t,size=lots true\n");
        assert!(e.message.contains("invalid size"), "{e}");
    }
}
