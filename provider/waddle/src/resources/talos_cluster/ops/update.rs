//! Update, in phases. [`update`] reads top to bottom as the order an update changes a
//! running cluster in:
//!
//! 0. [`prepare`]: the plan with the prior state's computed values, the secrets, every
//!    node's configuration, credentials; then the etcd snapshot before an upgrade;
//! 1. [`Run::remove_first`]: workers, and nodes whose address a new node takes;
//! 2. [`Run::add`]: new nodes, concurrently;
//! 3. [`Run::roll`]: resizes and re-creations, one node at a time;
//! 4. [`Run::remove_late`]: control planes leaving, one at a time (add, then remove);
//! 5. [`Run::upgrade_talos`]: Talos upgrades in place, control planes one at a time, then
//!    workers in batches;
//! 6. [`Run::reconfigure`]: configuration changes (control-plane components of a Kubernetes
//!    upgrade first), control planes one at a time, then workers;
//! 7. [`Run::conclude`]: what did not happen written back, etcd restored or bootstrapped,
//!    health, kubeconfig, the snapshot of every apply.
//!
//! A phase after a failed one does nothing; the nodes it would have changed keep their
//! prior state, so the next plan shows the remaining work.

use std::collections::{BTreeMap, BTreeSet};

use waddle_framework::prelude::*;
use waddle_talos::mask::{mask_config, same_masked};
use waddle_talos::SecretsBundle;

use super::super::changes::{self, Action};
use super::super::upgrade::NodeVersionModel;
use super::super::{model_of, node_ip, roll, to_value, wo, ClusterModel, NodeModel};
use super::versions::{record_not_done, Versions};
use super::{
    apply_configured, bundle_of, control_planes, credentials, etcd_backup, finish, make_env,
    node_health, provider_parts, provision_all, remove_node, render_all, takes_every_apply,
    talosconfig_of, upgrade, wait_configured, Attempt, Created, Env, OpError,
};

/// The etcd snapshot an update takes before an upgrade (`etcd_backup.when` has
/// `before_upgrade` and `talos_version` or `kubernetes_version` changes).
pub(super) fn snapshot_before_upgrade(prior: &ClusterModel, m: &ClusterModel) -> bool {
    prior.bootstrapped == Some(true)
        && m.etcd_backup
            .as_ref()
            .is_some_and(|b| b.takes(super::super::etcd::BEFORE_UPGRADE))
        && (prior.talos_version != m.talos_version
            || prior.kubernetes_version != m.kubernetes_version)
}

pub async fn update(ctx: &Context, req: UpdateRequest, diags: &mut Diagnostics) -> Option<Value> {
    // 0. Prepare.
    let Prepared {
        prior,
        mut m,
        bundle,
        configs,
        env,
        write_only,
    } = prepare(ctx, &req, diags)?;
    // The removed-APIs pre-check of a Kubernetes minor upgrade, before anything changes.
    match upgrade::removed_apis_check(
        &env,
        prior.kubernetes_version.as_deref(),
        m.kubernetes_version.as_deref(),
        prior.kubeconfig.as_deref(),
    )
    .await
    {
        Ok(None) => {}
        Ok(Some(w)) => diags.warning("Removed Kubernetes APIs not checked", w),
        Err(e) => {
            diags.error(
                "Kubernetes upgrade refused: removed APIs in use",
                e.to_string(),
            );
            return to_value(&prior, diags);
        }
    }
    if snapshot_before_upgrade(&prior, &m) {
        if let Err(e) = etcd_backup::take(&env, &mut m, super::super::etcd::BEFORE_UPGRADE).await {
            diags.error(
                "etcd snapshot before the upgrade failed: nothing was changed",
                format!(
                    "{e}. Remove \"before_upgrade\" from etcd_backup.when to upgrade without a \
                     snapshot."
                ),
            );
            let mut unchanged = prior.clone();
            unchanged.etcd_snapshots = m.etcd_snapshots.clone();
            return to_value(&unchanged, diags);
        }
    }
    let mut run = Run::new(env, prior, m, configs);
    // 1. - 4. Removals, additions, resizes and re-creations.
    run.remove_first().await;
    run.add().await;
    run.roll().await;
    run.remove_late().await;
    // 5. Talos upgrades, in place.
    run.upgrade_talos().await;
    // 6. Configuration changes (and Kubernetes upgrades).
    run.reconfigure().await;
    // 7. The rest.
    run.conclude(&bundle, write_only, diags).await
}

