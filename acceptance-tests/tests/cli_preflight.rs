//! The permission preflight through the real CLI, against the PVE emulator (127.40.9.x).
//!
//! An operator makes a limited API token the way `pveum` does — a custom role, a user, a
//! token with privilege separation, ACL entries for both — through the emulator's access
//! API. Then:
//!
//! * `preflight_refuses_a_limited_token_before_anything_exists`: the token lacks
//!   `SDN.Allocate` and `VM.GuestAgent.Unrestricted` (it has `VM.GuestAgent.FileWrite`, which
//!   is not enough to run commands in the guest). `plan` of the network module and of the
//!   SNI proxy module fails, each with one diagnostic listing every missing privilege, its
//!   path and the `pveum` commands; afterwards no VM, volume, download or SDN object exists
//!   and no POST/PUT/DELETE reached the emulator.
//! * `preflight_passes_a_token_with_exactly_the_needed_privileges`: a token holding exactly
//!   the privileges of the preflight's table for both resources plans, applies, refreshes and
//!   destroys both modules — proving the table is enough for what the API enforces.

use std::net::Ipv4Addr;

use serde_json::Value;
use waddle_acceptance::harness::emulated::runtime;
use waddle_acceptance::harness::target::PveTarget;
use waddle_acceptance::harness::{self, check, Phase, TestCase, TestStep};
use waddle_acceptance::pve::{EmulatorConfig, PveEmulator};
use waddle_proxmox::Params;

/// What the preflight requires for creating, reading and destroying `modules/network` and
/// `modules/haproxy` (VM id chosen at create time, so on `/vms`).
const NEEDED: &[&str] = &[
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.AllocateTemplate",
    "Datastore.Audit",
    "SDN.Allocate",
    "SDN.Use",
    "Sys.AccessNetwork",
    "VM.Allocate",
    "VM.Audit",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.GuestAgent.Unrestricted",
    "VM.PowerMgmt",
];

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWaddleAcceptanceTestKeyNotARealOne0 test";

fn emulated(rt: &tokio::runtime::Runtime, last: u8) -> PveTarget {
    PveTarget::Emulated(std::sync::Arc::new(
        rt.block_on(PveEmulator::start(
            EmulatorConfig::builder()
                .ip(Ipv4Addr::new(127, 40, 9, last))
                .build(),
        ))
        .expect("emulator"),
    ))
}

/// `pveum role add <role> --privs ...`, `pveum user add tf@pve`,
/// `pveum user token add tf@pve plan --privsep 1`, `pveum acl modify / --users tf@pve
/// --roles <role>` and the same for the token. Returns `USER@REALM!TOKENID=SECRET`.
fn pveum(rt: &tokio::runtime::Runtime, t: &PveTarget, role: &str, privs: &[&str]) -> String {
    let c = t.client().expect("root client");
    let post = |path: &str, p: Params| rt.block_on(c.post(path, &p)).expect(path);
    let put = |path: &str, p: Params| rt.block_on(c.put(path, &p)).expect(path);
    post(
        "/access/roles",
        Params::new()
            .str("roleid", role)
            .str("privs", privs.join(",")),
    );
    post("/access/users", Params::new().str("userid", "tf@pve"));
    let tok = post(
        "/access/users/tf@pve/token/plan",
        Params::new().str("privsep", "1"),
    );
    let secret = tok["value"].as_str().expect("token value").to_string();
    for (kind, who) in [("users", "tf@pve"), ("tokens", "tf@pve!plan")] {
        put(
            "/access/acl",
            Params::new()
                .str("path", "/")
                .str(kind, who)
                .str("roles", role),
        );
    }
    format!("tf@pve!plan={secret}")
}

fn config(t: &PveTarget, token: &str, network: bool, proxy: bool) -> String {
    let mut hcl = t.provider_hcl_with_token(token);
    if network {
        hcl.push_str("\nmodule \"network\" {\n  source = \"./modules/network\"\n}\n");
    }
    if proxy {
        let private = if network {
            "module.network.bridge"
        } else {
            "\"vmbr0\""
        };
        hcl.push_str(&format!(
            r#"
module "sni_proxy" {{
  source          = "./modules/haproxy"
  domain          = "example.org"
  public_cidr     = "203.0.113.10/24"
  public_gateway  = "203.0.113.1"
  private_bridge  = {private}
  ssh_public_keys = ["{KEY}"]
}}
"#
        ));
    }
    hcl
}

fn step(t: &PveTarget, token: &str, network: bool, proxy: bool) -> TestStep {
    let mut s = TestStep::config(config(t, token, network, proxy))
        .file("pve-ca.pem", t.ca_pem().expect("emulator CA"));
    for module in ["network", "haproxy"] {
        s = s.files(harness::module_files(module));
    }
    s
}

