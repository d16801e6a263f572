//! Resource `waddle_talos_cluster`: Proxmox VMs (or existing machines) turned into a
//! bootstrapped Talos Linux cluster, kept in line with the configuration on every apply.
//!
//! Layout:
//! * this file: defaults and the [`Resource`] impl dispatching to the rest;
//! * `schema.rs`, `model.rs` (the state and what is derived from it), `validate.rs`
//!   (plan-time checks), `plan.rs` (`modify_plan`);
//! * [`ops`]: the orchestration, one file per operation (create, read, update in phases,
//!   delete, import) against Proxmox VE and the Talos API;
//! * [`changes`], `roll`, [`upgrade`], [`etcd`], [`inputs`]: what an update does to each node,
//!   re-creations, upgrades, etcd snapshots, the inputs line of a machine configuration.
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
mod model;
pub mod ops;
mod plan;
mod roll;
mod schema;
pub mod upgrade;
mod validate;
pub mod wo;

use std::time::Duration;

use waddle_framework::prelude::*;

use crate::provider::ProviderConfig;

use super::timeouts::{self, Op};
pub use super::timeouts::{parse_duration, TimeoutsModel};
pub use model::*;
pub use ops::{read_secrets_file, SecretsFileError, MAX_SECRETS_FILE};
pub use plan::plan_values;
pub use schema::schema;
pub use validate::{to_attr_path, validate_value};

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
        wo::plan(&req.config, prior.as_ref(), plan, diags);
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

#[cfg(test)]
mod etcd_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod update_tests;
#[cfg(test)]
mod upgrade_tests;
#[cfg(test)]
mod wo_tests;
