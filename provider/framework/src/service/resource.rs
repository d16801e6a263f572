//! The RPCs of managed resources: validate, read, plan, apply, import and move.

use waddle_tfplugin::tfplugin6 as pb;

use super::dispatch::{self, check_known, decode, encode};
use super::{ProviderService, ResourceEntry};
use crate::diag::Diagnostics;
use crate::plan::{self, ValidateFor};
use crate::proto::{self, diags_to_proto};
use crate::provider::{
    CreateRequest, ImportRequest, MoveStateRequest, Plan, PlanRequest, UpdateRequest,
};
use crate::value::Value;

pub(super) async fn validate(
    svc: &ProviderService,
    req: pb::validate_resource_config::Request,
) -> pb::validate_resource_config::Response {
    let write_only_allowed = req
        .client_capabilities
        .as_ref()
        .is_some_and(|c| c.write_only_attributes_allowed);
    let validate_for = ValidateFor::Resource { write_only_allowed };
    let entries = &svc.inner.resources;
    let config = req.config.as_ref();
    pb::validate_resource_config::Response {
        diagnostics: dispatch::validate(svc, entries, &req.type_name, config, validate_for).await,
    }
}

pub(super) async fn read(
    svc: &ProviderService,
    req: pb::read_resource::Request,
) -> pb::read_resource::Response {
    waddle_tfplugin::rpc_span::record_resource_type(&req.type_name);
    let mut diags = Diagnostics::new();
    let mut resp = pb::read_resource::Response {
        new_state: req.current_state.clone(),
        private: req.private.clone(),
        ..Default::default()
    };
    let Some(e) = svc.resource(&req.type_name, &mut diags) else {
        resp.diagnostics = diags_to_proto(&diags);
        return resp;
    };
    if let Some(state) = decode(
        req.current_state.as_ref(),
        &e.ty,
        "Resource State",
        &mut diags,
    ) {
        if !state.is_null() {
            let new = e.resource.read(&svc.ctx(), state, &mut diags).await;
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
    resp
}

pub(super) async fn plan(
    svc: &ProviderService,
    req: pb::plan_resource_change::Request,
) -> pb::plan_resource_change::Response {
    waddle_tfplugin::rpc_span::record_resource_type(&req.type_name);
    let mut diags = Diagnostics::new();
    let mut resp = pb::plan_resource_change::Response {
        planned_private: req.prior_private.clone(),
        planned_identity: req.prior_identity.clone(),
        ..Default::default()
    };
    let Some(e) = svc.resource(&req.type_name, &mut diags) else {
        resp.diagnostics = diags_to_proto(&diags);
        return resp;
    };
    let proposed = (req.proposed_new_state.as_ref(), "Proposed New State");
    let decoded = decode_change(
        e,
        req.config.as_ref(),
        req.prior_state.as_ref(),
        proposed,
        &mut diags,
    );
    if let Some((config, prior, proposed)) = decoded {
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
            .modify_plan(&svc.ctx(), &request, &mut plan, &mut diags)
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
    resp
}

pub(super) async fn apply(
    svc: &ProviderService,
    req: pb::apply_resource_change::Request,
) -> pb::apply_resource_change::Response {
    waddle_tfplugin::rpc_span::record_resource_type(&req.type_name);
    let mut diags = Diagnostics::new();
    let mut resp = pb::apply_resource_change::Response {
        private: req.planned_private.clone(),
        ..Default::default()
    };
    let Some(e) = svc.resource(&req.type_name, &mut diags) else {
        resp.diagnostics = diags_to_proto(&diags);
        return resp;
    };
    let planned = (req.planned_state.as_ref(), "Planned State");
    let decoded = decode_change(
        e,
        req.config.as_ref(),
        req.prior_state.as_ref(),
        planned,
        &mut diags,
    );
    if let Some((config, prior, planned)) = decoded {
        let ctx = svc.ctx();
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
    resp
}

pub(super) async fn import(
    svc: &ProviderService,
    req: pb::import_resource_state::Request,
) -> pb::import_resource_state::Response {
    waddle_tfplugin::rpc_span::record_resource_type(&req.type_name);
    let mut diags = Diagnostics::new();
    let mut imported = Vec::new();
    if let Some(e) = svc.resource(&req.type_name, &mut diags) {
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
                    &svc.ctx(),
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
    pb::import_resource_state::Response {
        imported_resources: imported,
        diagnostics: diags_to_proto(&diags),
        deferred: None,
    }
}

pub(super) async fn move_state(
    svc: &ProviderService,
    req: pb::move_resource_state::Request,
) -> pb::move_resource_state::Response {
    let mut diags = Diagnostics::new();
    let mut resp = pb::move_resource_state::Response::default();
    if let Some(e) = svc.resource(&req.target_type_name, &mut diags) {
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
            let moved = e.resource.move_state(&svc.ctx(), mreq, &mut diags).await;
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
    resp
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

/// The configuration, the prior state and the new state (`(value, what)`: the proposed or the
/// planned state) of a plan or an apply; each one that does not decode is a diagnostic.
fn decode_change(
    e: &ResourceEntry,
    config: Option<&pb::DynamicValue>,
    prior: Option<&pb::DynamicValue>,
    (new, new_what): (Option<&pb::DynamicValue>, &str),
    diags: &mut Diagnostics,
) -> Option<(Value, Value, Value)> {
    let config = decode(config, &e.ty, "Configuration", diags);
    let prior = decode(prior, &e.ty, "Prior State", diags);
    let new = decode(new, &e.ty, new_what, diags);
    Some((config?, prior?, new?))
}
