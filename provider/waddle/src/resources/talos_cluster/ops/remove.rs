//! Removing a node from a running cluster: leave etcd, reset, delete its Kubernetes Node
//! object, then its VM.

use super::OpError;
use std::time::Duration;

use waddle_talos::api::ResetOptions;

use super::super::{node_ip, ClusterModel, NodeModel};
use super::{kube, owner_mark, Created, Env, R};

// ---------------------------------------------------------------------------------------
// Update
// ---------------------------------------------------------------------------------------

pub(super) async fn reset_node(env: &Env, name: &str, ip: &str, graceful: bool) -> R<()> {
    let c = env
        .mtls(ip)
        .await
        .map_err(|e| OpError::Step(format!("nodes[{name:?}]: {e}")))?;
    c.reset(&ResetOptions {
        graceful,
        reboot: false,
        system_partitions_to_wipe: Vec::new(),
    })
    .await
    .map_err(|e| OpError::Step(format!("nodes[{name:?}]: reset: {e}")))
}

/// Removes a node from the cluster: leave etcd (control planes), reset, delete its VM.
pub(crate) async fn remove_node(
    env: &Env,
    m: &ClusterModel,
    name: &str,
    n: &NodeModel,
    remaining_cp: Option<&NodeModel>,
    created: &Created,
    warnings: &mut Vec<String>,
) -> R<()> {
    let ip = node_ip(n).to_string();
    let hostname = n.hostname.clone().unwrap_or_else(|| name.to_string());
    if n.role == "controlplane" {
        match env.mtls(&ip).await {
            Ok(c) => {
                if let Err(e) = c.etcd_leave().await {
                    warnings.push(format!("nodes[{name:?}]: etcd leave: {e}"));
                }
            }
            Err(e) => warnings.push(format!("nodes[{name:?}]: {e}")),
        }
        // Make sure the member is gone (the node may have been unreachable).
        if let Some(cp) = remaining_cp {
            if let Ok(c) = env.mtls(node_ip(cp)).await {
                if let Ok(members) = c.etcd_members().await {
                    for mem in members.iter().filter(|x| x.hostname == hostname) {
                        if let Err(e) = c.etcd_remove_member(mem.id).await {
                            warnings.push(format!("nodes[{name:?}]: etcd remove member: {e}"));
                        }
                    }
                }
            }
        }
    }
    if m.on_destroy() != "none" {
        let graceful = m.on_destroy() == "graceful" && n.role != "controlplane";
        if let Err(e) = reset_node(env, name, &ip, graceful).await {
            warnings.push(e.to_string());
        }
    }
    // The node has left etcd and stopped: its Kubernetes Node object goes, before its VM.
    if let Some(w) = delete_kube_node(env, m, name, &hostname).await {
        warnings.push(w);
    }
    let vm = created.vms.lock().ok().and_then(|v| v.get(name).cloned());
    if let Some(vm) = vm {
        let pve = env.pve()?;
        let mark = owner_mark(&m.cluster_name, name);
        pve.shutdown_and_delete_vm(vm.vmid, Duration::from_secs(30), &mark, Some(&hostname))
            .await
            .map_err(|e| OpError::Step(format!("nodes[{name:?}]: deleting VM {}: {e}", vm.vmid)))?;
        created.remove_vm(name);
        tracing::info!(node = name, vmid = vm.vmid, "VM deleted");
    }
    Ok(())
}

/// Deletes the Kubernetes Node object of a removed node with the admin kubeconfig (three
/// attempts); a warning naming the `kubectl` command when it could not.
pub(super) async fn delete_kube_node(
    env: &Env,
    m: &ClusterModel,
    name: &str,
    hostname: &str,
) -> Option<String> {
    let kc = m.kubeconfig.as_deref().filter(|k| !k.is_empty())?;
    let undone = |e: &str| {
        format!(
            "nodes[{name:?}]: its Kubernetes Node object {hostname:?} was not deleted ({e}); \
             delete it with `kubectl delete node {hostname}`"
        )
    };
    let admin = match kube::KubeAdmin::from_kubeconfig(kc, env.proxy_url.as_deref()) {
        Ok(a) => a,
        Err(e) => return Some(undone(&e.to_string())),
    };
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 && env.sleep(Duration::from_secs(1)).await.is_err() {
            break;
        }
        match admin.delete_node(hostname).await {
            Ok(existed) => {
                tracing::info!(node = name, existed, "Kubernetes Node object deleted");
                return None;
            }
            Err(e) => last = e.to_string(),
        }
    }
    Some(undone(&last))
}
