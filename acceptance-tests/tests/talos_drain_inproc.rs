//! Day-2 Kubernetes checks of `waddle_talos_cluster` upgrades, driven in process against the
//! PVE and Talos emulators (the emulated API server of `talos::kube_workloads`):
//! `upgrade.drain` cordons each worker and evicts its pods before its upgrade and uncordons
//! it after (the emulator's drain log, ordered against its upgrade log, proves it), a
//! PodDisruptionBudget that forbids an eviction stops the roll with the budget named, and a
//! Kubernetes minor upgrade is refused while objects are written through an API version the
//! target minor removes.

#[allow(dead_code)] // not every helper is used here
mod inproc;

use inproc::talos::{cluster, env, TalosEnv as Env};
use serde_json::json;
use waddle_acceptance::talos::etcd_data::node_key;
use waddle_acceptance::talos::kube_workloads::{flowschema_key, pdb_key, pod_key};
use waddle_acceptance::talos::DrainAction;
use waddle_framework::Value;
use waddle_provider::resources::talos_cluster::upgrade::UpgradeModel;
use waddle_provider::resources::talos_cluster::ClusterModel;

impl Env {
    /// One control plane (host 11) and `workers` workers (hosts 31..), with a CNI.
    fn model(&self, talos: &str, k8s: &str, workers: u8) -> ClusterModel {
        let cp = std::iter::once(("cp1".to_string(), "controlplane", 11));
        let workers = (1..=workers).map(|i| (format!("w{i}"), "worker", 30 + i));
        ClusterModel {
            kubernetes_version: Some(k8s.into()),
            // A CNI: with `none` every node keeps the `not-ready` taint and an evicted pod's
            // replacement could not be scheduled anywhere.
            cni: Some("flannel".into()),
            ..cluster(
                self.net,
                format!("drain{}", self.net),
                talos,
                cp.chain(workers),
            )
        }
    }

    fn cid(&self) -> String {
        self.node(11).cluster_id().expect("cluster id")
    }

    /// A pod of ReplicaSet `rs` (label `app=<app>`) bound to `node`.
    fn pod(&self, name: &str, app: &str, node: &str, owner: (&str, &str)) {
        let ok = self.fleet.kube_put(
            &self.cid(),
            &pod_key("default", name),
            json!({"kind": "Pod", "apiVersion": "v1",
                   "metadata": {"name": name, "namespace": "default", "labels": {"app": app},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner.0,
                       "name": owner.1, "uid": "0", "controller": true}]},
                   "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
                   "status": {"phase": "Running"}}),
        );
        assert!(ok, "the cluster is bootstrapped");
    }

    fn pdb(&self, name: &str, app: &str, min_available: i64) {
        let ok = self.fleet.kube_put(
            &self.cid(),
            &pdb_key("default", name),
            json!({"kind": "PodDisruptionBudget", "apiVersion": "policy/v1",
                   "metadata": {"name": name, "namespace": "default", "generation": 1},
                   "spec": {"minAvailable": min_available,
                            "selector": {"matchLabels": {"app": app}}}}),
        );
        assert!(ok);
    }

    fn pods_on(&self, node: &str) -> Vec<String> {
        self.fleet
            .kube_list(&self.cid(), "/registry/pods/")
            .into_iter()
            .filter(|p| p["spec"]["nodeName"] == node)
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    }

    fn cordoned(&self, node: &str) -> bool {
        self.fleet
            .kube_get(&self.cid(), &node_key(node))
            .is_some_and(|n| n["spec"]["unschedulable"] == true)
    }
}

