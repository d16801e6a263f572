//! Talos and Kubernetes versions this crate generates configuration for, and the
//! configuration contracts ([`ConfigContract`]) it renders.

use std::fmt;
use std::ops::RangeInclusive;

/// Talos versions whose machine-configuration format this crate renders: the published
/// v1.12 and v1.13 releases (siderolabs/talos tags).
pub const SUPPORTED_TALOS_VERSIONS: &[&str] = &[
    "v1.12.0", "v1.12.1", "v1.12.2", "v1.12.3", "v1.12.4", "v1.12.5", "v1.12.6", "v1.12.7",
    "v1.12.8", "v1.12.9", "v1.12.10", "v1.12.11", "v1.13.0", "v1.13.1", "v1.13.2", "v1.13.3",
    "v1.13.4", "v1.13.5", "v1.13.6", "v1.13.7", "v1.13.8", "v1.13.9",
];

/// Default Talos version.
pub const DEFAULT_TALOS_VERSION: &str = "v1.12.11";

/// Kubernetes minor versions Talos v1.12 supports (support matrix: 1.30 to 1.35).
pub const SUPPORTED_KUBERNETES_MINORS: RangeInclusive<u32> = 30..=35;

/// Kubernetes minor versions Talos v1.13 supports (support matrix: 1.31 to 1.36,
/// `pkg/machinery/compatibility/talos113`).
pub const SUPPORTED_KUBERNETES_MINORS_1_13: RangeInclusive<u32> = 31..=36;

/// Default Kubernetes version (without the leading `v`).
pub const DEFAULT_KUBERNETES_VERSION: &str = "1.35.0";

/// The machine-configuration contract a configuration is rendered for, as talosctl's
/// `--talos-version` chooses it: the documents and keys `talosctl gen config` emits for
/// that Talos minor release. A node runs any configuration of its own contract or an older
/// one; a newer contract than a node runs is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigContract {
    /// Talos v1.12: network, hostname and resolvers as documents; `machine.network` and
    /// `machine.env` still exist in the v1alpha1 document (not generated).
    V1_12,
    /// Talos v1.13: `machine.network` and `machine.env` are gone from the v1alpha1 schema
    /// (KubeSpanConfig and EnvironmentConfig documents replace what was left of them);
    /// talosctl's defaults `install.grubUseUKICmdline` and the API server's default audit
    /// policy are written out.
    V1_13,
}

impl ConfigContract {
    /// Every contract, oldest first.
    pub const ALL: &'static [ConfigContract] = &[ConfigContract::V1_12, ConfigContract::V1_13];

    /// `v1.12` / `v1.13`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigContract::V1_12 => "v1.12",
            ConfigContract::V1_13 => "v1.13",
        }
    }

    /// The Talos minor release (`12`, `13`).
    pub fn minor(self) -> u32 {
        match self {
            ConfigContract::V1_12 => 12,
            ConfigContract::V1_13 => 13,
        }
    }

    /// Parses `v1.12` / `1.13`.
    pub fn parse(s: &str) -> Result<Self, VersionError> {
        let bare = s.strip_prefix('v').unwrap_or(s);
        ConfigContract::ALL
            .iter()
            .copied()
            .find(|c| &c.as_str()[1..] == bare)
            .ok_or_else(|| VersionError::UnknownContract { got: s.to_string() })
    }

    /// The contract of a Talos version's minor release (`v1.13.2` -> `v1.13`), for any
    /// version string with a parseable `MAJOR.MINOR` (pre-releases included); `None` for a
    /// minor this crate has no contract for.
    pub fn of_talos_version(version: &str) -> Option<Self> {
        let (major, minor) = talos_minor(version)?;
        ConfigContract::ALL
            .iter()
            .copied()
            .find(|c| major == 1 && c.minor() == minor)
    }

    /// Whether a node running `version` accepts configurations of this contract: its minor
    /// release is this contract's or a later one. `None` when `version` is unparseable.
    pub fn runs_on(self, version: &str) -> Option<bool> {
        let (major, minor) = talos_minor(version)?;
        Some(major > 1 || (major == 1 && minor >= self.minor()))
    }
}

impl fmt::Display for ConfigContract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `(major, minor)` of a Talos version (`v1.13.0`, `1.12.4`, `v1.13.0-alpha.1`).
pub fn talos_minor(version: &str) -> Option<(u32, u32)> {
    let bare = version.strip_prefix('v').unwrap_or(version);
    let mut it = bare.split(['.', '-']);
    let major = num(it.next()?)?;
    let minor = num(it.next()?)?;
    Some((major, minor))
}

