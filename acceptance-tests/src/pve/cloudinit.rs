//! The Proxmox VE cloud-init drive (`ideN: <storage>:cloudinit`), rendered as PVE 9 renders
//! it at VM start for `citype: nocloud`: a `cidata`-labelled drive holding `meta-data`,
//! `user-data` (`#cloud-config` with the VM's hostname) and `network-config` **version 1**
//! built from `netN` (the MAC) and `ipconfigN` (`ip=`/`gw=`), with one `nameserver` entry from
//! `nameserver`/`searchdomain`. Only NICs that have an `ipconfigN` appear, as in PVE. PVE falls
//! back to the host's resolv.conf when neither DNS option is set; the emulated host has none.
//!
//! `citype` defaults, as in PVE, to `nocloud` except for Windows `ostype`s
//! (`configdrive2`, a `config-2` drive no NoCloud reader looks at), so only a `nocloud` drive
//! is rendered here.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

/// Files of a rendered NoCloud drive, by name.
pub type NoCloudFiles = BTreeMap<String, Vec<u8>>;

/// Whether `value` (a disk option string) is a PVE cloud-init drive.
pub fn is_cloudinit_drive(value: &str) -> bool {
    let volid = value.split(',').next().unwrap_or("");
    volid.ends_with("-cloudinit") || volid.ends_with(":cloudinit")
}

/// The `citype` PVE uses for this configuration.
fn citype(config: &BTreeMap<String, String>) -> &str {
    match config.get("citype") {
        Some(t) => t.as_str(),
        None if config
            .get("ostype")
            .is_some_and(|o| o.starts_with("win") || o == "wxp" || o == "w2k" || o == "w2k3") =>
        {
            "configdrive2"
        }
        None => "nocloud",
    }
}

