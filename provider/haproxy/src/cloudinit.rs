//! Cloud-init NoCloud seed content for the HAProxy VM: `user-data` (`#cloud-config`),
//! `meta-data` and `network-config` (version 2).
//!
//! The user-data installs `haproxy` and `qemu-guest-agent`, writes the rendered config, both
//! maps and a hash marker with `write_files` (deferred until after package installation, so
//! the package's own conffile never overwrites ours and the files can belong to the
//! `haproxy` group), runs `haproxy -c` and only then enables and restarts HAProxy (on a failed
//! check HAProxy is left stopped and disabled and the boot script exits non-zero). SSH
//! password login and root login are off; one admin user gets the SSH keys and passwordless
//! sudo.

use std::net::IpAddr;

use serde::Serialize;

use crate::error::{AttrPath, ErrorKind, RenderError, ValidationError, ValidationErrors};
use crate::render::Rendered;
use crate::validate::is_valid_unix_name;

/// Where the config hash marker is written on the VM (one line: the `config_hash`). The
/// resource's read compares the hash of the live files with it.
pub const HASH_MARKER_PATH: &str = "/etc/haproxy/waddle-config.sha256";

/// One network interface of the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    /// netplan id; used as the interface name when no MAC is given (Proxmox virtio `net0`
    /// appears as `ens18`, `net1` as `ens19` in Debian cloud images), otherwise the name the
    /// interface is renamed to (`set-name`).
    pub name: String,
    /// MAC address to match (`aa:bb:cc:dd:ee:ff`), recommended when the resource sets MACs.
    pub mac_address: Option<String>,
    /// Address in CIDR notation, e.g. `203.0.113.10/24`.
    pub cidr: String,
    /// Default gateway via this interface (public NIC only).
    pub gateway: Option<IpAddr>,
}

/// Inputs of the seed besides the rendered HAProxy files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudInitSpec {
    /// VM hostname (a DNS label or dotted name).
    pub hostname: String,
    /// NoCloud `instance-id`; keep it stable for the VM's life (a new id re-runs first-boot).
    pub instance_id: String,
    /// Admin login (not `root`), gets the keys and passwordless sudo.
    pub admin_user: String,
    /// OpenSSH public keys (`ssh-ed25519 AAAA... comment`). At least one.
    pub ssh_authorized_keys: Vec<String>,
    /// Public NIC with the default gateway.
    pub public_nic: NicSpec,
    /// Private NIC on the platform bridge (10.10.0.0/24).
    pub private_nic: NicSpec,
    /// DNS resolvers for the VM (needed for the package installation).
    pub dns_servers: Vec<IpAddr>,
}

/// The three NoCloud seed files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudInit {
    /// `user-data`, starting with `#cloud-config`.
    pub user_data: String,
    /// `meta-data`.
    pub meta_data: String,
    /// `network-config` (netplan-style version 2).
    pub network_config: String,
}

