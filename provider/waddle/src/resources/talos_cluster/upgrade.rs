//! Talos OS and Kubernetes upgrades, plan side: the `upgrade` options, the per-node record
//! of what each node runs (`node_versions`), the version path refusals and the per-node text
//! of what an apply will do. The apply side is `ops/upgrade.rs`.
//!
//! * A change of `talos_version` or of the installer image (`image.installer`, e.g. another
//!   schematic) is an in-place rolling upgrade: control planes one at a time, each only when
//!   etcd is healthy with all members, then workers in batches of `upgrade.parallelism`.
//! * A change of `kubernetes_version` is rolled in the order of `talosctl upgrade-k8s`:
//!   control-plane components (API server, controller manager, scheduler, kube-proxy) one
//!   control plane at a time, then the kubelet node by node, control planes first.
//! * `node_versions` records, per node, what it runs once done; an interrupted roll leaves
//!   the nodes not done with their previous record, so the next plan shows them and the
//!   next apply resumes with them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use waddle_framework::prelude::*;
use waddle_framework::NestingMode;

use super::changes::Action;
use super::{build_spec, ClusterModel, NodeStatus};

/// `upgrade`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct UpgradeModel {
    pub parallelism: Option<u32>,
    pub preserve: Option<bool>,
    pub stage: Option<bool>,
    pub reboot_mode: Option<String>,
    pub allow_downgrade: Option<bool>,
    pub drain: Option<bool>,
}

/// `node_versions[*]`: what a node runs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeVersionModel {
    pub talos_version: Option<String>,
    pub installer: Option<String>,
    pub kubernetes_version: Option<String>,
}

/// Most workers upgraded at once.
pub const MAX_PARALLELISM: i64 = 100;

/// The `upgrade` attribute.
pub fn upgrade_attribute() -> Attribute {
    let s = |d: &str| Attribute::string().description(d);
    Attribute::nested(
        NestingMode::Single,
        [
            (
                "parallelism",
                Attribute::number().optional().description(format!(
                    "Workers upgraded at once (control planes are always one at a time). \
                     Defaults to `1`, at most {MAX_PARALLELISM}."
                )),
            ),
            (
                "preserve",
                Attribute::bool().optional().description(
                    "Keep the EPHEMERAL partition (Talos `--preserve`). Defaults to `true` \
                     for a cluster with one control plane (Talos refuses to upgrade the only \
                     etcd member otherwise), `false` otherwise.",
                ),
            ),
            (
                "stage",
                Attribute::bool().optional().description(
                    "Stage the upgrade and install it at the next boot (Talos `--stage`, for \
                     nodes whose disks are busy). Defaults to `false`.",
                ),
            ),
            (
                "reboot_mode",
                s("`default` (kexec where possible) or `powercycle`. Defaults to `\"default\"`.")
                    .optional(),
            ),
            (
                "drain",
                Attribute::bool().optional().description(
                    "Drain every worker before its upgrade, through the Kubernetes API with the \
                     cluster's admin credentials, as `kubectl drain --ignore-daemonsets \
                     --delete-emptydir-data` does: cordon the Node, evict its pods (DaemonSet \
                     pods and static pods stay) with the Eviction API, which honours \
                     PodDisruptionBudgets (a refused eviction is asked again until the budget \
                     allows it or the update's deadline passes), then upgrade, and uncordon the \
                     Node once the worker is back. A drain that cannot finish uncordons the \
                     node and stops the roll; a failed upgrade leaves the node cordoned. \
                     Defaults to `false`.",
                ),
            ),
            (
                "allow_downgrade",
                Attribute::bool().optional().description(
                    "Allow a lower `talos_version` or `kubernetes_version` than the nodes run \
                     (refused at plan otherwise). Defaults to `false`.",
                ),
            ),
        ],
    )
    // Optional + computed: see `nodes` (Terraform < 1.0.9).
    .optional()
    .computed()
    .description(
        "How Talos upgrades roll. A change of `talos_version` or `image.installer` upgrades \
         every node in place (never a re-creation): control planes one at a time, each only \
         when etcd is healthy with all members, then workers in batches; a node is done when \
         it runs the new version with a new boot ID and its services (and etcd member) are \
         healthy. Nodes on Talos v1.12 are upgraded with `MachineService.Upgrade`, nodes \
         reporting v1.13 or later with `ImageService.Pull` + `LifecycleService.Upgrade`. \
         An upgrade that skips a minor release or goes down is refused at plan.",
    )
}

