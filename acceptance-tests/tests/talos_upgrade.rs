//! The Talos emulator's OS follows what really happened, driven by the real Talos API client:
//! an applied configuration with a new `install.image` leaves the installed OS as it was,
//! only an upgrade changes it; boot IDs change at every boot; staged upgrades are installed
//! at the next boot; a control plane refuses to upgrade while an etcd member is down; an
//! image that cannot be pulled fails the call; nodes reporting v1.13 serve
//! `ImageService.Pull` + `LifecycleService.Upgrade`; the upgrade log has timestamps.

use std::time::Duration;

use waddle_acceptance::talos::{
    FleetOptions, NodeOptions, Stage, TalosFleet, TalosNode, UpgradeApi,
};
use waddle_talos::api::{ApplyMode, RebootMode, UpgradeRequest};
use waddle_talos::{render_node_config, ClusterSpec, Role};

#[allow(dead_code)] // not every helper is used here
mod talos_support;
use talos_support::{bundle, fast_timings, fleet_options, maintenance, secure, WAIT};

fn spec(net: u8, version: &str, names: &[(&str, Role, u8)]) -> ClusterSpec {
    let mut s = talos_support::spec("upg", net, names);
    s.talos_version = version.into();
    s
}

const THREE_CP_ONE_WORKER: &[(&str, Role, u8)] = &[
    ("cp1", Role::ControlPlane, 10),
    ("cp2", Role::ControlPlane, 11),
    ("cp3", Role::ControlPlane, 12),
    ("w1", Role::Worker, 20),
];

/// A bootstrapped cluster running `version`: its fleet and nodes (in `names` order).
async fn cluster(
    net: u8,
    version: &str,
    names: &[(&str, Role, u8)],
) -> (TalosFleet, ClusterSpec, Vec<TalosNode>) {
    let fleet = TalosFleet::new(FleetOptions {
        talos_version: version.into(),
        ..fleet_options(net, fast_timings())
    });
    // The configuration contract stays v1.12's (a node on v1.13 keeps running it).
    let contract = if version.starts_with("v1.12.") {
        version
    } else {
        "v1.12.11"
    };
    let spec = spec(net, contract, names);
    let nodes: Vec<TalosNode> = names
        .iter()
        .map(|_| fleet.start_node(NodeOptions::default()))
        .collect();
    for ((name, _, _), node) in names.iter().zip(&nodes) {
        let c = maintenance(node).await;
        let cfg = render_node_config(&spec, bundle(), name).expect("config");
        c.apply_configuration(&cfg, ApplyMode::Auto)
            .await
            .expect("maintenance apply");
    }
    for node in &nodes {
        assert!(node.wait_stage(Stage::Running, WAIT).await, "{node:?}");
    }
    secure(nodes[0].address().expect("cp1 address"))
        .await
        .bootstrap()
        .await
        .expect("bootstrap");
    (fleet, spec, nodes)
}

