//! `waddle_network`: the SDN zone, vnet and subnet. (Lost responses to each create are
//! `cli_network::lost_response_to_the_{zone,vnet,subnet}_create_is_adopted`, through the CLI.)

use super::*;
use waddle_provider::resources::network::{self, NetworkState, TYPE_NAME};

const ZONE: &str = "wfault";
const VNET: &str = "wfnet";
const CIDR: &str = "10.77.0.0/24";

fn config() -> Value {
    let s = NetworkState {
        zone: Some(ZONE.into()),
        vnet: Some(VNET.into()),
        cidr: Some(CIDR.into()),
        ..Default::default()
    };
    let mut v = network::schema().from_typed(&s).expect("config");
    // Computed attributes are null in a configuration.
    for a in ["id", "bridge", "gateway", "snat", "nodes"] {
        v.set_path(&AttributePath::attr(a), Value::Null);
    }
    v
}

/// The SDN objects in the emulator, pending ones included: zone ids, vnet ids, subnet ids of
/// our vnet.
async fn sdn(emu: &PveEmulator) -> (Vec<String>, Vec<String>, Vec<String>) {
    let c = client(emu);
    let ids = |path: &'static str, key: &'static str| {
        let c = c.clone();
        async move {
            let v: serde_json::Value = c
                .get(path, &waddle_proxmox::Params::new().str("pending", "1"))
                .await
                .expect("list");
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter(|o| o.get("state").and_then(|s| s.as_str()) != Some("deleted"))
                        .filter_map(|o| o.get(key).and_then(|k| k.as_str()).map(str::to_string))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        }
    };
    let zones = ids("/cluster/sdn/zones", "zone").await;
    let vnets = ids("/cluster/sdn/vnets", "vnet").await;
    let subnets = if vnets.iter().any(|v| v == VNET) {
        c.list_sdn_subnets(VNET)
            .await
            .expect("subnets")
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        Vec::new()
    };
    (zones, vnets, subnets)
}

async fn nothing_left(emu: &PveEmulator) {
    let left = sdn(emu).await;
    assert!(
        left.0.is_empty() && left.1.is_empty() && left.2.is_empty(),
        "SDN objects left: {left:?}"
    );
}

/// After an apply: exactly our zone, vnet and subnet exist, and read + plan are empty.
async fn converged(h: &Harness, emu: &PveEmulator, state: &Value) -> Value {
    let (zones, vnets, subnets) = sdn(emu).await;
    assert_eq!((zones, vnets), (vec![ZONE.into()], vec![VNET.into()]));
    assert_eq!(subnets.len(), 1, "{subnets:?}");
    refresh_then_empty_plan(h, TYPE_NAME, state, &config()).await
}

/// The create fails after each object exists (the vnet create, the subnet create, the SDN
/// apply): the state returned records exactly what was created; replacing the tainted
/// resource (destroy, then create) converges with an empty plan, and destroy leaves nothing.
#[test]
fn error_after_each_object_exists() {
    if skip_on_real_pve("network error_after_each_object_exists") {
        return;
    }
    let cases = [
        ("POST /cluster/sdn/vnets", 1),
        ("POST /cluster/sdn/vnets/{vnet}/subnets", 2),
        ("PUT /cluster/sdn", 3),
    ];
    for (endpoint, host) in cases {
        let faults = FaultConfig::new(21).rule(
            FaultRule::new(
                endpoint,
                FaultKind::Error {
                    status: 500,
                    reason: "injected failure".into(),
                },
                1.0,
            )
            .max_hits(1),
        );
        runtime().block_on(async {
            let emu = emulator(Ipv4Addr::new(127, 40, 93, host), faults).await;
            let h = harness(&emu).await;
            let (failed, errors) = create_state(&h, TYPE_NAME, &config()).await;
            assert!(errors.contains("injected failure"), "{endpoint}: {errors}");
            assert!(!failed.is_null(), "{endpoint}: what exists is recorded");
            let (zones, vnets, _) = sdn(&emu).await;
            assert_eq!(zones, vec![ZONE.to_string()], "{endpoint}");
            let recorded_vnet = failed.get_attr("vnet").and_then(Value::as_str);
            assert_eq!(
                recorded_vnet == Some(VNET),
                vnets.contains(&VNET.to_string()),
                "{endpoint}: the vnet is recorded exactly when it exists"
            );
            destroy_state(&h, TYPE_NAME, &failed).await;
            nothing_left(&emu).await;
            let (state, errors) = create_state(&h, TYPE_NAME, &config()).await;
            assert!(errors.is_empty(), "{endpoint}: {errors}");
            let state = converged(&h, &emu, &state).await;
            destroy_state(&h, TYPE_NAME, &state).await;
            nothing_left(&emu).await;
            emu.shutdown().await;
        });
    }
}

