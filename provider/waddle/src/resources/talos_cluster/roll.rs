//! The rolling part of an update: nodes resized in place or re-created, strictly one node at
//! a time (workers first, then control planes), and never while etcd is short of a member.
//!
//! * Resize: CPU/memory through the VM configuration (pending in Proxmox while the VM runs),
//!   the system disk grown with `resize`, then — for CPU/memory — an ACPI shutdown and a
//!   start, which applies the pending values. The node must come back healthy (and, for a
//!   control plane, etcd must be healthy with every member) before the next node.
//! * Re-create: the node leaves etcd, is reset and its VM deleted; it is provisioned again
//!   and must join and be healthy before the next node. A control plane is only re-created
//!   when another etcd member stays (checked at plan, see `changes::refusals`).
//!
//! Progress is reported node by node so an interrupted roll leaves a state from which the
//! next plan shows the remaining work.

use super::ops::OpError;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use waddle_proxmox::Params;

use super::changes::{Action, Resize};
use super::ops::{node_health, provision_all, remove_node, wait_configured, Attempt, Created, Env};
use super::{node_ip, ClusterModel, NodeModel, VmRef};

type R<T> = Result<T, OpError>;

/// How long Proxmox waits for the guest's ACPI shutdown before it stops the VM.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(120);

/// The outcome of a roll: the nodes it finished, and the error it stopped at.
#[derive(Debug, Default)]
pub struct Rolled {
    pub done: BTreeSet<String>,
    pub error: Option<String>,
}

fn control_planes(nodes: &BTreeMap<String, NodeModel>) -> Vec<(String, NodeModel)> {
    nodes
        .iter()
        .filter(|(_, n)| n.role == "controlplane")
        .map(|(k, n)| (k.clone(), n.clone()))
        .collect()
}

/// Waits until etcd has exactly the members `cps` and each of them runs a healthy etcd.
pub async fn etcd_ready(env: &Env, cps: &[(String, NodeModel)]) -> R<()> {
    let Some((_, first)) = cps.first() else {
        return Ok(());
    };
    env.retry("etcd: every member healthy", || async {
        for (name, n) in cps {
            if let Err(e) = node_health(env, name, n).await {
                return Attempt::Again(e.to_string());
            }
        }
        let c = match env.mtls(node_ip(first)).await {
            Ok(c) => c,
            Err(e) => return Attempt::Again(e.to_string()),
        };
        match c.etcd_members().await {
            Ok(m) if m.len() == cps.len() => Attempt::Done(()),
            Ok(m) => Attempt::Again(format!("etcd has {} of {} members", m.len(), cps.len())),
            Err(e) => Attempt::Again(format!("etcd members: {e}")),
        }
    })
    .await
}

/// Waits until the node answers and its services (etcd on a control plane) are healthy.
async fn node_back(env: &Env, name: &str, n: &NodeModel) -> R<()> {
    wait_configured(env, name, node_ip(n)).await?;
    env.retry(&format!("nodes[{name:?}]: healthy"), || async {
        match node_health(env, name, n).await {
            Ok(()) => Attempt::Done(()),
            Err(e) => Attempt::Again(e.to_string()),
        }
    })
    .await
}

/// Changes CPU, memory and disk size of a node's VM in place; restarts it for CPU/memory.
pub async fn resize_vm(env: &Env, name: &str, vm: &VmRef, r: &Resize) -> R<()> {
    let pve = env.pve()?;
    let at = |what: &str, e: waddle_proxmox::Error| {
        format!(
            "nodes[{name:?}]: VM {} on {}: {what}: {e}",
            vm.vmid, vm.node
        )
    };
    if r.needs_reboot() {
        let mut p = Params::new();
        if let Some((_, c)) = r.cores {
            p = p.int("cores", i64::from(c));
        }
        if let Some((_, m)) = r.memory {
            p = p.int("memory", i64::try_from(m).unwrap_or(i64::MAX));
        }
        pve.update_vm_config(&vm.node, vm.vmid, &p)
            .await
            .map_err(|e| at("changing CPU/memory", e))?;
    }
    if let Some((_, gib)) = r.disk_gib {
        pve.resize_disk(&vm.node, vm.vmid, "scsi0", &format!("{gib}G"))
            .await
            .map_err(|e| at("growing the system disk", e))?;
    }
    if r.needs_reboot() {
        tracing::info!(node = name, vmid = vm.vmid, "restarting the VM");
        pve.shutdown_vm(&vm.node, vm.vmid, SHUTDOWN_TIMEOUT)
            .await
            .map_err(|e| at("shutdown", e))?;
        pve.start_vm(&vm.node, vm.vmid)
            .await
            .map_err(|e| at("start", e))?;
    }
    Ok(())
}

