//! Which Proxmox VE an acceptance test runs against, chosen once per test.
//!
//! * [`PveTarget::Emulated`] (the default): the in-process PVE emulator, started on the test's
//!   own 127.x address with the test's [`EmulatorConfig`].
//! * [`PveTarget::Real`]: a real Proxmox VE 9, when `PROXMOX_VE_ENDPOINT`,
//!   `PROXMOX_VE_API_TOKEN` and `PROXMOX_VE_ACC_NODE` are all set in the test process's
//!   environment (`PROXMOX_VE_CA_CERT`, optional, is PEM text or a path to a PEM file). Setting
//!   only some of them is an error naming the missing ones. See `docs/guides/nested-proxmox.md`.
//!
//! Tests check what they can through the Proxmox API ([`PveTarget::client`] /
//! [`PveTarget::api`]), which works in both modes. Steps that need emulator internals (fault
//! injection, guest files, request logs) use [`PveTarget::emulator_only`] or
//! [`PveTarget::skip_unless_emulated`]: in Real mode they are skipped with a visible
//! [`notice`] naming the step and the reason, never silently.

use std::sync::Arc;

use serde_json::Value;

use super::{notice, TestStep};
use crate::pve::{EmulatorConfig, PveEmulator};

/// The variables that select Real mode (all three, or none).
pub const REAL_VARS: [&str; 3] = [
    "PROXMOX_VE_ENDPOINT",
    "PROXMOX_VE_API_TOKEN",
    "PROXMOX_VE_ACC_NODE",
];

/// The `required_providers` block and a `provider "waddle"` block for the PVE API at
/// `endpoint` with `api_token` and `node`, pinning the CA in `pve-ca.pem` beside the
/// configuration when `ca` (see [`PveTarget::step`]): the head of a CLI test's configuration.
pub fn provider_hcl(endpoint: &str, api_token: &str, node: &str, ca: bool) -> String {
    let ca = if ca {
        "\n  ca_cert   = file(\"${path.module}/pve-ca.pem\")"
    } else {
        ""
    };
    format!(
        r#"
terraform {{
  required_providers {{
    waddle = {{
      source = "waddle-social/waddle"
    }}
  }}
}}

provider "waddle" {{
  endpoint  = "{endpoint}"
  api_token = "{api_token}"{ca}
  node      = "{node}"
}}
"#
    )
}

/// Errors choosing or using a target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "real-PVE acceptance mode needs PROXMOX_VE_ENDPOINT, PROXMOX_VE_API_TOKEN and PROXMOX_VE_ACC_NODE together; missing: {}",
        .0.join(", ")
    )]
    Incomplete(Vec<&'static str>),
    #[error("PROXMOX_VE_CA_CERT: {0}")]
    CaCert(String),
    #[error("starting the PVE emulator: {0}")]
    Emulator(String),
    #[error("Proxmox client: {0}")]
    Client(#[from] waddle_proxmox::Error),
}

/// The Proxmox VE a test talks to.
pub enum PveTarget {
    /// The in-process emulator (started by [`PveTarget::select`]).
    Emulated(Arc<PveEmulator>),
    /// A real Proxmox VE reached through its API only.
    Real {
        endpoint: String,
        /// `USER@REALM!TOKENID=SECRET` (redacted in `Debug`).
        api_token: String,
        node: String,
        /// The cluster CA as PEM text, if given.
        ca_cert: Option<String>,
    },
}

impl std::fmt::Debug for PveTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PveTarget::Emulated(e) => f
                .debug_struct("Emulated")
                .field("endpoint", &e.endpoint())
                .finish_non_exhaustive(),
            PveTarget::Real {
                endpoint,
                api_token,
                node,
                ca_cert,
            } => f
                .debug_struct("Real")
                .field("endpoint", endpoint)
                .field(
                    "api_token",
                    &format!(
                        "{}=<redacted>",
                        api_token.split_once('=').map_or("", |(id, _)| id)
                    ),
                )
                .field("node", node)
                .field("ca_cert", &ca_cert.as_ref().map(|_| "<pem>"))
                .finish(),
        }
    }
}

/// Reads `PROXMOX_VE_CA_CERT`: PEM text as is, anything else is a path to a PEM file.
fn ca_from(value: &str) -> Result<String, TargetError> {
    if value.contains("-----BEGIN") {
        return Ok(value.to_string());
    }
    let pem =
        std::fs::read_to_string(value).map_err(|e| TargetError::CaCert(format!("{value}: {e}")))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(TargetError::CaCert(format!(
            "{value} holds no PEM certificate"
        )));
    }
    Ok(pem)
}

