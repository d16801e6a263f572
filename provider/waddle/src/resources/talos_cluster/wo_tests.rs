//! `machine_secrets_wo` (+ version) and `machine_configurations_masked`: validation, plans
//! (what stays out of state, switches between the two secrets attributes, re-keys), and the
//! masked configurations a plan shows.

use std::collections::BTreeMap;

use super::tests::{applied_state, bundle, config_value, diag_paths, harness, three_node};
use super::*;
use waddle_talos::SecretsBundle;

fn with_wo(m: &ClusterModel, b: &SecretsBundle, version: Option<i64>) -> Value {
    let mut m = m.clone();
    m.machine_secrets_wo_version = version;
    let mut v = config_value(&m);
    v.set_path(
        &AttributePath::attr(wo::ATTR),
        Value::from(b.to_yaml().expect("yaml").as_str()),
    );
    v
}

/// A state applied with `machine_secrets_wo`: no bundle, no full configurations.
fn wo_state(m: &ClusterModel, b: &SecretsBundle) -> ClusterModel {
    let mut s = applied_state(m, b);
    s.machine_secrets_wo_version = Some(1);
    wo::finalize(&mut s, true, None);
    s
}

/// Every secret value of a bundle.
fn secret_values(b: &SecretsBundle) -> Vec<String> {
    let mut out = vec![
        b.cluster_id.clone(),
        b.cluster_secret.clone(),
        b.bootstrap_token.clone(),
        b.trustd_token.clone(),
        b.k8s_service_account_key.clone(),
    ];
    out.extend(b.secretbox_encryption_secret.clone());
    out.extend(b.aescbc_encryption_secret.clone());
    for ca in [&b.etcd_ca, &b.k8s_ca, &b.k8s_aggregator_ca, &b.os_ca] {
        out.push(ca.key.clone());
    }
    out
}

fn assert_no_secret(text: &str, b: &SecretsBundle) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    for s in secret_values(b) {
        assert!(!text.contains(&s), "a secret of the bundle is in {text}");
        assert!(
            !text.contains(&b64.encode(s.as_bytes())),
            "a base64 secret of the bundle is in {text}"
        );
    }
}

/// Exactly one error, at `path`, whose detail contains `text`.
fn assert_one_error(d: &Diagnostics, path: &str, text: &str) {
    let e: Vec<_> = d.errors().collect();
    assert_eq!(e.len(), 1, "{d:?}");
    assert_eq!(e[0].attribute, Some(AttributePath::attr(path)), "{d:?}");
    assert!(e[0].detail.contains(text), "{}", e[0].detail);
}

fn masked_of(v: &Value) -> BTreeMap<String, String> {
    v.get_attr(wo::MASKED_ATTR)
        .and_then(Value::as_entries)
        .expect("masked configurations are known")
        .iter()
        .map(|(k, x)| (k.clone(), x.as_str().expect("string").to_string()))
        .collect()
}

#[test]
fn the_masked_configurations_are_not_sensitive_and_the_write_only_secret_is() {
    let s = schema();
    let a = &s.block.attributes;
    assert!(a[wo::ATTR].write_only && a[wo::ATTR].sensitive);
    assert!(!a[wo::MASKED_ATTR].sensitive && a[wo::MASKED_ATTR].computed);
    assert!(!a[wo::VERSION_ATTR].sensitive);
}

#[tokio::test]
async fn validation_refuses_both_secrets_a_missing_version_and_a_bad_bundle() {
    let h = harness().await;
    let b = bundle();
    let mut v = config_value(&three_node());
    v.set_path(
        &AttributePath::attr("machine_secrets"),
        Value::from(b.to_yaml().expect("yaml").as_str()),
    );
    v.set_path(&AttributePath::attr(wo::VERSION_ATTR), Value::from(1));
    v.set_path(
        &AttributePath::attr(wo::ATTR),
        Value::from(b.to_yaml().expect("yaml").as_str()),
    );
    let d = h.validate_resource(TYPE_NAME, v).await;
    assert_one_error(&d, wo::ATTR, "set only one of machine_secrets and");

    let d = h
        .validate_resource(TYPE_NAME, with_wo(&three_node(), &b, None))
        .await;
    assert_eq!(diag_paths(&d, true), vec![wo::VERSION_ATTR.to_string()]);

    let mut bad = with_wo(&three_node(), &b, Some(1));
    bad.set_path(&AttributePath::attr(wo::ATTR), Value::from("not: a bundle"));
    let d = h.validate_resource(TYPE_NAME, bad).await;
    assert_one_error(&d, wo::ATTR, "machine_secrets_wo:");

    let mut version_alone = three_node();
    version_alone.machine_secrets_wo_version = Some(1);
    let d = h
        .validate_resource(TYPE_NAME, config_value(&version_alone))
        .await;
    assert_eq!(diag_paths(&d, true), vec![wo::VERSION_ATTR.to_string()]);

    // A valid write-only configuration validates.
    let d = h
        .validate_resource(TYPE_NAME, with_wo(&three_node(), &b, Some(1)))
        .await;
    assert!(!d.has_errors(), "{d:?}");
}

