//! `waddle_talos_cluster` through the real CLI: `examples/homelab-single-node` and
//! `examples/three-node` applied against the PVE emulator with the Talos emulator plugged in
//! as its guest appliance (both in this test process, PVE on 127.40.4x.1, Talos node
//! addresses in 127.20.4x.0/24, maintenance "DHCP" addresses from the Talos emulator's pool).
//!
//! Each case: apply (VMs created from the downloaded image, config applied in maintenance
//! mode, bootstrap, health through the VIP), the harness's empty plan / refresh / empty plan,
//! checks against both emulators (VM config, etcd membership, kubeconfig client certificate
//! signed by the cluster's Kubernetes CA), then for the three-node example a worker added and
//! removed in place, and finally destroy with nothing left in Proxmox (no VM, no volume).

use std::net::Ipv4Addr;
use std::sync::Arc;

use base64::Engine as _;
use waddle_acceptance::harness::{check, repo_root, Snapshot, TestCase, TestStep};
use waddle_acceptance::pve::{EmulatorConfig, PveEmulator};
use waddle_acceptance::talos::{appliance, FleetOptions, TalosFleet};
use waddle_talos::SecretsBundle;

struct Env {
    rt: tokio::runtime::Runtime,
    emu: Arc<PveEmulator>,
    fleet: TalosFleet,
}

fn start(pve_ip: Ipv4Addr) -> Env {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fleet = TalosFleet::new(FleetOptions::default());
    let emu = rt
        .block_on(PveEmulator::start(
            EmulatorConfig::builder().ip(pve_ip).bridge("vmbr1").build(),
        ))
        .expect("start the PVE emulator");
    appliance::register(emu.appliances(), fleet.clone());
    Env {
        rt,
        emu: Arc::new(emu),
        fleet,
    }
}

fn case(env: &Env) -> TestCase {
    TestCase::new()
        .env("PROXMOX_VE_ENDPOINT", env.emu.endpoint())
        .env(
            "PROXMOX_VE_API_TOKEN",
            env.emu.api_token().expect("emulator token"),
        )
        .env("PROXMOX_VE_CA_CERT", env.emu.ca_pem())
        .env("PROXMOX_VE_NODE", env.emu.node())
}

fn example(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("examples").join(name).join("main.tf"))
        .expect("example main.tf")
}

fn pem_der(pem: &str) -> Result<Vec<u8>, String> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
    Ok(p.contents)
}

/// The cluster secrets from the state.
fn secrets(s: &Snapshot, addr: &str) -> Result<SecretsBundle, String> {
    let r = s.resource(addr)?;
    let y = r
        .str_attr("machine_secrets")
        .ok_or("machine_secrets missing")?;
    SecretsBundle::from_yaml(y).map_err(|e| e.to_string())
}

/// The kubeconfig's client certificate is signed by the cluster's Kubernetes CA.
fn kubeconfig_verifies(s: &Snapshot, addr: &str) -> Result<(), String> {
    let r = s.resource(addr)?;
    let kc = r.str_attr("kubeconfig").ok_or("kubeconfig missing")?;
    let v: serde_json::Value =
        serde_yaml_ng::from_str(kc).map_err(|e| format!("kubeconfig: {e}"))?;
    let b64 = v["users"][0]["user"]["client-certificate-data"]
        .as_str()
        .ok_or("kubeconfig has no client-certificate-data")?;
    let crt_pem = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| e.to_string())?;
    let crt_pem = String::from_utf8(crt_pem).map_err(|e| e.to_string())?;
    let bundle = secrets(s, addr)?;
    let ca_der = pem_der(&bundle.k8s_ca.crt)?;
    let crt_der = pem_der(&crt_pem)?;
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).map_err(|e| e.to_string())?;
    let (_, crt) = x509_parser::parse_x509_certificate(&crt_der).map_err(|e| e.to_string())?;
    crt.verify_signature(Some(ca.public_key()))
        .map_err(|e| format!("kubeconfig client certificate not signed by the cluster CA: {e}"))?;
    let server = v["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap_or_default();
    let endpoint = r.str_attr("endpoint").unwrap_or_default();
    if server.trim_end_matches('/') != endpoint.trim_end_matches('/') {
        return Err(format!("kubeconfig server {server} != endpoint {endpoint}"));
    }
    Ok(())
}

