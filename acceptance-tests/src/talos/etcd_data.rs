//! The data of an emulated cluster's etcd: the Kubernetes objects the emulated API server
//! keeps (namespaces, nodes) under their `/registry/...` keys, with etcd's revision counter,
//! and its snapshot format.
//!
//! A snapshot has the shape of a real one (etcd's `Maintenance.Snapshot`, which Talos's
//! `EtcdSnapshot` streams): a database padded to whole 512-byte pages followed by the
//! SHA-256 of those pages. The database is JSON here (`format` names it) instead of bbolt;
//! a restore checks the hash as `etcdutl snapshot restore` does and refuses what is not a
//! snapshot.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// `format` of the emulated database.
pub const FORMAT: &str = "waddle-emulated-etcd/1";
const PAGE: usize = 512;
const HASH: usize = 32;

/// The namespaces a new Kubernetes cluster has.
const INITIAL_NAMESPACES: [&str; 4] = ["default", "kube-node-lease", "kube-public", "kube-system"];

/// The keyspace of one cluster's etcd.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EtcdData {
    /// etcd's revision: bumped by every change.
    pub revision: u64,
    /// Key -> stored object (with `metadata.resourceVersion` = its modification revision).
    pub objects: BTreeMap<String, Value>,
}

/// The key of a namespace.
pub fn namespace_key(name: &str) -> String {
    format!("/registry/namespaces/{name}")
}

/// The key of a Node (`minions`, as the API server names them in etcd).
pub fn node_key(name: &str) -> String {
    format!("/registry/minions/{name}")
}

pub(super) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

