//! Configuration contracts (v1.12, v1.13): every rendered document validates against the
//! official schema of its version, patches are held to the contract, and the keys
//! `talosctl gen config` emits are present unless listed in
//! [`waddle_talos::config::TALOSCTL_DIFFERENCES`].
mod common;

use common::{bundle, original_spec, schema_errors_for, spec_with_worker};
use serde_json::Value;
use waddle_talos::config::TALOSCTL_DIFFERENCES;
use waddle_talos::versions::ConfigContract;
use waddle_talos::{render_node_config, validate, ClusterSpec, Cni, Error};

const INSTALLER: &str =
    "factory.talos.dev/installer/ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515";

fn docs(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn v1alpha1(d: &[Value]) -> &Value {
    d.iter()
        .find(|x| x.get("kind").is_none())
        .expect("v1alpha1")
}

fn at(spec: &ClusterSpec, talos: &str, contract: Option<ConfigContract>) -> ClusterSpec {
    let mut s = spec.clone();
    s.talos_version = talos.into();
    s.installer_image = Some(format!("{INSTALLER}:{talos}"));
    s.config_contract = contract;
    s
}

fn assert_valid(minor: &str, cfg: &str) {
    let errs = schema_errors_for(minor, cfg);
    assert!(
        errs.is_empty(),
        "{minor} schema errors:\n{}\n\n{cfg}",
        errs.join("\n")
    );
}

/// A spec with every option that changes the rendered documents.
fn full_spec() -> ClusterSpec {
    let mut spec = spec_with_worker();
    spec.cni = Cni::Flannel;
    spec.kube_proxy = true;
    spec.disk_encryption = true;
    spec.cert_sans = vec!["k8s.waddle.social".into()];
    spec
}

#[test]
fn v1_13_contract_documents_validate_against_the_v1_13_schema() {
    for base in [original_spec(), spec_with_worker(), full_spec()] {
        let spec = at(&base, "v1.13.9", None);
        assert_eq!(spec.contract(), ConfigContract::V1_13);
        for node in spec.nodes.keys() {
            let cfg = render_node_config(&spec, bundle(), node).unwrap();
            assert_valid("v1.13", &cfg);
            let d = docs(&cfg);
            let v1 = v1alpha1(&d);
            assert!(v1["machine"].get("network").is_none(), "{cfg}");
            assert!(v1["machine"].get("env").is_none(), "{cfg}");
            assert_eq!(v1["machine"]["install"]["grubUseUKICmdline"], true);
            let cp = v1["machine"]["type"] == "controlplane";
            assert_eq!(
                v1["cluster"]["apiServer"]["auditPolicy"]["rules"][0]["level"]
                    .as_str()
                    .is_some(),
                cp,
                "{node}"
            );
            for kind in ["HostnameConfig", "LinkConfig", "ResolverConfig"] {
                assert!(d.iter().any(|x| x["kind"] == kind), "{node}: no {kind}");
            }
        }
    }
}

#[test]
fn v1_12_contract_is_kept_after_an_upgrade_and_runs_on_both_versions() {
    for base in [original_spec(), full_spec()] {
        let before = at(&base, "v1.12.11", None);
        assert_eq!(before.contract(), ConfigContract::V1_12);
        // Upgraded to v1.13 with the contract kept: the same configuration but the image.
        let kept = at(&base, "v1.13.9", Some(ConfigContract::V1_12));
        for node in base.nodes.keys() {
            let a = render_node_config(&before, bundle(), node).unwrap();
            let b = render_node_config(&kept, bundle(), node).unwrap();
            assert_eq!(a.replace("v1.12.11", "v1.13.9"), b, "{node}");
            assert_valid("v1.12", &a);
            assert_valid("v1.13", &b);
            let d = docs(&b);
            assert!(v1alpha1(&d)["machine"]["install"]
                .get("grubUseUKICmdline")
                .is_none());
            // Moving the contract re-renders for v1.13.
            let moved = at(&base, "v1.13.9", Some(ConfigContract::V1_13));
            let c = render_node_config(&moved, bundle(), node).unwrap();
            assert_ne!(b, c);
            assert_eq!(
                c,
                render_node_config(&at(&base, "v1.13.9", None), bundle(), node).unwrap()
            );
        }
    }
}

#[test]
fn a_contract_newer_than_talos_version_is_refused_at_its_path() {
    let spec = at(&original_spec(), "v1.12.11", Some(ConfigContract::V1_13));
    let issues: Vec<_> = validate(&spec)
        .into_iter()
        .filter(|i| i.is_error())
        .collect();
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].path.to_string(), "config_contract");
    assert!(
        issues[0]
            .message
            .contains("newer than talos_version v1.12.11"),
        "{}",
        issues[0].message
    );
    assert!(matches!(
        render_node_config(&spec, bundle(), "cp1"),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn kubernetes_support_matrix_follows_the_talos_release() {
    let mut spec = at(&original_spec(), "v1.13.2", None);
    spec.kubernetes_version = "1.36.0".into();
    assert!(validate(&spec).iter().all(|i| !i.is_error()));
    let cfg = render_node_config(&spec, bundle(), "cp1").unwrap();
    assert!(cfg.contains("registry.k8s.io/kube-apiserver:v1.36.0"));
    spec.kubernetes_version = "1.30.4".into();
    let e: Vec<_> = validate(&spec)
        .into_iter()
        .filter(|i| i.is_error())
        .collect();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].path.to_string(), "kubernetes_version");
    assert!(e[0]
        .message
        .contains("Talos v1.13 (supported: 1.31.x to 1.36.x)"));
    let mut spec = at(&original_spec(), "v1.12.11", None);
    spec.kubernetes_version = "1.36.0".into();
    let e: Vec<_> = validate(&spec)
        .into_iter()
        .filter(|i| i.is_error())
        .collect();
    assert_eq!(e[0].path.to_string(), "kubernetes_version", "{e:?}");
}