fn vmids(s: &Snapshot, addr: &str) -> Result<Vec<(String, u32)>, String> {
    let r = s.resource(addr)?;
    let vms = r
        .attr("proxmox_vms")
        .and_then(|v| v.as_object())
        .ok_or("proxmox_vms missing")?;
    Ok(vms
        .iter()
        .map(|(k, v)| (k.clone(), v["vmid"].as_u64().unwrap_or(0) as u32))
        .collect())
}

/// Every VM of the state runs in the emulator, and etcd has `cps` members.
fn cluster_matches(
    emu: &PveEmulator,
    fleet: &TalosFleet,
    s: &Snapshot,
    addr: &str,
    nodes: usize,
    cps: usize,
) -> Result<(), String> {
    let ids = vmids(s, addr)?;
    if ids.len() != nodes {
        return Err(format!("{} VMs in the state, expected {nodes}", ids.len()));
    }
    if emu.vms().len() != nodes {
        return Err(format!(
            "{} VMs in the emulator, expected {nodes}",
            emu.vms().len()
        ));
    }
    for (name, id) in &ids {
        let vm = emu
            .vm(*id)
            .ok_or(format!("VM {id} ({name}) not in the emulator"))?;
        if !vm.running {
            return Err(format!("VM {id} ({name}) is not running"));
        }
        if vm.config.get("agent").map(String::as_str) != Some("1") {
            return Err(format!("VM {id}: agent = {:?}", vm.config.get("agent")));
        }
    }
    let bundle = secrets(s, addr)?;
    let members = fleet.etcd_members(&bundle.cluster_id);
    if members.len() != cps {
        return Err(format!(
            "etcd has {} members, expected {cps}",
            members.len()
        ));
    }
    if !fleet.is_bootstrapped(&bundle.cluster_id) {
        return Err("the cluster was not bootstrapped".into());
    }
    kubeconfig_verifies(s, addr)
}

fn nothing_left(emu: &PveEmulator) -> Result<(), String> {
    if !emu.vms().is_empty() {
        return Err(format!(
            "VMs left: {:?}",
            emu.vms().iter().map(|v| v.vmid).collect::<Vec<_>>()
        ));
    }
    let vols: Vec<String> = emu.volumes().into_iter().map(|v| v.volid).collect();
    if !vols.is_empty() {
        return Err(format!("volumes left: {vols:?}"));
    }
    Ok(())
}

const HOMELAB: &str = "waddle_talos_cluster.homelab";

#[test]
fn homelab_single_node_example() {
    let env = start(Ipv4Addr::new(127, 40, 41, 1));
    let tfvars = r#"
address = "127.20.41.10/24"
gateway = "127.20.41.1"
vip     = "127.20.41.20"
mac     = "BC:24:11:4C:AB:01"
vmid    = 150
"#;
    let (emu, fleet) = (env.emu.clone(), env.fleet.clone());
    let emu2 = env.emu.clone();
    case(&env)
        .step(
            TestStep::config(example("homelab-single-node"))
                .file("terraform.tfvars", tfvars)
                .describe("create")
                .check(check::attr_equals(
                    HOMELAB,
                    "node_addresses.talos1",
                    "127.20.41.10",
                ))
                .check(check::func(move |s| {
                    cluster_matches(&emu, &fleet, s, HOMELAB, 1, 1)?;
                    let vm = emu.vm(150).ok_or("VM 150 missing")?;
                    let get = |k: &str| vm.config.get(k).cloned().unwrap_or_default();
                    if !get("net0")
                        .to_ascii_uppercase()
                        .contains("BC:24:11:4C:AB:01")
                    {
                        return Err(format!("net0 = {:?}: fixed MAC expected", get("net0")));
                    }
                    if get("bios") != "ovmf" {
                        return Err(format!(
                            "bios = {:?}: UEFI expected for SecureBoot",
                            get("bios")
                        ));
                    }
                    if !get("efidisk0").contains("pre-enrolled-keys=0") {
                        return Err(format!("efidisk0 = {:?}", get("efidisk0")));
                    }
                    if !get("tpmstate0").contains("version=v2.0") {
                        return Err(format!("tpmstate0 = {:?}", get("tpmstate0")));
                    }
                    let r = s.resource(HOMELAB)?;
                    let cfg = r
                        .str_attr("machine_configurations.talos1")
                        .ok_or("machine configuration missing")?;
                    if !cfg.contains("VolumeConfig") || !cfg.contains("tpm") {
                        return Err("disk encryption missing from the machine configuration".into());
                    }
                    if !emu.downloads().iter().any(|u| u.contains("secureboot")) {
                        return Err(format!(
                            "no SecureBoot image downloaded: {:?}",
                            emu.downloads()
                        ));
                    }
                    Ok(())
                })),
        )
        .check_destroy(move |_| nothing_left(&emu2))
        .run();
    env.rt.block_on(env.fleet.shutdown());
}