/// The provider dies mid-create (the zone exists, the vnet create is held on the host): the
/// next apply, by a new provider process, converges on one zone, vnet and subnet with an empty
/// plan, and destroy leaves nothing. SDN objects carry no ownership mark: the next create
/// adopts the zone and the vnet because they are still pending (never applied) and exactly as
/// requested (`waddle_proxmox::sdn_adopt`).
#[test]
fn killed_mid_create_then_reapply() {
    if skip_on_real_pve("network killed_mid_create_then_reapply") {
        return;
    }
    let faults = fail_once(
        22,
        "POST /cluster/sdn/vnets",
        FaultKind::Latency(Duration::from_secs(2)),
    );
    runtime().block_on(async {
        let emu = emulator(Ipv4Addr::new(127, 40, 93, 4), faults).await;
        let h = harness(&emu).await;
        let cfg = config();
        let p = h.plan(TYPE_NAME, &Value::Null, &cfg).await;
        assert!(!p.diagnostics.has_errors(), "{:?}", p.diagnostics);
        let apply = h.apply(TYPE_NAME, &Value::Null, &cfg, &p.planned_state);
        // The fault log records the held request when it arrives (the request log only when
        // it is answered).
        let held = until("the vnet create is held", || {
            emu.fault_log()
                .iter()
                .any(|e| e.method == "POST" && e.path.ends_with("/cluster/sdn/vnets"))
        });
        tokio::select! {
            _ = apply => panic!("the create finished before it was killed"),
            _ = held => {}
        }
        // The provider is gone (the apply future is dropped mid-request). Let the held vnet
        // create finish on the host, as it would after a killed CLI.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let applied = |r: &waddle_acceptance::pve::RequestRecord| {
            r.method == "PUT" && r.path.ends_with("/cluster/sdn")
        };
        assert!(
            !emu.request_log().iter().any(applied),
            "killed before the SDN configuration was applied"
        );
        let (zones, _, _) = sdn(&emu).await;
        assert_eq!(zones, vec![ZONE.to_string()], "the pending zone is left");
        // A new provider process, as the next CLI run starts.
        let h = harness(&emu).await;
        let (state, errors) = create_state(&h, TYPE_NAME, &cfg).await;
        assert!(errors.is_empty(), "{errors}");
        let posts = |suffix: &str| {
            emu.request_log()
                .iter()
                .filter(|r| r.method == "POST" && r.path.ends_with(suffix))
                .count()
        };
        assert_eq!(
            posts("/cluster/sdn/zones"),
            1,
            "the zone was adopted, not posted again"
        );
        let state = converged(&h, &emu, &state).await;
        destroy_state(&h, TYPE_NAME, &state).await;
        nothing_left(&emu).await;
        emu.shutdown().await;
    });
}

/// An applied zone with the resource's id (a create killed after `PUT /cluster/sdn`, or a
/// network of somebody else's) is never adopted: the create fails naming the zone and the way
/// out (import), and leaves it alone.
#[test]
fn an_applied_zone_is_not_adopted() {
    if skip_on_real_pve("network an_applied_zone_is_not_adopted") {
        return;
    }
    runtime().block_on(async {
        let emu = emulator(Ipv4Addr::new(127, 40, 93, 7), FaultConfig::default()).await;
        let h = harness(&emu).await;
        let c = client(&emu);
        c.create_sdn_simple_zone(ZONE, false, &[])
            .await
            .expect("zone");
        c.apply_sdn().await.expect("apply");
        let (_, errors) = create_state(&h, TYPE_NAME, &config()).await;
        assert!(errors.contains("already exists and is applied"), "{errors}");
        assert!(errors.contains("import"), "{errors}");
        let (zones, vnets, _) = sdn(&emu).await;
        assert_eq!(zones, vec![ZONE.to_string()]);
        assert!(vnets.is_empty(), "{vnets:?}");
        emu.shutdown().await;
    });
}

