//! How a Proxmox-created Talos node gets its address before it is configured.
//!
//! The platform's private network (`modules/network`: 10.10.0.0/24) has no DHCP server, so a
//! node cannot wait for a DHCP lease. Each VM instead gets its static address, gateway and
//! nameservers **before it boots** through the Proxmox VE built-in cloud-init drive
//! (`ide2: <storage>:cloudinit`, `citype=nocloud`, `ipconfig0=ip=<address>,gw=<gateway>`,
//! `nameserver`). PVE renders it at every start as a `cidata` drive whose `network-config`
//! (version 1) matches the NIC by MAC; Talos's `nocloud` platform (the Image Factory
//! `nocloud` disk image) applies it in maintenance mode. The `user-data` PVE writes is a
//! `#cloud-config` document, which Talos does not take for a machine configuration, so the
//! node waits in maintenance mode for ours, applied to the static address over the Talos
//! API.
//!
//! Why the PVE drive rather than our own NoCloud seed ISO (as `waddle_sni_proxy` uses, which
//! needs a user-data document of its own anyway): it needs no ISO upload per node (no `iso`
//! content storage, no `Datastore.AllocateTemplate`, nothing to delete afterwards: the drive
//! is a volume of the VM and goes with it), PVE regenerates it from the VM's configuration on
//! every start, and it is the setup the platform used before this provider (and what
//! `talosctl` documents for Proxmox). It needs `VM.Config.Cloudinit` and a storage with
//! `images` content for the drive, the node's `proxmox.storage`.
//!
//! The guest agent is not needed: the Talos API on the static address is the readiness
//! signal. Only while that address does not answer, an IPv4 address the guest agent reports
//! on the node's NIC (a network that does have DHCP) is tried too; an agent that does not
//! answer is no error.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use waddle_proxmox::{CloudInitSpec, IpConfig};
use waddle_talos::api::{ApplyMode, TalosClient};

use super::{answers_mtls, api_addr, classify, Attempt, ClusterModel, Env, NodeModel, R};

/// The cloud-init drive of a node's VM, on `storage`: the node's address and gateway on
/// `net0`, the cluster's nameservers.
pub fn cloud_init(m: &ClusterModel, n: &NodeModel, storage: &str) -> CloudInitSpec {
    let mut ci = CloudInitSpec::nocloud(storage);
    ci.ipconfig.insert(
        0,
        IpConfig::static_address(&n.address, n.gateway.as_deref()),
    );
    ci.nameservers = m.nameservers.clone().unwrap_or_default();
    ci
}

/// A node's VM, where the guest agent may be asked for a DHCP address.
pub struct VmNic<'a> {
    pub pve: &'a waddle_proxmox::Client,
    pub node: &'a str,
    pub vmid: u32,
    /// The NIC's MAC (any NIC when `None`).
    pub mac: Option<&'a str>,
}

/// One ApplyConfiguration attempt in maintenance mode at `ep`. An attempt whose answer was
/// lost (the connection broke: the node may have taken the configuration and rebooted) sets
/// `unknown`; from then on a node that answers the Talos API with this cluster's credentials
/// has taken it, so the next attempt looks there first instead of waiting for a maintenance
/// mode that is gone.
async fn apply_once(env: &Env, ep: SocketAddr, config: &str, unknown: &AtomicBool) -> Attempt<()> {
    if unknown.load(Ordering::Relaxed) && answers_mtls(env, &ep.ip().to_string()).await {
        tracing::info!(endpoint = %ep, "the lost ApplyConfiguration answer: the node took the configuration");
        return Attempt::Done(());
    }
    let c = match TalosClient::connect_maintenance(ep, &env.opts()).await {
        Ok(c) => c,
        Err(e) => return classify(e),
    };
    match c.apply_configuration(config, ApplyMode::Auto).await {
        Ok(_) => Attempt::Done(()),
        Err(e) if e.is_outcome_unknown() => {
            unknown.store(true, Ordering::Relaxed);
            Attempt::Again(format!(
                "{} (the answer was lost; looking whether the node took the configuration)",
                waddle_framework::error_chain(&e)
            ))
        }
        Err(e) => classify(e),
    }
}

