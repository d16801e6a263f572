//! The waddle provider behind the real plugin server (handshake, AutoMTLS, unix socket),
//! driven in-process with the generated tfplugin6 client: schema, provider configuration
//! validation with attribute paths, the `waddle_talos_image` data source and the
//! `talos_schematic_id` function.

use waddle_framework::codec;
use waddle_framework::prelude::*;
use waddle_framework::proto::{path_from_proto, schema_to_proto};
use waddle_framework::ProviderService;
use waddle_provider::provider::NoEnv;
use waddle_provider::WaddleProvider;
use waddle_tfplugin::client::{connect, ClientIdentity};
use waddle_tfplugin::tfplugin6 as pb;
use waddle_tfplugin::tfplugin6::provider_client::ProviderClient;
use waddle_tfplugin::{LaunchEnv, PluginServer, ServeOptions, ShutdownSignal};

const EMPTY_ID: &str = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba";
const QGA_ID: &str = "ce4c980550dd2ab1b17bbf2b08801c7eb59418eafe8f279833297925d67c7515";

struct Harness {
    client: ProviderClient<tonic::transport::Channel>,
    shutdown: ShutdownSignal,
    server: tokio::task::JoinHandle<()>,
}

async fn start() -> Harness {
    let id = ClientIdentity::generate().unwrap();
    let opts = ServeOptions::in_process(LaunchEnv::for_host(Some(id.cert_pem())));
    let service = ProviderService::new(WaddleProvider::with_env(NoEnv));
    assert!(service.definition_diagnostics().is_empty());
    let server = PluginServer::bind(service, opts).await.unwrap();
    let info = server.handshake().clone();
    assert_eq!(info.protocol_version, 6);
    let shutdown = server.shutdown_signal();
    let server = tokio::spawn(async move {
        server.run().await.unwrap();
    });
    let channel = connect(&info, Some(&id)).await.unwrap();
    Harness {
        client: ProviderClient::new(channel),
        shutdown,
        server,
    }
}

impl Harness {
    async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.unwrap();
    }
}

fn dv(v: &Value, ty: &Type) -> Option<pb::DynamicValue> {
    Some(pb::DynamicValue {
        msgpack: codec::encode_msgpack(v, ty).unwrap(),
        json: Vec::new(),
    })
}

fn undv(d: Option<pb::DynamicValue>, ty: &Type) -> Value {
    codec::decode_msgpack(&d.unwrap().msgpack, ty).unwrap()
}

