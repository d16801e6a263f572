//! The Talos emulator validates an applied configuration against the official schema of the
//! version the node *runs*: a v1.12 node refuses a document kind only v1.13 registers, as
//! Talos's decoder does; a v1.13 node accepts it, and still accepts `machine.network`
//! (the v1.13 schema dropped it, the v1.13 decoder still decodes it); a node upgraded from
//! v1.12 to v1.13 keeps running its v1.12-contract configuration and then accepts the
//! v1.13 contract.

use std::time::Duration;

use waddle_acceptance::talos::validate::{validate, Refusal};
use waddle_acceptance::talos::{FleetOptions, NodeOptions, Schemas, Stage, TalosFleet};
use waddle_talos::api::{ApplyMode, ConnectOptions, Credentials, TalosClient, UpgradeRequest};
use waddle_talos::secrets::SystemClock;
use waddle_talos::versions::ConfigContract;
use waddle_talos::{render_node_config, ClusterSpec, NodeSpec, Role};

#[allow(dead_code)] // not every helper is used here
mod talos_support;
use talos_support::{bundle, ep, fast_timings, fleet_options, WAIT};

fn schemas() -> &'static Schemas {
    Schemas::shared().expect("the official schemas ../shared/specs/talos-v1.1{2,3} are missing")
}

fn spec(net: u8, talos: &str, contract: Option<ConfigContract>) -> ClusterSpec {
    let mut s = ClusterSpec::new("contract", &format!("https://127.20.{net}.10:6443"));
    s.talos_version = talos.into();
    s.config_contract = contract;
    let mut n = NodeSpec::new(Role::ControlPlane, &format!("127.20.{net}.10/24"));
    n.gateway = Some(format!("127.20.{net}.1"));
    n.mac = Some(format!("bc:24:11:00:{net:02x}:10"));
    s.nodes.insert("cp1".into(), n);
    s
}

const KUBESPAN: &str = "---\napiVersion: v1alpha1\nkind: KubeSpanConfig\nenabled: false\n";

