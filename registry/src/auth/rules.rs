//! Permission rules (`[[auth.rules]]`): what each caller may do on each repository.
//!
//! A rule grants its actions on the repositories matching any of its patterns to every
//! subject it names; a caller's permissions are the union of the rules that name it. `*` in a
//! pattern matches any run of characters, slashes included, so `team-a/*` covers every
//! repository under `team-a/` and `*` covers all. `anonymous` names everyone (signed in or
//! not), `authenticated` every user and robot. Patterns are compiled once, as
//! [`Glob::star`] patterns.

use std::collections::BTreeMap;

use shared::glob::Glob;

use crate::config::{Action, AuthConfig, Subject};

/// Pull permission.
pub const PULL: u8 = 1;
/// Push permission.
pub const PUSH: u8 = 2;
/// Delete permission.
pub const DELETE: u8 = 4;
/// All permissions.
pub const ALL: u8 = PULL | PUSH | DELETE;

/// Who a caller is, for the rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// Nobody signed in.
    Anonymous,
    /// A user of the htpasswd file.
    User(String),
    /// A robot account (its name without `robot$`).
    Robot(String),
    /// The subject of a token from an external token server; no rule names it, its token
    /// says what it may do.
    External(String),
}

impl Identity {
    /// The token subject (`sub`) for this identity: the user name, `robot$NAME`, or empty.
    pub fn subject(&self) -> String {
        match self {
            Identity::Anonymous => String::new(),
            Identity::User(u) | Identity::External(u) => u.clone(),
            Identity::Robot(r) => format!("{}{r}", super::accounts::ROBOT_PREFIX),
        }
    }

    /// The identity a token of berth's own names in `sub`.
    pub fn from_subject(sub: &str) -> Identity {
        if sub.is_empty() {
            Identity::Anonymous
        } else if let Some(robot) = sub.strip_prefix(super::accounts::ROBOT_PREFIX) {
            Identity::Robot(robot.to_string())
        } else {
            Identity::User(sub.to_string())
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Anonymous => f.write_str("anonymous"),
            Identity::User(u) => write!(f, "user:{u}"),
            Identity::Robot(r) => write!(f, "robot:{r}"),
            Identity::External(s) => write!(f, "external:{s}"),
        }
    }
}

/// The bits of an action list.
pub fn bits(actions: &[Action]) -> u8 {
    actions.iter().fold(0, |acc, a| {
        acc | match a {
            Action::Pull => PULL,
            Action::Push => PUSH,
            Action::Delete => DELETE,
            Action::All => ALL,
        }
    })
}

/// The bits of action words in a token scope or claim (`pull`, `push`, `delete`, `*`);
/// unknown words grant nothing.
pub fn bits_of_words<'a>(words: impl IntoIterator<Item = &'a str>) -> u8 {
    words.into_iter().fold(0, |acc, w| {
        acc | match w.trim() {
            "pull" => PULL,
            "push" => PUSH,
            "delete" => DELETE,
            "*" => ALL,
            _ => 0,
        }
    })
}

/// The action words of some bits, in the usual order.
pub fn words(bits: u8) -> Vec<&'static str> {
    [(PULL, "pull"), (PUSH, "push"), (DELETE, "delete")]
        .into_iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, w)| w)
        .collect()
}

struct Compiled {
    patterns: Vec<Glob>,
    bits: u8,
    who: Vec<Subject>,
}

/// The rules of a configuration, ready to evaluate.
pub struct Rules {
    rules: Vec<Compiled>,
    groups: BTreeMap<String, Vec<Subject>>,
}

impl Rules {
    /// The rules of `config`.
    pub fn new(config: &AuthConfig) -> Rules {
        let rules = config
            .rules
            .iter()
            .map(|r| Compiled {
                // A `*` pattern cannot be malformed; one too long to compile grants nothing.
                patterns: r.repositories.iter().filter_map(|p| Glob::star(p).ok()).collect(),
                bits: bits(&r.actions),
                who: r.who.clone(),
            })
            .collect();
        Rules { rules, groups: config.groups.clone() }
    }

