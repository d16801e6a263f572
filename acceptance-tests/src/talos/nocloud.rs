//! Talos's `nocloud` platform network configuration, parsed as Talos v1.12 parses the
//! `network-config` file of a `cidata` drive: version 1 (`config:` list: `physical` entries
//! with `mac_address`/`name` and `subnets` of type `static` — `address` with a prefix length
//! or with `netmask`, `gateway` — or `dhcp`/`dhcp4`; `nameserver` entries) and version 2
//! (`ethernets:` with `match.macaddress`, `addresses`, `gateway4`, `routes`, `dhcp4`,
//! `nameservers.addresses`). Any other version is refused, as Talos refuses it (the
//! platform then gives no network configuration). The document may be wrapped in a
//! top-level `network:` key, the form cloud-init also accepts.
//!
//! A link is matched to a NIC by MAC (case-insensitive); an entry without a MAC matches the
//! NIC by its emulated link name (`eth0`, `eth1`, ... — the names the guest agent reports).

use std::net::Ipv4Addr;

use serde_json::Value;

/// IPv4 configuration of one link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkNet {
    /// Lower-case MAC the entry matches, if it names one.
    pub mac: Option<String>,
    /// Link name the entry matches when it has no MAC.
    pub name: Option<String>,
    /// Static addresses (address, prefix length).
    pub addresses: Vec<(Ipv4Addr, u8)>,
    /// Default gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Whether the link runs a DHCPv4 client.
    pub dhcp4: bool,
}

/// The platform network configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformNetwork {
    pub links: Vec<LinkNet>,
    pub resolvers: Vec<Ipv4Addr>,
}

impl PlatformNetwork {
    /// The entry for the NIC with `mac` and link name `name`.
    pub fn link(&self, mac: &str, name: &str) -> Option<&LinkNet> {
        let mac = mac.to_ascii_lowercase();
        self.links
            .iter()
            .find(|l| l.mac.as_deref() == Some(mac.as_str()))
            .or_else(|| {
                self.links
                    .iter()
                    .find(|l| l.mac.is_none() && l.name.as_deref() == Some(name))
            })
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// `a.b.c.d/len`, or `a.b.c.d` with a dotted `netmask`.
fn prefix(address: &str, netmask: Option<&str>) -> Result<(Ipv4Addr, u8), String> {
    let bad = || format!("failed to parse address {address:?}");
    match address.split_once('/') {
        Some((a, l)) => {
            let len: u8 = l.parse().map_err(|_| bad())?;
            if len > 32 {
                return Err(bad());
            }
            Ok((a.parse().map_err(|_| bad())?, len))
        }
        None => {
            let ip: Ipv4Addr = address.parse().map_err(|_| bad())?;
            let mask: Ipv4Addr = netmask
                .ok_or_else(|| format!("address {address:?} has no netmask"))?
                .parse()
                .map_err(|_| format!("failed to parse netmask of {address:?}"))?;
            let bits = u32::from(mask);
            if bits.leading_ones() != bits.count_ones() {
                return Err(format!("netmask {mask} is not contiguous"));
            }
            Ok((ip, bits.count_ones() as u8))
        }
    }
}

fn ipv4(s: &str) -> Result<Ipv4Addr, String> {
    s.parse().map_err(|_| format!("failed to parse IPv4 {s:?}"))
}

fn parse_v1(doc: &Value) -> Result<PlatformNetwork, String> {
    let mut out = PlatformNetwork::default();
    for c in doc
        .get("config")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        match str_of(&c, "type") {
            Some("nameserver") => {
                for a in strings(c.get("address")) {
                    if let Ok(ip) = a.parse() {
                        out.resolvers.push(ip);
                    }
                }
            }
            Some("physical") => {
                let mut link = LinkNet {
                    mac: str_of(&c, "mac_address").map(str::to_ascii_lowercase),
                    name: str_of(&c, "name").map(str::to_string),
                    ..LinkNet::default()
                };
                for s in c
                    .get("subnets")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
                {
                    match str_of(&s, "type") {
                        Some("static") => {
                            let addr =
                                str_of(&s, "address").ok_or("static subnet without address")?;
                            link.addresses.push(prefix(addr, str_of(&s, "netmask"))?);
                            if let Some(gw) = str_of(&s, "gateway") {
                                link.gateway = Some(ipv4(gw)?);
                            }
                        }
                        Some("dhcp") | Some("dhcp4") => link.dhcp4 = true,
                        _ => {}
                    }
                }
                out.links.push(link);
            }
            _ => {}
        }
    }
    Ok(out)
}

fn parse_v2(doc: &Value) -> Result<PlatformNetwork, String> {
    let mut out = PlatformNetwork::default();
    let Some(eths) = doc.get("ethernets").and_then(Value::as_object) else {
        return Ok(out);
    };
    for (name, e) in eths {
        let mut link = LinkNet {
            mac: e
                .get("match")
                .and_then(|m| str_of(m, "macaddress"))
                .map(str::to_ascii_lowercase),
            name: Some(name.clone()),
            dhcp4: e.get("dhcp4").and_then(Value::as_bool).unwrap_or(false),
            ..LinkNet::default()
        };
        for a in strings(e.get("addresses")) {
            // IPv6 addresses are out of scope for the emulator.
            if a.contains(':') {
                continue;
            }
            link.addresses.push(prefix(&a, None)?);
        }
        if let Some(gw) = str_of(e, "gateway4") {
            link.gateway = Some(ipv4(gw)?);
        }
        for r in e
            .get("routes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            if matches!(str_of(&r, "to"), Some("0.0.0.0/0") | Some("default")) {
                if let Some(via) = str_of(&r, "via") {
                    link.gateway = Some(ipv4(via)?);
                }
            }
        }
        for a in strings(e.get("nameservers").and_then(|n| n.get("addresses"))) {
            if let Ok(ip) = a.parse() {
                out.resolvers.push(ip);
            }
        }
        out.links.push(link);
    }
    Ok(out)
}

