//! The state of `waddle_teleport_node` (one field per attribute; see `assert_roundtrip` in the
//! tests) and what is derived from it: the typed spec of `waddle_teleport`, the rendering and
//! the payload (the only place the secrets travel, redacted in `Debug`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use waddle_proxmox::cloud_config::CloudConfig;
use waddle_teleport::{
    AppSpec, GithubSpec, NodeSpec, Rendered, RoleSpec, Secret, TeamMapping as DomainMapping,
};

use super::{DEFAULT_CIDR, DEFAULT_VERSION};
use crate::resources::timeouts::TimeoutsModel;
use crate::resources::vm;
use crate::resources::vm::resource::lenient;

/// `private_nic`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PrivateNic {
    #[serde(default, deserialize_with = "lenient")]
    pub bridge: String,
    pub cidr: Option<String>,
    pub gateway: Option<String>,
}

/// One element of `sni_routes`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SniRoute {
    #[serde(default, deserialize_with = "lenient")]
    pub hostnames: Vec<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub backend: String,
    pub proxy_protocol: Option<bool>,
    pub check: Option<bool>,
}

/// One element of `github.teams_to_roles`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TeamMapping {
    #[serde(default, deserialize_with = "lenient")]
    pub organization: String,
    #[serde(default, deserialize_with = "lenient")]
    pub team: String,
    #[serde(default, deserialize_with = "lenient")]
    pub roles: Vec<String>,
}

/// `github`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Github {
    #[serde(default, deserialize_with = "lenient")]
    pub client_id: String,
    pub connector_name: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub teams_to_roles: Vec<TeamMapping>,
}

/// One value of `roles`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Role {
    pub logins: Option<Vec<String>>,
    pub kubernetes_groups: Option<Vec<String>>,
    pub kubernetes_users: Option<Vec<String>>,
    pub node_labels: Option<BTreeMap<String, String>>,
    pub app_labels: Option<BTreeMap<String, String>>,
    pub kubernetes_labels: Option<BTreeMap<String, String>>,
}

/// One element of `apps`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct App {
    #[serde(default, deserialize_with = "lenient")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient")]
    pub uri: String,
    pub public_addr: Option<String>,
    pub insecure_skip_verify: Option<bool>,
    pub labels: Option<BTreeMap<String, String>>,
}

/// The resource state. `Debug` redacts the secrets.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
pub struct TeleportNodeState {
    pub id: Option<String>,
    pub seed_iso: Option<String>,
    pub name: Option<String>,
    pub node: Option<String>,
    pub vmid: Option<u32>,
    pub storage: Option<String>,
    pub cores: Option<u32>,
    pub memory: Option<u64>,
    pub disk_size: Option<u32>,
    pub image_url: Option<String>,
    pub image_storage: Option<String>,
    pub dns_servers: Option<Vec<String>>,
    pub admin_user: Option<String>,
    pub ssh_authorized_keys: Option<Vec<String>>,
    pub private_nic: Option<PrivateNic>,
    pub teleport_version: Option<String>,
    pub domain: Option<String>,
    pub public_addr: Option<String>,
    pub cluster_name: Option<String>,
    pub acme_email: Option<String>,
    pub proxy_protocol: Option<bool>,
    pub sni_routes: Option<Vec<SniRoute>>,
    pub local_auth: Option<bool>,
    pub github: Option<Github>,
    pub github_client_secret: Option<String>,
    pub github_client_secret_wo: Option<String>,
    pub github_client_secret_wo_version: Option<i64>,
    pub roles: Option<BTreeMap<String, Role>>,
    pub ssh_labels: Option<BTreeMap<String, String>>,
    pub kubeconfig: Option<String>,
    pub apps: Option<Vec<App>>,
    pub proxmox_ui_uri: Option<String>,
    pub timeouts: Option<TimeoutsModel>,
    pub web_url: Option<String>,
    pub ip_address: Option<String>,
    pub teleport_yaml: Option<String>,
    pub config_hash: Option<String>,
}

fn redact(s: &Option<String>) -> Option<&'static str> {
    s.as_ref().map(|_| "***")
}

impl fmt::Debug for TeleportNodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeleportNodeState")
            .field("id", &self.id)
            .field("vmid", &self.vmid)
            .field("node", &self.node)
            .field("teleport_version", &self.teleport_version)
            .field("domain", &self.domain)
            .field("public_addr", &self.public_addr)
            .field("cluster_name", &self.cluster_name)
            .field("github", &self.github)
            .field("github_client_secret", &redact(&self.github_client_secret))
            .field(
                "github_client_secret_wo",
                &redact(&self.github_client_secret_wo),
            )
            .field("kubeconfig", &redact(&self.kubeconfig))
            .field("apps", &self.apps)
            .field("roles", &self.roles)
            .field("config_hash", &self.config_hash)
            .finish_non_exhaustive()
    }
}

/// The address of a CIDR (`10.10.0.2/24` -> `10.10.0.2`).
pub fn addr_of(cidr: &str) -> String {
    cidr.split('/').next().unwrap_or_default().to_string()
}

impl TeleportNodeState {
    /// The public host name: configured, else `teleport.<domain>`.
    pub fn public_addr(&self) -> String {
        self.public_addr
            .clone()
            .unwrap_or_else(|| format!("teleport.{}", self.domain.as_deref().unwrap_or_default()))
    }

    /// The node's IP address.
    pub fn ip(&self) -> String {
        addr_of(
            self.private_nic
                .as_ref()
                .and_then(|n| n.cidr.as_deref())
                .unwrap_or(DEFAULT_CIDR),
        )
    }

