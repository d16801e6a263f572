//! `waddle_sni_proxy` through the real CLI: `modules/haproxy` applied against the PVE emulator
//! (started in this test process on a 127.40.x.y address, its CA pinned as `ca_cert`).
//!
//! Steps: create (image download, VM with two NICs, seed ISO, boot, guest agent reports the
//! config hash) -> empty plans -> a route change applied in place (same VM id, files swapped in
//! the guest, `haproxy -c` run by the emulated Debian guest with the real binary) -> drift in
//! the guest shows as a non-empty plan -> the next apply repairs it in place -> destroy, and
//! nothing is left in the emulator (no VM, no seed ISO).
//!
//! API calls per create and per destroy are counted from the emulator's request log (every
//! HTTP request it received, including task polling and guest-agent exec-status polls) and
//! printed as `waddle-acceptance: sni_proxy api-calls ...` lines.
//!
//! Real PVE (`PveTarget::Real`, see `harness::target`): VM config/status and seed ISOs are
//! checked through the API; guest-file checks, the request-log counts, the drift/repair and
//! refused-config steps and the fault-injection test are skipped with notices.
//! `sni_proxy_module_lifecycle_against_the_sandbox_as_a_real_pve` runs that mode against
//! `waddle-sandbox` as a separate process (127.10.5.1).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use waddle_acceptance::harness::sandbox::Sandbox;
use waddle_acceptance::harness::target::{Api, PveTarget};
use waddle_acceptance::harness::{self, check, notice, Phase, Snapshot, TestCase, TestStep};
use waddle_acceptance::pve::{DebianAppliance, EmulatorConfig, PveEmulator, RequestRecord};

#[allow(dead_code)] // `client` is for other targets
mod inproc;

const ADDR: &str = "module.sni_proxy.waddle_sni_proxy.this";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWaddleAcceptanceTestKeyNotARealOne0 test";

fn module_files() -> Vec<(String, String)> {
    let out = harness::module_files("haproxy");
    assert!(out.len() >= 3, "modules/haproxy has no .tf files");
    out
}

fn config(t: &PveTarget, extra_routes: &str) -> String {
    format!(
        r#"
{provider}
module "sni_proxy" {{
  source          = "./modules/haproxy"
  domain          = "example.org"
  public_cidr     = "203.0.113.10/24"
  public_gateway  = "203.0.113.1"
  ssh_public_keys = ["{KEY}"]
  extra_routes    = [{extra_routes}]
  # Fail fast instead of the default 15 minutes when the VM never gets ready.
  timeouts        = {{ create = "3m", update = "3m" }}
}}

output "vmid" {{
  value = module.sni_proxy.vmid
}}

output "config_hash" {{
  value = module.sni_proxy.config_hash
}}
"#,
        provider = t.provider_hcl(),
    )
}

fn step(t: &PveTarget, extra_routes: &str) -> TestStep {
    t.step(config(t, extra_routes)).files(module_files())
}

const ROUTE_GIT: &str = r#"{
    hostnames      = ["git.example.org"]
    backend        = "10.10.0.40:443"
    proxy_protocol = true
    check          = true
  }"#;

const ROUTE_REFUSED: &str = r#"{
    hostnames      = ["refused.example.org"]
    backend        = "10.10.0.41:443"
    proxy_protocol = false
    check          = true
  }"#;

/// A haproxy for the emulated guest: the real binary, except that `-c` refuses any config
/// with a backend `be_route_3` (stands in for a VM whose HAProxy rejects a config that passed
/// the provider's own validation).
fn picky_haproxy(dir: &tempfile::TempDir) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let real = [
        "/usr/sbin/haproxy",
        "/usr/local/sbin/haproxy",
        "/usr/bin/haproxy",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).is_file())
    .expect("Debian's haproxy (scripts/install-test-deps.sh installs it)");
    let p = dir.path().join("haproxy");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do\n  case \"$a\" in *.cfg)\n    if grep -q be_route_3 \"$a\"; then\n      echo \"[ALERT]    (1) : config : parsing [$a:1] : this HAProxy refuses be_route_3\" >&2\n      echo \"[ALERT]    (1) : config : Fatal errors found in configuration.\" >&2\n      exit 1\n    fi;;\n  esac\ndone\nexec {real} \"$@\"\n"
        ),
    )
    .expect("write haproxy wrapper");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

