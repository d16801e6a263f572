//! The `machine.MachineService` and `cosi.resource.State` (MachineStatus) implementation of
//! one emulated node.

use std::sync::Arc;

use tonic::codegen::BoxStream;
use tonic::{Code, Request, Response, Status};

use waddle_talos::api::proto::common::{Data, Metadata};
use waddle_talos::api::proto::cosi::resource::{self as cr, state_server::State};
use waddle_talos::api::proto::machine::{
    self as pm, apply_configuration_request::Mode, machine_service_server::MachineService,
};
use waddle_talos::api::proto::talos::resource::definitions::enums::RuntimeMachineStage;
use waddle_talos::api::proto::talos::resource::definitions::runtime as rt;

use super::{certs, lock, validate, AppliedConfig, NodeConfig, Stage, TalosNode};

mod etcd;

const MAINTENANCE_UNIMPLEMENTED: &str = "API is not implemented in maintenance mode";

pub(super) struct NodeService {
    node: TalosNode,
    secure: bool,
    generation: u64,
}

impl NodeService {
    pub(super) fn new(node: TalosNode, secure: bool, generation: u64) -> Self {
        NodeService {
            node,
            secure,
            generation,
        }
    }

    pub(super) fn md(&self) -> Option<Metadata> {
        Some(Metadata {
            hostname: self.node.hostname(),
            error: String::new(),
            status: None,
        })
    }

    /// Common prologue: stale connection check, latency, injected faults.
    pub(super) async fn enter(&self, method: &str) -> Result<(), Status> {
        let rpc = self.node.timings().rpc;
        if !rpc.is_zero() {
            tokio::time::sleep(rpc).await;
        }
        if lock(&self.node.inner.state).generation != self.generation {
            return Err(Status::unavailable(
                "connection to a previous boot of the node",
            ));
        }
        if let Some(s) = self.node.injected_fault(method) {
            return Err(s);
        }
        Ok(())
    }

    pub(super) fn finish<T>(&self, method: &str, r: Result<T, Status>) -> Result<T, Status> {
        let code = match &r {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        };
        self.node.record(method, self.secure, code);
        r
    }

    fn maintenance_only_unimplemented(&self) -> Result<(), Status> {
        if !self.secure {
            return Err(Status::unimplemented(MAINTENANCE_UNIMPLEMENTED));
        }
        Ok(())
    }

    /// The node served.
    pub(super) fn node(&self) -> &TalosNode {
        &self.node
    }

    /// The fleet (gone: `Unavailable`).
    pub(super) fn fleet(&self) -> Result<Arc<super::Fleet>, Status> {
        self.node
            .fleet()
            .ok_or_else(|| Status::unavailable("fleet gone"))
    }

    /// Refuses a call that needs a configured node (mTLS), as maintenance mode does.
    pub(super) fn require_configured(&self) -> Result<(), Status> {
        self.maintenance_only_unimplemented()
    }

    pub(super) fn config(&self) -> Result<Arc<NodeConfig>, Status> {
        lock(&self.node.inner.state)
            .config
            .clone()
            .ok_or_else(|| Status::unavailable("node has no configuration"))
    }