/// Patches are held to the contract exactly where the official schemas differ, and the
/// in-crate checks agree with the official schema of each version.
#[test]
fn patches_are_held_to_their_contract() {
    let cases: [(&str, bool, bool); 6] = [
        // (patch, valid under v1.12, valid under v1.13)
        (
            "machine:\n  network:\n    kubespan:\n      enabled: true\n",
            true,
            false,
        ),
        ("machine:\n  env:\n    GOMAXPROCS: \"2\"\n", true, false),
        (
            "apiVersion: v1alpha1\nkind: KubeSpanConfig\nenabled: true\n",
            false,
            true,
        ),
        (
            "apiVersion: v1alpha1\nkind: EnvironmentConfig\nvariables:\n  GOMAXPROCS: \"2\"\n",
            false,
            true,
        ),
        (
            "machine:\n  sysctls:\n    vm.nr_hugepages: \"128\"\n",
            true,
            true,
        ),
        ("machine:\n  install:\n    wipe: 1\n", false, false),
    ];
    for (patch, ok12, ok13) in cases {
        for (contract, talos, ok) in [
            (ConfigContract::V1_12, "v1.12.11", ok12),
            (ConfigContract::V1_13, "v1.13.9", ok13),
        ] {
            let mut spec = at(&original_spec(), talos, None);
            spec.config_patches = vec![patch.into()];
            let ours = render_node_config(&spec, bundle(), "cp1");
            assert_eq!(ours.is_ok(), ok, "{contract} {patch:?}: {ours:?}");
            let errs: Vec<_> = validate(&spec)
                .into_iter()
                .filter(|i| i.is_error())
                .collect();
            assert_eq!(errs.is_empty(), ok, "{contract} {patch:?}: {errs:?}");
            if let Some(e) = errs.first() {
                assert_eq!(e.path.to_string(), "config_patches[0]", "{e:?}");
            }
            // The same patched documents under the official schema of the version.
            let mut plain = at(&original_spec(), talos, None);
            plain.config_patches.clear();
            let base = render_node_config(&plain, bundle(), "cp1").unwrap();
            let parsed = waddle_talos::patch::parse(patch).unwrap();
            let d = waddle_talos::patch::apply(
                waddle_talos::yaml::parse_multidoc(&base).unwrap(),
                &parsed,
            )
            .unwrap();
            let text = waddle_talos::yaml::to_multidoc(&d).unwrap();
            assert_eq!(
                schema_errors_for(&format!("v1.{}", contract.minor()), &text).is_empty(),
                ok,
                "official {contract} schema disagrees on {patch:?}"
            );
        }
    }
    let mut spec = at(&original_spec(), "v1.13.9", None);
    spec.config_patches = vec!["machine:\n  network:\n    nameservers: [1.1.1.1]\n".into()];
    let e = validate(&spec);
    assert!(
        e.iter()
            .any(|i| i.message.contains("use HostnameConfig, LinkConfig")),
        "{e:?}"
    );
}

