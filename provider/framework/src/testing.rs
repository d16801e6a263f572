//! Test helpers for provider authors: an in-process [`Harness`] that drives a provider
//! through the real [`ProviderService`] RPC handlers (no network), computing the CLI's
//! proposed new state the way OpenTofu/Terraform do, plus [`assert_roundtrip`].
//!
//! ```
//! # use waddle_framework::prelude::*;
//! # use waddle_framework::testing::Harness;
//! # struct P;
//! # #[async_trait] impl Provider for P {
//! #   fn type_name(&self) -> &str { "p" }
//! #   fn schema(&self) -> Schema { Schema::new("") }
//! # }
//! # tokio_test_block(async {
//! let h = Harness::new(P);
//! let d = h.validate_provider(Value::object([] as [(&str, Value); 0])).await;
//! assert!(d.is_empty());
//! # });
//! # fn tokio_test_block<F: std::future::Future>(f: F) { tokio::runtime::Runtime::new().unwrap().block_on(f); }
//! ```

use tonic::Request;
use waddle_tfplugin::tfplugin6 as pb;
use waddle_tfplugin::tfplugin6::provider_server::Provider as _;

pub use crate::typed::{assert_roundtrip, check_roundtrip};

use crate::codec;
use crate::diag::Diagnostics;
use crate::path::AttributePath;
use crate::proto::{diags_from_proto, encode_dynamic, path_from_proto};
use crate::provider::{FunctionError, Provider};
use crate::schema::{AttributeType, Block, BlockNesting, NestingMode, Schema};
use crate::service::ProviderService;
use crate::types::Type;
use crate::value::Value;

/// `(attribute path, detail)` of every error in `diags` (the path empty when there is none):
/// what tests of a resource's validation compare.
pub fn errors(diags: &Diagnostics) -> Vec<(String, String)> {
    diags
        .errors()
        .map(|e| {
            let path = e.attribute.as_ref().map(|p| p.to_string());
            (path.unwrap_or_default(), e.detail.clone())
        })
        .collect()
}

/// The golden-state check of a resource: the state JSON at `path` (as Terraform stores it
/// for schema version `schema.version`) decodes with today's schema into `T`, and encodes
/// back to the same JSON. A schema change that alters the stored shape fails here, so it
/// has to come with a version bump, a new golden file and a state upgrader.
///
/// With `WADDLE_BLESS=1` the file is (re)written from `sample` first.
#[track_caller]
pub fn assert_golden_state<T>(schema: &Schema, path: &std::path::Path, sample: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let ty = schema.implied_type();
    if std::env::var_os("WADDLE_BLESS").is_some() {
        let v = schema
            .from_typed(sample)
            .unwrap_or_else(|e| panic!("sample does not fit the schema: {e}"));
        let j = codec::encode_json(&v, &ty).unwrap_or_else(|e| panic!("encoding: {e}"));
        let text = serde_json::to_string_pretty(&j).expect("JSON");
        std::fs::write(path, text + "\n")
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "golden state {} ({e}); create it with WADDLE_BLESS=1",
            path.display()
        )
    });
    let golden: serde_json::Value = serde_json::from_str(&text).expect("golden state is JSON");
    let v = codec::decode_json(&golden, &ty, Default::default()).unwrap_or_else(|e| {
        panic!(
            "the v{} golden state {} no longer decodes with the schema ({e}): bump the schema \
             version and add a state upgrader",
            schema.version,
            path.display()
        )
    });
    let typed: T = v
        .to_typed()
        .unwrap_or_else(|e| panic!("golden state does not fit the state type: {e}"));
    let again = schema
        .from_typed(&typed)
        .expect("state type fits the schema");
    let back = codec::encode_json(&again, &ty).expect("encodes");
    assert_eq!(
        back, golden,
        "the stored shape of schema version {} changed: bump the version and add a state upgrader",
        schema.version
    );
}

/// Result of [`Harness::plan`].
#[derive(Clone, Debug)]
pub struct PlanResult {
    pub planned_state: Value,
    pub requires_replace: Vec<AttributePath>,
    pub diagnostics: Diagnostics,
}

/// Result of [`Harness::apply`] / [`Harness::read`].
#[derive(Clone, Debug)]
pub struct StateResult {
    pub state: Value,
    /// The resource identity the provider reported with the state (null when none).
    pub identity: Value,
    pub diagnostics: Diagnostics,
}

/// Drives a provider through the service's RPC handlers in process.
#[derive(Clone)]
pub struct Harness {
    svc: ProviderService,
}

fn dv(v: &Value, t: &Type) -> Option<pb::DynamicValue> {
    Some(
        encode_dynamic(v, t)
            .unwrap_or_else(|e| panic!("test value does not match its schema: {e}")),
    )
}

