//! Talos emulator driven by the real Talos API client (`waddle_talos::api`) with configs
//! rendered by waddle-talos: maintenance apply, validation, reboot onto the static address,
//! mTLS, bootstrap, etcd membership, kubeconfig, /readyz on the VIP, reset, faults, proxy,
//! boot completion (`MachineStatus`) and the resource's health wait that depends on it.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use waddle_acceptance::talos::{
    Faults, FleetOptions, NodeOptions, Schema, Stage, TalosFleet, TalosNode, Timings,
};
use waddle_talos::api::{
    ApplyMode, ConnectOptions, Credentials, Proxy, ResetOptions, TalosClient, TalosError,
    CONFIG_PATH,
};
use waddle_talos::{render_node_config, ClusterSpec, Role};

#[allow(dead_code)] // `client` is for other targets
mod inproc;
#[allow(dead_code)] // not every helper is used here
mod talos_support;
use talos_support::{bundle, creds, ep, fast_timings, fleet_options, maintenance, secure, WAIT};

/// 3 control planes + 1 worker on 127.20.<net>.0/24, VIP .100.
fn spec(net: u8) -> ClusterSpec {
    talos_support::spec(
        "emu",
        net,
        &[
            ("cp1", Role::ControlPlane, 10),
            ("cp2", Role::ControlPlane, 11),
            ("cp3", Role::ControlPlane, 12),
            ("w1", Role::Worker, 20),
        ],
    )
}

fn fleet(net: u8, timings: Timings) -> TalosFleet {
    TalosFleet::new(fleet_options(net, timings))
}

fn fast() -> Timings {
    fast_timings()
}

/// Connect + one call; the error of whichever fails.
async fn refused(ip: Ipv4Addr, c: Result<Credentials, ()>) -> TalosError {
    let opts = ConnectOptions {
        connect_timeout: Duration::from_secs(3),
        ..ConnectOptions::default()
    };
    let client = match c {
        Ok(c) => TalosClient::connect(ep(ip), &c, &opts).await,
        Err(()) => TalosClient::connect_maintenance(ep(ip), &opts).await,
    };
    match client {
        Err(e) => e,
        Ok(cl) => cl.version().await.expect_err("call must be refused"),
    }
}

