//! Talos as a PVE emulator guest: a VM whose boot disk was imported from a Talos image
//! (volume or URL containing `talos`, `factory.talos.dev`, or `nocloud-amd64`) runs a
//! [`TalosNode`] of a [`TalosFleet`]. At first boot the node starts in maintenance mode on
//! the address real Talos would have ([`maintenance_network`]): the static address of its
//! NoCloud network configuration, else a 127.20.x.y DHCP lease when its bridge has DHCP,
//! else none at all (it never answers). The guest agent (Talos's qemu-guest-agent extension)
//! reports the address in `network-get-interfaces`; after configuration it reports the
//! node's static address.

use std::any::Any;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::pve::{
    ApplianceFactory, ApplianceRegistry, GuestAppliance, GuestContext, GuestInterface,
};

use super::nocloud::parse_network_config;
use super::{lock, NodeOptions, Stage, TalosFleet, TalosNode};

/// Whether a VM boots a Talos image.
pub fn is_talos_image(ctx: &GuestContext) -> bool {
    let h = ctx.image_hint();
    h.contains("talos") || h.contains("factory.talos.dev") || h.contains("nocloud-amd64")
}

/// How the node's first NIC (`net0`) gets its maintenance-mode address, as Talos's
/// `nocloud` platform decides: the static address of the NoCloud `network-config` entry for
/// that NIC (PVE cloud-init drive or a `cidata` ISO); else DHCP, which answers only when the
/// NIC's bridge has a DHCP server (the PVE emulator then holds a lease for it). Returns
/// (platform address, no DHCP).
pub fn maintenance_network(ctx: &GuestContext) -> (Option<Ipv4Addr>, bool) {
    let Some((&nic, mac)) = ctx.macs.iter().next() else {
        return (None, true);
    };
    let platform = ctx
        .nocloud_files()
        .and_then(|f| f.get("network-config").cloned())
        .map(|text| parse_network_config(&String::from_utf8_lossy(&text)));
    let link = match &platform {
        Some(Ok(net)) => net.link(mac, &format!("eth{nic}")).cloned(),
        Some(Err(e)) => {
            tracing::warn!(
                vmid = ctx.vmid,
                "talos emulator: nocloud network-config: {e}"
            );
            None
        }
        None => None,
    };
    let address = link.as_ref().and_then(|l| l.addresses.first().map(|a| a.0));
    (address, !ctx.dhcp.contains_key(&nic))
}

/// Creates [`TalosAppliance`]s on `fleet`.
pub struct TalosApplianceFactory {
    fleet: TalosFleet,
}

impl TalosApplianceFactory {
    /// A factory for VMs of `fleet`.
    pub fn new(fleet: TalosFleet) -> Self {
        TalosApplianceFactory { fleet }
    }
}

/// Registers the Talos appliance in a PVE emulator's registry (`server.appliances()`).
pub fn register(registry: &ApplianceRegistry, fleet: TalosFleet) {
    registry.register(Arc::new(TalosApplianceFactory::new(fleet)));
}

impl ApplianceFactory for TalosApplianceFactory {
    fn name(&self) -> &str {
        "talos"
    }

    fn matches(&self, ctx: &GuestContext) -> bool {
        is_talos_image(ctx)
    }

    fn create(&self, _ctx: &GuestContext) -> Arc<dyn GuestAppliance> {
        Arc::new(TalosAppliance {
            fleet: self.fleet.clone(),
            node: Mutex::new(None),
        })
    }
}

/// A VM running Talos.
pub struct TalosAppliance {
    fleet: TalosFleet,
    node: Mutex<Option<TalosNode>>,
}

impl TalosAppliance {
    /// The emulated node (after the first boot).
    pub fn node(&self) -> Option<TalosNode> {
        lock(&self.node).clone()
    }
}

impl Drop for TalosAppliance {
    /// The VM is deleted: its disk, with the node's configuration and etcd data, is gone.
    fn drop(&mut self) {
        let node = self
            .node
            .get_mut()
            .map(|n| n.take())
            .unwrap_or_else(|p| p.into_inner().take());
        if let Some(n) = node {
            n.destroy_disk();
        }
    }
}

#[async_trait]
impl GuestAppliance for TalosAppliance {
    fn kind(&self) -> &str {
        "talos"
    }

    async fn boot(&self, ctx: &GuestContext) -> Result<(), String> {
        let existing = lock(&self.node).clone();
        match existing {
            Some(n) => {
                if matches!(n.stage(), Stage::Stopped) {
                    n.power_on();
                }
            }
            None => {
                let (platform_address, no_dhcp) = maintenance_network(ctx);
                let n = self.fleet.start_node(NodeOptions {
                    dhcp_address: None,
                    name: ctx.name.clone(),
                    platform_address,
                    no_dhcp,
                    talos_version: super::upgrade::version_in(&ctx.image_hint()),
                });
                *lock(&self.node) = Some(n);
            }
        }
        Ok(())
    }

    async fn shutdown(&self, _ctx: &GuestContext) {
        let n = lock(&self.node).clone();
        if let Some(n) = n {
            n.power_off().await;
        }
    }

    fn agent_running(&self) -> bool {
        lock(&self.node)
            .as_ref()
            .is_some_and(|n| matches!(n.stage(), Stage::Maintenance | Stage::Running))
    }

    fn interfaces(&self, ctx: &GuestContext) -> Vec<GuestInterface> {
        let addr: Option<Ipv4Addr> = lock(&self.node).as_ref().and_then(TalosNode::address);
        let mut out = vec![GuestInterface {
            name: "lo".into(),
            mac: "00:00:00:00:00:00".into(),
            ipv4: vec![(Ipv4Addr::LOCALHOST, 8)],
            ipv6: vec![("::1".into(), 128)],
        }];
        for (i, mac) in &ctx.macs {
            let ipv4 = if *i == 0 {
                addr.map(|a| vec![(a, 24)]).unwrap_or_default()
            } else {
                Vec::new()
            };
            out.push(GuestInterface {
                name: format!("eth{i}"),
                mac: mac.to_ascii_lowercase(),
                ipv4,
                ipv6: Vec::new(),
            });
        }
        out
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
