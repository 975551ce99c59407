//! A container's interface, made by berth itself over rtnetlink: a veth pair whose host end
//! joins the network's bridge and whose other end is created inside the container's network
//! namespace as `eth0`, with its address and default route; and the bridge itself, with the
//! gateway address, when it is missing. This is what the CNI `bridge` plugin does for an
//! ADD, in a few netlink requests instead of a process and its `iptables` calls (the
//! network-wide rules that replace those are in [`super::rules`]).
//!
//! The messages are those of `netlink-packet-route` (already built for libcontainer); the
//! socket is a plain blocking `NETLINK_ROUTE` socket. Requests inside the container's
//! namespace are sent from a short-lived thread that joined it, as in [`super::netns`]:
//! only that thread changes namespace.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};

/// A blocking rtnetlink socket of the calling thread's network namespace.
pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink { socket, sequence: 0 })
    }

    /// Sends one request with `flags` (and `NLM_F_REQUEST | NLM_F_ACK`) and reads the
    /// answers up to the kernel's acknowledgement: the messages that came before it, or the
    /// error it carried.
    fn request(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut packet = NetlinkMessage::from(message);
        packet.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        packet.header.sequence_number = self.sequence;
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut answers = Vec::new();
        let mut receive = vec![0u8; 64 * 1024];
        loop {
            let n = self.socket.recv(&mut &mut receive[..], 0)?;
            let mut offset = 0;
            while offset < n {
                let answer = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&receive[offset..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("netlink answer: {e}")))?;
                let length = answer.header.length as usize;
                let ours = answer.header.sequence_number == self.sequence;
                match answer.payload {
                    NetlinkPayload::Error(e) if ours => {
                        return match e.code {
                            None => Ok(answers),
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        }
                    }
                    NetlinkPayload::InnerMessage(m) if ours => answers.push(m),
                    NetlinkPayload::Done(_) if ours => return Ok(answers),
                    _ => {}
                }
                if length == 0 {
                    break;
                }
                offset += length;
            }
        }
    }

    /// The index and MAC address of interface `name`; `None` when there is none.
    pub fn link(&mut self, name: &str) -> io::Result<Option<(u32, String)>> {
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(name.to_string()));
        let answers = match self.request(RouteNetlinkMessage::GetLink(message), 0) {
            Ok(answers) => answers,
            Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(answers.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(link) => {
                let mac = link.attributes.iter().find_map(|a| match a {
                    LinkAttribute::Address(bytes) => Some(mac_string(bytes)),
                    _ => None,
                });
                Some((link.header.index, mac.unwrap_or_default()))
            }
            _ => None,
        }))
    }

    /// Creates bridge `name`, up; `false` when it exists already.
    pub fn create_bridge(&mut self, name: &str) -> io::Result<bool> {
        let mut message = LinkMessage::default();
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        message.attributes.push(LinkAttribute::IfName(name.to_string()));
        message.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
        match self.request(RouteNetlinkMessage::NewLink(message), NLM_F_CREATE | NLM_F_EXCL) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(nix::libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates the veth pair `host` (up, a port of bridge `master`) and `peer`, made
    /// directly inside the network namespace `netns`.
    pub fn create_veth(&mut self, host: &str, master: u32, peer: &str, netns: &File) -> io::Result<()> {
        let mut inside = LinkMessage::default();
        inside.attributes.push(LinkAttribute::IfName(peer.to_string()));
        inside.attributes.push(LinkAttribute::NetNsFd(netns.as_raw_fd()));
        let mut message = LinkMessage::default();
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        message.attributes.push(LinkAttribute::IfName(host.to_string()));
        message.attributes.push(LinkAttribute::Controller(master));
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(inside))),
        ]));
        self.request(RouteNetlinkMessage::NewLink(message), NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    /// Sets interface `index` up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(message), 0).map(drop)
    }

    /// Gives interface `index` the address `ip/prefix`; `false` when it had it already.
    pub fn add_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> io::Result<bool> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix;
        message.header.index = index;
        message.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
        message.attributes.push(AddressAttribute::Address(IpAddr::V4(ip)));
        let broadcast = u32::from(ip) | (u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0));
        message.attributes.push(AddressAttribute::Broadcast(Ipv4Addr::from(broadcast)));
        match self.request(RouteNetlinkMessage::NewAddress(message), NLM_F_CREATE | NLM_F_EXCL) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(nix::libc::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds the default route through `gateway`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Boot;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        message.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.request(RouteNetlinkMessage::NewRoute(message), NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    /// Deletes interface `name` (a veth goes with its peer); `false` when there was none.
    pub fn delete_link(&mut self, name: &str) -> io::Result<bool> {
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::DelLink(message), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// `aa:bb:cc:dd:ee:ff`.
fn mac_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// What [`attach`] made: the host end's name and MAC address, the container end's MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    /// The host end of the pair.
    pub host: String,
    /// Its MAC address.
    pub host_mac: String,
    /// The container's `eth0` MAC address.
    pub mac: String,
    /// The bridge's MAC address.
    pub bridge_mac: String,
}

/// A bridge as [`ensure_bridge`] found or made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bridge {
    /// Its interface index.
    pub index: u32,
    /// Its MAC address.
    pub mac: String,
    /// Whether it was made now (its rules are then to be checked).
    pub made: bool,
}

/// How [`attach`] wires a namespace.
pub struct Wiring<'a> {
    /// The network's bridge ([`ensure_bridge`]).
    pub bridge: &'a Bridge,
    /// The host end's name.
    pub host: &'a str,
    /// The container's interface name.
    pub ifname: &'a str,
    /// The container's address and prefix length.
    pub address: (Ipv4Addr, u8),
    /// The gateway (the bridge's address).
    pub gateway: Ipv4Addr,
}

