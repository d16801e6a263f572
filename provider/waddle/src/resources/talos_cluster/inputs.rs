//! The configuration inputs a cluster keeps on its nodes, so that an import reads back what
//! neither Proxmox nor the rendered machine configuration tells (patches as written, labels,
//! placements with their defaults left unset, `timeouts`, ...).
//!
//! Every node's machine configuration starts with one YAML comment line, [`PREFIX`] followed
//! by JSON (ASCII only): the resource's cluster-wide configured attributes and that node's own
//! entry of `nodes` (no other node's). `machine_secrets` and every computed attribute are left
//! out, and so are the contents of `inline_manifests` (only their names are kept: the contents
//! are in the control planes' configuration itself, `cluster.inlineManifests`). Talos ignores
//! comments and stores the configuration it was sent byte for byte
//! (`/system/state/config.yaml`), so the line comes back through the Talos API with the
//! cluster's credentials. Nothing is put anywhere new: a node's configuration already holds
//! the cluster-wide patches and its own, rendered. Adding or changing one node changes no
//! other node's line; a change of a cluster-wide attribute that only the line holds
//! (`timeouts`, `on_destroy`, `image.disk_image_url`) re-applies every node's configuration,
//! which Talos takes without a reboot.

use std::collections::BTreeMap;

use waddle_framework::prelude::*;
use waddle_talos::SecretsBundle;

use super::{build_spec, ClusterModel, ManifestModel};

/// The first line of a control plane's machine configuration, before the inputs JSON.
pub const PREFIX: &str = "# waddle_talos_cluster inputs: ";

/// The attributes that make up the inputs (everything configurable but `machine_secrets`).
pub const ATTRS: &[&str] = &[
    "cluster_name",
    "endpoint",
    "vip",
    "talos_version",
    "config_contract",
    "kubernetes_version",
    "image",
    "cni",
    "kube_proxy",
    "allow_scheduling_on_control_planes",
    "cert_sans",
    "nameservers",
    "inline_manifests",
    "disk_encryption",
    "secureboot",
    "discovery",
    "config_patches",
    "on_destroy",
    "timeouts",
    "upgrade",
    "nodes",
];

/// Whether every input of a plan (or config) value is known.
pub fn known(v: &Value) -> bool {
    ATTRS
        .iter()
        .all(|a| v.get_attr(a).is_none_or(Value::is_wholly_known))
}

