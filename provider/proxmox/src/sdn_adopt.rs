//! Crash-consistent SDN creates. SDN objects carry no field for an ownership mark, so two
//! rules decide what a create may adopt instead of posting:
//!
//! * after a create whose outcome is unknown (the response was lost, "got no worker upid"),
//!   look before re-posting and adopt an object that matches the request, so a lost response
//!   never leaves an object on the host that the caller does not know about;
//! * before posting, an object with the id that is still *pending* (state `new`: created but
//!   never applied with `PUT /cluster/sdn`) and matches the request exactly is what an
//!   interrupted create left (a killed CLI, a crashed provider): it is adopted. Nobody's
//!   running network depends on a pending object. An applied object with the id, or a pending
//!   one that differs, is never adopted: the create fails naming it (an applied network
//!   becomes waddle's only through an explicit import).

use std::future::Future;

use serde_json::Value;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::params::Params;
use crate::props::parse_property_string;
use crate::value::{f_bool, f_str};

/// What a read-back after an unknown create outcome found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The object exists exactly as requested: the create happened.
    Matches,
    /// An object with that id exists but differs from the request (not ours).
    Differs(String),
    /// Nothing with that id exists: the create did not happen.
    Absent,
}

/// What the pending configuration says about an id before a create (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Before {
    /// Nothing with that id: post.
    Absent,
    /// Pending (never applied) and as requested: adopt, do not post.
    AdoptPending,
}

/// An object of the pending view (`pending=1`) as it will be once applied: PVE shows a new
/// object's values, and a changed object's new values, under `pending` (a removed key as the
/// string `deleted`), and keeps only `type`, `vnet` and the keys derived from the id at the top
/// level (pve-network's `pending_config`).
pub(crate) fn effective(found: &Value) -> Value {
    let mut out = found.clone();
    if let (Some(obj), Some(Value::Object(pending))) = (out.as_object_mut(), found.get("pending")) {
        let deleting = f_str(found, "state").as_deref() == Some("changed");
        for (k, v) in pending {
            if deleting && v.as_str() == Some("deleted") {
                obj.remove(k);
            } else {
                obj.insert(k.clone(), v.clone());
            }
        }
        obj.remove("pending");
    }
    out
}

/// Decide from an object found in the pending configuration (`GET ...?pending=1`) whether a
/// create may adopt it; `lookup` compares it with the request.
pub(crate) fn before_create(what: &str, found: Option<&Value>, lookup: Lookup) -> Result<Before> {
    let Some(found) = found else {
        return Ok(Before::Absent);
    };
    let state = f_str(found, "state").unwrap_or_default();
    match (state.as_str(), lookup) {
        ("new", Lookup::Matches) => Ok(Before::AdoptPending),
        ("new", Lookup::Differs(why)) => Err(Error::InvalidArgument(format!(
            "{what} already exists, pending (created but never applied), and is not the one \
             requested: {why}. Remove it (Datacenter > SDN, or revert the pending SDN changes) \
             or choose another id."
        ))),
        ("deleted", _) => Err(Error::InvalidArgument(format!(
            "{what} is pending deletion: apply the pending SDN changes (`PUT /cluster/sdn`, \
             Datacenter > SDN > Apply) or revert them, then try again."
        ))),
        _ => Err(Error::InvalidArgument(format!(
            "{what} already exists and is applied; waddle adopts only a pending object left by \
             an interrupted create. Import it (`terraform import` with the resource's \
             `<zone>/<vnet>` id) or choose another id."
        ))),
    }
}

/// [`before_create`] for an object of the pending view, compared as it will be once applied
/// ([`effective`]) by `matches`: `true` when the create adopts it instead of posting.
pub(crate) fn adopt_if_pending(
    what: &str,
    found: Option<&Value>,
    matches: impl Fn(Option<&Value>) -> Lookup,
) -> Result<bool> {
    let found = found.map(effective);
    let lookup = matches(found.as_ref());
    let adopt = before_create(what, found.as_ref(), lookup)? == Before::AdoptPending;
    if adopt {
        tracing::info!(
            what,
            "adopted: pending, as requested (left by an interrupted create)"
        );
    }
    Ok(adopt)
}

impl Client {
    /// `POST path params`; when the outcome is unknown, `look` decides: a matching object is
    /// adopted (success), an absent one is created again (within the retry policy), a
    /// different one is an error naming the difference.
    pub(crate) async fn create_or_adopt<F, Fut>(
        &self,
        what: &str,
        path: &str,
        params: &Params,
        look: F,
    ) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Lookup>>,
    {
        let policy = *self.retry_policy();
        let mut attempt = 0u32;
        loop {
            let err = match self.post(path, params).await {
                Ok(_) => return Ok(()),
                Err(e) if crate::vm::is_outcome_unknown(&e) => e,
                Err(e) => return Err(e),
            };
            match look().await? {
                Lookup::Matches => {
                    tracing::info!(what, error = %err, "create outcome unknown; the object exists as requested, adopted");
                    return Ok(());
                }
                Lookup::Differs(why) => {
                    return Err(Error::InvalidArgument(format!(
                        "{what}: the create's outcome is unknown ({err}) and an object with \
                         that id exists but is not the one requested: {why}"
                    )));
                }
                Lookup::Absent if attempt + 1 < policy.max_attempts => {
                    tracing::info!(what, error = %err, "create outcome unknown and the object is absent, creating again");
                }
                Lookup::Absent => return Err(err),
            }
            tokio::time::sleep(policy.delay(attempt)).await;
            attempt += 1;
        }
    }
}

