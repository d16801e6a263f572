//! The runner: a case's work root, its CLI commands with their logs, the destroy at the
//! end and the report.

mod steps;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Phase, Report, StepFailure, TestCase, TestStep};
use crate::harness::check::Snapshot;
use crate::harness::cli::Cli;
use crate::harness::provider::install_mirror;
use crate::harness::state::{Outputs, Plan, State};
use crate::harness::{notice, repo_root, work_base, HarnessError};

/// Output of one CLI command.
struct CmdOutput {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    label: String,
    /// The CLI panicked (Go panics exit with 2, which `-detailed-exitcode` would read as
    /// "changes present").
    crashed: bool,
}

/// Does CLI output show a Go panic / crash banner?
fn is_crash(text: &str) -> bool {
    text.contains("TERRAFORM CRASH")
        || text.contains("OPENTOFU CRASH")
        || text.lines().any(|l| l.starts_with("panic: "))
}

/// Kills (SIGKILL, by pid) every process other than this one whose working directory is inside
/// `root` — only processes the harness started there (the CLI and the providers it launched).
/// Returns the pids killed. Linux only (uses /proc); elsewhere a no-op.
fn kill_processes_in(root: &Path) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut killed = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cwd) = fs::read_link(e.path().join("cwd")) else {
            continue;
        };
        if cwd.starts_with(root) {
            let ok = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                killed.push(pid);
            }
        }
    }
    killed
}

impl CmdOutput {
    fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    fn excerpt(&self) -> String {
        fn tail(s: &str, n: usize) -> String {
            let lines: Vec<&str> = s.lines().collect();
            let start = lines.len().saturating_sub(n);
            let mut out = String::new();
            if start > 0 {
                out.push_str(&format!("  ... ({start} lines omitted)\n"));
            }
            for l in &lines[start..] {
                out.push_str("  ");
                out.push_str(l);
                out.push('\n');
            }
            out
        }
        format!(
            "$ {} -> exit {}\n--- stdout:\n{}--- stderr:\n{}",
            self.label,
            self.code.map_or("signal".into(), |c| c.to_string()),
            tail(&self.stdout, 60),
            tail(&self.stderr, 60)
        )
    }
}

pub(super) struct Fail {
    phase: Phase,
    message: String,
}

impl Fail {
    fn new(phase: Phase, message: impl Into<String>) -> Fail {
        Fail {
            phase,
            message: message.into(),
        }
    }
}

impl From<HarnessError> for Fail {
    fn from(e: HarnessError) -> Fail {
        Fail::new(Phase::Init, e.to_string())
    }
}

static ROOT_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Executes one case in one work root.
pub(super) struct Runner {
    name: String,
    cli: &'static Cli,
    root: PathBuf,
    mirror: PathBuf,
    cli_config: PathBuf,
    logs: PathBuf,
    work: PathBuf,
    case_env: Vec<(String, String)>,
    seq: u32,
    transcript: Vec<String>,
    /// files written into `work` by the current step
    written: Vec<PathBuf>,
    /// the last configuration that applied (or planned), with its step env: used for destroy
    last_good: Option<Vec<(PathBuf, String)>>,
    last_good_env: Vec<(String, String)>,
    /// whether anything may exist that destroy must remove
    applied: bool,
    last_state: Option<State>,
    skipped: Vec<String>,
    unsupported_checks: Vec<String>,
    steps_run: usize,
    timeout: Duration,
}

fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.chars().take(80).collect()
}

/// The resources a plan changes (anything but no-op and read), as `address [actions]`.
fn changing_resources(plan: &Plan) -> Vec<String> {
    plan.resource_changes()
        .into_iter()
        .filter(|rc| rc.actions.iter().any(|a| a != "no-op" && a != "read"))
        .map(|rc| format!("{} {:?}", rc.address, rc.actions))
        .collect()
}

fn write_file(path: &Path, content: &str) -> Result<(), HarnessError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| HarnessError::io(parent, e))?;
    }
    fs::write(path, content).map_err(|e| HarnessError::io(path, e))
}

