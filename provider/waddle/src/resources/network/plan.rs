//! The plan of `waddle_network`: `bridge` and `id` from the ids, `gateway` defaulting to the
//! first host of `cidr`.

use waddle_framework::prelude::*;

use super::first_host;
use crate::resources::timeouts;

pub(super) fn modify_plan(req: &PlanRequest, plan: &mut Plan) {
    if req.is_destroy() {
        return;
    }
    timeouts::plan_as_configured(&req.config, &mut plan.state);
    let view = ConfigView::new(&plan.state);
    let zone = view.str("zone").known().map(str::to_string);
    let vnet = view.str("vnet").known().map(str::to_string);
    let gateway = view
        .str("cidr")
        .known()
        .and_then(first_host)
        .map(|g| g.to_string());
    if let Some(v) = &vnet {
        plan.state
            .set_path(&AttributePath::attr("bridge"), Value::from(v.clone()));
    }
    if let (Some(z), Some(v)) = (&zone, &vnet) {
        plan.state
            .set_path(&AttributePath::attr("id"), Value::from(format!("{z}/{v}")));
    }
    if req.config.get_attr("gateway").is_some_and(Value::is_null) {
        if let Some(g) = gateway {
            plan.state
                .set_path(&AttributePath::attr("gateway"), Value::from(g));
        }
    }
}
