//! Resolving `--user` (or the image's `User`) to numeric ids the way Docker does, from the
//! container's own `/etc/passwd` and `/etc/group`.
//!
//! Accepted forms: `name`, `uid`, `name:group`, `uid:gid`, `name:gid`, `uid:group`. A name
//! must be in the image's `/etc/passwd` (a group name in its `/etc/group`); a bare uid need
//! not be, and then runs with gid 0 and home `/`. The supplementary groups are those of
//! `/etc/group` that list the user by name, unless a group was given explicitly. The spec
//! builder ([`super::spec`]) calls [`resolve`] with the two files read from the container's
//! root by [`super::rootfs::read_in_root`].

/// The ids a process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub additional_gids: Vec<u32>,
    /// The home directory from `/etc/passwd` (`/` when the user is not listed).
    pub home: String,
}

/// Why a user could not be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    /// A user name is not in the image's `/etc/passwd`.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    /// A group name is not in the image's `/etc/group`.
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    /// The text is not a user specification.
    #[error("invalid user specification {0:?}")]
    Invalid(String),
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || line.starts_with('#') {
            return None;
        }
        Some(PasswdEntry { name: f[0], uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: f[5] })
    })
}

/// (name, gid, members) of each valid line of a group file.
fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || line.starts_with('#') {
            return None;
        }
        let members = f[3].split(',').map(str::trim).filter(|m| !m.is_empty()).collect();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

/// Resolves `spec` (empty means root) against the contents of the image's `/etc/passwd`
/// and `/etc/group` (empty when the image has none).
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<ResolvedUser, UserError> {
    let spec = spec.trim();
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if group_part.is_some_and(str::is_empty) || (user_part.is_empty() && group_part.is_some()) {
        return Err(UserError::Invalid(spec.to_string()));
    }
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let (uid, mut gid, home, name) = match user_part.parse::<u32>() {
        Ok(uid) => match passwd_entries(passwd).find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, e.home.to_string(), Some(e.name.to_string())),
            None => (uid, 0, "/".to_string(), None),
        },
        Err(_) => {
            let e = passwd_entries(passwd)
                .find(|e| e.name == user_part)
                .ok_or_else(|| UserError::NoUser(user_part.to_string()))?;
            (e.uid, e.gid, e.home.to_string(), Some(e.name.to_string()))
        }
    };
    let mut additional_gids = Vec::new();
    match group_part {
        Some(g) => {
            gid = match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => group_entries(group)
                    .find(|(n, _, _)| *n == g)
                    .map(|(_, gid, _)| gid)
                    .ok_or_else(|| UserError::NoGroup(g.to_string()))?,
            };
        }
        None => {
            if let Some(name) = &name {
                for (_, id, members) in group_entries(group) {
                    if members.contains(&name.as_str()) && id != gid && !additional_gids.contains(&id) {
                        additional_gids.push(id);
                    }
                }
            }
        }
    }
    Ok(ResolvedUser { uid, gid, additional_gids, home })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          # a comment\n\
                          daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                          app:x:1000:1000:App:/home/app:/bin/sh\n\
                          broken line\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:root,app\napp:x:1000:\naudio:x:29:app\n";

    fn user(uid: u32, gid: u32, extra: &[u32], home: &str) -> ResolvedUser {
        ResolvedUser { uid, gid, additional_gids: extra.to_vec(), home: home.into() }
    }

    #[test]
    fn resolves_names_and_numbers_like_docker() {
        assert_eq!(resolve("", PASSWD, GROUP), Ok(user(0, 0, &[10], "/root")));
        assert_eq!(resolve("app", PASSWD, GROUP), Ok(user(1000, 1000, &[10, 29], "/home/app")));
        assert_eq!(resolve("1000", PASSWD, GROUP), Ok(user(1000, 1000, &[10, 29], "/home/app")));
        assert_eq!(resolve("4242", PASSWD, GROUP), Ok(user(4242, 0, &[], "/")));
        assert_eq!(resolve("4242:77", PASSWD, GROUP), Ok(user(4242, 77, &[], "/")));
        assert_eq!(resolve("app:audio", PASSWD, GROUP), Ok(user(1000, 29, &[], "/home/app")));
        assert_eq!(resolve("daemon:0", "", ""), Err(UserError::NoUser("daemon".into())));
        assert_eq!(resolve("1:nogroup", PASSWD, GROUP), Err(UserError::NoGroup("nogroup".into())));
        assert_eq!(resolve("nobody", PASSWD, GROUP), Err(UserError::NoUser("nobody".into())));
        assert!(matches!(resolve("app:", PASSWD, GROUP), Err(UserError::Invalid(_))));
        assert!(matches!(resolve(":1", PASSWD, GROUP), Err(UserError::Invalid(_))));
        // No passwd at all: numbers still work, as root.
        assert_eq!(resolve("", "", ""), Ok(user(0, 0, &[], "/")));
    }
}
