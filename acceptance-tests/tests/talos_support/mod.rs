//! What the tests that drive the Talos emulator alone through the real Talos API client share
//! (`mod talos_support;`): one secrets bundle, cluster specs on `127.20.<net>.0/24`, fast
//! emulator timings, and connecting to a node in maintenance mode or over mTLS.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use waddle_acceptance::talos::{FleetOptions, Stage, TalosNode, Timings};
use waddle_talos::api::{ApplyMode, ConnectOptions, Credentials, TalosClient};
use waddle_talos::secrets::{FixedClock, SystemClock};
use waddle_talos::{render_node_config, ClusterSpec, NodeSpec, Role, SecretsBundle};

/// How long a node may take to reach a stage.
pub const WAIT: Duration = Duration::from_secs(10);

/// The secrets bundle of this test process.
pub fn bundle() -> &'static SecretsBundle {
    static B: OnceLock<SecretsBundle> = OnceLock::new();
    B.get_or_init(|| {
        SecretsBundle::generate(&FixedClock(time::OffsetDateTime::now_utc())).expect("bundle")
    })
}

/// Cluster `name` of `nodes` (name, role, host) on 127.20.<net>.0/24: the VIP (and endpoint)
/// on .100, the gateway .1, MAC addresses `bc:24:11:00:<net>:<host>`.
pub fn spec(name: &str, net: u8, nodes: &[(&str, Role, u8)]) -> ClusterSpec {
    let vip = format!("127.20.{net}.100");
    let mut s = ClusterSpec::new(name, &format!("https://{vip}:6443"));
    s.vip = Some(vip);
    for (name, role, host) in nodes {
        let mut n = NodeSpec::new(*role, &format!("127.20.{net}.{host}/24"));
        n.gateway = Some(format!("127.20.{net}.1"));
        n.mac = Some(format!("bc:24:11:00:{net:02x}:{host:02x}"));
        s.nodes.insert(name.to_string(), n);
    }
    s
}

/// The emulator's timings cut to milliseconds: boot 20 ms, reboot and upgrade 50 ms.
pub fn fast_timings() -> Timings {
    Timings {
        boot: Duration::from_millis(20),
        apply: Duration::ZERO,
        reboot: Duration::from_millis(50),
        bootstrap_ready: Duration::ZERO,
        rpc: Duration::ZERO,
        boot_done: Duration::from_millis(20),
        upgrade: Duration::from_millis(50),
    }
}

/// A fleet with `timings` whose DHCP pool starts at 127.20.<net>.200.
pub fn fleet_options(net: u8, timings: Timings) -> FleetOptions {
    FleetOptions {
        timings,
        dhcp_pool_start: Some(Ipv4Addr::new(127, 20, net, 200)),
        ..FleetOptions::default()
    }
}

/// The Talos API (apid) of `ip`.
pub fn ep(ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::new(ip.into(), 50000)
}

/// Admin credentials of [`bundle`].
pub fn creds() -> Credentials {
    Credentials::admin(bundle(), &SystemClock).expect("credentials")
}

/// An admin mTLS client of the node on `ip`.
pub async fn secure(ip: Ipv4Addr) -> TalosClient {
    TalosClient::connect(ep(ip), &creds(), &ConnectOptions::default())
        .await
        .expect("mTLS connection")
}

/// A maintenance-mode client of `node`, once it is in maintenance mode.
pub async fn maintenance(node: &TalosNode) -> TalosClient {
    assert!(node.wait_stage(Stage::Maintenance, WAIT).await, "{node:?}");
    TalosClient::connect_maintenance(
        ep(node.dhcp_address().expect("a maintenance address")),
        &ConnectOptions::default(),
    )
    .await
    .expect("maintenance connection")
}

/// Applies each node's configuration of `spec` in maintenance mode and waits until all run.
pub async fn configure(spec: &ClusterSpec, nodes: &[(&str, TalosNode)]) {
    for (name, node) in nodes {
        let cfg = render_node_config(spec, bundle(), name).expect("config");
        maintenance(node)
            .await
            .apply_configuration(&cfg, ApplyMode::Auto)
            .await
            .expect("applied");
    }
    for (_, node) in nodes {
        assert!(node.wait_stage(Stage::Running, WAIT).await, "{node:?}");
    }
}
