//! Resource `waddle_talos_cluster`: Proxmox VMs (or existing machines) turned into a
//! bootstrapped Talos Linux cluster, kept in line with the configuration on every apply.
//!
//! Layout:
//! * this file: schema, the typed model, plan-time validation and planning;
//! * [`ops`]: the orchestration (create, update, read, delete) against Proxmox VE and the
//!   Talos API.
//!
//! # Import
//!
//! `terraform import waddle_talos_cluster.NAME <cluster_name>:<path to secrets.yaml>` (the
//! file `talosctl gen secrets` writes; a relative path is relative to the working directory).
//! The import itself holds the cluster name and its secrets; the read that follows finds the
//! rest (`ops/imported.rs`): the node VMs by their ownership mark, each node's inputs from the
//! line its machine configuration starts with (`inputs`), read through the Talos API, the disk
//! image by its name, and the kubeconfig. The plan after the import is then empty. When that
//! is not possible (no Proxmox VE connection, nodes configured by a waddle that did not keep
//! the line), the read warns and the next apply adopts the nodes of the configuration: a VM
//! that carries the node's mark is kept, and a node that already answers the Talos API on its
//! static address with the cluster's credentials is re-configured in place instead of being
//! installed again. Nodes without `proxmox` have no VM to be found by: the plan after an
//! import adds them, and the apply re-configures them in place.

pub mod changes;
pub mod etcd;
pub mod inputs;
pub mod ops;
mod roll;
pub mod upgrade;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use waddle_framework::prelude::*;
use waddle_framework::NestingMode;
use waddle_talos::{versions, ClusterSpec, Cni, InlineManifest, NodeSpec, Role, SecretsBundle};

use crate::provider::ProviderConfig;

use super::timeouts::{self, Op};
pub use super::timeouts::{parse_duration, TimeoutsModel};

/// Type name.
pub const TYPE_NAME: &str = "waddle_talos_cluster";

/// Defaults.
pub mod defaults {
    pub const CNI: &str = "none";
    pub const ON_DESTROY: &str = "graceful";
    pub const INSTALL_DISK: &str = "/dev/sda";
    pub const STORAGE: &str = "local-lvm";
    pub const IMAGE_STORAGE: &str = "local";
    pub const BRIDGE: &str = "vmbr0";
    pub const CORES: i64 = 2;
    pub const MEMORY_MIB: i64 = 4096;
    pub const DISK_GIB: i64 = 10;
    pub const TIMEOUTS: super::timeouts::Defaults = super::timeouts::Defaults {
        create: super::Duration::from_secs(30 * 60),
        update: super::Duration::from_secs(30 * 60),
        delete: super::Duration::from_secs(10 * 60),
    };
    /// The most nodes one cluster resource manages. A larger `nodes` map is refused at plan
    /// (before it costs a check, a diagnostic or an API call per node).
    pub const MAX_NODES: usize = 500;
    /// Proxmox's own OUI: generated MACs are `BC:24:11:xx:xx:xx`.
    pub const MAC_PREFIX: &str = "BC:24:11";
}

/// Example configuration shown in the documentation.
pub const EXAMPLE: &str = r#"data "waddle_talos_image" "this" {
  talos_version = "v1.12.11"
  extensions    = ["siderolabs/qemu-guest-agent", "siderolabs/iscsi-tools"]
}

resource "waddle_talos_cluster" "this" {
  cluster_name = "waddle"
  endpoint     = "https://10.10.0.20:6443"
  vip          = "10.10.0.20"

  image = {
    installer      = data.waddle_talos_image.this.installer_image
    disk_image_url = data.waddle_talos_image.this.disk_image_url
  }

  nodes = {
    cp1 = {
      role    = "controlplane"
      address = "10.10.0.10/24"
      gateway = "10.10.0.1"
      proxmox = { node = "pve", vmid = 110, bridge = "vmbr1", cores = 3, memory = 8192, disk_size = 10 }
    }
  }
}

output "kubeconfig" {
  value     = waddle_talos_cluster.this.kubeconfig
  sensitive = true
}
"#;

/// The resource.
#[derive(Debug, Default, Clone, Copy)]
pub struct TalosCluster;

// ---------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------

/// `image`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ImageModel {
    pub installer: Option<String>,
    pub disk_image_url: Option<String>,
}

/// `inline_manifests[*]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ManifestModel {
    pub name: String,
    pub contents: String,
}

/// `nodes[*].proxmox`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PlacementModel {
    pub node: Option<String>,
    pub storage: Option<String>,
    pub image_storage: Option<String>,
    pub bridge: Option<String>,
    pub vmid: Option<u32>,
    pub cores: Option<u32>,
    pub memory: Option<u64>,
    pub disk_size: Option<u32>,
}

/// `nodes[*]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct NodeModel {
    pub role: String,
    pub address: String,
    pub gateway: Option<String>,
    pub mac: Option<String>,
    pub interface: Option<String>,
    pub install_disk: Option<String>,
    pub hostname: Option<String>,
    pub node_labels: Option<BTreeMap<String, String>>,
    pub config_patches: Option<Vec<String>>,
    pub proxmox: Option<PlacementModel>,
    pub maintenance_address: Option<String>,
}

/// `client_configuration`.
#[derive(Serialize, Deserialize, Clone, Default, PartialEq)]
pub struct ClientConfigModel {
    pub ca_certificate: String,
    pub client_certificate: String,
    pub client_key: String,
}

impl std::fmt::Debug for ClientConfigModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfigModel")
            .field("client_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// `proxmox_vms[*]`: a VM this resource created.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct VmRef {
    pub node: String,
    pub vmid: u32,
}

/// `proxmox_images[*]`: a disk image this resource downloaded.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageRef {
    pub node: String,
    pub volume: String,
}

/// `node_status[*]`: effective values of a node and what was last done to it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStatus {
    pub action: Option<String>,
    pub mac: Option<String>,
    pub cores: Option<u32>,
    pub memory: Option<u64>,
    pub disk_size: Option<u32>,
}

