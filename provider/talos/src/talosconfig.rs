//! talosctl client configuration (`talosconfig`).

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::secrets::{CertAndKey, SecretsBundle};

/// One talosconfig context. `ca`, `crt`, `key` are PEM text (base64-encoded on the wire).
#[derive(Clone, PartialEq, Eq)]
pub struct Context {
    /// API endpoints talosctl connects to.
    pub endpoints: Vec<String>,
    /// Default target nodes.
    pub nodes: Vec<String>,
    /// OS CA certificate, PEM.
    pub ca: String,
    /// Client certificate, PEM.
    pub crt: String,
    /// Client key, PEM.
    pub key: String,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("endpoints", &self.endpoints)
            .field("nodes", &self.nodes)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A parsed talosconfig.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TalosConfig {
    /// Current context name.
    pub context: String,
    /// Contexts by name.
    pub contexts: BTreeMap<String, Context>,
}

#[derive(Serialize, Deserialize)]
struct WireConfig {
    context: String,
    contexts: BTreeMap<String, WireContext>,
}

#[derive(Serialize, Deserialize)]
struct WireContext {
    #[serde(default)]
    endpoints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    nodes: Vec<String>,
    #[serde(default)]
    ca: String,
    #[serde(default)]
    crt: String,
    #[serde(default)]
    key: String,
}

/// talosconfig errors.
#[derive(Debug, thiserror::Error)]
pub enum TalosConfigError {
    /// Not YAML of the right shape.
    #[error("talosconfig is invalid: {0}")]
    Invalid(String),
}

fn dec(field: &str, v: &str) -> Result<String, TalosConfigError> {
    let b = STANDARD
        .decode(v.trim())
        .map_err(|_| TalosConfigError::Invalid(format!("{field} is not base64")))?;
    String::from_utf8(b).map_err(|_| TalosConfigError::Invalid(format!("{field} is not PEM text")))
}

impl TalosConfig {
    /// A single-context talosconfig for a cluster.
    pub fn new(
        context: &str,
        endpoints: Vec<String>,
        nodes: Vec<String>,
        secrets: &SecretsBundle,
        client: &CertAndKey,
    ) -> Self {
        let mut contexts = BTreeMap::new();
        contexts.insert(
            context.to_string(),
            Context {
                endpoints,
                nodes,
                ca: secrets.os_ca.crt.clone(),
                crt: client.crt.clone(),
                key: client.key.clone(),
            },
        );
        TalosConfig {
            context: context.to_string(),
            contexts,
        }
    }

    /// Serialises in talosctl's format.
    pub fn to_yaml(&self) -> Result<String, TalosConfigError> {
        let w = WireConfig {
            context: self.context.clone(),
            contexts: self
                .contexts
                .iter()
                .map(|(k, c)| {
                    (
                        k.clone(),
                        WireContext {
                            endpoints: c.endpoints.clone(),
                            nodes: c.nodes.clone(),
                            ca: STANDARD.encode(c.ca.as_bytes()),
                            crt: STANDARD.encode(c.crt.as_bytes()),
                            key: STANDARD.encode(c.key.as_bytes()),
                        },
                    )
                })
                .collect(),
        };
        serde_yaml_ng::to_string(&w).map_err(|e| TalosConfigError::Invalid(e.to_string()))
    }

    /// Parses a talosconfig.
    pub fn from_yaml(text: &str) -> Result<Self, TalosConfigError> {
        let w: WireConfig =
            serde_yaml_ng::from_str(text).map_err(|e| TalosConfigError::Invalid(e.to_string()))?;
        let mut contexts = BTreeMap::new();
        for (k, c) in w.contexts {
            contexts.insert(
                k.clone(),
                Context {
                    endpoints: c.endpoints,
                    nodes: c.nodes,
                    ca: dec(&format!("contexts.{k}.ca"), &c.ca)?,
                    crt: dec(&format!("contexts.{k}.crt"), &c.crt)?,
                    key: dec(&format!("contexts.{k}.key"), &c.key)?,
                },
            );
        }
        if !contexts.contains_key(&w.context) {
            return Err(TalosConfigError::Invalid(format!(
                "current context {:?} is not defined",
                w.context
            )));
        }
        Ok(TalosConfig {
            context: w.context,
            contexts,
        })
    }
}

/// Renders a talosconfig for `cluster_name` with the given endpoints/nodes and client
/// certificate (see [`crate::secrets::issue_client_certificate`]).
pub fn talosconfig(
    cluster_name: &str,
    endpoints: &[String],
    nodes: &[String],
    secrets: &SecretsBundle,
    client: &CertAndKey,
) -> Result<String, TalosConfigError> {
    TalosConfig::new(
        cluster_name,
        endpoints.to_vec(),
        nodes.to_vec(),
        secrets,
        client,
    )
    .to_yaml()
}
