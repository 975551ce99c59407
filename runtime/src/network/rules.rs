//! A network's netfilter rules, one set per bridge as Docker keeps them, instead of the
//! per-container chains the CNI `bridge` (`ipMasq`) and `firewall` plugins write on every
//! start and remove on every stop:
//!
//! - `nat` chain `BERTH-POSTROUTING` (jumped to from `POSTROUTING`): traffic from the
//!   subnet leaving by another interface is masqueraded;
//! - `filter` chain `BERTH-FORWARD` (jumped to first from `FORWARD`, whose policy Docker
//!   sets to DROP): what comes in from the bridge is accepted, and what goes out to it when
//!   it belongs to a connection the containers made or was sent to a published port
//!   (`--ctstate RELATED,ESTABLISHED,DNAT`), as Docker's `docker0` rules do.
//!
//! The rules name the bridge and the subnet only, never a container: they are checked and
//! added when a container is attached and the bridge is new (or the rules were never
//! checked since the host started: a marker under `/run/berth/rules/`, which goes with a
//! reboot as the rules and the bridge do), and removed with the network.

use std::io;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::subnet::Subnet;

const FORWARD: &str = "BERTH-FORWARD";
const POSTROUTING: &str = "BERTH-POSTROUTING";

/// Where the markers of checked rules are kept.
const MARKERS: &str = "/run/berth/rules";

fn marker(bridge: &str) -> PathBuf {
    PathBuf::from(MARKERS).join(bridge)
}

/// The rules of bridge `bridge` on `subnet`: (table, chain, rule).
fn rules(bridge: &str, subnet: Subnet) -> Vec<(&'static str, &'static str, Vec<String>)> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let subnet = subnet.to_string();
    vec![
        ("nat", POSTROUTING, s(&["-s", &subnet, "!", "-o", bridge, "-j", "MASQUERADE"])),
        ("filter", FORWARD, s(&["-i", bridge, "-j", "ACCEPT"])),
        (
            "filter",
            FORWARD,
            s(&["-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "ACCEPT"]),
        ),
    ]
}

/// Runs `iptables -w -t TABLE ARGS`: whether it succeeded, or the error when it could not
/// run at all.
fn iptables(table: &str, args: &[&str]) -> io::Result<(bool, String)> {
    let out = Command::new("iptables")
        .args(["-w", "-t", table])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("running iptables: {e}")))?;
    Ok((out.status.success(), String::from_utf8_lossy(&out.stderr).trim().to_string()))
}

/// `iptables ARGS`, failing with its message.
fn must(table: &str, args: &[&str]) -> io::Result<()> {
    match iptables(table, args)? {
        (true, _) => Ok(()),
        (false, message) => Err(io::Error::other(format!("iptables -t {table} {}: {message}", args.join(" ")))),
    }
}

/// Makes sure `bridge`'s rules are in place: checked (and added where missing) when
/// `fresh` (the bridge was just made) or not checked since the host started.
pub fn ensure(bridge: &str, subnet: Subnet, fresh: bool) -> io::Result<()> {
    if !fresh && marker(bridge).exists() {
        return Ok(());
    }
    for (table, chain, parent) in [("nat", POSTROUTING, "POSTROUTING"), ("filter", FORWARD, "FORWARD")] {
        // Made once per host; "already exists" is fine.
        let _ = iptables(table, &["-N", chain])?;
        if !iptables(table, &["-C", parent, "-j", chain])?.0 {
            must(table, &["-I", parent, "-j", chain])?;
        }
    }
    for (table, chain, rule) in rules(bridge, subnet) {
        let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
        let check: Vec<&str> = ["-C", chain].into_iter().chain(rule.iter().copied()).collect();
        if !iptables(table, &check)?.0 {
            let add: Vec<&str> = ["-A", chain].into_iter().chain(rule.iter().copied()).collect();
            must(table, &add)?;
        }
    }
    std::fs::create_dir_all(MARKERS)?;
    std::fs::write(marker(bridge), subnet.to_string())?;
    Ok(())
}

/// Removes `bridge`'s rules (what is not there is fine); the chains stay for other networks.
pub fn remove(bridge: &str, subnet: Subnet) {
    let _ = std::fs::remove_file(marker(bridge));
    for (table, chain, rule) in rules(bridge, subnet) {
        let args: Vec<&str> = ["-D", chain].into_iter().chain(rule.iter().map(String::as_str)).collect();
        // A rule added twice (by two store roots) is deleted twice.
        while matches!(iptables(table, &args), Ok((true, _))) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_the_bridge_and_subnet_only() {
        let all = rules("br-abc", "10.78.3.0/24".parse().unwrap());
        let text: Vec<String> = all.iter().map(|(t, c, r)| format!("{t} {c} {}", r.join(" "))).collect();
        assert_eq!(
            text,
            [
                "nat BERTH-POSTROUTING -s 10.78.3.0/24 ! -o br-abc -j MASQUERADE",
                "filter BERTH-FORWARD -i br-abc -j ACCEPT",
                "filter BERTH-FORWARD -o br-abc -m conntrack --ctstate RELATED,ESTABLISHED,DNAT -j ACCEPT",
            ]
        );
    }
}
