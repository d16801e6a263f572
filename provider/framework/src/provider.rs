//! The traits a provider implements: [`Provider`], [`Resource`], [`DataSource`],
//! [`Function`], plus the per-call [`Context`].
//!
//! All values handed to these traits are already decoded with the relevant schema's implied
//! type, so objects always carry every attribute (null when absent). Errors and warnings go
//! into the `&mut Diagnostics` argument; attach attribute paths with
//! [`Diagnostics::error_at`] so OpenTofu/Terraform can point at the configuration line.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::diag::Diagnostics;
use crate::identity::ImportIdentity;
use crate::path::AttributePath;
use crate::schema::Schema;
use crate::types::Type;
use crate::value::Value;

/// Data produced by [`Provider::configure`] and shared with every resource, data source and
/// function call (typically an API client). Retrieve it with [`Context::provider_data`].
pub type ProviderData = Arc<dyn Any + Send + Sync>;

/// Per-call context: cancellation (StopProvider) and the configured provider data.
#[derive(Clone, Default)]
pub struct Context {
    cancel: CancellationToken,
    provider_data: Option<ProviderData>,
    terraform_version: Arc<str>,
}

/// The operation was cancelled by StopProvider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("operation cancelled: the provider is stopping")]
pub struct Cancelled;

impl Context {
    /// A context (the service builds these; tests may too).
    pub fn new(
        cancel: CancellationToken,
        provider_data: Option<ProviderData>,
        terraform_version: &str,
    ) -> Self {
        Context {
            cancel,
            provider_data,
            terraform_version: terraform_version.into(),
        }
    }
    /// The token cancelled by StopProvider. Long operations must observe it.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
    /// Resolves when StopProvider is called.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }
    /// Run `fut` unless/until the provider is stopped.
    pub async fn run<F: Future>(&self, fut: F) -> Result<F::Output, Cancelled> {
        tokio::select! {
            biased;
            _ = self.cancel.cancelled() => Err(Cancelled),
            out = fut => Ok(out),
        }
    }
    /// The provider data of type `T` set by [`Provider::configure`], if configured.
    pub fn provider_data<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.provider_data
            .as_deref()
            .and_then(|d| d.downcast_ref::<T>())
    }
    /// Like [`Context::provider_data`], but records an "Unconfigured Provider" error when
    /// the provider has not been configured (yet) with data of type `T`.
    pub fn require_provider_data<T: Any + Send + Sync>(
        &self,
        diags: &mut Diagnostics,
    ) -> Option<&T> {
        let d = self.provider_data::<T>();
        if d.is_none() {
            diags.error(
                "Unconfigured Provider",
                "The provider has not been configured with the settings this operation needs (check the provider block).",
            );
        }
        d
    }
    /// The raw shared provider data.
    pub fn provider_data_arc(&self) -> Option<ProviderData> {
        self.provider_data.clone()
    }
    /// The CLI version given to ConfigureProvider (empty before).
    pub fn terraform_version(&self) -> &str {
        &self.terraform_version
    }
}

/// The provider itself.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Provider type name, e.g. `"waddle"`.
    fn type_name(&self) -> &str;
    /// Schema of the `provider "waddle" {}` block.
    fn schema(&self) -> Schema;
    /// Extra validation of the provider configuration (may contain unknowns). Required
    /// attributes, read-only attributes and block item counts are checked by the framework.
    async fn validate_config(&self, _ctx: &Context, _config: &Value, _diags: &mut Diagnostics) {}
    /// Configure the provider; the returned data is shared with all later calls through
    /// [`Context::provider_data`]. The config may contain unknowns during plan.
    async fn configure(
        &self,
        _ctx: &Context,
        _config: &Value,
        _diags: &mut Diagnostics,
    ) -> Option<ProviderData> {
        None
    }
    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        Vec::new()
    }
    fn data_sources(&self) -> Vec<Arc<dyn DataSource>> {
        Vec::new()
    }
    fn functions(&self) -> Vec<Arc<dyn Function>> {
        Vec::new()
    }
    /// Ephemeral resources (Terraform >= 1.10, OpenTofu >= 1.11): values opened for one run
    /// and never stored in plan or state.
    fn ephemeral_resources(&self) -> Vec<Arc<dyn EphemeralResource>> {
        Vec::new()
    }
}

/// Input of [`Resource::modify_plan`].
#[derive(Clone, Debug)]
pub struct PlanRequest {
    pub config: Value,
    /// Null when the resource is being created.
    pub prior_state: Value,
    /// The CLI's proposed new state.
    pub proposed_new_state: Value,
}

impl PlanRequest {
    pub fn is_create(&self) -> bool {
        self.prior_state.is_null()
    }
    pub fn is_destroy(&self) -> bool {
        self.proposed_new_state.is_null()
    }
}

/// The plan being built; [`Resource::modify_plan`] may change both fields.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The planned new state (null for destroy). Framework steps already applied: defaults,
    /// computed attributes unknown when not configured, attribute plan modifiers.
    pub state: Value,
    /// Attribute paths whose change forces replacement.
    pub requires_replace: Vec<AttributePath>,
}

