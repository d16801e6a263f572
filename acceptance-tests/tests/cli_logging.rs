//! Logs as Terraform users know them, through the real CLI with `TF_LOG=trace` (the harness
//! runs every command so): the platform (network, SNI proxy, Talos cluster) applied against
//! `waddle-sandbox` (a separate process on 127.10.8.1, treated as a real Proxmox VE). The
//! provider's lines in the CLI's log carry `tf_rpc`, `tf_req_id` and `tf_resource_type`; the
//! Proxmox calls (method, path, status, duration, task UPIDs) and Talos calls are there; and
//! no secret is: not the API token's secret, not a private key or token from the cluster's
//! secrets bundle, kubeconfig or talosconfig.

use std::path::Path;

use base64::Engine;
use waddle_acceptance::harness::sandbox::Sandbox;
use waddle_acceptance::harness::{self, check, Snapshot, TestCase, TestStep, PROVIDER_FROM_ENV};

/// The configuration: the provider block ([`PROVIDER_FROM_ENV`]) and [`RESOURCES`].
fn config() -> String {
    format!("{PROVIDER_FROM_ENV}{RESOURCES}")
}

const RESOURCES: &str = r#"
module "network" {
  source = "./modules/network"
}

module "sni_proxy" {
  source          = "./modules/haproxy"
  domain          = "waddle.example"
  public_cidr     = "203.0.113.10/24"
  public_gateway  = "203.0.113.1"
  private_bridge  = module.network.bridge
  ssh_public_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHWaddleExampleKeyReplaceMeReplaceMe00 admin"]
}

module "cluster" {
  source                  = "./modules/talos-cluster"
  bridge                  = module.network.bridge
  control_plane_addresses = ["127.20.10.10", "127.20.10.11", "127.20.10.12"]
  gateway                 = "127.20.10.1"
  vip                     = "127.20.10.20"
}
"#;

const CLUSTER: &str = "module.cluster.waddle_talos_cluster.this";

/// String values under keys that name secrets (`key`, `secret`, `token`, ...) in a YAML
/// document, with the first line of any PEM they encode.
fn yaml_secrets(text: &str, out: &mut Vec<String>) {
    fn walk(v: &serde_yaml_ng::Value, secret_key: bool, out: &mut Vec<String>) {
        match v {
            serde_yaml_ng::Value::Mapping(m) => {
                for (k, v) in m {
                    let k = k.as_str().unwrap_or_default().to_ascii_lowercase();
                    let is_secret = (k.contains("key") && !k.contains("public"))
                        || k.contains("secret")
                        || k.contains("token");
                    walk(v, is_secret, out);
                }
            }
            serde_yaml_ng::Value::Sequence(s) => s.iter().for_each(|v| walk(v, secret_key, out)),
            serde_yaml_ng::Value::String(s) if secret_key && s.len() >= 16 => {
                out.push(s.clone());
                if let Ok(pem) = base64::engine::general_purpose::STANDARD.decode(s) {
                    let pem = String::from_utf8_lossy(&pem).into_owned();
                    if let Some(body) = pem.lines().nth(1).filter(|l| l.len() >= 16) {
                        out.push(body.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    if let Ok(v) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        walk(&v, false, out);
    }
}

/// The `TF_LOG` files and stderr of every command (not stdout: `show -json` prints the state,
/// sensitive values included, by design).
fn tf_logs(dir: &Path) -> String {
    let mut all = String::new();
    for e in std::fs::read_dir(dir).expect("logs dir").flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "tflog" || x == "stderr") {
            all.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
        }
    }
    all
}

fn provider_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("provider.terraform-provider-waddle"))
        .collect()
}

fn check_logs(snap: &Snapshot, api_token: &str) -> Result<(), String> {
    let log = tf_logs(&snap.logs_dir);
    let lines = provider_lines(&log);
    if lines.is_empty() {
        return Err(format!(
            "no provider lines in the CLI logs under {}",
            snap.logs_dir.display()
        ));
    }
    let find = |what: &str, needles: &[&str]| -> Result<(), String> {
        lines
            .iter()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(|_| ())
            .ok_or_else(|| format!("no provider log line for {what} (all of {needles:?})"))
    };
    find(
        "the cluster's apply RPC",
        &[
            "tf_rpc=ApplyResourceChange",
            "tf_resource_type=waddle_talos_cluster",
            "tf_req_id=",
            "Served request",
        ],
    )?;
    find(
        "a Proxmox call of the SNI proxy's create",
        &[
            "Proxmox API call",
            "method=POST",
            "path=/nodes/",
            "status=200",
            "duration_ms=",
            "tf_resource_type=waddle_sni_proxy",
        ],
    )?;
    find(
        "a Proxmox task with its UPID",
        // (newer CLIs quote values with ':' in them: upid="UPID:...")
        &["Proxmox task finished", "upid=", "UPID:pve:", "tf_rpc="],
    )?;
    find(
        "a Talos call",
        &[
            "Talos API call",
            "method=ApplyConfiguration",
            "tf_resource_type=waddle_talos_cluster",
        ],
    )?;
    // Every provider line written while an RPC is served carries the three fields.
    let in_rpc: Vec<&&str> = lines.iter().filter(|l| l.contains("tf_rpc=")).collect();
    if let Some(bad) = in_rpc.iter().find(|l| !l.contains("tf_req_id=")) {
        return Err(format!("an RPC line without tf_req_id: {bad}"));
    }

    // No secret anywhere in the logs.
    let mut secrets = vec![api_token
        .split_once('=')
        .map(|(_, s)| s.to_string())
        .unwrap_or_default()];
    let cluster = snap.resource(CLUSTER)?;
    for attr in ["machine_secrets", "kubeconfig", "talosconfig"] {
        let text = cluster
            .str_attr(attr)
            .ok_or_else(|| format!("{CLUSTER}.{attr} is not in the state"))?;
        yaml_secrets(text, &mut secrets);
    }
    secrets.retain(|s| s.len() >= 16);
    if secrets.len() < 6 {
        return Err(format!(
            "found only {} secret values to look for; the state's secrets were not read",
            secrets.len()
        ));
    }
    for s in &secrets {
        if log.contains(s.as_str()) {
            return Err(format!(
                "a secret value ({}...) appears in the CLI logs",
                &s[..8]
            ));
        }
    }
    Ok(())
}

#[test]
fn an_apply_at_trace_logs_every_call_with_its_rpc_and_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sandbox = Sandbox::start(
        Path::new(env!("CARGO_BIN_EXE_waddle-sandbox")),
        dir.path(),
        "127.10.8.1:0",
    );
    let token = sandbox.env["PROXMOX_VE_API_TOKEN"].clone();
    let mut case = TestCase::new();
    for (k, v) in &sandbox.env {
        case = case.env(k.clone(), v.clone());
    }
    let mut step = TestStep::config(config()).describe("platform applied with TF_LOG=trace");
    for name in ["network", "haproxy", "talos-cluster"] {
        for (path, content) in harness::module_files(name) {
            step = step.file(path, content);
        }
    }
    let step = step.check(check::func(move |snap| check_logs(snap, &token)));
    case.step(step).run();
    drop(sandbox);
}
