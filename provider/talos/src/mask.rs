//! A machine configuration with every secret masked, safe to show in a plan.
//!
//! Secrets are found by where they are, not by what they are: every string under a key that
//! names a secret (`key`, `token`, `secret`, `password`, `passphrase`, `auth`,
//! `identityToken`, `privateKey`, `presharedKey`, `*EncryptionSecret`, ... — see
//! [`is_secret_key`]) and `cluster.id` of the `v1alpha1` document. Certificates (`crt`) and
//! public keys stay: they are public, and a re-keyed cluster shows as new certificates. A
//! second pass masks any other string that contains one of the secrets found (a token
//! copied into an inline manifest, say). The result depends on the configuration text only,
//! so the configuration read back from a node masks to the same text as the rendered one.
//! Leading comment lines (waddle's inputs line) are kept; other comments are dropped.

use serde_yaml_ng::Value;

use crate::yaml;

/// What a masked value is replaced with.
pub const MASK: &str = "(masked)";

/// Secrets shorter than this are not searched for inside other strings (too many false
/// matches; such short values are not bundle secrets).
const MIN_EMBEDDED: usize = 8;

/// Why a configuration could not be masked.
#[derive(Debug, thiserror::Error)]
pub enum MaskError {
    #[error("the machine configuration is not YAML: {0}")]
    Parse(String),
    #[error("the masked machine configuration could not be written: {0}")]
    Emit(String),
}

/// Whether a string under mapping key `key` is a secret.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    if k == "publickey" {
        return false;
    }
    matches!(
        k.as_str(),
        "key" | "token" | "secret" | "password" | "passphrase" | "auth"
    ) || ["key", "token", "secret", "password", "passphrase"]
        .iter()
        .any(|s| k.ends_with(s))
}

/// The configuration `text` (a multi-document YAML stream) with every secret masked.
pub fn mask_config(text: &str) -> Result<String, MaskError> {
    let mut docs = yaml::parse_multidoc(text).map_err(MaskError::Parse)?;
    let mut found = Vec::new();
    for d in &mut docs {
        let v1alpha1 = yaml::get_str(d, "version") == Some("v1alpha1");
        mask_keys(d, &mut Vec::new(), v1alpha1, &mut found);
    }
    found.retain(|s| s.len() >= MIN_EMBEDDED);
    found.sort();
    found.dedup();
    if !found.is_empty() {
        for d in &mut docs {
            mask_embedded(d, &found);
        }
    }
    let body = yaml::to_multidoc(&docs).map_err(MaskError::Emit)?;
    Ok(format!("{}{body}", leading_comments(text)))
}

