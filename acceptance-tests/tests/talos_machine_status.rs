//! Boot completion: the `MachineStatus` resource (`cosi.resource.State/Get`) served by the
//! Talos emulator, read with `TalosClient::machine_status`, and the `waddle_talos_cluster`
//! health wait, which does not finish while a node's boot sequence is not done.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use waddle_acceptance::pve::{EmulatorConfig, PveEmulator};
use waddle_acceptance::talos::{
    appliance, FleetOptions, NodeOptions, Stage, TalosFleet, TalosNode, Timings,
};
use waddle_framework::testing::Harness;
use waddle_framework::{AttributePath, Value};
use waddle_provider::provider::{schema as provider_schema, NoEnv, WaddleProvider};
use waddle_provider::resources::talos_cluster::{
    schema, ClusterModel, ImageModel, NodeModel, PlacementModel, TimeoutsModel, TYPE_NAME,
};
use waddle_talos::api::{ApplyMode, ConnectOptions, Credentials, MachineStage, TalosClient};
use waddle_talos::secrets::{FixedClock, SystemClock};
use waddle_talos::{render_node_config, ClusterSpec, NodeSpec, Role, SecretsBundle};

const WAIT: Duration = Duration::from_secs(30);
const URL: &str = "https://factory.talos.dev/image/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba/v1.12.11/nocloud-amd64.qcow2";

fn ep(ip: Ipv4Addr) -> SocketAddr {
    SocketAddr::new(ip.into(), 50000)
}

/// Polls `f` until it returns `Some` (bounded by [`WAIT`]; not a timing assertion).
async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < WAIT, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn get_calls(node: &TalosNode) -> usize {
    node.calls()
        .iter()
        .filter(|c| c.method == "Get" && c.authenticated && c.code == tonic::Code::Ok)
        .count()
}

/// Maintenance: stage maintenance. After the apply and reboot the node serves mTLS but its
/// boot sequence is not done (held): stage booting, with Talos's unmet conditions. Once
/// released: stage running; ready stays false with CNI `none` (the Node is never Ready).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machine_status_follows_the_boot_sequence() {
    let net = 97;
    let bundle = SecretsBundle::generate(&FixedClock(time::OffsetDateTime::now_utc())).unwrap();
    let vip = format!("127.20.{net}.100");
    let mut spec = ClusterSpec::new("boot", &format!("https://{vip}:6443"));
    spec.vip = Some(vip);
    let mut n = NodeSpec::new(Role::ControlPlane, &format!("127.20.{net}.10/24"));
    n.gateway = Some(format!("127.20.{net}.1"));
    spec.nodes.insert("cp1".into(), n);
    let fleet = TalosFleet::new(FleetOptions {
        timings: Timings {
            boot: Duration::from_millis(20),
            apply: Duration::ZERO,
            reboot: Duration::from_millis(50),
            bootstrap_ready: Duration::ZERO,
            rpc: Duration::ZERO,
            boot_done: Duration::ZERO,
        },
        dhcp_pool_start: Some(Ipv4Addr::new(127, 20, net, 200)),
        ..FleetOptions::default()
    });
    let static_ip = Ipv4Addr::new(127, 20, net, 10);
    fleet.hold_boot(static_ip);
    let node = fleet.start_node(NodeOptions::default());
    assert!(node.wait_stage(Stage::Maintenance, WAIT).await);

    // Maintenance mode serves resource reads too (no admin role needed).
    let c = TalosClient::connect_maintenance(ep(node.dhcp_address()), &ConnectOptions::default())
        .await
        .unwrap();
    let st = c.machine_status().await.unwrap();
    assert_eq!(st.stage, MachineStage::Maintenance);
    assert!(!st.is_booted());

    let cfg = render_node_config(&spec, &bundle, "cp1").unwrap();
    c.apply_configuration(&cfg, ApplyMode::Auto).await.unwrap();
    assert!(node.wait_stage(Stage::Running, WAIT).await);
    assert_eq!(node.address(), Some(static_ip));

    let creds = Credentials::admin(&bundle, &SystemClock).unwrap();
    let c = TalosClient::connect(ep(static_ip), &creds, &ConnectOptions::default())
        .await
        .unwrap();
    // apid answers, but the boot sequence is held: booting, whatever the elapsed time.
    for _ in 0..3 {
        let st = c.machine_status().await.unwrap();
        assert_eq!(st.stage, MachineStage::Booting, "{st}");
        assert!(!st.ready && !st.is_booted());
        let names: Vec<&str> = st
            .unmet_conditions
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["services", "nodeReady"], "{st}");
        assert_eq!(st.unmet_conditions[0].1, "etcd not healthy");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    fleet.release_boot(static_ip);
    let st = eventually("boot done", || async {
        let st = c.machine_status().await.unwrap();
        (st.stage == MachineStage::Running).then_some(st)
    })
    .await;
    // CNI none: the kubelet's Node is never Ready, so the machine is never "ready".
    assert!(!st.ready, "{st}");
    assert!(!st.is_booted());

    // After bootstrap etcd is healthy: only nodeReady remains unmet.
    eventually("bootstrap", || async {
        match c.bootstrap().await {
            Ok(()) => Some(()),
            Err(e) if e.is_already_exists() => Some(()),
            Err(e) if e.is_failed_precondition() => None,
            Err(e) => panic!("bootstrap: {e}"),
        }
    })
    .await;
    let st = c.machine_status().await.unwrap();
    assert_eq!(st.stage, MachineStage::Running);
    assert_eq!(
        st.unmet_conditions,
        vec![(
            "nodeReady".to_string(),
            format!("node {:?} is not ready", "cp1")
        )],
        "{st}"
    );
    fleet.shutdown().await;
}

