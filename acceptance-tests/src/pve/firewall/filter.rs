//! The host's input filter for a new TCP connection to the API, as `pve-firewall` compiles
//! `PVEFW-HOST-IN` (`enable_host_firewall`):
//!
//! 1. no filter unless the cluster firewall is enabled and the node's host firewall is not
//!    switched off (`enable: 0` in the node options);
//! 2. the node's rules, then the cluster's rules, in position order: disabled rules, rules of
//!    another direction or IP version and rules with errors (an IP set or alias that no
//!    longer exists) are skipped; a security group rule runs the group's `in` rules; the
//!    first match decides (`ACCEPT`, `DROP`, `REJECT`);
//! 3. the `management` IP set — its entries plus the node's `local_network` (the alias of
//!    that name, else the network of the node's address) — may reach 8006, 5900-5999, 3128,
//!    22 and 60000-60050;
//! 4. the input policy (`policy_in`, default `DROP`).
//!
//! Already established connections are never filtered (conntrack accepts them), so the
//! server asks only when it accepts a new connection. The emulator's loopback client address
//! stands for the client's address on the network; the packet arrives on the node's first
//! bridge (the one holding its address).

use std::net::Ipv4Addr;

use serde_json::{Map, Value};

use super::macros::MACROS;
use super::verify::{mask, parse_addr_spec, parse_net4, parse_ports, Addr};
use crate::pve::state::{Firewall, State};

/// What the host does with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Silently dropped: the client sees nothing until its own timeout.
    Drop,
    /// Refused with a TCP reset.
    Reject,
}

/// The packet: a new TCP connection.
pub(crate) struct Packet {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub dport: u16,
    /// Interface it arrives on.
    pub iface: String,
}

enum Match {
    Yes,
    No,
    /// The rule has errors (a reference that does not resolve): PVE skips it.
    Broken,
}

fn s<'a>(r: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    r.get(k).and_then(Value::as_str)
}

fn enabled(r: &Map<String, Value>) -> bool {
    r.get("enable").and_then(Value::as_i64).unwrap_or(0) != 0
}

fn in_net(ip: u32, net: u32, len: u8) -> bool {
    ip & mask(len) == net
}

/// Does `ip` belong to the IP set (an entry contains it and no `nomatch` entry does)?
fn in_ipset(cluster: &Firewall, name: &str, ip: u32, extra: &[(u32, u8)]) -> Option<bool> {
    let (_, entries) = cluster.ipsets.get(name)?;
    let mut hit = extra.iter().any(|(n, l)| in_net(ip, *n, *l));
    let mut excluded = false;
    for e in entries {
        let Some((n, l)) = s(e, "cidr").and_then(parse_net4) else {
            continue;
        };
        if in_net(ip, n, l) {
            if e.get("nomatch").and_then(Value::as_i64).unwrap_or(0) != 0 {
                excluded = true;
            } else {
                hit = true;
            }
        }
    }
    Some(hit && !excluded)
}

fn alias_net(cluster: &Firewall, name: &str) -> Option<(u32, u8)> {
    cluster
        .aliases
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, a)| s(a, "cidr"))
        .and_then(parse_net4)
}

fn addr_matches(cluster: &Firewall, spec: &str, ip: Ipv4Addr) -> Match {
    let ip = u32::from(ip);
    let Ok(addrs) = parse_addr_spec(spec) else {
        return Match::Broken;
    };
    for a in addrs {
        let hit = match a {
            Addr::Net(n, l) => in_net(ip, n, l),
            Addr::Range(a, b) => (a..=b).contains(&ip),
            Addr::V6 => false,
            Addr::IpSet(name) => match in_ipset(cluster, &name, ip, &[]) {
                Some(h) => h,
                None => return Match::Broken,
            },
            Addr::Alias(name) => match alias_net(cluster, &name) {
                Some((n, l)) => in_net(ip, n, l),
                None => return Match::Broken,
            },
        };
        if hit {
            return Match::Yes;
        }
    }
    Match::No
}

fn port_in(spec: &str, port: u16) -> bool {
    parse_ports(spec)
        .map(|r| r.iter().any(|(a, b)| (*a..=*b).contains(&port)))
        .unwrap_or(false)
}

