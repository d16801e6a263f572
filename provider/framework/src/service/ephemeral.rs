//! The RPCs of ephemeral resources: validate, open, renew and close.

use waddle_tfplugin::tfplugin6 as pb;

use super::dispatch::{self, lookup};
use super::ProviderService;
use crate::diag::Diagnostics;
use crate::plan::ValidateFor;
use crate::proto::diags_to_proto;

pub(super) async fn validate(
    svc: &ProviderService,
    req: pb::validate_ephemeral_resource_config::Request,
) -> pb::validate_ephemeral_resource_config::Response {
    let entries = &svc.inner.ephemerals;
    let config = req.config.as_ref();
    pb::validate_ephemeral_resource_config::Response {
        diagnostics: dispatch::validate(svc, entries, &req.type_name, config, ValidateFor::Other)
            .await,
    }
}

pub(super) async fn open(
    svc: &ProviderService,
    req: pb::open_ephemeral_resource::Request,
) -> pb::open_ephemeral_resource::Response {
    let entries = &svc.inner.ephemerals;
    let (result, diagnostics) =
        dispatch::produce(svc, entries, &req.type_name, req.config.as_ref()).await;
    pb::open_ephemeral_resource::Response {
        diagnostics,
        renew_at: None,
        result,
        private: None,
        deferred: None,
    }
}

pub(super) fn renew(
    svc: &ProviderService,
    req: pb::renew_ephemeral_resource::Request,
) -> pb::renew_ephemeral_resource::Response {
    // Nothing waddle opens needs renewing (no renew_at is ever returned).
    let mut diags = Diagnostics::new();
    lookup(&svc.inner.ephemerals, &req.type_name, &mut diags);
    pb::renew_ephemeral_resource::Response {
        diagnostics: diags_to_proto(&diags),
        renew_at: None,
        private: req.private,
    }
}

pub(super) fn close(
    svc: &ProviderService,
    req: pb::close_ephemeral_resource::Request,
) -> pb::close_ephemeral_resource::Response {
    // Nothing to release: results are self-contained (e.g. a short-lived certificate).
    let mut diags = Diagnostics::new();
    lookup(&svc.inner.ephemerals, &req.type_name, &mut diags);
    pb::close_ephemeral_resource::Response {
        diagnostics: diags_to_proto(&diags),
    }
}
