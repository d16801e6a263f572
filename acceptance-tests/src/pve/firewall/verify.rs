//! Rule checks as `pve-firewall`'s `verify_rule` makes them (first error wins, as PVE raises
//! it), and the address and port specs both the checks and the packet filter read.

use std::net::Ipv4Addr;

use serde_json::{json, Map, Value};

use super::macros::MACROS;
use crate::pve::server::ApiError;

/// Where a rule lives (PVE's `rule_env`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Env {
    Cluster,
    Host,
    Vm,
    Group,
}

impl Env {
    fn directions(self) -> &'static [&'static str] {
        match self {
            Env::Cluster | Env::Host => &["in", "out", "forward", "group"],
            Env::Vm => &["in", "out", "group"],
            Env::Group => &["in", "out", "forward"],
        }
    }
    fn name(self) -> &'static str {
        match self {
            Env::Cluster => "cluster",
            Env::Host => "host",
            Env::Vm => "vm",
            Env::Group => "group",
        }
    }
}

/// Names rules may refer to (cluster IP sets and aliases, lower-cased aliases).
#[derive(Debug, Clone, Default)]
pub(crate) struct Refs {
    pub ipsets: Vec<String>,
    pub aliases: Vec<String>,
}

/// One element of an address spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Addr {
    /// IPv4 network (address, prefix length).
    Net(u32, u8),
    /// IPv4 range, inclusive.
    Range(u32, u32),
    /// Any IPv6 element (never matches IPv4 traffic).
    V6,
    /// `+name` (with an optional `dc/`/`guest/`/`sdn/` scope).
    IpSet(String),
    /// An alias name (with an optional `dc/`/`guest/` scope).
    Alias(String),
}

pub(crate) fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

/// An IPv4 address or network `a.b.c.d[/len]`.
pub(crate) fn parse_net4(s: &str) -> Option<(u32, u8)> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, l)) => (ip, l.parse::<u8>().ok().filter(|l| *l <= 32)?),
        None => (s, 32),
    };
    let ip: Ipv4Addr = ip.parse().ok()?;
    Some((u32::from(ip) & mask(len), len))
}

fn strip_scope(s: &str) -> &str {
    for p in ["dc/", "guest/", "sdn/"] {
        if let Some(r) = s.strip_prefix(p) {
            return r;
        }
    }
    s
}

/// Parse `pve-fw-addr-spec`: `+ipset`, an alias, or a comma list of addresses, networks and
/// ranges (one IP version).
pub(crate) fn parse_addr_spec(s: &str) -> Result<Vec<Addr>, String> {
    if let Some(set) = s.strip_prefix('+') {
        return Ok(vec![Addr::IpSet(strip_scope(set).to_string())]);
    }
    let plain = strip_scope(s);
    if plain
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && plain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Ok(vec![Addr::Alias(plain.to_ascii_lowercase())]);
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if part.contains(':') {
            out.push(Addr::V6);
        } else if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a
                .parse()
                .map_err(|_| format!("invalid IP address '{part}'"))?;
            let b: Ipv4Addr = b
                .parse()
                .map_err(|_| format!("invalid IP address '{part}'"))?;
            if u32::from(a) > u32::from(b) {
                return Err(format!("IP range '{part}' ends before it starts"));
            }
            out.push(Addr::Range(u32::from(a), u32::from(b)));
        } else {
            let (n, l) = parse_net4(part).ok_or_else(|| format!("invalid IP address '{part}'"))?;
            out.push(Addr::Net(n, l));
        }
    }
    if out.contains(&Addr::V6) && out.iter().any(|a| a != &Addr::V6) {
        return Err("detected mixed ipv4/ipv6 addresses in rule".into());
    }
    Ok(out)
}

