//! Plan-time checks of `waddle_network` (no API call; unknown values are skipped) and the
//! IPv4 network arithmetic they need.

use std::net::{IpAddr, Ipv4Addr};

use waddle_framework::prelude::*;
use waddle_framework::validators::CidrError;

use super::SDN_ID_MAX;
use crate::resources::timeouts;

/// Why a network input is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("{0:?} must be 2 to {SDN_ID_MAX} characters long (Proxmox SDN ids are short)")]
    IdLength(String),
    #[error(
        "{0:?} must start with a letter and contain only letters and digits (no '-', '_' or '.')"
    )]
    IdChars(String),
    #[error("must be at most 256 characters")]
    AliasLength,
    #[error("{0:?} is not allowed (letters, digits, spaces and ()*+,-./:;<=>?@[\\]^_ only)")]
    AliasChar(char),
    #[error("{0:?} must be ADDRESS/PREFIX, e.g. 10.10.0.0/24")]
    CidrShape(String),
    #[error("{cidr:?}: {ip:?} is not an IPv4 address")]
    CidrAddress { cidr: String, ip: String },
    #[error("{0:?}: the prefix length must be 1 to 30 (room for a gateway and hosts)")]
    Prefix(String),
    #[error("{cidr:?} has host bits set: the network is {net}/{len}")]
    HostBits {
        cidr: String,
        net: Ipv4Addr,
        len: u8,
    },
    #[error("{0:?} is not an IPv4 address")]
    NotIpv4(String),
    #[error("{ip} is not inside {cidr}")]
    Outside { ip: Ipv4Addr, cidr: String },
    #[error("{ip} is the network address of {cidr}")]
    NetworkAddress { ip: Ipv4Addr, cidr: String },
    #[error("{ip} is the broadcast address of {cidr}")]
    Broadcast { ip: Ipv4Addr, cidr: String },
    #[error("{0:?}: expected <zone>/<vnet>, e.g. waddle/wdlnet")]
    ImportShape(String),
    #[error("zone: {0}")]
    ImportZone(Box<NetworkError>),
    #[error("vnet: {0}")]
    ImportVnet(Box<NetworkError>),
}

/// An SDN zone/vnet id as PVE parses it: `^[a-z][a-z0-9]*[a-z0-9]$` (case-insensitive), at most
/// 8 characters.
pub fn validate_sdn_id(id: &str) -> Result<(), NetworkError> {
    let b = id.as_bytes();
    if b.len() < 2 || b.len() > SDN_ID_MAX {
        return Err(NetworkError::IdLength(id.into()));
    }
    if !b[0].is_ascii_alphabetic() || !b.iter().all(u8::is_ascii_alphanumeric) {
        return Err(NetworkError::IdChars(id.into()));
    }
    Ok(())
}

/// A vnet alias as allowed by the API schema (`[\(\)-_.\w\d\s]{0,256}`).
pub fn validate_alias(alias: &str) -> Result<(), NetworkError> {
    if alias.chars().count() > 256 {
        return Err(NetworkError::AliasLength);
    }
    if let Some(c) = alias
        .chars()
        .find(|c| !(c.is_alphanumeric() || c.is_whitespace() || ('('..='_').contains(c)))
    {
        return Err(NetworkError::AliasChar(c));
    }
    Ok(())
}

/// An IPv4 network in CIDR notation: (network address, prefix length).
pub fn parse_network(cidr: &str) -> Result<(Ipv4Addr, u8), NetworkError> {
    let address = |ip: String| NetworkError::CidrAddress {
        cidr: cidr.into(),
        ip,
    };
    let (ip, len) = match Cidr::parse(cidr) {
        Ok(Cidr {
            addr: IpAddr::V4(ip),
            prefix,
        }) => (ip, prefix),
        Ok(Cidr { addr, .. }) => return Err(address(addr.to_string())),
        Err(CidrError::NoPrefix) => return Err(NetworkError::CidrShape(cidr.into())),
        Err(CidrError::Address(ip)) => return Err(address(ip)),
        Err(CidrError::Prefix(..)) => return Err(NetworkError::Prefix(cidr.into())),
    };
    if !(1..=30).contains(&len) {
        return Err(NetworkError::Prefix(cidr.into()));
    }
    let mask = mask(len);
    if u32::from(ip) & !mask != 0 {
        let net = Ipv4Addr::from(u32::from(ip) & mask);
        return Err(NetworkError::HostBits {
            cidr: cidr.into(),
            net,
            len,
        });
    }
    Ok((ip, len))
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

/// The first host of a network (the default gateway).
pub fn first_host(cidr: &str) -> Option<Ipv4Addr> {
    let (net, _) = parse_network(cidr).ok()?;
    Some(Ipv4Addr::from(u32::from(net) + 1))
}

/// A usable host address of the network (not network, not broadcast).
pub fn check_host(net: (Ipv4Addr, u8), addr: &str) -> Result<Ipv4Addr, NetworkError> {
    let ip: Ipv4Addr = addr
        .parse()
        .map_err(|_| NetworkError::NotIpv4(addr.into()))?;
    let m = mask(net.1);
    let n = u32::from(net.0);
    let cidr = format!("{}/{}", net.0, net.1);
    if u32::from(ip) & m != n {
        return Err(NetworkError::Outside { ip, cidr });
    }
    if u32::from(ip) == n {
        return Err(NetworkError::NetworkAddress { ip, cidr });
    }
    if u32::from(ip) == n | !m {
        return Err(NetworkError::Broadcast { ip, cidr });
    }
    Ok(ip)
}

/// A known, non-null attribute.
fn set<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get_attr(name).filter(|x| x.is_set())
}