/// What a roll works on.
pub struct RollInput<'a> {
    pub prior: &'a ClusterModel,
    pub m: &'a ClusterModel,
    pub actions: &'a BTreeMap<String, Action>,
    pub configs: &'a BTreeMap<String, String>,
    pub created: &'a Created,
}

/// Resizes and re-creates nodes one at a time (workers first, then control planes).
pub async fn roll(env: &Env, input: RollInput<'_>, warnings: &mut Vec<String>) -> Rolled {
    let RollInput {
        prior,
        m,
        actions,
        configs,
        created,
    } = input;
    let old_nodes = prior.nodes();
    let new_nodes = m.nodes();
    // The cluster as it is now: prior nodes plus the ones added before the roll.
    let mut current = old_nodes.clone();
    for (k, a) in actions {
        if *a == Action::Create {
            if let Some(n) = new_nodes.get(k) {
                current.insert(k.clone(), n.clone());
            }
        }
    }
    let mut order: Vec<(String, NodeModel)> = new_nodes
        .iter()
        .filter(|(k, _)| {
            matches!(
                actions.get(*k),
                Some(Action::Resize(_) | Action::Recreate(_))
            )
        })
        .map(|(k, n)| (k.clone(), n.clone()))
        .collect();
    let was_cp = |k: &str| old_nodes.get(k).is_some_and(|o| o.role == "controlplane");
    order.sort_by_key(|(k, n)| was_cp(k) || n.role == "controlplane");
    let mut out = Rolled::default();
    for (name, n) in order {
        let touches_etcd = was_cp(&name) || n.role == "controlplane";
        if touches_etcd {
            // Never take a member down while etcd is short of one.
            if let Err(e) = etcd_ready(env, &control_planes(&current)).await {
                out.error = Some(format!(
                    "not changing nodes[{name:?}]: etcd is not healthy with all members: {e}"
                ));
                return out;
            }
        }
        let step = match actions.get(&name) {
            Some(Action::Resize(r)) => resize_step(env, created, &name, &n, r).await,
            Some(Action::Recreate(_)) => {
                let old = old_nodes.get(&name).cloned().unwrap_or_default();
                let anchor = control_planes(&current)
                    .into_iter()
                    .find(|(k, _)| *k != name)
                    .map(|(_, c)| c);
                recreate_step(env, m, &name, (&old, &n), anchor.as_ref(), configs, created)
                    .await
                    .map_err(|(e, w)| {
                        warnings.extend(w);
                        e
                    })
                    .map(|w| warnings.extend(w))
            }
            _ => Ok(()),
        };
        if let Err(e) = step {
            out.error = Some(e.to_string());
            return out;
        }
        current.insert(name.clone(), n.clone());
        if touches_etcd {
            if let Err(e) = etcd_ready(env, &control_planes(&current)).await {
                out.error = Some(format!("after nodes[{name:?}]: {e}"));
                return out;
            }
        }
        tracing::info!(node = name, "node rolled");
        out.done.insert(name);
    }
    out
}

async fn resize_step(env: &Env, created: &Created, name: &str, n: &NodeModel, r: &Resize) -> R<()> {
    let vm = created
        .vms
        .lock()
        .ok()
        .and_then(|v| v.get(name).cloned())
        .ok_or_else(|| OpError::Step(format!("nodes[{name:?}]: no VM recorded for the node")))?;
    resize_vm(env, name, &vm, r).await?;
    node_back(env, name, n).await
}

/// Removes the node and provisions it again. Returns the warnings of the removal.
async fn recreate_step(
    env: &Env,
    m: &ClusterModel,
    name: &str,
    (old, new): (&NodeModel, &NodeModel),
    anchor: Option<&NodeModel>,
    configs: &BTreeMap<String, String>,
    created: &Created,
) -> Result<Vec<String>, (OpError, Vec<String>)> {
    let mut warnings = Vec::new();
    tracing::info!(node = name, "re-creating node");
    if let Err(e) = remove_node(env, m, name, old, anchor, created, &mut warnings).await {
        return Err((e, warnings));
    }
    let list = [(name.to_string(), new.clone())];
    if let Some((_, e)) = provision_all(env, m, &list, configs, created)
        .await
        .into_iter()
        .next()
    {
        return Err((e.into(), warnings));
    }
    match node_back(env, name, new).await {
        Ok(()) => Ok(warnings),
        Err(e) => Err((e, warnings)),
    }
}
