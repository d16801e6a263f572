//! The Proxmox VE built-in cloud-init drive of a VM: `ideN: <storage>:cloudinit`, `citype`,
//! `ipconfigN`, `nameserver` and `searchdomain`. PVE renders the drive at every VM start (for
//! `citype=nocloud`: a `cidata` ISO with `meta-data`, `user-data` and a MAC-matched
//! `network-config` version 1), so a guest with a NoCloud reader (cloud-init, Talos's
//! `nocloud` platform) gets its static address before any DHCP would be needed.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::error::{Error, Result};
use crate::props::{validate_pve_cidr, CidrFamily, DiskBus};

/// `citype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CiType {
    /// `nocloud`: a `cidata` drive (what Talos and Linux cloud images read).
    #[default]
    NoCloud,
    /// `configdrive2` (OpenStack config drive, `config-2`).
    ConfigDrive2,
}

impl CiType {
    fn as_str(self) -> &'static str {
        match self {
            CiType::NoCloud => "nocloud",
            CiType::ConfigDrive2 => "configdrive2",
        }
    }
}

/// `ipconfigN`: addresses in CIDR notation (`10.10.0.10/24`) or `dhcp` (IPv4) / `dhcp` or
/// `auto` (IPv6), with optional gateways.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpConfig {
    pub ip: Option<String>,
    pub gw: Option<String>,
    pub ip6: Option<String>,
    pub gw6: Option<String>,
}

impl IpConfig {
    /// A static address (`addr/len`, IPv4 or IPv6) and optional gateway.
    pub fn static_address(cidr: &str, gateway: Option<&str>) -> Self {
        let v6 = cidr.contains(':');
        let (ip, gw) = (Some(cidr.to_string()), gateway.map(str::to_string));
        if v6 {
            IpConfig {
                ip6: ip,
                gw6: gw,
                ..Default::default()
            }
        } else {
            IpConfig {
                ip,
                gw,
                ..Default::default()
            }
        }
    }

    fn render(&self, key: &str) -> Result<String> {
        let mut parts = Vec::new();
        for (name, value, gw_name, gw, v6) in [
            ("ip", &self.ip, "gw", &self.gw, false),
            ("ip6", &self.ip6, "gw6", &self.gw6, true),
        ] {
            if let Some(v) = value {
                let special = if v6 {
                    v == "dhcp" || v == "auto"
                } else {
                    v == "dhcp"
                };
                if !special {
                    check_cidr(key, v, v6)?;
                }
                parts.push(format!("{name}={v}"));
                if let Some(g) = gw {
                    if special {
                        return Err(invalid(key, g, "a gateway needs a static address"));
                    }
                    match g.parse::<IpAddr>() {
                        Ok(a) if a.is_ipv6() == v6 => {}
                        _ => return Err(invalid(key, g, "is not a gateway of the address family")),
                    }
                    parts.push(format!("{gw_name}={g}"));
                }
            } else if let Some(g) = gw {
                return Err(invalid(key, g, "a gateway needs an address"));
            }
        }
        if parts.is_empty() {
            return Err(invalid(key, "", "needs an address"));
        }
        Ok(parts.join(","))
    }
}

fn invalid(field: &str, value: &str, why: &str) -> Error {
    Error::InvalidArgument(format!("{field}: {value:?} {why}"))
}

/// `ipconfigN`'s `ip` / `ip6` are PVE's `pve-ipv4-config` / `pve-ipv6-config`, whose static
/// form is `pve_verify_cidrv4` / `pve_verify_cidrv6` (see [`validate_pve_cidr`]).
fn check_cidr(key: &str, v: &str, v6: bool) -> Result<()> {
    let family = if v6 { CidrFamily::V6 } else { CidrFamily::V4 };
    validate_pve_cidr(key, v, family)
}

/// The cloud-init drive and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudInitSpec {
    /// Bus of the drive (normally IDE, `ide2`).
    pub bus: DiskBus,
    /// Index on the bus.
    pub index: u8,
    /// Storage holding the generated image (content `images`).
    pub storage: String,
    /// Format of the drive.
    pub citype: CiType,
    /// `ipconfigN` by NIC index.
    pub ipconfig: BTreeMap<u8, IpConfig>,
    /// DNS servers (`nameserver`). PVE uses the host's when neither this nor `searchdomain`
    /// is set.
    pub nameservers: Vec<String>,
    /// DNS search domains (`searchdomain`).
    pub searchdomains: Vec<String>,
}

