//! Plans of `config_contract`: defaulted from `talos_version` at create and then kept, so an
//! upgrade from v1.12 to v1.13 keeps rendering the v1.12 contract until the attribute
//! changes; a contract newer than the Talos release a node runs is refused at its path.

use super::tests::{applied_state, bundle, config_value, diag_paths, harness, three_node};
use super::*;

fn at(talos: &str, contract: Option<&str>) -> ClusterModel {
    let mut m = three_node();
    m.talos_version = Some(talos.into());
    m.config_contract = contract.map(str::to_string);
    m
}

/// The applied state of `m` with every node recorded on `runs`.
fn applied(m: &ClusterModel, runs: &str) -> ClusterModel {
    let base = ClusterModel {
        config_contract: None,
        ..m.clone()
    };
    let mut s = applied_state(&base, &bundle());
    s.talos_version = m.talos_version.clone();
    s.config_contract = Some(contract::of_model(m).as_str().into());
    s.machine_configurations = Some(inputs::render_configs(&s, &bundle()).unwrap());
    s.machine_configurations_masked = s.machine_configurations.as_ref().map(wo::masked);
    let mut rec = upgrade::target(&s);
    rec.talos_version = Some(runs.into());
    s.node_versions = Some(s.nodes().keys().map(|k| (k.clone(), rec.clone())).collect());
    s
}

fn planned_contract(v: &Value) -> Option<String> {
    v.get_attr("config_contract")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn config_of(v: &Value, node: &str) -> String {
    v.get_path(&AttributePath::attr("machine_configurations").then_key(node))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_create_takes_the_minor_of_talos_version() {
    let h = harness().await;
    for (talos, want) in [("v1.12.11", "v1.12"), ("v1.13.9", "v1.13")] {
        let r = h
            .plan(TYPE_NAME, &Value::Null, &config_value(&at(talos, None)))
            .await;
        assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
        assert_eq!(planned_contract(&r.planned_state).as_deref(), Some(want));
    }
    // A contract newer than talos_version: refused at its path.
    let d = h
        .validate_resource(TYPE_NAME, config_value(&at("v1.12.11", Some("v1.13"))))
        .await;
    assert_eq!(diag_paths(&d, true), vec!["config_contract"]);
    // Not a contract.
    let d = h
        .validate_resource(TYPE_NAME, config_value(&at("v1.13.9", Some("v1.14"))))
        .await;
    assert_eq!(diag_paths(&d, true), vec!["config_contract"]);
    let d = h
        .validate_resource(TYPE_NAME, config_value(&at("v1.13.9", Some("v1.12"))))
        .await;
    assert!(!d.has_errors(), "{d:?}");
}

#[tokio::test]
async fn an_upgrade_keeps_the_contract_until_it_is_changed() {
    let h = harness().await;
    let state = config_value(&applied(&at("v1.12.11", None), "v1.12.11"));
    assert_eq!(planned_contract(&state).as_deref(), Some("v1.12"));

    // Upgrade to v1.13: the contract stays v1.12, the configurations only change image.
    let r = h
        .plan(TYPE_NAME, &state, &config_value(&at("v1.13.9", None)))
        .await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert_eq!(planned_contract(&r.planned_state).as_deref(), Some("v1.12"));
    let before = config_of(&state, "cp1");
    let after = config_of(&r.planned_state, "cp1");
    assert!(after.contains("installer:v1.13.9"), "{after}");
    assert!(!after.contains("grubUseUKICmdline"), "{after}");
    assert_eq!(
        before
            .lines()
            .skip(1)
            .collect::<Vec<_>>()
            .join("\n")
            .replace("v1.12.11", "v1.13.9"),
        after.lines().skip(1).collect::<Vec<_>>().join("\n"),
        "only the version changes in the rendered configuration"
    );

    // The contract and the version in one apply: refused, nodes run v1.12.
    let r = h
        .plan(
            TYPE_NAME,
            &state,
            &config_value(&at("v1.13.9", Some("v1.13"))),
        )
        .await;
    assert_eq!(diag_paths(&r.diagnostics, true), vec!["config_contract"]);
    let d = r.diagnostics.iter().find(|d| d.is_error()).unwrap();
    assert!(
        d.detail.contains("cp1 runs v1.12.11") && d.detail.contains("Upgrade talos_version"),
        "{}",
        d.detail
    );

    // Once the nodes run v1.13: the v1.13 contract re-renders every configuration.
    let upgraded = config_value(&applied(&at("v1.13.9", Some("v1.12")), "v1.13.9"));
    let r = h
        .plan(TYPE_NAME, &upgraded, &config_value(&at("v1.13.9", None)))
        .await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert!(r.planned_state.equals(&upgraded), "kept: an empty plan");
    let r = h
        .plan(
            TYPE_NAME,
            &upgraded,
            &config_value(&at("v1.13.9", Some("v1.13"))),
        )
        .await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert!(r.requires_replace.is_empty(), "{:?}", r.requires_replace);
    assert_eq!(planned_contract(&r.planned_state).as_deref(), Some("v1.13"));
    for n in ["cp1", "cp2", "cp3"] {
        let c = config_of(&r.planned_state, n);
        assert!(c.contains("grubUseUKICmdline: true"), "{n}: {c}");
        assert!(c.contains("auditPolicy"), "{n}");
    }
    // And removing the attribute afterwards keeps v1.13.
    let moved = config_value(&applied(&at("v1.13.9", Some("v1.13")), "v1.13.9"));
    let r = h
        .plan(TYPE_NAME, &moved, &config_value(&at("v1.13.9", None)))
        .await;
    assert_eq!(planned_contract(&r.planned_state).as_deref(), Some("v1.13"));
    assert!(r.planned_state.equals(&moved));
}

/// A node added while the others still run v1.12 would run the planned version: the check
/// holds each node to what it runs.
#[tokio::test]
async fn nodes_behind_are_named() {
    let h = harness().await;
    let mut state = applied(&at("v1.13.9", Some("v1.12")), "v1.13.9");
    let mut recs = state.node_versions.clone().unwrap();
    recs.get_mut("cp2").unwrap().talos_version = Some("v1.12.11".into());
    state.node_versions = Some(recs);
    let r = h
        .plan(
            TYPE_NAME,
            &config_value(&state),
            &config_value(&at("v1.13.9", Some("v1.13"))),
        )
        .await;
    assert_eq!(diag_paths(&r.diagnostics, true), vec!["config_contract"]);
    let d = r.diagnostics.iter().find(|d| d.is_error()).unwrap();
    assert!(d.detail.contains("(cp2 runs v1.12.11)"), "{}", d.detail);
}