/// A service name from `/etc/services` (the ones a Debian host knows that operators use).
fn service_port(name: &str) -> Option<u16> {
    Some(match name {
        "ssh" => 22,
        "telnet" => 23,
        "smtp" => 25,
        "domain" => 53,
        "http" => 80,
        "pop3" => 110,
        "ntp" => 123,
        "imap2" | "imap" => 143,
        "snmp" => 161,
        "https" => 443,
        "submission" => 587,
        "imaps" => 993,
        "pop3s" => 995,
        _ => return None,
    })
}

/// `pve-fw-dport-spec`: comma list of ports, `a:b` ranges and service names.
pub(crate) fn parse_ports(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let one = |p: &str| -> Result<u16, String> {
        p.parse::<u16>()
            .ok()
            .or_else(|| service_port(p))
            .ok_or_else(|| format!("invalid port '{p}'"))
    };
    s.split(',')
        .map(|part| match part.split_once(':') {
            Some((a, b)) => {
                let (a, b) = (one(a)?, one(b)?);
                if a > b {
                    Err(format!("invalid port range '{part}'"))
                } else {
                    Ok((a, b))
                }
            }
            None => one(part).map(|p| (p, p)),
        })
        .collect()
}

const PROTOCOLS: &[&str] = &[
    "tcp",
    "udp",
    "icmp",
    "icmpv6",
    "ipv6-icmp",
    "sctp",
    "dccp",
    "udplite",
    "gre",
    "esp",
    "ah",
    "igmp",
    "ospf",
    "vrrp",
    "ipip",
    "ipv6",
];
const PROTOCOLS_WITH_PORTS: &[&str] = &["tcp", "udp", "udplite", "sctp", "dccp"];

fn is_icmp(proto: &str) -> bool {
    matches!(proto, "icmp" | "icmpv6" | "ipv6-icmp")
}

/// The macro's preferred spelling (PVE matches names case-insensitively).
pub(crate) fn macro_name(name: &str) -> Option<&'static str> {
    MACROS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(n, _)| *n)
}

