//! What a fleet and a node are started with: latencies, faults, fleet-wide and per-node
//! options.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use super::Schemas;

/// Latencies of the emulated machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// Power-on to maintenance mode.
    pub boot: Duration,
    /// Extra latency of ApplyConfiguration.
    pub apply: Duration,
    /// Down time of a reboot (apply with reboot, reset).
    pub reboot: Duration,
    /// Time after reaching Running before Bootstrap is accepted.
    pub bootstrap_ready: Duration,
    /// Latency added to every RPC.
    pub rpc: Duration,
    /// Time after reaching Running (apid up on the static address) until the boot sequence
    /// is done: `MachineStatus` reports stage `booting` until then, `running` after (see
    /// also [`TalosFleet::hold_boot`](super::TalosFleet::hold_boot)).
    pub boot_done: Duration,
    /// Time an OS upgrade's installer runs (the node is down), before its reboot.
    pub upgrade: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            boot: Duration::from_millis(50),
            apply: Duration::from_millis(10),
            reboot: Duration::from_millis(100),
            bootstrap_ready: Duration::from_millis(100),
            rpc: Duration::ZERO,
            boot_done: Duration::from_millis(50),
            upgrade: Duration::from_millis(100),
        }
    }
}

/// Injected faults, deterministic for `seed`.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Seed of the fault decisions.
    pub seed: u64,
    /// RPC name (`ApplyConfiguration`, `Bootstrap`, ...; `*` for all) -> probability in
    /// [0, 1] that the call fails with `code`.
    pub error_rate: BTreeMap<String, f64>,
    /// Status code of random failures (default `Unavailable`).
    pub code: tonic::Code,
    /// RPC name -> how many of its calls on each node take effect but lose their answer: the
    /// client sees the connection break (tonic's `Unknown: transport error`), as when a node
    /// reboots before its answer is on the wire. Only calls that say so honour it
    /// (ApplyConfiguration in maintenance mode).
    pub lose_answers: BTreeMap<String, u32>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            seed: 0,
            error_rate: BTreeMap::new(),
            code: tonic::Code::Unavailable,
            lose_answers: BTreeMap::new(),
        }
    }
}

/// Fleet-wide options.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// apid port on every node address (real Talos: 50000).
    pub api_port: u16,
    /// Kubernetes API port on the VIP (6443).
    pub kube_api_port: u16,
    /// Latencies.
    pub timings: Timings,
    /// Faults for every node started afterwards (per node:
    /// [`TalosNode::set_faults`](super::TalosNode::set_faults)).
    pub faults: Faults,
    /// Official schemas to validate against, each node by the version it runs; `None` =
    /// structural rules only (also for a node whose release has no schema). Defaults to
    /// [`Schemas::shared`] (the spec files when present).
    pub schema: Option<&'static Schemas>,
    /// Talos version a node first boots (and reports in `Version`) unless its disk image
    /// names another ([`NodeOptions::talos_version`]); upgrades change it per node.
    pub talos_version: String,
    /// First "DHCP" address handed to nodes without an explicit one; following nodes get
    /// the next free addresses. Default: a process-wide pool in 127.20.128.0/17.
    pub dhcp_pool_start: Option<Ipv4Addr>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            api_port: waddle_talos::api::TALOS_API_PORT,
            kube_api_port: 6443,
            timings: Timings::default(),
            faults: Faults::default(),
            schema: Schemas::shared(),
            talos_version: "v1.12.11".into(),
            dhcp_pool_start: None,
        }
    }
}
/// Options of one node.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// The "DHCP" address it gets in maintenance mode (default: next from the pool).
    pub dhcp_address: Option<Ipv4Addr>,
    /// Hostname before configuration (default `talos-<id>`).
    pub name: Option<String>,
    /// The static address the platform's network configuration (NoCloud `network-config`)
    /// gives the node: it answers there in maintenance mode, instead of a DHCP address.
    pub platform_address: Option<Ipv4Addr>,
    /// No DHCP server on the node's network: without a `platform_address` the node has no
    /// IPv4 address in maintenance mode and never answers (as a real machine would).
    pub no_dhcp: bool,
    /// The Talos version of the image it boots (default: [`FleetOptions::talos_version`]).
    pub talos_version: Option<String>,
}
