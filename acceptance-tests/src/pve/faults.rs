//! Deterministic fault injection.
//!
//! Each rule names an endpoint (`"POST /nodes/{node}/qemu"`, `"POST *"`, `"*"`) and a
//! probability. The decision for the k-th request a rule sees is a pure function of
//! `(seed, rule index, k)`, so the same seed and the same request sequence give the same
//! faults.

use std::time::Duration;

/// What to inject.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// 500 "can't lock file '/var/lock/qemu-server/lock-VMID.conf' - got timeout".
    LockTimeout,
    /// 500 "got no worker upid - start worker failed".
    NoWorkerUpid,
    /// Any status with a reason phrase.
    Error { status: u16, reason: String },
    /// Close the connection without answering (before any side effect).
    DropConnection,
    /// Perform the request, then close the connection without sending the response.
    DropResponse,
    /// Delay before handling.
    Latency(Duration),
    /// The worker task started by this request fails with this exit status.
    FailTask(String),
    /// A VM started by this request boots this much slower.
    SlowBoot(Duration),
}

impl FaultKind {
    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::LockTimeout => "lock-timeout",
            FaultKind::NoWorkerUpid => "no-worker-upid",
            FaultKind::Error { .. } => "error",
            FaultKind::DropConnection => "drop-connection",
            FaultKind::DropResponse => "drop-response",
            FaultKind::Latency(_) => "latency",
            FaultKind::FailTask(_) => "fail-task",
            FaultKind::SlowBoot(_) => "slow-boot",
        }
    }

    /// Parse `lock-timeout`, `no-worker-upid`, `drop`, `drop-response`, `latency:MS`,
    /// `fail-task:MSG`, `slow-boot:MS`, `error:STATUS:REASON`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (head, rest) = s.split_once(':').unwrap_or((s, ""));
        let ms = |r: &str| {
            r.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("bad milliseconds '{r}'"))
        };
        Ok(match head {
            "lock-timeout" => FaultKind::LockTimeout,
            "no-worker-upid" => FaultKind::NoWorkerUpid,
            "drop" | "drop-connection" => FaultKind::DropConnection,
            "drop-response" => FaultKind::DropResponse,
            "latency" => FaultKind::Latency(ms(rest)?),
            "slow-boot" => FaultKind::SlowBoot(ms(rest)?),
            "fail-task" => FaultKind::FailTask(if rest.is_empty() {
                "injected task failure".into()
            } else {
                rest.into()
            }),
            "error" => {
                let (st, reason) = rest.split_once(':').unwrap_or((rest, "injected error"));
                FaultKind::Error {
                    status: st.parse().map_err(|_| format!("bad status '{st}'"))?,
                    reason: reason.into(),
                }
            }
            other => return Err(format!("unknown fault kind '{other}'")),
        })
    }
}

/// One fault rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRule {
    /// `METHOD TEMPLATE`, `METHOD *`, or `*`.
    pub endpoint: String,
    pub kind: FaultKind,
    /// 0.0 ..= 1.0
    pub probability: f64,
    /// Stop after this many injections.
    pub max_hits: Option<u32>,
}

impl FaultRule {
    pub fn new(endpoint: &str, kind: FaultKind, probability: f64) -> Self {
        Self {
            endpoint: endpoint.to_string(),
            kind,
            probability,
            max_hits: None,
        }
    }
    pub fn max_hits(mut self, n: u32) -> Self {
        self.max_hits = Some(n);
        self
    }
    /// Parse `ENDPOINT=KIND@PROBABILITY`, e.g.
    /// `POST /nodes/{node}/qemu=lock-timeout@0.3` or `*=latency:50@1`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (ep, rest) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("fault '{s}': expected ENDPOINT=KIND@P"))?;
        let (kind, p) = rest.rsplit_once('@').unwrap_or((rest, "1"));
        let probability: f64 = p.parse().map_err(|_| format!("bad probability '{p}'"))?;
        Ok(Self::new(
            ep.trim(),
            FaultKind::parse(kind.trim())?,
            probability,
        ))
    }

    pub(crate) fn matches(&self, method: &str, template: &str) -> bool {
        let e = self.endpoint.trim();
        if e == "*" {
            return true;
        }
        let (m, p) = e.split_once(' ').unwrap_or((e, "*"));
        (m == "*" || m.eq_ignore_ascii_case(method)) && (p == "*" || p == template)
    }
}

