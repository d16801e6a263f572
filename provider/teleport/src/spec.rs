//! The typed inputs of a Teleport node (no Terraform types): what `teleport.yaml`, the GitHub
//! connector and the roles are rendered from.

use std::collections::BTreeMap;
use std::fmt;

/// Where Teleport keeps its data on the VM.
pub const DATA_DIR: &str = "/var/lib/teleport";
/// The diagnostics listener (`/readyz`, `/healthz`), loopback only.
pub const DIAG_ADDR: &str = "127.0.0.1:3000";
/// The proxy's web listener (the SNI proxy in front sends `teleport.<domain>` here).
pub const WEB_LISTEN_ADDR: &str = "0.0.0.0:3080";
/// The proxy's web port.
pub const WEB_PORT: u16 = 3080;
/// Teleport's configuration file.
pub const CONFIG_PATH: &str = "/etc/teleport.yaml";
/// The root-only kubeconfig the Kubernetes service reads.
pub const KUBECONFIG_PATH: &str = "/etc/teleport/kubeconfig";
/// Teleport's built-in roles, which `teams_to_roles` may name without defining them.
pub const BUILTIN_ROLES: [&str; 3] = ["access", "editor", "auditor"];
/// The name of the Proxmox UI app.
pub const PROXMOX_APP: &str = "proxmox";

/// A secret string: redacted in `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself (only to write it where it belongs).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One `teams_to_roles` entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TeamMapping {
    pub organization: String,
    pub team: String,
    pub roles: Vec<String>,
}

/// The GitHub SSO settings (the client secret is passed apart, see [`crate::render`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubSpec {
    pub client_id: String,
    pub connector_name: String,
    pub teams_to_roles: Vec<TeamMapping>,
}

/// The allow rules of one role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleSpec {
    pub logins: Vec<String>,
    pub kubernetes_groups: Vec<String>,
    pub kubernetes_users: Vec<String>,
    pub node_labels: BTreeMap<String, String>,
    pub app_labels: BTreeMap<String, String>,
    pub kubernetes_labels: BTreeMap<String, String>,
}

/// One app of the app service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    pub name: String,
    /// `http://`, `https://` or `tcp://`.
    pub uri: String,
    pub public_addr: Option<String>,
    pub insecure_skip_verify: bool,
    pub labels: BTreeMap<String, String>,
}

/// Everything a Teleport node is rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// `teleport.nodename` (the VM name).
    pub nodename: String,
    /// The pinned package version, `18.8.2` (no `v`).
    pub version: String,
    /// The platform domain, e.g. `waddle.social`.
    pub domain: String,
    /// The proxy's public host name (`teleport.<domain>`); the proxy listens for it on 443.
    pub public_addr: String,
    pub cluster_name: String,
    /// ACME on with this email; `None`: off.
    pub acme_email: Option<String>,
    /// Teleport expects a PROXY v2 header on every connection.
    pub proxy_protocol: bool,
    pub local_auth: bool,
    pub github: GithubSpec,
    pub roles: BTreeMap<String, RoleSpec>,
    pub ssh_labels: BTreeMap<String, String>,
    /// The Kubernetes service is on (a kubeconfig is delivered to [`KUBECONFIG_PATH`]).
    pub kubernetes: bool,
    /// The Proxmox UI app's URI (`None`: no such app).
    pub proxmox_ui_uri: Option<String>,
    /// The user's apps.
    pub apps: Vec<AppSpec>,
}

impl NodeSpec {
    /// The apps the app service serves: the Proxmox UI first, then the user's.
    pub fn all_apps(&self) -> Vec<AppSpec> {
        let mut out = Vec::new();
        if let Some(uri) = &self.proxmox_ui_uri {
            out.push(AppSpec {
                name: PROXMOX_APP.into(),
                uri: uri.clone(),
                public_addr: Some(format!("{PROXMOX_APP}.{}", self.domain)),
                insecure_skip_verify: true,
                labels: BTreeMap::new(),
            });
        }
        out.extend(self.apps.iter().cloned());
        out
    }

    /// `https://<public_addr>/v1/webapi/github/callback`.
    pub fn redirect_url(&self) -> String {
        format!("https://{}/v1/webapi/github/callback", self.public_addr)
    }

    /// `https://<public_addr>`.
    pub fn web_url(&self) -> String {
        format!("https://{}", self.public_addr)
    }
}

/// A Teleport release, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// `18.8.2` (no `v`, no pre-release).
    pub fn parse(s: &str) -> Option<Version> {
        let mut it = s.split('.');
        let mut num = || -> Option<u32> {
            let p = it.next()?;
            if p.is_empty() || p.len() > 6 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            if p.len() > 1 && p.starts_with('0') {
                return None;
            }
            p.parse().ok()
        };
        let v = Version {
            major: num()?,
            minor: num()?,
            patch: num()?,
        };
        it.next().is_none().then_some(v)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}
