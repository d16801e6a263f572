//! etcd backups and restore of `waddle_talos_cluster`: the `etcd_backup`, `etcd_restore` and
//! `etcd_snapshots` attributes, what a plan shows for them, and the plan-time refusal of a
//! change that would take the cluster's last control plane away. The operations are in
//! `ops/etcd_backup.rs`.
//!
//! * `etcd_backup = { directory, when, keep }`: a snapshot (`EtcdSnapshot` from a control
//!   plane whose etcd runs, its integrity hash verified while it streams) is written to
//!   `<directory>/<cluster>-etcd-<UTC time>-<reason>.db` with a `sha256sum` file beside it,
//!   `before_upgrade` (an update that changes `talos_version` or `kubernetes_version`, before
//!   any node is touched), `before_destroy` (before any node is reset) and/or `every_apply`
//!   (after every create or update). The newest `keep` snapshots of the cluster in that
//!   directory are kept; `etcd_snapshots` names them.
//! * `etcd_restore = { snapshot, generation }`: a new `generation` (or the attribute set at
//!   create) recovers the cluster's etcd from `snapshot`: `EtcdRecover` uploads it to the
//!   first control plane, `Bootstrap` with `recover_etcd` restores it. Only a cluster whose
//!   etcd is lost (every control plane's etcd waiting for a bootstrap) is restored; a running
//!   etcd is never overwritten.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use waddle_framework::prelude::*;
use waddle_framework::NestingMode;

use super::changes::{self, Action};
use super::{node_ip, ClusterModel};

pub const BACKUP: &str = "etcd_backup";
pub const RESTORE: &str = "etcd_restore";
pub const SNAPSHOTS: &str = "etcd_snapshots";

/// When a snapshot is taken.
pub const BEFORE_UPGRADE: &str = "before_upgrade";
pub const BEFORE_DESTROY: &str = "before_destroy";
pub const EVERY_APPLY: &str = "every_apply";
const WHEN: [&str; 3] = [BEFORE_UPGRADE, BEFORE_DESTROY, EVERY_APPLY];
/// `when` when not set.
pub const DEFAULT_WHEN: [&str; 2] = [BEFORE_UPGRADE, BEFORE_DESTROY];
/// `keep` when not set.
pub const DEFAULT_KEEP: u32 = 5;
const MAX_KEEP: i64 = 1000;

/// `etcd_backup`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct BackupModel {
    pub directory: String,
    pub when: Option<Vec<String>>,
    pub keep: Option<u32>,
}

impl BackupModel {
    pub fn takes(&self, when: &str) -> bool {
        match &self.when {
            Some(w) => w.iter().any(|x| x == when),
            None => DEFAULT_WHEN.contains(&when),
        }
    }
    pub fn keep(&self) -> u32 {
        self.keep.unwrap_or(DEFAULT_KEEP).max(1)
    }
}

/// `etcd_restore`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct RestoreModel {
    pub snapshot: String,
    pub generation: i64,
}

/// `etcd_snapshots[*]`: a snapshot this resource wrote and keeps.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub path: String,
    pub sha256: String,
    pub size: u64,
    pub reason: String,
    pub node: String,
    pub taken_at: String,
}

fn s(desc: &str) -> Attribute {
    Attribute::string().description(desc)
}

