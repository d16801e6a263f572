//! The `waddle_talos_cluster` health wait (`ops/health.rs`) in process against the Talos
//! emulator: a cluster without a CNI (every Node NotReady) is healthy, every waiting check is
//! named with its node, and the wait runs to the operation's own deadline.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use waddle_acceptance::talos::{NodeOptions, Stage, TalosFleet, TalosNode, Timings};
use waddle_provider::resources::talos_cluster::ops::{health, Env, Poll};
use waddle_provider::resources::talos_cluster::{ClusterModel, NodeModel};
use waddle_talos::api::{ApplyMode, ConnectOptions, Credentials, TalosClient};
use waddle_talos::secrets::SystemClock;
use waddle_talos::{render_node_config, ClusterSpec, Role};

#[allow(dead_code)] // not every helper is used here
mod talos_support;
use talos_support::{bundle, ep, fast_timings, fleet_options, maintenance, WAIT};

const NET: u8 = 63;

const NODES: [(&str, Role, u8); 2] = [("cp1", Role::ControlPlane, 10), ("w1", Role::Worker, 20)];

fn spec() -> ClusterSpec {
    talos_support::spec("health", NET, &NODES)
}

/// The resource's model of the same cluster (what health reads).
fn model() -> ClusterModel {
    let nodes: BTreeMap<String, NodeModel> = NODES
        .iter()
        .map(|(name, role, host)| {
            (
                name.to_string(),
                NodeModel {
                    role: if *role == Role::ControlPlane {
                        "controlplane"
                    } else {
                        "worker"
                    }
                    .into(),
                    address: format!("127.20.{NET}.{host}/24"),
                    ..Default::default()
                },
            )
        })
        .collect();
    ClusterModel {
        cluster_name: "health".into(),
        endpoint: format!("https://127.20.{NET}.100:6443"),
        cni: Some("none".into()),
        nodes: Some(nodes),
        ..Default::default()
    }
}

fn env(deadline: Duration) -> Env {
    Env {
        pve: None,
        connect: ConnectOptions {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Some(Duration::from_secs(5)),
            ..ConnectOptions::default()
        },
        creds: Credentials::admin(bundle(), &SystemClock).expect("credentials"),
        deadline: Instant::now() + deadline,
        poll: Poll::default(),
        cancel: Default::default(),
        proxy_url: None,
        default_node: None,
    }
}

async fn configure(fleet: &TalosFleet) -> Vec<TalosNode> {
    let spec = spec();
    let mut out = Vec::new();
    for (name, _, _) in NODES {
        let node = fleet.start_node(NodeOptions::default());
        let c = maintenance(&node).await;
        let cfg = render_node_config(&spec, bundle(), name).expect("config");
        c.apply_configuration(&cfg, ApplyMode::Auto)
            .await
            .expect("applied");
        out.push(node);
    }
    for n in &out {
        assert!(n.wait_stage(Stage::Running, WAIT).await, "{n:?}");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_each_waiting_check_and_passes_without_a_cni() {
    waddle_proxmox::install_crypto_provider();
    let timings = Timings {
        upgrade: Timings::default().upgrade,
        ..fast_timings()
    };
    let fleet = TalosFleet::new(fleet_options(NET, timings));
    let w1 = Ipv4Addr::new(127, 20, NET, 20);
    fleet.hold_boot(w1);
    configure(&fleet).await;
    let m = model();

    // Not bootstrapped: etcd has no members, the API is not served; the held worker's boot.
    let e = env(Duration::from_secs(30));
    let waiting = health::pending(&e, &m, bundle()).await;
    let text = waiting.join("\n");
    assert!(
        waiting.iter().any(
            |w| w.starts_with("etcd: no control plane lists the members")
                && w.contains("nodes[\"cp1\"]")
        ),
        "{text}"
    );
    assert!(
        waiting
            .iter()
            .any(|w| w.starts_with("services: nodes[\"cp1\"]: service etcd")),
        "{text}"
    );
    assert!(
        waiting
            .iter()
            .any(|w| w.starts_with("boot: nodes[\"w1\"]: boot not done")),
        "{text}"
    );
    assert!(!text.contains("boot: nodes[\"cp1\"]"), "{text}");
    assert!(waiting.iter().any(|w| w.contains("/readyz")), "{text}");

    // Bootstrapped: only the worker's boot is waited for; the wait stops at the deadline
    // (2 s here), naming it.
    let cp = TalosClient::connect(
        ep(Ipv4Addr::new(127, 20, NET, 10)),
        &Credentials::admin(bundle(), &SystemClock).expect("credentials"),
        &ConnectOptions::default(),
    )
    .await
    .expect("mTLS");
    cp.bootstrap().await.expect("bootstrap");
    let t = Instant::now();
    while fleet.kube_api_addr(&bundle().cluster_id).is_none() {
        assert!(t.elapsed() < WAIT, "the VIP never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let err = health::health(&env(Duration::from_secs(2)), &m, bundle())
        .await
        .expect_err("the worker's boot is held")
        .to_string();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "ran to the deadline"
    );
    assert!(err.contains("timed out"), "{err}");
    assert_eq!(
        err.matches("nodes[").count(),
        1,
        "only the held worker waits: {err}"
    );
    assert!(err.contains("boot: nodes[\"w1\"]: boot not done"), "{err}");

    // Released: healthy although both Nodes are NotReady (CNI none).
    fleet.release_boot(w1);
    health::health(&env(Duration::from_secs(30)), &m, bundle())
        .await
        .expect("healthy without a CNI");
    fleet.shutdown().await;
}
