//! Unit tests of `waddle_network` (moved from `network.rs`; the lifecycle tests against
//! the PVE emulator are in `acceptance-tests/tests/network_lifecycle.rs`).

use std::net::Ipv4Addr;

use super::model::{nodes_from_api, refresh, same_set, Found};
use super::*;
use waddle_framework::testing::Harness;

use crate::provider::{NoEnv, WaddleProvider};

fn sample() -> NetworkState {
    NetworkState {
        id: Some("waddle/wdlnet".into()),
        zone: Some("waddle".into()),
        vnet: Some("wdlnet".into()),
        alias: Some("waddle private".into()),
        cidr: Some("10.10.0.0/24".into()),
        gateway: Some("10.10.0.1".into()),
        snat: Some(true),
        dhcp_range: Some(DhcpRange {
            start: "10.10.0.100".into(),
            end: "10.10.0.200".into(),
        }),
        nodes: Some(vec!["pve".into()]),
        bridge: Some("wdlnet".into()),
        timeouts: Some(super::timeouts::TimeoutsModel {
            create: Some("10m".into()),
            update: Some("20m".into()),
            delete: Some("5m".into()),
        }),
    }
}

/// A configuration value (computed attributes null).
fn config(f: impl FnOnce(&mut NetworkState)) -> Value {
    let mut s = sample();
    s.id = None;
    s.bridge = None;
    s.gateway = None;
    s.dhcp_range = None;
    s.nodes = None;
    s.alias = None;
    f(&mut s);
    schema().from_typed(&s).unwrap()
}

fn errors(v: &Value) -> Vec<(String, String)> {
    let mut d = Diagnostics::new();
    validate(v, &mut d);
    waddle_framework::testing::errors(&d)
}

fn paths(v: &Value) -> Vec<String> {
    errors(v).into_iter().map(|(p, _)| p).collect()
}

#[test]
fn schema_and_state_type_agree() {
    assert!(schema().check().is_empty(), "{:?}", schema().check());
    assert_roundtrip(&schema(), &sample());
}

#[test]
fn descriptions_state_defaults_and_replacement() {
    let s = schema();
    for (name, needle) in [
        ("snat", "Default `true`"),
        ("gateway", "first host"),
        ("dhcp_range", "Unset (default): no DHCP"),
        ("nodes", "every node"),
        ("alias", "Unset (default)"),
    ] {
        let a = &s.block.attributes[name];
        assert!(a.description.contains(needle), "{name}: {}", a.description);
    }
    for name in ["zone", "vnet", "cidr"] {
        assert!(
            s.block.attributes[name].has_modifier(&PlanModifier::RequiresReplace),
            "{name} must force replacement"
        );
    }
    for name in ["alias", "gateway", "snat", "dhcp_range", "nodes"] {
        assert!(
            !s.block.attributes[name].has_modifier(&PlanModifier::RequiresReplace),
            "{name} is updated in place"
        );
    }
    assert!(s.block.description.contains("<zone>/<vnet>"));
    // Terraform 1.0 crashes planning a null single nested attribute: plain object type.
    assert!(matches!(
        s.block.attributes["dhcp_range"].ty,
        waddle_framework::AttributeType::Type(_)
    ));
    for a in s.block.attributes.values() {
        assert!(!a.description.is_empty());
    }
}

