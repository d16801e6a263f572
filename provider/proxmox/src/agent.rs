//! QEMU guest agent calls (`/nodes/{node}/qemu/{vmid}/agent/...`).
//!
//! PVE 9 needs the `VM.GuestAgent.*` privileges for these (`VM.GuestAgent.Audit` for ping and
//! network-get-interfaces, `VM.GuestAgent.Unrestricted` for exec and file-write).

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::params::{api_path, Params};
use crate::poll::Poll;
use crate::value::{f_bool, f_i64, f_str};

/// An IP address reported by the guest agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestIp {
    /// The address.
    pub address: String,
    /// `ipv4` or `ipv6`.
    pub kind: String,
    /// Prefix length.
    pub prefix: Option<u8>,
}

/// A network interface reported by `network-get-interfaces`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestInterface {
    /// Interface name (`eth0`, `lo`).
    pub name: String,
    /// MAC address (upper-case), if reported.
    pub mac: Option<String>,
    /// Addresses.
    pub ips: Vec<GuestIp>,
}

impl GuestInterface {
    /// IPv4 addresses, loopback excluded.
    pub fn ipv4(&self) -> impl Iterator<Item = &str> {
        self.ips
            .iter()
            .filter(|ip| ip.kind == "ipv4" && !ip.address.starts_with("127."))
            .map(|ip| ip.address.as_str())
    }
}

/// The result of a finished guest command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// Exit code (absent when killed by a signal).
    pub exitcode: Option<i64>,
    /// Signal that terminated the process, if any.
    pub signal: Option<i64>,
    /// Standard output (`out-data`).
    pub out_data: String,
    /// Standard error (`err-data`).
    pub err_data: String,
    /// Whether the agent truncated stdout/stderr.
    pub truncated: bool,
}

impl ExecResult {
    /// Exit code 0 and no signal.
    pub fn success(&self) -> bool {
        self.exitcode == Some(0) && self.signal.is_none()
    }
}

fn agent_path(node: &str, vmid: u32, cmd: &str) -> String {
    api_path(&["nodes", node, "qemu", &vmid.to_string(), "agent", cmd])
}

impl Client {
    /// `POST .../agent/ping`. Fails when the agent is disabled, not running or the VM is off.
    pub async fn agent_ping(&self, node: &str, vmid: u32) -> Result<()> {
        self.post_idempotent(&agent_path(node, vmid, "ping"), &Params::new())
            .await?;
        Ok(())
    }

    /// Wait until the guest agent answers `ping` (polling every `interval`).
    pub async fn wait_agent(
        &self,
        node: &str,
        vmid: u32,
        timeout: Duration,
        cancel: Option<&CancellationToken>,
    ) -> Result<()> {
        let mut poll = Poll::new(Duration::from_millis(250), Duration::from_secs(3), timeout)
            .cancel_on(cancel);
        loop {
            match self.agent_ping(node, vmid).await {
                Ok(()) => return Ok(()),
                Err(e) if crate::guest::is_final(&e) => return Err(e),
                Err(e) => tracing::trace!(vmid, error = %e, "guest agent not ready"),
            }
            if poll.expired() {
                return Err(Error::Timeout {
                    what: format!("guest agent of VM {vmid}"),
                    seconds: timeout.as_secs(),
                });
            }
            poll.wait().await?;
        }
    }

