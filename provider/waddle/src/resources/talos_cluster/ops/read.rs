//! Read: gone VMs, configuration drift, and the read-back of an imported cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use waddle_framework::prelude::*;
use waddle_talos::api::CONFIG_PATH;

use super::super::changes;
use super::super::{model_of, node_ip, to_value, ClusterModel};
use super::{bundle_of, credentials, imported, make_env, owner_mark, provider_parts};

// ---------------------------------------------------------------------------------------
// Read
// ---------------------------------------------------------------------------------------

pub async fn read(ctx: &Context, state: Value, diags: &mut Diagnostics) -> Option<Value> {
    let Some(mut m) = model_of(&state) else {
        return Some(state);
    };
    let mut state = state;
    // A state written before `config_contract` existed: the contract it was rendered for.
    if m.config_contract.is_none() && m.nodes.is_some() {
        let c = super::super::contract::of_model(&m).as_str();
        m.config_contract = Some(c.to_string());
        state.set_path(
            &AttributePath::attr(super::super::contract::ATTR),
            Value::from(c),
        );
    }
    let Some(parts) = provider_parts(ctx, false, &mut Diagnostics::new()) else {
        return Some(state);
    };
    if m.nodes.is_none() {
        // Imported: read the rest back, or leave it to the next apply to adopt the nodes.
        match imported::read_back(ctx, &parts, &m, diags).await {
            Ok(back) => {
                m = back;
                // An inputs line without it: the default of its `talos_version`.
                if m.config_contract.is_none() {
                    let c = super::super::contract::of_model(&m).as_str();
                    m.config_contract = Some(c.to_string());
                }
            }
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
    // Configuration drift: what the node runs vs what was applied.
    let bundle = bundle_of(&m).ok();
    if let (Some(bundle), Some(expected)) = (bundle, m.machine_configurations.clone()) {
        if let Ok((creds, _)) = credentials(&m, &bundle) {
            let mut p = parts.clone();
            p.pve = None;
            p.connect.connect_timeout = Duration::from_secs(5);
            p.connect.request_timeout = Some(Duration::from_secs(15));
            let env = make_env(p, creds, Duration::from_secs(30), ctx);
            let checks = nodes.iter().map(|(name, n)| {
                let env = &env;
                let want = expected.get(name).cloned();
                async move {
                    let c = env.mtls(node_ip(n)).await.ok()?;
                    let got = c.read_file(CONFIG_PATH).await.ok()?;
                    let got = String::from_utf8(got).ok()?;
                    let want = want?;
                    if super::super::inputs::same_applied(&got, &want) {
                        None
                    } else {
                        Some((name.clone(), got))
                    }
                }
            });
            let mut configs = expected.clone();
            for (name, got) in futures::future::join_all(checks)
                .await
                .into_iter()
                .flatten()
            {
                tracing::info!(node = name, "machine configuration on the node differs");
                configs.insert(name, got);
            }
            m.machine_configurations = Some(configs);
        }
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