    /// The client secret, whichever attribute carries it.
    pub fn client_secret(&self) -> Option<Secret> {
        self.github_client_secret
            .as_ref()
            .or(self.github_client_secret_wo.as_ref())
            .filter(|s| !s.is_empty())
            .map(Secret::new)
    }

    /// The typed spec (defaults for what is unset).
    pub fn spec(&self) -> NodeSpec {
        let public_addr = self.public_addr();
        let gh = self.github.clone().unwrap_or(Github {
            client_id: String::new(),
            connector_name: None,
            teams_to_roles: Vec::new(),
        });
        NodeSpec {
            nodename: self
                .name
                .clone()
                .unwrap_or_else(|| super::DEFAULTS.name.into()),
            version: self
                .teleport_version
                .clone()
                .unwrap_or_else(|| DEFAULT_VERSION.into()),
            domain: self.domain.clone().unwrap_or_default(),
            cluster_name: self
                .cluster_name
                .clone()
                .unwrap_or_else(|| public_addr.clone()),
            public_addr,
            acme_email: self.acme_email.clone(),
            proxy_protocol: self.proxy_protocol.unwrap_or(false),
            local_auth: self.local_auth.unwrap_or(false),
            github: GithubSpec {
                client_id: gh.client_id,
                connector_name: gh.connector_name.unwrap_or_else(|| "github".into()),
                teams_to_roles: gh
                    .teams_to_roles
                    .into_iter()
                    .map(|m| DomainMapping {
                        organization: m.organization,
                        team: m.team,
                        roles: m.roles,
                    })
                    .collect(),
            },
            roles: self
                .roles
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, r)| {
                    (
                        k,
                        RoleSpec {
                            logins: r.logins.unwrap_or_default(),
                            kubernetes_groups: r.kubernetes_groups.unwrap_or_default(),
                            kubernetes_users: r.kubernetes_users.unwrap_or_default(),
                            node_labels: r.node_labels.unwrap_or_default(),
                            app_labels: r.app_labels.unwrap_or_default(),
                            kubernetes_labels: r.kubernetes_labels.unwrap_or_default(),
                        },
                    )
                })
                .collect(),
            ssh_labels: self.ssh_labels.clone().unwrap_or_default(),
            kubernetes: self.kubeconfig.as_deref().is_some_and(|k| !k.is_empty()),
            proxmox_ui_uri: match self.proxmox_ui_uri.as_deref() {
                None => Some(super::DEFAULT_PROXMOX_UI.into()),
                Some("") => None,
                Some(u) => Some(u.into()),
            },
            apps: self
                .apps
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|a| AppSpec {
                    name: a.name,
                    uri: a.uri,
                    public_addr: a.public_addr,
                    insecure_skip_verify: a.insecure_skip_verify.unwrap_or(false),
                    labels: a.labels.unwrap_or_default(),
                })
                .collect(),
        }
    }

    pub(super) fn set_rendered(&mut self, r: &Rendered) {
        self.teleport_yaml = Some(r.teleport_yaml.clone());
        self.config_hash = Some(r.config_hash.clone());
    }
}

/// What a planned state renders to, secrets included (redacted in `Debug`).
#[derive(Clone)]
pub struct TeleportPayload {
    pub rendered: Rendered,
    pub kubernetes: bool,
    /// The connector document with its client secret.
    pub connector: Secret,
    pub kubeconfig: Option<Secret>,
    /// For the credential check against GitHub.
    pub client_id: String,
    pub client_secret: Secret,
}

impl fmt::Debug for TeleportPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeleportPayload")
            .field("config_hash", &self.rendered.config_hash)
            .field("version", &self.rendered.version)
            .field("kubernetes", &self.kubernetes)
            .finish_non_exhaustive()
    }
}

/// Why a state cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error(transparent)]
    Invalid(#[from] waddle_teleport::ValidationErrors),
    #[error(transparent)]
    Render(#[from] waddle_teleport::RenderError),
    #[error("no GitHub client secret: set github_client_secret or github_client_secret_wo")]
    NoSecret,
}

/// Render a state into its payload.
pub fn payload_of(st: &TeleportNodeState) -> Result<TeleportPayload, PayloadError> {
    let spec = st.spec();
    waddle_teleport::validate(&spec)?;
    let secret = st.client_secret().ok_or(PayloadError::NoSecret)?;
    Ok(TeleportPayload {
        rendered: waddle_teleport::render(&spec)?,
        kubernetes: spec.kubernetes,
        connector: waddle_teleport::github_connector(&spec, &secret)?,
        kubeconfig: st
            .kubeconfig
            .as_ref()
            .filter(|k| !k.is_empty())
            .map(Secret::new),
        client_id: spec.github.client_id.clone(),
        client_secret: secret,
    })
}

/// A guest's cloud config with the Teleport payload (no secret) added.
pub fn with_payload(ci: CloudConfig, p: &TeleportPayload) -> CloudConfig {
    let seed = waddle_teleport::payload(&p.rendered, p.kubernetes);
    let files = (seed.files.into_iter())
        .map(|f| vm::lifecycle::payload_file(f.path, f.content, f.owner, f.permissions));
    vm::lifecycle::with_payload(ci, seed.packages, files, seed.commands)
}

/// Where the VM keeps the (non-secret) inputs it was built from, for an import.
pub const INPUTS_PATH: &str = "/etc/teleport/waddle-inputs.json";