    fn names(&self, subject: &Subject, identity: &Identity) -> bool {
        match (subject, identity) {
            (Subject::Anonymous, _) => true,
            (Subject::Authenticated, Identity::User(_) | Identity::Robot(_)) => true,
            (Subject::User(n), Identity::User(u)) => n == u,
            (Subject::Robot(n), Identity::Robot(r)) => n == r,
            (Subject::Group(g), Identity::User(_) | Identity::Robot(_)) => {
                self.groups.get(g).is_some_and(|members| members.iter().any(|m| self.names(m, identity)))
            }
            _ => false,
        }
    }

    /// What `identity` may do on `repo`.
    pub fn allowed(&self, identity: &Identity, repo: &str) -> u8 {
        if matches!(identity, Identity::External(_)) {
            return 0;
        }
        let mut out = 0;
        for rule in &self.rules {
            if out & rule.bits != rule.bits
                && rule.who.iter().any(|s| self.names(s, identity))
                && rule.patterns.iter().any(|p| p.is_match(repo))
            {
                out |= rule.bits;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let glob = |p: &str, t: &str| Glob::star(p).unwrap().is_match(t);
        assert!(glob("*", "a/b/c"));
        assert!(glob("team-a/*", "team-a/app"));
        assert!(glob("team-a/*", "team-a/x/y"));
        assert!(!glob("team-a/*", "team-b/app"));
        assert!(!glob("team-a/*", "team-a"));
        assert!(glob("*/base", "x/y/base"));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("a*b*c", "aXbY"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }

    #[test]
    fn rules_union_by_subject() {
        let config: crate::Config = toml::from_str(
            r#"
[auth.groups]
ci = ["robot:builder", "user:carol"]
[[auth.rules]]
repositories = ["library/*"]
actions = ["pull"]
who = ["anonymous"]
[[auth.rules]]
repositories = ["team-a/*"]
actions = ["pull", "push"]
who = ["group:ci", "user:alice"]
[[auth.rules]]
repositories = ["*"]
actions = ["*"]
who = ["user:root"]
[[auth.rules]]
repositories = ["shared/*"]
actions = ["pull"]
who = ["authenticated"]
"#,
        )
        .unwrap();
        let rules = Rules::new(config.auth.as_ref().unwrap());
        let user = |n: &str| Identity::User(n.into());
        assert_eq!(rules.allowed(&Identity::Anonymous, "library/busybox"), PULL);
        assert_eq!(rules.allowed(&Identity::Anonymous, "team-a/app"), 0);
        assert_eq!(rules.allowed(&Identity::Anonymous, "shared/x"), 0);
        assert_eq!(rules.allowed(&user("alice"), "team-a/app"), PULL | PUSH);
        assert_eq!(rules.allowed(&user("alice"), "library/busybox"), PULL);
        assert_eq!(rules.allowed(&user("alice"), "shared/x"), PULL);
        assert_eq!(rules.allowed(&user("carol"), "team-a/app"), PULL | PUSH);
        assert_eq!(rules.allowed(&Identity::Robot("builder".into()), "team-a/app/x"), PULL | PUSH);
        assert_eq!(rules.allowed(&Identity::Robot("other".into()), "team-a/app"), 0);
        assert_eq!(rules.allowed(&user("builder"), "team-a/app"), 0, "a user is not the robot of that name");
        assert_eq!(rules.allowed(&user("root"), "anything/at/all"), ALL);
        assert_eq!(rules.allowed(&Identity::External("root".into()), "x"), 0);
        assert_eq!(words(PULL | DELETE), ["pull", "delete"]);
        assert_eq!(bits_of_words(["pull", "push", "bogus"]), PULL | PUSH);
        assert_eq!(Identity::from_subject("robot$ci"), Identity::Robot("ci".into()));
        assert_eq!(Identity::Robot("ci".into()).subject(), "robot$ci");
        assert_eq!(Identity::from_subject(""), Identity::Anonymous);
    }
}