/// The `node_versions` attribute.
pub fn node_versions_attribute() -> Attribute {
    Attribute::map_of(Type::object([
        ("talos_version".to_string(), Type::String),
        ("installer".to_string(), Type::String),
        ("kubernetes_version".to_string(), Type::String),
    ]))
    .computed()
    .description(
        "What every node runs, by node name: `talos_version`, the `installer` image it was \
         installed or upgraded with, and `kubernetes_version`. A node is recorded once its \
         upgrade is done, so after an interrupted upgrade the next plan shows the nodes not \
         done yet and the next apply continues with them.",
    )
}

/// A parsed `vX.Y.Z` (pre-release suffixes ignored).
pub fn semver(s: &str) -> Option<(u32, u32, u32)> {
    let t = s.trim().trim_start_matches('v');
    let core = t.split(['-', '+']).next()?;
    let mut it = core.split('.').map(|p| p.parse::<u32>().ok());
    let v = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(v)
}

/// What every node of `m` runs once an apply of `m` is done.
pub fn target(m: &ClusterModel) -> NodeVersionModel {
    let spec = build_spec(m);
    NodeVersionModel {
        talos_version: m.talos_version.clone(),
        installer: Some(spec.installer_image()),
        kubernetes_version: m.kubernetes_version.clone(),
    }
}

/// What node `name` of `prior` runs: its record, else what the prior configuration installed.
pub fn recorded(prior: &ClusterModel, name: &str) -> NodeVersionModel {
    prior
        .node_versions
        .as_ref()
        .and_then(|v| v.get(name).cloned())
        .unwrap_or_else(|| target(prior))
}

/// `upgrade` options with their defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub parallelism: usize,
    pub preserve: bool,
    pub stage: bool,
    pub reboot_mode: String,
    pub allow_downgrade: bool,
    pub drain: bool,
}

impl Options {
    pub fn of(m: &ClusterModel) -> Options {
        let u = m.upgrade.clone().unwrap_or_default();
        let cps = m
            .nodes()
            .values()
            .filter(|n| n.role == "controlplane")
            .count();
        Options {
            parallelism: u.parallelism.unwrap_or(1).max(1) as usize,
            preserve: u.preserve.unwrap_or(cps <= 1),
            stage: u.stage.unwrap_or(false),
            reboot_mode: u.reboot_mode.unwrap_or_else(|| "default".into()),
            allow_downgrade: u.allow_downgrade.unwrap_or(false),
            drain: u.drain.unwrap_or(false),
        }
    }
}

/// What changes on a kept node: `(talos or installer change, kubernetes change)`.
pub fn changes_of(from: &NodeVersionModel, to: &NodeVersionModel) -> (bool, bool) {
    (
        from.talos_version != to.talos_version || from.installer != to.installer,
        from.kubernetes_version != to.kubernetes_version,
    )
}

/// The `node_status[*].action` text of a node whose versions change.
pub fn describe(from: &NodeVersionModel, to: &NodeVersionModel, control_plane: bool) -> String {
    let mut parts = Vec::new();
    let show = |x: &Option<String>| x.clone().unwrap_or_else(|| "?".into());
    if from.talos_version != to.talos_version {
        parts.push(format!(
            "Talos {} -> {}",
            show(&from.talos_version),
            show(&to.talos_version)
        ));
    } else if from.installer != to.installer {
        parts.push(format!(
            "installer {} -> {}",
            show(&from.installer),
            show(&to.installer)
        ));
    }
    if from.kubernetes_version != to.kubernetes_version {
        parts.push(format!(
            "Kubernetes {} -> {}",
            show(&from.kubernetes_version),
            show(&to.kubernetes_version)
        ));
    }
    let how = if control_plane {
        "control planes one at a time"
    } else {
        "workers after the control planes"
    };
    format!("upgraded in place: {} ({how})", parts.join(", "))
}

