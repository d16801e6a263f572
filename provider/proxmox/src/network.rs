//! Host networking (Linux bridges) and SDN (simple zones, vnets, subnets); the firewall is in
//! `firewall.rs`.

use serde_json::Value;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::params::{api_path, Params};
use crate::props::{validate_bridge, validate_cidr4, validate_node};
use crate::sdn_adopt::{adopt_if_pending, effective, subnet_matches, vnet_matches, zone_matches};
use crate::task::WaitOptions;

/// A Linux bridge (`POST /nodes/{node}/network`, `type=bridge`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec {
    /// Interface name (`vmbr1`).
    pub iface: String,
    /// Host address on the bridge (`10.10.0.1/24`).
    pub cidr: Option<String>,
    /// Gateway (only for the bridge carrying the default route).
    pub gateway: Option<String>,
    /// Bring up at boot.
    pub autostart: bool,
    /// Physical ports (space-separated in PVE); empty for an isolated bridge.
    pub bridge_ports: Vec<String>,
    /// VLAN aware.
    pub vlan_aware: bool,
    /// Comment.
    pub comments: Option<String>,
    /// MTU.
    pub mtu: Option<u32>,
}

impl BridgeSpec {
    /// An isolated bridge with a host address.
    pub fn isolated(iface: &str, cidr: &str) -> Self {
        BridgeSpec {
            iface: iface.to_string(),
            cidr: Some(cidr.to_string()),
            gateway: None,
            autostart: true,
            bridge_ports: Vec::new(),
            vlan_aware: false,
            comments: None,
            mtu: None,
        }
    }

    fn params(&self) -> Result<Params> {
        validate_bridge(&self.iface)?;
        if let Some(c) = &self.cidr {
            validate_cidr4(c)?;
        }
        for p in &self.bridge_ports {
            validate_bridge(p)?;
        }
        let mut p = Params::new()
            .str("type", "bridge")
            .str("iface", &self.iface)
            .opt_str("cidr", self.cidr.as_deref())
            .opt_str("gateway", self.gateway.as_deref())
            .bool("autostart", self.autostart)
            .opt_str("comments", self.comments.as_deref())
            .opt_int("mtu", self.mtu);
        if !self.bridge_ports.is_empty() {
            p = p.str("bridge_ports", self.bridge_ports.join(" "));
        }
        if self.vlan_aware {
            p = p.bool("bridge_vlan_aware", true);
        }
        Ok(p)
    }
}

/// SDN subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetSpec {
    /// CIDR (`10.10.0.0/24`).
    pub cidr: String,
    /// Gateway address (`10.10.0.1`).
    pub gateway: Option<String>,
    /// Source NAT to the outside.
    pub snat: bool,
    /// DHCP ranges (`start-address=10.10.0.100,end-address=10.10.0.200`), needs a zone with
    /// `dhcp=dnsmasq`.
    pub dhcp_ranges: Vec<String>,
}

/// SDN subnet id as PVE names it: `{zone}-{network}-{prefix}` (e.g. `waddle-10.10.0.0-24`).
pub fn sdn_subnet_id(zone: &str, cidr: &str) -> String {
    format!("{zone}-{}", cidr.replace('/', "-"))
}

impl Client {
    // ---- host network -------------------------------------------------------------------

    /// `GET /nodes/{node}/network` (including pending changes).
    pub async fn list_network(&self, node: &str) -> Result<Vec<Value>> {
        let v: Value = self
            .get(&api_path(&["nodes", node, "network"]), &Params::new())
            .await?;
        Ok(match v {
            Value::Array(a) => a,
            _ => Vec::new(),
        })
    }

