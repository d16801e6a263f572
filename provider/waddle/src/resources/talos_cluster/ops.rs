//! Orchestration of `waddle_talos_cluster`: Proxmox VMs, Talos API calls, health.
//!
//! Every node is handled concurrently (Proxmox mutations are bounded by the client's
//! per-node permits); waiting uses short, growing poll intervals under one overall deadline
//! so the wall time stays close to the slowest node. A failure part-way still returns a
//! state listing every VM and image that exists, so the next apply or destroy cleans up.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use waddle_framework::error_chain;
use waddle_framework::prelude::*;
use waddle_proxmox::{
    Bios, ContentType, DiskSpec, DownloadUrl, EfiDiskSpec, NetSpec, TpmStateSpec, VmSpec,
    WaitOptions,
};
use waddle_talos::api::{
    ApplyMode, ConnectOptions, Credentials, MachineStage, MachineStatus, Proxy, ResetOptions,
    TalosClient, TalosError, CONFIG_PATH,
};
use waddle_talos::secrets::{issue_client_certificate, ADMIN_ROLE, CLIENT_CERT_TTL};
use waddle_talos::{SecretsBundle, SystemClock};

use super::changes::{self, Action};
use super::roll;
use super::{
    effective_mac, image_file_name, model_of, node_ip, to_value, ClientConfigModel, ClusterModel,
    ImageRef, NodeModel, PlacementModel, VmRef,
};
use crate::provider::ProviderConfig;

mod owned;
use owned::{adoptable_vm, cluster_slug};
pub use owned::{owned_image_file_name, owner_mark};
mod address;
pub mod etcd_backup;
pub mod health;
mod imported;
pub mod kube;
pub mod moved;
mod upgrade;

pub use health::health;

use address::{apply_maintenance, apply_maintenance_vm, VmNic};

type R<T> = Result<T, String>;