/// The Debian guest of a VM.
fn guest_file(emu: &PveEmulator, vmid: u32, path: &str) -> Result<String, String> {
    let app = emu
        .appliance(vmid)
        .ok_or_else(|| format!("VM {vmid} has no running appliance"))?;
    let deb = app
        .as_any()
        .downcast_ref::<DebianAppliance>()
        .ok_or_else(|| format!("VM {vmid} runs {}, not the Debian appliance", app.kind()))?;
    let host = deb.host_path(path)?;
    std::fs::read_to_string(&host).map_err(|e| format!("guest {path}: {e}"))
}

/// The exact-name map a rendered config looks names up in (`...,map(<path>)]`).
fn exact_map_path(cfg: &str) -> Option<String> {
    let start = cfg.find("lower,map(")? + "lower,map(".len();
    let len = cfg[start..].find(')')?;
    Some(cfg[start..start + len].to_string())
}

fn vmid_of(s: &Snapshot) -> Result<u32, String> {
    let r = s.resource(ADDR)?;
    r.attr("vmid")
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| "vmid missing".to_string())
}

fn summarize(log: &[RequestRecord]) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for r in log {
        let key = format!(
            "{} {}",
            r.method,
            r.template.clone().unwrap_or(r.path.clone())
        );
        *by.entry(key).or_default() += 1;
    }
    by.iter()
        .map(|(k, n)| format!("    {n:>3}  {k}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn sni_proxy_module_lifecycle_on_the_emulator() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let target = PveTarget::select(
        &rt,
        EmulatorConfig::builder()
            .ip(Ipv4Addr::new(127, 40, 5, 1))
            .bridge("vmbr1")
            .haproxy_binary(picky_haproxy(&tmp))
            .build(),
    );
    sni_lifecycle(&rt, &target);
}

/// The real-PVE code path without a real Proxmox: `waddle-sandbox` as a separate process on
/// 127.10.5.1, reached only through its API via `PveTarget::Real`; the emulator-only steps
/// are skipped with notices.
#[test]
fn sni_proxy_module_lifecycle_against_the_sandbox_as_a_real_pve() {
    if PveTarget::real_from(|k| std::env::var(k).ok())
        .expect("real-PVE variables")
        .is_some()
    {
        notice(
            "SKIPPED sni_proxy_module_lifecycle_against_the_sandbox_as_a_real_pve: \
             PROXMOX_VE_* already select a real PVE (the other test runs against it)",
        );
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().expect("temp dir");
    let sandbox = Sandbox::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_waddle-sandbox")),
        dir.path(),
        "127.10.5.1:0",
    );
    let target = sandbox.target();
    assert!(target.is_real() && target.emulator().is_none());
    // The private bridge the module attaches net1 to, prepared as on a real PVE (see
    // docs/guides/nested-proxmox.md).
    let api = target.api(rt.handle().clone()).expect("API client");
    assert!(api.ensure_bridge("vmbr1").expect("create vmbr1"));
    assert!(!api.ensure_bridge("vmbr1").expect("vmbr1 exists now"));
    sni_lifecycle(&rt, &target);
    drop(sandbox);
}

/// The emulator for checks that need its internals; `None` (with a notice) on a real PVE.
fn emu_for(t: &PveTarget, what: &str, why: &str) -> Option<Arc<PveEmulator>> {
    t.emulator_only(what, why)?;
    t.emulator_arc()
}

/// The storage of a volume id (`local:iso/x.iso` -> `local`).
fn storage_of(volid: &str) -> &str {
    volid.split_once(':').map_or("local", |(s, _)| s)
}

