//! Create: what an interrupted create left and a taken VMID first, then the image (once per
//! storage), the VM, the seed ISO, start, and the wait for HAProxy with the expected
//! configuration. Once the VM exists every error returns the partial state (id, vmid, seed
//! ISO), so the next apply or destroy removes it.

use waddle_framework::prelude::*;
use waddle_haproxy::Rendered;
use waddle_proxmox::{Client, Guest};

use super::haproxy::{self, SniError};
use super::{client, Error};
use crate::resources::sni_proxy::model::{owner_mark, seed_iso_name, SniProxyState};
use crate::resources::sni_proxy::{
    DEFAULT_CORES, DEFAULT_DISK_SIZE, DEFAULT_IMAGE_URL, DEFAULT_MEMORY, DEFAULT_STORAGE,
    SHUTDOWN_TIMEOUT,
};
use crate::resources::timeouts::{Deadline, Op};
use crate::resources::vm::{self, lifecycle};

const FAILED: &str = "Creating the SNI proxy VM failed";

pub async fn create(ctx: &Context, mut st: SniProxyState) -> Result<SniProxyState, Error> {
    let client = client(ctx)?;
    let deadline = Deadline::start(Op::Create, st.timeout(Op::Create));
    let node = st
        .node
        .clone()
        .ok_or_else(|| Error::new("Missing node", "the VM's node is not known"))?;
    let rendered = st
        .rendered()
        .map_err(|e| Error::new("Invalid SNI proxy configuration", e))?;
    let image_url = st
        .image_url
        .clone()
        .unwrap_or_else(|| DEFAULT_IMAGE_URL.into());
    lifecycle::image_file_name(&image_url)
        .map_err(|e| Error::new("Invalid image URL", e).at(AttributePath::attr("image_url")))?;
    let image_storage = st.image_storage().to_string();
    let mut wait = waddle_proxmox::WaitOptions::with_cancel(ctx.cancellation().clone());
    wait.timeout = Some(deadline.remaining());
    // 0. what an interrupted create left, and a VMID taken by somebody else
    let name = st.vm_name();
    let mark = owner_mark(&node, &name);
    let leftover_iso = |vmid| lifecycle::seed_volid(&image_storage, &seed_iso_name(vmid));
    vm::owned::prepare_create(&client, &mark, st.vmid, leftover_iso, SHUTDOWN_TIMEOUT)
        .await
        .map_err(|e| Error::new("Creating the VM failed", e).at(AttributePath::attr("vmid")))?;
    // 1. image
    let image = lifecycle::ensure_image(&client, &node, &image_storage, &image_url, &wait)
        .await
        .map_err(|e| Error::new("Downloading the Debian cloud image failed", e))?;
    // 2. VM
    let (Some(pubnic), Some(privnic)) = (st.public_nic.clone(), st.private_nic.clone()) else {
        return Err(Error::new(
            "Invalid configuration",
            "public_nic and private_nic are required",
        ));
    };
    let build = lifecycle::VmBuild {
        name: &name,
        vmid: st.vmid,
        cores: st.cores.unwrap_or(DEFAULT_CORES as u32),
        memory: st.memory.unwrap_or(DEFAULT_MEMORY as u64),
        storage: st.storage.as_deref().unwrap_or(DEFAULT_STORAGE),
        disk_size: st.disk_size.unwrap_or(DEFAULT_DISK_SIZE as u32),
        bridges: vec![&pubnic.bridge, &privnic.bridge],
        tags: vec!["waddle".into(), "sni-proxy".into()],
        description: "waddle_sni_proxy: HAProxy SNI passthrough (managed by OpenTofu/Terraform)"
            .into(),
        mark: &mark,
    };
    let vmid = match lifecycle::create(&client, &node, &build, &image, &wait).await {
        Ok(v) => v,
        Err(e) => {
            let Some(vmid) = e.created_vmid() else {
                return Err(Error::new("Creating the VM failed", e));
            };
            // The VM exists: recorded (tainted), so the next apply or destroy removes it.
            st.vmid = Some(vmid);
            st.id = Some(vm::id_of(&node, vmid));
            st.set_rendered(&rendered);
            return Err(Error::new(
                FAILED,
                format!("{e}\nThe VM {vmid} is recorded in the state as tainted."),
            )
            .with_partial(st));
        }
    };
    // From here on the VM exists: every error returns the partial state.
    st.vmid = Some(vmid);
    st.id = Some(vm::id_of(&node, vmid));
    st.set_rendered(&rendered);
    match finish(ctx, &client, &node, vmid, &mut st, &rendered, deadline).await {
        Ok(()) => Ok(st),
        Err(e) => Err(Error::new(
            FAILED,
            format!(
                "{e}\nThe VM {vmid} exists and is recorded in the state as tainted; the next \
                 apply replaces it and destroy removes it."
            ),
        )
        .with_partial(st)),
    }
}

/// Seed, start, wait for HAProxy, keep the inputs.
async fn finish(
    ctx: &Context,
    client: &Client,
    node: &str,
    vmid: u32,
    st: &mut SniProxyState,
    rendered: &Rendered,
    deadline: Deadline,
) -> Result<(), SniError> {
    let macs = lifecycle::macs(client, node, vmid, 2).await?;
    let iso = lifecycle::seed_iso(&st.cloud_config(vmid, &macs, rendered))?;
    let image_storage = st.image_storage().to_string();
    // Recorded before the upload: delete removes it whether or not the upload finished.
    st.seed_iso = Some(lifecycle::seed_volid(&image_storage, &seed_iso_name(vmid)));
    lifecycle::seed_and_start(
        client,
        node,
        vmid,
        &image_storage,
        &seed_iso_name(vmid),
        iso,
    )
    .await?;
    let guest = Guest::new(client, node, vmid).cancel_on(ctx.cancellation());
    haproxy::wait_ready(&guest, &rendered.config_hash, deadline).await?;
    haproxy::keep_inputs(&guest, st).await
}
