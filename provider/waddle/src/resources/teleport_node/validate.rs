//! Plan-time checks of `waddle_teleport_node` (no API call): the Teleport inputs with
//! `waddle_teleport::validate` (errors at their configuration paths, e.g. `apps[1].uri`,
//! `github.teams_to_roles`), PROXY protocol against `sni_routes`, the client secret, the shared
//! VM attributes and `timeouts`. Errors about a value that is not known yet are dropped.

use waddle_framework::prelude::*;
use waddle_teleport::{AttrPath as TpPath, ErrorKind, PathStep as TpStep};

use super::model::TeleportNodeState;
use super::TeleportNode;
use crate::resources::vm;

/// A `waddle_teleport` path as a configuration path.
pub(super) fn to_fw_path(p: &TpPath) -> AttributePath {
    let mut out = AttributePath::root();
    for s in p.steps() {
        out = match s {
            TpStep::Attr(a) => out.then_attr(a.clone()),
            TpStep::Index(i) => out.then_index(*i as i64),
            TpStep::Key(k) => out.then_key(k.clone()),
        };
    }
    out
}

/// The paths of the unknown values in `v`.
fn unknown_paths(v: &Value, at: AttributePath, out: &mut Vec<AttributePath>) {
    match v.inner() {
        Value::Unknown(_) => out.push(at),
        Value::List(xs) | Value::Set(xs) | Value::Tuple(xs) => {
            for (i, x) in xs.iter().enumerate() {
                unknown_paths(x, at.clone().then_index(i as i64), out);
            }
        }
        Value::Map(m) => {
            for (k, x) in m {
                unknown_paths(x, at.clone().then_key(k.clone()), out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                unknown_paths(x, at.clone().then_attr(k.clone()), out);
            }
        }
        _ => {}
    }
}

/// The state a configuration decodes to, unknowns read as unset, and the unknown paths.
pub(super) fn known_part(config: &Value) -> (Option<TeleportNodeState>, Vec<AttributePath>) {
    let mut unknown = Vec::new();
    unknown_paths(config, AttributePath::root(), &mut unknown);
    (config.unknown_as_null().to_typed().ok(), unknown)
}

fn is_under(p: &AttributePath, unknown: &[AttributePath]) -> bool {
    unknown.iter().any(|u| p.steps.starts_with(&u.steps))
}

fn attr(name: &str) -> AttributePath {
    AttributePath::attr(name)
}

/// The Teleport inputs.
fn teleport_inputs(config: &Value, found: &mut Diagnostics) {
    let (Some(st), unknown) = known_part(config) else {
        return;
    };
    let unknown_top = |n: &str| is_under(&attr(n), &unknown);
    let domain_unknown = unknown_top("domain");
    let derived_unknown = |n: &str| {
        unknown_top(n) || (config.get_attr(n).is_none_or(Value::is_null) && domain_unknown)
    };
    if let Err(errs) = waddle_teleport::validate(&st.spec()) {
        for e in errs.errors() {
            let path = to_fw_path(&e.path);
            let skip = is_under(&path, &unknown)
                || match &e.kind {
                    ErrorKind::UnknownRole(_) => unknown_top("roles"),
                    ErrorKind::OutsideDomain { .. } => domain_unknown,
                    _ => false,
                }
                || (path == attr("public_addr") && derived_unknown("public_addr"))
                || (path == attr("cluster_name")
                    && (derived_unknown("cluster_name")
                        || (config.get_attr("cluster_name").is_none_or(Value::is_null)
                            && derived_unknown("public_addr"))));
            if !skip {
                super::super::error_named(found, path, "Invalid Teleport configuration", &e.kind);
            }
        }
    }
    // PROXY protocol against the SNI proxy's routes, when both are known.
    let nic_unknown =
        is_under(&attr("private_nic").then_attr("cidr"), &unknown) || unknown_top("private_nic");
    if let (Some(routes), false, false) = (
        st.sni_routes.as_ref(),
        nic_unknown || unknown_top("proxy_protocol"),
        unknown_top("sni_routes"),
    ) {
        let routes: Vec<waddle_teleport::SniRoute> = routes
            .iter()
            .map(|r| waddle_teleport::SniRoute {
                hostnames: r.hostnames.clone(),
                backend: r.backend.clone(),
                proxy_protocol: r.proxy_protocol.unwrap_or(false),
            })
            .collect();
        if let Err(bad) = waddle_teleport::check_proxy_protocol(
            st.proxy_protocol.unwrap_or(false),
            &st.ip(),
            &routes,
        ) {
            for m in bad {
                found.error_at(
                    attr("proxy_protocol"),
                    "Teleport and the SNI proxy disagree on PROXY protocol",
                    m.to_string(),
                );
            }
        }
    }
    // Exactly one client secret.
    let set = |n: &str| unknown_top(n) || config.get_attr(n).is_some_and(|v| !v.is_null());
    match (set("github_client_secret"), set("github_client_secret_wo")) {
        (false, false) => found.error_at(
            attr("github_client_secret"),
            "Missing GitHub client secret",
            "set github_client_secret, or github_client_secret_wo (write-only, Terraform >= 1.11 / OpenTofu >= 1.11)",
        ),
        (true, true) => found.error_at(
            attr("github_client_secret_wo"),
            "Conflicting GitHub client secrets",
            "set only one of github_client_secret and github_client_secret_wo",
        ),
        _ => {}
    }
}

/// The Teleport inputs' checks (the shared VM checks follow them, see [`validate`]).
pub(super) fn payload(config: &Value, diags: &mut Diagnostics) {
    teleport_inputs(config, diags);
}

/// All plan-time checks (no API call), at most [`super::super::MAX_DIAGNOSTICS`] reported.
pub fn validate(config: &Value, diags: &mut Diagnostics) {
    vm::validate::all(&TeleportNode, config, diags);
}
