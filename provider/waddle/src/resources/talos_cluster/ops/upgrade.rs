//! Talos OS and Kubernetes upgrades, apply side (the plan side, `node_versions` and the
//! version path refusals are in `talos_cluster/upgrade.rs`).
//!
//! Talos: control planes one at a time, each only once etcd is healthy with all members
//! (Talos checks the same on the node; waddle checks first so a refusal names the member),
//! then workers in batches of `upgrade.parallelism`. The API follows what the node reports:
//! `MachineService.Upgrade` below v1.13, `ImageService.Pull` + `LifecycleService.Upgrade`
//! from v1.13 on. A node is done when it answers on the new version with a new boot ID, its
//! services are healthy (control planes: the etcd member too) and its boot is done. The first
//! failure stops the roll; nodes after it are left alone.
//!
//! Kubernetes (`talosctl upgrade-k8s` order): the control-plane components (API server,
//! controller manager, scheduler, kube-proxy) through each control plane's machine
//! configuration, one control plane at a time with the kubelet image left as it was; the
//! kubelets come after, node by node, control planes first (`ops::update`, step 5).

use super::OpError;
use std::collections::BTreeMap;

use waddle_framework::error_chain;
use waddle_talos::api::{RebootMode, UpgradeApi, UpgradeRequest};
use waddle_talos::versions::KUBELET_IMAGE;

use super::super::upgrade::{NodeVersionModel, Options};
use super::kube::{Eviction, KubeAdmin};
use super::{apply_configured, classify, node_booted, node_health, Attempt, Env, R};
use crate::resources::talos_cluster::{node_ip, NodeModel};

/// The longest interval between two looks at a rebooting node during an upgrade.
const REBOOT_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// What a roll did: the nodes done, in order, and the error that stopped it.
#[derive(Debug, Default)]
pub struct Rolled {
    pub done: Vec<String>,
    pub error: Option<String>,
}

/// Whether etcd is healthy with all members: as many members as control planes, each
/// control plane's etcd service running and healthy.
async fn etcd_healthy(env: &Env, cps: &[(String, NodeModel)]) -> R<()> {
    let mut members = None;
    let mut last = String::new();
    for (k, n) in cps {
        match env.mtls(node_ip(n)).await {
            Ok(c) => match c.etcd_members().await {
                Ok(m) => {
                    members = Some(m.len());
                    break;
                }
                Err(e) => last = format!("nodes[{k:?}]: etcd members: {e}"),
            },
            Err(e) => last = format!("nodes[{k:?}]: {e}"),
        }
    }
    match members {
        None => return Err(last.into()),
        Some(m) if m != cps.len() => {
            return Err(OpError::Step(format!(
                "etcd has {m} members, the cluster {} control planes",
                cps.len()
            )))
        }
        Some(_) => {}
    }
    let checks = cps.iter().map(|(k, n)| node_health(env, k, n));
    futures::future::join_all(checks)
        .await
        .into_iter()
        .collect::<R<Vec<()>>>()
        .map(|_| ())
}

/// Waits until etcd is healthy with all members (before a control plane is upgraded).
pub(in super::super) async fn wait_etcd_healthy(
    env: &Env,
    cps: &[(String, NodeModel)],
    before: &str,
) -> R<()> {
    env.retry(
        &format!("nodes[{before:?}]: etcd healthy with all members before the upgrade"),
        || async {
            match etcd_healthy(env, cps).await {
                Ok(()) => Attempt::Done(()),
                Err(e) => Attempt::Again(e.to_string()),
            }
        },
    )
    .await
}

/// The version tag and boot ID node `name` reports.
async fn where_is(env: &Env, name: &str, ip: &str) -> R<(String, String)> {
    env.retry(
        &format!("nodes[{name:?}]: Talos version and boot ID"),
        || async {
            let c = match env.mtls(ip).await {
                Ok(c) => c,
                Err(e) => return classify(e),
            };
            let tag = match c.version().await {
                Ok(v) => v.tag,
                Err(e) => return classify(e),
            };
            match c.boot_id().await {
                Ok(b) => Attempt::Done((tag, b)),
                Err(e) => classify(e),
            }
        },
    )
    .await
}

