//! Waiting for worker tasks.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::params::{api_path, Params};
use crate::poll::Poll;
use crate::upid::Upid;
use crate::value::{v_str, v_u64};

/// How to wait for a task.
#[derive(Debug, Clone)]
pub struct WaitOptions {
    /// Overall deadline; `None` uses the client's `timeouts.task`.
    pub timeout: Option<Duration>,
    /// Cancel the wait (the task itself keeps running on the server).
    pub cancel: Option<CancellationToken>,
    /// First poll interval; doubles up to `max_poll`.
    pub initial_poll: Duration,
    /// Longest poll interval.
    pub max_poll: Duration,
    /// Log lines to include in [`Error::TaskFailed`].
    pub log_tail_lines: usize,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            timeout: None,
            cancel: None,
            initial_poll: Duration::from_millis(100),
            max_poll: Duration::from_secs(2),
            log_tail_lines: 20,
        }
    }
}

impl WaitOptions {
    /// Default options with a cancellation token.
    pub fn with_cancel(cancel: CancellationToken) -> Self {
        WaitOptions {
            cancel: Some(cancel),
            ..Default::default()
        }
    }
}

/// A task that finished successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    /// The task.
    pub upid: Upid,
    /// `OK` or `WARNINGS: n`.
    pub exitstatus: String,
    /// `Some(n)` when the task finished with `WARNINGS: n`.
    pub warnings: Option<u32>,
}

/// The interpretation of a task exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// `OK`
    Ok,
    /// `WARNINGS: n` (success with warnings)
    Warnings(u32),
    /// Anything else: the error message.
    Failed(String),
}

/// Interpret a task's `exitstatus`.
pub fn parse_exitstatus(s: &str) -> ExitStatus {
    let t = s.trim();
    if t == "OK" {
        return ExitStatus::Ok;
    }
    if let Some(n) = t.strip_prefix("WARNINGS:") {
        if let Ok(n) = n.trim().parse::<u32>() {
            return ExitStatus::Warnings(n);
        }
    }
    ExitStatus::Failed(t.to_string())
}

/// One line of a task log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLogLine {
    /// Line number (1-based as PVE returns it).
    pub n: u64,
    /// Text.
    pub t: String,
}

impl Client {
    /// Current task status (`status` is `running` or `stopped`; `exitstatus` when stopped).
    pub async fn task_status(&self, upid: &Upid) -> Result<Value> {
        let path = api_path(&["nodes", &upid.node, "tasks", upid.as_str(), "status"]);
        self.get(&path, &Params::new()).await
    }

    /// A task of type `ttype` for `id` (a VMID, a file name, ...; `None`: any) that still runs
    /// on `node`
    /// (`GET /nodes/{node}/tasks?source=active&typefilter=`). Used after a lost answer, so a
    /// request whose task is already running is waited for instead of sent again.
    pub async fn active_task(
        &self,
        node: &str,
        ttype: &str,
        id: Option<&str>,
    ) -> Result<Option<Upid>> {
        let path = api_path(&["nodes", node, "tasks"]);
        let v: Value = self
            .get(
                &path,
                &Params::new()
                    .str("source", "active")
                    .str("typefilter", ttype),
            )
            .await?;
        let Value::Array(items) = v else {
            return Ok(None);
        };
        Ok(items
            .iter()
            .filter(|t| t.get("type").and_then(v_str).as_deref() == Some(ttype))
            .filter(|t| id.is_none() || t.get("id").and_then(v_str).as_deref() == id)
            .filter(|t| t.get("endtime").is_none())
            .find_map(|t| t.get("upid").and_then(v_str)?.parse::<Upid>().ok()))
    }