    async fn apply(
        &self,
        req: pm::ApplyConfigurationRequest,
    ) -> Result<pm::ApplyConfigurationResponse, Status> {
        let mode = Mode::try_from(req.mode)
            .map_err(|_| Status::invalid_argument(format!("unknown mode {}", req.mode)))?;
        let mode_flag = |m: Mode| m.as_str_name().to_ascii_lowercase().replace('_', "-");
        let fleet = self
            .node
            .fleet()
            .ok_or_else(|| Status::unavailable("fleet gone"))?;
        if !self.secure && !matches!(mode, Mode::Reboot | Mode::Auto | Mode::Try) {
            return Err(Status::unimplemented(format!(
                "apply configuration --mode='{}' is not supported in maintenance mode",
                mode_flag(mode)
            )));
        }
        let text = String::from_utf8(req.data)
            .map_err(|_| Status::unknown("failed to parse config: not UTF-8"))?;
        let delay = self.node.timings().apply;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        // Validated as the release the node runs validates it.
        let running = self.node.talos_version();
        let schema = fleet.opts.schema.and_then(|s| s.for_version(&running));
        let docs = validate::validate(&text, schema).map_err(|r| r.status())?;
        let cfg = NodeConfig::from_docs(&text, docs, &self.node.inner.name).map_err(|e| {
            Status::invalid_argument(format!("configuration validation failed: {e}"))
        })?;
        if let Some(k) = &cfg.os_ca_key {
            lock(&fleet.trustd).insert(cfg.os_ca_crt.clone(), k.clone());
        }
        let cfg = Arc::new(cfg);
        let mut msg = pm::ApplyConfiguration {
            metadata: self.md(),
            warnings: Vec::new(),
            mode: req.mode,
            mode_details: String::new(),
        };
        if !self.secure {
            let record = AppliedConfig {
                requested_mode: req.mode,
                mode: req.mode,
                in_maintenance: true,
                dry_run: req.dry_run,
            };
            if req.dry_run {
                msg.mode_details =
                    "Dry run summary:\nNode is running in maintenance mode and does not have a config yet."
                        .into();
            } else {
                msg.mode = Mode::Reboot as i32;
                msg.mode_details = "Applied configuration with a reboot".into();
                lock(&self.node.inner.state).applies.push(record);
                if self.node.loses_answer("ApplyConfiguration") {
                    // Taken, and the node goes down before the answer leaves it.
                    self.node.spawn_reboot_into(cfg, std::time::Duration::ZERO);
                    return Err(Status::unknown("transport error"));
                }
                self.node.spawn_reboot_into(cfg, super::ANSWER_GRACE);
            }
            return Ok(pm::ApplyConfigurationResponse {
                messages: vec![msg],
            });
        }
        // Configured node.
        let current = self.config()?;
        let reboot_for = current.needs_reboot_for(&cfg);
        let used = match mode {
            Mode::Auto => {
                if reboot_for.is_empty() {
                    Mode::NoReboot
                } else {
                    Mode::Reboot
                }
            }
            Mode::NoReboot | Mode::Try if !reboot_for.is_empty() => {
                return Err(Status::invalid_argument(format!(
                    "apply configuration on the fly is not supported for the following changes: {}",
                    reboot_for.join(", ")
                )))
            }
            m => m,
        };
        msg.mode = used as i32;
        msg.mode_details = match used {
            Mode::Reboot => "Applied configuration with a reboot".into(),
            Mode::Staged => "Staged configuration to be applied after the next reboot".into(),
            Mode::Try => "Applied configuration in try mode".into(),
            _ => "Applied configuration without a reboot".into(),
        };
        if req.dry_run {
            msg.mode_details = format!("Dry run summary:\n{}", msg.mode_details);
            return Ok(pm::ApplyConfigurationResponse {
                messages: vec![msg],
            });
        }
        lock(&self.node.inner.state).applies.push(AppliedConfig {
            requested_mode: req.mode,
            mode: used as i32,
            in_maintenance: false,
            dry_run: false,
        });
        if !matches!(used, Mode::Staged) {
            self.node.record_components(&current, &cfg);
        }
        match used {
            Mode::Reboot => {
                if current.control_plane && current.cluster_id != cfg.cluster_id {
                    fleet.leave(&current.cluster_id, self.node.inner.id);
                }
                self.node.spawn_reboot_into(cfg, super::ANSWER_GRACE);
            }
            Mode::Staged => {
                // Applied at the next reboot: the emulator keeps it as the configuration
                // to boot, without restarting now.
                lock(&self.node.inner.state).config = Some(cfg);
            }
            _ => {
                let relisten = current.address != cfg.address || current.os_ca_crt != cfg.os_ca_crt;
                if current.hostname != cfg.hostname {
                    let mut cl = lock(&fleet.clusters);
                    if let Some(c) = cl.get_mut(&cfg.cluster_id) {
                        for m in c
                            .members
                            .values_mut()
                            .filter(|m| m.node == self.node.inner.id)
                        {
                            m.hostname = cfg.hostname.clone();
                        }
                    }
                }
                lock(&self.node.inner.state).config = Some(cfg.clone());
                if relisten {
                    self.node.spawn_relisten(cfg);
                }
            }
        }
        Ok(pm::ApplyConfigurationResponse {
            messages: vec![msg],
        })
    }

