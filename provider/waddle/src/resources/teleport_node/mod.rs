//! Resource `waddle_teleport_node`: an internal-only Teleport 18 node (auth, proxy, SSH,
//! Kubernetes and app services, GitHub SSO) on a Debian 12 VM with one private NIC. It is
//! the Teleport payload on the shared VM layer (`resources::vm`: schema fragment, placement,
//! seed ISO, create/read/update/delete/import, ownership; see `vm::ops`); the rendering and
//! checks are the domain crate `waddle_teleport`.
//!
//! # Attributes
//! The shared VM attributes, `private_nic` (`net0`, default `10.10.0.2/24` via `10.10.0.1`),
//! Teleport's inputs (`teleport_version`, `domain`, `public_addr`, `cluster_name`,
//! `acme_email`, `proxy_protocol`, `sni_routes`, `local_auth`, `github`, the client secret
//! as `github_client_secret` or write-only `github_client_secret_wo` +
//! `github_client_secret_wo_version`, `roles`, `ssh_labels`, `kubeconfig`, `apps`,
//! `proxmox_ui_uri`) and computed `web_url`, `ip_address`, `teleport_yaml`, `config_hash`.
//!
//! # Replace or update in place
//! * **In place** (guest agent): everything Teleport reads — teleport.yaml, apps, roles, team
//!   mappings, the connector, the client secret, the kubeconfig (file replaced, Teleport
//!   reloaded) and `teleport_version` within a major or to the next (package upgrade +
//!   restart; a skip is refused at plan with the path to take) — and drift of them.
//! * **Replacement**: the VM's own attributes (placement, NIC, cloud-init inputs) and
//!   `cluster_name` (Teleport cannot rename a cluster; the plan warns why).
//!
//! # Secrets
//! The seed ISO carries no secret (it stays on Proxmox storage). The client secret and the
//! kubeconfig go through the guest agent into root-only files; the connector file is removed
//! once `tctl create` took it. They are `sensitive` (or write-only), redacted in `Debug`
//! (`TeleportNodeState`, `TeleportPayload`) and never logged nor put in an argv, and never
//! kept in the inputs an import reads back.
//!
//! # The payload
//! * **Plan**: `waddle_teleport::validate` (errors at their paths), PROXY protocol against
//!   `sni_routes`, the upgrade path; when known, the plan holds `teleport_yaml` and
//!   `config_hash`.
//! * **Create**: the seed installs the pinned package from Teleport's apt repository and
//!   writes teleport.yaml; then (`ops::teleport::converge`) the kubeconfig, start, `/readyz`,
//!   roles and connector (`tctl create -f`), GitHub's verdict on the client secret,
//!   `/webapi/ping` (auth type github, our connector).
//! * **Update**: the same convergence on the running VM.
//! * **Read**: the live teleport.yaml, connector and roles hashed (`config_hash`); on drift
//!   `teleport_yaml`/`config_hash` take the live values and the next plan updates them back.
//!   The installed package version refreshes `teleport_version`; a stopped Teleport reads as
//!   drift (empty `config_hash`), so the next apply starts it.

use std::time::Duration;

use waddle_framework::prelude::*;
use waddle_proxmox::cloud_config::CloudConfig;
use waddle_proxmox::Guest;

use super::timeouts::{self, Deadline};
use super::vm::resource::PayloadError;
use super::vm::{NicLayout, VmDefaults, VmResource};
use ops::teleport;

mod model;
pub mod ops;
mod plan;
mod schema;
mod validate;

pub use model::{
    App, Github, PrivateNic, Role, SniRoute, TeamMapping, TeleportNodeState, TeleportPayload,
    INPUTS_PATH,
};
pub use schema::schema;
pub use validate::validate;

/// Type name.
pub const TYPE_NAME: &str = "waddle_teleport_node";
/// Default `teleport_version` (a current Teleport 18 release).
pub const DEFAULT_VERSION: &str = "18.8.2";
/// Default `private_nic.cidr`.
pub const DEFAULT_CIDR: &str = "10.10.0.2/24";
/// Default `private_nic.gateway`.
pub const DEFAULT_GATEWAY: &str = "10.10.0.1";
/// Default `proxmox_ui_uri`.
pub const DEFAULT_PROXMOX_UI: &str = "https://10.10.0.1:8006";

/// Default deadlines (create includes the package installation).
pub const TIMEOUTS: timeouts::Defaults = timeouts::Defaults {
    create: Duration::from_secs(20 * 60),
    update: Duration::from_secs(15 * 60),
    delete: Duration::from_secs(10 * 60),
};

/// The shared VM attributes' defaults.
pub const DEFAULTS: VmDefaults = VmDefaults {
    name: "teleport",
    cores: 2,
    memory: 2048,
    disk_size: 20,
    ..VmDefaults::DEBIAN
};

/// The one NIC: `private_nic` (`net0`, `ens18`, with the default gateway).
pub const NICS: [NicLayout; 1] = [NicLayout {
    attr: "private_nic",
    address: "ip_address",
    iface: "ens18",
    has_gateway: true,
}];

