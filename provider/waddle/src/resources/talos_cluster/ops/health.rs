//! The cluster health wait (create, update, restore): every check on every node each round,
//! reported together, under the operation's whole deadline (no cap of its own).
//!
//! * etcd membership, read from the first control plane that answers: every configured
//!   control plane is a member (by hostname), and every member is a configured control
//!   plane (a stale member, e.g. of a machine reset without leaving, is named with its id);
//! * services on every node: `apid`, `kubelet`, and `etcd` on control planes, running and
//!   not unhealthy;
//! * boot done on every node (`MachineStatus` stage `running`; `ready` is not required: its
//!   `nodeReady` check is never met with CNI `none` until a CNI is installed);
//! * the Kubernetes API `/readyz` through `endpoint`.
//!
//! Waiting is logged as it changes, e.g. `etcd: nodes["cp3"] is not a member yet; services:
//! nodes["w1"]: service kubelet not started yet`; a timeout reports the last such line.

use std::collections::BTreeSet;
use std::time::Instant;

use waddle_talos::SecretsBundle;

use super::{control_planes, node_booted, node_health, readyz, Attempt, ClusterModel, Env, R};
use crate::resources::talos_cluster::node_ip;

/// What is not healthy yet, one entry per check and node; empty when healthy.
pub async fn pending(env: &Env, m: &ClusterModel, bundle: &SecretsBundle) -> Vec<String> {
    let cps = control_planes(m);
    let nodes = m.nodes();
    let mut waiting = Vec::new();

    // etcd membership, as the first answering control plane sees it.
    let mut members = None;
    let mut errs = Vec::new();
    for (name, n) in &cps {
        match env.mtls(node_ip(n)).await {
            Ok(c) => match c.etcd_members().await {
                Ok(ms) => {
                    members = Some(ms);
                    break;
                }
                Err(e) => errs.push(format!("nodes[{name:?}]: {e}")),
            },
            Err(e) => errs.push(format!("nodes[{name:?}]: {e}")),
        }
    }
    match members {
        None => waiting.push(format!(
            "etcd: no control plane lists the members ({})",
            errs.join("; ")
        )),
        Some(ms) => {
            let hostnames: BTreeSet<String> = cps
                .iter()
                .map(|(k, n)| n.hostname.clone().unwrap_or_else(|| k.clone()))
                .collect();
            for (k, n) in &cps {
                let h = n.hostname.clone().unwrap_or_else(|| k.clone());
                if !ms.iter().any(|m| m.hostname == h) {
                    waiting.push(format!("etcd: nodes[{k:?}] is not a member yet"));
                }
            }
            for x in ms.iter().filter(|m| !hostnames.contains(&m.hostname)) {
                waiting.push(format!(
                    "etcd: member {:?} (id {:x}, {}) is no control plane of this cluster's \
                     configuration (a stale member? `talosctl etcd remove-member {:x}`)",
                    x.hostname,
                    x.id,
                    x.peer_urls.join(","),
                    x.id
                ));
            }
        }
    }

    let checks = nodes.iter().map(|(k, n)| node_health(env, k, n));
    for r in futures::future::join_all(checks).await {
        if let Err(e) = r {
            waiting.push(format!("services: {e}"));
        }
    }
    let boots = nodes.iter().map(|(k, n)| node_booted(env, k, n));
    for (r, k) in futures::future::join_all(boots)
        .await
        .into_iter()
        .zip(nodes.keys())
    {
        match r {
            Ok(st) if !st.ready => {
                tracing::debug!(node = k.as_str(), "boot done, machine not ready: {st}");
            }
            Ok(_) => {}
            Err(e) => waiting.push(format!("boot: {e}")),
        }
    }
    if let Err(e) = readyz(env, &m.endpoint, bundle).await {
        waiting.push(e.to_string());
    }
    waiting
}

/// Waits until [`pending`] is empty, until the operation's deadline.
pub async fn health(env: &Env, m: &ClusterModel, bundle: &SecretsBundle) -> R<()> {
    if control_planes(m).is_empty() {
        return Err("no control plane".into());
    }
    let started = Instant::now();
    env.retry("cluster health", || async {
        let w = pending(env, m, bundle).await;
        if w.is_empty() {
            Attempt::Done(())
        } else {
            Attempt::Again(w.join("; "))
        }
    })
    .await?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "cluster healthy");
    Ok(())
}
