//! The Proxmox VE firewall API: cluster and node options, rules (cluster, node, security
//! group), security groups, IP sets and aliases.
//!
//! Wire facts (PVE 9.1 API schema, `pve-firewall`'s `Rules.pm`):
//! * `POST …/rules` always inserts the new rule at the **top** (position 0; a `pos` parameter
//!   is accepted and ignored) and stores `enable=0` when `enable` is not sent.
//! * Positions are indexes into the current list: a rule inserted above shifts every rule
//!   below it. `PUT`/`DELETE …/rules/{pos}` take the list's `digest` (SHA-1 over every rule,
//!   returned with each rule of `GET …/rules`) and fail when the list changed since it was
//!   read, so a change by position never hits a rule that moved.
//! * The cluster option `enable` is an integer, the node option `enable` a boolean.
//! * Security group rules live at `/cluster/firewall/groups/{group}[/{pos}]` (no `rules`
//!   segment).

use serde_json::Value;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::network::{ok_if_absent, opt_if_absent, validate_sdn_id};
use crate::params::{api_path, Params};
use crate::value::{f_bool, f_i64, f_str, f_u64, v_str};

/// Where firewall options/rules live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirewallScope {
    /// `/cluster/firewall` (also the only place with IP sets, groups and aliases).
    Cluster,
    /// `/nodes/{node}/firewall`.
    Node(String),
    /// A security group's rules: `/cluster/firewall/groups/{group}`.
    Group(String),
}

impl FirewallScope {
    fn path(&self, rest: &[&str]) -> String {
        let mut segs: Vec<&str> = match self {
            FirewallScope::Cluster => vec!["cluster", "firewall"],
            FirewallScope::Node(n) => vec!["nodes", n.as_str(), "firewall"],
            FirewallScope::Group(g) => vec!["cluster", "firewall", "groups", g.as_str()],
        };
        segs.extend_from_slice(rest);
        api_path(&segs)
    }

    /// The rule list (`…/rules`, or the group itself).
    fn rules_path(&self, pos: Option<u32>) -> String {
        let p = pos.map(|p| p.to_string());
        let mut rest: Vec<&str> = Vec::new();
        if !matches!(self, FirewallScope::Group(_)) {
            rest.push("rules");
        }
        if let Some(p) = &p {
            rest.push(p);
        }
        self.path(&rest)
    }

    fn options_path(&self) -> Result<String> {
        match self {
            FirewallScope::Group(g) => Err(Error::InvalidArgument(format!(
                "security group {g:?} has no options"
            ))),
            _ => Ok(self.path(&["options"])),
        }
    }
}

/// The rule properties `PUT …/rules/{pos}` can `delete` (every optional one).
pub const RULE_OPTIONAL_KEYS: &[&str] = &[
    "macro",
    "source",
    "dest",
    "proto",
    "dport",
    "sport",
    "iface",
    "log",
    "comment",
    "icmp-type",
];

/// A firewall rule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FirewallRule {
    /// Position (when read back; ignored by `POST`).
    pub pos: Option<u32>,
    /// `in`, `out`, `forward` or `group` (wire name `type`).
    pub direction: String,
    /// `ACCEPT`, `DROP`, `REJECT`, or the security group name of a `group` rule.
    pub action: String,
    /// Enabled.
    pub enable: bool,
    /// Source address/ipset/alias (`+ipset`, `10.0.0.0/8`, `a,b`, `a-b`).
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
    /// ICMP type (with `proto = icmp`).
    pub icmp_type: Option<String>,
}

impl FirewallRule {
    fn check(&self) -> Result<()> {
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
        Ok(())
    }

    /// The values this rule sets, by wire name (optional ones only when present).
    fn fields(&self) -> Vec<(&'static str, Option<&str>)> {
        vec![
            ("macro", self.macro_name.as_deref()),
            ("source", self.source.as_deref()),
            ("dest", self.dest.as_deref()),
            ("proto", self.proto.as_deref()),
            ("dport", self.dport.as_deref()),
            ("sport", self.sport.as_deref()),
            ("iface", self.iface.as_deref()),
            ("log", self.log.as_deref()),
            ("comment", self.comment.as_deref()),
            ("icmp-type", self.icmp_type.as_deref()),
        ]
    }

    fn params(&self) -> Result<Params> {
        self.check()?;
        let mut p = Params::new()
            .str("type", &self.direction)
            .str("action", &self.action)
            .int("enable", i64::from(self.enable));
        for (k, v) in self.fields() {
            p = p.opt_str(k, v);
        }
        Ok(p)
    }

