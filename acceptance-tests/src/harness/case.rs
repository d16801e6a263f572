//! `TestCase` / `TestStep` and the runner executing their lifecycle through the real CLI.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::Value;

use super::check::{Check, PlanCheck, Snapshot};
use super::cli::{Cli, CliFlavor, Version};
use super::provider::{install_mirror, provider_binary};
use super::state::{diff_attributes, Outputs, Plan, State};
use super::{notice, repo_root, work_base, HarnessError};

/// A lifecycle phase of a step (used in failures and to constrain where an error is expected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Init,
    Validate,
    Plan,
    Apply,
    Check,
    /// the plan right after apply that must be empty
    PostApplyPlan,
    Refresh,
    /// the plan after refresh that must be empty
    PostRefreshPlan,
    Import,
    ImportVerify,
    Destroy,
    CheckDestroy,
}

impl Phase {
    fn slug(self) -> &'static str {
        match self {
            Phase::Init => "init",
            Phase::Validate => "validate",
            Phase::Plan => "plan",
            Phase::Apply => "apply",
            Phase::Check => "check",
            Phase::PostApplyPlan => "plan-after-apply",
            Phase::Refresh => "refresh",
            Phase::PostRefreshPlan => "plan-after-refresh",
            Phase::Import => "import",
            Phase::ImportVerify => "import-verify",
            Phase::Destroy => "destroy",
            Phase::CheckDestroy => "check-destroy",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

/// Decides from the CLI whether to skip; `Some(reason)` skips (with a visible notice).
pub type SkipFn = Box<dyn Fn(&Cli) -> Option<String> + Send + Sync>;
/// Verifies, after the final destroy, that nothing is left (e.g. in the Proxmox emulator). It
/// gets the last state seen before the destroy.
pub type CheckDestroyFn = Box<dyn Fn(&State) -> Result<(), String> + Send + Sync>;

/// Computes an import ID from the state of the previous steps.
pub type ImportIdFn = Box<dyn Fn(&State) -> Result<String, String> + Send + Sync>;

/// How an import step gets its ID.
pub enum ImportId {
    /// The resource's `id` attribute in the state of the previous steps (plugin-testing's default).
    FromIdAttribute,
    Literal(String),
    /// Computed from the state of the previous steps.
    FromState(ImportIdFn),
}

struct ImportSpec {
    address: String,
    id: ImportId,
    verify: bool,
    verify_ignore: Vec<String>,
    /// `plan` after the import must be empty.
    plan_empty: bool,
    /// Generate the resource's configuration from the import (`plan -generate-config-out`)
    /// in a work dir holding only this configuration (provider settings) and an `import`
    /// block; the plan with the generated configuration must only import.
    generate_config: Option<String>,
}

/// One step of a [`TestCase`]: a configuration to apply (or only plan), or an import.
pub struct TestStep {
    config: Option<String>,
    config_dir: Option<PathBuf>,
    files: Vec<(PathBuf, String)>,
    env: Vec<(String, String)>,
    checks: Vec<Check>,
    plan_checks: Vec<PlanCheck>,
    expect_error: Option<Regex>,
    expect_error_in: Option<Vec<Phase>>,
    plan_only: bool,
    expect_non_empty_plan: bool,
    import: Option<ImportSpec>,
    skip: Option<SkipFn>,
    description: Option<String>,
}

impl TestStep {
    fn empty() -> TestStep {
        TestStep {
            config: None,
            config_dir: None,
            files: Vec::new(),
            env: Vec::new(),
            checks: Vec::new(),
            plan_checks: Vec::new(),
            expect_error: None,
            expect_error_in: None,
            plan_only: false,
            expect_non_empty_plan: false,
            import: None,
            skip: None,
            description: None,
        }
    }

    /// A step applying `hcl` (written as `main.tf`).
    pub fn config(hcl: impl Into<String>) -> TestStep {
        TestStep {
            config: Some(hcl.into()),
            ..TestStep::empty()
        }
    }

    /// A step applying the files of a directory (top-level regular files, e.g. an example;
    /// relative paths are resolved from the repository root). Local module sources like
    /// `../../modules/x` keep working: the work dir sits two levels below a root that links
    /// `modules/` to the repository's.
    pub fn config_dir(dir: impl AsRef<Path>) -> TestStep {
        TestStep {
            config_dir: Some(repo_root().join(dir)),
            ..TestStep::empty()
        }
    }

    /// An import step: imports `address` into a fresh work dir using the previous step's
    /// configuration (or this step's, if given with [`TestStep::with_config`]) and by default
    /// verifies the imported attributes equal the applied ones.
    pub fn import(address: &str) -> TestStep {
        TestStep {
            import: Some(ImportSpec {
                address: address.to_owned(),
                id: ImportId::FromIdAttribute,
                verify: true,
                verify_ignore: Vec::new(),
                plan_empty: false,
                generate_config: None,
            }),
            ..TestStep::empty()
        }
    }

    /// Sets/replaces this step's `main.tf` (useful on import steps).
    pub fn with_config(mut self, hcl: impl Into<String>) -> Self {
        self.config = Some(hcl.into());
        self
    }

    /// An extra file (relative to the work dir) written beside the config.
    pub fn file(mut self, name: impl AsRef<Path>, content: impl Into<String>) -> Self {
        self.files
            .push((name.as_ref().to_path_buf(), content.into()));
        self
    }

    /// [`TestStep::env`] for each pair.
    pub fn envs(self, pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        pairs.into_iter().fold(self, |s, (k, v)| s.env(k, v))
    }

    /// An environment variable for every CLI command of this step (and thus for the provider).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// A check on state/outputs after apply (or on the imported state for import steps).
    pub fn check(mut self, c: Check) -> Self {
        self.checks.push(c);
        self
    }

    /// A check on the plan this step applies (`show -json` of the saved plan).
    pub fn plan_check(mut self, c: PlanCheck) -> Self {
        self.plan_checks.push(c);
        self
    }

    /// The step must fail with CLI output (stdout+stderr, no colour) matching `pattern`.
    /// Panics on an invalid regex (a test bug).
    pub fn expect_error(mut self, pattern: &str) -> Self {
        match Regex::new(pattern) {
            Ok(re) => self.expect_error = Some(re),
            Err(e) => panic!("invalid expect_error regex /{pattern}/: {e}"),
        }
        self
    }

    /// Restricts the phases in which the expected error may occur (e.g. `&[Phase::Validate,
    /// Phase::Plan]` for "refused before any API call").
    pub fn expect_error_in(mut self, phases: &[Phase]) -> Self {
        self.expect_error_in = Some(phases.to_vec());
        self
    }

    /// Only `plan` (must be empty unless [`TestStep::expect_non_empty_plan`]); nothing applied.
    pub fn plan_only(mut self) -> Self {
        self.plan_only = true;
        self
    }

    /// The plan after apply (or the plan of a plan-only step) must NOT be empty.
    pub fn expect_non_empty_plan(mut self) -> Self {
        self.expect_non_empty_plan = true;
        self
    }

    /// Import ID given literally.
    pub fn import_id(mut self, id: impl Into<String>) -> Self {
        if let Some(i) = self.import.as_mut() {
            i.id = ImportId::Literal(id.into());
        }
        self
    }

    /// Import ID computed from the previous steps' state.
    pub fn import_id_fn(
        mut self,
        f: impl Fn(&State) -> Result<String, String> + Send + Sync + 'static,
    ) -> Self {
        if let Some(i) = self.import.as_mut() {
            i.id = ImportId::FromState(Box::new(f));
        }
        self
    }

    /// Attributes (flattened path prefixes, e.g. `timeouts`, `nodes.cp1.password`) not compared
    /// after import.
    pub fn import_verify_ignore(mut self, paths: &[&str]) -> Self {
        if let Some(i) = self.import.as_mut() {
            i.verify_ignore = paths.iter().map(|s| (*s).to_owned()).collect();
        }
        self
    }

    /// After the import, `plan` in the import's work dir must change no resource (the import
    /// is a no-op; outputs, which `import` does not write, may be added).
    pub fn import_plan_empty(mut self) -> Self {
        if let Some(i) = self.import.as_mut() {
            i.plan_empty = true;
        }
        self
    }

    /// Also import through an `import` block with `plan -generate-config-out` (Terraform >=
    /// 1.5, OpenTofu >= 1.6; reported skipped on older CLIs): `base` holds the provider
    /// settings only; the plan with the generated configuration must import and change
    /// nothing.
    pub fn import_generate_config(mut self, base: impl Into<String>) -> Self {
        if let Some(i) = self.import.as_mut() {
            i.generate_config = Some(base.into());
        }
        self
    }

    /// Do not compare imported attributes with the applied ones.
    pub fn no_import_verify(mut self) -> Self {
        if let Some(i) = self.import.as_mut() {
            i.verify = false;
        }
        self
    }

    /// Skip this step when `f` returns a reason (reported visibly, never silently).
    pub fn skip_if(mut self, f: impl Fn(&Cli) -> Option<String> + Send + Sync + 'static) -> Self {
        self.skip = Some(Box::new(f));
        self
    }

    /// Skip this step unless the CLI supports provider-defined functions.
    pub fn requires_provider_functions(self) -> Self {
        self.skip_if(Cli::provider_functions_unsupported_reason)
    }

    /// A human label used in logs and failures.
    pub fn describe(mut self, d: impl Into<String>) -> Self {
        self.description = Some(d.into());
        self
    }

    /// The files this step writes into the work dir.
    fn materialize(&self) -> Result<Vec<(PathBuf, String)>, HarnessError> {
        let mut files = Vec::new();
        if let Some(dir) = &self.config_dir {
            let entries = fs::read_dir(dir).map_err(|e| HarnessError::io(dir, e))?;
            let mut names = Vec::new();
            for e in entries {
                let e = e.map_err(|e| HarnessError::io(dir, e))?;
                let ft = e
                    .file_type()
                    .map_err(|err| HarnessError::io(&e.path(), err))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let generated = name.starts_with("terraform.tfstate")
                    || name == ".terraform.lock.hcl"
                    || name.ends_with(".tfplan");
                if ft.is_file() && !generated {
                    names.push(name);
                }
            }
            names.sort();
            for n in names {
                let p = dir.join(&n);
                let content = fs::read_to_string(&p).map_err(|e| HarnessError::io(&p, e))?;
                files.push((PathBuf::from(n), content));
            }
        }
        if let Some(c) = &self.config {
            files.retain(|(p, _)| p != Path::new("main.tf"));
            files.push((PathBuf::from("main.tf"), c.clone()));
        }
        for (p, c) in &self.files {
            files.retain(|(q, _)| q != p);
            files.push((p.clone(), c.clone()));
        }
        Ok(files)
    }

    fn has_config(&self) -> bool {
        self.config.is_some() || self.config_dir.is_some() || !self.files.is_empty()
    }

    fn label(&self, index: usize) -> String {
        match &self.description {
            Some(d) => format!("step {} ({d})", index + 1),
            None => format!("step {}", index + 1),
        }
    }
}

/// A failed test: where, why, and where the evidence is.
#[derive(Debug)]
pub struct StepFailure {
    pub test: String,
    /// 0-based step index (None for setup/teardown).
    pub step: Option<usize>,
    pub phase: Option<Phase>,
    pub message: String,
    pub work_root: Option<PathBuf>,
}

impl fmt::Display for StepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "acceptance test {} failed", self.test)?;
        if let Some(s) = self.step {
            write!(f, " at step {}", s + 1)?;
        }
        if let Some(p) = self.phase {
            write!(f, " [{p}]")?;
        }
        write!(f, ":\n{}", self.message)?;
        if let Some(r) = &self.work_root {
            write!(
                f,
                "\n\nwork dir kept: {}\nlogs (stdout/stderr/TF_LOG per command, transcript.txt): {}",
                r.display(),
                r.join("logs").display()
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for StepFailure {}

/// What a successful run did.
#[derive(Debug, Clone)]
pub struct Report {
    pub cli: String,
    pub steps_run: usize,
    /// Skipped steps (or the whole case) with reasons.
    pub skipped: Vec<String>,
    /// Checks within steps that ran, skipped because this CLI lacks what they need (e.g. the
    /// generated-configuration check of an import step on Terraform < 1.5), with reasons. Also
    /// printed as `SKIPPED` notices for the test summary.
    pub unsupported_checks: Vec<String>,
    /// Kept only when `WADDLE_ACC_KEEP=1`.
    pub work_root: Option<PathBuf>,
    /// The last state seen before destroy.
    pub final_state: Option<State>,
}

/// An acceptance test: ordered steps sharing one state, then destroy.
pub struct TestCase {
    name: String,
    steps: Vec<TestStep>,
    env: Vec<(String, String)>,
    check_destroy: Option<CheckDestroyFn>,
    skip: Option<SkipFn>,
    needs_provider: bool,
}

impl Default for TestCase {
    fn default() -> Self {
        TestCase::new()
    }
}

impl TestCase {
    /// A case named after the current test (libtest names the thread after the test).
    pub fn new() -> TestCase {
        let name = std::thread::current()
            .name()
            .filter(|n| *n != "main")
            .unwrap_or("acceptance")
            .to_owned();
        TestCase::named(name)
    }

    pub fn named(name: impl Into<String>) -> TestCase {
        TestCase {
            name: name.into(),
            steps: Vec::new(),
            env: Vec::new(),
            check_destroy: None,
            skip: None,
            needs_provider: true,
        }
    }

    /// The configurations use no waddle provider: skip building/installing it (harness
    /// self-tests with built-in features only).
    pub fn without_provider(mut self) -> Self {
        self.needs_provider = false;
        self
    }

    pub fn step(mut self, s: TestStep) -> Self {
        self.steps.push(s);
        self
    }

    /// An environment variable for every CLI command (and the provider they start).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Called after the final destroy with the last state seen before it.
    pub fn check_destroy(
        mut self,
        f: impl Fn(&State) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.check_destroy = Some(Box::new(f));
        self
    }

    /// Skip the whole case when `f` returns a reason (reported visibly).
    pub fn skip_if(mut self, f: impl Fn(&Cli) -> Option<String> + Send + Sync + 'static) -> Self {
        self.skip = Some(Box::new(f));
        self
    }

    /// Runs the case and panics with a full failure report (for `#[test]` functions).
    pub fn run(self) -> Report {
        match self.try_run() {
            Ok(r) => r,
            Err(f) => {
                if let Some(root) = &f.work_root {
                    notice(&format!(
                        "FAILED {}: work dir kept at {}",
                        f.test,
                        root.display()
                    ));
                }
                panic!("{f}")
            }
        }
    }

    /// Runs the case.
    pub fn try_run(self) -> Result<Report, StepFailure> {
        let name = self.name.clone();
        let setup_fail = |e: HarnessError| StepFailure {
            test: name.clone(),
            step: None,
            phase: None,
            message: e.to_string(),
            work_root: None,
        };
        let cli = Cli::get().map_err(setup_fail)?;
        if let Some(reason) = self.skip.as_ref().and_then(|f| f(cli)) {
            notice(&format!("SKIPPED {name}: {reason}"));
            return Ok(Report {
                cli: cli.to_string(),
                steps_run: 0,
                skipped: vec![reason],
                unsupported_checks: Vec::new(),
                work_root: None,
                final_state: None,
            });
        }
        let bin = if self.needs_provider {
            Some(provider_binary().map_err(setup_fail)?)
        } else {
            None
        };
        let mut runner = Runner::new(&name, cli, bin, self.env.clone()).map_err(setup_fail)?;
        let result = runner.run_case(&self);
        runner.finish(result)
    }
}

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

struct Fail {
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
struct Runner {
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
    fn new(
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

    fn run_case(&mut self, case: &TestCase) -> Result<(), (Option<usize>, Fail)> {
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

    fn run_config_step(&mut self, i: usize, step: &TestStep) -> Result<(), Fail> {
        if !step.has_config() {
            return Err(Fail::new(Phase::Init, "step has no configuration"));
        }
        let files = step.materialize()?;
        let work = self.work.clone();
        self.write_config(&work, &files)?;
        let env = &step.env;
        let plugin_dir = format!("-plugin-dir={}", self.mirror.display());

        // Runs a command; on failure either ends the step as an expected error or fails it.
        macro_rules! run_or_expected {
            ($phase:expr, $args:expr, $ok:expr) => {{
                let out = self.tf(&work, Some(i), $phase, $args, env)?;
                let ok: fn(Option<i32>) -> bool = $ok;
                if out.crashed || !ok(out.code) {
                    return Self::command_failed(step, $phase, &out);
                }
                out
            }};
        }
        let zero: fn(Option<i32>) -> bool = |c| c == Some(0);
        let detailed: fn(Option<i32>) -> bool = |c| c == Some(0) || c == Some(2);

        run_or_expected!(
            Phase::Init,
            &["init", "-input=false", "-no-color", &plugin_dir],
            zero
        );
        run_or_expected!(Phase::Validate, &["validate", "-no-color"], zero);
        let plan_file = format!("step{}.tfplan", i + 1);
        let plan_out = run_or_expected!(
            Phase::Plan,
            &[
                "plan",
                "-input=false",
                "-no-color",
                "-detailed-exitcode",
                &format!("-out={plan_file}")
            ],
            detailed
        );
        self.written.push(PathBuf::from(&plan_file));
        if !step.plan_checks.is_empty() {
            let plan =
                Plan::from_json(self.show_json(&work, Some(i), Phase::Plan, &[&plan_file], env)?);
            for c in &step.plan_checks {
                c(&plan).map_err(|m| Fail::new(Phase::Plan, format!("plan check failed: {m}")))?;
            }
        }
        if step.plan_only {
            let empty = plan_out.code == Some(0);
            if step.expect_error.is_some() {
                return Err(Fail::new(
                    Phase::Plan,
                    format!(
                        "expected an error matching /{}/, but the plan succeeded",
                        step.expect_error.as_ref().map_or("", |r| r.as_str())
                    ),
                ));
            }
            if empty == step.expect_non_empty_plan {
                return Err(Fail::new(
                    Phase::Plan,
                    format!(
                        "plan-only step expected {} plan\n{}",
                        if step.expect_non_empty_plan {
                            "a non-empty"
                        } else {
                            "an empty"
                        },
                        plan_out.excerpt()
                    ),
                ));
            }
            self.last_good = Some(files);
            self.last_good_env = step.env.clone();
            return Ok(());
        }

        self.applied = true;
        run_or_expected!(
            Phase::Apply,
            &["apply", "-input=false", "-no-color", &plan_file],
            zero
        );
        let snap = self.snapshot(&work, Some(i), Phase::Check, env)?;
        self.last_state = Some(snap.state.clone());
        self.last_good = Some(files);
        self.last_good_env = step.env.clone();
        let failures: Vec<String> = step.checks.iter().filter_map(|c| c(&snap).err()).collect();
        if !failures.is_empty() {
            return Err(Fail::new(Phase::Check, failures.join("\n")));
        }

        let args = ["plan", "-input=false", "-no-color", "-detailed-exitcode"];
        let out = run_or_expected!(Phase::PostApplyPlan, &args, detailed);
        let empty = out.code == Some(0);
        if step.expect_non_empty_plan {
            if empty {
                return Err(Fail::new(
                    Phase::PostApplyPlan,
                    "expected a non-empty plan after apply, got an empty one",
                ));
            }
        } else if !empty {
            return Err(Fail::new(
                Phase::PostApplyPlan,
                format!("the plan after apply is not empty\n{}", out.excerpt()),
            ));
        }

        run_or_expected!(
            Phase::Refresh,
            &["refresh", "-input=false", "-no-color"],
            zero
        );
        let out = run_or_expected!(Phase::PostRefreshPlan, &args, detailed);
        if !step.expect_non_empty_plan && out.code != Some(0) {
            return Err(Fail::new(
                Phase::PostRefreshPlan,
                format!("the plan after refresh is not empty\n{}", out.excerpt()),
            ));
        }
        let state =
            State::from_json(self.show_json(&work, Some(i), Phase::PostRefreshPlan, &[], env)?);
        self.last_state = Some(state);

        if let Some(re) = &step.expect_error {
            return Err(Fail::new(
                Phase::PostRefreshPlan,
                format!("expected an error matching /{re}/, but the step succeeded"),
            ));
        }
        Ok(())
    }

    fn run_import_step(&mut self, i: usize, step: &TestStep) -> Result<(), Fail> {
        let Some(spec) = &step.import else {
            return Err(Fail::new(Phase::Import, "not an import step"));
        };
        let files = if step.has_config() {
            step.materialize()?
        } else {
            self.last_good.clone().ok_or_else(|| {
                Fail::new(
                    Phase::Import,
                    "import step without config and no previous config",
                )
            })?
        };
        let prev = self.last_state.clone().unwrap_or_default();
        let id = match &spec.id {
            ImportId::Literal(s) => s.clone(),
            ImportId::FromState(f) => f(&prev).map_err(|m| Fail::new(Phase::Import, m))?,
            ImportId::FromIdAttribute => prev
                .resource(&spec.address)
                .and_then(|r| r.str_attr("id").map(str::to_owned))
                .ok_or_else(|| {
                    Fail::new(
                        Phase::Import,
                        format!(
                            "no `id` attribute for {} in the previous state",
                            spec.address
                        ),
                    )
                })?,
        };
        let Some(dir) = self.init_dir(i, step, &format!("import-{}", i + 1), &files)? else {
            return Ok(());
        };
        let env = &step.env;
        let out = self.tf(
            &dir,
            Some(i),
            Phase::Import,
            &["import", "-input=false", "-no-color", &spec.address, &id],
            env,
        )?;
        if out.code != Some(0) {
            return Self::command_failed(step, Phase::Import, &out);
        }
        if let Some(re) = &step.expect_error {
            return Err(Fail::new(
                Phase::Import,
                format!("expected an error matching /{re}/, but the import succeeded"),
            ));
        }
        let snap = self.snapshot(&dir, Some(i), Phase::ImportVerify, env)?;
        if spec.verify {
            let applied = prev.resource(&spec.address).ok_or_else(|| {
                Fail::new(
                    Phase::ImportVerify,
                    format!("{} not in the applied state to compare with", spec.address),
                )
            })?;
            let imported = snap.state.resource(&spec.address).ok_or_else(|| {
                Fail::new(
                    Phase::ImportVerify,
                    format!(
                        "{} not in state after import (state: {:?})",
                        spec.address,
                        snap.state.addresses()
                    ),
                )
            })?;
            let diff = diff_attributes(&applied, &imported, &spec.verify_ignore);
            if !diff.is_empty() {
                return Err(Fail::new(
                    Phase::ImportVerify,
                    format!(
                        "imported {} differs from the applied one (ignoring {:?}):\n  {}",
                        spec.address,
                        spec.verify_ignore,
                        diff.join("\n  ")
                    ),
                ));
            }
        }
        let failures: Vec<String> = step.checks.iter().filter_map(|c| c(&snap).err()).collect();
        if !failures.is_empty() {
            return Err(Fail::new(Phase::Check, failures.join("\n")));
        }
        if spec.plan_empty {
            // Resources only: `import` writes no outputs, so the plan adds them.
            let plan_file = format!("import{}.tfplan", i + 1);
            let out = self.tf(
                &dir,
                Some(i),
                Phase::ImportVerify,
                &[
                    "plan",
                    "-input=false",
                    "-no-color",
                    &format!("-out={plan_file}"),
                ],
                env,
            )?;
            if out.code != Some(0) {
                return Self::command_failed(step, Phase::ImportVerify, &out);
            }
            let plan = Plan::from_json(self.show_json(
                &dir,
                Some(i),
                Phase::ImportVerify,
                &[&plan_file],
                env,
            )?);
            let changes = changing_resources(&plan);
            if !changes.is_empty() {
                return Err(Fail::new(
                    Phase::ImportVerify,
                    format!(
                        "the plan after the import changes resources: {changes:?}\n{}",
                        out.excerpt()
                    ),
                ));
            }
        }
        if let Some(base) = &spec.generate_config {
            let extra: Vec<(PathBuf, String)> = files
                .iter()
                .filter(|(p, _)| p.extension().is_none_or(|e| e != "tf"))
                .cloned()
                .collect();
            self.generate_config_from_import(i, step, &spec.address, &id, base, &extra)?;
        }
        Ok(())
    }

    /// A fresh work dir `w/<name>` holding `files`, initialised against the mirror; `None`
    /// when `init` failed as the step expects (the step ends there).
    fn init_dir(
        &mut self,
        i: usize,
        step: &TestStep,
        name: &str,
        files: &[(PathBuf, String)],
    ) -> Result<Option<PathBuf>, Fail> {
        let dir = self.root.join("w").join(name);
        fs::create_dir_all(&dir).map_err(|e| HarnessError::io(&dir, e))?;
        for (p, c) in files {
            write_file(&dir.join(p), c)?;
        }
        let plugin_dir = format!("-plugin-dir={}", self.mirror.display());
        let out = self.tf(
            &dir,
            Some(i),
            Phase::Init,
            &["init", "-input=false", "-no-color", &plugin_dir],
            &step.env,
        )?;
        if out.code != Some(0) {
            Self::command_failed(step, Phase::Init, &out)?;
            return Ok(None);
        }
        Ok(Some(dir))
    }

    /// See [`TestStep::import_generate_config`]. The resource is imported at the root as
    /// `<type>.generated` (configuration is generated only for root resources); `extra` are
    /// the step's other files (e.g. a CA certificate the provider block reads).
    fn generate_config_from_import(
        &mut self,
        i: usize,
        step: &TestStep,
        address: &str,
        id: &str,
        base: &str,
        extra: &[(PathBuf, String)],
    ) -> Result<(), Fail> {
        let ty = address
            .rsplit('.')
            .nth(1)
            .ok_or_else(|| Fail::new(Phase::ImportVerify, format!("bad address {address}")))?;
        let address = format!("{ty}.generated");
        let address = address.as_str();
        let supported = match self.cli.flavor {
            CliFlavor::Terraform => self.cli.version >= Version::new(1, 5, 0),
            CliFlavor::OpenTofu => self.cli.version >= Version::new(1, 6, 0),
        };
        if !supported {
            let reason = format!(
                "{} has no `plan -generate-config-out` (needs Terraform >= 1.5 or OpenTofu >= 1.6)",
                self.cli
            );
            let msg = format!(
                "SKIPPED {} {} (generated config): {reason}",
                self.name,
                step.label(i)
            );
            notice(&msg);
            self.transcript.push(msg);
            self.unsupported_checks
                .push(format!("{} (generated config): {reason}", step.label(i)));
            return Ok(());
        }
        let import = format!(
            "import {{\n  to = {address}\n  id = {}\n}}\n",
            serde_json::Value::from(id)
        );
        let mut files = extra.to_vec();
        files.push((PathBuf::from("main.tf"), base.to_string()));
        files.push((PathBuf::from("import.tf"), import));
        let Some(dir) = self.init_dir(i, step, &format!("generate-{}", i + 1), &files)? else {
            return Ok(());
        };
        let env = &step.env;
        let out = self.tf(
            &dir,
            Some(i),
            Phase::ImportVerify,
            &[
                "plan",
                "-input=false",
                "-no-color",
                "-generate-config-out=generated.tf",
            ],
            env,
        )?;
        if out.code != Some(0) {
            return Err(Fail::new(
                Phase::ImportVerify,
                format!("plan -generate-config-out failed\n{}", out.excerpt()),
            ));
        }
        let out = self.tf(
            &dir,
            Some(i),
            Phase::ImportVerify,
            &["plan", "-input=false", "-no-color", "-out=generated.tfplan"],
            env,
        )?;
        if out.code != Some(0) {
            let generated = fs::read_to_string(dir.join("generated.tf")).unwrap_or_default();
            return Err(Fail::new(
                Phase::ImportVerify,
                format!(
                    "the plan with the generated configuration failed\n{}\ngenerated.tf:\n{generated}",
                    out.excerpt()
                ),
            ));
        }
        let plan = Plan::from_json(self.show_json(
            &dir,
            Some(i),
            Phase::ImportVerify,
            &["generated.tfplan"],
            env,
        )?);
        let changes = changing_resources(&plan);
        let imported = plan
            .resource_changes()
            .iter()
            .any(|rc| rc.address == address);
        if !changes.is_empty() || !imported {
            return Err(Fail::new(
                Phase::ImportVerify,
                format!(
                    "with the generated configuration the plan must only import {address}; \
                     it changes {changes:?} (imports it: {imported})\n{}",
                    out.excerpt()
                ),
            ));
        }
        Ok(())
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

    fn finish(self, result: Result<(), (Option<usize>, Fail)>) -> Result<Report, StepFailure> {
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