    fn bootstrap_inner(&self, req: &pm::BootstrapRequest) -> Result<pm::BootstrapResponse, Status> {
        self.maintenance_only_unimplemented()?;
        let cfg = self.config()?;
        if !cfg.control_plane {
            return Err(Status::failed_precondition(
                "bootstrap is only supported on control plane nodes",
            ));
        }
        let fleet = self
            .node
            .fleet()
            .ok_or_else(|| Status::unavailable("fleet gone"))?;
        let ready = {
            let st = lock(&self.node.inner.state);
            st.stage == Stage::Running
                && st
                    .running_since
                    .is_some_and(|t| t.elapsed() >= fleet.opts.timings.bootstrap_ready)
        };
        if let Some(l) = fleet.lose_if_no_data(&cfg.cluster_id) {
            tokio::spawn(l.stop());
        }
        {
            let cl = lock(&fleet.clusters);
            if cl.get(&cfg.cluster_id).is_some_and(|c| c.bootstrapped) {
                return Err(Status::already_exists("etcd data directory is not empty"));
            }
        }
        if !ready {
            return Err(Status::failed_precondition(
                "bootstrap is not available yet: etcd is waiting to join the cluster",
            ));
        }
        {
            let mut cl = lock(&fleet.clusters);
            let c = cl
                .entry(cfg.cluster_id.clone())
                .or_insert_with(|| super::Cluster {
                    bootstrapped: false,
                    members: Default::default(),
                    vip: None,
                    data: Default::default(),
                });
            if c.bootstrapped {
                return Err(Status::already_exists("etcd data directory is not empty"));
            }
            // A recovery restores the uploaded snapshot; its failure is the etcd
            // service's, seen in ServiceList, not the call's (as on a real node).
            let data = if req.recover_etcd {
                match self.recovered_data(req.recover_skip_hash_check) {
                    Ok(d) => d,
                    Err(why) => {
                        lock(&self.node.inner.state).etcd_failure = Some(why);
                        return Ok(pm::BootstrapResponse {
                            messages: vec![pm::Bootstrap {
                                metadata: self.md(),
                            }],
                        });
                    }
                }
            } else {
                super::etcd_data::EtcdData::bootstrapped()
            };
            lock(&self.node.inner.state).etcd_failure = None;
            c.data = data;
            c.bootstrapped = true;
        }
        // This node and every running control plane of the cluster join etcd.
        // (Cloned first: `join` looks nodes up again.)
        let all = lock(&fleet.nodes).clone();
        for n in all {
            let ncfg = lock(&n.inner.state).config.clone();
            if let (Some(c), Some(ip)) = (ncfg, n.address()) {
                if c.control_plane && c.cluster_id == cfg.cluster_id && n.stage() == Stage::Running
                {
                    fleet.join(&n, &c, ip);
                }
            }
        }
        fleet.register_kubelets(&cfg.cluster_id);
        if let (Some(vip), Some(key)) = (cfg.vip, cfg.k8s_ca_key.clone()) {
            let node = self.node.clone();
            let cluster_id = cfg.cluster_id.clone();
            let crt = cfg.k8s_ca_crt.clone();
            tokio::spawn(async move {
                start_kube_api(node, cluster_id, vip, crt, key).await;
            });
        }
        Ok(pm::BootstrapResponse {
            messages: vec![pm::Bootstrap {
                metadata: self.md(),
            }],
        })
    }

