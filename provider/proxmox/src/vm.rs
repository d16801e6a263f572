//! QEMU VMs: create, locate, config, power, delete; cluster helpers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::client::Client;
use crate::cloudinit::CloudInitSpec;
use crate::error::{ApiErrorKind, Error, Result};
use crate::owner::OwnerMark;
use crate::params::{api_path, Params};
use crate::poll::Poll;
use crate::props::{
    parse_disk_size, parse_property_string, validate_dns_name, validate_node, validate_tag,
    validate_vmid, CdromSpec, DiskSpec, EfiDiskSpec, NetConfig, NetSpec, TpmStateSpec,
};
use crate::task::{upid_from, TaskOutcome, WaitOptions};
use crate::value::{f_bool, f_str, f_u64, v_str};

/// Firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Bios {
    /// SeaBIOS (legacy BIOS).
    #[default]
    Seabios,
    /// OVMF (UEFI), needed for Secure Boot.
    Ovmf,
}

/// Everything needed to create a VM with `POST /nodes/{node}/qemu`.
#[derive(Debug, Clone, PartialEq)]
pub struct VmSpec {
    /// Explicit VMID; `None` allocates one with `GET /cluster/nextid`.
    pub vmid: Option<u32>,
    /// VM name (DNS name).
    pub name: String,
    /// vCPU cores.
    pub cores: u32,
    /// Sockets (default 1).
    pub sockets: Option<u32>,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// CPU type (e.g. `host`, `x86-64-v2-AES`).
    pub cpu: Option<String>,
    /// Firmware.
    pub bios: Bios,
    /// Machine type (e.g. `q35`).
    pub machine: Option<String>,
    /// SCSI controller (e.g. `virtio-scsi-single`).
    pub scsihw: Option<String>,
    /// Guest OS type (e.g. `l26`).
    pub ostype: Option<String>,
    /// Disks.
    pub disks: Vec<DiskSpec>,
    /// `efidisk0` (with OVMF).
    pub efidisk: Option<EfiDiskSpec>,
    /// `tpmstate0`.
    pub tpmstate: Option<TpmStateSpec>,
    /// NICs.
    pub nets: Vec<NetSpec>,
    /// CD-ROM drives.
    pub cdroms: Vec<CdromSpec>,
    /// The PVE cloud-init drive and its network settings (`ideN: STORAGE:cloudinit`,
    /// `citype`, `ipconfigN`, `nameserver`, `searchdomain`).
    pub cloud_init: Option<CloudInitSpec>,
    /// `agent=1` (QEMU guest agent).
    pub agent: bool,
    /// `serial0=socket`.
    pub serial_socket: bool,
    /// Display (`vga=`), e.g. `serial0` or `std`.
    pub vga: Option<String>,
    /// Boot order (`boot=order=scsi0;ide2`).
    pub boot_order: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Description (notes).
    pub description: Option<String>,
    /// Start at host boot.
    pub onboot: Option<bool>,
    /// Resource pool.
    pub pool: Option<String>,
    /// Additional raw parameters (key -> value), added last.
    pub extra: BTreeMap<String, String>,
}

impl VmSpec {
    /// A minimal spec: `cores` vCPUs, `memory_mib` MiB, guest agent on, serial console.
    pub fn new(name: &str, cores: u32, memory_mib: u64) -> Self {
        VmSpec {
            vmid: None,
            name: name.to_string(),
            cores,
            sockets: None,
            memory_mib,
            cpu: None,
            bios: Bios::Seabios,
            machine: None,
            scsihw: Some("virtio-scsi-single".into()),
            ostype: Some("l26".into()),
            disks: Vec::new(),
            efidisk: None,
            tpmstate: None,
            nets: Vec::new(),
            cdroms: Vec::new(),
            cloud_init: None,
            agent: true,
            serial_socket: true,
            vga: None,
            boot_order: Vec::new(),
            tags: Vec::new(),
            description: None,
            onboot: None,
            pool: None,
            extra: BTreeMap::new(),
        }
    }

