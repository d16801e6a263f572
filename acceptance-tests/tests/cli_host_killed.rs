//! The CLI dies mid-apply (SIGKILL: what the OOM killer or a closed laptop does) while the real
//! provider binary is creating a `waddle_network` against the PVE emulator (127.40.7.1). The
//! provider never gets `StopProvider`/`Shutdown`; it must notice that its host is gone, exit,
//! and make no further API calls.
//!
//! The apply is paused inside the provider by an injected latency on the vnet create: the
//! zone exists, the vnet create is in flight, the subnet create and the SDN apply are still to
//! come. The CLI is killed then; the test waits (bounded, generously) for the provider process
//! to exit, then lets the injected latency run out and checks that the subnet create and the
//! SDN apply never reached the emulator. No assertion is about speed.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use waddle_acceptance::harness::emulated::runtime;
use waddle_acceptance::harness::provider::{install_mirror, provider_binary};
use waddle_acceptance::harness::target::PveTarget;
use waddle_acceptance::harness::{module_files, notice, work_base, Cli, PROVIDER_FROM_ENV};
use waddle_acceptance::pve::{EmulatorConfig, FaultConfig, FaultKind, FaultRule};

/// How long the vnet create is held by the emulator.
const LATENCY: Duration = Duration::from_secs(8);
/// Generous bound for anything to happen (never a speed assertion).
const BOUND: Duration = Duration::from_secs(120);

/// The configuration: the provider block ([`PROVIDER_FROM_ENV`]) and [`RESOURCES`].
fn config() -> String {
    format!("{PROVIDER_FROM_ENV}{RESOURCES}")
}

const RESOURCES: &str = r#"
module "network" {
  source = "./modules/network"
}
"#;

/// `(ppid, state)` of a process from `/proc/<pid>/stat`; `None` once it is gone.
fn proc_stat(pid: u32) -> Option<(u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // pid (comm) state ppid ...; comm may contain spaces, so split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Every process id on the host.
fn all_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// Provider processes below `root` (Terraform 1.0 runs its real work in a child of the
/// process started, panicwrap's), each with its parent: the CLI process hosting it.
fn providers_below(root: u32) -> Vec<(u32, u32)> {
    let pids = all_pids();
    let mut tree = vec![root];
    let mut grew = true;
    while grew {
        grew = false;
        for pid in &pids {
            if !tree.contains(pid) && proc_stat(*pid).is_some_and(|(ppid, _)| tree.contains(&ppid))
            {
                tree.push(*pid);
                grew = true;
            }
        }
    }
    tree.into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim().starts_with("terraform-provi"))
        })
        .filter_map(|pid| Some((pid, proc_stat(pid)?.0)))
        .collect()
}

/// Gone, or a zombie nobody reaped yet: either way it runs no more code.
fn exited(pid: u32) -> bool {
    proc_stat(pid).is_none_or(|(_, state)| state == 'Z' || state == 'X')
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < BOUND, "{what}: not within {BOUND:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn terraform(cli: &Path, dir: &Path, cli_config: &Path, target: &PveTarget) -> Command {
    let mut cmd = Command::new(cli);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("TF_") || k.starts_with("PROXMOX_VE_") {
            cmd.env_remove(k.as_ref());
        }
    }
    cmd.current_dir(dir)
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_INPUT", "0")
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_CLI_CONFIG_FILE", cli_config)
        .envs(target.cli_env())
        .stdin(Stdio::null());
    cmd
}

fn workdir() -> (PathBuf, PathBuf, PathBuf) {
    let root = work_base().join(format!("host-killed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (mirror, work) = (root.join("mirror"), root.join("work"));
    for (rel, content) in module_files("network") {
        let p = work.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("module dir");
        std::fs::write(&p, content).expect("module file");
    }
    std::fs::write(work.join("main.tf"), config()).expect("main.tf");
    std::fs::create_dir_all(&mirror).expect("mirror dir");
    install_mirror(provider_binary().expect("provider binary"), &mirror).expect("mirror");
    let cli_config = root.join("cli.tfrc");
    std::fs::write(&cli_config, "# isolated\n").expect("cli config");
    (mirror, work, cli_config)
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A provider that outlived its CLI must not outlive a failed test.
struct KillPidOnDrop(u32);

impl Drop for KillPidOnDrop {
    fn drop(&mut self) {
        if !exited(self.0) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

#[test]
fn provider_exits_and_stops_work_when_the_cli_is_killed() {
    let rt = runtime();
    let target = PveTarget::select(
        &rt,
        EmulatorConfig::builder()
            .ip(Ipv4Addr::new(127, 40, 7, 1))
            .faults(FaultConfig::new(5).rule(FaultRule::new(
                "POST /cluster/sdn/vnets",
                FaultKind::Latency(LATENCY),
                1.0,
            )))
            .build(),
    );
    let Some(emu) = target.emulator_arc() else {
        notice("SKIPPED host-killed test (real PVE): it injects latency into the emulator");
        return;
    };
    let cli = Cli::get().expect("a Terraform/OpenTofu CLI");
    let (mirror, work, cli_config) = workdir();
    let init = terraform(&cli.path, &work, &cli_config, &target)
        .arg("init")
        .arg(format!("-plugin-dir={}", mirror.display()))
        .output()
        .expect("terraform init");
    assert!(
        init.status.success(),
        "init failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );

    let log = std::fs::File::create(work.join("apply.log")).expect("log file");
    let mut apply = KillOnDrop(
        terraform(&cli.path, &work, &cli_config, &target)
            .args(["apply", "-auto-approve", "-no-color"])
            .stdout(Stdio::from(log.try_clone().expect("log fd")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("terraform apply"),
    );
    let cli_pid = apply.0.id();

    // The provider is inside the vnet create (the emulator drew the latency fault for it).
    wait_for("the vnet create reached the emulator", || {
        emu.fault_log()
            .iter()
            .any(|f| matches!(f.kind, FaultKind::Latency(_)))
    });
    let providers = providers_below(cli_pid);
    assert_eq!(
        providers.len(),
        1,
        "one provider process under the CLI: {providers:?}"
    );
    let (provider, host) = providers[0];
    let _reap = KillPidOnDrop(provider);

    // SIGKILL the CLI process that hosts the provider, then the one the test started.
    let killed = Command::new("kill")
        .args(["-KILL", &host.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success(), "SIGKILL the CLI process {host}");
    apply.0.kill().expect("SIGKILL the CLI");
    let _ = apply.0.wait();
    wait_for(
        "the provider process exits after its CLI was killed",
        || exited(provider),
    );

    // The vnet create the provider was waiting for is answered by now (or abandoned); a
    // provider still working would go on with the subnet create and the SDN apply.
    std::thread::sleep(LATENCY + Duration::from_secs(2));
    let later: Vec<String> = emu
        .request_log()
        .iter()
        .filter(|r| {
            r.path.ends_with("/subnets") || (r.method == "PUT" && r.path.ends_with("/cluster/sdn"))
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        later.is_empty(),
        "the provider kept working after its CLI died: {later:?}"
    );
    drop(rt);
}
