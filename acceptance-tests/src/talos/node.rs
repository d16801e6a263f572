//! One emulated Talos machine: its stage, what it answered, its state, and the faults it
//! injects into its calls.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{lock, net, splitmix, upgrade, Faults, Fleet, NodeConfig, Timings};

/// Lifecycle stage of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Powered on, not answering yet.
    Booting,
    /// Maintenance mode (no configuration) on the DHCP address.
    Maintenance,
    /// Down between two boots.
    Rebooting,
    /// Configured, serving mTLS on its static address.
    Running,
    /// Powered off.
    Stopped,
}

/// One ApplyConfiguration the node accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedConfig {
    /// The mode requested.
    pub requested_mode: i32,
    /// The mode used (AUTO resolved).
    pub mode: i32,
    /// Whether the node was in maintenance mode.
    pub in_maintenance: bool,
    /// Whether it was a dry run.
    pub dry_run: bool,
}

/// One RPC the node answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// RPC name.
    pub method: String,
    /// Whether it came over mTLS.
    pub authenticated: bool,
    /// The status code answered.
    pub code: tonic::Code,
}
pub(super) struct NodeState {
    pub(super) stage: Stage,
    pub(super) generation: u64,
    pub(super) listener: Option<net::Listener>,
    pub(super) config: Option<Arc<NodeConfig>>,
    pub(super) address: Option<Ipv4Addr>,
    pub(super) running_since: Option<Instant>,
    pub(super) applies: Vec<AppliedConfig>,
    pub(super) os: upgrade::NodeOs,
    /// A snapshot uploaded with `EtcdRecover`, for `Bootstrap` with `recover_etcd`.
    pub(super) recovery_snapshot: Option<Vec<u8>>,
    /// Why this node's etcd service failed (a recovery from a bad or missing snapshot).
    pub(super) etcd_failure: Option<String>,
}

pub(super) struct NodeInner {
    pub(super) id: u32,
    pub(super) name: String,
    pub(super) fleet: Weak<Fleet>,
    /// Maintenance-mode address (DHCP or platform network configuration); `None`: no IPv4.
    pub(super) maintenance: Option<Ipv4Addr>,
    pub(super) state: Mutex<NodeState>,
    pub(super) stage_tx: tokio::sync::watch::Sender<Stage>,
    pub(super) faults: Mutex<Faults>,
    pub(super) fail_next: Mutex<VecDeque<(String, tonic::Code, String)>>,
    pub(super) counter: AtomicU64,
    pub(super) calls: Mutex<Vec<CallRecord>>,
}

/// One emulated Talos machine. Cheap to clone.
#[derive(Clone)]
pub struct TalosNode {
    pub(super) inner: Arc<NodeInner>,
}

impl std::fmt::Debug for TalosNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TalosNode")
            .field("id", &self.inner.id)
            .field("stage", &self.stage())
            .field("address", &self.address())
            .finish()
    }
}

impl TalosNode {
    /// Id in the fleet.
    pub fn id(&self) -> u32 {
        self.inner.id
    }

    /// The maintenance-mode address (from DHCP or the platform's network configuration);
    /// `None` when the node has no IPv4 address in maintenance mode.
    pub fn dhcp_address(&self) -> Option<Ipv4Addr> {
        self.inner.maintenance
    }

    /// The address it answers on now (None while booting/rebooting/off).
    pub fn address(&self) -> Option<Ipv4Addr> {
        lock(&self.inner.state).address
    }