/// Poll intervals: start small so a fast step is noticed quickly, grow to a cap.
#[derive(Clone, Copy, Debug)]
pub struct Poll {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Poll {
    fn default() -> Self {
        Poll {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(1),
        }
    }
}

/// What one operation works with.
#[derive(Clone)]
pub struct Env {
    pub pve: Option<waddle_proxmox::Client>,
    pub connect: ConnectOptions,
    pub creds: Credentials,
    pub deadline: Instant,
    pub poll: Poll,
    pub cancel: waddle_proxmox::CancellationToken,
    /// The provider's `proxy_url` (Talos connections and the Kubernetes `/readyz` check).
    pub proxy_url: Option<String>,
    /// The provider's default Proxmox VE node.
    pub default_node: Option<String>,
}

/// One attempt's outcome in [`Env::retry`].
pub enum Attempt<T> {
    Done(T),
    Again(String),
    Fatal(String),
}

impl<T> Attempt<T> {
    /// A Proxmox VE error inside a retried step: an API that has stayed unreachable
    /// ([`waddle_proxmox::Error::Unreachable`]) stops the retry at once with that cause; any
    /// other error is tried again, with `why` (the step's own last cause) and the error.
    pub fn from_pve(e: waddle_proxmox::Error, why: String) -> Self {
        if e.is_unreachable() {
            Attempt::Fatal(e.to_string())
        } else {
            tracing::debug!("Proxmox VE (retried): {e}");
            Attempt::Again(why)
        }
    }
}

impl Env {
    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    async fn sleep(&self, d: Duration) -> R<()> {
        let d = d.min(self.remaining());
        tokio::select! {
            _ = self.cancel.cancelled() => Err("cancelled: the provider is stopping".into()),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// Repeat `f` until it is done, fails fatally, or the overall deadline passes.
    pub async fn retry<T, F, Fut>(&self, what: &str, mut f: F) -> R<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let mut interval = self.poll.initial;
        let mut last_reason = String::new();
        loop {
            if self.cancel.is_cancelled() {
                return Err(format!("{what}: cancelled: the provider is stopping"));
            }
            let attempt = tokio::select! {
                _ = self.cancel.cancelled() => Attempt::Fatal("cancelled: the provider is stopping".into()),
                _ = tokio::time::sleep(self.remaining()) => {
                    // The deadline cut an attempt short: the last real cause stays the
                    // reason, not the deadline itself.
                    let last = if last_reason.is_empty() {
                        "the first attempt had not finished".to_string()
                    } else {
                        last_reason.clone()
                    };
                    Attempt::Again(last)
                }
                a = f() => a,
            };
            match attempt {
                Attempt::Done(t) => return Ok(t),
                Attempt::Fatal(e) => return Err(format!("{what}: {e}")),
                Attempt::Again(reason) => {
                    if reason != last_reason {
                        tracing::info!(step = what, "waiting: {reason}");
                        last_reason = reason.clone();
                    }
                    if self.remaining().is_zero() {
                        return Err(format!(
                            "{what}: timed out (the operation's deadline passed); last state: {last_reason}"
                        ));
                    }
                }
            }
            self.sleep(interval).await?;
            interval = (interval.mul_f32(1.5)).min(self.poll.max);
        }
    }

    fn opts(&self) -> ConnectOptions {
        let mut o = self.connect.clone();
        o.cancel = self.cancel.clone();
        o
    }

    pub(super) async fn mtls(&self, ip: &str) -> Result<TalosClient, TalosError> {
        TalosClient::connect(api_addr(ip)?, &self.creds, &self.opts()).await
    }

    /// The Proxmox VE node of a placement (the provider's `node` when not set).
    pub fn pve_node(&self, p: &PlacementModel) -> String {
        p.node
            .clone()
            .or_else(|| self.default_node.clone())
            .unwrap_or_default()
    }

    pub(super) fn pve(&self) -> R<&waddle_proxmox::Client> {
        self.pve.as_ref().ok_or_else(|| {
            "the provider has no Proxmox VE connection configured (endpoint/api_token)".to_string()
        })
    }
}

fn api_addr(ip_or_endpoint: &str) -> Result<SocketAddr, TalosError> {
    waddle_talos::api::parse_endpoint(ip_or_endpoint)
}

fn classify<T>(e: TalosError) -> Attempt<T> {
    if e.is_transient() {
        Attempt::Again(error_chain(&e))
    } else {
        Attempt::Fatal(error_chain(&e))
    }
}

/// Provider config, optional Proxmox client and the Talos connection options.
fn provider_parts(ctx: &Context, needs_pve: bool, diags: &mut Diagnostics) -> Option<Parts> {
    let cfg = ctx
        .provider_data::<ProviderConfig>()
        .cloned()
        .unwrap_or_default();
    let mut opts = ConnectOptions {
        cancel: ctx.cancellation().clone(),
        ..Default::default()
    };
    if let Some(p) = &cfg.proxy_url {
        match Proxy::parse(p) {
            Ok(p) => opts.proxy = Some(p),
            Err(e) => {
                diags.error("Invalid proxy_url", format!("provider proxy_url: {e}"));
                return None;
            }
        }
    }
    let pve = if needs_pve {
        match crate::clients::proxmox_for(&cfg) {
            Ok(c) => Some(c),
            Err(e) => {
                diags.error(
                    "Proxmox VE client not configured",
                    format!(
                        "provider \"waddle\" attribute `{}`: {e}",
                        crate::clients::attribute_of(&e)
                    ),
                );
                return None;
            }
        }
    } else {
        crate::clients::proxmox_for(&cfg).ok()
    };
    Some(Parts {
        pve,
        connect: opts,
        proxy_url: cfg.proxy_url.clone(),
        default_node: cfg.node.clone(),
    })
}

/// What the provider configuration gives an operation.
#[derive(Clone)]
pub struct Parts {
    pub pve: Option<waddle_proxmox::Client>,
    pub connect: ConnectOptions,
    pub proxy_url: Option<String>,
    pub default_node: Option<String>,
}

fn credentials(m: &ClusterModel, bundle: &SecretsBundle) -> R<(Credentials, ClientConfigModel)> {
    if let Some(c) = &m.client_configuration {
        if !c.client_key.is_empty() {
            return Ok((
                Credentials::new(&c.ca_certificate, &c.client_certificate, &c.client_key),
                c.clone(),
            ));
        }
    }
    let ck = issue_client_certificate(bundle, ADMIN_ROLE, &SystemClock, CLIENT_CERT_TTL)
        .map_err(|e| format!("issuing the admin client certificate: {e}"))?;
    let cc = ClientConfigModel {
        ca_certificate: bundle.os_ca.crt.clone(),
        client_certificate: ck.crt.clone(),
        client_key: ck.key.clone(),
    };
    Ok((Credentials::new(&bundle.os_ca.crt, ck.crt, ck.key), cc))
}

pub(super) fn control_planes(m: &ClusterModel) -> Vec<(String, NodeModel)> {
    m.nodes()
        .into_iter()
        .filter(|(_, n)| n.role == "controlplane")
        .collect()
}

fn talosconfig_of(m: &ClusterModel, bundle: &SecretsBundle, cc: &ClientConfigModel) -> R<String> {
    let eps: Vec<String> = control_planes(m)
        .iter()
        .map(|(_, n)| node_ip(n).to_string())
        .collect();
    // Endpoints and default nodes are the control planes: the talosconfig only changes
    // when they do.
    waddle_talos::talosconfig::talosconfig(
        &m.cluster_name,
        &eps,
        &eps,
        bundle,
        &waddle_talos::CertAndKey {
            crt: cc.client_certificate.clone(),
            key: cc.client_key.clone(),
        },
    )
    .map_err(|e| format!("talosconfig: {e}"))
}

fn render_all(m: &ClusterModel, bundle: &SecretsBundle) -> R<BTreeMap<String, String>> {
    super::inputs::render_configs(m, bundle).map_err(|(name, e)| format!("nodes[{name:?}]: {e}"))
}

/// Shared, partially filled record of what exists in Proxmox.
#[derive(Default)]
pub struct Created {
    pub vms: Mutex<BTreeMap<String, VmRef>>,
    pub images: Mutex<BTreeSet<ImageRef>>,
    /// A create (no prior state): images with this cluster's name that exist already were
    /// downloaded by an earlier, interrupted create of this resource and are recorded too.
    pub fresh: bool,
    /// An update of an imported state that was not read back (no nodes): it adopts the
    /// cluster's nodes, and the images with this cluster's name are the cluster's too.
    pub adopting: bool,
}

impl Created {
    fn from_model(m: &ClusterModel) -> Self {
        Created {
            vms: Mutex::new(m.proxmox_vms.clone().unwrap_or_default()),
            images: Mutex::new(
                m.proxmox_images
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            ),
            fresh: false,
            adopting: m.nodes.is_none(),
        }
    }
    fn add_vm(&self, name: &str, r: VmRef) {
        if let Ok(mut v) = self.vms.lock() {
            v.insert(name.to_string(), r);
        }
    }
    fn remove_vm(&self, name: &str) {
        if let Ok(mut v) = self.vms.lock() {
            v.remove(name);
        }
    }
    fn write_into(&self, m: &mut ClusterModel) {
        let vms = self.vms.lock().map(|v| v.clone()).unwrap_or_default();
        m.proxmox_vms = Some(vms);
        m.proxmox_images = Some(
            self.images
                .lock()
                .map(|v| v.iter().cloned().collect())
                .unwrap_or_default(),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Proxmox side
// ---------------------------------------------------------------------------------------

/// Downloads the disk image once per (Proxmox node, image storage) used by `nodes`; returns
/// the volume ids. Images that did not exist before are recorded in `created` (in a create,
/// existing ones too: they carry this cluster's name and are left over from an interrupted
/// create; so in an update adopting the nodes of an import that was not read back).
async fn ensure_images(
    env: &Env,
    m: &ClusterModel,
    nodes: &[(String, NodeModel)],
    created: &Created,
) -> R<BTreeMap<(String, String), String>> {
    let pairs: BTreeSet<(String, String)> = nodes
        .iter()
        .filter_map(|(_, n)| n.proxmox.as_ref())
        .map(|p| (env.pve_node(p), p.image_storage()))
        .collect();
    if pairs.is_empty() {
        return Ok(BTreeMap::new());
    }
    let url = m
        .disk_image_url()
        .ok_or("image.disk_image_url is required for Proxmox nodes")?;
    let (filename, compression) = image_file_name(&url)?;
    let filename = owned_image_file_name(&m.cluster_name, &filename);
    let pve = env.pve()?.clone();
    let req = DownloadUrl {
        content: ContentType::Import,
        filename,
        url,
        checksum: None,
        verify_certificates: None,
        compression,
    };
    let wait = WaitOptions::with_cancel(env.cancel.clone());
    let futs = pairs.into_iter().map(|(node, storage)| {
        let pve = pve.clone();
        let req = req.clone();
        let wait = wait.clone();
        async move {
            let volid = waddle_proxmox::volume_id(&storage, ContentType::Import, &req.filename);
            let existed = pve
                .list_storage_content(&node, &storage, Some("import"))
                .await
                .map(|v| v.iter().any(|x| x.volid == volid))
                .unwrap_or(false);
            tracing::info!(
                node,
                storage,
                volid,
                existed,
                "ensuring the Talos disk image"
            );
            let volid = pve
                .ensure_image_downloaded(&node, &storage, &req, &wait)
                .await
                .map_err(|e| format!("downloading the Talos image to {node}/{storage}: {e}"))?;
            Ok::<_, String>((node, storage, volid, existed))
        }
    });
    let mut out = BTreeMap::new();
    for r in futures::future::join_all(futs).await {
        let (node, storage, volid, existed) = r?;
        if !existed || created.fresh || created.adopting {
            if let Ok(mut i) = created.images.lock() {
                i.insert(ImageRef {
                    node: node.clone(),
                    volume: volid.clone(),
                });
            }
        }
        out.insert((node, storage), volid);
    }
    Ok(out)
}

/// The VM definition of a node.
pub fn vm_spec(m: &ClusterModel, name: &str, n: &NodeModel, volid: &str) -> R<VmSpec> {
    let p = n.proxmox.clone().unwrap_or_default();
    let storage = p.storage();
    let hostname = n.hostname.clone().unwrap_or_else(|| name.to_string());
    let mut spec = VmSpec::new(&hostname, p.cores(), p.memory());
    spec.vmid = p.vmid;
    spec.cpu = Some("host".into());
    spec.machine = Some("q35".into());
    let mut disk = DiskSpec::import(0, &storage, volid);
    disk.size_gib = p.disk_size();
    disk.ssd = true;
    disk.iothread = true;
    spec.disks = vec![disk];
    let mut net = NetSpec::virtio(0, &p.bridge());
    net.mac = effective_mac(&m.cluster_name, name, n);
    spec.nets = vec![net];
    // The static address before the first boot: no DHCP needed (see `address`).
    spec.cloud_init = Some(address::cloud_init(m, n, &storage));
    spec.agent = true;
    spec.boot_order = vec!["scsi0".into()];
    let secure = m.secureboot.unwrap_or(false);
    let encrypted = m.disk_encryption.unwrap_or(false);
    if secure || encrypted {
        spec.bios = Bios::Ovmf;
        // Keys not pre-enrolled: Talos' SecureBoot image enrolls its own in setup mode.
        spec.efidisk = Some(EfiDiskSpec::new(&storage, !secure));
        spec.tpmstate = Some(TpmStateSpec {
            storage: storage.clone(),
        });
    }
    spec.tags = vec!["talos".into(), cluster_slug(&m.cluster_name)];
    spec.description = Some(format!(
        "Talos node {name} of cluster {} (managed by waddle_talos_cluster)",
        m.cluster_name
    ));
    owner_mark(&m.cluster_name, name).apply(&mut spec);
    spec.onboot = Some(true);
    Ok(spec)
}

// ---------------------------------------------------------------------------------------
// Talos side
// ---------------------------------------------------------------------------------------

/// Waits until the node answers with mTLS on `ip`.
pub(super) async fn wait_configured(env: &Env, name: &str, ip: &str) -> R<()> {
    env.retry(
        &format!("nodes[{name:?}]: Talos API with mTLS at {ip}"),
        || async {
            match env.mtls(ip).await {
                Ok(c) => match c.version().await {
                    Ok(_) => Attempt::Done(()),
                    Err(e) => Attempt::Again(e.to_string()),
                },
                Err(e) => Attempt::Again(e.to_string()),
            }
        },
    )
    .await
}

/// Applies `config` to a configured node reached at `ip` (mode AUTO: the node picks the least
/// disruptive way). Returns whether it reboots.
async fn apply_configured(env: &Env, name: &str, ip: &str, config: &str) -> R<bool> {
    env.retry(&format!("nodes[{name:?}]: apply configuration"), || async {
        let c = match env.mtls(ip).await {
            Ok(c) => c,
            Err(e) => return classify(e),
        };
        match c.apply_configuration(config, ApplyMode::Auto).await {
            Ok(o) => Attempt::Done(o.mode == Some(ApplyMode::Reboot)),
            Err(e) => classify(e),
        }
    })
    .await
}

/// Whether the node already answers with the cluster's credentials (quick, one attempt).
async fn answers_mtls(env: &Env, ip: &str) -> bool {
    match env.mtls(ip).await {
        Ok(c) => c.version().await.is_ok(),
        Err(_) => false,
    }
}

/// Brings one node from nothing (or an existing machine) to a configured Talos node.
async fn provision_node(
    env: &Env,
    m: &ClusterModel,
    name: &str,
    n: &NodeModel,
    config: &str,
    images: &BTreeMap<(String, String), String>,
    created: &Created,
) -> R<()> {
    let started = Instant::now();
    let ip = node_ip(n).to_string();
    let maintenance = n.maintenance_address.clone();
    let mut applied = false;
    if let Some(p) = &n.proxmox {
        let pve = env.pve()?.clone();
        let pnode = env.pve_node(p);
        if pnode.is_empty() {
            return Err("no Proxmox VE node: set proxmox.node or the provider's node".into());
        }
        let recorded = created
            .vms
            .lock()
            .ok()
            .and_then(|v| v.get(name).map(|x| x.vmid));
        let existing = adoptable_vm(&pve, m, name, n, (p.vmid, recorded), created.fresh).await?;
        let vmid = match existing {
            Some(vm) => {
                tracing::info!(node = name, vmid = vm.vmid, "adopting the existing VM");
                created.add_vm(
                    name,
                    VmRef {
                        node: vm.node.clone(),
                        vmid: vm.vmid,
                    },
                );
                if answers_mtls(env, &ip).await {
                    apply_configured(env, name, &ip, config).await?;
                    return wait_configured(env, name, &ip).await;
                }
                vm.vmid
            }
            None => {
                let volid = images
                    .get(&(pnode.clone(), p.image_storage()))
                    .ok_or("the disk image was not downloaded")?;
                let spec = vm_spec(m, name, n, volid)?;
                let wait = WaitOptions::with_cancel(env.cancel.clone());
                let vmid = match pve.create_vm_with(&pnode, &spec, &wait).await {
                    Ok(v) => v,
                    Err(e) => {
                        if let Some(vmid) = e.created_vmid() {
                            // The VM exists: record it so destroy or the next apply finds it.
                            let node = pnode.clone();
                            created.add_vm(name, VmRef { node, vmid });
                        }
                        return Err(format!("creating the VM: {e}"));
                    }
                };
                created.add_vm(
                    name,
                    VmRef {
                        node: pnode.clone(),
                        vmid,
                    },
                );
                tracing::info!(node = name, vmid, "VM created");
                vmid
            }
        };
        pve.start_vm(&pnode, vmid)
            .await
            .map_err(|e| format!("starting VM {vmid}: {e}"))?;
        let mac = effective_mac(&m.cluster_name, name, n);
        let vm = VmNic {
            pve: &pve,
            node: &pnode,
            vmid,
            mac: mac.as_deref(),
        };
        let addr = apply_maintenance_vm(env, name, &ip, &vm, config).await?;
        tracing::info!(node = name, vmid, addr, "configured in maintenance mode");
        applied = true;
    }
    match maintenance {
        _ if applied => wait_configured(env, name, &ip).await?,
        Some(addr) => {
            apply_maintenance(env, name, &addr, config).await?;
            wait_configured(env, name, &ip).await?;
        }
        None => {
            // An existing, configured node.
            apply_configured(env, name, &ip, config).await?;
            wait_configured(env, name, &ip).await?;
        }
    }
    tracing::info!(
        node = name,
        seconds = started.elapsed().as_secs_f64(),
        "node configured"
    );
    Ok(())
}

pub(super) async fn provision_all(
    env: &Env,
    m: &ClusterModel,
    nodes: &[(String, NodeModel)],
    configs: &BTreeMap<String, String>,
    created: &Created,
) -> Vec<(String, String)> {
    let started = Instant::now();
    let images = match ensure_images(env, m, nodes, created).await {
        Ok(i) => i,
        Err(e) => return nodes.iter().map(|(k, _)| (k.clone(), e.clone())).collect(),
    };
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "disk images ready"
    );
    let futs = nodes.iter().map(|(name, n)| {
        let images = &images;
        async move {
            let cfg = configs.get(name).map(String::as_str).unwrap_or_default();
            provision_node(env, m, name, n, cfg, images, created)
                .await
                .map_err(|e| (name.clone(), format!("nodes[{name:?}]: {e}")))
        }
    });
    futures::future::join_all(futs)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect()
}

/// Bootstraps etcd on `ip` (FailedPrecondition: retry; AlreadyExists: done).
pub async fn bootstrap(env: &Env, ip: &str) -> R<()> {
    env.retry(&format!("bootstrap etcd on {ip}"), || async {
        let c = match env.mtls(ip).await {
            Ok(c) => c,
            Err(e) => return Attempt::Again(e.to_string()),
        };
        match c.bootstrap().await {
            Ok(()) => Attempt::Done(()),
            Err(e) if e.is_already_exists() => Attempt::Done(()),
            Err(e) if e.is_failed_precondition() || e.is_transient() => {
                Attempt::Again(e.to_string())
            }
            Err(e) => Attempt::Fatal(e.to_string()),
        }
    })
    .await
}

pub(super) async fn node_health(env: &Env, name: &str, n: &NodeModel) -> Result<(), String> {
    let c = env
        .mtls(node_ip(n))
        .await
        .map_err(|e| format!("nodes[{name:?}]: {e}"))?;
    let services = c
        .services()
        .await
        .map_err(|e| format!("nodes[{name:?}]: {e}"))?;
    let mut want = vec!["apid", "kubelet"];
    if n.role == "controlplane" {
        want.push("etcd");
    }
    for id in want {
        match services.iter().find(|s| s.id == id) {
            Some(s) if s.state == "Running" && s.healthy != Some(false) => {}
            Some(s) => {
                return Err(format!(
                    "nodes[{name:?}]: service {id} is {} ({})",
                    s.state, s.message
                ))
            }
            None => return Err(format!("nodes[{name:?}]: service {id} not started yet")),
        }
    }
    Ok(())
}

/// Boot done on a node: its `MachineStatus` stage is `running` (what `talosctl health`'s
/// "all nodes to finish boot sequence" checks). `ready` is not required: its readiness
/// checks include the Kubernetes Node being Ready, which never happens with CNI `none`
/// until a CNI is installed; unmet conditions are only reported.
pub(super) async fn node_booted(
    env: &Env,
    name: &str,
    n: &NodeModel,
) -> Result<MachineStatus, String> {
    let c = env
        .mtls(node_ip(n))
        .await
        .map_err(|e| format!("nodes[{name:?}]: {e}"))?;
    let st = c
        .machine_status()
        .await
        .map_err(|e| format!("nodes[{name:?}]: machine status: {e}"))?;
    if st.stage == MachineStage::Running {
        Ok(st)
    } else {
        Err(format!("nodes[{name:?}]: boot not done ({st})"))
    }
}

pub(super) async fn readyz(
    env: &Env,
    endpoint: &str,
    bundle: &SecretsBundle,
) -> Result<(), String> {
    let ca = reqwest::Certificate::from_pem(bundle.k8s_ca.crt.as_bytes())
        .map_err(|e| format!("kubernetes CA: {e}"))?;
    let mut b = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(5));
    b = match &env.proxy_url {
        Some(u) => b.proxy(reqwest::Proxy::all(u).map_err(|e| e.to_string())?),
        None => b.no_proxy(),
    };
    let client = b.build().map_err(|e| e.to_string())?;
    let url = format!("{}/readyz", endpoint.trim_end_matches('/'));
    let r = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("Kubernetes API {url}: {}", error_chain(&e)))?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(format!("Kubernetes API {url}: HTTP {}", r.status()))
    }
}

async fn fetch_kubeconfig(env: &Env, ip: &str) -> R<String> {
    env.retry("kubeconfig", || async {
        let c = match env.mtls(ip).await {
            Ok(c) => c,
            Err(e) => return Attempt::Again(e.to_string()),
        };
        match c.kubeconfig().await {
            Ok(b) => match String::from_utf8(b) {
                Ok(s) => Attempt::Done(s),
                Err(_) => Attempt::Fatal("the kubeconfig is not UTF-8".into()),
            },
            Err(e) if e.is_transient() || e.is_failed_precondition() => {
                Attempt::Again(e.to_string())
            }
            Err(e) => Attempt::Fatal(e.to_string()),
        }
    })
    .await
}

/// Bootstrap (unless done), health, kubeconfig.
async fn finish(
    env: &Env,
    m: &mut ClusterModel,
    bundle: &SecretsBundle,
    refresh_kubeconfig: bool,
) -> R<()> {
    let cps = control_planes(m);
    let Some((_, first)) = cps.first().cloned() else {
        return Err("no control plane".into());
    };
    if m.bootstrapped != Some(true) {
        let started = Instant::now();
        bootstrap(env, node_ip(&first)).await?;
        m.bootstrapped = Some(true);
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            "etcd bootstrapped"
        );
    }
    health(env, m, bundle).await?;
    if refresh_kubeconfig || m.kubeconfig.is_none() {
        let started = Instant::now();
        m.kubeconfig = Some(fetch_kubeconfig(env, node_ip(&first)).await?);
        tracing::info!(
            seconds = started.elapsed().as_secs_f64(),
            "kubeconfig fetched"
        );
    }
    Ok(())
}

