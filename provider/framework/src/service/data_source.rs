//! The RPCs of data sources: validate and read.

use waddle_tfplugin::tfplugin6 as pb;

use super::dispatch;
use super::ProviderService;
use crate::plan::ValidateFor;

pub(super) async fn validate(
    svc: &ProviderService,
    req: pb::validate_data_resource_config::Request,
) -> pb::validate_data_resource_config::Response {
    let entries = &svc.inner.data_sources;
    let config = req.config.as_ref();
    pb::validate_data_resource_config::Response {
        diagnostics: dispatch::validate(svc, entries, &req.type_name, config, ValidateFor::Other)
            .await,
    }
}

pub(super) async fn read(
    svc: &ProviderService,
    req: pb::read_data_source::Request,
) -> pb::read_data_source::Response {
    let entries = &svc.inner.data_sources;
    let (state, diagnostics) =
        dispatch::produce(svc, entries, &req.type_name, req.config.as_ref()).await;
    pb::read_data_source::Response {
        state,
        diagnostics,
        deferred: None,
    }
}
