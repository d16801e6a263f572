//! The two recovery paths of `waddle_talos_cluster` when every VM of a cluster vanished
//! (a lost host), driven in process against the PVE and Talos emulators:
//!
//! 1. `etcd_restore.generation` bumped after the VMs vanished: the nodes are re-created and
//!    etcd is recovered from the new snapshot (the data written after the first restore is
//!    back);
//! 2. the VMs vanish again and the configuration keeps the applied generation: every control
//!    plane is new, etcd starts empty, and the apply says so in a warning.

#[allow(dead_code)] // not every helper is used here
mod inproc;

use inproc::talos::{cluster, config};
use waddle_acceptance::pve::PveEmulator;
use waddle_acceptance::talos::etcd_data::EtcdData;
use waddle_framework::diag::Severity;
use waddle_framework::testing::Harness;
use waddle_framework::Value;
use waddle_provider::resources::talos_cluster::etcd::RestoreModel;
use waddle_provider::resources::talos_cluster::{ClusterModel, TYPE_NAME};
use waddle_talos::secrets::SystemClock;
use waddle_talos::SecretsBundle;

const NET: u8 = 84;

fn model(secrets: &str, restore: Option<(&std::path::Path, i64)>) -> ClusterModel {
    let nodes = [("cp1", "controlplane", 11u8), ("w1", "worker", 31)];
    ClusterModel {
        machine_secrets: Some(secrets.into()),
        etcd_restore: restore.map(|(p, generation)| RestoreModel {
            snapshot: p.display().to_string(),
            generation,
        }),
        ..cluster(NET, "lost", "v1.12.11", nodes)
    }
}

/// Plans and applies `m` over `prior` after a read (as the CLI does); the new state and the
/// apply's warnings.
async fn refresh_and_apply(h: &Harness, prior: &Value, m: &ClusterModel) -> (Value, Vec<String>) {
    let read = h.read(TYPE_NAME, prior).await;
    assert!(!read.diagnostics.has_errors(), "{:?}", read.diagnostics);
    let config = config(m);
    let p = h.plan(TYPE_NAME, &read.state, &config).await;
    assert!(!p.diagnostics.has_errors(), "{:?}", p.diagnostics);
    let a = h
        .apply(TYPE_NAME, &read.state, &config, &p.planned_state)
        .await;
    assert!(!a.diagnostics.has_errors(), "{:?}", a.diagnostics);
    let warnings = a
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| format!("{}: {}", d.summary, d.detail))
        .collect();
    (a.state, warnings)
}

/// Every VM of the cluster vanishes (stopped and deleted behind the provider's back).
async fn lose_the_host(emu: &PveEmulator) {
    let pve = inproc::client(emu);
    for host in [11u32, 31] {
        let vmid = u32::from(NET) * 100 + host;
        pve.stop_vm(emu.node(), vmid).await.expect("stop");
        pve.delete_vm(emu.node(), vmid).await.expect("delete");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_vms_are_recovered_by_a_generation_bump_or_start_empty_with_a_warning() {
    let e = inproc::talos::env(NET).await;
    let (h, fleet, emu) = (&e.h, &e.fleet, &e.emu);
    let bundle = tokio::task::spawn_blocking(|| SecretsBundle::generate(&SystemClock))
        .await
        .expect("join")
        .expect("secrets");
    let cid = bundle.cluster_id.clone();
    let secrets = bundle.to_yaml().expect("yaml");
    let tmp = tempfile::tempdir().expect("tmp");

    // Generation 1: a cluster created from a snapshot holding the namespace `gen-one`.
    let mut first = EtcdData::bootstrapped();
    assert!(first.create_namespace("gen-one"));
    let s1 = tmp.path().join("gen1.db");
    std::fs::write(&s1, first.snapshot(&cid)).expect("write");
    let state = h
        .plan_and_apply(
            TYPE_NAME,
            &Value::Null,
            &config(&model(&secrets, Some((&s1, 1)))),
        )
        .await
        .expect("create restored from generation 1");
    assert!(fleet.kube_namespaces(&cid).contains(&"gen-one".to_string()));
    // Data written since, and a snapshot of it (what etcd_backup would have kept).
    assert!(fleet.create_namespace(&cid, "keep-me"));
    let s2 = tmp.path().join("gen2.db");
    std::fs::write(&s2, fleet.etcd_snapshot(&cid).expect("snapshot")).expect("write");

    // 1. The host is lost; generation 2 restores the newer snapshot into the new VMs.
    lose_the_host(emu).await;
    let (state, warnings) = refresh_and_apply(h, &state, &model(&secrets, Some((&s2, 2)))).await;
    assert!(
        warnings.iter().all(|w| !w.contains("etcd starts empty")),
        "{warnings:?}"
    );
    let ns = fleet.kube_namespaces(&cid);
    assert!(
        ns.contains(&"keep-me".to_string()) && ns.contains(&"gen-one".to_string()),
        "{ns:?}"
    );
    assert_eq!(fleet.etcd_members(&cid).len(), 1);
    assert_eq!(fleet.kube_node_names(&cid), ["cp1", "w1"]);
    assert_eq!(state.get_attr("bootstrapped"), Some(&Value::from(true)));
    assert_eq!(emu.vms().len(), 2, "the nodes' VMs are back");

    // 2. Lost again, generation unchanged: no restore; etcd starts empty, with a warning.
    lose_the_host(emu).await;
    let (state, warnings) = refresh_and_apply(h, &state, &model(&secrets, Some((&s2, 2)))).await;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("etcd starts empty") && w.contains("etcd_restore")),
        "{warnings:?}"
    );
    let ns = fleet.kube_namespaces(&cid);
    assert!(
        !ns.iter().any(|n| n == "keep-me" || n == "gen-one"),
        "{ns:?}"
    );
    assert!(
        ns.contains(&"kube-system".to_string()),
        "a fresh cluster: {ns:?}"
    );
    assert_eq!(fleet.etcd_members(&cid).len(), 1);
    assert_eq!(state.get_attr("bootstrapped"), Some(&Value::from(true)));

    e.destroy(&state).await;
}