fn make_env(parts: Parts, creds: Credentials, timeout: Duration, ctx: &Context) -> Env {
    Env {
        pve: parts.pve,
        connect: parts.connect,
        creds,
        deadline: Instant::now() + timeout,
        poll: Poll::default(),
        cancel: ctx.cancellation().clone(),
        proxy_url: parts.proxy_url,
        default_node: parts.default_node,
    }
}

fn bundle_of(m: &ClusterModel) -> R<SecretsBundle> {
    let s = m
        .machine_secrets
        .as_deref()
        .ok_or("the state has no machine_secrets")?;
    SecretsBundle::from_yaml(s).map_err(|e| format!("machine_secrets: {e}"))
}

// ---------------------------------------------------------------------------------------
// Create
// ---------------------------------------------------------------------------------------

pub async fn create(ctx: &Context, req: CreateRequest, diags: &mut Diagnostics) -> Option<Value> {
    let mut m = model_of(&req.planned_state)?;
    let nodes = m.nodes();
    let needs_pve = nodes.values().any(|n| n.proxmox.is_some());
    let parts = provider_parts(ctx, needs_pve, diags)?;

    let bundle = match &m.machine_secrets {
        Some(s) => match SecretsBundle::from_yaml(s) {
            Ok(b) => b,
            Err(e) => {
                diags.error_at(
                    AttributePath::attr("machine_secrets"),
                    "Invalid secrets bundle",
                    e.to_string(),
                );
                return None;
            }
        },
        None => match tokio::task::spawn_blocking(|| SecretsBundle::generate(&SystemClock)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                diags.error("Generating the cluster secrets failed", e.to_string());
                return None;
            }
            Err(e) => {
                diags.error("Generating the cluster secrets failed", e.to_string());
                return None;
            }
        },
    };
    let yaml = match bundle.to_yaml() {
        Ok(y) => y,
        Err(e) => {
            diags.error("Encoding the cluster secrets failed", e.to_string());
            return None;
        }
    };
    m.machine_secrets = Some(yaml);
    m.id = Some(m.cluster_name.clone());
    let configs = match render_all(&m, &bundle) {
        Ok(c) => c,
        Err(e) => {
            diags.error("Rendering the machine configuration failed", e);
            return None;
        }
    };
    m.machine_configurations = Some(configs.clone());
    m.node_addresses = Some(
        nodes
            .iter()
            .map(|(k, n)| (k.clone(), node_ip(n).to_string()))
            .collect(),
    );
    let (creds, cc) = match credentials(&m, &bundle) {
        Ok(x) => x,
        Err(e) => {
            diags.error("Client certificate", e);
            return None;
        }
    };
    m.client_configuration = Some(cc.clone());
    match talosconfig_of(&m, &bundle, &cc) {
        Ok(t) => m.talosconfig = Some(t),
        Err(e) => {
            diags.error("talosconfig", e);
            return None;
        }
    }
    m.bootstrapped = Some(false);
    m.node_versions = super::upgrade::planned(None, &m);
    m.etcd_snapshots = Some(Vec::new());
    let env = make_env(parts, creds, m.timeout(super::Op::Create), ctx);
    let created = Created {
        fresh: true,
        ..Default::default()
    };
    let started = Instant::now();
    let list: Vec<(String, NodeModel)> = nodes.into_iter().collect();
    let errors: Vec<String> = provision_all(&env, &m, &list, &configs, &created)
        .await
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    created.write_into(&mut m);
    if !errors.is_empty() {
        for e in errors {
            diags.error("Creating the Talos cluster failed", e);
        }
        m.kubeconfig = Some(String::new());
        return to_value(&m, diags);
    }
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "all nodes configured"
    );
    if let Some(r) = m.etcd_restore.clone() {
        if let Err(e) = etcd_backup::restore(&env, &m, &r).await {
            diags.error("Restoring etcd failed", e);
            // Not restored: the next plan shows the restore again.
            m.etcd_restore = None;
            m.kubeconfig = Some(String::new());
            return to_value(&m, diags);
        }
        m.bootstrapped = Some(true);
    }
    match finish(&env, &mut m, &bundle, true).await {
        Err(e) => {
            diags.error("Creating the Talos cluster failed", e);
            if m.kubeconfig.is_none() {
                m.kubeconfig = Some(String::new());
            }
        }
        Ok(()) if takes_every_apply(&m) => {
            if let Err(e) = etcd_backup::take(&env, &mut m, super::etcd::EVERY_APPLY).await {
                diags.error("etcd snapshot failed", e);
            }
        }
        Ok(()) => {}
    }
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "create done");
    to_value(&m, diags)
}

