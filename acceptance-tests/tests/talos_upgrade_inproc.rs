//! `waddle_talos_cluster` upgrades driven in process against the PVE and Talos emulators:
//! a Talos version change is an in-place rolling upgrade (control planes one at a time, never
//! two at once — the emulator's upgrade log has the timestamps — then workers in batches),
//! an interrupted roll records what was done and the next apply resumes from the first node
//! not done, and a Kubernetes upgrade follows `talosctl upgrade-k8s`'s order (control-plane
//! components control plane by control plane, then kubelets node by node, control planes
//! first).

#[allow(dead_code)] // not every helper is used here
mod inproc;

use inproc::talos::{cluster, config, env, TalosEnv as Env};
use waddle_acceptance::talos::UpgradeRecord;
use waddle_framework::Value;
use waddle_provider::resources::talos_cluster::upgrade::UpgradeModel;
use waddle_provider::resources::talos_cluster::{ClusterModel, TYPE_NAME};

impl Env {
    /// `cps` control planes (hosts 11..) and `workers` workers (hosts 31..).
    fn model(&self, talos: &str, k8s: &str, cps: u8, workers: u8) -> ClusterModel {
        let cps = (1..=cps).map(|i| (format!("cp{i}"), "controlplane", 10 + i));
        let workers = (1..=workers).map(|i| (format!("w{i}"), "worker", 30 + i));
        ClusterModel {
            kubernetes_version: Some(k8s.into()),
            ..cluster(
                self.net,
                format!("upg{}", self.net),
                talos,
                cps.chain(workers),
            )
        }
    }
}

/// No two control planes were ever upgrading at the same time, and every worker started
/// after the last control plane was done.
fn assert_control_planes_one_at_a_time(log: &[UpgradeRecord]) {
    let cps: Vec<&UpgradeRecord> = log.iter().filter(|r| r.control_plane).collect();
    for r in &cps {
        assert!(r.finished.is_some(), "{r:?} never finished");
    }
    for (i, a) in cps.iter().enumerate() {
        for b in &cps[i + 1..] {
            let (af, bf) = (a.finished.unwrap(), b.finished.unwrap());
            let overlap = a.started < bf && b.started < af;
            assert!(!overlap, "control planes upgraded at once: {a:?} and {b:?}");
        }
    }
    if let Some(last_cp) = cps.iter().filter_map(|r| r.finished).max() {
        for w in log.iter().filter(|r| !r.control_plane) {
            assert!(w.started >= last_cp, "worker before a control plane: {w:?}");
        }
    }
}

