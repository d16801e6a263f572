//! Where a Talos VM of the PVE emulator gets its maintenance-mode address — only from what
//! real Talos would use: the NoCloud network configuration attached to the VM (the PVE
//! cloud-init drive, network-config v1; or a `cidata` ISO, here v2), or DHCP when the VM's
//! bridge has a DHCP server (an SDN subnet with a `dhcp-range`). A node on a bridge without
//! DHCP and without NoCloud network configuration has no IPv4 address and never answers.

#[path = "pve_support.rs"]
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use support::*;
use waddle_acceptance::pve::TokenSpec;
use waddle_acceptance::talos::appliance::{self, TalosAppliance};
use waddle_acceptance::talos::{FleetOptions, Stage, TalosFleet, TalosNode};
use waddle_proxmox::nocloud::NoCloudSeed;
use waddle_talos::api::{ConnectOptions, TalosClient};

const IMAGE: &str = "talos-v1.12.11-nocloud-amd64.qcow2";
const WAIT: Duration = Duration::from_secs(20);

/// An emulator (no DHCP anywhere unless `build` adds it) with a Talos fleet whose DHCP pool
/// starts at 127.20.<net>.200, and the Talos image downloaded.
async fn setup(net: u8, build: waddle_acceptance::pve::EmulatorBuilder) -> (Api, TalosFleet) {
    let api = start(build.build()).await;
    let fleet = TalosFleet::new(FleetOptions {
        dhcp_pool_start: Some(Ipv4Addr::new(127, 20, net, 200)),
        ..FleetOptions::default()
    });
    appliance::register(api.emu.appliances(), fleet.clone());
    download(&api, IMAGE, TALOS_IMAGE_URL).await;
    (api, fleet)
}

