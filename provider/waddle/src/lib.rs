//! The waddle provider: provider configuration, resources, data sources, functions and
//! the registry documentation generator.

pub mod clients;
pub mod data_sources;
pub mod docs;
pub mod ephemeral;
pub mod functions;
pub mod preflight;
pub mod provider;
pub mod resources;

pub use provider::{ProviderConfig, WaddleProvider};