    /// `PUT` parameters that make the rule at a position exactly this one: every field set,
    /// every absent optional field deleted.
    fn replace_params(&self) -> Result<Params> {
        let mut p = self.params()?;
        let absent: Vec<&str> = self
            .fields()
            .into_iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k)
            .collect();
        if !absent.is_empty() {
            p = p.str("delete", absent.join(","));
        }
        Ok(p)
    }

    /// A rule as `GET …/rules` returns it.
    pub fn from_value(v: &Value) -> FirewallRule {
        FirewallRule {
            pos: f_u64(v, "pos").and_then(|p| u32::try_from(p).ok()),
            direction: f_str(v, "type").unwrap_or_default(),
            action: f_str(v, "action").unwrap_or_default(),
            enable: f_bool(v, "enable").unwrap_or(false),
            source: f_str(v, "source"),
            dest: f_str(v, "dest"),
            proto: f_str(v, "proto"),
            dport: f_str(v, "dport"),
            sport: f_str(v, "sport"),
            macro_name: f_str(v, "macro"),
            iface: f_str(v, "iface"),
            log: f_str(v, "log"),
            comment: f_str(v, "comment"),
            icmp_type: f_str(v, "icmp-type"),
        }
    }
}

/// A rule list as read, with the digest every change by position must present.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleList {
    /// Rules in position order.
    pub rules: Vec<FirewallRule>,
    /// The list's digest (`None` for an empty list or an API that does not send one).
    pub digest: Option<String>,
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

/// A named object of the cluster firewall (IP set, security group) with its comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedFirewallObject {
    /// Name.
    pub name: String,
    /// Comment.
    pub comment: Option<String>,
}

/// An IP alias (`/cluster/firewall/aliases`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallAlias {
    /// Name (PVE compares aliases case-insensitively).
    pub name: String,
    /// Address or network.
    pub cidr: String,
}

/// The cluster firewall options waddle manages (`/cluster/firewall/options`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterFirewallOptions {
    /// `enable` (unset reads as disabled, PVE's default 0).
    pub enable: Option<bool>,
    /// `policy_in` (unset: PVE applies `DROP`).
    pub policy_in: Option<String>,
    /// `policy_out` (unset: PVE applies `ACCEPT`).
    pub policy_out: Option<String>,
    /// Digest of the options file.
    pub digest: Option<String>,
}

impl ClusterFirewallOptions {
    /// The input policy in effect (`DROP` when unset).
    pub fn effective_policy_in(&self) -> &str {
        self.policy_in.as_deref().unwrap_or("DROP")
    }
    /// The output policy in effect (`ACCEPT` when unset).
    pub fn effective_policy_out(&self) -> &str {
        self.policy_out.as_deref().unwrap_or("ACCEPT")
    }
}

fn list(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        _ => Vec::new(),
    }
}

fn validate_fw_name(what: &str, name: &str, max: usize) -> Result<()> {
    validate_sdn_id(what, name, max)
}

impl Client {
    // ---- options ---------------------------------------------------------------------------

    /// `GET {scope}/options`.
    pub async fn firewall_options(&self, scope: &FirewallScope) -> Result<Value> {
        self.get(&scope.options_path()?, &Params::new()).await
    }

    /// `PUT {scope}/options`. Note the cluster's `enable` is an integer and the node's a
    /// boolean; use [`Params::int`] / [`Params::bool`] accordingly (or
    /// [`Client::set_firewall_enabled`]).
    pub async fn set_firewall_options(&self, scope: &FirewallScope, params: &Params) -> Result<()> {
        self.put(&scope.options_path()?, params).await?;
        Ok(())
    }

    /// Enable or disable the firewall at a scope.
    pub async fn set_firewall_enabled(&self, scope: &FirewallScope, enabled: bool) -> Result<()> {
        let p = match scope {
            FirewallScope::Node(_) => Params::new().bool("enable", enabled),
            _ => Params::new().int("enable", i64::from(enabled)),
        };
        self.set_firewall_options(scope, &p).await
    }

    /// The cluster options waddle manages.
    pub async fn cluster_firewall_options(&self) -> Result<ClusterFirewallOptions> {
        let v = self.firewall_options(&FirewallScope::Cluster).await?;
        Ok(ClusterFirewallOptions {
            enable: f_i64(&v, "enable").map(|e| e != 0),
            policy_in: f_str(&v, "policy_in"),
            policy_out: f_str(&v, "policy_out"),
            digest: f_str(&v, "digest"),
        })
    }

