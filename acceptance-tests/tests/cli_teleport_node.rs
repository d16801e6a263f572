//! `waddle_teleport_node` through the real CLI against the PVE emulator (127.40.96.x), whose
//! Debian guest runs the Teleport 18 stand-in (`waddle_acceptance::teleport`).
//!
//! Steps (each followed by the harness's empty plan, refresh, empty plan): create -> add an app
//! -> change a team mapping -> rotate the kubeconfig — the same VMID each time, updates in place
//! -> import by `<node>/<vmid>` and by vmid, compared with the applied state -> a wrong GitHub
//! client secret fails the apply with a clear message and leaves Teleport on the old one -> the
//! write-only secret (CLIs with write-only attributes only) -> destroy, and nothing is left
//! (VM, disks, seed ISO, downloaded image).
//!
//! Emulator only: on a real PVE (`PROXMOX_VE_*`) it is reported skipped, because it needs the
//! sandbox's GitHub OAuth app and inspects the guest.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use waddle_acceptance::harness::cli::{CliFlavor, Version};
use waddle_acceptance::harness::target::{provider_hcl, PveTarget};
use waddle_acceptance::harness::{check, notice, Cli, Phase, Snapshot, TestCase, TestStep};
use waddle_acceptance::pve::{DebianAppliance, EmulatorConfig, PveEmulator};
use waddle_acceptance::teleport::{
    GuestFs, SANDBOX_GITHUB_CLIENT_ID, SANDBOX_GITHUB_CLIENT_SECRET,
};

const ADDR: &str = "waddle_teleport_node.access";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWaddleAcceptanceTestKeyNotARealOne0 test";

/// What a step configures.
#[derive(Clone)]
struct Inputs {
    team: &'static str,
    grafana: bool,
    kubeconfig_marker: &'static str,
    /// `secret = "..."` or `secret_wo = "..."`.
    secret: String,
}

impl Default for Inputs {
    fn default() -> Self {
        Inputs {
            team: "admins",
            grafana: false,
            kubeconfig_marker: "kc-1",
            secret: format!("github_client_secret = \"{SANDBOX_GITHUB_CLIENT_SECRET}\""),
        }
    }
}

fn config(emu: &PveEmulator, i: &Inputs) -> String {
    let grafana = if i.grafana {
        r#"{ name = "grafana", uri = "http://10.10.0.20:3000", public_addr = "grafana.example.org" },"#
    } else {
        ""
    };
    format!(
        r#"
{provider}
resource "waddle_teleport_node" "access" {{
  private_nic         = {{ bridge = "vmbr1" }}
  ssh_authorized_keys = ["{KEY}"]
  domain              = "example.org"
  acme_email          = "ops@example.org"
  github = {{
    client_id      = "{SANDBOX_GITHUB_CLIENT_ID}"
    teams_to_roles = [{{ organization = "example-org", team = "{team}", roles = ["platform-admin", "access"] }}]
  }}
  {secret}
  roles = {{
    platform-admin = {{ logins = ["root"], kubernetes_groups = ["system:masters"] }}
  }}
  kubeconfig = "apiVersion: v1\nkind: Config\n# {marker}\n"
  apps = [
    {{ name = "talos", uri = "tcp://10.10.0.10:50000" }},
    {grafana}
  ]
  timeouts = {{ create = "3m", update = "3m" }}
}}

output "web_url" {{
  value = waddle_teleport_node.access.web_url
}}
"#,
        provider = provider_hcl(
            &emu.endpoint(),
            &emu.api_token().expect("token"),
            emu.node(),
            true
        ),
        team = i.team,
        secret = i.secret,
        marker = i.kubeconfig_marker,
    )
}

fn step(emu: &PveEmulator, i: &Inputs) -> TestStep {
    TestStep::config(config(emu, i)).file("pve-ca.pem", emu.ca_pem())
}

fn vmid_of(s: &Snapshot) -> Result<u32, String> {
    s.resource(ADDR)?
        .attr("vmid")
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| "vmid missing".to_string())
}

