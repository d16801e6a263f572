//! Bringing nodes up: the disk image once per Proxmox VE node and storage, the node VMs, and
//! each node's first configuration (maintenance mode, or an existing configured node).

use super::OpError;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use waddle_proxmox::{
    Bios, ContentType, DiskSpec, DownloadUrl, EfiDiskSpec, NetSpec, TpmStateSpec, VmSpec,
    WaitOptions,
};

use super::super::{
    effective_mac, image_file_name, node_ip, ClusterModel, ImageRef, NodeModel, VmRef,
};
use super::address::{self, apply_maintenance, apply_maintenance_vm, VmNic};
use super::owned::{adoptable_vm, cluster_slug};
use super::{
    answers_mtls, apply_configured, owned_image_file_name, owner_mark, wait_configured, Created,
    Env, R,
};

// ---------------------------------------------------------------------------------------
// Proxmox side
// ---------------------------------------------------------------------------------------

/// Downloads the disk image once per (Proxmox node, image storage) used by `nodes`; returns
/// the volume ids. Images that did not exist before are recorded in `created` (in a create,
/// existing ones too: they carry this cluster's name and are left over from an interrupted
/// create; so in an update adopting the nodes of an import that was not read back).
pub(super) async fn ensure_images(
    env: &Env,
    m: &ClusterModel,
    nodes: &[(String, NodeModel)],
    created: &Created,
) -> R<BTreeMap<(String, String), String>> {
    let pairs: BTreeSet<(String, String)> = nodes
        .iter()
        .filter_map(|(_, n)| n.proxmox.as_ref())
        .map(|p| (env.pve_node(p), p.image_storage()))
        .collect();
    if pairs.is_empty() {
        return Ok(BTreeMap::new());
    }
    let url = m
        .disk_image_url()
        .ok_or("image.disk_image_url is required for Proxmox nodes")?;
    let (filename, compression) = image_file_name(&url)?;
    let filename = owned_image_file_name(&m.cluster_name, &filename);
    let pve = env.pve()?.clone();
    let req = DownloadUrl {
        content: ContentType::Import,
        filename,
        url,
        checksum: None,
        verify_certificates: None,
        compression,
    };
    let wait = WaitOptions::with_cancel(env.cancel.clone());
    let futs = pairs.into_iter().map(|(node, storage)| {
        let pve = pve.clone();
        let req = req.clone();
        let wait = wait.clone();
        async move {
            let volid = waddle_proxmox::volume_id(&storage, ContentType::Import, &req.filename);
            let existed = pve
                .list_storage_content(&node, &storage, Some("import"))
                .await
                .map(|v| v.iter().any(|x| x.volid == volid))
                .unwrap_or(false);
            tracing::info!(
                node,
                storage,
                volid,
                existed,
                "ensuring the Talos disk image"
            );
            let volid = pve
                .ensure_image_downloaded(&node, &storage, &req, &wait)
                .await
                .map_err(|e| {
                    OpError::Step(format!(
                        "downloading the Talos image to {node}/{storage}: {e}"
                    ))
                })?;
            Ok::<_, OpError>((node, storage, volid, existed))
        }
    });
    let mut out = BTreeMap::new();
    for r in futures::future::join_all(futs).await {
        let (node, storage, volid, existed) = r?;
        if !existed || created.fresh || created.adopting {
            if let Ok(mut i) = created.images.lock() {
                i.insert(ImageRef {
                    node: node.clone(),
                    volume: volid.clone(),
                });
            }
        }
        out.insert((node, storage), volid);
    }
    Ok(out)
}

/// The VM definition of a node.
pub fn vm_spec(m: &ClusterModel, name: &str, n: &NodeModel, volid: &str) -> R<VmSpec> {
    let p = n.proxmox.clone().unwrap_or_default();
    let storage = p.storage();
    let hostname = n.hostname.clone().unwrap_or_else(|| name.to_string());
    let mut spec = VmSpec::new(&hostname, p.cores(), p.memory());
    spec.vmid = p.vmid;
    spec.cpu = Some("host".into());
    spec.machine = Some("q35".into());
    let mut disk = DiskSpec::import(0, &storage, volid);
    disk.size_gib = p.disk_size();
    disk.ssd = true;
    disk.iothread = true;
    spec.disks = vec![disk];
    let mut net = NetSpec::virtio(0, &p.bridge());
    net.mac = effective_mac(&m.cluster_name, name, n);
    spec.nets = vec![net];
    // The static address before the first boot: no DHCP needed (see `address`).
    spec.cloud_init = Some(address::cloud_init(m, n, &storage));
    spec.agent = true;
    spec.boot_order = vec!["scsi0".into()];
    let secure = m.secureboot.unwrap_or(false);
    let encrypted = m.disk_encryption.unwrap_or(false);
    if secure || encrypted {
        spec.bios = Bios::Ovmf;
        // Keys not pre-enrolled: Talos' SecureBoot image enrolls its own in setup mode.
        spec.efidisk = Some(EfiDiskSpec::new(&storage, !secure));
        spec.tpmstate = Some(TpmStateSpec {
            storage: storage.clone(),
        });
    }
    spec.tags = vec!["talos".into(), cluster_slug(&m.cluster_name)];
    spec.description = Some(format!(
        "Talos node {name} of cluster {} (managed by waddle_talos_cluster)",
        m.cluster_name
    ));
    owner_mark(&m.cluster_name, name).apply(&mut spec);
    spec.onboot = Some(true);
    Ok(spec)
}

