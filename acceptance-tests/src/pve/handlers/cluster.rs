//! `/access/ticket`, `/nodes`, `/cluster/nextid` and `/cluster/resources`.

use serde_json::{json, Value};

use super::R;
use crate::pve::server::{ApiError, Ctx};
use crate::pve::state::{now, Power, State, Vm};

pub(super) fn access_ticket(ctx: &Ctx) -> R {
    let mut user = ctx.req("username")?.to_string();
    if let Some(realm) = ctx.p("realm") {
        if !user.contains('@') {
            user = format!("{user}@{realm}");
        }
    }
    let pw = ctx.req("password")?;
    // A valid ticket of the same user also renews (PVE accepts the old ticket as password).
    let renew = crate::pve::auth::verify_ticket(&ctx.shared.ticket_secret, pw, now(), 7200)
        .map(|u| u == user)
        .unwrap_or(false);
    let ok = {
        let st = ctx.shared.st();
        st.access.user_active(&user) && (renew || st.access.password_ok(&user, pw))
    };
    if !ok {
        return Err(ApiError::new(401, "authentication failure"));
    }
    let t = now();
    Ok(json!({
        "username": user,
        "ticket": crate::pve::auth::make_ticket(&ctx.shared.ticket_secret, &user, t),
        "CSRFPreventionToken": crate::pve::auth::make_csrf(&ctx.shared.ticket_secret, &user, t),
        "clustername": ctx.shared.cfg.cluster_name,
    }))
}

pub(super) fn nodes_list(ctx: &Ctx) -> R {
    let nodes: Vec<Value> = ctx
        .shared
        .cfg
        .nodes
        .iter()
        .filter(|n| ctx.caller.has(&format!("/nodes/{n}"), "Sys.Audit"))
        .enumerate()
        .map(|(i, n)| json!({"node": n, "status": "online", "cpu": 0.01, "maxcpu": 8, "mem": 2u64<<30, "maxmem": 32u64<<30, "uptime": 3600 + i, "level": ""}))
        .collect();
    Ok(Value::Array(nodes))
}

pub(super) fn nextid(ctx: &Ctx) -> R {
    let st = ctx.shared.st();
    if let Some(v) = ctx.p("vmid") {
        let id: u32 = v.parse().unwrap_or(0);
        if st.vms.contains_key(&id) {
            return Err(ApiError::param("vmid", format!("VM {id} already exists")));
        }
        return Ok(json!(id));
    }
    let mut id = 100;
    while st.vms.contains_key(&id) {
        id += 1;
    }
    // The schema says integer (some PVE versions send a string: clients should take both).
    Ok(json!(id))
}

pub(super) fn resources(ctx: &Ctx) -> R {
    let ty = ctx.p("type").map(str::to_string);
    let st = ctx.shared.st();
    let mut out = Vec::new();
    let want = |t: &str| ty.as_deref().map(|x| x == t).unwrap_or(true);
    if want("node") {
        for n in &ctx.shared.cfg.nodes {
            out.push(json!({"id": format!("node/{n}"), "type": "node", "node": n, "status": "online", "maxcpu": 8, "maxmem": 32u64<<30, "mem": 2u64<<30, "cpu": 0.01, "uptime": 3600, "level": ""}));
        }
    }
    if want("vm") {
        for vm in st.vms.values() {
            if !ctx.caller.has(&format!("/vms/{}", vm.vmid), "VM.Audit") {
                continue;
            }
            let mut o = json!({"id": format!("qemu/{}", vm.vmid), "type": "qemu", "vmid": vm.vmid, "node": vm.node,
                "status": if vm.power == Power::Running {"running"} else {"stopped"},
                "template": 0, "maxmem": mem_bytes(vm), "maxcpu": cores(vm), "maxdisk": 0, "uptime": uptime(vm)});
            if let Some(n) = vm.config.get("name") {
                o["name"] = json!(n);
            }
            if let Some(t) = vm.config.get("tags") {
                o["tags"] = json!(t);
            }
            if let Some(l) = vm.config.get("lock") {
                o["lock"] = json!(l);
            }
            out.push(o);
        }
    }
    if want("storage") {
        for n in &ctx.shared.cfg.nodes {
            for s in &ctx.shared.cfg.storages {
                if !s.nodes.is_empty() && !s.nodes.contains(n) {
                    continue;
                }
                let used = used_bytes(&st, &s.id, n);
                out.push(json!({"id": format!("storage/{n}/{}", s.id), "type": "storage", "node": n, "storage": s.id,
                    "status": "available", "content": s.content.join(","), "plugintype": s.kind, "shared": if s.shared {1} else {0},
                    "disk": used, "maxdisk": s.total}));
            }
        }
    }
    if want("sdn") {
        for n in &ctx.shared.cfg.nodes {
            for z in st.sdn.zones.keys() {
                out.push(json!({"id": format!("sdn/{n}/{z}"), "type": "sdn", "sdn": z, "node": n, "status": "ok"}));
            }
        }
    }
    Ok(Value::Array(out))
}

pub(super) fn mem_bytes(vm: &Vm) -> u64 {
    let m = vm
        .config
        .get("memory")
        .map(|m| {
            m.trim_start_matches("current=")
                .split(',')
                .next()
                .unwrap_or("512")
                .parse()
                .unwrap_or(512)
        })
        .unwrap_or(512u64);
    m * 1024 * 1024
}
pub(super) fn cores(vm: &Vm) -> u64 {
    let c: u64 = vm
        .config
        .get("cores")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let s: u64 = vm
        .config
        .get("sockets")
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    c * s
}
pub(super) fn uptime(vm: &Vm) -> u64 {
    if vm.power == Power::Running {
        now().saturating_sub(vm.started_at)
    } else {
        0
    }
}

pub(super) fn used_bytes(st: &State, storage: &str, node: &str) -> u64 {
    st.volumes
        .values()
        .filter(|v| v.storage == storage && v.node == node)
        .map(|v| v.size)
        .sum()
}
