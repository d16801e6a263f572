//! Terraform/OpenTofu plugin protocol 6 for waddle.

/// Generated tfplugin6 messages, `provider_server` and `provider_client`.
#[allow(clippy::all, missing_docs)]
pub mod tfplugin6 {
    tonic::include_proto!("tfplugin6");
}

/// Generated go-plugin services: GRPCController, GRPCStdio, GRPCBroker.
#[allow(clippy::all, missing_docs)]
pub mod plugin {
    tonic::include_proto!("plugin");
}

/// Generated gRPC health checking service (`grpc.health.v1`).
#[allow(clippy::all, missing_docs)]
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}
