//! A fresh session keyring for each container started by the embedded runtime, as runc
//! gives one: without it, the container's processes would share the session keyring of
//! whoever ran `berth run` (or `berth build`) and, through it, whatever that keyring links,
//! usually the user keyring of root.
//!
//! [`join_fresh_session`] is called by [`super::oci`] in the supervisor right before the
//! embedded runtime clones the container, which inherits the keyring. runc does the same in
//! its container init: `keyctl(KEYCTL_JOIN_SESSION_KEYRING, "_ses.<id>")`, then it adds
//! search permission for the owner. What it achieves, and so what this achieves (kernel
//! rules, checked against runc by `tests/tests/run.rs`):
//! - the caller's session keyring, and every key in it, is out of reach: `%user:NAME`
//!   lookups find nothing, and a key's ID read elsewhere is not "possessed", so only its
//!   owner permissions apply (for keys made by `keyctl add`, view only);
//! - root's user keyring is *not* hidden: it is per user ID (and user namespace), so a
//!   container running as root can still name it (`@u`), search it and link what it finds
//!   into a keyring of its own, and then read the key. Docker's seccomp profile, which
//!   berth applies by default ([`super::seccomp`]), closes that (`keyctl`, `add_key` and
//!   `request_key` fail); only under `--security-opt seccomp=unconfined` (or `--privileged`)
//!   is the user keyring reachable, as with Docker.

use std::ffi::CString;
use std::io;

/// `KEYCTL_JOIN_SESSION_KEYRING` of `<linux/keyctl.h>`.
const KEYCTL_JOIN_SESSION_KEYRING: nix::libc::c_long = 1;
/// `KEYCTL_SETPERM`.
const KEYCTL_SETPERM: nix::libc::c_long = 5;
/// `KEYCTL_DESCRIBE`.
const KEYCTL_DESCRIBE: nix::libc::c_long = 6;
/// `KEY_USR_SEARCH`: the owner may search the keyring.
const KEY_USR_SEARCH: u32 = 0x0008_0000;

/// Why the keyring could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The kernel refused a `keyctl` call.
    #[error("{what} for container {id}")]
    Keyctl {
        /// The operation.
        what: &'static str,
        /// The container.
        id: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Makes the calling process (and so everything it starts from now on) join a new session
/// keyring `_ses.<id>`, as runc does for container `id`; returns its serial number. A kernel
/// without keyrings (`ENOSYS`) has nothing to leak and is no error (runc's rule): `None`.
pub fn join_fresh_session(id: &str) -> Result<Option<i32>, KeyringError> {
    let fail = |what: &'static str| {
        let id = id.to_string();
        move |source: io::Error| KeyringError::Keyctl { what, id, source }
    };
    let wanted = format!("_ses.{id}");
    if let Some(serial) = current_session(&wanted) {
        // Joined already: a supervisor that restarts its container (joining again fails).
        return Ok(Some(serial));
    }
    let name = CString::new(wanted)
        .map_err(|e| fail("naming the session keyring")(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    // SAFETY: keyctl(2) reads a NUL-terminated name that outlives the call.
    let serial = unsafe { nix::libc::syscall(nix::libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if serial < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(nix::libc::ENOSYS) {
            return Ok(None);
        }
        return Err(fail("joining a new session keyring")(e));
    }
    let serial = serial as i32;
    let perm = permissions(serial).map_err(fail("reading the session keyring's permissions"))?;
    // SAFETY: KEYCTL_SETPERM takes two integers.
    let set = unsafe { nix::libc::syscall(nix::libc::SYS_keyctl, KEYCTL_SETPERM, serial, perm | KEY_USR_SEARCH) };
    if set < 0 {
        return Err(fail("setting the session keyring's permissions")(io::Error::last_os_error()));
    }
    Ok(Some(serial))
}

/// The serial number of this process's session keyring when it is named `name`.
fn current_session(name: &str) -> Option<i32> {
    /// `KEYCTL_GET_KEYRING_ID`, and `KEY_SPEC_SESSION_KEYRING`.
    const KEYCTL_GET_KEYRING_ID: nix::libc::c_long = 0;
    const KEY_SPEC_SESSION_KEYRING: i32 = -3;
    // SAFETY: KEYCTL_GET_KEYRING_ID takes two integers; 0: do not create one.
    let serial =
        unsafe { nix::libc::syscall(nix::libc::SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0) };
    let serial = i32::try_from(serial).ok().filter(|s| *s > 0)?;
    let description = describe(serial).ok()?;
    (description.trim_end_matches('\0').rsplit(';').next() == Some(name)).then_some(serial)
}

/// The description of key `serial` (`type;uid;gid;perm;name`).
fn describe(serial: i32) -> io::Result<String> {
    let mut buf = vec![0u8; 512];
    // SAFETY: KEYCTL_DESCRIBE writes at most `buf.len()` bytes into `buf`.
    let n = unsafe { nix::libc::syscall(nix::libc::SYS_keyctl, KEYCTL_DESCRIBE, serial, buf.as_mut_ptr(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate((n as usize).min(buf.len()));
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The permission mask of key `serial`, from its description (`type;uid;gid;perm;name`).
fn permissions(serial: i32) -> io::Result<u32> {
    parse_permissions(&describe(serial)?)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected key description"))
}

/// The permission field (hexadecimal, the fourth) of a key description.
fn parse_permissions(description: &str) -> Option<u32> {
    let field = description.trim_end_matches('\0').split(';').nth(3)?;
    u32::from_str_radix(field, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_permission_field() {
        assert_eq!(parse_permissions("keyring;0;0;3f030000;_ses.x\0"), Some(0x3f03_0000));
        assert_eq!(parse_permissions("keyring;0;0"), None);
        assert_eq!(parse_permissions("keyring;0;0;zz;n"), None);
    }
}
