//! The steps of a case: a configuration step (init, validate, plan, apply, checks, the empty
//! plans after it) and an import step (with the generated configuration of an import block).

use std::fs;
use std::path::PathBuf;

use super::{changing_resources, write_file, Fail, Runner};
use crate::harness::case::{ImportId, Phase, TestStep};
use crate::harness::cli::{CliFlavor, Version};
use crate::harness::state::{diff_attributes, Plan, State};
use crate::harness::{notice, HarnessError};

impl Runner {
    pub(super) fn run_config_step(&mut self, i: usize, step: &TestStep) -> Result<(), Fail> {
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

    pub(super) fn run_import_step(&mut self, i: usize, step: &TestStep) -> Result<(), Fail> {
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
    pub(super) fn init_dir(
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
    pub(super) fn generate_config_from_import(
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
}