/// Compare a zone read back with a `simple` zone request.
pub(crate) fn zone_matches(found: Option<&Value>, dhcp: bool, nodes: &[String]) -> Lookup {
    let Some(z) = found else {
        return Lookup::Absent;
    };
    let ty = f_str(z, "type").unwrap_or_default();
    if ty != "simple" {
        return Lookup::Differs(format!("type is {ty:?}, not \"simple\""));
    }
    let has_dhcp = f_str(z, "dhcp").as_deref() == Some("dnsmasq");
    if has_dhcp != dhcp {
        return Lookup::Differs(format!("dhcp is {has_dhcp}, requested {dhcp}"));
    }
    let found_nodes = sorted_list(f_str(z, "nodes").as_deref().unwrap_or_default());
    let mut want: Vec<String> = nodes.to_vec();
    want.sort();
    if found_nodes != want {
        return Lookup::Differs(format!("nodes are {found_nodes:?}, requested {want:?}"));
    }
    Lookup::Matches
}

/// Compare a vnet read back with a request.
pub(crate) fn vnet_matches(found: Option<&Value>, zone: &str, alias: Option<&str>) -> Lookup {
    let Some(v) = found else {
        return Lookup::Absent;
    };
    let in_zone = f_str(v, "zone").unwrap_or_default();
    if in_zone != zone {
        return Lookup::Differs(format!("it is in zone {in_zone:?}, not {zone:?}"));
    }
    let found_alias = f_str(v, "alias").filter(|a| !a.is_empty());
    if found_alias.as_deref() != alias.filter(|a| !a.is_empty()) {
        return Lookup::Differs(format!("alias is {found_alias:?}, requested {alias:?}"));
    }
    Lookup::Matches
}

/// Compare the subnets of a vnet with a subnet request (by CIDR).
pub(crate) fn subnet_matches(subnets: &[Value], spec: &crate::network::SubnetSpec) -> Lookup {
    let Some(s) = subnets
        .iter()
        .find(|s| f_str(s, "cidr").as_deref() == Some(spec.cidr.as_str()))
    else {
        return Lookup::Absent;
    };
    let gateway = f_str(s, "gateway");
    if gateway != spec.gateway {
        return Lookup::Differs(format!(
            "gateway is {gateway:?}, requested {:?}",
            spec.gateway
        ));
    }
    let snat = f_bool(s, "snat").unwrap_or(false);
    if snat != spec.snat {
        return Lookup::Differs(format!("snat is {snat}, requested {}", spec.snat));
    }
    let found = dhcp_ranges(s.get("dhcp-range"));
    let mut want: Vec<Vec<(String, String)>> = spec
        .dhcp_ranges
        .iter()
        .map(|r| range_pairs(&Value::String(r.clone())))
        .collect();
    want.sort();
    if found != want {
        return Lookup::Differs(format!("dhcp-range is {found:?}, requested {want:?}"));
    }
    Lookup::Matches
}

fn sorted_list(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .split([',', ';', ' '])
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// `dhcp-range` as PVE returns it (property strings or objects), normalised to sorted
/// `(key, value)` lists.
fn dhcp_ranges(v: Option<&Value>) -> Vec<Vec<(String, String)>> {
    let items: Vec<Value> = match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(other) => vec![other.clone()],
    };
    let mut out: Vec<Vec<(String, String)>> = items.iter().map(range_pairs).collect();
    out.sort();
    out
}