/// Whether a node recorded at `from` that reports `tag` already runs `target`: an upgrade
/// whose answer or record was lost (an interrupted apply; Talos finishes an accepted upgrade
/// on its own). Only when the installer changes in its tag alone (same image, same
/// schematic), since a node reports its version, not its installer.
pub fn already_upgraded(from: &NodeVersionModel, target: &NodeVersionModel, tag: &str) -> bool {
    let repo = |i: &Option<String>| {
        i.as_deref()
            .and_then(|x| x.rsplit_once(':'))
            .map(|(r, _)| r.to_string())
    };
    target.talos_version.as_deref() == Some(tag)
        && from.talos_version.as_deref() != Some(tag)
        && repo(&from.installer).is_some()
        && repo(&from.installer) == repo(&target.installer)
}

/// Upgrades one node and waits until it is done.
async fn upgrade_node(
    env: &Env,
    name: &str,
    n: &NodeModel,
    cps: &[(String, NodeModel)],
    (from, target): (&NodeVersionModel, &NodeVersionModel),
    opts: &Options,
) -> R<()> {
    let ip = node_ip(n).to_string();
    let want = target.talos_version.clone().unwrap_or_default();
    let image = target.installer.clone().unwrap_or_default();
    let (tag, boot) = where_is(env, name, &ip).await?;
    if already_upgraded(from, target, &tag) {
        tracing::info!(
            node = name,
            version = tag,
            "already upgraded (an earlier apply's call)"
        );
        return env
            .retry(&format!("nodes[{name:?}]: healthy on {want}"), || async {
                if let Err(e) = node_health(env, name, n).await {
                    return Attempt::Again(e.to_string());
                }
                match node_booted(env, name, n).await {
                    Ok(_) => Attempt::Done(()),
                    Err(e) => Attempt::Again(e.to_string()),
                }
            })
            .await;
    }
    if n.role == "controlplane" {
        wait_etcd_healthy(env, cps, name).await?;
    }
    let api = UpgradeApi::for_version(&tag);
    tracing::info!(node = name, from = tag, to = want, api = ?api, "upgrading Talos");
    let call = env
        .retry(&format!("nodes[{name:?}]: upgrade to {image}"), || async {
            let c = match env.mtls(&ip).await {
                Ok(c) => c,
                Err(e) => return classify(e),
            };
            let r = match api {
                UpgradeApi::Machine => c
                    .upgrade(&UpgradeRequest {
                        image: image.clone(),
                        preserve: opts.preserve,
                        stage: opts.stage,
                        force: false,
                        reboot_mode: RebootMode::parse(&opts.reboot_mode).unwrap_or_default(),
                    })
                    .await
                    .map(|_| ()),
                UpgradeApi::Lifecycle => match c.pull_image(&image).await {
                    Ok(pulled) => c.lifecycle_upgrade(&pulled).await,
                    Err(e) => Err(e),
                },
            };
            match r {
                Ok(()) => Attempt::Done(()),
                // Only a call that never reached the node is tried again.
                Err(e) if e.code().is_none() && e.is_transient() => Attempt::Again(error_chain(&e)),
                Err(e) => Attempt::Fatal(error_chain(&e)),
            }
        })
        .await;
    call.map_err(|e| OpError::Step(format!("the upgrade of nodes[{name:?}] failed: {e}")))?;
    let stage = opts.stage;
    // Two waits, each with its own polling interval: the reboot, polled at most every
    // REBOOT_POLL (one connection attempt to one node: the node's return is noticed at most
    // that late, each step of a roll waits for it), then the boot sequence and services,
    // which finish shortly after the node answers again — a fresh, short interval catches
    // that at once instead of one long interval late.
    let mut reboot_env = env.clone();
    reboot_env.poll.max = reboot_env.poll.max.min(REBOOT_POLL);
    reboot_env
        .retry(
            &format!("nodes[{name:?}]: back on {want} after the upgrade"),
            || async {
                let (v, b) = match env.mtls(&ip).await {
                    Ok(c) => match (c.version().await, c.boot_id().await) {
                        (Ok(v), Ok(b)) => (v.tag, b),
                        (Err(e), _) | (_, Err(e)) => return Attempt::Again(e.to_string()),
                    },
                    Err(e) => return Attempt::Again(e.to_string()),
                };
                if b == boot {
                    return Attempt::Again("not rebooted yet (same boot ID)".into());
                }
                if v != want {
                    // A staged upgrade reboots twice; otherwise the node booted the old system
                    // again (the installer failed, or Talos rolled back).
                    let msg = format!("rebooted, but runs {v} instead of {want}");
                    return if stage {
                        Attempt::Again(msg)
                    } else {
                        Attempt::Fatal(msg)
                    };
                }
                Attempt::Done(())
            },
        )
        .await?;
    env.retry(
        &format!("nodes[{name:?}]: healthy on {want} after the upgrade"),
        || async {
            // Still on the new version with a new boot ID (a node that fell back to the
            // old system on a later boot is caught here too).
            let (v, b) = match env.mtls(&ip).await {
                Ok(c) => match (c.version().await, c.boot_id().await) {
                    (Ok(v), Ok(b)) => (v.tag, b),
                    (Err(e), _) | (_, Err(e)) => return Attempt::Again(e.to_string()),
                },
                Err(e) => return Attempt::Again(e.to_string()),
            };
            if b == boot || v != want {
                return Attempt::Again(format!("runs {v} (boot ID changed: {})", b != boot));
            }
            if let Err(e) = node_health(env, name, n).await {
                return Attempt::Again(e.to_string());
            }
            match node_booted(env, name, n).await {
                Ok(_) => Attempt::Done(()),
                Err(e) => Attempt::Again(e.to_string()),
            }
        },
    )
    .await?;
    tracing::info!(node = name, version = want, "Talos upgrade done");
    Ok(())
}

