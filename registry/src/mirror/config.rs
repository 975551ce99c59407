//! `[[mirror]]`: one upstream registry this registry mirrors (pull-through cache).
//!
//! Read by [`crate::config::Config`]; checked by [`check`] at start-up; used by
//! [`crate::mirror::Mirrors`] to build one registry client per upstream.

use serde::{Deserialize, Serialize};
use shared::RepoName;

use crate::config::ConfigError;

/// One mirrored upstream.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MirrorConfig {
    /// Where the upstream's API is: `https://registry-1.docker.io`, `http://10.0.0.5:5000`
    /// (scheme and host, no path). Required.
    pub url: String,
    /// The registry name clients use for it: `docker.io`, `ghcr.io`, `quay.io`. Requests
    /// name it with containerd's `?ns=<host>` or as the first component of the repository
    /// (`/v2/docker.io/library/nginx/...`), and cached content is stored under
    /// `<host>/<repository>`; so it must be a valid repository name component (lowercase,
    /// no port). Required.
    pub host: String,
    /// Send repository names without a registry prefix and without `ns` to this upstream, as
    /// Docker's `registry-mirrors` asks for `docker.io` images (`/v2/library/nginx/...`).
    /// At most one mirror may be the default. Default `false`.
    pub default: bool,
    /// User name for the upstream (basic authentication or the token flow, whichever it
    /// asks for). Also `BERTH_MIRROR_<HOST>_USERNAME`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password for `username`. Also `BERTH_MIRROR_<HOST>_PASSWORD`. Never printed
    /// (`--print-config` leaves it out).
    #[serde(skip_serializing)]
    pub password: Option<String>,
    /// A file holding the password (trailing newline ignored), instead of `password`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<std::path::PathBuf>,
    /// An identity (refresh) token for the token flow, instead of a user and password.
    /// Also `BERTH_MIRROR_<HOST>_IDENTITY_TOKEN`. Never printed.
    #[serde(skip_serializing)]
    pub identity_token: Option<String>,
    /// A manifest fetched by tag is served from the cache for this many seconds; after that
    /// it is checked again with the upstream (a `HEAD`; the body is fetched only when the
    /// digest changed). Default 300.
    pub tag_ttl_secs: u64,
    /// Let clients push into this mirror's namespace (stored locally beside the cached
    /// content). Default `false`: pushes are refused with `DENIED`.
    pub accept_pushes: bool,
    /// Evict what was not pulled within this long (`30d`, `12h`, `2w`): the collector
    /// ([`crate::gc`], `[gc]`) removes the cached manifests of this mirror that no client
    /// pulled for that long (and the tags pointing to them), and then the blobs nothing else
    /// needs. A pull counts when a client reads the manifest (by tag or digest, `GET` or
    /// `HEAD`). Default: nothing is evicted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evict_after: Option<String>,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            url: String::new(),
            host: String::new(),
            default: false,
            username: None,
            password: None,
            password_file: None,
            identity_token: None,
            tag_ttl_secs: 300,
            accept_pushes: false,
            evict_after: None,
        }
    }
}

impl std::fmt::Debug for MirrorConfig {
    /// Like the derived one, without the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("MirrorConfig")
            .field("url", &self.url)
            .field("host", &self.host)
            .field("default", &self.default)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("password_file", &self.password_file)
            .field("identity_token", &redacted(&self.identity_token))
            .field("tag_ttl_secs", &self.tag_ttl_secs)
            .field("accept_pushes", &self.accept_pushes)
            .field("evict_after", &self.evict_after)
            .finish()
    }
}

impl MirrorConfig {
    /// The suffix of this mirror's `BERTH_MIRROR_<HOST>_*` variables: the host in upper case
    /// with every other character than a letter or digit as `_` (`DOCKER_IO`).
    pub fn env_key(&self) -> String {
        self.host.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
    }