const THREE: &str = "waddle_talos_cluster.this";

fn three_node_vars(workers: &str) -> String {
    format!(
        r#"
control_planes = {{
  cp1 = {{ address = "127.20.42.10/24", vmid = 210 }}
  cp2 = {{ address = "127.20.42.11/24", vmid = 211 }}
  cp3 = {{ address = "127.20.42.12/24", vmid = 212 }}
}}
workers = {{ {workers} }}
gateway = "127.20.42.1"
vip     = "127.20.42.20"
"#
    )
}

#[test]
fn three_node_example_add_and_remove_a_worker() {
    let env = start(Ipv4Addr::new(127, 40, 42, 1));
    let step = |workers: &str| {
        TestStep::config(example("three-node")).file("terraform.tfvars", three_node_vars(workers))
    };
    let (e1, f1) = (env.emu.clone(), env.fleet.clone());
    let (e2, f2) = (env.emu.clone(), env.fleet.clone());
    let (e3, f3) = (env.emu.clone(), env.fleet.clone());
    let e4 = env.emu.clone();
    case(&env)
        .step(
            step("")
                .describe("create three control planes")
                .check(check::func(move |s| {
                    cluster_matches(&e1, &f1, s, THREE, 3, 3)
                })),
        )
        .step(
            step(r#"w1 = { address = "127.20.42.13/24", vmid = 213 }"#)
                .describe("add a worker")
                .plan_check(check::plan_actions(THREE, &["update"]))
                .check(check::func(move |s| {
                    cluster_matches(&e2, &f2, s, THREE, 4, 3)?;
                    let ids = vmids(s, THREE)?;
                    for (n, id) in [("cp1", 210), ("cp2", 211), ("cp3", 212), ("w1", 213)] {
                        if !ids.contains(&(n.to_string(), id)) {
                            return Err(format!("{n} should be VM {id}: {ids:?}"));
                        }
                    }
                    Ok(())
                })),
        )
        .step(
            step("")
                .describe("remove the worker")
                .plan_check(check::plan_actions(THREE, &["update"]))
                .check(check::func(move |s| {
                    cluster_matches(&e3, &f3, s, THREE, 3, 3)?;
                    if e3.vm(213).is_some() {
                        return Err("the removed worker's VM still exists".into());
                    }
                    Ok(())
                })),
        )
        .check_destroy(move |_| nothing_left(&e4))
        .run();
    env.rt.block_on(env.fleet.shutdown());
}

/// `modules/talos-cluster` (written against this resource's attribute names) applied as is,
/// with the addresses moved into the test range.
#[test]
fn talos_cluster_module() {
    let env = start(Ipv4Addr::new(127, 40, 48, 1));
    let mut step = TestStep::config(
        r#"
terraform {
  required_providers {
    waddle = {
      source = "waddle-social/waddle"
    }
  }
}

provider "waddle" {}

module "cluster" {
  source                  = "./modules/talos-cluster"
  control_plane_addresses = ["127.20.48.10", "127.20.48.11", "127.20.48.12"]
  gateway                 = "127.20.48.1"
  vip                     = "127.20.48.20"
  proxmox_node            = "pve"
  bridge                  = "vmbr1"
  vmid_base               = 480
}

output "node_addresses" {
  value = module.cluster.node_addresses
}
"#,
    )
    .describe("module create")
    .check(check::func(|s| {
        let o = s.output("node_addresses")?;
        match o.get("cp3").and_then(|v| v.as_str()) {
            Some("127.20.48.12") => Ok(()),
            _ => Err(format!("node_addresses = {o}")),
        }
    }));
    let dir = repo_root().join("modules/talos-cluster");
    for e in std::fs::read_dir(&dir).expect("modules/talos-cluster") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "tf") {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            step = step.file(
                format!("modules/talos-cluster/{name}"),
                std::fs::read_to_string(&p).expect("module file"),
            );
        }
    }
    let (emu, fleet) = (env.emu.clone(), env.fleet.clone());
    let emu2 = env.emu.clone();
    const ADDR: &str = "module.cluster.waddle_talos_cluster.this";
    case(&env)
        .step(step.check(check::func(move |s| {
            cluster_matches(&emu, &fleet, s, ADDR, 3, 3)?;
            let ids: Vec<u32> = vmids(s, ADDR)?.into_iter().map(|(_, v)| v).collect();
            if ids != vec![480, 481, 482] {
                return Err(format!("VM ids {ids:?}"));
            }
            Ok(())
        })))
        .check_destroy(move |_| nothing_left(&emu2))
        .run();
    env.rt.block_on(env.fleet.shutdown());
}