/// (summary, attribute path) of every error diagnostic.
fn errors(diags: &[pb::Diagnostic]) -> Vec<(String, String)> {
    diags
        .iter()
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

fn image_config(attrs: &[(&str, Value)]) -> Value {
    let mut v = waddle_provider::data_sources::talos_image::schema().null_value();
    for (k, val) in attrs {
        assert!(v.set_path(&AttributePath::attr(*k), val.clone()));
    }
    v
}

fn strings(items: &[&str]) -> Value {
    Value::List(items.iter().map(|s| Value::from(*s)).collect())
}

#[tokio::test]
async fn schema_lists_data_source_and_function() {
    let mut h = start().await;
    let s = h
        .client
        .get_provider_schema(pb::get_provider_schema::Request {})
        .await
        .unwrap()
        .into_inner();
    assert!(errors(&s.diagnostics).is_empty());
    let ds = &s.data_source_schemas["waddle_talos_image"];
    assert_eq!(
        ds,
        &schema_to_proto(&waddle_provider::data_sources::talos_image::schema())
    );
    let provider = s.provider.unwrap().block.unwrap();
    let token = provider
        .attributes
        .iter()
        .find(|a| a.name == "api_token")
        .unwrap();
    assert!(token.sensitive && token.optional);
    assert!(s.functions.contains_key("talos_schematic_id"));

    let m = h
        .client
        .get_metadata(pb::get_metadata::Request {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.data_sources[0].type_name, "waddle_talos_image");
    assert_eq!(m.functions[0].name, "talos_schematic_id");
    h.stop().await;
}

#[tokio::test]
async fn provider_config_errors_have_paths_and_empty_block_configures() {
    let mut h = start().await;
    let pschema = waddle_provider::provider::schema();
    let ty = pschema.implied_type();
    let mut bad = pschema.null_value();
    bad.set_path(
        &AttributePath::attr("endpoint"),
        Value::from("pve.local:8006"),
    );
    bad.set_path(&AttributePath::attr("api_token"), Value::from("root@pam"));
    bad.set_path(&AttributePath::attr("node"), Value::unknown());
    let r = h
        .client
        .validate_provider_config(pb::validate_provider_config::Request {
            config: dv(&bad, &ty),
        })
        .await
        .unwrap()
        .into_inner();
    let paths: Vec<String> = errors(&r.diagnostics).into_iter().map(|e| e.1).collect();
    assert_eq!(paths, vec!["endpoint", "api_token"]);

    let r = h
        .client
        .configure_provider(pb::configure_provider::Request {
            terraform_version: "1.0.3".into(),
            config: dv(&pschema.null_value(), &ty),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    h.stop().await;
}

#[tokio::test]
async fn data_source_validates_and_reads() {
    let mut h = start().await;
    let ty = waddle_provider::data_sources::talos_image::schema().implied_type();
    let bad = image_config(&[
        ("talos_version", Value::from("v1.12")),
        (
            "extensions",
            strings(&["siderolabs/qemu-guest-agent", "siderolabs/not-a-thing"]),
        ),
        ("extra_kernel_args", strings(&["console=ttyS0", "a b"])),
    ]);
    let r = h
        .client
        .validate_data_resource_config(pb::validate_data_resource_config::Request {
            type_name: "waddle_talos_image".into(),
            config: dv(&bad, &ty),
        })
        .await
        .unwrap()
        .into_inner();
    let paths: Vec<String> = errors(&r.diagnostics).into_iter().map(|e| e.1).collect();
    assert_eq!(
        paths,
        vec!["talos_version", "extensions[1]", "extra_kernel_args[1]"]
    );

    let good = image_config(&[
        ("talos_version", Value::from("v1.12.4")),
        ("extensions", strings(&["siderolabs/qemu-guest-agent"])),
    ]);
    let r = h
        .client
        .read_data_source(pb::read_data_source::Request {
            type_name: "waddle_talos_image".into(),
            config: dv(&good, &ty),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    let state = undv(r.state, &ty);
    assert_eq!(state.get_attr("schematic_id"), Some(&Value::from(QGA_ID)));
    assert_eq!(
        state.get_attr("installer_image"),
        Some(&Value::from(format!(
            "factory.talos.dev/nocloud-installer/{QGA_ID}:v1.12.4"
        )))
    );
    assert_eq!(state.get_attr("platform"), Some(&Value::from("nocloud")));
    h.stop().await;
}

#[tokio::test]
async fn function_is_callable_over_grpc() {
    let mut h = start().await;
    let f = h
        .client
        .get_functions(pb::get_functions::Request {})
        .await
        .unwrap()
        .into_inner();
    let sig = &f.functions["talos_schematic_id"];
    assert_eq!(sig.parameters.len(), 1);
    assert_eq!(sig.parameters[0].name, "schematic");
    assert_eq!(
        sig.r#return.as_ref().unwrap().r#type,
        b"\"string\"".to_vec()
    );

    let call = |text: &str| pb::call_function::Request {
        name: "talos_schematic_id".into(),
        arguments: vec![dv(&Value::from(text), &Type::String).unwrap()],
    };
    for (text, id) in [
        ("{}", EMPTY_ID),
        ("customization: {}\n", EMPTY_ID),
        (
            r#"{"customization":{"systemExtensions":{"officialExtensions":["siderolabs/qemu-guest-agent"]}}}"#,
            QGA_ID,
        ),
    ] {
        let r = h
            .client
            .call_function(call(text))
            .await
            .unwrap()
            .into_inner();
        assert!(r.error.is_none(), "{:?}", r.error);
        assert_eq!(undv(r.result, &Type::String), Value::from(id), "{text}");
    }
    // Unknown field: an error blaming argument 0.
    let r = h
        .client
        .call_function(call("customization:\n  bogus: 1\n"))
        .await
        .unwrap()
        .into_inner();
    let e = r.error.unwrap();
    assert_eq!(e.function_argument, Some(0));
    assert!(e.text.contains("customization.bogus"), "{}", e.text);
    h.stop().await;
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let id = ClientIdentity::generate().unwrap();
    let opts = ServeOptions::in_process(LaunchEnv::for_host(Some(id.cert_pem())));
    let server = PluginServer::bind(ProviderService::new(WaddleProvider::with_env(NoEnv)), opts)
        .await
        .unwrap();
    let info = server.handshake().clone();
    let shutdown = server.shutdown_signal();
    let task = tokio::spawn(async move { server.run().await.unwrap() });
    let other = ClientIdentity::generate().unwrap();
    for identity in [None, Some(&other)] {
        let ok = match connect(&info, identity).await {
            Err(_) => false,
            Ok(ch) => ProviderClient::new(ch)
                .get_metadata(pb::get_metadata::Request {})
                .await
                .is_ok(),
        };
        assert!(!ok, "a client without the right certificate was served");
    }
    shutdown.cancel();
    task.await.unwrap();
}

/// A cluster configuration with `machine_secrets_wo` (+ version) and one existing machine.
fn write_only_cluster(bundle_yaml: &str) -> Value {
    use waddle_provider::resources::talos_cluster::{schema, ClusterModel, NodeModel};
    let m = ClusterModel {
        cluster_name: "wo".into(),
        endpoint: "https://127.20.0.10:6443".into(),
        machine_secrets_wo_version: Some(1),
        nodes: Some(
            [(
                "cp1".to_string(),
                NodeModel {
                    role: "controlplane".into(),
                    address: "127.20.0.10/8".into(),
                    interface: Some("eth0".into()),
                    maintenance_address: Some("127.20.0.10".into()),
                    ..Default::default()
                },
            )]
            .into(),
        ),
        ..Default::default()
    };
    let mut v = schema().from_typed(&m).unwrap();
    assert!(v.set_path(
        &AttributePath::attr("machine_secrets_wo"),
        Value::from(bundle_yaml)
    ));
    v
}

#[tokio::test]
async fn write_only_machine_secrets_need_a_client_that_supports_them_and_stay_out_of_the_plan() {
    let mut h = start().await;
    let ty = waddle_provider::resources::talos_cluster::schema().implied_type();
    let bundle = waddle_talos::SecretsBundle::generate(&waddle_talos::SystemClock).unwrap();
    let yaml = bundle.to_yaml().unwrap();
    let config = write_only_cluster(&yaml);
    let validate = |allowed: bool| pb::validate_resource_config::Request {
        type_name: "waddle_talos_cluster".into(),
        config: dv(&config, &ty),
        client_capabilities: Some(pb::ClientCapabilities {
            deferral_allowed: false,
            write_only_attributes_allowed: allowed,
        }),
    };
    // Terraform < 1.11 / OpenTofu < 1.11: a clear error at the attribute.
    let r = h
        .client
        .validate_resource_config(validate(false))
        .await
        .unwrap()
        .into_inner();
    let e = errors(&r.diagnostics);
    assert_eq!(e.len(), 1, "{:?}", r.diagnostics);
    assert_eq!(e[0].1, "machine_secrets_wo");
    let d = r
        .diagnostics
        .iter()
        .find(|d| d.severity == pb::diagnostic::Severity::Error as i32)
        .unwrap();
    assert!(
        format!("{} {}", d.summary, d.detail).contains("write-only"),
        "{d:?}"
    );
    // A client that supports write-only attributes: valid.
    let r = h
        .client
        .validate_resource_config(validate(true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(errors(&r.diagnostics), vec![], "{:?}", r.diagnostics);

    // The plan: no bundle, no full configuration; the masked configuration is known and
    // holds none of the bundle's secrets.
    let r = h
        .client
        .plan_resource_change(pb::plan_resource_change::Request {
            type_name: "waddle_talos_cluster".into(),
            prior_state: dv(&Value::Null, &ty),
            proposed_new_state: dv(
                &waddle_framework::testing::proposed_new_state(
                    &waddle_provider::resources::talos_cluster::schema(),
                    &Value::Null,
                    &config,
                ),
                &ty,
            ),
            config: dv(&config, &ty),
            client_capabilities: Some(pb::ClientCapabilities {
                deferral_allowed: false,
                write_only_attributes_allowed: true,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(errors(&r.diagnostics), vec![], "{:?}", r.diagnostics);
    let planned = undv(r.planned_state, &ty);
    for a in [
        "machine_secrets",
        "machine_secrets_wo",
        "machine_configurations",
    ] {
        assert_eq!(planned.get_attr(a), Some(&Value::Null), "{a}");
    }
    let masked = planned
        .get_path(&AttributePath::attr("machine_configurations_masked").then_key("cp1"))
        .and_then(Value::as_str)
        .expect("a known masked configuration")
        .to_string();
    assert!(masked.contains("(masked)"), "{masked}");
    let text = format!("{planned:?}");
    for secret in [
        &bundle.cluster_secret,
        &bundle.bootstrap_token,
        &bundle.trustd_token,
        &bundle.os_ca.key,
        &bundle.k8s_ca.key,
        &bundle.etcd_ca.key,
        &bundle.k8s_service_account_key,
    ] {
        assert!(!text.contains(secret.as_str()), "a secret is in the plan");
    }
    h.stop().await;
}
