//! The service behind tonic on a unix socket, and the requests the tests send through the
//! generated client.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Server, Uri};
use waddle_framework::codec;
use waddle_framework::prelude::*;
use waddle_framework::proto::path_from_proto;
use waddle_framework::ProviderService;
use waddle_tfplugin::tfplugin6 as pb;
use waddle_tfplugin::tfplugin6::provider_client::ProviderClient;

use super::fixture::{thing_schema, Counters, Fake};

pub(super) struct Harness {
    pub(super) client: ProviderClient<Channel>,
    pub(super) counters: Arc<Counters>,
    pub(super) _dir: tempfile::TempDir,
    pub(super) server: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub(super) async fn start() -> Harness {
    start_stopping_on(None).await
}

/// The harness; with `shutdown`, as a provider binary wires it (`ProviderService::stop_on`).
pub(super) async fn start_stopping_on(
    shutdown: Option<&tokio_util::sync::CancellationToken>,
) -> Harness {
    let counters = Arc::new(Counters::default());
    let service = ProviderService::new(Fake {
        counters: counters.clone(),
    });
    if let Some(s) = shutdown {
        service.stop_on(s);
    }
    assert!(
        service.definition_diagnostics().is_empty(),
        "{}",
        service.definition_diagnostics()
    );
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("plugin.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let server = tokio::spawn(async move {
        Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await
            .unwrap();
    });
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let sock = sock.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(sock).await?)) }
        }))
        .await
        .unwrap();
    Harness {
        client: ProviderClient::new(channel),
        counters,
        _dir: dir,
        server,
    }
}

pub(super) fn ty() -> Type {
    thing_schema().implied_type()
}

pub(super) fn dv(v: &Value, t: &Type) -> Option<pb::DynamicValue> {
    Some(pb::DynamicValue {
        msgpack: codec::encode_msgpack(v, t).unwrap(),
        json: vec![],
    })
}

pub(super) fn undv(d: Option<pb::DynamicValue>, t: &Type) -> Value {
    codec::decode_msgpack(&d.expect("dynamic value present").msgpack, t).unwrap()
}

pub(super) fn thing(pairs: &[(&str, Value)]) -> Value {
    let mut v = thing_schema().null_value();
    for (k, x) in pairs {
        assert!(v.set_path(&AttributePath::attr(*k), x.clone()));
    }
    v
}

pub(super) fn errors(d: &[pb::Diagnostic]) -> Vec<(String, String)> {
    d.iter()
        .filter(|d| d.severity == pb::diagnostic::Severity::Error as i32)
        .map(|d| {
            (
                d.summary.clone(),
                d.attribute
                    .as_ref()
                    .map(|p| path_from_proto(p).to_string())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

pub(super) fn caps(write_only: bool) -> Option<pb::ClientCapabilities> {
    Some(pb::ClientCapabilities {
        deferral_allowed: true,
        write_only_attributes_allowed: write_only,
    })
}

pub(super) async fn configure(h: &mut Harness, prefix: &str) {
    let pty = Type::object([("prefix", Type::String)]);
    let r = h
        .client
        .configure_provider(pb::configure_provider::Request {
            terraform_version: "1.11.0".into(),
            config: dv(&Value::object([("prefix", Value::from(prefix))]), &pty),
            client_capabilities: caps(true),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty());
}

pub(super) async fn plan(
    h: &mut Harness,
    prior: &Value,
    config: &Value,
    proposed: &Value,
) -> pb::plan_resource_change::Response {
    h.client
        .plan_resource_change(pb::plan_resource_change::Request {
            type_name: "fake_thing".into(),
            prior_state: dv(prior, &ty()),
            proposed_new_state: dv(proposed, &ty()),
            config: dv(config, &ty()),
            client_capabilities: caps(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

pub(super) async fn apply(
    h: &mut Harness,
    prior: &Value,
    config: &Value,
    planned: &Value,
) -> pb::apply_resource_change::Response {
    apply_on(&mut h.client, prior, config, planned).await
}

pub(super) async fn apply_on(
    client: &mut ProviderClient<tonic::transport::Channel>,
    prior: &Value,
    config: &Value,
    planned: &Value,
) -> pb::apply_resource_change::Response {
    client
        .apply_resource_change(pb::apply_resource_change::Request {
            type_name: "fake_thing".into(),
            prior_state: dv(prior, &ty()),
            planned_state: dv(planned, &ty()),
            config: dv(config, &ty()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}
