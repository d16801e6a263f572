mod common;

use common::{original_spec, spec_with_worker};
use waddle_talos::{
    render_node_config, validate, Error, Issue, NodeSpec, Role, SecretsBundle, Severity,
};

fn errors(spec: &waddle_talos::ClusterSpec) -> Vec<(String, String)> {
    validate(spec)
        .into_iter()
        .filter(Issue::is_error)
        .map(|i| (i.path.to_string(), i.message))
        .collect()
}

fn assert_error_at(spec: &waddle_talos::ClusterSpec, path: &str, needle: &str) {
    let errs = errors(spec);
    assert!(
        errs.iter().any(|(p, m)| p == path && m.contains(needle)),
        "expected error at {path} containing {needle:?}, got {errs:#?}"
    );
}

#[test]
fn original_layout_is_valid() {
    assert!(
        validate(&original_spec()).is_empty(),
        "{:#?}",
        validate(&original_spec())
    );
    assert!(validate(&spec_with_worker()).is_empty());
}

#[test]
fn duplicate_addresses_and_macs() {
    let mut spec = original_spec();
    spec.nodes.get_mut("cp2").unwrap().address = "10.10.0.10/24".into();
    spec.nodes.get_mut("cp3").unwrap().mac = Some("BC:24:11:00:00:0A".into());
    assert_error_at(
        &spec,
        r#"nodes["cp2"].address"#,
        "duplicate address 10.10.0.10",
    );
    assert_error_at(
        &spec,
        r#"nodes["cp3"].mac"#,
        "duplicate MAC bc:24:11:00:00:0a",
    );
}

#[test]
fn vip_must_be_in_a_control_plane_subnet() {
    let mut spec = original_spec();
    spec.vip = Some("10.20.0.20".into());
    assert_error_at(&spec, "vip", "inside no control plane node's subnet");
    spec.vip = Some("10.10.0.11".into());
    assert_error_at(&spec, "vip", "also node \"cp2\"'s address");
    spec.vip = Some("not-an-ip".into());
    assert_error_at(&spec, "vip", "not an IP address");
}

#[test]
fn control_plane_count() {
    let mut spec = original_spec();
    for n in spec.nodes.values_mut() {
        n.role = Role::Worker;
    }
    assert_error_at(
        &spec,
        "nodes",
        "at least one node with role \"controlplane\"",
    );

    let mut spec = original_spec();
    spec.nodes.remove("cp3");
    let issues = validate(&spec);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(issues[0].severity, Severity::Warning);
    assert_eq!(issues[0].path.to_string(), "nodes");
    assert!(issues[0].message.contains("even number"));
    // a warning does not stop rendering
    render_node_config(&spec, &SecretsBundle::placeholder(), "cp1").unwrap();

    let mut empty = original_spec();
    empty.nodes.clear();
    assert_error_at(&empty, "nodes", "at least one node");
}

