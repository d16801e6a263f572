//! Programmable guests: what runs inside an emulated VM once it has booted.
//!
//! An [`ApplianceRegistry`] picks an appliance for a VM at its first boot from the VM's boot
//! image (the volume a disk was imported from, its download URL), tags and config. Later
//! registrations win. The built-in [`DebianFactory`] matches Debian images; everything else
//! falls back to a generic Debian-like guest with the guest agent preinstalled.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use serde_json::Value;

use super::cloudinit::{is_cloudinit_drive, render_nocloud, NoCloudFiles};
use super::iso::read_iso_files;
use super::shell::{self, Join};

/// A network interface as the guest agent reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestInterface {
    pub name: String,
    /// Lower-case `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub ipv4: Vec<(Ipv4Addr, u8)>,
    pub ipv6: Vec<(String, u8)>,
}

/// Result of a guest-agent `exec`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecOutcome {
    pub exitcode: i32,
    pub stdout: String,
    pub stderr: String,
}

impl ExecOutcome {
    pub fn ok(out: impl Into<String>) -> Self {
        Self {
            exitcode: 0,
            stdout: out.into(),
            stderr: String::new(),
        }
    }
    pub fn fail(code: i32, err: impl Into<String>) -> Self {
        Self {
            exitcode: code,
            stdout: String::new(),
            stderr: err.into(),
        }
    }
}

/// A CD-ROM / disk attached to the VM, with the bytes when the volume was uploaded.
#[derive(Clone)]
pub struct AttachedMedia {
    /// Config key (`ide2`, `ide0`, `sata0`...).
    pub key: String,
    pub volid: String,
    pub data: Option<Arc<Vec<u8>>>,
}

impl std::fmt::Debug for AttachedMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedMedia")
            .field("key", &self.key)
            .field("volid", &self.volid)
            .field("bytes", &self.data.as_ref().map(|d| d.len()))
            .finish()
    }
}

/// The image a VM boots from: the source of an `import-from` disk or a boot ISO.
#[derive(Debug, Clone)]
pub struct BootImage {
    /// Disk key (`scsi0`) or cdrom key.
    pub disk: String,
    /// Source volume id (`local:import/debian-12-genericcloud-amd64.qcow2`).
    pub volid: String,
    /// URL given to download-url for that volume, if any.
    pub source_url: Option<String>,
}

/// What an appliance knows about its VM.
#[derive(Debug, Clone)]
pub struct GuestContext {
    pub vmid: u32,
    pub node: String,
    pub name: Option<String>,
    pub config: BTreeMap<String, String>,
    pub tags: Vec<String>,
    /// NIC index -> MAC (upper case as in the config).
    pub macs: BTreeMap<u32, String>,
    /// NIC index -> emulated DHCP lease.
    pub dhcp: BTreeMap<u32, Ipv4Addr>,
    pub boot_image: Option<BootImage>,
    pub media: Vec<AttachedMedia>,
}

impl GuestContext {
    /// Lower-cased text identifying the boot image (volume id + URL) for matching.
    pub fn image_hint(&self) -> String {
        let mut s = String::new();
        if let Some(b) = &self.boot_image {
            s.push_str(&b.volid);
            s.push(' ');
            if let Some(u) = &b.source_url {
                s.push_str(u);
            }
        }
        for m in &self.media {
            s.push(' ');
            s.push_str(&m.volid);
        }
        s.to_ascii_lowercase()
    }

    /// The NoCloud data source a guest finds, as cloud-init and Talos's `nocloud` platform
    /// look for it: the first attached drive (by config key) that is a PVE cloud-init drive
    /// of type `nocloud` (rendered from the VM's config, [`super::cloudinit`]) or an uploaded
    /// ISO labelled `cidata`/`CIDATA`. Returns its files by name.
    pub fn nocloud_files(&self) -> Option<NoCloudFiles> {
        let mut media: Vec<&AttachedMedia> = self.media.iter().collect();
        media.sort_by(|a, b| a.key.cmp(&b.key));
        media.into_iter().find_map(|m| {
            if is_cloudinit_drive(&m.volid) {
                return render_nocloud(self.vmid, &self.config);
            }
            let iso = read_iso_files(m.data.as_ref()?).ok()?;
            iso.volume_id
                .eq_ignore_ascii_case("cidata")
                .then_some(iso.files)
        })
    }

    /// Interfaces with the DHCP leases (`eth0`.. plus `lo`).
    pub fn default_interfaces(&self) -> Vec<GuestInterface> {
        let mut out = vec![GuestInterface {
            name: "lo".into(),
            mac: "00:00:00:00:00:00".into(),
            ipv4: vec![(Ipv4Addr::LOCALHOST, 8)],
            ipv6: vec![("::1".into(), 128)],
        }];
        for (i, mac) in &self.macs {
            let mut ipv4 = Vec::new();
            if let Some(ip) = self.dhcp.get(i) {
                ipv4.push((*ip, 24));
            }
            out.push(GuestInterface {
                name: format!("eth{i}"),
                mac: mac.to_ascii_lowercase(),
                ipv4,
                ipv6: vec![(link_local(mac), 64)],
            });
        }
        out
    }
}

fn link_local(mac: &str) -> String {
    let b: Vec<u8> = mac
        .split(':')
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    if b.len() != 6 {
        return "fe80::1".into();
    }
    format!(
        "fe80::{:02x}{:02x}:{:02x}ff:fe{:02x}:{:02x}{:02x}",
        b[0] ^ 2,
        b[1],
        b[2],
        b[3],
        b[4],
        b[5]
    )
}

/// A simulated guest OS.
#[async_trait]
pub trait GuestAppliance: Send + Sync + 'static {
    /// Short name (`debian`, `talos`, ...).
    fn kind(&self) -> &str;
    /// Called once the boot delay has passed (every boot). An error is logged; the VM
    /// stays running without an answering agent.
    async fn boot(&self, ctx: &GuestContext) -> Result<(), String>;
    /// ACPI shutdown / stop.
    async fn shutdown(&self, _ctx: &GuestContext) {}
    /// Whether the QEMU guest agent runs in the guest (after boot).
    fn agent_running(&self) -> bool {
        true
    }
    /// Interfaces for `network-get-interfaces`.
    fn interfaces(&self, ctx: &GuestContext) -> Vec<GuestInterface> {
        ctx.default_interfaces()
    }
    /// Guest-agent `exec`.
    async fn exec(
        &self,
        _ctx: &GuestContext,
        argv: &[String],
        _input: Option<&[u8]>,
    ) -> ExecOutcome {
        ExecOutcome::fail(
            127,
            format!(
                "{}: command not found\n",
                argv.first().map(String::as_str).unwrap_or("")
            ),
        )
    }
    /// Guest-agent `file-write`.
    async fn file_write(
        &self,
        _ctx: &GuestContext,
        path: &str,
        _data: &[u8],
    ) -> Result<(), String> {
        Err(format!("cannot write {path}"))
    }
    /// Guest-agent `file-read`.
    async fn file_read(&self, _ctx: &GuestContext, path: &str) -> Result<Vec<u8>, String> {
        Err(format!("cannot read {path}"))
    }
    /// For downcasting in tests.
    fn as_any(&self) -> &dyn Any;
}

