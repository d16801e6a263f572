//! Terraform/OpenTofu plugin protocol 6 for waddle.
//!
//! This crate speaks the wire protocol so the rest of waddle does not have to:
//! it generates the gRPC code for `tfplugin6` and go-plugin's services from
//! `<repo>/proto`, performs the go-plugin handshake, sets up AutoMTLS and runs
//! the server. The provider logic lives elsewhere (waddle-framework implements
//! [`tfplugin6::provider_server::Provider`]).
//!
//! Layout:
//! - [`tfplugin6`], [`plugin`], [`health`]: generated messages, servers, clients.
//! - [`handshake`]: launch environment (magic cookie, protocol negotiation,
//!   `PLUGIN_CLIENT_CERT`) and the `1|6|unix|PATH|grpc|CERT` line.
//! - `server`: [`serve_main`], [`serve`], [`PluginServer`] — unix socket in a
//!   private directory (TCP fallback), AutoMTLS, GRPCController (Shutdown),
//!   GRPCStdio, GRPCBroker, health.
//! - `tls`: fresh server certificate and [`ExactClientCertVerifier`] (P-521).
//! - [`logging`]: go-hclog JSON lines on stderr, [`Secret`].
//! - `client` (feature `client`): go-plugin-like client for tests/benches.

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

#[cfg(feature = "client")]
pub mod client;
pub mod handshake;
pub mod logging;
pub mod rpc_span;
mod server;
mod stdio;
mod tls;

pub use handshake::{HandshakeError, HandshakeInfo, LaunchEnv, ListenAddr, Transport};
pub use logging::Secret;
pub use server::{serve, serve_main, PluginServer, ServeError, ServeOptions, ShutdownSignal};
pub use tls::{ExactClientCertVerifier, TlsError};
pub use tokio_util::sync::CancellationToken;
