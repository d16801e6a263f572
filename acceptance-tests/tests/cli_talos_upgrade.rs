//! Talos and Kubernetes upgrades of `examples/three-node` through the real CLI, against the
//! PVE emulator with the Talos emulator plugged in (emulator only: the checks read the Talos
//! emulator's upgrade and component logs):
//!
//! 1. create on Talos v1.12.4, Kubernetes 1.35.0 (three control planes, one worker);
//! 2. a Kubernetes downgrade (1.35.0 -> 1.33.0) is refused at plan, naming the attribute;
//! 3. `talos_version = "v1.12.11"` with an injected failure of the second control plane's
//!    upgrade: the apply fails naming it, the first control plane is done, the rest untouched;
//! 4. the same configuration again resumes from the second control plane; every node runs
//!    v1.12.11 (a rolling upgrade, no control planes at once, workers after), empty plan after;
//! 5. `kubernetes_version = "1.35.2"`: control-plane components control plane by control
//!    plane, then the kubelets node by node, control planes first; empty plan after;
//! 6. `talos_version = "v1.13.9"` with `config_contract = "v1.13"` in the same change is
//!    refused at plan (the nodes run v1.12);
//! 7. `talos_version = "v1.13.9"`: every node upgraded (MachineService.Upgrade, they run
//!    v1.12), the configurations still of the v1.12 contract; empty plan after;
//! 8. `config_contract = "v1.13"`: every configuration re-rendered for v1.13 (validated by
//!    the nodes against the v1.13 schema), no further upgrade; empty plan after.
//!
//! And `examples/homelab-single-node` (one control plane, SecureBoot image): v1.12.4 ->
//! v1.12.11 in place, with `preserve` (Talos refuses to upgrade the only etcd member
//! without it), the same VM, a new boot ID, the SecureBoot installer; empty plan after.

use std::net::Ipv4Addr;

use waddle_acceptance::harness::emulated::TalosTarget;
use waddle_acceptance::harness::{check, repo_root, Snapshot, TestStep};
use waddle_acceptance::pve::EmulatorConfig;
use waddle_acceptance::talos::{TalosFleet, UpgradeApi, UpgradeRecord};
use waddle_talos::SecretsBundle;

const THREE: &str = "waddle_talos_cluster.this";
const NET: u8 = 43;

/// A step applying `examples/<name>/main.tf` with `tfvars` as its `terraform.tfvars`.
fn example_step(name: &str, tfvars: String) -> TestStep {
    let main = std::fs::read_to_string(repo_root().join("examples").join(name).join("main.tf"))
        .expect("example main.tf");
    TestStep::config(main).file("terraform.tfvars", tfvars)
}

/// The emulators on `127.40.<net>.1` (the nodes' bridge `vmbr1`); `None` against a real PVE.
fn start(test: &str, net: u8) -> Option<TalosTarget> {
    TalosTarget::start(
        test,
        "reads the Talos emulator's upgrade log",
        EmulatorConfig::builder()
            .ip(Ipv4Addr::new(127, 40, net, 1))
            .bridge("vmbr1")
            .build(),
    )
}

/// `examples/three-node` at `talos`/`k8s`, with `config_contract` when given.
fn three_node(talos: &str, k8s: &str, contract: Option<&str>) -> TestStep {
    let contract = contract
        .map(|c| format!("config_contract    = \"{c}\"\n"))
        .unwrap_or_default();
    let vars = format!(
        r#"
control_planes = {{
  cp1 = {{ address = "127.20.{NET}.10/24", vmid = 230 }}
  cp2 = {{ address = "127.20.{NET}.11/24", vmid = 231 }}
  cp3 = {{ address = "127.20.{NET}.12/24", vmid = 232 }}
}}
workers = {{
  w1 = {{ address = "127.20.{NET}.13/24", vmid = 233 }}
}}
gateway            = "127.20.{NET}.1"
vip                = "127.20.{NET}.20"
talos_version      = "{talos}"
kubernetes_version = "{k8s}"
{contract}"#
    );
    example_step("three-node", vars)
}

