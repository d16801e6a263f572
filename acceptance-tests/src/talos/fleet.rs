//! The fleet: an emulated network of Talos machines, its clusters and its logs.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::node::{NodeInner, NodeState};
use super::{
    etcd_data, kube_workloads, lock, net, upgrade, ComponentChange, FleetOptions, Member,
    MembershipEvent, NodeOptions, Stage, TalosNode, UpgradeRecord,
};

pub(super) struct Cluster {
    pub(super) bootstrapped: bool,
    pub(super) members: BTreeMap<u64, Member>,
    pub(super) vip: Option<net::Listener>,
    /// What the cluster's etcd holds (Kubernetes objects): kept while a member's machine
    /// keeps its disk, lost with the last one ([`Fleet::lose_if_no_data`]).
    pub(super) data: etcd_data::EtcdData,
}

pub(super) struct Fleet {
    pub(super) opts: FleetOptions,
    pub(super) nodes: Mutex<Vec<TalosNode>>,
    pub(super) clusters: Mutex<HashMap<String, Cluster>>,
    /// OS CA certificate -> key, learnt from control-plane configurations: what trustd on
    /// the control planes uses to issue worker apid certificates.
    pub(super) trustd: Mutex<HashMap<String, String>>,
    pub(super) next_node: AtomicU32,
    pub(super) next_dhcp: AtomicU32,
    /// Static addresses whose boot sequence does not finish ([`TalosFleet::hold_boot`]).
    pub(super) boot_holds: Mutex<HashSet<Ipv4Addr>>,
    /// Every etcd membership change, in order.
    pub(super) membership_log: Mutex<Vec<MembershipEvent>>,
    /// Every accepted OS upgrade ([`TalosFleet::upgrade_log`]).
    pub(super) upgrades: Mutex<Vec<UpgradeRecord>>,
    /// Kubernetes component image changes ([`TalosFleet::component_log`]).
    pub(super) components: Mutex<Vec<ComponentChange>>,
    /// Images whose pull fails ([`TalosFleet::fail_pull`]).
    pub(super) unpullable: Mutex<HashSet<String>>,
    /// Cordons, uncordons and evictions ([`TalosFleet::drain_log`]).
    pub(super) drains: Mutex<Vec<kube_workloads::DrainEvent>>,
}
static GLOBAL_DHCP: AtomicU32 = AtomicU32::new(0);
const GLOBAL_DHCP_BASE: u32 = u32::from_be_bytes([127, 20, 128, 1]);

/// An emulated network of Talos machines. Cheap to clone.
#[derive(Clone)]
pub struct TalosFleet {
    pub(super) inner: Arc<Fleet>,
}

impl std::fmt::Debug for TalosFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TalosFleet")
            .field("nodes", &lock(&self.inner.nodes).len())
            .finish()
    }
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
    /// [`Stage::Maintenance`] after [`Timings::boot`](super::Timings::boot).
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
    pub(super) fn node_by_id(&self, id: u32) -> Option<TalosNode> {
        lock(&self.nodes).iter().find(|n| n.inner.id == id).cloned()
    }
}