// ---------------------------------------------------------------------------------------
// Update
// ---------------------------------------------------------------------------------------

async fn reset_node(env: &Env, name: &str, ip: &str, graceful: bool) -> R<()> {
    let c = env
        .mtls(ip)
        .await
        .map_err(|e| format!("nodes[{name:?}]: {e}"))?;
    c.reset(&ResetOptions {
        graceful,
        reboot: false,
        system_partitions_to_wipe: Vec::new(),
    })
    .await
    .map_err(|e| format!("nodes[{name:?}]: reset: {e}"))
}

/// Removes a node from the cluster: leave etcd (control planes), reset, delete its VM.
pub(super) async fn remove_node(
    env: &Env,
    m: &ClusterModel,
    name: &str,
    n: &NodeModel,
    remaining_cp: Option<&NodeModel>,
    created: &Created,
    warnings: &mut Vec<String>,
) -> R<()> {
    let ip = node_ip(n).to_string();
    let hostname = n.hostname.clone().unwrap_or_else(|| name.to_string());
    if n.role == "controlplane" {
        match env.mtls(&ip).await {
            Ok(c) => {
                if let Err(e) = c.etcd_leave().await {
                    warnings.push(format!("nodes[{name:?}]: etcd leave: {e}"));
                }
            }
            Err(e) => warnings.push(format!("nodes[{name:?}]: {e}")),
        }
        // Make sure the member is gone (the node may have been unreachable).
        if let Some(cp) = remaining_cp {
            if let Ok(c) = env.mtls(node_ip(cp)).await {
                if let Ok(members) = c.etcd_members().await {
                    for mem in members.iter().filter(|x| x.hostname == hostname) {
                        if let Err(e) = c.etcd_remove_member(mem.id).await {
                            warnings.push(format!("nodes[{name:?}]: etcd remove member: {e}"));
                        }
                    }
                }
            }
        }
    }
    if m.on_destroy() != "none" {
        let graceful = m.on_destroy() == "graceful" && n.role != "controlplane";
        if let Err(e) = reset_node(env, name, &ip, graceful).await {
            warnings.push(e);
        }
    }
    // The node has left etcd and stopped: its Kubernetes Node object goes, before its VM.
    if let Some(w) = delete_kube_node(env, m, name, &hostname).await {
        warnings.push(w);
    }
    let vm = created.vms.lock().ok().and_then(|v| v.get(name).cloned());
    if let Some(vm) = vm {
        let pve = env.pve()?;
        let mark = owner_mark(&m.cluster_name, name);
        pve.shutdown_and_delete_vm(vm.vmid, Duration::from_secs(30), &mark, Some(&hostname))
            .await
            .map_err(|e| format!("nodes[{name:?}]: deleting VM {}: {e}", vm.vmid))?;
        created.remove_vm(name);
        tracing::info!(node = name, vmid = vm.vmid, "VM deleted");
    }
    Ok(())
}

/// Deletes the Kubernetes Node object of a removed node with the admin kubeconfig (three
/// attempts); a warning naming the `kubectl` command when it could not.
async fn delete_kube_node(
    env: &Env,
    m: &ClusterModel,
    name: &str,
    hostname: &str,
) -> Option<String> {
    let kc = m.kubeconfig.as_deref().filter(|k| !k.is_empty())?;
    let undone = |e: &str| {
        format!(
            "nodes[{name:?}]: its Kubernetes Node object {hostname:?} was not deleted ({e}); \
             delete it with `kubectl delete node {hostname}`"
        )
    };
    let admin = match kube::KubeAdmin::from_kubeconfig(kc, env.proxy_url.as_deref()) {
        Ok(a) => a,
        Err(e) => return Some(undone(&e.to_string())),
    };
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 && env.sleep(Duration::from_secs(1)).await.is_err() {
            break;
        }
        match admin.delete_node(hostname).await {
            Ok(existed) => {
                tracing::info!(node = name, existed, "Kubernetes Node object deleted");
                return None;
            }
            Err(e) => last = e,
        }
    }
    Some(undone(&last))
}

