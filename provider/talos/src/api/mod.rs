//! Talos API (apid, port 50000) client over waddle's own minimal protos.
//!
//! Two ways to connect, matching how a node is reached during its life:
//!
//! * [`TalosClient::connect_maintenance`]: a node booted from the image without a
//!   configuration. TLS with the node's self-signed certificate, which is **not** verified
//!   (as `talosctl --insecure`), and no client certificate. Only `ApplyConfiguration` and a
//!   few read calls work.
//! * [`TalosClient::connect`]: a configured node. Mutual TLS: an Ed25519 client certificate
//!   with Organization `os:admin` signed by the cluster's OS CA ([`Credentials::admin`]),
//!   the server certificate verified against the same CA for the IP address dialled.
//!
//! Both honour an optional [`Proxy`] (SOCKS5 or HTTP CONNECT) to reach a private network.
//!
//! Real `apid` can fan a call out to other nodes named in a `nodes` gRPC metadata header;
//! waddle always dials each node directly, so it never sends that header and each reply
//! holds one message (the node's own). A message whose `metadata.error` is set is reported
//! as [`TalosError::Node`].
//!
//! Every call honours the client's [`CancellationToken`] and optional per-call timeout.

pub mod etcd;
pub mod proto;
pub mod proxy;
pub mod tls;
mod upgrade;

pub use upgrade::{RebootMode, UpgradeApi, UpgradeRequest, BOOT_ID_PATH};

use std::fmt;
use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

pub use etcd::{SnapshotError, SnapshotInfo, SnapshotTransferError};
pub use proxy::{Proxy, ProxyError, ProxyKind};

use proto::cosi::resource::state_client::StateClient;
use proto::machine::machine_service_client::MachineServiceClient;
use proto::machine::{self as pm, apply_configuration_request::Mode as PbMode};

use crate::secrets::{Clock, SecretsBundle, ADMIN_ROLE, CLIENT_CERT_TTL};

/// The Talos API port (apid).
pub const TALOS_API_PORT: u16 = 50000;

/// The path of the active machine configuration on a node (readable with
/// [`TalosClient::read_file`]; used for drift detection).
pub const CONFIG_PATH: &str = "/system/state/config.yaml";

/// Errors from the Talos API client. gRPC status codes are preserved in [`TalosError::Rpc`].
#[derive(Debug, thiserror::Error)]
pub enum TalosError {
    /// Could not open the connection (TCP, proxy or TLS).
    #[error("connecting to the Talos API at {endpoint}: {message}")]
    Connect {
        /// The node address.
        endpoint: SocketAddr,
        /// What failed.
        message: String,
    },
    /// Client credentials or TLS configuration unusable.
    #[error("Talos API credentials: {0}")]
    Credentials(String),
    /// The node answered with a gRPC error status.
    #[error("Talos {method} on {endpoint}: {code:?}: {message}")]
    Rpc {
        /// RPC name.
        method: &'static str,
        /// The node address.
        endpoint: SocketAddr,
        /// gRPC status code.
        code: tonic::Code,
        /// gRPC status message (Talos's explanation).
        message: String,
    },
    /// The reply carried an error for the node in its metadata.
    #[error("Talos {method} on {endpoint}: node error: {message}")]
    Node {
        /// RPC name.
        method: &'static str,
        /// The node address.
        endpoint: SocketAddr,
        /// The error text.
        message: String,
    },
    /// The reply was not what the call expects (e.g. a kubeconfig archive without the file).
    #[error("Talos {method} on {endpoint}: unexpected reply: {message}")]
    Protocol {
        /// RPC name.
        method: &'static str,
        /// The node address.
        endpoint: SocketAddr,
        /// What was wrong.
        message: String,
    },
    /// The call was cancelled through the client's cancellation token.
    #[error("Talos {method} on {endpoint}: cancelled")]
    Cancelled {
        /// RPC name.
        method: &'static str,
        /// The node address.
        endpoint: SocketAddr,
    },
    /// The call exceeded the client's per-call timeout.
    #[error("Talos {method} on {endpoint}: timed out after {timeout:?}")]
    Timeout {
        /// RPC name.
        method: &'static str,
        /// The node address.
        endpoint: SocketAddr,
        /// The timeout.
        timeout: Duration,
    },
}