async fn harness(emu: &PveEmulator) -> Harness {
    let h = Harness::new(WaddleProvider::with_env(NoEnv));
    let mut pc = provider_schema().null_value();
    for (k, v) in [
        ("endpoint", emu.endpoint()),
        ("api_token", emu.api_token().expect("token")),
        ("ca_cert", emu.ca_pem().to_string()),
        ("node", emu.node().to_string()),
    ] {
        pc.set_path(&AttributePath::attr(k), Value::from(v.as_str()));
    }
    let d = h.configure(pc).await;
    assert!(!d.has_errors(), "{d:?}");
    h
}

/// One control plane and one worker in 127.20.98.0/24.
fn config() -> Value {
    let ip = |h: u8| format!("127.20.98.{h}");
    let node = |role: &str, h: u8, vmid: u32| NodeModel {
        role: role.into(),
        address: format!("{}/24", ip(h)),
        gateway: Some(ip(1)),
        proxmox: Some(PlacementModel {
            vmid: Some(vmid),
            ..Default::default()
        }),
        ..Default::default()
    };
    let m = ClusterModel {
        cluster_name: "boot98".into(),
        endpoint: format!("https://{}:6443", ip(20)),
        vip: Some(ip(20)),
        image: Some(ImageModel {
            installer: None,
            disk_image_url: Some(URL.into()),
        }),
        timeouts: Some(TimeoutsModel {
            create: Some("2m".into()),
            update: Some("2m".into()),
            delete: Some("2m".into()),
        }),
        nodes: Some(BTreeMap::from([
            ("cp1".to_string(), node("controlplane", 10, 980)),
            ("w1".to_string(), node("worker", 11, 981)),
        ])),
        ..Default::default()
    };
    schema().from_typed(&m).expect("config")
}

/// The create's health wait keeps going while the worker's boot sequence is not done, even
/// though etcd, services and /readyz are fine; it completes once the boot finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_wait_needs_every_node_booted() {
    let fleet = TalosFleet::new(FleetOptions::default());
    let emu = PveEmulator::start(
        EmulatorConfig::builder()
            .ip(Ipv4Addr::new(127, 40, 98, 1))
            .build(),
    )
    .await
    .expect("PVE emulator");
    appliance::register(emu.appliances(), fleet.clone());
    let h = Arc::new(harness(&emu).await);
    let worker_ip = Ipv4Addr::new(127, 20, 98, 11);
    fleet.hold_boot(worker_ip);

    let config = config();
    let create = {
        let h = h.clone();
        let config = config.clone();
        tokio::spawn(async move { h.plan_and_apply(TYPE_NAME, &Value::Null, &config).await })
    };

    // The health wait reads the worker's MachineStatus again and again (each read comes
    // after the etcd and service checks passed in that round) and does not finish.
    let worker = eventually("the worker running on its static address", || async {
        fleet
            .node_at(worker_ip)
            .filter(|n| n.stage() == Stage::Running)
    })
    .await;
    eventually("repeated boot checks of the worker", || async {
        (get_calls(&worker) >= 3).then_some(())
    })
    .await;
    let cp = fleet
        .node_at(Ipv4Addr::new(127, 20, 98, 10))
        .expect("control plane");
    assert!(
        get_calls(&cp) >= 1,
        "the control plane's boot is checked too"
    );
    assert!(
        !create.is_finished(),
        "create finished although the worker's boot is not done"
    );

    fleet.release_boot(worker_ip);
    let state = create
        .await
        .expect("join")
        .unwrap_or_else(|d| panic!("create failed: {d:?}"));
    assert!(get_calls(&worker) >= 4, "boot checked again after release");

    h.plan_and_apply(TYPE_NAME, &state, &Value::Null)
        .await
        .unwrap_or_else(|d| panic!("destroy failed: {d:?}"));
    assert!(emu.vms().is_empty(), "VMs left after destroy");
    fleet.shutdown().await;
}