/// The etcd snapshot an update takes before an upgrade (`etcd_backup.when` has
/// `before_upgrade` and `talos_version` or `kubernetes_version` changes).
fn snapshot_before_upgrade(prior: &ClusterModel, m: &ClusterModel) -> bool {
    prior.bootstrapped == Some(true)
        && m.etcd_backup
            .as_ref()
            .is_some_and(|b| b.takes(super::etcd::BEFORE_UPGRADE))
        && (prior.talos_version != m.talos_version
            || prior.kubernetes_version != m.kubernetes_version)
}

fn takes_every_apply(m: &ClusterModel) -> bool {
    m.etcd_backup
        .as_ref()
        .is_some_and(|b| b.takes(super::etcd::EVERY_APPLY))
}

pub async fn update(ctx: &Context, req: UpdateRequest, diags: &mut Diagnostics) -> Option<Value> {
    let (Some(prior), Some(mut m)) = (model_of(&req.prior_state), model_of(&req.planned_state))
    else {
        diags.error(
            "Updating the Talos cluster failed",
            "the prior state or the plan cannot be decoded; nothing was changed",
        );
        return None;
    };
    // Keep computed values the plan left unknown.
    m.machine_secrets = m.machine_secrets.or(prior.machine_secrets.clone());
    m.client_configuration = prior.client_configuration.clone();
    m.kubeconfig = prior.kubeconfig.clone().filter(|k| !k.is_empty());
    m.bootstrapped = prior.bootstrapped;
    m.etcd_snapshots = prior.etcd_snapshots.clone();
    m.id = Some(m.cluster_name.clone());
    let bundle = match bundle_of(&m) {
        Ok(b) => b,
        Err(e) => {
            diags.error("Updating the Talos cluster failed", e);
            return None;
        }
    };
    let new_nodes = m.nodes();
    let old_nodes = prior.nodes();
    let needs_pve = new_nodes
        .values()
        .chain(old_nodes.values())
        .any(|n| n.proxmox.is_some())
        || prior.proxmox_vms.as_ref().is_some_and(|v| !v.is_empty());
    let parts = provider_parts(ctx, needs_pve, diags)?;
    let configs = match render_all(&m, &bundle) {
        Ok(c) => c,
        Err(e) => {
            diags.error("Rendering the machine configuration failed", e);
            return None;
        }
    };
    let (creds, cc) = match credentials(&m, &bundle) {
        Ok(x) => x,
        Err(e) => {
            diags.error("Client certificate", e);
            return None;
        }
    };
    m.client_configuration = Some(cc.clone());
    m.machine_configurations = Some(configs.clone());
    m.node_addresses = Some(
        new_nodes
            .iter()
            .map(|(k, n)| (k.clone(), node_ip(n).to_string()))
            .collect(),
    );
    if m.talosconfig.is_none() {
        match talosconfig_of(&m, &bundle, &cc) {
            Ok(t) => m.talosconfig = Some(t),
            Err(e) => {
                diags.error("talosconfig", e);
                return None;
            }
        }
    }
    let env = make_env(parts, creds, m.timeout(super::Op::Update), ctx);
    // The removed-APIs pre-check of a Kubernetes minor upgrade, before anything changes.
    match upgrade::removed_apis_check(
        &env,
        prior.kubernetes_version.as_deref(),
        m.kubernetes_version.as_deref(),
        prior.kubeconfig.as_deref(),
    )
    .await
    {
        Ok(None) => {}
        Ok(Some(w)) => diags.warning("Removed Kubernetes APIs not checked", w),
        Err(e) => {
            diags.error("Kubernetes upgrade refused: removed APIs in use", e);
            return to_value(&prior, diags);
        }
    }
    if snapshot_before_upgrade(&prior, &m) {
        if let Err(e) = etcd_backup::take(&env, &mut m, super::etcd::BEFORE_UPGRADE).await {
            diags.error(
                "etcd snapshot before the upgrade failed: nothing was changed",
                format!(
                    "{e}. Remove \"before_upgrade\" from etcd_backup.when to upgrade without a \
                     snapshot."
                ),
            );
            let mut unchanged = prior.clone();
            unchanged.etcd_snapshots = m.etcd_snapshots.clone();
            return to_value(&unchanged, diags);
        }
    }
    let restoring =
        super::etcd::restore_requested(prior.etcd_restore.as_ref(), m.etcd_restore.as_ref());
    // Every control plane is new (their VMs were gone, so the read dropped them): etcd
    // starts from nothing, restored from a snapshot or bootstrapped empty.
    let fresh_etcd = prior.nodes.is_some()
        && control_planes(&prior).is_empty()
        && prior.bootstrapped == Some(true);
    let created = Created::from_model(&prior);
    let mut errors = Vec::new();
    let mut warnings = Vec::new();

    let actions = changes::classify(&prior, &m, env.default_node.as_deref());
    m.node_status = Some(changes::node_status(
        &m,
        prior.node_status.as_ref(),
        &actions,
    ));
    if let Some(mut s) = m.node_status.take() {
        super::upgrade::annotate_status(&mut s, &prior, &m, &actions);
        m.node_status = Some(s);
    }
    // What every node runs: the target once its upgrades are done (see `versions`).
    let versions = Versions::new(&prior, &m, &actions);
    let action_is = |k: &str, want: fn(&Action) -> bool| actions.get(k).is_some_and(want);
    let named = |want: fn(&Action) -> bool, nodes: &BTreeMap<String, NodeModel>| {
        nodes
            .iter()
            .filter(|(k, _)| action_is(k, want))
            .map(|(k, n)| (k.clone(), n.clone()))
            .collect::<Vec<_>>()
    };
    // Nodes whose planned change did not happen: their prior state is written back so the
    // next plan shows the change again.
    let mut not_done: BTreeSet<String> = BTreeSet::new();
    let mut not_reconfigured: Vec<String> = Vec::new();
    let added = named(|a| *a == Action::Create, &new_nodes);
    let taken: BTreeSet<&str> = added.iter().map(|(_, n)| node_ip(n)).collect();
    // 1. Removals that must come first: workers, and nodes whose address a new node takes.
    //    Control planes otherwise leave after the additions (add, then remove).
    let (first, late): (Vec<_>, Vec<_>) = named(|a| *a == Action::Remove, &old_nodes)
        .into_iter()
        .partition(|(_, n)| n.role != "controlplane" || taken.contains(node_ip(n)));
    let anchor = |not_done: &BTreeSet<String>| {
        new_nodes
            .iter()
            .find(|(k, n)| {
                n.role == "controlplane"
                    && !not_done.contains(*k)
                    && !action_is(k, |a| *a == Action::Create)
            })
            .map(|(_, n)| n.clone())
    };
    for (name, n) in &first {
        tracing::info!(node = name, "removing node");
        let cp = anchor(&not_done);
        if let Err(e) =
            remove_node(&env, &prior, name, n, cp.as_ref(), &created, &mut warnings).await
        {
            errors.push(e);
            not_done.insert(name.clone());
        }
    }
    // 2. Additions (concurrently).
    if !errors.is_empty() {
        not_done.extend(added.iter().map(|(k, _)| k.clone()));
    } else if !added.is_empty() {
        for (name, e) in provision_all(&env, &m, &added, &configs, &created).await {
            not_done.insert(name);
            errors.push(e);
        }
    }
    // 3. Resizes and re-creations, one node at a time.
    let rolling = named(
        |a| matches!(a, Action::Resize(_) | Action::Recreate(_)),
        &new_nodes,
    );
    if !errors.is_empty() {
        not_done.extend(rolling.iter().map(|(k, _)| k.clone()));
    } else if !rolling.is_empty() {
        let input = roll::RollInput {
            prior: &prior,
            m: &m,
            actions: &actions,
            configs: &configs,
            created: &created,
        };
        let r = roll::roll(&env, input, &mut warnings).await;
        not_done.extend(
            rolling
                .iter()
                .filter(|(k, _)| !r.done.contains(k))
                .map(|(k, _)| k.clone()),
        );
        errors.extend(r.error);
    }
    // 4. Control planes leaving, one at a time.
    for (name, n) in &late {
        if !errors.is_empty() {
            not_done.insert(name.clone());
            continue;
        }
        tracing::info!(node = name, "removing control plane");
        let cp = anchor(&not_done);
        if let Err(e) =
            remove_node(&env, &prior, name, n, cp.as_ref(), &created, &mut warnings).await
        {
            errors.push(e);
            not_done.insert(name.clone());
        }
    }
    // 4b. Talos upgrades, in place: control planes one at a time, then workers in batches.
    let mut records = versions.records.clone();
    let talos_todo = versions.talos_todo(&old_nodes, &not_done);
    if !talos_todo.is_empty() && errors.is_empty() {
        let cps_now = versions.control_planes_now(&old_nodes, &new_nodes, &not_done);
        let opts = super::upgrade::Options::of(&m);
        let r = match upgrade::drain_client(&env, &opts, prior.kubeconfig.as_deref()) {
            Ok(kube) => {
                let (records, target) = (&records, &versions.target);
                upgrade::roll_talos(
                    &env,
                    &cps_now,
                    &talos_todo,
                    records,
                    target,
                    &opts,
                    kube.as_ref(),
                )
                .await
            }
            Err(e) => upgrade::Rolled {
                done: Vec::new(),
                error: Some(e),
            },
        };
        for k in &r.done {
            if let Some(rec) = records.get_mut(k) {
                rec.talos_version = versions.target.talos_version.clone();
                rec.installer = versions.target.installer.clone();
            }
        }
        errors.extend(r.error);
    }
    // 5. Configuration changes: control planes one at a time, then workers (concurrently;
    //    one at a time when the Kubernetes version changes: kubelets node by node). A
    //    Kubernetes upgrade first gives every control plane the new control-plane components
    //    (`talosctl upgrade-k8s` order), then the kubelets follow with the full configuration.
    let old_configs = prior.machine_configurations.clone().unwrap_or_default();
    let changed: Vec<(String, NodeModel)> = named(
        |a| matches!(a, Action::Keep | Action::Resize(_)),
        &new_nodes,
    )
    .into_iter()
    .filter(|(k, _)| match (old_configs.get(k), configs.get(k)) {
        (Some(a), Some(b)) => !super::inputs::same_applied(a, b),
        _ => true,
    })
    .collect();
    let k8s_todo = versions.k8s_todo();
    let old_ips: BTreeMap<String, String> = old_nodes
        .iter()
        .map(|(k, n)| (k.clone(), node_ip(n).to_string()))
        .collect();
    if errors.is_empty() && !k8s_todo.is_empty() {
        let cps: Vec<(String, NodeModel)> = changed
            .iter()
            .filter(|(k, n)| n.role == "controlplane" && k8s_todo.contains(k))
            .cloned()
            .collect();
        let old_k8s = prior.kubernetes_version.clone().unwrap_or_default();
        let new_k8s = m.kubernetes_version.clone().unwrap_or_default();
        let r = upgrade::roll_control_plane_components(
            &env, &cps, &old_ips, &configs, &old_k8s, &new_k8s,
        )
        .await;
        errors.extend(r.error);
    }
    if !errors.is_empty() {
        not_reconfigured.extend(changed.iter().map(|(k, _)| k.clone()));
    } else {
        let apply_one = |name: String, n: NodeModel| {
            let env = &env;
            let configs = &configs;
            let old_ip = old_ips
                .get(&name)
                .cloned()
                .unwrap_or_else(|| node_ip(&n).to_string());
            async move {
                let cfg = configs.get(&name).cloned().unwrap_or_default();
                let rebooting = apply_configured(env, &name, &old_ip, &cfg).await?;
                if rebooting {
                    tracing::info!(node = name, "configuration applied, node reboots");
                }
                wait_configured(env, &name, node_ip(&n)).await?;
                env.retry(&format!("nodes[{name:?}]: services healthy"), || async {
                    match node_health(env, &name, &n).await {
                        Ok(()) => Attempt::Done(()),
                        Err(e) => Attempt::Again(e),
                    }
                })
                .await?;
                Ok::<_, String>(())
            }
        };
        let (cps, workers): (Vec<_>, Vec<_>) = changed
            .into_iter()
            .partition(|(_, n)| n.role == "controlplane");
        let mut failed = false;
        for (k, n) in cps {
            if failed {
                not_reconfigured.push(k);
                continue;
            }
            match apply_one(k.clone(), n).await {
                Ok(()) => versions.kubelet_done(&mut records, &k),
                Err(e) => {
                    errors.push(e);
                    not_reconfigured.push(k);
                    failed = true; // keep etcd quorum: no further control plane
                }
            }
        }
        if failed {
            not_reconfigured.extend(workers.into_iter().map(|(k, _)| k));
        } else if !k8s_todo.is_empty() {
            // Kubelets node by node.
            for (k, n) in workers {
                if failed {
                    not_reconfigured.push(k);
                    continue;
                }
                match apply_one(k.clone(), n).await {
                    Ok(()) => versions.kubelet_done(&mut records, &k),
                    Err(e) => {
                        errors.push(e);
                        not_reconfigured.push(k);
                        failed = true;
                    }
                }
            }
        } else {
            let results = futures::future::join_all(workers.into_iter().map(|(k, n)| {
                let name = k.clone();
                let f = apply_one(k, n);
                async move { f.await.map_err(|e| (name, e)) }
            }))
            .await;
            for (name, e) in results.into_iter().filter_map(Result::err) {
                not_reconfigured.push(name);
                errors.push(e);
            }
        }
    }
    versions.finish(&mut m, &prior, records);
    record_not_done(&mut m, &prior, &not_done, &not_reconfigured);
    for w in warnings {
        diags.warning("Node removal", w);
    }
    created.write_into(&mut m);
    if let (true, Some(r)) = (errors.is_empty() && restoring, m.etcd_restore.clone()) {
        match etcd_backup::restore(&env, &m, &r).await {
            Ok(()) => m.bootstrapped = Some(true),
            Err(e) => errors.push(e),
        }
    } else if errors.is_empty() && fresh_etcd {
        diags.warning(
            "etcd starts empty",
            "every control plane of this cluster is new (their VMs were gone): etcd is \
             bootstrapped again, without the cluster's former data. To recover that data \
             instead, set etcd_restore to a snapshot (see the etcd recovery guide).",
        );
        m.bootstrapped = Some(false);
    }
    if restoring && !errors.is_empty() {
        // Not restored: the next plan shows the restore again.
        m.etcd_restore = prior.etcd_restore.clone();
    }
    if errors.is_empty() {
        let endpoint_changed = prior.endpoint != m.endpoint;
        if let Err(e) = finish(&env, &mut m, &bundle, endpoint_changed || fresh_etcd).await {
            errors.push(e);
        } else if takes_every_apply(&m) {
            if let Err(e) = etcd_backup::take(&env, &mut m, super::etcd::EVERY_APPLY).await {
                errors.push(e);
            }
        }
    }
    if m.kubeconfig.is_none() {
        m.kubeconfig = Some(String::new());
    }
    for e in errors {
        diags.error("Updating the Talos cluster failed", e);
    }
    to_value(&m, diags)
}