impl TalosError {
    /// The gRPC status code, if the node answered with one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            TalosError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The status message of an RPC error (Talos's explanation), if any.
    pub fn rpc_message(&self) -> Option<&str> {
        match self {
            TalosError::Rpc { message, .. } => Some(message),
            _ => None,
        }
    }

    /// The call went out but the connection broke before its answer came back (tonic's
    /// `Unknown: transport error`): it may or may not have taken effect. A node that reboots
    /// right after answering (ApplyConfiguration in maintenance mode) can cut its answer off.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, TalosError::Rpc { code: tonic::Code::Unknown, message, .. }
            if message.contains("transport error"))
    }

    /// `FailedPrecondition` (e.g. Bootstrap before the node is ready).
    pub fn is_failed_precondition(&self) -> bool {
        self.code() == Some(tonic::Code::FailedPrecondition)
    }

    /// `AlreadyExists` (e.g. Bootstrap on a bootstrapped cluster).
    pub fn is_already_exists(&self) -> bool {
        self.code() == Some(tonic::Code::AlreadyExists)
    }

    /// `InvalidArgument` (e.g. a configuration the node refuses).
    pub fn is_invalid_argument(&self) -> bool {
        self.code() == Some(tonic::Code::InvalidArgument)
    }

    /// Whether retrying later may help: the node is unreachable, rebooting or busy
    /// (`Unavailable`, connection failures, timeouts).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TalosError::Connect { .. } | TalosError::Timeout { .. }
        ) || matches!(
            self.code(),
            Some(tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
        )
    }
}

/// Client credentials for authenticated (mTLS) connections. `Debug` hides the key.
#[derive(Clone)]
pub struct Credentials {
    /// The OS CA certificate (PEM) the server certificate must chain to.
    pub ca: String,
    /// Client certificate (PEM).
    pub crt: String,
    /// Client private key (PEM; Talos's `ED25519 PRIVATE KEY` label accepted).
    pub key: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("ca", &format_args!("<{} bytes>", self.ca.len()))
            .field("crt", &format_args!("<{} bytes>", self.crt.len()))
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Credentials from PEM texts (e.g. a talosconfig context).
    pub fn new(ca: impl Into<String>, crt: impl Into<String>, key: impl Into<String>) -> Self {
        Credentials {
            ca: ca.into(),
            crt: crt.into(),
            key: key.into(),
        }
    }

    /// Issues a fresh `os:admin` client certificate from the bundle's OS CA.
    pub fn admin(bundle: &SecretsBundle, clock: &dyn Clock) -> Result<Self, TalosError> {
        let ck =
            crate::secrets::issue_client_certificate(bundle, ADMIN_ROLE, clock, CLIENT_CERT_TTL)
                .map_err(|e| TalosError::Credentials(e.to_string()))?;
        Ok(Credentials {
            ca: bundle.os_ca.crt.clone(),
            crt: ck.crt,
            key: ck.key,
        })
    }
}

/// Connection options.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Proxy to tunnel through (the provider's `proxy_url`).
    pub proxy: Option<Proxy>,
    /// Deadline for TCP + proxy + TLS + HTTP/2 setup.
    pub connect_timeout: Duration,
    /// Deadline per call (None: only the cancellation token stops a call).
    pub request_timeout: Option<Duration>,
    /// Cancels connection attempts and calls in flight.
    pub cancel: CancellationToken,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            proxy: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Some(Duration::from_secs(60)),
            cancel: CancellationToken::new(),
        }
    }
}

/// `ApplyConfiguration` modes (same numbers as the Talos API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Apply and reboot (the protocol default).
    Reboot,
    /// Let the node pick the least disruptive mode (what waddle uses).
    Auto,
    /// Apply without reboot; refused when the change needs one.
    NoReboot,
    /// Store for the next reboot.
    Staged,
    /// Apply without reboot and roll back after a timeout unless confirmed.
    Try,
}

impl ApplyMode {
    fn to_pb(self) -> PbMode {
        match self {
            ApplyMode::Reboot => PbMode::Reboot,
            ApplyMode::Auto => PbMode::Auto,
            ApplyMode::NoReboot => PbMode::NoReboot,
            ApplyMode::Staged => PbMode::Staged,
            ApplyMode::Try => PbMode::Try,
        }
    }