/// Input of [`Resource::create`].
#[derive(Clone, Debug)]
pub struct CreateRequest {
    pub config: Value,
    pub planned_state: Value,
}

/// Input of [`Resource::update`].
#[derive(Clone, Debug)]
pub struct UpdateRequest {
    pub config: Value,
    pub planned_state: Value,
    pub prior_state: Value,
}

/// Input of [`Resource::import_state`]: the ID given to `import`, or an identity.
#[derive(Clone, Debug)]
pub struct ImportRequest {
    pub id: String,
    pub identity: Option<Value>,
}

/// Input of [`Resource::move_state`].
#[derive(Clone, Debug)]
pub struct MoveStateRequest {
    pub source_provider_address: String,
    pub source_type_name: String,
    pub source_schema_version: i64,
    /// The source resource's raw state JSON.
    pub source_state: serde_json::Value,
    pub source_identity: Option<Value>,
}

/// Identity schema of a resource (attributes are primitives or lists of primitives).
#[derive(Clone, Debug, PartialEq)]
pub struct IdentitySchema {
    pub version: i64,
    pub attributes: Vec<IdentityAttribute>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct IdentityAttribute {
    pub name: String,
    pub ty: Type,
    pub required_for_import: bool,
    pub optional_for_import: bool,
    pub description: String,
}

impl IdentitySchema {
    pub fn implied_type(&self) -> Type {
        Type::object(
            self.attributes
                .iter()
                .map(|a| (a.name.clone(), a.ty.clone())),
        )
    }
}

/// A managed resource.
///
/// Cancellation: every method gets a [`Context`]; long operations should use
/// [`Context::run`] or select on [`Context::cancelled`].
#[async_trait]
pub trait Resource: Send + Sync + 'static {
    /// Full type name, e.g. `"waddle_sni_proxy"`.
    fn type_name(&self) -> &str;
    /// Schema (its `version` drives UpgradeResourceState).
    fn schema(&self) -> Schema;

    /// Extra validation of the configuration (may contain unknowns: skip those).
    async fn validate_config(&self, _ctx: &Context, _config: &Value, _diags: &mut Diagnostics) {}

    /// Resource-level plan modification, after the framework's steps. Called for create,
    /// update and destroy (`req.is_destroy()`, `plan.state` null). Default: no change.
    async fn modify_plan(
        &self,
        _ctx: &Context,
        _req: &PlanRequest,
        _plan: &mut Plan,
        _diags: &mut Diagnostics,
    ) {
    }

    /// Create; return the new state (all unknowns resolved). Returning a state together with
    /// errors records a partially created (tainted) resource.
    async fn create(
        &self,
        ctx: &Context,
        req: CreateRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value>;

    /// Refresh; return `None` when the remote object no longer exists.
    async fn read(&self, ctx: &Context, state: Value, diags: &mut Diagnostics) -> Option<Value>;

    /// Update in place; return the new state.
    async fn update(
        &self,
        ctx: &Context,
        req: UpdateRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value>;

    /// Delete the remote object.
    async fn delete(&self, ctx: &Context, prior_state: Value, diags: &mut Diagnostics);

    /// `import` support: return a state (typically only the ID set, see
    /// [`Schema::import_state_with_id`]); the CLI calls `read` afterwards.
    async fn import_state(
        &self,
        _ctx: &Context,
        _req: ImportRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        diags.error(
            "Resource Import Not Implemented",
            format!("{} does not support import.", self.type_name()),
        );
        None
    }

    /// Upgrade raw state JSON from schema version `from_version` to `from_version + 1`.
    /// The framework chains these up to the current version. Default: no upgraders.
    fn upgrade_state(
        &self,
        from_version: i64,
        _raw: serde_json::Value,
        diags: &mut Diagnostics,
    ) -> Option<serde_json::Value> {
        diags.error(
            "Unable to Upgrade Resource State",
            format!(
                "{} has no state upgrader from schema version {from_version}.",
                self.type_name()
            ),
        );
        None
    }

    /// `moved {}` from another resource type. Return `None` without diagnostics when the
    /// source is not supported (the framework then reports it).
    async fn move_state(
        &self,
        _ctx: &Context,
        _req: MoveStateRequest,
        _diags: &mut Diagnostics,
    ) -> Option<Value> {
        None
    }

    /// Resource identity described once ([`ImportIdentity`]); gives the defaults of
    /// `identity_schema` and `identity`. `import_state` resolves an identity with
    /// [`ImportIdentity::resolve`].
    fn import_identity(&self) -> Option<ImportIdentity> {
        None
    }
    /// Identity schema, if the resource supports resource identity.
    fn identity_schema(&self) -> Option<IdentitySchema> {
        self.import_identity().map(|i| i.schema())
    }
    /// Identity data for a (new or refreshed) state; called when `identity_schema` is Some.
    fn identity(&self, state: &Value) -> Option<Value> {
        self.import_identity().map(|i| i.of_state(state))
    }
    /// Upgrade raw identity JSON from `from_version` to `from_version + 1`.
    fn upgrade_identity(
        &self,
        from_version: i64,
        _raw: serde_json::Value,
        diags: &mut Diagnostics,
    ) -> Option<serde_json::Value> {
        diags.error(
            "Unable to Upgrade Resource Identity",
            format!(
                "{} has no identity upgrader from version {from_version}.",
                self.type_name()
            ),
        );
        None
    }
}

/// A data source.
#[async_trait]
pub trait DataSource: Send + Sync + 'static {
    /// Full type name, e.g. `"waddle_talos_image"`.
    fn type_name(&self) -> &str;
    fn schema(&self) -> Schema;
    /// Extra validation of the configuration (may contain unknowns: skip those).
    async fn validate_config(&self, _ctx: &Context, _config: &Value, _diags: &mut Diagnostics) {}
    /// Read: given the configuration (computed attributes null), return the full state with
    /// every attribute known.
    async fn read(&self, ctx: &Context, config: Value, diags: &mut Diagnostics) -> Option<Value>;
}

/// An ephemeral resource: opened by the CLI when a run needs its value (never stored in a
/// plan or in state), closed at the end of the run.
#[async_trait]
pub trait EphemeralResource: Send + Sync + 'static {
    /// Full type name, e.g. `"waddle_talos_kubeconfig"`.
    fn type_name(&self) -> &str;
    fn schema(&self) -> Schema;
    /// Extra validation of the configuration (may contain unknowns: skip those).
    async fn validate_config(&self, _ctx: &Context, _config: &Value, _diags: &mut Diagnostics) {}
    /// Open: given the configuration (computed attributes null, every value known), return the
    /// full result with every attribute known.
    async fn open(&self, ctx: &Context, config: Value, diags: &mut Diagnostics) -> Option<Value>;
}