/// What an update starts from.
struct Prepared {
    prior: ClusterModel,
    /// The planned state with the computed values the plan left unknown.
    m: ClusterModel,
    bundle: SecretsBundle,
    configs: BTreeMap<String, String>,
    env: Env,
    /// The bundle is `machine_secrets_wo` (see `wo`).
    write_only: bool,
}

/// Phase 0: decodes prior state and plan, keeps the computed values the plan left unknown,
/// renders every node's configuration, and sets up the connections. Nothing is changed yet.
fn prepare(ctx: &Context, req: &UpdateRequest, diags: &mut Diagnostics) -> Option<Prepared> {
    let (Some(prior), Some(mut m)) = (model_of(&req.prior_state), model_of(&req.planned_state))
    else {
        diags.error(
            "Updating the Talos cluster failed",
            "the prior state or the plan cannot be decoded; nothing was changed",
        );
        return None;
    };
    // Keep computed values the plan left unknown.
    m.machine_secrets = m.machine_secrets.or(prior.machine_secrets.clone());
    m.client_configuration = prior.client_configuration.clone();
    m.kubeconfig = prior.kubeconfig.clone().filter(|k| !k.is_empty());
    m.bootstrapped = prior.bootstrapped;
    m.etcd_snapshots = prior.etcd_snapshots.clone();
    m.id = Some(m.cluster_name.clone());
    let write_only = wo::configured(&req.config);
    let bundle = match wo::bundle(&req.config) {
        Some(b) => b.map_err(OpError::from),
        None if write_only => Err(OpError::Step(format!("{} is not known at apply", wo::ATTR))),
        None => bundle_of(&m),
    };
    let bundle = match bundle {
        Ok(b) => b,
        Err(e) => {
            diags.error("Updating the Talos cluster failed", e.to_string());
            return None;
        }
    };
    let new_nodes = m.nodes();
    let old_nodes = prior.nodes();
    let needs_pve = new_nodes
        .values()
        .chain(old_nodes.values())
        .any(|n| n.proxmox.is_some())
        || prior.proxmox_vms.as_ref().is_some_and(|v| !v.is_empty());
    let parts = provider_parts(ctx, needs_pve, diags)?;
    let configs = match render_all(&m, &bundle) {
        Ok(c) => c,
        Err(e) => {
            diags.error("Rendering the machine configuration failed", e.to_string());
            return None;
        }
    };
    let (creds, cc) = match credentials(&m, &bundle) {
        Ok(x) => x,
        Err(e) => {
            diags.error("Client certificate", e.to_string());
            return None;
        }
    };
    m.client_configuration = Some(cc.clone());
    m.machine_configurations = Some(configs.clone());
    m.node_addresses = Some(
        new_nodes
            .iter()
            .map(|(k, n)| (k.clone(), node_ip(n).to_string()))
            .collect(),
    );
    if m.talosconfig.is_none() {
        match talosconfig_of(&m, &bundle, &cc) {
            Ok(t) => m.talosconfig = Some(t),
            Err(e) => {
                diags.error("talosconfig", e.to_string());
                return None;
            }
        }
    }
    let env = make_env(parts, creds, m.timeout(super::super::Op::Update), ctx);
    Some(Prepared {
        prior,
        m,
        bundle,
        configs,
        env,
        write_only,
    })
}

/// An update in progress: where it started, where it goes, and what happened so far.
struct Run {
    env: Env,
    prior: ClusterModel,
    m: ClusterModel,
    configs: BTreeMap<String, String>,
    old_nodes: BTreeMap<String, NodeModel>,
    new_nodes: BTreeMap<String, NodeModel>,
    actions: BTreeMap<String, Action>,
    created: Created,
    /// A restore from a snapshot was asked for (a new `etcd_restore` generation).
    restoring: bool,
    /// Every control plane is new (their VMs were gone, so the read dropped them): etcd
    /// starts from nothing, restored from a snapshot or bootstrapped empty.
    fresh_etcd: bool,
    /// What every node runs: the target once its upgrades are done (see `versions`).
    versions: Versions,
    records: BTreeMap<String, NodeVersionModel>,
    /// Nodes whose planned change did not happen: their prior state is written back so the
    /// next plan shows the change again.
    not_done: BTreeSet<String>,
    not_reconfigured: Vec<String>,
    /// Control planes that leave after the additions (phase 4).
    late: Vec<(String, NodeModel)>,
    errors: Vec<String>,
    warnings: Vec<String>,
}

