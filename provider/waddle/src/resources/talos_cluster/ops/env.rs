//! What every operation works with: the Talos connection, the Proxmox VE client, one
//! deadline, and the retry loop every wait goes through.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use waddle_framework::error_chain;
use waddle_talos::api::{ConnectOptions, Credentials, TalosClient, TalosError};

use super::super::PlacementModel;
use super::{OpError, R};

/// Poll intervals: start small so a fast step is noticed quickly, grow to a cap.
#[derive(Clone, Copy, Debug)]
pub struct Poll {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Poll {
    fn default() -> Self {
        Poll {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
        }
    }
}

/// What one operation works with.
#[derive(Clone)]
pub struct Env {
    pub pve: Option<waddle_proxmox::Client>,
    pub connect: ConnectOptions,
    pub creds: Credentials,
    pub deadline: Instant,
    pub poll: Poll,
    pub cancel: waddle_proxmox::CancellationToken,
    /// The provider's `proxy_url` (Talos connections and the Kubernetes `/readyz` check).
    pub proxy_url: Option<String>,
    /// The provider's default Proxmox VE node.
    pub default_node: Option<String>,
}

/// One attempt's outcome in [`Env::retry`].
pub enum Attempt<T> {
    Done(T),
    Again(String),
    Fatal(String),
}

impl<T> Attempt<T> {
    /// A Proxmox VE error inside a retried step: an API that has stayed unreachable
    /// ([`waddle_proxmox::Error::Unreachable`]) stops the retry at once with that cause; any
    /// other error is tried again, with `why` (the step's own last cause) and the error.
    pub fn from_pve(e: waddle_proxmox::Error, why: String) -> Self {
        if e.is_unreachable() {
            Attempt::Fatal(e.to_string())
        } else {
            tracing::debug!("Proxmox VE (retried): {e}");
            Attempt::Again(why)
        }
    }
}

impl Env {
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    pub(crate) async fn sleep(&self, d: Duration) -> R<()> {
        let d = d.min(self.remaining());
        tokio::select! {
            _ = self.cancel.cancelled() => Err(OpError::Stopping),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// Repeat `f` until it is done, fails fatally, or the overall deadline passes.
    pub async fn retry<T, F, Fut>(&self, what: &str, mut f: F) -> R<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let mut interval = self.poll.initial;
        let mut last_reason = String::new();
        loop {
            if self.cancel.is_cancelled() {
                return Err(OpError::Cancelled { what: what.into() });
            }
            let attempt = tokio::select! {
                _ = self.cancel.cancelled() => Attempt::Fatal("cancelled: the provider is stopping".into()),
                _ = tokio::time::sleep(self.remaining()) => {
                    // The deadline cut an attempt short: the last real cause stays the
                    // reason, not the deadline itself.
                    let last = if last_reason.is_empty() {
                        "the first attempt had not finished".to_string()
                    } else {
                        last_reason.clone()
                    };
                    Attempt::Again(last)
                }
                a = f() => a,
            };
            match attempt {
                Attempt::Done(t) => return Ok(t),
                Attempt::Fatal(reason) => {
                    return Err(OpError::Failed {
                        what: what.into(),
                        reason,
                    })
                }
                Attempt::Again(reason) => {
                    if reason != last_reason {
                        tracing::info!(step = what, "waiting: {reason}");
                        last_reason = reason.clone();
                    }
                    if self.remaining().is_zero() {
                        return Err(OpError::TimedOut {
                            what: what.into(),
                            last: last_reason,
                        });
                    }
                }
            }
            self.sleep(interval).await?;
            interval = (interval.mul_f32(1.5)).min(self.poll.max);
        }
    }

    pub(crate) fn opts(&self) -> ConnectOptions {
        let mut o = self.connect.clone();
        o.cancel = self.cancel.clone();
        o
    }

    pub(crate) async fn mtls(&self, ip: &str) -> Result<TalosClient, TalosError> {
        TalosClient::connect(api_addr(ip)?, &self.creds, &self.opts()).await
    }

    /// The Proxmox VE node of a placement (the provider's `node` when not set).
    pub fn pve_node(&self, p: &PlacementModel) -> String {
        p.node
            .clone()
            .or_else(|| self.default_node.clone())
            .unwrap_or_default()
    }

    pub(crate) fn pve(&self) -> R<&waddle_proxmox::Client> {
        self.pve.as_ref().ok_or(OpError::NoProxmox)
    }
}

pub(super) fn api_addr(ip_or_endpoint: &str) -> Result<SocketAddr, TalosError> {
    waddle_talos::api::parse_endpoint(ip_or_endpoint)
}

pub(super) fn classify<T>(e: TalosError) -> Attempt<T> {
    if e.is_transient() {
        Attempt::Again(error_chain(&e))
    } else {
        Attempt::Fatal(error_chain(&e))
    }
}
