//! Rendering: `/etc/teleport.yaml` (`version: v3`), the GitHub connector (`kind: github`,
//! `version: v3`) and role (`kind: role`, `version: v7`) documents for `tctl create -f`, and
//! the drift hash over what is live.
//!
//! Key names follow Teleport 18's configuration reference
//! (<https://goteleport.com/docs/reference/deployment/config/>) and its file-config source
//! (`lib/config/fileconf.go` in gravitational/teleport); the documents follow the GitHub
//! connector and role references (`types.GithubConnectorSpecV3`, `types.RoleSpecV6`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::spec::{
    AppSpec, NodeSpec, RoleSpec, Secret, TeamMapping, DATA_DIR, DIAG_ADDR, KUBECONFIG_PATH,
    WEB_LISTEN_ADDR,
};

/// Why a document could not be rendered or read back.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("YAML serialization failed: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error("JSON serialization failed: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the live {what} is not what `tctl get --format=json` returns: {detail}")]
    Live { what: String, detail: String },
}

#[derive(Serialize)]
struct FileConfig {
    version: &'static str,
    teleport: Global,
    auth_service: AuthService,
    proxy_service: ProxyService,
    ssh_service: SshService,
    #[serde(skip_serializing_if = "Option::is_none")]
    kubernetes_service: Option<KubeService>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_service: Option<AppService>,
}

#[derive(Serialize)]
struct Global {
    nodename: String,
    data_dir: &'static str,
    diag_addr: &'static str,
    log: Log,
}

#[derive(Serialize)]
struct Log {
    output: &'static str,
    severity: &'static str,
    format: LogFormat,
}

#[derive(Serialize)]
struct LogFormat {
    output: &'static str,
}

#[derive(Serialize)]
struct AuthService {
    enabled: bool,
    cluster_name: String,
    proxy_listener_mode: &'static str,
    authentication: Authentication,
}

#[derive(Serialize)]
struct Authentication {
    #[serde(rename = "type")]
    kind: &'static str,
    connector_name: String,
    local_auth: bool,
}

#[derive(Serialize)]
struct ProxyService {
    enabled: bool,
    web_listen_addr: &'static str,
    public_addr: String,
    proxy_protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    acme: Option<Acme>,
}

#[derive(Serialize)]
struct Acme {
    enabled: bool,
    email: String,
}

#[derive(Serialize)]
struct SshService {
    enabled: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct KubeService {
    enabled: bool,
    kubeconfig_file: &'static str,
}

#[derive(Serialize)]
struct AppService {
    enabled: bool,
    apps: Vec<App>,
}

#[derive(Serialize)]
struct App {
    name: String,
    uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_addr: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    insecure_skip_verify: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
}

impl From<AppSpec> for App {
    fn from(a: AppSpec) -> Self {
        App {
            name: a.name,
            uri: a.uri,
            public_addr: a.public_addr,
            insecure_skip_verify: a.insecure_skip_verify,
            labels: a.labels,
        }
    }
}

/// `/etc/teleport.yaml` of a spec (holds no secret: the kubeconfig is a file it names).
pub fn teleport_yaml(s: &NodeSpec) -> Result<String, RenderError> {
    let apps: Vec<App> = s.all_apps().into_iter().map(App::from).collect();
    let fc = FileConfig {
        version: "v3",
        teleport: Global {
            nodename: s.nodename.clone(),
            data_dir: DATA_DIR,
            diag_addr: DIAG_ADDR,
            log: Log {
                output: "stderr",
                severity: "INFO",
                format: LogFormat { output: "text" },
            },
        },
        auth_service: AuthService {
            enabled: true,
            cluster_name: s.cluster_name.clone(),
            proxy_listener_mode: "multiplex",
            authentication: Authentication {
                kind: "github",
                connector_name: s.github.connector_name.clone(),
                local_auth: s.local_auth,
            },
        },
        proxy_service: ProxyService {
            enabled: true,
            web_listen_addr: WEB_LISTEN_ADDR,
            public_addr: format!("{}:443", s.public_addr),
            proxy_protocol: if s.proxy_protocol { "on" } else { "off" },
            acme: s.acme_email.as_ref().map(|e| Acme {
                enabled: true,
                email: e.clone(),
            }),
        },
        ssh_service: SshService {
            enabled: true,
            labels: s.ssh_labels.clone(),
        },
        kubernetes_service: s.kubernetes.then_some(KubeService {
            enabled: true,
            kubeconfig_file: KUBECONFIG_PATH,
        }),
        app_service: (!apps.is_empty()).then_some(AppService {
            enabled: true,
            apps,
        }),
    };
    Ok(serde_yaml_ng::to_string(&fc)?)
}

/// `metadata` of a resource document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
}