#[test]
fn each_release_validates_against_its_own_schema() {
    let s12 = schemas().for_version("v1.12.11").expect("v1.12 schema");
    let s13 = schemas().for_version("v1.13.0").expect("v1.13 schema");
    assert_eq!((s12.minor(), s13.minor()), (12, 13));
    assert!(schemas().for_version("v1.11.5").is_none());
    assert!(schemas().for_version("v1.13.0-alpha.1").is_some());

    let c12 = render_node_config(&spec(1, "v1.12.11", None), bundle(), "cp1").unwrap();
    let c13 = render_node_config(&spec(1, "v1.13.9", None), bundle(), "cp1").unwrap();
    for (cfg, s) in [(&c12, s12), (&c12, s13), (&c13, s13)] {
        assert!(
            validate(cfg, Some(s)).is_ok(),
            "v1.{}: {:?}",
            s.minor(),
            validate(cfg, Some(s))
        );
    }
    // A kind only v1.13 registers: v1.12's decoder refuses it.
    let with_kubespan = format!("{c12}{KUBESPAN}");
    match validate(&with_kubespan, Some(s12)) {
        Err(Refusal::Parse(m)) => assert!(
            m.contains("\"KubeSpanConfig\" \"v1alpha1\": not registered"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(validate(&with_kubespan, Some(s13)).is_ok());

    // machine.network: gone from the v1.13 schema, still decoded by v1.13 (deprecated), with
    // v1.12's definition; unknown keys inside it stay refused.
    let network = c12.replacen(
        "machine:\n",
        "machine:\n  network:\n    kubespan:\n      enabled: false\n",
        1,
    );
    assert_ne!(network, c12);
    for s in [s12, s13] {
        assert!(
            validate(&network, Some(s)).is_ok(),
            "v1.{}: {:?}",
            s.minor(),
            validate(&network, Some(s))
        );
    }
    let bogus = c12.replacen("machine:\n", "machine:\n  network:\n    bogus: 1\n", 1);
    for s in [s12, s13] {
        assert!(
            matches!(validate(&bogus, Some(s)), Err(Refusal::Parse(_))),
            "v1.{}",
            s.minor()
        );
    }
    // `persist` is decoded by both (deprecated, absent from both schemas).
    let persist = c12.replacen(
        "version: v1alpha1\n",
        "version: v1alpha1\npersist: true\n",
        1,
    );
    assert_ne!(persist, c12);
    for s in [s12, s13] {
        assert!(validate(&persist, Some(s)).is_ok(), "v1.{}", s.minor());
    }
    // Still the schema of each release: a value v1.13 refuses is refused on v1.13.
    let bad = c13.replace("grubUseUKICmdline: true", "grubUseUKICmdline: maybe");
    assert_ne!(bad, c13);
    assert!(validate(&bad, Some(s13)).is_err());
}

/// One control plane through the API: v1.12 refuses a v1.13-only document, the upgrade to
/// v1.13 keeps its v1.12-contract configuration, then v1.13 accepts the v1.13 contract and
/// the new kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_validates_by_the_version_it_runs_across_an_upgrade() {
    let net = 181;
    let fleet = TalosFleet::new(FleetOptions {
        talos_version: "v1.12.11".into(),
        ..fleet_options(net, fast_timings())
    });
    let node = fleet.start_node(NodeOptions::default());
    assert!(node.wait_stage(Stage::Maintenance, WAIT).await);
    let m = TalosClient::connect_maintenance(
        ep(node.dhcp_address().expect("maintenance address")),
        &ConnectOptions::default(),
    )
    .await
    .expect("maintenance connection");
    let v12 = spec(net, "v1.12.11", None);
    let c12 = render_node_config(&v12, bundle(), "cp1").unwrap();
    // In maintenance mode too, the running release's decoder decides.
    let e = m
        .apply_configuration(&format!("{c12}{KUBESPAN}"), ApplyMode::Auto)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::Unknown), "{e}");
    assert!(e.rpc_message().unwrap().contains("not registered"), "{e}");
    m.apply_configuration(&c12, ApplyMode::Auto).await.unwrap();
    assert!(node.wait_stage(Stage::Running, WAIT).await);
    let creds = Credentials::admin(bundle(), &SystemClock).unwrap();
    let addr = node.address().unwrap();
    let c = TalosClient::connect(ep(addr), &creds, &ConnectOptions::default())
        .await
        .unwrap();
    c.bootstrap().await.unwrap();
    let e = c
        .apply_configuration(&format!("{c12}{KUBESPAN}"), ApplyMode::Auto)
        .await
        .unwrap_err();
    assert!(e.rpc_message().unwrap().contains("not registered"), "{e}");

    // Upgrade to v1.13 (MachineService.Upgrade: the node runs v1.12).
    let boot = node.boot_id();
    c.upgrade(&UpgradeRequest {
        image: "ghcr.io/siderolabs/installer:v1.13.9".into(),
        preserve: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(node.stage() == Stage::Running
        && node.talos_version() == "v1.13.9"
        && node.boot_id() != boot)
    {
        assert!(tokio::time::Instant::now() < deadline, "{node:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let c = TalosClient::connect(ep(addr), &creds, &ConnectOptions::default())
        .await
        .unwrap();
    // The v1.12 contract (kept after the upgrade) runs on v1.13.
    let kept = spec(net, "v1.13.9", Some(ConfigContract::V1_12));
    let ck = render_node_config(&kept, bundle(), "cp1").unwrap();
    c.apply_configuration(&ck, ApplyMode::Auto).await.unwrap();
    // And so do the v1.13 contract and the kinds v1.13 registers.
    let c13 = render_node_config(&spec(net, "v1.13.9", None), bundle(), "cp1").unwrap();
    assert_ne!(c13, ck);
    c.apply_configuration(&format!("{c13}{KUBESPAN}"), ApplyMode::Auto)
        .await
        .unwrap();
    fleet.shutdown().await;
}
