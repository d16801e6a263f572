//! Endpoint behaviour.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::guest::{AttachedMedia, BootImage, GuestAppliance, GuestContext};
use super::server::{ApiError, Ctx};
use super::state::{digest_of, now, ExecRecord, Power, Sdn, Shared, State, Task, Vm, Volume};
use crate::spec::{parse_property_string, print_property_string, ParamValue};

type R = Result<Value, ApiError>;
type BoxFut = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

pub(crate) async fn dispatch(ctx: &mut Ctx) -> R {
    let t = ctx.template.clone();
    let m = ctx.method.clone();
    match (m.as_str(), t.as_str()) {
        ("POST", "/access/ticket") => access_ticket(ctx),
        ("GET", "/access/ticket") => Ok(Value::Null),
        ("GET", "/version") => {
            Ok(json!({"version": "9.1.1", "release": "9.1", "repoid": "0a1b2c3d"}))
        }
        ("GET", "/nodes") => nodes_list(ctx),
        ("GET", "/cluster/nextid") => nextid(ctx),
        ("GET", "/cluster/resources") => resources(ctx),
        // qemu
        ("GET", "/nodes/{node}/qemu") => qemu_list(ctx),
        ("POST", "/nodes/{node}/qemu") => qemu_create(ctx).await,
        ("GET", "/nodes/{node}/qemu/{vmid}") => {
            vm_exists(ctx)?;
            Ok(
                json!([{"subdir":"config"},{"subdir":"pending"},{"subdir":"status"},{"subdir":"agent"},{"subdir":"firewall"}]),
            )
        }
        ("DELETE", "/nodes/{node}/qemu/{vmid}") => qemu_delete(ctx).await,
        ("GET", "/nodes/{node}/qemu/{vmid}/config") => qemu_config_get(ctx),
        ("PUT", "/nodes/{node}/qemu/{vmid}/config") => qemu_config_set(ctx, false).await,
        ("POST", "/nodes/{node}/qemu/{vmid}/config") => qemu_config_set(ctx, true).await,
        ("GET", "/nodes/{node}/qemu/{vmid}/pending") => qemu_pending(ctx),
        ("PUT", "/nodes/{node}/qemu/{vmid}/resize") => qemu_resize(ctx).await,
        ("GET", "/nodes/{node}/qemu/{vmid}/status") => {
            vm_exists(ctx)?;
            Ok(
                json!([{"subdir":"current"},{"subdir":"start"},{"subdir":"stop"},{"subdir":"shutdown"},{"subdir":"reboot"}]),
            )
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/status/current") => qemu_status(ctx),
        ("POST", "/nodes/{node}/qemu/{vmid}/status/start") => qemu_start(ctx).await,
        ("POST", "/nodes/{node}/qemu/{vmid}/status/stop") => qemu_stop(ctx, "qmstop").await,
        ("POST", "/nodes/{node}/qemu/{vmid}/status/shutdown") => qemu_stop(ctx, "qmshutdown").await,
        ("POST", "/nodes/{node}/qemu/{vmid}/status/reboot") => qemu_reboot(ctx).await,
        // agent
        ("POST", "/nodes/{node}/qemu/{vmid}/agent/ping") => {
            agent_ready(ctx)?;
            Ok(json!({"result": {}}))
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces") => agent_ifaces(ctx),
        ("GET", "/nodes/{node}/qemu/{vmid}/agent/get-host-name") => {
            let (gctx, _) = agent_ready(ctx)?;
            Ok(
                json!({"result": {"host-name": gctx.name.unwrap_or_else(|| format!("vm{}", gctx.vmid))}}),
            )
        }
        ("GET", "/nodes/{node}/qemu/{vmid}/agent/get-osinfo") => {
            let (_, app) = agent_ready(ctx)?;
            Ok(json!({"result": {"id": app.kind(), "name": app.kind(), "kernel-release": "6.1.0"}}))
        }
        ("POST", "/nodes/{node}/qemu/{vmid}/agent/exec") => agent_exec(ctx).await,
        ("GET", "/nodes/{node}/qemu/{vmid}/agent/exec-status") => agent_exec_status(ctx),
        ("POST", "/nodes/{node}/qemu/{vmid}/agent/file-write") => agent_file_write(ctx).await,
        ("GET", "/nodes/{node}/qemu/{vmid}/agent/file-read") => agent_file_read(ctx).await,
        // tasks
        ("GET", "/nodes/{node}/tasks") => tasks_list(ctx),
        ("GET", "/nodes/{node}/tasks/{upid}") => {
            task_get(ctx)?;
            Ok(json!([{"name":"log"},{"name":"status"}]))
        }
        ("GET", "/nodes/{node}/tasks/{upid}/status") => task_status(ctx),
        ("GET", "/nodes/{node}/tasks/{upid}/log") => task_log(ctx),
        ("DELETE", "/nodes/{node}/tasks/{upid}") => {
            let upid = ctx.req("upid")?.to_string();
            task_get(ctx)?;
            finish_task(&ctx.shared, &upid, Err("unexpected status".into()));
            Ok(Value::Null)
        }
        // storage
        ("GET", "/nodes/{node}/storage") => storage_list(ctx),
        ("GET", "/nodes/{node}/storage/{storage}/status") => storage_status(ctx),
        ("GET", "/nodes/{node}/storage/{storage}/content") => content_list(ctx),
        ("GET", "/nodes/{node}/storage/{storage}/content/{volume}") => content_get(ctx),
        ("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}") => content_delete(ctx),
        ("POST", "/nodes/{node}/storage/{storage}/download-url") => download_url(ctx),
        ("POST", "/nodes/{node}/storage/{storage}/upload") => upload(ctx),
        // network
        ("GET", "/nodes/{node}/network") => net_list(ctx),
        ("POST", "/nodes/{node}/network") => net_create(ctx),
        ("PUT", "/nodes/{node}/network") => net_apply(ctx),
        ("DELETE", "/nodes/{node}/network") => net_revert(ctx),
        ("GET", "/nodes/{node}/network/{iface}") => net_get(ctx),
        ("PUT", "/nodes/{node}/network/{iface}") => net_update(ctx),
        ("DELETE", "/nodes/{node}/network/{iface}") => net_delete(ctx),
        // sdn
        ("GET", "/cluster/sdn") => Ok(
            json!([{"id":"zones"},{"id":"vnets"},{"id":"controllers"},{"id":"ipams"},{"id":"dns"}]),
        ),
        ("PUT", "/cluster/sdn") => sdn_apply(ctx),
        (_, p) if p.starts_with("/cluster/sdn/zones") => sdn_zones(ctx),
        (_, p) if p.starts_with("/cluster/sdn/vnets/{vnet}/subnets") => sdn_subnets(ctx),
        (_, p) if p == "/cluster/sdn/vnets" || p == "/cluster/sdn/vnets/{vnet}" => sdn_vnets(ctx),
        // firewall
        (_, p)
            if p.starts_with("/cluster/firewall/")
                || p.starts_with("/nodes/{node}/firewall/")
                || p.starts_with("/nodes/{node}/qemu/{vmid}/firewall/") =>
        {
            super::firewall::dispatch(ctx)
        }
        (_, p) if p.starts_with("/access") => super::access::dispatch(ctx),
        (m, p) => Err(ApiError::new(
            501,
            format!("Method '{m} {p}' not implemented by the emulator"),
        )),
    }
}

// ---------------------------------------------------------------- helpers

fn node_check(ctx: &Ctx) -> Result<String, ApiError> {
    let node = ctx.req("node")?.to_string();
    if !ctx.shared.cfg.nodes.contains(&node) {
        return Err(ApiError::die(format!(
            "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
        )));
    }
    Ok(node)
}

fn vmid(ctx: &Ctx) -> Result<u32, ApiError> {
    ctx.req("vmid")?
        .parse()
        .map_err(|_| ApiError::param("vmid", "type check ('integer') failed"))
}

fn no_conf(node: &str, vmid: u32) -> ApiError {
    ApiError::die(format!(
        "Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
    ))
}

fn vm_exists(ctx: &Ctx) -> Result<(String, u32), ApiError> {
    let node = node_check(ctx)?;
    let id = vmid(ctx)?;
    let st = ctx.shared.st();
    match st.vms.get(&id) {
        Some(vm) if vm.node == node => Ok((node, id)),
        _ => Err(no_conf(&node, id)),
    }
}

fn size_str(bytes: u64) -> String {
    const K: u64 = 1024;
    if bytes > 0 && bytes.is_multiple_of(K * K * K) {
        format!("{}G", bytes / (K * K * K))
    } else if bytes > 0 && bytes.is_multiple_of(K * K) {
        format!("{}M", bytes / (K * K))
    } else if bytes > 0 && bytes.is_multiple_of(K) {
        format!("{}K", bytes / K)
    } else {
        bytes.to_string()
    }
}

fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1024f64),
        'M' => (&s[..s.len() - 1], 1024f64 * 1024.0),
        'G' => (&s[..s.len() - 1], 1024f64 * 1024.0 * 1024.0),
        'T' => (&s[..s.len() - 1], 1024f64 * 1024.0 * 1024.0 * 1024.0),
        _ => (s, 1f64),
    };
    num.parse::<f64>().ok().map(|n| (n * mult) as u64)
}

fn is_disk_key(k: &str) -> bool {
    k == "efidisk0"
        || k == "tpmstate0"
        || ["ide", "sata", "scsi", "virtio", "unused"].iter().any(|p| {
            k.strip_prefix(p)
                .map(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit()))
                .unwrap_or(false)
        })
}

fn is_net_key(k: &str) -> bool {
    k.strip_prefix("net")
        .map(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit()))
        .unwrap_or(false)
}

