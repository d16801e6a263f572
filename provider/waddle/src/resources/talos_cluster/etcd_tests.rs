//! Plans of `etcd_backup`, `etcd_restore`, `etcd_snapshots` and the last-control-plane
//! refusal.

use super::etcd::{BackupModel, RestoreModel, SnapshotRecord};
use super::tests::{applied_state, bundle, config_value, diag_paths, harness, node, three_node};
use super::*;

fn one_cp_one_worker() -> ClusterModel {
    let mut m = three_node();
    let nodes = m.nodes.as_mut().expect("nodes");
    nodes.remove("cp2");
    nodes.remove("cp3");
    nodes.insert("w1".into(), node("worker", "10.10.0.13/24", Some(113)));
    m
}

fn record() -> SnapshotRecord {
    SnapshotRecord {
        path: "b/waddle-etcd-20260101T000000.000Z-every_apply.db".into(),
        sha256: "ab".into(),
        size: 544,
        reason: "every_apply".into(),
        node: "cp1".into(),
        taken_at: "2026-01-01T00:00:00Z".into(),
    }
}

fn errors(r: &waddle_framework::testing::PlanResult) -> Vec<String> {
    r.diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.detail.clone())
        .collect()
}

#[tokio::test]
async fn removing_the_last_control_plane_is_refused_at_plan() {
    let h = harness().await;
    let base = one_cp_one_worker();
    let state = config_value(&applied_state(&base, &bundle()));

    // No control plane left: refused at plan (configuration validation refuses it too).
    let mut none = base.clone();
    none.nodes.as_mut().expect("nodes").remove("cp1");
    let r = h.plan(TYPE_NAME, &state, &config_value(&none)).await;
    assert_eq!(diag_paths(&r.diagnostics, true), ["nodes[\"cp1\"]"]);
    assert!(
        errors(&r)[0].contains("the cluster's last control plane"),
        "{:?}",
        r.diagnostics
    );
    let mut d = Diagnostics::new();
    validate_value(&config_value(&none), &mut d);
    assert!(d.has_errors());

    // The only control plane replaced by one on its address: it would leave first.
    let mut same_ip = base.clone();
    let nodes = same_ip.nodes.as_mut().expect("nodes");
    nodes.remove("cp1");
    nodes.insert(
        "cp9".into(),
        node("controlplane", "10.10.0.10/24", Some(119)),
    );
    let r = h.plan(TYPE_NAME, &state, &config_value(&same_ip)).await;
    assert_eq!(diag_paths(&r.diagnostics, true), ["nodes[\"cp1\"]"]);
    assert!(
        errors(&r)[0].contains("last etcd member"),
        "{:?}",
        errors(&r)
    );

    // Replaced by one on another address: it joins first, then the old one leaves.
    let mut other_ip = base.clone();
    let nodes = other_ip.nodes.as_mut().expect("nodes");
    nodes.remove("cp1");
    nodes.insert(
        "cp9".into(),
        node("controlplane", "10.10.0.19/24", Some(119)),
    );
    let r = h.plan(TYPE_NAME, &state, &config_value(&other_ip)).await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);

    // Removing a worker is fine.
    let mut no_worker = base.clone();
    no_worker.nodes.as_mut().expect("nodes").remove("w1");
    let r = h.plan(TYPE_NAME, &state, &config_value(&no_worker)).await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
}

