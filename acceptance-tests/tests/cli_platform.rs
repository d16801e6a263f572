//! The platform through the real CLI against the PVE emulator (with the Talos emulator plugged
//! in): `modules/teleport` alone, and `examples/waddle-social` whole — network, SNI proxy,
//! Teleport and the Talos cluster in one apply, the cluster's kubeconfig flowing into Teleport.
//!
//! Each case: apply, empty plan, refresh, empty plan (the harness does these after every
//! apply); then day-2 changes in place — a Teleport app added, a team mapping changed, an SNI
//! route changed, (the example) a Talos config patch added — each planned without a
//! replacement and applied with the same VMIDs, and the live `/etc/teleport.yaml` in the guest
//! equal to the state's. The module alone: a route to Teleport with a PROXY protocol setting
//! Teleport does not share is refused at plan. The example: `teleport_proxy_protocol = true`
//! turns PROXY v2 on in the route and in Teleport at once, in place. Then destroy, and nothing
//! is left on the emulator: no VM, no disk, no
//! seed ISO, no image (the Debian cloud image the SNI proxy and Teleport share goes with the
//! last VM that recorded it; the Talos image with the cluster), no SDN object.
//!
//! Wall time of each case is printed as `waddle-acceptance: ... wall time`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;
use waddle_acceptance::harness::emulated::TalosTarget;
use waddle_acceptance::harness::target::PveTarget;
use waddle_acceptance::harness::{self, check, notice, Phase, Snapshot, TestCase, TestStep};
use waddle_acceptance::pve::{DebianAppliance, EmulatorConfig, PveEmulator};
use waddle_acceptance::teleport::{SANDBOX_GITHUB_CLIENT_ID, SANDBOX_GITHUB_CLIENT_SECRET};

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWaddleAcceptanceTestKeyNotARealOne0 test";

/// The emulator (in process, so guest files can be read) with the Talos fleet plugged in.
/// `bridge`: a Linux bridge the host already has (the module alone needs one; the example makes
/// its own SDN vnet `vmbr1`).
fn start(pve_ip: Ipv4Addr, bridge: Option<&str>) -> Option<TalosTarget> {
    let mut config = EmulatorConfig::builder().ip(pve_ip);
    if let Some(b) = bridge {
        config = config.bridge(b);
    }
    TalosTarget::start(
        "the platform lifecycle",
        "it reads guest files and runs the Talos nodes in the in-process emulators",
        config.build(),
    )
}

/// A file in the Debian guest of a VM.
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

fn vmid_of(s: &Snapshot, address: &str) -> Result<u32, String> {
    s.resource(address)?
        .attr("vmid")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| format!("{address}: no vmid"))
}

/// Every VMID of the state by a readable key: each VM-backed resource's `vmid`, and each
/// Talos node's VM from `proxmox_vms`.
fn vmids(
    s: &Snapshot,
    vm_resources: &[&str],
    clusters: &[&str],
) -> Result<BTreeMap<String, u32>, String> {
    let mut out = BTreeMap::new();
    for a in vm_resources {
        out.insert((*a).to_string(), vmid_of(s, a)?);
    }
    for c in clusters {
        let r = s.resource(c)?;
        let vms = r
            .attr("proxmox_vms")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("{c}: no proxmox_vms"))?;
        for (node, vm) in vms {
            let id = vm
                .get("vmid")
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| format!("{c}: node {node} has no vmid"))?;
            out.insert(format!("{c}[{node}]"), id);
        }
    }
    Ok(out)
}

/// A check that records the VMIDs after the first apply and requires the same ones after every
/// later step (nothing replaced).
fn same_vmids(
    seen: &Arc<Mutex<Option<BTreeMap<String, u32>>>>,
    vm_resources: &'static [&'static str],
    clusters: &'static [&'static str],
) -> check::Check {
    let seen = seen.clone();
    check::func(move |s| {
        let now = vmids(s, vm_resources, clusters)?;
        let mut seen = seen.lock().map_err(|_| "poisoned".to_string())?;
        match seen.as_ref() {
            None => {
                *seen = Some(now);
                Ok(())
            }
            Some(before) if *before == now => Ok(()),
            Some(before) => Err(format!("VMIDs changed: before {before:?}, now {now:?}")),
        }
    })
}

