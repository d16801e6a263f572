//! The Talos emulator as a PVE emulator guest: a VM whose disk is imported from a Talos
//! Image Factory image, on a bridge with a DHCP server, boots a maintenance-mode Talos node
//! on a 127.20.x.y DHCP address reported by the guest agent; after ApplyConfiguration the agent reports the static
//! address. A VM from another image gets no Talos node.

#[path = "pve_support.rs"]
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use support::*;
use waddle_acceptance::talos::appliance::{self, TalosAppliance};
use waddle_acceptance::talos::{FleetOptions, Stage, TalosFleet};
use waddle_talos::api::{ApplyMode, ConnectOptions, Credentials, TalosClient};
use waddle_talos::secrets::SystemClock;
use waddle_talos::{render_node_config, ClusterSpec, NodeSpec, Role, SecretsBundle};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn talos_image_vm_runs_a_talos_node() {
    // vmbr0 has a DHCP server here (the DHCP path; the default network has none).
    let api = start(fast().dhcp_bridge("vmbr0").build()).await;
    let fleet = TalosFleet::new(FleetOptions {
        dhcp_pool_start: Some(Ipv4Addr::new(127, 20, 8, 200)),
        ..FleetOptions::default()
    });
    appliance::register(api.emu.appliances(), fleet.clone());
    assert_eq!(api.emu.appliances().names()[0], "talos");

    download(&api, "talos-v1.12.11-nocloud-amd64.qcow2", TALOS_IMAGE_URL).await;
    download(
        &api,
        "debian-12-genericcloud-amd64.qcow2",
        "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2",
    )
    .await;

    let mac = "BC:24:11:AA:08:0A";
    create_and_start(&api, "801", "talos-v1.12.11-nocloud-amd64.qcow2", mac).await;
    create_and_start(
        &api,
        "802",
        "debian-12-genericcloud-amd64.qcow2",
        "BC:24:11:AA:08:0B",
    )
    .await;

    // The agent reports the node's maintenance ("DHCP") address.
    let dhcp = agent_ipv4(&api, "801", mac, |ip| ip.octets()[..2] == [127, 20]).await;
    let node = fleet
        .node_at(dhcp)
        .expect("a Talos node on the reported address");
    assert_eq!(node.stage(), Stage::Maintenance);
    let app = api.emu.appliance(801).expect("appliance");
    assert_eq!(app.kind(), "talos");
    let talos = app.as_any().downcast_ref::<TalosAppliance>().unwrap();
    assert_eq!(talos.node().unwrap().id(), node.id());
    // The Debian VM boots another appliance, and no Talos node.
    let mut other = None;
    for _ in 0..500 {
        other = api.emu.appliance(802);
        if other.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_ne!(other.expect("the Debian VM booted").kind(), "talos");
    assert_eq!(fleet.nodes().len(), 1);

    // Configure it in maintenance mode with a single-node rendered config.
    let bundle = SecretsBundle::generate(&SystemClock).unwrap();
    let mut spec = ClusterSpec::new("pvetalos", "https://127.20.8.100:6443");
    spec.vip = Some("127.20.8.100".into());
    let mut n = NodeSpec::new(Role::ControlPlane, "127.20.8.10/24");
    n.mac = Some(mac.to_ascii_lowercase());
    spec.nodes.insert("cp1".into(), n);
    let cfg = render_node_config(&spec, &bundle, "cp1").unwrap();
    let c = TalosClient::connect_maintenance(
        SocketAddr::new(dhcp.into(), 50000),
        &ConnectOptions::default(),
    )
    .await
    .unwrap();
    c.apply_configuration(&cfg, ApplyMode::Auto).await.unwrap();

    // After the reboot the agent reports the static address and the node answers mTLS.
    let ip = agent_ipv4(&api, "801", mac, |ip| ip == Ipv4Addr::new(127, 20, 8, 10)).await;
    assert!(
        node.wait_stage(Stage::Running, Duration::from_secs(10))
            .await
    );
    let creds = Credentials::admin(&bundle, &SystemClock).unwrap();
    let s = TalosClient::connect(
        SocketAddr::new(ip.into(), 50000),
        &creds,
        &ConnectOptions::default(),
    )
    .await
    .unwrap();
    let read = s.read_file(waddle_talos::api::CONFIG_PATH).await.unwrap();
    assert_eq!(read, cfg.as_bytes());

    // Stopping the VM powers the node off.
    let upid: Value = api.ok("POST", "/nodes/pve/qemu/801/status/stop", &[]).await;
    assert_eq!(api.wait_task(upid.as_str().unwrap()).await, "OK");
    assert!(
        node.wait_stage(Stage::Stopped, Duration::from_secs(10))
            .await
    );
    fleet.shutdown().await;
}