/// The Talos node VM `vmid` boots, once it is in maintenance mode (polls; bounded).
async fn maintenance_node(api: &Api, vmid: u32) -> TalosNode {
    for _ in 0..1000 {
        let node = api
            .emu
            .appliance(vmid)
            .and_then(|a| a.as_any().downcast_ref::<TalosAppliance>()?.node());
        if let Some(n) = node {
            assert!(n.wait_stage(Stage::Maintenance, WAIT).await, "{n:?}");
            return n;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("VM {vmid} never booted a Talos node");
}

async fn answers_maintenance(ip: Ipv4Addr) -> bool {
    TalosClient::connect_maintenance(
        SocketAddr::new(ip.into(), 50000),
        &ConnectOptions::default(),
    )
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_dhcp_or_nocloud_network_config_a_node_gets_no_address() {
    let (api, fleet) = setup(30, fast()).await;
    let mac = "BC:24:11:AA:1E:01";
    create_and_start(&api, "930", IMAGE, mac).await;
    let node = maintenance_node(&api, 930).await;
    // Up in maintenance mode, but with no IPv4 address: nothing to connect to.
    assert_eq!(node.dhcp_address(), None);
    assert_eq!(node.address(), None);
    assert_eq!(node.endpoint(), None);
    // The guest agent answers and reports the NIC without any IPv4 address.
    let mut reported = None;
    for _ in 0..500 {
        reported = agent_ipv4s(&api, "930", mac).await;
        if reported.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(reported, Some(vec![]));
    // The fleet's DHCP pool is untouched: nobody serves its first address.
    assert!(fleet.node_at(Ipv4Addr::new(127, 20, 30, 200)).is_none());
    assert!(!answers_maintenance(Ipv4Addr::new(127, 20, 30, 200)).await);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pve_cloud_init_drive_gives_the_static_address() {
    let (api, fleet) = setup(31, fast()).await;
    let mac = "BC:24:11:AA:1F:01";
    create_and_start_on(
        &api,
        "931",
        IMAGE,
        mac,
        "vmbr0",
        &[
            ("ide2", "local-lvm:cloudinit"),
            ("citype", "nocloud"),
            ("ipconfig0", "ip=127.20.31.10/24,gw=127.20.31.1"),
            ("nameserver", "1.1.1.1 8.8.8.8"),
        ],
    )
    .await;
    let node = maintenance_node(&api, 931).await;
    let ip = Ipv4Addr::new(127, 20, 31, 10);
    assert_eq!(node.dhcp_address(), Some(ip));
    assert_eq!(node.address(), Some(ip));
    assert!(answers_maintenance(ip).await);
    assert_eq!(agent_ipv4(&api, "931", mac, |a| a == ip).await, ip);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cidata_iso_with_network_config_v2_gives_the_static_address() {
    let (api, fleet) = setup(32, fast()).await;
    let mac = "BC:24:11:AA:20:01";
    let seed = NoCloudSeed {
        user_data: "#cloud-config\n".into(),
        meta_data: "instance-id: talos-932\n".into(),
        network_config: Some(format!(
            "version: 2\nethernets:\n  net0:\n    match:\n      macaddress: \"{mac}\"\n    addresses: [127.20.32.10/24]\n    gateway4: 127.20.32.1\n"
        )),
        vendor_data: None,
    };
    let iso = seed.build_iso(Some(0)).expect("seed ISO");
    upload_iso(&api, "seed-932.iso", iso).await;
    create_and_start_on(
        &api,
        "932",
        IMAGE,
        mac,
        "vmbr0",
        &[("ide2", "local:iso/seed-932.iso,media=cdrom")],
    )
    .await;
    let node = maintenance_node(&api, 932).await;
    let ip = Ipv4Addr::new(127, 20, 32, 10);
    assert_eq!(node.address(), Some(ip));
    assert!(answers_maintenance(ip).await);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdn_subnet_with_dhcp_range_gives_a_dhcp_address() {
    let (api, fleet) = setup(33, fast()).await;
    api.ok(
        "POST",
        "/cluster/sdn/zones",
        &[("zone", "wdhcp"), ("type", "simple"), ("dhcp", "dnsmasq")],
    )
    .await;
    api.ok(
        "POST",
        "/cluster/sdn/vnets",
        &[("vnet", "wdhcp0"), ("zone", "wdhcp")],
    )
    .await;
    api.ok(
        "POST",
        "/cluster/sdn/vnets/wdhcp0/subnets",
        &[
            ("subnet", "10.33.0.0/24"),
            ("type", "subnet"),
            ("gateway", "10.33.0.1"),
            (
                "dhcp-range",
                "start-address=10.33.0.100,end-address=10.33.0.200",
            ),
        ],
    )
    .await;
    let upid = api.ok("PUT", "/cluster/sdn", &[]).await;
    assert_eq!(api.wait_task(upid.as_str().expect("upid")).await, "OK");
    let mac = "BC:24:11:AA:21:01";
    create_and_start_on(&api, "933", IMAGE, mac, "wdhcp0", &[]).await;
    let node = maintenance_node(&api, 933).await;
    let dhcp = node.dhcp_address().expect("a DHCP lease on the vnet");
    assert_eq!(dhcp, Ipv4Addr::new(127, 20, 33, 200));
    assert!(answers_maintenance(dhcp).await);
    assert_eq!(agent_ipv4(&api, "933", mac, |a| a == dhcp).await, dhcp);
    fleet.shutdown().await;
}

/// The cloud-init drive allocates a volume (`Datastore.AllocateSpace` on its storage, as in
/// PVE's `check_storage_access`), and `nameserver` must be an address list.
#[tokio::test]
async fn cloud_init_drive_is_checked_like_pve() {
    let privs: &[&str] = &[
        "VM.Allocate",
        "VM.Config.Disk",
        "VM.Config.Cloudinit",
        "VM.Config.CPU",
        "VM.Config.Memory",
        "VM.Config.Options",
    ];
    let api = start(
        fast()
            .token(TokenSpec::with_privileges(
                "ci@pve",
                "t",
                "s3cret",
                &[("/vms", privs), ("/storage/local", &["Datastore.Audit"])],
            ))
            .build(),
    )
    .await;
    let form = [
        ("vmid", "940"),
        ("ide2", "local-lvm:cloudinit"),
        ("ipconfig0", "ip=127.20.40.10/24"),
    ];
    let r = api
        .call_with(Some("ci@pve!t=s3cret"), "POST", "/nodes/pve/qemu", &form)
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.reason,
        "Permission check failed (/storage/local-lvm, Datastore.AllocateSpace)"
    );
    let r = api
        .call(
            "POST",
            "/nodes/pve/qemu",
            &[("vmid", "941"), ("nameserver", "1.1.1.1 dns.example")],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body["errors"]["nameserver"].is_string(), "{}", r.body);
}
