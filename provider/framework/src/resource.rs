//! Typed resources: [`TypedResource`] works on a serde `State` type and returns
//! `Result<State, ResourceError>`; [`Typed`] adapts it to the untyped [`Resource`] trait the
//! service dispatches to, so typed and untyped resources live side by side.
//!
//! What the adapter does for every resource, so none has to:
//! * decodes the planned state (unknowns as null), the prior state and the refreshed state
//!   into `State`, and encodes the result with the schema (an undecodable prior state is an
//!   error that keeps the resource in state, never a silent success);
//! * turns a [`ResourceError`] into one error diagnostic (at its attribute path when it has
//!   one) and records its partial state, so a half-created object stays in state (tainted)
//!   and the next apply or destroy finds it;
//! * runs the schema's declarative validators ([`crate::validators`]) in the default
//!   [`TypedResource::validate`].
//!
//! The plan modifiers that need more than the schema ([`default_from_provider`],
//! [`requires_replace_if_prior_set`]) are functions a resource calls from `modify_plan`.

use std::fmt;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::diag::{Diagnostic, Diagnostics};
use crate::identity::ImportIdentity;
use crate::path::AttributePath;
use crate::provider::{
    Context, CreateRequest, ImportRequest, Plan, PlanRequest, Resource, UpdateRequest,
};
use crate::schema::Schema;
use crate::value::Value;

/// A failed operation: what to tell the user and what to record.
pub struct ResourceError<S> {
    pub summary: String,
    pub detail: String,
    /// The configuration attribute the error is about.
    pub path: Option<AttributePath>,
    /// State to record despite the error (an object that exists although the operation
    /// failed); `None` records nothing (create) or keeps what the CLI has.
    pub partial: Option<Box<S>>,
}

impl<S> ResourceError<S> {
    pub fn new(summary: impl Into<String>, detail: impl fmt::Display) -> Self {
        ResourceError {
            summary: summary.into(),
            detail: detail.to_string(),
            path: None,
            partial: None,
        }
    }
    /// About the attribute at `path`.
    pub fn at(mut self, path: AttributePath) -> Self {
        self.path = Some(path);
        self
    }
    /// Record `state` with the error.
    pub fn with_partial(mut self, state: S) -> Self {
        self.partial = Some(Box::new(state));
        self
    }
    /// The error diagnostic.
    pub fn diagnostic(&self) -> Diagnostic {
        let d = Diagnostic::error(self.summary.clone(), self.detail.clone());
        match &self.path {
            Some(p) => d.at(p.clone()),
            None => d,
        }
    }
}

// State values may hold secrets: neither Debug nor Display shows the partial state.
impl<S> fmt::Debug for ResourceError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceError")
            .field("summary", &self.summary)
            .field("detail", &self.detail)
            .field("path", &self.path)
            .field("partial", &self.partial.is_some())
            .finish()
    }
}

impl<S> fmt::Display for ResourceError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.summary, self.detail)
    }
}

impl<S> std::error::Error for ResourceError<S> {}

/// The result of a typed operation.
pub type ResourceResult<T, S> = Result<T, ResourceError<S>>;

