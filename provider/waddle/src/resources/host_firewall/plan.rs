//! Plan: defaults, expiry (`active`), and the lock-out guard.
//!
//! The guard works out what the host firewall would do with a *new* connection from this
//! provider to the API once the plan is applied, the way `pve-firewall` compiles the host's
//! input chain: host rules in order (the node's, then the cluster's; a security group rule
//! runs the group's `in` rules), then the `management` IP set plus the node's local network
//! for ports 8006/22/…, then `policy_in`. Each rule matches `Yes`, `No` or `Maybe` (an
//! interface, an alias or an IP set waddle cannot resolve, a service name it does not know):
//! an accepting rule is relied on only on `Yes`, a dropping one stops the evaluation on
//! `Maybe` too. So the guard errs towards refusing.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use waddle_proxmox::{Client, FirewallRule, FirewallScope};

use super::model::{parse_mark, to_api, FirewallState};
use super::validate::parse_net;

/// What the firewall would do with the provider's next connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted(String),
    Dropped(String),
    /// Could be dropped: waddle cannot tell.
    Unsure(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hit {
    Yes,
    No,
    Maybe,
}

/// What the guard knows of Proxmox after the plan.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub enabled: bool,
    pub policy_in: String,
    pub node_enabled: bool,
    pub node_rules: Vec<FirewallRule>,
    pub cluster_rules: Vec<FirewallRule>,
    /// IP set name -> entries (`(network, prefix, nomatch)`).
    pub ipsets: BTreeMap<String, Vec<(Ipv4Addr, u8, bool)>>,
    /// Lower-case alias name -> network.
    pub aliases: BTreeMap<String, (Ipv4Addr, u8)>,
    pub groups: BTreeMap<String, Vec<FirewallRule>>,
    /// The node's local network (Proxmox adds it to the management set), when known.
    pub local_network: Option<(Ipv4Addr, u8)>,
}

/// The connection: source (if known), the endpoint's address (if IPv4) and port.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub src: Option<Ipv4Addr>,
    pub dst: Option<Ipv4Addr>,
    pub port: u16,
}

fn in_net(ip: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    let m = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    u32::from(ip) & m == u32::from(net) & m
}

fn in_ipset(entries: &[(Ipv4Addr, u8, bool)], ip: Ipv4Addr, extra: Option<(Ipv4Addr, u8)>) -> bool {
    let hit = extra.is_some_and(|n| in_net(ip, n))
        || entries.iter().any(|(n, l, no)| !no && in_net(ip, (*n, *l)));
    hit && !entries.iter().any(|(n, l, no)| *no && in_net(ip, (*n, *l)))
}

fn addr_hit(w: &World, spec: &str, ip: Option<Ipv4Addr>) -> Hit {
    let Some(ip) = ip else { return Hit::Maybe };
    if let Some(set) = spec.strip_prefix('+') {
        let set = set.strip_prefix("dc/").unwrap_or(set);
        return match w.ipsets.get(set) {
            Some(e) if in_ipset(e, ip, None) => Hit::Yes,
            Some(_) => Hit::No,
            None => Hit::Maybe,
        };
    }
    if spec.starts_with(|c: char| c.is_ascii_alphabetic()) {
        let name = spec
            .strip_prefix("dc/")
            .unwrap_or(spec)
            .to_ascii_lowercase();
        return match w.aliases.get(&name) {
            Some(n) if in_net(ip, *n) => Hit::Yes,
            Some(_) => Hit::No,
            None => Hit::Maybe,
        };
    }
    let mut out = Hit::No;
    for part in spec.split(',') {
        let h = if part.contains(':') {
            Hit::No
        } else if let Some((a, b)) = part.split_once('-') {
            match (a.parse::<Ipv4Addr>(), b.parse::<Ipv4Addr>()) {
                (Ok(a), Ok(b)) if (a..=b).contains(&ip) => Hit::Yes,
                (Ok(_), Ok(_)) => Hit::No,
                _ => Hit::Maybe,
            }
        } else {
            match parse_net(part) {
                Ok(n) if in_net(ip, n) => Hit::Yes,
                Ok(_) => Hit::No,
                Err(_) => Hit::Maybe,
            }
        };
        if h == Hit::Yes {
            return Hit::Yes;
        }
        if h == Hit::Maybe {
            out = Hit::Maybe;
        }
    }
    out
}

