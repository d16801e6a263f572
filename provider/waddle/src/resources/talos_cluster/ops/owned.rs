//! What a Talos cluster owns in Proxmox and how it finds it again: node VMs carry the mark
//! `waddle-owner: waddle_talos_cluster/<cluster>/<node>`, the downloaded disk image carries
//! the cluster name in its file name.

use super::OpError;
use std::time::Duration;

use waddle_proxmox::{OwnerMark, Ownership};

use super::super::{ClusterModel, NodeModel};
use super::R;

/// The ownership mark of a node's VM.
pub fn owner_mark(cluster_name: &str, node: &str) -> OwnerMark {
    OwnerMark::new(&[super::super::TYPE_NAME, cluster_name, node])
}

/// The cluster name as it may appear in tags and file names.
pub(super) fn cluster_slug(cluster_name: &str) -> String {
    cluster_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}

/// The file name of this cluster's copy of the disk image: the cluster name in the file name
/// marks it as the cluster's own.
pub fn owned_image_file_name(cluster_name: &str, file: &str) -> String {
    format!("waddle-{}-{file}", cluster_slug(cluster_name))
}

/// The existing VM a node adopts: the VM with the configured or recorded VMID when it
/// carries this node's mark (a recorded VM without any mark is accepted by name: it predates
/// marks), else — without a configured VMID — a VM carrying the mark that the state does not
/// know. A VM with the VMID that is not this node's is refused, never adopted. In a create
/// (`fresh`: nothing is recorded yet) a VM carrying the mark was left by an interrupted create
/// whose secrets are lost: it is deleted and the node starts over; so are further ones.
pub(super) async fn adoptable_vm(
    pve: &waddle_proxmox::Client,
    m: &ClusterModel,
    name: &str,
    n: &NodeModel,
    (vmid, recorded): (Option<u32>, Option<u32>),
    fresh: bool,
) -> R<Option<waddle_proxmox::ClusterVm>> {
    let mark = owner_mark(&m.cluster_name, name);
    let hostname = n.hostname.clone().unwrap_or_else(|| name.to_string());
    let mut found = Vec::new();
    if let Some(v) = vmid.or(recorded) {
        if let Some(vm) = pve.locate_vm(v).await.map_err(|e| e.to_string())? {
            let cfg = pve
                .vm_config(&vm.node, v)
                .await
                .map_err(|e| e.to_string())?;
            let by_name = (recorded == Some(v)).then_some(hostname.as_str());
            mark.check(v, &cfg, by_name).map_err(|e| {
                format!(
                    "VMID {v} is taken by a VM that is not this node's: {e}. Choose another \
                     proxmox.vmid or remove that VM."
                )
            })?;
            if mark.ownership(&cfg) != Ownership::Ours {
                pve.mark_vm(&vm.node, v, &mark)
                    .await
                    .map_err(|e| OpError::Step(format!("marking VM {v} as this node's: {e}")))?;
            }
            found.push(vm);
        }
    } else {
        found = pve
            .find_owned_vms(&mark)
            .await
            .map_err(|e| OpError::Step(format!("looking for this node's VMs: {e}")))?;
    }
    let mut found = found.into_iter();
    let adopt = if fresh { None } else { found.next() };
    for extra in found {
        tracing::info!(node = name, vmid = extra.vmid, "deleting a left-over VM");
        pve.shutdown_and_delete_vm(extra.vmid, Duration::from_secs(30), &mark, None)
            .await
            .map_err(|e| OpError::Step(format!("deleting the left-over VM {}: {e}", extra.vmid)))?;
    }
    Ok(adopt)
}