    /// `evict_after` as a duration (`None`: never evict); a zero age is refused.
    pub fn eviction_age(&self) -> Result<Option<std::time::Duration>, String> {
        let Some(text) = &self.evict_after else { return Ok(None) };
        match shared::duration::parse_duration_days(text) {
            Ok(d) if d.is_zero() => Err(format!("{text:?} must be longer than zero")),
            Ok(d) => Ok(Some(d)),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Checks every `[[mirror]]`.
pub fn check(mirrors: &[MirrorConfig]) -> Result<(), ConfigError> {
    let err = |reason: String| Err(ConfigError { setting: "mirror", reason });
    let mut hosts = std::collections::BTreeSet::new();
    for (i, m) in mirrors.iter().enumerate() {
        let n = i + 1;
        if let Err(why) = check_url(&m.url) {
            return err(format!("mirror {n}: url {:?} {why}", m.url));
        }
        if m.host.is_empty() || m.host.contains('/') || m.host.parse::<RepoName>().is_err() {
            return err(format!(
                "mirror {n}: host {:?} must be a registry name usable as a repository component \
                 (lowercase, such as docker.io; no port)",
                m.host
            ));
        }
        if !hosts.insert(m.host.as_str()) {
            return err(format!("mirror {n}: host {} is mirrored twice", m.host));
        }
        if m.password.is_some() && m.password_file.is_some() {
            return err(format!("mirror {n}: give password or password_file, not both"));
        }
        let has_password = m.password.is_some() || m.password_file.is_some();
        if has_password != m.username.is_some() {
            return err(format!("mirror {n}: username and password go together"));
        }
        if m.identity_token.is_some() && m.username.is_some() {
            return err(format!("mirror {n}: give username and password, or identity_token, not both"));
        }
        if let Err(e) = m.eviction_age() {
            return err(format!("mirror {n}: evict_after: {e}"));
        }
    }
    if mirrors.iter().filter(|m| m.default).count() > 1 {
        return err("at most one mirror may be the default".into());
    }
    Ok(())
}

/// `http(s)://host[:port]` with nothing after it but an optional `/`.
fn check_url(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty() {
        return Err("has no host");
    }
    if host.contains(['/', '?', '#', '@', ' ']) {
        return Err("must be scheme and host only (no path, query or user)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<MirrorConfig>, String> {
        let c: crate::Config = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c.mirror)
    }

    #[test]
    fn mirrors_parse_and_are_checked() {
        let m = parse(
            "[[mirror]]\nurl = \"https://registry-1.docker.io\"\nhost = \"docker.io\"\ndefault = true\n\
             username = \"u\"\npassword = \"hush\"\n[[mirror]]\nurl = \"http://127.0.0.1:5001/\"\nhost = \"ghcr.io\"\n\
             tag_ttl_secs = 5\naccept_pushes = true\nevict_after = \"30d\"\n",
        )
        .unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].tag_ttl_secs, m[0].accept_pushes, m[0].default), (300, false, true));
        assert_eq!((m[1].tag_ttl_secs, m[1].accept_pushes), (5, true));
        assert_eq!(m[1].eviction_age().unwrap(), Some(std::time::Duration::from_secs(30 * 86_400)));
        assert_eq!(m[0].eviction_age().unwrap(), None);
        assert!(!format!("{m:?}").contains("hush"), "{m:?}");
        assert_eq!(m[0].env_key(), "DOCKER_IO");
        let bad = |t: &str| parse(&format!("[[mirror]]\n{t}")).unwrap_err();
        assert!(bad("url = \"ftp://x\"\nhost = \"a.io\"").contains("http://"));
        assert!(bad("url = \"http://x/v2\"\nhost = \"a.io\"").contains("no path"));
        assert!(bad("url = \"http://x\"\nhost = \"a.io:5000\"").contains("no port"));
        assert!(bad("url = \"http://x\"\nhost = \"A.io\"").contains("lowercase"));
        assert!(bad("url = \"http://x\"\nhost = \"a.io\"\nusername = \"u\"").contains("go together"));
        assert!(bad("url = \"http://x\"\nhost = \"a.io\"\nidentity_token = \"t\"\nusername = \"u\"\npassword = \"p\"")
            .contains("not both"));
        assert!(bad("url = \"http://x\"\nhost = \"a.io\"\n[[mirror]]\nurl = \"http://y\"\nhost = \"a.io\"")
            .contains("twice"));
        assert!(bad("url = \"http://x\"\nhost = \"a.io\"\nhots = 1").contains("unknown field"));
        assert!(bad("url = \"http://x\"\nhost = \"a.io\"\nevict_after = \"30 days\"").contains("evict_after"));
        assert!(bad("url = \"http://x\"\nhost = \"a.io\"\nevict_after = \"0s\"").contains("longer than zero"));
    }
}