    fn member_of(&self) -> Result<(Arc<NodeConfig>, Vec<super::Member>), Status> {
        self.maintenance_only_unimplemented()?;
        let cfg = self.config()?;
        if !cfg.control_plane {
            return Err(Status::failed_precondition(
                "etcd is not running on worker nodes",
            ));
        }
        let fleet = self
            .node
            .fleet()
            .ok_or_else(|| Status::unavailable("fleet gone"))?;
        let members = fleet.etcd_members_of(&cfg.cluster_id);
        if !members.iter().any(|m| m.node == self.node.inner.id) {
            return Err(Status::failed_precondition(
                "etcd is not running on this node (not bootstrapped or not joined)",
            ));
        }
        Ok((cfg, members))
    }
}

pub(super) async fn start_kube_api(
    node: TalosNode,
    cluster_id: String,
    vip: std::net::Ipv4Addr,
    crt: String,
    key: String,
) {
    let Some(fleet) = node.fleet() else { return };
    if lock(&fleet.clusters)
        .get(&cluster_id)
        .is_some_and(|c| c.vip.is_some())
    {
        return;
    }
    let ip = std::net::IpAddr::V4(vip);
    match super::kube::serve(&fleet, &cluster_id, ip, &crt, &key).await {
        Ok(l) => {
            let mut cl = lock(&fleet.clusters);
            if let Some(c) = cl.get_mut(&cluster_id) {
                if c.vip.is_none() {
                    c.vip = Some(l);
                }
            }
        }
        Err(e) => tracing::warn!("talos emulator: kube API on {ip}: {e}"),
    }
}

impl super::Fleet {
    pub(super) fn etcd_members_of(&self, cluster_id: &str) -> Vec<super::Member> {
        lock(&self.clusters)
            .get(cluster_id)
            .map(|c| c.members.values().cloned().collect())
            .unwrap_or_default()
    }
}

fn data_stream(bytes: Vec<u8>, md: Option<Metadata>) -> BoxStream<Data> {
    let chunks: Vec<Result<Data, Status>> = bytes
        .chunks(16 * 1024)
        .map(|c| {
            Ok(Data {
                metadata: md.clone(),
                bytes: c.to_vec(),
            })
        })
        .collect();
    Box::pin(tokio_stream::iter(chunks))
}

#[tonic::async_trait]
impl MachineService for NodeService {
    async fn apply_configuration(
        &self,
        request: Request<pm::ApplyConfigurationRequest>,
    ) -> Result<Response<pm::ApplyConfigurationResponse>, Status> {
        const M: &str = "ApplyConfiguration";
        let r = match self.enter(M).await {
            Err(e) => Err(e),
            Ok(()) => self.apply(request.into_inner()).await,
        };
        self.finish(M, r).map(Response::new)
    }

    async fn bootstrap(
        &self,
        request: Request<pm::BootstrapRequest>,
    ) -> Result<Response<pm::BootstrapResponse>, Status> {
        const M: &str = "Bootstrap";
        let req = request.into_inner();
        let r = match self.enter(M).await {
            Err(e) => Err(e),
            Ok(()) => self.bootstrap_inner(&req),
        };
        self.finish(M, r).map(Response::new)
    }

    async fn etcd_member_list(
        &self,
        _request: Request<pm::EtcdMemberListRequest>,
    ) -> Result<Response<pm::EtcdMemberListResponse>, Status> {
        const M: &str = "EtcdMemberList";
        let r = match self.enter(M).await {
            Err(e) => Err(e),
            Ok(()) => self
                .member_of()
                .map(|(_, members)| pm::EtcdMemberListResponse {
                    messages: vec![pm::EtcdMembers {
                        metadata: self.md(),
                        legacy_members: Vec::new(),
                        members: members
                            .into_iter()
                            .map(|m| pm::EtcdMember {
                                id: m.id,
                                hostname: m.hostname,
                                peer_urls: vec![format!("https://{}:2380", m.ip)],
                                client_urls: vec![format!("https://{}:2379", m.ip)],
                                is_learner: false,
                            })
                            .collect(),
                    }],
                }),
        };
        self.finish(M, r).map(Response::new)
    }

