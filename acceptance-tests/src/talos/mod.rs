//! Talos Linux v1.12/v1.13 node emulator (`machine.MachineService` over waddle's own protos).
//!
//! A [`TalosFleet`] is one emulated network of Talos machines. Each [`TalosNode`] listens on
//! its own loopback address (127.20.x.y) on the apid port (50000 by default,
//! [`FleetOptions::api_port`]):
//!
//! 1. **Booting** for [`Timings::boot`], then **Maintenance** on its maintenance address
//!    ([`NodeOptions`]: the static address of its platform (NoCloud) network configuration,
//!    else a DHCP address when its network has DHCP, else none — then it never answers): TLS with
//!    a self-signed Ed25519 certificate, no client certificate. `ApplyConfiguration`
//!    accepts REBOOT/AUTO/TRY (NO_REBOOT/STAGED: `Unimplemented`, Talos's message) and
//!    validates the configuration ([`validate`]: the official schema when present + Talos's
//!    cross-field rules). Like real Talos, what its strict decoder refuses (YAML syntax,
//!    unknown keys, wrong types) is a plain error (gRPC `Unknown`) "failed to parse config:
//!    ...", and what its validation refuses is `InvalidArgument` "configuration validation
//!    failed: ..." listing every finding. Other calls answer `Unimplemented` "API is not
//!    implemented in maintenance mode" (maintenance mode grants no admin role).
//! 2. **Rebooting** for [`Timings::reboot`] (all connections dropped), then **Running** on
//!    the static address of its `LinkConfig` (falls back to the maintenance address): mutual TLS,
//!    client certificate signed by the configuration's OS CA (`machine.ca`) required, server
//!    certificate from that CA for the node's IP. Its `MachineStatus` resource
//!    (`cosi.resource.State/Get`, the COSI API real apid serves) reports stage `booting`
//!    for [`Timings::boot_done`] (or while [`TalosFleet::hold_boot`] holds it), then
//!    `running`; `ready` follows Talos's readiness checks (services: etcd healthy on control
//!    planes; nodeReady: never with CNI `none`, the node stays NotReady without a CNI). In
//!    maintenance mode it reports stage `maintenance`, ready (Talos's maintenance API also
//!    serves resource reads).
//! 3. `Bootstrap` (control planes): `FailedPrecondition` until the node has been Running for
//!    [`Timings::bootstrap_ready`], then ok once per cluster (`cluster.id`), `AlreadyExists`
//!    after. Control planes that are Running in a bootstrapped cluster are etcd members;
//!    `EtcdLeaveCluster` / `EtcdRemoveMemberByID` remove them. Once bootstrapped, the
//!    Kubernetes API emulation answers HTTPS `GET /readyz` on the VIP (`Layer2VIPConfig`)
//!    port [`FleetOptions::kube_api_port`] with `ok` while etcd has quorum.
//! 4. `Reset`: graceful leaves etcd first (refused for the last member); forced leaves a
//!    stale member behind, as real Talos does. The node reboots into maintenance on its maintenance
//!    address (or powers off when `reboot` is false).
//!
//! Faults ([`Faults`]) are deterministic for a seed: an error rate per RPC plus one-shot
//! failures ([`TalosNode::fail_next`]); latencies come from [`Timings`].
pub mod appliance;
mod boot;
pub mod certs;
pub mod etcd_data;
mod fleet;
mod kube;
pub mod kube_workloads;
mod membership;
pub mod net;
pub mod nocloud;
mod node;
mod node_config;
mod options;
mod service;
pub mod upgrade;
pub mod validate;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

pub use fleet::TalosFleet;
pub use kube_workloads::{DrainAction, DrainEvent};
pub use membership::{Member, MembershipChange, MembershipEvent};
pub use node::{AppliedConfig, CallRecord, Stage, TalosNode};
pub use options::{Faults, FleetOptions, NodeOptions, Timings};
pub use upgrade::{ComponentChange, UpgradeApi, UpgradeRecord};
pub use validate::{Schema, Schemas};

use fleet::{Cluster, Fleet};
use node_config::NodeConfig;

/// Emulator errors (setup, not RPC answers).
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// Could not listen.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Certificate or TLS setup failed.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The fleet was dropped.
    #[error("the fleet is gone")]
    FleetGone,
}
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The address to listen on: only loopback addresses (an address outside 127.0.0.0/8 is
/// unreachable from the test host, and no test server listens anywhere else).
fn reachable(ip: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
    ip.filter(Ipv4Addr::is_loopback)
}
/// How long a node that just answered a call which makes it reboot, re-listen or reset keeps
/// its connections before it drops them. A real node answers first and installs, reboots or
/// wipes for seconds afterwards; 20 ms (the value before) lost the answer on a loaded machine
/// ("transport error" in the client), which is harsher than any real node.
pub(crate) const ANSWER_GRACE: Duration = Duration::from_millis(500);
