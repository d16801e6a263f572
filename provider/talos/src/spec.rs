//! The desired cluster, as the `waddle_talos_cluster` resource describes it.
//!
//! Values are kept as the operator wrote them (strings) so validation can point at the
//! exact attribute that is wrong.

use std::collections::BTreeMap;
use std::fmt;

use crate::versions::{self, ConfigContract};

/// Node role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Runs etcd and the Kubernetes control plane.
    ControlPlane,
    /// Runs workloads only.
    Worker,
}

impl Role {
    /// Talos `machine.type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "controlplane",
            Role::Worker => "worker",
        }
    }

    /// Parses `controlplane` / `worker`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "controlplane" => Some(Role::ControlPlane),
            "worker" => Some(Role::Worker),
            _ => None,
        }
    }
}

/// Cluster CNI choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Cni {
    /// No CNI: the operator installs one (e.g. Cilium via inline manifests). Default.
    #[default]
    None,
    /// Talos's built-in flannel.
    Flannel,
}

impl Cni {
    /// Talos `cluster.network.cni.name` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Cni::None => "none",
            Cni::Flannel => "flannel",
        }
    }

    /// Parses `none` / `flannel`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Cni::None),
            "flannel" => Some(Cni::Flannel),
            _ => None,
        }
    }
}

/// A manifest Talos applies on bootstrap (`cluster.inlineManifests`).
#[derive(Clone, PartialEq, Eq)]
pub struct InlineManifest {
    /// Unique name.
    pub name: String,
    /// YAML contents.
    pub contents: String,
}

/// One node of the cluster. `Debug` shows the number of patches, not their contents
/// (patches may carry credentials).
#[derive(Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Control plane or worker.
    pub role: Role,
    /// Static address with prefix, e.g. `10.10.0.10/24`.
    pub address: String,
    /// Default gateway, e.g. `10.10.0.1` (must be inside `address`'s subnet).
    pub gateway: Option<String>,
    /// MAC address of the NIC carrying `address`. The link is then selected by MAC
    /// (a `LinkAliasConfig` named [`crate::config::LINK_ALIAS`]).
    pub mac: Option<String>,
    /// Interface name (e.g. `ens18`) when no MAC is given. One of `mac`/`interface` is required.
    pub interface: Option<String>,
    /// Install disk, e.g. `/dev/sda`.
    pub install_disk: String,
    /// Hostname; defaults to the node's key in `nodes`.
    pub hostname: Option<String>,
    /// Kubernetes node labels.
    pub node_labels: BTreeMap<String, String>,
    /// Config patches for this node (strategic merge YAML or JSON6902), applied after the
    /// cluster-wide patches.
    pub config_patches: Vec<String>,
}

impl NodeSpec {
    /// A node with defaults: install disk `/dev/sda`, no patches.
    pub fn new(role: Role, address: &str) -> Self {
        NodeSpec {
            role,
            address: address.to_string(),
            gateway: None,
            mac: None,
            interface: None,
            install_disk: "/dev/sda".to_string(),
            hostname: None,
            node_labels: BTreeMap::new(),
            config_patches: Vec::new(),
        }
    }
}

/// The whole cluster. `Debug` shows the number of patches and manifests, not their
/// contents.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Cluster name (`cluster.clusterName`, talosconfig context name).
    pub cluster_name: String,
    /// Kubernetes API endpoint, e.g. `https://10.10.0.20:6443`.
    pub endpoint: String,
    /// Shared layer-2 VIP for the control planes, e.g. `10.10.0.20`.
    pub vip: Option<String>,
    /// Talos version, e.g. `v1.12.11`.
    pub talos_version: String,
    /// The configuration contract to render; `None` = the minor release of
    /// `talos_version` ([`ClusterSpec::contract`]). It may be older than `talos_version`
    /// (a cluster upgraded from v1.12 keeps its v1.12-contract configuration until the
    /// operator moves it), never newer.
    pub config_contract: Option<ConfigContract>,
    /// Kubernetes version, e.g. `1.35.0`.
    pub kubernetes_version: String,
    /// Installer image; `None` = `ghcr.io/siderolabs/installer:<talos_version>`.
    pub installer_image: Option<String>,
    /// CNI.
    pub cni: Cni,
    /// Run kube-proxy (default false).
    pub kube_proxy: bool,
    /// Allow workloads on control planes (default true).
    pub allow_scheduling_on_control_planes: bool,
    /// Extra SANs for the API server and Talos API certificates.
    pub cert_sans: Vec<String>,
    /// DNS servers (default 1.1.1.1, 8.8.8.8).
    pub nameservers: Vec<String>,
    /// Manifests applied on bootstrap.
    pub inline_manifests: Vec<InlineManifest>,
    /// TPM-sealed LUKS2 for STATE and EPHEMERAL.
    pub disk_encryption: bool,
    /// SecureBoot: the TPM key enrolment then checks SecureBoot is on.
    pub secureboot: bool,
    /// Talos discovery service (default true).
    pub discovery: bool,
    /// Patches applied to every node before its own.
    pub config_patches: Vec<String>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, NodeSpec>,
}