    async fn etcd_remove_member_by_id(
        &self,
        request: Request<pm::EtcdRemoveMemberByIdRequest>,
    ) -> Result<Response<pm::EtcdRemoveMemberByIdResponse>, Status> {
        const M: &str = "EtcdRemoveMemberByID";
        let id = request.into_inner().member_id;
        let r = match self.enter(M).await {
            Err(e) => Err(e),
            Ok(()) => self.member_of().and_then(|(cfg, members)| {
                let fleet = self
                    .node
                    .fleet()
                    .ok_or_else(|| Status::unavailable("fleet gone"))?;
                let m = members
                    .iter()
                    .find(|m| m.id == id)
                    .ok_or_else(|| Status::not_found("etcdserver: member not found"))?;
                if members.len() == 1 {
                    return Err(Status::failed_precondition(
                        "etcdserver: re-configuration failed due to not enough started members",
                    ));
                }
                fleet.leave(&cfg.cluster_id, m.node);
                Ok(pm::EtcdRemoveMemberByIdResponse {
                    messages: vec![pm::EtcdRemoveMemberById {
                        metadata: self.md(),
                    }],
                })
            }),
        };
        self.finish(M, r).map(Response::new)
    }

    async fn etcd_snapshot(
        &self,
        _request: Request<pm::EtcdSnapshotRequest>,
    ) -> Result<Response<BoxStream<Data>>, Status> {
        const M: &str = "EtcdSnapshot";
        let r = match self.enter(M).await {
            Err(e) => Err(e),
            Ok(()) => self.snapshot_inner(),
        };
        self.finish(M, r).map(Response::new)
    }

    async fn etcd_recover(
        &self,
        request: Request<tonic::Streaming<Data>>,
    ) -> Result<Response<pm::EtcdRecoverResponse>, Status> {
        const M: &str = "EtcdRecover";
        let r = match self.enter(M).await {
            Err(e) => Err(e),
            Ok(()) => self.recover_inner(request.into_inner()).await,
        };
        self.finish(M, r).map(Response::new)
    }

    async fn etcd_leave_cluster(
        &self,
        _request: Request<pm::EtcdLeaveClusterRequest>,
    ) -> Result<Response<pm::EtcdLeaveClusterResponse>, Status> {
        const M: &str = "EtcdLeaveCluster";
        let r = match self.enter(M).await {
            Err(e) => Err(e),
            Ok(()) => self.member_of().and_then(|(cfg, members)| {
                if members.len() == 1 {
                    return Err(Status::failed_precondition(
                        "etcd: cannot leave, this node is the only member",
                    ));
                }
                let fleet = self
                    .node
                    .fleet()
                    .ok_or_else(|| Status::unavailable("fleet gone"))?;
                fleet.leave(&cfg.cluster_id, self.node.inner.id);
                Ok(pm::EtcdLeaveClusterResponse {
                    messages: vec![pm::EtcdLeaveCluster {
                        metadata: self.md(),
                    }],
                })
            }),
        };
        self.finish(M, r).map(Response::new)
    }

    async fn kubeconfig(&self, _request: Request<()>) -> Result<Response<BoxStream<Data>>, Status> {
        const M: &str = "Kubeconfig";
        let r = match self.enter(M).await {
            Err(e) => Err(e),
            Ok(()) => (|| {
                self.maintenance_only_unimplemented()?;
                let cfg = self.config()?;
                let key = match (&cfg.k8s_ca_key, cfg.control_plane) {
                    (Some(k), true) => k.clone(),
                    _ => {
                        return Err(Status::failed_precondition(
                            "kubeconfig is only available on control plane nodes",
                        ))
                    }
                };
                let kc = certs::admin_kubeconfig(
                    &cfg.cluster_name,
                    &cfg.endpoint,
                    &cfg.k8s_ca_crt,
                    &key,
                )
                .map_err(Status::internal)?;
                let tgz = certs::tar_gz("kubeconfig", kc.as_bytes()).map_err(Status::internal)?;
                Ok(data_stream(tgz, self.md()))
            })(),
        };
        self.finish(M, r).map(Response::new)
    }

