//! The ranges Services are given addresses and node ports from (`--service-cluster-ip-range`,
//! `--service-node-port-range`), and the messages upstream's allocators answer with.

use std::net::Ipv4Addr;
use std::ops::RangeInclusive;

/// An IPv4 CIDR of cluster IPs. As upstream's bitmap allocator, the network and broadcast
/// addresses are never given out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterIpRange {
    network: u32,
    prefix: u8,
}

impl Default for ClusterIpRange {
    /// kubeadm's `10.96.0.0/12`, which most users know their Services by.
    fn default() -> Self {
        ClusterIpRange {
            network: u32::from(Ipv4Addr::new(10, 96, 0, 0)),
            prefix: 12,
        }
    }
}

impl ClusterIpRange {
    /// Parses `10.96.0.0/12`; the address is masked to its network.
    pub fn parse(cidr: &str) -> Result<Self, String> {
        let bad =
            || format!("invalid CIDR {cidr:?}: expected an IPv4 network such as 10.96.0.0/12");
        let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(format!(
                "invalid CIDR {cidr:?}: the prefix must be between /8 and /30"
            ));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(ClusterIpRange {
            network: u32::from(addr) & mask,
            prefix,
        })
    }

    /// How many addresses may be given out.
    pub fn size(&self) -> u32 {
        (1u32 << (32 - self.prefix)) - 2
    }

    /// The `i`th address that may be given out (`i < size()`).
    pub fn nth(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1 + i % self.size())
    }

    /// Whether `ip` may be given out.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip > self.network && ip < self.network + (1u32 << (32 - self.prefix)) - 1
    }
}

impl std::fmt::Display for ClusterIpRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

/// Parses `30000-32767`.
pub fn parse_node_port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let bad = || format!("invalid port range {text:?}: expected FIRST-LAST, such as 30000-32767");
    let (first, last) = text.split_once('-').ok_or_else(bad)?;
    let first: u16 = first.trim().parse().map_err(|_| bad())?;
    let last: u16 = last.trim().parse().map_err(|_| bad())?;
    if first == 0 || first > last {
        return Err(bad());
    }
    Ok(first..=last)
}

/// Upstream's reasons for refusing a requested address or port.
pub fn ip_not_in_range(ip: &str, range: &ClusterIpRange) -> String {
    format!(
        "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {range}"
    )
}

pub fn ip_already_allocated(ip: &str) -> String {
    format!("failed to allocate IP {ip}: provided IP is already allocated")
}

pub fn port_not_in_range(range: &RangeInclusive<u16>) -> String {
    format!(
        "provided port is not in the valid range. The range of valid ports is {}-{}",
        range.start(),
        range.end()
    )
}

pub const PORT_ALREADY_ALLOCATED: &str = "provided port is already allocated";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_gives_out_neither_its_network_nor_its_broadcast_address() {
        let r = ClusterIpRange::parse("10.96.0.7/24").expect("range");
        assert_eq!(r.to_string(), "10.96.0.0/24");
        assert_eq!(r.size(), 254);
        assert_eq!(r.nth(0), Ipv4Addr::new(10, 96, 0, 1));
        assert_eq!(r.nth(253), Ipv4Addr::new(10, 96, 0, 254));
        assert!(r.contains(Ipv4Addr::new(10, 96, 0, 254)));
        assert!(!r.contains(Ipv4Addr::new(10, 96, 0, 0)));
        assert!(!r.contains(Ipv4Addr::new(10, 96, 0, 255)));
        assert!(!r.contains(Ipv4Addr::new(10, 97, 0, 1)));
        assert!(ClusterIpRange::parse("10.96.0.0").is_err());
        assert!(ClusterIpRange::parse("10.96.0.0/31").is_err());
    }

    #[test]
    fn node_port_ranges_and_messages() {
        let r = parse_node_port_range("30000-32767").expect("range");
        assert_eq!((*r.start(), *r.end()), (30000, 32767));
        assert!(parse_node_port_range("32767-30000").is_err());
        assert_eq!(
            port_not_in_range(&r),
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
        let ips = ClusterIpRange::default();
        assert_eq!(ips, ClusterIpRange::parse("10.96.0.0/12").expect("range"));
        assert_eq!(
            ip_not_in_range("1.1.1.1", &ips),
            "failed to allocate IP 1.1.1.1: the provided IP (1.1.1.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12"
        );
    }
}
