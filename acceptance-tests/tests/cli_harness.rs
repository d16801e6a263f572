//! Self-tests of the acceptance harness through the real CLI, with configurations that need no
//! provider (outputs, variables, built-in functions). They prove the step plumbing: empty-plan
//! enforcement, expected errors and their phases, plan-only steps, env and extra files, destroy
//! and check_destroy, logs kept on failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;
use waddle_acceptance::harness::{check, Phase, TestCase, TestStep};

#[test]
fn applies_outputs_through_steps_and_destroys() {
    let destroyed = Arc::new(AtomicBool::new(false));
    let flag = destroyed.clone();
    let report = TestCase::new()
        .without_provider()
        .step(
            TestStep::config(r#"output "x" { value = 1 }"#)
                .check(check::output_equals("x", 1))
                .check(check::func(|s| {
                    // `show -json` parsed: no resources, the output is in the state
                    if s.state.resources().is_empty() && s.state.terraform_version().is_some() {
                        Ok(())
                    } else {
                        Err(format!("unexpected state {}", s.state.raw))
                    }
                })),
        )
        .step(
            TestStep::config(r#"output "x" { value = { a = [var.v, "b"] } }"#)
                .file("variables.tf", "variable \"v\" { type = string }\n")
                .env("TF_VAR_v", "from-env")
                .check(check::output_equals("x", json!({"a": ["from-env", "b"]}))),
        )
        .check_destroy(move |before| {
            flag.store(true, Ordering::SeqCst);
            // the state seen right before destroy came from the last step
            match before.raw.pointer("/values/outputs/x/value/a/0") {
                Some(v) if v == "from-env" => Ok(()),
                other => Err(format!("unexpected pre-destroy state: {other:?}")),
            }
        })
        .run();
    assert_eq!(report.steps_run, 2);
    assert!(report.skipped.is_empty());
    assert!(
        destroyed.load(Ordering::SeqCst),
        "check_destroy was not called"
    );
}

#[test]
fn a_perpetual_diff_fails_the_empty_plan_check() {
    // timestamp() is unknown at plan time, so every plan shows a change.
    let failure = TestCase::new()
        .without_provider()
        .step(TestStep::config(r#"output "t" { value = timestamp() }"#))
        .try_run()
        .expect_err("a non-empty plan after apply must fail the step");
    assert_eq!(failure.phase, Some(Phase::PostApplyPlan), "{failure}");
    assert_eq!(failure.step, Some(0));
    assert!(failure.to_string().contains("not empty"), "{failure}");
    // The work dir and logs are kept for inspection on failure.
    let root = failure.work_root.clone().expect("work root kept");
    let logs = root.join("logs");
    assert!(logs.join("transcript.txt").is_file());
    let names: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for suffix in ["-s1-apply.stdout", "-s1-apply.stderr", "-s1-apply.tflog"] {
        assert!(
            names.iter().any(|n| n.ends_with(suffix)),
            "no *{suffix} in {names:?}"
        );
    }
    // TF_LOG=trace went to the per-command log file
    let tflog = names
        .iter()
        .find(|n| n.ends_with("-s1-apply.tflog"))
        .unwrap();
    let text = std::fs::read_to_string(logs.join(tflog)).unwrap();
    assert!(
        text.contains("[TRACE]") || text.contains("[DEBUG]"),
        "{text:.200}"
    );
    std::fs::remove_dir_all(root).unwrap();

    // ...and passes when a non-empty plan is expected.
    TestCase::new()
        .without_provider()
        .step(TestStep::config(r#"output "t" { value = timestamp() }"#).expect_non_empty_plan())
        .run();
}

#[test]
fn expected_errors_match_text_and_phase() {
    // An undeclared variable is refused by validate.
    let bad = r#"output "x" { value = var.missing }"#;
    TestCase::new()
        .without_provider()
        .step(TestStep::config(r#"output "x" { value = 1 }"#))
        .step(
            TestStep::config(bad)
                .expect_error(r#"Reference to undeclared input variable"#)
                .expect_error_in(&[Phase::Validate]),
        )
        // the state from step 1 is still there and applies cleanly afterwards
        .step(TestStep::config(r#"output "x" { value = 2 }"#).check(check::output_equals("x", 2)))
        .run();

    // Wrong phase constraint: the error happens in validate, not apply.
    let f = TestCase::new()
        .without_provider()
        .step(
            TestStep::config(bad)
                .expect_error("undeclared")
                .expect_error_in(&[Phase::Apply]),
        )
        .try_run()
        .expect_err("phase constraint must be enforced");
    assert!(f.message.contains("only [Apply] allowed"), "{f}");
    cleanup(&f);

    // Non-matching text.
    let f = TestCase::new()
        .without_provider()
        .step(TestStep::config(bad).expect_error("some other error"))
        .try_run()
        .expect_err("non-matching error must fail");
    assert!(f.message.contains("does not match expect_error"), "{f}");
    cleanup(&f);

    // An expected error that never happens.
    let f = TestCase::new()
        .without_provider()
        .step(TestStep::config(r#"output "x" { value = 1 }"#).expect_error("anything"))
        .try_run()
        .expect_err("a step that succeeds must fail when an error is expected");
    assert!(f.message.contains("but the step succeeded"), "{f}");
    cleanup(&f);

    // An unexpected error fails with the CLI's message.
    let f = TestCase::new()
        .without_provider()
        .step(TestStep::config(bad))
        .try_run()
        .expect_err("an unexpected error must fail");
    assert_eq!(f.phase, Some(Phase::Validate));
    assert!(f.message.contains("undeclared input variable"), "{f}");
    cleanup(&f);
}

#[test]
fn plan_only_steps_and_failed_checks() {
    TestCase::new()
        .without_provider()
        .step(
            TestStep::config(r#"output "x" { value = 1 }"#)
                .plan_only()
                .expect_non_empty_plan()
                .plan_check(Box::new(|p| match p.planned_output("x") {
                    Some(v) if v == 1 => Ok(()),
                    other => Err(format!("planned output x = {other:?}")),
                })),
        )
        .run();

    let f = TestCase::new()
        .without_provider()
        .step(TestStep::config(r#"output "x" { value = 1 }"#).plan_only())
        .try_run()
        .expect_err("an output change is a non-empty plan");
    assert_eq!(f.phase, Some(Phase::Plan));
    cleanup(&f);

    let f = TestCase::new()
        .without_provider()
        .step(
            TestStep::config(r#"output "x" { value = "abc" }"#)
                .check(check::output_equals("x", "abd"))
                .check(check::output_matches("x", "^a")),
        )
        .try_run()
        .expect_err("a failing check fails the step");
    assert_eq!(f.phase, Some(Phase::Check));
    assert!(f.message.contains(r#"expected "abd", got "abc""#), "{f}");
    cleanup(&f);
}

#[test]
fn config_dirs_and_skipped_steps() {
    let dir = std::env::temp_dir().join(format!("waddle-harness-cfgdir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("main.tf"),
        "output \"y\" { value = upper(var.name) }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("variables.tf"),
        "variable \"name\" { default = \"waddle\" }\n",
    )
    .unwrap();
    std::fs::write(dir.join("terraform.tfstate"), "not copied").unwrap();
    let report = TestCase::new()
        .without_provider()
        .step(TestStep::config_dir(&dir).check(check::output_equals("y", "WADDLE")))
        .step(
            TestStep::config(r#"output "never" { value = 1 }"#).skip_if(|cli| {
                Some(format!(
                    "harness self-test of skip reporting on {cli}, not a real skip"
                ))
            }),
        )
        .run();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(report.steps_run, 1);
    assert_eq!(report.skipped.len(), 1);
    assert!(report.skipped[0].contains("harness self-test of skip reporting"));
}

fn cleanup(f: &waddle_acceptance::harness::StepFailure) {
    if let Some(r) = &f.work_root {
        let _ = std::fs::remove_dir_all(r);
    }
}