/// All plan-time checks (no API call). Unknown values are skipped.
pub fn validate(config: &Value, diags: &mut Diagnostics) {
    timeouts::validate(config, diags);
    let p = AttributePath::attr;
    for name in ["zone", "vnet"] {
        if let Some(s) = set(config, name).and_then(Value::as_str) {
            if let Err(e) = validate_sdn_id(s) {
                diags.error_at(p(name), "Invalid SDN id", e.to_string());
            }
        }
    }
    if let Some(a) = set(config, "alias").and_then(Value::as_str) {
        if let Err(e) = validate_alias(a) {
            diags.error_at(p("alias"), "Invalid vnet alias", e.to_string());
        }
    }
    let net = match set(config, "cidr").and_then(Value::as_str) {
        Some(c) => match parse_network(c) {
            Ok(n) => Some(n),
            Err(e) => {
                diags.error_at(p("cidr"), "Invalid CIDR", e.to_string());
                None
            }
        },
        None => None,
    };
    let gateway = match (net, set(config, "gateway").and_then(Value::as_str)) {
        (Some(n), Some(g)) => match check_host(n, g) {
            Ok(ip) => Some(ip),
            Err(e) => {
                diags.error_at(p("gateway"), "Invalid gateway", e.to_string());
                None
            }
        },
        (None, Some(g)) => {
            if g.parse::<Ipv4Addr>().is_err() {
                diags.error_at(
                    p("gateway"),
                    "Invalid gateway",
                    format!("{g:?} is not an IPv4 address"),
                );
            }
            None
        }
        (Some(n), None) if config.get_attr("gateway").is_some_and(Value::is_null) => {
            Some(Ipv4Addr::from(u32::from(n.0) + 1))
        }
        _ => None,
    };
    if let Some(r) = set(config, "dhcp_range") {
        let rp = p("dhcp_range");
        let mut ends = Vec::new();
        for name in ["start", "end"] {
            let Some(s) = set(r, name).and_then(Value::as_str) else {
                ends.push(None);
                continue;
            };
            let checked = match net {
                Some(n) => check_host(n, s),
                None => s
                    .parse::<Ipv4Addr>()
                    .map_err(|_| NetworkError::NotIpv4(s.into())),
            };
            match checked {
                Ok(ip) => ends.push(Some(ip)),
                Err(e) => {
                    diags.error_at(
                        rp.clone().then_attr(name),
                        "Invalid DHCP range",
                        e.to_string(),
                    );
                    ends.push(None);
                }
            }
        }
        if let (Some(Some(a)), Some(Some(b))) = (ends.first(), ends.get(1)) {
            if a > b {
                diags.error_at(
                    rp.clone().then_attr("end"),
                    "Invalid DHCP range",
                    format!("the range ends ({b}) before it starts ({a})"),
                );
            } else if let Some(g) = gateway {
                if (*a..=*b).contains(&g) {
                    diags.error_at(
                        rp.clone(),
                        "Invalid DHCP range",
                        format!("{a}-{b} contains the gateway {g}"),
                    );
                }
            }
        }
    }
    if let Some(list) = set(config, "nodes") {
        let elems = list.as_elements().unwrap_or_default();
        if elems.is_empty() {
            diags.error_at(
                p("nodes"),
                "Invalid nodes",
                "must name at least one node; leave `nodes` unset for every node of the cluster",
            );
        }
        let mut seen = Vec::new();
        for (i, n) in elems.iter().enumerate() {
            if let Some(s) = n.as_str() {
                if let Err(e) = crate::provider::validate_node(s) {
                    let e = e.to_string();
                    diags.error_at(p("nodes").then_index(i as i64), "Invalid node name", e);
                } else if seen.contains(&s) {
                    diags.error_at(
                        p("nodes").then_index(i as i64),
                        "Invalid nodes",
                        format!("{s:?} is listed twice"),
                    );
                }
                seen.push(s);
            }
        }
    }
}

/// Parse an import ID `<zone>/<vnet>`.
pub fn parse_import_id(id: &str) -> Result<(String, String), NetworkError> {
    let (z, v) = id
        .trim()
        .split_once('/')
        .ok_or_else(|| NetworkError::ImportShape(id.into()))?;
    validate_sdn_id(z).map_err(|e| NetworkError::ImportZone(Box::new(e)))?;
    validate_sdn_id(v).map_err(|e| NetworkError::ImportVnet(Box::new(e)))?;
    Ok((z.to_string(), v.to_string()))
}
