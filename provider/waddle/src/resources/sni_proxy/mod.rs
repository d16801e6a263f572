//! Resource `waddle_sni_proxy`: a small Debian VM on Proxmox VE running HAProxy in TCP mode,
//! passing TLS connections by SNI (still encrypted) to private backends.
//!
//! # Attributes
//! The shape is the one documented in `waddle_haproxy::spec` (and used by `modules/haproxy`):
//! VM placement (`name`, `node`, `vmid`, `storage`, `cores`, `memory`, `disk_size`,
//! `image_url`, `image_storage`), network and access (`public_nic`, `private_nic`,
//! `dns_servers`, `admin_user`, `ssh_authorized_keys`), routing (`routes`, `http_backend`,
//! `listen`, `maxconn`, `proxy_timeouts`) and computed outputs (`id` = `<node>/<vmid>`,
//! `haproxy_cfg`, `exact_map`, `wildcard_map`, `config_hash`, `public_address`,
//! `private_address`, `seed_iso`).
//!
//! # Replace or update in place
//! * **In place** (through the QEMU guest agent, no reboot): `routes`, `http_backend`,
//!   `listen`, `maxconn`, `proxy_timeouts`, and drift of the live configuration.
//! * **Replacement**: everything about the VM. Placement (`node`, `vmid`, `storage`,
//!   `image_url`, `image_storage`, `disk_size`, `cores`, `memory`, `name`) and the NIC layout
//!   (`public_nic`, `private_nic`) define the VM; `admin_user`, `ssh_authorized_keys`,
//!   `dns_servers` and the addresses are cloud-init inputs that Debian applies once, at first
//!   boot, so changing them on a running VM would silently do nothing. The VM holds no data,
//!   so a rebuild is cheap and always converges.
//!
//! # Lifecycle (on the shared VM layer, `resources::vm`)
//! * **Plan**: the routing is validated with `waddle_haproxy::validate` (errors carry the
//!   attribute path, e.g. `routes[1].hostnames[0]`) before any API call; unknown values are
//!   skipped. When the routing is known, the plan already contains the rendered
//!   `haproxy_cfg`, maps and `config_hash`.
//! * **Create**: `download-url` of the Debian image into `import` content (skipped when it is
//!   already there), `POST /nodes/{node}/qemu` with both NICs, `scsi0` imported from the
//!   image, `agent=1`; the NoCloud seed ISO (`user-data` from `render_cloud_init`, NICs matched
//!   by the MACs Proxmox assigned) is built in memory, uploaded as `iso` content and attached
//!   as `ide2`; start; then the guest agent is polled until the VM reports the expected hash in
//!   `/etc/haproxy/waddle-config.sha256` and `haproxy` active (bounded by
//!   `timeouts.create`, cancellable). Once the VM exists every error returns the partial state
//!   (id, vmid, seed ISO) with the error, so the next apply or destroy removes it.
//! * **Update** (routing): the guest agent writes the new versioned maps beside the old ones,
//!   the new config to `haproxy.cfg.new` and the hash to the marker's `.new`; `haproxy -c`
//!   checks the new config on the VM. If it fails, the `.new` files are removed, the running
//!   HAProxy keeps the old config, and the apply fails with HAProxy's message. Otherwise the
//!   files are renamed into place and HAProxy is reloaded (master-worker reload: established
//!   connections stay on the old workers), then the maps of the previous version are removed.
//!   These are the steps of `waddle_haproxy::update_script`, run as separate agent commands so
//!   each step's result is known.
//! * **Read**: a VM that no longer exists is removed from state. Otherwise the live config and
//!   maps are read through the guest agent and hashed with `waddle_haproxy::config_hash`; on
//!   drift, `config_hash` (and the file outputs) take the live values, so the next plan shows
//!   an in-place update back to the configured routing. A stopped VM reads as drift (empty
//!   `config_hash`); the update starts it.
//! * **Delete**: ACPI shutdown (timeout [`SHUTDOWN_TIMEOUT`], then stop), delete with purge
//!   (and unreferenced disks), delete the uploaded seed ISO. The downloaded Debian image is a
//!   shared cache of the storage and is kept.
//! * **Import**: `terraform import waddle_sni_proxy.x <node>/<vmid>` or just `<vmid>` (the node
//!   is then looked up in the cluster). Attributes Proxmox cannot report back (cloud-init
//!   inputs such as addresses and keys, the image URL, the routing) are taken from the
//!   configuration at the next plan without forcing a replacement; the routing is then applied
//!   in place.

use std::time::Duration;

use waddle_framework::prelude::*;
use waddle_haproxy::Rendered;
use waddle_proxmox::cloud_config::CloudConfig;
use waddle_proxmox::Guest;

use super::timeouts::{self, Deadline};
use super::vm::resource::PayloadError;
use super::vm::{NicLayout, VmDefaults, VmError, VmResource};
use ops::haproxy;

mod model;
pub mod ops;
mod plan;
mod schema;
mod validate;

pub use super::vm::lifecycle::{image_file_name, parse_import_id};
pub use model::{
    refresh_from_config, seed_iso_name, with_payload, Listen, PrivateNic, ProxyTimeouts, PublicNic,
    Route, RoutingError, SniProxyState,
};
pub use schema::schema;
pub use validate::validate;