    fn from_pb(m: i32) -> Option<Self> {
        Some(match PbMode::try_from(m).ok()? {
            PbMode::Reboot => ApplyMode::Reboot,
            PbMode::Auto => ApplyMode::Auto,
            PbMode::NoReboot => ApplyMode::NoReboot,
            PbMode::Staged => ApplyMode::Staged,
            PbMode::Try => ApplyMode::Try,
        })
    }
}

/// Options of one `ApplyConfiguration` call beyond the mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Validate and report what would happen, change nothing.
    pub dry_run: bool,
    /// Rollback timeout in TRY mode.
    pub try_mode_timeout: Option<Duration>,
}

/// The node's answer to `ApplyConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// The mode the node actually used (AUTO resolves to one of the others).
    pub mode: Option<ApplyMode>,
    /// Human-readable details.
    pub mode_details: String,
    /// Configuration validation warnings.
    pub warnings: Vec<String>,
}

/// Version information of a node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeVersion {
    /// Talos version tag (`v1.12.11`).
    pub tag: String,
    /// Git SHA.
    pub sha: String,
    /// OS / arch.
    pub arch: String,
    /// Platform name (`metal`, `nocloud`, ...), if reported.
    pub platform: Option<String>,
    /// Platform mode (`metal`, `container`, ...), if reported.
    pub platform_mode: Option<String>,
}

/// One etcd member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdMember {
    /// Member id (use with [`TalosClient::etcd_remove_member`]).
    pub id: u64,
    /// Member name (the node's hostname).
    pub hostname: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs.
    pub client_urls: Vec<String>,
    /// Learner flag.
    pub is_learner: bool,
}

/// Namespace of the `MachineStatus` resource.
pub const MACHINE_STATUS_NAMESPACE: &str = "runtime";
/// Type of the `MachineStatus` resource.
pub const MACHINE_STATUS_TYPE: &str = "MachineStatuses.runtime.talos.dev";
/// Id of the (only) `MachineStatus` resource.
pub const MACHINE_STATUS_ID: &str = "machine";

/// Stage of a machine's boot/run process (Talos `RuntimeMachineStage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineStage {
    /// Unknown (0).
    Unknown,
    /// Booting (1): the boot sequence is not done yet.
    Booting,
    /// Installing (2).
    Installing,
    /// Maintenance mode (3).
    Maintenance,
    /// Running (4): boot done.
    Running,
    /// Rebooting (5).
    Rebooting,
    /// Shutting down (6).
    ShuttingDown,
    /// Resetting (7).
    Resetting,
    /// Upgrading (8).
    Upgrading,
}

impl MachineStage {
    fn from_pb(v: i32) -> Self {
        use proto::talos::resource::definitions::enums::RuntimeMachineStage as S;
        match S::try_from(v) {
            Ok(S::MachineStageBooting) => Self::Booting,
            Ok(S::MachineStageInstalling) => Self::Installing,
            Ok(S::MachineStageMaintenance) => Self::Maintenance,
            Ok(S::MachineStageRunning) => Self::Running,
            Ok(S::MachineStageRebooting) => Self::Rebooting,
            Ok(S::MachineStageShuttingDown) => Self::ShuttingDown,
            Ok(S::MachineStageResetting) => Self::Resetting,
            Ok(S::MachineStageUpgrading) => Self::Upgrading,
            Ok(S::MachineStageUnknown) | Err(_) => Self::Unknown,
        }
    }

    /// Parses the YAML form Talos uses (`running`, `booting`, `shutting down`, ...).
    fn from_yaml(s: &str) -> Self {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['_', '-'], " ")
            .as_str()
        {
            "booting" => Self::Booting,
            "installing" => Self::Installing,
            "maintenance" => Self::Maintenance,
            "running" => Self::Running,
            "rebooting" => Self::Rebooting,
            "shutting down" | "shuttingdown" => Self::ShuttingDown,
            "resetting" => Self::Resetting,
            "upgrading" => Self::Upgrading,
            _ => Self::Unknown,
        }
    }
}

impl fmt::Display for MachineStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unknown => "unknown",
            Self::Booting => "booting",
            Self::Installing => "installing",
            Self::Maintenance => "maintenance",
            Self::Running => "running",
            Self::Rebooting => "rebooting",
            Self::ShuttingDown => "shutting down",
            Self::Resetting => "resetting",
            Self::Upgrading => "upgrading",
        })
    }
}

