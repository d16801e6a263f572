//! Delete: an etcd snapshot first when asked, nodes reset (workers, then control planes),
//! VMs and downloaded images deleted.

use super::OpError;
use std::time::Duration;

use waddle_framework::prelude::*;

use super::super::{model_of, node_ip};
use super::{
    bundle_of, control_planes, credentials, etcd_backup, make_env, owner_mark, provider_parts,
    reset_node,
};

// ---------------------------------------------------------------------------------------
// Delete
// ---------------------------------------------------------------------------------------

pub async fn delete(ctx: &Context, prior_state: Value, diags: &mut Diagnostics) {
    let Some(m) = model_of(&prior_state) else {
        // Returning without an error would make Terraform forget the resource and orphan
        // its VMs: keep it in the state until the state can be read.
        diags.error(
            "Cannot destroy the Talos cluster",
            "the prior state cannot be decoded, so the VMs and images this resource owns are \
             unknown; nothing was deleted and the resource stays in the state",
        );
        return;
    };
    let has_vms = m.proxmox_vms.as_ref().is_some_and(|v| !v.is_empty())
        || m.proxmox_images.as_ref().is_some_and(|v| !v.is_empty());
    let Some(mut parts) = provider_parts(ctx, has_vms, diags) else {
        return;
    };
    let pve = parts.pve.clone();
    let creds = super::super::wo::state_credentials(&m).or_else(|| {
        bundle_of(&m)
            .and_then(|b| credentials(&m, &b))
            .map(|(c, _)| c)
            .ok()
    });
    let nodes = m.nodes();
    parts.connect.connect_timeout = Duration::from_secs(10);
    parts.connect.request_timeout = Some(Duration::from_secs(60));
    let before_destroy = m
        .etcd_backup
        .as_ref()
        .is_some_and(|b| b.takes(super::super::etcd::BEFORE_DESTROY))
        && m.bootstrapped == Some(true)
        && !control_planes(&m).is_empty();
    if let (true, Some(c)) = (before_destroy, creds.clone()) {
        let env = make_env(parts.clone(), c, m.timeout(super::super::Op::Delete), ctx);
        let mut mm = m.clone();
        match etcd_backup::take(&env, &mut mm, super::super::etcd::BEFORE_DESTROY).await {
            Ok(r) => diags.warning(
                "etcd snapshot taken before destroy",
                format!(
                    "{} (sha256 {}, {} bytes, from nodes[{:?}]); restore it into a new cluster \
                     with etcd_restore",
                    r.path, r.sha256, r.size, r.node
                ),
            ),
            Err(e) => {
                diags.error(
                    "etcd snapshot before destroy failed: nothing was destroyed",
                    format!(
                        "{e}. To destroy without a snapshot, remove \"before_destroy\" from \
                         etcd_backup.when and apply first."
                    ),
                );
                return;
            }
        }
    }
    if let (Some(creds), true) = (creds, m.on_destroy() != "none") {
        let env = make_env(parts, creds, m.timeout(super::super::Op::Delete), ctx);
        let graceful = m.on_destroy() == "graceful";
        let workers = nodes
            .iter()
            .filter(|(_, n)| n.role != "controlplane")
            .map(|(k, n)| reset_node(&env, k, node_ip(n), graceful));
        for r in futures::future::join_all(workers).await {
            if let Err(e) = r {
                diags.warning(
                    "Node reset failed (the VM is deleted anyway)",
                    e.to_string(),
                );
            }
        }
        let cps = control_planes(&m);
        let last = cps.len().saturating_sub(1);
        for (i, (k, n)) in cps.iter().enumerate() {
            // The last etcd member cannot leave gracefully.
            if let Err(e) = reset_node(&env, k, node_ip(n), graceful && i != last).await {
                diags.warning(
                    "Node reset failed (the VM is deleted anyway)",
                    e.to_string(),
                );
            }
        }
    }
    let Some(pve) = pve else {
        return;
    };
    let vms = m.proxmox_vms.clone().unwrap_or_default();
    let dels = vms.iter().map(|(name, vm)| {
        let pve = pve.clone();
        let mark = owner_mark(&m.cluster_name, name);
        let hostname = nodes
            .get(name)
            .and_then(|n| n.hostname.clone())
            .unwrap_or_else(|| name.clone());
        async move {
            pve.shutdown_and_delete_vm(vm.vmid, Duration::from_secs(30), &mark, Some(&hostname))
                .await
                .map_err(|e| {
                    OpError::Step(format!("nodes[{name:?}]: deleting VM {}: {e}", vm.vmid))
                })
        }
    });
    for r in futures::future::join_all(dels).await {
        if let Err(e) = r {
            diags.error("Deleting a Talos node VM failed", e.to_string());
        }
    }
    if diags.has_errors() {
        return;
    }
    for img in m.proxmox_images.clone().unwrap_or_default() {
        let storage = img.volume.split(':').next().unwrap_or_default().to_string();
        if let Err(e) = pve.delete_volume(&img.node, &storage, &img.volume).await {
            diags.error(
                "Deleting the downloaded Talos image failed",
                format!("{} on {}: {e}", img.volume, img.node),
            );
        }
    }
}
