//! Talos API steps shared by the operations: apply a configuration, wait for mTLS, bootstrap,
//! service health, boot done, the Kubernetes `/readyz`, the kubeconfig, and `finish` (the end
//! of a create or update).

use super::OpError;
use std::time::{Duration, Instant};

use waddle_framework::error_chain;
use waddle_talos::api::{ApplyMode, MachineStage, MachineStatus};
use waddle_talos::SecretsBundle;

use super::super::{node_ip, ClusterModel, NodeModel};
use super::{classify, control_planes, health, Attempt, Env, R};

// ---------------------------------------------------------------------------------------
// Talos side
// ---------------------------------------------------------------------------------------

/// Waits until the node answers with mTLS on `ip`.
pub(crate) async fn wait_configured(env: &Env, name: &str, ip: &str) -> R<()> {
    env.retry(
        &format!("nodes[{name:?}]: Talos API with mTLS at {ip}"),
        || async {
            match env.mtls(ip).await {
                Ok(c) => match c.version().await {
                    Ok(_) => Attempt::Done(()),
                    Err(e) => Attempt::Again(e.to_string()),
                },
                Err(e) => Attempt::Again(e.to_string()),
            }
        },
    )
    .await
}

/// Applies `config` to a configured node reached at `ip` (mode AUTO: the node picks the least
/// disruptive way). Returns whether it reboots.
pub(super) async fn apply_configured(env: &Env, name: &str, ip: &str, config: &str) -> R<bool> {
    env.retry(&format!("nodes[{name:?}]: apply configuration"), || async {
        let c = match env.mtls(ip).await {
            Ok(c) => c,
            Err(e) => return classify(e),
        };
        match c.apply_configuration(config, ApplyMode::Auto).await {
            Ok(o) => Attempt::Done(o.mode == Some(ApplyMode::Reboot)),
            Err(e) => classify(e),
        }
    })
    .await
}

/// Whether the node already answers with the cluster's credentials (quick, one attempt).
pub(super) async fn answers_mtls(env: &Env, ip: &str) -> bool {
    match env.mtls(ip).await {
        Ok(c) => c.version().await.is_ok(),
        Err(_) => false,
    }
}

/// Bootstraps etcd on `ip` (FailedPrecondition: retry; AlreadyExists: done).
pub async fn bootstrap(env: &Env, ip: &str) -> R<()> {
    env.retry(&format!("bootstrap etcd on {ip}"), || async {
        let c = match env.mtls(ip).await {
            Ok(c) => c,
            Err(e) => return Attempt::Again(e.to_string()),
        };
        match c.bootstrap().await {
            Ok(()) => Attempt::Done(()),
            Err(e) if e.is_already_exists() => Attempt::Done(()),
            Err(e) if e.is_failed_precondition() || e.is_transient() => {
                Attempt::Again(e.to_string())
            }
            Err(e) => Attempt::Fatal(e.to_string()),
        }
    })
    .await
}

pub(crate) async fn node_health(env: &Env, name: &str, n: &NodeModel) -> R<()> {
    let c = env
        .mtls(node_ip(n))
        .await
        .map_err(|e| OpError::Step(format!("nodes[{name:?}]: {e}")))?;
    let services = c
        .services()
        .await
        .map_err(|e| OpError::Step(format!("nodes[{name:?}]: {e}")))?;
    let mut want = vec!["apid", "kubelet"];
    if n.role == "controlplane" {
        want.push("etcd");
    }
    for id in want {
        match services.iter().find(|s| s.id == id) {
            Some(s) if s.state == "Running" && s.healthy != Some(false) => {}
            Some(s) => {
                return Err(OpError::Step(format!(
                    "nodes[{name:?}]: service {id} is {} ({})",
                    s.state, s.message
                )))
            }
            None => {
                return Err(OpError::Step(format!(
                    "nodes[{name:?}]: service {id} not started yet"
                )))
            }
        }
    }
    Ok(())
}

/// Boot done on a node: its `MachineStatus` stage is `running` (what `talosctl health`'s
/// "all nodes to finish boot sequence" checks). `ready` is not required: its readiness
/// checks include the Kubernetes Node being Ready, which never happens with CNI `none`
/// until a CNI is installed; unmet conditions are only reported.
pub(crate) async fn node_booted(env: &Env, name: &str, n: &NodeModel) -> R<MachineStatus> {
    let c = env
        .mtls(node_ip(n))
        .await
        .map_err(|e| OpError::Step(format!("nodes[{name:?}]: {e}")))?;
    let st = c
        .machine_status()
        .await
        .map_err(|e| OpError::Step(format!("nodes[{name:?}]: machine status: {e}")))?;
    if st.stage == MachineStage::Running {
        Ok(st)
    } else {
        Err(OpError::Step(format!(
            "nodes[{name:?}]: boot not done ({st})"
        )))
    }
}

pub(crate) async fn readyz(env: &Env, endpoint: &str, bundle: &SecretsBundle) -> R<()> {
    let ca = reqwest::Certificate::from_pem(bundle.k8s_ca.crt.as_bytes())
        .map_err(|e| OpError::Step(format!("kubernetes CA: {e}")))?;
    let mut b = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(5));
    b = match &env.proxy_url {
        Some(u) => b.proxy(reqwest::Proxy::all(u).map_err(|e| e.to_string())?),
        None => b.no_proxy(),
    };
    let client = b.build().map_err(|e| e.to_string())?;
    let url = format!("{}/readyz", endpoint.trim_end_matches('/'));
    let r = client
        .get(&url)
        .send()
        .await
        .map_err(|e| OpError::Step(format!("Kubernetes API {url}: {}", error_chain(&e))))?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(OpError::Step(format!(
            "Kubernetes API {url}: HTTP {}",
            r.status()
        )))
    }
}

pub(super) async fn fetch_kubeconfig(env: &Env, ip: &str) -> R<String> {
    env.retry("kubeconfig", || async {
        let c = match env.mtls(ip).await {
            Ok(c) => c,
            Err(e) => return Attempt::Again(e.to_string()),
        };
        match c.kubeconfig().await {
            Ok(b) => match String::from_utf8(b) {
                Ok(s) => Attempt::Done(s),
                Err(_) => Attempt::Fatal("the kubeconfig is not UTF-8".into()),
            },
            Err(e) if e.is_transient() || e.is_failed_precondition() => {
                Attempt::Again(e.to_string())
            }
            Err(e) => Attempt::Fatal(e.to_string()),
        }
    })
    .await
}

/// Bootstrap (unless done), health, kubeconfig.
pub(super) async fn finish(
    env: &Env,
    m: &mut ClusterModel,
    bundle: &SecretsBundle,
    refresh_kubeconfig: bool,
) -> R<()> {
    let cps = control_planes(m);
    let Some((_, first)) = cps.first().cloned() else {
        return Err("no control plane".into());
    };
    if m.bootstrapped != Some(true) {
        let started = Instant::now();
        bootstrap(env, node_ip(&first)).await?;
        m.bootstrapped = Some(true);
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            "etcd bootstrapped"
        );
    }
    health(env, m, bundle).await?;
    if refresh_kubeconfig || m.kubeconfig.is_none() {
        let started = Instant::now();
        m.kubeconfig = Some(fetch_kubeconfig(env, node_ip(&first)).await?);
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            "kubeconfig fetched"
        );
    }
    Ok(())
}
