//! `waddle_network` through the provider's RPC handlers (in process, no CLI) against the PVE
//! emulator: create, read, drift, in-place updates, import, destroy, a subnet deleted by
//! hand, and a failed create that records exactly what exists. (Moved from the provider's
//! unit tests, which started the `waddle-sandbox` binary: the provider crate must not build
//! or run the acceptance crate.)

use std::net::Ipv4Addr;

use waddle_acceptance::pve::{EmulatorConfig, FaultConfig, FaultRule, PveEmulator};
use waddle_framework::prelude::*;
use waddle_provider::resources::network::{
    api_bool, api_str, dhcp_from_api, schema, DhcpRange, Network, NetworkState, TYPE_NAME,
};
use waddle_proxmox::{Client, Params};

/// A configuration value (computed attributes null), as in the provider's unit tests.
fn config(f: impl FnOnce(&mut NetworkState)) -> Value {
    let mut s = NetworkState {
        zone: Some("waddle".into()),
        vnet: Some("wdlnet".into()),
        cidr: Some("10.10.0.0/24".into()),
        snat: Some(true),
        timeouts: Some(waddle_provider::resources::timeouts::TimeoutsModel {
            create: Some("10m".into()),
            update: Some("20m".into()),
            delete: Some("5m".into()),
        }),
        ..Default::default()
    };
    f(&mut s);
    schema().from_typed(&s).unwrap()
}

async fn emulator(ip: Ipv4Addr, faults: &[&str]) -> PveEmulator {
    let mut fc = FaultConfig::new(0);
    for f in faults {
        fc.rules.push(FaultRule::parse(f).expect("fault rule"));
    }
    PveEmulator::start(EmulatorConfig::builder().ip(ip).faults(fc).build())
        .await
        .expect("PVE emulator")
}

#[allow(dead_code)] // `inproc::talos` is for other targets
mod inproc;
use inproc::{client, harness};

/// (zones, vnets, subnets of `vnet`) in the emulator, pending view.
async fn sdn_objects(c: &Client, vnet: &str) -> (Vec<String>, Vec<String>, Vec<serde_json::Value>) {
    let names = |v: serde_json::Value, k: &str| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|o| api_str(o, k)).collect())
            .unwrap_or_default()
    };
    let zones: serde_json::Value = c.get("/cluster/sdn/zones", &Params::new()).await.unwrap();
    let vnets: serde_json::Value = c.get("/cluster/sdn/vnets", &Params::new()).await.unwrap();
    let subnets = match c.list_sdn_subnets(vnet).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => vec![],
        Err(e) => panic!("{e}"),
    };
    (names(zones, "zone"), names(vnets, "vnet"), subnets)
}