impl PveTarget {
    /// Real mode from variables looked up with `var` (`None` when none of [`REAL_VARS`] is set).
    pub fn real_from(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<PveTarget>, TargetError> {
        let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let values: Vec<Option<String>> = REAL_VARS.iter().map(|k| get(k)).collect();
        if values.iter().all(Option::is_none) {
            return Ok(None);
        }
        let missing: Vec<&'static str> = REAL_VARS
            .iter()
            .zip(&values)
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| *k)
            .collect();
        if !missing.is_empty() {
            return Err(TargetError::Incomplete(missing));
        }
        let mut it = values.into_iter().flatten();
        let (endpoint, api_token, node) = match (it.next(), it.next(), it.next()) {
            (Some(e), Some(t), Some(n)) => (e, t, n),
            _ => return Err(TargetError::Incomplete(REAL_VARS.to_vec())),
        };
        let ca_cert = match get("PROXMOX_VE_CA_CERT") {
            Some(v) => Some(ca_from(&v)?),
            None => None,
        };
        Ok(Some(PveTarget::real(endpoint, api_token, node, ca_cert)))
    }

    /// A Real target from explicit values.
    pub fn real(
        endpoint: impl Into<String>,
        api_token: impl Into<String>,
        node: impl Into<String>,
        ca_cert: Option<String>,
    ) -> PveTarget {
        PveTarget::Real {
            endpoint: endpoint.into(),
            api_token: api_token.into(),
            node: node.into(),
            ca_cert,
        }
    }

