//! HAProxy on the VM, through its guest agent: the live configuration and its hash, an
//! in-place update (`haproxy -c` first, then swap and reload) and readiness after a create.

use std::time::Duration;

use waddle_haproxy::cloudinit::HASH_MARKER_PATH;
use waddle_haproxy::Rendered;
use waddle_proxmox::{Guest, Poll};

use crate::resources::timeouts::Deadline;
use crate::resources::vm::VmError;

/// Why HAProxy on the VM did not take a configuration.
#[derive(Debug, thiserror::Error)]
pub enum SniError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error(transparent)]
    Agent(Box<waddle_proxmox::Error>),
    #[error(
        "haproxy -c rejected the new configuration on the VM (the running HAProxy keeps \
         the previous configuration):\n{0}"
    )]
    Rejected(String),
    #[error("haproxy -c rejected {cfg} on the VM:\n{message}")]
    LiveRejected { cfg: String, message: String },
    #[error("installing the new configuration failed (exit {exit:?}): {stderr}")]
    Install { exit: Option<i64>, stderr: String },
    #[error("cancelled while waiting for the VM")]
    Cancelled,
    #[error(
        "deadline {deadline} passed: the VM did not report HAProxy running with config hash \
         {hash}: {last}{cloud_init}"
    )]
    NotReady {
        deadline: String,
        hash: String,
        last: String,
        cloud_init: String,
    },
}

fn step(what: impl Into<String>) -> impl FnOnce(waddle_proxmox::Error) -> SniError {
    let f = VmError::api(what);
    move |e| SniError::Vm(f(e))
}

/// The live config, both maps and their hash; `None` when there is no config.
pub struct Live {
    pub cfg: String,
    pub exact: String,
    pub wildcard: String,
    pub hash: String,
}

/// Hash of the live config and the maps it names; `None` when there is no config.
pub async fn live(guest: &Guest<'_>) -> Result<Option<Live>, waddle_proxmox::Error> {
    let paths = waddle_haproxy::FilePaths::default();
    let Some(cfg) = guest.read_file(&paths.config).await? else {
        return Ok(None);
    };
    let (exact, wildcard) = match waddle_haproxy::live_map_paths(&cfg) {
        Some((e, w)) => (
            guest.read_file(&e).await?.unwrap_or_default(),
            guest.read_file(&w).await?.unwrap_or_default(),
        ),
        None => (String::new(), String::new()),
    };
    let hash = waddle_haproxy::config_hash(&cfg, &exact, &wildcard);
    Ok(Some(Live {
        cfg,
        exact,
        wildcard,
        hash,
    }))
}

/// Apply a rendering in place: write new files, `haproxy -c`, swap, reload, clean up.
pub async fn apply(guest: &Guest<'_>, r: &Rendered, old_cfg: Option<&str>) -> Result<(), SniError> {
    let cfg = &r.paths.config;
    let cfg_new = format!("{cfg}.new");
    let marker_new = format!("{HASH_MARKER_PATH}.new");
    for (path, content) in [
        (r.paths.exact_map.as_str(), r.exact_map.clone()),
        (r.paths.wildcard_map.as_str(), r.wildcard_map.clone()),
        (cfg_new.as_str(), r.haproxy_cfg.clone()),
        (marker_new.as_str(), format!("{}\n", r.config_hash)),
    ] {
        guest
            .write_file(path, &content)
            .await
            .map_err(step(format!("writing {path}")))?;
    }
    let check = guest
        .exec(&["haproxy", "-c", "-f", &cfg_new])
        .await
        .map_err(step("running haproxy -c on the VM"))?;
    if !check.success() {
        let _ = guest.exec(&["rm", "-f", &cfg_new, &marker_new]).await;
        let mut msg = check.err_data.trim().to_string();
        if msg.is_empty() {
            msg = check.out_data.trim().to_string();
        }
        return Err(SniError::Rejected(msg));
    }
    let swap = format!(
        "mv -f {cfg_new} {cfg} && mv -f {marker_new} {HASH_MARKER_PATH} && systemctl reload-or-restart haproxy"
    );
    let res = guest
        .exec(&["sh", "-c", &swap])
        .await
        .map_err(step("swapping the configuration"))?;
    if !res.success() {
        return Err(SniError::Install {
            exit: res.exitcode,
            stderr: res.err_data.trim().to_string(),
        });
    }
    // Remove the maps of the previous version (the new config no longer names them).
    if let Some((old_e, old_w)) = old_cfg.and_then(waddle_haproxy::live_map_paths) {
        let stale: Vec<&str> = [old_e.as_str(), old_w.as_str()]
            .into_iter()
            .filter(|p| *p != r.paths.exact_map && *p != r.paths.wildcard_map)
            .collect();
        if !stale.is_empty() {
            let mut argv = vec!["rm", "-f"];
            argv.extend(stale);
            let _ = guest.exec(&argv).await;
        }
    }
    Ok(())
}

