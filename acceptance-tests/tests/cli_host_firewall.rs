//! `waddle_host_firewall` through the real CLI, against the PVE emulator listening on port
//! 8006 of a 127.40.71.x address. The emulator applies the host firewall to every new
//! connection, so a firewall that dropped the provider's own address would stall the next
//! Terraform run, as on a real host.
//!
//! Lifecycle: create (cluster firewall on, policy DROP; an operator IP set holding the
//! provider's source 127.0.0.1; rules for the API, the private network and a temporary SSH
//! rule expiring a minute later) -> empty plans -> a rule edited "in the UI" shows as drift and
//! is repaired in place -> a foreign rule inserted above all others by hand: every managed
//! rule keeps its identity (the plan stays empty) -> import by `<node>/<ipset>` -> once the
//! expiry passed, the next plan removes the temporary rule -> destroy: no rule carrying the
//! mark, no IP set, the options as before; the foreign rule untouched.
//!
//! Lock-out guard: a policy DROP whose rules accept someone else is refused at plan with the
//! explanation, and no change request reaches the API.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use waddle_acceptance::harness::emulated::runtime;
use waddle_acceptance::harness::target::{Api, PveTarget};
use waddle_acceptance::harness::{check, notice, Phase, TestCase, TestStep, PROVIDER_FROM_ENV};
use waddle_acceptance::pve::EmulatorConfig;

const ADDR: &str = "waddle_host_firewall.pve";

fn target(rt: &tokio::runtime::Runtime, ip: Ipv4Addr) -> PveTarget {
    PveTarget::select(
        rt,
        EmulatorConfig::builder()
            .listen(SocketAddr::new(IpAddr::V4(ip), 8006))
            .build(),
    )
}

/// After destroy: no marked rule and no IP set of ours is left, the rule added by hand is
/// untouched and the firewall is off again, as it was before the create.
fn left_as_before(a: &Api) -> Result<(), String> {
    let rs = rules(a)?;
    if let Some(r) = rs.iter().find(|r| comment(r).starts_with("waddle:")) {
        return Err(format!("a marked rule survived destroy: {r}"));
    }
    if !rs.iter().any(|r| comment(r) == "added by hand") {
        return Err(format!("the foreign rule was touched: {rs:?}"));
    }
    let sets = a.list("/cluster/firewall/ipset", &[])?;
    if sets.iter().any(|s| s["name"] == "waddle-operators") {
        return Err(format!("IP set left: {sets:?}"));
    }
    let o = a.get("/cluster/firewall/options", &[])?;
    if o.get("enable").and_then(Value::as_i64).unwrap_or(0) != 0 {
        return Err(format!("the firewall was off before create: {o}"));
    }
    Ok(())
}

fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // civil from days (Howard Hinnant)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn firewall(t: &PveTarget, expires: &str) -> String {
    format!(
        r#"{provider}
resource "waddle_host_firewall" "pve" {{
  policy_in = "DROP"

  ipset = {{
    name  = "waddle-operators"
    cidrs = ["127.0.0.1/32"]
  }}

  rules = {{
    api = {{
      source = "+waddle-operators"
      proto  = "tcp"
      dport  = "8006"
    }}
    private = {{
      source      = "10.10.0.0/24"
      description = "the private network"
    }}
    ssh-temp = {{
      source  = "192.0.2.50"
      proto   = "tcp"
      dport   = "22"
      expires = "{expires}"
    }}
  }}
}}
"#,
        provider = t.provider_hcl()
    )
}

/// The node's rules in position order.
fn rules(a: &Api) -> Result<Vec<Value>, String> {
    a.list(&format!("/nodes/{}/firewall/rules", a.node()), &[])
}

fn comment(r: &Value) -> &str {
    r.get("comment").and_then(Value::as_str).unwrap_or("")
}

fn marked<'a>(rules: &'a [Value], key: &str) -> Result<&'a Value, String> {
    let want = format!("waddle:{key}");
    rules
        .iter()
        .find(|r| comment(r) == want || comment(r).starts_with(&format!("{want} ")))
        .ok_or_else(|| format!("no rule marked {want}: {rules:?}"))
}