    /// Chooses the target for one test: Real when the process environment selects it (the
    /// emulator config is then unused), otherwise starts the emulator with `config` on `rt`.
    /// Panics (failing the test loudly) when the Real variables are incomplete.
    pub fn select(rt: &tokio::runtime::Runtime, config: EmulatorConfig) -> PveTarget {
        match Self::try_select(rt, config) {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`PveTarget::select`] without the panic.
    pub fn try_select(
        rt: &tokio::runtime::Runtime,
        config: EmulatorConfig,
    ) -> Result<PveTarget, TargetError> {
        if let Some(real) = Self::real_from(|k| std::env::var(k).ok())? {
            notice(&format!(
                "running against a REAL Proxmox VE at {} (node {})",
                real.endpoint(),
                real.node()
            ));
            return Ok(real);
        }
        let emu = rt
            .block_on(PveEmulator::start(config))
            .map_err(|e| TargetError::Emulator(e.to_string()))?;
        Ok(PveTarget::Emulated(Arc::new(emu)))
    }

    /// True in Real mode.
    pub fn is_real(&self) -> bool {
        matches!(self, PveTarget::Real { .. })
    }

    pub fn endpoint(&self) -> String {
        match self {
            PveTarget::Emulated(e) => e.endpoint().to_string(),
            PveTarget::Real { endpoint, .. } => endpoint.clone(),
        }
    }

    pub fn api_token(&self) -> String {
        match self {
            PveTarget::Emulated(e) => e.api_token().unwrap_or_default(),
            PveTarget::Real { api_token, .. } => api_token.clone(),
        }
    }

    pub fn node(&self) -> String {
        match self {
            PveTarget::Emulated(e) => e.node().to_string(),
            PveTarget::Real { node, .. } => node.clone(),
        }
    }

    /// The CA to pin (the emulator's always; a real PVE's only when given).
    pub fn ca_pem(&self) -> Option<String> {
        match self {
            PveTarget::Emulated(e) => Some(e.ca_pem().to_string()),
            PveTarget::Real { ca_cert, .. } => ca_cert.clone(),
        }
    }

    /// The `PROXMOX_VE_*` variables for the CLI (the harness strips inherited ones).
    pub fn cli_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("PROXMOX_VE_ENDPOINT".to_string(), self.endpoint()),
            ("PROXMOX_VE_API_TOKEN".to_string(), self.api_token()),
            ("PROXMOX_VE_NODE".to_string(), self.node()),
        ];
        if let Some(ca) = self.ca_pem() {
            env.push(("PROXMOX_VE_CA_CERT".to_string(), ca));
        }
        env
    }

    /// [`provider_hcl`] for this target (its CA pinned when it has one).
    pub fn provider_hcl(&self) -> String {
        self.provider_hcl_with_token(&self.api_token())
    }

    /// [`PveTarget::provider_hcl`] with another API token.
    pub fn provider_hcl_with_token(&self, api_token: &str) -> String {
        provider_hcl(
            &self.endpoint(),
            api_token,
            &self.node(),
            self.ca_pem().is_some(),
        )
    }

    /// A config step of `hcl` with this target's CA as `pve-ca.pem` (when it has one).
    pub fn step(&self, hcl: impl Into<String>) -> TestStep {
        let step = TestStep::config(hcl);
        match self.ca_pem() {
            Some(ca) => step.file("pve-ca.pem", ca),
            None => step,
        }
    }

    /// The emulator, if this is one.
    pub fn emulator(&self) -> Option<&PveEmulator> {
        match self {
            PveTarget::Emulated(e) => Some(e),
            PveTarget::Real { .. } => None,
        }
    }

    /// The emulator as a shareable handle, if this is one.
    pub fn emulator_arc(&self) -> Option<Arc<PveEmulator>> {
        match self {
            PveTarget::Emulated(e) => Some(e.clone()),
            PveTarget::Real { .. } => None,
        }
    }

    /// The emulator for a step/check that needs its internals; in Real mode prints
    /// `SKIPPED <what>: <why>` and returns `None`.
    pub fn emulator_only(&self, what: &str, why: &str) -> Option<&PveEmulator> {
        if self.emulator().is_none() {
            notice(&format!("SKIPPED {what} (real PVE): {why}"));
        }
        self.emulator()
    }

    /// For `TestStep::skip_if`/`TestCase::skip_if`: `Some(reason)` in Real mode.
    pub fn skip_unless_emulated(&self, why: &str) -> Option<String> {
        self.is_real()
            .then(|| format!("needs the in-process PVE emulator: {why}"))
    }

    /// A Proxmox API client for black-box checks (no retries on top of the client's own).
    pub fn client(&self) -> Result<waddle_proxmox::Client, TargetError> {
        let auth = waddle_proxmox::Auth::api_token(&self.api_token())?;
        let mut cfg = waddle_proxmox::ClientConfig::new(self.endpoint(), auth);
        cfg.ca_cert_pem = self.ca_pem();
        Ok(waddle_proxmox::Client::new(cfg)?)
    }

    /// A blocking wrapper around [`PveTarget::client`] for harness checks (which run outside
    /// the runtime).
    pub fn api(&self, rt: tokio::runtime::Handle) -> Result<Api, TargetError> {
        Ok(Api {
            rt,
            client: self.client()?,
            node: self.node(),
        })
    }
}

/// Blocking Proxmox API access for checks; errors are strings for `check::func`.
#[derive(Clone)]
pub struct Api {
    rt: tokio::runtime::Handle,
    client: waddle_proxmox::Client,
    node: String,
}

fn params(form: &[(&str, &str)]) -> waddle_proxmox::Params {
    form.iter()
        .fold(waddle_proxmox::Params::new(), |p, (k, v)| p.str(k, *v))
}

