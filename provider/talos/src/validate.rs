//! Plan-time validation of a [`ClusterSpec`]: every finding carries the attribute path of
//! the value at fault. Nothing here talks to the network.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::config;
use crate::issue::{AttrPath, Issue};
use crate::net::{normalize_mac, parse_cidr, parse_endpoint, Cidr};
use crate::patch;
use crate::secrets::SecretsBundle;
use crate::spec::{ClusterSpec, Role};
use crate::versions;

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_hostname(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Validates the spec. Returns every finding (errors and warnings), sorted by path.
/// An empty list or warnings only means the spec can be rendered and applied.
pub fn validate(spec: &ClusterSpec) -> Vec<Issue> {
    let mut issues = Vec::new();
    check_cluster(spec, &mut issues);
    let node_addrs = check_nodes(spec, &mut issues);
    check_vip(spec, &node_addrs, &mut issues);

    // Patches are checked only on an otherwise valid spec: they are applied to the
    // generated documents, which need valid inputs.
    if !issues.iter().any(Issue::is_error) {
        let placeholder = SecretsBundle::placeholder();
        for name in spec.nodes.keys() {
            let res = config::base_documents(spec, &placeholder, name)
                .map_err(|e| Issue::error(AttrPath::node(name), e.to_string()))
                .and_then(|docs| patch::apply_all(spec, name, docs));
            if let Err(issue) = res {
                if !issues.contains(&issue) {
                    issues.push(issue);
                }
            }
        }
    }
    issues.sort_by_key(|i| i.path.to_string());
    issues
}

fn check_cluster(spec: &ClusterSpec, issues: &mut Vec<Issue>) {
    if !is_dns_label(&spec.cluster_name) {
        issues.push(Issue::error(
            AttrPath::root("cluster_name"),
            format!(
                "{:?} is not a valid cluster name (lower-case letters, digits and '-', at most 63 characters)",
                spec.cluster_name
            ),
        ));
    }
    if let Err(e) = parse_endpoint(&spec.endpoint) {
        issues.push(Issue::error(
            AttrPath::root("endpoint"),
            format!("invalid endpoint: {e}"),
        ));
    }
    let talos = versions::parse_talos_version(&spec.talos_version);
    if let Err(e) = &talos {
        issues.push(Issue::error(AttrPath::root("talos_version"), e.to_string()));
    }
    // The Kubernetes support matrix of the Talos release (v1.12's when the version is bad).
    let matrix = talos.as_ref().ok().copied().unwrap_or("v1.12.0");
    if let Err(e) = versions::parse_kubernetes_version_for(&spec.kubernetes_version, matrix) {
        issues.push(Issue::error(
            AttrPath::root("kubernetes_version"),
            e.to_string(),
        ));
    }
    if let (Some(contract), Ok(v)) = (spec.config_contract, &talos) {
        if contract.runs_on(v) == Some(false) {
            issues.push(Issue::error(
                AttrPath::root("config_contract"),
                format!(
                    "configuration contract {contract} is newer than talos_version {v}: Talos \
                     runs configurations of its own minor release or older; upgrade to \
                     {contract} first, then change config_contract"
                ),
            ));
        }
    }
    if let Some(img) = &spec.installer_image {
        let last = img.rsplit('/').next().unwrap_or_default();
        if img.trim().is_empty()
            || img.contains(char::is_whitespace)
            || !(last.contains(':') || img.contains('@'))
        {
            issues.push(Issue::error(
                AttrPath::root("installer_image"),
                format!("{img:?} is not an image reference with a tag (e.g. factory.talos.dev/installer/<schematic>:v1.12.11)"),
            ));
        } else if let (Ok(v), Some((_, tag))) = (&talos, last.split_once(':')) {
            if tag != *v {
                issues.push(Issue::warning(
                    AttrPath::root("installer_image"),
                    format!("installer image tag {tag} differs from talos_version {v}"),
                ));
            }
        }
    }
    for (i, ns) in spec.nameservers.iter().enumerate() {
        if ns.parse::<IpAddr>().is_err() {
            issues.push(Issue::error(
                AttrPath::root("nameservers").index(i),
                format!("{ns:?} is not an IP address"),
            ));
        }
    }
    for (i, san) in spec.cert_sans.iter().enumerate() {
        if san.trim().is_empty() || san.contains(char::is_whitespace) {
            issues.push(Issue::error(
                AttrPath::root("cert_sans").index(i),
                format!("{san:?} is not a host name or IP address"),
            ));
        }
    }
    let mut manifest_names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, m) in spec.inline_manifests.iter().enumerate() {
        let path = AttrPath::root("inline_manifests").index(i);
        if m.name.trim().is_empty() {
            issues.push(Issue::error(
                path.clone().attr("name"),
                "name must not be empty",
            ));
        } else if let Some(first) = manifest_names.insert(&m.name, i) {
            issues.push(Issue::error(
                path.clone().attr("name"),
                format!(
                    "duplicate manifest name {:?} (also inline_manifests[{first}])",
                    m.name
                ),
            ));
        }
        if let Err(e) = crate::yaml::parse_multidoc(&m.contents) {
            issues.push(Issue::error(
                path.attr("contents"),
                format!("contents are not valid YAML: {e}"),
            ));
        }
    }
    if spec.nodes.is_empty() {
        issues.push(Issue::error(
            AttrPath::root("nodes"),
            "at least one node is required",
        ));
    } else {
        let cps = spec.control_planes().len();
        if cps == 0 {
            issues.push(Issue::error(
                AttrPath::root("nodes"),
                "at least one node with role \"controlplane\" is required",
            ));
        } else if cps.is_multiple_of(2) {
            issues.push(Issue::warning(
                AttrPath::root("nodes"),
                format!(
                    "{cps} control planes: an even number adds no fault tolerance to etcd (use {} or {})",
                    cps - 1,
                    cps + 1
                ),
            ));
        }
    }
}

