//! Shared test helpers: one generated secrets bundle per test binary, the official Talos
//! v1.12 and v1.13 schemas, and the original three-node layout.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use time::macros::datetime;
use waddle_talos::secrets::FixedClock;
use waddle_talos::{ClusterSpec, NodeSpec, Role, SecretsBundle};

/// The instant used for every generated bundle in tests.
pub const NOW: time::OffsetDateTime = datetime!(2026-01-15 12:00:00 UTC);

/// A real bundle (RSA-4096 keygen runs once per test binary).
pub fn bundle() -> &'static SecretsBundle {
    static B: OnceLock<SecretsBundle> = OnceLock::new();
    B.get_or_init(|| SecretsBundle::generate(&FixedClock(NOW)).expect("generate bundle"))
}

/// The repository root (the directory holding the workspace Cargo.toml).
pub fn repo_root() -> PathBuf {
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let cargo = dir.join("Cargo.toml");
        if cargo.exists()
            && std::fs::read_to_string(&cargo)
                .map(|s| s.contains("[workspace]"))
                .unwrap_or(false)
        {
            return dir;
        }
        assert!(dir.pop(), "workspace root not found");
    }
}

/// The official Talos v1.12 schema (test data at ../shared/specs from the repo root).
pub fn schema() -> &'static serde_json::Value {
    schema_for("v1.12")
}

/// The official Talos schema of a minor release (`v1.12`, `v1.13`), read from
/// `../shared/specs/talos-<minor>/config.schema.json`.
pub fn schema_for(minor: &str) -> &'static serde_json::Value {
    static S: OnceLock<std::sync::Mutex<HashMap<String, &'static serde_json::Value>>> =
        OnceLock::new();
    let mut m = S.get_or_init(Default::default).lock().unwrap();
    if let Some(v) = m.get(minor) {
        return v;
    }
    let path = repo_root().join(format!("../shared/specs/talos-{minor}/config.schema.json"));
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let v: &'static serde_json::Value = Box::leak(Box::new(
        serde_json::from_str(&text).expect("schema is JSON"),
    ));
    m.insert(minor.to_string(), v);
    v
}

/// Name of the `$defs` entry for a document: by `kind`, or `v1alpha1.Config` without kind.
/// `None` when the schema has no such kind.
pub fn def_in(schema: &serde_json::Value, doc: &serde_json::Value) -> Option<String> {
    let Some(kind) = doc.get("kind").and_then(|k| k.as_str()) else {
        return Some("v1alpha1.Config".to_string());
    };
    let defs = schema["$defs"].as_object().unwrap();
    for (name, def) in defs {
        let kinds = def["properties"]["kind"]["enum"].as_array();
        if kinds.is_some_and(|ks| ks.iter().any(|k| k == kind)) {
            return Some(name.clone());
        }
    }
    None
}

/// Name of the v1.12 `$defs` entry for a document (panics on an unknown kind).
pub fn def_for(doc: &serde_json::Value) -> String {
    def_in(schema(), doc).unwrap_or_else(|| panic!("no $defs entry for {doc}"))
}

fn validator(minor: &str, def: &str) -> &'static jsonschema::Validator {
    static V: OnceLock<std::sync::Mutex<HashMap<String, &'static jsonschema::Validator>>> =
        OnceLock::new();
    let map = V.get_or_init(Default::default);
    let key = format!("{minor}/{def}");
    if let Some(v) = map.lock().unwrap().get(&key) {
        return v;
    }
    let s = schema_for(minor);
    let wrapper = serde_json::json!({
        "$schema": s["$schema"],
        "$defs": s["$defs"],
        "$ref": format!("#/$defs/{def}"),
    });
    let v: &'static jsonschema::Validator = Box::leak(Box::new(
        jsonschema::draft202012::new(&wrapper).expect("schema compiles"),
    ));
    map.lock().unwrap().insert(key, v);
    v
}

/// Validates every document of a multi-document config against the official v1.12 schema.
/// Returns the list of errors (empty = valid).
pub fn schema_errors(multidoc: &str) -> Vec<String> {
    schema_errors_for("v1.12", multidoc)
}

/// Validates every document of a multi-document config against the official schema of a
/// Talos minor release (`v1.12`, `v1.13`). Returns the list of errors (empty = valid); a
/// document kind the release does not know is an error.
pub fn schema_errors_for(minor: &str, multidoc: &str) -> Vec<String> {
    let mut errors = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(multidoc).enumerate() {
        let doc: serde_json::Value = serde::Deserialize::deserialize(de).expect("document is YAML");
        if doc.is_null() {
            continue;
        }
        let Some(def) = def_in(schema_for(minor), &doc) else {
            errors.push(format!(
                "doc {i}: kind {} unknown to Talos {minor}",
                doc["kind"]
            ));
            continue;
        };
        for e in validator(minor, &def).iter_errors(&doc) {
            errors.push(format!(
                "doc {i} ({minor} {def}) at {}: {e}",
                e.instance_path()
            ));
        }
    }
    errors
}

/// The original layout: 3 control planes at 10.10.0.10-.12/24, gateway .1, VIP .20.
pub fn original_spec() -> ClusterSpec {
    let mut spec = ClusterSpec::new("waddle", "https://10.10.0.20:6443");
    spec.vip = Some("10.10.0.20".into());
    spec.installer_image = Some(
        "factory.talos.dev/installer/ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515:v1.12.11".into(),
    );
    for (i, name) in ["cp1", "cp2", "cp3"].iter().enumerate() {
        let mut n = NodeSpec::new(Role::ControlPlane, &format!("10.10.0.{}/24", 10 + i));
        n.gateway = Some("10.10.0.1".into());
        n.mac = Some(format!("bc:24:11:00:00:{:02x}", 10 + i));
        spec.nodes.insert((*name).to_string(), n);
    }
    spec
}

/// The original layout plus one worker.
pub fn spec_with_worker() -> ClusterSpec {
    let mut spec = original_spec();
    let mut w = NodeSpec::new(Role::Worker, "10.10.0.30/24");
    w.gateway = Some("10.10.0.1".into());
    w.interface = Some("ens18".into());
    spec.nodes.insert("worker1".into(), w);
    spec
}
