//! The contents of the `/etc/hosts` and `/etc/resolv.conf` berth writes for a container,
//! from the `berth run` options: `--add-host` lines appended to the hosts file, and
//! `--dns`, `--dns-search` and `--dns-option` replacing the host's name servers, search
//! domains and options as `docker run` replaces them (what is not given is kept from the
//! host's file). Pure functions; the supervisor ([`super::shim`]) writes the files and
//! bind-mounts them.

use super::spec::RunOptions;

/// `hosts` with a line per `--add-host` entry appended, in the order given.
pub fn hosts(base: &str, options: &RunOptions) -> String {
    let mut out = base.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for h in &options.extra_hosts {
        out.push_str(&format!("{}\t{}\n", h.ip, h.name));
    }
    out
}

/// Whether the options set anything of `/etc/resolv.conf`.
pub fn sets_resolv_conf(options: &RunOptions) -> bool {
    !options.dns.is_empty() || !options.dns_search.is_empty() || !options.dns_options.is_empty()
}

/// The container's `/etc/resolv.conf`: the host's (`host`) with its `nameserver`,
/// `search`/`domain` and `options` lines replaced by those the options give, as Docker
/// does. Comments and other lines of the host's file are kept.
pub fn resolv_conf(host: &str, options: &RunOptions) -> String {
    let keyword = |line: &str| line.split_whitespace().next().unwrap_or("").to_string();
    let mut out = String::new();
    let mut kept = |line: &str| {
        out.push_str(line);
        out.push('\n');
    };
    for line in host.lines() {
        let replaced = match keyword(line).as_str() {
            "nameserver" => !options.dns.is_empty(),
            "search" | "domain" => !options.dns_search.is_empty(),
            "options" => !options.dns_options.is_empty(),
            _ => false,
        };
        if !replaced {
            kept(line);
        }
    }
    for ip in &options.dns {
        out.push_str(&format!("nameserver {ip}\n"));
    }
    if !options.dns_search.is_empty() {
        out.push_str(&format!("search {}\n", options.dns_search.join(" ")));
    }
    if !options.dns_options.is_empty() {
        out.push_str(&format!("options {}\n", options.dns_options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::spec::ExtraHost;

    #[test]
    fn extra_hosts_are_appended() {
        let options = RunOptions {
            extra_hosts: vec![
                ExtraHost { name: "db".into(), ip: "10.1.2.3".parse().unwrap() },
                ExtraHost { name: "v6".into(), ip: "fd00::1".parse().unwrap() },
            ],
            ..RunOptions::default()
        };
        assert_eq!(hosts("127.0.0.1\tlocalhost", &options), "127.0.0.1\tlocalhost\n10.1.2.3\tdb\nfd00::1\tv6\n");
        assert_eq!(hosts("x\n", &RunOptions::default()), "x\n");
    }

    #[test]
    fn dns_options_replace_the_hosts_lines() {
        let host =
            "# generated\nnameserver 192.168.1.1\nnameserver 8.8.8.8\nsearch lan\noptions edns0\nsortlist 1.2.3.4\n";
        let dns = RunOptions { dns: vec!["1.1.1.1".parse().unwrap()], ..RunOptions::default() };
        assert!(sets_resolv_conf(&dns));
        assert_eq!(
            resolv_conf(host, &dns),
            "# generated\nsearch lan\noptions edns0\nsortlist 1.2.3.4\nnameserver 1.1.1.1\n"
        );
        let all = RunOptions {
            dns_search: vec!["a.example".into(), "b.example".into()],
            dns_options: vec!["ndots:2".into(), "timeout:1".into()],
            ..RunOptions::default()
        };
        assert_eq!(
            resolv_conf(host, &all),
            "# generated\nnameserver 192.168.1.1\nnameserver 8.8.8.8\nsortlist 1.2.3.4\nsearch a.example b.example\noptions ndots:2 timeout:1\n"
        );
        assert!(!sets_resolv_conf(&RunOptions::default()));
    }
}