/// Fault configuration: a seed and rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    pub seed: u64,
    pub rules: Vec<FaultRule>,
}

impl FaultConfig {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            rules: Vec::new(),
        }
    }
    /// Add a rule (builder style).
    pub fn rule(mut self, r: FaultRule) -> Self {
        self.rules.push(r);
        self
    }
    /// Shorthand for a rule.
    pub fn with(self, endpoint: &str, kind: FaultKind, probability: f64) -> Self {
        self.rule(FaultRule::new(endpoint, kind, probability))
    }
}

/// An injected fault.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultEvent {
    /// Per-rule ordinal of the request that drew this fault.
    pub ordinal: u64,
    pub rule: usize,
    pub method: String,
    pub path: String,
    pub kind: FaultKind,
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Runtime state for a fault config.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    pub config: FaultConfig,
    counters: Vec<u64>,
    hits: Vec<u32>,
    pub log: Vec<FaultEvent>,
}

impl FaultState {
    pub fn new(config: FaultConfig) -> Self {
        let n = config.rules.len();
        Self {
            config,
            counters: vec![0; n],
            hits: vec![0; n],
            log: Vec::new(),
        }
    }

    /// Faults drawn for one request (in rule order).
    pub fn draw(&mut self, method: &str, template: &str, path: &str) -> Vec<FaultKind> {
        let mut out = Vec::new();
        for (i, rule) in self.config.rules.iter().enumerate() {
            if !rule.matches(method, template) {
                continue;
            }
            let k = self.counters[i];
            self.counters[i] += 1;
            if let Some(max) = rule.max_hits {
                if self.hits[i] >= max {
                    continue;
                }
            }
            let r = splitmix64(self.config.seed ^ splitmix64((i as u64) << 32 ^ k));
            let u = (r >> 11) as f64 / (1u64 << 53) as f64;
            if u < rule.probability {
                self.hits[i] += 1;
                self.log.push(FaultEvent {
                    ordinal: k,
                    rule: i,
                    method: method.to_string(),
                    path: path.to_string(),
                    kind: rule.kind.clone(),
                });
                out.push(rule.kind.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws() {
        let cfg = FaultConfig::new(42).with("POST *", FaultKind::LockTimeout, 0.3);
        let run = |cfg: &FaultConfig| {
            let mut st = FaultState::new(cfg.clone());
            (0..200)
                .map(|_| !st.draw("POST", "/x", "/x").is_empty())
                .collect::<Vec<_>>()
        };
        let a = run(&cfg);
        assert_eq!(a, run(&cfg));
        let hits = a.iter().filter(|x| **x).count();
        assert!((30..=90).contains(&hits), "{hits}");
        let b = run(&FaultConfig::new(43).with("POST *", FaultKind::LockTimeout, 0.3));
        assert_ne!(a, b);
    }

    #[test]
    fn parse_rules() {
        let r = FaultRule::parse("POST /nodes/{node}/qemu=lock-timeout@0.5").expect("rule");
        assert_eq!(r.kind, FaultKind::LockTimeout);
        assert!(r.matches("POST", "/nodes/{node}/qemu"));
        assert!(!r.matches("GET", "/nodes/{node}/qemu"));
        let r = FaultRule::parse("*=latency:25").expect("rule");
        assert_eq!(r.kind, FaultKind::Latency(Duration::from_millis(25)));
        assert!(FaultRule::parse("*=bogus").is_err());
    }
}
