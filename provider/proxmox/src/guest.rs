//! [`Guest`]: a VM's QEMU guest agent as a handle — run a command (exit code and output),
//! read and write files, wait until a command succeeds.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::agent::ExecResult;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::poll::Poll;

/// Default timeout of one guest command.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(120);

/// The guest agent of VM `vmid` on `node`.
#[derive(Clone, Copy)]
pub struct Guest<'a> {
    client: &'a Client,
    node: &'a str,
    vmid: u32,
    cancel: Option<&'a CancellationToken>,
    exec_timeout: Duration,
}

impl<'a> Guest<'a> {
    pub fn new(client: &'a Client, node: &'a str, vmid: u32) -> Self {
        Guest {
            client,
            node,
            vmid,
            cancel: None,
            exec_timeout: EXEC_TIMEOUT,
        }
    }
    /// Commands and waits stop when `token` is cancelled.
    pub fn cancel_on(mut self, token: &'a CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }
    /// The timeout of one command (default [`EXEC_TIMEOUT`]).
    pub fn exec_timeout(mut self, d: Duration) -> Self {
        self.exec_timeout = d;
        self
    }
    pub fn client(&self) -> &'a Client {
        self.client
    }
    pub fn node(&self) -> &'a str {
        self.node
    }
    pub fn vmid(&self) -> u32 {
        self.vmid
    }
    pub fn cancellation(&self) -> Option<&'a CancellationToken> {
        self.cancel
    }

    /// Run `argv` and wait for it; the result whatever the exit code.
    pub async fn exec(&self, argv: &[&str]) -> Result<ExecResult> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        self.client
            .agent_exec(
                self.node,
                self.vmid,
                &argv,
                None,
                self.exec_timeout,
                self.cancel,
            )
            .await
    }

    /// A file's content (`cat`); `None` when it cannot be read (absent).
    pub async fn read_file(&self, path: &str) -> Result<Option<String>> {
        let r = self.exec(&["cat", path]).await?;
        Ok(r.success().then_some(r.out_data))
    }

    /// Write a text file (created or replaced).
    pub async fn write_file(&self, path: &str, content: &str) -> Result<()> {
        self.client
            .agent_file_write(self.node, self.vmid, path, content, true)
            .await
    }

    /// Run `argv` until it succeeds (its result), polling from `first` up to 3 s apart, for
    /// at most `timeout`. Permission, not-found and unreachable errors end the wait at once.
    pub async fn wait_until_succeeds(
        &self,
        argv: &[&str],
        first: Duration,
        timeout: Duration,
    ) -> Result<ExecResult> {
        let mut poll = Poll::new(first, Duration::from_secs(3), timeout).cancel_on(self.cancel);
        loop {
            let last = match self.exec(argv).await {
                Ok(r) if r.success() => return Ok(r),
                Ok(r) => format!("exit {:?}: {}", r.exitcode, r.err_data.trim()),
                Err(e) if is_final(&e) => return Err(e),
                Err(e) => e.to_string(),
            };
            if poll.expired() {
                return Err(Error::Timeout {
                    what: format!(
                        "{:?} to succeed in VM {} (last: {last})",
                        argv.join(" "),
                        self.vmid
                    ),
                    seconds: timeout.as_secs(),
                });
            }
            poll.wait().await?;
        }
    }
}

/// An agent error that waiting will not cure: missing privileges, a VM that is gone, an
/// API that cannot be reached.
pub fn is_final(e: &Error) -> bool {
    e.api_kind() == Some(crate::ApiErrorKind::Permission) || e.is_not_found() || e.is_unreachable()
}
