//! Unit tests of `waddle_sni_proxy` (moved unchanged from `sni_proxy.rs`).

use super::validate::routing_from;
use super::*;
use crate::provider::ProviderConfig;
use crate::resources::vm::lifecycle::{image_file_name, parse_import_id};
use crate::resources::vm::Vm;
use crate::resources::vm::DEFAULT_IMAGE_URL;
use waddle_proxmox::VmConfig;

pub(crate) fn sample() -> SniProxyState {
    SniProxyState {
        id: Some("pve/120".into()),
        name: Some("sni-proxy".into()),
        node: Some("pve".into()),
        vmid: Some(120),
        storage: Some("local-lvm".into()),
        cores: Some(1),
        memory: Some(512),
        disk_size: Some(8),
        image_url: Some(DEFAULT_IMAGE_URL.into()),
        image_storage: Some("local".into()),
        public_nic: Some(PublicNic {
            bridge: "vmbr0".into(),
            cidr: "203.0.113.10/24".into(),
            gateway: Some("203.0.113.1".into()),
        }),
        private_nic: Some(PrivateNic {
            bridge: "vmbr1".into(),
            cidr: "10.10.0.10/24".into(),
        }),
        dns_servers: Some(vec!["1.1.1.1".into()]),
        admin_user: Some("waddle".into()),
        ssh_authorized_keys: Some(vec![
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq0mVwYk8lYy3oHfB8sOaZcLx9aJ7dQ ops".into(),
        ]),
        routes: Some(vec![Route {
            hostnames: vec![
                "teleport.example.org".into(),
                ".teleport.example.org".into(),
            ],
            backend: "10.10.0.2:3080".into(),
            proxy_protocol: Some(false),
            check: Some(true),
        }]),
        http_backend: Some("10.10.0.30:80".into()),
        listen: Some(Listen {
            https: Some(443),
            http: Some(80),
        }),
        maxconn: Some(4096),
        proxy_timeouts: Some(ProxyTimeouts {
            connect: Some("5s".into()),
            client: Some("1m".into()),
            server: Some("1m".into()),
            tunnel: Some("1h".into()),
            inspect: Some("5s".into()),
        }),
        timeouts: Some(super::timeouts::TimeoutsModel {
            create: Some("10m".into()),
            update: Some("20m".into()),
            delete: Some("5m".into()),
        }),
        haproxy_cfg: Some("global\n".into()),
        exact_map: Some("teleport.example.org be_route_0\n".into()),
        wildcard_map: Some(".teleport.example.org be_route_0\n".into()),
        config_hash: Some("ab".repeat(32)),
        public_address: Some("203.0.113.10".into()),
        private_address: Some("10.10.0.10".into()),
        seed_iso: Some("local:iso/waddle-sni-proxy-120-seed.iso".into()),
    }
}

fn config_value(mut f: impl FnMut(&mut SniProxyState)) -> Value {
    let mut s = sample();
    for computed in [
        &mut s.id,
        &mut s.haproxy_cfg,
        &mut s.exact_map,
        &mut s.wildcard_map,
        &mut s.config_hash,
        &mut s.public_address,
        &mut s.private_address,
        &mut s.seed_iso,
    ] {
        *computed = None;
    }
    f(&mut s);
    schema().from_typed(&s).unwrap()
}

fn errors(v: &Value) -> Vec<(String, String)> {
    let mut d = Diagnostics::new();
    validate(v, &mut d);
    waddle_framework::testing::errors(&d)
}

#[test]
fn schema_and_state_type_agree() {
    assert!(schema().check().is_empty(), "{}", schema().check());
    assert_roundtrip(&schema(), &sample());
}

#[test]
fn schema_descriptions_state_defaults_and_replacement() {
    let s = schema();
    for (name, needle) in [
        ("cores", "Default `1`"),
        ("memory", "Default `512`"),
        ("disk_size", "Default `8`"),
        ("maxconn", "Default `4096`"),
        ("storage", "Default `local-lvm`"),
        ("listen", "443"),
        ("proxy_timeouts", "tunnel = \"1h\""),
    ] {
        let a = s.block.attributes.get(name).unwrap();
        assert!(a.description.contains(needle), "{name}: {}", a.description);
    }
    for name in [
        "node",
        "vmid",
        "storage",
        "image_url",
        "image_storage",
        "public_nic",
        "private_nic",
        "admin_user",
        "ssh_authorized_keys",
        "dns_servers",
        "disk_size",
    ] {
        assert!(
            s.block.attributes[name].has_modifier(&PlanModifier::RequiresReplace),
            "{name} must force replacement"
        );
    }
    for name in [
        "routes",
        "http_backend",
        "listen",
        "maxconn",
        "proxy_timeouts",
    ] {
        assert!(
            !s.block.attributes[name].has_modifier(&PlanModifier::RequiresReplace),
            "{name} is updated in place"
        );
    }
    for a in s.block.attributes.values() {
        assert!(!a.description.is_empty());
    }
}

