//! Resource `waddle_host_firewall`: the Proxmox VE cluster firewall switch and policies, a
//! node's rules identified by the `waddle:<key>` mark in their comment (never by position),
//! an optional operator IP set, time-boxed rules (`expires`) and a lock-out guard at plan.
//!
//! * `schema.rs` — attributes and the documentation (emergency access included);
//! * `model.rs` — state types, the comment mark, rule mapping, RFC 3339 expiry;
//! * `validate.rs` — plan-time checks with attribute paths;
//! * `plan.rs` — `active` from the clock, the lock-out guard;
//! * `ops.rs` — read, converge (rules by mark + list digest), destroy.

mod model;
mod ops;
mod plan;
mod schema;
#[cfg(test)]
mod tests;
mod validate;

use waddle_framework::prelude::*;

use super::timeouts::{self, Deadline, Op, TimeoutsModel};
use crate::provider::ProviderConfig;
use model::{expired, from_typed, now, to_typed};
pub use model::{FirewallState, IpSetModel, PreviousOptions, RuleModel};
pub use schema::schema;

/// Type name.
pub const TYPE_NAME: &str = "waddle_host_firewall";

/// Default deadlines.
pub const TIMEOUTS: timeouts::Defaults = timeouts::Defaults {
    create: std::time::Duration::from_secs(5 * 60),
    update: std::time::Duration::from_secs(5 * 60),
    delete: std::time::Duration::from_secs(5 * 60),
};

fn deadline(st: &FirewallState, op: Op) -> Deadline {
    Deadline::start(op, TimeoutsModel::get(st.timeouts.as_ref(), op, &TIMEOUTS))
}

/// Example configuration shown in the documentation.
pub const EXAMPLE: &str =
    include_str!("../../../../../examples/resources/waddle_host_firewall/resource.tf");

/// The `waddle_host_firewall` resource.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostFirewall;

impl HostFirewall {
    /// The lock-out guard: refuse (an error in `diags`) when the firewall after this plan
    /// would, or might, drop this provider's next connection to the API.
    async fn guard(
        &self,
        ctx: &Context,
        planned: Option<&FirewallState>,
        prior: &FirewallState,
        diags: &mut Diagnostics,
    ) {
        let basis = planned.unwrap_or(prior);
        if basis.acknowledge_lockout_risk == Some(true) {
            return;
        }
        let Some(cfg) = ctx.provider_data::<ProviderConfig>() else {
            return;
        };
        let (Some(endpoint), Some(node)) = (cfg.endpoint.clone(), basis.node.clone()) else {
            return; // unknown until apply: the provider cannot be configured yet
        };
        let Ok(client) = crate::clients::proxmox_for(cfg) else {
            return; // reported by the operations themselves
        };
        let route = plan::route(&endpoint).await;
        let (src, origin) = match (&basis.client_address, cfg.proxy_url.is_some(), route) {
            (Some(a), _, _) => (a.parse().ok(), "client_address"),
            (None, true, _) => (None, "unknown: the API is reached through proxy_url"),
            (None, false, Some((_, _, Some(local)))) => {
                (Some(local), "the local address routed to the endpoint")
            }
            _ => (None, "unknown"),
        };
        let conn = plan::Conn {
            src,
            dst: route.map(|r| r.0),
            port: route.map(|r| r.1).unwrap_or(8006),
        };
        let restore = match planned {
            None => prior.previous_options.as_ref().map(|p| {
                (
                    p.enabled.unwrap_or(false),
                    p.policy_in.clone().unwrap_or_else(|| "DROP".into()),
                )
            }),
            Some(_) => None,
        };
        let world = match plan::world(&client, &node, conn.dst, planned, restore).await {
            Ok(w) => w,
            Err(e) => {
                diags.warning(
                    "Lock-out check incomplete",
                    format!(
                        "reading the firewall for the lock-out check failed ({e}); only this \
                         plan's own rules are considered"
                    ),
                );
                let p = planned.cloned().unwrap_or_default();
                plan::World {
                    enabled: planned.map(FirewallState::enabled).unwrap_or(false),
                    policy_in: p.policy_in().to_string(),
                    node_enabled: true,
                    node_rules: plan::planned_node_rules(&[], &p),
                    ..Default::default()
                }
            }
        };
        let outcome = plan::evaluate(&world, &conn);
        if matches!(outcome, plan::Outcome::Accepted(_)) {
            return;
        }
        diags.error(
            "This plan would lock the provider out of the Proxmox API",
            plan::explain(&outcome, &conn, &endpoint, origin),
        );
    }
}