/// A managed resource on a typed state. Warnings go to `diags`; errors are returned.
/// Wrap it in [`Typed`] to register it with a provider.
#[async_trait]
pub trait TypedResource: Send + Sync + 'static {
    /// One field per schema attribute (check with [`crate::typed::assert_roundtrip`]).
    type State: Serialize + DeserializeOwned + Send + Sync + 'static;

    fn type_name(&self) -> &str;
    /// The schema; give it an explicit `.version(n)`.
    fn schema(&self) -> Schema;

    /// Plan-time validation of a configuration that may hold unknowns. Default: the
    /// schema's declarative validators.
    async fn validate(&self, _ctx: &Context, config: &Value, diags: &mut Diagnostics) {
        self.schema().validate_values(config, diags);
    }

    /// Resource-level plan modification (see [`Resource::modify_plan`]).
    async fn modify_plan(
        &self,
        _ctx: &Context,
        _req: &PlanRequest,
        _plan: &mut Plan,
        _diags: &mut Diagnostics,
    ) {
    }

    /// Create from the planned state (unknowns read as unset).
    async fn create(
        &self,
        ctx: &Context,
        planned: Self::State,
        diags: &mut Diagnostics,
    ) -> ResourceResult<Self::State, Self::State>;

    /// Refresh; `Ok(None)` when the object no longer exists.
    async fn read(
        &self,
        ctx: &Context,
        state: Self::State,
        diags: &mut Diagnostics,
    ) -> ResourceResult<Option<Self::State>, Self::State>;

    /// Update in place from `prior` to `planned` (unknowns read as unset).
    async fn update(
        &self,
        ctx: &Context,
        prior: Self::State,
        planned: Self::State,
        diags: &mut Diagnostics,
    ) -> ResourceResult<Self::State, Self::State>;

    /// Delete; an error keeps the resource in state.
    async fn delete(
        &self,
        ctx: &Context,
        prior: Self::State,
        diags: &mut Diagnostics,
    ) -> ResourceResult<(), Self::State>;

    /// `import`: the state the CLI then reads. Default: not supported.
    async fn import(
        &self,
        _ctx: &Context,
        _id: &str,
        _diags: &mut Diagnostics,
    ) -> ResourceResult<Self::State, Self::State> {
        Err(ResourceError::new(
            "Resource Import Not Implemented",
            format!("{} does not support import.", self.type_name()),
        ))
    }

    /// Upgrade raw state JSON from `from_version` (see [`Resource::upgrade_state`]).
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

    /// Resource identity: the attributes that name the remote object, in import-ID order.
    /// With it, the identity schema, each state's identity and import by identity (which runs
    /// [`TypedResource::import`] with the ID the identity stands for) come from the adapter.
    fn import_identity(&self) -> Option<ImportIdentity> {
        None
    }
}

/// Adapter from [`TypedResource`] to [`Resource`].
#[derive(Debug, Default, Clone, Copy)]
pub struct Typed<R>(pub R);

impl<R: TypedResource> Typed<R> {
    /// Decode a state value; an error diagnostic when it does not fit `State`.
    pub fn decode(&self, v: &Value, diags: &mut Diagnostics) -> Option<R::State> {
        match v.to_typed::<R::State>() {
            Ok(s) => Some(s),
            Err(e) => {
                diags.error(
                    "Internal error",
                    format!("decoding {} state: {e}", self.0.type_name()),
                );
                None
            }
        }
    }
    /// Encode a state with the schema; an error diagnostic when it does not fit.
    pub fn encode(&self, s: &R::State, diags: &mut Diagnostics) -> Option<Value> {
        match self.0.schema().from_typed(s) {
            Ok(v) => Some(v),
            Err(e) => {
                diags.error(
                    "Internal error",
                    format!("encoding {} state: {e}", self.0.type_name()),
                );
                None
            }
        }
    }
    /// The planned state with the configuration's top-level write-only values, which the
    /// plan never holds (the service nulls them again in the new state).
    fn with_write_only(&self, planned: &Value, config: &Value) -> Value {
        let mut v = planned.unknown_as_null();
        for (name, a) in &self.0.schema().block.attributes {
            if let Some(c) = config
                .get_attr(name)
                .filter(|c| a.write_only && c.is_known())
            {
                v.set_path(&AttributePath::attr(name.clone()), c.clone());
            }
        }
        v
    }
    fn finish(
        &self,
        r: ResourceResult<R::State, R::State>,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        match r {
            Ok(s) => self.encode(&s, diags),
            Err(e) => {
                diags.push(e.diagnostic());
                e.partial.and_then(|s| self.encode(&s, diags))
            }
        }
    }
}

#[async_trait]
impl<R: TypedResource> Resource for Typed<R> {
    fn type_name(&self) -> &str {
        self.0.type_name()
    }

    fn schema(&self) -> Schema {
        self.0.schema()
    }

    async fn validate_config(&self, ctx: &Context, config: &Value, diags: &mut Diagnostics) {
        self.0.validate(ctx, config, diags).await;
    }

