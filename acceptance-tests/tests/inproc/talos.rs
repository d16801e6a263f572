//! `waddle_talos_cluster` driven in process against the PVE emulator with the Talos emulator
//! plugged in: one network per test (`net`), the PVE API on `127.40.<net>.1`, the nodes on
//! `127.20.<net>.<host>` with VMID `net * 100 + host`, the VIP on `.20`, the gateway `.1`.

use std::net::Ipv4Addr;

use waddle_acceptance::harness::emulated;
use waddle_acceptance::pve::{EmulatorConfig, PveEmulator, Timings};
use waddle_acceptance::talos::{FleetOptions, TalosFleet, TalosNode};
use waddle_framework::testing::Harness;
use waddle_framework::Value;
use waddle_provider::resources::talos_cluster::{
    schema, ClusterModel, ImageModel, NodeModel, PlacementModel, TimeoutsModel, TYPE_NAME,
};

/// The Image Factory disk image (default schematic, nocloud, amd64) of Talos `version`.
pub fn disk_url(version: &str) -> String {
    format!("https://factory.talos.dev/image/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba/{version}/nocloud-amd64.qcow2")
}

/// Node `host` of network `net` in `role`, with its static address, gateway and VMID.
pub fn node_model(net: u8, role: &str, host: u8) -> NodeModel {
    NodeModel {
        role: role.into(),
        address: format!("127.20.{net}.{host}/24"),
        gateway: Some(format!("127.20.{net}.1")),
        proxmox: Some(PlacementModel {
            vmid: Some(u32::from(net) * 100 + u32::from(host)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Cluster `name` of `nodes` (name, role, host) in network `net` at Talos `talos` (its disk
/// image, the VIP as endpoint), with 3m/3m/2m timeouts; every other attribute unset.
pub fn cluster<'a, N: Into<String>>(
    net: u8,
    name: impl Into<String>,
    talos: &str,
    nodes: impl IntoIterator<Item = (N, &'a str, u8)>,
) -> ClusterModel {
    let nodes = nodes
        .into_iter()
        .map(|(n, role, host)| (n.into(), node_model(net, role, host)))
        .collect();
    ClusterModel {
        cluster_name: name.into(),
        endpoint: format!("https://127.20.{net}.20:6443"),
        vip: Some(format!("127.20.{net}.20")),
        talos_version: Some(talos.into()),
        image: Some(ImageModel {
            installer: None,
            disk_image_url: Some(disk_url(talos)),
        }),
        timeouts: Some(TimeoutsModel {
            create: Some("3m".into()),
            update: Some("3m".into()),
            delete: Some("2m".into()),
        }),
        nodes: Some(nodes),
        ..Default::default()
    }
}

/// The configuration value of `m`.
pub fn config(m: &ClusterModel) -> Value {
    schema().from_typed(m).expect("config")
}

/// The emulators of network `net` and a provider configured for them.
pub struct TalosEnv {
    pub h: Harness,
    pub fleet: TalosFleet,
    pub emu: PveEmulator,
    pub net: u8,
}

/// The PVE emulator on `127.40.<net>.1` (fast timings), the Talos emulator plugged into it,
/// and a provider configured for it.
pub async fn env(net: u8) -> TalosEnv {
    env_with(net, Timings::fast(), FleetOptions::default()).await
}

/// [`env`] with the PVE emulator's `timings` and the Talos emulator's `options`.
pub async fn env_with(net: u8, timings: Timings, options: FleetOptions) -> TalosEnv {
    let emu = emulated::emulator(
        EmulatorConfig::builder()
            .ip(Ipv4Addr::new(127, 40, net, 1))
            .timings(timings)
            .build(),
    )
    .await;
    let fleet = emulated::talos_fleet_with(&emu, options);
    let h = super::harness(&emu).await;
    TalosEnv { h, fleet, emu, net }
}

impl TalosEnv {
    /// The Talos node on `127.20.<net>.<host>`.
    pub fn node(&self, host: u8) -> TalosNode {
        self.fleet
            .node_at(Ipv4Addr::new(127, 20, self.net, host))
            .expect("node on its static address")
    }

    /// Plans and applies `m` over `prior`: the new state, or the diagnostics as text.
    pub async fn apply(&self, prior: &Value, m: &ClusterModel) -> Result<Value, String> {
        self.h
            .plan_and_apply(TYPE_NAME, prior, &config(m))
            .await
            .map_err(|d| format!("{d:?}"))
    }

    /// The plan of `m` over `state` has no error and changes nothing.
    pub async fn assert_empty_plan(&self, state: &Value, m: &ClusterModel) {
        let p = self.h.plan(TYPE_NAME, state, &config(m)).await;
        assert!(!p.diagnostics.has_errors(), "{:?}", p.diagnostics);
        assert!(
            p.planned_state.equals(state),
            "the plan after the apply is not empty"
        );
    }

    /// Destroys `state` (best effort) and stops the Talos emulator.
    pub async fn destroy(&self, state: &Value) {
        let _ = self.h.plan_and_apply(TYPE_NAME, state, &Value::Null).await;
        self.fleet.shutdown().await;
    }
}