#[test]
fn host_firewall_lifecycle_on_the_emulator() {
    let rt = runtime();
    let t = target(&rt, Ipv4Addr::new(127, 40, 71, 1));
    let api = t.api(rt.handle().clone()).expect("API client");
    // First case: create, drift, repair and import, with the temporary rule far from its
    // expiry (these steps take from half a minute to a few minutes, with the load).
    let cfg = firewall(&t, &rfc3339(now() + 3600));

    // Create.
    let a = api.clone();
    let create = t
        .step(cfg.clone())
        .describe("create")
        .check(check::attr_equals(ADDR, "id", t.node()))
        .check(check::attr_equals(
            ADDR,
            "active_rules",
            serde_json::json!(["api", "private", "ssh-temp"]),
        ))
        .check(check::attr_equals(ADDR, "previous_options.enabled", false))
        .check(check::func(move |_| {
            let o = a.get("/cluster/firewall/options", &[])?;
            if o.get("enable").and_then(Value::as_i64) != Some(1)
                || o.get("policy_in").and_then(Value::as_str) != Some("DROP")
            {
                return Err(format!("cluster options not set: {o}"));
            }
            let rs = rules(&a)?;
            let api = marked(&rs, "api")?;
            if api.get("source").and_then(Value::as_str) != Some("+waddle-operators")
                || api.get("dport").and_then(Value::as_str) != Some("8006")
                || api.get("enable").and_then(Value::as_i64) != Some(1)
            {
                return Err(format!("api rule: {api}"));
            }
            if comment(marked(&rs, "private")?) != "waddle:private the private network" {
                return Err(format!("private rule comment: {rs:?}"));
            }
            marked(&rs, "ssh-temp")?;
            let set = a.list("/cluster/firewall/ipset/waddle-operators", &[])?;
            if set.len() != 1 || set[0].get("cidr").and_then(Value::as_str) != Some("127.0.0.1/32")
            {
                return Err(format!("ipset: {set:?}"));
            }
            Ok(())
        }));

    // A rule edited in the UI: drift.
    let a = api.clone();
    let drift = t
        .step(cfg.clone())
        .describe("rule edited in the UI")
        .expect_non_empty_plan()
        .check(check::func(move |_| {
            let rs = rules(&a)?;
            let p = marked(&rs, "private")?;
            let pos = p["pos"].as_i64().ok_or("no pos")?.to_string();
            let digest = p["digest"].as_str().ok_or("no digest")?.to_string();
            a.put(
                &format!("/nodes/{}/firewall/rules/{pos}", a.node()),
                &[("source", "10.20.0.0/24"), ("digest", &digest)],
            )
            .map(|_| ())
        }));

    // Repaired in place; then a foreign rule goes above everything by hand, and the plans of
    // this very step (after the check) must stay empty: no rule changed identity.
    let a = api.clone();
    let repair = t
        .step(cfg.clone())
        .describe("drift repaired, then a rule inserted above by hand")
        .plan_check(check::plan_actions(ADDR, &["update"]))
        .plan_check(check::plan_no_replace(ADDR))
        .check(check::func(move |_| {
            let rs = rules(&a)?;
            let p = marked(&rs, "private")?;
            if p.get("source").and_then(Value::as_str) != Some("10.10.0.0/24") {
                return Err(format!("drift not repaired: {p}"));
            }
            let before: Vec<i64> = rs.iter().filter_map(|r| r["pos"].as_i64()).collect();
            a.post(
                &format!("/nodes/{}/firewall/rules", a.node()),
                &[
                    ("type", "in"),
                    ("action", "ACCEPT"),
                    ("source", "192.0.2.99"),
                    ("comment", "added by hand"),
                    ("enable", "1"),
                ],
            )?;
            let after = rules(&a)?;
            if comment(&after[0]) != "added by hand" || after.len() != before.len() + 1 {
                return Err(format!("the hand-made rule is not on top: {after:?}"));
            }
            Ok(())
        }));

    // Import by <node>/<ipset>: the same attributes, save what only create can know.
    let import = TestStep::import(ADDR)
        .describe("import")
        .import_id(format!("{}/waddle-operators", t.node()))
        .import_verify_ignore(&["previous_options", "timeouts"])
        .import_generate_config(PROVIDER_FROM_ENV)
        .envs(t.cli_env());

    let a = api.clone();
    let report = TestCase::new()
        .step(create)
        .step(drift)
        .step(repair)
        .step(import)
        .check_destroy(move |_| left_as_before(&a))
        .run();
    assert!(report.skipped.is_empty(), "skipped: {:?}", report.skipped);

    // Second case: the temporary rule expires. Its expiry is set when the case starts, a
    // minute ahead: the create and the next apply happen before it.
    let expiry_at = now() + 60;
    let cfg = firewall(&t, &rfc3339(expiry_at));
    let a = api.clone();
    let create = t
        .step(cfg.clone())
        .describe("create with a rule that expires in a minute")
        .check(check::attr_equals(
            ADDR,
            "active_rules",
            serde_json::json!(["api", "private", "ssh-temp"]),
        ))
        .check(check::func(move |_| {
            marked(&rules(&a)?, "ssh-temp").map(|_| ())
        }));

    // Wait for the expiry: the plan after this step's apply is no longer empty.
    let wait = t
        .step(cfg.clone())
        .describe("the temporary rule's expiry passes")
        .expect_non_empty_plan()
        .check(check::func(move |_| {
            while now() <= expiry_at {
                std::thread::sleep(Duration::from_millis(250));
            }
            Ok(())
        }));

    // The next plan removes it.
    let a = api.clone();
    let expired = t
        .step(cfg.clone())
        .describe("expired rule removed")
        .plan_check(check::plan_actions(ADDR, &["update"]))
        .check(check::attr_equals(
            ADDR,
            "active_rules",
            serde_json::json!(["api", "private"]),
        ))
        .check(check::func(move |_| {
            let rs = rules(&a)?;
            if marked(&rs, "ssh-temp").is_ok() {
                return Err(format!("expired rule still there: {rs:?}"));
            }
            marked(&rs, "api")?;
            marked(&rs, "private")?;
            Ok(())
        }));

    let a = api.clone();
    let report = TestCase::new()
        .step(create)
        .step(wait)
        .step(expired)
        .check_destroy(move |_| left_as_before(&a))
        .run();
    assert!(report.skipped.is_empty(), "skipped: {:?}", report.skipped);
    if let Some(emu) = t.emulator_only(
        "host firewall: emulator responses against the PVE 9.1 schema",
        "the emulator's response log exists only in-process",
    ) {
        let v = emu.response_violations();
        assert!(v.is_empty(), "emulator responses off-schema: {v:?}");
        assert!(
            emu.firewall_refusals().is_empty(),
            "the provider was refused a connection: {:?}",
            emu.firewall_refusals()
        );
    }
}

