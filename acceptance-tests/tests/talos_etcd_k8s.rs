//! The Talos emulator's etcd snapshot and recovery (`EtcdSnapshot`, `EtcdRecover`,
//! `Bootstrap` with `recover_etcd`, etcd lost with the last member's disk) and its minimal
//! Kubernetes API on the VIP (authentication, `/version`, nodes, namespaces, `kubectl get
//! nodes` with the admin kubeconfig), driven by the real Talos API client.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use waddle_acceptance::talos::{NodeOptions, Stage, TalosFleet, Timings};
use waddle_talos::api::{ResetOptions, SnapshotTransferError, TalosClient};
use waddle_talos::{ClusterSpec, Role};

#[allow(dead_code)] // not every helper is used here
mod talos_support;
use talos_support::{bundle, configure, fast_timings, fleet_options, secure, WAIT};

/// One control plane + one worker on 127.20.<net>.0/24, VIP .100, CNI none.
fn spec(net: u8) -> ClusterSpec {
    talos_support::spec(
        "emu",
        net,
        &[("cp1", Role::ControlPlane, 10), ("w1", Role::Worker, 20)],
    )
}

/// Fast timings but the default upgrade duration.
fn fleet(net: u8) -> TalosFleet {
    let timings = Timings {
        upgrade: Timings::default().upgrade,
        ..fast_timings()
    };
    TalosFleet::new(fleet_options(net, timings))
}

fn ip(net: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 20, net, host)
}

/// The etcd service of a node: (state, message).
async fn etcd_service(c: &TalosClient) -> (String, String) {
    let s = c.services().await.expect("services");
    let e = s.iter().find(|s| s.id == "etcd").expect("etcd service");
    (e.state.clone(), e.message.clone())
}

async fn wait_kube_api(fleet: &TalosFleet) {
    let t = Instant::now();
    while fleet.kube_api_addr(&bundle().cluster_id).is_none() {
        assert!(t.elapsed() < WAIT, "the VIP never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn snapshot_of(c: &TalosClient) -> Vec<u8> {
    let mut buf = Vec::new();
    let info = c.etcd_snapshot(&mut buf).await.expect("snapshot");
    assert_eq!(info.size, buf.len() as u64);
    assert_eq!(
        info.sha256,
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&buf))
    );
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_recovers_a_cluster_whose_etcd_was_lost() {
    let net = 61;
    let spec = spec(net);
    let fleet = fleet(net);
    let cid = bundle().cluster_id.clone();
    let nodes = [
        ("cp1", fleet.start_node(NodeOptions::default())),
        ("w1", fleet.start_node(NodeOptions::default())),
    ];
    configure(&spec, &nodes).await;
    let cp = secure(ip(net, 10)).await;
    cp.bootstrap().await.expect("bootstrap");
    assert!(fleet.is_bootstrapped(&cid));
    // Both kubelets registered their Node; a namespace is created.
    assert_eq!(fleet.kube_node_names(&cid), ["cp1", "w1"]);
    assert!(fleet.create_namespace(&cid, "keep-me"));

    // A worker runs no etcd.
    let w = secure(ip(net, 20)).await;
    let e = w.etcd_snapshot(&mut Vec::new()).await.unwrap_err();
    assert!(
        matches!(&e, SnapshotTransferError::Api(a) if a.code() == Some(tonic::Code::FailedPrecondition)),
        "{e}"
    );
    let snap = snapshot_of(&cp).await;
    assert_eq!((snap.len() - 32) % 512, 0, "pages + hash");

    // A recovery while etcd runs: Bootstrap refuses, the data directory is not empty.
    cp.etcd_recover(&snap).await.expect("upload");
    let e = cp.bootstrap_recover().await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::AlreadyExists), "{e}");

    // The last member is reset (forced, as the last member must be): etcd is lost.
    cp.reset(&ResetOptions {
        graceful: false,
        reboot: true,
        system_partitions_to_wipe: Vec::new(),
    })
    .await
    .expect("reset");
    w.reset(&ResetOptions {
        graceful: true,
        reboot: true,
        system_partitions_to_wipe: Vec::new(),
    })
    .await
    .expect("reset");
    for (_, n) in &nodes {
        assert!(n.wait_stage(Stage::Maintenance, WAIT).await, "{n:?}");
    }
    configure(&spec, &nodes).await;
    assert!(
        !fleet.is_bootstrapped(&cid),
        "etcd went with the last member's disk"
    );
    assert!(fleet.kube_namespaces(&cid).is_empty());
    let cp = secure(ip(net, 10)).await;
    let (state, _) = etcd_service(&cp).await;
    assert_eq!(state, "Preparing", "waits for a bootstrap");

    // Recovery without an upload: the call succeeds, etcd fails to start.
    cp.bootstrap_recover().await.expect("accepted");
    let (state, msg) = etcd_service(&cp).await;
    assert_eq!(state, "Failed");
    assert!(msg.contains("no such file or directory"), "{msg}");
    assert!(!fleet.is_bootstrapped(&cid));

    // A damaged snapshot fails its hash check.
    let mut bad = snap.clone();
    bad[7] ^= 0x20;
    cp.etcd_recover(&bad).await.expect("upload");
    cp.bootstrap_recover().await.expect("accepted");
    let (state, msg) = etcd_service(&cp).await;
    assert_eq!(state, "Failed");
    assert!(msg.contains("integrity check failed"), "{msg}");

    // The good one restores everything etcd held.
    cp.etcd_recover(&snap).await.expect("upload");
    cp.bootstrap_recover().await.expect("recovered");
    assert!(fleet.is_bootstrapped(&cid));
    let (state, _) = etcd_service(&cp).await;
    assert_eq!(state, "Running");
    assert!(fleet.kube_namespaces(&cid).contains(&"keep-me".to_string()));
    assert_eq!(fleet.kube_node_names(&cid), ["cp1", "w1"]);
    assert_eq!(cp.etcd_members().await.expect("members").len(), 1);
    fleet.shutdown().await;
}