/// The Kubernetes client a drain uses (`upgrade.drain`), from the cluster's admin
/// `kubeconfig` (the prior state's); `None` without `drain`.
pub(in super::super) fn drain_client(
    env: &Env,
    opts: &Options,
    kubeconfig: Option<&str>,
) -> R<Option<KubeAdmin>> {
    if !opts.drain {
        return Ok(None);
    }
    let kc = kubeconfig
        .filter(|k| !k.is_empty())
        .ok_or("upgrade.drain: the cluster has no kubeconfig yet (it was never bootstrapped)")?;
    KubeAdmin::from_kubeconfig(kc, env.proxy_url.as_deref())
        .map(Some)
        .map_err(|e| OpError::Step(format!("upgrade.drain: {e}")))
}

/// The Kubernetes Node name of a node (its hostname).
fn node_name(key: &str, n: &NodeModel) -> String {
    n.hostname.clone().unwrap_or_else(|| key.to_string())
}

/// Cordons (or uncordons) a Node, retried while the API does not answer.
async fn set_unschedulable(env: &Env, kube: &KubeAdmin, key: &str, node: &str, on: bool) -> R<()> {
    let what = if on { "cordoned" } else { "uncordoned" };
    env.retry(&format!("nodes[{key:?}]: Node {node} {what}"), || async {
        match kube.set_unschedulable(node, on).await {
            Ok(()) => Attempt::Done(()),
            Err(e) => Attempt::Again(e.to_string()),
        }
    })
    .await
}

/// `kubectl drain --ignore-daemonsets --delete-emptydir-data` of one worker: cordon, then
/// evict every pod bound to it (DaemonSet pods and static pods' mirrors stay) through the
/// Eviction API, which honours PodDisruptionBudgets: a refused eviction (`429`) is asked
/// again until the budget allows it or the operation's deadline passes, and the drain is
/// done once no such pod is left on the node.
async fn drain(env: &Env, kube: &KubeAdmin, key: &str, node: &str) -> R<()> {
    set_unschedulable(env, kube, key, node, true).await?;
    tracing::info!(node = key, kube_node = node, "cordoned; evicting its pods");
    env.retry(&format!("nodes[{key:?}]: drain of Node {node}"), || async {
        let pods = match kube.pods_on(node).await {
            Ok(p) => p,
            Err(e) => return Attempt::Again(e.to_string()),
        };
        let left: Vec<_> = pods
            .into_iter()
            .filter(|p| !p.daemon_set && !p.mirror)
            .collect();
        if left.is_empty() {
            return Attempt::Done(());
        }
        let mut refused = Vec::new();
        for p in &left {
            match kube.evict(p).await {
                Ok(Eviction::Done) => tracing::info!(node = key, pod = p.id(), "evicted"),
                Ok(Eviction::Refused(why)) => refused.push(format!("{}: {why}", p.id())),
                Err(e) => return Attempt::Again(e.to_string()),
            }
        }
        if refused.is_empty() {
            Attempt::Again(format!(
                "{} pod(s) evicted, waiting until they are gone",
                left.len()
            ))
        } else {
            Attempt::Again(format!("eviction refused: {}", refused.join("; ")))
        }
    })
    .await
}