/// Nodes kept by an update whose versions change, with (from, to).
pub fn upgrades(
    prior: &ClusterModel,
    new: &ClusterModel,
    actions: &BTreeMap<String, Action>,
) -> BTreeMap<String, (NodeVersionModel, NodeVersionModel)> {
    let to = target(new);
    new.nodes()
        .keys()
        .filter(|k| matches!(actions.get(*k), Some(Action::Keep | Action::Resize(_))))
        .filter_map(|k| {
            let from = recorded(prior, k);
            let (a, b) = changes_of(&from, &to);
            (a || b).then(|| (k.clone(), (from, to.clone())))
        })
        .collect()
}

/// Writes the upgrade text into the `node_status` of every node that is upgraded.
pub fn annotate_status(
    status: &mut BTreeMap<String, NodeStatus>,
    prior: &ClusterModel,
    new: &ClusterModel,
    actions: &BTreeMap<String, Action>,
) {
    let nodes = new.nodes();
    for (k, (from, to)) in upgrades(prior, new, actions) {
        let cp = nodes.get(&k).is_some_and(|n| n.role == "controlplane");
        if let Some(s) = status.get_mut(&k) {
            let text = describe(&from, &to, cp);
            s.action = Some(match (&s.action, actions.get(&k)) {
                (Some(r), Some(Action::Resize(_))) => format!("{r}; {text}"),
                _ => text,
            });
        }
    }
}

