//! Plans and deletes of `waddle_talos_cluster` updates that must never lose the cluster:
//! resizes in place, re-creations refused or announced, undecodable states kept.

use super::tests::{applied_state, bundle, config_value, diag_paths, harness, three_node};
use super::*;

fn with_placement(m: &ClusterModel, node: &str, f: impl Fn(&mut PlacementModel)) -> ClusterModel {
    let mut m = m.clone();
    if let Some(p) = m
        .nodes
        .as_mut()
        .and_then(|n| n.get_mut(node))
        .and_then(|n| n.proxmox.as_mut())
    {
        f(p);
    }
    m
}

fn status_action(v: &Value, node: &str) -> Option<String> {
    v.get_path(
        &AttributePath::attr("node_status")
            .then_key(node)
            .then_attr("action"),
    )
    .and_then(Value::as_str)
    .map(str::to_string)
}

#[tokio::test]
async fn resizing_control_planes_is_planned_in_place_and_announced() {
    let h = harness().await;
    let base = three_node();
    let mut sized = base.clone();
    for n in ["cp1", "cp2", "cp3"] {
        sized = with_placement(&sized, n, |p| p.cores = Some(3));
    }
    let state = config_value(&applied_state(&sized, &bundle()));
    let mut bigger = sized.clone();
    for n in ["cp1", "cp2", "cp3"] {
        bigger = with_placement(&bigger, n, |p| {
            p.cores = Some(4);
            p.memory = Some(8192);
            p.disk_size = Some(20);
        });
    }
    let r = h.plan(TYPE_NAME, &state, &config_value(&bigger)).await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert!(r.requires_replace.is_empty(), "{:?}", r.requires_replace);
    let p = &r.planned_state;
    // Nothing about the VMs becomes unknown: they are kept.
    assert!(p
        .get_attr("proxmox_vms")
        .unwrap()
        .equals(state.get_attr("proxmox_vms").unwrap()));
    for n in ["cp1", "cp2", "cp3"] {
        let a = status_action(p, n).unwrap();
        assert!(
            a.contains("resized in place") && a.contains("cores 3 -> 4"),
            "{n}: {a}"
        );
        assert_ne!(status_action(&state, n), Some(a));
        assert_eq!(
            p.get_path(
                &AttributePath::attr("node_status")
                    .then_key(n)
                    .then_attr("cores")
            )
            .and_then(Value::as_i64),
            Some(4)
        );
    }
    // The plan says which VMs restart.
    let warn = r
        .diagnostics
        .iter()
        .find(|d| !d.is_error())
        .expect("a warning lists the restarted VMs");
    for n in ["\"cp1\"] (VM 110", "\"cp2\"] (VM 111", "\"cp3\"] (VM 112"] {
        assert!(warn.detail.contains(n), "{n} in {}", warn.detail);
    }
    assert!(!warn.detail.contains("DELETED"), "{}", warn.detail);

    // A disk never shrinks: refused at plan with the path.
    let smaller = with_placement(&sized, "cp2", |p| p.disk_size = Some(5));
    let r = h.plan(TYPE_NAME, &state, &config_value(&smaller)).await;
    assert_eq!(
        diag_paths(&r.diagnostics, true),
        vec!["nodes[\"cp2\"].proxmox.disk_size".to_string()]
    );
}

#[tokio::test]
async fn recreations_are_announced_and_the_only_control_plane_is_refused() {
    let h = harness().await;
    let base = three_node();
    let state = config_value(&applied_state(&base, &bundle()));
    let moved = with_placement(&base, "cp2", |p| p.storage = Some("fast".into()));
    let r = h.plan(TYPE_NAME, &state, &config_value(&moved)).await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    let warn = r
        .diagnostics
        .iter()
        .find(|d| !d.is_error())
        .expect("a warning lists the re-created VMs");
    assert!(
        warn.detail
            .contains("nodes[\"cp2\"] (VM 111 on pve): is DELETED and RE-CREATED"),
        "{}",
        warn.detail
    );
    let a = status_action(&r.planned_state, "cp2").unwrap();
    assert!(a.starts_with("re-created: proxmox.storage"), "{a}");
    assert_eq!(
        status_action(&r.planned_state, "cp1").as_deref(),
        Some("created")
    );

    // A single control plane cannot be re-created without losing etcd.
    let mut single = base.clone();
    single.nodes.as_mut().unwrap().retain(|k, _| k == "cp1");
    let state = config_value(&applied_state(&single, &bundle()));
    let mut disk = single.clone();
    disk.nodes
        .as_mut()
        .unwrap()
        .get_mut("cp1")
        .unwrap()
        .install_disk = Some("/dev/vda".into());
    let r = h.plan(TYPE_NAME, &state, &config_value(&disk)).await;
    assert_eq!(
        diag_paths(&r.diagnostics, true),
        vec!["nodes[\"cp1\"]".to_string()]
    );
    let e = r.diagnostics.errors().next().unwrap();
    assert!(e.detail.contains("only etcd member"), "{}", e.detail);
}

#[tokio::test]
async fn delete_of_an_undecodable_state_fails_and_keeps_the_resource() {
    let h = harness().await;
    let mut state = config_value(&applied_state(&three_node(), &bundle()));
    // A VM id that is not a VM id: the state cannot be read into the model.
    state.set_path(
        &AttributePath::attr("proxmox_vms")
            .then_key("cp1")
            .then_attr("vmid"),
        Value::from(-1i64),
    );
    let r = h.apply(TYPE_NAME, &state, &Value::Null, &Value::Null).await;
    assert!(r.diagnostics.has_errors(), "delete must fail");
    let e = r.diagnostics.errors().next().unwrap();
    assert!(e.detail.contains("cannot be decoded"), "{}", e.detail);
    assert!(
        !r.state.is_null(),
        "the resource stays in the state so its VMs are not orphaned"
    );
}