#[test]
fn a_valid_configuration_has_no_errors() {
    assert_eq!(errors(&config_value(|_| {})), vec![]);
}

#[test]
fn routing_errors_carry_attribute_paths() {
    let v = config_value(|s| {
        s.routes = Some(vec![
            Route {
                hostnames: vec!["a.example.org".into(), "*.apps.example.org".into()],
                backend: "10.10.0.2:443".into(),
                proxy_protocol: None,
                check: None,
            },
            Route {
                hostnames: vec![
                    "bad_name.example.org".into(),
                    ".apps.example.org".into(),
                    "*".into(),
                ],
                backend: "10.10.0.3".into(),
                proxy_protocol: None,
                check: None,
            },
        ]);
        s.http_backend = Some("10.10.0.30:0".into());
        s.maxconn = Some(0);
        s.proxy_timeouts.as_mut().unwrap().tunnel = Some("forever".into());
        s.listen.as_mut().unwrap().http = Some(443);
    });
    let errs = errors(&v);
    let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
    for want in [
        "routes[1].hostnames[0]",
        "routes[1].hostnames[1]",
        "routes[1].hostnames[2]",
        "routes[1].backend",
        "http_backend",
        "maxconn",
        "proxy_timeouts.tunnel",
    ] {
        assert!(paths.contains(&want), "missing {want} in {errs:?}");
    }
    let dup = errs
        .iter()
        .find(|(p, _)| p == "routes[1].hostnames[1]")
        .unwrap();
    assert!(dup.1.contains("routes[0].hostnames[1]"), "{dup:?}");
}

#[test]
fn vm_errors_carry_attribute_paths() {
    let v = config_value(|s| {
        s.node = Some("-bad".into());
        s.vmid = Some(5);
        s.storage = Some("Local".into());
        s.image_url = Some("https://example.org/debian.iso".into());
        s.public_nic.as_mut().unwrap().cidr = "203.0.113.10".into();
        s.public_nic.as_mut().unwrap().gateway = Some("gw".into());
        s.private_nic.as_mut().unwrap().bridge = "1bad".into();
        s.dns_servers = Some(vec!["one.one".into()]);
        s.admin_user = Some("root".into());
        s.ssh_authorized_keys = Some(vec!["not a key".into()]);
        s.name = Some("bad_host".into());
        s.memory = Some(64);
    });
    let errs = errors(&v);
    let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
    for want in [
        "node",
        "vmid",
        "storage",
        "image_url",
        "public_nic.cidr",
        "public_nic.gateway",
        "private_nic.bridge",
        "dns_servers[0]",
        "admin_user",
        "ssh_authorized_keys[0]",
        "name",
        "memory",
    ] {
        assert!(paths.contains(&want), "missing {want} in {errs:?}");
    }
}

#[test]
fn unknown_values_are_tolerated_and_known_ones_still_checked() {
    let mut v = config_value(|s| {
        s.routes.as_mut().unwrap().push(Route {
            hostnames: vec!["x.example.org".into()],
            backend: "10.10.0.9".into(),
            proxy_protocol: None,
            check: None,
        });
    });
    // Route 0 backend unknown, keys unknown, public NIC cidr unknown, node unknown.
    v.set_path(
        &AttributePath::attr("routes")
            .then_index(0)
            .then_attr("backend"),
        Value::unknown(),
    );
    v.set_path(
        &AttributePath::attr("ssh_authorized_keys"),
        Value::unknown(),
    );
    v.set_path(
        &AttributePath::attr("public_nic").then_attr("cidr"),
        Value::unknown(),
    );
    v.set_path(&AttributePath::attr("node"), Value::unknown());
    v.set_path(&AttributePath::attr("maxconn"), Value::unknown());
    let errs = errors(&v);
    // Only the known bad backend of route 1, reported at its original index.
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, "routes[1].backend");
    // Everything unknown: nothing to report.
    let mut all = schema().null_value();
    for k in ["routes", "public_nic", "private_nic", "ssh_authorized_keys"] {
        all.set_path(&AttributePath::attr(k), Value::unknown());
    }
    assert_eq!(errors(&all), vec![]);
}