/// The whole resource (configuration + computed values). `Debug` hides secrets.
#[derive(Serialize, Deserialize, Clone, Default, PartialEq)]
pub struct ClusterModel {
    pub id: Option<String>,
    pub cluster_name: String,
    pub endpoint: String,
    pub vip: Option<String>,
    pub talos_version: Option<String>,
    pub kubernetes_version: Option<String>,
    pub image: Option<ImageModel>,
    pub cni: Option<String>,
    pub kube_proxy: Option<bool>,
    pub allow_scheduling_on_control_planes: Option<bool>,
    pub cert_sans: Option<Vec<String>>,
    pub nameservers: Option<Vec<String>>,
    pub inline_manifests: Option<Vec<ManifestModel>>,
    pub disk_encryption: Option<bool>,
    pub secureboot: Option<bool>,
    pub discovery: Option<bool>,
    pub config_patches: Option<Vec<String>>,
    pub machine_secrets: Option<String>,
    pub on_destroy: Option<String>,
    pub timeouts: Option<TimeoutsModel>,
    pub nodes: Option<BTreeMap<String, NodeModel>>,
    pub talosconfig: Option<String>,
    pub kubeconfig: Option<String>,
    pub client_configuration: Option<ClientConfigModel>,
    pub machine_configurations: Option<BTreeMap<String, String>>,
    pub node_addresses: Option<BTreeMap<String, String>>,
    pub proxmox_vms: Option<BTreeMap<String, VmRef>>,
    pub proxmox_images: Option<Vec<ImageRef>>,
    pub bootstrapped: Option<bool>,
    pub node_status: Option<BTreeMap<String, NodeStatus>>,
    pub upgrade: Option<upgrade::UpgradeModel>,
    pub node_versions: Option<BTreeMap<String, upgrade::NodeVersionModel>>,
    pub etcd_backup: Option<etcd::BackupModel>,
    pub etcd_restore: Option<etcd::RestoreModel>,
    pub etcd_snapshots: Option<Vec<etcd::SnapshotRecord>>,
}

impl std::fmt::Debug for ClusterModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterModel")
            .field("cluster_name", &self.cluster_name)
            .field("endpoint", &self.endpoint)
            .field(
                "nodes",
                &self.nodes.as_ref().map(|n| n.keys().collect::<Vec<_>>()),
            )
            .field("proxmox_vms", &self.proxmox_vms)
            .field("bootstrapped", &self.bootstrapped)
            .finish_non_exhaustive()
    }
}

impl ClusterModel {
    pub fn nodes(&self) -> BTreeMap<String, NodeModel> {
        self.nodes.clone().unwrap_or_default()
    }
    pub fn on_destroy(&self) -> &str {
        self.on_destroy.as_deref().unwrap_or(defaults::ON_DESTROY)
    }
    pub fn timeout(&self, op: Op) -> Duration {
        TimeoutsModel::get(self.timeouts.as_ref(), op, &defaults::TIMEOUTS)
    }
    pub fn disk_image_url(&self) -> Option<String> {
        self.image.as_ref().and_then(|i| i.disk_image_url.clone())
    }
}

// ---------------------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------------------

fn s(desc: &str) -> Attribute {
    Attribute::string().description(desc)
}

