//! The one polling idiom: wait with a doubling interval up to a cap, observe a cancellation
//! token, give up at a deadline. Used by task polling, guest-agent waits and the resources'
//! readiness checks.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// A poll loop's pacing: `interval` doubling up to `max`, until `deadline`.
#[derive(Debug, Clone)]
pub struct Poll {
    interval: Duration,
    max: Duration,
    deadline: Instant,
    cancel: Option<CancellationToken>,
}

impl Poll {
    /// Poll for at most `timeout`, starting every `first`, backing off to `max`.
    pub fn new(first: Duration, max: Duration, timeout: Duration) -> Self {
        Poll {
            interval: first,
            max,
            deadline: Instant::now() + timeout,
            cancel: None,
        }
    }
    /// Stop (with [`Error::Cancelled`]) when `token` is cancelled.
    pub fn cancel_on(mut self, token: Option<&CancellationToken>) -> Self {
        self.cancel = token.cloned();
        self
    }
    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
    /// Whether the token was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }
    /// Sleep for the current interval (never past the deadline), then double it.
    /// Fails with [`Error::Cancelled`] when cancelled first.
    pub async fn wait(&mut self) -> Result<()> {
        let d = self.interval.min(self.remaining());
        self.interval = (self.interval * 2).min(self.max);
        match &self.cancel {
            Some(c) => tokio::select! {
                _ = c.cancelled() => Err(Error::Cancelled),
                _ = tokio::time::sleep(d) => Ok(()),
            },
            None => {
                tokio::time::sleep(d).await;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn intervals_double_to_the_cap_and_cancellation_stops() {
        let mut p = Poll::new(
            Duration::from_millis(1),
            Duration::from_millis(4),
            Duration::from_secs(5),
        );
        for _ in 0..4 {
            p.wait().await.unwrap();
        }
        assert_eq!(p.interval, Duration::from_millis(4));
        assert!(!p.expired());
        let t = CancellationToken::new();
        t.cancel();
        let mut p = Poll::new(
            Duration::from_secs(10),
            Duration::from_secs(10),
            Duration::from_secs(10),
        )
        .cancel_on(Some(&t));
        assert!(matches!(p.wait().await, Err(Error::Cancelled)));
        let p = Poll::new(
            Duration::from_millis(1),
            Duration::from_millis(1),
            Duration::ZERO,
        );
        assert!(p.expired());
    }
}