impl EtcdData {
    /// What a freshly bootstrapped cluster holds: the initial namespaces.
    pub fn bootstrapped() -> Self {
        let mut d = EtcdData::default();
        for ns in INITIAL_NAMESPACES {
            d.create_namespace(ns);
        }
        // The API server's own suggested FlowSchemas (two of them), written in v1 by its
        // configuration producer.
        for (name, precedence) in [("exempt", 1), ("catch-all", 10000)] {
            d.put(
                super::kube_workloads::flowschema_key(name),
                json!({
                    "kind": "FlowSchema",
                    "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
                    "metadata": {"name": name, "managedFields": [{
                        "manager": "api-priority-and-fairness-config-producer-v1",
                        "operation": "Update",
                        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
                        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}},
                    }]},
                    "spec": {"matchingPrecedence": precedence,
                             "priorityLevelConfiguration": {"name": name}},
                }),
            );
        }
        d
    }

    fn put(&mut self, key: String, mut obj: Value) {
        self.revision += 1;
        let uid = format!(
            "{:08x}-0000-4000-8000-{:012x}",
            self.revision,
            self.objects.len()
        );
        if let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            md.insert("resourceVersion".into(), json!(self.revision.to_string()));
            md.entry("uid").or_insert(json!(uid));
            md.entry("creationTimestamp")
                .or_insert(json!(now_rfc3339()));
        }
        self.objects.insert(key, obj);
    }

    /// Stores `obj` under `key` (created or replaced; its `uid` and `creationTimestamp`
    /// kept), bumping the revision.
    pub fn update(&mut self, key: &str, obj: Value) {
        self.put(key.to_string(), obj);
    }

    /// Creates a namespace; false when it exists.
    pub fn create_namespace(&mut self, name: &str) -> bool {
        let key = namespace_key(name);
        if self.objects.contains_key(&key) {
            return false;
        }
        self.put(
            key,
            json!({
                "kind": "Namespace",
                "apiVersion": "v1",
                "metadata": {
                    "name": name,
                    "labels": {"kubernetes.io/metadata.name": name},
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }),
        );
        true
    }

    /// Registers a Node as its kubelet does at start (nothing when it exists).
    pub fn register_node(&mut self, hostname: &str, control_plane: bool, kubelet_version: &str) {
        let key = node_key(hostname);
        if self.objects.contains_key(&key) {
            return;
        }
        let mut labels = json!({
            "beta.kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": hostname,
            "kubernetes.io/os": "linux",
        });
        if control_plane {
            labels["node-role.kubernetes.io/control-plane"] = json!("");
        }
        self.put(
            key,
            json!({
                "kind": "Node",
                "apiVersion": "v1",
                "metadata": {"name": hostname, "labels": labels},
                "spec": {},
                "status": {"nodeInfo": {
                    "kubeletVersion": kubelet_version,
                    "osImage": "Talos (emulated)",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "containerRuntimeVersion": "containerd://2.1.5",
                }},
            }),
        );
    }

    /// Deletes a key; the deleted object, if it existed.
    pub fn delete(&mut self, key: &str) -> Option<Value> {
        let v = self.objects.remove(key)?;
        self.revision += 1;
        Some(v)
    }

    /// Objects whose key starts with `prefix`, in key order.
    pub fn list(&self, prefix: &str) -> Vec<Value> {
        self.objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The snapshot bytes: database pages, then their SHA-256.
    pub fn snapshot(&self, cluster_id: &str) -> Vec<u8> {
        let doc = json!({
            "format": FORMAT,
            "cluster_id": cluster_id,
            "revision": self.revision,
            "kv": self.objects,
        });
        let mut db = serde_json::to_vec(&doc).unwrap_or_default();
        let padded = db.len().div_ceil(PAGE).max(1) * PAGE;
        db.resize(padded, 0);
        let h = Sha256::digest(&db);
        db.extend_from_slice(&h);
        db
    }

    /// Restores from snapshot bytes, as `etcdutl snapshot restore` would: the size must be
    /// pages + hash, the hash must match (unless `skip_hash_check`), the database must be one.
    pub fn restore(bytes: &[u8], skip_hash_check: bool) -> Result<EtcdData, String> {
        let has_hash = bytes.len() >= HASH && (bytes.len() - HASH).is_multiple_of(PAGE);
        if !has_hash && !skip_hash_check {
            return Err("snapshot file integrity check failed: snapshot missing hash but --skip-hash-check=false".into());
        }
        let (db, hash) = if has_hash {
            bytes.split_at(bytes.len() - HASH)
        } else {
            (bytes, &[][..])
        };
        if !skip_hash_check && Sha256::digest(db)[..] != *hash {
            return Err(format!(
                "snapshot file integrity check failed: expected sha256 {}, got {}",
                hex::encode(hash),
                hex::encode(Sha256::digest(db))
            ));
        }
        let end = db.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        let doc: Value = serde_json::from_slice(&db[..end])
            .map_err(|e| format!("error verifying snapshot: invalid database: {e}"))?;
        if doc["format"] != FORMAT {
            return Err("error verifying snapshot: invalid database".into());
        }
        let objects: BTreeMap<String, Value> = serde_json::from_value(doc["kv"].clone())
            .map_err(|e| format!("error verifying snapshot: invalid database: {e}"))?;
        Ok(EtcdData {
            revision: doc["revision"].as_u64().unwrap_or(0),
            objects,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Where the data lives: on the members' disks
// ---------------------------------------------------------------------------------------

impl super::TalosNode {
    /// Whether this machine's disk holds etcd data of `cluster_id` (a configured control
    /// plane of that cluster; a reset or a deleted VM has no configuration left).
    fn holds_etcd_of(&self, cluster_id: &str) -> bool {
        super::lock(&self.inner.state)
            .config
            .as_ref()
            .is_some_and(|c| c.control_plane && c.cluster_id == cluster_id)
    }

    /// The machine's disk is gone (its VM was deleted): no configuration, no etcd data.
    pub(crate) fn destroy_disk(&self) {
        let mut st = super::lock(&self.inner.state);
        st.config = None;
        st.recovery_snapshot = None;
        st.etcd_failure = None;
    }

    /// The Kubernetes version its kubelet runs (the tag of `machine.kubelet.image`).
    fn kubelet_version(cfg: &super::NodeConfig) -> String {
        cfg.docs
            .iter()
            .find(|d| d.get("kind").is_none())
            .and_then(|d| d["machine"]["kubelet"]["image"].as_str())
            .and_then(|i| i.rsplit_once(':').map(|(_, t)| t.to_string()))
            .unwrap_or_else(|| "v0.0.0".into())
    }
}

impl super::Fleet {
    /// When no member's machine holds the cluster's etcd data any more (every member reset
    /// or its VM deleted), etcd is lost: the cluster is no longer bootstrapped, its members
    /// and data are gone, and its Kubernetes API listener (returned, to be stopped) with
    /// them. Fresh control planes of the cluster then wait for a bootstrap, as real ones do.
    pub(super) fn lose_if_no_data(&self, cluster_id: &str) -> Option<super::net::Listener> {
        let ids: Vec<u32> = {
            let cl = super::lock(&self.clusters);
            let c = cl.get(cluster_id)?;
            if !c.bootstrapped {
                return None;
            }
            c.members.values().map(|m| m.node).collect()
        };
        if ids.iter().any(|id| {
            self.node_by_id(*id)
                .is_some_and(|n| n.holds_etcd_of(cluster_id))
        }) {
            return None;
        }
        let mut cl = super::lock(&self.clusters);
        let c = cl.get_mut(cluster_id)?;
        tracing::info!(
            cluster_id,
            "talos emulator: no member holds etcd data any more: etcd is lost"
        );
        c.bootstrapped = false;
        c.members.clear();
        c.data = EtcdData::default();
        c.vip.take()
    }

    /// Every running node of the cluster registers its Node object (its kubelet starts
    /// once the cluster is bootstrapped).
    pub(super) fn register_kubelets(&self, cluster_id: &str) {
        let nodes: Vec<(String, bool, String)> = super::lock(&self.nodes)
            .iter()
            .filter(|n| n.stage() == super::Stage::Running)
            .filter_map(|n| {
                let st = super::lock(&n.inner.state);
                let c = st.config.as_ref()?;
                (c.cluster_id == cluster_id).then(|| {
                    (
                        c.hostname.clone(),
                        c.control_plane,
                        super::TalosNode::kubelet_version(c),
                    )
                })
            })
            .collect();
        let mut cl = super::lock(&self.clusters);
        let Some(c) = cl.get_mut(cluster_id).filter(|c| c.bootstrapped) else {
            return;
        };
        for (host, cp, version) in nodes {
            c.data.register_node(&host, cp, &version);
        }
    }
}

impl super::TalosFleet {
    /// Names of the Kubernetes Node objects the cluster's etcd holds.
    pub fn kube_node_names(&self, cluster_id: &str) -> Vec<String> {
        self.kube_names(cluster_id, "/registry/minions/")
    }

    /// Names of the namespaces the cluster's etcd holds.
    pub fn kube_namespaces(&self, cluster_id: &str) -> Vec<String> {
        self.kube_names(cluster_id, "/registry/namespaces/")
    }

    fn kube_names(&self, cluster_id: &str, prefix: &str) -> Vec<String> {
        super::lock(&self.inner.clusters)
            .get(cluster_id)
            .map(|c| {
                c.data
                    .list(prefix)
                    .iter()
                    .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What `EtcdSnapshot` of a member streams now (`None`: no such bootstrapped cluster).
    pub fn etcd_snapshot(&self, cluster_id: &str) -> Option<Vec<u8>> {
        super::lock(&self.inner.clusters)
            .get(cluster_id)
            .filter(|c| c.bootstrapped)
            .map(|c| c.data.snapshot(cluster_id))
    }

    /// Creates a namespace in the cluster's etcd (as `kubectl create namespace` would);
    /// false when the cluster is not bootstrapped or it exists.
    pub fn create_namespace(&self, cluster_id: &str, name: &str) -> bool {
        super::lock(&self.inner.clusters)
            .get_mut(cluster_id)
            .filter(|c| c.bootstrapped)
            .is_some_and(|c| c.data.create_namespace(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_restores_what_was_stored_and_refuses_damage() {
        let mut d = EtcdData::bootstrapped();
        d.register_node("cp1", true, "v1.35.2");
        assert!(d.create_namespace("keep-me"));
        let s = d.snapshot("cid");
        assert_eq!((s.len() - 32) % 512, 0);
        let back = EtcdData::restore(&s, false).expect("restores");
        assert_eq!(back, d);
        let mut bad = s.clone();
        bad[3] ^= 1;
        assert!(EtcdData::restore(&bad, false)
            .unwrap_err()
            .contains("integrity check failed"));
        assert!(EtcdData::restore(&s[..s.len() - 1], false)
            .unwrap_err()
            .contains("missing hash"));
    }
}
