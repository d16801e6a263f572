//! `waddle_talos_cluster` day 2 through the real CLI against the PVE emulator with the
//! Talos emulator as its guest: etcd snapshots (`etcd_backup`: every apply and before
//! destroy, file + `sha256sum` file, named in state), scale-down (a removed worker's
//! Kubernetes Node object deleted through the Kubernetes API), the last control plane's
//! removal refused at plan, and a restore (`etcd_restore`) of the snapshot taken before
//! destroy into a fresh cluster with the same secrets (the lost-host procedure of
//! `docs/guides/etcd-recovery.md`).
//!
//! Emulator only (the checks read the emulated etcd); skipped with a notice on a real PVE.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use waddle_acceptance::harness::emulated::TalosTarget;
use waddle_acceptance::harness::{check, Phase, Snapshot, TestStep, PROVIDER_FROM_ENV};
use waddle_acceptance::pve::EmulatorConfig;
use waddle_talos::secrets::SystemClock;
use waddle_talos::SecretsBundle;

const ADDR: &str = "waddle_talos_cluster.this";
const NET: u8 = 47;

type Env = TalosTarget;

fn start() -> Option<Env> {
    TalosTarget::start(
        "cli_talos_etcd",
        "its checks read the emulated etcd",
        EmulatorConfig::builder()
            .ip(Ipv4Addr::new(127, 40, NET, 1))
            .bridge("vmbr1")
            .build(),
    )
}

/// A cluster of `cp1` and the given workers (`name = host octet`), with `extra` attributes.
fn config(workers: &[(&str, u8)], cps: &[(&str, u8)], extra: &str) -> String {
    let node = |name: &str, role: &str, host: u8| {
        format!(
            r#"    {name} = {{
      role    = "{role}"
      address = "127.20.{NET}.{host}/24"
      gateway = "127.20.{NET}.1"
      proxmox = {{ vmid = {vmid}, bridge = "vmbr1", cores = 2, memory = 2048, disk_size = 10 }}
    }}
"#,
            vmid = 400 + u32::from(host) + if name.starts_with("cp9") { 50 } else { 0 }
        )
    };
    let mut nodes = String::new();
    for (n, h) in cps {
        nodes.push_str(&node(n, "controlplane", *h));
    }
    for (n, h) in workers {
        nodes.push_str(&node(n, "worker", *h));
    }
    format!(
        r#"
{PROVIDER_FROM_ENV}
data "waddle_talos_image" "this" {{
  talos_version = "v1.12.11"
  extensions    = ["siderolabs/qemu-guest-agent"]
}}

resource "waddle_talos_cluster" "this" {{
  cluster_name    = "etcdcase"
  endpoint        = "https://127.20.{NET}.100:6443"
  vip             = "127.20.{NET}.100"
  machine_secrets = file("${{path.module}}/secrets.yaml")
  image = {{
    installer      = data.waddle_talos_image.this.installer_image
    disk_image_url = data.waddle_talos_image.this.disk_image_url
  }}
{extra}
  nodes = {{
{nodes}  }}
}}
"#
    )
}

fn sha256_file(p: &Path) -> Result<String, String> {
    use sha2::Digest as _;
    let b = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
    Ok(hex::encode(sha2::Sha256::digest(b)))
}

/// Every snapshot named in state exists, with the recorded checksum in its `.sha256` file.
fn snapshots_in_state(s: &Snapshot, want: usize) -> Result<Vec<PathBuf>, String> {
    let r = s.resource(ADDR)?;
    let list = r
        .attr("etcd_snapshots")
        .and_then(|v| v.as_array())
        .cloned()
        .ok_or("etcd_snapshots missing")?;
    if list.len() != want {
        return Err(format!(
            "{} snapshots in state, expected {want}: {list:?}",
            list.len()
        ));
    }
    let mut out = Vec::new();
    for x in list {
        let path = PathBuf::from(x["path"].as_str().ok_or("no path")?);
        let sum = x["sha256"].as_str().ok_or("no sha256")?;
        if sha256_file(&path)? != sum {
            return Err(format!(
                "{}: checksum differs from the state",
                path.display()
            ));
        }
        let side = std::fs::read_to_string(format!("{}.sha256", path.display()))
            .map_err(|e| e.to_string())?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if side != format!("{sum}  {name}\n") {
            return Err(format!("sha256 file: {side:?}"));
        }
        out.push(path);
    }
    Ok(out)
}

fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "db"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn etcd_snapshots_scale_down_and_restore_into_a_fresh_cluster() {
    let Some(env) = start() else { return };
    let started = Instant::now();
    let bundle = SecretsBundle::generate(&SystemClock).expect("bundle");
    let cid = bundle.cluster_id.clone();
    let secrets = bundle.to_yaml().expect("yaml");
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("etcd-backups");
    let backup = format!(
        "  etcd_backup = {{\n    directory = \"{}\"\n    when      = [\"every_apply\", \"before_destroy\"]\n    keep      = 3\n  }}\n",
        dir.display()
    );
    let cp = [("cp1", 10u8)];
    let step = |workers: &[(&str, u8)], cps: &[(&str, u8)], extra: &str| {
        TestStep::config(config(workers, cps, extra)).file("secrets.yaml", secrets.clone())
    };
    let (f1, f2, f3) = (env.fleet.clone(), env.fleet.clone(), env.fleet.clone());
    let (c1, c2) = (cid.clone(), cid.clone());
    let emu2 = env.emu.clone();
    let dir_d = dir.clone();
    let before_destroy: Arc<Mutex<Option<PathBuf>>> = Arc::default();
    let bd = before_destroy.clone();
    env.case()
        .step(
            step(&[("w1", 20), ("w2", 21)], &cp, &backup)
                .describe("create with a snapshot after the apply")
                .check(check::func(move |s| {
                    snapshots_in_state(s, 1)?;
                    let nodes = f1.kube_node_names(&c1);
                    if nodes != ["cp1", "w1", "w2"] {
                        return Err(format!("Kubernetes nodes: {nodes:?}"));
                    }
                    // Data the snapshots carry from now on.
                    f1.create_namespace(&c1, "keep-me");
                    Ok(())
                })),
        )
        .step(
            step(&[("w1", 20)], &cp, &backup)
                .describe("remove a worker: its Node object goes")
                .plan_check(check::plan_actions(ADDR, &["update"]))
                .check(check::func(move |s| {
                    let nodes = f2.kube_node_names(&c2);
                    if nodes != ["cp1", "w1"] {
                        return Err(format!("Kubernetes nodes after removing w2: {nodes:?}"));
                    }
                    if emu2.vm(421).is_some() {
                        return Err("the removed worker's VM still exists".into());
                    }
                    snapshots_in_state(s, 2).map(|_| ())
                })),
        )
        .step(
            step(&[("w1", 20)], &[], &backup)
                .describe("no control plane left: refused")
                .plan_only()
                .expect_error(r#"controlplane"? is required|last control plane"#)
                .expect_error_in(&[Phase::Validate, Phase::Plan]),
        )
        .step(
            step(&[("w1", 20)], &[("cp9", 10)], &backup)
                .describe("the only control plane replaced on its address: refused")
                .plan_only()
                .expect_error(r"last etcd member")
                .expect_error_in(&[Phase::Plan]),
        )
        .check_destroy(move |_| {
            // The destroy took one more snapshot; `keep = 3` keeps the three newest.
            let files = snapshot_files(&dir_d);
            let last = files
                .iter()
                .find(|p| p.to_string_lossy().ends_with("-before_destroy.db"))
                .cloned()
                .ok_or(format!("no before_destroy snapshot in {files:?}"))?;
            if files.len() != 3 {
                return Err(format!(
                    "{} snapshots kept, expected 3: {files:?}",
                    files.len()
                ));
            }
            let side = std::fs::read_to_string(format!("{}.sha256", last.display()))
                .map_err(|e| e.to_string())?;
            if !side.starts_with(&sha256_file(&last)?) {
                return Err(format!("sha256 file {side:?}"));
            }
            *bd.lock().map_err(|e| e.to_string())? = Some(last);
            Ok(())
        })
        .run();
    eprintln!(
        "cli_talos_etcd: snapshots + scale-down + refusals + destroy: {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // Every VM is gone: a fresh cluster with the same secrets, restored from the snapshot
    // taken before the destroy.
    let phase2 = Instant::now();
    let snap = before_destroy
        .lock()
        .ok()
        .and_then(|g| g.clone())
        .expect("the destroy's snapshot");
    let restore = format!(
        "  etcd_restore = {{\n    snapshot   = \"{}\"\n    generation = 1\n  }}\n",
        snap.display()
    );
    let c3 = cid.clone();
    let emu3 = env.emu.clone();
    env.case()
        .step(
            step(&[("w1", 20)], &cp, &restore)
                .describe("restore into a fresh cluster")
                .check(check::func(move |s| {
                    let r = s.resource(ADDR)?;
                    if r.attr("bootstrapped") != Some(&serde_json::Value::Bool(true)) {
                        return Err("not bootstrapped".into());
                    }
                    let ns = f3.kube_namespaces(&c3);
                    if !ns.iter().any(|n| n == "keep-me") {
                        return Err(format!("namespaces after the restore: {ns:?}"));
                    }
                    let nodes = f3.kube_node_names(&c3);
                    if nodes != ["cp1", "w1"] {
                        return Err(format!("Kubernetes nodes after the restore: {nodes:?}"));
                    }
                    if f3.etcd_members(&c3).len() != 1 {
                        return Err(format!("etcd members: {:?}", f3.etcd_members(&c3)));
                    }
                    Ok(())
                })),
        )
        .check_destroy(move |_| {
            if emu3.vms().is_empty() {
                Ok(())
            } else {
                Err(format!("VMs left: {}", emu3.vms().len()))
            }
        })
        .run();
    eprintln!(
        "cli_talos_etcd: restore into a fresh cluster + destroy: {:.1}s (total {:.1}s)",
        phase2.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    env.shutdown();
}
