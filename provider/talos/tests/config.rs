mod common;

use common::{bundle, original_spec, schema_errors, spec_with_worker};
use waddle_talos::{render_node_config, Cni, InlineManifest, SecretsBundle};

fn docs(text: &str) -> Vec<serde_json::Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn find<'a>(docs: &'a [serde_json::Value], kind: Option<&str>) -> &'a serde_json::Value {
    docs.iter()
        .find(|d| d.get("kind").and_then(|k| k.as_str()) == kind)
        .unwrap_or_else(|| panic!("no {kind:?} document"))
}

fn assert_schema_valid(cfg: &str) {
    let errs = schema_errors(cfg);
    assert!(
        errs.is_empty(),
        "schema errors:\n{}\n\n{cfg}",
        errs.join("\n")
    );
}

#[test]
fn controlplane_config_is_schema_valid_and_complete() {
    let spec = original_spec();
    let cfg = render_node_config(&spec, bundle(), "cp2").unwrap();
    assert_schema_valid(&cfg);
    let d = docs(&cfg);
    let v1 = find(&d, None);
    assert_eq!(v1["version"], "v1alpha1");
    assert!(v1.get("persist").is_none());
    assert_eq!(v1["machine"]["type"], "controlplane");
    assert!(v1["machine"]["network"].get("hostname").is_none());
    assert!(v1["machine"].get("network").is_none());
    assert_eq!(v1["machine"]["install"]["wipe"], false);
    assert_eq!(v1["machine"]["install"]["disk"], "/dev/sda");
    assert!(v1["machine"]["install"]["image"]
        .as_str()
        .unwrap()
        .starts_with("factory.talos.dev/installer/"));
    assert_eq!(
        v1["machine"]["kubelet"]["image"],
        "ghcr.io/siderolabs/kubelet:v1.35.0"
    );
    assert_eq!(
        v1["cluster"]["apiServer"]["image"],
        "registry.k8s.io/kube-apiserver:v1.35.0"
    );
    assert_eq!(v1["cluster"]["network"]["cni"]["name"], "none");
    assert_eq!(v1["cluster"]["proxy"]["disabled"], true);
    assert_eq!(v1["cluster"]["allowSchedulingOnControlPlanes"], true);
    assert_eq!(
        v1["cluster"]["controlPlane"]["endpoint"],
        "https://10.10.0.20:6443"
    );
    let sans: Vec<&str> = v1["cluster"]["apiServer"]["certSANs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for want in ["10.10.0.20", "10.10.0.10", "10.10.0.11", "10.10.0.12"] {
        assert!(sans.contains(&want), "{want} not in {sans:?}");
    }
    // Control planes hold every CA key.
    assert!(!v1["machine"]["ca"]["key"].as_str().unwrap().is_empty());
    assert!(!v1["cluster"]["etcd"]["ca"]["key"]
        .as_str()
        .unwrap()
        .is_empty());
    assert!(v1["cluster"]["serviceAccount"]["key"].is_string());
    assert_eq!(
        v1["cluster"]["secretboxEncryptionSecret"],
        bundle().secretbox_encryption_secret.clone().unwrap()
    );
    assert_eq!(v1["machine"]["token"], bundle().trustd_token);
    assert_eq!(v1["cluster"]["token"], bundle().bootstrap_token);
    assert_eq!(v1["cluster"]["id"], bundle().cluster_id);

    let h = find(&d, Some("HostnameConfig"));
    assert_eq!(h["hostname"], "cp2");
    assert!(h.get("auto").is_none());
    let alias = find(&d, Some("LinkAliasConfig"));
    assert_eq!(
        alias["selector"]["match"],
        "mac(link.permanent_addr) == \"bc:24:11:00:00:0b\""
    );
    let link = find(&d, Some("LinkConfig"));
    assert_eq!(link["name"], alias["name"]);
    assert_eq!(link["addresses"][0]["address"], "10.10.0.11/24");
    assert_eq!(link["routes"][0]["gateway"], "10.10.0.1");
    let vip = find(&d, Some("Layer2VIPConfig"));
    assert_eq!(vip["name"], "10.10.0.20");
    assert_eq!(vip["link"], link["name"]);
    let r = find(&d, Some("ResolverConfig"));
    assert_eq!(
        r["nameservers"],
        serde_json::json!([{"address": "1.1.1.1"}, {"address": "8.8.8.8"}])
    );
    assert!(!d
        .iter()
        .any(|x| x.get("kind") == Some(&serde_json::json!("VolumeConfig"))));
}

