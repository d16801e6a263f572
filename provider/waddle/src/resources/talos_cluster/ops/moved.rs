//! `moved` from the siderolabs Talos provider's `talos_machine_secrets` (Terraform >= 1.8,
//! OpenTofu >= 1.8): the secrets bundle moves into `waddle_talos_cluster` without ever being
//! written to disk, so a cluster made with that provider keeps its identity (CAs, tokens,
//! cluster id) under waddle.
//!
//! ```hcl
//! moved {
//!   from = talos_machine_secrets.this
//!   to   = waddle_talos_cluster.this
//! }
//! ```
//!
//! The source state holds the secrets only. The moved state is what an import holds minus the
//! cluster name (`""`): the plan sets the configured name in place, and, as after an import
//! that finds no VM of the cluster, the apply adopts the configured nodes (a VM carrying the
//! node's mark is kept; a node answering the Talos API with these credentials is re-configured
//! in place). Source layouts: schema version 1 (`machine_secrets` an object, its certificates
//! and keys base64 PEM as in `secrets.yaml`) and version 0 (`machine_secrets` the
//! `secrets.yaml` text).

use serde_json::{json, Value as Json};
use waddle_framework::prelude::*;
use waddle_talos::SecretsBundle;

use super::super::{to_value, ClusterModel};

/// The source resource type this target accepts.
pub const SOURCE_TYPE: &str = "talos_machine_secrets";

/// Whether `address` is the siderolabs Talos provider (`<registry host>/siderolabs/talos`).
pub fn is_siderolabs_talos(address: &str) -> bool {
    address.trim_end_matches('/').ends_with("/siderolabs/talos")
}

/// The moved state, `None` without a diagnostic when the source is not supported (the
/// framework then names it).
pub fn move_state(req: &MoveStateRequest, diags: &mut Diagnostics) -> Option<Value> {
    if req.source_type_name != SOURCE_TYPE || !is_siderolabs_talos(&req.source_provider_address) {
        return None;
    }
    let yaml = match secrets_yaml(&req.source_state, req.source_schema_version) {
        Ok(y) => y,
        Err(e) => {
            diags.error(
                "Unable to move talos_machine_secrets",
                format!(
                    "{e} (source schema version {}, provider {})",
                    req.source_schema_version, req.source_provider_address
                ),
            );
            return None;
        }
    };
    let bundle = match SecretsBundle::from_yaml(&yaml) {
        Ok(b) => b,
        Err(e) => {
            diags.error("Unable to move talos_machine_secrets", e.to_string());
            return None;
        }
    };
    let m = ClusterModel {
        id: Some(String::new()),
        cluster_name: String::new(),
        machine_secrets: Some(bundle.to_yaml().ok()?),
        bootstrapped: Some(true),
        ..Default::default()
    };
    to_value(&m, diags)
}

