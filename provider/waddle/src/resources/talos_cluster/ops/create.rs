//! Create: secrets (given or generated), configurations, every node provisioned
//! concurrently, etcd restored or bootstrapped, health, kubeconfig.

use std::time::Instant;

use waddle_framework::prelude::*;
use waddle_talos::{SecretsBundle, SystemClock};

use super::super::{model_of, node_ip, to_value, wo, NodeModel};
use super::{
    credentials, etcd_backup, finish, make_env, provider_parts, provision_all, render_all,
    takes_every_apply, talosconfig_of, Created,
};

// ---------------------------------------------------------------------------------------
// Create
// ---------------------------------------------------------------------------------------

pub async fn create(ctx: &Context, req: CreateRequest, diags: &mut Diagnostics) -> Option<Value> {
    let mut m = model_of(&req.planned_state)?;
    let nodes = m.nodes();
    let needs_pve = nodes.values().any(|n| n.proxmox.is_some());
    let parts = provider_parts(ctx, needs_pve, diags)?;

    let write_only = wo::configured(&req.config);
    let given = match wo::bundle(&req.config) {
        Some(Ok(b)) => Some(b),
        Some(Err(e)) => {
            diags.error_at(
                AttributePath::attr(wo::ATTR),
                "Invalid secrets bundle",
                e.to_string(),
            );
            return None;
        }
        None if write_only => {
            diags.error_at(
                AttributePath::attr(wo::ATTR),
                "Missing secrets bundle",
                format!("{} is not known at apply", wo::ATTR),
            );
            return None;
        }
        None => None,
    };
    let bundle = match (given, &m.machine_secrets) {
        (Some(b), _) => b,
        (None, Some(s)) => match SecretsBundle::from_yaml(s) {
            Ok(b) => b,
            Err(e) => {
                diags.error_at(
                    AttributePath::attr("machine_secrets"),
                    "Invalid secrets bundle",
                    e.to_string(),
                );
                return None;
            }
        },
        (None, None) => {
            match tokio::task::spawn_blocking(|| SecretsBundle::generate(&SystemClock)).await {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    diags.error("Generating the cluster secrets failed", e.to_string());
                    return None;
                }
                Err(e) => {
                    diags.error("Generating the cluster secrets failed", e.to_string());
                    return None;
                }
            }
        }
    };
    let yaml = match bundle.to_yaml() {
        Ok(y) => y,
        Err(e) => {
            diags.error("Encoding the cluster secrets failed", e.to_string());
            return None;
        }
    };
    m.machine_secrets = Some(yaml);
    m.id = Some(m.cluster_name.clone());
    let configs = match render_all(&m, &bundle) {
        Ok(c) => c,
        Err(e) => {
            diags.error("Rendering the machine configuration failed", e.to_string());
            return None;
        }
    };
    m.machine_configurations = Some(configs.clone());
    m.node_addresses = Some(
        nodes
            .iter()
            .map(|(k, n)| (k.clone(), node_ip(n).to_string()))
            .collect(),
    );
    let (creds, cc) = match credentials(&m, &bundle) {
        Ok(x) => x,
        Err(e) => {
            diags.error("Client certificate", e.to_string());
            return None;
        }
    };
    m.client_configuration = Some(cc.clone());
    match talosconfig_of(&m, &bundle, &cc) {
        Ok(t) => m.talosconfig = Some(t),
        Err(e) => {
            diags.error("talosconfig", e.to_string());
            return None;
        }
    }
    m.bootstrapped = Some(false);
    m.node_versions = super::super::upgrade::planned(None, &m);
    m.etcd_snapshots = Some(Vec::new());
    let env = make_env(parts, creds, m.timeout(super::super::Op::Create), ctx);
    let created = Created {
        fresh: true,
        ..Default::default()
    };
    let started = Instant::now();
    let list: Vec<(String, NodeModel)> = nodes.into_iter().collect();
    let errors: Vec<String> = provision_all(&env, &m, &list, &configs, &created)
        .await
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    created.write_into(&mut m);
    if !errors.is_empty() {
        for e in errors {
            diags.error("Creating the Talos cluster failed", e);
        }
        m.kubeconfig = Some(String::new());
        wo::finalize(&mut m, write_only, None);
        return to_value(&m, diags);
    }
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "all nodes configured"
    );
    if let Some(r) = m.etcd_restore.clone() {
        if let Err(e) = etcd_backup::restore(&env, &m, &r).await {
            diags.error("Restoring etcd failed", e.to_string());
            // Not restored: the next plan shows the restore again.
            m.etcd_restore = None;
            m.kubeconfig = Some(String::new());
            wo::finalize(&mut m, write_only, None);
            return to_value(&m, diags);
        }
        m.bootstrapped = Some(true);
    }
    match finish(&env, &mut m, &bundle, true).await {
        Err(e) => {
            diags.error("Creating the Talos cluster failed", e.to_string());
            if m.kubeconfig.is_none() {
                m.kubeconfig = Some(String::new());
            }
        }
        Ok(()) if takes_every_apply(&m) => {
            if let Err(e) = etcd_backup::take(&env, &mut m, super::super::etcd::EVERY_APPLY).await {
                diags.error("etcd snapshot failed", e.to_string());
            }
        }
        Ok(()) => {}
    }
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "create done");
    wo::finalize(&mut m, write_only, None);
    to_value(&m, diags)
}