fn drain_on() -> Option<UpgradeModel> {
    Some(UpgradeModel {
        drain: Some(true),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_cordons_and_evicts_before_each_worker_upgrade_and_uncordons_after() {
    let e = env(81).await;
    let state = e
        .apply(&Value::Null, &e.model("v1.12.4", "1.35.0", 2))
        .await
        .expect("create");
    // Two replicas of `web` (one per worker) under a budget of one, and a DaemonSet pod.
    e.pod("web-a", "web", "w1", ("ReplicaSet", "web-rs"));
    e.pod("web-b", "web", "w2", ("ReplicaSet", "web-rs"));
    e.pdb("web", "web", 1);
    e.pod("agent-w1", "agent", "w1", ("DaemonSet", "agent"));

    let mut new = e.model("v1.12.11", "1.35.0", 2);
    new.upgrade = drain_on();
    let state = e.apply(&state, &new).await.expect("upgrade with drain");

    let ups = e.fleet.upgrade_log();
    let drains: Vec<_> = e
        .fleet
        .drain_log()
        .into_iter()
        .filter(|d| d.cluster_id == e.cid())
        .collect();
    assert_eq!(ups.len(), 3, "{ups:?}");
    // The control plane is not drained.
    assert!(drains.iter().all(|d| d.node != "cp1"), "{drains:?}");
    for w in ["w1", "w2"] {
        let up = ups.iter().find(|u| u.hostname == w).expect("upgraded");
        let of = |a: fn(&DrainAction) -> bool| -> Vec<std::time::Instant> {
            drains
                .iter()
                .filter(|d| d.node == w && a(&d.action))
                .map(|d| d.at)
                .collect()
        };
        let cordon = of(|a| *a == DrainAction::Cordon);
        let uncordon = of(|a| *a == DrainAction::Uncordon);
        let evicted = of(|a| matches!(a, DrainAction::Evicted(_)));
        assert_eq!((cordon.len(), uncordon.len()), (1, 1), "{w}: {drains:?}");
        assert!(!evicted.is_empty(), "{w}: {drains:?}");
        // Cordoned, then evicted, then upgraded, then uncordoned once back.
        assert!(cordon[0] < evicted[0], "{w}: {drains:?}");
        assert!(
            evicted.iter().all(|t| *t < up.started),
            "{w}: {drains:?} {up:?}"
        );
        let finished = up.finished.expect("finished");
        assert!(uncordon[0] >= finished, "{w}: {drains:?} {up:?}");
        assert!(!e.cordoned(w), "{w} uncordoned");
    }
    // The workers were drained one after the other: w2 was cordoned after w1 came back.
    let at = |node: &str, a: DrainAction| {
        drains
            .iter()
            .find(|d| d.node == node && d.action == a)
            .map(|d| d.at)
            .expect("logged")
    };
    assert!(at("w2", DrainAction::Cordon) > at("w1", DrainAction::Uncordon));
    // The ReplicaSet pods were evicted (and replaced elsewhere); the DaemonSet pod stayed.
    assert!(drains
        .iter()
        .any(|d| d.action == DrainAction::Evicted("default/web-a".into())));
    assert!(e.pods_on("w1").contains(&"agent-w1".to_string()));
    let web: Vec<String> = ["w1", "w2"]
        .iter()
        .flat_map(|n| e.pods_on(n))
        .filter(|p| p.starts_with("web-rs-"))
        .collect();
    assert_eq!(web.len(), 2, "two replacements running: {web:?}");
    let _ = state;
    e.destroy(&state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_forbids_the_eviction_stops_the_roll_and_uncordons() {
    let e = env(82).await;
    let state = e
        .apply(&Value::Null, &e.model("v1.12.4", "1.35.0", 1))
        .await
        .expect("create");
    // One replica under a budget of one: no disruption is ever allowed (as on Kubernetes).
    e.pod("db-0", "db", "w1", ("StatefulSet", "db"));
    e.pdb("db", "db", 1);

    let mut new = e.model("v1.12.11", "1.35.0", 1);
    new.upgrade = drain_on();
    new.timeouts.as_mut().unwrap().update = Some("25s".into());
    let err = e
        .apply(&state, &new)
        .await
        .expect_err("the drain cannot finish");
    assert!(
        err.contains("the drain of nodes[\\\"w1\\\"] failed"),
        "{err}"
    );
    assert!(
        err.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{err}"
    );
    assert!(
        err.contains("The disruption budget db needs 1 healthy pods and has 1 currently"),
        "{err}"
    );
    assert!(err.contains("uncordoned again and not upgraded"), "{err}");
    // The control plane was upgraded, the worker was not, and is schedulable again.
    assert_eq!(e.node(11).talos_version(), "v1.12.11");
    assert_eq!(e.node(31).talos_version(), "v1.12.4");
    assert!(!e.cordoned("w1"));
    assert!(e.pods_on("w1").contains(&"db-0".to_string()));
    let refused = e
        .fleet
        .drain_log()
        .into_iter()
        .filter(|d| d.action == DrainAction::Refused("default/db-0".into()))
        .count();
    assert!(refused >= 2, "asked again while refused: {refused}");
    e.destroy(&state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_minor_upgrade_is_refused_while_a_removed_api_is_in_use() {
    let e = env(83).await;
    let old = e.model("v1.12.11", "1.31.4", 0);
    let state = e.apply(&Value::Null, &old).await.expect("create");
    let cid = e.cid();
    // A FlowSchema written through flowcontrol.apiserver.k8s.io/v1beta3 (gone in 1.32).
    let fs = |gv: &str| {
        json!({"kind": "FlowSchema", "apiVersion": gv,
               "metadata": {"name": "legacy-fs", "managedFields": [{
                   "manager": "helm", "operation": "Update", "apiVersion": gv,
                   "fieldsType": "FieldsV1", "fieldsV1": {}}]},
               "spec": {"matchingPrecedence": 500, "priorityLevelConfiguration": {"name": "workload-low"}}})
    };
    assert!(e.fleet.kube_put(
        &cid,
        &flowschema_key("legacy-fs"),
        fs("flowcontrol.apiserver.k8s.io/v1beta3")
    ));
    let new = e.model("v1.12.11", "1.32.0", 0);
    let err = e.apply(&state, &new).await.expect_err("refused");
    assert!(
        err.contains("flowschemas.flowcontrol.apiserver.k8s.io/v1beta3 legacy-fs (removed in Kubernetes 1.32)"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    // The built-in FlowSchemas (written in v1) are not named.
    assert!(!err.contains("catch-all"), "{err}");
    assert!(e
        .fleet
        .component_log()
        .iter()
        .all(|c| !c.to.ends_with(":v1.32.0")));
    // Once its manifest is moved to v1 (written again through v1), the upgrade goes.
    assert!(e.fleet.kube_put(
        &cid,
        &flowschema_key("legacy-fs"),
        fs("flowcontrol.apiserver.k8s.io/v1")
    ));
    let state = e.apply(&state, &new).await.expect("upgrade");
    assert!(e
        .fleet
        .component_log()
        .iter()
        .any(|c| c.component == "kube-apiserver" && c.to.ends_with(":v1.32.0")));
    e.destroy(&state).await;
}