/// Every node's configuration as the Talos emulator holds it.
fn configs(fleet: &TalosFleet) -> Result<Vec<String>, String> {
    (10..=13)
        .map(|h| {
            fleet
                .node_at(ip(h))
                .and_then(|n| n.config_yaml())
                .ok_or_else(|| format!("no configured node on {}", ip(h)))
        })
        .collect()
}

fn ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 20, NET, host)
}

fn versions(fleet: &TalosFleet) -> Result<Vec<String>, String> {
    (10..=13)
        .map(|h| {
            fleet
                .node_at(ip(h))
                .map(|n| n.talos_version())
                .ok_or_else(|| format!("no node on {}", ip(h)))
        })
        .collect()
}

fn cluster_id(s: &Snapshot) -> Result<String, String> {
    let r = s.resource(THREE)?;
    let y = r
        .str_attr("machine_secrets")
        .ok_or("machine_secrets missing")?;
    Ok(SecretsBundle::from_yaml(y)
        .map_err(|e| e.to_string())?
        .cluster_id)
}

/// No two control planes upgrading at once; workers only after the last control plane.
fn one_control_plane_at_a_time(log: &[UpgradeRecord]) -> Result<(), String> {
    let cps: Vec<&UpgradeRecord> = log.iter().filter(|r| r.control_plane).collect();
    for (i, a) in cps.iter().enumerate() {
        let af = a.finished.ok_or(format!("{} never finished", a.hostname))?;
        for b in &cps[i + 1..] {
            let bf = b.finished.ok_or(format!("{} never finished", b.hostname))?;
            if a.started < bf && b.started < af {
                return Err(format!(
                    "{} and {} were upgraded at the same time",
                    a.hostname, b.hostname
                ));
            }
        }
    }
    let last = cps.iter().filter_map(|r| r.finished).max();
    if let Some(w) = log
        .iter()
        .find(|r| !r.control_plane && last.is_some_and(|l| r.started < l))
    {
        return Err(format!(
            "{} upgraded before the control planes were done",
            w.hostname
        ));
    }
    Ok(())
}