/// Checks nodes; returns the parsed addresses of nodes whose address is valid.
fn check_nodes(spec: &ClusterSpec, issues: &mut Vec<Issue>) -> BTreeMap<String, Cidr> {
    let mut addrs: BTreeMap<String, Cidr> = BTreeMap::new();
    let mut seen_ip: BTreeMap<IpAddr, &str> = BTreeMap::new();
    let mut seen_mac: BTreeMap<String, &str> = BTreeMap::new();
    let mut seen_host: BTreeMap<String, &str> = BTreeMap::new();
    for (name, node) in &spec.nodes {
        let base = AttrPath::node(name);
        // hostname
        let hostname = node.hostname.clone().unwrap_or_else(|| name.clone());
        if !is_hostname(&hostname) {
            let path = if node.hostname.is_some() {
                base.clone().attr("hostname")
            } else {
                base.clone()
            };
            issues.push(Issue::error(
                path,
                format!("{hostname:?} is not a valid hostname (set hostname, or use a lower-case node name)"),
            ));
        } else if let Some(other) = seen_host.insert(hostname.clone(), name) {
            issues.push(Issue::error(
                base.clone().attr("hostname"),
                format!("hostname {hostname:?} is also used by node {other:?}"),
            ));
        }
        // address
        match parse_cidr(&node.address) {
            Err(e) => issues.push(Issue::error(base.clone().attr("address"), e.to_string())),
            Ok(c) if c.is_network_or_broadcast() => issues.push(Issue::error(
                base.clone().attr("address"),
                format!("{c} is the network or broadcast address of its subnet"),
            )),
            Ok(c) if c.addr.is_unspecified() || c.addr.is_multicast() => issues.push(Issue::error(
                base.clone().attr("address"),
                format!("{c} is not a usable host address"),
            )),
            Ok(c) => {
                if let Some(other) = seen_ip.insert(c.addr, name) {
                    issues.push(Issue::error(
                        base.clone().attr("address"),
                        format!("duplicate address {}: also used by node {other:?}", c.addr),
                    ));
                }
                addrs.insert(name.clone(), c);
            }
        }
        // gateway
        if let Some(gw) = &node.gateway {
            match gw.parse::<IpAddr>() {
                Err(_) => issues.push(Issue::error(
                    base.clone().attr("gateway"),
                    format!("{gw:?} is not an IP address"),
                )),
                Ok(g) => {
                    if let Some(c) = addrs.get(name) {
                        if !c.contains(g) {
                            issues.push(Issue::error(
                                base.clone().attr("gateway"),
                                format!("gateway {g} is outside the node's subnet {}", c.subnet()),
                            ));
                        } else if g == c.addr {
                            issues.push(Issue::error(
                                base.clone().attr("gateway"),
                                "gateway is the node's own address",
                            ));
                        }
                    }
                }
            }
        }
        // link selection
        match (&node.mac, &node.interface) {
            (None, None) => issues.push(Issue::error(
                base.clone().attr("mac"),
                "set mac (the NIC is then selected by MAC) or interface (e.g. \"ens18\")",
            )),
            (_, Some(i)) if i.is_empty() || i.len() > 15 || i.contains(['/', ' ', ':']) => issues
                .push(Issue::error(
                    base.clone().attr("interface"),
                    format!("{i:?} is not a valid interface name"),
                )),
            _ => {}
        }
        if let Some(mac) = &node.mac {
            match normalize_mac(mac) {
                None => issues.push(Issue::error(
                    base.clone().attr("mac"),
                    format!("{mac:?} is not a MAC address (e.g. bc:24:11:00:00:10)"),
                )),
                Some(m) => {
                    let first = u8::from_str_radix(&m[..2], 16).unwrap_or(0);
                    if first & 1 == 1 {
                        issues.push(Issue::error(
                            base.clone().attr("mac"),
                            format!("{m} is a multicast MAC address"),
                        ));
                    } else if let Some(other) = seen_mac.insert(m.clone(), name) {
                        issues.push(Issue::error(
                            base.clone().attr("mac"),
                            format!("duplicate MAC {m}: also used by node {other:?}"),
                        ));
                    }
                }
            }
        }
        if !node.install_disk.starts_with("/dev/") || node.install_disk.len() <= 5 {
            issues.push(Issue::error(
                base.clone().attr("install_disk"),
                format!(
                    "{:?} is not a device path (e.g. /dev/sda)",
                    node.install_disk
                ),
            ));
        }
        for k in node.node_labels.keys() {
            if k.is_empty() || k.contains(char::is_whitespace) {
                issues.push(Issue::error(
                    base.clone().attr("node_labels").key(k),
                    "invalid label key",
                ));
            }
        }
    }
    addrs
}

