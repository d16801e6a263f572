//! Every module's own tests (`modules/<name>/tests/*.tftest.hcl`) through the real CLI's
//! `test` command: plan-only cases with a mocked provider (defaults, each variable validation
//! with `expect_failures`) and one `apply` run against `waddle-sandbox`, started here as a
//! separate process (127.10.7.1) and treated as a real Proxmox VE. After `terraform test` has
//! torn its runs down, the sandbox holds no VM, no SDN object, no disk, no image and no ISO.
//!
//! `terraform test` with `mock_provider` needs Terraform >= 1.7 or OpenTofu >= 1.8; under an
//! older CLI (the pinned Terraform 1.0.3) the test reports itself skipped with that reason
//! (the test command also runs it under the modern CLI on the machine).

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use waddle_acceptance::harness::cli::{CliFlavor, Version};
use waddle_acceptance::harness::sandbox::Sandbox;
use waddle_acceptance::harness::{self, notice, provider, Cli};

const MODULES: [&str; 4] = ["network", "haproxy", "teleport", "talos-cluster"];

fn unsupported(cli: &Cli) -> Option<String> {
    let ok = match cli.flavor {
        CliFlavor::Terraform => cli.version >= Version::new(1, 7, 0),
        CliFlavor::OpenTofu => cli.version >= Version::new(1, 8, 0),
    };
    (!ok).then(|| {
        format!(
            "{cli} has no `test` command with mock_provider (needs Terraform >= 1.7 or \
             OpenTofu >= 1.8)"
        )
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).expect("copy");
        }
    }
}

fn run(cli: &Cli, dir: &Path, args: &[&str], env: &[(String, String)]) -> (bool, String) {
    let out = Command::new(&cli.path)
        .current_dir(dir)
        .args(args)
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_CLI_CONFIG_FILE", dir.join("empty.tfrc"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", cli.path.display()));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `run "<name>"` blocks in the module's test files.
fn run_blocks(tests: &Path) -> usize {
    std::fs::read_dir(tests)
        .expect("tests dir")
        .flatten()
        .filter(|e| e.path().to_string_lossy().ends_with(".tftest.hcl"))
        .map(|e| {
            std::fs::read_to_string(e.path())
                .expect("test file")
                .lines()
                .filter(|l| l.starts_with("run \""))
                .count()
        })
        .sum()
}

#[test]
fn every_module_passes_its_own_terraform_tests() {
    let cli = Cli::get().expect("a Terraform/OpenTofu CLI");
    if let Some(reason) = unsupported(cli) {
        notice(&format!(
            "SKIPPED every_module_passes_its_own_terraform_tests: {reason}"
        ));
        return;
    }
    let base = harness::work_base();
    std::fs::create_dir_all(&base).expect("work base");
    let tmp = tempfile::Builder::new()
        .prefix("module-tests-")
        .tempdir_in(&base)
        .expect("tempdir");
    let work = tmp.path();
    let mirror = work.join("mirror");
    provider::install_mirror(provider::provider_binary().expect("provider"), &mirror)
        .expect("mirror");
    let sandbox = Sandbox::start(
        Path::new(env!("CARGO_BIN_EXE_waddle-sandbox")),
        work,
        "127.10.7.1:0",
    );
    let env: Vec<(String, String)> = sandbox.env.clone().into_iter().collect();

    // The modules refer to each other (`source = "../network"` in test runs): copy them all.
    let modules = work.join("modules");
    copy_dir(&harness::repo_root().join("modules"), &modules);
    let mut report = Vec::new();
    for name in MODULES {
        let dir = modules.join(name);
        std::fs::write(dir.join("empty.tfrc"), "").expect("cli config");
        let want = run_blocks(&dir.join("tests"));
        assert!(want >= 2, "modules/{name}/tests has {want} run blocks");
        let mirror_arg = format!("-plugin-dir={}", mirror.display());
        let (ok, out) = run(
            cli,
            &dir,
            &["init", "-input=false", "-no-color", &mirror_arg],
            &env,
        );
        assert!(ok, "{cli}: init of modules/{name}: {out}");
        let (ok, out) = run(cli, &dir, &["test", "-no-color"], &env);
        assert!(ok, "{cli}: `test` of modules/{name} failed:\n{out}");
        let summary = format!("Success! {want} passed, 0 failed.");
        assert!(
            out.contains(&summary),
            "{cli}: modules/{name}: expected {summary:?} (every run block ran):\n{out}"
        );
        report.push(format!("{name}: {want} runs"));
    }

    // Nothing is left on the sandbox after the test runs were torn down.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let api = sandbox
        .target()
        .api(rt.handle().clone())
        .expect("API client");
    assert_eq!(api.vmids().expect("vms"), Vec::<u32>::new(), "VMs left");
    for kind in ["zones", "vnets"] {
        let left: Vec<Value> = api.list(&format!("/cluster/sdn/{kind}"), &[]).expect("sdn");
        assert!(left.is_empty(), "SDN {kind} left: {left:?}");
    }
    // VM disks, seed ISOs and downloaded images (the Debian cloud image goes with the last VM
    // that recorded it, the Talos image with its cluster).
    for storage in ["local", "local-lvm"] {
        for content in ["images", "iso", "import"] {
            let left = api
                .volumes(storage, Some(content))
                .unwrap_or_else(|e| panic!("volumes of {storage}: {e}"));
            assert!(
                left.is_empty(),
                "{content} volumes left on {storage}: {left:?}"
            );
        }
    }
    notice(&format!("module tests under {cli}: {}", report.join(", ")));
    drop(sandbox);
}
