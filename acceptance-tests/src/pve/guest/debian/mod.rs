//! The Debian guest: a host directory standing in for its `/`, the packages and services it
//! runs, the commands the guest agent can exec, and cloud-init applying its NoCloud seed.

mod cloud_init;
mod commands;
mod services;

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use super::{ApplianceFactory, ExecOutcome, GuestAppliance, GuestContext, GuestInterface};

pub(super) fn find_haproxy() -> Option<PathBuf> {
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
    pub(super) haproxy: Option<PathBuf>,
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