#[test]
fn routing_renders_like_the_library() {
    let st = sample();
    let r = st.rendered().unwrap();
    let direct = waddle_haproxy::render_versioned(&st.routing_spec().unwrap()).unwrap();
    assert_eq!(r, direct);
    assert!(r.haproxy_cfg.contains("timeout tunnel 1h"));
    assert!(r.exact_map.contains("teleport.example.org"));
    // The config value path gives the same spec as the typed state.
    let mut d = Diagnostics::new();
    let routing = routing_from(&schema().from_typed(&st).unwrap(), &mut d);
    assert!(routing.complete && d.is_empty());
    assert_eq!(routing.spec, st.routing_spec().unwrap());
}

fn provider_ctx(node: Option<&str>) -> Context {
    let cfg = ProviderConfig {
        node: node.map(str::to_string),
        ..Default::default()
    };
    Context::new(
        Default::default(),
        Some(std::sync::Arc::new(cfg) as ProviderData),
        "1.0.3",
    )
}

fn run_plan(ctx: &Context, config: &Value, prior: &Value, planned: Value) -> (Plan, Diagnostics) {
    let req = PlanRequest {
        config: config.clone(),
        prior_state: prior.clone(),
        proposed_new_state: planned.clone(),
    };
    let mut plan = Plan {
        state: planned,
        requires_replace: Vec::new(),
    };
    let mut d = Diagnostics::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(Vm(SniProxy).modify_plan(ctx, &req, &mut plan, &mut d));
    (plan, d)
}

#[test]
fn create_plan_fills_node_addresses_and_rendered_config() {
    let config = config_value(|s| {
        s.node = None;
        s.vmid = None;
    });
    let mut planned = config.clone();
    for k in [
        "id",
        "node",
        "vmid",
        "haproxy_cfg",
        "exact_map",
        "wildcard_map",
        "config_hash",
        "public_address",
        "private_address",
        "seed_iso",
    ] {
        planned.set_path(&AttributePath::attr(k), Value::unknown());
    }
    let (plan, d) = run_plan(
        &provider_ctx(Some("pve2")),
        &config,
        &Value::Null,
        planned.clone(),
    );
    assert!(d.is_empty(), "{d}");
    let st = &plan.state;
    assert_eq!(st.get_attr("node").and_then(Value::as_str), Some("pve2"));
    assert!(
        st.get_attr("id").unwrap().is_unknown(),
        "id waits for the vmid"
    );
    assert_eq!(
        st.get_attr("public_address").and_then(Value::as_str),
        Some("203.0.113.10")
    );
    assert_eq!(
        st.get_attr("private_address").and_then(Value::as_str),
        Some("10.10.0.10")
    );
    let expected = sample().rendered().unwrap();
    assert_eq!(
        st.get_attr("config_hash").and_then(Value::as_str),
        Some(expected.config_hash.as_str())
    );
    assert_eq!(
        st.get_attr("haproxy_cfg").and_then(Value::as_str),
        Some(expected.haproxy_cfg.as_str())
    );
    // No node anywhere: an error at `node`.
    let (_, d) = run_plan(&provider_ctx(None), &config, &Value::Null, planned.clone());
    assert_eq!(
        d.errors().next().and_then(|e| e.attribute.clone()),
        Some(AttributePath::attr("node"))
    );
    // Routing unknown: rendered outputs stay unknown.
    let mut unknown_routes = planned;
    unknown_routes.set_path(&AttributePath::attr("routes"), Value::unknown());
    let (plan, d) = run_plan(
        &provider_ctx(Some("pve")),
        &config,
        &Value::Null,
        unknown_routes,
    );
    assert!(d.is_empty());
    assert!(plan.state.get_attr("config_hash").unwrap().is_unknown());
}

#[test]
fn drifted_hash_plans_an_update_back_and_imports_do_not_replace() {
    let mut st = sample();
    st.set_rendered(&st.rendered().unwrap());
    let good = schema().from_typed(&st).unwrap();
    let mut drifted = good.clone();
    drifted.set_path(
        &AttributePath::attr("config_hash"),
        Value::from("0".repeat(64)),
    );
    let config = config_value(|_| {});
    let (plan, d) = run_plan(
        &provider_ctx(Some("pve")),
        &config,
        &drifted,
        drifted.clone(),
    );
    assert!(d.is_empty(), "{d}");
    assert_eq!(
        plan.state.get_attr("config_hash").and_then(Value::as_str),
        st.config_hash.as_deref(),
        "the plan puts the expected hash back"
    );
    // An imported prior state (cloud-init inputs null) adopts the configuration without
    // replacement, but a real change of a placement attribute still replaces.
    let mut imported = good.clone();
    for k in [
        "public_nic",
        "private_nic",
        "admin_user",
        "ssh_authorized_keys",
        "image_url",
        "dns_servers",
    ] {
        imported.set_path(&AttributePath::attr(k), Value::Null);
    }
    let req = PlanRequest {
        config: config.clone(),
        prior_state: imported.clone(),
        proposed_new_state: good.clone(),
    };
    let mut plan = Plan {
        state: good.clone(),
        requires_replace: vec![
            AttributePath::attr("public_nic"),
            AttributePath::attr("ssh_authorized_keys"),
            AttributePath::attr("storage"),
        ],
    };
    let mut d = Diagnostics::new();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(Vm(SniProxy).modify_plan(&provider_ctx(Some("pve")), &req, &mut plan, &mut d));
    assert_eq!(plan.requires_replace, vec![AttributePath::attr("storage")]);
}

