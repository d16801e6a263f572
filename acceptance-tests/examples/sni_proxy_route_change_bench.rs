//! Benchmark: how long an in-place route change of `waddle_sni_proxy` takes on the PVE emulator.
//!
//! ```sh
//! cargo run -p waddle-acceptance --example sni_proxy_route_change_bench [-- CHANGES]
//! ```
//!
//! Applies `modules/haproxy` through the real CLI (see `tests/cli_sni_proxy.rs`), then changes
//! the route table `CHANGES` times (default 5; each change adds one route). For each change it
//! prints, from the CLI's own trace log, the time of the provider's `ApplyResourceChange` (the
//! in-place update: guest-agent file writes, `haproxy -c` with the real binary in the emulated
//! guest, swap, reload, cleanup) and of the whole `apply` command, plus the number of Proxmox API
//! requests the update made (from the emulator's request log). Figures only; nothing is asserted
//! about time. Uses the emulator's default timings.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use waddle_acceptance::harness::emulated::runtime;
use waddle_acceptance::harness::{check, repo_root, Snapshot, TestCase, TestStep};
use waddle_acceptance::pve::{EmulatorConfig, PveEmulator};

const ADDR: &str = "module.sni_proxy.waddle_sni_proxy.this";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWaddleAcceptanceTestKeyNotARealOne0 bench";

fn config(emu: &PveEmulator, routes: usize) -> String {
    let extra: Vec<String> = (0..routes)
        .map(|i| {
            format!(
                r#"{{
    hostnames      = ["svc{i}.example.org"]
    backend        = "10.10.0.{}:443"
    proxy_protocol = false
    check          = true
  }}"#,
                40 + i % 200
            )
        })
        .collect();
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

module "sni_proxy" {{
  source          = "./modules/haproxy"
  domain          = "example.org"
  public_cidr     = "203.0.113.10/24"
  public_gateway  = "203.0.113.1"
  ssh_public_keys = ["{KEY}"]
  extra_routes    = [{extra}]
  timeouts        = {{ create = "3m", update = "3m" }}
}}
"#,
        endpoint = emu.endpoint(),
        token = emu.api_token().expect("emulator token"),
        node = emu.node(),
        extra = extra.join(", "),
    )
}

fn step(emu: &PveEmulator, routes: usize) -> TestStep {
    let mut s = TestStep::config(config(emu, routes)).file("pve-ca.pem", emu.ca_pem());
    let dir = repo_root().join("modules/haproxy");
    for e in std::fs::read_dir(&dir).expect("modules/haproxy") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "tf") {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            s = s.file(
                format!("modules/haproxy/{name}"),
                std::fs::read_to_string(&p).expect("module file"),
            );
        }
    }
    s
}

/// Milliseconds since midnight of a `2026-11-22T01:11:14.086Z` log timestamp.
fn ms_of(line: &str) -> Option<u64> {
    let t = line.get(11..23)?;
    let h: u64 = t.get(0..2)?.parse().ok()?;
    let m: u64 = t.get(3..5)?.parse().ok()?;
    let s: u64 = t.get(6..8)?.parse().ok()?;
    let ms: u64 = t.get(9..12)?.parse().ok()?;
    Some(((h * 60 + m) * 60 + s) * 1000 + ms)
}

/// (provider ApplyResourceChange ms, whole apply command ms) from the step's apply trace log.
fn timings(work_dir: &Path, step_no: usize) -> Result<(u64, u64), String> {
    let logs = work_dir
        .parent()
        .and_then(Path::parent)
        .ok_or("no work root")?
        .join("logs");
    let suffix = format!("-s{step_no}-apply.tflog");
    let file = std::fs::read_dir(&logs)
        .map_err(|e| format!("{}: {e}", logs.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(&suffix))
        .ok_or_else(|| format!("no *{suffix} in {}", logs.display()))?;
    let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
    let lines: Vec<&str> = text.lines().filter(|l| ms_of(l).is_some()).collect();
    let start = lines
        .iter()
        .position(|l| l.contains("GRPCProvider.v6: ApplyResourceChange"))
        .ok_or("no ApplyResourceChange in the log")?;
    let end = lines[start..]
        .iter()
        .find(|l| l.contains("writeResourceInstanceState"))
        .ok_or("no state write after ApplyResourceChange")?;
    let rpc = ms_of(end).unwrap_or(0) - ms_of(lines[start]).unwrap_or(0);
    let whole = ms_of(lines[lines.len() - 1]).unwrap_or(0) - ms_of(lines[0]).unwrap_or(0);
    Ok((rpc, whole))
}

fn main() {
    let changes: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5)
        .clamp(1, 50);
    let rt = runtime();
    let emu = Arc::new(
        rt.block_on(PveEmulator::start(
            EmulatorConfig::builder()
                .ip(Ipv4Addr::new(127, 40, 6, 1))
                .bridge("vmbr1")
                .build(),
        ))
        .expect("start the PVE emulator"),
    );
    let rows: Arc<Mutex<Vec<String>>> = Arc::default();
    let vmid: Arc<Mutex<Option<u64>>> = Arc::default();
    let mut case =
        TestCase::named("sni_proxy_route_change_bench").step(step(&emu, 0).describe("create"));
    for i in 1..=changes {
        let (e, r, v) = (emu.clone(), rows.clone(), vmid.clone());
        let e2 = emu.clone();
        case = case.step(
            step(&emu, i)
                .describe(format!("route change {i}"))
                .plan_check(check::plan_actions(ADDR, &["update"]))
                // The plan ran before this: what the log holds from here on is the apply.
                .plan_check(Box::new(move |_| {
                    e2.clear_request_log();
                    Ok(())
                }))
                .check(check::func(move |s: &Snapshot| {
                    let calls = e.request_log().len();
                    let id = s
                        .resource(ADDR)?
                        .attr("vmid")
                        .and_then(|x| x.as_u64())
                        .ok_or("no vmid")?;
                    let mut known = v.lock().unwrap();
                    if known.is_some_and(|k| k != id) {
                        return Err(format!("VM replaced ({known:?} -> {id})"));
                    }
                    *known = Some(id);
                    let (rpc, whole) = timings(&s.work_dir, i + 1)?;
                    r.lock().unwrap().push(format!(
                        "{i:>6}  {:>6}  {rpc:>12}  {whole:>14}  {calls:>9}",
                        2 + i
                    ));
                    Ok(())
                })),
        );
    }
    let started = std::time::Instant::now();
    case.run();
    println!(
        "waddle_sni_proxy in-place route change on the PVE emulator ({changes} changes, {:.1} s in total incl. create/refresh/destroy)",
        started.elapsed().as_secs_f64()
    );
    println!("change  routes  update (ms)  apply cmd (ms)  API calls");
    for r in rows.lock().unwrap().iter() {
        println!("{r}");
    }
    drop(rt);
}
