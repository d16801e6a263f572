//! A Proxmox VE 9 API emulator held to the official API schema.
//!
//! Start one with [`PveEmulator::start`] and an [`EmulatorConfig`] (see
//! [`EmulatorConfig::builder`]). It serves HTTPS (`/api2/json/...`) on a 127.10.x.y loopback
//! address with its own CA ([`PveEmulator::ca_pem`]), checks API-token and ticket auth with the
//! CSRF rule and per-endpoint privileges, validates every request against
//! `apischema.json` (refusing with 400 + `errors` like PVE), keeps cluster state (nodes,
//! storages, VMs with config/pending/power state, UPID tasks, network, SDN, firewall) and runs
//! programmable guests ([`GuestAppliance`]) when VMs boot. Faults are injected
//! deterministically by seed ([`FaultConfig`]).
//!
//! ```ignore
//! use waddle_acceptance::pve::*;
//! let emu = PveEmulator::start(
//!     EmulatorConfig::builder()
//!         .timings(Timings::fast())                       // ms instead of seconds
//!         .nodes(&["pve1", "pve2"])
//!         .token(TokenSpec::with_privileges("ro@pve", "t", "secret", &[("/vms", &["VM.Audit"])]))
//!         .faults(FaultConfig::new(42).with("POST /nodes/{node}/qemu", FaultKind::LockTimeout, 0.2))
//!         .build(),
//! ).await?;
//! let base = emu.endpoint();          // https://127.10.0.1:PORT  (+ /api2/json/...)
//! let ca = emu.ca_pem();              // pin as ca_cert
//! let token = emu.api_token();        // Some("root@pam!waddle=...")
//! emu.appliances().register(my_factory);   // e.g. the Talos emulator
//! emu.set_faults(FaultConfig::default());
//! assert!(emu.response_violations().is_empty());
//! let calls = emu.request_log();      // every request: method, path, template, params, status
//! let vms = emu.vms();                // config, pending, running/booted, appliance kind
//! ```

mod access;
mod auth;
pub mod cloudinit;
mod faults;
mod firewall;
mod guest;
mod handlers;
mod iso;
mod server;
mod shell;
mod state;
pub(crate) mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub use access::random_token_value;
pub use auth::{TokenSpec, UserSpec, ALL_PRIVILEGES};
pub use faults::{FaultConfig, FaultEvent, FaultKind, FaultRule};
pub use firewall::Verdict as FirewallVerdict;
pub use guest::{
    ApplianceFactory, ApplianceRegistry, AttachedMedia, BootImage, DebianAppliance, DebianFactory,
    ExecOutcome, GuestAppliance, GuestContext, GuestInterface,
};
pub use iso::{read_iso_files, IsoError, IsoImage};
pub use state::{
    FirewallRefusal, RequestRecord, ResponseViolation, TaskSnapshot, VmSnapshot, VolumeSnapshot,
};

use crate::spec::ApiSchema;

/// Errors starting the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("schema: {0}")]
    Schema(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("config: {0}")]
    Config(String),
}

/// A storage definition (present on every node unless `nodes` is set).
#[derive(Debug, Clone)]
pub struct StorageSpec {
    pub id: String,
    /// `dir`, `lvmthin`, `zfspool`, ...
    pub kind: String,
    /// Content types, e.g. `["iso", "import", "vztmpl", "backup"]`.
    pub content: Vec<String>,
    pub shared: bool,
    /// Total size in bytes.
    pub total: u64,
    /// Restrict to these nodes (empty = all).
    pub nodes: Vec<String>,
}

impl StorageSpec {
    pub fn new(id: &str, kind: &str, content: &[&str]) -> Self {
        Self {
            id: id.to_string(),
            kind: kind.to_string(),
            content: content.iter().map(|s| s.to_string()).collect(),
            shared: false,
            total: 100 * 1024 * 1024 * 1024,
            nodes: Vec::new(),
        }
    }
}

