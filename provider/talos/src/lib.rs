//! waddle-talos: Talos Linux domain logic for the waddle provider.
//!
//! * [`secrets`]: the cluster secrets bundle (Talos key types, `secrets.yaml` import/export)
//!   and Talos API client certificates.
//! * [`spec`]: the desired cluster ([`ClusterSpec`], [`NodeSpec`]).
//! * [`mod@validate`]: plan-time validation with attribute paths ([`Issue`]).
//! * [`config`]: per-node Talos v1.12 multi-document machine configuration.
//! * [`patch`]: strategic-merge and JSON6902 config patches.
//! * [`structure`]: in-crate structural checks of Talos documents.
//! * [`talosconfig`]: the talosctl client configuration.
//! * [`api`]: the Talos API (apid) gRPC client: maintenance and mTLS connections, proxies.
//!
//! # Resource shape (`waddle_talos_cluster`)
//!
//! `modules/talos-cluster` is written against this shape; the resource maps it onto
//! [`ClusterSpec`] and reports [`validate()`] findings at the same attribute paths.
//!
//! | attribute | type | default | maps to |
//! |---|---|---|---|
//! | `cluster_name` | string | required | [`ClusterSpec::cluster_name`] |
//! | `endpoint` | string | required, e.g. `https://10.10.0.20:6443` | [`ClusterSpec::endpoint`] |
//! | `vip` | string | null | [`ClusterSpec::vip`] (Layer2VIPConfig on control planes) |
//! | `talos_version` | string | `v1.12.11` ([`versions::DEFAULT_TALOS_VERSION`]) | [`ClusterSpec::talos_version`] |
//! | `kubernetes_version` | string | `1.35.0` ([`versions::DEFAULT_KUBERNETES_VERSION`]) | [`ClusterSpec::kubernetes_version`] |
//! | `image` | object{`installer`, `disk_image_url`} | from `waddle_talos_image` (qemu-guest-agent + iscsi-tools) | `installer` -> [`ClusterSpec::installer_image`]; `disk_image_url` is what Proxmox downloads |
//! | `cni` | string `none` / `flannel` | `none` | [`ClusterSpec::cni`] |
//! | `kube_proxy` | bool | false | [`ClusterSpec::kube_proxy`] |
//! | `allow_scheduling_on_control_planes` | bool | true | [`ClusterSpec::allow_scheduling_on_control_planes`] |
//! | `cert_sans` | list(string) | [] | [`ClusterSpec::cert_sans`] |
//! | `nameservers` | list(string) | [`1.1.1.1`, `8.8.8.8`] | [`ClusterSpec::nameservers`] |
//! | `inline_manifests` | list(object{`name`, `contents`}) | [] | [`ClusterSpec::inline_manifests`] |
//! | `disk_encryption` | bool | false | [`ClusterSpec::disk_encryption`] (TPM-sealed LUKS2 STATE + EPHEMERAL) |
//! | `secureboot` | bool | false | [`ClusterSpec::secureboot`] |
//! | `discovery` | bool | true | [`ClusterSpec::discovery`] |
//! | `config_patches` | list(string) | [] | [`ClusterSpec::config_patches`] (every node, before its own) |
//! | `machine_secrets` | string, sensitive | generated | an existing `secrets.yaml` to import ([`SecretsBundle::from_yaml`]) |
//! | `on_destroy` | string `graceful` / `forced` / `none` | `graceful` | node reset before VM deletion |
//! | `timeouts` | object{`create`, `update`, `delete`} | | overall deadlines |
//! | `nodes` | map(object) | required | [`ClusterSpec::nodes`] |
//!
//! Node object (`nodes["<name>"]`, the name is the default hostname):
//!
//! | attribute | type | default | maps to |
//! |---|---|---|---|
//! | `role` | string `controlplane` / `worker` | required | [`NodeSpec::role`] |
//! | `address` | string CIDR | required, e.g. `10.10.0.10/24` | [`NodeSpec::address`] |
//! | `gateway` | string | null | [`NodeSpec::gateway`] |
//! | `mac` | string | null (generated for Proxmox VMs) | [`NodeSpec::mac`]: NIC selected by MAC |
//! | `interface` | string | null | [`NodeSpec::interface`]: NIC by name when there is no MAC |
//! | `install_disk` | string | `/dev/sda` | [`NodeSpec::install_disk`] |
//! | `hostname` | string | the node's key | [`NodeSpec::hostname`] |
//! | `node_labels` | map(string) | {} | [`NodeSpec::node_labels`] |
//! | `config_patches` | list(string) | [] | [`NodeSpec::config_patches`] |
//! | `proxmox` | object{`node`, `storage`, `bridge`, `vmid`, `cores`, `memory` (MiB), `disk_size` (GiB)} | null | VM placement |
//! | `maintenance_address` | string | null | for nodes without `proxmox`: where the node answers in maintenance mode |
//!
//! Computed outputs: `talosconfig` (sensitive, [`talosconfig::talosconfig`]), `kubeconfig`
//! (sensitive), `client_configuration` (object{`ca_certificate`, `client_certificate`,
//! `client_key` (sensitive)}), `machine_secrets` (sensitive, [`SecretsBundle::to_yaml`]),
//! `machine_configurations` (map, sensitive, [`render_node_config`]), `node_addresses`
//! (map of node name to address without prefix).

pub mod api;
pub mod config;
pub mod image;
pub mod issue;
pub mod mask;
pub mod net;
pub mod patch;
mod pem;
pub mod secrets;
pub mod spec;
pub mod structure;
pub mod talosconfig;
pub mod validate;
pub mod versions;
pub mod yaml;

pub use config::{render_node_config, render_node_documents};
pub use issue::{AttrPath, Issue, PathStep, Severity};
pub use secrets::{CertAndKey, Clock, FixedClock, SecretsBundle, SecretsError, SystemClock};
pub use spec::{ClusterSpec, Cni, InlineManifest, NodeSpec, Role};
pub use validate::validate;

/// Errors from rendering configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec (or a patch) has validation errors.
    #[error("invalid cluster configuration: {}", .0.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Issue>),
    /// No such node in the spec.
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    /// Secrets problem.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// Internal rendering failure.
    #[error("rendering the machine configuration failed: {0}")]
    Render(String),
}