fn cluster_id(s: &ClusterSpec) -> String {
    let _ = s;
    bundle().cluster_id.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_cluster_lifecycle() {
    let net = 1;
    let spec = spec(net);
    assert!(
        waddle_talos::validate(&spec).iter().all(|i| !i.is_error()),
        "waddle-talos must accept loopback addresses: {:?}",
        waddle_talos::validate(&spec)
    );
    let fleet = fleet(net, fast());
    let names = ["cp1", "cp2", "cp3", "w1"];
    let nodes: Vec<TalosNode> = names
        .iter()
        .map(|_| fleet.start_node(NodeOptions::default()))
        .collect();

    // Maintenance mode: apply each node's rendered config with AUTO.
    for (name, node) in names.iter().zip(&nodes) {
        let c = maintenance(node).await;
        let cfg = render_node_config(&spec, bundle(), name).unwrap();
        // Only admin APIs over SideroLink: Version is not available in maintenance mode.
        let e = c.version().await.unwrap_err();
        assert_eq!(e.code(), Some(tonic::Code::Unimplemented), "{e}");
        // NO_REBOOT / STAGED are refused in maintenance mode with Talos's message.
        let e = c
            .apply_configuration(&cfg, ApplyMode::NoReboot)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(tonic::Code::Unimplemented), "{e}");
        assert_eq!(
            e.rpc_message(),
            Some("apply configuration --mode='no-reboot' is not supported in maintenance mode")
        );
        let e = c
            .apply_configuration(&cfg, ApplyMode::Staged)
            .await
            .unwrap_err();
        assert!(e.rpc_message().unwrap().contains("--mode='staged'"), "{e}");
        // Dry run changes nothing.
        let out = c
            .apply_configuration_with(
                &cfg,
                ApplyMode::Auto,
                waddle_talos::api::ApplyOptions {
                    dry_run: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(out.mode_details.contains("Dry run"), "{out:?}");
        assert_eq!(node.stage(), Stage::Maintenance);
        let out = c.apply_configuration(&cfg, ApplyMode::Auto).await.unwrap();
        assert_eq!(
            out.mode,
            Some(ApplyMode::Reboot),
            "maintenance apply reboots"
        );
    }

    // Each node reboots onto its static address.
    for (i, node) in nodes.iter().enumerate() {
        assert!(node.wait_stage(Stage::Running, WAIT).await, "{node:?}");
        let want: Ipv4Addr = spec.nodes[names[i]]
            .address
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(node.address(), Some(want));
        assert_eq!(node.hostname(), names[i]);
    }
    let cp1_ip = nodes[0].address().unwrap();

    // mTLS is required: no client certificate, and a certificate from another CA, fail.
    let e = refused(cp1_ip, Err(())).await;
    assert!(
        !matches!(
            e,
            TalosError::Rpc {
                code: tonic::Code::Ok,
                ..
            }
        ),
        "{e}"
    );
    let other_ca = {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let _ca = p.self_signed(&key).unwrap();
        let issuer = rcgen::Issuer::new(p, key);
        let ck = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let mut cp = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::OrganizationName, "os:admin");
        cp.distinguished_name = dn;
        let crt = cp.signed_by(&ck, &issuer).unwrap();
        // Trust the node's real CA so only the client side is wrong.
        Credentials::new(bundle().os_ca.crt.clone(), crt.pem(), ck.serialize_pem())
    };
    let _ = refused(cp1_ip, Ok(other_ca)).await;
    // The node answered no call without a proper client certificate.
    assert!(
        !nodes[0].calls().iter().any(|c| c.authenticated),
        "{:?}",
        nodes[0].calls()
    );

    let cp1 = secure(cp1_ip).await;
    assert!(cp1.is_authenticated());
    let v = cp1.version().await.unwrap();
    assert_eq!(v.tag, "v1.12.11");

    // Workers cannot bootstrap; cp1 bootstraps once; AlreadyExists afterwards everywhere.
    let w1 = secure(nodes[3].address().unwrap()).await;
    assert!(w1.bootstrap().await.unwrap_err().is_failed_precondition());
    cp1.bootstrap().await.unwrap();
    assert!(cp1.bootstrap().await.unwrap_err().is_already_exists());
    let cp2 = secure(nodes[1].address().unwrap()).await;
    assert!(cp2.bootstrap().await.unwrap_err().is_already_exists());

    // etcd members track the control planes.
    let mut members: Vec<String> = cp2
        .etcd_members()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.hostname)
        .collect();
    members.sort();
    assert_eq!(members, ["cp1", "cp2", "cp3"]);
    assert!(w1
        .etcd_members()
        .await
        .unwrap_err()
        .is_failed_precondition());

    // Services: etcd healthy on control planes, none on workers; kubelet and apid everywhere.
    let svcs = cp1.services().await.unwrap();
    for want in ["apid", "etcd", "kubelet", "machined", "trustd"] {
        assert!(
            svcs.iter().any(|s| s.id == want && s.state == "Running"),
            "{want}: {svcs:?}"
        );
    }
    assert_eq!(
        svcs.iter().find(|s| s.id == "etcd").unwrap().healthy,
        Some(true)
    );
    let wsvcs = w1.services().await.unwrap();
    assert!(!wsvcs.iter().any(|s| s.id == "etcd"));
    assert!(wsvcs
        .iter()
        .any(|s| s.id == "kubelet" && s.healthy == Some(true)));

    // The active configuration reads back identical (drift detection).
    let cfg1 = render_node_config(&spec, bundle(), "cp1").unwrap();
    let read = String::from_utf8(cp1.read_file(CONFIG_PATH).await.unwrap()).unwrap();
    assert!(waddle_talos::config::same_config(&read, &cfg1).unwrap());
    assert_eq!(
        cp1.read_file("/nope").await.unwrap_err().code(),
        Some(tonic::Code::NotFound)
    );

    // Kubeconfig: client certificate O=system:masters signed by the cluster's Kubernetes CA.
    let kc = String::from_utf8(cp1.kubeconfig().await.unwrap()).unwrap();
    let kv: serde_json::Value = serde_yaml_ng::from_str(&kc).unwrap();
    assert_eq!(
        kv["clusters"][0]["cluster"]["server"],
        "https://127.20.1.100:6443"
    );
    let b64 = |v: &serde_json::Value| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        b64(&kv["clusters"][0]["cluster"]["certificate-authority-data"]),
        bundle().k8s_ca.crt
    );
    let crt_pem = b64(&kv["users"][0]["user"]["client-certificate-data"]);
    let (_, crt_p) = x509_parser::pem::parse_x509_pem(crt_pem.as_bytes()).unwrap();
    let crt = crt_p.parse_x509().unwrap();
    let (_, ca_p) = x509_parser::pem::parse_x509_pem(bundle().k8s_ca.crt.as_bytes()).unwrap();
    let ca = ca_p.parse_x509().unwrap();
    crt.verify_signature(Some(ca.public_key()))
        .expect("signed by the Kubernetes CA");
    let orgs: Vec<&str> = crt
        .subject()
        .iter_organization()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(orgs, ["system:masters"]);
    // ...and not by the OS CA.
    let (_, os_p) = x509_parser::pem::parse_x509_pem(bundle().os_ca.crt.as_bytes()).unwrap();
    assert!(crt
        .verify_signature(Some(os_p.parse_x509().unwrap().public_key()))
        .is_err());

    // Kubernetes API /readyz on the VIP, served with a cert from the Kubernetes CA.
    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(bundle().k8s_ca.crt.as_bytes()).unwrap(),
        )
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let readyz = |http: reqwest::Client| async move {
        let r = http
            .get("https://127.20.1.100:6443/readyz")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    // The VIP listener starts right after bootstrap.
    let mut tries = 0;
    while fleet.kube_api_addr(&cluster_id(&spec)).is_none() && tries < 100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        tries += 1;
    }
    assert_eq!(readyz(http.clone()).await, (200, "ok".to_string()));

    // A config change applied with AUTO on a running node needs no reboot.
    let mut spec2 = spec.clone();
    spec2
        .nodes
        .get_mut("w1")
        .unwrap()
        .node_labels
        .insert("tier".into(), "edge".into());
    let cfg_w1 = render_node_config(&spec2, bundle(), "w1").unwrap();
    let out = w1
        .apply_configuration(&cfg_w1, ApplyMode::Auto)
        .await
        .unwrap();
    assert_eq!(out.mode, Some(ApplyMode::NoReboot), "{out:?}");
    assert_eq!(nodes[3].stage(), Stage::Running);
    assert_eq!(nodes[3].config_yaml().unwrap(), cfg_w1);

    // cp3 leaves etcd, then is reset gracefully: back to maintenance on its DHCP address.
    let cp3 = secure(nodes[2].address().unwrap()).await;
    cp3.etcd_leave().await.unwrap();
    assert_eq!(fleet.etcd_members(&cluster_id(&spec)).len(), 2);
    cp3.reset(&ResetOptions::default()).await.unwrap();
    assert!(nodes[2].wait_stage(Stage::Maintenance, WAIT).await);
    assert_eq!(nodes[2].address(), nodes[2].dhcp_address());
    assert!(nodes[2].address().is_some());
    assert!(nodes[2].config_yaml().is_none());

    // cp2 is reset without leaving: its member stays (stale) until removed by id.
    let cp2_id = cp1
        .etcd_members()
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.hostname == "cp2")
        .unwrap()
        .id;
    cp2.reset(&ResetOptions {
        graceful: false,
        ..ResetOptions::default()
    })
    .await
    .unwrap();
    assert!(nodes[1].wait_stage(Stage::Maintenance, WAIT).await);
    assert_eq!(
        fleet.etcd_members(&cluster_id(&spec)).len(),
        2,
        "stale member kept"
    );
    // One of two members up: no quorum.
    let (code, body) = readyz(http.clone()).await;
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("quorum"), "{body}");
    let e = cp1.etcd_remove_member(12345).await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::NotFound));
    cp1.etcd_remove_member(cp2_id).await.unwrap();
    let members = cp1.etcd_members().await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].hostname, "cp1");
    assert_eq!(readyz(http.clone()).await.0, 200);

    // The last member cannot leave gracefully.
    let e = cp1.reset(&ResetOptions::default()).await.unwrap_err();
    assert!(e.is_failed_precondition(), "{e}");

    fleet.shutdown().await;
}