fn sni_lifecycle(rt: &tokio::runtime::Runtime, target: &PveTarget) {
    let api = target.api(rt.handle().clone()).expect("API client");
    let first_vmid: Arc<Mutex<Option<u32>>> = Arc::default();
    let seeds: Arc<Mutex<Vec<String>>> = Arc::default();
    let counts: Arc<Mutex<Vec<String>>> = Arc::default();
    let emu = target;

    // Step 1: create. The request log at check time holds exactly the create's calls (plan and
    // configure make none).
    let (em, v, c, a, sd) = (
        emu_for(
            emu,
            "sni_proxy create: request-log counts, image download record, guest files",
            "the emulator's request log, download record and guest filesystem are in-process only",
        ),
        first_vmid.clone(),
        counts.clone(),
        api.clone(),
        seeds.clone(),
    );
    let create = step(emu, "")
        .describe("create")
        .check(check::func(move |s| {
            if let Some(e) = &em {
                let log = e.request_log();
                let line = format!(
                    "sni_proxy api-calls create: {} requests\n{}",
                    log.len(),
                    summarize(&log)
                );
                c.lock().unwrap().push(line);
                e.clear_request_log();
            }
            let vmid = vmid_of(s)?;
            *v.lock().unwrap() = Some(vmid);
            let r = s.resource(ADDR)?;
            if !a.vm_running(vmid)? {
                return Err("VM is not running".into());
            }
            let vm = a.vm_config(vmid)?;
            for (k, want) in [
                ("net0", "bridge=vmbr0"),
                ("net1", "bridge=vmbr1"),
                ("agent", "1"),
            ] {
                let got = Api::config_str(&vm, k);
                if !got.contains(want) {
                    return Err(format!("VM config {k} = {got:?}, expected {want:?}"));
                }
            }
            let seed = r
                .str_attr("seed_iso")
                .ok_or("seed_iso missing")?
                .to_string();
            sd.lock().unwrap().push(seed.clone());
            let ide2 = Api::config_str(&vm, "ide2");
            if !ide2.starts_with(&seed) {
                return Err(format!("ide2 = {ide2:?}, expected the seed {seed}"));
            }
            if !a.volumes(storage_of(&seed), Some("iso"))?.contains(&seed) {
                return Err(format!("seed ISO {seed} not on the storage"));
            }
            let Some(e) = &em else { return Ok(()) };
            if !e
                .downloads()
                .iter()
                .any(|u| u.contains("debian-12-genericcloud-amd64.qcow2"))
            {
                return Err(format!(
                    "the Debian image was not requested: {:?}",
                    e.downloads()
                ));
            }
            let hash = r.str_attr("config_hash").ok_or("config_hash missing")?;
            let marker = guest_file(e, vmid, "/etc/haproxy/waddle-config.sha256")?;
            if marker.trim() != hash {
                return Err(format!(
                    "guest marker {marker:?} != state config_hash {hash}"
                ));
            }
            let cfg = guest_file(e, vmid, "/etc/haproxy/haproxy.cfg")?;
            if Some(cfg.as_str()) != r.str_attr("haproxy_cfg") {
                return Err("guest haproxy.cfg differs from the state's haproxy_cfg".into());
            }
            if !cfg.contains("req.ssl_sni") {
                return Err("guest haproxy.cfg is not ours".into());
            }
            Ok(())
        }))
        .check(check::attr_equals(ADDR, "public_address", "203.0.113.10"))
        .check(check::attr_equals(ADDR, "private_address", "10.10.0.3"))
        .check(check::attr_matches(ADDR, "id", "^pve/[0-9]+$"));

    // Step 2: a new route, applied in place.
    let (em, v, sd) = (
        emu_for(
            emu,
            "sni_proxy route change: guest maps, marker and leftover files",
            "reads the emulated guest's filesystem",
        ),
        first_vmid.clone(),
        seeds.clone(),
    );
    let change = step(emu, ROUTE_GIT)
        .describe("route change in place")
        .plan_check(check::plan_actions(ADDR, &["update"]))
        .plan_check(check::plan_no_replace(ADDR))
        .check(check::func(move |s| {
            let vmid = vmid_of(s)?;
            let before = v.lock().unwrap().ok_or("no vmid from step 1")?;
            if vmid != before {
                return Err(format!(
                    "VM id changed {before} -> {vmid}: replaced, not updated"
                ));
            }
            let r = s.resource(ADDR)?;
            if let Some(seed) = r.str_attr("seed_iso") {
                sd.lock().unwrap().push(seed.to_string());
            }
            let Some(e) = &em else { return Ok(()) };
            let live = guest_file(e, vmid, "/etc/haproxy/haproxy.cfg")?;
            let exact = exact_map_path(&live).ok_or("live config names no exact map")?;
            let map = guest_file(e, vmid, &exact)?;
            if !map.contains("git.example.org") {
                return Err(format!(
                    "the new route is not in the guest's exact map {exact}: {map}"
                ));
            }
            let marker = guest_file(e, vmid, "/etc/haproxy/waddle-config.sha256")?;
            if Some(marker.trim()) != r.str_attr("config_hash") {
                return Err("guest marker does not match the new config_hash".into());
            }
            // The previous version's maps were removed, the .new files are gone.
            let maps = std::fs::read_dir(
                e.appliance(vmid)
                    .and_then(|a| {
                        a.as_any()
                            .downcast_ref::<DebianAppliance>()
                            .and_then(|d| d.host_path("/etc/haproxy/maps").ok())
                    })
                    .ok_or("no maps dir")?,
            )
            .map_err(|x| x.to_string())?
            .count();
            if maps != 2 {
                return Err(format!(
                    "{maps} map files in the guest, expected 2 (old ones removed)"
                ));
            }
            if guest_file(e, vmid, "/etc/haproxy/haproxy.cfg.new").is_ok() {
                return Err("haproxy.cfg.new left behind".into());
            }
            Ok(())
        }));

    // Step 3: drift inside the guest (someone edits haproxy.cfg) shows as a pending change.
    let e = emu.emulator_arc();
    let skip = emu.skip_unless_emulated("edits haproxy.cfg inside the emulated guest");
    let drift = step(emu, ROUTE_GIT)
        .describe("drift in the guest")
        .skip_if(move |_| skip.clone())
        .expect_non_empty_plan()
        .check(check::func(move |s| {
            let vmid = vmid_of(s)?;
            let e = e.as_ref().ok_or("no emulator")?;
            let app = e.appliance(vmid).ok_or("no appliance")?;
            let deb = app
                .as_any()
                .downcast_ref::<DebianAppliance>()
                .ok_or("not Debian")?;
            let p = deb.host_path("/etc/haproxy/haproxy.cfg")?;
            let mut cfg = std::fs::read_to_string(&p).map_err(|x| x.to_string())?;
            cfg.push_str("# edited by hand\n");
            std::fs::write(&p, cfg).map_err(|x| x.to_string())
        }));

    // Step 4: the next apply repairs the drift in place.
    let e = emu.emulator_arc();
    let skip = emu.skip_unless_emulated("repairs the drift made in the emulated guest");
    let repair = step(emu, ROUTE_GIT)
        .describe("drift repaired in place")
        .skip_if(move |_| skip.clone())
        .plan_check(check::plan_actions(ADDR, &["update"]))
        .check(check::func(move |s| {
            let vmid = vmid_of(s)?;
            let e = e.as_ref().ok_or("no emulator")?;
            let cfg = guest_file(e, vmid, "/etc/haproxy/haproxy.cfg")?;
            if cfg.contains("edited by hand") {
                return Err("drift not repaired".into());
            }
            let r = s.resource(ADDR)?;
            if Some(cfg.as_str()) != r.str_attr("haproxy_cfg") {
                return Err("guest config differs from state after repair".into());
            }
            Ok(())
        }));

    // Step 5: the VM's HAProxy refuses the new config (a wrapper around the real binary
    // rejects configs with a fourth backend): the apply fails with HAProxy's message, the old
    // config keeps running, nothing half-applied is left in the guest.
    let e = emu.emulator_arc();
    let skip = emu
        .skip_unless_emulated("the refusing haproxy is a wrapper installed in the emulated guest");
    let refused = step(emu, &format!("{ROUTE_GIT}, {ROUTE_REFUSED}"))
        .describe("haproxy -c fails on the VM")
        .skip_if(move |_| skip.clone())
        .expect_error(r"haproxy -c rejected the new configuration(.|\n)*refuses be_route_3")
        .expect_error_in(&[Phase::Apply])
        .plan_check(Box::new(move |_| {
            // Record what runs before the failing apply (checked in step 6).
            let e = e.as_ref().ok_or("no emulator")?;
            let vmid = e.vms().first().map(|v| v.vmid).ok_or("no VM")?;
            let cfg = guest_file(e, vmid, "/etc/haproxy/haproxy.cfg")?;
            if cfg.contains("be_route_3") {
                return Err("unexpected be_route_3 before the change".into());
            }
            Ok(())
        }));

    // Step 6: back to the applied routes: nothing to do, the guest still runs the old config.
    let (em, c) = (
        emu_for(
            emu,
            "sni_proxy after the refusal: guest files and the destroy's request-log count",
            "reads the emulated guest's filesystem and request log",
        ),
        counts.clone(),
    );
    let after_refusal = step(emu, ROUTE_GIT)
        .describe("old config still live after the refusal")
        .check(check::func(move |s| {
            let vmid = vmid_of(s)?;
            let Some(e) = &em else { return Ok(()) };
            let cfg = guest_file(e, vmid, "/etc/haproxy/haproxy.cfg")?;
            if cfg.contains("be_route_3") {
                return Err("the refused config was installed".into());
            }
            let r = s.resource(ADDR)?;
            let marker = guest_file(e, vmid, "/etc/haproxy/waddle-config.sha256")?;
            if Some(marker.trim()) != r.str_attr("config_hash")
                || Some(cfg.as_str()) != r.str_attr("haproxy_cfg")
            {
                return Err("guest and state disagree after the refused update".into());
            }
            for leftover in [
                "/etc/haproxy/haproxy.cfg.new",
                "/etc/haproxy/waddle-config.sha256.new",
            ] {
                if guest_file(e, vmid, leftover).is_ok() {
                    return Err(format!("{leftover} left behind"));
                }
            }
            // From here, the log holds the final refresh + destroy.
            c.lock().unwrap().push(String::new());
            e.clear_request_log();
            Ok(())
        }));

    let e = emu.emulator_arc();
    let c = counts.clone();
    let (a, v, sd) = (api.clone(), first_vmid.clone(), seeds.clone());
    let report = TestCase::new()
        .step(create)
        .step(change)
        .step(
            TestStep::import(ADDR)
                .describe("import by plain VM id")
                .import_generate_config(harness::PROVIDER_FROM_ENV)
                .envs(emu.cli_env())
                .import_id_fn(|st| {
                    st.resource(ADDR)
                        .and_then(|r| r.attr("vmid").and_then(|v| v.as_u64()))
                        .map(|v| v.to_string())
                        .ok_or_else(|| "no vmid in state".to_string())
                })
                // Cloud-init inputs, the image URL and the routing cannot be read back from
                // Proxmox; they are adopted from the configuration at the next plan.
                .import_verify_ignore(&[
                    "routes",
                    "http_backend",
                    "listen",
                    "maxconn",
                    "proxy_timeouts",
                    "public_nic",
                    "private_nic",
                    "public_address",
                    "private_address",
                    "dns_servers",
                    "admin_user",
                    "ssh_authorized_keys",
                    "image_url",
                    "timeouts",
                ]),
        )
        .step(drift)
        .step(repair)
        .step(refused)
        .step(after_refusal)
        .check_destroy(move |_| {
            // Read the emulator's log before our own API checks add to it.
            let log = e.as_ref().map(|e| e.request_log());
            // Through the API (both modes): our VM and seed ISOs are gone.
            let vmids = a.vmids()?;
            if let Some(vmid) = *v.lock().unwrap() {
                if vmids.contains(&vmid) {
                    return Err(format!("VM {vmid} left"));
                }
            }
            for seed in sd.lock().unwrap().iter() {
                if a.volumes(storage_of(seed), None)?.contains(seed) {
                    return Err(format!("seed ISO {seed} left"));
                }
            }
            let (Some(e), Some(log)) = (&e, log) else {
                return Ok(());
            };
            if !vmids.is_empty() {
                return Err(format!("VMs left: {vmids:?}"));
            }
            // The last `terraform destroy` refreshes first (GET config/status, guest-agent
            // reads), then deletes; split at the first shutdown/stop call.
            let delete_from = log
                .iter()
                .position(|r| {
                    r.method == "POST"
                        && (r.path.ends_with("/status/shutdown") || r.path.ends_with("/status/stop"))
                })
                .unwrap_or(log.len());
            // Delete begins right after the refresh's last guest-agent call.
            let delete_from = log[..delete_from]
                .iter()
                .rposition(|r| r.path.contains("/agent/"))
                .map_or(0, |i| i + 1);
            let delete_part = &log[delete_from..];
            c.lock().unwrap().push(format!(
                "sni_proxy api-calls destroy: {} requests in Delete (plus {} in the CLI's refresh and the post-step plans before it)\n{}",
                delete_part.len(),
                delete_from,
                summarize(delete_part)
            ));
            let vms = e.vms();
            if !vms.is_empty() {
                return Err(format!("VMs left: {:?}", vms.iter().map(|v| v.vmid).collect::<Vec<_>>()));
            }
            let isos: Vec<String> = e
                .volumes()
                .into_iter()
                .filter(|v| v.content == "iso" || v.content == "images")
                .map(|v| v.volid)
                .collect();
            if !isos.is_empty() {
                return Err(format!("volumes left: {isos:?}"));
            }
            Ok(())
        })
        .run();
    for line in counts.lock().unwrap().iter().filter(|l| !l.is_empty()) {
        notice(line);
    }
    if let Some(emu) = emu.emulator_only(
        "sni_proxy: emulator responses against the PVE 9.1 schema",
        "the emulator's response log exists only in-process",
    ) {
        assert!(report.skipped.is_empty(), "skipped: {:?}", report.skipped);
        let violations = emu.response_violations();
        assert!(
            violations.is_empty(),
            "emulator responses off-schema: {violations:?}"
        );
    } else {
        // Exactly the three emulator-only steps, reported as skipped.
        assert_eq!(report.skipped.len(), 3, "skipped: {:?}", report.skipped);
    }
    drop(api);
}

