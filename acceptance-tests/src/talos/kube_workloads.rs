//! Workloads on the emulated Kubernetes API ([`super::kube`]): what a node drain and the
//! removed-APIs pre-check of a Kubernetes upgrade need, answered as kube-apiserver answers.
//!
//! * Node cordon: `PATCH /api/v1/nodes/{name}` (merge, strategic-merge or JSON patch); a node
//!   with `spec.unschedulable` carries the `node.kubernetes.io/unschedulable:NoSchedule`
//!   taint, as the node lifecycle controller adds it.
//! * Pods (`/registry/pods/<ns>/<name>`): list (all namespaces or one, `fieldSelector`
//!   `spec.nodeName=` / `metadata.name=` / `metadata.namespace=`; any other field label is a
//!   `400` as on kube-apiserver), get, create (a pod without `spec.nodeName` is scheduled on a
//!   schedulable running node of the cluster, else stays `Pending`), delete.
//! * The Eviction subresource (`POST .../pods/{name}/eviction`, `policy/v1` `Eviction`),
//!   following `pkg/registry/core/pod/storage/eviction.go`: a pod that is not running (or is
//!   being deleted) is deleted without a budget check; more than one matching
//!   PodDisruptionBudget is a `500`; a budget with no disruption allowed is a `429
//!   TooManyRequests` "Cannot evict pod as it would violate the pod's disruption budget."
//!   with a `DisruptionBudget` cause. An evicted pod owned by a controller (`ReplicaSet`,
//!   `StatefulSet`, ...) is replaced as its controller would: a new pod with the same labels,
//!   scheduled on another schedulable node, or `Pending` when there is none (a cordoned
//!   cluster, or CNI `none`, whose nodes carry the `not-ready` taint).
//! * PodDisruptionBudgets (`policy/v1`): list, get, create; their status (`currentHealthy`,
//!   `desiredHealthy`, `expectedPods`, `disruptionsAllowed`) computed as the disruption
//!   controller does from the matching pods (healthy: `Running` on a node whose machine runs).
//!   `minAvailable` / `maxUnavailable` as integers or percentages (rounded up).
//! * FlowSchemas (`flowcontrol.apiserver.k8s.io`): served in `v1` and, below Kubernetes 1.32,
//!   `v1beta3` (the deprecation guide: v1beta3 is no longer served as of v1.32, v1beta2 as of
//!   v1.29). As on kube-apiserver every stored object is readable through every served
//!   version; `metadata.managedFields[].apiVersion` records the version each writer used.
//!
//! Cordons, uncordons and evictions are recorded in the fleet's drain log
//! ([`super::TalosFleet::drain_log`]) with their time, so a test can order them against the
//! upgrade log.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde_json::{json, Value};

use super::etcd_data::{namespace_key, node_key, now_rfc3339, EtcdData};
use super::{lock, Fleet, Stage};

type Resp = Response<Full<Bytes>>;

/// What a drain log entry records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainAction {
    /// `spec.unschedulable` became true.
    Cordon,
    /// `spec.unschedulable` became false (or was removed).
    Uncordon,
    /// A pod on the node was evicted (`namespace/name`).
    Evicted(String),
    /// An eviction was refused with `429` (`namespace/name`).
    Refused(String),
}

/// One entry of [`super::TalosFleet::drain_log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainEvent {
    /// The cluster (`cluster.id`).
    pub cluster_id: String,
    /// The Node name (the kubelet's hostname).
    pub node: String,
    pub action: DrainAction,
    pub at: Instant,
}

/// The key of a pod.
pub fn pod_key(ns: &str, name: &str) -> String {
    format!("/registry/pods/{ns}/{name}")
}

/// The key of a PodDisruptionBudget.
pub fn pdb_key(ns: &str, name: &str) -> String {
    format!("/registry/poddisruptionbudgets/{ns}/{name}")
}

/// The key of a FlowSchema.
pub fn flowschema_key(name: &str) -> String {
    format!("/registry/flowschemas/{name}")
}

pub(super) const FLOWCONTROL: &str = "flowcontrol.apiserver.k8s.io";

