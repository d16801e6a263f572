//! [`ProviderService`]: the tfplugin6 `Provider` gRPC service on top of the framework traits.
//!
//! Serve it with waddle-tfplugin (`waddle_tfplugin::server::serve(ProviderService::new(p), opts)`)
//! or wrap it in `tfplugin6::provider_server::ProviderServer::new(..)` for tests.

mod data_source;
mod dispatch;
mod ephemeral;
mod function;
mod provider;
mod resource;
mod upgrade;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use waddle_tfplugin::tfplugin6 as pb;

use crate::diag::Diagnostics;
use crate::provider::{
    Context, DataSource, EphemeralResource, Function, FunctionSignature, IdentitySchema, Provider,
    ProviderData, Resource,
};
use crate::schema::Schema;
use crate::types::Type;
use dispatch::Entry;

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
            check_schema(&name, &schema, &mut definition_diags);
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
            insert(&mut resources, name, entry, &mut definition_diags);
        }
        let mut data_sources = BTreeMap::new();
        for d in provider.data_sources() {
            let schema = d.schema();
            let name = d.type_name().to_string();
            check_schema(&name, &schema, &mut definition_diags);
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
            insert(&mut data_sources, name, entry, &mut definition_diags);
        }
        let mut ephemerals = BTreeMap::new();
        for e in provider.ephemeral_resources() {
            let schema = e.schema();
            let name = e.type_name().to_string();
            check_schema(&name, &schema, &mut definition_diags);
            let entry = EphemeralEntry {
                ty: schema.implied_type(),
                schema,
                ephemeral: e,
            };
            insert(&mut ephemerals, name, entry, &mut definition_diags);
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
        dispatch::lookup(&self.inner.resources, name, diags)
    }

    fn capabilities() -> pb::ServerCapabilities {
        pb::ServerCapabilities {
            plan_destroy: false,
            get_provider_schema_optional: true,
            move_resource_state: true,
        }
    }
}

/// The problems of a type's schema, each prefixed with the type's name.
fn check_schema(name: &str, schema: &Schema, diags: &mut Diagnostics) {
    for mut d in schema.check() {
        d.summary = format!("{name}: {}", d.summary);
        diags.push(d);
    }
}

/// Adds the entry of the type `name`; a second type of the same name is an error.
fn insert<E: Entry>(
    entries: &mut BTreeMap<String, E>,
    name: String,
    entry: E,
    diags: &mut Diagnostics,
) {
    if entries.insert(name.clone(), entry).is_some() {
        diags.error(format!("Duplicate {} type", E::KIND.to_lowercase()), name);
    }
}

#[tonic::async_trait]
impl pb::provider_server::Provider for ProviderService {
    async fn get_metadata(
        &self,
        r: Request<pb::get_metadata::Request>,
    ) -> RpcResult<pb::get_metadata::Response> {
        Ok(Response::new(provider::metadata(self, r.into_inner())))
    }

    async fn get_provider_schema(
        &self,
        r: Request<pb::get_provider_schema::Request>,
    ) -> RpcResult<pb::get_provider_schema::Response> {
        Ok(Response::new(provider::schema(self, r.into_inner())))
    }

    async fn validate_provider_config(
        &self,
        r: Request<pb::validate_provider_config::Request>,
    ) -> RpcResult<pb::validate_provider_config::Response> {
        Ok(Response::new(
            provider::validate(self, r.into_inner()).await,
        ))
    }

    async fn validate_resource_config(
        &self,
        r: Request<pb::validate_resource_config::Request>,
    ) -> RpcResult<pb::validate_resource_config::Response> {
        Ok(Response::new(
            resource::validate(self, r.into_inner()).await,
        ))
    }

    async fn validate_data_resource_config(
        &self,
        r: Request<pb::validate_data_resource_config::Request>,
    ) -> RpcResult<pb::validate_data_resource_config::Response> {
        Ok(Response::new(
            data_source::validate(self, r.into_inner()).await,
        ))
    }

    async fn upgrade_resource_state(
        &self,
        r: Request<pb::upgrade_resource_state::Request>,
    ) -> RpcResult<pb::upgrade_resource_state::Response> {
        Ok(Response::new(upgrade::state(self, r.into_inner()).await))
    }

