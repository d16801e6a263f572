//! The provider binary under test and the filesystem mirror `init -plugin-dir` reads.
//!
//! `WADDLE_PROVIDER_BIN` names a prebuilt binary (what `scripts/test.sh` passes: the release
//! build, or the test build's with `WADDLE_TEST_RELEASE=0`). Without it the harness runs `cargo build -p terraform-provider-waddle` once per test
//! process — dev profile by default, so a developer's `cargo test -p waddle-acceptance` reuses the
//! debug artefacts; `WADDLE_PROVIDER_PROFILE=release` (or any cargo profile) to change — and takes
//! the executable path cargo reports, so any `CARGO_TARGET_DIR` / cargo config is honoured.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{repo_root, HarnessError};

/// Provider source address parts: `<host>/waddle-social/waddle`.
pub const PROVIDER_NAMESPACE: &str = "waddle-social";
pub const PROVIDER_TYPE: &str = "waddle";
/// Registry hosts the mirror serves: Terraform resolves `waddle-social/waddle` to the first,
/// OpenTofu to the second.
pub const REGISTRY_HOSTS: [&str; 2] = ["registry.terraform.io", "registry.opentofu.org"];
pub const PROVIDER_PACKAGE: &str = "terraform-provider-waddle";

/// The version the provider is installed under in the mirror (the workspace version).
pub fn provider_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// `linux_amd64`, `linux_arm64`, `darwin_arm64`, ...
pub fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("{}_{}", std::env::consts::OS, arch)
}

/// The provider binary for this test process: `WADDLE_PROVIDER_BIN`, or built once by cargo.
pub fn provider_binary() -> Result<&'static Path, HarnessError> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| locate_or_build().map_err(|e| e.to_string()))
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(|e| HarnessError::Provider(e.clone()))
}

fn locate_or_build() -> Result<PathBuf, HarnessError> {
    if let Some(p) = std::env::var_os("WADDLE_PROVIDER_BIN").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if !super::cli::is_executable(&p) {
            return Err(HarnessError::Provider(format!(
                "WADDLE_PROVIDER_BIN={} is not an executable file",
                p.display()
            )));
        }
        return Ok(p);
    }
    build_provider()
}

/// Runs `cargo build -p terraform-provider-waddle --bin terraform-provider-waddle` and returns
/// the executable cargo reports.
pub fn build_provider() -> Result<PathBuf, HarnessError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let profile = std::env::var("WADDLE_PROVIDER_PROFILE").unwrap_or_else(|_| "dev".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(repo_root())
        .args(["build", "-p", PROVIDER_PACKAGE, "--bin", PROVIDER_PACKAGE])
        .args(["--message-format=json-render-diagnostics"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if profile != "debug" && profile != "dev" {
        cmd.args(["--profile", &profile]);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| HarnessError::Provider(format!("running cargo build: {e}")))?;
    let mut exe = None;
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.map_err(|e| HarnessError::Provider(format!("cargo output: {e}")))?;
            if let Some(p) = artifact_executable(&line, PROVIDER_PACKAGE) {
                exe = Some(p);
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| HarnessError::Provider(format!("waiting for cargo build: {e}")))?;
    if !status.success() {
        return Err(HarnessError::Provider(format!(
            "cargo build -p {PROVIDER_PACKAGE} failed ({status})"
        )));
    }
    exe.ok_or_else(|| {
        HarnessError::Provider("cargo build reported no executable for the provider".into())
    })
}

/// Extracts `executable` from a cargo `compiler-artifact` JSON message for the named binary.
pub fn artifact_executable(line: &str, bin_name: &str) -> Option<PathBuf> {
    let msg: serde_json::Value = serde_json::from_str(line).ok()?;
    if msg.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    let target = msg.get("target")?;
    if target.get("name")?.as_str()? != bin_name {
        return None;
    }
    let is_bin = target
        .get("kind")?
        .as_array()?
        .iter()
        .any(|k| k.as_str() == Some("bin"));
    if !is_bin {
        return None;
    }
    msg.get("executable")?.as_str().map(PathBuf::from)
}

/// Path of the provider executable inside a mirror for one registry host.
pub fn mirror_binary_path(mirror: &Path, host: &str, version: &str, platform: &str) -> PathBuf {
    mirror
        .join(host)
        .join(PROVIDER_NAMESPACE)
        .join(PROVIDER_TYPE)
        .join(version)
        .join(platform)
        .join(format!("{PROVIDER_PACKAGE}_v{version}"))
}

/// Installs `binary` into an unpacked filesystem-mirror layout under `mirror` for both registry
/// hosts. Returns the installed executables.
pub fn install_mirror(binary: &Path, mirror: &Path) -> Result<Vec<PathBuf>, HarnessError> {
    use std::os::unix::fs::PermissionsExt;
    let version = provider_version();
    let platform = platform();
    let mut installed = Vec::new();
    for host in REGISTRY_HOSTS {
        let dest = mirror_binary_path(mirror, host, version, &platform);
        let io = |e: std::io::Error| HarnessError::io(&dest, e);
        std::fs::create_dir_all(dest.parent().unwrap_or(mirror)).map_err(io)?;
        std::fs::copy(binary, &dest).map_err(io)?;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
        installed.push(dest);
    }
    Ok(installed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_layout_for_both_registries() {
        let d = std::env::temp_dir().join(format!("waddle-mirror-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let bin = d.join("provider-bin");
        std::fs::write(&bin, b"\x7fELF fake").unwrap();
        let mirror = d.join("mirror");
        let installed = install_mirror(&bin, &mirror).unwrap();
        let v = provider_version();
        let plat = platform();
        assert_eq!(
            installed,
            vec![
                mirror.join(format!(
                    "registry.terraform.io/waddle-social/waddle/{v}/{plat}/terraform-provider-waddle_v{v}"
                )),
                mirror.join(format!(
                    "registry.opentofu.org/waddle-social/waddle/{v}/{plat}/terraform-provider-waddle_v{v}"
                )),
            ]
        );
        for p in &installed {
            assert_eq!(std::fs::read(p).unwrap(), b"\x7fELF fake");
            assert!(crate::harness::cli::is_executable(p));
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn platform_names_match_registry_conventions() {
        let p = platform();
        assert!(p.starts_with(std::env::consts::OS), "{p}");
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        assert_eq!(p, "linux_amd64");
    }

    #[test]
    fn reads_executable_from_cargo_messages() {
        let line = r#"{"reason":"compiler-artifact","package_id":"x","target":{"kind":["bin"],"name":"terraform-provider-waddle"},"executable":"/t/release/terraform-provider-waddle","fresh":true}"#;
        assert_eq!(
            artifact_executable(line, "terraform-provider-waddle"),
            Some(PathBuf::from("/t/release/terraform-provider-waddle"))
        );
        let lib = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"terraform-provider-waddle"},"executable":null}"#;
        assert_eq!(artifact_executable(lib, "terraform-provider-waddle"), None);
        let other = r#"{"reason":"compiler-artifact","target":{"kind":["bin"],"name":"other"},"executable":"/x"}"#;
        assert_eq!(
            artifact_executable(other, "terraform-provider-waddle"),
            None
        );
        assert_eq!(artifact_executable("not json", "x"), None);
        assert_eq!(
            artifact_executable(r#"{"reason":"build-finished","success":true}"#, "x"),
            None
        );
    }
}