#[test]
fn worker_config_is_schema_valid_and_holds_no_ca_keys() {
    let spec = spec_with_worker();
    let cfg = render_node_config(&spec, bundle(), "worker1").unwrap();
    assert_schema_valid(&cfg);
    let d = docs(&cfg);
    let v1 = find(&d, None);
    assert_eq!(v1["machine"]["type"], "worker");
    assert_eq!(v1["machine"]["ca"]["key"], "");
    assert!(v1["machine"]["ca"]["crt"].as_str().unwrap().len() > 100);
    assert_eq!(v1["cluster"]["ca"]["key"], "");
    for absent in [
        "etcd",
        "aggregatorCA",
        "serviceAccount",
        "secretboxEncryptionSecret",
        "apiServer",
        "inlineManifests",
    ] {
        assert!(v1["cluster"].get(absent).is_none(), "{absent} on a worker");
    }
    assert!(!cfg.contains("PRIVATE KEY"));
    use base64::Engine as _;
    assert!(!cfg.contains(&base64::engine::general_purpose::STANDARD.encode(&bundle().os_ca.key)));
    // No VIP on workers; link by interface name, no alias.
    assert!(!d
        .iter()
        .any(|x| x.get("kind") == Some(&serde_json::json!("Layer2VIPConfig"))));
    assert!(!d
        .iter()
        .any(|x| x.get("kind") == Some(&serde_json::json!("LinkAliasConfig"))));
    assert_eq!(find(&d, Some("LinkConfig"))["name"], "ens18");
}

#[test]
fn disk_encryption_documents_are_schema_valid() {
    let mut spec = spec_with_worker();
    spec.disk_encryption = true;
    spec.secureboot = true;
    for node in ["cp1", "worker1"] {
        let cfg = render_node_config(&spec, bundle(), node).unwrap();
        assert_schema_valid(&cfg);
        let d = docs(&cfg);
        let vols: Vec<&serde_json::Value> =
            d.iter().filter(|x| x["kind"] == "VolumeConfig").collect();
        let names: Vec<&str> = vols.iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["STATE", "EPHEMERAL"]);
        for v in vols {
            assert_eq!(v["encryption"]["provider"], "luks2");
            assert_eq!(
                v["encryption"]["keys"][0]["tpm"]["checkSecurebootStatusOnEnroll"],
                true
            );
        }
    }
}

