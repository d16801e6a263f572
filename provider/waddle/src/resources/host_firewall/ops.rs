//! Reading and converging the firewall. Every change to a rule is made on the rule found by
//! its mark in a list read just before, by position with that list's digest; when the list
//! changed in between (someone edited it), the change is refused by Proxmox and retried on a
//! fresh read.

use std::collections::{BTreeMap, BTreeSet};

use waddle_proxmox::{
    Client, ClusterFirewallOptions, FirewallRule, FirewallScope, IpSetEntry, RuleList,
};

use super::super::timeouts::Deadline;
use super::model::{from_api, parse_mark, same_rule, to_api, FirewallState, IpSetModel, RuleModel};

/// Marker in the comment of the IP set this resource owns.
pub const IPSET_COMMENT: &str = "waddle: operator addresses";

/// Why reading or converging the firewall failed.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("the deadline {0} passed")]
    Deadline(String),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: Box<waddle_proxmox::Error>,
    },
    #[error(
        "an IP set named {0:?} already exists and was not made by waddle (its comment \
         is not {IPSET_COMMENT:?}); choose another name, or import it with `<node>/{0}`"
    )]
    ForeignIpSet(String),
    /// A state without a node (it cannot be read or changed).
    #[error("{0}")]
    NoNode(&'static str),
}

type Res<T> = Result<T, FirewallError>;

/// A failed API call of step `what`.
fn api(what: impl Into<String>) -> impl FnOnce(waddle_proxmox::Error) -> FirewallError {
    let what = what.into();
    move |source| FirewallError::Api {
        what,
        source: Box::new(source),
    }
}

fn scope(node: &str) -> FirewallScope {
    FirewallScope::Node(node.to_string())
}

fn check(deadline: &Deadline) -> Res<()> {
    if deadline.passed() {
        Err(FirewallError::Deadline(deadline.to_string()))
    } else {
        Ok(())
    }
}

/// `(position, key)` of every marked rule, first occurrence per key first.
fn marked(list: &RuleList) -> Vec<(u32, String, &FirewallRule)> {
    list.rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let m = parse_mark(r.comment.as_deref())?;
            Some((r.pos.unwrap_or(i as u32), m.key, r))
        })
        .collect()
}

/// A change by position that lost a race with an edit is retried on a fresh read.
fn modified(e: &waddle_proxmox::Error) -> bool {
    e.to_string().contains("detected modified configuration")
}

/// Make the node's marked rules exactly `desired`: update in place, create what is missing
/// (at the top, where Proxmox inserts), delete the rest (and duplicates of a key).
pub async fn converge_rules(
    client: &Client,
    node: &str,
    desired: &BTreeMap<String, RuleModel>,
    deadline: &Deadline,
) -> Res<()> {
    let sc = scope(node);
    let mut races = 0;
    loop {
        check(deadline)?;
        let list = client
            .firewall_rule_list(&sc)
            .await
            .map_err(api(format!("reading the rules of node {node:?}")))?;
        let mut seen = BTreeSet::new();
        let mut step: Option<(u32, Option<FirewallRule>, String)> = None;
        for (pos, key, rule) in marked(&list) {
            let first = seen.insert(key.clone());
            match desired.get(&key) {
                Some(want) if first => {
                    let want = to_api(&key, want);
                    if !same_rule(rule, &want) {
                        step = Some((pos, Some(want), key));
                        break;
                    }
                }
                _ => {
                    step = Some((pos, None, key));
                    break;
                }
            }
        }
        let result = match &step {
            Some((pos, Some(want), key)) => client
                .replace_firewall_rule(&sc, *pos, want, list.digest.as_deref())
                .await
                .map_err(|e| (e, format!("updating rule {key:?}"))),
            Some((pos, None, key)) => client
                .delete_firewall_rule(&sc, *pos, list.digest.as_deref())
                .await
                .map_err(|e| (e, format!("deleting rule {key:?}"))),
            None => {
                // Only creations left: in reverse key order, so they end up in key order.
                for (key, r) in desired.iter().rev() {
                    if seen.contains(key) {
                        continue;
                    }
                    check(deadline)?;
                    client
                        .add_firewall_rule(&sc, &to_api(key, r))
                        .await
                        .map_err(api(format!("creating rule {key:?} on node {node:?}")))?;
                }
                return Ok(());
            }
        };
        match result {
            Ok(()) => {}
            Err((e, _)) if modified(&e) && races < 5 => races += 1,
            Err((e, what)) => return Err(api(format!("{what} on node {node:?}"))(e)),
        }
    }
}