/// Waits until `node` is running `version` with a boot ID other than `old_boot`.
async fn back_on(node: &TalosNode, version: &str, old_boot: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if node.stage() == Stage::Running
            && node.talos_version() == version
            && node.boot_id() != old_boot
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{node:?} not back on {version}: runs {}, boot {}",
            node.talos_version(),
            node.boot_id()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn installer(version: &str) -> String {
    format!("ghcr.io/siderolabs/installer:{version}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_never_changes_the_os_an_upgrade_does() {
    let (fleet, spec, nodes) = cluster(61, "v1.12.4", THREE_CP_ONE_WORKER).await;
    let w1 = &nodes[3];
    let ip = w1.address().unwrap();
    let c = secure(ip).await;
    assert_eq!(c.version().await.unwrap().tag, "v1.12.4");
    let boot0 = c.boot_id().await.unwrap();
    assert_eq!(boot0, w1.boot_id());

    // The configuration of v1.12.11 (install.image ...:v1.12.11), applied as AUTO: the node
    // takes it without a reboot (machine.install is only read by the next install) and
    // still runs v1.12.4.
    let mut newer = spec.clone();
    newer.talos_version = "v1.12.11".into();
    let cfg = render_node_config(&newer, bundle(), "w1").unwrap();
    assert!(cfg.contains(&installer("v1.12.11")), "{cfg}");
    let out = c.apply_configuration(&cfg, ApplyMode::Auto).await.unwrap();
    assert_eq!(out.mode, Some(ApplyMode::NoReboot), "{out:?}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let c = secure(ip).await;
    assert_eq!(c.version().await.unwrap().tag, "v1.12.4");
    assert_eq!(c.boot_id().await.unwrap(), boot0);
    assert_eq!(w1.installed_image(), None);

    // A reboot alone: a new boot ID, the same OS.
    w1.power_off().await;
    w1.power_on();
    assert!(w1.wait_stage(Stage::Running, WAIT).await);
    let boot1 = w1.boot_id();
    assert_ne!(boot1, boot0);
    assert_eq!(w1.talos_version(), "v1.12.4");

    // The upgrade installs the image, reboots, and the node reports it.
    let c = secure(ip).await;
    let started = std::time::Instant::now();
    let ack = c
        .upgrade(&UpgradeRequest {
            image: installer("v1.12.11"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!ack.is_empty());
    back_on(w1, "v1.12.11", &boot1).await;
    let c = secure(ip).await;
    assert_eq!(c.version().await.unwrap().tag, "v1.12.11");
    assert_ne!(c.boot_id().await.unwrap(), boot1);
    assert_eq!(w1.installed_image(), Some(installer("v1.12.11")));
    let log = fleet.upgrade_log();
    assert_eq!(log.len(), 1, "{log:?}");
    let r = &log[0];
    assert_eq!(
        (r.api, r.from.as_str(), r.to.as_str(), r.control_plane),
        (UpgradeApi::Machine, "v1.12.4", "v1.12.11", false)
    );
    assert!(r.started >= started);
    assert!(r.finished.is_some_and(|f| f > r.started), "{r:?}");
    // The other nodes were not touched.
    assert!(nodes[..3].iter().all(|n| n.talos_version() == "v1.12.4"));
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_upgrade_is_installed_at_the_next_boot() {
    let (fleet, _spec, nodes) = cluster(62, "v1.12.4", THREE_CP_ONE_WORKER).await;
    let cp2 = &nodes[1];
    let boot0 = cp2.boot_id();
    let c = secure(cp2.address().unwrap()).await;
    c.upgrade(&UpgradeRequest {
        image: installer("v1.12.11"),
        stage: true,
        preserve: true,
        reboot_mode: RebootMode::Powercycle,
        ..Default::default()
    })
    .await
    .unwrap();
    // Still the old OS while the node goes down; the staged image waits for the boot.
    assert_eq!(cp2.talos_version(), "v1.12.4");
    back_on(cp2, "v1.12.11", &boot0).await;
    assert_eq!(cp2.staged_upgrade(), None);
    assert_eq!(cp2.installed_image(), Some(installer("v1.12.11")));
    let log = fleet.upgrade_log();
    assert!(
        log[0].stage && log[0].preserve && log[0].control_plane,
        "{log:?}"
    );
    // With preserve the member stays (down, then up); etcd never lost quorum.
    let id = bundle().cluster_id.clone();
    assert!(fleet.membership_log(&id).iter().all(|e| e.has_quorum()));
    assert_eq!(fleet.etcd_members(&id).len(), 3);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_refuses_to_upgrade_while_a_member_is_down() {
    let (fleet, _spec, nodes) = cluster(63, "v1.12.4", THREE_CP_ONE_WORKER).await;
    nodes[2].power_off().await;
    let c = secure(nodes[0].address().unwrap()).await;
    let e = c
        .upgrade(&UpgradeRequest {
            image: installer("v1.12.11"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let msg = e.rpc_message().unwrap_or_default().to_string();
    assert!(msg.contains("all members must be healthy"), "{e}");
    assert!(fleet.upgrade_log().is_empty());
    assert_eq!(nodes[0].talos_version(), "v1.12.4");
    // A worker does not care about etcd.
    let w = secure(nodes[3].address().unwrap()).await;
    w.upgrade(&UpgradeRequest {
        image: installer("v1.12.11"),
        ..Default::default()
    })
    .await
    .unwrap();
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_refusals_for_small_clusters() {
    let (fleet, _spec, nodes) = cluster(64, "v1.12.4", &[("cp1", Role::ControlPlane, 10)]).await;
    let c = secure(nodes[0].address().unwrap()).await;
    let e = c
        .upgrade(&UpgradeRequest {
            image: installer("v1.12.11"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("use --preserve"), "{e}");
    // With preserve the only member upgrades and stays the member.
    let boot0 = nodes[0].boot_id();
    c.upgrade(&UpgradeRequest {
        image: installer("v1.12.11"),
        preserve: true,
        ..Default::default()
    })
    .await
    .unwrap();
    back_on(&nodes[0], "v1.12.11", &boot0).await;
    assert_eq!(fleet.etcd_members(&bundle().cluster_id).len(), 1);
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_fails_the_call() {
    let (fleet, _spec, nodes) = cluster(65, "v1.12.4", THREE_CP_ONE_WORKER).await;
    let w1 = &nodes[3];
    let c = secure(w1.address().unwrap()).await;
    fleet.fail_pull(&installer("v1.12.11"));
    for image in [
        installer("v1.12.11"),
        "ghcr.io/siderolabs/installer:latest".into(),
    ] {
        let e = c
            .upgrade(&UpgradeRequest {
                image: image.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("failed to pull image"), "{e}");
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(w1.stage(), Stage::Running);
    assert_eq!(w1.talos_version(), "v1.12.4");
    assert!(fleet.upgrade_log().is_empty());
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_v1_13_upgrade_through_image_and_lifecycle_services() {
    let (fleet, _spec, nodes) = cluster(66, "v1.13.0", THREE_CP_ONE_WORKER).await;
    let w1 = &nodes[3];
    let c = secure(w1.address().unwrap()).await;
    let image = installer("v1.13.1");
    // The upgrade needs the image pulled first.
    let e = c.lifecycle_upgrade(&image).await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::NotFound), "{e}");
    let name = c.pull_image(&image).await.unwrap();
    assert_eq!(name, image);
    let boot0 = w1.boot_id();
    c.lifecycle_upgrade(&name).await.unwrap();
    back_on(w1, "v1.13.1", &boot0).await;
    let log = fleet.upgrade_log();
    assert_eq!(log[0].api, UpgradeApi::Lifecycle, "{log:?}");
    fleet.shutdown().await;

    // A v1.12 node has no such services.
    let (fleet, _spec, nodes) = cluster(67, "v1.12.4", &[("cp1", Role::ControlPlane, 10)]).await;
    let c = secure(nodes[0].address().unwrap()).await;
    let e = c.pull_image(&installer("v1.12.11")).await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::Unimplemented), "{e}");
    fleet.shutdown().await;
}