#[async_trait]
impl Resource for HostFirewall {
    fn type_name(&self) -> &str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn validate_config(&self, _ctx: &Context, config: &Value, diags: &mut Diagnostics) {
        let mut found = Diagnostics::new();
        validate::validate(config, &mut found);
        super::capped(found, diags);
    }

    async fn modify_plan(
        &self,
        ctx: &Context,
        req: &PlanRequest,
        plan: &mut Plan,
        diags: &mut Diagnostics,
    ) {
        if req.is_destroy() {
            if let Ok(prior) = req.prior_state.to_typed::<FirewallState>() {
                self.guard(ctx, None, &prior, diags).await;
            }
            return;
        }
        timeouts::plan_as_configured(&req.config, &mut plan.state);
        let node_path = AttributePath::attr("node");
        if plan.state.get_attr("node").is_some_and(Value::is_unknown)
            && req.config.get_attr("node").is_some_and(Value::is_null)
        {
            match ctx
                .provider_data::<ProviderConfig>()
                .and_then(|c| c.default_node())
            {
                Some(n) => {
                    plan.state.set_path(&node_path, Value::from(n));
                }
                None => {
                    if ctx
                        .provider_data::<ProviderConfig>()
                        .is_some_and(|c| !c.unknown.contains(&crate::provider::attr::NODE))
                    {
                        diags.error_at(
                            node_path.clone(),
                            "Missing node",
                            "set `node` here, `node` in the provider block, or PROXMOX_VE_NODE",
                        );
                    }
                }
            }
        }
        if let Some(n) = plan
            .state
            .get_attr("node")
            .filter(|v| v.is_known())
            .cloned()
        {
            plan.state.set_path(&AttributePath::attr("id"), n);
        }
        // `active_rules`: the clock decides (plan time).
        let now = now();
        let prior: Option<FirewallState> = req.prior_state.to_typed().ok();
        if let Some(rules) = plan.state.get_attr("rules").cloned() {
            let entries = rules.as_entries().cloned().unwrap_or_default();
            let expiry_known = rules.is_null()
                || (rules.is_known()
                    && entries
                        .values()
                        .all(|r| r.get_attr("expires").is_none_or(Value::is_known)));
            if expiry_known {
                let mut active = Vec::new();
                for (key, r) in &entries {
                    let Ok(m) = r.unknown_as_null().to_typed::<RuleModel>() else {
                        continue;
                    };
                    if !expired(&m, now) {
                        active.push(Value::from(key.clone()));
                        continue;
                    }
                    let was = prior
                        .as_ref()
                        .and_then(|p| p.active_rules.as_ref())
                        .is_some_and(|a| a.contains(key));
                    let (summary, what) = if was {
                        ("Rule expired", "this apply removes it from Proxmox")
                    } else {
                        ("Rule already expired", "it is not created")
                    };
                    diags.warning_at(
                        AttributePath::attr("rules").then_key(key.clone()),
                        summary,
                        format!(
                            "rules[{key:?}] expired at {}: {what}",
                            m.expires.as_deref().unwrap_or_default()
                        ),
                    );
                }
                plan.state
                    .set_path(&AttributePath::attr("active_rules"), Value::List(active));
            }
        }
        if diags.has_errors() || plan.state.get_attr("node").is_none_or(|n| !n.is_known()) {
            return;
        }
        let changing = req.prior_state.is_null() || !plan.state.equals(&req.prior_state);
        if !changing {
            return;
        }
        let Ok(planned) = plan.state.unknown_as_null().to_typed::<FirewallState>() else {
            return;
        };
        self.guard(ctx, Some(&planned), &prior.unwrap_or_default(), diags)
            .await;
    }

    async fn create(
        &self,
        ctx: &Context,
        req: CreateRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let (_, client) = crate::clients::proxmox(ctx, diags)?;
        let mut st = to_typed(&req.planned_state.unknown_as_null(), diags)?;
        let deadline = deadline(&st, Op::Create);
        let before = match ops::current_options(&client).await {
            Ok(o) => o,
            Err(e) => {
                diags.error("Reading the firewall failed", e.to_string());
                return None;
            }
        };
        st.previous_options = Some(PreviousOptions {
            enabled: Some(before.enable.unwrap_or(false)),
            policy_in: before.policy_in.clone(),
            policy_out: before.policy_out.clone(),
        });
        st.id = st.node.clone();
        if let Err(e) = ops::apply(&client, None, &st, &deadline).await {
            diags.error(
                "Creating the host firewall failed",
                format!("{e}\nWhat was changed is recorded in the state (tainted); the next apply converges it."),
            );
            let read = ops::read(&client, st.clone()).await.unwrap_or(st);
            return from_typed(&read, diags);
        }
        from_typed(&st, diags)
    }

