//! Config patches, as `talosctl --config-patch` accepts them:
//!
//! * **strategic merge**: one or more YAML documents. A document without `kind` is merged
//!   into the v1alpha1 document; a document with `kind` (and `name` where the kind has one)
//!   is merged into the matching document, or added when there is none. Maps merge deeply,
//!   lists are appended (subnet lists are replaced), scalars replace. `$patch: delete` on a
//!   map removes that key, or on a whole document removes the document.
//! * **JSON6902** (RFC 6902): a YAML/JSON list of operations (`add`, `remove`, `replace`,
//!   `move`, `copy`, `test`), applied to the v1alpha1 document only.

use serde_yaml_ng::{Mapping, Value};

use crate::issue::{AttrPath, Issue};
use crate::spec::ClusterSpec;
use crate::structure;
use crate::yaml::{self, get, get_str};

/// A parsed config patch.
#[derive(Clone, Debug, PartialEq)]
pub enum Patch {
    /// Strategic-merge documents.
    StrategicMerge(Vec<Value>),
    /// RFC 6902 operations.
    Json6902(json_patch::Patch),
}

/// Why a patch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// Not YAML / JSON.
    #[error("not valid YAML: {0}")]
    Syntax(String),
    /// Empty.
    #[error("the patch is empty")]
    Empty,
    /// Neither a list of JSON6902 operations nor map documents.
    #[error("{0}")]
    Shape(String),
    /// Applying it failed.
    #[error("{0}")]
    Apply(String),
}

const DELETE: &str = "$patch";

/// Parses a patch (strategic merge YAML or JSON6902).
pub fn parse(text: &str) -> Result<Patch, PatchError> {
    let docs = yaml::parse_multidoc(text).map_err(PatchError::Syntax)?;
    if docs.is_empty() {
        return Err(PatchError::Empty);
    }
    if docs.iter().any(Value::is_sequence) {
        if docs.len() != 1 {
            return Err(PatchError::Shape(
                "a JSON6902 patch must be a single list of operations".to_string(),
            ));
        }
        let json = yaml::to_json(&docs[0]).map_err(PatchError::Shape)?;
        let ops: json_patch::Patch = serde_json::from_value(json).map_err(|e| {
            PatchError::Shape(format!(
                "invalid JSON6902 operation (each needs op, path and value/from as required): {e}"
            ))
        })?;
        if ops.0.is_empty() {
            return Err(PatchError::Empty);
        }
        return Ok(Patch::Json6902(ops));
    }
    for (i, d) in docs.iter().enumerate() {
        if !d.is_mapping() {
            return Err(PatchError::Shape(format!(
                "document {} of the patch is not a map (a strategic merge patch is YAML maps, a JSON6902 patch a list of operations)",
                i + 1
            )));
        }
        if let Some(k) = get(d, "kind") {
            if !k.is_string() {
                return Err(PatchError::Shape(format!(
                    "document {} has a non-string kind",
                    i + 1
                )));
            }
        }
    }
    Ok(Patch::StrategicMerge(docs))
}

fn is_delete(v: &Value) -> bool {
    get_str(v, DELETE) == Some("delete")
}