    /// `GET /nodes/{node}/network/{iface}`; `None` when absent.
    pub async fn get_network_iface(&self, node: &str, iface: &str) -> Result<Option<Value>> {
        match self
            .get::<Value>(
                &api_path(&["nodes", node, "network", iface]),
                &Params::new(),
            )
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create a Linux bridge (pending until [`Client::apply_network`]).
    pub async fn create_bridge(&self, node: &str, spec: &BridgeSpec) -> Result<()> {
        validate_node(node)?;
        let params = spec.params()?;
        self.post(&api_path(&["nodes", node, "network"]), &params)
            .await?;
        Ok(())
    }

    /// Update a bridge (`PUT /nodes/{node}/network/{iface}`; pending until applied).
    pub async fn update_bridge(&self, node: &str, spec: &BridgeSpec) -> Result<()> {
        let params = spec.params()?;
        self.put(&api_path(&["nodes", node, "network", &spec.iface]), &params)
            .await?;
        Ok(())
    }

    /// Delete an interface (pending until applied). Absent is success.
    pub async fn delete_network_iface(&self, node: &str, iface: &str) -> Result<()> {
        match self
            .delete(
                &api_path(&["nodes", node, "network", iface]),
                &Params::new(),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Apply pending network changes (`PUT /nodes/{node}/network`) and wait for the reload.
    pub async fn apply_network(&self, node: &str) -> Result<()> {
        let _permit = self.node_permit(node).await;
        let data = self
            .put(&api_path(&["nodes", node, "network"]), &Params::new())
            .await?;
        if let Value::String(_) = data {
            self.wait_task_value(&data, &WaitOptions::default()).await?;
        }
        Ok(())
    }

    /// Discard pending network changes (`DELETE /nodes/{node}/network`).
    pub async fn revert_network(&self, node: &str) -> Result<()> {
        self.delete(&api_path(&["nodes", node, "network"]), &Params::new())
            .await?;
        Ok(())
    }

    // ---- SDN -----------------------------------------------------------------------------

    /// Create a `simple` SDN zone (optionally with `dhcp=dnsmasq` and `ipam=pve`). When the
    /// outcome is unknown, a zone that exists as requested is adopted (see `sdn_adopt`); the
    /// vnet and subnet creates below do the same.
    pub async fn create_sdn_simple_zone(
        &self,
        zone: &str,
        dhcp: bool,
        nodes: &[String],
    ) -> Result<()> {
        validate_sdn_id("zone", zone, 8)?;
        let mut p = Params::new().str("zone", zone).str("type", "simple");
        if dhcp {
            p = p.str("dhcp", "dnsmasq").str("ipam", "pve");
        }
        if !nodes.is_empty() {
            p = p.str("nodes", nodes.join(","));
        }
        let what = format!("SDN zone {zone:?}");
        let pending = self.find_pending_sdn("zones", "zone", zone).await?;
        if adopt_if_pending(&what, pending.as_ref(), |o| zone_matches(o, dhcp, nodes))? {
            return Ok(());
        }
        let found = || async { self.get_sdn_zone(zone).await };
        let look = || async { Ok(zone_matches(found().await?.as_ref(), dhcp, nodes)) };
        self.create_or_adopt(&what, "/cluster/sdn/zones", &p, look)
            .await
    }

    /// Create a vnet in a zone.
    pub async fn create_sdn_vnet(&self, vnet: &str, zone: &str, alias: Option<&str>) -> Result<()> {
        validate_sdn_id("vnet", vnet, 8)?;
        let p = Params::new()
            .str("vnet", vnet)
            .str("zone", zone)
            .opt_str("alias", alias);
        let what = format!("SDN vnet {vnet:?}");
        let pending = self.find_pending_sdn("vnets", "vnet", vnet).await?;
        if adopt_if_pending(&what, pending.as_ref(), |o| vnet_matches(o, zone, alias))? {
            return Ok(());
        }
        let found = || async { self.get_sdn_vnet(vnet).await };
        let look = || async { Ok(vnet_matches(found().await?.as_ref(), zone, alias)) };
        self.create_or_adopt(&what, "/cluster/sdn/vnets", &p, look)
            .await
    }

    /// Create a subnet in a vnet.
    pub async fn create_sdn_subnet(&self, vnet: &str, spec: &SubnetSpec) -> Result<()> {
        validate_cidr4(&spec.cidr)?;
        let mut p = Params::new()
            .str("subnet", &spec.cidr)
            .str("type", "subnet")
            .opt_str("gateway", spec.gateway.as_deref());
        if spec.snat {
            p = p.bool("snat", true);
        }
        if !spec.dhcp_ranges.is_empty() {
            p = p.list("dhcp-range", spec.dhcp_ranges.clone());
        }
        let path = api_path(&["cluster", "sdn", "vnets", vnet, "subnets"]);
        let what = format!("SDN subnet {}", spec.cidr);
        let pending: Vec<Value> = match self.get(&path, &Params::new().bool("pending", true)).await
        {
            Ok(Value::Array(a)) => a.iter().map(effective).collect(),
            Ok(_) => Vec::new(),
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e),
        };
        let same_cidr = pending
            .iter()
            .find(|s| crate::value::f_str(s, "cidr").as_deref() == Some(spec.cidr.as_str()));
        let matches = |o: Option<&Value>| subnet_matches(&Vec::from_iter(o.cloned()), spec);
        if adopt_if_pending(&what, same_cidr, matches)? {
            return Ok(());
        }
        self.create_or_adopt(&what, &path, &p, || async {
            let subnets = match self.list_sdn_subnets(vnet).await {
                Ok(s) => s,
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => return Err(e),
            };
            Ok(subnet_matches(&subnets, spec))
        })
        .await
    }

    /// Delete a subnet (by CIDR). Absent is success.
    pub async fn delete_sdn_subnet(&self, zone: &str, vnet: &str, cidr: &str) -> Result<()> {
        let id = sdn_subnet_id(zone, cidr);
        ok_if_absent(
            self.delete(
                &api_path(&["cluster", "sdn", "vnets", vnet, "subnets", &id]),
                &Params::new(),
            )
            .await,
        )
    }

    /// Delete a vnet. Absent is success.
    pub async fn delete_sdn_vnet(&self, vnet: &str) -> Result<()> {
        ok_if_absent(
            self.delete(
                &api_path(&["cluster", "sdn", "vnets", vnet]),
                &Params::new(),
            )
            .await,
        )
    }

    /// Delete a zone. Absent is success.
    pub async fn delete_sdn_zone(&self, zone: &str) -> Result<()> {
        ok_if_absent(
            self.delete(
                &api_path(&["cluster", "sdn", "zones", zone]),
                &Params::new(),
            )
            .await,
        )
    }

    /// The object `id` of `/cluster/sdn/{kind}` in the pending configuration (`pending=1`: with
    /// `state` `new`, `changed` or `deleted` when it differs from the running one).
    async fn find_pending_sdn(&self, kind: &str, key: &str, id: &str) -> Result<Option<Value>> {
        let list: Value = self
            .get(
                &api_path(&["cluster", "sdn", kind]),
                &Params::new().bool("pending", true),
            )
            .await?;
        Ok(match list {
            Value::Array(a) => a
                .into_iter()
                .find(|o| crate::value::f_str(o, key).as_deref() == Some(id)),
            _ => None,
        })
    }

    /// `GET /cluster/sdn/zones/{zone}`; `None` when absent.
    pub async fn get_sdn_zone(&self, zone: &str) -> Result<Option<Value>> {
        opt_if_absent(
            self.get(
                &api_path(&["cluster", "sdn", "zones", zone]),
                &Params::new(),
            )
            .await,
        )
    }

    /// `GET /cluster/sdn/vnets/{vnet}`; `None` when absent.
    pub async fn get_sdn_vnet(&self, vnet: &str) -> Result<Option<Value>> {
        opt_if_absent(
            self.get(
                &api_path(&["cluster", "sdn", "vnets", vnet]),
                &Params::new(),
            )
            .await,
        )
    }

    /// `GET /cluster/sdn/vnets/{vnet}/subnets`.
    pub async fn list_sdn_subnets(&self, vnet: &str) -> Result<Vec<Value>> {
        let v: Value = self
            .get(
                &api_path(&["cluster", "sdn", "vnets", vnet, "subnets"]),
                &Params::new(),
            )
            .await?;
        Ok(match v {
            Value::Array(a) => a,
            _ => Vec::new(),
        })
    }

    /// Apply pending SDN changes (`PUT /cluster/sdn`) and wait for the reload task.
    pub async fn apply_sdn(&self) -> Result<()> {
        self.apply_sdn_with(&WaitOptions::default()).await
    }

    /// [`Client::apply_sdn`], waiting for the reload task as `wait` says.
    pub async fn apply_sdn_with(&self, wait: &WaitOptions) -> Result<()> {
        let data = self.put("/cluster/sdn", &Params::new()).await?;
        if let Value::String(_) = data {
            self.wait_task_value(&data, wait).await?;
        }
        Ok(())
    }
}

pub(crate) fn validate_sdn_id(what: &str, id: &str, max: usize) -> Result<()> {
    let b = id.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= max
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || (max > 8 && b"-_".contains(c)));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{what}: {id:?} must start with a letter and be at most {max} letters/digits"
        )))
    }
}