/// The `waddle_teleport_node` resource (register it as `Typed(Vm(TeleportNode))`).
#[derive(Debug, Default, Clone, Copy)]
pub struct TeleportNode;

#[async_trait]
impl VmResource for TeleportNode {
    type State = TeleportNodeState;
    type Payload = TeleportPayload;

    const TYPE_NAME: &'static str = TYPE_NAME;
    const LABEL: &'static str = "Teleport";
    const DEFAULTS: VmDefaults = DEFAULTS;
    const NICS: &'static [NicLayout] = &NICS;
    const TIMEOUTS: timeouts::Defaults = TIMEOUTS;
    const TAGS: &'static [&'static str] = &["teleport"];
    const DESCRIPTION: &'static str =
        "waddle_teleport_node: Teleport access node (managed by OpenTofu/Terraform)";
    const INSTANCE_PREFIX: &'static str = "waddle-teleport";
    const INPUTS_PATH: &'static str = model::INPUTS_PATH;
    const SEED_ISO_PREFIX: &'static str = "waddle-teleport";
    const INVALID: &'static str = "Invalid Teleport configuration";
    /// Computed attributes, and the secrets: neither is kept in the inputs an import reads.
    const COMPUTED: &'static [&'static str] = &[
        "web_url",
        "ip_address",
        "teleport_yaml",
        "config_hash",
        "github_client_secret",
        "github_client_secret_wo",
        "kubeconfig",
    ];

    fn schema(&self) -> Schema {
        schema()
    }

    fn validate(&self, config: &Value, diags: &mut Diagnostics) {
        validate::payload(config, diags);
    }

    fn plan(&self, req: &PlanRequest, plan: &mut Plan, diags: &mut Diagnostics) {
        plan::plan(req, plan, diags);
    }

    fn prepare(&self, st: &TeleportNodeState) -> Result<TeleportPayload, PayloadError> {
        Ok(model::payload_of(st)?)
    }

    fn record(&self, st: &mut TeleportNodeState, p: &TeleportPayload) {
        st.set_rendered(&p.rendered);
        st.web_url = Some(format!("https://{}", st.public_addr()));
        st.ip_address = Some(st.ip());
        if st.public_addr.is_none() {
            st.public_addr = Some(st.public_addr());
        }
        if st.cluster_name.is_none() {
            st.cluster_name = Some(st.public_addr());
        }
    }

    fn seed(&self, p: &TeleportPayload, ci: CloudConfig) -> CloudConfig {
        model::with_payload(ci, p)
    }

    async fn ready(
        &self,
        guest: &Guest<'_>,
        p: &TeleportPayload,
        deadline: Deadline,
    ) -> Result<(), PayloadError> {
        teleport::wait_installed(guest, &p.rendered.version, &deadline).await?;
        Ok(teleport::converge(guest, p, &deadline).await?)
    }

    async fn apply(&self, guest: &Guest<'_>, p: &TeleportPayload) -> Result<(), PayloadError> {
        let deadline = Deadline::start(timeouts::Op::Update, TIMEOUTS.update);
        Ok(teleport::converge(guest, p, &deadline).await?)
    }

    async fn refresh(
        &self,
        guest: &Guest<'_>,
        st: &mut TeleportNodeState,
        diags: &mut Diagnostics,
    ) {
        if self.importing(st) {
            // The live hash covers the configured roles and connector: read the inputs the VM
            // keeps first (the shared read adopts them again, a no-op then).
            if let Ok(Some(json)) = guest.read_file(INPUTS_PATH).await {
                super::vm::ops::adopt_inputs(st, &json, &super::vm::ops::not_inputs::<Self>());
            }
        }
        if st.domain.is_some() {
            st.web_url = Some(format!("https://{}", st.public_addr()));
            st.ip_address = Some(st.ip());
        }
        let spec = st.spec();
        let roles: Vec<String> = spec.roles.keys().cloned().collect();
        match teleport::live(guest, &spec.github.connector_name, &roles).await {
            // Teleport not running reads as drift: the next apply starts it again.
            Ok(Some(live)) if !live.active => {
                diags.warning(
                    "Teleport is not running",
                    format!(
                        "the teleport service of VM {} is not active; the next apply starts it",
                        guest.vmid()
                    ),
                );
                st.config_hash = Some(String::new());
            }
            Ok(Some(live)) => {
                if st.config_hash.as_deref() != Some(live.hash.as_str()) {
                    st.teleport_yaml = Some(live.teleport_yaml);
                    st.config_hash = Some(live.hash);
                }
                if let Some(v) = live.version {
                    st.teleport_version = Some(v);
                }
            }
            Ok(None) => st.config_hash = Some(String::new()),
            Err(e) => super::vm::resource::unreadable(diags, "Teleport", guest, e),
        }
    }

    fn importing(&self, st: &TeleportNodeState) -> bool {
        st.domain.is_none() && st.github.is_none()
    }
}

#[cfg(test)]
mod tests;