/// Writes the prior state of the nodes whose change did not happen back into `m` (node,
/// machine configuration, address, `node_status` marked `not done: ...`), so the next plan
/// shows the remaining work.
fn record_not_done(
    m: &mut ClusterModel,
    prior: &ClusterModel,
    not_done: &BTreeSet<String>,
    not_reconfigured: &[String],
) {
    let old_nodes = prior.nodes();
    let old_configs = prior.machine_configurations.clone().unwrap_or_default();
    let old_status = changes::node_status(prior, prior.node_status.as_ref(), &BTreeMap::new());
    let planned_status = m.node_status.clone().unwrap_or_default();
    let mut nodes = m.nodes();
    let mut cfgs = m.machine_configurations.clone().unwrap_or_default();
    let mut status = planned_status.clone();
    for name in not_done.iter().chain(not_reconfigured) {
        match old_configs
            .get(name)
            .filter(|_| old_nodes.contains_key(name))
        {
            Some(c) => cfgs.insert(name.clone(), c.clone()),
            None => cfgs.remove(name),
        };
    }
    for name in not_done {
        match (old_nodes.get(name), nodes.contains_key(name)) {
            (Some(o), still_configured) => {
                nodes.insert(name.clone(), o.clone());
                let mut s = old_status.get(name).cloned().unwrap_or_default();
                if still_configured {
                    if let Some(p) = planned_status.get(name).and_then(|p| p.action.clone()) {
                        s.action = Some(format!("not done: {p}"));
                    }
                }
                status.insert(name.clone(), s);
            }
            (None, _) => {
                nodes.remove(name);
                status.remove(name);
            }
        }
    }
    m.node_addresses = Some(
        nodes
            .iter()
            .map(|(k, n)| (k.clone(), node_ip(n).to_string()))
            .collect(),
    );
    m.nodes = Some(nodes);
    m.machine_configurations = Some(cfgs);
    m.node_status = Some(status);
}

