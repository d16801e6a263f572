//! [`ProviderService`]: the tfplugin6 `Provider` gRPC service on top of the framework traits.
//!
//! Serve it with waddle-tfplugin (`waddle_tfplugin::server::serve(ProviderService::new(p), opts)`)
//! or wrap it in `tfplugin6::provider_server::ProviderServer::new(..)` for tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use waddle_tfplugin::tfplugin6 as pb;

use crate::codec::{self, JsonDecodeOptions};
use crate::diag::Diagnostics;
use crate::path::AttributePath;
use crate::plan::{self, ValidateFor};
use crate::proto::{self, decode_dynamic, diags_to_proto, encode_dynamic};
use crate::provider::{
    Context, CreateRequest, DataSource, EphemeralResource, Function, FunctionError,
    FunctionSignature, IdentitySchema, ImportRequest, MoveStateRequest, Plan, PlanRequest,
    Provider, ProviderData, Resource, UpdateRequest,
};
use crate::schema::Schema;
use crate::types::Type;
use crate::value::Value;

type RpcResult<T> = Result<Response<T>, Status>;

struct ResourceEntry {
    resource: Arc<dyn Resource>,
    schema: Schema,
    ty: Type,
    identity: Option<(IdentitySchema, Type)>,
}

struct DataSourceEntry {
    data_source: Arc<dyn DataSource>,
    schema: Schema,
    ty: Type,
}

struct EphemeralEntry {
    ephemeral: Arc<dyn EphemeralResource>,
    schema: Schema,
    ty: Type,
}

struct FunctionEntry {
    function: Arc<dyn Function>,
    signature: FunctionSignature,
}

struct Inner {
    provider: Arc<dyn Provider>,
    provider_schema: Schema,
    provider_ty: Type,
    resources: BTreeMap<String, ResourceEntry>,
    data_sources: BTreeMap<String, DataSourceEntry>,
    ephemerals: BTreeMap<String, EphemeralEntry>,
    functions: BTreeMap<String, FunctionEntry>,
    /// Problems in the provider's own definitions (reported by GetProviderSchema).
    definition_diags: Diagnostics,
    cancel: Mutex<CancellationToken>,
    /// Parent of every operation's token: cancelled when the plugin shuts down.
    root: Mutex<CancellationToken>,
    provider_data: RwLock<Option<ProviderData>>,
    terraform_version: RwLock<String>,
}

/// The tfplugin6 service for a [`Provider`]. Cheap to clone.
#[derive(Clone)]
pub struct ProviderService {
    inner: Arc<Inner>,
}

impl ProviderService {
    /// Build the service; schemas and signatures are computed once here.
    pub fn new<P: Provider>(provider: P) -> Self {
        Self::from_arc(Arc::new(provider))
    }

    pub fn from_arc(provider: Arc<dyn Provider>) -> Self {
        let mut definition_diags = Diagnostics::new();
        let provider_schema = provider.schema();
        definition_diags.extend(provider_schema.check());
        let mut resources = BTreeMap::new();
        for r in provider.resources() {
            let schema = r.schema();
            let name = r.type_name().to_string();
            for mut d in schema.check() {
                d.summary = format!("{name}: {}", d.summary);
                definition_diags.push(d);
            }
            let identity = r.identity_schema().map(|s| {
                let t = s.implied_type();
                (s, t)
            });
            let entry = ResourceEntry {
                ty: schema.implied_type(),
                schema,
                resource: r,
                identity,
            };
            if resources.insert(name.clone(), entry).is_some() {
                definition_diags.error("Duplicate resource type", name);
            }
        }
        let mut data_sources = BTreeMap::new();
        for d in provider.data_sources() {
            let schema = d.schema();
            let name = d.type_name().to_string();
            for mut x in schema.check() {
                x.summary = format!("{name}: {}", x.summary);
                definition_diags.push(x);
            }
            for (attr, a) in &schema.block.attributes {
                if a.write_only {
                    definition_diags.error(
                        "Invalid schema",
                        format!("{name}.{attr}: data sources cannot have write-only attributes"),
                    );
                }
            }
            let entry = DataSourceEntry {
                ty: schema.implied_type(),
                schema,
                data_source: d,
            };
            if data_sources.insert(name.clone(), entry).is_some() {
                definition_diags.error("Duplicate data source type", name);
            }
        }
        let mut ephemerals = BTreeMap::new();
        for e in provider.ephemeral_resources() {
            let schema = e.schema();
            let name = e.type_name().to_string();
            for mut x in schema.check() {
                x.summary = format!("{name}: {}", x.summary);
                definition_diags.push(x);
            }
            let entry = EphemeralEntry {
                ty: schema.implied_type(),
                schema,
                ephemeral: e,
            };
            if ephemerals.insert(name.clone(), entry).is_some() {
                definition_diags.error("Duplicate ephemeral resource type", name);
            }
        }
        let mut functions = BTreeMap::new();
        for f in provider.functions() {
            let name = f.name().to_string();
            let entry = FunctionEntry {
                signature: f.signature(),
                function: f,
            };
            if functions.insert(name.clone(), entry).is_some() {
                definition_diags.error("Duplicate function", name);
            }
        }
        ProviderService {
            inner: Arc::new(Inner {
                provider_ty: provider_schema.implied_type(),
                provider_schema,
                provider,
                resources,
                data_sources,
                ephemerals,
                functions,
                definition_diags,
                cancel: Mutex::new(CancellationToken::new()),
                root: Mutex::new(CancellationToken::new()),
                provider_data: RwLock::new(None),
                terraform_version: RwLock::new(String::new()),
            }),
        }
    }