    /// Read task log lines `[start, start+limit)`.
    pub async fn task_log(&self, upid: &Upid, start: u64, limit: u64) -> Result<Vec<TaskLogLine>> {
        let path = api_path(&["nodes", &upid.node, "tasks", upid.as_str(), "log"]);
        let v: Value = self
            .get(
                &path,
                &Params::new()
                    .int("start", start as i64)
                    .int("limit", limit as i64),
            )
            .await?;
        let mut out = Vec::new();
        if let Value::Array(lines) = v {
            for l in lines {
                out.push(TaskLogLine {
                    n: l.get("n").and_then(v_u64).unwrap_or(0),
                    t: l.get("t").and_then(v_str).unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }

    /// The last `lines` lines of a task's log (best effort: empty on error).
    pub async fn task_log_tail(&self, upid: &Upid, lines: usize) -> Vec<String> {
        match self.task_log(upid, 0, 50_000).await {
            Ok(all) => {
                let skip = all.len().saturating_sub(lines);
                all.into_iter().skip(skip).map(|l| l.t).collect()
            }
            Err(e) => {
                tracing::debug!(upid = %upid, error = %e, "could not read task log");
                Vec::new()
            }
        }
    }

    /// Poll a task until it stops. `OK` and `WARNINGS: n` are success; any other exit status
    /// is [`Error::TaskFailed`] with the tail of the task log. Polls with exponential backoff
    /// (`initial_poll` doubling to `max_poll`), honours the deadline and the cancellation
    /// token.
    pub async fn wait_task(&self, upid: &Upid, opts: &WaitOptions) -> Result<TaskOutcome> {
        let timeout = opts.timeout.unwrap_or(self.timeouts().task);
        let started = Instant::now();
        let first = opts.initial_poll.max(Duration::from_millis(10));
        let mut poll = Poll::new(first, opts.max_poll, timeout).cancel_on(opts.cancel.as_ref());
        loop {
            if poll.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let status = self.task_status(upid).await?;
            let state = status.get("status").and_then(v_str).unwrap_or_default();
            if state == "stopped" {
                let exit = status
                    .get("exitstatus")
                    .and_then(v_str)
                    .unwrap_or_else(|| "unknown (no exit status)".to_string());
                tracing::debug!(
                    upid = %upid,
                    exitstatus = %exit,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "Proxmox task finished"
                );
                return match parse_exitstatus(&exit) {
                    ExitStatus::Ok => Ok(TaskOutcome {
                        upid: upid.clone(),
                        exitstatus: exit,
                        warnings: None,
                    }),
                    ExitStatus::Warnings(n) => {
                        tracing::warn!(upid = %upid, warnings = n, "Proxmox task finished with warnings");
                        Ok(TaskOutcome {
                            upid: upid.clone(),
                            exitstatus: exit,
                            warnings: Some(n),
                        })
                    }
                    ExitStatus::Failed(msg) => Err(Error::TaskFailed {
                        upid: upid.to_string(),
                        exitstatus: msg,
                        log_tail: self.task_log_tail(upid, opts.log_tail_lines).await,
                    }),
                };
            }
            if poll.expired() {
                return Err(Error::Timeout {
                    what: format!("task {upid}"),
                    seconds: timeout.as_secs(),
                });
            }
            poll.wait().await?;
        }
    }

    /// Parse a UPID returned as `data` by an API call and wait for it.
    pub async fn wait_task_value(&self, data: &Value, opts: &WaitOptions) -> Result<TaskOutcome> {
        let upid = upid_from(data)?;
        self.wait_task(&upid, opts).await
    }
}

/// Parse the `data` of a task-starting call as a UPID.
pub(crate) fn upid_from(data: &Value) -> Result<Upid> {
    match data {
        Value::String(s) => s.parse(),
        other => Err(Error::Decode {
            path: String::new(),
            message: format!("expected a task UPID, got {other}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_interpretation() {
        assert_eq!(parse_exitstatus("OK"), ExitStatus::Ok);
        assert_eq!(parse_exitstatus("WARNINGS: 3"), ExitStatus::Warnings(3));
        assert_eq!(parse_exitstatus("WARNINGS:1"), ExitStatus::Warnings(1));
        assert_eq!(
            parse_exitstatus("unable to create VM 100 - storage 'x' does not exist"),
            ExitStatus::Failed("unable to create VM 100 - storage 'x' does not exist".into())
        );
        assert_eq!(
            parse_exitstatus("WARNINGS: many"),
            ExitStatus::Failed("WARNINGS: many".into())
        );
    }
}