fn guest<T>(
    emu: &PveEmulator,
    vmid: u32,
    f: impl FnOnce(&DebianAppliance) -> T,
) -> Result<T, String> {
    let app = emu.appliance(vmid).ok_or("no appliance")?;
    let deb = app
        .as_any()
        .downcast_ref::<DebianAppliance>()
        .ok_or("not the Debian guest")?;
    Ok(f(deb))
}

fn read(g: &DebianAppliance, path: &str) -> String {
    g.read(path)
        .map(|d| String::from_utf8_lossy(&d).into_owned())
        .unwrap_or_default()
}

/// The step kept the first VM (in place).
fn same_vm(first: &Arc<Mutex<Option<u32>>>, s: &Snapshot) -> Result<u32, String> {
    let vmid = vmid_of(s)?;
    match *first.lock().unwrap() {
        Some(v) if v == vmid => Ok(vmid),
        other => Err(format!("VMID {vmid}, expected the first VM {other:?}")),
    }
}

fn no_write_only(cli: &Cli) -> Option<String> {
    let ok = match cli.flavor {
        CliFlavor::Terraform | CliFlavor::OpenTofu => cli.version >= Version::new(1, 11, 0),
    };
    (!ok).then(|| {
        format!("{cli} has no write-only attributes (needs Terraform or OpenTofu >= 1.11)")
    })
}