#[tokio::test]
async fn a_create_plan_keeps_the_bundle_and_full_configurations_out_and_shows_them_masked() {
    let h = harness().await;
    let b = bundle();
    let cfg = with_wo(&three_node(), &b, Some(1));
    let r = h.plan(TYPE_NAME, &Value::Null, &cfg).await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    let p = &r.planned_state;
    // Null, not unknown: nothing of the bundle will be in state.
    for a in ["machine_secrets", "machine_configurations", wo::ATTR] {
        assert_eq!(p.get_attr(a), Some(&Value::Null), "{a}");
    }
    assert_eq!(
        p.get_attr(wo::VERSION_ATTR).and_then(Value::as_i64),
        Some(1)
    );
    let masked = masked_of(p);
    assert_eq!(masked.keys().collect::<Vec<_>>(), vec!["cp1", "cp2", "cp3"]);
    for text in masked.values() {
        assert_no_secret(text, &b);
        assert!(text.contains(waddle_talos::mask::MASK), "{text}");
        assert!(text.starts_with(inputs::PREFIX), "{text}");
    }
    // The plan never holds the write-only value anywhere.
    let whole = format!("{p:?}");
    assert_no_secret(&whole, &b);
}

#[tokio::test]
async fn a_changed_input_shows_in_the_masked_configurations() {
    let h = harness().await;
    let b = bundle();
    let state = config_value(&wo_state(&three_node(), &b));
    let same = h
        .plan(TYPE_NAME, &state, &with_wo(&three_node(), &b, Some(1)))
        .await;
    assert!(!same.diagnostics.has_errors(), "{:?}", same.diagnostics);
    assert!(
        same.requires_replace.is_empty(),
        "{:?}",
        same.requires_replace
    );
    assert_eq!(same.planned_state, state, "nothing changed: an empty plan");

    let mut changed = three_node();
    changed.cert_sans = Some(vec!["k8s.example.org".into()]);
    let r = h
        .plan(TYPE_NAME, &state, &with_wo(&changed, &b, Some(1)))
        .await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    let before = masked_of(&state);
    let after = masked_of(&r.planned_state);
    for (k, text) in &after {
        assert_ne!(before.get(k), Some(text), "{k}: the change shows");
        assert!(text.contains("k8s.example.org"), "{text}");
        assert_no_secret(text, &b);
    }
}

#[tokio::test]
async fn switching_to_write_only_with_the_same_bundle_is_an_update_and_another_bundle_re_keys() {
    let h = harness().await;
    let b = bundle();
    let mut m = three_node();
    m.machine_secrets = Some(b.to_yaml().expect("yaml"));
    let state = config_value(&applied_state(&m, &b));

    let r = h
        .plan(TYPE_NAME, &state, &with_wo(&three_node(), &b, Some(1)))
        .await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert!(r.requires_replace.is_empty(), "{:?}", r.requires_replace);
    assert_eq!(
        r.planned_state.get_attr("machine_secrets"),
        Some(&Value::Null)
    );

    let other = SecretsBundle::generate(&waddle_talos::SystemClock).expect("bundle");
    let r = h
        .plan(TYPE_NAME, &state, &with_wo(&three_node(), &other, Some(1)))
        .await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert_eq!(
        r.requires_replace,
        vec![AttributePath::attr("machine_secrets")]
    );
}

#[tokio::test]
async fn another_bundle_needs_a_new_version_and_a_new_version_replaces() {
    let h = harness().await;
    let b = bundle();
    let state = config_value(&wo_state(&three_node(), &b));
    let other = SecretsBundle::generate(&waddle_talos::SystemClock).expect("bundle");

    let r = h
        .plan(TYPE_NAME, &state, &with_wo(&three_node(), &other, Some(1)))
        .await;
    assert_one_error(&r.diagnostics, wo::ATTR, "not this cluster's bundle");

    let r = h
        .plan(TYPE_NAME, &state, &with_wo(&three_node(), &other, Some(2)))
        .await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert_eq!(
        r.requires_replace,
        vec![AttributePath::attr(wo::VERSION_ATTR)]
    );
}

#[tokio::test]
async fn a_write_only_cluster_cannot_lose_its_bundle_and_can_move_it_back_to_state() {
    let h = harness().await;
    let b = bundle();
    let state = config_value(&wo_state(&three_node(), &b));

    // Neither attribute: the bundle is nowhere.
    let r = h
        .plan(TYPE_NAME, &state, &config_value(&three_node()))
        .await;
    assert_one_error(&r.diagnostics, wo::ATTR, "is not in the state");

    // The same bundle in machine_secrets: an update.
    let mut back = three_node();
    back.machine_secrets = Some(b.to_yaml().expect("yaml"));
    let r = h.plan(TYPE_NAME, &state, &config_value(&back)).await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert!(r.requires_replace.is_empty(), "{:?}", r.requires_replace);

    // Another bundle in machine_secrets: a re-key.
    let other = SecretsBundle::generate(&waddle_talos::SystemClock).expect("bundle");
    back.machine_secrets = Some(other.to_yaml().expect("yaml"));
    let r = h.plan(TYPE_NAME, &state, &config_value(&back)).await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert!(
        r.requires_replace
            .contains(&AttributePath::attr("machine_secrets")),
        "{:?}",
        r.requires_replace
    );
}

#[test]
fn finalize_keeps_no_bundle_in_write_only_mode_and_masks_otherwise() {
    let b = bundle();
    let mut s = applied_state(&three_node(), &b);
    wo::finalize(&mut s, false, None);
    assert!(s.machine_secrets.is_some() && s.machine_configurations.is_some());
    let masked = s.machine_configurations_masked.clone().expect("masked");
    assert_eq!(masked.len(), 3);
    let mut w = applied_state(&three_node(), &b);
    // A node without an applied configuration keeps its prior masked one.
    if let Some(c) = w.machine_configurations.as_mut() {
        c.remove("cp2");
    }
    wo::finalize(&mut w, true, Some(&s));
    assert_eq!(w.machine_secrets, None);
    assert_eq!(w.machine_configurations, None);
    assert_eq!(w.machine_configurations_masked, Some(masked));
    let state = format!("{:?}", config_value(&w));
    assert_no_secret(&state, &b);
}
