//! The DHCP path of `waddle_talos_cluster`, kept alive on a network that has DHCP: the
//! cluster's control plane is created by the provider (static address through the cloud-init
//! drive), then a worker joins on a VM made elsewhere and handed over by its ownership mark
//! (tag `waddle` and the node's `waddle-owner` line; an unmarked VM is refused, see
//! `fault_ownership`), with no cloud-init drive, so no static address before configuration,
//! on a bridge
//! with a DHCP server is adopted; its node answers in maintenance mode only on its DHCP
//! lease, which the provider finds through the guest agent and configures. On the default,
//! DHCP-less networks every other test exercises the static path (cloud-init drive).

#[path = "pve_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use support::*;
use waddle_acceptance::talos::{appliance, FleetOptions, Stage, TalosFleet};
use waddle_framework::Value;
use waddle_provider::resources::talos_cluster::{
    schema, ClusterModel, ImageModel, NodeModel, PlacementModel, TimeoutsModel, TYPE_NAME,
};

#[allow(dead_code)] // `client` is for other targets
mod inproc;
use inproc::harness;

const MAC: &str = "BC:24:11:AA:32:0A";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_a_dhcp_network_without_cloud_init_is_configured_at_its_lease() {
    let api = start(
        fast()
            .ip(Ipv4Addr::new(127, 40, 50, 1))
            .dhcp_bridge("vmbr0")
            .build(),
    )
    .await;
    let lease = Ipv4Addr::new(127, 20, 50, 200);
    let fleet = TalosFleet::new(FleetOptions {
        dhcp_pool_start: Some(lease),
        ..FleetOptions::default()
    });
    appliance::register(api.emu.appliances(), fleet.clone());

    // The VM exists already: no cloud-init drive, the node's MAC, on the DHCP bridge, the
    // guest agent enabled (Talos's qemu-guest-agent extension reports the lease).
    download(&api, "talos-pre-nocloud-amd64.qcow2", TALOS_IMAGE_URL).await;
    let mark = waddle_provider::resources::talos_cluster::ops::owner_mark("dhcp50", "w1").line();
    let upid = api
        .ok(
            "POST",
            "/nodes/pve/qemu",
            &[
                ("vmid", "501"),
                ("name", "w1"),
                ("memory", "4096"),
                ("cores", "2"),
                ("agent", "1"),
                ("tags", "waddle"),
                ("description", mark.as_str()),
                (
                    "scsi0",
                    "local-lvm:0,import-from=local:import/talos-pre-nocloud-amd64.qcow2",
                ),
                ("net0", &format!("virtio={MAC},bridge=vmbr0")),
            ],
        )
        .await;
    assert_eq!(api.wait_task(upid.as_str().unwrap()).await, "OK");

    let h = harness(&api.emu).await;
    let m = ClusterModel {
        cluster_name: "dhcp50".into(),
        endpoint: "https://127.20.50.20:6443".into(),
        vip: Some("127.20.50.20".into()),
        image: Some(ImageModel {
            installer: None,
            disk_image_url: Some(TALOS_IMAGE_URL.into()),
        }),
        timeouts: Some(TimeoutsModel {
            create: Some("2m".into()),
            update: Some("2m".into()),
            delete: Some("2m".into()),
        }),
        nodes: Some(BTreeMap::from([(
            "cp1".to_string(),
            NodeModel {
                role: "controlplane".into(),
                address: "127.20.50.10/24".into(),
                gateway: Some("127.20.50.1".into()),
                proxmox: Some(PlacementModel {
                    vmid: Some(500),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )])),
        ..Default::default()
    };
    let config = schema().from_typed(&m).expect("config");
    let created = h
        .plan_and_apply(TYPE_NAME, &Value::Null, &config)
        .await
        .expect("create");

    // The worker joins on the handed-over VM.
    let mut m = m;
    if let Some(nodes) = m.nodes.as_mut() {
        nodes.insert(
            "w1".to_string(),
            NodeModel {
                role: "worker".into(),
                address: "127.20.50.11/24".into(),
                gateway: Some("127.20.50.1".into()),
                mac: Some(MAC.into()),
                proxmox: Some(PlacementModel {
                    vmid: Some(501),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
    }
    let config = schema().from_typed(&m).expect("config");
    let state = h
        .plan_and_apply(TYPE_NAME, &created, &config)
        .await
        .expect("add the worker");

    // The worker took its configuration in maintenance mode at its DHCP lease, then came up
    // on the static address of its machine configuration.
    let node = fleet
        .node_at(Ipv4Addr::new(127, 20, 50, 11))
        .expect("node on its static address");
    assert_eq!(node.dhcp_address(), Some(lease));
    assert_eq!(node.stage(), Stage::Running);
    let applies = node.applies();
    assert!(applies[0].in_maintenance, "{applies:?}");
    assert_eq!(
        api.emu.vms().len(),
        2,
        "the existing VM was adopted, one VM was created for cp1"
    );
    assert!(state
        .get_attr("kubeconfig")
        .and_then(Value::as_str)
        .is_some_and(|k| k.contains("client-certificate-data")));

    let d = h.plan(TYPE_NAME, &state, &Value::Null).await;
    let r = h
        .apply(TYPE_NAME, &state, &Value::Null, &d.planned_state)
        .await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    fleet.shutdown().await;
}
