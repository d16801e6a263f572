//! Resource `waddle_sni_proxy`: a small Debian VM on Proxmox VE running HAProxy in TCP mode,
//! passing TLS connections by SNI (still encrypted) to private backends. It is the HAProxy
//! payload on the shared VM layer (`resources::vm`: schema fragment, placement, seed ISO,
//! create/read/update/delete/import, ownership, see `vm::ops`).
//!
//! # Attributes
//! The shared VM attributes, `public_nic` (`net0`, default gateway) and `private_nic`
//! (`net1`), the routing (`routes`, `http_backend`, `listen`, `maxconn`, `proxy_timeouts`)
//! and computed outputs (`id` = `<node>/<vmid>`, `haproxy_cfg`, `exact_map`, `wildcard_map`,
//! `config_hash`, `public_address`, `private_address`, `seed_iso`).
//!
//! # Replace or update in place
//! * **In place** (through the QEMU guest agent, no reboot): the routing, and drift of the
//!   live configuration.
//! * **Replacement**: everything about the VM: placement and NICs define it; `admin_user`,
//!   `ssh_authorized_keys`, `dns_servers` and the addresses are cloud-init inputs applied once,
//!   at first boot. The VM holds no data, so a rebuild is cheap and always converges.
//!
//! # The payload
//! * **Plan**: the routing is validated with `waddle_haproxy::validate` (errors at their
//!   attribute paths, e.g. `routes[1].hostnames[0]`); when it is known, the plan already holds
//!   the rendered `haproxy_cfg`, maps and `config_hash`.
//! * **Create**: the seed carries the rendered files (`waddle_haproxy::payload`); the create
//!   waits until the VM reports the expected hash in `/etc/haproxy/waddle-config.sha256` and
//!   `haproxy` active (`ops::haproxy::wait_ready`).
//! * **Update**: new versioned maps beside the old ones, the config to `haproxy.cfg.new`,
//!   `haproxy -c` on the VM (a refusal leaves the running HAProxy on its old config and fails
//!   the apply with HAProxy's message), then swap and a seamless reload, old maps removed.
//! * **Read**: the live config and maps are hashed (`waddle_haproxy::config_hash`); on drift
//!   the file outputs take the live values, so the next plan updates them back. A stopped VM
//!   reads as drift (empty `config_hash`); the update starts it.
//! * **Destroy**: the VM, its seed ISO, and the downloaded Debian image once no other waddle
//!   VM on the node was created from it (`vm::owned::release_image`).

use std::time::Duration;

use waddle_framework::prelude::*;
use waddle_haproxy::Rendered;
use waddle_proxmox::cloud_config::CloudConfig;
use waddle_proxmox::Guest;

use super::timeouts::{self, Deadline};
use super::vm::resource::PayloadError;
use super::vm::{self, NicLayout, VmDefaults, VmResource};
use ops::haproxy;

mod model;
pub mod ops;
mod plan;
mod schema;
mod validate;

pub use model::{
    with_payload, Listen, PrivateNic, ProxyTimeouts, PublicNic, Route, RoutingError, SniProxyState,
};
pub use schema::schema;
pub use validate::validate;

/// Type name.
pub const TYPE_NAME: &str = "waddle_sni_proxy";

/// Default deadlines of create (dominated by waiting for the VM to report HAProxy running
/// with the expected config), update and delete (`timeouts`).
pub const TIMEOUTS: timeouts::Defaults = timeouts::Defaults {
    create: Duration::from_secs(15 * 60),
    update: Duration::from_secs(15 * 60),
    delete: Duration::from_secs(10 * 60),
};

/// The shared VM attributes' defaults.
pub const DEFAULTS: VmDefaults = VmDefaults {
    name: "sni-proxy",
    ..VmDefaults::DEBIAN
};

/// The NICs: `public_nic` (`net0`, with the default gateway) and `private_nic` (`net1`).
/// Debian cloud images name them `ens18` and `ens19`; the seed matches them by MAC and keeps
/// these names.
pub const NICS: [NicLayout; 2] = [
    NicLayout {
        attr: "public_nic",
        address: "public_address",
        iface: "ens18",
        has_gateway: true,
    },
    NicLayout {
        attr: "private_nic",
        address: "private_address",
        iface: "ens19",
        has_gateway: false,
    },
];

/// The `waddle_sni_proxy` resource (register it as `Typed(Vm(SniProxy))`).
#[derive(Debug, Default, Clone, Copy)]
pub struct SniProxy;

#[async_trait]
impl VmResource for SniProxy {
    type State = SniProxyState;
    type Payload = Rendered;

    const TYPE_NAME: &'static str = TYPE_NAME;
    const LABEL: &'static str = "SNI proxy";
    const DEFAULTS: VmDefaults = DEFAULTS;
    const NICS: &'static [NicLayout] = &NICS;
    const TIMEOUTS: timeouts::Defaults = TIMEOUTS;
    const TAGS: &'static [&'static str] = &["sni-proxy"];
    const DESCRIPTION: &'static str =
        "waddle_sni_proxy: HAProxy SNI passthrough (managed by OpenTofu/Terraform)";
    const INSTANCE_PREFIX: &'static str = "waddle-sni";
    const INPUTS_PATH: &'static str = waddle_haproxy::guest::INPUTS_PATH;
    const SEED_ISO_PREFIX: &'static str = "waddle-sni-proxy";
    const INVALID: &'static str = "Invalid SNI proxy configuration";
    const COMPUTED: &'static [&'static str] =
        &["haproxy_cfg", "exact_map", "wildcard_map", "config_hash"];

    fn schema(&self) -> Schema {
        schema()
    }

    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        validate::payload(config, diags);
    }

    fn plan(&self, req: &PlanRequest, plan: &mut Plan, diags: &mut Diagnostics) {
        plan::plan(req, plan, diags);
    }

    fn prepare(&self, st: &SniProxyState) -> Result<Rendered, PayloadError> {
        Ok(st.rendered()?)
    }

    fn record(&self, st: &mut SniProxyState, r: &Rendered) {
        st.set_rendered(r);
    }

    fn seed(&self, r: &Rendered, ci: CloudConfig) -> CloudConfig {
        with_payload(ci, r)
    }

    async fn ready(
        &self,
        guest: &Guest<'_>,
        r: &Rendered,
        deadline: Deadline,
    ) -> Result<(), PayloadError> {
        Ok(haproxy::wait_ready(guest, &r.config_hash, deadline).await?)
    }

    async fn apply(&self, guest: &Guest<'_>, r: &Rendered) -> Result<(), PayloadError> {
        Ok(haproxy::apply(guest, r).await?)
    }

    async fn refresh(&self, guest: &Guest<'_>, st: &mut SniProxyState, diags: &mut Diagnostics) {
        match haproxy::live(guest).await {
            // Drift: the file outputs take the live values (the next plan updates them back).
            Ok(Some(live)) if st.config_hash.as_deref() != Some(live.config_hash.as_str()) => {
                st.set_rendered(&live);
            }
            Ok(Some(_)) => {}
            Ok(None) => st.config_hash = Some(String::new()),
            Err(e) => vm::resource::unreadable(diags, "HAProxy", guest, e),
        }
    }

    fn importing(&self, st: &SniProxyState) -> bool {
        st.routes.is_none() && st.public_nic.is_none()
    }
}

#[cfg(test)]
mod tests;
