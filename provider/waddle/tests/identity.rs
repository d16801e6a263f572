//! Resource identity (Terraform >= 1.12): every resource declares one, and importing by
//! identity gives exactly what importing by the ID it stands for gives, identity included.
//! Imports here make no API call (the read after an import does), so no server is needed.

use waddle_framework::prelude::*;
use waddle_framework::testing::{Harness, StateResult};
use waddle_provider::provider::{schema as provider_schema, NoEnv};
use waddle_provider::WaddleProvider;

async fn harness() -> Harness {
    let h = Harness::new(WaddleProvider::with_env(NoEnv));
    let mut cfg = provider_schema().null_value();
    cfg.set_path(&AttributePath::attr("node"), Value::from("pve"));
    let d = h.configure(cfg).await;
    assert!(!d.has_errors(), "{d:?}");
    h
}

fn ok(what: &str, r: &StateResult) {
    assert!(!r.diagnostics.has_errors(), "{what}: {:?}", r.diagnostics);
    assert!(!r.state.is_null(), "{what}: a state");
}

fn obj(parts: &[(&str, Value)]) -> Value {
    Value::object(parts.iter().map(|(k, v)| (*k, v.clone())))
}

/// Import by ID, then by the identity it reports, then by a hand-written identity: the same
/// state and identity each time.
async fn same_both_ways(h: &Harness, ty: &str, id: &str, identity: &Value) {
    let by_id = h.import(ty, id, None).await;
    ok(&format!("{ty} by ID {id:?}"), &by_id);
    assert_eq!(
        &by_id.identity, identity,
        "{ty}: identity of the import by ID"
    );
    let by_identity = h.import(ty, "", Some(identity)).await;
    ok(&format!("{ty} by identity"), &by_identity);
    assert_eq!(by_identity.state, by_id.state, "{ty}: the same state");
    assert_eq!(
        by_identity.identity, by_id.identity,
        "{ty}: the same identity"
    );
}

#[tokio::test]
async fn every_resource_declares_an_identity_with_required_parts() {
    let h = harness().await;
    for r in waddle_provider::resources::all() {
        let ty = r.type_name().to_string();
        let s = h
            .identity_schema(&ty)
            .await
            .unwrap_or_else(|| panic!("{ty} declares no resource identity"));
        assert!(
            s.identity_attributes.iter().any(|a| a.required_for_import),
            "{ty}: at least one part is required to import"
        );
        for a in &s.identity_attributes {
            assert!(!a.description.is_empty(), "{ty}.{}: described", a.name);
            assert_ne!(
                a.required_for_import, a.optional_for_import,
                "{ty}.{}",
                a.name
            );
        }
    }
}

#[tokio::test]
async fn network_imports_by_identity() {
    let h = harness().await;
    let ident = obj(&[("zone", "waddle".into()), ("vnet", "vmbr1".into())]);
    same_both_ways(&h, "waddle_network", "waddle/vmbr1", &ident).await;
    let bad = obj(&[("zone", "waddle".into()), ("vnet", Value::Null)]);
    let r = h.import("waddle_network", "", Some(&bad)).await;
    assert!(r.diagnostics.has_errors());
    assert!(format!("{:?}", r.diagnostics).contains("`vnet`"));
}

#[tokio::test]
async fn vm_backed_resources_import_by_identity() {
    let h = harness().await;
    let ident = obj(&[("node", "pve".into()), ("vmid", Value::from(120i64))]);
    same_both_ways(&h, "waddle_sni_proxy", "pve/120", &ident).await;
    // Without the node, the import ID is the VMID alone.
    let r = h
        .import(
            "waddle_sni_proxy",
            "",
            Some(&obj(&[
                ("node", Value::Null),
                ("vmid", Value::from(121i64)),
            ])),
        )
        .await;
    ok("sni_proxy by vmid", &r);
    assert_eq!(r.state.get_attr("vmid").and_then(Value::as_i64), Some(121));
}

#[tokio::test]
async fn host_firewall_imports_by_identity() {
    let h = harness().await;
    let ident = obj(&[("node", "pve".into()), ("ipset", "operators".into())]);
    same_both_ways(&h, "waddle_host_firewall", "pve/operators", &ident).await;
    let ident = obj(&[("node", "pve".into()), ("ipset", Value::Null)]);
    same_both_ways(&h, "waddle_host_firewall", "pve", &ident).await;
}

#[tokio::test]
async fn talos_cluster_imports_by_identity_with_its_secrets_file() {
    let h = harness().await;
    let dir = std::env::temp_dir().join(format!("waddle-identity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("secrets.yaml");
    let bundle = waddle_talos::SecretsBundle::generate(&waddle_talos::SystemClock).unwrap();
    std::fs::write(&path, bundle.to_yaml().unwrap()).unwrap();
    let path = path.to_str().unwrap().to_string();
    let ty = "waddle_talos_cluster";

    let by_id = h.import(ty, &format!("waddle:{path}"), None).await;
    ok("talos by ID", &by_id);
    // The secrets file is needed to import and never kept: the state's identity names the
    // cluster only.
    let kept = obj(&[
        ("cluster_name", "waddle".into()),
        ("secrets_file", Value::Null),
    ]);
    assert_eq!(by_id.identity, kept);
    let given = obj(&[
        ("cluster_name", "waddle".into()),
        ("secrets_file", path.as_str().into()),
    ]);
    let by_identity = h.import(ty, "", Some(&given)).await;
    ok("talos by identity", &by_identity);
    assert_eq!(by_identity.state, by_id.state);
    assert_eq!(by_identity.identity, kept);
    // Without the secrets file, a clear refusal.
    let r = h.import(ty, "", Some(&kept)).await;
    assert!(r.state.is_null());
    assert!(
        format!("{:?}", r.diagnostics).contains("secrets_file"),
        "{:?}",
        r.diagnostics
    );
    std::fs::remove_dir_all(&dir).ok();
}
