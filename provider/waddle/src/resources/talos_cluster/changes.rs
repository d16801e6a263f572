//! What an update does to each node. One classification serves the plan (the warning that
//! lists VMs to be re-created or deleted, `node_status`, refusals of unsafe changes) and the
//! apply (which operation each node gets, in which order).
//!
//! * `cores`, `memory`, `disk_size`: changed in place (VM configuration, a disk `resize`
//!   that only grows, then a reboot of that one node for CPU/memory);
//! * role, Proxmox VE node, storage, bridge, VM id, MAC, install disk, or a node that gains or
//!   loses its `proxmox` placement: the node is re-created, one node at a time;
//! * anything else is a machine-configuration change (see `ops::update`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use waddle_framework::prelude::*;

use super::{defaults, effective_mac, ClusterModel, NodeModel, NodeStatus, PlacementModel};

/// The in-place part of a change of a Proxmox node: `(old, new)` of what changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resize {
    pub cores: Option<(u32, u32)>,
    pub memory: Option<(u64, u64)>,
    pub disk_gib: Option<(u32, u32)>,
}

impl Resize {
    fn between(old: &PlacementModel, new: &PlacementModel) -> Resize {
        fn pair<T: PartialEq>(a: T, b: T) -> Option<(T, T)> {
            (a != b).then_some((a, b))
        }
        Resize {
            cores: pair(old.cores(), new.cores()),
            memory: pair(old.memory(), new.memory()),
            disk_gib: pair(old.disk_size(), new.disk_size()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.cores.is_none() && self.memory.is_none() && self.disk_gib.is_none()
    }

    /// CPU and memory changes are pending in Proxmox until the VM is started again.
    pub fn needs_reboot(&self) -> bool {
        self.cores.is_some() || self.memory.is_some()
    }

    /// A disk can only grow.
    pub fn shrinks_disk(&self) -> bool {
        self.disk_gib.is_some_and(|(a, b)| b < a)
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some((a, b)) = self.cores {
            parts.push(format!("cores {a} -> {b}"));
        }
        if let Some((a, b)) = self.memory {
            parts.push(format!("memory {a} -> {b} MiB"));
        }
        if let Some((a, b)) = self.disk_gib {
            parts.push(format!("disk {a} -> {b} GiB"));
        }
        let mut s = format!("resized in place: {}", parts.join(", "));
        if self.needs_reboot() {
            s.push_str(" (VM restarted)");
        }
        s
    }
}

/// What happens to one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A new node.
    Create,
    /// Nothing on the Proxmox side (its machine configuration may still change).
    Keep,
    /// CPU, memory or disk size changed in place.
    Resize(Resize),
    /// The node is removed and created again; the reasons name what changed.
    Recreate(Vec<String>),
    /// The node leaves the cluster and its VM is deleted.
    Remove,
}

impl Action {
    /// The `node_status[*].action` text this action leaves in the state; `None` for
    /// [`Action::Keep`] (the previous text stays) and [`Action::Remove`].
    pub fn status_text(&self) -> Option<String> {
        match self {
            Action::Create => Some("created".into()),
            Action::Keep | Action::Remove => None,
            Action::Resize(r) => Some(r.describe()),
            Action::Recreate(why) => Some(format!("re-created: {}", why.join(", "))),
        }
    }
}

/// Why `old` must be re-created to become `new` (empty: it can be changed in place).
/// `vm` is the VM the state records for the node; `default_node` the provider's node.
pub fn recreate_reasons(
    cluster_name: &str,
    name: &str,
    old: &NodeModel,
    new: &NodeModel,
    vm_node: Option<&str>,
    vm_id: Option<u32>,
    default_node: Option<&str>,
) -> Vec<String> {
    let mut why = Vec::new();
    let mut diff = |what: &str, a: &str, b: &str| {
        if a != b {
            why.push(format!("{what} {a:?} -> {b:?}"));
        }
    };
    diff("role", &old.role, &new.role);
    let disk = |n: &NodeModel| {
        n.install_disk
            .clone()
            .unwrap_or_else(|| defaults::INSTALL_DISK.into())
    };
    diff("install_disk", &disk(old), &disk(new));
    let mac = |n: &NodeModel| {
        effective_mac(cluster_name, name, n)
            .unwrap_or_default()
            .to_ascii_uppercase()
    };
    diff("mac", &mac(old), &mac(new));
    match (&old.proxmox, &new.proxmox) {
        (Some(a), Some(b)) => {
            diff("proxmox.storage", &a.storage(), &b.storage());
            diff("proxmox.bridge", &a.bridge(), &b.bridge());
            let pve = |p: &PlacementModel| p.node.clone().or(default_node.map(str::to_string));
            if let (Some(x), Some(y)) = (vm_node.map(str::to_string).or(pve(a)), pve(b)) {
                diff("proxmox.node", &x, &y);
            }
            if let (Some(x), Some(y)) = (vm_id.or(a.vmid), b.vmid) {
                diff("proxmox.vmid", &x.to_string(), &y.to_string());
            }
        }
        (None, None) => {}
        (a, b) => {
            let kind = |p: &Option<PlacementModel>| {
                if p.is_some() {
                    "Proxmox VM"
                } else {
                    "existing machine"
                }
            };
            why.push(format!("{} -> {}", kind(a), kind(b)));
        }
    }
    why
}

/// The action of every node of `prior` and `new` (removed nodes included).
pub fn classify(
    prior: &ClusterModel,
    new: &ClusterModel,
    default_node: Option<&str>,
) -> BTreeMap<String, Action> {
    let old_nodes = prior.nodes();
    let new_nodes = new.nodes();
    let vms = prior.proxmox_vms.clone().unwrap_or_default();
    let mut out = BTreeMap::new();
    for name in old_nodes.keys() {
        if !new_nodes.contains_key(name) {
            out.insert(name.clone(), Action::Remove);
        }
    }
    for (name, n) in &new_nodes {
        let Some(o) = old_nodes.get(name) else {
            out.insert(name.clone(), Action::Create);
            continue;
        };
        let vm = vms.get(name);
        let why = recreate_reasons(
            &new.cluster_name,
            name,
            o,
            n,
            vm.map(|v| v.node.as_str()),
            vm.map(|v| v.vmid),
            default_node,
        );
        let action = if !why.is_empty() {
            Action::Recreate(why)
        } else {
            match (&o.proxmox, &n.proxmox) {
                (Some(a), Some(b)) => {
                    let r = Resize::between(a, b);
                    if r.is_empty() {
                        Action::Keep
                    } else {
                        Action::Resize(r)
                    }
                }
                _ => Action::Keep,
            }
        };
        out.insert(name.clone(), action);
    }
    out
}

/// Plan-time refusals: changes that cannot be done without losing data or etcd, each with
/// the attribute path it is about.
pub fn refusals(
    prior: &ClusterModel,
    new: &ClusterModel,
    actions: &BTreeMap<String, Action>,
) -> Vec<(AttributePath, String)> {
    let mut out = Vec::new();
    let old_nodes = prior.nodes();
    let new_nodes = new.nodes();
    for (name, a) in actions {
        if let Action::Resize(r) = a {
            if let Some((from, to)) = r.disk_gib.filter(|_| r.shrinks_disk()) {
                out.push((
                    AttributePath::attr("nodes")
                        .then_key(name)
                        .then_attr("proxmox")
                        .then_attr("disk_size"),
                    format!(
                        "nodes[{name:?}]: the system disk cannot shrink ({from} -> {to} GiB); \
                         Proxmox VE only grows disks"
                    ),
                ));
            }
        }
    }
    // etcd must keep at least one member at every step: additions join first, then
    // re-creations one at a time (the node leaves etcd, comes back and joins again).
    let is_cp = |n: Option<&NodeModel>| n.is_some_and(|n| n.role == "controlplane");
    let prior_cps = old_nodes
        .values()
        .filter(|n| n.role == "controlplane")
        .count();
    let added_cps = actions
        .iter()
        .filter(|(k, a)| **a == Action::Create && is_cp(new_nodes.get(*k)))
        .count();
    let recreated_cps: Vec<&String> = actions
        .iter()
        .filter(|(k, a)| matches!(a, Action::Recreate(_)) && is_cp(old_nodes.get(*k)))
        .map(|(k, _)| k)
        .collect();
    if !recreated_cps.is_empty() && prior_cps + added_cps < 2 {
        let mut msg = String::new();
        let _ = write!(
            msg,
            "re-creating {} would remove the cluster's only etcd member and lose etcd: add \
             another control plane first (one apply), then change this one",
            recreated_cps
                .iter()
                .map(|k| format!("nodes[{k:?}]"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for k in recreated_cps {
            out.push((AttributePath::attr("nodes").then_key(k), msg.clone()));
        }
    }
    out
}

/// The plan warning: every VM that will be re-created or deleted, and every VM restarted.
pub fn warning_text(prior: &ClusterModel, actions: &BTreeMap<String, Action>) -> Option<String> {
    let vms = prior.proxmox_vms.clone().unwrap_or_default();
    let vm = |k: &str| {
        vms.get(k)
            .map(|v| format!(" (VM {} on {})", v.vmid, v.node))
            .unwrap_or_default()
    };
    let mut lines = Vec::new();
    for (k, a) in actions {
        match a {
            Action::Remove => lines.push(format!(
                "nodes[{k:?}]{}: leaves the cluster and is DELETED",
                vm(k)
            )),
            Action::Recreate(why) => lines.push(format!(
                "nodes[{k:?}]{}: is DELETED and RE-CREATED ({}), one node at a time",
                vm(k),
                why.join(", ")
            )),
            Action::Resize(r) if r.needs_reboot() => lines.push(format!(
                "nodes[{k:?}]{}: {}, one node at a time",
                vm(k),
                r.describe()
            )),
            _ => {}
        }
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// `node_status` of `m` after `actions`: the effective MAC and size of every node and the
/// text of what was last done to it (the previous text when nothing is done now).
pub fn node_status(
    m: &ClusterModel,
    prior: Option<&BTreeMap<String, NodeStatus>>,
    actions: &BTreeMap<String, Action>,
) -> BTreeMap<String, NodeStatus> {
    m.nodes()
        .iter()
        .map(|(name, n)| {
            let action = actions
                .get(name)
                .and_then(Action::status_text)
                .or_else(|| {
                    prior
                        .and_then(|p| p.get(name))
                        .and_then(|s| s.action.clone())
                })
                .unwrap_or_else(|| "created".into());
            let p = n.proxmox.as_ref();
            let status = NodeStatus {
                action: Some(action),
                mac: effective_mac(&m.cluster_name, name, n),
                cores: p.map(PlacementModel::cores),
                memory: p.map(PlacementModel::memory),
                disk_size: p.map(PlacementModel::disk_size),
            };
            (name.clone(), status)
        })
        .collect()
}

/// The planned `proxmox_vms`: kept and resized nodes keep their VM; new and re-created ones
/// are known as far as the configuration says (`node`, `vmid`).
pub fn planned_vms(
    prior: &ClusterModel,
    new: &ClusterModel,
    actions: &BTreeMap<String, Action>,
    default_node: Option<&str>,
) -> Value {
    let vms = prior.proxmox_vms.clone().unwrap_or_default();
    let mut out = BTreeMap::new();
    for (name, n) in new.nodes() {
        let Some(p) = &n.proxmox else { continue };
        let kept = matches!(actions.get(&name), Some(Action::Keep | Action::Resize(_)));
        if kept && !vms.contains_key(&name) {
            // A kept node without a recorded VM (an earlier apply stopped half-way): what
            // the apply records for it is not known.
            return Value::unknown();
        }
        let v = match vms.get(&name).filter(|_| kept) {
            Some(vm) => Value::object([
                ("node", Value::from(vm.node.as_str())),
                ("vmid", Value::from(i64::from(vm.vmid))),
            ]),
            None => Value::object([
                (
                    "node",
                    p.node
                        .as_deref()
                        .or(default_node)
                        .map(Value::from)
                        .unwrap_or_else(Value::unknown),
                ),
                (
                    "vmid",
                    p.vmid
                        .map(|v| Value::from(i64::from(v)))
                        .unwrap_or_else(Value::unknown),
                ),
            ]),
        };
        out.insert(name, v);
    }
    Value::Map(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::talos_cluster::VmRef;

    fn node(role: &str, cores: Option<u32>) -> NodeModel {
        NodeModel {
            role: role.into(),
            address: "10.10.0.10/24".into(),
            proxmox: Some(PlacementModel {
                vmid: Some(110),
                cores,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn cluster(nodes: &[(&str, NodeModel)]) -> ClusterModel {
        ClusterModel {
            cluster_name: "c".into(),
            nodes: Some(
                nodes
                    .iter()
                    .map(|(k, n)| (k.to_string(), n.clone()))
                    .collect(),
            ),
            proxmox_vms: Some(
                nodes
                    .iter()
                    .map(|(k, _)| {
                        (
                            k.to_string(),
                            VmRef {
                                node: "pve".into(),
                                vmid: 110,
                            },
                        )
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn size_changes_are_in_place_and_placement_changes_recreate() {
        let old = cluster(&[("cp1", node("controlplane", Some(3)))]);
        let new = cluster(&[("cp1", node("controlplane", Some(4)))]);
        let a = classify(&old, &new, Some("pve"));
        assert_eq!(
            a["cp1"],
            Action::Resize(Resize {
                cores: Some((3, 4)),
                ..Default::default()
            })
        );
        // Defaults equal to explicit values are no change.
        let explicit = cluster(&[("cp1", node("controlplane", Some(defaults::CORES as u32)))]);
        let implicit = cluster(&[("cp1", node("controlplane", None))]);
        assert_eq!(
            classify(&implicit, &explicit, Some("pve"))["cp1"],
            Action::Keep
        );
        let mut moved = node("controlplane", Some(3));
        if let Some(p) = moved.proxmox.as_mut() {
            p.storage = Some("fast".into());
        }
        let a = classify(&old, &cluster(&[("cp1", moved)]), Some("pve"));
        assert!(
            matches!(&a["cp1"], Action::Recreate(w) if w[0].contains("storage")),
            "{a:?}"
        );
    }

    #[test]
    fn unsafe_changes_are_refused_with_paths() {
        let mut big = node("controlplane", Some(3));
        if let Some(p) = big.proxmox.as_mut() {
            p.disk_size = Some(20);
        }
        let old = cluster(&[("cp1", big)]);
        let new = cluster(&[("cp1", node("controlplane", Some(3)))]);
        let a = classify(&old, &new, Some("pve"));
        let r = refusals(&old, &new, &a);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0.to_string(), "nodes[\"cp1\"].proxmox.disk_size");

        // The only control plane cannot be re-created.
        let mut moved = node("controlplane", Some(3));
        moved.install_disk = Some("/dev/vda".into());
        let new = cluster(&[("cp1", moved.clone())]);
        let old = cluster(&[("cp1", node("controlplane", Some(3)))]);
        let a = classify(&old, &new, Some("pve"));
        let r = refusals(&old, &new, &a);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(r[0].1.contains("nodes[\"cp1\"]"), "{r:?}");
        // With a second control plane it can.
        let old2 = cluster(&[
            ("cp1", node("controlplane", Some(3))),
            ("cp2", node("controlplane", Some(3))),
        ]);
        let new2 = cluster(&[("cp1", moved), ("cp2", node("controlplane", Some(3)))]);
        let a = classify(&old2, &new2, Some("pve"));
        assert!(refusals(&old2, &new2, &a).is_empty());
        let w = warning_text(&old2, &a).unwrap();
        assert!(w.contains("nodes[\"cp1\"] (VM 110 on pve)"), "{w}");
        assert!(w.contains("RE-CREATED"), "{w}");
    }

    #[test]
    fn planned_vms_keep_known_ids() {
        let old = cluster(&[("cp1", node("controlplane", Some(3)))]);
        let mut w = node("worker", None);
        if let Some(p) = w.proxmox.as_mut() {
            p.vmid = Some(120);
        }
        let mut new = old.clone();
        new.nodes.as_mut().unwrap().insert("w1".into(), w);
        let a = classify(&old, &new, Some("pve"));
        let v = planned_vms(&old, &new, &a, Some("pve"));
        assert!(v.is_wholly_known(), "{v:?}");
        let id = |k: &str| {
            v.as_entries()
                .and_then(|e| e.get(k))
                .and_then(|o| o.get_attr("vmid"))
                .and_then(Value::as_i64)
        };
        assert_eq!((id("cp1"), id("w1")), (Some(110), Some(120)));
        // A kept node whose VM is not recorded: unknown, not a guess.
        let mut lost = old.clone();
        lost.proxmox_vms = Some(BTreeMap::new());
        let a = classify(&lost, &old, Some("pve"));
        assert!(planned_vms(&lost, &old, &a, Some("pve")).is_unknown());
    }
}
