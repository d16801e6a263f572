//! Bad input refused at plan (validation only, no API call possible here): every error carries
//! the attribute path, and nested errors name their element in the text, because Terraform
//! shows a nested path only as the resource's first line.

use std::collections::BTreeMap;

use waddle_framework::prelude::*;
use waddle_framework::testing::errors;
use waddle_provider::resources::sni_proxy::{self, PrivateNic, PublicNic, Route, SniProxyState};
use waddle_provider::resources::talos_cluster::{
    self, defaults, ClusterModel, ImageModel, NodeModel, PlacementModel,
};
use waddle_provider::resources::timeouts::TimeoutsModel;
use waddle_provider::resources::{network, MAX_DIAGNOSTICS};

// ---------------------------------------------------------------------------------------
// waddle_sni_proxy
// ---------------------------------------------------------------------------------------

fn proxy() -> SniProxyState {
    SniProxyState {
        id: None,
        name: Some("sni-proxy".into()),
        node: Some("pve".into()),
        vmid: Some(120),
        storage: None,
        cores: None,
        memory: None,
        disk_size: None,
        image_url: None,
        image_storage: None,
        public_nic: Some(PublicNic {
            bridge: "vmbr0".into(),
            cidr: "203.0.113.10/24".into(),
            gateway: Some("203.0.113.1".into()),
        }),
        private_nic: Some(PrivateNic {
            bridge: "vmbr1".into(),
            cidr: "10.10.0.3/24".into(),
        }),
        dns_servers: None,
        admin_user: None,
        ssh_authorized_keys: Some(vec![
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0mVwYk8lYy3oHfB8sOaZcLx9aJ7dQ ops".into(),
        ]),
        routes: Some(vec![
            route("teleport.example.org", "10.10.0.2:3080"),
            route("*.apps.example.org", "10.10.0.20:443"),
        ]),
        http_backend: Some("10.10.0.20:80".into()),
        listen: None,
        maxconn: None,
        proxy_timeouts: None,
        timeouts: None,
        haproxy_cfg: None,
        exact_map: None,
        wildcard_map: None,
        config_hash: None,
        public_address: None,
        private_address: None,
        seed_iso: None,
    }
}

fn route(host: &str, backend: &str) -> Route {
    Route {
        hostnames: vec![host.into()],
        backend: backend.into(),
        proxy_protocol: None,
        check: None,
    }
}

/// (path, detail) of every error of the proxy configuration.
fn proxy_errors(f: impl FnOnce(&mut SniProxyState)) -> Vec<(String, String)> {
    let mut s = proxy();
    f(&mut s);
    let v = sni_proxy::schema().from_typed(&s).expect("fits the schema");
    let mut d = Diagnostics::new();
    sni_proxy::validate(&v, &mut d);
    errors(&d)
}

/// Exactly one error, at `path`, whose text names `path` (when nested) and contains `needle`.
fn assert_one(errs: &[(String, String)], path: &str, needle: &str) {
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let (p, detail) = &errs[0];
    assert_eq!(p, path, "{errs:#?}");
    if path.contains(['.', '[']) {
        assert!(detail.starts_with(&format!("{path}: ")), "{detail}");
    }
    assert!(detail.contains(needle), "{detail}");
}

#[test]
fn the_reference_proxy_is_valid() {
    assert_eq!(proxy_errors(|_| {}), vec![]);
}

#[test]
fn public_gateway_outside_its_subnet_is_refused() {
    let errs = proxy_errors(|s| {
        s.public_nic.as_mut().unwrap().gateway = Some("198.51.100.1".into());
    });
    assert_one(
        &errs,
        "public_nic.gateway",
        "outside the subnet 203.0.113.0/24",
    );
}

#[test]
fn gateway_equal_to_the_own_address_is_refused() {
    let errs = proxy_errors(|s| {
        s.public_nic.as_mut().unwrap().gateway = Some("203.0.113.10".into());
    });
    assert_one(&errs, "public_nic.gateway", "the NIC's own address");
}

#[test]
fn network_and_broadcast_addresses_are_refused() {
    let errs = proxy_errors(|s| s.public_nic.as_mut().unwrap().cidr = "203.0.113.0/24".into());
    assert_one(&errs, "public_nic.cidr", "network address");
    let errs = proxy_errors(|s| s.private_nic.as_mut().unwrap().cidr = "10.10.0.255/24".into());
    assert_one(&errs, "private_nic.cidr", "broadcast address");
}