    async fn modify_plan(
        &self,
        ctx: &Context,
        req: &PlanRequest,
        plan: &mut Plan,
        diags: &mut Diagnostics,
    ) {
        self.0.modify_plan(ctx, req, plan, diags).await;
    }

    async fn create(
        &self,
        ctx: &Context,
        req: CreateRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let planned = self.decode(
            &self.with_write_only(&req.planned_state, &req.config),
            diags,
        )?;
        let r = self.0.create(ctx, planned, diags).await;
        self.finish(r, diags)
    }

    async fn read(&self, ctx: &Context, state: Value, diags: &mut Diagnostics) -> Option<Value> {
        let st = self.decode(&state, diags)?;
        match self.0.read(ctx, st, diags).await {
            Ok(Some(s)) => self.encode(&s, diags),
            Ok(None) => None,
            Err(e) => self.finish(Err(e), diags),
        }
    }

    async fn update(
        &self,
        ctx: &Context,
        req: UpdateRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let prior = self.decode(&req.prior_state, diags)?;
        let planned = self.decode(
            &self.with_write_only(&req.planned_state, &req.config),
            diags,
        )?;
        let r = self.0.update(ctx, prior, planned, diags).await;
        self.finish(r, diags)
    }

    async fn delete(&self, ctx: &Context, prior_state: Value, diags: &mut Diagnostics) {
        let Some(prior) = self.decode(&prior_state, diags) else {
            return; // the error keeps the resource in state
        };
        if let Err(e) = self.0.delete(ctx, prior, diags).await {
            diags.push(e.diagnostic());
        }
    }

    async fn import_state(
        &self,
        ctx: &Context,
        req: ImportRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let id = match self.0.import_identity() {
            Some(ident) => match ident.resolve(&req.id, req.identity.as_ref()) {
                Ok(id) => id,
                Err(e) => {
                    diags.error("Invalid import identity", e);
                    return None;
                }
            },
            None => req.id.clone(),
        };
        let r = self.0.import(ctx, &id, diags).await;
        self.finish(r, diags)
    }

    fn upgrade_state(
        &self,
        from_version: i64,
        raw: serde_json::Value,
        diags: &mut Diagnostics,
    ) -> Option<serde_json::Value> {
        self.0.upgrade_state(from_version, raw, diags)
    }

    fn import_identity(&self) -> Option<ImportIdentity> {
        self.0.import_identity()
    }
}

/// What the provider configuration says about a default.
#[derive(Clone, Debug, PartialEq)]
pub enum ProviderDefault {
    /// The provider configuration gives this value.
    Known(Value),
    /// The provider configuration is not known yet (or not configured): leave the plan alone.
    Unknown,
    /// The provider configuration gives nothing.
    Missing,
}

/// The default is missing: neither the resource nor the provider configuration sets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingDefault(pub AttributePath);

/// Plan modifier "default from the provider configuration": when the attribute `attr` is
/// null in the configuration and unknown in the plan, plan the provider's value. Returns
/// [`MissingDefault`] when there is none, for the resource to report in its own words.
pub fn default_from_provider(
    req: &PlanRequest,
    plan: &mut Plan,
    attr: &str,
    default: ProviderDefault,
) -> Result<(), MissingDefault> {
    let planned_unknown = plan.state.get_attr(attr).is_some_and(Value::is_unknown);
    let configured_null = req.config.get_attr(attr).is_some_and(Value::is_null);
    if !(planned_unknown && configured_null) {
        return Ok(());
    }
    match default {
        ProviderDefault::Known(v) => {
            plan.state.set_path(&AttributePath::attr(attr), v);
            Ok(())
        }
        ProviderDefault::Unknown => Ok(()),
        ProviderDefault::Missing => Err(MissingDefault(AttributePath::attr(attr))),
    }
}

/// Plan modifier "defaults inside a configured object": each attribute of the single nested
/// object `attr` that the configuration leaves null and the plan has unknown takes its value
/// from the object `defaults` (an object left out as a whole takes the schema default).
pub fn object_defaults(req: &PlanRequest, plan: &mut Plan, attr: &str, defaults: &Value) {
    let Some(fields) = defaults.as_entries() else {
        return;
    };
    for (name, d) in fields {
        let at = AttributePath::attr(attr).then_attr(name.clone());
        let configured_null = req.config.get_path(&at).is_none_or(Value::is_null);
        if configured_null && plan.state.get_path(&at).is_some_and(Value::is_unknown) {
            plan.state.set_path(&at, d.clone());
        }
    }
}