/// A GitHub connector document (the fields waddle manages; others are ignored on read-back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorDoc {
    pub kind: String,
    pub version: String,
    pub metadata: Metadata,
    pub spec: ConnectorSpec,
}

/// `spec` of a [`ConnectorDoc`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorSpec {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub display: String,
    pub redirect_url: String,
    #[serde(default)]
    pub teams_to_roles: Vec<TeamMapping>,
}

impl std::fmt::Debug for ConnectorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorSpec")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("display", &self.display)
            .field("redirect_url", &self.redirect_url)
            .field("teams_to_roles", &self.teams_to_roles)
            .finish()
    }
}

fn connector_doc(s: &NodeSpec, secret: Option<&Secret>) -> ConnectorDoc {
    ConnectorDoc {
        kind: "github".into(),
        version: "v3".into(),
        metadata: Metadata {
            name: s.github.connector_name.clone(),
        },
        spec: ConnectorSpec {
            client_id: s.github.client_id.clone(),
            client_secret: secret.map(|x| x.expose().to_string()),
            display: "GitHub".into(),
            redirect_url: s.redirect_url(),
            teams_to_roles: s.github.teams_to_roles.clone(),
        },
    }
}

/// The connector document for `tctl create -f` (carries the client secret: write it only to
/// a root-only file).
pub fn github_connector(s: &NodeSpec, secret: &Secret) -> Result<Secret, RenderError> {
    Ok(Secret::new(serde_yaml_ng::to_string(&connector_doc(
        s,
        Some(secret),
    ))?))
}

/// A label value as Teleport prints it: one string or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelValue {
    One(String),
    Many(Vec<String>),
}

impl LabelValue {
    fn list(&self) -> Vec<String> {
        match self {
            LabelValue::One(s) => vec![s.clone()],
            LabelValue::Many(v) => v.clone(),
        }
    }
}

/// A role's `spec.allow` (the fields waddle manages).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleAllow {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logins: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubernetes_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubernetes_users: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_labels: BTreeMap<String, LabelValue>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub app_labels: BTreeMap<String, LabelValue>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kubernetes_labels: BTreeMap<String, LabelValue>,
}

/// `spec` of a [`RoleDoc`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDocSpec {
    #[serde(default)]
    pub allow: RoleAllow,
}

/// A role document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDoc {
    pub kind: String,
    pub version: String,
    pub metadata: Metadata,
    pub spec: RoleDocSpec,
}

fn labels(m: &BTreeMap<String, String>) -> BTreeMap<String, LabelValue> {
    m.iter()
        .map(|(k, v)| (k.clone(), LabelValue::One(v.clone())))
        .collect()
}

fn role_doc(name: &str, r: &RoleSpec) -> RoleDoc {
    RoleDoc {
        kind: "role".into(),
        version: "v7".into(),
        metadata: Metadata { name: name.into() },
        spec: RoleDocSpec {
            allow: RoleAllow {
                logins: r.logins.clone(),
                kubernetes_groups: r.kubernetes_groups.clone(),
                kubernetes_users: r.kubernetes_users.clone(),
                node_labels: labels(&r.node_labels),
                app_labels: labels(&r.app_labels),
                kubernetes_labels: labels(&r.kubernetes_labels),
            },
        },
    }
}