/// Create the IP set if needed (refusing one that is not ours) and give it exactly `cidrs`;
/// `adding_only`: only add entries (removals come after the rules changed).
pub async fn converge_ipset(
    client: &Client,
    set: &IpSetModel,
    adding_only: bool,
    creating: bool,
) -> Res<()> {
    let name = &set.name;
    let existing = client.ipsets().await.map_err(api("reading the IP sets"))?;
    match existing.iter().find(|s| &s.name == name) {
        None => client
            .create_ipset(name, Some(IPSET_COMMENT))
            .await
            .map_err(api(format!("creating IP set {name:?}")))?,
        Some(s) if creating && s.comment.as_deref() != Some(IPSET_COMMENT) => {
            return Err(FirewallError::ForeignIpSet(name.clone()))
        }
        Some(_) => {}
    }
    let entries = client
        .ipset_entries(name)
        .await
        .map_err(api(format!("reading IP set {name:?}")))?
        .unwrap_or_default();
    for c in &set.cidrs {
        if !entries.iter().any(|e| &e.cidr == c) {
            let entry = IpSetEntry {
                cidr: c.clone(),
                nomatch: false,
                comment: None,
            };
            client
                .add_ipset_entry(name, &entry)
                .await
                .map_err(api(format!("adding {c} to IP set {name:?}")))?;
        }
    }
    if !adding_only {
        for e in entries.iter().filter(|e| !set.cidrs.contains(&e.cidr)) {
            client
                .delete_ipset_entry(name, &e.cidr)
                .await
                .map_err(api(format!("removing {} from IP set {name:?}", e.cidr)))?;
        }
    }
    Ok(())
}

/// Delete an IP set and its entries.
pub async fn delete_ipset(client: &Client, name: &str) -> Res<()> {
    let entries = client
        .ipset_entries(name)
        .await
        .map_err(api(format!("reading IP set {name:?}")))?;
    let Some(entries) = entries else {
        return Ok(());
    };
    for e in entries {
        client
            .delete_ipset_entry(name, &e.cidr)
            .await
            .map_err(api(format!("removing {} from IP set {name:?}", e.cidr)))?;
    }
    client
        .delete_ipset(name)
        .await
        .map_err(api(format!("deleting IP set {name:?}")))
}

/// Set the cluster options when they differ.
pub async fn converge_options(
    client: &Client,
    enabled: bool,
    policy_in: &str,
    policy_out: &str,
) -> Res<()> {
    let now = client
        .cluster_firewall_options()
        .await
        .map_err(api("reading the cluster firewall options"))?;
    if now.enable.unwrap_or(false) == enabled
        && now.effective_policy_in() == policy_in
        && now.effective_policy_out() == policy_out
    {
        return Ok(());
    }
    let o = ClusterFirewallOptions {
        enable: Some(enabled),
        policy_in: Some(policy_in.to_string()),
        policy_out: Some(policy_out.to_string()),
        digest: None,
    };
    client
        .set_cluster_firewall_options(&o)
        .await
        .map_err(api("setting the cluster firewall options"))
}

/// Create or update to `planned` (`prior`: the state before, `None` on create). Order keeps
/// access open as long as possible: the IP set's new entries and the rules first, then the
/// options, then what is removed.
pub async fn apply(
    client: &Client,
    prior: Option<&FirewallState>,
    planned: &FirewallState,
    deadline: &Deadline,
) -> Res<()> {
    let node = planned
        .node
        .as_deref()
        .ok_or(FirewallError::NoNode("no node"))?;
    if let Some(set) = &planned.ipset {
        let creating = prior
            .and_then(|p| p.ipset.as_ref())
            .is_none_or(|p| p.name != set.name);
        converge_ipset(client, set, true, creating).await?;
    }
    converge_rules(client, node, &planned.active_rules(), deadline).await?;
    check(deadline)?;
    converge_options(
        client,
        planned.enabled(),
        planned.policy_in(),
        planned.policy_out(),
    )
    .await?;
    if let Some(set) = &planned.ipset {
        converge_ipset(client, set, false, false).await?;
    }
    if let Some(old) = prior.and_then(|p| p.ipset.as_ref()) {
        if planned.ipset.as_ref().is_none_or(|s| s.name != old.name) {
            delete_ipset(client, &old.name).await?;
        }
    }
    Ok(())
}

