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

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use waddle_acceptance::harness::{check, repo_root, Phase, TestCase, TestStep};
use waddle_acceptance::pve::{EmulatorConfig, PveEmulator};

const ADDR: &str = "module.network.waddle_network.this";
const SUBNET: &str = "waddle-10.10.0.0-24";

fn module_files() -> Vec<(String, String)> {
    let dir = repo_root().join("modules/network");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).expect("modules/network") {
        let p = e.expect("dir entry").path();
        if p.extension().is_some_and(|x| x == "tf") {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            out.push((
                format!("modules/network/{name}"),
                std::fs::read_to_string(&p).expect("read module file"),
            ));
        }
    }
    assert!(out.len() >= 4, "modules/network is incomplete");
    out
}

fn config(emu: &PveEmulator, module_args: &str) -> String {
    format!(
        r#"
terraform {{
  required_providers {{
    waddle = {{
      source = "waddle-social/waddle"
    }}
  }}
}}

provider "waddle" {{
  endpoint  = "{endpoint}"
  api_token = "{token}"
  ca_cert   = file("${{path.module}}/pve-ca.pem")
  node      = "{node}"
}}

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
        endpoint = emu.endpoint(),
        token = emu.api_token().expect("emulator token"),
        node = emu.node(),
    )
}

fn step(emu: &PveEmulator, module_args: &str) -> TestStep {
    let mut s = TestStep::config(config(emu, module_args)).file("pve-ca.pem", emu.ca_pem());
    for (name, content) in module_files() {
        s = s.file(name, content);
    }
    s
}

/// A small API client for looking at (and tampering with) the emulator's SDN state.
#[derive(Clone)]
struct Api {
    rt: tokio::runtime::Handle,
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    fn new(emu: &PveEmulator, rt: tokio::runtime::Handle) -> Api {
        let cert = reqwest::Certificate::from_pem(emu.ca_pem().as_bytes()).expect("ca pem");
        let http = reqwest::Client::builder()
            .tls_certs_only([cert])
            // The emulator closes idle connections like PVE does (5 s): never reuse one.
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        Api {
            rt,
            base: format!("{}/api2/json", emu.endpoint()),
            token: emu.api_token().expect("token"),
            http,
        }
    }

    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let mut rb = self
            .http
            .request(method.clone(), &url)
            .header("Authorization", format!("PVEAPIToken={}", self.token));
        if method == reqwest::Method::GET || method == reqwest::Method::DELETE {
            rb = rb.query(form);
        } else {
            rb = rb.form(form);
        }
        self.rt.block_on(async move {
            let r = rb
                .send()
                .await
                .map_err(|e| format!("{method} {path}: {e}"))?;
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                return Err(format!("{method} {path}: HTTP {status} {body}"));
            }
            Ok(body.get("data").cloned().unwrap_or(Value::Null))
        })
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, String> {
        self.call(reqwest::Method::GET, path, query)
    }

    fn put(&self, path: &str, form: &[(&str, &str)]) -> Result<Value, String> {
        self.call(reqwest::Method::PUT, path, form)
    }

    fn list(&self, path: &str, query: &[(&str, &str)]) -> Result<Vec<Value>, String> {
        Ok(self
            .get(path, query)?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The one subnet of vnet `vmbr1` (pending view).
    fn subnet(&self) -> Result<Value, String> {
        let subs = self.list("/cluster/sdn/vnets/vmbr1/subnets", &[])?;
        match subs.as_slice() {
            [s] => Ok(s.clone()),
            other => Err(format!("expected one subnet in vmbr1, found {other:?}")),
        }
    }

    /// No SDN change is waiting for `PUT /cluster/sdn`.
    fn nothing_pending(&self) -> Result<(), String> {
        for kind in ["zones", "vnets"] {
            for o in self.list(&format!("/cluster/sdn/{kind}"), &[("pending", "1")])? {
                if let Some(state) = o.get("state") {
                    return Err(format!("{kind}: {o} is {state} (not applied)"));
                }
            }
        }
        Ok(())
    }
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let emu = rt
        .block_on(PveEmulator::start(
            EmulatorConfig::builder()
                .ip(Ipv4Addr::new(127, 40, 6, 1))
                .build(),
        ))
        .expect("start the PVE emulator");
    let emu = Arc::new(emu);
    let api = Api::new(&emu, rt.handle().clone());

    // Step 0: refused before any API call, pointing at the attribute.
    let bad = step(&emu, r#"  gateway = "10.10.0.255""#)
        .describe("gateway on the broadcast address")
        .expect_error(r"broadcast address of 10\.10\.0\.0/24")
        .expect_error_in(&[Phase::Validate, Phase::Plan]);

    // Step 1: create with the module defaults.
    let a = api.clone();
    let create = step(&emu, "")
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
            let s = a.subnet()?;
            if s.get("cidr").and_then(Value::as_str) != Some("10.10.0.0/24")
                || s.get("gateway").and_then(Value::as_str) != Some("10.10.0.1")
                || !snat_of(&s)
            {
                return Err(format!(
                    "subnet is not 10.10.0.0/24 via 10.10.0.1 with SNAT: {s}"
                ));
            }
            a.nothing_pending()
        }));

    // Step 2: SNAT off, in place.
    let a = api.clone();
    let snat_off = step(&emu, "  snat = false")
        .describe("snat off in place")
        .plan_check(check::plan_actions(ADDR, &["update"]))
        .plan_check(check::plan_no_replace(ADDR))
        .check(check::attr_equals(ADDR, "snat", false))
        .check(check::func(move |_| {
            let s = a.subnet()?;
            if snat_of(&s) {
                return Err(format!("SNAT still on: {s}"));
            }
            a.nothing_pending()
        }));

    // Step 3: import by <zone>/<vnet> (the id attribute) gives the same attributes.
    let import = TestStep::import(ADDR).describe("import waddle/vmbr1");

    // Step 4: SNAT switched back on outside Terraform (pending, as a UI edit would be).
    let a = api.clone();
    let drift = step(&emu, "  snat = false")
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
    let repair = step(&emu, "  snat = false")
        .describe("drift repaired in place")
        .plan_check(check::plan_actions(ADDR, &["update"]))
        .plan_check(check::plan_no_replace(ADDR))
        .check(check::func(move |_| {
            let s = a.subnet()?;
            if snat_of(&s) {
                return Err(format!("drift not repaired: {s}"));
            }
            a.nothing_pending()
        }));

    let a = api.clone();
    let report = TestCase::new()
        .step(bad)
        .step(create)
        .step(snat_off)
        .step(import)
        .step(drift)
        .step(repair)
        .check_destroy(move |_| {
            for view in [&[][..], &[("running", "1")][..]] {
                let zones = a.list("/cluster/sdn/zones", view)?;
                let vnets = a.list("/cluster/sdn/vnets", view)?;
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
    let violations = emu.response_violations();
    assert!(
        violations.is_empty(),
        "emulator responses off-schema: {violations:?}"
    );
    drop(api);
    drop(rt);
}
