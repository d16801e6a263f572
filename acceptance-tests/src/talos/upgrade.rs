//! What an emulated node runs, and how that changes: the installed Talos version and
//! installer image, the boot ID, OS upgrades (`MachineService.Upgrade` of Talos v1.12;
//! `ImageService.Pull` + `LifecycleService.Upgrade` on nodes reporting v1.13 or later), and
//! the logs tests read to prove an order (upgrades with their timestamps, Kubernetes
//! component image changes).
//!
//! As on real Talos:
//! * an applied machine configuration never changes the installed OS (a new
//!   `machine.install.image` is only used by the next install); only an upgrade does;
//! * the boot ID is new at every boot (reboot, power cycle, upgrade);
//! * the installer image is pulled and validated before the call answers: an image that
//!   cannot be pulled ([`TalosFleet::fail_pull`], or whose tag is no Talos version) fails the
//!   call and nothing happens;
//! * a control plane refuses to upgrade (without `force`) unless every etcd member is up,
//!   refuses with two members (one down would lose quorum), and refuses the only member
//!   without `preserve`; without `preserve` it leaves etcd first and joins again after;
//! * `stage`: the node reboots, and the staged image is installed at that next boot (one
//!   more reboot).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tonic::codegen::BoxStream;
use tonic::{Code, Request, Response, Status};

use waddle_talos::api::proto::machine::{
    self as pm, image_service_server::ImageService, lifecycle_service_server::LifecycleService,
};

use super::service::NodeService;
use super::{lock, splitmix, NodeConfig, Stage, TalosFleet, TalosNode};

/// The OS of one node: what is installed and which boot this is.
#[derive(Debug, Clone)]
pub(crate) struct NodeOs {
    /// Installed Talos version (`v1.12.4`).
    pub version: String,
    /// Installer image of the last install or upgrade (`None`: the disk image as booted).
    pub installed_image: Option<String>,
    /// Boots so far (the boot ID is derived from it).
    pub boots: u64,
    /// An upgrade staged for the next boot.
    pub staged: Option<String>,
    /// Images pulled into the system containerd (`ImageService.Pull`).
    pub pulled: HashSet<String>,
    /// An upgrade is under way (between the answer and the reboot).
    pub upgrading: bool,
}

impl NodeOs {
    pub(crate) fn new(version: String) -> Self {
        NodeOs {
            version,
            installed_image: None,
            boots: 0,
            staged: None,
            pulled: HashSet::new(),
            upgrading: false,
        }
    }
}

/// Which API an upgrade came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeApi {
    /// `machine.MachineService/Upgrade`.
    Machine,
    /// `machine.LifecycleService/Upgrade` (after `ImageService/Pull`).
    Lifecycle,
}

/// One accepted upgrade (see [`TalosFleet::upgrade_log`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRecord {
    /// Node id in the fleet.
    pub node: u32,
    /// Hostname when the call was accepted.
    pub hostname: String,
    /// Whether the node is a control plane.
    pub control_plane: bool,
    /// The API used.
    pub api: UpgradeApi,
    /// Installer image.
    pub image: String,
    /// Version before.
    pub from: String,
    /// Version installed.
    pub to: String,
    /// Options of the 1.12 API.
    pub preserve: bool,
    /// Staged for the next boot.
    pub stage: bool,
    /// When the call was accepted.
    pub started: Instant,
    /// When the node was running its new version again (`None`: not yet).
    pub finished: Option<Instant>,
}

/// A Kubernetes component image the active configuration of a node changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentChange {
    /// Node id in the fleet.
    pub node: u32,
    /// Hostname.
    pub hostname: String,
    /// Whether the node is a control plane.
    pub control_plane: bool,
    /// `kube-apiserver`, `kube-controller-manager`, `kube-scheduler`, `kube-proxy`, `kubelet`.
    pub component: String,
    /// Image before (empty: none).
    pub from: String,
    /// Image after.
    pub to: String,
    /// When the configuration was applied.
    pub at: Instant,
}

