//! Host networking (Linux bridges), SDN (simple zones, vnets, subnets) and the firewall.

use serde_json::Value;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::params::{api_path, Params};
use crate::props::{validate_bridge, validate_cidr4, validate_node};
use crate::sdn_adopt::{subnet_matches, vnet_matches, zone_matches};
use crate::task::WaitOptions;
use crate::value::{f_str, v_str};

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

/// Where firewall options/rules live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirewallScope {
    /// `/cluster/firewall` (also the only place with ipsets).
    Cluster,
    /// `/nodes/{node}/firewall`.
    Node(String),
}

impl FirewallScope {
    fn path(&self, rest: &[&str]) -> String {
        let mut segs: Vec<&str> = match self {
            FirewallScope::Cluster => vec!["cluster", "firewall"],
            FirewallScope::Node(n) => vec!["nodes", n.as_str(), "firewall"],
        };
        segs.extend_from_slice(rest);
        api_path(&segs)
    }
}

/// A firewall rule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FirewallRule {
    /// Position (when read back).
    pub pos: Option<u32>,
    /// `in`, `out`, `forward` or `group`.
    pub direction: String,
    /// `ACCEPT`, `DROP`, `REJECT` or a security group name.
    pub action: String,
    /// Enabled.
    pub enable: bool,
    /// Source address/ipset/alias (`+ipset`, `10.0.0.0/8`).
    pub source: Option<String>,
    /// Destination.
    pub dest: Option<String>,
    /// Protocol (`tcp`, `udp`, `icmp`).
    pub proto: Option<String>,
    /// Destination port(s) (`443`, `80,443`, `8000:8100`).
    pub dport: Option<String>,
    /// Source port(s).
    pub sport: Option<String>,
    /// Macro (`SSH`, `HTTPS`).
    pub macro_name: Option<String>,
    /// Interface.
    pub iface: Option<String>,
    /// Log level.
    pub log: Option<String>,
    /// Comment.
    pub comment: Option<String>,
}

impl FirewallRule {
    fn params(&self) -> Result<Params> {
        if !matches!(self.direction.as_str(), "in" | "out" | "forward" | "group") {
            return Err(Error::InvalidArgument(format!(
                "firewall rule type: {:?} must be in, out, forward or group",
                self.direction
            )));
        }
        if self.action.is_empty() {
            return Err(Error::InvalidArgument(
                "firewall rule action is empty".into(),
            ));
        }
        Ok(Params::new()
            .str("type", &self.direction)
            .str("action", &self.action)
            .int("enable", i64::from(self.enable))
            .opt_str("source", self.source.as_deref())
            .opt_str("dest", self.dest.as_deref())
            .opt_str("proto", self.proto.as_deref())
            .opt_str("dport", self.dport.as_deref())
            .opt_str("sport", self.sport.as_deref())
            .opt_str("macro", self.macro_name.as_deref())
            .opt_str("iface", self.iface.as_deref())
            .opt_str("log", self.log.as_deref())
            .opt_str("comment", self.comment.as_deref())
            .opt_int("pos", self.pos))
    }

    fn from_value(v: &Value) -> FirewallRule {
        FirewallRule {
            pos: crate::value::f_u64(v, "pos").and_then(|p| u32::try_from(p).ok()),
            direction: f_str(v, "type").unwrap_or_default(),
            action: f_str(v, "action").unwrap_or_default(),
            enable: crate::value::f_bool(v, "enable").unwrap_or(false),
            source: f_str(v, "source"),
            dest: f_str(v, "dest"),
            proto: f_str(v, "proto"),
            dport: f_str(v, "dport"),
            sport: f_str(v, "sport"),
            macro_name: f_str(v, "macro"),
            iface: f_str(v, "iface"),
            log: f_str(v, "log"),
            comment: f_str(v, "comment"),
        }
    }
}

