//! Talos and Kubernetes versions this crate generates configuration for.

use std::fmt;

/// Talos versions whose machine-configuration format this crate renders (the v1.12 series).
pub const SUPPORTED_TALOS_VERSIONS: &[&str] = &[
    "v1.12.0", "v1.12.1", "v1.12.2", "v1.12.3", "v1.12.4", "v1.12.5", "v1.12.6", "v1.12.7",
    "v1.12.8", "v1.12.9", "v1.12.10", "v1.12.11",
];

/// Default Talos version.
pub const DEFAULT_TALOS_VERSION: &str = "v1.12.11";

/// Kubernetes minor versions Talos v1.12 supports (support matrix: 1.30 to 1.35).
pub const SUPPORTED_KUBERNETES_MINORS: std::ops::RangeInclusive<u32> = 30..=35;

/// Default Kubernetes version (without the leading `v`).
pub const DEFAULT_KUBERNETES_VERSION: &str = "1.35.0";

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
    /// A well-formed Kubernetes version Talos v1.12 does not support.
    #[error("Kubernetes {got} is not supported by Talos v1.12 (supported: 1.{}.x to 1.{}.x)", SUPPORTED_KUBERNETES_MINORS.start(), SUPPORTED_KUBERNETES_MINORS.end())]
    UnsupportedKubernetes {
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

/// Parses and checks a Kubernetes version (`1.35.0` or `v1.35.0`).
pub fn parse_kubernetes_version(s: &str) -> Result<KubernetesVersion, VersionError> {
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
    if v.major != 1 || !SUPPORTED_KUBERNETES_MINORS.contains(&v.minor) {
        return Err(VersionError::UnsupportedKubernetes { got: v.to_string() });
    }
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
        for bad in ["v1.11.5", "v1.13.0", "latest", "", "v1.12"] {
            assert!(parse_talos_version(bad).is_err(), "{bad}");
        }
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
