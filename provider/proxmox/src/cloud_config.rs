//! The NoCloud seed of a waddle guest VM: `user-data` (`#cloud-config`), `meta-data` and
//! `network-config` (version 2), for any payload (packages, files, commands) on a Debian
//! cloud image configured through the QEMU guest agent.
//!
//! What every guest gets: its hostname, a stable instance id, one admin user (not `root`)
//! with SSH keys and passwordless sudo (password and root logins off), static addresses on
//! NICs matched by MAC (`set-name` keeps the name), DNS resolvers on the first NIC, and
//! `qemu-guest-agent` installed and started before the payload's commands run. Payload
//! files can be deferred until after package installation (`defer`), so a package's own
//! conffile never overwrites them.
//!
//! [`validate`] reports every error with its path (`nics[1].cidr`), for plan-time
//! diagnostics; [`render`] validates first.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;
use waddle_net::Cidr;

/// One step of a [`CiPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CiStep {
    Attr(String),
    Index(usize),
}

/// Where in a [`CloudConfig`] an error is, e.g. `nics[1].cidr`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CiPath(pub Vec<CiStep>);

impl CiPath {
    pub fn attr(name: &str) -> Self {
        CiPath(vec![CiStep::Attr(name.into())])
    }
    pub fn field(&self, name: &str) -> Self {
        let mut s = self.0.clone();
        s.push(CiStep::Attr(name.into()));
        CiPath(s)
    }
    pub fn index(&self, i: usize) -> Self {
        let mut s = self.0.clone();
        s.push(CiStep::Index(i));
        CiPath(s)
    }
    pub fn steps(&self) -> &[CiStep] {
        &self.0
    }
}

impl fmt::Display for CiPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                CiStep::Attr(a) if i == 0 => write!(f, "{a}")?,
                CiStep::Attr(a) => write!(f, ".{a}")?,
                CiStep::Index(x) => write!(f, "[{x}]")?,
            }
        }
        Ok(())
    }
}

/// One invalid input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CiError {
    pub path: CiPath,
    pub message: String,
}

/// All invalid inputs of a [`CloudConfig`] (never empty as an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct CiErrors(pub Vec<CiError>);

impl CiErrors {
    pub fn errors(&self) -> &[CiError] {
        &self.0
    }
}

/// Why a seed could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Invalid(#[from] CiErrors),
    #[error("cloud-init YAML serialization failed: {0}")]
    Yaml(String),
}

/// One network interface of the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestNic {
    /// netplan id; the interface name when no MAC is given (Proxmox virtio `net0` appears as
    /// `ens18`, `net1` as `ens19` in Debian cloud images), else the name it is renamed to.
    pub name: String,
    /// MAC address to match (`aa:bb:cc:dd:ee:ff`).
    pub mac_address: Option<String>,
    /// Static address in CIDR notation, e.g. `203.0.113.10/24`.
    pub cidr: String,
    /// Default gateway via this interface.
    pub gateway: Option<IpAddr>,
}

/// A file the seed writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFile {
    pub path: String,
    pub content: String,
    /// `user:group`.
    pub owner: String,
    /// Octal mode, e.g. `0644`.
    pub permissions: String,
    /// Written after packages are installed.
    pub defer: bool,
}

/// The inputs of a guest's NoCloud seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudConfig {
    /// Hostname (a DNS label or dotted name).
    pub hostname: String,
    /// NoCloud `instance-id`; stable for the VM's life (a new id re-runs first boot).
    pub instance_id: String,
    /// Admin login (not `root`) with the keys and passwordless sudo.
    pub admin_user: String,
    /// OpenSSH public keys (`ssh-ed25519 AAAA... comment`). At least one.
    pub ssh_authorized_keys: Vec<String>,
    /// NICs, in `netN` order; at least one.
    pub nics: Vec<GuestNic>,
    /// DNS resolvers (set on the first NIC).
    pub dns_servers: Vec<IpAddr>,
    /// Payload packages (`qemu-guest-agent` is added).
    pub packages: Vec<String>,
    /// Payload files.
    pub files: Vec<SeedFile>,
    /// Payload commands (argv), run after the guest agent is started.
    pub commands: Vec<Vec<String>>,
}

/// The guest agent every waddle guest runs (its `Guest` handle needs it).
pub const GUEST_AGENT_PACKAGE: &str = "qemu-guest-agent";

