//! `waddle_network` through the real CLI: `modules/network` applied against the PVE emulator
//! (started in this test process on a 127.40.x.y address, its CA pinned as `ca_cert`).
//!
//! Steps: a gateway on the broadcast address is refused at plan time with the attribute path
//! -> create with the module defaults (zone `waddle`, vnet/bridge `vmbr1`, 10.10.0.0/24,
//! gateway 10.10.0.1, SNAT on; the SDN config is applied) -> empty plans and refresh (by the
//! harness) -> `snat = false` applied in place -> import by `<zone>/<vnet>` matches the state ->
//! SNAT switched back on outside Terraform shows as a pending change -> the next apply repairs
//! it in place -> destroy, and the emulator holds no SDN zone, vnet or subnet (pending or
//! running).
//!
//! Real PVE (`PveTarget::Real`, see `harness::target`): every check goes through the API;
//! only the emulator's response-schema log is skipped (with a notice).
//! `network_module_lifecycle_against_the_sandbox_as_a_real_pve` runs that mode against
//! `waddle-sandbox` as a separate process (127.10.6.1).

use std::net::Ipv4Addr;

use serde_json::Value;
use waddle_acceptance::harness::emulated::runtime;
use waddle_acceptance::harness::sandbox::Sandbox;
use waddle_acceptance::harness::target::{Api, PveTarget};
use waddle_acceptance::harness::{self, check, notice, Phase, TestCase, TestStep};
use waddle_acceptance::pve::EmulatorConfig;

const ADDR: &str = "module.network.waddle_network.this";
const SUBNET: &str = "waddle-10.10.0.0-24";

fn module_files() -> Vec<(String, String)> {
    let out = harness::module_files("network");
    assert!(out.len() >= 4, "modules/network is incomplete");
    out
}

fn config(t: &PveTarget, module_args: &str) -> String {
    format!(
        r#"
{provider}
module "network" {{
  source = "./modules/network"
{module_args}
}}

output "bridge" {{
  value = module.network.bridge
}}

output "cidr" {{
  value = module.network.cidr
}}

output "gateway" {{
  value = module.network.gateway
}}
"#,
        provider = t.provider_hcl(),
    )
}

fn step(t: &PveTarget, module_args: &str) -> TestStep {
    t.step(config(t, module_args)).files(module_files())
}

/// The one subnet of vnet `vmbr1` (pending view).
fn subnet(a: &Api) -> Result<Value, String> {
    let subs = a.list("/cluster/sdn/vnets/vmbr1/subnets", &[])?;
    match subs.as_slice() {
        [s] => Ok(s.clone()),
        other => Err(format!("expected one subnet in vmbr1, found {other:?}")),
    }
}

/// No SDN change is waiting for `PUT /cluster/sdn`.
fn nothing_pending(a: &Api) -> Result<(), String> {
    for kind in ["zones", "vnets"] {
        for o in a.list(&format!("/cluster/sdn/{kind}"), &[("pending", "1")])? {
            if let Some(state) = o.get("state") {
                return Err(format!("{kind}: {o} is {state} (not applied)"));
            }
        }
    }
    Ok(())
}

fn snat_of(subnet: &Value) -> bool {
    match subnet.get("snat") {
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "1",
        _ => false,
    }
}

#[test]
fn network_module_lifecycle_on_the_emulator() {
    let rt = runtime();
    let target = PveTarget::select(
        &rt,
        EmulatorConfig::builder()
            .ip(Ipv4Addr::new(127, 40, 6, 1))
            .build(),
    );
    lifecycle(&rt, &target);
}

/// The real-PVE code path, proven here without a real Proxmox: `waddle-sandbox` runs as a
/// separate process on 127.10.6.1 (a black box reached only through its API, like a real
/// PVE) and the lifecycle runs through `PveTarget::Real` built from the env file it writes.
#[test]
fn network_module_lifecycle_against_the_sandbox_as_a_real_pve() {
    let rt = runtime();
    if PveTarget::real_from(|k| std::env::var(k).ok())
        .expect("real-PVE variables")
        .is_some()
    {
        notice(
            "SKIPPED network_module_lifecycle_against_the_sandbox_as_a_real_pve: \
             PROXMOX_VE_* already select a real PVE (the other test runs against it)",
        );
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let sandbox = Sandbox::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_waddle-sandbox")),
        dir.path(),
        "127.10.6.1:0",
    );
    let target = sandbox.target();
    assert!(target.is_real() && target.emulator().is_none());
    lifecycle(&rt, &target);
    drop(sandbox);
}

