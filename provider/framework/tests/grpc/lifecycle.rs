//! A resource's lifecycle through the RPCs: plan, apply, read, write-only values, state
//! upgrades, import, move and identity.

use std::sync::atomic::Ordering;

use waddle_framework::prelude::*;
use waddle_framework::proto::path_from_proto;
use waddle_tfplugin::tfplugin6 as pb;

use super::fixture::{thing_schema, Route, ThingState};
use super::support::{apply, configure, dv, errors, plan, start, thing, ty, undv};

#[tokio::test]
async fn create_update_replace_read_delete_lifecycle() {
    let mut h = start().await;
    configure(&mut h, "px").await;

    // --- create plan: computed unknown, default applied, write-only nulled
    let config = thing(&[
        ("name", Value::from("alpha")),
        ("password", Value::from("hunter2")),
        (
            "routes",
            Value::List(vec![Value::object([
                ("host", Value::from("a")),
                ("port", Value::Null),
            ])]),
        ),
    ]);
    let p = plan(&mut h, &Value::Null, &config, &config).await;
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
    assert!(p.deferred.is_none());
    assert!(p.requires_replace.is_empty());
    let planned = undv(p.planned_state, &ty());
    assert!(planned.get_attr("id").unwrap().is_unknown());
    assert!(planned.get_attr("status").unwrap().is_unknown());
    assert_eq!(planned.get_attr("size").and_then(Value::as_i64), Some(3));
    assert!(
        planned.get_attr("password").unwrap().is_null(),
        "write-only must not be planned"
    );
    assert!(
        p.planned_identity.is_none(),
        "no identity while the id is unknown"
    );

    // --- apply create: the resource sees the password in config, state never holds it
    let a = apply(&mut h, &Value::Null, &config, &planned).await;
    assert!(a.diagnostics.is_empty(), "{:?}", a.diagnostics);
    let state = undv(a.new_state, &ty());
    assert_eq!(h.counters.creates_seen_password.load(Ordering::SeqCst), 1);
    assert!(
        state.get_attr("password").unwrap().is_null(),
        "write-only must not be stored"
    );
    assert_eq!(
        state.get_attr("id").and_then(Value::as_str),
        Some("px-alpha")
    );
    assert_eq!(
        state.get_attr("status").and_then(Value::as_str),
        Some("ready")
    );
    let ident = undv(
        a.new_identity.unwrap().identity_data,
        &Type::object([("id", Type::String)]),
    );
    assert_eq!(
        ident.get_attr("id").and_then(Value::as_str),
        Some("px-alpha")
    );
    // the typed state round-trips
    let typed: ThingState = state.to_typed().unwrap();
    assert_eq!(typed.routes.unwrap()[0].host, "a");

    // --- update plan in place: routes change, id kept via UseStateForUnknown
    let config2 = thing(&[
        ("name", Value::from("alpha")),
        (
            "routes",
            Value::List(vec![Value::object([
                ("host", Value::from("b")),
                ("port", Value::from(8443)),
            ])]),
        ),
    ]);
    let mut proposed = config2.clone();
    for k in ["id", "status", "size"] {
        proposed.set_path(&AttributePath::attr(k), state.get_attr(k).unwrap().clone());
    }
    let p = plan(&mut h, &state, &config2, &proposed).await;
    assert!(p.requires_replace.is_empty());
    let planned2 = undv(p.planned_state, &ty());
    assert_eq!(
        planned2.get_attr("id").and_then(Value::as_str),
        Some("px-alpha")
    );
    assert!(planned2.get_attr("status").unwrap().is_unknown());
    let a = apply(&mut h, &state, &config2, &planned2).await;
    let state2 = undv(a.new_state, &ty());
    assert_eq!(
        state2.get_attr("status").and_then(Value::as_str),
        Some("updated")
    );

    // --- a name change requires replacement
    let mut config3 = config2.clone();
    config3.set_path(&AttributePath::attr("name"), Value::from("beta"));
    let mut proposed3 = proposed.clone();
    proposed3.set_path(&AttributePath::attr("name"), Value::from("beta"));
    let p = plan(&mut h, &state2, &config3, &proposed3).await;
    let rr: Vec<String> = p
        .requires_replace
        .iter()
        .map(|x| path_from_proto(x).to_string())
        .collect();
    assert_eq!(rr, vec!["name"]);

    // --- read: present, then gone -> null state
    let r = h
        .client
        .read_resource(pb::read_resource::Request {
            type_name: "fake_thing".into(),
            current_state: dv(&state2, &ty()),
            private: b"p".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(undv(r.new_state, &ty()), state2);
    assert_eq!(r.private, b"p");
    let mut gone = state2.clone();
    gone.set_path(&AttributePath::attr("name"), Value::from("gone"));
    let r = h
        .client
        .read_resource(pb::read_resource::Request {
            type_name: "fake_thing".into(),
            current_state: dv(&gone, &ty()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(undv(r.new_state, &ty()).is_null());
    assert!(r.deferred.is_none());

    // --- destroy: plan passes through as null, apply calls delete
    let p = plan(&mut h, &state2, &Value::Null, &Value::Null).await;
    assert!(undv(p.planned_state, &ty()).is_null());
    let a = apply(&mut h, &state2, &Value::Null, &Value::Null).await;
    assert!(a.diagnostics.is_empty());
    assert!(undv(a.new_state, &ty()).is_null());
    assert_eq!(h.counters.deletes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn write_only_nulled_even_for_old_clients() {
    let mut h = start().await;
    // An old client sends no capabilities and includes the value in the proposed state.
    let config = thing(&[
        ("name", Value::from("x")),
        ("password", Value::from("hunter2")),
    ]);
    let r = h
        .client
        .plan_resource_change(pb::plan_resource_change::Request {
            type_name: "fake_thing".into(),
            prior_state: dv(&Value::Null, &ty()),
            proposed_new_state: dv(&config, &ty()),
            config: dv(&config, &ty()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let planned = undv(r.planned_state, &ty());
    assert!(planned.get_attr("password").unwrap().is_null());
    // even a planned state that (wrongly) carries the value gives a null new state
    let mut bad_planned = planned.clone();
    bad_planned.set_path(&AttributePath::attr("password"), Value::from("hunter2"));
    let a = apply(&mut h, &Value::Null, &config, &bad_planned).await;
    let st = undv(a.new_state, &ty());
    assert!(st.get_attr("password").unwrap().is_null());
    assert_eq!(
        st.get_attr("id").and_then(Value::as_str),
        Some("unconfigured-x")
    );
}

#[tokio::test]
async fn upgrade_state_v0_to_v1_from_raw_json() {
    let mut h = start().await;
    let raw = br#"{"id":"px-a","title":"a","size":"7","password":null,"labels":{"k":"v"},"routes":null,"status":"ready"}"#;
    let r = h
        .client
        .upgrade_resource_state(pb::upgrade_resource_state::Request {
            type_name: "fake_thing".into(),
            version: 0,
            raw_state: Some(pb::RawState {
                json: raw.to_vec(),
                flatmap: Default::default(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    let v = undv(r.upgraded_state, &ty());
    assert_eq!(v.get_attr("name").and_then(Value::as_str), Some("a"));
    assert_eq!(v.get_attr("size").and_then(Value::as_i64), Some(7));
    assert_eq!(
        v.get_path(&AttributePath::attr("labels").then_key("k"))
            .and_then(Value::as_str),
        Some("v")
    );

    // current version: attributes removed from the schema are tolerated
    let raw = br#"{"id":"i","name":"n","size":1180591620717411303425,"removed_attr":true}"#;
    let r = h
        .client
        .upgrade_resource_state(pb::upgrade_resource_state::Request {
            type_name: "fake_thing".into(),
            version: 1,
            raw_state: Some(pb::RawState {
                json: raw.to_vec(),
                flatmap: Default::default(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    let v = undv(r.upgraded_state, &ty());
    assert_eq!(
        v.get_attr("size")
            .and_then(Value::as_number)
            .map(ToString::to_string)
            .as_deref(),
        Some("1180591620717411303425"),
        "big number kept exactly"
    );

    // a failing upgrader and a future version are errors
    let raw = br#"{"title":"a","size":"seven"}"#;
    let r = h
        .client
        .upgrade_resource_state(pb::upgrade_resource_state::Request {
            type_name: "fake_thing".into(),
            version: 0,
            raw_state: Some(pb::RawState {
                json: raw.to_vec(),
                flatmap: Default::default(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(errors(&r.diagnostics)[0].0, "bad size");
    assert!(r.upgraded_state.is_none());
    let r = h
        .client
        .upgrade_resource_state(pb::upgrade_resource_state::Request {
            type_name: "fake_thing".into(),
            version: 5,
            raw_state: Some(pb::RawState {
                json: b"{}".to_vec(),
                flatmap: Default::default(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        errors(&r.diagnostics)[0].0,
        "Unable to Upgrade Resource State"
    );
}

#[tokio::test]
async fn import_move_and_identity_upgrade() {
    let mut h = start().await;
    let r = h
        .client
        .import_resource_state(pb::import_resource_state::Request {
            type_name: "fake_thing".into(),
            id: "px-gamma".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty());
    assert_eq!(r.imported_resources.len(), 1);
    let imp = &r.imported_resources[0];
    assert_eq!(imp.type_name, "fake_thing");
    let st = undv(imp.state.clone(), &ty());
    assert_eq!(st.get_attr("id").and_then(Value::as_str), Some("px-gamma"));
    assert_eq!(st.get_attr("name").and_then(Value::as_str), Some("gamma"));
    assert!(imp.identity.is_some());

    let r = h
        .client
        .move_resource_state(pb::move_resource_state::Request {
            source_provider_address: "registry.opentofu.org/x/other".into(),
            source_type_name: "other_thing".into(),
            source_schema_version: 0,
            source_state: Some(pb::RawState {
                json: br#"{"label":"m"}"#.to_vec(),
                flatmap: Default::default(),
            }),
            target_type_name: "fake_thing".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    let st = undv(r.target_state, &ty());
    assert_eq!(st.get_attr("id").and_then(Value::as_str), Some("moved-m"));
    let r = h
        .client
        .move_resource_state(pb::move_resource_state::Request {
            source_type_name: "unrelated".into(),
            source_state: Some(pb::RawState {
                json: b"{}".to_vec(),
                flatmap: Default::default(),
            }),
            target_type_name: "fake_thing".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(errors(&r.diagnostics)[0].0, "Unable to Move Resource State");

    let r = h
        .client
        .upgrade_resource_identity(pb::upgrade_resource_identity::Request {
            type_name: "fake_thing".into(),
            version: 0,
            raw_identity: br#"{"id":"x"}"#.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty());
    let id = undv(
        r.upgraded_identity.unwrap().identity_data,
        &Type::object([("id", Type::String)]),
    );
    assert_eq!(id.get_attr("id").and_then(Value::as_str), Some("x"));
}

#[test]
fn thing_state_roundtrips_through_schema() {
    let sample = ThingState {
        id: Some("i".into()),
        name: "n".into(),
        size: Some(3),
        password: Some("p".into()),
        labels: Some([("a".to_string(), "b".to_string())].into()),
        routes: Some(vec![Route {
            host: "h".into(),
            port: Some(1),
        }]),
        status: Some("s".into()),
    };
    assert_roundtrip(&thing_schema(), &sample);
}