/// Check a rule as PVE does before storing it; normalizes `macro` and sets `ipversion`.
pub(crate) fn verify_rule(
    r: &mut Map<String, Value>,
    env: Env,
    refs: &Refs,
) -> Result<(), ApiError> {
    let get =
        |r: &Map<String, Value>, k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
    let ty = get(r, "type").ok_or_else(|| ApiError::param("type", "missing property"))?;
    let action = get(r, "action").ok_or_else(|| ApiError::param("action", "missing property"))?;
    if !env.directions().contains(&ty.as_str()) {
        return Err(ApiError::param(
            "type",
            format!("invalid rule type '{ty}' for rule_env '{}'", env.name()),
        ));
    }
    if ty == "group" {
        let ok = action
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && action
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(ApiError::param(
                "action",
                "invalid characters in security group name",
            ));
        }
    } else {
        if ty == "forward" && action == "REJECT" {
            return Err(ApiError::param(
                "action",
                "cannot define REJECT rules on forward chain",
            ));
        }
        if !matches!(action.as_str(), "ACCEPT" | "DROP" | "REJECT") {
            return Err(ApiError::param(
                "action",
                format!("unknown action '{action}'"),
            ));
        }
    }
    if r.contains_key("iface") && env == Env::Group {
        return Err(ApiError::param(
            "type",
            "parameter -i not allowed for this rule type",
        ));
    }
    if let Some(m) = get(r, "macro") {
        let name = macro_name(&m)
            .ok_or_else(|| ApiError::param("macro", format!("unknown macro '{m}'")))?;
        r.insert("macro".into(), json!(name));
    }
    let mut ipversion: Option<u8> = None;
    let proto = get(r, "proto");
    if let Some(p) = &proto {
        if !PROTOCOLS.contains(&p.as_str()) && p.parse::<u8>().is_err() {
            return Err(ApiError::param("proto", format!("unknown protocol '{p}'")));
        }
        if p == "icmp" {
            ipversion = Some(4);
        } else if p == "icmpv6" || p == "ipv6-icmp" {
            ipversion = Some(6);
        }
    }
    for key in ["dport", "sport"] {
        if let Some(ports) = get(r, key) {
            let icmp = key == "dport" && proto.as_deref().is_some_and(is_icmp);
            if !icmp {
                parse_ports(&ports).map_err(|e| ApiError::param(key, e))?;
            }
            let Some(p) = &proto else {
                return Err(ApiError::param(
                    "proto",
                    format!("missing property - '{key}' requires this property"),
                ));
            };
            if !PROTOCOLS_WITH_PORTS.contains(&p.as_str()) && !icmp {
                return Err(ApiError::param(
                    key,
                    format!("protocol '{p}' does not support ports"),
                ));
            }
        }
    }
    for key in ["source", "dest"] {
        let Some(spec) = get(r, key) else { continue };
        let addrs = parse_addr_spec(&spec).map_err(|e| ApiError::param(key, e))?;
        for a in &addrs {
            let v = match a {
                Addr::IpSet(n) => {
                    if !refs.ipsets.iter().any(|s| s == n) {
                        return Err(ApiError::param(key, format!("no such ipset '{n}'")));
                    }
                    None
                }
                Addr::Alias(n) => {
                    if !refs.aliases.iter().any(|s| s == n) {
                        return Err(ApiError::param(key, format!("no such alias '{spec}'")));
                    }
                    None
                }
                Addr::V6 => Some(6),
                _ => Some(4),
            };
            if let Some(v) = v {
                if ipversion.is_some_and(|x| x != v) {
                    return Err(ApiError::die("detected mixed ipv4/ipv6 addresses in rule"));
                }
                ipversion = Some(v);
            }
        }
    }
    match ipversion {
        Some(v) => {
            r.insert("ipversion".into(), json!(v));
        }
        None => {
            r.remove("ipversion");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect()
    }

    #[test]
    fn rules_are_checked_as_pve_checks_them() {
        let refs = Refs {
            ipsets: vec!["ops".into()],
            aliases: vec![],
        };
        let mut ok = rule(&[
            ("type", "in"),
            ("action", "ACCEPT"),
            ("macro", "ssh"),
            ("source", "10.0.0.0/8"),
        ]);
        verify_rule(&mut ok, Env::Host, &refs).unwrap();
        assert_eq!(ok["macro"], "SSH");
        assert_eq!(ok["ipversion"], 4);
        for (bad, field) in [
            (
                rule(&[("type", "in"), ("action", "ACCEPT"), ("dport", "22")]),
                "proto",
            ),
            (
                rule(&[("type", "in"), ("action", "ACCEPT"), ("source", "+nope")]),
                "source",
            ),
            (rule(&[("type", "in"), ("action", "KEEP")]), "action"),
            (rule(&[("type", "group"), ("action", "ops")]), "type"),
            (
                rule(&[("type", "in"), ("action", "ACCEPT"), ("macro", "Nope")]),
                "macro",
            ),
            (
                rule(&[
                    ("type", "in"),
                    ("action", "ACCEPT"),
                    ("proto", "icmp"),
                    ("dport", "22"),
                ]),
                "",
            ),
        ] {
            let env = if bad["type"] == "group" {
                Env::Group
            } else {
                Env::Host
            };
            let mut b = bad.clone();
            let e = verify_rule(&mut b, env, &refs);
            if field.is_empty() {
                continue; // icmp types go in dport: accepted
            }
            let e = e.expect_err(&format!("{bad:?} accepted"));
            assert!(
                e.errors.as_ref().is_some_and(|m| m.contains_key(field)),
                "{bad:?}: {e:?}"
            );
        }
        assert_eq!(
            parse_ports("22,8000:8100,https").unwrap(),
            vec![(22, 22), (8000, 8100), (443, 443)]
        );
        assert!(parse_ports("99999").is_err());
        assert_eq!(
            parse_addr_spec("10.0.0.1,192.168.0.0/16").unwrap(),
            vec![Addr::Net(0x0a00_0001, 32), Addr::Net(0xc0a8_0000, 16)]
        );
    }
}