impl Api {
    /// The node tests place VMs on.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        let p = params(query);
        self.rt
            .block_on(self.client.get::<Value>(path, &p))
            .map_err(|e| e.to_string())
    }

    pub fn put(&self, path: &str, form: &[(&str, &str)]) -> Result<Value, String> {
        let p = params(form);
        self.rt
            .block_on(self.client.put(path, &p))
            .map_err(|e| e.to_string())
    }

    pub fn post(&self, path: &str, form: &[(&str, &str)]) -> Result<Value, String> {
        let p = params(form);
        self.rt
            .block_on(self.client.post(path, &p))
            .map_err(|e| e.to_string())
    }

    /// Makes sure an isolated Linux bridge `iface` exists on the node (created and applied
    /// through the API when missing, as an operator would prepare a real PVE). Returns
    /// whether it was created.
    pub fn ensure_bridge(&self, iface: &str) -> Result<bool, String> {
        if self
            .get(&format!("/nodes/{}/network/{iface}", self.node), &[])
            .is_ok()
        {
            return Ok(false);
        }
        let spec = waddle_proxmox::BridgeSpec {
            iface: iface.to_string(),
            cidr: None,
            gateway: None,
            autostart: true,
            bridge_ports: Vec::new(),
            vlan_aware: false,
            comments: Some("waddle acceptance tests".into()),
            mtu: None,
        };
        self.rt
            .block_on(async {
                self.client.create_bridge(&self.node, &spec).await?;
                self.client.apply_network(&self.node).await
            })
            .map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// A GET returning a list (`[]` for `null`).
    pub fn list(&self, path: &str, query: &[(&str, &str)]) -> Result<Vec<Value>, String> {
        match self.get(path, query)? {
            Value::Array(a) => Ok(a),
            Value::Null => Ok(Vec::new()),
            other => Err(format!("GET {path}: expected a list, got {other}")),
        }
    }

    /// VM ids on the node.
    pub fn vmids(&self) -> Result<Vec<u32>, String> {
        let vms = self.list(&format!("/nodes/{}/qemu", self.node), &[])?;
        Ok(vms
            .iter()
            .filter_map(|v| v.get("vmid").and_then(Value::as_u64))
            .filter_map(|v| u32::try_from(v).ok())
            .collect())
    }

    /// A VM's current config as `key -> string`.
    pub fn vm_config(&self, vmid: u32) -> Result<serde_json::Map<String, Value>, String> {
        match self.get(&format!("/nodes/{}/qemu/{vmid}/config", self.node), &[])? {
            Value::Object(m) => Ok(m),
            other => Err(format!("VM {vmid} config is not an object: {other}")),
        }
    }

    /// A config value as a string (numbers rendered).
    pub fn config_str(cfg: &serde_json::Map<String, Value>, key: &str) -> String {
        match cfg.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        }
    }

    /// Whether a VM's status is `running`.
    pub fn vm_running(&self, vmid: u32) -> Result<bool, String> {
        let st = self.get(
            &format!("/nodes/{}/qemu/{vmid}/status/current", self.node),
            &[],
        )?;
        Ok(st.get("status").and_then(Value::as_str) == Some("running"))
    }

    /// Volume ids of `storage`'s content (optionally one content type).
    pub fn volumes(&self, storage: &str, content: Option<&str>) -> Result<Vec<String>, String> {
        let q: Vec<(&str, &str)> = content.map(|c| ("content", c)).into_iter().collect();
        let vols = self.list(
            &format!("/nodes/{}/storage/{storage}/content", self.node),
            &q,
        )?;
        Ok(vols
            .iter()
            .filter_map(|v| v.get("volid").and_then(Value::as_str))
            .map(str::to_string)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(set: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: std::collections::HashMap<String, String> = set
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn none_set_is_emulated() {
        assert!(PveTarget::real_from(vars(&[])).unwrap().is_none());
    }

    #[test]
    fn partial_names_the_missing_ones() {
        let e = PveTarget::real_from(vars(&[("PROXMOX_VE_ENDPOINT", "https://127.10.9.9:8006")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("PROXMOX_VE_API_TOKEN"), "{e}");
        assert!(e.contains("PROXMOX_VE_ACC_NODE"), "{e}");
        assert!(!e.contains("missing: PROXMOX_VE_ENDPOINT"), "{e}");
    }

    #[test]
    fn real_with_inline_pem_and_redacted_debug() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let t = PveTarget::real_from(vars(&[
            ("PROXMOX_VE_ENDPOINT", "https://127.10.9.9:8006"),
            ("PROXMOX_VE_API_TOKEN", "u@pve!acc=topsecret-value"),
            ("PROXMOX_VE_ACC_NODE", "pve-acc"),
            ("PROXMOX_VE_CA_CERT", pem),
        ]))
        .unwrap()
        .unwrap();
        assert!(t.is_real());
        assert!(t.emulator().is_none());
        assert_eq!(t.node(), "pve-acc");
        assert_eq!(t.ca_pem().as_deref(), Some(pem));
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("topsecret"), "{dbg}");
        assert!(dbg.contains("u@pve!acc=<redacted>"), "{dbg}");
        let env = t.cli_env();
        assert!(env.contains(&("PROXMOX_VE_NODE".into(), "pve-acc".into())));
        assert!(t.skip_unless_emulated("x").is_some());
    }

    #[test]
    fn ca_cert_path_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        std::fs::write(&p, pem).unwrap();
        assert_eq!(ca_from(p.to_str().unwrap()).unwrap(), pem);
        assert!(ca_from("/nonexistent/ca.pem").is_err());
    }
}