#[test]
fn three_node_rolling_upgrades() {
    let Some(t) = start("three_node_rolling_upgrades", NET) else {
        return;
    };
    let fleet = &t.fleet;
    let case = t.case();
    let (f1, f3, f4, f5) = (fleet.clone(), fleet.clone(), fleet.clone(), fleet.clone());
    let (f7, f8) = (fleet.clone(), fleet.clone());
    case.step(
        three_node("v1.12.4", "1.35.0", None)
            .describe("create on Talos v1.12.4")
            .check(check::func(move |_| {
                let v = versions(&f1)?;
                if v.iter().any(|x| x != "v1.12.4") {
                    return Err(format!("versions after create: {v:?}"));
                }
                // The next upgrade of cp2 fails once (the installer crashes).
                f1.node_at(ip(11)).ok_or("no cp2")?.fail_next(
                    "Upgrade",
                    tonic::Code::Internal,
                    "injected: installer crashed",
                );
                Ok(())
            })),
    )
    .step(
        three_node("v1.12.4", "1.33.0", None)
            .describe("a Kubernetes downgrade is refused at plan")
            .plan_only()
            .expect_error("kubernetes_version: 1.33.0 is lower than 1.35.0"),
    )
    .step(
        three_node("v1.12.11", "1.35.0", None)
            .describe("the upgrade stops at the failing second control plane")
            .plan_check(check::plan_actions(THREE, &["update"]))
            .expect_error("injected: installer crashed"),
    )
    .step(
        three_node("v1.12.11", "1.35.0", None)
            .describe("the next apply resumes it")
            .plan_check(check::plan_actions(THREE, &["update"]))
            .check(check::func(move |s| {
                let v = versions(&f3)?;
                if v.iter().any(|x| x != "v1.12.11") {
                    return Err(format!("versions after the upgrade: {v:?}"));
                }
                let log = f3.upgrade_log();
                let order: Vec<&str> = log.iter().map(|r| r.hostname.as_str()).collect();
                if order != ["cp1", "cp2", "cp3", "w1"] {
                    return Err(format!("upgrade order {order:?} (each node exactly once)"));
                }
                one_control_plane_at_a_time(&log)?;
                let ml = f3.membership_log(&cluster_id(s)?);
                if let Some(e) = ml.iter().find(|e| !e.has_quorum()) {
                    return Err(format!("etcd lost quorum: {e:?}"));
                }
                Ok(())
            })),
    )
    .step(
        three_node("v1.12.11", "1.35.2", None)
            .describe("Kubernetes 1.35.0 -> 1.35.2 in upgrade-k8s order")
            .plan_check(check::plan_actions(THREE, &["update"]))
            .check(check::func(move |_| {
                let log = f4.component_log();
                let new = |c: &str| {
                    log.iter()
                        .filter(|x| x.component == c && x.to.ends_with(":v1.35.2"))
                        .collect::<Vec<_>>()
                };
                let (api, kubelet) = (new("kube-apiserver"), new("kubelet"));
                if api.len() != 3 || kubelet.len() != 4 {
                    return Err(format!("component changes: {log:#?}"));
                }
                let last_api = api.iter().map(|x| x.at).max().ok_or("no apiserver")?;
                if kubelet.iter().any(|k| k.at < last_api) {
                    return Err(format!(
                        "a kubelet before the control-plane components: {log:#?}"
                    ));
                }
                let roles: Vec<bool> = kubelet.iter().map(|k| k.control_plane).collect();
                if roles != [true, true, true, false] {
                    return Err(format!("kubelet order (control planes first): {log:#?}"));
                }
                if !f4.upgrade_log().iter().all(|r| r.to == "v1.12.11") {
                    return Err("Talos was upgraded again".into());
                }
                Ok(())
            })),
    )
    .step(
        three_node("v1.13.9", "1.35.2", Some("v1.13"))
            .describe("the v1.13 contract before the nodes run v1.13 is refused at plan")
            .plan_only()
            .expect_error("Configuration contract newer than the nodes' Talos"),
    )
    .step(
        three_node("v1.13.9", "1.35.2", None)
            .describe("Talos v1.12.11 -> v1.13.9 keeps the v1.12 contract")
            .plan_check(check::plan_actions(THREE, &["update"]))
            .check(check::func(move |s| {
                let v = versions(&f7)?;
                if v.iter().any(|x| x != "v1.13.9") {
                    return Err(format!("versions after the upgrade: {v:?}"));
                }
                let log = f7.upgrade_log();
                let to13: Vec<&UpgradeRecord> = log.iter().filter(|r| r.to == "v1.13.9").collect();
                if to13.len() != 4 || to13.iter().any(|r| r.api != UpgradeApi::Machine) {
                    return Err(format!("upgrades to v1.13.9: {to13:#?}"));
                }
                one_control_plane_at_a_time(&to13.into_iter().cloned().collect::<Vec<_>>())?;
                let contract = s
                    .resource(THREE)?
                    .str_attr("config_contract")
                    .map(str::to_string);
                if contract.as_deref() != Some("v1.12") {
                    return Err(format!("config_contract after the upgrade: {contract:?}"));
                }
                for c in configs(&f7)? {
                    if c.contains("grubUseUKICmdline") || !c.contains(":v1.13.9") {
                        return Err(format!(
                            "not a v1.12-contract configuration for v1.13.9:\n{c}"
                        ));
                    }
                }
                Ok(())
            })),
    )
    .step(
        three_node("v1.13.9", "1.35.2", Some("v1.13"))
            .describe("config_contract = v1.13 re-renders every configuration")
            .plan_check(check::plan_actions(THREE, &["update"]))
            .check(check::func(move |s| {
                let contract = s
                    .resource(THREE)?
                    .str_attr("config_contract")
                    .map(str::to_string);
                if contract.as_deref() != Some("v1.13") {
                    return Err(format!("config_contract: {contract:?}"));
                }
                for c in configs(&f8)? {
                    if !c.contains("grubUseUKICmdline: true") {
                        return Err(format!("not a v1.13-contract configuration:\n{c}"));
                    }
                }
                if f8.upgrade_log().len() != 8 {
                    return Err(format!("upgraded again: {:#?}", f8.upgrade_log()));
                }
                Ok(())
            })),
    )
    .check_destroy(move |_| {
        let _ = &f5;
        Ok(())
    })
    .run();
    t.shutdown();
}