/// A worker's upgrade with `upgrade.drain`: drained before, uncordoned once it is done. A
/// drain that fails uncordons the node again (it was not touched); a failed upgrade leaves
/// it cordoned.
async fn upgrade_worker(
    env: &Env,
    (key, n): (&str, &NodeModel),
    cps: &[(String, NodeModel)],
    versions: (&NodeVersionModel, &NodeVersionModel),
    opts: &Options,
    kube: Option<&KubeAdmin>,
) -> R<()> {
    let Some(kube) = kube else {
        return upgrade_node(env, key, n, cps, versions, opts).await;
    };
    let node = node_name(key, n);
    if let Err(e) = drain(env, kube, key, &node).await {
        // The deadline may have passed: a few attempts of their own.
        let mut undone = Err(OpError::from(String::new()));
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            undone = kube.set_unschedulable(&node, false).await;
            if undone.is_ok() {
                break;
            }
        }
        let undo = match undone {
            Ok(()) => "it was uncordoned again and not upgraded".to_string(),
            Err(u) => format!("it stays cordoned ({u}); `kubectl uncordon {node}` undoes that"),
        };
        return Err(OpError::Step(format!(
            "the drain of nodes[{key:?}] failed: {e}; {undo}"
        )));
    }
    upgrade_node(env, key, n, cps, versions, opts)
        .await
        .map_err(|e| {
            format!("{e} (Node {node} stays cordoned: `kubectl uncordon {node}` once it is fixed)")
        })?;
    set_unschedulable(env, kube, key, &node, false).await?;
    tracing::info!(node = key, kube_node = node, "uncordoned");
    Ok(())
}

/// Upgrades `todo` (nodes of the cluster whose `cps` are its control planes) to `target`:
/// control planes one at a time, then workers in batches (each drained first and uncordoned
/// after when `kube` is given, see [`drain_client`]). Stops at the first failure.
pub(in super::super) async fn roll_talos(
    env: &Env,
    cps: &[(String, NodeModel)],
    todo: &[(String, NodeModel)],
    records: &BTreeMap<String, NodeVersionModel>,
    target: &NodeVersionModel,
    opts: &Options,
    kube: Option<&KubeAdmin>,
) -> Rolled {
    let none = NodeVersionModel::default();
    let from = |k: &str| records.get(k).unwrap_or(&none);
    let mut out = Rolled::default();
    let (todo_cps, workers): (Vec<_>, Vec<_>) =
        todo.iter().partition(|(_, n)| n.role == "controlplane");
    for (k, n) in todo_cps {
        match upgrade_node(env, k, n, cps, (from(k), target), opts).await {
            Ok(()) => out.done.push(k.clone()),
            Err(e) => {
                out.error = Some(e.to_string());
                return out;
            }
        }
    }
    for batch in workers.chunks(opts.parallelism.max(1)) {
        let runs = batch.iter().map(|(k, n)| async move {
            (
                k.clone(),
                upgrade_worker(env, (k, n), cps, (from(k), target), opts, kube).await,
            )
        });
        let mut errors = Vec::new();
        for (k, r) in futures::future::join_all(runs).await {
            match r {
                Ok(()) => out.done.push(k),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            out.error = Some(errors.join("; "));
            return out;
        }
    }
    out
}

/// The pre-check of a Kubernetes upgrade to a later minor (`talosctl upgrade-k8s` checks the
/// same): objects still written through an API version the target minor no longer serves
/// (see `kube::removed_apis`) refuse the upgrade, naming them. `Ok(Some(warning))` when the
/// check could not run (no kubeconfig, the API unreachable): nothing is refused then.
pub(in super::super) async fn removed_apis_check(
    env: &Env,
    from: Option<&str>,
    to: Option<&str>,
    kubeconfig: Option<&str>,
) -> R<Option<String>> {
    let minor = |v: Option<&str>| v.and_then(super::super::upgrade::semver).map(|v| v.1);
    let (Some(current), Some(target)) = (minor(from), minor(to)) else {
        return Ok(None);
    };
    if target <= current
        || super::kube::removed_apis::removed_between(current, target)
            .next()
            .is_none()
    {
        return Ok(None);
    }
    let not_checked = |why: &str| {
        Ok(Some(format!(
            "the API versions Kubernetes 1.{target} removes could not be looked for ({why}); \
             check with `kubectl get --raw /metrics | grep apiserver_requested_deprecated_apis` \
             that nothing uses them"
        )))
    };
    let Some(kc) = kubeconfig.filter(|k| !k.is_empty()) else {
        return not_checked("the cluster has no kubeconfig");
    };
    let kube = match KubeAdmin::from_kubeconfig(kc, env.proxy_url.as_deref()) {
        Ok(k) => k,
        Err(e) => return not_checked(&e.to_string()),
    };
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 && env.sleep(std::time::Duration::from_secs(1)).await.is_err() {
            break;
        }
        match kube.objects_in_removed_apis(current, target).await {
            Ok(found) if found.is_empty() => return Ok(None),
            Ok(found) => {
                return Err(OpError::Step(format!(
                    "Kubernetes {} -> {}: these objects are still written through API versions \
                     that Kubernetes 1.{target} no longer serves: {}. Move their manifests and \
                     clients to the replacement versions (see \
                     https://kubernetes.io/docs/reference/using-api/deprecation-guide/), apply \
                     them again, then upgrade; nothing was changed",
                    from.unwrap_or_default(),
                    to.unwrap_or_default(),
                    found.join(", ")
                )))
            }
            Err(e) => last = e.to_string(),
        }
    }
    not_checked(&last)
}

