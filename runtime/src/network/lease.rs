//! Address leases, kept in the CNI `host-local` plugin's layout so that leases taken by
//! either (attachments made before berth leased addresses itself) keep each other's
//! addresses out: `<dir>/<network>/<address>` holds `<container>\r\n<ifname>`,
//! `last_reserved_ip.0` the last address handed out (the next lease starts after it, as
//! host-local's does, so an address is not reused at once), and every change happens under
//! an exclusive `flock` of `<dir>/<network>/lock`, host-local's own lock, which also keeps
//! two store roots sharing the default network's leases apart.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::subnet::Subnet;

/// The folder of `network`'s leases under `dir`, locked while the value lives.
struct Locked {
    dir: PathBuf,
    _lock: File,
}

fn lock(dir: &Path, network: &str) -> io::Result<Locked> {
    let dir = dir.join(network);
    fs::create_dir_all(&dir)?;
    let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("lock"))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(Locked { dir, _lock: lock })
}

/// Leases an address of `subnet` (neither `gateway` nor taken) to `container`'s interface
/// `ifname`.
pub fn take(
    dir: &Path,
    network: &str,
    subnet: Subnet,
    gateway: Ipv4Addr,
    container: &str,
    ifname: &str,
) -> io::Result<Ipv4Addr> {
    let locked = lock(dir, network)?;
    let last_path = locked.dir.join("last_reserved_ip.0");
    let last = fs::read_to_string(&last_path).ok().and_then(|s| s.trim().parse::<Ipv4Addr>().ok());
    let first = u32::from(subnet.addr).wrapping_add(1);
    let size = 1u64 << (32 - u32::from(subnet.prefix.min(32)));
    // Hosts: every address but the network's and the broadcast one.
    let hosts = size.saturating_sub(2);
    let start = match last.filter(|ip| subnet.is_host(*ip)) {
        Some(ip) => u64::from(u32::from(ip) - first) + 1,
        None => 0,
    };
    for step in 0..hosts {
        let ip = Ipv4Addr::from(first.wrapping_add(((start + step) % hosts) as u32));
        if ip == gateway || !subnet.is_host(ip) {
            continue;
        }
        let path = locked.dir.join(ip.to_string());
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                let written = file.write_all(format!("{container}\r\n{ifname}").as_bytes());
                if let Err(e) = written {
                    let _ = fs::remove_file(&path);
                    return Err(e);
                }
                fs::write(&last_path, ip.to_string())?;
                return Ok(ip);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!("no free address left on {subnet}")))
}

/// Gives back `container`'s leases (`at` first, when known); another container's lease of
/// the same address stays.
pub fn release(dir: &Path, network: &str, at: Option<Ipv4Addr>, container: &str) -> io::Result<()> {
    let locked = lock(dir, network)?;
    let held = |path: &Path| -> io::Result<bool> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(text.lines().next().map(str::trim) == Some(container)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    };
    if let Some(ip) = at {
        let path = locked.dir.join(ip.to_string());
        if held(&path)? {
            return fs::remove_file(&path);
        }
    }
    for entry in fs::read_dir(&locked.dir)? {
        let path = entry?.path();
        let is_lease = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.parse::<Ipv4Addr>().is_ok());
        if is_lease && held(&path)? {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_skip_the_gateway_and_taken_addresses_go_on_after_the_last_and_are_released_by_their_holder() {
        let dir = tempfile::tempdir().unwrap();
        let subnet: Subnet = "10.9.0.0/29".parse().unwrap();
        let gateway = Ipv4Addr::new(10, 9, 0, 1);
        // A lease host-local wrote for another container.
        fs::create_dir_all(dir.path().join("net")).unwrap();
        fs::write(dir.path().join("net/10.9.0.3"), "other\r\neth0").unwrap();
        let a = take(dir.path(), "net", subnet, gateway, "a", "eth0").unwrap();
        let b = take(dir.path(), "net", subnet, gateway, "b", "eth0").unwrap();
        assert_eq!((a, b), (Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(10, 9, 0, 4)));
        assert_eq!(fs::read_to_string(dir.path().join("net/10.9.0.2")).unwrap(), "a\r\neth0");
        // Released for a container that holds none: kept. By its holder: gone, and not
        // handed out next.
        release(dir.path(), "net", Some(a), "x").unwrap();
        assert!(dir.path().join("net/10.9.0.2").exists() && dir.path().join("net/10.9.0.4").exists());
        release(dir.path(), "net", Some(a), "a").unwrap();
        assert!(!dir.path().join("net/10.9.0.2").exists());
        let next: Vec<Ipv4Addr> =
            ["c", "d", "e"].iter().map(|c| take(dir.path(), "net", subnet, gateway, c, "eth0").unwrap()).collect();
        assert_eq!(next, [Ipv4Addr::new(10, 9, 0, 5), Ipv4Addr::new(10, 9, 0, 6), Ipv4Addr::new(10, 9, 0, 2)]);
        // .1 is the gateway, .7 the broadcast address: the subnet is full.
        let full = take(dir.path(), "net", subnet, gateway, "f", "eth0").unwrap_err();
        assert!(full.to_string().contains("no free address"), "{full}");
        // Not knowing the address, the holder's lease is found.
        release(dir.path(), "net", None, "other").unwrap();
        assert!(!dir.path().join("net/10.9.0.3").exists());
        release(dir.path(), "net", None, "gone").unwrap();
    }
}