#[test]
fn partial_timeouts_take_defaults_in_the_plan() {
    let mut config = config_value(|s| {
        s.proxy_timeouts = Some(ProxyTimeouts {
            connect: None,
            client: None,
            server: None,
            tunnel: Some("2h".into()),
            inspect: None,
        });
    });
    config.set_path(&AttributePath::attr("node"), Value::from("pve"));
    let mut planned = config.clone();
    for t in ["connect", "client", "server", "inspect"] {
        planned.set_path(
            &AttributePath::attr("proxy_timeouts").then_attr(t),
            Value::unknown(),
        );
    }
    let (plan, d) = run_plan(&provider_ctx(Some("pve")), &config, &Value::Null, planned);
    assert!(d.is_empty(), "{d}");
    let t = plan.state.get_attr("proxy_timeouts").unwrap();
    assert_eq!(t.get_attr("connect").and_then(Value::as_str), Some("5s"));
    assert_eq!(t.get_attr("tunnel").and_then(Value::as_str), Some("2h"));
    let cfg = plan
        .state
        .get_attr("haproxy_cfg")
        .and_then(Value::as_str)
        .unwrap();
    assert!(cfg.contains("timeout tunnel 2h"), "{cfg}");
}

#[test]
fn import_ids() {
    assert_eq!(
        parse_import_id("pve/120").unwrap(),
        (Some("pve".into()), 120)
    );
    assert_eq!(parse_import_id("120").unwrap(), (None, 120));
    for bad in ["pve/", "pve/abc", "99", "-x/120", "a/b/c"] {
        assert!(parse_import_id(bad).is_err(), "{bad}");
    }
}

#[test]
fn image_names() {
    assert_eq!(
        image_file_name(DEFAULT_IMAGE_URL).unwrap(),
        "debian-12-genericcloud-amd64.qcow2"
    );
    assert!(image_file_name("https://x.org/").is_err());
    assert!(image_file_name("ftp://x.org/a.qcow2").is_err());
    assert!(image_file_name("https://x.org/a.iso").is_err());
}

#[test]
fn config_refresh_reads_vm_attributes() {
    let cfg = VmConfig(
        serde_json::from_value(serde_json::json!({
            "name": "edge",
            "cores": 2,
            "memory": "1024",
            "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr7",
            "net1": "virtio=BC:24:11:00:00:02,bridge=vmbr8",
            "scsi0": "fast:vm-120-disk-0,discard=on,size=10G",
            "ide2": "iso:iso/waddle-sni-proxy-120-seed.iso,media=cdrom"
        }))
        .unwrap(),
    );
    let mut st = sample();
    crate::resources::vm::ops::refresh_from_config::<SniProxy>(&mut st, &cfg, false);
    assert_eq!(st.name.as_deref(), Some("edge"));
    assert_eq!(st.cores, Some(2));
    assert_eq!(st.memory, Some(1024));
    assert_eq!(st.public_nic.as_ref().unwrap().bridge, "vmbr7");
    assert_eq!(st.private_nic.as_ref().unwrap().bridge, "vmbr8");
    assert_eq!(st.storage.as_deref(), Some("fast"));
    assert_eq!(st.disk_size, Some(8), "not refreshed outside import");
    let mut imported: SniProxyState = schema().null_value().to_typed().unwrap();
    crate::resources::vm::ops::refresh_from_config::<SniProxy>(&mut imported, &cfg, true);
    assert_eq!(imported.disk_size, Some(10));
    assert_eq!(imported.image_storage.as_deref(), Some("iso"));
    assert!(imported.public_nic.is_none());
}

#[test]
fn golden_v0_state_reads_back() {
    assert_eq!(schema().version, 0);
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/waddle_sni_proxy.v0.json");
    waddle_framework::testing::assert_golden_state(&schema(), &golden, &sample());
}
