//! What the SNI proxy owns in Proxmox and how it finds it again: the VM (marked with
//! `waddle-owner: waddle_sni_proxy/<node>/<name>`), and the seed ISO (named after the VMID).
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

use super::{seed_iso_name, SniProxyState, DEFAULT_NAME, TYPE_NAME};

/// The mark of the SNI proxy VM named `name` on `node`.
pub fn owner_mark(node: &str, name: &str) -> OwnerMark {
    OwnerMark::new(&[TYPE_NAME, node, name])
}

/// The state's VM name (the default when unset).
pub fn vm_name(st: &SniProxyState) -> String {
    st.name.clone().unwrap_or_else(|| DEFAULT_NAME.into())
}

/// The seed ISOs a state may own: the recorded one and the one named after its VMID.
pub fn seed_isos(st: &SniProxyState, vmid: u32) -> Vec<String> {
    let mut isos = vec![waddle_proxmox::volume_id(
        st.image_storage(),
        ContentType::Iso,
        &seed_iso_name(vmid),
    )];
    if let Some(s) = st.seed_iso.clone().filter(|s| !s.is_empty()) {
        if !isos.contains(&s) {
            isos.push(s);
        }
    }
    isos
}

fn storage_of(volid: &str) -> &str {
    volid.split_once(':').map(|(s, _)| s).unwrap_or_default()
}

/// Delete the volumes in `isos` on `node` (absent ones are fine).
pub async fn delete_isos(client: &Client, node: &str, isos: &[String]) -> Result<(), String> {
    for volid in isos {
        client
            .delete_volume(node, storage_of(volid), volid)
            .await
            .map_err(|e| format!("deleting the seed ISO {volid}: {e}"))?;
    }
    Ok(())
}

/// Whether one of `isos` still exists on `node`.
pub async fn any_iso_exists(client: &Client, node: &str, isos: &[String]) -> Result<bool, String> {
    for volid in isos {
        let vols = client
            .list_storage_content(node, storage_of(volid), Some("iso"))
            .await
            .map_err(|e| format!("listing {}: {e}", storage_of(volid)))?;
        if vols.iter().any(|v| &v.volid == volid) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Before a create: delete the VMs carrying `mark` (no state knows them: a create starts
/// from none) and their seed ISOs, then make sure a configured VMID is free — a VM there
/// that is not ours is refused, naming it.
pub async fn prepare_create(
    client: &Client,
    st: &SniProxyState,
    mark: &OwnerMark,
    shutdown: Duration,
) -> Result<(), String> {
    let leftovers = client
        .find_owned_vms(mark)
        .await
        .map_err(|e| format!("looking for left-over VMs of this proxy: {e}"))?;
    for vm in leftovers {
        tracing::info!(
            vmid = vm.vmid,
            "deleting a left-over VM of an interrupted create"
        );
        client
            .shutdown_and_delete_vm(vm.vmid, shutdown, mark, None)
            .await
            .map_err(|e| format!("deleting the left-over VM {}: {e}", vm.vmid))?;
        let mut isos = seed_isos(st, vm.vmid);
        isos.truncate(1); // the recorded ISO is the planned one, not the left-over's
        delete_isos(client, &vm.node, &isos).await?;
    }
    if let Some(vmid) = st.vmid {
        if let Some(vm) = client
            .locate_vm(vmid)
            .await
            .map_err(|e| format!("checking VMID {vmid}: {e}"))?
        {
            let cfg = client
                .vm_config(&vm.node, vmid)
                .await
                .map_err(|e| format!("reading VM {vmid}: {e}"))?;
            mark.check(vmid, &cfg, None).map_err(|e| {
                format!("vmid {vmid} is taken: {e}. Choose another vmid or remove that VM.")
            })?;
        }
    }
    Ok(())
}

/// Where the VM keeps the configuration inputs it was built from, so an import can read
/// back what Proxmox does not know (routes, NIC addresses, cloud-init inputs).
pub const INPUTS_PATH: &str = "/etc/haproxy/waddle-inputs.json";

/// The configuration inputs of a state as JSON, `timeouts` included (identity and computed
/// attributes left out; nothing in them is secret: SSH keys are public keys).
pub fn inputs_json(st: &SniProxyState) -> String {
    let inputs = SniProxyState {
        id: None,
        node: None,
        vmid: None,
        haproxy_cfg: None,
        exact_map: None,
        wildcard_map: None,
        config_hash: None,
        seed_iso: None,
        ..st.clone()
    };
    serde_json::to_string_pretty(&inputs).unwrap_or_default()
}

/// An imported state: take what the VM's config did not give from the inputs it keeps
/// (attributes already known win). Unparseable inputs are ignored.
pub fn adopt_inputs(st: &mut SniProxyState, json: &str) {
    let Ok(i) = serde_json::from_str::<SniProxyState>(json) else {
        return;
    };
    fn fill<T>(slot: &mut Option<T>, v: Option<T>) {
        if slot.is_none() {
            *slot = v;
        }
    }
    fill(&mut st.name, i.name);
    fill(&mut st.storage, i.storage);
    fill(&mut st.cores, i.cores);
    fill(&mut st.memory, i.memory);
    fill(&mut st.disk_size, i.disk_size);
    fill(&mut st.image_url, i.image_url);
    fill(&mut st.image_storage, i.image_storage);
    fill(&mut st.public_nic, i.public_nic);
    fill(&mut st.private_nic, i.private_nic);
    fill(&mut st.dns_servers, i.dns_servers);
    fill(&mut st.admin_user, i.admin_user);
    fill(&mut st.ssh_authorized_keys, i.ssh_authorized_keys);
    fill(&mut st.routes, i.routes);
    fill(&mut st.http_backend, i.http_backend);
    fill(&mut st.listen, i.listen);
    fill(&mut st.maxconn, i.maxconn);
    fill(&mut st.proxy_timeouts, i.proxy_timeouts);
    fill(&mut st.public_address, i.public_address);
    fill(&mut st.private_address, i.private_address);
    fill(&mut st.timeouts, i.timeouts);
}