/// Creates appliances for VMs it recognises.
pub trait ApplianceFactory: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn matches(&self, ctx: &GuestContext) -> bool;
    fn create(&self, ctx: &GuestContext) -> Arc<dyn GuestAppliance>;
}

/// Ordered appliance factories (latest registration first), with a generic fallback.
pub struct ApplianceRegistry {
    factories: RwLock<Vec<Arc<dyn ApplianceFactory>>>,
    haproxy: RwLock<Option<PathBuf>>,
}

impl std::fmt::Debug for ApplianceRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .factories
            .read()
            .map(|v| v.iter().map(|f| f.name().to_string()).collect())
            .unwrap_or_default();
        f.debug_struct("ApplianceRegistry")
            .field("factories", &names)
            .finish()
    }
}

impl ApplianceRegistry {
    pub(crate) fn with_defaults() -> Self {
        let haproxy = find_haproxy();
        Self {
            factories: RwLock::new(vec![Arc::new(DebianFactory {
                haproxy: haproxy.clone(),
            })]),
            haproxy: RwLock::new(haproxy),
        }
    }

    pub(crate) fn set_haproxy(&self, p: Option<PathBuf>) {
        if let Ok(mut h) = self.haproxy.write() {
            *h = p.clone();
        }
        if let Ok(mut f) = self.factories.write() {
            f.retain(|x| x.name() != "debian");
            f.push(Arc::new(DebianFactory { haproxy: p }));
        }
    }

    /// Register a factory; it is consulted before the ones registered earlier.
    pub fn register(&self, f: Arc<dyn ApplianceFactory>) {
        if let Ok(mut v) = self.factories.write() {
            v.insert(0, f);
        }
    }

    /// Names of the registered factories, in lookup order.
    pub fn names(&self) -> Vec<String> {
        self.factories
            .read()
            .map(|v| v.iter().map(|f| f.name().to_string()).collect())
            .unwrap_or_default()
    }

    /// Pick and create the appliance for a VM.
    pub fn select(&self, ctx: &GuestContext) -> Arc<dyn GuestAppliance> {
        if let Ok(v) = self.factories.read() {
            for f in v.iter() {
                if f.matches(ctx) {
                    return f.create(ctx);
                }
            }
        }
        let haproxy = self.haproxy.read().ok().and_then(|h| h.clone());
        Arc::new(DebianAppliance::new(true, haproxy, "generic"))
    }
}

fn find_haproxy() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("WADDLE_HAPROXY") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Some(p);
        }
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain([
        "/usr/sbin",
        "/usr/local/sbin",
        "/sbin",
    ]) {
        let p = Path::new(dir).join("haproxy");
        if p.is_file() {
            return Some(p);
        }
    }
    None
}

/// Matches Debian cloud images (`debian` in the image name or URL).
pub struct DebianFactory {
    haproxy: Option<PathBuf>,
}