#[tokio::test]
async fn invalid_configs_are_refused_with_messages() {
    let net = 2;
    let spec = spec(net);
    let fleet = fleet(net, fast());
    let node = fleet.start_node(NodeOptions::default());
    let c = maintenance(&node).await;
    let good = render_node_config(&spec, bundle(), "cp1").unwrap();

    let cases: Vec<(String, &str)> = vec![
        (
            good.replace("type: controlplane", "type: boss"),
            "invalid machine type",
        ),
        (
            good.replace("address: 127.20.2.10/24", "address: 127.20.2.10"),
            "not a valid CIDR",
        ),
        (
            good.replace(
                "kind: HostnameConfig\n",
                "kind: HostnameConfig\nauto: stable\n",
            ),
            "mutually exclusive",
        ),
    ];
    for (cfg, want) in cases {
        assert_ne!(cfg, good, "case {want} must change the config");
        let e = c
            .apply_configuration(&cfg, ApplyMode::Auto)
            .await
            .unwrap_err();
        assert!(e.is_invalid_argument(), "{want}: {e}");
        assert!(e.rpc_message().unwrap().contains(want), "{want}: {e}");
    }
    // Undecodable YAML: a plain error (gRPC Unknown) as real Talos answers.
    let e = c
        .apply_configuration("machine: [", ApplyMode::Auto)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::Unknown), "{e}");
    assert!(
        e.rpc_message()
            .unwrap()
            .starts_with("failed to parse config: "),
        "{e}"
    );
    // A worker config without machine.token.
    let w = render_node_config(&spec, bundle(), "w1").unwrap();
    let w_no_token = w.replace(&format!("token: {}", bundle().trustd_token), "token: ''");
    assert_ne!(w, w_no_token);
    let e = c
        .apply_configuration(&w_no_token, ApplyMode::Auto)
        .await
        .unwrap_err();
    assert!(e.rpc_message().unwrap().contains("machine.token"), "{e}");
    assert_eq!(
        node.stage(),
        Stage::Maintenance,
        "refused configs change nothing"
    );
    assert!(node.applies().is_empty());
    fleet.shutdown().await;
}

