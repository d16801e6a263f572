//! The lifecycle every VM resource shares, around its payload's hooks ([`VmResource`]).
//!
//! * **Create**: what an interrupted create left and a taken VMID first, then the image
//!   (once per storage), the VM, the seed ISO (recorded before its upload), start, the
//!   payload's readiness, and the inputs kept on the VM. Once the VM exists every error
//!   returns the partial state, so the next apply or destroy removes it.
//! * **Read**: a VM that no longer exists (or is no longer ours) is gone — kept in state with
//!   an empty `id` while its seed ISO exists; otherwise the VM config refreshes the shared
//!   attributes and the payload refreshes its own. An import reads back the kept inputs.
//! * **Update** (the payload, in place): identity from the prior state, the VM made ours and
//!   running, the payload applied; on failure the prior state is kept.
//! * **Delete**: the VM through `Client::shutdown_and_delete_vm` (its mark checked: a VM that
//!   is not ours is refused and left alone), then the seed ISO, even when the VM was gone,
//!   then the downloaded image the VM recorded once no other waddle VM records it
//!   (`owned::release_image`).
//! * **Import**: `<node>/<vmid>` or `<vmid>`.

use serde_json::{json, Map, Value as Json};
use waddle_framework::prelude::*;
use waddle_proxmox::cloud_config::{CloudConfig, GuestNic};
use waddle_proxmox::{Client, Guest, OwnerMark, VmConfig};

use super::lifecycle::{self, VmFacts};
use super::resource::{patch, PayloadError, VmAttrs, VmResource};
use super::{id_of, owned, VmError};
use crate::resources::timeouts::{Deadline, Op};

type Error<R> = ResourceError<<R as VmResource>::State>;

/// The Proxmox client of the provider configuration.
pub fn client<S>(ctx: &Context) -> Result<Client, ResourceError<S>> {
    let mut d = Diagnostics::new();
    match crate::clients::proxmox(ctx, &mut d) {
        Some((_, c)) => Ok(c),
        None => Err(match d.errors().next() {
            Some(e) => ResourceError::new(e.summary.clone(), &e.detail),
            None => ResourceError::new("Unconfigured Provider", "no Proxmox VE client"),
        }),
    }
}

/// The ownership mark of resource type `R`'s VM named `name` on `node`.
pub fn owner_mark<R: VmResource>(node: &str, name: &str) -> OwnerMark {
    OwnerMark::new(&[R::TYPE_NAME, node, name])
}

/// The seed ISOs a state may own: the one named after `vmid` and the recorded one.
pub fn seed_isos<R: VmResource>(r: &R, a: &VmAttrs, vmid: u32) -> Vec<String> {
    owned::seed_isos(
        a.image_storage(&R::DEFAULTS),
        &r.seed_iso_name(vmid),
        a.seed_iso.as_deref(),
    )
}

fn internal<S>(e: impl std::fmt::Display) -> ResourceError<S> {
    ResourceError::new("Internal error", e)
}

/// Set `key` of a state.
fn set<R: VmResource>(st: &mut R::State, key: &'static str, v: Json) -> Result<(), Error<R>> {
    patch(st, |m| {
        m.insert(key.into(), v);
    })
    .map_err(internal)
}

/// The guest's cloud config (NICs matched by `macs`), without the payload.
pub fn cloud_config<R: VmResource>(
    st: &R::State,
    vmid: u32,
    macs: &[Option<String>],
) -> CloudConfig {
    let a = VmAttrs::of(st);
    let d = &R::DEFAULTS;
    let nics = R::NICS
        .iter()
        .enumerate()
        .map(|(i, layout)| {
            let nic = VmAttrs::nic(st, layout.attr).unwrap_or_default();
            GuestNic {
                name: layout.iface.into(),
                mac_address: macs.get(i).cloned().flatten(),
                cidr: nic.cidr,
                gateway: nic.gateway.as_deref().and_then(|g| g.parse().ok()),
            }
        })
        .collect();
    CloudConfig {
        hostname: a.vm_name(d),
        instance_id: format!("{}-{vmid}", R::INSTANCE_PREFIX),
        admin_user: a.admin_user.clone().unwrap_or_else(|| d.admin_user.into()),
        ssh_authorized_keys: a.ssh_authorized_keys.clone().unwrap_or_default(),
        nics,
        dns_servers: a
            .dns_servers
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect(),
        packages: Vec::new(),
        files: Vec::new(),
        commands: Vec::new(),
    }
}