async fn applied(c: &Client) -> bool {
    // Nothing pending: every object's state is unset in the pending view.
    let zones: serde_json::Value = c
        .get("/cluster/sdn/zones", &Params::new().bool("pending", true))
        .await
        .unwrap();
    let vnets: serde_json::Value = c
        .get("/cluster/sdn/vnets", &Params::new().bool("pending", true))
        .await
        .unwrap();
    [zones, vnets]
        .iter()
        .flat_map(|l| l.as_array().cloned().unwrap_or_default())
        .all(|o| o.get("state").is_none())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_against_the_emulator() {
    let emu = emulator(Ipv4Addr::new(127, 10, 61, 1), &[]).await;
    let h = harness(&emu).await;
    let c = client(&emu);
    // No `alias` here: the emulator cannot check the schema's Perl pattern for it yet.
    let cfg = config(|_| {});

    // Create.
    let st = h
        .plan_and_apply(TYPE_NAME, &Value::Null, &cfg)
        .await
        .unwrap_or_else(|d| panic!("create: {d:?}"));
    let typed: NetworkState = st.to_typed().unwrap();
    assert_eq!(typed.id.as_deref(), Some("waddle/wdlnet"));
    assert_eq!(typed.bridge.as_deref(), Some("wdlnet"));
    let (zones, vnets, subnets) = sdn_objects(&c, "wdlnet").await;
    assert_eq!(zones, vec!["waddle"]);
    assert_eq!(vnets, vec!["wdlnet"]);
    assert_eq!(subnets.len(), 1);
    assert_eq!(
        api_str(&subnets[0], "gateway").as_deref(),
        Some("10.10.0.1")
    );
    assert!(api_bool(subnets[0].get("snat")));
    let zone = c.get_sdn_zone("waddle").await.unwrap().unwrap();
    assert_eq!(api_str(&zone, "type").as_deref(), Some("simple"));
    let vnet = c.get_sdn_vnet("wdlnet").await.unwrap().unwrap();
    assert_eq!(api_str(&vnet, "zone").as_deref(), Some("waddle"));
    assert!(vnet.get("tag").is_none(), "simple zone vnets are tag-less");
    assert!(applied(&c).await, "create must apply the SDN configuration");

    // Read: unchanged, then an empty plan.
    let r = h.read(TYPE_NAME, &st).await;
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    assert!(r.state.equals(&st), "read changed an unchanged network");
    let p = h.plan(TYPE_NAME, &r.state, &cfg).await;
    assert!(
        p.planned_state.equals(&r.state),
        "plan after create is not empty"
    );

    // Drift: snat switched off outside Terraform -> read shows it -> update in place.
    c.put(
        "/cluster/sdn/vnets/wdlnet/subnets/waddle-10.10.0.0-24",
        &Params::new().str("delete", "snat"),
    )
    .await
    .unwrap();
    let r = h.read(TYPE_NAME, &st).await;
    let drifted: NetworkState = r.state.to_typed().unwrap();
    assert_eq!(drifted.snat, Some(false), "drift not detected");
    let p = h.plan(TYPE_NAME, &r.state, &cfg).await;
    assert!(p.requires_replace.is_empty());
    let st = h.apply(TYPE_NAME, &r.state, &cfg, &p.planned_state).await;
    assert!(!st.diagnostics.has_errors(), "{:?}", st.diagnostics);
    let (_, _, subnets) = sdn_objects(&c, "wdlnet").await;
    assert!(api_bool(subnets[0].get("snat")), "drift not repaired");

    // In place: snat off, another gateway, a DHCP range, nodes.
    let cfg2 = config(|s| {
        s.snat = Some(false);
        s.gateway = Some("10.10.0.254".into());
        s.dhcp_range = Some(DhcpRange {
            start: "10.10.0.100".into(),
            end: "10.10.0.200".into(),
        });
        s.nodes = Some(vec!["pve".into()]);
    });
    let st2 = h
        .plan_and_apply(TYPE_NAME, &st.state, &cfg2)
        .await
        .unwrap_or_else(|d| panic!("update: {d:?}"));
    let (_, _, subnets) = sdn_objects(&c, "wdlnet").await;
    assert!(!api_bool(subnets[0].get("snat")));
    assert_eq!(
        api_str(&subnets[0], "gateway").as_deref(),
        Some("10.10.0.254")
    );
    assert_eq!(
        subnets[0].get("dhcp-range").and_then(dhcp_from_api),
        cfg2.to_typed::<NetworkState>().unwrap().dhcp_range
    );
    let zone = c.get_sdn_zone("waddle").await.unwrap().unwrap();
    assert_eq!(api_str(&zone, "dhcp").as_deref(), Some("dnsmasq"));
    assert_eq!(api_str(&zone, "nodes").as_deref(), Some("pve"));
    assert!(applied(&c).await);
    let r = h.read(TYPE_NAME, &st2).await;
    assert!(r.state.equals(&st2), "read after update differs");

    // Import by <zone>/<vnet> gives the same state.
    let mut d = Diagnostics::new();
    let imported = Typed(Network)
        .import_state(
            &Context::default(),
            ImportRequest {
                id: "waddle/wdlnet".into(),
                identity: None,
            },
            &mut d,
        )
        .await
        .unwrap();
    let r = h.read(TYPE_NAME, &imported).await;
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    // `timeouts` lives only in the configuration: an import cannot know it (the next plan
    // takes it from the configuration, as terraform-plugin-testing's import checks do).
    let mut want = st2.clone();
    want.set_path(&AttributePath::attr("timeouts"), Value::Null);
    assert!(
        r.state.equals(&want),
        "imported {:?} != {:?}",
        r.state,
        want
    );

    // Back to the defaults in place: DHCP off (range, then the zone's dnsmasq), every node.
    let p = h.plan(TYPE_NAME, &st2, &cfg).await;
    assert!(p.requires_replace.is_empty(), "{:?}", p.requires_replace);
    let st3 = h
        .plan_and_apply(TYPE_NAME, &st2, &cfg)
        .await
        .unwrap_or_else(|d| panic!("update back: {d:?}"));
    let (_, _, subnets) = sdn_objects(&c, "wdlnet").await;
    assert!(subnets[0].get("dhcp-range").is_none(), "{:?}", subnets[0]);
    assert!(api_bool(subnets[0].get("snat")));
    assert_eq!(
        api_str(&subnets[0], "gateway").as_deref(),
        Some("10.10.0.1")
    );
    let zone = c.get_sdn_zone("waddle").await.unwrap().unwrap();
    assert!(
        zone.get("dhcp").is_none() && zone.get("nodes").is_none(),
        "{zone}"
    );
    assert!(applied(&c).await);
    let r = h.read(TYPE_NAME, &st3).await;
    assert!(r.state.equals(&st3), "read after update back differs");

    // Destroy: nothing left, applied.
    h.plan_and_apply(TYPE_NAME, &st3, &Value::Null)
        .await
        .unwrap_or_else(|d| panic!("destroy: {d:?}"));
    let (zones, vnets, subnets) = sdn_objects(&c, "wdlnet").await;
    assert!(
        zones.is_empty() && vnets.is_empty() && subnets.is_empty(),
        "{zones:?} {vnets:?} {subnets:?}"
    );
    assert!(
        applied(&c).await,
        "destroy must apply the SDN configuration"
    );
    // Gone -> removed from state.
    let r = h.read(TYPE_NAME, &st3).await;
    assert!(r.state.is_null(), "a deleted network must leave the state");

    // Subnet deleted outside Terraform: read keeps the network but plans a replacement,
    // and destroy removes the rest.
    let st = h
        .plan_and_apply(TYPE_NAME, &Value::Null, &cfg)
        .await
        .unwrap_or_else(|d| panic!("create again: {d:?}"));
    c.delete_sdn_subnet("waddle", "wdlnet", "10.10.0.0/24")
        .await
        .unwrap();
    let r = h.read(TYPE_NAME, &st).await;
    let partial: NetworkState = r.state.to_typed().unwrap();
    assert_eq!(partial.cidr.as_deref(), Some(""));
    assert_eq!(partial.vnet.as_deref(), Some("wdlnet"));
    let p = h.plan(TYPE_NAME, &r.state, &cfg).await;
    assert_eq!(p.requires_replace, vec![AttributePath::attr("cidr")]);
    h.plan_and_apply(TYPE_NAME, &r.state, &Value::Null)
        .await
        .unwrap_or_else(|d| panic!("destroy: {d:?}"));
    let (zones, vnets, subnets) = sdn_objects(&c, "wdlnet").await;
    assert!(zones.is_empty() && vnets.is_empty() && subnets.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_create_records_what_exists_and_destroy_cleans_up() {
    let emu = emulator(
        Ipv4Addr::new(127, 10, 61, 2),
        &["POST /cluster/sdn/vnets/{vnet}/subnets=error:500:injected subnet failure@1"],
    )
    .await;
    let h = harness(&emu).await;
    let c = client(&emu);
    // A vnet name already taken by another zone's vnet is not ours to delete.
    c.create_sdn_simple_zone("other", false, &[]).await.unwrap();
    c.create_sdn_vnet("taken", "other", None).await.unwrap();

    let cfg = config(|_| {});
    let p = h.plan(TYPE_NAME, &Value::Null, &cfg).await;
    let a = h
        .apply(TYPE_NAME, &Value::Null, &cfg, &p.planned_state)
        .await;
    assert!(a.diagnostics.has_errors());
    let msg = format!("{:?}", a.diagnostics);
    assert!(msg.contains("injected subnet failure"), "{msg}");
    let partial: NetworkState = a.state.to_typed().unwrap();
    assert_eq!(partial.zone.as_deref(), Some("waddle"));
    assert_eq!(partial.vnet.as_deref(), Some("wdlnet"));
    assert_eq!(
        partial.cidr.as_deref(),
        Some(""),
        "the subnet was not created"
    );
    // The partial state plans a replacement; destroy removes what exists.
    let p = h.plan(TYPE_NAME, &a.state, &cfg).await;
    assert_eq!(p.requires_replace, vec![AttributePath::attr("cidr")]);
    h.plan_and_apply(TYPE_NAME, &a.state, &Value::Null)
        .await
        .unwrap_or_else(|d| panic!("destroy: {d:?}"));
    let (zones, vnets, _) = sdn_objects(&c, "wdlnet").await;
    assert_eq!(zones, vec!["other"]);
    assert_eq!(vnets, vec!["taken"]);

    // vnet name taken: only the zone is recorded, and destroy keeps the foreign vnet.
    let cfg = config(|s| s.vnet = Some("taken".into()));
    let p = h.plan(TYPE_NAME, &Value::Null, &cfg).await;
    let a = h
        .apply(TYPE_NAME, &Value::Null, &cfg, &p.planned_state)
        .await;
    assert!(a.diagnostics.has_errors());
    let partial: NetworkState = a.state.to_typed().unwrap();
    assert_eq!(partial.zone.as_deref(), Some("waddle"));
    assert_eq!(partial.vnet.as_deref(), Some(""));
    h.plan_and_apply(TYPE_NAME, &a.state, &Value::Null)
        .await
        .unwrap_or_else(|d| panic!("destroy: {d:?}"));
    let (zones, vnets, _) = sdn_objects(&c, "taken").await;
    assert_eq!(zones, vec!["other"]);
    assert_eq!(vnets, vec!["taken"]);
}