/// The cluster options as found (for `previous_options`).
pub async fn current_options(client: &Client) -> Res<ClusterFirewallOptions> {
    client
        .cluster_firewall_options()
        .await
        .map_err(api("reading the cluster firewall options"))
}

/// Refresh `st` from Proxmox.
pub async fn read(client: &Client, mut st: FirewallState) -> Res<FirewallState> {
    let node = st
        .node
        .clone()
        .ok_or(FirewallError::NoNode("no node in state"))?;
    let o = current_options(client).await?;
    st.enabled = Some(o.enable.unwrap_or(false));
    st.policy_in = Some(o.effective_policy_in().to_string());
    st.policy_out = Some(o.effective_policy_out().to_string());
    let list = client
        .firewall_rule_list(&scope(&node))
        .await
        .map_err(api(format!("reading the rules of node {node:?}")))?;
    let prior = st.rules();
    let mut rules = BTreeMap::new();
    for r in &list.rules {
        let Some(m) = parse_mark(r.comment.as_deref()) else {
            continue;
        };
        if rules.contains_key(&m.key) {
            continue;
        }
        rules.insert(m.key.clone(), from_api(r, &m, prior.get(&m.key)));
    }
    st.active_rules = Some(rules.keys().cloned().collect());
    // Known rules not found: kept as they were, but left out of `active_rules` (the next
    // plan re-creates them unless they expired).
    for (k, r) in prior {
        rules.entry(k).or_insert(r);
    }
    st.rules = (!rules.is_empty() || st.rules.is_some()).then_some(rules);
    if let Some(set) = &st.ipset {
        let entries = client
            .ipset_entries(&set.name)
            .await
            .map_err(api(format!("reading IP set {:?}", set.name)))?;
        st.ipset = entries.map(|entries| {
            let have: Vec<String> = entries.into_iter().map(|e| e.cidr).collect();
            let mut cidrs: Vec<String> = set
                .cidrs
                .iter()
                .filter(|c| have.contains(c))
                .cloned()
                .collect();
            cidrs.extend(have.into_iter().filter(|c| !set.cidrs.contains(c)));
            IpSetModel {
                name: set.name.clone(),
                cidrs,
            }
        });
    }
    st.id = Some(node);
    Ok(st)
}

/// Destroy: restore the options found at create (first when that switches the firewall
/// off), delete every marked rule of the node, then the IP set.
pub async fn destroy(client: &Client, st: &FirewallState, deadline: &Deadline) -> Res<()> {
    let node = st
        .node
        .as_deref()
        .ok_or(FirewallError::NoNode("no node in state"))?;
    let restore = st
        .previous_options
        .as_ref()
        .map(|p| ClusterFirewallOptions {
            enable: p.enabled,
            policy_in: p.policy_in.clone(),
            policy_out: p.policy_out.clone(),
            digest: None,
        });
    let set_options = |o: ClusterFirewallOptions| async move {
        client
            .set_cluster_firewall_options(&o)
            .await
            .map_err(api("restoring the cluster firewall options"))
    };
    let switches_off = restore.as_ref().is_some_and(|o| o.enable != Some(true));
    if switches_off {
        if let Some(o) = restore.clone() {
            set_options(o).await?;
        }
    }
    converge_rules(client, node, &BTreeMap::new(), deadline).await?;
    if !switches_off {
        if let Some(o) = restore {
            set_options(o).await?;
        }
    }
    if let Some(set) = &st.ipset {
        delete_ipset(client, &set.name).await?;
    }
    Ok(())
}