#[tokio::test]
async fn official_schema_is_enforced_when_present() {
    let Some(schema) = Schema::shared() else {
        panic!("the official schema ../shared/specs/talos-v1.12/config.schema.json is missing");
    };
    let net = 3;
    let spec = spec(net);
    let good = render_node_config(&spec, bundle(), "cp1").unwrap();
    use waddle_acceptance::talos::validate::{validate, Refusal};
    // An unknown key: Talos's strict decoder refuses it ("failed to parse config").
    let unknown = good.replace("kind: HostnameConfig\n", "kind: HostnameConfig\nbogus: 1\n");
    assert_ne!(unknown, good);
    assert!(validate(&good, Some(schema)).is_ok());
    match validate(&unknown, Some(schema)) {
        Err(Refusal::Parse(m)) => assert!(m.contains("bogus"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A value the schema refuses by pattern/enum: a validation error.
    let bad_enum = good.replace("cni:\n      name: none", "cni:\n      name: calico");
    assert_ne!(bad_enum, good, "rendered config has cni none");
    match validate(&bad_enum, Some(schema)) {
        Err(Refusal::Invalid(m)) => assert!(m.contains("/cluster/network/cni/name"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Without the schema (sandbox without specs) only the emulator's own rules run.
    assert!(validate(&unknown, None).is_ok());
    assert!(validate(&bad_enum, None).is_ok());

    let fleet = fleet(net, fast());
    let node = fleet.start_node(NodeOptions::default());
    let c = maintenance(&node).await;
    let e = c
        .apply_configuration(&unknown, ApplyMode::Auto)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::Unknown), "{e}");
    assert!(
        e.rpc_message()
            .unwrap()
            .starts_with("failed to parse config"),
        "{e}"
    );
    let e = c
        .apply_configuration(&bad_enum, ApplyMode::Auto)
        .await
        .unwrap_err();
    assert!(e.is_invalid_argument(), "{e}");
    assert!(
        e.rpc_message()
            .unwrap()
            .starts_with("configuration validation failed"),
        "{e}"
    );
    fleet.shutdown().await;
}

#[tokio::test]
async fn bootstrap_waits_for_readiness() {
    let net = 4;
    let spec = spec(net);
    let fleet = fleet(
        net,
        Timings {
            bootstrap_ready: Duration::from_secs(3600),
            ..fast()
        },
    );
    let node = fleet.start_node(NodeOptions::default());
    let c = maintenance(&node).await;
    c.apply_configuration(
        &render_node_config(&spec, bundle(), "cp1").unwrap(),
        ApplyMode::Auto,
    )
    .await
    .unwrap();
    assert!(node.wait_stage(Stage::Running, WAIT).await);
    let cp = secure(node.address().unwrap()).await;
    let e = cp.bootstrap().await.unwrap_err();
    assert!(e.is_failed_precondition(), "{e}");
    assert!(!fleet.is_bootstrapped(&bundle().cluster_id));
    // Not bootstrapped: etcd is not running, /readyz not served yet.
    assert!(cp
        .etcd_members()
        .await
        .unwrap_err()
        .is_failed_precondition());
    assert!(fleet.readyz(&bundle().cluster_id).is_err());
    fleet.shutdown().await;
}

#[tokio::test]
async fn faults_are_injected_deterministically() {
    let net = 5;
    let spec = spec(net);
    let fleet = fleet(net, fast());
    let node = fleet.start_node(NodeOptions::default());
    let c = maintenance(&node).await;
    let cfg = render_node_config(&spec, bundle(), "cp1").unwrap();

    node.fail_next("ApplyConfiguration", tonic::Code::Unavailable, "try later");
    let e = c
        .apply_configuration(&cfg, ApplyMode::Auto)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::Unavailable));
    assert!(e.is_transient());
    assert_eq!(e.rpc_message(), Some("try later"));

    fleet.shutdown().await;

    // Same seed, same decisions: two fresh fleets replay the same pattern.
    let mut runs = Vec::new();
    for net in [5u8, 7] {
        let mut rate = std::collections::BTreeMap::new();
        rate.insert("Version".to_string(), 0.5);
        let f = TalosFleet::new(FleetOptions {
            timings: fast(),
            dhcp_pool_start: Some(Ipv4Addr::new(127, 20, net, 210)),
            faults: Faults {
                seed: 42,
                error_rate: rate,
                code: tonic::Code::Unavailable,
                ..Faults::default()
            },
            ..FleetOptions::default()
        });
        let n = f.start_node(NodeOptions::default());
        let cl = maintenance(&n).await;
        let mut pattern = Vec::new();
        for _ in 0..24 {
            // Unimplemented in maintenance mode unless the injected fault hits first.
            let code = cl.version().await.unwrap_err().code();
            pattern.push(code == Some(tonic::Code::Unavailable));
        }
        runs.push(pattern);
        f.shutdown().await;
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0].iter().any(|x| *x) && runs[0].iter().any(|x| !*x),
        "{:?}",
        runs[0]
    );
}

/// A tiny SOCKS5 proxy on 127.x counting tunnels (loopback targets only).
async fn socks5_proxy(ip: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind((ip, 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c2 = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let count = c2.clone();
            tokio::spawn(async move {
                let mut h = [0u8; 3];
                s.read_exact(&mut h).await.unwrap();
                s.write_all(&[5, 0]).await.unwrap();
                let mut r = [0u8; 10];
                s.read_exact(&mut r).await.unwrap();
                let ip = Ipv4Addr::new(r[4], r[5], r[6], r[7]);
                assert_eq!(ip.octets()[0], 127);
                let port = u16::from_be_bytes([r[8], r[9]]);
                let mut up = TcpStream::connect((ip, port)).await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
            });
        }
    });
    (addr, count)
}