/// An ipset entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpSetEntry {
    /// Address or CIDR.
    pub cidr: String,
    /// Exclude instead of include.
    pub nomatch: bool,
    /// Comment.
    pub comment: Option<String>,
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
        let found = || async { self.get_sdn_zone(zone).await };
        let look = || async { Ok(zone_matches(found().await?.as_ref(), dhcp, nodes)) };
        let what = format!("SDN zone {zone:?}");
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
        let found = || async { self.get_sdn_vnet(vnet).await };
        let look = || async { Ok(vnet_matches(found().await?.as_ref(), zone, alias)) };
        let what = format!("SDN vnet {vnet:?}");
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
        self.create_or_adopt(&format!("SDN subnet {}", spec.cidr), &path, &p, || async {
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

    // ---- firewall --------------------------------------------------------------------------

    /// `GET {scope}/options`.
    pub async fn firewall_options(&self, scope: &FirewallScope) -> Result<Value> {
        self.get(&scope.path(&["options"]), &Params::new()).await
    }

    /// `PUT {scope}/options`. Note the cluster's `enable` is an integer and the node's a
    /// boolean; use [`Params::int`] / [`Params::bool`] accordingly (or
    /// [`Client::set_firewall_enabled`]).
    pub async fn set_firewall_options(&self, scope: &FirewallScope, params: &Params) -> Result<()> {
        self.put(&scope.path(&["options"]), params).await?;
        Ok(())
    }

    /// Enable or disable the firewall at a scope.
    pub async fn set_firewall_enabled(&self, scope: &FirewallScope, enabled: bool) -> Result<()> {
        let p = match scope {
            FirewallScope::Cluster => Params::new().int("enable", i64::from(enabled)),
            FirewallScope::Node(_) => Params::new().bool("enable", enabled),
        };
        self.set_firewall_options(scope, &p).await
    }

    /// `GET {scope}/rules` (ordered by position).
    pub async fn firewall_rules(&self, scope: &FirewallScope) -> Result<Vec<FirewallRule>> {
        let v: Value = self.get(&scope.path(&["rules"]), &Params::new()).await?;
        let mut rules: Vec<FirewallRule> = match v {
            Value::Array(a) => a.iter().map(FirewallRule::from_value).collect(),
            _ => Vec::new(),
        };
        rules.sort_by_key(|r| r.pos);
        Ok(rules)
    }

    /// `POST {scope}/rules` (inserted at `rule.pos`, or at the top when absent).
    pub async fn add_firewall_rule(
        &self,
        scope: &FirewallScope,
        rule: &FirewallRule,
    ) -> Result<()> {
        self.post(&scope.path(&["rules"]), &rule.params()?).await?;
        Ok(())
    }

    /// `DELETE {scope}/rules/{pos}`; `digest` guards against concurrent edits.
    pub async fn delete_firewall_rule(
        &self,
        scope: &FirewallScope,
        pos: u32,
        digest: Option<&str>,
    ) -> Result<()> {
        self.delete(
            &scope.path(&["rules", &pos.to_string()]),
            &Params::new().opt_str("digest", digest),
        )
        .await?;
        Ok(())
    }

    /// Create a cluster ipset.
    pub async fn create_ipset(&self, name: &str, comment: Option<&str>) -> Result<()> {
        validate_sdn_id("ipset", name, 64)?;
        self.post(
            "/cluster/firewall/ipset",
            &Params::new().str("name", name).opt_str("comment", comment),
        )
        .await?;
        Ok(())
    }

    /// Add an entry to a cluster ipset.
    pub async fn add_ipset_entry(&self, name: &str, entry: &IpSetEntry) -> Result<()> {
        let mut p = Params::new()
            .str("cidr", &entry.cidr)
            .opt_str("comment", entry.comment.as_deref());
        if entry.nomatch {
            p = p.bool("nomatch", true);
        }
        self.post(&api_path(&["cluster", "firewall", "ipset", name]), &p)
            .await?;
        Ok(())
    }

    /// List a cluster ipset's entries; `None` when the ipset does not exist.
    pub async fn ipset_entries(&self, name: &str) -> Result<Option<Vec<IpSetEntry>>> {
        let v = opt_if_absent(
            self.get::<Value>(
                &api_path(&["cluster", "firewall", "ipset", name]),
                &Params::new(),
            )
            .await,
        )?;
        Ok(v.map(|v| match v {
            Value::Array(a) => a
                .iter()
                .filter_map(|e| {
                    Some(IpSetEntry {
                        cidr: f_str(e, "cidr")?,
                        nomatch: crate::value::f_bool(e, "nomatch").unwrap_or(false),
                        comment: e.get("comment").and_then(v_str),
                    })
                })
                .collect(),
            _ => Vec::new(),
        }))
    }

    /// Remove an entry from a cluster ipset. Absent is success.
    pub async fn delete_ipset_entry(&self, name: &str, cidr: &str) -> Result<()> {
        ok_if_absent(
            self.delete(
                &api_path(&["cluster", "firewall", "ipset", name, cidr]),
                &Params::new(),
            )
            .await,
        )
    }

    /// Delete a cluster ipset (must be empty). Absent is success.
    pub async fn delete_ipset(&self, name: &str) -> Result<()> {
        ok_if_absent(
            self.delete(
                &api_path(&["cluster", "firewall", "ipset", name]),
                &Params::new(),
            )
            .await,
        )
    }
}

fn validate_sdn_id(what: &str, id: &str, max: usize) -> Result<()> {
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

fn ok_if_absent(r: Result<Value>) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

fn opt_if_absent(r: Result<Value>) -> Result<Option<Value>> {
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
        let r = FirewallRule {
            direction: "in".into(),
            action: "ACCEPT".into(),
            enable: true,
            proto: Some("tcp".into()),
            dport: Some("443".into()),
            source: Some("+waddle-admins".into()),
            ..Default::default()
        };
        let j = r.params().unwrap().to_json();
        assert_eq!(j["type"], "in");
        assert_eq!(j["enable"], 1);
        assert_eq!(j["dport"], "443");
        let bad = FirewallRule {
            direction: "sideways".into(),
            ..r.clone()
        };
        assert!(bad.params().is_err());
        assert_eq!(
            sdn_subnet_id("waddle", "10.10.0.0/24"),
            "waddle-10.10.0.0-24"
        );
        assert!(validate_sdn_id("zone", "waddle", 8).is_ok());
        assert!(validate_sdn_id("zone", "waddle-net", 8).is_err());
        assert!(validate_sdn_id("ipset", "waddle-admins", 64).is_ok());
        assert_eq!(
            FirewallScope::Node("pve".into()).path(&["rules", "3"]),
            "/nodes/pve/firewall/rules/3"
        );
    }
}
