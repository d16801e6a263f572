//! The waddle provider: provider configuration, resources, data sources, functions and
//! the registry documentation generator.

pub mod provider;
