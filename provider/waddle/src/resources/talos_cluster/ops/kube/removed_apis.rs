//! API versions that a Kubernetes minor release stops serving, for the pre-check of a
//! Kubernetes upgrade (what `talosctl upgrade-k8s` checks before it starts).
//!
//! Facts from the Kubernetes "Deprecated API Migration Guide", section "Removed APIs by
//! release" (<https://kubernetes.io/docs/reference/using-api/deprecation-guide/>), from v1.25
//! on (Talos v1.12 runs Kubernetes 1.30 to 1.35, so older removals cannot be crossed any
//! more; v1.33 to v1.35 removed no API version).
//!
//! The guide also says that every persisted object stays readable through the new version:
//! an object a removed version merely *can* show is not at risk, so the check looks for
//! objects *written* through a removed version — a `metadata.managedFields` entry with that
//! `apiVersion` (every writer since Kubernetes 1.18 leaves one) or a `kubectl apply`
//! last-applied configuration naming it. Those are the manifests and clients that break.

/// One removed group/version and its resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// The minor release that no longer serves it.
    pub removed_in: u32,
    /// API group (`""`: the core group).
    pub group: &'static str,
    pub version: &'static str,
    /// Plural resource names.
    pub resources: &'static [&'static str],
}

/// The removals, oldest first.
pub const REMOVED: &[Removed] = &[
    // v1.25
    Removed {
        removed_in: 25,
        group: "batch",
        version: "v1beta1",
        resources: &["cronjobs"],
    },
    Removed {
        removed_in: 25,
        group: "discovery.k8s.io",
        version: "v1beta1",
        resources: &["endpointslices"],
    },
    Removed {
        removed_in: 25,
        group: "events.k8s.io",
        version: "v1beta1",
        resources: &["events"],
    },
    Removed {
        removed_in: 25,
        group: "autoscaling",
        version: "v2beta1",
        resources: &["horizontalpodautoscalers"],
    },
    Removed {
        removed_in: 25,
        group: "policy",
        version: "v1beta1",
        resources: &["poddisruptionbudgets", "podsecuritypolicies"],
    },
    Removed {
        removed_in: 25,
        group: "node.k8s.io",
        version: "v1beta1",
        resources: &["runtimeclasses"],
    },
    // v1.26
    Removed {
        removed_in: 26,
        group: "flowcontrol.apiserver.k8s.io",
        version: "v1beta1",
        resources: &["flowschemas", "prioritylevelconfigurations"],
    },
    Removed {
        removed_in: 26,
        group: "autoscaling",
        version: "v2beta2",
        resources: &["horizontalpodautoscalers"],
    },
    // v1.27
    Removed {
        removed_in: 27,
        group: "storage.k8s.io",
        version: "v1beta1",
        resources: &["csistoragecapacities"],
    },
    // v1.29
    Removed {
        removed_in: 29,
        group: "flowcontrol.apiserver.k8s.io",
        version: "v1beta2",
        resources: &["flowschemas", "prioritylevelconfigurations"],
    },
    // v1.32
    Removed {
        removed_in: 32,
        group: "flowcontrol.apiserver.k8s.io",
        version: "v1beta3",
        resources: &["flowschemas", "prioritylevelconfigurations"],
    },
];

/// The removals an upgrade from minor `current` to minor `target` crosses.
pub fn removed_between(current: u32, target: u32) -> impl Iterator<Item = &'static Removed> {
    REMOVED
        .iter()
        .filter(move |r| r.removed_in > current && r.removed_in <= target)
}

/// Whether object `o` was written through `group_version` (a managed-fields entry or the
/// last-applied configuration of `kubectl apply`).
pub fn written_in(o: &serde_json::Value, group_version: &str) -> bool {
    let md = &o["metadata"];
    let managed = md["managedFields"]
        .as_array()
        .is_some_and(|m| m.iter().any(|f| f["apiVersion"] == group_version));
    let applied = md["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        .is_some_and(|a| a["apiVersion"] == group_version);
    managed || applied
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn removals_crossed_and_objects_written_in_them() {
        let to32: Vec<_> = removed_between(31, 32).map(|r| r.version).collect();
        assert_eq!(to32, ["v1beta3"]);
        assert_eq!(removed_between(32, 35).count(), 0);
        assert_eq!(removed_between(30, 31).count(), 0);
        let gv = "flowcontrol.apiserver.k8s.io/v1beta3";
        let by_v1 = json!({"metadata": {"managedFields": [{"apiVersion": "flowcontrol.apiserver.k8s.io/v1"}]}});
        assert!(!written_in(&by_v1, gv));
        let by_old = json!({"metadata": {"managedFields": [{"apiVersion": gv}]}});
        assert!(written_in(&by_old, gv));
        let applied = json!({"metadata": {"annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": format!("{{\"apiVersion\":\"{gv}\"}}")}}});
        assert!(written_in(&applied, gv));
    }
}
