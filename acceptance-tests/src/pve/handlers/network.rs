//! `/nodes/{node}/network`: interfaces, pending changes, apply and revert.

use serde_json::{json, Map, Value};

use super::sdn::prefix_to_mask;
use super::tasks::start_task;
use super::{node_check, R};
use crate::pve::server::{ApiError, Ctx};

fn iface_json(m: &Map<String, Value>, active: bool) -> Value {
    let mut o = Value::Object(m.clone());
    if active {
        o["active"] = json!(1);
    }
    o
}

pub(super) fn net_list(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let st = ctx.shared.st();
    let nn = st.net.get(&node).cloned().unwrap_or_default();
    let view = nn.staged.clone().unwrap_or_else(|| nn.active.clone());
    let ty = ctx.p("type").map(str::to_string);
    let list: Vec<Value> = view
        .values()
        .filter(|m| {
            let t = m.get("type").and_then(Value::as_str).unwrap_or("");
            match ty.as_deref() {
                None => true,
                Some("any_bridge") | Some("any_local_bridge") => t == "bridge" || t == "OVSBridge",
                Some(x) => x == t,
            }
        })
        .map(|m| {
            let name = m.get("iface").and_then(Value::as_str).unwrap_or("");
            iface_json(m, nn.active.contains_key(name))
        })
        .collect();
    Ok(Value::Array(list))
}

fn iface_from_params(
    ctx: &Ctx,
    base: Option<Map<String, Value>>,
) -> Result<Map<String, Value>, ApiError> {
    let mut m = base.unwrap_or_default();
    let iface = ctx.req("iface")?.to_string();
    let ty = ctx.req("type")?.to_string();
    if ty == "bridge" {
        let ok = iface
            .strip_prefix("vmbr")
            .map(|n| !n.is_empty() && n.len() <= 4 && n.chars().all(|c| c.is_ascii_digit()))
            .unwrap_or(false);
        if !ok {
            return Err(ApiError::param("iface", "bridge name must follow the format 'vmbrN', with N being a number between 0 and 9999"));
        }
    }
    for k in ctx.params.keys() {
        if matches!(k.as_str(), "node" | "delete" | "digest") {
            continue;
        }
        let v = ctx.p(k).unwrap_or("").to_string();
        let val = match k.as_str() {
            "autostart" | "bridge_vlan_aware" => {
                json!(if ctx.flag(k).unwrap_or(false) { 1 } else { 0 })
            }
            "mtu" | "netmask6" | "ovs_tag" | "vlan-id" => {
                v.parse::<i64>().map(Value::from).unwrap_or(json!(v))
            }
            _ => json!(v),
        };
        m.insert(k.clone(), val);
    }
    if let Some(cidr) = ctx.p("cidr") {
        if let Some((a, l)) = cidr.split_once('/') {
            m.insert("address".into(), json!(a));
            m.insert("netmask".into(), json!(prefix_to_mask(l)));
        }
        m.insert("method".into(), json!("static"));
    } else if ctx.p("address").is_some() {
        m.insert("method".into(), json!("static"));
    } else {
        m.entry("method").or_insert(json!("manual"));
    }
    if let Some(d) = ctx.p("delete") {
        for k in d.split([',', ';', ' ']).filter(|s| !s.is_empty()) {
            m.remove(k);
        }
    }
    m.entry("method6").or_insert(json!("manual"));
    m.insert("families".into(), json!(["inet"]));
    if let Some(ports) = ctx.p("bridge_ports") {
        let st = ctx.shared.st();
        let node = ctx.p("node").unwrap_or("");
        for p in ports.split([',', ' ', ';']).filter(|s| !s.is_empty()) {
            let exists = st
                .net
                .get(node)
                .map(|n| {
                    n.active.contains_key(p)
                        || n.staged
                            .as_ref()
                            .map(|s| s.contains_key(p))
                            .unwrap_or(false)
                })
                .unwrap_or(false);
            if !exists {
                return Err(ApiError::param(
                    "bridge_ports",
                    format!("unable to find bridge port '{p}'"),
                ));
            }
        }
    }
    Ok(m)
}

pub(super) fn net_create(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let iface = ctx.req("iface")?.to_string();
    let m = iface_from_params(ctx, None)?;
    let mut st = ctx.shared.st();
    let nn = st.net.entry(node).or_default();
    let staged = nn.staged.get_or_insert_with(|| nn.active.clone());
    if staged.contains_key(&iface) {
        return Err(ApiError::param("iface", "interface already exists"));
    }
    staged.insert(iface, m);
    Ok(Value::Null)
}

pub(super) fn net_update(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let iface = ctx.req("iface")?.to_string();
    let base = {
        let st = ctx.shared.st();
        let nn = st.net.get(&node).cloned().unwrap_or_default();
        let view = nn.staged.unwrap_or(nn.active);
        view.get(&iface)
            .cloned()
            .ok_or_else(|| ApiError::param("iface", "interface does not exist"))?
    };
    let m = iface_from_params(ctx, Some(base))?;
    let mut st = ctx.shared.st();
    let nn = st.net.entry(node).or_default();
    let staged = nn.staged.get_or_insert_with(|| nn.active.clone());
    staged.insert(iface, m);
    Ok(Value::Null)
}

pub(super) fn net_get(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let iface = ctx.req("iface")?;
    let st = ctx.shared.st();
    let nn = st.net.get(&node).cloned().unwrap_or_default();
    let view = nn.staged.clone().unwrap_or_else(|| nn.active.clone());
    let m = view
        .get(iface)
        .ok_or_else(|| ApiError::param("iface", "interface does not exist"))?;
    Ok(iface_json(m, nn.active.contains_key(iface)))
}

pub(super) fn net_delete(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let iface = ctx.req("iface")?.to_string();
    let mut st = ctx.shared.st();
    let nn = st.net.entry(node).or_default();
    let staged = nn.staged.get_or_insert_with(|| nn.active.clone());
    if staged.remove(&iface).is_none() {
        return Err(ApiError::param("iface", "interface does not exist"));
    }
    Ok(Value::Null)
}

pub(super) fn net_apply(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let shared = ctx.shared.clone();
    let node2 = node.clone();
    let t = shared.cfg.timings.task;
    let upid = start_task(ctx, &node, "srvreload", "networking", move |log| {
        Box::pin(async move {
            tokio::time::sleep(t).await;
            let mut st = shared.st();
            let nn = st.net.entry(node2).or_default();
            if let Some(staged) = nn.staged.take() {
                nn.active = staged;
            }
            drop(st);
            log.log("applying network configuration (ifreload -a)");
            Ok(())
        })
    });
    Ok(json!(upid))
}

pub(super) fn net_revert(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    ctx.shared.st().net.entry(node).or_default().staged = None;
    Ok(Value::Null)
}