/// A create that fails after the VM exists (the start task fails) records the VM in the state
/// (tainted) with an error; the next apply replaces it (deleting the VM and its seed ISO
/// first), and destroy leaves nothing behind.
#[test]
fn sni_proxy_failed_create_is_cleaned_up_by_the_next_apply() {
    use waddle_acceptance::pve::{FaultConfig, FaultKind, FaultRule};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let target = PveTarget::select(
        &rt,
        EmulatorConfig::builder()
            .ip(Ipv4Addr::new(127, 40, 5, 2))
            .bridge("vmbr1")
            .faults(
                FaultConfig::new(11).rule(
                    FaultRule::new(
                        "POST /nodes/{node}/qemu/{vmid}/status/start",
                        FaultKind::FailTask("start failed: injected by the test".into()),
                        1.0,
                    )
                    .max_hits(1),
                ),
            )
            .build(),
    );
    let Some(emu) = emu_for(
        &target,
        "sni_proxy_failed_create_is_cleaned_up_by_the_next_apply",
        "injects a failed start task (fault injection) and inspects the emulator's request log",
    ) else {
        return;
    };

    let failed = step(&target, "")
        .describe("create fails at VM start")
        .expect_error("Creating the SNI proxy VM failed")
        .expect_error_in(&[Phase::Apply]);

    let (e, seen) = (emu.clone(), Arc::new(Mutex::new(None::<(u32, String)>)));
    let s2 = seen.clone();
    let e2 = emu.clone();
    let replaced = step(&target, "")
        .describe("the tainted VM is replaced")
        .plan_check(check::plan_actions(ADDR, &["delete", "create"]))
        .plan_check(Box::new(move |_| {
            // What the failed create left behind: exactly one VM and its seed ISO.
            let vms = e2.vms();
            let [vm] = vms.as_slice() else {
                return Err(format!("expected the one failed VM, found {}", vms.len()));
            };
            let iso = e2
                .volumes()
                .into_iter()
                .find(|v| v.content == "iso")
                .ok_or("the failed create's seed ISO is not on the storage")?;
            *s2.lock().unwrap() = Some((vm.vmid, iso.volid));
            e2.clear_request_log();
            Ok(())
        }))
        .check(check::func(move |s| {
            let (old_vmid, _old_iso) = seen.lock().unwrap().clone().ok_or("no failed VM seen")?;
            let log = e.request_log();
            let deleted = log
                .iter()
                .any(|r| r.method == "DELETE" && r.path.ends_with(&format!("/qemu/{old_vmid}")));
            if !deleted {
                return Err(format!("the failed VM {old_vmid} was not deleted"));
            }
            if !log
                .iter()
                .any(|r| r.method == "DELETE" && r.path.contains("/content/"))
            {
                return Err("the failed create's seed ISO was not deleted".into());
            }
            let vms = e.vms();
            if vms.len() != 1 || !vms[0].running {
                return Err(format!("expected one running VM, found {vms:?}"));
            }
            let isos = e
                .volumes()
                .into_iter()
                .filter(|v| v.content == "iso")
                .count();
            if isos != 1 {
                return Err(format!("{isos} seed ISOs on the storage, expected 1"));
            }
            let vmid = vmid_of(s)?;
            if vmid != vms[0].vmid {
                return Err("state and emulator disagree on the VM id".into());
            }
            Ok(())
        }));

    let e = emu.clone();
    TestCase::new()
        .step(failed)
        .step(replaced)
        .check_destroy(move |_| {
            let left: Vec<String> = e
                .volumes()
                .into_iter()
                .filter(|v| v.content == "iso" || v.content == "images")
                .map(|v| v.volid)
                .collect();
            if !e.vms().is_empty() || !left.is_empty() {
                return Err(format!("left behind: VMs {:?}, volumes {left:?}", e.vms()));
            }
            Ok(())
        })
        .run();
    assert!(
        emu.fault_log()
            .iter()
            .any(|f| matches!(f.kind, FaultKind::FailTask(_))),
        "the start fault was not injected: {:?}",
        emu.fault_log()
    );
    drop(rt);
}