    /// `GET .../agent/network-get-interfaces`.
    pub async fn agent_network_interfaces(
        &self,
        node: &str,
        vmid: u32,
    ) -> Result<Vec<GuestInterface>> {
        let path = agent_path(node, vmid, "network-get-interfaces");
        let v: Value = self.get(&path, &Params::new()).await?;
        let list = v
            .get("result")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::decode(&path, "missing result array"))?;
        let mut out = Vec::new();
        for it in list {
            let ips = it
                .get("ip-addresses")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|ip| {
                            Some(GuestIp {
                                address: f_str(ip, "ip-address")?,
                                kind: f_str(ip, "ip-address-type").unwrap_or_default(),
                                prefix: f_i64(ip, "prefix").and_then(|p| u8::try_from(p).ok()),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(GuestInterface {
                name: f_str(it, "name").unwrap_or_default(),
                mac: f_str(it, "hardware-address").map(|m| m.to_ascii_uppercase()),
                ips,
            });
        }
        Ok(out)
    }

    /// `POST .../agent/exec` with `command` as an array (and optional stdin `input-data`).
    /// Returns the guest PID.
    pub async fn agent_exec_start(
        &self,
        node: &str,
        vmid: u32,
        command: &[String],
        input_data: Option<&str>,
    ) -> Result<i64> {
        if command.is_empty() {
            return Err(Error::InvalidArgument("exec: empty command".into()));
        }
        let path = agent_path(node, vmid, "exec");
        let params = Params::new()
            .list("command", command.to_vec())
            .opt_str("input-data", input_data);
        let v = self.post(&path, &params).await?;
        f_i64(&v, "pid").ok_or_else(|| Error::decode(&path, format!("no pid in {v}")))
    }

    /// `GET .../agent/exec-status?pid=`: `None` while running.
    pub async fn agent_exec_status(
        &self,
        node: &str,
        vmid: u32,
        pid: i64,
    ) -> Result<Option<ExecResult>> {
        let path = agent_path(node, vmid, "exec-status");
        let v: Value = self.get(&path, &Params::new().int("pid", pid)).await?;
        if !f_bool(&v, "exited").unwrap_or(false) {
            return Ok(None);
        }
        Ok(Some(ExecResult {
            exitcode: f_i64(&v, "exitcode"),
            signal: f_i64(&v, "signal"),
            out_data: f_str(&v, "out-data").unwrap_or_default(),
            err_data: f_str(&v, "err-data").unwrap_or_default(),
            truncated: f_bool(&v, "out-truncated").unwrap_or(false)
                || f_bool(&v, "err-truncated").unwrap_or(false),
        }))
    }

    /// Run a command in the guest and wait for it (polling `exec-status`). Returns the result
    /// whatever the exit code; check [`ExecResult::success`].
    pub async fn agent_exec(
        &self,
        node: &str,
        vmid: u32,
        command: &[String],
        input_data: Option<&str>,
        timeout: Duration,
        cancel: Option<&CancellationToken>,
    ) -> Result<ExecResult> {
        let pid = self
            .agent_exec_start(node, vmid, command, input_data)
            .await?;
        let mut poll =
            Poll::new(Duration::from_millis(50), Duration::from_secs(1), timeout).cancel_on(cancel);
        loop {
            if let Some(r) = self.agent_exec_status(node, vmid, pid).await? {
                return Ok(r);
            }
            if poll.expired() {
                return Err(Error::Timeout {
                    what: format!("guest command {:?} in VM {vmid}", command.first()),
                    seconds: timeout.as_secs(),
                });
            }
            poll.wait().await?;
        }
    }

    /// `POST .../agent/file-write`. With `encode = true` PVE base64-encodes `content` before
    /// passing it to the agent (the normal case for text); pass `encode = false` with
    /// already base64-encoded content for binary data.
    pub async fn agent_file_write(
        &self,
        node: &str,
        vmid: u32,
        file: &str,
        content: &str,
        encode: bool,
    ) -> Result<()> {
        if !file.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "file-write: {file:?} must be an absolute path"
            )));
        }
        // PVE limits content to 60 KiB.
        if content.len() > 61_440 {
            return Err(Error::InvalidArgument(format!(
                "file-write: content for {file} is {} bytes, more than the 60 KiB PVE accepts",
                content.len()
            )));
        }
        let params = Params::new()
            .str("file", file)
            .str("content", content)
            .opt_bool("encode", (!encode).then_some(false));
        self.post_idempotent(&agent_path(node, vmid, "file-write"), &params)
            .await?;
        Ok(())
    }
}
