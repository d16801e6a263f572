//! `waddle_talos_cluster` with `machine_secrets_wo` through the real CLI (Terraform or
//! OpenTofu >= 1.11; skipped, with the reason, on older CLIs): create from a
//! `secrets.yaml` given write-only, the harness's empty plan / refresh / empty plan, no
//! secret of the bundle anywhere in the state file, the masked configurations shown, and
//! destroy with nothing left. PVE emulator on 127.40.85.1, Talos nodes in 127.20.85.0/24.

use std::net::Ipv4Addr;

use base64::Engine as _;
use waddle_acceptance::harness::emulated::TalosTarget;
use waddle_acceptance::harness::{check, Cli, CliFlavor, TestStep, Version, PROVIDER_FROM_ENV};
use waddle_acceptance::pve::EmulatorConfig;
use waddle_talos::SecretsBundle;

const ADDR: &str = "waddle_talos_cluster.wo";

/// The configuration: the provider block ([`PROVIDER_FROM_ENV`]) and [`RESOURCES`].
fn config() -> String {
    format!("{PROVIDER_FROM_ENV}{RESOURCES}")
}

const RESOURCES: &str = r#"
resource "waddle_talos_cluster" "wo" {
  cluster_name               = "wo85"
  endpoint                   = "https://127.20.85.20:6443"
  vip                        = "127.20.85.20"
  machine_secrets_wo         = file("${path.module}/secrets.yaml")
  machine_secrets_wo_version = 1

  image = {
    disk_image_url = "https://factory.talos.dev/image/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba/v1.12.11/nocloud-amd64.qcow2"
  }

  nodes = {
    cp1 = {
      role    = "controlplane"
      address = "127.20.85.11/24"
      gateway = "127.20.85.1"
      proxmox = { vmid = 185, bridge = "vmbr1" }
    }
  }

  timeouts = {
    create = "3m"
    update = "3m"
    delete = "2m"
  }
}
"#;

fn no_write_only(cli: &Cli) -> Option<String> {
    let ok = match cli.flavor {
        CliFlavor::Terraform | CliFlavor::OpenTofu => cli.version >= Version::new(1, 11, 0),
    };
    (!ok).then(|| {
        format!("{cli} has no write-only attributes (needs Terraform or OpenTofu >= 1.11)")
    })
}

/// Every secret value of the bundle, raw and base64 (as it appears in a configuration).
fn secret_values(b: &SecretsBundle) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let raw = waddle_talos::mask::bundle_secrets(b);
    raw.iter()
        .flat_map(|s| [s.clone(), b64.encode(s.as_bytes())])
        .collect()
}

#[test]
fn write_only_machine_secrets_stay_out_of_the_state() {
    let Some(t) = TalosTarget::start(
        "write_only_machine_secrets_stay_out_of_the_state",
        "the Talos nodes are emulated in this process",
        EmulatorConfig::builder()
            .ip(Ipv4Addr::new(127, 40, 85, 1))
            .bridge("vmbr1")
            .build(),
    ) else {
        return;
    };
    let (fleet, emu) = (&t.fleet, &t.emu);

    let bundle = SecretsBundle::generate(&waddle_talos::SystemClock).expect("bundle");
    let yaml = bundle.to_yaml().expect("yaml");
    let secrets = secret_values(&bundle);

    let case = t.case().skip_if(no_write_only);
    let (f, s2) = (fleet.clone(), secrets.clone());
    let e = emu.clone();
    case.step(
        TestStep::config(config())
            .file("secrets.yaml", yaml)
            .describe("create with a write-only secrets bundle")
            .check(check::func(move |s| {
                let r = s.resource(ADDR)?;
                for a in [
                    "machine_secrets",
                    "machine_secrets_wo",
                    "machine_configurations",
                ] {
                    match r.attr(a) {
                        None | Some(serde_json::Value::Null) => {}
                        Some(v) => return Err(format!("{a} is in the state: {}", v.is_null())),
                    }
                }
                let masked = r
                    .str_attr("machine_configurations_masked.cp1")
                    .ok_or("no masked configuration")?;
                if !masked.contains("(masked)") {
                    return Err("the masked configuration masks nothing".into());
                }
                let file = std::fs::read_to_string(s.work_dir.join("terraform.tfstate"))
                    .map_err(|e| format!("terraform.tfstate: {e}"))?;
                if s2.iter().any(|x| file.contains(x.as_str())) {
                    return Err("a secret of the bundle is in terraform.tfstate".into());
                }
                // The node runs the cluster of the given bundle.
                let applied = f
                    .nodes()
                    .iter()
                    .find_map(|n| n.config_yaml())
                    .ok_or("no configured node")?;
                if !applied.contains(&bundle.cluster_secret) {
                    return Err("the node was not configured with the given bundle".into());
                }
                Ok(())
            })),
    )
    .check_destroy(move |_| {
        let vms: Vec<u32> = e.vms().iter().map(|v| v.vmid).collect();
        if vms.is_empty() {
            Ok(())
        } else {
            Err(format!("VMs left behind: {vms:?}"))
        }
    })
    .run();
    t.shutdown();
}