/// Nothing the plan could have created exists.
fn nothing_exists(t: &PveTarget, emu: &PveEmulator, rt: &tokio::runtime::Runtime) {
    assert!(emu.vms().is_empty(), "VMs: {:?}", emu.vms());
    assert!(emu.volumes().is_empty(), "volumes: {:?}", emu.volumes());
    assert!(
        emu.downloads().is_empty(),
        "downloads: {:?}",
        emu.downloads()
    );
    let api = t.api(rt.handle().clone()).expect("api");
    for kind in ["zones", "vnets"] {
        let objs = api
            .list(&format!("/cluster/sdn/{kind}"), &[("pending", "1")])
            .expect("sdn list");
        assert!(objs.is_empty(), "SDN {kind}: {objs:?}");
    }
}

#[test]
fn preflight_refuses_a_limited_token_before_anything_exists() {
    let rt = runtime();
    let t = emulated(&rt, 1);
    let emu = t.emulator_arc().expect("emulated");
    let limited: Vec<&str> = NEEDED
        .iter()
        .copied()
        .filter(|p| !matches!(*p, "SDN.Allocate" | "VM.GuestAgent.Unrestricted"))
        .chain(["VM.GuestAgent.FileWrite", "SDN.Audit"])
        .collect();
    let token = pveum(&rt, &t, "WaddleLimited", &limited);
    emu.clear_request_log();

    let network = step(&t, &token, true, false)
        .describe("network module with a token lacking SDN.Allocate")
        .expect_error(concat!(
            // (prose paragraphs are word-wrapped by the CLI; indented lines are kept)
            r"(?s)Missing Proxmox VE privileges",
            r".*- SDN\.Allocate on /sdn \(apply the SDN configuration\)",
            r".*- SDN\.Allocate on /sdn/zones \(create the SDN zone\)",
            r".*- SDN\.Allocate on /sdn/zones/waddle \(",
            r".*- SDN\.Allocate on /sdn/zones/waddle/vmbr1 \(",
            r".*pveum role add WaddleProvider --privs .SDN\.Allocate.",
            r".*pveum acl modify /sdn --tokens 'tf@pve!plan' --roles WaddleProvider",
            r".*pveum acl modify /sdn/zones/waddle/vmbr1 --tokens 'tf@pve!plan' --roles WaddleProvider",
        ))
        .expect_error_in(&[Phase::Plan]);
    let proxy = step(&t, &token, false, true)
        .describe("SNI proxy module with a token lacking VM.GuestAgent.Unrestricted")
        .expect_error(concat!(
            r"(?s)Missing Proxmox VE privileges",
            r".*- VM\.GuestAgent\.Unrestricted on /vms \(use the guest agent of VM `sni-proxy` \(run commands",
            r".*pveum role add WaddleProvider --privs .VM\.GuestAgent\.Unrestricted.",
            r".*pveum acl modify /vms --tokens 'tf@pve!plan' --roles WaddleProvider",
        ))
        .expect_error_in(&[Phase::Plan]);
    TestCase::new().step(network).step(proxy).run();

    nothing_exists(&t, &emu, &rt);
    let writes: Vec<String> = emu
        .request_log()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
        .collect();
    assert!(writes.is_empty(), "writes reached the emulator: {writes:?}");
    let reads = emu
        .request_log()
        .iter()
        .filter(|r| r.template.as_deref() == Some("/access/permissions"))
        .count();
    assert!(reads > 0, "the preflight read no permissions");
    assert!(emu.response_violations().is_empty());
}

#[test]
fn preflight_passes_a_token_with_exactly_the_needed_privileges() {
    let rt = runtime();
    let t = emulated(&rt, 2);
    let emu = t.emulator_arc().expect("emulated");
    let token = pveum(&rt, &t, "WaddleProvider", NEEDED);
    let api = t.api(rt.handle().clone()).expect("api");
    let e = emu.clone();
    let created = step(&t, &token, true, true)
        .describe("network + SNI proxy with exactly the needed privileges")
        .check(check::func(move |_| {
            let vms = e.vms();
            match vms.as_slice() {
                [vm] if vm.running => Ok(()),
                other => Err(format!("expected one running VM, found {other:?}")),
            }
        }));
    let report = TestCase::new()
        .step(created)
        .check_destroy(move |_| {
            let vms = api.vmids()?;
            let zones = api.list("/cluster/sdn/zones", &[("pending", "1")])?;
            if vms.is_empty() && zones.is_empty() {
                Ok(())
            } else {
                Err(format!("left: VMs {vms:?}, zones {zones:?}"))
            }
        })
        .run();
    assert!(report.skipped.is_empty(), "skipped: {:?}", report.skipped);
    let refused: Vec<String> = emu
        .request_log()
        .iter()
        .filter(|r| r.status == 403)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(refused.is_empty(), "the API refused: {refused:?}");
    let held = rt
        .block_on(
            t.client()
                .expect("client")
                .get::<Value>("/access/roles/WaddleProvider", &Params::new()),
        )
        .expect("role");
    assert_eq!(held.as_object().map(|o| o.len()), Some(NEEDED.len()));
    assert!(emu.response_violations().is_empty());
}
