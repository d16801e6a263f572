//! Read: gone VMs, configuration drift, and the read-back of an imported cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use waddle_framework::prelude::*;
use waddle_talos::api::CONFIG_PATH;

use waddle_talos::api::Credentials;
use waddle_talos::mask::{mask_config, same_masked};

use super::super::changes;
use super::super::{model_of, node_ip, to_value, upgrade, wo, ClusterModel};
use super::{bundle_of, credentials, imported, make_env, owner_mark, provider_parts};

// ---------------------------------------------------------------------------------------
// Read
// ---------------------------------------------------------------------------------------

pub async fn read(ctx: &Context, state: Value, diags: &mut Diagnostics) -> Option<Value> {
    let Some(mut m) = model_of(&state) else {
        return Some(state);
    };
    let Some(parts) = provider_parts(ctx, false, &mut Diagnostics::new()) else {
        return Some(state);
    };
    if m.nodes.is_none() {
        // Imported: read the rest back, or leave it to the next apply to adopt the nodes.
        match imported::read_back(ctx, &parts, &m, diags).await {
            Ok(back) => m = back,
            Err(e) => {
                diags.warning(
                    "The imported cluster was not read back",
                    format!(
                        "{e}. The state keeps the cluster name and secrets only; the next apply \
                         adopts the configured nodes (existing VMs and configured nodes are \
                         kept)."
                    ),
                );
                return Some(state);
            }
        }
    }
    let nodes = m.nodes();
    let pve = parts.pve.clone();
    let mut vms = m.proxmox_vms.clone().unwrap_or_default();
    let mut nodes = nodes;
    if let Some(pve) = &pve {
        // A node's VM is gone when its VMID is free, or held by a VM that is not the node's
        // (ours was deleted by hand and the id reused): the plan re-creates the node.
        let checks = vms.iter().map(|(name, vm)| {
            let pve = pve.clone();
            let name = name.clone();
            let vmid = vm.vmid;
            let mark = owner_mark(&m.cluster_name, &name);
            let hostname = nodes
                .get(&name)
                .and_then(|n| n.hostname.clone())
                .unwrap_or_else(|| name.clone());
            async move {
                let r = match pve.locate_vm(vmid).await {
                    Ok(Some(vm)) => match pve.vm_config(&vm.node, vmid).await {
                        Ok(cfg) => Ok(mark
                            .check(vmid, &cfg, Some(&hostname))
                            .err()
                            .map(|e| e.to_string())),
                        Err(e) if e.is_not_found() => Ok(Some(format!("VM {vmid} is gone"))),
                        Err(e) => Err(e),
                    },
                    Ok(None) => Ok(Some(format!("VM {vmid} is gone"))),
                    Err(e) => Err(e),
                };
                (name, r)
            }
        });
        for (name, r) in futures::future::join_all(checks).await {
            match r {
                Ok(Some(why)) => {
                    tracing::info!(node = name, "the node's VM is gone: {why}");
                    vms.remove(&name);
                    nodes.remove(&name);
                }
                Ok(None) => {}
                Err(e) => diags.warning(
                    "Could not check a node's VM",
                    format!("nodes[{name:?}]: {e}"),
                ),
            }
        }
    }
    // Drift: the configuration and the Talos version each node runs.
    if let Some(creds) = read_credentials(&m) {
        let mut p = parts.clone();
        p.pve = None;
        p.connect.connect_timeout = Duration::from_secs(5);
        p.connect.request_timeout = Some(Duration::from_secs(15));
        let env = make_env(p, creds, Duration::from_secs(30), ctx);
        let probes = nodes.iter().map(|(name, n)| {
            let env = &env;
            async move {
                let c = env.mtls(node_ip(n)).await.ok()?;
                let config = match c.read_file(CONFIG_PATH).await {
                    Ok(b) => String::from_utf8(b).ok(),
                    Err(_) => None,
                };
                let version = c.version().await.ok().map(|v| v.tag);
                Some((name.clone(), Probe { config, version }))
            }
        });
        let found: BTreeMap<String, Probe> = futures::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect();
        config_drift(&mut m, &found);
        version_drift(&mut m, &found);
    }
    m.proxmox_vms = Some(vms);
    // States written before `etcd_snapshots` existed (and imports) get an empty list.
    m.etcd_snapshots.get_or_insert_with(Vec::new);
    // States written before `node_status` existed get it here, so the next plan is empty.
    m.node_status = Some(
        changes::node_status(
            &ClusterModel {
                nodes: Some(nodes.clone()),
                ..m.clone()
            },
            m.node_status.as_ref(),
            &BTreeMap::new(),
        )
        .into_iter()
        .map(|(k, mut s)| {
            if m.node_status.as_ref().is_none_or(|p| !p.contains_key(&k)) {
                s.action = Some("existing".into());
            }
            (k, s)
        })
        .collect(),
    );
    m.nodes = Some(nodes);
    to_value(&m, diags)
}