/// The `etcd_backup`, `etcd_restore` and `etcd_snapshots` attributes.
pub fn attributes() -> Vec<(&'static str, Attribute)> {
    vec![
        (
            BACKUP,
            Attribute::nested(
                NestingMode::Single,
                [
                    (
                        "directory",
                        s(
                            "Local directory (on the machine running Terraform; relative to its \
                           working directory) the snapshots are written to; created when missing.",
                        )
                        .required(),
                    ),
                    (
                        "when",
                        Attribute::list_of(Type::String)
                            .optional()
                            .description(format!(
                            "When a snapshot is taken: `{BEFORE_UPGRADE}` (an update changing \
                             `talos_version` or `kubernetes_version`, before any node is \
                             touched; a failed snapshot stops the update), `{BEFORE_DESTROY}` \
                             (before any node is reset; a failed snapshot stops the destroy: \
                             remove `{BEFORE_DESTROY}` and apply to destroy a cluster that cannot \
                             give one), `{EVERY_APPLY}` (after every create or update of this \
                             resource). Defaults to `[\"{BEFORE_UPGRADE}\", \"{BEFORE_DESTROY}\"]`."
                        )),
                    ),
                    (
                        "keep",
                        Attribute::number().optional().description(format!(
                            "How many of this cluster's snapshots to keep in `directory` (the \
                             oldest are deleted). Defaults to `{DEFAULT_KEEP}`."
                        )),
                    ),
                ],
            )
            // Optional + computed nested attributes are planned as configured (see `nodes`).
            .optional()
            .computed()
            .description(
                "etcd snapshots to a local directory: streamed with `EtcdSnapshot` from a \
                 control plane whose etcd runs, its integrity hash (the SHA-256 etcd appends) \
                 verified while it streams, then written as \
                 `<cluster_name>-etcd-<UTC time>-<reason>.db` with a `.sha256` file in \
                 `sha256sum` format beside it. Defaults to none (no snapshots).",
            ),
        ),
        (
            RESTORE,
            Attribute::nested(
                NestingMode::Single,
                [
                    (
                        "snapshot",
                        s(
                            "Path of an etcd snapshot file (e.g. one of `etcd_snapshots`, or \
                           `talosctl etcd snapshot`'s output); its integrity hash is checked \
                           at plan and before the upload.",
                        )
                        .required(),
                    ),
                    (
                        "generation",
                        Attribute::number().required().description(
                            "Restore generation: a value different from the last applied one \
                             (or the attribute set at create) runs the restore once.",
                        ),
                    ),
                ],
            )
            .optional()
            .computed()
            .description(
                "Declarative etcd recovery: when set at create or when `generation` changes, \
                 the snapshot is uploaded to the first control plane (`EtcdRecover`) and etcd is \
                 restored from it (`Bootstrap` with `recover_etcd`), then the other control \
                 planes join. Only a cluster whose etcd is lost is restored (every control \
                 plane's etcd waiting for a bootstrap, e.g. after all VMs were lost and \
                 re-created with the same `machine_secrets`); a running etcd is refused, never \
                 overwritten. See the guide `etcd-recovery`. Defaults to none.",
            ),
        ),
        (
            SNAPSHOTS,
            Attribute::list_of(Type::object([
                ("path".to_string(), Type::String),
                ("sha256".to_string(), Type::String),
                ("size".to_string(), Type::Number),
                ("reason".to_string(), Type::String),
                ("node".to_string(), Type::String),
                ("taken_at".to_string(), Type::String),
            ]))
            .computed()
            .description(
                "The etcd snapshots this resource wrote and keeps (oldest first): `path`, \
                 `sha256` of the file, `size` in bytes, `reason` (`before_upgrade`, \
                 `every_apply`), the `node` it came from and `taken_at` (UTC, RFC 3339). A \
                 snapshot taken before destroy is reported in the destroy's output.",
            ),
        ),
    ]
}

/// Plan-time checks of the configuration (no I/O).
pub fn validate(config: &Value, diags: &mut Diagnostics) {
    let base = AttributePath::attr(BACKUP);
    if let Some(b) = config.get_attr(BACKUP).filter(|b| !b.is_null()) {
        if let Some(ws) = b.get_attr("when").and_then(Value::as_elements) {
            for (i, w) in ws.iter().enumerate() {
                if let Some(w) = w.as_str() {
                    if !WHEN.contains(&w) {
                        diags.error_at(
                            base.clone().then_attr("when").then_index(i as i64),
                            "Invalid value",
                            format!(
                                "{BACKUP}.when[{i}]: {w:?}: must be one of {}",
                                WHEN.map(|x| format!("{x:?}")).join(", ")
                            ),
                        );
                    }
                }
            }
        }
        if let Some(k) = b.get_attr("keep").and_then(Value::as_i64) {
            if !(1..=MAX_KEEP).contains(&k) {
                diags.error_at(
                    base.clone().then_attr("keep"),
                    "Value out of range",
                    format!("{BACKUP}.keep = {k}: must be between 1 and {MAX_KEEP}"),
                );
            }
        }
        if b.get_attr("directory")
            .and_then(Value::as_str)
            .is_some_and(|d| d.trim().is_empty())
        {
            diags.error_at(
                base.then_attr("directory"),
                "Invalid value",
                format!("{BACKUP}.directory: must not be empty"),
            );
        }
    }
    if let Some(g) = config
        .get_attr(RESTORE)
        .and_then(|r| r.get_attr("generation"))
        .and_then(Value::as_i64)
    {
        if g < 0 {
            diags.error_at(
                AttributePath::attr(RESTORE).then_attr("generation"),
                "Value out of range",
                format!("{RESTORE}.generation = {g}: must not be negative"),
            );
        }
    }
}

fn model_at<T: serde::de::DeserializeOwned>(v: &Value, attr: &str) -> Option<T> {
    let x = v.get_attr(attr)?;
    if x.is_null() || !x.is_wholly_known() {
        return None;
    }
    x.to_typed().ok()
}

/// Whether this plan runs a restore: `etcd_restore` set and its generation new.
pub fn restore_requested(prior: Option<&RestoreModel>, new: Option<&RestoreModel>) -> bool {
    match (prior, new) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(p), Some(n)) => p.generation != n.generation,
    }
}