/// The plan warning: every node that will be upgraded (and rebooted, for Talos), in order.
pub fn warning_text(
    prior: &ClusterModel,
    new: &ClusterModel,
    actions: &BTreeMap<String, Action>,
) -> Option<String> {
    let nodes = new.nodes();
    let ups = upgrades(prior, new, actions);
    let mut order: Vec<(&String, &(NodeVersionModel, NodeVersionModel))> = ups.iter().collect();
    order.sort_by_key(|(k, _)| {
        (
            nodes.get(*k).is_none_or(|n| n.role != "controlplane"),
            (*k).clone(),
        )
    });
    let lines: Vec<String> = order
        .into_iter()
        .map(|(k, (from, to))| {
            let cp = nodes.get(k).is_some_and(|n| n.role == "controlplane");
            let reboot = if changes_of(from, to).0 {
                ", rebooted"
            } else {
                ""
            };
            format!("nodes[{k:?}]{reboot}: {}", describe(from, to, cp))
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The planned (and applied) `node_versions`: every node at the target, or `None` when the
/// prior state has no record and nothing changes (a state from before the record, an
/// import), so such a plan stays empty.
pub fn planned(
    prior: Option<&ClusterModel>,
    new: &ClusterModel,
) -> Option<BTreeMap<String, NodeVersionModel>> {
    let to = target(new);
    let all: BTreeMap<String, NodeVersionModel> = new
        .nodes()
        .keys()
        .map(|k| (k.clone(), to.clone()))
        .collect();
    match prior {
        Some(p) if p.node_versions.is_none() => {
            let same_nodes = p.nodes().keys().eq(new.nodes().keys());
            let unchanged = same_nodes && target(p) == to;
            (!unchanged).then_some(all)
        }
        _ => Some(all),
    }
}

fn talos_path() -> AttributePath {
    AttributePath::attr("talos_version")
}

/// Plan-time refusals of a version change, each with its attribute path: a Talos upgrade
/// that skips a minor release (naming the path), a downgrade of Talos or Kubernetes unless
/// `upgrade.allow_downgrade`, a Kubernetes minor skip, and an in-place Talos upgrade of a
/// cluster with exactly two control planes (Talos refuses it: etcd would lose quorum).
pub fn refusals(prior: &ClusterModel, new: &ClusterModel) -> Vec<(AttributePath, String)> {
    let mut out = Vec::new();
    let opts = Options::of(new);
    let to = target(new);
    // The lowest and highest version any node runs (records), else the prior configuration.
    let names: Vec<String> = prior
        .nodes()
        .keys()
        .filter(|k| new.nodes().contains_key(*k))
        .cloned()
        .collect();
    let froms: Vec<NodeVersionModel> = names.iter().map(|k| recorded(prior, k)).collect();
    let versions = |f: fn(&NodeVersionModel) -> &Option<String>| -> Vec<(u32, u32, u32)> {
        froms
            .iter()
            .filter_map(|r| f(r).as_deref().and_then(semver))
            .collect()
    };
    if let Some(t) = to.talos_version.as_deref().and_then(semver) {
        let have = versions(|r| &r.talos_version);
        if let Some(&hi) = have.iter().max() {
            if t < hi && !opts.allow_downgrade {
                out.push((
                    talos_path(),
                    format!(
                        "talos_version: v{}.{}.{} is lower than v{}.{}.{}, which nodes run: a \
                         downgrade is refused unless upgrade.allow_downgrade = true",
                        t.0, t.1, t.2, hi.0, hi.1, hi.2
                    ),
                ));
            }
        }
        if let Some(&lo) = have.iter().min() {
            if t.0 == lo.0 && t.1 > lo.1 + 1 {
                let steps: Vec<String> = (lo.1 + 1..t.1)
                    .map(|m| format!("the latest v{}.{}.x", t.0, m))
                    .collect();
                out.push((
                    talos_path(),
                    format!(
                        "talos_version: v{}.{}.{} -> v{}.{}.{} skips a minor release; Talos \
                         upgrades one minor release at a time: upgrade to {} first (one apply \
                         each), then to v{}.{}.{}",
                        lo.0,
                        lo.1,
                        lo.2,
                        t.0,
                        t.1,
                        t.2,
                        steps.join(", then "),
                        t.0,
                        t.1,
                        t.2
                    ),
                ));
            } else if t.0 > lo.0 {
                out.push((
                    talos_path(),
                    format!(
                        "talos_version: v{}.{}.{} -> v{}.{}.{} changes the major version; upgrade \
                         one minor release at a time",
                        lo.0, lo.1, lo.2, t.0, t.1, t.2
                    ),
                ));
            }
        }
        let talos_changes = froms
            .iter()
            .any(|r| r.talos_version != to.talos_version || r.installer != to.installer);
        let cps = new
            .nodes()
            .values()
            .filter(|n| n.role == "controlplane")
            .count();
        if talos_changes && cps == 2 {
            out.push((
                talos_path(),
                "talos_version: a cluster with two control planes cannot be upgraded in place: \
                 Talos refuses (etcd would lose quorum while one member reboots); add a third \
                 control plane first (one apply), then upgrade"
                    .into(),
            ));
        }
    }
    if let Some(t) = to.kubernetes_version.as_deref().and_then(semver) {
        let path = AttributePath::attr("kubernetes_version");
        let have = versions(|r| &r.kubernetes_version);
        if let Some(&hi) = have.iter().max() {
            if t < hi && !opts.allow_downgrade {
                out.push((
                    path.clone(),
                    format!(
                        "kubernetes_version: {}.{}.{} is lower than {}.{}.{}, which the cluster \
                         runs: a downgrade is refused unless upgrade.allow_downgrade = true",
                        t.0, t.1, t.2, hi.0, hi.1, hi.2
                    ),
                ));
            }
        }
        if let Some(&lo) = have.iter().min() {
            if t.0 == lo.0 && t.1 > lo.1 + 1 {
                out.push((
                    path,
                    format!(
                        "kubernetes_version: {}.{}.{} -> {}.{}.{} skips a minor release; \
                         Kubernetes upgrades one minor release at a time: upgrade to the latest \
                         {}.{}.x first (one apply), then to {}.{}.{}",
                        lo.0,
                        lo.1,
                        lo.2,
                        t.0,
                        t.1,
                        t.2,
                        t.0,
                        lo.1 + 1,
                        t.0,
                        t.1,
                        t.2
                    ),
                ));
            }
        }
    }
    out
}

/// Checks of the `upgrade` attribute's own values (no prior state needed).
pub fn validate(config: &Value, diags: &mut Diagnostics) {
    let base = AttributePath::attr("upgrade");
    let Some(u) = config.get_attr("upgrade").filter(|u| !u.is_null()) else {
        return;
    };
    if let Some(p) = u.get_attr("parallelism").and_then(Value::as_i64) {
        if !(1..=MAX_PARALLELISM).contains(&p) {
            diags.error_at(
                base.clone().then_attr("parallelism"),
                "Value out of range",
                format!("upgrade.parallelism = {p}: must be between 1 and {MAX_PARALLELISM}"),
            );
        }
    }
    if let Some(r) = u.get_attr("reboot_mode").and_then(Value::as_str) {
        if waddle_talos::api::RebootMode::parse(r).is_none() {
            diags.error_at(
                base.then_attr("reboot_mode"),
                "Invalid reboot_mode",
                format!("upgrade.reboot_mode = {r:?}: must be \"default\" or \"powercycle\""),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::talos_cluster::tests::three_node;

    fn at(v: &str, k: &str) -> ClusterModel {
        let mut m = three_node();
        m.talos_version = Some(v.into());
        m.kubernetes_version = Some(k.into());
        m
    }

    #[test]
    fn version_paths() {
        let prior = at("v1.12.4", "1.35.0");
        assert!(refusals(&prior, &at("v1.12.11", "1.35.2")).is_empty());
        let r = refusals(&prior, &at("v1.14.0", "1.35.0"));
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].0.to_string(), "talos_version");
        assert!(
            r[0].1.contains("upgrade to the latest v1.13.x first"),
            "{}",
            r[0].1
        );
        let r = refusals(&at("v1.12.11", "1.35.0"), &at("v1.12.4", "1.35.0"));
        assert!(r[0].1.contains("allow_downgrade"), "{r:?}");
        let mut allowed = at("v1.12.4", "1.33.0");
        allowed.upgrade = Some(UpgradeModel {
            allow_downgrade: Some(true),
            ..Default::default()
        });
        assert!(refusals(&at("v1.12.11", "1.35.2"), &allowed).is_empty());
        let r = refusals(&prior, &at("v1.12.4", "1.33.0"));
        assert_eq!(r[0].0.to_string(), "kubernetes_version");
        assert!(r[0].1.contains("downgrade"), "{r:?}");
        let r = refusals(&at("v1.12.4", "1.33.0"), &at("v1.12.4", "1.35.0"));
        assert!(r[0].1.contains("1.34.x first"), "{r:?}");
    }

    #[test]
    fn the_lowest_recorded_version_decides_a_skip() {
        // A node left behind on v1.11 by an interrupted roll: v1.13 skips v1.12 for it.
        let mut prior = at("v1.12.4", "1.35.0");
        let mut rec = recorded(&prior, "cp1");
        rec.talos_version = Some("v1.11.6".into());
        prior.node_versions = Some([("cp1".to_string(), rec)].into());
        let r = refusals(&prior, &at("v1.13.0", "1.35.0"));
        assert!(
            r.iter().any(|(_, m)| m.contains("v1.11.6 -> v1.13.0")),
            "{r:?}"
        );
    }

    #[test]
    fn options_default_preserve_for_one_control_plane() {
        let mut m = three_node();
        assert!(!Options::of(&m).preserve);
        m.nodes.as_mut().unwrap().retain(|k, _| k == "cp1");
        assert!(Options::of(&m).preserve);
        assert_eq!(Options::of(&m).parallelism, 1);
    }

    #[test]
    fn two_control_planes_cannot_upgrade() {
        let mut prior = at("v1.12.4", "1.35.0");
        prior.nodes.as_mut().unwrap().remove("cp3");
        let mut new = at("v1.12.11", "1.35.0");
        new.nodes.as_mut().unwrap().remove("cp3");
        let r = refusals(&prior, &new);
        assert!(r[0].1.contains("two control planes"), "{r:?}");
    }
}
