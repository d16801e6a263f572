//! Metadata, schemas and configuration validation.

use waddle_framework::prelude::*;
use waddle_tfplugin::tfplugin6 as pb;

use super::support::{caps, dv, errors, start, thing, ty};

#[tokio::test]
async fn metadata_and_schema() {
    let mut h = start().await;
    let m = h
        .client
        .get_metadata(pb::get_metadata::Request {})
        .await
        .unwrap()
        .into_inner();
    let caps = m.server_capabilities.unwrap();
    assert!(caps.get_provider_schema_optional && caps.move_resource_state && !caps.plan_destroy);
    assert_eq!(m.resources[0].type_name, "fake_thing");
    assert_eq!(m.data_sources[0].type_name, "fake_echo");
    assert_eq!(m.functions[0].name, "repeat");

    let s = h
        .client
        .get_provider_schema(pb::get_provider_schema::Request {})
        .await
        .unwrap()
        .into_inner();
    assert!(s.diagnostics.is_empty());
    let rs = &s.resource_schemas["fake_thing"];
    assert_eq!(rs.version, 1);
    let block = rs.block.as_ref().unwrap();
    let pw = block
        .attributes
        .iter()
        .find(|a| a.name == "password")
        .unwrap();
    assert!(pw.write_only && pw.sensitive && pw.optional);
    assert_eq!(block.description_kind, pb::StringKind::Markdown as i32);
    let routes = block
        .attributes
        .iter()
        .find(|a| a.name == "routes")
        .unwrap();
    assert_eq!(
        routes.nested_type.as_ref().unwrap().nesting,
        pb::schema::object::NestingMode::List as i32
    );
    assert!(s.data_source_schemas.contains_key("fake_echo"));
    let f = &s.functions["repeat"];
    assert_eq!(f.parameters.len(), 2);
    assert_eq!(f.r#return.as_ref().unwrap().r#type, br#""string""#);
    assert!(s.ephemeral_resource_schemas.is_empty());

    let ids = h
        .client
        .get_resource_identity_schemas(pb::get_resource_identity_schemas::Request {})
        .await
        .unwrap()
        .into_inner();
    let id = &ids.identity_schemas["fake_thing"];
    assert_eq!(id.identity_attributes[0].name, "id");
    assert!(id.identity_attributes[0].required_for_import);
}

#[tokio::test]
async fn validate_errors_carry_paths() {
    let mut h = start().await;
    let config = thing(&[
        ("id", Value::from("set-by-user")),
        ("password", Value::from("pw")),
        (
            "labels",
            Value::Map(
                [
                    ("Bad".to_string(), Value::from("x")),
                    ("ok".to_string(), Value::from("y")),
                ]
                .into(),
            ),
        ),
        (
            "routes",
            Value::List(vec![
                Value::object([("host", Value::from("a.example")), ("port", Value::Null)]),
                Value::object([("host", Value::from("b example")), ("port", Value::from(1))]),
                Value::object([("host", Value::Null), ("port", Value::unknown())]),
            ]),
        ),
    ]);
    let r = h
        .client
        .validate_resource_config(pb::validate_resource_config::Request {
            type_name: "fake_thing".into(),
            config: dv(&config, &ty()),
            client_capabilities: caps(false),
        })
        .await
        .unwrap()
        .into_inner();
    let e = errors(&r.diagnostics);
    let want: Vec<(String, String)> = [
        ("Invalid Configuration for Read-Only Attribute", "id"),
        ("Missing Configuration for Required Attribute", "name"),
        ("WriteOnly Attribute Not Allowed", "password"),
        (
            "Missing Configuration for Required Attribute",
            "routes[2].host",
        ),
        ("Invalid host", "routes[1].host"),
        ("Invalid label key", "labels[\"Bad\"]"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(e, want);
    // the raw proto steps: element_key_int and element_key_string
    let host = r
        .diagnostics
        .iter()
        .find(|d| d.summary == "Invalid host")
        .unwrap();
    use pb::attribute_path::step::Selector;
    let steps: Vec<_> = host
        .attribute
        .as_ref()
        .unwrap()
        .steps
        .iter()
        .map(|s| s.selector.clone().unwrap())
        .collect();
    assert_eq!(
        steps,
        vec![
            Selector::AttributeName("routes".into()),
            Selector::ElementKeyInt(1),
            Selector::AttributeName("host".into())
        ]
    );
    let label = r
        .diagnostics
        .iter()
        .find(|d| d.summary == "Invalid label key")
        .unwrap();
    assert_eq!(
        label.attribute.as_ref().unwrap().steps[1].selector,
        Some(Selector::ElementKeyString("Bad".into()))
    );

    // unknowns are fine; write-only allowed by a capable client
    let ok = thing(&[("name", Value::unknown()), ("password", Value::from("pw"))]);
    let r = h
        .client
        .validate_resource_config(pb::validate_resource_config::Request {
            type_name: "fake_thing".into(),
            config: dv(&ok, &ty()),
            client_capabilities: caps(true),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);

    // provider config validation calls the provider hook
    let pty = Type::object([("prefix", Type::String)]);
    let r = h
        .client
        .validate_provider_config(pb::validate_provider_config::Request {
            config: dv(&Value::object([("prefix", Value::from(""))]), &pty),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        errors(&r.diagnostics),
        vec![("Invalid prefix".to_string(), "prefix".to_string())]
    );

    // unknown type names are reported, not panics
    let r = h
        .client
        .validate_data_resource_config(pb::validate_data_resource_config::Request {
            type_name: "fake_nope".into(),
            config: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(errors(&r.diagnostics)[0].0, "Data Source Type Not Found");
}