    async fn read(
        &self,
        request: Request<pm::ReadRequest>,
    ) -> Result<Response<BoxStream<Data>>, Status> {
        const M: &str = "Read";
        let path = request.into_inner().path;
        let r = match self.enter(M).await {
            Err(e) => Err(e),
            Ok(()) => (|| {
                self.maintenance_only_unimplemented()?;
                let cfg = self.config()?;
                let bytes = match path.as_str() {
                    "/system/state/config.yaml" => cfg.yaml.clone().into_bytes(),
                    "/etc/hostname" => format!("{}\n", cfg.hostname).into_bytes(),
                    waddle_talos::api::BOOT_ID_PATH => {
                        format!("{}\n", self.node.boot_id()).into_bytes()
                    }
                    _ => {
                        return Err(Status::not_found(format!(
                            "open {path}: no such file or directory"
                        )))
                    }
                };
                Ok(data_stream(bytes, self.md()))
            })(),
        };
        self.finish(M, r).map(Response::new)
    }

    async fn reset(
        &self,
        request: Request<pm::ResetRequest>,
    ) -> Result<Response<pm::ResetResponse>, Status> {
        const M: &str = "Reset";
        let req = request.into_inner();
        let r = match self.enter(M).await {
            Err(e) => Err(e),
            Ok(()) => (|| {
                self.maintenance_only_unimplemented()?;
                let cfg = self.config()?;
                let fleet = self
                    .node
                    .fleet()
                    .ok_or_else(|| Status::unavailable("fleet gone"))?;
                if req.graceful && cfg.control_plane {
                    let members = fleet.etcd_members_of(&cfg.cluster_id);
                    if members.iter().any(|m| m.node == self.node.inner.id) {
                        if members.len() == 1 {
                            return Err(Status::failed_precondition(
                                "failed to leave etcd: this node is the last etcd member; reset it with graceful=false",
                            ));
                        }
                        fleet.leave(&cfg.cluster_id, self.node.inner.id);
                    }
                }
                // Forced reset: the member stays behind (stale), as with real etcd.
                let node = self.node.clone();
                let reboot = req.reboot;
                let cluster_id = cfg.cluster_id.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(super::ANSWER_GRACE).await;
                    node.destroy_disk();
                    if let Some(l) = node.fleet().and_then(|f| f.lose_if_no_data(&cluster_id)) {
                        l.stop().await;
                    }
                    if reboot {
                        node.spawn_boot_maintenance(node.timings().reboot);
                    } else {
                        node.power_off().await;
                        lock(&node.inner.state).config = None;
                    }
                });
                Ok(pm::ResetResponse {
                    messages: vec![pm::Reset {
                        metadata: self.md(),
                        actor_id: format!("reset-{}-{}", self.node.inner.id, self.generation),
                    }],
                })
            })(),
        };
        self.finish(M, r).map(Response::new)
    }

    async fn upgrade(
        &self,
        request: Request<pm::UpgradeRequest>,
    ) -> Result<Response<pm::UpgradeResponse>, Status> {
        const M: &str = "Upgrade";
        let r = match self.enter(M).await {
            Err(e) => Err(e),
            Ok(()) => self.upgrade_inner(request.into_inner()),
        };
        self.finish(M, r).map(Response::new)
    }

    async fn service_list(
        &self,
        _request: Request<()>,
    ) -> Result<Response<pm::ServiceListResponse>, Status> {
        const M: &str = "ServiceList";
        let r = match self.enter(M).await {
            Err(e) => Err(e),
            Ok(()) => (|| {
                self.maintenance_only_unimplemented()?;
                let cfg = self.config()?;
                let fleet = self
                    .node
                    .fleet()
                    .ok_or_else(|| Status::unavailable("fleet gone"))?;
                let member = fleet
                    .etcd_members_of(&cfg.cluster_id)
                    .iter()
                    .any(|m| m.node == self.node.inner.id);
                let svc =
                    |id: &str, state: &str, healthy: Option<bool>, msg: &str| pm::ServiceInfo {
                        id: id.into(),
                        state: state.into(),
                        events: None,
                        health: Some(pm::ServiceHealth {
                            unknown: healthy.is_none(),
                            healthy: healthy.unwrap_or(false),
                            last_message: msg.into(),
                            last_change: None,
                        }),
                    };
                let mut services = vec![
                    svc("apid", "Running", Some(true), ""),
                    svc("containerd", "Running", Some(true), ""),
                    svc("cri", "Running", Some(true), ""),
                ];
                let failure = lock(&self.node.inner.state).etcd_failure.clone();
                if cfg.control_plane {
                    services.push(if let Some(why) = failure.filter(|_| !member) {
                        svc("etcd", "Failed", Some(false), &why)
                    } else if member {
                        svc("etcd", "Running", Some(true), "")
                    } else {
                        svc(
                            "etcd",
                            "Preparing",
                            Some(false),
                            "waiting for the cluster to be bootstrapped or joined",
                        )
                    });
                }
                services.push(svc("kubelet", "Running", Some(true), ""));
                services.push(svc("machined", "Running", None, ""));
                if cfg.control_plane {
                    services.push(svc("trustd", "Running", Some(true), ""));
                }
                services.push(svc("udevd", "Running", Some(true), ""));
                Ok(pm::ServiceListResponse {
                    messages: vec![pm::ServiceList {
                        metadata: self.md(),
                        services,
                    }],
                })
            })(),
        };
        self.finish(M, r).map(Response::new)
    }

    async fn version(
        &self,
        _request: Request<()>,
    ) -> Result<Response<pm::VersionResponse>, Status> {
        const M: &str = "Version";
        let r = match self.enter(M).await {
            Err(e) => Err(e),
            Ok(()) => (|| {
                self.maintenance_only_unimplemented()?;
                Ok(pm::VersionResponse {
                    messages: vec![pm::Version {
                        metadata: self.md(),
                        version: Some(pm::VersionInfo {
                            tag: self.node.talos_version(),
                            sha: "emulated".into(),
                            built: String::new(),
                            go_version: "go1.25".into(),
                            os: "linux".into(),
                            arch: "amd64".into(),
                        }),
                        platform: Some(pm::PlatformInfo {
                            name: "nocloud".into(),
                            mode: "metal".into(),
                        }),
                        features: Some(pm::FeaturesInfo { rbac: true }),
                    }],
                })
            })(),
        };
        self.finish(M, r).map(Response::new)
    }
}