fn lifecycle(rt: &tokio::runtime::Runtime, target: &PveTarget) {
    let api = target.api(rt.handle().clone()).expect("API client");
    let emu = target;

    // Step 0: refused before any API call, pointing at the attribute.
    let bad = step(emu, r#"  gateway = "10.10.0.255""#)
        .describe("gateway on the broadcast address")
        .expect_error(r"broadcast address of 10\.10\.0\.0/24")
        .expect_error_in(&[Phase::Validate, Phase::Plan]);

    // Step 1: create with the module defaults.
    let a = api.clone();
    let create = step(emu, "")
        .describe("create")
        .check(check::output_equals("bridge", "vmbr1"))
        .check(check::output_equals("cidr", "10.10.0.0/24"))
        .check(check::output_equals("gateway", "10.10.0.1"))
        .check(check::attr_equals(ADDR, "id", "waddle/vmbr1"))
        .check(check::attr_equals(ADDR, "snat", true))
        .check(check::func(move |_| {
            let zone = a.get("/cluster/sdn/zones/waddle", &[])?;
            if zone.get("type").and_then(Value::as_str) != Some("simple") {
                return Err(format!("zone is not simple: {zone}"));
            }
            let vnet = a.get("/cluster/sdn/vnets/vmbr1", &[])?;
            if vnet.get("zone").and_then(Value::as_str) != Some("waddle") {
                return Err(format!("vnet not in zone waddle: {vnet}"));
            }
            if vnet.get("tag").is_some() {
                return Err(format!("vnet of a simple zone has a tag: {vnet}"));
            }
            let s = subnet(&a)?;
            if s.get("cidr").and_then(Value::as_str) != Some("10.10.0.0/24")
                || s.get("gateway").and_then(Value::as_str) != Some("10.10.0.1")
                || !snat_of(&s)
            {
                return Err(format!(
                    "subnet is not 10.10.0.0/24 via 10.10.0.1 with SNAT: {s}"
                ));
            }
            nothing_pending(&a)
        }));

    // Step 2: SNAT off, in place.
    let a = api.clone();
    let snat_off = step(emu, "  snat = false")
        .describe("snat off in place")
        .plan_check(check::plan_actions(ADDR, &["update"]))
        .plan_check(check::plan_no_replace(ADDR))
        .check(check::attr_equals(ADDR, "snat", false))
        .check(check::func(move |_| {
            let s = subnet(&a)?;
            if snat_of(&s) {
                return Err(format!("SNAT still on: {s}"));
            }
            nothing_pending(&a)
        }));

    // Step 3: import by <zone>/<vnet> (the id attribute) gives the same attributes.
    let import = TestStep::import(ADDR)
        .describe("import waddle/vmbr1")
        .import_generate_config(harness::PROVIDER_FROM_ENV)
        .envs(emu.cli_env());

    // Step 4: SNAT switched back on outside Terraform (pending, as a UI edit would be).
    let a = api.clone();
    let drift = step(emu, "  snat = false")
        .describe("snat drift")
        .expect_non_empty_plan()
        .check(check::func(move |_| {
            a.put(
                &format!("/cluster/sdn/vnets/vmbr1/subnets/{SUBNET}"),
                &[("snat", "1")],
            )
            .map(|_| ())
        }));

    // Step 5: repaired in place.
    let a = api.clone();
    let repair = step(emu, "  snat = false")
        .describe("drift repaired in place")
        .plan_check(check::plan_actions(ADDR, &["update"]))
        .plan_check(check::plan_no_replace(ADDR))
        .check(check::func(move |_| {
            let s = subnet(&a)?;
            if snat_of(&s) {
                return Err(format!("drift not repaired: {s}"));
            }
            nothing_pending(&a)
        }));

    let a = api.clone();
    let real = target.is_real();
    let report = TestCase::new()
        .step(bad)
        .step(create)
        .step(snat_off)
        .step(import)
        .step(drift)
        .step(repair)
        .check_destroy(move |_| {
            for view in [&[][..], &[("running", "1")][..]] {
                let mut zones = a.list("/cluster/sdn/zones", view)?;
                let mut vnets = a.list("/cluster/sdn/vnets", view)?;
                if real {
                    // A real PVE may hold SDN objects of its own: only ours must be gone.
                    zones.retain(|z| z.get("zone").and_then(Value::as_str) == Some("waddle"));
                    vnets.retain(|v| v.get("vnet").and_then(Value::as_str) == Some("vmbr1"));
                }
                if !zones.is_empty() || !vnets.is_empty() {
                    return Err(format!(
                        "SDN objects left ({view:?}): zones {zones:?}, vnets {vnets:?}"
                    ));
                }
            }
            // The vnet is gone, so are its subnets (PVE refuses to delete a vnet with subnets).
            match a.list("/cluster/sdn/vnets/vmbr1/subnets", &[]) {
                Err(e) if e.contains("does not exist") => Ok(()),
                Err(e) => Err(e),
                Ok(s) => Err(format!("subnets left: {s:?}")),
            }
        })
        .run();
    assert!(report.skipped.is_empty(), "skipped: {:?}", report.skipped);
    if let Some(emu) = target.emulator_only(
        "network: emulator responses against the PVE 9.1 schema",
        "the emulator's response log exists only in-process",
    ) {
        let violations = emu.response_violations();
        assert!(
            violations.is_empty(),
            "emulator responses off-schema: {violations:?}"
        );
    }
    drop(api);
}

/// A create whose response is lost (the emulator acts, then closes the connection without
/// answering) on `endpoint`: the provider reads back, adopts the object made as requested and
/// goes on, so the apply converges, the plans after it are empty (harness) and destroy leaves
/// no SDN object (before the fix the apply failed and the object stayed on the host outside
/// the state: every later apply hit "already exists", and a lost subnet blocked destroy).
fn lost_create_response(ip: Ipv4Addr, endpoint: &str, concrete: &str) {
    use waddle_acceptance::pve::{FaultConfig, FaultKind, FaultRule};
    let rt = runtime();
    let target = PveTarget::select(
        &rt,
        EmulatorConfig::builder()
            .ip(ip)
            .faults(
                FaultConfig::new(3)
                    .rule(FaultRule::new(endpoint, FaultKind::DropResponse, 1.0).max_hits(1)),
            )
            .build(),
    );
    let Some(emu) = target.emulator_arc() else {
        notice("lost SDN create responses: fault injection needs the emulator; skipped");
        return;
    };
    let api = target.api(rt.handle().clone()).expect("API client");
    let (a, e, ep) = (api.clone(), emu.clone(), concrete.to_string());
    let create = step(&target, "")
        .describe(format!("create with the response to {endpoint} lost"))
        .check(check::attr_equals(ADDR, "id", "waddle/vmbr1"))
        .check(check::func(move |_| {
            let drops: Vec<_> = e
                .fault_log()
                .into_iter()
                .filter(|f| f.kind == FaultKind::DropResponse)
                .collect();
            let hit: Vec<String> = drops
                .iter()
                .map(|f| format!("{} {}", f.method, f.path))
                .collect();
            if hit != [ep.clone()] {
                return Err(format!(
                    "expected one lost response to {ep}, log: {drops:?}"
                ));
            }
            let zones = a.list("/cluster/sdn/zones", &[])?;
            let vnets = a.list("/cluster/sdn/vnets", &[])?;
            if zones.len() != 1 || vnets.len() != 1 {
                return Err(format!(
                    "expected one zone and one vnet: {zones:?} {vnets:?}"
                ));
            }
            let s = subnet(&a)?;
            if s.get("gateway").and_then(Value::as_str) != Some("10.10.0.1") || !snat_of(&s) {
                return Err(format!("subnet not as requested: {s}"));
            }
            nothing_pending(&a)
        }));
    // The apply after it has nothing to do (and the harness checks its plan is empty).
    let again = step(&target, "")
        .describe("the next apply converges")
        .plan_check(check::plan_no_replace(ADDR));
    let a = api.clone();
    TestCase::new()
        .step(create)
        .step(again)
        .check_destroy(move |_| {
            for view in [&[][..], &[("running", "1")][..]] {
                let zones = a.list("/cluster/sdn/zones", view)?;
                let vnets = a.list("/cluster/sdn/vnets", view)?;
                if !zones.is_empty() || !vnets.is_empty() {
                    return Err(format!("SDN objects left ({view:?}): {zones:?} {vnets:?}"));
                }
            }
            Ok(())
        })
        .run();
    assert_eq!(
        emu.fault_log().len(),
        1,
        "exactly one fault was injected: {:?}",
        emu.fault_log()
    );
}

#[test]
fn lost_response_to_the_zone_create_is_adopted() {
    let ep = "POST /cluster/sdn/zones";
    lost_create_response(Ipv4Addr::new(127, 40, 6, 11), ep, ep);
}

#[test]
fn lost_response_to_the_vnet_create_is_adopted() {
    let ep = "POST /cluster/sdn/vnets";
    lost_create_response(Ipv4Addr::new(127, 40, 6, 12), ep, ep);
}

#[test]
fn lost_response_to_the_subnet_create_is_adopted() {
    lost_create_response(
        Ipv4Addr::new(127, 40, 6, 13),
        "POST /cluster/sdn/vnets/{vnet}/subnets",
        "POST /cluster/sdn/vnets/vmbr1/subnets",
    );
}