/// The inputs line of node `name` of `m` (without the prefix): cluster-wide inputs and that
/// node's entry of `nodes`, non-ASCII characters escaped.
pub fn inputs_json(m: &ClusterModel, name: &str) -> String {
    let inputs = ClusterModel {
        id: None,
        machine_secrets: None,
        talosconfig: None,
        kubeconfig: None,
        client_configuration: None,
        machine_configurations: None,
        machine_configurations_masked: None,
        machine_secrets_wo: None,
        machine_secrets_wo_version: None,
        node_addresses: None,
        proxmox_vms: None,
        proxmox_images: None,
        bootstrapped: None,
        node_status: None,
        node_versions: None,
        // Local-side settings (snapshots on this machine): not kept on the nodes.
        etcd_backup: None,
        etcd_restore: None,
        etcd_snapshots: None,
        inline_manifests: m.inline_manifests.as_ref().map(|l| {
            l.iter()
                .map(|x| ManifestModel {
                    name: x.name.clone(),
                    contents: String::new(),
                })
                .collect()
        }),
        nodes: Some(m.nodes().into_iter().filter(|(k, _)| k == name).collect()),
        ..m.clone()
    };
    let mut json = serde_json::to_string(&inputs).unwrap_or_default();
    // `config_contract` (the model's last field) is kept only when it is not the default of
    // `talos_version`, so lines written before it existed stay as they were; a read-back
    // without it means that default.
    let default_contract = ClusterModel {
        config_contract: None,
        ..m.clone()
    };
    if super::contract::of_model(m) == super::contract::of_model(&default_contract) {
        if let Some(at) = json.rfind(",\"config_contract\":") {
            if json.ends_with('}') {
                json.replace_range(at..json.len() - 1, "");
            }
        }
    }
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            // Only inside JSON strings, where `\uXXXX` (UTF-16 units) means the same.
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// The machine configuration of every node of `m`, each starting with its inputs line.
pub fn render_configs(
    m: &ClusterModel,
    bundle: &SecretsBundle,
) -> Result<BTreeMap<String, String>, (String, waddle_talos::Error)> {
    let spec = build_spec(m);
    let mut out = BTreeMap::new();
    for name in spec.nodes.keys() {
        let c =
            waddle_talos::render_node_config(&spec, bundle, name).map_err(|e| (name.clone(), e))?;
        out.insert(
            name.clone(),
            format!("{PREFIX}{}\n{c}", inputs_json(m, name)),
        );
    }
    Ok(out)
}

/// The inputs JSON of a configuration, if it has the line.
fn line(config: &str) -> Option<&str> {
    config.lines().next()?.strip_prefix(PREFIX)
}

/// Whether a node runs configuration `a` when `b` is wanted: the same documents (see
/// `same_config`) and the same inputs line.
pub fn same_applied(a: &str, b: &str) -> bool {
    line(a) == line(b) && waddle_talos::config::same_config(a, b).unwrap_or(false)
}

/// The inputs kept in a node's configuration as read back from the node (`None` without the
/// line): cluster-wide inputs and that one node. Inline manifests get their contents from the
/// configuration when it has them (a control plane's), else they stay empty.
pub fn read_inputs(config: &str) -> Result<Option<ClusterModel>, String> {
    let Some(json) = line(config) else {
        return Ok(None);
    };
    let mut m: ClusterModel =
        serde_json::from_str(json).map_err(|e| format!("the inputs line: {e}"))?;
    if let Some(list) = m.inline_manifests.as_mut() {
        let found = waddle_talos::config::inline_manifests(config).map_err(|e| e.to_string())?;
        for x in list.iter_mut() {
            if let Some(f) = found.iter().find(|f| f.name == x.name) {
                x.contents = f.contents.clone();
            }
        }
    }
    Ok(Some(m))
}

/// Why the inputs lines of a cluster's nodes do not make one cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("no control plane's inputs line was read")]
    NoControlPlane,
    #[error("nodes of two clusters ({0:?} and {1:?})")]
    TwoClusters(String, String),
}

/// The inputs of a whole cluster from the lines of its nodes: the nodes of every line, the
/// cluster-wide inputs of the first control plane's line (its configuration holds the inline
/// manifests). `Err` without a control plane's line or when two lines disagree on the cluster.
pub fn merge(lines: Vec<ClusterModel>) -> Result<ClusterModel, MergeError> {
    let is_cp = |m: &ClusterModel| m.nodes().values().any(|n| n.role == "controlplane");
    let Some(first) = lines.iter().find(|m| is_cp(m)).cloned() else {
        return Err(MergeError::NoControlPlane);
    };
    let mut nodes = BTreeMap::new();
    for m in lines {
        if m.cluster_name != first.cluster_name {
            return Err(MergeError::TwoClusters(
                first.cluster_name.clone(),
                m.cluster_name,
            ));
        }
        nodes.extend(m.nodes());
    }
    Ok(ClusterModel {
        nodes: Some(nodes),
        ..first
    })
}

#[cfg(test)]
mod tests {
    use super::super::{NodeModel, PlacementModel, TimeoutsModel};
    use super::*;