/// Makes bridge `name` (with the gateway address, up) unless it exists. Also turns on IPv4
/// forwarding when it makes one, as the `bridge` plugin's `isGateway` does.
pub fn ensure_bridge(nl: &mut Netlink, name: &str, gateway: Ipv4Addr, prefix: u8) -> io::Result<Bridge> {
    if let Some((index, mac)) = nl.link(name)? {
        return Ok(Bridge { index, mac, made: false });
    }
    let made = nl.create_bridge(name)?;
    let (index, mac) = nl.link(name)?.ok_or_else(|| io::Error::other(format!("bridge {name} vanished")))?;
    if made {
        nl.add_address(index, gateway, prefix)?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", b"1")?;
    }
    Ok(Bridge { index, mac, made })
}

/// Wires the namespace held by file `netns` to the bridge (which must exist: [`ensure_bridge`]):
/// the veth pair, its host end up on the bridge with hairpin on (so a container reaches its
/// own published ports), and inside, the interface up with its address and default route.
pub fn attach(nl: &mut Netlink, netns: &Path, w: &Wiring<'_>) -> io::Result<Made> {
    let ns = File::open(netns)?;
    nl.create_veth(w.host, w.bridge.index, w.ifname, &ns)?;
    let wired = (|| -> io::Result<Made> {
        // Hairpin, as the plugin's hairpinMode: the bridge sends a port's frames back to it.
        std::fs::write(format!("/sys/class/net/{}/brport/hairpin_mode", w.host), b"1")?;
        let (_, host_mac) = nl.link(w.host)?.ok_or_else(|| io::Error::other(format!("{} vanished", w.host)))?;
        let (ifname, address, gateway) = (w.ifname.to_string(), w.address, w.gateway);
        let mac = std::thread::spawn(move || -> io::Result<String> {
            // SAFETY: setns(2) on an open namespace file; it moves this thread only.
            if unsafe { nix::libc::setns(ns.as_raw_fd(), nix::libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let mut inside = Netlink::open()?;
            let (index, mac) = inside.link(&ifname)?.ok_or_else(|| io::Error::other(format!("no {ifname} inside")))?;
            inside.set_up(index)?;
            inside.add_address(index, address.0, address.1)?;
            inside.add_default_route(gateway)?;
            Ok(mac)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))?;
        Ok(Made { host: w.host.to_string(), host_mac, mac, bridge_mac: w.bridge.mac.clone() })
    })();
    if wired.is_err() {
        let _ = nl.delete_link(w.host);
    }
    wired
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_written_as_ip_link_shows_them() {
        assert_eq!(mac_string(&[0x02, 0x42, 0xac, 0x11, 0, 0x0a]), "02:42:ac:11:00:0a");
        assert_eq!(mac_string(&[]), "");
    }
}
