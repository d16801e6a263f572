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
pub mod certs;
pub mod etcd_data;
mod kube;
pub mod kube_workloads;
pub mod net;
pub mod nocloud;
mod service;
pub mod upgrade;
pub mod validate;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;

pub use kube_workloads::{DrainAction, DrainEvent};
pub use upgrade::{ComponentChange, UpgradeApi, UpgradeRecord};
pub use validate::{Schema, Schemas};

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
    /// also [`TalosFleet::hold_boot`]).
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
    /// Faults for every node started afterwards (per node: [`TalosNode::set_faults`]).
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

/// An etcd member of an emulated cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Member id.
    pub id: u64,
    /// Hostname of the node.
    pub hostname: String,
    /// Node id in the fleet.
    pub node: u32,
    /// Node address.
    pub ip: Ipv4Addr,
}

/// What happened to an etcd member (see [`TalosFleet::membership_log`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    /// Joined etcd (bootstrap, or a control plane of a bootstrapped cluster started).
    Joined,
    /// Left etcd (leave, member removal, graceful reset).
    Left,
    /// A member's machine went down (reboot, power off, reset) and stays a member.
    Down,
    /// A member's machine is running again.
    Up,
}

/// One entry of a cluster's etcd membership log: the change and the membership after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipEvent {
    /// `cluster.id`.
    pub cluster_id: String,
    /// What happened.
    pub change: MembershipChange,
    /// Hostname of the member it happened to.
    pub hostname: String,
    /// Members after the change.
    pub members: usize,
    /// Members whose machine is running after the change.
    pub up: usize,
}

impl MembershipEvent {
    /// Whether etcd had quorum after the change: a majority of its members up.
    pub fn has_quorum(&self) -> bool {
        self.members > 0 && self.up * 2 > self.members
    }
}

/// The parts of a machine configuration the emulator acts on.
#[derive(Clone)]
pub(crate) struct NodeConfig {
    pub yaml: String,
    pub docs: Vec<Value>,
    pub control_plane: bool,
    pub hostname: String,
    pub address: Option<Ipv4Addr>,
    pub vip: Option<Ipv4Addr>,
    pub cluster_id: String,
    pub cluster_name: String,
    pub endpoint: String,
    pub os_ca_crt: String,
    pub os_ca_key: Option<String>,
    pub k8s_ca_crt: String,
    pub k8s_ca_key: Option<String>,
}

fn b64_pem(v: &Value) -> Option<String> {
    let s = v.as_str()?;
    let b = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
    String::from_utf8(b).ok().filter(|p| !p.trim().is_empty())
}