pub(crate) fn ok_if_absent(r: Result<Value>) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

pub(crate) fn opt_if_absent(r: Result<Value>) -> Result<Option<Value>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_params() {
        let mut b = BridgeSpec::isolated("vmbr1", "10.10.0.1/24");
        b.comments = Some("waddle private".into());
        let j = b.params().unwrap().to_json();
        assert_eq!(j["type"], "bridge");
        assert_eq!(j["iface"], "vmbr1");
        assert_eq!(j["cidr"], "10.10.0.1/24");
        assert_eq!(j["autostart"], true);
        assert!(j.get("bridge_ports").is_none());
        b.bridge_ports = vec!["eno1".into(), "eno2".into()];
        assert_eq!(b.params().unwrap().to_json()["bridge_ports"], "eno1 eno2");
        assert!(BridgeSpec::isolated("vmbr1", "10.10.0.1").params().is_err());
        assert!(BridgeSpec::isolated("1vmbr", "10.10.0.1/24")
            .params()
            .is_err());
    }

    #[test]
    fn rules_and_ids() {
        assert_eq!(
            sdn_subnet_id("waddle", "10.10.0.0/24"),
            "waddle-10.10.0.0-24"
        );
        assert!(validate_sdn_id("zone", "waddle", 8).is_ok());
        assert!(validate_sdn_id("zone", "waddle-net", 8).is_err());
        assert!(validate_sdn_id("ipset", "waddle-admins", 64).is_ok());
    }
}