/// The admin kubeconfig's credentials as a reqwest client (and the file, for kubectl).
async fn kube_client(cp: &TalosClient) -> (reqwest::Client, String) {
    let kc = String::from_utf8(cp.kubeconfig().await.expect("kubeconfig")).expect("utf-8");
    let v: serde_json::Value = serde_yaml_ng::from_str(&kc).expect("yaml");
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("string"))
            .expect("base64")
    };
    let mut pem = b64(&v["users"][0]["user"]["client-certificate-data"]);
    pem.extend(b64(&v["users"][0]["user"]["client-key-data"]));
    let client = reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(bundle().k8s_ca.crt.as_bytes()).expect("ca"),
        ])
        .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    (client, kc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_api_serves_nodes_and_namespaces_to_the_admin() {
    let net = 62;
    let spec = spec(net);
    let fleet = fleet(net);
    let nodes = [
        ("cp1", fleet.start_node(NodeOptions::default())),
        ("w1", fleet.start_node(NodeOptions::default())),
    ];
    configure(&spec, &nodes).await;
    let cp = secure(ip(net, 10)).await;
    cp.bootstrap().await.expect("bootstrap");
    wait_kube_api(&fleet).await;
    let base = format!("https://127.20.{net}.100:6443");
    let (admin, kubeconfig) = kube_client(&cp).await;
    let anonymous = reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(bundle().k8s_ca.crt.as_bytes()).expect("ca"),
        ])
        .no_proxy()
        .build()
        .expect("client");

    // Public: /version and /readyz; everything else needs the admin's certificate.
    let v: serde_json::Value = anonymous
        .get(format!("{base}/version"))
        .send()
        .await
        .expect("version")
        .json()
        .await
        .expect("json");
    assert_eq!(
        v["gitVersion"],
        format!("v{}", spec.kubernetes_version.trim_start_matches('v'))
    );
    let r = anonymous
        .get(format!("{base}/api/v1/nodes"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 401);

    // Nodes as a cluster without a CNI reports them.
    let get = |path: &str| {
        let req = admin.get(format!("{base}{path}"));
        async move {
            let r = req.send().await.expect("answer");
            let code = r.status().as_u16();
            (code, r.json::<serde_json::Value>().await.expect("json"))
        }
    };
    let (code, list) = get("/api/v1/nodes").await;
    assert_eq!(code, 200);
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    for n in items {
        let ready = n["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .expect("Ready condition");
        assert_eq!(ready["status"], "False", "{n}");
        assert_eq!(ready["reason"], "KubeletNotReady");
        assert!(ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("cni plugin not initialized")));
        assert_eq!(
            n["spec"]["taints"][0]["key"],
            "node.kubernetes.io/not-ready"
        );
    }
    let (code, cp_node) = get("/api/v1/nodes/cp1").await;
    assert_eq!(code, 200);
    assert!(cp_node["metadata"]["labels"]
        .get("node-role.kubernetes.io/control-plane")
        .is_some());
    assert_eq!(
        cp_node["status"]["addresses"][0]["address"],
        format!("127.20.{net}.10")
    );

    // A machine that is down: Ready Unknown.
    nodes[1].1.power_off().await;
    let (_, w) = get("/api/v1/nodes/w1").await;
    let ready = w["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .expect("Ready");
    assert_eq!(ready["status"], "Unknown");

    // kubectl with the admin kubeconfig (cache in a temporary directory).
    if let Ok(kubectl) = which("kubectl") {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, &kubeconfig).expect("write");
        let kc = path.clone();
        let cache = dir.path().join("cache");
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(kubectl)
                .args(["get", "nodes", "--request-timeout=10s", "--cache-dir"])
                .arg(cache)
                .env("KUBECONFIG", kc)
                .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
                .env_remove("HTTPS_PROXY")
                .env_remove("https_proxy")
                .output()
        })
        .await
        .expect("join")
        .expect("kubectl runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "kubectl: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<Vec<&str>> = stdout
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0][..3], ["NAME", "STATUS", "ROLES"], "{stdout}");
        assert_eq!(
            lines[1][..3],
            ["cp1", "NotReady", "control-plane"],
            "{stdout}"
        );
        assert_eq!(lines[2][..3], ["w1", "NotReady", "<none>"], "{stdout}");
    } else {
        eprintln!("NOTICE: kubectl not found; the kubectl part of this test did not run");
    }

    // Delete a Node; it is gone from the list.
    let r = admin
        .delete(format!("{base}/api/v1/nodes/w1"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 200);
    let (code, _) = get("/api/v1/nodes/w1").await;
    assert_eq!(code, 404);
    let r = admin
        .delete(format!("{base}/api/v1/nodes/w1"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(fleet.kube_node_names(&bundle().cluster_id), ["cp1"]);

    // Namespaces: the initial four, then one created.
    let (_, ns) = get("/api/v1/namespaces").await;
    let names: Vec<&str> = ns["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
    let body =
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}});
    let r = admin
        .post(format!("{base}/api/v1/namespaces"))
        .json(&body)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 201);
    let r = admin
        .post(format!("{base}/api/v1/namespaces"))
        .json(&body)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 409);
    let (code, _) = get("/api/v1/namespaces/apps").await;
    assert_eq!(code, 200);
    fleet.shutdown().await;
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
        .ok_or(())
}