/// `aa:bb:cc:dd:ee:ff` (either case).
pub fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// RFC 1123 hostname.
pub fn is_hostname(s: &str) -> bool {
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

/// An OpenSSH public key line (`<type> <base64> [comment]`), one line.
pub fn is_ssh_public_key(s: &str) -> bool {
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

/// A login name usable by cloud-init and Debian (`[a-z_][a-z0-9_-]*`, at most 32) that is
/// not `root`.
pub fn is_admin_user(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 32
        && s != "root"
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Every invalid input, with its path.
pub fn validate(ci: &CloudConfig) -> Result<(), CiErrors> {
    let mut errs = Vec::new();
    let mut err = |path: CiPath, message: String| errs.push(CiError { path, message });
    if !is_hostname(&ci.hostname) {
        err(
            CiPath::attr("hostname"),
            format!("`{}` is not a valid hostname", ci.hostname),
        );
    }
    if ci.instance_id.is_empty()
        || !ci
            .instance_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        err(
            CiPath::attr("instance_id"),
            format!(
                "instance id `{}` must be non-empty letters, digits, `-`, `_`, `.`",
                ci.instance_id
            ),
        );
    }
    if !is_admin_user(&ci.admin_user) {
        err(
            CiPath::attr("admin_user"),
            format!(
                "invalid name `{}`: use lowercase letters, digits, `_` and `-`, starting with a letter or `_`",
                ci.admin_user
            ),
        );
    }
    if ci.ssh_authorized_keys.is_empty() {
        err(
            CiPath::attr("ssh_authorized_keys"),
            "at least one SSH public key is required (password login is disabled)".into(),
        );
    }
    for (i, k) in ci.ssh_authorized_keys.iter().enumerate() {
        if !is_ssh_public_key(k) {
            err(
                CiPath::attr("ssh_authorized_keys").index(i),
                "not an OpenSSH public key line (`<type> <base64> [comment]`)".into(),
            );
        }
    }
    if ci.nics.is_empty() {
        err(CiPath::attr("nics"), "at least one NIC is required".into());
    }
    for (i, nic) in ci.nics.iter().enumerate() {
        let p = CiPath::attr("nics").index(i);
        if nic.name.is_empty()
            || nic.name.len() > 15
            || !nic
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            err(
                p.field("name"),
                format!("`{}` is not a valid interface name", nic.name),
            );
        }
        if let Some(mac) = &nic.mac_address {
            if !is_mac(mac) {
                err(
                    p.field("mac_address"),
                    format!("`{mac}` is not a MAC address (aa:bb:cc:dd:ee:ff)"),
                );
            }
        }
        match Cidr::parse(&nic.cidr) {
            Err(_) => err(
                p.field("cidr"),
                format!("`{}` is not an address in CIDR notation", nic.cidr),
            ),
            Ok(Cidr { addr: ip, .. }) => {
                if let Some(gw) = nic.gateway.filter(|gw| gw.is_ipv4() != ip.is_ipv4()) {
                    err(
                        p.field("gateway"),
                        format!("gateway {gw} is not of the address family of {}", nic.cidr),
                    );
                }
            }
        }
        if ci.nics[..i].iter().any(|n| n.name == nic.name) {
            err(p.field("name"), "two NICs have the same name".to_string());
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(CiErrors(errs))
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
struct WriteFile<'a> {
    path: &'a str,
    content: &'a str,
    owner: &'a str,
    permissions: &'a str,
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
    packages: Vec<&'a str>,
    write_files: Vec<WriteFile<'a>>,
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

fn yaml<T: Serialize>(v: &T) -> Result<String, SeedError> {
    serde_yaml_ng::to_string(v).map_err(|e| SeedError::Yaml(e.to_string()))
}

/// Render the seed files (validated first).
pub fn render(ci: &CloudConfig) -> Result<crate::nocloud::NoCloudSeed, SeedError> {
    validate(ci)?;
    let mut packages: Vec<&str> = ci.packages.iter().map(String::as_str).collect();
    if !packages.contains(&GUEST_AGENT_PACKAGE) {
        packages.push(GUEST_AGENT_PACKAGE);
    }
    let mut runcmd = vec![vec![
        "systemctl".to_string(),
        "start".to_string(),
        GUEST_AGENT_PACKAGE.to_string(),
    ]];
    runcmd.extend(ci.commands.iter().cloned());
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
        packages,
        write_files: ci
            .files
            .iter()
            .map(|f| WriteFile {
                path: &f.path,
                content: &f.content,
                owner: &f.owner,
                permissions: &f.permissions,
                defer: f.defer,
            })
            .collect(),
        runcmd,
    };
    let user_data = format!("#cloud-config\n{}", yaml(&ud)?);
    let meta_data = yaml(&MetaData {
        instance_id: &ci.instance_id,
        local_hostname: &ci.hostname,
    })?;
    let mut ethernets = std::collections::BTreeMap::new();
    for (i, nic) in ci.nics.iter().enumerate() {
        let routes = nic
            .gateway
            .map(|gw| {
                vec![Route {
                    to: if gw.is_ipv4() { "0.0.0.0/0" } else { "::/0" },
                    via: gw.to_string(),
                }]
            })
            .unwrap_or_default();
        let nameservers = (i == 0 && !ci.dns_servers.is_empty()).then(|| Nameservers {
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
    Ok(crate::nocloud::NoCloudSeed {
        user_data,
        meta_data,
        network_config: Some(network_config),
        vendor_data: None,
    })
}
