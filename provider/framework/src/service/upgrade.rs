//! `UpgradeResourceState` and `UpgradeResourceIdentity`: stored JSON through the chain of
//! upgraders to the current schema version.

use waddle_tfplugin::tfplugin6 as pb;

use super::dispatch::encode;
use super::{ProviderService, ResourceEntry};
use crate::codec::{self, JsonDecodeOptions};
use crate::diag::{Diagnostic, Diagnostics};
use crate::plan;
use crate::proto::diags_to_proto;
use crate::value::Value;

pub(super) async fn state(
    svc: &ProviderService,
    req: pb::upgrade_resource_state::Request,
) -> pb::upgrade_resource_state::Response {
    waddle_tfplugin::rpc_span::record_resource_type(&req.type_name);
    let mut diags = Diagnostics::new();
    let mut upgraded_state = None;
    if let Some(e) = svc.resource(&req.type_name, &mut diags) {
        upgraded_state = upgrade_state(e, req.version, req.raw_state.as_ref(), &mut diags);
    }
    pb::upgrade_resource_state::Response {
        upgraded_state,
        diagnostics: diags_to_proto(&diags),
    }
}

pub(super) async fn identity(
    svc: &ProviderService,
    req: pb::upgrade_resource_identity::Request,
) -> pb::upgrade_resource_identity::Response {
    let mut diags = Diagnostics::new();
    let mut upgraded_identity = None;
    if let Some(e) = svc.resource(&req.type_name, &mut diags) {
        match &e.identity {
            None => diags.error(
                "Resource Identity Not Supported",
                format!("{} does not support resource identity.", req.type_name),
            ),
            Some((schema, ty)) => {
                upgraded_identity = (|| {
                    let raw: serde_json::Value = match serde_json::from_slice(&req.raw_identity) {
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
    pb::upgrade_resource_identity::Response {
        upgraded_identity,
        diagnostics: diags_to_proto(&diags),
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
                Diagnostic::error(
                    "Unable to Upgrade Resource State",
                    format!("The state after upgrading to schema version {current} does not match the schema: {}", err.message),
                )
                .at(err.path),
            );
            None
        }
    }
}