#[test]
fn private_nic_inside_the_public_subnet_is_refused() {
    let errs = proxy_errors(|s| s.private_nic.as_mut().unwrap().cidr = "203.0.113.20/24".into());
    assert_one(
        &errs,
        "private_nic.cidr",
        "inside the public subnet 203.0.113.0/24",
    );
}

#[test]
fn backends_looping_into_the_proxy_or_to_nowhere_are_refused() {
    let errs = proxy_errors(|s| s.routes.as_mut().unwrap()[1].backend = "10.10.0.3:443".into());
    assert_one(&errs, "routes[1].backend", "the proxy's own address");
    let errs = proxy_errors(|s| s.http_backend = Some("203.0.113.10:80".into()));
    assert_one(&errs, "http_backend", "the proxy's own address");
    let errs = proxy_errors(|s| s.routes.as_mut().unwrap()[0].backend = "0.0.0.0:3080".into());
    assert_one(&errs, "routes[0].backend", "unspecified address");
}

#[test]
fn a_mistyped_ip_backend_is_not_called_a_dns_name() {
    let errs = proxy_errors(|s| s.routes.as_mut().unwrap()[1].backend = "10.10.0.256:443".into());
    assert_one(&errs, "routes[1].backend", "not a valid IPv4 address");
    assert!(!errs[0].1.contains("DNS"), "{errs:?}");
}

#[test]
fn route_errors_name_the_route() {
    let errs = proxy_errors(|s| s.routes.as_mut().unwrap()[1].hostnames = vec!["*".into()]);
    assert_one(&errs, "routes[1].hostnames[0]", "match every server name");
}

#[test]
fn an_empty_route_list_is_refused() {
    let errs = proxy_errors(|s| s.routes = Some(vec![]));
    assert_one(&errs, "routes", "at least one route");
}

#[test]
fn a_flood_of_bad_routes_is_capped() {
    let errs = proxy_errors(|s| {
        s.routes = Some(
            (0..5000)
                .map(|i| route(&format!("h{i}.example.org"), "nowhere"))
                .collect(),
        );
    });
    assert_eq!(errs.len(), MAX_DIAGNOSTICS + 1, "{:?}", errs.last());
    assert!(
        errs[MAX_DIAGNOSTICS].1.contains("5000 problems"),
        "{:?}",
        errs.last()
    );
}

// ---------------------------------------------------------------------------------------
// waddle_talos_cluster
// ---------------------------------------------------------------------------------------

const URL: &str = "https://factory.talos.dev/image/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba/v1.12.11/nocloud-amd64.qcow2";

fn node(address: &str) -> NodeModel {
    NodeModel {
        role: "controlplane".into(),
        address: address.into(),
        gateway: Some("10.10.0.1".into()),
        proxmox: Some(PlacementModel::default()),
        ..Default::default()
    }
}

fn cluster(nodes: BTreeMap<String, NodeModel>) -> ClusterModel {
    ClusterModel {
        cluster_name: "waddle".into(),
        endpoint: "https://10.10.0.20:6443".into(),
        vip: Some("10.10.0.20".into()),
        image: Some(ImageModel {
            installer: None,
            disk_image_url: Some(URL.into()),
        }),
        nodes: Some(nodes),
        ..Default::default()
    }
}

fn one_node(f: impl FnOnce(&mut NodeModel)) -> ClusterModel {
    let mut n = node("10.10.0.10/24");
    f(&mut n);
    cluster([("cp1".to_string(), n)].into())
}

fn cluster_diags(m: &ClusterModel) -> Diagnostics {
    let v = talos_cluster::schema()
        .from_typed(m)
        .expect("fits the schema");
    let mut d = Diagnostics::new();
    talos_cluster::validate_value(&v, &mut d);
    d
}

#[test]
fn a_gateway_error_names_the_node() {
    let d = cluster_diags(&one_node(|n| n.gateway = Some("10.20.0.1".into())));
    assert_one(
        &errors(&d),
        r#"nodes["cp1"].gateway"#,
        "outside the node's subnet",
    );
}