/// The only resource the emulator serves through `cosi.resource.State`.
const MACHINE_STATUS: (&str, &str, &str) =
    ("runtime", "MachineStatuses.runtime.talos.dev", "machine");

impl NodeService {
    /// The `MachineStatus` spec as Talos computes it: stage from the boot sequence, `ready`
    /// from its readiness checks (only evaluated at the booting and running stages).
    fn machine_status(&self) -> Result<rt::MachineStatusSpec, Status> {
        if !self.secure {
            // Maintenance: no readiness checks at this stage, so ready.
            return Ok(rt::MachineStatusSpec {
                stage: RuntimeMachineStage::MachineStageMaintenance as i32,
                status: Some(rt::MachineStatusStatus {
                    ready: true,
                    unmet_conditions: vec![],
                }),
            });
        }
        let fleet = self
            .node
            .fleet()
            .ok_or_else(|| Status::unavailable("fleet gone"))?;
        let (cfg, since, address) = {
            let st = lock(&self.node.inner.state);
            (st.config.clone(), st.running_since, st.address)
        };
        let cfg = cfg.ok_or_else(|| Status::unavailable("node has no configuration"))?;
        let held = address.is_some_and(|ip| lock(&fleet.boot_holds).contains(&ip));
        let booted = !held && since.is_some_and(|t| t.elapsed() >= fleet.opts.timings.boot_done);
        let mut unmet = Vec::new();
        if cfg.control_plane
            && !fleet
                .etcd_members_of(&cfg.cluster_id)
                .iter()
                .any(|m| m.node == self.node.inner.id)
        {
            unmet.push(rt::UnmetCondition {
                name: "services".into(),
                reason: "etcd not healthy".into(),
            });
        }
        let cni = cfg
            .docs
            .iter()
            .find(|d| d.get("kind").is_none())
            .and_then(|d| d["cluster"]["network"]["cni"]["name"].as_str())
            .unwrap_or("flannel");
        if cni == "none" {
            // Without a CNI the kubelet's Node never becomes Ready.
            unmet.push(rt::UnmetCondition {
                name: "nodeReady".into(),
                reason: format!("node {:?} is not ready", cfg.hostname),
            });
        }
        Ok(rt::MachineStatusSpec {
            stage: if booted {
                RuntimeMachineStage::MachineStageRunning
            } else {
                RuntimeMachineStage::MachineStageBooting
            } as i32,
            status: Some(rt::MachineStatusStatus {
                ready: unmet.is_empty(),
                unmet_conditions: unmet,
            }),
        })
    }
}