    /// Check the spec without calling the API.
    pub fn validate(&self) -> Result<()> {
        if let Some(v) = self.vmid {
            validate_vmid(v)?;
        }
        validate_dns_name("name", &self.name)?;
        if self.cores == 0 || self.cores > 8192 {
            return Err(Error::InvalidArgument(format!(
                "cores: {} must be between 1 and 8192",
                self.cores
            )));
        }
        if self.memory_mib < 16 {
            return Err(Error::InvalidArgument(format!(
                "memory: {} MiB is below the minimum of 16",
                self.memory_mib
            )));
        }
        for t in &self.tags {
            validate_tag(t)?;
        }
        let mut keys = std::collections::HashSet::new();
        for k in self
            .disks
            .iter()
            .map(DiskSpec::key)
            .chain(self.cdroms.iter().map(CdromSpec::key))
            .chain(self.nets.iter().map(NetSpec::key))
            .chain(self.cloud_init.iter().map(CloudInitSpec::key))
        {
            if !keys.insert(k.clone()) {
                return Err(Error::InvalidArgument(format!("{k} is defined twice")));
            }
        }
        if (self.efidisk.is_some()) && self.bios != Bios::Ovmf {
            return Err(Error::InvalidArgument(
                "efidisk0 requires bios = ovmf".into(),
            ));
        }
        Ok(())
    }

    /// The parameters of `POST /nodes/{node}/qemu` for `vmid`.
    pub fn to_params(&self, vmid: u32) -> Result<Params> {
        self.validate()?;
        validate_vmid(vmid)?;
        let mut p = Params::new()
            .int("vmid", vmid)
            .str("name", &self.name)
            .int("cores", self.cores)
            .opt_int("sockets", self.sockets)
            .str("memory", self.memory_mib.to_string())
            .opt_str("cpu", self.cpu.as_deref())
            .str(
                "bios",
                match self.bios {
                    Bios::Seabios => "seabios",
                    Bios::Ovmf => "ovmf",
                },
            )
            .opt_str("machine", self.machine.as_deref())
            .opt_str("scsihw", self.scsihw.as_deref())
            .opt_str("ostype", self.ostype.as_deref());
        for d in &self.disks {
            p = p.str(&d.key(), d.render()?);
        }
        if let Some(e) = &self.efidisk {
            p = p.str("efidisk0", e.render()?);
        }
        if let Some(t) = &self.tpmstate {
            p = p.str("tpmstate0", t.render()?);
        }
        for n in &self.nets {
            p = p.str(&n.key(), n.render()?);
        }
        for c in &self.cdroms {
            p = p.str(&c.key(), c.render()?);
        }
        if let Some(ci) = &self.cloud_init {
            for (k, v) in ci.params()? {
                p = p.str(&k, v);
            }
        }
        if self.agent {
            p = p.str("agent", "1");
        }
        if self.serial_socket {
            p = p.str("serial0", "socket");
        }
        p = p.opt_str("vga", self.vga.as_deref());
        if !self.boot_order.is_empty() {
            p = p.str("boot", format!("order={}", self.boot_order.join(";")));
        }
        if !self.tags.is_empty() {
            p = p.str("tags", self.tags.join(";"));
        }
        p = p
            .opt_str("description", self.description.as_deref())
            .opt_bool("onboot", self.onboot)
            .opt_str("pool", self.pool.as_deref());
        for (k, v) in &self.extra {
            p = p.str(k, v);
        }
        Ok(p)
    }
}

/// A VM as listed by `GET /cluster/resources?type=vm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterVm {
    /// VMID.
    pub vmid: u32,
    /// Owning node.
    pub node: String,
    /// Name.
    pub name: Option<String>,
    /// `running`, `stopped`, ...
    pub status: Option<String>,
    /// `qemu` or `lxc`.
    pub kind: String,
    /// Whether it is a template.
    pub template: bool,
    /// Tags (`;`-separated in PVE).
    pub tags: Vec<String>,
}