pub async fn create<R: VmResource>(
    r: &R,
    ctx: &Context,
    mut st: R::State,
) -> Result<R::State, Error<R>> {
    let client = client(ctx)?;
    let a = VmAttrs::of(&st);
    let d = &R::DEFAULTS;
    let deadline = a.deadline(Op::Create, &R::TIMEOUTS);
    let node = a
        .node
        .clone()
        .ok_or_else(|| Error::<R>::new("Missing node", "the VM's node is not known"))?;
    let payload = r.prepare(&st).map_err(|e| Error::<R>::new(R::INVALID, e))?;
    let image_url = a.image_url.clone().unwrap_or_else(|| d.image_url.into());
    lifecycle::image_file_name(&image_url).map_err(|e| {
        Error::<R>::new("Invalid image URL", e).at(AttributePath::attr("image_url"))
    })?;
    let image_storage = a.image_storage(d).to_string();
    let mut wait = waddle_proxmox::WaitOptions::with_cancel(ctx.cancellation().clone());
    wait.timeout = Some(deadline.remaining());
    // 0. what an interrupted create left, and a VMID taken by somebody else
    let name = a.vm_name(d);
    let mark = owner_mark::<R>(&node, &name);
    let leftover_iso = |vmid| lifecycle::seed_volid(&image_storage, &r.seed_iso_name(vmid));
    owned::prepare_create(&client, &mark, a.vmid, leftover_iso, R::SHUTDOWN_TIMEOUT)
        .await
        .map_err(|e| {
            Error::<R>::new("Creating the VM failed", e).at(AttributePath::attr("vmid"))
        })?;
    // 1. image
    let (image, downloaded) =
        lifecycle::ensure_image(&client, &node, &image_storage, &image_url, &wait)
            .await
            .map_err(|e| Error::<R>::new("Downloading the Debian cloud image failed", e))?;
    // waddle owns the image when it downloaded it or another waddle VM records it.
    let owns_image = downloaded
        || !owned::image_claims(&client, &node, &image, None)
            .await
            .map_err(|e| Error::<R>::new("Creating the VM failed", e))?
            .is_empty();
    let description = if owns_image {
        format!("{}\n{}", R::DESCRIPTION, owned::image_line(&image))
    } else {
        R::DESCRIPTION.to_string()
    };
    // 2. VM
    let nics: Option<Vec<_>> = R::NICS.iter().map(|n| VmAttrs::nic(&st, n.attr)).collect();
    let Some(nics) = nics else {
        let names: Vec<&str> = R::NICS.iter().map(|n| n.attr).collect();
        return Err(Error::<R>::new(
            "Invalid configuration",
            format!("{} are required", names.join(" and ")),
        ));
    };
    let build = lifecycle::VmBuild {
        name: &name,
        vmid: a.vmid,
        cores: a.cores.unwrap_or(d.cores as u32),
        memory: a.memory.unwrap_or(d.memory as u64),
        storage: a.storage.as_deref().unwrap_or(d.storage),
        disk_size: a.disk_size.unwrap_or(d.disk_size as u32),
        bridges: nics.iter().map(|n| n.bridge.as_str()).collect(),
        tags: std::iter::once("waddle")
            .chain(R::TAGS.iter().copied())
            .map(String::from)
            .collect(),
        description,
        mark: &mark,
    };
    let failed = format!("Creating the {} VM failed", R::LABEL);
    let created = lifecycle::create(&client, &node, &build, &image, &wait).await;
    let vmid = match &created {
        Ok(v) => *v,
        Err(e) => e
            .created_vmid()
            .ok_or_else(|| Error::<R>::new("Creating the VM failed", e))?,
    };
    // From here on the VM exists: every error returns the partial state.
    patch(&mut st, |m| {
        m.insert("vmid".into(), json!(vmid));
        m.insert("id".into(), json!(id_of(&node, vmid)));
    })
    .map_err(internal)?;
    r.record(&mut st, &payload);
    if let Err(e) = created {
        // The VM exists: recorded (tainted), so the next apply or destroy removes it.
        return Err(Error::<R>::new(
            failed,
            format!("{e}\nThe VM {vmid} is recorded in the state as tainted."),
        )
        .with_partial(st));
    }
    let at = Created {
        client: &client,
        node: &node,
        vmid,
    };
    match finish(r, ctx, at, &mut st, &payload, deadline).await {
        Ok(()) => Ok(st),
        Err(e) => Err(Error::<R>::new(
            failed,
            format!(
                "{e}\nThe VM {vmid} exists and is recorded in the state as tainted; the next \
                 apply replaces it and destroy removes it."
            ),
        )
        .with_partial(st)),
    }
}