/// Parses a `network-config` document.
pub fn parse_network_config(text: &str) -> Result<PlatformNetwork, String> {
    let doc: Value = serde_yaml_ng::from_str(text)
        .map_err(|e| format!("failed to unmarshal network-config: {e}"))?;
    let doc = doc.get("network").cloned().unwrap_or(doc);
    match doc.get("version").and_then(Value::as_i64) {
        Some(1) => parse_v1(&doc),
        Some(2) => parse_v2(&doc),
        other => Err(format!(
            "network-config metadata version={} is not supported",
            other.unwrap_or(0)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_as_pve_writes_it() {
        let text = "version: 1\nconfig:\n    - type: physical\n      name: eth0\n      mac_address: 'bc:24:11:aa:00:01'\n      subnets:\n      - type: static\n        address: '10.10.0.10'\n        netmask: '255.255.255.0'\n        gateway: '10.10.0.1'\n    - type: nameserver\n      address:\n      - '1.1.1.1'\n      search:\n      - 'example.org'\n";
        let n = parse_network_config(text).unwrap();
        let l = n.link("BC:24:11:AA:00:01", "eth9").expect("matched by MAC");
        assert_eq!(l.addresses, vec![(Ipv4Addr::new(10, 10, 0, 10), 24)]);
        assert_eq!(l.gateway, Some(Ipv4Addr::new(10, 10, 0, 1)));
        assert!(!l.dhcp4);
        assert_eq!(n.resolvers, vec![Ipv4Addr::new(1, 1, 1, 1)]);
        assert!(n.link("bc:24:11:aa:00:02", "eth1").is_none());
    }

    #[test]
    fn v2_with_match_routes_and_dhcp() {
        let text = "network:\n  version: 2\n  ethernets:\n    net0:\n      match:\n        macaddress: BC:24:11:AA:00:01\n      addresses: [10.10.0.11/24]\n      routes:\n        - to: 0.0.0.0/0\n          via: 10.10.0.1\n      nameservers:\n        addresses: [9.9.9.9]\n    eth1:\n      dhcp4: true\n";
        let n = parse_network_config(text).unwrap();
        let l = n.link("bc:24:11:aa:00:01", "eth0").unwrap();
        assert_eq!(l.addresses, vec![(Ipv4Addr::new(10, 10, 0, 11), 24)]);
        assert_eq!(l.gateway, Some(Ipv4Addr::new(10, 10, 0, 1)));
        assert!(n.link("bc:24:11:aa:00:02", "eth1").unwrap().dhcp4);
        assert_eq!(n.resolvers, vec![Ipv4Addr::new(9, 9, 9, 9)]);
    }

    #[test]
    fn refused_like_talos() {
        assert!(parse_network_config("version: 3\n")
            .unwrap_err()
            .contains("version=3 is not supported"));
        assert!(parse_network_config("config: []\n").is_err());
        // No netmask and no prefix length: not an address Talos can use.
        let v1 = "version: 1\nconfig:\n- type: physical\n  name: eth0\n  subnets:\n  - type: static\n    address: 10.0.0.1\n";
        assert!(parse_network_config(v1).is_err());
        let v1 = "version: 1\nconfig:\n- type: physical\n  name: eth0\n  subnets:\n  - type: static\n    address: 10.0.0.1\n    netmask: 255.0.255.0\n";
        assert!(parse_network_config(v1).is_err());
    }
}