/// The keys `talosctl gen config` writes for a control plane and a worker (Talos
/// v1.12/v1.13, with `--install-disk` and scheduling on control planes, as waddle's inputs
/// have them), written from siderolabs/talos
/// `pkg/machinery/config/types/v1alpha1/testdata/stability/<version>/`. `[]`/`{}` mark a
/// list or map talosctl writes (possibly empty). Keys of other documents are `Kind.key`.
fn talosctl_keys(contract: ConfigContract, controlplane: bool) -> Vec<&'static str> {
    let mut keys = vec![
        "version",
        "debug",
        "persist",
        "machine.type",
        "machine.token",
        "machine.ca.crt",
        "machine.ca.key",
        "machine.certSANs[]",
        "machine.kubelet.image",
        "machine.kubelet.defaultRuntimeSeccompProfileEnabled",
        "machine.kubelet.disableManifestsDirectory",
        "machine.install.disk",
        "machine.install.wipe",
        "machine.install.grubUseUKICmdline",
        "machine.features.diskQuotaSupport",
        "machine.features.kubePrism.enabled",
        "machine.features.kubePrism.port",
        "machine.features.hostDNS.enabled",
        "machine.features.hostDNS.forwardKubeDNSToHost",
        "cluster.id",
        "cluster.secret",
        "cluster.controlPlane.endpoint",
        "cluster.clusterName",
        "cluster.network.dnsDomain",
        "cluster.network.podSubnets[]",
        "cluster.network.serviceSubnets[]",
        "cluster.token",
        "cluster.ca.crt",
        "cluster.ca.key",
        "cluster.discovery.enabled",
        "cluster.discovery.registries.kubernetes.disabled",
        "cluster.discovery.registries.service{}",
        "HostnameConfig.apiVersion",
        "HostnameConfig.kind",
        "HostnameConfig.auto",
    ];
    if contract == ConfigContract::V1_12 {
        keys.push("machine.network{}");
    }
    if controlplane {
        keys.extend([
            "machine.nodeLabels.node.kubernetes.io/exclude-from-external-load-balancers",
            "cluster.secretboxEncryptionSecret",
            "cluster.aggregatorCA.crt",
            "cluster.aggregatorCA.key",
            "cluster.serviceAccount.key",
            "cluster.apiServer.image",
            "cluster.apiServer.admissionControl[]",
            "cluster.apiServer.auditPolicy.apiVersion",
            "cluster.apiServer.auditPolicy.kind",
            "cluster.apiServer.auditPolicy.rules[]",
            "cluster.controllerManager.image",
            "cluster.proxy.image",
            "cluster.scheduler.image",
            "cluster.etcd.ca.crt",
            "cluster.etcd.ca.key",
            "cluster.allowSchedulingOnControlPlanes",
        ]);
    }
    keys
}

/// Whether `key` (see [`talosctl_keys`]) is in the documents.
fn has_key(d: &[Value], key: &str) -> bool {
    let key = key.trim_end_matches("[]").trim_end_matches("{}");
    // Label keys contain dots: match the known prefix first.
    const LABEL: &str = "machine.nodeLabels.";
    let (doc, path): (&Value, Vec<&str>) = if let Some(label) = key.strip_prefix(LABEL) {
        (v1alpha1(d), vec!["machine", "nodeLabels", label])
    } else {
        let first = key.split('.').next().unwrap_or_default();
        if first.starts_with(char::is_uppercase) {
            match d.iter().find(|x| x["kind"] == first) {
                Some(doc) => (doc, key.split('.').skip(1).collect()),
                None => return false,
            }
        } else {
            (v1alpha1(d), key.split('.').collect())
        }
    };
    let mut v = doc;
    for p in path {
        match v.get(p) {
            Some(next) => v = next,
            None => return false,
        }
    }
    true
}