/// The `flowcontrol.apiserver.k8s.io` versions a kube-apiserver of `minor` serves, preferred
/// first (deprecation guide: v1beta2 no longer served as of v1.29, v1beta3 as of v1.32).
pub(super) fn flowcontrol_versions(minor: u32) -> Vec<&'static str> {
    let mut v = vec!["v1"];
    if minor < 32 {
        v.push("v1beta3");
    }
    if minor < 29 {
        v.push("v1beta2");
    }
    v
}

fn status(code: StatusCode, reason: &str, message: &str, details: Option<Value>) -> Resp {
    let mut v = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    if let Some(d) = details {
        v["details"] = d;
    }
    json_response(code, &v)
}

fn json_response(code: StatusCode, v: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(
        serde_json::to_vec(v).unwrap_or_default(),
    )));
    *r.status_mut() = code;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn not_found(kind: &str, name: &str) -> Resp {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{kind} \"{name}\" not found"),
        Some(json!({"name": name, "kind": kind})),
    )
}

fn bad_request(message: &str) -> Resp {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

/// One request to the workload endpoints; `None` when the path is not one of them.
pub(super) struct Call<'a> {
    pub fleet: &'a Fleet,
    pub cid: &'a str,
    pub method: &'a Method,
    pub segs: &'a [&'a str],
    pub query: Option<&'a str>,
    pub content_type: &'a str,
    pub body: &'a [u8],
    /// The Kubernetes minor the API server runs.
    pub minor: u32,
}

