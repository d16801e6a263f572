//! Wire-compatibility guards: field numbers are part of the contract with the
//! real CLI (a wrong number is silently ignored by the peer), so pin the tags
//! of the fields most likely to be touched, as encoded bytes.

use prost::Message as _;
use waddle_tfplugin::plugin::{conn_info, stdio_data, ConnInfo, StdioData};
use waddle_tfplugin::tfplugin6::*;

fn dv() -> Option<DynamicValue> {
    Some(DynamicValue {
        msgpack: vec![],
        json: b"1".to_vec(),
    })
}

/// Encoded `DynamicValue{json:"1"}`: field 2, length 1, '1'.
const DV: &[u8] = &[0x12, 0x01, b'1'];

fn with_len(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag, body.len() as u8];
    v.extend_from_slice(body);
    v
}

#[test]
fn schema_attribute_tags() {
    let a = schema::Attribute {
        nested_type: Some(schema::Object {
            nesting: schema::object::NestingMode::List as i32,
            ..Default::default()
        }),
        write_only: true,
        deprecated: true,
        description_kind: StringKind::Markdown as i32,
        ..Default::default()
    };
    // description_kind=8, deprecated=9, nested_type=10 {nesting=3}, write_only=11
    assert_eq!(
        a.encode_to_vec(),
        vec![0x40, 0x01, 0x48, 0x01, 0x52, 0x02, 0x18, 0x02, 0x58, 0x01]
    );
}

#[test]
fn capabilities_and_deferred_tags() {
    let c = ClientCapabilities {
        deferral_allowed: true,
        write_only_attributes_allowed: true,
    };
    assert_eq!(c.encode_to_vec(), vec![0x08, 0x01, 0x10, 0x01]);
    let s = ServerCapabilities {
        plan_destroy: true,
        get_provider_schema_optional: true,
        move_resource_state: true,
    };
    assert_eq!(s.encode_to_vec(), vec![0x08, 0x01, 0x10, 0x01, 0x18, 0x01]);
    let d = Deferred {
        reason: deferred::Reason::AbsentPrereq as i32,
    };
    assert_eq!(d.encode_to_vec(), vec![0x08, 0x03]);
}

#[test]
fn get_provider_schema_response_tags() {
    let r = get_provider_schema::Response {
        functions: [("f".to_string(), Function::default())].into(),
        ephemeral_resource_schemas: [("e".to_string(), Schema::default())].into(),
        ..Default::default()
    };
    let bytes = r.encode_to_vec();
    // map entries: functions = 7 (0x3a), ephemeral_resource_schemas = 8 (0x42)
    assert!(bytes.windows(2).any(|w| w == [0x3a, 0x03]), "{bytes:x?}");
    assert!(bytes.windows(2).any(|w| w == [0x42, 0x03]), "{bytes:x?}");
}

#[test]
fn resource_lifecycle_identity_and_private_tags() {
    let id = Some(ResourceIdentityData {
        identity_data: dv(),
    });
    let id_bytes = with_len(0x0a, DV);

    let read = read_resource::Request {
        client_capabilities: Some(ClientCapabilities::default()),
        current_identity: id.clone(),
        ..Default::default()
    };
    let mut want = vec![0x2a, 0x00];
    want.extend(with_len(0x32, &id_bytes));
    assert_eq!(read.encode_to_vec(), want, "ReadResource.Request 5, 6");

    let plan = plan_resource_change::Response {
        legacy_type_system: false,
        deferred: Some(Deferred::default()),
        planned_identity: id.clone(),
        ..Default::default()
    };
    let mut want = vec![0x32, 0x00];
    want.extend(with_len(0x3a, &id_bytes));
    assert_eq!(
        plan.encode_to_vec(),
        want,
        "PlanResourceChange.Response 6, 7"
    );

    let plan_req = plan_resource_change::Request {
        client_capabilities: Some(ClientCapabilities::default()),
        prior_identity: id.clone(),
        ..Default::default()
    };
    let mut want = vec![0x3a, 0x00];
    want.extend(with_len(0x42, &id_bytes));
    assert_eq!(
        plan_req.encode_to_vec(),
        want,
        "PlanResourceChange.Request 7, 8"
    );

    let apply = apply_resource_change::Response {
        private: vec![7],
        legacy_type_system: true,
        new_identity: id.clone(),
        ..Default::default()
    };
    let mut want = vec![0x12, 0x01, 0x07, 0x20, 0x01];
    want.extend(with_len(0x2a, &id_bytes));
    assert_eq!(
        apply.encode_to_vec(),
        want,
        "ApplyResourceChange.Response 2, 4, 5"
    );

    let mv = move_resource_state::Request {
        source_private: vec![1],
        source_identity: id,
        ..Default::default()
    };
    let mut want = vec![0x32, 0x01, 0x01];
    want.extend(with_len(0x3a, &id_bytes));
    assert_eq!(mv.encode_to_vec(), want, "MoveResourceState.Request 6, 7");
}

#[test]
fn functions_and_diagnostics_tags() {
    let e = FunctionError {
        text: "x".into(),
        function_argument: Some(0),
    };
    // optional field present even when zero
    assert_eq!(e.encode_to_vec(), vec![0x0a, 0x01, b'x', 0x10, 0x00]);
    let c = call_function::Response {
        result: dv(),
        error: None,
    };
    assert_eq!(c.encode_to_vec(), with_len(0x0a, DV));
    let f = Function {
        deprecation_message: "d".into(),
        ..Default::default()
    };
    assert_eq!(f.encode_to_vec(), vec![0x3a, 0x01, b'd']);
    let step = attribute_path::Step {
        selector: Some(attribute_path::step::Selector::ElementKeyInt(2)),
    };
    assert_eq!(step.encode_to_vec(), vec![0x18, 0x02]);
    let stop = stop_provider::Response { error: "e".into() };
    assert_eq!(stop.encode_to_vec(), vec![0x0a, 0x01, b'e']);
}

#[test]
fn ephemeral_tags() {
    let open = open_ephemeral_resource::Response {
        renew_at: Some(prost_types::Timestamp::default()),
        private: Some(vec![]),
        deferred: Some(Deferred::default()),
        ..Default::default()
    };
    assert_eq!(
        open.encode_to_vec(),
        vec![0x12, 0x00, 0x22, 0x00, 0x2a, 0x00]
    );
}

#[test]
fn go_plugin_tags() {
    let c = ConnInfo {
        service_id: 1,
        network: "u".into(),
        address: "a".into(),
        knock: Some(conn_info::Knock {
            knock: true,
            ack: true,
            error: "e".into(),
        }),
    };
    assert_eq!(
        c.encode_to_vec(),
        vec![
            0x08, 0x01, 0x12, 0x01, b'u', 0x1a, 0x01, b'a', 0x22, 0x07, 0x08, 0x01, 0x10, 0x01,
            0x1a, 0x01, b'e'
        ]
    );
    let d = StdioData {
        channel: stdio_data::Channel::Stderr as i32,
        data: b"z".to_vec(),
    };
    assert_eq!(d.encode_to_vec(), vec![0x08, 0x02, 0x12, 0x01, b'z']);
}