/// Applies `config` in maintenance mode at `addr` (`ip` or `ip:port`), retrying until the
/// node answers.
pub async fn apply_maintenance(env: &Env, name: &str, addr: &str, config: &str) -> R<()> {
    let ep = api_addr(addr).map_err(|e| e.to_string())?;
    let unknown = AtomicBool::new(false);
    env.retry(
        &format!("nodes[{name:?}]: apply in maintenance mode at {ep}"),
        || apply_once(env, ep, config, &unknown),
    )
    .await
}

/// Applies `config` in maintenance mode to a VM's node at its static address `ip`; while
/// that does not answer, also at an IPv4 address the guest agent reports on the VM's NIC.
/// Returns the address that took the configuration.
pub async fn apply_maintenance_vm(
    env: &Env,
    name: &str,
    ip: &str,
    vm: &VmNic<'_>,
    config: &str,
) -> R<String> {
    let ep = api_addr(ip).map_err(|e| e.to_string())?;
    let (unknown, dhcp_unknown) = (AtomicBool::new(false), AtomicBool::new(false));
    env.retry(
        &format!("nodes[{name:?}]: apply in maintenance mode at {ep}"),
        || async {
            let why = match apply_once(env, ep, config, &unknown).await {
                Attempt::Done(()) => return Attempt::Done(ip.to_string()),
                Attempt::Fatal(e) => return Attempt::Fatal(e),
                Attempt::Again(why) => why,
            };
            let dhcp = match agent_ipv4(vm).await {
                Ok(a) => a.filter(|a| a != ip),
                // A Proxmox VE API that stays unreachable ends the wait with that cause.
                Err(e) => return Attempt::from_pve(e, why),
            };
            let Some(dhcp) = dhcp else {
                return Attempt::Again(why);
            };
            let dep = match api_addr(&dhcp) {
                Ok(d) => d,
                Err(_) => return Attempt::Again(why),
            };
            match apply_once(env, dep, config, &dhcp_unknown).await {
                Attempt::Done(()) => Attempt::Done(dhcp),
                Attempt::Fatal(e) => Attempt::Fatal(format!("at the DHCP address {dep}: {e}")),
                Attempt::Again(w) => Attempt::Again(format!("{why}; DHCP address {dep}: {w}")),
            }
        },
    )
    .await
}

/// An IPv4 address the guest agent reports on the VM's NIC, if the agent answers and has one.
async fn agent_ipv4(vm: &VmNic<'_>) -> Result<Option<String>, waddle_proxmox::Error> {
    let ifs = vm.pve.agent_network_interfaces(vm.node, vm.vmid).await?;
    let want = vm.mac.map(str::to_ascii_uppercase);
    Ok(ifs
        .iter()
        .filter(|i| i.name != "lo")
        .filter(|i| match (&want, &i.mac) {
            (Some(w), Some(m)) => w == m,
            (Some(_), None) => false,
            (None, _) => true,
        })
        .flat_map(|i| i.ips.iter())
        .find(|ip| ip.kind == "ipv4" && ip.address != "127.0.0.1")
        .map(|ip| ip.address.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_init_carries_address_gateway_and_nameservers() {
        let m = ClusterModel {
            nameservers: Some(vec!["10.10.0.1".into(), "9.9.9.9".into()]),
            ..ClusterModel::default()
        };
        let n = NodeModel {
            address: "10.10.0.10/24".into(),
            gateway: Some("10.10.0.1".into()),
            ..NodeModel::default()
        };
        let p = cloud_init(&m, &n, "local-lvm").params().unwrap();
        let get = |k: &str| p.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        assert_eq!(get("ide2"), Some("local-lvm:cloudinit"));
        assert_eq!(get("citype"), Some("nocloud"));
        assert_eq!(get("ipconfig0"), Some("ip=10.10.0.10/24,gw=10.10.0.1"));
        assert_eq!(get("nameserver"), Some("10.10.0.1 9.9.9.9"));
        let no_gw = NodeModel {
            address: "10.10.0.11/24".into(),
            ..NodeModel::default()
        };
        let p = cloud_init(&ClusterModel::default(), &no_gw, "ssd")
            .params()
            .unwrap();
        assert!(p.contains(&("ipconfig0".into(), "ip=10.10.0.11/24".into())));
        assert!(p.iter().all(|(k, _)| k != "nameserver"));
    }
}
