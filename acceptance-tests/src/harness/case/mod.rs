//! `TestCase` / `TestStep` and the runner executing their lifecycle through the real CLI.

mod runner;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use regex::Regex;

use super::check::{Check, PlanCheck};
use super::cli::Cli;
use super::provider::provider_binary;
use super::state::State;
use super::{notice, repo_root, HarnessError};
use runner::Runner;

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

    /// [`TestStep::file`] for each (name, content) pair (e.g. `harness::module_files(..)`).
    pub fn files(self, pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        pairs.into_iter().fold(self, |s, (name, c)| s.file(name, c))
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

    /// [`TestCase::env`] for each pair (e.g. `PveTarget::cli_env()`).
    pub fn envs(self, pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        pairs.into_iter().fold(self, |c, (k, v)| c.env(k, v))
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