#[test]
fn options_and_patches_render_schema_valid_configs() {
    let mut spec = spec_with_worker();
    spec.cni = Cni::Flannel;
    spec.kube_proxy = true;
    spec.allow_scheduling_on_control_planes = false;
    spec.cert_sans = vec!["k8s.waddle.social".into()];
    spec.inline_manifests = vec![InlineManifest {
        name: "cilium".into(),
        contents: "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: cilium\n".into(),
    }];
    spec.config_patches = vec!["machine:\n  sysctls:\n    vm.nr_hugepages: \"128\"\n".into()];
    let cp1 = spec.nodes.get_mut("cp1").unwrap();
    cp1.config_patches = vec![
        r#"[{"op": "add", "path": "/machine/nodeLabels/zone", "value": "a"}, {"op": "replace", "path": "/machine/install/disk", "value": "/dev/vda"}]"#.into(),
        "apiVersion: v1alpha1\nkind: TimeSyncConfig\nntp:\n  servers: [time.cloudflare.com]\n".into(),
    ];
    cp1.node_labels.insert("tier".into(), "control".into());
    for node in ["cp1", "cp2", "worker1"] {
        let cfg = render_node_config(&spec, bundle(), node).unwrap();
        assert_schema_valid(&cfg);
        let d = docs(&cfg);
        let v1 = find(&d, None);
        assert_eq!(v1["machine"]["sysctls"]["vm.nr_hugepages"], "128");
        assert_eq!(v1["cluster"]["network"]["cni"]["name"], "flannel");
        if node == "cp1" {
            assert_eq!(v1["machine"]["nodeLabels"]["zone"], "a");
            assert_eq!(v1["machine"]["nodeLabels"]["tier"], "control");
            assert_eq!(v1["machine"]["install"]["disk"], "/dev/vda");
            assert_eq!(
                find(&d, Some("TimeSyncConfig"))["ntp"]["servers"][0],
                "time.cloudflare.com"
            );
            assert_eq!(v1["cluster"]["inlineManifests"][0]["name"], "cilium");
            assert_eq!(
                v1["cluster"]["proxy"]["image"],
                "registry.k8s.io/kube-proxy:v1.35.0"
            );
            assert_eq!(v1["cluster"]["allowSchedulingOnControlPlanes"], false);
            assert!(v1["cluster"]["apiServer"]["certSANs"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("k8s.waddle.social")));
        } else {
            assert_eq!(v1["machine"]["install"]["disk"], "/dev/sda");
            assert!(!d.iter().any(|x| x["kind"] == "TimeSyncConfig"));
        }
    }
}

#[test]
fn every_document_kind_we_generate_is_checked_by_the_official_schema() {
    // Guard against the schema helper silently accepting: a broken document must fail.
    let cfg = render_node_config(&original_spec(), bundle(), "cp1").unwrap();
    let broken = cfg.replace(
        "kind: HostnameConfig\n",
        "kind: HostnameConfig\nauto: sometimes\n",
    );
    assert!(!schema_errors(&broken).is_empty());
    let broken = cfg.replace("version: v1alpha1\n", "version: v1alpha1\npersist: true\n");
    assert!(!schema_errors(&broken).is_empty());
}

fn snapshot_spec() -> waddle_talos::ClusterSpec {
    let mut spec = spec_with_worker();
    spec.disk_encryption = true;
    spec
}

/// Snapshots use a real bundle generated with a fixed clock, with every secret masked.
#[test]
fn snapshots_masked() {
    let b = bundle();
    let spec = snapshot_spec();
    for node in ["cp1", "worker1"] {
        let cfg = render_node_config(&spec, b, node).unwrap();
        let masked = b.mask(&cfg);
        insta::assert_snapshot!(format!("config_{node}"), masked);
    }
    // The placeholder bundle renders the same structure (used at plan time).
    let p = SecretsBundle::placeholder();
    let cfg = render_node_config(&spec, &p, "cp1").unwrap();
    assert_eq!(
        p.mask(&cfg),
        b.mask(&render_node_config(&spec, b, "cp1").unwrap())
    );
}

#[test]
fn rendering_is_deterministic() {
    let spec = snapshot_spec();
    let a = render_node_config(&spec, bundle(), "cp3").unwrap();
    let b = render_node_config(&spec, bundle(), "cp3").unwrap();
    assert_eq!(a, b);
    // a different bundle changes only secrets
    // (another real bundle would cost a second RSA-4096 keygen; the placeholder bundle has
    // different values for every secret)
    let other = SecretsBundle::placeholder();
    let c = render_node_config(&spec, &other, "cp3").unwrap();
    assert_ne!(a, c);
    assert_eq!(bundle().mask(&a), other.mask(&c));
}

#[test]
fn same_config_ignores_order_and_formatting() {
    let spec = original_spec();
    let a = render_node_config(&spec, bundle(), "cp1").unwrap();
    // reorder documents and reformat through JSON
    let docs: Vec<serde_json::Value> = docs(&a);
    let mut reordered = String::new();
    for d in docs.iter().rev() {
        reordered.push_str("---\n");
        reordered.push_str(&serde_json::to_string(d).unwrap());
        reordered.push('\n');
    }
    assert!(waddle_talos::config::same_config(&a, &reordered).unwrap());
    let b = render_node_config(&spec, bundle(), "cp2").unwrap();
    assert!(!waddle_talos::config::same_config(&a, &b).unwrap());
}