/// The resource driven in process through the framework's RPC handlers (no CLI), against the
/// emulator: exact API call counts per operation, validation before any API call, drift and
/// VM-gone detection on read.
mod in_process {
    use super::*;
    use crate::inproc::harness;

    use waddle_framework::Value;

    use waddle_provider::resources::sni_proxy::{
        schema, PrivateNic, PublicNic, Route, SniProxyState, TYPE_NAME,
    };
    use waddle_provider::resources::timeouts::TimeoutsModel;

    fn route(host: &str, backend: &str) -> Route {
        Route {
            hostnames: vec![host.into()],
            backend: backend.into(),
            proxy_protocol: None,
            check: None,
        }
    }

    fn config(routes: Vec<Route>) -> Value {
        let mut s: SniProxyState = schema().null_value().to_typed().expect("null state");
        s.public_nic = Some(PublicNic {
            bridge: "vmbr0".into(),
            cidr: "203.0.113.10/24".into(),
            gateway: Some("203.0.113.1".into()),
        });
        s.private_nic = Some(PrivateNic {
            bridge: "vmbr1".into(),
            cidr: "10.10.0.10/24".into(),
        });
        s.ssh_authorized_keys = Some(vec![KEY.into()]);
        s.routes = Some(routes);
        s.timeouts = Some(TimeoutsModel {
            create: Some("3m".into()),
            update: Some("3m".into()),
            delete: None,
        });
        schema().from_typed(&s).expect("config")
    }