/// PVE's `split_list`: separators are whitespace, `,` and `;`.
fn split_list(s: &str) -> Vec<String> {
    s.split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn prop<'a>(value: &'a str, key: &str) -> Option<&'a str> {
    value
        .split(',')
        .find_map(|p| p.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

fn netmask(prefix: u8) -> Ipv4Addr {
    let bits = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    Ipv4Addr::from(bits)
}

/// The MAC of a `netN` value (`virtio=BC:24:11:..,bridge=..`), lower-cased.
fn net_mac(value: &str) -> Option<String> {
    let first = value.split(',').next()?;
    let (_, mac) = first.split_once('=')?;
    Some(mac.to_ascii_lowercase())
}

/// `network-config` version 1 as PVE writes it.
pub fn network_config_v1(config: &BTreeMap<String, String>) -> String {
    let mut out = String::from("version: 1\nconfig:\n");
    let mut ids: Vec<u32> = config
        .keys()
        .filter_map(|k| k.strip_prefix("net"))
        .filter_map(|n| n.parse().ok())
        .collect();
    ids.sort_unstable();
    for id in ids {
        let Some(ipconfig) = config.get(&format!("ipconfig{id}")) else {
            continue;
        };
        let Some(mac) = config.get(&format!("net{id}")).and_then(|v| net_mac(v)) else {
            continue;
        };
        out.push_str(&format!(
            "    - type: physical\n      name: eth{id}\n      mac_address: '{mac}'\n      subnets:\n"
        ));
        match prop(ipconfig, "ip") {
            Some("dhcp") => out.push_str("      - type: dhcp4\n"),
            Some(cidr) => {
                if let Some((addr, len)) = cidr.split_once('/') {
                    let mask = netmask(len.parse().unwrap_or(32));
                    out.push_str(&format!(
                        "      - type: static\n        address: '{addr}'\n        netmask: '{mask}'\n"
                    ));
                    if let Some(gw) = prop(ipconfig, "gw") {
                        out.push_str(&format!("        gateway: '{gw}'\n"));
                    }
                }
            }
            None => {}
        }
        match prop(ipconfig, "ip6") {
            Some("dhcp") => out.push_str("      - type: dhcp6\n"),
            Some("auto") => out.push_str("      - type: ipv6_slaac\n"),
            Some(cidr) => {
                out.push_str(&format!(
                    "      - type: static6\n        address: '{cidr}'\n"
                ));
                if let Some(gw) = prop(ipconfig, "gw6") {
                    out.push_str(&format!("        gateway: '{gw}'\n"));
                }
            }
            None => {}
        }
    }
    let ns = config
        .get("nameserver")
        .map(|s| split_list(s))
        .unwrap_or_default();
    let search = config
        .get("searchdomain")
        .map(|s| split_list(s))
        .unwrap_or_default();
    if !ns.is_empty() || !search.is_empty() {
        out.push_str("    - type: nameserver\n");
        if !ns.is_empty() {
            out.push_str("      address:\n");
            for n in &ns {
                out.push_str(&format!("      - '{n}'\n"));
            }
        }
        if !search.is_empty() {
            out.push_str("      search:\n");
            for s in &search {
                out.push_str(&format!("      - '{s}'\n"));
            }
        }
    }
    out
}

/// The drive's files, when the VM has a cloud-init drive of type `nocloud`.
pub fn render_nocloud(vmid: u32, config: &BTreeMap<String, String>) -> Option<NoCloudFiles> {
    let has_drive = config.values().any(|v| is_cloudinit_drive(v));
    if !has_drive || citype(config) != "nocloud" {
        return None;
    }
    let name = config
        .get("name")
        .cloned()
        .unwrap_or_else(|| format!("VM{vmid}"));
    let mut user = format!("#cloud-config\nhostname: {name}\nmanage_etc_hosts: true\n");
    if let Some(domain) = config
        .get("searchdomain")
        .and_then(|s| split_list(s).into_iter().next())
    {
        user.push_str(&format!("fqdn: {name}.{domain}\n"));
    }
    if let Some(u) = config.get("ciuser") {
        user.push_str(&format!("user: {u}\n"));
    }
    user.push_str("chpasswd:\n  expire: False\nusers:\n  - default\npackage_upgrade: true\n");
    let network = network_config_v1(config);
    let mut h = Sha256::new();
    h.update(user.as_bytes());
    h.update(network.as_bytes());
    let instance = hex::encode(&h.finalize()[..20]);
    let meta = format!("instance-id: {instance}\n");
    let mut files = NoCloudFiles::new();
    files.insert("meta-data".into(), meta.into_bytes());
    files.insert("user-data".into(), user.into_bytes());
    files.insert("network-config".into(), network.into_bytes());
    Some(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_v1_like_pve() {
        let c = cfg(&[
            ("name", "cp1"),
            ("net0", "virtio=BC:24:11:AA:00:01,bridge=vmbr1"),
            ("net1", "virtio=BC:24:11:AA:00:02,bridge=vmbr0"),
            ("ide2", "local-lvm:vm-100-cloudinit,media=cdrom"),
            ("ipconfig0", "ip=10.10.0.10/24,gw=10.10.0.1"),
            ("nameserver", "1.1.1.1 8.8.8.8"),
            ("searchdomain", "example.org"),
        ]);
        let files = render_nocloud(100, &c).expect("a nocloud drive");
        let net = String::from_utf8(files["network-config"].clone()).unwrap();
        assert_eq!(
            net,
            "version: 1\nconfig:\n    - type: physical\n      name: eth0\n      mac_address: 'bc:24:11:aa:00:01'\n      subnets:\n      - type: static\n        address: '10.10.0.10'\n        netmask: '255.255.255.0'\n        gateway: '10.10.0.1'\n    - type: nameserver\n      address:\n      - '1.1.1.1'\n      - '8.8.8.8'\n      search:\n      - 'example.org'\n"
        );
        let user = String::from_utf8(files["user-data"].clone()).unwrap();
        assert!(user.starts_with("#cloud-config\nhostname: cp1\n"), "{user}");
        assert!(files["meta-data"].starts_with(b"instance-id: "));
    }

    #[test]
    fn no_drive_or_other_citype_renders_nothing() {
        let base = [
            ("net0", "virtio=BC:24:11:AA:00:01,bridge=vmbr1"),
            ("ipconfig0", "ip=10.10.0.10/24"),
        ];
        assert!(render_nocloud(1, &cfg(&base)).is_none());
        let mut c = cfg(&base);
        c.insert("ide2".into(), "local-lvm:vm-1-cloudinit,media=cdrom".into());
        c.insert("ostype".into(), "win11".into());
        assert!(render_nocloud(1, &c).is_none());
        c.insert("citype".into(), "nocloud".into());
        assert!(render_nocloud(1, &c).is_some());
    }
}
