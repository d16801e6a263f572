//! IP network values shared by waddle's crates: the one [`Cidr`] type.
//!
//! It depends on no other waddle crate, so the framework and every domain library
//! (`waddle-proxmox`, `waddle-talos`, `waddle-haproxy`) can use it without a cycle. Each
//! of them keeps its own error messages by mapping [`CidrError`] at its call sites.
//!
//! The emulators in `acceptance-tests` deliberately do not use it: an emulator is an
//! independent implementation of the real system's rules.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address with its prefix length in CIDR notation (`10.10.0.5/24`, `fd00::1/64`).
///
/// [`Cidr::parse`] is strict: the address is an IPv4 or IPv6 address as `std` reads it;
/// the prefix length is a non-empty run of ASCII decimal digits — no sign, so `+8` and `-8`
/// are refused — of at most the family's width (32 / 128).
///
/// Host bits policy: parsing keeps them and never refuses them. `10.10.0.5/24` (an
/// interface address) and `10.10.0.0/24` (a network) both parse; [`Cidr::addr`] is the
/// address as written. A caller that needs a network address or a host address says so at
/// its call: [`Cidr::network`] / [`Cidr::subnet`] clear the host bits, [`Cidr::reserved`]
/// tells whether the address is its subnet's network or broadcast address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The address as written (host bits kept).
    pub addr: IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

/// Why a CIDR string did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// No `/`.
    #[error("expected <address>/<prefix length>")]
    NoPrefix,
    /// The part before `/` (carried) is not an IP address.
    #[error("{0:?} is not an IP address")]
    Address(String),
    /// The part after `/` (carried) is not a decimal number up to the family's width.
    #[error("prefix length {0:?} is not a number from 0 to {1}")]
    Prefix(String, u8),
}

/// What an address that is not a host address of its subnet is (see [`Cidr::reserved`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserved {
    /// All host bits clear.
    Network,
    /// All host bits set (IPv4 only).
    Broadcast,
}

impl Reserved {
    /// `"network"` or `"broadcast"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reserved::Network => "network",
            Reserved::Broadcast => "broadcast",
        }
    }
}

impl Cidr {
    /// Parses `<address>/<prefix length>` (see the type's documentation for the rules).
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let (ip, len) = s.split_once('/').ok_or(CidrError::NoPrefix)?;
        let addr: IpAddr = ip.parse().map_err(|_| CidrError::Address(ip.into()))?;
        let max = width(addr);
        let prefix = (!len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()))
            .then(|| len.parse::<u8>().ok())
            .flatten()
            .filter(|p| *p <= max)
            .ok_or_else(|| CidrError::Prefix(len.into(), max))?;
        Ok(Cidr { addr, prefix })
    }

    /// Number of host bits (32 or 128 minus the prefix length).
    fn host_bits(&self) -> u32 {
        u32::from(width(self.addr) - self.prefix)
    }

    /// The mask of the host bits, in the low bits of a `u128`.
    fn host_mask(&self) -> u128 {
        match self.host_bits() {
            128 => u128::MAX,
            n => (1u128 << n) - 1,
        }
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        let net = bits(self.addr) & !self.host_mask();
        match self.addr {
            // The mask keeps at most 32 bits of an IPv4 address.
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(net as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(net)),
        }
    }

    /// The subnet this address lies in: `network/prefix` (`203.0.113.0/24`).
    pub fn subnet(&self) -> Cidr {
        Cidr {
            addr: self.network(),
            prefix: self.prefix,
        }
    }

    /// Whether `ip` lies in this subnet (same family, same network bits).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4()
            && Cidr {
                addr: ip,
                prefix: self.prefix,
            }
            .network()
                == self.network()
    }

    /// `Some` when the address is not a host address of its subnet: its network address,
    /// or (IPv4) its broadcast address. Only subnets with at least two host bits have such
    /// addresses (a /31 or /32, a /127 or /128 has none).
    pub fn reserved(&self) -> Option<Reserved> {
        if !(2..128).contains(&self.host_bits()) {
            return None;
        }
        let mask = self.host_mask();
        let host = bits(self.addr) & mask;
        if host == 0 {
            Some(Reserved::Network)
        } else if self.addr.is_ipv4() && host == mask {
            Some(Reserved::Broadcast)
        } else {
            None
        }
    }

    /// Whether the address is the network or (IPv4) broadcast address of its subnet, which
    /// can't be assigned to an interface.
    pub fn is_network_or_broadcast(&self) -> bool {
        self.reserved().is_some()
    }
}