impl NodeConfig {
    fn from_docs(yaml: &str, docs: Vec<Value>, fallback_host: &str) -> Result<Self, String> {
        let v1 = docs
            .iter()
            .find(|d| d.get("kind").is_none())
            .ok_or("no v1alpha1 document")?;
        let m = &v1["machine"];
        let cl = &v1["cluster"];
        let ty = m["type"].as_str().unwrap_or("worker");
        let hostname = docs
            .iter()
            .find(|d| d["kind"] == "HostnameConfig")
            .and_then(|d| d["hostname"].as_str())
            .or_else(|| m["network"]["hostname"].as_str())
            .unwrap_or(fallback_host)
            .to_string();
        let address = docs
            .iter()
            .filter(|d| d["kind"] == "LinkConfig")
            .flat_map(|d| d["addresses"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| {
                a["address"]
                    .as_str()
                    .and_then(|s| s.split('/').next())
                    .and_then(|s| s.parse::<Ipv4Addr>().ok())
            })
            .next();
        let vip = docs
            .iter()
            .find(|d| d["kind"] == "Layer2VIPConfig")
            .and_then(|d| d["name"].as_str())
            .and_then(|s| s.parse::<Ipv4Addr>().ok());
        Ok(NodeConfig {
            yaml: yaml.to_string(),
            control_plane: matches!(ty, "controlplane" | "init"),
            hostname,
            address,
            vip,
            cluster_id: cl["id"].as_str().unwrap_or("").to_string(),
            cluster_name: cl["clusterName"].as_str().unwrap_or("").to_string(),
            endpoint: cl["controlPlane"]["endpoint"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            os_ca_crt: b64_pem(&m["ca"]["crt"]).ok_or("machine.ca.crt unusable")?,
            os_ca_key: b64_pem(&m["ca"]["key"]),
            k8s_ca_crt: b64_pem(&cl["ca"]["crt"]).ok_or("cluster.ca.crt unusable")?,
            k8s_ca_key: b64_pem(&cl["ca"]["key"]),
            docs,
        })
    }

    /// Whether moving from `self` to `next` needs a reboot (machine type, cluster or CA
    /// change). `machine.install` is not among them: Talos applies it without a reboot and
    /// uses it only at the next install or upgrade (it never changes the installed OS).
    fn needs_reboot_for(&self, next: &NodeConfig) -> Vec<String> {
        let v1 = |c: &NodeConfig| {
            c.docs
                .iter()
                .find(|d| d.get("kind").is_none())
                .cloned()
                .unwrap_or(Value::Null)
        };
        let (a, b) = (v1(self), v1(next));
        let mut out = Vec::new();
        for (path, what) in [
            ("/machine/type", "machine.type"),
            ("/cluster/id", "cluster.id"),
            ("/machine/ca", "machine.ca"),
        ] {
            if a.pointer(path) != b.pointer(path) {
                out.push(what.to_string());
            }
        }
        out
    }
}

struct Cluster {
    bootstrapped: bool,
    members: BTreeMap<u64, Member>,
    vip: Option<net::Listener>,
    /// What the cluster's etcd holds (Kubernetes objects): kept while a member's machine
    /// keeps its disk, lost with the last one ([`Fleet::lose_if_no_data`]).
    data: etcd_data::EtcdData,
}

struct Fleet {
    opts: FleetOptions,
    nodes: Mutex<Vec<TalosNode>>,
    clusters: Mutex<HashMap<String, Cluster>>,
    /// OS CA certificate -> key, learnt from control-plane configurations: what trustd on
    /// the control planes uses to issue worker apid certificates.
    trustd: Mutex<HashMap<String, String>>,
    next_node: AtomicU32,
    next_dhcp: AtomicU32,
    /// Static addresses whose boot sequence does not finish ([`TalosFleet::hold_boot`]).
    boot_holds: Mutex<HashSet<Ipv4Addr>>,
    /// Every etcd membership change, in order.
    membership_log: Mutex<Vec<MembershipEvent>>,
    /// Every accepted OS upgrade ([`TalosFleet::upgrade_log`]).
    upgrades: Mutex<Vec<UpgradeRecord>>,
    /// Kubernetes component image changes ([`TalosFleet::component_log`]).
    components: Mutex<Vec<ComponentChange>>,
    /// Images whose pull fails ([`TalosFleet::fail_pull`]).
    unpullable: Mutex<HashSet<String>>,
    /// Cordons, uncordons and evictions ([`TalosFleet::drain_log`]).
    drains: Mutex<Vec<kube_workloads::DrainEvent>>,
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

static GLOBAL_DHCP: AtomicU32 = AtomicU32::new(0);
/// How long a node that just answered a call which makes it reboot, re-listen or reset keeps
/// its connections before it drops them. A real node answers first and installs, reboots or
/// wipes for seconds afterwards; 20 ms (the value before) lost the answer on a loaded machine
/// ("transport error" in the client), which is harsher than any real node.
pub(crate) const ANSWER_GRACE: Duration = Duration::from_millis(500);

const GLOBAL_DHCP_BASE: u32 = u32::from_be_bytes([127, 20, 128, 1]);

/// An emulated network of Talos machines. Cheap to clone.
#[derive(Clone)]
pub struct TalosFleet {
    inner: Arc<Fleet>,
}

impl std::fmt::Debug for TalosFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TalosFleet")
            .field("nodes", &lock(&self.inner.nodes).len())
            .finish()
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

impl TalosFleet {
    /// A new, empty fleet.
    pub fn new(opts: FleetOptions) -> Self {
        TalosFleet {
            inner: Arc::new(Fleet {
                opts,
                nodes: Mutex::new(Vec::new()),
                clusters: Mutex::new(HashMap::new()),
                trustd: Mutex::new(HashMap::new()),
                next_node: AtomicU32::new(1),
                next_dhcp: AtomicU32::new(0),
                boot_holds: Mutex::new(HashSet::new()),
                membership_log: Mutex::new(Vec::new()),
                upgrades: Mutex::new(Vec::new()),
                components: Mutex::new(Vec::new()),
                drains: Mutex::new(Vec::new()),
                unpullable: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// The options.
    pub fn options(&self) -> &FleetOptions {
        &self.inner.opts
    }

    /// Keeps the boot sequence of the node running on (static address) `ip` from finishing:
    /// its `MachineStatus` stays at stage `booting` until [`Self::release_boot`]. May be set
    /// before the node exists.
    pub fn hold_boot(&self, ip: Ipv4Addr) {
        lock(&self.inner.boot_holds).insert(ip);
    }

    /// Lets a boot held by [`Self::hold_boot`] finish.
    pub fn release_boot(&self, ip: Ipv4Addr) {
        lock(&self.inner.boot_holds).remove(&ip);
    }

    fn next_dhcp(&self) -> Ipv4Addr {
        let used: Vec<Ipv4Addr> = lock(&self.inner.nodes)
            .iter()
            .flat_map(|n| [n.dhcp_address(), n.address()])
            .flatten()
            .collect();
        loop {
            let ip = match self.inner.opts.dhcp_pool_start {
                Some(start) => Ipv4Addr::from(
                    u32::from(start) + self.inner.next_dhcp.fetch_add(1, Ordering::Relaxed),
                ),
                None => Ipv4Addr::from(
                    GLOBAL_DHCP_BASE + GLOBAL_DHCP.fetch_add(1, Ordering::Relaxed) % 32000,
                ),
            };
            if ip.octets()[3] != 0 && ip.octets()[3] != 255 && !used.contains(&ip) {
                return ip;
            }
        }
    }

    /// Powers on a new machine booting the Talos image (no configuration). It reaches
    /// [`Stage::Maintenance`] after [`Timings::boot`].
    pub fn start_node(&self, opts: NodeOptions) -> TalosNode {
        let id = self.inner.next_node.fetch_add(1, Ordering::Relaxed);
        let maintenance = match (opts.platform_address, opts.no_dhcp) {
            (Some(ip), _) => Some(ip),
            (None, true) => None,
            (None, false) => Some(opts.dhcp_address.unwrap_or_else(|| self.next_dhcp())),
        };
        let (tx, _) = tokio::sync::watch::channel(Stage::Booting);
        let node = TalosNode {
            inner: Arc::new(NodeInner {
                id,
                name: opts.name.unwrap_or_else(|| format!("talos-{id}")),
                fleet: Arc::downgrade(&self.inner),
                maintenance,
                state: Mutex::new(NodeState {
                    stage: Stage::Booting,
                    generation: 0,
                    listener: None,
                    config: None,
                    address: None,
                    running_since: None,
                    applies: Vec::new(),
                    os: upgrade::NodeOs::new(
                        opts.talos_version
                            .unwrap_or_else(|| self.inner.opts.talos_version.clone()),
                    ),
                    recovery_snapshot: None,
                    etcd_failure: None,
                }),
                stage_tx: tx,
                faults: Mutex::new(self.inner.opts.faults.clone()),
                fail_next: Mutex::new(VecDeque::new()),
                counter: AtomicU64::new(0),
                calls: Mutex::new(Vec::new()),
            }),
        };
        lock(&self.inner.nodes).push(node.clone());
        node.spawn_boot_maintenance(Duration::ZERO);
        node
    }

    /// Every node started.
    pub fn nodes(&self) -> Vec<TalosNode> {
        lock(&self.inner.nodes).clone()
    }

    /// The node currently answering on `ip` (or holding it as DHCP address).
    pub fn node_at(&self, ip: Ipv4Addr) -> Option<TalosNode> {
        let nodes = lock(&self.inner.nodes);
        nodes
            .iter()
            .find(|n| n.address() == Some(ip))
            .or_else(|| nodes.iter().find(|n| n.dhcp_address() == Some(ip)))
            .cloned()
    }

    /// etcd members of the cluster with `cluster.id` = `cluster_id`.
    pub fn etcd_members(&self, cluster_id: &str) -> Vec<Member> {
        lock(&self.inner.clusters)
            .get(cluster_id)
            .map(|c| c.members.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every membership change of that cluster's etcd since the fleet started, in order,
    /// each with the membership after it (a rolling change can be checked for quorum).
    pub fn membership_log(&self, cluster_id: &str) -> Vec<MembershipEvent> {
        lock(&self.inner.membership_log)
            .iter()
            .filter(|e| e.cluster_id == cluster_id)
            .cloned()
            .collect()
    }

    /// Whether that cluster was bootstrapped.
    pub fn is_bootstrapped(&self, cluster_id: &str) -> bool {
        lock(&self.inner.clusters)
            .get(cluster_id)
            .is_some_and(|c| c.bootstrapped)
    }

    /// The Kubernetes API `/readyz` verdict of that cluster.
    pub fn readyz(&self, cluster_id: &str) -> Result<(), String> {
        self.inner.readyz(cluster_id)
    }

    /// Where the Kubernetes API emulation of that cluster listens (once bootstrapped with
    /// a VIP).
    pub fn kube_api_addr(&self, cluster_id: &str) -> Option<SocketAddr> {
        lock(&self.inner.clusters)
            .get(cluster_id)
            .and_then(|c| c.vip.as_ref().map(|l| l.addr))
    }

    /// Powers off every node and stops every listener.
    pub async fn shutdown(&self) {
        for n in self.nodes() {
            n.power_off().await;
        }
        let vips: Vec<net::Listener> = lock(&self.inner.clusters)
            .values_mut()
            .filter_map(|c| c.vip.take())
            .collect();
        for v in vips {
            v.stop().await;
        }
    }
}

impl Fleet {
    fn node_by_id(&self, id: u32) -> Option<TalosNode> {
        lock(&self.nodes).iter().find(|n| n.inner.id == id).cloned()
    }

    fn readyz(&self, cluster_id: &str) -> Result<(), String> {
        let members: Vec<Member> = {
            let cl = lock(&self.clusters);
            let c = cl.get(cluster_id).ok_or("etcd: cluster not bootstrapped")?;
            if !c.bootstrapped {
                return Err("etcd: cluster not bootstrapped".into());
            }
            c.members.values().cloned().collect()
        };
        let up = members
            .iter()
            .filter(|m| {
                self.node_by_id(m.node)
                    .is_some_and(|n| n.stage() == Stage::Running)
            })
            .count();
        if members.is_empty() || up * 2 <= members.len() {
            return Err(format!(
                "etcd: no quorum ({up} of {} members up)",
                members.len()
            ));
        }
        Ok(())
    }

    /// Appends `change` of `hostname` to the membership log with the membership as it is
    /// now; returns how many members are up.
    fn log_membership(&self, cluster_id: &str, change: MembershipChange, hostname: &str) -> usize {
        let members: Vec<Member> = lock(&self.clusters)
            .get(cluster_id)
            .map(|c| c.members.values().cloned().collect())
            .unwrap_or_default();
        let up = members
            .iter()
            .filter(|m| {
                self.node_by_id(m.node)
                    .is_some_and(|n| n.stage() == Stage::Running)
            })
            .count();
        lock(&self.membership_log).push(MembershipEvent {
            cluster_id: cluster_id.to_string(),
            change,
            hostname: hostname.to_string(),
            members: members.len(),
            up,
        });
        up
    }

    /// The clusters `node_id` is an etcd member of, with its member hostname.
    fn memberships(&self, node_id: u32) -> Vec<(String, String)> {
        lock(&self.clusters)
            .iter()
            .flat_map(|(id, c)| {
                c.members
                    .values()
                    .filter(|m| m.node == node_id)
                    .map(|m| (id.clone(), m.hostname.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// A member's machine went down. With no member left running, nothing holds the
    /// cluster's VIP any more: its Kubernetes API listener is released.
    async fn member_down(&self, node_id: u32) {
        for (cluster_id, hostname) in self.memberships(node_id) {
            if self.log_membership(&cluster_id, MembershipChange::Down, &hostname) > 0 {
                continue;
            }
            let vip = lock(&self.clusters)
                .get_mut(&cluster_id)
                .and_then(|c| c.vip.take());
            if let Some(l) = vip {
                l.stop().await;
            }
        }
    }

    /// Adds the node as etcd member of its (bootstrapped) cluster; a member that is already
    /// one is logged as up again.
    fn join(&self, node: &TalosNode, cfg: &NodeConfig, ip: Ipv4Addr) {
        let mut cl = lock(&self.clusters);
        let Some(c) = cl.get_mut(&cfg.cluster_id) else {
            return;
        };
        if !c.bootstrapped {
            return;
        }
        if c.members.values().any(|m| m.node == node.inner.id) {
            drop(cl);
            self.log_membership(&cfg.cluster_id, MembershipChange::Up, &cfg.hostname);
            return;
        }
        let id = splitmix(
            self.opts.faults.seed ^ (u64::from(node.inner.id) << 32) ^ c.members.len() as u64,
        ) | 1;
        c.members.insert(
            id,
            Member {
                id,
                hostname: cfg.hostname.clone(),
                node: node.inner.id,
                ip,
            },
        );
        drop(cl);
        self.log_membership(&cfg.cluster_id, MembershipChange::Joined, &cfg.hostname);
    }

    fn is_member(&self, cluster_id: &str, node_id: u32) -> bool {
        lock(&self.clusters)
            .get(cluster_id)
            .is_some_and(|c| c.bootstrapped && c.members.values().any(|m| m.node == node_id))
    }

    fn leave(&self, cluster_id: &str, node_id: u32) -> bool {
        let mut cl = lock(&self.clusters);
        let Some(c) = cl.get_mut(cluster_id) else {
            return false;
        };
        let hostname = c
            .members
            .values()
            .find(|m| m.node == node_id)
            .map(|m| m.hostname.clone());
        let before = c.members.len();
        c.members.retain(|_, m| m.node != node_id);
        let removed = c.members.len() != before;
        if c.members.is_empty() && removed {
            // Every member gone: the cluster can be bootstrapped again.
            c.bootstrapped = false;
            c.vip = None;
        }
        drop(cl);
        if let Some(h) = hostname.filter(|_| removed) {
            self.log_membership(cluster_id, MembershipChange::Left, &h);
        }
        removed
    }
}

struct NodeState {
    stage: Stage,
    generation: u64,
    listener: Option<net::Listener>,
    config: Option<Arc<NodeConfig>>,
    address: Option<Ipv4Addr>,
    running_since: Option<Instant>,
    applies: Vec<AppliedConfig>,
    os: upgrade::NodeOs,
    /// A snapshot uploaded with `EtcdRecover`, for `Bootstrap` with `recover_etcd`.
    recovery_snapshot: Option<Vec<u8>>,
    /// Why this node's etcd service failed (a recovery from a bad or missing snapshot).
    etcd_failure: Option<String>,
}

struct NodeInner {
    id: u32,
    name: String,
    fleet: Weak<Fleet>,
    /// Maintenance-mode address (DHCP or platform network configuration); `None`: no IPv4.
    maintenance: Option<Ipv4Addr>,
    state: Mutex<NodeState>,
    stage_tx: tokio::sync::watch::Sender<Stage>,
    faults: Mutex<Faults>,
    fail_next: Mutex<VecDeque<(String, tonic::Code, String)>>,
    counter: AtomicU64,
    calls: Mutex<Vec<CallRecord>>,
}

/// One emulated Talos machine. Cheap to clone.
#[derive(Clone)]
pub struct TalosNode {
    inner: Arc<NodeInner>,
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

    fn fleet(&self) -> Option<Arc<Fleet>> {
        self.inner.fleet.upgrade()
    }

    fn timings(&self) -> Timings {
        self.fleet().map(|f| f.opts.timings).unwrap_or_default()
    }

    fn set_stage(&self, s: Stage) {
        lock(&self.inner.state).stage = s;
        self.inner.stage_tx.send_replace(s);
    }

    /// Takes the listener down and bumps the generation; returns the new generation.
    async fn go_down(&self) -> u64 {
        let (l, generation, was_running) = {
            let mut st = lock(&self.inner.state);
            st.generation += 1;
            st.address = None;
            st.running_since = None;
            let was_running = st.stage == Stage::Running;
            st.stage = Stage::Rebooting;
            (st.listener.take(), st.generation, was_running)
        };
        self.inner.stage_tx.send_replace(Stage::Rebooting);
        if let Some(l) = l {
            l.stop().await;
        }
        if let Some(f) = self.fleet().filter(|_| was_running) {
            f.member_down(self.inner.id).await;
        }
        generation
    }

    fn spawn_boot_maintenance(&self, extra_delay: Duration) {
        let node = self.clone();
        tokio::spawn(async move {
            let generation = node.go_down().await;
            node.next_boot();
            node.set_stage(Stage::Booting);
            tokio::time::sleep(extra_delay + node.timings().boot).await;
            if let Err(e) = node.start_maintenance(generation).await {
                tracing::warn!(
                    node = node.inner.id,
                    "talos emulator: maintenance boot failed: {e}"
                );
                node.set_stage(Stage::Stopped);
            }
        });
    }

    async fn start_maintenance(&self, generation: u64) -> Result<(), EmulatorError> {
        let fleet = self.fleet().ok_or(EmulatorError::FleetGone)?;
        let Some(ip) = reachable(self.inner.maintenance) else {
            // Up in maintenance mode, but with no address anybody can reach.
            let mut st = lock(&self.inner.state);
            if st.generation == generation {
                st.config = None;
                st.stage = Stage::Maintenance;
                drop(st);
                tracing::warn!(
                    node = self.inner.id,
                    "talos emulator: no IPv4 address (no DHCP, no platform network config)"
                );
                self.inner.stage_tx.send_replace(Stage::Maintenance);
            }
            return Ok(());
        };
        let cert = certs::maintenance_cert(IpAddr::V4(ip)).map_err(EmulatorError::Tls)?;
        let tls = net::server_tls(&cert.crt, &cert.key, true).map_err(EmulatorError::Tls)?;
        let addr = SocketAddr::new(IpAddr::V4(ip), fleet.opts.api_port);
        let svc = service::NodeService::new(self.clone(), false, generation);
        let l = net::serve_grpc(addr, tls, svc)
            .await
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        let mut st = lock(&self.inner.state);
        if st.generation != generation {
            return Ok(()); // superseded (powered off meanwhile); `l` drops and stops
        }
        st.config = None;
        st.listener = Some(l);
        st.address = Some(ip);
        st.stage = Stage::Maintenance;
        drop(st);
        self.inner.stage_tx.send_replace(Stage::Maintenance);
        Ok(())
    }

    fn spawn_reboot_into(&self, cfg: Arc<NodeConfig>, delay: Duration) {
        let node = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let generation = node.go_down().await;
            node.next_boot();
            lock(&node.inner.state).config = Some(cfg.clone());
            tokio::time::sleep(node.timings().reboot).await;
            if let Err(e) = node.start_running(generation, cfg).await {
                tracing::warn!(node = node.inner.id, "talos emulator: boot failed: {e}");
                node.set_stage(Stage::Stopped);
            }
        });
    }

    async fn start_running(
        &self,
        generation: u64,
        cfg: Arc<NodeConfig>,
    ) -> Result<(), EmulatorError> {
        let fleet = self.fleet().ok_or(EmulatorError::FleetGone)?;
        let Some(ip) = reachable(cfg.address.or(self.inner.maintenance)) else {
            tracing::warn!(
                node = self.inner.id,
                "talos emulator: configured node has no loopback IPv4 address to answer on"
            );
            return Ok(());
        };
        let ca_key = match cfg.os_ca_key.clone() {
            Some(k) => {
                lock(&fleet.trustd).insert(cfg.os_ca_crt.clone(), k.clone());
                k
            }
            None => match self.wait_trustd(&fleet, &cfg.os_ca_crt, generation).await {
                Some(k) => k,
                None => return Ok(()), // superseded while waiting
            },
        };
        let cert = certs::apid_cert(&cfg.os_ca_crt, &ca_key, &[IpAddr::V4(ip)], &cfg.hostname)
            .map_err(EmulatorError::Tls)?;
        let tls =
            net::server_mtls(&cert.crt, &cert.key, &cfg.os_ca_crt).map_err(EmulatorError::Tls)?;
        let addr = SocketAddr::new(IpAddr::V4(ip), fleet.opts.api_port);
        let svc = service::NodeService::new(self.clone(), true, generation);
        let l = net::serve_grpc(addr, tls, svc)
            .await
            .map_err(|source| EmulatorError::Bind { addr, source })?;
        {
            let mut st = lock(&self.inner.state);
            if st.generation != generation {
                return Ok(());
            }
            st.listener = Some(l);
            st.address = Some(ip);
            st.running_since = Some(Instant::now());
            st.stage = Stage::Running;
            st.os.upgrading = false;
        }
        self.upgrade_finished();
        if let Some(l) = fleet.lose_if_no_data(&cfg.cluster_id) {
            l.stop().await;
        }
        if cfg.control_plane {
            fleet.join(self, &cfg, ip);
            // A member back up takes the VIP again when nothing holds it.
            if let (Some(vip), Some(key)) = (cfg.vip, cfg.k8s_ca_key.clone()) {
                if fleet.is_member(&cfg.cluster_id, self.inner.id) {
                    let node = self.clone();
                    let (cid, crt) = (cfg.cluster_id.clone(), cfg.k8s_ca_crt.clone());
                    tokio::spawn(async move {
                        service::start_kube_api(node, cid, vip, crt, key).await;
                    });
                }
            }
        }
        // The kubelet starts and registers its Node (once the cluster is bootstrapped).
        fleet.register_kubelets(&cfg.cluster_id);
        self.inner.stage_tx.send_replace(Stage::Running);
        Ok(())
    }

    /// A worker has no OS CA key: its apid certificate comes from trustd on a control plane
    /// of the cluster. Waits (like a real worker) until one has been configured.
    async fn wait_trustd(&self, fleet: &Fleet, ca_crt: &str, generation: u64) -> Option<String> {
        loop {
            if let Some(k) = lock(&fleet.trustd).get(ca_crt).cloned() {
                return Some(k);
            }
            if lock(&self.inner.state).generation != generation {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Restarts the listener on the (possibly new) address/certificate without a reboot.
    fn spawn_relisten(&self, cfg: Arc<NodeConfig>) {
        let node = self.clone();
        tokio::spawn(async move {
            // Let the ApplyConfiguration answer reach the client first.
            tokio::time::sleep(ANSWER_GRACE).await;
            let (l, generation) = {
                let mut st = lock(&node.inner.state);
                st.generation += 1;
                (st.listener.take(), st.generation)
            };
            if let Some(l) = l {
                l.stop().await;
            }
            let since = lock(&node.inner.state).running_since;
            if let Err(e) = node.start_running(generation, cfg).await {
                tracing::warn!(node = node.inner.id, "talos emulator: relisten failed: {e}");
            }
            if since.is_some() {
                lock(&node.inner.state).running_since = since;
            }
        });
    }

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
    fn injected_fault(&self, method: &str) -> Option<tonic::Status> {
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

    fn record(&self, method: &str, authenticated: bool, code: tonic::Code) {
        lock(&self.inner.calls).push(CallRecord {
            method: method.to_string(),
            authenticated,
            code,
        });
    }
}
