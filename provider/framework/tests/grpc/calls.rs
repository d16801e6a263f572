//! Functions, data sources, ephemeral resources and stopping.

use waddle_framework::prelude::*;
use waddle_tfplugin::tfplugin6 as pb;
use waddle_tfplugin::tfplugin6::provider_client::ProviderClient;

use super::support::{
    apply_on, dv, errors, plan, start, start_stopping_on, thing, ty, undv, Harness,
};

#[tokio::test]
async fn functions_call_and_argument_errors() {
    let mut h = start().await;
    let call = |args: Vec<Value>| pb::call_function::Request {
        name: "repeat".into(),
        arguments: args
            .iter()
            .zip([Type::String, Type::Number, Type::String])
            .map(|(v, t)| dv(v, &t).unwrap())
            .collect(),
    };
    let r = h
        .client
        .call_function(call(vec!["ab".into(), Value::from(3)]))
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.is_none());
    assert_eq!(undv(r.result, &Type::String), Value::from("ababab"));

    let r = h
        .client
        .call_function(call(vec!["ab".into(), Value::from(-1)]))
        .await
        .unwrap()
        .into_inner();
    let e = r.error.unwrap();
    assert_eq!(e.function_argument, Some(1));
    assert!(e.text.contains("non-negative"));

    // null where not allowed: framework rejects with the argument index
    let r = h
        .client
        .call_function(call(vec![Value::Null, Value::from(1)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.error.unwrap().function_argument, Some(0));
    // wrong arity and unknown function
    let r = h
        .client
        .call_function(call(vec!["a".into()]))
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.unwrap().text.contains("takes 2 argument"));
    let r = h
        .client
        .call_function(pb::call_function::Request {
            name: "nope".into(),
            arguments: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.is_some());

    let f = h
        .client
        .get_functions(pb::get_functions::Request {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(f.functions["repeat"].summary, "Repeat a string");
}

#[tokio::test]
async fn data_source_read() {
    let mut h = start().await;
    let dty = Type::object([("input", Type::String), ("output", Type::String)]);
    let r = h
        .client
        .read_data_source(pb::read_data_source::Request {
            type_name: "fake_echo".into(),
            config: dv(
                &Value::object([("input", Value::from("hi")), ("output", Value::Null)]),
                &dty,
            ),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty());
    assert!(r.deferred.is_none());
    let v = undv(r.state, &dty);
    assert_eq!(v.get_attr("output").and_then(Value::as_str), Some("HI"));
    // missing required input at validate time
    let r = h
        .client
        .validate_data_resource_config(pb::validate_data_resource_config::Request {
            type_name: "fake_echo".into(),
            config: dv(
                &Value::object([("input", Value::Null), ("output", Value::Null)]),
                &dty,
            ),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        errors(&r.diagnostics),
        vec![(
            "Missing Configuration for Required Attribute".to_string(),
            "input".to_string()
        )]
    );
}

#[tokio::test]
async fn ephemeral_resources_are_cleanly_unsupported() {
    let mut h = start().await;
    let r = h
        .client
        .open_ephemeral_resource(pb::open_ephemeral_resource::Request {
            type_name: "fake_eph".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        errors(&r.diagnostics)[0].0,
        "Ephemeral Resource Type Not Found"
    );
    let r = h
        .client
        .validate_ephemeral_resource_config(pb::validate_ephemeral_resource_config::Request {
            type_name: "fake_eph".into(),
            config: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.diagnostics.len(), 1);
}

/// Create a `fake_thing` named "slow": it runs until its operation is cancelled.
async fn create_slow(
    mut c: ProviderClient<tonic::transport::Channel>,
) -> pb::apply_resource_change::Response {
    let config = thing(&[("name", Value::from("slow"))]);
    let mut planned = config.clone();
    planned.set_path(&AttributePath::attr("id"), Value::unknown());
    planned.set_path(&AttributePath::attr("status"), Value::unknown());
    planned.set_path(&AttributePath::attr("size"), Value::from(3));
    apply_on(&mut c, &Value::Null, &config, &planned).await
}

async fn stop_provider(h: &mut Harness) {
    let s = h
        .client
        .stop_provider(pb::stop_provider::Request {})
        .await
        .unwrap()
        .into_inner();
    assert!(s.error.is_empty());
}

#[tokio::test]
async fn stop_provider_cancels_in_flight_operations() {
    let mut h = start().await;
    let in_flight = tokio::spawn(create_slow(h.client.clone()));
    // StopProvider until the in-flight call has observed it (it may not have started yet).
    let resp = loop {
        stop_provider(&mut h).await;
        if in_flight.is_finished() {
            break in_flight.await.unwrap();
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    };
    assert_eq!(errors(&resp.diagnostics)[0].0, "Cancelled");
    assert!(undv(resp.new_state, &ty()).is_null());
    // the provider keeps working after a stop
    let p = plan(
        &mut h,
        &Value::Null,
        &thing(&[("name", "z".into())]),
        &thing(&[("name", "z".into())]),
    )
    .await;
    assert!(p.diagnostics.is_empty());
}

#[tokio::test]
async fn plugin_shutdown_cancels_in_flight_and_later_operations() {
    // The plugin server's shutdown signal (host Shutdown, SIGTERM, the host's death).
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut h = start_stopping_on(Some(&shutdown)).await;
    let in_flight = tokio::spawn(create_slow(h.client.clone()));
    shutdown.cancel();
    let resp = in_flight.await.unwrap();
    assert_eq!(errors(&resp.diagnostics)[0].0, "Cancelled");
    // A StopProvider after it does not bring back an uncancelled token.
    stop_provider(&mut h).await;
    let resp = create_slow(h.client.clone()).await;
    assert_eq!(errors(&resp.diagnostics)[0].0, "Cancelled");
}