#[tokio::test]
async fn client_reaches_nodes_through_a_socks5_proxy() {
    let net = 6;
    let spec = spec(net);
    let fleet = fleet(net, fast());
    let node = fleet.start_node(NodeOptions::default());
    assert!(node.wait_stage(Stage::Maintenance, WAIT).await);
    let (paddr, count) = socks5_proxy("127.20.6.250").await;
    let opts = ConnectOptions {
        proxy: Some(Proxy::parse(&format!("socks5://{paddr}")).unwrap()),
        ..ConnectOptions::default()
    };
    // Rendered before connecting: the first `bundle()` generates an RSA-4096 key, which blocks
    // this single-threaded runtime for seconds; in the middle of the TLS handshake that let
    // the node's handshake timeout close the connection.
    let config = render_node_config(&spec, bundle(), "cp1").unwrap();
    let c = TalosClient::connect_maintenance(
        ep(node.dhcp_address().expect("a maintenance address")),
        &opts,
    )
    .await
    .unwrap();
    c.apply_configuration(&config, ApplyMode::Auto)
        .await
        .unwrap();
    assert!(node.wait_stage(Stage::Running, WAIT).await);
    let s = TalosClient::connect(ep(node.address().unwrap()), &creds(), &opts)
        .await
        .unwrap();
    assert_eq!(s.version().await.unwrap().tag, "v1.12.11");
    assert_eq!(
        count.load(Ordering::SeqCst),
        2,
        "both connections were tunnelled"
    );
    fleet.shutdown().await;
}