fn port_hit(spec: &str, port: u16) -> Hit {
    let one = |p: &str| -> Option<u16> {
        p.parse().ok().or(match p {
            "ssh" => Some(22),
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        })
    };
    let mut out = Hit::No;
    for part in spec.split(',') {
        let (a, b) = part.split_once(':').unwrap_or((part, part));
        match (one(a), one(b)) {
            (Some(a), Some(b)) if (a..=b).contains(&port) => return Hit::Yes,
            (Some(_), Some(_)) => {}
            _ => out = Hit::Maybe,
        }
    }
    out
}

/// TCP ports of the Proxmox macros that can cover an API port; other known macros carry no
/// TCP port in the 8000s, and an unknown one is `Maybe`.
fn macro_hit(name: &str, port: u16) -> Hit {
    const MACROS: &[(&str, &[(u16, u16)])] = &[
        ("SSH", &[(22, 22)]),
        ("HTTP", &[(80, 80)]),
        ("HTTPS", &[(443, 443)]),
        ("Web", &[(80, 80), (443, 443)]),
        ("PMG", &[(8006, 8006)]),
        ("Ceph", &[(6789, 6789), (3300, 3300), (6800, 7300)]),
        ("VNC", &[(5900, 5999)]),
        ("Ping", &[]),
        ("DNS", &[(53, 53)]),
        ("SMTP", &[(25, 25)]),
    ];
    match MACROS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
        Some((_, ports)) if ports.iter().any(|(a, b)| (*a..=*b).contains(&port)) => Hit::Yes,
        Some(_) => Hit::No,
        None => Hit::Maybe,
    }
}

fn and(a: Hit, b: Hit) -> Hit {
    match (a, b) {
        (Hit::No, _) | (_, Hit::No) => Hit::No,
        (Hit::Yes, Hit::Yes) => Hit::Yes,
        _ => Hit::Maybe,
    }
}

fn rule_hit(w: &World, r: &FirewallRule, c: &Conn) -> Hit {
    let mut h = Hit::Yes;
    if r.iface.is_some() {
        h = and(h, Hit::Maybe);
    }
    if let Some(s) = &r.source {
        h = and(h, addr_hit(w, s, c.src));
    }
    if let Some(d) = &r.dest {
        h = and(h, addr_hit(w, d, c.dst));
    }
    if let Some(m) = &r.macro_name {
        return and(h, macro_hit(m, c.port));
    }
    match r.proto.as_deref() {
        None | Some("tcp") | Some("6") => {}
        Some(_) => return Hit::No,
    }
    if r.sport.is_some() {
        h = and(h, Hit::Maybe);
    }
    if let Some(d) = &r.dport {
        h = and(h, port_hit(d, c.port));
    }
    h
}

