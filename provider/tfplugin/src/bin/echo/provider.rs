//! A minimal provider used by the crate's tests and benchmark: it answers the
//! metadata/schema RPCs, writes to stdout and logs on ConfigureProvider, and
//! records StopProvider. Every other RPC answers Unimplemented.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tonic::{Request, Response, Status};
use waddle_tfplugin::tfplugin6::provider_server::Provider;
use waddle_tfplugin::tfplugin6::{
    configure_provider, get_metadata, get_provider_schema, schema, stop_provider, Schema,
    ServerCapabilities,
};

/// The echo provider.
#[derive(Debug, Default, Clone)]
pub struct EchoProvider {
    /// Set once StopProvider was called.
    pub stopped: Arc<AtomicBool>,
}

fn capabilities() -> Option<ServerCapabilities> {
    Some(ServerCapabilities {
        plan_destroy: true,
        get_provider_schema_optional: true,
        move_resource_state: false,
    })
}

#[tonic::async_trait]
impl Provider for EchoProvider {
    async fn get_metadata(
        &self,
        _request: Request<get_metadata::Request>,
    ) -> Result<Response<get_metadata::Response>, Status> {
        Ok(Response::new(get_metadata::Response {
            server_capabilities: capabilities(),
            data_sources: vec![get_metadata::DataSourceMetadata {
                type_name: "echo_data".into(),
            }],
            ..Default::default()
        }))
    }

    async fn get_provider_schema(
        &self,
        _request: Request<get_provider_schema::Request>,
    ) -> Result<Response<get_provider_schema::Response>, Status> {
        let data = Schema {
            version: 0,
            block: Some(schema::Block {
                attributes: vec![schema::Attribute {
                    name: "value".into(),
                    r#type: b"\"string\"".to_vec(),
                    computed: true,
                    ..Default::default()
                }],
                ..Default::default()
            }),
        };
        Ok(Response::new(get_provider_schema::Response {
            provider: Some(Schema {
                version: 0,
                block: Some(schema::Block::default()),
            }),
            data_source_schemas: [("echo_data".to_string(), data)].into(),
            server_capabilities: capabilities(),
            ..Default::default()
        }))
    }

    async fn configure_provider(
        &self,
        request: Request<configure_provider::Request>,
    ) -> Result<Response<configure_provider::Response>, Status> {
        let version = request.into_inner().terraform_version;
        println!("echo-provider: configured by {version}");
        tracing::info!(terraform_version = %version, "echo provider configured");
        Ok(Response::new(configure_provider::Response::default()))
    }

    async fn stop_provider(
        &self,
        _request: Request<stop_provider::Request>,
    ) -> Result<Response<stop_provider::Response>, Status> {
        self.stopped.store(true, Ordering::SeqCst);
        Ok(Response::new(stop_provider::Response::default()))
    }
}