fn replaces_lists(key: &str) -> bool {
    matches!(
        key,
        "podSubnets" | "serviceSubnets" | "validSubnets" | "advertisedSubnets" | "listenSubnets"
    )
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Mapping(m) => {
            let mut out = Mapping::new();
            for (k, val) in m {
                if k.as_str() == Some(DELETE) {
                    continue;
                }
                out.insert(k.clone(), strip_directives(val));
            }
            Value::Mapping(out)
        }
        Value::Sequence(s) => Value::Sequence(s.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// Deep-merges `src` into `dst`.
fn merge(dst: &mut Value, src: &Value) {
    match (dst, src) {
        (Value::Mapping(d), Value::Mapping(s)) => {
            for (k, v) in s {
                if k.as_str() == Some(DELETE) {
                    continue;
                }
                if is_delete(v) {
                    d.remove(k);
                    continue;
                }
                let key = k.as_str().unwrap_or_default().to_string();
                match d.get_mut(k) {
                    Some(existing @ Value::Mapping(_)) if v.is_mapping() => merge(existing, v),
                    Some(Value::Sequence(existing)) if v.is_sequence() && !replaces_lists(&key) => {
                        if let Value::Sequence(add) = strip_directives(v) {
                            existing.extend(add);
                        }
                    }
                    _ => {
                        d.insert(k.clone(), strip_directives(v));
                    }
                }
            }
        }
        (d, s) => *d = strip_directives(s),
    }
}

fn same_document(a: &Value, b: &Value) -> bool {
    get_str(a, "kind") == get_str(b, "kind") && get_str(a, "name") == get_str(b, "name")
}

/// Applies one patch to a set of documents.
pub fn apply(mut docs: Vec<Value>, patch: &Patch) -> Result<Vec<Value>, PatchError> {
    match patch {
        Patch::Json6902(ops) => {
            let idx = docs
                .iter()
                .position(|d| get(d, "kind").is_none())
                .ok_or_else(|| PatchError::Apply("there is no v1alpha1 document".to_string()))?;
            let mut json = yaml::to_json(&docs[idx]).map_err(PatchError::Apply)?;
            json_patch::patch(&mut json, ops)
                .map_err(|e| PatchError::Apply(format!("JSON6902 patch failed: {e}")))?;
            docs[idx] = yaml::from_json(&json);
            Ok(docs)
        }
        Patch::StrategicMerge(pdocs) => {
            for p in pdocs {
                let target = docs.iter().position(|d| same_document(d, p));
                let is_v1 = get(p, "kind").is_none();
                if is_delete(p) {
                    if is_v1 {
                        return Err(PatchError::Apply(
                            "the v1alpha1 document can't be deleted".to_string(),
                        ));
                    }
                    match target {
                        Some(i) => {
                            docs.remove(i);
                        }
                        None => {
                            return Err(PatchError::Apply(format!(
                                "nothing to delete: there is no {} document",
                                structure::document_id(p)
                            )))
                        }
                    }
                    continue;
                }
                match target {
                    Some(i) => merge(&mut docs[i], p),
                    None if is_v1 => {
                        return Err(PatchError::Apply(
                            "there is no v1alpha1 document".to_string(),
                        ))
                    }
                    None => docs.push(strip_directives(p)),
                }
            }
            Ok(docs)
        }
    }
}

/// Applies the cluster-wide then the node's patches to `docs`, checking the structure after
/// every patch. The first failure is reported at the offending patch's attribute path.
pub(crate) fn apply_all(
    spec: &ClusterSpec,
    node_name: &str,
    mut docs: Vec<Value>,
) -> Result<Vec<Value>, Issue> {
    let node = spec
        .nodes
        .get(node_name)
        .ok_or_else(|| Issue::error(AttrPath::node(node_name), "unknown node"))?;
    if let Err(e) = structure::check_documents(&docs, spec.contract()) {
        return Err(Issue::error(
            AttrPath::node(node_name),
            format!("generated configuration is invalid (bug): {e}"),
        ));
    }
    let patches = spec
        .config_patches
        .iter()
        .enumerate()
        .map(|(i, p)| (AttrPath::root("config_patches").index(i), p))
        .chain(
            node.config_patches
                .iter()
                .enumerate()
                .map(|(i, p)| (AttrPath::node(node_name).attr("config_patches").index(i), p)),
        );
    let role = node.role.as_str();
    for (path, text) in patches {
        let patch = parse(text)
            .map_err(|e| Issue::error(path.clone(), format!("invalid config patch: {e}")))?;
        docs = apply(docs, &patch).map_err(|e| {
            Issue::error(path.clone(), format!("config patch can't be applied: {e}"))
        })?;
        structure::check_documents(&docs, spec.contract()).map_err(|e| {
            Issue::error(
                path.clone(),
                format!("config patch breaks the machine configuration: {e}"),
            )
        })?;
        let v1 = docs.iter().find(|d| get(d, "kind").is_none());
        let machine_type = v1
            .and_then(|d| get(d, "machine"))
            .and_then(|m| get_str(m, "type"));
        if machine_type != Some(role) {
            return Err(Issue::error(
                path,
                format!(
                    "config patch changes machine.type (the node's role is {role}); change the node's role instead"
                ),
            ));
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> Vec<Value> {
        yaml::parse_multidoc(
            "version: v1alpha1\nmachine:\n  type: worker\n  certSANs: [a]\n  install: {disk: /dev/sda, wipe: false}\ncluster:\n  network:\n    podSubnets: [10.244.0.0/16]\n---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: n1\n---\napiVersion: v1alpha1\nkind: LinkConfig\nname: net0\n",
        )
        .unwrap()
    }

    #[test]
    fn strategic_merge_maps_lists_and_documents() {
        let p = parse("machine:\n  certSANs: [b]\n  install:\n    disk: /dev/vda\ncluster:\n  network:\n    podSubnets: [10.100.0.0/16]\n---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: renamed\n---\napiVersion: v1alpha1\nkind: LinkConfig\nname: net1\nup: true\n").unwrap();
        let out = apply(docs(), &p).unwrap();
        let text = yaml::to_multidoc(&out).unwrap();
        assert!(text.contains("  - a\n  - b\n"), "{text}");
        assert!(text.contains("disk: /dev/vda"), "{text}");
        assert!(text.contains("wipe: false"), "{text}");
        assert!(
            text.contains("- 10.100.0.0/16") && !text.contains("10.244.0.0/16"),
            "{text}"
        );
        assert!(text.contains("hostname: renamed") && !text.contains("hostname: n1"));
        assert_eq!(out.len(), 4, "LinkConfig net1 is added beside net0");
    }

    #[test]
    fn delete_directives() {
        let p = parse("machine:\n  install:\n    $patch: delete\n---\napiVersion: v1alpha1\nkind: LinkConfig\nname: net0\n$patch: delete\n").unwrap();
        let out = apply(docs(), &p).unwrap();
        let text = yaml::to_multidoc(&out).unwrap();
        assert!(!text.contains("install"), "{text}");
        assert!(!text.contains("LinkConfig"), "{text}");
        let bad =
            parse("apiVersion: v1alpha1\nkind: LinkConfig\nname: nope\n$patch: delete\n").unwrap();
        assert!(matches!(apply(docs(), &bad), Err(PatchError::Apply(_))));
    }

    #[test]
    fn json6902() {
        let p = parse("- op: replace\n  path: /machine/install/disk\n  value: /dev/nvme0n1\n- op: add\n  path: /machine/certSANs/-\n  value: c\n- op: remove\n  path: /cluster/network\n").unwrap();
        assert!(matches!(p, Patch::Json6902(_)));
        let out = apply(docs(), &p).unwrap();
        let text = yaml::to_multidoc(&out).unwrap();
        assert!(text.contains("disk: /dev/nvme0n1"), "{text}");
        assert!(text.contains("- c\n"), "{text}");
        assert!(!text.contains("podSubnets"), "{text}");
        let missing = parse(r#"[{"op": "remove", "path": "/machine/nope"}]"#).unwrap();
        assert!(matches!(apply(docs(), &missing), Err(PatchError::Apply(_))));
    }

    #[test]
    fn invalid_patches_refused() {
        assert!(matches!(
            parse("machine: [unclosed"),
            Err(PatchError::Syntax(_))
        ));
        assert!(matches!(parse(""), Err(PatchError::Empty)));
        assert!(matches!(parse("[]"), Err(PatchError::Empty)));
        assert!(matches!(
            parse("- op: frobnicate\n  path: /x\n"),
            Err(PatchError::Shape(_))
        ));
        assert!(matches!(
            parse("- op: add\n  value: 1\n"),
            Err(PatchError::Shape(_))
        ));
        assert!(matches!(parse("just a string"), Err(PatchError::Shape(_))));
        assert!(matches!(parse("kind: [x]\n"), Err(PatchError::Shape(_))));
    }
}