#[test]
fn a_plan_that_would_lock_the_provider_out_is_refused_without_any_change() {
    let rt = runtime();
    let t = target(&rt, Ipv4Addr::new(127, 40, 71, 2));
    let hcl = format!(
        r#"{provider}
resource "waddle_host_firewall" "pve" {{
  policy_in = "DROP"
  rules = {{
    api = {{
      source = "198.51.100.7"
      proto  = "tcp"
      dport  = "8006"
    }}
  }}
}}
"#,
        provider = t.provider_hcl()
    );
    let refused = t
        .step(hcl.clone())
        .describe("policy DROP, API accepted only from someone else")
        .expect_error(r"would[\s│]+lock[\s│]+the[\s│]+provider[\s│]+out")
        .expect_error_in(&[Phase::Plan]);
    let acknowledged = t
        .step(hcl.replace(
            "  policy_in = \"DROP\"",
            "  policy_in = \"DROP\"\n  acknowledge_lockout_risk = true",
        ))
        .describe("acknowledged: the plan goes through (not applied)")
        .plan_only()
        .expect_non_empty_plan();
    TestCase::new().step(refused).step(acknowledged).run();
    let Some(emu) = t.emulator_only(
        "lock-out guard: no change request reached the API",
        "counts requests in the emulator's request log",
    ) else {
        notice("lock-out guard: request log not checked on a real PVE");
        return;
    };
    let changes: Vec<String> = emu
        .request_log()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        changes.is_empty(),
        "the refused plan changed something: {changes:?}"
    );
    let reads = emu.request_log().len();
    assert!(reads > 0, "the guard reads the firewall at plan");
}

/// `modules/network` with `firewall_enabled`: the network and the host firewall come up
/// together (API from the operators' IP set, the private network, a time-boxed SSH rule), the
/// plans after apply are empty, and destroy leaves no marked rule.
#[test]
fn network_module_with_the_host_firewall() {
    let rt = runtime();
    let t = target(&rt, Ipv4Addr::new(127, 40, 71, 3));
    let api = t.api(rt.handle().clone()).expect("API client");
    let hcl = format!(
        r#"{provider}
module "network" {{
  source                  = "./modules/network"
  firewall_enabled        = true
  operator_api_sources    = ["127.0.0.1/32"]
  operator_ssh_sources    = ["192.0.2.50", "192.0.2.51"]
  operator_access_expires = "{expires}"
}}

output "firewall_active_rules" {{
  value = module.network.firewall_active_rules
}}
"#,
        provider = t.provider_hcl(),
        expires = rfc3339(now() + 3600),
    );
    let mut s = t
        .step(hcl)
        .describe("network and host firewall")
        .check(check::output_equals(
            "firewall_active_rules",
            serde_json::json!(["api", "private", "ssh"]),
        ));
    for (name, content) in waddle_acceptance::harness::module_files("network") {
        s = s.file(name, content);
    }
    let a = api.clone();
    let ssh = api.clone();
    let report = TestCase::new()
        .step(s.check(check::func(move |_| {
            let rs = rules(&ssh)?;
            let r = marked(&rs, "ssh")?;
            if r.get("source").and_then(Value::as_str) != Some("192.0.2.50,192.0.2.51")
                || !comment(r).contains(" expires=")
            {
                return Err(format!("ssh rule: {r}"));
            }
            if comment(marked(&rs, "private")?) != "waddle:private the private network" {
                return Err(format!("private rule: {rs:?}"));
            }
            Ok(())
        })))
        .check_destroy(move |_| {
            let rs = rules(&a)?;
            match rs.iter().find(|r| comment(r).starts_with("waddle:")) {
                Some(r) => Err(format!("a marked rule survived destroy: {r}")),
                None => Ok(()),
            }
        })
        .run();
    assert!(report.skipped.is_empty(), "skipped: {:?}", report.skipped);
}