/// Bad input is refused at plan, with the attribute at fault, before any API call.
#[test]
fn bad_input_is_refused_before_any_api_call() {
    use waddle_acceptance::harness::Phase;
    let env = start(Ipv4Addr::new(127, 40, 43, 1));
    let dup = three_node_vars("").replace("127.20.42.11/24", "127.20.42.10/24");
    let far_vip =
        three_node_vars("").replace(r#"vip     = "127.20.42.20""#, r#"vip     = "127.20.99.20""#);
    let even =
        three_node_vars("").replace(r#"  cp3 = { address = "127.20.42.12/24", vmid = 212 }"#, "");
    let emu = env.emu.clone();
    case(&env)
        .step(
            TestStep::config(example("three-node"))
                .file("terraform.tfvars", dup)
                .describe("duplicate address")
                .expect_error(r"duplicate address 127\.20\.42\.10")
                .expect_error_in(&[Phase::Validate, Phase::Plan]),
        )
        .step(
            TestStep::config(example("three-node"))
                .file("terraform.tfvars", far_vip)
                .describe("VIP outside every node subnet")
                .expect_error(r"VIP 127\.20\.99\.20 is inside no control plane")
                .expect_error_in(&[Phase::Validate, Phase::Plan]),
        )
        .step(
            TestStep::config(example("three-node"))
                .file("terraform.tfvars", even)
                .describe("two control planes: a warning, the plan goes ahead")
                .plan_only()
                .expect_non_empty_plan(),
        )
        .check_destroy(move |_| {
            let log = emu.request_log();
            if log.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} Proxmox API requests were made: {:?}",
                    log.len(),
                    log.iter()
                        .map(|r| format!("{} {}", r.method, r.path))
                        .collect::<Vec<_>>()
                ))
            }
        })
        .run();
}

// ---------------------------------------------------------------------------------------
// In process (the provider's gRPC handlers driven directly): failure clean-up and drift.
// ---------------------------------------------------------------------------------------

mod in_process {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;
    use waddle_acceptance::talos::Faults;
    use waddle_framework::testing::Harness;
    use waddle_framework::{AttributePath, Value};
    use waddle_provider::provider::{schema as provider_schema, NoEnv, WaddleProvider};
    use waddle_provider::resources::talos_cluster::{
        schema, ClusterModel, ImageModel, NodeModel, PlacementModel, TimeoutsModel, TYPE_NAME,
    };

    const URL: &str = "https://factory.talos.dev/image/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba/v1.12.11/nocloud-amd64.qcow2";

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