impl CloudInitSpec {
    /// A NoCloud drive on `ide2` in `storage`.
    pub fn nocloud(storage: &str) -> Self {
        CloudInitSpec {
            bus: DiskBus::Ide,
            index: 2,
            storage: storage.to_string(),
            citype: CiType::NoCloud,
            ipconfig: BTreeMap::new(),
            nameservers: Vec::new(),
            searchdomains: Vec::new(),
        }
    }

    /// Config key of the drive (`ide2`).
    pub fn key(&self) -> String {
        self.bus.key(self.index)
    }

    /// Parameters for `POST /nodes/{node}/qemu` (key, value).
    pub fn params(&self) -> Result<Vec<(String, String)>> {
        let s = &self.storage;
        if s.is_empty() || s.contains([',', ':', '=', ' ']) {
            return Err(invalid("cloud-init storage", s, "is not a storage id"));
        }
        if self.index > self.bus.max_index() {
            return Err(invalid("cloud-init drive", &self.key(), "is out of range"));
        }
        let mut out = vec![
            (self.key(), format!("{s}:cloudinit")),
            ("citype".to_string(), self.citype.as_str().to_string()),
        ];
        for (i, c) in &self.ipconfig {
            let key = format!("ipconfig{i}");
            out.push((key.clone(), c.render(&key)?));
        }
        for n in &self.nameservers {
            if n.parse::<IpAddr>().is_err() {
                return Err(invalid("nameserver", n, "is not an IP address"));
            }
        }
        if !self.nameservers.is_empty() {
            out.push(("nameserver".into(), self.nameservers.join(" ")));
        }
        for d in &self.searchdomains {
            if d.is_empty() || d.contains(|c: char| c.is_whitespace() || c == ',' || c == ';') {
                return Err(invalid("searchdomain", d, "is not a domain name"));
            }
        }
        if !self.searchdomains.is_empty() {
            out.push(("searchdomain".into(), self.searchdomains.join(" ")));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_pve_parameters() {
        let mut c = CloudInitSpec::nocloud("local-lvm");
        c.ipconfig.insert(
            0,
            IpConfig::static_address("10.10.0.10/24", Some("10.10.0.1")),
        );
        c.ipconfig
            .insert(1, IpConfig::static_address("fd00::5/64", None));
        c.nameservers = vec!["1.1.1.1".into(), "8.8.8.8".into()];
        c.searchdomains = vec!["example.org".into()];
        let p = c.params().unwrap();
        let get = |k: &str| p.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        assert_eq!(get("ide2"), Some("local-lvm:cloudinit"));
        assert_eq!(get("citype"), Some("nocloud"));
        assert_eq!(get("ipconfig0"), Some("ip=10.10.0.10/24,gw=10.10.0.1"));
        assert_eq!(get("ipconfig1"), Some("ip6=fd00::5/64"));
        assert_eq!(get("nameserver"), Some("1.1.1.1 8.8.8.8"));
        assert_eq!(get("searchdomain"), Some("example.org"));
    }

    #[test]
    fn refuses_what_pve_refuses() {
        let with = |ip: IpConfig| {
            let mut c = CloudInitSpec::nocloud("local-lvm");
            c.ipconfig.insert(0, ip);
            c.params()
        };
        assert!(with(IpConfig::static_address("10.10.0.10", None)).is_err());
        assert!(with(IpConfig::static_address("10.10.0.10/33", None)).is_err());
        // `pve_verify_cidrv4` / `pve_verify_cidrv6`: an unsigned prefix of at least 8.
        for bad in [
            "10.0.0.1/+8",
            "10.0.0.1/-8",
            "10.0.0.1/7",
            "fd00::5/+64",
            "fd00::5/7",
        ] {
            assert!(with(IpConfig::static_address(bad, None)).is_err(), "{bad}");
        }
        for ok in ["10.0.0.1/8", "10.0.0.1/32", "fd00::5/8", "fd00::5/128"] {
            assert!(with(IpConfig::static_address(ok, None)).is_ok(), "{ok}");
        }
        assert!(with(IpConfig::static_address("10.10.0.10/24", Some("fd00::1"))).is_err());
        let dhcp_gw = IpConfig {
            ip: Some("dhcp".into()),
            gw: Some("10.10.0.1".into()),
            ..Default::default()
        };
        assert!(with(dhcp_gw).is_err());
        assert!(with(IpConfig::default()).is_err());
        let mut c = CloudInitSpec::nocloud("local-lvm");
        c.nameservers = vec!["dns.example".into()];
        assert!(c.params().is_err());
        assert!(CloudInitSpec::nocloud("bad:id").params().is_err());
    }
}
