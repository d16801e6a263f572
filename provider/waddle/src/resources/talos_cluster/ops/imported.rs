//! Reading back an imported cluster. An import (`<cluster_name>:<secrets.yaml>`) gives the
//! name and the secrets only; the first read finds the rest, so the plan after an import is
//! empty and nothing is downloaded or applied again:
//!
//! * the node VMs: the VMs carrying the mark `waddle_talos_cluster/<cluster>/<node>`;
//! * the inputs (nodes, patches, placements, timeouts, ...): the line every node's machine
//!   configuration starts with (see `inputs`), read through the Talos API with the cluster's
//!   credentials at the address of the VM's cloud-init drive (`ipconfig0`). Nodes without
//!   `proxmox` (existing machines) have no VM to be found by: the plan after the import adds
//!   them, and the apply re-configures them in place;
//! * the disk image: this cluster's copy (its name carries the cluster's) on the storages the
//!   nodes use;
//! * `kubeconfig`, `talosconfig`, the client certificate: from the Talos API and the secrets.
//!
//! When any of that cannot be read (no Proxmox VE connection, no VM of the cluster, a cluster
//! made before the inputs line existed), the state stays as imported, with a warning: the next
//! apply then adopts the configured nodes (`adoptable_vm`, `answers_mtls`).

use super::OpError;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use waddle_framework::prelude::*;
use waddle_proxmox::{ContentType, OwnerMark, VmConfig, OWNER_TAG};
use waddle_talos::api::CONFIG_PATH;

use super::super::inputs;
use super::{
    bundle_of, control_planes, credentials, fetch_kubeconfig, image_file_name, make_env, node_ip,
    owned_image_file_name, owner_mark, render_all, talosconfig_of, ClusterModel, Env, ImageRef,
    Parts, VmRef, R,
};

/// The VMs carrying one of this cluster's node marks, by node name, with their config.
async fn cluster_vms(
    pve: &waddle_proxmox::Client,
    cluster: &str,
) -> R<BTreeMap<String, (waddle_proxmox::ClusterVm, VmConfig)>> {
    let prefix = format!("{}/{cluster}/", super::super::TYPE_NAME);
    let mut out = BTreeMap::new();
    let vms = pve
        .cluster_vms()
        .await
        .map_err(|e| OpError::Step(format!("listing VMs: {e}")))?;
    for vm in vms {
        if vm.kind != "qemu" || !vm.tags.iter().any(|t| t == OWNER_TAG) {
            continue;
        }
        let cfg = match pve.vm_config(&vm.node, vm.vmid).await {
            Ok(c) => c,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(OpError::Step(format!("reading VM {}: {e}", vm.vmid))),
        };
        let Some(mark) = cfg
            .get_str("description")
            .and_then(|d| OwnerMark::in_description(&d))
        else {
            continue;
        };
        let Some(name) = mark.as_str().strip_prefix(&prefix).map(str::to_string) else {
            continue;
        };
        if owner_mark(cluster, &name) != mark {
            continue;
        }
        if let Some((other, _)) = out.get(&name) {
            let other: &waddle_proxmox::ClusterVm = other;
            return Err(OpError::Step(format!(
                "VMs {} and {} both carry the mark of node {name:?}; remove the one that is \
                 not the node",
                other.vmid, vm.vmid
            )));
        }
        out.insert(name, (vm, cfg));
    }
    Ok(out)
}

/// The address of a VM's cloud-init `ipconfig0` (`ip=<addr>/<len>,gw=...`).
fn ipconfig_address(cfg: &VmConfig) -> Option<String> {
    let ipc = cfg.get_str("ipconfig0")?;
    ipc.split(',')
        .find_map(|kv| kv.strip_prefix("ip="))
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
}

/// The inputs kept by every node VM (read concurrently), merged; `Err` names what could not
/// be read.
async fn read_kept_inputs(env: &Env, addresses: &[(String, String)]) -> R<ClusterModel> {
    let reads = addresses.iter().map(|(name, ip)| async move {
        let c = env
            .mtls(ip)
            .await
            .map_err(|e| OpError::Step(format!("nodes[{name:?}] at {ip}: {e}")))?;
        let bytes = c.read_file(CONFIG_PATH).await.map_err(|e| {
            OpError::Step(format!(
                "nodes[{name:?}] at {ip}: reading {CONFIG_PATH}: {e}"
            ))
        })?;
        let text = String::from_utf8(bytes).map_err(|_| {
            OpError::Step(format!("nodes[{name:?}]: the configuration is not UTF-8"))
        })?;
        match inputs::read_inputs(&text) {
            Ok(Some(m)) if m.nodes().contains_key(name) => Ok(m),
            Ok(Some(_)) => Err(OpError::Step(format!(
                "nodes[{name:?}]: its inputs line is another node's"
            ))),
            Ok(None) => Err(OpError::Step(format!(
                "nodes[{name:?}]: its configuration has no inputs line (written by an older \
                 waddle)"
            ))),
            Err(e) => Err(OpError::Step(format!("nodes[{name:?}]: {e}"))),
        }
    });
    let mut lines = Vec::new();
    for r in futures::future::join_all(reads).await {
        lines.push(r?);
    }
    Ok(inputs::merge(lines)?)
}