    async fn read(&self, ctx: &Context, state: Value, diags: &mut Diagnostics) -> Option<Value> {
        let (_, client) = crate::clients::proxmox(ctx, diags)?;
        let st = to_typed(&state, diags)?;
        match ops::read(&client, st).await {
            Ok(st) => from_typed(&st, diags),
            Err(e) => {
                diags.error("Reading the host firewall failed", e.to_string());
                None
            }
        }
    }

    async fn update(
        &self,
        ctx: &Context,
        req: UpdateRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let (_, client) = crate::clients::proxmox(ctx, diags)?;
        let prior = to_typed(&req.prior_state, diags)?;
        let mut st = to_typed(&req.planned_state.unknown_as_null(), diags)?;
        st.previous_options = prior.previous_options.clone();
        let deadline = deadline(&st, Op::Update);
        match ops::apply(&client, Some(&prior), &st, &deadline).await {
            Ok(()) => from_typed(&st, diags),
            Err(e) => {
                diags.error("Updating the host firewall failed", e.to_string());
                // What Proxmox has now: the next plan shows what is left to do.
                let read = ops::read(&client, prior.clone()).await.unwrap_or(prior);
                from_typed(&read, diags)
            }
        }
    }

    async fn delete(&self, ctx: &Context, prior_state: Value, diags: &mut Diagnostics) {
        let Some((_, client)) = crate::clients::proxmox(ctx, diags) else {
            return;
        };
        let Some(st) = to_typed(&prior_state, diags) else {
            return;
        };
        let deadline = deadline(&st, Op::Delete);
        if st.previous_options.is_none() {
            diags.warning(
                "Firewall options left as they are",
                "this firewall was imported, so the options it found at create are unknown: \
                 `enabled` and the policies stay as they are; only the marked rules and the IP \
                 set are removed",
            );
        }
        if let Err(e) = ops::destroy(&client, &st, &deadline).await {
            diags.error("Destroying the host firewall failed", e.to_string());
        }
    }

    async fn import_state(
        &self,
        _ctx: &Context,
        req: ImportRequest,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let id = match import_identity().resolve(&req.id, req.identity.as_ref()) {
            Ok(id) => id,
            Err(e) => {
                diags.error("Invalid import identity", e);
                return None;
            }
        };
        let id = id.trim();
        let (node, set) = match id.split_once('/') {
            Some((n, s)) => (n, Some(s)),
            None => (id, None),
        };
        if let Err(e) = crate::provider::validate_node(node) {
            diags.error(
                "Invalid import ID",
                format!("{id:?}: expected <node> or <node>/<ipset>: node {e}"),
            );
            return None;
        }
        if let Some(s) = set {
            if let Err(e) = validate::validate_fw_name(s, 64) {
                diags.error("Invalid import ID", format!("{id:?}: IP set {e}"));
                return None;
            }
        }
        let st = FirewallState {
            id: Some(node.to_string()),
            node: Some(node.to_string()),
            ipset: set.map(|s| IpSetModel {
                name: s.to_string(),
                cidrs: Vec::new(),
            }),
            acknowledge_lockout_risk: Some(false),
            ..Default::default()
        };
        from_typed(&st, diags)
    }

    fn import_identity(&self) -> Option<ImportIdentity> {
        Some(import_identity())
    }
}

/// The identity of a host firewall: its node and, when it manages one, its IP set: the import
/// ID `<node>` or `<node>/<ipset>`.
fn import_identity() -> ImportIdentity {
    ImportIdentity::new(
        "/",
        vec![
            IdentityPart::string("node", "Proxmox VE node whose firewall this is."),
            IdentityPart::string("ipset", "Name of the managed IP set, if any.")
                .optional()
                .from_state(|st| {
                    st.get_attr("ipset")
                        .and_then(|s| s.get_attr("name"))
                        .cloned()
                        .unwrap_or(Value::Null)
                }),
        ],
    )
}
