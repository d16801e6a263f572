//! Emulator state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::access::AccessState;
use super::faults::{FaultConfig, FaultEvent, FaultState};
use super::guest::{ApplianceRegistry, GuestAppliance};
use super::EmulatorConfig;
use crate::spec::{ApiSchema, ErrorMap};

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Power {
    Stopped,
    Running,
}

#[derive(Clone)]
pub(crate) struct Vm {
    pub vmid: u32,
    pub node: String,
    pub config: BTreeMap<String, String>,
    pub pending: BTreeMap<String, String>,
    pub pending_delete: BTreeSet<String>,
    pub power: Power,
    pub started_at: u64,
    /// Incremented on every start/stop so stale boot timers can tell.
    pub generation: u64,
    pub booted: bool,
    /// disk key -> source volume id it was imported from.
    pub imported_from: BTreeMap<String, String>,
    pub appliance: Option<Arc<dyn GuestAppliance>>,
    pub exec: HashMap<i64, ExecRecord>,
    pub next_pid: i64,
    /// DHCP-style IPv4 per NIC index.
    pub dhcp: BTreeMap<u32, Ipv4Addr>,
}

#[derive(Debug, Clone)]
pub(crate) struct ExecRecord {
    pub exited: bool,
    pub exitcode: i32,
    pub out: String,
    pub err: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Volume {
    pub volid: String,
    pub storage: String,
    pub node: String,
    pub content: String,
    pub format: String,
    pub size: u64,
    pub ctime: u64,
    pub vmid: Option<u32>,
    pub data: Option<Arc<Vec<u8>>>,
    pub source_url: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub upid: String,
    pub node: String,
    pub ttype: String,
    pub id: String,
    pub user: String,
    pub pid: u32,
    pub pstart: u64,
    pub starttime: u64,
    pub endtime: Option<u64>,
    pub exitstatus: Option<String>,
    pub log: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct NodeNet {
    /// Applied configuration.
    pub active: BTreeMap<String, Map<String, Value>>,
    /// Staged configuration (what `interfaces.new` would hold); `None` = no pending changes.
    pub staged: Option<BTreeMap<String, Map<String, Value>>>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Sdn {
    pub zones: BTreeMap<String, Map<String, Value>>,
    pub vnets: BTreeMap<String, Map<String, Value>>,
    /// subnet id (`zone-10.0.0.0-24`) -> object (includes `vnet`)
    pub subnets: BTreeMap<String, Map<String, Value>>,
    /// Applied (zones, vnets, subnets), set by `PUT /cluster/sdn`.
    pub running: Option<Box<SdnSnapshot>>,
}

pub(crate) type Objects = BTreeMap<String, Map<String, Value>>;
pub(crate) type SdnSnapshot = (Objects, Objects, Objects);
/// (comment, rules)
pub(crate) type SecurityGroup = (Option<String>, Vec<Map<String, Value>>);
/// (comment, entries)
pub(crate) type IpSet = (Option<String>, Vec<Map<String, Value>>);

#[derive(Debug, Clone, Default)]
pub(crate) struct Firewall {
    pub options: Map<String, Value>,
    pub rules: Vec<Map<String, Value>>,
    pub ipsets: BTreeMap<String, IpSet>,
    /// Security groups (cluster only): name -> (comment, rules).
    pub groups: BTreeMap<String, SecurityGroup>,
    /// IP aliases (cluster only): name -> {name, cidr, comment}.
    pub aliases: BTreeMap<String, Map<String, Value>>,
}

/// A connection the host firewall did not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallRefusal {
    /// The client's address.
    pub source: std::net::IpAddr,
    /// `DROP` (silence) or `REJECT` (TCP reset).
    pub verdict: &'static str,
}

/// A request as received (for contract tests and API-call counting).
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    /// Matched schema template, if any.
    pub template: Option<String>,
    /// Parameter names and values (secrets redacted).
    pub params: BTreeMap<String, String>,
    pub status: u16,
    pub user: Option<String>,
}

/// A response that did not match the endpoint's `returns`.
#[derive(Debug, Clone)]
pub struct ResponseViolation {
    pub method: String,
    pub path: String,
    pub template: String,
    pub errors: ErrorMap,
    pub data: Value,
}

/// A VM as seen from outside.
#[derive(Debug, Clone)]
pub struct VmSnapshot {
    pub vmid: u32,
    pub node: String,
    pub config: BTreeMap<String, String>,
    pub pending: BTreeMap<String, String>,
    pub running: bool,
    pub booted: bool,
    pub appliance: Option<String>,
}

/// A storage volume as seen from outside.
#[derive(Debug, Clone)]
pub struct VolumeSnapshot {
    pub volid: String,
    pub node: String,
    pub content: String,
    pub size: u64,
    pub vmid: Option<u32>,
    pub source_url: Option<String>,
    pub has_data: bool,
}

/// A task as seen from outside.
#[derive(Debug, Clone)]
pub struct TaskSnapshot {
    pub upid: String,
    pub ttype: String,
    pub id: String,
    pub running: bool,
    pub exitstatus: Option<String>,
    pub log: Vec<String>,
}

pub(crate) struct State {
    pub vms: BTreeMap<u32, Vm>,
    pub volumes: BTreeMap<(String, String), Volume>,
    pub tasks: Vec<Task>,
    pub net: BTreeMap<String, NodeNet>,
    pub sdn: Sdn,
    pub fw_cluster: Firewall,
    pub fw_nodes: BTreeMap<String, Firewall>,
    pub fw_vms: BTreeMap<u32, Firewall>,
    pub downloads: Vec<String>,
    pub next_task_pid: u32,
    pub dhcp_next: u32,
    pub requests: Vec<RequestRecord>,
    pub violations: Vec<ResponseViolation>,
    pub faults: FaultState,
    /// Users, tokens, roles and ACLs.
    pub access: AccessState,
    /// Connections the host firewall dropped or rejected.
    pub fw_refused: Vec<FirewallRefusal>,
}

pub(crate) struct Shared {
    pub cfg: EmulatorConfig,
    pub schema: Arc<ApiSchema>,
    pub state: Mutex<State>,
    pub vm_locks: Mutex<HashMap<u32, Arc<tokio::sync::Mutex<()>>>>,
    /// Cluster-wide storage allocation locks (`cfs-lock 'storage-ID'`).
    pub storage_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub appliances: ApplianceRegistry,
    pub ticket_secret: String,
    connections: AtomicU64,
}

impl Shared {
    pub fn new(cfg: EmulatorConfig, schema: Arc<ApiSchema>) -> Self {
        let mut net = BTreeMap::new();
        for n in &cfg.nodes {
            let mut nn = NodeNet::default();
            let mut eth = Map::new();
            eth.insert("iface".into(), "eno1".into());
            eth.insert("type".into(), "eth".into());
            eth.insert("method".into(), "manual".into());
            eth.insert("method6".into(), "manual".into());
            eth.insert("families".into(), Value::Array(vec!["inet".into()]));
            eth.insert("priority".into(), 2.into());
            eth.insert("exists".into(), 1.into());
            nn.active.insert("eno1".into(), eth);
            for (i, b) in cfg.bridges.iter().enumerate() {
                let mut br = Map::new();
                br.insert("iface".into(), b.clone().into());
                br.insert("type".into(), "bridge".into());
                br.insert("method6".into(), "manual".into());
                br.insert("families".into(), Value::Array(vec!["inet".into()]));
                br.insert("autostart".into(), 1.into());
                br.insert("priority".into(), (3 + i as i64).into());
                if i == 0 {
                    br.insert("method".into(), "static".into());
                    br.insert("bridge_ports".into(), "eno1".into());
                    br.insert("cidr".into(), "192.0.2.10/24".into());
                    br.insert("address".into(), "192.0.2.10".into());
                    br.insert("netmask".into(), "255.255.255.0".into());
                    br.insert("gateway".into(), "192.0.2.1".into());
                } else {
                    br.insert("method".into(), "manual".into());
                }
                nn.active.insert(b.clone(), br);
            }
            net.insert(n.clone(), nn);
        }
        let mut fw_nodes = BTreeMap::new();
        for n in &cfg.nodes {
            fw_nodes.insert(n.clone(), Firewall::default());
        }
        let faults = FaultState::new(cfg.faults.clone());
        let secret = {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(format!("{:?}{}", std::time::Instant::now(), std::process::id()).as_bytes());
            hex::encode(h.finalize())
        };
        let access = AccessState::from_config(&cfg.tokens, &cfg.users);
        Self {
            cfg,
            schema,
            state: Mutex::new(State {
                vms: BTreeMap::new(),
                volumes: BTreeMap::new(),
                tasks: Vec::new(),
                net,
                sdn: Sdn::default(),
                fw_cluster: Firewall::default(),
                fw_nodes,
                fw_vms: BTreeMap::new(),
                downloads: Vec::new(),
                next_task_pid: 0x1000,
                dhcp_next: 0,
                requests: Vec::new(),
                violations: Vec::new(),
                faults,
                access,
                fw_refused: Vec::new(),
            }),
            vm_locks: Mutex::new(HashMap::new()),
            storage_locks: Mutex::new(HashMap::new()),
            appliances: ApplianceRegistry::with_defaults(),
            ticket_secret: secret,
            connections: AtomicU64::new(0),
        }
    }