/// HAProxy is not active although the config files are in place: when cloud-init is no
/// longer running, `haproxy -c` the live config (error: HAProxy's message) and enable +
/// restart HAProxy. Returns a status line while cloud-init is still running.
async fn recover(guest: &Guest<'_>) -> Result<Option<String>, SniError> {
    let ci = guest
        .exec(&["cloud-init", "status"])
        .await
        .map(|r| r.out_data)
        .unwrap_or_default();
    if ci.contains("running") || ci.contains("not started") {
        return Ok(Some(format!("cloud-init is still running ({})", ci.trim())));
    }
    let cfg = waddle_haproxy::FilePaths::default().config;
    let check = guest
        .exec(&["haproxy", "-c", "-f", &cfg])
        .await
        .map_err(step("running haproxy -c on the VM"))?;
    if !check.success() {
        return Err(SniError::LiveRejected {
            cfg,
            message: format!("{}{}", check.err_data.trim(), check.out_data.trim()),
        });
    }
    let start = guest
        .exec(&[
            "sh",
            "-c",
            "systemctl enable haproxy && systemctl restart haproxy",
        ])
        .await
        .map_err(step("starting haproxy"))?;
    if !start.success() {
        return Ok(Some(format!(
            "starting haproxy failed: {}",
            start.err_data.trim()
        )));
    }
    Ok(None)
}

/// Wait until the VM reports `hash` in the marker and HAProxy active.
pub async fn wait_ready(guest: &Guest<'_>, hash: &str, deadline: Deadline) -> Result<(), SniError> {
    let mut poll = Poll::new(
        Duration::from_millis(200),
        Duration::from_secs(3),
        deadline.remaining(),
    )
    .cancel_on(guest.cancellation());
    loop {
        if poll.is_cancelled() {
            return Err(SniError::Cancelled);
        }
        let last = match guest.read_file(HASH_MARKER_PATH).await {
            Ok(Some(h)) if h.trim() == hash => {
                match guest.exec(&["systemctl", "is-active", "haproxy"]).await {
                    Ok(r) if r.success() => return Ok(()),
                    // Our files are in place but HAProxy is not running them. Once cloud-init
                    // has finished (its enable step failed or never ran), check the config
                    // ourselves: a bad config fails the create now, with HAProxy's message,
                    // instead of at the timeout; a good one is enabled and started.
                    Ok(r) => recover(guest)
                        .await?
                        .unwrap_or_else(|| format!("haproxy is {}", r.out_data.trim())),
                    Err(e) => e.to_string(),
                }
            }
            Ok(Some(h)) => format!("the VM reports config hash {}", h.trim()),
            Ok(None) => format!("{HASH_MARKER_PATH} does not exist yet (cloud-init running)"),
            Err(e) if waddle_proxmox::is_final_agent_error(&e) => {
                return Err(SniError::Agent(Box::new(e)))
            }
            Err(e) => e.to_string(),
        };
        tracing::debug!(vmid = guest.vmid(), status = %last, "waiting for the VM");
        if deadline.passed() {
            let cloud_init = match guest.exec(&["cloud-init", "status"]).await {
                Ok(r) => format!("; cloud-init: {}", r.out_data.trim()),
                Err(_) => String::new(),
            };
            return Err(SniError::NotReady {
                deadline: deadline.to_string(),
                hash: hash.to_string(),
                last,
                cloud_init,
            });
        }
        poll.wait().await.map_err(|_| SniError::Cancelled)?;
    }
}