/// The role documents (`---`-separated) for `tctl create -f`; empty when there is none.
pub fn roles_yaml(s: &NodeSpec) -> Result<String, RenderError> {
    let mut out = String::new();
    for (name, r) in &s.roles {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&role_doc(name, r))?);
    }
    Ok(out)
}

/// The connector as waddle compares it (no secret: `tctl get` never prints it).
pub fn connector_canonical(doc: &ConnectorDoc) -> Result<String, RenderError> {
    let mut d = doc.clone();
    d.spec.client_secret = None;
    Ok(serde_json::to_string(&d)?)
}

/// A role as waddle compares it (labels as lists).
pub fn role_canonical(doc: &RoleDoc) -> Result<String, RenderError> {
    let mut d = doc.clone();
    for m in [
        &mut d.spec.allow.node_labels,
        &mut d.spec.allow.app_labels,
        &mut d.spec.allow.kubernetes_labels,
    ] {
        for v in m.values_mut() {
            *v = LabelValue::Many(v.list());
        }
    }
    Ok(serde_json::to_string(&d)?)
}

/// The first resource of `tctl get <kind>/<name> --format=json` (a JSON array).
pub fn parse_live<T: serde::de::DeserializeOwned>(
    what: &str,
    json: &str,
) -> Result<T, RenderError> {
    let live = |detail: String| RenderError::Live {
        what: what.into(),
        detail,
    };
    let mut docs: Vec<T> = serde_json::from_str(json).map_err(|e| live(e.to_string()))?;
    if docs.is_empty() {
        return Err(live("no resource".into()));
    }
    Ok(docs.remove(0))
}

/// What the drift hash covers, each part in its compared form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashInputs {
    pub teleport_yaml: String,
    /// `None`: no connector (a difference).
    pub connector: Option<String>,
    /// Role name -> canonical document (`None`: missing).
    pub roles: BTreeMap<String, Option<String>>,
}

/// SHA-256 over teleport.yaml, the connector and the roles as compared.
pub fn config_hash(h: &HashInputs) -> String {
    let mut d = Sha256::new();
    d.update(b"teleport.yaml\0");
    d.update(h.teleport_yaml.as_bytes());
    d.update(b"\0connector\0");
    d.update(h.connector.as_deref().unwrap_or("<missing>").as_bytes());
    for (name, doc) in &h.roles {
        d.update(b"\0role\0");
        d.update(name.as_bytes());
        d.update(b"\0");
        d.update(doc.as_deref().unwrap_or("<missing>").as_bytes());
    }
    hex::encode(d.finalize())
}

/// The hash inputs a spec expects to find live.
pub fn expected(s: &NodeSpec) -> Result<HashInputs, RenderError> {
    let mut roles = BTreeMap::new();
    for (name, r) in &s.roles {
        roles.insert(name.clone(), Some(role_canonical(&role_doc(name, r))?));
    }
    Ok(HashInputs {
        teleport_yaml: teleport_yaml(s)?,
        connector: Some(connector_canonical(&connector_doc(s, None))?),
        roles,
    })
}

/// Everything the node is rendered to (no secret in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub teleport_yaml: String,
    pub roles_yaml: String,
    pub role_names: Vec<String>,
    pub connector_name: String,
    pub config_hash: String,
    pub version: String,
}

/// Render a spec (validate it first).
pub fn render(s: &NodeSpec) -> Result<Rendered, RenderError> {
    let e = expected(s)?;
    Ok(Rendered {
        teleport_yaml: e.teleport_yaml.clone(),
        roles_yaml: roles_yaml(s)?,
        role_names: s.roles.keys().cloned().collect(),
        connector_name: s.github.connector_name.clone(),
        config_hash: config_hash(&e),
        version: s.version.clone(),
    })
}