    /// The apid endpoint it answers on now.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        let st = lock(&self.inner.state);
        let addr = st.listener.as_ref().map(|l| l.addr);
        addr
    }

    /// Current stage.
    pub fn stage(&self) -> Stage {
        lock(&self.inner.state).stage
    }

    /// Waits until the node is in `stage` (false on timeout).
    pub async fn wait_stage(&self, stage: Stage, timeout: Duration) -> bool {
        let mut rx = self.inner.stage_tx.subscribe();
        tokio::time::timeout(timeout, async {
            loop {
                if self.stage() == stage {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
            && self.stage() == stage
    }

    /// The active machine configuration (as applied).
    pub fn config_yaml(&self) -> Option<String> {
        lock(&self.inner.state)
            .config
            .as_ref()
            .map(|c| c.yaml.clone())
    }

    /// Hostname (from the configuration, else the pre-configuration name).
    pub fn hostname(&self) -> String {
        lock(&self.inner.state)
            .config
            .as_ref()
            .map(|c| c.hostname.clone())
            .unwrap_or_else(|| self.inner.name.clone())
    }

    /// `cluster.id` of the active configuration.
    pub fn cluster_id(&self) -> Option<String> {
        lock(&self.inner.state)
            .config
            .as_ref()
            .map(|c| c.cluster_id.clone())
    }

    /// Whether the active configuration is a control plane.
    pub fn is_control_plane(&self) -> bool {
        lock(&self.inner.state)
            .config
            .as_ref()
            .is_some_and(|c| c.control_plane)
    }

    /// Accepted ApplyConfiguration calls.
    pub fn applies(&self) -> Vec<AppliedConfig> {
        lock(&self.inner.state).applies.clone()
    }

    /// Every RPC answered, in order.
    pub fn calls(&self) -> Vec<CallRecord> {
        lock(&self.inner.calls).clone()
    }

    /// Replaces this node's random faults.
    pub fn set_faults(&self, f: Faults) {
        *lock(&self.inner.faults) = f;
    }

    /// The next call of `method` (`*` = any) fails with `code`/`message`.
    pub fn fail_next(&self, method: &str, code: tonic::Code, message: &str) {
        lock(&self.inner.fail_next).push_back((method.to_string(), code, message.to_string()));
    }

    /// Powers the machine off (listener closed, etcd membership kept as real etcd would).
    pub async fn power_off(&self) {
        let (l, was_running) = {
            let mut st = lock(&self.inner.state);
            st.generation += 1;
            st.address = None;
            (st.listener.take(), st.stage == Stage::Running)
        };
        if let Some(l) = l {
            l.stop().await;
        }
        self.set_stage(Stage::Stopped);
        if let Some(f) = self.fleet().filter(|_| was_running) {
            f.member_down(self.inner.id).await;
        }
    }

    /// Powers a stopped machine on again: it boots its configuration if it has one, else
    /// maintenance mode.
    pub fn power_on(&self) {
        let cfg = lock(&self.inner.state).config.clone();
        match cfg {
            Some(c) => self.spawn_reboot_into(c, Duration::ZERO),
            None => self.spawn_boot_maintenance(Duration::ZERO),
        }
    }

    pub(super) fn fleet(&self) -> Option<Arc<Fleet>> {
        self.inner.fleet.upgrade()
    }

    pub(super) fn timings(&self) -> Timings {
        self.fleet().map(|f| f.opts.timings).unwrap_or_default()
    }

    pub(super) fn set_stage(&self, s: Stage) {
        lock(&self.inner.state).stage = s;
        self.inner.stage_tx.send_replace(s);
    }
}

impl TalosNode {
    /// Whether this call of `method` loses its answer (see [`Faults::lose_answers`]); counts
    /// it down.
    pub(crate) fn loses_answer(&self, method: &str) -> bool {
        let mut f = lock(&self.inner.faults);
        match f.lose_answers.get_mut(method) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// Decides whether this call fails by injected fault.
    pub(super) fn injected_fault(&self, method: &str) -> Option<tonic::Status> {
        {
            let mut q = lock(&self.inner.fail_next);
            if let Some(pos) = q.iter().position(|(m, _, _)| m == method || m == "*") {
                let (_, code, msg) = q.remove(pos)?;
                return Some(tonic::Status::new(code, msg));
            }
        }
        let f = lock(&self.inner.faults).clone();
        let rate = f
            .error_rate
            .get(method)
            .or_else(|| f.error_rate.get("*"))
            .copied()
            .unwrap_or(0.0);
        if rate <= 0.0 {
            return None;
        }
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let r = splitmix(f.seed ^ (u64::from(self.inner.id) << 40) ^ n);
        let x = (r >> 11) as f64 / (1u64 << 53) as f64;
        (x < rate).then(|| tonic::Status::new(f.code, format!("injected fault in {method}")))
    }

    pub(super) fn record(&self, method: &str, authenticated: bool, code: tonic::Code) {
        lock(&self.inner.calls).push(CallRecord {
            method: method.to_string(),
            authenticated,
            code,
        });
    }
}