/// Type name.
pub const TYPE_NAME: &str = "waddle_sni_proxy";

/// Default `name`.
pub const DEFAULT_NAME: &str = "sni-proxy";
/// Default `storage`.
pub const DEFAULT_STORAGE: &str = "local-lvm";
/// Default `image_storage`.
pub const DEFAULT_IMAGE_STORAGE: &str = "local";
/// Default `image_url`: Debian 12 (bookworm) generic cloud image.
pub const DEFAULT_IMAGE_URL: &str =
    "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2";
/// Default `cores`.
pub const DEFAULT_CORES: i64 = 1;
/// Default `memory` (MiB).
pub const DEFAULT_MEMORY: i64 = 512;
/// Default `disk_size` (GiB).
pub const DEFAULT_DISK_SIZE: i64 = 8;
/// Default `admin_user`.
pub const DEFAULT_ADMIN_USER: &str = "waddle";
/// Default `dns_servers`.
pub const DEFAULT_DNS: [&str; 2] = ["1.1.1.1", "9.9.9.9"];
/// Default `maxconn`.
pub const DEFAULT_MAXCONN: i64 = 4096;

/// Default deadlines of create (dominated by waiting for the VM to report HAProxy running
/// with the expected config), update and delete (`timeouts`).
pub const TIMEOUTS: timeouts::Defaults = timeouts::Defaults {
    create: Duration::from_secs(15 * 60),
    update: Duration::from_secs(15 * 60),
    delete: Duration::from_secs(10 * 60),
};

/// ACPI shutdown timeout before the VM is stopped on delete.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// The shared VM attributes' defaults.
pub const DEFAULTS: VmDefaults = VmDefaults {
    name: DEFAULT_NAME,
    storage: DEFAULT_STORAGE,
    image_storage: DEFAULT_IMAGE_STORAGE,
    image_url: DEFAULT_IMAGE_URL,
    cores: DEFAULT_CORES,
    memory: DEFAULT_MEMORY,
    disk_size: DEFAULT_DISK_SIZE,
    admin_user: DEFAULT_ADMIN_USER,
    dns: DEFAULT_DNS,
};

/// The NICs: `public_nic` (`net0`, with the default gateway) and `private_nic` (`net1`).
/// Debian cloud images name them `ens18` and `ens19`; the seed matches them by MAC and keeps
/// these names.
pub const NICS: [NicLayout; 2] = [
    NicLayout {
        attr: "public_nic",
        iface: "ens18",
        has_gateway: true,
    },
    NicLayout {
        attr: "private_nic",
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
    const SHUTDOWN_TIMEOUT: Duration = SHUTDOWN_TIMEOUT;
    const TAGS: &'static [&'static str] = &["sni-proxy"];
    const DESCRIPTION: &'static str =
        "waddle_sni_proxy: HAProxy SNI passthrough (managed by OpenTofu/Terraform)";
    const INSTANCE_PREFIX: &'static str = "waddle-sni";
    const INPUTS_PATH: &'static str = model::INPUTS_PATH;
    const INVALID: &'static str = "Invalid SNI proxy configuration";
    const COMPUTED: &'static [&'static str] =
        &["haproxy_cfg", "exact_map", "wildcard_map", "config_hash"];

    fn schema(&self) -> Schema {
        schema()
    }

    fn seed_iso_name(&self, vmid: u32) -> String {
        seed_iso_name(vmid)
    }

    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        validate(config, diags);
    }

    async fn modify_plan(
        &self,
        ctx: &Context,
        req: &PlanRequest,
        plan: &mut Plan,
        diags: &mut Diagnostics,
    ) {
        plan::modify_plan(ctx, req, plan, diags);
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
        // Which maps does the running config use (to clean them up afterwards)?
        let old_cfg = guest
            .read_file(&r.paths.config)
            .await
            .map_err(VmError::api("reading the live config"))?;
        Ok(haproxy::apply(guest, r, old_cfg.as_deref()).await?)
    }

    async fn refresh(&self, guest: &Guest<'_>, st: &mut SniProxyState, diags: &mut Diagnostics) {
        match haproxy::live(guest).await {
            Ok(Some(live)) => {
                if st.config_hash.as_deref() != Some(live.hash.as_str()) {
                    st.haproxy_cfg = Some(live.cfg);
                    st.exact_map = Some(live.exact);
                    st.wildcard_map = Some(live.wildcard);
                    st.config_hash = Some(live.hash);
                }
            }
            Ok(None) => st.config_hash = Some(String::new()),
            Err(e) => diags.warning(
                "Cannot read the live HAProxy configuration",
                format!(
                    "guest agent of VM {}: {e}; the recorded config hash is kept",
                    guest.vmid()
                ),
            ),
        }
    }

    fn forget(&self, st: &mut SniProxyState) {
        st.config_hash = Some(String::new());
    }

    fn importing(&self, st: &SniProxyState) -> bool {
        st.routes.is_none() && st.public_nic.is_none()
    }
}

#[cfg(test)]
mod tests;