/// This cluster's copies of the disk image on the storages its Proxmox nodes use.
async fn owned_images(env: &Env, m: &ClusterModel) -> R<Vec<ImageRef>> {
    let Some(url) = m.disk_image_url() else {
        return Ok(Vec::new());
    };
    let (file, _) = image_file_name(&url)?;
    let file = owned_image_file_name(&m.cluster_name, &file);
    let pairs: BTreeSet<(String, String)> = m
        .nodes()
        .values()
        .filter_map(|n| n.proxmox.as_ref())
        .map(|p| (env.pve_node(p), p.image_storage()))
        .collect();
    let pve = env.pve()?;
    let mut out = Vec::new();
    for (node, storage) in pairs {
        let volid = waddle_proxmox::volume_id(&storage, ContentType::Import, &file);
        let vols = pve
            .list_storage_content(&node, &storage, Some("import"))
            .await
            .map_err(|e| OpError::Step(format!("listing {storage} on {node}: {e}")))?;
        if vols.iter().any(|v| v.volid == volid) {
            out.push(ImageRef {
                node,
                volume: volid,
            });
        }
    }
    Ok(out)
}

/// The whole state of an imported cluster `m` (name and secrets), read back from Proxmox and
/// the Talos API; `Err` says why it could not be.
pub(super) async fn read_back(
    ctx: &Context,
    parts: &Parts,
    m: &ClusterModel,
    diags: &mut Diagnostics,
) -> R<ClusterModel> {
    let pve = parts
        .pve
        .clone()
        .ok_or("the provider has no Proxmox VE connection to find the cluster's VMs")?;
    let bundle = bundle_of(m)?;
    let (creds, cc) = credentials(m, &bundle)?;
    let mut p = parts.clone();
    p.connect.connect_timeout = Duration::from_secs(5);
    p.connect.request_timeout = Some(Duration::from_secs(15));
    let env = make_env(p, creds, Duration::from_secs(60), ctx);
    let vms = cluster_vms(&pve, &m.cluster_name).await?;
    if vms.is_empty() {
        return Err(OpError::Step(format!(
            "no VM carries a mark of cluster {:?} (`waddle-owner: {}/{}/<node>`)",
            m.cluster_name,
            super::super::TYPE_NAME,
            m.cluster_name
        )));
    }
    let addresses = vms
        .iter()
        .map(|(name, (vm, cfg))| {
            ipconfig_address(cfg)
                .map(|a| (name.clone(), a))
                .ok_or_else(|| {
                    OpError::Step(format!("VM {} has no static address in ipconfig0", vm.vmid))
                })
        })
        .collect::<R<Vec<_>>>()?;
    let kept = read_kept_inputs(&env, &addresses).await?;
    if kept.cluster_name != m.cluster_name {
        return Err(OpError::Step(format!(
            "the control plane belongs to cluster {:?}",
            kept.cluster_name
        )));
    }
    let mut out = ClusterModel {
        id: Some(m.cluster_name.clone()),
        machine_secrets: m.machine_secrets.clone(),
        bootstrapped: Some(true),
        client_configuration: Some(cc.clone()),
        ..kept
    };
    let nodes = out.nodes();
    out.proxmox_vms = Some(
        vms.iter()
            .filter(|(name, _)| nodes.get(*name).is_some_and(|n| n.proxmox.is_some()))
            .map(|(name, (vm, _))| {
                (
                    name.clone(),
                    VmRef {
                        node: vm.node.clone(),
                        vmid: vm.vmid,
                    },
                )
            })
            .collect(),
    );
    out.node_addresses = Some(
        nodes
            .iter()
            .map(|(k, n)| (k.clone(), node_ip(n).to_string()))
            .collect(),
    );
    // Each node runs the versions its kept inputs name (what the last apply installed).
    out.node_versions = super::super::upgrade::planned(None, &out);
    out.machine_configurations = Some(render_all(&out, &bundle)?);
    out.talosconfig = Some(talosconfig_of(&out, &bundle, &cc)?);
    out.proxmox_images = Some(owned_images(&env, &out).await?);
    match control_planes(&out).first() {
        Some((_, cp)) => match fetch_kubeconfig(&env, node_ip(cp)).await {
            Ok(k) => out.kubeconfig = Some(k),
            // Left unknown: the next apply fetches it.
            Err(e) => diags.warning("Could not fetch the kubeconfig", e.to_string()),
        },
        None => return Err("the inputs name no control plane".into()),
    }
    tracing::info!(
        nodes = nodes.len(),
        vms = vms.len(),
        "imported cluster read back"
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_of_the_cloud_init_drive() {
        let cfg = |v: serde_json::Value| VmConfig(serde_json::from_value(v).expect("config"));
        assert_eq!(
            ipconfig_address(&cfg(
                serde_json::json!({"ipconfig0": "ip=10.10.0.10/24,gw=10.10.0.1"})
            )),
            Some("10.10.0.10".into())
        );
        assert_eq!(
            ipconfig_address(&cfg(
                serde_json::json!({"ipconfig0": "gw=10.10.0.1,ip=dhcp"})
            )),
            None
        );
        assert_eq!(ipconfig_address(&cfg(serde_json::json!({}))), None);
    }
}
