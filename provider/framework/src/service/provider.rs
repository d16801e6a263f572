//! Provider-wide RPCs: metadata, schemas, the provider's configuration and stop.

use std::sync::PoisonError;

use waddle_tfplugin::tfplugin6 as pb;

use super::dispatch::decode;
use super::ProviderService;
use crate::diag::Diagnostics;
use crate::plan::{self, ValidateFor};
use crate::proto::{self, diags_to_proto};

pub(super) fn metadata(
    svc: &ProviderService,
    _req: pb::get_metadata::Request,
) -> pb::get_metadata::Response {
    use pb::get_metadata as m;
    let i = &svc.inner;
    m::Response {
        server_capabilities: Some(ProviderService::capabilities()),
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
    }
}

pub(super) fn schema(
    svc: &ProviderService,
    _req: pb::get_provider_schema::Request,
) -> pb::get_provider_schema::Response {
    let i = &svc.inner;
    pb::get_provider_schema::Response {
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
        server_capabilities: Some(ProviderService::capabilities()),
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
    }
}

pub(super) fn identity_schemas(
    svc: &ProviderService,
    _req: pb::get_resource_identity_schemas::Request,
) -> pb::get_resource_identity_schemas::Response {
    pb::get_resource_identity_schemas::Response {
        identity_schemas: svc
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
    }
}

pub(super) async fn validate(
    svc: &ProviderService,
    req: pb::validate_provider_config::Request,
) -> pb::validate_provider_config::Response {
    let mut diags = Diagnostics::new();
    let i = &svc.inner;
    if let Some(config) = decode(
        req.config.as_ref(),
        &i.provider_ty,
        "Provider Configuration",
        &mut diags,
    ) {
        plan::validate_config(&i.provider_schema, &config, ValidateFor::Other, &mut diags);
        i.provider
            .validate_config(&svc.ctx(), &config, &mut diags)
            .await;
    }
    pb::validate_provider_config::Response {
        diagnostics: diags_to_proto(&diags),
    }
}

pub(super) async fn configure(
    svc: &ProviderService,
    req: pb::configure_provider::Request,
) -> pb::configure_provider::Response {
    let mut diags = Diagnostics::new();
    *svc.inner
        .terraform_version
        .write()
        .unwrap_or_else(PoisonError::into_inner) = req.terraform_version.clone();
    if let Some(config) = decode(
        req.config.as_ref(),
        &svc.inner.provider_ty,
        "Provider Configuration",
        &mut diags,
    ) {
        let data = svc
            .inner
            .provider
            .configure(&svc.ctx(), &config, &mut diags)
            .await;
        if let Some(data) = data {
            *svc.inner
                .provider_data
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Some(data);
        }
    }
    pb::configure_provider::Response {
        diagnostics: diags_to_proto(&diags),
    }
}

pub(super) fn stop(
    svc: &ProviderService,
    _req: pb::stop_provider::Request,
) -> pb::stop_provider::Response {
    tracing::info!("StopProvider: cancelling in-flight operations");
    svc.stop();
    pb::stop_provider::Response {
        error: String::new(),
    }
}