/// Width of the address family in bits.
fn width(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl std::str::FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cidr::parse(s)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_prefix_is_unsigned_decimal_within_the_family() {
        assert_eq!(cidr("10.0.0.1/24").prefix, 24);
        assert_eq!(cidr("10.0.0.1/0").prefix, 0);
        assert_eq!(cidr("10.0.0.1/32").prefix, 32);
        assert_eq!(cidr("fd00::1/128").prefix, 128);
        // Leading zeros are digits like any other.
        assert_eq!(cidr("10.0.0.1/024").prefix, 24);
        for (bad, len, max) in [
            ("10.0.0.1/+8", "+8", 32),
            ("10.0.0.1/-8", "-8", 32),
            ("10.0.0.1/-0", "-0", 32),
            ("10.0.0.1/", "", 32),
            ("10.0.0.1/33", "33", 32),
            ("10.0.0.1/256", "256", 32),
            ("10.0.0.1/ 8", " 8", 32),
            ("10.0.0.1/8/8", "8/8", 32),
            ("fd00::1/129", "129", 128),
            ("fd00::1/+64", "+64", 128),
        ] {
            assert_eq!(
                Cidr::parse(bad),
                Err(CidrError::Prefix(len.into(), max)),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_address_comes_first() {
        assert_eq!(Cidr::parse("10.0.0.1"), Err(CidrError::NoPrefix));
        assert_eq!(Cidr::parse(""), Err(CidrError::NoPrefix));
        assert_eq!(
            Cidr::parse("10.0.0.300/+8"),
            Err(CidrError::Address("10.0.0.300".into()))
        );
        assert_eq!(Cidr::parse("/24"), Err(CidrError::Address("".into())));
        assert_eq!(
            Cidr::parse(" 10.0.0.1/24"),
            Err(CidrError::Address(" 10.0.0.1".into()))
        );
        assert_eq!(
            Cidr::parse("10.0.0.1/x").unwrap_err().to_string(),
            "prefix length \"x\" is not a number from 0 to 32"
        );
        assert_eq!(
            Cidr::parse("x/8").unwrap_err().to_string(),
            "\"x\" is not an IP address"
        );
        assert_eq!(
            Cidr::parse("x").unwrap_err().to_string(),
            "expected <address>/<prefix length>"
        );
    }

    #[test]
    fn host_bits_are_kept_and_can_be_asked_about() {
        let c = cidr("10.10.0.5/24");
        assert_eq!(c.to_string(), "10.10.0.5/24");
        assert_eq!(c.network().to_string(), "10.10.0.0");
        assert_eq!(c.subnet().to_string(), "10.10.0.0/24");
        assert_eq!(c.reserved(), None);
        assert_eq!(cidr("10.10.0.0/24").reserved(), Some(Reserved::Network));
        assert_eq!(cidr("10.10.0.255/24").reserved(), Some(Reserved::Broadcast));
        assert_eq!(Reserved::Broadcast.as_str(), "broadcast");
        // Too small a subnet to have a network or broadcast address.
        for s in ["10.10.0.0/31", "10.10.0.1/31", "10.10.0.0/32", "fd00::/127"] {
            assert!(!cidr(s).is_network_or_broadcast(), "{s}");
        }
        // IPv6 has no broadcast address.
        assert_eq!(cidr("fd00::ffff/112").reserved(), None);
        assert_eq!(cidr("fd00::/64").reserved(), Some(Reserved::Network));
        assert_eq!(cidr("fd00::1:2:3:4/64").subnet().to_string(), "fd00::/64");
    }

    #[test]
    fn containment_needs_the_same_family() {
        let c = cidr("10.10.0.5/24");
        assert!(c.contains("10.10.0.200".parse().unwrap()));
        assert!(!c.contains("10.10.1.1".parse().unwrap()));
        assert!(!c.contains("::ffff:10.10.0.1".parse().unwrap()));
        assert!(cidr("0.0.0.0/0").contains("1.2.3.4".parse().unwrap()));
        assert!(!cidr("0.0.0.0/0").contains("::1".parse().unwrap()));
        assert!(cidr("::/0").contains("fd00::1".parse().unwrap()));
        assert!(cidr("fd00::10/64").contains("fd00::1".parse().unwrap()));
        assert!(!cidr("fd00::10/64").contains("fd01::1".parse().unwrap()));
    }
}