/// Does an `in` rule match the packet?
fn rule_matches(cluster: &Firewall, r: &Map<String, Value>, p: &Packet) -> Match {
    if r.get("ipversion")
        .and_then(Value::as_i64)
        .is_some_and(|v| v != 4)
    {
        return Match::No;
    }
    if s(r, "iface").is_some_and(|i| i != p.iface) {
        return Match::No;
    }
    for (key, ip) in [("source", p.src), ("dest", p.dst)] {
        if let Some(spec) = s(r, key) {
            match addr_matches(cluster, spec, ip) {
                Match::Yes => {}
                other => return other,
            }
        }
    }
    let proto_ok = |proto: Option<&str>| proto.is_none_or(|x| x == "tcp" || x == "6");
    if let Some(m) = s(r, "macro") {
        let Some((_, entries)) = MACROS.iter().find(|(n, _)| n.eq_ignore_ascii_case(m)) else {
            return Match::Broken;
        };
        let hit = entries.iter().any(|(proto, dport, sport)| {
            let proto = if proto.is_empty() {
                s(r, "proto")
            } else {
                Some(*proto)
            };
            let dport = if dport.is_empty() {
                s(r, "dport")
            } else {
                Some(*dport)
            };
            proto_ok(proto) && dport.is_none_or(|d| port_in(d, p.dport)) && sport.is_empty()
        });
        return if hit { Match::Yes } else { Match::No };
    }
    if !proto_ok(s(r, "proto")) {
        return Match::No;
    }
    // A client's source port is ephemeral: a rule restricted to source ports does not match.
    if s(r, "sport").is_some() {
        return Match::No;
    }
    if s(r, "dport").is_some_and(|d| !port_in(d, p.dport)) {
        return Match::No;
    }
    Match::Yes
}

fn decide(action: &str) -> Option<Verdict> {
    match action {
        "ACCEPT" => Some(Verdict::Accept),
        "DROP" => Some(Verdict::Drop),
        "REJECT" => Some(Verdict::Reject),
        _ => None,
    }
}

/// The `local_network` of the node: the alias of that name, else the network of the
/// address on its first bridge, else PVE's fallback `127.0.0.0/8`.
pub(crate) fn local_network(st: &State, node: &str, first_bridge: Option<&str>) -> (u32, u8) {
    if let Some(n) = alias_net(&st.fw_cluster, "local_network") {
        return n;
    }
    first_bridge
        .and_then(|b| st.net.get(node)?.active.get(b))
        .and_then(|i| s(i, "cidr"))
        .and_then(parse_net4)
        .unwrap_or((0x7f00_0000, 8))
}

const MANAGEMENT_PORTS: &[(u16, u16)] = &[
    (8006, 8006),
    (5900, 5999),
    (3128, 3128),
    (22, 22),
    (60000, 60050),
];

/// The verdict of `node`'s host firewall on a new connection.
pub(crate) fn verdict(st: &State, node: &str, first_bridge: Option<&str>, p: &Packet) -> Verdict {
    let cluster = &st.fw_cluster;
    let on = |o: &Map<String, Value>, k: &str| o.get(k).and_then(Value::as_i64);
    if on(&cluster.options, "enable").unwrap_or(0) == 0 {
        return Verdict::Accept;
    }
    let host = st.fw_nodes.get(node);
    if host.and_then(|h| on(&h.options, "enable")) == Some(0) {
        return Verdict::Accept;
    }
    let host_rules = host.map(|h| h.rules.as_slice()).unwrap_or_default();
    for r in host_rules.iter().chain(cluster.rules.iter()) {
        if !enabled(r) {
            continue;
        }
        let action = s(r, "action").unwrap_or_default();
        match s(r, "type") {
            Some("in") => {
                if let Match::Yes = rule_matches(cluster, r, p) {
                    if let Some(v) = decide(action) {
                        return v;
                    }
                }
            }
            Some("group") => {
                if s(r, "iface").is_some_and(|i| i != p.iface) {
                    continue;
                }
                let Some((_, rules)) = cluster.groups.get(action) else {
                    continue; // "no such security group": an empty chain
                };
                for g in rules {
                    if !enabled(g) || s(g, "type") != Some("in") {
                        continue;
                    }
                    if let Match::Yes = rule_matches(cluster, g, p) {
                        if let Some(v) = decide(s(g, "action").unwrap_or_default()) {
                            return v;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let local = local_network(st, node, first_bridge);
    let src = u32::from(p.src);
    let management = match in_ipset(cluster, "management", src, &[local]) {
        Some(m) => m,
        None => in_net(src, local.0, local.1),
    };
    if management
        && MANAGEMENT_PORTS
            .iter()
            .any(|(a, b)| (*a..=*b).contains(&p.dport))
    {
        return Verdict::Accept;
    }
    match cluster.options.get("policy_in").and_then(Value::as_str) {
        Some("ACCEPT") => Verdict::Accept,
        Some("REJECT") => Verdict::Reject,
        _ => Verdict::Drop,
    }
}