/// The node's `MachineStatus` resource: boot progress and readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineStatus {
    /// Current stage.
    pub stage: MachineStage,
    /// Ready at this stage.
    pub ready: bool,
    /// What keeps it from being ready: (name, reason).
    pub unmet_conditions: Vec<(String, String)>,
}

impl MachineStatus {
    /// Boot done: stage running and ready (what `talosctl health` waits for).
    pub fn is_booted(&self) -> bool {
        self.stage == MachineStage::Running && self.ready
    }

    /// Decodes a resource spec: `proto_spec` when present, else `yaml_spec`.
    pub fn from_spec(proto_spec: &[u8], yaml_spec: &str) -> Result<Self, String> {
        use proto::talos::resource::definitions::runtime::MachineStatusSpec;
        if !proto_spec.is_empty() {
            let spec = <MachineStatusSpec as prost::Message>::decode(proto_spec)
                .map_err(|e| format!("MachineStatus proto spec: {e}"))?;
            let st = spec.status.unwrap_or_default();
            return Ok(MachineStatus {
                stage: MachineStage::from_pb(spec.stage),
                ready: st.ready,
                unmet_conditions: st
                    .unmet_conditions
                    .into_iter()
                    .map(|c| (c.name, c.reason))
                    .collect(),
            });
        }
        if yaml_spec.trim().is_empty() {
            return Err("MachineStatus resource has an empty spec".into());
        }
        #[derive(serde::Deserialize, Default)]
        #[serde(rename_all = "camelCase")]
        struct Cond {
            #[serde(default)]
            name: String,
            #[serde(default)]
            reason: String,
        }
        #[derive(serde::Deserialize, Default)]
        #[serde(rename_all = "camelCase")]
        struct St {
            #[serde(default)]
            ready: bool,
            #[serde(default)]
            unmet_conditions: Option<Vec<Cond>>,
        }
        #[derive(serde::Deserialize)]
        struct Y {
            #[serde(default)]
            stage: String,
            #[serde(default)]
            status: Option<St>,
        }
        let y: Y = serde_yaml_ng::from_str(yaml_spec)
            .map_err(|e| format!("MachineStatus YAML spec: {e}"))?;
        let st = y.status.unwrap_or_default();
        Ok(MachineStatus {
            stage: MachineStage::from_yaml(&y.stage),
            ready: st.ready,
            unmet_conditions: st
                .unmet_conditions
                .unwrap_or_default()
                .into_iter()
                .map(|c| (c.name, c.reason))
                .collect(),
        })
    }
}

impl fmt::Display for MachineStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stage {}, {}",
            self.stage,
            if self.ready { "ready" } else { "not ready" }
        )?;
        for (i, (name, reason)) in self.unmet_conditions.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            write!(f, "{name}: {reason}")?;
        }
        Ok(())
    }
}

/// One service on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// Service id (`apid`, `etcd`, `kubelet`, `machined`, ...).
    pub id: String,
    /// State (`Running`, `Waiting`, `Finished`, ...).
    pub state: String,
    /// Health: `Some(true)` healthy, `Some(false)` unhealthy, `None` unknown.
    pub healthy: Option<bool>,
    /// Last health message.
    pub message: String,
}

/// `Reset` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetOptions {
    /// Leave etcd first (with etcd health checks).
    pub graceful: bool,
    /// Reboot (true) or power off (false) afterwards.
    pub reboot: bool,
    /// System partition labels to wipe (`STATE`, `EPHEMERAL`); empty wipes the system disk.
    pub system_partitions_to_wipe: Vec<String>,
}

impl Default for ResetOptions {
    fn default() -> Self {
        ResetOptions {
            graceful: true,
            reboot: true,
            system_partitions_to_wipe: Vec::new(),
        }
    }
}

/// A Talos API connection to one node.
#[derive(Clone)]
pub struct TalosClient {
    channel: Channel,
    inner: MachineServiceClient<Channel>,
    state: StateClient<Channel>,
    endpoint: SocketAddr,
    authenticated: bool,
    request_timeout: Option<Duration>,
    cancel: CancellationToken,
}

impl fmt::Debug for TalosClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TalosClient")
            .field("endpoint", &self.endpoint)
            .field("authenticated", &self.authenticated)
            .finish()
    }
}

