use std::collections::BTreeMap;

use super::*;
use waddle_framework::testing::Harness;
use waddle_talos::{versions, SecretsBundle};

use crate::provider::{NoEnv, WaddleProvider};

const URL: &str = "https://factory.talos.dev/image/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba/v1.12.11/nocloud-amd64.qcow2";

pub(super) fn node(role: &str, address: &str, vmid: Option<u32>) -> NodeModel {
    NodeModel {
        role: role.into(),
        address: address.into(),
        gateway: Some("10.10.0.1".into()),
        proxmox: Some(PlacementModel {
            vmid,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn three_node() -> ClusterModel {
    ClusterModel {
        cluster_name: "waddle".into(),
        endpoint: "https://10.10.0.20:6443".into(),
        vip: Some("10.10.0.20".into()),
        image: Some(ImageModel {
            installer: None,
            disk_image_url: Some(URL.into()),
        }),
        nodes: Some(
            [
                (
                    "cp1".to_string(),
                    node("controlplane", "10.10.0.10/24", Some(110)),
                ),
                (
                    "cp2".to_string(),
                    node("controlplane", "10.10.0.11/24", Some(111)),
                ),
                (
                    "cp3".to_string(),
                    node("controlplane", "10.10.0.12/24", Some(112)),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    }
}

pub(super) fn config_value(m: &ClusterModel) -> Value {
    schema().from_typed(m).expect("model fits the schema")
}

pub(super) fn diag_paths(d: &Diagnostics, errors: bool) -> Vec<String> {
    d.iter()
        .filter(|x| x.is_error() == errors)
        .map(|x| {
            x.attribute
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default()
        })
        .collect()
}

/// One real bundle for all tests (RSA-4096 generation takes a moment).
pub(super) fn bundle() -> SecretsBundle {
    static B: std::sync::OnceLock<SecretsBundle> = std::sync::OnceLock::new();
    B.get_or_init(|| SecretsBundle::generate(&waddle_talos::SystemClock).unwrap())
        .clone()
}

pub(super) fn diff_paths(a: &Value, b: &Value, path: AttributePath, out: &mut Vec<String>) {
    match (a.as_entries(), b.as_entries()) {
        (Some(x), Some(y)) => {
            let keys: std::collections::BTreeSet<_> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let step = if matches!(a, Value::Object(_)) {
                    path.clone().then_attr(k.as_str())
                } else {
                    path.clone().then_key(k.as_str())
                };
                diff_paths(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    step,
                    out,
                );
            }
        }
        _ => {
            if !a.equals(b) {
                out.push(path.to_string());
            }
        }
    }
}

pub(super) async fn harness() -> Harness {
    let h = Harness::new(WaddleProvider::with_env(NoEnv));
    let mut cfg = crate::provider::schema().null_value();
    cfg.set_path(&AttributePath::attr("node"), Value::from("pve"));
    let d = h.configure(cfg).await;
    assert!(!d.has_errors(), "{d:?}");
    h
}

#[test]
fn schema_is_well_formed_and_matches_the_model() {
    let d = schema().check();
    assert!(d.is_empty(), "{d:?}");
    let full_node = NodeModel {
        role: "controlplane".into(),
        address: "10.10.0.10/24".into(),
        gateway: Some("10.10.0.1".into()),
        mac: Some("BC:24:11:00:00:01".into()),
        interface: Some("ens18".into()),
        install_disk: Some("/dev/sda".into()),
        hostname: Some("cp1".into()),
        node_labels: Some([("a".to_string(), "b".to_string())].into()),
        config_patches: Some(vec!["machine: {}".into()]),
        proxmox: Some(PlacementModel {
            node: Some("pve".into()),
            storage: Some("local-lvm".into()),
            image_storage: Some("local".into()),
            bridge: Some("vmbr0".into()),
            vmid: Some(110),
            cores: Some(3),
            memory: Some(8192),
            disk_size: Some(10),
        }),
        maintenance_address: Some("10.10.0.200".into()),
    };
    let sample = ClusterModel {
        id: Some("waddle".into()),
        cluster_name: "waddle".into(),
        endpoint: "https://10.10.0.20:6443".into(),
        vip: Some("10.10.0.20".into()),
        talos_version: Some("v1.12.11".into()),
        kubernetes_version: Some("1.35.0".into()),
        image: Some(ImageModel {
            installer: Some("factory.talos.dev/installer/x:v1.12.11".into()),
            disk_image_url: Some(URL.into()),
        }),
        cni: Some("none".into()),
        kube_proxy: Some(false),
        allow_scheduling_on_control_planes: Some(true),
        cert_sans: Some(vec!["k8s.example".into()]),
        nameservers: Some(vec!["1.1.1.1".into()]),
        inline_manifests: Some(vec![ManifestModel {
            name: "m".into(),
            contents: "a: b".into(),
        }]),
        disk_encryption: Some(true),
        secureboot: Some(true),
        discovery: Some(true),
        config_patches: Some(vec!["machine: {}".into()]),
        machine_secrets: Some("secrets".into()),
        machine_secrets_wo: Some("write-only".into()),
        machine_secrets_wo_version: Some(1),
        on_destroy: Some("graceful".into()),
        timeouts: Some(TimeoutsModel {
            create: Some("30m".into()),
            update: Some("30m".into()),
            delete: Some("10m".into()),
        }),
        nodes: Some([("cp1".to_string(), full_node)].into()),
        talosconfig: Some("t".into()),
        kubeconfig: Some("k".into()),
        client_configuration: Some(ClientConfigModel {
            ca_certificate: "ca".into(),
            client_certificate: "crt".into(),
            client_key: "key".into(),
        }),
        machine_configurations: Some([("cp1".to_string(), "cfg".to_string())].into()),
        machine_configurations_masked: Some([("cp1".to_string(), "masked".to_string())].into()),
        node_addresses: Some([("cp1".to_string(), "10.10.0.10".to_string())].into()),
        proxmox_vms: Some(
            [(
                "cp1".to_string(),
                VmRef {
                    node: "pve".into(),
                    vmid: 110,
                },
            )]
            .into(),
        ),
        proxmox_images: Some(vec![ImageRef {
            node: "pve".into(),
            volume: "local:import/x.qcow2".into(),
        }]),
        bootstrapped: Some(true),
        node_status: Some(
            [(
                "cp1".to_string(),
                NodeStatus {
                    action: Some("created".into()),
                    mac: Some("BC:24:11:00:00:01".into()),
                    cores: Some(3),
                    memory: Some(8192),
                    disk_size: Some(10),
                },
            )]
            .into(),
        ),
        upgrade: Some(upgrade::UpgradeModel {
            parallelism: Some(2),
            preserve: Some(true),
            stage: Some(false),
            reboot_mode: Some("powercycle".into()),
            allow_downgrade: Some(false),
            drain: Some(true),
        }),
        node_versions: Some(
            [(
                "cp1".to_string(),
                upgrade::NodeVersionModel {
                    talos_version: Some("v1.12.11".into()),
                    installer: Some("factory.talos.dev/installer/x:v1.12.11".into()),
                    kubernetes_version: Some("1.35.0".into()),
                },
            )]
            .into(),
        ),
        etcd_backup: Some(super::etcd::BackupModel {
            directory: "backups".into(),
            when: Some(vec!["every_apply".into()]),
            keep: Some(3),
        }),
        etcd_restore: Some(super::etcd::RestoreModel {
            snapshot: "backups/x.db".into(),
            generation: 2,
        }),
        etcd_snapshots: Some(vec![super::etcd::SnapshotRecord {
            path: "backups/x.db".into(),
            sha256: "ab".into(),
            size: 544,
            reason: "every_apply".into(),
            node: "cp1".into(),
            taken_at: "2026-12-03T13:40:56Z".into(),
        }]),
        config_contract: Some("v1.12".into()),
    };
    assert_roundtrip(&schema(), &sample);
}

#[test]
fn sensitive_attributes() {
    let s = schema();
    for a in [
        "kubeconfig",
        "talosconfig",
        "machine_secrets",
        "machine_configurations",
    ] {
        assert!(
            s.attribute_at(&AttributePath::attr(a)).unwrap().sensitive,
            "{a} must be sensitive"
        );
    }
    let key = AttributePath::attr("client_configuration").then_attr("client_key");
    assert!(s.attribute_at(&key).unwrap().sensitive);
    let crt = AttributePath::attr("client_configuration").then_attr("client_certificate");
    assert!(!s.attribute_at(&crt).unwrap().sensitive);
    // Descriptions state defaults.
    for a in [
        "talos_version",
        "cni",
        "on_destroy",
        "nameservers",
        "kube_proxy",
    ] {
        let d = &s.attribute_at(&AttributePath::attr(a)).unwrap().description;
        assert!(d.contains("Defaults to"), "{a}: {d}");
    }
}

#[test]
fn valid_three_node_config_has_no_findings() {
    let mut d = Diagnostics::new();
    validate_value(&config_value(&three_node()), &mut d);
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn validation_errors_carry_attribute_paths() {
    // duplicate address, unknown role, bad cni, bad on_destroy, bad timeout
    let mut m = three_node();
    let nodes = m.nodes.as_mut().unwrap();
    nodes.get_mut("cp2").unwrap().address = "10.10.0.10/24".into();
    m.cni = Some("calico".into());
    m.on_destroy = Some("maybe".into());
    m.timeouts = Some(TimeoutsModel {
        create: Some("soon".into()),
        ..Default::default()
    });
    let mut d = Diagnostics::new();
    validate_value(&config_value(&m), &mut d);
    let errs = diag_paths(&d, true);
    for want in ["cni", "on_destroy", "timeouts.create"] {
        assert!(errs.iter().any(|p| p == want), "{want} not in {errs:?}");
    }
    // Enumerations are wrong, so the spec check may be skipped or not; fix them and look
    // at the duplicate address alone.
    m.cni = None;
    m.on_destroy = None;
    m.timeouts = None;
    let mut d = Diagnostics::new();
    validate_value(&config_value(&m), &mut d);
    let errs = diag_paths(&d, true);
    assert!(
        errs.iter()
            .any(|p| p.contains("nodes") && p.contains("cp") && p.contains("address")),
        "{errs:?}"
    );
}

#[test]
fn even_control_planes_warn_and_no_control_plane_fails() {
    let mut m = three_node();
    m.nodes.as_mut().unwrap().remove("cp3");
    let mut d = Diagnostics::new();
    validate_value(&config_value(&m), &mut d);
    assert!(!d.has_errors(), "{d:?}");
    assert_eq!(diag_paths(&d, false), vec!["nodes".to_string()]);

    let mut m = three_node();
    for n in m.nodes.as_mut().unwrap().values_mut() {
        n.role = "worker".into();
    }
    let mut d = Diagnostics::new();
    validate_value(&config_value(&m), &mut d);
    assert!(diag_paths(&d, true).contains(&"nodes".to_string()), "{d:?}");

    let mut m = three_node();
    m.nodes.as_mut().unwrap().get_mut("cp1").unwrap().role = "boss".into();
    let mut d = Diagnostics::new();
    validate_value(&config_value(&m), &mut d);
    assert!(
        diag_paths(&d, true).iter().any(|p| p.ends_with(".role")),
        "{d:?}"
    );
}

#[test]
fn bad_versions_patches_vip_and_missing_image_are_refused() {
    let mut m = three_node();
    m.talos_version = Some("v0.1.0".into());
    m.kubernetes_version = Some("9.99.0".into());
    let mut d = Diagnostics::new();
    validate_value(&config_value(&m), &mut d);
    let errs = diag_paths(&d, true);
    assert!(errs.contains(&"talos_version".to_string()), "{errs:?}");
    assert!(errs.contains(&"kubernetes_version".to_string()), "{errs:?}");

    let mut m = three_node();
    m.nodes
        .as_mut()
        .unwrap()
        .get_mut("cp2")
        .unwrap()
        .config_patches = Some(vec!["machine: [unclosed".into()]);
    let mut d = Diagnostics::new();
    validate_value(&config_value(&m), &mut d);
    let errs = diag_paths(&d, true);
    assert!(
        errs.iter()
            .any(|p| p.contains("cp2") && p.contains("config_patches")),
        "{errs:?}"
    );

    let mut m = three_node();
    m.vip = Some("192.168.99.20".into());
    let mut d = Diagnostics::new();
    validate_value(&config_value(&m), &mut d);
    assert!(diag_paths(&d, true).contains(&"vip".to_string()), "{d:?}");

    let mut m = three_node();
    m.image = None;
    let mut d = Diagnostics::new();
    validate_value(&config_value(&m), &mut d);
    assert!(
        diag_paths(&d, true).contains(&"image.disk_image_url".to_string()),
        "{d:?}"
    );

    let mut m = three_node();
    m.nodes
        .as_mut()
        .unwrap()
        .get_mut("cp3")
        .unwrap()
        .proxmox
        .as_mut()
        .unwrap()
        .vmid = Some(110);
    let mut d = Diagnostics::new();
    validate_value(&config_value(&m), &mut d);
    assert!(
        diag_paths(&d, true).contains(&"nodes[\"cp3\"].proxmox.vmid".to_string()),
        "{d:?}"
    );
}

#[test]
fn unknown_values_are_tolerated() {
    let mut v = config_value(&three_node());
    v.set_path(
        &AttributePath::attr("nodes")
            .then_key("cp2")
            .then_attr("address"),
        Value::unknown(),
    );
    v.set_path(&AttributePath::attr("vip"), Value::unknown());
    let mut d = Diagnostics::new();
    validate_value(&v, &mut d);
    assert!(d.is_empty(), "{d:?}");
    // A known bad value elsewhere is still reported.
    v.set_path(&AttributePath::attr("cni"), Value::from("weave"));
    let mut d = Diagnostics::new();
    validate_value(&v, &mut d);
    assert_eq!(diag_paths(&d, true), vec!["cni".to_string()]);
}

#[test]
fn helpers() {
    assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
    assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert!(parse_duration("30").is_err());
    assert!(parse_duration("3x").is_err());

    let a = generated_mac("waddle", "cp1");
    assert_eq!(a, generated_mac("waddle", "cp1"));
    assert_ne!(a, generated_mac("waddle", "cp2"));
    assert_ne!(a, generated_mac("other", "cp1"));
    assert!(a.starts_with("BC:24:11:") && a.len() == 17, "{a}");
    assert!(waddle_proxmox::NetSpec {
        mac: Some(a),
        ..waddle_proxmox::NetSpec::virtio(0, "vmbr0")
    }
    .render()
    .is_ok());

    let (f, c) = image_file_name(URL).unwrap();
    assert_eq!(f, "talos-376567988ad3-v1.12.11-nocloud-amd64.qcow2");
    assert_eq!(c, None);
    let (f, c) = image_file_name("https://example.test/img/disk.raw.zst").unwrap();
    assert_eq!((f.as_str(), c.as_deref()), ("disk.raw", Some("zst")));
    assert!(image_file_name("https://example.test/metal-amd64.raw.xz").is_err());
    assert!(image_file_name("ftp://example.test/a.qcow2").is_err());

    let p = waddle_talos::AttrPath::root("installer_image");
    assert_eq!(to_attr_path(&p).to_string(), "image.installer");
    let p = waddle_talos::AttrPath::node("cp1")
        .attr("config_patches")
        .index(2);
    assert_eq!(
        to_attr_path(&p),
        AttributePath::attr("nodes")
            .then_key("cp1")
            .then_attr("config_patches")
            .then_index(2)
    );
}

#[test]
fn vm_spec_for_secureboot_and_encryption() {
    let mut m = three_node();
    let n = m.nodes().get("cp1").cloned().unwrap();
    let mut n = n;
    n.mac = Some("BC:24:11:AA:BB:CC".into());
    n.proxmox.as_mut().unwrap().node = Some("pve".into());
    let spec = ops::vm_spec(&m, "cp1", &n, "local:import/talos.qcow2").unwrap();
    assert_eq!(spec.bios, waddle_proxmox::Bios::Seabios);
    assert!(spec.tpmstate.is_none());
    let params = spec.to_params(110).unwrap().to_json();
    assert_eq!(params["agent"], "1");
    assert!(params["net0"]
        .as_str()
        .unwrap()
        .starts_with("virtio=BC:24:11:AA:BB:CC,bridge=vmbr0"));
    assert_eq!(
        params["scsi0"]
            .as_str()
            .unwrap()
            .split(',')
            .take(2)
            .collect::<Vec<_>>(),
        vec!["local-lvm:0", "import-from=local:import/talos.qcow2"]
    );
    assert_eq!(params["memory"], "4096");

    m.secureboot = Some(true);
    m.disk_encryption = Some(true);
    let spec = ops::vm_spec(&m, "cp1", &n, "local:import/talos.qcow2").unwrap();
    assert_eq!(spec.bios, waddle_proxmox::Bios::Ovmf);
    let params = spec.to_params(110).unwrap().to_json();
    assert!(params["efidisk0"]
        .as_str()
        .unwrap()
        .contains("pre-enrolled-keys=0"));
    assert!(params["tpmstate0"].as_str().unwrap().contains("v2.0"));
}

#[tokio::test]
async fn create_plan_generates_macs_and_defers_secrets() {
    let h = harness().await;
    let config = config_value(&three_node());
    let r = h.plan(TYPE_NAME, &Value::Null, &config).await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    let p = &r.planned_state;
    assert_eq!(p.get_attr("id").and_then(Value::as_str), Some("waddle"));
    // Nested attributes are planned exactly as configured (Terraform 1.0 requires it).
    assert!(p
        .get_attr("nodes")
        .unwrap()
        .equals(config.get_attr("nodes").unwrap()));
    assert!(p
        .get_attr("image")
        .unwrap()
        .equals(config.get_attr("image").unwrap()));
    assert!(p.get_attr("timeouts").unwrap().is_null());
    for a in [
        "machine_secrets",
        "machine_configurations",
        "kubeconfig",
        "talosconfig",
    ] {
        assert!(p.get_attr(a).unwrap().is_unknown(), "{a}");
    }
    assert_eq!(
        p.get_path(&AttributePath::attr("node_addresses").then_key("cp2"))
            .and_then(Value::as_str),
        Some("10.10.0.11")
    );
}

/// A state as create would leave it (without talking to anything).
pub(super) fn applied_state(m: &ClusterModel, bundle: &SecretsBundle) -> ClusterModel {
    let mut s = m.clone();
    s.id = Some(m.cluster_name.clone());
    s.machine_secrets = Some(bundle.to_yaml().unwrap());
    s.talos_version = Some(versions::DEFAULT_TALOS_VERSION.into());
    s.kubernetes_version = Some(versions::DEFAULT_KUBERNETES_VERSION.into());
    s.cni = Some("none".into());
    s.kube_proxy = Some(false);
    s.allow_scheduling_on_control_planes = Some(true);
    s.nameservers = Some(vec!["1.1.1.1".into(), "8.8.8.8".into()]);
    s.disk_encryption = Some(false);
    s.secureboot = Some(false);
    s.discovery = Some(true);
    s.on_destroy = Some("graceful".into());
    s.config_contract = Some(super::contract::of_model(&s).as_str().into());
    s.machine_configurations = Some(super::inputs::render_configs(&s, bundle).unwrap());
    s.machine_configurations_masked = s.machine_configurations.as_ref().map(wo::masked);
    s.node_addresses = Some(
        s.nodes()
            .iter()
            .map(|(k, n)| (k.clone(), node_ip(n).to_string()))
            .collect(),
    );
    s.talosconfig = Some("talosconfig".into());
    s.kubeconfig = Some("kubeconfig".into());
    s.client_configuration = Some(ClientConfigModel {
        ca_certificate: bundle.os_ca.crt.clone(),
        client_certificate: "crt".into(),
        client_key: "key".into(),
    });
    s.proxmox_vms = Some(
        s.nodes()
            .iter()
            .map(|(k, n)| {
                (
                    k.clone(),
                    VmRef {
                        node: "pve".into(),
                        vmid: n.proxmox.as_ref().unwrap().vmid.unwrap(),
                    },
                )
            })
            .collect(),
    );
    s.proxmox_images = Some(vec![]);
    s.bootstrapped = Some(true);
    s.node_status = Some(changes::node_status(&s, None, &BTreeMap::new()));
    s
}

#[tokio::test]
async fn update_plans_are_empty_when_nothing_changed_and_precise_otherwise() {
    let h = harness().await;
    let bundle = bundle();
    let config_model = three_node();
    let state = config_value(&applied_state(&config_model, &bundle));
    let config = config_value(&config_model);

    // No change: the planned state equals the prior state.
    let r = h.plan(TYPE_NAME, &state, &config).await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert!(r.requires_replace.is_empty(), "{:?}", r.requires_replace);
    let mut diff = Vec::new();
    diff_paths(&state, &r.planned_state, AttributePath::root(), &mut diff);
    assert!(diff.is_empty(), "unexpected diff at {diff:?}");

    // Add a worker: in place, secrets and kubeconfig kept, configs known, VMs unknown.
    let mut with_worker = config_model.clone();
    with_worker
        .nodes
        .as_mut()
        .unwrap()
        .insert("w1".into(), node("worker", "10.10.0.13/24", None));
    let r = h.plan(TYPE_NAME, &state, &config_value(&with_worker)).await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert!(r.requires_replace.is_empty(), "{:?}", r.requires_replace);
    let p = &r.planned_state;
    assert!(p
        .get_attr("machine_secrets")
        .unwrap()
        .equals(state.get_attr("machine_secrets").unwrap()));
    assert_eq!(
        p.get_attr("kubeconfig").and_then(Value::as_str),
        Some("kubeconfig")
    );
    let cfgs = p.get_attr("machine_configurations").unwrap();
    assert!(cfgs.is_wholly_known());
    assert!(cfgs
        .get_step(&waddle_framework::PathStep::Key("cp1".into()))
        .unwrap()
        .equals(
            state
                .get_path(&AttributePath::attr("machine_configurations").then_key("cp1"))
                .unwrap()
        ));
    // Existing nodes keep their known VM ids and the cluster stays bootstrapped: adding a
    // worker does not read like a wipe. The new worker's VM id is not known yet.
    let vms = p.get_attr("proxmox_vms").unwrap();
    for (k, id) in [("cp1", 110), ("cp2", 111), ("cp3", 112)] {
        let vm = vms
            .get_step(&waddle_framework::PathStep::Key(k.into()))
            .unwrap();
        assert_eq!(vm.get_attr("vmid").and_then(Value::as_i64), Some(id), "{k}");
        assert_eq!(
            vm.get_attr("node").and_then(Value::as_str),
            Some("pve"),
            "{k}"
        );
    }
    let w1_vm = vms
        .get_step(&waddle_framework::PathStep::Key("w1".into()))
        .unwrap();
    assert!(w1_vm.get_attr("vmid").unwrap().is_unknown());
    assert_eq!(
        p.get_attr("bootstrapped").and_then(Value::as_bool),
        Some(true)
    );
    // The new node's effective values are in the plan; the others keep theirs.
    let status = |k: &str, a: &str| {
        p.get_path(&AttributePath::attr("node_status").then_key(k).then_attr(a))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(status("w1", "action").as_str(), Some("created"));
    assert_eq!(
        status("w1", "mac").as_str(),
        Some(generated_mac("waddle", "w1").as_str())
    );
    assert_eq!(status("w1", "cores").as_i64(), Some(defaults::CORES));
    assert_eq!(status("w1", "memory").as_i64(), Some(defaults::MEMORY_MIB));
    assert!(state
        .get_path(&AttributePath::attr("node_status").then_key("cp1"))
        .unwrap()
        .equals(
            &p.get_path(&AttributePath::attr("node_status").then_key("cp1"))
                .unwrap()
                .clone()
        ));
    // The generated MAC of a Proxmox node without one selects its link.
    let mac = generated_mac("waddle", "w1").to_ascii_lowercase();
    let w1 = cfgs
        .get_step(&waddle_framework::PathStep::Key("w1".into()))
        .and_then(Value::as_str)
        .unwrap();
    assert!(
        w1.to_ascii_lowercase().contains(&mac),
        "{mac} not in the w1 config"
    );

    // A config change (nameservers) shows as a configuration diff, not a replacement.
    let mut ns = config_model.clone();
    ns.nameservers = Some(vec!["9.9.9.9".into()]);
    let r = h.plan(TYPE_NAME, &state, &config_value(&ns)).await;
    assert!(r.requires_replace.is_empty());
    let cfg = r
        .planned_state
        .get_path(&AttributePath::attr("machine_configurations").then_key("cp1"))
        .and_then(Value::as_str)
        .unwrap();
    assert!(cfg.contains("9.9.9.9"));

    // A new cluster name replaces the cluster.
    let mut renamed = config_model.clone();
    renamed.cluster_name = "other".into();
    let r = h.plan(TYPE_NAME, &state, &config_value(&renamed)).await;
    assert_eq!(
        r.requires_replace,
        vec![AttributePath::attr("cluster_name")]
    );
}

#[tokio::test]
async fn drift_in_state_shows_as_a_plan_change() {
    let h = harness().await;
    let bundle = bundle();
    let config_model = three_node();
    let mut drifted = applied_state(&config_model, &bundle);
    // read() records what the node runs when it differs
    drifted
        .machine_configurations
        .as_mut()
        .unwrap()
        .insert("cp2".into(), "version: v1alpha1\n".into());
    // read() drops a node whose VM is gone
    drifted.nodes.as_mut().unwrap().remove("cp3");
    drifted.proxmox_vms.as_mut().unwrap().remove("cp3");
    let state = config_value(&drifted);
    let r = h
        .plan(TYPE_NAME, &state, &config_value(&config_model))
        .await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert!(r.requires_replace.is_empty());
    let p = &r.planned_state;
    assert!(!p.equals(&state));
    let cfg = p
        .get_path(&AttributePath::attr("machine_configurations").then_key("cp2"))
        .and_then(Value::as_str)
        .unwrap();
    assert!(
        cfg.contains("clusterName"),
        "the expected config is planned"
    );
    assert!(p
        .get_path(&AttributePath::attr("nodes").then_key("cp3"))
        .is_some_and(|v| !v.is_null()));
    // cp3's VM id comes back from the configuration.
    assert_eq!(
        p.get_path(
            &AttributePath::attr("nodes")
                .then_key("cp3")
                .then_attr("proxmox")
                .then_attr("vmid")
        )
        .and_then(Value::as_i64),
        Some(112)
    );
}

#[test]
fn import_reads_a_secrets_file() {
    let dir = std::env::temp_dir().join(format!("waddle-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("secrets.yaml");
    let bundle = bundle();
    std::fs::write(&path, bundle.to_yaml().unwrap()).unwrap();
    let mut d = Diagnostics::new();
    let v = ops::import(&format!("waddle:{}", path.display()), &mut d).unwrap();
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(v.get_attr("id").and_then(Value::as_str), Some("waddle"));
    let imported = v.get_attr("machine_secrets").unwrap().as_str().unwrap();
    assert_eq!(SecretsBundle::from_yaml(imported).unwrap(), bundle);
    assert_eq!(
        v.get_attr("bootstrapped").and_then(Value::as_bool),
        Some(true)
    );
    // A file that is not a secrets bundle is refused.
    std::fs::write(&path, "cluster: {}\n").unwrap();
    let mut d = Diagnostics::new();
    assert!(ops::import(&format!("waddle:{}", path.display()), &mut d).is_none());
    assert!(d.has_errors());
    let mut d = Diagnostics::new();
    assert!(ops::import("no-colon", &mut d).is_none());
    assert!(d
        .errors()
        .next()
        .unwrap()
        .detail
        .contains("<cluster_name>:<path"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn registry_example_file_matches_the_constant() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/resources/waddle_talos_cluster/resource.tf");
    let file = std::fs::read_to_string(&path).expect("example file");
    assert_eq!(file, EXAMPLE, "{} differs from EXAMPLE", path.display());
}

/// `moved` from the siderolabs provider's `talos_machine_secrets`: the secrets move in, and the
/// configured cluster name is set in place (a replacement would drop them).
#[tokio::test]
async fn moved_from_talos_machine_secrets_keeps_the_secrets_and_plans_in_place() {
    let h = harness().await;
    let b = bundle();
    let v0 = serde_json::json!({ "id": "x", "talos_version": "v1.5", "machine_secrets": b.to_yaml().unwrap() });
    let moved = h
        .move_state(
            TYPE_NAME,
            "registry.terraform.io/siderolabs/talos",
            "talos_machine_secrets",
            0,
            &v0,
        )
        .await;
    assert!(!moved.diagnostics.has_errors(), "{:?}", moved.diagnostics);
    let secrets = |v: &Value| {
        v.get_attr("machine_secrets")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    assert_eq!(secrets(&moved.state), Some(b.to_yaml().unwrap()));
    let r = h
        .plan(TYPE_NAME, &moved.state, &config_value(&three_node()))
        .await;
    assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
    assert!(r.requires_replace.is_empty(), "{:?}", r.requires_replace);
    assert_eq!(secrets(&r.planned_state), Some(b.to_yaml().unwrap()));
    assert_eq!(
        r.planned_state
            .get_attr("cluster_name")
            .and_then(Value::as_str),
        Some("waddle")
    );
    // Anything else is not taken, and the framework says so.
    let other = h
        .move_state(
            TYPE_NAME,
            "registry.terraform.io/bpg/proxmox",
            "proxmox_virtual_environment_vm",
            0,
            &v0,
        )
        .await;
    assert!(format!("{:?}", other.diagnostics).contains("does not support moving"));
}

/// A state with every attribute set (secrets are placeholders, not a bundle).
fn golden_sample() -> ClusterModel {
    let mut m = three_node();
    m.id = Some("waddle".into());
    m.talos_version = Some("v1.12.11".into());
    m.kubernetes_version = Some("1.35.2".into());
    m.image = Some(ImageModel {
        installer: Some("factory.talos.dev/installer/abc:v1.12.11".into()),
        disk_image_url: Some(URL.into()),
    });
    m.cni = Some("none".into());
    m.kube_proxy = Some(false);
    m.allow_scheduling_on_control_planes = Some(true);
    m.cert_sans = Some(vec!["k8s.example.org".into()]);
    m.nameservers = Some(vec!["10.10.0.1".into()]);
    m.inline_manifests = Some(vec![ManifestModel {
        name: "ns".into(),
        contents: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n".into(),
    }]);
    m.disk_encryption = Some(false);
    m.secureboot = Some(false);
    m.discovery = Some(true);
    m.config_patches = Some(vec!["machine:\n  sysctls: {}\n".into()]);
    m.machine_secrets = Some("<secrets bundle>".into());
    m.machine_secrets_wo_version = Some(1);
    m.on_destroy = Some("graceful".into());
    m.timeouts = Some(TimeoutsModel {
        create: Some("30m".into()),
        update: Some("45m".into()),
        delete: None,
    });
    if let Some(n) = m.nodes.as_mut().and_then(|n| n.get_mut("cp1")) {
        n.mac = Some("BC:24:11:00:00:01".into());
        n.interface = None;
        n.install_disk = Some("/dev/sda".into());
        n.hostname = Some("cp-1".into());
        n.node_labels = Some(BTreeMap::from([("zone".into(), "a".into())]));
        n.config_patches = Some(vec!["machine: {}\n".into()]);
        n.proxmox = Some(PlacementModel {
            node: Some("pve".into()),
            storage: Some("local-lvm".into()),
            image_storage: Some("local".into()),
            bridge: Some("vmbr1".into()),
            vmid: Some(110),
            cores: Some(3),
            memory: Some(8192),
            disk_size: Some(20),
        });
    }
    m.talosconfig = Some("<talosconfig>".into());
    m.kubeconfig = Some("<kubeconfig>".into());
    m.client_configuration = Some(ClientConfigModel {
        ca_certificate: "<ca>".into(),
        client_certificate: "<crt>".into(),
        client_key: "<key>".into(),
    });
    m.machine_configurations = Some(BTreeMap::from([("cp1".into(), "<config>".into())]));
    m.machine_configurations_masked = Some(BTreeMap::from([(
        "cp1".into(),
        "version: v1alpha1\nmachine:\n  token: (masked)\n".into(),
    )]));
    m.node_addresses = Some(BTreeMap::from([("cp1".into(), "10.10.0.10".into())]));
    m.proxmox_vms = Some(BTreeMap::from([(
        "cp1".into(),
        VmRef {
            node: "pve".into(),
            vmid: 110,
        },
    )]));
    m.proxmox_images = Some(vec![ImageRef {
        node: "pve".into(),
        volume: "local:import/talos.qcow2".into(),
    }]);
    m.bootstrapped = Some(true);
    m.node_status = Some(BTreeMap::from([(
        "cp1".into(),
        NodeStatus {
            action: Some("existing".into()),
            mac: Some("BC:24:11:00:00:01".into()),
            cores: Some(3),
            memory: Some(8192),
            disk_size: Some(20),
        },
    )]));
    m.upgrade = Some(upgrade::UpgradeModel {
        parallelism: Some(2),
        preserve: Some(true),
        stage: Some(false),
        reboot_mode: Some("default".into()),
        allow_downgrade: Some(false),
        drain: Some(false),
    });
    m.node_versions = Some(BTreeMap::from([(
        "cp1".into(),
        upgrade::NodeVersionModel {
            talos_version: Some("v1.12.11".into()),
            installer: Some("factory.talos.dev/installer/abc:v1.12.11".into()),
            kubernetes_version: Some("1.35.2".into()),
        },
    )]));
    m.etcd_backup = Some(etcd::BackupModel {
        directory: "backups".into(),
        when: Some(vec!["before_upgrade".into()]),
        keep: Some(5),
    });
    m.etcd_restore = Some(etcd::RestoreModel {
        snapshot: "backups/x.db".into(),
        generation: 1,
    });
    m.etcd_snapshots = Some(vec![etcd::SnapshotRecord {
        path: "backups/x.db".into(),
        sha256: "ab".into(),
        size: 3,
        reason: "before_upgrade".into(),
        node: "cp1".into(),
        taken_at: "2026-01-01T00:00:00Z".into(),
    }]);
    m
}

#[test]
fn golden_v1_state_reads_back() {
    assert_eq!(schema().version, 1);
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/waddle_talos_cluster.v1.json");
    let mut sample = golden_sample();
    sample.config_contract = Some("v1.12".into());
    waddle_framework::testing::assert_golden_state(&schema(), &golden, &sample);
}

/// A v0 state (before `config_contract`) upgrades to the contract it was rendered for.
#[test]
fn golden_v0_state_upgrades_with_its_contract() {
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/waddle_talos_cluster.v0.json");
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden).unwrap()).unwrap();
    assert!(raw.get("config_contract").is_none());
    let mut diags = Diagnostics::new();
    let up = super::contract::upgrade_v0(raw, &mut diags).expect("upgraded");
    assert!(!diags.has_errors(), "{diags:?}");
    assert_eq!(up["config_contract"], "v1.12");
    let v = waddle_framework::codec::decode_json(&up, &schema().implied_type(), Default::default())
        .expect("the upgraded state decodes with the v1 schema");
    let m: ClusterModel = v.to_typed().expect("fits the model");
    let mut want = golden_sample();
    want.config_contract = Some("v1.12".into());
    assert_eq!(m, want);
}
