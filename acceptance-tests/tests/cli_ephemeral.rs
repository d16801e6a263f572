//! The ephemeral `waddle_talos_kubeconfig` through the real CLI (Terraform 1.10 or later,
//! OpenTofu 1.11 or later; reported skipped on older CLIs): the CLI opens it during plan and
//! apply (the provider's log shows `OpenEphemeralResource` for it, served without error), and
//! neither the state nor the logs hold the kubeconfig, the client key or the CA key. What the
//! kubeconfig holds is checked by the provider's unit tests (an ephemeral value cannot leave a
//! run). A bad `ttl` is refused at plan with its path.

use waddle_acceptance::harness::cli::{CliFlavor, Version};
use waddle_acceptance::harness::{check, Cli, Phase, TestCase, TestStep, PROVIDER_FROM_ENV};
use waddle_talos::secrets::{SecretsBundle, SystemClock};

fn unsupported(cli: &Cli) -> Option<String> {
    let ok = match cli.flavor {
        CliFlavor::Terraform => cli.version >= Version::new(1, 10, 0),
        CliFlavor::OpenTofu => cli.version >= Version::new(1, 11, 0),
    };
    (!ok).then(|| {
        format!("{cli} has no ephemeral resources (needs Terraform >= 1.10 or OpenTofu >= 1.11)")
    })
}

fn config(ttl: &str) -> String {
    format!(
        r#"
{PROVIDER_FROM_ENV}
variable "machine_secrets" {{
  type      = string
  sensitive = true
}}

ephemeral "waddle_talos_kubeconfig" "admin" {{
  machine_secrets = var.machine_secrets
  cluster_name    = "waddle"
  endpoint        = "https://127.20.10.20:6443"
  ttl             = "{ttl}"
}}

"#
    )
}

#[test]
fn an_ephemeral_kubeconfig_is_opened_and_never_stored() {
    let bundle = SecretsBundle::generate(&SystemClock).expect("secrets bundle");
    let yaml = bundle.to_yaml().expect("secrets.yaml");
    let key_line = bundle
        .k8s_ca
        .key
        .lines()
        .nth(1)
        .expect("CA key body")
        .to_string();
    let good = TestStep::config(config("30m"))
        .describe("kubeconfig opened during plan and apply")
        .check(check::func(move |snap| {
            let mut log = String::new();
            for e in std::fs::read_dir(&snap.logs_dir).map_err(|e| e.to_string())? {
                let p = e.map_err(|e| e.to_string())?.path();
                if p.extension().is_some_and(|x| x == "tflog") {
                    log.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
                }
            }
            let opened = log.lines().any(|l| {
                l.contains("tf_rpc=OpenEphemeralResource")
                    && l.contains("tf_resource_type=waddle_talos_kubeconfig")
                    && l.contains("Served request")
            });
            if !opened {
                return Err("no OpenEphemeralResource served for waddle_talos_kubeconfig".into());
            }
            let state = std::fs::read_to_string(snap.work_dir.join("terraform.tfstate"))
                .map_err(|e| e.to_string())?;
            for needle in ["client-key-data", "PRIVATE KEY", "waddle_talos_kubeconfig"] {
                if state.contains(needle) {
                    return Err(format!("the state holds {needle:?}"));
                }
            }
            if state.contains(&key_line) || log.contains(&key_line) {
                return Err("the cluster CA key leaked into the state or the logs".into());
            }
            Ok(())
        }));
    let bad = TestStep::config(config("10s"))
        .describe("a ttl under a minute")
        .expect_error(r"between 1m and 168h")
        .expect_error_in(&[Phase::Validate, Phase::Plan]);
    TestCase::new()
        .skip_if(unsupported)
        .env("TF_VAR_machine_secrets", yaml)
        .step(bad)
        .step(good)
        .run();
}
