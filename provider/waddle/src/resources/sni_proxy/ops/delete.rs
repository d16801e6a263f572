//! Delete: the VM through `Client::shutdown_and_delete_vm` (its mark checked: a VM that is
//! not ours is refused and left alone; a gone VM is fine), then the seed ISO, even when the
//! VM was already gone. The downloaded image is a shared cache of the storage and is kept.

use waddle_framework::prelude::*;

use super::{client, Error};
use crate::resources::sni_proxy::model::{owner_mark, SniProxyState};
use crate::resources::sni_proxy::SHUTDOWN_TIMEOUT;
use crate::resources::timeouts::{Deadline, Op};
use crate::resources::vm::owned;

pub async fn delete(ctx: &Context, st: SniProxyState) -> Result<(), Error> {
    let client = client(ctx)?;
    let Some(vmid) = st.vmid else {
        return Ok(()); // nothing was created
    };
    let located = client
        .locate_vm(vmid)
        .await
        .map_err(|e| Error::new("Locating the VM failed", e))?
        .map(|v| v.node);
    let Some(node) = st.node.clone().or(located.clone()) else {
        return Ok(()); // no VM, and no node to look for its seed ISO on
    };
    let name = st.vm_name();
    let mark = owner_mark(&node, &name);
    let deadline = Deadline::start(Op::Delete, st.timeout(Op::Delete));
    let shutdown_timeout = SHUTDOWN_TIMEOUT.min(deadline.remaining());
    if located.is_some() {
        client
            .shutdown_and_delete_vm(vmid, shutdown_timeout, &mark, Some(&name))
            .await
            .map_err(|e| Error::new("Deleting the VM failed", e))?;
    }
    owned::delete_isos(&client, &node, &st.seed_isos(vmid))
        .await
        .map_err(|e| Error::new("Deleting the seed ISO failed", e))
}