fn describe(r: &FirewallRule, scope: &str) -> String {
    let name = r
        .comment
        .as_deref()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    format!(
        "{scope} rule {} {}{name}",
        r.action,
        [
            ("source", &r.source),
            ("dest", &r.dest),
            ("proto", &r.proto),
            ("dport", &r.dport),
            ("macro", &r.macro_name),
            ("iface", &r.iface)
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(" ")
    )
}

/// Evaluate the host input chain for the connection.
pub fn evaluate(w: &World, c: &Conn) -> Outcome {
    if !w.enabled {
        return Outcome::Accepted("the cluster firewall is off".into());
    }
    if !w.node_enabled {
        return Outcome::Accepted("the node's host firewall is off".into());
    }
    let chain = w
        .node_rules
        .iter()
        .map(|r| (r, "node"))
        .chain(w.cluster_rules.iter().map(|r| (r, "cluster")));
    for (r, scope) in chain {
        if !r.enable {
            continue;
        }
        let rules: Vec<(&FirewallRule, String)> = match r.direction.as_str() {
            "in" => vec![(r, scope.to_string())],
            // A group rule on an interface: its ACCEPTs cannot be relied on (below).
            "group" => match w.groups.get(&r.action) {
                Some(g) => g
                    .iter()
                    .filter(|x| x.enable && x.direction == "in")
                    .map(|x| (x, format!("security group {:?}", r.action)))
                    .collect(),
                None => Vec::new(),
            },
            _ => Vec::new(),
        };
        for (x, sc) in rules {
            let mut h = rule_hit(w, x, c);
            if r.direction == "group" && r.iface.is_some() {
                h = and(h, Hit::Maybe);
            }
            match (h, x.action.as_str()) {
                (Hit::Yes, "ACCEPT") => return Outcome::Accepted(describe(x, &sc)),
                (Hit::Yes, _) => return Outcome::Dropped(describe(x, &sc)),
                (Hit::Maybe, "DROP" | "REJECT") => {
                    return Outcome::Unsure(format!("{} may match it", describe(x, &sc)))
                }
                _ => {}
            }
        }
    }
    if let Some(src) = c.src {
        let mgmt = w
            .ipsets
            .get("management")
            .map(Vec::as_slice)
            .unwrap_or_default();
        let port = c.port;
        let management_port = [8006u16, 22, 3128].contains(&port)
            || (5900..=5999).contains(&port)
            || (60000..=60050).contains(&port);
        if management_port && in_ipset(mgmt, src, w.local_network) {
            return Outcome::Accepted(
                "the management IP set (with the node's local network)".into(),
            );
        }
    }
    match w.policy_in.as_str() {
        "ACCEPT" => Outcome::Accepted("policy_in ACCEPT".into()),
        p => Outcome::Dropped(format!("no rule accepts it, and policy_in is {p}")),
    }
}

/// The node's rule list after the plan: managed rules updated in place or removed, new ones
/// inserted at the top (as the apply does), other rules where they are.
pub fn planned_node_rules(current: &[FirewallRule], planned: &FirewallState) -> Vec<FirewallRule> {
    let active = planned.active_rules();
    let mut seen = Vec::new();
    let mut out: Vec<FirewallRule> = Vec::new();
    for r in current {
        match parse_mark(r.comment.as_deref()) {
            Some(m) => {
                if let Some(want) = active.get(&m.key).filter(|_| !seen.contains(&m.key)) {
                    out.push(to_api(&m.key, want));
                }
                seen.push(m.key);
            }
            None => out.push(r.clone()),
        }
    }
    let new: Vec<FirewallRule> = active
        .iter()
        .filter(|(k, _)| !seen.contains(k))
        .map(|(k, r)| to_api(k, r))
        .collect();
    new.into_iter().chain(out).collect()
}

fn entries(list: &[waddle_proxmox::IpSetEntry]) -> Vec<(Ipv4Addr, u8, bool)> {
    list.iter()
        .filter_map(|e| parse_net(&e.cidr).ok().map(|(n, l)| (n, l, e.nomatch)))
        .collect()
}

/// Read what the guard needs from Proxmox and apply `planned` (`None`: after destroy, with
/// the options `restore` gives) to it.
pub async fn world(
    client: &Client,
    node: &str,
    endpoint_ip: Option<Ipv4Addr>,
    planned: Option<&FirewallState>,
    restore: Option<(bool, String)>,
) -> Result<World, waddle_proxmox::Error> {
    let opts = client.cluster_firewall_options().await?;
    let node_enabled = client.node_firewall_enabled(node).await?;
    let current = client
        .firewall_rules(&FirewallScope::Node(node.to_string()))
        .await?;
    let cluster_rules = client.firewall_rules(&FirewallScope::Cluster).await?;
    let mut ipsets = BTreeMap::new();
    for s in client.ipsets().await? {
        let e = client.ipset_entries(&s.name).await?.unwrap_or_default();
        ipsets.insert(s.name, entries(&e));
    }
    let mut aliases = BTreeMap::new();
    for a in client.firewall_aliases().await? {
        if let Ok(n) = parse_net(&a.cidr) {
            aliases.insert(a.name.to_ascii_lowercase(), n);
        }
    }
    let mut groups = BTreeMap::new();
    for g in client.firewall_groups().await? {
        let rules = client
            .firewall_rules(&FirewallScope::Group(g.name.clone()))
            .await?;
        groups.insert(g.name, rules);
    }
    // Proxmox's local_network: the alias, else the network of the node's address; waddle
    // takes the interface holding the endpoint's address as the node's address.
    let local_network = match aliases.get("local_network") {
        Some(n) => Some(*n),
        None => match endpoint_ip {
            Some(ip) => client
                .list_network(node)
                .await
                .unwrap_or_default()
                .iter()
                .filter_map(|i| {
                    i.get("cidr")
                        .and_then(|c| c.as_str())
                        .and_then(|c| parse_net(c).ok())
                })
                .find(|(a, l)| *a == ip && *l < 32),
            None => None,
        },
    };
    let (enabled, policy_in, node_rules) = match planned {
        Some(p) => {
            if let Some(set) = &p.ipset {
                let e: Vec<_> = set
                    .cidrs
                    .iter()
                    .filter_map(|c| parse_net(c).ok().map(|(n, l)| (n, l, false)))
                    .collect();
                ipsets.insert(set.name.clone(), e);
            }
            (
                p.enabled(),
                p.policy_in().to_string(),
                planned_node_rules(&current, p),
            )
        }
        None => {
            let (en, pol) = restore.unwrap_or((
                opts.enable.unwrap_or(false),
                opts.effective_policy_in().to_string(),
            ));
            let empty = FirewallState::default();
            (en, pol, planned_node_rules(&current, &empty))
        }
    };
    Ok(World {
        enabled,
        policy_in,
        node_enabled,
        node_rules,
        cluster_rules,
        ipsets,
        aliases,
        groups,
        local_network,
    })
}

/// The endpoint's IPv4 address and port, and the local address this machine routes to it
/// from (no packet is sent: a UDP socket is only connected).
pub async fn route(endpoint: &str) -> Option<(Ipv4Addr, u16, Option<Ipv4Addr>)> {
    let url = waddle_proxmox::parse_endpoint(endpoint).ok()?;
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_or_known_default()?;
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()?
        .find(|a| a.is_ipv4())?;
    let IpAddr::V4(ip) = addr.ip() else {
        return None;
    };
    let local = match std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| {
        s.connect(addr)?;
        s.local_addr()
    }) {
        Ok(a) => match a.ip() {
            IpAddr::V4(v) => Some(v),
            IpAddr::V6(_) => None,
        },
        Err(_) => None,
    };
    Some((ip, port, local))
}

