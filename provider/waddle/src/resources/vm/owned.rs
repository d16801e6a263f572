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
//! * The downloaded cloud image: a VM records the image it was created from in its
//!   description (`waddle-image: <volid>`) when waddle owns that image — this create
//!   downloaded it, or another waddle VM on the node already records it (the image is shared
//!   by waddle VMs). Delete reads that line before deleting the VM and then deletes the image
//!   when no other waddle-marked VM on the node records it. An image waddle did not download
//!   (there before, recorded by no waddle VM) is never recorded, so never deleted. The record
//!   lives on the VM, not in the state, so it survives an import and needs no state upgrade.
//!   Limit: a VM deleted by hand takes its record with it; if it was the only one, the image
//!   is no longer known as waddle's and is kept (never deleted on a guess).

use std::time::Duration;

use waddle_proxmox::{Client, ContentType, OwnerMark, OWNER_TAG};

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

/// The description line recording the image a VM was created from.
const IMAGE_LINE: &str = "waddle-image: ";

/// `waddle-image: <volid>`.
pub fn image_line(volid: &str) -> String {
    format!("{IMAGE_LINE}{volid}")
}

/// The image a VM description records, if any.
pub fn image_of(description: &str) -> Option<String> {
    description
        .lines()
        .find_map(|l| l.trim().strip_prefix(IMAGE_LINE))
        .map(|v| v.trim().to_string())
}

/// The waddle-marked VMs on `node` (other than `except`) that record `volid`.
pub async fn image_claims(
    client: &Client,
    node: &str,
    volid: &str,
    except: Option<u32>,
) -> Result<Vec<u32>, VmError> {
    let mut out = Vec::new();
    let vms = client
        .cluster_vms()
        .await
        .map_err(VmError::api("listing VMs"))?;
    for vm in vms {
        if vm.kind != "qemu"
            || vm.node != node
            || Some(vm.vmid) == except
            || !vm.tags.iter().any(|t| t == OWNER_TAG)
        {
            continue;
        }
        match client.vm_config(node, vm.vmid).await {
            Ok(cfg) => {
                let desc = cfg.get_str("description").unwrap_or_default();
                if image_of(&desc).as_deref() == Some(volid) {
                    out.push(vm.vmid);
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(VmError::api(format!("reading VM {}", vm.vmid))(e)),
        }
    }
    Ok(out)
}

/// After a VM that recorded `volid` is deleted: delete the image when no other waddle VM on
/// `node` records it (absent is fine).
pub async fn release_image(client: &Client, node: &str, volid: &str) -> Result<(), VmError> {
    if !image_claims(client, node, volid, None).await?.is_empty() {
        return Ok(());
    }
    client
        .delete_volume(node, storage_of(volid), volid)
        .await
        .map(|_| ())
        .map_err(VmError::api(format!(
            "deleting the downloaded image {volid}"
        )))
}

/// The image a VM records (`None`: none, or the VM is gone).
pub async fn recorded_image(
    client: &Client,
    node: &str,
    vmid: u32,
) -> Result<Option<String>, VmError> {
    match client.vm_config(node, vmid).await {
        Ok(cfg) => Ok(image_of(&cfg.get_str("description").unwrap_or_default())),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(VmError::api(format!("reading VM {vmid}"))(e)),
    }
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
        let image = recorded_image(client, &vm.node, vm.vmid).await?;
        client
            .shutdown_and_delete_vm(vm.vmid, shutdown, mark, None)
            .await
            .map_err(VmError::api(format!(
                "deleting the left-over VM {}",
                vm.vmid
            )))?;
        delete_isos(client, &vm.node, &[leftover_iso(vm.vmid)]).await?;
        if let Some(volid) = image {
            release_image(client, &vm.node, &volid).await?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_line_round_trips_beside_the_mark() {
        let desc = format!(
            "waddle_teleport_node: Teleport\n{}\nwaddle-owner: waddle_teleport_node/pve/teleport",
            image_line("local:import/debian-12-genericcloud-amd64.qcow2")
        );
        assert_eq!(
            image_of(&desc).as_deref(),
            Some("local:import/debian-12-genericcloud-amd64.qcow2")
        );
        assert_eq!(image_of("waddle_sni_proxy: HAProxy"), None);
    }
}