/// Parses `ip`, `ip:port` or `[v6]:port` (default port 50000). Talos endpoints are dialled
/// by IP address: the server certificate names the node's addresses.
pub fn parse_endpoint(s: &str) -> Result<SocketAddr, TalosError> {
    let bad = |m: &str| TalosError::Credentials(format!("invalid Talos endpoint {s:?}: {m}"));
    let s2 = s.trim();
    let s2 = s2.strip_prefix("https://").unwrap_or(s2);
    if let Ok(ip) = s2.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, TALOS_API_PORT));
    }
    s2.parse::<SocketAddr>()
        .map_err(|_| bad("expected an IP address with an optional port"))
}

/// A reply that only acknowledges a call: one message per node, each with its metadata.
trait Acknowledgement {
    fn metadata(&self) -> Vec<Option<&proto::common::Metadata>>;
}

macro_rules! acknowledgement {
    ($($reply:ty),* $(,)?) => {$(
        impl Acknowledgement for $reply {
            fn metadata(&self) -> Vec<Option<&proto::common::Metadata>> {
                self.messages.iter().map(|m| m.metadata.as_ref()).collect()
            }
        }
    )*};
}

acknowledgement!(
    pm::BootstrapResponse,
    pm::ResetResponse,
    pm::EtcdLeaveClusterResponse,
    pm::EtcdRemoveMemberByIdResponse,
    pm::EtcdRecoverResponse,
);

impl TalosClient {
    /// Connects to a node in maintenance mode (no client certificate, server certificate
    /// not verified).
    pub async fn connect_maintenance(
        endpoint: SocketAddr,
        opts: &ConnectOptions,
    ) -> Result<Self, TalosError> {
        let cfg = tls::maintenance_client_config().map_err(TalosError::Credentials)?;
        Self::connect_with(endpoint, cfg, false, opts).await
    }

    /// Connects to a configured node with mutual TLS.
    pub async fn connect(
        endpoint: SocketAddr,
        creds: &Credentials,
        opts: &ConnectOptions,
    ) -> Result<Self, TalosError> {
        let cfg = tls::mtls_client_config(&creds.ca, &creds.crt, &creds.key)
            .map_err(TalosError::Credentials)?;
        Self::connect_with(endpoint, cfg, true, opts).await
    }

    async fn connect_with(
        endpoint: SocketAddr,
        cfg: rustls::ClientConfig,
        authenticated: bool,
        opts: &ConnectOptions,
    ) -> Result<Self, TalosError> {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let proxy = opts.proxy.clone();
        let make = tower::service_fn(move |_uri: http::Uri| {
            let connector = connector.clone();
            let proxy = proxy.clone();
            async move {
                let tcp = proxy::connect_tcp(endpoint, proxy.as_ref())
                    .await
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
                let name = ServerName::IpAddress(endpoint.ip().into());
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(TokioIo::new(tls))
            }
        });
        let uri = match endpoint {
            SocketAddr::V4(a) => format!("http://{a}"),
            SocketAddr::V6(a) => format!("http://[{}]:{}", a.ip(), a.port()),
        };
        let ep = Endpoint::from_shared(uri)
            .map_err(|e| TalosError::Connect {
                endpoint,
                message: e.to_string(),
            })?
            .connect_timeout(opts.connect_timeout)
            .tcp_nodelay(true);
        let connecting = ep.connect_with_connector(make);
        let channel = tokio::select! {
            _ = opts.cancel.cancelled() => {
                return Err(TalosError::Cancelled { method: "connect", endpoint });
            }
            r = tokio::time::timeout(opts.connect_timeout, connecting) => match r {
                Err(_) => return Err(TalosError::Connect {
                    endpoint,
                    message: format!("timed out after {:?}", opts.connect_timeout),
                }),
                Ok(Err(e)) => return Err(TalosError::Connect { endpoint, message: error_chain(&e) }),
                Ok(Ok(c)) => c,
            }
        };
        Ok(TalosClient {
            channel: channel.clone(),
            state: StateClient::new(channel.clone()),
            inner: MachineServiceClient::new(channel).max_decoding_message_size(64 * 1024 * 1024),
            endpoint,
            authenticated,
            request_timeout: opts.request_timeout,
            cancel: opts.cancel.clone(),
        })
    }

    /// The node address dialled.
    pub fn endpoint(&self) -> SocketAddr {
        self.endpoint
    }