    /// Wrap in the generated tonic server.
    pub fn into_server(self) -> pb::provider_server::ProviderServer<Self> {
        pb::provider_server::ProviderServer::new(self)
    }

    /// The provider configuration schema.
    pub fn provider_schema(&self) -> &Schema {
        &self.inner.provider_schema
    }
    /// Schema of a resource type.
    pub fn resource_schema(&self, type_name: &str) -> Option<&Schema> {
        self.inner.resources.get(type_name).map(|e| &e.schema)
    }
    /// Schema of a data source type.
    pub fn data_source_schema(&self, type_name: &str) -> Option<&Schema> {
        self.inner.data_sources.get(type_name).map(|e| &e.schema)
    }
    /// Schema of an ephemeral resource type.
    pub fn ephemeral_resource_schema(&self, type_name: &str) -> Option<&Schema> {
        self.inner.ephemerals.get(type_name).map(|e| &e.schema)
    }
    /// Signature of a function.
    pub fn function_signature(&self, name: &str) -> Option<&FunctionSignature> {
        self.inner.functions.get(name).map(|e| &e.signature)
    }

    /// Problems found in the provider's definitions (schemas, duplicate names).
    pub fn definition_diagnostics(&self) -> &Diagnostics {
        &self.inner.definition_diags
    }

    /// Cancel in-flight operations (as StopProvider does). Later calls get a fresh token.
    pub fn stop(&self) {
        let root = self.root();
        let mut guard = self
            .inner
            .cancel
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        guard.cancel();
        *guard = root.child_token();
    }

    /// Cancel every operation, in flight or later, once `shutdown` is cancelled (the plugin
    /// server's shutdown signal: `Shutdown` from the host, SIGTERM, the host's exit).
    pub fn stop_on(&self, shutdown: &CancellationToken) {
        *self
            .inner
            .root
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = shutdown.clone();
        let mut guard = self
            .inner
            .cancel
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *guard = shutdown.child_token();
    }

