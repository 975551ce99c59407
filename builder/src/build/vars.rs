//! A stage's variables as BuildKit's Dockerfile frontend keeps them (`dockerfile2llb`): one
//! ordered environment that every expansion and every RUN step sees. It starts as the base
//! image's `Env` (with BuildKit's default `PATH` added to the config when the base has none,
//! `FROM scratch` included); each `ENV` and each `ARG` that has a value then sets its name,
//! replacing an earlier value of the same name in place. So the last of `ENV` and `ARG` wins
//! (`ENV A=env` then `ARG A=arg` gives RUN `arg`), while the image's config keeps the ENV
//! values only.
//!
//! A stage built `FROM` another stage starts from that stage's variables (its declared
//! arguments included), then sets the config's `Env` again on top, as BuildKit does.
//!
//! The executor ([`super`]) keeps one [`StageVars`] per stage, hands it to the stages built
//! from it, and reads it for RUN steps' environment and history.

use crate::config::ImageConfig;

/// BuildKit's `PATH` for Linux images whose base sets none (`system.DefaultPathEnv`).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The variables in scope in a stage (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageVars {
    /// The environment, in order.
    env: Vec<(String, String)>,
    /// Declared arguments, inherited ones first, with the values they took.
    args: Vec<(String, Option<String>)>,
}

impl StageVars {
    /// The variables a stage starts with: `inherited` (from the stage it is built from) or
    /// none, then `config`'s `Env`, which gets the default `PATH` first if it has none.
    pub fn start(inherited: Option<StageVars>, config: &mut ImageConfig) -> StageVars {
        if config.env("PATH").is_none() {
            config.set_env("PATH", DEFAULT_PATH);
        }
        let mut vars = inherited.unwrap_or_default();
        for entry in config.config.env.iter().flatten() {
            let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
            vars.set(k, v);
        }
        vars
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Sets `name` (ENV, or an ARG with a value), in place when it is already set.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.env.iter_mut().find(|(k, _)| k == name) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.env.push((name.to_string(), value.to_string())),
        }
    }

    /// Records `ARG name` with the value it took; one with a value joins the environment.
    pub fn declare(&mut self, name: &str, value: Option<String>) {
        if let Some(v) = &value {
            self.set(name, v);
        }
        self.args.push((name.to_string(), value));
    }

    /// The environment as `KEY=value` strings, in order.
    pub fn env_list(&self) -> Vec<String> {
        self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// The declared arguments as a RUN history entry lists them (BuildKit's
    /// `runCommandString`): each name once, where it was first declared, with its value in
    /// the environment now, else the value it took, else empty.
    pub fn history_args(&self) -> Vec<String> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (name, value) in &self.args {
            let v = self.get(name).map(str::to_string).or_else(|| value.clone()).unwrap_or_default();
            match out.iter_mut().find(|(k, _)| k == name) {
                Some(entry) => entry.1 = v,
                None => out.push((name.clone(), v)),
            }
        }
        out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(env: &[&str]) -> ImageConfig {
        let mut c = ImageConfig::default();
        c.config.env = Some(env.iter().map(|s| s.to_string()).collect());
        c
    }

    #[test]
    fn scratch_gets_the_default_path_and_a_set_path_is_kept() {
        let mut c = ImageConfig::default();
        let vars = StageVars::start(None, &mut c);
        assert_eq!(c.config.env, Some(vec![format!("PATH={DEFAULT_PATH}")]));
        assert_eq!(vars.get("PATH"), Some(DEFAULT_PATH));
        let mut c = config(&["PATH=/bin", "A=1"]);
        let vars = StageVars::start(None, &mut c);
        assert_eq!(c.config.env, Some(vec!["PATH=/bin".to_string(), "A=1".to_string()]));
        assert_eq!(vars.env_list(), ["PATH=/bin", "A=1"]);
    }

    #[test]
    fn the_last_of_env_and_arg_wins() {
        let mut c = config(&["PATH=/bin"]);
        let mut vars = StageVars::start(None, &mut c);
        vars.set("E", "env");
        vars.declare("E", Some("arg".into()));
        vars.declare("NOVAL", None);
        assert_eq!(vars.get("E"), Some("arg"));
        assert_eq!(vars.get("NOVAL"), None);
        vars.set("E", "env2");
        assert_eq!(vars.env_list(), ["PATH=/bin", "E=env2"]);
        assert_eq!(vars.history_args(), ["E=env2", "NOVAL="]);
    }

    #[test]
    fn a_stage_from_a_stage_inherits_its_arguments_under_the_config_env() {
        let mut parent_config = config(&["PATH=/bin", "E=env"]);
        let mut parent = StageVars::start(None, &mut parent_config);
        parent.declare("E", Some("arg".into()));
        parent.declare("V", Some("parent".into()));
        let mut child_config = parent_config.clone();
        let child = StageVars::start(Some(parent), &mut child_config);
        assert_eq!(child.get("V"), Some("parent"));
        assert_eq!(child.get("E"), Some("env"), "the config's Env is set again over the inherited ARG");
        assert_eq!(child.history_args(), ["E=env", "V=parent"]);
    }
}