/// `addr/prefix` into its parts, `None` when it is not one.
pub(crate) fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    if !len.chars().all(|c| c.is_ascii_digit()) || len.is_empty() {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

fn valid_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn valid_ssh_key(s: &str) -> bool {
    const TYPES: &[&str] = &[
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    let mut parts = s.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return false;
    };
    !s.contains('\n')
        && !s.contains('\r')
        && TYPES.contains(&kind)
        && blob.len() >= 16
        && blob
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
}

/// Validates the cloud-init inputs, every error with its attribute path.
pub fn validate_cloud_init(ci: &CloudInitSpec) -> Result<(), ValidationErrors> {
    let mut errs = Vec::new();
    let other = |msg: String| ErrorKind::Other(msg);
    if !valid_hostname(&ci.hostname) {
        errs.push(ValidationError::new(
            AttrPath::attr("hostname"),
            other(format!("`{}` is not a valid hostname", ci.hostname)),
        ));
    }
    if ci.instance_id.is_empty()
        || !ci
            .instance_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        errs.push(ValidationError::new(
            AttrPath::attr("instance_id"),
            other(format!(
                "instance id `{}` must be non-empty letters, digits, `-`, `_`, `.`",
                ci.instance_id
            )),
        ));
    }
    if !is_valid_unix_name(&ci.admin_user) || ci.admin_user == "root" {
        errs.push(ValidationError::new(
            AttrPath::attr("admin_user"),
            ErrorKind::InvalidName(ci.admin_user.clone()),
        ));
    }
    if ci.ssh_authorized_keys.is_empty() {
        errs.push(ValidationError::new(
            AttrPath::attr("ssh_authorized_keys"),
            other("at least one SSH public key is required (password login is disabled)".into()),
        ));
    }
    for (i, k) in ci.ssh_authorized_keys.iter().enumerate() {
        if !valid_ssh_key(k) {
            errs.push(ValidationError::new(
                AttrPath::attr("ssh_authorized_keys").index(i),
                other("not an OpenSSH public key line (`<type> <base64> [comment]`)".into()),
            ));
        }
    }
    for (field, nic) in [
        ("public_nic", &ci.public_nic),
        ("private_nic", &ci.private_nic),
    ] {
        let p = AttrPath::attr(field);
        if nic.name.is_empty()
            || nic.name.len() > 15
            || !nic
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            errs.push(ValidationError::new(
                p.field("name"),
                other(format!("`{}` is not a valid interface name", nic.name)),
            ));
        }
        if let Some(mac) = &nic.mac_address {
            if !valid_mac(mac) {
                errs.push(ValidationError::new(
                    p.field("mac_address"),
                    other(format!("`{mac}` is not a MAC address (aa:bb:cc:dd:ee:ff)")),
                ));
            }
        }
        match parse_cidr(&nic.cidr) {
            None => errs.push(ValidationError::new(
                p.field("cidr"),
                other(format!("`{}` is not an address in CIDR notation", nic.cidr)),
            )),
            Some((ip, _)) => {
                if let Some(gw) = nic.gateway {
                    if gw.is_ipv4() != ip.is_ipv4() {
                        errs.push(ValidationError::new(
                            p.field("gateway"),
                            other(format!(
                                "gateway {gw} is not of the address family of {}",
                                nic.cidr
                            )),
                        ));
                    }
                }
            }
        }
    }
    if ci.public_nic.name == ci.private_nic.name {
        errs.push(ValidationError::new(
            AttrPath::attr("private_nic").field("name"),
            other("both NICs have the same name".into()),
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errs))
    }
}

#[derive(Serialize)]
struct User<'a> {
    name: &'a str,
    gecos: &'a str,
    groups: &'a str,
    shell: &'a str,
    sudo: &'a str,
    lock_passwd: bool,
    ssh_authorized_keys: &'a [String],
}

#[derive(Serialize)]
struct WriteFile {
    path: String,
    content: String,
    owner: &'static str,
    permissions: &'static str,
    defer: bool,
}

#[derive(Serialize)]
struct UserData<'a> {
    hostname: &'a str,
    manage_etc_hosts: bool,
    ssh_pwauth: bool,
    disable_root: bool,
    users: Vec<User<'a>>,
    package_update: bool,
    packages: Vec<&'static str>,
    write_files: Vec<WriteFile>,
    runcmd: Vec<Vec<String>>,
}

#[derive(Serialize)]
struct MetaData<'a> {
    #[serde(rename = "instance-id")]
    instance_id: &'a str,
    #[serde(rename = "local-hostname")]
    local_hostname: &'a str,
}

#[derive(Serialize)]
struct Match {
    macaddress: String,
}

#[derive(Serialize)]
struct Route {
    to: &'static str,
    via: String,
}

#[derive(Serialize)]
struct Nameservers {
    addresses: Vec<String>,
}