/// The schema.
pub fn schema() -> Schema {
    let placement = Attribute::nested(
        NestingMode::Single,
        [
            (
                "node",
                s("Proxmox VE node to create the VM on. Defaults to the provider's `node`.")
                    .optional()
                    ,
            ),
            (
                "storage",
                s(&format!(
                    "Storage for the VM's disks (system disk, EFI vars, TPM state). Defaults to `\"{}\"`.",
                    defaults::STORAGE
                ))
                .optional(),
            ),
            (
                "image_storage",
                s(&format!(
                    "Storage with `import` content where the Talos disk image is downloaded once per node. Defaults to `\"{}\"`.",
                    defaults::IMAGE_STORAGE
                ))
                .optional(),
            ),
            (
                "bridge",
                s(&format!(
                    "Bridge of the VM's NIC. Defaults to `\"{}\"`.",
                    defaults::BRIDGE
                ))
                .optional(),
            ),
            (
                "vmid",
                Attribute::number().optional().description(
                    "VM id. Defaults to the next free id (kept once allocated, see `proxmox_vms`).",
                ),
            ),
            (
                "cores",
                Attribute::number()
                    .optional()
                    .description(format!("vCPU cores. Defaults to `{}`.", defaults::CORES)),
            ),
            (
                "memory",
                Attribute::number()
                    .optional()
                    .description(format!(
                        "Memory in MiB. Defaults to `{}`.",
                        defaults::MEMORY_MIB
                    )),
            ),
            (
                "disk_size",
                Attribute::number()
                    .optional()
                    .description(format!(
                        "System disk size in GiB (the image is grown to it). Defaults to `{}`.",
                        defaults::DISK_GIB
                    )),
            ),
        ],
    )
    .optional()
    .description(
        "Create the node as a Proxmox VE VM: the Talos disk image (`image.disk_image_url`) is \
         downloaded once per node/storage and imported as the system disk; the VM gets the \
         node's MAC, the guest agent, and UEFI + TPM 2.0 when `secureboot` or \
         `disk_encryption` is set. The node needs no DHCP: its VM gets a Proxmox cloud-init \
         drive (`ide2: <storage>:cloudinit`, `citype = nocloud`, `ipconfig0` with `address` and \
         `gateway`, `nameserver` from `nameservers`), which Talos's `nocloud` platform applies \
         before the first boot, and the machine configuration is applied in maintenance mode \
         to `address` (chosen over an uploaded NoCloud ISO: no ISO upload, PVE regenerates the \
         drive at every start, the drive goes with the VM; needs `VM.Config.Cloudinit` and \
         `images` content on `storage`). The guest agent is not required: an IPv4 address it \
         reports is tried only while `address` does not answer (networks with DHCP). Without `proxmox` the node must already exist (bare metal \
         or a VM made elsewhere), see `maintenance_address`. `cores`, `memory` and `disk_size` \
         change in place (a disk only grows; CPU/memory restart the VM), one node at a time; \
         changing `node`, `storage`, `bridge` or `vmid` re-creates the node, one node at a \
         time, and is refused for the only control plane.",
    );

    let node = Attribute::nested(
        NestingMode::Map,
        [
            (
                "role",
                s("`controlplane` or `worker`. Changing it re-creates the node.").required(),
            ),
            (
                "address",
                s("Static address with prefix length, e.g. `10.10.0.10/24`.").required(),
            ),
            (
                "gateway",
                s("Default gateway, inside `address`'s subnet. Defaults to none.").optional(),
            ),
            (
                "mac",
                s(&format!(
                    "MAC address of the node's NIC; the Talos link is selected by it. Defaults, \
                     for Proxmox VMs, to a stable address derived from the cluster and node \
                     names (`{}:xx:xx:xx`).",
                    defaults::MAC_PREFIX
                ))
                .optional(),
            ),
            (
                "interface",
                s("Interface name (e.g. `ens18`) when the node has no `mac`. Defaults to none.")
                    .optional(),
            ),
            (
                "install_disk",
                s(&format!(
                    "Disk Talos installs to. Defaults to `\"{}\"`.",
                    defaults::INSTALL_DISK
                ))
                .optional(),
            ),
            (
                "hostname",
                s("Hostname. Defaults to the node's key in `nodes`.").optional(),
            ),
            (
                "node_labels",
                Attribute::map_of(Type::String)
                    .optional()
                    .description("Kubernetes node labels. Defaults to none."),
            ),
            (
                "config_patches",
                Attribute::list_of(Type::String).optional().description(
                    "Machine configuration patches for this node (strategic-merge YAML or \
                     JSON6902), applied after the cluster-wide `config_patches`. Defaults to none.",
                ),
            ),
            ("proxmox", placement),
            (
                "maintenance_address",
                s(
                    "For nodes without `proxmox`: the address (`ip` or `ip:port`) where the \
                   node answers the Talos API in maintenance mode. When null, the node is \
                   expected to be configured already and is reached on its static address.",
                )
                .optional(),
            ),
        ],
    )
    // Required in effect (validation refuses null). Declared optional + computed because
    // Terraform < 1.0.9 crashes planning a new required/optional nested attribute (it descends
    // into a null prior object); optional + computed nested attributes are taken as configured.
    .optional()
    .computed()
    .description(format!(
        "Required. Nodes by name (the name is the default hostname), at most {}. Adding a node \
         creates it and joins it to the cluster; removing one makes it leave etcd, resets it and \
         deletes its VM.",
        defaults::MAX_NODES
    ));

    Schema::new(
        "A Talos Linux cluster: per-node machine configurations generated from one secrets \
         bundle, Proxmox VE VMs created concurrently (or existing machines), configuration \
         applied in maintenance mode, etcd bootstrapped once, a health wait, then `kubeconfig` \
         and `talosconfig`. Later changes are applied with the least disruptive mode, control \
         planes one at a time.\n\nImport with `<cluster_name>:<path to secrets.yaml>`: the \
         nodes' VMs are found by their ownership mark, and every node's inputs are read back \
         from the line its machine configuration starts with, so the plan after an import is \
         empty (nodes without `proxmox` are added back by the next apply, in place).",
    )
    .attribute(
        "id",
        s("The cluster name.").computed().use_state_for_unknown(),
    )
    .attribute(
        "cluster_name",
        s("Cluster name (lower-case DNS label). Changing it re-creates the cluster.")
            .required()
            .requires_replace(),
    )
    .attribute(
        "endpoint",
        s("Kubernetes API endpoint, e.g. `https://10.10.0.20:6443` (normally the VIP).")
            .required(),
    )
    .attribute(
        "vip",
        s("Shared layer-2 virtual IP of the control planes (Layer2VIPConfig). Defaults to none.")
            .optional(),
    )
    .attribute(
        "talos_version",
        s(&format!(
            "Talos version. Changing it upgrades every node in place, control planes one at a \
             time (see `upgrade`); skipping a minor release or going down is refused at plan. \
             Defaults to `\"{}\"`.",
            versions::DEFAULT_TALOS_VERSION
        ))
        .default(versions::DEFAULT_TALOS_VERSION),
    )
    .attribute(
        "kubernetes_version",
        s(&format!(
            "Kubernetes version. Changing it upgrades in `talosctl upgrade-k8s` order: the \
             control-plane components one control plane at a time, then the kubelets node by \
             node, control planes first; skipping a minor release or going down is refused at \
             plan. Defaults to `\"{}\"`.",
            versions::DEFAULT_KUBERNETES_VERSION
        ))
        .default(versions::DEFAULT_KUBERNETES_VERSION),
    )
    .attribute(
        "image",
        Attribute::nested(
            NestingMode::Single,
            [
                (
                    "installer",
                    s("Installer image (`waddle_talos_image.installer_image`). Defaults to \
                       `ghcr.io/siderolabs/installer:<talos_version>`.")
                    .optional(),
                ),
                (
                    "disk_image_url",
                    s("Disk image Proxmox downloads for VMs (`waddle_talos_image.disk_image_url`, \
                       a `nocloud` `.qcow2`). Required when a node has `proxmox`.")
                    .optional(),
                ),
            ],
        )
        .optional()
        .computed()
        .description(
            "Talos image, normally from `data.waddle_talos_image` (extensions \
             qemu-guest-agent + iscsi-tools).",
        ),
    )
    .attribute(
        "cni",
        s("`none` (install your own, e.g. through `inline_manifests`) or `flannel`. Defaults to `\"none\"`.")
            .default(defaults::CNI),
    )
    .attribute(
        "kube_proxy",
        Attribute::bool()
            .default(false)
            .description("Run kube-proxy. Defaults to `false`."),
    )
    .attribute(
        "allow_scheduling_on_control_planes",
        Attribute::bool()
            .default(true)
            .description("Allow workloads on control planes. Defaults to `true`."),
    )
    .attribute(
        "cert_sans",
        Attribute::list_of(Type::String).optional().description(
            "Extra SANs of the API server and Talos API certificates (the VIP and node \
             addresses are always included). Defaults to none.",
        ),
    )
    .attribute(
        "nameservers",
        Attribute::list_of(Type::String)
            .default(Value::List(vec!["1.1.1.1".into(), "8.8.8.8".into()]))
            .description("DNS servers. Defaults to `[\"1.1.1.1\", \"8.8.8.8\"]`."),
    )
    .attribute(
        "inline_manifests",
        Attribute::nested(
            NestingMode::List,
            [
                ("name", s("Unique manifest name.").required()),
                ("contents", s("YAML manifest(s).").required()),
            ],
        )
        .optional()
        .computed()
        .description("Manifests applied at bootstrap. Defaults to none."),
    )
    .attribute(
        "disk_encryption",
        Attribute::bool().default(false).description(
            "TPM-sealed LUKS2 encryption of STATE and EPHEMERAL (VMs get a TPM 2.0). \
             Defaults to `false`.",
        ),
    )
    .attribute(
        "secureboot",
        Attribute::bool().default(false).description(
            "SecureBoot (use a SecureBoot image; VMs boot UEFI with keys in setup mode and a \
             TPM). Defaults to `false`.",
        ),
    )
    .attribute(
        "discovery",
        Attribute::bool()
            .default(true)
            .description("Talos discovery service. Defaults to `true`."),
    )
    .attribute(
        "config_patches",
        Attribute::list_of(Type::String).optional().description(
            "Patches for every node (strategic-merge YAML or JSON6902), before each node's own. \
             Defaults to none.",
        ),
    )
    .attribute(
        "machine_secrets",
        s("The cluster secrets bundle in `secrets.yaml` form. Generated once when not set; set \
           it to use an existing `secrets.yaml` (changing it re-creates the cluster).")
        .optional()
        .computed()
        .sensitive()
        .use_state_for_unknown()
        .requires_replace(),
    )
    .attribute(
        "on_destroy",
        s("How nodes are reset before their VMs are deleted: `graceful` (leave etcd, then \
           wipe), `forced` (wipe without leaving etcd) or `none`. Defaults to `\"graceful\"`.")
        .default(defaults::ON_DESTROY),
    )
    .attribute(
        timeouts::ATTR,
        timeouts::attribute(
            &defaults::TIMEOUTS,
            [
                "Overall deadline of create (install, bootstrap, health).",
                "Overall deadline of an update.",
                "Overall deadline of destroy.",
            ],
        ),
    )
    .attribute("upgrade", upgrade::upgrade_attribute())
    .attribute("nodes", node)
    .attribute(
        "talosconfig",
        s("talosctl client configuration (admin certificate; endpoints are the control planes).")
            .computed()
            .sensitive(),
    )
    .attribute(
        "kubeconfig",
        s("Admin kubeconfig (from the Talos API), server = `endpoint`.")
            .computed()
            .sensitive(),
    )
    .attribute(
        "client_configuration",
        Attribute::nested(
            NestingMode::Single,
            [
                ("ca_certificate", s("OS CA certificate (PEM).").computed()),
                (
                    "client_certificate",
                    s("Admin client certificate (PEM, Organization `os:admin`).").computed(),
                ),
                (
                    "client_key",
                    s("Admin client key (PEM).").computed().sensitive(),
                ),
            ],
        )
        .computed()
        .use_state_for_unknown()
        .description("Talos API client credentials."),
    )
    .attribute(
        "machine_configurations",
        Attribute::map_of(Type::String)
            .computed()
            .sensitive()
            .description(
                "Machine configuration of every node (multi-document YAML), by node name. Each \
                 starts with a comment line (`# waddle_talos_cluster inputs: ...`) holding this \
                 resource's configured attributes for that node, without `machine_secrets`, \
                 read back by an import; Talos ignores it.",
            ),
    )
    .attribute(
        "node_addresses",
        Attribute::map_of(Type::String)
            .computed()
            .description("Static address (without prefix) of every node, by node name."),
    )
    .attribute(
        "proxmox_vms",
        Attribute::map_of(Type::object([
            ("node".to_string(), Type::String),
            ("vmid".to_string(), Type::Number),
        ]))
        .computed()
        .description("Proxmox VE VMs this resource created, by node name."),
    )
    .attribute(
        "proxmox_images",
        Attribute::list_of(Type::object([
            ("node".to_string(), Type::String),
            ("volume".to_string(), Type::String),
        ]))
        .computed()
        .description("Disk images this resource downloaded (deleted on destroy)."),
    )
    .attribute(
        "bootstrapped",
        Attribute::bool()
            .computed()
            .description("Whether etcd has been bootstrapped."),
    )
    .attribute(
        "node_status",
        Attribute::map_of(Type::object([
            ("action".to_string(), Type::String),
            ("mac".to_string(), Type::String),
            ("cores".to_string(), Type::Number),
            ("memory".to_string(), Type::Number),
            ("disk_size".to_string(), Type::Number),
        ]))
        .computed()
        .description(
            "Every node's effective values (`mac`, and for Proxmox VMs `cores`, `memory` in \
             MiB, `disk_size` in GiB, defaults included) and `action`: what the last apply did \
             to it (`created`, `resized in place: ...`, `re-created: ...`; `not done: ...` \
             when an apply stopped before reaching it). A plan that changes a node shows the \
             new `action`.",
        ),
    )
    .attribute("node_versions", upgrade::node_versions_attribute())
    .attributes_from(etcd::attributes())
}