/// The Kubernetes minor versions a Talos minor release supports; `None` for a minor this
/// crate does not render configuration for.
pub fn kubernetes_minors(talos_minor: u32) -> Option<RangeInclusive<u32>> {
    match talos_minor {
        12 => Some(SUPPORTED_KUBERNETES_MINORS),
        13 => Some(SUPPORTED_KUBERNETES_MINORS_1_13),
        _ => None,
    }
}

/// Checks a Kubernetes version against the support matrix of the Talos version `talos`
/// (a supported version, see [`parse_talos_version`]).
pub fn check_kubernetes_for_talos(
    k8s: &KubernetesVersion,
    talos: &str,
) -> Result<(), VersionError> {
    let Some((1, minor)) = talos_minor(talos) else {
        return Err(VersionError::UnknownTalos {
            got: talos.to_string(),
        });
    };
    let range = kubernetes_minors(minor).ok_or_else(|| VersionError::UnknownTalos {
        got: talos.to_string(),
    })?;
    if k8s.major != 1 || !range.contains(&k8s.minor) {
        return Err(VersionError::UnsupportedKubernetes {
            got: k8s.to_string(),
            talos: format!("v1.{minor}"),
            min: *range.start(),
            max: *range.end(),
        });
    }
    Ok(())
}

/// Kubernetes control-plane images.
pub const KUBE_APISERVER_IMAGE: &str = "registry.k8s.io/kube-apiserver";
/// Kubernetes controller manager image.
pub const KUBE_CONTROLLER_MANAGER_IMAGE: &str = "registry.k8s.io/kube-controller-manager";
/// Kubernetes scheduler image.
pub const KUBE_SCHEDULER_IMAGE: &str = "registry.k8s.io/kube-scheduler";
/// kube-proxy image.
pub const KUBE_PROXY_IMAGE: &str = "registry.k8s.io/kube-proxy";
/// Talos kubelet image.
pub const KUBELET_IMAGE: &str = "ghcr.io/siderolabs/kubelet";
/// Default (vanilla) installer image repository.
pub const DEFAULT_INSTALLER_REPOSITORY: &str = "ghcr.io/siderolabs/installer";

/// A version string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// Not a Talos version this crate can render configuration for.
    #[error("unsupported Talos version {got:?}; supported: {}", SUPPORTED_TALOS_VERSIONS.join(", "))]
    UnknownTalos {
        /// What was given.
        got: String,
    },
    /// Not `MAJOR.MINOR.PATCH`.
    #[error("{got:?} is not a Kubernetes version (expected e.g. {DEFAULT_KUBERNETES_VERSION})")]
    MalformedKubernetes {
        /// What was given.
        got: String,
    },
    /// A well-formed Kubernetes version the Talos release does not support.
    #[error(
        "Kubernetes {got} is not supported by Talos {talos} (supported: 1.{min}.x to 1.{max}.x)"
    )]
    UnsupportedKubernetes {
        /// What was given.
        got: String,
        /// The Talos minor release (`v1.12`).
        talos: String,
        /// Lowest supported Kubernetes minor.
        min: u32,
        /// Highest supported Kubernetes minor.
        max: u32,
    },
    /// Not a configuration contract this crate renders.
    #[error("unknown configuration contract {got:?}; supported: v1.12, v1.13")]
    UnknownContract {
        /// What was given.
        got: String,
    },
}

/// A validated Kubernetes version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KubernetesVersion {
    /// Major (always 1).
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl fmt::Display for KubernetesVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Parses and checks a Kubernetes version (`1.35.0` or `v1.35.0`) against the support
/// matrix of Talos v1.12 (see [`parse_kubernetes_version_for`] for another release).
pub fn parse_kubernetes_version(s: &str) -> Result<KubernetesVersion, VersionError> {
    parse_kubernetes_version_for(s, "v1.12.0")
}

/// Parses a Kubernetes version and checks it against the support matrix of the Talos
/// version `talos`.
pub fn parse_kubernetes_version_for(
    s: &str,
    talos: &str,
) -> Result<KubernetesVersion, VersionError> {
    let bare = s.strip_prefix('v').unwrap_or(s);
    let parts: Vec<&str> = bare.split('.').collect();
    let malformed = || VersionError::MalformedKubernetes { got: s.to_string() };
    if parts.len() != 3 {
        return Err(malformed());
    }
    let v = KubernetesVersion {
        major: num(parts[0]).ok_or_else(malformed)?,
        minor: num(parts[1]).ok_or_else(malformed)?,
        patch: num(parts[2]).ok_or_else(malformed)?,
    };
    check_kubernetes_for_talos(&v, talos)?;
    Ok(v)
}