/// The comment lines a configuration starts with, each with its newline.
fn leading_comments(text: &str) -> String {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Whether two masked configurations hold the same documents (key order and formatting
/// aside).
pub fn same_masked(a: &str, b: &str) -> bool {
    if leading_comments(a) != leading_comments(b) {
        return false;
    }
    match (yaml::parse_multidoc(a), yaml::parse_multidoc(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

fn mask_keys(v: &mut Value, path: &mut Vec<String>, v1alpha1: bool, found: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m.iter_mut() {
                let Some(key) = k.as_str() else { continue };
                let cluster_id = v1alpha1 && path.len() == 1 && path[0] == "cluster" && key == "id";
                if let (true, Value::String(s)) = (is_secret_key(key) || cluster_id, &*child) {
                    if !s.is_empty() {
                        found.push(s.clone());
                        *child = Value::String(MASK.into());
                    }
                    continue;
                }
                path.push(key.to_string());
                mask_keys(child, path, v1alpha1, found);
                path.pop();
            }
        }
        Value::Sequence(items) => {
            for x in items {
                mask_keys(x, path, v1alpha1, found);
            }
        }
        Value::Tagged(t) => mask_keys(&mut t.value, path, v1alpha1, found),
        _ => {}
    }
}

fn mask_embedded(v: &mut Value, secrets: &[String]) {
    match v {
        Value::String(s) => {
            let mut out = s.clone();
            for secret in secrets {
                if out.contains(secret.as_str()) {
                    out = out.replace(secret.as_str(), MASK);
                }
            }
            *s = out;
        }
        Value::Mapping(m) => {
            for (_, child) in m.iter_mut() {
                mask_embedded(child, secrets);
            }
        }
        Value::Sequence(items) => {
            for x in items {
                mask_embedded(x, secrets);
            }
        }
        Value::Tagged(t) => mask_embedded(&mut t.value, secrets),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{render_node_config, ClusterSpec, NodeSpec, Role, SecretsBundle};

    fn bundle() -> SecretsBundle {
        SecretsBundle::generate(&crate::SystemClock).expect("bundle")
    }

    /// Every secret value of a bundle, as it may appear in a configuration.
    pub(crate) fn secret_values(b: &SecretsBundle) -> Vec<String> {
        let mut out = vec![
            b.cluster_id.clone(),
            b.cluster_secret.clone(),
            b.bootstrap_token.clone(),
            b.trustd_token.clone(),
            b.k8s_service_account_key.clone(),
        ];
        out.extend(b.secretbox_encryption_secret.clone());
        out.extend(b.aescbc_encryption_secret.clone());
        for ca in [&b.etcd_ca, &b.k8s_ca, &b.k8s_aggregator_ca, &b.os_ca] {
            out.push(ca.key.clone());
        }
        out
    }

    fn leaks(text: &str, b: &SecretsBundle) -> Vec<String> {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        secret_values(b)
            .into_iter()
            .flat_map(|s| [b64.encode(s.as_bytes()), s])
            .filter(|s| !s.is_empty() && text.contains(s.as_str()))
            .collect()
    }

    fn spec() -> ClusterSpec {
        let mut s = ClusterSpec::new("mask", "https://10.0.0.10:6443");
        for (name, role, addr) in [
            ("cp1", Role::ControlPlane, "10.0.0.11/24"),
            ("w1", Role::Worker, "10.0.0.21/24"),
        ] {
            let mut n = NodeSpec::new(role, addr);
            n.interface = Some("ens18".into());
            s.nodes.insert(name.into(), n);
        }
        s
    }

    #[test]
    fn no_secret_of_the_bundle_is_left() {
        let b = bundle();
        for node in ["cp1", "w1"] {
            let text = render_node_config(&spec(), &b, node).expect("renders");
            assert!(
                !leaks(&text, &b).is_empty(),
                "{node}: the config holds secrets"
            );
            let masked = mask_config(&text).expect("masks");
            assert_eq!(leaks(&masked, &b), Vec::<String>::new(), "{node}: {masked}");
            assert!(masked.contains(MASK), "{masked}");
            // Public parts stay: the certificates and the structure.
            assert!(masked.contains("crt:"), "{masked}");
            assert!(masked.contains("version: v1alpha1"), "{masked}");
        }
    }

    #[test]
    fn a_changed_input_shows_and_masking_is_stable() {
        let b = bundle();
        let a =
            mask_config(&render_node_config(&spec(), &b, "cp1").expect("renders")).expect("masks");
        let again =
            mask_config(&render_node_config(&spec(), &b, "cp1").expect("renders")).expect("masks");
        assert_eq!(a, again);
        // The masked text masks to itself (a node's configuration read back compares equal).
        assert!(same_masked(&mask_config(&a).expect("masks"), &a));
        let mut s = spec();
        s.kubernetes_version = "1.35.1".into();
        let c = mask_config(&render_node_config(&s, &b, "cp1").expect("renders")).expect("masks");
        assert!(!same_masked(&a, &c));
        assert!(c.contains("v1.35.1") && !a.contains("v1.35.1"), "{c}");
    }

    #[test]
    fn secrets_from_patches_and_copies_are_masked() {
        let text = "# inputs: {\"cluster_name\":\"x\"}\nversion: v1alpha1\nmachine:\n  registries:\n    config:\n      r.example:\n        auth:\n          username: u\n          password: hunter2hunter2\n          auth: dXNlcjpwYXNz\n  network:\n    interfaces:\n      - wireguard:\n          privateKey: cHJpdmF0ZWtleXByaXZhdGVrZXk=\n          peers:\n            - publicKey: cHVibGlja2V5\n  keySize: 4096\ncluster:\n  id: Y2x1c3RlcmlkY2x1c3RlcmlkY2x1c3Rlcg==\n  inlineManifests:\n    - name: x\n      contents: \"token: hunter2hunter2\"\n";
        let m = mask_config(text).expect("masks");
        for s in [
            "hunter2hunter2",
            "dXNlcjpwYXNz",
            "cHJpdmF0ZWtleXByaXZhdGVrZXk=",
            "Y2x1c3RlcmlkY2x1c3RlcmlkY2x1c3Rlcg==",
        ] {
            assert!(!m.contains(s), "{s} left in {m}");
        }
        assert!(m.contains("cHVibGlja2V5"), "public keys stay: {m}");
        assert!(m.contains("username: u"), "{m}");
        assert!(m.contains("keySize: 4096"), "numbers stay: {m}");
        assert!(m.starts_with("# inputs: {\"cluster_name\":\"x\"}\n"), "{m}");
        assert!(same_masked(&mask_config(&m).expect("masks"), &m));
        assert!(!same_masked(&m, &m.replacen("\"x\"", "\"y\"", 1)));
    }

    #[test]
    fn secret_keys() {
        for k in [
            "key",
            "token",
            "secret",
            "secretboxEncryptionSecret",
            "aescbcEncryptionSecret",
            "identityToken",
            "privateKey",
            "presharedKey",
            "password",
            "passphrase",
            "auth",
            "apiToken",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "publicKey",
            "crt",
            "keys",
            "keySize",
            "certSANs",
            "authorizationConfig",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
