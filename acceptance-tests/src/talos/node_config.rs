//! The parts of a machine configuration the emulator acts on.

use std::net::Ipv4Addr;

use base64::Engine as _;
use serde_json::Value;

/// The parts of a machine configuration the emulator acts on.
#[derive(Clone)]
pub(crate) struct NodeConfig {
    pub yaml: String,
    pub docs: Vec<Value>,
    pub control_plane: bool,
    pub hostname: String,
    pub address: Option<Ipv4Addr>,
    pub vip: Option<Ipv4Addr>,
    pub cluster_id: String,
    pub cluster_name: String,
    pub endpoint: String,
    pub os_ca_crt: String,
    pub os_ca_key: Option<String>,
    pub k8s_ca_crt: String,
    pub k8s_ca_key: Option<String>,
}

fn b64_pem(v: &Value) -> Option<String> {
    let s = v.as_str()?;
    let b = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    String::from_utf8(b).ok().filter(|p| !p.trim().is_empty())
}

impl NodeConfig {
    pub(super) fn from_docs(
        yaml: &str,
        docs: Vec<Value>,
        fallback_host: &str,
    ) -> Result<Self, String> {
        let v1 = docs
            .iter()
            .find(|d| d.get("kind").is_none())
            .ok_or("no v1alpha1 document")?;
        let m = &v1["machine"];
        let cl = &v1["cluster"];
        let ty = m["type"].as_str().unwrap_or("worker");
        let hostname = docs
            .iter()
            .find(|d| d["kind"] == "HostnameConfig")
            .and_then(|d| d["hostname"].as_str())
            .or_else(|| m["network"]["hostname"].as_str())
            .unwrap_or(fallback_host)
            .to_string();
        let address = docs
            .iter()
            .filter(|d| d["kind"] == "LinkConfig")
            .flat_map(|d| d["addresses"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| {
                a["address"]
                    .as_str()
                    .and_then(|s| s.split('/').next())
                    .and_then(|s| s.parse::<Ipv4Addr>().ok())
            })
            .next();
        let vip = docs
            .iter()
            .find(|d| d["kind"] == "Layer2VIPConfig")
            .and_then(|d| d["name"].as_str())
            .and_then(|s| s.parse::<Ipv4Addr>().ok());
        Ok(NodeConfig {
            yaml: yaml.to_string(),
            control_plane: matches!(ty, "controlplane" | "init"),
            hostname,
            address,
            vip,
            cluster_id: cl["id"].as_str().unwrap_or("").to_string(),
            cluster_name: cl["clusterName"].as_str().unwrap_or("").to_string(),
            endpoint: cl["controlPlane"]["endpoint"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            os_ca_crt: b64_pem(&m["ca"]["crt"]).ok_or("machine.ca.crt unusable")?,
            os_ca_key: b64_pem(&m["ca"]["key"]),
            k8s_ca_crt: b64_pem(&cl["ca"]["crt"]).ok_or("cluster.ca.crt unusable")?,
            k8s_ca_key: b64_pem(&cl["ca"]["key"]),
            docs,
        })
    }

    /// Whether moving from `self` to `next` needs a reboot (machine type, cluster or CA
    /// change). `machine.install` is not among them: Talos applies it without a reboot and
    /// uses it only at the next install or upgrade (it never changes the installed OS).
    pub(super) fn needs_reboot_for(&self, next: &NodeConfig) -> Vec<String> {
        let v1 = |c: &NodeConfig| {
            c.docs
                .iter()
                .find(|d| d.get("kind").is_none())
                .cloned()
                .unwrap_or(Value::Null)
        };
        let (a, b) = (v1(self), v1(next));
        let mut out = Vec::new();
        for (path, what) in [
            ("/machine/type", "machine.type"),
            ("/cluster/id", "cluster.id"),
            ("/machine/ca", "machine.ca"),
        ] {
            if a.pointer(path) != b.pointer(path) {
                out.push(what.to_string());
            }
        }
        out
    }
}