/// The Talos version of an installer image reference (`...installer:v1.12.11`,
/// `factory.talos.dev/installer/<schematic>:v1.12.11`); `None` when the tag is no version.
pub fn image_version(image: &str) -> Option<String> {
    let (_, tag) = image.rsplit_once(':')?;
    if tag.contains('/') {
        return None;
    }
    let t = tag.strip_prefix('v')?;
    let core = t.split('-').next()?;
    let parts: Vec<&str> = core.split('.').collect();
    (parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
    .then(|| tag.to_string())
}

/// The first `vX.Y.Z` in `s` (a disk image's name or URL).
pub fn version_in(s: &str) -> Option<String> {
    let b = s.as_bytes();
    for (i, c) in b.iter().enumerate() {
        if *c != b'v' || i + 1 >= b.len() || !b[i + 1].is_ascii_digit() {
            continue;
        }
        let rest = &s[i + 1..];
        let end = rest
            .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
            .unwrap_or(rest.len());
        let core = rest[..end].trim_end_matches('.');
        if core.split('.').count() == 3 && core.split('.').all(|p| !p.is_empty()) {
            return Some(format!("v{core}"));
        }
    }
    None
}

/// Kubernetes component images of a configuration.
pub(crate) fn component_images(cfg: &NodeConfig) -> BTreeMap<&'static str, String> {
    let v1 = cfg
        .docs
        .iter()
        .find(|d| d.get("kind").is_none())
        .cloned()
        .unwrap_or(Value::Null);
    let mut out = BTreeMap::new();
    let img = |p: &str| v1.pointer(p).and_then(Value::as_str).map(str::to_string);
    if let Some(k) = img("/machine/kubelet/image") {
        out.insert("kubelet", k);
    }
    if cfg.control_plane {
        for (c, p) in [
            ("kube-apiserver", "/cluster/apiServer/image"),
            (
                "kube-controller-manager",
                "/cluster/controllerManager/image",
            ),
            ("kube-scheduler", "/cluster/scheduler/image"),
        ] {
            if let Some(i) = img(p) {
                out.insert(c, i);
            }
        }
        let proxy_off = v1
            .pointer("/cluster/proxy/disabled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if let (false, Some(i)) = (proxy_off, img("/cluster/proxy/image")) {
            out.insert("kube-proxy", i);
        }
    }
    out
}

impl TalosFleet {
    /// Every upgrade the fleet's nodes accepted, in order, with when it started and when the
    /// node ran its new version.
    pub fn upgrade_log(&self) -> Vec<UpgradeRecord> {
        lock(&self.inner.upgrades).clone()
    }

    /// Every Kubernetes component image change applied to a node, in order.
    pub fn component_log(&self) -> Vec<ComponentChange> {
        lock(&self.inner.components).clone()
    }

    /// Pulling `image` fails from now on (a registry that does not have it, or is down).
    pub fn fail_pull(&self, image: &str) {
        lock(&self.inner.unpullable).insert(image.to_string());
    }
}

impl TalosNode {
    /// The Talos version the node runs (what `Version` reports).
    pub fn talos_version(&self) -> String {
        lock(&self.inner.state).os.version.clone()
    }

    /// The installer image of the node's last install or upgrade (`None`: as first booted).
    pub fn installed_image(&self) -> Option<String> {
        lock(&self.inner.state).os.installed_image.clone()
    }

    /// The current boot ID.
    pub fn boot_id(&self) -> String {
        let (id, boots) = (self.inner.id, lock(&self.inner.state).os.boots);
        boot_id_of(id, boots)
    }

    /// An upgrade staged for the next boot.
    pub fn staged_upgrade(&self) -> Option<String> {
        lock(&self.inner.state).os.staged.clone()
    }

