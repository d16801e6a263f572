//! What a VM resource owns in Proxmox and how it finds it again: the VM (marked with
//! `waddle-owner: <type>/<node>/<name>`, see `waddle_proxmox::OwnerMark`) and its seed ISO
//! (named after the VMID).
//!
//! * A create first removes VMs carrying its mark that no state knows (left by an
//!   interrupted create) with their seed ISOs, and refuses a configured VMID that is taken by a
//!   VM that is not its own.
//! * A read whose VM is gone keeps the state while the seed ISO still exists (`id` becomes
//!   empty, which the plan turns into a replacement), so the ISO is never forgotten.
//! * Delete checks the mark before deleting the VM and deletes the seed ISO even when the VM
//!   is already gone.

use std::time::Duration;

use waddle_proxmox::{Client, ContentType, OwnerMark};

use super::VmError;

/// The seed ISOs a state may own: the one named after `vmid` on `image_storage`, and the
/// recorded one when it differs.
pub fn seed_isos(image_storage: &str, iso_name: &str, recorded: Option<&str>) -> Vec<String> {
    let mut isos = vec![waddle_proxmox::volume_id(
        image_storage,
        ContentType::Iso,
        iso_name,
    )];
    if let Some(s) = recorded.filter(|s| !s.is_empty()) {
        if !isos.iter().any(|i| i == s) {
            isos.push(s.to_string());
        }
    }
    isos
}

fn storage_of(volid: &str) -> &str {
    volid.split_once(':').map(|(s, _)| s).unwrap_or_default()
}

/// Delete the volumes in `isos` on `node` (absent ones are fine).
pub async fn delete_isos(client: &Client, node: &str, isos: &[String]) -> Result<(), VmError> {
    for volid in isos {
        client
            .delete_volume(node, storage_of(volid), volid)
            .await
            .map_err(VmError::api(format!("deleting the seed ISO {volid}")))?;
    }
    Ok(())
}

/// Whether one of `isos` still exists on `node`.
pub async fn any_iso_exists(client: &Client, node: &str, isos: &[String]) -> Result<bool, VmError> {
    for volid in isos {
        let vols = client
            .list_storage_content(node, storage_of(volid), Some("iso"))
            .await
            .map_err(VmError::api(format!("listing {}", storage_of(volid))))?;
        if vols.iter().any(|v| &v.volid == volid) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Before a create: delete the VMs carrying `mark` (no state knows them: a create starts
/// from none) and the seed ISO named after each (`leftover_iso(vmid)`), then make sure a
/// configured VMID is free — a VM there that is not ours is refused, naming it.
pub async fn prepare_create(
    client: &Client,
    mark: &OwnerMark,
    vmid: Option<u32>,
    leftover_iso: impl Fn(u32) -> String,
    shutdown: Duration,
) -> Result<(), VmError> {
    let leftovers = client
        .find_owned_vms(mark)
        .await
        .map_err(VmError::api("looking for left-over VMs of this resource"))?;
    for vm in leftovers {
        tracing::info!(
            vmid = vm.vmid,
            "deleting a left-over VM of an interrupted create"
        );
        client
            .shutdown_and_delete_vm(vm.vmid, shutdown, mark, None)
            .await
            .map_err(VmError::api(format!(
                "deleting the left-over VM {}",
                vm.vmid
            )))?;
        delete_isos(client, &vm.node, &[leftover_iso(vm.vmid)]).await?;
    }
    if let Some(vmid) = vmid {
        if let Some(vm) = client
            .locate_vm(vmid)
            .await
            .map_err(VmError::api(format!("checking VMID {vmid}")))?
        {
            let cfg = client
                .vm_config(&vm.node, vmid)
                .await
                .map_err(VmError::api(format!("reading VM {vmid}")))?;
            mark.check(vmid, &cfg, None).map_err(|e| {
                VmError::Refused(format!(
                    "vmid {vmid} is taken: {e}. Choose another vmid or remove that VM."
                ))
            })?;
        }
    }
    Ok(())
}
