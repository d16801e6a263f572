//! Minimal IP / CIDR helpers used by validation and rendering.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An interface address with its prefix length, e.g. `10.10.0.10/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The host address (not masked).
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

/// Why a CIDR string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// No `/prefix` part.
    #[error("{0:?} has no prefix length (expected an address like 10.10.0.10/24)")]
    MissingPrefix(String),
    /// The address part is not an IP address.
    #[error("{0:?} is not a valid IP address")]
    BadAddress(String),
    /// The prefix is not a number or too long for the address family.
    #[error("{0:?} is not a valid prefix length")]
    BadPrefix(String),
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| CidrError::MissingPrefix(s.to_string()))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| CidrError::BadAddress(a.to_string()))?;
        let prefix: u8 = p.parse().map_err(|_| CidrError::BadPrefix(p.to_string()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max || p.starts_with('+') {
            return Err(CidrError::BadPrefix(p.to_string()));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn to_bits(ip: IpAddr) -> (u128, u32) {
    match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

impl Cidr {
    /// Whether `ip` lies in this address's network (same family, same masked bits).
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.addr.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let (a, width) = to_bits(self.addr);
        let (b, _) = to_bits(ip);
        let host_bits = width - u32::from(self.prefix);
        if host_bits >= 128 {
            return true;
        }
        (a >> host_bits) == (b >> host_bits)
    }

    /// Whether the address is the network or (IPv4) broadcast address of its subnet,
    /// which can't be assigned to an interface.
    pub fn is_network_or_broadcast(&self) -> bool {
        let (a, width) = to_bits(self.addr);
        let host_bits = width - u32::from(self.prefix);
        if !(2..128).contains(&host_bits) {
            return false;
        }
        let mask = (1u128 << host_bits) - 1;
        let host = a & mask;
        host == 0 || (self.addr.is_ipv4() && host == mask)
    }
}

/// Normalises a MAC address to lower-case colon form (`bc:24:11:00:00:01`).
/// Accepts `:` or `-` separators. Returns `None` when it is not a MAC address.
pub fn normalize_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = Vec::with_capacity(6);
    for p in parts {
        if p.len() != 2 || !p.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        out.push(p.to_ascii_lowercase());
    }
    Some(out.join(":"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_contains() {
        let c: Cidr = "10.10.0.10/24".parse().unwrap();
        assert!(c.contains("10.10.0.20".parse().unwrap()));
        assert!(!c.contains("10.10.1.20".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        assert!("10.10.0.10".parse::<Cidr>().is_err());
        assert!("10.10.0.10/33".parse::<Cidr>().is_err());
        assert!("10.10.0.300/24".parse::<Cidr>().is_err());
        let v6: Cidr = "fd00::10/64".parse().unwrap();
        assert!(v6.contains("fd00::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn network_and_broadcast() {
        assert!("10.10.0.0/24"
            .parse::<Cidr>()
            .unwrap()
            .is_network_or_broadcast());
        assert!("10.10.0.255/24"
            .parse::<Cidr>()
            .unwrap()
            .is_network_or_broadcast());
        assert!(!"10.10.0.1/24"
            .parse::<Cidr>()
            .unwrap()
            .is_network_or_broadcast());
        assert!(!"10.10.0.1/32"
            .parse::<Cidr>()
            .unwrap()
            .is_network_or_broadcast());
    }

    #[test]
    fn macs() {
        assert_eq!(
            normalize_mac("BC-24-11-00-00-0A").as_deref(),
            Some("bc:24:11:00:00:0a")
        );
        assert_eq!(normalize_mac("bc:24:11:00:00"), None);
        assert_eq!(normalize_mac("bc:24:11:00:00:zz"), None);
    }
}

impl Cidr {
    /// The network this address is in (`10.10.0.10/24` -> `10.10.0.0/24`).
    pub fn network(&self) -> Cidr {
        let (a, width) = to_bits(self.addr);
        let host_bits = width - u32::from(self.prefix);
        let masked = if host_bits >= 128 {
            0
        } else {
            (a >> host_bits) << host_bits
        };
        let addr = match self.addr {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(masked as u32)),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(masked)),
        };
        Cidr {
            addr,
            prefix: self.prefix,
        }
    }
}

/// Host and port of an `https://host[:port]` endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP (without brackets).
    pub host: String,
    /// Port (default 6443).
    pub port: u16,
}

/// Parses a Kubernetes API endpoint `https://host[:port]` (no path).
pub fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    let rest = s
        .strip_prefix("https://")
        .ok_or_else(|| format!("{s:?} must start with https://"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains('/') || rest.contains('?') || rest.contains('@') {
        return Err(format!("{s:?} must be https://host[:port] without a path"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{s:?} has an unterminated IPv6 address"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("{s:?} is not a valid endpoint")),
        };
        (h.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{s:?} has an invalid port"))?,
        None => 6443,
    };
    Ok(Endpoint { host, port })
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn network_and_endpoint() {
        let c: Cidr = "10.10.0.10/24".parse().unwrap();
        assert_eq!(c.network().to_string(), "10.10.0.0/24");
        let e = parse_endpoint("https://10.10.0.20:6443").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("10.10.0.20", 6443));
        assert_eq!(parse_endpoint("https://k8s.example").unwrap().port, 6443);
        assert_eq!(
            parse_endpoint("https://[fd00::20]:443").unwrap().host,
            "fd00::20"
        );
        assert!(parse_endpoint("http://10.10.0.20:6443").is_err());
        assert!(parse_endpoint("https://10.10.0.20:6443/api").is_err());
        assert!(parse_endpoint("https://10.10.0.20:99999").is_err());
    }
}