fn machine_status_yaml(spec: &rt::MachineStatusSpec) -> String {
    let stage = match RuntimeMachineStage::try_from(spec.stage) {
        Ok(RuntimeMachineStage::MachineStageBooting) => "booting",
        Ok(RuntimeMachineStage::MachineStageMaintenance) => "maintenance",
        Ok(RuntimeMachineStage::MachineStageRunning) => "running",
        _ => "unknown",
    };
    let st = spec.status.clone().unwrap_or_default();
    let mut y = format!("stage: {stage}\nstatus:\n    ready: {}\n", st.ready);
    if st.unmet_conditions.is_empty() {
        y.push_str("    unmetConditions: []\n");
    } else {
        y.push_str("    unmetConditions:\n");
        for c in &st.unmet_conditions {
            y.push_str(&format!(
                "        - name: {}\n          reason: {:?}\n",
                c.name, c.reason
            ));
        }
    }
    y
}

#[tonic::async_trait]
impl State for NodeService {
    async fn get(
        &self,
        request: Request<cr::GetRequest>,
    ) -> Result<Response<cr::GetResponse>, Status> {
        const M: &str = "Get";
        let r = match self.enter(M).await {
            Err(e) => Err(e),
            Ok(()) => (|| {
                let req = request.into_inner();
                let (ns, ty, id) = MACHINE_STATUS;
                if (req.namespace.as_str(), req.r#type.as_str(), req.id.as_str()) != (ns, ty, id) {
                    return Err(Status::not_found(format!(
                        "resource {}({}/{}@undefined) doesn't exist",
                        req.r#type, req.namespace, req.id
                    )));
                }
                let spec = self.machine_status()?;
                Ok(cr::GetResponse {
                    resource: Some(cr::Resource {
                        metadata: Some(cr::Metadata {
                            namespace: ns.into(),
                            r#type: ty.into(),
                            id: id.into(),
                            version: "1".into(),
                        }),
                        spec: Some(cr::Spec {
                            proto_spec: waddle_talos::api::proto::prost::Message::encode_to_vec(
                                &spec,
                            ),
                            yaml_spec: machine_status_yaml(&spec),
                        }),
                    }),
                })
            })(),
        };
        self.finish(M, r).map(Response::new)
    }
}