/// Where a create continues once the VM exists: seed, start, readiness, inputs.
struct Created<'a> {
    client: &'a Client,
    node: &'a str,
    vmid: u32,
}

async fn finish<R: VmResource>(
    r: &R,
    ctx: &Context,
    at: Created<'_>,
    st: &mut R::State,
    payload: &R::Payload,
    deadline: Deadline,
) -> Result<(), PayloadError> {
    let Created { client, node, vmid } = at;
    let macs = lifecycle::macs(client, node, vmid, R::NICS.len() as u8).await?;
    let iso = lifecycle::seed_iso(&r.seed(payload, cloud_config::<R>(st, vmid, &macs)))?;
    let image_storage = VmAttrs::of(st).image_storage(&R::DEFAULTS).to_string();
    let name = r.seed_iso_name(vmid);
    // Recorded before the upload: delete removes it whether or not the upload finished.
    let volid = lifecycle::seed_volid(&image_storage, &name);
    patch(st, |m| {
        m.insert("seed_iso".into(), json!(volid));
    })?;
    lifecycle::seed_and_start(client, node, vmid, &image_storage, &name, iso).await?;
    let guest = Guest::new(client, node, vmid).cancel_on(ctx.cancellation());
    r.ready(&guest, payload, deadline).await?;
    keep_inputs::<R>(&guest, st).await?;
    Ok(())
}

/// The attributes an import cannot know and a VM keeps for it: the inputs without identity
/// and computed attributes (`drop`). Nothing in them is secret (SSH keys are public keys).
pub fn inputs_json<S: serde::Serialize>(st: &S, drop: &[&str]) -> String {
    let mut m = match serde_json::to_value(st) {
        Ok(Json::Object(m)) => m,
        _ => Map::new(),
    };
    for k in drop {
        m.insert((*k).into(), Json::Null);
    }
    serde_json::to_string_pretty(&Json::Object(m)).unwrap_or_default()
}

/// An imported state: what is still null is taken from the kept inputs (attributes already
/// known win). Unparseable inputs are ignored.
pub fn adopt_inputs<S: serde::Serialize + serde::de::DeserializeOwned>(
    st: &mut S,
    json: &str,
    keep: &[&str],
) {
    let Ok(Json::Object(inputs)) = serde_json::from_str::<Json>(json) else {
        return;
    };
    let _ = patch(st, |m| {
        for (k, v) in inputs {
            if !keep.contains(&k.as_str()) && m.get(&k).is_none_or(Json::is_null) {
                m.insert(k, v);
            }
        }
    });
}

/// Identity and bookkeeping an import's inputs never carry.
const NOT_INPUTS: [&str; 4] = ["id", "node", "vmid", "seed_iso"];

/// What is not kept as inputs: identity, bookkeeping and the payload's computed attributes.
pub fn not_inputs<R: VmResource>() -> Vec<&'static str> {
    NOT_INPUTS.iter().chain(R::COMPUTED).copied().collect()
}

async fn keep_inputs<R: VmResource>(guest: &Guest<'_>, st: &R::State) -> Result<(), VmError> {
    guest
        .write_file(R::INPUTS_PATH, &inputs_json(st, &not_inputs::<R>()))
        .await
        .map_err(VmError::api(format!("writing {}", R::INPUTS_PATH)))
}

/// Refresh the shared attributes from the VM config.
pub fn refresh_from_config<R: VmResource>(st: &mut R::State, cfg: &VmConfig, importing: bool) {
    let f = VmFacts::of(cfg);
    let _ = patch(st, |m| {
        let mut put = |k: &str, v: Option<Json>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        put("name", f.name.map(Json::from));
        put("cores", f.cores.map(Json::from));
        put("memory", f.memory.map(Json::from));
        put("storage", f.storage.map(Json::from));
        if importing {
            put("disk_size", f.disk_size.map(Json::from));
        }
        if let Some((vol, storage)) = f.seed_iso {
            if importing {
                put("image_storage", Some(Json::from(storage)));
            }
            put("seed_iso", Some(Json::from(vol)));
        }
        // NICs: only the bridges are visible in Proxmox (the addresses live in cloud-init),
        // so an imported state leaves the NIC objects null and adopts them from the
        // configuration.
        for (i, n) in R::NICS.iter().enumerate() {
            if let (Some(b), Some(Json::Object(nic))) =
                (f.bridges.get(&(i as u8)), m.get_mut(n.attr))
            {
                nic.insert("bridge".into(), Json::from(b.clone()));
            }
        }
    });
}