impl ApplianceFactory for DebianFactory {
    fn name(&self) -> &str {
        "debian"
    }
    fn matches(&self, ctx: &GuestContext) -> bool {
        ctx.image_hint().contains("debian")
    }
    fn create(&self, _ctx: &GuestContext) -> Arc<dyn GuestAppliance> {
        Arc::new(DebianAppliance::new(false, self.haproxy.clone(), "debian"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Active,
    Inactive,
    Failed,
}

#[derive(Debug)]
struct Service {
    enabled: bool,
    state: Unit,
}

/// (lower-case MAC to match, or None to match by name; interface name; IPv4 addresses)
type StaticAddrs = (Option<String>, String, Vec<(Ipv4Addr, u8)>);

#[derive(Debug, Default)]
struct DebInner {
    packages: BTreeSet<String>,
    services: BTreeMap<String, Service>,
    provisioned: bool,
    cloud_init_status: String,
    cloud_init_errors: Vec<String>,
    users: Vec<String>,
    hostname: Option<String>,
    haproxy_loaded: Option<String>,
    /// Modes set by `install -m` and cloud-init `write_files` (guest path -> octal).
    modes: BTreeMap<String, String>,
    /// From network-config: (lower-case MAC or None, interface name, IPv4 addresses).
    static_addrs: Vec<StaticAddrs>,
}

/// A Debian 12 cloud image: applies NoCloud user-data from an attached `cidata` ISO at first
/// boot (write_files, packages, runcmd, users), and runs guest-agent commands against a
/// private root directory. `haproxy -c` runs the real haproxy binary when there is one.
pub struct DebianAppliance {
    kind: String,
    agent_preinstalled: bool,
    haproxy: Option<PathBuf>,
    root: tempfile::TempDir,
    inner: Mutex<DebInner>,
    /// Teleport, once installed from its apt repository (`crate::teleport`).
    teleport: crate::teleport::TeleportStandIn,
}

impl DebianAppliance {
    /// `agent_preinstalled`: whether qemu-guest-agent runs without being installed by
    /// cloud-init (Debian's genericcloud images do not ship it).
    pub fn new(agent_preinstalled: bool, haproxy: Option<PathBuf>, kind: &str) -> Self {
        let root = tempfile::Builder::new()
            .prefix("waddle-guest-")
            .tempdir()
            .unwrap_or_else(|_| {
                tempfile::TempDir::new_in(".")
                    .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"))
            });
        // The skeleton of a Debian root file system.
        for d in [
            "etc",
            "tmp",
            "var/log",
            "var/lib",
            "root",
            "home",
            "run",
            "usr/local/bin",
            "opt",
        ] {
            let _ = std::fs::create_dir_all(root.path().join(d));
        }
        Self {
            kind: kind.to_string(),
            agent_preinstalled,
            haproxy,
            root,
            teleport: Default::default(),
            inner: Mutex::new(DebInner {
                cloud_init_status: "not run".into(),
                ..Default::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DebInner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Host directory standing in for the guest's `/`.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
    /// Installed packages.
    pub fn packages(&self) -> BTreeSet<String> {
        self.lock().packages.clone()
    }
    /// `active` / `inactive` / `failed` / `unknown`.
    pub fn service_state(&self, name: &str) -> String {
        let name = name.trim_end_matches(".service");
        let died = name == "teleport" && !self.teleport.running();
        match self.lock().services.get(name) {
            // The unit was started but its process is gone (crashed or killed).
            Some(s) if s.state == Unit::Active && died => "failed".into(),
            Some(s) => match s.state {
                Unit::Active => "active",
                Unit::Inactive => "inactive",
                Unit::Failed => "failed",
            }
            .into(),
            None => "unknown".into(),
        }
    }
    /// SHA-256 of the haproxy.cfg haproxy last (re)loaded successfully.
    pub fn haproxy_loaded_sha256(&self) -> Option<String> {
        self.lock().haproxy_loaded.clone()
    }
    /// The Teleport stand-in of this guest.
    pub fn teleport(&self) -> &crate::teleport::TeleportStandIn {
        &self.teleport
    }
    /// The mode a file was given by `install -m` or cloud-init (`0600`), if any.
    pub fn file_mode(&self, guest: &str) -> Option<String> {
        self.lock().modes.get(guest).cloned()
    }
    /// Users created by cloud-init.
    pub fn users(&self) -> Vec<String> {
        self.lock().users.clone()
    }
    /// cloud-init status (`done`, `error`, `not run`).
    pub fn cloud_init_status(&self) -> String {
        self.lock().cloud_init_status.clone()
    }
    /// cloud-init errors.
    pub fn cloud_init_errors(&self) -> Vec<String> {
        self.lock().cloud_init_errors.clone()
    }
    /// Guest hostname.
    pub fn hostname(&self) -> Option<String> {
        self.lock().hostname.clone()
    }

    /// Map a guest path to the host.
    pub fn host_path(&self, guest: &str) -> Result<PathBuf, String> {
        if !guest.starts_with('/') {
            return Err(format!("{guest}: not an absolute path"));
        }
        let mut p = self.root.path().to_path_buf();
        for c in Path::new(guest).components() {
            match c {
                Component::Normal(x) => p.push(x),
                Component::RootDir | Component::CurDir => {}
                _ => return Err(format!("{guest}: invalid path")),
            }
        }
        Ok(p)
    }

    fn write_file(&self, guest: &str, data: &[u8], append: bool) -> Result<(), String> {
        let p = self.host_path(guest)?;
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{guest}: {e}"))?;
        }
        if append {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .map_err(|e| format!("{guest}: {e}"))?;
            f.write_all(data).map_err(|e| format!("{guest}: {e}"))
        } else {
            std::fs::write(&p, data).map_err(|e| format!("{guest}: {e}"))
        }
    }

    fn install(&self, pkg: &str) -> Result<(), String> {
        let known = [
            "haproxy",
            "qemu-guest-agent",
            "curl",
            "ca-certificates",
            "vim",
            "jq",
            "iptables",
            "nftables",
            "socat",
            "netcat-openbsd",
            "openssh-server",
        ];
        if !known.contains(&pkg) {
            return Err(format!("E: Unable to locate package {pkg}"));
        }
        let mut inner = self.lock();
        inner.packages.insert(pkg.to_string());
        match pkg {
            "haproxy" => {
                drop(inner);
                let cfg = "/etc/haproxy/haproxy.cfg";
                if !self.host_path(cfg).map(|p| p.exists()).unwrap_or(false) {
                    self.write_file(cfg, DEFAULT_HAPROXY_CFG.as_bytes(), false)?;
                }
                self.lock().services.insert(
                    "haproxy".into(),
                    Service {
                        enabled: true,
                        state: Unit::Inactive,
                    },
                );
                // The package's postinst starts the service.
                let _ = self.service_start("haproxy");
            }
            "qemu-guest-agent" => {
                inner.services.insert(
                    "qemu-guest-agent".into(),
                    Service {
                        enabled: true,
                        state: Unit::Active,
                    },
                );
            }
            _ => {}
        }
        Ok(())
    }

    fn haproxy_check(&self, files: &[String]) -> ExecOutcome {
        let Some(bin) = self.haproxy.clone() else {
            return ExecOutcome::fail(
                127,
                "haproxy: not available on the emulator host (install Debian's haproxy)\n",
            );
        };
        if files.is_empty() {
            return ExecOutcome::fail(1, "[ALERT] No configuration file specified.\n");
        }
        let root = self.root.path().to_string_lossy().to_string();
        let check_dir = self.root.path().join(".waddle-check");
        if let Err(e) = std::fs::create_dir_all(&check_dir) {
            return ExecOutcome::fail(1, format!("{e}\n"));
        }
        let mut args: Vec<String> = vec!["-c".into()];
        for (i, f) in files.iter().enumerate() {
            let host = match self.host_path(f) {
                Ok(h) => h,
                Err(e) => return ExecOutcome::fail(1, format!("[ALERT] {e}\n")),
            };
            let text = match std::fs::read_to_string(&host) {
                Ok(t) => t,
                Err(_) => {
                    return ExecOutcome::fail(
                        1,
                        format!("[ALERT]    (0) : Cannot open configuration file/directory {f} : No such file or directory\n"),
                    )
                }
            };
            let rewritten = self.rewrite_paths(&text);
            let copy = check_dir.join(format!("{i}.cfg"));
            if let Err(e) = std::fs::write(&copy, rewritten) {
                return ExecOutcome::fail(1, format!("{e}\n"));
            }
            args.push("-f".into());
            args.push(copy.to_string_lossy().to_string());
        }
        let out = std::process::Command::new(bin).args(&args).output();
        match out {
            Ok(o) => {
                let fix = |s: &[u8]| {
                    let mut t = String::from_utf8_lossy(s).replace(&root, "");
                    for (i, f) in files.iter().enumerate() {
                        t = t.replace(&format!("/.waddle-check/{i}.cfg"), f);
                    }
                    t
                };
                ExecOutcome {
                    exitcode: o.status.code().unwrap_or(1),
                    stdout: fix(&o.stdout),
                    stderr: fix(&o.stderr),
                }
            }
            Err(e) => ExecOutcome::fail(126, format!("haproxy: {e}\n")),
        }
    }

    /// Point absolute paths that exist in the guest at the guest root.
    fn rewrite_paths(&self, text: &str) -> String {
        // Any absolute path (also inside `map(...)`, `-f`, quotes) that exists in the guest.
        static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
        let re = RE.get_or_init(|| {
            regex::Regex::new(r"(^|[^A-Za-z0-9_.\-/])(/[A-Za-z0-9_.\-/]+)").expect("static regex")
        });
        let root = self.root.path().to_string_lossy().to_string();
        let mut out = String::with_capacity(text.len());
        for line in text.lines() {
            let replaced = re.replace_all(line, |c: &regex::Captures<'_>| {
                let path = &c[2];
                let exists =
                    path.len() > 1 && self.host_path(path).map(|p| p.exists()).unwrap_or(false);
                if exists {
                    format!("{}{root}{path}", &c[1])
                } else {
                    c[0].to_string()
                }
            });
            out.push_str(&replaced);
            out.push('\n');
        }
        out
    }

    fn service_check_config(&self, name: &str) -> Result<(), String> {
        if name == "teleport" {
            return self
                .teleport
                .start(self)
                .inspect_err(|_| self.teleport.stop());
        }
        if name == "haproxy" {
            let r = self.haproxy_check(&["/etc/haproxy/haproxy.cfg".to_string()]);
            if r.exitcode != 0 {
                return Err(r.stderr);
            }
        }
        Ok(())
    }

    fn hash_file(&self, guest: &str) -> Option<String> {
        use sha2::{Digest, Sha256};
        let data = std::fs::read(self.host_path(guest).ok()?).ok()?;
        Some(hex::encode(Sha256::digest(&data)))
    }

    fn service_start(&self, name: &str) -> ExecOutcome {
        if !self.lock().services.contains_key(name) {
            return ExecOutcome::fail(
                5,
                format!("Failed to start {name}.service: Unit {name}.service not found.\n"),
            );
        }
        match self.service_check_config(name) {
            Ok(()) => {
                let hash = (name == "haproxy")
                    .then(|| self.hash_file("/etc/haproxy/haproxy.cfg"))
                    .flatten();
                let mut inner = self.lock();
                if let Some(s) = inner.services.get_mut(name) {
                    s.state = Unit::Active;
                }
                if hash.is_some() {
                    inner.haproxy_loaded = hash;
                }
                ExecOutcome::ok("")
            }
            Err(_) => {
                if let Some(s) = self.lock().services.get_mut(name) {
                    s.state = Unit::Failed;
                }
                ExecOutcome::fail(1, format!("Job for {name}.service failed because the control process exited with error code.\nSee \"systemctl status {name}.service\" and \"journalctl -xeu {name}.service\" for details.\n"))
            }
        }
    }

    fn systemctl(&self, args: &[String]) -> ExecOutcome {
        let mut words: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .filter(|a| !a.starts_with("--") || *a == "--now")
            .collect();
        let now = words.contains(&"--now");
        words.retain(|w| *w != "--now" && *w != "-q" && *w != "--quiet");
        let Some((verb, units)) = words.split_first() else {
            return ExecOutcome::fail(1, "systemctl: missing verb\n");
        };
        let units: Vec<String> = units
            .iter()
            .map(|u| u.trim_end_matches(".service").to_string())
            .collect();
        let mut out = ExecOutcome::ok("");
        if *verb == "daemon-reload" {
            return out;
        }
        for u in &units {
            let known = self.lock().services.contains_key(u.as_str());
            let r = match *verb {
                "is-active" => {
                    let st = self.service_state(u);
                    let st = if st == "unknown" {
                        "inactive".to_string()
                    } else {
                        st
                    };
                    let code = if st == "active" { 0 } else { 3 };
                    ExecOutcome {
                        exitcode: code,
                        stdout: format!("{st}\n"),
                        stderr: String::new(),
                    }
                }
                "is-enabled" => {
                    let en = self.lock().services.get(u.as_str()).map(|s| s.enabled);
                    match en {
                        Some(true) => ExecOutcome::ok("enabled\n"),
                        Some(false) => ExecOutcome { exitcode: 1, stdout: "disabled\n".into(), stderr: String::new() },
                        None => ExecOutcome::fail(1, format!("Failed to get unit file state for {u}.service: No such file or directory\n")),
                    }
                }
                "enable" | "disable" if !known => ExecOutcome::fail(
                    1,
                    format!("Failed to {verb} unit: Unit file {u}.service does not exist.\n"),
                ),
                "enable" => {
                    if let Some(s) = self.lock().services.get_mut(u.as_str()) {
                        s.enabled = true;
                    }
                    if now {
                        self.service_start(u)
                    } else {
                        ExecOutcome::ok("")
                    }
                }
                "disable" => {
                    if let Some(s) = self.lock().services.get_mut(u.as_str()) {
                        s.enabled = false;
                        if now {
                            s.state = Unit::Inactive;
                        }
                    }
                    ExecOutcome::ok("")
                }
                "start" | "restart" => self.service_start(u),
                "reload" | "reload-or-restart" => {
                    let active = self.service_state(u) == "active";
                    if !known {
                        ExecOutcome::fail(
                            5,
                            format!("Failed to reload {u}.service: Unit {u}.service not found.\n"),
                        )
                    } else if !active && *verb == "reload" {
                        ExecOutcome::fail(1, format!("{u}.service is not active, cannot reload.\n"))
                    } else {
                        match self.service_check_config(u) {
                            Ok(()) => {
                                let hash = (u == "haproxy").then(|| self.hash_file("/etc/haproxy/haproxy.cfg")).flatten();
                                let mut inner = self.lock();
                                if let Some(s) = inner.services.get_mut(u.as_str()) {
                                    s.state = Unit::Active;
                                }
                                if hash.is_some() {
                                    inner.haproxy_loaded = hash;
                                }
                                ExecOutcome::ok("")
                            }
                            Err(_) => ExecOutcome::fail(1, format!("Job for {u}.service failed because the control process exited with error code.\n")),
                        }
                    }
                }
                "stop" => {
                    if u == "teleport" {
                        self.teleport.stop();
                    }
                    if let Some(s) = self.lock().services.get_mut(u.as_str()) {
                        s.state = Unit::Inactive;
                    }
                    ExecOutcome::ok("")
                }
                "status" => {
                    let st = self.service_state(u);
                    ExecOutcome {
                        exitcode: if st == "active" { 0 } else { 3 },
                        stdout: format!("● {u}.service\n     Active: {st}\n"),
                        stderr: String::new(),
                    }
                }
                other => ExecOutcome::fail(1, format!("Unknown command verb {other}.\n")),
            };
            out.stdout.push_str(&r.stdout);
            out.stderr.push_str(&r.stderr);
            if r.exitcode != 0 {
                out.exitcode = r.exitcode;
            }
        }
        out
    }

    /// Run one command (no shell).
    fn run_argv(&self, argv: &[String]) -> ExecOutcome {
        let Some(cmd0) = argv.first() else {
            return ExecOutcome::fail(1, "empty command\n");
        };
        let cmd = cmd0.rsplit('/').next().unwrap_or(cmd0).to_string();
        let args = &argv[1..];
        if let Some(r) = self.teleport.exec(self, &cmd, args) {
            return r;
        }
        match cmd.as_str() {
            "install" => self.install_cmd(args),
            "sh" | "bash" | "dash" => {
                if args.first().map(String::as_str) == Some("-c") {
                    match args.get(1) {
                        Some(script) => self.run_script(script),
                        None => ExecOutcome::fail(
                            2,
                            format!("{cmd}: -c: option requires an argument\n"),
                        ),
                    }
                } else {
                    ExecOutcome::fail(
                        2,
                        format!("{cmd}: only -c SCRIPT is supported by the emulated guest\n"),
                    )
                }
            }
            "true" => ExecOutcome::ok(""),
            "false" => ExecOutcome::fail(1, ""),
            "echo" => ExecOutcome::ok(format!("{}\n", args.join(" "))),
            "hostname" => ExecOutcome::ok(format!(
                "{}\n",
                self.hostname().unwrap_or_else(|| "debian".into())
            )),
            "haproxy" => {
                if args.iter().any(|a| a == "-v" || a == "-vv") {
                    let Some(bin) = &self.haproxy else {
                        return ExecOutcome::fail(127, "haproxy: command not found\n");
                    };
                    return match std::process::Command::new(bin).arg("-v").output() {
                        Ok(o) => ExecOutcome {
                            exitcode: o.status.code().unwrap_or(1),
                            stdout: String::from_utf8_lossy(&o.stdout).into(),
                            stderr: String::from_utf8_lossy(&o.stderr).into(),
                        },
                        Err(e) => ExecOutcome::fail(126, format!("{e}\n")),
                    };
                }
                if !self.lock().packages.contains("haproxy") {
                    return ExecOutcome::fail(127, "sh: 1: haproxy: not found\n");
                }
                if !args.iter().any(|a| a == "-c") {
                    return ExecOutcome::fail(
                        1,
                        "only `haproxy -c -f FILE...` is supported in the emulated guest\n",
                    );
                }
                let mut files = Vec::new();
                let mut it = args.iter();
                while let Some(a) = it.next() {
                    if a == "-f" {
                        if let Some(f) = it.next() {
                            files.push(f.clone());
                        }
                    }
                }
                self.haproxy_check(&files)
            }
            "systemctl" => self.systemctl(args),
            "cat" => {
                let mut out = Vec::new();
                for f in args {
                    match self
                        .host_path(f)
                        .and_then(|p| std::fs::read(p).map_err(|_| String::new()))
                    {
                        Ok(d) => out.extend(d),
                        Err(_) => {
                            return ExecOutcome::fail(
                                1,
                                format!("cat: {f}: No such file or directory\n"),
                            )
                        }
                    }
                }
                ExecOutcome::ok(String::from_utf8_lossy(&out).into_owned())
            }
            "sha256sum" => {
                let mut out = String::new();
                for f in args.iter().filter(|a| !a.starts_with('-')) {
                    match self.hash_file(f) {
                        Some(h) => out.push_str(&format!("{h}  {f}\n")),
                        None => {
                            return ExecOutcome::fail(
                                1,
                                format!("sha256sum: {f}: No such file or directory\n"),
                            )
                        }
                    }
                }
                ExecOutcome::ok(out)
            }
            "test" | "[" => {
                let a: Vec<&str> = args
                    .iter()
                    .map(String::as_str)
                    .filter(|x| *x != "]")
                    .collect();
                let r = match a.as_slice() {
                    [op, f] => {
                        let p = self.host_path(f).ok();
                        match *op {
                            "-f" => p.map(|p| p.is_file()).unwrap_or(false),
                            "-d" => p.map(|p| p.is_dir()).unwrap_or(false),
                            "-e" => p.map(|p| p.exists()).unwrap_or(false),
                            "-s" => p
                                .and_then(|p| std::fs::metadata(p).ok())
                                .map(|m| m.len() > 0)
                                .unwrap_or(false),
                            "-n" => !f.is_empty(),
                            "-z" => f.is_empty(),
                            _ => false,
                        }
                    }
                    [x, "=", y] => x == y,
                    [x, "!=", y] => x != y,
                    _ => false,
                };
                if r {
                    ExecOutcome::ok("")
                } else {
                    ExecOutcome::fail(1, "")
                }
            }
            "mv" | "cp" => {
                let files: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
                let [src, dst] = files.as_slice() else {
                    return ExecOutcome::fail(1, format!("{cmd}: expected SOURCE DEST\n"));
                };
                let (Ok(s), Ok(mut d)) = (self.host_path(src), self.host_path(dst)) else {
                    return ExecOutcome::fail(1, format!("{cmd}: invalid path\n"));
                };
                if d.is_dir() {
                    if let Some(name) = s.file_name() {
                        d = d.join(name);
                    }
                }
                let r = if cmd == "mv" {
                    std::fs::rename(&s, &d)
                } else {
                    std::fs::copy(&s, &d).map(|_| ())
                };
                match r {
                    Ok(()) => {
                        // A rename keeps the file's mode; a copy gets a new file's.
                        let mut inner = self.lock();
                        let mode = if cmd == "mv" {
                            inner.modes.remove(src.as_str())
                        } else {
                            None
                        };
                        match mode {
                            Some(m) => inner.modes.insert(dst.to_string(), m),
                            None => inner.modes.remove(dst.as_str()),
                        };
                        ExecOutcome::ok("")
                    }
                    Err(_) => ExecOutcome::fail(
                        1,
                        format!("{cmd}: cannot stat '{src}': No such file or directory\n"),
                    ),
                }
            }
            "rm" => {
                let force = args.iter().any(|a| a.starts_with('-') && a.contains('f'));
                for f in args.iter().filter(|a| !a.starts_with('-')) {
                    let p = match self.host_path(f) {
                        Ok(p) => p,
                        Err(e) => return ExecOutcome::fail(1, format!("rm: {e}\n")),
                    };
                    let r = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                    if r.is_err() && !force {
                        return ExecOutcome::fail(
                            1,
                            format!("rm: cannot remove '{f}': No such file or directory\n"),
                        );
                    }
                }
                ExecOutcome::ok("")
            }
            "mkdir" => {
                for f in args.iter().filter(|a| !a.starts_with('-')) {
                    if let Err(e) = self
                        .host_path(f)
                        .and_then(|p| std::fs::create_dir_all(p).map_err(|e| e.to_string()))
                    {
                        return ExecOutcome::fail(1, format!("mkdir: {e}\n"));
                    }
                }
                ExecOutcome::ok("")
            }
            "chmod" | "chown" | "touch" => {
                for f in args.iter().skip(1).filter(|a| !a.starts_with('-')) {
                    let Ok(p) = self.host_path(f) else { continue };
                    if cmd == "touch" {
                        if !p.exists() {
                            let _ = self.write_file(f, b"", false);
                        }
                    } else if !p.exists() {
                        return ExecOutcome::fail(
                            1,
                            format!("{cmd}: cannot access '{f}': No such file or directory\n"),
                        );
                    }
                }
                ExecOutcome::ok("")
            }
            "ls" => {
                let mut out = String::new();
                for f in args.iter().filter(|a| !a.starts_with('-')) {
                    match self.host_path(f).map(std::fs::read_dir) {
                        Ok(Ok(rd)) => {
                            let mut names: Vec<String> = rd
                                .filter_map(|e| e.ok())
                                .map(|e| e.file_name().to_string_lossy().to_string())
                                .collect();
                            names.sort();
                            for n in names {
                                out.push_str(&n);
                                out.push('\n');
                            }
                        }
                        _ => {
                            if self.host_path(f).map(|p| p.is_file()).unwrap_or(false) {
                                out.push_str(&format!("{f}\n"));
                            } else {
                                return ExecOutcome::fail(
                                    2,
                                    format!("ls: cannot access '{f}': No such file or directory\n"),
                                );
                            }
                        }
                    }
                }
                ExecOutcome::ok(out)
            }
            "cloud-init" => {
                if args.first().map(String::as_str) == Some("status") {
                    let st = self.cloud_init_status();
                    let code = if st == "done" { 0 } else { 1 };
                    ExecOutcome {
                        exitcode: code,
                        stdout: format!("status: {st}\n"),
                        stderr: String::new(),
                    }
                } else {
                    ExecOutcome::fail(2, "cloud-init: only `status` is emulated\n")
                }
            }
            "apt-get" | "apt" => match args
                .iter()
                .find(|a| !a.starts_with('-'))
                .map(String::as_str)
            {
                Some("update") => self.teleport.apt_update(self),
                Some("install") => {
                    let allow_downgrades = args.iter().any(|a| a == "--allow-downgrades");
                    let mut out = ExecOutcome::ok("");
                    for p in args.iter().skip(1).filter(|a| !a.starts_with('-')) {
                        if p == "teleport" || p.starts_with("teleport=") {
                            let r = self.teleport.apt_install(p, allow_downgrades);
                            if r.exitcode != 0 {
                                return r;
                            }
                            out.stdout.push_str(&r.stdout);
                            self.lock()
                                .services
                                .entry("teleport".into())
                                .or_insert(Service {
                                    enabled: false,
                                    state: Unit::Inactive,
                                });
                        } else if let Err(e) = self.install(p) {
                            return ExecOutcome::fail(100, format!("{e}\n"));
                        }
                    }
                    out
                }
                _ => ExecOutcome::ok(""),
            },
            "dpkg-query" | "dpkg" => {
                let pkg = args.last().cloned().unwrap_or_default();
                if self.lock().packages.contains(&pkg) {
                    ExecOutcome::ok(format!("ii  {pkg}\n"))
                } else {
                    ExecOutcome::fail(1, format!("dpkg-query: no packages found matching {pkg}\n"))
                }
            }
            _ => ExecOutcome::fail(127, format!("sh: 1: {cmd}: not found\n")),
        }
    }

    /// coreutils `install`: `-d [-m MODE] DIR...` or `[-m MODE] [-o U] [-g G] SRC DEST`.
    fn install_cmd(&self, args: &[String]) -> ExecOutcome {
        let (mut dirs, mut mode, mut files) = (false, None, Vec::new());
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "-d" => dirs = true,
                "-m" => mode = it.next().cloned(),
                "-o" | "-g" => {
                    it.next();
                }
                x if x.starts_with('-') => {
                    return ExecOutcome::fail(1, format!("install: unrecognized option '{x}'\n"))
                }
                x => files.push(x.to_string()),
            }
        }
        if dirs {
            for d in &files {
                if let Err(e) = self
                    .host_path(d)
                    .and_then(|p| std::fs::create_dir_all(p).map_err(|e| e.to_string()))
                {
                    return ExecOutcome::fail(1, format!("install: {e}\n"));
                }
                if let Some(m) = &mode {
                    self.lock().modes.insert(d.clone(), m.clone());
                }
            }
            return ExecOutcome::ok("");
        }
        let [src, dst] = files.as_slice() else {
            return ExecOutcome::fail(1, "install: expected SOURCE DEST\n");
        };
        let data = if src == "/dev/null" {
            Vec::new()
        } else {
            match self
                .host_path(src)
                .and_then(|p| std::fs::read(p).map_err(|e| e.to_string()))
            {
                Ok(d) => d,
                Err(_) => {
                    return ExecOutcome::fail(
                        1,
                        format!("install: cannot stat '{src}': No such file or directory\n"),
                    )
                }
            }
        };
        match self.host_path(dst) {
            Ok(p) if p.parent().is_some_and(Path::is_dir) => {
                if let Err(e) = std::fs::write(&p, data) {
                    return ExecOutcome::fail(1, format!("install: {dst}: {e}\n"));
                }
            }
            _ => {
                return ExecOutcome::fail(
                    1,
                    format!(
                        "install: cannot create regular file '{dst}': No such file or directory\n"
                    ),
                )
            }
        }
        let mut inner = self.lock();
        match mode {
            Some(m) => inner.modes.insert(dst.clone(), m),
            None => inner.modes.insert(dst.clone(), "0755".into()),
        };
        ExecOutcome::ok("")
    }

    fn run_script(&self, script: &str) -> ExecOutcome {
        let cmds = match shell::parse(script) {
            Ok(c) => c,
            Err(e) => return ExecOutcome::fail(2, format!("sh: 1: {e}\n")),
        };
        let mut acc = ExecOutcome::ok("");
        let mut last = 0;
        for (join, argv) in cmds {
            let run = match join {
                Join::First | Join::Seq => true,
                Join::And => last == 0,
                Join::Or => last != 0,
            };
            if !run {
                continue;
            }
            let r = self.run_argv(&argv);
            acc.stdout.push_str(&r.stdout);
            acc.stderr.push_str(&r.stderr);
            last = r.exitcode;
        }
        acc.exitcode = last;
        acc
    }

    fn apply_user_data(&self, user_data: &str, meta: Option<&str>) {
        if let Some(meta) = meta {
            if let Ok(v) = serde_yaml_ng::from_str::<Value>(meta) {
                if let Some(h) = v.get("local-hostname").and_then(Value::as_str) {
                    self.lock().hostname = Some(h.to_string());
                }
            }
        }
        let mut errors = Vec::new();
        if !user_data.starts_with("#cloud-config") {
            errors
                .push("user-data is not #cloud-config (only cloud-config is emulated)".to_string());
            let mut inner = self.lock();
            inner.cloud_init_errors = errors;
            inner.cloud_init_status = "error".into();
            return;
        }
        let doc: Value = match serde_yaml_ng::from_str(user_data) {
            Ok(v) => v,
            Err(e) => {
                let mut inner = self.lock();
                inner.cloud_init_errors = vec![format!("invalid YAML in user-data: {e}")];
                inner.cloud_init_status = "error".into();
                return;
            }
        };
        if let Some(h) = doc.get("hostname").and_then(Value::as_str) {
            self.lock().hostname = Some(h.to_string());
        }
        if let Some(users) = doc.get("users").and_then(Value::as_array) {
            for u in users {
                let name = match u {
                    Value::String(s) => s.clone(),
                    other => other
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                };
                if !name.is_empty() {
                    self.lock().users.push(name);
                }
            }
        }
        let files: Vec<Value> = doc
            .get("write_files")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let write = |deferred: bool, errors: &mut Vec<String>| {
            for f in &files {
                let defer = f.get("defer").and_then(Value::as_bool).unwrap_or(false);
                if defer != deferred {
                    continue;
                }
                let Some(path) = f.get("path").and_then(Value::as_str) else {
                    errors.push("write_files entry without path".into());
                    continue;
                };
                let content = f.get("content").and_then(Value::as_str).unwrap_or("");
                let data = match f
                    .get("encoding")
                    .and_then(Value::as_str)
                    .unwrap_or("text/plain")
                {
                    "b64" | "base64" => {
                        use base64::Engine;
                        match base64::engine::general_purpose::STANDARD
                            .decode(content.split_whitespace().collect::<String>())
                        {
                            Ok(d) => d,
                            Err(e) => {
                                errors.push(format!("{path}: bad base64: {e}"));
                                continue;
                            }
                        }
                    }
                    "text/plain" => content.as_bytes().to_vec(),
                    other => {
                        errors.push(format!("{path}: encoding '{other}' not emulated"));
                        continue;
                    }
                };
                let append = f.get("append").and_then(Value::as_bool).unwrap_or(false);
                if let Err(e) = self.write_file(path, &data, append) {
                    errors.push(e);
                } else if let Some(m) = f.get("permissions").and_then(Value::as_str) {
                    self.lock().modes.insert(path.to_string(), m.to_string());
                }
            }
        };
        write(false, &mut errors);
        if let Some(pkgs) = doc.get("packages").and_then(Value::as_array) {
            for p in pkgs {
                let name = match p {
                    Value::String(s) => s.clone(),
                    Value::Array(a) => a.first().and_then(Value::as_str).unwrap_or("").to_string(),
                    _ => String::new(),
                };
                if let Err(e) = self.install(&name) {
                    errors.push(e);
                }
            }
        }
        write(true, &mut errors);
        let mut log = String::new();
        if let Some(cmds) = doc.get("runcmd").and_then(Value::as_array) {
            for c in cmds {
                let r = match c {
                    Value::String(s) => self.run_script(s),
                    Value::Array(a) => {
                        let argv: Vec<String> = a
                            .iter()
                            .map(|x| match x {
                                Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                            .collect();
                        self.run_argv(&argv)
                    }
                    _ => continue,
                };
                log.push_str(&r.stdout);
                log.push_str(&r.stderr);
                if r.exitcode != 0 {
                    errors.push(format!("runcmd {c} exited with {}", r.exitcode));
                }
            }
        }
        let _ = self.write_file("/var/log/cloud-init-output.log", log.as_bytes(), true);
        let mut inner = self.lock();
        inner.cloud_init_status = if errors.is_empty() {
            "done".into()
        } else {
            "error".into()
        };
        inner.cloud_init_errors = errors;
    }
}

impl crate::teleport::GuestFs for DebianAppliance {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.host_path(path).ok()?).ok()
    }
    fn write(&self, path: &str, data: &[u8]) -> Result<(), String> {
        self.write_file(path, data, false)
    }
    fn list(&self, dir: &str) -> Vec<String> {
        let Ok(p) = self.host_path(dir) else {
            return Vec::new();
        };
        let mut out: Vec<String> = std::fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| {
                        format!(
                            "{}/{}",
                            dir.trim_end_matches('/'),
                            e.file_name().to_string_lossy()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

const DEFAULT_HAPROXY_CFG: &str = "global\n\tlog /dev/log local0\n\tuser haproxy\n\tgroup haproxy\n\tdaemon\n\ndefaults\n\tlog global\n\tmode http\n\ttimeout connect 5000\n\ttimeout client 50000\n\ttimeout server 50000\n";

#[async_trait]
impl GuestAppliance for DebianAppliance {
    fn kind(&self) -> &str {
        &self.kind
    }

    async fn boot(&self, ctx: &GuestContext) -> Result<(), String> {
        let first = {
            let mut inner = self.lock();
            let f = !inner.provisioned;
            inner.provisioned = true;
            inner.services.entry("ssh".into()).or_insert(Service {
                enabled: true,
                state: Unit::Active,
            });
            if self.agent_preinstalled {
                inner
                    .services
                    .entry("qemu-guest-agent".into())
                    .or_insert(Service {
                        enabled: true,
                        state: Unit::Active,
                    });
            }
            f
        };
        if first {
            match ctx.nocloud_files() {
                Some(files) => {
                    let ud = files
                        .get("user-data")
                        .map(|d| String::from_utf8_lossy(d).into_owned());
                    let md = files
                        .get("meta-data")
                        .map(|d| String::from_utf8_lossy(d).into_owned());
                    if let Some(nc) = files.get("network-config") {
                        let _ = self.write_file("/etc/cloud/network-config.yaml", nc, false);
                        let parsed = parse_network_config(&String::from_utf8_lossy(nc));
                        self.lock().static_addrs = parsed;
                    }
                    match ud {
                        Some(ud) => self.apply_user_data(&ud, md.as_deref()),
                        None => {
                            let mut inner = self.lock();
                            inner.cloud_init_status = "error".into();
                            inner.cloud_init_errors = vec!["cidata ISO has no user-data".into()];
                        }
                    }
                }
                None => self.lock().cloud_init_status = "done".into(),
            }
        } else {
            // Later boots: enabled services come back.
            let enabled: Vec<String> = self
                .lock()
                .services
                .iter()
                .filter(|(_, s)| s.enabled)
                .map(|(k, _)| k.clone())
                .collect();
            for s in enabled {
                let _ = self.service_start(&s);
            }
        }
        Ok(())
    }

    async fn shutdown(&self, _ctx: &GuestContext) {
        self.teleport.stop();
        for s in self.lock().services.values_mut() {
            s.state = Unit::Inactive;
        }
    }

    fn interfaces(&self, ctx: &GuestContext) -> Vec<GuestInterface> {
        let mut list = ctx.default_interfaces();
        let statics = self.lock().static_addrs.clone();
        for iface in list.iter_mut().filter(|i| i.name != "lo") {
            let by_mac = statics
                .iter()
                .find(|(m, _, _)| m.as_deref() == Some(iface.mac.as_str()));
            let by_name = statics
                .iter()
                .find(|(m, n, _)| m.is_none() && n == &iface.name);
            if let Some((_, _, addrs)) = by_mac.or(by_name) {
                iface.ipv4 = addrs.clone();
            }
        }
        list
    }

    fn agent_running(&self) -> bool {
        self.agent_preinstalled || self.service_state("qemu-guest-agent") == "active"
    }

    async fn exec(
        &self,
        _ctx: &GuestContext,
        argv: &[String],
        _input: Option<&[u8]>,
    ) -> ExecOutcome {
        self.run_argv(argv)
    }

    async fn file_write(&self, _ctx: &GuestContext, path: &str, data: &[u8]) -> Result<(), String> {
        let p = self.host_path(path)?;
        match p.parent() {
            Some(parent) if parent.is_dir() => {}
            _ => {
                return Err(format!(
                    "guest-file-open: No such file or directory: '{path}'"
                ))
            }
        }
        std::fs::write(&p, data).map_err(|e| format!("{path}: {e}"))
    }

    async fn file_read(&self, _ctx: &GuestContext, path: &str) -> Result<Vec<u8>, String> {
        std::fs::read(self.host_path(path)?)
            .map_err(|_| format!("guest-file-open: No such file or directory: '{path}'"))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn parse_v4(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (a, l) = s.split_once('/')?;
    Some((a.parse().ok()?, l.parse().ok()?))
}

/// Static IPv4 addresses from a NoCloud network-config (v1 or v2).
fn parse_network_config(text: &str) -> Vec<StaticAddrs> {
    let Ok(doc) = serde_yaml_ng::from_str::<Value>(text) else {
        return Vec::new();
    };
    let doc = doc.get("network").cloned().unwrap_or(doc);
    let mut out = Vec::new();
    if let Some(eths) = doc.get("ethernets").and_then(Value::as_object) {
        for (name, e) in eths {
            let mac = e
                .get("match")
                .and_then(|m| m.get("macaddress"))
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase);
            let addrs: Vec<(Ipv4Addr, u8)> = e
                .get("addresses")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .filter_map(parse_v4)
                        .collect()
                })
                .unwrap_or_default();
            if !addrs.is_empty() {
                out.push((mac, name.clone(), addrs));
            }
        }
    }
    if let Some(cfg) = doc.get("config").and_then(Value::as_array) {
        for c in cfg {
            if c.get("type").and_then(Value::as_str) != Some("physical") {
                continue;
            }
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let mac = c
                .get("mac_address")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase);
            let addrs: Vec<(Ipv4Addr, u8)> = c
                .get("subnets")
                .and_then(Value::as_array)
                .map(|subs| {
                    subs.iter()
                        .filter(|s| s.get("type").and_then(Value::as_str) == Some("static"))
                        .filter_map(|s| {
                            let a = s.get("address").and_then(Value::as_str)?;
                            let len = s
                                .get("netmask")
                                .and_then(Value::as_str)
                                .and_then(|m| m.parse::<Ipv4Addr>().ok())
                                .map_or(24, |m| u32::from(m).count_ones() as u8);
                            parse_v4(a).or_else(|| Some((a.parse().ok()?, len)))
                        })
                        .collect()
                })
                .unwrap_or_default();
            if !addrs.is_empty() {
                out.push((mac, name, addrs));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_config_v1_and_v2() {
        let v2 = "version: 2\nethernets:\n  pub:\n    match:\n      macaddress: \"BC:24:11:00:00:01\"\n    addresses: [203.0.113.5/24]\n  eth1:\n    addresses: [10.10.0.2/24]\n";
        let p = parse_network_config(v2);
        assert_eq!(p.len(), 2);
        assert!(p
            .iter()
            .any(|(m, _, a)| m.as_deref() == Some("bc:24:11:00:00:01")
                && a == &vec![(Ipv4Addr::new(203, 0, 113, 5), 24)]));
        let v1 = "version: 1\nconfig:\n  - type: physical\n    name: eth0\n    mac_address: bc:24:11:00:00:02\n    subnets:\n      - type: static\n        address: 10.10.0.3/24\n";
        let p = parse_network_config(v1);
        assert_eq!(
            p,
            vec![(
                Some("bc:24:11:00:00:02".into()),
                "eth0".into(),
                vec![(Ipv4Addr::new(10, 10, 0, 3), 24)]
            )]
        );
    }

    #[test]
    fn rewrites_paths_inside_fetch_expressions() {
        let d = DebianAppliance::new(true, None, "t");
        d.write_file("/etc/haproxy/maps/exact.map", b"a b\n", false)
            .expect("write");
        let out = d.rewrite_paths("  use_backend %[req.ssl_sni,lower,map(/etc/haproxy/maps/exact.map)] if x\n  log /dev/log local0");
        let root = d.root().to_string_lossy().to_string();
        assert!(
            out.contains(&format!("map({root}/etc/haproxy/maps/exact.map)")),
            "{out}"
        );
        assert!(out.contains("log /dev/log local0"), "{out}");
    }
}