#[test]
fn every_nested_error_names_its_node() {
    let d = cluster_diags(&one_node(|n| {
        n.role = "boss".into();
        n.proxmox.as_mut().unwrap().vmid = Some(5);
    }));
    let errs = errors(&d);
    let nested: Vec<&(String, String)> = errs
        .iter()
        .filter(|(p, _)| p.starts_with(r#"nodes["cp1"]."#))
        .collect();
    let paths: Vec<&str> = nested.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [r#"nodes["cp1"].role"#, r#"nodes["cp1"].proxmox.vmid"#],
        "{errs:#?}"
    );
    for (path, detail) in nested {
        assert!(detail.starts_with(&format!("{path}: ")), "{errs:#?}");
    }
}

#[test]
fn an_invalid_proxmox_node_name_is_refused() {
    let d = cluster_diags(&one_node(|n| {
        n.proxmox.as_mut().unwrap().node = Some("pve_1".into());
    }));
    assert_one(
        &errors(&d),
        r#"nodes["cp1"].proxmox.node"#,
        "not a valid node name",
    );
}

#[test]
fn an_invalid_pod_subnet_patch_is_refused_naming_the_node_patch() {
    let d = cluster_diags(&one_node(|n| {
        n.config_patches = Some(vec![
            "cluster:\n  network:\n    podSubnets: [\"10.244.0.0/33\"]\n".into(),
        ]);
    }));
    assert_one(
        &errors(&d),
        r#"nodes["cp1"].config_patches[0]"#,
        "cluster.network.podSubnets[0]",
    );
}

#[test]
fn too_many_nodes_are_refused_with_one_diagnostic() {
    // Every node is also invalid: without the cap each would add its own diagnostics.
    let nodes: BTreeMap<String, NodeModel> = (0..=defaults::MAX_NODES)
        .map(|i| (format!("n{i}"), node("not-an-address")))
        .collect();
    let d = cluster_diags(&cluster(nodes));
    let errs = errors(&d);
    assert_one(&errs, "nodes", &format!("at most {}", defaults::MAX_NODES));
}

#[test]
fn many_bad_nodes_below_the_limit_are_capped() {
    let nodes: BTreeMap<String, NodeModel> = (0..defaults::MAX_NODES)
        .map(|i| (format!("n{i}"), node("not-an-address")))
        .collect();
    let d = cluster_diags(&cluster(nodes));
    assert_eq!(d.len(), MAX_DIAGNOSTICS + 1, "{d}");
    let last = d.iter().last().unwrap();
    assert!(
        last.is_error() && last.summary.starts_with("and "),
        "{last}"
    );
}

// ---------------------------------------------------------------------------------------
// Import: the secrets file named by the ID is read with a bound
// ---------------------------------------------------------------------------------------

fn import_error(id: &str) -> String {
    let mut d = Diagnostics::new();
    assert!(talos_cluster::ops::import(id, &mut d).is_none());
    errors(&d).into_iter().map(|(_, m)| m).collect()
}

#[test]
fn import_reads_only_regular_files_of_sane_size() {
    // Before the bound this read /dev/zero until the process was killed.
    let msg = import_error("waddle:/dev/zero");
    assert!(msg.contains("not a regular file"), "{msg}");
    let msg = import_error("waddle:/");
    assert!(msg.contains("not a regular file"), "{msg}");

    let dir = std::env::temp_dir().join(format!("waddle-import-bound-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.yaml");
    let size = talos_cluster::MAX_SECRETS_FILE + 1;
    std::fs::File::create(&big).unwrap().set_len(size).unwrap();
    let msg = import_error(&format!("waddle:{}", big.display()));
    assert!(msg.contains("too large for a secrets bundle"), "{msg}");
    let missing = dir.join("missing.yaml");
    let msg = import_error(&format!("waddle:{}", missing.display()));
    assert!(
        msg.contains("reading") && msg.contains("missing.yaml"),
        "{msg}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// timeouts (every resource)
// ---------------------------------------------------------------------------------------

#[test]
fn a_timeout_that_is_not_a_duration_is_refused_with_its_path_on_every_resource() {
    let bad = TimeoutsModel {
        create: Some("5 minutes".into()),
        update: Some("90s".into()),
        delete: Some("1h30".into()),
    };
    let errs = proxy_errors(|s| s.timeouts = Some(bad.clone()));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert_eq!(errs[0].0, "timeouts.create", "{errs:#?}");
    assert!(errs[0].1.contains("\"5 minutes\""), "{errs:#?}");
    assert_eq!(errs[1].0, "timeouts.delete", "{errs:#?}");
    assert!(errs[1].1.contains("needs a unit"), "{errs:#?}");

    let net = network::schema()
        .from_typed(&network::NetworkState {
            timeouts: Some(bad.clone()),
            ..Default::default()
        })
        .expect("fits the schema");
    let mut d = Diagnostics::new();
    network::validate(&net, &mut d);
    let paths: Vec<String> = errors(&d).into_iter().map(|(p, _)| p).collect();
    assert_eq!(paths, ["timeouts.create", "timeouts.delete"]);

    let mut m = one_node(|_| {});
    m.timeouts = Some(bad);
    let paths: Vec<String> = errors(&cluster_diags(&m))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(paths, ["timeouts.create", "timeouts.delete"]);
}