/// A control plane's configuration with the new control-plane component images but the
/// kubelet image it runs now (`talosctl upgrade-k8s` updates the kubelets last).
pub fn components_only(config: &str, old_k8s: &str, new_k8s: &str) -> String {
    let bare = |v: &str| v.trim_start_matches('v').to_string();
    config.replace(
        &format!("{KUBELET_IMAGE}:v{}", bare(new_k8s)),
        &format!("{KUBELET_IMAGE}:v{}", bare(old_k8s)),
    )
}

/// Phase one of a Kubernetes upgrade: every control plane of `cps_todo`, one at a time,
/// gets the new control-plane component images (kubelet unchanged), and is healthy again
/// (services, etcd member) before the next.
pub(in super::super) async fn roll_control_plane_components(
    env: &Env,
    cps_todo: &[(String, NodeModel)],
    old_ips: &BTreeMap<String, String>,
    configs: &BTreeMap<String, String>,
    old_k8s: &str,
    new_k8s: &str,
) -> Rolled {
    let mut out = Rolled::default();
    for (k, n) in cps_todo {
        let cfg = components_only(
            configs.get(k).map(String::as_str).unwrap_or_default(),
            old_k8s,
            new_k8s,
        );
        let ip = old_ips
            .get(k)
            .cloned()
            .unwrap_or_else(|| node_ip(n).to_string());
        tracing::info!(
            node = k.as_str(),
            from = old_k8s,
            to = new_k8s,
            "Kubernetes control-plane components"
        );
        let r = async {
            apply_configured(env, k, &ip, &cfg).await?;
            env.retry(
                &format!("nodes[{k:?}]: control-plane components healthy"),
                || async {
                    match node_health(env, k, n).await {
                        Ok(()) => Attempt::Done(()),
                        Err(e) => Attempt::Again(e.to_string()),
                    }
                },
            )
            .await
        }
        .await;
        match r {
            Ok(()) => out.done.push(k.clone()),
            Err(e) => {
                out.error = Some(e.to_string());
                return out;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_done_behind_a_lost_answer_is_recognised() {
        let v = |t: &str, i: &str| NodeVersionModel {
            talos_version: Some(t.into()),
            installer: Some(i.into()),
            kubernetes_version: None,
        };
        let from = v("v1.12.4", "ghcr.io/siderolabs/installer:v1.12.4");
        let to = v("v1.12.11", "ghcr.io/siderolabs/installer:v1.12.11");
        assert!(already_upgraded(&from, &to, "v1.12.11"));
        assert!(!already_upgraded(&from, &to, "v1.12.4"));
        // Another schematic at the same version: the node's tag cannot tell.
        let other = v("v1.12.11", "factory.talos.dev/installer/abc:v1.12.11");
        assert!(!already_upgraded(&from, &other, "v1.12.11"));
        let same = v("v1.12.11", "ghcr.io/siderolabs/installer:v1.12.11");
        assert!(!already_upgraded(&same, &other, "v1.12.11"));
    }

    #[test]
    fn components_only_keeps_the_kubelet() {
        let cfg = "machine:\n  kubelet:\n    image: ghcr.io/siderolabs/kubelet:v1.35.2\ncluster:\n  apiServer:\n    image: registry.k8s.io/kube-apiserver:v1.35.2\n";
        let out = components_only(cfg, "1.35.0", "1.35.2");
        assert!(out.contains("kubelet:v1.35.0"), "{out}");
        assert!(out.contains("kube-apiserver:v1.35.2"), "{out}");
    }
}