/// Plan modifier "requires replace if a prior value was set": on update, a replacement is
/// only forced by attributes whose prior value was set (not null, not `""`). An imported
/// state leaves what the API cannot report null; the configuration then fills it in place.
pub fn requires_replace_if_prior_set(req: &PlanRequest, plan: &mut Plan) {
    if req.is_create() {
        return;
    }
    plan.requires_replace.retain(|p| {
        req.prior_state
            .get_path(p)
            .is_some_and(|v| !v.is_null() && v.as_str() != Some(""))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Attribute;
    use serde::Deserialize;
    use std::sync::Mutex;

    #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
    struct St {
        id: Option<String>,
        size: Option<i64>,
    }

    #[derive(Default)]
    struct Thing {
        deleted: Mutex<Vec<Option<String>>>,
    }

    #[async_trait]
    impl TypedResource for Thing {
        type State = St;
        fn type_name(&self) -> &str {
            "t_thing"
        }
        fn schema(&self) -> Schema {
            Schema::new("t")
                .version(0)
                .attribute("id", Attribute::string().computed())
                .attribute(
                    "size",
                    Attribute::number()
                        .optional()
                        .validate(crate::validators::Validator::int_range(1, 9)),
                )
        }
        async fn create(
            &self,
            _ctx: &Context,
            mut planned: St,
            _diags: &mut Diagnostics,
        ) -> ResourceResult<St, St> {
            planned.id = Some("x1".into());
            if planned.size == Some(7) {
                return Err(ResourceError::new("Creating failed", "seven")
                    .at(AttributePath::attr("size"))
                    .with_partial(planned));
            }
            Ok(planned)
        }
        async fn read(
            &self,
            _ctx: &Context,
            state: St,
            _diags: &mut Diagnostics,
        ) -> ResourceResult<Option<St>, St> {
            Ok(state.id.is_some().then_some(state))
        }
        async fn update(
            &self,
            _ctx: &Context,
            prior: St,
            _planned: St,
            _diags: &mut Diagnostics,
        ) -> ResourceResult<St, St> {
            Err(ResourceError::new("Updating failed", "no").with_partial(prior))
        }
        async fn delete(
            &self,
            _ctx: &Context,
            prior: St,
            _diags: &mut Diagnostics,
        ) -> ResourceResult<(), St> {
            self.deleted.lock().unwrap().push(prior.id);
            Ok(())
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn the_adapter_decodes_encodes_and_records_partial_state() {
        let r = Typed(Thing::default());
        let ctx = Context::default();
        let s = r.schema();
        let mut planned = s.null_value();
        planned.set_path(&AttributePath::attr("id"), Value::unknown());
        planned.set_path(&AttributePath::attr("size"), Value::from(3i64));
        let req = CreateRequest {
            config: planned.clone(),
            planned_state: planned.clone(),
        };
        let mut d = Diagnostics::new();
        let out = rt().block_on(r.create(&ctx, req.clone(), &mut d)).unwrap();
        assert!(d.is_empty(), "{d}");
        assert_eq!(out.get_attr("id").and_then(Value::as_str), Some("x1"));

        // A failure with a partial state: one error at its path, the partial state recorded.
        planned.set_path(&AttributePath::attr("size"), Value::from(7i64));
        let mut d = Diagnostics::new();
        let req = CreateRequest {
            config: planned.clone(),
            planned_state: planned,
        };
        let out = rt().block_on(r.create(&ctx, req, &mut d)).unwrap();
        let errs = crate::testing::errors(&d);
        assert_eq!(errs, vec![("size".to_string(), "seven".to_string())]);
        assert_eq!(out.get_attr("id").and_then(Value::as_str), Some("x1"));

        // Update failure keeps the prior state.
        let mut d = Diagnostics::new();
        let up = UpdateRequest {
            config: out.clone(),
            planned_state: out.clone(),
            prior_state: out.clone(),
        };
        assert_eq!(rt().block_on(r.update(&ctx, up, &mut d)), Some(out.clone()));
        assert!(d.has_errors());

        // An undecodable prior state is an error on delete (kept in state), not a success.
        let mut d = Diagnostics::new();
        rt().block_on(r.delete(&ctx, Value::from("garbage"), &mut d));
        assert!(d.has_errors());
        assert!(r.0.deleted.lock().unwrap().is_empty());
        let mut d = Diagnostics::new();
        rt().block_on(r.delete(&ctx, out, &mut d));
        assert!(d.is_empty());
        assert_eq!(*r.0.deleted.lock().unwrap(), vec![Some("x1".to_string())]);

        // Import is refused by default; validation runs the declarative validators.
        let mut d = Diagnostics::new();
        let imp = ImportRequest {
            id: "1".into(),
            identity: None,
        };
        assert!(rt().block_on(r.import_state(&ctx, imp, &mut d)).is_none());
        assert!(d.has_errors());
        let mut cfg = s.null_value();
        cfg.set_path(&AttributePath::attr("size"), Value::from(10i64));
        let mut d = Diagnostics::new();
        rt().block_on(r.validate_config(&ctx, &cfg, &mut d));
        assert_eq!(crate::testing::errors(&d)[0].0, "size");
    }

    #[test]
    fn provider_defaults_and_replacement_only_for_prior_values() {
        let s = Schema::new("t")
            .attribute("node", Attribute::string().optional().computed())
            .attribute("a", Attribute::string().optional());
        let config = s.null_value();
        let mut planned = s.null_value();
        planned.set_path(&AttributePath::attr("node"), Value::unknown());
        let req = PlanRequest {
            config: config.clone(),
            prior_state: Value::Null,
            proposed_new_state: planned.clone(),
        };
        let mut plan = Plan {
            state: planned.clone(),
            requires_replace: vec![],
        };
        assert_eq!(
            default_from_provider(&req, &mut plan, "node", ProviderDefault::Missing),
            Err(MissingDefault(AttributePath::attr("node")))
        );
        default_from_provider(&req, &mut plan, "node", ProviderDefault::Unknown).unwrap();
        assert!(plan.state.get_attr("node").unwrap().is_unknown());
        default_from_provider(
            &req,
            &mut plan,
            "node",
            ProviderDefault::Known(Value::from("pve")),
        )
        .unwrap();
        assert_eq!(
            plan.state.get_attr("node").and_then(Value::as_str),
            Some("pve")
        );

        let mut prior = s.null_value();
        prior.set_path(&AttributePath::attr("node"), Value::from("pve"));
        let req = PlanRequest {
            config,
            prior_state: prior,
            proposed_new_state: planned.clone(),
        };
        let mut plan = Plan {
            state: planned,
            requires_replace: vec![AttributePath::attr("node"), AttributePath::attr("a")],
        };
        requires_replace_if_prior_set(&req, &mut plan);
        assert_eq!(plan.requires_replace, vec![AttributePath::attr("node")]);
    }

    #[test]
    fn object_defaults_fill_what_a_configured_object_leaves_out() {
        let at = |n: &str| AttributePath::attr("t").then_attr(n);
        let config = Value::object([(
            "t",
            Value::object([("a", Value::from("1s")), ("b", Value::Null)]),
        )]);
        let planned = Value::object([(
            "t",
            Value::object([("a", Value::from("1s")), ("b", Value::unknown())]),
        )]);
        let req = PlanRequest {
            config,
            prior_state: Value::Null,
            proposed_new_state: planned.clone(),
        };
        let mut plan = Plan {
            state: planned,
            requires_replace: vec![],
        };
        let defaults = Value::object([("a", Value::from("5s")), ("b", Value::from("1m"))]);
        object_defaults(&req, &mut plan, "t", &defaults);
        assert_eq!(
            plan.state.get_path(&at("a")).and_then(Value::as_str),
            Some("1s")
        );
        assert_eq!(
            plan.state.get_path(&at("b")).and_then(Value::as_str),
            Some("1m")
        );
    }
}