impl ClusterSpec {
    /// A spec with the defaults of the resource and no nodes.
    pub fn new(cluster_name: &str, endpoint: &str) -> Self {
        ClusterSpec {
            cluster_name: cluster_name.to_string(),
            endpoint: endpoint.to_string(),
            vip: None,
            talos_version: versions::DEFAULT_TALOS_VERSION.to_string(),
            config_contract: None,
            kubernetes_version: versions::DEFAULT_KUBERNETES_VERSION.to_string(),
            installer_image: None,
            cni: Cni::None,
            kube_proxy: false,
            allow_scheduling_on_control_planes: true,
            cert_sans: Vec::new(),
            nameservers: vec!["1.1.1.1".to_string(), "8.8.8.8".to_string()],
            inline_manifests: Vec::new(),
            disk_encryption: false,
            secureboot: false,
            discovery: true,
            config_patches: Vec::new(),
            nodes: BTreeMap::new(),
        }
    }

    /// Control-plane node names, sorted.
    pub fn control_planes(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.role == Role::ControlPlane)
            .map(|(k, _)| k.as_str())
            .collect()
    }

    /// The configuration contract rendered: [`ClusterSpec::config_contract`], else the
    /// minor release of `talos_version` (v1.12 when that is not a known release).
    pub fn contract(&self) -> ConfigContract {
        self.config_contract
            .or_else(|| ConfigContract::of_talos_version(&self.talos_version))
            .unwrap_or(ConfigContract::V1_12)
    }

    /// The installer image to use.
    pub fn installer_image(&self) -> String {
        match &self.installer_image {
            Some(i) => i.clone(),
            None => format!(
                "{}:{}",
                versions::DEFAULT_INSTALLER_REPOSITORY,
                versions::parse_talos_version(&self.talos_version).unwrap_or(&self.talos_version)
            ),
        }
    }
}

impl fmt::Debug for InlineManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InlineManifest")
            .field("name", &self.name)
            .field("contents", &format_args!("<{} bytes>", self.contents.len()))
            .finish()
    }
}

impl fmt::Debug for NodeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeSpec")
            .field("role", &self.role)
            .field("address", &self.address)
            .field("gateway", &self.gateway)
            .field("mac", &self.mac)
            .field("interface", &self.interface)
            .field("install_disk", &self.install_disk)
            .field("hostname", &self.hostname)
            .field("node_labels", &self.node_labels)
            .field(
                "config_patches",
                &format_args!("<{} patches>", self.config_patches.len()),
            )
            .finish()
    }
}

impl fmt::Debug for ClusterSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSpec")
            .field("cluster_name", &self.cluster_name)
            .field("endpoint", &self.endpoint)
            .field("vip", &self.vip)
            .field("talos_version", &self.talos_version)
            .field("config_contract", &self.config_contract)
            .field("kubernetes_version", &self.kubernetes_version)
            .field("installer_image", &self.installer_image)
            .field("cni", &self.cni)
            .field("kube_proxy", &self.kube_proxy)
            .field(
                "allow_scheduling_on_control_planes",
                &self.allow_scheduling_on_control_planes,
            )
            .field("cert_sans", &self.cert_sans)
            .field("nameservers", &self.nameservers)
            .field("inline_manifests", &self.inline_manifests)
            .field("disk_encryption", &self.disk_encryption)
            .field("secureboot", &self.secureboot)
            .field("discovery", &self.discovery)
            .field(
                "config_patches",
                &format_args!("<{} patches>", self.config_patches.len()),
            )
            .field("nodes", &self.nodes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_patch_and_manifest_contents() {
        let mut spec = ClusterSpec::new("c", "https://10.0.0.1:6443");
        spec.config_patches = vec!["secret-in-cluster-patch".into()];
        spec.inline_manifests = vec![InlineManifest {
            name: "m".into(),
            contents: "secret-in-manifest".into(),
        }];
        let mut n = NodeSpec::new(Role::Worker, "10.0.0.2/24");
        n.config_patches = vec!["secret-in-node-patch".into()];
        spec.nodes.insert("w".into(), n);
        let d = format!("{spec:?}");
        assert!(!d.contains("secret-in"), "{d}");
        assert!(d.contains("<1 patches>") && d.contains("10.0.0.2/24"));
    }

    #[test]
    fn contract_defaults_to_the_minor_of_talos_version() {
        let mut spec = ClusterSpec::new("c", "https://10.0.0.1:6443");
        assert_eq!(spec.contract(), ConfigContract::V1_12);
        spec.talos_version = "v1.13.2".into();
        assert_eq!(spec.contract(), ConfigContract::V1_13);
        spec.config_contract = Some(ConfigContract::V1_12);
        assert_eq!(spec.contract(), ConfigContract::V1_12);
    }

    #[test]
    fn default_installer_uses_canonical_version() {
        let mut spec = ClusterSpec::new("c", "https://10.0.0.1:6443");
        spec.talos_version = "1.12.3".into();
        assert_eq!(
            spec.installer_image(),
            "ghcr.io/siderolabs/installer:v1.12.3"
        );
    }
}