    fn root(&self) -> CancellationToken {
        self.inner
            .root
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn ctx(&self) -> Context {
        let cancel = self
            .inner
            .cancel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let data = self
            .inner
            .provider_data
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let version = self
            .inner
            .terraform_version
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Context::new(cancel, data, &version)
    }

    fn resource(&self, name: &str, diags: &mut Diagnostics) -> Option<&ResourceEntry> {
        let r = self.inner.resources.get(name);
        if r.is_none() {
            diags.error(
                "Resource Type Not Found",
                format!("The provider does not support the resource type {name:?}."),
            );
        }
        r
    }

    fn data_source(&self, name: &str, diags: &mut Diagnostics) -> Option<&DataSourceEntry> {
        let r = self.inner.data_sources.get(name);
        if r.is_none() {
            diags.error(
                "Data Source Type Not Found",
                format!("The provider does not support the data source type {name:?}."),
            );
        }
        r
    }

    fn ephemeral(&self, name: &str, diags: &mut Diagnostics) -> Option<&EphemeralEntry> {
        let r = self.inner.ephemerals.get(name);
        if r.is_none() {
            diags.error(
                "Ephemeral Resource Type Not Found",
                format!("The provider does not support the ephemeral resource type {name:?}."),
            );
        }
        r
    }

    fn capabilities() -> pb::ServerCapabilities {
        pb::ServerCapabilities {
            plan_destroy: false,
            get_provider_schema_optional: true,
            move_resource_state: true,
        }
    }
}

/// Decode a DynamicValue or record an error diagnostic.
fn decode(
    dv: Option<&pb::DynamicValue>,
    ty: &Type,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<Value> {
    match decode_dynamic(dv, ty) {
        Ok(v) => Some(v),
        Err(e) => {
            diags.push(
                crate::diag::Diagnostic::error(
                    format!("Unable to Decode {what}"),
                    e.message.clone(),
                )
                .at(e.path),
            );
            None
        }
    }
}

fn encode(v: &Value, ty: &Type, what: &str, diags: &mut Diagnostics) -> Option<pb::DynamicValue> {
    match encode_dynamic(v, ty) {
        Ok(d) => Some(d),
        Err(e) => {
            diags.push(
                crate::diag::Diagnostic::error(
                    format!("Unable to Encode {what}"),
                    format!(
                        "The provider produced an invalid value (a provider bug): {}",
                        e.message
                    ),
                )
                .at(e.path),
            );
            None
        }
    }
}

fn identity_data(
    entry: &ResourceEntry,
    state: &Value,
    diags: &mut Diagnostics,
) -> Option<pb::ResourceIdentityData> {
    let (_, ty) = entry.identity.as_ref()?;
    if state.is_null() {
        return None;
    }
    let id = entry.resource.identity(state)?;
    // Only report identities that are fully known and not entirely null (e.g. during a
    // create plan the ID is still unknown).
    let all_null = id
        .as_entries()
        .is_some_and(|m| m.values().all(Value::is_null));
    if !id.is_wholly_known() || id.is_null() || all_null {
        return None;
    }
    Some(pb::ResourceIdentityData {
        identity_data: Some(encode(&id, ty, "Resource Identity", diags)?),
    })
}

/// New state returned after apply/read/import must be wholly known.
fn check_known(v: &mut Value, what: &str, diags: &mut Diagnostics) {
    if let Some(p) = plan::first_unknown(v, &AttributePath::root()) {
        diags.error_at(
            p.clone(),
            "Provider returned invalid result object",
            format!("The {what} contains an unknown value at {p} (a provider bug); it is stored as null."),
        );
        *v = v.unknown_as_null();
    }
}

/// Raw state JSON through the chain of upgraders to the current version.
fn upgrade_raw(
    from: i64,
    to: i64,
    raw: serde_json::Value,
    step: &dyn Fn(i64, serde_json::Value, &mut Diagnostics) -> Option<serde_json::Value>,
    diags: &mut Diagnostics,
) -> Option<serde_json::Value> {
    if from > to {
        diags.error(
            "Unable to Upgrade Resource State",
            format!("The stored state has schema version {from}, newer than this provider's version {to}. Use a newer provider."),
        );
        return None;
    }
    let mut cur = raw;
    for v in from..to {
        cur = step(v, cur, diags)?;
        if diags.has_errors() {
            return None;
        }
    }
    Some(cur)
}

#[tonic::async_trait]
impl pb::provider_server::Provider for ProviderService {
    async fn get_metadata(
        &self,
        _r: Request<pb::get_metadata::Request>,
    ) -> RpcResult<pb::get_metadata::Response> {
        use pb::get_metadata as m;
        let i = &self.inner;
        Ok(Response::new(m::Response {
            server_capabilities: Some(Self::capabilities()),
            diagnostics: diags_to_proto(&i.definition_diags),
            data_sources: i
                .data_sources
                .keys()
                .map(|k| m::DataSourceMetadata {
                    type_name: k.clone(),
                })
                .collect(),
            resources: i
                .resources
                .keys()
                .map(|k| m::ResourceMetadata {
                    type_name: k.clone(),
                })
                .collect(),
            functions: i
                .functions
                .keys()
                .map(|k| m::FunctionMetadata { name: k.clone() })
                .collect(),
            ephemeral_resources: i
                .ephemerals
                .keys()
                .map(|k| m::EphemeralMetadata {
                    type_name: k.clone(),
                })
                .collect(),
        }))
    }

    async fn get_provider_schema(
        &self,
        _r: Request<pb::get_provider_schema::Request>,
    ) -> RpcResult<pb::get_provider_schema::Response> {
        let i = &self.inner;
        Ok(Response::new(pb::get_provider_schema::Response {
            provider: Some(proto::schema_to_proto(&i.provider_schema)),
            resource_schemas: i
                .resources
                .iter()
                .map(|(k, e)| (k.clone(), proto::schema_to_proto(&e.schema)))
                .collect(),
            data_source_schemas: i
                .data_sources
                .iter()
                .map(|(k, e)| (k.clone(), proto::schema_to_proto(&e.schema)))
                .collect(),
            diagnostics: diags_to_proto(&i.definition_diags),
            provider_meta: None,
            server_capabilities: Some(Self::capabilities()),
            functions: i
                .functions
                .iter()
                .map(|(k, f)| (k.clone(), proto::function_to_proto(&f.signature)))
                .collect(),
            ephemeral_resource_schemas: i
                .ephemerals
                .iter()
                .map(|(k, e)| (k.clone(), proto::schema_to_proto(&e.schema)))
                .collect(),
        }))
    }

    async fn validate_provider_config(
        &self,
        r: Request<pb::validate_provider_config::Request>,
    ) -> RpcResult<pb::validate_provider_config::Response> {
        let req = r.into_inner();
        let mut diags = Diagnostics::new();
        let i = &self.inner;
        if let Some(config) = decode(
            req.config.as_ref(),
            &i.provider_ty,
            "Provider Configuration",
            &mut diags,
        ) {
            plan::validate_config(&i.provider_schema, &config, ValidateFor::Other, &mut diags);
            i.provider
                .validate_config(&self.ctx(), &config, &mut diags)
                .await;
        }
        Ok(Response::new(pb::validate_provider_config::Response {
            diagnostics: diags_to_proto(&diags),
        }))
    }

    async fn validate_resource_config(
        &self,
        r: Request<pb::validate_resource_config::Request>,
    ) -> RpcResult<pb::validate_resource_config::Response> {
        let req = r.into_inner();
        waddle_tfplugin::rpc_span::record_resource_type(&req.type_name);
        let mut diags = Diagnostics::new();
        if let Some(e) = self.resource(&req.type_name, &mut diags) {
            if let Some(config) = decode(
                req.config.as_ref(),
                &e.ty,
                "Resource Configuration",
                &mut diags,
            ) {
                let write_only_allowed = req
                    .client_capabilities
                    .as_ref()
                    .is_some_and(|c| c.write_only_attributes_allowed);
                plan::validate_config(
                    &e.schema,
                    &config,
                    ValidateFor::Resource { write_only_allowed },
                    &mut diags,
                );
                e.resource
                    .validate_config(&self.ctx(), &config, &mut diags)
                    .await;
            }
        }
        Ok(Response::new(pb::validate_resource_config::Response {
            diagnostics: diags_to_proto(&diags),
        }))
    }

    async fn validate_data_resource_config(
        &self,
        r: Request<pb::validate_data_resource_config::Request>,
    ) -> RpcResult<pb::validate_data_resource_config::Response> {
        let req = r.into_inner();
        waddle_tfplugin::rpc_span::record_resource_type(&req.type_name);
        let mut diags = Diagnostics::new();
        if let Some(e) = self.data_source(&req.type_name, &mut diags) {
            if let Some(config) = decode(
                req.config.as_ref(),
                &e.ty,
                "Data Source Configuration",
                &mut diags,
            ) {
                plan::validate_config(&e.schema, &config, ValidateFor::Other, &mut diags);
                e.data_source
                    .validate_config(&self.ctx(), &config, &mut diags)
                    .await;
            }
        }
        Ok(Response::new(pb::validate_data_resource_config::Response {
            diagnostics: diags_to_proto(&diags),
        }))
    }

    async fn upgrade_resource_state(
        &self,
        r: Request<pb::upgrade_resource_state::Request>,
    ) -> RpcResult<pb::upgrade_resource_state::Response> {
        let req = r.into_inner();
        waddle_tfplugin::rpc_span::record_resource_type(&req.type_name);
        let mut diags = Diagnostics::new();
        let mut upgraded_state = None;
        if let Some(e) = self.resource(&req.type_name, &mut diags) {
            upgraded_state = upgrade_state(e, req.version, req.raw_state.as_ref(), &mut diags);
        }
        Ok(Response::new(pb::upgrade_resource_state::Response {
            upgraded_state,
            diagnostics: diags_to_proto(&diags),
        }))
    }

    async fn get_resource_identity_schemas(
        &self,
        _r: Request<pb::get_resource_identity_schemas::Request>,
    ) -> RpcResult<pb::get_resource_identity_schemas::Response> {
        Ok(Response::new(pb::get_resource_identity_schemas::Response {
            identity_schemas: self
                .inner
                .resources
                .iter()
                .filter_map(|(k, e)| {
                    e.identity
                        .as_ref()
                        .map(|(s, _)| (k.clone(), proto::identity_schema_to_proto(s)))
                })
                .collect(),
            diagnostics: Vec::new(),
        }))
    }

    async fn upgrade_resource_identity(
        &self,
        r: Request<pb::upgrade_resource_identity::Request>,
    ) -> RpcResult<pb::upgrade_resource_identity::Response> {
        let req = r.into_inner();
        let mut diags = Diagnostics::new();
        let mut upgraded_identity = None;
        if let Some(e) = self.resource(&req.type_name, &mut diags) {
            match &e.identity {
                None => diags.error(
                    "Resource Identity Not Supported",
                    format!("{} does not support resource identity.", req.type_name),
                ),
                Some((schema, ty)) => {
                    upgraded_identity = (|| {
                        let raw: serde_json::Value = match serde_json::from_slice(&req.raw_identity)
                        {
                            Ok(j) => j,
                            Err(err) => {
                                diags.error("Unable to Read Identity", err.to_string());
                                return None;
                            }
                        };
                        let res = e.resource.clone();
                        let j = upgrade_raw(
                            req.version,
                            schema.version,
                            raw,
                            &|v, raw, d| res.upgrade_identity(v, raw, d),
                            &mut diags,
                        )?;
                        let v = match codec::decode_json(&j, ty, JsonDecodeOptions::default()) {
                            Ok(v) => v,
                            Err(err) => {
                                diags.error("Unable to Upgrade Resource Identity", err.to_string());
                                return None;
                            }
                        };
                        Some(pb::ResourceIdentityData {
                            identity_data: Some(encode(&v, ty, "Resource Identity", &mut diags)?),
                        })
                    })();
                }
            }
        }
        Ok(Response::new(pb::upgrade_resource_identity::Response {
            upgraded_identity,
            diagnostics: diags_to_proto(&diags),
        }))
    }

    async fn configure_provider(
        &self,
        r: Request<pb::configure_provider::Request>,
    ) -> RpcResult<pb::configure_provider::Response> {
        let req = r.into_inner();
        let mut diags = Diagnostics::new();
        *self
            .inner
            .terraform_version
            .write()
            .unwrap_or_else(PoisonError::into_inner) = req.terraform_version.clone();
        if let Some(config) = decode(
            req.config.as_ref(),
            &self.inner.provider_ty,
            "Provider Configuration",
            &mut diags,
        ) {
            let data = self
                .inner
                .provider
                .configure(&self.ctx(), &config, &mut diags)
                .await;
            if let Some(data) = data {
                *self
                    .inner
                    .provider_data
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(data);
            }
        }
        Ok(Response::new(pb::configure_provider::Response {
            diagnostics: diags_to_proto(&diags),
        }))
    }

    async fn read_resource(
        &self,
        r: Request<pb::read_resource::Request>,
    ) -> RpcResult<pb::read_resource::Response> {
        let req = r.into_inner();
        waddle_tfplugin::rpc_span::record_resource_type(&req.type_name);
        let mut diags = Diagnostics::new();
        let mut resp = pb::read_resource::Response {
            new_state: req.current_state.clone(),
            private: req.private.clone(),
            ..Default::default()
        };
        let Some(e) = self.resource(&req.type_name, &mut diags) else {
            resp.diagnostics = diags_to_proto(&diags);
            return Ok(Response::new(resp));
        };
        if let Some(state) = decode(
            req.current_state.as_ref(),
            &e.ty,
            "Resource State",
            &mut diags,
        ) {
            if !state.is_null() {
                let new = e.resource.read(&self.ctx(), state, &mut diags).await;
                let mut new = new.unwrap_or(Value::Null);
                plan::null_write_only(&e.schema, &mut new);
                check_known(&mut new, "refreshed state", &mut diags);
                resp.new_identity = if new.is_null() {
                    None
                } else {
                    identity_data(e, &new, &mut diags).or(req.current_identity.clone())
                };
                resp.new_state = encode(&new, &e.ty, "Resource State", &mut diags);
            }
        }
        resp.diagnostics = diags_to_proto(&diags);
        Ok(Response::new(resp))
    }

    async fn plan_resource_change(
        &self,
        r: Request<pb::plan_resource_change::Request>,
    ) -> RpcResult<pb::plan_resource_change::Response> {
        let req = r.into_inner();
        waddle_tfplugin::rpc_span::record_resource_type(&req.type_name);
        let mut diags = Diagnostics::new();
        let mut resp = pb::plan_resource_change::Response {
            planned_private: req.prior_private.clone(),
            planned_identity: req.prior_identity.clone(),
            ..Default::default()
        };
        let Some(e) = self.resource(&req.type_name, &mut diags) else {
            resp.diagnostics = diags_to_proto(&diags);
            return Ok(Response::new(resp));
        };
        let decoded = (
            decode(req.config.as_ref(), &e.ty, "Configuration", &mut diags),
            decode(req.prior_state.as_ref(), &e.ty, "Prior State", &mut diags),
            decode(
                req.proposed_new_state.as_ref(),
                &e.ty,
                "Proposed New State",
                &mut diags,
            ),
        );
        if let (Some(config), Some(prior), Some(proposed)) = decoded {
            let request = PlanRequest {
                config,
                prior_state: prior,
                proposed_new_state: proposed,
            };
            let mut plan = if request.is_destroy() {
                Plan {
                    state: Value::Null,
                    requires_replace: Vec::new(),
                }
            } else {
                let (state, requires_replace) = plan::plan_change(
                    &e.schema,
                    &request.config,
                    &request.prior_state,
                    &request.proposed_new_state,
                );
                Plan {
                    state,
                    requires_replace,
                }
            };
            e.resource
                .modify_plan(&self.ctx(), &request, &mut plan, &mut diags)
                .await;
            if request.is_destroy() {
                plan.state = Value::Null;
            } else {
                plan::null_write_only(&e.schema, &mut plan.state);
                if resp.planned_identity.is_none() {
                    resp.planned_identity = identity_data(e, &plan.state, &mut diags);
                }
            }
            resp.planned_state = encode(&plan.state, &e.ty, "Planned State", &mut diags);
            // Deterministic: sorted by rendering, duplicates removed.
            plan.requires_replace.sort_by_key(|p| p.to_string());
            plan.requires_replace.dedup();
            resp.requires_replace = plan
                .requires_replace
                .iter()
                .map(proto::path_to_proto)
                .collect();
        }
        resp.diagnostics = diags_to_proto(&diags);
        Ok(Response::new(resp))
    }

    async fn apply_resource_change(
        &self,
        r: Request<pb::apply_resource_change::Request>,
    ) -> RpcResult<pb::apply_resource_change::Response> {
        let req = r.into_inner();
        waddle_tfplugin::rpc_span::record_resource_type(&req.type_name);
        let mut diags = Diagnostics::new();
        let mut resp = pb::apply_resource_change::Response {
            private: req.planned_private.clone(),
            ..Default::default()
        };
        let Some(e) = self.resource(&req.type_name, &mut diags) else {
            resp.diagnostics = diags_to_proto(&diags);
            return Ok(Response::new(resp));
        };
        let decoded = (
            decode(req.config.as_ref(), &e.ty, "Configuration", &mut diags),
            decode(req.prior_state.as_ref(), &e.ty, "Prior State", &mut diags),
            decode(
                req.planned_state.as_ref(),
                &e.ty,
                "Planned State",
                &mut diags,
            ),
        );
        if let (Some(config), Some(prior), Some(planned)) = decoded {
            let ctx = self.ctx();
            let new = if planned.is_null() {
                e.resource.delete(&ctx, prior.clone(), &mut diags).await;
                // A failed delete keeps the prior state.
                if diags.has_errors() {
                    prior
                } else {
                    Value::Null
                }
            } else if prior.is_null() {
                let created = e
                    .resource
                    .create(
                        &ctx,
                        CreateRequest {
                            config,
                            planned_state: planned,
                        },
                        &mut diags,
                    )
                    .await;
                if created.is_none() && !diags.has_errors() {
                    diags.error(
                        "Missing Resource State After Create",
                        format!(
                            "{} returned no state and no error (a provider bug).",
                            req.type_name
                        ),
                    );
                }
                created.unwrap_or(Value::Null)
            } else {
                let updated = e
                    .resource
                    .update(
                        &ctx,
                        UpdateRequest {
                            config,
                            planned_state: planned,
                            prior_state: prior.clone(),
                        },
                        &mut diags,
                    )
                    .await;
                match updated {
                    Some(v) => v,
                    None if diags.has_errors() => prior,
                    None => {
                        diags.error(
                            "Missing Resource State After Update",
                            format!(
                                "{} returned no state and no error (a provider bug).",
                                req.type_name
                            ),
                        );
                        prior
                    }
                }
            };
            let mut new = new;
            plan::null_write_only(&e.schema, &mut new);
            check_known(&mut new, "new state", &mut diags);
            resp.new_identity = if new.is_null() {
                None
            } else {
                identity_data(e, &new, &mut diags).or(req.planned_identity.clone())
            };
            resp.new_state = encode(&new, &e.ty, "New State", &mut diags);
        }
        resp.diagnostics = diags_to_proto(&diags);
        Ok(Response::new(resp))
    }

    async fn import_resource_state(
        &self,
        r: Request<pb::import_resource_state::Request>,
    ) -> RpcResult<pb::import_resource_state::Response> {
        let req = r.into_inner();
        waddle_tfplugin::rpc_span::record_resource_type(&req.type_name);
        let mut diags = Diagnostics::new();
        let mut imported = Vec::new();
        if let Some(e) = self.resource(&req.type_name, &mut diags) {
            let identity = match (
                &e.identity,
                req.identity.as_ref().and_then(|i| i.identity_data.as_ref()),
            ) {
                (Some((_, ty)), Some(dv)) => decode(Some(dv), ty, "Resource Identity", &mut diags),
                _ => None,
            };
            if !diags.has_errors() {
                let state = e
                    .resource
                    .import_state(
                        &self.ctx(),
                        ImportRequest {
                            id: req.id.clone(),
                            identity,
                        },
                        &mut diags,
                    )
                    .await;
                if let Some(mut state) = state {
                    plan::null_write_only(&e.schema, &mut state);
                    let identity = identity_data(e, &state, &mut diags);
                    if let Some(dv) = encode(&state, &e.ty, "Imported State", &mut diags) {
                        imported.push(pb::import_resource_state::ImportedResource {
                            type_name: req.type_name.clone(),
                            state: Some(dv),
                            private: Vec::new(),
                            identity,
                        });
                    }
                }
            }
        }
        Ok(Response::new(pb::import_resource_state::Response {
            imported_resources: imported,
            diagnostics: diags_to_proto(&diags),
            deferred: None,
        }))
    }

    async fn move_resource_state(
        &self,
        r: Request<pb::move_resource_state::Request>,
    ) -> RpcResult<pb::move_resource_state::Response> {
        let req = r.into_inner();
        let mut diags = Diagnostics::new();
        let mut resp = pb::move_resource_state::Response::default();
        if let Some(e) = self.resource(&req.target_type_name, &mut diags) {
            let raw = req
                .source_state
                .as_ref()
                .map(|s| s.json.as_slice())
                .unwrap_or_default();
            let source_state = if raw.is_empty() {
                Some(serde_json::Value::Null)
            } else {
                match serde_json::from_slice(raw) {
                    Ok(j) => Some(j),
                    Err(err) => {
                        diags.error("Unable to Read Source State", err.to_string());
                        None
                    }
                }
            };
            if let Some(source_state) = source_state {
                let mreq = MoveStateRequest {
                    source_provider_address: req.source_provider_address.clone(),
                    source_type_name: req.source_type_name.clone(),
                    source_schema_version: req.source_schema_version,
                    source_state,
                    source_identity: None,
                };
                let moved = e.resource.move_state(&self.ctx(), mreq, &mut diags).await;
                match moved {
                    Some(mut v) => {
                        plan::null_write_only(&e.schema, &mut v);
                        check_known(&mut v, "moved state", &mut diags);
                        resp.target_identity = identity_data(e, &v, &mut diags);
                        resp.target_state = encode(&v, &e.ty, "Target State", &mut diags);
                        resp.target_private = req.source_private.clone();
                    }
                    None if !diags.has_errors() => diags.error(
                        "Unable to Move Resource State",
                        format!(
                            "The target resource type {} does not support moving from {} ({}).",
                            req.target_type_name, req.source_type_name, req.source_provider_address
                        ),
                    ),
                    None => {}
                }
            }
        }
        resp.diagnostics = diags_to_proto(&diags);
        Ok(Response::new(resp))
    }

    async fn read_data_source(
        &self,
        r: Request<pb::read_data_source::Request>,
    ) -> RpcResult<pb::read_data_source::Response> {
        let req = r.into_inner();
        waddle_tfplugin::rpc_span::record_resource_type(&req.type_name);
        let mut diags = Diagnostics::new();
        let mut state = None;
        if let Some(e) = self.data_source(&req.type_name, &mut diags) {
            if let Some(config) = decode(
                req.config.as_ref(),
                &e.ty,
                "Data Source Configuration",
                &mut diags,
            ) {
                let out = e.data_source.read(&self.ctx(), config, &mut diags).await;
                state = wholly_known(out, &e.ty, "Data Source State", &req.type_name, &mut diags);
            }
        }
        Ok(Response::new(pb::read_data_source::Response {
            state,
            diagnostics: diags_to_proto(&diags),
            deferred: None,
        }))
    }

    async fn validate_ephemeral_resource_config(
        &self,
        r: Request<pb::validate_ephemeral_resource_config::Request>,
    ) -> RpcResult<pb::validate_ephemeral_resource_config::Response> {
        let req = r.into_inner();
        waddle_tfplugin::rpc_span::record_resource_type(&req.type_name);
        let mut diags = Diagnostics::new();
        if let Some(e) = self.ephemeral(&req.type_name, &mut diags) {
            if let Some(config) = decode(
                req.config.as_ref(),
                &e.ty,
                "Ephemeral Resource Configuration",
                &mut diags,
            ) {
                plan::validate_config(&e.schema, &config, ValidateFor::Other, &mut diags);
                e.ephemeral
                    .validate_config(&self.ctx(), &config, &mut diags)
                    .await;
            }
        }
        Ok(Response::new(
            pb::validate_ephemeral_resource_config::Response {
                diagnostics: diags_to_proto(&diags),
            },
        ))
    }

    async fn open_ephemeral_resource(
        &self,
        r: Request<pb::open_ephemeral_resource::Request>,
    ) -> RpcResult<pb::open_ephemeral_resource::Response> {
        let req = r.into_inner();
        waddle_tfplugin::rpc_span::record_resource_type(&req.type_name);
        let mut diags = Diagnostics::new();
        let mut result = None;
        if let Some(e) = self.ephemeral(&req.type_name, &mut diags) {
            if let Some(config) = decode(
                req.config.as_ref(),
                &e.ty,
                "Ephemeral Resource Configuration",
                &mut diags,
            ) {
                let out = e.ephemeral.open(&self.ctx(), config, &mut diags).await;
                result = wholly_known(
                    out,
                    &e.ty,
                    "Ephemeral Resource Result",
                    &req.type_name,
                    &mut diags,
                );
            }
        }
        Ok(Response::new(pb::open_ephemeral_resource::Response {
            diagnostics: diags_to_proto(&diags),
            renew_at: None,
            result,
            private: None,
            deferred: None,
        }))
    }

    async fn renew_ephemeral_resource(
        &self,
        r: Request<pb::renew_ephemeral_resource::Request>,
    ) -> RpcResult<pb::renew_ephemeral_resource::Response> {
        // Nothing waddle opens needs renewing (no renew_at is ever returned).
        let req = r.into_inner();
        let mut diags = Diagnostics::new();
        self.ephemeral(&req.type_name, &mut diags);
        Ok(Response::new(pb::renew_ephemeral_resource::Response {
            diagnostics: diags_to_proto(&diags),
            renew_at: None,
            private: req.private,
        }))
    }

    async fn close_ephemeral_resource(
        &self,
        r: Request<pb::close_ephemeral_resource::Request>,
    ) -> RpcResult<pb::close_ephemeral_resource::Response> {
        // Nothing to release: results are self-contained (e.g. a short-lived certificate).
        let req = r.into_inner();
        let mut diags = Diagnostics::new();
        self.ephemeral(&req.type_name, &mut diags);
        Ok(Response::new(pb::close_ephemeral_resource::Response {
            diagnostics: diags_to_proto(&diags),
        }))
    }

    async fn get_functions(
        &self,
        _r: Request<pb::get_functions::Request>,
    ) -> RpcResult<pb::get_functions::Response> {
        Ok(Response::new(pb::get_functions::Response {
            functions: self
                .inner
                .functions
                .iter()
                .map(|(k, f)| (k.clone(), proto::function_to_proto(&f.signature)))
                .collect(),
            diagnostics: Vec::new(),
        }))
    }

    async fn call_function(
        &self,
        r: Request<pb::call_function::Request>,
    ) -> RpcResult<pb::call_function::Response> {
        let req = r.into_inner();
        let result = match self.inner.functions.get(&req.name) {
            None => Err(FunctionError::new(format!(
                "The provider has no function named {:?}.",
                req.name
            ))),
            Some(f) => call(&self.ctx(), f, &req.arguments).await,
        };
        Ok(Response::new(match result {
            Ok(v) => pb::call_function::Response {
                result: Some(v),
                error: None,
            },
            Err(e) => pb::call_function::Response {
                result: None,
                error: Some(pb::FunctionError {
                    text: e.message,
                    function_argument: e.argument,
                }),
            },
        }))
    }

    async fn stop_provider(
        &self,
        _r: Request<pb::stop_provider::Request>,
    ) -> RpcResult<pb::stop_provider::Response> {
        tracing::info!("StopProvider: cancelling in-flight operations");
        self.stop();
        Ok(Response::new(pb::stop_provider::Response {
            error: String::new(),
        }))
    }
}

/// Encodes what a data source read or an ephemeral resource open returned (`what`, e.g. "Data
/// Source State"): every value must be known; no value and no error is a provider bug.
fn wholly_known(
    out: Option<Value>,
    ty: &Type,
    what: &str,
    type_name: &str,
    diags: &mut Diagnostics,
) -> Option<pb::DynamicValue> {
    match out {
        Some(mut v) => {
            check_known(&mut v, &what.to_lowercase(), diags);
            encode(&v, ty, what, diags)
        }
        None if !diags.has_errors() => {
            diags.error(
                format!("Missing {what}"),
                format!(
                    "{type_name} returned no {} and no error (a provider bug).",
                    what.to_lowercase()
                ),
            );
            None
        }
        None => None,
    }
}

fn upgrade_state(
    e: &ResourceEntry,
    version: i64,
    raw: Option<&pb::RawState>,
    diags: &mut Diagnostics,
) -> Option<pb::DynamicValue> {
    let raw = raw.cloned().unwrap_or_default();
    if raw.json.is_empty() {
        if !raw.flatmap.is_empty() {
            diags.error(
                "Unable to Upgrade Resource State",
                "The stored state uses the legacy flatmap format, which this provider does not support.",
            );
            return None;
        }
        return encode(&Value::Null, &e.ty, "Upgraded State", diags);
    }
    let current = e.schema.version;
    let value = if version == current {
        // Same version: tolerate attributes removed from the schema.
        codec::decode_json_bytes(
            &raw.json,
            &e.ty,
            JsonDecodeOptions {
                ignore_undefined_attributes: true,
            },
        )
    } else {
        let j: serde_json::Value = match serde_json::from_slice(&raw.json) {
            Ok(j) => j,
            Err(err) => {
                diags.error("Unable to Read Stored State", err.to_string());
                return None;
            }
        };
        let res = e.resource.clone();
        let j = upgrade_raw(
            version,
            current,
            j,
            &|v, raw, d| res.upgrade_state(v, raw, d),
            diags,
        )?;
        codec::decode_json(&j, &e.ty, JsonDecodeOptions::default())
    };
    match value {
        Ok(mut v) => {
            plan::null_write_only(&e.schema, &mut v);
            encode(&v, &e.ty, "Upgraded State", diags)
        }
        Err(err) => {
            diags.push(
                crate::diag::Diagnostic::error(
                    "Unable to Upgrade Resource State",
                    format!("The state after upgrading to schema version {current} does not match the schema: {}", err.message),
                )
                .at(err.path),
            );
            None
        }
    }
}

async fn call(
    ctx: &Context,
    f: &FunctionEntry,
    args: &[pb::DynamicValue],
) -> Result<pb::DynamicValue, FunctionError> {
    let sig = &f.signature;
    let fixed = sig.parameters.len();
    if args.len() < fixed || (sig.variadic.is_none() && args.len() > fixed) {
        return Err(FunctionError::new(format!(
            "Function {:?} takes {fixed} argument(s){}, got {}.",
            f.function.name(),
            if sig.variadic.is_some() {
                " and more"
            } else {
                ""
            },
            args.len()
        )));
    }
    let mut values = Vec::with_capacity(args.len());
    for (i, a) in args.iter().enumerate() {
        let Some(p) = sig.parameters.get(i).or(sig.variadic.as_ref()) else {
            return Err(FunctionError::argument(i, "unexpected argument"));
        };
        let v = decode_dynamic(Some(a), &p.ty).map_err(|e| {
            FunctionError::argument(i, format!("Invalid value for {:?} parameter: {e}", p.name))
        })?;
        if v.is_null() && !p.allow_null {
            return Err(FunctionError::argument(
                i,
                format!(
                    "Invalid value for {:?} parameter: argument must not be null.",
                    p.name
                ),
            ));
        }
        if !v.is_wholly_known() && !p.allow_unknown {
            return Err(FunctionError::argument(
                i,
                format!(
                    "Invalid value for {:?} parameter: argument must be known.",
                    p.name
                ),
            ));
        }
        values.push(v);
    }
    let out = f.function.call(ctx, values).await?;
    encode_dynamic(&out, &sig.return_type).map_err(|e| {
        FunctionError::new(format!(
            "The function returned an invalid value (a provider bug): {e}"
        ))
    })
}
