//! The plan steps every VM resource shares.

use waddle_framework::prelude::*;
use waddle_framework::resource::{
    default_from_provider, requires_replace_if_prior_set, ProviderDefault,
};

use super::{NicLayout, VmResource};
use crate::provider::{ProviderConfig, ENV_NODE};
use crate::resources::timeouts;

/// The plan of a VM resource's create or update (not a destroy): `timeouts` as configured,
/// node and id, the NICs' addresses, then the payload's plan, then what forces a replacement.
pub fn modify_plan<R: VmResource>(
    r: &R,
    ctx: &Context,
    req: &PlanRequest,
    plan: &mut Plan,
    diags: &mut Diagnostics,
) {
    timeouts::plan_as_configured(&req.config, &mut plan.state);
    node_and_id(ctx, req, plan, diags);
    addresses(plan, R::NICS);
    r.plan(req, plan, diags);
    replacement(req, plan);
}

/// `node` from the provider configuration when not configured (an error at `node` when
/// there is none anywhere), and `id` = `<node>/<vmid>` once both are known.
pub fn node_and_id(ctx: &Context, req: &PlanRequest, plan: &mut Plan, diags: &mut Diagnostics) {
    let default = match ctx.provider_data::<ProviderConfig>() {
        None => ProviderDefault::Unknown,
        Some(cfg) => match cfg.default_node() {
            Some(n) => ProviderDefault::Known(Value::from(n)),
            None if cfg.unknown.contains(&crate::provider::attr::NODE) => ProviderDefault::Unknown,
            None => ProviderDefault::Missing,
        },
    };
    if let Err(missing) = default_from_provider(req, plan, "node", default) {
        diags.error_at(
            missing.0,
            "Missing node",
            format!(
                "set `node` here, `node` in the provider block, or the {ENV_NODE} \
                 environment variable"
            ),
        );
    }
    let view = ConfigView::new(&plan.state);
    if let (Some(n), Some(v)) = (view.str("node").known(), view.i64("vmid").known()) {
        plan.state
            .set_path(&AttributePath::attr("id"), Value::from(format!("{n}/{v}")));
    }
}

/// Each NIC's `address` attribute: the address of its `cidr` (without prefix length).
pub fn addresses(plan: &mut Plan, nics: &[NicLayout]) {
    for nic in nics {
        let cidr = ConfigView::new(&plan.state)
            .object(nic.attr)
            .known()
            .and_then(|n| n.str("cidr").known())
            .and_then(|c| Cidr::parse(c).ok());
        if let Some(c) = cidr {
            plan.state.set_path(
                &AttributePath::attr(nic.address),
                Value::from(c.addr.to_string()),
            );
        }
    }
}

/// On update: attributes an import could not read (null in the prior state) are adopted from
/// the configuration, not a reason to rebuild the VM; a VM that is gone (`id` empty, kept in
/// state for what it owns) is re-created.
pub fn replacement(req: &PlanRequest, plan: &mut Plan) {
    if req.is_create() {
        return;
    }
    requires_replace_if_prior_set(req, plan);
    if req.prior_state.get_attr("id").and_then(Value::as_str) == Some("") {
        let id = AttributePath::attr("id");
        if plan.state.get_attr("id").and_then(Value::as_str) == Some("") {
            plan.state.set_path(&id, Value::unknown());
        }
        plan.requires_replace.push(id);
    }
}
