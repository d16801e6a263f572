//! The payload's plan of `waddle_sni_proxy` (the shared VM steps around it are
//! `vm::plan::modify_plan`): `proxy_timeouts` defaults, and the rendered files when the
//! routing is known (which is also what turns drift into a diff).

use waddle_framework::prelude::*;
use waddle_framework::resource::object_defaults;

use super::schema::default_timeouts;
use super::validate::routing_from;

pub(super) fn plan(req: &PlanRequest, plan: &mut Plan, _diags: &mut Diagnostics) {
    // Timeouts left out of a configured `proxy_timeouts` object take their defaults.
    object_defaults(req, plan, "proxy_timeouts", &default_timeouts());
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
}
