//! `/cluster/sdn`: zones, vnets, subnets, the pending view and apply.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde_json::{json, Map, Value};

use super::common::R;
use super::tasks::start_task;
use crate::pve::server::{ApiError, Ctx};
use crate::pve::state::{digest_of, State};
use crate::spec::pve_cidr_prefix;

fn obj_from_params(ctx: &Ctx, skip: &[&str]) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in &ctx.params {
        if skip.contains(&k.as_str()) || matches!(k.as_str(), "lock-token" | "digest" | "delete") {
            continue;
        }
        let s = v.as_str();
        let val = match k.as_str() {
            "tag" | "mtu" | "vrf-vxlan" | "vxlan-port" | "dp-id" => {
                s.parse::<i64>().map(Value::from).unwrap_or(json!(s))
            }
            "snat"
            | "vlanaware"
            | "isolate-ports"
            | "advertise-subnets"
            | "bridge-disable-mac-learning"
            | "exitnodes-local-routing"
            | "disable-arp-nd-suppression" => json!(if matches!(s, "1" | "true" | "yes" | "on") {
                1
            } else {
                0
            }),
            "dhcp-range" => Value::Array(v.all().into_iter().map(Value::from).collect()),
            _ => json!(s),
        };
        m.insert(k.clone(), val);
    }
    m
}

/// Keys PVE keeps at the top level of an object in the pending view (`pending=1`) even when
/// it is new: `type` and `vnet` (pve-network's `PVE::Network::SDN::pending_config`), plus
/// what the API adds from the object's id: the id key itself and, for subnets, `cidr`,
/// `network`, `mask` and `zone` (parsed from `<zone>-<network>-<mask>`).
const ZONE_TOP_KEYS: &[&str] = &["type", "vnet", "zone"];
const VNET_TOP_KEYS: &[&str] = &["type", "vnet"];
const SUBNET_TOP_KEYS: &[&str] = &["type", "vnet", "subnet", "cidr", "network", "mask", "zone"];

/// One object as `pending=1` shows it, after pve-network's `pending_config`: a new object has
/// only its top-level keys and every other value under `pending`; a changed one has its
/// running values and, under `pending`, each value that differs (a removed key as the string
/// `deleted`); a deleted one has its running values.
fn sdn_pending_view(
    config: Option<&Map<String, Value>>,
    running: Option<&Map<String, Value>>,
    top_keys: &[&str],
) -> Option<Value> {
    let (state, top, pending) = match (config, running) {
        (None, None) => return None,
        (None, Some(r)) => ("deleted", r.clone(), None),
        (Some(c), None) => {
            let (top, rest): (Map<String, Value>, Map<String, Value>) = c
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .partition(|(k, _)| top_keys.contains(&k.as_str()));
            ("new", top, Some(rest))
        }
        (Some(c), Some(r)) if c == r => return Some(Value::Object(c.clone())),
        (Some(c), Some(r)) => {
            let mut changed = Map::new();
            for (k, v) in c {
                if r.get(k) != Some(v) && !matches!(k.as_str(), "type" | "vnet") {
                    changed.insert(k.clone(), v.clone());
                }
            }
            for k in r.keys() {
                if !c.contains_key(k) {
                    changed.insert(k.clone(), json!("deleted"));
                }
            }
            let mut top = r.clone();
            for k in ["type", "vnet"] {
                if let Some(v) = c.get(k) {
                    top.insert(k.into(), v.clone());
                }
            }
            ("changed", top, Some(changed))
        }
    };
    let mut v = Value::Object(top);
    v["state"] = json!(state);
    if let Some(p) = pending {
        v["pending"] = Value::Object(p);
    }
    Some(v)
}

