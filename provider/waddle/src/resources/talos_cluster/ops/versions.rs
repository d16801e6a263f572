//! The per-node version records of an update, and what an update that stopped part-way
//! writes back so the next plan shows the remaining work.

use std::collections::{BTreeMap, BTreeSet};

use super::super::changes::{self, Action};
use super::super::{node_ip, ClusterModel, NodeModel};

/// Writes the prior state of the nodes whose change did not happen back into `m` (node,
/// machine configuration, address, `node_status` marked `not done: ...`), so the next plan
/// shows the remaining work.
pub(super) fn record_not_done(
    m: &mut ClusterModel,
    prior: &ClusterModel,
    not_done: &BTreeSet<String>,
    not_reconfigured: &[String],
) {
    let old_nodes = prior.nodes();
    let old_configs = prior.machine_configurations.clone().unwrap_or_default();
    let old_status = changes::node_status(prior, prior.node_status.as_ref(), &BTreeMap::new());
    let planned_status = m.node_status.clone().unwrap_or_default();
    let mut nodes = m.nodes();
    let mut cfgs = m.machine_configurations.clone().unwrap_or_default();
    let mut status = planned_status.clone();
    for name in not_done.iter().chain(not_reconfigured) {
        match old_configs
            .get(name)
            .filter(|_| old_nodes.contains_key(name))
        {
            Some(c) => cfgs.insert(name.clone(), c.clone()),
            None => cfgs.remove(name),
        };
    }
    for name in not_done {
        match (old_nodes.get(name), nodes.contains_key(name)) {
            (Some(o), still_configured) => {
                nodes.insert(name.clone(), o.clone());
                let mut s = old_status.get(name).cloned().unwrap_or_default();
                if still_configured {
                    if let Some(p) = planned_status.get(name).and_then(|p| p.action.clone()) {
                        s.action = Some(format!("not done: {p}"));
                    }
                }
                status.insert(name.clone(), s);
            }
            (None, _) => {
                nodes.remove(name);
                status.remove(name);
            }
        }
    }
    m.node_addresses = Some(
        nodes
            .iter()
            .map(|(k, n)| (k.clone(), node_ip(n).to_string()))
            .collect(),
    );
    m.nodes = Some(nodes);
    m.machine_configurations = Some(cfgs);
    m.node_status = Some(status);
}

/// The per-node version records of an update: where each node starts, what it must reach.
pub(super) struct Versions {
    pub(super) target: super::super::upgrade::NodeVersionModel,
    pub(super) records: BTreeMap<String, super::super::upgrade::NodeVersionModel>,
    /// Whether the state records versions after this update (see `upgrade::planned`).
    pub(super) recorded: bool,
}

impl Versions {
    pub(super) fn new(
        prior: &ClusterModel,
        m: &ClusterModel,
        actions: &BTreeMap<String, Action>,
    ) -> Self {
        let target = super::super::upgrade::target(m);
        let ups = super::super::upgrade::upgrades(prior, m, actions);
        let records = m
            .nodes()
            .keys()
            .map(|k| {
                let r = ups
                    .get(k)
                    .map(|(from, _)| from.clone())
                    .unwrap_or_else(|| target.clone());
                (k.clone(), r)
            })
            .collect();
        Versions {
            target,
            records,
            recorded: super::super::upgrade::planned(Some(prior), m).is_some(),
        }
    }

    /// Kept nodes whose Talos OS changes (at their current address), in name order.
    pub(super) fn talos_todo(
        &self,
        old_nodes: &BTreeMap<String, NodeModel>,
        not_done: &BTreeSet<String>,
    ) -> Vec<(String, NodeModel)> {
        self.records
            .iter()
            .filter(|(k, r)| {
                !not_done.contains(*k) && super::super::upgrade::changes_of(r, &self.target).0
            })
            .filter_map(|(k, _)| old_nodes.get(k).map(|n| (k.clone(), n.clone())))
            .collect()
    }

    /// Nodes whose Kubernetes version changes.
    pub(super) fn k8s_todo(&self) -> BTreeSet<String> {
        self.records
            .iter()
            .filter(|(_, r)| super::super::upgrade::changes_of(r, &self.target).1)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The control planes of the cluster as it is now (added ones included), at the address
    /// they answer on now.
    pub(super) fn control_planes_now(
        &self,
        old_nodes: &BTreeMap<String, NodeModel>,
        new_nodes: &BTreeMap<String, NodeModel>,
        not_done: &BTreeSet<String>,
    ) -> Vec<(String, NodeModel)> {
        new_nodes
            .iter()
            .filter(|(k, n)| n.role == "controlplane" && !not_done.contains(*k))
            .map(|(k, n)| (k.clone(), old_nodes.get(k).unwrap_or(n).clone()))
            .collect()
    }

    /// Node `k` runs the new configuration (its kubelet included).
    pub(super) fn kubelet_done(
        &self,
        records: &mut BTreeMap<String, super::super::upgrade::NodeVersionModel>,
        k: &str,
    ) {
        if let Some(r) = records.get_mut(k) {
            r.kubernetes_version = self.target.kubernetes_version.clone();
        }
    }

    /// Writes the records into `m`. Versions some node does not run yet go back to the
    /// prior state's (so the next plan shows the change again) and those nodes' `action`
    /// says `not done: ...`.
    pub(super) fn finish(
        &self,
        m: &mut ClusterModel,
        prior: &ClusterModel,
        records: BTreeMap<String, super::super::upgrade::NodeVersionModel>,
    ) {
        let mut talos_behind = false;
        let mut k8s_behind = false;
        for (k, r) in &records {
            let (t, kube) = super::super::upgrade::changes_of(r, &self.target);
            talos_behind |= t;
            k8s_behind |= kube;
            if t || kube {
                if let Some(s) = m.node_status.as_mut().and_then(|s| s.get_mut(k)) {
                    if let Some(a) = s.action.clone().filter(|a| !a.starts_with("not done")) {
                        s.action = Some(format!("not done: {a}"));
                    }
                }
            }
        }
        if talos_behind {
            m.talos_version = prior.talos_version.clone();
            m.image = prior.image.clone();
        }
        if k8s_behind {
            m.kubernetes_version = prior.kubernetes_version.clone();
        }
        m.node_versions = (self.recorded || talos_behind || k8s_behind).then_some(records);
    }
}