    /// Set (or, for `None`, delete back to PVE's default) `enable`, `policy_in` and
    /// `policy_out` of the cluster firewall in one `PUT`.
    pub async fn set_cluster_firewall_options(&self, o: &ClusterFirewallOptions) -> Result<()> {
        let mut p = Params::new();
        let mut del = Vec::new();
        match o.enable {
            Some(e) => p = p.int("enable", i64::from(e)),
            None => del.push("enable"),
        }
        for (k, v) in [("policy_in", &o.policy_in), ("policy_out", &o.policy_out)] {
            match v {
                Some(v) => {
                    if !matches!(v.as_str(), "ACCEPT" | "REJECT" | "DROP") {
                        return Err(Error::InvalidArgument(format!(
                            "{k}: {v:?} must be ACCEPT, REJECT or DROP"
                        )));
                    }
                    p = p.str(k, v);
                }
                None => del.push(k),
            }
        }
        if !del.is_empty() {
            p = p.str("delete", del.join(","));
        }
        p = p.opt_str("digest", o.digest.as_deref());
        self.set_firewall_options(&FirewallScope::Cluster, &p).await
    }

    /// A node's host firewall switch (`enable`, default on).
    pub async fn node_firewall_enabled(&self, node: &str) -> Result<bool> {
        let v = self
            .firewall_options(&FirewallScope::Node(node.to_string()))
            .await?;
        Ok(f_bool(&v, "enable").unwrap_or(true))
    }

    // ---- rules -----------------------------------------------------------------------------

    /// `GET {scope}/rules` (ordered by position).
    pub async fn firewall_rules(&self, scope: &FirewallScope) -> Result<Vec<FirewallRule>> {
        Ok(self.firewall_rule_list(scope).await?.rules)
    }

    /// `GET {scope}/rules` with the list's digest.
    pub async fn firewall_rule_list(&self, scope: &FirewallScope) -> Result<RuleList> {
        let v: Value = self.get(&scope.rules_path(None), &Params::new()).await?;
        let items = list(v);
        let digest = items.iter().find_map(|r| f_str(r, "digest"));
        let mut rules: Vec<FirewallRule> = items.iter().map(FirewallRule::from_value).collect();
        rules.sort_by_key(|r| r.pos);
        Ok(RuleList { rules, digest })
    }

    /// `POST {scope}/rules`: PVE inserts the rule at the top (position 0).
    pub async fn add_firewall_rule(
        &self,
        scope: &FirewallScope,
        rule: &FirewallRule,
    ) -> Result<()> {
        self.post(&scope.rules_path(None), &rule.params()?).await?;
        Ok(())
    }

    /// `PUT {scope}/rules/{pos}` making the rule at `pos` exactly `rule` (absent optional
    /// fields deleted); `digest` guards against a list that changed since it was read.
    pub async fn replace_firewall_rule(
        &self,
        scope: &FirewallScope,
        pos: u32,
        rule: &FirewallRule,
        digest: Option<&str>,
    ) -> Result<()> {
        let p = rule.replace_params()?.opt_str("digest", digest);
        self.put(&scope.rules_path(Some(pos)), &p).await?;
        Ok(())
    }