fn undv(d: Option<pb::DynamicValue>, t: &Type) -> Value {
    match d {
        Some(d) if !d.msgpack.is_empty() => codec::decode_msgpack(&d.msgpack, t)
            .unwrap_or_else(|e| panic!("service returned an undecodable value: {e}")),
        _ => Value::Null,
    }
}

fn caps() -> Option<pb::ClientCapabilities> {
    Some(pb::ClientCapabilities {
        deferral_allowed: false,
        write_only_attributes_allowed: true,
    })
}

impl Harness {
    pub fn new<P: Provider>(p: P) -> Self {
        Harness {
            svc: ProviderService::new(p),
        }
    }
    pub fn service(&self) -> &ProviderService {
        &self.svc
    }
    /// The implied type of a resource's identity schema, if it has one.
    async fn identity_type(&self, t: &str) -> Option<Type> {
        let s = self.identity_schema(t).await?;
        Some(Type::object(s.identity_attributes.iter().map(|a| {
            let ty = Type::from_json_bytes(&a.r#type)
                .unwrap_or_else(|e| panic!("identity attribute {}: {e}", a.name));
            (a.name.clone(), ty)
        })))
    }

    async fn identity_of(&self, t: &str, d: Option<pb::ResourceIdentityData>) -> Value {
        match (self.identity_type(t).await, d.and_then(|d| d.identity_data)) {
            (Some(ty), Some(dv)) => undv(Some(dv), &ty),
            _ => Value::Null,
        }
    }

    /// The identity schema of a resource, as `GetResourceIdentitySchemas` reports it.
    pub async fn identity_schema(&self, t: &str) -> Option<pb::ResourceIdentitySchema> {
        let r = self
            .svc
            .get_resource_identity_schemas(Request::new(
                pb::get_resource_identity_schemas::Request {},
            ))
            .await
            .expect("rpc")
            .into_inner();
        r.identity_schemas.get(t).cloned()
    }

    /// ImportResourceState, by ID or (with an empty `id`) by identity: the imported state and
    /// its identity.
    pub async fn import(&self, type_name: &str, id: &str, identity: Option<&Value>) -> StateResult {
        let (_, ty) = self.resource_type(type_name);
        let identity = match identity {
            Some(v) => {
                let ity = self
                    .identity_type(type_name)
                    .await
                    .unwrap_or_else(|| panic!("{type_name} has no identity schema"));
                Some(pb::ResourceIdentityData {
                    identity_data: dv(v, &ity),
                })
            }
            None => None,
        };
        let r = self
            .svc
            .import_resource_state(Request::new(pb::import_resource_state::Request {
                type_name: type_name.into(),
                id: id.into(),
                identity,
                client_capabilities: caps(),
            }))
            .await
            .expect("rpc")
            .into_inner();
        let diagnostics = diags_from_proto(&r.diagnostics);
        match r.imported_resources.into_iter().next() {
            Some(i) => StateResult {
                state: undv(i.state, &ty),
                identity: self.identity_of(type_name, i.identity).await,
                diagnostics,
            },
            None => StateResult {
                state: Value::Null,
                identity: Value::Null,
                diagnostics,
            },
        }
    }

    /// MoveResourceState: `source_state` (raw JSON) of `source_type` of the provider at
    /// `source_address`, schema version `version`, moved to `type_name`.
    pub async fn move_state(
        &self,
        type_name: &str,
        source_address: &str,
        source_type: &str,
        version: i64,
        source_state: &serde_json::Value,
    ) -> StateResult {
        let (_, ty) = self.resource_type(type_name);
        let r = self
            .svc
            .move_resource_state(Request::new(pb::move_resource_state::Request {
                source_provider_address: source_address.into(),
                source_type_name: source_type.into(),
                source_schema_version: version,
                source_state: Some(pb::RawState {
                    json: serde_json::to_vec(source_state).expect("JSON"),
                    flatmap: Default::default(),
                }),
                target_type_name: type_name.into(),
                ..Default::default()
            }))
            .await
            .expect("rpc")
            .into_inner();
        StateResult {
            state: undv(r.target_state, &ty),
            identity: self.identity_of(type_name, r.target_identity).await,
            diagnostics: diags_from_proto(&r.diagnostics),
        }
    }

    fn resource_type(&self, t: &str) -> (Schema, Type) {
        let s = self
            .svc
            .resource_schema(t)
            .unwrap_or_else(|| panic!("no resource type {t}"))
            .clone();
        let ty = s.implied_type();
        (s, ty)
    }

    /// ValidateProviderConfig.
    pub async fn validate_provider(&self, config: Value) -> Diagnostics {
        let ty = self.svc.provider_schema().implied_type();
        let r = self
            .svc
            .validate_provider_config(Request::new(pb::validate_provider_config::Request {
                config: dv(&config, &ty),
            }))
            .await
            .expect("rpc")
            .into_inner();
        diags_from_proto(&r.diagnostics)
    }

    /// ConfigureProvider (as OpenTofu 1.11 would call it).
    pub async fn configure(&self, config: Value) -> Diagnostics {
        let ty = self.svc.provider_schema().implied_type();
        let r = self
            .svc
            .configure_provider(Request::new(pb::configure_provider::Request {
                terraform_version: "1.11.0".into(),
                config: dv(&config, &ty),
                client_capabilities: caps(),
            }))
            .await
            .expect("rpc")
            .into_inner();
        diags_from_proto(&r.diagnostics)
    }

    /// ValidateResourceConfig (client supporting write-only attributes).
    pub async fn validate_resource(&self, type_name: &str, config: Value) -> Diagnostics {
        let (_, ty) = self.resource_type(type_name);
        let r = self
            .svc
            .validate_resource_config(Request::new(pb::validate_resource_config::Request {
                type_name: type_name.into(),
                config: dv(&config, &ty),
                client_capabilities: caps(),
            }))
            .await
            .expect("rpc")
            .into_inner();
        diags_from_proto(&r.diagnostics)
    }

    /// PlanResourceChange with the proposed new state computed from `prior` and `config` as
    /// the CLI does (null `config` plans a destroy).
    pub async fn plan(&self, type_name: &str, prior: &Value, config: &Value) -> PlanResult {
        let (schema, ty) = self.resource_type(type_name);
        let proposed = proposed_new_state(&schema, prior, config);
        let r = self
            .svc
            .plan_resource_change(Request::new(pb::plan_resource_change::Request {
                type_name: type_name.into(),
                prior_state: dv(prior, &ty),
                proposed_new_state: dv(&proposed, &ty),
                config: dv(config, &ty),
                client_capabilities: caps(),
                ..Default::default()
            }))
            .await
            .expect("rpc")
            .into_inner();
        PlanResult {
            planned_state: undv(r.planned_state, &ty),
            requires_replace: r.requires_replace.iter().map(path_from_proto).collect(),
            diagnostics: diags_from_proto(&r.diagnostics),
        }
    }

    /// ApplyResourceChange.
    pub async fn apply(
        &self,
        type_name: &str,
        prior: &Value,
        config: &Value,
        planned: &Value,
    ) -> StateResult {
        let (_, ty) = self.resource_type(type_name);
        let r = self
            .svc
            .apply_resource_change(Request::new(pb::apply_resource_change::Request {
                type_name: type_name.into(),
                prior_state: dv(prior, &ty),
                planned_state: dv(planned, &ty),
                config: dv(config, &ty),
                ..Default::default()
            }))
            .await
            .expect("rpc")
            .into_inner();
        StateResult {
            state: undv(r.new_state, &ty),
            identity: self.identity_of(type_name, r.new_identity).await,
            diagnostics: diags_from_proto(&r.diagnostics),
        }
    }

    /// Validate, plan and apply `config` over `prior` (null prior = create, null config =
    /// destroy). Returns the new state, or all diagnostics when any step failed.
    pub async fn plan_and_apply(
        &self,
        type_name: &str,
        prior: &Value,
        config: &Value,
    ) -> Result<Value, Diagnostics> {
        if !config.is_null() {
            let d = self.validate_resource(type_name, config.clone()).await;
            if d.has_errors() {
                return Err(d);
            }
        }
        let p = self.plan(type_name, prior, config).await;
        if p.diagnostics.has_errors() {
            return Err(p.diagnostics);
        }
        let a = self.apply(type_name, prior, config, &p.planned_state).await;
        if a.diagnostics.has_errors() {
            return Err(a.diagnostics);
        }
        Ok(a.state)
    }

    /// ReadResource.
    pub async fn read(&self, type_name: &str, state: &Value) -> StateResult {
        let (_, ty) = self.resource_type(type_name);
        let r = self
            .svc
            .read_resource(Request::new(pb::read_resource::Request {
                type_name: type_name.into(),
                current_state: dv(state, &ty),
                client_capabilities: caps(),
                ..Default::default()
            }))
            .await
            .expect("rpc")
            .into_inner();
        StateResult {
            state: undv(r.new_state, &ty),
            identity: self.identity_of(type_name, r.new_identity).await,
            diagnostics: diags_from_proto(&r.diagnostics),
        }
    }

    /// ValidateDataResourceConfig.
    pub async fn validate_data_source(&self, type_name: &str, config: Value) -> Diagnostics {
        let ty = self
            .svc
            .data_source_schema(type_name)
            .unwrap_or_else(|| panic!("no data source {type_name}"))
            .implied_type();
        let r = self
            .svc
            .validate_data_resource_config(Request::new(
                pb::validate_data_resource_config::Request {
                    type_name: type_name.into(),
                    config: dv(&config, &ty),
                },
            ))
            .await
            .expect("rpc")
            .into_inner();
        diags_from_proto(&r.diagnostics)
    }

    /// ReadDataSource.
    pub async fn read_data_source(&self, type_name: &str, config: Value) -> StateResult {
        let ty = self
            .svc
            .data_source_schema(type_name)
            .unwrap_or_else(|| panic!("no data source {type_name}"))
            .implied_type();
        let r = self
            .svc
            .read_data_source(Request::new(pb::read_data_source::Request {
                type_name: type_name.into(),
                config: dv(&config, &ty),
                client_capabilities: caps(),
                ..Default::default()
            }))
            .await
            .expect("rpc")
            .into_inner();
        StateResult {
            state: undv(r.state, &ty),
            identity: Value::Null,
            diagnostics: diags_from_proto(&r.diagnostics),
        }
    }

    /// CallFunction.
    pub async fn call_function(
        &self,
        name: &str,
        args: Vec<Value>,
    ) -> Result<Value, FunctionError> {
        let sig = self
            .svc
            .function_signature(name)
            .unwrap_or_else(|| panic!("no function {name}"))
            .clone();
        let arguments = args
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let t = sig
                    .parameters
                    .get(i)
                    .or(sig.variadic.as_ref())
                    .map_or(Type::Dynamic, |p| p.ty.clone());
                dv(a, &t).unwrap_or_default()
            })
            .collect();
        let r = self
            .svc
            .call_function(Request::new(pb::call_function::Request {
                name: name.into(),
                arguments,
            }))
            .await
            .expect("rpc")
            .into_inner();
        match r.error {
            Some(e) => Err(FunctionError {
                message: e.text,
                argument: e.function_argument,
            }),
            None => Ok(undv(r.result, &sig.return_type)),
        }
    }

    /// StopProvider.
    pub fn stop(&self) {
        self.svc.stop();
    }
}