#[test]
fn teleport_node_lifecycle_through_the_cli() {
    if PveTarget::real_from(|k| std::env::var(k).ok())
        .expect("real-PVE variables")
        .is_some()
    {
        notice("SKIPPED teleport_node_lifecycle_through_the_cli (real PVE): needs the sandbox's GitHub OAuth app and the emulated guest");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let emu = Arc::new(rt.block_on(async {
        PveEmulator::start(
            EmulatorConfig::builder()
                .ip(Ipv4Addr::new(127, 40, 96, 1))
                .bridge("vmbr1")
                .build(),
        )
        .await
        .expect("PVE emulator")
    }));
    let first: Arc<Mutex<Option<u32>>> = Arc::default();

    let (e, f) = (emu.clone(), first.clone());
    let create = step(&emu, &Inputs::default())
        .describe("create")
        .check(check::func(move |s| {
            let vmid = vmid_of(s)?;
            *f.lock().unwrap() = Some(vmid);
            let r = s.resource(ADDR)?;
            if r.str_attr("web_url") != Some("https://teleport.example.org") {
                return Err(format!("web_url {:?}", r.str_attr("web_url")));
            }
            guest(&e, vmid, |g| {
                if g.teleport().installed().as_deref() != Some("18.8.2") || !g.teleport().running()
                {
                    return Err("Teleport 18.8.2 is not running".to_string());
                }
                if Some(read(g, "/etc/teleport.yaml").as_str()) != r.str_attr("teleport_yaml") {
                    return Err("the live teleport.yaml differs from the state".into());
                }
                Ok(())
            })?
        }));

    let (e, f) = (emu.clone(), first.clone());
    let add_app = step(
        &emu,
        &Inputs {
            grafana: true,
            ..Default::default()
        },
    )
    .describe("add an app in place")
    .plan_check(check::plan_actions(ADDR, &["update"]))
    .check(check::func(move |s| {
        let vmid = same_vm(&f, s)?;
        guest(&e, vmid, |g| {
            read(g, "/etc/teleport.yaml")
                .contains("name: grafana")
                .then_some(())
                .ok_or("grafana is not in teleport.yaml".to_string())
        })?
    }));

    let (e, f) = (emu.clone(), first.clone());
    let team = step(
        &emu,
        &Inputs {
            grafana: true,
            team: "platform",
            ..Default::default()
        },
    )
    .describe("change a team mapping in place")
    .plan_check(check::plan_actions(ADDR, &["update"]))
    .check(check::func(move |s| {
        let vmid = same_vm(&f, s)?;
        guest(&e, vmid, |g| {
            let c = g
                .teleport()
                .resource("github", "github")
                .ok_or("no connector")?;
            (c["spec"]["teams_to_roles"][0]["team"] == "platform")
                .then_some(())
                .ok_or(format!("connector teams: {}", c["spec"]["teams_to_roles"]))
        })?
    }));

    let rotated = Inputs {
        grafana: true,
        team: "platform",
        kubeconfig_marker: "kc-2",
        ..Default::default()
    };
    let (e, f) = (emu.clone(), first.clone());
    let rotate = step(&emu, &rotated)
        .describe("rotate the kubeconfig in place")
        .plan_check(check::plan_actions(ADDR, &["update"]))
        .check(check::func(move |s| {
            let vmid = same_vm(&f, s)?;
            guest(&e, vmid, |g| {
                let k = read(g, "/etc/teleport/kubeconfig");
                if !k.contains("kc-2") {
                    return Err(format!("kubeconfig not rotated: {k:?}"));
                }
                if g.file_mode("/etc/teleport/kubeconfig").as_deref() != Some("0600") {
                    return Err("the kubeconfig is not root-only".into());
                }
                g.teleport()
                    .running()
                    .then_some(())
                    .ok_or("Teleport stopped".to_string())
            })?
        }));

    // Secrets are not readable back, so the import leaves them to the configuration.
    let ignore = ["github_client_secret", "kubeconfig"];
    let import_id = TestStep::import(ADDR)
        .describe("import by <node>/<vmid>")
        .import_verify_ignore(&ignore);
    let import_vmid = TestStep::import(ADDR)
        .describe("import by vmid")
        .import_id_fn(|s| {
            s.resource(ADDR)
                .and_then(|r| r.attr("vmid").and_then(|v| v.as_u64()))
                .map(|v| v.to_string())
                .ok_or_else(|| "no vmid".to_string())
        })
        .import_verify_ignore(&ignore);

    let wrong = step(
        &emu,
        &Inputs {
            secret: "github_client_secret = \"not-the-registered-secret\"".into(),
            ..rotated.clone()
        },
    )
    .describe("a wrong client secret")
    .expect_error(r"GitHub refused the OAuth app credentials(.|\n)*incorrect")
    .expect_error_in(&[Phase::Apply]);

    let (e, f) = (emu.clone(), first.clone());
    let back = step(&emu, &rotated)
        .describe("back to the registered secret: Teleport still has it")
        .check(check::func(move |s| {
            let vmid = same_vm(&f, s)?;
            guest(&e, vmid, |g| {
                let c = g
                    .teleport()
                    .resource("github", "github")
                    .ok_or("no connector")?;
                (c["spec"]["client_secret"] == SANDBOX_GITHUB_CLIENT_SECRET)
                    .then_some(())
                    .ok_or("the wrong secret reached Teleport".to_string())
            })?
        }));

    let (e, f) = (emu.clone(), first.clone());
    let write_only = step(
        &emu,
        &Inputs {
            secret: format!("github_client_secret_wo = \"{SANDBOX_GITHUB_CLIENT_SECRET}\"\n  github_client_secret_wo_version = 1"),
            ..rotated.clone()
        },
    )
    .describe("the write-only client secret")
    .skip_if(no_write_only)
    .check(check::func(move |s| {
        let vmid = same_vm(&f, s)?;
        let r = s.resource(ADDR)?;
        if r.attr("github_client_secret_wo").is_some_and(|v| !v.is_null()) {
            return Err("a write-only value is in the state".into());
        }
        guest(&e, vmid, |g| g.teleport().running().then_some(()).ok_or("Teleport stopped".to_string()))?
    }));

    let e = emu.clone();
    TestCase::new()
        .step(create)
        .step(add_app)
        .step(team)
        .step(rotate)
        .step(import_id)
        .step(import_vmid)
        .step(wrong)
        .step(back)
        .step(write_only)
        .check_destroy(move |_| {
            let vms: Vec<u32> = e.vms().iter().map(|v| v.vmid).collect();
            let vols: Vec<String> = e.volumes().into_iter().map(|v| v.volid).collect();
            if vms.is_empty() && vols.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "left behind: VMs {vms:?}, volumes (disks, ISOs, images) {vols:?}"
                ))
            }
        })
        .run();
    drop(rt);
}
