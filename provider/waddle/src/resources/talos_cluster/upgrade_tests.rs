//! Plans of Talos and Kubernetes upgrades: in place (never a replacement), each node's
//! planned action, `node_versions`, the version path refusals with their attribute paths,
//! and the plan after an interrupted roll.

use super::tests::{applied_state, bundle, config_value, diag_paths, harness, three_node};
use super::upgrade::NodeVersionModel;
use super::*;

fn status_action(v: &Value, node: &str) -> Option<String> {
    v.get_path(
        &AttributePath::attr("node_status")
            .then_key(node)
            .then_attr("action"),
    )
    .and_then(Value::as_str)
    .map(str::to_string)
}

fn at(talos: &str, k8s: &str) -> ClusterModel {
    let mut m = three_node();
    m.talos_version = Some(talos.into());
    m.kubernetes_version = Some(k8s.into());
    m
}

/// The applied state of `m` (at its versions), with every node's record.
fn applied(m: &ClusterModel) -> ClusterModel {
    let mut s = applied_state(m, &bundle());
    s.talos_version = m.talos_version.clone();
    s.kubernetes_version = m.kubernetes_version.clone();
    s.machine_configurations = Some(inputs::render_configs(&s, &bundle()).unwrap());
    s.machine_configurations_masked = s.machine_configurations.as_ref().map(wo::masked);
    let rec = upgrade::target(&s);
    s.node_versions = Some(s.nodes().keys().map(|k| (k.clone(), rec.clone())).collect());
    s
}

#[tokio::test]
async fn a_talos_version_change_is_an_in_place_upgrade_of_every_node() {
    let h = harness().await;
    let state = config_value(&applied(&at("v1.12.4", "1.35.0")));
    let r = h
        .plan(TYPE_NAME, &state, &config_value(&at("v1.12.11", "1.35.0")))
        .await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert!(r.requires_replace.is_empty(), "{:?}", r.requires_replace);
    let p = &r.planned_state;
    for n in ["cp1", "cp2", "cp3"] {
        let a = status_action(p, n).unwrap();
        assert!(
            a.contains("upgraded in place: Talos v1.12.4 -> v1.12.11"),
            "{n}: {a}"
        );
        let v = p
            .get_path(
                &AttributePath::attr("node_versions")
                    .then_key(n)
                    .then_attr("installer"),
            )
            .and_then(Value::as_str)
            .map(str::to_string);
        assert_eq!(v.as_deref(), Some("ghcr.io/siderolabs/installer:v1.12.11"));
    }
    // The plan warns which nodes are upgraded and rebooted, control planes first.
    let w = r
        .diagnostics
        .iter()
        .find(|d| d.summary == "Nodes will be upgraded in place")
        .expect("a warning lists the upgrades");
    assert!(
        w.detail
            .starts_with("nodes[\"cp1\"], rebooted: upgraded in place: Talos v1.12.4"),
        "{}",
        w.detail
    );
    // The VMs stay.
    assert!(p
        .get_attr("proxmox_vms")
        .unwrap()
        .equals(state.get_attr("proxmox_vms").unwrap()));

    // No change: an empty plan.
    let r = h
        .plan(TYPE_NAME, &state, &config_value(&at("v1.12.4", "1.35.0")))
        .await;
    assert!(r.planned_state.equals(&state));
}

#[tokio::test]
async fn version_paths_are_refused_at_plan_with_their_attribute() {
    let h = harness().await;
    let state = config_value(&applied(&at("v1.12.11", "1.35.2")));
    // Downgrades.
    let r = h
        .plan(TYPE_NAME, &state, &config_value(&at("v1.12.4", "1.35.2")))
        .await;
    assert_eq!(diag_paths(&r.diagnostics, true), vec!["talos_version"]);
    let r = h
        .plan(TYPE_NAME, &state, &config_value(&at("v1.12.11", "1.33.0")))
        .await;
    assert_eq!(diag_paths(&r.diagnostics, true), vec!["kubernetes_version"]);
    assert!(r
        .diagnostics
        .iter()
        .any(|d| d.detail.contains("allow_downgrade")));
    // ... unless allowed.
    let mut allowed = at("v1.12.4", "1.35.0");
    allowed.upgrade = Some(upgrade::UpgradeModel {
        allow_downgrade: Some(true),
        ..Default::default()
    });
    let r = h.plan(TYPE_NAME, &state, &config_value(&allowed)).await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    // A skipped minor names the path to take.
    let r = h
        .plan(TYPE_NAME, &state, &config_value(&at("v1.14.0", "1.35.2")))
        .await;
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.summary == "Upgrade refused")
        .expect("a refusal");
    assert!(
        d.detail.contains("upgrade to the latest v1.13.x first"),
        "{}",
        d.detail
    );
}

#[tokio::test]
async fn the_plan_after_an_interrupted_roll_shows_the_nodes_not_done() {
    let h = harness().await;
    // cp1 was upgraded, cp2 failed, cp3 untouched: the state keeps the old talos_version
    // and each node's record.
    let mut s = applied(&at("v1.12.4", "1.35.0"));
    let done = upgrade::target(&at("v1.12.11", "1.35.0"));
    s.node_versions
        .as_mut()
        .unwrap()
        .insert("cp1".into(), done.clone());
    let state = config_value(&s);
    let r = h
        .plan(TYPE_NAME, &state, &config_value(&at("v1.12.11", "1.35.0")))
        .await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert!(!r.planned_state.equals(&state), "the plan is not empty");
    let p = &r.planned_state;
    assert!(
        status_action(p, "cp2")
            .unwrap()
            .contains("Talos v1.12.4 -> v1.12.11"),
        "{:?}",
        status_action(p, "cp2")
    );
    // cp1 is not upgraded again: its action is not an upgrade.
    assert!(!status_action(p, "cp1")
        .unwrap_or_default()
        .contains("upgraded in place"));
    // Reverting to v1.12.4 mid-roll would downgrade cp1: refused.
    let r = h
        .plan(TYPE_NAME, &state, &config_value(&at("v1.12.4", "1.35.0")))
        .await;
    assert_eq!(diag_paths(&r.diagnostics, true), vec!["talos_version"]);
    let _ = NodeVersionModel::default();
}

#[tokio::test]
async fn a_kubernetes_patch_upgrade_is_planned_in_place() {
    let h = harness().await;
    let state = config_value(&applied(&at("v1.12.11", "1.35.0")));
    let r = h
        .plan(TYPE_NAME, &state, &config_value(&at("v1.12.11", "1.35.2")))
        .await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert!(r.requires_replace.is_empty());
    let a = status_action(&r.planned_state, "cp1").unwrap();
    assert!(a.contains("Kubernetes 1.35.0 -> 1.35.2"), "{a}");
}
