//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use tonic::transport::Channel;
use waddle_tfplugin::plugin::grpc_controller_client::GrpcControllerClient;
use waddle_tfplugin::plugin::Empty;
use waddle_tfplugin::tfplugin6::get_metadata;
use waddle_tfplugin::tfplugin6::provider_client::ProviderClient;

/// Upper bound for anything that should complete promptly; only a guard
/// against hanging tests, never a performance assertion.
pub const GUARD: Duration = Duration::from_secs(20);

pub async fn get_metadata(ch: Channel) -> Result<get_metadata::Response, tonic::Status> {
    ProviderClient::new(ch)
        .get_metadata(get_metadata::Request {})
        .await
        .map(|r| r.into_inner())
}

pub async fn shutdown(ch: Channel) {
    GrpcControllerClient::new(ch)
        .shutdown(Empty {})
        .await
        .expect("Shutdown RPC");
}