const HOMELAB: &str = "waddle_talos_cluster.homelab";
const HOMELAB_NET: u8 = 44;

fn homelab_step(talos: &str) -> TestStep {
    let n = HOMELAB_NET;
    example_step(
        "homelab-single-node",
        format!(
            r#"
address       = "127.20.{n}.10/24"
gateway       = "127.20.{n}.1"
vip           = "127.20.{n}.20"
vmid          = 244
bridge        = "vmbr1"
talos_version = "{talos}"
"#
        ),
    )
}

#[test]
fn homelab_single_node_upgrade() {
    let Some(t) = start("homelab_single_node_upgrade", HOMELAB_NET) else {
        return;
    };
    let (fleet, emu) = (&t.fleet, &t.emu);
    let case = t.case();
    let node_ip = Ipv4Addr::new(127, 20, HOMELAB_NET, 10);
    let boot: std::sync::Arc<std::sync::Mutex<String>> = Default::default();
    let (f1, f2, b1, b2, e1) = (
        fleet.clone(),
        fleet.clone(),
        boot.clone(),
        boot.clone(),
        emu.clone(),
    );
    case.step(
        homelab_step("v1.12.4")
            .describe("create the single node on Talos v1.12.4")
            .check(check::func(move |_| {
                let n = f1.node_at(node_ip).ok_or("no node")?;
                if n.talos_version() != "v1.12.4" {
                    return Err(format!("version after create: {}", n.talos_version()));
                }
                *b1.lock().map_err(|e| e.to_string())? = n.boot_id();
                Ok(())
            })),
    )
    .step(
        homelab_step("v1.12.11")
            .describe("upgrade in place to v1.12.11")
            .plan_check(check::plan_actions(HOMELAB, &["update"]))
            .check(check::func(move |s| {
                let n = f2.node_at(node_ip).ok_or("no node")?;
                if n.talos_version() != "v1.12.11" {
                    return Err(format!("version after the upgrade: {}", n.talos_version()));
                }
                if n.boot_id() == *b2.lock().map_err(|e| e.to_string())? {
                    return Err("the node did not reboot (same boot ID)".into());
                }
                let log = f2.upgrade_log();
                let [u] = log.as_slice() else {
                    return Err(format!("one upgrade expected: {log:?}"));
                };
                if !u.preserve || u.stage {
                    return Err(format!(
                        "the only control plane upgrades with preserve: {u:?}"
                    ));
                }
                if !u.image.contains("installer-secureboot") || !u.image.ends_with(":v1.12.11") {
                    return Err(format!("installer {:?}: the SecureBoot installer", u.image));
                }
                if e1.vm(244).is_none() || e1.vms().len() != 1 {
                    return Err("upgraded in place: the same VM, nothing else".into());
                }
                let r = s.resource(HOMELAB)?;
                match r.str_attr("node_versions.talos1.talos_version") {
                    Some("v1.12.11") => Ok(()),
                    v => Err(format!("node_versions.talos1.talos_version = {v:?}")),
                }
            })),
    )
    .check_destroy(move |_| Ok(()))
    .run();
    t.shutdown();
}