    /// Lock the state (poisoning is survivable: the data is still consistent enough for tests).
    pub fn st(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn vm_lock(&self, vmid: u32) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = match self.vm_locks.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        m.entry(vmid).or_default().clone()
    }

    pub fn storage_lock(&self, storage: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = match self.storage_locks.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        m.entry(storage.to_string()).or_default().clone()
    }

    pub fn conn_accepted(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    pub fn set_faults(&self, f: FaultConfig) {
        self.st().faults = FaultState::new(f);
    }
    pub fn fault_log(&self) -> Vec<FaultEvent> {
        self.st().faults.log.clone()
    }
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.st().requests.clone()
    }
    pub fn clear_request_log(&self) {
        self.st().requests.clear();
    }
    pub fn violations(&self) -> Vec<ResponseViolation> {
        self.st().violations.clone()
    }
    pub fn downloads(&self) -> Vec<String> {
        self.st().downloads.clone()
    }
    pub fn appliance_of(&self, vmid: u32) -> Option<Arc<dyn GuestAppliance>> {
        self.st().vms.get(&vmid).and_then(|v| v.appliance.clone())
    }
    pub fn vm_snapshots(&self) -> Vec<VmSnapshot> {
        self.st()
            .vms
            .values()
            .map(|v| VmSnapshot {
                vmid: v.vmid,
                node: v.node.clone(),
                config: v.config.clone(),
                pending: v.pending.clone(),
                running: v.power == Power::Running,
                booted: v.booted,
                appliance: v.appliance.as_ref().map(|a| a.kind().to_string()),
            })
            .collect()
    }
    pub fn volume_snapshots(&self) -> Vec<VolumeSnapshot> {
        self.st()
            .volumes
            .values()
            .map(|v| VolumeSnapshot {
                volid: v.volid.clone(),
                node: v.node.clone(),
                content: v.content.clone(),
                size: v.size,
                vmid: v.vmid,
                source_url: v.source_url.clone(),
                has_data: v.data.is_some(),
            })
            .collect()
    }
    pub fn task_snapshots(&self) -> Vec<TaskSnapshot> {
        self.st()
            .tasks
            .iter()
            .map(|t| TaskSnapshot {
                upid: t.upid.clone(),
                ttype: t.ttype.clone(),
                id: t.id.clone(),
                running: t.exitstatus.is_none(),
                exitstatus: t.exitstatus.clone(),
                log: t.log.clone(),
            })
            .collect()
    }
}

/// Digest of a config map (PVE uses SHA-1 of the config file; any stable hex works).
pub(crate) fn digest_of<K: std::fmt::Display, V: std::fmt::Display>(
    items: impl IntoIterator<Item = (K, V)>,
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (k, v) in items {
        h.update(format!("{k}: {v}\n").as_bytes());
    }
    hex::encode(&h.finalize()[..20])
}