/// Timings (all configurable so tests stay fast).
#[derive(Debug, Clone)]
pub struct Timings {
    /// Idle keep-alive connections are closed after this (PVE: 5 s).
    pub idle_timeout: Duration,
    /// How long a request waits for a VM config lock before "got timeout" (PVE: 10 s).
    pub lock_timeout: Duration,
    /// How long a config write holds the VM lock.
    pub config_write: Duration,
    /// Duration of short worker tasks (create, start, stop, delete, apply).
    pub task: Duration,
    /// download-url duration.
    pub download: Duration,
    /// From start until the guest has booted (agent can answer).
    pub boot: Duration,
    /// Clean shutdown duration.
    pub shutdown: Duration,
    /// How long a create holds the cluster-wide allocation lock of each target storage
    /// (PVE's `cfs_lock_storage` around `vdisk_alloc`; the import copy runs after it).
    pub storage_alloc: Duration,
    /// How long a create waits for that lock before failing with
    /// `cfs-lock 'storage-local-lvm' error: got lock request timeout`.
    pub storage_lock_timeout: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(10),
            config_write: Duration::from_millis(20),
            task: Duration::from_millis(50),
            download: Duration::from_millis(200),
            boot: Duration::from_millis(500),
            shutdown: Duration::from_millis(100),
            storage_alloc: Duration::from_millis(10),
            storage_lock_timeout: Duration::from_secs(10),
        }
    }
}

impl Timings {
    /// Very short timings for tests (idle timeout 300 ms, lock timeout 1 s, boot 150 ms).
    pub fn fast() -> Self {
        Self {
            idle_timeout: Duration::from_millis(300),
            lock_timeout: Duration::from_secs(1),
            config_write: Duration::from_millis(5),
            task: Duration::from_millis(10),
            download: Duration::from_millis(30),
            boot: Duration::from_millis(150),
            shutdown: Duration::from_millis(20),
            storage_alloc: Duration::from_millis(2),
            storage_lock_timeout: Duration::from_secs(5),
        }
    }
}

/// Emulator configuration. Build with [`EmulatorConfig::builder`].
#[derive(Clone)]
pub struct EmulatorConfig {
    /// Listen address (loopback only; default `127.10.0.1:0`).
    pub listen: SocketAddr,
    pub cluster_name: String,
    pub nodes: Vec<String>,
    pub storages: Vec<StorageSpec>,
    /// Bridges present (and active) on every node.
    pub bridges: Vec<String>,
    pub tokens: Vec<TokenSpec>,
    pub users: Vec<UserSpec>,
    pub timings: Timings,
    pub faults: FaultConfig,
    /// Validate every response against `returns` and record violations.
    pub validate_responses: bool,
    /// First address handed out by the emulated DHCP (reported by the guest agent).
    pub dhcp_pool_start: Ipv4Addr,
    /// Bridges with a DHCP server outside Proxmox (e.g. the LAN's router). A NIC gets a
    /// DHCP lease only on one of these or on an SDN vnet whose zone runs DHCP and whose
    /// subnet has a `dhcp-range`; on every other bridge a guest has only the addresses its
    /// own (NoCloud) network configuration gives it. Default: none.
    pub dhcp_bridges: Vec<String>,
    /// Default virtual size of an imported disk image (bytes) when nothing else is known.
    pub default_image_size: u64,
    /// Maximum request body size (uploads).
    pub max_body: usize,
    /// Path to a haproxy binary for the Debian appliance (auto-detected when `None`).
    pub haproxy_binary: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("listen", &self.listen)
            .field("nodes", &self.nodes)
            .field("storages", &self.storages)
            .field("bridges", &self.bridges)
            .field("tokens", &self.tokens)
            .field("users", &self.users)
            .field("timings", &self.timings)
            .field("faults", &self.faults)
            .finish()
    }
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 10, 0, 1)), 0),
            cluster_name: "waddle".into(),
            nodes: vec!["pve".into()],
            storages: vec![
                StorageSpec::new(
                    "local",
                    "dir",
                    &["iso", "import", "vztmpl", "backup", "snippets"],
                ),
                StorageSpec::new("local-lvm", "lvmthin", &["images", "rootdir"]),
            ],
            bridges: vec!["vmbr0".into()],
            tokens: vec![TokenSpec::full(
                "root@pam",
                "waddle",
                "waddle-sandbox-secret",
            )],
            users: vec![],
            timings: Timings::default(),
            faults: FaultConfig::default(),
            validate_responses: true,
            dhcp_pool_start: Ipv4Addr::new(127, 10, 254, 10),
            dhcp_bridges: Vec::new(),
            default_image_size: 2 * 1024 * 1024 * 1024,
            max_body: 512 * 1024 * 1024,
            haproxy_binary: None,
        }
    }
}

