//! [`VmResource`]: a VM-backed resource is its payload — a few hooks — on top of the shared
//! lifecycle in [`super::ops`]; [`Vm`] adapts it to `TypedResource`.
//!
//! The shared attributes are read from and written to the resource's own state type through
//! its serde form ([`VmAttrs`], [`patch`]), so a state type only has to use the shared
//! attribute names (`id`, `name`, `node`, `vmid`, `storage`, `cores`, `memory`, `disk_size`,
//! `image_url`, `image_storage`, `dns_servers`, `admin_user`, `ssh_authorized_keys`,
//! `seed_iso`, `timeouts`, and one object per NIC with `bridge`, `cidr`, `gateway`).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use waddle_framework::prelude::*;
use waddle_proxmox::cloud_config::CloudConfig;
use waddle_proxmox::Guest;

use super::{NicLayout, VmDefaults};
use crate::resources::timeouts::{self, Deadline, Op, TimeoutsModel};

/// A payload step that failed (shown as the detail of the operation's error).
pub type PayloadError = Box<dyn std::error::Error + Send + Sync>;

/// The shared attributes of a VM resource's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VmAttrs {
    pub id: Option<String>,
    pub name: Option<String>,
    pub node: Option<String>,
    pub vmid: Option<u32>,
    pub storage: Option<String>,
    pub cores: Option<u32>,
    pub memory: Option<u64>,
    pub disk_size: Option<u32>,
    pub image_url: Option<String>,
    pub image_storage: Option<String>,
    pub dns_servers: Option<Vec<String>>,
    pub admin_user: Option<String>,
    pub ssh_authorized_keys: Option<Vec<String>>,
    pub seed_iso: Option<String>,
    pub timeouts: Option<TimeoutsModel>,
}

/// Serde `deserialize_with` for a required attribute of a state type: null (an unknown value
/// read during validation, or left out) as the default.
pub fn lenient<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One NIC attribute of a state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NicAttrs {
    pub bridge: String,
    pub cidr: String,
    pub gateway: Option<String>,
}

fn json_of<S: Serialize>(st: &S) -> Map<String, Json> {
    match serde_json::to_value(st) {
        Ok(Json::Object(m)) => m,
        _ => Map::new(),
    }
}

impl VmAttrs {
    /// The shared attributes of `st`.
    pub fn of<S: Serialize>(st: &S) -> Self {
        serde_json::from_value(Json::Object(json_of(st))).unwrap_or_default()
    }
    /// The NIC attribute `attr` of `st` (`None` when null).
    pub fn nic<S: Serialize>(st: &S, attr: &str) -> Option<NicAttrs> {
        json_of(st)
            .remove(attr)
            .and_then(|n| serde_json::from_value(n).ok())
    }
    /// The VM name (the default when unset).
    pub fn vm_name(&self, d: &VmDefaults) -> String {
        self.name.clone().unwrap_or_else(|| d.name.into())
    }
    pub fn image_storage<'a>(&'a self, d: &'a VmDefaults) -> &'a str {
        self.image_storage.as_deref().unwrap_or(d.image_storage)
    }
    /// The deadline of `op`.
    pub fn deadline(&self, op: Op, defaults: &timeouts::Defaults) -> Deadline {
        Deadline::start(op, TimeoutsModel::get(self.timeouts.as_ref(), op, defaults))
    }
}