/// The in-crate structural checks agree with the official schema on valid and invalid
/// variants of a generated configuration.
#[test]
fn structure_checks_agree_with_official_schema() {
    use waddle_talos::{patch, structure, yaml};
    let base = render_node_config(&original_spec(), bundle(), "cp1").unwrap();
    let cases = [
        "machine:\n  kubelet:\n    extraArgs:\n      rotate-server-certificates: \"true\"\n",
        "machine:\n  install:\n    wipe: 1\n",
        "machine:\n  certSANs: cp1.example\n",
        "machine:\n  features:\n    kubePrism:\n      port: \"7445\"\n",
        "machine:\n  network:\n    kubespan:\n      enabled: true\n",
        "machine:\n  network:\n    nameservers: [1.1.1.1]\n",
        "cluster:\n  network:\n    cni:\n      name: custom\n      urls: [https://example.com/cni.yaml]\n",
        "cluster:\n  proxy:\n    disabled: maybe\n",
        "cluster:\n  unknownThing: {}\n",
        "cluster:\n  inlineManifests:\n    - name: x\n      contents: y\n",
        "cluster:\n  etcd:\n    advertisedSubnets: 10.10.0.0/24\n",
        "apiVersion: v1alpha1\nkind: LinkConfig\nname: net0\nmtu: 9000\n",
        "apiVersion: v1alpha1\nkind: LinkConfig\nname: net0\nroutes:\n  - gateway: 10.10.0.1/24\n",
        "apiVersion: v1alpha1\nkind: LinkConfig\nname: net0\nup: yes please\n",
        "apiVersion: v1alpha1\nkind: Layer2VIPConfig\nname: 10.10.0.20\nlnk: net0\n",
        "apiVersion: v1alpha1\nkind: ResolverConfig\nnameservers:\n  - address: dns.google\n",
        "apiVersion: v1alpha1\nkind: VolumeConfig\nname: STATE\nencryption:\n  provider: luks1\n",
        "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  keys:\n    - slot: 0\n      tpm: {}\n",
    ];
    let mut both_valid = 0;
    let mut both_invalid = 0;
    for p in cases {
        let parsed = patch::parse(p).unwrap();
        let docs = patch::apply(yaml::parse_multidoc(&base).unwrap(), &parsed).unwrap();
        let ours = structure::check_documents(&docs, waddle_talos::versions::ConfigContract::V1_12);
        let text = yaml::to_multidoc(&docs).unwrap();
        let official = schema_errors(&text);
        assert_eq!(
            ours.is_ok(),
            official.is_empty(),
            "disagreement on patch {p:?}: ours={ours:?} official={official:?}"
        );
        if ours.is_ok() {
            both_valid += 1;
        } else {
            both_invalid += 1;
        }
    }
    assert!(
        both_valid >= 5 && both_invalid >= 10,
        "{both_valid} valid, {both_invalid} invalid"
    );
}

#[test]
fn inline_manifests_are_read_back_in_order() {
    let mut spec = original_spec();
    spec.inline_manifests = vec![
        InlineManifest {
            name: "b".into(),
            contents: "kind: Namespace\nmetadata:\n  name: b\n".into(),
        },
        InlineManifest {
            name: "a".into(),
            contents: "kind: Namespace\nmetadata:\n  name: a\n".into(),
        },
    ];
    let cfg = render_node_config(&spec, bundle(), "cp1").unwrap();
    let back = waddle_talos::config::inline_manifests(&format!("# a comment\n{cfg}")).unwrap();
    assert!(back == spec.inline_manifests, "names and contents in order");
    let none = render_node_config(&original_spec(), bundle(), "cp1").unwrap();
    assert!(waddle_talos::config::inline_manifests(&none)
        .unwrap()
        .is_empty());
    assert!(
        waddle_talos::config::inline_manifests("cluster: {inlineManifests: [{name: x}]}\n")
            .is_err()
    );
}
