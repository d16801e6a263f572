//! waddle-framework: a small terraform-plugin-framework equivalent for protocol 6.
//!
//! # Layout
//! - [`types`]: cty types and their JSON type encoding.
//! - [`number`]: arbitrary-precision numbers (no silent truncation).
//! - [`value`]: the [`Value`] model (null, unknown with refinements, `Dynamic`), path-aware
//!   accessors (`get_attr`, `get_path`, `is_known`, `is_wholly_known`, `equals`).
//! - [`codec`]: DynamicValue codecs: cty msgpack and cty JSON.
//! - [`path`], [`diag`]: attribute paths and diagnostics.
//! - [`schema`]: schema model and builders (attributes, nested attributes, blocks, plan
//!   modifiers, defaults, implied types).
//! - [`config`]: [`config::ConfigView`], an unknown-tolerant view of a configuration.
//! - [`validators`]: declarative attribute validators (one-of, ranges, IP, CIDR, hostname,
//!   duration, regex, custom) run on known values only, and the one [`validators::Cidr`] type.
//! - [`resource`]: [`TypedResource`] (typed state, `Result<State, ResourceError>`) and its
//!   adapter [`Typed`] to [`Resource`]; plan modifiers that need the provider configuration
//!   or the prior state.
//! - [`typed`]: serde bridge (`Value::to_typed`, `Value::from_typed`) and
//!   [`typed::assert_roundtrip`], the test that keeps a Rust state type and its schema in sync.
//! - [`provider`]: the traits a provider implements ([`Provider`], [`Resource`],
//!   [`DataSource`], [`Function`]) and the per-call [`Context`] (cancellation, provider data).
//! - `plan` (internal): validation and PlanResourceChange semantics (defaults, computed
//!   unknowns, RequiresReplace, UseStateForUnknown, write-only nulling).
//! - [`proto`]: conversions to/from tfplugin6 messages (schemas, paths, diagnostics, values).
//! - [`testing`]: [`testing::Harness`] drives a provider through the RPC handlers in process
//!   (validate/plan/apply/read/data sources/functions) for provider unit tests.
//! - [`service`]: [`ProviderService`], the tfplugin6 gRPC service dispatching to the traits.
//!
//! # Semantics (terraform-plugin-framework is the reference)
//! - Validate: required attributes must be non-null, read-only (computed-only) attributes must
//!   be unset, block min/max items, deprecated attributes warn; write-only attributes are
//!   refused unless the client advertises `write_only_attributes_allowed` (OpenTofu/Terraform
//!   1.11+). Unknown values never fail framework validation.
//! - Plan (create/update): defaults where config is null; when anything changes, computed
//!   attributes that are null in config become unknown; then `UseStateForUnknown` and
//!   `RequiresReplace`; then [`Resource::modify_plan`]. Destroy plans pass through (the hook
//!   still sees them). Write-only values are nulled in every planned/new/imported/upgraded
//!   state, whatever the client. No deferrals are ever returned.
//! - Numbers are arbitrary-precision decimals; the wire form is int, exact float64 or decimal
//!   string (as cty), so nothing is silently truncated. Infinities are refused.
//! - [`Value`]'s `Debug` shows contents: never log values of sensitive attributes.
//!
//! # Defining a data source
//! ```
//! use waddle_framework::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Greeting { name: String, text: Option<String> }
//!
//! struct GreetingDataSource;
//!
//! #[async_trait]
//! impl DataSource for GreetingDataSource {
//!     fn type_name(&self) -> &str { "waddle_greeting" }
//!     fn schema(&self) -> Schema {
//!         Schema::new("Says hello.")
//!             .attribute("name", Attribute::string().required().description("Who to greet."))
//!             .attribute("text", Attribute::string().computed())
//!     }
//!     async fn validate_config(&self, _ctx: &Context, config: &Value, diags: &mut Diagnostics) {
//!         if let Some(name) = config.get_attr("name").and_then(Value::as_str) {
//!             if name.is_empty() {
//!                 diags.error_at(AttributePath::attr("name"), "Invalid name", "must not be empty");
//!             }
//!         } // unknown or null: nothing to check yet
//!     }
//!     async fn read(&self, _ctx: &Context, config: Value, diags: &mut Diagnostics) -> Option<Value> {
//!         let mut g: Greeting = match config.to_typed() {
//!             Ok(g) => g,
//!             Err(e) => { diags.error("Invalid configuration", e.to_string()); return None; }
//!         };
//!         g.text = Some(format!("hello, {}", g.name));
//!         match self.schema().from_typed(&g) {
//!             Ok(v) => Some(v),
//!             Err(e) => { diags.error("Internal error", e.to_string()); None }
//!         }
//!     }
//! }
//! ```

pub mod codec;
pub mod config;
pub mod diag;
pub mod identity;
pub mod number;
pub mod path;
mod plan;
pub mod proto;
pub mod provider;
pub mod resource;
pub mod schema;
pub mod service;
pub mod testing;
pub mod typed;
pub mod types;
pub mod validators;
pub mod value;

pub use async_trait::async_trait;
pub use codec::ValueError;
pub use diag::{error_chain, Diagnostic, Diagnostics, Severity};
pub use identity::{IdentityPart, ImportIdentity};
pub use number::Number;
pub use path::{AttributePath, PathStep};
pub use provider::{
    Cancelled, Context, CreateRequest, DataSource, EphemeralResource, Function, FunctionError,
    FunctionSignature, IdentityAttribute, IdentitySchema, ImportRequest, MoveStateRequest,
    Parameter, Plan, PlanRequest, Provider, ProviderData, Resource, UpdateRequest,
};
pub use resource::{ResourceError, ResourceResult, Typed, TypedResource};
pub use schema::{
    Attribute, AttributeType, Block, BlockNesting, NestedBlock, NestingMode, PlanModifier, Schema,
};
pub use service::ProviderService;
pub use types::Type;
pub use value::{Refinements, Value};

/// Everything a provider implementation usually needs.
pub mod prelude {
    pub use crate::config::{ConfigView, Field};
    pub use crate::typed::assert_roundtrip;
    pub use crate::validators::{Cidr, Validator};
    pub use crate::{
        async_trait, Attribute, AttributePath, Block, BlockNesting, Context, CreateRequest,
        DataSource, Diagnostic, Diagnostics, EphemeralResource, Function, FunctionError,
        FunctionSignature, IdentityAttribute, IdentityPart, IdentitySchema, ImportIdentity,
        ImportRequest, MoveStateRequest, NestedBlock, NestingMode, Number, Parameter, PathStep,
        Plan, PlanModifier, PlanRequest, Provider, ProviderData, Resource, ResourceError,
        ResourceResult, Schema, Type, Typed, TypedResource, UpdateRequest, Value,
    };
}