/// Brings one node from nothing (or an existing machine) to a configured Talos node.
pub(super) async fn provision_node(
    env: &Env,
    m: &ClusterModel,
    name: &str,
    n: &NodeModel,
    config: &str,
    images: &BTreeMap<(String, String), String>,
    created: &Created,
) -> R<()> {
    let started = Instant::now();
    let ip = node_ip(n).to_string();
    let maintenance = n.maintenance_address.clone();
    let mut applied = false;
    if let Some(p) = &n.proxmox {
        let pve = env.pve()?.clone();
        let pnode = env.pve_node(p);
        if pnode.is_empty() {
            return Err("no Proxmox VE node: set proxmox.node or the provider's node".into());
        }
        let recorded = created
            .vms
            .lock()
            .ok()
            .and_then(|v| v.get(name).map(|x| x.vmid));
        let existing = adoptable_vm(&pve, m, name, n, (p.vmid, recorded), created.fresh).await?;
        let vmid = match existing {
            Some(vm) => {
                tracing::info!(node = name, vmid = vm.vmid, "adopting the existing VM");
                created.add_vm(
                    name,
                    VmRef {
                        node: vm.node.clone(),
                        vmid: vm.vmid,
                    },
                );
                if answers_mtls(env, &ip).await {
                    apply_configured(env, name, &ip, config).await?;
                    return wait_configured(env, name, &ip).await;
                }
                vm.vmid
            }
            None => {
                let volid = images
                    .get(&(pnode.clone(), p.image_storage()))
                    .ok_or("the disk image was not downloaded")?;
                let spec = vm_spec(m, name, n, volid)?;
                let wait = WaitOptions::with_cancel(env.cancel.clone());
                let vmid = match pve.create_vm_with(&pnode, &spec, &wait).await {
                    Ok(v) => v,
                    Err(e) => {
                        if let Some(vmid) = e.created_vmid() {
                            // The VM exists: record it so destroy or the next apply finds it.
                            let node = pnode.clone();
                            created.add_vm(name, VmRef { node, vmid });
                        }
                        return Err(OpError::Step(format!("creating the VM: {e}")));
                    }
                };
                created.add_vm(
                    name,
                    VmRef {
                        node: pnode.clone(),
                        vmid,
                    },
                );
                tracing::info!(node = name, vmid, "VM created");
                vmid
            }
        };
        pve.start_vm(&pnode, vmid)
            .await
            .map_err(|e| OpError::Step(format!("starting VM {vmid}: {e}")))?;
        let mac = effective_mac(&m.cluster_name, name, n);
        let vm = VmNic {
            pve: &pve,
            node: &pnode,
            vmid,
            mac: mac.as_deref(),
        };
        let addr = apply_maintenance_vm(env, name, &ip, &vm, config).await?;
        tracing::info!(node = name, vmid, addr, "configured in maintenance mode");
        applied = true;
    }
    match maintenance {
        _ if applied => wait_configured(env, name, &ip).await?,
        Some(addr) => {
            apply_maintenance(env, name, &addr, config).await?;
            wait_configured(env, name, &ip).await?;
        }
        None => {
            // An existing, configured node.
            apply_configured(env, name, &ip, config).await?;
            wait_configured(env, name, &ip).await?;
        }
    }
    tracing::info!(
        node = name,
        seconds = started.elapsed().as_secs_f64(),
        "node configured"
    );
    Ok(())
}

pub(crate) async fn provision_all(
    env: &Env,
    m: &ClusterModel,
    nodes: &[(String, NodeModel)],
    configs: &BTreeMap<String, String>,
    created: &Created,
) -> Vec<(String, String)> {
    let started = Instant::now();
    let images = match ensure_images(env, m, nodes, created).await {
        Ok(i) => i,
        Err(e) => {
            let e = e.to_string();
            return nodes.iter().map(|(k, _)| (k.clone(), e.clone())).collect();
        }
    };
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "disk images ready"
    );
    let futs = nodes.iter().map(|(name, n)| {
        let images = &images;
        async move {
            let cfg = configs.get(name).map(String::as_str).unwrap_or_default();
            provision_node(env, m, name, n, cfg, images, created)
                .await
                .map_err(|e| (name.clone(), format!("nodes[{name:?}]: {e}")))
        }
    });
    futures::future::join_all(futs)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect()
}
