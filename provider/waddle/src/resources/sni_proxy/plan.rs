//! The plan of `waddle_sni_proxy`: the shared VM steps (node, id, addresses, replacement),
//! timeout defaults, and the rendered files when the routing is known (which is also what
//! turns drift into a diff).

use waddle_framework::prelude::*;

use super::schema::default_timeouts;
use super::validate::routing_from;
use crate::resources::{timeouts, vm};

pub(super) fn modify_plan(
    ctx: &Context,
    req: &PlanRequest,
    plan: &mut Plan,
    diags: &mut Diagnostics,
) {
    if req.is_destroy() {
        return;
    }
    timeouts::plan_as_configured(&req.config, &mut plan.state);
    vm::plan::node_and_id(ctx, req, plan, diags);
    vm::plan::addresses(
        plan,
        &[
            ("public_nic", "public_address"),
            ("private_nic", "private_address"),
        ],
    );
    // Timeouts left out of a configured `proxy_timeouts` object take their defaults.
    let defaults = default_timeouts();
    for name in ["connect", "client", "server", "tunnel", "inspect"] {
        let at = AttributePath::attr("proxy_timeouts").then_attr(name);
        let configured_null = req.config.get_path(&at).is_none_or(Value::is_null);
        if configured_null && plan.state.get_path(&at).is_some_and(Value::is_unknown) {
            if let Some(d) = defaults.get_attr(name) {
                plan.state.set_path(&at, d.clone());
            }
        }
    }
    let mut scratch = Diagnostics::new();
    let routing = routing_from(&plan.state, &mut scratch);
    if routing.complete {
        if let Ok(r) = waddle_haproxy::render_versioned(&routing.spec) {
            for (k, v) in [
                ("haproxy_cfg", r.haproxy_cfg),
                ("exact_map", r.exact_map),
                ("wildcard_map", r.wildcard_map),
                ("config_hash", r.config_hash),
            ] {
                plan.state.set_path(&AttributePath::attr(k), Value::from(v));
            }
        }
    }
    vm::plan::replacement(req, plan);
}