    /// Kubernetes component images of the active configuration.
    pub fn component_images(&self) -> BTreeMap<String, String> {
        lock(&self.inner.state)
            .config
            .as_ref()
            .map(|c| {
                component_images(c)
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A new boot begins: a new boot ID, and a staged upgrade is installed now.
    pub(crate) fn next_boot(&self) {
        let mut st = lock(&self.inner.state);
        st.os.boots += 1;
        if let Some(img) = st.os.staged.take() {
            if let Some(v) = image_version(&img) {
                st.os.version = v;
            }
            st.os.installed_image = Some(img);
        }
    }

    /// The node is running again after an upgrade: closes its log entry.
    pub(crate) fn upgrade_finished(&self) {
        let Some(f) = self.fleet() else { return };
        let version = self.talos_version();
        let mut log = lock(&f.upgrades);
        if let Some(r) = log
            .iter_mut()
            .rev()
            .find(|r| r.node == self.inner.id && r.finished.is_none())
        {
            if r.to == version {
                r.finished = Some(Instant::now());
            }
        }
    }

    /// Records component image changes between two configurations.
    pub(crate) fn record_components(&self, old: &NodeConfig, new: &NodeConfig) {
        let Some(f) = self.fleet() else { return };
        let (a, b) = (component_images(old), component_images(new));
        let now = Instant::now();
        let mut log = lock(&f.components);
        for (c, to) in &b {
            let from = a.get(c).cloned().unwrap_or_default();
            if &from != to {
                log.push(ComponentChange {
                    node: self.inner.id,
                    hostname: new.hostname.clone(),
                    control_plane: new.control_plane,
                    component: c.to_string(),
                    from,
                    to: to.clone(),
                    at: now,
                });
            }
        }
    }

    /// Installs `image` and reboots into it (after the answer went out); staged: reboots
    /// now and installs at that boot.
    fn spawn_upgrade(&self, cfg: Arc<NodeConfig>, image: String, stage: bool) {
        let node = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(super::ANSWER_GRACE).await;
            let t = node.timings();
            if stage {
                // The node reboots now; the staged image is installed early in that next
                // boot, which then reboots once more into it.
                lock(&node.inner.state).os.staged = Some(image);
                let _ = node.go_down().await;
                tokio::time::sleep(t.reboot + t.upgrade).await;
                node.spawn_reboot_into(cfg, Duration::ZERO);
            } else {
                // Services stop, the installer writes the other boot partition, reboot.
                let _ = node.go_down().await;
                tokio::time::sleep(t.upgrade).await;
                {
                    let mut st = lock(&node.inner.state);
                    if let Some(v) = image_version(&image) {
                        st.os.version = v;
                    }
                    st.os.installed_image = Some(image);
                }
                node.spawn_reboot_into(cfg, Duration::ZERO);
            }
        });
    }
}

fn boot_id_of(id: u32, boots: u64) -> String {
    let a = splitmix((u64::from(id) << 32) ^ boots);
    let b = splitmix(a ^ 0x5bd1_e995);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48 & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// Whether `tag` is Talos v1.13 or later (the ImageService/LifecycleService API).
fn has_lifecycle_api(tag: &str) -> bool {
    let t = tag.trim_start_matches('v');
    let mut it = t.split(['.', '-']).map(|x| x.parse::<u32>().ok());
    matches!((it.next().flatten(), it.next().flatten()), (Some(ma), Some(mi)) if ma > 1 || (ma == 1 && mi >= 13))
}

impl NodeService {
    /// Pulls `image` as the node's containerd would.
    fn pull(&self, image: &str) -> Result<(), Status> {
        let fleet = self.fleet()?;
        let refused = lock(&fleet.unpullable).contains(image);
        if refused || image_version(image).is_none() {
            return Err(Status::unknown(format!(
                "error validating installer image {image:?}: failed to pull image {image:?}: {image}: not found"
            )));
        }
        lock(&self.node().inner.state)
            .os
            .pulled
            .insert(image.to_string());
        Ok(())
    }

    /// Talos's etcd checks before a control plane upgrades (skipped with `force`).
    fn validate_etcd_for_upgrade(&self, cfg: &NodeConfig, preserve: bool) -> Result<(), Status> {
        if !cfg.control_plane {
            return Ok(());
        }
        let fleet = self.fleet()?;
        let members = fleet.etcd_members_of(&cfg.cluster_id);
        let refuse = |m: String| {
            Err(Status::unknown(format!(
                "error validating etcd for upgrade: {m}"
            )))
        };
        if !preserve && members.len() == 1 {
            return refuse(
                "only 1 etcd member found; assuming this is not an HA setup and refusing to upgrade; if this is a single-node cluster, use --preserve to upgrade".into(),
            );
        }
        if members.len() == 2 {
            return refuse(format!(
                "etcd member count({}) is insufficient to maintain quorum if upgrade commences",
                members.len()
            ));
        }
        for m in &members {
            let up = fleet
                .node_by_id(m.node)
                .is_some_and(|n| n.stage() == Stage::Running);
            if !up {
                return refuse(format!(
                    "etcd member {:x} is not healthy; all members must be healthy to perform an upgrade",
                    m.id
                ));
            }
        }
        Ok(())
    }

    /// Common part of both APIs once the image is there: checks, log, install and reboot.
    fn start_upgrade(
        &self,
        api: UpgradeApi,
        image: &str,
        preserve: bool,
        stage: bool,
        force: bool,
    ) -> Result<(), Status> {
        let cfg = self.config()?;
        let node = self.node();
        if lock(&node.inner.state).os.upgrading {
            return Err(Status::failed_precondition(
                "an upgrade is already in progress",
            ));
        }
        if !force {
            self.validate_etcd_for_upgrade(&cfg, preserve)?;
        }
        let fleet = self.fleet()?;
        let from = node.talos_version();
        lock(&fleet.upgrades).push(UpgradeRecord {
            node: node.inner.id,
            hostname: cfg.hostname.clone(),
            control_plane: cfg.control_plane,
            api,
            image: image.to_string(),
            from,
            to: image_version(image).unwrap_or_default(),
            preserve,
            stage,
            started: Instant::now(),
            finished: None,
        });
        lock(&node.inner.state).os.upgrading = true;
        if cfg.control_plane && !preserve {
            // The upgrade sequence leaves etcd when EPHEMERAL is wiped; the node joins again
            // as a new member when it is back.
            fleet.leave(&cfg.cluster_id, node.inner.id);
        }
        node.spawn_upgrade(cfg, image.to_string(), stage);
        Ok(())
    }

    pub(super) fn upgrade_inner(
        &self,
        req: pm::UpgradeRequest,
    ) -> Result<pm::UpgradeResponse, Status> {
        self.require_configured()?;
        pm::upgrade_request::RebootMode::try_from(req.reboot_mode).map_err(|_| {
            Status::invalid_argument(format!("unknown reboot mode {}", req.reboot_mode))
        })?;
        self.pull(&req.image)?;
        self.start_upgrade(
            UpgradeApi::Machine,
            &req.image,
            req.preserve,
            req.stage,
            req.force,
        )?;
        Ok(pm::UpgradeResponse {
            messages: vec![pm::Upgrade {
                metadata: self.md(),
                ack: "Upgrade request received".into(),
                actor_id: format!("upgrade-{}", self.node().id()),
            }],
        })
    }

    fn require_lifecycle_api(&self) -> Result<(), Status> {
        self.require_configured()?;
        if !has_lifecycle_api(&self.node().talos_version()) {
            return Err(Status::new(
                Code::Unimplemented,
                "unknown service: this Talos version has no such API",
            ));
        }
        Ok(())
    }
}

type PullStream = BoxStream<pm::ImageServicePullResponse>;
type LifecycleStream = BoxStream<pm::LifecycleServiceUpgradeResponse>;

#[tonic::async_trait]
impl ImageService for NodeService {
    async fn pull(
        &self,
        request: Request<pm::ImageServicePullRequest>,
    ) -> Result<Response<PullStream>, Status> {
        const M: &str = "ImageService.Pull";
        let req = request.into_inner();
        let r = match self.enter(M).await {
            Err(e) => Err(e),
            Ok(()) => self
                .require_lifecycle_api()
                .and_then(|()| NodeService::pull(self, &req.image_ref))
                .map(|()| {
                    let msgs = vec![
                        Ok(pm::ImageServicePullResponse {
                            response: Some(pm::image_service_pull_response::Response::PullProgress(
                                pm::ImageServicePullProgress {
                                    layer_id: "sha256:emulated".into(),
                                    progress: Some(pm::ImageServicePullLayerProgress {
                                        status: pm::image_service_pull_layer_progress::Status::DownloadComplete as i32,
                                        elapsed: None,
                                        offset: 1,
                                        total: 1,
                                    }),
                                },
                            )),
                        }),
                        Ok(pm::ImageServicePullResponse {
                            response: Some(pm::image_service_pull_response::Response::Name(
                                req.image_ref.clone(),
                            )),
                        }),
                    ];
                    Box::pin(tokio_stream::iter(msgs)) as PullStream
                }),
        };
        self.finish(M, r).map(Response::new)
    }
}

#[tonic::async_trait]
impl LifecycleService for NodeService {
    async fn upgrade(
        &self,
        request: Request<pm::LifecycleServiceUpgradeRequest>,
    ) -> Result<Response<LifecycleStream>, Status> {
        const M: &str = "LifecycleService.Upgrade";
        let req = request.into_inner();
        let image = req.source.map(|s| s.image_name).unwrap_or_default();
        let r = match self.enter(M).await {
            Err(e) => Err(e),
            Ok(()) => self.require_lifecycle_api().and_then(|()| {
                if !lock(&self.node().inner.state).os.pulled.contains(&image) {
                    return Err(Status::not_found(format!(
                        "image {image:?} not found: pull it first (ImageService.Pull)"
                    )));
                }
                self.start_upgrade(UpgradeApi::Lifecycle, &image, true, false, false)?;
                let progress = |r| {
                    Ok(pm::LifecycleServiceUpgradeResponse {
                        progress: Some(pm::LifecycleServiceInstallProgress { response: Some(r) }),
                    })
                };
                let msgs = vec![
                    progress(pm::lifecycle_service_install_progress::Response::Message(
                        format!("installing {image}"),
                    )),
                    progress(pm::lifecycle_service_install_progress::Response::ExitCode(
                        0,
                    )),
                ];
                Ok(Box::pin(tokio_stream::iter(msgs)) as LifecycleStream)
            }),
        };
        self.finish(M, r).map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_versions() {
        assert_eq!(
            image_version("ghcr.io/siderolabs/installer:v1.12.4").as_deref(),
            Some("v1.12.4")
        );
        assert_eq!(
            image_version("factory.talos.dev/installer/abc123:v1.13.0").as_deref(),
            Some("v1.13.0")
        );
        assert_eq!(image_version("localhost:5000/installer"), None);
        assert_eq!(image_version("ghcr.io/siderolabs/installer:latest"), None);
        assert_eq!(
            version_in("local:import/talos-376567988ad3-v1.12.4-nocloud-amd64.qcow2").as_deref(),
            Some("v1.12.4")
        );
        assert_eq!(version_in("debian-12.qcow2"), None);
        assert_ne!(boot_id_of(1, 1), boot_id_of(1, 2));
        assert!(has_lifecycle_api("v1.13.0") && !has_lifecycle_api("v1.12.11"));
    }
}