mod machine_status {
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

    use waddle_framework::Value;

    use waddle_provider::resources::talos_cluster::{
        schema, ClusterModel, ImageModel, NodeModel, PlacementModel, TimeoutsModel, TYPE_NAME,
    };
    use waddle_talos::api::{ApplyMode, ConnectOptions, Credentials, MachineStage, TalosClient};
    use waddle_talos::secrets::{FixedClock, SystemClock};
    use waddle_talos::{render_node_config, ClusterSpec, NodeSpec, Role, SecretsBundle};

    use crate::inproc::harness;

    /// Bound of every wait below. A create generates the cluster's secrets (an RSA-4096 key)
    /// before the first VM exists, which took more than 30 s on a loaded 2-core machine.
    const WAIT: Duration = Duration::from_secs(120);
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
        n.mac = Some(format!("bc:24:11:00:{net:02x}:0a"));
        spec.nodes.insert("cp1".into(), n);
        let fleet = TalosFleet::new(FleetOptions {
            timings: Timings {
                boot: Duration::from_millis(20),
                apply: Duration::ZERO,
                reboot: Duration::from_millis(50),
                bootstrap_ready: Duration::ZERO,
                rpc: Duration::ZERO,
                boot_done: Duration::ZERO,
                upgrade: Duration::from_millis(50),
            },
            dhcp_pool_start: Some(Ipv4Addr::new(127, 20, net, 200)),
            ..FleetOptions::default()
        });
        let static_ip = Ipv4Addr::new(127, 20, net, 10);
        fleet.hold_boot(static_ip);
        let node = fleet.start_node(NodeOptions::default());
        assert!(node.wait_stage(Stage::Maintenance, WAIT).await);