fn prop_format(ctx: &Ctx, key: &str) -> Option<Map<String, Value>> {
    let ep = ctx.shared.schema.endpoint("POST", "/nodes/{node}/qemu")?;
    let props = ep.properties()?;
    let schema = crate::spec::lookup_prop_pub(props, key)?;
    schema.get("format").and_then(Value::as_object).cloned()
}

fn storage_of(ctx: &Ctx, id: &str, node: &str) -> Result<super::StorageSpec, ApiError> {
    ctx.shared
        .cfg
        .storages
        .iter()
        .find(|s| s.id == id && (s.nodes.is_empty() || s.nodes.iter().any(|n| n == node)))
        .cloned()
        .ok_or_else(|| ApiError::die(format!("storage '{id}' does not exist")))
}

fn require_content(s: &super::StorageSpec, content: &str) -> Result<(), ApiError> {
    if s.content.iter().any(|c| c == content) {
        Ok(())
    } else {
        Err(ApiError::die(format!(
            "storage '{}' does not support content-type '{content}'",
            s.id
        )))
    }
}

/// A handle a worker uses to log.
#[derive(Clone)]
pub(crate) struct TaskLog {
    shared: Arc<Shared>,
    upid: String,
}

impl TaskLog {
    fn log(&self, line: impl Into<String>) {
        let line = line.into();
        let mut st = self.shared.st();
        if let Some(t) = st.tasks.iter_mut().find(|t| t.upid == self.upid) {
            t.log.push(line);
        }
    }
}

fn finish_task(shared: &Shared, upid: &str, r: Result<(), String>) {
    let mut st = shared.st();
    if let Some(t) = st.tasks.iter_mut().find(|t| t.upid == upid) {
        if t.exitstatus.is_some() {
            return;
        }
        match r {
            Ok(()) => {
                t.log.push("TASK OK".into());
                t.exitstatus = Some("OK".into());
            }
            Err(e) => {
                t.log.push(format!("TASK ERROR: {e}"));
                t.exitstatus = Some(e);
            }
        }
        t.endtime = Some(now());
    }
}

/// Start a worker task; returns the UPID.
fn start_task(
    ctx: &Ctx,
    node: &str,
    ttype: &str,
    id: &str,
    work: impl FnOnce(TaskLog) -> BoxFut,
) -> String {
    let shared = ctx.shared.clone();
    let user = if ctx.caller.id.is_empty() {
        "root@pam".to_string()
    } else {
        ctx.caller.id.clone()
    };
    let start = now();
    let upid = {
        let mut st = shared.st();
        st.next_task_pid += 1;
        let pid = st.next_task_pid;
        let pstart = start.wrapping_mul(100) & 0xffff_ffff;
        let upid = format!("UPID:{node}:{pid:08X}:{pstart:08X}:{start:08X}:{ttype}:{id}:{user}:");
        st.tasks.push(Task {
            upid: upid.clone(),
            node: node.to_string(),
            ttype: ttype.to_string(),
            id: id.to_string(),
            user,
            pid,
            pstart,
            starttime: start,
            endtime: None,
            exitstatus: None,
            log: Vec::new(),
        });
        upid
    };
    let log = TaskLog {
        shared: shared.clone(),
        upid: upid.clone(),
    };
    let fail = ctx.fail_task.clone();
    let fut = work(log.clone());
    let upid2 = upid.clone();
    tokio::spawn(async move {
        let r = fut.await;
        let r = match (r, fail) {
            (Ok(()), Some(f)) => Err(f),
            (r, _) => r,
        };
        finish_task(&shared, &upid2, r);
    });
    upid
}

async fn with_vm_lock<T>(
    shared: &Shared,
    vmid: u32,
    f: impl FnOnce() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let lock = shared.vm_lock(vmid);
    let guard = tokio::time::timeout(shared.cfg.timings.lock_timeout, lock.lock_owned())
        .await
        .map_err(|_| {
            ApiError::die(format!(
                "can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout"
            ))
        })?;
    tokio::time::sleep(shared.cfg.timings.config_write).await;
    let r = f();
    drop(guard);
    r
}

// ---------------------------------------------------------------- access / cluster

fn access_ticket(ctx: &Ctx) -> R {
    let mut user = ctx.req("username")?.to_string();
    if let Some(realm) = ctx.p("realm") {
        if !user.contains('@') {
            user = format!("{user}@{realm}");
        }
    }
    let pw = ctx.req("password")?;
    // A valid ticket of the same user also renews (PVE accepts the old ticket as password).
    let renew = super::auth::verify_ticket(&ctx.shared.ticket_secret, pw, now(), 7200)
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
        "ticket": super::auth::make_ticket(&ctx.shared.ticket_secret, &user, t),
        "CSRFPreventionToken": super::auth::make_csrf(&ctx.shared.ticket_secret, &user, t),
        "clustername": ctx.shared.cfg.cluster_name,
    }))
}

