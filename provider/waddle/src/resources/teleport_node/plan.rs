//! The payload's plan of `waddle_teleport_node` (the shared VM steps around it — node, id,
//! address, replacement — are `vm::plan::modify_plan`): the derived names (`public_addr`, `cluster_name`, `web_url`), the rendered `teleport.yaml`
//! and `config_hash` when everything is known (which turns drift into a diff), the upgrade
//! path of `teleport_version`, and the replacement a new `cluster_name` forces, with a warning
//! that says why.

use waddle_framework::prelude::*;

use super::model::TeleportNodeState;

fn attr(n: &str) -> AttributePath {
    AttributePath::attr(n)
}

fn known_str(v: &Value, n: &str) -> Option<String> {
    v.get_attr(n)
        .filter(|x| x.is_known())
        .and_then(Value::as_str)
        .map(String::from)
}

/// What `teleport.yaml`, the connector and the roles are rendered from.
const RENDER_INPUTS: [&str; 15] = [
    "name",
    "teleport_version",
    "domain",
    "public_addr",
    "cluster_name",
    "acme_email",
    "proxy_protocol",
    "local_auth",
    "github",
    "roles",
    "ssh_labels",
    "kubeconfig",
    "apps",
    "proxmox_ui_uri",
    "private_nic",
];

pub(super) fn plan(req: &PlanRequest, plan: &mut Plan, diags: &mut Diagnostics) {
    // public_addr, cluster_name, web_url
    let configured = |n: &str| req.config.get_attr(n).is_some_and(|v| !v.is_null());
    if !configured("public_addr") {
        let v = match known_str(&plan.state, "domain") {
            Some(d) => Value::from(format!("teleport.{d}")),
            None => Value::unknown(),
        };
        plan.state.set_path(&attr("public_addr"), v);
    }
    let public = known_str(&plan.state, "public_addr");
    if !configured("cluster_name") {
        let v = public
            .clone()
            .map(Value::from)
            .unwrap_or_else(Value::unknown);
        plan.state.set_path(&attr("cluster_name"), v);
    }
    let web = public
        .map(|p| Value::from(format!("https://{p}")))
        .unwrap_or_else(Value::unknown);
    plan.state.set_path(&attr("web_url"), web);
    // The rendering, when every input of it is known.
    let inputs_known = RENDER_INPUTS
        .iter()
        .all(|n| plan.state.get_attr(n).is_none_or(Value::is_wholly_known));
    let rendered = inputs_known
        .then(|| {
            plan.state
                .unknown_as_null()
                .to_typed::<TeleportNodeState>()
                .ok()
        })
        .flatten()
        .and_then(|st| waddle_teleport::render(&st.spec()).ok());
    match rendered {
        Some(r) => {
            plan.state
                .set_path(&attr("teleport_yaml"), Value::from(r.teleport_yaml));
            plan.state
                .set_path(&attr("config_hash"), Value::from(r.config_hash));
        }
        None => {
            for n in ["teleport_yaml", "config_hash"] {
                plan.state.set_path(&attr(n), Value::unknown());
            }
        }
    }
    if !req.is_create() {
        upgrade_path(req, plan, diags);
        cluster_rename(req, plan, diags);
    }
}

/// A new `teleport_version` within the same major or the next is in place; a skip is refused.
fn upgrade_path(req: &PlanRequest, plan: &Plan, diags: &mut Diagnostics) {
    let (Some(from), Some(to)) = (
        known_str(&req.prior_state, "teleport_version"),
        known_str(&plan.state, "teleport_version"),
    ) else {
        return;
    };
    if let Err(e) = waddle_teleport::check_upgrade(&from, &to) {
        diags.error_at(
            attr("teleport_version"),
            "Unsupported Teleport upgrade",
            e.to_string(),
        );
    }
}

/// Teleport cannot rename a cluster: a new name replaces the VM, and the plan says why.
fn cluster_rename(req: &PlanRequest, plan: &mut Plan, diags: &mut Diagnostics) {
    let from = known_str(&req.prior_state, "cluster_name").filter(|s| !s.is_empty());
    let to = plan
        .state
        .get_attr("cluster_name")
        .cloned()
        .unwrap_or(Value::Null);
    let Some(from) = from else {
        return; // an import leaves it null: adopted in place
    };
    if to.is_known() && to.as_str() == Some(from.as_str()) {
        return;
    }
    plan.requires_replace.push(attr("cluster_name"));
    let to = to
        .as_str()
        .map(|s| format!("{s:?}"))
        .unwrap_or_else(|| "a value known after apply".into());
    diags.warning_at(
        attr("cluster_name"),
        "Changing the Teleport cluster name replaces the VM",
        format!(
            "cluster_name changes from {from:?} to {to}. Teleport cannot rename a cluster (the name is \
             part of every certificate it issued), so the node is rebuilt: users, sessions, audit \
             log and trusted devices of the old cluster are lost."
        ),
    );
}
