//! IPv4 subnets in CIDR form (`10.77.0.0/16`): parsed once from `--subnet`, stored in a
//! network's definition, and checked for overlaps with other networks and the host's routes.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 subnet: a network address and a prefix length (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    /// The network address.
    pub addr: Ipv4Addr,
    /// The prefix length, 0 to 32.
    pub prefix: u8,
}

impl Subnet {
    /// The subnet `addr/prefix`, with `addr`'s host bits cleared.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Subnet {
        let prefix = prefix.min(32);
        Subnet { addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)), prefix }
    }

    /// Whether `ip` is in the subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    /// Whether the two subnets share an address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        let prefix = self.prefix.min(other.prefix);
        u32::from(self.addr) & mask(prefix) == u32::from(other.addr) & mask(prefix)
    }

    /// The first host address (the default gateway, as Docker picks it).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + 1)
    }

    /// Whether `ip` can be given to a host of the subnet (neither its network nor its
    /// broadcast address).
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        let broadcast = u32::from(self.addr) | !mask(self.prefix);
        self.contains(ip) && ip != self.addr && u32::from(ip) != broadcast
    }
}

/// The netmask of a prefix length.
fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a subnet did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid subnet {0:?}: use an IPv4 CIDR such as 10.90.0.0/24 (prefix 8 to 30, host bits zero)")]
pub struct SubnetError(pub String);

impl FromStr for Subnet {
    type Err = SubnetError;

    fn from_str(text: &str) -> Result<Subnet, SubnetError> {
        let bad = || SubnetError(text.to_string());
        let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(bad());
        }
        let subnet = Subnet::new(addr, prefix);
        if subnet.addr != addr {
            return Err(bad());
        }
        Ok(subnet)
    }
}

impl Serialize for Subnet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Subnet, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The IPv4 subnets the host routes to (`/proc/net/route`), but the default route.
pub fn host_routes() -> Vec<Subnet> {
    parse_routes(&std::fs::read_to_string("/proc/net/route").unwrap_or_default())
}

/// Parses `/proc/net/route`: destination and mask are little-endian hex.
fn parse_routes(text: &str) -> Vec<Subnet> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let dest = u32::from_str_radix(fields.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?;
            // The kernel prints the network-order words as host-order (little-endian) numbers.
            let prefix = mask.count_ones() as u8;
            (prefix > 0).then(|| Subnet::new(Ipv4Addr::from(dest.to_le_bytes()), prefix))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_contain_and_overlap() {
        let s: Subnet = "10.77.0.0/16".parse().unwrap();
        assert_eq!(s.to_string(), "10.77.0.0/16");
        assert_eq!(s.first_host(), Ipv4Addr::new(10, 77, 0, 1));
        assert!(s.contains(Ipv4Addr::new(10, 77, 200, 3)));
        assert!(!s.contains(Ipv4Addr::new(10, 78, 0, 1)));
        assert!(s.overlaps(&"10.77.5.0/24".parse().unwrap()));
        assert!(!s.overlaps(&"10.78.0.0/24".parse().unwrap()));
        assert!(s.is_host(Ipv4Addr::new(10, 77, 0, 1)) && !s.is_host(Ipv4Addr::new(10, 77, 255, 255)));
        for bad in ["10.77.0.1/16", "10.77.0.0", "10.77.0.0/33", "10.77.0.0/4", "x/16", "fd00::/64"] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Subnet>(&json).unwrap(), s);
    }

    #[test]
    fn host_routes_are_read_from_proc() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(parse_routes(table), vec!["172.17.0.0/16".parse::<Subnet>().unwrap()]);
    }
}