    fn str_attr<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
        v.get_attr(k).and_then(Value::as_str)
    }

    #[test]
    fn lifecycle_in_process_with_api_call_counts() {
        if PveTarget::real_from(|k| std::env::var(k).ok())
            .expect("real-PVE variables")
            .is_some()
        {
            notice(
                "SKIPPED lifecycle_in_process_with_api_call_counts (real PVE): \
                 counts calls in the in-process emulator's request log",
            );
            return;
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let emu = PveEmulator::start(
                EmulatorConfig::builder()
                    .ip(Ipv4Addr::new(127, 40, 5, 3))
                    .bridge("vmbr1")
                    .build(),
            )
            .await
            .expect("PVE emulator");
            let h = harness(&emu).await;
            emu.clear_request_log();

            // Bad input: refused with attribute paths, before any API call.
            let bad = config(vec![
                route("a.example.org", "10.10.0.2:443"),
                route("A.example.org", "10.10.0.3"),
            ]);
            let d = h.validate_resource(TYPE_NAME, bad.clone()).await;
            let paths: Vec<String> = d
                .errors()
                .filter_map(|e| e.attribute.as_ref().map(|p| p.to_string()))
                .collect();
            assert!(
                paths.contains(&"routes[1].hostnames[0]".to_string()),
                "{d:?}"
            );
            assert!(paths.contains(&"routes[1].backend".to_string()), "{d:?}");
            assert!(h
                .plan_and_apply(TYPE_NAME, &Value::Null, &bad)
                .await
                .is_err());
            assert!(
                emu.request_log().is_empty(),
                "API calls before validation passed"
            );

            // Create.
            let cfg1 = config(vec![route("a.example.org", "10.10.0.2:443")]);
            let state = h
                .plan_and_apply(TYPE_NAME, &Value::Null, &cfg1)
                .await
                .expect("create");
            let create_calls = emu.request_log();
            emu.clear_request_log();
            let vmid = state
                .get_attr("vmid")
                .and_then(Value::as_i64)
                .expect("vmid") as u32;
            assert_eq!(str_attr(&state, "id"), Some(format!("pve/{vmid}").as_str()));

            // Read: unchanged, and the next plan is empty.
            let r = h.read(TYPE_NAME, &state).await;
            assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
            assert!(r.state.equals(&state), "read changed the state");
            let p = h.plan(TYPE_NAME, &r.state, &cfg1).await;
            assert!(
                p.planned_state.equals(&state),
                "plan after create is not empty"
            );
            let read_calls = emu.request_log().len();
            emu.clear_request_log();

            // Route change: in place.
            let cfg2 = config(vec![
                route("a.example.org", "10.10.0.2:443"),
                route("*.apps.example.org", "10.10.0.30:443"),
            ]);
            let p = h.plan(TYPE_NAME, &state, &cfg2).await;
            assert!(p.requires_replace.is_empty(), "{:?}", p.requires_replace);
            assert_ne!(
                str_attr(&p.planned_state, "config_hash"),
                str_attr(&state, "config_hash")
            );
            let a = h.apply(TYPE_NAME, &state, &cfg2, &p.planned_state).await;
            assert!(!a.diagnostics.has_errors(), "{:?}", a.diagnostics);
            let state2 = a.state;
            assert_eq!(state2.get_attr("vmid"), state.get_attr("vmid"));
            let update_calls = emu.request_log();
            emu.clear_request_log();
            let marker = guest_file(&emu, vmid, "/etc/haproxy/waddle-config.sha256").unwrap();
            assert_eq!(Some(marker.trim()), str_attr(&state2, "config_hash"));

            // Drift: a hand-edited map shows as a different config_hash on read, and the plan
            // goes back to the expected one.
            let live = guest_file(&emu, vmid, "/etc/haproxy/haproxy.cfg").unwrap();
            let exact = exact_map_path(&live).unwrap();
            let app = emu.appliance(vmid).unwrap();
            let deb = app.as_any().downcast_ref::<DebianAppliance>().unwrap();
            std::fs::write(
                deb.host_path(&exact).unwrap(),
                "evil.example.org be_route_0\n",
            )
            .unwrap();
            let r = h.read(TYPE_NAME, &state2).await;
            assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
            assert_ne!(
                str_attr(&r.state, "config_hash"),
                str_attr(&state2, "config_hash")
            );
            assert_eq!(
                str_attr(&r.state, "exact_map"),
                Some("evil.example.org be_route_0\n")
            );
            let p = h.plan(TYPE_NAME, &r.state, &cfg2).await;
            assert!(p.requires_replace.is_empty());
            assert_eq!(
                str_attr(&p.planned_state, "config_hash"),
                str_attr(&state2, "config_hash")
            );
            let a = h.apply(TYPE_NAME, &r.state, &cfg2, &p.planned_state).await;
            assert!(!a.diagnostics.has_errors(), "{:?}", a.diagnostics);
            let map = guest_file(&emu, vmid, &exact).unwrap();
            assert!(!map.contains("evil"), "drift not repaired: {map}");
            emu.clear_request_log();

            // Destroy.
            let gone = h
                .plan_and_apply(TYPE_NAME, &a.state, &Value::Null)
                .await
                .expect("destroy");
            assert!(gone.is_null());
            let delete_calls = emu.request_log();
            assert!(emu.vms().is_empty(), "VM left");
            assert!(
                !emu.volumes().iter().any(|v| v.content == "iso"),
                "seed ISO left: {:?}",
                emu.volumes()
            );
            // Read after the VM is gone: removed from state.
            let r = h.read(TYPE_NAME, &a.state).await;
            assert!(!r.diagnostics.has_errors(), "{:?}", r.diagnostics);
            assert!(r.state.is_null(), "a deleted VM must leave the state");

            notice(&format!(
                "sni_proxy api-calls (in process, emulator request log): create {}, read {}, \
                 route update {}, delete {}\ncreate:\n{}\nupdate:\n{}\ndelete:\n{}",
                create_calls.len(),
                read_calls,
                update_calls.len(),
                delete_calls.len(),
                summarize(&create_calls),
                summarize(&update_calls),
                summarize(&delete_calls)
            ));
            assert!(emu.response_violations().is_empty());
        });
    }
}