/// Adds attributes kept in the resource's own modules.
trait AttributesFrom {
    fn attributes_from(self, attrs: Vec<(&'static str, Attribute)>) -> Self;
}

impl AttributesFrom for Schema {
    fn attributes_from(self, attrs: Vec<(&'static str, Attribute)>) -> Self {
        attrs.into_iter().fold(self, |s, (n, a)| s.attribute(n, a))
    }
}

// ---------------------------------------------------------------------------------------
// Spec conversion and validation
// ---------------------------------------------------------------------------------------

/// Converts a talos validation path into a framework attribute path (`installer_image` is
/// `image.installer` in this resource).
pub fn to_attr_path(p: &waddle_talos::AttrPath) -> AttributePath {
    let mut out = AttributePath::root();
    for (i, step) in p.steps().iter().enumerate() {
        out = match step {
            waddle_talos::PathStep::Attr(a) if i == 0 && a == "installer_image" => {
                out.then_attr("image").then_attr("installer")
            }
            waddle_talos::PathStep::Attr(a) => out.then_attr(a),
            waddle_talos::PathStep::Key(k) => out.then_key(k),
            waddle_talos::PathStep::Index(n) => out.then_index(*n as i64),
        };
    }
    out
}

/// Builds the [`ClusterSpec`] (role and CNI already checked; unknown values map to `worker`
/// / `none` so the caller's own checks report them).
pub fn build_spec(m: &ClusterModel) -> ClusterSpec {
    let mut spec = ClusterSpec::new(&m.cluster_name, &m.endpoint);
    let cluster = m.cluster_name.clone();
    spec.vip = m.vip.clone();
    if let Some(v) = &m.talos_version {
        spec.talos_version = v.clone();
    }
    if let Some(v) = &m.kubernetes_version {
        spec.kubernetes_version = v.clone();
    }
    spec.installer_image = m.image.as_ref().and_then(|i| i.installer.clone());
    spec.cni = m.cni.as_deref().and_then(Cni::parse).unwrap_or_default();
    spec.kube_proxy = m.kube_proxy.unwrap_or(false);
    spec.allow_scheduling_on_control_planes = m.allow_scheduling_on_control_planes.unwrap_or(true);
    spec.cert_sans = m.cert_sans.clone().unwrap_or_default();
    if let Some(ns) = &m.nameservers {
        spec.nameservers = ns.clone();
    }
    spec.inline_manifests = m
        .inline_manifests
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|x| InlineManifest {
            name: x.name,
            contents: x.contents,
        })
        .collect();
    spec.disk_encryption = m.disk_encryption.unwrap_or(false);
    spec.secureboot = m.secureboot.unwrap_or(false);
    spec.discovery = m.discovery.unwrap_or(true);
    spec.config_patches = m.config_patches.clone().unwrap_or_default();
    for (name, n) in m.nodes() {
        let mut ns = NodeSpec::new(Role::parse(&n.role).unwrap_or(Role::Worker), &n.address);
        ns.gateway = n.gateway.clone();
        ns.mac = effective_mac(&cluster, &name, &n);
        ns.interface = n.interface.clone();
        if let Some(d) = &n.install_disk {
            ns.install_disk = d.clone();
        }
        ns.hostname = n.hostname.clone();
        ns.node_labels = n.node_labels.clone().unwrap_or_default();
        ns.config_patches = n.config_patches.clone().unwrap_or_default();
        spec.nodes.insert(name, ns);
    }
    spec
}

/// The node's MAC: configured, or generated for a Proxmox VM without `mac` and `interface`.
pub fn effective_mac(cluster_name: &str, node_name: &str, n: &NodeModel) -> Option<String> {
    match (&n.mac, &n.interface, &n.proxmox) {
        (Some(m), _, _) => Some(m.clone()),
        (None, None, Some(_)) => Some(generated_mac(cluster_name, node_name)),
        _ => None,
    }
}

impl PlacementModel {
    pub fn storage(&self) -> String {
        self.storage
            .clone()
            .unwrap_or_else(|| defaults::STORAGE.into())
    }
    pub fn image_storage(&self) -> String {
        self.image_storage
            .clone()
            .unwrap_or_else(|| defaults::IMAGE_STORAGE.into())
    }
    pub fn bridge(&self) -> String {
        self.bridge
            .clone()
            .unwrap_or_else(|| defaults::BRIDGE.into())
    }
    pub fn cores(&self) -> u32 {
        self.cores.unwrap_or(defaults::CORES as u32)
    }
    pub fn memory(&self) -> u64 {
        self.memory.unwrap_or(defaults::MEMORY_MIB as u64)
    }
    pub fn disk_size(&self) -> u32 {
        self.disk_size.unwrap_or(defaults::DISK_GIB as u32)
    }
}

/// The node's address without prefix length.
pub fn node_ip(n: &NodeModel) -> &str {
    n.address.split('/').next().unwrap_or(&n.address)
}

/// A stable MAC for a Proxmox node without one: Proxmox's OUI + 24 bits of FNV-1a over
/// `cluster/node`.
pub fn generated_mac(cluster_name: &str, node_name: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in cluster_name
        .bytes()
        .chain(std::iter::once(b'/'))
        .chain(node_name.bytes())
    {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let b = h.to_be_bytes();
    format!(
        "{}:{:02X}:{:02X}:{:02X}",
        defaults::MAC_PREFIX,
        b[1] ^ b[0],
        b[2],
        b[3]
    )
}

/// The file name a disk image URL is stored under in `import` content, and the compression
/// Proxmox must undo.
pub fn image_file_name(url: &str) -> Result<(String, Option<String>), String> {
    let u = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("{url:?} must be an http(s) URL"));
    }
    let segs: Vec<&str> = u
        .path_segments()
        .map(|s| s.filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    let file = segs.last().copied().unwrap_or_default();
    // Image Factory: /image/<schematic>/<version>/<file>; make the name unique per schematic
    // and version.
    let stem = if segs.len() >= 4 && segs[segs.len() - 4] == "image" {
        let schematic = segs[segs.len() - 3];
        let short = &schematic[..schematic.len().min(12)];
        format!("talos-{short}-{}-{file}", segs[segs.len() - 2])
    } else {
        file.to_string()
    };
    let clean = |x: &str| -> String {
        x.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    for (ext, comp) in [
        (".gz", "gz"),
        (".zst", "zst"),
        (".bz2", "bz2"),
        (".lzo", "lzo"),
    ] {
        if let Some(inner) = stem.strip_suffix(ext) {
            if inner.ends_with(".raw") || inner.ends_with(".qcow2") {
                return Ok((clean(inner), Some(comp.to_string())));
            }
        }
    }
    if stem.ends_with(".qcow2") || stem.ends_with(".raw") {
        return Ok((clean(&stem), None));
    }
    Err(format!(
        "{url:?}: Proxmox can import a `.qcow2` or `.raw` disk image (optionally .gz/.zst/.bz2 \
         compressed); use the `nocloud` platform of waddle_talos_image"
    ))
}

/// Checks that need no complete spec: enumerations and per-node attributes that
/// waddle_talos does not know about. Unknown values are skipped.
fn check_resource_attrs(config: &Value, diags: &mut Diagnostics) {
    let str_at = |p: &AttributePath| {
        config
            .get_path(p)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    if let Some(c) = str_at(&AttributePath::attr("cni")) {
        if Cni::parse(&c).is_none() {
            diags.error_at(
                AttributePath::attr("cni"),
                "Invalid CNI",
                format!("{c:?}: must be \"none\" or \"flannel\""),
            );
        }
    }
    if let Some(c) = str_at(&AttributePath::attr("on_destroy")) {
        if !matches!(c.as_str(), "graceful" | "forced" | "none") {
            diags.error_at(
                AttributePath::attr("on_destroy"),
                "Invalid on_destroy",
                format!("{c:?}: must be \"graceful\", \"forced\" or \"none\""),
            );
        }
    }
    timeouts::validate(config, diags);
    upgrade::validate(config, diags);
    let url_path = AttributePath::attr("image").then_attr("disk_image_url");
    let url = config.get_path(&url_path).cloned().unwrap_or(Value::Null);
    if let Some(u) = url.as_str() {
        if let Err(e) = image_file_name(u) {
            diags.error_at(url_path.clone(), "Invalid disk image URL", e);
        }
    }
    if config.get_attr("nodes").is_some_and(Value::is_null) {
        diags.error_at(
            AttributePath::attr("nodes"),
            "Missing required argument",
            "The argument \"nodes\" is required: at least one control plane node.",
        );
    }
    let Some(nodes) = config.get_attr("nodes").and_then(Value::as_entries) else {
        return;
    };
    if nodes.len() > defaults::MAX_NODES {
        diags.error_at(
            AttributePath::attr("nodes"),
            "Too many nodes",
            format!(
                "{} nodes: one waddle_talos_cluster manages at most {}",
                nodes.len(),
                defaults::MAX_NODES
            ),
        );
        return;
    }
    for (name, n) in nodes {
        let base = AttributePath::attr("nodes").then_key(name);
        if let Some(r) = n.get_attr("role").and_then(Value::as_str) {
            if Role::parse(r).is_none() {
                diags.error_at(
                    base.clone().then_attr("role"),
                    "Invalid role",
                    format!("{r:?}: must be \"controlplane\" or \"worker\""),
                );
            }
        }
        let px = n.get_attr("proxmox").cloned().unwrap_or(Value::Null);
        let maint = n
            .get_attr("maintenance_address")
            .cloned()
            .unwrap_or(Value::Null);
        if !px.is_null() && px.is_known() {
            if url.is_null() {
                diags.error_at(
                    url_path.clone(),
                    "Missing disk image",
                    format!(
                        "nodes[{name:?}] is a Proxmox VM: set image.disk_image_url (e.g. from data.waddle_talos_image)"
                    ),
                );
            }
            if !maint.is_null() {
                diags.error_at(
                    base.clone().then_attr("maintenance_address"),
                    "Conflicting attributes",
                    "maintenance_address is for nodes without `proxmox` (a VM gets `address` through its cloud-init drive and is configured there)",
                );
            }
            check_placement(&px, &base.clone().then_attr("proxmox"), diags);
            let num = |k: &str| px.get_attr(k).and_then(Value::as_i64);
            for (k, lo, hi) in [
                ("vmid", 100, 999_999_999),
                ("cores", 1, 8192),
                ("memory", 1024, 4 * 1024 * 1024),
                ("disk_size", 5, 65536),
            ] {
                if let Some(v) = num(k) {
                    if v < lo || v > hi {
                        diags.error_at(
                            base.clone().then_attr("proxmox").then_attr(k),
                            "Value out of range",
                            format!("{k} = {v}: must be between {lo} and {hi}"),
                        );
                    }
                }
            }
        }
        if let Some(a) = maint.as_str() {
            if waddle_talos::api::parse_endpoint(a).is_err() {
                diags.error_at(
                    base.clone().then_attr("maintenance_address"),
                    "Invalid address",
                    format!("{a:?}: expected an IP address with an optional port"),
                );
            }
        }
    }
    // Duplicate VM ids.
    let mut seen: BTreeMap<i64, &str> = BTreeMap::new();
    for (name, n) in nodes {
        if let Some(v) = n
            .get_attr("proxmox")
            .and_then(|p| p.get_attr("vmid"))
            .and_then(Value::as_i64)
        {
            if let Some(other) = seen.insert(v, name) {
                diags.error_at(
                    AttributePath::attr("nodes")
                        .then_key(name)
                        .then_attr("proxmox")
                        .then_attr("vmid"),
                    "Duplicate VM id",
                    format!("vmid {v} is also used by nodes[{other:?}]"),
                );
            }
        }
    }
}

/// Proxmox names in `nodes[*].proxmox`, checked like the API would (no API call).
fn check_placement(px: &Value, base: &AttributePath, diags: &mut Diagnostics) {
    let text = |k: &str| px.get_attr(k).and_then(Value::as_str);
    type Check = fn(&str) -> Result<(), String>;
    let checks: [(&str, Check); 4] = [
        ("node", crate::provider::validate_node),
        ("storage", |x| {
            waddle_proxmox::props::validate_storage(x).map_err(|e| e.to_string())
        }),
        ("image_storage", |x| {
            waddle_proxmox::props::validate_storage(x).map_err(|e| e.to_string())
        }),
        ("bridge", |x| {
            waddle_proxmox::props::validate_bridge(x).map_err(|e| e.to_string())
        }),
    ];
    for (k, check) in checks {
        if let Some(Err(e)) = text(k).map(check) {
            super::error_named(diags, base.clone().then_attr(k), "Invalid value", e);
        }
    }
}

/// The largest secrets file an import reads (a real `secrets.yaml` is a few KiB).
pub const MAX_SECRETS_FILE: u64 = 1024 * 1024;

/// Why an import's secrets file was not read.
#[derive(Debug, thiserror::Error)]
pub enum SecretsFileError {
    /// It could not be inspected or read.
    #[error("reading {path:?}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A directory, device, FIFO or socket: only a regular file is read.
    #[error("{path:?} is not a regular file")]
    NotAFile { path: String },
    /// Larger than [`MAX_SECRETS_FILE`].
    #[error("{path:?} is larger than {MAX_SECRETS_FILE} bytes, too large for a secrets bundle")]
    TooLarge { path: String },
    /// Not text.
    #[error("{path:?} is not UTF-8 text")]
    NotText { path: String },
}

/// Reads the secrets file named by an import ID: a regular file of at most
/// [`MAX_SECRETS_FILE`] bytes. The type is checked before the file is opened (opening a FIFO
/// would block) and again on the open handle, and the read is bounded even if the file grows.
pub fn read_secrets_file(path: &str) -> Result<String, SecretsFileError> {
    use std::io::Read as _;
    let io = |source| SecretsFileError::Io {
        path: path.to_string(),
        source,
    };
    let regular = |m: &std::fs::Metadata| -> Result<(), SecretsFileError> {
        if !m.is_file() {
            Err(SecretsFileError::NotAFile {
                path: path.to_string(),
            })
        } else if m.len() > MAX_SECRETS_FILE {
            Err(SecretsFileError::TooLarge {
                path: path.to_string(),
            })
        } else {
            Ok(())
        }
    };
    regular(&std::fs::metadata(path).map_err(io)?)?;
    let file = std::fs::File::open(path).map_err(io)?;
    regular(&file.metadata().map_err(io)?)?;
    let mut buf = Vec::new();
    file.take(MAX_SECRETS_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > MAX_SECRETS_FILE {
        return Err(SecretsFileError::TooLarge {
            path: path.to_string(),
        });
    }
    String::from_utf8(buf).map_err(|_| SecretsFileError::NotText {
        path: path.to_string(),
    })
}

/// Converts a config/plan value (unknowns allowed) into the model, treating unknowns as
/// null. `None` when the shape does not fit (should not happen with a schema value).
pub fn model_of(v: &Value) -> Option<ClusterModel> {
    let mut v = v.unknown_as_null();
    // A planned VM whose node or id is not known yet (a node to be created with an automatic
    // VMID) is no VM yet: the apply records it.
    if let Some(vms) = v.get_attr("proxmox_vms").and_then(Value::as_entries) {
        let known: BTreeMap<String, Value> = vms
            .iter()
            .filter(|(_, vm)| {
                ["node", "vmid"]
                    .iter()
                    .all(|a| vm.get_attr(a).is_some_and(|x| !x.is_null()))
            })
            .map(|(k, vm)| (k.clone(), vm.clone()))
            .collect();
        v.set_path(&AttributePath::attr("proxmox_vms"), Value::Map(known));
    }
    v.to_typed().ok()
}

/// Whether the parts of the configuration the spec is made of are wholly known.
fn spec_inputs_known(config: &Value) -> bool {
    const SPEC_ATTRS: &[&str] = &[
        "cluster_name",
        "endpoint",
        "vip",
        "talos_version",
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
    ];
    if !SPEC_ATTRS
        .iter()
        .all(|a| config.get_attr(a).is_none_or(Value::is_wholly_known))
    {
        return false;
    }
    let Some(nodes) = config.get_attr("nodes") else {
        return false;
    };
    let Some(entries) = nodes.as_entries() else {
        return false;
    };
    entries.values().all(|n| {
        [
            "role",
            "address",
            "gateway",
            "mac",
            "interface",
            "install_disk",
            "hostname",
            "node_labels",
            "config_patches",
        ]
        .iter()
        .all(|a| n.get_attr(a).is_none_or(Value::is_wholly_known))
    })
}

/// Full validation of a configuration (or plan) value: resource-level checks, then, when the
/// spec inputs are known, waddle_talos's validation mapped to attribute paths.
pub fn validate_value(config: &Value, diags: &mut Diagnostics) {
    let mut found = Diagnostics::new();
    validate_uncapped(config, &mut found);
    super::capped(found, diags);
}

fn validate_uncapped(config: &Value, diags: &mut Diagnostics) {
    check_resource_attrs(config, diags);
    etcd::validate(config, diags);
    let too_many = config
        .get_attr("nodes")
        .and_then(Value::as_entries)
        .is_some_and(|n| n.len() > defaults::MAX_NODES);
    if too_many || !spec_inputs_known(config) {
        return;
    }
    let Some(m) = model_of(config) else {
        return;
    };
    if let Some(s) = config.get_attr("machine_secrets").and_then(Value::as_str) {
        if let Err(e) = SecretsBundle::from_yaml(s) {
            diags.error_at(
                AttributePath::attr("machine_secrets"),
                "Invalid secrets bundle",
                e.to_string(),
            );
        }
    }
    for issue in waddle_talos::validate(&build_spec(&m)) {
        let path = to_attr_path(&issue.path);
        let detail = super::named(&path, &issue.message);
        if issue.is_error() {
            diags.error_at(path, "Invalid cluster configuration", detail);
        } else {
            diags.warning_at(path, "Cluster configuration warning", detail);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Planning
// ---------------------------------------------------------------------------------------

/// Nested attributes that are optional + computed only to work around Terraform < 1.0.9.
const NESTED_AS_CONFIGURED: &[&str] =
    &["nodes", "image", "inline_manifests", "timeouts", "upgrade"];

/// Computes the plan-time values: generated MACs, defaulted placement node, kept VM ids,
/// node addresses, machine configurations when the secrets are known, and what the update
/// will leave unchanged.
pub fn plan_values(
    provider: Option<&ProviderConfig>,
    config: &Value,
    prior: Option<&ClusterModel>,
    plan: &mut Value,
    diags: &mut Diagnostics,
) {
    // Nested attributes declared optional + computed for old Terraform versions (see the
    // schema) are planned exactly as configured.
    for a in NESTED_AS_CONFIGURED {
        if let Some(v) = config.get_attr(a) {
            plan.set_path(&AttributePath::attr(*a), v.clone());
        }
    }
    let cluster_name = plan
        .get_attr("cluster_name")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(c) = &cluster_name {
        plan.set_path(&AttributePath::attr("id"), Value::from(c.as_str()));
    }
    let prior_nodes = prior.map(|p| p.nodes()).unwrap_or_default();
    // Proxmox nodes need a Proxmox VE node: the placement's or the provider's default.
    let provider_node_known =
        provider.is_some_and(|p| !p.unknown.contains(&crate::provider::attr::NODE));
    let provider_node = provider.and_then(|p| p.default_node());
    if let Some(entries) = config.get_attr("nodes").and_then(Value::as_entries) {
        for (name, n) in entries {
            let px = n.get_attr("proxmox").cloned().unwrap_or(Value::Null);
            if px.is_null() || !px.is_known() {
                continue;
            }
            if px.get_attr("node").is_some_and(Value::is_null)
                && provider_node_known
                && provider_node.is_none()
            {
                diags.error_at(
                    AttributePath::attr("nodes")
                        .then_key(name)
                        .then_attr("proxmox")
                        .then_attr("node"),
                    "Missing Proxmox node",
                    "set nodes[...].proxmox.node or the provider's `node` (PROXMOX_VE_NODE)",
                );
            }
        }
    }

    // node_addresses
    if let Some(entries) = plan.get_attr("nodes").and_then(Value::as_entries).cloned() {
        let mut addrs = BTreeMap::new();
        let mut known = true;
        for (k, n) in entries {
            match n.get_attr("address").and_then(Value::as_str) {
                Some(a) => {
                    addrs.insert(k, Value::from(a.split('/').next().unwrap_or(a)));
                }
                None => known = false,
            }
        }
        plan.set_path(
            &AttributePath::attr("node_addresses"),
            if known {
                Value::Map(addrs)
            } else {
                Value::unknown()
            },
        );
    } else {
        plan.set_path(&AttributePath::attr("node_addresses"), Value::unknown());
    }

    // machine configurations: known when the secrets and the spec inputs are
    let secrets = plan
        .get_attr("machine_secrets")
        .and_then(Value::as_str)
        .map(str::to_string);
    // (Control planes' configurations hold every input: see `inputs`.)
    let mut configs_known = false;
    if let (Some(sec), true) = (secrets, spec_inputs_known(plan) && inputs::known(plan)) {
        if let (Ok(bundle), Some(m)) = (SecretsBundle::from_yaml(&sec), model_of(plan)) {
            // An error is reported by validation.
            if let Ok(configs) = inputs::render_configs(&m, &bundle) {
                let out = configs
                    .into_iter()
                    .map(|(k, c)| (k, Value::from(c.as_str())))
                    .collect();
                plan.set_path(
                    &AttributePath::attr("machine_configurations"),
                    Value::Map(out),
                );
                configs_known = true;
            }
        }
    }
    if !configs_known {
        plan.set_path(
            &AttributePath::attr("machine_configurations"),
            Value::unknown(),
        );
    }

    let nodes_known = plan_known(plan, "nodes");
    let default_node = if provider_node_known {
        provider_node
    } else {
        None
    };
    let Some(prior) = prior else {
        for a in [
            "talosconfig",
            "kubeconfig",
            "proxmox_vms",
            "proxmox_images",
            "bootstrapped",
        ] {
            plan.set_path(&AttributePath::attr(a), Value::unknown());
        }
        let (status, versions) = match (nodes_known, model_of(plan)) {
            (true, Some(m)) => (
                status_value(&changes::node_status(&m, None, &BTreeMap::new())),
                versions_value(upgrade::planned(None, &m).as_ref()),
            ),
            _ => (Value::unknown(), Value::unknown()),
        };
        plan.set_path(&AttributePath::attr("node_status"), status);
        plan.set_path(&AttributePath::attr("node_versions"), versions);
        return;
    };

    // Update: what happens to each node, and what stays.
    let new_model = model_of(plan).unwrap_or_default();
    let new_nodes = new_model.nodes();
    let actions = changes::classify(prior, &new_model, default_node);
    if nodes_known {
        for (path, msg) in changes::refusals(prior, &new_model, &actions) {
            diags.error_at(path, "Unsafe change refused", msg);
        }
        for (path, msg) in upgrade::refusals(prior, &new_model) {
            diags.error_at(path, "Upgrade refused", msg);
        }
        if let Some(w) = upgrade::warning_text(prior, &new_model, &actions) {
            diags.warning_at(
                AttributePath::attr("talos_version"),
                "Nodes will be upgraded in place",
                w,
            );
        }
        if let Some(w) = changes::warning_text(prior, &actions) {
            diags.warning_at(
                AttributePath::attr("nodes"),
                "Nodes will be re-created, deleted or restarted",
                w,
            );
        }
    }
    let cps = |nodes: &BTreeMap<String, NodeModel>| -> Vec<String> {
        nodes
            .iter()
            .filter(|(_, n)| n.role == "controlplane")
            .map(|(_, n)| node_ip(n).to_string())
            .collect()
    };
    let cps_same = cps(&prior_nodes) == cps(&new_nodes) && nodes_known;
    let keep = |plan: &mut Value, attr: &str, v: Value| {
        plan.set_path(&AttributePath::attr(attr), v);
    };
    keep(
        plan,
        "talosconfig",
        match (&prior.talosconfig, cps_same) {
            (Some(t), true) => Value::from(t.as_str()),
            _ => Value::unknown(),
        },
    );
    let endpoint_same = plan.get_attr("endpoint").and_then(Value::as_str) == Some(&prior.endpoint);
    keep(
        plan,
        "kubeconfig",
        match (&prior.kubeconfig, endpoint_same, prior.bootstrapped) {
            (Some(k), true, Some(true)) => Value::from(k.as_str()),
            _ => Value::unknown(),
        },
    );
    // An update never undoes a bootstrap.
    keep(
        plan,
        "bootstrapped",
        match prior.bootstrapped {
            Some(true) => Value::Bool(true),
            _ => Value::unknown(),
        },
    );
    if !nodes_known || prior.bootstrapped != Some(true) {
        for a in [
            "proxmox_vms",
            "proxmox_images",
            "node_status",
            "node_versions",
        ] {
            keep(plan, a, Value::unknown());
        }
        return;
    }
    keep(
        plan,
        "proxmox_vms",
        changes::planned_vms(prior, &new_model, &actions, default_node),
    );
    let no_new_vm = !actions
        .values()
        .any(|a| matches!(a, changes::Action::Create | changes::Action::Recreate(_)));
    let imgs = match (no_new_vm, &prior.proxmox_images) {
        (true, Some(i)) => match &schema().implied_type() {
            Type::Object(o) => o
                .attrs
                .get("proxmox_images")
                .and_then(|t| Value::from_typed(i, t).ok())
                .unwrap_or_else(Value::unknown),
            _ => Value::unknown(),
        },
        _ => Value::unknown(),
    };
    keep(plan, "proxmox_images", imgs);
    let mut status = changes::node_status(&new_model, prior.node_status.as_ref(), &actions);
    upgrade::annotate_status(&mut status, prior, &new_model, &actions);
    keep(plan, "node_status", status_value(&status));
    keep(
        plan,
        "node_versions",
        versions_value(upgrade::planned(Some(prior), &new_model).as_ref()),
    );
}

/// `node_versions` as a value of its schema type (`None`: null).
fn versions_value(v: Option<&BTreeMap<String, upgrade::NodeVersionModel>>) -> Value {
    let Some(v) = v else { return Value::Null };
    match &schema().implied_type() {
        Type::Object(o) => o
            .attrs
            .get("node_versions")
            .and_then(|t| Value::from_typed(v, t).ok())
            .unwrap_or_else(Value::unknown),
        _ => Value::unknown(),
    }
}

/// `node_status` as a value of its schema type.
fn status_value(s: &BTreeMap<String, NodeStatus>) -> Value {
    match &schema().implied_type() {
        Type::Object(o) => o
            .attrs
            .get("node_status")
            .and_then(|t| Value::from_typed(s, t).ok())
            .unwrap_or_else(Value::unknown),
        _ => Value::unknown(),
    }
}

fn plan_known(plan: &Value, attr: &str) -> bool {
    plan.get_attr(attr).is_some_and(Value::is_wholly_known)
}

// ---------------------------------------------------------------------------------------
// Resource
// ---------------------------------------------------------------------------------------

#[async_trait]
impl Resource for TalosCluster {
    fn type_name(&self) -> &str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn validate_config(&self, _ctx: &Context, config: &Value, diags: &mut Diagnostics) {
        validate_value(config, diags);
    }

    async fn modify_plan(
        &self,
        ctx: &Context,
        req: &PlanRequest,
        plan: &mut Plan,
        diags: &mut Diagnostics,
    ) {
        if req.is_destroy() {
            return;
        }
        let prior = if req.is_create() {
            None
        } else {
            model_of(&req.prior_state)
        };
        let provider = ctx.provider_data::<ProviderConfig>();
        plan_values(
            provider,
            &req.config,
            prior.as_ref(),
            &mut plan.state,
            diags,
        );
        etcd::plan_values(
            prior.as_ref(),
            &req.prior_state,
            &req.config,
            &mut plan.state,
            diags,
        );
        // A state moved from `talos_machine_secrets` has no cluster name yet: setting it is an
        // update, not a re-creation (a replacement would drop the moved secrets).
        waddle_framework::resource::requires_replace_if_prior_set(req, plan);
    }

    async fn create(
        &self,
        ctx: &Context,
        req: CreateRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        ops::create(ctx, req, diags).await
    }

    async fn read(&self, ctx: &Context, state: Value, diags: &mut Diagnostics) -> Option<Value> {
        ops::read(ctx, state, diags).await
    }

    async fn update(
        &self,
        ctx: &Context,
        req: UpdateRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        ops::update(ctx, req, diags).await
    }

    async fn delete(&self, ctx: &Context, prior_state: Value, diags: &mut Diagnostics) {
        ops::delete(ctx, prior_state, diags).await
    }

    async fn import_state(
        &self,
        _ctx: &Context,
        req: ImportRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let identity = req.identity.as_ref().filter(|_| req.id.is_empty());
        if identity.is_some_and(|i| i.get_attr("secrets_file").is_none_or(Value::is_null)) {
            diags.error(
                "Invalid import identity",
                "importing a cluster needs its secrets: set `secrets_file` (the path of the \
                 cluster's secrets.yaml, as `talosctl gen secrets` writes it) next to \
                 `cluster_name`",
            );
            return None;
        }
        match import_identity().resolve(&req.id, identity) {
            Ok(id) => ops::import(&id, diags),
            Err(e) => {
                diags.error("Invalid import identity", e);
                None
            }
        }
    }

    fn import_identity(&self) -> Option<ImportIdentity> {
        Some(import_identity())
    }

    async fn move_state(
        &self,
        _ctx: &Context,
        req: MoveStateRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        ops::moved::move_state(&req, diags)
    }
}

/// The identity of a cluster: its name, and (to import, never in state) the path of its
/// secrets.yaml: the import ID `<cluster_name>:<path>`.
fn import_identity() -> ImportIdentity {
    ImportIdentity::new(
        ":",
        vec![
            IdentityPart::string("cluster_name", "Name of the cluster."),
            IdentityPart::string(
                "secrets_file",
                "Path of the cluster's secrets.yaml; needed to import, never kept.",
            )
            .optional()
            .from_state(|_| Value::Null),
        ],
    )
}

/// Converts the model back into a state value.
pub fn to_value(m: &ClusterModel, diags: &mut Diagnostics) -> Option<Value> {
    match schema().from_typed(m) {
        Ok(v) => Some(v),
        Err(e) => {
            diags.error("Internal error", format!("encoding the state: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod etcd_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod update_tests;
#[cfg(test)]
mod upgrade_tests;