/// The refusal text.
pub fn explain(outcome: &Outcome, c: &Conn, endpoint: &str, src_origin: &str) -> String {
    let src = c
        .src
        .map(|s| s.to_string())
        .unwrap_or_else(|| "<unknown>".into());
    let port = c.port;
    let (what, why) = match outcome {
        Outcome::Dropped(w) => ("would be dropped", w.clone()),
        Outcome::Unsure(w) => ("might be dropped", w.clone()),
        Outcome::Accepted(_) => ("is accepted", String::new()),
    };
    format!(
        "After this plan, a new connection from {src} ({src_origin}) to the Proxmox API at \
         {endpoint} {what}: {why}. This provider — and Terraform's next refresh — could not \
         reach the API any more; already open connections survive, so the lock-out would show \
         only later.\n\n\
         Accept the connection first, for example\n  rules = {{ api = {{ source = \"{src}\", \
         proto = \"tcp\", dport = \"{port}\" }} }}\nor put {src} into an `ipset` named \
         \"management\" (Proxmox lets it reach 8006 and 22). If NAT, a VPN or a proxy sits \
         between this machine and Proxmox, set `client_address` to the address Proxmox sees. \
         To apply anyway, set `acknowledge_lockout_risk = true`.\n\n\
         Emergency access from the node's console: `pve-firewall stop`, or \
         `pvesh set /cluster/firewall/options --enable 0`."
    )
}