impl EmulatorConfig {
    /// Start from the sandbox defaults: node `pve`, storages `local`
    /// (iso,import,vztmpl,backup,snippets) and `local-lvm` (images,rootdir), bridge `vmbr0`,
    /// token `root@pam!waddle` with every privilege.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder {
            cfg: EmulatorConfig::default(),
        }
    }
}

/// Builder for [`EmulatorConfig`].
#[derive(Debug, Clone)]
pub struct EmulatorBuilder {
    cfg: EmulatorConfig,
}

impl EmulatorBuilder {
    /// Listen on this address (must be loopback).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.cfg.listen = addr;
        self
    }
    /// Listen on this IP, ephemeral port.
    pub fn ip(mut self, ip: Ipv4Addr) -> Self {
        self.cfg.listen = SocketAddr::new(IpAddr::V4(ip), 0);
        self
    }
    /// Replace the node list.
    pub fn nodes(mut self, nodes: &[&str]) -> Self {
        self.cfg.nodes = nodes.iter().map(|s| s.to_string()).collect();
        self
    }
    /// Add a storage.
    pub fn storage(mut self, s: StorageSpec) -> Self {
        self.cfg.storages.retain(|x| x.id != s.id);
        self.cfg.storages.push(s);
        self
    }
    /// Add a bridge.
    pub fn bridge(mut self, name: &str) -> Self {
        self.cfg.bridges.push(name.to_string());
        self
    }
    /// Replace all tokens.
    pub fn tokens(mut self, tokens: Vec<TokenSpec>) -> Self {
        self.cfg.tokens = tokens;
        self
    }
    /// Add a token.
    pub fn token(mut self, t: TokenSpec) -> Self {
        self.cfg.tokens.push(t);
        self
    }
    /// Add a user (for ticket auth).
    pub fn user(mut self, u: UserSpec) -> Self {
        self.cfg.users.push(u);
        self
    }
    pub fn timings(mut self, t: Timings) -> Self {
        self.cfg.timings = t;
        self
    }
    pub fn faults(mut self, f: FaultConfig) -> Self {
        self.cfg.faults = f;
        self
    }
    pub fn validate_responses(mut self, on: bool) -> Self {
        self.cfg.validate_responses = on;
        self
    }
    pub fn dhcp_pool_start(mut self, ip: Ipv4Addr) -> Self {
        self.cfg.dhcp_pool_start = ip;
        self
    }
    /// Flag `bridge` as having an outside DHCP server ([`EmulatorConfig::dhcp_bridges`]).
    pub fn dhcp_bridge(mut self, bridge: &str) -> Self {
        self.cfg.dhcp_bridges.push(bridge.to_string());
        self
    }
    pub fn default_image_size(mut self, bytes: u64) -> Self {
        self.cfg.default_image_size = bytes;
        self
    }
    pub fn haproxy_binary(mut self, p: std::path::PathBuf) -> Self {
        self.cfg.haproxy_binary = Some(p);
        self
    }
    pub fn build(self) -> EmulatorConfig {
        self.cfg
    }
}

/// A running emulator. Dropping it stops the server.
pub struct PveEmulator {
    addr: SocketAddr,
    ca_pem: String,
    shared: Arc<state::Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for PveEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PveEmulator")
            .field("addr", &self.addr)
            .finish()
    }
}