/// Why a state could not be patched (it no longer fits its type).
#[derive(Debug, thiserror::Error)]
#[error("updating the state: {0}")]
pub struct PatchError(#[from] serde_json::Error);

/// Set attributes of `st` from `f` (given the state's JSON object).
pub fn patch<S: Serialize + DeserializeOwned>(
    st: &mut S,
    f: impl FnOnce(&mut Map<String, Json>),
) -> Result<(), PatchError> {
    let mut m = json_of(st);
    f(&mut m);
    *st = serde_json::from_value(Json::Object(m))?;
    Ok(())
}

/// A VM-backed resource: its schema, checks and plan, and the hooks of its payload.
#[async_trait]
pub trait VmResource: Send + Sync + 'static {
    /// The state (shared attributes by their shared names, see the module docs).
    type State: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// What a planned state renders to (checked before any API call).
    type Payload: Send + Sync;

    const TYPE_NAME: &'static str;
    /// Used in messages: "Creating the {LABEL} VM failed".
    const LABEL: &'static str;
    const DEFAULTS: VmDefaults;
    const NICS: &'static [NicLayout];
    const TIMEOUTS: timeouts::Defaults;
    /// ACPI shutdown timeout before the VM is stopped on delete.
    const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
    /// VM tags (besides the ownership tag) and description.
    const TAGS: &'static [&'static str];
    const DESCRIPTION: &'static str;
    /// NoCloud `instance-id` prefix (`<prefix>-<vmid>`).
    const INSTANCE_PREFIX: &'static str;
    /// Where the VM keeps the configuration inputs an import reads back.
    const INPUTS_PATH: &'static str;
    /// Error summary of a payload that does not render.
    const INVALID: &'static str;
    /// Computed attributes of the payload (not kept as inputs, never adopted from them).
    const COMPUTED: &'static [&'static str];

    /// Seed ISO file names: `<SEED_ISO_PREFIX>-<vmid>-seed.iso`.
    const SEED_ISO_PREFIX: &'static str;

    fn schema(&self) -> Schema;
    /// The seed ISO's file name for `vmid`.
    fn seed_iso_name(&self, vmid: u32) -> String {
        format!("{}-{vmid}-seed.iso", Self::SEED_ISO_PREFIX)
    }
    /// The payload's plan-time checks (the shared ones follow, see `vm::validate::all`).
    fn validate(&self, config: &Value, diags: &mut Diagnostics);
    /// The payload's plan of a create or update, between the shared steps (see
    /// `vm::plan::modify_plan`).
    fn plan(&self, req: &PlanRequest, plan: &mut Plan, diags: &mut Diagnostics);

    /// Render the payload of a planned state.
    fn prepare(&self, st: &Self::State) -> Result<Self::Payload, PayloadError>;
    /// Record a rendered payload in the state (computed attributes).
    fn record(&self, st: &mut Self::State, p: &Self::Payload);
    /// Add the payload's packages, files and commands to the guest's cloud config.
    fn seed(&self, p: &Self::Payload, ci: CloudConfig) -> CloudConfig;
    /// After the first boot: wait until the payload runs as rendered.
    async fn ready(
        &self,
        guest: &Guest<'_>,
        p: &Self::Payload,
        deadline: Deadline,
    ) -> Result<(), PayloadError>;
    /// Apply a new rendering to a running VM in place.
    async fn apply(&self, guest: &Guest<'_>, p: &Self::Payload) -> Result<(), PayloadError>;
    /// Refresh the payload's attributes from the running VM (warnings to `diags`).
    async fn refresh(&self, guest: &Guest<'_>, st: &mut Self::State, diags: &mut Diagnostics);
    /// The payload is not running (stopped or gone VM): mark it so the plan repairs it. By
    /// default an empty `config_hash` (the payload's drift hash, which no rendering has).
    fn forget(&self, st: &mut Self::State) {
        let _ = patch(st, |m| {
            m.insert("config_hash".into(), Json::String(String::new()));
        });
    }
    /// Whether a read state comes from an import (only the identity known).
    fn importing(&self, st: &Self::State) -> bool;
}

/// The warning of a `refresh` that could not read the live `what` configuration.
pub fn unreadable(
    diags: &mut Diagnostics,
    what: &str,
    guest: &Guest<'_>,
    e: impl std::fmt::Display,
) {
    diags.warning(
        format!("Cannot read the live {what} configuration"),
        format!(
            "guest agent of VM {}: {e}; the recorded config hash is kept",
            guest.vmid()
        ),
    );
}

/// Adapter of a [`VmResource`] to `TypedResource` (register as `Typed(Vm(R))`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Vm<R>(pub R);

#[async_trait]
impl<R: VmResource> TypedResource for Vm<R> {
    type State = R::State;

    fn type_name(&self) -> &str {
        R::TYPE_NAME
    }

    fn schema(&self) -> Schema {
        self.0.schema()
    }

    async fn validate(&self, _ctx: &Context, config: &Value, diags: &mut Diagnostics) {
        super::validate::all(&self.0, config, diags);
    }

    async fn modify_plan(
        &self,
        ctx: &Context,
        req: &PlanRequest,
        plan: &mut Plan,
        diags: &mut Diagnostics,
    ) {
        if !req.is_destroy() {
            super::plan::modify_plan(&self.0, ctx, req, plan, diags);
        }
    }

    async fn create(
        &self,
        ctx: &Context,
        planned: R::State,
        _diags: &mut Diagnostics,
    ) -> ResourceResult<R::State, R::State> {
        super::ops::create(&self.0, ctx, planned).await
    }

    async fn read(
        &self,
        ctx: &Context,
        state: R::State,
        diags: &mut Diagnostics,
    ) -> ResourceResult<Option<R::State>, R::State> {
        super::ops::read(&self.0, ctx, state, diags).await
    }

    async fn update(
        &self,
        ctx: &Context,
        prior: R::State,
        planned: R::State,
        _diags: &mut Diagnostics,
    ) -> ResourceResult<R::State, R::State> {
        super::ops::update(&self.0, ctx, prior, planned).await
    }

    async fn delete(
        &self,
        ctx: &Context,
        prior: R::State,
        _diags: &mut Diagnostics,
    ) -> ResourceResult<(), R::State> {
        super::ops::delete(&self.0, ctx, prior).await
    }

    async fn import(
        &self,
        _ctx: &Context,
        id: &str,
        _diags: &mut Diagnostics,
    ) -> ResourceResult<R::State, R::State> {
        super::ops::import(&self.0, id)
    }

    fn import_identity(&self) -> Option<ImportIdentity> {
        Some(super::ops::identity())
    }
}