impl Call<'_> {
    pub(super) fn handle(&self) -> Option<Resp> {
        let m = self.method;
        Some(match self.segs {
            ["api", "v1", "nodes", name] if *m == Method::PATCH => self.patch_node(name),
            ["api", "v1", "pods"] if *m == Method::GET => self.list_pods(None),
            ["api", "v1", "namespaces", ns, "pods"] if *m == Method::GET => {
                self.list_pods(Some(ns))
            }
            ["api", "v1", "namespaces", ns, "pods"] if *m == Method::POST => self.create_pod(ns),
            ["api", "v1", "namespaces", ns, "pods", name] if *m == Method::GET => {
                match self.get(&pod_key(ns, name)) {
                    Some(p) => json_response(StatusCode::OK, &self.pod_view(p)),
                    None => not_found("pods", name),
                }
            }
            ["api", "v1", "namespaces", ns, "pods", name] if *m == Method::DELETE => {
                match self.with_data(|d| d.delete(&pod_key(ns, name))) {
                    Some(p) => json_response(StatusCode::OK, &p),
                    None => not_found("pods", name),
                }
            }
            ["api", "v1", "namespaces", ns, "pods", name, "eviction"] if *m == Method::POST => {
                self.evict(ns, name)
            }
            ["apis"] if *m == Method::GET => self.groups(),
            ["apis", "policy"] if *m == Method::GET => {
                json_response(StatusCode::OK, &group("policy", &["v1"]))
            }
            ["apis", "policy", "v1"] if *m == Method::GET => json_response(
                StatusCode::OK,
                &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "policy/v1",
                 "resources": [{"name": "poddisruptionbudgets", "singularName": "poddisruptionbudget",
                   "namespaced": true, "kind": "PodDisruptionBudget", "verbs": ["create", "get", "list"],
                   "shortNames": ["pdb"]}]}),
            ),
            ["apis", "policy", "v1", "poddisruptionbudgets"] if *m == Method::GET => {
                self.list_pdbs(None)
            }
            ["apis", "policy", "v1", "namespaces", ns, "poddisruptionbudgets"]
                if *m == Method::GET =>
            {
                self.list_pdbs(Some(ns))
            }
            ["apis", "policy", "v1", "namespaces", ns, "poddisruptionbudgets"]
                if *m == Method::POST =>
            {
                self.create_pdb(ns)
            }
            ["apis", "policy", "v1", "namespaces", ns, "poddisruptionbudgets", name]
                if *m == Method::GET =>
            {
                match self.get(&pdb_key(ns, name)) {
                    Some(p) => json_response(StatusCode::OK, &self.pdb_view(p)),
                    None => not_found("poddisruptionbudgets.policy", name),
                }
            }
            ["apis", FLOWCONTROL, rest @ ..] => return self.flowcontrol(rest),
            _ => return None,
        })
    }

    fn with_data<T>(&self, f: impl FnOnce(&mut EtcdData) -> Option<T>) -> Option<T> {
        lock(&self.fleet.clusters)
            .get_mut(self.cid)
            .and_then(|c| f(&mut c.data))
    }

    fn get(&self, key: &str) -> Option<Value> {
        lock(&self.fleet.clusters)
            .get(self.cid)
            .and_then(|c| c.data.objects.get(key).cloned())
    }

    fn list(&self, prefix: &str) -> Vec<Value> {
        lock(&self.fleet.clusters)
            .get(self.cid)
            .map(|c| c.data.list(prefix))
            .unwrap_or_default()
    }

    fn body_json(&self) -> Result<Value, String> {
        serde_json::from_slice(self.body).map_err(|e| e.to_string())
    }

    fn log(&self, node: &str, action: DrainAction) {
        lock(&self.fleet.drains).push(DrainEvent {
            cluster_id: self.cid.to_string(),
            node: node.to_string(),
            action,
            at: Instant::now(),
        });
    }

    fn groups(&self) -> Resp {
        json_response(
            StatusCode::OK,
            &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                group("policy", &["v1"]),
                group(FLOWCONTROL, &flowcontrol_versions(self.minor)),
            ]}),
        )
    }

    // -------------------------------------------------------------------------------
    // Nodes
    // -------------------------------------------------------------------------------

    fn patch_node(&self, name: &str) -> Resp {
        let Some(mut node) = self.get(&node_key(name)) else {
            return not_found("nodes", name);
        };
        let patch = match self.body_json() {
            Ok(p) => p,
            Err(e) => return bad_request(&e),
        };
        let ct = self.content_type.split(';').next().unwrap_or("").trim();
        let before = node["spec"]["unschedulable"].as_bool().unwrap_or(false);
        match ct {
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                if !patch.is_object() {
                    return bad_request("the patch is not a JSON object");
                }
                merge_patch(&mut node, &patch);
            }
            "application/json-patch+json" => {
                if let Err(e) = json_patch(&mut node, &patch) {
                    return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &e, None);
                }
            }
            other => {
                return status(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    &format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other:?})"),
                    None,
                );
            }
        }
        if node["metadata"]["name"] != json!(name) {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                &format!("Node \"{name}\" is invalid: metadata.name: Invalid value: the name cannot be changed"),
                None,
            );
        }
        let after = node["spec"]["unschedulable"].as_bool().unwrap_or(false);
        if !node["spec"]["unschedulable"].is_null() && !node["spec"]["unschedulable"].is_boolean() {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                &format!("Node \"{name}\" is invalid: spec.unschedulable: Invalid value: must be a boolean"),
                None,
            );
        }
        let key = node_key(name);
        let stored = self.with_data(|d| {
            d.update(&key, node.clone());
            d.objects.get(&key).cloned()
        });
        if before != after {
            let a = if after {
                DrainAction::Cordon
            } else {
                DrainAction::Uncordon
            };
            self.log(name, a);
        }
        json_response(StatusCode::OK, &stored.unwrap_or(node))
    }

    /// Names of the cluster's running, schedulable nodes (not cordoned; with CNI `none` no
    /// node is schedulable: they carry the `not-ready` taint).
    fn schedulable_nodes(&self) -> Vec<String> {
        let running: Vec<(String, String)> = lock(&self.fleet.nodes)
            .iter()
            .filter(|n| n.stage() == Stage::Running)
            .filter_map(|n| {
                let st = lock(&n.inner.state);
                let c = st.config.as_ref().filter(|c| c.cluster_id == self.cid)?;
                let cni = c
                    .docs
                    .iter()
                    .find(|d| d.get("kind").is_none())
                    .and_then(|d| d["cluster"]["network"]["cni"]["name"].as_str())
                    .unwrap_or("flannel")
                    .to_string();
                Some((c.hostname.clone(), cni))
            })
            .collect();
        running
            .into_iter()
            .filter(|(_, cni)| cni != "none")
            .filter_map(|(h, _)| {
                let n = self.get(&node_key(&h))?;
                let cordoned = n["spec"]["unschedulable"].as_bool().unwrap_or(false);
                let cp = n["metadata"]["labels"]
                    .get("node-role.kubernetes.io/control-plane")
                    .is_some();
                // Control planes carry `node-role.kubernetes.io/control-plane:NoSchedule`
                // (Talos's default, `allowSchedulingOnControlPlanes: false`).
                (!cordoned && !cp).then_some(h)
            })
            .collect()
    }

    fn node_running(&self, name: &str) -> bool {
        lock(&self.fleet.nodes).iter().any(|n| {
            n.stage() == Stage::Running
                && lock(&n.inner.state)
                    .config
                    .as_ref()
                    .is_some_and(|c| c.cluster_id == self.cid && c.hostname == name)
        })
    }

    // -------------------------------------------------------------------------------
    // Pods
    // -------------------------------------------------------------------------------

    /// A stored pod as read now: `Running` pods on a machine that is down are reported
    /// not ready (the node lifecycle controller marks them so).
    fn pod_view(&self, mut p: Value) -> Value {
        if let Some(node) = p["spec"]["nodeName"].as_str().map(str::to_string) {
            let ready = self.node_running(&node) && p["status"]["phase"] == "Running";
            p["status"]["conditions"] = json!([{"type": "Ready",
                "status": if ready { "True" } else { "False" }}]);
        }
        p
    }

    fn healthy(&self, p: &Value) -> bool {
        p["status"]["phase"] == "Running"
            && p["metadata"]["deletionTimestamp"].is_null()
            && p["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| self.node_running(n))
    }

    fn list_pods(&self, ns: Option<&str>) -> Resp {
        let sel = match selectors(self.query) {
            Ok(s) => s,
            Err(e) => return bad_request(&e),
        };
        let prefix = match ns {
            Some(ns) => format!("/registry/pods/{ns}/"),
            None => "/registry/pods/".into(),
        };
        let items: Vec<Value> = self
            .list(&prefix)
            .into_iter()
            .filter(|p| sel.matches(p))
            .map(|p| self.pod_view(p))
            .collect();
        self.list_response("PodList", "v1", items)
    }

    fn list_response(&self, kind: &str, api_version: &str, items: Vec<Value>) -> Resp {
        let rv = lock(&self.fleet.clusters)
            .get(self.cid)
            .map_or(0, |c| c.data.revision);
        json_response(
            StatusCode::OK,
            &json!({"kind": kind, "apiVersion": api_version,
                    "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
        )
    }

    fn create_pod(&self, ns: &str) -> Resp {
        let mut pod = match self.body_json() {
            Ok(p) => p,
            Err(e) => return bad_request(&e),
        };
        if self.get(&namespace_key(ns)).is_none() {
            return not_found("namespaces", ns);
        }
        let Some(name) = pod["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string)
        else {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "Pod \"\" is invalid: metadata.name: Required value: name or generateName is required",
                None,
            );
        };
        if self.get(&pod_key(ns, &name)).is_some() {
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                &format!("pods \"{name}\" already exists"),
                Some(json!({"name": name, "kind": "pods"})),
            );
        }
        pod["kind"] = json!("Pod");
        pod["apiVersion"] = json!("v1");
        pod["metadata"]["namespace"] = json!(ns);
        let node = pod["spec"]["nodeName"]
            .as_str()
            .map(str::to_string)
            .or_else(|| self.schedule());
        match node {
            Some(n) => {
                pod["spec"]["nodeName"] = json!(n);
                pod["status"] = json!({"phase": "Running", "startTime": now_rfc3339()});
            }
            None => pod["status"] = json!({"phase": "Pending"}),
        }
        let key = pod_key(ns, &name);
        let stored = self.with_data(|d| {
            d.update(&key, pod.clone());
            d.objects.get(&key).cloned()
        });
        json_response(StatusCode::CREATED, &stored.unwrap_or(pod))
    }

    /// The schedulable node with the fewest pods.
    fn schedule(&self) -> Option<String> {
        let pods = self.list("/registry/pods/");
        self.schedulable_nodes().into_iter().min_by_key(|n| {
            (
                pods.iter()
                    .filter(|p| p["spec"]["nodeName"].as_str() == Some(n))
                    .count(),
                n.clone(),
            )
        })
    }

    fn evict(&self, ns: &str, name: &str) -> Resp {
        let ev = match self.body_json() {
            Ok(p) => p,
            Err(e) => return bad_request(&e),
        };
        if ev["kind"] != "Eviction" || ev["metadata"]["name"] != json!(name) {
            return bad_request(&format!(
                "name in URL does not match name in Eviction object (or the body is no Eviction): {name}"
            ));
        }
        let Some(pod) = self.get(&pod_key(ns, name)) else {
            return not_found("pods", name);
        };
        let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
        // eviction.go canIgnorePDB: terminal, pending or terminating pods go without a check.
        let phase = pod["status"]["phase"].as_str().unwrap_or("");
        let ignore_pdb = matches!(phase, "Succeeded" | "Failed" | "Pending")
            || !pod["metadata"]["deletionTimestamp"].is_null();
        if !ignore_pdb {
            let pdbs: Vec<Value> = self
                .list(&format!("/registry/poddisruptionbudgets/{ns}/"))
                .into_iter()
                .filter(|b| selects(&b["spec"]["selector"], &pod))
                .collect();
            if pdbs.len() > 1 {
                return status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                    None,
                );
            }
            if let Some(b) = pdbs.first() {
                let st = self.pdb_status(b);
                if st.allowed <= 0 {
                    self.log(&node, DrainAction::Refused(format!("{ns}/{name}")));
                    let bname = b["metadata"]["name"].as_str().unwrap_or("");
                    return status(
                        StatusCode::TOO_MANY_REQUESTS,
                        "TooManyRequests",
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                        Some(json!({"causes": [{"reason": "DisruptionBudget",
                            "message": format!("The disruption budget {bname} needs {} healthy pods and has {} currently",
                                st.desired, st.healthy)}]})),
                    );
                }
            }
        }
        if self.with_data(|d| d.delete(&pod_key(ns, name))).is_none() {
            return not_found("pods", name);
        }
        self.log(&node, DrainAction::Evicted(format!("{ns}/{name}")));
        self.replace(ns, &pod);
        json_response(
            StatusCode::CREATED,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        )
    }

    /// The replacement a controller creates for an evicted pod it owns.
    fn replace(&self, ns: &str, old: &Value) {
        let owner = old["metadata"]["ownerReferences"].as_array().and_then(|o| {
            o.iter()
                .find(|r| r["controller"] == true && r["kind"] != "DaemonSet")
                .cloned()
        });
        let Some(owner) = owner else { return };
        let base = owner["name"].as_str().unwrap_or("pod");
        let rev = lock(&self.fleet.clusters)
            .get(self.cid)
            .map_or(0, |c| c.data.revision);
        let name = format!("{base}-{:05x}", super::splitmix(rev) & 0xfffff);
        let mut spec = old["spec"].clone();
        if let Some(s) = spec.as_object_mut() {
            s.remove("nodeName");
        }
        let mut pod = json!({
            "metadata": {"name": name, "labels": old["metadata"]["labels"].clone(),
                          "ownerReferences": [owner]},
            "spec": spec,
        });
        pod["kind"] = json!("Pod");
        pod["apiVersion"] = json!("v1");
        pod["metadata"]["namespace"] = json!(ns);
        match self.schedule() {
            Some(n) => {
                pod["spec"]["nodeName"] = json!(n);
                pod["status"] = json!({"phase": "Running", "startTime": now_rfc3339()});
            }
            None => pod["status"] = json!({"phase": "Pending"}),
        }
        let key = pod_key(ns, &name);
        self.with_data(|d| {
            d.update(&key, pod);
            Some(())
        });
    }

    // -------------------------------------------------------------------------------
    // PodDisruptionBudgets
    // -------------------------------------------------------------------------------

    fn pdb_status(&self, b: &Value) -> PdbStatus {
        let ns = b["metadata"]["namespace"].as_str().unwrap_or("");
        let pods: Vec<Value> = self
            .list(&format!("/registry/pods/{ns}/"))
            .into_iter()
            .filter(|p| selects(&b["spec"]["selector"], p))
            .collect();
        let expected = pods.len() as i64;
        let healthy = pods.iter().filter(|p| self.healthy(p)).count() as i64;
        let desired = if let Some(v) = b["spec"].get("minAvailable") {
            scaled(v, expected)
        } else if let Some(v) = b["spec"].get("maxUnavailable") {
            (expected - scaled(v, expected)).max(0)
        } else {
            expected
        };
        PdbStatus {
            expected,
            healthy,
            desired,
            allowed: (healthy - desired).max(0),
        }
    }

    fn pdb_view(&self, mut b: Value) -> Value {
        let s = self.pdb_status(&b);
        b["status"] = json!({
            "currentHealthy": s.healthy, "desiredHealthy": s.desired,
            "expectedPods": s.expected, "disruptionsAllowed": s.allowed,
            "observedGeneration": b["metadata"]["generation"].clone(),
        });
        b
    }

    fn list_pdbs(&self, ns: Option<&str>) -> Resp {
        let prefix = match ns {
            Some(ns) => format!("/registry/poddisruptionbudgets/{ns}/"),
            None => "/registry/poddisruptionbudgets/".into(),
        };
        let items = self
            .list(&prefix)
            .into_iter()
            .map(|b| self.pdb_view(b))
            .collect();
        self.list_response("PodDisruptionBudgetList", "policy/v1", items)
    }

    fn create_pdb(&self, ns: &str) -> Resp {
        let mut b = match self.body_json() {
            Ok(p) => p,
            Err(e) => return bad_request(&e),
        };
        if self.get(&namespace_key(ns)).is_none() {
            return not_found("namespaces", ns);
        }
        let Some(name) = b["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string)
        else {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "PodDisruptionBudget.policy \"\" is invalid: metadata.name: Required value: name or generateName is required",
                None,
            );
        };
        let spec = &b["spec"];
        if spec.get("minAvailable").is_some() && spec.get("maxUnavailable").is_some() {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                &format!("PodDisruptionBudget.policy \"{name}\" is invalid: spec: Invalid value: minAvailable and maxUnavailable cannot be both set"),
                None,
            );
        }
        if self.get(&pdb_key(ns, &name)).is_some() {
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                &format!("poddisruptionbudgets.policy \"{name}\" already exists"),
                Some(json!({"name": name, "group": "policy", "kind": "poddisruptionbudgets"})),
            );
        }
        b["kind"] = json!("PodDisruptionBudget");
        b["apiVersion"] = json!("policy/v1");
        b["metadata"]["namespace"] = json!(ns);
        b["metadata"]["generation"] = json!(1);
        let key = pdb_key(ns, &name);
        let stored = self.with_data(|d| {
            d.update(&key, b.clone());
            d.objects.get(&key).cloned()
        });
        json_response(StatusCode::CREATED, &self.pdb_view(stored.unwrap_or(b)))
    }

    // -------------------------------------------------------------------------------
    // flowcontrol.apiserver.k8s.io
    // -------------------------------------------------------------------------------

    fn flowcontrol(&self, rest: &[&str]) -> Option<Resp> {
        let served = flowcontrol_versions(self.minor);
        let m = self.method;
        if rest.is_empty() {
            return (*m == Method::GET)
                .then(|| json_response(StatusCode::OK, &group(FLOWCONTROL, &served)));
        }
        let v = rest[0];
        if !served.contains(&v) {
            // Not served: kube-apiserver has no such path.
            return None;
        }
        let gv = format!("{FLOWCONTROL}/{v}");
        Some(match &rest[1..] {
            [] if *m == Method::GET => json_response(
                StatusCode::OK,
                &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                  "resources": [{"name": "flowschemas", "singularName": "flowschema",
                    "namespaced": false, "kind": "FlowSchema", "verbs": ["create", "get", "list"]}]}),
            ),
            ["flowschemas"] if *m == Method::GET => {
                let items = self
                    .list("/registry/flowschemas/")
                    .into_iter()
                    .map(|mut o| {
                        o["apiVersion"] = json!(gv);
                        o
                    })
                    .collect();
                self.list_response("FlowSchemaList", &gv, items)
            }
            ["flowschemas", name] if *m == Method::GET => match self.get(&flowschema_key(name)) {
                Some(mut o) => {
                    o["apiVersion"] = json!(gv);
                    json_response(StatusCode::OK, &o)
                }
                None => not_found(&format!("flowschemas.{FLOWCONTROL}"), name),
            },
            ["flowschemas"] if *m == Method::POST => {
                let mut o = match self.body_json() {
                    Ok(p) => p,
                    Err(e) => return Some(bad_request(&e)),
                };
                let Some(name) = o["metadata"]["name"]
                    .as_str()
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                else {
                    return Some(status(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        "FlowSchema.flowcontrol.apiserver.k8s.io \"\" is invalid: metadata.name: Required value: name or generateName is required",
                        None,
                    ));
                };
                if self.get(&flowschema_key(&name)).is_some() {
                    return Some(status(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        &format!("flowschemas.{FLOWCONTROL} \"{name}\" already exists"),
                        None,
                    ));
                }
                o["kind"] = json!("FlowSchema");
                o["apiVersion"] = json!(gv);
                o["metadata"]["managedFields"] = json!([{
                    "manager": "kubectl-create", "operation": "Update", "apiVersion": gv,
                    "time": now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}},
                }]);
                let key = flowschema_key(&name);
                self.with_data(|d| {
                    d.update(&key, o.clone());
                    Some(())
                });
                json_response(StatusCode::CREATED, &o)
            }
            _ => return None,
        })
    }
}