fn sdn_list_json(
    objs: &BTreeMap<String, Map<String, Value>>,
    running: Option<&BTreeMap<String, Map<String, Value>>>,
    show_pending: bool,
    use_running: bool,
    digest: bool,
    top_keys: &[&str],
) -> Vec<Value> {
    let src = if use_running {
        running.cloned().unwrap_or_default()
    } else {
        objs.clone()
    };
    let with_digest = |o: &Map<String, Value>, mut v: Value| {
        if digest {
            v["digest"] = json!(digest_of(o.iter().map(|(k, v)| (k.clone(), v.to_string()))));
        }
        v
    };
    if show_pending && !use_running {
        let mut ids: Vec<&String> = src.keys().collect();
        if let Some(r) = running {
            ids.extend(r.keys().filter(|id| !src.contains_key(*id)));
        }
        return ids
            .into_iter()
            .filter_map(|id| {
                let c = src.get(id);
                let r = running.and_then(|r| r.get(id));
                let v = sdn_pending_view(c, r, top_keys)?;
                Some(with_digest(c.or(r)?, v))
            })
            .collect();
    }
    src.values()
        .map(|o| with_digest(o, Value::Object(o.clone())))
        .collect()
}

pub(super) fn sdn_zones(ctx: &Ctx) -> R {
    let m = ctx.method.as_str();
    let list = ctx.template == "/cluster/sdn/zones";
    match (m, list) {
        ("GET", true) => {
            let st = ctx.shared.st();
            let ty = ctx.p("type").map(str::to_string);
            let objs: BTreeMap<_, _> = st
                .sdn
                .zones
                .iter()
                .filter(|(_, o)| {
                    ty.as_ref()
                        .map(|t| o.get("type").and_then(Value::as_str) == Some(t))
                        .unwrap_or(true)
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let running = st.sdn.running.as_ref().map(|r| &r.0);
            let list = sdn_list_json(
                &objs,
                running,
                ctx.flag("pending").unwrap_or(false),
                ctx.flag("running").unwrap_or(false),
                true,
                ZONE_TOP_KEYS,
            );
            let list = list
                .into_iter()
                .filter(|z| {
                    ctx.caller.has(
                        &format!("/sdn/zones/{}", z["zone"].as_str().unwrap_or("")),
                        "SDN.Audit",
                    ) || ctx.caller.has(
                        &format!("/sdn/zones/{}", z["zone"].as_str().unwrap_or("")),
                        "SDN.Allocate",
                    )
                })
                .collect();
            Ok(Value::Array(list))
        }
        ("POST", true) => {
            let zone = ctx.req("zone")?.to_string();
            let ty = ctx.req("type")?.to_string();
            if ty == "vlan" && ctx.p("bridge").is_none() {
                return Err(ApiError::param(
                    "bridge",
                    "property is missing and it is not optional",
                ));
            }
            let mut o = obj_from_params(ctx, &[]);
            if ty == "simple" || ty == "vlan" {
                o.entry("ipam").or_insert(json!("pve"));
            }
            let mut st = ctx.shared.st();
            if st.sdn.zones.contains_key(&zone) {
                return Err(ApiError::die(format!("sdn 'zone' '{zone}' already exists")));
            }
            st.sdn.zones.insert(zone, o);
            Ok(Value::Null)
        }
        ("GET", false) => {
            let zone = ctx.req("zone")?;
            let st = ctx.shared.st();
            let o = st
                .sdn
                .zones
                .get(zone)
                .ok_or_else(|| ApiError::die(format!("sdn 'zone' '{zone}' does not exist")))?;
            let mut v = Value::Object(o.clone());
            v["digest"] = json!(digest_of(o.iter().map(|(k, v)| (k.clone(), v.to_string()))));
            Ok(v)
        }
        ("PUT", false) => {
            let zone = ctx.req("zone")?.to_string();
            let upd = obj_from_params(ctx, &["zone"]);
            let mut st = ctx.shared.st();
            let o = st
                .sdn
                .zones
                .get_mut(&zone)
                .ok_or_else(|| ApiError::die(format!("sdn 'zone' '{zone}' does not exist")))?;
            if let Some(d) = ctx.p("delete") {
                for k in d.split([',', ';', ' ']).filter(|s| !s.is_empty()) {
                    o.remove(k);
                }
            }
            o.extend(upd);
            Ok(Value::Null)
        }
        ("DELETE", false) => {
            let zone = ctx.req("zone")?.to_string();
            let mut st = ctx.shared.st();
            if !st.sdn.zones.contains_key(&zone) {
                return Err(ApiError::die(format!("sdn 'zone' '{zone}' does not exist")));
            }
            if st
                .sdn
                .vnets
                .values()
                .any(|v| v.get("zone").and_then(Value::as_str) == Some(&zone))
            {
                return Err(ApiError::die(format!(
                    "Can't delete zone '{zone}' - vnets are still using it"
                )));
            }
            st.sdn.zones.remove(&zone);
            Ok(Value::Null)
        }
        _ => Err(ApiError::new(501, "not implemented")),
    }
}

fn vnet_zone(st: &State, vnet: &str) -> Result<String, ApiError> {
    st.sdn
        .vnets
        .get(vnet)
        .and_then(|v| v.get("zone"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ApiError::die(format!("sdn 'vnet' '{vnet}' does not exist")))
}

pub(super) fn sdn_vnets(ctx: &Ctx) -> R {
    let list = ctx.template == "/cluster/sdn/vnets";
    match (ctx.method.as_str(), list) {
        ("GET", true) => {
            let st = ctx.shared.st();
            let running = st.sdn.running.as_ref().map(|r| &r.1);
            let list = sdn_list_json(
                &st.sdn.vnets,
                running,
                ctx.flag("pending").unwrap_or(false),
                ctx.flag("running").unwrap_or(false),
                true,
                VNET_TOP_KEYS,
            );
            let list = list
                .into_iter()
                .filter(|v| {
                    let p = format!(
                        "/sdn/zones/{}/{}",
                        v["zone"].as_str().unwrap_or(""),
                        v["vnet"].as_str().unwrap_or("")
                    );
                    ctx.caller.has(&p, "SDN.Audit") || ctx.caller.has(&p, "SDN.Allocate")
                })
                .collect();
            Ok(Value::Array(list))
        }
        ("POST", true) => {
            let vnet = ctx.req("vnet")?.to_string();
            let zone = ctx.req("zone")?.to_string();
            let mut o = obj_from_params(ctx, &[]);
            o.insert("type".into(), json!("vnet"));
            let mut st = ctx.shared.st();
            let ztype = st
                .sdn
                .zones
                .get(&zone)
                .and_then(|z| z.get("type"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| ApiError::die(format!("zone '{zone}' doesn't exist")))?;
            if ztype == "simple" && o.contains_key("tag") {
                return Err(ApiError::die("vnet tag is not allowed in simple zone"));
            }
            if st.sdn.vnets.contains_key(&vnet) || ctx.shared.cfg.bridges.contains(&vnet) {
                return Err(ApiError::die(format!("sdn 'vnet' '{vnet}' already exists")));
            }
            st.sdn.vnets.insert(vnet, o);
            Ok(Value::Null)
        }
        ("GET", false) => {
            let vnet = ctx.req("vnet")?;
            let st = ctx.shared.st();
            let zone = vnet_zone(&st, vnet)?;
            let p = format!("/sdn/zones/{zone}/{vnet}");
            ctx.require_any(&p, &["SDN.Audit", "SDN.Allocate"])?;
            let o = st.sdn.vnets.get(vnet).cloned().unwrap_or_default();
            let mut v = Value::Object(o.clone());
            v["digest"] = json!(digest_of(o.iter().map(|(k, v)| (k.clone(), v.to_string()))));
            Ok(v)
        }
        ("PUT", false) => {
            let vnet = ctx.req("vnet")?.to_string();
            let upd = obj_from_params(ctx, &["vnet"]);
            let mut st = ctx.shared.st();
            let zone = vnet_zone(&st, &vnet)?;
            ctx.require(&format!("/sdn/zones/{zone}/{vnet}"), "SDN.Allocate")?;
            let o = st
                .sdn
                .vnets
                .get_mut(&vnet)
                .ok_or_else(|| ApiError::die("vanished"))?;
            if let Some(d) = ctx.p("delete") {
                for k in d.split([',', ';', ' ']).filter(|s| !s.is_empty()) {
                    o.remove(k);
                }
            }
            o.extend(upd);
            Ok(Value::Null)
        }
        ("DELETE", false) => {
            let vnet = ctx.req("vnet")?.to_string();
            let mut st = ctx.shared.st();
            let zone = vnet_zone(&st, &vnet)?;
            ctx.require(&format!("/sdn/zones/{zone}/{vnet}"), "SDN.Allocate")?;
            if st
                .sdn
                .subnets
                .values()
                .any(|s| s.get("vnet").and_then(Value::as_str) == Some(&vnet))
            {
                return Err(ApiError::die(format!(
                    "Can't delete vnet '{vnet}' - subnets exist"
                )));
            }
            st.sdn.vnets.remove(&vnet);
            Ok(Value::Null)
        }
        _ => Err(ApiError::new(501, "not implemented")),
    }
}

fn subnet_id(zone: &str, cidr: &str) -> String {
    format!("{zone}-{}", cidr.replace('/', "-"))
}

/// An IPv4 subnet as `(network bits, mask)`. The format is pve-network's
/// `parse_sdn_subnet_id` (pve-common `PVE::JSONSchema::pve_verify_cidrv4`): a dotted quad
/// without leading zeros, then `/` and a prefix of 8 to 32 (see `pve_cidr_prefix`).
// Deliberately not `waddle_net::Cidr`: the emulator implements PVE's rules independently.
fn parse_cidr4(c: &str) -> Option<(u32, u32)> {
    let (a, l) = c.split_once('/')?;
    let ip: Ipv4Addr = a.parse().ok()?;
    let len = pve_cidr_prefix(l, 32)?;
    let mask = u32::MAX << (32 - len);
    Some((u32::from(ip), mask))
}

pub(super) fn sdn_subnets(ctx: &Ctx) -> R {
    let list = ctx.template == "/cluster/sdn/vnets/{vnet}/subnets";
    let vnet = ctx.req("vnet")?.to_string();
    let zone = {
        let st = ctx.shared.st();
        vnet_zone(&st, &vnet)?
    };
    let p = format!("/sdn/zones/{zone}/{vnet}");
    match (ctx.method.as_str(), list) {
        ("GET", true) => {
            ctx.require_any(&p, &["SDN.Audit", "SDN.Allocate"])?;
            let st = ctx.shared.st();
            let objs: BTreeMap<_, _> = st
                .sdn
                .subnets
                .iter()
                .filter(|(_, s)| s.get("vnet").and_then(Value::as_str) == Some(&vnet))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let running = st.sdn.running.as_ref().map(|r| &r.2);
            Ok(Value::Array(sdn_list_json(
                &objs,
                running,
                ctx.flag("pending").unwrap_or(false),
                ctx.flag("running").unwrap_or(false),
                true,
                SUBNET_TOP_KEYS,
            )))
        }
        ("POST", true) => {
            ctx.require(&p, "SDN.Allocate")?;
            let cidr = ctx.req("subnet")?.to_string();
            let (net, mask) = parse_cidr4(&cidr)
                .ok_or_else(|| ApiError::param("subnet", "only IPv4 subnets are emulated"))?;
            if net & !mask != 0 {
                return Err(ApiError::param(
                    "subnet",
                    format!("{cidr} is not a network address"),
                ));
            }
            if let Some(gw) = ctx.p("gateway") {
                let g: Ipv4Addr = gw
                    .parse()
                    .map_err(|_| ApiError::param("gateway", "invalid gateway"))?;
                if u32::from(g) & mask != net {
                    return Err(ApiError::die(format!(
                        "gateway {gw} is not in subnet {cidr}"
                    )));
                }
            }
            let id = subnet_id(&zone, &cidr);
            let mut o = obj_from_params(ctx, &[]);
            o.insert("subnet".into(), json!(id));
            o.insert("cidr".into(), json!(cidr));
            o.insert(
                "network".into(),
                json!(cidr.split('/').next().unwrap_or("")),
            );
            o.insert("mask".into(), json!(cidr.split('/').nth(1).unwrap_or("")));
            o.insert("zone".into(), json!(zone));
            o.insert("type".into(), json!("subnet"));
            let mut st = ctx.shared.st();
            if st.sdn.subnets.contains_key(&id) {
                return Err(ApiError::die(format!("sdn 'subnet' '{id}' already exists")));
            }
            st.sdn.subnets.insert(id, o);
            Ok(Value::Null)
        }
        (m, false) => {
            let raw = ctx.req("subnet")?.to_string();
            let id = if raw.contains('/') {
                subnet_id(&zone, &raw)
            } else {
                raw
            };
            let mut st = ctx.shared.st();
            if !st.sdn.subnets.contains_key(&id) {
                return Err(ApiError::die(format!("sdn 'subnet' '{id}' does not exist")));
            }
            match m {
                "GET" => {
                    ctx.require_any(&p, &["SDN.Audit", "SDN.Allocate"])?;
                    let o = st.sdn.subnets.get(&id).cloned().unwrap_or_default();
                    let mut v = Value::Object(o.clone());
                    v["digest"] =
                        json!(digest_of(o.iter().map(|(k, v)| (k.clone(), v.to_string()))));
                    Ok(v)
                }
                "PUT" => {
                    ctx.require(&p, "SDN.Allocate")?;
                    let upd = obj_from_params(ctx, &["subnet", "vnet"]);
                    let o = st
                        .sdn
                        .subnets
                        .get_mut(&id)
                        .ok_or_else(|| ApiError::die("vanished"))?;
                    if let Some(d) = ctx.p("delete") {
                        for k in d.split([',', ';', ' ']).filter(|s| !s.is_empty()) {
                            o.remove(k);
                        }
                    }
                    o.extend(upd);
                    Ok(Value::Null)
                }
                "DELETE" => {
                    ctx.require(&p, "SDN.Allocate")?;
                    st.sdn.subnets.remove(&id);
                    Ok(Value::Null)
                }
                _ => Err(ApiError::new(501, "not implemented")),
            }
        }
        _ => Err(ApiError::new(501, "not implemented")),
    }
}

pub(super) fn sdn_apply(ctx: &Ctx) -> R {
    let shared = ctx.shared.clone();
    let t = shared.cfg.timings.task;
    let node = ctx.shared.cfg.nodes[0].clone();
    let upid = start_task(ctx, &node, "reloadnetworkall", "", move |log| {
        Box::pin(async move {
            tokio::time::sleep(t).await;
            let mut st = shared.st();
            let snap = (
                st.sdn.zones.clone(),
                st.sdn.vnets.clone(),
                st.sdn.subnets.clone(),
            );
            st.sdn.running = Some(Box::new(snap));
            drop(st);
            log.log("reloading network config on all nodes");
            Ok(())
        })
    });
    Ok(json!(upid))
}

pub(super) fn prefix_to_mask(len: &str) -> String {
    let l: u32 = len.parse().unwrap_or(32).min(32);
    let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
    Ipv4Addr::from(mask).to_string()
}

#[cfg(test)]
mod tests {
    use super::parse_cidr4;

    #[test]
    fn subnet_cidr_as_pve_verify_cidrv4() {
        assert_eq!(parse_cidr4("10.0.0.0/8"), Some((0x0a00_0000, 0xff00_0000)));
        assert_eq!(parse_cidr4("10.0.0.0/08"), Some((0x0a00_0000, 0xff00_0000)));
        assert_eq!(parse_cidr4("10.0.0.1/32"), Some((0x0a00_0001, u32::MAX)));
        for bad in [
            "10.0.0.0/+8",
            "10.0.0.0/-8",
            "10.0.0.0/7",
            "10.0.0.0/0",
            "10.0.0.0/33",
            "010.0.0.0/8",
            "10.0.0.0",
        ] {
            assert_eq!(parse_cidr4(bad), None, "{bad}");
        }
    }
}