fn versions(e: &Env, hosts: &[u8]) -> Vec<String> {
    hosts.iter().map(|h| e.node(*h).talos_version()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_talos_version_change_rolls_an_in_place_upgrade() {
    let e = env(71).await;
    let old = e.model("v1.12.4", "1.35.0", 3, 2);
    let state = e.apply(&Value::Null, &old).await.expect("create");
    let hosts = [11, 12, 13, 31, 32];
    assert!(versions(&e, &hosts).iter().all(|v| v == "v1.12.4"));
    let boots: Vec<String> = hosts.iter().map(|h| e.node(*h).boot_id()).collect();
    let vms = state.get_attr("proxmox_vms").cloned();

    let mut new = e.model("v1.12.11", "1.35.0", 3, 2);
    new.upgrade = Some(UpgradeModel {
        parallelism: Some(2),
        ..Default::default()
    });
    let state = e.apply(&state, &new).await.expect("upgrade");
    // Every node runs the new OS, installed from the new installer, after a reboot.
    for (h, boot) in hosts.iter().zip(&boots) {
        let n = e.node(*h);
        assert_eq!(n.talos_version(), "v1.12.11", "{h}");
        assert_eq!(
            n.installed_image().as_deref(),
            Some("ghcr.io/siderolabs/installer:v1.12.11")
        );
        assert_ne!(&n.boot_id(), boot);
    }
    // In place: the same VMs.
    assert!(state
        .get_attr("proxmox_vms")
        .cloned()
        .unwrap()
        .equals(&vms.unwrap()));
    let log = e.fleet.upgrade_log();
    assert_eq!(log.len(), 5, "{log:?}");
    assert_control_planes_one_at_a_time(&log);
    // Workers in one batch of two (parallelism = 2): their upgrades overlap.
    let ws: Vec<&UpgradeRecord> = log.iter().filter(|r| !r.control_plane).collect();
    assert!(ws[0].started < ws[1].finished.unwrap() && ws[1].started < ws[0].finished.unwrap());
    // etcd kept quorum throughout.
    let cid = e.node(11).cluster_id().unwrap();
    let ml = e.fleet.membership_log(&cid);
    assert!(ml.iter().all(|m| m.has_quorum()), "{ml:?}");
    e.assert_empty_plan(&state, &new).await;
    e.destroy(&state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_roll_is_resumed_by_the_next_apply() {
    let e = env(72).await;
    let old = e.model("v1.12.4", "1.35.0", 3, 1);
    let state = e.apply(&Value::Null, &old).await.expect("create");
    let new = e.model("v1.12.11", "1.35.0", 3, 1);
    // The second control plane refuses its upgrade once.
    e.node(12).fail_next(
        "Upgrade",
        tonic::Code::Internal,
        "injected: installer crashed",
    );
    let config = config(&new);
    let p = e.h.plan(TYPE_NAME, &state, &config).await;
    assert!(!p.diagnostics.has_errors(), "{:?}", p.diagnostics);
    let r =
        e.h.apply(TYPE_NAME, &state, &config, &p.planned_state)
            .await;
    let err = format!("{:?}", r.diagnostics);
    assert!(r.diagnostics.has_errors());
    assert!(
        err.contains("nodes[\\\"cp2\\\"]") || err.contains("nodes[\"cp2\"]"),
        "{err}"
    );
    assert!(err.contains("injected: installer crashed"), "{err}");
    // cp1 is done, cp2 failed, cp3 and the worker were left alone.
    assert_eq!(
        versions(&e, &[11, 12, 13, 31]),
        ["v1.12.11", "v1.12.4", "v1.12.4", "v1.12.4"]
    );
    let state = r.state;
    assert_eq!(
        state.get_attr("talos_version").and_then(Value::as_str),
        Some("v1.12.4"),
        "the state keeps the version not every node runs"
    );
    // The plan after the interruption is not empty.
    let p = e.h.plan(TYPE_NAME, &state, &config).await;
    assert!(!p.planned_state.equals(&state));
    // The next apply resumes with cp2; cp1 is not upgraded again.
    let state = e.apply(&state, &new).await.expect("resumed upgrade");
    assert!(versions(&e, &[11, 12, 13, 31])
        .iter()
        .all(|v| v == "v1.12.11"));
    let log = e.fleet.upgrade_log();
    let order: Vec<&str> = log.iter().map(|r| r.hostname.as_str()).collect();
    assert_eq!(order, ["cp1", "cp2", "cp3", "w1"], "{log:?}");
    assert_control_planes_one_at_a_time(&log);
    e.assert_empty_plan(&state, &new).await;
    e.destroy(&state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_upgrade_follows_upgrade_k8s_order() {
    let e = env(73).await;
    let mut old = e.model("v1.12.11", "1.35.0", 3, 2);
    old.kube_proxy = Some(true);
    let state = e.apply(&Value::Null, &old).await.expect("create");
    let mut new = e.model("v1.12.11", "1.35.2", 3, 2);
    new.kube_proxy = Some(true);
    let state = e.apply(&state, &new).await.expect("kubernetes upgrade");
    let log = e.fleet.component_log();
    let of = |c: &str| {
        log.iter()
            .filter(|x| x.component == c && x.to.ends_with(":v1.35.2"))
            .collect::<Vec<_>>()
    };
    let (api, kubelet) = (of("kube-apiserver"), of("kubelet"));
    assert_eq!(api.len(), 3, "{log:?}");
    assert_eq!(kubelet.len(), 5, "{log:?}");
    assert_eq!(of("kube-proxy").len(), 3, "{log:?}");
    // Every control-plane component before any kubelet.
    let last_api = api.iter().map(|x| x.at).max().unwrap();
    assert!(kubelet.iter().all(|k| k.at > last_api), "{log:?}");
    // Control planes one at a time: distinct times.
    assert!(api.windows(2).all(|w| w[0].at < w[1].at));
    // Kubelets node by node, control planes first.
    assert!(kubelet.windows(2).all(|w| w[0].at < w[1].at));
    let roles: Vec<bool> = kubelet.iter().map(|k| k.control_plane).collect();
    assert_eq!(roles, [true, true, true, false, false], "{log:?}");
    // Talos itself was not upgraded.
    assert!(e.fleet.upgrade_log().is_empty());
    e.assert_empty_plan(&state, &new).await;
    e.destroy(&state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_cluster_upgrades_with_preserve() {
    let e = env(74).await;
    let old = e.model("v1.12.4", "1.35.0", 1, 0);
    let state = e.apply(&Value::Null, &old).await.expect("create");
    let new = e.model("v1.12.11", "1.35.0", 1, 0);
    let state = e.apply(&state, &new).await.expect("upgrade");
    let log = e.fleet.upgrade_log();
    assert_eq!(log.len(), 1);
    assert!(log[0].preserve, "{log:?}");
    assert_eq!(e.node(11).talos_version(), "v1.12.11");
    e.assert_empty_plan(&state, &new).await;
    e.destroy(&state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_roll_is_resumed_without_upgrading_a_node_twice() {
    let e = env(75).await;
    let old = e.model("v1.12.4", "1.35.0", 3, 0);
    let state = e.apply(&Value::Null, &old).await.expect("create");
    let new = e.model("v1.12.11", "1.35.0", 3, 0);
    let config = config(&new);
    let p = e.h.plan(TYPE_NAME, &state, &config).await;
    assert!(!p.diagnostics.has_errors(), "{:?}", p.diagnostics);
    let (h, st, cfg, planned) = (e.h.clone(), state.clone(), config.clone(), p.planned_state);
    let apply = tokio::spawn(async move { h.apply(TYPE_NAME, &st, &cfg, &planned).await });
    // Ctrl-C (the CLI's StopProvider) while the second control plane upgrades.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !e.fleet.upgrade_log().iter().any(|r| r.hostname == "cp2") {
        assert!(tokio::time::Instant::now() < deadline, "cp2 never upgraded");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    e.h.stop();
    let r = apply.await.expect("apply task");
    let err = format!("{:?}", r.diagnostics);
    assert!(
        r.diagnostics.has_errors() && err.contains("cancelled"),
        "{err}"
    );
    assert_eq!(
        r.state.get_attr("talos_version").and_then(Value::as_str),
        Some("v1.12.4")
    );
    // Talos finishes an accepted upgrade on its own.
    let cp2 = e.node(12);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while cp2.talos_version() != "v1.12.11" {
        assert!(tokio::time::Instant::now() < deadline, "cp2 never finished");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The next run of the provider: the plan is not empty, the apply resumes, and cp2 is
    // recognised as upgraded instead of being upgraded twice.
    let h2 = inproc::harness(&e.emu).await;
    let p = h2.plan(TYPE_NAME, &r.state, &config).await;
    assert!(!p.planned_state.equals(&r.state), "the plan is not empty");
    let state = h2
        .plan_and_apply(TYPE_NAME, &r.state, &config)
        .await
        .expect("resumed");
    let order: Vec<String> = e
        .fleet
        .upgrade_log()
        .iter()
        .map(|r| r.hostname.clone())
        .collect();
    assert_eq!(order, ["cp1", "cp2", "cp3"]);
    assert!(versions(&e, &[11, 12, 13]).iter().all(|v| v == "v1.12.11"));
    assert_control_planes_one_at_a_time(&e.fleet.upgrade_log());
    let p = h2.plan(TYPE_NAME, &state, &config).await;
    assert!(
        p.planned_state.equals(&state),
        "empty plan after the resume"
    );
    let _ = h2.plan_and_apply(TYPE_NAME, &state, &Value::Null).await;
    e.fleet.shutdown().await;
}