fn difference(contract: ConfigContract, key: &str) -> bool {
    let bare = key.trim_end_matches("[]").trim_end_matches("{}");
    TALOSCTL_DIFFERENCES
        .iter()
        .any(|d| d.contracts.contains(&contract) && bare.starts_with(d.key))
}

#[test]
fn every_key_talosctl_emits_is_present_unless_listed_as_intended() {
    // The key lookup itself: a key that is there, one that is not.
    let d = docs(&render_node_config(&original_spec(), bundle(), "cp1").unwrap());
    assert!(has_key(
        &d,
        "machine.nodeLabels.node.kubernetes.io/exclude-from-external-load-balancers"
    ));
    assert!(has_key(&d, "HostnameConfig.hostname"));
    assert!(!has_key(&d, "machine.kubelet.nope"));
    assert!(!has_key(&d, "KubeSpanConfig.enabled"));
    let mut checked = 0;
    for contract in ConfigContract::ALL.iter().copied() {
        let talos = match contract {
            ConfigContract::V1_12 => "v1.12.11",
            ConfigContract::V1_13 => "v1.13.9",
        };
        // Same inputs as talosctl's defaults where waddle has them.
        let spec = at(&spec_with_worker(), talos, None);
        for (node, cp) in [("cp1", true), ("worker1", false)] {
            let d = docs(&render_node_config(&spec, bundle(), node).unwrap());
            let mut missing = Vec::new();
            for key in talosctl_keys(contract, cp) {
                let listed = difference(contract, key);
                let present = has_key(&d, key);
                if !present && !listed {
                    missing.push(key);
                }
                // The list is kept true: a listed key is really absent.
                assert!(
                    !(present && listed),
                    "{contract} {node}: {key} is listed as a difference but rendered"
                );
                checked += 1;
            }
            assert!(
                missing.is_empty(),
                "{contract} {node}: keys talosctl emits are missing: {missing:?}"
            );
        }
    }
    assert!(checked > 150, "{checked}");
    // Every listed difference names a key talosctl emits for its contracts.
    for diff in TALOSCTL_DIFFERENCES {
        for c in diff.contracts {
            assert!(
                talosctl_keys(*c, true).iter().any(|k| k
                    .trim_end_matches("[]")
                    .trim_end_matches("{}")
                    .starts_with(diff.key)),
                "{} is not a key talosctl emits for {c}",
                diff.key
            );
        }
    }
    // With kube-proxy on, its image is written as talosctl writes it.
    let mut spec = at(&original_spec(), "v1.13.9", None);
    spec.kube_proxy = true;
    let d = docs(&render_node_config(&spec, bundle(), "cp1").unwrap());
    assert!(has_key(&d, "cluster.proxy.image"));
}

/// The document kinds each contract knows are exactly the kinds of its official schema.
#[test]
fn known_kinds_are_the_kinds_of_each_schema() {
    for (contract, minor) in [
        (ConfigContract::V1_12, "v1.12"),
        (ConfigContract::V1_13, "v1.13"),
    ] {
        let schema = common::schema_for(minor);
        let mut official: Vec<String> = schema["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| {
                let def = r["$ref"].as_str()?.rsplit('/').next()?;
                schema["$defs"][def]["properties"]["kind"]["enum"][0]
                    .as_str()
                    .map(str::to_string)
            })
            .collect();
        official.sort();
        let mut ours: Vec<String> = waddle_talos::structure::known_kinds(contract)
            .map(|(k, _)| k.to_string())
            .collect();
        ours.sort();
        assert_eq!(ours, official, "{contract}");
    }
    assert!(waddle_talos::structure::KINDS_SINCE_1_13
        .iter()
        .all(|(k, _)| !waddle_talos::structure::KNOWN_KINDS
            .iter()
            .any(|(o, _)| o == k)));
}