#[test]
fn addresses_and_gateways() {
    let mut spec = original_spec();
    spec.nodes.get_mut("cp1").unwrap().address = "10.10.0.10".into();
    spec.nodes.get_mut("cp2").unwrap().gateway = Some("10.10.1.1".into());
    spec.nodes.get_mut("cp3").unwrap().address = "10.10.0.300/24".into();
    assert_error_at(&spec, r#"nodes["cp1"].address"#, "no prefix length");
    assert_error_at(
        &spec,
        r#"nodes["cp2"].gateway"#,
        "outside the node's subnet 10.10.0.0/24",
    );
    assert_error_at(&spec, r#"nodes["cp3"].address"#, "not a valid IP address");

    let mut spec = original_spec();
    spec.nodes.get_mut("cp1").unwrap().address = "10.10.0.0/24".into();
    spec.nodes.get_mut("cp2").unwrap().gateway = Some("gw".into());
    spec.nodes.get_mut("cp3").unwrap().install_disk = "sda".into();
    assert_error_at(&spec, r#"nodes["cp1"].address"#, "network or broadcast");
    assert_error_at(&spec, r#"nodes["cp2"].gateway"#, "not an IP address");
    assert_error_at(&spec, r#"nodes["cp3"].install_disk"#, "not a device path");

    let mut spec = original_spec();
    let cp1 = spec.nodes.get_mut("cp1").unwrap();
    cp1.mac = None;
    assert_error_at(&spec, r#"nodes["cp1"].mac"#, "set mac");
    spec.nodes.get_mut("cp2").unwrap().mac = Some("01:00:5e:00:00:01".into());
    assert_error_at(&spec, r#"nodes["cp2"].mac"#, "multicast");
}

#[test]
fn unknown_versions_and_bad_cluster_fields() {
    let mut spec = original_spec();
    spec.talos_version = "v1.11.3".into();
    spec.kubernetes_version = "1.36.0".into();
    spec.endpoint = "10.10.0.20:6443".into();
    spec.cluster_name = "Waddle Cluster".into();
    spec.nameservers = vec!["1.1.1.1".into(), "dns.example".into()];
    assert_error_at(&spec, "talos_version", "unsupported Talos version");
    assert_error_at(&spec, "kubernetes_version", "not supported by Talos v1.12");
    assert_error_at(&spec, "endpoint", "https://");
    assert_error_at(&spec, "cluster_name", "not a valid cluster name");
    assert_error_at(&spec, "nameservers[1]", "not an IP address");

    let mut spec = original_spec();
    spec.kubernetes_version = "latest".into();
    assert_error_at(&spec, "kubernetes_version", "not a Kubernetes version");
    // rendering refuses an invalid spec
    match render_node_config(&spec, &SecretsBundle::placeholder(), "cp1") {
        Err(Error::Invalid(issues)) => assert_eq!(issues[0].path.to_string(), "kubernetes_version"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn invalid_patches_are_refused_with_their_path() {
    let mut spec = original_spec();
    spec.nodes.get_mut("cp2").unwrap().config_patches = vec![
        "machine:\n  install:\n    disk: /dev/vda\n".into(),
        "machine: [oops".into(),
    ];
    assert_error_at(
        &spec,
        r#"nodes["cp2"].config_patches[1]"#,
        "invalid config patch: not valid YAML",
    );

    let mut spec = original_spec();
    spec.config_patches =
        vec![r#"[{"op": "replace", "path": "/machine/nothere/x", "value": 1}]"#.into()];
    let errs = errors(&spec);
    assert_eq!(
        errs.len(),
        1,
        "a cluster-wide patch error is reported once: {errs:#?}"
    );
    assert_eq!(errs[0].0, "config_patches[0]");
    assert!(errs[0].1.contains("JSON6902"), "{}", errs[0].1);

    let mut spec = original_spec();
    spec.config_patches = vec![r#"[{"op": "explode", "path": "/machine"}]"#.into()];
    assert_error_at(&spec, "config_patches[0]", "invalid JSON6902 operation");
}

#[test]
fn patches_that_break_the_schema_are_refused() {
    let cases = [
        ("machine:\n  install:\n    wipe: \"yes\"\n", "machine.install.wipe: expected a boolean"),
        ("machine:\n  network:\n    hostname: cp1\n", "machine.network.hostname: unknown field (use a HostnameConfig document"),
        ("persist: true\n", "persist: unknown field"),
        ("machine:\n  network:\n    interfaces:\n      - interface: eth0\n", "machine.network.interfaces: unknown field"),
        ("cluster:\n  network:\n    cni:\n      name: calico\n", "cluster.network.cni.name: must be one of"),
        ("cluster:\n  controlPlane:\n    endpoint: http://10.10.0.20:6443\n", "must be an https:// URL"),
        ("apiVersion: v1alpha1\nkind: HostnameConfig\nauto: stable\n", "auto: conflicts with hostname"),
        ("apiVersion: v1alpha1\nkind: LinkConfig\nname: net0\naddresses:\n  - address: 10.10.0.99\n", "is not an address with prefix"),
        ("apiVersion: v1alpha1\nkind: FrobConfig\n", "unknown document kind \"FrobConfig\""),
        ("apiVersion: v1alpha2\nkind: TimeSyncConfig\n", "apiVersion: must be v1alpha1"),
        ("machine:\n  type: worker\n", "changes machine.type"),
    ];
    for (patch, needle) in cases {
        let mut spec = original_spec();
        spec.nodes.get_mut("cp1").unwrap().config_patches = vec![patch.to_string()];
        let errs = errors(&spec);
        assert!(
            errs.iter()
                .any(|(p, m)| p == r#"nodes["cp1"].config_patches[0]"# && m.contains(needle)),
            "patch {patch:?}: expected {needle:?}, got {errs:#?}"
        );
    }
}

#[test]
fn single_node_with_worker_added_and_fixed_mac() {
    // homelab shape: one control plane, fixed MAC, encryption + secureboot
    let mut spec = waddle_talos::ClusterSpec::new("homelab", "https://192.168.1.50:6443");
    spec.disk_encryption = true;
    spec.secureboot = true;
    let mut n = NodeSpec::new(Role::ControlPlane, "192.168.1.50/24");
    n.gateway = Some("192.168.1.1".into());
    n.mac = Some("bc:24:11:aa:bb:cc".into());
    spec.nodes.insert("talos-1".into(), n);
    assert!(validate(&spec).is_empty(), "{:#?}", validate(&spec));
    let cfg = render_node_config(&spec, common::bundle(), "talos-1").unwrap();
    let errs = common::schema_errors(&cfg);
    assert!(errs.is_empty(), "{errs:#?}");
    assert!(!cfg.contains("Layer2VIPConfig"), "no VIP configured");
}