/// One function parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Parameter {
    pub name: String,
    pub ty: Type,
    pub allow_null: bool,
    pub allow_unknown: bool,
    /// Markdown.
    pub description: String,
}

impl Parameter {
    pub fn new(name: impl Into<String>, ty: Type) -> Self {
        Parameter {
            name: name.into(),
            ty,
            allow_null: false,
            allow_unknown: false,
            description: String::new(),
        }
    }
    pub fn description(mut self, md: impl Into<String>) -> Self {
        self.description = md.into();
        self
    }
    pub fn allow_null(mut self) -> Self {
        self.allow_null = true;
        self
    }
    pub fn allow_unknown(mut self) -> Self {
        self.allow_unknown = true;
        self
    }
}

/// A function's signature and documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionSignature {
    pub parameters: Vec<Parameter>,
    /// Trailing variadic parameter (its values are appended to the call's arguments).
    pub variadic: Option<Parameter>,
    pub return_type: Type,
    pub summary: String,
    /// Markdown.
    pub description: String,
    pub deprecation: Option<String>,
}

impl FunctionSignature {
    pub fn new(return_type: Type) -> Self {
        FunctionSignature {
            parameters: Vec::new(),
            variadic: None,
            return_type,
            summary: String::new(),
            description: String::new(),
            deprecation: None,
        }
    }
    pub fn param(mut self, p: Parameter) -> Self {
        self.parameters.push(p);
        self
    }
    pub fn variadic(mut self, p: Parameter) -> Self {
        self.variadic = Some(p);
        self
    }
    pub fn summary(mut self, s: impl Into<String>) -> Self {
        self.summary = s.into();
        self
    }
    pub fn description(mut self, md: impl Into<String>) -> Self {
        self.description = md.into();
        self
    }
}

/// A function call failure, optionally blaming one argument (zero-based).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FunctionError {
    pub message: String,
    pub argument: Option<i64>,
}

impl FunctionError {
    pub fn new(message: impl Into<String>) -> Self {
        FunctionError {
            message: message.into(),
            argument: None,
        }
    }
    /// An error about argument `index` (zero-based).
    pub fn argument(index: usize, message: impl Into<String>) -> Self {
        FunctionError {
            message: message.into(),
            argument: Some(index as i64),
        }
    }
}

/// A provider-defined function (`provider::waddle::NAME(...)`).
#[async_trait]
pub trait Function: Send + Sync + 'static {
    /// Function name, e.g. `"talos_schematic_id"`.
    fn name(&self) -> &str;
    fn signature(&self) -> FunctionSignature;
    /// Call with decoded arguments (parameters then variadic values).
    async fn call(&self, ctx: &Context, args: Vec<Value>) -> Result<Value, FunctionError>;
}

impl Schema {
    /// Import helper: a null-filled state of this schema with attribute `attr` set to `id`.
    pub fn import_state_with_id(&self, attr: &str, id: &str) -> Value {
        let mut v = self.null_value();
        v.set_path(&AttributePath::attr(attr), Value::from(id));
        v
    }
}
