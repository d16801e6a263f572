//! waddle-talos: Talos Linux domain logic for the waddle provider.
//!
//! * [`secrets`]: the cluster secrets bundle (Talos key types, `secrets.yaml` import/export)
//!   and Talos API client certificates.
//! * [`spec`]: the desired cluster ([`ClusterSpec`], [`NodeSpec`]).
//! * [`validate`]: plan-time validation with attribute paths ([`Issue`]).
//! * [`config`]: per-node Talos v1.12 multi-document machine configuration.
//! * [`patch`]: strategic-merge and JSON6902 config patches.
//! * [`structure`]: in-crate structural checks of Talos documents.
//! * [`talosconfig`]: the talosctl client configuration.
//!
//! # Resource shape (`waddle_talos_cluster`)
//!
//! The resource maps its attributes onto [`ClusterSpec`] one to one:
//!
//! | attribute | type | default | field |
//! |---|---|---|---|
//! | `cluster_name` | string | required | [`ClusterSpec::cluster_name`] |
//! | `endpoint` | string | required, `https://VIP:6443` | [`ClusterSpec::endpoint`] |
//! | `vip` | string | none | [`ClusterSpec::vip`] |
//! | `talos_version` | string | `v1.12.11` | [`ClusterSpec::talos_version`] |
//! | `kubernetes_version` | string | `1.35.0` | [`ClusterSpec::kubernetes_version`] |
//! | `installer_image` | string | from `waddle_talos_image` | [`ClusterSpec::installer_image`] |
//! | `cni` | string `none`/`flannel` | `none` | [`ClusterSpec::cni`] |
//! | `kube_proxy` | bool | false | [`ClusterSpec::kube_proxy`] |
//! | `allow_scheduling_on_control_planes` | bool | true | |
//! | `cert_sans` | list(string) | [] | |
//! | `nameservers` | list(string) | 1.1.1.1, 8.8.8.8 | |
//! | `inline_manifests` | list(object{name, contents}) | [] | |
//! | `disk_encryption` | bool | false | TPM-sealed LUKS2 STATE + EPHEMERAL |
//! | `secureboot` | bool | false | |
//! | `discovery` | bool | true | |
//! | `config_patches` | list(string) | [] | applied to every node |
//! | `nodes` | map(object) | required | [`NodeSpec`] by name |
//!
//! Node object: `role` (`controlplane`/`worker`), `address` (CIDR), `gateway`, `mac`,
//! `interface`, `install_disk` (`/dev/sda`), `hostname` (the key), `node_labels`,
//! `config_patches`, plus Proxmox placement handled by the resource.

pub mod config;
pub mod image;
pub mod issue;
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