    fn model() -> ClusterModel {
        let node = |role: &str, a: &str| NodeModel {
            role: role.into(),
            address: a.into(),
            config_patches: Some(vec!["machine:\n  env:\n    GREETING: \"grüße ✓\"\n".into()]),
            proxmox: Some(PlacementModel {
                cores: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        };
        ClusterModel {
            cluster_name: "demo".into(),
            endpoint: "https://10.10.0.20:6443".into(),
            machine_secrets: Some("secret bundle".into()),
            kubeconfig: Some("admin kubeconfig".into()),
            inline_manifests: Some(vec![ManifestModel {
                name: "ns".into(),
                contents: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n".into(),
            }]),
            timeouts: Some(TimeoutsModel {
                create: Some("20m".into()),
                ..Default::default()
            }),
            nodes: Some(BTreeMap::from([
                ("cp1".to_string(), node("controlplane", "10.10.0.10/24")),
                ("w1".to_string(), node("worker", "10.10.0.11/24")),
            ])),
            ..Default::default()
        }
    }

    #[test]
    fn nodes_keep_the_inputs_and_an_import_reads_them_back() {
        let m = model();
        let bundle = SecretsBundle::placeholder();
        let configs = render_configs(&m, &bundle).expect("render");
        let cp = &configs["cp1"];
        let first = cp.lines().next().expect("a first line");
        assert!(first.starts_with(PREFIX), "{first}");
        assert!(first.is_ascii(), "{first}");
        assert!(!first.contains("secret bundle") && !first.contains("admin kubeconfig"));
        assert!(
            !first.contains("kind: Namespace"),
            "manifest contents are not repeated"
        );
        assert!(!first.contains("10.10.0.11"), "no other node's entry");
        let back_cp = read_inputs(cp).expect("parses").expect("has inputs");
        assert_eq!(back_cp.inline_manifests, m.inline_manifests);
        assert_eq!(back_cp.timeouts, m.timeouts);
        assert_eq!(back_cp.machine_secrets, None);
        assert_eq!(
            inputs_json(&back_cp, "cp1"),
            inputs_json(&m, "cp1"),
            "stable"
        );
        let back_w = read_inputs(&configs["w1"])
            .expect("parses")
            .expect("has inputs");
        let merged = merge(vec![back_w.clone(), back_cp]).expect("merge");
        assert_eq!(merged.nodes, m.nodes);
        assert_eq!(merged.inline_manifests, m.inline_manifests);
        assert!(merge(vec![back_w]).is_err(), "no control plane");
        assert_eq!(read_inputs("version: v1alpha1\n").expect("parses"), None);
    }

    /// `config_contract` is on the line only when it is not the default of `talos_version`
    /// (lines written before it existed stay as they were), and reads back either way.
    #[test]
    fn the_contract_is_kept_only_when_not_the_default() {
        let bundle = SecretsBundle::placeholder();
        let mut m = model();
        m.talos_version = Some("v1.12.11".into());
        let plain = inputs_json(&m, "cp1");
        m.config_contract = Some("v1.12".into());
        assert_eq!(inputs_json(&m, "cp1"), plain);
        assert!(!plain.contains("config_contract"), "{plain}");
        assert!(plain.ends_with('}'), "{plain}");
        let back = read_inputs(&render_configs(&m, &bundle).unwrap()["cp1"])
            .unwrap()
            .unwrap();
        assert_eq!(back.config_contract, None);
        assert_eq!(super::super::contract::of_model(&back).as_str(), "v1.12");

        // Upgraded to v1.13 with the v1.12 contract kept: on the line, read back.
        m.talos_version = Some("v1.13.9".into());
        let kept = inputs_json(&m, "cp1");
        assert!(kept.ends_with(",\"config_contract\":\"v1.12\"}"), "{kept}");
        let back = read_inputs(&render_configs(&m, &bundle).unwrap()["cp1"])
            .unwrap()
            .unwrap();
        assert_eq!(back.config_contract.as_deref(), Some("v1.12"));
        m.config_contract = Some("v1.13".into());
        assert!(!inputs_json(&m, "cp1").contains("config_contract"));
    }

    #[test]
    fn a_changed_input_is_a_changed_configuration_of_that_node_only() {
        let bundle = SecretsBundle::placeholder();
        let a = render_configs(&model(), &bundle).expect("render");
        let mut m = model();
        if let Some(w) = m.nodes.as_mut().and_then(|n| n.get_mut("w1")) {
            w.proxmox = Some(PlacementModel {
                cores: Some(4),
                ..Default::default()
            });
        }
        let b = render_configs(&m, &bundle).expect("render");
        assert!(!same_applied(&a["w1"], &b["w1"]), "the inputs line differs");
        assert!(same_applied(&a["cp1"], &b["cp1"]), "another node's change");
        m.timeouts = None;
        let c = render_configs(&m, &bundle).expect("render");
        assert!(!same_applied(&a["cp1"], &c["cp1"]), "a cluster-wide input");
        let stripped: String = a["cp1"].lines().skip(1).map(|l| format!("{l}\n")).collect();
        assert!(
            !same_applied(&stripped, &a["cp1"]),
            "a node without the line"
        );
    }
}