/// Why a `talos_machine_secrets` state cannot be read.
#[derive(Debug, thiserror::Error)]
enum MovedError {
    #[error("the source state has no machine_secrets")]
    NoSecrets,
    #[error("machine_secrets.{0}")]
    Missing(String),
    #[error("machine_secrets.{0} is not a string")]
    NotAString(String),
    #[error("machine_secrets has an unknown layout for schema version {0}")]
    Layout(i64),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

/// The `secrets.yaml` text of a `talos_machine_secrets` state (JSON is YAML).
fn secrets_yaml(state: &Json, version: i64) -> Result<String, MovedError> {
    let ms = state.get("machine_secrets").ok_or(MovedError::NoSecrets)?;
    match (version, ms) {
        (0, Json::String(text)) => Ok(text.clone()),
        (1, Json::Object(_)) => {
            let s = |path: &[&str]| -> Result<Json, MovedError> {
                let mut v = ms;
                for p in path {
                    v = v
                        .get(*p)
                        .ok_or_else(|| MovedError::Missing(path.join(".")))?;
                }
                match v {
                    Json::String(_) => Ok(v.clone()),
                    Json::Null => Ok(Json::Null),
                    _ => Err(MovedError::NotAString(path.join("."))),
                }
            };
            let pair = |name: &str| -> Result<Json, MovedError> {
                Ok(
                    json!({ "crt": s(&["certs", name, "cert"])?, "key": s(&["certs", name, "key"])? }),
                )
            };
            let wire = json!({
                "cluster": { "id": s(&["cluster", "id"])?, "secret": s(&["cluster", "secret"])? },
                "secrets": {
                    "bootstraptoken": s(&["secrets", "bootstrap_token"])?,
                    "secretboxencryptionsecret": s(&["secrets", "secretbox_encryption_secret"])?,
                    "aescbcencryptionsecret": s(&["secrets", "aescbc_encryption_secret"]).unwrap_or(Json::Null),
                },
                "trustdinfo": { "token": s(&["trustdinfo", "token"])? },
                "certs": {
                    "etcd": pair("etcd")?,
                    "k8s": pair("k8s")?,
                    "k8saggregator": pair("k8s_aggregator")?,
                    "k8sserviceaccount": { "key": s(&["certs", "k8s_serviceaccount", "key"])? },
                    "os": pair("os")?,
                },
            });
            Ok(serde_json::to_string(&wire)?)
        }
        _ => Err(MovedError::Layout(version)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use waddle_talos::SystemClock;

    /// A `talos_machine_secrets` v1 state holding `b` (the siderolabs provider's layout).
    fn source_v1(b: &SecretsBundle) -> Json {
        let w: Json = serde_yaml_ng::from_str(&b.to_yaml().unwrap()).unwrap();
        let pair = |k: &str| json!({ "cert": w["certs"][k]["crt"], "key": w["certs"][k]["key"] });
        json!({
            "id": "machine_secrets",
            "talos_version": "v1.12",
            "machine_secrets": {
                "cluster": w["cluster"],
                "secrets": {
                    "bootstrap_token": w["secrets"]["bootstraptoken"],
                    "secretbox_encryption_secret": w["secrets"]["secretboxencryptionsecret"],
                    "aescbc_encryption_secret": null,
                },
                "trustdinfo": w["trustdinfo"],
                "certs": {
                    "etcd": pair("etcd"),
                    "k8s": pair("k8s"),
                    "k8s_aggregator": pair("k8saggregator"),
                    "k8s_serviceaccount": { "key": w["certs"]["k8sserviceaccount"]["key"] },
                    "os": pair("os"),
                },
            },
            "client_configuration": { "ca_certificate": "x", "client_certificate": "y", "client_key": "z" },
        })
    }

    fn req(state: Json, version: i64, address: &str, ty: &str) -> MoveStateRequest {
        MoveStateRequest {
            source_provider_address: address.into(),
            source_type_name: ty.into(),
            source_schema_version: version,
            source_state: state,
            source_identity: None,
        }
    }

    fn moved_secrets(v: &Value) -> SecretsBundle {
        let text = v
            .get_attr("machine_secrets")
            .and_then(Value::as_str)
            .unwrap();
        SecretsBundle::from_yaml(text).unwrap()
    }

    #[test]
    fn v1_and_v0_sources_keep_every_secret() {
        let b = SecretsBundle::generate(&SystemClock).unwrap();
        for addr in [
            "registry.terraform.io/siderolabs/talos",
            "registry.opentofu.org/siderolabs/talos",
        ] {
            let mut d = Diagnostics::new();
            let v = move_state(&req(source_v1(&b), 1, addr, SOURCE_TYPE), &mut d).unwrap();
            assert!(!d.has_errors(), "{d:?}");
            assert_eq!(moved_secrets(&v).to_yaml().unwrap(), b.to_yaml().unwrap());
            assert_eq!(v.get_attr("cluster_name").and_then(Value::as_str), Some(""));
            assert_eq!(
                v.get_attr("bootstrapped").and_then(Value::as_bool),
                Some(true)
            );
        }
        let v0 =
            json!({ "id": "x", "talos_version": "v1.5", "machine_secrets": b.to_yaml().unwrap() });
        let mut d = Diagnostics::new();
        let v = move_state(
            &req(v0, 0, "registry.terraform.io/siderolabs/talos", SOURCE_TYPE),
            &mut d,
        )
        .unwrap();
        assert_eq!(moved_secrets(&v).to_yaml().unwrap(), b.to_yaml().unwrap());
    }

    #[test]
    fn other_sources_are_not_taken_and_broken_ones_are_refused() {
        let b = SecretsBundle::generate(&SystemClock).unwrap();
        let mut d = Diagnostics::new();
        let other_type = req(
            source_v1(&b),
            1,
            "registry.terraform.io/siderolabs/talos",
            "talos_machine_configuration_apply",
        );
        assert!(move_state(&other_type, &mut d).is_none());
        let other_provider = req(
            source_v1(&b),
            1,
            "registry.terraform.io/example/talos",
            SOURCE_TYPE,
        );
        assert!(move_state(&other_provider, &mut d).is_none());
        assert!(
            d.is_empty(),
            "not ours: no diagnostic, the framework names the source"
        );

        let mut broken = source_v1(&b);
        broken["machine_secrets"]["certs"]
            .as_object_mut()
            .unwrap()
            .remove("os");
        let r = move_state(
            &req(
                broken,
                1,
                "registry.terraform.io/siderolabs/talos",
                SOURCE_TYPE,
            ),
            &mut d,
        );
        assert!(r.is_none());
        assert!(
            format!("{d:?}").contains("machine_secrets.certs.os"),
            "{d:?}"
        );
        let mut d = Diagnostics::new();
        let v2 = req(
            source_v1(&b),
            2,
            "registry.terraform.io/siderolabs/talos",
            SOURCE_TYPE,
        );
        assert!(move_state(&v2, &mut d).is_none());
        assert!(format!("{d:?}").contains("schema version 2"), "{d:?}");
    }
}