struct PdbStatus {
    expected: i64,
    healthy: i64,
    desired: i64,
    allowed: i64,
}

/// An integer, or a percentage of `of` rounded up (intstr, as the disruption controller).
fn scaled(v: &Value, of: i64) -> i64 {
    if let Some(i) = v.as_i64() {
        return i;
    }
    v.as_str()
        .and_then(|s| s.strip_suffix('%'))
        .and_then(|p| p.parse::<i64>().ok())
        .map_or(0, |p| (p * of + 99) / 100)
}

fn group(name: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": vs,
           "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

/// Whether a `matchLabels` selector selects `pod` (an empty selector selects every pod of
/// the namespace, as in policy/v1).
fn selects(selector: &Value, pod: &Value) -> bool {
    let labels = &pod["metadata"]["labels"];
    selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| &labels[k] == v))
}

/// RFC 7386 merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Some(t) = target.as_object_mut() {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// RFC 6902 JSON patch: `add`, `replace`, `remove`, `test` on object members.
fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let ops = patch
        .as_array()
        .ok_or("a JSON patch is a list of operations")?;
    for op in ops {
        let path = op["path"].as_str().ok_or("an operation without path")?;
        let (parent, last) = path
            .rsplit_once('/')
            .ok_or_else(|| format!("invalid path {path:?}"))?;
        let last = last.replace("~1", "/").replace("~0", "~");
        let kind = op["op"].as_str().unwrap_or("");
        if kind == "test" {
            if target.pointer(path) != Some(&op["value"]) {
                return Err(format!("testing value {path} failed"));
            }
            continue;
        }
        let obj = target
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .ok_or_else(|| format!("doc is missing path: {parent:?}"))?;
        match kind {
            "add" => {
                obj.insert(last, op["value"].clone());
            }
            "replace" => {
                if !obj.contains_key(&last) {
                    return Err(format!(
                        "replace operation does not apply: doc is missing key: {path}"
                    ));
                }
                obj.insert(last, op["value"].clone());
            }
            "remove" => {
                obj.remove(&last).ok_or_else(|| {
                    format!("remove operation does not apply: doc is missing path: {path}")
                })?;
            }
            other => return Err(format!("unsupported JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

/// The field selector of a pod list.
#[derive(Default)]
struct Selectors {
    fields: Vec<(String, String)>,
}

impl Selectors {
    fn matches(&self, p: &Value) -> bool {
        self.fields.iter().all(|(k, v)| {
            let got = match k.as_str() {
                "spec.nodeName" => p["spec"]["nodeName"].as_str().unwrap_or(""),
                "metadata.name" => p["metadata"]["name"].as_str().unwrap_or(""),
                "metadata.namespace" => p["metadata"]["namespace"].as_str().unwrap_or(""),
                _ => "",
            };
            got == v
        })
    }
}

fn selectors(query: Option<&str>) -> Result<Selectors, String> {
    let mut s = Selectors::default();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k != "fieldSelector" {
            continue;
        }
        for term in v.split(',').filter(|t| !t.is_empty()) {
            let (f, val) = term
                .split_once("==")
                .or_else(|| term.split_once('='))
                .ok_or_else(|| format!("invalid selector: '{term}'; can't understand '{term}'"))?;
            if !matches!(f, "spec.nodeName" | "metadata.name" | "metadata.namespace") {
                // kube-apiserver: only the pod's registered field labels are selectable.
                return Err(format!(
                    "\"{f}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\", \"spec.nodeName\" (and others not emulated)"
                ));
            }
            s.fields.push((f.to_string(), val.to_string()));
        }
    }
    Ok(s)
}

impl super::TalosFleet {
    /// Every cordon, uncordon and eviction (also refused ones) the cluster API servers saw,
    /// in order.
    pub fn drain_log(&self) -> Vec<DrainEvent> {
        lock(&self.inner.drains).clone()
    }

    /// Stores a Kubernetes object in the cluster's etcd under `key` as a client's create
    /// would (tests seed pods, budgets and FlowSchemas with it); false when the cluster is not
    /// bootstrapped. A pod without `spec.nodeName` is stored as given (`Pending`).
    pub fn kube_put(&self, cluster_id: &str, key: &str, obj: Value) -> bool {
        lock(&self.inner.clusters)
            .get_mut(cluster_id)
            .filter(|c| c.bootstrapped)
            .map(|c| c.data.update(key, obj))
            .is_some()
    }

    /// The stored object under `key`, if any.
    pub fn kube_get(&self, cluster_id: &str, key: &str) -> Option<Value> {
        lock(&self.inner.clusters)
            .get(cluster_id)
            .and_then(|c| c.data.objects.get(key).cloned())
    }

    /// Every stored object under `prefix`.
    pub fn kube_list(&self, cluster_id: &str, prefix: &str) -> Vec<Value> {
        lock(&self.inner.clusters)
            .get(cluster_id)
            .map(|c| c.data.list(prefix))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_and_selectors() {
        let mut n = json!({"metadata": {"name": "w1"}, "spec": {}});
        merge_patch(&mut n, &json!({"spec": {"unschedulable": true}}));
        assert_eq!(n["spec"]["unschedulable"], true);
        merge_patch(&mut n, &json!({"spec": {"unschedulable": null}}));
        assert!(n["spec"].get("unschedulable").is_none());
        json_patch(
            &mut n,
            &json!([{"op": "add", "path": "/spec/unschedulable", "value": true}]),
        )
        .expect("add");
        assert_eq!(n["spec"]["unschedulable"], true);
        assert!(json_patch(
            &mut n,
            &json!([{"op": "replace", "path": "/spec/x", "value": 1}])
        )
        .is_err());
        let s = selectors(Some("fieldSelector=spec.nodeName%3Dw1")).expect("selector");
        assert!(s.matches(&json!({"spec": {"nodeName": "w1"}})));
        assert!(!s.matches(&json!({"spec": {"nodeName": "w2"}})));
        assert!(selectors(Some("fieldSelector=status.podIP%3D1")).is_err());
        assert_eq!(scaled(&json!("50%"), 3), 2);
        assert_eq!(scaled(&json!(1), 3), 1);
        assert_eq!(flowcontrol_versions(31), ["v1", "v1beta3"]);
        assert_eq!(flowcontrol_versions(32), ["v1"]);
    }
}
