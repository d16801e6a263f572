//! Bounded exponential backoff with jitter.

use std::time::Duration;

use rand::Rng;

/// Retry policy for transient Proxmox errors (lock timeouts, "got no worker upid", dropped
/// connections). Delays grow exponentially from `base_delay`, are capped at `max_delay`, and
/// are jittered into `[d/2, d]` so parallel callers spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts including the first (1 disables retries).
    pub max_attempts: u32,
    /// Delay before the first retry (before jitter).
    pub base_delay: Duration,
    /// Upper bound for any single delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        }
    }

    /// The un-jittered delay before retry number `retry` (0-based): `base * 2^retry`,
    /// capped at `max_delay`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The jittered delay before retry number `retry` (0-based), in `[ceiling/2, ceiling]`.
    pub fn delay(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry);
        let half = ceiling / 2;
        let span = (ceiling - half).as_micros() as u64;
        let jitter = if span == 0 {
            0
        } else {
            rand::rng().random_range(0..=span)
        };
        half + Duration::from_micros(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(p.ceiling(0), Duration::from_millis(100));
        assert_eq!(p.ceiling(1), Duration::from_millis(200));
        assert_eq!(p.ceiling(2), Duration::from_millis(400));
        assert_eq!(p.ceiling(3), Duration::from_millis(800));
        assert_eq!(p.ceiling(4), Duration::from_secs(1));
        assert_eq!(p.ceiling(40), Duration::from_secs(1));
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jittered_delay_within_bounds() {
        let p = RetryPolicy::default();
        for retry in 0..12 {
            let c = p.ceiling(retry);
            for _ in 0..200 {
                let d = p.delay(retry);
                assert!(
                    d >= c / 2 && d <= c,
                    "retry {retry}: {d:?} not in [{:?}, {c:?}]",
                    c / 2
                );
            }
        }
        // jitter actually varies
        let samples: std::collections::HashSet<_> = (0..50).map(|_| p.delay(3)).collect();
        assert!(samples.len() > 1);
    }
}