/// The subnet, then the vnet too, deleted by hand: the read plans a replacement, the apply
/// converges with an empty plan after it, and destroy leaves nothing.
#[test]
fn objects_deleted_by_hand_are_recreated() {
    if skip_on_real_pve("network objects_deleted_by_hand_are_recreated") {
        return;
    }
    runtime().block_on(async {
        let emu = emulator(Ipv4Addr::new(127, 40, 93, 5), FaultConfig::default()).await;
        let h = harness(&emu).await;
        let cfg = config();
        let c = client(&emu);
        let (mut state, errors) = create_state(&h, TYPE_NAME, &cfg).await;
        assert!(errors.is_empty(), "{errors}");
        for what in ["subnet", "vnet"] {
            c.delete_sdn_subnet(ZONE, VNET, CIDR).await.expect("subnet");
            if what == "vnet" {
                c.delete_sdn_vnet(VNET).await.expect("vnet");
            }
            c.apply_sdn().await.expect("apply");
            let r = h.read(TYPE_NAME, &state).await;
            assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
            assert!(!r.state.is_null(), "{what}: the zone is still there");
            let p = h.plan(TYPE_NAME, &r.state, &cfg).await;
            assert!(!p.requires_replace.is_empty(), "{what}: replaced");
            // Replacement: destroy, then create.
            destroy_state(&h, TYPE_NAME, &r.state).await;
            nothing_left(&emu).await;
            let (s, errors) = create_state(&h, TYPE_NAME, &cfg).await;
            assert!(errors.is_empty(), "{what}: {errors}");
            state = converged(&h, &emu, &s).await;
        }
        destroy_state(&h, TYPE_NAME, &state).await;
        nothing_left(&emu).await;
        emu.shutdown().await;
    });
}

/// Destroy after everything was deleted by hand (refreshed: the resource is gone; not
/// refreshed: the delete skips what is absent), and a zone of somebody else's with our zone
/// name is refused at create and left alone by destroy.
#[test]
fn destroy_whose_objects_are_gone_and_a_foreign_zone() {
    if skip_on_real_pve("network destroy_whose_objects_are_gone_and_a_foreign_zone") {
        return;
    }
    runtime().block_on(async {
        let emu = emulator(Ipv4Addr::new(127, 40, 93, 6), FaultConfig::default()).await;
        let h = harness(&emu).await;
        let cfg = config();
        let c = client(&emu);
        let (state, errors) = create_state(&h, TYPE_NAME, &cfg).await;
        assert!(errors.is_empty(), "{errors}");
        c.delete_sdn_subnet(ZONE, VNET, CIDR).await.expect("subnet");
        c.delete_sdn_vnet(VNET).await.expect("vnet");
        c.delete_sdn_zone(ZONE).await.expect("zone");
        c.apply_sdn().await.expect("apply");
        let r = h.read(TYPE_NAME, &state).await;
        assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
        assert!(r.state.is_null(), "refreshed: gone");
        destroy_state(&h, TYPE_NAME, &state).await;
        nothing_left(&emu).await;

        // Somebody else's zone with our zone name.
        c.create_sdn_simple_zone(ZONE, false, &[])
            .await
            .expect("foreign zone");
        c.apply_sdn().await.expect("apply");
        let (failed, errors) = create_state(&h, TYPE_NAME, &cfg).await;
        assert!(errors.contains(ZONE), "{errors}");
        if !failed.is_null() {
            destroy_state(&h, TYPE_NAME, &failed).await;
        }
        assert_eq!(sdn(&emu).await, (vec![ZONE.to_string()], vec![], vec![]));
        emu.shutdown().await;
    });
}
