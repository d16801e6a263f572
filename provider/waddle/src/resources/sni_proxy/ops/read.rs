//! Read: a VM that no longer exists (or is no longer ours) is gone — kept in state while its
//! seed ISO exists; otherwise the VM config refreshes the VM attributes and the live
//! HAProxy files, hashed, show drift. An import reads back the inputs the VM keeps.

use waddle_framework::prelude::*;
use waddle_proxmox::{Client, Guest};

use super::haproxy;
use super::{client, Error};
use crate::resources::sni_proxy::model::{
    adopt_inputs, owner_mark, refresh_from_config, SniProxyState, INPUTS_PATH,
};
use crate::resources::vm::{self, owned};

pub async fn read(
    ctx: &Context,
    mut st: SniProxyState,
    diags: &mut Diagnostics,
) -> Result<Option<SniProxyState>, Error> {
    let client = client(ctx)?;
    let Some(vmid) = st.vmid else {
        return Ok(None);
    };
    let importing = st.routes.is_none() && st.public_nic.is_none();
    let node = match st.node.clone() {
        Some(n) => n,
        None => match client.locate_vm(vmid).await {
            Ok(Some(vm)) => vm.node,
            Ok(None) => return Ok(None),
            Err(e) => return Err(Error::new("Reading the VM failed", e)),
        },
    };
    let cfg = match client.vm_config(&node, vmid).await {
        Ok(c) => c,
        Err(e) if e.is_not_found() => return Ok(gone(&client, &node, st, diags).await),
        Err(e) => return Err(Error::new("Reading the VM failed", e)),
    };
    // A VM with our VMID that is not ours (ours was deleted by hand and the id reused):
    // ours is gone. An import names its VM explicitly and is taken as is.
    let name = st.vm_name();
    if !importing
        && owner_mark(&node, &name)
            .check(vmid, &cfg, Some(&name))
            .is_err()
    {
        return Ok(gone(&client, &node, st, diags).await);
    }
    st.node = Some(node.clone());
    st.id = Some(vm::id_of(&node, vmid));
    refresh_from_config(&mut st, &cfg, importing);
    let running = match client.vm_status(&node, vmid).await {
        Ok(s) => s.is_running(),
        Err(e) if e.is_not_found() => return Ok(gone(&client, &node, st, diags).await),
        Err(e) => return Err(Error::new("Reading the VM status failed", e)),
    };
    if !running {
        st.config_hash = Some(String::new());
        diags.warning(
            "SNI proxy VM is not running",
            format!("VM {vmid} on {node} is stopped; the next apply starts it and reapplies the configuration."),
        );
        return Ok(Some(st));
    }
    let guest = Guest::new(&client, &node, vmid).cancel_on(ctx.cancellation());
    match haproxy::live(&guest).await {
        Ok(Some(live)) => {
            if st.config_hash.as_deref() != Some(live.hash.as_str()) {
                st.haproxy_cfg = Some(live.cfg);
                st.exact_map = Some(live.exact);
                st.wildcard_map = Some(live.wildcard);
                st.config_hash = Some(live.hash);
            }
        }
        Ok(None) => st.config_hash = Some(String::new()),
        Err(e) => {
            diags.warning(
                "Cannot read the live HAProxy configuration",
                format!("guest agent of VM {vmid}: {e}; the recorded config hash is kept"),
            );
        }
    }
    if importing {
        // What Proxmox does not know comes from the inputs the VM keeps; its actual
        // config still wins.
        match guest.read_file(INPUTS_PATH).await {
            Ok(Some(json)) => {
                adopt_inputs(&mut st, &json);
                refresh_from_config(&mut st, &cfg, true);
            }
            Ok(None) => {}
            Err(e) => diags.warning(
                "Cannot read the SNI proxy's inputs",
                format!("guest agent of VM {vmid}: {e}; the next plan adopts them from the configuration"),
            ),
        }
    }
    Ok(Some(st))
}

/// No VM of ours: while a seed ISO of ours still exists the state is kept (with an empty
/// `id`, which plans a replacement) so the ISO stays owned; otherwise the resource is gone.
async fn gone(
    client: &Client,
    node: &str,
    mut st: SniProxyState,
    diags: &mut Diagnostics,
) -> Option<SniProxyState> {
    let vmid = st.vmid?;
    match owned::any_iso_exists(client, node, &st.seed_isos(vmid)).await {
        Ok(false) => None,
        Ok(true) => {
            diags.warning(
                "SNI proxy VM is gone",
                format!(
                    "VM {vmid} on {node} no longer exists; its seed ISO does. The next apply \
                     re-creates the VM, destroy deletes the ISO."
                ),
            );
            st.id = Some(String::new());
            st.config_hash = Some(String::new());
            Some(st)
        }
        Err(e) => {
            diags.warning(
                "SNI proxy VM is gone",
                format!("VM {vmid} on {node} no longer exists; {e}"),
            );
            st.id = Some(String::new());
            Some(st)
        }
    }
}