        // Maintenance mode serves resource reads too (no admin role needed).
        let c = TalosClient::connect_maintenance(
            ep(node.dhcp_address().expect("a maintenance address")),
            &ConnectOptions::default(),
        )
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
}

/// The membership log records joins, leaves and members going down and up with the quorum
/// after each; the VIP's Kubernetes API is released when no member runs (a destroyed
/// cluster), so a cluster created again on the same VIP can take it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_log_and_vip_follow_the_members() {
    use waddle_acceptance::talos::MembershipChange as C;
    let net = 7;
    let mut spec = spec(net);
    spec.nodes.remove("w1");
    let fleet = fleet(net, fast());
    let names = ["cp1", "cp2", "cp3"];
    let nodes: Vec<TalosNode> = names
        .iter()
        .map(|_| fleet.start_node(NodeOptions::default()))
        .collect();
    for (name, node) in names.iter().zip(&nodes) {
        let c = maintenance(node).await;
        let cfg = render_node_config(&spec, bundle(), name).unwrap();
        c.apply_configuration(&cfg, ApplyMode::Auto).await.unwrap();
    }
    for node in &nodes {
        assert!(node.wait_stage(Stage::Running, WAIT).await, "{node:?}");
    }
    let id = cluster_id(&spec);
    secure(nodes[0].address().unwrap())
        .await
        .bootstrap()
        .await
        .unwrap();
    let log = fleet.membership_log(&id);
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(log.iter().all(|e| e.change == C::Joined), "{log:?}");
    assert_eq!((log[2].members, log[2].up), (3, 3));

    // A member reboots: down (2 of 3 up, quorum kept), then up again.
    nodes[1].power_off().await;
    nodes[1].power_on();
    assert!(nodes[1].wait_stage(Stage::Running, WAIT).await);
    let log = fleet.membership_log(&id);
    let tail: Vec<_> = log[3..]
        .iter()
        .map(|e| (e.change, e.members, e.up))
        .collect();
    assert_eq!(tail, vec![(C::Down, 3, 2), (C::Up, 3, 3)]);
    assert!(log.iter().all(|e| e.has_quorum()), "{log:?}");

    // Leaving is logged with the smaller membership.
    secure(nodes[2].address().unwrap())
        .await
        .etcd_leave()
        .await
        .unwrap();
    let last = fleet.membership_log(&id).pop().unwrap();
    assert_eq!(
        (last.change, last.hostname.as_str(), last.members, last.up),
        (C::Left, "cp3", 2, 2)
    );

    // Every member down: no quorum, and the VIP is released; a member back takes it again.
    assert!(fleet.kube_api_addr(&id).is_some(), "the VIP serves");
    nodes[0].power_off().await;
    nodes[1].power_off().await;
    let last = fleet.membership_log(&id).pop().unwrap();
    assert!(!last.has_quorum(), "{last:?}");
    assert!(
        fleet.kube_api_addr(&id).is_none(),
        "nobody holds the VIP of a cluster without running members"
    );
    let vip: Ipv4Addr = spec.vip.as_deref().unwrap().parse().unwrap();
    let freed = tokio::net::TcpListener::bind((vip, 6443))
        .await
        .expect("the VIP port is free again");
    drop(freed);
    nodes[0].power_on();
    assert!(nodes[0].wait_stage(Stage::Running, WAIT).await);
    let mut served = false;
    for _ in 0..200 {
        if fleet.kube_api_addr(&id).is_some() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(served, "a member back up serves the VIP again");
    fleet.shutdown().await;
}
