//! Resource `waddle_network`: a private, NATed IPv4 network on Proxmox VE built from SDN
//! objects: a `simple` zone, one vnet in it (the Linux bridge VMs attach to) and one subnet
//! with a gateway on the host, optional source NAT to the outside and an optional DHCP range.
//!
//! # Attributes
//! `zone`, `vnet` (SDN ids), `alias`, `cidr`, `gateway` (default: first host of `cidr`),
//! `snat` (default `true`), `dhcp_range` (`{ start, end }`), `nodes` (default: every node);
//! computed `id` = `<zone>/<vnet>` and `bridge` (= the vnet name, usable as a VM NIC bridge).
//!
//! # Replace or update in place
//! * **Replacement**: `zone`, `vnet`, `cidr` (they name the SDN objects).
//! * **In place**: `alias` (vnet `PUT`), `gateway`, `snat`, `dhcp_range` (subnet `PUT`),
//!   `nodes` and the zone's DHCP switch (zone `PUT`), each followed by `PUT /cluster/sdn`.
//!
//! # Lifecycle
//! * **Plan**: ids, CIDR, gateway, DHCP range and node names are checked with attribute paths
//!   before any API call (unknown values are skipped); `gateway`, `id` and `bridge` are planned
//!   from the configuration.
//! * **Create**: zone (`type=simple`, `dhcp=dnsmasq` only with a `dhcp_range`), vnet, subnet,
//!   then `PUT /cluster/sdn` (waits for the reload task). When a step fails, the state returned
//!   with the error records exactly the objects this resource created (an object it did not
//!   create, e.g. because the name is taken, is recorded as `""`), so destroy or the
//!   replacement of the tainted resource removes them and nothing else. Before each post, an
//!   object with the id that is still pending (never applied) and exactly as requested is
//!   adopted instead: what a create killed before `PUT /cluster/sdn` left (SDN objects cannot
//!   carry an ownership mark; `waddle_proxmox::sdn_adopt`). An applied one is refused, naming
//!   the import.
//! * **Read**: nothing left -> removed from state. A missing part (zone, vnet of this zone, or
//!   the subnet) reads as `""` for its id, which plans a replacement. Otherwise `alias`,
//!   `gateway`, `snat`, `dhcp_range` and `nodes` are refreshed (drift shows as an in-place
//!   update). Pending (not yet applied) SDN edits made outside Terraform read as current.
//! * **Delete**: subnet, vnet (only if it still belongs to the zone), zone, `PUT /cluster/sdn`.
//!   Absent objects are skipped.
//! * **Import**: `<zone>/<vnet>`; the vnet's single subnet is adopted.

use waddle_framework::prelude::*;

use super::timeouts;

mod model;
pub mod ops;
mod plan;
mod schema;
mod validate;

pub use model::{api_bool, api_str, dhcp_from_api, DhcpRange, NetworkState};
pub use schema::schema;
pub use validate::{
    check_host, first_host, parse_import_id, parse_network, validate, validate_alias,
    validate_sdn_id, NetworkError,
};

/// Type name.
pub const TYPE_NAME: &str = "waddle_network";

/// Default deadlines of create, update and delete (`timeouts`).
pub const TIMEOUTS: timeouts::Defaults = timeouts::Defaults {
    create: std::time::Duration::from_secs(5 * 60),
    update: std::time::Duration::from_secs(5 * 60),
    delete: std::time::Duration::from_secs(5 * 60),
};

/// Maximum length of an SDN zone or vnet id (PVE's `pve-sdn-zone-id` / `pve-sdn-vnet-id`).
pub const SDN_ID_MAX: usize = 8;

/// Example configuration shown in the documentation.
pub const EXAMPLE: &str = r#"# The platform's private network: 10.10.0.0/24 behind NAT, gateway 10.10.0.1 on the
# Proxmox VE host.
resource "waddle_network" "private" {
  zone  = "waddle"
  vnet  = "wdlnet"
  alias = "waddle private network"
  cidr  = "10.10.0.0/24"
  # gateway = "10.10.0.1"  # default: the first host of cidr
  # snat    = true         # default

  # Optional: hand out addresses with dnsmasq (installed on the nodes).
  # dhcp_range = {
  #   start = "10.10.0.100"
  #   end   = "10.10.0.200"
  # }
}

# Attach VM NICs with bridge = waddle_network.private.bridge
output "private_bridge" {
  value = waddle_network.private.bridge
}

# Import an existing simple zone and its vnet:
#   terraform import waddle_network.private waddle/wdlnet
"#;

/// The `waddle_network` resource (register it as `Typed(Network)`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Network;

#[async_trait]
impl TypedResource for Network {
    type State = NetworkState;

    fn type_name(&self) -> &str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn validate(&self, _ctx: &Context, config: &Value, diags: &mut Diagnostics) {
        validate(config, diags);
    }

    async fn modify_plan(
        &self,
        _ctx: &Context,
        req: &PlanRequest,
        plan: &mut Plan,
        _diags: &mut Diagnostics,
    ) {
        plan::modify_plan(req, plan);
    }

    async fn create(
        &self,
        ctx: &Context,
        planned: NetworkState,
        _diags: &mut Diagnostics,
    ) -> ResourceResult<NetworkState, NetworkState> {
        ops::create::create(ctx, planned).await
    }

    async fn read(
        &self,
        ctx: &Context,
        state: NetworkState,
        diags: &mut Diagnostics,
    ) -> ResourceResult<Option<NetworkState>, NetworkState> {
        ops::read::read(ctx, state, diags).await
    }

    async fn update(
        &self,
        ctx: &Context,
        prior: NetworkState,
        planned: NetworkState,
        _diags: &mut Diagnostics,
    ) -> ResourceResult<NetworkState, NetworkState> {
        ops::update::update(ctx, prior, planned).await
    }

    async fn delete(
        &self,
        ctx: &Context,
        prior: NetworkState,
        _diags: &mut Diagnostics,
    ) -> ResourceResult<(), NetworkState> {
        ops::delete::delete(ctx, prior).await
    }

    async fn import(
        &self,
        _ctx: &Context,
        id: &str,
        _diags: &mut Diagnostics,
    ) -> ResourceResult<NetworkState, NetworkState> {
        ops::import::import(id)
    }

    fn import_identity(&self) -> Option<ImportIdentity> {
        Some(ImportIdentity::new(
            "/",
            vec![
                IdentityPart::string("zone", "SDN zone."),
                IdentityPart::string("vnet", "SDN vnet in the zone."),
            ],
        ))
    }
}

#[cfg(test)]
mod tests;