/// The live `/etc/teleport.yaml` in the Teleport VM is the state's `teleport_yaml`, and holds
/// every string in `contains`.
fn live_teleport_yaml(
    emu: Arc<PveEmulator>,
    address: &'static str,
    contains: &'static [&'static str],
) -> check::Check {
    check::func(move |s| {
        let vmid = vmid_of(s, address)?;
        let r = s.resource(address)?;
        let want = r
            .str_attr("teleport_yaml")
            .ok_or_else(|| format!("{address}: no teleport_yaml"))?;
        let live = guest_file(&emu, vmid, "/etc/teleport.yaml")?;
        if live != want {
            return Err(format!(
                "/etc/teleport.yaml of VM {vmid} differs from the state:\n--- live\n{live}\n--- state\n{want}"
            ));
        }
        for c in contains {
            if !live.contains(c) {
                return Err(format!("/etc/teleport.yaml lacks {c:?}:\n{live}"));
            }
        }
        Ok(())
    })
}

/// The GitHub connector the running Teleport holds (what `tctl create -f` stored) maps `team`.
fn live_connector_maps(
    emu: Arc<PveEmulator>,
    address: &'static str,
    team: &'static str,
) -> check::Check {
    check::func(move |s| {
        let vmid = vmid_of(s, address)?;
        let app = emu
            .appliance(vmid)
            .ok_or_else(|| format!("VM {vmid} has no running appliance"))?;
        let deb = app
            .as_any()
            .downcast_ref::<DebianAppliance>()
            .ok_or_else(|| format!("VM {vmid} runs {}, not the Debian appliance", app.kind()))?;
        let connector = deb
            .teleport()
            .resource("github", "github")
            .ok_or_else(|| format!("Teleport on VM {vmid} has no GitHub connector \"github\""))?;
        let teams: Vec<&str> = connector
            .pointer("/spec/teams_to_roles")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|m| m.get("team").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        if teams.contains(&team) {
            Ok(())
        } else {
            Err(format!(
                "the live connector maps teams {teams:?}, not {team:?}"
            ))
        }
    })
}

/// The kubeconfig file on the Teleport VM is the cluster's kubeconfig (it flowed from
/// `waddle_talos_cluster` into Teleport within the apply).
fn kubeconfig_on_teleport(
    emu: Arc<PveEmulator>,
    node: &'static str,
    cluster: &'static str,
) -> check::Check {
    check::func(move |s| {
        let vmid = vmid_of(s, node)?;
        let want = s
            .resource(cluster)?
            .str_attr("kubeconfig")
            .ok_or_else(|| format!("{cluster}: no kubeconfig"))?
            .to_string();
        let live = guest_file(&emu, vmid, "/etc/teleport/kubeconfig")?;
        if live == want {
            Ok(())
        } else {
            Err(format!(
                "/etc/teleport/kubeconfig of VM {vmid} is not the cluster's kubeconfig"
            ))
        }
    })
}