fn range_pairs(v: &Value) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = match v {
        Value::String(s) => parse_property_string(s, None).into_iter().collect(),
        Value::Object(o) => o
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), crate::value::v_str(v)?)))
            .collect(),
        _ => Vec::new(),
    };
    pairs.sort();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::SubnetSpec;
    use serde_json::json;

    #[test]
    fn zones_match_only_as_requested() {
        let z = json!({"zone": "waddle", "type": "simple", "nodes": "pve2,pve1"});
        let nodes = vec!["pve1".to_string(), "pve2".to_string()];
        assert_eq!(zone_matches(Some(&z), false, &nodes), Lookup::Matches);
        assert_eq!(zone_matches(None, false, &nodes), Lookup::Absent);
        assert!(matches!(
            zone_matches(Some(&z), true, &nodes),
            Lookup::Differs(_)
        ));
        assert!(matches!(
            zone_matches(Some(&z), false, &[]),
            Lookup::Differs(_)
        ));
        let vlan = json!({"zone": "waddle", "type": "vlan"});
        assert!(matches!(
            zone_matches(Some(&vlan), false, &[]),
            Lookup::Differs(_)
        ));
        let dhcp = json!({"zone": "w", "type": "simple", "dhcp": "dnsmasq", "ipam": "pve"});
        assert_eq!(zone_matches(Some(&dhcp), true, &[]), Lookup::Matches);
    }

    #[test]
    fn only_a_matching_pending_object_is_adopted_before_a_create() {
        let pending = json!({"zone": "waddle", "type": "simple", "state": "new",
            "pending": {"ipam": "pve", "nodes": "pve1"}});
        assert_eq!(
            zone_matches(Some(&effective(&pending)), false, &["pve1".to_string()]),
            Lookup::Matches
        );
        assert!(matches!(
            zone_matches(Some(&effective(&pending)), false, &[]),
            Lookup::Differs(_)
        ));
        let changed_vnet = json!({"vnet": "v", "type": "vnet", "zone": "a", "alias": "x",
            "state": "changed", "pending": {"zone": "b", "alias": "deleted"}});
        assert_eq!(
            effective(&changed_vnet),
            json!({"vnet": "v", "type": "vnet", "zone": "b",
            "state": "changed"})
        );
        let applied = json!({"zone": "waddle", "type": "simple"});
        let changed = json!({"zone": "waddle", "type": "simple", "state": "changed"});
        let deleted = json!({"zone": "waddle", "type": "simple", "state": "deleted"});
        assert_eq!(
            before_create("SDN zone", None, Lookup::Absent).unwrap(),
            Before::Absent
        );
        assert_eq!(
            before_create("SDN zone", Some(&pending), Lookup::Matches).unwrap(),
            Before::AdoptPending
        );
        let differs = before_create("SDN zone", Some(&pending), Lookup::Differs("x".into()));
        assert!(differs
            .unwrap_err()
            .to_string()
            .contains("not the one requested: x"));
        for other in [&applied, &changed] {
            let e = before_create("SDN zone", Some(other), Lookup::Matches).unwrap_err();
            assert!(
                e.to_string().contains("already exists and is applied"),
                "{e}"
            );
        }
        let e = before_create("SDN zone", Some(&deleted), Lookup::Matches).unwrap_err();
        assert!(e.to_string().contains("pending deletion"), "{e}");
    }

    #[test]
    fn vnets_match_zone_and_alias() {
        let v = json!({"vnet": "vmbr1", "zone": "waddle", "alias": "private"});
        assert_eq!(
            vnet_matches(Some(&v), "waddle", Some("private")),
            Lookup::Matches
        );
        assert!(matches!(
            vnet_matches(Some(&v), "other", Some("private")),
            Lookup::Differs(_)
        ));
        assert!(matches!(
            vnet_matches(Some(&v), "waddle", None),
            Lookup::Differs(_)
        ));
        let bare = json!({"vnet": "vmbr1", "zone": "waddle"});
        assert_eq!(
            vnet_matches(Some(&bare), "waddle", Some("")),
            Lookup::Matches
        );
        assert_eq!(vnet_matches(None, "waddle", None), Lookup::Absent);
    }

    #[test]
    fn subnets_match_gateway_snat_and_ranges() {
        let spec = SubnetSpec {
            cidr: "10.10.0.0/24".into(),
            gateway: Some("10.10.0.1".into()),
            snat: true,
            dhcp_ranges: vec!["start-address=10.10.0.100,end-address=10.10.0.200".into()],
        };
        let as_objects = json!([{"cidr": "10.10.0.0/24", "gateway": "10.10.0.1", "snat": 1,
            "dhcp-range": [{"start-address": "10.10.0.100", "end-address": "10.10.0.200"}]}]);
        let as_strings = json!([{"cidr": "10.10.0.0/24", "gateway": "10.10.0.1", "snat": "1",
            "dhcp-range": ["start-address=10.10.0.100,end-address=10.10.0.200"]}]);
        for subs in [&as_objects, &as_strings] {
            let subs = subs.as_array().unwrap();
            assert_eq!(subnet_matches(subs, &spec), Lookup::Matches);
        }
        let subs = as_objects.as_array().unwrap();
        let mut other = spec.clone();
        other.snat = false;
        assert!(matches!(subnet_matches(subs, &other), Lookup::Differs(_)));
        other = spec.clone();
        other.gateway = Some("10.10.0.254".into());
        assert!(matches!(subnet_matches(subs, &other), Lookup::Differs(_)));
        other = spec.clone();
        other.dhcp_ranges.clear();
        assert!(matches!(subnet_matches(subs, &other), Lookup::Differs(_)));
        other = spec.clone();
        other.cidr = "10.20.0.0/24".into();
        assert_eq!(subnet_matches(subs, &other), Lookup::Absent);
    }
}
