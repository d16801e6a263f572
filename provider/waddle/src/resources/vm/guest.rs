//! Steps on a VM through its guest agent that every payload takes: a command that must
//! succeed, files written in order, a staged file checked before it replaces the live one,
//! cloud-init's status, and the poll until the guest reports what a probe waits for (200 ms
//! doubling to 3 s apart, up to the operation's deadline, stopped by cancellation).

use std::future::Future;
use std::time::Duration;

use waddle_proxmox::{ExecResult, Guest, Poll};

use super::VmError;
use crate::resources::timeouts::Deadline;

/// Why a guest command failed.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error(transparent)]
    Vm(#[from] VmError),
    #[error("{what} failed on the VM (exit {exit:?}): {message}")]
    Command {
        what: String,
        exit: Option<i64>,
        message: String,
    },
}

/// What a failed command said: its stderr, else its stdout (trimmed).
pub fn message(r: &ExecResult) -> String {
    let err = r.err_data.trim();
    if err.is_empty() {
        r.out_data.trim()
    } else {
        err
    }
    .to_string()
}

/// Run `argv`; an error naming `what` unless it exits 0. Returns stdout.
pub async fn run(guest: &Guest<'_>, what: &str, argv: &[&str]) -> Result<String, GuestError> {
    let r = guest.exec(argv).await.map_err(VmError::api(what))?;
    if r.success() {
        return Ok(r.out_data);
    }
    Err(GuestError::Command {
        what: what.into(),
        exit: r.exitcode,
        message: message(&r),
    })
}

/// Write `(path, content)` files in order (the error names the file).
pub async fn write_files(guest: &Guest<'_>, files: &[(String, String)]) -> Result<(), VmError> {
    for (path, content) in files {
        guest
            .write_file(path, content)
            .await
            .map_err(VmError::api(format!("writing {path}")))?;
    }
    Ok(())
}

/// Run the check `argv` of staged files (step `what`); when it fails, remove `staged` and
/// return the check's result (the live files are untouched).
pub async fn check_staged(
    guest: &Guest<'_>,
    what: &str,
    argv: &[&str],
    staged: &[&str],
) -> Result<Option<ExecResult>, VmError> {
    let check = guest.exec(argv).await.map_err(VmError::api(what))?;
    if check.success() {
        return Ok(None);
    }
    let mut rm = vec!["rm", "-f"];
    rm.extend(staged);
    let _ = guest.exec(&rm).await;
    Ok(Some(check))
}

/// `cloud-init status` (stdout), `None` when the agent cannot run it.
pub async fn cloud_init_status(guest: &Guest<'_>) -> Option<String> {
    guest
        .exec(&["cloud-init", "status"])
        .await
        .ok()
        .map(|r| r.out_data)
}

/// What one look at the guest found.
pub enum Probe<T> {
    Done(T),
    /// Not yet; why (the last one is in the deadline's error).
    Pending(String),
}

/// Why [`poll_until`] stopped without a result.
pub enum Stop<E> {
    /// The probe failed (waiting would not help).
    Failed(E),
    Cancelled,
    /// The deadline passed; the last pending status.
    Deadline {
        last: String,
    },
}

/// Run `probe` until it is done, fails, the deadline passes or the operation is cancelled.
pub async fn poll_until<T, E, Fut>(
    guest: &Guest<'_>,
    deadline: &Deadline,
    mut probe: impl FnMut() -> Fut,
) -> Result<T, Stop<E>>
where
    Fut: Future<Output = Result<Probe<T>, E>>,
{
    let mut poll = Poll::new(
        Duration::from_millis(200),
        Duration::from_secs(3),
        deadline.remaining(),
    )
    .cancel_on(guest.cancellation());
    loop {
        if poll.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        let last = match probe().await.map_err(Stop::Failed)? {
            Probe::Done(t) => return Ok(t),
            Probe::Pending(last) => last,
        };
        tracing::debug!(vmid = guest.vmid(), status = %last, "waiting for the VM");
        if deadline.passed() {
            return Err(Stop::Deadline { last });
        }
        poll.wait().await.map_err(|_| Stop::Cancelled)?;
    }
}