#[tokio::test]
async fn snapshots_are_planned_unknown_only_when_one_is_taken() {
    let h = harness().await;
    let mut base = one_cp_one_worker();
    base.etcd_backup = Some(BackupModel {
        directory: "b".into(),
        when: None,
        keep: None,
    });
    let mut applied = applied_state(&base, &bundle());
    applied.etcd_snapshots = Some(vec![record()]);
    let state = config_value(&applied);
    let snaps = |r: &waddle_framework::testing::PlanResult| {
        r.planned_state.get_attr("etcd_snapshots").cloned()
    };

    // No change: the list is kept (an empty plan).
    let r = h.plan(TYPE_NAME, &state, &config_value(&base)).await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    let kept = snaps(&r).expect("attr");
    assert!(kept.equals(state.get_attr("etcd_snapshots").expect("attr")));

    // An upgrade with the default `when` (before_upgrade): unknown.
    let mut upgrade = base.clone();
    upgrade.kubernetes_version = Some("1.35.9".into());
    let r = h.plan(TYPE_NAME, &state, &config_value(&upgrade)).await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert!(!snaps(&r).expect("attr").is_known());

    // every_apply: unknown on any update, an empty plan stays empty.
    let mut every = base.clone();
    every.etcd_backup = Some(BackupModel {
        directory: "b".into(),
        when: Some(vec!["every_apply".into()]),
        keep: Some(2),
    });
    let mut every_applied = applied_state(&every, &bundle());
    every_applied.etcd_snapshots = Some(vec![record()]);
    let every_state = config_value(&every_applied);
    let r = h.plan(TYPE_NAME, &every_state, &config_value(&every)).await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    let mut diff = Vec::new();
    super::tests::diff_paths(
        &every_state,
        &r.planned_state,
        AttributePath::root(),
        &mut diff,
    );
    assert!(diff.is_empty(), "an empty plan: {diff:?}");
    let mut every_more = every.clone();
    every_more
        .nodes
        .as_mut()
        .expect("nodes")
        .insert("w2".into(), node("worker", "10.10.0.14/24", Some(114)));
    let r = h
        .plan(TYPE_NAME, &every_state, &config_value(&every_more))
        .await;
    assert!(!snaps(&r).expect("attr").is_known());
    // A changed etcd_backup itself: unknown.
    let r = h.plan(TYPE_NAME, &state, &config_value(&every)).await;
    assert!(!snaps(&r).expect("attr").is_known());

    // Invalid `when` and `keep`, with their paths.
    let mut bad = base.clone();
    bad.etcd_backup = Some(BackupModel {
        directory: "b".into(),
        when: Some(vec!["before_upgrade".into(), "hourly".into()]),
        keep: Some(0),
    });
    let mut d = Diagnostics::new();
    validate_value(&config_value(&bad), &mut d);
    assert_eq!(
        diag_paths(&d, true),
        ["etcd_backup.when[1]", "etcd_backup.keep"]
    );
}

#[tokio::test]
async fn a_restore_needs_a_valid_snapshot_file_at_plan() {
    use sha2::Digest as _;
    let h = harness().await;
    let dir = tempfile::tempdir().expect("tmp");
    let mut db = vec![1u8; 512];
    let hash = sha2::Sha256::digest(&db);
    db.extend_from_slice(&hash);
    let good = dir.path().join("good.db");
    std::fs::write(&good, &db).expect("write");
    db[3] = 9;
    let bad = dir.path().join("bad.db");
    std::fs::write(&bad, &db).expect("write");

    let base = one_cp_one_worker();
    let state = config_value(&applied_state(&base, &bundle()));
    let with = |path: &std::path::Path, generation: i64| {
        let mut m = base.clone();
        m.etcd_restore = Some(RestoreModel {
            snapshot: path.to_string_lossy().into_owned(),
            generation,
        });
        config_value(&m)
    };
    let r = h.plan(TYPE_NAME, &state, &with(&good, 1)).await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    let r = h.plan(TYPE_NAME, &state, &with(&bad, 1)).await;
    assert_eq!(diag_paths(&r.diagnostics, true), ["etcd_restore.snapshot"]);
    assert!(errors(&r)[0].contains("integrity hash"), "{:?}", errors(&r));
    let r = h
        .plan(TYPE_NAME, &state, &with(&dir.path().join("missing.db"), 1))
        .await;
    assert_eq!(diag_paths(&r.diagnostics, true), ["etcd_restore.snapshot"]);

    // The generation already applied: no restore, the file is not read again.
    let mut restored = applied_state(&base, &bundle());
    restored.etcd_restore = Some(RestoreModel {
        snapshot: bad.to_string_lossy().into_owned(),
        generation: 1,
    });
    let r = h
        .plan(TYPE_NAME, &config_value(&restored), &with(&bad, 1))
        .await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
}
