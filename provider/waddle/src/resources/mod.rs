//! Managed resources (one file per resource, unit tests beside it).

use std::sync::Arc;

use waddle_framework::Resource;

pub mod network;
pub mod sni_proxy;
pub mod talos_cluster;

/// Every managed resource of the provider.
pub fn all() -> Vec<Arc<dyn Resource>> {
    vec![
        Arc::new(network::Network),
        Arc::new(sni_proxy::SniProxy),
        Arc::new(talos_cluster::TalosCluster),
    ]
}