pub async fn read<R: VmResource>(
    r: &R,
    ctx: &Context,
    mut st: R::State,
    diags: &mut Diagnostics,
) -> Result<Option<R::State>, Error<R>> {
    let client = client(ctx)?;
    let a = VmAttrs::of(&st);
    let Some(vmid) = a.vmid else {
        return Ok(None);
    };
    let importing = r.importing(&st);
    let node = match a.node.clone() {
        Some(n) => n,
        None => match client.locate_vm(vmid).await {
            Ok(Some(vm)) => vm.node,
            Ok(None) => return Ok(None),
            Err(e) => return Err(Error::<R>::new("Reading the VM failed", e)),
        },
    };
    let cfg = match client.vm_config(&node, vmid).await {
        Ok(c) => c,
        Err(e) if e.is_not_found() => return gone(r, &client, &node, st, diags).await,
        Err(e) => return Err(Error::<R>::new("Reading the VM failed", e)),
    };
    // A VM with our VMID that is not ours (ours was deleted by hand and the id reused):
    // ours is gone. An import names its VM explicitly and is taken as is.
    let name = a.vm_name(&R::DEFAULTS);
    if !importing
        && owner_mark::<R>(&node, &name)
            .check(vmid, &cfg, Some(&name))
            .is_err()
    {
        return gone(r, &client, &node, st, diags).await;
    }
    patch(&mut st, |m| {
        m.insert("node".into(), json!(node));
        m.insert("id".into(), json!(id_of(&node, vmid)));
    })
    .map_err(internal)?;
    refresh_from_config::<R>(&mut st, &cfg, importing);
    let running = match client.vm_status(&node, vmid).await {
        Ok(s) => s.is_running(),
        Err(e) if e.is_not_found() => return gone(r, &client, &node, st, diags).await,
        Err(e) => return Err(Error::<R>::new("Reading the VM status failed", e)),
    };
    if !running {
        r.forget(&mut st);
        diags.warning(
            format!("{} VM is not running", R::LABEL),
            format!("VM {vmid} on {node} is stopped; the next apply starts it and reapplies the configuration."),
        );
        return Ok(Some(st));
    }
    let guest = Guest::new(&client, &node, vmid).cancel_on(ctx.cancellation());
    r.refresh(&guest, &mut st, diags).await;
    if importing {
        // What Proxmox does not know comes from the inputs the VM keeps; its actual
        // config still wins.
        match guest.read_file(R::INPUTS_PATH).await {
            Ok(Some(json)) => {
                adopt_inputs(&mut st, &json, &not_inputs::<R>());
                refresh_from_config::<R>(&mut st, &cfg, true);
            }
            Ok(None) => {}
            Err(e) => diags.warning(
                format!("Cannot read the {}'s inputs", R::LABEL),
                format!("guest agent of VM {vmid}: {e}; the next plan adopts them from the configuration"),
            ),
        }
    }
    Ok(Some(st))
}

/// No VM of ours: while a seed ISO of ours still exists the state is kept (with an empty
/// `id`, which plans a replacement) so the ISO stays owned; otherwise the resource is gone.
async fn gone<R: VmResource>(
    r: &R,
    client: &Client,
    node: &str,
    mut st: R::State,
    diags: &mut Diagnostics,
) -> Result<Option<R::State>, Error<R>> {
    let a = VmAttrs::of(&st);
    let Some(vmid) = a.vmid else {
        return Ok(None);
    };
    let summary = format!("{} VM is gone", R::LABEL);
    match owned::any_iso_exists(client, node, &seed_isos(r, &a, vmid)).await {
        Ok(false) => return Ok(None),
        Ok(true) => {
            diags.warning(
                summary,
                format!(
                    "VM {vmid} on {node} no longer exists; its seed ISO does. The next apply \
                     re-creates the VM, destroy deletes the ISO."
                ),
            );
            r.forget(&mut st);
        }
        Err(e) => diags.warning(
            summary,
            format!("VM {vmid} on {node} no longer exists; {e}"),
        ),
    }
    set::<R>(&mut st, "id", json!(""))?;
    Ok(Some(st))
}