    async fn get_resource_identity_schemas(
        &self,
        r: Request<pb::get_resource_identity_schemas::Request>,
    ) -> RpcResult<pb::get_resource_identity_schemas::Response> {
        Ok(Response::new(provider::identity_schemas(
            self,
            r.into_inner(),
        )))
    }

    async fn upgrade_resource_identity(
        &self,
        r: Request<pb::upgrade_resource_identity::Request>,
    ) -> RpcResult<pb::upgrade_resource_identity::Response> {
        Ok(Response::new(upgrade::identity(self, r.into_inner()).await))
    }

    async fn configure_provider(
        &self,
        r: Request<pb::configure_provider::Request>,
    ) -> RpcResult<pb::configure_provider::Response> {
        Ok(Response::new(
            provider::configure(self, r.into_inner()).await,
        ))
    }

    async fn read_resource(
        &self,
        r: Request<pb::read_resource::Request>,
    ) -> RpcResult<pb::read_resource::Response> {
        Ok(Response::new(resource::read(self, r.into_inner()).await))
    }

    async fn plan_resource_change(
        &self,
        r: Request<pb::plan_resource_change::Request>,
    ) -> RpcResult<pb::plan_resource_change::Response> {
        Ok(Response::new(resource::plan(self, r.into_inner()).await))
    }

    async fn apply_resource_change(
        &self,
        r: Request<pb::apply_resource_change::Request>,
    ) -> RpcResult<pb::apply_resource_change::Response> {
        Ok(Response::new(resource::apply(self, r.into_inner()).await))
    }

    async fn import_resource_state(
        &self,
        r: Request<pb::import_resource_state::Request>,
    ) -> RpcResult<pb::import_resource_state::Response> {
        Ok(Response::new(resource::import(self, r.into_inner()).await))
    }

    async fn move_resource_state(
        &self,
        r: Request<pb::move_resource_state::Request>,
    ) -> RpcResult<pb::move_resource_state::Response> {
        Ok(Response::new(
            resource::move_state(self, r.into_inner()).await,
        ))
    }

    async fn read_data_source(
        &self,
        r: Request<pb::read_data_source::Request>,
    ) -> RpcResult<pb::read_data_source::Response> {
        Ok(Response::new(data_source::read(self, r.into_inner()).await))
    }

    async fn validate_ephemeral_resource_config(
        &self,
        r: Request<pb::validate_ephemeral_resource_config::Request>,
    ) -> RpcResult<pb::validate_ephemeral_resource_config::Response> {
        Ok(Response::new(
            ephemeral::validate(self, r.into_inner()).await,
        ))
    }

    async fn open_ephemeral_resource(
        &self,
        r: Request<pb::open_ephemeral_resource::Request>,
    ) -> RpcResult<pb::open_ephemeral_resource::Response> {
        Ok(Response::new(ephemeral::open(self, r.into_inner()).await))
    }

    async fn renew_ephemeral_resource(
        &self,
        r: Request<pb::renew_ephemeral_resource::Request>,
    ) -> RpcResult<pb::renew_ephemeral_resource::Response> {
        Ok(Response::new(ephemeral::renew(self, r.into_inner())))
    }

    async fn close_ephemeral_resource(
        &self,
        r: Request<pb::close_ephemeral_resource::Request>,
    ) -> RpcResult<pb::close_ephemeral_resource::Response> {
        Ok(Response::new(ephemeral::close(self, r.into_inner())))
    }

    async fn get_functions(
        &self,
        r: Request<pb::get_functions::Request>,
    ) -> RpcResult<pb::get_functions::Response> {
        Ok(Response::new(function::list(self, r.into_inner())))
    }

    async fn call_function(
        &self,
        r: Request<pb::call_function::Request>,
    ) -> RpcResult<pb::call_function::Response> {
        Ok(Response::new(function::call(self, r.into_inner()).await))
    }

    async fn stop_provider(
        &self,
        r: Request<pb::stop_provider::Request>,
    ) -> RpcResult<pb::stop_provider::Response> {
        Ok(Response::new(provider::stop(self, r.into_inner())))
    }
}
