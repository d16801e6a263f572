//! Update (routing, in place): make the VM ours and running, then apply the new rendering
//! through the guest agent. On failure the old configuration is still live: the prior
//! state is kept.

use waddle_framework::prelude::*;
use waddle_proxmox::Guest;

use super::haproxy::{self, SniError};
use super::{client, Error};
use crate::resources::sni_proxy::model::{owner_mark, SniProxyState};
use crate::resources::timeouts::{Deadline, Op};
use crate::resources::vm::lifecycle;

pub async fn update(
    ctx: &Context,
    prior: SniProxyState,
    mut st: SniProxyState,
) -> Result<SniProxyState, Error> {
    let client = client(ctx)?;
    let deadline = Deadline::start(Op::Update, st.timeout(Op::Update));
    // Identity and bookkeeping come from the prior state.
    st.id = prior.id.clone();
    st.node = prior.node.clone().or(st.node);
    st.vmid = prior.vmid.or(st.vmid);
    st.seed_iso = prior.seed_iso.clone();
    let (Some(node), Some(vmid)) = (st.node.clone(), st.vmid) else {
        return Err(Error::new(
            "Internal error",
            "the prior state has no node/vmid",
        ));
    };
    let rendered = st
        .rendered()
        .map_err(|e| Error::new("Invalid SNI proxy configuration", e))?;
    let guest = Guest::new(&client, &node, vmid).cancel_on(ctx.cancellation());
    let result: Result<(), SniError> = async {
        let mark = owner_mark(&node, &st.vm_name());
        lifecycle::ensure_running(&client, &node, vmid, &mark, &deadline, ctx.cancellation())
            .await?;
        // Which maps does the running config use (to clean them up afterwards)?
        let old_cfg = guest.read_file(&rendered.paths.config).await.map_err(|e| {
            SniError::Vm(crate::resources::vm::VmError::api(
                "reading the live config",
            )(e))
        })?;
        haproxy::apply(&guest, &rendered, old_cfg.as_deref()).await?;
        haproxy::keep_inputs(&guest, &st).await
    }
    .await;
    match result {
        Ok(()) => {
            st.set_rendered(&rendered);
            Ok(st)
        }
        Err(e) => {
            Err(Error::new("Updating the SNI proxy configuration failed", e).with_partial(prior))
        }
    }
}
