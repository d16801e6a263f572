//! What the `waddle_talos_cluster` benchmarks share: the node counts from the command line, a
//! fresh secrets bundle per run and the node map (`cp1`..`cp3`, then workers `w1`..).

use std::collections::BTreeMap;

use waddle_provider::resources::talos_cluster::{NodeModel, PlacementModel};
use waddle_talos::SecretsBundle;

/// The node counts given as arguments (`-- 3 10`), 3, 10 and 30 without any.
pub fn sizes() -> Vec<usize> {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    if a.is_empty() {
        vec![3, 10, 30]
    } else {
        a
    }
}

/// A new cluster identity as `machine_secrets` YAML (RSA key generation: CPU work kept off the
/// runtime's workers and out of the timed part).
pub async fn fresh_secrets() -> String {
    let bundle = tokio::task::spawn_blocking(|| {
        SecretsBundle::generate(&waddle_talos::SystemClock).expect("secrets")
    })
    .await
    .expect("join");
    bundle.to_yaml().expect("yaml")
}

/// `n` nodes: three control planes (fewer when `n` < 3), then workers; node `i` has the
/// address `net(10 + i)/24`, the gateway `net(1)` and the placement `placement(i)`.
pub fn nodes(
    n: usize,
    net: impl Fn(usize) -> String,
    placement: impl Fn(usize) -> PlacementModel,
) -> BTreeMap<String, NodeModel> {
    let mut nodes = BTreeMap::new();
    for i in 0..n {
        let (name, role) = if i < 3 {
            (format!("cp{}", i + 1), "controlplane")
        } else {
            (format!("w{}", i - 2), "worker")
        };
        nodes.insert(
            name,
            NodeModel {
                role: role.into(),
                address: format!("{}/24", net(10 + i)),
                gateway: Some(net(1)),
                proxmox: Some(placement(i)),
                ..Default::default()
            },
        );
    }
    nodes
}