fn nodes_list(ctx: &Ctx) -> R {
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

fn nextid(ctx: &Ctx) -> R {
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

fn resources(ctx: &Ctx) -> R {
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

fn mem_bytes(vm: &Vm) -> u64 {
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
fn cores(vm: &Vm) -> u64 {
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
fn uptime(vm: &Vm) -> u64 {
    if vm.power == Power::Running {
        now().saturating_sub(vm.started_at)
    } else {
        0
    }
}

fn used_bytes(st: &State, storage: &str, node: &str) -> u64 {
    st.volumes
        .values()
        .filter(|v| v.storage == storage && v.node == node)
        .map(|v| v.size)
        .sum()
}

// ---------------------------------------------------------------- qemu

fn qemu_list(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let st = ctx.shared.st();
    let list: Vec<Value> = st
        .vms
        .values()
        .filter(|v| v.node == node && ctx.caller.has(&format!("/vms/{}", v.vmid), "VM.Audit"))
        .map(|vm| {
            let mut o = json!({"vmid": vm.vmid, "status": if vm.power == Power::Running {"running"} else {"stopped"},
                "maxmem": mem_bytes(vm), "cpus": cores(vm), "uptime": uptime(vm), "mem": 0, "cpu": 0, "maxdisk": 0,
                "disk": 0, "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0});
            if let Some(map) = o.as_object_mut() {
                map.remove("disk");
            }
            if let Some(n) = vm.config.get("name") {
                o["name"] = json!(n);
            }
            if let Some(t) = vm.config.get("tags") {
                o["tags"] = json!(t);
            }
            if let Some(l) = vm.config.get("lock") {
                o["lock"] = json!(l);
            }
            o
        })
        .collect();
    Ok(Value::Array(list))
}

/// Privileges PVE requires to set each config key (`check_vm_modify_config_perm`).
fn key_privilege(key: &str) -> &'static str {
    const CPU: &[&str] = &[
        "cores", "sockets", "cpu", "cpulimit", "cpuunits", "vcpus", "numa", "affinity", "cpuset",
    ];
    const MEM: &[&str] = &[
        "memory",
        "balloon",
        "shares",
        "hugepages",
        "keephugepages",
        "allow-ksm",
    ];
    const HW: &[&str] = &[
        "hotplug",
        "kvm",
        "machine",
        "scsihw",
        "smbios1",
        "tablet",
        "vga",
        "watchdog",
        "audio0",
        "bios",
        "arch",
        "rng0",
        "serial0",
        "serial1",
        "serial2",
        "serial3",
        "amd-sev",
        "intel-tdx",
        "vmgenid",
    ];
    const CI: &[&str] = &[
        "cicustom",
        "cipassword",
        "citype",
        "ciuser",
        "ciupgrade",
        "nameserver",
        "searchdomain",
        "sshkeys",
    ];
    if CPU.contains(&key) {
        "VM.Config.CPU"
    } else if MEM.contains(&key) {
        "VM.Config.Memory"
    } else if HW.contains(&key) {
        "VM.Config.HWType"
    } else if CI.contains(&key) || key.starts_with("ipconfig") {
        "VM.Config.Cloudinit"
    } else if is_net_key(key) {
        "VM.Config.Network"
    } else if is_disk_key(key) {
        "VM.Config.Disk"
    } else if key == "freeze" {
        "VM.PowerMgmt"
    } else {
        "VM.Config.Options"
    }
}

const NON_CONFIG: &[&str] = &[
    "node",
    "vmid",
    "start",
    "pool",
    "storage",
    "unique",
    "archive",
    "force",
    "live-restore",
    "import-working-storage",
    "bwlimit",
    "delete",
    "revert",
    "digest",
    "skiplock",
    "background_delay",
    "ha-managed",
];

fn check_key_perms(ctx: &Ctx, vmid: u32, keys: &[String]) -> Result<(), ApiError> {
    let path = format!("/vms/{vmid}");
    for k in keys {
        if NON_CONFIG.contains(&k.as_str()) {
            continue;
        }
        let mut privilege = key_privilege(k);
        if k.starts_with("ide") || k.starts_with("sata") {
            if let Some(v) = ctx.p(k) {
                if v.contains("media=cdrom") || v == "none" || v == "cdrom" {
                    privilege = "VM.Config.CDROM";
                }
            }
        }
        ctx.require(&path, privilege)?;
        if is_net_key(k) {
            if let Some(fmt) = prop_format(ctx, k) {
                if let Ok(net) = parse_property_string(&fmt, ctx.p(k).unwrap_or("")) {
                    if let Some(br) = net.get("bridge") {
                        // PVE 8+: bridges need SDN.Use on the local network zone.
                        let zone_path = {
                            let st = ctx.shared.st();
                            match st
                                .sdn
                                .vnets
                                .get(br)
                                .and_then(|v| v.get("zone"))
                                .and_then(Value::as_str)
                            {
                                Some(z) => format!("/sdn/zones/{z}/{br}"),
                                None => format!("/sdn/zones/localnetwork/{br}"),
                            }
                        };
                        ctx.require(&zone_path, "SDN.Use")?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn gen_mac(vmid: u32, idx: u32) -> String {
    let h = (vmid as u64)
        .wrapping_mul(0x9E37_79B9)
        .wrapping_add(idx as u64 * 7919);
    format!(
        "BC:24:11:{:02X}:{:02X}:{:02X}",
        (h >> 16) & 0xff,
        (h >> 8) & 0xff,
        h & 0xff
    )
}

/// Result of preparing a disk: the new config string and volumes to create.
struct DiskPlan {
    value: String,
    new_volumes: Vec<Volume>,
    imported_from: Option<String>,
}

fn plan_disk(
    ctx: &Ctx,
    st: &State,
    node: &str,
    vmid: u32,
    key: &str,
    raw: &str,
    disk_counter: &mut u32,
) -> Result<DiskPlan, ApiError> {
    let fmt = prop_format(ctx, key).ok_or_else(|| ApiError::param(key, "unknown disk key"))?;
    let mut d = parse_property_string(&fmt, raw).map_err(|e| ApiError::param(key, e))?;
    let file = d.get("file").cloned().unwrap_or_default();
    let mut new_volumes = Vec::new();
    let mut imported_from = None;
    if file == "none" || file == "cdrom" || file.starts_with('/') {
        return Ok(DiskPlan {
            value: raw.to_string(),
            new_volumes,
            imported_from,
        });
    }
    let (sid, rest) = file
        .split_once(':')
        .ok_or_else(|| ApiError::param(key, format!("unable to parse volume ID '{file}'")))?;
    let storage = storage_of(ctx, sid, node)?;
    let is_cdrom = d.get("media").map(|m| m == "cdrom").unwrap_or(false);
    let alloc_size: Option<f64> = rest.parse::<f64>().ok();
    if let Some(src) = d.get("import-from").cloned() {
        if alloc_size != Some(0.0) {
            return Err(ApiError::param(
                key,
                "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>",
            ));
        }
        let (ssid, _) = src.split_once(':').unwrap_or(("", ""));
        let source = st
            .volumes
            .get(&(node.to_string(), src.clone()))
            .or_else(|| {
                st.volumes.values().find(|v| {
                    v.volid == src
                        && storage_of(ctx, ssid, node)
                            .map(|s| s.shared)
                            .unwrap_or(false)
                })
            })
            .ok_or_else(|| ApiError::die(format!("volume '{src}' does not exist")))?;
        if !matches!(source.content.as_str(), "import" | "images" | "iso") {
            return Err(ApiError::die(format!(
                "{key}: '{src}' has wrong type '{}' - needs to be 'images' or 'import'",
                source.content
            )));
        }
        ctx.require_any(
            &format!("/storage/{ssid}"),
            &["Datastore.Audit", "Datastore.AllocateSpace"],
        )?;
        imported_from = Some(src.clone());
        d.remove("import-from");
        require_content(&storage, "images")?;
        ctx.require(&format!("/storage/{sid}"), "Datastore.AllocateSpace")?;
        let size = source.size;
        let volid = next_disk_volid(st, sid, node, vmid, disk_counter);
        new_volumes.push(Volume {
            volid: volid.clone(),
            storage: sid.into(),
            node: node.into(),
            content: "images".into(),
            format: "raw".into(),
            size,
            ctime: now(),
            vmid: Some(vmid),
            data: None,
            source_url: None,
        });
        d.insert("file".into(), volid);
        d.insert("size".into(), size_str(size));
    } else if rest == "cloudinit" {
        require_content(&storage, "images")?;
        // PVE's check_storage_access: a cloud-init drive allocates a volume.
        ctx.require(&format!("/storage/{sid}"), "Datastore.AllocateSpace")?;
        let volid = format!("{sid}:vm-{vmid}-cloudinit");
        new_volumes.push(Volume {
            volid: volid.clone(),
            storage: sid.into(),
            node: node.into(),
            content: "images".into(),
            format: "raw".into(),
            size: 4 << 20,
            ctime: now(),
            vmid: Some(vmid),
            data: None,
            source_url: None,
        });
        d.insert("file".into(), volid);
        d.insert("media".into(), "cdrom".into());
    } else if let Some(gb) = alloc_size {
        require_content(&storage, "images")?;
        ctx.require(&format!("/storage/{sid}"), "Datastore.AllocateSpace")?;
        let size = match key {
            "efidisk0" => 4 << 20,
            "tpmstate0" => 4 << 20,
            _ => (gb * 1024.0 * 1024.0 * 1024.0) as u64,
        };
        if size == 0 {
            return Err(ApiError::param(key, "disk size must be greater than zero"));
        }
        let volid = next_disk_volid(st, sid, node, vmid, disk_counter);
        new_volumes.push(Volume {
            volid: volid.clone(),
            storage: sid.into(),
            node: node.into(),
            content: "images".into(),
            format: "raw".into(),
            size,
            ctime: now(),
            vmid: Some(vmid),
            data: None,
            source_url: None,
        });
        d.insert("file".into(), volid);
        d.insert("size".into(), size_str(size));
    } else {
        // existing volume (ISO for a cdrom, or an existing disk)
        let vol = st
            .volumes
            .get(&(node.to_string(), file.clone()))
            .ok_or_else(|| ApiError::die(format!("volume '{file}' does not exist")))?;
        if is_cdrom && vol.content != "iso" {
            return Err(ApiError::die(format!(
                "{key}: '{file}' is not an ISO image"
            )));
        }
        ctx.require_any(
            &format!("/storage/{sid}"),
            &["Datastore.Audit", "Datastore.AllocateSpace"],
        )?;
        d.insert("size".into(), size_str(vol.size));
    }
    Ok(DiskPlan {
        value: print_property_string(&fmt, &d, &[]),
        new_volumes,
        imported_from,
    })
}

fn next_disk_volid(st: &State, sid: &str, node: &str, vmid: u32, counter: &mut u32) -> String {
    loop {
        let v = format!("{sid}:vm-{vmid}-disk-{}", *counter);
        *counter += 1;
        if !st.volumes.contains_key(&(node.to_string(), v.clone())) {
            return v;
        }
    }
}

fn normalize_net(ctx: &Ctx, vmid: u32, key: &str, raw: &str) -> Result<String, ApiError> {
    let fmt = prop_format(ctx, key).ok_or_else(|| ApiError::param(key, "unknown key"))?;
    let mut n = parse_property_string(&fmt, raw).map_err(|e| ApiError::param(key, e))?;
    let model = n.remove("model").unwrap_or_else(|| "virtio".into());
    let idx: u32 = key[3..].parse().unwrap_or(0);
    let mac = n.remove("macaddr").unwrap_or_else(|| gen_mac(vmid, idx));
    let mut parts = vec![format!("{model}={}", mac.to_ascii_uppercase())];
    for (k, v) in n {
        parts.push(format!("{k}={v}"));
    }
    Ok(parts.join(","))
}

/// Config updates in the order PVE allocates drives (ide, sata, scsi, virtio, efidisk0,
/// tpmstate0), other keys after.
fn config_updates(ctx: &Ctx) -> Vec<(String, String)> {
    let rank = |k: &str| -> (u8, u32) {
        let num = |p: &str| k.strip_prefix(p).and_then(|n| n.parse::<u32>().ok());
        if let Some(n) = num("ide") {
            (0, n)
        } else if let Some(n) = num("sata") {
            (1, n)
        } else if let Some(n) = num("scsi") {
            (2, n)
        } else if let Some(n) = num("virtio") {
            (3, n)
        } else if k == "efidisk0" {
            (4, 0)
        } else if k == "tpmstate0" {
            (5, 0)
        } else {
            (6, 0)
        }
    };
    let mut v: Vec<(String, String)> = ctx
        .params
        .iter()
        .filter(|(k, _)| !NON_CONFIG.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.as_str().to_string()))
        .collect();
    v.sort_by(|a, b| rank(&a.0).cmp(&rank(&b.0)).then_with(|| a.0.cmp(&b.0)));
    v
}

async fn qemu_create(ctx: &mut Ctx) -> R {
    let node = node_check(ctx)?;
    let id = vmid(ctx)?;
    ctx.require(&format!("/vms/{id}"), "VM.Allocate")?;
    let updates = config_updates(ctx);
    let keys: Vec<String> = updates.iter().map(|(k, _)| k.clone()).collect();
    check_key_perms(ctx, id, &keys)?;
    if ctx.p("archive").is_some() {
        return Err(ApiError::new(501, "restore is not emulated"));
    }
    let start_after = ctx.flag("start").unwrap_or(false);
    let mut nets = BTreeMap::new();
    for (k, v) in &updates {
        if is_net_key(k) {
            nets.insert(k.clone(), normalize_net(ctx, id, k, v)?);
        }
    }
    // Plan everything before touching state.
    let (config, volumes, imported) = {
        let st = ctx.shared.st();
        if let Some(vm) = st.vms.get(&id) {
            return Err(ApiError::die(format!(
                "VM {id} already exists on node '{}'",
                vm.node
            )));
        }
        let mut config = BTreeMap::new();
        let mut volumes = Vec::new();
        let mut imported = BTreeMap::new();
        let mut counter = 0;
        for (k, v) in &updates {
            if is_disk_key(k) {
                let plan = plan_disk(ctx, &st, &node, id, k, v, &mut counter)?;
                volumes.extend(plan.new_volumes);
                if let Some(src) = plan.imported_from {
                    imported.insert(k.clone(), src);
                }
                config.insert(k.clone(), plan.value);
            } else if let Some(n) = nets.get(k) {
                config.insert(k.clone(), n.clone());
            } else {
                config.insert(k.clone(), v.clone());
            }
        }
        (config, volumes, imported)
    };
    finish_create(ctx, node, id, config, volumes, imported, start_after)
}

fn finish_create(
    ctx: &mut Ctx,
    node: String,
    id: u32,
    mut config: BTreeMap<String, String>,
    volumes: Vec<Volume>,
    imported: BTreeMap<String, String>,
    start_after: bool,
) -> R {
    config.insert("lock".into(), "create".into());
    config
        .entry("smbios1".into())
        .or_insert_with(|| format!("uuid={}", pseudo_uuid(id)));
    config
        .entry("vmgenid".into())
        .or_insert_with(|| pseudo_uuid(id ^ 0x5a5a));
    {
        let mut st = ctx.shared.st();
        if st.vms.contains_key(&id) {
            return Err(ApiError::die(format!(
                "VM {id} already exists on node '{node}'"
            )));
        }
        st.vms.insert(
            id,
            Vm {
                vmid: id,
                node: node.clone(),
                config,
                pending: BTreeMap::new(),
                pending_delete: BTreeSet::new(),
                power: Power::Stopped,
                started_at: 0,
                generation: 0,
                booted: false,
                imported_from: imported.clone(),
                appliance: None,
                exec: Default::default(),
                next_pid: 1000,
                dhcp: BTreeMap::new(),
            },
        );
    }
    let shared = ctx.shared.clone();
    let task_time = shared.cfg.timings.task;
    let import_time = if imported.is_empty() {
        Duration::ZERO
    } else {
        shared.cfg.timings.download
    };
    let node2 = node.clone();
    // A failing create rolls back like PVE's: no config, no disks left.
    let fail = ctx.fail_task.take();
    let upid = start_task(ctx, &node, "qmcreate", &id.to_string(), move |log| {
        Box::pin(async move {
            let lock = shared.vm_lock(id);
            let _g = lock.lock_owned().await;
            // Allocations on a storage are serialised cluster-wide (PVE's cfs-lock).
            let mut storages: Vec<String> = volumes.iter().map(|v| v.storage.clone()).collect();
            storages.sort();
            storages.dedup();
            let mut guards = Vec::new();
            for sid in &storages {
                let l = shared.storage_lock(sid);
                match tokio::time::timeout(shared.cfg.timings.storage_lock_timeout, l.lock_owned())
                    .await
                {
                    Ok(g) => guards.push(g),
                    Err(_) => {
                        shared.st().vms.remove(&id);
                        let msg = format!("unable to create VM {id} - cfs-lock 'storage-{sid}' error: got lock request timeout");
                        log.log(msg.clone());
                        return Err(msg);
                    }
                }
            }
            tokio::time::sleep(shared.cfg.timings.storage_alloc).await;
            drop(guards);
            tokio::time::sleep(task_time + import_time).await;
            if let Some(msg) = fail {
                shared.st().vms.remove(&id);
                log.log(format!("unable to create VM {id} - {msg}"));
                return Err(format!("unable to create VM {id} - {msg}"));
            }
            for v in &volumes {
                log.log(format!(
                    "  Logical volume \"{}\" created.",
                    v.volid.split(':').nth(1).unwrap_or("")
                ));
            }
            for (k, src) in &imported {
                log.log(format!("importing disk '{src}' to VM {id} ..."));
                log.log("transferred 100.0% (100.00%)".to_string());
                log.log(format!("{k}: successfully created disk"));
            }
            {
                let mut st = shared.st();
                for v in volumes {
                    st.volumes.insert((node2.clone(), v.volid.clone()), v);
                }
                if let Some(vm) = st.vms.get_mut(&id) {
                    vm.config.remove("lock");
                } else {
                    return Err(format!("VM {id} vanished during create"));
                }
            }
            Ok(())
        })
    });
    if start_after {
        // Start when the create task has finished (like `qm create --start`).
        let shared = ctx.shared.clone();
        let up = upid.clone();
        let node = node.clone();
        let slow = ctx.slow_boot;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let done = shared
                    .st()
                    .tasks
                    .iter()
                    .find(|t| t.upid == up)
                    .map(|t| t.exitstatus.clone());
                match done {
                    Some(Some(s)) if s == "OK" => break,
                    Some(None) => continue,
                    _ => return,
                }
            }
            power_on(&shared, &node, id, slow);
        });
    }
    Ok(json!(upid))
}

fn pseudo_uuid(seed: u32) -> String {
    let h = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 20) & 0xfff,
        h & 0xffff_ffff_ffff
    )
}

fn qemu_config_get(ctx: &Ctx) -> R {
    let (_, id) = vm_exists(ctx)?;
    let current = ctx.flag("current").unwrap_or(false);
    let st = ctx.shared.st();
    let vm = st.vms.get(&id).ok_or_else(|| ApiError::die("vanished"))?;
    let mut cfg = vm.config.clone();
    if !current {
        for (k, v) in &vm.pending {
            cfg.insert(k.clone(), v.clone());
        }
        for k in &vm.pending_delete {
            cfg.remove(k);
        }
    }
    let mut out = Map::new();
    for (k, v) in &cfg {
        out.insert(k.clone(), typed_config_value(ctx, k, v));
    }
    out.insert("digest".into(), json!(digest_of(vm.config.iter())));
    Ok(Value::Object(out))
}

/// Config values come back typed (integers/numbers as JSON numbers).
fn typed_config_value(ctx: &Ctx, k: &str, v: &str) -> Value {
    let ty = ctx
        .shared
        .schema
        .endpoint("GET", "/nodes/{node}/qemu/{vmid}/config")
        .and_then(|ep| {
            ep.returns()
                .and_then(|r| r.get("properties"))
                .and_then(Value::as_object)
                .and_then(|p| crate::spec::lookup_prop_pub(p, k))
                .and_then(|s| s.get("type"))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    match ty.as_deref() {
        Some("integer") | Some("boolean") => {
            v.parse::<i64>().map(Value::from).unwrap_or_else(|_| {
                json!(if matches!(v, "true" | "yes" | "on") {
                    1
                } else {
                    0
                })
            })
        }
        Some("number") => v.parse::<f64>().map(|f| json!(f)).unwrap_or(json!(v)),
        _ => json!(v),
    }
}

fn hotpluggable(k: &str) -> bool {
    is_net_key(k)
        || is_disk_key(k)
        || matches!(
            k,
            "name"
                | "description"
                | "onboot"
                | "protection"
                | "tags"
                | "startup"
                | "hookscript"
                | "lock"
                | "agent"
                | "ciuser"
                | "cipassword"
                | "sshkeys"
                | "nameserver"
                | "searchdomain"
                | "cicustom"
        )
        || k.starts_with("ipconfig")
}

async fn qemu_config_set(ctx: &mut Ctx, async_task: bool) -> R {
    let (node, id) = vm_exists(ctx)?;
    let updates = config_updates(ctx);
    let deletes: Vec<String> = ctx
        .p("delete")
        .map(|d| {
            d.split([',', ';', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mut keys: Vec<String> = updates.iter().map(|(k, _)| k.clone()).collect();
    keys.extend(deletes.iter().cloned());
    check_key_perms(ctx, id, &keys)?;
    for k in &deletes {
        if updates.iter().any(|(u, _)| u == k) {
            return Err(ApiError::param(k, "can't set and delete the same option"));
        }
    }
    let mut nets = BTreeMap::new();
    for (k, v) in &updates {
        if is_net_key(k) {
            nets.insert(k.clone(), normalize_net(ctx, id, k, v)?);
        }
    }
    let digest = ctx.p("digest").map(str::to_string);
    let shared = ctx.shared.clone();
    let skiplock = ctx.flag("skiplock").unwrap_or(false);
    let ctx_ref = &*ctx;
    with_vm_lock(&shared, id, || {
        let mut st = shared.st();
        let vm = st.vms.get(&id).ok_or_else(|| no_conf(&node, id))?;
        if let Some(l) = vm.config.get("lock") {
            if !skiplock {
                return Err(ApiError::die(format!("VM is locked ({l})")));
            }
        }
        if let Some(d) = &digest {
            if *d != digest_of(vm.config.iter()) {
                return Err(ApiError::die(
                    "detected modified configuration - file changed by other user? Try again.",
                ));
            }
        }
        let running = vm.power == Power::Running;
        let mut counter = 0;
        let mut planned = Vec::new();
        let mut new_vols = Vec::new();
        let mut imported = Vec::new();
        for (k, v) in &updates {
            if is_disk_key(k) {
                let plan = plan_disk(ctx_ref, &st, &node, id, k, v, &mut counter)?;
                new_vols.extend(plan.new_volumes);
                if let Some(src) = plan.imported_from {
                    imported.push((k.clone(), src));
                }
                planned.push((k.clone(), plan.value));
            } else if let Some(n) = nets.get(k) {
                planned.push((k.clone(), n.clone()));
            } else {
                planned.push((k.clone(), v.clone()));
            }
        }
        for v in new_vols {
            st.volumes.insert((node.clone(), v.volid.clone()), v);
        }
        let vm = st.vms.get_mut(&id).ok_or_else(|| no_conf(&node, id))?;
        for (k, src) in imported {
            vm.imported_from.insert(k, src);
        }
        for (k, v) in planned {
            if running && !hotpluggable(&k) {
                vm.pending.insert(k.clone(), v);
                vm.pending_delete.remove(&k);
            } else {
                vm.config.insert(k.clone(), v);
                vm.pending.remove(&k);
            }
        }
        let mut unused = Vec::new();
        for k in &deletes {
            if running && !hotpluggable(k) {
                vm.pending_delete.insert(k.clone());
            } else {
                if let Some(old) = vm.config.remove(k) {
                    if is_disk_key(k) && !k.starts_with("unused") && !old.contains("media=cdrom") {
                        unused.push(old.split(',').next().unwrap_or("").to_string());
                    }
                }
                vm.pending.remove(k);
            }
        }
        // Detached disks become unusedN like in PVE.
        for vol in unused {
            let mut i = 0;
            while vm.config.contains_key(&format!("unused{i}")) {
                i += 1;
            }
            vm.config.insert(format!("unused{i}"), vol);
        }
        Ok(())
    })
    .await?;
    if async_task {
        let upid = start_task(ctx, &node, "qmconfig", &id.to_string(), |_log| {
            Box::pin(async { Ok(()) })
        });
        Ok(json!(upid))
    } else {
        Ok(Value::Null)
    }
}

fn qemu_pending(ctx: &Ctx) -> R {
    let (_, id) = vm_exists(ctx)?;
    let st = ctx.shared.st();
    let vm = st.vms.get(&id).ok_or_else(|| ApiError::die("vanished"))?;
    let mut keys: BTreeSet<&String> = vm.config.keys().collect();
    keys.extend(vm.pending.keys());
    keys.extend(vm.pending_delete.iter());
    let mut out = Vec::new();
    for k in keys {
        let mut o = json!({"key": k});
        if let Some(v) = vm.config.get(k) {
            o["value"] = json!(v);
        }
        if let Some(v) = vm.pending.get(k) {
            o["pending"] = json!(v);
        }
        if vm.pending_delete.contains(k) {
            o["delete"] = json!(1);
        }
        out.push(o);
    }
    Ok(Value::Array(out))
}

async fn qemu_resize(ctx: &mut Ctx) -> R {
    let (node, id) = vm_exists(ctx)?;
    ctx.require(&format!("/vms/{id}"), "VM.Config.Disk")?;
    let disk = ctx.req("disk")?.to_string();
    let size = ctx.req("size")?.to_string();
    let shared = ctx.shared.clone();
    let ctx_ref = &*ctx;
    with_vm_lock(&shared, id, || {
        let mut st = shared.st();
        let vm = st.vms.get(&id).ok_or_else(|| no_conf(&node, id))?;
        let cur = vm
            .config
            .get(&disk)
            .cloned()
            .ok_or_else(|| ApiError::die(format!("disk '{disk}' does not exist")))?;
        let fmt = prop_format(ctx_ref, &disk).ok_or_else(|| ApiError::die("bad disk"))?;
        let mut d = parse_property_string(&fmt, &cur).map_err(ApiError::die)?;
        let old = d.get("size").and_then(|s| parse_size(s)).unwrap_or(0);
        let new = if let Some(inc) = size.strip_prefix('+') {
            old + parse_size(inc).ok_or_else(|| ApiError::param("size", "invalid size"))?
        } else {
            parse_size(&size).ok_or_else(|| ApiError::param("size", "invalid size"))?
        };
        if new < old {
            return Err(ApiError::die("shrinking disks is not supported"));
        }
        d.insert("size".into(), size_str(new));
        let volid = d.get("file").cloned().unwrap_or_default();
        let value = print_property_string(&fmt, &d, &[]);
        if let Some(v) = st.volumes.get_mut(&(node.clone(), volid)) {
            v.size = new;
        }
        if let Some(vm) = st.vms.get_mut(&id) {
            vm.config.insert(disk.clone(), value);
        }
        Ok(())
    })
    .await?;
    let upid = start_task(ctx, &node, "resize", &id.to_string(), |_| {
        Box::pin(async { Ok(()) })
    });
    Ok(json!(upid))
}

fn qemu_status(ctx: &Ctx) -> R {
    let (_, id) = vm_exists(ctx)?;
    let st = ctx.shared.st();
    let vm = st.vms.get(&id).ok_or_else(|| ApiError::die("vanished"))?;
    let running = vm.power == Power::Running;
    let mut o = json!({
        "vmid": id,
        "status": if running {"running"} else {"stopped"},
        "qmpstatus": if running {"running"} else {"stopped"},
        "ha": {"managed": 0},
        "cpus": cores(vm),
        "maxmem": mem_bytes(vm),
        "maxdisk": 0,
        "uptime": uptime(vm),
        "cpu": 0, "mem": 0, "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
    });
    if agent_enabled(vm) {
        o["agent"] = json!(1);
    }
    if running {
        o["pid"] = json!(10000 + id);
        o["running-qemu"] = json!("10.1.2");
        o["running-machine"] = json!("pc-i440fx-10.1+pve0");
    }
    if let Some(n) = vm.config.get("name") {
        o["name"] = json!(n);
    }
    if let Some(l) = vm.config.get("lock") {
        o["lock"] = json!(l);
    }
    if let Some(t) = vm.config.get("tags") {
        o["tags"] = json!(t);
    }
    Ok(o)
}

fn agent_enabled(vm: &Vm) -> bool {
    vm.config
        .get("agent")
        .map(|a| {
            let first = a
                .split(',')
                .find(|p| !p.contains('=') || p.starts_with("enabled="))
                .unwrap_or("0");
            let v = first.trim_start_matches("enabled=");
            matches!(v, "1" | "true" | "yes" | "on")
        })
        .unwrap_or(false)
}

fn guest_context(shared: &Shared, st: &State, vm: &Vm) -> GuestContext {
    let mut macs = BTreeMap::new();
    for (k, v) in &vm.config {
        if is_net_key(k) {
            if let Some(first) = v.split(',').next() {
                if let Some((_, mac)) = first.split_once('=') {
                    macs.insert(k[3..].parse().unwrap_or(0), mac.to_string());
                }
            }
        }
    }
    let mut media = Vec::new();
    for (k, v) in &vm.config {
        if is_disk_key(k) && v.contains("media=cdrom") {
            let volid = v.split(',').next().unwrap_or("").to_string();
            let data = st
                .volumes
                .get(&(vm.node.clone(), volid.clone()))
                .and_then(|x| x.data.clone());
            media.push(AttachedMedia {
                key: k.clone(),
                volid,
                data,
            });
        }
    }
    let boot_image = vm
        .imported_from
        .iter()
        .next()
        .map(|(k, src)| BootImage {
            disk: k.clone(),
            volid: src.clone(),
            source_url: st
                .volumes
                .values()
                .find(|v| &v.volid == src)
                .and_then(|v| v.source_url.clone()),
        })
        .or_else(|| {
            media.iter().find(|m| m.data.is_none()).map(|m| BootImage {
                disk: m.key.clone(),
                volid: m.volid.clone(),
                source_url: st
                    .volumes
                    .values()
                    .find(|v| v.volid == m.volid)
                    .and_then(|v| v.source_url.clone()),
            })
        });
    let _ = shared;
    GuestContext {
        vmid: vm.vmid,
        node: vm.node.clone(),
        name: vm.config.get("name").cloned(),
        config: vm.config.clone(),
        tags: vm
            .config
            .get("tags")
            .map(|t| {
                t.split([';', ',', ' '])
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        macs,
        dhcp: vm.dhcp.clone(),
        boot_image,
        media,
    }
}

/// SDN vnets with a DHCP server in the applied SDN configuration: the zone has `dhcp` set
/// (dnsmasq) and a subnet of the vnet has a `dhcp-range`.
fn dhcp_vnets(sdn: &Sdn) -> Vec<String> {
    let Some(running) = sdn.running.as_deref() else {
        return Vec::new();
    };
    let (zones, vnets, subnets) = running;
    vnets
        .iter()
        .filter(|(_, v)| {
            v.get("zone")
                .and_then(Value::as_str)
                .and_then(|z| zones.get(z))
                .is_some_and(|z| z.get("dhcp").and_then(Value::as_str).is_some())
        })
        .filter(|(name, _)| {
            subnets.values().any(|s| {
                s.get("vnet").and_then(Value::as_str) == Some(name.as_str())
                    && s.get("dhcp-range").is_some_and(|r| match r {
                        Value::Array(a) => !a.is_empty(),
                        Value::String(x) => !x.is_empty(),
                        _ => false,
                    })
            })
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Mark the VM running and schedule its boot.
fn power_on(shared: &Arc<Shared>, node: &str, id: u32, slow: Option<Duration>) {
    let generation = {
        let mut st = shared.st();
        let start = shared.cfg.dhcp_pool_start;
        let mut next = st.dhcp_next;
        let Some(vm) = st.vms.get_mut(&id) else {
            return;
        };
        // Pending changes apply on a fresh start.
        let pending = std::mem::take(&mut vm.pending);
        vm.config.extend(pending);
        for k in std::mem::take(&mut vm.pending_delete) {
            vm.config.remove(&k);
        }
        vm.power = Power::Running;
        vm.started_at = now();
        vm.generation += 1;
        vm.booted = false;
        let nics: Vec<u32> = vm
            .config
            .keys()
            .filter(|k| is_net_key(k))
            .filter_map(|k| k[3..].parse().ok())
            .collect();
        // A NIC gets a lease only when its bridge has a DHCP server; static addresses are
        // the guest's business (its NoCloud network configuration).
        let bridges: Vec<(u32, String)> = nics
            .into_iter()
            .filter_map(|i| {
                let net = vm.config.get(&format!("net{i}"))?;
                let bridge = net.split(',').find_map(|p| p.strip_prefix("bridge="))?;
                Some((i, bridge.to_string()))
            })
            .collect();
        let sdn_dhcp = dhcp_vnets(&st.sdn);
        let served: Vec<u32> = bridges
            .into_iter()
            .filter(|(_, b)| shared.cfg.dhcp_bridges.contains(b) || sdn_dhcp.contains(b))
            .map(|(i, _)| i)
            .collect();
        let Some(vm) = st.vms.get_mut(&id) else {
            return;
        };
        vm.dhcp.retain(|i, _| served.contains(i));
        for i in served {
            if vm.dhcp.contains_key(&i) {
                continue;
            }
            let ip = Ipv4Addr::from(u32::from(start).wrapping_add(next));
            next += 1;
            vm.dhcp.insert(i, ip);
        }
        let g = vm.generation;
        st.dhcp_next = next;
        g
    };
    let shared = shared.clone();
    let node = node.to_string();
    let delay = shared.cfg.timings.boot + slow.unwrap_or_default();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let (gctx, existing) = {
            let st = shared.st();
            let Some(vm) = st.vms.get(&id) else { return };
            if vm.generation != generation || vm.power != Power::Running || vm.node != node {
                return;
            }
            (guest_context(&shared, &st, vm), vm.appliance.clone())
        };
        let app: Arc<dyn GuestAppliance> = match existing {
            Some(a) => a,
            None => shared.appliances.select(&gctx),
        };
        let r = app.boot(&gctx).await;
        let mut st = shared.st();
        if let Some(vm) = st.vms.get_mut(&id) {
            if vm.generation == generation && vm.power == Power::Running {
                vm.appliance = Some(app);
                vm.booted = r.is_ok();
            }
        }
    });
}

async fn qemu_start(ctx: &mut Ctx) -> R {
    let (node, id) = vm_exists(ctx)?;
    {
        let st = ctx.shared.st();
        let vm = st.vms.get(&id).ok_or_else(|| no_conf(&node, id))?;
        if let Some(l) = vm.config.get("lock") {
            if !ctx.flag("skiplock").unwrap_or(false) {
                return Err(ApiError::die(format!("VM is locked ({l})")));
            }
        }
        if vm.power == Power::Running {
            return Err(ApiError::die(format!("VM {id} already running")));
        }
    }
    let shared = ctx.shared.clone();
    let slow = ctx.slow_boot;
    let t = shared.cfg.timings.task;
    let node2 = node.clone();
    let upid = start_task(ctx, &node, "qmstart", &id.to_string(), move |log| {
        Box::pin(async move {
            tokio::time::sleep(t).await;
            // Bridges must exist at start.
            let missing = {
                let st = shared.st();
                let Some(vm) = st.vms.get(&id) else {
                    return Err(format!(
                        "Configuration file 'nodes/{node2}/qemu-server/{id}.conf' does not exist"
                    ));
                };
                let mut missing = None;
                for (k, v) in &vm.config {
                    if is_net_key(k) {
                        if let Some(br) = v.split(',').find_map(|p| p.strip_prefix("bridge=")) {
                            let ok = st
                                .net
                                .get(&node2)
                                .map(|n| n.active.contains_key(br))
                                .unwrap_or(false)
                                || st
                                    .sdn
                                    .running
                                    .as_ref()
                                    .map(|r| r.1.contains_key(br))
                                    .unwrap_or(false);
                            if !ok {
                                missing = Some(br.to_string());
                            }
                        }
                    }
                }
                missing
            };
            if let Some(br) = missing {
                return Err(format!("bridge '{br}' does not exist"));
            }
            log.log(format!("starting VM {id}"));
            power_on(&shared, &node2, id, slow);
            Ok(())
        })
    });
    Ok(json!(upid))
}

async fn qemu_stop(ctx: &mut Ctx, kind: &str) -> R {
    let (node, id) = vm_exists(ctx)?;
    {
        let st = ctx.shared.st();
        let vm = st.vms.get(&id).ok_or_else(|| no_conf(&node, id))?;
        if vm.power != Power::Running {
            return Err(ApiError::die(format!("VM {id} not running")));
        }
        if let Some(l) = vm.config.get("lock") {
            if !ctx.flag("skiplock").unwrap_or(false) {
                return Err(ApiError::die(format!("VM is locked ({l})")));
            }
        }
    }
    let shared = ctx.shared.clone();
    let graceful = kind == "qmshutdown";
    let delay = if graceful {
        shared.cfg.timings.shutdown
    } else {
        shared.cfg.timings.task
    };
    let upid = start_task(ctx, &node, kind, &id.to_string(), move |_log| {
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            let (app, gctx) = {
                let st = shared.st();
                let Some(vm) = st.vms.get(&id) else {
                    return Ok(());
                };
                (vm.appliance.clone(), guest_context(&shared, &st, vm))
            };
            if let Some(a) = app {
                a.shutdown(&gctx).await;
            }
            let mut st = shared.st();
            if let Some(vm) = st.vms.get_mut(&id) {
                vm.power = Power::Stopped;
                vm.generation += 1;
                vm.booted = false;
                vm.exec.clear();
                let pending = std::mem::take(&mut vm.pending);
                vm.config.extend(pending);
                for k in std::mem::take(&mut vm.pending_delete) {
                    vm.config.remove(&k);
                }
            }
            Ok(())
        })
    });
    Ok(json!(upid))
}

async fn qemu_reboot(ctx: &mut Ctx) -> R {
    let (node, id) = vm_exists(ctx)?;
    {
        let st = ctx.shared.st();
        if st.vms.get(&id).map(|v| v.power) != Some(Power::Running) {
            return Err(ApiError::die(format!("VM {id} not running")));
        }
    }
    let shared = ctx.shared.clone();
    let slow = ctx.slow_boot;
    let d = shared.cfg.timings.shutdown;
    let node2 = node.clone();
    let upid = start_task(ctx, &node, "qmreboot", &id.to_string(), move |_| {
        Box::pin(async move {
            tokio::time::sleep(d).await;
            power_on(&shared, &node2, id, slow);
            Ok(())
        })
    });
    Ok(json!(upid))
}

async fn qemu_delete(ctx: &mut Ctx) -> R {
    let (node, id) = vm_exists(ctx)?;
    {
        let st = ctx.shared.st();
        let vm = st.vms.get(&id).ok_or_else(|| no_conf(&node, id))?;
        if vm.power == Power::Running {
            return Err(ApiError::die(format!(
                "VM {id} is running - destroy failed"
            )));
        }
        if let Some(l) = vm.config.get("lock") {
            if !ctx.flag("skiplock").unwrap_or(false) {
                return Err(ApiError::die(format!("VM is locked ({l})")));
            }
        }
        if vm
            .config
            .get("protection")
            .map(|p| p == "1")
            .unwrap_or(false)
        {
            return Err(ApiError::die("can't remove VM - protection mode enabled"));
        }
    }
    let purge = ctx.flag("purge").unwrap_or(false);
    let unref = ctx.flag("destroy-unreferenced-disks").unwrap_or(false);
    let shared = ctx.shared.clone();
    let t = shared.cfg.timings.task;
    let node2 = node.clone();
    let upid = start_task(ctx, &node, "qmdestroy", &id.to_string(), move |log| {
        Box::pin(async move {
            let lock = shared.vm_lock(id);
            let _g = tokio::time::timeout(shared.cfg.timings.lock_timeout, lock.lock_owned())
                .await
                .map_err(|_| {
                    format!("can't lock file '/var/lock/qemu-server/lock-{id}.conf' - got timeout")
                })?;
            tokio::time::sleep(t).await;
            let mut st = shared.st();
            let Some(vm) = st.vms.remove(&id) else {
                return Err(format!(
                    "Configuration file 'nodes/{node2}/qemu-server/{id}.conf' does not exist"
                ));
            };
            let referenced: BTreeSet<String> = vm
                .config
                .iter()
                .filter(|(k, _)| is_disk_key(k))
                .map(|(_, v)| v.split(',').next().unwrap_or("").to_string())
                .collect();
            let owned: Vec<(String, String)> = st
                .volumes
                .iter()
                .filter(|(_, v)| {
                    v.vmid == Some(id)
                        && v.content == "images"
                        && (unref || referenced.contains(&v.volid))
                })
                .map(|(k, _)| k.clone())
                .collect();
            let mut lines = Vec::new();
            for k in owned {
                lines.push(format!(
                    "  Logical volume \"{}\" successfully removed.",
                    k.1.split(':').nth(1).unwrap_or("")
                ));
                st.volumes.remove(&k);
            }
            if purge {
                st.fw_vms.remove(&id);
                lines.push(format!("purging VM {id} from related configurations.."));
            }
            drop(st);
            for l in lines {
                log.log(l);
            }
            Ok(())
        })
    });
    Ok(json!(upid))
}

// ---------------------------------------------------------------- agent

fn agent_ready(ctx: &Ctx) -> Result<(GuestContext, Arc<dyn GuestAppliance>), ApiError> {
    let (node, id) = vm_exists(ctx)?;
    let st = ctx.shared.st();
    let vm = st.vms.get(&id).ok_or_else(|| no_conf(&node, id))?;
    if vm.power != Power::Running {
        return Err(ApiError::die(format!("VM {id} is not running")));
    }
    if !agent_enabled(vm) {
        return Err(ApiError::die("No QEMU guest agent configured"));
    }
    match (&vm.appliance, vm.booted) {
        (Some(a), true) if a.agent_running() => {
            Ok((guest_context(&ctx.shared, &st, vm), a.clone()))
        }
        _ => Err(ApiError::die("QEMU guest agent is not running")),
    }
}

fn agent_ifaces(ctx: &Ctx) -> R {
    let (gctx, app) = agent_ready(ctx)?;
    let list: Vec<Value> = app
        .interfaces(&gctx)
        .into_iter()
        .map(|i| {
            let mut addrs: Vec<Value> = i.ipv4.iter().map(|(ip, p)| json!({"ip-address-type": "ipv4", "ip-address": ip.to_string(), "prefix": p})).collect();
            addrs.extend(i.ipv6.iter().map(|(ip, p)| json!({"ip-address-type": "ipv6", "ip-address": ip, "prefix": p})));
            json!({"name": i.name, "hardware-address": i.mac, "ip-addresses": addrs,
                "statistics": {"rx-bytes": 0, "rx-dropped": 0, "rx-errs": 0, "rx-packets": 0, "tx-bytes": 0, "tx-dropped": 0, "tx-errs": 0, "tx-packets": 0}})
        })
        .collect();
    Ok(json!({"result": list}))
}

async fn agent_exec(ctx: &mut Ctx) -> R {
    let (gctx, app) = agent_ready(ctx)?;
    let argv: Vec<String> = ctx
        .params
        .get("command")
        .map(ParamValue::all)
        .unwrap_or_default();
    if argv.is_empty() {
        return Err(ApiError::param(
            "command",
            "property is missing and it is not optional",
        ));
    }
    let input = ctx.p("input-data").map(|s| s.as_bytes().to_vec());
    let out = app.exec(&gctx, &argv, input.as_deref()).await;
    let mut st = ctx.shared.st();
    let vm = st
        .vms
        .get_mut(&gctx.vmid)
        .ok_or_else(|| ApiError::die("VM vanished"))?;
    vm.next_pid += 1;
    let pid = vm.next_pid;
    vm.exec.insert(
        pid,
        ExecRecord {
            exited: true,
            exitcode: out.exitcode,
            out: out.stdout,
            err: out.stderr,
        },
    );
    Ok(json!({"pid": pid}))
}

fn agent_exec_status(ctx: &Ctx) -> R {
    let (gctx, _) = agent_ready(ctx)?;
    let pid: i64 = ctx.req("pid")?.parse().unwrap_or(-1);
    let st = ctx.shared.st();
    let vm = st
        .vms
        .get(&gctx.vmid)
        .ok_or_else(|| ApiError::die("VM vanished"))?;
    let rec = vm
        .exec
        .get(&pid)
        .ok_or_else(|| ApiError::die("Agent error: Invalid parameter 'pid'"))?;
    let mut o = json!({"exited": rec.exited, "exitcode": rec.exitcode});
    if !rec.out.is_empty() {
        o["out-data"] = json!(rec.out);
    }
    if !rec.err.is_empty() {
        o["err-data"] = json!(rec.err);
    }
    Ok(o)
}

async fn agent_file_write(ctx: &mut Ctx) -> R {
    let (gctx, app) = agent_ready(ctx)?;
    let file = ctx.req("file")?.to_string();
    let content = ctx.req("content")?.to_string();
    let encode = ctx.flag("encode").unwrap_or(true);
    let data = if encode {
        content.into_bytes()
    } else {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(content.as_bytes())
            .map_err(|e| ApiError::die(format!("Agent error: Invalid base64 data: {e}")))?
    };
    app.file_write(&gctx, &file, &data)
        .await
        .map_err(|e| ApiError::die(format!("Agent error: {e}")))?;
    Ok(Value::Null)
}

async fn agent_file_read(ctx: &mut Ctx) -> R {
    let (gctx, app) = agent_ready(ctx)?;
    let file = ctx.req("file")?.to_string();
    let data = app
        .file_read(&gctx, &file)
        .await
        .map_err(|e| ApiError::die(format!("Agent error: {e}")))?;
    let truncated = data.len() > 16 * 1024 * 1024;
    let mut o =
        json!({"content": String::from_utf8_lossy(&data[..data.len().min(16 * 1024 * 1024)])});
    if truncated {
        o["truncated"] = json!(true);
    }
    Ok(o)
}

// ---------------------------------------------------------------- tasks

fn task_get(ctx: &Ctx) -> Result<Task, ApiError> {
    let node = node_check(ctx)?;
    let upid = ctx.req("upid")?;
    let st = ctx.shared.st();
    let t = st
        .tasks
        .iter()
        .find(|t| t.upid == upid && t.node == node)
        .cloned()
        .ok_or_else(|| ApiError::die("no such task"))?;
    if t.user != ctx.caller.id && !ctx.caller.has(&format!("/nodes/{node}"), "Sys.Audit") {
        return Err(ApiError::forbidden(&format!("/nodes/{node}"), "Sys.Audit"));
    }
    Ok(t)
}

fn task_json(t: &Task) -> Value {
    let mut o = json!({"upid": t.upid, "node": t.node, "pid": t.pid, "pstart": t.pstart, "starttime": t.starttime,
        "type": t.ttype, "id": t.id, "user": t.user,
        "status": if t.exitstatus.is_some() {"stopped"} else {"running"}});
    if let Some(e) = &t.exitstatus {
        o["exitstatus"] = json!(e);
    }
    o
}

fn task_status(ctx: &Ctx) -> R {
    let t = task_get(ctx)?;
    Ok(task_json(&t))
}

fn task_log(ctx: &Ctx) -> R {
    let t = task_get(ctx)?;
    let start: usize = ctx.p("start").and_then(|s| s.parse().ok()).unwrap_or(0);
    let limit: usize = ctx.p("limit").and_then(|s| s.parse().ok()).unwrap_or(50);
    let lines: Vec<Value> = t
        .log
        .iter()
        .enumerate()
        .skip(start)
        .take(if limit == 0 { usize::MAX } else { limit })
        .map(|(i, l)| json!({"n": i + 1, "t": l}))
        .collect();
    Ok(Value::Array(lines))
}

fn tasks_list(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let st = ctx.shared.st();
    let vmid = ctx.p("vmid").map(str::to_string);
    let typefilter = ctx.p("typefilter").map(str::to_string);
    // `source`: archive (default, finished tasks), active (running ones), all.
    let source = ctx.p("source").unwrap_or("archive").to_string();
    let list: Vec<Value> = st
        .tasks
        .iter()
        .rev()
        .filter(|t| t.node == node)
        .filter(|t| vmid.as_ref().map(|v| &t.id == v).unwrap_or(true))
        .filter(|t| typefilter.as_ref().map(|f| &t.ttype == f).unwrap_or(true))
        .filter(|t| match source.as_str() {
            "active" => t.endtime.is_none(),
            "all" => true,
            _ => t.endtime.is_some(),
        })
        .filter(|t| {
            t.user == ctx.caller.id || ctx.caller.has(&format!("/nodes/{node}"), "Sys.Audit")
        })
        .map(|t| {
            let mut o = task_json(t);
            if let Some(m) = o.as_object_mut() {
                m.remove("exitstatus");
                if let Some(e) = &t.exitstatus {
                    m.insert("status".into(), json!(e));
                } else {
                    m.remove("status");
                }
            }
            if let Some(e) = t.endtime {
                o["endtime"] = json!(e);
            }
            o
        })
        .collect();
    Ok(Value::Array(list))
}

// ---------------------------------------------------------------- storage

fn storage_json(st: &State, s: &super::StorageSpec, node: &str) -> Value {
    let used = used_bytes(st, &s.id, node);
    json!({"storage": s.id, "type": s.kind, "content": s.content.join(","), "active": 1, "enabled": 1,
        "shared": if s.shared {1} else {0}, "total": s.total, "used": used, "avail": s.total.saturating_sub(used),
        "used_fraction": used as f64 / s.total.max(1) as f64})
}

fn storage_list(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let st = ctx.shared.st();
    let content = ctx.p("content").map(str::to_string);
    let list: Vec<Value> = ctx
        .shared
        .cfg
        .storages
        .iter()
        .filter(|s| s.nodes.is_empty() || s.nodes.contains(&node))
        .filter(|s| {
            ctx.caller
                .has(&format!("/storage/{}", s.id), "Datastore.Audit")
                || ctx
                    .caller
                    .has(&format!("/storage/{}", s.id), "Datastore.AllocateSpace")
        })
        .filter(|s| {
            content
                .as_ref()
                .map(|c| c.split(',').all(|c| s.content.iter().any(|x| x == c)))
                .unwrap_or(true)
        })
        .filter(|s| ctx.p("storage").map(|x| x == s.id).unwrap_or(true))
        .map(|s| storage_json(&st, s, &node))
        .collect();
    Ok(Value::Array(list))
}

fn storage_status(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let s = storage_of(ctx, ctx.req("storage")?, &node)?;
    let st = ctx.shared.st();
    let mut o = storage_json(&st, &s, &node);
    if let Some(m) = o.as_object_mut() {
        m.remove("storage");
        m.remove("used_fraction");
    }
    Ok(o)
}

fn volume_json(v: &Volume) -> Value {
    let mut o = json!({"volid": v.volid, "content": v.content, "format": v.format, "size": v.size, "ctime": v.ctime, "used": v.size});
    if let Some(id) = v.vmid {
        o["vmid"] = json!(id);
    }
    o
}

fn content_list(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let sid = ctx.req("storage")?.to_string();
    storage_of(ctx, &sid, &node)?;
    let content = ctx.p("content").map(str::to_string);
    let vmid: Option<u32> = ctx.p("vmid").and_then(|v| v.parse().ok());
    let st = ctx.shared.st();
    let list: Vec<Value> = st
        .volumes
        .values()
        .filter(|v| v.node == node && v.storage == sid)
        .filter(|v| content.as_ref().map(|c| &v.content == c).unwrap_or(true))
        .filter(|v| vmid.map(|id| v.vmid == Some(id)).unwrap_or(true))
        .map(|v| {
            let mut o = volume_json(v);
            if let Some(m) = o.as_object_mut() {
                m.remove("content");
            }
            o["content"] = json!(v.content);
            o
        })
        .collect();
    // `content` is not in the returns schema of every PVE version; keep only known keys.
    let known = ["volid", "format", "size", "ctime", "used", "vmid"];
    let list = list
        .into_iter()
        .map(|mut o| {
            if let Some(m) = o.as_object_mut() {
                m.retain(|k, _| known.contains(&k.as_str()));
            }
            o
        })
        .collect();
    Ok(Value::Array(list))
}

fn normalize_volid(storage: &str, volume: &str) -> String {
    if volume.contains(':') {
        volume.to_string()
    } else {
        format!("{storage}:{volume}")
    }
}

fn content_get(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let sid = ctx.p("storage").unwrap_or("").to_string();
    let volid = normalize_volid(&sid, ctx.req("volume")?);
    let vsid = volid.split(':').next().unwrap_or("").to_string();
    ctx.require_any(
        &format!("/storage/{vsid}"),
        &["Datastore.Audit", "Datastore.AllocateSpace"],
    )?;
    let st = ctx.shared.st();
    let v = st
        .volumes
        .get(&(node.clone(), volid.clone()))
        .ok_or_else(|| ApiError::die(format!("volume '{volid}' does not exist")))?;
    let path = match v.content.as_str() {
        "iso" => format!(
            "/var/lib/vz/template/iso/{}",
            volid.split('/').next_back().unwrap_or("")
        ),
        "import" => format!(
            "/var/lib/vz/import/{}",
            volid.split('/').next_back().unwrap_or("")
        ),
        _ => format!("/dev/pve/{}", volid.split(':').nth(1).unwrap_or("")),
    };
    Ok(json!({"path": path, "size": v.size, "used": v.size, "format": v.format}))
}

fn content_delete(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    let sid = ctx.p("storage").unwrap_or("").to_string();
    let volid = normalize_volid(&sid, ctx.req("volume")?);
    let vsid = volid.split(':').next().unwrap_or("").to_string();
    ctx.require(&format!("/storage/{vsid}"), "Datastore.Allocate")?;
    {
        let st = ctx.shared.st();
        let v = st
            .volumes
            .get(&(node.clone(), volid.clone()))
            .ok_or_else(|| ApiError::die(format!("volume '{volid}' does not exist")))?;
        if let Some(owner) = v.vmid {
            if st
                .vms
                .get(&owner)
                .map(|vm| {
                    vm.config
                        .values()
                        .any(|c| c.split(',').next() == Some(volid.as_str()))
                })
                .unwrap_or(false)
            {
                return Err(ApiError::die(format!(
                    "volume '{volid}' is still in use by VM {owner}"
                )));
            }
        }
        let in_use = st.vms.values().find(|vm| {
            vm.node == node
                && vm
                    .config
                    .values()
                    .any(|c| c.split(',').next() == Some(volid.as_str()))
        });
        if let Some(vm) = in_use {
            return Err(ApiError::die(format!(
                "unable to delete '{volid}' - volume is used by VM {}",
                vm.vmid
            )));
        }
    }
    let shared = ctx.shared.clone();
    let node2 = node.clone();
    let v2 = volid.clone();
    let upid = start_task(ctx, &node, "imgdel", &volid, move |log| {
        Box::pin(async move {
            shared.st().volumes.remove(&(node2, v2.clone()));
            log.log(format!("Removed volume '{v2}'"));
            Ok(())
        })
    });
    Ok(json!(upid))
}

fn check_filename(content: &str, filename: &str) -> Result<(), ApiError> {
    if filename.contains('/') || filename.starts_with('.') || filename.is_empty() {
        return Err(ApiError::param(
            "filename",
            format!("invalid filename '{filename}'"),
        ));
    }
    let lower = filename.to_ascii_lowercase();
    let ok = match content {
        "iso" => lower.ends_with(".iso") || lower.ends_with(".img"),
        "vztmpl" => {
            lower.ends_with(".tar.gz") || lower.ends_with(".tar.xz") || lower.ends_with(".tar.zst")
        }
        "import" => [".qcow2", ".raw", ".vmdk", ".ova", ".ovf", ".img"]
            .iter()
            .any(|e| lower.ends_with(e)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::param(
            "filename",
            format!("invalid filename or wrong extension for content type '{content}'"),
        ))
    }
}

fn volid_for(sid: &str, content: &str, filename: &str) -> String {
    let dir = match content {
        "iso" => "iso",
        "vztmpl" => "vztmpl",
        _ => "import",
    };
    format!("{sid}:{dir}/{filename}")
}

fn download_url(ctx: &mut Ctx) -> R {
    let node = node_check(ctx)?;
    let sid = ctx.req("storage")?.to_string();
    let s = storage_of(ctx, &sid, &node)?;
    let content = ctx.req("content")?.to_string();
    require_content(&s, &content)?;
    let filename = ctx.req("filename")?.to_string();
    check_filename(&content, &filename)?;
    let url = ctx.req("url")?.to_string();
    let volid = volid_for(&sid, &content, &filename);
    {
        let mut st = ctx.shared.st();
        if st.volumes.contains_key(&(node.clone(), volid.clone())) {
            return Err(ApiError::die(format!(
                "refusing to override existing file '{filename}'"
            )));
        }
        st.downloads.push(url.clone());
    }
    let shared = ctx.shared.clone();
    let delay = shared.cfg.timings.download;
    let size = image_size_hint(&shared, &url, &filename);
    let node2 = node.clone();
    let algo = ctx.p("checksum-algorithm").map(str::to_string);
    let task_id = filename.clone();
    let upid = start_task(ctx, &node, "download", &task_id, move |log| {
        Box::pin(async move {
            log.log(format!(
                "downloading {url} to /var/lib/vz/{}/{filename}",
                if content == "iso" {
                    "template/iso"
                } else {
                    "import"
                }
            ));
            tokio::time::sleep(delay).await;
            if let Some(a) = algo {
                log.log(format!(
                    "calculating checksum ({a})...OK, checksum verified"
                ));
            }
            log.log(format!(
                "download of '{url}' to '/var/lib/vz/.../{filename}' finished"
            ));
            shared.st().volumes.insert(
                (node2.clone(), volid.clone()),
                Volume {
                    volid,
                    storage: sid,
                    node: node2,
                    content: content.clone(),
                    format: if content == "iso" {
                        "iso".into()
                    } else {
                        ext_format(&filename)
                    },
                    size,
                    ctime: now(),
                    vmid: None,
                    data: None,
                    source_url: Some(url),
                },
            );
            Ok(())
        })
    });
    Ok(json!(upid))
}

fn ext_format(f: &str) -> String {
    let l = f.to_ascii_lowercase();
    if l.ends_with(".qcow2") {
        "qcow2".into()
    } else if l.ends_with(".vmdk") {
        "vmdk".into()
    } else if l.ends_with(".ova") {
        "ova".into()
    } else {
        "raw".into()
    }
}

fn image_size_hint(shared: &Shared, _url: &str, _filename: &str) -> u64 {
    shared.cfg.default_image_size
}

fn upload(ctx: &mut Ctx) -> R {
    let node = node_check(ctx)?;
    let sid = ctx.req("storage")?.to_string();
    let s = storage_of(ctx, &sid, &node)?;
    let content = ctx.req("content")?.to_string();
    require_content(&s, &content)?;
    let (filename, data) = ctx
        .upload
        .take()
        .ok_or_else(|| ApiError::die("missing upload data (multipart field 'filename')"))?;
    check_filename(&content, &filename)?;
    if let (Some(algo), Some(sum)) = (ctx.p("checksum-algorithm"), ctx.p("checksum")) {
        if algo == "sha256" {
            use sha2::{Digest, Sha256};
            let got = hex::encode(Sha256::digest(&data));
            if !got.eq_ignore_ascii_case(sum) {
                return Err(ApiError::die(format!(
                    "checksum mismatch: got '{got}' != expect '{sum}'"
                )));
            }
        }
    }
    let volid = volid_for(&sid, &content, &filename);
    let shared = ctx.shared.clone();
    let node2 = node.clone();
    let size = data.len() as u64;
    let data = Arc::new(data);
    let task_id = filename.clone();
    let upid = start_task(ctx, &node, "imgcopy", &task_id, move |log| {
        Box::pin(async move {
            log.log(format!("target node: {node2}"));
            log.log(format!("target file: /var/lib/vz/template/iso/{filename}"));
            log.log(format!("file size is: {size}"));
            shared.st().volumes.insert(
                (node2.clone(), volid.clone()),
                Volume {
                    volid,
                    storage: sid,
                    node: node2,
                    content: content.clone(),
                    format: if content == "iso" {
                        "iso".into()
                    } else {
                        ext_format(&filename)
                    },
                    size,
                    ctime: now(),
                    vmid: None,
                    data: Some(data),
                    source_url: None,
                },
            );
            Ok(())
        })
    });
    Ok(json!(upid))
}

// ---------------------------------------------------------------- network

fn iface_json(m: &Map<String, Value>, active: bool) -> Value {
    let mut o = Value::Object(m.clone());
    if active {
        o["active"] = json!(1);
    }
    o
}

fn net_list(ctx: &Ctx) -> R {
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

fn net_create(ctx: &Ctx) -> R {
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

fn net_update(ctx: &Ctx) -> R {
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

fn net_get(ctx: &Ctx) -> R {
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

fn net_delete(ctx: &Ctx) -> R {
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

fn net_apply(ctx: &Ctx) -> R {
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

fn net_revert(ctx: &Ctx) -> R {
    let node = node_check(ctx)?;
    ctx.shared.st().net.entry(node).or_default().staged = None;
    Ok(Value::Null)
}

// ---------------------------------------------------------------- SDN

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

fn sdn_zones(ctx: &Ctx) -> R {
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

fn sdn_vnets(ctx: &Ctx) -> R {
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

fn parse_cidr4(c: &str) -> Option<(u32, u32)> {
    let (a, l) = c.split_once('/')?;
    let ip: Ipv4Addr = a.parse().ok()?;
    let len: u32 = l.parse().ok()?;
    if len > 32 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((u32::from(ip), mask))
}

fn sdn_subnets(ctx: &Ctx) -> R {
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

fn sdn_apply(ctx: &Ctx) -> R {
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

fn prefix_to_mask(len: &str) -> String {
    let l: u32 = len.parse().unwrap_or(32).min(32);
    let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
    Ipv4Addr::from(mask).to_string()
}