fn check_vip(spec: &ClusterSpec, addrs: &BTreeMap<String, Cidr>, issues: &mut Vec<Issue>) {
    let Some(vip) = &spec.vip else { return };
    let path = AttrPath::root("vip");
    let ip = match vip.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => {
            issues.push(Issue::error(path, format!("{vip:?} is not an IP address")));
            return;
        }
    };
    if let Some((n, _)) = addrs.iter().find(|(_, c)| c.addr == ip) {
        issues.push(Issue::error(
            path,
            format!("VIP {ip} is also node {n:?}'s address"),
        ));
        return;
    }
    let cps: Vec<(&String, &Cidr)> = addrs
        .iter()
        .filter(|(n, _)| spec.nodes.get(*n).map(|x| x.role) == Some(Role::ControlPlane))
        .collect();
    if cps.is_empty() {
        return; // reported elsewhere (no control plane / bad addresses)
    }
    let outside: Vec<&str> = cps
        .iter()
        .filter(|(_, c)| !c.contains(ip))
        .map(|(n, _)| n.as_str())
        .collect();
    if outside.len() == cps.len() {
        issues.push(Issue::error(
            path,
            format!("VIP {ip} is inside no control plane node's subnet"),
        ));
    } else if !outside.is_empty() {
        issues.push(Issue::error(
            path,
            format!(
                "VIP {ip} is outside the subnet of control plane(s) {}: a layer-2 VIP needs every control plane on its subnet",
                outside.join(", ")
            ),
        ));
    }
}