/// The per-node version records of an update: where each node starts, what it must reach.
struct Versions {
    target: super::upgrade::NodeVersionModel,
    records: BTreeMap<String, super::upgrade::NodeVersionModel>,
    /// Whether the state records versions after this update (see `upgrade::planned`).
    recorded: bool,
}

impl Versions {
    fn new(prior: &ClusterModel, m: &ClusterModel, actions: &BTreeMap<String, Action>) -> Self {
        let target = super::upgrade::target(m);
        let ups = super::upgrade::upgrades(prior, m, actions);
        let records = m
            .nodes()
            .keys()
            .map(|k| {
                let r = ups
                    .get(k)
                    .map(|(from, _)| from.clone())
                    .unwrap_or_else(|| target.clone());
                (k.clone(), r)
            })
            .collect();
        Versions {
            target,
            records,
            recorded: super::upgrade::planned(Some(prior), m).is_some(),
        }
    }

    /// Kept nodes whose Talos OS changes (at their current address), in name order.
    fn talos_todo(
        &self,
        old_nodes: &BTreeMap<String, NodeModel>,
        not_done: &BTreeSet<String>,
    ) -> Vec<(String, NodeModel)> {
        self.records
            .iter()
            .filter(|(k, r)| {
                !not_done.contains(*k) && super::upgrade::changes_of(r, &self.target).0
            })
            .filter_map(|(k, _)| old_nodes.get(k).map(|n| (k.clone(), n.clone())))
            .collect()
    }