/// What a node answered on read (`None`: that call failed).
struct Probe {
    config: Option<String>,
    version: Option<String>,
}

/// Credentials from the state: its `client_configuration`, else issued from its bundle.
fn read_credentials(m: &ClusterModel) -> Option<Credentials> {
    wo::state_credentials(m).or_else(|| {
        let bundle = bundle_of(m).ok()?;
        credentials(m, &bundle).ok().map(|(c, _)| c)
    })
}

/// Configuration drift: what a node runs vs what was applied. A node whose configuration
/// differs gets it in `machine_configurations` (or, with write-only secrets, masked in
/// `machine_configurations_masked`), so the next plan shows the difference.
fn config_drift(m: &mut ClusterModel, found: &BTreeMap<String, Probe>) {
    let got = |name: &str| found.get(name).and_then(|p| p.config.clone());
    if let Some(expected) = m.machine_configurations.clone() {
        let mut configs = expected.clone();
        for (name, want) in &expected {
            match got(name) {
                Some(g) if !super::super::inputs::same_applied(&g, want) => {
                    tracing::info!(node = name, "machine configuration on the node differs");
                    configs.insert(name.clone(), g);
                }
                _ => {}
            }
        }
        m.machine_configurations_masked = Some(wo::masked(&configs));
        m.machine_configurations = Some(configs);
    } else if let Some(mut masked) = m.machine_configurations_masked.clone() {
        for (name, want) in masked.clone() {
            let Some(g) = got(&name).and_then(|g| mask_config(&g).ok()) else {
                continue;
            };
            if !same_masked(&g, &want) {
                tracing::info!(node = name, "machine configuration on the node differs");
                masked.insert(name, g);
            }
        }
        m.machine_configurations_masked = Some(masked);
    }
}

/// Version drift: a node whose reported Talos version is not the one recorded for it (an
/// OS upgraded or rolled back by hand) gets it in `node_versions`, so the next plan shows
/// the node's upgrade to the configured version (or refuses it, as any version path).
fn version_drift(m: &mut ClusterModel, found: &BTreeMap<String, Probe>) {
    let mut records: BTreeMap<String, upgrade::NodeVersionModel> = m
        .nodes()
        .keys()
        .map(|k| (k.clone(), upgrade::recorded(m, k)))
        .collect();
    let mut changed = false;
    for (name, r) in records.iter_mut() {
        let Some(tag) = found.get(name).and_then(|p| p.version.clone()) else {
            continue;
        };
        if tag.is_empty() || r.talos_version.as_deref() == Some(tag.as_str()) {
            continue;
        }
        tracing::info!(
            node = name,
            recorded = r.talos_version.as_deref().unwrap_or_default(),
            reported = tag,
            "the node runs another Talos version"
        );
        // The image the node was upgraded with is not reported: the recorded installer
        // with the reported version's tag (what `talosctl upgrade` with the same schematic
        // installs).
        r.installer = r.installer.as_deref().and_then(|i| retagged(i, &tag));
        r.talos_version = Some(tag);
        changed = true;
    }
    if changed {
        m.node_versions = Some(records);
    }
}

/// `image` with its tag replaced by `tag` (`None` when it has no tag).
fn retagged(image: &str, tag: &str) -> Option<String> {
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    let colon = image[slash..].rfind(':')? + slash;
    Some(format!("{}:{tag}", &image[..colon]))
}

#[cfg(test)]
mod tests {
    use super::retagged;

    #[test]
    fn an_installer_is_retagged() {
        assert_eq!(
            retagged("ghcr.io/siderolabs/installer:v1.12.4", "v1.12.11").as_deref(),
            Some("ghcr.io/siderolabs/installer:v1.12.11")
        );
        assert_eq!(
            retagged("factory.talos.dev/installer/ab12:v1.12.4", "v1.13.0").as_deref(),
            Some("factory.talos.dev/installer/ab12:v1.13.0")
        );
        assert_eq!(
            retagged("registry.local:5000/installer:v1", "v2").as_deref(),
            Some("registry.local:5000/installer:v2")
        );
        assert_eq!(retagged("registry.local:5000/installer", "v2"), None);
    }
}
