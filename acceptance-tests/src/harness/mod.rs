//! Acceptance harness driving the real Terraform/OpenTofu CLI against the provider binary.
//!
//! Modelled on terraform-plugin-testing's `TestCase`/`TestStep` lifecycle:
//!
//! * once per test: find the CLI ([`cli`]), get the provider binary ([`provider`]), install it
//!   into a filesystem mirror under both `registry.terraform.io` and `registry.opentofu.org`, make
//!   a fresh work root with an isolated CLI config file;
//! * per config step: write the files, `init -plugin-dir=<mirror>`, `validate`,
//!   `plan -out`, `apply <plan>`, state checks, `plan -detailed-exitcode` (must be empty),
//!   `refresh`, `plan -detailed-exitcode` again (must be empty);
//! * per import step: a separate work dir, `import ADDR ID`, compare with the applied state;
//! * at the end (also after a failed step): `destroy` with the last valid config, verify no
//!   managed resource is left, then the case's `check_destroy` callback.
//!
//! Logs of every command (stdout, stderr, `TF_LOG=trace` file) are kept in `<root>/logs`; the
//! root is deleted on success and kept (and printed) on failure.
//!
//! Writing a test (`acceptance-tests/tests/cli_<feature>.rs`; one `TestCase` per `#[test]`, each
//! in its own directory, so cargo's parallel test threads are fine):
//!
//! ```no_run
//! use waddle_acceptance::harness::{check, Phase, TestCase, TestStep};
//!
//! const CFG: &str = r#"
//! terraform { required_providers { waddle = { source = "waddle-social/waddle" } } }
//! provider "waddle" {}
//! data "waddle_talos_image" "x" { talos_version = "v1.12.4" }
//! output "id" { value = data.waddle_talos_image.x.schematic_id }
//! "#;
//!
//! TestCase::new()
//!     .env("PROXMOX_VE_ENDPOINT", "https://127.10.0.1:8006/") // for every command of the case
//!     .step(
//!         TestStep::config(CFG)
//!             .check(check::output_matches("id", "^[0-9a-f]{64}$"))
//!             .check(check::attr_equals("data.waddle_talos_image.x", "platform", "nocloud")),
//!     )
//!     .step(
//!         TestStep::config(CFG.replace("v1.12.4", "banana"))
//!             .expect_error(r#"talos_version"#)
//!             .expect_error_in(&[Phase::Validate, Phase::Plan]),
//!     )
//!     // .step(TestStep::import("waddle_sni_proxy.edge").import_verify_ignore(&["timeouts"]))
//!     .check_destroy(|_last_state| Ok(())) // e.g. ask the PVE emulator that no VM is left
//!     .run();
//! ```

pub mod case;
pub mod check;
pub mod cli;
pub mod emulated;
pub mod provider;
pub mod sandbox;
pub mod state;
pub mod target;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use case::{ImportId, Phase, Report, StepFailure, TestCase, TestStep};
pub use check::{Check, PlanCheck, Snapshot};
pub use cli::{Cli, CliFlavor, Version};
pub use state::{Outputs, Plan, Resource, State};

/// Errors setting the harness up (before or around CLI runs).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("terraform CLI: {0}")]
    Cli(String),
    #[error("provider binary: {0}")]
    Provider(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Command(String),
}

impl HarnessError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> HarnessError {
        HarnessError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The repository root (parent of `acceptance-tests/`).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The `.tf` files of `modules/<name>` as `(path relative to the work dir, content)` pairs,
/// sorted by name, for `TestStep::file`, so a config can say `source = "./modules/<name>"`.
pub fn module_files(name: &str) -> Vec<(String, String)> {
    let dir = repo_root().join("modules").join(name);
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for e in entries {
        let p = e.expect("dir entry").path();
        if p.extension().is_some_and(|x| x == "tf") {
            let file = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let content = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            out.push((format!("modules/{name}/{file}"), content));
        }
    }
    out.sort();
    out
}

/// The cargo target dir as the harness sees it: `CARGO_TARGET_DIR` (relative paths are taken
/// from the repository root) or `<repo>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(d) => repo_root().join(d),
        None => repo_root().join("target"),
    }
}

/// Where per-test work roots are created: `WADDLE_ACC_WORK_DIR` or `<target dir>/waddle-acc`.
pub fn work_base() -> PathBuf {
    match std::env::var_os("WADDLE_ACC_WORK_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => target_dir().join("waddle-acc"),
    }
}

/// A configuration holding only the waddle provider, configured from the environment
/// (`PROXMOX_VE_*`, e.g. [`target::PveTarget::cli_env`]): the base of
/// [`TestStep::import_generate_config`].
pub const PROVIDER_FROM_ENV: &str = r#"terraform {
  required_providers {
    waddle = {
      source = "waddle-social/waddle"
    }
  }
}

provider "waddle" {}
"#;

/// Prints a notice that must be visible even though libtest captures test output (it writes to
/// the process's stderr directly), and appends it to `$WADDLE_ACC_NOTICE_LOG` when set so
/// `scripts/test.sh` can repeat skipped steps in its summary.
pub fn notice(message: &str) {
    let line = format!("waddle-acceptance: {message}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    if let Some(path) = std::env::var_os("WADDLE_ACC_NOTICE_LOG").filter(|v| !v.is_empty()) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}