pub async fn update<R: VmResource>(
    r: &R,
    ctx: &Context,
    prior: R::State,
    mut st: R::State,
) -> Result<R::State, Error<R>> {
    let client = client(ctx)?;
    let (p, a) = (VmAttrs::of(&prior), VmAttrs::of(&st));
    let deadline = a.deadline(Op::Update, &R::TIMEOUTS);
    // Identity and bookkeeping come from the prior state.
    let (node, vmid) = (p.node.clone().or(a.node.clone()), p.vmid.or(a.vmid));
    patch(&mut st, |m| {
        m.insert("id".into(), json!(p.id));
        m.insert("node".into(), json!(node));
        m.insert("vmid".into(), json!(vmid));
        m.insert("seed_iso".into(), json!(p.seed_iso));
    })
    .map_err(internal)?;
    let (Some(node), Some(vmid)) = (node, vmid) else {
        return Err(Error::<R>::new(
            "Internal error",
            "the prior state has no node/vmid",
        ));
    };
    let payload = r.prepare(&st).map_err(|e| Error::<R>::new(R::INVALID, e))?;
    let guest = Guest::new(&client, &node, vmid).cancel_on(ctx.cancellation());
    let result: Result<(), PayloadError> = async {
        let mark = owner_mark::<R>(&node, &a.vm_name(&R::DEFAULTS));
        lifecycle::ensure_running(&client, &node, vmid, &mark, &deadline, ctx.cancellation())
            .await?;
        r.apply(&guest, &payload).await?;
        keep_inputs::<R>(&guest, &st).await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            r.record(&mut st, &payload);
            Ok(st)
        }
        // The old configuration is still live: keep the prior state.
        Err(e) => Err(Error::<R>::new(
            format!("Updating the {} configuration failed", R::LABEL),
            e,
        )
        .with_partial(prior)),
    }
}

pub async fn delete<R: VmResource>(r: &R, ctx: &Context, st: R::State) -> Result<(), Error<R>> {
    let client = client(ctx)?;
    let a = VmAttrs::of(&st);
    let Some(vmid) = a.vmid else {
        return Ok(()); // nothing was created
    };
    let located = client
        .locate_vm(vmid)
        .await
        .map_err(|e| Error::<R>::new("Locating the VM failed", e))?
        .map(|v| v.node);
    let Some(node) = a.node.clone().or(located.clone()) else {
        return Ok(()); // no VM, and no node to look for its seed ISO on
    };
    let name = a.vm_name(&R::DEFAULTS);
    let mark = owner_mark::<R>(&node, &name);
    let deadline = a.deadline(Op::Delete, &R::TIMEOUTS);
    let shutdown = R::SHUTDOWN_TIMEOUT.min(deadline.remaining());
    // A VM whose mark is not ours is refused (NotOwned) and left alone; a gone VM is fine.
    let mut image = None;
    if let Some(vm_node) = &located {
        image = owned::recorded_image(&client, vm_node, vmid)
            .await
            .map_err(|e| Error::<R>::new("Reading the VM failed", e))?;
        client
            .shutdown_and_delete_vm(vmid, shutdown, &mark, Some(&name))
            .await
            .map_err(|e| Error::<R>::new("Deleting the VM failed", e))?;
    }
    owned::delete_isos(&client, &node, &seed_isos(r, &a, vmid))
        .await
        .map_err(|e| Error::<R>::new("Deleting the seed ISO failed", e))?;
    // The image it was created from, once no other waddle VM records it.
    if let (Some(volid), Some(vm_node)) = (image, located) {
        owned::release_image(&client, &vm_node, &volid)
            .await
            .map_err(|e| Error::<R>::new("Deleting the downloaded image failed", e))?;
    }
    Ok(())
}

pub fn import<R: VmResource>(r: &R, id: &str) -> Result<R::State, Error<R>> {
    let (node, vmid) =
        lifecycle::parse_import_id(id).map_err(|e| Error::<R>::new("Invalid import ID", e))?;
    let mut st: R::State = r.schema().null_value().to_typed().map_err(internal)?;
    patch(&mut st, |m| {
        m.insert("vmid".into(), json!(vmid));
        if let Some(n) = node {
            m.insert("id".into(), json!(id_of(&n, vmid)));
            m.insert("node".into(), json!(n));
        }
    })
    .map_err(internal)?;
    Ok(st)
}
