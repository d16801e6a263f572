//! What every RPC that names a resource, data source or ephemeral resource type does around
//! the provider's own code: find the type's entry, decode the values it was sent, check and
//! encode what comes back. [`validate`] and [`produce`] are the whole of the RPCs that only
//! validate a configuration or produce a value from one.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use waddle_tfplugin::tfplugin6 as pb;

use super::{DataSourceEntry, EphemeralEntry, ProviderService, ResourceEntry};
use crate::diag::{Diagnostic, Diagnostics};
use crate::path::AttributePath;
use crate::plan::{self, ValidateFor};
use crate::proto::{decode_dynamic, diags_to_proto, encode_dynamic};
use crate::provider::Context;
use crate::schema::Schema;
use crate::types::Type;
use crate::value::Value;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A resource, data source or ephemeral resource type as the service keeps it.
pub(super) trait Entry: Send + Sync {
    /// What diagnostics call the kind: `Resource`, `Data Source`, `Ephemeral Resource`.
    const KIND: &'static str;
    fn schema(&self) -> &Schema;
    fn ty(&self) -> &Type;
    /// The type's own configuration checks, run after the schema's.
    fn validate_config<'a>(
        &'a self,
        ctx: &'a Context,
        config: &'a Value,
        diags: &'a mut Diagnostics,
    ) -> BoxFuture<'a, ()>;
}

/// A type that produces a value from its configuration (a data source read, an ephemeral
/// resource open).
pub(super) trait Produces: Entry {
    /// What diagnostics call the value: `Data Source State`, `Ephemeral Resource Result`.
    const RESULT: &'static str;
    fn produce<'a>(
        &'a self,
        ctx: &'a Context,
        config: Value,
        diags: &'a mut Diagnostics,
    ) -> BoxFuture<'a, Option<Value>>;
}

impl Entry for ResourceEntry {
    const KIND: &'static str = "Resource";
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn ty(&self) -> &Type {
        &self.ty
    }
    fn validate_config<'a>(
        &'a self,
        ctx: &'a Context,
        config: &'a Value,
        diags: &'a mut Diagnostics,
    ) -> BoxFuture<'a, ()> {
        self.resource.validate_config(ctx, config, diags)
    }
}

impl Entry for DataSourceEntry {
    const KIND: &'static str = "Data Source";
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn ty(&self) -> &Type {
        &self.ty
    }
    fn validate_config<'a>(
        &'a self,
        ctx: &'a Context,
        config: &'a Value,
        diags: &'a mut Diagnostics,
    ) -> BoxFuture<'a, ()> {
        self.data_source.validate_config(ctx, config, diags)
    }
}

impl Produces for DataSourceEntry {
    const RESULT: &'static str = "Data Source State";
    fn produce<'a>(
        &'a self,
        ctx: &'a Context,
        config: Value,
        diags: &'a mut Diagnostics,
    ) -> BoxFuture<'a, Option<Value>> {
        self.data_source.read(ctx, config, diags)
    }
}

impl Entry for EphemeralEntry {
    const KIND: &'static str = "Ephemeral Resource";
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn ty(&self) -> &Type {
        &self.ty
    }
    fn validate_config<'a>(
        &'a self,
        ctx: &'a Context,
        config: &'a Value,
        diags: &'a mut Diagnostics,
    ) -> BoxFuture<'a, ()> {
        self.ephemeral.validate_config(ctx, config, diags)
    }
}

impl Produces for EphemeralEntry {
    const RESULT: &'static str = "Ephemeral Resource Result";
    fn produce<'a>(
        &'a self,
        ctx: &'a Context,
        config: Value,
        diags: &'a mut Diagnostics,
    ) -> BoxFuture<'a, Option<Value>> {
        self.ephemeral.open(ctx, config, diags)
    }
}

/// The entry of the type `name`; a type the provider does not have is an error diagnostic.
pub(super) fn lookup<'a, E: Entry>(
    entries: &'a BTreeMap<String, E>,
    name: &str,
    diags: &mut Diagnostics,
) -> Option<&'a E> {
    let e = entries.get(name);
    if e.is_none() {
        diags.error(
            format!("{} Type Not Found", E::KIND),
            format!(
                "The provider does not support the {} type {name:?}.",
                E::KIND.to_lowercase()
            ),
        );
    }
    e
}

/// Records the type on the RPC's span, then its entry and its decoded configuration.
fn configured<'a, E: Entry>(
    entries: &'a BTreeMap<String, E>,
    type_name: &str,
    config: Option<&pb::DynamicValue>,
    diags: &mut Diagnostics,
) -> Option<(&'a E, Value)> {
    waddle_tfplugin::rpc_span::record_resource_type(type_name);
    let e = lookup(entries, type_name, diags)?;
    let config = decode(config, e.ty(), &format!("{} Configuration", E::KIND), diags)?;
    Some((e, config))
}

/// A `Validate*Config` RPC: the schema's checks (`validate_for`), then the type's own.
pub(super) async fn validate<E: Entry>(
    svc: &ProviderService,
    entries: &BTreeMap<String, E>,
    type_name: &str,
    config: Option<&pb::DynamicValue>,
    validate_for: ValidateFor,
) -> Vec<pb::Diagnostic> {
    let mut diags = Diagnostics::new();
    if let Some((e, config)) = configured(entries, type_name, config, &mut diags) {
        plan::validate_config(e.schema(), &config, validate_for, &mut diags);
        e.validate_config(&svc.ctx(), &config, &mut diags).await;
    }
    diags_to_proto(&diags)
}

/// `ReadDataSource`, `OpenEphemeralResource`: the value the type produces from its
/// configuration, wholly known.
pub(super) async fn produce<E: Produces>(
    svc: &ProviderService,
    entries: &BTreeMap<String, E>,
    type_name: &str,
    config: Option<&pb::DynamicValue>,
) -> (Option<pb::DynamicValue>, Vec<pb::Diagnostic>) {
    let mut diags = Diagnostics::new();
    let mut out = None;
    if let Some((e, config)) = configured(entries, type_name, config, &mut diags) {
        let v = e.produce(&svc.ctx(), config, &mut diags).await;
        out = wholly_known(v, e.ty(), E::RESULT, type_name, &mut diags);
    }
    (out, diags_to_proto(&diags))
}

/// Decode a DynamicValue or record an error diagnostic.
pub(super) fn decode(
    dv: Option<&pb::DynamicValue>,
    ty: &Type,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<Value> {
    match decode_dynamic(dv, ty) {
        Ok(v) => Some(v),
        Err(e) => {
            diags.push(
                Diagnostic::error(format!("Unable to Decode {what}"), e.message.clone()).at(e.path),
            );
            None
        }
    }
}

pub(super) fn encode(
    v: &Value,
    ty: &Type,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<pb::DynamicValue> {
    match encode_dynamic(v, ty) {
        Ok(d) => Some(d),
        Err(e) => {
            diags.push(
                Diagnostic::error(
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

/// New state returned after apply/read/import must be wholly known.
pub(super) fn check_known(v: &mut Value, what: &str, diags: &mut Diagnostics) {
    if let Some(p) = plan::first_unknown(v, &AttributePath::root()) {
        diags.error_at(
            p.clone(),
            "Provider returned invalid result object",
            format!("The {what} contains an unknown value at {p} (a provider bug); it is stored as null."),
        );
        *v = v.unknown_as_null();
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