/// The CLI's proposed new state: configuration values, except computed attributes left
/// null in the configuration, which keep their prior value. A null config (destroy) gives
/// null.
pub fn proposed_new_state(schema: &Schema, prior: &Value, config: &Value) -> Value {
    if config.is_null() {
        return Value::Null;
    }
    proposed_block(&schema.block, prior, config)
}

fn proposed_block(b: &Block, prior: &Value, config: &Value) -> Value {
    if !config.is_known() || config.is_null() {
        return config.clone();
    }
    let Some(cfg) = config.as_entries() else {
        return config.clone();
    };
    let mut out = cfg.clone();
    for (name, a) in &b.attributes {
        let c = cfg.get(name).cloned().unwrap_or(Value::Null);
        let p = prior.get_attr(name).cloned().unwrap_or(Value::Null);
        let v = if a.computed && c.is_null() {
            p
        } else if let AttributeType::Nested(n) = &a.ty {
            let inner = Block {
                attributes: n.attributes.clone(),
                ..Block::default()
            };
            proposed_nested(n.nesting, &inner, &p, &c)
        } else {
            c
        };
        out.insert(name.clone(), v);
    }
    for (name, nb) in &b.blocks {
        let c = cfg.get(name).cloned().unwrap_or(Value::Null);
        let p = prior.get_attr(name).cloned().unwrap_or(Value::Null);
        let mode = match nb.nesting {
            BlockNesting::Single | BlockNesting::Group => NestingMode::Single,
            BlockNesting::List => NestingMode::List,
            BlockNesting::Set => NestingMode::Set,
            BlockNesting::Map => NestingMode::Map,
        };
        out.insert(name.clone(), proposed_nested(mode, &nb.block, &p, &c));
    }
    Value::Object(out)
}

fn proposed_nested(mode: NestingMode, b: &Block, prior: &Value, config: &Value) -> Value {
    if !config.is_known() || config.is_null() {
        return config.clone();
    }
    match (mode, config) {
        (NestingMode::Single, c) => proposed_block(b, prior, c),
        (NestingMode::List, Value::List(cs)) => Value::List(
            cs.iter()
                .enumerate()
                .map(|(i, c)| {
                    let p = prior
                        .as_elements()
                        .and_then(|e| e.get(i))
                        .cloned()
                        .unwrap_or(Value::Null);
                    proposed_block(b, &p, c)
                })
                .collect(),
        ),
        (NestingMode::Map, Value::Map(cs)) => Value::Map(
            cs.iter()
                .map(|(k, c)| {
                    let p = prior
                        .as_entries()
                        .and_then(|m| m.get(k))
                        .cloned()
                        .unwrap_or(Value::Null);
                    (k.clone(), proposed_block(b, &p, c))
                })
                .collect(),
        ),
        (NestingMode::Set, Value::Set(cs)) => Value::Set(
            cs.iter()
                .map(|c| proposed_block(b, &Value::Null, c))
                .collect(),
        ),
        (_, c) => c.clone(),
    }
}