#[test]
fn sdn_ids_follow_pve() {
    for ok in ["waddle", "z1", "wdlnet", "abcdefgh", "Zone1"] {
        assert!(validate_sdn_id(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "a",
        "abcdefghi",
        "1zone",
        "wad-net",
        "wad_net",
        "wad.net",
        "zöne",
    ] {
        assert!(validate_sdn_id(bad).is_err(), "{bad}");
    }
}

#[test]
fn network_arithmetic() {
    assert_eq!(
        parse_network("10.10.0.0/24").unwrap(),
        (Ipv4Addr::new(10, 10, 0, 0), 24)
    );
    assert_eq!(
        first_host("10.10.0.0/24"),
        Some(Ipv4Addr::new(10, 10, 0, 1))
    );
    assert_eq!(
        first_host("172.16.4.0/22"),
        Some(Ipv4Addr::new(172, 16, 4, 1))
    );
    let e = parse_network("10.10.0.1/24").unwrap_err();
    assert!(e.to_string().contains("10.10.0.0/24"), "{e}");
    for bad in [
        "10.10.0.0",
        "10.10.0.0/31",
        "10.10.0.0/0",
        "10.10.0/24",
        "fd00::/64",
        "x/24",
    ] {
        assert!(parse_network(bad).is_err(), "{bad}");
    }
    let net = parse_network("10.10.0.0/24").unwrap();
    assert!(check_host(net, "10.10.0.254").is_ok());
    assert!(check_host(net, "10.10.0.0")
        .unwrap_err()
        .to_string()
        .contains("network address"));
    assert!(check_host(net, "10.10.0.255")
        .unwrap_err()
        .to_string()
        .contains("broadcast"));
    assert!(check_host(net, "10.10.1.1")
        .unwrap_err()
        .to_string()
        .contains("not inside"));
}

#[test]
fn a_valid_configuration_has_no_errors() {
    assert_eq!(errors(&config(|_| {})), vec![]);
    let full = config(|s| {
        s.gateway = Some("10.10.0.254".into());
        s.alias = Some("Waddle (private) net-1".into());
        s.dhcp_range = sample().dhcp_range;
        s.nodes = Some(vec!["pve".into(), "pve2".into()]);
    });
    assert_eq!(errors(&full), vec![]);
}

#[test]
fn errors_carry_attribute_paths() {
    let v = config(|s| {
        s.zone = Some("waddle-zone".into());
        s.vnet = Some("1net".into());
        s.alias = Some("bad{alias}".into());
        s.cidr = Some("10.10.0.5/24".into());
    });
    let p = paths(&v);
    for want in ["zone", "vnet", "alias", "cidr"] {
        assert!(p.contains(&want.to_string()), "missing {want} in {p:?}");
    }
    // Gateway outside / network / broadcast.
    for (gw, needle) in [
        ("10.20.0.1", "not inside"),
        ("10.10.0.0", "network address"),
        ("10.10.0.255", "broadcast"),
        ("ten", "not an IPv4"),
    ] {
        let e = errors(&config(|s| s.gateway = Some(gw.into())));
        assert_eq!(e.len(), 1, "{gw}: {e:?}");
        assert_eq!(e[0].0, "gateway");
        assert!(e[0].1.contains(needle), "{gw}: {}", e[0].1);
    }
    // DHCP range: outside, reversed, containing the (default) gateway.
    let range = |a: &str, b: &str| {
        config(|s| {
            s.dhcp_range = Some(DhcpRange {
                start: a.into(),
                end: b.into(),
            })
        })
    };
    assert_eq!(
        paths(&range("10.10.1.10", "10.10.0.20")),
        vec!["dhcp_range.start"]
    );
    assert_eq!(
        paths(&range("10.10.0.10", "10.10.0.255")),
        vec!["dhcp_range.end"]
    );
    assert_eq!(
        paths(&range("10.10.0.50", "10.10.0.20")),
        vec!["dhcp_range.end"]
    );
    let e = errors(&range("10.10.0.1", "10.10.0.20"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "dhcp_range");
    assert!(e[0].1.contains("gateway 10.10.0.1"), "{}", e[0].1);
    // Nodes.
    let e = paths(&config(|s| {
        s.nodes = Some(vec!["pve".into(), "-x".into(), "pve".into()])
    }));
    assert_eq!(e, vec!["nodes[1]", "nodes[2]"]);
    assert_eq!(paths(&config(|s| s.nodes = Some(vec![]))), vec!["nodes"]);
}

#[test]
fn unknown_values_are_skipped_and_known_ones_checked() {
    let mut v = config(|s| s.gateway = Some("10.99.0.1".into()));
    v.set_path(&AttributePath::attr("cidr"), Value::unknown());
    v.set_path(&AttributePath::attr("zone"), Value::unknown());
    assert_eq!(
        errors(&v),
        vec![],
        "gateway cannot be checked against an unknown cidr"
    );
    v.set_path(&AttributePath::attr("vnet"), Value::from("bad-net"));
    assert_eq!(paths(&v), vec!["vnet"]);
    let mut all = schema().null_value();
    for k in ["zone", "vnet", "cidr", "gateway", "dhcp_range", "nodes"] {
        all.set_path(&AttributePath::attr(k), Value::unknown());
    }
    assert_eq!(errors(&all), vec![]);
}

#[test]
fn documented_example_is_the_file_the_docs_use() {
    let path = crate::docs::repo_root().join("examples/resources/waddle_network/resource.tf");
    let file = std::fs::read_to_string(&path).expect("example file");
    assert_eq!(file, EXAMPLE, "{} differs from EXAMPLE", path.display());
}

#[test]
fn import_ids() {
    assert_eq!(
        parse_import_id("waddle/wdlnet").unwrap(),
        ("waddle".into(), "wdlnet".into())
    );
    for bad in [
        "waddle",
        "waddle/",
        "/wdlnet",
        "wad-dle/net1",
        "a/b/c",
        "waddle/toolongvnet",
    ] {
        assert!(parse_import_id(bad).is_err(), "{bad}");
    }
}

#[test]
fn api_values_are_read_in_both_shapes() {
    use serde_json::json;
    let want = DhcpRange {
        start: "10.10.0.100".into(),
        end: "10.10.0.200".into(),
    };
    assert_eq!(
        dhcp_from_api(&json!([
            "start-address=10.10.0.100,end-address=10.10.0.200"
        ])),
        Some(want.clone())
    );
    assert_eq!(
        dhcp_from_api(&json!([{"start-address": "10.10.0.100", "end-address": "10.10.0.200"}])),
        Some(want)
    );
    assert_eq!(dhcp_from_api(&json!([])), None);
    assert!(
        api_bool(Some(&json!(1))) && api_bool(Some(&json!(true))) && api_bool(Some(&json!("1")))
    );
    assert!(!api_bool(Some(&json!(0))) && !api_bool(None));
    assert_eq!(
        nodes_from_api(&json!({"nodes": "pve,pve2"})),
        Some(vec!["pve".to_string(), "pve2".to_string()])
    );
    assert!(same_set(
        &Some(vec!["a".into(), "b".into()]),
        &Some(vec!["b".into(), "a".into()])
    ));
    assert!(same_set(&None, &Some(vec![])));
    // Refresh takes drifted values from the API objects.
    let mut st = sample();
    refresh(
        &mut st,
        &Found {
            zone: Some(json!({"zone": "waddle", "type": "simple"})),
            vnet: Some(json!({"vnet": "wdlnet", "zone": "waddle"})),
            subnet: Some(json!({"cidr": "10.10.0.0/24", "gateway": "10.10.0.254"})),
            subnets: vec![],
        },
    );
    assert_eq!(st.snat, Some(false));
    assert_eq!(st.gateway.as_deref(), Some("10.10.0.254"));
    assert_eq!(st.alias, None);
    assert_eq!(st.nodes, None);
    assert_eq!(st.dhcp_range, None);
}

async fn harness() -> Harness {
    let h = Harness::new(WaddleProvider::with_env(NoEnv));
    let d = h.configure(crate::provider::schema().null_value()).await;
    assert!(!d.has_errors(), "{d:?}");
    h
}

#[tokio::test]
async fn plans_compute_gateway_id_bridge_and_replacement() {
    let h = harness().await;
    let cfg = config(|_| {});
    let d = h.validate_resource(TYPE_NAME, cfg.clone()).await;
    assert!(d.is_empty(), "{d:?}");
    let p = h.plan(TYPE_NAME, &Value::Null, &cfg).await;
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    let planned: NetworkState = p.planned_state.to_typed().unwrap();
    assert_eq!(planned.gateway.as_deref(), Some("10.10.0.1"));
    assert_eq!(planned.id.as_deref(), Some("waddle/wdlnet"));
    assert_eq!(planned.bridge.as_deref(), Some("wdlnet"));
    assert_eq!(planned.snat, Some(true));

    // From an existing state: no change, in-place changes, replacing changes.
    let prior = p.planned_state.clone();
    let same = h.plan(TYPE_NAME, &prior, &cfg).await;
    assert!(same.planned_state.equals(&prior), "no-op plan differs");
    assert!(same.requires_replace.is_empty());

    let snat_off = config(|s| s.snat = Some(false));
    let p2 = h.plan(TYPE_NAME, &prior, &snat_off).await;
    assert!(p2.requires_replace.is_empty(), "{:?}", p2.requires_replace);
    let st2: NetworkState = p2.planned_state.to_typed().unwrap();
    assert_eq!(st2.snat, Some(false));
    assert_eq!(st2.gateway.as_deref(), Some("10.10.0.1"));

    let gw = config(|s| s.gateway = Some("10.10.0.254".into()));
    let p3 = h.plan(TYPE_NAME, &prior, &gw).await;
    assert!(p3.requires_replace.is_empty(), "{:?}", p3.requires_replace);

    let moved = config(|s| s.cidr = Some("10.20.0.0/16".into()));
    let p4 = h.plan(TYPE_NAME, &prior, &moved).await;
    assert_eq!(
        p4.requires_replace,
        vec![AttributePath::attr("cidr")],
        "cidr forces replacement"
    );
    let st4: NetworkState = p4.planned_state.to_typed().unwrap();
    assert_eq!(
        st4.gateway.as_deref(),
        Some("10.20.0.1"),
        "gateway follows cidr"
    );

    let renamed = config(|s| s.vnet = Some("other".into()));
    let p5 = h.plan(TYPE_NAME, &prior, &renamed).await;
    assert_eq!(p5.requires_replace, vec![AttributePath::attr("vnet")]);
    let st5: NetworkState = p5.planned_state.to_typed().unwrap();
    assert_eq!(st5.bridge.as_deref(), Some("other"));
    assert_eq!(st5.id.as_deref(), Some("waddle/other"));

    // A part found missing by read ("") plans a replacement.
    let mut broken = prior.clone();
    broken.set_path(&AttributePath::attr("cidr"), Value::from(""));
    let p6 = h.plan(TYPE_NAME, &broken, &cfg).await;
    assert_eq!(p6.requires_replace, vec![AttributePath::attr("cidr")]);

    // Plan-time errors come with paths and before any API call (no endpoint configured).
    let bad = config(|s| s.gateway = Some("10.10.0.255".into()));
    let d = h.validate_resource(TYPE_NAME, bad).await;
    let e: Vec<_> = d.errors().collect();
    assert_eq!(e.len(), 1, "{d:?}");
    assert_eq!(e[0].attribute, Some(AttributePath::attr("gateway")));
}

#[test]
fn golden_v0_state_reads_back() {
    assert_eq!(schema().version, 0);
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/waddle_network.v0.json");
    waddle_framework::testing::assert_golden_state(&schema(), &golden, &sample());
}