    /// Whether this is an mTLS (configured-node) connection.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// A copy whose calls are also cancelled by `token`.
    pub fn with_cancel(&self, token: CancellationToken) -> Self {
        let mut c = self.clone();
        c.cancel = token;
        c
    }

    async fn run<T, F>(&self, method: &'static str, fut: F) -> Result<T, TalosError>
    where
        F: std::future::Future<Output = Result<T, TalosError>>,
    {
        let endpoint = self.endpoint;
        let timed = async {
            match self.request_timeout {
                Some(t) => tokio::time::timeout(t, fut)
                    .await
                    .map_err(|_| TalosError::Timeout {
                        method,
                        endpoint,
                        timeout: t,
                    })?,
                None => fut.await,
            }
        };
        let started = std::time::Instant::now();
        let out = tokio::select! {
            _ = self.cancel.cancelled() => Err(TalosError::Cancelled { method, endpoint }),
            r = timed => r,
        };
        // Method, node and outcome only: requests (machine configurations) and replies
        // (kubeconfigs, files) are never logged.
        let duration_ms = started.elapsed().as_millis() as u64;
        match &out {
            Ok(_) => tracing::debug!(method, endpoint = %endpoint, duration_ms, "Talos API call"),
            Err(e) => tracing::debug!(
                method,
                endpoint = %endpoint,
                duration_ms,
                error = %e,
                "Talos API call failed"
            ),
        }
        out
    }

    fn rpc(&self, method: &'static str) -> impl Fn(tonic::Status) -> TalosError {
        let endpoint = self.endpoint;
        move |s| TalosError::Rpc {
            method,
            endpoint,
            code: s.code(),
            message: s.message().to_string(),
        }
    }

    /// A call whose reply only acknowledges it, under [`Self::run`] (deadline, cancellation,
    /// one log line): `send` makes the call on its own handle of the channel; a gRPC status,
    /// or a node's error in the metadata of its message, is the error.
    async fn acknowledged<R, F, Fut>(&self, method: &'static str, send: F) -> Result<(), TalosError>
    where
        R: Acknowledgement,
        F: FnOnce(MachineServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    {
        let c = self.inner.clone();
        self.run(method, async {
            let r = send(c).await.map_err(self.rpc(method))?.into_inner();
            for md in r.metadata() {
                self.check_meta(method, md)?;
            }
            Ok(())
        })
        .await
    }

    fn check_meta(
        &self,
        method: &'static str,
        md: Option<&proto::common::Metadata>,
    ) -> Result<(), TalosError> {
        if let Some(m) = md {
            if let Some(st) = &m.status {
                if st.code != 0 {
                    return Err(TalosError::Rpc {
                        method,
                        endpoint: self.endpoint,
                        code: tonic::Code::from_i32(st.code),
                        message: st.message.clone(),
                    });
                }
            }
            if !m.error.is_empty() {
                return Err(TalosError::Node {
                    method,
                    endpoint: self.endpoint,
                    message: m.error.clone(),
                });
            }
        }
        Ok(())
    }

    fn protocol(&self, method: &'static str, message: impl Into<String>) -> TalosError {
        TalosError::Protocol {
            method,
            endpoint: self.endpoint,
            message: message.into(),
        }
    }

    /// Applies a machine configuration. waddle uses [`ApplyMode::Auto`] explicitly (the
    /// protocol default is REBOOT).
    pub async fn apply_configuration(
        &self,
        config_yaml: &str,
        mode: ApplyMode,
    ) -> Result<ApplyOutcome, TalosError> {
        self.apply_configuration_with(config_yaml, mode, ApplyOptions::default())
            .await
    }

    /// [`Self::apply_configuration`] with dry-run / TRY timeout.
    pub async fn apply_configuration_with(
        &self,
        config_yaml: &str,
        mode: ApplyMode,
        opts: ApplyOptions,
    ) -> Result<ApplyOutcome, TalosError> {
        const M: &str = "ApplyConfiguration";
        let req = pm::ApplyConfigurationRequest {
            data: config_yaml.as_bytes().to_vec(),
            mode: mode.to_pb() as i32,
            dry_run: opts.dry_run,
            try_mode_timeout: opts.try_mode_timeout.map(|d| prost_types::Duration {
                seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
            }),
        };
        let mut c = self.inner.clone();
        self.run(M, async {
            let r = c
                .apply_configuration(req)
                .await
                .map_err(self.rpc(M))?
                .into_inner();
            let msg = r
                .messages
                .into_iter()
                .next()
                .ok_or_else(|| self.protocol(M, "no message in reply"))?;
            self.check_meta(M, msg.metadata.as_ref())?;
            Ok(ApplyOutcome {
                mode: ApplyMode::from_pb(msg.mode),
                mode_details: msg.mode_details,
                warnings: msg.warnings,
            })
        })
        .await
    }

    /// Bootstraps etcd on this control plane. `FailedPrecondition` while the node is not
    /// ready yet (retry), `AlreadyExists` once the cluster is bootstrapped.
    pub async fn bootstrap(&self) -> Result<(), TalosError> {
        self.acknowledged("Bootstrap", |mut c| async move {
            c.bootstrap(pm::BootstrapRequest::default()).await
        })
        .await
    }

    /// The next chunk of a `common.Data` stream, `None` at its end; a gRPC status or a node's
    /// error in the chunk's metadata is the error.
    async fn next_chunk(
        &self,
        method: &'static str,
        stream: &mut tonic::Streaming<proto::common::Data>,
    ) -> Result<Option<Vec<u8>>, TalosError> {
        let Some(item) = stream.next().await else {
            return Ok(None);
        };
        let d = item.map_err(self.rpc(method))?;
        self.check_meta(method, d.metadata.as_ref())?;
        Ok(Some(d.bytes))
    }

    async fn collect_stream(
        &self,
        method: &'static str,
        stream: tonic::Streaming<proto::common::Data>,
    ) -> Result<Vec<u8>, TalosError> {
        let mut out = Vec::new();
        let mut s = stream;
        while let Some(bytes) = self.next_chunk(method, &mut s).await? {
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }

    /// The admin kubeconfig (from the `Kubeconfig` stream, a tar.gz holding `kubeconfig`).
    pub async fn kubeconfig(&self) -> Result<Vec<u8>, TalosError> {
        const M: &str = "Kubeconfig";
        let mut c = self.inner.clone();
        self.run(M, async {
            let s = c.kubeconfig(()).await.map_err(self.rpc(M))?.into_inner();
            let archive = self.collect_stream(M, s).await?;
            extract_file(&archive, "kubeconfig").map_err(|e| self.protocol(M, e))
        })
        .await
    }

    /// Contents of a file on the node (e.g. [`CONFIG_PATH`]).
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>, TalosError> {
        const M: &str = "Read";
        let mut c = self.inner.clone();
        let req = pm::ReadRequest {
            path: path.to_string(),
        };
        self.run(M, async {
            let s = c.read(req).await.map_err(self.rpc(M))?.into_inner();
            self.collect_stream(M, s).await
        })
        .await
    }

    /// Version of Talos on the node.
    pub async fn version(&self) -> Result<NodeVersion, TalosError> {
        const M: &str = "Version";
        let mut c = self.inner.clone();
        self.run(M, async {
            let r = c.version(()).await.map_err(self.rpc(M))?.into_inner();
            let m = r
                .messages
                .into_iter()
                .next()
                .ok_or_else(|| self.protocol(M, "no message in reply"))?;
            self.check_meta(M, m.metadata.as_ref())?;
            let v = m.version.unwrap_or_default();
            Ok(NodeVersion {
                tag: v.tag,
                sha: v.sha,
                arch: v.arch,
                platform: m.platform.as_ref().map(|p| p.name.clone()),
                platform_mode: m.platform.map(|p| p.mode),
            })
        })
        .await
    }

    /// The etcd members as this control plane sees them.
    pub async fn etcd_members(&self) -> Result<Vec<EtcdMember>, TalosError> {
        const M: &str = "EtcdMemberList";
        let mut c = self.inner.clone();
        self.run(M, async {
            let r = c
                .etcd_member_list(pm::EtcdMemberListRequest { query_local: false })
                .await
                .map_err(self.rpc(M))?
                .into_inner();
            let mut out = Vec::new();
            for m in r.messages {
                self.check_meta(M, m.metadata.as_ref())?;
                out.extend(m.members.into_iter().map(|x| EtcdMember {
                    id: x.id,
                    hostname: x.hostname,
                    peer_urls: x.peer_urls,
                    client_urls: x.client_urls,
                    is_learner: x.is_learner,
                }));
            }
            Ok(out)
        })
        .await
    }

    /// Removes an etcd member by id (for members whose node is gone).
    pub async fn etcd_remove_member(&self, id: u64) -> Result<(), TalosError> {
        self.acknowledged("EtcdRemoveMemberByID", |mut c| async move {
            c.etcd_remove_member_by_id(pm::EtcdRemoveMemberByIdRequest { member_id: id })
                .await
        })
        .await
    }

    /// Makes this control plane leave etcd.
    pub async fn etcd_leave(&self) -> Result<(), TalosError> {
        self.acknowledged("EtcdLeaveCluster", |mut c| async move {
            c.etcd_leave_cluster(pm::EtcdLeaveClusterRequest {}).await
        })
        .await
    }

    /// Resets the node (wipes it and returns it to maintenance mode when `reboot`).
    pub async fn reset(&self, opts: &ResetOptions) -> Result<(), TalosError> {
        const M: &str = "Reset";
        let req = pm::ResetRequest {
            graceful: opts.graceful,
            reboot: opts.reboot,
            system_partitions_to_wipe: opts
                .system_partitions_to_wipe
                .iter()
                .map(|l| pm::ResetPartitionSpec {
                    label: l.clone(),
                    wipe: true,
                })
                .collect(),
            user_disks_to_wipe: Vec::new(),
            mode: pm::reset_request::WipeMode::All as i32,
        };
        self.acknowledged(M, |mut c| async move { c.reset(req).await })
            .await
    }

    /// The node's `MachineStatus` resource (COSI `cosi.resource.State/Get`, namespace
    /// `runtime`, type `MachineStatuses.runtime.talos.dev`, id `machine`): boot stage and
    /// readiness. Boot is done when [`MachineStatus::is_booted`].
    pub async fn machine_status(&self) -> Result<MachineStatus, TalosError> {
        use proto::cosi::resource::GetRequest;
        const M: &str = "MachineStatus";
        let mut c = self.state.clone();
        let req = GetRequest {
            namespace: MACHINE_STATUS_NAMESPACE.into(),
            r#type: MACHINE_STATUS_TYPE.into(),
            id: MACHINE_STATUS_ID.into(),
            options: None,
        };
        self.run(M, async {
            let r = c.get(req).await.map_err(self.rpc(M))?.into_inner();
            let res = r
                .resource
                .ok_or_else(|| self.protocol(M, "no resource in reply"))?;
            let spec = res.spec.unwrap_or_default();
            MachineStatus::from_spec(&spec.proto_spec, &spec.yaml_spec)
                .map_err(|e| self.protocol(M, e))
        })
        .await
    }

    /// Services on the node with their health.
    pub async fn services(&self) -> Result<Vec<ServiceStatus>, TalosError> {
        const M: &str = "ServiceList";
        let mut c = self.inner.clone();
        self.run(M, async {
            let r = c.service_list(()).await.map_err(self.rpc(M))?.into_inner();
            let mut out = Vec::new();
            for m in r.messages {
                self.check_meta(M, m.metadata.as_ref())?;
                out.extend(m.services.into_iter().map(|s| {
                    let h = s.health.unwrap_or_default();
                    ServiceStatus {
                        id: s.id,
                        state: s.state,
                        healthy: if h.unknown { None } else { Some(h.healthy) },
                        message: h.last_message,
                    }
                }));
            }
            Ok(out)
        })
        .await
    }
}

/// Extracts the regular file `name` (also `./name`) from a gzip-compressed tar archive.
pub fn extract_file(tar_gz: &[u8], name: &str) -> Result<Vec<u8>, String> {
    let gz = flate2::read::GzDecoder::new(tar_gz);
    let mut ar = tar::Archive::new(gz);
    let entries = ar
        .entries()
        .map_err(|e| format!("not a tar.gz archive: {e}"))?;
    for entry in entries {
        let mut e = entry.map_err(|e| format!("corrupt tar.gz archive: {e}"))?;
        let path = e
            .path()
            .map_err(|e| format!("bad path in archive: {e}"))?
            .to_string_lossy()
            .into_owned();
        if path.trim_start_matches("./") == name && e.header().entry_type().is_file() {
            let mut buf = Vec::new();
            e.read_to_end(&mut buf)
                .map_err(|e| format!("reading {name} from archive: {e}"))?;
            return Ok(buf);
        }
    }
    Err(format!("archive holds no file {name:?}"))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        cur = c.source();
    }
    s
}