    /// One control plane and one worker in 127.20.<net>.0/24.
    fn config(net: u8, vmid_base: u32) -> Value {
        let ip = |h: u8| format!("127.20.{net}.{h}");
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
            cluster_name: format!("inproc{net}"),
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
                ("cp1".to_string(), node("controlplane", 10, vmid_base)),
                ("w1".to_string(), node("worker", 11, vmid_base + 1)),
            ])),
            ..Default::default()
        };
        schema().from_typed(&m).expect("config")
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// A node refuses its configuration: create fails with the node's message, the returned
    /// (tainted) state lists every VM and image that exists, and destroying it leaves
    /// nothing behind.
    #[test]
    fn failed_create_records_what_exists_and_destroy_cleans_up() {
        let rt = rt();
        rt.block_on(async {
            let mut faults = Faults::default();
            faults.error_rate.insert("ApplyConfiguration".into(), 1.0);
            faults.code = tonic::Code::InvalidArgument;
            let fleet = TalosFleet::new(FleetOptions {
                faults,
                ..Default::default()
            });
            let emu = PveEmulator::start(
                EmulatorConfig::builder()
                    .ip(Ipv4Addr::new(127, 40, 44, 1))
                    .build(),
            )
            .await
            .expect("PVE emulator");
            appliance::register(emu.appliances(), fleet.clone());
            let h = harness(&emu).await;
            let config = config(44, 440);
            let p = h.plan(TYPE_NAME, &Value::Null, &config).await;
            assert!(!p.diagnostics.has_errors(), "{:?}", p.diagnostics);
            let a = h
                .apply(TYPE_NAME, &Value::Null, &config, &p.planned_state)
                .await;
            assert!(a.diagnostics.has_errors(), "create should fail");
            let msg = format!("{:?}", a.diagnostics);
            assert!(msg.contains("InvalidArgument"), "{msg}");
            let vms = a
                .state
                .get_attr("proxmox_vms")
                .and_then(Value::as_entries)
                .expect("proxmox_vms recorded")
                .clone();
            assert_eq!(vms.keys().cloned().collect::<Vec<_>>(), vec!["cp1", "w1"]);
            assert_eq!(emu.vms().len(), 2);
            let images = a
                .state
                .get_attr("proxmox_images")
                .and_then(Value::as_elements);
            assert_eq!(
                images.map(<[Value]>::len),
                Some(1),
                "the downloaded image is recorded"
            );

            let d = h.plan(TYPE_NAME, &a.state, &Value::Null).await;
            let r = h
                .apply(TYPE_NAME, &a.state, &Value::Null, &d.planned_state)
                .await;
            assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
            nothing_left(&emu).expect("destroy cleans up");
            fleet.shutdown().await;
            emu.shutdown().await;
        });
    }

    async fn pve_delete_vm(emu: &PveEmulator, vmid: u32) {
        let token = emu.api_token().unwrap();
        let auth = if token.starts_with("PVEAPIToken=") {
            token
        } else {
            format!("PVEAPIToken={token}")
        };
        let c = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(emu.ca_pem().as_bytes()).unwrap()])
            .no_proxy()
            .build()
            .unwrap();
        let base = format!(
            "{}/api2/json/nodes/{}/qemu/{vmid}",
            emu.endpoint().trim_end_matches('/'),
            emu.node()
        );
        let r = c
            .post(format!("{base}/status/stop"))
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "stop: {}", r.status());
        for _ in 0..100 {
            if emu.vm(vmid).is_some_and(|v| !v.running) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let r = c
            .delete(&base)
            .header("Authorization", &auth)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "delete: {}", r.status());
        for _ in 0..100 {
            if emu.vm(vmid).is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("VM {vmid} not deleted");
    }

    /// Import by `<cluster_name>:<secrets.yaml>`: the next apply adopts the existing VMs and
    /// configured nodes (no new VM, no reinstall), fetches a kubeconfig and plans empty after.
    #[test]
    fn import_adopts_the_existing_cluster() {
        let rt = rt();
        rt.block_on(async {
            let fleet = TalosFleet::new(FleetOptions::default());
            let emu = PveEmulator::start(
                EmulatorConfig::builder()
                    .ip(Ipv4Addr::new(127, 40, 46, 1))
                    .build(),
            )
            .await
            .expect("PVE emulator");
            appliance::register(emu.appliances(), fleet.clone());
            let h = harness(&emu).await;
            let config = config(46, 460);
            let state = h
                .plan_and_apply(TYPE_NAME, &Value::Null, &config)
                .await
                .expect("create");
            let secrets = state
                .get_attr("machine_secrets")
                .and_then(Value::as_str)
                .unwrap()
                .to_string();
            let applies_before: usize = fleet.nodes().iter().map(|n| n.applies().len()).sum();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("secrets.yaml");
            std::fs::write(&path, &secrets).unwrap();

            let mut d = waddle_framework::Diagnostics::new();
            let imported = waddle_provider::resources::talos_cluster::ops::import(
                &format!("inproc46:{}", path.display()),
                &mut d,
            )
            .expect("import");
            assert!(d.is_empty(), "{d:?}");
            let r = h.read(TYPE_NAME, &imported).await;
            assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
            let p = h.plan(TYPE_NAME, &r.state, &config).await;
            assert!(p.requires_replace.is_empty(), "{:?}", p.requires_replace);
            let a = h
                .apply(TYPE_NAME, &r.state, &config, &p.planned_state)
                .await;
            assert!(!a.diagnostics.has_errors(), "{:?}", a.diagnostics);
            assert_eq!(emu.vms().len(), 2, "no VM created by the adopting apply");
            let vms = a
                .state
                .get_attr("proxmox_vms")
                .and_then(Value::as_entries)
                .unwrap();
            assert_eq!(
                vms.get("w1")
                    .and_then(|v| v.get_attr("vmid"))
                    .and_then(Value::as_i64),
                Some(461)
            );
            // Every node got its configuration once more over mTLS, none went through
            // maintenance mode again.
            let nodes = fleet.nodes();
            let applies_after: usize = nodes.iter().map(|n| n.applies().len()).sum();
            assert_eq!(applies_after, applies_before + 2);
            for n in &nodes {
                let ap = n.applies();
                assert_eq!(ap.len(), 2, "{}: {ap:?}", n.hostname());
                assert!(ap[0].in_maintenance && !ap[1].in_maintenance, "{ap:?}");
            }
            assert!(a
                .state
                .get_attr("kubeconfig")
                .and_then(Value::as_str)
                .is_some_and(|k| k.contains("client-certificate-data")));
            let p = h.plan(TYPE_NAME, &a.state, &config).await;
            assert!(
                p.planned_state.equals(&a.state),
                "plan after adoption is empty"
            );

            let d = h.plan(TYPE_NAME, &a.state, &Value::Null).await;
            let r = h
                .apply(TYPE_NAME, &a.state, &Value::Null, &d.planned_state)
                .await;
            assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
            // The disk image was downloaded before the import, so the imported resource does
            // not own it: it is the only thing left (no VM, no disk).
            assert!(emu.vms().is_empty());
            let left: Vec<String> = emu.volumes().into_iter().map(|v| v.volid).collect();
            let original_images: Vec<String> = state
                .get_attr("proxmox_images")
                .and_then(Value::as_elements)
                .unwrap()
                .iter()
                .filter_map(|i| {
                    i.get_attr("volume")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect();
            assert_eq!(left, original_images);
            fleet.shutdown().await;
            emu.shutdown().await;
        });
    }

    /// A failed update leaves a state from which the next plan shows the same change again:
    /// a node whose VM cannot be created is not recorded as a node, a configuration the node
    /// refused is not recorded as applied. Once the cause is gone the next apply completes.
    #[test]
    fn failed_update_is_planned_again() {
        let rt = rt();
        rt.block_on(async {
            let fleet = TalosFleet::new(FleetOptions::default());
            let emu = PveEmulator::start(
                EmulatorConfig::builder()
                    .ip(Ipv4Addr::new(127, 40, 47, 1))
                    .build(),
            )
            .await
            .expect("PVE emulator");
            appliance::register(emu.appliances(), fleet.clone());
            let h = harness(&emu).await;
            let config = config(47, 470);
            let state = h
                .plan_and_apply(TYPE_NAME, &Value::Null, &config)
                .await
                .expect("create");

            // 1. A new worker on a storage that does not exist.
            let w2 = AttributePath::attr("nodes").then_key("w2");
            let bad = config.clone();
            let mut node = config
                .get_path(&AttributePath::attr("nodes").then_key("w1"))
                .unwrap()
                .clone();
            node.set_path(
                &AttributePath::attr("address"),
                Value::from("127.20.47.12/24"),
            );
            node.set_path(
                &AttributePath::attr("proxmox").then_attr("vmid"),
                Value::from(472i64),
            );
            let with_w2 = |cfg: &Value, n: Value| {
                let mut cfg = cfg.clone();
                if let Some(Value::Map(m)) = cfg.get_path_mut(&AttributePath::attr("nodes")) {
                    m.insert("w2".to_string(), n);
                }
                cfg
            };
            let good = with_w2(&config, node.clone());
            node.set_path(
                &AttributePath::attr("proxmox").then_attr("storage"),
                Value::from("missing-storage"),
            );
            let bad = with_w2(&bad, node);
            let p = h.plan(TYPE_NAME, &state, &bad).await;
            let a = h.apply(TYPE_NAME, &state, &bad, &p.planned_state).await;
            assert!(
                a.diagnostics.has_errors(),
                "the VM cannot be created on a missing storage"
            );
            assert!(
                a.state.get_path(&w2).is_none_or(Value::is_null),
                "w2 not recorded"
            );
            let p = h.plan(TYPE_NAME, &a.state, &good).await;
            assert!(
                p.planned_state.get_path(&w2).is_some_and(|v| !v.is_null()),
                "the next plan adds w2 again"
            );
            let a = h.apply(TYPE_NAME, &a.state, &good, &p.planned_state).await;
            assert!(!a.diagnostics.has_errors(), "{:?}", a.diagnostics);
            assert!(emu.vm(472).is_some_and(|v| v.running));
            let state = a.state;

            // 2. The control plane refuses a configuration change once.
            let cp = fleet.node_at(Ipv4Addr::new(127, 20, 47, 10)).expect("cp1");
            cp.fail_next(
                "ApplyConfiguration",
                tonic::Code::InvalidArgument,
                "injected refusal",
            );
            let mut changed = good.clone();
            changed.set_path(
                &AttributePath::attr("nameservers"),
                Value::List(vec![Value::from("9.9.9.9")]),
            );
            let p = h.plan(TYPE_NAME, &state, &changed).await;
            let a = h.apply(TYPE_NAME, &state, &changed, &p.planned_state).await;
            let msg = format!("{:?}", a.diagnostics);
            assert!(msg.contains("injected refusal"), "{msg}");
            let recorded = a
                .state
                .get_path(&AttributePath::attr("machine_configurations").then_key("cp1"))
                .and_then(Value::as_str)
                .unwrap();
            assert!(
                !recorded.contains("9.9.9.9"),
                "the refused config is not recorded"
            );
            let p = h.plan(TYPE_NAME, &a.state, &changed).await;
            assert!(
                !p.planned_state.equals(&a.state),
                "the change is planned again"
            );
            let a = h
                .apply(TYPE_NAME, &a.state, &changed, &p.planned_state)
                .await;
            assert!(!a.diagnostics.has_errors(), "{:?}", a.diagnostics);
            assert!(cp.config_yaml().unwrap().contains("9.9.9.9"));

            let d = h.plan(TYPE_NAME, &a.state, &Value::Null).await;
            let r = h
                .apply(TYPE_NAME, &a.state, &Value::Null, &d.planned_state)
                .await;
            assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
            nothing_left(&emu).expect("destroy cleans up");
            fleet.shutdown().await;
            emu.shutdown().await;
        });
    }

    /// Drift: a worker VM deleted behind the provider's back and a machine configuration
    /// changed on the node both show as a planned update after refresh; applying it repairs
    /// both (same VM id, configuration re-applied), and the next plan is empty.
    #[test]
    fn drift_is_detected_and_repaired() {
        let rt = rt();
        rt.block_on(async {
            let fleet = TalosFleet::new(FleetOptions::default());
            let emu = PveEmulator::start(
                EmulatorConfig::builder()
                    .ip(Ipv4Addr::new(127, 40, 45, 1))
                    .build(),
            )
            .await
            .expect("PVE emulator");
            appliance::register(emu.appliances(), fleet.clone());
            let h = harness(&emu).await;
            let config = config(45, 450);
            let state = h
                .plan_and_apply(TYPE_NAME, &Value::Null, &config)
                .await
                .expect("create");

            // No drift: refresh keeps the state, the plan is empty.
            let r = h.read(TYPE_NAME, &state).await;
            assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
            assert!(r.state.equals(&state), "refresh changed the state");

            // 1. The worker's VM disappears.
            pve_delete_vm(&emu, 451).await;
            let r = h.read(TYPE_NAME, &state).await;
            assert!(r
                .state
                .get_path(&AttributePath::attr("nodes").then_key("w1"))
                .is_none_or(Value::is_null));
            let p = h.plan(TYPE_NAME, &r.state, &config).await;
            assert!(p.requires_replace.is_empty(), "{:?}", p.requires_replace);
            assert!(
                !p.planned_state.equals(&r.state),
                "the plan shows the missing node"
            );
            let a = h
                .apply(TYPE_NAME, &r.state, &config, &p.planned_state)
                .await;
            assert!(!a.diagnostics.has_errors(), "{:?}", a.diagnostics);
            assert!(
                emu.vm(451).is_some_and(|v| v.running),
                "w1 re-created as VM 451"
            );
            let state = a.state;

            // 2. The control plane's configuration is changed on the node.
            let cp = fleet
                .node_at(Ipv4Addr::new(127, 20, 45, 10))
                .expect("cp1 in the fleet");
            let cfg = state
                .get_path(&AttributePath::attr("machine_configurations").then_key("cp1"))
                .and_then(Value::as_str)
                .unwrap()
                .to_string();
            let cc = state.get_attr("client_configuration").unwrap();
            let creds = waddle_talos::api::Credentials::new(
                cc.get_attr("ca_certificate")
                    .and_then(Value::as_str)
                    .unwrap(),
                cc.get_attr("client_certificate")
                    .and_then(Value::as_str)
                    .unwrap(),
                cc.get_attr("client_key").and_then(Value::as_str).unwrap(),
            );
            let client = waddle_talos::api::TalosClient::connect(
                cp.endpoint().expect("cp1 endpoint"),
                &creds,
                &Default::default(),
            )
            .await
            .expect("mTLS to cp1");
            let changed = cfg.replace("1.1.1.1", "9.9.9.9");
            assert_ne!(changed, cfg);
            client
                .apply_configuration(&changed, waddle_talos::api::ApplyMode::Auto)
                .await
                .expect("out-of-band apply");
            let r = h.read(TYPE_NAME, &state).await;
            let seen = r
                .state
                .get_path(&AttributePath::attr("machine_configurations").then_key("cp1"))
                .and_then(Value::as_str)
                .unwrap();
            assert!(
                seen.contains("9.9.9.9"),
                "refresh records the node's configuration"
            );
            let p = h.plan(TYPE_NAME, &r.state, &config).await;
            assert!(
                !p.planned_state.equals(&r.state),
                "the drift is a planned change"
            );
            let a = h
                .apply(TYPE_NAME, &r.state, &config, &p.planned_state)
                .await;
            assert!(!a.diagnostics.has_errors(), "{:?}", a.diagnostics);
            let on_node = cp.config_yaml().expect("cp1 config");
            assert!(
                waddle_talos::config::same_config(&on_node, &cfg).unwrap(),
                "the configuration was re-applied"
            );
            let r = h.read(TYPE_NAME, &a.state).await;
            assert!(r.state.equals(&a.state), "no drift left");

            let d = h.plan(TYPE_NAME, &a.state, &Value::Null).await;
            let r = h
                .apply(TYPE_NAME, &a.state, &Value::Null, &d.planned_state)
                .await;
            assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
            nothing_left(&emu).expect("destroy cleans up");
            fleet.shutdown().await;
            emu.shutdown().await;
        });
    }
}