/// Checks a Talos version (`v1.12.11`; the leading `v` is optional) and returns it in
/// canonical `vX.Y.Z` form.
pub fn parse_talos_version(s: &str) -> Result<&'static str, VersionError> {
    let canonical = if s.starts_with('v') {
        s.to_string()
    } else {
        format!("v{s}")
    };
    SUPPORTED_TALOS_VERSIONS
        .iter()
        .find(|v| **v == canonical)
        .copied()
        .ok_or_else(|| VersionError::UnknownTalos { got: s.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn talos_versions() {
        assert_eq!(parse_talos_version("v1.12.11").unwrap(), "v1.12.11");
        assert_eq!(parse_talos_version("1.12.0").unwrap(), "v1.12.0");
        assert!(parse_talos_version(DEFAULT_TALOS_VERSION).is_ok());
        assert_eq!(parse_talos_version("v1.13.9").unwrap(), "v1.13.9");
        assert_eq!(parse_talos_version("1.13.0").unwrap(), "v1.13.0");
        for bad in [
            "v1.11.5",
            "v1.13.10",
            "v1.14.0",
            "latest",
            "",
            "v1.12",
            "v1.13.0-rc.0",
        ] {
            assert!(parse_talos_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn contracts() {
        assert_eq!(
            ConfigContract::parse("v1.12").unwrap(),
            ConfigContract::V1_12
        );
        assert_eq!(
            ConfigContract::parse("1.13").unwrap(),
            ConfigContract::V1_13
        );
        for bad in ["v1.11", "v1.14", "1.13.0", "", "v1"] {
            assert!(
                matches!(
                    ConfigContract::parse(bad),
                    Err(VersionError::UnknownContract { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            ConfigContract::of_talos_version("v1.13.2"),
            Some(ConfigContract::V1_13)
        );
        assert_eq!(
            ConfigContract::of_talos_version("1.12.0"),
            Some(ConfigContract::V1_12)
        );
        assert_eq!(
            ConfigContract::of_talos_version("v1.13.0-alpha.1"),
            Some(ConfigContract::V1_13)
        );
        assert_eq!(ConfigContract::of_talos_version("v1.11.5"), None);
        assert_eq!(ConfigContract::V1_13.runs_on("v1.12.11"), Some(false));
        assert_eq!(ConfigContract::V1_13.runs_on("v1.13.0"), Some(true));
        assert_eq!(ConfigContract::V1_12.runs_on("v1.13.9"), Some(true));
        assert_eq!(ConfigContract::V1_12.runs_on("v1.11.0"), Some(false));
        assert_eq!(ConfigContract::V1_12.runs_on("garbage"), None);
        assert!(ConfigContract::V1_12 < ConfigContract::V1_13);
        for v in SUPPORTED_TALOS_VERSIONS {
            assert!(ConfigContract::of_talos_version(v).is_some(), "{v}");
        }
    }

    #[test]
    fn kubernetes_matrix_per_talos_minor() {
        assert!(parse_kubernetes_version_for("1.36.1", "v1.13.0").is_ok());
        assert!(parse_kubernetes_version_for("1.31.0", "v1.13.0").is_ok());
        let e = parse_kubernetes_version_for("1.30.9", "v1.13.4").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Kubernetes 1.30.9 is not supported by Talos v1.13 (supported: 1.31.x to 1.36.x)"
        );
        assert!(parse_kubernetes_version_for("1.30.9", "v1.12.4").is_ok());
        assert!(matches!(
            parse_kubernetes_version_for("1.36.0", "v1.12.11"),
            Err(VersionError::UnsupportedKubernetes { .. })
        ));
    }

    #[test]
    fn kubernetes_versions() {
        assert_eq!(
            parse_kubernetes_version("1.35.0").unwrap().to_string(),
            "1.35.0"
        );
        assert_eq!(parse_kubernetes_version("v1.30.4").unwrap().minor, 30);
        assert!(parse_kubernetes_version(DEFAULT_KUBERNETES_VERSION).is_ok());
        assert!(matches!(
            parse_kubernetes_version("1.36.0"),
            Err(VersionError::UnsupportedKubernetes { .. })
        ));
        assert!(matches!(
            parse_kubernetes_version("1.29.9"),
            Err(VersionError::UnsupportedKubernetes { .. })
        ));
        for bad in ["1.35", "1.35.x", "1.035.0", "", "1.35.0-rc.1"] {
            assert!(
                matches!(
                    parse_kubernetes_version(bad),
                    Err(VersionError::MalformedKubernetes { .. })
                ),
                "{bad}"
            );
        }
    }
}
