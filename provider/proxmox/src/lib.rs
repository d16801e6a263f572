//! # waddle-proxmox
//!
//! A Proxmox VE 9 API client for the waddle provider:
//!
//! * [`Client`] / [`ClientConfig`]: API token or ticket authentication (with CSRF token and
//!   automatic re-login), TLS with an optional pinned CA or explicit `insecure` opt-in, optional
//!   SOCKS5/HTTP proxy, keep-alive pool idle timeout below PVE's 5 s, safe retries with
//!   bounded exponential backoff and jitter, per-node concurrency limits, and a
//!   [`RequestRecorder`] hook that sees every HTTP exchange.
//! * [`Error`]: PVE's reason-phrase message and 400 per-parameter `errors` map, classified
//!   (not found, auth, permission, lock timeout, no worker UPID, validation, ...).
//! * [`Upid`] parsing and [`Client::wait_task`] (status polling with backoff, cancellable,
//!   `WARNINGS: n` treated as success, log tail on failure).
//! * Typed operations: VMs ([`VmSpec`], [`Client::create_vm`], start/shutdown/stop/delete,
//!   config and status), storage (`download-url` into `import`, ISO upload, content listing,
//!   volume deletion), guest agent (ping, interfaces, exec, file-write), Linux bridges, SDN
//!   simple zones/vnets/subnets, and the firewall (`firewall.rs`: cluster/node options, rules by
//!   position with digests, security groups, IP sets, aliases).
//! * [`cloud_config`]: the NoCloud seed of a waddle guest VM (hostname, admin user and keys,
//!   NICs matched by MAC with static addresses, DNS, packages, files, commands) with public
//!   validators; [`Guest`]: a VM's guest agent as a handle (exec, read/write files, wait).
//! * [`nocloud`]: a NoCloud seed ISO (ISO 9660 + Joliet, volume id `cidata`) built in Rust.

mod access;
mod agent;
mod client;
pub mod cloud_config;
pub mod cloudinit;
mod config;
mod error;
mod firewall;
mod guest;
mod network;
pub mod nocloud;
mod owner;
mod params;
mod poll;
pub mod props;
mod record;
mod retry;
mod sdn_adopt;
mod storage;
mod task;
mod upid;
mod value;
mod vm;

pub use access::Permissions;
pub use agent::{ExecResult, GuestInterface, GuestIp};
pub use client::{install_crypto_provider, Client};
pub use cloudinit::{CiType, CloudInitSpec, IpConfig};
pub use config::{parse_endpoint, ApiToken, Auth, ClientConfig, Secret, Timeouts};
pub use error::{classify, ApiError, ApiErrorKind, Error, Result, TransportKind};
pub use firewall::{
    ClusterFirewallOptions, FirewallAlias, FirewallRule, FirewallScope, IpSetEntry,
    NamedFirewallObject, RuleList, RULE_OPTIONAL_KEYS,
};
pub use guest::{is_final as is_final_agent_error, Guest, EXEC_TIMEOUT};
pub use network::{sdn_subnet_id, BridgeSpec, SubnetSpec};
pub use owner::{without_mark, OwnerMark, Ownership, OWNER_TAG};
pub use params::{api_path, encode_segment, ParamValue, Params};
pub use poll::Poll;
pub use props::{CdromSpec, DiskBus, DiskSpec, EfiDiskSpec, NetConfig, NetSpec, TpmStateSpec};
pub use record::{MemoryRecorder, RecordedRequest, RequestRecorder};
pub use reqwest::Method;
pub use retry::RetryPolicy;
pub use storage::{
    validate_volume_file_name, volume_id, ChecksumAlgorithm, ContentType, DownloadUrl,
    StorageVolume,
};
pub use task::{parse_exitstatus, ExitStatus, TaskLogLine, TaskOutcome, WaitOptions};
pub use tokio_util::sync::CancellationToken;
pub use upid::Upid;
pub use vm::{Bios, ClusterVm, DeleteOutcome, VmConfig, VmSpec, VmStatus};
