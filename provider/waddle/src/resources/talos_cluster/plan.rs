//! Planning of `waddle_talos_cluster` (`modify_plan`): generated values, machine
//! configurations when their inputs are known, and what an update does to each node.

use std::collections::BTreeMap;

use waddle_framework::prelude::*;
use waddle_talos::SecretsBundle;

use super::validate::spec_inputs_known;
use super::{
    changes, inputs, model_of, node_ip, schema, upgrade, ClusterModel, NodeModel, NodeStatus,
};
use crate::provider::ProviderConfig;

/// Nested attributes that are optional + computed only to work around Terraform < 1.0.9.
const NESTED_AS_CONFIGURED: &[&str] =
    &["nodes", "image", "inline_manifests", "timeouts", "upgrade"];

/// Computes the plan-time values: generated MACs, defaulted placement node, kept VM ids,
/// node addresses, machine configurations when the secrets are known, and what the update
/// will leave unchanged.
pub fn plan_values(
    provider: Option<&ProviderConfig>,
    config: &Value,
    prior: Option<&ClusterModel>,
    plan: &mut Value,
    diags: &mut Diagnostics,
) {
    // Nested attributes declared optional + computed for old Terraform versions (see the
    // schema) are planned exactly as configured.
    for a in NESTED_AS_CONFIGURED {
        if let Some(v) = config.get_attr(a) {
            plan.set_path(&AttributePath::attr(*a), v.clone());
        }
    }
    let cluster_name = plan
        .get_attr("cluster_name")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(c) = &cluster_name {
        plan.set_path(&AttributePath::attr("id"), Value::from(c.as_str()));
    }
    let prior_nodes = prior.map(|p| p.nodes()).unwrap_or_default();
    // Proxmox nodes need a Proxmox VE node: the placement's or the provider's default.
    let provider_node_known =
        provider.is_some_and(|p| !p.unknown.contains(&crate::provider::attr::NODE));
    let provider_node = provider.and_then(|p| p.default_node());
    if let Some(entries) = config.get_attr("nodes").and_then(Value::as_entries) {
        for (name, n) in entries {
            let px = n.get_attr("proxmox").cloned().unwrap_or(Value::Null);
            if px.is_null() || !px.is_known() {
                continue;
            }
            if px.get_attr("node").is_some_and(Value::is_null)
                && provider_node_known
                && provider_node.is_none()
            {
                diags.error_at(
                    AttributePath::attr("nodes")
                        .then_key(name)
                        .then_attr("proxmox")
                        .then_attr("node"),
                    "Missing Proxmox node",
                    "set nodes[...].proxmox.node or the provider's `node` (PROXMOX_VE_NODE)",
                );
            }
        }
    }

    // node_addresses
    if let Some(entries) = plan.get_attr("nodes").and_then(Value::as_entries).cloned() {
        let mut addrs = BTreeMap::new();
        let mut known = true;
        for (k, n) in entries {
            match n.get_attr("address").and_then(Value::as_str) {
                Some(a) => {
                    addrs.insert(k, Value::from(a.split('/').next().unwrap_or(a)));
                }
                None => known = false,
            }
        }
        plan.set_path(
            &AttributePath::attr("node_addresses"),
            if known {
                Value::Map(addrs)
            } else {
                Value::unknown()
            },
        );
    } else {
        plan.set_path(&AttributePath::attr("node_addresses"), Value::unknown());
    }

    // machine configurations: known when the secrets and the spec inputs are
    let secrets = super::wo::plan_secrets(config, plan);
    // (Control planes' configurations hold every input: see `inputs`.)
    let mut configs_known = false;
    if let (Some(sec), true) = (secrets, spec_inputs_known(plan) && inputs::known(plan)) {
        if let (Ok(bundle), Some(m)) = (SecretsBundle::from_yaml(&sec), model_of(plan)) {
            // An error is reported by validation.
            if let Ok(configs) = inputs::render_configs(&m, &bundle) {
                let masked = super::wo::masked(&configs)
                    .into_iter()
                    .map(|(k, c)| (k, Value::from(c.as_str())))
                    .collect();
                plan.set_path(
                    &AttributePath::attr(super::wo::MASKED_ATTR),
                    Value::Map(masked),
                );
                let out = configs
                    .into_iter()
                    .map(|(k, c)| (k, Value::from(c.as_str())))
                    .collect();
                plan.set_path(
                    &AttributePath::attr("machine_configurations"),
                    Value::Map(out),
                );
                configs_known = true;
            }
        }
    }
    if !configs_known {
        for a in ["machine_configurations", super::wo::MASKED_ATTR] {
            plan.set_path(&AttributePath::attr(a), Value::unknown());
        }
    }

    let nodes_known = plan_known(plan, "nodes");
    let default_node = if provider_node_known {
        provider_node
    } else {
        None
    };
    let Some(prior) = prior else {
        for a in [
            "talosconfig",
            "kubeconfig",
            "proxmox_vms",
            "proxmox_images",
            "bootstrapped",
        ] {
            plan.set_path(&AttributePath::attr(a), Value::unknown());
        }
        let (status, versions) = match (nodes_known, model_of(plan)) {
            (true, Some(m)) => (
                status_value(&changes::node_status(&m, None, &BTreeMap::new())),
                versions_value(upgrade::planned(None, &m).as_ref()),
            ),
            _ => (Value::unknown(), Value::unknown()),
        };
        plan.set_path(&AttributePath::attr("node_status"), status);
        plan.set_path(&AttributePath::attr("node_versions"), versions);
        return;
    };

    // Update: what happens to each node, and what stays.
    let new_model = model_of(plan).unwrap_or_default();
    let new_nodes = new_model.nodes();
    let actions = changes::classify(prior, &new_model, default_node);
    if nodes_known {
        for (path, msg) in changes::refusals(prior, &new_model, &actions) {
            diags.error_at(path, "Unsafe change refused", msg);
        }
        for (path, msg) in upgrade::refusals(prior, &new_model) {
            diags.error_at(path, "Upgrade refused", msg);
        }
        if let Some(w) = upgrade::warning_text(prior, &new_model, &actions) {
            diags.warning_at(
                AttributePath::attr("talos_version"),
                "Nodes will be upgraded in place",
                w,
            );
        }
        if let Some(w) = changes::warning_text(prior, &actions) {
            diags.warning_at(
                AttributePath::attr("nodes"),
                "Nodes will be re-created, deleted or restarted",
                w,
            );
        }
    }
    let cps = |nodes: &BTreeMap<String, NodeModel>| -> Vec<String> {
        nodes
            .iter()
            .filter(|(_, n)| n.role == "controlplane")
            .map(|(_, n)| node_ip(n).to_string())
            .collect()
    };
    let cps_same = cps(&prior_nodes) == cps(&new_nodes) && nodes_known;
    let keep = |plan: &mut Value, attr: &str, v: Value| {
        plan.set_path(&AttributePath::attr(attr), v);
    };
    keep(
        plan,
        "talosconfig",
        match (&prior.talosconfig, cps_same) {
            (Some(t), true) => Value::from(t.as_str()),
            _ => Value::unknown(),
        },
    );
    let endpoint_same = plan.get_attr("endpoint").and_then(Value::as_str) == Some(&prior.endpoint);
    keep(
        plan,
        "kubeconfig",
        match (&prior.kubeconfig, endpoint_same, prior.bootstrapped) {
            (Some(k), true, Some(true)) => Value::from(k.as_str()),
            _ => Value::unknown(),
        },
    );
    // An update never undoes a bootstrap.
    keep(
        plan,
        "bootstrapped",
        match prior.bootstrapped {
            Some(true) => Value::Bool(true),
            _ => Value::unknown(),
        },
    );
    if !nodes_known || prior.bootstrapped != Some(true) {
        for a in [
            "proxmox_vms",
            "proxmox_images",
            "node_status",
            "node_versions",
        ] {
            keep(plan, a, Value::unknown());
        }
        return;
    }
    keep(
        plan,
        "proxmox_vms",
        changes::planned_vms(prior, &new_model, &actions, default_node),
    );
    let no_new_vm = !actions
        .values()
        .any(|a| matches!(a, changes::Action::Create | changes::Action::Recreate(_)));
    let imgs = match (no_new_vm, &prior.proxmox_images) {
        (true, Some(i)) => match &schema().implied_type() {
            Type::Object(o) => o
                .attrs
                .get("proxmox_images")
                .and_then(|t| Value::from_typed(i, t).ok())
                .unwrap_or_else(Value::unknown),
            _ => Value::unknown(),
        },
        _ => Value::unknown(),
    };
    keep(plan, "proxmox_images", imgs);
    let mut status = changes::node_status(&new_model, prior.node_status.as_ref(), &actions);
    upgrade::annotate_status(&mut status, prior, &new_model, &actions);
    keep(plan, "node_status", status_value(&status));
    keep(
        plan,
        "node_versions",
        versions_value(upgrade::planned(Some(prior), &new_model).as_ref()),
    );
}

/// `node_versions` as a value of its schema type (`None`: null).
fn versions_value(v: Option<&BTreeMap<String, upgrade::NodeVersionModel>>) -> Value {
    let Some(v) = v else { return Value::Null };
    match &schema().implied_type() {
        Type::Object(o) => o
            .attrs
            .get("node_versions")
            .and_then(|t| Value::from_typed(v, t).ok())
            .unwrap_or_else(Value::unknown),
        _ => Value::unknown(),
    }
}

/// `node_status` as a value of its schema type.
fn status_value(s: &BTreeMap<String, NodeStatus>) -> Value {
    match &schema().implied_type() {
        Type::Object(o) => o
            .attrs
            .get("node_status")
            .and_then(|t| Value::from_typed(s, t).ok())
            .unwrap_or_else(Value::unknown),
        _ => Value::unknown(),
    }
}

fn plan_known(plan: &Value, attr: &str) -> bool {
    plan.get_attr(attr).is_some_and(Value::is_wholly_known)
}