impl PveEmulator {
    /// Start serving. Must be called inside a tokio runtime.
    pub async fn start(cfg: EmulatorConfig) -> Result<Self, EmulatorError> {
        if !cfg.listen.ip().is_loopback() {
            return Err(EmulatorError::Config(format!(
                "refusing to listen on non-loopback address {}",
                cfg.listen
            )));
        }
        if cfg.nodes.is_empty() {
            return Err(EmulatorError::Config(
                "at least one node is required".into(),
            ));
        }
        let schema = ApiSchema::shared().map_err(EmulatorError::Schema)?;
        let mut names = vec!["localhost".to_string()];
        names.extend(cfg.nodes.iter().cloned());
        let tls = tls::ServerTls::generate(cfg.listen.ip(), &names)?;
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| EmulatorError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let haproxy = cfg.haproxy_binary.clone();
        let shared = Arc::new(state::Shared::new(cfg, schema));
        if haproxy.is_some() {
            shared.appliances.set_haproxy(haproxy);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let join = tokio::spawn(server::serve(
            listener,
            tls.acceptor.clone(),
            shared.clone(),
            rx,
        ));
        Ok(Self {
            addr,
            ca_pem: tls.ca_pem,
            shared,
            shutdown: Some(tx),
            join: Some(join),
        })
    }

    /// `https://IP:PORT` (append `/api2/json/...`).
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }
    /// Socket address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// PEM of the emulator's self-signed CA (pin it as `ca_cert`).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
    /// The first configured token as `USER@REALM!TOKENID=SECRET`.
    pub fn api_token(&self) -> Option<String> {
        self.shared.cfg.tokens.first().map(TokenSpec::header_value)
    }
    /// First node name.
    pub fn node(&self) -> &str {
        &self.shared.cfg.nodes[0]
    }
    /// Replace the fault configuration (resets fault counters).
    pub fn set_faults(&self, faults: FaultConfig) {
        self.shared.set_faults(faults);
    }
    /// Faults injected so far.
    pub fn fault_log(&self) -> Vec<FaultEvent> {
        self.shared.fault_log()
    }
    /// Guest appliance registry (register Talos etc. here).
    pub fn appliances(&self) -> &ApplianceRegistry {
        &self.shared.appliances
    }
    /// Every request received (method, path, template, parameter names, status).
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared.request_log()
    }
    /// Clear the request log.
    pub fn clear_request_log(&self) {
        self.shared.clear_request_log();
    }
    /// Responses that did not match the schema's `returns` (should stay empty).
    pub fn response_violations(&self) -> Vec<ResponseViolation> {
        self.shared.violations()
    }
    /// All VMs.
    pub fn vms(&self) -> Vec<VmSnapshot> {
        self.shared.vm_snapshots()
    }
    /// One VM.
    pub fn vm(&self, vmid: u32) -> Option<VmSnapshot> {
        self.shared
            .vm_snapshots()
            .into_iter()
            .find(|v| v.vmid == vmid)
    }
    /// The VMIDs of [`Self::vms`], in the same order.
    pub fn vmids(&self) -> Vec<u32> {
        self.vms().iter().map(|v| v.vmid).collect()
    }
    /// All storage volumes.
    pub fn volumes(&self) -> Vec<VolumeSnapshot> {
        self.shared.volume_snapshots()
    }
    /// The volume ids of the volumes whose content is `content` (`iso` for seed ISOs,
    /// `import` for downloaded disk images, `images` for VM disks), in the order of
    /// [`Self::volumes`].
    pub fn volids(&self, content: &str) -> Vec<String> {
        self.volumes()
            .into_iter()
            .filter(|v| v.content == content)
            .map(|v| v.volid)
            .collect()
    }
    /// The bytes of a volume that has data (an uploaded ISO), by volume id.
    pub fn volume_data(&self, volid: &str) -> Option<Vec<u8>> {
        self.shared
            .st()
            .volumes
            .values()
            .find(|v| v.volid == volid)
            .and_then(|v| v.data.as_ref().map(|d| d.as_ref().clone()))
    }
    /// All tasks.
    pub fn tasks(&self) -> Vec<TaskSnapshot> {
        self.shared.task_snapshots()
    }
    /// URLs passed to download-url (nothing is fetched).
    pub fn downloads(&self) -> Vec<String> {
        self.shared.downloads()
    }
    /// The appliance running in a VM (after first boot).
    pub fn appliance(&self, vmid: u32) -> Option<Arc<dyn GuestAppliance>> {
        self.shared.appliance_of(vmid)
    }
    /// Connections the emulated host firewall dropped or rejected (source and verdict).
    pub fn firewall_refusals(&self) -> Vec<FirewallRefusal> {
        self.shared.st().fw_refused.clone()
    }
    /// Number of TCP connections accepted so far.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections()
    }
    /// Stop serving and wait for the accept loop to end.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(j) = self.join.take() {
            let _ = j.await;
        }
    }
}

impl Drop for PveEmulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