/// Plans `etcd_snapshots`, checks a restore's snapshot file and refuses taking the last
/// control plane away. Runs after the resource's own planning.
pub fn plan_values(
    prior: Option<&ClusterModel>,
    prior_state: &Value,
    config: &Value,
    plan: &mut Value,
    diags: &mut Diagnostics,
) {
    for a in [BACKUP, RESTORE] {
        if let Some(v) = config.get_attr(a) {
            plan.set_path(&AttributePath::attr(a), v.clone());
        }
    }
    let backup: Option<BackupModel> = model_at(plan, BACKUP);
    let restore: Option<RestoreModel> = model_at(plan, RESTORE);
    let backup_unknown = plan.get_attr(BACKUP).is_some_and(|b| !b.is_wholly_known());
    if let Some(r) = &restore {
        if restore_requested(prior.and_then(|p| p.etcd_restore.as_ref()), Some(r)) {
            if let Err(e) = super::ops::etcd_backup::read_snapshot_file(&r.snapshot) {
                diags.error_at(
                    AttributePath::attr(RESTORE).then_attr("snapshot"),
                    "Unusable etcd snapshot",
                    format!("{RESTORE}.snapshot: {e}"),
                );
            }
        }
    }
    let Some(prior) = prior else {
        plan.set_path(&AttributePath::attr(SNAPSHOTS), Value::unknown());
        return;
    };
    // A snapshot is taken by this update: the list changes.
    let versions_change = ["talos_version", "kubernetes_version"].iter().any(|a| {
        let new = plan.get_attr(a);
        let old = match *a {
            "talos_version" => prior.talos_version.as_deref(),
            _ => prior.kubernetes_version.as_deref(),
        };
        new.is_none_or(|v| !v.is_known() || v.as_str() != old)
    });
    let kept = match &prior.etcd_snapshots {
        Some(s) => snapshots_value(s),
        None => Value::Null,
    };
    // Whether the resource is updated at all (`every_apply` takes a snapshot only then: a
    // plan with nothing else to do stays empty).
    let mut unchanged = plan.clone();
    unchanged.set_path(&AttributePath::attr(SNAPSHOTS), kept.clone());
    let updated = !unchanged.equals(prior_state);
    let taking = backup_unknown
        || prior.etcd_backup != backup
        || (updated
            && backup.as_ref().is_some_and(|b| {
                b.takes(EVERY_APPLY) || (b.takes(BEFORE_UPGRADE) && versions_change)
            }));
    let snaps = if taking { Value::unknown() } else { kept };
    plan.set_path(&AttributePath::attr(SNAPSHOTS), snaps);
    if let Some(new) = super::model_of(plan).filter(|_| plan_known(plan, "nodes")) {
        for (path, msg) in last_control_plane_refusals(prior, &new) {
            diags.error_at(path, "Unsafe change refused", msg);
        }
    }
}

fn plan_known(plan: &Value, attr: &str) -> bool {
    plan.get_attr(attr).is_some_and(Value::is_wholly_known)
}

/// `etcd_snapshots` as a value of its schema type.
pub fn snapshots_value(s: &[SnapshotRecord]) -> Value {
    match &super::schema().implied_type() {
        Type::Object(o) => o
            .attrs
            .get(SNAPSHOTS)
            .and_then(|t| Value::from_typed(&s.to_vec(), t).ok())
            .unwrap_or_else(Value::unknown),
        _ => Value::unknown(),
    }
}

/// A change that leaves etcd without a member at some step: every current control plane
/// removed while a new control plane takes the address of one of them (that node is removed
/// before the new ones join, see `ops::update`), or no control plane left at all.
pub fn last_control_plane_refusals(
    prior: &ClusterModel,
    new: &ClusterModel,
) -> Vec<(AttributePath, String)> {
    let old_nodes = prior.nodes();
    let new_nodes = new.nodes();
    let actions = changes::classify(prior, new, None);
    let old_cps: Vec<&String> = old_nodes
        .iter()
        .filter(|(_, n)| n.role == "controlplane")
        .map(|(k, _)| k)
        .collect();
    if old_cps.is_empty() || prior.bootstrapped != Some(true) {
        return Vec::new();
    }
    let kept = old_cps.iter().any(|k| {
        matches!(
            actions.get(*k),
            Some(Action::Keep | Action::Resize(_) | Action::Recreate(_))
        ) && new_nodes.get(*k).is_some_and(|n| n.role == "controlplane")
    });
    if kept {
        return Vec::new();
    }
    let new_cps: BTreeMap<&String, &str> = new_nodes
        .iter()
        .filter(|(k, n)| n.role == "controlplane" && actions.get(*k) == Some(&Action::Create))
        .map(|(k, n)| (k, node_ip(n)))
        .collect();
    let taken = old_cps.iter().any(|k| {
        old_nodes
            .get(*k)
            .is_some_and(|o| new_cps.values().any(|ip| *ip == node_ip(o)))
    });
    if !new_cps.is_empty() && !taken {
        return Vec::new(); // new control planes join first, the old ones leave after
    }
    let names = old_cps
        .iter()
        .map(|k| format!("nodes[{k:?}]"))
        .collect::<Vec<_>>()
        .join(", ");
    let msg = if new_cps.is_empty() {
        format!(
            "removing {names} would remove the cluster's last control plane, and etcd and the \
             Kubernetes API with it: keep at least one control plane (destroy the resource to \
             tear the cluster down)"
        )
    } else {
        format!(
            "removing {names} while a new control plane takes the address of one of them would \
             remove the cluster's last etcd member before any new one joins: add the new control \
             planes on other addresses first (one apply), then remove the old ones"
        )
    };
    old_cps
        .iter()
        .map(|k| (AttributePath::attr("nodes").then_key(*k), msg.clone()))
        .collect()
}
