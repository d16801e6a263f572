//! The in-process testing harness (`waddle_framework::testing::Harness`) with the same fake
//! provider.

use std::sync::Arc;

use waddle_framework::prelude::*;
use waddle_framework::testing::Harness as InProcess;

use super::fixture::{Counters, Fake};
use super::support::thing;

fn fake() -> Fake {
    Fake {
        counters: Arc::new(Counters::default()),
    }
}

#[tokio::test]
async fn harness_create_then_replan_is_empty() {
    let h = InProcess::new(fake());
    assert!(h
        .configure(Value::object([("prefix", Value::from("h"))]))
        .await
        .is_empty());
    let config = thing(&[
        ("name", Value::from("one")),
        ("password", Value::from("pw")),
        (
            "routes",
            Value::List(vec![Value::object([
                ("host", Value::from("a")),
                ("port", Value::Null),
            ])]),
        ),
    ]);
    let state = h
        .plan_and_apply("fake_thing", &Value::Null, &config)
        .await
        .unwrap();
    assert_eq!(state.get_attr("id").and_then(Value::as_str), Some("h-one"));
    // Planning the same configuration again changes nothing (what `plan -detailed-exitcode`
    // checks after apply).
    let p = h.plan("fake_thing", &state, &config).await;
    assert!(p.diagnostics.is_empty(), "{}", p.diagnostics);
    assert!(p.requires_replace.is_empty());
    assert!(
        p.planned_state.equals(&state),
        "{:?}\n{:?}",
        p.planned_state,
        state
    );
    // refresh keeps it
    let r = h.read("fake_thing", &state).await;
    assert!(r.state.equals(&state));
    // destroy
    let gone = h
        .plan_and_apply("fake_thing", &state, &Value::Null)
        .await
        .unwrap();
    assert!(gone.is_null());
}

#[tokio::test]
async fn harness_reports_validation_and_function_errors() {
    let h = InProcess::new(fake());
    let bad = thing(&[
        ("name", Value::from("x")),
        (
            "routes",
            Value::List(vec![Value::object([
                ("host", Value::from("a b")),
                ("port", Value::Null),
            ])]),
        ),
    ]);
    let d = h
        .plan_and_apply("fake_thing", &Value::Null, &bad)
        .await
        .unwrap_err();
    assert_eq!(
        d.errors().next().and_then(|e| e.attribute.clone()),
        Some(
            AttributePath::attr("routes")
                .then_index(0)
                .then_attr("host")
        )
    );
    assert_eq!(
        h.call_function("repeat", vec!["x".into(), Value::from(2)])
            .await,
        Ok(Value::from("xx"))
    );
    assert_eq!(
        h.call_function("repeat", vec!["x".into(), Value::from(-2)])
            .await
            .unwrap_err()
            .argument,
        Some(1)
    );
    let ds = h
        .read_data_source(
            "fake_echo",
            Value::object([("input", Value::from("q")), ("output", Value::Null)]),
        )
        .await;
    assert_eq!(
        ds.state.get_attr("output").and_then(Value::as_str),
        Some("Q")
    );
}
