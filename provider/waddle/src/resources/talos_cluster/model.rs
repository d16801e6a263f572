//! The typed state of `waddle_talos_cluster` and what is derived from it: the
//! [`ClusterSpec`] the machine configurations are rendered from, generated MACs, the disk
//! image's file name, and the conversions between state values and the model.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use waddle_framework::prelude::*;
use waddle_talos::{ClusterSpec, Cni, InlineManifest, NodeSpec, Role};

use super::timeouts::{Op, TimeoutsModel};
use super::{defaults, etcd, schema, upgrade};

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
    /// Write-only: always null in a state or plan value (the bundle is read from the
    /// configuration by [`super::wo`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_secrets_wo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_secrets_wo_version: Option<i64>,
    pub on_destroy: Option<String>,
    pub timeouts: Option<TimeoutsModel>,
    pub nodes: Option<BTreeMap<String, NodeModel>>,
    pub talosconfig: Option<String>,
    pub kubeconfig: Option<String>,
    pub client_configuration: Option<ClientConfigModel>,
    pub machine_configurations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_configurations_masked: Option<BTreeMap<String, String>>,
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
