//! In-process gRPC tests: the ProviderService behind tonic on a unix socket, driven by the
//! generated client with a small fake provider.

mod calls;
mod fixture;
mod in_process;
mod lifecycle;
mod support;
mod validate;