#[derive(Serialize)]
struct Ethernet<'a> {
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    match_: Option<Match>,
    #[serde(rename = "set-name", skip_serializing_if = "Option::is_none")]
    set_name: Option<&'a str>,
    dhcp4: bool,
    dhcp6: bool,
    addresses: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nameservers: Option<Nameservers>,
}

#[derive(Serialize)]
struct NetworkConfig<'a> {
    version: u8,
    ethernets: std::collections::BTreeMap<&'a str, Ethernet<'a>>,
}

fn yaml<T: Serialize>(v: &T) -> Result<String, RenderError> {
    serde_yaml_ng::to_string(v).map_err(|e| RenderError::Yaml(e.to_string()))
}

/// The boot-time check-then-enable script run by `runcmd`.
pub fn enable_script(config_path: &str) -> String {
    format!(
        "if haproxy -c -f {config_path}; then systemctl enable haproxy && systemctl restart haproxy; \
         else systemctl disable --now haproxy; echo 'waddle: haproxy -c failed, haproxy left stopped' >&2; exit 1; fi"
    )
}

/// Renders the NoCloud seed files for a VM serving `rendered`.
pub fn render_cloud_init(
    ci: &CloudInitSpec,
    rendered: &Rendered,
) -> Result<CloudInit, RenderError> {
    validate_cloud_init(ci)?;
    let mut write_files: Vec<WriteFile> = rendered
        .files()
        .into_iter()
        .map(|f| WriteFile {
            path: f.path,
            content: f.content,
            owner: "root:haproxy",
            permissions: f.permissions,
            defer: true,
        })
        .collect();
    write_files.push(WriteFile {
        path: HASH_MARKER_PATH.to_string(),
        content: format!("{}\n", rendered.config_hash),
        owner: "root:haproxy",
        permissions: "0644",
        defer: true,
    });
    let ud = UserData {
        hostname: &ci.hostname,
        manage_etc_hosts: true,
        ssh_pwauth: false,
        disable_root: true,
        users: vec![User {
            name: &ci.admin_user,
            gecos: "waddle administrator",
            groups: "sudo",
            shell: "/bin/bash",
            sudo: "ALL=(ALL) NOPASSWD:ALL",
            lock_passwd: true,
            ssh_authorized_keys: &ci.ssh_authorized_keys,
        }],
        package_update: true,
        packages: vec!["haproxy", "qemu-guest-agent"],
        write_files,
        runcmd: vec![
            vec![
                "systemctl".into(),
                "start".into(),
                "qemu-guest-agent".into(),
            ],
            vec![
                "sh".into(),
                "-c".into(),
                enable_script(&rendered.paths.config),
            ],
        ],
    };
    let user_data = format!("#cloud-config\n{}", yaml(&ud)?);
    let meta_data = yaml(&MetaData {
        instance_id: &ci.instance_id,
        local_hostname: &ci.hostname,
    })?;

    let mut ethernets = std::collections::BTreeMap::new();
    for (nic, is_public) in [(&ci.public_nic, true), (&ci.private_nic, false)] {
        let routes = nic
            .gateway
            .map(|gw| {
                vec![Route {
                    to: if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" },
                    via: gw.to_string(),
                }]
            })
            .unwrap_or_default();
        let nameservers = (is_public && !ci.dns_servers.is_empty()).then(|| Nameservers {
            addresses: ci.dns_servers.iter().map(|a| a.to_string()).collect(),
        });
        ethernets.insert(
            nic.name.as_str(),
            Ethernet {
                match_: nic.mac_address.as_deref().map(|m| Match {
                    macaddress: m.to_ascii_lowercase(),
                }),
                set_name: nic.mac_address.as_ref().map(|_| nic.name.as_str()),
                dhcp4: false,
                dhcp6: false,
                addresses: vec![nic.cidr.as_str()],
                routes,
                nameservers,
            },
        );
    }
    let network_config = yaml(&NetworkConfig {
        version: 2,
        ethernets,
    })?;
    Ok(CloudInit {
        user_data,
        meta_data,
        network_config,
    })
}