    /// Nodes whose Kubernetes version changes.
    fn k8s_todo(&self) -> BTreeSet<String> {
        self.records
            .iter()
            .filter(|(_, r)| super::upgrade::changes_of(r, &self.target).1)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The control planes of the cluster as it is now (added ones included), at the address
    /// they answer on now.
    fn control_planes_now(
        &self,
        old_nodes: &BTreeMap<String, NodeModel>,
        new_nodes: &BTreeMap<String, NodeModel>,
        not_done: &BTreeSet<String>,
    ) -> Vec<(String, NodeModel)> {
        new_nodes
            .iter()
            .filter(|(k, n)| n.role == "controlplane" && !not_done.contains(*k))
            .map(|(k, n)| (k.clone(), old_nodes.get(k).unwrap_or(n).clone()))
            .collect()
    }

    /// Node `k` runs the new configuration (its kubelet included).
    fn kubelet_done(
        &self,
        records: &mut BTreeMap<String, super::upgrade::NodeVersionModel>,
        k: &str,
    ) {
        if let Some(r) = records.get_mut(k) {
            r.kubernetes_version = self.target.kubernetes_version.clone();
        }
    }

    /// Writes the records into `m`. Versions some node does not run yet go back to the
    /// prior state's (so the next plan shows the change again) and those nodes' `action`
    /// says `not done: ...`.
    fn finish(
        &self,
        m: &mut ClusterModel,
        prior: &ClusterModel,
        records: BTreeMap<String, super::upgrade::NodeVersionModel>,
    ) {
        let mut talos_behind = false;
        let mut k8s_behind = false;
        for (k, r) in &records {
            let (t, kube) = super::upgrade::changes_of(r, &self.target);
            talos_behind |= t;
            k8s_behind |= kube;
            if t || kube {
                if let Some(s) = m.node_status.as_mut().and_then(|s| s.get_mut(k)) {
                    if let Some(a) = s.action.clone().filter(|a| !a.starts_with("not done")) {
                        s.action = Some(format!("not done: {a}"));
                    }
                }
            }
        }
        if talos_behind {
            m.talos_version = prior.talos_version.clone();
            m.image = prior.image.clone();
        }
        if k8s_behind {
            m.kubernetes_version = prior.kubernetes_version.clone();
        }
        m.node_versions = (self.recorded || talos_behind || k8s_behind).then_some(records);
    }
}

// ---------------------------------------------------------------------------------------
// Read
// ---------------------------------------------------------------------------------------

pub async fn read(ctx: &Context, state: Value, diags: &mut Diagnostics) -> Option<Value> {
    let Some(mut m) = model_of(&state) else {
        return Some(state);
    };
    let Some(parts) = provider_parts(ctx, false, &mut Diagnostics::new()) else {
        return Some(state);
    };
    if m.nodes.is_none() {
        // Imported: read the rest back, or leave it to the next apply to adopt the nodes.
        match imported::read_back(ctx, &parts, &m, diags).await {
            Ok(back) => m = back,
            Err(e) => {
                diags.warning(
                    "The imported cluster was not read back",
                    format!(
                        "{e}. The state keeps the cluster name and secrets only; the next apply \
                         adopts the configured nodes (existing VMs and configured nodes are \
                         kept)."
                    ),
                );
                return Some(state);
            }
        }
    }
    let nodes = m.nodes();
    let pve = parts.pve.clone();
    let mut vms = m.proxmox_vms.clone().unwrap_or_default();
    let mut nodes = nodes;
    if let Some(pve) = &pve {
        // A node's VM is gone when its VMID is free, or held by a VM that is not the node's
        // (ours was deleted by hand and the id reused): the plan re-creates the node.
        let checks = vms.iter().map(|(name, vm)| {
            let pve = pve.clone();
            let name = name.clone();
            let vmid = vm.vmid;
            let mark = owner_mark(&m.cluster_name, &name);
            let hostname = nodes
                .get(&name)
                .and_then(|n| n.hostname.clone())
                .unwrap_or_else(|| name.clone());
            async move {
                let r = match pve.locate_vm(vmid).await {
                    Ok(Some(vm)) => match pve.vm_config(&vm.node, vmid).await {
                        Ok(cfg) => Ok(mark
                            .check(vmid, &cfg, Some(&hostname))
                            .err()
                            .map(|e| e.to_string())),
                        Err(e) if e.is_not_found() => Ok(Some(format!("VM {vmid} is gone"))),
                        Err(e) => Err(e),
                    },
                    Ok(None) => Ok(Some(format!("VM {vmid} is gone"))),
                    Err(e) => Err(e),
                };
                (name, r)
            }
        });
        for (name, r) in futures::future::join_all(checks).await {
            match r {
                Ok(Some(why)) => {
                    tracing::info!(node = name, "the node's VM is gone: {why}");
                    vms.remove(&name);
                    nodes.remove(&name);
                }
                Ok(None) => {}
                Err(e) => diags.warning(
                    "Could not check a node's VM",
                    format!("nodes[{name:?}]: {e}"),
                ),
            }
        }
    }
    // Configuration drift: what the node runs vs what was applied.
    let bundle = bundle_of(&m).ok();
    if let (Some(bundle), Some(expected)) = (bundle, m.machine_configurations.clone()) {
        if let Ok((creds, _)) = credentials(&m, &bundle) {
            let mut p = parts.clone();
            p.pve = None;
            p.connect.connect_timeout = Duration::from_secs(5);
            p.connect.request_timeout = Some(Duration::from_secs(15));
            let env = make_env(p, creds, Duration::from_secs(30), ctx);
            let checks = nodes.iter().map(|(name, n)| {
                let env = &env;
                let want = expected.get(name).cloned();
                async move {
                    let c = env.mtls(node_ip(n)).await.ok()?;
                    let got = c.read_file(CONFIG_PATH).await.ok()?;
                    let got = String::from_utf8(got).ok()?;
                    let want = want?;
                    if super::inputs::same_applied(&got, &want) {
                        None
                    } else {
                        Some((name.clone(), got))
                    }
                }
            });
            let mut configs = expected.clone();
            for (name, got) in futures::future::join_all(checks)
                .await
                .into_iter()
                .flatten()
            {
                tracing::info!(node = name, "machine configuration on the node differs");
                configs.insert(name, got);
            }
            m.machine_configurations = Some(configs);
        }
    }
    m.proxmox_vms = Some(vms);
    // States written before `etcd_snapshots` existed (and imports) get an empty list.
    m.etcd_snapshots.get_or_insert_with(Vec::new);
    // States written before `node_status` existed get it here, so the next plan is empty.
    m.node_status = Some(
        changes::node_status(
            &ClusterModel {
                nodes: Some(nodes.clone()),
                ..m.clone()
            },
            m.node_status.as_ref(),
            &BTreeMap::new(),
        )
        .into_iter()
        .map(|(k, mut s)| {
            if m.node_status.as_ref().is_none_or(|p| !p.contains_key(&k)) {
                s.action = Some("existing".into());
            }
            (k, s)
        })
        .collect(),
    );
    m.nodes = Some(nodes);
    to_value(&m, diags)
}

// ---------------------------------------------------------------------------------------
// Delete
// ---------------------------------------------------------------------------------------

pub async fn delete(ctx: &Context, prior_state: Value, diags: &mut Diagnostics) {
    let Some(m) = model_of(&prior_state) else {
        // Returning without an error would make Terraform forget the resource and orphan
        // its VMs: keep it in the state until the state can be read.
        diags.error(
            "Cannot destroy the Talos cluster",
            "the prior state cannot be decoded, so the VMs and images this resource owns are \
             unknown; nothing was deleted and the resource stays in the state",
        );
        return;
    };
    let has_vms = m.proxmox_vms.as_ref().is_some_and(|v| !v.is_empty())
        || m.proxmox_images.as_ref().is_some_and(|v| !v.is_empty());
    let Some(mut parts) = provider_parts(ctx, has_vms, diags) else {
        return;
    };
    let pve = parts.pve.clone();
    let creds = bundle_of(&m)
        .and_then(|b| credentials(&m, &b))
        .map(|(c, _)| c)
        .ok();
    let nodes = m.nodes();
    parts.connect.connect_timeout = Duration::from_secs(10);
    parts.connect.request_timeout = Some(Duration::from_secs(60));
    let before_destroy = m
        .etcd_backup
        .as_ref()
        .is_some_and(|b| b.takes(super::etcd::BEFORE_DESTROY))
        && m.bootstrapped == Some(true)
        && !control_planes(&m).is_empty();
    if let (true, Some(c)) = (before_destroy, creds.clone()) {
        let env = make_env(parts.clone(), c, m.timeout(super::Op::Delete), ctx);
        let mut mm = m.clone();
        match etcd_backup::take(&env, &mut mm, super::etcd::BEFORE_DESTROY).await {
            Ok(r) => diags.warning(
                "etcd snapshot taken before destroy",
                format!(
                    "{} (sha256 {}, {} bytes, from nodes[{:?}]); restore it into a new cluster \
                     with etcd_restore",
                    r.path, r.sha256, r.size, r.node
                ),
            ),
            Err(e) => {
                diags.error(
                    "etcd snapshot before destroy failed: nothing was destroyed",
                    format!(
                        "{e}. To destroy without a snapshot, remove \"before_destroy\" from \
                         etcd_backup.when and apply first."
                    ),
                );
                return;
            }
        }
    }
    if let (Some(creds), true) = (creds, m.on_destroy() != "none") {
        let env = make_env(parts, creds, m.timeout(super::Op::Delete), ctx);
        let graceful = m.on_destroy() == "graceful";
        let workers = nodes
            .iter()
            .filter(|(_, n)| n.role != "controlplane")
            .map(|(k, n)| reset_node(&env, k, node_ip(n), graceful));
        for r in futures::future::join_all(workers).await {
            if let Err(e) = r {
                diags.warning("Node reset failed (the VM is deleted anyway)", e);
            }
        }
        let cps = control_planes(&m);
        let last = cps.len().saturating_sub(1);
        for (i, (k, n)) in cps.iter().enumerate() {
            // The last etcd member cannot leave gracefully.
            if let Err(e) = reset_node(&env, k, node_ip(n), graceful && i != last).await {
                diags.warning("Node reset failed (the VM is deleted anyway)", e);
            }
        }
    }
    let Some(pve) = pve else {
        return;
    };
    let vms = m.proxmox_vms.clone().unwrap_or_default();
    let dels = vms.iter().map(|(name, vm)| {
        let pve = pve.clone();
        let mark = owner_mark(&m.cluster_name, name);
        let hostname = nodes
            .get(name)
            .and_then(|n| n.hostname.clone())
            .unwrap_or_else(|| name.clone());
        async move {
            pve.shutdown_and_delete_vm(vm.vmid, Duration::from_secs(30), &mark, Some(&hostname))
                .await
                .map_err(|e| format!("nodes[{name:?}]: deleting VM {}: {e}", vm.vmid))
        }
    });
    for r in futures::future::join_all(dels).await {
        if let Err(e) = r {
            diags.error("Deleting a Talos node VM failed", e);
        }
    }
    if diags.has_errors() {
        return;
    }
    for img in m.proxmox_images.clone().unwrap_or_default() {
        let storage = img.volume.split(':').next().unwrap_or_default().to_string();
        if let Err(e) = pve.delete_volume(&img.node, &storage, &img.volume).await {
            diags.error(
                "Deleting the downloaded Talos image failed",
                format!("{} on {}: {e}", img.volume, img.node),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------------------

/// `<cluster_name>:<path to secrets.yaml>`.
pub fn import(id: &str, diags: &mut Diagnostics) -> Option<Value> {
    let Some((name, path)) = id.split_once(':') else {
        diags.error(
            "Invalid import ID",
            format!("{id:?}: expected <cluster_name>:<path to secrets.yaml>"),
        );
        return None;
    };
    let text = match super::read_secrets_file(path) {
        Ok(t) => t,
        Err(e) => {
            diags.error("Invalid import ID", e.to_string());
            return None;
        }
    };
    let bundle = match SecretsBundle::from_yaml(&text) {
        Ok(b) => b,
        Err(e) => {
            diags.error("Invalid secrets.yaml", format!("{path}: {e}"));
            return None;
        }
    };
    let yaml = bundle.to_yaml().ok()?;
    let m = ClusterModel {
        id: Some(name.to_string()),
        cluster_name: name.to_string(),
        machine_secrets: Some(yaml),
        bootstrapped: Some(true),
        ..Default::default()
    };
    to_value(&m, diags)
}

#[cfg(test)]
mod deadline_tests {
    use super::*;

    fn env(deadline: Duration) -> Env {
        Env {
            pve: None,
            connect: ConnectOptions::default(),
            creds: Credentials {
                ca: String::new(),
                crt: String::new(),
                key: String::new(),
            },
            deadline: Instant::now() + deadline,
            poll: Poll::default(),
            cancel: waddle_proxmox::CancellationToken::new(),
            proxy_url: None,
            default_node: None,
        }
    }

    #[tokio::test]
    async fn a_deadline_error_keeps_the_last_real_cause() {
        // The first attempt fails with a real cause; the second hangs until the deadline.
        let e = env(Duration::from_millis(300));
        let calls = std::sync::atomic::AtomicU32::new(0);
        let err = e
            .retry("cluster health", || {
                let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    if n == 0 {
                        Attempt::<()>::Again("Kubernetes API https://10.10.0.5:6443/readyz: error sending request: connection refused".into())
                    } else {
                        std::future::pending().await
                    }
                }
            })
            .await
            .expect_err("times out");
        assert!(err.starts_with("cluster health: timed out"), "{err}");
        assert!(err.contains("/readyz"), "{err}");
        assert!(err.contains("connection refused"), "{err}");
        assert!(!err.contains("deadline reached"), "{err}");
    }

    /// A loopback port nobody listens on (bound, then closed).
    fn refused_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
    }

    #[tokio::test]
    async fn an_unreachable_proxmox_api_stops_the_retry_with_that_cause() {
        waddle_proxmox::install_crypto_provider();
        // Neither the node's Talos API nor the Proxmox VE API answers; the operation's own
        // deadline is ten minutes, the API's unreachable limit one second.
        let mut cfg = waddle_proxmox::ClientConfig::new(
            format!("https://127.0.0.1:{}", refused_port()),
            waddle_proxmox::Auth::api_token("waddle@pve!ci=5f3c2a1e-0000-4000-8000-00000000abcd")
                .expect("token"),
        );
        cfg.insecure = true;
        cfg.retry.max_attempts = 1;
        cfg.timeouts.unreachable = Duration::from_secs(1);
        let pve = waddle_proxmox::Client::new(cfg).expect("client");
        let vm = VmNic {
            pve: &pve,
            node: "pve",
            vmid: 100,
            mac: None,
        };
        let ip = format!("127.0.0.1:{}", refused_port());
        // A bound on the test, not an assertion on time: without the fix the retry runs to
        // its ten-minute deadline.
        let res = tokio::time::timeout(
            Duration::from_secs(300),
            apply_maintenance_vm(
                &env(Duration::from_secs(600)),
                "cp1",
                &ip,
                &vm,
                "version: v1alpha1",
            ),
        )
        .await
        .expect("the retry stops once the Proxmox VE API has been unreachable for its limit");
        let err = res.expect_err("nothing answers");
        assert!(err.contains("has been unreachable for"), "{err}");
        assert!(!err.contains("timed out"), "{err}");
    }

    #[tokio::test]
    async fn a_refused_readyz_names_the_refusal() {
        waddle_proxmox::install_crypto_provider();
        // A loopback port nobody listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let bundle = SecretsBundle::generate(&SystemClock).expect("bundle");
        let err = readyz(
            &env(Duration::from_secs(30)),
            &format!("https://127.0.0.1:{port}"),
            &bundle,
        )
        .await
        .expect_err("nothing listens");
        assert!(
            err.to_ascii_lowercase().contains("connection refused"),
            "{err}"
        );
    }
}