impl Runner {
    pub(super) fn new(
        name: &str,
        cli: &'static Cli,
        provider_bin: Option<&Path>,
        case_env: Vec<(String, String)>,
    ) -> Result<Runner, HarnessError> {
        let base = work_base();
        let n = ROOT_COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = base.join(format!("{}-{}-{n}", sanitize(name), std::process::id()));
        if root.exists() {
            fs::remove_dir_all(&root).map_err(|e| HarnessError::io(&root, e))?;
        }
        let mirror = root.join("mirror");
        let logs = root.join("logs");
        let work = root.join("w").join("main");
        for d in [&mirror, &logs, &work] {
            fs::create_dir_all(d).map_err(|e| HarnessError::io(d, e))?;
        }
        if let Some(bin) = provider_bin {
            install_mirror(bin, &mirror)?;
        }
        // An empty CLI config: nothing from the user's ~/.terraformrc (provider_installation,
        // dev_overrides, credentials) leaks in; -plugin-dir decides where providers come from.
        let cli_config = root.join("cli.tfrc");
        write_file(
            &cli_config,
            "# isolated CLI configuration written by the waddle acceptance harness\n",
        )?;
        // `../../modules/...` from the work dir resolves to the repository's modules.
        let modules = repo_root().join("modules");
        if modules.is_dir() {
            let link = root.join("modules");
            std::os::unix::fs::symlink(&modules, &link).map_err(|e| HarnessError::io(&link, e))?;
        }
        let timeout = std::env::var("WADDLE_ACC_CMD_TIMEOUT")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(900));
        Ok(Runner {
            name: name.to_owned(),
            cli,
            root,
            mirror,
            cli_config,
            logs,
            work,
            case_env,
            seq: 0,
            transcript: Vec::new(),
            written: Vec::new(),
            last_good: None,
            last_good_env: Vec::new(),
            applied: false,
            last_state: None,
            skipped: Vec::new(),
            unsupported_checks: Vec::new(),
            steps_run: 0,
            timeout,
        })
    }

    /// Runs one CLI command in `dir`, logging everything. A non-zero exit is not an error here.
    fn tf(
        &mut self,
        dir: &Path,
        step: Option<usize>,
        phase: Phase,
        args: &[&str],
        step_env: &[(String, String)],
    ) -> Result<CmdOutput, HarnessError> {
        self.seq += 1;
        let stem = match step {
            Some(s) => format!("{:02}-s{}-{}", self.seq, s + 1, phase.slug()),
            None => format!("{:02}-{}", self.seq, phase.slug()),
        };
        let out_path = self.logs.join(format!("{stem}.stdout"));
        let err_path = self.logs.join(format!("{stem}.stderr"));
        let log_path = self.logs.join(format!("{stem}.tflog"));
        let out_file = fs::File::create(&out_path).map_err(|e| HarnessError::io(&out_path, e))?;
        let err_file = fs::File::create(&err_path).map_err(|e| HarnessError::io(&err_path, e))?;

        let mut cmd = Command::new(&self.cli.path);
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_file))
            .stderr(Stdio::from(err_file));
        // Nothing from the developer's shell that changes CLI or provider behaviour.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("TF_") || k.starts_with("PROXMOX_VE_") || k.starts_with("CHECKPOINT_")
            {
                cmd.env_remove(k.as_ref());
            }
        }
        let tf_log = std::env::var("WADDLE_ACC_TF_LOG").unwrap_or_else(|_| "trace".into());
        cmd.env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_CLI_CONFIG_FILE", &self.cli_config);
        if tf_log != "off" && !tf_log.is_empty() {
            cmd.env("TF_LOG", &tf_log).env("TF_LOG_PATH", &log_path);
        }
        for (k, v) in self.case_env.iter().chain(step_env) {
            cmd.env(k, v);
        }

        let label = format!("{} {}", self.cli.path.display(), args.join(" "));
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| HarnessError::Command(format!("spawning {label}: {e}")))?;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if started.elapsed() > self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    for pid in kill_processes_in(&self.root) {
                        self.transcript
                            .push(format!("killed leftover process {pid} (cwd in work root)"));
                    }
                    let _ = fs::write(self.logs.join("transcript.txt"), self.transcript.join("\n"));
                    return Err(HarnessError::Command(format!(
                        "{label} did not finish within {:?} (killed); see {}",
                        self.timeout,
                        err_path.display()
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(HarnessError::Command(format!("waiting for {label}: {e}"))),
            }
        };
        let elapsed = started.elapsed();
        let stdout = fs::read_to_string(&out_path).unwrap_or_default();
        let stderr = fs::read_to_string(&err_path).unwrap_or_default();
        let crashed = is_crash(&stdout) || is_crash(&stderr);
        self.transcript.push(format!(
            "{stem}: (cd {}; {label}) -> {}{} in {:.2}s",
            dir.display(),
            status
                .code()
                .map_or("signal".to_string(), |c| format!("exit {c}")),
            if crashed { " CRASHED" } else { "" },
            elapsed.as_secs_f64()
        ));
        // The CLI is gone: nothing may still run in our work root (a crashed CLI leaves its
        // provider processes behind).
        for pid in kill_processes_in(&self.root) {
            self.transcript
                .push(format!("killed leftover process {pid} (cwd in work root)"));
        }
        Ok(CmdOutput {
            code: status.code(),
            stdout,
            stderr,
            label,
            crashed,
        })
    }

    fn show_json(
        &mut self,
        dir: &Path,
        step: Option<usize>,
        phase: Phase,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Result<Value, Fail> {
        let mut args = vec!["show", "-json", "-no-color"];
        args.extend_from_slice(extra);
        let out = self.tf(dir, step, phase, &args, env)?;
        if out.code != Some(0) {
            return Err(Fail::new(
                phase,
                format!("`show -json` failed\n{}", out.excerpt()),
            ));
        }
        serde_json::from_str(&out.stdout)
            .map_err(|e| Fail::new(phase, format!("`show -json` printed invalid JSON: {e}")))
    }

    fn snapshot(
        &mut self,
        dir: &Path,
        step: Option<usize>,
        phase: Phase,
        env: &[(String, String)],
    ) -> Result<Snapshot, Fail> {
        let state = State::from_json(self.show_json(dir, step, phase, &[], env)?);
        let out = self.tf(dir, step, phase, &["output", "-json", "-no-color"], env)?;
        if out.code != Some(0) {
            return Err(Fail::new(
                phase,
                format!("`output -json` failed\n{}", out.excerpt()),
            ));
        }
        let outputs = serde_json::from_str(&out.stdout)
            .map_err(|e| Fail::new(phase, format!("`output -json` printed invalid JSON: {e}")))?;
        Ok(Snapshot {
            state,
            outputs: Outputs::from_json(outputs),
            work_dir: dir.to_path_buf(),
            logs_dir: self.logs.clone(),
        })
    }

    fn write_config(
        &mut self,
        dir: &Path,
        files: &[(PathBuf, String)],
    ) -> Result<(), HarnessError> {
        for p in self.written.drain(..) {
            let _ = fs::remove_file(dir.join(p));
        }
        for (p, c) in files {
            write_file(&dir.join(p), c)?;
            self.written.push(p.clone());
        }
        Ok(())
    }

    pub(super) fn run_case(&mut self, case: &TestCase) -> Result<(), (Option<usize>, Fail)> {
        let mut outcome = Ok(());
        for (i, step) in case.steps.iter().enumerate() {
            if let Some(reason) = step.skip.as_ref().and_then(|f| f(self.cli)) {
                let msg = format!("SKIPPED {} {}: {reason}", self.name, step.label(i));
                notice(&msg);
                self.transcript.push(msg);
                self.skipped.push(format!("{}: {reason}", step.label(i)));
                continue;
            }
            self.transcript.push(format!("== {}", step.label(i)));
            let r = if step.import.is_some() {
                self.run_import_step(i, step)
            } else {
                self.run_config_step(i, step)
            };
            self.steps_run += 1;
            if let Err(f) = r {
                outcome = Err((Some(i), f));
                break;
            }
        }
        // Always clean up what exists, even after a failure.
        if self.applied {
            if let Err(f) = self.destroy(case) {
                if outcome.is_ok() {
                    outcome = Err((None, f));
                } else if let Err((_, first)) = &mut outcome {
                    first.message.push_str(&format!(
                        "\n\nadditionally, the final destroy failed [{}]: {}",
                        f.phase, f.message
                    ));
                }
            }
        }
        outcome
    }

    /// Classifies a failed command against the step's expectation: Ok(true) = expected error
    /// (the step ends successfully), Err = real failure.
    fn command_failed(step: &TestStep, phase: Phase, out: &CmdOutput) -> Result<(), Fail> {
        if out.crashed {
            return Err(Fail::new(
                phase,
                format!(
                    "the CLI crashed (Go panic; crash.*.log in the work dir). With a provider \
                     this usually means a response the CLI cannot handle.\n{}",
                    out.excerpt()
                ),
            ));
        }
        let Some(re) = &step.expect_error else {
            return Err(Fail::new(
                phase,
                format!("command failed\n{}", out.excerpt()),
            ));
        };
        if let Some(allowed) = &step.expect_error_in {
            if !allowed.contains(&phase) {
                return Err(Fail::new(
                    phase,
                    format!(
                        "expected error occurred in phase {phase}, but only {allowed:?} allowed\n{}",
                        out.excerpt()
                    ),
                ));
            }
        }
        if re.is_match(&out.text()) {
            Ok(())
        } else {
            Err(Fail::new(
                phase,
                format!(
                    "command failed, but its output does not match expect_error /{re}/\n{}",
                    out.excerpt()
                ),
            ))
        }
    }

    fn destroy(&mut self, case: &TestCase) -> Result<(), Fail> {
        self.transcript.push("== destroy".into());
        let work = self.work.clone();
        let env = self.last_good_env.clone();
        let env = env.as_slice();
        if let Some(files) = self.last_good.clone() {
            self.write_config(&work, &files)?;
            let plugin_dir = format!("-plugin-dir={}", self.mirror.display());
            // re-init in case the failing step changed the providers/modules
            let out = self.tf(
                &work,
                None,
                Phase::Destroy,
                &["init", "-input=false", "-no-color", &plugin_dir],
                env,
            )?;
            if out.code != Some(0) {
                return Err(Fail::new(
                    Phase::Destroy,
                    format!("init for destroy failed\n{}", out.excerpt()),
                ));
            }
        }
        let before = match self.show_json(&work, None, Phase::Destroy, &[], env) {
            Ok(v) => State::from_json(v),
            Err(_) => self.last_state.clone().unwrap_or_default(),
        };
        let out = self.tf(
            &work,
            None,
            Phase::Destroy,
            &["destroy", "-input=false", "-no-color", "-auto-approve"],
            env,
        )?;
        if out.code != Some(0) {
            return Err(Fail::new(
                Phase::Destroy,
                format!("destroy failed\n{}", out.excerpt()),
            ));
        }
        let after = State::from_json(self.show_json(&work, None, Phase::Destroy, &[], env)?);
        let left: Vec<String> = after
            .managed_resources()
            .into_iter()
            .map(|r| r.address)
            .collect();
        if !left.is_empty() {
            return Err(Fail::new(
                Phase::Destroy,
                format!("resources left in state after destroy: {left:?}"),
            ));
        }
        if let Some(f) = &case.check_destroy {
            f(&before).map_err(|m| Fail::new(Phase::CheckDestroy, m))?;
        }
        self.last_state = Some(before);
        Ok(())
    }

    pub(super) fn finish(
        self,
        result: Result<(), (Option<usize>, Fail)>,
    ) -> Result<Report, StepFailure> {
        let _ = fs::write(
            self.logs.join("transcript.txt"),
            self.transcript.join("\n") + "\n",
        );
        match result {
            Ok(()) => {
                let keep = std::env::var("WADDLE_ACC_KEEP").is_ok_and(|v| v == "1");
                if !keep {
                    let _ = fs::remove_dir_all(&self.root);
                }
                Ok(Report {
                    cli: self.cli.to_string(),
                    steps_run: self.steps_run,
                    skipped: self.skipped,
                    unsupported_checks: self.unsupported_checks,
                    work_root: keep.then_some(self.root),
                    final_state: self.last_state,
                })
            }
            Err((step, fail)) => {
                let failure = StepFailure {
                    test: self.name.clone(),
                    step,
                    phase: Some(fail.phase),
                    message: format!(
                        "{}\n\nCLI: {}\ntranscript:\n  {}",
                        fail.message,
                        self.cli,
                        self.transcript.join("\n  ")
                    ),
                    work_root: Some(self.root.clone()),
                };
                Err(failure)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_cli_crashes() {
        assert!(is_crash(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!! TERRAFORM CRASH !!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        ));
        assert!(is_crash(
            "panic: interface conversion: interface {} is nil\n\ngoroutine 132 [running]:\n"
        ));
        assert!(!is_crash(
            "Error: Invalid Talos version\n  panic: not at line start\n"
        ));
        assert!(!is_crash(""));
    }

    #[test]
    fn kills_only_processes_inside_the_root() {
        let base = std::env::temp_dir().join(format!("waddle-kill-test-{}", std::process::id()));
        let inside = base.join("root").join("w");
        let outside = base.join("root-other");
        fs::create_dir_all(&inside).unwrap();
        fs::create_dir_all(&outside).unwrap();
        let mut a = Command::new("sleep")
            .arg("30")
            .current_dir(&inside)
            .spawn()
            .unwrap();
        let mut b = Command::new("sleep")
            .arg("30")
            .current_dir(&outside)
            .spawn()
            .unwrap();
        // wait until /proc shows the new cwd
        std::thread::sleep(Duration::from_millis(100));
        let killed = kill_processes_in(&base.join("root"));
        assert_eq!(killed, vec![a.id()]);
        assert!(!a.wait().unwrap().success());
        assert!(
            b.try_wait().unwrap().is_none(),
            "the process outside the root must live"
        );
        b.kill().unwrap();
        b.wait().unwrap();
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn sanitizes_names() {
        assert_eq!(sanitize("mod::test name"), "mod__test_name");
        assert_eq!(sanitize(&"x".repeat(200)).len(), 80);
    }
}