/// `GET /nodes/{node}/qemu/{vmid}/status/current`.
#[derive(Debug, Clone, PartialEq)]
pub struct VmStatus {
    /// `running` or `stopped`.
    pub status: String,
    /// QMP status (`running`, `paused`, `prelaunch`, ...).
    pub qmpstatus: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Whether the guest agent is enabled in the config.
    pub agent: bool,
    /// Uptime in seconds.
    pub uptime: Option<u64>,
    /// Config lock, if any (`create`, `backup`, ...).
    pub lock: Option<String>,
    /// The raw object.
    pub raw: Value,
}

impl VmStatus {
    /// True when running.
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }
}

/// A VM configuration (`GET /nodes/{node}/qemu/{vmid}/config`), key -> value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VmConfig(pub BTreeMap<String, Value>);

impl VmConfig {
    /// A value rendered as a string.
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.0.get(key).and_then(v_str)
    }
    /// Parsed `net{index}`.
    pub fn net(&self, index: u8) -> Option<NetConfig> {
        self.get_str(&format!("net{index}"))
            .and_then(|s| NetConfig::parse(&s))
    }
    /// All NICs by index.
    pub fn nets(&self) -> BTreeMap<u8, NetConfig> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.0 {
            if let Some(i) = k.strip_prefix("net").and_then(|i| i.parse::<u8>().ok()) {
                if let Some(n) = v_str(v).and_then(|s| NetConfig::parse(&s)) {
                    out.insert(i, n);
                }
            }
        }
        out
    }
    /// The config digest (for optimistic concurrency on updates).
    pub fn digest(&self) -> Option<String> {
        self.get_str("digest")
    }
    /// Tags.
    pub fn tags(&self) -> Vec<String> {
        self.get_str("tags")
            .map(|t| {
                t.split([';', ',', ' '])
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
    /// The config lock, if any.
    pub fn lock(&self) -> Option<String> {
        self.get_str("lock")
    }
}

fn qemu_path(node: &str, vmid: u32, rest: &[&str]) -> String {
    let id = vmid.to_string();
    let mut segs = vec!["nodes", node, "qemu", id.as_str()];
    segs.extend_from_slice(rest);
    api_path(&segs)
}

enum Found {
    Ours,
    Other,
    Absent,
}

/// What happened in [`Client::shutdown_and_delete_vm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The VM existed and was deleted.
    Deleted,
    /// No such VM in the cluster: nothing to do.
    NotFound,
}

impl Client {
    /// `GET /cluster/nextid`.
    pub async fn next_vmid(&self) -> Result<u32> {
        let v: Value = self.get("/cluster/nextid", &Params::new()).await?;
        let n = crate::value::v_u64(&v)
            .ok_or_else(|| Error::decode("/cluster/nextid", format!("not a number: {v}")))?;
        u32::try_from(n).map_err(|_| Error::decode("/cluster/nextid", "out of range"))
    }

    /// `GET /version`: a cheap call to check connectivity and credentials. Returns the
    /// `version` string (e.g. `9.1.1`).
    pub async fn version(&self) -> Result<String> {
        let v: Value = self.get("/version", &Params::new()).await?;
        f_str(&v, "version").ok_or_else(|| Error::decode("/version", "no version field"))
    }

    /// `GET /nodes`: node names with their status (`online`/`offline`).
    pub async fn list_nodes(&self) -> Result<Vec<(String, String)>> {
        let v: Value = self.get("/nodes", &Params::new()).await?;
        let mut out = Vec::new();
        if let Value::Array(items) = v {
            for it in items {
                if let Some(n) = f_str(&it, "node") {
                    out.push((n, f_str(&it, "status").unwrap_or_default()));
                }
            }
        }
        Ok(out)
    }

    /// All VMs (QEMU and LXC) in the cluster: `GET /cluster/resources?type=vm`.
    pub async fn cluster_vms(&self) -> Result<Vec<ClusterVm>> {
        let v: Value = self
            .get("/cluster/resources", &Params::new().str("type", "vm"))
            .await?;
        let mut out = Vec::new();
        if let Value::Array(items) = v {
            for it in items {
                let (Some(vmid), Some(node)) = (f_u64(&it, "vmid"), f_str(&it, "node")) else {
                    continue;
                };
                let Ok(vmid) = u32::try_from(vmid) else {
                    continue;
                };
                let kind = f_str(&it, "type").unwrap_or_else(|| "qemu".into());
                out.push(ClusterVm {
                    vmid,
                    node,
                    name: f_str(&it, "name"),
                    status: f_str(&it, "status"),
                    kind,
                    template: f_bool(&it, "template").unwrap_or(false),
                    tags: f_str(&it, "tags")
                        .map(|t| {
                            t.split(';')
                                .filter(|s| !s.is_empty())
                                .map(str::to_string)
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }

    /// Find which node owns a VMID (QEMU VMs only). `None` when no such VM exists.
    pub async fn locate_vm(&self, vmid: u32) -> Result<Option<ClusterVm>> {
        Ok(self
            .cluster_vms()
            .await?
            .into_iter()
            .find(|v| v.vmid == vmid && v.kind == "qemu"))
    }

    /// Create a VM on `node` and wait for the creation task. Returns the VMID.
    ///
    /// * Explicit VMID: used as is; "already exists" is an error.
    /// * Otherwise `GET /cluster/nextid` then create, retrying with a fresh id when the id was
    ///   taken in between ("already exists").
    /// * Holds one of the node's permits for the whole operation.
    /// * Never re-POSTs blindly: when the create call's outcome is unknown (connection dropped
    ///   after sending, "got no worker upid"), it first checks whether the VM now exists; if it
    ///   does, it waits for its `create` lock to clear and returns it.
    pub async fn create_vm(&self, node: &str, spec: &VmSpec) -> Result<u32> {
        self.create_vm_with(node, spec, &WaitOptions::default())
            .await
    }

    /// [`Client::create_vm`] with explicit wait options (deadline, cancellation).
    pub async fn create_vm_with(
        &self,
        node: &str,
        spec: &VmSpec,
        wait: &WaitOptions,
    ) -> Result<u32> {
        validate_node(node)?;
        spec.validate()?;
        let _permit = self.node_permit(node).await;
        let path = api_path(&["nodes", node, "qemu"]);
        let policy = *self.retry_policy();
        let mut attempt = 0u32;
        loop {
            let vmid = match spec.vmid {
                Some(v) => v,
                None => self.next_vmid().await?,
            };
            let params = spec.to_params(vmid)?;
            let res = self.post(&path, &params).await;
            let err = match res {
                Ok(data) => {
                    // From here on the VM exists: errors carry its VMID.
                    let finish = async {
                        let upid = upid_from(&data)?;
                        self.wait_task(&upid, wait).await?;
                        self.grow_imported_disks(node, vmid, spec).await
                    };
                    return match finish.await {
                        Ok(()) => Ok(vmid),
                        Err(e) => Err(created_incomplete(vmid, e)),
                    };
                }
                Err(e) => e,
            };
            let can_retry = attempt + 1 < policy.max_attempts;
            match err.api_kind() {
                Some(ApiErrorKind::AlreadyExists) if spec.vmid.is_none() && can_retry => {
                    tracing::debug!(vmid, "VMID taken between nextid and create, retrying");
                }
                _ if is_outcome_unknown(&err) => {
                    // The create may or may not have happened: look before retrying.
                    match self.find_created(node, vmid, spec).await? {
                        Found::Ours => {
                            let finish = async {
                                self.wait_unlocked(node, vmid, wait).await?;
                                self.grow_imported_disks(node, vmid, spec).await
                            };
                            return match finish.await {
                                Ok(()) => Ok(vmid),
                                Err(e) => Err(created_incomplete(vmid, e)),
                            };
                        }
                        Found::Other if spec.vmid.is_some() => {
                            return Err(Error::InvalidArgument(format!(
                                "VMID {vmid} exists but is not the VM being created ({})",
                                spec.name
                            )));
                        }
                        Found::Other | Found::Absent => {}
                    }
                    if !can_retry {
                        return Err(err);
                    }
                    tracing::debug!(vmid, error = %err, "VM create outcome unknown and VM absent, retrying");
                }
                _ => return Err(err),
            }
            tokio::time::sleep(policy.delay(attempt)).await;
            attempt += 1;
        }
    }

    /// Imported disks come in at the image's size; grow those with `size_gib` set to that size
    /// (never shrinks).
    async fn grow_imported_disks(&self, node: &str, vmid: u32, spec: &VmSpec) -> Result<()> {
        let wanted: Vec<&DiskSpec> = spec
            .disks
            .iter()
            .filter(|d| d.import_from.is_some() && d.size_gib > 0)
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let cfg = self.vm_config(node, vmid).await?;
        for d in wanted {
            let key = d.key();
            let current = disk_size(&cfg, &key);
            let target = u64::from(d.size_gib) << 30;
            if current < target {
                let size = format!("{}G", d.size_gib);
                match self.resize_disk_unlimited(node, vmid, &key, &size).await {
                    Ok(()) => {}
                    Err(e) if is_outcome_unknown(&e) => {
                        // Look instead of resizing again: a lost answer may hide a done resize.
                        let now = disk_size(&self.vm_config(node, vmid).await?, &key);
                        if now < target {
                            self.resize_disk_unlimited(node, vmid, &key, &size).await?;
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    async fn find_created(&self, node: &str, vmid: u32, spec: &VmSpec) -> Result<Found> {
        let ours = |cfg: &VmConfig| {
            cfg.get_str("name").as_deref() == Some(spec.name.as_str())
                && match spec
                    .description
                    .as_deref()
                    .and_then(crate::owner::OwnerMark::in_description)
                {
                    Some(mark) => mark.ownership(cfg) == crate::owner::Ownership::Ours,
                    None => true,
                }
        };
        match self.vm_config(node, vmid).await {
            Ok(cfg) if ours(&cfg) => Ok(Found::Ours),
            Ok(_) => Ok(Found::Other),
            Err(e) if e.is_not_found() => Ok(Found::Absent),
            Err(e) => Err(e),
        }
    }

    async fn wait_unlocked(&self, node: &str, vmid: u32, wait: &WaitOptions) -> Result<()> {
        let deadline = wait.timeout.unwrap_or(self.timeouts().task);
        let mut poll = Poll::new(Duration::from_millis(200), Duration::from_secs(2), deadline)
            .cancel_on(wait.cancel.as_ref());
        loop {
            let cfg = self.vm_config(node, vmid).await?;
            if cfg.lock().is_none() {
                return Ok(());
            }
            if poll.expired() {
                return Err(Error::Timeout {
                    what: format!("VM {vmid} lock to clear"),
                    seconds: deadline.as_secs(),
                });
            }
            if poll.is_cancelled() {
                return Err(Error::Cancelled);
            }
            poll.wait().await?;
        }
    }

    /// `GET /nodes/{node}/qemu/{vmid}/config`.
    pub async fn vm_config(&self, node: &str, vmid: u32) -> Result<VmConfig> {
        let path = qemu_path(node, vmid, &["config"]);
        let v: Value = self.get(&path, &Params::new()).await?;
        match v {
            Value::Object(m) => Ok(VmConfig(m.into_iter().collect())),
            other => Err(Error::decode(
                &path,
                format!("expected an object, got {other}"),
            )),
        }
    }

    /// `PUT /nodes/{node}/qemu/{vmid}/config` (synchronous update). Use `delete` in `params`
    /// to remove keys and `digest` to guard against concurrent changes.
    pub async fn update_vm_config(&self, node: &str, vmid: u32, params: &Params) -> Result<()> {
        let _permit = self.node_permit(node).await;
        self.put(&qemu_path(node, vmid, &["config"]), params)
            .await?;
        Ok(())
    }

    /// `POST /nodes/{node}/qemu/{vmid}/config` (asynchronous update; needed when the change
    /// allocates or imports disks) and wait for the task, if one was started.
    pub async fn update_vm_config_async(
        &self,
        node: &str,
        vmid: u32,
        params: &Params,
        wait: &WaitOptions,
    ) -> Result<Option<TaskOutcome>> {
        let _permit = self.node_permit(node).await;
        let data = self
            .post(&qemu_path(node, vmid, &["config"]), params)
            .await?;
        match data {
            Value::Null => Ok(None),
            v => Ok(Some(self.wait_task_value(&v, wait).await?)),
        }
    }

    /// `PUT /nodes/{node}/qemu/{vmid}/resize` (grow a disk; `size` like `10G` or `+2G`).
    pub async fn resize_disk(&self, node: &str, vmid: u32, disk: &str, size: &str) -> Result<()> {
        let _permit = self.node_permit(node).await;
        self.resize_disk_unlimited(node, vmid, disk, size).await
    }

    async fn resize_disk_unlimited(
        &self,
        node: &str,
        vmid: u32,
        disk: &str,
        size: &str,
    ) -> Result<()> {
        let data = self
            .put(
                &qemu_path(node, vmid, &["resize"]),
                &Params::new().str("disk", disk).str("size", size),
            )
            .await?;
        if let Value::String(_) = data {
            self.wait_task_value(&data, &WaitOptions::default()).await?;
        }
        Ok(())
    }

    /// `GET /nodes/{node}/qemu/{vmid}/status/current`.
    pub async fn vm_status(&self, node: &str, vmid: u32) -> Result<VmStatus> {
        let v: Value = self
            .get(
                &qemu_path(node, vmid, &["status", "current"]),
                &Params::new(),
            )
            .await?;
        Ok(VmStatus {
            status: f_str(&v, "status").unwrap_or_default(),
            qmpstatus: f_str(&v, "qmpstatus"),
            name: f_str(&v, "name"),
            agent: f_bool(&v, "agent").unwrap_or(false),
            uptime: f_u64(&v, "uptime"),
            lock: f_str(&v, "lock"),
            raw: v,
        })
    }

    async fn power_action(
        &self,
        node: &str,
        vmid: u32,
        action: &str,
        params: &Params,
        wait: &WaitOptions,
    ) -> Result<TaskOutcome> {
        let _permit = self.node_permit(node).await;
        let data = self
            .post(&qemu_path(node, vmid, &["status", action]), params)
            .await?;
        self.wait_task_value(&data, wait).await
    }

    /// Start a VM and wait for the start task. A VM that is already running is success.
    pub async fn start_vm(&self, node: &str, vmid: u32) -> Result<()> {
        if self.vm_status(node, vmid).await?.is_running() {
            return Ok(());
        }
        match self
            .power_action(node, vmid, "start", &Params::new(), &WaitOptions::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_outcome_unknown(&e) => {
                // Look instead of re-posting.
                if self.vm_status(node, vmid).await?.is_running() {
                    Ok(())
                } else {
                    self.power_action(node, vmid, "start", &Params::new(), &WaitOptions::default())
                        .await
                        .map(|_| ())
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Hard-stop a VM and wait. A stopped VM is success.
    pub async fn stop_vm(&self, node: &str, vmid: u32) -> Result<()> {
        if !self.vm_status(node, vmid).await?.is_running() {
            return Ok(());
        }
        self.power_action(node, vmid, "stop", &Params::new(), &WaitOptions::default())
            .await
            .map(|_| ())
    }

    /// ACPI shutdown with a timeout; when the guest has not powered off by then, PVE stops it
    /// (`forceStop=1`). Waits for the task. A stopped VM is success.
    pub async fn shutdown_vm(&self, node: &str, vmid: u32, timeout: Duration) -> Result<()> {
        if !self.vm_status(node, vmid).await?.is_running() {
            return Ok(());
        }
        self.shutdown_running(node, vmid, timeout).await
    }

    async fn shutdown_running(&self, node: &str, vmid: u32, timeout: Duration) -> Result<()> {
        let secs = timeout.as_secs().max(1);
        let params = Params::new()
            .int("timeout", secs as i64)
            .bool("forceStop", true);
        let wait = WaitOptions {
            timeout: Some(Duration::from_secs(secs + 120)),
            ..Default::default()
        };
        match self
            .power_action(node, vmid, "shutdown", &params, &wait)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                // Fall back to a hard stop whatever went wrong with the shutdown.
                tracing::debug!(vmid, error = %e, "shutdown failed, stopping");
                self.stop_vm(node, vmid).await
            }
        }
    }

    /// `DELETE /nodes/{node}/qemu/{vmid}?purge=1&destroy-unreferenced-disks=1` and wait.
    /// The VM must be stopped.
    pub async fn delete_vm(&self, node: &str, vmid: u32) -> Result<()> {
        let _permit = self.node_permit(node).await;
        let params = Params::new()
            .bool("purge", true)
            .bool("destroy-unreferenced-disks", true);
        let data = self.delete(&qemu_path(node, vmid, &[]), &params).await;
        match data {
            Ok(v) => {
                self.wait_task_value(&v, &WaitOptions::default()).await?;
                Ok(())
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) if is_outcome_unknown(&e) => {
                // The delete may have started: wait for its task rather than sending another.
                if let Some(upid) = self
                    .active_task(node, "qmdestroy", Some(&vmid.to_string()))
                    .await?
                {
                    self.wait_task(&upid, &WaitOptions::default()).await?;
                }
                // Check state: gone means done; otherwise try once more.
                match self.vm_config(node, vmid).await {
                    Err(e2) if e2.is_not_found() => Ok(()),
                    Err(e2) => Err(e2),
                    Ok(_) => {
                        let v = self.delete(&qemu_path(node, vmid, &[]), &params).await?;
                        self.wait_task_value(&v, &WaitOptions::default()).await?;
                        Ok(())
                    }
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Locate the VM anywhere in the cluster, check that it is `owner`'s (see
    /// [`OwnerMark::check`]: its mark, or no mark and the name `unmarked_name`), shut it down
    /// (ACPI with `shutdown_timeout`, then stop) and delete it with purge. Absent VMs are fine
    /// ([`DeleteOutcome::NotFound`]); a VM that is not the owner's is refused with
    /// [`Error::NotOwned`] and left untouched.
    pub async fn shutdown_and_delete_vm(
        &self,
        vmid: u32,
        shutdown_timeout: Duration,
        owner: &OwnerMark,
        unmarked_name: Option<&str>,
    ) -> Result<DeleteOutcome> {
        let Some(vm) = self.locate_vm(vmid).await? else {
            return Ok(DeleteOutcome::NotFound);
        };
        let node = vm.node;
        match self.vm_config(&node, vmid).await {
            Ok(cfg) => owner.check(vmid, &cfg, unmarked_name)?,
            Err(e) if e.is_not_found() => return Ok(DeleteOutcome::NotFound),
            Err(e) => return Err(e),
        }
        match self.vm_status(&node, vmid).await {
            Ok(st) if st.is_running() => {
                if shutdown_timeout.is_zero() {
                    self.power_action(&node, vmid, "stop", &Params::new(), &WaitOptions::default())
                        .await?;
                } else {
                    self.shutdown_running(&node, vmid, shutdown_timeout).await?;
                }
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(DeleteOutcome::NotFound),
            Err(e) => return Err(e),
        }
        self.delete_vm(&node, vmid).await?;
        Ok(DeleteOutcome::Deleted)
    }
}

/// The size in bytes of disk `key` in `cfg` (0 when unknown).
fn disk_size(cfg: &VmConfig, key: &str) -> u64 {
    cfg.get_str(key)
        .and_then(|v| {
            parse_property_string(&v, Some("file"))
                .into_iter()
                .find(|(k, _)| k == "size")
                .and_then(|(_, s)| parse_disk_size(&s))
        })
        .unwrap_or(0)
}

fn created_incomplete(vmid: u32, e: Error) -> Error {
    match e {
        Error::CreatedIncomplete { .. } => e,
        other => Error::CreatedIncomplete {
            vmid,
            source: Box::new(other),
        },
    }
}

/// The server may or may not have acted on the request.
pub(crate) fn is_outcome_unknown(e: &Error) -> bool {
    match e {
        Error::Transport { kind, .. } => !matches!(kind, crate::error::TransportKind::Tls),
        Error::Api(a) => matches!(
            a.kind,
            ApiErrorKind::NoWorkerUpid | ApiErrorKind::ProxyUnreachable
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamValue;

    fn full_spec() -> VmSpec {
        let mut s = VmSpec::new("talos-cp-1", 3, 8192);
        s.bios = Bios::Ovmf;
        s.machine = Some("q35".into());
        s.cpu = Some("host".into());
        s.disks
            .push(DiskSpec::import(0, "local-lvm", "local:import/talos.qcow2"));
        s.efidisk = Some(EfiDiskSpec::new("local-lvm", true));
        s.tpmstate = Some(TpmStateSpec {
            storage: "local-lvm".into(),
        });
        let mut n = NetSpec::virtio(0, "vmbr1");
        n.mac = Some("BC:24:11:00:00:10".into());
        n.firewall = true;
        s.nets.push(n);
        s.cdroms.push(CdromSpec::ide2("local:iso/seed.iso"));
        s.boot_order = vec!["scsi0".into(), "ide2".into()];
        s.tags = vec!["waddle".into(), "talos".into()];
        s
    }

    #[test]
    fn spec_renders_pve_params() {
        let p = full_spec().to_params(120).unwrap();
        let get = |k: &str| match p.get(k) {
            Some(ParamValue::Str(s)) => s.clone(),
            Some(ParamValue::Int(i)) => i.to_string(),
            Some(ParamValue::Bool(b)) => b.to_string(),
            other => panic!("{k}: {other:?}"),
        };
        assert_eq!(get("vmid"), "120");
        assert_eq!(get("name"), "talos-cp-1");
        assert_eq!(get("cores"), "3");
        assert_eq!(get("memory"), "8192");
        assert_eq!(get("bios"), "ovmf");
        assert_eq!(get("machine"), "q35");
        assert_eq!(
            get("scsi0"),
            "local-lvm:0,import-from=local:import/talos.qcow2,discard=on"
        );
        assert_eq!(
            get("efidisk0"),
            "local-lvm:1,efitype=4m,pre-enrolled-keys=1"
        );
        assert_eq!(get("tpmstate0"), "local-lvm:1,version=v2.0");
        assert_eq!(
            get("net0"),
            "virtio=BC:24:11:00:00:10,bridge=vmbr1,firewall=1"
        );
        assert_eq!(get("ide2"), "local:iso/seed.iso,media=cdrom");
        assert_eq!(get("agent"), "1");
        assert_eq!(get("serial0"), "socket");
        assert_eq!(get("boot"), "order=scsi0;ide2");
        assert_eq!(get("tags"), "waddle;talos");
        assert_eq!(get("scsihw"), "virtio-scsi-single");
    }

    #[test]
    fn spec_validation() {
        let mut s = full_spec();
        s.bios = Bios::Seabios;
        assert!(s.validate().is_err(), "efidisk without ovmf");
        let mut s = full_spec();
        s.nets.push(NetSpec::virtio(0, "vmbr0"));
        assert!(s.validate().unwrap_err().to_string().contains("net0"));
        let mut s = full_spec();
        s.name = "bad_name".into();
        assert!(s.validate().is_err());
        let mut s = full_spec();
        s.memory_mib = 8;
        assert!(s.validate().is_err());
        let mut s = full_spec();
        s.vmid = Some(5);
        assert!(s.validate().is_err());
        assert!(full_spec().to_params(99).is_err());
    }

    #[test]
    fn config_helpers() {
        let cfg = VmConfig(
            serde_json::from_value::<BTreeMap<String, Value>>(serde_json::json!({
                "name": "x",
                "net0": "virtio=BC:24:11:00:00:10,bridge=vmbr1,firewall=1",
                "net3": "virtio=BC:24:11:00:00:11,bridge=vmbr0",
                "tags": "talos;waddle",
                "digest": "abc",
                "cores": 2
            }))
            .unwrap(),
        );
        assert_eq!(cfg.nets().len(), 2);
        assert_eq!(cfg.net(3).unwrap().bridge.as_deref(), Some("vmbr0"));
        assert_eq!(cfg.tags(), vec!["talos", "waddle"]);
        assert_eq!(cfg.get_str("cores").as_deref(), Some("2"));
        assert_eq!(cfg.digest().as_deref(), Some("abc"));
        assert!(cfg.lock().is_none());
    }
}
