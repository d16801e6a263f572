//! Programmable guests: what runs inside an emulated VM once it has booted.
//!
//! An [`ApplianceRegistry`] picks an appliance for a VM at its first boot from the VM's boot
//! image (the volume a disk was imported from, its download URL), tags and config. Later
//! registrations win. The built-in [`DebianFactory`] matches Debian images; everything else
//! falls back to a generic Debian-like guest with the guest agent preinstalled.

mod debian;

use std::any::Any;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::pve::cloudinit::{is_cloudinit_drive, render_nocloud, NoCloudFiles};
use crate::pve::iso::read_iso_files;
use debian::find_haproxy;
pub use debian::{DebianAppliance, DebianFactory};

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
    /// of type `nocloud` (rendered from the VM's config, [`crate::pve::cloudinit`]) or an uploaded
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
