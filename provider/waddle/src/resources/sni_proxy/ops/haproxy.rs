//! HAProxy on the VM, through its guest agent: the live configuration and its hash, an
//! in-place update and readiness after a create. The steps are `waddle_haproxy::guest`'s,
//! taken with the shared guest steps of `vm::guest`.

use waddle_haproxy::guest::{self as steps, ACTIVE_ARGV, HASH_MARKER_PATH, START_SCRIPT};
use waddle_haproxy::Rendered;
use waddle_proxmox::Guest;

use crate::resources::timeouts::Deadline;
use crate::resources::vm::guest::{self, Probe, Stop};
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

/// The live config, the maps it names and their hash, as a rendering; `None` when there is
/// no config.
pub async fn live(guest: &Guest<'_>) -> Result<Option<Rendered>, waddle_proxmox::Error> {
    let mut paths = waddle_haproxy::FilePaths::default();
    let Some(cfg) = guest.read_file(&paths.config).await? else {
        return Ok(None);
    };
    let (mut exact, mut wildcard) = (String::new(), String::new());
    if let Some((e, w)) = waddle_haproxy::live_map_paths(&cfg) {
        exact = guest.read_file(&e).await?.unwrap_or_default();
        wildcard = guest.read_file(&w).await?.unwrap_or_default();
        (paths.exact_map, paths.wildcard_map) = (e, w);
    }
    Ok(Some(Rendered {
        config_hash: waddle_haproxy::config_hash(&cfg, &exact, &wildcard),
        haproxy_cfg: cfg,
        exact_map: exact,
        wildcard_map: wildcard,
        paths,
    }))
}

/// Apply a rendering in place ([`steps::update`]): staged files, `haproxy -c`, swap and
/// reload, then the maps of the previous config removed.
pub async fn apply(guest: &Guest<'_>, r: &Rendered) -> Result<(), SniError> {
    // Which maps does the running config use (to clean them up afterwards)?
    let old_cfg = guest
        .read_file(&r.paths.config)
        .await
        .map_err(VmError::api("reading the live config"))?;
    let u = steps::update(r);
    guest::write_files(guest, &u.files).await?;
    let check: Vec<&str> = u.check.iter().map(String::as_str).collect();
    let staged: Vec<&str> = u.staged.iter().map(String::as_str).collect();
    let rejected =
        guest::check_staged(guest, "running haproxy -c on the VM", &check, &staged).await?;
    if let Some(check) = rejected {
        return Err(SniError::Rejected(guest::message(&check)));
    }
    let res = guest
        .exec(&["sh", "-c", &u.swap])
        .await
        .map_err(VmError::api("swapping the configuration"))?;
    if !res.success() {
        return Err(SniError::Install {
            exit: res.exitcode,
            stderr: res.err_data.trim().to_string(),
        });
    }
    let stale = steps::stale_maps(r, old_cfg.as_deref());
    if !stale.is_empty() {
        let mut argv = vec!["rm", "-f"];
        argv.extend(stale.iter().map(String::as_str));
        let _ = guest.exec(&argv).await;
    }
    Ok(())
}

/// HAProxy is not active although the config files are in place: when cloud-init is no
/// longer running, `haproxy -c` the live config (error: HAProxy's message) and enable +
/// restart HAProxy. Returns a status line while cloud-init is still running.
async fn recover(guest: &Guest<'_>) -> Result<Option<String>, SniError> {
    let ci = guest::cloud_init_status(guest).await.unwrap_or_default();
    if ci.contains("running") || ci.contains("not started") {
        return Ok(Some(format!("cloud-init is still running ({})", ci.trim())));
    }
    let cfg = waddle_haproxy::FilePaths::default().config;
    let check = guest
        .exec(&steps::check_argv(&cfg))
        .await
        .map_err(VmError::api("running haproxy -c on the VM"))?;
    if !check.success() {
        return Err(SniError::LiveRejected {
            cfg,
            message: format!("{}{}", check.err_data.trim(), check.out_data.trim()),
        });
    }
    let start = guest
        .exec(&["sh", "-c", START_SCRIPT])
        .await
        .map_err(VmError::api("starting haproxy"))?;
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
    let probe = move || async move {
        Ok(match guest.read_file(HASH_MARKER_PATH).await {
            Ok(Some(h)) if h.trim() == hash => match guest.exec(&ACTIVE_ARGV).await {
                Ok(r) if r.success() => Probe::Done(()),
                // Our files are in place but HAProxy is not running them. Once cloud-init
                // has finished (its enable step failed or never ran), check the config
                // ourselves: a bad config fails the create now, with HAProxy's message,
                // instead of at the timeout; a good one is enabled and started.
                Ok(r) => Probe::Pending(
                    recover(guest)
                        .await?
                        .unwrap_or_else(|| format!("haproxy is {}", r.out_data.trim())),
                ),
                Err(e) => Probe::Pending(e.to_string()),
            },
            Ok(Some(h)) => Probe::Pending(format!("the VM reports config hash {}", h.trim())),
            Ok(None) => Probe::Pending(format!(
                "{HASH_MARKER_PATH} does not exist yet (cloud-init running)"
            )),
            Err(e) if waddle_proxmox::is_final_agent_error(&e) => {
                return Err(SniError::Agent(Box::new(e)))
            }
            Err(e) => Probe::Pending(e.to_string()),
        })
    };
    match guest::poll_until(guest, &deadline, probe).await {
        Ok(()) => Ok(()),
        Err(Stop::Failed(e)) => Err(e),
        Err(Stop::Cancelled) => Err(SniError::Cancelled),
        Err(Stop::Deadline { last }) => Err(SniError::NotReady {
            deadline: deadline.to_string(),
            hash: hash.to_string(),
            last,
            cloud_init: guest::cloud_init_status(guest)
                .await
                .map(|s| format!("; cloud-init: {}", s.trim()))
                .unwrap_or_default(),
        }),
    }
}