    /// `PUT {scope}/rules/{pos}` with `moveto`.
    pub async fn move_firewall_rule(
        &self,
        scope: &FirewallScope,
        pos: u32,
        moveto: u32,
        digest: Option<&str>,
    ) -> Result<()> {
        let p = Params::new()
            .int("moveto", i64::from(moveto))
            .opt_str("digest", digest);
        self.put(&scope.rules_path(Some(pos)), &p).await?;
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
            &scope.rules_path(Some(pos)),
            &Params::new().opt_str("digest", digest),
        )
        .await?;
        Ok(())
    }

    // ---- security groups -------------------------------------------------------------------

    /// `GET /cluster/firewall/groups`.
    pub async fn firewall_groups(&self) -> Result<Vec<NamedFirewallObject>> {
        let v: Value = self.get("/cluster/firewall/groups", &Params::new()).await?;
        Ok(list(v)
            .iter()
            .filter_map(|g| {
                Some(NamedFirewallObject {
                    name: f_str(g, "group")?,
                    comment: f_str(g, "comment"),
                })
            })
            .collect())
    }

    /// Create a security group (at most 18 characters, PVE's limit).
    pub async fn create_firewall_group(&self, name: &str, comment: Option<&str>) -> Result<()> {
        validate_fw_name("security group", name, 18)?;
        self.post(
            "/cluster/firewall/groups",
            &Params::new().str("group", name).opt_str("comment", comment),
        )
        .await?;
        Ok(())
    }

    /// Delete a security group (PVE refuses one that still has rules). Absent is success.
    pub async fn delete_firewall_group(&self, name: &str) -> Result<()> {
        ok_if_absent(
            self.delete(
                &api_path(&["cluster", "firewall", "groups", name]),
                &Params::new(),
            )
            .await,
        )
    }

    // ---- IP sets ---------------------------------------------------------------------------

    /// `GET /cluster/firewall/ipset`.
    pub async fn ipsets(&self) -> Result<Vec<NamedFirewallObject>> {
        let v: Value = self.get("/cluster/firewall/ipset", &Params::new()).await?;
        Ok(list(v)
            .iter()
            .filter_map(|s| {
                Some(NamedFirewallObject {
                    name: f_str(s, "name")?,
                    comment: f_str(s, "comment"),
                })
            })
            .collect())
    }

    /// Create a cluster ipset.
    pub async fn create_ipset(&self, name: &str, comment: Option<&str>) -> Result<()> {
        validate_fw_name("ipset", name, 64)?;
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
        Ok(v.map(|v| {
            list(v)
                .iter()
                .filter_map(|e| {
                    Some(IpSetEntry {
                        cidr: f_str(e, "cidr")?,
                        nomatch: f_bool(e, "nomatch").unwrap_or(false),
                        comment: e.get("comment").and_then(v_str),
                    })
                })
                .collect()
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

    // ---- aliases ---------------------------------------------------------------------------

    /// `GET /cluster/firewall/aliases`.
    pub async fn firewall_aliases(&self) -> Result<Vec<FirewallAlias>> {
        let v: Value = self
            .get("/cluster/firewall/aliases", &Params::new())
            .await?;
        Ok(list(v)
            .iter()
            .filter_map(|a| {
                Some(FirewallAlias {
                    name: f_str(a, "name")?,
                    cidr: f_str(a, "cidr")?,
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> FirewallRule {
        FirewallRule {
            direction: "in".into(),
            action: "ACCEPT".into(),
            enable: true,
            proto: Some("tcp".into()),
            dport: Some("443".into()),
            source: Some("+waddle-admins".into()),
            ..Default::default()
        }
    }

    #[test]
    fn rule_params() {
        let j = rule().params().unwrap().to_json();
        assert_eq!(j["type"], "in");
        assert_eq!(j["enable"], 1);
        assert_eq!(j["dport"], "443");
        assert!(j.get("pos").is_none(), "POST ignores pos: never sent");
        let bad = FirewallRule {
            direction: "sideways".into(),
            ..rule()
        };
        assert!(bad.params().is_err());
        // A replacement deletes every optional field the rule does not set.
        let j = rule().replace_params().unwrap().to_json();
        let del: Vec<&str> = j["delete"].as_str().unwrap().split(',').collect();
        assert!(
            del.contains(&"comment") && del.contains(&"macro"),
            "{del:?}"
        );
        assert!(!del.contains(&"dport") && !del.contains(&"source"));
    }

    #[test]
    fn paths() {
        assert_eq!(
            FirewallScope::Node("pve".into()).rules_path(Some(3)),
            "/nodes/pve/firewall/rules/3"
        );
        assert_eq!(
            FirewallScope::Cluster.rules_path(None),
            "/cluster/firewall/rules"
        );
        assert_eq!(
            FirewallScope::Group("ops".into()).rules_path(Some(0)),
            "/cluster/firewall/groups/ops/0"
        );
        assert!(FirewallScope::Group("ops".into()).options_path().is_err());
        assert_eq!(
            FirewallScope::Node("pve".into()).options_path().unwrap(),
            "/nodes/pve/firewall/options"
        );
    }

    #[test]
    fn rules_read_back() {
        let v = serde_json::json!({"pos": 2, "type": "in", "action": "DROP", "enable": 1,
            "comment": "waddle:ssh", "icmp-type": "echo-request", "digest": "ab"});
        let r = FirewallRule::from_value(&v);
        assert_eq!(r.pos, Some(2));
        assert!(r.enable);
        assert_eq!(r.icmp_type.as_deref(), Some("echo-request"));
        assert_eq!(r.comment.as_deref(), Some("waddle:ssh"));
        let o = ClusterFirewallOptions::default();
        assert_eq!(o.effective_policy_in(), "DROP");
        assert_eq!(o.effective_policy_out(), "ACCEPT");
    }
}