/// Nothing is left on the emulator: no VM, no volume (disks, seed ISOs, the Debian cloud image
/// and the Talos image), no SDN zone or vnet.
fn nothing_left(emu: &Arc<PveEmulator>, rt: &tokio::runtime::Handle) -> Result<(), String> {
    let vms: Vec<u32> = emu.vms().iter().map(|v| v.vmid).collect();
    if !vms.is_empty() {
        return Err(format!("VMs left: {vms:?}"));
    }
    let left: Vec<String> = emu
        .volumes()
        .into_iter()
        .map(|v| format!("{} ({})", v.volid, v.content))
        .collect();
    if !left.is_empty() {
        return Err(format!("volumes left: {left:?}"));
    }
    let api = PveTarget::Emulated(emu.clone())
        .api(rt.clone())
        .map_err(|e| format!("API client: {e}"))?;
    for kind in ["zones", "vnets"] {
        let objs = api.list(&format!("/cluster/sdn/{kind}"), &[])?;
        if !objs.is_empty() {
            return Err(format!("SDN {kind} left: {objs:?}"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// modules/teleport alone
// ---------------------------------------------------------------------------------------------

const NODE: &str = "module.teleport.waddle_teleport_node.this";

fn module_config(t: &PveTarget, teams: &str, apps: &str, routes: &str) -> String {
    format!(
        r#"
{provider}
module "teleport" {{
  source               = "./modules/teleport"
  domain               = "example.org"
  acme_email           = "admin@example.org"
  github_org           = "waddle-social"
  github_client_id     = "{SANDBOX_GITHUB_CLIENT_ID}"
  github_client_secret = "{SANDBOX_GITHUB_CLIENT_SECRET}"
  teams_to_roles       = [{teams}]
  apps                 = [{apps}]
  sni_routes           = [{routes}]
  ssh_public_keys      = ["{KEY}"]
  timeouts             = {{ create = "5m", update = "5m" }}
}}

output "web_url" {{
  value = module.teleport.web_url
}}
"#,
        provider = t.provider_hcl(),
    )
}

fn module_step(t: &PveTarget, teams: &str, apps: &str, routes: &str) -> TestStep {
    t.step(module_config(t, teams, apps, routes))
        .files(harness::module_files("teleport"))
}

const TEAM_INFRA: &str = r#"{ team = "infra", roles = ["infra-admin"] }"#;
const TEAM_INFRA_AND_DEVS: &str =
    r#"{ team = "infra", roles = ["infra-admin"] }, { team = "devs", roles = ["access"] }"#;
const APP_GRAFANA: &str = r#"{ name = "grafana", uri = "http://10.10.0.40:3000", public_addr = null, insecure_skip_verify = false, labels = null }"#;
const ROUTE_TELEPORT: &str = r#"{ hostnames = ["teleport.example.org", ".teleport.example.org", "proxmox.example.org"], backend = "10.10.0.2:3080", proxy_protocol = false, check = true }"#;
const ROUTE_TELEPORT_WITH_PROXY_V2: &str = r#"{ hostnames = ["teleport.example.org", ".teleport.example.org", "proxmox.example.org"], backend = "10.10.0.2:3080", proxy_protocol = true, check = true }"#;
const ROUTE_TELEPORT_AND_GIT: &str = r#"{ hostnames = ["teleport.example.org", ".teleport.example.org", "proxmox.example.org"], backend = "10.10.0.2:3080", proxy_protocol = false, check = true }, { hostnames = ["git.example.org"], backend = "10.10.0.41:443", proxy_protocol = true, check = true }"#;

#[test]
fn teleport_module_lifecycle_in_place() {
    let t0 = Instant::now();
    let Some(env) = start(Ipv4Addr::new(127, 40, 70, 1), Some("vmbr1")) else {
        return;
    };
    let t = &env.target;
    let seen = Arc::new(Mutex::new(None));
    const VMS: &[&str] = &[NODE];
    let emu = env.emu.clone();
    let emu_destroy = env.emu.clone();
    let rt_handle = env.rt.handle().clone();
    TestCase::new()
        .step(
            module_step(t, TEAM_INFRA, "", ROUTE_TELEPORT)
                .describe("create")
                .check(check::output_equals(
                    "web_url",
                    "https://teleport.example.org",
                ))
                .check(same_vmids(&seen, VMS, &[]))
                .check(live_teleport_yaml(
                    emu.clone(),
                    NODE,
                    &["version: v3", "proxmox.example.org"],
                )),
        )
        .step(
            module_step(t, TEAM_INFRA, APP_GRAFANA, ROUTE_TELEPORT)
                .describe("add a Teleport app")
                .plan_check(check::plan_actions(NODE, &["update"]))
                .check(same_vmids(&seen, VMS, &[]))
                .check(live_teleport_yaml(
                    emu.clone(),
                    NODE,
                    &["grafana", "http://10.10.0.40:3000"],
                )),
        )
        .step(
            module_step(t, TEAM_INFRA_AND_DEVS, APP_GRAFANA, ROUTE_TELEPORT)
                .describe("change a team mapping")
                .plan_check(check::plan_actions(NODE, &["update"]))
                .check(same_vmids(&seen, VMS, &[]))
                .check(check::attr_len(NODE, "github.teams_to_roles", 2))
                .check(live_connector_maps(emu.clone(), NODE, "devs")),
        )
        .step(
            module_step(t, TEAM_INFRA_AND_DEVS, APP_GRAFANA, ROUTE_TELEPORT_AND_GIT)
                .describe("change an SNI route")
                .plan_check(check::plan_no_replace(NODE))
                .check(same_vmids(&seen, VMS, &[]))
                .check(check::attr_len(NODE, "sni_routes", 2)),
        )
        .step(
            module_step(
                t,
                TEAM_INFRA_AND_DEVS,
                APP_GRAFANA,
                ROUTE_TELEPORT_WITH_PROXY_V2,
            )
            .describe("a route to Teleport sending PROXY v2 while Teleport expects none")
            .expect_error("proxy_protocol")
            .expect_error_in(&[Phase::Validate, Phase::Plan]),
        )
        .check_destroy(move |_| nothing_left(&emu_destroy, &rt_handle))
        .run();
    notice(&format!(
        "modules/teleport lifecycle (create, 3 changes in place, a refused PROXY mismatch, destroy) wall time: {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    env.shutdown();
}

// ---------------------------------------------------------------------------------------------
// examples/waddle-social whole
// ---------------------------------------------------------------------------------------------

const SNI: &str = "module.sni_proxy.waddle_sni_proxy.this";
const TELEPORT: &str = "module.teleport.waddle_teleport_node.this";
const CLUSTER: &str = "module.cluster.waddle_talos_cluster.this";
const NETWORK: &str = "module.network.waddle_network.this";

/// `examples/waddle-social/sandbox.tfvars` with the endpoint of this test's emulator, as
/// `terraform.tfvars`; `overrides` (HCL assignments) go to `test.auto.tfvars`, which wins.
fn platform_step(t: &PveTarget, talos_net: u8, overrides: &str) -> TestStep {
    let example = harness::repo_root().join("examples/waddle-social");
    let sandbox = std::fs::read_to_string(example.join("sandbox.tfvars")).expect("sandbox.tfvars");
    let mut replaced = false;
    let tfvars: String = sandbox
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("proxmox_endpoint") {
                replaced = true;
                format!("proxmox_endpoint = \"{}\"", t.endpoint())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(replaced, "sandbox.tfvars sets proxmox_endpoint");
    let auto = format!(
        "talos_node_ips = [\"127.20.{talos_net}.10\", \"127.20.{talos_net}.11\", \"127.20.{talos_net}.12\"]\n\
         talos_gateway  = \"127.20.{talos_net}.1\"\n\
         talos_vip      = \"127.20.{talos_net}.20\"\n{overrides}\n"
    );
    TestStep::config_dir("examples/waddle-social")
        .file("terraform.tfvars", tfvars)
        .file("test.auto.tfvars", auto)
}

#[test]
fn waddle_social_platform_in_one_apply_and_in_place() {
    let t0 = Instant::now();
    let Some(env) = start(Ipv4Addr::new(127, 40, 71, 1), None) else {
        return;
    };
    let t = &env.target;
    let net = 71u8;
    let seen = Arc::new(Mutex::new(None));
    const VMS: &[&str] = &[SNI, TELEPORT];
    const CLUSTERS: &[&str] = &[CLUSTER];
    let emu = env.emu.clone();
    let emu_destroy = env.emu.clone();
    let rt_handle = env.rt.handle().clone();

    let app = r#"teleport_apps = [{ name = "talos", uri = "tcp://127.20.71.20:50000", public_addr = null, insecure_skip_verify = false, labels = null }]"#;
    let teams = r#"teleport_teams_to_roles = [{ team = "infra", roles = ["infra-admin"] }, { team = "devs", roles = ["access"] }]"#;
    let route = r#"extra_sni_routes = [{ hostnames = ["git.waddle.example"], backend = "10.10.0.40:443", proxy_protocol = false, check = true }]"#;
    let patch =
        r#"talos_config_patches = ["machine:\n  sysctls:\n    net.core.somaxconn: \"65535\"\n"]"#;
    let in_place = [SNI, TELEPORT, CLUSTER, NETWORK];
    let no_replace = |mut s: TestStep| {
        for a in in_place {
            s = s.plan_check(check::plan_no_replace(a));
        }
        s.check(same_vmids(&seen, VMS, CLUSTERS))
    };

    // Token and CA from the environment, as a user of the example sets them.
    let case = env.case();
    case.step(
        platform_step(t, net, "")
            .describe("the whole platform in one apply")
            .check(same_vmids(&seen, VMS, CLUSTERS))
            .check(check::output_equals(
                "teleport_web_url",
                "https://teleport.waddle.example",
            ))
            .check(check::attr_set(TELEPORT, "kubeconfig"))
            .check(check::attr_pair(
                TELEPORT,
                "kubeconfig",
                CLUSTER,
                "kubeconfig",
            ))
            .check(kubeconfig_on_teleport(emu.clone(), TELEPORT, CLUSTER))
            .check(live_teleport_yaml(
                emu.clone(),
                TELEPORT,
                &["kubernetes_service", "proxmox.waddle.example"],
            )),
    )
    .step(
        no_replace(platform_step(t, net, app))
            .describe("add a Teleport app")
            .check(live_teleport_yaml(
                emu.clone(),
                TELEPORT,
                &["tcp://127.20.71.20:50000"],
            )),
    )
    .step(
        no_replace(platform_step(t, net, &format!("{app}\n{teams}")))
            .describe("change a team mapping")
            .check(check::attr_len(TELEPORT, "github.teams_to_roles", 2))
            .check(live_connector_maps(emu.clone(), TELEPORT, "devs")),
    )
    .step(
        no_replace(platform_step(t, net, &format!("{app}\n{teams}\n{route}")))
            .describe("change an SNI route")
            .check(check::attr_len(SNI, "routes", 3))
            .check(check::attr_len(TELEPORT, "sni_routes", 3)),
    )
    .step(
        no_replace(platform_step(
            t,
            net,
            &format!("{app}\n{teams}\n{route}\n{patch}"),
        ))
        .describe("add a Talos config patch")
        .check(check::attr_len(CLUSTER, "config_patches", 1)),
    )
    .step(
        no_replace(platform_step(
            t,
            net,
            &format!("{app}\n{teams}\n{route}\n{patch}\nteleport_proxy_protocol = true"),
        ))
        .describe("PROXY protocol on, from the one variable, on both sides")
        .check(check::attr_equals(TELEPORT, "proxy_protocol", true))
        .check(check::attr_equals(SNI, "routes.0.proxy_protocol", true))
        .check(live_teleport_yaml(
            emu.clone(),
            TELEPORT,
            &["proxy_protocol: on"],
        )),
    )
    .check_destroy(move |_| nothing_left(&emu_destroy, &rt_handle))
    .run();
    notice(&format!(
        "examples/waddle-social (apply, 5 changes in place, destroy) wall time: {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    env.shutdown();
}