impl Run {
    fn new(
        env: Env,
        prior: ClusterModel,
        mut m: ClusterModel,
        configs: BTreeMap<String, String>,
    ) -> Self {
        let restoring = super::super::etcd::restore_requested(
            prior.etcd_restore.as_ref(),
            m.etcd_restore.as_ref(),
        );
        let fresh_etcd = prior.nodes.is_some()
            && control_planes(&prior).is_empty()
            && prior.bootstrapped == Some(true);
        let created = Created::from_model(&prior);
        let actions = changes::classify(&prior, &m, env.default_node.as_deref());
        m.node_status = Some(changes::node_status(
            &m,
            prior.node_status.as_ref(),
            &actions,
        ));
        if let Some(mut s) = m.node_status.take() {
            super::super::upgrade::annotate_status(&mut s, &prior, &m, &actions);
            m.node_status = Some(s);
        }
        let versions = Versions::new(&prior, &m, &actions);
        let records = versions.records.clone();
        Run {
            env,
            old_nodes: prior.nodes(),
            new_nodes: m.nodes(),
            prior,
            m,
            configs,
            actions,
            created,
            restoring,
            fresh_etcd,
            versions,
            records,
            not_done: BTreeSet::new(),
            not_reconfigured: Vec::new(),
            late: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn action_is(&self, k: &str, want: fn(&Action) -> bool) -> bool {
        self.actions.get(k).is_some_and(want)
    }

    /// The nodes of `nodes` whose action is `want`.
    fn named(
        &self,
        want: fn(&Action) -> bool,
        nodes: &BTreeMap<String, NodeModel>,
    ) -> Vec<(String, NodeModel)> {
        nodes
            .iter()
            .filter(|(k, _)| self.action_is(k, want))
            .map(|(k, n)| (k.clone(), n.clone()))
            .collect()
    }

    fn added(&self) -> Vec<(String, NodeModel)> {
        self.named(|a| *a == Action::Create, &self.new_nodes)
    }

    /// A control plane that stays and answers: where a leaving member is removed from etcd.
    fn anchor(&self) -> Option<NodeModel> {
        self.new_nodes
            .iter()
            .find(|(k, n)| {
                n.role == "controlplane"
                    && !self.not_done.contains(*k)
                    && !self.action_is(k, |a| *a == Action::Create)
            })
            .map(|(_, n)| n.clone())
    }

    async fn remove(&mut self, name: &str, n: &NodeModel) {
        let cp = self.anchor();
        if let Err(e) = remove_node(
            &self.env,
            &self.prior,
            name,
            n,
            cp.as_ref(),
            &self.created,
            &mut self.warnings,
        )
        .await
        {
            self.errors.push(e.to_string());
            self.not_done.insert(name.to_string());
        }
    }

    /// 1. Removals that must come first: workers, and nodes whose address a new node takes.
    ///    Control planes otherwise leave after the additions (add, then remove).
    async fn remove_first(&mut self) {
        let added = self.added();
        let taken: BTreeSet<&str> = added.iter().map(|(_, n)| node_ip(n)).collect();
        let (first, late): (Vec<_>, Vec<_>) = self
            .named(|a| *a == Action::Remove, &self.old_nodes)
            .into_iter()
            .partition(|(_, n)| n.role != "controlplane" || taken.contains(node_ip(n)));
        self.late = late;
        for (name, n) in &first {
            tracing::info!(node = name, "removing node");
            self.remove(name, n).await;
        }
    }

    /// 2. Additions (concurrently).
    async fn add(&mut self) {
        let added = self.added();
        if !self.errors.is_empty() {
            self.not_done.extend(added.iter().map(|(k, _)| k.clone()));
        } else if !added.is_empty() {
            for (name, e) in
                provision_all(&self.env, &self.m, &added, &self.configs, &self.created).await
            {
                self.not_done.insert(name);
                self.errors.push(e.to_string());
            }
        }
    }

    /// 3. Resizes and re-creations, one node at a time.
    async fn roll(&mut self) {
        let rolling = self.named(
            |a| matches!(a, Action::Resize(_) | Action::Recreate(_)),
            &self.new_nodes,
        );
        if !self.errors.is_empty() {
            self.not_done.extend(rolling.iter().map(|(k, _)| k.clone()));
        } else if !rolling.is_empty() {
            let input = roll::RollInput {
                prior: &self.prior,
                m: &self.m,
                actions: &self.actions,
                configs: &self.configs,
                created: &self.created,
            };
            let r = roll::roll(&self.env, input, &mut self.warnings).await;
            self.not_done.extend(
                rolling
                    .iter()
                    .filter(|(k, _)| !r.done.contains(k))
                    .map(|(k, _)| k.clone()),
            );
            self.errors.extend(r.error);
        }
    }

    /// 4. Control planes leaving, one at a time.
    async fn remove_late(&mut self) {
        for (name, n) in std::mem::take(&mut self.late) {
            if !self.errors.is_empty() {
                self.not_done.insert(name.clone());
                continue;
            }
            tracing::info!(node = name, "removing control plane");
            self.remove(&name, &n).await;
        }
    }

    /// 5. Talos upgrades, in place: control planes one at a time, then workers in batches.
    async fn upgrade_talos(&mut self) {
        let talos_todo = self.versions.talos_todo(&self.old_nodes, &self.not_done);
        if talos_todo.is_empty() || !self.errors.is_empty() {
            return;
        }
        let cps_now =
            self.versions
                .control_planes_now(&self.old_nodes, &self.new_nodes, &self.not_done);
        let opts = super::super::upgrade::Options::of(&self.m);
        let r = match upgrade::drain_client(&self.env, &opts, self.prior.kubeconfig.as_deref()) {
            Ok(kube) => {
                let (records, target) = (&self.records, &self.versions.target);
                upgrade::roll_talos(
                    &self.env,
                    &cps_now,
                    &talos_todo,
                    records,
                    target,
                    &opts,
                    kube.as_ref(),
                )
                .await
            }
            Err(e) => upgrade::Rolled {
                done: Vec::new(),
                error: Some(e.to_string()),
            },
        };
        for k in &r.done {
            if let Some(rec) = self.records.get_mut(k) {
                rec.talos_version = self.versions.target.talos_version.clone();
                rec.installer = self.versions.target.installer.clone();
            }
        }
        self.errors.extend(r.error);
    }

    /// 6. Configuration changes: control planes one at a time, then workers (concurrently;
    ///    one at a time when the Kubernetes version changes: kubelets node by node). A
    ///    Kubernetes upgrade first gives every control plane the new control-plane components
    ///    (`talosctl upgrade-k8s` order), then the kubelets follow with the full configuration.
    async fn reconfigure(&mut self) {
        let old_configs = self
            .prior
            .machine_configurations
            .clone()
            .unwrap_or_default();
        // Write-only secrets: the state has the masked configurations only.
        let old_masked = self
            .prior
            .machine_configurations_masked
            .clone()
            .unwrap_or_default();
        let changed: Vec<(String, NodeModel)> = self
            .named(
                |a| matches!(a, Action::Keep | Action::Resize(_)),
                &self.new_nodes,
            )
            .into_iter()
            .filter(|(k, _)| match (old_configs.get(k), self.configs.get(k)) {
                (Some(a), Some(b)) => !super::super::inputs::same_applied(a, b),
                (None, Some(b)) => match (old_masked.get(k), mask_config(b)) {
                    (Some(a), Ok(b)) => !same_masked(a, &b),
                    _ => true,
                },
                _ => true,
            })
            .collect();
        let k8s_todo = self.versions.k8s_todo();
        let old_ips: BTreeMap<String, String> = self
            .old_nodes
            .iter()
            .map(|(k, n)| (k.clone(), node_ip(n).to_string()))
            .collect();
        if self.errors.is_empty() && !k8s_todo.is_empty() {
            let cps: Vec<(String, NodeModel)> = changed
                .iter()
                .filter(|(k, n)| n.role == "controlplane" && k8s_todo.contains(k))
                .cloned()
                .collect();
            let old_k8s = self.prior.kubernetes_version.clone().unwrap_or_default();
            let new_k8s = self.m.kubernetes_version.clone().unwrap_or_default();
            let r = upgrade::roll_control_plane_components(
                &self.env,
                &cps,
                &old_ips,
                &self.configs,
                &old_k8s,
                &new_k8s,
            )
            .await;
            self.errors.extend(r.error);
        }
        if !self.errors.is_empty() {
            self.not_reconfigured
                .extend(changed.iter().map(|(k, _)| k.clone()));
            return;
        }
        let apply_one = |name: String, n: NodeModel| {
            let env = &self.env;
            let configs = &self.configs;
            let old_ip = old_ips
                .get(&name)
                .cloned()
                .unwrap_or_else(|| node_ip(&n).to_string());
            async move {
                let cfg = configs.get(&name).cloned().unwrap_or_default();
                let rebooting = apply_configured(env, &name, &old_ip, &cfg).await?;
                if rebooting {
                    tracing::info!(node = name, "configuration applied, node reboots");
                }
                wait_configured(env, &name, node_ip(&n)).await?;
                env.retry(&format!("nodes[{name:?}]: services healthy"), || async {
                    match node_health(env, &name, &n).await {
                        Ok(()) => Attempt::Done(()),
                        Err(e) => Attempt::Again(e.to_string()),
                    }
                })
                .await?;
                Ok::<_, OpError>(())
            }
        };
        let (cps, workers): (Vec<_>, Vec<_>) = changed
            .into_iter()
            .partition(|(_, n)| n.role == "controlplane");
        let mut failed = false;
        for (k, n) in cps {
            if failed {
                self.not_reconfigured.push(k);
                continue;
            }
            match apply_one(k.clone(), n).await {
                Ok(()) => self.versions.kubelet_done(&mut self.records, &k),
                Err(e) => {
                    self.errors.push(e.to_string());
                    self.not_reconfigured.push(k);
                    failed = true; // keep etcd quorum: no further control plane
                }
            }
        }
        if failed {
            self.not_reconfigured
                .extend(workers.into_iter().map(|(k, _)| k));
        } else if !k8s_todo.is_empty() {
            // Kubelets node by node.
            for (k, n) in workers {
                if failed {
                    self.not_reconfigured.push(k);
                    continue;
                }
                match apply_one(k.clone(), n).await {
                    Ok(()) => self.versions.kubelet_done(&mut self.records, &k),
                    Err(e) => {
                        self.errors.push(e.to_string());
                        self.not_reconfigured.push(k);
                        failed = true;
                    }
                }
            }
        } else {
            let results = futures::future::join_all(workers.into_iter().map(|(k, n)| {
                let name = k.clone();
                let f = apply_one(k, n);
                async move { f.await.map_err(|e| (name, e)) }
            }))
            .await;
            for (name, e) in results.into_iter().filter_map(Result::err) {
                self.not_reconfigured.push(name);
                self.errors.push(e.to_string());
            }
        }
    }

    /// 7. Records what did not happen, restores or bootstraps etcd when asked or needed, waits
    ///    for health, refreshes the kubeconfig, takes the snapshot of every apply, and
    ///    returns the new state with every error.
    async fn conclude(
        self,
        bundle: &SecretsBundle,
        write_only: bool,
        diags: &mut Diagnostics,
    ) -> Option<Value> {
        let Run {
            env,
            prior,
            mut m,
            versions,
            records,
            created,
            restoring,
            fresh_etcd,
            not_done,
            not_reconfigured,
            mut errors,
            warnings,
            ..
        } = self;
        let m = &mut m;
        let errors = &mut errors;
        versions.finish(m, &prior, records);
        record_not_done(m, &prior, &not_done, &not_reconfigured);
        for w in warnings {
            diags.warning("Node removal", w);
        }
        let (env, prior, restoring, fresh_etcd) = (&env, &prior, &restoring, &fresh_etcd);
        created.write_into(m);
        if let (true, Some(r)) = (errors.is_empty() && *restoring, m.etcd_restore.clone()) {
            match etcd_backup::restore(env, m, &r).await {
                Ok(()) => m.bootstrapped = Some(true),
                Err(e) => errors.push(e.to_string()),
            }
        } else if errors.is_empty() && *fresh_etcd {
            diags.warning(
                "etcd starts empty",
                "every control plane of this cluster is new (their VMs were gone): etcd is \
                 bootstrapped again, without the cluster's former data. To recover that data \
                 instead, set etcd_restore to a snapshot (see the etcd recovery guide).",
            );
            m.bootstrapped = Some(false);
        }
        if *restoring && !errors.is_empty() {
            // Not restored: the next plan shows the restore again.
            m.etcd_restore = prior.etcd_restore.clone();
        }
        if errors.is_empty() {
            let endpoint_changed = prior.endpoint != m.endpoint;
            if let Err(e) = finish(env, m, bundle, endpoint_changed || *fresh_etcd).await {
                errors.push(e.to_string());
            } else if takes_every_apply(m) {
                if let Err(e) = etcd_backup::take(env, m, super::super::etcd::EVERY_APPLY).await {
                    errors.push(e.to_string());
                }
            }
        }
        if m.kubeconfig.is_none() {
            m.kubeconfig = Some(String::new());
        }
        for e in errors.drain(..) {
            diags.error("Updating the Talos cluster failed", e);
        }
        wo::finalize(m, write_only, Some(prior));
        to_value(m, diags)
    }
}
